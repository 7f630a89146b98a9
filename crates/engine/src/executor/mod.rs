//! The executor: pulls remote changes, scans, plans, and applies the plan
//! in order, saving the sync state as it goes: before and after each commit
//! batch (see [`commit`]) and after each conflicted copy at once, and after
//! operations that only make the disk agree with the server every few
//! operations and at the end of each window (see [`Engine::save_soon`]).
//!
//! The plan is applied in windows of bounded transfer volume. Before each
//! window's ordered apply, its transfers run N at a time ([`prefetch`]):
//! uploads of the files it commits, downloads of the files it creates, each
//! into a download temporary (the content store is first told which chunks
//! the window downloads, so it can fetch neighbours in one request). Uploads
//! may leave chunks staged in packs the store has not written yet: every
//! commit batch that carries content flushes the store first. The ordered
//! operations then
//! only commit or put verified temporaries in place; they fall back to
//! transferring themselves whenever a prefetched result is not provably
//! for the file as it is now.
//!
//! Crash safety: an operation first changes the world (disk or server) and
//! only then the saved state. A crash in between leaves a state that the
//! next plan recognises — a local change already made is claimed by path,
//! file id or hash; a commit batch is preceded by an intent record of its
//! proposals, so a commit already accepted is recognised when it comes
//! back in the change feed (even if the user edited or moved the files
//! since), and re-committing an identical version is idempotent on the
//! server. So restarting from any point re-plans and converges.

mod apply;
mod commit;
mod prefetch;
mod temps;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use stacksync_proto::{ContentHash, ItemId};

use crate::error::EngineError;
use crate::io::{Clock, ContentStore, Fs, IdSource, Remote, StateStore};
use crate::path::RelPath;
use crate::planner::{self, Focus, Key, LocalItem, PlanInput};
use crate::scan::{self, HashCache, KnownHashes, Skipped};
use crate::tree::{Refusal, Stamp, SyncState};

/// Where the synced folder may have changed since the engine last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Anywhere: the whole folder is walked (start-up, the periodic
    /// rescan, a watcher that may have lost events).
    Anywhere,
    /// Only at these paths (and under them, for folders), as a watcher
    /// reported them: the previous scan is brought up to date for them
    /// alone (see [`scan::rescan`]), so the cost follows the change, not
    /// the tree.
    Paths(BTreeSet<RelPath>),
}

/// Settings of one engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Shown in conflicted-copy names.
    pub device_name: String,
    /// Change-feed page size.
    pub page_limit: u32,
    /// Most plan-and-apply rounds in one [`Engine::sync`]; each round
    /// normally makes progress, this bounds a pathological case (a folder
    /// that cannot be deleted because of ignored files in it).
    pub max_rounds: usize,
    /// Uploads (and, separately, downloads) run at the same time while a
    /// plan's transfers are prefetched; 1 transfers one file at a time.
    pub transfers: usize,
    /// Most items in one commit call (the service takes at most
    /// [`stacksync_proto::CommitRequest::MAX_ITEMS`]); 1 commits one item
    /// per call.
    pub commit_batch: usize,
    /// The user may only read this workspace (a read-only member of a
    /// shared folder): the engine never commits, and keeps local changes on
    /// this device instead (edits in conflicted copies, what the server
    /// does not have left in place and reported; see
    /// [`planner::READ_ONLY_REASON`]). Remote changes apply as usual.
    pub read_only: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            device_name: "device".into(),
            page_limit: 500,
            max_rounds: 12,
            transfers: 8,
            commit_batch: stacksync_proto::CommitRequest::MAX_ITEMS,
            read_only: false,
        }
    }
}

