//! Fixtures for the service tests: one service with its RPC workers on
//! either the in-process bus with SQLite, or RabbitMQ with PostgreSQL
//! (`STACKSYNC_TEST_AMQP`, `STACKSYNC_TEST_POSTGRES`; panics under `CI=true`
//! when unset, prints `SKIP:` otherwise). Every call goes through the bus,
//! so the RPC path is what is tested.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use stacksync_blobstore::{AtRestKeys, BlobStore, LocalStore};
use stacksync_bus::{Bus, BusConfig, MemoryConfig, QueueKind, Subscription, SubscriptionEvent};
use stacksync_metastore::testing::TestDb;
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{
    ContentHash, DeviceId, EncryptionMode, Error, ItemId, ItemName, ItemStatus, Notification,
    ProposedItem, UserId, Workspace, wire,
};
use stacksync_service::{Service, ServiceConfig, run_rpc_workers};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Longest any single wait may take before the test fails (a deadline, not
/// a measurement).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Which backends a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combo {
    /// In-process bus, SQLite, local blob store.
    Embedded,
    /// RabbitMQ and PostgreSQL (local blob store).
    Real,
}

/// The AMQP URL, or `None` after printing why the test is skipped.
pub fn amqp_url() -> Option<String> {
    match std::env::var("STACKSYNC_TEST_AMQP") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("STACKSYNC_TEST_AMQP is not set under CI=true: RabbitMQ tests must run")
        }
        _ => {
            eprintln!("SKIP: STACKSYNC_TEST_AMQP is not set; RabbitMQ service test skipped");
            None
        }
    }
}

/// A running service and what a test needs to reach it.
pub struct Env {
    pub service: Service,
    pub bus: Bus,
    pub db: TestDb,
    pub blobs: Arc<dyn BlobStore>,
    _blob_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    workers: Option<tokio::task::JoinHandle<()>>,
}

/// A user with a session, a registered device and a private workspace.
#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub token: String,
    pub device: DeviceId,
    pub private: Workspace,
}

impl Env {
    /// `None` when the combo's services are not configured (test skipped).
    pub async fn new(combo: Combo) -> Option<Env> {
        Env::new_with(combo, None).await
    }

    /// [`Env::new`] with a local blob store that encrypts at rest with
    /// `at_rest` (server-side encryption) when it is given.
    pub async fn new_with(combo: Combo, at_rest: Option<AtRestKeys>) -> Option<Env> {
        let (db, bus) = match combo {
            Combo::Embedded => (
                TestDb::sqlite().await,
                Bus::in_process(MemoryConfig::default()),
            ),
            Combo::Real => {
                let url = amqp_url()?;
                let db = TestDb::postgres().await?;
                let ns = format!("stacksync-svc-test.{}", Uuid::new_v4().simple());
                let mut config = BusConfig::new(url, ns);
                config.queue_kind = QueueKind::Classic;
                config.rpc_timeout = Duration::from_secs(15);
                (
                    db,
                    Bus::rabbitmq(config).await.expect("RabbitMQ is reachable"),
                )
            }
        };
        let blob_dir = tempfile::tempdir().expect("a temp dir");
        let blobs: Arc<dyn BlobStore> = Arc::new(
            match at_rest {
                Some(keys) => LocalStore::open_sealed(blob_dir.path().to_path_buf(), keys).await,
                None => LocalStore::open(blob_dir.path().to_path_buf()).await,
            }
            .expect("a local blob store opens"),
        );
        let service = Service::new(
            db.store.clone(),
            blobs.clone(),
            bus.clone(),
            ServiceConfig::default(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let worker_service = service.clone();
        let worker_bus = bus.clone();
        let workers = tokio::spawn(async move {
            run_rpc_workers(worker_service, worker_bus, 8, async {
                let _ = stopped.await;
            })
            .await
            .expect("the RPC workers run");
        });
        Some(Env {
            service,
            bus,
            db,
            blobs,
            _blob_dir: blob_dir,
            stop: Some(stop),
            workers: Some(workers),
        })
    }

    /// Sends a whole RPC request over the bus and decodes the answer.
    pub async fn call_raw(&self, req: &RpcRequest) -> RpcResponse {
        let reply = self
            .bus
            .call(wire::encode(req).into(), DEADLINE)
            .await
            .expect("the bus answers");
        wire::decode(&reply).expect("the reply decodes")
    }

    /// Sends `request` with a fresh request id the way a client does:
    /// requests carrying a password (or asking for broker credentials) to
    /// the service as the HTTPS gateway does, since the bus refuses them;
    /// everything else over the bus.
    pub async fn call(&self, token: &str, request: Request) -> Result<Reply, Error> {
        let req = RpcRequest {
            request_id: Uuid::new_v4(),
            token: token.to_owned(),
            request,
        };
        let over_https = matches!(
            req.request,
            Request::Login { .. }
                | Request::ChangePassword { .. }
                | Request::IssueBrokerCredentials
        );
        let resp = if over_https {
            self.service.handle(req.clone(), None).await
        } else {
            self.call_raw(&req).await
        };
        assert_eq!(resp.request_id, req.request_id);
        resp.result
    }

    /// Creates a user (with a storage user `t:LOCALPART`), logs in and
    /// registers a device.
    pub async fn user(&self, email: &str) -> User {
        self.user_with_quota(email, 1 << 30).await
    }

    /// [`Env::user`] with a quota of `quota` bytes.
    pub async fn user_with_quota(&self, email: &str, quota: u64) -> User {
        let local = email.split('@').next().unwrap_or(email);
        let (account, private) = self
            .service
            .create_user(email, local, "pw-123456", quota, Some(format!("t:{local}")))
            .await
            .expect("the user is created");
        let user = self.login(email).await;
        assert_eq!(user.id, account.id);
        assert_eq!(user.private.id, private.id);
        user
    }

    /// Logs in as an existing user (password `pw-123456`) and registers a
    /// device.
    pub async fn login(&self, email: &str) -> User {
        let local = email.split('@').next().unwrap_or(email);
        let login = self
            .call(
                "",
                Request::Login {
                    email: email.into(),
                    password: "pw-123456".into(),
                },
            )
            .await;
        let Ok(Reply::Session { token, user, .. }) = login else {
            panic!("login works, not {login:?}");
        };
        let Ok(Reply::Device(device)) = self
            .call(
                &token,
                Request::UpdateDevice {
                    id: None,
                    name: format!("{local}'s laptop"),
                    os: "linux".into(),
                    app_version: "test".into(),
                },
            )
            .await
        else {
            panic!("device registration works");
        };
        let Ok(Reply::Workspaces { workspaces: list }) =
            self.call(&token, Request::GetWorkspaces).await
        else {
            panic!("the workspaces are listed");
        };
        let private = list
            .into_iter()
            .find(|w| !w.is_shared && w.owner == user)
            .expect("a private workspace");
        User {
            id: user,
            email: email.into(),
            token,
            device: device.id,
            private,
        }
    }

    /// The local blob store's folder (`<container>/acl.json`, ...), for
    /// tests that break the store underneath the service.
    pub fn blob_root(&self) -> &std::path::Path {
        self._blob_dir.path()
    }

    /// Stops the workers and waits for them.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(w) = self.workers.take() {
            w.await.expect("the workers stop cleanly");
        }
    }
}

