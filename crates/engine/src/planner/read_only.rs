//! Read-only mode ([`super::PlanInput::read_only`]): this device may not
//! write to the workspace (its user is a read-only member of a shared
//! folder, and the server refuses every write of theirs). The planner then
//! never proposes a commit, and keeps what the user changes on this device
//! instead:
//!
//! * a known file edited locally: its bytes are moved aside into a
//!   conflicted copy next to it (the usual [`super::Op::ConflictCopy`]) and
//!   the server's version is put back in its place;
//! * a known item deleted locally: the server's version is downloaded
//!   again;
//! * a known item moved or renamed locally: both of the above, so both
//!   exist: what is at the new place is local-only, and the item is
//!   downloaded again at the server's place;
//! * **local-only** entries (created locally, conflicted copies, an item
//!   edited here that the server deleted): left where they are, neither
//!   uploaded nor deleted, and reported as per-file errors ([`REASON`]),
//!   only the topmost of a local-only folder;
//! * remote changes apply as usual (a concurrent local edit is kept in a
//!   conflicted copy, as ever).
//!
//! Nothing local is lost: every byte stays on disk, in place or in a
//! conflicted copy. The server is never relied on to stop a write.
//!
//! How, in each step of the planner: claims are made by path only
//! ([`claims_by_identity`]), so an entry is a known item only where the
//! server or the last agreement has it, and a local move is a local-only
//! entry plus a missing item; the merge makes every live remote item's final
//! state the server's ([`known_item`]); after the fix-ups, what the final
//! tree holds that the server does not is local-only ([`keep_local_only`]);
//! and no remote operation is derived ([`may_commit`]).

use std::collections::BTreeSet;

use stacksync_proto::ItemMeta;

use super::claim::{Claims, LocalItem};
use super::merge::Merged;
use super::{Key, PlanInput, path_in};
use crate::tree::SyncedItem;

/// Why a local-only entry is not uploaded.
pub const REASON: &str =
    "this shared folder is read-only for you: kept on this device, not uploaded";

/// Whether a local entry may be claimed by identity (file id, content) as
/// well as by path. Not in read-only mode: there a renamed entry must not
/// carry its item along (the server keeps the item where it is).
pub(crate) fn claims_by_identity(input: &PlanInput<'_>) -> bool {
    !input.read_only
}

/// Whether the plan may change the server. Never in read-only mode: the
/// merge leaves nothing to commit for the server's items, and local-only
/// entries stay local.
pub(crate) fn may_commit(input: &PlanInput<'_>) -> bool {
    !input.read_only
}

/// In read-only mode, for an item synced and live on the server (`s`, `r`)
/// with local entry `l`: whether the local bytes must be kept in a
/// conflicted copy (they were edited here, and the server does not have
/// them). Whatever the answer, the item's final state is the server's
/// (place and content).
pub(crate) fn known_item(s: &SyncedItem, r: &ItemMeta, l: &LocalItem) -> bool {
    !r.is_folder && l.hash != s.content_hash && l.hash != r.content_hash
}

/// In read-only mode, after the fix-ups: every entry of the final tree the
/// server does not have is local-only. It keeps its place (no remote
/// operation is planned for it), its synced record is forgotten (the
/// server's item is gone, and the entry is now the user's alone), and it is
/// reported where it is now, the topmost of a local-only folder only. A
/// conflicted copy, or an entry the plan moves, is reported from where it
/// is on disk next round.
pub(crate) fn keep_local_only(input: &PlanInput<'_>, claims: &Claims, m: &mut Merged<'_>) {
    let state = input.state;
    let local_only: BTreeSet<Key> = m
        .fin
        .keys()
        .filter(|k| !m.busy.contains(k))
        .filter(|k| match k {
            Key::Item(id) => state.remote.live(*id).is_none(),
            Key::New(_) => true,
        })
        .copied()
        .collect();
    for key in &local_only {
        if let Key::Item(id) = key
            && state.synced.contains_key(id)
        {
            m.untrack.insert(*key);
        }
        let Some(l) = claims.local.get(key) else {
            continue;
        };
        let stays = m.fin.get(key).is_some_and(|f| f.pos == l.pos);
        let topmost = l.pos.parent.is_none_or(|p| !local_only.contains(&p));
        if stays
            && topmost
            && let Some(path) = path_in(&claims.local, *key)
        {
            m.clashes.push((path, REASON.to_string()));
        }
    }
}
