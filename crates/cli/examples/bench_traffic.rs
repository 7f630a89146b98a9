//! `scripts/bench traffic`: bytes on the wire per user action (issue 18),
//! measured at a loopback TCP proxy between each client device and the
//! embedded default server: every request and response with its headers,
//! WebSocket upgrades and frames, in both directions (TCP payload: no
//! TCP/IP headers; plain HTTP on loopback, so no TLS).
//!
//! The main figures are what a user of a Dropbox-like client experiences:
//! device A runs the daemon (`stacksync sync`), logged in, connected and
//! idle; the bench creates the file(s) in A's folder and counts A's bytes
//! from that moment until device B (its own daemon, behind its own proxy)
//! holds the change and both connections have been quiet for a while (so
//! A's notification about its own commit is counted too). B's bytes are
//! shown beside them. Then both daemons stop and the same cases run again
//! on new files with `sync --once` (A uploads, then B fetches), a second,
//! separately labelled column: each run pays its own connection, device
//! check and listing. Cases: a 1-byte file, 1 KB, 1 MB and 10 MB random
//! files, a batch of 100 files of 1 KB, and one byte overwritten in the
//! middle of the synced 10 MB file. `setup` is counted apart, as is a
//! `sync --once` with nothing to do (what any run costs). KB and MB here
//! are 1024 and 1024^2 bytes.
//!
//! Published figures of Li et al., "Towards Network-level Efficiency for
//! Cloud Storage Services", IMC 2014, are printed beside ours for
//! comparison; they were not measured here.
//!
//! Usage: bench_traffic [--breakdown] [--keep-logs DIR]
//!
//! `--breakdown` prints, for each case, every kind of exchange (HTTP
//! method and path, RPC operation, WebSocket frames) with its count and
//! bytes up and down.
//!
//! Needs the `stacksync` binary (STACKSYNC_BIN or next to this example's
//! folder). The last line of stdout is one JSON object.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use support::client::Client;
use support::data::{Manifest, Rng, missing_all, put_file, wait_for_manifest};
use support::proxy::{Proxy, Traffic};
use support::server::{Backend, Server};
use support::{keep_logs, stacksync_bin, tail};

const KB: u64 = 1024;
const MB: u64 = 1024 * 1024;
/// How long a step's connections may take to close after its process exited.
const SETTLE: Duration = Duration::from_secs(2);
/// A daemon case ends once both devices' connections moved no byte for
/// this long (after B holds the change): longer than the client's watcher
/// debounce and its reaction to a notification.
const QUIET: Duration = Duration::from_millis(1500);
/// Longest a daemon case may take.
const CASE_DEADLINE: Duration = Duration::from_secs(120);

/// What one step cost on one device.
struct Step {
    traffic: Traffic,
    /// Connections still open once the step was over (`sync --once` only).
    left_open: u64,
}

/// A step on `client` behind `proxy`: its `sync --once` and the bytes that
/// crossed the proxy meanwhile.
async fn sync_step(client: &Client, proxy: &Proxy) -> anyhow::Result<Step> {
    let open = proxy.open_connections();
    let before = proxy.snapshot();
    client.sync_once().await?;
    proxy.settle(open, SETTLE).await;
    Ok(Step {
        traffic: proxy.snapshot().since(&before),
        left_open: proxy.open_connections().saturating_sub(open),
    })
}

