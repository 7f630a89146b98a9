//! Focused planning: the plan of a round whose changes are known to lie at
//! a few places, computed on the part of the trees they can affect instead
//! of on all of them, so that one edit in a tree of 100,000 files costs
//! about what it does in a tree of 1,000.
//!
//! **When it is right.** Outside the [`Focus`], the three trees must be
//! *settled*: a full plan would do nothing there. The engine guarantees it
//! by planning in full after anything else (a start, a round that did not
//! apply its whole plan, a failure, a change of the ignore rules) and by
//! naming in the focus every local path that may have changed since the
//! last plan (the watcher's paths and the paths the engine acted on) and
//! every item whose remote record changed since then. Under that
//! condition the focused plan equals the full one (`tests/focus.rs` checks
//! it on random trees and changes).
//!
//! **How.** The focus grows into a *region*: every item or local path that
//! a change can move, claim, clash with or depend on. Region entries bring
//! their whole subtree (a moved folder may move everything under it, and a
//! folder re-created without file ids re-claims its children by content),
//! their siblings in each tree (a new name may clash with any of them, and
//! conflicted-copy names avoid all of them), their ancestors (paths and
//! liveness are resolved through them), and everything that could claim
//! them or that they could claim (the item at the same path in each tree,
//! items and paths sharing a file id, synced files with the same content
//! whose own path is gone). Siblings and ancestors are *context*: they
//! bring what identifies them (the item at their path, and the path of
//! their item) so they are claimed as in the full plan, but not their
//! siblings or subtrees, because nothing about them changed. The planner
//! then runs unchanged on the trees cut down to the region and its
//! context: one set of planning rules, whichever way it is called.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashSet};
use std::hash::Hash;

use foldhash::{HashMap, HashMapExt};
use std::ops::Bound;

use stacksync_proto::{ContentHash, ItemId, ItemName};

use super::{Plan, PlanInput, plan};
use crate::path::RelPath;
use crate::tree::{LocalTree, RemoteTree, SyncState};

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
    let region = Region::of(input, focus);
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
/// for each of a tree's entries in every focused plan.
struct Multi<K, V> {
    first: HashMap<K, V>,
    more: HashMap<K, Vec<V>>,
}

impl<K: Hash + Eq + Clone, V> Multi<K, V> {
    fn with_capacity(n: usize) -> Self {
        Multi {
            first: HashMap::with_capacity(n),
            more: HashMap::new(),
        }
    }

    fn push(&mut self, key: K, value: V) {
        match self.first.entry(key) {
            Entry::Occupied(e) => self.more.entry(e.key().clone()).or_default().push(value),
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

/// Lookups over the full trees, built once per focused plan. Hashed with
/// foldhash (randomly seeded per process: names come from other users),
/// several times faster than SipHash on these small keys; building them is
/// most of a focused plan's cost in a large tree.
struct Index<'a> {
    input: &'a PlanInput<'a>,
    synced_children: HashMap<Option<ItemId>, Vec<ItemId>>,
    synced_by_name: HashMap<(Option<ItemId>, &'a ItemName), ItemId>,
    synced_by_file_id: Multi<u64, ItemId>,
    synced_by_hash: Multi<ContentHash, ItemId>,
    remote_children: HashMap<Option<ItemId>, Vec<ItemId>>,
    remote_by_name: Multi<(Option<ItemId>, &'a ItemName), ItemId>,
    local_children: HashMap<&'a [ItemName], Vec<&'a RelPath>>,
    local_by_file_id: Multi<u64, &'a RelPath>,
}

impl<'a> Index<'a> {
    fn new(input: &'a PlanInput<'a>) -> Index<'a> {
        let state = input.state;
        let (synced, remote, local) = (state.synced.len(), state.remote.len(), input.local.len());
        let mut ix = Index {
            input,
            synced_children: HashMap::new(),
            synced_by_name: HashMap::with_capacity(synced),
            synced_by_file_id: Multi::with_capacity(synced),
            synced_by_hash: Multi::with_capacity(synced),
            remote_children: HashMap::new(),
            remote_by_name: Multi::with_capacity(remote),
            local_children: HashMap::new(),
            local_by_file_id: Multi::with_capacity(local),
        };
        for (id, s) in &state.synced {
            ix.synced_children.entry(s.parent).or_default().push(*id);
            ix.synced_by_name.insert((s.parent, &s.name), *id);
            if let Some(f) = s.stamp.and_then(|st| st.file_id) {
                ix.synced_by_file_id.push(f, *id);
            }
            if let (false, Some(h)) = (s.is_folder, s.content_hash) {
                ix.synced_by_hash.push(h, *id);
            }
        }
        for m in state.remote.iter() {
            ix.remote_children.entry(m.parent).or_default().push(m.id);
            ix.remote_by_name.push((m.parent, &m.name), m.id);
        }
        for (path, e) in input.local {
            if let Some((_, parent)) = path.components().split_last() {
                ix.local_children.entry(parent).or_default().push(path);
            }
            if let Some(f) = e.stamp.file_id {
                ix.local_by_file_id.push(f, path);
            }
        }
        ix
    }

    /// The synced item at `path`, following synced parents by name.
    fn synced_at(&self, path: &RelPath) -> Option<ItemId> {
        let mut parent = None;
        for name in path.components() {
            parent = Some(*self.synced_by_name.get(&(parent, name))?);
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
                .flat_map(|p| self.remote_by_name.get(&(*p, name)))
                .filter(|id| remote.live(**id).is_some())
                .map(|id| Some(*id))
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
    fn of(input: &PlanInput<'_>, focus: &Focus) -> Region {
        let ix = Index::new(input);
        let mut r = Region::default();
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
            identify(&ix, &node, full, &mut queue);
            if first_full {
                widen(&ix, &node, &mut queue);
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
                    identify(&ix, &node, false, &mut queue);
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
                for q in ix.local_by_file_id.get(&f) {
                    queue.push((Node::Path((*q).clone()), full));
                }
                for id in ix.synced_by_file_id.get(&f) {
                    queue.push((Node::Id(*id), full));
                }
            }
        }
    }
}

/// Queues what a change at `node` can reach: its subtree and its siblings
/// in each tree, and the synced files that a new local file could be a
/// move of.
fn widen(ix: &Index<'_>, node: &Node, queue: &mut Vec<(Node, bool)>) {
    let state = ix.input.state;
    match node {
        Node::Id(id) => {
            for children in [&ix.synced_children, &ix.remote_children] {
                for c in children.get(&Some(*id)).into_iter().flatten() {
                    queue.push((Node::Id(*c), true));
                }
            }
            let parents = [
                state.synced.get(id).map(|s| s.parent),
                state.remote.latest(*id).map(|m| m.parent),
            ];
            for parent in parents.into_iter().flatten() {
                for children in [&ix.synced_children, &ix.remote_children] {
                    for c in children.get(&parent).into_iter().flatten() {
                        queue.push((Node::Id(*c), false));
                    }
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
            if let Some((_, parent)) = p.components().split_last() {
                for q in ix.local_children.get(parent).into_iter().flatten() {
                    queue.push((Node::Path((*q).clone()), false));
                }
            }
            // A new file may be a move of a synced file with its content
            // whose own path is gone (claimed by content hash).
            if let Some(e) = local.get(p)
                && let (false, Some(h)) = (e.is_folder, e.hash)
            {
                for id in ix.synced_by_hash.get(&h) {
                    let gone = state
                        .synced_path(*id)
                        .is_none_or(|sp| local.get(&sp).is_none_or(|e| e.is_folder));
                    if gone {
                        queue.push((Node::Id(*id), true));
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
