//! The row layout of a saved [`SyncState`], and the difference between the
//! state last written and a new one.
//!
//! Every entry of the state's maps (and of its set of download
//! temporaries) is one row keyed by (workspace,
//! kind, key), its value the entry encoded as CBOR: self-describing like
//! JSON, so a field the engine adds later with `#[serde(default)]` still
//! loads, and it needs no schema change. The cursor lives in a row of its
//! own table (see the parent module).

use serde::Serialize;
use serde::de::DeserializeOwned;
use stacksync_engine::tree::{PendingCommit, Refusal, SyncedItem};
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::{ItemId, ItemMeta};
use uuid::Uuid;

/// Which map of the state a row belongs to (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Remote = 1,
    Synced = 2,
    Refused = 3,
    Pending = 4,
    Temp = 5,
}

impl Kind {
    /// The value stored in the `kind` column.
    pub(crate) fn code(self) -> i64 {
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
pub(crate) enum RowWrite {
    /// Insert or replace the row.
    Put {
        kind: Kind,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Remove the row.
    Delete { kind: Kind, key: Vec<u8> },
}

/// A state being loaded row by row. The item maps, by far the largest,
/// are gathered first and built in bulk at the end (nodes filled, where
/// inserting rows in key order would leave them half empty).
pub(crate) struct Loader {
    state: SyncState,
    remote: Vec<ItemMeta>,
    synced: Vec<(ItemId, SyncedItem)>,
}

impl Loader {
    /// A state of `cursor` and no rows yet (loading adds them with
    /// [`Loader::insert_row`]).
    pub(crate) fn with_cursor(cursor: u64) -> Loader {
        Loader {
            state: SyncState {
                cursor,
                ..SyncState::default()
            },
            remote: Vec::new(),
            synced: Vec::new(),
        }
    }

    /// The loaded state, with nothing recorded as changed: it is what the
    /// database holds. Refuses an item stored twice as a remote item.
    pub(crate) fn finish(mut self) -> Result<SyncState, String> {
        self.remote.sort_unstable_by_key(|m| m.id);
        if let Some(w) = self.remote.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(format!("remote item {} is stored twice", w[0].id));
        }
        self.synced.sort_unstable_by_key(|(id, _)| *id);
        share_names(&self.remote, &mut self.synced);
        self.state.remote = self.remote.into_iter().collect();
        self.state.synced = self.synced.into_iter().collect();
        self.state.forget_changes();
        Ok(self.state)
    }

    /// Adds one loaded row; the error says which row and why it is
    /// unreadable.
    pub(crate) fn insert_row(&mut self, kind: i64, key: &[u8], value: &[u8]) -> Result<(), String> {
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
                self.remote.push(meta);
            }
            Kind::Synced => {
                let (id, item) = decode_row(kind, key, value)?;
                self.synced.push((id, item));
            }
            Kind::Refused => {
                let (path, refusal) = decode_row(kind, key, value)?;
                self.state.refused.insert(path, refusal);
            }
            Kind::Pending => {
                let (id, pending) = decode_row(kind, key, value)?;
                self.state.pending.insert(id, pending);
            }
            Kind::Temp => {
                let (path, ()) = decode_row(kind, key, value)?;
                self.state.temps.insert(path);
            }
        }
        Ok(())
    }
}

/// Makes each synced item's name share the bytes of its remote item's
/// equal name (both sorted by id; walked side by side): in a settled tree
/// every name is in both, and two copies of 100,000 names cost megabytes.
fn share_names(remote: &[ItemMeta], synced: &mut [(ItemId, SyncedItem)]) {
    let mut remote = remote.iter().peekable();
    for (id, item) in synced {
        while remote.next_if(|m| m.id < *id).is_some() {}
        if let Some(m) = remote.peek()
            && m.id == *id
            && m.name == item.name
        {
            item.name = m.name.clone();
        }
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

/// The entries of one map that a save writes: new or changed ones and
/// removed keys, borrowed from the state.
struct MapChanges<'a, K, V> {
    put: Vec<(&'a K, &'a V)>,
    delete: Vec<&'a K>,
}

impl<'a, K, V> MapChanges<'a, K, V> {
    /// Sorts `(key, value now)` pairs into puts and deletes.
    fn of(changes: impl IntoIterator<Item = (&'a K, Option<&'a V>)>) -> Self {
        let mut out = MapChanges {
            put: Vec::new(),
            delete: Vec::new(),
        };
        for (key, value) in changes {
            match value {
                Some(v) => out.put.push((key, v)),
                None => out.delete.push(key),
            }
        }
        out
    }
}

impl<K: RowKey, V: Serialize> MapChanges<'_, K, V> {
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
}

