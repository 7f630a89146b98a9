//! Resumable upload sessions of the REST API (`Service::api_upload_session_*`)
//! on SQLite and on PostgreSQL with RabbitMQ: a piece cut off is not kept
//! and the upload resumes where the server says; a piece at another offset
//! is refused with the offset the session holds; a finish commits exactly
//! the bytes sent (100 MiB in 8 MiB pieces too) and deletes the staged
//! objects, as a cancel and an expiry do; names, quota, read-only members
//! and other users' sessions are refused as the rest of the API refuses
//! them.

#[macro_use]
mod common;

use bytes::Bytes;
use common::{Env, User, share_folder_as};
use futures::TryStreamExt;
use stacksync_blobstore::ContainerName;
use stacksync_proto::{ChunkId, ErrorKind, ItemId};
use stacksync_service::{
    ApiCaller, ApiNode, FinishOptions, MAX_OPEN_UPLOAD_SESSIONS, NewContent, STAGING_CONTAINER,
    UploadPiece, UploadSession, UploadSessionRequest, UploadTo,
};

const MIB: usize = 1024 * 1024;

fn caller(user: &User) -> ApiCaller {
    ApiCaller {
        user: user.id,
        consumer_key: "test-app".to_owned(),
    }
}

/// `len` incompressible bytes derived from `seed`.
fn data(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// `bytes` as a piece, streamed in pieces of at most 1 MiB.
fn piece(bytes: &[u8]) -> UploadPiece {
    let parts: Vec<Result<Bytes, std::io::Error>> = bytes
        .chunks(MIB)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    UploadPiece::from_stream(futures::stream::iter(parts), Some(bytes.len() as u64))
}

/// A piece that says it holds `bytes` but is cut off after `after` of
/// them (the client's connection dropped).
fn cut_piece(bytes: &[u8], after: usize) -> UploadPiece {
    let parts: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&bytes[..after])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "the connection dropped",
        )),
    ];
    UploadPiece::from_stream(futures::stream::iter(parts), Some(bytes.len() as u64))
}

fn new_file(parent: Option<uuid::Uuid>, name: &str, size: usize) -> UploadSessionRequest {
    UploadSessionRequest {
        to: UploadTo::New {
            parent,
            name: name.into(),
        },
        size: size as u64,
        autorename: false,
        mimetype: None,
    }
}

/// The objects in the staging container.
async fn staged(env: &Env) -> Vec<ChunkId> {
    let container = ContainerName::new(STAGING_CONTAINER).unwrap();
    match env.blobs.list(&container).await {
        Ok(list) => list,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("listing the staging container: {e}"),
    }
}

async fn read_back(env: &Env, node: &ApiNode) -> Vec<u8> {
    let content = env.service.api_content(node, None).await.unwrap();
    content
        .body
        .map_ok(|b| b.to_vec())
        .try_concat()
        .await
        .unwrap()
}

/// Sends `bytes` from the session's offset in pieces of `size` bytes.
async fn send_rest(
    env: &Env,
    app: &ApiCaller,
    mut session: UploadSession,
    bytes: &[u8],
    size: usize,
) -> UploadSession {
    while (session.offset as usize) < bytes.len() {
        let at = session.offset as usize;
        let end = (at + size).min(bytes.len());
        session = env
            .service
            .api_upload_session_append(app, session.id, session.offset, piece(&bytes[at..end]))
            .await
            .unwrap();
        assert_eq!(session.offset as usize, end);
    }
    session
}

fn file_meta(node: &ApiNode) -> &stacksync_proto::ItemMeta {
    match node {
        ApiNode::Item { meta, .. } => meta,
        other => panic!("a file, not {other:?}"),
    }
}

