//! Key wrapping: a workspace key sealed under a passphrase (Argon2id) or
//! under a member's X25519 public key, and a member's own private key sealed
//! under their passphrase.
//!
//! Blob layout (all integers little-endian), version 1:
//!
//! ```text
//! 0..4   magic "SSwk"
//! 4      version (1)
//! 5      method: 1 = passphrase/Argon2id, 2 = X25519
//! 6      kind of secret: 1 = workspace key, 2 = member private key
//! 7      reserved, 0
//! method 1: m_cost KiB u32, t_cost u32, p_cost u32, salt [16]
//! method 2: ephemeral public key [32]
//! nonce [24]
//! ciphertext [32] + Poly1305 tag [16]
//! ```
//!
//! Everything before the ciphertext is authenticated as associated data, so
//! the parameters, the method and the kind of secret cannot be swapped.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::error::{ContentError, KeyProblem};
use crate::keys::{Secret32, WorkspaceKey, random_bytes};

const MAGIC: &[u8; 4] = b"SSwk";
const VERSION: u8 = 1;
const METHOD_PASSPHRASE: u8 = 1;
const METHOD_X25519: u8 = 2;
const KIND_WORKSPACE_KEY: u8 = 1;
const KIND_MEMBER_SECRET: u8 = 2;
const PREFIX_LEN: usize = 8;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const SEALED_LEN: usize = 32 + 16;
const MEMBER_KEK_CONTEXT: &str = "StackSync 2026 content v1 member key wrap";

/// Argon2id cost parameters for deriving a key-encryption key from a
/// passphrase. Stored in the wrapped blob, so they can be raised later
/// without breaking old blobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: RFC 9106's memory-constrained
    /// recommendation, about a quarter second on one core here.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// The most memory an unwrap will spend (1 GiB): a hostile blob must not
    /// be able to exhaust the machine.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes an unwrap will run.
    pub const MAX_ITERATIONS: u32 = 64;
    /// The most lanes an unwrap will use.
    pub const MAX_PARALLELISM: u32 = 16;

    fn argon2(&self) -> Result<Argon2<'static>, ContentError> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(
                KeyProblem::BadParams(format!("{self:?} above the accepted maximum")).into(),
            );
        }
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| KeyProblem::BadParams(format!("{self:?}: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<Secret32, ContentError> {
        let mut kek = Secret32([0; 32]);
        self.argon2()?
            .hash_password_into(passphrase, salt, &mut kek.0)
            .map_err(|e| KeyProblem::BadParams(e.to_string()))?;
        Ok(kek)
    }
}

/// A versioned, self-describing wrapped-key blob. Store and send it as
/// opaque bytes ([`WrappedKey::as_bytes`], [`WrappedKey::from_bytes`]).
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

impl WrappedKey {
    /// The blob's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Takes a blob from storage. Structure is checked here; authenticity
    /// only when unwrapping.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<WrappedKey, ContentError> {
        let blob = WrappedKey(bytes);
        let (method, _) = blob.prefix()?;
        let expected = match method {
            METHOD_PASSPHRASE => PREFIX_LEN + 12 + SALT_LEN + NONCE_LEN + SEALED_LEN,
            METHOD_X25519 => PREFIX_LEN + 32 + NONCE_LEN + SEALED_LEN,
            _ => return Err(KeyProblem::Malformed("unknown wrapping method").into()),
        };
        if blob.0.len() != expected {
            return Err(KeyProblem::Malformed("wrong length for its method").into());
        }
        Ok(blob)
    }

    /// The Argon2id parameters of a passphrase-sealed blob (`None` for
    /// another method), so that a caller can refuse parameters below its
    /// own floor before spending anything on them.
    pub fn kdf_params(&self) -> Option<KdfParams> {
        let (method, _) = self.prefix().ok()?;
        if method != METHOD_PASSPHRASE {
            return None;
        }
        let b = self.0.get(PREFIX_LEN..PREFIX_LEN + 12)?;
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Some(KdfParams {
            memory_kib: word(0),
            iterations: word(4),
            parallelism: word(8),
        })
    }

    /// Method and kind bytes, after checking magic, version and reserved.
    fn prefix(&self) -> Result<(u8, u8), ContentError> {
        let b = &self.0;
        if b.len() < PREFIX_LEN || &b[..4] != MAGIC {
            return Err(KeyProblem::Malformed("bad magic").into());
        }
        if b[4] != VERSION {
            return Err(KeyProblem::UnsupportedVersion(b[4]).into());
        }
        if b[7] != 0 {
            return Err(KeyProblem::Malformed("reserved byte set").into());
        }
        Ok((b[5], b[6]))
    }

    fn check(&self, method: u8, kind: u8) -> Result<(), ContentError> {
        let (found_method, found_kind) = self.prefix()?;
        if found_method != method {
            return Err(KeyProblem::WrongMethod {
                expected: method,
                found: found_method,
            }
            .into());
        }
        if found_kind != kind {
            return Err(KeyProblem::WrongKind {
                expected: kind,
                found: found_kind,
            }
            .into());
        }
        WrappedKey::from_bytes(self.0.clone()).map(|_| ())
    }
}

