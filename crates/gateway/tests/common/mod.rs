//! Fixtures: a real service (SQLite, in-process bus, local blob store in a
//! temporary folder) behind the gateway on 127.0.0.1, users with sessions,
//! and a TCP proxy whose connections a test can cut.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stacksync_blobstore::{BlobStore, LocalStore};
use stacksync_bus::{Bus, MemoryConfig};
use stacksync_gateway_client::GatewayClient;
use stacksync_metastore::testing::TestDb;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    CommitRequest, DeviceId, ItemId, ItemName, ItemStatus, Notification, ProposedItem, UserId,
    Workspace,
};
use stacksync_service::{Service, ServiceConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest any single wait may take before the test fails (a deadline, not
/// a measurement).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A plain HTTP client for poking at endpoints directly.
pub fn http() -> reqwest::Client {
    // reqwest is built without a default TLS provider; the process needs one
    // before any client is built (a second install fails harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The password every test user has.
pub const PASSWORD: &str = "pw-123456";

/// A gateway serving a fresh service.
pub struct Gateway {
    pub url: String,
    pub addr: SocketAddr,
    pub service: Service,
    _db: TestDb,
    _blob_dir: tempfile::TempDir,
    server: JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A user logged in through the gateway, with a registered device.
pub struct User {
    pub id: UserId,
    pub email: String,
    pub private: Workspace,
    pub client: GatewayClient,
    pub device: DeviceId,
}

impl Gateway {
    pub async fn start() -> Gateway {
        let db = TestDb::sqlite().await;
        let bus = Bus::in_process(MemoryConfig::default());
        let blob_dir = tempfile::tempdir().expect("a temp dir");
        let blobs: Arc<dyn BlobStore> = Arc::new(
            LocalStore::open(blob_dir.path().to_path_buf())
                .await
                .expect("a local blob store opens"),
        );
        let service = Service::new(db.store.clone(), blobs, bus, ServiceConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let app = stacksync_gateway::router(service.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the gateway serves");
        });
        Gateway {
            url: format!("http://{addr}"),
            addr,
            service,
            _db: db,
            _blob_dir: blob_dir,
            server,
        }
    }

    /// Creates a user and logs in through the gateway at `url`.
    pub async fn user_via(&self, email: &str, url: &str) -> User {
        let local = email.split('@').next().unwrap_or(email);
        let (account, private) = self
            .service
            .create_user(email, local, PASSWORD, 1 << 30, Some(format!("t:{local}")))
            .await
            .expect("the user is created");
        let client = GatewayClient::login(url, email, PASSWORD)
            .await
            .expect("login through the gateway works");
        assert_eq!(client.session().user, account.id);
        let Ok(Reply::Device(device)) = client
            .rpc(Request::UpdateDevice {
                id: None,
                name: format!("{local}'s laptop"),
                os: "linux".into(),
                app_version: "test".into(),
            })
            .await
        else {
            panic!("device registration works");
        };
        User {
            id: account.id,
            email: email.into(),
            private,
            client,
            device: device.id,
        }
    }

    /// A second session (another device) of `user`, through this gateway.
    pub async fn user_via_existing(&self, user: &User) -> GatewayClient {
        self.user_via_existing_at(user, &self.url.clone()).await
    }

    /// A second session (another device) of `user`, through `url`.
    pub async fn user_via_existing_at(&self, user: &User, url: &str) -> GatewayClient {
        GatewayClient::login(url, &user.email, PASSWORD)
            .await
            .expect("a second login works")
    }

    /// Creates a user and logs in through this gateway.
    pub async fn user(&self, email: &str) -> User {
        self.user_via(email, &self.url.clone()).await
    }
}

/// A new-folder commit request in `workspace`.
pub fn new_folder(workspace: &Workspace, device: DeviceId, name: &str) -> Request {
    Request::Commit(CommitRequest {
        workspace: workspace.id,
        device,
        items: vec![ProposedItem {
            id: ItemId::new(),
            parent: None,
            name: ItemName::new(name).expect("a valid test name"),
            is_folder: true,
            mimetype: None,
            status: ItemStatus::New,
            version: 1,
            content_hash: None,
            size: 0,
            client_modified: 1,
            chunks: vec![],
            record: None,
        }],
    })
}

/// The next notification, failing the test after [`DEADLINE`].
pub async fn next(stream: &mut stacksync_gateway_client::Notifications) -> Notification {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("a notification arrives before the deadline")
        .expect("the stream is open")
        .expect("the stream is healthy")
}

/// Skips notifications until one matches `want`, failing after [`DEADLINE`].
pub async fn wait_for(
    stream: &mut stacksync_gateway_client::Notifications,
    want: impl Fn(&Notification) -> bool,
) -> Notification {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let n = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("the expected notification arrives before the deadline")
            .expect("the stream is open")
            .expect("the stream is healthy");
        if want(&n) {
            return n;
        }
    }
}

/// A TCP proxy to the gateway whose open connections [`Proxy::cut`] drops,
/// as a flaky network or a restarting load balancer would.
pub struct Proxy {
    pub url: String,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn to(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let (generation, _) = watch::channel(0u64);
        let cuts = generation.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            url: format!("http://{addr}"),
            generation,
            task,
        }
    }

    /// Drops every connection open now; new ones go through.
    pub fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}
