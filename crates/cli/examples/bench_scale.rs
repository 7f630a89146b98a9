//! `scripts/bench scale`: how the product holds up as a tree grows (issue
//! 18). For trees of 1,000, 20,000 and 100,000 small files (16 B-4 KiB,
//! distinct contents) in 100 folders, two devices of one account on the
//! embedded default server (SQLite, local blobs, in-process bus):
//!
//! * first sync up: device A `sync --once` of the whole tree (wall time);
//! * first sync down: device B `sync --once` from empty (wall time,
//!   then every file checked by BLAKE3);
//! * both devices as daemons: 50 atomic saves of existing files spread over
//!   the tree on A, each timed until B holds it (p50, p99, max);
//! * each daemon's peak RSS (VmHWM);
//! * stalls: a `sync --once` that fails, outlives the deadline or logs
//!   "sync round abandoned" (the client's watchdog), a daemon that never
//!   reports the tree synced or whose log has that message; the bench
//!   keeps going and reports them;
//! * peers on the same trees, measured in the same run: two loopback
//!   Syncthing instances (A's folder shared with B, until B holds every
//!   file, checked) and `rclone copy` into a fresh container of the test
//!   Swift.
//!
//! Every first sync, ours and the peers', starts on a flushed disk
//! (`sync`), so none pays for the writeback of the one before it.
//!
//! Usage: bench_scale [--sizes 1000,20000,100000] [--folders 100] [--edits 50]
//!        [--no-peers] [--peers-up-to N] [--deadline-mins 30] [--rclone-transfers N]
//!        [--stall-secs N] [--keep-logs DIR]
//!
//! `--stall-secs` sets the clients' stall watchdog (STACKSYNC_STALL_SECS;
//! their default is 900 s), so a stall shows sooner.
//!
//! Needs the `stacksync` binary (STACKSYNC_BIN or next to this example's
//! folder), and for the peers `syncthing`, `rclone` and STACKSYNC_TEST_SWIFT
//! (`scripts/bench scale` provides them). Every process it starts is
//! killed and its folders removed, also on failure or Ctrl-C. The last line
//! of stdout is one JSON object.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use support::client::{Client, SyncOutcome};
use support::data::{Manifest, Rng, copy_tree, missing_all, put_file, wait_for_manifest};
use support::latency::{EditPlan, histogram, measure_edits, percentile_ms};
use support::proc::{Cpu, peak_rss_mib};
use support::rclone::Rclone;
use support::server::{Backend, Server};
use support::syncthing::{Syncthing, syncthing_version};
use support::{MIB, json_number, keep_logs, stacksync_bin, tail};

/// The sizes the goals speak of.
const SMALL: usize = 1_000;
const LARGE: usize = 100_000;
/// How long one edit may take to reach B before it counts as missed.
const EDIT_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between two measured edits, so each is timed on a quiet system.
const EDIT_GAP: Duration = Duration::from_millis(100);

struct Args {
    sizes: Vec<usize>,
    folders: usize,
    edits: usize,
    peers: bool,
    peers_up_to: Option<usize>,
    deadline: Duration,
    rclone_transfers: Option<usize>,
    /// The clients' stall watchdog (STACKSYNC_STALL_SECS); None: theirs.
    stall_secs: Option<u64>,
    keep_logs: Option<PathBuf>,
}

const USAGE: &str = "flags: --sizes N,N,.. --folders N --edits N --no-peers --peers-up-to N \
                     --deadline-mins N --rclone-transfers N --stall-secs N --keep-logs DIR";

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        sizes: vec![SMALL, 20_000, LARGE],
        folders: 100,
        edits: 50,
        peers: true,
        peers_up_to: None,
        deadline: Duration::from_secs(30 * 60),
        rclone_transfers: None,
        stall_secs: None,
        keep_logs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--no-peers" {
            args.peers = false;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--sizes: comma-separated file counts")?
            }
            "--folders" => args.folders = value.parse().context("--folders")?,
            "--edits" => args.edits = value.parse().context("--edits")?,
            "--peers-up-to" => args.peers_up_to = Some(value.parse().context("--peers-up-to")?),
            "--deadline-mins" => {
                args.deadline =
                    Duration::from_secs(60 * value.parse::<u64>().context("--deadline-mins")?)
            }
            "--rclone-transfers" => {
                args.rclone_transfers = Some(value.parse().context("--rclone-transfers")?)
            }
            "--stall-secs" => args.stall_secs = Some(value.parse().context("--stall-secs")?),
            "--keep-logs" => args.keep_logs = Some(PathBuf::from(value)),
            other => bail!("unknown flag {other} ({USAGE})"),
        }
    }
    if args.edits == 0 || args.folders == 0 || args.sizes.contains(&0) {
        bail!("--edits, --folders and every size must be at least 1");
    }
    Ok(args)
}

