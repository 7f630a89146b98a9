//! Trust on first use: the public identity first seen for each user is
//! pinned, and a later different one is reported until the user confirms
//! it (after comparing fingerprints out of band).
//!
//! Persisted layout: `"SSpn" | format u8 = 1 | count u32 | public identity
//! [80]*` in increasing user-id order (one entry per user). The client
//! keeps it in its own storage; it is not secret but must not be writable by
//! the server.

use std::collections::BTreeMap;

use stacksync_proto::ids::UserId;

use crate::codec::{Reader, Writer};
use crate::error::{ErrorKind, Result, fail};
use crate::identity::{Fingerprint, PUBLIC_IDENTITY_LEN, PublicIdentity};

const MAGIC: &[u8; 4] = b"SSpn";
const FORMAT: u8 = 1;
/// The most users a pin store holds.
pub const MAX_PINS: usize = 1 << 20;

/// What a pin store says about a public identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// The same keys as pinned.
    Known,
    /// No keys pinned for this user yet.
    FirstUse,
    /// Other keys are pinned for this user.
    Changed {
        /// Fingerprint of the pinned keys.
        old_fingerprint: Fingerprint,
        /// Fingerprint of the keys now presented.
        new_fingerprint: Fingerprint,
    },
}

/// The pinned public identity of every user this client has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinStore {
    pins: BTreeMap<UserId, PublicIdentity>,
}

impl PinStore {
    /// An empty store.
    pub fn new() -> PinStore {
        PinStore::default()
    }

    /// Compares `id` with what is pinned for its user.
    pub fn check(&self, id: &PublicIdentity) -> Pin {
        match self.pins.get(&id.user) {
            None => Pin::FirstUse,
            Some(old) if old == id => Pin::Known,
            Some(old) => Pin::Changed {
                old_fingerprint: old.fingerprint(),
                new_fingerprint: id.fingerprint(),
            },
        }
    }

    /// Pins `id` if its user has nothing pinned; accepts it again if the
    /// same keys are pinned. Refuses other keys with
    /// [`ErrorKind::KeyChanged`]: use [`PinStore::confirm_change`] for that.
    pub fn pin(&mut self, id: &PublicIdentity) -> Result<()> {
        match self.check(id) {
            Pin::Known => Ok(()),
            Pin::FirstUse => {
                if self.pins.len() >= MAX_PINS {
                    return fail(ErrorKind::InvalidInput);
                }
                self.pins.insert(id.user, *id);
                Ok(())
            }
            Pin::Changed { .. } => fail(ErrorKind::KeyChanged { user: id.user }),
        }
    }

    /// Replaces the pinned keys of `id.user` after the user confirmed the
    /// change (compared the new fingerprint out of band).
    pub fn confirm_change(&mut self, id: &PublicIdentity) {
        self.pins.insert(id.user, *id);
    }

    /// The identity pinned for `user`.
    pub fn get(&self, user: &UserId) -> Option<&PublicIdentity> {
        self.pins.get(user)
    }

    /// How many users are pinned.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// Whether nothing is pinned.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }

    /// The canonical encoding (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC).u8(FORMAT);
        w.u32(u32::try_from(self.pins.len()).expect("at most MAX_PINS pins"));
        for id in self.pins.values() {
            id.write(&mut w);
        }
        w.into_vec()
    }

    /// Decodes [`PinStore::encode`]; refuses unsorted or repeated users.
    pub fn decode(bytes: &[u8]) -> Result<PinStore> {
        let mut r = Reader::new(bytes);
        if r.take(4)? != MAGIC {
            return fail(ErrorKind::Malformed);
        }
        if r.u8()? != FORMAT {
            return fail(ErrorKind::Downgrade);
        }
        let n = r.count(MAX_PINS, PUBLIC_IDENTITY_LEN)?;
        let mut pins = BTreeMap::new();
        let mut last: Option<UserId> = None;
        for _ in 0..n {
            let id = PublicIdentity::read(&mut r)?;
            if last.is_some_and(|l| id.user <= l) {
                return fail(ErrorKind::Malformed);
            }
            last = Some(id.user);
            pins.insert(id.user, id);
        }
        r.finish()?;
        Ok(PinStore { pins })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    #[test]
    fn first_use_known_changed_confirm() {
        let alice = Identity::generate(UserId::new()).unwrap().public();
        let mut store = PinStore::new();
        assert_eq!(store.check(&alice), Pin::FirstUse);
        store.pin(&alice).unwrap();
        assert_eq!(store.check(&alice), Pin::Known);
        store.pin(&alice).unwrap();

        // The server (or a new device) presents other keys for Alice.
        let impostor = Identity::generate(alice.user).unwrap().public();
        assert_eq!(
            store.check(&impostor),
            Pin::Changed {
                old_fingerprint: alice.fingerprint(),
                new_fingerprint: impostor.fingerprint()
            }
        );
        assert_eq!(
            store.pin(&impostor).unwrap_err().kind(),
            &ErrorKind::KeyChanged { user: alice.user }
        );
        assert_eq!(store.get(&alice.user), Some(&alice));
        store.confirm_change(&impostor);
        assert_eq!(store.check(&impostor), Pin::Known);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn encode_decode_round_trip_and_canonical_order() {
        let mut store = PinStore::new();
        for _ in 0..5 {
            store
                .pin(&Identity::generate(UserId::new()).unwrap().public())
                .unwrap();
        }
        let bytes = store.encode();
        assert_eq!(PinStore::decode(&bytes).unwrap(), store);
        assert_eq!(
            PinStore::decode(&PinStore::new().encode()).unwrap(),
            PinStore::new()
        );
        // Swap the first two entries: no longer sorted, refused.
        let mut swapped = bytes.clone();
        let (a, b) = (9, 9 + PUBLIC_IDENTITY_LEN);
        let first = swapped[a..b].to_vec();
        swapped.copy_within(b..b + PUBLIC_IDENTITY_LEN, a);
        swapped[b..b + PUBLIC_IDENTITY_LEN].copy_from_slice(&first);
        assert!(PinStore::decode(&swapped).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(PinStore::decode(&trailing).is_err());
    }
}
