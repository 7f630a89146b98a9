//! Focused planning: the plan of a round whose changes are known to lie at
//! a few places, computed on the part of the trees they can affect instead
//! of on all of them, so that one edit in a tree of 100,000 files costs
//! about what it does in a tree of 1,000.
//!
//! **When it is right.** Outside the [`Focus`], the three trees must be
//! *settled*: a full plan would do nothing there. The engine guarantees it
//! in one of two ways. After a round that applied its whole plan, it names
//! every local path that may have changed since (the watcher's paths and
//! the paths the engine acted on) and every item whose remote record
//! changed since. After anything else (a start, a full scan, a round that
//! did not apply its whole plan, a failure, a change of the ignore rules)
//! it compares the trees ([`super::unsettled`]), and plans in full only
//! when that names much of them. Under that
//! condition the focused plan equals the full one (`tests/focus.rs` checks
//! it on random trees and changes).
//!
//! **How.** The focus grows into a *region*: every item or local path that
//! a change can move, claim, clash with or depend on. Region entries bring
//! their whole subtree (a moved folder may move everything under it, and a
//! folder re-created without file ids re-claims its children by content),
//! their siblings in each tree that bear a conflicted-copy name (the names
//! a conflicted copy may take must avoid them), their ancestors (paths and
//! liveness are resolved through them), and everything that could claim
//! them or that they could claim (the item at the same path in each tree,
//! items and paths sharing a file id, synced files with the same content
//! whose own path is gone). Other siblings stay out: a name clashes only
//! with the same name, and every place a region item may end up is one of
//! its own paths (or a conflicted-copy name), whose occupants in each tree
//! are brought in by identity; so the cost of a change does not grow with
//! the size of its folder. Siblings and ancestors are *context*: they
//! bring what identifies them (the item at their path, and the path of
//! their item) so they are claimed as in the full plan, but not their
//! siblings or subtrees, because nothing about them changed. The planner
//! then runs unchanged on the trees cut down to the region and its
//! context: one set of planning rules, whichever way it is called.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasher, Hash};

use foldhash::{HashMap, HashMapExt};
use std::ops::Bound;

use stacksync_proto::{ContentHash, ItemId, ItemMeta};

use super::{Plan, PlanInput, plan};
use crate::conflict::may_be_copy;
use crate::path::RelPath;
use crate::tree::{LocalTree, RemoteTree, Stamp, SyncState, SyncedItem};

/// Where a round's changes may be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Focus {
    /// Local paths that may differ from what the last plan saw.
    pub paths: BTreeSet<RelPath>,
    /// Items whose remote record may differ from what the last plan saw.
    pub ids: BTreeSet<ItemId>,
}

impl Focus {
    /// True if nothing is named.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.ids.is_empty()
    }
}

/// A focused plan and the local paths it looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FocusedPlan {
    /// The plan: what [`plan`] would give.
    pub plan: Plan,
    /// The local paths the plan looked at (region and context): its
    /// [`Plan::clashes`] are complete for these paths only.
    pub paths: BTreeSet<RelPath>,
}

/// The plan of `input` when everything outside `focus` is settled (see the
/// module documentation); equal to [`plan`] then.
pub fn plan_focused(input: &PlanInput<'_>, focus: &Focus) -> FocusedPlan {
    plan_focused_with(input, focus, &mut Lookups::default())
}

/// [`plan_focused`] with lookups kept from earlier plans (see
/// [`Lookups`]): the same plan, at a cost that grows with the region
/// rather than with the trees.
pub fn plan_focused_with(
    input: &PlanInput<'_>,
    focus: &Focus,
    lookups: &mut Lookups,
) -> FocusedPlan {
    let region = Region::of(&lookups.view(input, focus), focus);
    let state = region.state(input.state);
    let local = region.local(input.local);
    let plan = plan(&PlanInput {
        state: &state,
        local: &local,
        ..*input
    });
    FocusedPlan {
        plan,
        paths: region.paths,
    }
}

/// A node of the region: an item or a local path, fully or as context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    Id(ItemId),
    Path(RelPath),
}

