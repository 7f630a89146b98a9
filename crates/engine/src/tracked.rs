//! Maps and sets that remember which keys changed since they were last
//! saved, so that saving the sync state costs what changed, not what it
//! holds (a one-file edit in a tree of 100,000 files writes a few rows,
//! with no pass over the rest and no second copy of it in memory).
//!
//! Every change goes through a method that records its key: reads see the
//! plain `BTreeMap` (through `Deref`), writes cannot bypass the record.
//! What a change log cannot guard against is being replaced wholesale (an
//! assignment, `std::mem::take`): each instance therefore carries an
//! **origin**, fresh for every instance made (new, collected, cloned,
//! decoded), and a store writes only the changes of instances whose
//! origins it saw at its last load or save, rewriting everything
//! otherwise. See [`crate::tree::SyncState::lineage`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A process-wide unique number for a new instance.
fn fresh_origin() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A sorted map that records the keys inserted, changed or removed since
/// [`TrackedMap::forget_changes`].
pub struct TrackedMap<K, V> {
    map: BTreeMap<K, V>,
    changed: BTreeSet<K>,
    origin: u64,
}

impl<K: Ord + Clone, V> TrackedMap<K, V> {
    /// An empty map with a fresh origin.
    pub fn new() -> Self {
        TrackedMap {
            map: BTreeMap::new(),
            changed: BTreeSet::new(),
            origin: fresh_origin(),
        }
    }

    /// Inserts or replaces the value at `key`.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key.clone());
        self.map.insert(key, value)
    }

    /// Inserts the value `make` returns unless `key` has one.
    pub fn insert_if_absent(&mut self, key: K, make: impl FnOnce() -> V) {
        if !self.map.contains_key(&key) {
            self.insert(key, make());
        }
    }

    /// Removes the value at `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.map.remove(key);
        if old.is_some() {
            self.changed.insert(key.clone());
        }
        old
    }

    /// The value at `key`, to change (recorded as changed whether or not
    /// it is).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        self.changed.insert(key.clone());
        Some(value)
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let changed = &mut self.changed;
        self.map.retain(|k, v| {
            let kept = keep(k, v);
            if !kept {
                changed.insert(k.clone());
            }
            kept
        });
    }

    /// Removes and returns every entry.
    pub fn take_all(&mut self) -> BTreeMap<K, V> {
        let all = std::mem::take(&mut self.map);
        self.changed.extend(all.keys().cloned());
        all
    }

    /// Every key changed since [`TrackedMap::forget_changes`], with its
    /// value now (`None`: removed).
    pub fn changes(&self) -> impl Iterator<Item = (&K, Option<&V>)> {
        self.changed.iter().map(|k| (k, self.map.get(k)))
    }

    /// How many keys changed since [`TrackedMap::forget_changes`].
    pub fn changes_len(&self) -> usize {
        self.changed.len()
    }

    /// Starts a new record of changes (after what was recorded is saved).
    pub fn forget_changes(&mut self) {
        self.changed.clear();
    }

    /// This instance's origin (see the module documentation).
    pub fn origin(&self) -> u64 {
        self.origin
    }
}

impl<K: Ord + Clone, V> Default for TrackedMap<K, V> {
    fn default() -> Self {
        TrackedMap::new()
    }
}

impl<K, V> Deref for TrackedMap<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

impl<'a, K, V> IntoIterator for &'a TrackedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::collections::btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Ord + Clone, V: Clone> Clone for TrackedMap<K, V> {
    /// A copy with the same entries and changes, and its own origin.
    fn clone(&self) -> Self {
        TrackedMap {
            map: self.map.clone(),
            changed: self.changed.clone(),
            origin: fresh_origin(),
        }
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for TrackedMap<K, V> {
    /// Equal entries; changes and origins are not content.
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Eq, V: Eq> Eq for TrackedMap<K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for TrackedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.map.fmt(f)
    }
}

impl<K: Ord + Clone, V> FromIterator<(K, V)> for TrackedMap<K, V> {
    /// A map of these entries, all recorded as changed.
    /// Built in bulk (std sorts, then fills every node), where inserting
    /// in key order leaves each node half empty: a state loaded this way
    /// takes about half the memory.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map: BTreeMap<K, V> = iter.into_iter().collect();
        TrackedMap {
            changed: map.keys().cloned().collect(),
            map,
            origin: fresh_origin(),
        }
    }
}

impl<K: Serialize, V: Serialize> Serialize for TrackedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de, K: Deserialize<'de> + Ord + Clone, V: Deserialize<'de>> Deserialize<'de>
    for TrackedMap<K, V>
{
    /// The decoded entries, none recorded as changed (they are what was
    /// saved).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TrackedMap {
            map: BTreeMap::deserialize(d)?,
            changed: BTreeSet::new(),
            origin: fresh_origin(),
        })
    }
}

/// A sorted set that records the values added or removed since
/// [`TrackedSet::forget_changes`].
#[derive(PartialEq, Eq)]
pub struct TrackedSet<K>(TrackedMap<K, ()>);

