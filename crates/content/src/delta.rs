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
//! ```text
//! 0..4    magic "SSdt"
//! 4       delta format version (1)
//! 5       flags: bit 1 = body is encrypted, bit 2 = AES-256-GCM instead of
//!         XChaCha20-Poly1305 (only with bit 1); bit 0 must be 0
//! 6..8    reserved, must be 0
//! 8..12   target plaintext length, u32 little-endian
//! 12..16  body length (everything after the header), u32 little-endian
//! 16..20  base plaintext length, u32 little-endian
//! 20..52  base chunk id
//! 52..76  24-byte random nonce, only when encrypted
//! body    zstd frame (patch from the base), encrypted in place when
//!         encrypted, followed by the 16-byte tag
//! ```
//!
//! When encrypted, the whole header (base id included) and the target id
//! are the associated data. Decoding is total: any input gives an error or
//! the exact target, never a panic, never more than [`MAX_CHUNK_LEN`] bytes
//! of output, and never bytes that do not hash to the target id; a delta
//! applied to a base other than the one it names is refused before it is
//! decompressed.

use stacksync_proto::ChunkId;
use zstd::zstd_safe::{self, CCtx, CParameter, DCtx, DParameter};

use crate::chunker::MAX_CHUNK_LEN;
use crate::codec::{ChunkCodec, associated_data};
use crate::error::{ChunkProblem, ContentError};
use crate::format::{FLAG_AES_GCM, FLAG_ENCRYPTED, NONCE_LEN, TAG_LEN};

const MAGIC: &[u8; 4] = b"SSdt";
/// The delta format version this build writes and reads.
pub const DELTA_FORMAT_VERSION: u8 = 1;
const KNOWN_FLAGS: u8 = FLAG_ENCRYPTED | FLAG_AES_GCM;
const FIXED_LEN: usize = 52;
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
    /// The base chunk's plaintext length.
    pub len: u32,
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
/// ids and encryption (both at most [`MAX_CHUNK_LEN`] bytes).
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
    let header_len = FIXED_LEN + nonce.map_or(0, |n| n.len());
    let patch = patch_from(base_plain, target_plain, PATCH_LEVEL)?;
    let tag_len = if nonce.is_some() { TAG_LEN } else { 0 };
    // Both lengths were checked against MAX_CHUNK_LEN (16 MiB) above, and
    // a patch is never larger than zstd's bound for its input.
    let header = DeltaHeader {
        flags,
        plaintext_len: target_plain.len() as u32,
        body_len: (patch.len() + tag_len) as u32,
        base: DeltaBase {
            id: base,
            len: base_plain.len() as u32,
        },
        nonce,
    };
    let mut bytes = Vec::with_capacity(header_len + patch.len() + tag_len);
    header.write(&mut bytes);
    bytes.extend_from_slice(&patch);
    if let Some(nonce) = &nonce {
        let aad = associated_data(&bytes[..header_len], &id);
        codec.seal_body(nonce, &aad, &mut bytes, header_len)?;
    }
    Ok(DeltaChunk {
        id,
        base,
        base_len: header.base.len,
        plaintext_len: header.plaintext_len,
        bytes,
    })
}

/// The base that the delta object `encoded` names; an error if its header
/// is not a valid delta header.
pub fn delta_base(encoded: &[u8]) -> Result<DeltaBase, ChunkProblem> {
    DeltaHeader::parse(encoded).map(|h| h.base)
}

/// Decodes the delta object `encoded` against `base_plain` and returns the
/// target chunk, which must be the chunk `id` names.
///
/// Refuses a base whose length or id differs from the one the delta names
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
    if base_plain.len() != header.base.len as usize || codec.chunk_id(base_plain) != header.base.id
    {
        return Err(fail(ChunkProblem::WrongBase));
    }
    let header_len = header.len();
    let body = &encoded[header_len..];
    let opened;
    let patch = match header.nonce {
        None => body,
        Some(nonce) => {
            let aad = associated_data(&encoded[..header_len], id);
            let aes = header.flags & FLAG_AES_GCM != 0;
            opened = codec
                .open_body(aes, &nonce, &aad, body)
                .map_err(|()| fail(ChunkProblem::Authentication))?;
            &opened[..]
        }
    };
    let target_len = header.plaintext_len as usize;
    let target = patch_apply(base_plain, patch, target_len).map_err(fail)?;
    if codec.chunk_id(&target) != *id {
        return Err(fail(ChunkProblem::IdMismatch));
    }
    Ok(target)
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

