//! `stacksync admin gc` and the server's periodic collection: both run
//! `Service::collect_garbage` with the `[gc]` settings of the configuration
//! (flags override them for one run).

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use stacksync_service::{GcReport, GcSettings, Service};

use crate::config::Config;

/// `stacksync admin gc`: deletes stored objects nothing references any
/// more and history older than the retention period; prints what it freed.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Objects stored more recently than this are kept (e.g. 90s, 30m,
    /// 1h, 2d; a bare number is seconds). Default: `[gc] grace_minutes`.
    #[arg(long, value_parser = parse_duration)]
    grace: Option<Duration>,
    /// Versions replaced longer ago than this leave the history (same
    /// forms). Default: `[gc] retention_days`.
    #[arg(long, value_parser = parse_duration)]
    retention: Option<Duration>,
    /// Print what would be freed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs one collection as the command line asks and prints its report.
pub async fn run(service: &Service, config: &Config, args: GcArgs) -> anyhow::Result<()> {
    let mut settings = config.gc.settings();
    if let Some(g) = args.grace {
        settings.grace = g;
    }
    if let Some(r) = args.retention {
        settings.retention = r;
    }
    settings.dry_run = args.dry_run;
    let report = service
        .collect_garbage(settings)
        .await
        .context("collecting garbage")?;
    if args.json {
        println!("{}", report_json(&report));
    } else {
        println!("{}", report_line(&report));
    }
    Ok(())
}

fn report_json(r: &GcReport) -> serde_json::Value {
    serde_json::json!({
        "dry_run": r.dry_run,
        "workspaces": r.workspaces,
        "adopted_objects": r.adopted,
        "pruned_versions": r.pruned_versions,
        "deleted_objects": r.deleted_objects,
        "freed_bytes": r.freed_bytes,
    })
}

fn report_line(r: &GcReport) -> String {
    let verb = if r.dry_run { "would free" } else { "freed" };
    format!(
        "{verb} {} bytes in {} objects; {} old versions pruned; {} workspaces checked, {} unrecorded objects recorded",
        r.freed_bytes, r.deleted_objects, r.pruned_versions, r.workspaces, r.adopted
    )
}

/// Collects garbage every `every` until `stop` resolves; a failed run is
/// logged and retried at the next tick (the service keeps serving).
pub async fn periodic(
    service: Service,
    settings: GcSettings,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; a starting server collects after one period.
    ticks.tick().await;
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        match service.collect_garbage(settings).await {
            Ok(r) => tracing::info!(report = %report_line(&r), "garbage collected"),
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
    }
}

/// `90`, `90s`, `30m`, `1h`, `2d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 30m, 1h, 2d)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