async fn a_cut_piece_is_not_kept_and_the_upload_resumes(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let bytes = data("resume", 3 * MIB + 12345);
    let session = env
        .service
        .api_upload_session_create(&app, new_file(None, "video.mp4", bytes.len()))
        .await
        .unwrap();
    assert_eq!((session.offset, session.size), (0, bytes.len() as u64));
    let session = env
        .service
        .api_upload_session_append(&app, session.id, 0, piece(&bytes[..MIB]))
        .await
        .unwrap();
    assert_eq!(session.offset, MIB as u64);

    // The second piece is cut off half way: nothing of it is kept.
    let cut = env
        .service
        .api_upload_session_append(
            &app,
            session.id,
            session.offset,
            cut_piece(&bytes[MIB..3 * MIB], MIB / 2),
        )
        .await
        .unwrap_err();
    assert_eq!(cut.error.kind, ErrorKind::BadRequest, "{cut:?}");
    assert_eq!(cut.session.as_ref().map(|s| s.offset), Some(MIB as u64));
    assert_eq!(staged(env).await.len(), 1, "only the whole piece is staged");

    // The client asks where it stands and goes on from there.
    let status = env
        .service
        .api_upload_session_status(&app, session.id)
        .await
        .unwrap();
    assert_eq!(status.offset, MIB as u64);
    let done = send_rest(env, &app, status, &bytes, 2 * MIB).await;
    assert_eq!(done.offset, bytes.len() as u64);
    let finished = env
        .service
        .api_upload_session_finish(&app, session.id, FinishOptions::default())
        .await
        .unwrap();
    assert!(finished.created);
    let meta = file_meta(&finished.node);
    assert_eq!(meta.name.as_str(), "video.mp4");
    assert_eq!(meta.size, bytes.len() as u64);
    assert_eq!(read_back(env, &finished.node).await, bytes);
    assert!(staged(env).await.is_empty(), "the staged pieces are gone");
    let gone = env
        .service
        .api_upload_session_status(&app, session.id)
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound, "the session ended");
    // A finish retried after its answer was lost answers the same file.
    let again = env
        .service
        .api_upload_session_finish(&app, session.id, FinishOptions::default())
        .await
        .unwrap();
    assert!(again.created);
    assert_eq!(again.node.id(), finished.node.id());
    assert_eq!(file_meta(&again.node).version, meta.version);
}
both_combos!(a_cut_piece_is_not_kept_and_the_upload_resumes);

async fn a_piece_at_another_offset_is_refused_with_the_offset(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let bytes = data("offsets", 1000);
    let s = env
        .service
        .api_upload_session_create(&app, new_file(None, "a.bin", bytes.len()))
        .await
        .unwrap();
    let ahead = env
        .service
        .api_upload_session_append(&app, s.id, 500, piece(&bytes[500..]))
        .await
        .unwrap_err();
    assert_eq!(ahead.error.kind, ErrorKind::Conflict);
    assert_eq!(ahead.session.map(|s| s.offset), Some(0));

    // A retry after a lost reply: the same piece again is refused, and
    // says where to go on.
    env.service
        .api_upload_session_append(&app, s.id, 0, piece(&bytes[..400]))
        .await
        .unwrap();
    let again = env
        .service
        .api_upload_session_append(&app, s.id, 0, piece(&bytes[..400]))
        .await
        .unwrap_err();
    assert_eq!(again.error.kind, ErrorKind::Conflict);
    assert_eq!(again.session.map(|s| s.offset), Some(400));

    // Past the size, or over 64 MiB: refused before anything is stored.
    let past = env
        .service
        .api_upload_session_append(&app, s.id, 400, piece(&bytes[..700]))
        .await
        .unwrap_err();
    assert_eq!(past.error.kind, ErrorKind::BadRequest, "{past:?}");
    let undeclared = UploadPiece::from_stream(
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 700]))]),
        None,
    );
    let past = env
        .service
        .api_upload_session_append(&app, s.id, 400, undeclared)
        .await
        .unwrap_err();
    assert_eq!(past.error.kind, ErrorKind::BadRequest, "{past:?}");
    assert_eq!(staged(env).await.len(), 1);

    // Finishing early says how far it is.
    let early = env
        .service
        .api_upload_session_finish(&app, s.id, FinishOptions::default())
        .await
        .unwrap_err();
    assert_eq!(early.error.kind, ErrorKind::Conflict);
    assert_eq!(early.session.map(|s| s.offset), Some(400));

    let big = env.user("big@example.com").await;
    let big_app = caller(&big);
    let large = env
        .service
        .api_upload_session_create(&big_app, new_file(None, "large.bin", 200 * MIB))
        .await
        .unwrap();
    let too_large = UploadPiece::from_stream(
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]),
        Some(65 * MIB as u64),
    );
    let refused = env
        .service
        .api_upload_session_append(&big_app, large.id, 0, too_large)
        .await
        .unwrap_err();
    assert_eq!(refused.error.kind, ErrorKind::TooLarge, "{refused:?}");
}
both_combos!(a_piece_at_another_offset_is_refused_with_the_offset);

