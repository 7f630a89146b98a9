//! Delta chunks: a changed chunk encoded against a base chunk both sides
//! already have (the previous version's chunk at the same place), so that
//! a small edit inside a large chunk does not re-send the whole chunk.
//!
//! The patch is a zstd frame compressed with the base as its reference
//! prefix ("patch-from"), with long-distance matching and a window that
//! covers base and target. Like a chunk, it is encrypted after it is made
//! (delta first, then the AEAD) with the workspace's cipher, and named by
//! the target's chunk id (keyed in encrypted workspaces). See `DELTA.md`
//! for the measurements behind this and [`delta_pays`].
//!
//! Unencrypted deltas are delta format version 1, unchanged:
//!
//! ```text
//! 0..4    magic "SSdt"
//! 4       delta format version (1)
//! 5       flags: must be 0 (bit 1 = encrypted is version 2's)
//! 6..8    reserved, must be 0
//! 8..12   target plaintext length, u32 little-endian
//! 12..16  body length (everything after the header), u32 little-endian
//! 16..20  base plaintext length, u32 little-endian
//! 20..52  base chunk id
//! body    zstd frame (patch from the base)
//! ```
//!
//! Encrypted deltas are version 2, which hides lengths the way encrypted
//! chunks do (see the chunk format): no length in the clear but the
//! padded body's, a Padmé bucket.
//!
//! ```text
//! 0..4    magic "SSdt"
//! 4       delta format version (2)
//! 5       flags: bit 1 = encrypted, must be set; bit 2 = AES-256-GCM
//!         instead of XChaCha20-Poly1305; bit 0 must be 0
//! 6..8    key generation minus one, u16 little-endian (once "reserved,
//!         must be 0": every delta stored before key rotation is
//!         generation 1)
//! 8..12   body length, u32 little-endian: padme(patch + 12) + 16
//! 12..44  base chunk id (keyed: says nothing of the base's length)
//! 44..68  24-byte random nonce
//! body    encrypted: patch, zero bytes up to the bucket, then patch
//!         length, target plaintext length and base plaintext length (u32
//!         little-endian each); followed by the 16-byte tag
//! ```
//!
//! Version 1 with the encrypted bit is refused as a downgrade, version 2
//! without it too. When encrypted, the whole header (base id and key
//! generation included) and the target id are the associated data.
//!
//! An encrypted delta is written under the codec's current key generation
//! and names it, as a chunk does (see the chunk format): its base id and
//! target id are that generation's keyed ids, and its body that
//! generation's ciphertext. [`apply`] takes all three from the generation
//! the header names, and refuses one the codec does not hold
//! ([`ChunkProblem::UnknownGeneration`]). The server sees the generation,
//! authenticated with the rest of the header. A base stored under an
//! earlier generation has another id under the current one, so a delta
//! against it cannot be written (its base would name no stored chunk).
//!
//! Decoding is total: any input
//! gives an error or the exact target, never a panic, never more than
//! [`MAX_CHUNK_LEN`] bytes of output, and never bytes that do not hash to
//! the target id; a delta applied to a base other than the one it names
//! is refused before it is decompressed.

use stacksync_proto::ChunkId;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter};

use crate::chunker::MAX_CHUNK_LEN;
use crate::codec::{ChunkCodec, associated_data, chunk_id_under, open_body};
use crate::error::{ChunkProblem, ContentError};
use crate::format::{
    FLAG_AES_GCM, FLAG_ENCRYPTED, NONCE_LEN, TAG_LEN, generation_bytes, generation_from, pad,
    padded_len, unpad,
};
use crate::padme::padme;

