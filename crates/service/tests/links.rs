//! Shared links on the service (`Service::create_link` and the public
//! operations), on SQLite and on PostgreSQL with RabbitMQ: view links to a
//! file and to a folder (nothing outside the linked subtree is reached),
//! passwords (missing, wrong, right, throttled), expiry and revocation,
//! links that die with their item or their owner's access, and upload
//! links (nothing listed or downloaded, names never overwritten, the
//! owner's quota).

#[macro_use]
mod common;

use bytes::Bytes;
use common::{Env, User, folder, share_folder, share_folder_as};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{CommitRequest, Error, ErrorKind, ItemId, ProposedItem};
use stacksync_service::{
    ApiCaller, ApiNode, LinkAccess, LinkGrant, NewContent, NewLink, OpenedLink, UploadTo, link_gone,
};
use uuid::Uuid;

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

fn id_of(node: &ApiNode) -> Uuid {
    node.id().expect("an item has an id")
}

fn name_of(node: &ApiNode) -> String {
    match node {
        ApiNode::Item { meta, .. } => meta.name.to_string(),
        other => panic!("an item, not {other:?}"),
    }
}

fn view(item: Uuid) -> NewLink {
    NewLink {
        item,
        password: None,
        expires_at: None,
        access: LinkAccess::View,
    }
}

