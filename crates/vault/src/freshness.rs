//! Rollback detection: the newest state this client has seen.
//!
//! The server could serve an old version of an item (or of the membership)
//! that is perfectly authentic, only stale. A client remembers the highest
//! version (and the hash of its sealed record) per item and the last
//! membership epoch and hash, and refuses anything older, or anything
//! different at the same position.
//!
//! Persisted layout: `"SSfr" | format u8 = 1 | membership: 0, or 1 then
//! epoch u64 | hash [32] | count u32 | (item [16] | version u64 | record
//! hash [32])*` in increasing item-id order. Keep it in the client's own
//! storage; it must not be writable by the server.

use std::collections::BTreeMap;

use stacksync_proto::ids::ItemId;

use crate::codec::{Reader, Writer};
use crate::error::{ErrorKind, Result, fail};

const MAGIC: &[u8; 4] = b"SSfr";
const FORMAT: u8 = 1;
/// The hash of a version seeded from the client's own state
/// ([`Freshness::seed`]); no record hashes to it in practice.
const UNKNOWN_HASH: [u8; 32] = [0; 32];
/// The most items a freshness record tracks.
pub const MAX_ITEMS: usize = 1 << 26;
const ITEM_LEN: usize = 16 + 8 + 32;

/// The newest version seen of each item and of the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freshness {
    items: BTreeMap<ItemId, (u64, [u8; 32])>,
    membership: Option<(u64, [u8; 32])>,
}

impl Freshness {
    /// Nothing seen yet.
    pub fn new() -> Freshness {
        Freshness::default()
    }

    /// Records that `version` of `item`, whose sealed record hashes to
    /// `record_hash` ([`crate::record::record_hash`]), was accepted.
    /// Refuses a lower version than seen ([`ErrorKind::Rollback`]) and the
    /// same version with another record ([`ErrorKind::Fork`]).
    pub fn observe(&mut self, item: ItemId, version: u64, record_hash: [u8; 32]) -> Result<()> {
        if let Some(&(seen, hash)) = self.items.get(&item) {
            if version < seen {
                return fail(ErrorKind::Rollback);
            }
            if version == seen && hash != record_hash && hash != UNKNOWN_HASH {
                return fail(ErrorKind::Fork);
            }
        }
        if !self.items.contains_key(&item) && self.items.len() >= MAX_ITEMS {
            return fail(ErrorKind::InvalidInput);
        }
        self.items.insert(item, (version, record_hash));
        Ok(())
    }

    /// Records that `version` of `item` was accepted earlier, from the
    /// client's own state, which keeps versions but not record hashes: an
    /// older version is then refused, and the first record seen again at
    /// this version is taken as the one to compare later ones with.
    pub fn seed(&mut self, item: ItemId, version: u64) -> Result<()> {
        match self.items.get(&item) {
            Some(&(seen, _)) if seen >= version => Ok(()),
            _ => self.observe(item, version, UNKNOWN_HASH),
        }
    }

    /// Records the membership statement at `epoch` with `hash` as seen;
    /// refuses a lower epoch, or the same epoch with another hash.
    pub fn observe_membership(&mut self, epoch: u64, hash: [u8; 32]) -> Result<()> {
        if let Some((seen, seen_hash)) = self.membership {
            if epoch < seen {
                return fail(ErrorKind::Rollback);
            }
            if epoch == seen && hash != seen_hash {
                return fail(ErrorKind::Fork);
            }
        }
        self.membership = Some((epoch, hash));
        Ok(())
    }

    /// The highest version of `item` seen.
    pub fn highest(&self, item: &ItemId) -> Option<u64> {
        self.items.get(item).map(|(v, _)| *v)
    }

    /// The last membership epoch and hash seen.
    pub fn membership(&self) -> Option<(u64, [u8; 32])> {
        self.membership
    }

