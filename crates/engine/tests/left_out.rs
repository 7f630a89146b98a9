//! What a device leaves out of sync is never deleted, on either side:
//! ignored paths (finding 1), reserved names (finding 2) and local entries
//! that are never synced, like symbolic links (finding 15).

mod common;

use common::World;
use stacksync_engine::Remote;
use stacksync_proto::{ItemMeta, ItemName, ItemStatus, ProposedItem};

/// The server's live item at the root named `name`.
fn live(w: &World, name: &str) -> Option<ItemMeta> {
    w.server
        .latest()
        .into_iter()
        .find(|m| m.name.as_str() == name && m.status != ItemStatus::Deleted)
}

fn deleted_on_server(w: &World) -> Vec<String> {
    w.server
        .latest()
        .into_iter()
        .filter(|m| m.status == ItemStatus::Deleted)
        .map(|m| m.name.to_string())
        .collect()
}

/// Renames `from` to `to` on the server, as another client would.
async fn server_rename(w: &World, from: &str, to: &str) {
    let m = live(w, from).expect("the item is on the server");
    let link = w
        .server
        .device(stacksync_proto::DeviceId(uuid::Uuid::from_u64_pair(9, 9)));
    let result = link
        .commit(vec![ProposedItem {
            id: m.id,
            parent: m.parent,
            name: ItemName::new(to).unwrap(),
            is_folder: m.is_folder,
            mimetype: m.mimetype.clone(),
            status: ItemStatus::Renamed,
            version: m.version + 1,
            content_hash: m.content_hash,
            size: m.size,
            client_modified: m.client_modified,
            chunks: m.chunks.clone(),
            record: None,
        }])
        .await
        .expect("the server answers");
    assert!(
        live(w, to).is_some(),
        "the rename was not accepted: {result:?}"
    );
}

/// Syncs device `i` until it has nothing left to do.
async fn settle(w: &mut World, i: usize) -> stacksync_engine::SyncReport {
    let r = w.sync(i).await;
    assert!(r.converged, "{r:#?}");
    r
}

#[tokio::test]
async fn finding_1_ignoring_synced_files_deletes_them_nowhere() {
    let mut w = World::new(2);
    w.dev(0).write("a.txt", b"a");
    w.dev(0).write("docs/b.txt", b"b");
    w.dev(0).write("keep.md", b"k");
    w.dev(0).write("build/out.o", b"o");
    w.converge().await;

    w.dev(0).write(".stacksyncignore", b"*.txt\nbuild/\n");
    for _ in 0..2 {
        settle(&mut w, 0).await;
        settle(&mut w, 1).await;
    }
    for d in 0..2 {
        for (p, c) in [("a.txt", "a"), ("docs/b.txt", "b"), ("build/out.o", "o")] {
            assert_eq!(
                w.dev(d).read(p).as_deref(),
                Some(c.as_bytes()),
                "dev{d} lost {p}"
            );
        }
    }
    assert_eq!(deleted_on_server(&w), Vec::<String>::new());
    assert!(live(&w, "a.txt").is_some() && live(&w, "build").is_some());
    // This device stopped tracking them: nothing is left to do.
    let again = settle(&mut w, 0).await;
    assert_eq!(again.applied, 0, "{again:#?}");
}

#[tokio::test]
async fn finding_1_remote_changes_to_ignored_items_are_not_applied_and_unignoring_reconciles() {
    let mut w = World::new(2);
    w.dev(0).write("edited.txt", b"old");
    w.dev(0).write("same.txt", b"same");
    w.dev(0).write("gone.txt", b"gone");
    w.converge().await;

    // Device 0 ignores them; device 1 changes them before it hears of it.
    w.dev(0).write(".stacksyncignore", b"*.txt\n");
    settle(&mut w, 0).await;
    w.dev(1).write("edited.txt", b"new");
    assert!(w.dev(1).fs.user_remove("gone.txt"));
    settle(&mut w, 1).await;
    settle(&mut w, 0).await;
    assert_eq!(w.dev(0).read("edited.txt").as_deref(), Some(&b"old"[..]));
    assert_eq!(w.dev(0).read("gone.txt").as_deref(), Some(&b"gone"[..]));

    // Removing the rule: equal content settles, different content is a
    // conflicted copy, a file deleted elsewhere meanwhile comes back.
    w.dev(0).write(".stacksyncignore", b"");
    settle(&mut w, 0).await;
    settle(&mut w, 1).await;
    settle(&mut w, 0).await;
    assert_eq!(w.dev(0).read("edited.txt").as_deref(), Some(&b"new"[..]));
    assert_eq!(w.dev(0).read("same.txt").as_deref(), Some(&b"same"[..]));
    let copies = w.conflicted_copies(0);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(copies[0].starts_with("edited"), "{copies:?}");
    assert_eq!(w.dev(0).read(&copies[0]).as_deref(), Some(&b"old"[..]));
    let same: Vec<_> = w
        .server
        .latest()
        .into_iter()
        .filter(|m| m.name.as_str().starts_with("same") && m.status != ItemStatus::Deleted)
        .collect();
    assert_eq!(same.len(), 1, "duplicated: {same:#?}");
    assert_eq!(w.dev(1).read("gone.txt").as_deref(), Some(&b"gone"[..]));
    w.assert_same();
}

