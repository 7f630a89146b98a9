//! `scripts/bench elasticity`: sync-service instances added and removed
//! under a bursty load by a scaling policy driven by the request queue's
//! depth, and a check that no commit was lost on the way.
//!
//! The load: `--devices` simulated devices (`bench_support/rpc_load.rs`)
//! of `--users` accounts send the metadata RPCs of sync clients through
//! RabbitMQ (commits of the next version of their own item, `--commit-pct`
//! percent; the rest read the change feed from their cursor), each after
//! an exponential think time (mean `--think-ms`), one request at a time.
//! How many devices act follows the profile over `--seconds`: a tenth of
//! them for the first 10%, a ramp up to all of them until 35%, the peak
//! until 55%, a ramp down until 75%, a tenth again to the end (long enough
//! for the queue to drain and the instances to be scaled in).
//!
//! The instances: `stacksync server` processes on one config
//! (`bench_support/server_pool.rs`: PostgreSQL, RabbitMQ, local blobs; no
//! Swift, the load is metadata only), each taking at most `--prefetch`
//! requests at a time from the shared queue. The policy is KEDA's RabbitMQ
//! scaler in `QueueLength` mode under the Horizontal Pod Autoscaler's
//! rules: every second it reads the queue's `messages` (ready +
//! unacknowledged) from the management API, wants `ceil(messages /
//! --target)` instances within `--min`..`--max`, starts the missing ones at
//! once, and removes instances only down to the highest count it wanted
//! during the last `--cooldown` seconds (the scale-in stabilization
//! window), newest first, by SIGTERM: the instance stops taking requests,
//! finishes and answers the ones it started, and those it had prefetched
//! go back to the queue for the others.
//!
//! Every second: time, instances serving, requests answered per second,
//! the queue's depth (as the management API last reported it: the broker
//! refreshes it every `collect_statistics_interval`, 5 s by default), and
//! the devices acting. The samples go to `--out`/elasticity.csv and the
//! figure (instances and requests per second over time, the queue and the
//! offered load below) to `--out`/elasticity.png, drawn by gnuplot.
//!
//! The baseline, in the same run and on the same database: one fixed
//! instance under the peak's load (every device acting) for
//! `--baseline-seconds`: its requests per second and latency.
//!
//! The check, after both: every device stops after its current request
//! (each answered, retried until then); every version a device was told
//! was committed must be its item's version in the database with its
//! content, versions 1..=n and nothing more (nothing applied twice); every
//! logical request must have been answered. `lost_commits` counts what
//! failed (missing, different, extra versions and unanswered commits).
//!
//! Usage: bench_elasticity [--devices N] [--users N] [--seconds N]
//!   [--think-ms N] [--commit-pct N] [--target N] [--min N] [--max N]
//!   [--cooldown N] [--prefetch N] [--baseline-seconds N] [--seed N]
//!   [--out DIR] [--keep-logs DIR]
//!
//! Needs STACKSYNC_TEST_POSTGRES, STACKSYNC_TEST_AMQP and
//! STACKSYNC_TEST_AMQP_ADMIN (`scripts/bench elasticity` sets them), the
//! `stacksync` binary (STACKSYNC_BIN or next to this example's folder) and
//! gnuplot for the figure. The last line of stdout is one JSON object; the
//! exit status is non-zero if a commit was lost.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::{Connection, Row};
use stacksync_bus::{Bus, BusConfig, QueueKind};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ItemId, UserId};
use tokio::task::JoinHandle;

use support::data::Rng;
use support::rpc_load::{Load, SimDevice, rpc, run_device};
use support::server_pool::{PoolInstance, QueueDepth, QueueProbe, ServerPool, Stopped};
use support::{json_number, keep_logs, stacksync_bin, tail};

/// How often the policy looks and a sample is taken.
const TICK: Duration = Duration::from_secs(1);
/// Bus connections the devices share.
const BUS_CONNECTIONS: usize = 4;
/// How long the queue may take to drain between the runs.
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);

