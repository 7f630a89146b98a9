//! The key ring of one workspace: every key generation a member may use.
//!
//! Keys come only from a verified membership statement
//! ([`crate::membership`]); a key ring is never built from bytes the server
//! chose. Each generation's [`WorkspaceKey`] is used directly only by
//! content's chunk codec (which derives its own subkeys); this crate derives
//! one subkey per purpose with BLAKE3 `derive_key` and a distinct context
//! string, so a key never serves two purposes.
//!
//! Persistence: [`KeyRing::seal`] encrypts the ring under a 32-byte local
//! key the client keeps in the platform's secret store (or derives from its
//! identity); [`KeyRing::open`] reverses it. Layout:
//! `"SSkr" | format u8 = 1 | nonce [24] | XChaCha20-Poly1305(body) + tag`,
//! AAD = the first 5 bytes; body = `workspace [16] | current u32 |
//! count u32 | (generation u32 | key [32])*` in increasing generation order.

use std::collections::BTreeMap;
use std::fmt;

use stacksync_content::WorkspaceKey;
use stacksync_proto::ids::WorkspaceId;
use zeroize::{Zeroize, Zeroizing};

use crate::codec::{Reader, Writer};
use crate::crypto::{self, Key32};
use crate::error::{ErrorKind, Result, fail};

const NAME_KEY_CONTEXT: &str = "StackSync 2026 vault v1 item name XChaCha20-Poly1305 key";
const RECORD_KEY_CONTEXT: &str = "StackSync 2026 vault v1 item record XChaCha20-Poly1305 key";
const HISTORY_KEY_CONTEXT: &str = "StackSync 2026 vault v1 membership history key";
const MAGIC: &[u8; 4] = b"SSkr";
const FORMAT: u8 = 1;
/// The most generations a ring (and a statement's history) may hold.
pub const MAX_GENERATIONS: usize = 1 << 16;

/// A workspace key generation. Generation 1 is the key of the genesis
/// statement; each rotation adds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u32);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "generation {}", self.0)
    }
}

/// All key generations of one workspace a member can read, and the current
/// one, under which everything new is written.
#[derive(Clone)]
pub struct KeyRing {
    workspace: WorkspaceId,
    current: Generation,
    keys: BTreeMap<Generation, WorkspaceKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyRing({:?}, current {}, {} generations)",
            self.workspace,
            self.current.0,
            self.keys.len()
        )
    }
}

impl KeyRing {
    /// A ring whose keys are `keys`; `current` must be among them.
    pub(crate) fn new(
        workspace: WorkspaceId,
        current: Generation,
        keys: BTreeMap<Generation, WorkspaceKey>,
    ) -> Result<KeyRing> {
        if !keys.contains_key(&current) || keys.len() > MAX_GENERATIONS {
            return fail(ErrorKind::Malformed);
        }
        Ok(KeyRing {
            workspace,
            current,
            keys,
        })
    }

    /// The workspace these keys belong to.
    pub fn workspace(&self) -> WorkspaceId {
        self.workspace
    }

    /// The generation new data is written under.
    pub fn current(&self) -> Generation {
        self.current
    }

