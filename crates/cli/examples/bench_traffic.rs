//! `scripts/bench traffic`: bytes on the wire per user action (issue 18),
//! measured at a loopback TCP proxy between each client device and the
//! embedded default server: every request and response with its headers,
//! WebSocket upgrades and frames, in both directions (TCP payload: no
//! TCP/IP headers; plain HTTP on loopback, so no TLS).
//!
//! Each case puts something new on device A and runs `sync --once`; only
//! the bytes of that run count (from its start until its connections
//! closed). Device B, behind its own proxy, then fetches it with `sync
//! --once` (shown apart, and checked). Cases: a 1-byte file, 1 KB, 1 MB
//! and 10 MB random files, a batch of 100 files of 1 KB, and one byte
//! overwritten in the middle of the synced 10 MB file. `setup` is counted
//! apart, as is a `sync --once` with nothing to do (what any run costs).
//! KB and MB here are 1024 and 1024^2 bytes.
//!
//! Published figures of Li et al., "Towards Network-level Efficiency for
//! Cloud Storage Services", IMC 2014, are printed beside ours for
//! comparison; they were not measured here.
//!
//! Usage: bench_traffic [--keep-logs DIR]
//!
//! Needs the `stacksync` binary (STACKSYNC_BIN or next to this example's
//! folder). The last line of stdout is one JSON object.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use support::client::Client;
use support::data::{Manifest, Rng, missing_all, put_file};
use support::proxy::{Proxy, Traffic};
use support::server::{Backend, Server};
use support::{keep_logs, stacksync_bin, tail};

const KB: u64 = 1024;
const MB: u64 = 1024 * 1024;
/// How long a step's connections may take to close after its process exited.
const SETTLE: Duration = Duration::from_secs(2);

/// What one step cost: device A's traffic while it ran.
struct Step {
    traffic: Traffic,
    /// Connections still open once the step was over.
    left_open: u64,
    /// What the client itself says it uploaded (chunk bytes, encoded).
    client_uploaded: u64,
}

/// A step on `client` behind `proxy`: its `sync --once` and the bytes that
/// crossed the proxy meanwhile.
async fn sync_step(client: &Client, proxy: &Proxy) -> anyhow::Result<Step> {
    let open = proxy.open_connections();
    let before = proxy.snapshot();
    let (_, summary) = client.sync_once().await?;
    proxy.settle(open, SETTLE).await;
    Ok(Step {
        traffic: proxy.snapshot().since(&before),
        left_open: proxy.open_connections().saturating_sub(open),
        client_uploaded: summary["bytes_uploaded"].as_u64().unwrap_or(0),
    })
}

/// One measured case.
struct Case {
    name: &'static str,
    payload: u64,
    a: Step,
    b: Step,
    published: &'static str,
}

fn bytes(n: u64) -> String {
    if n < 10 * KB {
        format!("{n} B")
    } else if n < 10 * MB {
        format!("{:.1} KB", n as f64 / KB as f64)
    } else {
        format!("{:.2} MB", n as f64 / MB as f64)
    }
}

fn print_step(label: &str, step: &Step) {
    let t = &step.traffic;
    println!(
        "  {label}: {} up + {} down = {} ({} requests over {} connection(s), {} of HTTP heads{}{})",
        bytes(t.up),
        bytes(t.down),
        bytes(t.total()),
        t.request_count(),
        t.connections,
        bytes(t.head_bytes),
        if t.upgrades > 0 {
            format!(", {} WebSocket(s)", t.upgrades)
        } else {
            String::new()
        },
        if step.left_open > 0 {
            format!(", {} connection(s) still open", step.left_open)
        } else {
            String::new()
        },
    );
    println!("      {}", t.requests_summary());
}

/// Files of a case, written on A; returns (relative path, content) pairs
/// for checking B.
type Written = Manifest;

fn write_new(folder: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<Written> {
    let mut manifest = Written::new();
    for (rel, data) in files {
        put_file(folder, &mut manifest, rel.clone(), data)?;
    }
    Ok(manifest)
}

/// Overwrites one byte in the middle of `path` in place (no rename, same
/// size), like a program patching a file.
fn overwrite_middle_byte(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut data = std::fs::read(path)?;
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(mid as u64))?;
    f.write_all(&[data[mid]])?;
    f.sync_all()?;
    Ok(data)
}

