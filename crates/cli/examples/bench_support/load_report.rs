//! The load bench's figures: what one run measured, from the devices'
//! records ([`Recorder`]), how it is printed, and its JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use stacksync_proto::WorkspaceId;

use super::json_number;
use super::latency::percentile_ms;
use super::load_check::CheckReport;
use super::load_device::{DeviceStats, MIX};
use super::timed::Recorder;

/// What a run knows besides the devices' records.
pub struct RunInputs {
    pub swap: bool,
    pub devices: usize,
    pub users: usize,
    /// The measured window; when the instance was killed in it.
    pub t0: Instant,
    pub t_end: Instant,
    pub killed_at: Option<Instant>,
    pub stats: DeviceStats,
    /// GetWorkspaces round trips before the load.
    pub idle: Vec<Duration>,
    /// How many devices sync each workspace.
    pub devices_of: HashMap<WorkspaceId, usize>,
    pub cpu: CpuFigures,
    pub check: CheckReport,
    pub quiesce_s: f64,
    /// Each server instance, in start order.
    pub servers: Vec<ServerFigures>,
    pub server_log_problems: Vec<String>,
}

/// One server instance's figures.
pub struct ServerFigures {
    pub name: String,
    /// Peak resident memory in MiB (VmHWM).
    pub peak_rss_mib: Option<f64>,
    /// Requests it served, as it said when stopped gracefully (None when
    /// it was SIGKILLed).
    pub served: Option<u64>,
}

/// CPU during the window.
#[derive(Default, Clone, Copy)]
pub struct CpuFigures {
    pub machine_busy_pct: f64,
    pub devices_s: f64,
    pub servers_s: f64,
    pub swift_s: f64,
}

/// One run's figures.
pub struct RunFigures {
    pub inputs: RunInputs,
    /// The measured window, and when the swap happened in it.
    pub window_s: f64,
    pub swapped_at_s: Option<f64>,
    /// RPCs in flight when the instance was killed, and the slowest of them.
    pub in_flight_at_kill: usize,
    pub slowest_in_flight_ms: f64,
    /// Versions acknowledged in the window (each item version once), and
    /// commit RPCs that acknowledged at least one.
    pub commits: usize,
    pub commit_batches: usize,
    pub rpcs: usize,
    pub rpc_p50_ms: f64,
    pub rpc_p99_ms: f64,
    /// p50/p99 of the main operations: commit, get_changes.
    pub op_percentiles: Vec<(&'static str, usize, f64, f64)>,
    /// Push latency after the commit's reply (negative: before it), and
    /// after the commit was sent.
    pub notify_p50_ms: f64,
    pub notify_p99_ms: f64,
    pub notify_sent_p50_ms: f64,
    pub notify_sent_p99_ms: f64,
    pub notify_expected: usize,
    pub notify_missed: usize,
    pub failed_rpcs: usize,
    pub idle_p50_ms: f64,
    pub error_samples: Vec<String>,
}

impl RunFigures {
    pub fn commits_per_s(&self) -> f64 {
        self.commits as f64 / self.window_s
    }

