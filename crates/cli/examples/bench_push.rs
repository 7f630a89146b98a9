//! `scripts/bench push`: what an idle device costs the server per hour
//! with push notifications, next to a client polling the change feed every
//! 30 s and every 5 minutes (Dropbox's documented interval before its long
//! poll), and how long a change committed by another device takes to reach
//! it in each mode.
//!
//! One server (the embedded default: push over the gateway's WebSocket)
//! and, each behind its own counting TCP proxy (`bench_support/proxy.rs`:
//! every byte of HTTP heads, bodies and WebSocket frames, as TCP payload):
//! the real client daemon (`stacksync sync`) of device A, set up, synced,
//! connected and idle; a poller that makes exactly the requests a polling
//! client makes, `get_changes` from its cursor over HTTP (the client's own
//! `GatewayClient`, logged in once before the window), every 30 s; another
//! every 5 minutes. The idle window (`--idle-seconds`, long enough for
//! several of the gateway's WebSocket pings, one every 20 s) is counted at
//! each proxy and scaled to an hour: the daemon's traffic as measured, a
//! poller's as the mean cost of its polls in the window (each measured,
//! its connection included: the server closes an idle keep-alive
//! connection after 15 s, so every poll opens one) times its polls per
//! hour. Logins and setup are not counted.
//!
//! Arrival (`--arrival-seconds`): device B (a `GatewayClient` of the same
//! account) commits a new empty file at random moments (exponential gaps,
//! mean `--gap-ms`); the clock starts when it sends the commit. Push: until
//! the file is in device A's folder (its daemon heard the notification,
//! read the feed and wrote the file; polled every 2 ms). Poll every 30 s:
//! `--pollers` pollers with independent random phases, each until its next
//! `get_changes` answer names the file (the feed only: a lower bound of a
//! polling client, which would still write the file). Poll every 5
//! minutes is COMPUTED, not measured: a uniform wait over the interval
//! plus a `get_changes` round trip drawn from those the 30 s pollers
//! measured (the same computation is shown for 30 s beside its
//! measurement, as a check of the model).
//!
//! Usage: bench_push [--idle-seconds N] [--arrival-seconds N] [--gap-ms N]
//!   [--pollers N] [--seed N] [--breakdown] [--keep-logs DIR]
//!
//! Needs the `stacksync` binary (STACKSYNC_BIN or next to this example's
//! folder). The last line of stdout is one JSON object.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use stacksync_gateway_client::GatewayClient;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    CommitOutcome, CommitRequest, ContentHash, DeviceId, ItemId, ItemName, ItemStatus,
    ProposedItem, WorkspaceId,
};
use tokio::sync::watch;

use support::data::Rng;
use support::latency::percentile_ms;
use support::proxy::{Proxy, Traffic};
use support::server::{Backend, PASSWORD, Server};
use support::{json_number, keep_logs, stacksync_bin, tail};

const POLL_30S: Duration = Duration::from_secs(30);
const POLL_5M: Duration = Duration::from_secs(300);
/// The change feed's page size (the client's own).
const PAGE_LIMIT: u32 = 500;
/// The daemon counts as idle once its connection moved no byte this long.
const QUIET: Duration = Duration::from_secs(3);
/// How long a change may take to arrive by push before it counts as missed.
const PUSH_DEADLINE: Duration = Duration::from_secs(30);
/// Draws for the computed arrival times.
const DRAWS: usize = 200_000;

