//! A client device driven through the real binary: `setup`, `sync --once
//! --json`, the `sync` daemon and `status --json`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::server::PASSWORD;
use super::tail;

/// What the client's watchdog logs when it gives up on a sync round that
/// made no progress (`transfer::watchdog`, `app::watched_sync`).
pub const STALL_MESSAGE: &str = "sync round abandoned";

/// One client device: a home (profile, state) and a synced folder.
pub struct Client {
    pub bin: PathBuf,
    pub name: String,
    pub home: PathBuf,
    pub folder: PathBuf,
    pub daemon: Option<Child>,
    /// Extra environment for every command (e.g. STACKSYNC_STALL_SECS).
    pub env: Vec<(String, String)>,
}

/// How one `sync --once` ended, whatever happened: benches that report
/// stalls keep going after one.
pub struct SyncOutcome {
    pub took: Duration,
    /// None when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stderr: String,
    /// The `--json` summary, when it printed one.
    pub summary: Option<serde_json::Value>,
}

impl SyncOutcome {
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success()) && self.summary.is_some()
    }

    /// Why this run counts as a stall (failed, killed at the deadline, or
    /// a round the watchdog abandoned), or None.
    pub fn stall(&self) -> Option<String> {
        match self.status {
            None => Some(format!("killed at the deadline after {:?}", self.took)),
            Some(s) if !s.success() => {
                Some(format!("failed ({s}): {}", last_lines(&self.stderr, 5)))
            }
            Some(_) if self.stderr.contains(STALL_MESSAGE) => Some(format!(
                "the watchdog abandoned a round: {}",
                self.stderr
                    .lines()
                    .filter(|l| l.contains(STALL_MESSAGE))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
            Some(_) if self.summary.is_none() => Some("succeeded but printed no summary".into()),
            Some(_) => None,
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].join(" | ")
}

impl Client {
    /// A device whose home and folder live in `dir`; not set up yet.
    pub fn new(bin: &Path, name: &str, dir: &Path) -> Client {
        Client {
            bin: bin.to_owned(),
            name: name.to_owned(),
            home: dir.join(format!("{name}-home")),
            folder: dir.join(format!("{name}-folder")),
            daemon: None,
            env: Vec::new(),
        }
    }

    /// `stacksync setup` against the server at `url`.
    pub async fn setup(&self, url: &str, email: &str) -> anyhow::Result<()> {
        self.setup_with(url, email, &[]).await
    }

    /// `stacksync setup` against the server at `url` with `extra` flags
    /// (`--encrypted`, `--passphrase P`, ...).
    pub async fn setup_with(&self, url: &str, email: &str, extra: &[&str]) -> anyhow::Result<()> {
        let out = self
            .command(&["setup", "--server", url, "--email", email])
            .args(["--password", PASSWORD, "--device-name", &self.name, "--dir"])
            .arg(&self.folder)
            .args(extra)
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "setup of {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("STACKSYNC_HOME", &self.home)
            .env("STACKSYNC_NO_DESKTOP", "1")
            .env("RUST_LOG", "warn")
            // A passphrase in the bench's own environment would unlock (or
            // create) keys on devices meant to be plain: only `--passphrase`
            // (or `env`) says which devices have one.
            .env_remove("STACKSYNC_PASSPHRASE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        cmd
    }

    /// `sync --once --json`: its summary and how long it took; an error
    /// when it fails.
    pub async fn sync_once(&self) -> anyhow::Result<(Duration, serde_json::Value)> {
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

    /// `sync --once --json`, killed after `deadline`; how it ended, never
    /// an error for what the run itself did.
    pub async fn sync_once_within(&self, deadline: Duration) -> anyhow::Result<SyncOutcome> {
        let started = Instant::now();
        let child = self
            .command(&["sync", "--once", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}'s sync --once", self.name))?;
        // On timeout the future, and with it the child, is dropped: killed.
        match tokio::time::timeout(deadline, child.wait_with_output()).await {
            Ok(out) => {
                let out = out?;
                let summary = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str(l).ok());
                Ok(SyncOutcome {
                    took: started.elapsed(),
                    status: Some(out.status),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    summary,
                })
            }
            Err(_) => Ok(SyncOutcome {
                took: started.elapsed(),
                status: None,
                stderr: String::new(),
                summary: None,
            }),
        }
    }

    pub fn daemon_log_path(&self) -> PathBuf {
        self.home.with_extension("daemon.log")
    }

    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(Child::id)
    }

    pub fn start_daemon(&mut self) -> anyhow::Result<()> {
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
    pub async fn stop_daemon(&mut self) -> anyhow::Result<()> {
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

    /// Waits (60 s at most) until the running daemon reports the whole
    /// folder synced.
    pub async fn wait_idle(&self) -> anyhow::Result<()> {
        self.wait_idle_within(Duration::from_secs(60)).await
    }

    /// Waits until the running daemon reports the whole folder synced.
    pub async fn wait_idle_within(&self, deadline: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let out = self.command(&["status", "--json"]).output().await?;
            if out.status.success() {
                let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
                if s["daemon_running"] == true && s["target"]["status"] == "synced" {
                    return Ok(());
                }
            }
            if started.elapsed() > deadline {
                bail!(
                    "{}'s daemon did not report synced within {deadline:?}; log tail:\n{}",
                    self.name,
                    tail(&self.daemon_log_path(), 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many times the daemon's log says the watchdog abandoned a round.
    pub fn daemon_stalls(&self) -> usize {
        std::fs::read_to_string(self.daemon_log_path())
            .map(|t| t.matches(STALL_MESSAGE).count())
            .unwrap_or(0)
    }
}
