//! The status change feed: what the status socket's `subscribe` pushes to
//! file managers and the tray, so they never poll a file.
//!
//! Whatever may change a status pokes the feed: a sync round starting or
//! ending (its board's activity), the watcher noting local edits, a pause
//! or resume. While someone subscribes, the feed then (after letting a
//! burst settle) computes every path's status ([`super::status_map`]: one
//! walk of each workspace's folder, no server request) and sends the paths
//! whose status differs from the last map: a diff of the status view
//! between rounds. With no subscriber nothing is computed.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stacksync_engine::RelPath;
use tokio::sync::{Notify, broadcast, watch};

use super::{FRESH_COPY_WAIT, FileStatus, StatusRoutes, status_map};

/// Most paths one `changed` event names; past that subscribers are told
/// to ask again about everything they show.
pub const MAX_EVENT_PATHS: usize = 2000;

/// How long a burst of pokes may go on before the map is computed (edits
/// and rounds come in bursts; one map for the burst is enough).
const SETTLE: Duration = Duration::from_millis(150);

/// How many recently synced files the feed remembers (the tray's menu).
pub const RECENT: usize = 10;

/// What subscribers are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// These paths (absolute) have a new status.
    Changed(Vec<PathBuf>),
    /// Too many to name: every path may have a new status.
    All,
    /// The daemon's state changed (paused, resumed, busy, an error).
    State,
}

/// The feed; clones share one.
#[derive(Clone)]
pub struct StatusFeed(Arc<Inner>);

struct Inner {
    poke: Notify,
    events: broadcast::Sender<FeedEvent>,
    /// Bumped after every map computed (a subscriber's baseline).
    maps: watch::Sender<u64>,
    /// Files that became synced while someone subscribed, newest first.
    recent: Mutex<VecDeque<PathBuf>>,
    /// Files pending or being synced in the last map (none before one).
    to_sync: Mutex<Option<u64>>,
}

impl Default for StatusFeed {
    fn default() -> StatusFeed {
        StatusFeed(Arc::new(Inner {
            poke: Notify::new(),
            events: broadcast::Sender::new(64),
            maps: watch::Sender::new(0),
            recent: Mutex::default(),
            to_sync: Mutex::default(),
        }))
    }
}

impl StatusFeed {
    /// Something may have changed statuses.
    pub fn poke(&self) {
        self.0.poke.notify_one();
    }

    /// The daemon's state changed: subscribers are told, and statuses are
    /// looked at again.
    pub fn state_changed(&self) {
        let _ = self.0.events.send(FeedEvent::State);
        self.poke();
    }

