//! Shared links in the store (migration 0015), on SQLite and PostgreSQL:
//! links and their sessions, revocation (another user's link untouched),
//! the per-link password window under concurrent attempts, the walk from
//! an item up to a link's folder, live name keys, and a removed user's
//! links going with them.

mod common;

use common::{commit, committed, delete_of, file, fixture, folder};
use stacksync_metastore::{Attempt, LinkAccess, LinkRecord, MetaStore, SharedWorkspaces};
use stacksync_proto::{ItemId, UserId, fold_key};
use uuid::Uuid;

fn link(owner: UserId, item: Uuid, expires_at: Option<i64>) -> LinkRecord {
    LinkRecord {
        id: Uuid::new_v4(),
        owner,
        item,
        access: LinkAccess::View,
        secret_hash: "ab".repeat(32),
        password_hash: None,
        created_at: 1_000,
        expires_at,
    }
}

async fn links_are_stored_listed_and_revoked_by_their_owner(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    let bo = fixture(store, "bo@example.com", 1 << 30).await;
    let mut first = link(ana.user.id, Uuid::new_v4(), None);
    first.password_hash = Some("$argon2id$not-real".into());
    let mut second = link(ana.user.id, Uuid::new_v4(), Some(5_000));
    second.access = LinkAccess::Upload;
    second.created_at = 2_000;
    let theirs = link(bo.user.id, Uuid::new_v4(), None);
    for l in [&first, &second, &theirs] {
        store.create_link(l).await.unwrap();
    }
    assert_eq!(store.link(first.id).await.unwrap().as_ref(), Some(&first));
    assert_eq!(
        store.links_of(ana.user.id).await.unwrap(),
        vec![second.clone(), first.clone()],
        "newest first, only the owner's"
    );
    assert!(second.expired_at(5_000) && !second.expired_at(4_999));

    store
        .create_link_session(first.id, "s1", 1_000, 10_000)
        .await
        .unwrap();
    store
        .create_link_session(second.id, "s2", 1_000, 10_000)
        .await
        .unwrap();
    assert_eq!(
        store.link_of_session(first.id, "s1", 9_999).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.link_of_session(first.id, "s1", 10_000).await.unwrap(),
        None,
        "an expired session opens nothing"
    );
    assert_eq!(
        store.link_of_session(second.id, "s1", 2_000).await.unwrap(),
        None,
        "a session opens its own link only"
    );
    assert_eq!(
        store.link_of_session(second.id, "s2", 5_000).await.unwrap(),
        None,
        "an expired link's sessions open nothing"
    );

    assert!(
        !store.delete_link(bo.user.id, first.id).await.unwrap(),
        "another user cannot revoke it"
    );
    assert!(store.link(first.id).await.unwrap().is_some());
    assert!(store.delete_link(ana.user.id, first.id).await.unwrap());
    assert!(!store.delete_link(ana.user.id, first.id).await.unwrap());
    assert_eq!(store.link(first.id).await.unwrap(), None);
    assert_eq!(
        store.link_of_session(first.id, "s1", 2_000).await.unwrap(),
        None
    );
    assert_eq!(store.prune_link_sessions(10_001).await.unwrap(), 1);
}

async fn password_attempts_fill_a_window_once(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    let l = link(ana.user.id, Uuid::new_v4(), None);
    store.create_link(&l).await.unwrap();
    let now = 1_000_000;
    // Twenty attempts at once: exactly ten get in.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .admit_link_attempt(l.id, now, 60_000, 10)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let admitted = outcomes.iter().filter(|o| **o == Attempt::Admitted).count();
    assert_eq!(admitted, 10, "{outcomes:?}");
    assert!(outcomes.contains(&Attempt::Refused {
        until: now + 60_000
    }));
    // A right password gives its attempt back.
    store.forgive_link_attempt(l.id).await.unwrap();
    assert_eq!(
        store
            .admit_link_attempt(l.id, now + 1, 60_000, 10)
            .await
            .unwrap(),
        Attempt::Admitted
    );
    assert!(matches!(
        store
            .admit_link_attempt(l.id, now + 2, 60_000, 10)
            .await
            .unwrap(),
        Attempt::Refused { .. }
    ));
    // The next window starts afresh.
    assert_eq!(
        store
            .admit_link_attempt(l.id, now + 60_000, 60_000, 10)
            .await
            .unwrap(),
        Attempt::Admitted
    );
    assert_eq!(
        store
            .admit_link_attempt(Uuid::new_v4(), now, 60_000, 10)
            .await
            .unwrap(),
        Attempt::NoLink
    );
}

