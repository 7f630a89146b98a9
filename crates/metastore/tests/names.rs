//! Names that cannot deceive or collide, on SQLite and PostgreSQL: names
//! with control, bidirectional or invisible characters and names not in NFC
//! never reach the store, and two live siblings may not have names that
//! differ only in case or Unicode form (they would collide on macOS and
//! Windows), which the database itself enforces.

mod common;

use common::*;
use stacksync_metastore::MetaStore;
use stacksync_metastore::testing::OldSchemaDb;
use stacksync_proto::{CommitOutcome, CommitRequest, ErrorKind, ItemId, ItemMeta, wire};

conformance!(
    deceptive_and_unnormalized_names_are_refused,
    case_and_normalization_twins_cannot_both_be_live,
    database_enforces_live_key_uniqueness,
);

/// The error a commit of one item got; panics if it was not refused.
fn refusal(r: &stacksync_proto::CommitResult) -> &stacksync_proto::Error {
    match &r.results[0].outcome {
        CommitOutcome::Refused { error } => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn deceptive_and_unnormalized_names_are_refused(_store: &MetaStore) {
    for (bad, says) in [
        ("invoice\u{202e}txt.exe", "U+202E"),
        ("two\nlines", "U+000A"),
        ("tab\there", "U+0009"),
        ("\u{1b}[2Jcleared", "U+001B"),
        ("zero\u{200b}width", "U+200B"),
        ("cafe\u{301}.txt", "normalization form C"),
    ] {
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
            err.message.contains(says),
            "the error names what is wrong ({says}): {}",
            err.message
        );
    }
}

async fn case_and_normalization_twins_cannot_both_be_live(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let upper =
        committed(&commit(store, &f, vec![file(ItemId::new(), None, "A.txt", 1, 1, 1)]).await);
    let r = commit(store, &f, vec![file(ItemId::new(), None, "a.txt", 1, 2, 1)]).await;
    let error = refusal(&r);
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert_eq!(error.current.as_ref().unwrap().id, upper.id);
    assert!(
        error.message.contains("differs only in case"),
        "{}",
        error.message
    );
    // café (composed; the decomposed spelling is not a name at all) and
    // its upper-case twin, in one batch: the second is refused.
    let r = commit(
        store,
        &f,
        vec![
            file(ItemId::new(), None, "caf\u{e9}.txt", 1, 3, 1),
            file(ItemId::new(), None, "CAF\u{c9}.TXT", 1, 4, 1),
        ],
    )
    .await;
    assert!(matches!(
        r.results[0].outcome,
        CommitOutcome::Committed { .. }
    ));
    assert_eq!(
        match &r.results[1].outcome {
            CommitOutcome::Refused { error } => error.kind,
            other => panic!("the twin in the same batch was not refused: {other:?}"),
        },
        ErrorKind::Conflict
    );
    // Renaming another item onto a twin is refused; in another folder the
    // same name is fine.
    let other =
        committed(&commit(store, &f, vec![file(ItemId::new(), None, "b.txt", 1, 5, 1)]).await);
    let r = commit(store, &f, vec![place_of(&other, None, "STRASSE")]).await;
    assert!(matches!(
        r.results[0].outcome,
        CommitOutcome::Committed { .. }
    ));
    let moved = store.item(f.ws.id, other.id).await.unwrap();
    let twin = file(ItemId::new(), None, "Stra\u{df}e", 1, 6, 1);
    assert_eq!(
        refusal(&commit(store, &f, vec![twin]).await).kind,
        ErrorKind::Conflict
    );
    let dir = committed(&commit(store, &f, vec![folder(ItemId::new(), None, "dir", 1)]).await);
    committed(
        &commit(
            store,
            &f,
            vec![file(ItemId::new(), Some(dir.id), "a.txt", 1, 7, 1)],
        )
        .await,
    );
    // An item may change the case of its own name.
    let renamed = committed(&commit(store, &f, vec![place_of(&moved, None, "strasse")]).await);
    assert_eq!(renamed.name.as_str(), "strasse");
    // Once the holder is deleted, its twin's name is free.
    committed(&commit(store, &f, vec![delete_of(&upper)]).await);
    committed(&commit(store, &f, vec![file(ItemId::new(), None, "a.txt", 1, 8, 1)]).await);
}

/// A row as a buggy server would write it, around the store's checks.
async fn raw_insert(
    store: &MetaStore,
    f: &Fixture,
    m: &ItemMeta,
    name: &str,
    status: &str,
    revision: i64,
) -> bool {
    sqlx::query(
        "INSERT INTO items (id, workspace_id, parent_id, name, name_key, is_folder, mimetype, status, \
         latest_version, revision, content_hash, size, client_modified, server_modified, device_id) \
         VALUES ($1, $2, '', $3, $4, 0, NULL, $5, 1, $6, NULL, 0, 0, 0, $7)",
    )
    .bind(ItemId::new().to_string())
    .bind(f.ws.id.to_string())
    .bind(name)
    .bind(stacksync_proto::fold_key(name))
    .bind(status)
    .bind(revision)
    .bind(m.device.to_string())
    .execute(store.raw_pool())
    .await
    .is_ok()
}

async fn database_enforces_live_key_uniqueness(store: &MetaStore) {
    let f = fixture(store, "a@x.org", 1 << 30).await;
    let m = committed(
        &commit(
            store,
            &f,
            vec![file(ItemId::new(), None, "Report.txt", 1, 1, 1)],
        )
        .await,
    );
    assert!(
        !raw_insert(store, &f, &m, "report.txt", "NEW", 1001).await,
        "a live case twin must violate the unique index"
    );
    assert!(
        !raw_insert(store, &f, &m, "REPORT.TXT", "CHANGED", 1002).await,
        "a live case twin must violate the unique index"
    );
    // The index is over live names only: a deleted twin is history.
    assert!(raw_insert(store, &f, &m, "report.TXT", "DELETED", 1003).await);
}

/// Rows stored before migration 0005 (no key) get their key when a store
/// opens the database; two old live twins both stay readable. The old rows
/// are written after the upgrade without a key, as 0005 leaves them.
async fn old_rows_get_their_keys(postgres: bool) {
    let Some(old) = OldSchemaDb::new(postgres, 2).await else {
        return;
    };
    let store = MetaStore::connect(&old.url).await.unwrap();
    let f = fixture(&store, "a@x.org", 1 << 30).await;
    let m = committed(&commit(&store, &f, vec![file(ItemId::new(), None, "seed", 1, 1, 1)]).await);
    for (i, name) in ["Report.txt", "report.txt", "Other.txt"].iter().enumerate() {
        sqlx::query(
            "INSERT INTO items (id, workspace_id, parent_id, name, is_folder, mimetype, status, \
             latest_version, revision, content_hash, size, client_modified, server_modified, device_id) \
             VALUES ($1, $2, '', $3, 0, NULL, 'NEW', 1, $4, NULL, 0, 0, 0, $5)",
        )
        .bind(ItemId::new().to_string())
        .bind(f.ws.id.to_string())
        .bind(*name)
        .bind(100 + i as i64)
        .bind(m.device.to_string())
        .execute(&old.pool)
        .await
        .expect("an old-style row without a key");
    }
    store.close().await;
    let store = MetaStore::connect(&old.url)
        .await
        .expect("the store opens and fills keys");
    let unkeyed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items WHERE name_key IS NULL")
        .fetch_one(&old.pool)
        .await
        .unwrap();
    assert_eq!(unkeyed, 1, "one of the two old twins keeps no key");
    let mut names: Vec<String> = store
        .children(f.ws.id, None)
        .await
        .unwrap()
        .iter()
        .map(|c| c.name.as_str().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["Other.txt", "Report.txt", "report.txt", "seed"]);
    // The filled keys are enforced.
    let r = commit(
        &store,
        &f,
        vec![file(ItemId::new(), None, "OTHER.TXT", 1, 2, 1)],
    )
    .await;
    assert_eq!(refusal(&r).kind, ErrorKind::Conflict);
    let r = commit(
        &store,
        &f,
        vec![file(ItemId::new(), None, "REPORT.TXT", 1, 3, 1)],
    )
    .await;
    assert_eq!(refusal(&r).kind, ErrorKind::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_get_their_keys_sqlite() {
    old_rows_get_their_keys(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_rows_get_their_keys_postgres() {
    old_rows_get_their_keys(true).await;
}