struct Devices {
    a: Client,
    b: Client,
    pa: Proxy,
    pb: Proxy,
}

/// A's step, then B's, then checks B holds `expect`.
async fn measure(
    devices: &Devices,
    name: &'static str,
    payload: u64,
    expect: &Written,
    published: &'static str,
) -> anyhow::Result<Case> {
    let a = sync_step(&devices.a, &devices.pa).await?;
    let b = sync_step(&devices.b, &devices.pb).await?;
    let left = missing_all(&devices.b.folder, expect);
    if !left.is_empty() {
        bail!("{name}: device B lacks {left:?} after its `sync --once`");
    }
    println!(
        "\n{name} (payload {}; client reports {} uploaded):",
        bytes(payload),
        bytes(a.client_uploaded)
    );
    print_step("A uploads", &a);
    print_step("B fetches", &b);
    Ok(Case {
        name,
        payload,
        a,
        b,
        published,
    })
}

async fn run(root: &Path, logs: &mut Vec<(String, PathBuf)>) -> anyhow::Result<Vec<Case>> {
    let bin = stacksync_bin()?;
    println!(
        "traffic bench: {} on the embedded default, each device behind its own counting proxy",
        bin.display()
    );
    let server = Server::start(&bin, Backend::Embedded, &root.join("stacksync")).await?;
    logs.push(("server".into(), server.log_path()));
    let email = "traffic@example.org";
    server.add_user(email)?;
    let pa = Proxy::start(&server.url).await?;
    let pb = Proxy::start(&server.url).await?;

    let before = pa.snapshot();
    let a = server.client_via("device-a", email, &pa.url).await?;
    pa.settle(0, SETTLE).await;
    let setup = pa.snapshot().since(&before);
    let b = server.client_via("device-b", email, &pb.url).await?;
    println!(
        "\nsetup of device A (login, device registration; not in the cases): {} up + {} down = {} in {} requests ({})",
        bytes(setup.up),
        bytes(setup.down),
        bytes(setup.total()),
        setup.request_count(),
        setup.requests_summary()
    );
    let devices = Devices { a, b, pa, pb };

    let first = sync_step(&devices.a, &devices.pa).await?;
    println!("\nfirst `sync --once` of A's empty folder (not in the cases):");
    print_step("A", &first);
    sync_step(&devices.b, &devices.pb).await?;
    let idle = sync_step(&devices.a, &devices.pa).await?;
    println!("`sync --once` with nothing to do (what every run costs; in each case below):");
    print_step("A", &idle);

    let mut rng = Rng::new(31);
    let mut cases = Vec::new();
    let dropbox_create = "Dropbox 38 KB, Google Drive 9 KB, Ubuntu One 2 KB";
    for (name, rel, size, published) in [
        ("1-byte file", "one-byte.bin", 1, dropbox_create),
        ("1 KB file", "one-kb.bin", KB, ""),
        ("1 MB file", "one-mb.bin", MB, ""),
        ("10 MB file", "ten-mb.bin", 10 * MB, ""),
    ] {
        let files = [(rel.to_owned(), rng.bytes(size as usize))];
        let expect = write_new(&devices.a.folder, &files)?;
        cases.push(measure(&devices, name, size, &expect, published).await?);
    }

    let batch: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("batch/file{i:03}.bin"), rng.bytes(KB as usize)))
        .collect();
    let expect = write_new(&devices.a.folder, &batch)?;
    cases.push(
        measure(
            &devices,
            "100 x 1 KB files",
            100 * KB,
            &expect,
            "Dropbox 120 KB",
        )
        .await?,
    );

    let data = overwrite_middle_byte(&devices.a.folder.join("ten-mb.bin"))?;
    let mut expect = Written::new();
    expect.insert(
        "ten-mb.bin".into(),
        (data.len() as u64, blake3::hash(&data)),
    );
    cases.push(
        measure(
            &devices,
            "1-byte change in the 10 MB file",
            1,
            &expect,
            "Dropbox ~50 KB whatever the file size",
        )
        .await?,
    );

    let websockets: u64 = cases.iter().map(|c| c.a.traffic.upgrades).sum();
    let left_open: u64 = cases.iter().map(|c| c.a.left_open).sum();
    println!(
        "\nwhat was counted: every connection device A opened through its proxy during a case: \
         HTTP request and response heads and bodies and WebSocket upgrades and frames ({websockets} \
         WebSocket(s) in the cases), as TCP payload. Not counted: TCP/IP headers and handshakes. \
         Each `sync --once` is its own process that reuses the session stored at setup: it does \
         not log in again, and no connection lives on between cases ({left_open} left open after \
         a case). The login is in `setup`, shown apart."
    );
    Ok(cases)
}

