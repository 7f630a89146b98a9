//! Sessions and accounts in the store, on SQLite and PostgreSQL: revoking
//! one, all but one, or all of a user's sessions; disabling; removing a
//! user with what is theirs alone (finding 12), and with the folders they
//! shared when asked to.

mod common;

use common::{Fixture, commit, file, fixture, folder};
use stacksync_metastore::{
    DissolvedWorkspace, FormerMember, MetaStore, Revocation, SharedWorkspaces,
};
use stacksync_proto::{EncryptionMode, ErrorKind, ItemId, Workspace, WorkspaceId};

const FUTURE: i64 = i64::MAX / 2;

/// A plain workspace of `owner` named `name`, shared with `members`.
async fn shared_workspace(
    store: &MetaStore,
    owner: &Fixture,
    name: &str,
    members: &[&Fixture],
) -> Workspace {
    let ws = store
        .create_workspace(owner.user.id, name, true, EncryptionMode::Plain)
        .await
        .unwrap();
    for m in members {
        store
            .add_member(ws.id, m.user.id, name, None, None, false)
            .await
            .unwrap();
    }
    ws
}

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
    let shared = shared_workspace(store, &bo, "Team", &[&ana]).await;
    // Ana's own shared workspace, with bo in it: removal is refused.
    let hers = shared_workspace(store, &ana, "Hers", &[&bo]).await;
    let e = store
        .remove_user(ana.user.id, SharedWorkspaces::Refuse)
        .await
        .unwrap_err()
        .to_proto();
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
    let removed = store
        .remove_user(ana.user.id, SharedWorkspaces::Refuse)
        .await
        .unwrap();
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

async fn rows_of(store: &MetaStore, sql: &'static str, ws: WorkspaceId) -> i64 {
    sqlx::query_scalar(sql)
        .bind(ws.to_string())
        .fetch_one(store.raw_pool())
        .await
        .unwrap()
}

async fn removal_deletes_their_shared_workspaces_only_when_asked(store: &MetaStore) {
    let ana = fixture(store, "ana@example.com", 1 << 30).await;
    let bo = fixture(store, "bo@example.com", 1 << 30).await;
    let carol = fixture(store, "carol@example.com", 1 << 30).await;
    // Ana's folder shared with bo and carol, with a file in it; another
    // of hers shared with bo alone.
    let team = store
        .create_workspace(ana.user.id, "Team", true, EncryptionMode::Plain)
        .await
        .unwrap();
    let pair = store
        .create_workspace(ana.user.id, "Pair", true, EncryptionMode::Plain)
        .await
        .unwrap();
    for (ws, member) in [(&team, &carol), (&team, &bo), (&pair, &bo)] {
        store
            .add_member(ws.id, member.user.id, &ws.name, None, None, false)
            .await
            .unwrap();
    }
    let in_team = Fixture {
        user: ana.user.clone(),
        device: ana.device.clone(),
        ws: team.clone(),
    };
    commit(
        store,
        &in_team,
        vec![file(ItemId::new(), None, "t.txt", 1, 3, 50)],
    )
    .await;
    // Bo's folder shared with carol, and one with ana.
    let bos = shared_workspace(store, &bo, "Bo's", &[&carol]).await;
    let with_ana = shared_workspace(store, &bo, "With ana", &[&ana]).await;
    store
        .create_session(ana.user.id, "a1", FUTURE)
        .await
        .unwrap();

    // Refused, naming each shared folder and its members; nothing changes.
    let e = store
        .remove_user(ana.user.id, SharedWorkspaces::Refuse)
        .await
        .unwrap_err()
        .to_proto();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    for named in [
        team.id.to_string(),
        pair.id.to_string(),
        "bo@example.com".into(),
        "carol@example.com".into(),
    ] {
        assert!(e.message.contains(&named), "{named}: {e}");
    }
    assert!(live(store, "a1").await, "a refused removal changes nothing");
    assert_eq!(store.members(team.id).await.unwrap().len(), 3);
    assert_eq!(store.members(pair.id).await.unwrap().len(), 2);

    // Asked to: her shared folders go for everyone, in the same removal.
    let removed = store
        .remove_user(ana.user.id, SharedWorkspaces::Delete)
        .await
        .unwrap();
    assert_eq!(removed.deleted_containers, vec![ana.ws.container.clone()]);
    let former = |f: &Fixture| FormerMember {
        user: f.user.id,
        email: f.user.email.clone(),
    };
    let mut expected = vec![
        DissolvedWorkspace {
            workspace: team.id,
            container: team.container.clone(),
            members: vec![former(&bo), former(&carol)],
        },
        DissolvedWorkspace {
            workspace: pair.id,
            container: pair.container.clone(),
            members: vec![former(&bo)],
        },
    ];
    expected.sort_by_key(|d| d.workspace.to_string());
    assert_eq!(removed.dissolved_shared, expected);
    assert_eq!(
        removed.left_workspaces,
        vec![(with_ana.id, with_ana.container.clone())]
    );
    assert_eq!(removed.ended_sessions, vec!["a1".to_owned()]);
    assert!(
        store
            .user_by_email("ana@example.com")
            .await
            .unwrap()
            .is_none()
    );
    for ws in [team.id, pair.id] {
        for sql in [
            "SELECT COUNT(*) AS n FROM workspaces WHERE id = $1",
            "SELECT COUNT(*) AS n FROM workspace_members WHERE workspace_id = $1",
            "SELECT COUNT(*) AS n FROM items WHERE workspace_id = $1",
        ] {
            assert_eq!(rows_of(store, sql, ws).await, 0, "{sql} ({ws})");
        }
        assert!(store.workspace_as(bo.user.id, ws).await.is_err());
    }
    // The members' own workspaces and shares are untouched.
    let mut bo_has: Vec<_> = store
        .workspaces_of(bo.user.id)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    bo_has.sort();
    let mut want = vec![bo.ws.id, bos.id, with_ana.id];
    want.sort();
    assert_eq!(bo_has, want);
    let carols: Vec<_> = store
        .workspaces_of(carol.user.id)
        .await
        .unwrap()
        .iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(carols.len(), 2, "{carols:?}");
    assert!(carols.contains(&bos.id) && carols.contains(&carol.ws.id));
    assert_eq!(store.members(bos.id).await.unwrap().len(), 2);
    assert_eq!(store.members(with_ana.id).await.unwrap().len(), 1);
}

conformance!(
    sessions_are_revoked_one_all_but_one_or_all,
    disabling_ends_sessions_and_enabling_does_not_revive_them,
    removal_deletes_what_is_theirs_and_keeps_others_shared_folders,
    removal_deletes_their_shared_workspaces_only_when_asked,
);
