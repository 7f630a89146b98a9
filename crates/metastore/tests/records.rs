//! End-to-end encrypted workspaces in the store, on SQLite and PostgreSQL:
//! sealed records kept with every version and read back on every path
//! (commit, change feed, single items and versions, folders, folder
//! moves), sealed private identities kept for their owner only, and a
//! private workspace made end-to-end encrypted only while nothing was
//! ever written to it, which no racing commit checked as plain slips past.

mod common;

use common::*;
use stacksync_metastore::{MetaStore, OwnIdentity};
use stacksync_proto::{
    CommitOutcome, CommitRequest, DeviceId, EncryptionMode, ErrorKind, ItemId, ItemMeta,
    ProposedItem, WorkspaceId,
};

conformance!(
    records_come_back_on_every_read,
    retried_records_commit_and_other_records_conflict,
    records_move_with_their_folder_and_back,
    sealed_identities_are_kept_for_their_owner,
    a_workspace_is_encrypted_only_while_nothing_was_written,
    a_commit_checked_as_plain_never_lands_in_an_encrypted_workspace,
);

/// Every byte value, the packed format's separators among them.
fn hostile_record(tag: u8) -> Vec<u8> {
    let mut r: Vec<u8> = (0..=255u8).collect();
    r.extend_from_slice(b"/|=\\,:%\0");
    r.push(tag);
    r
}

/// `p` sealed with `record`, under its sealed name and without a type.
fn sealed(mut p: ProposedItem, record: Vec<u8>) -> ProposedItem {
    p.name = ProposedItem::sealed_name(p.id);
    p.mimetype = None;
    p.record = Some(record);
    p
}

async fn feed(store: &MetaStore, ws: WorkspaceId, limit: u32) -> Vec<ItemMeta> {
    let (mut since, mut all) = (0, Vec::new());
    loop {
        let page = store.get_changes(ws, since, limit).await.unwrap();
        since = page.cursor;
        all.extend(page.items);
        if !page.has_more {
            return all;
        }
    }
}

async fn records_come_back_on_every_read(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (dir, doc, plain, gone) = (ItemId::new(), ItemId::new(), ItemId::new(), ItemId::new());
    let r = commit(
        store,
        &f,
        vec![
            sealed(folder(dir, None, "d", 1), vec![1; 40]),
            sealed(file(doc, Some(dir), "doc", 1, 7, 100), hostile_record(1)),
            // The store keeps what it is given: the rules of which
            // workspace takes records are the service's.
            file(plain, None, "plain", 1, 8, 10),
            sealed(file(gone, None, "gone", 1, 9, 10), vec![2; 50]),
        ],
    )
    .await;
    let metas: Vec<ItemMeta> = r
        .results
        .iter()
        .map(|r| match &r.outcome {
            CommitOutcome::Committed { meta } => meta.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(metas[1].record, Some(hostile_record(1)));
    assert_eq!(metas[2].record, None);
    let v2 = committed(
        &commit(
            store,
            &f,
            vec![sealed(
                file(doc, Some(dir), "doc", 2, 6, 300),
                hostile_record(2),
            )],
        )
        .await,
    );
    let mut deleted = delete_of(&metas[3]);
    deleted.record = Some(vec![3; 60]);
    let deleted = committed(&commit(store, &f, vec![deleted]).await);
    assert_eq!(deleted.record, Some(vec![3; 60]));

    // The change feed (packed windows), in pages of any size.
    let latest = [
        metas[0].clone(),
        metas[2].clone(),
        v2.clone(),
        deleted.clone(),
    ];
    for limit in [1, 2, 1000] {
        let listed = feed(store, f.ws.id, limit).await;
        assert_eq!(listed.len(), 4);
        for want in &latest {
            let got = listed.iter().find(|m| m.id == want.id).unwrap();
            assert_eq!(got, want, "listed in pages of {limit}");
        }
    }
    // Single items, versions, folders.
    assert_eq!(store.item(f.ws.id, doc).await.unwrap(), v2);
    assert_eq!(store.item(f.ws.id, plain).await.unwrap(), metas[2]);
    let v1 = store.version(f.ws.id, doc, 1).await.unwrap();
    assert_eq!(v1, metas[1]);
    let versions = store.versions(f.ws.id, doc).await.unwrap();
    assert_eq!(versions, vec![metas[1].clone(), v2.clone()]);
    let versions = store.versions(f.ws.id, gone).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v.record.clone())
            .collect::<Vec<_>>(),
        vec![Some(vec![2; 50]), Some(vec![3; 60])]
    );
    assert_eq!(store.children(f.ws.id, Some(dir)).await.unwrap(), vec![v2]);
}

