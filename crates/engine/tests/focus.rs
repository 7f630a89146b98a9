//! A focused plan equals the full plan (`planner::plan_focused` against
//! `planner::plan`) when everything outside the focus is settled: random
//! settled trees (with and without file ids, with duplicate contents and
//! refused names), then random local and remote changes (edits, creates,
//! deletes, renames and moves of files and folders, concurrent edits of
//! one item), from many seeds. The focus names what a watcher and the
//! change feed would: the local paths touched and the items changed. Each
//! differential test runs for a device that may write and for a read-only
//! one (`PlanInput::read_only`), whose claims, merge and reports differ.

use std::collections::{BTreeMap, BTreeSet};

use stacksync_engine::sim::SimRng as Rng;
use stacksync_engine::tree::Refusal;
use stacksync_engine::{
    Focus, FocusedPlan, IgnoreRules, Key, LocalEntry, LocalTree, Lookups, Plan, PlanInput, RelPath,
    Stamp, SyncState, SyncedItem, plan, plan_focused, plan_focused_with, unsettled,
};
use stacksync_proto::{ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId};

/// Few names and contents, so that changes collide.
const NAMES: [&str; 7] = ["a", "b", "c", "d.txt", "e", "f.md", "g"];
const CONTENTS: usize = 6;

fn id(n: u64) -> ItemId {
    ItemId(uuid::Uuid::from_u64_pair(0, n))
}

fn hash(c: usize) -> ContentHash {
    ContentHash(*blake3::hash(format!("content {c}").as_bytes()).as_bytes())
}

/// When plans are made (conflicted-copy names carry it).
const NOW: i64 = 1_700_000_000_000;

/// A random name; sometimes the name a conflicted copy of `a` would get,
/// so that copies clash with what is already there.
fn name(rng: &mut Rng) -> ItemName {
    if rng.chance(5) {
        let a = ItemName::new("a").unwrap();
        return stacksync_engine::conflict::conflicted_copy_name(&a, false, "dev", NOW, 1);
    }
    ItemName::new(NAMES[rng.below(NAMES.len())]).unwrap()
}

fn meta(n: u64, parent: Option<ItemId>, name: ItemName, content: Option<usize>) -> ItemMeta {
    ItemMeta {
        id: id(n),
        workspace: WorkspaceId(uuid::Uuid::from_u64_pair(0, 1)),
        parent,
        name,
        is_folder: content.is_none(),
        mimetype: None,
        status: ItemStatus::New,
        version: 1,
        content_hash: content.map(hash),
        size: content.map_or(0, |c| 10 + c as u64),
        client_modified: 0,
        server_modified: 0,
        device: DeviceId(uuid::Uuid::from_u64_pair(0, 2)),
        revision: n,
        chunks: Vec::new(),
        record: None,
    }
}

/// A world where the local tree, the synced tree and the remote tree agree.
struct World {
    state: SyncState,
    local: LocalTree,
    next_id: u64,
    next_file_id: u64,
    file_ids: bool,
    clock: i64,
    /// Plans are made for a read-only device.
    read_only: bool,
}

impl World {
    fn settled(rng: &mut Rng, read_only: bool) -> World {
        let mut w = World {
            state: SyncState::default(),
            local: LocalTree::new(),
            next_id: 10,
            next_file_id: 5000,
            file_ids: rng.chance(70),
            clock: 1000,
            read_only,
        };
        let items = 3 + rng.below(25);
        for _ in 0..items {
            let folders: Vec<Option<ItemId>> = std::iter::once(None)
                .chain(
                    w.state
                        .synced
                        .iter()
                        .filter(|(_, s)| s.is_folder)
                        .map(|(i, _)| Some(*i)),
                )
                .collect();
            let parent = folders[rng.below(folders.len())];
            let name = name(rng);
            let taken = w
                .state
                .synced
                .values()
                .any(|s| s.parent == parent && s.name == name);
            if taken {
                continue;
            }
            let content = (!rng.chance(30)).then(|| rng.below(CONTENTS));
            let n = w.next_id;
            w.next_id += 1;
            let m = meta(n, parent, name, content);
            let stamp = w.stamp(content);
            let path = w.remote_path(&m);
            w.local.insert(
                path,
                LocalEntry {
                    is_folder: m.is_folder,
                    stamp,
                    hash: m.content_hash,
                },
            );
            w.state
                .synced
                .insert(m.id, SyncedItem::from_meta(&m, Some(stamp)));
            w.state.remote.apply(m);
        }
        // A refused new file (its name was refused by the server): settled
        // too, it is never uploaded while the refusal lasts.
        if rng.chance(30) {
            let path = RelPath::parse("refused.txt").unwrap();
            let stamp = w.stamp(Some(0));
            w.local.insert(
                path.clone(),
                LocalEntry {
                    is_folder: false,
                    stamp,
                    hash: Some(hash(0)),
                },
            );
            w.state.refused.insert(
                path,
                Refusal {
                    reason: "refused".into(),
                    stamp: None,
                    clash: false,
                },
            );
        }
        w
    }

