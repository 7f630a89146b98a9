//! One run from one seed: a workload of user edits and syncs interleaved
//! one step at a time, faults injected between and inside steps, then
//! quiescence and the checks.

use std::collections::{BTreeMap, BTreeSet};

use stacksync_engine::sim::SimRng;
use stacksync_engine::{Changed, SyncReport};
use stacksync_proto::{ContentHash, ItemId, ItemMeta, Notification, WorkspaceId};

use crate::device::{SimDevice, hash};
use crate::world::World;

/// How long a run is and how often faults fire (percent per step).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Workload steps before quiescence.
    pub steps: usize,
    /// A sync step loses its commit reply after the commit was applied.
    pub lost_reply_pct: u64,
    /// A notification is dropped / delivered twice.
    pub dropped_note_pct: u64,
    pub duplicated_note_pct: u64,
    /// A device crashes between steps.
    pub crash_pct: u64,
    /// A sync step's object writes fail (one to three of them).
    pub blob_failure_pct: u64,
    /// A device crashes in the middle of a sync: after a few of the
    /// engine's disk operations, or part-way through writing a file.
    pub mid_sync_crash_pct: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            steps: 60,
            lost_reply_pct: 6,
            dropped_note_pct: 15,
            duplicated_note_pct: 10,
            crash_pct: 4,
            blob_failure_pct: 6,
            mid_sync_crash_pct: 8,
        }
    }
}

/// What a passing run did.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub steps: u64,
    pub syncs: u64,
    /// Faults that fired: crashes, lost replies, failed object writes,
    /// dropped and duplicated notifications.
    pub faults: u64,
    /// Conflicted copies the engines made.
    pub conflicts: u64,
}

/// Why a run failed, with the steps that led there.
#[derive(Debug, Clone)]
pub struct RunFailure {
    pub message: String,
    pub trace: Vec<String>,
}

/// Runs seed `seed` to the end; `Err` describes the first broken property.
pub async fn run_seed(seed: u64, config: &RunConfig) -> Result<RunStats, RunFailure> {
    let mut run = Run::start(seed, config.clone())
        .await
        .map_err(|m| RunFailure {
            message: m,
            trace: Vec::new(),
        })?;
    let result = run.go().await;
    result
        .map(|()| run.stats.clone())
        .map_err(|message| RunFailure {
            message,
            trace: run.trace.clone(),
        })
}

/// The shortest run of `seed` that still fails: the same workload cut
/// after fewer steps (each prefix of a seed's steps is the same), then
/// quiescence and the checks. Returns its step count and failure, or
/// `None` if no shorter run fails (the failure needs the full length).
pub async fn shrink(seed: u64, config: &RunConfig) -> Option<(usize, RunFailure)> {
    for steps in 0..config.steps {
        let shorter = RunConfig {
            steps,
            ..config.clone()
        };
        if let Err(f) = run_seed(seed, &shorter).await {
            return Some((steps, f));
        }
    }
    None
}

struct Run {
    rng: SimRng,
    config: RunConfig,
    world: World,
    /// Every content an engine found on a disk when it looked: what a
    /// user saved and must never lose.
    saved: BTreeMap<ContentHash, String>,
    trace: Vec<String>,
    stats: RunStats,
    step: u64,
}

/// Names from small pools, so that devices collide on them.
const FOLDERS: [&str; 4] = ["docs", "photos", "music", "work"];
const FILES: usize = 10;

impl Run {
    async fn start(seed: u64, config: RunConfig) -> Result<Run, String> {
        let mut rng = SimRng::new(seed);
        let users = 1 + rng.below(2);
        let devices: Vec<usize> = (0..users).map(|_| 2 + rng.below(3)).collect();
        let world = World::new(seed, &devices)
            .await
            .map_err(|e| format!("setting up: {e}"))?;
        Ok(Run {
            rng,
            config,
            world,
            saved: BTreeMap::new(),
            trace: vec![format!("seed {seed}: devices per user {devices:?}")],
            stats: RunStats::default(),
            step: 0,
        })
    }