const MAGIC: &[u8; 4] = b"SSdt";
/// The delta format version this build writes for unencrypted deltas.
pub const DELTA_FORMAT_VERSION: u8 = 1;
/// The delta format version of encrypted deltas: lengths inside the
/// ciphertext and a padded body.
pub const ENCRYPTED_DELTA_FORMAT_VERSION: u8 = 2;
const PLAIN_FIXED_LEN: usize = 52;
/// Version 2 without the nonce: magic to flags, body length, base id.
const SEALED_FIXED_LEN: usize = 44;
/// Fields of an encrypted delta's trailer after the patch length: target
/// and base plaintext lengths.
const TRAILER_FIELDS: usize = 2;
/// zstd level for patches, whatever the codec's level. Measured on a 1 MiB
/// random chunk with one byte overwritten, window 2 MiB (patch bytes,
/// time): level 1 with long-distance matching 120 B in 0.9 ms; level 3
/// with it 1263 B in 6.4 ms, without it 1072 B in 1.1 ms; level 1 without
/// it finds almost nothing (917 KB); levels 9 and 19 reach 110 B in 16 and
/// 80 ms. Level 1 with long-distance matching is both the smallest patch
/// but one and the fastest.
const PATCH_LEVEL: i32 = 1;
/// The largest window a patch may ask for: base and target of
/// [`MAX_CHUNK_LEN`] each. The decoder refuses larger ones, so a hostile
/// frame cannot make it reserve more.
const MAX_WINDOW_LOG: u32 = 25;
/// zstd's smallest window log (`ZSTD_WINDOWLOG_MIN`).
const MIN_WINDOW_LOG: u32 = 10;
/// A delta must be at most this fraction (1/N) of the full encoded chunk.
const PAYS_FRACTION: usize = 4;
/// ... and save at least this many bytes.
const PAYS_MIN_SAVING: usize = 4096;

/// A changed chunk encoded against a base chunk, ready to send or store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaChunk {
    /// The target chunk's id: what [`apply`] produces and checks.
    pub id: ChunkId,
    /// The base chunk's id, also in the header.
    pub base: ChunkId,
    /// The base chunk's plaintext length, also in the header.
    pub base_len: u32,
    /// The target's plaintext length.
    pub plaintext_len: u32,
    /// The encoded delta object: header and body.
    pub bytes: Vec<u8>,
}

/// The base a delta object names, read from its header without decoding
/// it: what a receiver must load before [`apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaBase {
    /// The base chunk's id.
    pub id: ChunkId,
    /// The base chunk's plaintext length; `None` for an encrypted delta,
    /// which keeps it inside the ciphertext.
    pub len: Option<u32>,
}

/// Whether sending a delta of `delta_len` bytes instead of the full encoded
/// chunk of `full_len` bytes is worth it. A delta is only readable by a
/// device that has (or fetches) its base, and a base must be kept while
/// deltas refer to it, so it must be much smaller: at most a quarter of the
/// full chunk and at least 4 KiB smaller. Otherwise send the full chunk.
pub fn delta_pays(delta_len: usize, full_len: usize) -> bool {
    delta_len.saturating_mul(PAYS_FRACTION) <= full_len
        && full_len.saturating_sub(delta_len) >= PAYS_MIN_SAVING
}

/// Encodes `target_plain` as a delta against `base_plain`, with `codec`'s
/// ids and encryption (both at most [`MAX_CHUNK_LEN`] bytes): an encrypted
/// delta is written under the codec's current key generation and names
/// the base by its id under that generation.
pub fn encode_delta(
    codec: &ChunkCodec,
    base_plain: &[u8],
    target_plain: &[u8],
) -> Result<DeltaChunk, ContentError> {
    for part in [base_plain, target_plain] {
        if part.len() > MAX_CHUNK_LEN {
            return Err(ContentError::PlaintextTooLarge {
                len: part.len(),
                max: MAX_CHUNK_LEN,
            });
        }
    }
    let id = codec.chunk_id(target_plain);
    let base = codec.chunk_id(base_plain);
    let (flags, nonce) = codec.seal_params()?;
    let patch = patch_from(base_plain, target_plain, PATCH_LEVEL)?;
    // Both lengths were checked against MAX_CHUNK_LEN (16 MiB) above, and
    // a patch is never larger than zstd's bound for its input.
    let (target_len, base_len) = (target_plain.len() as u32, base_plain.len() as u32);
    let mut header = DeltaHeader {
        flags,
        generation: codec.generation().unwrap_or(1),
        clear: None,
        body_len: 0,
        base_id: base,
        nonce,
    };
    let header_len = header.len();
    let mut bytes =
        Vec::with_capacity(header_len + padded_len::<TRAILER_FIELDS>(patch.len()) + TAG_LEN);
    bytes.resize(header_len, 0);
    bytes.extend_from_slice(&patch);
    header.body_len = match nonce {
        None => {
            header.clear = Some(ClearLengths {
                target: target_len,
                base: base_len,
            });
            patch.len() as u32
        }
        Some(_) => {
            let padded = pad(&mut bytes, header_len, [target_len, base_len]);
            (padded + TAG_LEN) as u32
        }
    };
    let mut written = Vec::with_capacity(header_len);
    header.write(&mut written);
    bytes[..header_len].copy_from_slice(&written);
    if let Some(nonce) = &nonce {
        let aad = associated_data(&bytes[..header_len], &id);
        codec.seal_body(nonce, &aad, &mut bytes, header_len)?;
    }
    Ok(DeltaChunk {
        id,
        base,
        base_len,
        plaintext_len: target_len,
        bytes,
    })
}

