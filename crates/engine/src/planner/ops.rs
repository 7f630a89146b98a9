//! Step 3 of planning: the differences between the final tree and each
//! side, as ordered operations.

use std::collections::{BTreeMap, BTreeSet};

use super::claim::Claims;
use super::merge::{FinalItem, Merged, meta_pos};
use super::order::{Ordered, StepKind, order};
use super::{Key, Op, PlanInput, Pos, RemoteChange, RemoteContent, read_only};
use crate::tree::SyncedItem;

pub(crate) fn ops(input: &PlanInput<'_>, claims: &Claims, m: &Merged<'_>) -> Vec<Op> {
    let mut out: Vec<Op> = m
        .untrack
        .iter()
        .map(|key| Op::Untrack { key: *key })
        .collect();
    out.extend(settles(input, claims, m));
    for (key, copy, name) in &m.conflicts {
        out.push(Op::ConflictCopy {
            key: *key,
            copy: *copy,
            name: name.clone(),
        });
    }
    out.extend(local_ops(input, m));
    if read_only::may_commit(input) {
        out.extend(remote_ops(input, m));
    }
    out
}

/// Items whose two sides already agree but whose synced record is stale or
/// missing (both made the same change; a file was touched but not changed;
/// both deleted it).
fn settles(input: &PlanInput<'_>, claims: &Claims, m: &Merged<'_>) -> Vec<Op> {
    let state = input.state;
    let mut keys: BTreeSet<Key> = state.synced.keys().map(|id| Key::Item(*id)).collect();
    keys.extend(claims.local.keys().copied());
    let mut out = Vec::new();
    for key in keys {
        let Key::Item(id) = key else { continue };
        if m.busy.contains(&key) {
            continue;
        }
        let s = state.synced.get(&id);
        let r = state.remote.live(id);
        let l = m.local.get(&key);
        let needed = match (r, l, m.fin.get(&key)) {
            (None, None, _) => s.is_some(),
            (Some(r), Some(l), Some(f)) => {
                let rp = meta_pos(r);
                let agree = f.pos == rp
                    && l.pos == rp
                    && f.hash == r.content_hash
                    && l.hash == r.content_hash;
                agree && s != Some(&SyncedItem::from_meta(r, Some(l.stamp)))
            }
            _ => false,
        };
        if needed {
            out.push(Op::Settle { key });
        }
    }
    out
}

fn local_ops(input: &PlanInput<'_>, m: &Merged<'_>) -> Vec<Op> {
    // Positions borrowed, not copied: a full plan holds one per entry.
    let before: BTreeMap<Key, &Pos> = m.local.iter().map(|(k, l)| (*k, &l.pos)).collect();
    let after: BTreeMap<Key, &Pos> = m.fin.iter().map(|(k, f)| (*k, &f.pos)).collect();
    let mut keys: BTreeSet<Key> = before.keys().copied().collect();
    keys.extend(after.keys().copied());
    let mut steps = Vec::new();
    for k in keys {
        if m.busy.contains(&k) {
            continue;
        }
        match (m.local.get(&k), m.fin.get(&k)) {
            (Some(_), None) if m.local_deletes.contains(&k) => steps.push((k, StepKind::Delete)),
            (None, Some(_)) if matches!(k, Key::Item(_)) => steps.push((k, StepKind::Create)),
            (Some(l), Some(f)) => {
                if l.pos != f.pos {
                    steps.push((k, StepKind::Move));
                }
                if !f.is_folder && l.hash != f.hash {
                    steps.push((k, StepKind::Update));
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for o in order(&before, &after, &steps) {
        let op = match o {
            Ordered::Temp(key, to) => Some(Op::LocalMove { key, to }),
            Ordered::Step(key, StepKind::Delete) => Some(Op::LocalDelete { key }),
            Ordered::Step(key, StepKind::Move) => Some(Op::LocalMove {
                key,
                to: after[&key].clone(),
            }),
            Ordered::Step(key, StepKind::Create) => {
                let f = &m.fin[&key];
                if f.is_folder {
                    Some(Op::LocalMkdir {
                        key,
                        pos: f.pos.clone(),
                    })
                } else {
                    download(input, key, f, false)
                }
            }
            Ordered::Step(key, StepKind::Update) => download(input, key, &m.fin[&key], true),
        };
        out.extend(op);
    }
    out
}

/// A download of the remote content of `key`, if the final content is the
/// remote one (it always is when the local side lacks it).
fn download(input: &PlanInput<'_>, key: Key, f: &FinalItem, replace: bool) -> Option<Op> {
    let Key::Item(id) = key else { return None };
    let r = input.state.remote.live(id)?;
    let hash = r.content_hash.filter(|h| Some(*h) == f.hash)?;
    let content = RemoteContent {
        hash,
        size: r.size,
        chunks: r.chunks.clone(),
    };
    Some(Op::Download {
        key,
        pos: f.pos.clone(),
        content,
        replace,
    })
}

fn remote_ops(input: &PlanInput<'_>, m: &Merged<'_>) -> Vec<Op> {
    let state = input.state;
    let remote_pos: Vec<(Key, Pos)> = state
        .remote
        .iter()
        .filter(|r| state.remote.live(r.id).is_some())
        .map(|r| (Key::Item(r.id), meta_pos(r)))
        .collect();
    let before: BTreeMap<Key, &Pos> = remote_pos.iter().map(|(k, p)| (*k, p)).collect();
    let after: BTreeMap<Key, &Pos> = m.fin.iter().map(|(k, f)| (*k, &f.pos)).collect();
    let mut keys: BTreeSet<Key> = before.keys().copied().collect();
    keys.extend(after.keys().copied());
    let mut steps = Vec::new();
    for k in keys {
        if m.busy.contains(&k) {
            continue;
        }
        let r = match k {
            Key::Item(id) => state.remote.live(id),
            Key::New(_) => None,
        };
        let synced = matches!(k, Key::Item(id) if state.synced.contains_key(&id));
        match (r, m.fin.get(&k)) {
            (Some(_), None) if synced => steps.push((k, StepKind::Delete)),
            (None, Some(_)) => steps.push((k, StepKind::Create)),
            (Some(r), Some(f))
                if meta_pos(r) != f.pos || (!f.is_folder && r.content_hash != f.hash) =>
            {
                steps.push((k, StepKind::Move));
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for o in order(&before, &after, &steps) {
        let op = match o {
            Ordered::Temp(key, pos) => {
                let is_folder = m.fin.get(&key).is_some_and(|f| f.is_folder);
                Op::Commit {
                    key,
                    change: RemoteChange::Put {
                        pos,
                        is_folder,
                        upload: false,
                    },
                }
            }
            Ordered::Step(key, StepKind::Delete) => Op::Commit {
                key,
                change: RemoteChange::Delete,
            },
            Ordered::Step(key, _) => {
                let f = &m.fin[&key];
                let remote_hash = match key {
                    Key::Item(id) => state.remote.live(id).and_then(|r| r.content_hash),
                    Key::New(_) => None,
                };
                let upload = !f.is_folder && (remote_hash != f.hash || remote_hash.is_none());
                Op::Commit {
                    key,
                    change: RemoteChange::Put {
                        pos: f.pos.clone(),
                        is_folder: f.is_folder,
                        upload,
                    },
                }
            }
        };
        out.push(op);
    }
    out
}
