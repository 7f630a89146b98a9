//! The key generations an encrypted codec holds. A workspace's key is
//! rotated when a member leaves, but files that did not change keep the
//! chunks written under earlier keys, so a member decodes with every
//! generation it holds and encodes with the current one alone.

use std::collections::BTreeMap;

use crate::aead::Crypto;
use crate::error::GenerationProblem;
use crate::format::MAX_KEY_GENERATION;
use crate::gear::GearTable;
use crate::keys::WorkspaceKey;

/// Every generation's derived secrets, each derived once.
pub(crate) struct KeyGenerations {
    current: u32,
    current_crypto: Crypto,
    /// The current generation's keyed gear table: only new chunks are cut,
    /// so no other generation's table is derived (4 KiB each, up to 65536
    /// generations).
    gear: GearTable,
    /// Every generation held but the current one.
    others: BTreeMap<u32, Crypto>,
}

impl KeyGenerations {
    /// Generation 1 alone, current: a workspace whose key was never
    /// rotated, and every codec made before key rotation existed.
    pub fn first(key: &WorkspaceKey) -> KeyGenerations {
        KeyGenerations {
            current: 1,
            current_crypto: Crypto::derive(key),
            gear: GearTable::keyed(&key.chunk_gear_key()),
            others: BTreeMap::new(),
        }
    }

    /// The generations `keys`, encoding with `current`, which must be among
    /// them; each generation in 1 to [`MAX_KEY_GENERATION`], given once.
    pub fn new<'k>(
        current: u32,
        keys: impl IntoIterator<Item = (u32, &'k WorkspaceKey)>,
    ) -> Result<KeyGenerations, GenerationProblem> {
        let mut others = BTreeMap::new();
        let mut current_keys = None;
        for (generation, key) in keys {
            if !(1..=MAX_KEY_GENERATION).contains(&generation) {
                return Err(GenerationProblem::OutOfRange {
                    generation,
                    max: MAX_KEY_GENERATION,
                });
            }
            let duplicate = if generation == current {
                let derived = (Crypto::derive(key), GearTable::keyed(&key.chunk_gear_key()));
                current_keys.replace(derived).is_some()
            } else {
                others.insert(generation, Crypto::derive(key)).is_some()
            };
            if duplicate {
                return Err(GenerationProblem::Duplicate { generation });
            }
        }
        match current_keys {
            Some((current_crypto, gear)) => Ok(KeyGenerations {
                current,
                current_crypto,
                gear,
                others,
            }),
            None if others.is_empty() => Err(GenerationProblem::Empty),
            None => Err(GenerationProblem::CurrentMissing { current }),
        }
    }

    /// The generation new chunks and deltas are written under.
    pub fn current(&self) -> u32 {
        self.current
    }

    /// The current generation's secrets.
    pub fn current_crypto(&self) -> &Crypto {
        &self.current_crypto
    }

    /// The current generation's keyed gear table.
    pub fn gear(&self) -> &GearTable {
        &self.gear
    }

    /// The secrets of `generation`, if held.
    pub fn get(&self, generation: u32) -> Option<&Crypto> {
        if generation == self.current {
            Some(&self.current_crypto)
        } else {
            self.others.get(&generation)
        }
    }
}
