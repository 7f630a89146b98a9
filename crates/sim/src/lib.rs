//! Whole-system simulation (issue 21): from one seed, users with several
//! devices each edit, create, read, delete and move files while the real
//! sync engine (on its in-memory disk), the client's remote and content
//! store, the real sync service, metadata store (SQLite), blob store
//! (a local directory) and in-process bus keep them in sync, with faults
//! injected: commit replies lost after the commit was applied,
//! notifications dropped and duplicated, devices crashing between steps
//! and restarting from their saved state, object writes failing. After
//! quiescence it checks that every device holds the server's tree, that
//! no content any device saved is lost (it is in a tree, the version
//! history or a conflicted copy) and that revisions are gap-free.
//!
//! Steps run one at a time, each awaited to completion, so a run depends
//! on its seed alone: a failing seed reproduces with `scripts/sim --seed S`.
//!
//! This crate is a test harness, neither client nor server: it is the one
//! place (with `cli`) that links both. Nothing may depend on it.

pub mod device;
pub mod link;
pub mod run;
pub mod world;

pub use run::{RunConfig, RunFailure, RunStats, run_seed, shrink};
pub use stacksync_engine::planted::PlantedBug;

/// The one command that reproduces `seed` (with `bug` planted, cut after
/// `steps` steps if given).
pub fn reproduce(seed: u64, bug: Option<PlantedBug>, steps: Option<usize>) -> String {
    let mut command = format!("scripts/sim --seed {seed}");
    if let Some(n) = steps {
        command.push_str(&format!(" --steps {n}"));
    }
    if let Some(b) = bug {
        command.push_str(&format!(" --plant {}", b.name()));
    }
    command
}
