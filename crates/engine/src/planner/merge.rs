//! Step 2 of planning: the three-way merge into the final tree.

use std::collections::{BTreeMap, BTreeSet};

use stacksync_proto::{ContentHash, ItemMeta, ItemName};

use super::claim::{Claims, LocalItem};
use super::left_out::left_out;
use super::{Key, PlanInput, Pos, read_only};
use crate::conflict::conflicted_copy_name;
use crate::planted::{PlantedBug, planted};
use crate::tree::SyncedItem;

/// An item of the final tree both sides should end up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FinalItem {
    pub pos: Pos,
    pub is_folder: bool,
    pub hash: Option<ContentHash>,
}

/// The local view once conflicted copies have been moved aside: the
/// claims' map with a few entries moved to new keys, without a copy of it
/// (which would cost a name per local entry in every full plan).
#[derive(Debug)]
pub(crate) struct LocalView<'a> {
    base: &'a BTreeMap<Key, LocalItem>,
    /// Keys of `base` whose entry was moved aside.
    aside: BTreeSet<Key>,
    /// The entries moved aside, under their new keys.
    copies: BTreeMap<Key, LocalItem>,
}

impl<'a> LocalView<'a> {
    fn new(base: &'a BTreeMap<Key, LocalItem>) -> Self {
        LocalView {
            base,
            aside: BTreeSet::new(),
            copies: BTreeMap::new(),
        }
    }

    /// The entry of `key`, if it has one here.
    pub fn get(&self, key: &Key) -> Option<&LocalItem> {
        match self.copies.get(key) {
            Some(item) => Some(item),
            None if self.aside.contains(key) => None,
            None => self.base.get(key),
        }
    }

    /// Every entry (copies after the others).
    pub fn iter(&self) -> impl Iterator<Item = (&Key, &LocalItem)> {
        self.base
            .iter()
            .filter(|(k, _)| !self.aside.contains(k) && !self.copies.contains_key(k))
            .chain(self.copies.iter())
    }

    /// Puts the entry of `key` under `copy`, as `item`.
    fn move_aside(&mut self, key: Key, copy: Key, item: LocalItem) {
        self.aside.insert(key);
        self.copies.remove(&key);
        self.copies.insert(copy, item);
    }
}

/// The merge's answer.
#[derive(Debug)]
pub(crate) struct Merged<'a> {
    pub fin: BTreeMap<Key, FinalItem>,
    /// The local view once conflicted copies have been moved aside.
    pub local: LocalView<'a>,
    /// `(item, copy, copy name)`: local bytes to keep as a new item.
    pub conflicts: Vec<(Key, Key, ItemName)>,
    /// Local entries to delete because the server deleted them and they did
    /// not change locally. Nothing else is ever deleted locally.
    pub local_deletes: BTreeSet<Key>,
    /// Keys left alone this round (a file being written, an item left out
    /// of sync).
    pub busy: BTreeSet<Key>,
    /// Items left out of sync whose synced record is forgotten.
    pub untrack: BTreeSet<Key>,
    /// Per-file errors of items left out of sync: `(local path, reason)`.
    pub clashes: Vec<(crate::path::RelPath, String)>,
}

pub(crate) fn meta_pos(m: &ItemMeta) -> Pos {
    Pos {
        parent: m.parent.map(Key::Item),
        name: m.name.clone(),
    }
}

fn synced_pos(s: &SyncedItem) -> Pos {
    Pos {
        parent: s.parent.map(Key::Item),
        name: s.name.clone(),
    }
}

fn from_remote(r: &ItemMeta) -> FinalItem {
    FinalItem {
        pos: meta_pos(r),
        is_folder: r.is_folder,
        hash: r.content_hash,
    }
}

fn from_local(l: &LocalItem) -> FinalItem {
    FinalItem {
        pos: l.pos.clone(),
        is_folder: l.is_folder,
        hash: l.hash,
    }
}

