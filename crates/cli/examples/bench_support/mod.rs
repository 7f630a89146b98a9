//! What the end-to-end benches (`bench_sync`, `bench_scale`,
//! `bench_traffic`, `bench_load`, `bench_api`) share: the real `stacksync` binary as a
//! server (one, or several on one full stack: `cluster`) and as client
//! devices, their peers (Syncthing, rclone into Swift), data sets, latency
//! and CPU/memory figures from /proc, a byte-counting proxy, and the load
//! bench's in-process devices (`load_device`: the real engine over a real
//! direct connection, timed by `timed`) with its lost check (`load_check`),
//! and the API bench's signed REST API v2 client (`api_client`), plain
//! Swift client (`swift_http`) and Swift proxy with the `stacksync_api`
//! middleware (`swift_api_proxy`). The elasticity bench's pool of
//! instances started and stopped under load (`server_pool`, with the
//! request queue's depth from RabbitMQ's management API) and its simulated
//! devices on the bus (`rpc_load`).
//!
//! Each example includes this folder as a module of its own and uses only
//! part of it, so unused items are expected there (see the `allow` at each
//! `mod support;`).

pub mod api_client;
pub mod client;
pub mod cluster;
pub mod data;
pub mod framing;
pub mod latency;
pub mod load_check;
pub mod load_device;
pub mod load_report;
pub mod proc;
pub mod proxy;
pub mod rclone;
pub mod rpc_load;
pub mod server;
pub mod server_pool;
pub mod swift_api_proxy;
pub mod swift_http;
pub mod syncthing;
pub mod timed;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub const MIB: usize = 1024 * 1024;

/// The `stacksync` binary: STACKSYNC_BIN, or `../stacksync` from the
/// examples folder the bench runs from.
pub fn stacksync_bin() -> anyhow::Result<PathBuf> {
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

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// A figure for the final JSON line: the number, or `null` when it was not
/// measured.
pub fn json_number(x: Option<f64>, digits: i32) -> String {
    match x {
        Some(v) if v.is_finite() => round(v, digits).to_string(),
        _ => "null".to_owned(),
    }
}

/// Copies the logs into `dir`, before their folders go away.
pub fn keep_logs(dir: &Path, logs: &[(String, PathBuf)]) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    for (name, path) in logs {
        let _ = std::fs::copy(path, dir.join(format!("{}.log", name.replace(' ', "-"))));
    }
}
