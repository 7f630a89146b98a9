//! End-to-end harness: a real `stacksync server` process (embedded default,
//! or PostgreSQL + RabbitMQ + Swift) and real client processes, each with
//! its own `STACKSYNC_HOME` and folder, driven through the CLI contract.

#![allow(dead_code)]

pub mod py_oauth;
pub mod swift_api_proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[allow(unused_macros)]
/// Runs a scenario as two tests: `NAME::embedded` and
/// `NAME::on_postgres_rabbitmq_swift` (the latter skipped outside CI when
/// the services' variables are unset, failing under CI).
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(Backend::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres_rabbitmq_swift() {
                let Some(backend) = Backend::full() else {
                    return;
                };
                super::$scenario(backend).await;
            }
        }
    };
}

pub const BIN: &str = env!("CARGO_BIN_EXE_stacksync");
const START_DEADLINE: Duration = Duration::from_secs(60);

/// Which backends the server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite, in-process bus, local directory (no services).
    Embedded,
    /// PostgreSQL + RabbitMQ + Swift, from the test environment.
    Full {
        postgres: String,
        amqp: String,
        swift_auth: String,
        /// The broker's management API with an administrator's
        /// credentials (`STACKSYNC_TEST_AMQP_ADMIN`, e.g.
        /// `http://guest:guest@127.0.0.1:15672`): the server then issues
        /// direct clients their own broker users.
        amqp_admin: String,
    },
}

fn env_or_skip(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} is not set under CI=true: the end-to-end tests on real backends must run")
        }
        _ => {
            eprintln!(
                "SKIP: {var} is not set; end-to-end test on real backends skipped (run scripts/test)"
            );
            None
        }
    }
}

impl Backend {
    /// The real backends, or `None` (after saying why) outside CI.
    pub fn full() -> Option<Backend> {
        Some(Backend::Full {
            postgres: env_or_skip("STACKSYNC_TEST_POSTGRES")?,
            amqp: env_or_skip("STACKSYNC_TEST_AMQP")?,
            swift_auth: env_or_skip("STACKSYNC_TEST_SWIFT")?,
            amqp_admin: env_or_skip("STACKSYNC_TEST_AMQP_ADMIN")?,
        })
    }
}

/// Splits `http://user:password@host:port` into the URL without
/// credentials, the user and the password.
pub fn split_admin_url(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").expect("an http:// URL");
    let (userinfo, host) = rest
        .split_once('@')
        .expect("STACKSYNC_TEST_AMQP_ADMIN carries user:password@");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    (
        format!("{scheme}://{host}"),
        user.to_owned(),
        password.to_owned(),
    )
}

/// A running server and its scratch folder.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    /// Broker URL, bus namespace and Swift auth URL (real backends only).
    pub direct: Option<(String, String, String)>,
    server: Child,
    db: Option<(String, String)>,
    /// The management API URL (with credentials) and the bus namespace,
    /// to withdraw what the server made on the broker.
    broker: Option<(String, String)>,
}

async fn create_database(admin_url: &str) -> (String, String) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(admin_url)
        .await
        .expect("PostgreSQL accepts connections");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("a scratch database can be created");
    let _ = admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(admin_url);
    (name.clone(), format!("{base}/{name}"))
}

impl Cluster {
    /// Starts a server on `backend` and waits until it is ready.
    pub async fn start(backend: &Backend) -> Cluster {
        Cluster::start_with(backend, "").await
    }

    /// [`Cluster::start`] with `extra` appended to the server's config file
    /// (for example a `[limits]` section).
    pub async fn start_with(backend: &Backend, extra: &str) -> Cluster {
        Cluster::start_logging(backend, extra, "warn").await
    }