/// Seals `secret` under `kek`; `header` (prefix + method fields) becomes
/// the associated data and the start of the blob.
fn seal(
    mut header: Vec<u8>,
    kek: &Secret32,
    secret: &Secret32,
) -> Result<WrappedKey, ContentError> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce)?;
    header.extend_from_slice(&nonce);
    let mut body = Secret32(secret.0);
    let cipher = XChaCha20Poly1305::new(&kek.0.into());
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), &header, body.0.as_mut_slice().into())
        .map_err(|_| KeyProblem::Malformed("AEAD refused a 32-byte key"))?;
    header.extend_from_slice(&body.0);
    header.extend_from_slice(&tag);
    Ok(WrappedKey(header))
}

/// Opens a blob whose method-specific fields end at `fields_end`.
fn open(blob: &WrappedKey, fields_end: usize, kek: &Secret32) -> Result<Secret32, ContentError> {
    let b = &blob.0;
    let (aad, rest) = b.split_at(fields_end + NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = aad[fields_end..]
        .try_into()
        .map_err(|_| KeyProblem::Malformed("nonce"))?;
    let mut out = Secret32([0; 32]);
    out.0.copy_from_slice(&rest[..32]);
    let tag: [u8; 16] = rest[32..]
        .try_into()
        .map_err(|_| KeyProblem::Malformed("tag"))?;
    XChaCha20Poly1305::new(&kek.0.into())
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            aad,
            out.0.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .map_err(|_| KeyProblem::Unwrap)?;
    Ok(out)
}

fn prefix(method: u8, kind: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(PREFIX_LEN + 12 + SALT_LEN + NONCE_LEN + SEALED_LEN);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&[VERSION, method, kind, 0]);
    v
}

fn wrap_passphrase(
    secret: &Secret32,
    kind: u8,
    passphrase: &[u8],
    params: &KdfParams,
) -> Result<WrappedKey, ContentError> {
    let mut salt = [0u8; SALT_LEN];
    random_bytes(&mut salt)?;
    let kek = params.derive(passphrase, &salt)?;
    let mut header = prefix(METHOD_PASSPHRASE, kind);
    for v in [params.memory_kib, params.iterations, params.parallelism] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&salt);
    seal(header, &kek, secret)
}

fn unwrap_passphrase(
    blob: &WrappedKey,
    kind: u8,
    passphrase: &[u8],
) -> Result<Secret32, ContentError> {
    blob.check(METHOD_PASSPHRASE, kind)?;
    let b = &blob.0;
    let word = |i: usize| {
        let at = PREFIX_LEN + 4 * i;
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    };
    let params = KdfParams {
        memory_kib: word(0),
        iterations: word(1),
        parallelism: word(2),
    };
    let salt_at = PREFIX_LEN + 12;
    let kek = params.derive(passphrase, &b[salt_at..salt_at + SALT_LEN])?;
    open(blob, salt_at + SALT_LEN, &kek)
}

/// The key-encryption key for X25519 wrapping: binds the shared secret to
/// both public keys so a blob cannot be re-targeted.
fn member_kek(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32]) -> Secret32 {
    let mut hasher = blake3::Hasher::new_derive_key(MEMBER_KEK_CONTEXT);
    hasher.update(shared).update(ephemeral).update(recipient);
    Secret32(*hasher.finalize().as_bytes())
}

/// A member's X25519 public key, published so others can wrap workspace
/// keys to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberPublicKey(pub [u8; 32]);

/// A member's X25519 private key. Wiped on drop; keep it at rest only as a
/// [`WrappedKey`] made by [`MemberSecretKey::wrap_with_passphrase`].
#[derive(Clone)]
pub struct MemberSecretKey(Secret32);