impl<K: Ord + Clone> Clone for TrackedSet<K> {
    fn clone(&self) -> Self {
        TrackedSet(self.0.clone())
    }
}

impl<K: Ord + Clone> TrackedSet<K> {
    /// An empty set with a fresh origin.
    pub fn new() -> Self {
        TrackedSet(TrackedMap::new())
    }

    /// Adds `value`; whether it was new.
    pub fn insert(&mut self, value: K) -> bool {
        if self.0.contains_key(&value) {
            return false;
        }
        self.0.insert(value, ());
        true
    }

    /// Removes `value`; whether it was there.
    pub fn remove(&mut self, value: &K) -> bool {
        self.0.remove(value).is_some()
    }

    /// Keeps only the values `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.0.retain(|k, _| keep(k));
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: &K) -> bool {
        self.0.contains_key(value)
    }

    /// The values, in order.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }

    /// How many values the set holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every value added or removed since the last
    /// [`TrackedSet::forget_changes`], with whether it is in the set now.
    pub fn changes(&self) -> impl Iterator<Item = (&K, bool)> {
        self.0.changes().map(|(k, v)| (k, v.is_some()))
    }

    /// How many values changed since [`TrackedSet::forget_changes`].
    pub fn changes_len(&self) -> usize {
        self.0.changes_len()
    }

    /// Starts a new record of changes.
    pub fn forget_changes(&mut self) {
        self.0.forget_changes();
    }

    /// This instance's origin.
    pub fn origin(&self) -> u64 {
        self.0.origin()
    }
}

impl<K: Ord + Clone> Default for TrackedSet<K> {
    fn default() -> Self {
        TrackedSet::new()
    }
}

impl<K: fmt::Debug> fmt::Debug for TrackedSet<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.map.keys()).finish()
    }
}

impl<K: Ord + Clone> FromIterator<K> for TrackedSet<K> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        TrackedSet(iter.into_iter().map(|k| (k, ())).collect())
    }
}

impl<K: Serialize> Serialize for TrackedSet<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.map.keys())
    }
}

impl<'de, K: Deserialize<'de> + Ord + Clone> Deserialize<'de> for TrackedSet<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let values = BTreeSet::<K>::deserialize(d)?;
        let mut set = TrackedSet::new();
        set.0.map = values.into_iter().map(|k| (k, ())).collect();
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_change_is_recorded_once() {
        let mut m: TrackedMap<u32, &str> = TrackedMap::new();
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(3, "c");
        m.forget_changes();
        assert_eq!(m.changes().count(), 0);
        m.insert(4, "d");
        m.remove(&1);
        m.remove(&9);
        if let Some(v) = m.get_mut(&2) {
            *v = "B";
        }
        m.retain(|k, _| *k != 3);
        m.insert_if_absent(4, || "ignored");
        let changes: Vec<(u32, Option<&str>)> =
            m.changes().map(|(k, v)| (*k, v.copied())).collect();
        assert_eq!(
            changes,
            vec![(1, None), (2, Some("B")), (3, None), (4, Some("d"))]
        );
        let all = m.take_all();
        assert_eq!(all.len(), 2);
        assert_eq!(m.changes_len(), 4);
        assert!(m.is_empty());
    }

    #[test]
    fn copies_and_decoded_instances_have_their_own_origin() {
        let mut m: TrackedMap<u32, u32> = (0..3).map(|i| (i, i)).collect();
        assert_eq!(m.changes_len(), 3, "collected entries are changes");
        m.forget_changes();
        let copy = m.clone();
        assert_ne!(copy.origin(), m.origin());
        assert_eq!(copy, m);
        let json = serde_json::to_string(&m).expect("encodes");
        let back: TrackedMap<u32, u32> = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, m);
        assert_ne!(back.origin(), m.origin());
        assert_eq!(back.changes_len(), 0);
    }

    #[test]
    fn a_map_collected_in_bulk_keeps_the_last_value_of_a_key() {
        let m: TrackedMap<u32, &str> = [(2, "b"), (1, "a"), (2, "B"), (3, "c")]
            .into_iter()
            .collect();
        let all: Vec<(u32, &str)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(all, vec![(1, "a"), (2, "B"), (3, "c")]);
        let changed: Vec<u32> = m.changes().map(|(k, _)| *k).collect();
        assert_eq!(changed, vec![1, 2, 3]);
    }

    #[test]
    fn sets_record_what_they_add_and_remove() {
        let mut s: TrackedSet<u8> = [1, 2].into_iter().collect();
        s.forget_changes();
        assert!(!s.insert(1), "already there: no change");
        assert!(s.insert(3));
        assert!(s.remove(&2));
        assert!(!s.remove(&7));
        let changes: Vec<(u8, bool)> = s.changes().map(|(k, b)| (*k, b)).collect();
        assert_eq!(changes, vec![(2, false), (3, true)]);
        let json = serde_json::to_string(&s).expect("encodes");
        assert_eq!(json, "[1,3]");
        let back: TrackedSet<u8> = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, s);
    }
}
