//! Tells the daemon when to sync: file-system events on the synced folder,
//! debounced, plus a periodic rescan as a safety net for events the
//! platform drops (inotify queue overflow, network file systems, changes
//! made while a folder was not yet watched).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use stacksync_engine::ignore::DOWNLOAD_TEMP_PREFIX;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// Timing of a [`Watcher`].
#[derive(Debug, Clone, Copy)]
pub struct WatchConfig {
    /// Quiet time after the last event before reporting a change, so a
    /// burst (an editor's save, an unpacked archive) becomes one sync.
    pub quiet: Duration,
    /// Longest a change waits while events keep coming, so a folder that
    /// never falls quiet still gets synced.
    pub max_delay: Duration,
    /// Period of the safety-net rescan.
    pub rescan_every: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            quiet: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            rescan_every: Duration::from_secs(120),
        }
    }
}

/// What the watcher reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Something in the folder changed; `events` raw events were coalesced.
    Changed {
        /// How many platform events this stands for.
        events: usize,
        /// The absolute paths the events named (each changed entry; a
        /// rename names both ends), or `None` when the platform may have
        /// lost events (a queue overflow) or they were too many to list:
        /// then anything may have changed.
        paths: Option<BTreeSet<PathBuf>>,
    },
    /// The periodic rescan is due.
    Rescan,
}

/// Most paths one change reports; beyond, it reports "anywhere" (a rescan
/// of the whole folder costs about as much as that many folder listings).
const MAX_PATHS: usize = 4096;

/// The paths named by the events since the last report.
#[derive(Debug, Default)]
struct Named {
    paths: BTreeSet<PathBuf>,
    /// An event may have been lost, or there were too many paths.
    anywhere: bool,
}

impl Named {
    fn record(&mut self, event: Option<&notify::Event>) {
        let Some(event) = event.filter(|e| !e.need_rescan() && !e.paths.is_empty()) else {
            self.anywhere = true;
            return;
        };
        if self.anywhere {
            return;
        }
        self.paths
            .extend(event.paths.iter().filter(|p| !is_download_temp(p)).cloned());
        if self.paths.len() > MAX_PATHS {
            self.anywhere = true;
            self.paths.clear();
        }
    }

    fn take(&mut self) -> Option<BTreeSet<PathBuf>> {
        let named = std::mem::take(self);
        (!named.anywhere).then_some(named.paths)
    }
}

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    /// The folder.
    pub path: std::path::PathBuf,
    /// The platform error.
    #[source]
    pub source: notify::Error,
}

/// A running watch of one folder; stops when dropped.
pub struct Watcher {
    rx: mpsc::Receiver<WatchEvent>,
    task: JoinHandle<()>,
    // Kept alive: dropping it removes the platform watch.
    _inner: RecommendedWatcher,
}

impl Watcher {
    /// Starts watching `root` recursively. Must be called within a tokio
    /// runtime.
    pub fn start(root: &Path, config: WatchConfig) -> Result<Watcher, WatchError> {
        // Capacity 1: the debouncer only needs to know that something
        // happened; the count says how much, so no event is ever queued
        // unboundedly however busy the folder is.
        let (raw_tx, raw_rx) = mpsc::channel::<()>(1);
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        let named = Arc::new(Mutex::new(Named::default()));
        let naming = Arc::clone(&named);
        let mut inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let relevant = match &res {
                Ok(event) => is_relevant(event),
                // An error (such as a queue overflow) may hide changes.
                Err(_) => true,
            };
            if relevant {
                naming
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(res.as_ref().ok());
                counter.fetch_add(1, Ordering::Relaxed);
                let _ = raw_tx.try_send(());
            }
        })
        .map_err(|source| WatchError {
            path: root.to_path_buf(),
            source,
        })?;
        inner
            .watch(root, RecursiveMode::Recursive)
            .map_err(|source| WatchError {
                path: root.to_path_buf(),
                source,
            })?;
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(debounce(raw_rx, count, named, tx, config));
        Ok(Watcher {
            rx,
            task,
            _inner: inner,
        })
    }

    /// The next event; `None` if the watch has stopped.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether an event can mean a change to sync: not a mere read, and not
/// only about the engine's own download temporaries.
fn is_relevant(event: &notify::Event) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    if event.need_rescan() || event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|p| !is_download_temp(p))
}

/// Whether `path` names one of the engine's download temporaries.
fn is_download_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(DOWNLOAD_TEMP_PREFIX))
}

async fn debounce(
    mut raw: mpsc::Receiver<()>,
    count: Arc<AtomicUsize>,
    named: Arc<Mutex<Named>>,
    tx: mpsc::Sender<WatchEvent>,
    config: WatchConfig,
) {
    let mut rescan = tokio::time::interval_at(
        Instant::now() + config.rescan_every,
        config.rescan_every.max(Duration::from_millis(1)),
    );
    rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            got = raw.recv() => {
                if got.is_none() {
                    return;
                }
                let deadline = Instant::now() + config.max_delay;
                // Wait for a quiet period, but never past the deadline.
                loop {
                    let until = (Instant::now() + config.quiet).min(deadline);
                    match tokio::time::timeout_at(until, raw.recv()).await {
                        Ok(Some(())) if Instant::now() < deadline => continue,
                        Ok(None) => return,
                        _ => break,
                    }
                }
                WatchEvent::Changed {
                    events: count.swap(0, Ordering::Relaxed),
                    paths: named.lock().unwrap_or_else(|p| p.into_inner()).take(),
                }
            }
            _ = rescan.tick() => WatchEvent::Rescan,
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, CreateKind, ModifyKind};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(path.into())
    }

    #[test]
    fn reads_and_download_temporaries_are_not_changes() {
        let create = EventKind::Create(CreateKind::File);
        assert!(is_relevant(&event(create, "/f/a.txt")));
        assert!(is_relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "/f/x"
        )));
        assert!(!is_relevant(&event(create, "/f/.stacksync-dl-abc")));
        assert!(!is_relevant(&event(
            EventKind::Access(AccessKind::Any),
            "/f/a.txt"
        )));
        // A rename from a temporary to a real name is a change.
        let rename = notify::Event::new(EventKind::Modify(ModifyKind::Any))
            .add_path("/f/.stacksync-dl-abc".into())
            .add_path("/f/a.txt".into());
        assert!(is_relevant(&rename));
    }

    #[test]
    fn named_paths_fall_back_to_anywhere_on_overflow_or_too_many() {
        let mut named = Named::default();
        named.record(Some(&event(EventKind::Create(CreateKind::File), "/f/a")));
        named.record(Some(&event(
            EventKind::Create(CreateKind::File),
            "/f/.stacksync-dl-x",
        )));
        assert_eq!(named.take(), Some(BTreeSet::from([PathBuf::from("/f/a")])));
        // Taken: the next report starts empty.
        assert_eq!(named.take(), Some(BTreeSet::new()));
        named.record(None);
        named.record(Some(&event(EventKind::Create(CreateKind::File), "/f/b")));
        assert_eq!(named.take(), None);
        for i in 0..=MAX_PATHS {
            named.record(Some(&event(
                EventKind::Create(CreateKind::File),
                &format!("/f/{i}"),
            )));
        }
        assert_eq!(named.take(), None);
    }
}