/// What one [`Engine::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Plan-and-apply rounds run.
    pub rounds: usize,
    /// True when the last round found nothing to do.
    pub converged: bool,
    /// Operations applied.
    pub applied: usize,
    /// Operations skipped, with why; they are retried in a later round.
    pub skipped: Vec<String>,
    /// Local paths the server refused, with why: names it does not accept
    /// (retried once the path goes away), and files it refused for good
    /// (over quota, forbidden, too large: retried once the file changes);
    /// and paths the planner leaves out on this device (clashes, and in
    /// read-only mode what is kept here, not uploaded).
    pub refused: Vec<(RelPath, String)>,
    /// Conflicted copies made.
    pub conflicts: usize,
    /// Entries the scanner left out (ignored, symlinks, special files,
    /// impossible names), as `parent/name: why`.
    pub not_synced: Vec<String>,
    /// Files and folders renamed on disk to the composed (NFC) form of
    /// their name, which looks the same: the new path and the old raw name.
    pub composed: Vec<(RelPath, String)>,
}

/// The effects an engine works through.
#[derive(Clone)]
pub struct EngineIo {
    /// The synced folder.
    pub fs: Arc<dyn Fs>,
    /// The sync service (change feed and commits).
    pub remote: Arc<dyn Remote>,
    /// The content pipeline and chunk store.
    pub content: Arc<dyn ContentStore>,
    /// Time for conflicted-copy names.
    pub clock: Arc<dyn Clock>,
    /// Ids for new items.
    pub ids: Arc<dyn IdSource>,
    /// Where the sync state is persisted.
    pub store: Arc<dyn StateStore>,
}

/// One folder kept in sync with one workspace.
pub struct Engine {
    io: EngineIo,
    config: EngineConfig,
    state: SyncState,
    cache: HashCache,
    /// Operations applied since the state was last saved (see
    /// [`Engine::save_soon`]).
    unsaved: usize,
    /// The last scan, kept up to date by partial rescans; `None` until
    /// the first full one.
    scan: Option<scan::Scan>,
    /// Paths the engine itself changed, or found unstable, since `scan`
    /// was taken: every partial rescan looks at them too.
    touched: BTreeSet<RelPath>,
    /// Items whose remote or synced record changed since the last plan
    /// (the change feed, commit answers, resolved proposals): a focused
    /// plan looks at them.
    dirty: BTreeSet<ItemId>,
    /// Whether a full plan would find nothing to do outside what changed
    /// since the last plan (that one was applied whole, without a skip):
    /// then the next plan may be focused on `touched`, the watcher's paths
    /// and `dirty` (see [`planner::plan_focused`]).
    settled: bool,
    /// What focused plans look things up in, kept across rounds (see
    /// [`planner::Lookups`]): told of every state change before a save
    /// forgets it, and of every local path a partial rescan looked at.
    lookups: planner::Lookups,
    /// Paths of this folder that belong to other workspaces (mounted
    /// shared folders): left out like ignored folders, so this engine
    /// neither syncs nor deletes anything there.
    excluded: BTreeSet<RelPath>,
}

/// Most paths a partial rescan takes; beyond, walking the whole folder
/// costs about the same.
const MAX_PARTIAL: usize = 4096;

/// Working state while a plan is applied.
struct Exec {
    /// Where each key is on disk now.
    local: BTreeMap<Key, LocalItem>,
    /// Ids given to new items once committed.
    created: BTreeMap<u32, ItemId>,
    /// Transfers done ahead of the ordered operations.
    prefetched: prefetch::Prefetched,
}

impl Exec {
    fn id_of(&self, key: Key) -> Option<ItemId> {
        match key {
            Key::Item(id) => Some(id),
            Key::New(n) => self.created.get(&n).copied(),
        }
    }
}

/// Entries the hash cache may hold before what it holds twice is dropped.
const CACHE_PRUNE_AT: usize = 4096;

/// What a scan knows of files it may have seen: the hashes this engine
/// read itself (new files, downloads), then those of the synced files.
struct Known<'a> {
    cache: &'a HashCache,
    synced: planner::SyncedHashes<'a>,
}

impl KnownHashes for Known<'_> {
    fn known_hash(&self, path: &RelPath, stamp: &Stamp) -> Option<ContentHash> {
        self.cache
            .known_hash(path, stamp)
            .or_else(|| self.synced.get(stamp))
    }
}

