//! Ordering steps so that no step clobbers another: a place is vacated
//! before it is taken, a parent exists before its children arrive, and a
//! folder is emptied before it is deleted. Cycles of moves (swaps) are
//! broken by moving one item through a temporary name.

use std::collections::{BTreeMap, BTreeSet};

use stacksync_proto::ItemName;

use super::{Key, Pos};
use crate::ignore::MOVE_TEMP_PREFIX;

/// What a step does to the item's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StepKind {
    Delete,
    Move,
    Create,
    /// New content in place (after any move of the same item).
    Update,
}

/// A step in its final order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ordered {
    Step(Key, StepKind),
    /// Move the item to this temporary place first.
    Temp(Key, Pos),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The source leaves the place the target goes to.
    Vacate,
    /// The source (a child) leaves the folder the target deletes.
    ChildLeaves,
    Other,
}

/// The temporary name an item passes through to break a cycle of moves.
pub(crate) fn temp_name(key: Key) -> ItemName {
    let s = match key {
        Key::Item(id) => format!("{MOVE_TEMP_PREFIX}{id}"),
        Key::New(n) => format!("{MOVE_TEMP_PREFIX}new-{n}"),
    };
    // A fixed ASCII prefix and a UUID or number: always a valid name.
    ItemName::new(s).expect("temporary move names are valid names")
}

/// Orders `steps` (at most one of each kind per key) given the positions
/// before and after.
pub(crate) fn order(
    before: &BTreeMap<Key, &Pos>,
    after: &BTreeMap<Key, &Pos>,
    steps: &[(Key, StepKind)],
) -> Vec<Ordered> {
    let mut steps = steps.to_vec();
    steps.sort_by_key(|(k, kind)| (*kind, *k));
    let n = steps.len();
    let index: BTreeMap<(Key, StepKind), usize> =
        steps.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let leaving = |k: Key| {
        index
            .get(&(k, StepKind::Move))
            .or_else(|| index.get(&(k, StepKind::Delete)))
            .copied()
    };
    let placing = |k: Key| {
        index
            .get(&(k, StepKind::Move))
            .or_else(|| index.get(&(k, StepKind::Create)))
            .copied()
    };
    let occupant: BTreeMap<&Pos, Key> = before.iter().map(|(k, p)| (*p, *k)).collect();
    let mut children: BTreeMap<Key, Vec<Key>> = BTreeMap::new();
    for (k, p) in before {
        if let Some(parent) = p.parent {
            children.entry(parent).or_default().push(*k);
        }
    }

    let mut edges: Vec<Vec<(usize, Why)>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    let mut add = |from: usize, to: usize, why: Why, edges: &mut Vec<Vec<(usize, Why)>>| {
        if from != to {
            edges[from].push((to, why));
            indeg[to] += 1;
        }
    };
    for (i, (k, kind)) in steps.iter().enumerate() {
        match kind {
            StepKind::Move | StepKind::Create => {
                let Some(&target) = after.get(k) else {
                    continue;
                };
                if let Some(o) = occupant.get(target).filter(|o| **o != *k)
                    && let Some(j) = leaving(*o)
                {
                    add(j, i, Why::Vacate, &mut edges);
                }
                if let Some(j) = target.parent.and_then(placing) {
                    add(j, i, Why::Other, &mut edges);
                }
            }
            StepKind::Delete => {
                for c in children.get(k).into_iter().flatten() {
                    if let Some(j) = leaving(*c) {
                        add(j, i, Why::ChildLeaves, &mut edges);
                    }
                }
            }
            StepKind::Update => {
                if let Some(j) = index.get(&(*k, StepKind::Move)) {
                    add(*j, i, Why::Other, &mut edges);
                }
            }
        }
    }

    let mut out = Vec::with_capacity(n);
    let mut done = vec![false; n];
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| indeg[*i] == 0).collect();
    let mut remaining = n;
    let mut temped = vec![false; n];
    while remaining > 0 {
        let Some(i) = ready.pop_first() else {
            // Stuck: a cycle. Send the first pending move through a
            // temporary name, which vacates its place; if no move is
            // pending, force the first step (it will fail and be retried
            // rather than block the plan).
            let pending = (0..n).filter(|i| !done[*i]);
            let pick = pending
                .clone()
                .find(|i| steps[*i].1 == StepKind::Move && !temped[*i]);
            match pick {
                Some(i) => {
                    temped[i] = true;
                    let k = steps[i].0;
                    // Park it in its destination folder if that exists
                    // already, else at the root, which always does. Either
                    // way it also leaves a folder that is being deleted.
                    let dest = after.get(&k).and_then(|p| p.parent);
                    let dest_ready = dest.and_then(placing).is_none_or(|j| done[j]);
                    let parent = if dest_ready { dest } else { None };
                    let left_parent = parent != before.get(&k).and_then(|p| p.parent);
                    let park = Pos {
                        parent,
                        name: temp_name(k),
                    };
                    // Already parked there by an earlier, interrupted plan.
                    if before.get(&k).copied() != Some(&park) {
                        out.push(Ordered::Temp(k, park));
                    }
                    for (to, why) in std::mem::take(&mut edges[i]) {
                        if why == Why::Vacate || (why == Why::ChildLeaves && left_parent) {
                            indeg[to] -= 1;
                            if indeg[to] == 0 && !done[to] {
                                ready.insert(to);
                            }
                        } else {
                            edges[i].push((to, why));
                        }
                    }
                }
                None => {
                    if let Some(i) = pending.clone().next() {
                        indeg[i] = 0;
                        ready.insert(i);
                    }
                }
            }
            continue;
        };
        done[i] = true;
        remaining -= 1;
        out.push(Ordered::Step(steps[i].0, steps[i].1));
        for (to, _) in std::mem::take(&mut edges[i]) {
            indeg[to] = indeg[to].saturating_sub(1);
            if indeg[to] == 0 && !done[to] {
                ready.insert(to);
            }
        }
    }
    out
}
