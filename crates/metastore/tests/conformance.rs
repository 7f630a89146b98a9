//! The metadata store's conformance suite: every test runs on SQLite and on
//! PostgreSQL (see the `conformance!` macro in `common`).

mod common;

use common::*;
use stacksync_metastore::MetaStore;
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, CommitRequest, ErrorKind, ItemId, ItemStatus, UserId, wire,
};

conformance!(
    users_and_devices,
    workspaces_are_private_to_members,
    batch_creates_folder_with_children,
    version_rules,
    retried_batch_changes_nothing,
    live_names_are_unique,
    database_enforces_live_name_uniqueness,
    bad_names_are_refused,
    moves_and_parents,
    deletes_keep_history,
    quota_is_checked_and_tracked,
    change_feed_pages_in_revision_order,
    chunk_sizes_cannot_lie,
    items_of_other_workspaces_are_forbidden,
    concurrent_batches_serialize,
    oauth_tokens_and_nonces,
    share_proposals,
    read_only_members,
);

async fn users_and_devices(store: &MetaStore) {
    let f = fixture(store, "Ann@Example.org", 1 << 30).await;
    assert_eq!(f.user.email, "ann@example.org");
    let again = store
        .user_by_email("ANN@example.org ")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.account.id, f.user.id);
    let dup = store
        .create_user(stacksync_metastore::NewUser {
            email: "ann@example.org".into(),
            name: "x".into(),
            password_hash: "h".into(),
            quota_limit: 1,
            storage_user: None,
        })
        .await
        .unwrap_err();
    assert_eq!(dup.to_proto().kind, ErrorKind::BadRequest);
    let updated = store
        .upsert_device(
            f.user.id,
            Some(f.device.id),
            "desk",
            "mac",
            "0.2",
            Some("127.0.0.1"),
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.os.as_str()),
        ("desk", "mac")
    );
    let bob = fixture(store, "bob@example.org", 1 << 30).await;
    let stolen = store
        .upsert_device(bob.user.id, Some(f.device.id), "mine", "", "", None)
        .await
        .unwrap_err();
    assert_eq!(stolen.to_proto().kind, ErrorKind::Forbidden);
    assert_eq!(
        store.device(f.device.id).await.unwrap().unwrap().name,
        "desk"
    );
}

async fn workspaces_are_private_to_members(store: &MetaStore) {
    let a = fixture(store, "a@x.org", 1 << 30).await;
    let b = fixture(store, "b@x.org", 1 << 30).await;
    assert_eq!(
        store.workspaces_of(a.user.id).await.unwrap(),
        vec![a.ws.clone()]
    );
    let err = store.workspace_as(b.user.id, a.ws.id).await.unwrap_err();
    assert_eq!(err.to_proto().kind, ErrorKind::Forbidden);
    store
        .add_member(a.ws.id, b.user.id, "From A", None, None, false)
        .await
        .unwrap();
    assert_eq!(
        store.workspace_as(b.user.id, a.ws.id).await.unwrap().name,
        "From A"
    );
    assert_eq!(store.members(a.ws.id).await.unwrap().len(), 2);
    assert!(store.remove_member(a.ws.id, b.user.id).await.unwrap());
    assert!(
        !store.remove_member(a.ws.id, a.user.id).await.unwrap(),
        "the owner cannot be removed"
    );
    assert!(store.workspace_as(b.user.id, a.ws.id).await.is_err());
}