impl Engine {
    /// Opens an engine, loading the saved state (empty on first run).
    pub async fn open(io: EngineIo, config: EngineConfig) -> Result<Engine, EngineError> {
        let state = io
            .store
            .load()
            .await
            .map_err(EngineError::Store)?
            .unwrap_or_default();
        // Synced files are known through the lookups by their file id
        // (`Known`); only stamps without one need a path.
        let mut cache = HashCache::default();
        for (id, s) in &state.synced {
            if let (Some(stamp @ Stamp { file_id: None, .. }), Some(hash), Some(path)) =
                (s.stamp, s.content_hash, state.synced_path(*id))
            {
                cache.insert(path, stamp, hash);
            }
        }
        Ok(Engine {
            io,
            config,
            state,
            cache,
            unsaved: 0,
            scan: None,
            touched: BTreeSet::new(),
            dirty: BTreeSet::new(),
            settled: false,
            lookups: planner::Lookups::default(),
            excluded: BTreeSet::new(),
        })
    }

    /// Leaves `excluded` out of sync from the next round on (see
    /// [`crate::IgnoreRules::excluding`]): the places where other
    /// workspaces are mounted in this one's folder. A change walks the
    /// whole folder and compares the trees again at the next round.
    pub fn set_excluded(&mut self, excluded: BTreeSet<RelPath>) {
        if excluded != self.excluded {
            self.excluded = excluded;
            self.scan = None;
            self.settled = false;
        }
    }

    /// The paths left out by [`Engine::set_excluded`].
    pub fn excluded(&self) -> &BTreeSet<RelPath> {
        &self.excluded
    }

    /// The current sync state (remote tree, synced tree, cursor).
    pub fn state(&self) -> &SyncState {
        &self.state
    }

    /// Runs rounds of pull, scan, plan and apply until a plan is empty (or
    /// `max_rounds`). Start-up reconciliation of offline edits is simply
    /// the first round: the scan is compared with the saved synced tree.
    pub async fn sync(&mut self) -> Result<SyncReport, EngineError> {
        self.sync_changed(Changed::Anywhere).await
    }

    /// [`Engine::sync`] after changes at known places only: the first
    /// round rescans `changed` (and what the engine itself changed since
    /// its last scan) instead of the whole folder. With
    /// [`Changed::Paths`], a round that applied its whole plan without a
    /// conflict or a skip ends the sync: the changes it made on disk are
    /// the next watcher event's, and the periodic full rescan stays the
    /// safety net.
    pub async fn sync_changed(&mut self, changed: Changed) -> Result<SyncReport, EngineError> {
        let partial = matches!(changed, Changed::Paths(_));
        let mut changed = changed;
        let mut report = SyncReport::default();
        while report.rounds < self.config.max_rounds {
            report.rounds += 1;
            let (skipped, conflicts) = (report.skipped.len(), report.conflicts);
            let worked = self.round(&mut report, &changed).await?;
            // Settled again only by a round that applied its whole plan.
            self.settled = report.skipped.len() == skipped;
            // What the round applied is saved before it reports success;
            // after a failure it is not (a crash could not have saved it
            // either), and the next plan recognises it on disk.
            self.save_pending().await?;
            let clean = report.skipped.len() == skipped && report.conflicts == conflicts;
            if !worked || (partial && clean) {
                report.converged = true;
                self.prune_cache();
                break;
            }
            // Later rounds of a partial sync look where the earlier ones
            // acted; a full one keeps walking the whole folder, so that
            // `sync --once` also meets what changed elsewhere meanwhile.
            if partial {
                changed = Changed::Paths(BTreeSet::new());
            }
        }
        Ok(report)
    }