    /// [`Cluster::start_with`], the server logging at `rust_log` into
    /// `server.log` in the scratch folder.
    pub async fn start_logging(backend: &Backend, extra: &str, rust_log: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("a scratch folder");
        let data = dir.path().join("server");
        let mut text = format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\n",
            data.display().to_string()
        );
        let mut db = None;
        let mut direct = None;
        let mut broker = None;
        if let Backend::Full {
            postgres,
            amqp,
            swift_auth,
            amqp_admin,
        } = backend
        {
            let (name, url) = create_database(postgres).await;
            let ns = format!("e2e-{}", uuid::Uuid::new_v4().simple());
            // The proxies' admin key, so that the server checks on the
            // cluster's admin /info that Swift encrypts at rest.
            let admin_key = std::env::var("STACKSYNC_TEST_SWIFT_ADMIN_KEY")
                .map(|k| format!("info_admin_key = {k:?}\n"))
                .unwrap_or_default();
            text.push_str(&format!(
                "\n[database]\nurl = {url:?}\n\n[bus]\nkind = \"rabbitmq\"\nurl = {amqp:?}\nnamespace = {ns:?}\nqueue_kind = \"classic\"\n\n\
                 [storage]\nkind = \"swift\"\n\n[storage.swift]\nmax_concurrency = 16\n{admin_key}\n[storage.swift.auth]\nkind = \"v1\"\nauth_url = {swift_auth:?}\nuser = \"test:tester\"\nkey = \"testing\"\n"
            ));
            let (admin_url, user, password) = split_admin_url(amqp_admin);
            // A short sweep, so that a test sees an ended session's broker
            // user withdrawn without waiting long.
            text.push_str(&format!(
                "\n[bus.admin]\nurl = {admin_url:?}\nuser = {user:?}\npassword = {password:?}\nsweep_interval_secs = 1\n"
            ));
            broker = Some((amqp_admin.clone(), ns.clone()));
            db = Some((name, postgres.clone()));
            direct = Some((amqp.clone(), ns, swift_auth.clone()));
        }
        text.push_str(extra);
        let config = dir.path().join("server.toml");
        std::fs::write(&config, text).expect("the config is writable");
        let (server, url) = spawn_server(&config, &dir.path().join("server.log"), rust_log).await;
        Cluster {
            config,
            url,
            direct,
            server,
            dir,
            db,
            broker,
        }
    }

    /// Stops the server process (SIGKILL) and waits for it.
    pub async fn kill_server(&mut self) {
        let _ = self.server.start_kill();
        let _ = self.server.wait().await;
    }

    /// Replaces the server by a new process on `config` (a variant of
    /// this cluster's, same data folder); `url` then names the new one.
    pub async fn restart_with_config(&mut self, config: &Path) {
        self.kill_server().await;
        let (server, url) =
            spawn_server(config, &self.dir.path().join("server2.log"), "warn").await;
        self.server = server;
        self.url = url;
    }

    /// Starts one more server process on this cluster's config (another
    /// instance of the service on the same backends), logging at
    /// `rust_log` into `<name>.log` in the scratch folder.
    pub async fn start_instance(&self, name: &str, rust_log: &str) -> Instance {
        let log = self.dir.path().join(format!("{name}.log"));
        let (child, url) = spawn_server(&self.config, &log, rust_log).await;
        Instance { child, url, log }
    }

    /// The server's process id (for reading its memory use).
    pub fn server_pid(&self) -> u32 {
        self.server.id().expect("the server is running")
    }

    /// The server's metadata database (real backends only).
    pub fn database_url(&self) -> Option<String> {
        let (name, admin) = self.db.as_ref()?;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
        Some(format!("{base}/{name}"))
    }

    /// Creates an account; returns its email.
    pub fn add_user(&self, email: &str, quota: Option<u64>) -> String {
        self.add_user_as(email, quota, self.direct.is_some())
    }

    /// An account with no storage user of its own (it reaches the service
    /// through the gateway only).
    pub fn add_gateway_user(&self, email: &str) -> String {
        self.add_user_as(email, None, false)
    }

    fn add_user_as(&self, email: &str, quota: Option<u64>, storage_user: bool) -> String {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["admin", "--config"])
            .arg(&self.config)
            .args(["user", "add", email, "--password", "secret-pw"])
            .env("RUST_LOG", "warn");
        if let Some(q) = quota {
            cmd.args(["--quota", &q.to_string()]);
        }
        if storage_user {
            // Its own Swift user, reaching the installation's account
            // (AUTH_test) through the container ACL the service grants.
            cmd.args(["--storage-user", "test2:tester2"]);
        }
        let out = cmd.output().expect("admin runs");
        assert!(
            out.status.success(),
            "admin user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        email.to_owned()
    }

    /// A client that reaches RabbitMQ and Swift directly (real backends
    /// only; the account's storage user is test2:tester2).
    pub fn direct_client(&self, name: &str, email: &str) -> Client {
        self.direct_client_with(name, email, &[])
    }

    /// [`Cluster::direct_client`], set up with `extra` arguments too.
    pub fn direct_client_with(&self, name: &str, email: &str, extra: &[&str]) -> Client {
        let (amqp, ns, swift) = self.direct.clone().expect("real backends");
        let client = Client::unconfigured(
            name,
            self.dir.path().join(format!("{name}-home")),
            self.dir.path().join(format!("{name}-folder")),
        );
        let out = client.run(
            &[
                "setup",
                "--transport",
                "direct",
                "--server",
                &self.url,
                "--broker",
                &amqp,
                "--namespace",
                &ns,
                "--queue-kind",
                "classic",
                "--swift-auth-url",
                &swift,
                "--swift-user",
                "test2:tester2",
                "--swift-key",
                "testing2",
                "--swift-account",
                "AUTH_test",
                "--email",
                email,
                "--password",
                "secret-pw",
                "--dir",
                client.folder.to_str().expect("utf-8"),
                "--device-name",
                name,
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        assert!(
            out.status.success(),
            "direct setup of {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        client
    }

    /// A client profile for `email` with its own home and folder.
    pub fn client(&self, name: &str, email: &str) -> Client {
        self.client_with(name, email, &[])
    }

    /// [`Cluster::client`], set up with `extra` arguments too.
    pub fn client_with(&self, name: &str, email: &str, extra: &[&str]) -> Client {
        let (client, out) = self.try_setup(name, email, extra);
        assert!(
            out.status.success(),
            "setup of {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        client
    }

    /// Runs `setup` for a new client `name` of `email` with `extra`
    /// arguments, whatever comes of it (for testing its refusals).
    pub fn try_setup(&self, name: &str, email: &str, extra: &[&str]) -> (Client, Output) {
        let client = Client {
            name: name.to_owned(),
            home: self.dir.path().join(format!("{name}-home")),
            folder: self.dir.path().join(format!("{name}-folder")),
            daemon: None,
        };
        let out = client.run(
            &[
                "setup",
                "--server",
                &self.url,
                "--email",
                email,
                "--password",
                "secret-pw",
                "--dir",
                client.folder.to_str().expect("utf-8 path"),
                "--device-name",
                name,
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        );
        (client, out)
    }
}

/// Starts `stacksync server --config CONFIG` (stderr into `log`) and waits
/// until it says it is ready; returns it and the URL it listens on. Its
/// stdout keeps being drained, so that it never blocks on a full pipe.
async fn spawn_server(config: &Path, log: &Path, rust_log: &str) -> (Child, String) {
    let log_file = std::fs::File::create(log).expect("a log file");
    let mut server = Command::new(BIN)
        .args(["server", "--config"])
        .arg(config)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .expect("the server starts");
    let mut lines = BufReader::new(server.stdout.take().expect("piped")).lines();
    let mut url = None;
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(START_DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(u) = line.strip_prefix("listening on ") {
                url = Some(u.trim().to_owned());
            }
            let done = line == "ready";
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    if ready != Ok(true) {
        let log = std::fs::read_to_string(log).unwrap_or_default();
        panic!("the server did not become ready; stdout {seen:?}; log:\n{log}");
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, url.expect("the server printed its address"))
}

/// A further server process of a cluster (killed when dropped).
pub struct Instance {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
}

impl Instance {
    /// Stops it at once (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Best effort: deletes the broker users and queues of namespace `ns`
/// (the per-session users and queues outlive the server process).
fn remove_broker_leftovers(admin: &str, ns: &str) {
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

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.server.start_kill();
        if let Some((admin, ns)) = self.broker.take() {
            remove_broker_leftovers(&admin, &ns);
        }
        if let Some((name, admin)) = self.db.take() {
            // Best effort: scripts/test also drops leftovers.
            let _ = std::process::Command::new("psql")
                .arg(&admin)
                .args([
                    "-qc",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ])
                .output();
        }
    }
}

/// One client: a home (profile + state) and a synced folder.
pub struct Client {
    pub name: String,
    pub home: PathBuf,
    pub folder: PathBuf,
    daemon: Option<Child>,
}

/// What `sync --once --json` reports.
#[derive(Debug, serde::Deserialize)]
pub struct SyncSummary {
    pub applied: u64,
    pub conflicts: u64,
    pub bytes_uploaded: u64,
    pub chunks_uploaded: u64,
    pub chunks_deduplicated: u64,
    pub bytes_downloaded: u64,
    pub chunks_downloaded: u64,
    pub deltas_uploaded: u64,
    pub deltas_downloaded: u64,
    pub refused: Vec<serde_json::Value>,
}

impl Client {
    /// A client whose home has no profile (for testing setup errors).
    pub fn unconfigured(name: &str, home: PathBuf, folder: PathBuf) -> Client {
        Client {
            name: name.to_owned(),
            home,
            folder,
            daemon: None,
        }
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(args)
            .env("STACKSYNC_HOME", &self.home)
            .env("STACKSYNC_NO_DESKTOP", "1")
            .env("RUST_LOG", "warn");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the client runs")
    }

    /// `sync --once --json`, which must succeed.
    pub fn sync(&self) -> SyncSummary {
        let out = self.run(&["sync", "--once", "--json"]);
        assert!(
            out.status.success(),
            "{}: sync --once failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().expect("a JSON summary");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("bad summary {line:?}: {e}"))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.folder.join(rel)
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, data).unwrap();
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel))
            .unwrap_or_else(|e| panic!("{}: reading {rel}: {e}", self.name))
    }

    /// Starts `stacksync sync` (the daemon).
    pub fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    /// Starts `stacksync sync` with `extra` arguments.
    pub fn start_daemon_with(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.home.with_extension("daemon.log")).unwrap();
        let child = Command::new(BIN)
            .arg("sync")
            .args(extra)
            .env("STACKSYNC_HOME", &self.home)
            .env("STACKSYNC_NO_DESKTOP", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the daemon starts");
        self.daemon = Some(child);
    }

    /// Stops the daemon with SIGTERM and checks it exits cleanly.
    pub async fn stop_daemon(&mut self) {
        let mut child = self.daemon.take().expect("a daemon runs");
        let pid = child.id().expect("running").to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .expect("the daemon exits after SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "{}: daemon exited with {status}; log:\n{}",
            self.name,
            self.daemon_log()
        );
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home.with_extension("daemon.log")).unwrap_or_default()
    }

    /// `status --json` for a path (or the whole folder).
    pub fn status(&self, path: Option<&str>) -> serde_json::Value {
        let mut args = vec!["status", "--json"];
        let p;
        if let Some(rel) = path {
            p = self.path(rel);
            args.insert(1, p.to_str().unwrap());
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status prints JSON")
    }
}

/// A folder's content: path -> BLAKE3 of the file (None for folders).
/// Engine temporaries are left out; they are not user content.
pub fn tree(root: &Path) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<String>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".stacksync-") {
            continue;
        }
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.insert(rel, None);
            walk(root, &path, out);
        } else if ft.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            out.insert(rel, Some(blake3::hash(&bytes).to_hex().to_string()));
        } else {
            out.insert(rel, Some("<special>".into()));
        }
    }
}

/// Asserts every client's folder holds the same tree; returns it.
pub fn assert_converged(clients: &[&Client]) -> BTreeMap<String, Option<String>> {
    let first = tree(&clients[0].folder);
    for c in &clients[1..] {
        let t = tree(&c.folder);
        if t != first {
            let only_a: Vec<_> = first
                .iter()
                .filter(|(k, v)| t.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            let only_b: Vec<_> = t
                .iter()
                .filter(|(k, v)| first.get(*k) != Some(v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "{} and {} differ: {:?} vs {:?}",
                clients[0].name, c.name, only_a, only_b
            );
        }
    }
    first
}

/// Pseudo-random bytes (incompressible, reproducible).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    out
}

/// Every regular file under `root` (recursively; unreadable folders are
/// skipped), for scans of what a server stores.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
