//! `scripts/bench load`: many devices at once on the real backends
//! (PostgreSQL + RabbitMQ + Swift, two `stacksync server` instances), a
//! trace-like workload for a fixed time, then a check that nothing was
//! lost; once as is, once with one server instance SIGKILLed halfway and
//! another started on the same config.
//!
//! Each device is the real client in this process: the sync engine on an
//! in-memory disk with the client's `WorkspaceRemote` and
//! `ChunkedContentStore` over a real direct connection (login over HTTP to
//! one of the servers, RPC and push over RabbitMQ through the shared
//! request queue, chunks to and from Swift), so a request whose server
//! dies is redelivered to another. Every RPC is timed through a wrapper of
//! the client's `Connection`.
//!
//! Workload (Ubuntu One trace, IMC 2015): 59% content updates, 20%
//! creates, 8% reads, 8% deletes, 5% moves; file sizes log-normal with a
//! median of 8 KiB and 90% under 1 MiB, capped at 4 MiB (an update of a
//! file above 64 KiB changes 1-4 KiB in place). A device acts after an
//! exponential think time (mean `--think-ms`) and syncs what it changed;
//! it also syncs when a push for its workspace arrives. `--users` accounts
//! share the devices (by default five devices each).
//!
//! Figures per run: commits/s (versions the service acknowledged), RPC
//! p50/p99 (every RPC of every device, after the client's own retries),
//! push latency p50/p99 (from a commit's reply at its device to the push
//! at each other device of the user), errors (failed RPCs and failed
//! syncs), lost (see below), and each server instance's peak RSS. The
//! baselines are measured in the same run: the devices' RPC p50 when idle
//! (GetWorkspaces before the load) and the no-swap run's commits/s.
//!
//! The lost check (`bench_support/load_check.rs`), after the workload
//! stops and every device synced until nothing is left: every version a
//! device was told was committed is in its item's history as
//! acknowledged; every content a device saved (seen by a sync that
//! skipped nothing, or on its disk at the end) is in some version's
//! history or on the devices; every device of a user holds the server's
//! tree; revisions are 1..=latest, none twice, each item's versions
//! 1..=n. `--plant-loss` makes the check look, for each user, for a
//! made-up version of one acknowledged commit and a made-up content, to
//! show that it fails.
//!
//! The engine's futures are not provably `Send`, so each device runs its
//! workload on a thread of its own (blocking on the shared runtime, whose
//! workers drive the I/O), as the daemon runs its engines unspawned.
//!
//! Usage: bench_load [--devices N] [--users N] [--seconds N] [--seed N]
//!   [--think-ms N] [--initial-files N] [--no-swap | --only-swap]
//!   [--plant-loss] [--keep-logs DIR]
//! (a quick run: `--devices 6 --seconds 10`)
//!
//! Needs STACKSYNC_TEST_POSTGRES, STACKSYNC_TEST_AMQP,
//! STACKSYNC_TEST_AMQP_ADMIN and STACKSYNC_TEST_SWIFT (`scripts/bench load`
//! sets them) and the `stacksync` binary at STACKSYNC_BIN or next to this
//! example's folder. Each run has its own scratch database, bus namespace
//! and containers, removed at its end (on Ctrl-C, the containers stay).
//! The last line of stdout is one JSON object; the exit status is non-zero
//! if anything was lost or a check failed.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use stacksync_engine::Changed;
use stacksync_proto::rpc::Request;
use tokio::sync::watch;

use support::cluster::Cluster;
use support::load_check::{CheckReport, Plant, check_user};
use support::load_device::{Action, Device, DeviceStats};
use support::load_report::{
    CpuFigures, RunFigures, RunInputs, ServerFigures, log_problems, print_run, run_json,
};
use support::proc::{Cpu, proc_cpu};
use support::server::Services;
use support::timed::Recorder;
use support::{json_number, keep_logs, stacksync_bin, tail};

/// How long the devices may take to settle after the workload.
const QUIESCE_DEADLINE: Duration = Duration::from_secs(300);
/// A push is acted on after this pause, so that a burst is one sync.
const PUSH_DEBOUNCE: Duration = Duration::from_millis(50);
/// How long a device may take to finish its sync once told to stop.
const STOP_DEADLINE: Duration = Duration::from_secs(180);

