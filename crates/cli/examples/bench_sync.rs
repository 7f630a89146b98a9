//! `scripts/bench sync`: the whole product, end to end, on PostgreSQL +
//! RabbitMQ + Swift, next to baselines measured in the same run:
//!
//! (a) first sync of 500 small files (1-64 KiB) and four 16 MiB files from
//!     client A until client B (a running daemon) holds every file, checked
//!     by BLAKE3, vs `rclone copy` of the same folder into a fresh container
//!     of the same Swift;
//! (b) latency from an atomic save of a small file on A to the new content
//!     on B, both running `stacksync sync`, over 100 edits, vs two
//!     loopback-only Syncthing instances syncing the same edits;
//! (c) bytes uploaded for a one-byte insertion into the middle of a synced
//!     64 MiB random file, divided by 64 MiB.
//!
//! Usage: bench_sync [--small N] [--edits N] [--rclone-transfers N] [--keep-logs DIR]
//!
//! Needs STACKSYNC_TEST_POSTGRES, STACKSYNC_TEST_AMQP and STACKSYNC_TEST_SWIFT
//! (`scripts/bench sync` sets them), `rclone` and `syncthing` on PATH, and
//! the `stacksync` binary at STACKSYNC_BIN or next to this example's folder
//! (`target/release/stacksync`). Every process it starts is killed, its
//! scratch database dropped, its Swift containers purged and its folders
//! removed, also on failure or Ctrl-C. The last line of stdout is one JSON
//! object.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const MIB: usize = 1024 * 1024;
const LARGE_FILE: usize = 16 * MIB;
const LARGE_FILES: usize = 4;
const INSERT_FILE: usize = 64 * MIB;
/// How long one edit may take to reach the other side before it counts as missed.
const EDIT_DEADLINE: Duration = Duration::from_secs(20);
/// How long anything else (a start-up, a first sync) may take.
const DEADLINE: Duration = Duration::from_secs(300);
/// Syncthing's folder id and our rclone remote's name.
const FOLDER_ID: &str = "bench";
const RCLONE_REMOTE: &str = "stbench";

struct Args {
    small: usize,
    edits: usize,
    rclone_transfers: Option<usize>,
    keep_logs: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        small: 500,
        edits: 100,
        rclone_transfers: None,
        keep_logs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--small" => args.small = value.parse().context("--small")?,
            "--edits" => args.edits = value.parse().context("--edits")?,
            "--rclone-transfers" => {
                args.rclone_transfers = Some(value.parse().context("--rclone-transfers")?)
            }
            "--keep-logs" => args.keep_logs = Some(PathBuf::from(value)),
            other => bail!(
                "unknown flag {other} (flags: --small N, --edits N, --rclone-transfers N, --keep-logs DIR)"
            ),
        }
    }
    if args.edits == 0 {
        bail!("--edits must be at least 1");
    }
    Ok(args)
}

/// The real backends, from the environment `scripts/bench sync` prepares.
struct Services {
    postgres: String,
    amqp: String,
    swift_auth: String,
}