struct Args {
    idle: Duration,
    arrival: Duration,
    gap: Duration,
    pollers: usize,
    seed: u64,
    breakdown: bool,
    keep_logs: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        idle: Duration::from_secs(150),
        arrival: Duration::from_secs(100),
        gap: Duration::from_millis(4000),
        pollers: 6,
        seed: 7,
        breakdown: false,
        keep_logs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--idle-seconds" => {
                args.idle = Duration::from_secs(value()?.parse().context("--idle-seconds")?)
            }
            "--arrival-seconds" => {
                args.arrival = Duration::from_secs(value()?.parse().context("--arrival-seconds")?)
            }
            "--gap-ms" => args.gap = Duration::from_millis(value()?.parse().context("--gap-ms")?),
            "--pollers" => args.pollers = value()?.parse().context("--pollers")?,
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--breakdown" => args.breakdown = true,
            "--keep-logs" => args.keep_logs = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown flag {other} (flags: --idle-seconds N, --arrival-seconds N, --gap-ms N, --pollers N, --seed N, --breakdown, --keep-logs DIR)"
            ),
        }
    }
    if args.idle < Duration::from_secs(30) || args.pollers == 0 {
        bail!("need --idle-seconds >= 30 and --pollers >= 1");
    }
    Ok(args)
}

/// A uniform draw in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next() >> 11) as f64 / (1u64 << 53) as f64
}

/// A client that reads the change feed of one workspace from its cursor.
struct Poller {
    client: GatewayClient,
    workspace: WorkspaceId,
    cursor: u64,
}

impl Poller {
    /// Logs in at `url` and reads the feed to its end (not counted).
    async fn new(url: &str, email: &str, workspace: WorkspaceId) -> anyhow::Result<Poller> {
        let client = GatewayClient::login(url, email, PASSWORD)
            .await
            .context("a poller's login")?;
        let mut p = Poller {
            client,
            workspace,
            cursor: 0,
        };
        p.poll().await?;
        Ok(p)
    }

    /// One poll: `get_changes` until the feed has no more; the items read
    /// and how long the first round trip took.
    async fn poll(&mut self) -> anyhow::Result<(Vec<stacksync_proto::ItemMeta>, Duration)> {
        let mut items = Vec::new();
        let mut first = None;
        loop {
            let started = Instant::now();
            let reply = self
                .client
                .rpc(Request::GetChanges {
                    workspace: self.workspace,
                    since: self.cursor,
                    limit: PAGE_LIMIT,
                })
                .await
                .context("get_changes")?;
            first.get_or_insert(started.elapsed());
            let Reply::Changes(page) = reply else {
                bail!("get_changes answered something else");
            };
            self.cursor = page.cursor;
            items.extend(page.items);
            if !page.has_more {
                return Ok((items, first.unwrap_or_default()));
            }
        }
    }
}

/// A poller's polls in a window: every `every`, the first at `phase`.
async fn poll_for(
    p: &mut Poller,
    every: Duration,
    phase: Duration,
    window: Duration,
) -> anyhow::Result<usize> {
    let started = tokio::time::Instant::now();
    let mut next = started + phase;
    let mut polls = 0;
    while next < started + window {
        tokio::time::sleep_until(next).await;
        p.poll().await?;
        polls += 1;
        next += every;
    }
    Ok(polls)
}