    fn stamp(&mut self, content: Option<usize>) -> Stamp {
        self.clock += 1;
        let file_id = self.file_ids.then(|| {
            self.next_file_id += 1;
            self.next_file_id
        });
        Stamp {
            size: content.map_or(0, |c| 10 + c as u64),
            mtime: self.clock,
            file_id,
        }
    }

    fn remote_path(&self, m: &ItemMeta) -> RelPath {
        match m.parent {
            None => RelPath::root().join(&m.name),
            Some(p) => self.state.remote.path_of(p).unwrap().join(&m.name),
        }
    }

    fn input<'a>(
        &'a self,
        ignore: &'a IgnoreRules,
        unsynced: &'a BTreeMap<RelPath, Option<Stamp>>,
    ) -> PlanInput<'a> {
        PlanInput {
            read_only: self.read_only,
            ..input_of(&self.state, &self.local, ignore, unsynced)
        }
    }

    fn local_folders(&self) -> Vec<RelPath> {
        std::iter::once(RelPath::root())
            .chain(
                self.local
                    .iter()
                    .filter(|(_, e)| e.is_folder)
                    .map(|(p, _)| p.clone()),
            )
            .collect()
    }

    fn pick_local(&mut self, rng: &mut Rng) -> Option<RelPath> {
        let paths: Vec<&RelPath> = self.local.keys().collect();
        (!paths.is_empty()).then(|| paths[rng.below(paths.len())].clone())
    }

    fn pick_remote(&self, rng: &mut Rng, folder: Option<bool>) -> Option<ItemMeta> {
        let live: Vec<&ItemMeta> = self
            .state
            .remote
            .iter()
            .filter(|m| self.state.remote.live(m.id).is_some())
            .filter(|m| folder.is_none_or(|f| m.is_folder == f))
            .collect();
        (!live.is_empty()).then(|| live[rng.below(live.len())].clone())
    }

    fn remote_name_free(&self, parent: Option<ItemId>, name: &ItemName) -> bool {
        !self.state.remote.iter().any(|m| {
            m.parent == parent && &m.name == name && self.state.remote.live(m.id).is_some()
        })
    }

    /// A local entry's stamp moves without its content (a touched file, a
    /// folder whose entries changed).
    fn touch(&mut self, rng: &mut Rng) {
        let Some(p) = self.pick_local(rng) else {
            return;
        };
        self.clock += 1;
        let clock = self.clock;
        if let Some(e) = self.local.get_mut(&p) {
            e.stamp.mtime = clock;
        }
    }

    /// A file's content changes under the same stamp (a write within the
    /// clock's resolution that kept the size).
    fn rewrite_in_place(&mut self, rng: &mut Rng) {
        let Some(p) = self.pick_local(rng) else {
            return;
        };
        let c = rng.below(CONTENTS);
        if let Some(e) = self.local.get_mut(&p).filter(|e| !e.is_folder) {
            e.hash = Some(hash(c));
        }
    }

    /// A synced record without a stamp (as after its bytes were moved
    /// aside into a conflicted copy).
    fn forget_a_stamp(&mut self, rng: &mut Rng) {
        let ids: Vec<ItemId> = self.state.synced.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[rng.below(ids.len())];
        if let Some(s) = self.state.synced.get_mut(&id) {
            s.stamp = None;
        }
    }

    /// One random change; adds what it touched to `focus`.
    fn change(&mut self, rng: &mut Rng, focus: &mut Focus) {
        match rng.below(10) {
            0 => {
                // Edit a local file.
                let Some(p) = self.pick_local(rng) else {
                    return;
                };
                if self.local[&p].is_folder {
                    return;
                }
                let c = rng.below(CONTENTS);
                let old = self.local[&p].stamp;
                self.clock += 1;
                let e = self.local.get_mut(&p).unwrap();
                e.hash = Some(hash(c));
                e.stamp = Stamp {
                    size: 10 + c as u64,
                    mtime: self.clock,
                    file_id: old.file_id,
                };
                focus.paths.insert(p);
            }
            1 | 2 => {
                // Create a local file or folder.
                let folders = self.local_folders();
                let p = folders[rng.below(folders.len())].join(&name(rng));
                if self.local.contains_key(&p) {
                    return;
                }
                let content = (!rng.chance(30)).then(|| rng.below(CONTENTS));
                let stamp = self.stamp(content);
                self.local.insert(
                    p.clone(),
                    LocalEntry {
                        is_folder: content.is_none(),
                        stamp,
                        hash: content.map(hash),
                    },
                );
                focus.paths.insert(p);
            }
            3 => {
                // Delete a local entry and everything under it.
                let Some(p) = self.pick_local(rng) else {
                    return;
                };
                self.local.retain(|q, _| !q.starts_with(&p));
                focus.paths.insert(p);
            }
            4 => {
                // Rename or move a local entry with everything under it.
                let Some(from) = self.pick_local(rng) else {
                    return;
                };
                let folders = self.local_folders();
                let to = folders[rng.below(folders.len())].join(&name(rng));
                if self.local.contains_key(&to) || to.starts_with(&from) {
                    return;
                }
                let moved: Vec<(RelPath, LocalEntry)> = self
                    .local
                    .iter()
                    .filter(|(q, _)| q.starts_with(&from))
                    .map(|(q, e)| (q.clone(), e.clone()))
                    .collect();
                for (q, e) in moved {
                    self.local.remove(&q);
                    let rest = &q.components()[from.components().len()..];
                    let mut nq = to.clone();
                    for n in rest {
                        nq = nq.join(n);
                    }
                    self.local.insert(nq, e);
                }
                focus.paths.insert(from);
                focus.paths.insert(to);
            }
            5 => {
                // Edit a remote file.
                let Some(mut m) = self.pick_remote(rng, Some(false)) else {
                    return;
                };
                let c = rng.below(CONTENTS);
                m.content_hash = Some(hash(c));
                m.size = 10 + c as u64;
                m.version += 1;
                m.status = ItemStatus::Changed;
                focus.ids.insert(m.id);
                self.state.remote.apply(m);
            }
            6 => {
                // Rename or move a remote item.
                let Some(mut m) = self.pick_remote(rng, None) else {
                    return;
                };
                let parent = self.pick_remote(rng, Some(true)).map(|f| f.id);
                let parent = if rng.chance(30) { None } else { parent };
                // Never into itself or under itself.
                let mut cur = parent;
                while let Some(c) = cur {
                    if c == m.id {
                        return;
                    }
                    cur = self.state.remote.latest(c).and_then(|x| x.parent);
                }
                let name = name(rng);
                if !self.remote_name_free(parent, &name) {
                    return;
                }
                m.parent = parent;
                m.name = name;
                m.version += 1;
                m.status = ItemStatus::Moved;
                focus.ids.insert(m.id);
                self.state.remote.apply(m);
            }
            7 => {
                // Delete a remote item.
                let Some(mut m) = self.pick_remote(rng, None) else {
                    return;
                };
                m.version += 1;
                m.status = ItemStatus::Deleted;
                focus.ids.insert(m.id);
                self.state.remote.apply(m);
            }
            _ => {
                // Create a remote item.
                let parent = if rng.chance(40) {
                    None
                } else {
                    self.pick_remote(rng, Some(true)).map(|f| f.id)
                };
                let name = name(rng);
                if !self.remote_name_free(parent, &name) {
                    return;
                }
                let content = (!rng.chance(30)).then(|| rng.below(CONTENTS));
                let n = self.next_id;
                self.next_id += 1;
                let m = meta(n, parent, name, content);
                focus.ids.insert(m.id);
                self.state.remote.apply(m);
            }
        }
    }
}

