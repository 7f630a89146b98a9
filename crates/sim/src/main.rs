//! `stacksync-sim --seeds N [--from K] [--seed S] [--steps M] [--plant BUG]`: runs the
//! whole-system simulation on seeds `K..K+N` (or on `S` alone), prints each
//! failure with the command that reproduces it, and ends with one JSON
//! line: `{"sim":"whole-system","seeds":N,"failures":F,"steps":S,"seconds":T}`.
//! Exits 1 if any seed failed.

use std::process::ExitCode;
use std::time::Instant;

use stacksync_engine::planted::{PlantedBug, plant};
use stacksync_sim::{RunConfig, reproduce, run_seed, shrink};

struct Args {
    seeds: Vec<u64>,
    config: RunConfig,
    verbose: bool,
    /// A known bug planted in the engine, to see the simulation catch it.
    plant: Option<PlantedBug>,
}

fn parse() -> Result<Args, String> {
    let mut count = 50u64;
    let mut from = 0u64;
    let mut single = None;
    let mut config = RunConfig::default();
    let mut verbose = false;
    let mut plant = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} takes a number"))
        };
        match flag.as_str() {
            "--seeds" => count = value("--seeds")?,
            "--from" => from = value("--from")?,
            "--seed" => single = Some(value("--seed")?),
            "--steps" => config.steps = value("--steps")? as usize,
            "--verbose" | "-v" => verbose = true,
            "--plant" => {
                let name = args.next().unwrap_or_default();
                let bug = PlantedBug::from_name(&name).ok_or_else(|| {
                    let known: Vec<&str> = PlantedBug::ALL.iter().map(|b| b.name()).collect();
                    format!("--plant takes one of {}", known.join(", "))
                })?;
                plant = Some(bug);
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: stacksync-sim --seeds N [--from K] [--seed S] [--steps M] [--plant BUG] [--verbose]"
                ));
            }
        }
    }
    let seeds = match single {
        Some(s) => vec![s],
        None => (from..from.saturating_add(count)).collect(),
    };
    Ok(Args {
        seeds,
        config,
        verbose,
        plant,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    plant(args.plant);
    // One thread: every step is awaited to completion, so nothing races.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let started = Instant::now();
    let (mut failures, mut steps) = (0u64, 0u64);
    for &seed in &args.seeds {
        let config = args.config.clone();
        let outcome = local_run(&runtime, async move { run_seed(seed, &config).await });
        match outcome {
            Ok(Ok(stats)) => {
                steps += stats.steps;
                if args.verbose {
                    println!("seed {seed}: ok {stats:?}");
                }
            }
            Ok(Err(failure)) => {
                failures += 1;
                println!("FAIL seed {seed}: {}", failure.message);
                // The shortest prefix of the workload that still fails,
                // whose trace is the one worth reading.
                let config = args.config.clone();
                let shrunk = local_run(&runtime, async move { shrink(seed, &config).await });
                let (cut, failure) = match shrunk {
                    Ok(Some((n, shorter))) => {
                        println!("  shrunk to {n} step(s): {}", shorter.message);
                        (Some(n), shorter)
                    }
                    _ => (None, failure),
                };
                let tail = if args.verbose {
                    0
                } else {
                    failure.trace.len().saturating_sub(40)
                };
                for line in &failure.trace[tail..] {
                    println!("    {line}");
                }
                println!("  reproduce: {}", reproduce(seed, args.plant, cut));
            }
            Err(panic) => {
                failures += 1;
                println!("FAIL seed {seed}: panicked: {panic}");
                println!("  reproduce: {}", reproduce(seed, args.plant, None));
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "sim": "whole-system",
            "seeds": args.seeds.len(),
            "failures": failures,
            "steps": steps,
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        })
    );
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `fut` to its end as a task of its own, so that a panic fails the
/// seed, not the whole run.
fn local_run<F>(
    runtime: &tokio::runtime::Runtime,
    fut: F,
) -> Result<F::Output, tokio::task::JoinError>
where
    F: std::future::Future + 'static,
    F::Output: 'static,
{
    let local = tokio::task::LocalSet::new();
    local.block_on(runtime, async move { tokio::task::spawn_local(fut).await })
}