fn upload(item: Uuid) -> NewLink {
    NewLink {
        access: LinkAccess::Upload,
        ..view(item)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Asserts the one answer of a link that reaches nothing.
#[track_caller]
fn assert_gone<T: std::fmt::Debug>(r: Result<T, Error>) {
    let e = r.expect_err("the link reaches nothing");
    assert_eq!(e, link_gone(), "every dead end answers the same");
}

async fn folder_in(env: &Env, user: &User, parent: Option<Uuid>, name: &str) -> Uuid {
    id_of(
        &env.service
            .api_create_folder(&caller(user), parent, name)
            .await
            .unwrap(),
    )
}

async fn file_in(env: &Env, user: &User, parent: Option<Uuid>, name: &str, data: &[u8]) -> Uuid {
    let to = UploadTo::New {
        parent,
        name: name.into(),
    };
    id_of(
        &env.service
            .api_upload(&caller(user), to, content(data))
            .await
            .unwrap(),
    )
}

async fn read(env: &Env, node: &ApiNode) -> Vec<u8> {
    let c = env.service.api_content(node, None).await.unwrap();
    futures::TryStreamExt::try_concat(futures::TryStreamExt::map_ok(c.body, |b| b.to_vec()))
        .await
        .unwrap()
}

/// Opens a link with its secret alone; its grant and session token.
async fn open(env: &Env, id: Uuid, secret: &str) -> (LinkGrant, String) {
    let OpenedLink { grant, session } = env
        .service
        .open_link(&id.to_string(), Some(secret), None, None)
        .await
        .unwrap();
    (grant, session.expect("a new session").token)
}

async fn grant(env: &Env, id: Uuid, token: &str) -> Result<LinkGrant, Error> {
    env.service.link_grant(&id.to_string(), Some(token)).await
}

async fn names(env: &Env, g: &LinkGrant, folder: Option<Uuid>) -> Result<Vec<String>, Error> {
    let page = env.service.link_listing(g, folder, None).await?;
    Ok(page.entries.iter().map(name_of).collect())
}

async fn view_links_reach_their_subtree_only(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let photos = folder_in(env, &alice, None, "Photos").await;
    let trip = folder_in(env, &alice, Some(photos), "Trip").await;
    let beach = file_in(env, &alice, Some(trip), "beach.jpg", b"sand and sea").await;
    let notes = file_in(env, &alice, Some(photos), "notes.txt", b"remember").await;
    let private = folder_in(env, &alice, None, "Private").await;
    let secret_file = file_in(env, &alice, Some(private), "diary.txt", b"dear diary").await;

    let made = env
        .service
        .create_link(alice.id, view(photos))
        .await
        .unwrap();
    assert!(made.secret.len() >= 32, "at least 128 random bits in hex");
    let stored = env.db.store.link(made.link.id).await.unwrap().unwrap();
    assert!(
        !stored.secret_hash.contains(&made.secret),
        "only the secret's hash is kept"
    );
    let id = made.link.id;

    // Wrong secrets and unknown links all answer the same.
    let link = id.to_string();
    assert_gone(
        env.service
            .open_link(&link, Some("wrong"), None, None)
            .await,
    );
    assert_gone(env.service.open_link(&link, None, None, None).await);
    assert_gone(
        env.service
            .open_link(&Uuid::new_v4().to_string(), Some(&made.secret), None, None)
            .await,
    );
    assert_gone(
        env.service
            .open_link("not-a-link", Some(&made.secret), None, None)
            .await,
    );

    let (g, token) = open(env, id, &made.secret).await;
    assert_eq!(g.access(), LinkAccess::View);
    assert_eq!(g.root_name(), "Photos");
    assert_eq!(names(env, &g, None).await.unwrap(), ["Trip", "notes.txt"]);
    let page = env
        .service
        .link_listing(&g, Some(trip), None)
        .await
        .unwrap();
    let path: Vec<&str> = page.path.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(path, ["Photos", "Trip"]);
    assert_eq!(page.path[1].id, trip);
    let beach_node = env.service.link_file(&g, beach).await.unwrap();
    assert_eq!(read(env, &beach_node).await, b"sand and sea");

    // The session alone opens it again, with no new session.
    let again = env
        .service
        .open_link(&link, None, None, Some(&token))
        .await
        .unwrap();
    assert!(again.session.is_none());
    let g = grant(env, id, &token).await.unwrap();

    // Outside the subtree, or the wrong kind: nothing.
    assert_gone(env.service.link_file(&g, secret_file).await);
    assert_gone(env.service.link_listing(&g, Some(private), None).await);
    assert_gone(env.service.link_file(&g, trip).await);
    assert_gone(env.service.link_listing(&g, Some(notes), None).await);
    assert_gone(env.service.link_file(&g, Uuid::new_v4()).await);
    let bobs = file_in(env, &bob, None, "bob.txt", b"bob's").await;
    assert_gone(env.service.link_file(&g, bobs).await);
    // A session is its own link's only, and a made-up one opens nothing.
    let file_link = env
        .service
        .create_link(alice.id, view(notes))
        .await
        .unwrap();
    assert_gone(grant(env, file_link.link.id, &token).await);
    assert_gone(grant(env, id, &"0".repeat(64)).await);
    assert_gone(env.service.link_grant(&link, None).await);

    // A file link: that file, nothing else.
    let (fg, _) = open(env, file_link.link.id, &file_link.secret).await;
    assert_eq!(fg.root_name(), "notes.txt");
    let node = env.service.link_file(&fg, notes).await.unwrap();
    assert_eq!(read(env, &node).await, b"remember");
    assert_gone(env.service.link_listing(&fg, None, None).await);
    assert_gone(env.service.link_file(&fg, beach).await);

    // The owner's list, and revocation by the owner alone.
    let listed = env.service.links_of(alice.id).await.unwrap();
    let ids: Vec<Uuid> = listed.iter().map(|l| l.id).collect();
    assert_eq!(ids, [file_link.link.id, id], "newest first");
    assert!(listed.iter().all(|l| l.item.is_some() && !l.has_password));
    assert!(env.service.links_of(bob.id).await.unwrap().is_empty());
    let e = env.service.revoke_link(bob.id, id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(grant(env, id, &token).await.is_ok(), "bob changed nothing");
    env.service.revoke_link(alice.id, id).await.unwrap();
    assert_gone(grant(env, id, &token).await);
    assert_gone(
        env.service
            .open_link(&link, Some(&made.secret), None, None)
            .await,
    );
    let e = env.service.revoke_link(alice.id, id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);

    // Bob cannot link what he cannot see.
    let e = env
        .service
        .create_link(bob.id, view(photos))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}
both_combos!(view_links_reach_their_subtree_only);

async fn passwords_are_asked_checked_and_throttled(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let doc = file_in(env, &alice, None, "doc.txt", b"for your eyes").await;
    let made = env
        .service
        .create_link(
            alice.id,
            NewLink {
                password: Some("open sesame".into()),
                ..view(doc)
            },
        )
        .await
        .unwrap();
    assert!(made.link.has_password);
    let stored = env.db.store.link(made.link.id).await.unwrap().unwrap();
    let hash = stored.password_hash.expect("a password hash");
    assert!(hash.starts_with("$argon2id$") && !hash.contains("sesame"));
    let link = made.link.id.to_string();
    let try_open = |password: Option<&'static str>| {
        let (service, link, secret) = (env.service.clone(), link.clone(), made.secret.clone());
        async move {
            service
                .open_link(&link, Some(&secret), password, None)
                .await
        }
    };

    let e = try_open(None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains("password"), "{e:?}");
    let e = try_open(Some("")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    let e = try_open(Some("open says me")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert!(e.message.contains("wrong password"), "{e:?}");
    // A wrong secret is not even asked for a password.
    assert_gone(
        env.service
            .open_link(&link, Some("nope"), Some("open sesame"), None)
            .await,
    );
    let opened = try_open(Some("open sesame")).await.unwrap();
    let token = opened.session.expect("a session").token;

    // Ten failures a minute, then nobody gets in, right password or not.
    for _ in 1..10 {
        let e = try_open(Some("guess")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthenticated);
    }
    let e = try_open(Some("guess")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests, "{e:?}");
    assert!(e.retry_after_secs.is_some_and(|s| (1..=60).contains(&s)));
    let e = try_open(Some("open sesame")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    // A browser that got in before keeps its session.
    assert!(grant(env, made.link.id, &token).await.is_ok());
    // The window passes (here: is moved back an hour).
    sqlx::query("UPDATE shared_links SET attempts_since = attempts_since - 3600000 WHERE id = $1")
        .bind(&link)
        .execute(env.db.store.raw_pool())
        .await
        .unwrap();
    assert!(try_open(Some("open sesame")).await.is_ok());

    // An empty password is no password.
    let open_link = env
        .service
        .create_link(
            alice.id,
            NewLink {
                password: Some(String::new()),
                ..view(doc)
            },
        )
        .await
        .unwrap();
    assert!(!open_link.link.has_password);
    let e = env
        .service
        .create_link(
            alice.id,
            NewLink {
                password: Some("x".repeat(2000)),
                ..view(doc)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
}
both_combos!(passwords_are_asked_checked_and_throttled);

async fn expired_links_end_with_their_sessions(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let doc = file_in(env, &alice, None, "doc.txt", b"soon gone").await;
    let e = env
        .service
        .create_link(
            alice.id,
            NewLink {
                expires_at: Some(now_ms() - 1),
                ..view(doc)
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "an expiry in the past");
    let expires = now_ms() + 3_600_000;
    let made = env
        .service
        .create_link(
            alice.id,
            NewLink {
                expires_at: Some(expires),
                ..view(doc)
            },
        )
        .await
        .unwrap();
    let OpenedLink { grant: g, session } = env
        .service
        .open_link(&made.link.id.to_string(), Some(&made.secret), None, None)
        .await
        .unwrap();
    let session = session.unwrap();
    assert_eq!(session.expires_at, expires, "a session ends with its link");
    assert_eq!(g.expires_at(), Some(expires));
    // Time passes (the expiry is moved into the past).
    sqlx::query("UPDATE shared_links SET expires_at = $1 WHERE id = $2")
        .bind(now_ms() - 1)
        .bind(made.link.id.to_string())
        .execute(env.db.store.raw_pool())
        .await
        .unwrap();
    assert_gone(grant(env, made.link.id, &session.token).await);
    assert_gone(
        env.service
            .open_link(&made.link.id.to_string(), Some(&made.secret), None, None)
            .await,
    );
    let listed = env.service.links_of(alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].expired_at(now_ms()) && listed[0].item.is_none());
}
both_combos!(expired_links_end_with_their_sessions);

async fn links_die_with_their_item_or_their_owners_access(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let carol = env.user("carol@example.com").await;

    // The item is deleted.
    let doc = file_in(env, &alice, None, "doc.txt", b"short-lived").await;
    let made = env.service.create_link(alice.id, view(doc)).await.unwrap();
    let (_, token) = open(env, made.link.id, &made.secret).await;
    env.service
        .api_delete(&caller(&alice), doc, false, None)
        .await
        .unwrap();
    assert_gone(grant(env, made.link.id, &token).await);
    assert_gone(
        env.service
            .open_link(&made.link.id.to_string(), Some(&made.secret), None, None)
            .await,
    );
    let e = env
        .service
        .create_link(alice.id, view(doc))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "a deleted file is not linked");

    // A member leaves the shared folder: their links die; the owner's live.
    let team = ItemId(folder_in(env, &alice, None, "Team").await);
    let before = env
        .service
        .create_link(alice.id, view(team.0))
        .await
        .unwrap();
    let shared = share_folder(env, &alice, &bob, team).await;
    let plan = file_in(env, &bob, Some(shared.id.0), "plan.txt", b"the plan").await;
    let whole = env
        .service
        .create_link(bob.id, view(shared.id.0))
        .await
        .unwrap();
    let one = env.service.create_link(bob.id, view(plan)).await.unwrap();
    let inbox = env
        .service
        .create_link(bob.id, upload(shared.id.0))
        .await
        .unwrap();
    let owners = env
        .service
        .create_link(alice.id, view(shared.id.0))
        .await
        .unwrap();
    let (g, whole_token) = open(env, whole.link.id, &whole.secret).await;
    assert_eq!(g.root_name(), shared.name);
    assert_eq!(names(env, &g, None).await.unwrap(), ["plan.txt"]);
    let page = env.service.link_listing(&g, None, None).await.unwrap();
    assert_eq!(page.path.len(), 1);
    assert_eq!(page.path[0].id, shared.id.0);
    let node = env.service.link_file(&g, plan).await.unwrap();
    assert_eq!(read(env, &node).await, b"the plan");
    let (_, one_token) = open(env, one.link.id, &one.secret).await;
    let (_, inbox_token) = open(env, inbox.link.id, &inbox.secret).await;
    let (_, owners_token) = open(env, owners.link.id, &owners.secret).await;
    // A link made before the folder was shared follows it into the share.
    let (g, before_token) = open(env, before.link.id, &before.secret).await;
    assert_eq!(g.root().id(), Some(shared.id.0));
    assert_eq!(names(env, &g, None).await.unwrap(), ["plan.txt"]);
    env.call(
        &bob.token,
        Request::LeaveWorkspace {
            workspace: shared.id,
        },
    )
    .await
    .unwrap();
    for (link, token) in [
        (whole.link.id, &whole_token),
        (one.link.id, &one_token),
        (inbox.link.id, &inbox_token),
    ] {
        assert_gone(grant(env, link, token).await);
    }
    assert!(
        env.service
            .links_of(bob.id)
            .await
            .unwrap()
            .iter()
            .all(|l| l.item.is_none()),
        "bob sees his links dead"
    );
    // Alice alone: the shared folder went back into her own tree, and her
    // links to it follow it there, as they followed the folder into it.
    for (link, token) in [
        (owners.link.id, &owners_token),
        (before.link.id, &before_token),
    ] {
        let g = grant(env, link, token).await.unwrap();
        assert_eq!(g.root().id(), Some(team.0), "the folder again");
        assert_eq!(names(env, &g, None).await.unwrap(), ["plan.txt"]);
    }

    // A read-only member may make view links, not upload links.
    let docs = ItemId(folder_in(env, &alice, None, "Docs").await);
    let ro = share_folder_as(env, &alice, &carol, docs, true).await;
    assert!(ro.read_only);
    env.service
        .create_link(carol.id, view(ro.id.0))
        .await
        .unwrap();
    let e = env
        .service
        .create_link(carol.id, upload(ro.id.0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}");

    // A disabled owner's links are dead; enabled again, they work again.
    let memo = file_in(env, &alice, None, "memo.txt", b"memo").await;
    let made = env.service.create_link(alice.id, view(memo)).await.unwrap();
    let (_, token) = open(env, made.link.id, &made.secret).await;
    env.service.set_user_disabled(alice.id, true).await.unwrap();
    assert_gone(grant(env, made.link.id, &token).await);
    env.service
        .set_user_disabled(alice.id, false)
        .await
        .unwrap();
    assert!(grant(env, made.link.id, &token).await.is_ok());

    // No upload link to a file; no link into an end-to-end encrypted
    // workspace, whose contents the server cannot read.
    let e = env
        .service
        .create_link(alice.id, upload(memo))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest);
    let dave = env.user("dave@example.com").await;
    env.call(
        &dave.token,
        Request::EncryptWorkspace {
            workspace: dave.private.id,
        },
    )
    .await
    .unwrap();
    let sealed_id = ItemId::new();
    let mut sealed = folder(sealed_id, None, "x");
    sealed.name = ProposedItem::sealed_name(sealed_id);
    sealed.record = Some(b"sealed record".to_vec());
    let commit = CommitRequest {
        workspace: dave.private.id,
        device: dave.device,
        items: vec![sealed],
    };
    let Ok(Reply::Commit(_)) = env.call(&dave.token, Request::Commit(commit)).await else {
        panic!("the sealed folder is committed");
    };
    let e = env
        .service
        .create_link(dave.id, view(sealed_id.0))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}");
}
both_combos!(links_die_with_their_item_or_their_owners_access);

async fn upload_links_take_files_and_show_nothing(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let inbox = folder_in(env, &alice, None, "Inbox").await;
    let first = file_in(env, &alice, Some(inbox), "a.txt", b"alice's own").await;
    let made = env
        .service
        .create_link(alice.id, upload(inbox))
        .await
        .unwrap();
    let (g, _) = open(env, made.link.id, &made.secret).await;
    assert_eq!(g.access(), LinkAccess::Upload);
    assert_gone(env.service.link_listing(&g, None, None).await);
    assert_gone(env.service.link_file(&g, first).await);

    let mut saved = Vec::new();
    for (name, data) in [
        ("a.txt", &b"one"[..]),
        ("a.txt", b"two"),
        ("A.TXT", b"three"),
        ("b.txt", b"four"),
    ] {
        let node = env
            .service
            .link_upload(&g, name, content(data), Some(data.len() as u64))
            .await
            .unwrap();
        let ApiNode::Item { meta, .. } = &node else {
            panic!("an item")
        };
        let device = env.db.store.device(meta.device).await.unwrap().unwrap();
        assert_eq!(device.user, alice.id);
        assert_eq!(device.name, "link", "committed as the owner's link device");
        assert_eq!(read(env, &node).await, data);
        saved.push(name_of(&node));
    }
    assert_eq!(saved, ["a (1).txt", "a (2).txt", "A (3).TXT", "b.txt"]);
    let mine = env.service.api_node(alice.id, Some(first)).await.unwrap();
    assert_eq!(read(env, &mine).await, b"alice's own", "never overwritten");
    let e = env
        .service
        .link_upload(&g, "a/b", content(b"x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidName);

    // A view link takes nothing.
    let viewer = env
        .service
        .create_link(alice.id, view(inbox))
        .await
        .unwrap();
    let (vg, _) = open(env, viewer.link.id, &viewer.secret).await;
    assert_gone(
        env.service
            .link_upload(&vg, "c.txt", content(b"x"), None)
            .await,
    );

    // The owner's quota bounds what comes in, announced or not.
    let bob = env.user_with_quota("bob@example.com", 200_000).await;
    let drop = folder_in(env, &bob, None, "Drop").await;
    let made = env.service.create_link(bob.id, upload(drop)).await.unwrap();
    let (g, _) = open(env, made.link.id, &made.secret).await;
    let e = env
        .service
        .link_upload(&g, "big.bin", content(b"small"), Some(10_000_000))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::QuotaExceeded, "refused on its length");
    let mut big = vec![0u8; 1_000_000];
    blake3::Hasher::new()
        .update(b"incompressible")
        .finalize_xof()
        .fill(&mut big);
    let e = env
        .service
        .link_upload(&g, "big.bin", content(&big), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::QuotaExceeded, "refused as it is stored");
    let root = env.service.api_node(bob.id, Some(drop)).await.unwrap();
    let page = env
        .service
        .api_children(bob.id, &root, true, 100, None)
        .await
        .unwrap();
    assert!(page.children.is_empty(), "nothing was committed");
    let small = env
        .service
        .link_upload(&g, "small.txt", content(b"fits"), Some(4))
        .await
        .unwrap();
    assert_eq!(name_of(&small), "small.txt");
}
both_combos!(upload_links_take_files_and_show_nothing);
