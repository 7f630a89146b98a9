//! The conformance suite against a real Swift (started by `scripts/swift
//! start`; address in `STACKSYNC_TEST_SWIFT`), plus fault tests: the proxy
//! restarted in the middle of a batch of uploads, and a token that expires.

mod conformance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conformance::{Backend, data, id_of};
use stacksync_blobstore::{
    BlobStore, ByteStream, ContainerName, StorageUser, SwiftAuth, SwiftConfig, SwiftStore,
};
use stacksync_proto::{ChunkId, WorkspaceId};

/// The variable's value, or `None` after saying why the test is skipped;
/// under `CI=true` a missing variable fails the test instead.
fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "{var} is not set but CI=true: start Swift with `scripts/swift start` and export `scripts/swift env`"
            )
        }
        _ => {
            eprintln!(
                "SKIP: {var} is not set (run `scripts/swift start` and `eval $(scripts/swift env)`)"
            );
            None
        }
    }
}

fn v1(auth_url: &str, user: &str, key: &str) -> SwiftConfig {
    SwiftConfig::new(SwiftAuth::V1 {
        auth_url: auth_url.into(),
        user: user.into(),
        key: key.into(),
    })
}

async fn owner_store(auth_url: &str) -> SwiftStore {
    let store = SwiftStore::new(v1(auth_url, "test:tester", "testing")).unwrap();
    store.connect().await.expect("log in as test:tester");
    store
}

async fn make() -> Option<Backend> {
    let url = env_or_skip("STACKSYNC_TEST_SWIFT")?;
    let owner = owner_store(&url).await;
    // The second storage user (admin of its own account `test2`) reaches the
    // owner's containers through the owner's account, as a StackSync user
    // reaches the installation's account.
    let storage_url = owner.storage_url().await.unwrap();
    let account = storage_url.rsplit('/').next().unwrap().to_owned();
    let mut other_cfg = v1(&url, "test2:tester2", "testing2");
    other_cfg.account = Some(account);
    let other = SwiftStore::new(other_cfg).unwrap();
    Some(Backend {
        owner: Arc::new(owner),
        other: Arc::new(other),
        other_user: StorageUser::new("test2:tester2").unwrap(),
        _keep: None,
    })
}

conformance_tests!(make());

/// A body that yields half of `bytes`, waits for `gate` to open, then
/// yields the rest: an upload that is in flight when the gate is closed.
fn gated(bytes: Bytes, gate: tokio::sync::watch::Receiver<bool>) -> ByteStream {
    let half = bytes.len() / 2;
    let (first, rest) = (bytes.slice(..half), bytes.slice(half..));
    let tail = futures::stream::once(async move {
        let mut gate = gate;
        // An error only means the sender is gone, which also opens the gate.
        let _ = gate.wait_for(|open| *open).await;
        Ok(rest)
    });
    Box::pin(futures::StreamExt::chain(
        futures::stream::once(async move { Ok(first) }),
        tail,
    ))
}

fn swift_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swift")
}