fn print_table(cases: &[Case]) {
    println!(
        "\n{:<32} | {:>10} | {:>10} | {:>9} | {:>8} | {:>10} | published, Li et al. IMC 2014 (not measured here)",
        "case (device A, `sync --once`)",
        "payload",
        "our bytes",
        "/ payload",
        "requests",
        "B fetch"
    );
    for c in cases {
        let ratio = c.a.traffic.total() as f64 / c.payload as f64;
        println!(
            "{:<32} | {:>10} | {:>10} | {:>9} | {:>8} | {:>10} | {}",
            c.name,
            bytes(c.payload),
            bytes(c.a.traffic.total()),
            if ratio < 100.0 {
                format!("{ratio:.2}x")
            } else {
                format!("{ratio:.0}x")
            },
            c.a.traffic.request_count(),
            bytes(c.b.traffic.total()),
            c.published,
        );
    }
}

fn print_goals(cases: &[Case]) {
    let total = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.a.traffic.total())
    };
    let goal = |met: bool, text: String| {
        println!("  {:>6}: {text}", if met { "met" } else { "MISSED" });
    };
    println!("\ngoals:");
    if let Some(n) = total("1-byte file") {
        goal(n < 2 * KB, format!("1-byte file under 2 KB ({})", bytes(n)));
    }
    if let Some(n) = total("100 x 1 KB files") {
        let r = n as f64 / (100 * KB) as f64;
        goal(
            r < 1.1,
            format!("100 x 1 KB batch under 1.1x its payload ({r:.2}x)"),
        );
    }
    if let Some(n) = total("1-byte change in the 10 MB file") {
        goal(
            n < 16 * KB,
            format!("one-byte change in 10 MB under 16 KB ({})", bytes(n)),
        );
    }
}

fn json_line(cases: &[Case]) -> String {
    let total = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .map_or("null".to_owned(), |c| c.a.traffic.total().to_string())
    };
    format!(
        "{{\"bench\":\"traffic\",\"one_byte_file_bytes\":{},\"one_kb_file_bytes\":{},\"one_mb_file_bytes\":{},\
         \"ten_mb_file_bytes\":{},\"batch_100x1kb_bytes\":{},\"one_byte_change_10mb_bytes\":{}}}",
        total("1-byte file"),
        total("1 KB file"),
        total("1 MB file"),
        total("10 MB file"),
        total("100 x 1 KB files"),
        total("1-byte change in the 10 MB file"),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut keep: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--keep-logs" => keep = Some(it.next().context("--keep-logs needs a value")?.into()),
            other => bail!("unknown flag {other} (flags: --keep-logs DIR)"),
        }
    }
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-traffic-")
        .tempdir()?;
    let mut logs = Vec::new();
    let result = tokio::select! {
        r = run(root.path(), &mut logs) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(dir) = &keep {
        keep_logs(dir, &logs);
        println!("logs copied to {}", dir.display());
    }
    let cases = match result {
        Ok(c) => c,
        Err(e) => {
            for (name, path) in &logs {
                eprintln!("--- {name} log (last 20 lines) ---\n{}", tail(path, 20));
            }
            println!("{}", json_line(&[]));
            return Err(e);
        }
    };
    print_table(&cases);
    print_goals(&cases);
    println!("{}", json_line(&cases));
    Ok(())
}
