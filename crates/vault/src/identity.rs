//! A user's long-term identity: an X25519 key (to receive workspace keys)
//! and an Ed25519 key (to sign statements and records), bound to a
//! [`UserId`].
//!
//! Both keys derive from one 32-byte root secret with BLAKE3 `derive_key`,
//! so an identity is one secret to seal. Sealed layout (integers LE):
//!
//! ```text
//! "SSid" | format u8 = 1 | user [16] | wrapped: u16 len + content passphrase
//! blob of the root | binding [32]
//! ```
//!
//! The root is sealed by content's `WorkspaceKey::wrap_with_passphrase`
//! (Argon2id + XChaCha20-Poly1305; content has no "identity" kind, and its
//! KDF and AEAD are the ones to reuse). `binding` is a keyed BLAKE3 MAC,
//! under a key derived from the root, over everything before it: the user
//! id and the whole blob cannot be swapped (e.g. for a workspace recovery
//! copy sealed with the same passphrase). The Argon2 parameters are checked
//! against [`crate::MIN_KDF`] before Argon2 runs.
//!
//! A public identity is encoded as `user [16] | x25519 [32] | ed25519 [32]`
//! (80 bytes). Its fingerprint is BLAKE3 `derive_key` with context
//! [`FINGERPRINT_CONTEXT`] over that encoding; shown to humans as the first
//! 20 bytes (160 bits) in RFC 4648 base32, lower case, in 8 groups of 4
//! characters separated by spaces (`"abcd efgh ijkl mnop qrst uvwx yz23 4567"`).

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use stacksync_content::{KdfParams, MemberPublicKey, MemberSecretKey, WorkspaceKey, WrappedKey};
use stacksync_proto::ids::UserId;
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto;
use crate::error::{ErrorKind, Result, fail};
use crate::kdf;

const LOCAL_MAGIC: &[u8; 4] = b"SSil";
const X25519_CONTEXT: &str = "StackSync 2026 vault v1 identity X25519 secret";
const ED25519_CONTEXT: &str = "StackSync 2026 vault v1 identity Ed25519 seed";
const BINDING_CONTEXT: &str = "StackSync 2026 vault v1 identity blob binding key";
/// The BLAKE3 context of identity fingerprints.
pub const FINGERPRINT_CONTEXT: &str = "StackSync 2026 vault v1 identity fingerprint";
const MAGIC: &[u8; 4] = b"SSid";
const FORMAT: u8 = 1;
/// Length of a public identity's canonical encoding.
pub const PUBLIC_IDENTITY_LEN: usize = 80;
/// The longest passphrase-wrapped blob content produces (with slack).
const MAX_WRAPPED_LEN: usize = 256;

/// A user's public keys, as pinned and as listed in membership statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicIdentity {
    /// Whose keys these are.
    pub user: UserId,
    /// Where workspace keys are wrapped to.
    pub x25519: MemberPublicKey,
    /// What verifies their signatures.
    pub ed25519: [u8; 32],
}

impl PublicIdentity {
    /// The canonical 80-byte encoding.
    pub fn to_bytes(&self) -> [u8; PUBLIC_IDENTITY_LEN] {
        let mut out = [0u8; PUBLIC_IDENTITY_LEN];
        out[..16].copy_from_slice(self.user.0.as_bytes());
        out[16..48].copy_from_slice(&self.x25519.0);
        out[48..].copy_from_slice(&self.ed25519);
        out
    }

    /// Decodes [`PublicIdentity::to_bytes`]; refuses an Ed25519 key that is
    /// not a point or is of small order.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicIdentity> {
        let mut r = Reader::new(bytes);
        let id = PublicIdentity::read(&mut r)?;
        r.finish()?;
        Ok(id)
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.to_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<PublicIdentity> {
        let user = r.user()?;
        let x25519 = MemberPublicKey(r.array()?);
        let ed25519 = r.array()?;
        let id = PublicIdentity {
            user,
            x25519,
            ed25519,
        };
        id.verifying_key()?;
        Ok(id)
    }

