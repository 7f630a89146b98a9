//! Bringing a scan up to date for the places the platform said changed,
//! instead of walking the whole folder: what a watcher event costs then
//! grows with the folders it names, not with the tree.
//!
//! A file the scan has that is still a file, and a path with nothing there
//! and no record, are looked at by themselves (`restat`): an edit costs a
//! stat, however large its folder. Every other changed path is an entry of
//! its parent folder, so the parent is listed again (one listing per
//! folder, however many of its entries changed): entries that appeared are taken as a full scan would take
//! them, entries that disappeared leave the tree with everything under
//! them. A folder that is new, changed kind, or was itself named as
//! changed is walked whole; other folders keep what the previous scan
//! found in them. A changed path whose folder the previous scan did not
//! know is reached through its nearest known ancestor.
//!
//! The result is what [`super::scan`] would find now, provided the
//! previous scan was complete and every change since is among the paths
//! given (a property test holds the two against each other). The ignore
//! rules are those of the previous scan: a change of the ignore file calls
//! for a full scan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::{Found, KnownHashes, Scan, list, take_entry, take_file, walk};
use crate::error::FsError;
use crate::io::{EntryKind, Fs};
use crate::path::RelPath;
use crate::tree::LocalEntry;

/// Updates `scan` (a complete earlier scan) for changes at the paths in
/// `changed`; see the module documentation. Returns every path whose entry
/// appeared, disappeared or changed (what a focused plan must look at).
pub async fn rescan(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    scan: &mut Scan,
    changed: &BTreeSet<RelPath>,
) -> Result<BTreeSet<RelPath>, FsError> {
    let mut moved = BTreeSet::new();
    scan.composed.clear();
    scan.hashed.clear();
    // Files looked at by themselves; the folders of the rest are listed.
    let mut named: BTreeSet<RelPath> = BTreeSet::new();
    for path in changed {
        if !restat(fs, cache, scan, path, &mut moved).await? {
            named.insert(path.clone());
        }
    }
    let mut relist: BTreeSet<RelPath> = named
        .iter()
        .map(|p| p.parent().unwrap_or_default())
        .collect();
    // Folders walked whole in this pass: nothing under them needs more.
    let mut walked: BTreeSet<RelPath> = BTreeSet::new();
    while let Some(dir) = relist.pop_first() {
        if walked.iter().any(|w| dir.starts_with(w)) {
            continue;
        }
        if let Some((anchor, missing)) = unknown_folder(scan, &dir) {
            // Reached from the nearest folder the scan knows; the first
            // unknown folder on the way is walked whole from there.
            named.insert(missing);
            relist.insert(anchor);
            continue;
        }
        relist_folder(fs, cache, scan, &dir, &named, &mut walked, &mut moved).await?;
    }
    Ok(moved)
}

