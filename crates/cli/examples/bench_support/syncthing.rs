//! The peer-to-peer baseline: loopback-only Syncthing instances (no
//! discovery, relays, NAT, upgrades, usage or crash reports) driven through
//! their REST API.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::tail;

/// Syncthing's folder id.
const FOLDER_ID: &str = "bench";

/// A minimal HTTP/1.0 exchange with Syncthing's REST API on loopback.
pub fn rest(port: u16, key: &str, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
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

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One Syncthing instance with its own home, folder and loopback ports.
pub struct Syncthing {
    pub home: PathBuf,
    pub folder: PathBuf,
    gui: u16,
    listen: u16,
    key: String,
    pub id: String,
    process: Option<Child>,
}

impl Syncthing {
    /// Generates keys and config, makes it loopback-only before its first
    /// start (no discovery, relays, NAT, upgrades, usage or crash reports),
    /// starts it and reads its device id.
    pub async fn start(root: &Path, name: &str) -> anyhow::Result<Syncthing> {
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

    pub fn rest(&self, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
        rest(self.gui, &self.key, method, path, body)
    }

    pub fn log_tail(&self) -> String {
        tail(&self.home.join("syncthing.log"), 30)
    }

    /// Adds `peer` at its static loopback address and shares the folder with
    /// it, watcher on with `delay_s`; returns the delay Syncthing stored.
    pub fn pair_with(&self, peer: &Syncthing, delay_s: u64) -> anyhow::Result<u64> {
        self.add_device(peer)?;
        self.add_folder(peer, delay_s)
    }

    /// Adds `peer` at its static loopback address.
    pub fn add_device(&self, peer: &Syncthing) -> anyhow::Result<()> {
        let device = serde_json::json!({
            "deviceID": peer.id,
            "name": "peer",
            "addresses": [format!("tcp://127.0.0.1:{}", peer.listen)],
            "autoAcceptFolders": false,
        });
        self.rest("POST", "/rest/config/devices", &device.to_string())?;
        Ok(())
    }

    /// Shares the folder with `peer` (added before), watcher on with
    /// `delay_s`; returns the delay Syncthing stored.
    pub fn add_folder(&self, peer: &Syncthing, delay_s: u64) -> anyhow::Result<u64> {
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

    pub fn connected_to(&self, peer: &Syncthing) -> bool {
        self.rest("GET", "/rest/system/connections", "")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| v["connections"][&peer.id]["connected"] == true)
    }

    pub fn folder_idle(&self) -> bool {
        self.rest("GET", &format!("/rest/db/status?folder={FOLDER_ID}"), "")
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|v| v["state"] == "idle")
    }

    pub fn stop(&mut self) {
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

/// Waits until both instances are connected to each other and idle.
pub async fn wait_connected(
    a: &Syncthing,
    b: &Syncthing,
    deadline: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !(a.connected_to(b) && b.connected_to(a) && a.folder_idle() && b.folder_idle()) {
        if started.elapsed() > deadline {
            bail!(
                "the Syncthing instances did not connect within {deadline:?}; a:\n{}\nb:\n{}",
                a.log_tail(),
                b.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

pub fn syncthing_version() -> String {
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