    fn verifying_key(&self) -> Result<VerifyingKey> {
        let key = VerifyingKey::from_bytes(&self.ed25519).map_err(|_| ErrorKind::Malformed)?;
        if key.is_weak() {
            return fail(ErrorKind::Malformed);
        }
        Ok(key)
    }

    /// Whether `signature` by this identity verifies over `domain || message`
    /// (strict Ed25519: no malleable or small-order signatures).
    pub(crate) fn verify(&self, domain: &str, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let mut signed = Vec::with_capacity(domain.len() + 1 + message.len());
        signed.extend_from_slice(domain.as_bytes());
        signed.push(0);
        signed.extend_from_slice(message);
        self.verifying_key()
            .map_err(|_| ErrorKind::Tampered)?
            .verify_strict(&signed, &Signature::from_bytes(signature))
            .map_err(|_| ErrorKind::Tampered.into())
    }

    /// The fingerprint users compare out of band.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(blake3::derive_key(FINGERPRINT_CONTEXT, &self.to_bytes()))
    }
}

/// A 32-byte digest of a public identity; `Display` shows its first 160
/// bits for humans (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut chars = String::with_capacity(39);
        // 20 bytes = 160 bits = 32 base32 digits, 5 bits each.
        for i in 0..32 {
            let bit = i * 5;
            let (byte, shift) = (bit / 8, bit % 8);
            let two = (u16::from(self.0[byte]) << 8) | u16::from(self.0[byte + 1]);
            let digit = (two >> (11 - shift)) & 0x1f;
            if i > 0 && i % 4 == 0 {
                chars.push(' ');
            }
            chars.push(char::from(ALPHABET[usize::from(digit)]));
        }
        f.write_str(&chars)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A user's long-term secret keys. Wiped on drop; `Debug` shows only the
/// user and fingerprint.
pub struct Identity {
    user: UserId,
    root: Zeroizing<[u8; 32]>,
    x25519: MemberSecretKey,
    ed25519: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Identity({:?}, {})",
            self.user,
            self.public().fingerprint()
        )
    }
}

impl Identity {
    /// A fresh identity for `user`.
    pub fn generate(user: UserId) -> Result<Identity> {
        let mut root = Zeroizing::new([0u8; 32]);
        crypto::random(root.as_mut_slice())?;
        Ok(Identity::from_root(user, root))
    }

    fn from_root(user: UserId, root: Zeroizing<[u8; 32]>) -> Identity {
        let x = Zeroizing::new(blake3::derive_key(X25519_CONTEXT, root.as_slice()));
        let seed = Zeroizing::new(blake3::derive_key(ED25519_CONTEXT, root.as_slice()));
        Identity {
            user,
            x25519: MemberSecretKey::from_bytes(*x),
            ed25519: SigningKey::from_bytes(&seed),
            root,
        }
    }