    /// Reads the change feed from the saved cursor to its end, then
    /// resolves any commit proposals left pending by an interrupted batch.
    pub async fn pull(&mut self) -> Result<(), EngineError> {
        loop {
            let page = self
                .io
                .remote
                .get_changes(self.state.cursor, self.config.page_limit)
                .await
                .map_err(|source| EngineError::Remote {
                    doing: "reading the change feed".into(),
                    source,
                })?;
            if page.cursor < self.state.cursor {
                return Err(EngineError::Protocol(format!(
                    "change feed went back from {} to {}",
                    self.state.cursor, page.cursor
                )));
            }
            let progressed = page.cursor > self.state.cursor;
            let learned = !page.items.is_empty();
            for meta in page.items {
                self.dirty.insert(meta.id);
                self.state.remote.apply(meta);
            }
            self.state.cursor = page.cursor;
            // An empty page at the same cursor changed nothing: no save.
            if progressed || learned {
                self.save().await?;
            }
            if !page.has_more || !progressed {
                return self.resolve_pending().await;
            }
        }
    }

    /// Resolves the proposals of a commit batch whose outcomes were never
    /// saved (a crash or a lost reply after sending it), now that the feed
    /// has been read to its end; see [`SyncState::resolve_pending`].
    async fn resolve_pending(&mut self) -> Result<(), EngineError> {
        if self.state.pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<ItemId> = self.state.pending.keys().copied().collect();
        self.dirty.extend(ids.iter().copied());
        let resolved = self.state.resolve_pending();
        // The agreed files need no re-hashing while their stamp holds.
        for id in ids {
            if let Some(s) = self.state.synced.get(&id)
                && let (Some(stamp), Some(hash), Some(path)) =
                    (s.stamp, s.content_hash, self.state.synced_path(id))
            {
                self.cache.insert(path, stamp, hash);
            }
        }
        tracing::debug!(
            landed = resolved.landed,
            dropped = resolved.dropped,
            "resolved commits pending from an interrupted batch"
        );
        self.save().await
    }