/// Waits until the proxy moved no byte for [`QUIET`].
async fn quiet(proxy: &Proxy) {
    let mut last = proxy.snapshot().total();
    let mut since = Instant::now();
    while since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = proxy.snapshot().total();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// One mode's idle cost, scaled to an hour.
struct Cost {
    mode: &'static str,
    window: Traffic,
    /// Polls in the window (pollers only).
    polls: Option<usize>,
    requests_per_hour: f64,
    bytes_per_hour: f64,
    how: String,
}

fn idle_cost_push(t: Traffic, window: Duration) -> Cost {
    let scale = 3600.0 / window.as_secs_f64();
    Cost {
        mode: "push (idle daemon, WebSocket)",
        requests_per_hour: t.request_count() as f64 * scale,
        bytes_per_hour: t.total() as f64 * scale,
        how: format!("measured over {:.0} s, x{scale:.1}", window.as_secs_f64()),
        window: t,
        polls: None,
    }
}

fn idle_cost_poll(mode: &'static str, t: Traffic, polls: usize, every: Duration) -> Cost {
    let per_hour = 3600.0 / every.as_secs_f64();
    let per_poll = |n: u64| {
        if polls == 0 {
            f64::NAN
        } else {
            n as f64 / polls as f64
        }
    };
    Cost {
        mode,
        requests_per_hour: per_poll(t.request_count()) * per_hour,
        bytes_per_hour: per_poll(t.total()) * per_hour,
        how: format!("{polls} real poll(s) measured, their mean x{per_hour:.0} polls/h"),
        window: t,
        polls: Some(polls),
    }
}

/// The other device: commits new empty files (an empty file has no
/// chunks: its content hash is BLAKE3 of nothing, as the client computes).
struct Committer {
    client: GatewayClient,
    device: DeviceId,
    workspace: WorkspaceId,
}

impl Committer {
    async fn commit_empty_file(&self, name: &str) -> anyhow::Result<()> {
        let item = ProposedItem {
            id: ItemId::new(),
            parent: None,
            name: ItemName::new(name)?,
            is_folder: false,
            mimetype: None,
            status: ItemStatus::New,
            version: 1,
            content_hash: Some(ContentHash(*blake3::hash(b"").as_bytes())),
            size: 0,
            client_modified: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            chunks: vec![],
            record: None,
        };
        let reply = self
            .client
            .rpc(Request::Commit(CommitRequest {
                workspace: self.workspace,
                device: self.device,
                items: vec![item],
            }))
            .await?;
        match reply {
            Reply::Commit(r)
                if matches!(
                    r.results.first().map(|x| &x.outcome),
                    Some(CommitOutcome::Committed { .. })
                ) =>
            {
                Ok(())
            }
            other => bail!("the commit of {name} was not committed: {other:?}"),
        }
    }
}

/// Arrival times, from each commit's send.
#[derive(Default)]
struct Arrivals {
    /// name -> when B sent its commit.
    sent: HashMap<String, Instant>,
    push: Vec<Duration>,
    push_missed: usize,
    poll: Vec<Duration>,
    poll_missed: usize,
    /// Round trip of the first `get_changes` of every poll of the 30 s pollers.
    fetch: Vec<Duration>,
}

/// A 30 s poller of the arrival phase, until `stop`.
async fn arrival_poller(
    mut p: Poller,
    phase: Duration,
    arrivals: Arc<Mutex<Arrivals>>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut next = tokio::time::Instant::now() + phase;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            () = tokio::time::sleep_until(next) => {}
        }
        next += POLL_30S;
        let (items, rtt) = p.poll().await?;
        let now = Instant::now();
        let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
        a.fetch.push(rtt);
        for item in items {
            if let Some(sent) = a.sent.get(item.name.as_str()).copied() {
                a.poll.push(now - sent);
            }
        }
    }
}

/// Percentiles of `uniform(0, every) + a drawn fetch round trip`, in ms.
fn computed(every: Duration, fetch: &[Duration], rng: &mut Rng) -> (f64, f64) {
    if fetch.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let draws: Vec<Duration> = (0..DRAWS)
        .map(|_| every.mul_f64(unit(rng)) + fetch[rng.below(fetch.len() as u64) as usize])
        .collect();
    (percentile_ms(&draws, 0.5), percentile_ms(&draws, 0.99))
}

fn bytes(n: f64) -> String {
    if !n.is_finite() {
        "-".into()
    } else if n < 10.0 * 1024.0 {
        format!("{n:.0} B")
    } else if n < 10.0 * 1024.0 * 1024.0 {
        format!("{:.1} KB", n / 1024.0)
    } else {
        format!("{:.2} MB", n / 1024.0 / 1024.0)
    }
}

fn print_window(c: &Cost, breakdown: bool) {
    let t = &c.window;
    println!(
        "  {}: {} requests, {} B up + {} B down = {} B over {} new connection(s){}{}",
        c.mode,
        t.request_count(),
        t.up,
        t.down,
        t.total(),
        t.connections,
        c.polls.map_or(String::new(), |n| format!(", {n} poll(s)")),
        if t.requests.is_empty() {
            String::new()
        } else {
            format!(": {}", t.requests_summary())
        }
    );
    if breakdown {
        for line in t.breakdown() {
            println!("      {line}");
        }
    }
}