    /// The files that became synced lately (absolute paths), newest first.
    pub fn recent(&self) -> Vec<PathBuf> {
        self.0
            .recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many files were waiting to be synced or being synced when the
    /// statuses were last computed (while someone subscribes; the tray's
    /// progress), or `None` if they were not.
    pub fn to_sync(&self) -> Option<u64> {
        self.0.to_sync.lock().map(|n| *n).unwrap_or_default()
    }

    fn note_recent(&self, paths: impl Iterator<Item = PathBuf>) {
        if let Ok(mut recent) = self.0.recent.lock() {
            for p in paths {
                recent.retain(|q| *q != p);
                recent.push_front(p);
                recent.truncate(RECENT);
            }
        }
    }

    /// Subscribes; completes once the map that later changes are diffed
    /// against is taken (so nothing that changes after this returns is
    /// missed), or after `wait` if the feed is not being followed.
    pub async fn subscribe(&self, wait: Duration) -> broadcast::Receiver<FeedEvent> {
        let events = self.0.events.subscribe();
        let mut maps = self.0.maps.subscribe();
        maps.mark_unchanged();
        self.poke();
        let _ = tokio::time::timeout(wait, maps.changed()).await;
        events
    }

    /// Computes maps and sends diffs for as long as it runs (the daemon
    /// runs it beside its socket).
    pub async fn follow(self, routes: StatusRoutes) {
        let mut last: Option<BTreeMap<RelPath, FileStatus>> = None;
        loop {
            self.0.poke.notified().await;
            if self.0.events.receiver_count() == 0 {
                // Nobody listens: no baseline to keep either.
                last = None;
                if let Ok(mut n) = self.0.to_sync.lock() {
                    *n = None;
                }
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            let folders = routes.get();
            let now = match status_map(&folders, FRESH_COPY_WAIT).await {
                Ok(map) => map,
                Err(e) => {
                    // The folder changes under the walk: the next poke
                    // (the change itself) looks again.
                    tracing::debug!(%e, "status map not computed");
                    continue;
                }
            };
            if let Some(before) = &last {
                let changed = diff(before, &now);
                // Files whose upload or download just ended.
                self.note_recent(
                    changed
                        .iter()
                        .filter(|p| {
                            now.get(*p) == Some(&FileStatus::Synced)
                                && matches!(
                                    before.get(*p),
                                    Some(FileStatus::Pending | FileStatus::Syncing) | None
                                )
                        })
                        .map(|p| crate::mounts::absolute(&folders.folder, p))
                        .filter(|p| p.is_file()),
                );
                if changed.len() > MAX_EVENT_PATHS {
                    let _ = self.0.events.send(FeedEvent::All);
                } else if !changed.is_empty() {
                    let paths = changed
                        .iter()
                        .map(|p| crate::mounts::absolute(&folders.folder, p))
                        .collect();
                    let _ = self.0.events.send(FeedEvent::Changed(paths));
                }
            }
            if let Ok(mut n) = self.0.to_sync.lock() {
                *n = Some(files_to_sync(&now));
            }
            last = Some(now);
            self.0.maps.send_modify(|n| *n += 1);
        }
    }
}

/// How many files (not folders, whose status is the worst inside them)
/// of a map are pending or syncing.
pub fn files_to_sync(map: &BTreeMap<RelPath, FileStatus>) -> u64 {
    let folders: std::collections::HashSet<RelPath> =
        map.keys().filter_map(RelPath::parent).collect();
    map.iter()
        .filter(|(p, s)| {
            matches!(s, FileStatus::Pending | FileStatus::Syncing) && !folders.contains(*p)
        })
        .count() as u64
}

/// The paths whose status differs between two maps (appeared, gone or
/// changed), in path order.
pub fn diff(
    before: &BTreeMap<RelPath, FileStatus>,
    now: &BTreeMap<RelPath, FileStatus>,
) -> Vec<RelPath> {
    let mut out: Vec<RelPath> = now
        .iter()
        .filter(|(p, s)| before.get(*p) != Some(*s))
        .map(|(p, _)| p.clone())
        .collect();
    out.extend(before.keys().filter(|p| !now.contains_key(*p)).cloned());
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, FileStatus)]) -> BTreeMap<RelPath, FileStatus> {
        entries
            .iter()
            .map(|(p, s)| {
                let p = if p.is_empty() {
                    RelPath::root()
                } else {
                    RelPath::parse(p).expect("a valid path")
                };
                (p, *s)
            })
            .collect()
    }

    #[test]
    fn files_to_sync_counts_files_not_folders() {
        let m = map(&[
            ("", FileStatus::Syncing),
            ("docs", FileStatus::Syncing),
            ("docs/a.txt", FileStatus::Syncing),
            ("docs/b.txt", FileStatus::Pending),
            ("docs/c.txt", FileStatus::Synced),
            ("empty", FileStatus::Pending),
            ("top.txt", FileStatus::Conflict),
        ]);
        // An empty folder waiting to be created counts as one thing to do.
        assert_eq!(files_to_sync(&m), 3);
        assert_eq!(files_to_sync(&BTreeMap::new()), 0);
    }

    #[test]
    fn a_diff_names_what_changed_appeared_or_went() {
        use FileStatus::*;
        let before = map(&[("", Synced), ("a", Synced), ("b", Synced), ("c", Pending)]);
        let now = map(&[("", Pending), ("a", Synced), ("c", Syncing), ("d", Pending)]);
        let names: Vec<String> = diff(&before, &now).iter().map(|p| p.to_string()).collect();
        assert_eq!(names, ["", "b", "c", "d"]);
        assert!(diff(&now, &now).is_empty());
    }
}