fn path_of(
    local: &BTreeMap<Key, stacksync_engine::planner::LocalItem>,
    key: Key,
) -> Option<RelPath> {
    stacksync_engine::planner::path_in(local, key)
}

#[test]
fn a_focused_plan_equals_the_full_plan_when_the_rest_is_settled() {
    focused_equals_full(false);
}

#[test]
fn a_focused_plan_equals_the_full_plan_when_the_rest_is_settled_read_only() {
    focused_equals_full(true);
}

fn focused_equals_full(read_only: bool) {
    let ignore = IgnoreRules::defaults();
    let unsynced = BTreeMap::new();
    let mut nonempty = 0;
    let mut kept_here = 0;
    for seed in 1..=3000u64 {
        let mut rng = Rng::new(seed);
        let mut w = World::settled(&mut rng, read_only);
        let settled = plan(&w.input(&ignore, &unsynced));
        assert!(
            settled.ops.is_empty(),
            "seed {seed}: the generated world is not settled: {:?}",
            settled.ops
        );
        // Lookups kept across plans (as the engine keeps them): built on
        // the settled world, then told only of the changes.
        let mut lookups = Lookups::default();
        let empty = plan_focused_with(
            &w.input(&ignore, &unsynced),
            &Focus::default(),
            &mut lookups,
        );
        assert!(empty.plan.ops.is_empty(), "seed {seed}");
        w.state.forget_changes();
        let mut focus = Focus::default();
        for round in 0..2 {
            for _ in 0..1 + rng.below(4) {
                w.change(&mut rng, &mut focus);
            }
            let input = w.input(&ignore, &unsynced);
            let full = plan(&input);
            let focused = plan_focused(&input, &focus);
            let kept = plan_focused_with(&input, &focus, &mut lookups);
            assert_eq!(kept, focused, "seed {seed} round {round}: kept lookups");
            let what = format!("seed {seed} round {round}: focus {focus:?}");
            assert_same_plan(&what, &w, &focused, &full);
            if !full.ops.is_empty() {
                nonempty += 1;
            }
            kept_here += full.clashes.len();
            if read_only {
                assert_no_commit(&what, &full);
            }
            // What a save does: the lookups take the record, which is
            // then forgotten.
            lookups.note_state(&w.state);
            w.state.forget_changes();
        }
    }
    // The changes must make work: a generator whose plans are empty would
    // prove nothing; nor would a read-only run that keeps nothing here.
    assert!(nonempty > 4000, "only {nonempty} plans had operations");
    if read_only {
        assert!(kept_here > 3000, "only {kept_here} local-only entries");
    }
}