#[tokio::test]
async fn finding_1_a_server_rename_into_an_ignored_path_is_applied_then_untracked() {
    let mut w = World::new(2);
    w.dev(0).write("notes.md", b"notes");
    w.converge().await;
    // Device 0 has the rule before it hears of device 1's rename.
    w.dev(0).write(".stacksyncignore", b"*.log\n");
    assert!(w.dev(1).fs.user_rename("notes.md", "notes.log"));
    settle(&mut w, 1).await;
    settle(&mut w, 0).await;
    settle(&mut w, 1).await;
    assert_eq!(w.dev(0).read("notes.log").as_deref(), Some(&b"notes"[..]));
    assert_eq!(w.dev(0).read("notes.md"), None);
    assert_eq!(w.dev(1).read("notes.log").as_deref(), Some(&b"notes"[..]));
    assert!(live(&w, "notes.log").is_some());
    assert_eq!(w.server.latest().len(), 2, "{:#?}", w.server.latest());
    assert_eq!(deleted_on_server(&w), Vec::<String>::new());
}

#[tokio::test]
async fn finding_2_a_user_file_named_like_a_download_temporary_is_never_removed() {
    let mut w = World::new(2);
    w.dev(0).write(".stacksync-dl-notes", b"mine");
    w.dev(0).write("sub/.stacksync-dl-x", b"mine too");
    w.dev(1).write("sub/other.txt", b"to download");
    let r = settle(&mut w, 1).await;
    assert_eq!(r.refused, vec![]);
    for _ in 0..2 {
        let r = settle(&mut w, 0).await;
        assert!(
            r.not_synced
                .iter()
                .any(|n| n.contains(".stacksync-dl-notes")),
            "{r:#?}"
        );
    }
    assert_eq!(
        w.dev(0).read(".stacksync-dl-notes").as_deref(),
        Some(&b"mine"[..])
    );
    assert_eq!(
        w.dev(0).read("sub/.stacksync-dl-x").as_deref(),
        Some(&b"mine too"[..])
    );
    assert_eq!(
        w.dev(0).read("sub/other.txt").as_deref(),
        Some(&b"to download"[..])
    );
}

#[tokio::test]
async fn finding_2_a_server_rename_to_a_reserved_name_deletes_nothing() {
    let mut w = World::new(1);
    w.dev(0).write("notes.txt", b"notes");
    w.dev(0).write("other.txt", b"other");
    w.converge().await;
    server_rename(&w, "notes.txt", ".stacksync-dl-notes").await;
    server_rename(&w, "other.txt", ".stacksync-move-other").await;
    let r = settle(&mut w, 0).await;
    assert_eq!(w.dev(0).read("notes.txt").as_deref(), Some(&b"notes"[..]));
    assert_eq!(w.dev(0).read("other.txt").as_deref(), Some(&b"other"[..]));
    assert_eq!(w.dev(0).read(".stacksync-dl-notes"), None);
    assert_eq!(deleted_on_server(&w), Vec::<String>::new());
    let paths: Vec<String> = r.refused.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(paths, ["notes.txt", "other.txt"], "{r:#?}");
    // Reported while the clash lasts, and nothing else happens.
    let again = settle(&mut w, 0).await;
    assert_eq!(again.applied, 0, "{again:#?}");
    assert_eq!(again.refused.len(), 2);
    // A rename back to a usable name is an ordinary move again.
    server_rename(&w, ".stacksync-dl-notes", "notes2.txt").await;
    let r = settle(&mut w, 0).await;
    assert_eq!(w.dev(0).read("notes2.txt").as_deref(), Some(&b"notes"[..]));
    assert_eq!(r.refused.len(), 1, "{r:#?}");
}

