//! The row layout of a saved [`SyncState`], and the difference between the
//! state last written and a new one.
//!
//! Every entry of the state's maps (and of its set of download
//! temporaries) is one row keyed by (workspace,
//! kind, key), its value the entry encoded as CBOR: self-describing like
//! JSON, so a field the engine adds later with `#[serde(default)]` still
//! loads, and it needs no schema change. The cursor lives in a row of its
//! own table (see the parent module).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use stacksync_engine::tree::{PendingCommit, Refusal, RemoteTree, SyncedItem};
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::{ItemId, ItemMeta};
use uuid::Uuid;

/// Which map of the state a row belongs to (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Remote = 1,
    Synced = 2,
    Refused = 3,
    Pending = 4,
    Temp = 5,
}

impl Kind {
    /// The value stored in the `kind` column.
    pub(super) fn code(self) -> i64 {
        self as i64
    }

    fn from_code(code: i64) -> Option<Kind> {
        [
            Kind::Remote,
            Kind::Synced,
            Kind::Refused,
            Kind::Pending,
            Kind::Temp,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    /// What a row of this kind holds, for error messages.
    fn describe(self) -> &'static str {
        match self {
            Kind::Remote => "remote item",
            Kind::Synced => "synced item",
            Kind::Refused => "refused path",
            Kind::Pending => "pending commit",
            Kind::Temp => "download temporary",
        }
    }
}

/// How a map key is stored in the `key` column.
trait RowKey: Ord + Clone + Sized {
    fn to_key(&self) -> Vec<u8>;
    fn from_key(bytes: &[u8]) -> Option<Self>;
}

impl RowKey for ItemId {
    // The 16 raw bytes: half the size of the hyphenated text.
    fn to_key(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
    fn from_key(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok().map(ItemId)
    }
}

impl RowKey for RelPath {
    // The `/`-separated text: names never contain `/`, so it parses back
    // to the same path, and it stays readable in a SQLite shell.
    fn to_key(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
    fn from_key(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        RelPath::parse(text).ok()
    }
}

/// One statement of a save.
#[derive(Debug)]
pub(super) enum RowWrite {
    /// Insert or replace the row.
    Put {
        kind: Kind,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Remove the row.
    Delete { kind: Kind, key: Vec<u8> },
}

/// The state as the database holds it: what the next save is diffed
/// against. The remote tree is a plain map here because a snapshot must be
/// able to drop items, which a [`RemoteTree`] never does.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Snapshot {
    cursor: u64,
    remote: BTreeMap<ItemId, ItemMeta>,
    synced: BTreeMap<ItemId, SyncedItem>,
    refused: BTreeMap<RelPath, Refusal>,
    pending: BTreeMap<ItemId, PendingCommit>,
    /// The state's set of download temporaries (a row holds no value).
    temps: BTreeMap<RelPath, ()>,
}

impl Snapshot {
    /// A snapshot of `cursor` and no rows yet (loading adds them with
    /// [`Snapshot::insert_row`]).
    pub(super) fn with_cursor(cursor: u64) -> Snapshot {
        Snapshot {
            cursor,
            ..Snapshot::default()
        }
    }

    /// The engine's state holding exactly this snapshot.
    pub(super) fn to_state(&self) -> SyncState {
        let mut remote = RemoteTree::default();
        for meta in self.remote.values() {
            // Each id once, so `apply` always records it.
            remote.apply(meta.clone());
        }
        SyncState {
            cursor: self.cursor,
            remote,
            synced: self.synced.clone(),
            refused: self.refused.clone(),
            pending: self.pending.clone(),
            temps: self.temps.keys().cloned().collect(),
        }
    }

