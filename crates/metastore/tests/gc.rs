//! The object ledger, honest quota, location claims and garbage collection
//! in the metadata store, on SQLite and PostgreSQL (issue 17, findings 10
//! and 11).

mod common;

use common::*;
use stacksync_metastore::{Charge, MetaStore};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, ErrorKind, ItemId, PackSpan, UserId, WorkspaceId,
};

conformance!(
    f11_quota_counts_stored_bytes_once,
    f11_shared_storage_counts_against_its_owner,
    f10_claims_must_point_into_stored_packs,
    f10_a_plant_never_overrides_the_committers_upload,
    f11_retention_frees_replaced_versions_and_keeps_latest,
    f11_grace_protects_uncommitted_objects,
    f11_gc_marking_and_commit_cannot_both_win,
    f11_dry_run_changes_nothing,
);

/// "Everything is older than that" / "nothing is".
const ALL: i64 = i64::MAX;
const NONE: i64 = 0;

fn obj(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

async fn record(store: &MetaStore, ws: WorkspaceId, id: ChunkId, size: u64, user: UserId) {
    assert!(
        store
            .record_object(ws, id, size, Some(user), Charge::WithinQuota)
            .await
            .unwrap(),
        "object {id} is new"
    );
}

async fn used(store: &MetaStore, user: UserId) -> u64 {
    store.user(user).await.unwrap().account.quota_used
}

fn refusal(r: &stacksync_proto::CommitResult) -> ErrorKind {
    match &r.results[0].outcome {
        CommitOutcome::Refused { error } => error.kind,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn f11_quota_counts_stored_bytes_once(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1000).await;
    record(store, f.ws.id, obj(1), 600, f.user.id).await;
    assert_eq!(used(store, f.user.id).await, 600);
    // A retried upload is charged once.
    let again = store
        .record_object(f.ws.id, obj(1), 600, Some(f.user.id), Charge::WithinQuota)
        .await
        .unwrap();
    assert!(!again);
    assert_eq!(used(store, f.user.id).await, 600);
    // Past the quota: refused, nothing recorded, nothing charged.
    let e = store
        .record_object(f.ws.id, obj(2), 401, Some(f.user.id), Charge::WithinQuota)
        .await
        .unwrap_err();
    assert_eq!(e.to_proto().kind, ErrorKind::QuotaExceeded);
    assert_eq!(used(store, f.user.id).await, 600);
    assert_eq!(store.objects_of(f.ws.id).await.unwrap().len(), 1);
    record(store, f.ws.id, obj(2), 400, f.user.id).await;
    assert_eq!(used(store, f.user.id).await, 1000);
    // Bytes found stored are counted whatever the quota.
    assert!(
        store
            .record_object(f.ws.id, obj(3), 50, None, Charge::Always)
            .await
            .unwrap()
    );
    assert_eq!(used(store, f.user.id).await, 1050);
}

async fn f11_shared_storage_counts_against_its_owner(store: &MetaStore) {
    let owner = fixture(store, "a@x.org", 1 << 30).await;
    let member = fixture(store, "b@x.org", 1 << 30).await;
    let shared = store
        .create_workspace(owner.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    store
        .add_member(shared.id, member.user.id, "Shared", None, None, false)
        .await
        .unwrap();
    record(store, shared.id, obj(1), 700, member.user.id).await;
    assert_eq!(used(store, owner.user.id).await, 700);
    assert_eq!(used(store, member.user.id).await, 0);
}

/// Chunk `seed` (`size` bytes) at `offset` of pack `pack`.
fn packed(seed: u8, size: u32, pack: u8, offset: u64) -> ChunkRef {
    ChunkRef {
        id: ChunkId([seed; 32]),
        size,
        span: Some(PackSpan {
            pack: obj(pack),
            offset,
            len: size + 40,
            base: None,
        }),
    }
}

fn file_of(n: &str, chunk: ChunkRef) -> stacksync_proto::ProposedItem {
    let mut p = file(ItemId::new(), None, n, 1, chunk.id.0[0], chunk.size);
    p.chunks = vec![chunk];
    p
}

async fn f10_claims_must_point_into_stored_packs(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    // A pack the workspace never stored.
    let r = commit(store, &f, vec![file_of("a", packed(1, 100, 0x70, 0))]).await;
    assert_eq!(refusal(&r), ErrorKind::NotFound);
    record(store, f.ws.id, obj(0x70), 1000, f.user.id).await;
    // A span past the end of the pack.
    let r = commit(store, &f, vec![file_of("a", packed(1, 100, 0x70, 900))]).await;
    assert_eq!(refusal(&r), ErrorKind::BadRequest);
    // Inside it: accepted.
    let ok = committed(&commit(store, &f, vec![file_of("a", packed(1, 100, 0x70, 860))]).await);
    assert_eq!(ok.chunks, vec![packed(1, 100, 0x70, 860)]);
}

async fn f10_a_plant_never_overrides_the_committers_upload(store: &MetaStore) {
    let owner = fixture(store, "a@x.org", 1 << 30).await;
    let member = fixture(store, "m@x.org", 1 << 30).await;
    let shared = store
        .create_workspace(owner.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    store
        .add_member(shared.id, member.user.id, "Shared", None, None, false)
        .await
        .unwrap();
    let in_shared = |f: &Fixture| Fixture {
        user: f.user.clone(),
        device: f.device.clone(),
        ws: shared.clone(),
    };
    let (owner, member) = (in_shared(&owner), in_shared(&member));
    // The member plants a location for chunk 1 in a pack of their own
    // before the owner uploads it.
    record(store, shared.id, obj(0x70), 1000, member.user.id).await;
    let plant = packed(1, 100, 0x70, 0);
    committed(&commit(store, &member, vec![file_of("bait", plant)]).await);
    // The owner uploads chunk 1 in their own pack and commits their file.
    record(store, shared.id, obj(0x71), 1000, owner.user.id).await;
    let real = packed(1, 100, 0x71, 300);
    let mine = committed(&commit(store, &owner, vec![file_of("mine", real)]).await);
    assert_eq!(
        mine.chunks,
        vec![real],
        "the owner's version reads its own upload"
    );
    // Every way of reading it back agrees (another device reads the feed).
    assert_eq!(
        store.item(shared.id, mine.id).await.unwrap().chunks,
        vec![real]
    );
    assert_eq!(
        store.version(shared.id, mine.id, 1).await.unwrap().chunks,
        vec![real]
    );
    let page = store.get_changes(shared.id, 0, 10).await.unwrap();
    let fed = page.items.iter().find(|m| m.id == mine.id).unwrap();
    assert_eq!(fed.chunks, vec![real]);
    // Dedup never hands the owner a location someone else claimed.
    assert_eq!(
        store
            .locate_chunks_for(shared.id, owner.user.id, &[plant.id])
            .await
            .unwrap(),
        vec![None]
    );
    assert_eq!(
        store
            .locate_chunks_for(shared.id, member.user.id, &[plant.id])
            .await
            .unwrap(),
        vec![Some(plant)]
    );
    // Both packs are in use: nothing is collected.
    let plan = store
        .mark_garbage(shared.id, ALL, ALL, false)
        .await
        .unwrap();
    assert!(plan.objects.is_empty(), "{plan:?}");
}

async fn f11_retention_frees_replaced_versions_and_keeps_latest(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    for (seed, size) in [(1u8, 100u64), (2, 200), (3, 30), (4, 40)] {
        record(store, f.ws.id, obj(seed), size, f.user.id).await;
    }
    let (gone, kept) = (ItemId::new(), ItemId::new());
    committed(&commit(store, &f, vec![file(gone, None, "gone", 1, 1, 100)]).await);
    committed(&commit(store, &f, vec![file(gone, None, "gone", 2, 2, 200)]).await);
    let latest = store.item(f.ws.id, gone).await.unwrap();
    committed(&commit(store, &f, vec![delete_of(&latest)]).await);
    committed(&commit(store, &f, vec![file(kept, None, "kept", 1, 3, 30)]).await);
    committed(&commit(store, &f, vec![file(kept, None, "kept", 2, 4, 40)]).await);
    assert_eq!(used(store, f.user.id).await, 370);

    // Within the retention period nothing is referenced less.
    let plan = store.mark_garbage(f.ws.id, ALL, NONE, false).await.unwrap();
    assert_eq!(plan.pruned_versions, 0);
    assert!(plan.objects.is_empty(), "{plan:?}");
    assert_eq!(store.versions(f.ws.id, gone).await.unwrap().len(), 3);

    // After it: replaced versions go, latest ones stay.
    let plan = store.mark_garbage(f.ws.id, ALL, ALL, false).await.unwrap();
    assert_eq!(plan.pruned_versions, 3);
    let mut marked: Vec<ChunkId> = plan.objects.iter().map(|o| o.id).collect();
    marked.sort();
    assert_eq!(marked, vec![obj(1), obj(2), obj(3)]);
    let history = store.versions(f.ws.id, gone).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].version, 3);
    assert_eq!(store.item(f.ws.id, kept).await.unwrap().chunks.len(), 1);
    assert_eq!(
        store.get_changes(f.ws.id, 0, 10).await.unwrap().items.len(),
        2
    );

    let freed = store.forget_objects(f.ws.id, &marked).await.unwrap();
    assert_eq!(freed, 330);
    assert_eq!(used(store, f.user.id).await, 40);
    let left: Vec<ChunkId> = store
        .objects_of(f.ws.id)
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(left, vec![obj(4)]);
}

async fn f11_grace_protects_uncommitted_objects(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    record(store, f.ws.id, obj(5), 10, f.user.id).await;
    let created = store.objects_of(f.ws.id).await.unwrap()[0].created_at;
    let plan = store
        .mark_garbage(f.ws.id, created - 1, ALL, false)
        .await
        .unwrap();
    assert!(plan.objects.is_empty(), "{plan:?}");
    // Committed within the grace period: referenced from then on.
    committed(&commit(store, &f, vec![file(ItemId::new(), None, "f", 1, 5, 10)]).await);
    let plan = store.mark_garbage(f.ws.id, ALL, ALL, false).await.unwrap();
    assert!(plan.objects.is_empty(), "{plan:?}");
}

async fn f11_gc_marking_and_commit_cannot_both_win(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    // The collector marks first: the commit naming the object is refused,
    // and so is a new upload of it until the collector is done.
    record(store, f.ws.id, obj(6), 100, f.user.id).await;
    let plan = store.mark_garbage(f.ws.id, ALL, ALL, false).await.unwrap();
    assert_eq!(plan.objects.len(), 1);
    let id = ItemId::new();
    let r = commit(store, &f, vec![file(id, None, "late", 1, 6, 10)]).await;
    assert_eq!(refusal(&r), ErrorKind::Unavailable);
    assert!(
        store.item(f.ws.id, id).await.is_err(),
        "nothing was committed"
    );
    let e = store
        .record_object(f.ws.id, obj(6), 10, Some(f.user.id), Charge::WithinQuota)
        .await
        .unwrap_err();
    assert_eq!(e.to_proto().kind, ErrorKind::Unavailable);
    // A packed claim into a marked pack is refused the same way.
    let r = commit(store, &f, vec![file_of("packed", packed(9, 1, 6, 0))]).await;
    assert_eq!(refusal(&r), ErrorKind::Unavailable);
    assert_eq!(store.forget_objects(f.ws.id, &[obj(6)]).await.unwrap(), 100);
    // Once it is gone, the upload and the commit go through.
    record(store, f.ws.id, obj(6), 10, f.user.id).await;
    committed(&commit(store, &f, vec![file(id, None, "late", 1, 6, 10)]).await);

    // The commit first: the collector sees the reference and marks nothing.
    record(store, f.ws.id, obj(7), 10, f.user.id).await;
    committed(
        &commit(
            store,
            &f,
            vec![file(ItemId::new(), None, "early", 1, 7, 10)],
        )
        .await,
    );
    let plan = store.mark_garbage(f.ws.id, ALL, ALL, false).await.unwrap();
    assert!(plan.objects.is_empty(), "{plan:?}");
    // Unmarked rows are never forgotten.
    assert_eq!(store.forget_objects(f.ws.id, &[obj(7)]).await.unwrap(), 0);
    assert_eq!(used(store, f.user.id).await, 20);
}

async fn f11_dry_run_changes_nothing(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    record(store, f.ws.id, obj(1), 10, f.user.id).await;
    record(store, f.ws.id, obj(8), 10, f.user.id).await;
    let a = ItemId::new();
    committed(&commit(store, &f, vec![file(a, None, "a", 1, 1, 10)]).await);
    committed(&commit(store, &f, vec![file(a, None, "a", 2, 8, 10)]).await);
    record(store, f.ws.id, obj(9), 5, f.user.id).await;
    let plan = store.mark_garbage(f.ws.id, ALL, ALL, true).await.unwrap();
    assert_eq!(plan.pruned_versions, 1);
    let mut ids: Vec<ChunkId> = plan.objects.iter().map(|o| o.id).collect();
    ids.sort();
    assert_eq!(ids, vec![obj(1), obj(9)]);
    assert_eq!(store.versions(f.ws.id, a).await.unwrap().len(), 2);
    assert!(
        store
            .objects_of(f.ws.id)
            .await
            .unwrap()
            .iter()
            .all(|o| !o.marked)
    );
    // Nothing was marked, so a commit naming the objects still works.
    committed(&commit(store, &f, vec![file(ItemId::new(), None, "b", 1, 9, 5)]).await);
}
