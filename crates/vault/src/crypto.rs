//! The two primitives every blob of this crate uses: XChaCha20-Poly1305
//! with a random 24-byte nonce (random nonces are safe at this size), and
//! the OS random source.

use chacha20poly1305::{AeadInOut, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{ErrorKind, Result, fail};

/// Nonce length of XChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 24;
/// Tag length of Poly1305.
pub(crate) const TAG_LEN: usize = 16;

/// A 32-byte symmetric key, wiped on drop.
pub(crate) struct Key32(pub(crate) [u8; 32]);

impl Drop for Key32 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Fills `out` from the operating system's random source.
pub(crate) fn random(out: &mut [u8]) -> Result<()> {
    getrandom::fill(out).map_err(|_| ErrorKind::Random.into())
}

/// `nonce || ciphertext || tag` of `plain` (encrypted in place) under `key`
/// with `aad` authenticated.
pub(crate) fn seal(key: &Key32, aad: &[u8], plain: &mut [u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    seal_with(key, nonce, aad, plain)
}

fn seal_with(key: &Key32, nonce: [u8; NONCE_LEN], aad: &[u8], plain: &mut [u8]) -> Result<Vec<u8>> {
    let tag = XChaCha20Poly1305::new(&key.0.into())
        .encrypt_inout_detached(&XNonce::from(nonce), aad, plain.into())
        .map_err(|_| ErrorKind::InvalidInput)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    out.extend_from_slice(&tag);
    // The caller's buffer now holds ciphertext; nothing secret is left in it.
    Ok(out)
}

/// As [`seal`], with the nonce derived from the key, `aad` and `plain`
/// (a synthetic nonce, as in SIV): the same inputs give the same bytes,
/// and only they do. For blobs that a retry must reproduce exactly (a
/// record whose commit reply was lost is sent again after a restart and
/// must be recognised as the same version); it reveals nothing but the
/// equality of two identical blobs.
pub(crate) fn seal_deterministic(key: &Key32, aad: &[u8], plain: &mut [u8]) -> Result<Vec<u8>> {
    let nonce_key = Zeroizing::new(blake3::derive_key(SYNTHETIC_NONCE_CONTEXT, &key.0));
    let mut h = blake3::Hasher::new_keyed(&nonce_key);
    h.update(&(aad.len() as u64).to_le_bytes())
        .update(aad)
        .update(plain);
    let mut nonce = [0u8; NONCE_LEN];
    h.finalize_xof().fill(&mut nonce);
    seal_with(key, nonce, aad, plain)
}

const SYNTHETIC_NONCE_CONTEXT: &str = "StackSync 2026 vault v1 synthetic nonce";

/// Opens `nonce || ciphertext || tag`; any failure is [`ErrorKind::Tampered`].
pub(crate) fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return fail(ErrorKind::Tampered);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| ErrorKind::Tampered)?;
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| ErrorKind::Tampered)?;
    let mut out = Zeroizing::new(body.to_vec());
    XChaCha20Poly1305::new(&key.0.into())
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            aad,
            out.as_mut_slice().into(),
            &Tag::from(tag),
        )
        .map_err(|_| ErrorKind::Tampered)?;
    Ok(out)
}

/// Seals `plain` for the client's own storage under `local_key`: `magic`
/// and `format` in the clear, authenticated as associated data, then the
/// sealed body.
pub(crate) fn seal_local(
    magic: &[u8; 4],
    format: u8,
    local_key: &[u8; 32],
    plain: &mut [u8],
) -> Result<Vec<u8>> {
    let mut out = crate::codec::Writer::new();
    out.raw(magic).u8(format);
    let aad = out.as_slice().to_vec();
    let sealed = seal(&Key32(*local_key), &aad, plain)?;
    out.raw(&sealed);
    Ok(out.into_vec())
}

/// Opens what [`seal_local`] sealed with the same `magic`, `format` and
/// key: another magic is malformed, another format a downgrade.
pub(crate) fn open_local(
    bytes: &[u8],
    magic: &[u8; 4],
    format: u8,
    local_key: &[u8; 32],
) -> Result<Zeroizing<Vec<u8>>> {
    let mut r = crate::codec::Reader::new(bytes);
    if r.take(4)? != magic {
        return crate::error::fail(crate::error::ErrorKind::Malformed);
    }
    if r.u8()? != format {
        return crate::error::fail(crate::error::ErrorKind::Downgrade);
    }
    open(&Key32(*local_key), &bytes[..5], r.take(r.remaining())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aad_binding() {
        let key = Key32([3; 32]);
        let mut plain = b"secret".to_vec();
        let sealed = seal(&key, b"aad", &mut plain).unwrap();
        assert_eq!(&open(&key, b"aad", &sealed).unwrap()[..], b"secret");
        assert!(open(&key, b"other", &sealed).is_err());
        assert!(open(&Key32([4; 32]), b"aad", &sealed).is_err());
        assert!(open(&key, b"aad", &sealed[..10]).is_err());
    }
}