/// The three-way merge. Rules, per item (s = synced, r = remote, l = local):
/// - only one side changed: that side wins;
/// - both changed position: the remote position wins (deterministic, and the
///   local move is still visible in history);
/// - both changed content differently: the remote content wins at the item,
///   and the local bytes are kept as a conflicted copy next to it;
/// - edit (or move) against delete: the edit wins, the item is restored;
/// - unchanged against delete: the delete wins.
///
/// In read-only mode (see [`read_only`]) the server's side always wins
/// for its live items, local bytes it does not have are kept in conflicted
/// copies, and whatever the final tree holds that the server does not is
/// kept on this device alone.
pub(crate) fn merge<'a>(input: &PlanInput<'_>, claims: &'a Claims) -> Merged<'a> {
    let state = input.state;
    let mut m = Merged {
        fin: BTreeMap::new(),
        local: LocalView::new(&claims.local),
        conflicts: Vec::new(),
        local_deletes: BTreeSet::new(),
        busy: BTreeSet::new(),
        untrack: BTreeSet::new(),
        clashes: Vec::new(),
    };
    let mut next_new = claims.next_new;

    let mut keys: BTreeSet<Key> = state.synced.keys().map(|id| Key::Item(*id)).collect();
    keys.extend(
        state
            .remote
            .iter()
            .filter(|r| state.remote.live(r.id).is_some())
            .map(|r| Key::Item(r.id)),
    );
    keys.extend(claims.local.keys().copied());

    for key in keys {
        let l = claims.local.get(&key);
        if let Some(l) = l
            && !l.is_folder
            && l.hash.is_none()
        {
            m.busy.insert(key);
            m.fin.insert(key, from_local(l));
            continue;
        }
        if let (Key::Item(_), Some(l)) = (key, l)
            && claims.refused.contains(&key)
        {
            m.busy.insert(key);
            m.fin.insert(key, from_local(l));
            continue;
        }
        let id = match key {
            Key::New(_) => {
                if let Some(l) = l
                    && !claims.refused.contains(&key)
                {
                    m.fin.insert(key, from_local(l));
                }
                continue;
            }
            Key::Item(id) => id,
        };
        if let Some(out) = left_out(input, &claims.local, id, l) {
            // Neither side changes; a local entry keeps its place in the
            // final tree so that nothing else is put there.
            m.busy.insert(key);
            if let Some(l) = l {
                m.fin.insert(key, from_local(l));
            }
            if out.untrack {
                m.untrack.insert(key);
            }
            m.clashes.extend(out.report);
            continue;
        }
        let s = state.synced.get(&id);
        let r = state.remote.live(id);
        match (s, r, l) {
            (_, None, None) => {}
            (None, Some(r), None) => {
                m.fin.insert(key, from_remote(r));
            }
            (None, None, Some(l)) => {
                m.fin.insert(key, from_local(l));
            }
            (None, Some(r), Some(l)) => {
                // Both sides created the same path (claimed by remote path).
                let mut f = from_remote(r);
                f.pos = meta_pos(r);
                if !r.is_folder && l.hash != r.content_hash {
                    conflict(input, &mut m, &mut next_new, key, l);
                }
                m.fin.insert(key, f);
            }
            (Some(s), None, Some(l)) => {
                let edited = (!s.is_folder && l.hash != s.content_hash) || l.pos != synced_pos(s);
                if edited && !planted(PlantedBug::DeleteOverLocalEdit) {
                    m.fin.insert(key, from_local(l));
                } else {
                    m.local_deletes.insert(key);
                }
            }
            // Read-only: the server's version, whatever changed here (a
            // local delete or move is downloaded again, an edit kept in a
            // conflicted copy).
            (Some(s), Some(r), l) if input.read_only => {
                if let Some(l) = l
                    && read_only::known_item(s, r, l)
                {
                    conflict(input, &mut m, &mut next_new, key, l);
                }
                m.fin.insert(key, from_remote(r));
            }
            (Some(s), Some(r), None) => {
                if r.version != s.version {
                    m.fin.insert(key, from_remote(r));
                }
            }
            (Some(s), Some(r), Some(l)) => {
                let rp = meta_pos(r);
                let pos = if rp != synced_pos(s) {
                    rp
                } else {
                    l.pos.clone()
                };
                let mut hash = None;
                if !r.is_folder {
                    let lc = l.hash != s.content_hash;
                    let rc = r.content_hash != s.content_hash;
                    hash = if lc { l.hash } else { r.content_hash };
                    if lc && rc && l.hash != r.content_hash {
                        if !planted(PlantedBug::OverwriteConcurrentEdit) {
                            conflict(input, &mut m, &mut next_new, key, l);
                        }
                        hash = r.content_hash;
                    }
                }
                m.fin.insert(
                    key,
                    FinalItem {
                        pos,
                        is_folder: r.is_folder,
                        hash,
                    },
                );
            }
        }
    }
    // Built again in bulk: inserted in key order, its nodes are half
    // empty (10 MB at 100,000 items).
    m.fin = std::mem::take(&mut m.fin).into_iter().collect();
    fix_up(input, &mut m);
    if input.read_only {
        read_only::keep_local_only(input, claims, &mut m);
    }
    m
}

/// Moves the local bytes of `key` aside into a new item.
fn conflict(
    input: &PlanInput<'_>,
    m: &mut Merged<'_>,
    next_new: &mut u32,
    key: Key,
    l: &LocalItem,
) {
    let copy = Key::New(*next_new);
    *next_new += 1;
    let name = conflicted_copy_name(&l.pos.name, false, input.device_name, input.now, 1);
    let item = LocalItem {
        pos: Pos {
            parent: l.pos.parent,
            name: name.clone(),
        },
        ..l.clone()
    };
    m.fin.insert(copy, from_local(&item));
    m.local.move_aside(key, copy, item);
    m.conflicts.push((key, copy, name));
}

/// Makes the final tree a tree again: every parent present, no cycles, no
/// two items with one name in one folder.
fn fix_up(input: &PlanInput<'_>, m: &mut Merged<'_>) {
    // Each pass either changes something or stops; a bound guards against a
    // fix that undoes another.
    for _ in 0..16 {
        let changed = fix_parents(input, m) | fix_cycles(input, m) | fix_clashes(input, m);
        if !changed {
            break;
        }
    }
}

