//! The client's direct transport against the real thing: a sync service on
//! PostgreSQL with its RPC workers on RabbitMQ, its containers in Swift and
//! its HTTP gateway on loopback, and clients that log in over HTTP (getting
//! their own broker users), move chunks straight to Swift with
//! their own storage user, commit and read the change feed through a
//! `WorkspaceRemote`, and hear other devices' commits as notifications.
//!
//! Needs `STACKSYNC_TEST_POSTGRES`, `STACKSYNC_TEST_AMQP`,
//! `STACKSYNC_TEST_AMQP_ADMIN` (the management API, with an administrator's
//! `user:password@`) and `STACKSYNC_TEST_SWIFT` (`scripts/swift start`; TempAuth users
//! `test:tester` owns the installation's account, `test2:tester2` is a
//! second storage user). Unset, the tests panic under `CI=true` and print
//! `SKIP:` otherwise.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use stacksync_blobstore::{
    BlobErrorKind, BlobStore, ContainerName, SwiftAuth, SwiftConfig, SwiftStore,
};
use stacksync_bus::{Bus, BusConfig, QueueKind};
use stacksync_client::connection::workspaces;
use stacksync_client::{
    Connection, DirectConfig, DirectConnection, NotificationStream, WorkspaceRemote,
};
use stacksync_engine::Remote;
use stacksync_metastore::testing::TestDb;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, ContentHash, DeviceId, EncryptionMode, ErrorKind, ItemId,
    ItemName, ItemStatus, Notification, ProposedItem, Workspace, WorkspaceId,
};
use stacksync_service::{BrokerAdmin, BrokerAdminConfig, Service, ServiceConfig, run_rpc_workers};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Longest any single wait may take before the test fails (a deadline, not
/// a measurement).
const DEADLINE: Duration = Duration::from_secs(30);

fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set under CI=true: the direct-transport tests must run")
        }
        _ => {
            eprintln!(
                "SKIP: {var} is not set; direct-transport test skipped (run scripts/test, or \
                 `scripts/swift start` and `eval \"$(scripts/swift env)\"`)"
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

/// A sync service on PostgreSQL, RabbitMQ and Swift, serving the bus.
struct Env {
    service: Service,
    /// The server's HTTP gateway, where direct clients log in.
    url: String,
    amqp_url: String,
    namespace: String,
    swift_auth_url: String,
    /// The installation's Swift account (`AUTH_test`).
    account: String,
    stop: Option<oneshot::Sender<()>>,
    workers: Option<tokio::task::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    _db: TestDb,
}

/// The management API of `STACKSYNC_TEST_AMQP_ADMIN`
/// (`http://user:password@host:port`).
fn broker_admin(url: &str) -> BrokerAdminConfig {
    let (scheme, rest) = url.split_once("://").expect("an http:// URL");
    let (userinfo, host) = rest.split_once('@').expect("user:password@ in the URL");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    BrokerAdminConfig {
        url: format!("{scheme}://{host}"),
        user: user.into(),
        password: password.into(),
        vhost: "/".into(),
    }
}

fn bus_config(url: &str, namespace: &str) -> BusConfig {
    let mut config = BusConfig::new(url, namespace);
    config.queue_kind = QueueKind::Classic;
    config.rpc_timeout = Duration::from_secs(15);
    config
}

impl Env {
    async fn start() -> Option<Env> {
        let amqp_url = env_or_skip("STACKSYNC_TEST_AMQP")?;
        let admin_url = env_or_skip("STACKSYNC_TEST_AMQP_ADMIN")?;
        let swift_auth_url = env_or_skip("STACKSYNC_TEST_SWIFT")?;
        let db = TestDb::postgres().await?;
        let owner = SwiftStore::new(v1(&swift_auth_url, "test:tester", "testing"))
            .expect("a Swift configuration");
        owner.connect().await.expect("Swift accepts test:tester");
        let storage_url = owner.storage_url().await.expect("a storage URL");
        let account = storage_url
            .rsplit('/')
            .next()
            .expect("a storage URL ends in its account")
            .to_owned();
        let namespace = format!("stacksync-direct-test.{}", Uuid::new_v4().simple());
        let bus = Bus::rabbitmq(bus_config(&amqp_url, &namespace))
            .await
            .expect("RabbitMQ is reachable");
        let service = Service::new(
            db.store.clone(),
            Arc::new(owner),
            bus.clone(),
            ServiceConfig {
                storage_url: Some(storage_url),
                ..ServiceConfig::default()
            },
        )
        .with_broker_admin(
            BrokerAdmin::new(broker_admin(&admin_url), &namespace)
                .expect("a broker administration"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let router = stacksync_gateway::router(service.clone());
        let limits = stacksync_gateway::GatewayLimits::default();
        let http = tokio::spawn(async move {
            let never = std::future::pending::<()>();
            let _ = stacksync_gateway::serve(listener, router, limits, never).await;
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let workers = tokio::spawn(run_workers(service.clone(), bus, stopped));
        Some(Env {
            service,
            url,
            http,
            amqp_url,
            namespace,
            swift_auth_url,
            account,
            stop: Some(stop),
            workers: Some(workers),
            _db: db,
        })
    }

    /// A client configuration for storage user `user` with `key`.
    fn client(&self, user: &str, key: &str) -> DirectConfig {
        let mut swift = v1(&self.swift_auth_url, user, key);
        swift.account = Some(self.account.clone());
        let mut config = DirectConfig::new(&self.amqp_url, &self.namespace, swift);
        config.bus = bus_config(&self.amqp_url, &self.namespace);
        config
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(workers) = self.workers.take() {
            workers.await.expect("the RPC workers stop cleanly");
        }
        self.http.abort();
    }
}

async fn run_workers(service: Service, bus: Bus, stopped: oneshot::Receiver<()>) {
    run_rpc_workers(service, bus, 8, async {
        let _ = stopped.await;
    })
    .await
    .expect("the RPC workers run");
}

/// Registers a device on `conn`.
async fn device(conn: &DirectConnection, name: &str) -> DeviceId {
    let request = Request::UpdateDevice {
        id: None,
        name: name.into(),
        os: "linux".into(),
        app_version: "test".into(),
    };
    match conn.rpc(request).await.expect("device registration works") {
        Reply::Device(device) => device.id,
        other => panic!("expected a device, got {other:?}"),
    }
}

/// A chunk named by the BLAKE3 of its bytes (the transport moves bytes;
/// the content pipeline is not under test here).
fn chunk(text: &str) -> (ChunkId, Bytes) {
    let data = Bytes::from(text.as_bytes().to_vec());
    (ChunkId(*blake3::hash(&data).as_bytes()), data)
}

fn new_file(parent: Option<ItemId>, name: &str, id: &ChunkId, data: &Bytes) -> ProposedItem {
    ProposedItem {
        id: ItemId::new(),
        parent,
        name: ItemName::new(name).expect("a valid name"),
        is_folder: false,
        mimetype: None,
        status: ItemStatus::New,
        version: 1,
        content_hash: Some(ContentHash(*blake3::hash(data).as_bytes())),
        size: data.len() as u64,
        client_modified: 1,
        chunks: vec![ChunkRef::whole(*id, data.len() as u32)],
        record: None,
    }
}

fn new_folder(name: &str) -> ProposedItem {
    ProposedItem {
        id: ItemId::new(),
        parent: None,
        name: ItemName::new(name).expect("a valid name"),
        is_folder: true,
        mimetype: None,
        status: ItemStatus::New,
        version: 1,
        content_hash: None,
        size: 0,
        client_modified: 1,
        chunks: vec![],
        record: None,
    }
}

/// The next notification that is not a `Resync`.
async fn next_hint(stream: &mut NotificationStream) -> Notification {
    loop {
        let next = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .expect("a notification arrives before the deadline")
            .expect("the notification stream is open")
            .expect("the notification stream has no error");
        if next != Notification::Resync {
            return next;
        }
    }
}

/// Commits `items` in `workspace` as `device` and checks they were taken.
async fn commit(
    conn: &DirectConnection,
    workspace: WorkspaceId,
    device: DeviceId,
    items: Vec<ProposedItem>,
) -> u64 {
    let remote = WorkspaceRemote::new(Arc::new(conn.clone()), workspace, device);
    let result = remote.commit(items).await.expect("the commit is answered");
    for item in &result.results {
        assert!(
            matches!(item.outcome, CommitOutcome::Committed { .. }),
            "{item:?}"
        );
    }
    result.revision
}

fn private_of(list: &[Workspace]) -> &Workspace {
    list.iter()
        .find(|w| !w.is_shared)
        .expect("every account has a private workspace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_chunks_commits_and_notifications_over_rabbitmq_and_swift() {
    let Some(env) = Env::start().await else {
        return;
    };
    let (account, private) = env
        .service
        .create_user(
            "ann@example.org",
            "Ann",
            "pw-ann-123",
            1 << 30,
            Some("test:tester".into()),
        )
        .await
        .expect("the user is created");

    // Login over HTTP; a wrong password and a bogus token are refused.
    let ann = DirectConnection::login(
        env.client("test:tester", "testing"),
        &env.url,
        "ann@example.org",
        "pw-ann-123",
    )
    .await
    .expect("login over HTTP, then RabbitMQ, works");
    assert_eq!(ann.user(), account.id);
    let refused = DirectConnection::login(
        env.client("test:tester", "testing"),
        &env.url,
        "ann@example.org",
        "wrong",
    )
    .await
    .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Unauthenticated, "{refused}");
    let bogus = DirectConnection::connect(
        env.client("test:tester", "testing"),
        &"0".repeat(64),
        ann.broker_login().clone(),
    )
    .await
    .unwrap_err();
    assert_eq!(bogus.kind, ErrorKind::Unauthenticated, "{bogus}");
    let bad_key = DirectConnection::login(
        env.client("test:tester", "not-the-key"),
        &env.url,
        "ann@example.org",
        "pw-ann-123",
    )
    .await
    .unwrap_err();
    assert_eq!(bad_key.kind, ErrorKind::Unauthenticated, "{bad_key}");
    assert!(bad_key.message.contains("test:tester"), "{bad_key}");

    // A second device of Ann's reconnects with the first session's token.
    let laptop = DirectConnection::connect(
        env.client("test:tester", "testing"),
        ann.token(),
        ann.broker_login().clone(),
    )
    .await
    .expect("a stored token and broker login connect");
    assert_eq!(laptop.user(), account.id);

    let list = workspaces(&ann).await.expect("get_workspaces over the bus");
    assert_eq!(list.len(), 1);
    let ws = private_of(&list);
    assert_eq!(
        (ws.id, ws.container.as_str()),
        (private.id, private.container.as_str())
    );

    // Chunks go straight to the workspace's Swift container.
    let transport = ann.chunks(ws).await.expect("a chunk transport");
    let (id, data) = chunk("the quick brown fox, stored in Swift directly");
    let (other, _) = chunk("never uploaded");
    assert_eq!(
        transport.has_chunks(&[id, other]).await.unwrap(),
        [false, false]
    );
    transport
        .put_chunk(&id, data.clone())
        .await
        .expect("a PUT to Swift");
    assert_eq!(
        transport.has_chunks(&[id, other]).await.unwrap(),
        [true, false]
    );
    assert_eq!(transport.get_chunk(&id).await.unwrap(), data);
    let container = ContainerName::new(&ws.container).unwrap();
    assert_eq!(
        env.service
            .blobs()
            .get_bytes(&container, &id)
            .await
            .unwrap(),
        data,
        "the service sees the chunk in the workspace's container"
    );
    let missing = transport.get_chunk(&other).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");

    // Another device's commit reaches this device as a notification, and
    // the change feed has it.
    let desktop = device(&ann, "desktop").await;
    let laptop_device = device(&laptop, "laptop").await;
    let mut stream = ann.notifications().await.expect("a notification stream");
    let first = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("the stream says it is live");
    assert_eq!(first.map(|r| r.ok()), Some(Some(Notification::Resync)));
    let item = new_file(None, "fox.txt", &id, &data);
    let revision = commit(&laptop, ws.id, laptop_device, vec![item.clone()]).await;
    match next_hint(&mut stream).await {
        Notification::Commit {
            workspace,
            device,
            revision: r,
            items,
        } => {
            assert_eq!((workspace, device, r), (ws.id, laptop_device, revision));
            assert_eq!(items.iter().map(|m| m.id).collect::<Vec<_>>(), [item.id]);
        }
        other => panic!("expected the laptop's commit, got {other:?}"),
    }
    let remote = WorkspaceRemote::new(Arc::new(ann.clone()), ws.id, desktop);
    let page = remote
        .get_changes(0, 100)
        .await
        .expect("get_changes over the bus");
    let meta = page
        .items
        .iter()
        .find(|m| m.id == item.id)
        .expect("the committed item is in the feed");
    assert_eq!((meta.version, meta.size), (1, data.len() as u64));
    assert_eq!(meta.chunks.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);

    // Logging out withdraws the session's broker user at once.
    let login = ann.broker_login().clone();
    env.service.logout(ann.token()).await.expect("logout");
    let after = DirectConnection::connect(env.client("test:tester", "testing"), ann.token(), login)
        .await
        .unwrap_err();
    assert!(
        after.message.contains("cannot connect to the message bus"),
        "{after}"
    );

    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_storage_user_is_refused_until_a_share_grants_the_container() {
    let Some(env) = Env::start().await else {
        return;
    };
    let (ann_account, ann_private) = env
        .service
        .create_user(
            "ann@example.org",
            "Ann",
            "pw-ann-123",
            1 << 30,
            Some("test:tester".into()),
        )
        .await
        .expect("Ann is created");
    env.service
        .create_user(
            "bob@example.org",
            "Bob",
            "pw-bob-123",
            1 << 30,
            Some("test2:tester2".into()),
        )
        .await
        .expect("Bob is created");
    let ann = DirectConnection::login(
        env.client("test:tester", "testing"),
        &env.url,
        "ann@example.org",
        "pw-ann-123",
    )
    .await
    .expect("Ann logs in");
    let bob = DirectConnection::login(
        env.client("test2:tester2", "testing2"),
        &env.url,
        "bob@example.org",
        "pw-bob-123",
    )
    .await
    .expect("Bob logs in");
    let ann_device = device(&ann, "ann's desktop").await;

    let (id, data) = chunk("Ann's private bytes");
    ann.chunks(&ann_private)
        .await
        .unwrap()
        .put_chunk(&id, data.clone())
        .await
        .expect("Ann stores a chunk");

    // Bob's Swift user reaches the installation's account but has no ACL
    // on Ann's container: every operation is a clear 403.
    let theirs = bob
        .chunks(&ann_private)
        .await
        .expect("a transport (no I/O yet)");
    let read = theirs.get_chunk(&id).await.unwrap_err();
    assert_eq!(read.kind, ErrorKind::Forbidden, "{read}");
    for needle in [
        ann_private.container.as_str(),
        "test2:tester2",
        "Swift refused access",
    ] {
        assert!(
            read.message.contains(needle),
            "{needle:?} missing from: {read}"
        );
    }
    let probe = theirs.has_chunks(&[id]).await.unwrap_err();
    assert_eq!(probe.kind, ErrorKind::Forbidden, "{probe}");
    let (forged, bytes) = chunk("Bob's overwrite attempt");
    let write = theirs.put_chunk(&forged, bytes).await.unwrap_err();
    assert_eq!(write.kind, ErrorKind::Forbidden, "{write}");
    let container = ContainerName::new(&ann_private.container).unwrap();
    assert_eq!(
        env.service
            .blobs()
            .get_bytes(&container, &id)
            .await
            .unwrap(),
        data
    );
    assert!(
        env.service
            .blobs()
            .existing(&container, &[forged])
            .await
            .unwrap()
            .is_empty(),
        "Bob's write did not land"
    );

    // The same storage user gets in once Ann shares a folder with Bob: the
    // service grants the shared container, Bob's stream follows the new
    // workspace and hears Ann's commits in it.
    let mut bob_stream = bob
        .notifications()
        .await
        .expect("Bob's notification stream");
    let folder = new_folder("together");
    commit(&ann, ann_private.id, ann_device, vec![folder.clone()]).await;
    let proposal = match ann
        .rpc(Request::CreateShareProposal {
            workspace: ann_private.id,
            folder: folder.id,
            emails: vec!["bob@example.org".into()],
            encryption: EncryptionMode::Plain,
            read_only: false,
        })
        .await
        .expect("Ann proposes a share")
    {
        Reply::ShareProposal { proposal, .. } => proposal,
        other => panic!("expected a proposal, got {other:?}"),
    };
    match next_hint(&mut bob_stream).await {
        Notification::ShareProposal { proposal: p, .. } => assert_eq!(p, proposal),
        other => panic!("expected the proposal, got {other:?}"),
    }
    let shared = match bob
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: true,
        })
        .await
        .expect("Bob accepts")
    {
        Reply::ShareAnswered {
            workspace: Some(ws),
        } => ws,
        other => panic!("expected the shared workspace, got {other:?}"),
    };
    match next_hint(&mut bob_stream).await {
        Notification::WorkspaceJoined { workspace } => assert_eq!(workspace.id, shared.id),
        other => panic!("expected the join, got {other:?}"),
    }
    // Finding 8: members' own storage users only read a shared container.
    // Swift's write ACL would also let Bob replace or delete what Ann
    // stored there; writes to shared workspaces go through the service,
    // which stores every object once.
    let (id, data) = chunk("shared bytes");
    env.service
        .put_chunk(ann_account.id, shared.id, &id, data.clone())
        .await
        .expect("Ann stores a chunk through the service");
    let ours = bob.chunks(&shared).await.unwrap();
    assert_eq!(
        ours.get_chunk(&id).await.unwrap(),
        data,
        "Bob reads it directly"
    );
    // His client writes into the shared workspace through the service,
    // which stores each object once: a replacement of Ann's chunk is
    // refused, a chunk of his own is stored.
    let (new_id, new_data) = chunk("Bob's own new chunk");
    let (_, forged) = chunk("Bob's replacement of Ann's chunk");
    let replace = ours.put_chunk(&id, forged.clone()).await.unwrap_err();
    assert_eq!(replace.kind, ErrorKind::Conflict, "{replace}");
    ours.put_chunk(&new_id, new_data)
        .await
        .expect("Bob's new chunk is stored through the service");
    // Nor do Bob's credentials delete or replace it with any Swift client.
    let mut bob_swift = v1(&env.swift_auth_url, "test2:tester2", "testing2");
    bob_swift.account = Some(env.account.clone());
    let raw = SwiftStore::new(bob_swift).expect("a Swift configuration");
    let container = ContainerName::new(&shared.container).unwrap();
    let delete = raw.delete(&container, &id).await.unwrap_err();
    assert_eq!(delete.kind, BlobErrorKind::Forbidden, "{delete}");
    let replace = raw.put_bytes(&container, &id, forged).await.unwrap_err();
    assert_eq!(replace.kind, BlobErrorKind::Forbidden, "{replace}");
    assert_eq!(
        env.service
            .blobs()
            .get_bytes(&container, &id)
            .await
            .unwrap(),
        data,
        "Ann's chunk is intact"
    );

    let item = new_file(None, "plan.txt", &id, &data);
    let revision = commit(&ann, shared.id, ann_device, vec![item.clone()]).await;
    loop {
        match next_hint(&mut bob_stream).await {
            Notification::Commit {
                workspace,
                revision: r,
                items,
                ..
            } if workspace == shared.id => {
                if items.iter().any(|m| m.id == item.id) {
                    assert_eq!(r, revision);
                    break;
                }
            }
            // Ann's own workspace events (the folder moving) are not Bob's.
            Notification::Commit { workspace, .. } => {
                assert_ne!(
                    workspace, ann_private.id,
                    "Bob must not hear Ann's private workspace"
                )
            }
            other => panic!("expected Ann's commit in the shared workspace, got {other:?}"),
        }
    }

    env.shutdown().await;
}
