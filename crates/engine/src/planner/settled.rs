//! Where the trees may not be settled: the focus of a plan made after a
//! full scan, when nothing says where the changes are (a start, the
//! periodic rescan, a round after a failure).
//!
//! An item is *settled* when its three records agree exactly as a full
//! plan leaves them: the synced record is the remote one as of the local
//! stamp (same version, place, kind, content and size), the item is live,
//! and the local entry at its synced path has that kind, stamp and
//! content. For such an item a full plan has nothing to do: no side
//! changed (so no transfer, move or delete) and its record is current (so
//! no settle). Everything else is named: the items that are not settled
//! with their synced paths, live remote items without a synced record,
//! pending proposals, and every local path no settled item holds, every
//! refused path and every path holding something unsynced. Under that
//! focus, [`super::plan_focused`] equals [`super::plan`] (held by
//! `tests/focus.rs`), at a cost that grows with what changed plus one
//! pass over the trees, instead of a full plan's maps of every item.

use std::collections::HashMap;

use super::{Focus, PlanInput};
use crate::path::RelPath;
use crate::tree::SyncedItem;

/// The focus that covers everything in `input` that is not settled (see
/// the module documentation).
pub fn unsettled(input: &PlanInput<'_>) -> Focus {
    let state = input.state;
    let mut focus = Focus::default();
    // The local entries settled items hold, borrowed from the local tree.
    let mut held: HashMap<&RelPath, stacksync_proto::ItemId> =
        HashMap::with_capacity(state.synced.len());
    for (id, s) in state.synced.iter() {
        let path = state.synced_path(*id);
        let here = path.as_ref().and_then(|p| input.local.get_key_value(p));
        let settled = match (here, state.remote.live(*id)) {
            (Some((_, l)), Some(r)) => {
                l.is_folder == s.is_folder
                    && (s.is_folder || l.hash == s.content_hash)
                    && *s == SyncedItem::from_meta(r, Some(l.stamp))
            }
            _ => false,
        };
        if settled && let Some((p, _)) = here {
            match held.insert(p, *id) {
                None => continue,
                // Two records at one path: neither is settled.
                Some(other) => {
                    focus.ids.insert(other);
                }
            }
        }
        focus.ids.insert(*id);
        if let Some(p) = path {
            focus.paths.insert(p);
        }
    }
    for r in state.remote.iter() {
        if !state.synced.contains_key(&r.id) && state.remote.live(r.id).is_some() {
            focus.ids.insert(r.id);
        }
    }
    focus.ids.extend(state.pending.keys().copied());
    for (p, _) in input.local.iter() {
        let settled = held.get(p).is_some_and(|id| !focus.ids.contains(id));
        if !settled {
            focus.paths.insert(p.clone());
        }
    }
    focus.paths.extend(state.refused.keys().cloned());
    focus.paths.extend(input.unsynced.keys().cloned());
    focus
}