async fn a_hundred_mib_in_eight_mib_pieces(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let folder = env
        .service
        .api_create_folder(&app, None, "Videos")
        .await
        .unwrap();
    let bytes = data("hundred", 100 * MIB);
    let mut request = new_file(folder.id(), "holiday.mov", bytes.len());
    request.mimetype = Some("video/quicktime".into());
    let s = env
        .service
        .api_upload_session_create(&app, request)
        .await
        .unwrap();
    let done = send_rest(env, &app, s.clone(), &bytes, 8 * MIB).await;
    assert_eq!(done.offset, done.size);
    assert_eq!(staged(env).await.len(), 13);
    let finished = env
        .service
        .api_upload_session_finish(&app, s.id, FinishOptions::default())
        .await
        .unwrap();
    let meta = file_meta(&finished.node);
    assert_eq!(meta.size, bytes.len() as u64);
    assert_eq!(meta.mimetype.as_deref(), Some("video/quicktime"));
    assert_eq!(finished.node.parent_id(), folder.id());
    let back = read_back(env, &finished.node).await;
    assert!(back == bytes, "the file holds exactly the bytes sent");
    assert!(staged(env).await.is_empty());
}
both_combos!(a_hundred_mib_in_eight_mib_pieces);

/// `b` as the content of a one-shot API upload.
fn content(b: &'static [u8]) -> NewContent {
    NewContent::from_stream(
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b))]),
        None,
    )
}

async fn taken_names_are_refused_or_numbered(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let to = UploadTo::New {
        parent: None,
        name: "photo.jpg".into(),
    };
    let first = env
        .service
        .api_upload(&app, to, content(b"first"))
        .await
        .unwrap();

    // At creation: 409 with the item holding the name (up to case).
    let taken = env
        .service
        .api_upload_session_create(&app, new_file(None, "Photo.JPG", 6))
        .await
        .unwrap_err();
    assert_eq!(taken.error.kind, ErrorKind::Conflict);
    assert_eq!(taken.existing.as_ref().and_then(ApiNode::id), first.id());

    // With autorename, the first free number.
    let mut numbered = new_file(None, "photo.jpg", 6);
    numbered.autorename = true;
    for expected in ["photo (1).jpg", "photo (2).jpg"] {
        let s = env
            .service
            .api_upload_session_create(&app, numbered.clone())
            .await
            .unwrap();
        send_rest(env, &app, s.clone(), b"second", 6).await;
        let done = env
            .service
            .api_upload_session_finish(&app, s.id, FinishOptions::default())
            .await
            .unwrap();
        assert_eq!(file_meta(&done.node).name.as_str(), expected);
    }

    // Taken between creation and finish: refused, the session kept; the
    // client finishes again under another name.
    let s = env
        .service
        .api_upload_session_create(&app, new_file(None, "late.txt", 5))
        .await
        .unwrap();
    send_rest(env, &app, s.clone(), b"later", 5).await;
    let to = UploadTo::New {
        parent: None,
        name: "late.txt".into(),
    };
    let meanwhile = env
        .service
        .api_upload(&app, to, content(b"meanwhile"))
        .await
        .unwrap();
    let refused = env
        .service
        .api_upload_session_finish(&app, s.id, FinishOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused.error.kind, ErrorKind::Conflict);
    assert_eq!(
        refused.existing.as_ref().and_then(ApiNode::id),
        meanwhile.id()
    );
    assert_eq!(refused.session.as_ref().map(|s| s.offset), Some(5));
    let kept = env
        .service
        .api_upload_session_status(&app, s.id)
        .await
        .unwrap();
    assert_eq!(kept.offset, 5);
    let renamed = FinishOptions {
        name: Some("later.txt".into()),
        autorename: None,
    };
    let done = env
        .service
        .api_upload_session_finish(&app, s.id, renamed)
        .await
        .unwrap();
    assert_eq!(file_meta(&done.node).name.as_str(), "later.txt");
    assert_eq!(read_back(env, &done.node).await, b"later");

    // A bad name is refused at creation.
    let bad = env
        .service
        .api_upload_session_create(&app, new_file(None, "a/b", 1))
        .await
        .unwrap_err();
    assert_eq!(bad.error.kind, ErrorKind::InvalidName);
    assert!(staged(env).await.is_empty());
}
both_combos!(taken_names_are_refused_or_numbered);

