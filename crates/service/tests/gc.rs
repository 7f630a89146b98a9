//! Honest quota, garbage collection and location claims through the
//! service (issue 17, findings 10 and 11), on both combos.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Env, User, file};
use stacksync_blobstore::ContainerName;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, CommitRequest, CommitResult, EncryptionMode, ErrorKind,
    ItemId, ItemMeta, PackSpan, ProposedItem, Workspace,
};
use stacksync_service::{ByteRange, GcSettings};

/// A collection that keeps nothing for age: no grace, no retention.
const EAGER: GcSettings = GcSettings {
    grace: Duration::ZERO,
    retention: Duration::ZERO,
    dry_run: false,
};

async fn objects_in(env: &Env, ws: &Workspace) -> Vec<ChunkId> {
    let container = ContainerName::new(&ws.container).unwrap();
    env.blobs.list(&container).await.unwrap()
}

async fn quota_used(env: &Env, user: &User) -> u64 {
    let Ok(Reply::Account(account)) = env.call(&user.token, Request::GetAccount).await else {
        panic!("the account is read");
    };
    account.quota_used
}

async fn commit(env: &Env, user: &User, ws: &Workspace, items: Vec<ProposedItem>) -> CommitResult {
    let Ok(Reply::Commit(r)) = env
        .call(
            &user.token,
            Request::Commit(CommitRequest {
                workspace: ws.id,
                device: user.device,
                items,
            }),
        )
        .await
    else {
        panic!("the commit is answered");
    };
    r
}

fn committed(r: &CommitResult) -> ItemMeta {
    match &r.results[0].outcome {
        CommitOutcome::Committed { meta } => meta.clone(),
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// A file whose content is one chunk stored as an object of its own.
fn file_with(name: &str, chunk: ChunkRef) -> ProposedItem {
    let mut p = file(ItemId::new(), None, name, 1, name);
    p.size = u64::from(chunk.size);
    p.chunks = vec![chunk];
    p
}

fn deleted(m: &ItemMeta) -> ProposedItem {
    let mut p = file(m.id, m.parent, m.name.as_str(), m.version + 1, "gone");
    p.status = stacksync_proto::ItemStatus::Deleted;
    p.content_hash = None;
    p
}

async fn f11_uploads_past_the_quota_are_refused_before_storage(env: &Env) {
    let alice = env.user_with_quota("alice@example.com", 1_000_000).await;
    let big = Bytes::from(vec![7u8; PackSpan::MAX_PACK_BYTES as usize]);
    for n in 0..5u8 {
        let e = env
            .service
            .put_chunk(alice.id, alice.private.id, &ChunkId([n; 32]), big.clone())
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::QuotaExceeded, "{e}");
    }
    assert!(objects_in(env, &alice.private).await.is_empty());
    assert_eq!(quota_used(env, &alice).await, 0);
    // What fits is stored and counted as stored.
    env.service
        .put_chunk(
            alice.id,
            alice.private.id,
            &ChunkId([9; 32]),
            Bytes::from(vec![1u8; 100_000]),
        )
        .await
        .unwrap();
    assert_eq!(quota_used(env, &alice).await, 100_000);
}
both_combos!(f11_uploads_past_the_quota_are_refused_before_storage);

/// A shared folder is stored once, in its owner's storage: whoever uploads
/// into it (the owner or a member, through the service or, named by a
/// commit, directly), its owner pays; past the owner's quota a member is
/// told that it is the owner's quota that is full (and not the owner's
/// figures), while their own quota is untouched.
async fn shared_folders_count_against_their_owners_quota(env: &Env) {
    const OWNERS: &str = "the shared folder's owner's storage quota is full";
    let alice = env.user_with_quota("alice@example.com", 1_000_000).await;
    let bob = env.user_with_quota("bob@example.com", 10_000_000).await;
    let dir = ItemId::new();
    committed(
        &commit(
            env,
            &alice,
            &alice.private,
            vec![common::folder(dir, None, "Together")],
        )
        .await,
    );
    let shared = common::share_folder(env, &alice, &bob, dir).await;
    let put = |user: &User, ws: &Workspace, n: u8, len: usize| {
        let (user, ws) = (user.id, ws.id);
        async move {
            env.service
                .put_chunk(user, ws, &ChunkId([n; 32]), Bytes::from(vec![n; len]))
                .await
        }
    };
    put(&bob, &shared, 1, 300_000).await.unwrap();
    assert_eq!(quota_used(env, &alice).await, 300_000);
    assert_eq!(quota_used(env, &bob).await, 0, "the member pays nothing");
    put(&alice, &shared, 2, 300_000).await.unwrap();
    assert_eq!(quota_used(env, &alice).await, 600_000);

    let e = put(&bob, &shared, 3, 500_000).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::QuotaExceeded, "{e}");
    assert!(e.message.contains(OWNERS), "{e}");
    assert!(!e.message.contains("600000"), "the owner's figures: {e}");
    // An object a member wrote straight to the container (as a client
    // that reaches Swift might) is charged when a commit names it.
    let container = ContainerName::new(&shared.container).unwrap();
    let direct = ChunkId([4; 32]);
    env.blobs
        .put_bytes(&container, &direct, Bytes::from(vec![4u8; 500_000]))
        .await
        .unwrap();
    let request = Request::Commit(CommitRequest {
        workspace: shared.id,
        device: bob.device,
        items: vec![file_with("direct", ChunkRef::whole(direct, 500_000))],
    });
    let e = env.call(&bob.token, request).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::QuotaExceeded, "{e}");
    assert!(e.message.contains(OWNERS), "{e}");
    assert_eq!(quota_used(env, &alice).await, 600_000);
    assert_eq!(
        objects_in(env, &shared).await,
        vec![ChunkId([1; 32]), ChunkId([2; 32]), direct],
        "the refused upload stored nothing"
    );
    // The owner past her own quota hears about her own figures.
    let e = put(&alice, &shared, 5, 500_000).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::QuotaExceeded, "{e}");
    assert!(!e.message.contains(OWNERS), "{e}");
    assert!(e.message.contains("600000 of 1000000"), "{e}");
    // Bob's own storage is his own.
    put(&bob, &bob.private, 6, 500_000).await.unwrap();
    assert_eq!(quota_used(env, &bob).await, 500_000);
    assert_eq!(quota_used(env, &alice).await, 600_000);
}
both_combos!(shared_folders_count_against_their_owners_quota);