/// The base that the delta object `encoded` names; an error if its header
/// is not a valid delta header.
pub fn delta_base(encoded: &[u8]) -> Result<DeltaBase, ChunkProblem> {
    DeltaHeader::parse(encoded).map(|h| DeltaBase {
        id: h.base_id,
        len: h.clear.map(|c| c.base),
    })
}

/// Decodes the delta object `encoded` against `base_plain` and returns the
/// target chunk, which must be the chunk `id` names. An encrypted delta is
/// opened, and its base and target ids checked, with the key of the
/// generation its header names.
///
/// Refuses a generation the codec does not hold
/// (`ChunkProblem::UnknownGeneration`),  a base whose length or id differs from the one the delta names
/// (`ChunkProblem::WrongBase`), a claimed size above [`MAX_CHUNK_LEN`],
/// and anything truncated, altered or encrypted with another key.
pub fn apply(
    codec: &ChunkCodec,
    id: &ChunkId,
    base_plain: &[u8],
    encoded: &[u8],
) -> Result<Vec<u8>, ContentError> {
    let fail = |problem| ContentError::Chunk { id: *id, problem };
    let header = DeltaHeader::parse(encoded).map_err(fail)?;
    // Before the base check: with the wrong kind of codec the base's id
    // would differ too, and this says why.
    match (codec.is_encrypted(), header.nonce.is_some()) {
        (false, true) => return Err(fail(ChunkProblem::KeyRequired)),
        (true, false) => return Err(fail(ChunkProblem::NotEncrypted)),
        _ => {}
    }
    // The generation that wrote an encrypted delta: its key opens the body
    // and its id key named both base and target.
    let sealed = match header.nonce {
        None => None,
        Some(nonce) => Some((nonce, codec.crypto_of(header.generation).map_err(fail)?)),
    };
    let crypto = sealed.map(|(_, crypto)| crypto);
    let wrong_base = |len: u32| base_plain.len() != len as usize;
    if header.clear.is_some_and(|c| wrong_base(c.base))
        || chunk_id_under(crypto, base_plain) != header.base_id
    {
        return Err(fail(ChunkProblem::WrongBase));
    }
    let header_len = header.len();
    let body = &encoded[header_len..];
    let opened;
    let (patch, target_len) = match sealed {
        // parse() gives every plain header its lengths; were one missing,
        // a target of 0 bytes fails the patch or the id check, never panics.
        None => (body, header.clear.map_or(0, |c| c.target)),
        Some((nonce, crypto)) => {
            let aad = associated_data(&encoded[..header_len], id);
            let aes = header.flags & FLAG_AES_GCM != 0;
            let mut plain = open_body(crypto, aes, &nonce, &aad, body)
                .map_err(|()| fail(ChunkProblem::Authentication))?;
            let [target, base] = unpad::<TRAILER_FIELDS>(&mut plain).map_err(fail)?;
            check_max(target).map_err(fail)?;
            if wrong_base(base) {
                return Err(fail(ChunkProblem::WrongBase));
            }
            opened = plain;
            (&opened[..], target)
        }
    };
    let target = patch_apply(base_plain, patch, target_len as usize).map_err(fail)?;
    if chunk_id_under(crypto, &target) != *id {
        return Err(fail(ChunkProblem::IdMismatch));
    }
    Ok(target)
}

/// A declared plaintext length must be at most [`MAX_CHUNK_LEN`].
fn check_max(declared: u32) -> Result<(), ChunkProblem> {
    if declared as usize > MAX_CHUNK_LEN {
        return Err(ChunkProblem::TooLarge {
            declared: declared.into(),
            max: MAX_CHUNK_LEN as u64,
        });
    }
    Ok(())
}