    /// Adds one loaded row; the error says which row and why it is
    /// unreadable.
    pub(super) fn insert_row(&mut self, kind: i64, key: &[u8], value: &[u8]) -> Result<(), String> {
        let Some(kind) = Kind::from_code(kind) else {
            return Err(format!(
                "row of unknown kind {kind} (written by a newer version?)"
            ));
        };
        match kind {
            Kind::Remote => {
                let (id, meta) = decode_row::<ItemId, ItemMeta>(kind, key, value)?;
                if meta.id != id {
                    return Err(format!("remote item {} is stored under {}", meta.id, id));
                }
                self.remote.insert(id, meta);
            }
            Kind::Synced => {
                let (id, item) = decode_row(kind, key, value)?;
                self.synced.insert(id, item);
            }
            Kind::Refused => {
                let (path, refusal) = decode_row(kind, key, value)?;
                self.refused.insert(path, refusal);
            }
            Kind::Pending => {
                let (id, pending) = decode_row(kind, key, value)?;
                self.pending.insert(id, pending);
            }
            Kind::Temp => {
                let (path, ()) = decode_row(kind, key, value)?;
                self.temps.insert(path, ());
            }
        }
        Ok(())
    }
}

fn decode_row<K: RowKey, V: DeserializeOwned>(
    kind: Kind,
    key: &[u8],
    value: &[u8],
) -> Result<(K, V), String> {
    let Some(k) = K::from_key(key) else {
        return Err(format!(
            "{} key {:?} is malformed",
            kind.describe(),
            String::from_utf8_lossy(key)
        ));
    };
    let v = ciborium::from_reader(value).map_err(|e| {
        format!(
            "{} {}: {e}",
            kind.describe(),
            String::from_utf8_lossy(&display_key(kind, key))
        )
    })?;
    Ok((k, v))
}

/// A key as a person reads it: item ids hyphenated, paths as text.
fn display_key(kind: Kind, key: &[u8]) -> Vec<u8> {
    match kind {
        Kind::Refused | Kind::Temp => key.to_vec(),
        _ => match ItemId::from_key(key) {
            Some(id) => id.to_string().into_bytes(),
            None => key.to_vec(),
        },
    }
}

/// The entries of one map that a save writes: new or changed ones
/// (borrowed from the new state) and removed keys.
struct MapChanges<'a, K, V> {
    put: Vec<(&'a K, &'a V)>,
    delete: Vec<K>,
}

/// Diffs a map against the new entries in ascending key order: a merge of
/// two sorted sequences, so O(entries) comparisons and no lookups.
fn diff_map<'a, K, V>(
    old: &BTreeMap<K, V>,
    new: impl IntoIterator<Item = (&'a K, &'a V)>,
) -> MapChanges<'a, K, V>
where
    K: Ord + Clone + 'a,
    V: PartialEq + 'a,
{
    let mut changes = MapChanges {
        put: Vec::new(),
        delete: Vec::new(),
    };
    let mut old = old.iter().peekable();
    let mut last: Option<&K> = None;
    for (key, value) in new {
        debug_assert!(
            last < Some(key),
            "new entries must come in ascending key order"
        );
        last = Some(key);
        while let Some((gone, _)) = old.next_if(|(k, _)| *k < key) {
            changes.delete.push(gone.clone());
        }
        match old.next_if(|(k, _)| *k == key) {
            Some((_, before)) if before == value => {}
            _ => changes.put.push((key, value)),
        }
    }
    changes.delete.extend(old.map(|(k, _)| k.clone()));
    changes
}

impl<K: RowKey, V: Serialize + Clone> MapChanges<'_, K, V> {
    fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }

    fn encode(&self, kind: Kind, out: &mut Vec<RowWrite>) -> Result<(), String> {
        for key in &self.delete {
            out.push(RowWrite::Delete {
                kind,
                key: key.to_key(),
            });
        }
        for (key, value) in &self.put {
            let mut bytes = Vec::new();
            ciborium::into_writer(value, &mut bytes)
                .map_err(|e| format!("encoding a {}: {e}", kind.describe()))?;
            out.push(RowWrite::Put {
                kind,
                key: key.to_key(),
                value: bytes,
            });
        }
        Ok(())
    }

    fn apply_to(self, map: &mut BTreeMap<K, V>) {
        for key in self.delete {
            map.remove(&key);
        }
        for (key, value) in self.put {
            map.insert(key.clone(), value.clone());
        }
    }
}

/// What a save must write to turn the stored snapshot into a new state.
pub(super) struct Changes<'a> {
    cursor: Option<u64>,
    remote: MapChanges<'a, ItemId, ItemMeta>,
    synced: MapChanges<'a, ItemId, SyncedItem>,
    refused: MapChanges<'a, RelPath, Refusal>,
    pending: MapChanges<'a, ItemId, PendingCommit>,
    temps: MapChanges<'a, RelPath, ()>,
}