async fn batch_creates_folder_with_children(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (docs, sub, report) = (ItemId::new(), ItemId::new(), ItemId::new());
    let r = commit(
        store,
        &f,
        vec![
            folder(docs, None, "Docs", 1),
            folder(sub, Some(docs), "2026", 1),
            file(report, Some(sub), "report.txt", 1, 7, 100),
        ],
    )
    .await;
    assert_eq!(r.revision, 3);
    for (res, rev) in r.results.iter().zip(1..) {
        let CommitOutcome::Committed { meta } = &res.outcome else {
            panic!("{res:?}")
        };
        assert_eq!(
            (meta.version, meta.revision, meta.status),
            (1, rev, ItemStatus::New)
        );
    }
    let item = store.item(f.ws.id, report).await.unwrap();
    assert_eq!(item.parent, Some(sub));
    assert_eq!(item.chunks, vec![ChunkRef::whole(ChunkId([7; 32]), 100)]);
    assert_eq!(
        store.children(f.ws.id, Some(docs)).await.unwrap()[0].id,
        sub
    );
    // A child listed before its parent does not find it: order matters.
    let (p, c) = (ItemId::new(), ItemId::new());
    let r = commit(
        store,
        &f,
        vec![file(c, Some(p), "c", 1, 1, 1), folder(p, None, "P", 1)],
    )
    .await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::NotFound)
    );
    assert!(matches!(
        &r.results[1].outcome,
        CommitOutcome::Committed { .. }
    ));
}

async fn version_rules(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let id = ItemId::new();
    let missing = commit(store, &f, vec![file(id, None, "f", 2, 1, 10)]).await;
    assert!(
        matches!(&missing.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::NotFound)
    );
    committed(&commit(store, &f, vec![file(id, None, "f", 1, 1, 10)]).await);
    let v2 = committed(&commit(store, &f, vec![file(id, None, "f", 2, 2, 20)]).await);
    assert_eq!(
        (v2.version, v2.status, v2.size),
        (2, ItemStatus::Changed, 20)
    );
    // Another device proposing a different version 2: rejected with the server's state.
    let other = store
        .upsert_device(f.user.id, None, "phone", "", "", None)
        .await
        .unwrap();
    let stale = commit_as(store, &f, other.id, vec![file(id, None, "f", 2, 3, 30)]).await;
    let CommitOutcome::Conflict { current } = &stale.results[0].outcome else {
        panic!("{stale:?}")
    };
    assert_eq!(
        (current.version, current.content_hash, current.chunks.len()),
        (2, v2.content_hash, 1)
    );
    // Skipping ahead is a conflict too.
    let ahead = commit(store, &f, vec![file(id, None, "f", 4, 4, 40)]).await;
    assert!(
        matches!(&ahead.results[0].outcome, CommitOutcome::Conflict { current } if current.version == 2)
    );
    // Re-committing an old identical version reports it, unchanged.
    let again = committed(&commit(store, &f, vec![file(id, None, "f", 1, 1, 10)]).await);
    assert_eq!((again.version, again.size), (1, 10));
    assert_eq!(store.item(f.ws.id, id).await.unwrap().version, 2);
}

