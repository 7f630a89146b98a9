//! A pool of `stacksync server` processes on one config, metadata only: a
//! scratch PostgreSQL database, one RabbitMQ namespace (no broker users:
//! the bench's callers publish with the broker's own account, as
//! `tests/elasticity.rs` does) and local blob storage. Instances are
//! started and stopped while the load runs, without blocking the caller:
//! a start is a task that ends when the server says `ready`, a stop is a
//! SIGTERM (the server stops taking requests, finishes and answers the
//! ones it started; the ones it had prefetched but not started go back to
//! the queue) and a task that ends with what the server says it served.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::server::PASSWORD;
use super::tail;

/// How long an instance may take to say `ready`.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long an instance may take to stop after SIGTERM before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// One running server process.
pub struct PoolInstance {
    pub name: String,
    pub log: PathBuf,
    /// When it said `ready`.
    pub ready_at: Instant,
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

/// How a stopped instance ended.
pub struct Stopped {
    pub name: String,
    /// The requests it says it served (None if it had to be killed).
    pub served: Option<u64>,
    /// It exited 0 on its own after SIGTERM.
    pub clean: bool,
    /// From SIGTERM to exit.
    pub took: Duration,
}

impl PoolInstance {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM; the task ends when the process exited (killed after
    /// [`STOP_DEADLINE`]), with what it said it served.
    pub fn terminate(mut self) -> JoinHandle<Stopped> {
        let started = Instant::now();
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        tokio::spawn(async move {
            let mut served = None;
            let waited = tokio::time::timeout(STOP_DEADLINE, async {
                while let Ok(Some(line)) = self.lines.next_line().await {
                    if let Some(n) = line
                        .strip_prefix("served ")
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|n| n.parse().ok())
                    {
                        served = Some(n);
                    }
                }
                self.child.wait().await
            })
            .await;
            let clean = match waited {
                Ok(Ok(status)) => status.success(),
                _ => {
                    let _ = self.child.start_kill();
                    let _ = self.child.wait().await;
                    false
                }
            };
            Stopped {
                name: self.name,
                served,
                clean,
                took: started.elapsed(),
            }
        })
    }
}

/// The scratch database, the config and the names, shared by every
/// instance; dropping it drops the database and the broker's leftovers
/// (kill the instances first: [`PoolInstance`] kills its process when
/// dropped).
pub struct ServerPool {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub namespace: String,
    /// The scratch database's URL.
    pub db_url: String,
    bin: PathBuf,
    db_name: String,
    pg_admin: String,
    /// The management API with credentials, for the leftovers.
    amqp_admin: String,
}

impl ServerPool {
    /// Creates the scratch database and writes the config (each instance
    /// takes at most `prefetch` requests at a time); starts nothing.
    pub fn create(
        bin: &Path,
        pg_admin: &str,
        amqp: &str,
        amqp_admin: &str,
        dir: &Path,
        prefetch: u16,
    ) -> anyhow::Result<ServerPool> {
        std::fs::create_dir_all(dir)?;
        let db_name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
        let status = std::process::Command::new("psql")
            .arg(pg_admin)
            .args(["-qc", &format!("CREATE DATABASE {db_name}")])
            .status()
            .context("running psql to create the scratch database")?;
        if !status.success() {
            bail!("psql could not create database {db_name} on {pg_admin}");
        }
        let base = pg_admin.rsplit_once('/').map_or(pg_admin, |(b, _)| b);
        let db_url = format!("{base}/{db_name}");
        let namespace = format!("bench-elastic-{}", uuid::Uuid::new_v4().simple());
        let text = format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\nprefetch = {prefetch}\n\n\
             [database]\nurl = {db_url:?}\n\n\
             [bus]\nkind = \"rabbitmq\"\nurl = {amqp:?}\nnamespace = {namespace:?}\nqueue_kind = \"classic\"\n\n\
             [storage]\nkind = \"local\"\nroot = {blobs:?}\n",
            data = dir.join("server").display().to_string(),
            blobs = dir.join("blobs").display().to_string(),
        );
        let config = dir.join("server.toml");
        std::fs::write(&config, text)?;
        Ok(ServerPool {
            dir: dir.to_owned(),
            config,
            namespace,
            db_url,
            bin: bin.to_owned(),
            db_name,
            pg_admin: pg_admin.to_owned(),
            amqp_admin: amqp_admin.to_owned(),
        })
    }