/// A zstd frame of `target` with `base` as its reference prefix.
fn patch_from(base: &[u8], target: &[u8], level: i32) -> Result<Vec<u8>, ContentError> {
    let zstd_err = |code: usize| {
        ContentError::Compress(std::io::Error::other(zstd_safe::get_error_name(code)))
    };
    // A context per patch: the prefix is borrowed for the context's
    // lifetime, so a thread-local context cannot hold it.
    let mut cctx = CCtx::try_create().ok_or_else(|| zstd_err(usize::MAX))?;
    for param in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log(base.len() + target.len())),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        cctx.set_parameter(param).map_err(zstd_err)?;
    }
    cctx.ref_prefix(base).map_err(zstd_err)?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(target.len()));
    cctx.compress2(&mut out, target).map_err(zstd_err)?;
    Ok(out)
}

/// The target from a patch made by [`patch_from`], at most `target_len`
/// bytes of output whatever the frame claims.
fn patch_apply(base: &[u8], patch: &[u8], target_len: usize) -> Result<Vec<u8>, ChunkProblem> {
    let bad = |why: &str| ChunkProblem::Decompress(why.to_string());
    let zstd_err = |code: usize| bad(zstd_safe::get_error_name(code));
    let mut dctx = DCtx::try_create().ok_or_else(|| bad("no zstd context"))?;
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
        .map_err(zstd_err)?;
    dctx.ref_prefix(base).map_err(zstd_err)?;
    // One-shot decompression into a buffer of exactly the claimed size:
    // zstd never writes past its capacity and needs no window buffer.
    let mut out = Vec::with_capacity(target_len);
    dctx.decompress(&mut out, patch).map_err(zstd_err)?;
    if out.len() != target_len {
        return Err(ChunkProblem::Decompress(format!(
            "patched to {} bytes, header says {target_len}",
            out.len()
        )));
    }
    Ok(out)
}

/// The smallest window log whose window covers `len` bytes (zstd's bounds).
fn window_log(len: usize) -> u32 {
    let log = usize::BITS - len.saturating_sub(1).leading_zeros();
    log.clamp(MIN_WINDOW_LOG, MAX_WINDOW_LOG)
}

/// The lengths a version-1 (unencrypted) delta header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClearLengths {
    target: u32,
    base: u32,
}

/// A parsed delta header: version 1 when `nonce` is `None` (and `clear`
/// is set), version 2 otherwise (and `clear` is `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeltaHeader {
    flags: u8,
    /// The key generation of a version-2 delta, 1 to
    /// [`MAX_KEY_GENERATION`](crate::MAX_KEY_GENERATION); 1, and not
    /// written, in version 1.
    generation: u32,
    clear: Option<ClearLengths>,
    body_len: u32,
    base_id: ChunkId,
    nonce: Option<[u8; NONCE_LEN]>,
}

