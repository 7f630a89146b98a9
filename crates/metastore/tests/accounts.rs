//! Sessions and accounts in the store, on SQLite and PostgreSQL: revoking
//! one, all but one, or all of a user's sessions; disabling; removing a
//! user with what is theirs alone (finding 12).

mod common;

use common::{commit, file, fixture, folder};
use stacksync_metastore::{MetaStore, Revocation};
use stacksync_proto::{EncryptionMode, ErrorKind, ItemId};

const FUTURE: i64 = i64::MAX / 2;

async fn live(store: &MetaStore, hash: &str) -> bool {
    store.session_user(hash).await.unwrap().is_some()
}

async fn sessions_are_revoked_one_all_but_one_or_all(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    let bo = fixture(store, "bo@example.com", 1 << 30).await;
    for h in ["a1", "a2", "a3"] {
        store.create_session(ana.user.id, h, FUTURE).await.unwrap();
    }
    store
        .create_session(bo.user.id, "b1", FUTURE)
        .await
        .unwrap();

    // Another user's session is out of reach, whatever hash is named.
    let none = store
        .revoke_sessions(ana.user.id, Revocation::Only("b1"))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(live(store, "b1").await);

    let one = store
        .revoke_sessions(ana.user.id, Revocation::Only("a1"))
        .await
        .unwrap();
    assert_eq!(one, vec!["a1".to_owned()]);
    assert!(!live(store, "a1").await);
    assert!(live(store, "a2").await && live(store, "a3").await);

    let others = store
        .revoke_sessions(ana.user.id, Revocation::AllExcept("a2"))
        .await
        .unwrap();
    assert_eq!(others, vec!["a3".to_owned()]);
    assert!(live(store, "a2").await && !live(store, "a3").await);

    store
        .create_session(ana.user.id, "a4", FUTURE)
        .await
        .unwrap();
    let mut all = store
        .revoke_sessions(ana.user.id, Revocation::All)
        .await
        .unwrap();
    all.sort();
    assert_eq!(all, vec!["a2".to_owned(), "a4".to_owned()]);
    assert!(!live(store, "a2").await && !live(store, "a4").await);
    assert!(live(store, "b1").await, "bo's session survives");
}

async fn disabling_ends_sessions_and_enabling_does_not_revive_them(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    store
        .create_session(ana.user.id, "a1", FUTURE)
        .await
        .unwrap();
    assert!(!store.user(ana.user.id).await.unwrap().disabled);
    let ended = store.set_disabled(ana.user.id, true).await.unwrap();
    assert_eq!(ended, vec!["a1".to_owned()]);
    assert!(store.user(ana.user.id).await.unwrap().disabled);
    // Even a session created while disabled (a race with login) is refused.
    store
        .create_session(ana.user.id, "a2", FUTURE)
        .await
        .unwrap();
    assert!(!live(store, "a2").await);
    assert!(
        store
            .set_disabled(ana.user.id, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.user(ana.user.id).await.unwrap().disabled);
    assert!(!live(store, "a1").await, "ended sessions stay ended");
    store
        .create_session(ana.user.id, "a3", FUTURE)
        .await
        .unwrap();
    assert!(live(store, "a3").await);
    let unknown = stacksync_proto::UserId::new();
    let e = store.set_disabled(unknown, true).await.unwrap_err();
    assert_eq!(e.to_proto().kind, ErrorKind::NotFound);
}

async fn removal_deletes_what_is_theirs_and_keeps_others_shared_folders(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    let bo = fixture(store, "bo@example.com", 1 << 30).await;
    let (dir, doc) = (ItemId::new(), ItemId::new());
    commit(
        store,
        &ana,
        vec![
            folder(dir, None, "Docs", 1),
            file(doc, Some(dir), "a.txt", 1, 7, 100),
        ],
    )
    .await;
    store
        .create_session(ana.user.id, "a1", FUTURE)
        .await
        .unwrap();
    store
        .create_session(bo.user.id, "b1", FUTURE)
        .await
        .unwrap();
    // Bo's shared workspace, which ana joined.
    let shared = store
        .create_workspace(bo.user.id, "Team", true, EncryptionMode::Plain)
        .await
        .unwrap();
    store
        .add_member(shared.id, ana.user.id, "Team", None, None, false)
        .await
        .unwrap();
    // Ana's own shared workspace, with bo in it: removal is refused.
    let hers = store
        .create_workspace(ana.user.id, "Hers", true, EncryptionMode::Plain)
        .await
        .unwrap();
    store
        .add_member(hers.id, bo.user.id, "Hers", None, None, false)
        .await
        .unwrap();
    let e = store.remove_user(ana.user.id).await.unwrap_err().to_proto();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("bo@example.com"), "{e}");
    assert!(live(store, "a1").await, "a refused removal changes nothing");
    assert_eq!(
        store
            .get_changes(ana.ws.id, 0, 100)
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    assert!(store.remove_member(hers.id, bo.user.id).await.unwrap());
    let removed = store.remove_user(ana.user.id).await.unwrap();
    let mut containers = removed.deleted_containers.clone();
    containers.sort();
    let mut expected = vec![ana.ws.container.clone(), hers.container.clone()];
    expected.sort();
    assert_eq!(containers, expected);
    assert_eq!(
        removed.left_workspaces,
        vec![(shared.id, shared.container.clone())]
    );
    assert_eq!(removed.ended_sessions, vec!["a1".to_owned()]);

    assert_eq!(
        store.user(ana.user.id).await.unwrap_err().to_proto().kind,
        ErrorKind::NotFound
    );
    assert!(
        store
            .user_by_email("ana@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.device(ana.device.id).await.unwrap().is_none());
    assert!(!live(store, "a1").await);
    assert!(store.workspaces_of(ana.user.id).await.unwrap().is_empty());
    let pool = store.raw_pool();
    for (table, sql) in [
        (
            "items",
            "SELECT COUNT(*) AS n FROM items WHERE workspace_id = $1",
        ),
        (
            "versions",
            "SELECT COUNT(*) AS n FROM item_versions WHERE workspace_id = $1",
        ),
        (
            "chunks",
            "SELECT COUNT(*) AS n FROM chunk_refs WHERE workspace_id = $1",
        ),
        (
            "workspace",
            "SELECT COUNT(*) AS n FROM workspaces WHERE id = $1",
        ),
    ] {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(ana.ws.id.to_string())
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} of ana's workspace");
    }
    // Bo's shared workspace survives, without ana; bo is untouched.
    let members = store.members(shared.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user, bo.user.id);
    assert!(store.workspace_as(bo.user.id, shared.id).await.is_ok());
    assert!(store.workspace_as(bo.user.id, hers.id).await.is_err());
    assert!(live(store, "b1").await);
    assert_eq!(
        store
            .get_changes(bo.ws.id, 0, 10)
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    // The address is free again.
    fixture(store, "ana@example.com", 1 << 30).await;
}

conformance!(
    sessions_are_revoked_one_all_but_one_or_all,
    disabling_ends_sessions_and_enabling_does_not_revive_them,
    removal_deletes_what_is_theirs_and_keeps_others_shared_folders,
);