fn fix_parents(input: &PlanInput<'_>, m: &mut Merged<'_>) -> bool {
    let remote = &input.state.remote;
    let missing: Vec<(Key, Key)> = m
        .fin
        .iter()
        .filter_map(|(k, f)| {
            f.pos
                .parent
                .filter(|p| !m.fin.contains_key(p))
                .map(|p| (*k, p))
        })
        .collect();
    let mut changed = false;
    for (child, parent) in missing {
        if m.fin.contains_key(&parent) {
            continue;
        }
        changed = true;
        let revived = match parent {
            Key::Item(pid) => match (remote.live(pid), m.local.get(&parent)) {
                (Some(r), _) => Some(from_remote(r)),
                (None, Some(l)) => Some(from_local(l)),
                (None, None) => None,
            },
            Key::New(_) => None,
        };
        match revived {
            Some(f) => {
                m.local_deletes.remove(&parent);
                m.fin.insert(parent, f);
            }
            None => {
                // The parent is gone on both sides or was refused: fall back
                // to the child's remote place, else leave it out of the plan
                // (it stays where it is locally, untouched).
                let back = match child {
                    Key::Item(id) => remote.live(id).map(meta_pos),
                    Key::New(_) => None,
                };
                match back {
                    Some(pos) if pos.parent.is_none_or(|p| m.fin.contains_key(&p)) => {
                        if let Some(f) = m.fin.get_mut(&child) {
                            f.pos = pos;
                        }
                    }
                    _ => {
                        m.fin.remove(&child);
                        m.busy.insert(child);
                    }
                }
            }
        }
    }
    changed
}

fn fix_cycles(input: &PlanInput<'_>, m: &mut Merged<'_>) -> bool {
    let remote = &input.state.remote;
    let mut changed = false;
    let keys: Vec<Key> = m.fin.keys().copied().collect();
    for start in keys {
        let mut seen = Vec::new();
        let mut cur = Some(start);
        while let Some(k) = cur {
            if seen.contains(&k) {
                break;
            }
            seen.push(k);
            cur = m.fin.get(&k).and_then(|f| f.pos.parent);
        }
        let Some(again) = cur else { continue };
        // `again` is on a cycle; revert the first locally-placed member to
        // its remote position (the remote tree has no cycles).
        let cycle: Vec<Key> = seen.iter().skip_while(|k| **k != again).copied().collect();
        let mut sorted = cycle.clone();
        sorted.sort();
        let fix = sorted.iter().find_map(|k| match k {
            Key::Item(id) => remote
                .live(*id)
                .map(meta_pos)
                .filter(|p| m.fin[k].pos != *p)
                .map(|p| (*k, p)),
            Key::New(_) => None,
        });
        let (k, pos) = fix.unwrap_or_else(|| {
            let k = sorted[0];
            (
                k,
                Pos {
                    parent: None,
                    name: m.fin[&k].pos.name.clone(),
                },
            )
        });
        if let Some(f) = m.fin.get_mut(&k) {
            f.pos = pos;
        }
        changed = true;
    }
    changed
}

fn fix_clashes(input: &PlanInput<'_>, m: &mut Merged<'_>) -> bool {
    let remote = &input.state.remote;
    // Every item's place, borrowed and sorted, so that the items sharing a
    // place are adjacent (a map of places to lists would cost a name and a
    // list per item of the tree).
    let mut places: Vec<(Option<Key>, &ItemName, Key)> = m
        .fin
        .iter()
        .map(|(k, f)| (f.pos.parent, &f.pos.name, *k))
        .collect();
    places.sort_unstable();
    let taken = |parent: Option<Key>, name: &ItemName| {
        places
            .binary_search_by(|(p, n, _)| (*p, *n).cmp(&(parent, name)))
            .is_ok()
    };
    let mut renames: Vec<(Key, ItemName)> = Vec::new();
    for group in places.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        if group.len() < 2 {
            continue;
        }
        let (parent, name) = (group[0].0, group[0].1);
        // The item already there on the server keeps the name; then the
        // one already there on disk; then the smallest key.
        let rank = |k: &Key| {
            let f = &m.fin[k];
            let at_remote = match k {
                Key::Item(id) => remote.live(*id).is_some_and(|r| meta_pos(r) == f.pos),
                Key::New(_) => false,
            };
            let at_local = m.local.get(k).is_some_and(|l| l.pos == f.pos);
            (!at_remote, !at_local, *k)
        };
        let mut ks: Vec<Key> = group.iter().map(|(_, _, k)| *k).collect();
        ks.sort_by_key(rank);
        for loser in ks.into_iter().skip(1) {
            let is_folder = m.fin[&loser].is_folder;
            let mut attempt = 1;
            let new_name = loop {
                let n =
                    conflicted_copy_name(name, is_folder, input.device_name, input.now, attempt);
                if !taken(parent, &n) || attempt > 1000 {
                    break n;
                }
                attempt += 1;
            };
            renames.push((loser, new_name));
        }
    }
    let changed = !renames.is_empty();
    for (loser, new_name) in renames {
        if let Some(f) = m.fin.get_mut(&loser) {
            f.pos.name = new_name;
        }
    }
    changed
}