async fn items_are_found_inside_a_folder_or_not_at_all(store: &MetaStore) {
    let f = fixture(store, "ana@example.com", 1 << 30).await;
    let (top, mid, low, other) = (ItemId::new(), ItemId::new(), ItemId::new(), ItemId::new());
    let doc = ItemId::new();
    commit(
        store,
        &f,
        vec![
            folder(top, None, "Top", 1),
            folder(mid, Some(top), "Mid", 1),
            folder(low, Some(mid), "Low", 1),
            folder(other, None, "Other", 1),
            file(doc, Some(low), "doc.txt", 1, 1, 10),
        ],
    )
    .await;
    let names = |p: Option<Vec<stacksync_metastore::PathStep>>| {
        p.map(|p| p.into_iter().map(|s| s.name).collect::<Vec<_>>())
    };
    assert_eq!(
        names(store.path_within(f.ws.id, doc, Some(mid)).await.unwrap()),
        Some(vec!["doc.txt".into(), "Low".into(), "Mid".into()])
    );
    assert_eq!(
        names(store.path_within(f.ws.id, doc, None).await.unwrap()),
        Some(vec![
            "doc.txt".into(),
            "Low".into(),
            "Mid".into(),
            "Top".into()
        ])
    );
    assert_eq!(
        names(store.path_within(f.ws.id, mid, Some(mid)).await.unwrap()),
        Some(vec!["Mid".into()])
    );
    assert_eq!(
        store.path_within(f.ws.id, doc, Some(other)).await.unwrap(),
        None
    );
    assert_eq!(
        store.path_within(f.ws.id, top, Some(mid)).await.unwrap(),
        None,
        "above the folder is outside it"
    );
    let elsewhere = fixture(store, "bo@example.com", 1 << 30).await;
    assert_eq!(
        store.path_within(elsewhere.ws.id, doc, None).await.unwrap(),
        None,
        "another workspace holds nothing of this one"
    );
    // Deleted: the file, then nothing under a deleted folder either.
    let doc_meta = store.item(f.ws.id, doc).await.unwrap();
    committed(&commit(store, &f, vec![delete_of(&doc_meta)]).await);
    assert_eq!(
        store.path_within(f.ws.id, doc, Some(top)).await.unwrap(),
        None
    );

    // Live name keys in a folder.
    commit(
        store,
        &f,
        vec![
            file(ItemId::new(), Some(low), "Report.PDF", 1, 2, 10),
            file(ItemId::new(), Some(low), "report (1).pdf", 1, 3, 10),
        ],
    )
    .await;
    let keys: Vec<String> = ["report.pdf", "REPORT (1).pdf", "report (2).pdf", "doc.txt"]
        .iter()
        .map(|n| fold_key(n))
        .collect();
    let mut taken = store
        .taken_name_keys(f.ws.id, Some(low), &keys)
        .await
        .unwrap();
    taken.sort();
    let mut expected = vec![fold_key("report.pdf"), fold_key("report (1).pdf")];
    expected.sort();
    assert_eq!(taken, expected, "deleted doc.txt is free again");
    assert!(
        store
            .taken_name_keys(f.ws.id, None, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_removed_users_links_go_with_them(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    let l = link(ana.user.id, Uuid::new_v4(), None);
    store.create_link(&l).await.unwrap();
    store
        .create_link_session(l.id, "s", 0, i64::MAX / 2)
        .await
        .unwrap();
    store
        .remove_user(ana.user.id, SharedWorkspaces::Refuse)
        .await
        .unwrap();
    assert_eq!(store.link(l.id).await.unwrap(), None);
    assert_eq!(store.link_of_session(l.id, "s", 1).await.unwrap(), None);
}

conformance!(
    links_are_stored_listed_and_revoked_by_their_owner,
    password_attempts_fill_a_window_once,
    items_are_found_inside_a_folder_or_not_at_all,
    a_removed_users_links_go_with_them,
);
