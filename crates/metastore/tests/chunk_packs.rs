//! Chunk locations (packs) in the metadata store, on SQLite and PostgreSQL:
//! one location per chunk and workspace, first claim wins, everything the
//! store sends carries the stored location, and databases of the first
//! schema upgrade with their chunks as objects of their own.

mod common;

use common::*;
use stacksync_metastore::MetaStore;
use stacksync_metastore::testing::OldSchemaDb;
use stacksync_proto::{ChunkId, ChunkRef, CommitOutcome, DeviceId, ItemId, ItemMeta};

conformance!(
    locations_are_recorded_and_returned,
    first_claim_of_a_location_wins,
    recommit_with_other_locations_is_the_same_version,
    locate_chunks_answers_each_id,
    moved_folders_index_chunks_as_objects_of_their_own,
);

fn outcome_meta(o: &CommitOutcome) -> &ItemMeta {
    match o {
        CommitOutcome::Committed { meta } => meta,
        CommitOutcome::Conflict { current } => current,
        CommitOutcome::Refused { error } => panic!("refused: {error:?}"),
    }
}

async fn locations_are_recorded_and_returned(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let (a, b) = (ItemId::new(), ItemId::new());
    let chunks = vec![packed(1, 100, 9, 0), ChunkRef::whole(ChunkId([2; 32]), 50)];
    let r = commit(
        store,
        &f,
        vec![
            file_of(a, None, "a", chunks.clone()),
            file_of(b, None, "b", vec![packed(3, 10, 9, 140)]),
        ],
    )
    .await;
    assert_eq!(outcome_meta(&r.results[0].outcome).chunks, chunks);
    // Every way of reading a version back carries the locations.
    assert_eq!(store.item(f.ws.id, a).await.unwrap().chunks, chunks);
    assert_eq!(store.version(f.ws.id, a, 1).await.unwrap().chunks, chunks);
    assert_eq!(store.versions(f.ws.id, a).await.unwrap()[0].chunks, chunks);
    let page = store.get_changes(f.ws.id, 0, 10).await.unwrap();
    assert_eq!(page.items[0].chunks, chunks);
    assert_eq!(page.items[1].chunks, vec![packed(3, 10, 9, 140)]);
    assert_eq!(
        store.children(f.ws.id, None).await.unwrap()[0].chunks,
        chunks
    );
    // A new version naming the chunk without a location gets the stored one.
    let mut v2 = file_of(a, None, "a", vec![ChunkRef::whole(ChunkId([1; 32]), 100)]);
    v2.version = 2;
    v2.status = stacksync_proto::ItemStatus::Changed;
    let v2 = committed(&commit(store, &f, vec![v2]).await);
    assert_eq!(v2.chunks, vec![packed(1, 100, 9, 0)]);
}

async fn first_claim_of_a_location_wins(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let (a, b, c, d) = (ItemId::new(), ItemId::new(), ItemId::new(), ItemId::new());
    // Within one batch, and within one item: the first mention decides.
    let r = commit(
        store,
        &f,
        vec![
            file_of(
                a,
                None,
                "a",
                vec![packed(1, 100, 8, 0), packed(1, 100, 8, 500)],
            ),
            file_of(b, None, "b", vec![packed(1, 100, 7, 0)]),
        ],
    )
    .await;
    let first = packed(1, 100, 8, 0);
    assert_eq!(outcome_meta(&r.results[0].outcome).chunks, vec![first; 2]);
    assert_eq!(outcome_meta(&r.results[1].outcome).chunks, vec![first]);
    // A later batch claiming another location gets the stored one back.
    let later = committed(
        &commit(
            store,
            &f,
            vec![file_of(c, None, "c", vec![packed(1, 100, 6, 9)])],
        )
        .await,
    );
    assert_eq!(later.chunks, vec![first]);
    // A chunk stored as an object of its own stays one.
    let whole = ChunkRef::whole(ChunkId([2; 32]), 30);
    committed(&commit(store, &f, vec![file_of(d, None, "d", vec![whole])]).await);
    let e = committed(
        &commit(
            store,
            &f,
            vec![file_of(ItemId::new(), None, "e", vec![packed(2, 30, 6, 0)])],
        )
        .await,
    );
    assert_eq!(e.chunks, vec![whole]);
    assert_eq!(
        store
            .locate_chunks(f.ws.id, &[first.id, whole.id])
            .await
            .unwrap(),
        vec![Some(first), Some(whole)]
    );
    // A conflict's current version carries the stored locations too.
    let other = store
        .upsert_device(f.user.id, None, "phone", "", "", None)
        .await
        .unwrap();
    let stale = commit_as(
        store,
        &f,
        other.id,
        vec![file_of(a, None, "a", vec![packed(5, 1, 6, 0)])],
    )
    .await;
    let CommitOutcome::Conflict { current } = &stale.results[0].outcome else {
        panic!("{stale:?}")
    };
    assert_eq!(current.chunks, vec![first; 2]);
}