    /// The shared request queue's name (`<ns>.requests`).
    pub fn request_queue(&self) -> String {
        stacksync_bus::Topology::for_namespace(&self.namespace).requests
    }

    /// `stacksync admin user add`; returns the new user's id.
    pub fn add_user(&self, email: &str) -> anyhow::Result<uuid::Uuid> {
        let out = std::process::Command::new(&self.bin)
            .args(["admin", "--config"])
            .arg(&self.config)
            .args(["user", "add", email, "--password", PASSWORD])
            .env("RUST_LOG", "warn")
            .output()?;
        if !out.status.success() {
            bail!("admin user add: {}", String::from_utf8_lossy(&out.stderr));
        }
        let id = String::from_utf8_lossy(&out.stdout);
        id.trim()
            .parse()
            .with_context(|| format!("admin user add printed {id:?}, not a user id"))
    }

    /// Starts instance `name` in a task that ends once it is ready.
    pub fn spawn_start(&self, name: String) -> JoinHandle<anyhow::Result<PoolInstance>> {
        let (bin, config) = (self.bin.clone(), self.config.clone());
        let log = self.dir.join(format!("{name}.log"));
        tokio::spawn(async move { start(bin, config, name, log).await })
    }
}

async fn start(
    bin: PathBuf,
    config: PathBuf,
    name: String,
    log: PathBuf,
) -> anyhow::Result<PoolInstance> {
    let file = std::fs::File::create(&log)?;
    let mut child = Command::new(&bin)
        .args(["server", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .context("starting stacksync server")?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    let ready = tokio::time::timeout(START_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line == "ready" {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let _ = child.start_kill();
        bail!(
            "server {name} did not become ready; its log:\n{}",
            tail(&log, 40)
        );
    }
    // The server prints nothing more until `served N` at its stop, so
    // nothing needs draining meanwhile.
    Ok(PoolInstance {
        name,
        log,
        ready_at: Instant::now(),
        child,
        lines,
    })
}

impl Drop for ServerPool {
    fn drop(&mut self) {
        super::cluster::remove_broker_leftovers(&self.amqp_admin, &self.namespace);
        let _ = std::process::Command::new("psql")
            .arg(&self.pg_admin)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

/// The depth of a queue as RabbitMQ's management API reports it (what
/// KEDA's RabbitMQ scaler reads in its `QueueLength` mode): `messages` is
/// ready plus unacknowledged. The broker refreshes these figures once per
/// statistics interval (`collect_statistics_interval`, 5 s by default).
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueDepth {
    pub messages: u64,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u64,
}

/// Reads queue depths through the management API.
#[derive(Clone)]
pub struct QueueProbe {
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
}

impl QueueProbe {
    /// For queue `queue` of vhost `/`, through the API at `admin`
    /// (`http://user:password@host:port`).
    pub fn new(admin: &str, queue: &str) -> anyhow::Result<QueueProbe> {
        let bad = || format!("{admin:?} is not http://user:password@host:port");
        let (scheme, rest) = admin.split_once("://").with_context(bad)?;
        let (userinfo, host) = rest.split_once('@').with_context(bad)?;
        let (user, password) = userinfo.split_once(':').with_context(bad)?;
        // reqwest is built without a default TLS provider; plain HTTP needs
        // none, but building a client wants one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(QueueProbe {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            url: format!(
                "{scheme}://{}/api/queues/%2F/{queue}",
                host.trim_end_matches('/')
            ),
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    pub async fn read(&self) -> anyhow::Result<QueueDepth> {
        let body: serde_json::Value = self
            .http
            .get(&self.url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let n = |k: &str| body[k].as_u64().unwrap_or(0);
        Ok(QueueDepth {
            messages: n("messages"),
            ready: n("messages_ready"),
            unacked: n("messages_unacknowledged"),
            consumers: n("consumers"),
        })
    }
}
