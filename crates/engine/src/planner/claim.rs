//! Step 1 of planning: give every local path a key.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use stacksync_proto::{ContentHash, ItemId};

use super::{Key, PlanInput, Pos, read_only};
use crate::path::RelPath;
use crate::tree::{LocalEntry, Stamp};

/// A local entry as the planner sees it: keyed, positioned by parent key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalItem {
    /// Where it is on disk, by parent key.
    pub pos: Pos,
    /// Folder or file.
    pub is_folder: bool,
    /// `None` for folders and for files that could not be read stably.
    pub hash: Option<ContentHash>,
    /// Size, mtime and file id when scanned (or after the engine's own
    /// change): a delete or overwrite only happens if it still matches.
    pub stamp: Stamp,
}

/// The outcome of claiming.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    pub local: BTreeMap<Key, LocalItem>,
    /// Local items whose change must not reach the server: new items whose
    /// name (or a parent's) was refused, and known items whose change was
    /// refused (left alone, like a file being written).
    pub refused: BTreeSet<Key>,
    /// The next unused [`Key::New`] number.
    pub next_new: u32,
}

/// Matches local paths to items, in decreasing order of evidence:
/// 1. the file id recorded at the last agreement (survives renames);
/// 2. the synced path (same place, same kind);
/// 3. the remote path (both sides created the same thing, or a local move
///    of the remote change already happened before a crash);
/// 4. for files, the synced content hash (a move on a platform without
///    file ids).
///
/// Whatever is left is a new item. Candidates are visited in id and path
/// order so the result is deterministic. In read-only mode only the paths
/// claim (2 and 3, see [`super::read_only`]).
pub(crate) fn claim(input: &PlanInput<'_>) -> Claims {
    let state = input.state;
    let local = input.local;
    let by_identity = read_only::claims_by_identity(input);
    // Paths are borrowed from the local tree (every claimed path is one of
    // its entries): a full plan clones none of them.
    let mut by_path: BTreeMap<&RelPath, Key> = BTreeMap::new();
    let mut claimed: BTreeSet<ItemId> = BTreeSet::new();

    // The local tree's own copy of `path` if it holds an entry of this kind
    // there.
    let entry_of = |path: &RelPath, is_folder: bool| {
        local
            .get_key_value(path)
            .filter(|(_, e)| e.is_folder == is_folder)
            .map(|(p, _)| p)
    };

    // 1. File ids, when unique on both sides. File systems reuse inode
    // numbers, so a file only counts as the same one if its content (or
    // size and mtime) is unchanged too; a file both moved and edited is
    // then a delete plus a new file, which loses nothing.
    let same_file = |e: &LocalEntry, s: &crate::tree::SyncedItem, st: &Stamp| {
        s.is_folder
            || e.hash == s.content_hash
            || (e.stamp.size == st.size && e.stamp.mtime == st.mtime)
    };
    // The one path with each file id (`None`: more than one); none when
    // entries are claimed by path only (read-only mode).
    let mut by_file_id: HashMap<u64, Option<&RelPath>> = HashMap::new();
    for (path, e) in local.iter().filter(|_| by_identity) {
        if let Some(f) = e.stamp.file_id {
            by_file_id
                .entry(f)
                .and_modify(|p| *p = None)
                .or_insert(Some(path));
        }
    }
    for (id, s) in &state.synced {
        let Some((f, st)) = s.stamp.and_then(|st| st.file_id.map(|f| (f, st))) else {
            continue;
        };
        if let Some(Some(path)) = by_file_id.get(&f).copied()
            && !by_path.contains_key(path)
            && entry_of(path, s.is_folder).is_some()
            && same_file(&local[path], s, &st)
        {
            by_path.insert(path, Key::Item(*id));
            claimed.insert(*id);
        }
    }

    // 2. Synced paths.
    for (id, s) in &state.synced {
        if claimed.contains(id) {
            continue;
        }
        if let Some(path) = state.synced_path(*id)
            && let Some(path) = entry_of(&path, s.is_folder)
            && !by_path.contains_key(path)
        {
            by_path.insert(path, Key::Item(*id));
            claimed.insert(*id);
        }
    }

    // 3. Remote paths.
    for meta in state.remote.iter() {
        if claimed.contains(&meta.id) {
            continue;
        }
        if let Some(path) = state.remote.path_of(meta.id)
            && let Some(path) = entry_of(&path, meta.is_folder)
            && !by_path.contains_key(path)
        {
            by_path.insert(path, Key::Item(meta.id));
            claimed.insert(meta.id);
        }
    }

    // 4. Content hashes of synced files.
    // Files by content, in path order within each hash (sorted pairs: a
    // list per hash would cost an allocation per file); none when entries
    // are claimed by path only.
    let mut by_hash: Vec<(ContentHash, &RelPath)> = local
        .iter()
        .filter(|(_, e)| by_identity && !e.is_folder)
        .filter_map(|(path, e)| e.hash.map(|h| (h, path)))
        .collect();
    by_hash.sort_unstable();
    for (id, s) in state.synced.iter().filter(|_| by_identity) {
        if claimed.contains(id) || s.is_folder {
            continue;
        }
        // A file this device now ignores keeps its item: it is not the
        // source of a move to some other file with the same content.
        if state
            .synced_path(*id)
            .is_some_and(|p| input.ignore.is_ignored_path(&p, false))
        {
            continue;
        }
        let Some(h) = s.content_hash else { continue };
        let from = by_hash.partition_point(|(k, _)| *k < h);
        let same = by_hash[from..].iter().take_while(|(k, _)| *k == h);
        if let Some((_, path)) = same.clone().find(|(_, p)| !by_path.contains_key(*p)) {
            by_path.insert(path, Key::Item(*id));
            claimed.insert(*id);
        }
    }

    // The rest are new, numbered in path order (parents first).
    let mut claims = Claims::default();
    for path in local.keys() {
        if !by_path.contains_key(path) {
            by_path.insert(path, Key::New(claims.next_new));
            claims.next_new += 1;
        }
    }

    // Gathered, then built in bulk (inserted in path order, the map by key
    // would be left with partly empty nodes).
    let mut items = Vec::with_capacity(by_path.len());
    for (&path, key) in &by_path {
        let entry: &LocalEntry = &local[path];
        let parent = path
            .parent()
            .filter(|p| !p.is_root())
            .and_then(|p| by_path.get(&p).copied());
        let Some(name) = path.name() else { continue };
        let refused = match key {
            Key::New(_) => {
                state.refused.contains_key(path)
                    || parent.is_some_and(|p| claims.refused.contains(&p))
            }
            // A change to a known item that the server refused (a rename to
            // a refused name, an edit over quota): left alone until the
            // refusal is dropped.
            Key::Item(_) => state.refused.contains_key(path),
        };
        if refused {
            claims.refused.insert(*key);
        }
        items.push((
            *key,
            LocalItem {
                pos: Pos {
                    parent,
                    name: name.clone(),
                },
                is_folder: entry.is_folder,
                hash: if entry.is_folder { None } else { entry.hash },
                stamp: entry.stamp,
            },
        ));
    }
    claims.local = items.into_iter().collect();
    claims
}