/// A map from keys to one or more values that allocates only for keys
/// with more than one: most keys (a content hash, a file id, a name in a
/// folder) have exactly one, and a `Vec` per key would cost an allocation
/// for each of a tree's entries.
struct Multi<K, V> {
    first: HashMap<K, V>,
    more: HashMap<K, Vec<V>>,
}

impl<K: Hash + Eq + Clone, V: PartialEq> Multi<K, V> {
    fn with_capacity(n: usize) -> Self {
        Multi {
            first: HashMap::with_capacity(n),
            more: HashMap::new(),
        }
    }

    /// Adds `value` under `key` unless it is there already.
    fn add(&mut self, key: K, value: V) {
        match self.first.entry(key) {
            Entry::Occupied(e) => {
                if *e.get() == value {
                    return;
                }
                let more = self.more.entry(e.key().clone()).or_default();
                if !more.contains(&value) {
                    more.push(value);
                }
            }
            Entry::Vacant(e) => {
                e.insert(value);
            }
        }
    }

    /// Every value of `key`.
    fn get(&self, key: &K) -> impl Iterator<Item = &V> + use<'_, K, V> {
        let (first, more) = (self.first.get(key), self.more.get(key));
        first.into_iter().chain(more.into_iter().flatten())
    }
}

/// The key of a place (a parent and a name) in the name lookups: one
/// seeded hash, so that an entry costs a word rather than an id and a
/// hash (a collision is harmless: every answer is checked).
fn place_key(
    names: &foldhash::fast::RandomState,
    parent: Option<ItemId>,
    name: &stacksync_proto::ItemName,
) -> u64 {
    names.hash_one((parent, name))
}

/// Adds `value` to the list at `key` unless it is there already.
fn add_child<K: Hash + Eq>(map: &mut HashMap<K, Vec<ItemId>>, key: K, value: ItemId) {
    let children = map.entry(key).or_default();
    if !children.contains(&value) {
        children.push(value);
    }
}

/// Lookups over the full trees that a focused plan grows its region with
/// (children, names, file ids and contents in each tree), kept from one
/// plan to the next: built once, then told what changed (the sync state's
/// change record before each save, the local paths of each partial
/// rescan), so that a plan in a tree of 100,000 files does not hash all of
/// them again. Building them was nearly all of a focused plan's cost.
///
/// Entries are only ever added: an item that moved or went stays listed
/// at its old place, and every lookup checks its answers against the trees
/// themselves, so a stale entry is never seen. A part is rebuilt when it
/// has taken many changes (to bound what stale entries cost), when the
/// state's map was replaced as a whole (its origin changed, see
/// [`crate::tracked`]), or, for the local tree, when the engine says a full
/// scan replaced it ([`Lookups::forget_local`]). What must hold: every
/// change to the local tree since the local part was built is among the
/// paths given to [`Lookups::note_local`] (or the plan's focus), and every
/// change to the sync state was in its change record when
/// [`Lookups::note_state`] or a plan looked. Names and hashes come from
/// other users: the maps are seeded randomly per instance.
#[derive(Default)]
pub struct Lookups {
    names: foldhash::fast::RandomState,
    synced: Option<SyncedLookups>,
    remote: Option<RemoteLookups>,
    local: Option<LocalLookups>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups")
            .field("synced", &self.synced.is_some())
            .field("remote", &self.remote.is_some())
            .field("local", &self.local.is_some())
            .finish()
    }
}

/// Changes a part takes before it is rebuilt: a quarter of its size, and
/// at least this many.
const MIN_CHANGES_BEFORE_REBUILD: usize = 4096;

fn change_limit(len: usize) -> usize {
    (len / 4).max(MIN_CHANGES_BEFORE_REBUILD)
}

struct SyncedLookups {
    origin: u64,
    changes_left: usize,
    children: HashMap<Option<ItemId>, Vec<ItemId>>,
    /// By [`place_key`] of parent and name.
    by_name: Multi<u64, ItemId>,
    by_file_id: Multi<u64, ItemId>,
    /// By the seeded hash of the content hash (half the bytes of the key).
    by_hash: Multi<u64, ItemId>,
}

