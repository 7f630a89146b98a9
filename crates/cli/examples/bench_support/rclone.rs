//! The object-store baseline: `rclone copy` into a fresh container of the
//! test Swift (TempAuth, auth v1), configured by environment variables so
//! no rclone.conf is read or written.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// Our rclone remote's name.
const REMOTE: &str = "stbench";

/// The test Swift, as rclone sees it.
#[derive(Clone)]
pub struct Rclone {
    /// The TempAuth URL (STACKSYNC_TEST_SWIFT).
    pub swift_auth: String,
}

impl Rclone {
    /// From STACKSYNC_TEST_SWIFT (`scripts/swift env` prints it).
    pub fn from_env(bench: &str) -> anyhow::Result<Rclone> {
        let swift_auth = std::env::var("STACKSYNC_TEST_SWIFT")
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| {
                format!("STACKSYNC_TEST_SWIFT is not set: run this through `scripts/bench {bench}`")
            })?;
        Ok(Rclone { swift_auth })
    }

    /// `rclone` with our remote configured.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("rclone");
        let key = |k: &str| format!("RCLONE_CONFIG_{}_{k}", REMOTE.to_uppercase());
        cmd.env(key("TYPE"), "swift")
            .env(key("USER"), "test:tester")
            .env(key("KEY"), "testing")
            .env(key("AUTH"), &self.swift_auth)
            .env(key("AUTH_VERSION"), "1")
            .env("RCLONE_CONFIG", "/dev/null");
        cmd
    }

    /// Deletes a container and every object in it (best effort).
    pub fn purge_container(&self, name: &str) {
        let _ = self
            .command()
            .args(["purge", &format!("{REMOTE}:{name}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `rclone copy` of `src` into a fresh container (purged afterwards);
    /// the seconds it took, once the container is checked to hold `files`
    /// objects.
    pub async fn copy(
        &self,
        src: &Path,
        files: usize,
        transfers: Option<usize>,
    ) -> anyhow::Result<f64> {
        let container = format!("bench-rclone-{}", uuid::Uuid::new_v4().simple());
        let dest = format!("{REMOTE}:{container}");
        let mut cmd = self.command();
        cmd.arg("copy").arg(src).arg(&dest);
        if let Some(t) = transfers {
            cmd.args(["--transfers", &t.to_string()]);
        }
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
        let secs = started.elapsed().as_secs_f64();
        let stored = self
            .command()
            .args(["lsf", "-R", "--files-only", &dest])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count());
        self.purge_container(&container);
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
}
