//! Upload sessions in the store (migration 0014), on SQLite and
//! PostgreSQL: the cap on open sessions and the quota reservation, pieces
//! that count only at the offset the session holds (two racing at one
//! offset: one counts), the finish claim, and the release of staged
//! objects when a session is cancelled, finished, expires or its user is
//! removed.

mod common;

use common::{commit, file, fixture};
use stacksync_metastore::{
    CommittedUpload, MetaStore, NewUploadSession, SessionEnd, SessionEndCause, SharedWorkspaces,
    UploadSessionRow, UploadTarget,
};
use stacksync_proto::{ChunkId, ErrorKind, ItemId, ItemName, UserId, WorkspaceId};
use uuid::Uuid;

const NOW: i64 = 1_000_000;
const DAY: i64 = 24 * 3600 * 1000;

fn object(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn new_session(user: UserId, ws: WorkspaceId, size: u64) -> NewUploadSession {
    NewUploadSession {
        id: Uuid::new_v4(),
        user,
        workspace: ws,
        quota_owner: user,
        target: UploadTarget::NewFile {
            parent: None,
            name: "big.bin".into(),
            autorename: false,
        },
        mimetype: Some("application/zip".into()),
        size,
        expires_at: NOW + DAY,
    }
}

/// Stages `obj` and records it as the piece at `offset`.
async fn piece(
    store: &MetaStore,
    s: &UploadSessionRow,
    obj: ChunkId,
    offset: u64,
    size: u64,
) -> Option<UploadSessionRow> {
    store
        .stage_upload_piece(s.id, s.user, obj, NOW + 3_600_000, 4, NOW)
        .await
        .unwrap();
    store
        .record_upload_piece(s.id, s.user, obj, offset, size, 100, NOW + DAY, NOW)
        .await
        .unwrap()
}

async fn sessions_are_capped_and_reserve_quota(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1000).await;
    let bo = fixture(store, "bo@example.com", 1000).await;
    let first = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 600), 2, NOW)
        .await
        .unwrap();
    assert_eq!((first.received, first.size, first.pieces), (0, 600, 0));
    assert_eq!(first.mimetype.as_deref(), Some("application/zip"));
    assert_eq!(
        store
            .upload_session(first.id, ana.user.id, NOW)
            .await
            .unwrap(),
        Some(first.clone())
    );
    // Another user's session is none of theirs.
    assert_eq!(
        store
            .upload_session(first.id, bo.user.id, NOW)
            .await
            .unwrap(),
        None
    );

    // 600 of 1000 bytes are reserved: 500 more do not fit, 400 do.
    let over = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 500), 2, NOW)
        .await
        .unwrap_err();
    assert_eq!(over.to_proto().kind, ErrorKind::QuotaExceeded, "{over}");
    let version = NewUploadSession {
        target: UploadTarget::NewVersion {
            file: Uuid::new_v4(),
            if_match: Some(3),
        },
        ..new_session(ana.user.id, ana.ws.id, 400)
    };
    let second = store.create_upload_session(&version, 2, NOW).await.unwrap();
    assert_eq!(second.target, version.target);

    // Two open sessions are the most: the third waits for one to expire.
    let capped = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 0), 2, NOW)
        .await
        .unwrap_err()
        .to_proto();
    assert_eq!(capped.kind, ErrorKind::TooManyRequests, "{capped:?}");
    assert_eq!(capped.retry_after_secs, Some(DAY as u64 / 1000 + 1));

    // Expired sessions neither count nor reserve.
    let later = NOW + DAY;
    store
        .create_upload_session(
            &NewUploadSession {
                expires_at: later + DAY,
                ..new_session(ana.user.id, ana.ws.id, 1000)
            },
            2,
            later,
        )
        .await
        .unwrap();
}