impl SyncedLookups {
    fn build(state: &SyncState, names: &foldhash::fast::RandomState) -> SyncedLookups {
        let n = state.synced.len();
        let mut l = SyncedLookups {
            origin: state.synced.origin(),
            changes_left: change_limit(n),
            children: HashMap::new(),
            by_name: Multi::with_capacity(n),
            by_file_id: Multi::with_capacity(n),
            by_hash: Multi::with_capacity(n),
        };
        for (id, s) in &state.synced {
            l.add(*id, s, names);
        }
        l
    }

    fn add(&mut self, id: ItemId, s: &SyncedItem, names: &foldhash::fast::RandomState) {
        add_child(&mut self.children, s.parent, id);
        self.by_name.add(place_key(names, s.parent, &s.name), id);
        if let Some(f) = s.stamp.and_then(|st| st.file_id) {
            self.by_file_id.add(f, id);
        }
        if let (false, Some(h)) = (s.is_folder, s.content_hash) {
            self.by_hash.add(names.hash_one(h), id);
        }
    }
}

struct RemoteLookups {
    origin: u64,
    changes_left: usize,
    children: HashMap<Option<ItemId>, Vec<ItemId>>,
    /// By [`place_key`] of parent and name.
    by_name: Multi<u64, ItemId>,
}

impl RemoteLookups {
    fn build(state: &SyncState, names: &foldhash::fast::RandomState) -> RemoteLookups {
        let n = state.remote.len();
        let mut l = RemoteLookups {
            origin: state.remote.origin(),
            changes_left: change_limit(n),
            children: HashMap::new(),
            by_name: Multi::with_capacity(n),
        };
        for m in state.remote.iter() {
            l.add(m, names);
        }
        l
    }

    fn add(&mut self, m: &ItemMeta, names: &foldhash::fast::RandomState) {
        add_child(&mut self.children, m.parent, m.id);
        self.by_name.add(place_key(names, m.parent, &m.name), m.id);
    }
}

struct LocalLookups {
    changes_left: usize,
    by_file_id: Multi<u64, RelPath>,
}

impl LocalLookups {
    fn build(local: &LocalTree) -> LocalLookups {
        let mut l = LocalLookups {
            changes_left: change_limit(local.len()),
            by_file_id: Multi::with_capacity(local.len()),
        };
        for (path, e) in local {
            if let Some(f) = e.stamp.file_id {
                l.by_file_id.add(f, path.clone());
            }
        }
        l
    }
}

impl Lookups {
    /// Takes in the sync state's changes recorded since its last save:
    /// call before the record is forgotten.
    pub fn note_state(&mut self, state: &SyncState) {
        let names = &self.names;
        if let Some(l) = &mut self.synced {
            let changes = state.synced.changes_len();
            if l.origin != state.synced.origin() || changes > l.changes_left {
                self.synced = None;
            } else {
                l.changes_left -= changes;
                for (id, s) in state.synced.changes() {
                    if let Some(s) = s {
                        l.add(*id, s, names);
                    }
                }
            }
        }
        if let Some(l) = &mut self.remote {
            let changes = state.remote.changes().count();
            if l.origin != state.remote.origin() || changes > l.changes_left {
                self.remote = None;
            } else {
                l.changes_left -= changes;
                for (_, m) in state.remote.changes() {
                    if let Some(m) = m {
                        l.add(m, names);
                    }
                }
            }
        }
    }

