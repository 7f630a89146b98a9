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
//! Each of (a), (b) and (c) is measured again on a second account, created
//! the same way, whose private workspace is end-to-end encrypted (its first
//! device set up with `--encrypted --passphrase P`, its second with
//! `--passphrase P`): the same data, edits and insertion, on the same
//! server, in the same run. What encryption costs is reported as ratios to
//! the plain account's figures (first sync time, edit latency p50/p95,
//! bytes uploaded for the insertion), not as absolute claims. The encrypted
//! first sync and edits run right after the plain ones (the plain daemons
//! stopped), so what the order changes (warmer caches, a fuller database)
//! favours neither side knowingly but is not cancelled out either.
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

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Child;

use support::client::Client;
use support::data::{Manifest, Rng, copy_tree, missing, put_file, wait_for_manifest};
use support::latency::{EditPlan, histogram, measure_edits, percentile_ms};
use support::proc::Cpu;
use support::server::{Backend, Server, Services};
use support::syncthing::{Syncthing, syncthing_version};
use support::{MIB, json_number, keep_logs, round, stacksync_bin, tail};

const LARGE_FILE: usize = 16 * MIB;
const LARGE_FILES: usize = 4;
const INSERT_FILE: usize = 64 * MIB;
/// How long one edit may take to reach the other side before it counts as missed.
const EDIT_DEADLINE: Duration = Duration::from_secs(20);
/// The account whose private workspace is end-to-end encrypted.
const ENCRYPTED_EMAIL: &str = "encrypted@example.org";
/// Its encryption passphrase (it must differ from the login password).
const PASSPHRASE: &str = "bench-e2e-passphrase";
/// How long anything else (a start-up, a first sync) may take.
const DEADLINE: Duration = Duration::from_secs(300);

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

// ---------------------------------------------------------------- data ---