async fn a_piece_counts_only_at_the_offset_held(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 20).await;
    let s = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 10), 32, NOW)
        .await
        .unwrap();
    let after = piece(store, &s, object(1), 0, 4).await.unwrap();
    assert_eq!((after.received, after.pieces), (4, 1));

    // Two pieces sent at offset 4: both written, only the first counts.
    for obj in [object(2), object(3)] {
        store
            .stage_upload_piece(s.id, s.user, obj, NOW + 3_600_000, 4, NOW)
            .await
            .unwrap();
    }
    let won = store
        .record_upload_piece(s.id, s.user, object(2), 4, 3, 100, NOW + DAY, NOW)
        .await
        .unwrap();
    assert_eq!(won.map(|s| s.received), Some(7));
    let lost = store
        .record_upload_piece(s.id, s.user, object(3), 4, 3, 100, NOW + DAY, NOW)
        .await
        .unwrap();
    assert_eq!(lost, None, "a second piece at one offset is refused");
    store.drop_upload_piece(object(3)).await.unwrap();

    // Past the size, or at the wrong offset: refused.
    assert_eq!(piece(store, &s, object(4), 7, 4).await, None);
    store.drop_upload_piece(object(4)).await.unwrap();
    assert_eq!(piece(store, &s, object(5), 3, 3).await, None);
    store.drop_upload_piece(object(5)).await.unwrap();
    // Another user cannot stage a piece of it.
    let bo = fixture(store, "bo@example.com", 1 << 20).await;
    let e = store
        .stage_upload_piece(s.id, bo.user.id, object(6), NOW + 1, 4, NOW)
        .await
        .unwrap_err();
    assert_eq!(e.to_proto().kind, ErrorKind::NotFound);

    let done = piece(store, &s, object(7), 7, 3).await.unwrap();
    assert_eq!((done.received, done.pieces), (10, 3));
    let pieces = store.upload_pieces(s.id).await.unwrap();
    let layout: Vec<(ChunkId, u64, u64)> = pieces
        .iter()
        .map(|p| (p.object, p.offset, p.size))
        .collect();
    assert_eq!(
        layout,
        vec![(object(1), 0, 4), (object(2), 4, 3), (object(7), 7, 3)]
    );
    assert!(
        store
            .released_upload_pieces(NOW + 10 * DAY, 100)
            .await
            .unwrap()
            .is_empty(),
        "whole pieces of a live session are never released"
    );
}

async fn writers_are_bounded_and_late_ones_released(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 20).await;
    let s = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 10), 32, NOW)
        .await
        .unwrap();
    for n in 0..2 {
        store
            .stage_upload_piece(s.id, s.user, object(n), NOW + 100, 2, NOW)
            .await
            .unwrap();
    }
    let busy = store
        .stage_upload_piece(s.id, s.user, object(9), NOW + 100, 2, NOW)
        .await
        .unwrap_err();
    assert_eq!(busy.to_proto().kind, ErrorKind::TooManyRequests);
    // Past their deadline, writers no longer count and their objects are
    // released; a late piece is refused.
    let late = NOW + 100;
    let released = store.released_upload_pieces(late, 100).await.unwrap();
    assert_eq!(released, vec![object(0), object(1)]);
    let refused = store
        .record_upload_piece(s.id, s.user, object(0), 0, 5, 100, late + DAY, late)
        .await
        .unwrap();
    assert_eq!(refused, None);
    store
        .stage_upload_piece(s.id, s.user, object(9), late + 100, 2, late)
        .await
        .unwrap();
    for o in released {
        store.forget_upload_piece(o, late).await.unwrap();
    }
    assert!(
        store
            .released_upload_pieces(late, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_finish_claims_the_session(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 20).await;
    let s = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 4), 32, NOW)
        .await
        .unwrap();
    assert!(
        !store
            .claim_upload_finish(s.id, s.user, "a", NOW + 10, NOW)
            .await
            .unwrap(),
        "an incomplete session cannot be finished"
    );
    piece(store, &s, object(1), 0, 4).await.unwrap();
    assert!(
        store
            .claim_upload_finish(s.id, s.user, "a", NOW + 10, NOW)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim_upload_finish(s.id, s.user, "b", NOW + 10, NOW)
            .await
            .unwrap(),
        "one finish at a time"
    );
    assert!(
        store
            .claim_upload_finish(s.id, s.user, "a", NOW + 20, NOW + 5)
            .await
            .unwrap(),
        "the holder renews"
    );
    // A cancel waits for the finish.
    assert_eq!(
        store
            .end_upload_session(s.id, s.user, SessionEndCause::Cancelled, NOW + 6)
            .await
            .unwrap(),
        SessionEnd::Finishing
    );
    // A claim that lapsed can be taken over.
    assert!(
        store
            .claim_upload_finish(s.id, s.user, "b", NOW + 40, NOW + 30)
            .await
            .unwrap()
    );
    store.release_upload_finish(s.id, "b").await.unwrap();
    assert!(
        store
            .claim_upload_finish(s.id, s.user, "c", NOW + 50, NOW + 31)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .finished_upload_session(s.id, s.user, NOW)
            .await
            .unwrap(),
        None,
        "not finished yet"
    );
    let committed = CommittedUpload {
        item: Uuid::from_u128(7),
        version: 3,
        created: true,
        remembered_until: NOW + 1000,
    };
    assert_eq!(
        store
            .end_upload_session(s.id, s.user, SessionEndCause::Finished(committed), NOW + 32)
            .await
            .unwrap(),
        SessionEnd::Ended
    );
    assert_eq!(store.upload_session(s.id, s.user, NOW).await.unwrap(), None);
    assert_eq!(
        store.released_upload_pieces(NOW + 32, 10).await.unwrap(),
        vec![object(1)],
        "the finished session's piece is released"
    );
    // What it committed is remembered for its owner, for a while.
    assert_eq!(
        store
            .finished_upload_session(s.id, s.user, NOW + 33)
            .await
            .unwrap(),
        Some(committed)
    );
    let bo = fixture(store, "bo@example.com", 1 << 20).await;
    assert_eq!(
        store
            .finished_upload_session(s.id, bo.user.id, NOW + 33)
            .await
            .unwrap(),
        None,
        "none of another user's"
    );
    assert_eq!(
        store
            .end_upload_session(s.id, s.user, SessionEndCause::Finished(committed), NOW + 34)
            .await
            .unwrap(),
        SessionEnd::Missing,
        "a session ends once"
    );
    store.expire_upload_sessions(NOW + 999).await.unwrap();
    assert!(
        store
            .finished_upload_session(s.id, s.user, NOW + 999)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .finished_upload_session(s.id, s.user, NOW + 1000)
            .await
            .unwrap(),
        None,
        "forgotten when its time is up"
    );
    store.expire_upload_sessions(NOW + 1000).await.unwrap();
    assert_eq!(
        store
            .finished_upload_session(s.id, s.user, NOW - 1)
            .await
            .unwrap(),
        None,
        "and pruned then"
    );
}