impl fmt::Debug for MemberSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberSecretKey(public {:?})", self.public_key())
    }
}

impl MemberSecretKey {
    /// A fresh random key pair.
    pub fn generate() -> Result<MemberSecretKey, ContentError> {
        let mut s = Secret32([0; 32]);
        random_bytes(&mut s.0)?;
        Ok(MemberSecretKey(s))
    }

    /// A key from its raw bytes (clamping happens inside X25519).
    pub fn from_bytes(bytes: [u8; 32]) -> MemberSecretKey {
        MemberSecretKey(Secret32(bytes))
    }

    /// The matching public key.
    pub fn public_key(&self) -> MemberPublicKey {
        MemberPublicKey(PublicKey::from(&StaticSecret::from(self.0.0)).to_bytes())
    }

    /// Seals this private key under the member's passphrase.
    pub fn wrap_with_passphrase(
        &self,
        passphrase: &[u8],
        params: &KdfParams,
    ) -> Result<WrappedKey, ContentError> {
        wrap_passphrase(&self.0, KIND_MEMBER_SECRET, passphrase, params)
    }

    /// Opens a private key sealed by [`MemberSecretKey::wrap_with_passphrase`].
    pub fn unwrap_with_passphrase(
        blob: &WrappedKey,
        passphrase: &[u8],
    ) -> Result<MemberSecretKey, ContentError> {
        unwrap_passphrase(blob, KIND_MEMBER_SECRET, passphrase).map(MemberSecretKey)
    }
}

impl WorkspaceKey {
    /// Seals this key under a passphrase with Argon2id and XChaCha20-Poly1305.
    pub fn wrap_with_passphrase(
        &self,
        passphrase: &[u8],
        params: &KdfParams,
    ) -> Result<WrappedKey, ContentError> {
        let secret = Secret32(*self.expose_bytes());
        wrap_passphrase(&secret, KIND_WORKSPACE_KEY, passphrase, params)
    }

    /// Opens a key sealed by [`WorkspaceKey::wrap_with_passphrase`].
    pub fn unwrap_with_passphrase(
        blob: &WrappedKey,
        passphrase: &[u8],
    ) -> Result<WorkspaceKey, ContentError> {
        let s = unwrap_passphrase(blob, KIND_WORKSPACE_KEY, passphrase)?;
        Ok(WorkspaceKey::from_bytes(s.0))
    }

    /// Seals this key to one member: ephemeral X25519 agreement with their
    /// public key, BLAKE3 key derivation, XChaCha20-Poly1305.
    pub fn wrap_for_member(&self, member: &MemberPublicKey) -> Result<WrappedKey, ContentError> {
        let mut eph = Secret32([0; 32]);
        random_bytes(&mut eph.0)?;
        let eph_secret = StaticSecret::from(eph.0);
        let eph_public = PublicKey::from(&eph_secret).to_bytes();
        let shared = eph_secret.diffie_hellman(&PublicKey::from(member.0));
        if !shared.was_contributory() {
            return Err(KeyProblem::WeakPublicKey.into());
        }
        let kek = member_kek(shared.as_bytes(), &eph_public, &member.0);
        let mut header = prefix(METHOD_X25519, KIND_WORKSPACE_KEY);
        header.extend_from_slice(&eph_public);
        seal(header, &kek, &Secret32(*self.expose_bytes()))
    }

    /// Opens a key sealed to this member by [`WorkspaceKey::wrap_for_member`].
    pub fn unwrap_for_member(
        blob: &WrappedKey,
        member: &MemberSecretKey,
    ) -> Result<WorkspaceKey, ContentError> {
        blob.check(METHOD_X25519, KIND_WORKSPACE_KEY)?;
        let mut eph_public = [0u8; 32];
        eph_public.copy_from_slice(&blob.0[PREFIX_LEN..PREFIX_LEN + 32]);
        let secret = StaticSecret::from(member.0.0);
        let shared = secret.diffie_hellman(&PublicKey::from(eph_public));
        if !shared.was_contributory() {
            return Err(KeyProblem::Unwrap.into());
        }
        let kek = member_kek(shared.as_bytes(), &eph_public, &member.public_key().0);
        let s = open(blob, PREFIX_LEN + 32, &kek)?;
        Ok(WorkspaceKey::from_bytes(s.0))
    }
}