    /// One round; returns whether the plan had operations.
    async fn round(
        &mut self,
        report: &mut SyncReport,
        changed: &Changed,
    ) -> Result<bool, EngineError> {
        // Until this round has applied its whole plan (a failure leaves it
        // false, and the next plan is a full one).
        let settled = std::mem::replace(&mut self.settled, false);
        self.pull().await?;
        let (scan, moved) = self.look(changed).await?;
        report.not_synced = scan
            .skipped
            .iter()
            .filter(|(_, _, why)| *why != Skipped::Ignored)
            .map(|(dir, name, why)| format!("{dir}/{}: {why:?}", stacksync_proto::printable(name)))
            .collect();
        for (path, raw) in &scan.composed {
            tracing::info!(%path, "renamed to the composed (NFC) form of its name");
            report.composed.push((path.clone(), raw.clone()));
        }
        for path in &scan.hashed {
            if let Some(e) = scan.tree.get(path)
                && let Some(h) = e.hash
            {
                self.cache.insert(path.clone(), e.stamp, h);
            }
        }
        // A refused name is retried once the path has gone away (renamed);
        // a refused file also once it changed. Clashes are the planner's
        // own finding: recomputed below.
        let refused_before = self.state.refused.clone();
        self.state.refused.retain(|p, r| {
            !r.clash
                && scan
                    .tree
                    .get(p)
                    .is_some_and(|e| r.stamp.is_none_or(|s| s == e.stamp))
        });
        let unsynced = self.unsynced(&scan).await;
        let now = self.io.clock.now_millis();
        let input = PlanInput {
            state: &self.state,
            local: &scan.tree,
            ignore: &scan.ignore,
            unsynced: &unsynced,
            device_name: &self.config.device_name,
            now,
            read_only: self.config.read_only,
        };
        let dirty = std::mem::take(&mut self.dirty);
        let focus = match moved {
            Some(paths) if settled => Some(Focus { paths, ids: dirty }),
            // Nothing says where the changes are (a full scan, a round after
            // one that did not finish): the trees compared say it. A focus
            // over much of them would cost more than the full plan.
            _ => {
                let focus = planner::unsettled(&input);
                let named = focus.paths.len() + focus.ids.len();
                (named <= (scan.tree.len() + self.state.synced.len()) / 8).then_some(focus)
            }
        };
        let plan = match focus {
            Some(focus) => {
                let focused = planner::plan_focused_with(&input, &focus, &mut self.lookups);
                tracing::debug!(
                    paths = focus.paths.len(),
                    ids = focus.ids.len(),
                    looked_at = focused.paths.len(),
                    ops = focused.plan.ops.len(),
                    "focused plan"
                );
                // Clashes elsewhere were not looked at: they still hold.
                for (p, r) in &refused_before {
                    if r.clash && !focused.paths.contains(p) {
                        self.state.refused.insert(p.clone(), r.clone());
                    }
                }
                focused.plan
            }
            _ => planner::plan(&input),
        };
        // Each clash is reported as a refusal (once: it stays in the state
        // while the clash lasts, so a daemon does not announce it again).
        for (path, reason) in &plan.clashes {
            self.state
                .refused
                .insert_if_absent(path.clone(), || Refusal {
                    reason: reason.clone(),
                    stamp: None,
                    clash: true,
                });
        }
        if self.state.refused != refused_before {
            self.save().await?;
        }
        // Leftovers of interrupted downloads: kept if this plan downloads
        // the same content again (it resumes them), removed otherwise.
        let wanted: Vec<stacksync_proto::ItemName> = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                planner::Op::Download { content, .. } => Some(prefetch::temp_name(&content.hash)),
                _ => None,
            })
            .collect();
        self.tidy_temps(&scan, &wanted, &mut report.not_synced)
            .await?;
        // Files that changed while being hashed are not done: another
        // round rescans them (a file written without pause keeps the sync
        // from converging until it settles, which the report shows).
        let unstable: Vec<RelPath> = scan
            .tree
            .iter()
            .filter(|(_, e)| !e.is_folder && e.hash.is_none())
            .map(|(p, _)| p.clone())
            .collect();
        // The temporaries tidied, and what was unstable, are looked at
        // again by the next partial rescan.
        self.touched.extend(scan.stale_temps.iter().cloned());
        self.touched.extend(unstable.iter().cloned());
        self.scan = Some(scan);
        if plan.ops.is_empty() {
            report.refused = self
                .state
                .refused
                .iter()
                .map(|(p, r)| (p.clone(), r.reason.clone()))
                .collect();
            if unstable.is_empty() {
                return Ok(false);
            }
            report.skipped.extend(
                unstable
                    .iter()
                    .map(|p| format!("{p}: changed while being read; rescanning")),
            );
            return Ok(true);
        }
        if !unstable.is_empty() {
            report.skipped.push(format!(
                "{} file(s) changed while being read; rescanning",
                unstable.len()
            ));
        }
        tracing::debug!(ops = plan.ops.len(), "applying plan");
        let (fs, content) = (self.io.fs.clone(), self.io.content.clone());
        let parallel = self.config.transfers.max(1);
        let mut exec = Exec {
            local: plan.local,
            created: BTreeMap::new(),
            prefetched: prefetch::Prefetched::default(),
        };
        let mut next = 0;
        let mut replan = false;
        // The plan runs in windows of bounded transfer volume: each window's
        // transfers are prefetched, then its operations applied (its commits
        // batched). Other devices see the first files committed while later
        // ones are still uploading, instead of everything at the very end.
        'plan: while next < plan.ops.len() {
            let end = window_end(&plan.ops, next, &exec.local);
            let window = &plan.ops[next..end];
            let temps = self
                .own_temps(temps::candidates(window, &exec.local))
                .await?;
            let (uploads, downloads) = futures::join!(
                prefetch::uploads(
                    fs.as_ref(),
                    content.as_ref(),
                    &exec.local,
                    &self.state.remote,
                    window,
                    parallel
                ),
                prefetch::downloads(
                    fs.as_ref(),
                    content.as_ref(),
                    &exec.local,
                    window,
                    &temps,
                    parallel
                ),
            );
            exec.prefetched = prefetch::Prefetched { uploads, downloads };
            while next < end {
                // Where the operations act, before and after: what the
                // next partial rescan must look at again.
                self.touch(&exec, &plan.ops[next..end]);
                let taken = match &plan.ops[next] {
                    planner::Op::Commit { .. } => {
                        self.commit_batch(&mut exec, &plan.ops[next..end]).await?
                    }
                    op => vec![self.apply(&mut exec, op).await?],
                };
                let ops = &plan.ops[next..next + taken.len()];
                self.touch(&exec, ops);
                next += taken.len();
                for (op, outcome) in ops.iter().zip(taken) {
                    match outcome {
                        apply::Outcome::Applied => report.applied += 1,
                        apply::Outcome::Conflict => {
                            report.applied += 1;
                            report.conflicts += 1;
                        }
                        apply::Outcome::Skipped(why) => {
                            report.skipped.push(format!("{op:?}: {why}"))
                        }
                        apply::Outcome::Replan(why) => {
                            report.skipped.push(format!("{op:?}: {why}"));
                            // The rest of a batch was answered; its outcomes
                            // are in the state, so they count.
                            replan = true;
                        }
                    }
                }
                if replan {
                    break 'plan;
                }
            }
            // Commits saved their records themselves; the records of what
            // only made the disk agree wait for the next save, as in a
            // window (see `save_soon`).
            if self.unsaved >= self.save_every() {
                self.save().await?;
            }
        }
        report.refused = self
            .state
            .refused
            .iter()
            .map(|(p, r)| (p.clone(), r.reason.clone()))
            .collect();
        Ok(true)
    }

    /// The scan a round plans with: the previous one brought up to date
    /// for `changed` and for what the engine touched since, or a walk of
    /// the whole folder when that is needed or cheaper. After a partial
    /// rescan, also every path that may differ from the previous scan
    /// (what was named or touched, and what the rescan found changed).
    async fn look(
        &mut self,
        changed: &Changed,
    ) -> Result<(scan::Scan, Option<BTreeSet<RelPath>>), EngineError> {
        let fs = self.io.fs.clone();
        let previous = self.scan.take();
        let paths = match changed {
            Changed::Paths(paths) => Some(paths),
            Changed::Anywhere => None,
        };
        let mut all = std::mem::take(&mut self.touched);
        if let Some(paths) = paths {
            all.extend(paths.iter().cloned());
        }
        // The ignore rules apply everywhere: a change to them is a full
        // scan.
        let partial =
            paths.is_some() && all.len() <= MAX_PARTIAL && !all.contains(&scan::ignore_file());
        match previous {
            Some(mut previous) if partial => {
                let known = Known {
                    cache: &self.cache,
                    synced: self.lookups.synced_hashes(&self.state),
                };
                let moved = scan::rescan(fs.as_ref(), &known, &mut previous, &all).await?;
                all.extend(moved);
                self.lookups.note_local(&previous.tree, &all);
                Ok((previous, Some(all)))
            }
            _ => {
                self.lookups.forget_local();
                let known = Known {
                    cache: &self.cache,
                    synced: self.lookups.synced_hashes(&self.state),
                };
                Ok((
                    scan::scan_excluding(fs.as_ref(), &known, &self.excluded).await?,
                    None,
                ))
            }
        }
    }

    /// Drops what the cache holds twice once it has grown: entries of
    /// files since synced with the same stamp.
    fn prune_cache(&mut self) {
        if self.cache.len() > CACHE_PRUNE_AT {
            let synced = self.lookups.synced_hashes(&self.state);
            self.cache.prune(&synced);
        }
    }

    /// Records the paths `ops` act on (as `exec` places their items now).
    fn touch(&mut self, exec: &Exec, ops: &[planner::Op]) {
        for op in ops {
            let copy = match op {
                planner::Op::ConflictCopy { copy, .. } => Some(*copy),
                _ => None,
            };
            for key in std::iter::once(op.key()).chain(copy) {
                if let Some(path) = planner::path_in(&exec.local, key) {
                    self.touched.insert(path);
                }
            }
        }
    }

    async fn save(&mut self) -> Result<(), EngineError> {
        // What the state records as done on disk must be durable first.
        self.io.fs.sync_dirs().await?;
        self.io
            .store
            .save(&self.state)
            .await
            .map_err(EngineError::Store)?;
        // Saved: the next save writes what changes from here (after a
        // failure, the record still holds what that save did not write).
        // The lookups take the record in first.
        self.lookups.note_state(&self.state);
        self.state.forget_changes();
        self.unsaved = 0;
        Ok(())
    }

    /// Saves after an operation that made the disk agree with the server
    /// (a download, a folder made, a local move or delete the server asked
    /// for): at once every [`Engine::save_every`] operations, otherwise at
    /// the end of the round. Saving after each one cost an fsync and a
    /// pass over the whole state per file of a first sync. Nothing is lost
    /// when a crash drops these records: the next plan finds the disk and
    /// the server in agreement (same path, same content, or both deleted)
    /// and records it again without a transfer. Commits are never deferred
    /// (their intent record must be durable before they are sent), nor are
    /// conflicted copies. The one cost: a downloaded file whose record a
    /// crash dropped, and which the user edits before the client restarts,
    /// comes back as a conflicted copy next to the server's version rather
    /// than as an edit of it (nothing is lost). The records at risk are
    /// those of the last few seconds at most: the ordered operations of a
    /// window only put prefetched files in place.
    pub(super) async fn save_soon(&mut self) -> Result<(), EngineError> {
        self.unsaved += 1;
        if self.unsaved >= self.save_every() {
            self.save().await?;
        }
        Ok(())
    }

    /// Operations applied between two saves: [`SAVE_EVERY`], or more in a
    /// large state, whose every save compares all of it with the last one:
    /// so that a first sync of a large tree costs saves in proportion to
    /// its size, not to its square (a save covers about as many operations
    /// as the state has items / [`SAVE_SHARE`], a few seconds of them).
    fn save_every(&self) -> usize {
        SAVE_EVERY.max(self.state.synced.len() / SAVE_SHARE)
    }

    /// Saves what [`Engine::save_soon`] deferred, if anything.
    async fn save_pending(&mut self) -> Result<(), EngineError> {
        if self.unsaved > 0 {
            self.save().await?;
        }
        Ok(())
    }
}