struct Report {
    costs: Vec<Cost>,
    arrivals: Arrivals,
    /// (p50, p99) computed for 30 s and 5 min.
    computed_30s: (f64, f64),
    computed_5m: (f64, f64),
}

async fn run(
    args: &Args,
    root: &Path,
    logs: &mut Vec<(String, PathBuf)>,
) -> anyhow::Result<Report> {
    let bin = stacksync_bin()?;
    println!(
        "push bench: {} on the embedded default; idle window {} s, arrival phase {} s (commits every {} ms on average, {} pollers at 30 s); each device behind its own counting proxy",
        bin.display(),
        args.idle.as_secs(),
        args.arrival.as_secs(),
        args.gap.as_millis(),
        args.pollers
    );
    let server = Server::start(&bin, Backend::Embedded, &root.join("stacksync")).await?;
    logs.push(("server".into(), server.log_path()));
    let email = "push@example.org";
    server.add_user(email)?;
    let mut rng = Rng::new(args.seed);

    let pa = Proxy::start(&server.url).await?;
    let mut a = server.client_via("device-a", email, &pa.url).await?;
    logs.push(("device A daemon".into(), a.daemon_log_path()));
    a.start_daemon()?;
    a.wait_idle().await?;

    let b = GatewayClient::login(&server.url, email, PASSWORD)
        .await
        .context("device B's login")?;
    let Reply::Device(device) = b
        .rpc(Request::UpdateDevice {
            id: None,
            name: "device-b".into(),
            os: String::new(),
            app_version: String::new(),
        })
        .await?
    else {
        bail!("UpdateDevice answered something else");
    };
    let Reply::Workspaces { workspaces } = b.rpc(Request::GetWorkspaces).await? else {
        bail!("GetWorkspaces answered something else");
    };
    let workspace = workspaces
        .first()
        .context("the account has no workspace")?
        .id;
    let committer = Committer {
        client: b,
        device: device.id,
        workspace,
    };

    // The idle window: the daemon, a 30 s poller and a 5 min poller, each
    // behind its own proxy, logged in and caught up before it starts.
    let (p30_proxy, p5_proxy) = (
        Proxy::start(&server.url).await?,
        Proxy::start(&server.url).await?,
    );
    let mut p30 = Poller::new(&p30_proxy.url, email, workspace).await?;
    let mut p5 = Poller::new(&p5_proxy.url, email, workspace).await?;
    // Their login's connection closes like any idle one; wait for it.
    p30_proxy.settle(0, Duration::from_secs(20)).await;
    p5_proxy.settle(0, Duration::from_secs(20)).await;
    quiet(&pa).await;
    let phase30 = POLL_30S.mul_f64(unit(&mut rng));
    let phase5 = args.idle.mul_f64(unit(&mut rng));
    println!(
        "\nidle window: {} s (the 30 s poller's first poll at {:.1} s, the 5 min poller's one poll at {:.1} s)",
        args.idle.as_secs(),
        phase30.as_secs_f64(),
        phase5.as_secs_f64()
    );
    let window_start = tokio::time::Instant::now();
    let before = (pa.snapshot(), p30_proxy.snapshot(), p5_proxy.snapshot());
    let (n30, n5) = tokio::try_join!(
        poll_for(&mut p30, POLL_30S, phase30, args.idle),
        poll_for(&mut p5, POLL_5M, phase5, args.idle),
    )?;
    // The pollers return after their last poll: the window ends on time.
    tokio::time::sleep_until(window_start + args.idle).await;
    let push = pa.snapshot().since(&before.0);
    let poll30 = p30_proxy.snapshot().since(&before.1);
    let poll5 = p5_proxy.snapshot().since(&before.2);
    let costs = vec![
        idle_cost_push(push, args.idle),
        idle_cost_poll("poll every 30 s", poll30, n30, POLL_30S),
        idle_cost_poll("poll every 5 min", poll5, n5, POLL_5M),
    ];
    for c in &costs {
        print_window(c, args.breakdown);
    }
    if n5 == 0 {
        bail!("the 5 min poller made no poll in the window");
    }

    // Arrival.
    println!(
        "\narrival phase: {} s, device B commits a new empty file every {} ms on average",
        args.arrival.as_secs(),
        args.gap.as_millis()
    );
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pollers = Vec::new();
    for _ in 0..args.pollers {
        let p = Poller::new(&server.url, email, workspace).await?;
        let phase = POLL_30S.mul_f64(unit(&mut rng));
        pollers.push(tokio::spawn(arrival_poller(
            p,
            phase,
            arrivals.clone(),
            stop_rx.clone(),
        )));
    }
    let started = Instant::now();
    let mut pending: Vec<(String, Instant)> = Vec::new();
    let mut n = 0;
    let mut next = Instant::now() + args.gap.mul_f64(-(1.0 - unit(&mut rng)).ln());
    while started.elapsed() < args.arrival || !pending.is_empty() {
        // Push arrivals: the file in A's folder.
        let now = Instant::now();
        pending.retain(|(name, sent)| {
            if a.folder.join(name).exists() {
                let mut g = arrivals.lock().unwrap_or_else(|e| e.into_inner());
                g.push.push(now - *sent);
                false
            } else if now - *sent > PUSH_DEADLINE {
                arrivals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_missed += 1;
                false
            } else {
                true
            }
        });
        if now >= next && started.elapsed() < args.arrival {
            let name = format!("arrival-{n:04}.txt");
            n += 1;
            let sent = Instant::now();
            arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sent
                .insert(name.clone(), sent);
            committer.commit_empty_file(&name).await?;
            pending.push((name, sent));
            next = Instant::now() + args.gap.mul_f64(-(1.0 - unit(&mut rng)).ln());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Every poller polls once more after the last commit (30 s at most).
    println!("  {n} commits; waiting for every poller's next poll");
    tokio::time::sleep(POLL_30S + Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    for p in pollers {
        p.await.context("a poller failed")??;
    }
    let mut arrivals = Arc::try_unwrap(arrivals)
        .map_err(|_| anyhow::anyhow!("a poller still holds the arrivals"))?
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    arrivals.poll_missed = (n * args.pollers).saturating_sub(arrivals.poll.len());
    a.stop_daemon().await?;
    let fetch = arrivals.fetch.clone();
    Ok(Report {
        costs,
        computed_30s: computed(POLL_30S, &fetch, &mut rng),
        computed_5m: computed(POLL_5M, &fetch, &mut rng),
        arrivals,
    })
}

fn print_report(r: &Report) {
    let a = &r.arrivals;
    let (push50, push99) = (percentile_ms(&a.push, 0.5), percentile_ms(&a.push, 0.99));
    let (poll50, poll99) = (percentile_ms(&a.poll, 0.5), percentile_ms(&a.poll, 0.99));
    println!(
        "\n  push: {} samples ({} missed within {PUSH_DEADLINE:?}); poll 30 s: {} samples ({} missed); get_changes round trip p50 {:.1} ms over {} polls",
        a.push.len(),
        a.push_missed,
        a.poll.len(),
        a.poll_missed,
        percentile_ms(&a.fetch, 0.5),
        a.fetch.len()
    );
    println!(
        "\n{:<32} | {:>14} | {:>15} | {:>11} | {:>11} | how",
        "mode", "requests/dev-h", "bytes/dev-h", "arrival p50", "arrival p99"
    );
    let ms = |x: f64| {
        if x >= 10_000.0 {
            format!("{:.1} s", x / 1000.0)
        } else {
            format!("{x:.0} ms")
        }
    };
    let rows = [
        (
            &r.costs[0],
            (push50, push99),
            "arrival measured (to the file in A's folder)",
        ),
        (
            &r.costs[1],
            (poll50, poll99),
            "arrival measured (to the feed's answer)",
        ),
        (
            &r.costs[2],
            r.computed_5m,
            "arrival COMPUTED: uniform wait + measured get_changes",
        ),
    ];
    for (c, (p50, p99), how) in rows {
        println!(
            "{:<32} | {:>14.1} | {:>15} | {:>11} | {:>11} | {}; {how}",
            c.mode,
            c.requests_per_hour,
            bytes(c.bytes_per_hour),
            ms(p50),
            ms(p99),
            c.how
        );
    }
    println!(
        "check of the model: poll 30 s computed the same way gives p50 {} and p99 {} (measured {} and {})",
        ms(r.computed_30s.0),
        ms(r.computed_30s.1),
        ms(poll50),
        ms(poll99)
    );
    println!(
        "what was counted: every byte crossing each device's proxy (HTTP heads and bodies, WebSocket \
         frames: the gateway's pings every 20 s and their pongs), as TCP payload, no TCP/IP headers or \
         handshakes, no TLS (loopback). A request is an HTTP request; WebSocket frames are not requests."
    );
}

fn json_line(r: Option<&Report>) -> String {
    let cost =
        |i: usize, f: fn(&Cost) -> f64| json_number(r.and_then(|r| r.costs.get(i)).map(f), 1);
    let arrival = |f: fn(&Arrivals) -> &Vec<Duration>, p: f64| {
        json_number(r.map(|r| percentile_ms(f(&r.arrivals), p)), 1)
    };
    format!(
        "{{\"bench\":\"push\",\"idle_requests_per_device_hour_push\":{},\"idle_requests_per_device_hour_poll_30s\":{},\
         \"arrival_p50_ms_push\":{},\"arrival_p50_ms_poll_30s\":{},\
         \"idle_bytes_per_device_hour_push\":{},\"idle_bytes_per_device_hour_poll_30s\":{},\
         \"idle_requests_per_device_hour_poll_5m\":{},\"idle_bytes_per_device_hour_poll_5m\":{},\
         \"arrival_p99_ms_push\":{},\"arrival_p99_ms_poll_30s\":{},\
         \"arrival_p50_ms_poll_5m_computed\":{},\"arrival_p99_ms_poll_5m_computed\":{},\
         \"push_samples\":{},\"poll_30s_samples\":{}}}",
        cost(0, |c| c.requests_per_hour),
        cost(1, |c| c.requests_per_hour),
        arrival(|a| &a.push, 0.5),
        arrival(|a| &a.poll, 0.5),
        cost(0, |c| c.bytes_per_hour),
        cost(1, |c| c.bytes_per_hour),
        cost(2, |c| c.requests_per_hour),
        cost(2, |c| c.bytes_per_hour),
        arrival(|a| &a.push, 0.99),
        arrival(|a| &a.poll, 0.99),
        json_number(r.map(|r| r.computed_5m.0), 1),
        json_number(r.map(|r| r.computed_5m.1), 1),
        r.map_or("null".into(), |r| r.arrivals.push.len().to_string()),
        r.map_or("null".into(), |r| r.arrivals.poll.len().to_string()),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let root = tempfile::Builder::new()
        .prefix("stacksync-bench-push-")
        .tempdir()?;
    let mut logs = Vec::new();
    let result = tokio::select! {
        r = run(&args, root.path(), &mut logs) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(dir) = &args.keep_logs {
        keep_logs(dir, &logs);
        println!("logs copied to {}", dir.display());
    }
    match result {
        Ok(r) => {
            print_report(&r);
            println!("{}", json_line(Some(&r)));
            Ok(())
        }
        Err(e) => {
            for (name, path) in &logs {
                eprintln!("--- {name} log (last 20 lines) ---\n{}", tail(path, 20));
            }
            println!("{}", json_line(None));
            Err(e)
        }
    }
}