async fn retried_batch_changes_nothing(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (d, x) = (ItemId::new(), ItemId::new());
    let batch = vec![folder(d, None, "D", 1), file(x, Some(d), "x", 1, 9, 99)];
    let first = commit(store, &f, batch.clone()).await;
    let used = store.user(f.user.id).await.unwrap().account.quota_used;
    let second = commit(store, &f, batch).await;
    assert_eq!(first, second);
    assert_eq!(
        store.user(f.user.id).await.unwrap().account.quota_used,
        used
    );
    assert_eq!(
        store
            .get_changes(f.ws.id, 0, 100)
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(store.versions(f.ws.id, x).await.unwrap().len(), 1);
}

async fn live_names_are_unique(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (a, b) = (ItemId::new(), ItemId::new());
    let first = committed(&commit(store, &f, vec![file(a, None, "same", 1, 1, 1)]).await);
    let r = commit(store, &f, vec![file(b, None, "same", 1, 2, 1)]).await;
    let CommitOutcome::Refused { error } = &r.results[0].outcome else {
        panic!("{r:?}")
    };
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(error.current.as_ref().unwrap().id, a);
    // Names that differ only in case are refused too (tests/names.rs).
    // Once the first is deleted, its name is free.
    committed(&commit(store, &f, vec![delete_of(&first)]).await);
    let c = ItemId::new();
    committed(&commit(store, &f, vec![file(c, None, "same", 1, 3, 1)]).await);
}

async fn database_enforces_live_name_uniqueness(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let m = committed(&commit(store, &f, vec![file(ItemId::new(), None, "dup", 1, 1, 1)]).await);
    // Going around the store's checks, the unique index still refuses.
    let raw = sqlx::query(
        "INSERT INTO items (id, workspace_id, parent_id, name, is_folder, mimetype, status, latest_version, revision, \
         content_hash, size, client_modified, server_modified, device_id) \
         VALUES ($1, $2, '', 'dup', $3, NULL, 'NEW', 1, 999, NULL, 0, 0, 0, $4)",
    )
    .bind(ItemId::new().to_string())
    .bind(f.ws.id.to_string())
    .bind(0i64)
    .bind(m.device.to_string())
    .execute(store.raw_pool())
    .await;
    assert!(
        raw.is_err(),
        "a second live 'dup' at the top must violate the unique index"
    );
}

async fn bad_names_are_refused(_store: &MetaStore) {
    for bad in ["", ".", "..", "a/b", "nul\u{0}byte", &"x".repeat(256)] {
        let json = format!(
            r#"{{"v":1,"body":{{"workspace":"{}","device":"{}","items":[{{"id":"{}","parent":null,"name":{},"is_folder":true,"status":"NEW","version":1,"size":0,"client_modified":0}}]}}}}"#,
            uuid::Uuid::nil(),
            uuid::Uuid::nil(),
            ItemId::new(),
            serde_json::to_string(bad).unwrap()
        );
        let err = wire::decode::<CommitRequest>(json.as_bytes()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{bad:?}");
        assert!(
            err.message.contains("name"),
            "the error says what is wrong: {}",
            err.message
        );
    }
}

async fn moves_and_parents(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (a, b, x) = (ItemId::new(), ItemId::new(), ItemId::new());
    let r = commit(
        store,
        &f,
        vec![
            folder(a, None, "A", 1),
            folder(b, Some(a), "B", 1),
            file(x, None, "x", 1, 1, 5),
        ],
    )
    .await;
    let metas: Vec<_> = r
        .results
        .iter()
        .map(|r| match &r.outcome {
            CommitOutcome::Committed { meta } => meta.clone(),
            o => panic!("{o:?}"),
        })
        .collect();
    // A folder cannot move into its own subtree.
    let r = commit(store, &f, vec![place_of(&metas[0], Some(b), "A")]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::BadRequest)
    );
    // Nothing can live inside a file.
    let r = commit(
        store,
        &f,
        vec![file(ItemId::new(), Some(x), "in-file", 1, 2, 1)],
    )
    .await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::NotFound)
    );
    // A move is one new version: same id, same content, new place.
    let moved = committed(&commit(store, &f, vec![place_of(&metas[2], Some(b), "y")]).await);
    assert_eq!(
        (moved.version, moved.status, moved.parent),
        (2, ItemStatus::Moved, Some(b))
    );
    assert_eq!(moved.chunks, metas[2].chunks);
    let renamed = committed(&commit(store, &f, vec![place_of(&moved, Some(b), "z")]).await);
    assert_eq!(renamed.status, ItemStatus::Renamed);
    // A file cannot become a folder.
    let mut flip = folder(x, Some(b), "z", 4);
    flip.status = ItemStatus::Changed;
    let r = commit(store, &f, vec![flip]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::BadRequest)
    );
}

async fn deletes_keep_history(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (d, x) = (ItemId::new(), ItemId::new());
    commit(
        store,
        &f,
        vec![folder(d, None, "D", 1), file(x, Some(d), "x", 1, 1, 10)],
    )
    .await;
    let folder_meta = store.item(f.ws.id, d).await.unwrap();
    let r = commit(store, &f, vec![delete_of(&folder_meta)]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::BadRequest)
    );
    let xm = store.item(f.ws.id, x).await.unwrap();
    let r = commit(store, &f, vec![delete_of(&xm), delete_of(&folder_meta)]).await;
    assert!(
        r.results
            .iter()
            .all(|r| matches!(r.outcome, CommitOutcome::Committed { .. })),
        "{r:?}"
    );
    let history = store.versions(f.ws.id, x).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|v| (v.version, v.status))
            .collect::<Vec<_>>(),
        vec![(1, ItemStatus::New), (2, ItemStatus::Deleted)]
    );
    assert_eq!(history[0].chunks.len(), 1, "old content stays reachable");
    assert_eq!(store.version(f.ws.id, x, 1).await.unwrap().size, 10);
    let feed = store.get_changes(f.ws.id, 0, 10).await.unwrap();
    assert!(feed.items.iter().all(|m| m.status == ItemStatus::Deleted));
    assert!(store.children(f.ws.id, None).await.unwrap().is_empty());
}