    /// Takes in the entries of `local` at `paths`, where the local tree may
    /// have changed (a partial rescan's paths).
    pub fn note_local<'p>(
        &mut self,
        local: &LocalTree,
        paths: impl IntoIterator<Item = &'p RelPath>,
    ) {
        let Some(l) = &mut self.local else {
            return;
        };
        for path in paths {
            if l.changes_left == 0 {
                self.local = None;
                return;
            }
            l.changes_left -= 1;
            if let Some(f) = local.get(path).and_then(|e| e.stamp.file_id) {
                l.by_file_id.add(f, path.clone());
            }
        }
    }

    /// Drops the local part: the local tree was replaced (a full scan).
    pub fn forget_local(&mut self) {
        self.local = None;
    }

    /// The synced files by stamp, through the synced part (built or
    /// brought up to date with `state` first): how a scan recognises an
    /// unchanged file without a second copy of every synced hash.
    pub fn synced_hashes<'a>(&'a mut self, state: &'a SyncState) -> SyncedHashes<'a> {
        self.note_state(state);
        let names = &self.names;
        let synced = self
            .synced
            .get_or_insert_with(|| SyncedLookups::build(state, names));
        SyncedHashes { state, synced }
    }

    /// Brings every part up to date with `input` (see the type's
    /// documentation for what that assumes) and returns a view over it.
    fn view<'a>(&'a mut self, input: &'a PlanInput<'a>, focus: &Focus) -> Index<'a> {
        self.note_state(input.state);
        self.note_local(input.local, &focus.paths);
        let names = &self.names;
        let synced = self
            .synced
            .get_or_insert_with(|| SyncedLookups::build(input.state, names));
        let remote = self
            .remote
            .get_or_insert_with(|| RemoteLookups::build(input.state, names));
        let local = self
            .local
            .get_or_insert_with(|| LocalLookups::build(input.local));
        Index {
            input,
            names,
            synced,
            remote,
            local,
        }
    }
}

/// The content of synced files by their stamp (see
/// [`Lookups::synced_hashes`]).
pub struct SyncedHashes<'a> {
    state: &'a SyncState,
    synced: &'a SyncedLookups,
}

impl SyncedHashes<'_> {
    /// The content of the synced file recorded with exactly this stamp
    /// (which has a file id: without one, a stamp names no file).
    pub fn get(&self, stamp: &Stamp) -> Option<ContentHash> {
        let f = stamp.file_id?;
        self.synced.by_file_id.get(&f).find_map(|id| {
            self.state
                .synced
                .get(id)
                .filter(|s| !s.is_folder && s.stamp.as_ref() == Some(stamp))
                .and_then(|s| s.content_hash)
        })
    }
}

/// The lookups, checked against the trees of one plan's input: what they
/// answer is what lookups built from these trees alone would answer.
struct Index<'a> {
    input: &'a PlanInput<'a>,
    names: &'a foldhash::fast::RandomState,
    synced: &'a SyncedLookups,
    remote: &'a RemoteLookups,
    local: &'a LocalLookups,
}

