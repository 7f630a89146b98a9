//! Items this device leaves out of sync, in both directions: paths its
//! ignore rules cover, names StackSync reserves for itself, and places
//! where the disk holds something that is never synced (a symbolic link, a
//! special file, an ignored entry).
//!
//! The rule: leaving an item out never deletes it, on either side. The
//! local entry stays as it is, the server's item stays (and stays on other
//! devices), and nothing is downloaded here. Ignoring is "stop syncing",
//! as in gitignore, never "delete".

use stacksync_proto::{ItemId, ItemMeta};

use super::claim::LocalItem;
use super::{PlanInput, path_in};
use crate::ignore::{MOVE_TEMP_PREFIX, is_reserved_name};
use crate::path::RelPath;
use crate::planner::Key;

/// How an item is left out of this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeftOut {
    /// Forget the synced record: the item has no local entry this device
    /// syncs. If the entry comes back into sync later (the rule removed,
    /// the link replaced by a folder), it is matched to the server's item
    /// by path like a first sync: equal content settles, different content
    /// is a conflicted copy, and nothing is deleted because it was once
    /// left out.
    pub untrack: bool,
    /// A per-file error to report for this item (local path, reason), once
    /// per clash: only the topmost item of a clashing folder has one.
    pub report: Option<(RelPath, String)>,
}

/// Why an item is left out, if it is. `l` is its local entry (which the
/// scan found syncable).
pub(crate) fn left_out(
    input: &PlanInput<'_>,
    local: &std::collections::BTreeMap<Key, LocalItem>,
    id: ItemId,
    l: Option<&LocalItem>,
) -> Option<LeftOut> {
    let state = input.state;
    let synced = state.synced.get(&id);
    let remote = state.remote.live(id);
    let remote_path = remote.and_then(|_| state.remote.path_of(id));
    // What the device does with an item it cannot place: a local entry is
    // kept where it is (the synced record too, so that a later rename on
    // the server back to a usable name is an ordinary move); an item with
    // no syncable local entry stops being tracked, so nothing is deleted.
    let leave = |report: Option<(RelPath, String)>| LeftOut {
        untrack: l.is_none() && synced.is_some(),
        report,
    };
    let here = |rp: &RelPath| match l {
        Some(_) => path_in(local, Key::Item(id)).unwrap_or_else(|| rp.clone()),
        None => rp.clone(),
    };

    if let (Some(r), Some(rp)) = (remote, &remote_path) {
        // 1. A reserved name on the server (its own, or a folder's above).
        if let Some(at) = reserved_component(state, r) {
            let report = (at == r.id).then(|| {
                let reason = match l {
                    Some(_) if rp != &here(rp) => format!(
                        "renamed on the server to `{rp}`, a name StackSync reserves for itself; \
                         kept here under its old name, not synced"
                    ),
                    _ => format!(
                        "`{rp}` is a name StackSync reserves for itself; \
                         the server's item is not synced to this device"
                    ),
                };
                (here(rp), reason)
            });
            return Some(leave(report));
        }
    }
    if l.is_none() {
        // 2. The ignore rules cover the item, where the server has it or
        // where this device last had it.
        let ignored_remote = match (remote, &remote_path) {
            (Some(r), Some(rp)) => input.ignore.is_ignored_path(rp, r.is_folder),
            _ => false,
        };
        let ignored_synced = synced.is_some_and(|s| {
            state
                .synced_path(id)
                .is_some_and(|p| input.ignore.is_ignored_path(&p, s.is_folder))
        });
        if ignored_remote || ignored_synced {
            return Some(leave(None));
        }
        // The user moved the synced file to a path that is not synced (an
        // ignored or reserved name): this device stops syncing it, but
        // keeps the record while the file is there, so that the server's
        // item is neither deleted nor downloaded again next to it.
        let moved_out = synced.and_then(|s| s.stamp).is_some_and(|st| {
            st.file_id.is_some()
                && input.unsynced.values().any(|u| {
                    u.is_some_and(|u| {
                        u.file_id == st.file_id && u.size == st.size && u.mtime == st.mtime
                    })
                })
        });
        if moved_out {
            return Some(LeftOut {
                untrack: false,
                report: None,
            });
        }
    }
    if let (Some(r), Some(rp)) = (remote, &remote_path) {
        // 3. Where the server has the item, this device has something it
        // never syncs (the scan left it out): downloading or moving the
        // item there would fail on every attempt, and a synced item
        // replaced by such an entry is not deleted either.
        if let Some(hit) = rp
            .ancestors_and_self()
            .find(|p| input.unsynced.contains_key(p))
        {
            let report = (&hit == rp).then(|| {
                let kind = if r.is_folder { "folder" } else { "file" };
                let reason = match l {
                    Some(_) => format!(
                        "moved on the server to `{rp}`, where this device has an entry that is \
                         not synced (a symbolic link, special or ignored file); kept here, not synced"
                    ),
                    None => format!(
                        "the server has a {kind} here, but this device has an entry that is not \
                         synced (a symbolic link, special or ignored file); left as it is"
                    ),
                };
                (here(rp), reason)
            });
            return Some(leave(report));
        }
    }
    None
}

/// The item (`r` or a folder above it) whose name on the server is
/// reserved, if any. The move temporary named after an item's own id is
/// not a clash: it is the name a device gives the item in the middle of a
/// swap, and must come back as the item it is.
fn reserved_component(state: &crate::tree::SyncState, r: &ItemMeta) -> Option<ItemId> {
    let mut cur = Some(r);
    // `r` is live, so its chain of parents ends at the root (no cycle).
    while let Some(m) = cur {
        let own_temp = m.name.as_str() == format!("{MOVE_TEMP_PREFIX}{}", m.id);
        if !own_temp && is_reserved_name(&m.name, m.is_folder) {
            return Some(m.id);
        }
        cur = m.parent.and_then(|p| state.remote.latest(p));
    }
    None
}
