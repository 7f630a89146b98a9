//! Several `stacksync server` processes on one full stack: one scratch
//! PostgreSQL database, one RabbitMQ namespace (with the management API, so
//! that direct clients get broker users of their own) and the test Swift.
//! Any instance can be killed and another started on the same config
//! while clients keep going, as an operator would swap them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use stacksync_blobstore::{BlobStore, ContainerName, SwiftAuth, SwiftConfig, SwiftStore};
use stacksync_client::DirectConfig;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::proc::{peak_rss_mib, proc_cpu};
use super::server::{PASSWORD, ScratchDb, Services};
use super::tail;

/// The test Swift's storage user of every account (a user of its own,
/// reaching the installation's account through the container ACLs the
/// service grants), as the direct-transport tests set it up.
const STORAGE_USER: &str = "test2:tester2";
const STORAGE_KEY: &str = "testing2";
const SWIFT_ACCOUNT: &str = "AUTH_test";

/// One server process.
pub struct Instance {
    pub name: String,
    pub url: String,
    pub log: PathBuf,
    pid: u32,
    child: Option<Child>,
    /// The highest VmHWM seen, in MiB (read while it ran).
    peak_rss_mib: Option<f64>,
    /// CPU seconds it had used when last sampled.
    cpu_s: f64,
    /// The requests it says it served, printed when it stops gracefully.
    served: Arc<Mutex<Option<u64>>>,
}

impl Instance {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its peak resident memory so far (VmHWM only grows, so the last
    /// reading while it ran is its peak).
    pub fn peak_rss_mib(&mut self) -> Option<f64> {
        if self.child.is_some()
            && let Some(now) = peak_rss_mib(self.pid)
        {
            self.peak_rss_mib = Some(self.peak_rss_mib.map_or(now, |p| p.max(now)));
            self.cpu_s = self.cpu_s.max(proc_cpu(&self.pid.to_string(), false));
        }
        self.peak_rss_mib
    }

    /// The requests it served, if it stopped gracefully (not SIGKILLed).
    pub fn served(&self) -> Option<u64> {
        *self.served.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// CPU seconds it had used when last sampled (a killed instance keeps
    /// its reading from just before).
    pub fn cpu_s(&self) -> f64 {
        self.cpu_s
    }
}

/// The shared backends, the config every instance runs on, and the
/// instances started so far (killed ones included, for their figures).
pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub instances: Vec<Instance>,
    bin: PathBuf,
    amqp: String,
    namespace: String,
    swift_auth: String,
    /// The management API (with credentials), to withdraw the namespace's
    /// broker users and queues at the end.
    admin: String,
    db: ScratchDb,
}

impl Cluster {
    /// Creates the scratch database and writes the config; starts nothing.
    pub fn create(bin: &Path, services: &Services, dir: &Path) -> anyhow::Result<Cluster> {
        let admin = services.amqp_admin.clone().context(
            "STACKSYNC_TEST_AMQP_ADMIN is not set: run this through `scripts/bench` (the server issues direct clients broker users through RabbitMQ's management API)",
        )?;
        let (admin_url, admin_user, admin_password) = split_admin_url(&admin)?;
        std::fs::create_dir_all(dir)?;
        let db = ScratchDb::create(services)?;
        let namespace = format!("bench-load-{}", uuid::Uuid::new_v4().simple());
        let data = dir.join("server").display().to_string();
        let text = format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n\n[database]\nurl = {db:?}\n\n\
             [bus]\nkind = \"rabbitmq\"\nurl = {amqp:?}\nnamespace = {namespace:?}\nqueue_kind = \"classic\"\n\n\
             [bus.admin]\nurl = {admin_url:?}\nuser = {admin_user:?}\npassword = {admin_password:?}\n\n\
             [storage]\nkind = \"swift\"\n\n[storage.swift]\nmax_concurrency = 16\n\n\
             [storage.swift.auth]\nkind = \"v1\"\nauth_url = {auth:?}\nuser = \"test:tester\"\nkey = \"testing\"\n",
            db = db.url(),
            amqp = services.amqp,
            auth = services.swift.swift_auth,
        );
        let config = dir.join("server.toml");
        std::fs::write(&config, text)?;
        Ok(Cluster {
            dir: dir.to_owned(),
            config,
            instances: Vec::new(),
            bin: bin.to_owned(),
            amqp: services.amqp.clone(),
            namespace,
            swift_auth: services.swift.swift_auth.clone(),
            admin,
            db,
        })
    }