/// A tree of `files` small files with distinct contents (each starts with
/// its number) in `folders` folders.
fn write_tree(root: &Path, files: usize, folders: usize, seed: u64) -> anyhow::Result<Manifest> {
    let mut rng = Rng::new(seed);
    let mut manifest = Manifest::new();
    for i in 0..files {
        let len = 16 + rng.below(4096 - 16 + 1) as usize;
        let mut data = (i as u64).to_le_bytes().to_vec();
        data.extend(rng.bytes(len - 8));
        let rel = format!("d{:03}/f{i:06}.bin", i % folders);
        put_file(root, &mut manifest, rel, &data)?;
    }
    Ok(manifest)
}

/// What one tree size gave.
#[derive(Default)]
struct SizeFigures {
    files: usize,
    up_s: Option<f64>,
    down_s: Option<f64>,
    /// p50, p99, max in ms.
    edits: Option<(f64, f64, f64)>,
    missed_edits: usize,
    rss_a_mib: Option<f64>,
    rss_b_mib: Option<f64>,
    stalls: Vec<String>,
    /// Wrong results that are not stalls (a file missing after a sync).
    errors: Vec<String>,
    syncthing_s: Option<f64>,
    rclone_s: Option<f64>,
}

impl SizeFigures {
    fn rss_max(&self) -> Option<f64> {
        match (self.rss_a_mib, self.rss_b_mib) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Writes every dirty page to disk (sync(2)) before a first sync is timed:
/// the tree was just written (or another device just downloaded it), and
/// whoever is measured first would otherwise pay for that writeback in
/// every fsync it makes (seen: the same upload taking 69 s and 158 s).
fn quiet_disk() {
    let started = Instant::now();
    match std::process::Command::new("sync").status() {
        Ok(s) if s.success() => {}
        other => println!("  (sync before measuring failed: {other:?})"),
    }
    let took = started.elapsed();
    if took > Duration::from_secs(1) {
        println!(
            "  (disk flushed before measuring: {:.1} s)",
            took.as_secs_f64()
        );
    }
}

/// Runs `sync --once` on `client` under the deadline, records a stall, and
/// prints the outcome; returns its wall time when it succeeded.
async fn timed_sync(
    label: &str,
    client: &Client,
    server: &Server,
    deadline: Duration,
    figures: &mut SizeFigures,
) -> anyhow::Result<Option<f64>> {
    quiet_disk();
    let cpu = Cpu::now(server.pid(), None);
    let outcome: SyncOutcome = client.sync_once_within(deadline).await?;
    let cpu_done = Cpu::now(server.pid(), None);
    let secs = outcome.took.as_secs_f64();
    if let Some(why) = outcome.stall() {
        println!("  {label}: STALL after {secs:.2} s: {why}");
        figures.stalls.push(format!("{label}: {why}"));
    }
    // What the client warned about on the way (retries, deadlines passed)
    // explains a slow run that was not a stall.
    let warnings: Vec<&str> = outcome
        .stderr
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    if !warnings.is_empty() {
        println!(
            "  {label}: {} warning(s) on stderr, first ones:",
            warnings.len()
        );
        for line in warnings.iter().take(5) {
            println!("      {line}");
        }
    }
    let Some(summary) = outcome.summary.as_ref().filter(|_| outcome.succeeded()) else {
        return Ok(None);
    };
    let mib = |k: &str| summary[k].as_u64().unwrap_or(0) as f64 / MIB as f64;
    println!(
        "  {label}: {secs:.2} s ({} operations in {} round(s); up {:.1} MiB in {} pack(s), down {:.1} MiB)",
        summary["applied"],
        summary["rounds"],
        mib("bytes_uploaded"),
        summary["packs_uploaded"],
        mib("bytes_downloaded"),
    );
    println!("      {}", cpu_done.since(&cpu, "(no daemon)"));
    Ok(Some(secs))
}

/// Our measurements for one tree, in `dir`.
async fn measure_ours(
    args: &Args,
    bin: &Path,
    dir: &Path,
    src: &Path,
    manifest: &Arc<Manifest>,
    logs: &mut Vec<(String, PathBuf)>,
    figures: &mut SizeFigures,
) -> anyhow::Result<()> {
    let server = Server::start(bin, Backend::Embedded, &dir.join("stacksync")).await?;
    let tag = format!("{}k", manifest.len() / 1000);
    logs.push((format!("server {tag}"), server.log_path()));
    let email = "scale@example.org";
    server.add_user(email)?;
    let mut a = server.client("device-a", email).await?;
    let mut b = server.client("device-b", email).await?;
    if let Some(secs) = args.stall_secs {
        for client in [&mut a, &mut b] {
            client
                .env
                .push(("STACKSYNC_STALL_SECS".into(), secs.to_string()));
        }
    }
    logs.push((format!("device-a daemon {tag}"), a.daemon_log_path()));
    logs.push((format!("device-b daemon {tag}"), b.daemon_log_path()));
    copy_tree(src, &a.folder)?;

    figures.up_s = timed_sync("first sync up (A)", &a, &server, args.deadline, figures).await?;
    figures.down_s = timed_sync("first sync down (B)", &b, &server, args.deadline, figures).await?;
    let left = missing_all(&b.folder, manifest);
    if !left.is_empty() {
        let e = format!(
            "B lacks {} of {} files after its first sync (first: {})",
            left.len(),
            manifest.len(),
            left[0]
        );
        println!("  ERROR: {e}");
        figures.errors.push(e);
    }

    a.start_daemon()?;
    b.start_daemon()?;
    let idle_since = Instant::now();
    let idle = match a.wait_idle_within(args.deadline).await {
        Ok(()) => b.wait_idle_within(args.deadline).await,
        Err(e) => Err(e),
    };
    match idle {
        Ok(()) => {
            println!(
                "  daemons started and reported synced in {:.2} s",
                idle_since.elapsed().as_secs_f64()
            );
            measure_daemon_edits(args, &a, &b, dir, manifest, figures).await?;
        }
        Err(e) => {
            println!("  STALL: {e:#}");
            figures.stalls.push(format!("daemons: {e:#}"));
        }
    }
    figures.rss_a_mib = a.daemon_pid().and_then(peak_rss_mib);
    figures.rss_b_mib = b.daemon_pid().and_then(peak_rss_mib);
    println!(
        "  daemon peak RSS (VmHWM): A {} MiB, B {} MiB",
        fmt(figures.rss_a_mib, 1),
        fmt(figures.rss_b_mib, 1)
    );
    for client in [&a, &b] {
        let n = client.daemon_stalls();
        if n > 0 {
            let lines: Vec<String> = std::fs::read_to_string(client.daemon_log_path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(support::client::STALL_MESSAGE))
                .take(3)
                .map(str::to_owned)
                .collect();
            println!(
                "  STALL: {}'s daemon abandoned {n} round(s): {lines:?}",
                client.name
            );
            figures
                .stalls
                .push(format!("{}'s daemon abandoned {n} round(s)", client.name));
        }
    }
    for client in [&mut a, &mut b] {
        if let Err(e) = client.stop_daemon().await {
            println!("  ERROR: {e:#}");
            figures.errors.push(format!("{e:#}"));
        }
    }
    Ok(())
}

/// Atomic saves of existing files spread over the tree on A's daemon,
/// timed until B's daemon has them.
async fn measure_daemon_edits(
    args: &Args,
    a: &Client,
    b: &Client,
    dir: &Path,
    manifest: &Manifest,
    figures: &mut SizeFigures,
) -> anyhow::Result<()> {
    let paths: Vec<&String> = manifest.keys().collect();
    let mut rng = Rng::new(23);
    let targets = (0..=args.edits)
        .map(|_| paths[rng.below(paths.len() as u64) as usize].clone())
        .collect();
    let plan = EditPlan {
        targets,
        edits: args.edits,
        seed: 29,
        gap: EDIT_GAP,
        deadline: EDIT_DEADLINE,
    };
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    match measure_edits(&a.folder, &b.folder, &scratch, &plan).await {
        Ok(lat) => {
            let p = |q| percentile_ms(&lat.samples, q);
            figures.edits = Some((p(0.5), p(0.99), p(1.0)));
            figures.missed_edits = lat.missed.len();
            println!(
                "  {} edits A -> B (daemons): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {}",
                args.edits,
                p(0.5),
                p(0.99),
                p(1.0),
                histogram(&lat.samples)
            );
            if !lat.missed.is_empty() {
                println!(
                    "  WARNING: {} edit(s) did not reach B within {EDIT_DEADLINE:?} (counted as that): {:?}\n\
                     A's daemon log tail:\n{}\nB's daemon log tail:\n{}",
                    lat.missed.len(),
                    lat.missed,
                    tail(&a.daemon_log_path(), 20),
                    tail(&b.daemon_log_path(), 20)
                );
            }
        }
        Err(e) => {
            println!("  ERROR: edits: {e:#}");
            figures.errors.push(format!("edits: {e:#}"));
        }
    }
    Ok(())
}

/// The peers on the same tree: `rclone copy` into Swift, and Syncthing
/// from A's folder to B's until B holds every file.
async fn measure_peers(
    args: &Args,
    rclone: &Rclone,
    dir: &Path,
    src: &Path,
    manifest: &Arc<Manifest>,
    logs: &mut Vec<(String, PathBuf)>,
    figures: &mut SizeFigures,
) {
    quiet_disk();
    match rclone
        .copy(src, manifest.len(), args.rclone_transfers)
        .await
    {
        Ok(s) => {
            println!("  rclone copy into a fresh Swift container: {s:.2} s");
            figures.rclone_s = Some(s);
        }
        Err(e) => println!("  rclone: not measured: {e:#}"),
    }
    match syncthing_first_sync(args, dir, src, manifest, logs).await {
        Ok(s) => {
            println!(
                "  Syncthing {} A -> B (scan, exchange, every file checked): {s:.2} s",
                syncthing_version()
            );
            figures.syncthing_s = Some(s);
        }
        Err(e) => println!("  Syncthing: not measured: {e:#}"),
    }
}

/// Seconds from sharing A's full folder with B (already connected, its
/// folder empty) until B holds every file.
async fn syncthing_first_sync(
    args: &Args,
    dir: &Path,
    src: &Path,
    manifest: &Arc<Manifest>,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<f64> {
    let root = dir.join("syncthing");
    let mut sa = Syncthing::start(&root, "a").await?;
    let mut sb = Syncthing::start(&root, "b").await?;
    let tag = format!("{}k", manifest.len() / 1000);
    logs.push((format!("syncthing a {tag}"), sa.home.join("syncthing.log")));
    logs.push((format!("syncthing b {tag}"), sb.home.join("syncthing.log")));
    copy_tree(src, &sa.folder)?;
    sa.add_device(&sb)?;
    sb.add_device(&sa)?;
    let started = Instant::now();
    while !(sa.connected_to(&sb) && sb.connected_to(&sa)) {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the instances did not connect within 60 s; a:\n{}\nb:\n{}",
                sa.log_tail(),
                sb.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sb.add_folder(&sa, 1)?;
    quiet_disk();
    let started = Instant::now();
    sa.add_folder(&sb, 1)?;
    // Checking 100k files takes a while: poll less often on big trees.
    let poll = Duration::from_millis((manifest.len() as u64 / 200).clamp(10, 500));
    let result = wait_for_manifest(
        sb.folder.clone(),
        manifest.clone(),
        started,
        args.deadline,
        poll,
    )
    .await;
    sa.stop();
    sb.stop();
    Ok(result?.1.as_secs_f64())
}

/// Everything for one tree size, under `root`.
async fn measure_size(
    args: &Args,
    bin: &Path,
    rclone: Option<&Rclone>,
    files: usize,
    root: &Path,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<SizeFigures> {
    let dir = root.join(format!("n{files}"));
    let src = dir.join("source");
    let manifest = Arc::new(write_tree(&src, files, args.folders, files as u64)?);
    let bytes: u64 = manifest.values().map(|(s, _)| s).sum();
    println!(
        "\n== {files} files in {} folders, {:.1} MiB ==",
        args.folders.min(files),
        bytes as f64 / MIB as f64
    );
    let mut figures = SizeFigures {
        files,
        ..SizeFigures::default()
    };
    measure_ours(args, bin, &dir, &src, &manifest, logs, &mut figures).await?;
    match rclone {
        Some(r) if args.peers_up_to.is_none_or(|max| files <= max) => {
            measure_peers(args, r, &dir, &src, &manifest, logs, &mut figures).await
        }
        _ => println!("  peers: skipped"),
    }
    // The next size starts on a quiet disk; the logs stay for --keep-logs.
    for copy in ["a-folder", "b-folder"] {
        let _ = std::fs::remove_dir_all(dir.join("syncthing").join(copy));
    }
    Ok(figures)
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?).filter(|r| r.is_finite())
}

fn print_table(all: &[SizeFigures]) {
    println!(
        "\n{:>7} | {:>8} | {:>8} | {:>24} | {:>13} | {:>6} | {:>9} | {:>8} | {:>9} | {:>12}",
        "files",
        "up s",
        "down s",
        "edit p50/p99/max ms",
        "RSS A/B MiB",
        "stalls",
        "rclone s",
        "up/rcl",
        "Sthing s",
        "(up+dn)/Sth"
    );
    for f in all {
        let edits = f
            .edits
            .map_or("-".into(), |(a, b, c)| format!("{a:.0}/{b:.0}/{c:.0}"));
        let both = f.up_s.zip(f.down_s).map(|(u, d)| u + d);
        println!(
            "{:>7} | {:>8} | {:>8} | {:>24} | {:>13} | {:>6} | {:>9} | {:>8} | {:>9} | {:>12}",
            f.files,
            fmt(f.up_s, 2),
            fmt(f.down_s, 2),
            edits,
            format!("{}/{}", fmt(f.rss_a_mib, 0), fmt(f.rss_b_mib, 0)),
            f.stalls.len(),
            fmt(f.rclone_s, 2),
            fmt(ratio(f.up_s, f.rclone_s), 2),
            fmt(f.syncthing_s, 2),
            fmt(ratio(both, f.syncthing_s), 2),
        );
    }
    println!(
        "up/rcl: A's first `sync --once` over `rclone copy` of the same tree into Swift; \
         (up+dn)/Sth: A's then B's first `sync --once`, one after the other, over Syncthing's \
         first sync A -> B (below 1: ours is faster)."
    );
}

fn goal(met: Option<bool>, text: &str) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    println!("  {verdict:>12}: {text}");
}

fn print_goals(all: &[SizeFigures]) {
    let at = |n: usize| all.iter().find(|f| f.files == n);
    let stalls: usize = all.iter().map(|f| f.stalls.len()).sum();
    println!("\ngoals:");
    goal(
        Some(stalls == 0),
        &format!("no stall in any run ({stalls} stall(s))"),
    );
    let p50 = |n| at(n).and_then(|f| f.edits).map(|e| e.0);
    let edit_ratio = ratio(p50(LARGE), p50(SMALL));
    goal(
        edit_ratio.map(|r| r <= 1.5),
        &format!(
            "edit p50 at 100k within 1.5x of 1k ({}x)",
            fmt(edit_ratio, 2)
        ),
    );
    let rss = at(LARGE).and_then(SizeFigures::rss_max);
    goal(
        rss.map(|r| r < 150.0),
        &format!("daemon RSS at 100k < 150 MiB ({} MiB)", fmt(rss, 1)),
    );
    let large = at(LARGE);
    let up = large.and_then(|f| f.up_s);
    let both = large.and_then(|f| f.up_s.zip(f.down_s).map(|(u, d)| u + d));
    let vs_rclone = ratio(up, large.and_then(|f| f.rclone_s));
    let vs_syncthing = ratio(both, large.and_then(|f| f.syncthing_s));
    goal(
        vs_rclone.zip(vs_syncthing).map(|(r, s)| r < 1.0 && s < 1.0),
        &format!(
            "first sync of 100k faster than both peers (up/rclone {}x, (up+down)/Syncthing {}x)",
            fmt(vs_rclone, 2),
            fmt(vs_syncthing, 2)
        ),
    );
    // Not a goal, but the trend the edit goal is about when the goal sizes
    // were not both run.
    let smallest = all.iter().min_by_key(|f| f.files);
    let largest = all.iter().max_by_key(|f| f.files);
    if let (Some(first), Some(last)) = (smallest, largest)
        && first.files != last.files
        && let Some(r) = ratio(last.edits.map(|e| e.0), first.edits.map(|e| e.0))
    {
        println!(
            "  (edit p50 at {} files is {r:.2}x the p50 at {} files)",
            last.files, first.files
        );
    }
    for f in all {
        for s in &f.stalls {
            println!("  stall at {} files: {s}", f.files);
        }
        for e in &f.errors {
            println!("  error at {} files: {e}", f.files);
        }
    }
}

fn json_line(all: &[SizeFigures]) -> String {
    let at = |n: usize| all.iter().find(|f| f.files == n);
    let large = at(LARGE);
    let stalls: usize = all.iter().map(|f| f.stalls.len()).sum();
    format!(
        "{{\"bench\":\"scale\",\"stalls\":{stalls},\"first_sync_up_s_100k\":{},\"first_sync_down_s_100k\":{},\
         \"syncthing_first_sync_s_100k\":{},\"rclone_first_sync_s_100k\":{},\"edit_p50_ms_1k\":{},\
         \"edit_p50_ms_100k\":{},\"edit_p99_ms_100k\":{},\"rss_mib_100k\":{}}}",
        json_number(large.and_then(|f| f.up_s), 3),
        json_number(large.and_then(|f| f.down_s), 3),
        json_number(large.and_then(|f| f.syncthing_s), 3),
        json_number(large.and_then(|f| f.rclone_s), 3),
        json_number(at(SMALL).and_then(|f| f.edits).map(|e| e.0), 1),
        json_number(large.and_then(|f| f.edits).map(|e| e.0), 1),
        json_number(large.and_then(|f| f.edits).map(|e| e.1), 1),
        json_number(large.and_then(SizeFigures::rss_max), 1),
    )
}

async fn run(
    args: &Args,
    bin: &Path,
    rclone: Option<&Rclone>,
    root: &Path,
    logs: &mut Vec<(String, PathBuf)>,
    all: &mut Vec<SizeFigures>,
) -> anyhow::Result<()> {
    for &files in &args.sizes {
        all.push(measure_size(args, bin, rclone, files, root, logs).await?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let bin = stacksync_bin()?;
    let rclone = if args.peers {
        Some(Rclone::from_env("scale").context("for the peers (or pass --no-peers)")?)
    } else {
        None
    };
    println!(
        "scale bench: {} on the embedded default; sizes {:?}; peers: {}",
        bin.display(),
        args.sizes,
        match (&rclone, args.peers_up_to) {
            (None, _) => "none".to_owned(),
            (Some(r), None) => format!("Syncthing and rclone into Swift ({})", r.swift_auth),
            (Some(r), Some(max)) => format!(
                "Syncthing and rclone into Swift ({}), up to {max} files",
                r.swift_auth
            ),
        }
    );
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-scale-")
        .tempdir()?;
    let mut logs = Vec::new();
    let mut all = Vec::new();
    // Ctrl-C drops the bench, whose guards kill every process it started;
    // the folder goes when `root` is dropped, after the logs were read.
    let result = tokio::select! {
        r = run(&args, &bin, rclone.as_ref(), root.path(), &mut logs, &mut all) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(dir) = &args.keep_logs {
        keep_logs(dir, &logs);
        println!("logs copied to {}", dir.display());
    }
    if let Err(e) = &result {
        for (name, path) in &logs {
            eprintln!("--- {name} log (last 20 lines) ---\n{}", tail(path, 20));
        }
        eprintln!("error: {e:#}");
    }
    print_table(&all);
    print_goals(&all);
    println!("{}", json_line(&all));
    result
}
