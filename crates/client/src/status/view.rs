//! The engine's state reduced to what a status query needs
//! ([`StatusView`]): what the daemon keeps for its status socket instead of
//! a copy of the whole state.

use std::collections::{BTreeMap, HashMap, HashSet};

use stacksync_engine::{RelPath, Stamp, SyncState};
use stacksync_proto::{ItemId, ItemMeta, ItemName};

/// The engine's state reduced to what a status needs, built by
/// [`StatusView::of`] and never changed: per synced item a name (shared
/// with the state, not copied), an id, the stamp it was agreed at and
/// whether the server's live item sits at the same place, indexed by
/// containing folder; the server's live items that sit elsewhere (few,
/// in a settled tree) on their own. No paths, chunk lists or hashes, so it
/// takes a fraction of the state's memory, and every question costs the
/// depth of a path or the size of one folder, never the size of the tree.
///
/// Every answer is the one the state gives: a path names the synced item
/// [`SyncState::synced_path`] gives it, a live remote item is one
/// [`RemoteTree::live`](stacksync_engine::RemoteTree::live) returns.
#[derive(Debug, Default)]
pub struct StatusView {
    /// Synced items with a synced path (every ancestor synced), by
    /// containing folder (`None`: the root); each folder's sorted by name,
    /// then id.
    synced: HashMap<Option<ItemId>, Box<[SyncedEntry]>>,
    /// The live remote items that are not in `synced` at the same place
    /// (same folder, same name), by containing folder: with the entries of
    /// `synced` marked [`SyncedEntry::remote`], every live remote item.
    remote: HashMap<Option<ItemId>, Box<[RemoteEntry]>>,
    /// Why the server refused a path (few: kept whole).
    refused: BTreeMap<RelPath, String>,
}

/// A synced item in [`StatusView`].
#[derive(Debug)]
struct SyncedEntry {
    name: ItemName,
    id: ItemId,
    /// The stamp a file on disk must have to be what both sides agree on:
    /// the synced stamp of a file whose live remote version is the synced
    /// one; `None` otherwise (nothing on disk agrees).
    agreed: Option<Stamp>,
    /// `Some(is a folder)` when the item's live remote version sits here
    /// too (same folder, same name): it is then one of the folder's remote
    /// items, not listed again in [`StatusView::remote`].
    remote: Option<bool>,
}

/// A live remote item in [`StatusView`].
#[derive(Debug)]
struct RemoteEntry {
    name: ItemName,
    id: ItemId,
    is_folder: bool,
}

impl StatusView {
    /// The view of `state`.
    pub fn of(state: &SyncState) -> StatusView {
        let live = LiveParents::of(state);
        let mut synced: HashMap<Option<ItemId>, Vec<SyncedEntry>> = HashMap::new();
        // Both trees iterate by id: the remote record of a synced item is
        // met walking them side by side (no search per item).
        let mut remote_items = state.remote.iter().peekable();
        for (id, s) in state.synced.iter() {
            while remote_items.next_if(|m| m.id < *id).is_some() {}
            let agreed = !s.is_folder
                && remote_items
                    .peek()
                    .is_some_and(|m| m.id == *id && m.version == s.version && live.is_live(m));
            synced.entry(s.parent).or_default().push(SyncedEntry {
                name: s.name.clone(),
                id: *id,
                agreed: if agreed { s.stamp } else { None },
                remote: None,
            });
        }
        for children in synced.values_mut() {
            children.sort_unstable_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
        }
        let (mut synced, _) = reached_from_root(synced, |e| e.id);
        let mut remote: HashMap<Option<ItemId>, Vec<RemoteEntry>> = HashMap::new();
        for m in state.remote.iter().filter(|m| live.is_live(m)) {
            let here = synced.get_mut(&m.parent).and_then(|children| {
                let at = children
                    .binary_search_by(|c| (&c.name, c.id).cmp(&(&m.name, m.id)))
                    .ok()?;
                Some(&mut children[at])
            });
            match here {
                Some(entry) => entry.remote = Some(m.is_folder),
                None => remote.entry(m.parent).or_default().push(RemoteEntry {
                    name: m.name.clone(),
                    id: m.id,
                    is_folder: m.is_folder,
                }),
            }
        }
        StatusView {
            synced,
            remote: remote
                .into_iter()
                .map(|(parent, children)| (parent, children.into_boxed_slice()))
                .collect(),
            refused: state
                .refused
                .iter()
                .map(|(path, r)| (path.clone(), r.reason.clone()))
                .collect(),
        }
    }