    /// Starts an instance named `name` and waits until it is ready;
    /// returns its index in `instances`.
    pub async fn start_instance(&mut self, name: &str) -> anyhow::Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut child = Command::new(&self.bin)
            .args(["server", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting stacksync server")?;
        let pid = child.id().context("the server has no process id")?;
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
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
            let _ = child.start_kill();
            bail!(
                "server {name} did not become ready; its log:\n{}",
                tail(&log, 40)
            );
        }
        // Keep draining stdout so the server never blocks on a full pipe,
        // and catch what it says it served when it stops.
        let served = Arc::new(Mutex::new(None));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line
                    .strip_prefix("served ")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
                {
                    *count.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
                }
            }
        });
        self.instances.push(Instance {
            name: name.to_owned(),
            url: url.context("the server printed no address")?,
            log,
            pid,
            child: Some(child),
            peak_rss_mib: None,
            cpu_s: 0.0,
            served,
        });
        Ok(self.instances.len() - 1)
    }

    /// SIGKILLs instance `i` (its peak memory read just before) and reaps it.
    pub async fn kill_instance(&mut self, i: usize) {
        let instance = &mut self.instances[i];
        instance.peak_rss_mib();
        if let Some(mut child) = instance.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Stops every running instance with SIGTERM (SIGKILL after 20 s) and
    /// waits for what it says it served.
    pub async fn stop_all(&mut self) {
        for i in &mut self.instances {
            i.peak_rss_mib();
            let Some(mut child) = i.child.take() else {
                continue;
            };
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &i.pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            // The stdout reader may still be on its last line.
            for _ in 0..50 {
                if i.served().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Reads every running instance's peak memory (call it now and then:
    /// a killed instance keeps the last reading).
    pub fn sample_rss(&mut self) {
        for i in &mut self.instances {
            i.peak_rss_mib();
        }
    }

    /// CPU seconds used by every instance so far (sampled now).
    pub fn cpu_s(&mut self) -> f64 {
        self.sample_rss();
        self.instances.iter().map(Instance::cpu_s).sum()
    }

    /// The URL of a running instance, taking turns by `n`.
    pub fn url(&self, n: usize) -> anyhow::Result<String> {
        let running: Vec<&Instance> = self.instances.iter().filter(|i| i.is_running()).collect();
        if running.is_empty() {
            bail!("no server instance is running");
        }
        Ok(running[n % running.len()].url.clone())
    }

    /// An account (password [`PASSWORD`]) whose storage user is the test
    /// Swift's `test2:tester2`, with a quota large enough for any bench.
    pub fn add_user(&self, email: &str) -> anyhow::Result<()> {
        let out = std::process::Command::new(&self.bin)
            .args(["admin", "--config"])
            .arg(&self.config)
            .args(["user", "add", email, "--password", PASSWORD])
            .args(["--quota", &(64u64 << 30).to_string()])
            .args(["--storage-user", STORAGE_USER])
            .env("RUST_LOG", "warn")
            .output()?;
        if !out.status.success() {
            bail!("admin user add: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// The direct transport's settings for an account of this cluster
    /// (what `stacksync setup --transport direct` stores in a profile).
    pub fn direct_config(&self) -> DirectConfig {
        let mut swift = SwiftConfig::new(SwiftAuth::V1 {
            auth_url: self.swift_auth.clone(),
            user: STORAGE_USER.to_owned(),
            key: STORAGE_KEY.to_owned(),
        });
        swift.account = Some(SWIFT_ACCOUNT.to_owned());
        let mut config = DirectConfig::new(self.amqp.clone(), self.namespace.clone(), swift);
        config.bus.queue_kind = stacksync_bus::QueueKind::Classic;
        config
    }

    /// Stops every instance and deletes the workspaces' Swift containers
    /// with everything in them (best effort; the database and the broker's
    /// leftovers go when the cluster is dropped).
    pub async fn shut_down(&mut self) {
        for i in 0..self.instances.len() {
            self.kill_instance(i).await;
        }
        let store = match SwiftStore::new(SwiftConfig::new(SwiftAuth::V1 {
            auth_url: self.swift_auth.clone(),
            user: "test:tester".into(),
            key: "testing".into(),
        })) {
            Ok(s) => s,
            Err(_) => return,
        };
        for name in self.db.containers() {
            let Ok(container) = ContainerName::new(&name) else {
                continue;
            };
            let Ok(objects) = store.list(&container).await else {
                continue;
            };
            futures::stream::iter(objects)
                .for_each_concurrent(16, |id| {
                    let (store, container) = (&store, &container);
                    async move {
                        let _ = store.delete(container, &id).await;
                    }
                })
                .await;
            // Swift updates a container's object count after the deletes,
            // so a delete right after them may still find it full.
            for _ in 0..20 {
                match store.delete_container(&container).await {
                    Err(e) if !e.is_not_found() => {
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                    _ => break,
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in &mut self.instances {
            if let Some(mut child) = i.child.take() {
                let _ = child.start_kill();
            }
        }
        remove_broker_leftovers(&self.admin, &self.namespace);
        // `db` drops after this: the database goes.
    }
}

/// Splits `http://user:password@host:port` into the URL without
/// credentials, the user and the password.
fn split_admin_url(url: &str) -> anyhow::Result<(String, String, String)> {
    let bad = || format!("{url:?} is not http://user:password@host:port");
    let (scheme, rest) = url.split_once("://").with_context(bad)?;
    let (userinfo, host) = rest.split_once('@').with_context(bad)?;
    let (user, password) = userinfo.split_once(':').with_context(bad)?;
    Ok((
        format!("{scheme}://{host}"),
        user.to_owned(),
        password.to_owned(),
    ))
}

/// Best effort: deletes the broker users, queues and exchanges of
/// namespace `ns` (the per-session users and queues outlive the servers).
pub fn remove_broker_leftovers(admin: &str, ns: &str) {
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sf", "--max-time", "10"])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| o.stdout)
    };
    let names = |path: &str| -> Vec<String> {
        let Some(body) = curl(&[&format!("{admin}/api/{path}")]) else {
            return Vec::new();
        };
        let list: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        list.iter()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .filter(|name| name.starts_with(&format!("{ns}.")))
            .collect()
    };
    for user in names("users") {
        curl(&["-X", "DELETE", &format!("{admin}/api/users/{user}")]);
    }
    for queue in names("queues/%2F") {
        curl(&["-X", "DELETE", &format!("{admin}/api/queues/%2F/{queue}")]);
    }
    for exchange in names("exchanges/%2F") {
        curl(&[
            "-X",
            "DELETE",
            &format!("{admin}/api/exchanges/%2F/{exchange}"),
        ]);
    }
}