async fn recommit_with_other_locations_is_the_same_version(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let (a, b) = (ItemId::new(), ItemId::new());
    // Another device stores the chunk first ...
    let other = store
        .upsert_device(f.user.id, None, "phone", "", "", None)
        .await
        .unwrap();
    committed(
        &commit_as(
            store,
            &f,
            other.id,
            vec![file_of(b, None, "b", vec![packed(1, 100, 8, 0)])],
        )
        .await,
    );
    // ... so this device's version gets the stored location, not its own,
    let mine = file_of(a, None, "a", vec![packed(1, 100, 7, 64)]);
    let first = committed(&commit(store, &f, vec![mine.clone()]).await);
    assert_eq!(first.chunks, vec![packed(1, 100, 8, 0)]);
    let revision = store
        .workspace_as(f.user.id, f.ws.id)
        .await
        .unwrap()
        .latest_revision;
    // and its retry (still naming its own location) is the same version.
    let retry = commit(store, &f, vec![mine]).await;
    assert_eq!(committed(&retry), first);
    assert_eq!(retry.revision, revision);
    assert_eq!(store.versions(f.ws.id, a).await.unwrap().len(), 1);
    // A retry naming the chunk without a location is the same version too.
    let mut plain = file_of(a, None, "a", vec![ChunkRef::whole(ChunkId([1; 32]), 100)]);
    plain.client_modified = first.client_modified;
    assert_eq!(committed(&commit(store, &f, vec![plain]).await), first);
    // Different content is still a conflict.
    let changed = file_of(a, None, "a", vec![packed(2, 100, 8, 0)]);
    let r = commit(store, &f, vec![changed]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Conflict { .. }),
        "{r:?}"
    );
}