    /// Whether a file on disk at `path` whose stamp is `stamp` holds what
    /// was last agreed with the server, and the server has nothing newer:
    /// the synced item there is a file synced at that stamp, and its live
    /// remote version is the synced one.
    pub fn agrees(&self, path: &RelPath, stamp: Stamp) -> bool {
        self.synced_at(path)
            .is_some_and(|e| e.agreed == Some(stamp))
    }

    /// Whether a synced item (file or folder) has this path.
    pub fn is_synced(&self, path: &RelPath) -> bool {
        self.synced_at(path).is_some()
    }

    /// The live remote items (name, is a folder) in the synced item at
    /// `folder`, or at the root, in id order; `None` when no synced item
    /// has that path (the server's items there are not known by path).
    pub fn remote_children(&self, folder: &RelPath) -> Option<Vec<(&ItemName, bool)>> {
        let parent = if folder.is_root() {
            None
        } else {
            Some(self.synced_at(folder)?.id)
        };
        let mut children: Vec<Remote<'_>> = self.remote_in(parent).collect();
        children.sort_unstable_by_key(|c| c.id);
        Some(
            children
                .into_iter()
                .map(|c| (c.name, c.is_folder))
                .collect(),
        )
    }

    /// Whether a live remote item has this path: `Some(is a folder)` for
    /// the first in id order (as a search of the remote tree finds it).
    pub fn on_server(&self, path: &RelPath) -> Option<bool> {
        self.remote_at(None, path.components()).map(|e| e.is_folder)
    }

    /// The id of the item at `path` (never the root): the live remote
    /// item there, else the synced one (an item whose latest version is
    /// being synced still has its id).
    pub fn item_id(&self, path: &RelPath) -> Option<ItemId> {
        self.remote_at(None, path.components())
            .map(|e| e.id)
            .or_else(|| self.synced_at(path).map(|e| e.id))
    }

    /// Why the server refused `path`, if it did.
    pub fn refusal(&self, path: &RelPath) -> Option<&str> {
        self.refused.get(path).map(String::as_str)
    }

    /// The synced item at `path` (never the root).
    fn synced_at(&self, path: &RelPath) -> Option<&SyncedEntry> {
        self.synced_under(None, path.components())
    }

    /// The synced item at `names` below the item `parent`. Two items at
    /// one path are never made by the engine; should there be some, the
    /// greatest id answers, as in a map from path to id collected in id
    /// order, so every item with the path is looked at.
    fn synced_under(&self, parent: Option<ItemId>, names: &[ItemName]) -> Option<&SyncedEntry> {
        let (name, rest) = names.split_first()?;
        let name = name.as_str();
        let children = self.synced.get(&parent)?;
        let from = children.partition_point(|c| c.name.as_str() < name);
        children[from..]
            .iter()
            .take_while(|c| c.name.as_str() == name)
            .filter_map(|c| {
                if rest.is_empty() {
                    Some(c)
                } else {
                    self.synced_under(Some(c.id), rest)
                }
            })
            .max_by_key(|c| c.id)
    }

    /// The live remote item at `names` below the item `parent`; of
    /// several, the least id.
    fn remote_at(&self, parent: Option<ItemId>, names: &[ItemName]) -> Option<Remote<'_>> {
        let (name, rest) = names.split_first()?;
        self.remote_in(parent)
            .filter(|c| c.name == name)
            .filter_map(|c| {
                if rest.is_empty() {
                    Some(c)
                } else {
                    self.remote_at(Some(c.id), rest)
                }
            })
            .min_by_key(|c| c.id)
    }

    /// The live remote items in the item `parent`, in no particular order.
    fn remote_in(&self, parent: Option<ItemId>) -> impl Iterator<Item = Remote<'_>> {
        let synced = self.synced.get(&parent).map_or(&[][..], |c| &c[..]);
        let others = self.remote.get(&parent).map_or(&[][..], |c| &c[..]);
        let here = synced.iter().filter_map(|e| {
            e.remote.map(|is_folder| Remote {
                name: &e.name,
                id: e.id,
                is_folder,
            })
        });
        here.chain(others.iter().map(|e| Remote {
            name: &e.name,
            id: e.id,
            is_folder: e.is_folder,
        }))
    }
}

