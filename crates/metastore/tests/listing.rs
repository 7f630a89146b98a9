//! Listing a workspace from 0 through the change feed, on SQLite and
//! PostgreSQL. A device that starts from nothing learns the whole tree this
//! way, so in pages of any size the listing must be exactly the current
//! tree: every item once, at its latest version, with its whole chunk list
//! in order and each chunk's location, as a read of the single item gives
//! them.

mod common;

use std::collections::BTreeSet;

use common::*;
use stacksync_metastore::{MetaStore, SharedWorkspaces};
use stacksync_proto::{ChunkId, ChunkRef, DeviceId, ItemId, ItemMeta, Workspace, WorkspaceId};

conformance!(
    listing_from_zero_in_small_pages_is_the_current_tree,
    page_size_does_not_change_the_listing,
    listing_after_a_folder_move_carries_the_new_locations,
    pages_reach_across_long_runs_of_superseded_revisions,
    odd_names_and_long_chunk_lists_list_as_stored,
    stored_chunk_lists_follow_claims_collection_reuse_and_removal,
    moving_a_file_with_a_repeated_chunk_keeps_the_sources_entry,
    a_dissolved_shared_folder_moves_back_whole,
    guarded_moves_happen_only_if_nothing_changed_since,
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
/// Moves folder `dir` of `f`'s workspace into a new shared workspace,
/// which it returns.
async fn share_folder(store: &MetaStore, f: &Fixture, dir: ItemId) -> Workspace {
    let shared = store
        .create_workspace(f.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    store
        .move_folder_to_workspace(f.ws.id, dir, shared.id, DeviceId::NIL)
        .await
        .unwrap();
    shared
}

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

/// A shared folder whose last member left moves back into its owner's
/// private workspace: the folder lives again (at the place given), every
/// item of the shared workspace, those created there included, is under it
/// with its id, history and chunks, the listing of the private workspace is
/// its tree, and the shared workspace has no members left.
async fn a_dissolved_shared_folder_moves_back_whole(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let ids = varied_tree(store, &f).await;
    let docs = ids[0];
    let shared = store
        .create_workspace(f.user.id, "Docs", true, Default::default())
        .await
        .unwrap();
    store
        .move_folder_to_workspace(f.ws.id, docs, shared.id, DeviceId::NIL)
        .await
        .unwrap();
    assert!(!store.item(f.ws.id, docs).await.unwrap().status.is_live());
    let made_there = ItemId::new();
    stock(store, &f, shared.id).await;
    store
        .commit(&stacksync_proto::CommitRequest {
            workspace: shared.id,
            device: f.device.id,
            items: vec![file_of(made_there, None, "made there", vec![whole(9, 33)])],
        })
        .await
        .unwrap();
    let in_shared: Vec<ItemMeta> = list_from_zero(store, shared.id, 1000).await;
    let name = stacksync_proto::ItemName::new("Docs again").unwrap();
    let back = store
        .move_workspace_into_folder(shared.id, f.ws.id, docs, None, &name, DeviceId::NIL)
        .await
        .unwrap();
    let folder = back.folder.expect("the folder lives again");
    assert_eq!((folder.id, folder.name.as_str()), (docs, "Docs again"));
    assert!(folder.status.is_live() && folder.parent.is_none());
    let listed = list_from_zero(store, f.ws.id, 3).await;
    for m in &listed {
        assert_eq!(m, &store.item(f.ws.id, m.id).await.unwrap());
    }
    for was in &in_shared {
        let now = store.item(f.ws.id, was.id).await.unwrap();
        let parent = if was.parent.is_none() {
            Some(docs)
        } else {
            was.parent
        };
        assert_eq!(
            (
                now.workspace,
                now.parent,
                now.version,
                &now.name,
                now.content_hash
            ),
            (f.ws.id, parent, was.version, &was.name, was.content_hash),
            "{} moved back as it was",
            was.name
        );
        assert_eq!(
            now.chunks
                .iter()
                .map(|c| (c.id, c.size))
                .collect::<Vec<_>>(),
            was.chunks
                .iter()
                .map(|c| (c.id, c.size))
                .collect::<Vec<_>>()
        );
        assert!(listed.iter().any(|m| m.id == was.id));
    }
    assert!(in_shared.iter().any(|m| m.id == made_there));
    assert!(store.members(shared.id).await.unwrap().is_empty());
    assert!(
        store
            .get_changes(shared.id, 0, 100)
            .await
            .unwrap()
            .items
            .is_empty()
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
    let shared = share_folder(store, &f, dir).await;
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
                base: None,
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

/// Every item the feed lists for `ws` from 0 is what a read of the single
/// item gives (its chunk list read from the chunk tables).
async fn assert_listing_is_the_items(store: &MetaStore, ws: WorkspaceId) -> Vec<ItemMeta> {
    let listed = list_from_zero(store, ws, 3).await;
    for m in &listed {
        assert_eq!(m, &store.item(ws, m.id).await.unwrap(), "{}", m.name);
    }
    listed
}

/// Each item row stores its latest chunk list with locations (migration
/// 0006); the feed reads it instead of the chunk tables. It must stay what
/// the tables say: a later claim that loses to the index, a member's own
/// upload that overrides another's claim, history collection that drops a
/// chunk from the index, a new claim of that chunk, and the removal of the
/// member whose versions stay in the workspace.
async fn stored_chunk_lists_follow_claims_collection_reuse_and_removal(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let (first, later, edited) = (ItemId::new(), ItemId::new(), ItemId::new());
    commit(
        store,
        &f,
        vec![
            file_of(first, None, "first", vec![packed(1, 100, 9, 0)]),
            file_of(
                edited,
                None,
                "edited",
                vec![packed(1, 100, 9, 0), whole(2, 5)],
            ),
        ],
    )
    .await;
    // A later claim of the same chunk elsewhere loses to the index.
    commit(
        store,
        &f,
        vec![file_of(later, None, "later", vec![packed(1, 100, 7, 0)])],
    )
    .await;
    // A member whose own pack holds the chunk reads it from there.
    let b = fixture(store, "b@x.org", 1 << 30).await;
    store
        .add_member(f.ws.id, b.user.id, "A's", None, None, false)
        .await
        .unwrap();
    let own = ChunkId([0x30; 32]);
    store
        .record_object(
            f.ws.id,
            own,
            1 << 20,
            Some(b.user.id),
            stacksync_metastore::Charge::Always,
        )
        .await
        .unwrap();
    let theirs = ItemId::new();
    let mut in_own = packed(1, 100, 9, 0);
    in_own.span = Some(stacksync_proto::PackSpan {
        pack: own,
        offset: 64,
        len: 140,
        base: None,
    });
    commit_as(
        store,
        &f,
        b.device.id,
        vec![file_of(theirs, None, "theirs", vec![in_own, whole(3, 5)])],
    )
    .await;
    let listed = assert_listing_is_the_items(store, f.ws.id).await;
    let by_id =
        |listed: &[ItemMeta], id: ItemId| listed.iter().find(|m| m.id == id).unwrap().clone();
    assert_eq!(by_id(&listed, later).chunks, vec![packed(1, 100, 9, 0)]);
    assert_eq!(by_id(&listed, theirs).chunks, vec![in_own, whole(3, 5)]);

    // Every use of chunk 1 but the member's goes; collecting history
    // drops the index entry's other uses, and a new version that brings
    // chunk 2 back in claims a new place for it.
    let current = store.item(f.ws.id, edited).await.unwrap();
    let mut v2 = file_of(edited, None, "edited", vec![whole(4, 5)]);
    v2.version = current.version + 1;
    v2.status = stacksync_proto::ItemStatus::Changed;
    committed(&commit(store, &f, vec![v2]).await);
    for id in [first, later] {
        let m = store.item(f.ws.id, id).await.unwrap();
        committed(&commit(store, &f, vec![delete_of(&m)]).await);
    }
    let plan = store
        .mark_garbage(f.ws.id, 0, i64::MAX, false)
        .await
        .unwrap();
    assert!(plan.pruned_versions >= 3, "{plan:?}");
    assert_eq!(
        store
            .locate_chunks(f.ws.id, &[ChunkId([2; 32])])
            .await
            .unwrap(),
        vec![None],
        "no version uses chunk 2 any more"
    );
    let back = ItemId::new();
    commit(
        store,
        &f,
        vec![file_of(back, None, "back", vec![packed(2, 5, 8, 4096)])],
    )
    .await;
    let listed = assert_listing_is_the_items(store, f.ws.id).await;
    assert_eq!(by_id(&listed, back).chunks, vec![packed(2, 5, 8, 4096)]);
    assert_eq!(by_id(&listed, theirs).chunks, vec![in_own, whole(3, 5)]);

    // The member leaves the service; their version stays, read from
    // their pack as before.
    store
        .remove_user(b.user.id, SharedWorkspaces::Refuse)
        .await
        .unwrap();
    let listed = assert_listing_is_the_items(store, f.ws.id).await;
    assert_eq!(by_id(&listed, theirs).chunks, vec![in_own, whole(3, 5)]);
}

/// A version uses a chunk once however often it repeats in it: moving a
/// folder whose file repeats a chunk used to take two uses off the
/// source's index entry, which then went while a file left behind still
/// used it (and with it that file's location).
async fn moving_a_file_with_a_repeated_chunk_keeps_the_sources_entry(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let (dir, stays) = (ItemId::new(), ItemId::new());
    let c = packed(1, 100, 9, 0);
    commit(
        store,
        &f,
        vec![
            folder(dir, None, "D", 1),
            file_of(ItemId::new(), Some(dir), "twice", vec![c, c]),
            file_of(stays, None, "stays", vec![c]),
        ],
    )
    .await;
    let shared = share_folder(store, &f, dir).await;
    assert_eq!(
        store.locate_chunks(f.ws.id, &[c.id]).await.unwrap(),
        vec![Some(c)]
    );
    let left = assert_listing_is_the_items(store, f.ws.id).await;
    assert_eq!(left.iter().find(|m| m.id == stays).unwrap().chunks, vec![c]);
    let moved = assert_listing_is_the_items(store, shared.id).await;
    assert_eq!(moved[0].chunks, vec![whole(1, 100), whole(1, 100)]);
}

/// A database of schema 5 (before items stored their chunk lists) with a
/// folder, an empty file and a file of two chunks, one placed by the index
/// and one by the version's own location, upgrades to lists that say what
/// the chunk tables say.
async fn schema_5_upgrades_with_chunk_lists(postgres: bool) {
    let Some(old) = stacksync_metastore::testing::OldSchemaDb::new(postgres, 5).await else {
        return;
    };
    let (user, ws, device) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let (dir, empty, file) = (ItemId::new(), ItemId::new(), ItemId::new());
    let (c6, c7) = (ChunkId([6; 32]).to_hex(), ChunkId([7; 32]).to_hex());
    let (p, q) = (ChunkId([0x50; 32]).to_hex(), ChunkId([0x51; 32]).to_hex());
    let item = |id: ItemId, name: &str, folder: i64, size: i64, rev: i64| {
        vec![
            id.to_string(),
            ws.clone(),
            name.to_string(),
            folder.to_string(),
            size.to_string(),
            rev.to_string(),
            device.clone(),
        ]
    };
    let mut statements: Vec<(&str, Vec<String>)> = vec![
        (
            "INSERT INTO users (id, email, name, password_hash, quota_limit, created_at) \
             VALUES ($1, 'old@x.org', 'old', 'h', 1000000, 1)",
            vec![user.clone()],
        ),
        (
            "INSERT INTO devices (id, user_id, name, last_access) VALUES ($1, $2, 'pc', 1)",
            vec![device.clone(), user.clone()],
        ),
        (
            "INSERT INTO workspaces (id, owner_id, is_shared, encryption, container, created_at, \
             latest_revision) VALUES ($1, $2, 0, 'plain', 'c-old', 1, 3)",
            vec![ws.clone(), user.clone()],
        ),
        (
            "INSERT INTO workspace_members (workspace_id, user_id, name, is_owner, joined_at) \
             VALUES ($1, $2, 'StackSync', 1, 1)",
            vec![ws.clone(), user.clone()],
        ),
    ];
    for row in [
        item(dir, "d", 1, 0, 1),
        item(empty, "e", 0, 0, 2),
        item(file, "f", 0, 80, 3),
    ] {
        statements.push((
            "INSERT INTO items (id, workspace_id, parent_id, name, name_key, is_folder, status, \
             latest_version, revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, $2, '', $3, $3, CAST($4 AS BIGINT), 'NEW', 1, CAST($6 AS BIGINT), NULL, \
             CAST($5 AS BIGINT), 1, 1, $7)",
            row.clone(),
        ));
        statements.push((
            "INSERT INTO item_versions (item_id, version, workspace_id, parent_id, name, is_folder, \
             status, revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, 1, $2, '', $3, CAST($4 AS BIGINT), 'NEW', CAST($6 AS BIGINT), NULL, \
             CAST($5 AS BIGINT), 1, 1, $7)",
            row,
        ));
    }
    statements.extend([
        (
            "INSERT INTO version_chunks (item_id, version, seq, chunk_id, size) VALUES ($1, 1, 0, $2, 50)",
            vec![file.to_string(), c6.clone()],
        ),
        (
            "INSERT INTO version_chunks (item_id, version, seq, chunk_id, size, pack_id, pack_offset, \
             pack_len) VALUES ($1, 1, 1, $2, 30, $3, 0, 70)",
            vec![file.to_string(), c7.clone(), q.clone()],
        ),
        (
            "INSERT INTO chunk_refs (workspace_id, chunk_id, size, refs, pack_id, pack_offset, pack_len) \
             VALUES ($1, $2, 50, 1, $3, 10, 90)",
            vec![ws.clone(), c6, p.clone()],
        ),
        (
            "INSERT INTO chunk_refs (workspace_id, chunk_id, size, refs, pack_id, pack_offset, pack_len) \
             VALUES ($1, $2, 30, 1, $3, 100, 70)",
            vec![ws.clone(), c7, p],
        ),
    ]);
    old.execute(&statements).await;
    let store = old.upgrade().await;
    let ws: WorkspaceId = ws.parse().unwrap();
    let listed = assert_listing_is_the_items(&store, ws).await;
    assert_eq!(
        listed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![dir, empty, file]
    );
    let span = |pack: u8, offset: u64, len: u32| {
        Some(stacksync_proto::PackSpan {
            pack: ChunkId([pack; 32]),
            offset,
            len,
            base: None,
        })
    };
    let mut first = whole(6, 50);
    first.span = span(0x50, 10, 90);
    let mut own = whole(7, 30);
    own.span = span(0x51, 0, 70);
    assert_eq!(listed[2].chunks, vec![first, own]);
    assert!(listed[0].chunks.is_empty() && listed[1].chunks.is_empty());
}

mod migration {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_schema_5_upgrades_with_chunk_lists() {
        super::schema_5_upgrades_with_chunk_lists(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_schema_5_upgrades_with_chunk_lists() {
        super::schema_5_upgrades_with_chunk_lists(true).await;
    }
}

/// The moves the service makes after copying a folder's chunks happen
/// only if nothing in what moves changed after the revision the copy
/// started from: a version committed in between (whose chunks the copy
/// never saw) leaves everything where it was, for the service to copy
/// again and retry; a change elsewhere in the source does not count.
async fn guarded_moves_happen_only_if_nothing_changed_since(store: &MetaStore) {
    let f = fixture(store, "g@x.org", 1 << 30).await;
    let ids = varied_tree(store, &f).await;
    let (docs, a) = (ids[0], ids[2]);
    let shared = store
        .create_workspace(f.user.id, "Docs", true, Default::default())
        .await
        .unwrap();
    let since = store
        .workspace_as(f.user.id, f.ws.id)
        .await
        .unwrap()
        .latest_revision;
    // Edited inside the folder after `since`: nothing moves.
    let current = store.item(f.ws.id, a).await.unwrap();
    let mut v2 = file_of(a, Some(docs), "a", vec![whole(77, 10)]);
    v2.version = current.version + 1;
    v2.status = stacksync_proto::ItemStatus::Changed;
    committed(&commit(store, &f, vec![v2]).await);
    let refused = store
        .move_folder_to_workspace_if_unchanged(f.ws.id, docs, shared.id, DeviceId::NIL, since)
        .await
        .unwrap();
    assert!(refused.is_none());
    assert_eq!(store.item(f.ws.id, a).await.unwrap().workspace, f.ws.id);
    assert!(store.item(f.ws.id, docs).await.unwrap().status.is_live());
    assert!(list_from_zero(store, shared.id, 100).await.is_empty());
    // Changed elsewhere in the source only: it moves.
    let since = store
        .workspace_as(f.user.id, f.ws.id)
        .await
        .unwrap()
        .latest_revision;
    let other = store.item(f.ws.id, ids[3]).await.unwrap();
    committed(&commit(store, &f, vec![place_of(&other, None, "many renamed")]).await);
    let moved = store
        .move_folder_to_workspace_if_unchanged(f.ws.id, docs, shared.id, DeviceId::NIL, since)
        .await
        .unwrap()
        .expect("a change outside the folder does not stop the move");
    assert!(moved.folder.is_some());
    assert_eq!(
        store.item(shared.id, a).await.unwrap().chunks,
        vec![whole(77, 10)]
    );

    // Back: a commit into the shared workspace after `since` stops it too.
    let since = store
        .workspace_as(f.user.id, shared.id)
        .await
        .unwrap()
        .latest_revision;
    stock(store, &f, shared.id).await;
    store
        .commit(&stacksync_proto::CommitRequest {
            workspace: shared.id,
            device: f.device.id,
            items: vec![file_of(ItemId::new(), None, "late", vec![whole(78, 5)])],
        })
        .await
        .unwrap();
    let name = stacksync_proto::ItemName::new("Docs").unwrap();
    let back = || stacksync_metastore::FolderBack {
        folder: docs,
        parent: None,
        name: &name,
    };
    let refused = store
        .move_workspace_into_folder_if_unchanged(shared.id, f.ws.id, back(), DeviceId::NIL, since)
        .await
        .unwrap();
    assert!(refused.is_none());
    assert!(!store.item(f.ws.id, docs).await.unwrap().status.is_live());
    let since = store
        .workspace_as(f.user.id, shared.id)
        .await
        .unwrap()
        .latest_revision;
    let back = store
        .move_workspace_into_folder_if_unchanged(shared.id, f.ws.id, back(), DeviceId::NIL, since)
        .await
        .unwrap()
        .expect("unchanged since: it moves back");
    assert!(back.folder.is_some_and(|f| f.status.is_live()));
    assert_eq!(
        store.item(f.ws.id, a).await.unwrap().chunks,
        vec![whole(77, 10)]
    );
}