struct Args {
    devices: usize,
    users: usize,
    seconds: u64,
    think: Duration,
    commit_pct: u64,
    target: u64,
    min: usize,
    max: usize,
    cooldown: Duration,
    prefetch: u16,
    baseline_seconds: u64,
    seed: u64,
    out: PathBuf,
    keep_logs: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        devices: 300,
        users: 30,
        seconds: 180,
        think: Duration::from_millis(150),
        commit_pct: 70,
        target: 20,
        min: 1,
        max: 5,
        cooldown: Duration::from_secs(20),
        prefetch: 4,
        baseline_seconds: 30,
        seed: 1,
        out: PathBuf::from("target/bench"),
        keep_logs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--devices" => args.devices = value()?.parse().context("--devices")?,
            "--users" => args.users = value()?.parse().context("--users")?,
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--think-ms" => {
                args.think = Duration::from_millis(value()?.parse().context("--think-ms")?)
            }
            "--commit-pct" => args.commit_pct = value()?.parse().context("--commit-pct")?,
            "--target" => args.target = value()?.parse().context("--target")?,
            "--min" => args.min = value()?.parse().context("--min")?,
            "--max" => args.max = value()?.parse().context("--max")?,
            "--cooldown" => {
                args.cooldown = Duration::from_secs(value()?.parse().context("--cooldown")?)
            }
            "--prefetch" => args.prefetch = value()?.parse().context("--prefetch")?,
            "--baseline-seconds" => {
                args.baseline_seconds = value()?.parse().context("--baseline-seconds")?
            }
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--out" => args.out = PathBuf::from(value()?),
            "--keep-logs" => args.keep_logs = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown flag {other} (flags: --devices N, --users N, --seconds N, --think-ms N, --commit-pct N, --target N, --min N, --max N, --cooldown N, --prefetch N, --baseline-seconds N, --seed N, --out DIR, --keep-logs DIR)"
            ),
        }
    }
    if args.users == 0 || args.users > args.devices {
        bail!("--users must be between 1 and --devices");
    }
    if args.min == 0 || args.max < args.min {
        bail!("need 1 <= --min <= --max");
    }
    if args.target == 0 || args.seconds < 10 || args.commit_pct > 100 {
        bail!("need --target >= 1, --seconds >= 10 and --commit-pct <= 100");
    }
    Ok(args)
}

/// The share of devices acting at fraction `x` of the profile.
fn profile(x: f64) -> f64 {
    const BASE: f64 = 0.1;
    let ramp = |from: f64, to: f64, a: f64, b: f64| from + (to - from) * (x - a) / (b - a);
    match x {
        x if x < 0.10 => BASE,
        x if x < 0.35 => ramp(BASE, 1.0, 0.10, 0.35),
        x if x < 0.55 => 1.0,
        x if x < 0.75 => ramp(1.0, BASE, 0.55, 0.75),
        _ => BASE,
    }
}

/// One row of the samples.
#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    active: usize,
    instances: usize,
    starting: usize,
    stopping: usize,
    requests_per_s: f64,
    depth: QueueDepth,
    desired: usize,
}