struct Args {
    devices: usize,
    users: usize,
    seconds: u64,
    seed: u64,
    think: Duration,
    initial_files: usize,
    runs: Vec<bool>,
    plant: Plant,
    keep_logs: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        devices: 50,
        users: 0,
        seconds: 60,
        seed: 1,
        think: Duration::from_millis(2000),
        initial_files: 20,
        runs: vec![false, true],
        plant: Plant::default(),
        keep_logs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--devices" => args.devices = value()?.parse().context("--devices")?,
            "--users" => args.users = value()?.parse().context("--users")?,
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--think-ms" => {
                args.think = Duration::from_millis(value()?.parse().context("--think-ms")?)
            }
            "--initial-files" => {
                args.initial_files = value()?.parse().context("--initial-files")?
            }
            "--no-swap" => args.runs = vec![false],
            "--only-swap" => args.runs = vec![true],
            "--plant-loss" => args.plant.loss = true,
            "--keep-logs" => args.keep_logs = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown flag {other} (flags: --devices N, --users N, --seconds N, --seed N, --think-ms N, --initial-files N, --no-swap, --only-swap, --plant-loss, --keep-logs DIR)"
            ),
        }
    }
    if args.devices < 2 {
        bail!("--devices must be at least 2");
    }
    if args.users == 0 {
        args.users = args.devices.div_ceil(5);
    }
    if args.users > args.devices / 2 {
        bail!("every user needs at least two devices: --users at most --devices / 2");
    }
    if args.seconds < 2 {
        bail!("--seconds must be at least 2");
    }
    Ok(args)
}

// ---------------------------------------------------------------- run ---

/// The devices of each user, in user order.
type Groups = Vec<Vec<Device>>;

