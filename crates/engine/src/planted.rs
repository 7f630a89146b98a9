//! Known bugs that the whole-system simulation plants, to show that it
//! catches each (issue 21): a checker that never fails proves nothing.
//!
//! Compiled in only with the `planted-bugs` feature (the simulation's);
//! without it [`planted`] is a constant `false` and every hook folds away.
//! With it, nothing is planted until [`plant`] is called, and a plant holds
//! for the whole process (the simulation runs one seed at a time).

/// A bug the simulation knows how to plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// A conflicted copy is not moved aside but deleted: the local edit
    /// that lost the race is gone.
    DropConflictCopy,
    /// A file the server deleted is deleted here even though it was edited
    /// here since the last sync (the edit should win and be restored).
    DeleteOverLocalEdit,
    /// Concurrent edits of one file on two devices: the server's version
    /// replaces the local one without a conflicted copy.
    OverwriteConcurrentEdit,
}

impl PlantedBug {
    /// Every bug, for a test that plants each in turn.
    pub const ALL: [PlantedBug; 3] = [
        PlantedBug::DropConflictCopy,
        PlantedBug::DeleteOverLocalEdit,
        PlantedBug::OverwriteConcurrentEdit,
    ];

    /// The bug's name on a command line (`scripts/sim --plant NAME`).
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::DropConflictCopy => "drop-conflict-copy",
            PlantedBug::DeleteOverLocalEdit => "delete-over-local-edit",
            PlantedBug::OverwriteConcurrentEdit => "overwrite-concurrent-edit",
        }
    }

    /// The bug named `name`, if any.
    pub fn from_name(name: &str) -> Option<PlantedBug> {
        PlantedBug::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[cfg(feature = "planted-bugs")]
mod armed {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::PlantedBug;

    /// 0: nothing planted; otherwise the index in `ALL` plus one.
    static ARMED: AtomicU8 = AtomicU8::new(0);

    pub fn plant(bug: Option<PlantedBug>) {
        let v = bug.map_or(0, |b| {
            PlantedBug::ALL
                .iter()
                .position(|x| *x == b)
                .expect("listed") as u8
                + 1
        });
        ARMED.store(v, Ordering::SeqCst);
    }

    pub fn planted(bug: PlantedBug) -> bool {
        let v = ARMED.load(Ordering::Relaxed);
        v != 0 && PlantedBug::ALL[v as usize - 1] == bug
    }
}

/// Plants `bug` in this process (`None` removes it).
#[cfg(feature = "planted-bugs")]
pub fn plant(bug: Option<PlantedBug>) {
    armed::plant(bug);
}

/// Whether `bug` is planted.
#[inline]
pub(crate) fn planted(bug: PlantedBug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        armed::planted(bug)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}