    /// Whose identity this is.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The public half, to publish and to pin.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            user: self.user,
            x25519: self.x25519.public_key(),
            ed25519: self.ed25519.verifying_key().to_bytes(),
        }
    }

    pub(crate) fn x25519(&self) -> &MemberSecretKey {
        &self.x25519
    }

    /// Signs `domain || 0 || message`; the domain string keeps a signature
    /// made for one kind of blob from being valid for another.
    pub(crate) fn sign(&self, domain: &str, message: &[u8]) -> [u8; 64] {
        let mut signed = Vec::with_capacity(domain.len() + 1 + message.len());
        signed.extend_from_slice(domain.as_bytes());
        signed.push(0);
        signed.extend_from_slice(message);
        self.ed25519.sign(&signed).to_bytes()
    }

    /// Seals the identity under a passphrase; `params` must meet
    /// [`crate::MIN_KDF`] (else [`ErrorKind::InvalidInput`]).
    pub fn seal(&self, passphrase: &[u8], params: KdfParams) -> Result<Vec<u8>> {
        kdf::check_sealing_params(&params)?;
        let wrapped = WorkspaceKey::from_bytes(*self.root)
            .wrap_with_passphrase(passphrase, &params)
            .map_err(|_| ErrorKind::InvalidInput)?;
        let mut w = Writer::new();
        w.raw(MAGIC)
            .u8(FORMAT)
            .user(&self.user)
            .bytes16(wrapped.as_bytes());
        let tag = binding(&self.root, w.as_slice());
        w.raw(tag.as_bytes());
        Ok(w.into_vec())
    }

    /// Seals the identity for the client's own storage under `local_key`
    /// (a key kept on the device), so that the daemon opens it without
    /// the passphrase's Argon2 work.
    pub fn seal_local(&self, local_key: &[u8; 32]) -> Result<Vec<u8>> {
        let mut w = Writer::new();
        w.user(&self.user).raw(self.root.as_slice());
        let mut plain = Zeroizing::new(w.into_vec());
        crypto::seal_local(LOCAL_MAGIC, FORMAT, local_key, &mut plain)
    }

    /// Opens what [`Identity::seal_local`] sealed with the same key.
    pub fn open_local(bytes: &[u8], local_key: &[u8; 32]) -> Result<Identity> {
        let plain = crypto::open_local(bytes, LOCAL_MAGIC, FORMAT, local_key)?;
        let mut r = Reader::new(&plain);
        let user = r.user()?;
        let root = Zeroizing::new(r.array::<32>()?);
        r.finish()?;
        Ok(Identity::from_root(user, root))
    }

    /// Opens a blob made by [`Identity::seal`]. Refuses a format other than
    /// this one and KDF parameters below the floor ([`ErrorKind::Downgrade`],
    /// before any Argon2 work), a wrong passphrase
    /// ([`ErrorKind::WrongPassphrase`]) and a blob whose parts were swapped
    /// ([`ErrorKind::Tampered`]).
    pub fn open(bytes: &[u8], passphrase: &[u8]) -> Result<Identity> {
        let (user, wrapped, tag) = parse_sealed(bytes)?;
        let blob = WrappedKey::from_bytes(wrapped.to_vec()).map_err(|_| ErrorKind::Malformed)?;
        let root = WorkspaceKey::unwrap_with_passphrase(&blob, passphrase)
            .map_err(|_| ErrorKind::WrongPassphrase)?;
        let root = Zeroizing::new(*root.expose_bytes());
        let covered = &bytes[..bytes.len() - 32];
        if binding(&root, covered) != blake3::Hash::from(tag) {
            return fail(ErrorKind::Tampered);
        }
        Ok(Identity::from_root(user, root))
    }
}

/// The structural part of [`Identity::open`]: everything checked before
/// Argon2 runs. Total on any input.
pub(crate) fn parse_sealed(bytes: &[u8]) -> Result<(UserId, &[u8], [u8; 32])> {
    let mut r = Reader::new(bytes);
    if r.take(4)? != MAGIC {
        return fail(ErrorKind::Malformed);
    }
    if r.u8()? != FORMAT {
        return fail(ErrorKind::Downgrade);
    }
    let user = r.user()?;
    let wrapped = r.bytes16(MAX_WRAPPED_LEN)?;
    let tag = r.array::<32>()?;
    r.finish()?;
    kdf::check_passphrase_blob(wrapped)?;
    Ok((user, wrapped, tag))
}

