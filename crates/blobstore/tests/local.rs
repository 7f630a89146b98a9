//! The conformance suite on the local-directory backend, plus what only a
//! local store can be tested for: on-disk corruption and leftover files.

mod conformance;

use std::sync::Arc;

use bytes::Bytes;
use conformance::{Backend, data, id_of};
use stacksync_blobstore::{BlobErrorKind, ByteRange, LocalStore, StorageUser};

async fn local_backend(dir: &tempfile::TempDir) -> Backend {
    let owner = LocalStore::open(dir.path()).await.unwrap();
    let other_user = StorageUser::new("test2:tester2").unwrap();
    let other = owner.as_user(other_user.clone());
    Backend {
        owner: Arc::new(owner),
        other: Arc::new(other),
        other_user,
        _keep: None,
    }
}

async fn make() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = local_backend(&dir).await;
    backend._keep = Some(Box::new(dir));
    Some(backend)
}

conformance_tests!(make());

fn object_file(root: &std::path::Path, container: &str, hex: &str) -> std::path::PathBuf {
    root.join(container)
        .join("objects")
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

#[tokio::test]
async fn corruption_is_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(&dir).await;
    let c = conformance::fresh_container(&b).await;
    let body = data(10, 500_000);
    let id = id_of(&body);
    b.owner.put_bytes(&c, &id, body.clone()).await.unwrap();
    let path = object_file(dir.path(), c.as_str(), &id.to_hex());
    let mut raw = std::fs::read(&path).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 0x40;
    std::fs::write(&path, &raw).unwrap();

    assert_eq!(
        b.owner.get_bytes(&c, &id).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    let read = |start, end| {
        let owner = b.owner.clone();
        let c = c.clone();
        async move {
            let range = ByteRange { start, end };
            stacksync_blobstore::collect(owner.get(&c, &id, Some(range)).await?).await
        }
    };
    // A range covering the whole object is a whole read: checked.
    assert_eq!(
        read(0, Some(500_000)).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    assert_eq!(
        read(0, None).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    // A range read costs only the range: damage elsewhere goes unseen
    // (the chunk decoder checks what a range holds) ...
    assert_eq!(read(0, Some(10)).await.unwrap(), body.slice(0..10));
    assert_eq!(
        read(262_000, Some(499_999)).await.unwrap(),
        body.slice(262_000..499_999)
    );
    // ... and damage inside it comes back as stored.
    let mut damaged = body[499_990..].to_vec();
    damaged[9] ^= 0x40;
    assert_eq!(read(499_990, None).await.unwrap(), damaged);

    raw.truncate(raw.len() - 100);
    std::fs::write(&path, &raw).unwrap();
    assert_eq!(
        b.owner.get_bytes(&c, &id).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    // A range reaching into the missing tail is refused, not cut short.
    assert_eq!(
        read(499_000, Some(499_950)).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
    assert_eq!(
        read(1000, Some(2000)).await.unwrap(),
        body.slice(1000..2000)
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert_eq!(
        b.owner.head(&c, &id).await.unwrap_err().kind,
        BlobErrorKind::Integrity
    );
}

#[tokio::test]
async fn no_temporary_files_are_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(&dir).await;
    let c = conformance::fresh_container(&b).await;
    for i in 0..4 {
        let body = data(20 + i, 50_000);
        b.owner.put_bytes(&c, &id_of(&body), body).await.unwrap();
    }
    conformance::failing_body(&b).await;
    let tmp = dir.path().join(c.as_str()).join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in tmp: {left:?}");
}

#[tokio::test]
async fn stores_opened_twice_share_data_and_acls() {
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(&dir).await;
    let c = conformance::fresh_container(&b).await;
    b.owner
        .grant(&c, &b.other_user, stacksync_blobstore::Access::Read)
        .await
        .unwrap();
    let body = data(30, 1000);
    b.owner
        .put_bytes(&c, &id_of(&body), body.clone())
        .await
        .unwrap();
    let config = stacksync_blobstore::StoreConfig::Local {
        root: dir.path().to_owned(),
        user: Some(b.other_user.clone()),
        at_rest_key_file: None,
        at_rest_old_key_files: Vec::new(),
    };
    let reopened = stacksync_blobstore::open_store(&config).await.unwrap();
    assert_eq!(reopened.get_bytes(&c, &id_of(&body)).await.unwrap(), body);
    assert_eq!(
        reopened.create_container(&c).await.unwrap_err().kind,
        BlobErrorKind::Forbidden
    );
}

/// Finding 8 on the local store: `link` makes exactly one of many racing
/// writers of different bytes win, even through separate handles on one
/// root (as two server processes would be), and the losers leave no
/// temporary files behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_racing_writers_wins() {
    let dir = tempfile::tempdir().unwrap();
    let b = local_backend(&dir).await;
    let c = conformance::fresh_container(&b).await;
    let second = stacksync_blobstore::LocalStore::open(dir.path().to_owned())
        .await
        .unwrap();
    let id = id_of(b"raced");
    let versions: Vec<Bytes> = (0..8).map(|i| data(400 + i, 300_000)).collect();
    let writes = versions.iter().enumerate().map(|(i, v)| {
        let store: &dyn stacksync_blobstore::BlobStore = if i % 2 == 0 {
            b.owner.as_ref()
        } else {
            &second
        };
        store.put(&c, &id, conformance::pieces(v.clone(), 20_000))
    });
    let results = futures::future::join_all(writes).await;
    let winners: Vec<&Bytes> = versions
        .iter()
        .zip(&results)
        .filter_map(|(v, r)| r.is_ok().then_some(v))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert_eq!(e.kind, BlobErrorKind::Conflict, "{e}");
        }
    }
    assert_eq!(b.owner.get_bytes(&c, &id).await.unwrap(), winners[0]);
    let tmp = dir.path().join(c.as_str()).join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in tmp: {left:?}");
}