async fn a_new_version_through_a_session(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let to = UploadTo::New {
        parent: None,
        name: "doc.txt".into(),
    };
    let v1 = env
        .service
        .api_upload(&app, to, content(b"one"))
        .await
        .unwrap();
    let id = v1.id().unwrap();
    let stale = UploadSessionRequest {
        to: UploadTo::Existing {
            id,
            if_match: Some(9),
        },
        size: 3,
        autorename: false,
        mimetype: None,
    };
    let refused = env
        .service
        .api_upload_session_create(&app, stale)
        .await
        .unwrap_err();
    assert_eq!(refused.error.kind, ErrorKind::Conflict);
    assert_eq!(refused.existing.as_ref().and_then(ApiNode::id), Some(id));
    let request = UploadSessionRequest {
        to: UploadTo::Existing {
            id,
            if_match: Some(1),
        },
        size: 3,
        autorename: false,
        mimetype: None,
    };
    let s = env
        .service
        .api_upload_session_create(&app, request)
        .await
        .unwrap();
    send_rest(env, &app, s.clone(), b"two", 2).await;
    let done = env
        .service
        .api_upload_session_finish(&app, s.id, FinishOptions::default())
        .await
        .unwrap();
    assert!(!done.created);
    assert_eq!(done.node.id(), Some(id));
    assert_eq!(file_meta(&done.node).version, 2);
    assert_eq!(read_back(env, &done.node).await, b"two");

    // Retried, the finish commits nothing more and answers version 2, also
    // once a later version exists.
    let to = UploadTo::Existing { id, if_match: None };
    let v3 = env
        .service
        .api_upload(&app, to, content(b"three"))
        .await
        .unwrap();
    assert_eq!(file_meta(&v3).version, 3);
    let again = env
        .service
        .api_upload_session_finish(&app, s.id, FinishOptions::default())
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.node.id(), Some(id));
    assert_eq!(file_meta(&again.node).version, 2);
    let versions = env.service.api_versions(alice.id, id, false).await.unwrap();
    assert_eq!(versions.len(), 3, "committed once");
    // Nobody else learns anything of it.
    let mallory = caller(&env.user("mallory@example.com").await);
    let theirs = env
        .service
        .api_upload_session_finish(&mallory, s.id, FinishOptions::default())
        .await
        .unwrap_err();
    assert_eq!(theirs.error.kind, ErrorKind::NotFound);
    assert!(theirs.existing.is_none() && theirs.session.is_none());
}
both_combos!(a_new_version_through_a_session);

async fn sessions_are_their_users_alone(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let mallory = env.user("mallory@example.com").await;
    let (a, m) = (caller(&alice), caller(&mallory));
    let s = env
        .service
        .api_upload_session_create(&a, new_file(None, "mine.txt", 4))
        .await
        .unwrap();
    let status = env
        .service
        .api_upload_session_status(&m, s.id)
        .await
        .unwrap_err();
    assert_eq!(status.kind, ErrorKind::NotFound);
    let append = env
        .service
        .api_upload_session_append(&m, s.id, 0, piece(b"evil"))
        .await
        .unwrap_err();
    assert_eq!(append.error.kind, ErrorKind::NotFound);
    assert!(append.session.is_none(), "nothing about it is told");
    let finish = env
        .service
        .api_upload_session_finish(&m, s.id, FinishOptions::default())
        .await
        .unwrap_err();
    assert_eq!(finish.error.kind, ErrorKind::NotFound);
    let cancel = env
        .service
        .api_upload_session_cancel(&m, s.id)
        .await
        .unwrap_err();
    assert_eq!(cancel.kind, ErrorKind::NotFound);
    // Untouched.
    let status = env
        .service
        .api_upload_session_status(&a, s.id)
        .await
        .unwrap();
    assert_eq!(status.offset, 0);
    // Mallory cannot upload into alice's folder through a session either.
    let folder = env
        .service
        .api_create_folder(&a, None, "Private")
        .await
        .unwrap();
    let into = env
        .service
        .api_upload_session_create(&m, new_file(folder.id(), "x", 1))
        .await
        .unwrap_err();
    assert_eq!(into.error.kind, ErrorKind::NotFound);
}
both_combos!(sessions_are_their_users_alone);

