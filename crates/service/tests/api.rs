//! The REST API's operations on the service (`Service::api_*`), on SQLite
//! and on PostgreSQL with RabbitMQ: what the HTTP suite
//! (`crates/cli/tests/api_v2.rs`) cannot easily reach. An upload is pushed
//! to devices like any commit and dedups against what the workspace has;
//! the tree joins shared folders where each member mounted them; the
//! change feed spans workspaces with one cursor; moves across workspaces,
//! deleting a folder that holds a shared folder, and the contents of an
//! end-to-end encrypted workspace are refused.

#[macro_use]
mod common;

use bytes::Bytes;
use common::{Env, User, share_folder};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ErrorKind, ItemId, Notification};
use stacksync_service::{ApiCaller, ApiNode, NewContent, Placement, UploadTo};

fn caller(user: &User) -> ApiCaller {
    ApiCaller {
        user: user.id,
        consumer_key: "test-app".to_owned(),
    }
}

fn content(data: &[u8]) -> NewContent {
    let piece: Result<Bytes, std::io::Error> = Ok(Bytes::copy_from_slice(data));
    NewContent::from_stream(futures::stream::iter([piece]), None)
}

fn item_id(node: &ApiNode) -> uuid::Uuid {
    node.id().expect("an item has an id")
}

async fn quota_used(env: &Env, user: &User) -> u64 {
    match env.call(&user.token, Request::GetAccount).await.unwrap() {
        Reply::Account(a) => a.quota_used,
        other => panic!("account: {other:?}"),
    }
}

async fn an_upload_is_pushed_and_dedups(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let app = caller(&alice);
    let mut hears = env
        .bus
        .subscribe(&env.service.topics_for(alice.id).await.unwrap())
        .await
        .unwrap();
    // Incompressible, several chunks.
    let mut data = vec![0u8; 3_000_000];
    blake3::Hasher::new()
        .update(b"api upload")
        .finalize_xof()
        .fill(&mut data);
    let to = UploadTo::New {
        parent: None,
        name: "a.bin".into(),
    };
    let first = env
        .service
        .api_upload(&app, to, content(&data))
        .await
        .unwrap();
    match common::next_notification(&mut hears).await {
        Notification::Commit { items, .. } => {
            assert_eq!(items.len(), 1);
            assert_eq!(
                items[0].id.0,
                item_id(&first),
                "the device hears the new file"
            );
        }
        other => panic!("expected a commit notification, got {other:?}"),
    }
    let used = quota_used(env, &alice).await;
    assert!(used >= data.len() as u64, "the pack is charged: {used}");

    // The same bytes again, as another file: nothing new is stored.
    let to = UploadTo::New {
        parent: None,
        name: "b.bin".into(),
    };
    let second = env
        .service
        .api_upload(&app, to, content(&data))
        .await
        .unwrap();
    assert_eq!(
        quota_used(env, &alice).await,
        used,
        "known chunks are not stored again"
    );
    let read = env
        .service
        .api_content(&second, Some((5, 2_500_000)))
        .await
        .unwrap();
    let bytes: Vec<u8> =
        futures::TryStreamExt::try_concat(futures::TryStreamExt::map_ok(read.body, |b| b.to_vec()))
            .await
            .unwrap();
    assert_eq!(bytes, data[5..2_500_000], "a range reads back exactly");

    // A stale version is refused and changes nothing.
    let to = UploadTo::Existing {
        id: item_id(&first),
        if_match: Some(7),
    };
    let stale = env
        .service
        .api_upload(&app, to, content(b"other"))
        .await
        .unwrap_err();
    assert_eq!(stale.kind, ErrorKind::Conflict);
    let now = env
        .service
        .api_node(alice.id, Some(item_id(&first)))
        .await
        .unwrap();
    let ApiNode::Item { meta, .. } = now else {
        panic!("a file")
    };
    assert_eq!(meta.version, 1);
}
both_combos!(an_upload_is_pushed_and_dedups);