/// Quota counts bytes stored (the object ledger), not the sizes versions
/// declare: commits neither charge nor refund, deletes included.
async fn quota_is_checked_and_tracked(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1000).await;
    let (a, b) = (ItemId::new(), ItemId::new());
    committed(&commit(store, &f, vec![file(a, None, "a", 1, 1, 600)]).await);
    committed(&commit(store, &f, vec![file(b, None, "b", 1, 2, 5000)]).await);
    assert_eq!(store.user(f.user.id).await.unwrap().account.quota_used, 0);
    let am = store.item(f.ws.id, a).await.unwrap();
    committed(&commit(store, &f, vec![delete_of(&am)]).await);
    assert_eq!(store.user(f.user.id).await.unwrap().account.quota_used, 0);
}

async fn change_feed_pages_in_revision_order(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let ids: Vec<ItemId> = (0..25).map(|_| ItemId::new()).collect();
    let batch = ids
        .iter()
        .enumerate()
        .map(|(i, id)| file(*id, None, &format!("f{i}"), 1, i as u8 + 1, 10))
        .collect();
    commit(store, &f, batch).await;
    let edited = store.item(f.ws.id, ids[3]).await.unwrap();
    committed(&commit(store, &f, vec![delete_of(&edited)]).await);
    let (mut since, mut seen, mut pages) = (0, vec![], 0);
    loop {
        let page = store.get_changes(f.ws.id, since, 10).await.unwrap();
        assert!(page.items.windows(2).all(|w| w[0].revision < w[1].revision));
        seen.extend(page.items.iter().map(|m| (m.id, m.status)));
        since = page.cursor;
        pages += 1;
        if !page.has_more {
            break;
        }
    }
    assert_eq!((seen.len(), pages, since), (25, 3, 26));
    assert_eq!(
        seen.last(),
        Some(&(ids[3], ItemStatus::Deleted)),
        "the delete is the newest change"
    );
    let tail = store.get_changes(f.ws.id, 24, 10).await.unwrap();
    assert_eq!(tail.items.len(), 2);
    assert!(tail.items.iter().all(|m| m.chunks.len() <= 1));
    let none = store.get_changes(f.ws.id, 26, 10).await.unwrap();
    assert!(none.items.is_empty() && !none.has_more && none.cursor == 26);
    let ahead = store.get_changes(f.ws.id, 27, 10).await.unwrap_err();
    assert_eq!(ahead.to_proto().kind, ErrorKind::BadRequest);
}

async fn chunk_sizes_cannot_lie(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    committed(&commit(store, &f, vec![file(ItemId::new(), None, "a", 1, 5, 100)]).await);
    let mut liar = file(ItemId::new(), None, "b", 1, 5, 1);
    liar.chunks = vec![ChunkRef::whole(ChunkId([5; 32]), 1)];
    let r = commit(store, &f, vec![liar]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::BadRequest)
    );
    let mut wrong_sum = file(ItemId::new(), None, "c", 1, 6, 10);
    wrong_sum.size = 11;
    let r = commit(store, &f, vec![wrong_sum]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::BadRequest)
    );
}