async fn cancel_and_expiry_delete_staged_objects(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let bytes = data("cancel", 2 * MIB);
    let s = env
        .service
        .api_upload_session_create(&app, new_file(None, "c.bin", bytes.len()))
        .await
        .unwrap();
    send_rest(env, &app, s.clone(), &bytes[..MIB], MIB / 2).await;
    assert_eq!(staged(env).await.len(), 2);
    env.service
        .api_upload_session_cancel(&app, s.id)
        .await
        .unwrap();
    assert!(staged(env).await.is_empty(), "a cancel deletes its pieces");
    let gone = env
        .service
        .api_upload_session_status(&app, s.id)
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);
    let again = env
        .service
        .api_upload_session_cancel(&app, s.id)
        .await
        .unwrap_err();
    assert_eq!(again.kind, ErrorKind::NotFound);

    // A session left alone expires; the prune deletes what it staged.
    let s = env
        .service
        .api_upload_session_create(&app, new_file(None, "e.bin", bytes.len()))
        .await
        .unwrap();
    let kept = env
        .service
        .api_upload_session_create(&app, new_file(None, "k.bin", bytes.len()))
        .await
        .unwrap();
    send_rest(env, &app, s.clone(), &bytes[..MIB], MIB).await;
    send_rest(env, &app, kept.clone(), &bytes[..MIB], MIB).await;
    assert_eq!(staged(env).await.len(), 2);
    env.service.prune_upload_sessions().await.unwrap();
    assert_eq!(
        staged(env).await.len(),
        2,
        "live sessions keep their pieces"
    );
    sqlx::query("UPDATE upload_sessions SET expires_at = 0 WHERE id = $1")
        .bind(s.id.to_string())
        .execute(env.db.store.raw_pool())
        .await
        .unwrap();
    assert_eq!(env.service.prune_upload_sessions().await.unwrap(), 1);
    assert_eq!(
        staged(env).await.len(),
        1,
        "the expired session's piece is gone"
    );
    let expired = env
        .service
        .api_upload_session_status(&app, s.id)
        .await
        .unwrap_err();
    assert_eq!(expired.kind, ErrorKind::NotFound);
    env.service
        .api_upload_session_status(&app, kept.id)
        .await
        .unwrap();

    // The garbage collector of workspace containers leaves staged pieces
    // alone whatever their age.
    let settings = stacksync_service::GcSettings {
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    env.service.collect_garbage(settings).await.unwrap();
    assert_eq!(staged(env).await.len(), 1);
    let rest = send_rest(
        env,
        &app,
        env.service
            .api_upload_session_status(&app, kept.id)
            .await
            .unwrap(),
        &bytes,
        MIB,
    )
    .await;
    let done = env
        .service
        .api_upload_session_finish(&app, rest.id, FinishOptions::default())
        .await
        .unwrap();
    assert_eq!(read_back(env, &done.node).await, bytes);
}
both_combos!(cancel_and_expiry_delete_staged_objects);

async fn quota_and_the_session_cap(env: &Env) {
    let alice = env
        .user_with_quota("alice@example.com", 10 * MIB as u64)
        .await;
    let app = caller(&alice);
    let over = env
        .service
        .api_upload_session_create(&app, new_file(None, "big.bin", 11 * MIB))
        .await
        .unwrap_err();
    assert_eq!(over.error.kind, ErrorKind::QuotaExceeded, "{over:?}");
    // Open sessions reserve their size.
    env.service
        .api_upload_session_create(&app, new_file(None, "six.bin", 6 * MIB))
        .await
        .unwrap();
    let reserved = env
        .service
        .api_upload_session_create(&app, new_file(None, "five.bin", 5 * MIB))
        .await
        .unwrap_err();
    assert_eq!(reserved.error.kind, ErrorKind::QuotaExceeded);

    let bob = env.user("bob@example.com").await;
    let b = caller(&bob);
    for n in 0..MAX_OPEN_UPLOAD_SESSIONS {
        env.service
            .api_upload_session_create(&b, new_file(None, &format!("f{n}"), 1))
            .await
            .unwrap();
    }
    let capped = env
        .service
        .api_upload_session_create(&b, new_file(None, "one-more", 1))
        .await
        .unwrap_err();
    assert_eq!(capped.error.kind, ErrorKind::TooManyRequests);
    assert!(capped.error.retry_after_secs.is_some());
}
both_combos!(quota_and_the_session_cap);

