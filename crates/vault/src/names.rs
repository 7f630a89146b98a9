//! Item names, encrypted and bound to their place.
//!
//! Layout: `format u8 = 1 | generation u32 | nonce [24] | ciphertext | tag [16]`.
//! The plaintext is `length u8 | UTF-8 name | zeros`, padded to a multiple
//! of [`NAME_PAD`] bytes, so the server learns a name's length only to 32
//! bytes. The associated data is
//! `"StackSync 2026 vault v1 item name" 0 | format | workspace [16] |
//! parent (0 = root, or 1 then the item id) | item [16] | generation u32`:
//! a name moved by the server to another parent, item, workspace or
//! generation no longer decrypts (Share with Care / CCS 2024: unbound file
//! names and metadata swaps).
//!
//! The caller base64url-encodes the bytes into the server's name field.

use stacksync_proto::ids::ItemId;
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto::{self, NONCE_LEN, TAG_LEN};
use crate::error::{ErrorKind, Result, fail};
use crate::keyring::{Generation, KeyRing};

const DOMAIN: &str = "StackSync 2026 vault v1 item name";
const FORMAT: u8 = 1;
/// The longest name, in UTF-8 bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Encrypted names are padded to a multiple of this many bytes.
pub const NAME_PAD: usize = 32;
/// The longest sealed name: header, nonce, 256 padded bytes and the tag.
pub const MAX_SEALED_NAME_LEN: usize = 1 + 4 + NONCE_LEN + (MAX_NAME_LEN + 1) + TAG_LEN;

fn aad(ring: &KeyRing, parent: Option<ItemId>, item: ItemId, generation: Generation) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(DOMAIN.as_bytes())
        .u8(0)
        .u8(FORMAT)
        .workspace(&ring.workspace());
    w.parent(&parent).item(&item).u32(generation.0);
    w.into_vec()
}

/// Encrypts `name` (1 to [`MAX_NAME_LEN`] bytes) for item `item` under
/// `parent` (`None` = the workspace root) with the ring's current generation.
pub fn seal_name(
    ring: &KeyRing,
    parent: Option<ItemId>,
    item: ItemId,
    name: &str,
) -> Result<Vec<u8>> {
    let len = name.len();
    if len == 0 || len > MAX_NAME_LEN {
        return fail(ErrorKind::InvalidInput);
    }
    let padded = (1 + len).div_ceil(NAME_PAD) * NAME_PAD;
    let mut plain = Zeroizing::new(vec![0u8; padded]);
    plain[0] = u8::try_from(len).expect("checked against MAX_NAME_LEN = 255");
    plain[1..=len].copy_from_slice(name.as_bytes());
    let generation = ring.current();
    let key = ring.name_key(generation)?;
    let sealed =
        crypto::seal_deterministic(&key, &aad(ring, parent, item, generation), &mut plain)?;
    let mut w = Writer::new();
    w.u8(FORMAT).u32(generation.0).raw(&sealed);
    Ok(w.into_vec())
}