impl<'a> Index<'a> {
    /// The synced items directly in `parent`.
    fn synced_children(&self, parent: Option<ItemId>) -> impl Iterator<Item = ItemId> + 'a {
        let synced = &self.input.state.synced;
        self.synced
            .children
            .get(&parent)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |c| synced.get(c).is_some_and(|s| s.parent == parent))
    }

    /// The remote items (deleted ones included) directly in `parent`.
    fn remote_children(&self, parent: Option<ItemId>) -> impl Iterator<Item = ItemId> + 'a {
        let remote = &self.input.state.remote;
        self.remote
            .children
            .get(&parent)
            .into_iter()
            .flatten()
            .copied()
            .filter(move |c| remote.latest(*c).is_some_and(|m| m.parent == parent))
    }

    /// The synced items with this file id in their stamp.
    fn synced_by_file_id(&self, f: u64) -> impl Iterator<Item = ItemId> + 'a {
        let synced = &self.input.state.synced;
        self.synced.by_file_id.get(&f).copied().filter(move |id| {
            synced
                .get(id)
                .is_some_and(|s| s.stamp.and_then(|st| st.file_id) == Some(f))
        })
    }

    /// The synced files with this content.
    fn synced_by_hash(&self, h: ContentHash) -> impl Iterator<Item = ItemId> + 'a {
        let synced = &self.input.state.synced;
        let key = self.names.hash_one(h);
        self.synced.by_hash.get(&key).copied().filter(move |id| {
            synced
                .get(id)
                .is_some_and(|s| !s.is_folder && s.content_hash == Some(h))
        })
    }

    /// The local paths whose entry has this file id.
    fn local_by_file_id(&self, f: u64) -> impl Iterator<Item = &'a RelPath> + 'a {
        let local = self.input.local;
        self.local
            .by_file_id
            .get(&f)
            .filter(move |p| local.get(*p).is_some_and(|e| e.stamp.file_id == Some(f)))
    }

    /// The local paths directly in `dir`.
    fn local_children(&self, dir: &'a RelPath) -> impl Iterator<Item = &'a RelPath> + 'a {
        crate::path::children_in(self.input.local, dir).map(|(p, _)| p)
    }

    /// The synced item at `path`, following synced parents by name (the
    /// greatest id if a name is taken twice, as a map filled in id order
    /// would answer).
    fn synced_at(&self, path: &RelPath) -> Option<ItemId> {
        let synced = &self.input.state.synced;
        let mut parent = None;
        for name in path.components() {
            let key = place_key(self.names, parent, name);
            let here = self.synced.by_name.get(&key).copied().filter(|id| {
                synced
                    .get(id)
                    .is_some_and(|s| s.parent == parent && s.name == *name)
            });
            parent = Some(here.max()?);
        }
        parent
    }

    /// The live remote items at `path` (one, unless the feed is odd).
    fn remote_at(&self, path: &RelPath) -> Vec<ItemId> {
        let remote = &self.input.state.remote;
        let mut here: Vec<Option<ItemId>> = vec![None];
        for name in path.components() {
            here = here
                .iter()
                .flat_map(|p| {
                    self.remote
                        .by_name
                        .get(&place_key(self.names, *p, name))
                        .map(move |id| (*p, *id))
                })
                .filter(|(p, id)| {
                    remote
                        .latest(*id)
                        .is_some_and(|m| m.parent == *p && m.name == *name)
                        && remote.live(*id).is_some()
                })
                .map(|(_, id)| Some(id))
                .collect();
            if here.is_empty() {
                return Vec::new();
            }
        }
        here.into_iter().flatten().collect()
    }
}

/// The region of a focus and its context (see the module documentation).
#[derive(Debug, Default)]
struct Region {
    /// Items and paths taken whole: subtree, siblings, claims.
    full: HashSet<Node>,
    /// Everything included, region and context.
    ids: BTreeSet<ItemId>,
    paths: BTreeSet<RelPath>,
}

impl Region {
    fn of(ix: &Index<'_>, focus: &Focus) -> Region {
        let input = ix.input;
        let mut r = Region::default();
        let mut widened = Widened::default();
        let mut queue: Vec<(Node, bool)> = Vec::new();
        queue.extend(focus.paths.iter().map(|p| (Node::Path(p.clone()), true)));
        queue.extend(focus.ids.iter().map(|id| (Node::Id(*id), true)));
        // Refused local paths are never claimed by an item: they are new
        // items in any plan, numbered among all new ones in path order, so
        // they take part wherever they are.
        queue.extend(
            input
                .state
                .refused
                .keys()
                .map(|p| (Node::Path(p.clone()), false)),
        );
        while let Some((node, full)) = queue.pop() {
            let first_time = match &node {
                Node::Id(id) => r.ids.insert(*id),
                Node::Path(p) => r.paths.insert(p.clone()),
            };
            let first_full = full && r.full.insert(node.clone());
            if !first_time && !first_full {
                continue;
            }
            // What identifies a region entry is region too: the same item
            // or file, seen from another tree.
            identify(ix, &node, full, &mut queue);
            if first_full {
                widen(ix, &node, &mut widened, &mut queue);
            }
        }
        // Every ancestor, in each tree, as context (liveness and paths are
        // resolved through them). Ancestors bring their identity too.
        let mut queue: Vec<(Node, bool)> = Vec::new();
        loop {
            let mut more = Vec::new();
            for id in &r.ids {
                ancestors_of_id(input.state, *id, &mut more);
            }
            for p in &r.paths {
                let mut cur = p.parent();
                while let Some(a) = cur.filter(|a| !a.is_root()) {
                    cur = a.parent();
                    more.push(Node::Path(a));
                }
            }
            more.retain(|n| match n {
                Node::Id(id) => !r.ids.contains(id),
                Node::Path(p) => !r.paths.contains(p),
            });
            if more.is_empty() {
                break;
            }
            for n in more {
                queue.push((n, false));
            }
            while let Some((node, _)) = queue.pop() {
                let first_time = match &node {
                    Node::Id(id) => r.ids.insert(*id),
                    Node::Path(p) => r.paths.insert(p.clone()),
                };
                if first_time {
                    identify(ix, &node, false, &mut queue);
                }
            }
        }
        r
    }