impl DeltaHeader {
    fn len(&self) -> usize {
        match self.nonce {
            None => PLAIN_FIXED_LEN,
            Some(_) => SEALED_FIXED_LEN + NONCE_LEN,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        match (&self.nonce, self.clear) {
            (Some(nonce), _) => {
                out.extend_from_slice(&[ENCRYPTED_DELTA_FORMAT_VERSION, self.flags]);
                out.extend_from_slice(&generation_bytes(self.generation));
                out.extend_from_slice(&self.body_len.to_le_bytes());
                out.extend_from_slice(self.base_id.as_bytes());
                out.extend_from_slice(nonce);
            }
            (None, clear) => {
                let clear = clear.unwrap_or(ClearLengths { target: 0, base: 0 });
                out.extend_from_slice(&[DELTA_FORMAT_VERSION, self.flags, 0, 0]);
                out.extend_from_slice(&clear.target.to_le_bytes());
                out.extend_from_slice(&self.body_len.to_le_bytes());
                out.extend_from_slice(&clear.base.to_le_bytes());
                out.extend_from_slice(self.base_id.as_bytes());
            }
        }
    }

    /// Parses and checks a header against the whole object: on success the
    /// body is exactly `bytes[len()..]`; a version-1 header's lengths are
    /// at most [`MAX_CHUNK_LEN`], a version-2 body is a Padmé bucket plus
    /// the tag, no larger than a maximum chunk's patch needs.
    fn parse(bytes: &[u8]) -> Result<DeltaHeader, ChunkProblem> {
        let truncated = |needed: usize| ChunkProblem::Truncated {
            needed,
            got: bytes.len(),
        };
        let fixed = bytes.get(..8).ok_or(truncated(SEALED_FIXED_LEN))?;
        if &fixed[..4] != MAGIC {
            return Err(ChunkProblem::BadMagic);
        }
        let (version, flags) = (fixed[4], fixed[5]);
        // Reserved in version 1, the key generation in version 2.
        let reserved = u16::from_le_bytes([fixed[6], fixed[7]]);
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        let le32 = |at: usize| -> Result<u32, ChunkProblem> {
            let b = bytes.get(at..at + 4).ok_or(truncated(at + 4))?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let id_at = |at: usize| -> Result<ChunkId, ChunkProblem> {
            let b = bytes.get(at..at + 32).ok_or(truncated(at + 32))?;
            let mut id = [0u8; 32];
            id.copy_from_slice(b);
            Ok(ChunkId(id))
        };
        let header = match version {
            DELTA_FORMAT_VERSION => {
                if encrypted {
                    return Err(ChunkProblem::Downgrade { version });
                }
                if flags != 0 || reserved != 0 {
                    return Err(ChunkProblem::UnknownBits { flags, reserved });
                }
                if bytes.len() < PLAIN_FIXED_LEN {
                    return Err(truncated(PLAIN_FIXED_LEN));
                }
                let (target, body_len, base) = (le32(8)?, le32(12)?, le32(16)?);
                check_max(target)?;
                check_max(base)?;
                // A patch is at least a frame header.
                if body_len == 0 {
                    return Err(ChunkProblem::LengthMismatch {
                        body: 0,
                        plaintext: target.into(),
                    });
                }
                DeltaHeader {
                    flags,
                    generation: 1,
                    clear: Some(ClearLengths { target, base }),
                    body_len,
                    base_id: id_at(20)?,
                    nonce: None,
                }
            }
            ENCRYPTED_DELTA_FORMAT_VERSION => {
                if flags & !(FLAG_ENCRYPTED | FLAG_AES_GCM) != 0 {
                    return Err(ChunkProblem::UnknownBits { flags, reserved: 0 });
                }
                if !encrypted {
                    return Err(ChunkProblem::PlainInEncryptedFormat { version });
                }
                let body_len = le32(8)?;
                let base_id = id_at(12)?;
                let end = SEALED_FIXED_LEN + NONCE_LEN;
                let nonce_bytes = bytes.get(SEALED_FIXED_LEN..end).ok_or(truncated(end))?;
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(nonce_bytes);
                check_sealed_body(body_len)?;
                DeltaHeader {
                    flags,
                    generation: generation_from(reserved),
                    clear: None,
                    body_len,
                    base_id,
                    nonce: Some(nonce),
                }
            }
            other => return Err(ChunkProblem::UnsupportedVersion(other)),
        };
        let needed = header.len() + header.body_len as usize;
        match bytes.len() {
            got if got < needed => Err(truncated(needed)),
            got if got > needed => Err(ChunkProblem::TrailingBytes {
                extra: got - needed,
            }),
            _ => Ok(header),
        }
    }
}

/// An encrypted delta's body must be a bucket of at least its trailer, plus
/// the tag, and no larger than the bucket of a maximum chunk's patch.
fn check_sealed_body(body_len: u32) -> Result<(), ChunkProblem> {
    let body = u64::from(body_len);
    let padded = body.saturating_sub(TAG_LEN as u64);
    let max = padded_len::<TRAILER_FIELDS>(zstd_safe::compress_bound(MAX_CHUNK_LEN)) as u64;
    let bad = |why: &str| {
        Err(ChunkProblem::Padding(format!(
            "delta body of {body} bytes {why}"
        )))
    };
    if body < (TAG_LEN + 4 * (TRAILER_FIELDS + 1)) as u64 {
        return bad("is too short for its inner lengths and the tag");
    }
    if padded > max {
        return Err(ChunkProblem::TooLarge {
            declared: padded,
            max,
        });
    }
    if padme(padded) != padded {
        return bad("is not a padding bucket plus the tag");
    }
    Ok(())
}