    pub fn errors(&self) -> u64 {
        self.failed_rpcs as u64 + self.inputs.stats.failed_syncs
    }
}

impl RunFigures {
    /// The figures of a run from what its devices recorded.
    pub fn compute(recorder: &Recorder, inputs: RunInputs) -> RunFigures {
        let (t0, t_end) = (inputs.t0, inputs.t_end);
        let in_window = |at: Instant| at >= t0 && at <= t_end;
        let batches = recorder
            .replies()
            .values()
            .filter(|c| in_window(c.replied))
            .count();
        let all_rpcs = recorder.rpcs();
        let rpcs: Vec<_> = all_rpcs.iter().filter(|r| in_window(r.started)).collect();
        let all: Vec<Duration> = rpcs.iter().map(|r| r.took).collect();
        let op_percentiles = ["commit", "get_changes", "locate_chunks"]
            .iter()
            .map(|op| {
                let v: Vec<Duration> = rpcs
                    .iter()
                    .filter(|r| r.op == *op)
                    .map(|r| r.took)
                    .collect();
                (
                    *op,
                    v.len(),
                    percentile_ms(&v, 0.5),
                    percentile_ms(&v, 0.99),
                )
            })
            .collect();
        // The RPCs the killed instance may have held: started before the
        // kill, answered after it.
        let in_flight: Vec<Duration> = inputs
            .killed_at
            .map(|k| {
                all_rpcs
                    .iter()
                    .filter(|r| r.started <= k && r.started + r.took >= k)
                    .map(|r| r.took)
                    .collect()
            })
            .unwrap_or_default();
        let push = push_latencies(recorder, &inputs.devices_of, t0, t_end);
        RunFigures {
            window_s: (t_end - t0).as_secs_f64(),
            swapped_at_s: inputs.killed_at.map(|k| (k - t0).as_secs_f64()),
            in_flight_at_kill: in_flight.len(),
            slowest_in_flight_ms: percentile_ms(&in_flight, 1.0),
            commits: count_commits_in_window(recorder, t0, t_end),
            commit_batches: batches,
            rpcs: rpcs.len(),
            rpc_p50_ms: percentile_ms(&all, 0.5),
            rpc_p99_ms: percentile_ms(&all, 0.99),
            op_percentiles,
            idle_p50_ms: percentile_ms(&inputs.idle, 0.5),
            notify_p50_ms: percentile(&push.after_reply_ms, 0.5),
            notify_p99_ms: percentile(&push.after_reply_ms, 0.99),
            notify_sent_p50_ms: percentile(&push.after_send_ms, 0.5),
            notify_sent_p99_ms: percentile(&push.after_send_ms, 0.99),
            notify_expected: push.expected,
            notify_missed: push.missed,
            failed_rpcs: all_rpcs.iter().filter(|r| !r.ok).count(),
            error_samples: recorder.errors(),
            inputs,
        }
    }
}

/// Item versions (each once) whose commit reply arrived in the window.
fn count_commits_in_window(recorder: &Recorder, t0: Instant, t_end: Instant) -> usize {
    let mut seen = BTreeSet::new();
    for c in recorder.commits() {
        if c.at >= t0 && c.at <= t_end {
            seen.insert((c.meta.workspace, c.meta.id, c.meta.version));
        }
    }
    seen.len()
}

/// Push latencies for commits acknowledged in the window, in ms, to each
/// other device of the workspace: from the commit's reply at its device
/// (negative when the push came first: the service publishes it before
/// it replies) and from when the commit was sent; how many pushes were
/// expected, and how many never came.
struct PushFigures {
    after_reply_ms: Vec<f64>,
    after_send_ms: Vec<f64>,
    expected: usize,
    missed: usize,
}

fn push_latencies(
    recorder: &Recorder,
    devices_of: &HashMap<WorkspaceId, usize>,
    t0: Instant,
    t_end: Instant,
) -> PushFigures {
    let mut first: BTreeMap<_, Instant> = BTreeMap::new();
    for p in recorder.pushes() {
        first
            .entry((p.workspace, p.revision, p.to))
            .and_modify(|at: &mut Instant| *at = (*at).min(p.at))
            .or_insert(p.at);
    }
    let mut by_commit: HashMap<_, Vec<Instant>> = HashMap::new();
    for ((ws, rev, _to), at) in &first {
        by_commit.entry((*ws, *rev)).or_default().push(*at);
    }
    let signed_ms = |at: Instant, from: Instant| match at.checked_duration_since(from) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(from - at).as_secs_f64() * 1000.0,
    };
    let mut out = PushFigures {
        after_reply_ms: Vec::new(),
        after_send_ms: Vec::new(),
        expected: 0,
        missed: 0,
    };
    let mut got = 0;
    for ((ws, rev), c) in &recorder.replies() {
        if c.replied < t0 || c.replied > t_end {
            continue;
        }
        out.expected += devices_of.get(ws).copied().unwrap_or(1).saturating_sub(1);
        for at in by_commit.get(&(*ws, *rev)).into_iter().flatten() {
            got += 1;
            out.after_reply_ms.push(signed_ms(*at, c.replied));
            out.after_send_ms.push(signed_ms(*at, c.sent));
        }
    }
    out.missed = out.expected.saturating_sub(got);
    out
}

