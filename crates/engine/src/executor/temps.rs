//! Download temporaries: which `.stacksync-dl-*` files are this client's.
//!
//! A user may have a file of that name too (the prefix is a convention,
//! not a guarantee), so the name alone never makes a file ours. A
//! temporary's path is recorded in the saved state before it is created,
//! and only recorded paths are ever written into, resumed or removed. A
//! record whose file is gone is forgotten at the next scan. A temporary
//! whose record was lost (it was moved along with its folder before a
//! crash) is left on disk, ignored: clutter, never a lost file.

use std::collections::{BTreeMap, BTreeSet};

use stacksync_proto::ItemName;

use super::Engine;
use super::prefetch::temp_name;
use crate::error::EngineError;
use crate::path::RelPath;
use crate::planner::{Key, LocalItem, Op, path_in};
use crate::scan::Scan;
use crate::tree::Stamp;

impl Engine {
    /// The paths of `paths` that are this client's temporaries: already
    /// recorded, or free on disk and recorded now (saved before returning,
    /// so that the record is durable before the file exists).
    pub(super) async fn own_temps(
        &mut self,
        paths: impl IntoIterator<Item = RelPath>,
    ) -> Result<BTreeSet<RelPath>, EngineError> {
        let paths: Vec<RelPath> = paths.into_iter().collect();
        // Anything already at an unrecorded path is someone else's file (or
        // was left by a crash before our record: kept, never ours).
        let unrecorded: Vec<RelPath> = paths
            .iter()
            .filter(|p| !self.state.temps.contains(*p))
            .cloned()
            .collect();
        let found = self.io.fs.stat_all(&unrecorded).await;
        let mut added = false;
        for (path, found) in unrecorded.into_iter().zip(found) {
            if found.map_err(EngineError::Fs)?.is_none() {
                self.state.temps.insert(path);
                added = true;
            }
        }
        let ours: BTreeSet<RelPath> = paths
            .into_iter()
            .filter(|p| self.state.temps.contains(p))
            .collect();
        if added {
            self.save().await?;
        }
        Ok(ours)
    }

    /// Before a folder move: records where the temporaries inside will be,
    /// keeping their current records, so that a crash on either side of
    /// the move finds them recorded (a record whose file is gone is
    /// forgotten by the next scan). Returns whether there were any (the
    /// caller saves the state before moving).
    pub(super) fn temps_moving(&mut self, from: &RelPath, to: &RelPath) -> bool {
        let inside: Vec<RelPath> = self
            .state
            .temps
            .iter()
            .filter(|t| t.starts_with(from) && t != &from)
            .cloned()
            .collect();
        for t in &inside {
            let mut moved = to.clone();
            for c in &t.components()[from.depth()..] {
                moved = moved.join(c);
            }
            self.state.temps.insert(moved);
        }
        !inside.is_empty()
    }

    /// After a folder move: forgets where its temporaries were.
    pub(super) fn temps_moved(&mut self, from: &RelPath) {
        self.state
            .temps
            .retain(|t| !(t.starts_with(from) && t != from));
    }

    /// After a scan: removes the leftovers of interrupted downloads that
    /// this client recorded, unless the plan downloads the same content
    /// again (`wanted`: it resumes them); forgets records whose file is
    /// gone; leaves every other `.stacksync-dl-*` file alone, reporting it
    /// as not synced.
    pub(super) async fn tidy_temps(
        &mut self,
        scan: &Scan,
        wanted: &[ItemName],
        not_synced: &mut Vec<String>,
    ) -> Result<(), EngineError> {
        let before = self.state.temps.len();
        let found: BTreeSet<&RelPath> = scan.stale_temps.iter().collect();
        self.state.temps.retain(|p| found.contains(p));
        for temp in &scan.stale_temps {
            if !self.state.temps.contains(temp) {
                not_synced.push(format!(
                    "{temp}: a name StackSync reserves for its download temporaries; not synced"
                ));
                continue;
            }
            if !temp.name().is_some_and(|n| wanted.contains(n))
                && self.io.fs.remove_file(temp).await.is_ok()
            {
                self.state.temps.remove(temp);
            }
        }
        if self.state.temps.len() != before {
            self.save().await?;
        }
        Ok(())
    }
}

impl Engine {
    /// The entries the scan left out that have a valid name, with their
    /// stamp (looked up here: the scan does not stat what it skips).
    pub(super) async fn unsynced(&self, scan: &Scan) -> BTreeMap<RelPath, Option<Stamp>> {
        let mut out = BTreeMap::new();
        for (dir, name, _) in &scan.skipped {
            let Ok(name) = ItemName::new(name.clone()) else {
                continue;
            };
            let path = dir.join(&name);
            let stamp = self.io.fs.stat(&path).await.ok().flatten().map(|m| m.stamp);
            out.insert(path, stamp);
        }
        for temp in &scan.stale_temps {
            if !self.state.temps.contains(temp) {
                let stamp = self.io.fs.stat(temp).await.ok().flatten().map(|m| m.stamp);
                out.insert(temp.clone(), stamp);
            }
        }
        out
    }
}

/// Every path where the downloads of `ops` may create their temporaries:
/// the destination folder if it is on disk as the plan starts, and the
/// root (see [`super::prefetch`]).
pub(super) fn candidates(ops: &[Op], local: &BTreeMap<Key, LocalItem>) -> Vec<RelPath> {
    let mut out = Vec::new();
    for op in ops {
        if let Op::Download { pos, content, .. } = op {
            let name = temp_name(&content.hash);
            out.push(RelPath::root().join(&name));
            if let Some(dir) = pos
                .parent
                .filter(|p| local.get(p).is_some_and(|l| l.is_folder))
                .and_then(|p| path_in(local, p))
            {
                out.push(dir.join(&name));
            }
        }
    }
    out
}