async fn shared_folders_join_the_tree(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let (a, b) = (caller(&alice), caller(&bob));
    let team = env
        .service
        .api_create_folder(&a, None, "Team")
        .await
        .unwrap();
    let mine = env
        .service
        .api_create_folder(&a, None, "Mine")
        .await
        .unwrap();
    let to = UploadTo::New {
        parent: Some(item_id(&mine)),
        name: "private.txt".into(),
    };
    let private_file = env
        .service
        .api_upload(&a, to, content(b"mine"))
        .await
        .unwrap();
    let shared = share_folder(env, &alice, &bob, ItemId(item_id(&team))).await;

    // Bob's top folder lists the shared folder under its workspace id, and
    // the feed brings it with what is in it.
    let root = env.service.api_node(bob.id, None).await.unwrap();
    let page = env
        .service
        .api_children(bob.id, &root, false, 100, None)
        .await
        .unwrap();
    assert!(
        page.children
            .iter()
            .any(|n| matches!(n, ApiNode::SharedRoot { workspace } if workspace.id == shared.id)),
        "bob's top folder holds the shared folder"
    );
    let to = UploadTo::New {
        parent: Some(shared.id.0),
        name: "from-bob.txt".into(),
    };
    let bobs = env
        .service
        .api_upload(&b, to, content(b"hi"))
        .await
        .unwrap();
    assert_eq!(bobs.parent_id(), Some(shared.id.0));
    let delta = env.service.api_delta(alice.id, None, 1000).await.unwrap();
    assert!(!delta.has_more);
    assert!(
        delta.entries.iter().any(|n| n.id() == Some(item_id(&bobs))),
        "alice's feed carries bob's file"
    );
    let again = env
        .service
        .api_delta(alice.id, Some(&delta.cursor), 1000)
        .await
        .unwrap();
    assert!(again.entries.is_empty() && !again.has_more, "{again:?}");
    let small = env.service.api_delta(alice.id, None, 1).await.unwrap();
    assert!(small.has_more, "one entry at a time leaves more");

    // Moving a file into another workspace is refused; nothing moves.
    let into_shared = Placement {
        name: None,
        parent: Some(Some(shared.id.0)),
    };
    let refused = env
        .service
        .api_place(&a, item_id(&private_file), false, into_shared, None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::BadRequest, "{refused:?}");

    // Bob cannot see alice's private file, whatever the call.
    let hidden = env
        .service
        .api_node(bob.id, Some(item_id(&private_file)))
        .await
        .unwrap_err();
    assert_eq!(hidden.kind, ErrorKind::NotFound);

    // Bob places his mount inside a folder of his; that folder cannot be
    // deleted while it holds it, and the owner must unshare before deleting.
    let holder = env
        .service
        .api_create_folder(&b, None, "Holder")
        .await
        .unwrap();
    let moved = Placement {
        name: Some("Our team".into()),
        parent: Some(Some(item_id(&holder))),
    };
    let mount = env
        .service
        .api_place(&b, shared.id.0, true, moved, None)
        .await
        .unwrap();
    assert_eq!(mount.parent_id(), Some(item_id(&holder)));
    let busy = env
        .service
        .api_delete(&b, item_id(&holder), true, None)
        .await
        .unwrap_err();
    assert_eq!(busy.kind, ErrorKind::Conflict, "{busy:?}");
    let owners = env
        .service
        .api_delete(&a, shared.id.0, true, None)
        .await
        .unwrap_err();
    assert_eq!(owners.kind, ErrorKind::Conflict, "{owners:?}");
    // A member's delete of the shared folder is leaving it.
    env.service
        .api_delete(&b, shared.id.0, true, None)
        .await
        .unwrap();
    let gone = env
        .service
        .api_node(bob.id, Some(shared.id.0))
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);
}
both_combos!(shared_folders_join_the_tree);

async fn encrypted_contents_stay_closed(env: &Env) {
    let carol = env.user("carol@example.com").await;
    let c = caller(&carol);
    let workspace = carol.private.id;
    env.call(&carol.token, Request::EncryptWorkspace { workspace })
        .await
        .unwrap();
    let folder = env
        .service
        .api_create_folder(&c, None, "Plain")
        .await
        .unwrap_err();
    assert_eq!(folder.kind, ErrorKind::Forbidden, "{folder:?}");
    let to = UploadTo::New {
        parent: None,
        name: "x".into(),
    };
    let upload = env
        .service
        .api_upload(&c, to, content(b"x"))
        .await
        .unwrap_err();
    assert_eq!(upload.kind, ErrorKind::Forbidden, "{upload:?}");
    // Listing the (empty) top folder still works.
    let root = env.service.api_node(carol.id, None).await.unwrap();
    env.service
        .api_children(carol.id, &root, true, 10, None)
        .await
        .unwrap();
}
both_combos!(encrypted_contents_stay_closed);