/// A live remote item as the queries see it, wherever the view keeps it.
#[derive(Clone, Copy)]
struct Remote<'a> {
    name: &'a ItemName,
    id: ItemId,
    is_folder: bool,
}

/// Which remote items are live ([`RemoteTree::live`]): the item and every
/// ancestor known and live, with no cycle. Decided once per item that is
/// some item's parent (a folder, in any sane tree), so that deciding it for
/// every item costs one set lookup each.
///
/// [`RemoteTree::live`]: stacksync_engine::RemoteTree::live
struct LiveParents {
    live: HashSet<ItemId>,
}

impl LiveParents {
    fn of(state: &SyncState) -> LiveParents {
        let parents: HashSet<ItemId> = state.remote.iter().filter_map(|m| m.parent).collect();
        let live = parents
            .into_iter()
            .filter(|p| state.remote.live(*p).is_some())
            .collect();
        LiveParents { live }
    }

    /// Whether `m` (an item of the state's remote tree) is live.
    fn is_live(&self, m: &ItemMeta) -> bool {
        m.status.is_live() && m.parent.is_none_or(|p| self.live.contains(&p))
    }
}

/// The folders of `by_parent` that are reached from the root through its
/// entries, each folder's entries at their exact length; then the entries
/// not reached, whose parent is unknown or in a cycle (they have no path).
fn reached_from_root<T>(
    mut by_parent: HashMap<Option<ItemId>, Vec<T>>,
    id: impl Fn(&T) -> ItemId,
) -> (HashMap<Option<ItemId>, Box<[T]>>, impl Iterator<Item = T>) {
    let mut reached = HashMap::with_capacity(by_parent.len());
    let mut todo = vec![None];
    while let Some(parent) = todo.pop() {
        if let Some(children) = by_parent.remove(&parent) {
            todo.extend(
                children
                    .iter()
                    .map(|c| Some(id(c)))
                    .filter(|k| by_parent.contains_key(k)),
            );
            reached.insert(parent, children.into_boxed_slice());
        }
    }
    reached.shrink_to_fit();
    (reached, by_parent.into_values().flatten())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use stacksync_engine::SyncedItem;
    use stacksync_engine::tree::Refusal;
    use stacksync_proto::{DeviceId, ItemMeta, ItemStatus, Millis, WorkspaceId};
    use uuid::Uuid;

    use super::*;

    fn id(n: u64) -> ItemId {
        ItemId(Uuid::from_u64_pair(0, n))
    }

    fn stamp(n: u64) -> Stamp {
        Stamp {
            size: n,
            mtime: n as Millis,
            file_id: Some(n),
        }
    }

    fn path(text: &str) -> RelPath {
        RelPath::parse(text).expect("test paths are valid")
    }

    /// A remote item: `(id, parent, name, is_folder, version, live)`.
    type Remote<'a> = (u64, Option<u64>, &'a str, bool, u64, bool);
    /// A synced item: `(id, parent, name, is_folder, version, stamp)`.
    type Synced<'a> = (u64, Option<u64>, &'a str, bool, u64, Option<u64>);

    fn state(remote: &[Remote], synced: &[Synced], refused: &[(&str, &str)]) -> SyncState {
        let mut state = SyncState::default();
        for &(n, parent, name, is_folder, version, live) in remote {
            state.remote.apply(ItemMeta {
                id: id(n),
                workspace: WorkspaceId(Uuid::from_u64_pair(1, 0)),
                parent: parent.map(id),
                name: ItemName::new(name).expect("test names are valid"),
                is_folder,
                mimetype: None,
                status: if live {
                    ItemStatus::Changed
                } else {
                    ItemStatus::Deleted
                },
                version,
                content_hash: None,
                size: 0,
                client_modified: 0,
                server_modified: 0,
                device: DeviceId(Uuid::from_u64_pair(2, 0)),
                revision: version,
                chunks: Vec::new(),
                record: None,
            });
        }
        for &(n, parent, name, is_folder, version, at) in synced {
            state.synced.insert(
                id(n),
                SyncedItem {
                    parent: parent.map(id),
                    name: ItemName::new(name).expect("test names are valid"),
                    is_folder,
                    version,
                    content_hash: None,
                    size: 0,
                    stamp: at.map(stamp),
                },
            );
        }
        for &(at, reason) in refused {
            state.refused.insert(
                path(at),
                Refusal {
                    reason: reason.into(),
                    stamp: None,
                    clash: false,
                },
            );
        }
        state
    }

    // The straightforward definitions, from the state itself: what the
    // view must answer.

    fn synced_paths(state: &SyncState) -> BTreeMap<RelPath, ItemId> {
        state
            .synced
            .keys()
            .filter_map(|id| state.synced_path(*id).map(|p| (p, *id)))
            .collect()
    }

    fn agrees(state: &SyncState, at: &RelPath, disk: Stamp) -> bool {
        let agreed = synced_paths(state).get(at).and_then(|id| {
            let s = state.synced.get(id)?;
            let remote = state.remote.live(*id)?;
            Some(!s.is_folder && s.stamp == Some(disk) && remote.version == s.version)
        });
        agreed == Some(true)
    }

    fn remote_children(state: &SyncState, folder: &RelPath) -> Option<Vec<(String, bool)>> {
        let parent = if folder.is_root() {
            None
        } else {
            Some(*synced_paths(state).get(folder)?)
        };
        Some(
            state
                .remote
                .iter()
                .filter(|m| m.parent == parent && state.remote.live(m.id).is_some())
                .map(|m| (m.name.as_str().to_owned(), m.is_folder))
                .collect(),
        )
    }

    fn on_server(state: &SyncState, at: &RelPath) -> Option<bool> {
        state
            .remote
            .iter()
            .find(|m| state.remote.path_of(m.id).as_ref() == Some(at))
            .map(|m| m.is_folder)
    }

    /// Checks the view of `state` against the definitions on every path
    /// made of `names` up to depth 3 and every path the state knows (and
    /// their children), with every stamp the state holds and one more.
    fn check_against_definitions(state: &SyncState, names: &[&str]) {
        let view = StatusView::of(state);
        let mut paths: BTreeSet<RelPath> = BTreeSet::from([RelPath::root()]);
        let mut known: Vec<RelPath> = state.refused.keys().cloned().collect();
        known.extend(state.synced.keys().filter_map(|i| state.synced_path(*i)));
        known.extend(
            state
                .remote
                .iter()
                .filter_map(|m| state.remote.path_of(m.id)),
        );
        known.extend(
            state
                .remote
                .iter()
                .filter_map(|m| state.remote.path_including_deleted(m.id)),
        );
        for p in known {
            paths.extend(p.ancestors_and_self());
        }
        for _ in 0..3 {
            let deeper: Vec<RelPath> = paths
                .iter()
                .flat_map(|p| names.iter().map(|n| p.join(&ItemName::new(*n).unwrap())))
                .collect();
            paths.extend(deeper);
        }
        let mut stamps: Vec<Stamp> = state.synced.values().filter_map(|s| s.stamp).collect();
        stamps.push(stamp(u64::MAX));
        for p in &paths {
            for &s in &stamps {
                assert_eq!(
                    view.agrees(p, s),
                    agrees(state, p, s),
                    "agrees {p} at {s:?}"
                );
            }
            assert_eq!(
                view.is_synced(p),
                synced_paths(state).contains_key(p),
                "is_synced {p}"
            );
            let children = view.remote_children(p).map(|c| {
                c.into_iter()
                    .map(|(n, f)| (n.as_str().to_owned(), f))
                    .collect()
            });
            assert_eq!(children, remote_children(state, p), "remote_children {p}");
            assert_eq!(view.on_server(p), on_server(state, p), "on_server {p}");
            assert_eq!(
                view.refusal(p),
                state.refused.get(p).map(|r| r.reason.as_str()),
                "refusal {p}"
            );
        }
    }

    #[test]
    fn the_view_answers_what_the_state_says() {
        let remote: &[Remote] = &[
            (1, None, "docs", true, 1, true),
            (2, Some(1), "a.txt", false, 3, true),
            // Newer on the server than what was agreed.
            (3, Some(1), "b.txt", false, 2, true),
            (4, Some(1), "sub", true, 1, true),
            (5, Some(4), "c.txt", false, 1, true),
            (6, None, "remote-only.txt", false, 1, true),
            // Moved on the server; its synced parent is unknown here.
            (7, Some(1), "moved.txt", false, 1, true),
            // Deleted at the version agreed.
            (8, None, "gone.txt", false, 1, false),
            // Live itself, but in a deleted folder.
            (9, None, "trash", true, 2, false),
            (10, Some(9), "x.txt", false, 1, true),
            (11, None, "incoming", true, 1, true),
            (12, Some(11), "new.txt", false, 1, true),
            (13, Some(1), "was-file", true, 1, true),
            (14, Some(1), "no-stamp.txt", false, 1, true),
            // Under a parent the server never sent.
            (15, Some(98), "lost.txt", false, 1, true),
        ];
        let synced: &[Synced] = &[
            // Unknown to the server (the next item in id order has its
            // version).
            (0, None, "unknown.txt", false, 1, Some(0)),
            (1, None, "docs", true, 1, None),
            (2, Some(1), "a.txt", false, 3, Some(2)),
            (3, Some(1), "b.txt", false, 1, Some(3)),
            (4, Some(1), "sub", true, 1, None),
            (5, Some(4), "c.txt", false, 1, Some(5)),
            (7, Some(99), "orphan.txt", false, 1, Some(7)),
            (8, None, "gone.txt", false, 1, Some(8)),
            (9, None, "trash", true, 1, None),
            (10, Some(9), "x.txt", false, 1, Some(10)),
            (13, Some(1), "was-file", true, 1, Some(13)),
            (14, Some(1), "no-stamp.txt", false, 1, None),
        ];
        let state = state(remote, synced, &[("docs/bad.txt", "over quota")]);
        let view = StatusView::of(&state);

        assert!(view.agrees(&path("docs/a.txt"), stamp(2)));
        assert!(!view.agrees(&path("docs/a.txt"), stamp(3)), "another stamp");
        assert!(!view.agrees(&path("docs/b.txt"), stamp(3)), "server newer");
        assert!(view.agrees(&path("docs/sub/c.txt"), stamp(5)));
        assert!(
            !view.agrees(&path("orphan.txt"), stamp(7)),
            "no synced path"
        );
        assert!(!view.agrees(&path("gone.txt"), stamp(8)), "deleted");
        assert!(
            !view.agrees(&path("unknown.txt"), stamp(0)),
            "not on the server"
        );
        assert!(
            !view.agrees(&path("trash/x.txt"), stamp(10)),
            "in a deleted folder"
        );
        assert!(!view.agrees(&path("docs/was-file"), stamp(13)), "a folder");
        assert!(!view.agrees(&path("docs/no-stamp.txt"), stamp(14)));

        assert!(view.is_synced(&path("docs")));
        assert!(view.is_synced(&path("docs/sub")));
        assert!(view.is_synced(&path("gone.txt")));
        assert!(!view.is_synced(&RelPath::root()));
        assert!(!view.is_synced(&path("orphan.txt")));
        assert!(!view.is_synced(&path("docs/moved.txt")));
        assert!(!view.is_synced(&path("incoming")));

        let children = |at: &str| {
            view.remote_children(&path(at)).map(|c| {
                c.into_iter()
                    .map(|(n, f)| (n.as_str(), f))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            view.remote_children(&RelPath::root()).map(|c| c
                .into_iter()
                .map(|(n, f)| (n.as_str(), f))
                .collect::<Vec<_>>()),
            Some(vec![
                ("docs", true),
                ("remote-only.txt", false),
                ("incoming", true)
            ])
        );
        assert_eq!(
            children("docs"),
            Some(vec![
                ("a.txt", false),
                ("b.txt", false),
                ("sub", true),
                ("moved.txt", false),
                ("was-file", true),
                ("no-stamp.txt", false),
            ])
        );
        assert_eq!(children("trash"), Some(vec![]), "nothing live in it");
        assert_eq!(children("incoming"), None, "not synced");

        assert_eq!(view.on_server(&path("docs/sub")), Some(true));
        assert_eq!(view.on_server(&path("docs/moved.txt")), Some(false));
        assert_eq!(view.on_server(&path("incoming/new.txt")), Some(false));
        assert_eq!(view.on_server(&path("orphan.txt")), None);
        assert_eq!(view.on_server(&path("gone.txt")), None);
        assert_eq!(view.on_server(&path("trash/x.txt")), None);
        assert_eq!(view.on_server(&path("lost.txt")), None);
        assert_eq!(view.on_server(&RelPath::root()), None);

        assert_eq!(view.refusal(&path("docs/bad.txt")), Some("over quota"));
        assert_eq!(view.refusal(&path("docs/a.txt")), None);

        check_against_definitions(
            &state,
            &[
                "docs",
                "a.txt",
                "b.txt",
                "sub",
                "moved.txt",
                "x.txt",
                "nope",
            ],
        );
    }

    #[test]
    fn of_items_sharing_a_path_the_view_picks_what_the_state_does() {
        // Two synced folders named `dup`, each holding an `f`: a map from
        // path to id keeps the greatest id for `dup` (21) and for `dup/f`
        // (23, inside 20); a search of the remote tree finds the least.
        let remote: &[Remote] = &[
            (20, None, "dup", true, 1, true),
            (21, None, "dup", true, 1, true),
            (22, Some(21), "f", true, 1, true),
            (23, Some(20), "f", false, 1, true),
        ];
        let synced: &[Synced] = &[
            (20, None, "dup", true, 1, None),
            (21, None, "dup", true, 1, None),
            (22, Some(21), "f", false, 1, Some(22)),
            (23, Some(20), "f", false, 1, Some(23)),
        ];
        let state = state(remote, synced, &[]);
        let view = StatusView::of(&state);
        assert!(view.agrees(&path("dup/f"), stamp(23)));
        assert!(!view.agrees(&path("dup/f"), stamp(22)));
        assert_eq!(view.on_server(&path("dup/f")), Some(true));
        check_against_definitions(&state, &["dup", "f"]);
    }

    /// A random item: parent, name (in [`NAMES`]), is a folder, version,
    /// and a number (a synced item's stamp; a remote item is deleted when
    /// it is 0).
    type RandomItem = (Option<u64>, usize, bool, u64, Option<u64>);

    const NAMES: [&str; 3] = ["a", "b", "c"];
    /// Most items of a random tree; ids are positions in the list.
    const MAX_ITEMS: u64 = 12;

    /// Up to [`MAX_ITEMS`] items, some ids left out, with parents anywhere:
    /// missing items and cycles included, and few names, so that paths
    /// clash.
    fn random_items() -> impl Strategy<Value = Vec<Option<RandomItem>>> {
        let parent = prop_oneof![Just(None), (0..MAX_ITEMS + 2).prop_map(Some)];
        let item = (
            parent,
            0..NAMES.len(),
            any::<bool>(),
            1..3u64,
            proptest::option::of(0..3u64),
        );
        proptest::collection::vec(proptest::option::of(item), 0..MAX_ITEMS as usize)
    }

    proptest! {
        #[test]
        fn the_view_of_any_state_answers_what_the_state_says(
            remote in random_items(),
            synced in random_items(),
            refused in proptest::collection::vec((0..NAMES.len(), 0..NAMES.len()), 0..3),
        ) {
            let remote: Vec<Remote> = remote
                .iter()
                .enumerate()
                .filter_map(|(n, r)| {
                    let (parent, name, is_folder, version, number) = (*r)?;
                    let live = number != Some(0);
                    Some((n as u64, parent, NAMES[name], is_folder, version, live))
                })
                .collect();
            let synced: Vec<Synced> = synced
                .iter()
                .enumerate()
                .filter_map(|(n, s)| {
                    let (parent, name, is_folder, version, at) = (*s)?;
                    Some((n as u64, parent, NAMES[name], is_folder, version, at))
                })
                .collect();
            let refused: Vec<String> = refused
                .iter()
                .map(|&(a, b)| format!("{}/{}", NAMES[a], NAMES[b]))
                .collect();
            let refused: Vec<(&str, &str)> =
                refused.iter().map(|p| (p.as_str(), "refused")).collect();
            check_against_definitions(&state(&remote, &synced, &refused), &NAMES);
        }
    }
}