/// The instances and the policy's memory.
struct Fleet {
    serving: Vec<PoolInstance>,
    starting: Vec<JoinHandle<anyhow::Result<PoolInstance>>>,
    stopping: Vec<JoinHandle<Stopped>>,
    stopped: Vec<Stopped>,
    started: usize,
    /// (when, instances wanted) over the stabilization window.
    wanted: Vec<(Instant, usize)>,
    /// Every instance's log, for `--keep-logs` and failures.
    logs: Vec<(String, PathBuf)>,
    peak: usize,
    events: Vec<String>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            serving: Vec::new(),
            starting: Vec::new(),
            stopping: Vec::new(),
            stopped: Vec::new(),
            started: 0,
            wanted: Vec::new(),
            logs: Vec::new(),
            peak: 0,
            events: Vec::new(),
        }
    }

    fn start(&mut self, pool: &ServerPool) {
        self.started += 1;
        let name = format!("server-{}", self.started);
        self.logs
            .push((name.clone(), pool.dir.join(format!("{name}.log"))));
        self.starting.push(pool.spawn_start(name));
    }

    fn stop_newest(&mut self, t: f64) {
        if let Some(i) = self.serving.pop() {
            self.events.push(format!("{t:6.1} s  SIGTERM {}", i.name));
            self.stopping.push(i.terminate());
        }
    }

    /// Collects finished starts and stops.
    async fn reap(&mut self, t: f64) -> anyhow::Result<()> {
        let mut i = 0;
        while i < self.starting.len() {
            if self.starting[i].is_finished() {
                let instance = self.starting.remove(i).await??;
                self.events
                    .push(format!("{t:6.1} s  {} ready", instance.name));
                self.serving.push(instance);
            } else {
                i += 1;
            }
        }
        self.peak = self.peak.max(self.serving.len());
        let mut i = 0;
        while i < self.stopping.len() {
            if self.stopping[i].is_finished() {
                let s = self.stopping.remove(i).await?;
                self.events.push(format!(
                    "{t:6.1} s  {} stopped after {:.1} s ({}, served {})",
                    s.name,
                    s.took.as_secs_f64(),
                    if s.clean { "exit 0" } else { "KILLED" },
                    s.served.map_or("?".into(), |n| n.to_string())
                ));
                self.stopped.push(s);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// KEDA's QueueLength target under the HPA's rules: scale out at once,
    /// scale in to the highest want of the stabilization window.
    fn scale(&mut self, pool: &ServerPool, args: &Args, messages: u64, t: f64) -> usize {
        let desired = (messages.div_ceil(args.target) as usize).clamp(args.min, args.max);
        let now = Instant::now();
        self.wanted.push((now, desired));
        self.wanted
            .retain(|(at, _)| now.duration_since(*at) <= args.cooldown);
        let current = self.serving.len() + self.starting.len();
        if desired > current {
            self.events.push(format!(
                "{t:6.1} s  queue {messages} -> want {desired}: starting {}",
                desired - current
            ));
            for _ in current..desired {
                self.start(pool);
            }
        } else if self.starting.is_empty() {
            let keep = self.wanted.iter().map(|(_, n)| *n).max().unwrap_or(desired);
            for _ in keep..current {
                self.stop_newest(t);
            }
        }
        desired
    }

    /// Stops every instance by SIGTERM and waits.
    async fn stop_all(&mut self) -> anyhow::Result<()> {
        for s in std::mem::take(&mut self.starting) {
            if let Ok(Ok(i)) = s.await {
                self.serving.push(i);
            }
        }
        while !self.serving.is_empty() {
            self.stop_newest(f64::NAN);
        }
        for s in std::mem::take(&mut self.stopping) {
            self.stopped.push(s.await?);
        }
        Ok(())
    }
}

/// The devices of the run, set up over the bus.
async fn make_devices(
    args: &Args,
    pool: &ServerPool,
    buses: &[Bus],
    load: &Load,
) -> anyhow::Result<Vec<SimDevice>> {
    let mut users = Vec::new();
    for u in 0..args.users {
        users.push(pool.add_user(&format!("elastic-{u:03}@example.org"))?);
    }
    // Sessions as the gateway's login makes them (logins go over HTTPS,
    // never the bus; one session per device).
    let store = stacksync_metastore::MetaStore::connect(&pool.db_url)
        .await
        .context("opening the scratch database")?;
    let mut tokens = Vec::new();
    for d in 0..args.devices {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        store
            .create_session(
                UserId(users[d % args.users]),
                &stacksync_service::token_hash(&token),
                i64::MAX / 2,
            )
            .await
            .context("storing a session")?;
        tokens.push(token);
    }
    store.close().await;
    let mut devices = Vec::new();
    for (d, token) in tokens.into_iter().enumerate() {
        let bus = &buses[d % buses.len()];
        let Reply::Device(device) = rpc(
            bus,
            load,
            &token,
            Request::UpdateDevice {
                id: None,
                name: format!("device {d}"),
                os: String::new(),
                app_version: String::new(),
            },
        )
        .await?
        else {
            bail!("UpdateDevice answered something else than a device");
        };
        let Reply::Workspaces { workspaces } =
            rpc(bus, load, &token, Request::GetWorkspaces).await?
        else {
            bail!("GetWorkspaces answered something else");
        };
        let workspace = workspaces.first().context("a user without a workspace")?.id;
        devices.push(SimDevice {
            index: d,
            token,
            device: device.id,
            workspace,
            item: ItemId::new(),
            acked: Vec::new(),
            cursor: 0,
            broken: false,
            rng: Rng::new(args.seed.wrapping_mul(1_000_003).wrapping_add(d as u64)),
        });
    }
    Ok(devices)
}

/// What one phase (elastic or baseline) measured.
struct Phase {
    samples: Vec<Sample>,
    /// Requests answered over the whole phase, per second.
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    answered: u64,
}

/// Runs the devices for `seconds`, sampling every [`TICK`]; with
/// `elastic`, the policy scales the fleet, else it stays as it is and
/// every device acts.
#[allow(clippy::too_many_arguments)]
async fn run_phase(
    label: &str,
    args: &Args,
    seconds: u64,
    elastic: bool,
    pool: &ServerPool,
    fleet: &mut Fleet,
    probe: &QueueProbe,
    load: &Arc<Load>,
    devices: Vec<SimDevice>,
    buses: &[Bus],
) -> anyhow::Result<(Phase, Vec<SimDevice>)> {
    load.stop.store(false, Ordering::Relaxed);
    let n = devices.len();
    load.active
        .store(if elastic { scaled(n, 0.0) } else { n }, Ordering::Relaxed);
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let bus = buses[d.index % buses.len()].clone();
            tokio::spawn(run_device(d, bus, load.clone()))
        })
        .collect();
    let phase_t0 = load.t0.elapsed().as_secs_f64();
    let started = Instant::now();
    let window = Duration::from_secs(seconds);
    let mut samples = Vec::new();
    let mut last_depth = QueueDepth::default();
    let mut last_completed = load.completed.load(Ordering::Relaxed);
    let first_completed = last_completed;
    let mut last_tick = Instant::now();
    let mut next = tokio::time::Instant::now() + TICK;
    println!("{label}: {seconds} s");
    while started.elapsed() < window {
        tokio::time::sleep_until(next).await;
        next += TICK;
        let t = started.elapsed().as_secs_f64();
        fleet.reap(t).await?;
        if let Ok(d) = probe.read().await {
            last_depth = d;
        }
        let desired = if elastic {
            fleet.scale(pool, args, last_depth.messages, t)
        } else {
            fleet.serving.len()
        };
        let active = if elastic {
            scaled(n, t / seconds as f64)
        } else {
            n
        };
        load.active.store(active, Ordering::Relaxed);
        let completed = load.completed.load(Ordering::Relaxed);
        let dt = last_tick.elapsed().as_secs_f64();
        last_tick = Instant::now();
        let s = Sample {
            t,
            active,
            instances: fleet.serving.len(),
            starting: fleet.starting.len(),
            stopping: fleet.stopping.len(),
            requests_per_s: (completed - last_completed) as f64 / dt,
            depth: last_depth,
            desired,
        };
        last_completed = completed;
        if samples.len() % 10 == 9 {
            println!(
                "  [{:5.1} s] devices acting {:>4}, instances {} (+{} starting, {} stopping), {:>6.1} requests/s, queue {} ({} ready, {} unacked)",
                s.t,
                s.active,
                s.instances,
                s.starting,
                s.stopping,
                s.requests_per_s,
                s.depth.messages,
                s.depth.ready,
                s.depth.unacked
            );
        }
        samples.push(s);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let answered = load.completed.load(Ordering::Relaxed) - first_completed;
    let phase_t1 = load.t0.elapsed().as_secs_f64();
    // Every device finishes its current request (answered, whatever it
    // takes) before the next phase.
    load.stop.store(true, Ordering::Relaxed);
    let mut devices = Vec::new();
    for t in tasks {
        devices.push(t.await.context("a device's task failed")?);
    }
    devices.sort_by_key(|d| d.index);
    let lat = load.latencies_ms(phase_t0, phase_t1);
    Ok((
        Phase {
            samples,
            requests_per_s: answered as f64 / elapsed,
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            answered,
        },
        devices,
    ))
}

fn scaled(devices: usize, x: f64) -> usize {
    ((devices as f64 * profile(x)).round() as usize).clamp(1, devices)
}

/// Nearest-rank percentile (NaN without samples).
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Waits until the queue holds nothing (as the management API says).
async fn drain(probe: &QueueProbe) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if probe.read().await.is_ok_and(|d| d.messages == 0) {
            return Ok(());
        }
        if started.elapsed() > DRAIN_DEADLINE {
            bail!("the request queue did not drain within {DRAIN_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the database holds against what the devices were told.
#[derive(Default)]
struct Check {
    acked: u64,
    stored: u64,
    /// Acknowledged versions missing from the database.
    missing: u64,
    /// Stored versions whose content is not the acknowledged one.
    different: u64,
    /// Versions stored beyond what the device was told (applied twice or
    /// never answered).
    extra: u64,
}

async fn check(db_url: &str, devices: &[SimDevice]) -> anyhow::Result<Check> {
    let mut db = sqlx::AnyConnection::connect(db_url).await?;
    let rows = sqlx::query("SELECT item_id, version, content_hash FROM item_versions")
        .fetch_all(&mut db)
        .await?;
    let mut stored: HashMap<String, Vec<(i64, Option<String>)>> = HashMap::new();
    for r in rows {
        stored
            .entry(r.try_get::<String, _>(0)?)
            .or_default()
            .push((r.try_get(1)?, r.try_get(2)?));
    }
    let mut c = Check::default();
    for d in devices {
        let mut versions = stored.remove(&d.item.to_string()).unwrap_or_default();
        versions.sort();
        c.acked += d.acked.len() as u64;
        c.stored += versions.len() as u64;
        let by_version: HashMap<i64, Option<String>> = versions.iter().cloned().collect();
        for (k, hash) in d.acked.iter().enumerate() {
            match by_version.get(&(k as i64 + 1)) {
                None => c.missing += 1,
                Some(h) if h.as_deref() != Some(hash.to_hex().as_str()) => c.different += 1,
                Some(_) => {}
            }
        }
        c.extra += versions
            .iter()
            .filter(|(v, _)| *v < 1 || *v > d.acked.len() as i64)
            .count() as u64;
    }
    db.close().await?;
    Ok(c)
}

fn write_csv(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut text = String::from(
        "t_s,instances,requests_per_s,queue_messages,queue_ready,queue_unacked,devices_acting,instances_wanted,starting,stopping\n",
    );
    for s in samples {
        let _ = writeln!(
            text,
            "{:.1},{},{:.1},{},{},{},{},{},{},{}",
            s.t,
            s.instances,
            s.requests_per_s,
            s.depth.messages,
            s.depth.ready,
            s.depth.unacked,
            s.active,
            s.desired,
            s.starting,
            s.stopping
        );
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Draws the figure with gnuplot; the reason when it could not.
fn plot(csv: &Path, png: &Path, args: &Args, baseline_rps: f64) -> Result<(), String> {
    let script = format!(
        "set datafile separator ','\n\
         set terminal pngcairo size 1100,800 font ',10'\n\
         set output '{png}'\n\
         set multiplot layout 2,1 title 'StackSync elasticity: {devices} devices, target {target} messages per instance, {min}-{max} instances, {cooldown} s scale-in window'\n\
         set grid\n\
         set key top left\n\
         set xlabel 'time (s)'\n\
         set ylabel 'requests answered per second'\n\
         set y2label 'instances'\n\
         set ytics nomirror\n\
         set y2tics 1\n\
         set yrange [0:*]\n\
         set y2range [0:{y2max}]\n\
         plot '{csv}' skip 1 using 1:3 with lines lw 1.5 title 'requests/s', \
              '{csv}' skip 1 using 1:2 axes x1y2 with steps lw 2.5 title 'instances serving', \
              {baseline:.1} with lines dt 2 lc rgb 'gray40' title 'one fixed instance at the peak (baseline)'\n\
         set ylabel 'messages in the request queue'\n\
         set y2label 'devices acting'\n\
         set y2tics auto\n\
         set y2range [0:*]\n\
         plot '{csv}' skip 1 using 1:4 with lines lw 1.5 title 'queue depth (management API)', \
              '{csv}' skip 1 using 1:7 axes x1y2 with lines dt 3 lw 1.5 title 'devices acting (offered load)'\n\
         unset multiplot\n",
        png = png.display(),
        csv = csv.display(),
        devices = args.devices,
        target = args.target,
        min = args.min,
        max = args.max,
        cooldown = args.cooldown.as_secs(),
        y2max = args.max + 1,
        baseline = if baseline_rps.is_finite() {
            baseline_rps
        } else {
            0.0
        },
    );
    let gp = csv.with_extension("gp");
    std::fs::write(&gp, script).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("gnuplot")
        .arg(&gp)
        .output()
        .map_err(|e| format!("gnuplot could not run ({e}); install gnuplot-nox"))?;
    if !out.status.success() {
        return Err(format!(
            "gnuplot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

async fn run(args: &Args, root: &Path, logs: &mut Vec<(String, PathBuf)>) -> anyhow::Result<bool> {
    let bin = stacksync_bin()?;
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .with_context(|| {
                format!("{name} is not set: run this through `scripts/bench elasticity`")
            })
    };
    let (pg, amqp, admin) = (
        var("STACKSYNC_TEST_POSTGRES")?,
        var("STACKSYNC_TEST_AMQP")?,
        var("STACKSYNC_TEST_AMQP_ADMIN")?,
    );
    println!(
        "elasticity bench: {} devices of {} users, think time mean {} ms, {}% commits; profile {} s; \
         policy: target {} messages per instance, {}..={} instances, {} s scale-in window; prefetch {} per instance; \
         baseline {} s of one instance at the peak; {} cores",
        args.devices,
        args.users,
        args.think.as_millis(),
        args.commit_pct,
        args.seconds,
        args.target,
        args.min,
        args.max,
        args.cooldown.as_secs(),
        args.prefetch,
        args.baseline_seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let pool = ServerPool::create(&bin, &pg, &amqp, &admin, &root.join("pool"), args.prefetch)?;
    let probe = QueueProbe::new(&admin, &pool.request_queue())?;
    let mut fleet = Fleet::new();
    let result = run_on(args, &pool, &probe, &mut fleet, &amqp).await;
    let stop = fleet.stop_all().await;
    logs.extend(fleet.logs.iter().cloned());
    if result.is_err() {
        for (name, log) in &fleet.logs {
            eprintln!("--- {name} log (last 20 lines) ---\n{}", tail(log, 20));
        }
    }
    let (summary, devices) = result?;
    stop?;
    print_events(&fleet);
    let served: Vec<String> = fleet
        .stopped
        .iter()
        .map(|s| {
            format!(
                "{} {}{}",
                s.name,
                s.served.map_or("?".into(), |n| n.to_string()),
                if s.clean { "" } else { " (killed)" }
            )
        })
        .collect();
    println!(
        "requests served per instance (as each said at its stop): {}",
        served.join(", ")
    );
    let check = check(&pool.db_url, &devices).await?;
    Ok(report(args, &summary, &check, &fleet))
}

struct Summary {
    elastic: Phase,
    baseline: Option<Phase>,
    load: Arc<Load>,
    csv: PathBuf,
    png: Result<PathBuf, String>,
}

async fn run_on(
    args: &Args,
    pool: &ServerPool,
    probe: &QueueProbe,
    fleet: &mut Fleet,
    amqp: &str,
) -> anyhow::Result<(Summary, Vec<SimDevice>)> {
    let started = Instant::now();
    let progress = |what: &str| println!("  [{:5.1} s] {what}", started.elapsed().as_secs_f64());
    for _ in 0..args.min {
        fleet.start(pool);
    }
    while !fleet.starting.is_empty() {
        fleet.reap(0.0).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet.events.clear();
    progress(&format!(
        "{} instance(s) ready; adding users and devices",
        args.min
    ));
    let mut buses = Vec::new();
    for _ in 0..BUS_CONNECTIONS {
        let mut config = BusConfig::new(amqp.to_owned(), pool.namespace.clone());
        config.queue_kind = QueueKind::Classic;
        config.rpc_timeout = support::rpc_load::ATTEMPT_TIMEOUT;
        buses.push(
            Bus::rabbitmq(config)
                .await
                .context("connecting to RabbitMQ")?,
        );
    }
    let load = Arc::new(Load::new(args.commit_pct, args.think));
    let devices = make_devices(args, pool, &buses, &load).await?;
    progress("devices registered; the elastic run starts");
    let (elastic, devices) = run_phase(
        "elastic run",
        args,
        args.seconds,
        true,
        pool,
        fleet,
        probe,
        &load,
        devices,
        &buses,
    )
    .await?;
    std::fs::create_dir_all(&args.out)?;
    let csv = args.out.join("elasticity.csv");
    write_csv(&csv, &elastic.samples)?;
    progress(&format!(
        "elastic run over: {:.1} requests/s on average; draining, then down to one instance",
        elastic.requests_per_s
    ));
    drain(probe).await?;
    // Instances still starting join first, so that exactly one remains.
    loop {
        fleet.reap(f64::NAN).await?;
        if fleet.starting.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while fleet.serving.len() > 1 {
        fleet.stop_newest(f64::NAN);
    }
    while !fleet.stopping.is_empty() {
        fleet.reap(f64::NAN).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (baseline, devices) = if args.baseline_seconds > 0 {
        let (b, d) = run_phase(
            "baseline: one fixed instance, every device acting",
            args,
            args.baseline_seconds,
            false,
            pool,
            fleet,
            probe,
            &load,
            devices,
            &buses,
        )
        .await?;
        write_csv(&args.out.join("elasticity-baseline.csv"), &b.samples)?;
        (Some(b), d)
    } else {
        (None, devices)
    };
    let png = args.out.join("elasticity.png");
    let drawn = plot(
        &csv,
        &png,
        args,
        baseline.as_ref().map_or(f64::NAN, |b| b.requests_per_s),
    )
    .map(|()| png);
    Ok((
        Summary {
            elastic,
            baseline,
            load,
            csv,
            png: drawn,
        },
        devices,
    ))
}

fn print_events(fleet: &Fleet) {
    println!("\nscaling events (time in the elastic run):");
    for e in &fleet.events {
        if !e.trim_start().starts_with("NaN") {
            println!("  {e}");
        }
    }
}

/// Prints the figures and the JSON line; true if nothing was lost.
fn report(args: &Args, s: &Summary, c: &Check, fleet: &Fleet) -> bool {
    let e = &s.elastic;
    let peak_rps = e
        .samples
        .iter()
        .map(|x| x.requests_per_s)
        .fold(0.0, f64::max);
    let max_depth = e
        .samples
        .iter()
        .map(|x| x.depth.messages)
        .max()
        .unwrap_or(0);
    let instance_seconds: f64 =
        e.samples.iter().map(|x| x.instances as f64).sum::<f64>() * TICK.as_secs_f64();
    let unanswered = s.load.unanswered.load(Ordering::Relaxed);
    let refused = s.load.refused.load(Ordering::Relaxed);
    let lost = c.missing + c.different + c.extra + unanswered;
    println!("\n{:<44} | {:>10} | {:>10}", "", "elastic", "baseline");
    let b = s.baseline.as_ref();
    let col = |f: &dyn Fn(&Phase) -> String| b.map_or("-".into(), f);
    println!(
        "{:<44} | {:>10} | {:>10}",
        "instances (max)",
        fleet.peak,
        col(&|_| "1".into())
    );
    println!(
        "{:<44} | {:>10.1} | {:>10}",
        "requests answered per second (whole run)",
        e.requests_per_s,
        col(&|p| format!("{:.1}", p.requests_per_s))
    );
    println!(
        "{:<44} | {:>10.1} | {:>10}",
        "requests answered per second (best second)",
        peak_rps,
        col(&|p| format!(
            "{:.1}",
            p.samples
                .iter()
                .map(|x| x.requests_per_s)
                .fold(0.0, f64::max)
        ))
    );
    println!(
        "{:<44} | {:>10.1} | {:>10}",
        "latency p50 (ms, first send to answer)",
        e.p50_ms,
        col(&|p| format!("{:.1}", p.p50_ms))
    );
    println!(
        "{:<44} | {:>10.1} | {:>10}",
        "latency p99 (ms)",
        e.p99_ms,
        col(&|p| format!("{:.1}", p.p99_ms))
    );
    println!(
        "{:<44} | {:>10} | {:>10}",
        "requests answered",
        e.answered,
        col(&|p| p.answered.to_string())
    );
    println!(
        "{:<44} | {:>10} | {:>10}",
        "deepest queue (messages)",
        max_depth,
        col(&|p| p
            .samples
            .iter()
            .map(|x| x.depth.messages)
            .max()
            .unwrap_or(0)
            .to_string())
    );
    println!(
        "instance-seconds in the elastic run: {instance_seconds:.0} (vs {:.0} for {} instances throughout)",
        args.max as f64 * args.seconds as f64,
        args.max
    );
    println!(
        "\ncheck: {} commits acknowledged, {} versions stored; missing {}, different {}, extra {}; \
         {} logical requests unanswered, {} refused, {} attempts sent again",
        c.acked,
        c.stored,
        c.missing,
        c.different,
        c.extra,
        unanswered,
        refused,
        s.load.retries.load(Ordering::Relaxed)
    );
    println!("samples: {}", s.csv.display());
    let plot_json = match &s.png {
        Ok(p) => {
            println!("figure: {}", p.display());
            format!("{:?}", p.display().to_string())
        }
        Err(why) => {
            println!("figure NOT drawn: {why}");
            "null".into()
        }
    };
    println!(
        "{{\"bench\":\"elasticity\",\"max_instances\":{},\"peak_requests_per_s\":{},\"lost_commits\":{lost},\"plot\":{plot_json},\
         \"requests_per_s\":{},\"p50_ms\":{},\"p99_ms\":{},\"baseline_requests_per_s\":{},\"baseline_p50_ms\":{},\"baseline_p99_ms\":{},\
         \"commits_acked\":{},\"unanswered\":{unanswered},\"refused\":{refused},\"max_queue\":{max_depth},\"devices\":{},\"seconds\":{},\"csv\":{:?}}}",
        fleet.peak,
        json_number(Some(peak_rps), 1),
        json_number(Some(e.requests_per_s), 1),
        json_number(Some(e.p50_ms), 1),
        json_number(Some(e.p99_ms), 1),
        json_number(b.map(|p| p.requests_per_s), 1),
        json_number(b.map(|p| p.p50_ms), 1),
        json_number(b.map(|p| p.p99_ms), 1),
        c.acked,
        args.devices,
        args.seconds,
        s.csv.display().to_string(),
    );
    lost == 0 && refused == 0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    sqlx::any::install_default_drivers();
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-elasticity-")
        .tempdir()?;
    let mut logs = Vec::new();
    // Ctrl-C drops the run: the instances are killed, the scratch
    // database and the broker's leftovers go.
    let result = tokio::select! {
        r = run(&args, root.path(), &mut logs) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(dir) = &args.keep_logs {
        keep_logs(dir, &logs);
        println!("logs copied to {}", dir.display());
    }
    if !result? {
        bail!("a commit was lost or refused (see the check above)");
    }
    Ok(())
}