    /// The sync state cut down to the region.
    fn state(&self, full: &SyncState) -> SyncState {
        let mut remote = RemoteTree::default();
        for id in &self.ids {
            if let Some(m) = full.remote.latest(*id) {
                remote.apply(m.clone());
            }
        }
        SyncState {
            cursor: full.cursor,
            remote,
            synced: self
                .ids
                .iter()
                .filter_map(|id| full.synced.get(id).map(|s| (*id, s.clone())))
                .collect(),
            refused: full.refused.clone(),
            pending: full.pending.clone(),
            temps: full.temps.clone(),
        }
    }

    /// The local tree cut down to the region.
    fn local(&self, full: &LocalTree) -> LocalTree {
        self.paths
            .iter()
            .filter_map(|p| full.get(p).map(|e| (p.clone(), e.clone())))
            .collect()
    }
}

/// Queues what identifies `node`: for an item, its path in each tree; for
/// a path, the items there and everything sharing its file id; as region
/// entries if `full`, else as context.
fn identify(ix: &Index<'_>, node: &Node, full: bool, queue: &mut Vec<(Node, bool)>) {
    let state = ix.input.state;
    match node {
        Node::Id(id) => {
            if let Some(p) = state.synced_path(*id) {
                queue.push((Node::Path(p), full));
            }
            if let Some(p) = state.remote.path_of(*id) {
                queue.push((Node::Path(p), full));
            }
        }
        Node::Path(p) => {
            if let Some(id) = ix.synced_at(p) {
                queue.push((Node::Id(id), full));
            }
            for id in ix.remote_at(p) {
                queue.push((Node::Id(id), full));
            }
            if let Some(f) = ix.input.local.get(p).and_then(|e| e.stamp.file_id) {
                for q in ix.local_by_file_id(f) {
                    queue.push((Node::Path(q.clone()), full));
                }
                for id in ix.synced_by_file_id(f) {
                    queue.push((Node::Id(id), full));
                }
            }
        }
    }
}

/// The folders whose children [`widen`] has already looked through for
/// names a conflicted copy could take: what it finds there depends on the
/// folder alone, so each is looked through once per region (a folder of
/// n changed files would otherwise cost n times its n children).
#[derive(Default)]
struct Widened {
    /// By folder id (`None`: the root), in the synced and remote trees.
    items: HashSet<Option<ItemId>>,
    /// By local path.
    paths: HashSet<RelPath>,
}