async fn ended_sessions_release_their_pieces(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 20).await;
    let bo = fixture(store, "bo@example.com", 1 << 20).await;
    let cancelled = store
        .create_upload_session(&new_session(ana.user.id, ana.ws.id, 8), 32, NOW)
        .await
        .unwrap();
    let expiring = store
        .create_upload_session(
            &NewUploadSession {
                expires_at: NOW + 10,
                ..new_session(ana.user.id, ana.ws.id, 8)
            },
            32,
            NOW,
        )
        .await
        .unwrap();
    let removed = store
        .create_upload_session(&new_session(bo.user.id, bo.ws.id, 8), 32, NOW)
        .await
        .unwrap();
    piece(store, &cancelled, object(1), 0, 4).await.unwrap();
    store
        .stage_upload_piece(expiring.id, ana.user.id, object(2), NOW + 5, 4, NOW)
        .await
        .unwrap();
    store
        .record_upload_piece(
            expiring.id,
            ana.user.id,
            object(2),
            0,
            4,
            100,
            NOW + 10,
            NOW,
        )
        .await
        .unwrap()
        .unwrap();
    piece(store, &removed, object(3), 0, 4).await.unwrap();

    // Someone else cannot cancel it.
    assert_eq!(
        store
            .end_upload_session(cancelled.id, bo.user.id, SessionEndCause::Cancelled, NOW)
            .await
            .unwrap(),
        SessionEnd::Missing
    );
    assert_eq!(
        store
            .end_upload_session(cancelled.id, ana.user.id, SessionEndCause::Cancelled, NOW)
            .await
            .unwrap(),
        SessionEnd::Ended
    );
    assert_eq!(
        store.released_upload_pieces(NOW, 10).await.unwrap(),
        vec![object(1)]
    );
    store
        .remove_user(bo.user.id, SharedWorkspaces::Refuse)
        .await
        .unwrap();
    assert_eq!(store.expire_upload_sessions(NOW + 10).await.unwrap(), 2);
    let mut released = store.released_upload_pieces(NOW + 10, 10).await.unwrap();
    released.sort();
    assert_eq!(released, vec![object(1), object(2), object(3)]);
    assert_eq!(
        store
            .released_upload_pieces(NOW + 10, 2)
            .await
            .unwrap()
            .len(),
        2,
        "at most the limit"
    );
    for o in released {
        store.forget_upload_piece(o, NOW + 10).await.unwrap();
    }
    assert!(
        store
            .released_upload_pieces(NOW + 10, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .upload_session(expiring.id, ana.user.id, NOW)
            .await
            .unwrap(),
        None
    );
}

async fn names_are_found_up_to_case(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 20).await;
    let id = ItemId::new();
    commit(store, &ana, vec![file(id, None, "Photo.JPG", 1, 1, 10)]).await;
    let name = |s: &str| ItemName::new(s).unwrap();
    let found = store
        .live_child_named(ana.ws.id, None, &name("photo.jpg"))
        .await
        .unwrap()
        .expect("the same name up to case");
    assert_eq!(found.id, id);
    assert_eq!(found.chunks.len(), 1);
    assert!(
        store
            .live_child_named(ana.ws.id, None, &name("other.jpg"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .live_child_named(ana.ws.id, Some(ItemId::new()), &name("Photo.JPG"))
            .await
            .unwrap()
            .is_none()
    );
}

conformance!(
    sessions_are_capped_and_reserve_quota,
    a_piece_counts_only_at_the_offset_held,
    writers_are_bounded_and_late_ones_released,
    a_finish_claims_the_session,
    ended_sessions_release_their_pieces,
    names_are_found_up_to_case,
);
