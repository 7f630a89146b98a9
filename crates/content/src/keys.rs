//! Workspace keys and the subkeys derived from them.
//!
//! A workspace key is 32 random bytes, the same for every member of an
//! encrypted workspace. It is never used directly: BLAKE3 `derive_key` with
//! a distinct context string gives one subkey per purpose, so a chunk id
//! (which the server sees) can never help an attacker against the
//! encryption key.

use std::fmt;

use zeroize::Zeroize;

use crate::error::{ContentError, KeyProblem};

const CHUNK_ID_CONTEXT: &str = "StackSync 2026 content v1 chunk id key";
const CHUNK_AEAD_CONTEXT: &str = "StackSync 2026 content v1 chunk XChaCha20-Poly1305 key";
const CHUNK_AES_CONTEXT: &str = "StackSync 2026 content v1 chunk AES-256-GCM master key";
const CHUNK_GEAR_CONTEXT: &str = "StackSync 2026 content v1 chunk boundary gear table key";

/// Fills `out` from the operating system's random source.
pub(crate) fn random_bytes(out: &mut [u8]) -> Result<(), ContentError> {
    getrandom::fill(out).map_err(|e| KeyProblem::Random(e.to_string()).into())
}

/// A 32-byte secret that is wiped from memory when dropped.
#[derive(Clone)]
pub(crate) struct Secret32(pub(crate) [u8; 32]);

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The data key of an encrypted workspace. Wiped from memory on drop;
/// `Debug` never prints it.
#[derive(Clone)]
pub struct WorkspaceKey {
    bytes: Secret32,
}

impl fmt::Debug for WorkspaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkspaceKey(<redacted>)")
    }
}

impl WorkspaceKey {
    /// A fresh random key, for a workspace being created or re-keyed.
    pub fn generate() -> Result<WorkspaceKey, ContentError> {
        let mut bytes = Secret32([0; 32]);
        random_bytes(&mut bytes.0)?;
        Ok(WorkspaceKey { bytes })
    }

    /// A key from its raw bytes (e.g. just unwrapped).
    pub fn from_bytes(bytes: [u8; 32]) -> WorkspaceKey {
        WorkspaceKey {
            bytes: Secret32(bytes),
        }
    }

    /// The raw key bytes. Only for wrapping or for handing to a secure store;
    /// never log or send them.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.bytes.0
    }

    /// The key for keyed-BLAKE3 chunk ids.
    pub(crate) fn chunk_id_key(&self) -> Secret32 {
        Secret32(blake3::derive_key(CHUNK_ID_CONTEXT, &self.bytes.0))
    }

    /// The XChaCha20-Poly1305 key for chunk bodies.
    pub(crate) fn chunk_aead_key(&self) -> Secret32 {
        Secret32(blake3::derive_key(CHUNK_AEAD_CONTEXT, &self.bytes.0))
    }

    /// The master key from which each AES-256-GCM chunk's own key is
    /// derived (see `format`); distinct from the XChaCha20 key so that one
    /// key never serves two ciphers.
    pub(crate) fn chunk_aes_master_key(&self) -> Secret32 {
        Secret32(blake3::derive_key(CHUNK_AES_CONTEXT, &self.bytes.0))
    }

    /// The key whose BLAKE3 output stream is the FastCDC gear table of an
    /// encrypted workspace (see `gear::GearTable::keyed`): cut points then
    /// depend on the key, so a server cannot match the chunk sequence of a
    /// file it knows.
    pub(crate) fn chunk_gear_key(&self) -> Secret32 {
        Secret32(blake3::derive_key(CHUNK_GEAR_CONTEXT, &self.bytes.0))
    }
}