/// Queues what a change at `node` can reach: its subtree, its siblings in
/// each tree whose names a conflicted copy could take, and the synced
/// files that a new local file could be a move of.
fn widen(ix: &Index<'_>, node: &Node, widened: &mut Widened, queue: &mut Vec<(Node, bool)>) {
    let state = ix.input.state;
    match node {
        Node::Id(id) => {
            let below = ix
                .synced_children(Some(*id))
                .chain(ix.remote_children(Some(*id)));
            for c in below {
                queue.push((Node::Id(c), true));
            }
            let parents = [
                state.synced.get(id).map(|s| s.parent),
                state.remote.latest(*id).map(|m| m.parent),
            ];
            for parent in parents.into_iter().flatten() {
                if !widened.items.insert(parent) {
                    continue;
                }
                let synced = ix
                    .synced_children(parent)
                    .filter(|c| state.synced.get(c).is_some_and(|s| may_be_copy(&s.name)));
                let remote = ix.remote_children(parent).filter(|c| {
                    state
                        .remote
                        .latest(*c)
                        .is_some_and(|m| may_be_copy(&m.name))
                });
                for c in synced.chain(remote) {
                    queue.push((Node::Id(c), false));
                }
            }
        }
        Node::Path(p) => {
            let local = ix.input.local;
            let below = local
                .range::<RelPath, _>((Bound::Excluded(p), Bound::Unbounded))
                .take_while(|(q, _)| q.starts_with(p));
            for (q, _) in below {
                queue.push((Node::Path(q.clone()), true));
            }
            if let Some(parent) = p.parent()
                && !widened.paths.contains(&parent)
            {
                for q in ix.local_children(&parent) {
                    if q.name().is_some_and(may_be_copy) {
                        queue.push((Node::Path(q.clone()), false));
                    }
                }
                widened.paths.insert(parent);
            }
            // A new file may be a move of a synced file with its content
            // whose own path is gone (claimed by content hash).
            if let Some(e) = local.get(p)
                && let (false, Some(h)) = (e.is_folder, e.hash)
            {
                for id in ix.synced_by_hash(h) {
                    let gone = state
                        .synced_path(id)
                        .is_none_or(|sp| local.get(&sp).is_none_or(|e| e.is_folder));
                    if gone {
                        queue.push((Node::Id(id), true));
                    }
                }
            }
        }
    }
}