/// Records are sealed deterministically, so a retry carries the same
/// bytes: the same record again is the stored version, any other record
/// (or none) for that version is a conflict.
async fn retried_records_commit_and_other_records_conflict(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let doc = ItemId::new();
    let p = sealed(file(doc, None, "doc", 1, 7, 100), vec![9; 64]);
    let first = committed(&commit(store, &f, vec![p.clone()]).await);
    let again = committed(&commit(store, &f, vec![p.clone()]).await);
    assert_eq!(again, first);
    for other in [Some(vec![8; 64]), None] {
        let q = ProposedItem {
            record: other.clone(),
            ..p.clone()
        };
        let r = commit(store, &f, vec![q]).await;
        match &r.results[0].outcome {
            CommitOutcome::Conflict { current } => assert_eq!(current, &first),
            got => panic!("record {other:?} for a stored version: {got:?}"),
        }
    }
    // Nothing was written by either.
    assert_eq!(store.versions(f.ws.id, doc).await.unwrap(), vec![first]);
}

/// Rows move as they are when a folder becomes a workspace and when it
/// comes back: every version keeps its record. The folder's versions the
/// move writes are the server's, without one.
async fn records_move_with_their_folder_and_back(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let (dir, sub, doc) = (ItemId::new(), ItemId::new(), ItemId::new());
    commit(
        store,
        &f,
        vec![
            sealed(folder(dir, None, "d", 1), vec![1; 30]),
            sealed(folder(sub, Some(dir), "s", 1), vec![2; 30]),
            sealed(file(doc, Some(sub), "doc", 1, 7, 100), hostile_record(3)),
        ],
    )
    .await;
    committed(
        &commit(
            store,
            &f,
            vec![sealed(file(doc, Some(sub), "doc", 2, 6, 200), vec![4; 70])],
        )
        .await,
    );
    let shared = store
        .create_workspace(f.user.id, "Shared", true, EncryptionMode::ClientSide)
        .await
        .unwrap();
    let moved = store
        .move_folder_to_workspace(f.ws.id, dir, shared.id, DeviceId::NIL)
        .await
        .unwrap();
    assert_eq!(moved.folder.as_ref().unwrap().record, None);
    let listed = feed(store, shared.id, 1).await;
    let records: Vec<_> = listed.iter().map(|m| (m.id, m.record.clone())).collect();
    assert_eq!(
        records,
        vec![(sub, Some(vec![2; 30])), (doc, Some(vec![4; 70]))]
    );
    assert_eq!(moved.moved.len(), 2);
    let history = store.versions(shared.id, doc).await.unwrap();
    assert_eq!(
        history.iter().map(|v| v.record.clone()).collect::<Vec<_>>(),
        vec![Some(hostile_record(3)), Some(vec![4; 70])]
    );

    let name = stacksync_proto::ItemName::new("back").unwrap();
    let back = store
        .move_workspace_into_folder(shared.id, f.ws.id, dir, None, &name, DeviceId::NIL)
        .await
        .unwrap();
    assert_eq!(back.folder.unwrap().record, None);
    let listed = feed(store, f.ws.id, 1000).await;
    let by_id = |id| listed.iter().find(|m| m.id == id).unwrap().record.clone();
    assert_eq!(by_id(sub), Some(vec![2; 30]));
    assert_eq!(by_id(doc), Some(vec![4; 70]));
    // The folder's own first version, the client's, kept its record.
    assert_eq!(
        store.version(f.ws.id, dir, 1).await.unwrap().record,
        Some(vec![1; 30])
    );
}