#[tokio::test]
async fn finding_15_a_symlink_where_the_server_has_a_folder_is_reported_once() {
    let mut w = World::new(2);
    w.dev(0).write("docs/a.txt", b"a");
    w.dev(0).write("docs/sub/b.txt", b"b");
    w.dev(0).write("other.txt", b"o");
    settle(&mut w, 0).await;
    w.dev(1).fs.user_symlink("docs");
    w.dev(1).fs.user_special("other.txt");
    w.dev(1).write("mine.txt", b"m");
    let r = settle(&mut w, 1).await;
    let paths: Vec<String> = r.refused.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(paths, ["docs", "other.txt"], "{r:#?}");
    assert!(live(&w, "mine.txt").is_some());
    // A synced file replaced by a symlink is not a delete either.
    assert!(w.dev(1).fs.user_remove("mine.txt"));
    w.dev(1).fs.user_symlink("mine.txt");
    let r = settle(&mut w, 1).await;
    assert!(r.refused.iter().any(|(p, _)| p.to_string() == "mine.txt"));
    assert_eq!(deleted_on_server(&w), Vec::<String>::new());
    // Once the link is gone, the folder comes down.
    assert!(w.dev(1).fs.user_remove("docs"));
    settle(&mut w, 1).await;
    assert_eq!(w.dev(1).read("docs/sub/b.txt").as_deref(), Some(&b"b"[..]));
}

/// Deletes the server's live item at `path` (children first), as the
/// service does when a folder moves into a shared workspace of its own.
async fn server_delete_tree(w: &World, names: &[&str]) {
    let link = w
        .server
        .device(stacksync_proto::DeviceId(uuid::Uuid::from_u64_pair(9, 9)));
    for name in names {
        let m = live(w, name).expect("the item is on the server");
        let result = link
            .commit(vec![ProposedItem {
                id: m.id,
                parent: m.parent,
                name: m.name.clone(),
                is_folder: m.is_folder,
                mimetype: m.mimetype.clone(),
                status: ItemStatus::Deleted,
                version: m.version + 1,
                content_hash: None,
                size: 0,
                client_modified: m.client_modified,
                chunks: Vec::new(),
                record: None,
            }])
            .await
            .expect("the server answers");
        assert!(
            live(w, name).is_none(),
            "{name} was not deleted: {result:?}"
        );
    }
}

/// A shared folder mounted inside the private folder: the private
/// workspace's engine leaves the mount out. When the server moves the
/// folder out of the private workspace (its items deleted there), the
/// local copy is kept for the shared workspace's engine; what is written
/// inside later is never uploaded to the private workspace; and a device
/// that mounts it before its first sync downloads nothing there.
#[tokio::test]
async fn an_excluded_mount_is_neither_synced_nor_deleted() {
    let mut w = World::new(2);
    w.dev(0).write("project/a.txt", b"a");
    w.dev(0).write("other.txt", b"o");
    settle(&mut w, 0).await;
    let mount = stacksync_engine::RelPath::parse("project").unwrap();
    w.dev(1).excluded.insert(mount.clone());
    settle(&mut w, 1).await;
    assert_eq!(w.dev(1).read("other.txt").as_deref(), Some(&b"o"[..]));
    assert_eq!(
        w.dev(1).read("project/a.txt"),
        None,
        "downloaded into a mount"
    );

    w.dev(0).excluded.insert(mount.clone());
    server_delete_tree(&w, &["a.txt", "project"]).await;
    settle(&mut w, 0).await;
    assert_eq!(w.dev(0).read("project/a.txt").as_deref(), Some(&b"a"[..]));
    w.dev(0).write("project/b.txt", b"b");
    w.dev(1).write("project/c.txt", b"c");
    settle(&mut w, 0).await;
    settle(&mut w, 1).await;
    assert!(live(&w, "b.txt").is_none() && live(&w, "c.txt").is_none());
    assert!(live(&w, "project").is_none());
    assert_eq!(w.dev(0).read("project/a.txt").as_deref(), Some(&b"a"[..]));
    assert_eq!(w.dev(1).read("project/c.txt").as_deref(), Some(&b"c"[..]));
    // Private edits outside the mount still flow.
    w.dev(1).write("other.txt", b"o2");
    settle(&mut w, 1).await;
    settle(&mut w, 0).await;
    assert_eq!(w.dev(0).read("other.txt").as_deref(), Some(&b"o2"[..]));
    let again = settle(&mut w, 0).await;
    assert_eq!(again.applied, 0, "{again:#?}");
}
