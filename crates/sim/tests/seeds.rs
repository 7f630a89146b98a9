//! The simulation in the test suite: a range of seeds must all pass
//! (`STACKSYNC_SIM_SEEDS` seeds, default 500, from `STACKSYNC_SIM_FROM`, in
//! five bands), and each known bug planted in the engine must be caught
//! within a few seeds. A failure names the seed, its shortest failing
//! prefix and the command that reproduces it.

use stacksync_engine::planted::plant;
use stacksync_sim::{PlantedBug, RunConfig, reproduce, run_seed, shrink};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seeds are run in bands, one test each, so that they spread over
/// the machine's cores.
const BANDS: u64 = 5;

/// A plant holds for the whole process: the seed bands run with no bug
/// planted, so they never overlap the planted-bug test (which `cargo test`
/// would run beside them in one process; nextest runs each test alone).
static PLANTING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn band(k: u64) {
    let _unplanted = PLANTING.read().await;
    let from = env("STACKSYNC_SIM_FROM", 0);
    let count = env("STACKSYNC_SIM_SEEDS", 500);
    let per_band = count.div_ceil(BANDS);
    let start = from + k * per_band;
    let end = (start + per_band).min(from + count);
    let config = RunConfig::default();
    let mut failed = Vec::new();
    for seed in start..end {
        if let Err(f) = run_seed(seed, &config).await {
            // The shortest failing prefix, whose trace is worth reading.
            let (steps, f) = match shrink(seed, &config).await {
                Some((steps, shorter)) => (Some(steps), shorter),
                None => (None, f),
            };
            let tail = f.trace.len().saturating_sub(30);
            failed.push(format!(
                "seed {seed}: {}\n{}\n  reproduce: {}",
                f.message,
                f.trace[tail..].join("\n"),
                reproduce(seed, None, steps)
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[tokio::test(flavor = "current_thread")]
async fn seeds_band_0() {
    band(0).await;
}

#[tokio::test(flavor = "current_thread")]
async fn seeds_band_1() {
    band(1).await;
}

#[tokio::test(flavor = "current_thread")]
async fn seeds_band_2() {
    band(2).await;
}

#[tokio::test(flavor = "current_thread")]
async fn seeds_band_3() {
    band(3).await;
}

#[tokio::test(flavor = "current_thread")]
async fn seeds_band_4() {
    band(4).await;
}

/// Seeds tried per planted bug before the simulation counts as blind to it.
const SEEDS_PER_BUG: u64 = 60;

/// Each planted bug makes some seed fail, and the same seeds pass once it
/// is removed (the failure is the bug's, not the seed's). One test: a plant
/// holds for the whole process.
#[tokio::test(flavor = "current_thread")]
async fn every_planted_bug_is_caught() {
    let _planting = PLANTING.write().await;
    let config = RunConfig::default();
    let mut blind = Vec::new();
    for bug in PlantedBug::ALL {
        plant(Some(bug));
        let mut caught = None;
        for seed in 0..SEEDS_PER_BUG {
            if let Err(f) = run_seed(seed, &config).await {
                caught = Some((seed, f.message));
                break;
            }
        }
        plant(None);
        match caught {
            None => blind.push(format!(
                "{}: no failure in {SEEDS_PER_BUG} seeds",
                bug.name()
            )),
            Some((seed, message)) => {
                eprintln!("{} caught by seed {seed}: {message}", bug.name());
                if let Err(f) = run_seed(seed, &config).await {
                    blind.push(format!(
                        "{}: seed {seed} fails without the bug too: {}",
                        bug.name(),
                        f.message
                    ));
                }
            }
        }
    }
    assert!(blind.is_empty(), "{}", blind.join("\n"));
}