    /// The canonical encoding (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC).u8(FORMAT);
        match &self.membership {
            None => w.u8(0),
            Some((epoch, hash)) => w.u8(1).u64(*epoch).raw(hash),
        };
        w.u32(u32::try_from(self.items.len()).expect("at most MAX_ITEMS"));
        for (item, (version, hash)) in &self.items {
            w.item(item).u64(*version).raw(hash);
        }
        w.into_vec()
    }

    /// Decodes [`Freshness::encode`]; refuses unsorted or repeated items.
    pub fn decode(bytes: &[u8]) -> Result<Freshness> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return fail(ErrorKind::Malformed);
        }
        if r.u8()? != FORMAT {
            return fail(ErrorKind::Downgrade);
        }
        let membership = match r.bool()? {
            false => None,
            true => Some((r.u64()?, r.array()?)),
        };
        let n = r.count(MAX_ITEMS, ITEM_LEN)?;
        let mut items = BTreeMap::new();
        let mut last: Option<ItemId> = None;
        for _ in 0..n {
            let item = r.item()?;
            if last.is_some_and(|l| item <= l) {
                return fail(ErrorKind::Malformed);
            }
            last = Some(item);
            items.insert(item, (r.u64()?, r.array()?));
        }
        r.finish()?;
        Ok(Freshness { items, membership })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_version_refuses_older_and_pins_the_first_record_seen() {
        let item = ItemId::new();
        let mut f = Freshness::new();
        f.seed(item, 3).unwrap();
        assert_eq!(
            f.observe(item, 2, [1; 32]).unwrap_err().kind(),
            &ErrorKind::Rollback
        );
        f.observe(item, 3, [1; 32]).unwrap();
        f.observe(item, 3, [1; 32]).unwrap();
        assert_eq!(
            f.observe(item, 3, [2; 32]).unwrap_err().kind(),
            &ErrorKind::Fork
        );
        // Seeding an older version later changes nothing.
        f.seed(item, 1).unwrap();
        assert_eq!(f.highest(&item), Some(3));
    }

    /// CCS 2024 class (no rollback protection): an authentic but older
    /// version replayed after a newer one was seen.
    #[test]
    fn replayed_old_version_is_rollback() {
        let mut f = Freshness::new();
        let item = ItemId::new();
        f.observe(item, 1, [1; 32]).unwrap();
        f.observe(item, 2, [2; 32]).unwrap();
        assert_eq!(
            f.observe(item, 1, [1; 32]).unwrap_err().kind(),
            &ErrorKind::Rollback
        );
        f.observe(item, 2, [2; 32]).unwrap();
        assert_eq!(
            f.observe(item, 2, [9; 32]).unwrap_err().kind(),
            &ErrorKind::Fork
        );
        f.observe(item, 5, [5; 32]).unwrap();
        assert_eq!(f.highest(&item), Some(5));
    }

    #[test]
    fn membership_epoch_rollback_and_fork() {
        let mut f = Freshness::new();
        f.observe_membership(3, [3; 32]).unwrap();
        assert_eq!(
            f.observe_membership(2, [2; 32]).unwrap_err().kind(),
            &ErrorKind::Rollback
        );
        assert_eq!(
            f.observe_membership(3, [4; 32]).unwrap_err().kind(),
            &ErrorKind::Fork
        );
        f.observe_membership(3, [3; 32]).unwrap();
        f.observe_membership(4, [4; 32]).unwrap();
        assert_eq!(f.membership(), Some((4, [4; 32])));
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut f = Freshness::new();
        assert_eq!(Freshness::decode(&f.encode()).unwrap(), f);
        f.observe_membership(7, [7; 32]).unwrap();
        for v in 1..=4 {
            f.observe(ItemId::new(), v, [v as u8; 32]).unwrap();
        }
        let bytes = f.encode();
        let back = Freshness::decode(&bytes).unwrap();
        assert_eq!(back, f);
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Freshness::decode(&trailing).is_err());
        let mut old = bytes;
        old[4] = 0;
        assert_eq!(
            Freshness::decode(&old).unwrap_err().kind(),
            &ErrorKind::Downgrade
        );
    }
}