async fn read_only_members_and_encrypted_folders_are_refused(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let (a, b) = (caller(&alice), caller(&bob));
    let team = env
        .service
        .api_create_folder(&a, None, "Team")
        .await
        .unwrap();
    let shared = share_folder_as(env, &alice, &bob, ItemId(team.id().unwrap()), true).await;
    let refused = env
        .service
        .api_upload_session_create(&b, new_file(Some(shared.id.0), "x.txt", 1))
        .await
        .unwrap_err();
    assert_eq!(refused.error.kind, ErrorKind::Forbidden, "{refused:?}");
    // The owner may.
    env.service
        .api_upload_session_create(&a, new_file(Some(shared.id.0), "x.txt", 1))
        .await
        .unwrap();

    let carol = env.user("carol@example.com").await;
    env.call(
        &carol.token,
        stacksync_proto::rpc::Request::EncryptWorkspace {
            workspace: carol.private.id,
        },
    )
    .await
    .unwrap();
    let sealed = env
        .service
        .api_upload_session_create(&caller(&carol), new_file(None, "x.txt", 1))
        .await
        .unwrap_err();
    assert_eq!(sealed.error.kind, ErrorKind::Forbidden, "{sealed:?}");
}
both_combos!(read_only_members_and_encrypted_folders_are_refused);

async fn racing_pieces_at_one_offset_count_once(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let bytes = data("race", 2 * MIB);
    let s = env
        .service
        .api_upload_session_create(&app, new_file(None, "race.bin", bytes.len()))
        .await
        .unwrap();
    // The same first piece sent twice at once (a retry racing the
    // original), then one that says more than it brings.
    let (one, two) = tokio::join!(
        env.service
            .api_upload_session_append(&app, s.id, 0, piece(&bytes[..MIB])),
        env.service
            .api_upload_session_append(&app, s.id, 0, piece(&bytes[..MIB])),
    );
    let (won, lost) = match (one, two) {
        (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
        other => panic!("one piece counts, the other is refused: {other:?}"),
    };
    assert_eq!(won.offset, MIB as u64);
    assert_eq!(lost.error.kind, ErrorKind::Conflict, "{lost:?}");
    assert_eq!(lost.session.map(|s| s.offset), Some(MIB as u64));
    assert_eq!(staged(env).await.len(), 1, "the loser's object is deleted");

    let short = UploadPiece::from_stream(
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(
            &bytes[MIB..MIB + 10],
        ))]),
        Some(MIB as u64),
    );
    let refused = env
        .service
        .api_upload_session_append(&app, s.id, MIB as u64, short)
        .await
        .unwrap_err();
    assert_eq!(refused.error.kind, ErrorKind::BadRequest, "{refused:?}");
    assert_eq!(refused.session.map(|s| s.offset), Some(MIB as u64));
    assert_eq!(staged(env).await.len(), 1);
    let done = send_rest(env, &app, won, &bytes, MIB).await;
    let finished = env
        .service
        .api_upload_session_finish(&app, done.id, FinishOptions::default())
        .await
        .unwrap();
    assert_eq!(read_back(env, &finished.node).await, bytes);
}
both_combos!(racing_pieces_at_one_offset_count_once);

async fn an_empty_file_needs_no_piece(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let s = env
        .service
        .api_upload_session_create(&app, new_file(None, "empty.txt", 0))
        .await
        .unwrap();
    assert_eq!((s.offset, s.size), (0, 0));
    // An empty piece changes nothing and stores nothing.
    let same = env
        .service
        .api_upload_session_append(&app, s.id, 0, piece(b""))
        .await
        .unwrap();
    assert_eq!(same.offset, 0);
    assert!(staged(env).await.is_empty());
    let done = env
        .service
        .api_upload_session_finish(&app, s.id, FinishOptions::default())
        .await
        .unwrap();
    assert_eq!(file_meta(&done.node).size, 0);
    assert_eq!(read_back(env, &done.node).await, b"");
}
both_combos!(an_empty_file_needs_no_piece);

async fn a_removed_users_pieces_go_with_them(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let bytes = data("removed", MIB);
    for (user, name) in [(&alice, "a.bin"), (&bob, "b.bin")] {
        let app = caller(user);
        let s = env
            .service
            .api_upload_session_create(&app, new_file(None, name, 2 * bytes.len()))
            .await
            .unwrap();
        send_rest(env, &app, s, &bytes, MIB / 2).await;
    }
    assert_eq!(staged(env).await.len(), 4);
    env.service
        .remove_user(alice.id, stacksync_service::SharedWorkspaces::Refuse)
        .await
        .unwrap();
    assert_eq!(
        staged(env).await.len(),
        2,
        "alice's pieces are deleted with her, bob's stay"
    );
}
both_combos!(a_removed_users_pieces_go_with_them);
