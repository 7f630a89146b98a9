//! One more Swift proxy of the running test Swift whose pipeline holds the
//! `stacksync_api` middleware (swift-middleware/), pointing at a bench's
//! server: `scripts/swift api-proxy UPSTREAM [--tls] --owner PID`, stopped
//! with `scripts/swift api-proxy --stop URL` when dropped (and by
//! `scripts/swift` itself at its next `api-proxy` should this process die
//! first). Its pid is read from Swift's state dir, for its memory figures.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swift")
}

/// A running api-proxy; stopped on drop.
pub struct SwiftApiProxy {
    /// `http://127.0.0.1:PORT` (`https://` with TLS), no trailing slash.
    pub url: String,
    /// The certificate to trust (TLS only).
    pub ca_file: Option<PathBuf>,
}

impl SwiftApiProxy {
    /// Starts a proxy forwarding API requests to `upstream` (a server's
    /// `http://127.0.0.1:PORT`) and waits until it answers (the script
    /// does).
    pub fn start(upstream: &str, tls: bool) -> anyhow::Result<SwiftApiProxy> {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(["api-proxy", upstream, "--owner"])
            .arg(std::process::id().to_string());
        if tls {
            cmd.arg("--tls");
        }
        let out = cmd.output().context("running scripts/swift api-proxy")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!(
                "scripts/swift api-proxy {upstream} failed ({}):\n{stderr}",
                out.status
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        let url = lines.next().unwrap_or_default().trim().to_owned();
        let scheme = if tls { "https" } else { "http" };
        if !url.starts_with(&format!("{scheme}://127.0.0.1:")) {
            bail!("scripts/swift api-proxy printed {stdout:?}:\n{stderr}");
        }
        let ca_file = if tls {
            let path = PathBuf::from(lines.next().unwrap_or_default().trim());
            if !path.is_file() {
                bail!("no certificate file in {stdout:?}");
            }
            Some(path)
        } else {
            None
        };
        Ok(SwiftApiProxy { url, ca_file })
    }

    /// The proxy's process id, from Swift's state dir (`run/api-proxy-PORT.pid`).
    pub fn pid(&self) -> Option<u32> {
        let port = self.url.rsplit(':').next()?;
        let dir =
            std::env::var("STACKSYNC_SWIFT_DIR").unwrap_or_else(|_| "/tmp/stacksync-swift".into());
        std::fs::read_to_string(Path::new(&dir).join(format!("run/api-proxy-{port}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for SwiftApiProxy {
    fn drop(&mut self) {
        match Command::new("bash")
            .arg(script())
            .args(["api-proxy", "--stop", &self.url])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "scripts/swift api-proxy --stop {} failed: {}",
                self.url,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("scripts/swift api-proxy --stop {}: {e}", self.url),
        }
    }
}
