//! Listing a workspace from 0 through the change feed, on SQLite and
//! PostgreSQL. A device that starts from nothing learns the whole tree this
//! way, so in pages of any size the listing must be exactly the current
//! tree: every item once, at its latest version, with its whole chunk list
//! in order and each chunk's location, as a read of the single item gives
//! them.

mod common;

use std::collections::BTreeSet;

use common::*;
use stacksync_metastore::MetaStore;
use stacksync_proto::{ChunkId, ChunkRef, DeviceId, ItemId, ItemMeta, WorkspaceId};

conformance!(
    listing_from_zero_in_small_pages_is_the_current_tree,
    page_size_does_not_change_the_listing,
    listing_after_a_folder_move_carries_the_new_locations,
    pages_reach_across_long_runs_of_superseded_revisions,
    odd_names_and_long_chunk_lists_list_as_stored,
);

fn whole(seed: u8, size: u32) -> ChunkRef {
    ChunkRef::whole(ChunkId([seed; 32]), size)
}

/// The whole feed of `ws` from 0 in pages of `limit`, checking each page's
/// order and cursor on the way.
async fn list_from_zero(store: &MetaStore, ws: WorkspaceId, limit: u32) -> Vec<ItemMeta> {
    let (mut since, mut listed) = (0, Vec::new());
    loop {
        let page = store.get_changes(ws, since, limit).await.unwrap();
        assert!(page.items.len() <= limit as usize);
        assert!(page.items.iter().all(|m| m.revision > since));
        assert!(page.items.windows(2).all(|w| w[0].revision < w[1].revision));
        assert_eq!(page.cursor, page.items.last().map_or(since, |m| m.revision));
        since = page.cursor;
        listed.extend(page.items);
        if !page.has_more {
            break;
        }
    }
    listed
}

/// A workspace with folders, empty and multi-chunk files, chunks repeated
/// within a file and shared between files (whose later claims lose), files
/// edited, moved and deleted. Returns the ids of every item.
async fn varied_tree(store: &MetaStore, f: &Fixture) -> Vec<ItemId> {
    stock(store, f, f.ws.id).await;
    let ids: Vec<ItemId> = (0..9).map(|_| ItemId::new()).collect();
    let (docs, inner) = (ids[0], ids[1]);
    let many: Vec<ChunkRef> = (0..12u8)
        .map(|k| {
            if k % 3 == 0 {
                whole(40 + k, 10 + u32::from(k))
            } else {
                packed(40 + k, 10 + u32::from(k), 8, u64::from(k) * 100)
            }
        })
        .collect();
    commit(
        store,
        f,
        vec![
            folder(docs, None, "Docs", 1),
            folder(inner, Some(docs), "Inner", 1),
            file_of(
                ids[2],
                Some(docs),
                "a",
                vec![packed(1, 100, 9, 0), whole(2, 50), packed(1, 100, 9, 0)],
            ),
            file_of(ids[3], None, "many", many),
            file(ids[4], Some(inner), "empty", 1, 0, 0),
            // Shares chunk 1 with "a" but claims another place: the first
            // claim is where it is.
            file_of(
                ids[5],
                None,
                "shares",
                vec![packed(1, 100, 7, 0), whole(3, 5)],
            ),
            file_of(ids[6], None, "edited", vec![packed(4, 20, 9, 200)]),
            file_of(ids[7], None, "deleted", vec![whole(5, 7)]),
            file_of(ids[8], None, "moved", vec![packed(6, 30, 5, 0)]),
        ],
    )
    .await;
    let edited = store.item(f.ws.id, ids[6]).await.unwrap();
    let mut v2 = file_of(
        ids[6],
        None,
        "edited",
        vec![whole(4, 20), packed(7, 8, 6, 64)],
    );
    v2.version = edited.version + 1;
    v2.status = stacksync_proto::ItemStatus::Changed;
    committed(&commit(store, f, vec![v2]).await);
    let deleted = store.item(f.ws.id, ids[7]).await.unwrap();
    committed(&commit(store, f, vec![delete_of(&deleted)]).await);
    let moved = store.item(f.ws.id, ids[8]).await.unwrap();
    committed(&commit(store, f, vec![place_of(&moved, Some(inner), "moved here")]).await);
    ids
}