/// A parsed delta header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeltaHeader {
    flags: u8,
    plaintext_len: u32,
    body_len: u32,
    base: DeltaBase,
    nonce: Option<[u8; NONCE_LEN]>,
}

impl DeltaHeader {
    fn len(&self) -> usize {
        FIXED_LEN + if self.nonce.is_some() { NONCE_LEN } else { 0 }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[DELTA_FORMAT_VERSION, self.flags, 0, 0]);
        out.extend_from_slice(&self.plaintext_len.to_le_bytes());
        out.extend_from_slice(&self.body_len.to_le_bytes());
        out.extend_from_slice(&self.base.len.to_le_bytes());
        out.extend_from_slice(self.base.id.as_bytes());
        if let Some(nonce) = &self.nonce {
            out.extend_from_slice(nonce);
        }
    }

    /// Parses and checks a header against the whole object: on success the
    /// body is exactly `bytes[len()..]` and both lengths are at most
    /// [`MAX_CHUNK_LEN`].
    fn parse(bytes: &[u8]) -> Result<DeltaHeader, ChunkProblem> {
        let truncated = |needed: usize| ChunkProblem::Truncated {
            needed,
            got: bytes.len(),
        };
        let fixed = bytes.get(..FIXED_LEN).ok_or(truncated(FIXED_LEN))?;
        if &fixed[..4] != MAGIC {
            return Err(ChunkProblem::BadMagic);
        }
        if fixed[4] != DELTA_FORMAT_VERSION {
            return Err(ChunkProblem::UnsupportedVersion(fixed[4]));
        }
        let flags = fixed[5];
        let reserved = u16::from_le_bytes([fixed[6], fixed[7]]);
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        let cipher_without_encryption = flags & FLAG_AES_GCM != 0 && !encrypted;
        if flags & !KNOWN_FLAGS != 0 || reserved != 0 || cipher_without_encryption {
            return Err(ChunkProblem::UnknownBits { flags, reserved });
        }
        let le32 = |at: usize| {
            u32::from_le_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
        };
        let (plaintext_len, body_len, base_len) = (le32(8), le32(12), le32(16));
        for declared in [plaintext_len, base_len] {
            if declared as usize > MAX_CHUNK_LEN {
                return Err(ChunkProblem::TooLarge {
                    declared: declared.into(),
                    max: MAX_CHUNK_LEN as u64,
                });
            }
        }
        let mut base_id = [0u8; 32];
        base_id.copy_from_slice(&fixed[20..52]);
        let mut header = DeltaHeader {
            flags,
            plaintext_len,
            body_len,
            base: DeltaBase {
                id: ChunkId(base_id),
                len: base_len,
            },
            nonce: None,
        };
        if encrypted {
            let end = FIXED_LEN + NONCE_LEN;
            let nonce = bytes.get(FIXED_LEN..end).ok_or(truncated(end))?;
            let mut n = [0u8; NONCE_LEN];
            n.copy_from_slice(nonce);
            header.nonce = Some(n);
        }
        // A patch is at least a frame header; an encrypted one also a tag.
        let tag = if encrypted { TAG_LEN } else { 0 };
        if (body_len as usize) <= tag {
            return Err(ChunkProblem::LengthMismatch {
                body: body_len.into(),
                plaintext: plaintext_len.into(),
            });
        }
        let needed = header.len() + body_len as usize;
        match bytes.len() {
            got if got < needed => Err(truncated(needed)),
            got if got > needed => Err(ChunkProblem::TrailingBytes {
                extra: got - needed,
            }),
            _ => Ok(header),
        }
    }
}