/// What a save writes.
pub(crate) struct Changes<'a> {
    cursor: Option<u64>,
    remote: MapChanges<'a, ItemId, ItemMeta>,
    synced: MapChanges<'a, ItemId, SyncedItem>,
    refused: MapChanges<'a, RelPath, Refusal>,
    pending: MapChanges<'a, ItemId, PendingCommit>,
    temps: MapChanges<'a, RelPath, ()>,
}

impl<'a> Changes<'a> {
    /// The changes `state` recorded since it was last saved (or loaded)
    /// with cursor `saved_cursor`: O(changes), no pass over the rest.
    pub(crate) fn recorded(state: &'a SyncState, saved_cursor: u64) -> Changes<'a> {
        // Destructured so that a field added to `SyncState` stops the
        // build here instead of being silently left out of the database.
        let SyncState {
            cursor,
            remote,
            synced,
            refused,
            pending,
            temps,
        } = state;
        Changes {
            cursor: (*cursor != saved_cursor).then_some(*cursor),
            remote: MapChanges::of(remote.changes()),
            synced: MapChanges::of(synced.changes()),
            refused: MapChanges::of(refused.changes()),
            pending: MapChanges::of(pending.changes()),
            temps: MapChanges::of(temps.changes().map(|(p, here)| (p, here.then_some(&())))),
        }
    }

    /// Every row of `state`, for a database whose rows are unknown (they
    /// are all deleted first).
    pub(crate) fn everything(state: &'a SyncState) -> Changes<'a> {
        let SyncState {
            cursor,
            remote,
            synced,
            refused,
            pending,
            temps,
        } = state;
        Changes {
            cursor: Some(*cursor),
            remote: MapChanges::of(remote.iter().map(|m| (&m.id, Some(m)))),
            synced: MapChanges::of(synced.iter().map(|(k, v)| (k, Some(v)))),
            refused: MapChanges::of(refused.iter().map(|(k, v)| (k, Some(v)))),
            pending: MapChanges::of(pending.iter().map(|(k, v)| (k, Some(v)))),
            temps: MapChanges::of(temps.iter().map(|p| (p, Some(&())))),
        }
    }

    /// The new cursor, when it changed.
    pub(crate) fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// True when the save has nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.cursor.is_none()
            && self.remote.is_empty()
            && self.synced.is_empty()
            && self.refused.is_empty()
            && self.pending.is_empty()
            && self.temps.is_empty()
    }

    /// The row statements, values encoded: the only encoding a save does,
    /// proportional to what changed.
    pub(crate) fn rows(&self) -> Result<Vec<RowWrite>, String> {
        let mut out = Vec::new();
        self.remote.encode(Kind::Remote, &mut out)?;
        self.synced.encode(Kind::Synced, &mut out)?;
        self.refused.encode(Kind::Refused, &mut out)?;
        self.pending.encode(Kind::Pending, &mut out)?;
        self.temps.encode(Kind::Temp, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_changes_are_what_a_save_writes() {
        let mut state = SyncState::default();
        let a = ItemId::new();
        let b = ItemId::new();
        state.refused.insert(
            RelPath::parse("x").unwrap(),
            Refusal {
                reason: "no".into(),
                stamp: None,
                clash: false,
            },
        );
        state.temps.insert(RelPath::parse("t").unwrap());
        state.forget_changes();
        assert!(Changes::recorded(&state, 0).is_empty());
        state.refused.remove(&RelPath::parse("x").unwrap());
        state.temps.insert(RelPath::parse("u").unwrap());
        state.pending.insert(a, pending());
        state.pending.insert(b, pending());
        state.pending.remove(&b);
        let changes = Changes::recorded(&state, 0);
        assert_eq!(changes.cursor(), None);
        let rows = changes.rows().unwrap();
        let deletes = rows
            .iter()
            .filter(|r| matches!(r, RowWrite::Delete { .. }))
            .count();
        assert_eq!((rows.len(), deletes), (4, 2), "{rows:?}");
        state.cursor = 7;
        assert_eq!(Changes::recorded(&state, 0).cursor(), Some(7));
    }

    fn pending() -> PendingCommit {
        PendingCommit {
            version: 1,
            parent: None,
            name: stacksync_proto::ItemName::new("n".to_string()).unwrap(),
            is_folder: false,
            content_hash: None,
            size: 0,
            deleted: false,
            stamp: None,
        }
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
        let mut loader = Loader::with_cursor(0);
        let err = loader.insert_row(9, b"k", b"v").unwrap_err();
        assert!(err.contains("unknown kind 9"), "{err}");
        let id = ItemId::new();
        let err = loader
            .insert_row(Kind::Synced.code(), &id.to_key(), &[0xff, 0x00])
            .unwrap_err();
        assert!(err.contains(&format!("synced item {id}")), "{err}");
    }
}