async fn listing_from_zero_in_small_pages_is_the_current_tree(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let ids = varied_tree(store, &f).await;
    let listed = list_from_zero(store, f.ws.id, 2).await;
    let listed_ids: BTreeSet<ItemId> = listed.iter().map(|m| m.id).collect();
    assert_eq!(listed.len(), ids.len(), "every item once");
    assert_eq!(listed_ids, ids.iter().copied().collect());
    for m in &listed {
        assert_eq!(m, &store.item(f.ws.id, m.id).await.unwrap());
    }
    let by_id = |id: ItemId| listed.iter().find(|m| m.id == id).unwrap();
    // The chunk lists in order, each chunk where the workspace stores it.
    let first = packed(1, 100, 9, 0);
    assert_eq!(by_id(ids[2]).chunks, vec![first, whole(2, 50), first]);
    assert_eq!(by_id(ids[3]).chunks.len(), 12);
    assert_eq!(by_id(ids[5]).chunks, vec![first, whole(3, 5)]);
    assert_eq!(
        by_id(ids[6]).chunks,
        vec![packed(4, 20, 9, 200), packed(7, 8, 6, 64)]
    );
    assert_eq!(by_id(ids[6]).version, 2);
    assert!(by_id(ids[7]).chunks.is_empty() && !by_id(ids[7]).status.is_live());
    assert_eq!(by_id(ids[8]).chunks, vec![packed(6, 30, 5, 0)]);
    assert!(by_id(ids[0]).chunks.is_empty() && by_id(ids[4]).chunks.is_empty());
    let latest = store
        .workspace_as(f.user.id, f.ws.id)
        .await
        .unwrap()
        .latest_revision;
    assert_eq!(listed.last().unwrap().revision, latest);
}

async fn page_size_does_not_change_the_listing(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let ids = varied_tree(store, &f).await;
    let whole_listing = list_from_zero(store, f.ws.id, 1000).await;
    assert_eq!(whole_listing.len(), ids.len());
    for limit in 1..=ids.len() as u32 {
        assert_eq!(
            list_from_zero(store, f.ws.id, limit).await,
            whole_listing,
            "pages of {limit}"
        );
    }
    // Starting anywhere gives the tail of the same listing.
    for (k, m) in whole_listing.iter().enumerate() {
        let tail = list_from_zero_after(store, f.ws.id, m.revision, 3).await;
        assert_eq!(tail, whole_listing[k + 1..]);
    }
}

/// The feed of `ws` after revision `since`, in pages of `limit`.
async fn list_from_zero_after(
    store: &MetaStore,
    ws: WorkspaceId,
    mut since: u64,
    limit: u32,
) -> Vec<ItemMeta> {
    let mut listed = Vec::new();
    loop {
        let page = store.get_changes(ws, since, limit).await.unwrap();
        since = page.cursor;
        listed.extend(page.items);
        if !page.has_more {
            return listed;
        }
    }
}