async fn locate_chunks_answers_each_id(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let g = fixture(store, "b@x.org", 1 << 30).await;
    stock(store, &g, g.ws.id).await;
    let mine = packed(1, 100, 8, 0);
    let whole = ChunkRef::whole(ChunkId([2; 32]), 7);
    let theirs = packed(3, 5, 9, 0);
    committed(
        &commit(
            store,
            &f,
            vec![file_of(ItemId::new(), None, "a", vec![mine, whole])],
        )
        .await,
    );
    committed(
        &commit(
            store,
            &g,
            vec![file_of(ItemId::new(), None, "b", vec![theirs])],
        )
        .await,
    );
    let unknown = ChunkId([4; 32]);
    assert_eq!(
        store
            .locate_chunks(f.ws.id, &[unknown, mine.id, theirs.id, whole.id, mine.id])
            .await
            .unwrap(),
        vec![None, Some(mine), None, Some(whole), Some(mine)]
    );
    assert!(store.locate_chunks(f.ws.id, &[]).await.unwrap().is_empty());
    // More ids than one statement binds: answers stay in order.
    let mut many: Vec<ChunkId> = (0..450u32)
        .map(|i| {
            let mut id = [0xee; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            ChunkId(id)
        })
        .collect();
    many[0] = whole.id;
    many[449] = mine.id;
    let answers = store.locate_chunks(f.ws.id, &many).await.unwrap();
    assert_eq!(answers.len(), 450);
    assert_eq!((answers[0], answers[449]), (Some(whole), Some(mine)));
    assert_eq!(answers.iter().filter(|a| a.is_some()).count(), 2);
}

async fn moved_folders_index_chunks_as_objects_of_their_own(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    stock(store, &f, f.ws.id).await;
    let shared = store
        .create_workspace(f.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    stock(store, &f, shared.id).await;
    let (dir, inside, outside) = (ItemId::new(), ItemId::new(), ItemId::new());
    let (moving, staying) = (packed(1, 100, 8, 0), packed(2, 50, 8, 140));
    let already = packed(3, 10, 8, 230);
    commit(
        store,
        &f,
        vec![
            folder(dir, None, "D", 1),
            file_of(inside, Some(dir), "in", vec![moving, already]),
            file_of(outside, None, "out", vec![staying]),
        ],
    )
    .await;
    // The target knows one of the chunks already, somewhere else.
    let known = packed(3, 10, 5, 0);
    store
        .commit(&stacksync_proto::CommitRequest {
            workspace: shared.id,
            device: f.device.id,
            items: vec![file_of(ItemId::new(), None, "known", vec![known])],
        })
        .await
        .unwrap();
    // What to copy: each chunk where the source stores it.
    let mut to_copy = store.subtree_chunks(f.ws.id, Some(dir)).await.unwrap();
    to_copy.sort_by_key(|c| c.id);
    assert_eq!(to_copy, vec![moving, already]);

    store
        .move_folder_to_workspace(f.ws.id, dir, shared.id, DeviceId::NIL)
        .await
        .unwrap();
    let moved = store.item(shared.id, inside).await.unwrap();
    assert_eq!(
        moved.chunks,
        vec![ChunkRef::whole(moving.id, moving.size), known],
        "copied chunks are objects of their own; a known one keeps its entry"
    );
    assert_eq!(
        store
            .locate_chunks(shared.id, &[moving.id, staying.id])
            .await
            .unwrap(),
        vec![Some(ChunkRef::whole(moving.id, moving.size)), None]
    );
    // The source no longer uses the moved chunk; the other keeps its pack.
    assert_eq!(
        store
            .locate_chunks(f.ws.id, &[moving.id, staying.id])
            .await
            .unwrap(),
        vec![None, Some(staying)]
    );
    assert_eq!(
        store.item(f.ws.id, outside).await.unwrap().chunks,
        vec![staying]
    );
}

/// A database written by a server of the first schema upgrades: its rows
/// are kept, and its chunks are objects of their own.
async fn first_schema_upgrades(postgres: bool) {
    let Some(old) = OldSchemaDb::new(postgres, 1).await else {
        return;
    };
    let (user, ws, device, item) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        ItemId::new(),
    );
    let chunk = ChunkId([6; 32]);
    let statements: Vec<(&str, Vec<String>)> = vec![
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
            "INSERT INTO workspaces (id, owner_id, is_shared, encryption, container, created_at) \
             VALUES ($1, $2, 0, 'plain', 'c-old', 1)",
            vec![ws.clone(), user.clone()],
        ),
        (
            "INSERT INTO workspace_members (workspace_id, user_id, name, is_owner, joined_at) \
             VALUES ($1, $2, 'StackSync', 1, 1)",
            vec![ws.clone(), user.clone()],
        ),
        (
            "INSERT INTO items (id, workspace_id, parent_id, name, is_folder, status, latest_version, \
             revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, $2, '', 'old.txt', 0, 'NEW', 1, 1, $3, 12, 1, 1, $4)",
            vec![item.to_string(), ws.clone(), chunk.to_hex(), device.clone()],
        ),
        (
            "INSERT INTO item_versions (item_id, version, workspace_id, parent_id, name, is_folder, \
             status, revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, 1, $2, '', 'old.txt', 0, 'NEW', 1, $3, 12, 1, 1, $4)",
            vec![item.to_string(), ws.clone(), chunk.to_hex(), device.clone()],
        ),
        (
            "INSERT INTO version_chunks (item_id, version, seq, chunk_id, size) VALUES ($1, 1, 0, $2, 12)",
            vec![item.to_string(), chunk.to_hex()],
        ),
        (
            "INSERT INTO chunk_refs (workspace_id, chunk_id, size, refs) VALUES ($1, $2, 12, 1)",
            vec![ws.clone(), chunk.to_hex()],
        ),
        (
            "UPDATE workspaces SET latest_revision = 1 WHERE id = $1",
            vec![ws.clone()],
        ),
    ];
    old.execute(&statements).await;
    let store = old.upgrade().await;
    let ws = ws.parse().unwrap();
    let whole = ChunkRef::whole(chunk, 12);
    let page = store.get_changes(ws, 0, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (page.items[0].id, &page.items[0].chunks),
        (item, &vec![whole])
    );
    assert_eq!(
        store.locate_chunks(ws, &[chunk]).await.unwrap(),
        vec![Some(whole)]
    );
    // A new version proposing a pack for the old chunk keeps it where it was.
    let mut v2 = file_of(item, None, "old.txt", vec![packed(6, 12, 1, 0)]);
    v2.version = 2;
    v2.status = stacksync_proto::ItemStatus::Changed;
    let r = store
        .commit(&stacksync_proto::CommitRequest {
            workspace: ws,
            device: device.parse().unwrap(),
            items: vec![v2],
        })
        .await
        .unwrap();
    assert_eq!(committed(&r).chunks, vec![whole]);
    // Connecting again finds nothing left to migrate.
    store.close().await;
    MetaStore::connect(&old.url)
        .await
        .expect("a second connect works");
}

mod migration {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_first_schema_upgrades() {
        super::first_schema_upgrades(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_first_schema_upgrades() {
        super::first_schema_upgrades(true).await;
    }
}