async fn sealed_identities_are_kept_for_their_owner(store: &MetaStore) {
    let a = fixture(store, "a@x.org", 1 << 30).await;
    let b = fixture(store, "b@x.org", 1 << 30).await;
    assert_eq!(store.own_identity(a.user.id).await.unwrap(), None);
    let at = store
        .publish_identity(a.user.id, &[1; 80], Some(&[5; 200]))
        .await
        .unwrap();
    let own = |sealed: Option<Vec<u8>>, identity: Vec<u8>, changed_at| {
        Some(OwnIdentity {
            identity,
            sealed,
            changed_at,
        })
    };
    assert_eq!(
        store.own_identity(a.user.id).await.unwrap(),
        own(Some(vec![5; 200]), vec![1; 80], at)
    );
    assert_eq!(store.own_identity(b.user.id).await.unwrap(), None);
    // The same identity without a sealed copy keeps the stored one; a new
    // sealed copy of it replaces it.
    store
        .publish_identity(a.user.id, &[1; 80], None)
        .await
        .unwrap();
    assert_eq!(
        store.own_identity(a.user.id).await.unwrap(),
        own(Some(vec![5; 200]), vec![1; 80], at)
    );
    store
        .publish_identity(a.user.id, &[1; 80], Some(&[6; 100]))
        .await
        .unwrap();
    assert_eq!(
        store.own_identity(a.user.id).await.unwrap(),
        own(Some(vec![6; 100]), vec![1; 80], at)
    );
    // Another identity without one drops it: it sealed the old identity.
    let later = store
        .publish_identity(a.user.id, &[2; 80], None)
        .await
        .unwrap();
    assert_eq!(
        store.own_identity(a.user.id).await.unwrap(),
        own(None, vec![2; 80], later)
    );
    // Another identity with its own sealed copy.
    let last = store
        .publish_identity(a.user.id, &[3; 80], Some(&[7; 10]))
        .await
        .unwrap();
    assert_eq!(
        store.own_identity(a.user.id).await.unwrap(),
        own(Some(vec![7; 10]), vec![3; 80], last)
    );
}

async fn a_workspace_is_encrypted_only_while_nothing_was_written(store: &MetaStore) {
    let a = fixture(store, "a@x.org", 1 << 30).await;
    let b = fixture(store, "b@x.org", 1 << 30).await;
    let c = fixture(store, "c@x.org", 1 << 30).await;
    let d = fixture(store, "d@x.org", 1 << 30).await;
    let kind = |r: Result<stacksync_proto::Workspace, stacksync_metastore::StoreError>| {
        r.map_err(|e| e.to_proto().kind).map(|w| w.encryption)
    };

    // Empty: made client-side, and again answered the same.
    let done = store.encrypt_private_workspace(a.user.id, a.ws.id).await;
    assert_eq!(kind(done), Ok(EncryptionMode::ClientSide));
    let again = store
        .encrypt_private_workspace(a.user.id, a.ws.id)
        .await
        .unwrap();
    assert_eq!(again, store.workspace_as(a.user.id, a.ws.id).await.unwrap());
    assert_eq!(again.encryption, EncryptionMode::ClientSide);
    // Still answered once written to.
    commit(
        store,
        &a,
        vec![sealed(folder(ItemId::new(), None, "x", 1), vec![1; 9])],
    )
    .await;
    let again = store.encrypt_private_workspace(a.user.id, a.ws.id).await;
    assert_eq!(kind(again), Ok(EncryptionMode::ClientSide));

    // Written to: a conflict, and the setting stays.
    committed(&commit(store, &b, vec![folder(ItemId::new(), None, "x", 1)]).await);
    let refused = store.encrypt_private_workspace(b.user.id, b.ws.id).await;
    assert_eq!(kind(refused), Err(ErrorKind::Conflict));
    // A key statement, or another member, counts as content too.
    store
        .append_key_statement(c.ws.id, c.user.id, 1, b"genesis")
        .await
        .unwrap();
    let refused = store.encrypt_private_workspace(c.user.id, c.ws.id).await;
    assert_eq!(kind(refused), Err(ErrorKind::Conflict));
    store
        .add_member(d.ws.id, a.user.id, "d's", None, None, false)
        .await
        .unwrap();
    let refused = store.encrypt_private_workspace(d.user.id, d.ws.id).await;
    assert_eq!(kind(refused), Err(ErrorKind::Conflict));
    // Someone else's, or a shared one: never.
    let refused = store.encrypt_private_workspace(a.user.id, d.ws.id).await;
    assert_eq!(kind(refused), Err(ErrorKind::BadRequest));
    let refused = store.encrypt_private_workspace(c.user.id, d.ws.id).await;
    assert_eq!(kind(refused), Err(ErrorKind::Forbidden));
    let shared = store
        .create_workspace(b.user.id, "Shared", true, EncryptionMode::Plain)
        .await
        .unwrap();
    let refused = store.encrypt_private_workspace(b.user.id, shared.id).await;
    assert_eq!(kind(refused), Err(ErrorKind::BadRequest));
    for (f, ws) in [(&b, b.ws.id), (&c, c.ws.id), (&d, d.ws.id), (&b, shared.id)] {
        let now = store.workspace_as(f.user.id, ws).await.unwrap();
        assert_eq!(now.encryption, EncryptionMode::Plain, "{ws}");
    }
}

