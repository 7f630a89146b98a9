//! An OpenStack Swift proxy in front of a test's StackSync server: one more
//! `swift-proxy-server` of the running single-node Swift (same rings,
//! storage servers, memcached and TempAuth users as its main proxy) whose
//! pipeline holds the `stacksync_api` filter of `swift-middleware/`,
//! pointing at the server. `scripts/swift api-proxy UPSTREAM` starts it on
//! a free loopback port (with `--tls`, serving HTTPS with a self-signed
//! certificate for 127.0.0.1); dropping the [`SwiftApiProxy`] stops it
//! (and `scripts/swift` stops it at its next `api-proxy` or `stop` should
//! this process die first).
//!
//! Swift must be running (`scripts/swift start`, which `scripts/test`
//! does; `scripts/swift env` names it in `STACKSYNC_TEST_SWIFT` and its
//! state dir in `STACKSYNC_SWIFT_DIR`, which the script reads).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running api-proxy; stopped on drop.
pub struct SwiftApiProxy {
    url: String,
    ca_file: Option<PathBuf>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swift")
}

impl SwiftApiProxy {
    /// Whether Swift is there to put a proxy in front of: `true` when
    /// `STACKSYNC_TEST_SWIFT` is set; otherwise `false` after saying SKIP,
    /// except under `CI=true`, where it panics.
    pub fn available() -> bool {
        match std::env::var("STACKSYNC_TEST_SWIFT") {
            Ok(v) if !v.is_empty() => true,
            _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
                "STACKSYNC_TEST_SWIFT is not set under CI=true: the Swift proxy tests must run \
                 (start Swift with `scripts/swift start` and export `scripts/swift env`)"
            ),
            _ => {
                eprintln!(
                    "SKIP: STACKSYNC_TEST_SWIFT is not set; the test through a Swift proxy is \
                     skipped (run scripts/test, or `scripts/swift start` and \
                     `eval \"$(scripts/swift env)\"`)"
                );
                false
            }
        }
    }

    /// Starts a proxy whose `stacksync_api` filter forwards to `upstream`
    /// (a server's `http://127.0.0.1:PORT`) and waits until it answers.
    pub fn start(upstream: &str) -> SwiftApiProxy {
        SwiftApiProxy::launch(upstream, false)
    }

    /// [`SwiftApiProxy::start`], the proxy serving HTTPS (Swift's own TLS):
    /// the client then reaches it as it would a production Swift endpoint,
    /// and the server is told it used `https`. Trust [`Self::ca_file`].
    pub fn start_tls(upstream: &str) -> SwiftApiProxy {
        SwiftApiProxy::launch(upstream, true)
    }

    fn launch(upstream: &str, tls: bool) -> SwiftApiProxy {
        let mut cmd = Command::new("bash");
        cmd.arg(script())
            .args(["api-proxy", upstream, "--owner"])
            .arg(std::process::id().to_string());
        if tls {
            cmd.arg("--tls");
        }
        let out = cmd.output().expect("bash runs scripts/swift");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "scripts/swift api-proxy {upstream} failed ({}):\n{stderr}",
            out.status
        );
        // The URL, then (with --tls) the certificate's file.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        let url = lines.next().unwrap_or_default().trim().to_owned();
        let scheme = if tls { "https" } else { "http" };
        assert!(
            url.starts_with(&format!("{scheme}://127.0.0.1:")),
            "scripts/swift api-proxy printed {stdout:?}:\n{stderr}"
        );
        let ca_file = tls.then(|| {
            let path = PathBuf::from(lines.next().unwrap_or_default().trim());
            assert!(path.is_file(), "no certificate file in {stdout:?}");
            path
        });
        SwiftApiProxy { url, ca_file }
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS), without a trailing
    /// slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The certificate a client trusts to reach a TLS proxy.
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
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
