//! The server side of a run: the real service over a fresh SQLite metadata
//! store, a local-directory blob store and the in-process bus, and the
//! users and devices a seed asks for.

use std::sync::Arc;

use stacksync_blobstore::{BlobStore, LocalStore};
use stacksync_bus::{Bus, MemoryConfig, Topic};
use stacksync_metastore::testing::TestDb;
use stacksync_proto::rpc::{Reply, Request, RpcRequest};
use stacksync_proto::{Error, Workspace};
use stacksync_service::{Service, ServiceConfig};
use uuid::Uuid;

use crate::device::{Session, SimDevice};

/// Every device of every user, and what they sync.
pub struct World {
    pub service: Service,
    pub bus: Bus,
    /// The workspaces under test, each with the indices of the devices
    /// that sync it (a shared workspace will list devices of several
    /// users).
    pub workspaces: Vec<(Workspace, Vec<usize>)>,
    pub devices: Vec<SimDevice>,
    _db: TestDb,
    _blob_dir: tempfile::TempDir,
}

const PASSWORD: &str = "sim-password-1";

impl World {
    /// A fresh server with `devices_per_user[u]` devices for user `u`.
    pub async fn new(seed: u64, devices_per_user: &[usize]) -> Result<World, Error> {
        let db = TestDb::sqlite().await;
        let blob_dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let blobs: Arc<dyn BlobStore> = Arc::new(
            LocalStore::open(blob_dir.path().to_path_buf())
                .await
                .map_err(|e| Error::internal(e.to_string()))?,
        );
        let bus = Bus::in_process(MemoryConfig::default());
        let service = Service::new(
            db.store.clone(),
            blobs,
            bus.clone(),
            ServiceConfig::default(),
        );
        let mut world = World {
            service,
            bus,
            workspaces: Vec::new(),
            devices: Vec::new(),
            _db: db,
            _blob_dir: blob_dir,
        };
        for (u, &n) in devices_per_user.iter().enumerate() {
            let email = format!("user{u}@sim.test");
            let (_, private) = world
                .service
                .create_user(&email, &format!("user{u}"), PASSWORD, 1 << 40, None)
                .await?;
            let mut members = Vec::new();
            for d in 0..n {
                let name = format!("u{u}d{d}");
                let id_seed = (seed << 12) | ((u as u64) << 6) | d as u64;
                let session = world.login(&email, &name, private.clone(), id_seed).await?;
                let notifications = world
                    .bus
                    .subscribe(&[Topic::Workspace(private.id)])
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?;
                members.push(world.devices.len());
                world.devices.push(SimDevice::new(
                    name,
                    world.service.clone(),
                    session,
                    id_seed,
                    notifications,
                ));
            }
            world.workspaces.push((private, members));
        }
        Ok(world)
    }

    async fn call(&self, token: &str, id: Uuid, request: Request) -> Result<Reply, Error> {
        let req = RpcRequest {
            request_id: id,
            token: token.to_owned(),
            request,
        };
        self.service.handle(req, None).await.result
    }

    /// Logs a device in and registers it (request ids from `id_seed`,
    /// which must differ between devices).
    pub async fn login(
        &self,
        email: &str,
        name: &str,
        workspace: Workspace,
        id_seed: u64,
    ) -> Result<Session, Error> {
        let login = Request::Login {
            email: email.into(),
            password: PASSWORD.into(),
        };
        let Reply::Session { token, user, .. } = self
            .call("", Uuid::from_u64_pair(id_seed, 0), login)
            .await?
        else {
            return Err(Error::internal("login answered something else"));
        };
        let register = Request::UpdateDevice {
            id: None,
            name: name.into(),
            os: "sim".into(),
            app_version: "sim".into(),
        };
        let Reply::Device(device) = self
            .call(&token, Uuid::from_u64_pair(id_seed, u64::MAX), register)
            .await?
        else {
            return Err(Error::internal(
                "device registration answered something else",
            ));
        };
        Ok(Session {
            user,
            token,
            device: device.id,
            workspace,
        })
    }
}