    /// The generations held, oldest first.
    pub fn generations(&self) -> impl Iterator<Item = Generation> + '_ {
        self.keys.keys().copied()
    }

    /// The key of `generation` (give it to content's `ChunkCodec::encrypted`).
    pub fn key(&self, generation: Generation) -> Result<&WorkspaceKey> {
        self.keys
            .get(&generation)
            .ok_or_else(|| ErrorKind::UnknownGeneration.into())
    }

    /// The key of the current generation.
    pub fn current_key(&self) -> &WorkspaceKey {
        self.keys
            .get(&self.current)
            .expect("KeyRing::new checks that the current generation is held")
    }

    pub(crate) fn name_key(&self, generation: Generation) -> Result<Key32> {
        Ok(derive(NAME_KEY_CONTEXT, self.key(generation)?))
    }

    pub(crate) fn record_key(&self, generation: Generation) -> Result<Key32> {
        Ok(derive(RECORD_KEY_CONTEXT, self.key(generation)?))
    }

    /// Appends the ring in clear: `workspace [16] | current u32 | count u32
    /// | (generation u32 | key [32])*` in increasing generation order. Only
    /// ever written inside an AEAD.
    pub(crate) fn write_clear(&self, w: &mut Writer) {
        w.workspace(&self.workspace).u32(self.current.0);
        w.u32(u32::try_from(self.keys.len()).expect("at most MAX_GENERATIONS keys"));
        for (g, k) in &self.keys {
            w.u32(g.0).raw(k.expose_bytes());
        }
    }

    /// Reads [`KeyRing::write_clear`].
    pub(crate) fn read_clear(r: &mut Reader<'_>) -> Result<KeyRing> {
        let workspace = r.workspace()?;
        let current = Generation(r.u32()?);
        let n = r.count(MAX_GENERATIONS, 36)?;
        let mut keys = BTreeMap::new();
        let mut last = None;
        for _ in 0..n {
            let g = Generation(r.u32()?);
            if last.is_some_and(|l| g <= l) {
                return fail(ErrorKind::Malformed);
            }
            last = Some(g);
            let mut k = r.array::<32>()?;
            keys.insert(g, WorkspaceKey::from_bytes(k));
            k.zeroize();
        }
        KeyRing::new(workspace, current, keys)
    }

    /// Encrypts the ring under a local key for the client's own storage.
    pub fn seal(&self, local_key: &[u8; 32]) -> Result<Vec<u8>> {
        let mut body = Writer::new();
        self.write_clear(&mut body);
        let mut plain = Zeroizing::new(body.into_vec());
        crypto::seal_local(MAGIC, FORMAT, local_key, &mut plain)
    }

    /// Opens a ring sealed by [`KeyRing::seal`] under the same local key.
    pub fn open(bytes: &[u8], local_key: &[u8; 32]) -> Result<KeyRing> {
        let plain = crypto::open_local(bytes, MAGIC, FORMAT, local_key)?;
        let mut r = Reader::new(&plain);
        let ring = KeyRing::read_clear(&mut r)?;
        r.finish()?;
        Ok(ring)
    }

    /// The key under which a statement's history of older generations is
    /// sealed (derived from the statement's current generation key).
    pub(crate) fn history_key(key: &WorkspaceKey) -> Key32 {
        derive(HISTORY_KEY_CONTEXT, key)
    }
}

fn derive(context: &str, key: &WorkspaceKey) -> Key32 {
    Key32(blake3::derive_key(context, key.expose_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        let mut keys = BTreeMap::new();
        keys.insert(Generation(1), WorkspaceKey::from_bytes([1; 32]));
        keys.insert(Generation(2), WorkspaceKey::from_bytes([2; 32]));
        KeyRing::new(WorkspaceId::new(), Generation(2), keys).unwrap()
    }

    #[test]
    fn seal_open_round_trip() {
        let ring = ring();
        let sealed = ring.seal(&[9; 32]).unwrap();
        let back = KeyRing::open(&sealed, &[9; 32]).unwrap();
        assert_eq!(back.workspace(), ring.workspace());
        assert_eq!(back.current(), Generation(2));
        assert_eq!(back.key(Generation(1)).unwrap().expose_bytes(), &[1; 32]);
        assert_eq!(back.generations().count(), 2);
        assert_eq!(
            back.key(Generation(3)).unwrap_err().kind(),
            &ErrorKind::UnknownGeneration
        );
    }

    /// Sealed local state must not open under another key or after any flip.
    #[test]
    fn every_flipped_byte_or_wrong_key_is_refused() {
        let sealed = ring().seal(&[9; 32]).unwrap();
        assert!(KeyRing::open(&sealed, &[8; 32]).is_err());
        for i in 0..sealed.len() {
            let mut b = sealed.clone();
            b[i] ^= 0x01;
            assert!(KeyRing::open(&b, &[9; 32]).is_err(), "byte {i}");
        }
    }

    #[test]
    fn purpose_keys_differ() {
        let ring = ring();
        let g = Generation(2);
        let name = ring.name_key(g).unwrap();
        let record = ring.record_key(g).unwrap();
        let history = KeyRing::history_key(ring.key(g).unwrap());
        assert_ne!(name.0, record.0);
        assert_ne!(name.0, history.0);
        assert_ne!(&name.0, ring.key(g).unwrap().expose_bytes());
    }
}