async fn items_of_other_workspaces_are_forbidden(store: &MetaStore) {
    let a = fixture(store, "a@x.org", 1 << 30).await;
    let b = fixture(store, "b@x.org", 1 << 30).await;
    let id = ItemId::new();
    committed(&commit(store, &a, vec![file(id, None, "secret", 1, 1, 10)]).await);
    let r = commit(store, &b, vec![file(id, None, "hijack", 2, 2, 10)]).await;
    assert!(
        matches!(&r.results[0].outcome, CommitOutcome::Refused { error } if error.kind == ErrorKind::Forbidden)
    );
    assert!(store.item(b.ws.id, id).await.is_err());
    assert_eq!(
        store.item(a.ws.id, id).await.unwrap().name.as_str(),
        "secret"
    );
    let missing = store
        .get_changes(stacksync_proto::WorkspaceId::new(), 0, 10)
        .await
        .unwrap_err();
    assert_eq!(missing.to_proto().kind, ErrorKind::NotFound);
}

async fn concurrent_batches_serialize(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let (store, ws, dev) = (store.clone(), f.ws.id, f.device.id);
        tasks.push(tokio::spawn(async move {
            for i in 0..5u8 {
                let items = (0..4)
                    .map(|k| file(ItemId::new(), None, &format!("t{t}-{i}-{k}"), 1, t, 1))
                    .collect();
                let r = store
                    .commit(&CommitRequest {
                        workspace: ws,
                        device: dev,
                        items,
                    })
                    .await
                    .unwrap();
                assert!(
                    r.results
                        .iter()
                        .all(|r| matches!(r.outcome, CommitOutcome::Committed { .. }))
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let page = store.get_changes(f.ws.id, 0, 1000).await.unwrap();
    let revs: Vec<u64> = page.items.iter().map(|m| m.revision).collect();
    assert_eq!(
        revs,
        (1..=160).collect::<Vec<_>>(),
        "revisions are gap-free and unique"
    );
    assert_eq!(
        store
            .workspace_as(f.user.id, f.ws.id)
            .await
            .unwrap()
            .latest_revision,
        160
    );
}

async fn oauth_tokens_and_nonces(store: &MetaStore) {
    use stacksync_metastore::{AccessToken, OAuthConsumer, RequestToken};
    let f = fixture(store, "a@x.org", 1).await;
    let c = OAuthConsumer {
        key: "web".into(),
        secret: "s".into(),
        name: "Web UI".into(),
        callback: None,
    };
    store.create_oauth_consumer(&c).await.unwrap();
    assert_eq!(store.oauth_consumer("web").await.unwrap(), Some(c.clone()));
    assert_eq!(store.oauth_consumers().await.unwrap(), vec![c]);
    let far = i64::MAX / 2;
    let rt = |token: &str, expires_at| RequestToken {
        token: token.into(),
        secret: "rs".into(),
        consumer_key: "web".into(),
        callback: Some("oob".into()),
        verifier: None,
        user: None,
        created_at: 1,
        expires_at,
    };
    store.create_request_token(&rt("rt", far)).await.unwrap();
    assert_eq!(
        store.request_token("rt").await.unwrap(),
        Some(rt("rt", far))
    );
    store
        .authorize_request_token("rt", f.user.id, "v")
        .await
        .unwrap();
    assert!(
        store
            .authorize_request_token("rt", f.user.id, "v2")
            .await
            .is_err(),
        "authorized once"
    );
    assert!(
        !store.delete_request_token("rt").await.unwrap(),
        "an authorized token is not denied afterwards"
    );
    let at = |token: &str| AccessToken {
        token: token.into(),
        secret: "as".into(),
        consumer_key: "web".into(),
        user: f.user.id,
    };
    assert!(
        store
            .exchange_request_token("rt", "wrong", &at("at0"))
            .await
            .is_err(),
        "the verifier must match"
    );
    // Two exchanges at once: exactly one wins.
    let (first, second) = (at("at"), at("at2"));
    let (a, b) = tokio::join!(
        store.exchange_request_token("rt", "v", &first),
        store.exchange_request_token("rt", "v", &second),
    );
    assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "{a:?} {b:?}");
    let winner = if a.is_ok() { "at" } else { "at2" };
    assert_eq!(store.access_token(winner).await.unwrap(), Some(at(winner)));
    assert!(store.request_token("rt").await.unwrap().is_none());

    // Denied and expired request tokens.
    store
        .create_request_token(&rt("denied", far))
        .await
        .unwrap();
    assert!(store.delete_request_token("denied").await.unwrap());
    assert!(store.request_token("denied").await.unwrap().is_none());
    store.create_request_token(&rt("old", 1)).await.unwrap();
    assert!(store.request_token("old").await.unwrap().is_none());
    assert!(
        store
            .authorize_request_token("old", f.user.id, "v")
            .await
            .is_err()
    );
    assert_eq!(store.prune_request_tokens(2).await.unwrap(), 1);

    // Nonces: once per (consumer, token, timestamp), even at once.
    let (a, b) = tokio::join!(
        store.use_nonce("web", "at", 100, "n1", 400),
        store.use_nonce("web", "at", 100, "n1", 400),
    );
    assert_ne!(a.unwrap(), b.unwrap(), "exactly one use is accepted");
    assert!(
        !store.use_nonce("web", "at", 100, "n1", 400).await.unwrap(),
        "a replay is refused"
    );
    assert!(store.use_nonce("web", "at", 101, "n1", 401).await.unwrap());
    assert!(store.use_nonce("web", "", 100, "n1", 400).await.unwrap());
    assert_eq!(store.prune_nonces(401).await.unwrap(), 2);
    assert!(
        store
            .use_nonce("web", "at", 1, &"n".repeat(256), 1)
            .await
            .is_err()
    );

    // Authorized apps, revocation, and removal of the consumer.
    let apps = store.authorized_apps(f.user.id).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        (apps[0].consumer_key.as_str(), apps[0].name.as_str()),
        ("web", "Web UI")
    );
    assert_eq!(store.revoke_app(f.user.id, "web").await.unwrap(), 1);
    assert!(store.access_token(winner).await.unwrap().is_none());
    assert!(store.authorized_apps(f.user.id).await.unwrap().is_empty());
    store.create_request_token(&rt("rt2", far)).await.unwrap();
    store
        .authorize_request_token("rt2", f.user.id, "v")
        .await
        .unwrap();
    store
        .exchange_request_token("rt2", "v", &at("at3"))
        .await
        .unwrap();
    store.create_request_token(&rt("rt3", far)).await.unwrap();
    assert!(store.delete_oauth_consumer("web").await.unwrap());
    assert!(!store.delete_oauth_consumer("web").await.unwrap());
    assert!(store.access_token("at3").await.unwrap().is_none());
    assert!(store.request_token("rt3").await.unwrap().is_none());
    assert!(store.oauth_consumer("web").await.unwrap().is_none());
    let _ = UserId::NIL;
}

async fn share_proposals(store: &MetaStore) {
    use stacksync_metastore::InviteeState;
    let a = fixture(store, "a@x.org", 1 << 30).await;
    let b = fixture(store, "b@x.org", 1 << 30).await;
    let dir = ItemId::new();
    committed(&commit(store, &a, vec![folder(dir, None, "Shared", 1)]).await);
    let p = store
        .create_share_proposal(
            a.user.id,
            a.ws.id,
            dir,
            &["B@x.org".into(), "nobody@x.org".into()],
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        p.invitees,
        vec![
            ("b@x.org".into(), InviteeState::Pending),
            ("nobody@x.org".into(), InviteeState::Pending)
        ]
    );
    store
        .answer_share_proposal(p.id, "b@x.org", true)
        .await
        .unwrap();
    assert!(
        store
            .answer_share_proposal(p.id, "b@x.org", false)
            .await
            .is_err(),
        "answered once"
    );
    assert!(
        store
            .answer_share_proposal(p.id, "c@x.org", true)
            .await
            .is_err(),
        "only invitees answer"
    );
    let shared = store
        .create_workspace(a.user.id, "Shared", true, Default::default())
        .await
        .unwrap();
    store.set_proposal_workspace(p.id, shared.id).await.unwrap();
    let p = store.share_proposal(p.id).await.unwrap();
    assert_eq!(p.shared_workspace, Some(shared.id));
    assert_eq!(p.invitees[0].1, InviteeState::Accepted);
    assert!(!p.read_only, "proposals are read-write unless they say so");
    let _ = b;
}

/// A proposal can make read-only members: the role is stored with the
/// proposal, shown to the addressee, and recorded on the membership, where
/// every view of the workspace and its members carries it. An owner is
/// never read-only, which the database itself refuses.
async fn read_only_members(store: &MetaStore) {
    use stacksync_metastore::ShareTerms;
    let a = fixture(store, "a@x.org", 1 << 30).await;
    let b = fixture(store, "b@x.org", 1 << 30).await;
    let c = fixture(store, "c@x.org", 1 << 30).await;
    let (ro_dir, rw_dir) = (ItemId::new(), ItemId::new());
    for (dir, name) in [(ro_dir, "Look"), (rw_dir, "Edit")] {
        committed(&commit(store, &a, vec![folder(dir, None, name, 1)]).await);
    }
    let terms = |read_only| ShareTerms {
        read_only,
        ..ShareTerms::default()
    };
    let ro = store
        .create_share_proposal(a.user.id, a.ws.id, ro_dir, &["b@x.org".into()], terms(true))
        .await
        .unwrap();
    assert!(ro.read_only);
    assert!(store.share_proposal(ro.id).await.unwrap().read_only);
    let rw = store
        .create_share_proposal(
            a.user.id,
            a.ws.id,
            rw_dir,
            &["b@x.org".into()],
            terms(false),
        )
        .await
        .unwrap();
    assert!(!rw.read_only);
    let invitations: Vec<_> = store
        .pending_invitations(b.user.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.proposal, i.folder_name, i.read_only))
        .collect();
    assert_eq!(
        invitations,
        vec![
            (ro.id, "Look".to_string(), true),
            (rw.id, "Edit".to_string(), false)
        ]
    );

    let shared = store
        .create_workspace(a.user.id, "Look", true, Default::default())
        .await
        .unwrap();
    assert!(!shared.read_only, "the owner is never read-only");
    store
        .add_member(shared.id, b.user.id, "Look", None, None, true)
        .await
        .unwrap();
    store
        .add_member(shared.id, c.user.id, "Look", None, None, false)
        .await
        .unwrap();
    // Adding again is idempotent and keeps the role.
    store
        .add_member(shared.id, b.user.id, "Look", None, None, false)
        .await
        .unwrap();
    assert!(
        store
            .workspace_as(b.user.id, shared.id)
            .await
            .unwrap()
            .read_only
    );
    assert!(
        !store
            .workspace_as(c.user.id, shared.id)
            .await
            .unwrap()
            .read_only
    );
    assert!(
        !store
            .workspace_as(a.user.id, shared.id)
            .await
            .unwrap()
            .read_only
    );
    let roles: Vec<(bool, bool)> = store
        .workspaces_of(b.user.id)
        .await
        .unwrap()
        .iter()
        .map(|w| (w.is_shared, w.read_only))
        .collect();
    assert_eq!(roles, vec![(false, false), (true, true)]);
    let roles: Vec<(String, bool, bool)> = store
        .members(shared.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.email, m.is_owner, m.read_only))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("a@x.org".to_string(), true, false),
            ("b@x.org".to_string(), false, true),
            ("c@x.org".to_string(), false, false),
        ]
    );
    // A member's own view (name, mount point) changes; the role does not.
    let renamed = store
        .update_membership(shared.id, b.user.id, "Theirs", Some(ro_dir))
        .await
        .unwrap();
    assert_eq!(renamed.name, "Theirs");
    assert!(renamed.read_only);

    let owner_read_only = sqlx::query(
        "UPDATE workspace_members SET read_only = 1 WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(shared.id.to_string())
    .bind(a.user.id.to_string())
    .execute(store.raw_pool())
    .await;
    assert!(
        owner_read_only.is_err(),
        "the database refuses a read-only owner"
    );
    assert!(
        !store
            .workspace_as(a.user.id, shared.id)
            .await
            .unwrap()
            .read_only
    );
}
