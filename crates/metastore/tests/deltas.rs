//! Chunks stored as deltas against a base (`PackSpan::base`, migration
//! 0007), on SQLite and PostgreSQL: claims are checked, every way of
//! reading a version gives the base, and a base stays stored (and
//! locatable) exactly as long as a delta someone can read needs it.

mod common;

use common::*;
use stacksync_metastore::{Charge, MetaStore};
use stacksync_proto::{ChunkId, ChunkRef, CommitOutcome, ErrorKind, ItemId, WorkspaceId};

conformance!(
    a_base_lives_as_long_as_a_delta_needs_it,
    delta_claims_name_a_whole_indexed_base,
);

const ALL: i64 = i64::MAX;

fn obj(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

async fn record(store: &MetaStore, f: &Fixture, ws: WorkspaceId, id: ChunkId) {
    store
        .record_object(ws, id, 1 << 20, Some(f.user.id), Charge::Always)
        .await
        .unwrap();
}

/// Chunk `seed` stored at the start of pack `pack` as a delta against
/// chunk `base`.
fn delta(seed: u8, size: u32, pack: u8, base: u8) -> ChunkRef {
    let mut c = packed(seed, size, pack, 0);
    c.span = c.span.map(|s| s.delta_of(Some(obj(base))));
    c
}

fn version(id: ItemId, n: &str, v: u64, chunk: ChunkRef) -> stacksync_proto::ProposedItem {
    let mut p = file(id, None, n, v, chunk.id.0[0], chunk.size);
    p.chunks = vec![chunk];
    p
}

fn refusal(r: &stacksync_proto::CommitResult) -> (ErrorKind, String) {
    match &r.results[0].outcome {
        CommitOutcome::Refused { error } => (error.kind, error.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn marked(store: &MetaStore, ws: WorkspaceId) -> Vec<ChunkId> {
    let plan = store.mark_garbage(ws, ALL, ALL, false).await.unwrap();
    let mut ids: Vec<ChunkId> = plan.objects.iter().map(|o| o.id).collect();
    ids.sort();
    ids
}

async fn a_base_lives_as_long_as_a_delta_needs_it(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 40).await;
    let ws = f.ws.id;
    for pack in [0x71, 0x72] {
        record(store, &f, ws, obj(pack)).await;
    }
    let id = ItemId::new();
    // Version 1 whole in pack 0x71, version 2 a delta against it in 0x72.
    let base = packed(1, 1000, 0x71, 0);
    committed(&commit(store, &f, vec![version(id, "f", 1, base)]).await);
    let patch = delta(2, 1001, 0x72, 1);
    let v2 = committed(&commit(store, &f, vec![version(id, "f", 2, patch)]).await);
    assert_eq!(v2.chunks, vec![patch], "the commit reply keeps the base");
    // Every way of reading the version gives the base.
    assert_eq!(store.item(ws, id).await.unwrap().chunks, vec![patch]);
    assert_eq!(store.version(ws, id, 2).await.unwrap().chunks, vec![patch]);
    let page = store.get_changes(ws, 0, 10).await.unwrap();
    assert_eq!(page.items[0].chunks, vec![patch]);
    // Another file takes the same chunk from the index: a delta too.
    let copy = ItemId::new();
    let mut proposal = version(copy, "copy", 1, ChunkRef::whole(patch.id, 1001));
    proposal.chunks[0].span = None;
    let again = committed(&commit(store, &f, vec![proposal]).await);
    assert_eq!(again.chunks, vec![patch]);
    // The base is where a reader finds it, and only a whole chunk is one.
    assert_eq!(
        store
            .locate_bases(ws, &[obj(1), obj(2), obj(9)])
            .await
            .unwrap(),
        vec![Some(base), None, None]
    );

    // Version 1 expires: its chunk is no version's any more, but the
    // delta needs it, so neither pack is collected.
    record(store, &f, ws, obj(0x73)).await;
    let v3 = committed(&commit(store, &f, vec![version(id, "f", 3, packed(3, 10, 0x73, 0))]).await);
    assert_eq!(marked(store, ws).await, vec![], "retention keeps the base");
    assert_eq!(store.versions(ws, id).await.unwrap().len(), 1);
    assert_eq!(
        store.locate_bases(ws, &[obj(1)]).await.unwrap(),
        vec![Some(base)]
    );
    // Still needed while the copy reads the delta.
    record(store, &f, ws, obj(0x74)).await;
    let v4 = committed(&commit(store, &f, vec![version(id, "f", 4, packed(4, 10, 0x74, 0))]).await);
    assert_eq!(v4.version, 4);
    assert_eq!(marked(store, ws).await, vec![obj(0x73)]);
    let copy_meta = store.item(ws, copy).await.unwrap();
    committed(&commit(store, &f, vec![delete_of(&copy_meta)]).await);
    // Once nothing reads the delta, its pack and its base's go together.
    assert_eq!(
        marked(store, ws).await,
        vec![obj(0x71), obj(0x72), obj(0x73)]
    );
    assert_eq!(store.locate_bases(ws, &[obj(1)]).await.unwrap(), vec![None]);
    let _ = v3;
}

async fn delta_claims_name_a_whole_indexed_base(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 40).await;
    let ws = f.ws.id;
    for pack in [0x71, 0x72, 0x73] {
        record(store, &f, ws, obj(pack)).await;
    }
    // A base the workspace does not store.
    let r = commit(
        store,
        &f,
        vec![version(ItemId::new(), "a", 1, delta(2, 10, 0x72, 1))],
    )
    .await;
    let (kind, message) = refusal(&r);
    assert_eq!(kind, ErrorKind::NotFound, "{message}");
    assert!(message.contains("does not store"), "{message}");
    // A base that is itself a delta: no chains.
    committed(
        &commit(
            store,
            &f,
            vec![version(ItemId::new(), "b", 1, packed(1, 10, 0x71, 0))],
        )
        .await,
    );
    committed(
        &commit(
            store,
            &f,
            vec![version(ItemId::new(), "c", 1, delta(2, 10, 0x72, 1))],
        )
        .await,
    );
    let r = commit(
        store,
        &f,
        vec![version(ItemId::new(), "d", 1, delta(3, 10, 0x73, 2))],
    )
    .await;
    let (kind, message) = refusal(&r);
    assert_eq!(kind, ErrorKind::BadRequest, "{message}");
    assert!(message.contains("itself a delta"), "{message}");
    // A base brought in earlier in the same batch is indexed by then.
    let (x, y) = (ItemId::new(), ItemId::new());
    let mut batch = commit(
        store,
        &f,
        vec![
            version(x, "x", 1, packed(5, 10, 0x73, 100)),
            version(y, "y", 1, delta(6, 10, 0x73, 5)),
        ],
    )
    .await;
    let y_meta = match batch.results.remove(1).outcome {
        CommitOutcome::Committed { meta } => meta,
        other => panic!("{other:?}"),
    };
    assert_eq!(y_meta.chunks[0].span.unwrap().base, Some(obj(5)));
    // Nothing refused was recorded as a hold: deleting everything frees
    // every pack.
    for item in store.get_changes(ws, 0, 100).await.unwrap().items {
        if item.status.is_live() {
            committed(&commit(store, &f, vec![delete_of(&item)]).await);
        }
    }
    assert_eq!(
        marked(store, ws).await,
        vec![obj(0x71), obj(0x72), obj(0x73)]
    );
}