async fn f11_gc_frees_deleted_files_and_their_quota(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let ws = alice.private.clone();
    let mut files = Vec::new();
    for n in 1..=3u8 {
        let id = ChunkId([n; 32]);
        env.service
            .put_chunk(alice.id, ws.id, &id, Bytes::from(vec![n; 1000]))
            .await
            .unwrap();
        let f = file_with(&format!("f{n}"), ChunkRef::whole(id, 1000));
        files.push(committed(&commit(env, &alice, &ws, vec![f]).await));
    }
    assert_eq!(quota_used(env, &alice).await, 3000);
    for m in &files[..2] {
        committed(&commit(env, &alice, &ws, vec![deleted(m)]).await);
    }
    // Deleting frees nothing by itself: the history keeps the content.
    assert_eq!(objects_in(env, &ws).await.len(), 3);
    assert_eq!(quota_used(env, &alice).await, 3000);
    let report = env.service.collect_garbage(EAGER).await.unwrap();
    assert_eq!(
        (report.deleted_objects, report.freed_bytes),
        (2, 2000),
        "{report:?}"
    );
    assert_eq!(objects_in(env, &ws).await, vec![ChunkId([3; 32])]);
    assert_eq!(quota_used(env, &alice).await, 1000);
    // The deletes are still in the feed and the kept file still reads.
    let Ok(Reply::Changes(page)) = env
        .call(
            &alice.token,
            Request::GetChanges {
                workspace: ws.id,
                since: 0,
                limit: 10,
            },
        )
        .await
    else {
        panic!("the feed is read");
    };
    assert_eq!(page.items.len(), 3);
    env.service
        .get_chunk(alice.id, ws.id, &ChunkId([3; 32]), None)
        .await
        .unwrap();
}
both_combos!(f11_gc_frees_deleted_files_and_their_quota);

async fn f11_uncommitted_upload_survives_gc_within_grace(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let ws = alice.private.clone();
    let id = ChunkId([4; 32]);
    env.service
        .put_chunk(alice.id, ws.id, &id, Bytes::from(vec![4u8; 500]))
        .await
        .unwrap();
    let within_grace = GcSettings {
        grace: Duration::from_secs(3600),
        ..EAGER
    };
    let report = env.service.collect_garbage(within_grace).await.unwrap();
    assert_eq!(report.deleted_objects, 0, "{report:?}");
    assert_eq!(objects_in(env, &ws).await, vec![id]);
    committed(
        &commit(
            env,
            &alice,
            &ws,
            vec![file_with("late", ChunkRef::whole(id, 500))],
        )
        .await,
    );
    // Committed, it is referenced: even an eager collection keeps it.
    env.service.collect_garbage(EAGER).await.unwrap();
    assert_eq!(objects_in(env, &ws).await, vec![id]);
}
both_combos!(f11_uncommitted_upload_survives_gc_within_grace);

