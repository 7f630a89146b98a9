//! Figures read from /proc (Linux): CPU seconds spent by the parts of the
//! system, so a phase's figures say where the time went, and peak memory.

use std::path::Path;

/// CPU seconds spent so far by the parts of the system (USER_HZ = 100).
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// Children of this bench that exited and were reaped (the `sync --once` runs).
    reaped: f64,
    server: f64,
    daemon: f64,
    swift: f64,
    /// Busy and total time of the whole machine, all cores.
    machine_busy: f64,
    machine_total: f64,
}

/// utime + stime (with `children`: cutime + cstime) of a process, in
/// seconds (`pid` may be "self").
pub fn proc_cpu(pid: &str, children: bool) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    // After the command name: state is field 3 (index 0 here); utime is 14.
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let first = if children { 13 } else { 11 };
    (fields.get(first).unwrap_or(&0.0) + fields.get(first + 1).unwrap_or(&0.0)) / 100.0
}

fn swift_pids() -> Vec<String> {
    let dir =
        std::env::var("STACKSYNC_SWIFT_DIR").unwrap_or_else(|_| "/tmp/stacksync-swift".into());
    std::fs::read_dir(Path::new(&dir).join("run"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .map(|p| p.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Cpu {
    pub fn now(server: Option<u32>, daemon: Option<u32>) -> Cpu {
        let (machine_busy, machine_total) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.to_owned();
                let v: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .filter_map(|f| f.parse().ok())
                    .collect();
                let total: f64 = v.iter().take(8).sum();
                let idle = v.get(3)? + v.get(4)?;
                Some(((total - idle) / 100.0, total / 100.0))
            })
            .unwrap_or_default();
        Cpu {
            reaped: proc_cpu("self", true),
            server: server.map_or(0.0, |p| proc_cpu(&p.to_string(), false)),
            daemon: daemon.map_or(0.0, |p| proc_cpu(&p.to_string(), false)),
            swift: swift_pids().iter().map(|p| proc_cpu(p, false)).sum(),
            machine_busy,
            machine_total,
        }
    }

    /// CPU seconds the Swift processes used since `before`.
    pub fn swift_since(&self, before: &Cpu) -> f64 {
        self.swift - before.swift
    }

    /// How busy the whole machine was since `before`, in percent of all
    /// its cores.
    pub fn machine_busy_pct(&self, before: &Cpu) -> f64 {
        let total = self.machine_total - before.machine_total;
        if total > 0.0 {
            100.0 * (self.machine_busy - before.machine_busy) / total
        } else {
            0.0
        }
    }

    /// "CPU: ..." for the interval since `before`.
    pub fn since(&self, before: &Cpu, daemon: &str) -> String {
        let total = self.machine_total - before.machine_total;
        format!(
            "CPU s: `sync --once` {:.2}, {daemon} {:.2}, server {:.2}, Swift {:.2}; machine {:.0}% busy",
            self.reaped - before.reaped,
            self.daemon - before.daemon,
            self.server - before.server,
            self.swift - before.swift,
            if total > 0.0 {
                100.0 * (self.machine_busy - before.machine_busy) / total
            } else {
                0.0
            },
        )
    }
}

/// Peak resident memory of a running process in MiB (VmHWM), or None when
/// it is gone or /proc says nothing.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resident memory of a running process now in MiB (VmRSS), or None.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Resets a process's peak resident memory (VmHWM) to what it holds now
/// (`5` into /proc/PID/clear_refs, Linux 4.0 and later; needs the right to
/// write there, as its owner or root); false when it could not.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