    async fn go(&mut self) -> Result<(), String> {
        for _ in 0..self.config.steps {
            self.step += 1;
            self.stats.steps += 1;
            let d = self.rng.below(self.world.devices.len());
            let roll = self.rng.below(100);
            if roll < 45 {
                self.user_action(d);
            } else if roll < 96 {
                self.sync_step(d).await;
            } else {
                self.world.devices[d].crash();
                self.stats.faults += 1;
                self.note(format!("{} crashes", self.world.devices[d].name));
            }
            if self.rng.chance(self.config.crash_pct) {
                let c = self.rng.below(self.world.devices.len());
                self.world.devices[c].crash();
                self.stats.faults += 1;
                self.note(format!("{} crashes", self.world.devices[c].name));
            }
            self.deliver_notifications();
        }
        self.quiesce().await?;
        self.check().await
    }

    fn note(&mut self, line: String) {
        self.trace.push(format!("{:>4} {line}", self.step));
    }

    /// A user does one thing on device `d`'s disk, weighted like the
    /// Ubuntu One trace (IMC 2015): 59% content updates, 20% creates, 8%
    /// reads, 8% deletes, 5% moves.
    fn user_action(&mut self, d: usize) {
        let files: Vec<String> = self.world.devices[d]
            .files()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let folders: Vec<String> = self.world.devices[d]
            .fs
            .snapshot()
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(p, _)| p)
            .collect();
        let roll = self.rng.below(100);
        let name = self.world.devices[d].name.clone();
        let fs = self.world.devices[d].fs.clone();
        if roll < 59 && !files.is_empty() {
            let path = files[self.rng.below(files.len())].clone();
            let data = self.content(&name);
            fs.user_write(&path, &data);
            self.note(format!("{name} edits {path} ({} bytes)", data.len()));
        } else if roll < 79 || files.is_empty() {
            if self.rng.chance(20) {
                let path = self.folder_path();
                fs.user_mkdir_p(&path);
                self.note(format!("{name} makes folder {path}"));
            } else {
                let path = format!("{}f{}.txt", self.place(), self.rng.below(FILES));
                let data = self.content(&name);
                fs.user_write(&path, &data);
                self.note(format!("{name} writes {path} ({} bytes)", data.len()));
            }
        } else if roll < 87 {
            let path = &files[self.rng.below(files.len())];
            let _ = fs.user_read(path);
        } else if roll < 95 {
            if !folders.is_empty() && self.rng.chance(15) {
                let path = folders[self.rng.below(folders.len())].clone();
                fs.user_remove(&path);
                self.note(format!("{name} removes folder {path}"));
            } else {
                let path = files[self.rng.below(files.len())].clone();
                fs.user_remove(&path);
                self.note(format!("{name} removes {path}"));
            }
        } else {
            let from = files[self.rng.below(files.len())].clone();
            let to = format!("{}f{}.txt", self.place(), self.rng.below(FILES));
            let parent = to.rsplit_once('/').map(|(p, _)| p.to_string());
            if let Some(p) = parent {
                fs.user_mkdir_p(&p);
            }
            let moved = fs.user_rename(&from, &to);
            self.note(format!("{name} moves {from} to {to}: {moved}"));
        }
    }

    /// A folder prefix ("" or "docs/" or "docs/photos/").
    fn place(&mut self) -> String {
        match self.rng.below(3) {
            0 => String::new(),
            1 => format!("{}/", FOLDERS[self.rng.below(FOLDERS.len())]),
            _ => format!(
                "{}/{}/",
                FOLDERS[self.rng.below(FOLDERS.len())],
                FOLDERS[self.rng.below(FOLDERS.len())]
            ),
        }
    }

    fn folder_path(&mut self) -> String {
        let place = self.place();
        format!("{place}{}", FOLDERS[self.rng.below(FOLDERS.len())])
    }

    /// New bytes no one wrote before: a tag, then filler. Sizes are mostly
    /// small (the trace's median file is about 8 KB).
    fn content(&mut self, device: &str) -> Vec<u8> {
        let size = match self.rng.below(100) {
            0..60 => 1 + self.rng.below(8 * 1024),
            60..92 => 8 * 1024 + self.rng.below(56 * 1024),
            _ => 64 * 1024 + self.rng.below(192 * 1024),
        };
        let mut data = format!("step {} on {device}\n", self.step).into_bytes();
        while data.len() < size {
            data.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        data
    }

    /// Syncs device `d` the way its daemon would after what happened to
    /// it, with the faults the seed arms for this step.
    async fn sync_step(&mut self, d: usize) {
        if self.rng.chance(self.config.lost_reply_pct) {
            self.world.devices[d].faults.lose_next_commit_reply();
        }
        if self.rng.chance(self.config.blob_failure_pct) {
            let n = 1 + self.rng.below(3) as u32;
            self.world.devices[d].faults.fail_blob_writes(n);
        }
        let crash_at = if self.rng.chance(self.config.mid_sync_crash_pct) {
            // Disk operations (renames, writes, deletes) or bytes written.
            Some(match self.rng.below(2) {
                0 => (false, self.rng.below(12) as u64),
                _ => (true, self.rng.below(96 * 1024) as u64),
            })
        } else {
            None
        };
        let full = self.rng.chance(15);
        let dev = &mut self.world.devices[d];
        match crash_at {
            Some((false, n)) => dev.fs.crash_after(n),
            Some((true, n)) => dev.fs.crash_after_bytes(n),
            None => {}
        }
        let watched = dev.fs.take_watched();
        let changed = if full {
            Changed::Anywhere
        } else {
            // A watcher event names its paths; a push names none.
            Changed::Paths(watched)
        };
        dev.pushes = 0;
        // What the engine saw on the disk: once a sync of it went through
        // without skipping anything, it must never be lost. (Content a sync
        // failed to send and the user then overwrote was never anywhere
        // else: gone by the user's own hand.)
        let seen: Vec<(ContentHash, String)> = dev
            .contents()
            .into_iter()
            .map(|(h, p)| (h, format!("{p} on {}", dev.name)))
            .collect();
        let name = dev.name.clone();
        let result = dev.sync(changed).await;
        self.stats.syncs += 1;
        // An armed crash that did not fire is disarmed; one that fired
        // killed the process mid-sync: only the disk and the saved state
        // remain, and the machine reboots.
        let crashed = dev.fs.crashed();
        dev.fs.recover();
        if crashed {
            dev.crash();
            self.stats.faults += 1;
            self.note(format!("{name} crashes in the middle of a sync"));
            self.disarm(d);
            return;
        }
        match result {
            Ok(r) => {
                if r.skipped.is_empty() {
                    self.saved.extend(seen);
                }
                self.stats.conflicts += r.conflicts as u64;
                self.note(format!("{name} syncs: {}", brief(&r)));
            }
            Err(e) => self.note(format!("{name} sync fails: {e}")),
        }
        self.disarm(d);
    }

    /// Faults armed for a step that did not fire do not carry over.
    fn disarm(&mut self, d: usize) {
        let faults = &self.world.devices[d].faults;
        faults.clear();
        self.stats.faults += faults.fired.swap(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// What the bus delivered: each commit notification reaches the other
    /// devices of its workspace, or is dropped, or arrives twice.
    fn deliver_notifications(&mut self) {
        for i in 0..self.world.devices.len() {
            let own = self.world.devices[i].session.device;
            let notes = self.world.devices[i].take_notifications();
            for n in notes {
                let Notification::Commit { device, .. } = n else {
                    continue;
                };
                if device == own {
                    continue;
                }
                if self.rng.chance(self.config.dropped_note_pct) {
                    self.stats.faults += 1;
                    continue;
                }
                let copies = if self.rng.chance(self.config.duplicated_note_pct) {
                    self.stats.faults += 1;
                    2
                } else {
                    1
                };
                self.world.devices[i].pushes += copies;
            }
        }
    }

    /// Faults off; every device syncs in turn until a whole pass changes
    /// nothing.
    async fn quiesce(&mut self) -> Result<(), String> {
        for d in &self.world.devices {
            d.faults.clear();
        }
        self.note("quiescence".into());
        for pass in 0..10 {
            let mut quiet = true;
            for d in 0..self.world.devices.len() {
                let dev = &mut self.world.devices[d];
                self.saved.extend(
                    dev.contents()
                        .into_iter()
                        .map(|(h, p)| (h, format!("{p} on {}", dev.name))),
                );
                dev.fs.take_watched();
                let name = dev.name.clone();
                let r = dev
                    .sync(Changed::Anywhere)
                    .await
                    .map_err(|e| format!("{name}: sync failed without faults: {e}"))?;
                self.note(format!("pass {pass}: {name} syncs: {}", brief(&r)));
                if !r.converged {
                    return Err(format!("{name} did not converge in one sync: {r:?}"));
                }
                if r.applied > 0 || r.rounds > 1 {
                    quiet = false;
                }
            }
            if quiet {
                return Ok(());
            }
        }
        Err("devices did not settle after 10 passes".into())
    }

    async fn check(&mut self) -> Result<(), String> {
        let mut history_contents = BTreeSet::new();
        for (ws, members) in self.world.workspaces.clone() {
            let (latest, revision) = self.server_items(ws.id).await?;
            let tree = server_tree(&latest)?;
            for &d in &members {
                let dev = &self.world.devices[d];
                let mine = device_tree(dev);
                if mine != tree {
                    return Err(format!(
                        "{} differs from the server:\n{}",
                        dev.name,
                        diff(&tree, &mine)
                    ));
                }
            }
            // Gap-free revisions: every accepted version got the next one.
            let mut revisions = Vec::new();
            for item in latest.values() {
                let versions = self
                    .world
                    .service
                    .store()
                    .versions(ws.id, item.id)
                    .await
                    .map_err(|e| format!("reading versions of {}: {e}", item.id))?;
                for v in versions {
                    revisions.push(v.revision);
                    history_contents.extend(v.content_hash);
                }
            }
            revisions.sort_unstable();
            let expected: Vec<u64> = (1..=revision).collect();
            if revisions != expected {
                return Err(format!(
                    "revisions of workspace {} are not 1..={revision}: {revisions:?}",
                    ws.id
                ));
            }
        }
        let mut kept = history_contents;
        for d in &self.world.devices {
            kept.extend(d.contents().into_keys());
        }
        let lost: Vec<&String> = self
            .saved
            .iter()
            .filter(|(h, _)| !kept.contains(h))
            .map(|(_, what)| what)
            .collect();
        if !lost.is_empty() {
            return Err(format!("contents lost: {lost:?}"));
        }
        Ok(())
    }

    /// The latest state of every item of `ws`, and its latest revision.
    async fn server_items(
        &self,
        ws: WorkspaceId,
    ) -> Result<(BTreeMap<ItemId, ItemMeta>, u64), String> {
        let mut items = BTreeMap::new();
        let mut since = 0;
        loop {
            let page = self
                .world
                .service
                .store()
                .get_changes(ws, since, 500)
                .await
                .map_err(|e| format!("reading the change feed: {e}"))?;
            for m in page.items {
                items.insert(m.id, m);
            }
            since = page.cursor;
            if !page.has_more {
                return Ok((items, since));
            }
        }
    }
}

fn brief(r: &SyncReport) -> String {
    format!(
        "rounds {} applied {} conflicts {} skipped {} refused {}",
        r.rounds,
        r.applied,
        r.conflicts,
        r.skipped.len(),
        r.refused.len()
    )
}

/// Path → content hash (`None` for a folder) of the live items.
type Tree = BTreeMap<String, Option<ContentHash>>;

fn server_tree(items: &BTreeMap<ItemId, ItemMeta>) -> Result<Tree, String> {
    let mut tree = Tree::new();
    for m in items.values().filter(|m| m.status.is_live()) {
        let mut path = m.name.as_str().to_string();
        let mut parent = m.parent;
        let mut depth = 0;
        while let Some(p) = parent {
            let folder = items
                .get(&p)
                .filter(|f| f.status.is_live())
                .ok_or_else(|| format!("live item {} sits in a dead folder {p}", m.id))?;
            path = format!("{}/{path}", folder.name.as_str());
            parent = folder.parent;
            depth += 1;
            if depth > 64 {
                return Err(format!("item {} sits in a folder cycle", m.id));
            }
        }
        let value = if m.is_folder { None } else { m.content_hash };
        if !m.is_folder && value.is_none() {
            return Err(format!("file {} has no content hash", m.id));
        }
        tree.insert(path, value);
    }
    Ok(tree)
}

fn device_tree(dev: &SimDevice) -> Tree {
    let files: BTreeMap<String, ContentHash> = dev
        .files()
        .into_iter()
        .map(|(p, d)| (p, hash(&d)))
        .collect();
    let mut tree: Tree = dev
        .fs
        .snapshot()
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(p, _)| (p, None))
        .collect();
    tree.extend(files.into_iter().map(|(p, h)| (p, Some(h))));
    tree
}

fn diff(server: &Tree, device: &Tree) -> String {
    let mut out = Vec::new();
    for (p, v) in server {
        match device.get(p) {
            None => out.push(format!("  only on the server: {p}")),
            Some(w) if w != v => out.push(format!("  differs: {p}")),
            _ => {}
        }
    }
    for p in device.keys().filter(|p| !server.contains_key(*p)) {
        out.push(format!("  only on the device: {p}"));
    }
    out.join("\n")
}