/// Brings the entry at `path` up to date without listing its folder, in
/// the two cases where the answer cannot depend on its siblings: a file the
/// scan has, still a file (an edit, the common case, which in a folder of
/// thousands would otherwise cost a stat per sibling), and a path of which
/// the scan has no record and where nothing is (an editor's temporary,
/// already renamed away). Returns false for anything else (appeared,
/// went, changed kind, a folder, a name recorded as left out): its folder
/// is listed again, because a name's fate can depend on its siblings (see
/// `local_name.rs`).
async fn restat(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    scan: &mut Scan,
    path: &RelPath,
    moved: &mut BTreeSet<RelPath>,
) -> Result<bool, FsError> {
    let (Some(dir), Some(name)) = (path.parent(), path.name()) else {
        return Ok(false);
    };
    let dir_known = dir.is_root() || scan.tree.get(&dir).is_some_and(|e| e.is_folder);
    if !dir_known {
        return Ok(false);
    }
    let known = scan.tree.get(path).map(|e| e.is_folder);
    let recorded = || {
        scan.stale_temps.contains(path)
            || scan
                .skipped
                .iter()
                .any(|(d, n, _)| *d == dir && n == name.as_str())
    };
    match (known, fs.stat(path).await?) {
        (None, None) => Ok(!recorded()),
        (Some(false), Some(m)) if m.kind == EntryKind::File => {
            if scan.ignore.is_ignored(path, false) {
                return Ok(false);
            }
            let before = scan.tree.remove(path);
            take_file(fs, cache, path.clone(), m.stamp, scan).await?;
            if before.as_ref() != scan.tree.get(path) {
                moved.insert(path.clone());
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// If `dir` is not a folder of the scan: its nearest ancestor that is
/// (or the root), and the child of that ancestor on the way to `dir`.
fn unknown_folder(scan: &Scan, dir: &RelPath) -> Option<(RelPath, RelPath)> {
    let known = |p: &RelPath| p.is_root() || scan.tree.get(p).is_some_and(|e| e.is_folder);
    if known(dir) {
        return None;
    }
    let mut missing = dir.clone();
    loop {
        let parent = missing.parent().unwrap_or_default();
        if known(&parent) {
            return Some((parent, missing));
        }
        missing = parent;
    }
}

/// Lists `dir` again and updates its entries; see the module
/// documentation.
async fn relist_folder(
    fs: &dyn Fs,
    cache: &dyn KnownHashes,
    scan: &mut Scan,
    dir: &RelPath,
    named: &BTreeSet<RelPath>,
    walked: &mut BTreeSet<RelPath>,
    moved: &mut BTreeSet<RelPath>,
) -> Result<(), FsError> {
    let Some(entries) = list(fs, dir).await? else {
        // Gone: so is everything that was in it.
        forget_under(scan, dir, moved);
        if scan.tree.remove(dir).is_some() {
            moved.insert(dir.clone());
        }
        return Ok(());
    };
    // The previous entries of `dir` leave the tree (what is under them
    // stays for now); the listing puts back what is there.
    let before: BTreeMap<RelPath, LocalEntry> = children(scan, dir)
        .into_iter()
        .filter_map(|p| scan.tree.remove_entry(&p))
        .collect();
    scan.skipped.retain(|(parent, _, _)| parent != dir);
    scan.stale_temps
        .retain(|p| p.parent().unwrap_or_default() != *dir);
    let mut kept: BTreeSet<RelPath> = BTreeSet::new();
    for e in &entries {
        let Some(Found::Folder(path)) = take_entry(fs, cache, dir, e, &entries, scan).await? else {
            continue;
        };
        let unchanged =
            before.get(&path).is_some_and(|old| old.is_folder) && !named.contains(&path);
        if unchanged {
            kept.insert(path);
        } else {
            forget_under(scan, &path, moved);
            walk(fs, cache, path.clone(), scan).await?;
            moved.extend(under(scan, &path));
            walked.insert(path);
        }
    }
    for old in before.keys() {
        if !kept.contains(old) && !walked.contains(old) {
            forget_under(scan, old, moved);
        }
    }
    // The entries of `dir` that appeared, went or changed.
    let now = children(scan, dir);
    for p in &now {
        if before.get(p) != scan.tree.get(p) {
            moved.insert(p.clone());
        }
    }
    moved.extend(before.into_keys().filter(|p| !scan.tree.contains_key(p)));
    Ok(())
}

/// The paths of the scan's entries directly in `dir` (without walking
/// what is under them: relisting the root of a big tree stays cheap).
fn children(scan: &Scan, dir: &RelPath) -> Vec<RelPath> {
    crate::path::children_in(&scan.tree, dir)
        .map(|(p, _)| p.clone())
        .collect()
}

/// The paths of the scan's entries strictly under `dir` (a subtree is
/// contiguous in the tree's order).
fn under<'a>(scan: &'a Scan, dir: &'a RelPath) -> impl Iterator<Item = RelPath> + 'a {
    scan.tree
        .range::<RelPath, _>((Bound::Excluded(dir), Bound::Unbounded))
        .map(|(p, _)| p)
        .take_while(move |p| p.starts_with(dir))
        .cloned()
}

/// Removes everything the scan recorded strictly under `dir`, noting it in
/// `moved`.
fn forget_under(scan: &mut Scan, dir: &RelPath, moved: &mut BTreeSet<RelPath>) {
    let gone: Vec<RelPath> = under(scan, dir).collect();
    for p in gone {
        scan.tree.remove(&p);
        moved.insert(p);
    }
    scan.skipped
        .retain(|(parent, _, _)| !parent.starts_with(dir));
    scan.stale_temps.retain(|p| !p.starts_with(dir) || p == dir);
}