/// Most operations applied before the state is saved (see
/// [`Engine::save_soon`]).
const SAVE_EVERY: usize = 64;
/// See [`Engine::save_every`].
const SAVE_SHARE: usize = 32;

/// Transfer volume of one window of a plan (see [`Engine::round`]): large
/// enough that transfers overlap well, small enough that other devices start
/// on the first files early.
const WINDOW_BYTES: u64 = 32 * 1024 * 1024;
/// Most files transferred in one window.
const WINDOW_FILES: usize = 256;

/// Where the window of `ops` that starts at `start` ends (exclusive; at
/// least one operation).
fn window_end(ops: &[planner::Op], start: usize, local: &BTreeMap<Key, LocalItem>) -> usize {
    let (mut bytes, mut files) = (0u64, 0usize);
    for (i, op) in ops.iter().enumerate().skip(start) {
        let size = match op {
            planner::Op::Download { content, .. } => Some(content.size),
            planner::Op::Commit {
                key,
                change:
                    planner::RemoteChange::Put {
                        is_folder: false,
                        upload: true,
                        ..
                    },
            } => Some(local.get(key).map_or(0, |l| l.stamp.size)),
            _ => None,
        };
        if let Some(size) = size {
            if files > 0 && (bytes + size > WINDOW_BYTES || files >= WINDOW_FILES) {
                return i;
            }
            bytes += size;
            files += 1;
        }
    }
    ops.len()
}