/// Queues the ancestors of `id` in the synced and remote trees (deleted
/// ones included: they decide whether the item is live).
fn ancestors_of_id(state: &SyncState, id: ItemId, out: &mut Vec<Node>) {
    let mut seen = BTreeSet::new();
    let mut cur = state.synced.get(&id).and_then(|s| s.parent);
    while let Some(p) = cur.filter(|p| seen.insert(*p)) {
        out.push(Node::Id(p));
        cur = state.synced.get(&p).and_then(|s| s.parent);
    }
    let mut seen = BTreeSet::new();
    let mut cur = state.remote.latest(id).and_then(|m| m.parent);
    while let Some(p) = cur.filter(|p| seen.insert(*p)) {
        out.push(Node::Id(p));
        cur = state.remote.latest(p).and_then(|m| m.parent);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use stacksync_proto::{
        ContentHash, DeviceId, ItemId, ItemMeta, ItemName, ItemStatus, WorkspaceId,
    };

    use super::{Focus, Index, Lookups};
    use crate::ignore::IgnoreRules;
    use crate::path::RelPath;
    use crate::planner::PlanInput;
    use crate::sim::SimRng;
    use crate::tree::{LocalEntry, LocalTree, Stamp, SyncState, SyncedItem};

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    fn id(n: usize) -> ItemId {
        ItemId(uuid::Uuid::from_u64_pair(0, n as u64))
    }

    fn hash(n: usize) -> ContentHash {
        ContentHash([n as u8; 32])
    }

    /// Every answer of a view, as sets, over every key the trees can ask.
    fn answers(ix: &Index<'_>, ids: usize) -> Vec<String> {
        let parents = std::iter::once(None).chain((0..ids).map(|n| Some(id(n))));
        let mut out = Vec::new();
        for p in parents {
            let s: BTreeSet<ItemId> = ix.synced_children(p).collect();
            let r: BTreeSet<ItemId> = ix.remote_children(p).collect();
            out.push(format!("children of {p:?}: synced {s:?} remote {r:?}"));
        }
        for f in 0..6u64 {
            let s: BTreeSet<ItemId> = ix.synced_by_file_id(f).collect();
            let l: BTreeSet<&RelPath> = ix.local_by_file_id(f).collect();
            out.push(format!("file id {f}: synced {s:?} local {l:?}"));
        }
        for h in 0..4 {
            let s: BTreeSet<ItemId> = ix.synced_by_hash(hash(h)).collect();
            out.push(format!("hash {h}: {s:?}"));
        }
        let mut paths: BTreeSet<RelPath> = ix.input.local.keys().cloned().collect();
        for a in NAMES {
            for b in NAMES {
                paths.insert(RelPath::parse(&format!("{a}/{b}")).unwrap());
            }
        }
        for path in &paths {
            let mut remote = ix.remote_at(path);
            remote.sort();
            out.push(format!(
                "at {path}: synced {:?} remote {remote:?}",
                ix.synced_at(path)
            ));
        }
        let dirs = std::iter::once(RelPath::root()).chain(paths.iter().cloned());
        for dir in dirs {
            let c: Vec<&RelPath> = ix.local_children(&dir).collect();
            out.push(format!("in {dir}: {c:?}"));
        }
        out
    }

    fn random_name(rng: &mut SimRng) -> ItemName {
        ItemName::new(NAMES[rng.below(NAMES.len())]).unwrap()
    }

    /// Lookups kept across random changes (told as the engine tells them)
    /// answer exactly as lookups built afresh.
    #[test]
    fn kept_lookups_answer_as_fresh_ones() {
        const IDS: usize = 12;
        let ignore = IgnoreRules::defaults();
        let unsynced = BTreeMap::new();
        for seed in 1..=300u64 {
            let mut rng = SimRng::new(seed);
            let mut state = SyncState::default();
            let mut local = LocalTree::new();
            let mut kept = Lookups::default();
            for step in 0..40 {
                let n = rng.below(IDS);
                let parent = rng.chance(50).then(|| id(rng.below(IDS)));
                let name = random_name(&mut rng);
                let file_id = rng.chance(80).then(|| rng.below(6) as u64);
                let content = rng.chance(70).then(|| hash(rng.below(4)));
                let mut changed_paths = Vec::new();
                match rng.below(5) {
                    0 => {
                        state.synced.insert(
                            id(n),
                            SyncedItem {
                                parent,
                                name,
                                is_folder: content.is_none(),
                                version: 1,
                                content_hash: content,
                                size: 0,
                                stamp: Some(Stamp {
                                    size: 0,
                                    mtime: 0,
                                    file_id,
                                }),
                            },
                        );
                    }
                    1 => {
                        state.synced.remove(&id(n));
                    }
                    2 => state.remote.apply(ItemMeta {
                        id: id(n),
                        workspace: WorkspaceId(uuid::Uuid::nil()),
                        parent,
                        name,
                        is_folder: content.is_none(),
                        mimetype: None,
                        status: if rng.chance(20) {
                            ItemStatus::Deleted
                        } else {
                            ItemStatus::Changed
                        },
                        version: step,
                        content_hash: content,
                        size: 0,
                        client_modified: 0,
                        server_modified: 0,
                        device: DeviceId(uuid::Uuid::nil()),
                        revision: step,
                        chunks: Vec::new(),
                        record: None,
                    }),
                    3 => {
                        let mut path = RelPath::root().join(&name);
                        if rng.chance(50) {
                            path = path.join(&random_name(&mut rng));
                        }
                        local.insert(
                            path.clone(),
                            LocalEntry {
                                is_folder: content.is_none(),
                                stamp: Stamp {
                                    size: 0,
                                    mtime: step as i64,
                                    file_id,
                                },
                                hash: content,
                            },
                        );
                        changed_paths.push(path);
                    }
                    _ => {
                        if let Some(path) = local.keys().nth(rng.below(local.len().max(1))).cloned()
                        {
                            local.remove(&path);
                            changed_paths.push(path);
                        }
                    }
                }
                // As the engine does: the rescan's paths, and the state's
                // record before a save forgets it.
                kept.note_local(&local, &changed_paths);
                if rng.chance(50) {
                    kept.note_state(&state);
                    state.forget_changes();
                }
                let input = PlanInput {
                    state: &state,
                    local: &local,
                    ignore: &ignore,
                    unsynced: &unsynced,
                    device_name: "dev",
                    now: 0,
                    read_only: false,
                };
                let empty = Focus::default();
                let mut fresh = Lookups::default();
                let want = answers(&fresh.view(&input, &empty), IDS);
                let got = answers(&kept.view(&input, &empty), IDS);
                assert_eq!(got, want, "seed {seed} step {step}");
            }
        }
    }
}