async fn connect_devices(
    args: &Args,
    cluster: &Cluster,
    recorder: &Arc<Recorder>,
) -> anyhow::Result<Groups> {
    let config = cluster.direct_config();
    let mut plans = Vec::new();
    for d in 0..args.devices {
        let user = d % args.users;
        let name = format!("u{user:02}d{}", d / args.users);
        // Logins alternate between the running instances.
        plans.push((d, user, name, cluster.url(d)?));
    }
    let devices: Vec<anyhow::Result<Device>> = futures::stream::iter(plans)
        .map(|(d, user, name, url)| {
            let (config, recorder) = (config.clone(), recorder.clone());
            async move {
                Device::connect(
                    name,
                    user,
                    &email(user),
                    &url,
                    config,
                    recorder,
                    args.seed.wrapping_mul(1_000_003).wrapping_add(d as u64),
                )
                .await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut groups: Groups = (0..args.users).map(|_| Vec::new()).collect();
    for d in devices {
        let d = d?;
        groups[d.user].push(d);
    }
    for g in &mut groups {
        g.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(groups)
}

fn email(user: usize) -> String {
    format!("load-{user:02}@example.org")
}

/// Each user's first device writes the starting tree; then every device
/// syncs until the user's devices agree.
async fn seed_trees(groups: &mut Groups, files: usize) -> anyhow::Result<()> {
    let results = futures::future::join_all(groups.iter_mut().map(|g| async move {
        g[0].write_initial(files);
        g[0].sync_watched().await?;
        for d in g.iter_mut() {
            d.sync(Changed::Anywhere).await?;
        }
        Ok::<_, String>(())
    }))
    .await;
    for r in results {
        r.map_err(|e| anyhow::anyhow!("seeding the starting trees: {e}"))?;
    }
    Ok(())
}

/// Every device's GetWorkspaces round trip, one at a time on a quiet
/// system: the RPC latency the load is compared with.
async fn idle_rpcs(groups: &Groups) -> Vec<Duration> {
    let mut out = Vec::new();
    for d in groups.iter().flatten() {
        for _ in 0..3 {
            let started = Instant::now();
            if d.conn().rpc(Request::GetWorkspaces).await.is_ok() {
                out.push(started.elapsed());
            }
        }
    }
    out
}

/// One device's workload until `stop`: act after each think time and
/// sync what changed; sync after pushes.
async fn workload(mut d: Device, think: Duration, mut stop: watch::Receiver<bool>) -> Device {
    let push = d.push.clone();
    let mut next_action = tokio::time::Instant::now() + d.think(think);
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => break,
            _ = push.notified() => {
                tokio::time::sleep(PUSH_DEBOUNCE).await;
                d.stats.push_syncs += 1;
                let _ = d.sync_watched().await;
            }
            _ = tokio::time::sleep_until(next_action) => {
                if d.act().await != Action::Read {
                    let _ = d.sync_watched().await;
                }
                next_action = tokio::time::Instant::now() + d.think(think);
            }
        }
    }
    d
}

/// Every device syncs in turn (each user's devices in parallel with the
/// other users') until a whole pass changes nothing; returns the failures.
async fn quiesce(groups: &mut Groups) -> Vec<String> {
    let deadline = Instant::now() + QUIESCE_DEADLINE;
    let results = futures::future::join_all(groups.iter_mut().map(|g| async move {
        for d in g.iter_mut() {
            d.save_all();
        }
        for _pass in 0..30 {
            let mut quiet = true;
            for d in g.iter_mut() {
                match d.sync(Changed::Anywhere).await {
                    Ok(r) if r.converged && r.applied == 0 && r.rounds <= 1 => {}
                    _ => quiet = false,
                }
            }
            if quiet {
                return Ok(());
            }
            if Instant::now() > deadline {
                break;
            }
        }
        Err(format!("the devices of {} did not settle", g[0].name))
    }))
    .await;
    results.into_iter().filter_map(Result::err).collect()
}

async fn run(
    args: &Args,
    swap: bool,
    bin: &Path,
    services: &Services,
    root: &Path,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<RunFigures> {
    let label = if swap { "swap" } else { "no-swap" };
    println!("{label} run: starting two server instances");
    let mut cluster = Cluster::create(bin, services, &root.join(label))?;
    let result = run_on(args, swap, &mut cluster).await;
    for i in &cluster.instances {
        logs.push((format!("{label} {}", i.name), i.log.clone()));
    }
    if result.is_err() {
        for i in &cluster.instances {
            eprintln!(
                "--- {} log (last 20 lines) ---\n{}",
                i.name,
                tail(&i.log, 20)
            );
        }
    }
    cluster.shut_down().await;
    result
}

async fn run_on(args: &Args, swap: bool, cluster: &mut Cluster) -> anyhow::Result<RunFigures> {
    cluster.start_instance("server-a").await?;
    cluster.start_instance("server-b").await?;
    for u in 0..args.users {
        cluster.add_user(&email(u))?;
    }
    let recorder = Arc::new(Recorder::default());
    let started = Instant::now();
    let progress = |what: &str| println!("  [{:5.1} s] {what}", started.elapsed().as_secs_f64());
    progress("servers ready; connecting the devices");
    let mut groups = connect_devices(args, cluster, &recorder).await?;
    progress("devices connected; writing and syncing the starting trees");
    seed_trees(&mut groups, args.initial_files).await?;
    let idle = idle_rpcs(&groups).await;
    progress("starting trees synced; the workload starts");
    let devices_of: HashMap<_, usize> = groups
        .iter()
        .map(|g| (g[0].workspace.id, g.len()))
        .collect();

    // The measured window.
    let (stop_tx, stop_rx) = watch::channel(false);
    for d in groups.iter_mut().flatten() {
        // The figures are the window's: the starting trees do not count.
        d.stats = DeviceStats::default();
    }
    let (machine0, devices0, servers0) = (
        Cpu::now(None, None),
        proc_cpu("self", false),
        cluster.cpu_s(),
    );
    let t0 = Instant::now();
    // The engine's futures are not `Send` as far as the compiler can
    // prove (as the daemon, which never spawns them, does not need), so
    // each device runs on a thread of its own, blocking on its workload
    // while the runtime's workers drive the I/O.
    let runtime = tokio::runtime::Handle::current();
    let mut finished = Vec::new();
    for d in groups.into_iter().flatten() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (runtime, stop, think) = (runtime.clone(), stop_rx.clone(), args.think);
        std::thread::Builder::new()
            .name(d.name.clone())
            .spawn(move || {
                let _ = tx.send(runtime.block_on(workload(d, think, stop)));
            })
            .context("starting a device's thread")?;
        finished.push(rx);
    }
    let window = Duration::from_secs(args.seconds);
    let mut killed_at = None;
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500).min(window.saturating_sub(t0.elapsed())))
            .await;
        cluster.sample_rss();
        if swap && killed_at.is_none() && t0.elapsed() >= window / 2 {
            progress(&format!(
                "{:.1} s into the workload: SIGKILL server-a; starting server-c on the same config",
                t0.elapsed().as_secs_f64()
            ));
            killed_at = Some(Instant::now());
            cluster.kill_instance(0).await;
            cluster.start_instance("server-c").await?;
            progress("server-c is ready");
        }
    }
    let _ = stop_tx.send(true);
    let t_end = Instant::now();
    let machine1 = Cpu::now(None, None);
    let cpu = CpuFigures {
        machine_busy_pct: machine1.machine_busy_pct(&machine0),
        devices_s: proc_cpu("self", false) - devices0,
        servers_s: cluster.cpu_s() - servers0,
        swift_s: machine1.swift_since(&machine0),
    };
    let mut groups: Groups = (0..args.users).map(|_| Vec::new()).collect();
    for rx in finished {
        let d = tokio::time::timeout(STOP_DEADLINE, rx)
            .await
            .context("a device did not finish its sync after the workload stopped")?
            .context("a device's thread failed")?;
        groups[d.user].push(d);
    }
    cluster.sample_rss();

    // Settle, then check.
    let settle_started = Instant::now();
    progress("workload stopped; devices settling");
    let unsettled = quiesce(&mut groups).await;
    progress("devices settled; checking");
    let quiesce_s = settle_started.elapsed().as_secs_f64();
    let mut check = CheckReport::default();
    check.diverged.extend(unsettled);
    let commits = recorder.commits();
    for g in &groups {
        let ws = g[0].workspace.id;
        let acked: Vec<_> = commits
            .iter()
            .filter(|c| c.meta.workspace == ws)
            .cloned()
            .collect();
        let refs: Vec<&Device> = g.iter().collect();
        check_user(&refs, &acked, args.plant, &mut check).await;
    }
    cluster.sample_rss();

    // Figures.
    let mut stats = DeviceStats::default();
    for d in groups.iter().flatten() {
        stats.add(&d.stats);
    }
    progress("checked; stopping the servers");
    cluster.stop_all().await;
    let servers = cluster
        .instances
        .iter_mut()
        .map(|i| ServerFigures {
            name: i.name.clone(),
            peak_rss_mib: i.peak_rss_mib(),
            served: i.served(),
        })
        .collect();
    let server_log_problems = cluster
        .instances
        .iter()
        .flat_map(|i| log_problems(&i.name, &i.log))
        .collect();
    let inputs = RunInputs {
        swap,
        devices: args.devices,
        users: args.users,
        t0,
        t_end,
        killed_at,
        stats,
        idle,
        devices_of,
        cpu,
        check,
        quiesce_s,
        servers,
        server_log_problems,
    };
    Ok(RunFigures::compute(&recorder, inputs))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let services = Services::from_env("load")?;
    let bin = stacksync_bin()?;
    println!(
        "load bench: {} devices of {} users, {} s per run, think time mean {} ms, seed {}; two `stacksync server` instances ({}) on PostgreSQL + RabbitMQ + Swift ({}); {} cores",
        args.devices,
        args.users,
        args.seconds,
        args.think.as_millis(),
        args.seed,
        bin.display(),
        services.swift.swift_auth,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-load-")
        .tempdir()?;
    let mut logs = Vec::new();
    let mut figures = Vec::new();
    let mut failure = None;
    for &swap in &args.runs {
        // Ctrl-C drops the run, whose guards kill the servers, drop the
        // scratch database and withdraw the broker's leftovers.
        let result = tokio::select! {
            r = run(&args, swap, &bin, &services, root.path(), &mut logs) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        match result {
            Ok(f) => {
                print_run(&f);
                figures.push(f);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(dir) = &args.keep_logs {
        keep_logs(dir, &logs);
        println!("logs copied to {}", dir.display());
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let plain = figures.iter().find(|f| !f.inputs.swap);
    let swapped = figures.iter().find(|f| f.inputs.swap);
    if let (Some(p), Some(s)) = (plain, swapped) {
        println!(
            "swap vs no swap: commits/s {:.1} vs {:.1} = {:.2}x; RPC p99 {:.1} vs {:.1} ms; errors {} vs {}",
            s.commits_per_s(),
            p.commits_per_s(),
            s.commits_per_s() / p.commits_per_s(),
            s.rpc_p99_ms,
            p.rpc_p99_ms,
            s.errors(),
            p.errors()
        );
    }
    let runs: Vec<String> = figures.iter().map(run_json).collect();
    let ratio = match (plain, swapped) {
        (Some(p), Some(s)) => json_number(Some(s.commits_per_s() / p.commits_per_s()), 3),
        _ => "null".into(),
    };
    println!(
        "{{\"bench\":\"load\",\"devices\":{},\"users\":{},\"seconds\":{},\"think_ms\":{},\"seed\":{},\"swap_vs_no_swap_commits\":{ratio},\"runs\":[{}]}}",
        args.devices,
        args.users,
        args.seconds,
        args.think.as_millis(),
        args.seed,
        runs.join(",")
    );
    let lost: usize = figures.iter().map(|f| f.inputs.check.lost()).sum();
    if lost > 0 {
        bail!("{lost} commits or contents were lost");
    }
    if let Some(f) = figures.iter().find(|f| !f.inputs.check.passed()) {
        bail!(
            "the {} run's check failed (devices diverged, revision problems or failed reads)",
            if f.inputs.swap { "swap" } else { "no-swap" }
        );
    }
    Ok(())
}