async fn f11_gc_racing_a_commit_never_leaves_a_dangling_version(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let ws = alice.private.clone();
    let id = ChunkId([5; 32]);
    env.service
        .put_chunk(alice.id, ws.id, &id, Bytes::from(vec![5u8; 300]))
        .await
        .unwrap();
    // The collector has marked the object (its first step) when the commit
    // naming it arrives: the commit is refused ...
    let plan = env
        .db
        .store
        .mark_garbage(ws.id, i64::MAX, 0, false)
        .await
        .unwrap();
    assert_eq!(plan.objects.len(), 1);
    let r = commit(
        env,
        &alice,
        &ws,
        vec![file_with("racy", ChunkRef::whole(id, 300))],
    )
    .await;
    match &r.results[0].outcome {
        CommitOutcome::Refused { error } => assert_eq!(error.kind, ErrorKind::Unavailable),
        other => panic!("a commit of a marked object must be refused: {other:?}"),
    }
    // ... and so is a new upload, while the collector deletes it.
    let e = env
        .service
        .put_chunk(alice.id, ws.id, &id, Bytes::from(vec![5u8; 300]))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    env.service.collect_garbage(EAGER).await.unwrap();
    assert!(objects_in(env, &ws).await.is_empty());
    assert_eq!(quota_used(env, &alice).await, 0);
    // No committed version names the deleted object.
    let Ok(Reply::Changes(page)) = env
        .call(
            &alice.token,
            Request::GetChanges {
                workspace: ws.id,
                since: 0,
                limit: 10,
            },
        )
        .await
    else {
        panic!("the feed is read");
    };
    assert!(page.items.is_empty(), "{page:?}");
    // The client's retry (upload again, commit again) succeeds and stays.
    env.service
        .put_chunk(alice.id, ws.id, &id, Bytes::from(vec![5u8; 300]))
        .await
        .unwrap();
    committed(
        &commit(
            env,
            &alice,
            &ws,
            vec![file_with("racy", ChunkRef::whole(id, 300))],
        )
        .await,
    );
    env.service.collect_garbage(EAGER).await.unwrap();
    assert_eq!(objects_in(env, &ws).await, vec![id]);
}
both_combos!(f11_gc_racing_a_commit_never_leaves_a_dangling_version);

async fn f10_a_planted_location_does_not_break_the_owners_file(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let mallory = env.user("mallory@example.com").await;
    let store = &env.db.store;
    let shared = store
        .create_workspace(alice.id, "Shared", true, EncryptionMode::Plain)
        .await
        .unwrap();
    env.blobs
        .create_container(&ContainerName::new(&shared.container).unwrap())
        .await
        .unwrap();
    store
        .add_member(shared.id, mallory.id, "Shared", None, None, false)
        .await
        .unwrap();
    let chunk = ChunkId([0xc1; 32]);
    let real: Bytes = (0..140u32).map(|i| (i * 7 % 251) as u8).collect();
    let span = |pack: u8, offset: u64| ChunkRef {
        id: chunk,
        size: 100,
        span: Some(PackSpan {
            pack: ChunkId([pack; 32]),
            offset,
            len: 140,
            base: None,
        }),
    };
    // Mallory plants a location for the chunk before Alice uploads it.
    env.service
        .put_chunk(
            mallory.id,
            shared.id,
            &ChunkId([0xaa; 32]),
            Bytes::from(vec![0u8; 1000]),
        )
        .await
        .unwrap();
    committed(
        &commit(
            env,
            &mallory,
            &shared,
            vec![file_with("bait", span(0xaa, 0))],
        )
        .await,
    );
    // Alice's device uploads the chunk in its own pack and commits.
    let mut pack = vec![9u8; 100];
    pack.extend_from_slice(&real);
    env.service
        .put_chunk(alice.id, shared.id, &ChunkId([0xbb; 32]), Bytes::from(pack))
        .await
        .unwrap();
    let mine = committed(
        &commit(
            env,
            &alice,
            &shared,
            vec![file_with("mine", span(0xbb, 100))],
        )
        .await,
    );
    // Alice's second device reads the feed and downloads her file intact.
    let Ok(Reply::Changes(page)) = env
        .call(
            &alice.token,
            Request::GetChanges {
                workspace: shared.id,
                since: 0,
                limit: 10,
            },
        )
        .await
    else {
        panic!("the feed is read");
    };
    let fed = page.items.iter().find(|m| m.id == mine.id).unwrap();
    let at = fed.chunks[0].span.expect("a packed chunk");
    let bytes = env
        .service
        .get_chunk(
            alice.id,
            shared.id,
            &at.pack,
            Some(ByteRange {
                start: at.offset,
                end: Some(at.end()),
            }),
        )
        .await
        .unwrap();
    assert_eq!(bytes, real, "alice's file reads her bytes, not the plant");
    // Dedup does not offer her the planted location either.
    let Ok(Reply::ChunkLocations { chunks }) = env
        .call(
            &alice.token,
            Request::LocateChunks {
                workspace: shared.id,
                ids: vec![chunk],
                bases: false,
            },
        )
        .await
    else {
        panic!("chunks are located");
    };
    assert_eq!(chunks, vec![None]);
    // A claim of a new chunk into a pack nobody stored is refused outright
    // (for a chunk the index knows, the index's location is used anyway).
    let ghost = ChunkRef {
        id: ChunkId([0xc2; 32]),
        ..span(0xcc, 0)
    };
    let r = commit(env, &mallory, &shared, vec![file_with("ghost", ghost)]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { .. }),
        "{r:?}"
    );
}
both_combos!(f10_a_planted_location_does_not_break_the_owners_file);