/// A commit checked against the plain setting and the change of setting
/// race, round after round, on fresh workspaces: exactly one of them
/// wins, so a version checked as plain never lands in an encrypted
/// workspace, and a workspace with a version is never made encrypted.
async fn a_commit_checked_as_plain_never_lands_in_an_encrypted_workspace(store: &MetaStore) {
    for round in 0..12 {
        let f = fixture(store, &format!("r{round}@x.org"), 1 << 30).await;
        let request = CommitRequest {
            workspace: f.ws.id,
            device: f.device.id,
            items: vec![folder(ItemId::new(), None, "plain name", 1)],
        };
        let (committed, encrypted) = tokio::join!(
            store.commit_in_mode(&request, EncryptionMode::Plain),
            store.encrypt_private_workspace(f.user.id, f.ws.id)
        );
        let now = store.workspace_as(f.user.id, f.ws.id).await.unwrap();
        match (committed, encrypted) {
            (Ok(r), Err(e)) => {
                assert!(
                    matches!(r.results[0].outcome, CommitOutcome::Committed { .. }),
                    "round {round}: {r:?}"
                );
                assert_eq!(e.to_proto().kind, ErrorKind::Conflict, "round {round}");
                assert_eq!(now.encryption, EncryptionMode::Plain);
                assert_eq!(now.latest_revision, 1);
            }
            (Err(e), Ok(w)) => {
                assert_eq!(e.to_proto().kind, ErrorKind::Unavailable, "round {round}");
                assert_eq!(w.encryption, EncryptionMode::ClientSide);
                assert_eq!(now.latest_revision, 0, "round {round}: nothing written");
                assert!(feed(store, f.ws.id, 10).await.is_empty());
            }
            (c, e) => panic!("round {round}: exactly one must win: {c:?} {e:?}"),
        }
    }
    // Checked against the setting the workspace has, a commit goes in.
    let f = fixture(store, "last@x.org", 1 << 30).await;
    store
        .encrypt_private_workspace(f.user.id, f.ws.id)
        .await
        .unwrap();
    let request = CommitRequest {
        workspace: f.ws.id,
        device: f.device.id,
        items: vec![sealed(folder(ItemId::new(), None, "x", 1), vec![1; 8])],
    };
    let r = store
        .commit_in_mode(&request, EncryptionMode::ClientSide)
        .await
        .unwrap();
    committed(&r);
}

