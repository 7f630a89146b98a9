use super::*;
use stacksync_proto::{DeviceId, ItemCommitResult, ItemId, ItemName, ItemStatus, WorkspaceId};

fn meta(id: ItemId, version: u64, revision: u64) -> ItemMeta {
    ItemMeta {
        id,
        workspace: WorkspaceId::NIL,
        parent: None,
        name: ItemName::new("a").unwrap(),
        is_folder: true,
        mimetype: None,
        status: if version == 1 {
            ItemStatus::New
        } else {
            ItemStatus::Changed
        },
        version,
        content_hash: None,
        size: 0,
        client_modified: 0,
        server_modified: 0,
        device: DeviceId::NIL,
        revision,
        chunks: Vec::new(),
        record: None,
    }
}

fn result(metas: &[ItemMeta], conflicts: usize) -> CommitResult {
    let mut results: Vec<ItemCommitResult> = metas
        .iter()
        .map(|m| ItemCommitResult {
            id: m.id,
            version: m.version,
            outcome: CommitOutcome::Committed { meta: m.clone() },
        })
        .collect();
    for _ in 0..conflicts {
        let current = meta(ItemId::new(), 3, 2);
        results.push(ItemCommitResult {
            id: current.id,
            version: 3,
            outcome: CommitOutcome::Conflict { current },
        });
    }
    CommitResult {
        workspace: WorkspaceId::NIL,
        device: DeviceId::NIL,
        revision: metas.iter().map(|m| m.revision).max().unwrap_or(0),
        results,
    }
}

#[test]
fn a_gap_free_run_of_own_commits_is_the_feed_from_before_it() {
    let (a, b, c) = (ItemId::new(), ItemId::new(), ItemId::new());
    let mut own = OwnChanges::default();
    own.committed(&result(&[meta(b, 1, 6), meta(a, 1, 5)], 1));
    own.committed(&result(&[meta(a, 2, 7), meta(c, 1, 8)], 0));
    let page = own.clone().page(WorkspaceId::NIL, 4, 100).unwrap();
    assert_eq!(page.cursor, 8);
    assert!(page.has_more, "the server is always asked what came after");
    // Revision order, each item once in its latest version.
    let seen: Vec<(ItemId, u64)> = page.items.iter().map(|m| (m.id, m.version)).collect();
    assert_eq!(seen, [(b, 1), (a, 2), (c, 1)]);

    // Any other read, or a page over the limit, goes to the server; and
    // what was known is used up either way.
    assert_eq!(own.clone().page(WorkspaceId::NIL, 5, 100), None);
    assert_eq!(own.clone().page(WorkspaceId::NIL, 4, 2), None);
    assert!(own.page(WorkspaceId::NIL, 4, 100).is_some());
    assert_eq!(own.page(WorkspaceId::NIL, 4, 100), None);
}

#[test]
fn another_change_in_between_is_never_hidden() {
    let (a, b) = (ItemId::new(), ItemId::new());
    let mut own = OwnChanges::default();
    // Revision 6 is someone else's: the batch is not a run.
    own.committed(&result(&[meta(a, 1, 5), meta(b, 1, 7)], 0));
    assert_eq!(own.clone().page(WorkspaceId::NIL, 4, 100), None);
    // Another device committed 6 between two of ours: only the later
    // commit is known, from its own start.
    let mut own = OwnChanges::default();
    own.committed(&result(&[meta(a, 1, 5)], 0));
    own.committed(&result(&[meta(b, 1, 7)], 0));
    assert_eq!(own.clone().page(WorkspaceId::NIL, 4, 100), None);
    assert_eq!(own.page(WorkspaceId::NIL, 6, 100).unwrap().items.len(), 1);
}