impl Services {
    fn from_env() -> anyhow::Result<Services> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("{name} is not set: run this through `scripts/bench sync`")
                })
        };
        Ok(Services {
            postgres: var("STACKSYNC_TEST_POSTGRES")?,
            amqp: var("STACKSYNC_TEST_AMQP")?,
            swift_auth: var("STACKSYNC_TEST_SWIFT")?,
        })
    }

    /// `rclone` with a remote for the test Swift configured by environment
    /// variables (TempAuth, auth v1), so no rclone.conf is read or written.
    fn rclone(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("rclone");
        let key = |k: &str| format!("RCLONE_CONFIG_{}_{k}", RCLONE_REMOTE.to_uppercase());
        cmd.env(key("TYPE"), "swift")
            .env(key("USER"), "test:tester")
            .env(key("KEY"), "testing")
            .env(key("AUTH"), &self.swift_auth)
            .env(key("AUTH_VERSION"), "1")
            .env("RCLONE_CONFIG", "/dev/null");
        cmd
    }

    /// Deletes a container and every object in it (best effort).
    fn purge_container(&self, name: &str) {
        let _ = self
            .rclone()
            .args(["purge", &format!("{RCLONE_REMOTE}:{name}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The `stacksync` binary: STACKSYNC_BIN, or `../stacksync` from the
/// examples folder this bench runs from.
fn stacksync_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("STACKSYNC_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating this bench")?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("stacksync"))
        .context("this bench has no parent folder")?;
    if !bin.is_file() {
        bail!(
            "{} not found: build it first (`cargo build --release -p stacksync`) or set STACKSYNC_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

// ---------------------------------------------------------------- data ---

/// Reproducible incompressible bytes (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        for chunk in out.chunks_mut(8) {
            let b = self.next().to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        out
    }
}

/// Expected content of a folder: relative path -> (size, BLAKE3).
type Manifest = BTreeMap<String, (u64, blake3::Hash)>;

/// Writes the first-sync data set under `root`; returns its manifest.
fn write_data_set(root: &Path, small: usize, seed: u64) -> anyhow::Result<Manifest> {
    let mut rng = Rng::new(seed);
    let mut manifest = Manifest::new();
    let mut put = |rel: String, data: Vec<u8>| -> anyhow::Result<()> {
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().expect("a file under root has a parent"))?;
        std::fs::write(&path, &data).with_context(|| format!("writing {}", path.display()))?;
        manifest.insert(rel, (data.len() as u64, blake3::hash(&data)));
        Ok(())
    };
    for i in 0..small {
        let len = 1024 + rng.below(63 * 1024 + 1) as usize;
        put(
            format!("small/d{:02}/file{i:04}.bin", i % 20),
            rng.bytes(len),
        )?;
    }
    for i in 0..LARGE_FILES {
        put(format!("large/video{i}.bin"), rng.bytes(LARGE_FILE))?;
    }
    Ok(manifest)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Paths of `manifest` that `root` does not hold yet with the expected
/// content; checks sizes first and hashes only files of the right size.
fn missing(root: &Path, manifest: &Manifest, pending: &[String]) -> Vec<String> {
    pending
        .iter()
        .filter(|rel| {
            let (size, hash) = manifest[*rel];
            let path = root.join(rel);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() == size => {
                    std::fs::read(&path).ok().map(|b| blake3::hash(&b)) != Some(hash)
                }
                _ => true,
            }
        })
        .cloned()
        .collect()
}

/// Waits until `root` holds everything in `manifest`; returns when the
/// first file arrived and when the last did.
async fn wait_for_manifest(
    root: PathBuf,
    manifest: std::sync::Arc<Manifest>,
    started: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let mut pending: Vec<String> = manifest.keys().cloned().collect();
    let mut first = None;
    loop {
        let (r, m, p) = (root.clone(), manifest.clone(), pending.clone());
        let left = tokio::task::spawn_blocking(move || missing(&r, &m, &p)).await?;
        if first.is_none() && left.len() < manifest.len() {
            first = Some(started.elapsed());
        }
        if left.is_empty() {
            return Ok((first.unwrap_or_default(), started.elapsed()));
        }
        if started.elapsed() > DEADLINE {
            bail!(
                "{} of {} files did not reach {} within {DEADLINE:?} (first: {:?})",
                left.len(),
                manifest.len(),
                root.display(),
                left.first()
            );
        }
        pending = left;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// -------------------------------------------------------------- server ---

/// A `stacksync server` on PostgreSQL + RabbitMQ + Swift, in a scratch
/// folder and a scratch database that go away with it.
struct Server {
    dir: PathBuf,
    bin: PathBuf,
    config: PathBuf,
    url: String,
    process: Option<Child>,
    db_name: String,
    db_url: String,
    admin_url: String,
    swift: Services,
}

impl Server {
    async fn start(bin: &Path, services: &Services, root: &Path) -> anyhow::Result<Server> {
        let dir = root.join("stacksync");
        std::fs::create_dir_all(&dir)?;
        let db_name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
        let status = std::process::Command::new("psql")
            .arg(&services.postgres)
            .args(["-qc", &format!("CREATE DATABASE {db_name}")])
            .status()
            .context("running psql to create the scratch database")?;
        if !status.success() {
            bail!(
                "psql could not create database {db_name} on {}",
                services.postgres
            );
        }
        let base = services
            .postgres
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(&services.postgres);
        let db_url = format!("{base}/{db_name}");
        let mut server = Server {
            bin: bin.to_owned(),
            config: dir.join("server.toml"),
            url: String::new(),
            process: None,
            db_name,
            db_url,
            admin_url: services.postgres.clone(),
            swift: Services {
                postgres: services.postgres.clone(),
                amqp: services.amqp.clone(),
                swift_auth: services.swift_auth.clone(),
            },
            dir,
        };
        let ns = format!("bench-sync-{}", uuid::Uuid::new_v4().simple());
        let text = format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\n\n[database]\nurl = {db:?}\n\n\
             [bus]\nkind = \"rabbitmq\"\nurl = {amqp:?}\nnamespace = {ns:?}\nqueue_kind = \"classic\"\n\n\
             [storage]\nkind = \"swift\"\n\n[storage.swift]\nmax_concurrency = 16\n\n\
             [storage.swift.auth]\nkind = \"v1\"\nauth_url = {auth:?}\nuser = \"test:tester\"\nkey = \"testing\"\n",
            data = server.dir.join("server").display().to_string(),
            db = server.db_url,
            amqp = services.amqp,
            auth = services.swift_auth,
        );
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

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn add_user(&self, email: &str) -> anyhow::Result<()> {
        let out = std::process::Command::new(&self.bin)
            .args(["admin", "--config"])
            .arg(&self.config)
            .args(["user", "add", email, "--password", "bench-pw"])
            .args(["--quota", &(64u64 << 30).to_string()])
            .env("RUST_LOG", "warn")
            .output()?;
        if !out.status.success() {
            bail!("admin user add: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Sets up a client device with its own home and folder.
    async fn client(&self, name: &str, email: &str) -> anyhow::Result<Client> {
        let client = Client {
            bin: self.bin.clone(),
            name: name.to_owned(),
            home: self.dir.join(format!("{name}-home")),
            folder: self.dir.join(format!("{name}-folder")),
            daemon: None,
        };
        let out = client
            .command(&["setup", "--server", &self.url, "--email", email])
            .args(["--password", "bench-pw", "--device-name", name, "--dir"])
            .arg(&client.folder)
            .output()
            .await?;
        if !out.status.success() {
            bail!("setup of {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(client)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.start_kill();
        }
        // The workspaces' Swift containers, then the scratch database.
        if let Ok(out) = std::process::Command::new("psql")
            .arg(&self.db_url)
            .args(["-Atc", "SELECT container FROM workspaces"])
            .output()
        {
            for name in String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
            {
                self.swift.purge_container(name);
            }
        }
        let _ = std::process::Command::new("psql")
            .arg(&self.admin_url)
            .args([
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.db_name),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

/// One client device: a home (profile, state) and a synced folder.
struct Client {
    bin: PathBuf,
    name: String,
    home: PathBuf,
    folder: PathBuf,
    daemon: Option<Child>,
}

impl Client {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("STACKSYNC_HOME", &self.home)
            .env("STACKSYNC_NO_DESKTOP", "1")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        cmd
    }

    /// `sync --once --json`: its summary and how long it took.
    async fn sync_once(&self) -> anyhow::Result<(Duration, serde_json::Value)> {
        let started = Instant::now();
        let out = self.command(&["sync", "--once", "--json"]).output().await?;
        let took = started.elapsed();
        if !out.status.success() {
            bail!(
                "{}: sync --once failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .last()
            .context("sync --once --json printed nothing")?;
        let summary = serde_json::from_str(line).with_context(|| format!("summary {line:?}"))?;
        Ok((took, summary))
    }

    fn daemon_log_path(&self) -> PathBuf {
        self.home.with_extension("daemon.log")
    }

    fn start_daemon(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.daemon_log_path())?;
        let child = self
            .command(&["sync", "--quiet"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}'s daemon", self.name))?;
        self.daemon = Some(child);
        Ok(())
    }

    /// SIGTERM, then checks the daemon exits cleanly.
    async fn stop_daemon(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.daemon.take() else {
            return Ok(());
        };
        let pid = child.id().context("the daemon already exited")?.to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .with_context(|| format!("{}'s daemon ignored SIGTERM for 20 s", self.name))??;
        if !status.success() {
            bail!(
                "{}'s daemon exited with {status}; log tail:\n{}",
                self.name,
                tail(&self.daemon_log_path(), 30)
            );
        }
        Ok(())
    }

    /// Waits until the running daemon reports the whole folder synced.
    async fn wait_idle(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let out = self.command(&["status", "--json"]).output().await?;
            if out.status.success() {
                let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                if s["daemon_running"] == true && s["target"]["status"] == "synced" {
                    return Ok(());
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "{}'s daemon did not report synced within 60 s; log tail:\n{}",
                    self.name,
                    tail(&self.daemon_log_path(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ------------------------------------------------------------------ cpu ---

/// CPU seconds spent so far by the parts of the system, read from /proc
/// (Linux, USER_HZ = 100), so a phase's figures say where the time went.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// Children of this bench that exited and were reaped (the `sync --once` runs).
    reaped: f64,
    server: f64,
    daemon: f64,
    swift: f64,
    /// Busy and total time of the whole machine, all cores.
    machine_busy: f64,
    machine_total: f64,
}

/// utime + stime (with `children`: cutime + cstime) of a process.
fn proc_cpu(pid: &str, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command name: state is field 3 (index 0 here); utime is 14.
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let first = if children { 13 } else { 11 };
    (fields.get(first).unwrap_or(&0.0) + fields.get(first + 1).unwrap_or(&0.0)) / 100.0
}

fn swift_pids() -> Vec<String> {
    let dir =
        std::env::var("STACKSYNC_SWIFT_DIR").unwrap_or_else(|_| "/tmp/stacksync-swift".into());
    std::fs::read_dir(Path::new(&dir).join("run"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .map(|p| p.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Cpu {
    fn now(server: Option<u32>, daemon: Option<u32>) -> Cpu {
        let (machine_busy, machine_total) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_owned();
                let v: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                let total: f64 = v.iter().take(8).sum();
                let idle = v.get(3)? + v.get(4)?;
                Some(((total - idle) / 100.0, total / 100.0))
            })
            .unwrap_or_default();
        Cpu {
            reaped: proc_cpu("self", true),
            server: server.map_or(0.0, |p| proc_cpu(&p.to_string(), false)),
            daemon: daemon.map_or(0.0, |p| proc_cpu(&p.to_string(), false)),
            swift: swift_pids().iter().map(|p| proc_cpu(p, false)).sum(),
            machine_busy,
            machine_total,
        }
    }

    /// "CPU: ..." for the interval since `before`.
    fn since(&self, before: &Cpu, daemon: &str) -> String {
        let total = self.machine_total - before.machine_total;
        format!(
            "CPU s: `sync --once` {:.2}, {daemon} {:.2}, server {:.2}, Swift {:.2}; machine {:.0}% busy",
            self.reaped - before.reaped,
            self.daemon - before.daemon,
            self.server - before.server,
            self.swift - before.swift,
            if total > 0.0 {
                100.0 * (self.machine_busy - before.machine_busy) / total
            } else {
                0.0
            },
        )
    }
}

// ------------------------------------------------------------ syncthing ---

/// A minimal HTTP/1.0 exchange with Syncthing's REST API on loopback.
fn rest(port: u16, key: &str, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let (head, payload) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{method} {path}: malformed response {response:?}"))?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if !code.starts_with('2') {
        bail!("{method} {path}: HTTP {code}: {}", payload.trim());
    }
    Ok(payload.to_owned())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One Syncthing instance with its own home, folder and loopback ports.
struct Syncthing {
    home: PathBuf,
    folder: PathBuf,
    gui: u16,
    listen: u16,
    key: String,
    id: String,
    process: Option<Child>,
}

impl Syncthing {
    /// Generates keys and config, makes it loopback-only before its first
    /// start (no discovery, relays, NAT, upgrades, usage or crash reports),
    /// starts it and reads its device id.
    async fn start(root: &Path, name: &str) -> anyhow::Result<Syncthing> {
        let home = root.join(format!("{name}-home"));
        let folder = root.join(format!("{name}-folder"));
        std::fs::create_dir_all(folder.join(".stfolder"))?;
        let out = std::process::Command::new("syncthing")
            .args(["generate", "--no-default-folder", "--home"])
            .arg(&home)
            .output()
            .context("running syncthing (apt-get install syncthing)")?;
        if !out.status.success() {
            bail!(
                "syncthing generate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let (gui, listen) = (free_port()?, free_port()?);
        let config_path = home.join("config.xml");
        let mut config = std::fs::read_to_string(&config_path)?;
        for (from, to) in [
            (
                "<listenAddress>default</listenAddress>".to_owned(),
                format!("<listenAddress>tcp://127.0.0.1:{listen}</listenAddress>"),
            ),
            (
                "<globalAnnounceEnabled>true".into(),
                "<globalAnnounceEnabled>false".into(),
            ),
            (
                "<localAnnounceEnabled>true".into(),
                "<localAnnounceEnabled>false".into(),
            ),
            ("<relaysEnabled>true".into(), "<relaysEnabled>false".into()),
            ("<natEnabled>true".into(), "<natEnabled>false".into()),
            ("<startBrowser>true".into(), "<startBrowser>false".into()),
            (
                "<crashReportingEnabled>true".into(),
                "<crashReportingEnabled>false".into(),
            ),
            ("<urAccepted>0".into(), "<urAccepted>-1".into()),
            (
                "<autoUpgradeIntervalH>12".into(),
                "<autoUpgradeIntervalH>0".into(),
            ),
        ] {
            if !config.contains(&from) {
                bail!(
                    "syncthing's generated config.xml has no {from:?}; this bench knows 1.19's format"
                );
            }
            config = config.replace(&from, &to);
        }
        std::fs::write(&config_path, &config)?;
        let key = config
            .split_once("<apikey>")
            .and_then(|(_, rest)| rest.split_once("</apikey>"))
            .map(|(k, _)| k.to_owned())
            .context("no <apikey> in syncthing's config.xml")?;
        let log = std::fs::File::create(home.join("syncthing.log"))?;
        let process = Command::new("syncthing")
            .args([
                "serve",
                "--no-browser",
                "--no-restart",
                "--no-upgrade",
                "--home",
            ])
            .arg(&home)
            .arg(format!("--gui-address=http://127.0.0.1:{gui}"))
            .env("STNODEFAULTFOLDER", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting syncthing")?;
        let mut st = Syncthing {
            home,
            folder,
            gui,
            listen,
            key,
            id: String::new(),
            process: Some(process),
        };
        let started = Instant::now();
        let status = loop {
            match st.rest("GET", "/rest/system/status", "") {
                Ok(s) => break s,
                Err(e) if started.elapsed() > Duration::from_secs(60) => {
                    bail!(
                        "syncthing {name} did not answer: {e}; log:\n{}",
                        st.log_tail()
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let status: serde_json::Value = serde_json::from_str(&status)?;
        st.id = status["myID"]
            .as_str()
            .context("no myID in /rest/system/status")?
            .to_owned();
        Ok(st)
    }

    fn rest(&self, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
        rest(self.gui, &self.key, method, path, body)
    }

    fn log_tail(&self) -> String {
        tail(&self.home.join("syncthing.log"), 30)
    }

    /// Adds `peer` at its static loopback address and shares the folder with
    /// it, watcher on with `delay_s`; returns the delay Syncthing stored.
    fn pair_with(&self, peer: &Syncthing, delay_s: u64) -> anyhow::Result<u64> {
        let device = serde_json::json!({
            "deviceID": peer.id,
            "name": "peer",
            "addresses": [format!("tcp://127.0.0.1:{}", peer.listen)],
            "autoAcceptFolders": false,
        });
        self.rest("POST", "/rest/config/devices", &device.to_string())?;
        let folder = serde_json::json!({
            "id": FOLDER_ID,
            "label": FOLDER_ID,
            "path": self.folder,
            "type": "sendreceive",
            "rescanIntervalS": 3600,
            "fsWatcherEnabled": true,
            "fsWatcherDelayS": delay_s,
            "devices": [{"deviceID": self.id}, {"deviceID": peer.id}],
        });
        self.rest("POST", "/rest/config/folders", &folder.to_string())?;
        let stored: serde_json::Value = serde_json::from_str(&self.rest(
            "GET",
            &format!("/rest/config/folders/{FOLDER_ID}"),
            "",
        )?)?;
        stored["fsWatcherDelayS"]
            .as_u64()
            .context("no fsWatcherDelayS in the folder's config")
    }

    fn connected_to(&self, peer: &Syncthing) -> bool {
        self.rest("GET", "/rest/system/connections", "")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| v["connections"][&peer.id]["connected"] == true)
    }

    fn folder_idle(&self) -> bool {
        self.rest("GET", &format!("/rest/db/status?folder={FOLDER_ID}"), "")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| v["state"] == "idle")
    }

    fn stop(&mut self) {
        let _ = self.rest("POST", "/rest/system/shutdown", "");
        if let Some(mut p) = self.process.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = p.start_kill();
        }
    }
}

impl Drop for Syncthing {
    fn drop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.start_kill();
        }
    }
}

// -------------------------------------------------------------- latency ---

/// Save-to-arrival latencies; a missed edit counts as [`EDIT_DEADLINE`]
/// and is listed in `missed` by number.
struct Latencies {
    samples: Vec<Duration>,
    missed: Vec<usize>,
}

/// Saves a small file `edits` times in `from` (atomically, like an editor)
/// and times each until `to` holds the new content, polled every 2 ms;
/// waits `gap` between edits.
async fn measure_edits(
    from: &Path,
    to: &Path,
    scratch: &Path,
    edits: usize,
    seed: u64,
    gap: Duration,
) -> anyhow::Result<Latencies> {
    const REL: &str = "notes/edited.txt";
    std::fs::create_dir_all(from.join("notes"))?;
    let mut rng = Rng::new(seed);
    let mut out = Latencies {
        samples: Vec::with_capacity(edits),
        missed: Vec::new(),
    };
    // Edit 0 is the warm-up (it creates the file and its folder): not counted.
    for i in 0..=edits {
        let mut body = format!("edit {i}\n").into_bytes();
        let len = 256 + rng.below(3840) as usize;
        body.extend(rng.bytes(len / 2).iter().flat_map(|b| {
            let hex = b"0123456789abcdef";
            [hex[(b >> 4) as usize], hex[(b & 15) as usize]]
        }));
        // An editor's atomic save: write elsewhere, then rename into place.
        let tmp = scratch.join("edit.tmp");
        std::fs::write(&tmp, &body)?;
        let started = Instant::now();
        std::fs::rename(&tmp, from.join(REL))?;
        let target = to.join(REL);
        let arrived = loop {
            if std::fs::read(&target).ok().as_deref() == Some(&body[..]) {
                break Some(started.elapsed());
            }
            if started.elapsed() > EDIT_DEADLINE {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if i == 0 {
            if arrived.is_none() {
                bail!("the warm-up edit did not arrive within {EDIT_DEADLINE:?}");
            }
        } else {
            match arrived {
                Some(d) => out.samples.push(d),
                None => {
                    out.missed.push(i);
                    out.samples.push(EDIT_DEADLINE);
                }
            }
        }
        tokio::time::sleep(gap).await;
    }
    Ok(out)
}

/// Nearest-rank percentile in milliseconds.
fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// How many samples fall in each latency band.
fn histogram(samples: &[Duration]) -> String {
    let bands = [50u64, 100, 150, 200, 300, 500, 1000, 2000];
    let mut counts = vec![0usize; bands.len() + 1];
    for d in samples {
        let ms = d.as_millis() as u64;
        counts[bands.iter().position(|b| ms < *b).unwrap_or(bands.len())] += 1;
    }
    let mut out = Vec::new();
    let mut lower = 0;
    for (i, c) in counts.iter().enumerate() {
        let label = match bands.get(i) {
            Some(b) => format!("{lower}-{b} ms"),
            None => format!(">= {lower} ms"),
        };
        if *c > 0 {
            out.push(format!("{label}: {c}"));
        }
        lower = bands.get(i).copied().unwrap_or(lower);
    }
    out.join(", ")
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

// ---------------------------------------------------------------- main ---

struct Figures {
    first_sync_s: f64,
    rclone_s: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    syncthing_p50_ms: f64,
    syncthing_p99_ms: f64,
    insert_ratio: f64,
}

async fn rclone_copy(
    services: &Services,
    src: &Path,
    files: usize,
    transfers: Option<usize>,
) -> anyhow::Result<f64> {
    let container = format!("bench-sync-rclone-{}", uuid::Uuid::new_v4().simple());
    let dest = format!("{RCLONE_REMOTE}:{container}");
    let mut cmd = services.rclone();
    cmd.arg("copy").arg(src).arg(&dest);
    if let Some(t) = transfers {
        cmd.args(["--transfers", &t.to_string()]);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let secs = started.elapsed().as_secs_f64();
    let stored = services
        .rclone()
        .args(["lsf", "-R", "--files-only", &dest])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count());
    services.purge_container(&container);
    if !out.status.success() {
        bail!(
            "rclone copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match stored {
        Ok(n) if n == files => Ok(secs),
        Ok(n) => bail!("rclone stored {n} objects, expected {files}"),
        Err(e) => bail!("rclone lsf: {e}"),
    }
}

/// Runs the three measurements with every file under `root`; `logs`
/// collects the log files of the processes it starts.
async fn run(
    args: &Args,
    bin: &Path,
    services: &Services,
    root: &Path,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<Figures> {
    let src = root.join("source");
    let scratch = root.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let manifest = std::sync::Arc::new(write_data_set(&src, args.small, 7)?);
    let total: u64 = manifest.values().map(|(s, _)| s).sum();
    println!(
        "data set: {} small files (1-64 KiB) + {LARGE_FILES} x 16 MiB = {} files, {:.1} MiB",
        args.small,
        manifest.len(),
        total as f64 / MIB as f64
    );

    let rclone_s = rclone_copy(services, &src, manifest.len(), args.rclone_transfers).await?;
    let transfers = args
        .rclone_transfers
        .map_or("default --transfers 4, --checkers 8".to_owned(), |t| {
            format!("--transfers {t}")
        });
    println!(
        "(a) rclone copy ({transfers}) into a fresh Swift container: {rclone_s:.2} s  (baseline)"
    );

    let server = Server::start(bin, services, root).await?;
    logs.push(("server".into(), server.log_path()));
    let email = "bench@example.org";
    server.add_user(email)?;
    let mut a = server.client("device-a", email).await?;
    let mut b = server.client("device-b", email).await?;
    logs.push(("device-a daemon".into(), a.daemon_log_path()));
    logs.push(("device-b daemon".into(), b.daemon_log_path()));

    let first_sync_s = first_sync(&server, &a, &mut b, &src, &manifest).await?;
    println!(
        "(a) first sync A -> B: {first_sync_s:.2} s vs rclone {rclone_s:.2} s = {:.2}x  (goal <= 0.70x)",
        first_sync_s / rclone_s
    );
    download_only(&server, email, &manifest).await?;

    let ours = daemon_latency(&mut a, &mut b, &scratch, args.edits).await?;
    let theirs = syncthing_latency(&scratch, args.edits, logs).await?;
    println!(
        "(b) ours vs Syncthing: p50 {:.2}x, p99 {:.2}x",
        ours.0 / theirs.0,
        ours.1 / theirs.1
    );

    let insert_ratio = one_byte_insert(&a, &b).await?;
    Ok(Figures {
        first_sync_s,
        rclone_s,
        latency_p50_ms: ours.0,
        latency_p99_ms: ours.1,
        syncthing_p50_ms: theirs.0,
        syncthing_p99_ms: theirs.1,
        insert_ratio,
    })
}

/// (a): A uploads the data set with `sync --once` while B's daemon
/// receives; returns the seconds until B holds every file.
async fn first_sync(
    server: &Server,
    a: &Client,
    b: &mut Client,
    src: &Path,
    manifest: &std::sync::Arc<Manifest>,
) -> anyhow::Result<f64> {
    b.start_daemon()?;
    b.wait_idle().await?;
    copy_tree(src, &a.folder)?;
    let server_pid = server.process.as_ref().and_then(Child::id);
    let b_pid = b.daemon.as_ref().and_then(Child::id);
    let cpu_start = Cpu::now(server_pid, b_pid);
    let started = Instant::now();
    let b_done = tokio::spawn(wait_for_manifest(
        b.folder.clone(),
        manifest.clone(),
        started,
    ));
    let (a_took, a_summary) = match a.sync_once().await {
        Ok(r) => r,
        Err(e) => {
            b_done.abort();
            return Err(e);
        }
    };
    let cpu_a_done = Cpu::now(server_pid, b_pid);
    let (b_first, b_last) = b_done.await??;
    let cpu_b_done = Cpu::now(server_pid, b_pid);
    println!(
        "(a) ours: A `sync --once` {:.2} s (uploaded {:.1} MiB in {} chunks in {} pack objects, {} deduplicated); \
         B's daemon had the first file at {:.2} s, all {} verified at {:.2} s ({:.2} s after A finished)",
        a_took.as_secs_f64(),
        a_summary["bytes_uploaded"].as_u64().unwrap_or(0) as f64 / MIB as f64,
        a_summary["chunks_uploaded"],
        a_summary["packs_uploaded"],
        a_summary["chunks_deduplicated"],
        b_first.as_secs_f64(),
        manifest.len(),
        b_last.as_secs_f64(),
        b_last.saturating_sub(a_took).as_secs_f64(),
    );
    println!(
        "    while A ran:               {}",
        cpu_a_done.since(&cpu_start, "B's daemon")
    );
    println!(
        "    after A, until B had all:  {}",
        cpu_b_done.since(&cpu_a_done, "B's daemon")
    );
    Ok(b_last.as_secs_f64())
}

/// Where the time goes on the receiving side alone: a fresh device C
/// downloads the synced workspace with `sync --once`.
async fn download_only(server: &Server, email: &str, manifest: &Manifest) -> anyhow::Result<()> {
    let c = server.client("device-c", email).await?;
    let server_pid = server.process.as_ref().and_then(Child::id);
    let cpu_start = Cpu::now(server_pid, None);
    let (took, summary) = c.sync_once().await?;
    let cpu_done = Cpu::now(server_pid, None);
    let all: Vec<String> = manifest.keys().cloned().collect();
    let left = missing(&c.folder, manifest, &all);
    if !left.is_empty() {
        bail!(
            "device C's `sync --once` left {} files missing or wrong (first: {})",
            left.len(),
            left[0]
        );
    }
    println!(
        "    download only: a fresh device C `sync --once` {:.2} s ({:.1} MiB in {} chunks)",
        took.as_secs_f64(),
        summary["bytes_downloaded"].as_u64().unwrap_or(0) as f64 / MIB as f64,
        summary["chunks_downloaded"],
    );
    println!(
        "    during C's download:       {}",
        cpu_done.since(&cpu_start, "(no daemon)")
    );
    Ok(())
}

/// Pause between two measured edits, so each is timed on a quiet system.
const EDIT_GAP: Duration = Duration::from_millis(100);

/// (b): edits on A's daemon until B's daemon has them; (p50, p99) in ms.
/// Stops both daemons (and checks they exit cleanly).
async fn daemon_latency(
    a: &mut Client,
    b: &mut Client,
    scratch: &Path,
    edits: usize,
) -> anyhow::Result<(f64, f64)> {
    a.start_daemon()?;
    a.wait_idle().await?;
    b.wait_idle().await?;
    let ours = measure_edits(&a.folder, &b.folder, scratch, edits, 11, EDIT_GAP).await?;
    let (p50, p99) = (
        percentile_ms(&ours.samples, 0.5),
        percentile_ms(&ours.samples, 0.99),
    );
    println!(
        "(b) ours, daemon A -> daemon B, {edits} atomic saves of 0.3-4 KiB: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms  (goal p50 < 150 ms)",
        percentile_ms(&ours.samples, 1.0)
    );
    println!("    ours: {}", histogram(&ours.samples));
    if !ours.missed.is_empty() {
        eprintln!(
            "WARNING: {} edit(s) did not reach B within {EDIT_DEADLINE:?} (counted as {EDIT_DEADLINE:?}): {:?}\n\
             A's daemon log tail:\n{}\nB's daemon log tail:\n{}",
            ours.missed.len(),
            ours.missed,
            tail(&a.daemon_log_path(), 40),
            tail(&b.daemon_log_path(), 40)
        );
    }
    a.stop_daemon().await?;
    b.stop_daemon().await?;
    Ok((p50, p99))
}

/// (b) baseline: the same edits between two loopback Syncthing instances;
/// (p50, p99) in ms.
async fn syncthing_latency(
    scratch: &Path,
    edits: usize,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<(f64, f64)> {
    let root = scratch.join("syncthing");
    let mut sa = Syncthing::start(&root, "a").await?;
    logs.push(("syncthing a".into(), sa.home.join("syncthing.log")));
    let mut sb = Syncthing::start(&root, "b").await?;
    logs.push(("syncthing b".into(), sb.home.join("syncthing.log")));
    // 1.19 stores fsWatcherDelayS as whole seconds and turns 0 into the
    // default 10: 1 s is the smallest delay it accepts.
    let delay = sa.pair_with(&sb, 1)?;
    sb.pair_with(&sa, 1)?;
    let started = Instant::now();
    while !(sa.connected_to(&sb) && sb.connected_to(&sa) && sa.folder_idle() && sb.folder_idle()) {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the Syncthing instances did not connect within 60 s; a:\n{}\nb:\n{}",
                sa.log_tail(),
                sb.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let theirs = measure_edits(&sa.folder, &sb.folder, scratch, edits, 11, EDIT_GAP).await?;
    sa.stop();
    sb.stop();
    let (p50, p99) = (
        percentile_ms(&theirs.samples, 0.5),
        percentile_ms(&theirs.samples, 0.99),
    );
    let missed = if theirs.missed.is_empty() {
        String::new()
    } else {
        format!(", {} edit(s) missed", theirs.missed.len())
    };
    println!(
        "(b) Syncthing {} (fsWatcherDelayS = {delay}, its minimum; loopback tcp, no discovery/relays/NAT): \
         p50 {p50:.1} ms, p99 {p99:.1} ms{missed}",
        syncthing_version(),
    );
    println!("    Syncthing: {}", histogram(&theirs.samples));
    Ok((p50, p99))
}

/// (c): uploaded bytes for a one-byte insertion into the middle of a
/// synced 64 MiB file, over 64 MiB; checks B gets the edited file.
async fn one_byte_insert(a: &Client, b: &Client) -> anyhow::Result<f64> {
    let mut big = Rng::new(13).bytes(INSERT_FILE);
    std::fs::create_dir_all(a.folder.join("insert"))?;
    std::fs::write(a.folder.join("insert/big.bin"), &big)?;
    let (first_took, _) = a.sync_once().await?;
    big.insert(INSERT_FILE / 2, 0x5a);
    std::fs::write(a.folder.join("insert/big.bin"), &big)?;
    let (insert_took, insert) = a.sync_once().await?;
    let uploaded = insert["bytes_uploaded"]
        .as_u64()
        .context("no bytes_uploaded in the summary")?;
    let ratio = uploaded as f64 / INSERT_FILE as f64;
    println!(
        "(c) one-byte insert into the middle of a synced 64 MiB file: {uploaded} bytes uploaded in {} chunk(s) \
         = {:.2}% of 64 MiB  (goal < 3%; first upload {:.2} s, re-sync {:.2} s)",
        insert["chunks_uploaded"],
        ratio * 100.0,
        first_took.as_secs_f64(),
        insert_took.as_secs_f64()
    );
    b.sync_once().await?;
    if std::fs::read(b.folder.join("insert/big.bin"))
        .ok()
        .as_deref()
        != Some(&big[..])
    {
        bail!("device B does not hold the edited 64 MiB file after `sync --once`");
    }
    Ok(ratio)
}

fn syncthing_version() -> String {
    std::process::Command::new("syncthing")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

/// Copies the logs into `dir` (when asked), before their folders go away.
fn keep_logs(dir: &Path, logs: &[(String, PathBuf)]) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    for (name, path) in logs {
        let _ = std::fs::copy(path, dir.join(format!("{}.log", name.replace(' ', "-"))));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let services = Services::from_env()?;
    let bin = stacksync_bin()?;
    println!(
        "sync bench: {} on PostgreSQL + RabbitMQ + Swift ({})",
        bin.display(),
        services.swift_auth
    );
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-sync-")
        .tempdir()?;
    let mut logs = Vec::new();
    // Ctrl-C drops the bench, whose guards kill every process it started,
    // drop the scratch database and purge its containers; the folder goes
    // when `root` is dropped, after the logs were read.
    let result = tokio::select! {
        r = run(&args, &bin, &services, root.path(), &mut logs) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(dir) = &args.keep_logs {
        keep_logs(dir, &logs);
        println!("logs copied to {}", dir.display());
    }
    if result.is_err() {
        for (name, path) in &logs {
            eprintln!("--- {name} log (last 20 lines) ---\n{}", tail(path, 20));
        }
    }
    let f = result?;
    let json = format!(
        "{{\"bench\":\"sync\",\"first_sync_s\":{},\"rclone_s\":{},\"ratio_to_rclone\":{},\"latency_p50_ms\":{},\"latency_p99_ms\":{},\"syncthing_p50_ms\":{},\"syncthing_p99_ms\":{},\"insert_1byte_uploaded_ratio\":{}}}",
        round(f.first_sync_s, 3),
        round(f.rclone_s, 3),
        round(f.first_sync_s / f.rclone_s, 3),
        round(f.latency_p50_ms, 1),
        round(f.latency_p99_ms, 1),
        round(f.syncthing_p50_ms, 1),
        round(f.syncthing_p99_ms, 1),
        round(f.insert_ratio, 5)
    );
    println!("{json}");
    Ok(())
}
