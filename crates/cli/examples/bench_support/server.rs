//! A `stacksync server` in a scratch folder: the embedded default (SQLite,
//! local blobs, in-process bus) or the full stack (PostgreSQL + RabbitMQ +
//! Swift, in a scratch database that goes away with it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::client::Client;
use super::rclone::Rclone;
use super::tail;

/// The password of every account a bench creates.
pub const PASSWORD: &str = "bench-pw";

/// The real backends of the full stack, from the environment
/// `scripts/bench` prepares.
pub struct Services {
    pub postgres: String,
    pub amqp: String,
    pub swift: Rclone,
    /// RabbitMQ's management API with credentials
    /// (STACKSYNC_TEST_AMQP_ADMIN, `http://user:password@host:port`), for a
    /// server that issues direct clients their own broker users; None when
    /// unset (only the benches of direct clients need it).
    pub amqp_admin: Option<String>,
}

impl Services {
    pub fn from_env(bench: &str) -> anyhow::Result<Services> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("{name} is not set: run this through `scripts/bench {bench}`")
                })
        };
        Ok(Services {
            postgres: var("STACKSYNC_TEST_POSTGRES")?,
            amqp: var("STACKSYNC_TEST_AMQP")?,
            swift: Rclone::from_env(bench)?,
            amqp_admin: std::env::var("STACKSYNC_TEST_AMQP_ADMIN")
                .ok()
                .filter(|v| !v.is_empty()),
        })
    }
}

/// What the server runs on.
pub enum Backend<'a> {
    /// `data_dir` and `listen` only: SQLite, local blobs, in-process bus.
    Embedded,
    /// PostgreSQL + RabbitMQ + Swift.
    Full(&'a Services),
}

/// The scratch database of a full-stack server, dropped with it (and the
/// Swift containers of its workspaces purged, when rclone is there).
pub struct ScratchDb {
    name: String,
    url: String,
    admin_url: String,
    swift: Rclone,
}

pub struct Server {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub config: PathBuf,
    pub url: String,
    pub process: Option<Child>,
    db: Option<ScratchDb>,
}

impl Server {
    /// Starts a server in `dir` (created) and waits until it is ready.
    pub async fn start(bin: &Path, backend: Backend<'_>, dir: &Path) -> anyhow::Result<Server> {
        std::fs::create_dir_all(dir)?;
        let mut server = Server {
            bin: bin.to_owned(),
            config: dir.join("server.toml"),
            url: String::new(),
            process: None,
            db: None,
            dir: dir.to_owned(),
        };
        let data = server.dir.join("server").display().to_string();
        let text = match backend {
            Backend::Embedded => format!("data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n"),
            Backend::Full(services) => {
                let db = ScratchDb::create(services)?;
                let ns = format!("bench-sync-{}", uuid::Uuid::new_v4().simple());
                let text = format!(
                    "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n\n[database]\nurl = {db:?}\n\n\
                     [bus]\nkind = \"rabbitmq\"\nurl = {amqp:?}\nnamespace = {ns:?}\nqueue_kind = \"classic\"\n\n\
                     [storage]\nkind = \"swift\"\n\n[storage.swift]\nmax_concurrency = 16\n\n\
                     [storage.swift.auth]\nkind = \"v1\"\nauth_url = {auth:?}\nuser = \"test:tester\"\nkey = \"testing\"\n",
                    db = db.url,
                    amqp = services.amqp,
                    auth = services.swift.swift_auth,
                );
                server.db = Some(db);
                text
            }
        };
        std::fs::write(&server.config, text)?;
        let log = std::fs::File::create(server.log_path())?;
        let mut child = Command::new(bin)
            .args(["server", "--config"])
            .arg(&server.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting stacksync server")?;
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        server.process = Some(child);
        let mut url = None;
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(u) = line.strip_prefix("listening on ") {
                    url = Some(u.trim().to_owned());
                }
                if line == "ready" {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            bail!(
                "the server did not become ready; its log:\n{}",
                tail(&server.log_path(), 40)
            );
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        server.url = url.context("the server printed no address")?;
        Ok(server)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Child::id)
    }

    /// An account with a quota large enough for any bench.
    pub fn add_user(&self, email: &str) -> anyhow::Result<()> {
        let out = std::process::Command::new(&self.bin)
            .args(["admin", "--config"])
            .arg(&self.config)
            .args(["user", "add", email, "--password", PASSWORD])
            .args(["--quota", &(64u64 << 30).to_string()])
            .env("RUST_LOG", "warn")
            .output()?;
        if !out.status.success() {
            bail!("admin user add: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Sets up a client device with its own home and folder.
    pub async fn client(&self, name: &str, email: &str) -> anyhow::Result<Client> {
        self.client_via(name, email, &self.url).await
    }

    /// Sets up a client device that reaches the server at `url` (a proxy
    /// in front of it, say).
    pub async fn client_via(&self, name: &str, email: &str, url: &str) -> anyhow::Result<Client> {
        let client = Client::new(&self.bin, name, &self.dir);
        client.setup(url, email).await?;
        Ok(client)
    }

    /// Sets up a client device with `extra` flags for `setup` (an
    /// end-to-end encrypted account's `--encrypted --passphrase P`, say).
    pub async fn client_with(
        &self,
        name: &str,
        email: &str,
        extra: &[&str],
    ) -> anyhow::Result<Client> {
        let client = Client::new(&self.bin, name, &self.dir);
        client.setup_with(&self.url, email, extra).await?;
        Ok(client)
    }
}

impl ScratchDb {
    /// A new empty database on the PostgreSQL of `services`.
    pub fn create(services: &Services) -> anyhow::Result<ScratchDb> {
        let name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
        let status = std::process::Command::new("psql")
            .arg(&services.postgres)
            .args(["-qc", &format!("CREATE DATABASE {name}")])
            .status()
            .context("running psql to create the scratch database")?;
        if !status.success() {
            bail!(
                "psql could not create database {name} on {}",
                services.postgres
            );
        }
        let base = services
            .postgres
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&services.postgres);
        Ok(ScratchDb {
            url: format!("{base}/{name}"),
            name,
            admin_url: services.postgres.clone(),
            swift: services.swift.clone(),
        })
    }

    /// Its URL, for a server's `[database]`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The Swift containers of its workspaces.
    pub fn containers(&self) -> Vec<String> {
        std::process::Command::new("psql")
            .arg(&self.url)
            .args(["-Atc", "SELECT container FROM workspaces"])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        // The workspaces' Swift containers, then the database.
        for name in self.containers() {
            self.swift.purge_container(&name);
        }
        let _ = std::process::Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The server goes before its database (the field drops after this).
        if let Some(mut p) = self.process.take() {
            let _ = p.start_kill();
        }
    }
}