/// Decrypts a name sealed by [`seal_name`] for exactly this `parent` and
/// `item` in the ring's workspace.
pub fn open_name(
    ring: &KeyRing,
    parent: Option<ItemId>,
    item: ItemId,
    sealed: &[u8],
) -> Result<String> {
    if sealed.len() > MAX_SEALED_NAME_LEN {
        return fail(ErrorKind::Malformed);
    }
    let mut r = Reader::new(sealed);
    if r.u8()? != FORMAT {
        return fail(ErrorKind::Downgrade);
    }
    let generation = Generation(r.u32()?);
    let body = r.take(r.remaining())?;
    if body.len() < NONCE_LEN + TAG_LEN + NAME_PAD
        || !(body.len() - NONCE_LEN - TAG_LEN).is_multiple_of(NAME_PAD)
    {
        return fail(ErrorKind::Malformed);
    }
    let key = ring.name_key(generation)?;
    let plain = crypto::open(&key, &aad(ring, parent, item, generation), body)?;
    let len = usize::from(plain[0]);
    // Canonical padding only: the shortest multiple of NAME_PAD, zero-filled.
    if len == 0
        || plain.len() != (1 + len).div_ceil(NAME_PAD) * NAME_PAD
        || plain[1 + len..].iter().any(|&b| b != 0)
    {
        return fail(ErrorKind::Malformed);
    }
    String::from_utf8(plain[1..=len].to_vec()).map_err(|_| ErrorKind::Malformed.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacksync_content::WorkspaceKey;
    use stacksync_proto::ids::WorkspaceId;
    use std::collections::BTreeMap;

    fn ring(ws: WorkspaceId, gens: &[u32]) -> KeyRing {
        let keys: BTreeMap<_, _> = gens
            .iter()
            .map(|&g| (Generation(g), WorkspaceKey::from_bytes([g as u8; 32])))
            .collect();
        KeyRing::new(ws, Generation(*gens.last().unwrap()), keys).unwrap()
    }

    #[test]
    fn round_trip_and_length_hidden_to_32() {
        let ring = ring(WorkspaceId::new(), &[1]);
        let (p, i) = (Some(ItemId::new()), ItemId::new());
        for name in ["a", "report.pdf", "ü€𝄞", &"x".repeat(31), &"y".repeat(255)] {
            let sealed = seal_name(&ring, p, i, name).unwrap();
            assert_eq!(open_name(&ring, p, i, &sealed).unwrap(), name);
            assert_eq!((sealed.len() - 1 - 4 - NONCE_LEN - TAG_LEN) % NAME_PAD, 0);
        }
        let short = seal_name(&ring, p, i, "a").unwrap();
        let longer = seal_name(&ring, p, i, &"b".repeat(31)).unwrap();
        assert_eq!(short.len(), longer.len());
        assert_eq!(
            seal_name(&ring, p, i, &"z".repeat(256)).unwrap_err().kind(),
            &ErrorKind::InvalidInput
        );
        assert_eq!(
            seal_name(&ring, p, i, "").unwrap_err().kind(),
            &ErrorKind::InvalidInput
        );
    }

    /// Share with Care (EuroS&P 2024) / CCS 2024: the server moves an
    /// encrypted name to another folder, item, workspace or key generation.
    #[test]
    fn name_moved_to_another_place_is_refused() {
        let ws = WorkspaceId::new();
        let ring1 = ring(ws, &[1, 2]);
        let (p, i) = (Some(ItemId::new()), ItemId::new());
        let sealed = seal_name(&ring1, p, i, "secret plans.txt").unwrap();
        assert!(open_name(&ring1, Some(ItemId::new()), i, &sealed).is_err());
        assert!(open_name(&ring1, None, i, &sealed).is_err());
        assert!(open_name(&ring1, p, ItemId::new(), &sealed).is_err());
        // Same keys, another workspace id.
        let other_ws = ring(WorkspaceId::new(), &[1, 2]);
        assert!(open_name(&other_ws, p, i, &sealed).is_err());
        // Header relabelled to generation 1: other key, other AAD.
        let mut relabelled = sealed.clone();
        relabelled[1..5].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            open_name(&ring1, p, i, &relabelled).unwrap_err().kind(),
            &ErrorKind::Tampered
        );
        // A generation the ring does not hold.
        let mut unknown = sealed.clone();
        unknown[1..5].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            open_name(&ring1, p, i, &unknown).unwrap_err().kind(),
            &ErrorKind::UnknownGeneration
        );
        let root_name = seal_name(&ring1, None, i, "top").unwrap();
        assert_eq!(open_name(&ring1, None, i, &root_name).unwrap(), "top");
        assert!(open_name(&ring1, p, i, &root_name).is_err());
    }

    /// MEGA (S&P 2023) class: malleable ciphertext. Every single-bit flip
    /// of a sealed name is detected.
    #[test]
    fn every_flipped_byte_of_a_name_is_refused() {
        let ring = ring(WorkspaceId::new(), &[1]);
        let (p, i) = (None, ItemId::new());
        let sealed = seal_name(&ring, p, i, "budget.xlsx").unwrap();
        for at in 0..sealed.len() {
            for bit in [0x01, 0x80] {
                let mut b = sealed.clone();
                b[at] ^= bit;
                assert!(open_name(&ring, p, i, &b).is_err(), "byte {at}");
            }
        }
        assert!(open_name(&ring, p, i, &sealed[..sealed.len() - 1]).is_err());
        let mut longer = sealed;
        longer.push(0);
        assert!(open_name(&ring, p, i, &longer).is_err());
    }
}
