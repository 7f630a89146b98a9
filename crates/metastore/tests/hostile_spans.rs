//! Finding 9: client-supplied offsets, lengths, sizes and versions that do
//! not fit the database's signed 64-bit columns. A pack span whose
//! `offset + len` wraps used to be stored as a negative offset, after
//! which `get_changes` failed for every member of the workspace. Now such
//! values are refused with a BadRequest, and a bad location stored before
//! the fix no longer breaks the feed.

mod common;

use common::*;
use stacksync_metastore::MetaStore;
use stacksync_proto::{ChunkId, ChunkRef, CommitOutcome, ErrorKind, ItemId, PackSpan};

conformance!(
    wrapping_spans_are_refused_and_the_feed_keeps_working,
    out_of_range_versions_and_sizes_are_refused,
    a_stored_bad_location_does_not_break_the_feed,
);

fn refusal(store_result: &CommitOutcome) -> ErrorKind {
    match store_result {
        CommitOutcome::Refused { error } => error.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A file of one packed chunk at `offset..offset + len` (bypassing
/// `PackSpan::new`, as a hostile client's own code would).
fn packed_file(seed: u8, offset: u64, len: u32) -> stacksync_proto::ProposedItem {
    let mut p = file(ItemId::new(), None, &format!("f{seed}"), 1, seed, 100);
    p.chunks[0].span = Some(PackSpan {
        pack: ChunkId([0xee; 32]),
        offset,
        len,
        base: None,
    });
    p
}

/// Records the pack these files name as stored in `f`'s workspace (a
/// location must point into a stored pack), by nobody in particular, so
/// that only the chunk index holds the location.
async fn stock(store: &MetaStore, f: &Fixture) {
    store
        .record_object(
            f.ws.id,
            ChunkId([0xee; 32]),
            PackSpan::MAX_PACK_BYTES,
            None,
            stacksync_metastore::Charge::Always,
        )
        .await
        .unwrap();
}

async fn wrapping_spans_are_refused_and_the_feed_keeps_working(store: &MetaStore) {
    let f = fixture(store, "span@x.org", 1 << 30).await;
    stock(store, &f).await;
    let good = commit(store, &f, vec![packed_file(1, 0, 140)]).await;
    assert!(matches!(
        good.results[0].outcome,
        CommitOutcome::Committed { .. }
    ));
    let hostile = [
        (u64::MAX, 140),
        (u64::MAX - 5, 140),
        (i64::MAX as u64, 140),
        (PackSpan::MAX_PACK_BYTES - 10, 140),
    ];
    for (i, (offset, len)) in hostile.into_iter().enumerate() {
        let r = commit(store, &f, vec![packed_file(10 + i as u8, offset, len)]).await;
        assert_eq!(
            refusal(&r.results[0].outcome),
            ErrorKind::BadRequest,
            "{offset}+{len}"
        );
    }
    // The feed still works for every member and holds only the good file.
    let page = store.get_changes(f.ws.id, 0, 100).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].chunks[0].span.unwrap().offset, 0);
    let located = store
        .locate_chunks(f.ws.id, &[ChunkId([10; 32])])
        .await
        .unwrap();
    assert_eq!(located, vec![None], "a refused span is not in the index");
}

async fn out_of_range_versions_and_sizes_are_refused(store: &MetaStore) {
    let f = fixture(store, "big@x.org", 1 << 40).await;
    let first = committed(&commit(store, &f, vec![file(ItemId::new(), None, "a", 1, 1, 10)]).await);
    // A size that does not fit the column (its chunks cannot add up to it
    // either, but the range check comes first and says why).
    let mut huge = file(ItemId::new(), None, "b", 1, 2, 10);
    huge.size = u64::MAX;
    huge.chunks = vec![ChunkRef::whole(ChunkId([2; 32]), 10)];
    let r = commit(store, &f, vec![huge]).await;
    assert_eq!(refusal(&r.results[0].outcome), ErrorKind::BadRequest);
    // A version beyond the column: refused, not stored as -1.
    let mut v = file(first.id, None, "a", 2, 1, 10);
    v.version = u64::MAX;
    let r = commit(store, &f, vec![v]).await;
    assert_eq!(refusal(&r.results[0].outcome), ErrorKind::BadRequest);
    assert!(store.version(f.ws.id, first.id, u64::MAX).await.is_err());
    let page = store.get_changes(f.ws.id, 0, 100).await.unwrap();
    assert_eq!(page.items.len(), 1);
}

async fn a_stored_bad_location_does_not_break_the_feed(store: &MetaStore) {
    let f = fixture(store, "legacy@x.org", 1 << 30).await;
    stock(store, &f).await;
    let meta = committed(&commit(store, &f, vec![packed_file(3, 0, 140)]).await);
    // What a release build of the old code stored for offset u64::MAX, in
    // the index and so (migration 0006 packs it from there) in the item's
    // stored chunk list, which the feed reads.
    sqlx::query("UPDATE chunk_refs SET pack_offset = -1 WHERE workspace_id = $1")
        .bind(f.ws.id.to_string())
        .execute(store.raw_pool())
        .await
        .unwrap();
    sqlx::query(
        "UPDATE items SET chunk_list = replace(chunk_list, ':0:140', ':-1:140') \
         WHERE workspace_id = $1",
    )
    .bind(f.ws.id.to_string())
    .execute(store.raw_pool())
    .await
    .unwrap();
    let page = store.get_changes(f.ws.id, 0, 100).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].chunks[0].id, meta.chunks[0].id);
    assert_eq!(
        page.items[0].chunks[0].span, None,
        "the bad location is dropped"
    );
}