fn binding(root: &[u8; 32], covered: &[u8]) -> blake3::Hash {
    let key = Zeroizing::new(blake3::derive_key(BINDING_CONTEXT, root));
    blake3::keyed_hash(&key, covered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MIN_KDF;

    #[test]
    fn public_identity_round_trip_and_fingerprint_format() {
        let id = Identity::generate(UserId::new()).unwrap();
        let public = id.public();
        assert_eq!(
            PublicIdentity::from_bytes(&public.to_bytes()).unwrap(),
            public
        );
        let shown = public.fingerprint().to_string();
        assert_eq!(shown.len(), 39);
        assert_eq!(shown.split(' ').count(), 8);
        assert!(
            shown
                .chars()
                .all(|c| c == ' ' || c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        let other = Identity::generate(public.user).unwrap().public();
        assert_ne!(public.fingerprint(), other.fingerprint());
    }

    #[test]
    fn locally_sealed_identity_opens_only_with_its_key() {
        let id = Identity::generate(UserId::new()).unwrap();
        let sealed = id.seal_local(&[5; 32]).unwrap();
        let back = Identity::open_local(&sealed, &[5; 32]).unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(
            Identity::open_local(&sealed, &[6; 32]).unwrap_err().kind(),
            &ErrorKind::Tampered
        );
        let mut cut = sealed.clone();
        cut.pop();
        assert!(Identity::open_local(&cut, &[5; 32]).is_err());
    }

    #[test]
    fn fingerprint_base32_of_known_bytes() {
        let mut f = Fingerprint([0; 32]);
        f.0[0] = 0b0000_1000; // digits: 00001 000.. -> "b", then "a"s
        assert_eq!(f.to_string(), "baaa aaaa aaaa aaaa aaaa aaaa aaaa aaaa");
        f.0[19] = 0xff; // digit 30 = 00111 ("h"), digit 31 = 11111 ("7")
        assert!(f.to_string().ends_with("h7"));
    }

    #[test]
    fn small_order_signing_key_is_refused() {
        let mut bytes = Identity::generate(UserId::new())
            .unwrap()
            .public()
            .to_bytes();
        // The identity point encodes as 1 followed by zeros: small order.
        bytes[48..].copy_from_slice(&[0; 32]);
        bytes[48] = 1;
        assert!(PublicIdentity::from_bytes(&bytes).is_err());
        assert!(PublicIdentity::from_bytes(&bytes[..79]).is_err());
    }

    #[test]
    fn seal_open_round_trip_and_wrong_passphrase() {
        let id = Identity::generate(UserId::new()).unwrap();
        let sealed = id.seal(b"correct horse", MIN_KDF).unwrap();
        let back = Identity::open(&sealed, b"correct horse").unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(
            Identity::open(&sealed, b"wrong").unwrap_err().kind(),
            &ErrorKind::WrongPassphrase
        );
    }

    /// CCS 2024 / MEGA class: the server weakens the KDF of a stored key
    /// blob to speed up offline guessing. Refused before Argon2 runs.
    #[test]
    fn kdf_downgrade_in_identity_blob_is_refused() {
        let id = Identity::generate(UserId::new()).unwrap();
        let sealed = id.seal(b"pw", MIN_KDF).unwrap();
        // The wrapped blob starts after magic, format, user and its length.
        let params_at = 4 + 1 + 16 + 2 + 8;
        for (offset, value) in [(0, 8u32 * 1024), (4, 1), (8, 0)] {
            let mut weak = sealed.clone();
            weak[params_at + offset..params_at + offset + 4].copy_from_slice(&value.to_le_bytes());
            assert_eq!(
                Identity::open(&weak, b"pw").unwrap_err().kind(),
                &ErrorKind::Downgrade
            );
        }
        let weak = KdfParams {
            iterations: 1,
            ..MIN_KDF
        };
        assert_eq!(
            id.seal(b"pw", weak).unwrap_err().kind(),
            &ErrorKind::InvalidInput
        );
    }

    /// The server swaps the user id of a sealed identity (the keys would
    /// then be attributed to another account).
    #[test]
    fn identity_blob_user_swap_and_format_downgrade_are_refused() {
        let id = Identity::generate(UserId::new()).unwrap();
        let sealed = id.seal(b"pw", MIN_KDF).unwrap();
        let mut swapped = sealed.clone();
        swapped[5..21].copy_from_slice(UserId::new().0.as_bytes());
        assert_eq!(
            Identity::open(&swapped, b"pw").unwrap_err().kind(),
            &ErrorKind::Tampered
        );
        let mut old = sealed.clone();
        old[4] = 0;
        assert_eq!(
            Identity::open(&old, b"pw").unwrap_err().kind(),
            &ErrorKind::Downgrade
        );
        let mut tag = sealed;
        let last = tag.len() - 1;
        tag[last] ^= 1;
        assert_eq!(
            Identity::open(&tag, b"pw").unwrap_err().kind(),
            &ErrorKind::Tampered
        );
    }

    #[test]
    fn signatures_are_domain_separated() {
        let id = Identity::generate(UserId::new()).unwrap();
        let sig = id.sign("A", b"msg");
        id.public().verify("A", b"msg", &sig).unwrap();
        assert!(id.public().verify("B", b"msg", &sig).is_err());
        assert!(id.public().verify("A", b"msh", &sig).is_err());
    }
}