/// A read-only device's plan never changes the server.
fn assert_no_commit(what: &str, plan: &Plan) {
    let commits: Vec<_> = plan
        .ops
        .iter()
        .filter(|op| matches!(op, stacksync_engine::Op::Commit { .. }))
        .collect();
    assert!(commits.is_empty(), "{what}: read-only commits {commits:?}");
}

/// `focused` is `full` where it looked: the same operations, the clashes
/// at the paths it looked at, and every operated key at the same place.
fn assert_same_plan(what: &str, w: &World, focused: &FocusedPlan, full: &Plan) {
    assert_eq!(
        focused.plan.ops, full.ops,
        "{what}\nlocal {:?}\nstate {:?}",
        w.local, w.state
    );
    let clashes: Vec<_> = full
        .clashes
        .iter()
        .filter(|(p, _)| focused.paths.contains(p))
        .cloned()
        .collect();
    assert_eq!(focused.plan.clashes, clashes, "{what}");
    for op in &full.ops {
        let mut keys = vec![op.key()];
        if let stacksync_engine::Op::ConflictCopy { copy, .. } = op {
            keys.push(*copy);
        }
        for k in keys {
            assert_eq!(
                path_of(&focused.plan.local, k),
                path_of(&full.local, k),
                "{what}: where {k:?} is"
            );
            assert_eq!(focused.plan.local.get(&k), full.local.get(&k), "{what}");
        }
    }
}