async fn listing_after_a_folder_move_carries_the_new_locations(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let ids = varied_tree(store, &f).await;
    let shared = store
        .create_workspace(f.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    stock(store, &f, shared.id).await;
    store
        .commit(&stacksync_proto::CommitRequest {
            workspace: shared.id,
            device: f.device.id,
            items: vec![file_of(
                ItemId::new(),
                None,
                "known",
                vec![packed(2, 50, 5, 512)],
            )],
        })
        .await
        .unwrap();
    store
        .move_folder_to_workspace(f.ws.id, ids[0], shared.id, DeviceId::NIL)
        .await
        .unwrap();
    for ws in [f.ws.id, shared.id] {
        let listed = list_from_zero(store, ws, 2).await;
        for m in &listed {
            assert_eq!(m.workspace, ws);
            assert_eq!(m, &store.item(ws, m.id).await.unwrap());
        }
    }
    let moved = store.item(shared.id, ids[2]).await.unwrap();
    assert_eq!(
        moved.chunks,
        vec![whole(1, 100), packed(2, 50, 5, 512), whole(1, 100)],
        "moved chunks are objects of their own; a known one keeps its entry"
    );
}

/// A page is read in windows of revisions; one that must reach past many
/// revisions no longer in the workspace (here 300 files moved out to a
/// shared workspace) still lists each remaining item once, in order, with
/// `has_more` right.
async fn pages_reach_across_long_runs_of_superseded_revisions(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (first, dir, last) = (ItemId::new(), ItemId::new(), ItemId::new());
    let mut batch = vec![
        file_of(first, None, "first", vec![whole(1, 10)]),
        folder(dir, None, "D", 1),
    ];
    batch.extend((0..300u16).map(|k| {
        file_of(
            ItemId::new(),
            Some(dir),
            &format!("f{k}"),
            vec![whole(2 + (k % 200) as u8, 10)],
        )
    }));
    commit(store, &f, batch).await;
    commit(
        store,
        &f,
        vec![file_of(last, None, "last", vec![whole(1, 10)])],
    )
    .await;
    let shared = store
        .create_workspace(f.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    store
        .move_folder_to_workspace(f.ws.id, dir, shared.id, DeviceId::NIL)
        .await
        .unwrap();
    let whole_listing = list_from_zero(store, f.ws.id, 1000).await;
    let ids: Vec<ItemId> = whole_listing.iter().map(|m| m.id).collect();
    // The folder itself stays behind, deleted, as the newest change.
    assert_eq!(ids, vec![first, last, dir]);
    assert_eq!(
        (whole_listing[1].revision, whole_listing[2].revision),
        (303, 304)
    );
    for limit in [1, 2, 3] {
        assert_eq!(list_from_zero(store, f.ws.id, limit).await, whole_listing);
    }
    let page = store.get_changes(f.ws.id, 0, 1).await.unwrap();
    assert!(page.has_more && page.items.len() == 1);
    let moved = list_from_zero(store, shared.id, 7).await;
    assert_eq!(moved.len(), 300, "the folder's files, not the folder");
    for m in &moved {
        assert_eq!(m, &store.item(shared.id, m.id).await.unwrap());
    }
}

/// The feed packs each item's fixed-format columns and its chunk list into
/// one text value per window (src/packed_item.rs); names and MIME types
/// holding the separators and the escapes, empty MIME types, empty files, folders and a file of
/// thousands of chunks, partly packed, must all come back as a read of
/// the single item gives them.
async fn odd_names_and_long_chunk_lists_list_as_stored(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 40).await;
    stock(store, &f, f.ws.id).await;
    let chunk = |k: u16| {
        let mut id = [0xa5; 32];
        id[..2].copy_from_slice(&k.to_le_bytes());
        let mut c = ChunkRef::whole(ChunkId(id), 10 + u32::from(k % 7));
        if !k.is_multiple_of(3) {
            c.span = Some(stacksync_proto::PackSpan {
                pack: ChunkId([5 + (k % 5) as u8; 32]),
                offset: u64::from(k) * 100,
                len: 60,
            });
        }
        c
    };
    let dir = ItemId::new();
    let mut items = vec![folder(dir, None, "a|b,c:d", 1)];
    for (k, n) in [
        "|", ",", ":", "x|1|2", "é,ü:ß", "'quoted'", "a\\b", "x\\s=", "=\\\\",
    ]
    .iter()
    .enumerate()
    {
        let mut p = file_of(ItemId::new(), Some(dir), n, vec![chunk(k as u16)]);
        p.mimetype = Some(format!("odd/{n}|,:"));
        items.push(p);
    }
    let mut empty_mime = file(ItemId::new(), None, "empty", 1, 1, 0);
    empty_mime.mimetype = Some(String::new());
    items.push(empty_mime);
    let mut no_mime = folder(ItemId::new(), Some(dir), "no mime", 1);
    no_mime.mimetype = None;
    items.push(no_mime);
    let many = ItemId::new();
    items.push(file_of(many, None, "many", (0..3000).map(chunk).collect()));
    commit(store, &f, items).await;
    let listed = list_from_zero(store, f.ws.id, 4).await;
    assert_eq!(listed.len(), 13);
    for m in &listed {
        assert_eq!(m, &store.item(f.ws.id, m.id).await.unwrap(), "{}", m.name);
    }
    let many = listed.iter().find(|m| m.id == many).unwrap();
    assert_eq!(many.chunks, (0..3000).map(chunk).collect::<Vec<_>>());
    let empty = listed.iter().find(|m| m.name.as_str() == "empty").unwrap();
    assert_eq!(empty.mimetype.as_deref(), Some(""));
    assert!(empty.chunks.is_empty() && empty.content_hash.is_some());
}