/// Nearest-rank percentile of `v` (NaN when empty).
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The server log's warnings and errors, counted by message (its first
/// words), with one example each.
pub fn log_problems(name: &str, log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for line in text.lines() {
        let level = if line.contains(" ERROR ") {
            "ERROR"
        } else if line.contains(" WARN ") {
            "WARN"
        } else {
            continue;
        };
        // The message after the target, without its variable tail.
        let message = line
            .split_once(": ")
            .map_or(line, |(_, m)| m)
            .chars()
            .take(60)
            .collect::<String>();
        let entry = counts
            .entry(format!("{level} {message}"))
            .or_insert((0, line.to_owned()));
        entry.0 += 1;
    }
    counts
        .into_iter()
        .map(|(_, (n, example))| {
            let example: String = example.chars().take(300).collect();
            format!("{name}: {n} x {example}")
        })
        .collect()
}

/// The run's figures, readable.
pub fn print_run(f: &RunFigures) {
    let i = &f.inputs;
    let s = &i.stats;
    let actions: u64 = s.actions.iter().sum();
    println!(
        "{} run: {} devices ({} users), {:.1} s window{}",
        if i.swap { "swap" } else { "no-swap" },
        i.devices,
        i.users,
        f.window_s,
        f.swapped_at_s
            .map_or(String::new(), |t| format!(", server swapped at {t:.1} s"))
    );
    let mix: Vec<String> = MIX
        .iter()
        .map(|(a, _)| {
            let n = s.actions[a.index()];
            format!(
                "{} {} ({:.0}%)",
                a.name(),
                n,
                100.0 * n as f64 / actions.max(1) as f64
            )
        })
        .collect();
    println!(
        "  workload: {actions} user actions = {:.1}/s [{}], {:.1} MiB saved; {} syncs ({} after a push), {} conflicted copies",
        actions as f64 / f.window_s,
        mix.join(", "),
        s.bytes_written as f64 / (1024.0 * 1024.0),
        s.syncs,
        s.push_syncs,
        s.conflicts
    );
    println!(
        "  commits: {} item versions acknowledged = {:.1} commits/s, in {} commit batches",
        f.commits,
        f.commits_per_s(),
        f.commit_batches
    );
    println!(
        "  RPC: {} calls ({:.0}/s), p50 {:.1} ms, p99 {:.1} ms; idle p50 (GetWorkspaces, before the load) {:.1} ms: p50 under load = {:.2}x idle",
        f.rpcs,
        f.rpcs as f64 / f.window_s,
        f.rpc_p50_ms,
        f.rpc_p99_ms,
        f.idle_p50_ms,
        f.rpc_p50_ms / f.idle_p50_ms
    );
    for (op, n, p50, p99) in &f.op_percentiles {
        println!("    {op}: {n} calls, p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    println!(
        "  push to the user's other devices: after the commit's reply p50 {:.1} ms, p99 {:.1} ms (negative: before the reply); after the commit was sent p50 {:.1} ms, p99 {:.1} ms; {} expected, {} never came",
        f.notify_p50_ms,
        f.notify_p99_ms,
        f.notify_sent_p50_ms,
        f.notify_sent_p99_ms,
        f.notify_expected,
        f.notify_missed
    );
    if let Some(at) = f.swapped_at_s {
        println!(
            "  swap at {at:.1} s: {} RPCs were in flight when server-a was killed, all answered (slowest {:.0} ms)",
            f.in_flight_at_kill, f.slowest_in_flight_ms
        );
    }
    println!(
        "  errors: {} ({} failed RPCs after retries, {} failed syncs)",
        f.errors(),
        f.failed_rpcs,
        s.failed_syncs
    );
    let mut shown = BTreeSet::new();
    for e in &f.error_samples {
        let key: String = e
            .split_once(": ")
            .map_or(e.as_str(), |(_, m)| m)
            .chars()
            .take(50)
            .collect();
        if shown.insert(key) && shown.len() <= 6 {
            println!("    {e}");
        }
    }
    let c = &i.check;
    println!(
        "  lost: {} ({} of {} acknowledged commits, {} of {} saved contents); {} items with {} versions checked; settled in {:.1} s",
        c.lost(),
        c.lost_commits.len(),
        c.acked,
        c.lost_contents.len(),
        c.saved,
        c.items,
        c.versions,
        i.quiesce_s
    );
    for l in c.lost_commits.iter().chain(&c.lost_contents).take(10) {
        println!("    LOST {l}");
    }
    println!(
        "  converged: {}; revisions: {}; check reads failed: {}",
        if c.diverged.is_empty() {
            "every device holds its server tree".to_owned()
        } else {
            format!("{} devices differ", c.diverged.len())
        },
        if c.revision_problems.is_empty() {
            "1..=latest, none twice".to_owned()
        } else {
            format!("{} problems", c.revision_problems.len())
        },
        c.errors.len()
    );
    for l in c
        .diverged
        .iter()
        .chain(&c.revision_problems)
        .chain(&c.errors)
        .take(6)
    {
        println!("    {l}");
    }
    let servers: Vec<String> = i
        .servers
        .iter()
        .map(|s| {
            format!(
                "{} {} ({})",
                s.name,
                s.peak_rss_mib.map_or("?".into(), |r| format!("{r:.0} MiB")),
                s.served
                    .map_or("SIGKILLed".into(), |n| format!("served {n} requests"))
            )
        })
        .collect();
    println!(
        "  server peak RSS: {}; CPU s in the window: devices (this process) {:.1}, servers {:.1}, Swift {:.1}; machine {:.0}% busy (everything on it)",
        servers.join(", "),
        i.cpu.devices_s,
        i.cpu.servers_s,
        i.cpu.swift_s,
        i.cpu.machine_busy_pct
    );
    if !i.server_log_problems.is_empty() {
        println!("  server logs (warnings and errors, by message):");
        for l in i.server_log_problems.iter().take(12) {
            println!("    {l}");
        }
    }
}

/// The run's figures as one JSON object.
pub fn run_json(f: &RunFigures) -> String {
    let i = &f.inputs;
    let rss: Vec<String> = i
        .servers
        .iter()
        .map(|s| json_number(s.peak_rss_mib, 1))
        .collect();
    format!(
        "{{\"swap\":{},\"commits_per_s\":{},\"items_committed\":{},\"rpc_p50_ms\":{},\"rpc_p99_ms\":{},\"idle_rpc_p50_ms\":{},\"notify_p50_ms\":{},\"notify_p99_ms\":{},\"notify_after_send_p50_ms\":{},\"notify_after_send_p99_ms\":{},\"notify_missed\":{},\"errors\":{},\"lost\":{},\"diverged\":{},\"revision_problems\":{},\"conflicts\":{},\"actions_per_s\":{},\"server_rss_mib\":[{}]}}",
        i.swap,
        json_number(Some(f.commits_per_s()), 2),
        f.commits,
        json_number(Some(f.rpc_p50_ms), 2),
        json_number(Some(f.rpc_p99_ms), 2),
        json_number(Some(f.idle_p50_ms), 2),
        json_number(Some(f.notify_p50_ms), 2),
        json_number(Some(f.notify_p99_ms), 2),
        json_number(Some(f.notify_sent_p50_ms), 2),
        json_number(Some(f.notify_sent_p99_ms), 2),
        f.notify_missed,
        f.errors(),
        i.check.lost(),
        i.check.diverged.len(),
        i.check.revision_problems.len(),
        i.stats.conflicts,
        json_number(
            Some(i.stats.actions.iter().sum::<u64>() as f64 / f.window_s),
            2
        ),
        rss.join(",")
    )
}