/// Waits until neither proxy moved a byte for [`QUIET`].
async fn quiet(proxies: &[&Proxy]) {
    let total = || proxies.iter().map(|p| p.snapshot().total()).sum::<u64>();
    let mut last = total();
    let mut since = Instant::now();
    while since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = total();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// One measured case: the daemons' figures and `sync --once`'s.
struct Case {
    name: &'static str,
    payload: u64,
    daemon: (Step, Step),
    once: Option<(Step, Step)>,
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

fn print_step(label: &str, step: &Step, breakdown: bool) {
    let t = &step.traffic;
    println!(
        "  {label}: {} up + {} down = {} ({} requests over {} new connection(s), {} of HTTP heads{}{})",
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
    if breakdown {
        for line in t.breakdown() {
            println!("      {line}");
        }
    } else {
        println!("      {}", t.requests_summary());
    }
}

fn write_new(folder: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<Manifest> {
    let mut manifest = Manifest::new();
    for (rel, data) in files {
        put_file(folder, &mut manifest, rel.clone(), data)?;
    }
    Ok(manifest)
}

/// Overwrites one byte in the middle of `path` in place (no rename, same
/// size), like a program patching a file; returns what B must then hold.
fn overwrite_middle_byte(folder: &Path, rel: &str) -> anyhow::Result<Manifest> {
    let path = folder.join(rel);
    let mut data = std::fs::read(&path)?;
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
    f.seek(SeekFrom::Start(mid as u64))?;
    f.write_all(&[data[mid]])?;
    f.sync_all()?;
    let mut expect = Manifest::new();
    expect.insert(rel.into(), (data.len() as u64, blake3::hash(&data)));
    Ok(expect)
}

struct Devices {
    a: Client,
    b: Client,
    pa: Proxy,
    pb: Proxy,
}

/// What a case puts on A.
enum Change {
    Files(Vec<(String, Vec<u8>)>),
    /// One byte overwritten in the middle of this file.
    OneByte(String),
}

struct CaseSpec {
    name: &'static str,
    payload: u64,
    change: Change,
    published: &'static str,
}

fn apply(folder: &Path, change: &Change) -> anyhow::Result<Manifest> {
    match change {
        Change::Files(files) => write_new(folder, files),
        Change::OneByte(rel) => overwrite_middle_byte(folder, rel),
    }
}

/// With both daemons running: makes the change on A and counts both
/// devices' bytes until B holds it and both are quiet.
async fn daemon_case(d: &Devices, change: &Change) -> anyhow::Result<(Step, Step)> {
    quiet(&[&d.pa, &d.pb]).await;
    let (before_a, before_b) = (d.pa.snapshot(), d.pb.snapshot());
    let expect = Arc::new(apply(&d.a.folder, change)?);
    wait_for_manifest(
        d.b.folder.clone(),
        expect,
        Instant::now(),
        CASE_DEADLINE,
        Duration::from_millis(20),
    )
    .await?;
    quiet(&[&d.pa, &d.pb]).await;
    let step = |p: &Proxy, before: &Traffic| Step {
        traffic: p.snapshot().since(before),
        left_open: 0,
    };
    Ok((step(&d.pa, &before_a), step(&d.pb, &before_b)))
}

/// Without daemons: makes the change on A, runs A's `sync --once`, then
/// B's, and checks B holds it.
async fn once_case(d: &Devices, name: &str, change: &Change) -> anyhow::Result<(Step, Step)> {
    let expect = apply(&d.a.folder, change)?;
    let a = sync_step(&d.a, &d.pa).await?;
    let b = sync_step(&d.b, &d.pb).await?;
    let left = missing_all(&d.b.folder, &expect);
    if !left.is_empty() {
        bail!("{name}: device B lacks {left:?} after its `sync --once`");
    }
    Ok((a, b))
}

/// The cases, with files under `dir` (each column writes its own).
fn specs(rng: &mut Rng, dir: &str) -> Vec<CaseSpec> {
    let dropbox_create = "Dropbox 38 KB, Google Drive 9 KB, Ubuntu One 2 KB";
    let mut specs = Vec::new();
    for (name, rel, size, published) in [
        ("1-byte file", "one-byte.bin", 1, dropbox_create),
        ("1 KB file", "one-kb.bin", KB, ""),
        ("1 MB file", "one-mb.bin", MB, ""),
        ("10 MB file", "ten-mb.bin", 10 * MB, ""),
    ] {
        specs.push(CaseSpec {
            name,
            payload: size,
            change: Change::Files(vec![(format!("{dir}/{rel}"), rng.bytes(size as usize))]),
            published,
        });
    }
    specs.push(CaseSpec {
        name: "100 x 1 KB files",
        payload: 100 * KB,
        change: Change::Files(
            (0..100)
                .map(|i| {
                    (
                        format!("{dir}/batch/file{i:03}.bin"),
                        rng.bytes(KB as usize),
                    )
                })
                .collect(),
        ),
        published: "Dropbox 120 KB",
    });
    specs.push(CaseSpec {
        name: "1-byte change in the 10 MB file",
        payload: 1,
        change: Change::OneByte(format!("{dir}/ten-mb.bin")),
        published: "Dropbox ~50 KB whatever the file size",
    });
    specs
}

async fn run(
    root: &Path,
    logs: &mut Vec<(String, PathBuf)>,
    breakdown: bool,
) -> anyhow::Result<Vec<Case>> {
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
    let mut d = Devices { a, b, pa, pb };
    logs.push(("device A daemon".into(), d.a.daemon_log_path()));
    logs.push(("device B daemon".into(), d.b.daemon_log_path()));

    let mut rng = Rng::new(31);
    let daemon_specs = specs(&mut rng, "daemon");
    let once_specs = specs(&mut rng, "once");

    // Daemons: started, synced, connected and quiet before the first case.
    let before = d.pa.snapshot();
    d.a.start_daemon()?;
    d.b.start_daemon()?;
    d.a.wait_idle().await?;
    d.b.wait_idle().await?;
    quiet(&[&d.pa, &d.pb]).await;
    println!("\nA's daemon starting (connect, first sync, notification socket; not in the cases):");
    print_step(
        "A",
        &Step {
            traffic: d.pa.snapshot().since(&before),
            left_open: 0,
        },
        breakdown,
    );
    let mut cases = Vec::new();
    for spec in &daemon_specs {
        let measured = daemon_case(&d, &spec.change)
            .await
            .with_context(|| format!("daemon case {}", spec.name))?;
        println!(
            "\n{} (payload {}), daemons running:",
            spec.name,
            bytes(spec.payload)
        );
        print_step("A creates", &measured.0, breakdown);
        print_step("B receives", &measured.1, breakdown);
        cases.push(Case {
            name: spec.name,
            payload: spec.payload,
            daemon: measured,
            once: None,
            published: spec.published,
        });
    }
    let before = d.pa.snapshot();
    d.a.stop_daemon().await?;
    d.b.stop_daemon().await?;
    d.pa.settle(0, SETTLE).await;
    d.pb.settle(0, SETTLE).await;
    println!("\nA's daemon stopping (not in the cases):");
    print_step(
        "A",
        &Step {
            traffic: d.pa.snapshot().since(&before),
            left_open: 0,
        },
        breakdown,
    );

    let idle = sync_step(&d.a, &d.pa).await?;
    sync_step(&d.b, &d.pb).await?;
    println!(
        "\n`sync --once` with nothing to do (what every run costs; in each `sync --once` figure):"
    );
    print_step("A", &idle, breakdown);
    for (spec, case) in once_specs.iter().zip(&mut cases) {
        let measured = once_case(&d, spec.name, &spec.change).await?;
        println!(
            "\n{} (payload {}), `sync --once` on each device:",
            spec.name,
            bytes(spec.payload)
        );
        print_step("A uploads", &measured.0, breakdown);
        print_step("B fetches", &measured.1, breakdown);
        case.once = Some(measured);
    }

    let left_open: u64 = cases
        .iter()
        .filter_map(|c| c.once.as_ref())
        .map(|o| o.0.left_open)
        .sum();
    println!(
        "\nwhat was counted: every byte device A's connections carried through its proxy during a \
         case: HTTP request and response heads and bodies and WebSocket upgrades and frames, as \
         TCP payload. Not counted: TCP/IP headers and handshakes. With the daemon, a case runs \
         from the moment the files are written until B holds them and both devices were quiet \
         for {QUIET:?} (a WebSocket ping, every 20 s, may fall in). Each `sync --once` is its own \
         process that reuses the session stored at setup: it does not log in again ({left_open} \
         connection(s) left open after a case). The login is in `setup`, shown apart."
    );
    Ok(cases)
}

fn ratio(n: u64, payload: u64) -> String {
    let r = n as f64 / payload as f64;
    if r < 100.0 {
        format!("{r:.2}x")
    } else {
        format!("{r:.0}x")
    }
}

fn print_table(cases: &[Case]) {
    println!(
        "\n{:<32} | {:>9} | {:>10} | {:>8} | {:>4} | {:>10} | {:>10} | {:>10} | published, Li et al. IMC 2014 (not measured here)",
        "case", "payload", "A daemon", "/payload", "reqs", "B daemon", "A --once", "B --once",
    );
    for c in cases {
        let (a, b) = &c.daemon;
        let once = |pick: fn(&(Step, Step)) -> &Step| {
            c.once
                .as_ref()
                .map_or("-".into(), |o| bytes(pick(o).traffic.total()))
        };
        println!(
            "{:<32} | {:>9} | {:>10} | {:>8} | {:>4} | {:>10} | {:>10} | {:>10} | {}",
            c.name,
            bytes(c.payload),
            bytes(a.traffic.total()),
            ratio(a.traffic.total(), c.payload),
            a.traffic.request_count(),
            bytes(b.traffic.total()),
            once(|o| &o.0),
            once(|o| &o.1),
            c.published,
        );
    }
}

fn daemon_total(cases: &[Case], name: &str) -> Option<u64> {
    cases
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.daemon.0.traffic.total())
}

fn print_goals(cases: &[Case]) {
    let goal = |met: bool, text: String| {
        println!("  {:>6}: {text}", if met { "met" } else { "MISSED" });
    };
    println!("\ngoals (device A, daemon running):");
    if let Some(n) = daemon_total(cases, "1-byte file") {
        goal(n < 2 * KB, format!("1-byte file under 2 KB ({})", bytes(n)));
    }
    if let Some(n) = daemon_total(cases, "100 x 1 KB files") {
        let r = n as f64 / (100 * KB) as f64;
        goal(
            r < 1.1,
            format!("100 x 1 KB batch under 1.1x its payload ({r:.2}x)"),
        );
    }
    if let Some(n) = daemon_total(cases, "1-byte change in the 10 MB file") {
        goal(
            n < 16 * KB,
            format!("one-byte change in 10 MB under 16 KB ({})", bytes(n)),
        );
    }
}

fn json_line(cases: &[Case]) -> String {
    let total = |name: &str| daemon_total(cases, name).map_or("null".to_owned(), |n| n.to_string());
    let once = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.once.as_ref())
            .map_or("null".to_owned(), |o| o.0.traffic.total().to_string())
    };
    format!(
        "{{\"bench\":\"traffic\",\"one_byte_file_bytes\":{},\"one_kb_file_bytes\":{},\"one_mb_file_bytes\":{},\
         \"ten_mb_file_bytes\":{},\"batch_100x1kb_bytes\":{},\"one_byte_change_10mb_bytes\":{},\
         \"once_one_byte_file_bytes\":{},\"once_batch_100x1kb_bytes\":{}}}",
        total("1-byte file"),
        total("1 KB file"),
        total("1 MB file"),
        total("10 MB file"),
        total("100 x 1 KB files"),
        total("1-byte change in the 10 MB file"),
        once("1-byte file"),
        once("100 x 1 KB files"),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut keep: Option<PathBuf> = None;
    let mut breakdown = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--keep-logs" => keep = Some(it.next().context("--keep-logs needs a value")?.into()),
            "--breakdown" => breakdown = true,
            other => bail!("unknown flag {other} (flags: --breakdown, --keep-logs DIR)"),
        }
    }
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-traffic-")
        .tempdir()?;
    let mut logs = Vec::new();
    let result = tokio::select! {
        r = run(root.path(), &mut logs, breakdown) => r,
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