fn proxy_pid() -> Option<String> {
    let dir =
        std::env::var("STACKSYNC_SWIFT_DIR").unwrap_or_else(|_| "/tmp/stacksync-swift".into());
    std::fs::read_to_string(format!("{dir}/run/proxy.pid"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The proxy is restarted while uploads are half sent: every upload still
/// completes (after retries), and every object is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_restart_mid_batch() {
    let Some(url) = env_or_skip("STACKSYNC_TEST_SWIFT") else {
        return;
    };
    let mut cfg = v1(&url, "test:tester", "testing");
    cfg.max_concurrency = 4;
    let store = Arc::new(SwiftStore::new(cfg).unwrap());
    let c = ContainerName::for_workspace(WorkspaceId::new());
    store.create_container(&c).await.unwrap();
    let old_pid = proxy_pid().expect("proxy pid file of scripts/swift");

    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<ChunkId>();
    let objects: Vec<(ChunkId, Bytes)> = (0..24u64)
        .map(|i| {
            let body = data(1000 + i, 1024 * 1024);
            (id_of(&body), body)
        })
        .collect();
    let batch = {
        let (store, c, objects) = (store.clone(), c.clone(), objects.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            let results: Vec<_> = futures::stream::iter(objects.into_iter().enumerate())
                .map(|(i, (id, body))| {
                    let (store, c, gate, done_tx) =
                        (store.clone(), c.clone(), gate.clone(), done_tx.clone());
                    async move {
                        // The first 6 go through untouched; the rest are held
                        // half-sent until the proxy they talk to is gone.
                        let stream = if i < 6 {
                            conformance::pieces(body, 256 * 1024)
                        } else {
                            gated(body, gate)
                        };
                        let r = store.put(&c, &id, stream).await;
                        let _ = done_tx.send(id);
                        r
                    }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            results
        })
    };
    for _ in 0..6 {
        done_rx.recv().await.expect("batch ended early");
    }
    let restart = tokio::process::Command::new("bash")
        .arg(swift_script())
        .arg("restart-proxy")
        .spawn()
        .unwrap();
    // Hold the half-sent uploads until the old proxy is dead (its pid file
    // is replaced once the new one is launched), then let them continue.
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy_pid().as_deref() == Some(old_pid.as_str()) || proxy_pid().is_none() {
        assert!(
            Instant::now() < deadline,
            "proxy was not restarted within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    open_gate.send(true).unwrap();
    let status = restart.wait_with_output().await.unwrap().status;
    assert!(
        status.success(),
        "scripts/swift restart-proxy failed: {status}"
    );
    let results = batch.await.unwrap();
    for r in &results {
        assert!(r.is_ok(), "upload failed: {r:?}");
    }
    assert!(
        store.stats().retries > 0,
        "the restart caused no retry: {:?}",
        store.stats()
    );

    let mut ids: Vec<ChunkId> = objects.iter().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(
        store.list(&c).await.unwrap(),
        ids,
        "exactly the batch, nothing partial"
    );
    for (id, body) in &objects {
        assert_eq!(store.head(&c, id).await.unwrap().size, body.len() as u64);
        assert_eq!(&store.get_bytes(&c, id).await.unwrap(), body);
    }
    for id in ids {
        store.delete(&c, &id).await.unwrap();
    }
    store.delete_container(&c).await.unwrap();
}

/// A token that really expires (proxy-short issues 3 s tokens) is renewed
/// transparently on the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_renewed() {
    let Some(url) = env_or_skip("STACKSYNC_TEST_SWIFT_SHORT_TOKEN") else {
        return;
    };
    let store = SwiftStore::new(v1(&url, "test3:expiring", "expiring")).unwrap();
    let c = ContainerName::for_workspace(WorkspaceId::new());
    store.create_container(&c).await.unwrap();
    let body = data(77, 10_000);
    let id = id_of(&body);
    store.put_bytes(&c, &id, body.clone()).await.unwrap();
    // At least one login; more if TempAuth handed out a token of another
    // client of this user that was about to expire.
    let before = store.stats().logins;
    assert!(before >= 1);

    // TempAuth hands the same user its current token while it is valid, so
    // this is the token the store holds; wait until Swift refuses it.
    let http = reqwest::Client::new();
    let auth = http
        .get(&url)
        .header("X-Auth-User", "test3:expiring")
        .header("X-Auth-Key", "expiring")
        .send()
        .await
        .unwrap();
    let token = auth.headers()["X-Auth-Token"].to_str().unwrap().to_owned();
    let storage_url = store.storage_url().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http
            .head(&storage_url)
            .header("X-Auth-Token", &token)
            .send()
            .await
            .unwrap()
            .status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "token did not expire within 30 s (last {status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(store.get_bytes(&c, &id).await.unwrap(), body);
    // The token fetched above is the store's or a newer one, and it expired:
    // the store's token did too, and exactly one renewal followed.
    assert_eq!(store.stats().logins, before + 1, "exactly one renewal");
    store.delete(&c, &id).await.unwrap();
    store.delete_container(&c).await.unwrap();
}

/// A token Swift never issued is replaced without the caller noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_is_renewed() {
    let Some(url) = env_or_skip("STACKSYNC_TEST_SWIFT") else {
        return;
    };
    let store = owner_store(&url).await;
    let c = ContainerName::for_workspace(WorkspaceId::new());
    store.create_container(&c).await.unwrap();
    store
        .replace_token("AUTH_tk00000000000000000000000000000000")
        .await;
    let body = data(78, 1000);
    store
        .put_bytes(&c, &id_of(&body), body.clone())
        .await
        .unwrap();
    assert_eq!(store.stats().logins, 2);
    conformance::cleanup(
        &Backend {
            owner: Arc::new(store),
            other: Arc::new(owner_store(&url).await),
            other_user: StorageUser::new("test:tester").unwrap(),
            _keep: None,
        },
        &c,
    )
    .await;
}

/// Wrong credentials are refused as such, not retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_is_unauthenticated() {
    let Some(url) = env_or_skip("STACKSYNC_TEST_SWIFT") else {
        return;
    };
    let config =
        stacksync_blobstore::StoreConfig::Swift(Box::new(v1(&url, "test:tester", "wrong")));
    let err = stacksync_blobstore::open_store(&config).await.unwrap_err();
    assert_eq!(
        err.kind,
        stacksync_blobstore::BlobErrorKind::Unauthenticated,
        "{err}"
    );
}

/// Every file under `root`, read whole.
fn every_file(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Server-side encryption on Swift is Swift's own (the proxies' keymaster
/// and encryption middlewares, which `scripts/swift` configures): the store
/// checks the cluster's admin /info instead of trusting its configuration,
/// refuses a configuration that claims encryption a cluster does not have,
/// and no object server file holds the plaintext.
#[tokio::test]
async fn encryption_at_rest_is_checked_and_no_plaintext_reaches_the_devices() {
    let Some(url) = env_or_skip("STACKSYNC_TEST_SWIFT") else {
        return;
    };
    let Some(admin_key) = env_or_skip("STACKSYNC_TEST_SWIFT_ADMIN_KEY") else {
        return;
    };
    let Some(devices) = env_or_skip("STACKSYNC_TEST_SWIFT_DEVICES") else {
        return;
    };
    // Not claimed, not checked: the store does not know.
    assert!(!owner_store(&url).await.encrypts_at_rest());
    // Checked with the admin key: it learns the cluster encrypts.
    let mut cfg = v1(&url, "test:tester", "testing");
    cfg.info_admin_key = Some(admin_key.clone());
    let store = SwiftStore::new(cfg.clone()).unwrap();
    store.connect().await.unwrap();
    assert!(store.encrypts_at_rest());
    assert_eq!(store.encryption_enabled().await.unwrap(), Some(true));
    // A wrong admin key is an error, not a silent "no".
    let mut wrong = cfg.clone();
    wrong.info_admin_key = Some("not-the-admin-key".into());
    wrong.encrypted_at_rest = true;
    let err = SwiftStore::new(wrong).unwrap().connect().await.unwrap_err();
    assert!(err.to_string().contains("/info"), "{err}");

    let c = ContainerName::for_workspace(WorkspaceId::new());
    store.create_container(&c).await.unwrap();
    let marker = b"swift at-rest marker: the merger is off";
    let body = Bytes::from(marker.repeat(2000));
    let id = id_of(&body);
    store
        .put(&c, &id, stacksync_blobstore::single_piece(body.clone()))
        .await
        .unwrap();
    assert_eq!(store.get_bytes(&c, &id).await.unwrap(), body);
    let files = every_file(std::path::Path::new(&devices));
    assert!(!files.is_empty(), "no files under {devices}");
    for (path, bytes) in &files {
        assert!(
            !bytes.windows(24).any(|w| w == &marker[..24]),
            "plaintext on disk in {}",
            path.display()
        );
    }
    store.delete(&c, &id).await.unwrap();
    store.delete_container(&c).await.unwrap();
}