/// Writes the first-sync data set under `root`; returns its manifest.
fn write_data_set(root: &Path, small: usize, seed: u64) -> anyhow::Result<Manifest> {
    let mut rng = Rng::new(seed);
    let mut manifest = Manifest::new();
    let mut put = |rel: String, data: Vec<u8>| -> anyhow::Result<()> {
        put_file(root, &mut manifest, rel, &data)
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

// ---------------------------------------------------------------- main ---

struct Figures {
    first_sync_s: f64,
    rclone_s: f64,
    latency: Percentiles,
    syncthing_p50_ms: f64,
    syncthing_p99_ms: f64,
    shared_p50_ms: f64,
    shared_p99_ms: f64,
    insert: Insertion,
    encrypted: EncryptedFigures,
}

/// Edit latencies in ms.
#[derive(Clone, Copy)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
}

/// (c)'s figures: bytes uploaded for the insertion and their share of the file.
#[derive(Clone, Copy)]
struct Insertion {
    uploaded: u64,
    ratio: f64,
}

/// The end-to-end encrypted account's figures; None where it was not
/// measured (an earlier step of it failed).
#[derive(Default)]
struct EncryptedFigures {
    first_sync_s: Option<f64>,
    latency: Option<Percentiles>,
    insert: Option<Insertion>,
    /// Why a step failed: the bench reports it and exits with an error
    /// after the plain figures.
    error: Option<String>,
}

/// The encrypted account's two devices.
struct EncryptedPair {
    a: Client,
    b: Client,
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

    let rclone_s = services
        .swift
        .copy(&src, manifest.len(), args.rclone_transfers)
        .await?;
    let transfers = args
        .rclone_transfers
        .map_or("default --transfers 4, --checkers 8".to_owned(), |t| {
            format!("--transfers {t}")
        });
    println!(
        "(a) rclone copy ({transfers}) into a fresh Swift container: {rclone_s:.2} s  (baseline)"
    );

    let server = Server::start(bin, Backend::Full(services), &root.join("stacksync")).await?;
    logs.push(("server".into(), server.log_path()));
    let email = "bench@example.org";
    server.add_user(email)?;
    let mut a = server.client("device-a", email).await?;
    let mut b = server.client("device-b", email).await?;
    logs.push(("device-a daemon".into(), a.daemon_log_path()));
    logs.push(("device-b daemon".into(), b.daemon_log_path()));

    let first_sync_s = first_sync(&server, &a, &mut b, &src, &manifest, "ours").await?;
    println!(
        "(a) first sync A -> B: {first_sync_s:.2} s vs rclone {rclone_s:.2} s = {:.2}x  (goal <= 0.70x)",
        first_sync_s / rclone_s
    );
    download_only(&server, email, &manifest).await?;

    let ours = daemon_latency(&mut a, &mut b, &scratch, args.edits, "ours").await?;

    // The encrypted account's (a) and (b), with the plain daemons stopped.
    let mut encrypted = EncryptedFigures::default();
    let pair = match encrypted_sync_and_edits(
        &server,
        &src,
        &manifest,
        &scratch,
        args.edits,
        logs,
        &mut encrypted,
    )
    .await
    {
        Ok(pair) => Some(pair),
        Err(e) => {
            report_encrypted_failure(&mut encrypted, &e);
            None
        }
    };
    if let Some(s) = encrypted.first_sync_s {
        println!(
            "(a) encrypted first sync A -> B: {s:.2} s vs rclone {rclone_s:.2} s = {:.2}x; \
             vs plain {first_sync_s:.2} s = {:.2}x  (encryption's cost, same data, same run)",
            s / rclone_s,
            s / first_sync_s
        );
    }
    if let Some(e) = encrypted.latency {
        println!(
            "(b) encrypted vs plain: p50 {:.1} / {:.1} ms = {:.2}x, p95 {:.1} / {:.1} ms = {:.2}x, p99 {:.2}x",
            e.p50,
            ours.p50,
            e.p50 / ours.p50,
            e.p95,
            ours.p95,
            e.p95 / ours.p95,
            e.p99 / ours.p99
        );
    }

    let theirs = syncthing_latency(&scratch, args.edits, logs).await?;
    println!(
        "(b) ours vs Syncthing: p50 {:.2}x, p99 {:.2}x",
        ours.p50 / theirs.0,
        ours.p99 / theirs.1
    );

    let shared = shared_latency(&server, &mut a, &scratch, args.edits, logs).await?;
    println!(
        "(b) shared folder vs one account: p50 {:.2}x, p99 {:.2}x",
        shared.0 / ours.p50,
        shared.1 / ours.p99
    );

    let insert = one_byte_insert(&a, &b, "").await?;
    if let Some(p) = &pair {
        match one_byte_insert(&p.a, &p.b, "encrypted: ").await {
            Ok(e) => {
                println!(
                    "(c) encrypted vs plain: {} / {} bytes uploaded = {:.2}x",
                    e.uploaded,
                    insert.uploaded,
                    e.uploaded as f64 / insert.uploaded as f64
                );
                encrypted.insert = Some(e);
            }
            Err(e) => report_encrypted_failure(&mut encrypted, &e),
        }
    }
    Ok(Figures {
        first_sync_s,
        rclone_s,
        latency: ours,
        syncthing_p50_ms: theirs.0,
        syncthing_p99_ms: theirs.1,
        shared_p50_ms: shared.0,
        shared_p99_ms: shared.1,
        insert,
        encrypted,
    })
}

/// The encrypted account's (a) and (b): a fresh account, its first device
/// set up with `--encrypted --passphrase`, its second with `--passphrase`;
/// the same first sync and edits as the plain account's. Fills `figures`
/// as it goes; returns the two devices (daemons stopped) for (c).
async fn encrypted_sync_and_edits(
    server: &Server,
    src: &Path,
    manifest: &std::sync::Arc<Manifest>,
    scratch: &Path,
    edits: usize,
    logs: &mut Vec<(String, PathBuf)>,
    figures: &mut EncryptedFigures,
) -> anyhow::Result<EncryptedPair> {
    server.add_user(ENCRYPTED_EMAIL)?;
    let a = server
        .client_with(
            "enc-device-a",
            ENCRYPTED_EMAIL,
            &["--encrypted", "--passphrase", PASSPHRASE],
        )
        .await?;
    let b = server
        .client_with(
            "enc-device-b",
            ENCRYPTED_EMAIL,
            &["--passphrase", PASSPHRASE],
        )
        .await?;
    logs.push(("enc-device-a daemon".into(), a.daemon_log_path()));
    logs.push(("enc-device-b daemon".into(), b.daemon_log_path()));
    let mut pair = EncryptedPair { a, b };
    figures.first_sync_s =
        Some(first_sync(server, &pair.a, &mut pair.b, src, manifest, "encrypted").await?);
    figures.latency =
        Some(daemon_latency(&mut pair.a, &mut pair.b, scratch, edits, "encrypted").await?);
    Ok(pair)
}

/// Notes a failed step of the encrypted account: the plain figures are
/// still reported, the bench then exits with this error.
fn report_encrypted_failure(figures: &mut EncryptedFigures, e: &anyhow::Error) {
    eprintln!("ERROR: the end-to-end encrypted account's measurement failed: {e:#}");
    figures.error.get_or_insert_with(|| format!("{e:#}"));
}

/// (a): A uploads the data set with `sync --once` while B's daemon
/// receives; returns the seconds until B holds every file.
async fn first_sync(
    server: &Server,
    a: &Client,
    b: &mut Client,
    src: &Path,
    manifest: &std::sync::Arc<Manifest>,
    label: &str,
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
        DEADLINE,
        Duration::from_millis(10),
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
        "(a) {label}: A `sync --once` {:.2} s (uploaded {:.1} MiB in {} chunks in {} pack objects, {} deduplicated); \
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

/// The edits of (b): one small text file saved again and again.
fn edit_plan(edits: usize) -> EditPlan {
    EditPlan {
        targets: vec!["notes/edited.txt".to_owned()],
        edits,
        seed: 11,
        gap: EDIT_GAP,
        deadline: EDIT_DEADLINE,
    }
}

/// (b): edits on A's daemon until B's daemon has them; `label` names the
/// account in what it prints ("ours" is the plain one). Stops both daemons
/// (and checks they exit cleanly).
async fn daemon_latency(
    a: &mut Client,
    b: &mut Client,
    scratch: &Path,
    edits: usize,
    label: &str,
) -> anyhow::Result<Percentiles> {
    a.start_daemon()?;
    a.wait_idle().await?;
    b.wait_idle().await?;
    let ours = measure_edits(&a.folder, &b.folder, scratch, &edit_plan(edits)).await?;
    let figures = Percentiles {
        p50: percentile_ms(&ours.samples, 0.5),
        p95: percentile_ms(&ours.samples, 0.95),
        p99: percentile_ms(&ours.samples, 0.99),
    };
    let (p50, p99) = (figures.p50, figures.p99);
    let goal = if label == "ours" {
        "  (goal p50 < 150 ms)"
    } else {
        ""
    };
    println!(
        "(b) {label}, daemon A -> daemon B, {edits} atomic saves of 0.3-4 KiB: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms{goal}",
        percentile_ms(&ours.samples, 1.0)
    );
    println!("    {label}: {}", histogram(&ours.samples));
    if !ours.missed.is_empty() {
        eprintln!(
            "WARNING: {label}: {} edit(s) did not reach B within {EDIT_DEADLINE:?} (counted as {EDIT_DEADLINE:?}): {:?}\n\
             A's daemon log tail:\n{}\nB's daemon log tail:\n{}",
            ours.missed.len(),
            ours.missed,
            tail(&a.daemon_log_path(), 40),
            tail(&b.daemon_log_path(), 40)
        );
    }
    a.stop_daemon().await?;
    b.stop_daemon().await?;
    Ok(figures)
}

/// Runs a client command that must succeed; its standard output.
async fn run_ok(c: &Client, args: &[&str]) -> anyhow::Result<String> {
    let out = c.command(args).output().await?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (b) through a shared folder: A's account shares `shared/` with a second
/// account, whose device accepts it; edits on A's daemon until the
/// member's daemon has them; (p50, p99) in ms.
async fn shared_latency(
    server: &Server,
    a: &mut Client,
    scratch: &Path,
    edits: usize,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<(f64, f64)> {
    let member = "member@example.org";
    server.add_user(member)?;
    let mut m = server.client("member-laptop", member).await?;
    logs.push(("member daemon".into(), m.daemon_log_path()));
    std::fs::create_dir_all(a.folder.join("shared/notes"))?;
    std::fs::write(a.folder.join("shared/notes/edited.txt"), b"first")?;
    a.sync_once().await?;
    let shared = a.folder.join("shared");
    run_ok(
        a,
        &["share", shared.to_str().context("utf-8")?, "--with", member],
    )
    .await?;
    let id = run_ok(&m, &["invitations"]).await?;
    run_ok(&m, &["accept", id.trim()]).await?;
    m.sync_once().await?;
    a.sync_once().await?;
    m.start_daemon()?;
    a.start_daemon()?;
    a.wait_idle().await?;
    m.wait_idle().await?;
    let samples = measure_edits(
        &shared,
        &m.folder.join("shared"),
        scratch,
        &edit_plan(edits),
    )
    .await?;
    let (p50, p99) = (
        percentile_ms(&samples.samples, 0.5),
        percentile_ms(&samples.samples, 0.99),
    );
    println!(
        "(b) shared folder, owner's daemon -> member's daemon, {edits} atomic saves: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
        percentile_ms(&samples.samples, 1.0)
    );
    println!("    shared: {}", histogram(&samples.samples));
    if !samples.missed.is_empty() {
        eprintln!(
            "WARNING: {} edit(s) did not reach the member within {EDIT_DEADLINE:?}: {:?}\nowner's daemon log tail:\n{}\nmember's daemon log tail:\n{}",
            samples.missed.len(),
            samples.missed,
            tail(&a.daemon_log_path(), 40),
            tail(&m.daemon_log_path(), 40)
        );
    }
    a.stop_daemon().await?;
    m.stop_daemon().await?;
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
    let theirs = measure_edits(&sa.folder, &sb.folder, scratch, &edit_plan(edits)).await?;
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
/// synced 64 MiB file, and their share of 64 MiB; checks B gets the edited
/// file. `label` prefixes what it prints (empty for the plain account).
async fn one_byte_insert(a: &Client, b: &Client, label: &str) -> anyhow::Result<Insertion> {
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
        "(c) {label}one-byte insert into the middle of a synced 64 MiB file: {uploaded} bytes uploaded in {} chunk(s) \
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
    Ok(Insertion { uploaded, ratio })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let services = Services::from_env("sync")?;
    let bin = stacksync_bin()?;
    println!(
        "sync bench: {} on PostgreSQL + RabbitMQ + Swift ({})",
        bin.display(),
        services.swift.swift_auth
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
        "{{\"bench\":\"sync\",\"first_sync_s\":{},\"rclone_s\":{},\"ratio_to_rclone\":{},\"latency_p50_ms\":{},\"latency_p99_ms\":{},\"syncthing_p50_ms\":{},\"syncthing_p99_ms\":{},\"shared_p50_ms\":{},\"shared_p99_ms\":{},\"insert_1byte_uploaded_ratio\":{}{}}}",
        round(f.first_sync_s, 3),
        round(f.rclone_s, 3),
        round(f.first_sync_s / f.rclone_s, 3),
        round(f.latency.p50, 1),
        round(f.latency.p99, 1),
        round(f.syncthing_p50_ms, 1),
        round(f.syncthing_p99_ms, 1),
        round(f.shared_p50_ms, 1),
        round(f.shared_p99_ms, 1),
        round(f.insert.ratio, 5),
        encrypted_json(&f),
    );
    println!("{json}");
    match &f.encrypted.error {
        Some(error) => bail!("the end-to-end encrypted rows were not all measured: {error}"),
        None => Ok(()),
    }
}

/// The fields added with the encrypted account (each `null` when it was
/// not measured), after the plain ones, which stay as they were.
fn encrypted_json(f: &Figures) -> String {
    let e = &f.encrypted;
    let ratio = |x: Option<f64>, plain: f64| x.map(|x| x / plain);
    let lat = |pick: fn(&Percentiles) -> f64| e.latency.as_ref().map(pick);
    let bytes = |i: Option<Insertion>| i.map(|i| i.uploaded as f64);
    [
        ("latency_p95_ms", Some(f.latency.p95), 1),
        ("insert_1byte_uploaded_bytes", bytes(Some(f.insert)), 0),
        ("encrypted_first_sync_s", e.first_sync_s, 3),
        (
            "encrypted_ratio_to_rclone",
            ratio(e.first_sync_s, f.rclone_s),
            3,
        ),
        (
            "encrypted_vs_plain_first_sync",
            ratio(e.first_sync_s, f.first_sync_s),
            3,
        ),
        ("encrypted_latency_p50_ms", lat(|p| p.p50), 1),
        ("encrypted_latency_p95_ms", lat(|p| p.p95), 1),
        ("encrypted_latency_p99_ms", lat(|p| p.p99), 1),
        (
            "encrypted_vs_plain_latency_p50",
            ratio(lat(|p| p.p50), f.latency.p50),
            3,
        ),
        (
            "encrypted_vs_plain_latency_p95",
            ratio(lat(|p| p.p95), f.latency.p95),
            3,
        ),
        ("encrypted_insert_1byte_uploaded_bytes", bytes(e.insert), 0),
        (
            // More digits than the plain field's 5, which rounds a
            // few hundred bytes in 64 MiB to 0.
            "encrypted_insert_1byte_uploaded_ratio",
            e.insert.map(|i| i.ratio),
            8,
        ),
        (
            "encrypted_vs_plain_insert_bytes",
            ratio(bytes(e.insert), f.insert.uploaded as f64),
            3,
        ),
    ]
    .iter()
    .map(|(name, x, digits)| format!(",\"{name}\":{}", json_number(*x, *digits)))
    .collect()
}