/// A database of schema 10 (before records and sealed identities) with an
/// identity, a folder and a file upgrades to rows without either, read
/// back as such; a record committed after is kept.
async fn schema_10_upgrades_without_records(postgres: bool) {
    let Some(old) = stacksync_metastore::testing::OldSchemaDb::new(postgres, 10).await else {
        return;
    };
    let (user, ws, device) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let (dir, doc) = (ItemId::new(), ItemId::new());
    let mut statements: Vec<(&str, Vec<String>)> = vec![
        (
            "INSERT INTO users (id, email, name, password_hash, quota_limit, created_at) \
             VALUES ($1, 'old@x.org', 'old', 'h', 1000000, 1)",
            vec![user.clone()],
        ),
        (
            "INSERT INTO user_identities (user_id, identity, changed_at) VALUES ($1, 'a1b2', 5)",
            vec![user.clone()],
        ),
        (
            "INSERT INTO devices (id, user_id, name, last_access) VALUES ($1, $2, 'pc', 1)",
            vec![device.clone(), user.clone()],
        ),
        (
            "INSERT INTO workspaces (id, owner_id, is_shared, encryption, container, created_at, \
             latest_revision) VALUES ($1, $2, 0, 'plain', 'c-old', 1, 2)",
            vec![ws.clone(), user.clone()],
        ),
        (
            "INSERT INTO workspace_members (workspace_id, user_id, name, is_owner, joined_at) \
             VALUES ($1, $2, 'StackSync', 1, 1)",
            vec![ws.clone(), user.clone()],
        ),
    ];
    for (id, name, rev) in [(dir, "d", "1"), (doc, "e", "2")] {
        let folder = if id == dir { "1" } else { "0" };
        let row = vec![
            id.to_string(),
            ws.clone(),
            name.to_string(),
            folder.to_string(),
            rev.to_string(),
            device.clone(),
        ];
        statements.push((
            "INSERT INTO items (id, workspace_id, parent_id, name, name_key, is_folder, status, \
             latest_version, revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, $2, '', $3, $3, CAST($4 AS BIGINT), 'NEW', 1, CAST($5 AS BIGINT), NULL, \
             0, 1, 1, $6)",
            row.clone(),
        ));
        statements.push((
            "INSERT INTO item_versions (item_id, version, workspace_id, parent_id, name, is_folder, \
             status, revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, 1, $2, '', $3, CAST($4 AS BIGINT), 'NEW', CAST($5 AS BIGINT), NULL, \
             0, 1, 1, $6)",
            row,
        ));
    }
    old.execute(&statements).await;
    let store = old.upgrade().await;
    let (user, ws): (stacksync_proto::UserId, WorkspaceId) =
        (user.parse().unwrap(), ws.parse().unwrap());
    assert_eq!(
        store.own_identity(user).await.unwrap(),
        Some(OwnIdentity {
            identity: vec![0xa1, 0xb2],
            sealed: None,
            changed_at: 5,
        })
    );
    let listed = feed(&store, ws, 1000).await;
    assert_eq!(
        listed
            .iter()
            .map(|m| (m.id, m.record.clone()))
            .collect::<Vec<_>>(),
        vec![(dir, None), (doc, None)]
    );
    assert_eq!(store.version(ws, doc, 1).await.unwrap().record, None);
    let device: DeviceId = device.parse().unwrap();
    let mut next = folder(dir, None, "d2", 2);
    next.record = Some(vec![7; 20]);
    let r = store
        .commit(&CommitRequest {
            workspace: ws,
            device,
            items: vec![next],
        })
        .await
        .unwrap();
    assert_eq!(committed(&r).record, Some(vec![7; 20]));
    let versions = store.versions(ws, dir).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| v.record.clone())
            .collect::<Vec<_>>(),
        vec![None, Some(vec![7; 20])]
    );
}

mod migration {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_schema_10_upgrades_without_records() {
        super::schema_10_upgrades_without_records(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_schema_10_upgrades_without_records() {
        super::schema_10_upgrades_without_records(true).await;
    }
}