/// A new folder proposal at version 1.
pub fn folder(id: ItemId, parent: Option<ItemId>, name: &str) -> ProposedItem {
    ProposedItem {
        id,
        parent,
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
    }
}

/// A file proposal of `version` whose content is identified by `seed`
/// (an empty file: content tests need no chunk bytes).
pub fn file(
    id: ItemId,
    parent: Option<ItemId>,
    name: &str,
    version: u64,
    seed: &str,
) -> ProposedItem {
    ProposedItem {
        id,
        parent,
        name: ItemName::new(name).expect("a valid test name"),
        is_folder: false,
        mimetype: None,
        status: if version == 1 {
            ItemStatus::New
        } else {
            ItemStatus::Changed
        },
        version,
        content_hash: Some(ContentHash(*blake3::hash(seed.as_bytes()).as_bytes())),
        size: 0,
        client_modified: version as i64,
        chunks: vec![],
        record: None,
    }
}

/// The next notification on `sub`, decoded; gap signals are skipped.
pub async fn next_notification(sub: &mut Subscription) -> Notification {
    loop {
        let event = tokio::time::timeout(DEADLINE, sub.recv())
            .await
            .expect("a notification arrives before the deadline")
            .expect("the subscription is open");
        if let SubscriptionEvent::Message { payload, .. } = event {
            return wire::decode(&payload).expect("a notification decodes");
        }
    }
}

/// Runs `check` on the embedded combo and on the real one.
#[macro_export]
macro_rules! both_combos {
    ($check:ident) => {
        mod $check {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                if let Some(env) = $crate::common::Env::new($crate::common::Combo::Embedded).await {
                    super::$check(&env).await;
                    env.shutdown().await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rabbitmq_postgres() {
                if let Some(env) = $crate::common::Env::new($crate::common::Combo::Real).await {
                    super::$check(&env).await;
                    env.shutdown().await;
                }
            }
        }
    };
}

/// `owner` shares `folder` (a folder of their private workspace) with
/// `member`, who accepts; the shared workspace.
pub async fn share_folder(env: &Env, owner: &User, member: &User, folder: ItemId) -> Workspace {
    share_folder_as(env, owner, member, folder, false).await
}

/// [`share_folder`], making `member` a read-only member when `read_only`;
/// the shared workspace as `member` sees it.
pub async fn share_folder_as(
    env: &Env,
    owner: &User,
    member: &User,
    folder: ItemId,
    read_only: bool,
) -> Workspace {
    let Ok(Reply::ShareProposal { proposal, .. }) = env
        .call(
            &owner.token,
            Request::CreateShareProposal {
                workspace: owner.private.id,
                folder,
                emails: vec![member.email.clone()],
                encryption: EncryptionMode::Plain,
                read_only,
            },
        )
        .await
    else {
        panic!("the proposal is made");
    };
    let Ok(Reply::ShareAnswered {
        workspace: Some(shared),
    }) = env
        .call(
            &member.token,
            Request::AnswerShareProposal {
                proposal,
                accept: true,
            },
        )
        .await
    else {
        panic!("the proposal is accepted");
    };
    shared
}