/// After a start or a full rescan nothing says where the changes are: the
/// focus `unsettled` finds by comparing the trees gives the full plan,
/// whatever changed, including what no watcher names (a stamp that moved
/// without the content or content that changed under the same stamp, a
/// synced record that lost its stamp).
#[test]
fn the_unsettled_focus_gives_the_full_plan() {
    unsettled_gives_full(false);
}

#[test]
fn the_unsettled_focus_gives_the_full_plan_read_only() {
    unsettled_gives_full(true);
}

fn unsettled_gives_full(read_only: bool) {
    let ignore = IgnoreRules::defaults();
    let unsynced = BTreeMap::new();
    let mut nonempty = 0;
    let mut smaller = 0;
    for seed in 1..=3000u64 {
        let mut rng = Rng::new(seed ^ 0x5e77_1ed0);
        let mut w = World::settled(&mut rng, read_only);
        let input = w.input(&ignore, &unsynced);
        let at_rest = unsettled(&input);
        assert!(at_rest.ids.is_empty(), "seed {seed}: {at_rest:?}");
        assert!(
            at_rest
                .paths
                .iter()
                .all(|p| w.state.refused.contains_key(p)),
            "seed {seed}: a settled world names only refused paths: {at_rest:?}"
        );
        let mut named = Focus::default();
        for _ in 0..1 + rng.below(5) {
            match rng.below(13) {
                0 => w.touch(&mut rng),
                1 => w.forget_a_stamp(&mut rng),
                2 => w.rewrite_in_place(&mut rng),
                _ => w.change(&mut rng, &mut named),
            }
        }
        let input = w.input(&ignore, &unsynced);
        let full = plan(&input);
        let focus = unsettled(&input);
        let focused = plan_focused(&input, &focus);
        let what = format!("seed {seed}: focus {focus:?}");
        assert_same_plan(&what, &w, &focused, &full);
        if read_only {
            assert_no_commit(&what, &full);
        }
        if !full.ops.is_empty() {
            nonempty += 1;
        }
        if focus.paths.len() + focus.ids.len() < w.local.len() + w.state.synced.len() {
            smaller += 1;
        }
    }
    assert!(nonempty > 2000, "only {nonempty} plans had operations");
    // A focus naming everything would prove nothing about the rest.
    assert!(smaller > 2500, "only {smaller} foci left something out");
}

#[test]
fn a_focus_on_one_file_leaves_the_rest_of_a_large_tree_out() {
    // 100 folders of 100 files; one edit. The focused plan looks at the
    // file's folder (siblings) and its ancestors, not at the other 99.
    let mut state = SyncState::default();
    let mut local = LocalTree::new();
    let mut n = 10;
    for f in 0..100u64 {
        let folder = meta(n, None, ItemName::new(format!("d{f}")).unwrap(), None);
        n += 1;
        let (fid, fpath) = (folder.id, RelPath::root().join(&folder.name));
        settle(&mut state, &mut local, fpath.clone(), folder, n);
        for i in 0..100u64 {
            let name = ItemName::new(format!("f{i}")).unwrap();
            let m = meta(n, Some(fid), name.clone(), Some((i % 5) as usize));
            n += 1;
            settle(&mut state, &mut local, fpath.join(&name), m, n);
        }
    }
    let p = RelPath::parse("d7/f3").unwrap();
    let e = local.get_mut(&p).unwrap();
    e.hash = Some(hash(99));
    e.stamp.mtime = 2;
    let (ignore, unsynced) = (IgnoreRules::defaults(), BTreeMap::new());
    let input = input_of(&state, &local, &ignore, &unsynced);
    let focus = Focus {
        paths: BTreeSet::from([p.clone()]),
        ids: BTreeSet::new(),
    };
    let focused = plan_focused(&input, &focus);
    assert_eq!(focused.plan.ops, plan(&input).ops);
    assert_eq!(focused.plan.ops.len(), 1);
    // d7 (an ancestor) and the file: not its 99 siblings, no other folder
    // and none of their files.
    assert_eq!(focused.paths.len(), 2, "{:?}", focused.paths);
}

