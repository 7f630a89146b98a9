//! The StackSync sync engine: keeps a local folder and a server workspace
//! in step. It holds three trees — remote (from the change feed), local
//! (from a scan of the disk) and synced (the last state both agreed on,
//! persisted) — derives the operations that reconcile them with a **pure
//! planner**, and applies them with a crash-safe executor.
//!
//! The engine must never touch the disk, the network or the clock except
//! through the traits in [`io`] ([`Fs`], [`Remote`], [`ContentStore`],
//! [`Clock`], [`IdSource`], [`StateStore`]); the planner must never do I/O
//! at all. That is what lets [`sim`] run whole multi-device scenarios
//! deterministically from a seed. It must never lose content a user saved:
//! every version is in the tree, in the server's history, or in a
//! conflicted copy. It never depends on server crates.

#![warn(missing_docs)]

pub mod conflict;
pub mod error;
pub mod executor;
pub mod ignore;
pub mod io;
mod local_name;
pub mod path;
pub mod planner;
pub mod planted;
pub mod scan;
pub mod sim;
pub mod tracked;
pub mod tree;

pub use error::{EngineError, FsError, FsErrorKind};
pub use executor::{Changed, Engine, EngineConfig, EngineIo, SyncReport};
pub use ignore::IgnoreRules;
pub use io::{
    ByteReader, ByteWriter, Clock, ContentStore, Fs, IdSource, MemStateStore, Remote, StateStore,
};
pub use path::RelPath;
pub use planner::{
    Focus, FocusedPlan, Key, Lookups, Op, Plan, PlanInput, Pos, plan, plan_focused,
    plan_focused_with, unsettled,
};
pub use tracked::{TrackedMap, TrackedSet};
pub use tree::{
    Lineage, LocalEntry, LocalTree, PendingCommit, RemoteTree, Resolved, Stamp, SyncState,
    SyncedItem,
};