impl<'a> Changes<'a> {
    /// The difference from `old` to `new`.
    pub(super) fn between(old: &Snapshot, new: &'a SyncState) -> Changes<'a> {
        // Destructured so that a field added to `SyncState` stops the
        // build here instead of being silently left out of the database.
        let SyncState {
            cursor,
            remote,
            synced,
            refused,
            pending,
            temps,
        } = new;
        Changes {
            cursor: (*cursor != old.cursor).then_some(*cursor),
            // `RemoteTree::iter` yields items by id, and each is stored
            // under its own id: the ascending order `diff_map` needs.
            remote: diff_map(&old.remote, remote.iter().map(|m| (&m.id, m))),
            synced: diff_map(&old.synced, synced),
            refused: diff_map(&old.refused, refused),
            pending: diff_map(&old.pending, pending),
            temps: diff_map(&old.temps, temps.iter().map(|p| (p, &()))),
        }
    }

    /// Every row of `new`, for a database whose rows are unknown (they are
    /// all deleted first).
    pub(super) fn everything(new: &'a SyncState) -> Changes<'a> {
        let mut changes = Changes::between(&Snapshot::default(), new);
        changes.cursor = Some(new.cursor);
        changes
    }

    /// The new cursor, when it changed.
    pub(super) fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// True when the save has nothing to write.
    pub(super) fn is_empty(&self) -> bool {
        self.cursor.is_none()
            && self.remote.is_empty()
            && self.synced.is_empty()
            && self.refused.is_empty()
            && self.pending.is_empty()
            && self.temps.is_empty()
    }

    /// The row statements, values encoded: the only encoding a save does,
    /// proportional to what changed.
    pub(super) fn rows(&self) -> Result<Vec<RowWrite>, String> {
        let mut out = Vec::new();
        self.remote.encode(Kind::Remote, &mut out)?;
        self.synced.encode(Kind::Synced, &mut out)?;
        self.refused.encode(Kind::Refused, &mut out)?;
        self.pending.encode(Kind::Pending, &mut out)?;
        self.temps.encode(Kind::Temp, &mut out)?;
        Ok(out)
    }

    /// Brings `snapshot` (the state these changes were computed from) to
    /// the new state, once the rows are committed.
    pub(super) fn apply_to(self, snapshot: &mut Snapshot) {
        if let Some(cursor) = self.cursor {
            snapshot.cursor = cursor;
        }
        self.remote.apply_to(&mut snapshot.remote);
        self.synced.apply_to(&mut snapshot.synced);
        self.refused.apply_to(&mut snapshot.refused);
        self.pending.apply_to(&mut snapshot.pending);
        self.temps.apply_to(&mut snapshot.temps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(u8, &str)]) -> BTreeMap<u8, String> {
        entries.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn diff_map_finds_puts_and_deletes() {
        let old = map(&[(1, "a"), (2, "b"), (4, "d"), (6, "f")]);
        let new = map(&[(0, "z"), (2, "b"), (4, "D"), (5, "e")]);
        let changes = diff_map(&old, &new);
        let put: Vec<u8> = changes.put.iter().map(|(k, _)| **k).collect();
        assert_eq!(put, [0, 4, 5]);
        assert_eq!(changes.delete, [1, 6]);
    }

    #[test]
    fn diff_map_of_equal_maps_is_empty() {
        let old = map(&[(1, "a"), (2, "b")]);
        let changes = diff_map(&old, &old);
        assert!(changes.put.is_empty() && changes.delete.is_empty());
    }

    #[test]
    fn keys_round_trip() {
        let id = ItemId::new();
        assert_eq!(ItemId::from_key(&id.to_key()), Some(id));
        assert_eq!(ItemId::from_key(b"short"), None);
        let path = RelPath::parse("a/b c/d").unwrap();
        assert_eq!(RelPath::from_key(&path.to_key()), Some(path));
        assert_eq!(RelPath::from_key(b"a//b"), None);
    }

    #[test]
    fn unknown_kind_and_bad_value_are_reported() {
        let mut snapshot = Snapshot::default();
        let err = snapshot.insert_row(9, b"k", b"v").unwrap_err();
        assert!(err.contains("unknown kind 9"), "{err}");
        let id = ItemId::new();
        let err = snapshot
            .insert_row(Kind::Synced.code(), &id.to_key(), &[0xff, 0x00])
            .unwrap_err();
        assert!(err.contains(&format!("synced item {id}")), "{err}");
    }
}