/// The planner's input on this device ("dev", at `NOW`).
fn input_of<'a>(
    state: &'a SyncState,
    local: &'a LocalTree,
    ignore: &'a IgnoreRules,
    unsynced: &'a BTreeMap<RelPath, Option<Stamp>>,
) -> PlanInput<'a> {
    PlanInput {
        state,
        local,
        ignore,
        unsynced,
        device_name: "dev",
        now: NOW,
        read_only: false,
    }
}

/// Records `m` at `path` as settled: on disk (with this file id), synced
/// and on the server alike.
fn settle(state: &mut SyncState, local: &mut LocalTree, path: RelPath, m: ItemMeta, file_id: u64) {
    let stamp = Stamp {
        size: m.size,
        mtime: 1,
        file_id: Some(file_id),
    };
    let entry = LocalEntry {
        is_folder: m.is_folder,
        stamp,
        hash: m.content_hash,
    };
    local.insert(path, entry);
    state
        .synced
        .insert(m.id, SyncedItem::from_meta(&m, Some(stamp)));
    state.remote.apply(m);
}

/// One folder `d` of settled files with these names.
fn settled_folder(names: &[ItemName]) -> (SyncState, LocalTree) {
    let mut state = SyncState::default();
    let mut local = LocalTree::new();
    let folder = meta(10, None, ItemName::new("d").unwrap(), None);
    let (parent, d) = (Some(folder.id), RelPath::root().join(&folder.name));
    settle(&mut state, &mut local, d.clone(), folder, 10);
    for (i, name) in names.iter().enumerate() {
        let n = 11 + i as u64;
        let m = meta(n, parent, name.clone(), Some(i % CONTENTS));
        settle(&mut state, &mut local, d.join(name), m, n);
    }
    (state, local)
}

#[test]
fn a_conflicted_copy_avoids_a_sibling_outside_the_focus() {
    // "a" is edited on both sides; the name its conflicted copy would take
    // first is held by a settled sibling, among many others.
    let a = ItemName::new("a").unwrap();
    let taken = stacksync_engine::conflict::conflicted_copy_name(&a, false, "dev", NOW, 1);
    let mut names = vec![a.clone(), taken.clone()];
    names.extend((0..50).map(|i| ItemName::new(format!("f{i}")).unwrap()));
    let (mut state, mut local) = settled_folder(&names);
    let a_path = RelPath::parse("d/a").unwrap();
    let e = local.get_mut(&a_path).unwrap();
    e.hash = Some(hash(90));
    e.stamp.mtime = 2;
    let a_id = id(11);
    let mut m = state.remote.latest(a_id).unwrap().clone();
    m.version = 2;
    m.status = ItemStatus::Changed;
    m.content_hash = Some(hash(91));
    state.remote.apply(m);
    let (ignore, unsynced) = (IgnoreRules::defaults(), BTreeMap::new());
    let input = input_of(&state, &local, &ignore, &unsynced);
    let focus = Focus {
        paths: BTreeSet::from([a_path]),
        ids: BTreeSet::from([a_id]),
    };
    let full = plan(&input);
    let copies: Vec<&ItemName> = full
        .ops
        .iter()
        .filter_map(|op| match op {
            stacksync_engine::Op::ConflictCopy { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(copies.len(), 1, "{:?}", full.ops);
    let final_names: Vec<String> = full
        .ops
        .iter()
        .filter_map(|op| match op {
            stacksync_engine::Op::Commit {
                change: stacksync_engine::planner::RemoteChange::Put { pos, .. },
                ..
            } => Some(pos.name.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        !final_names.contains(&taken.to_string()),
        "the copy must not take the sibling's name: {final_names:?}"
    );
    let focused = plan_focused(&input, &focus);
    assert_eq!(focused.plan.ops, full.ops);
    // The folder, "a" and the sibling with a conflicted-copy name; not
    // the 50 others.
    assert_eq!(focused.paths.len(), 3, "{:?}", focused.paths);
}
