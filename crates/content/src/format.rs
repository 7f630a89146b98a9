//! The chunk object format: a small versioned header, then the body.
//! Unencrypted chunks are format version 1, encrypted ones version 2, and
//! a reader refuses any other pairing.
//!
//! Version 1, unencrypted (plain or compressed), unchanged since the first
//! stored chunk:
//!
//! ```text
//! 0..4    magic "SSch"
//! 4       format version (1)
//! 5       flags: bit 0 = body is zstd-compressed; bits 1 and 2 must be 0
//! 6..8    reserved, must be 0
//! 8..12   plaintext length, u32 little-endian
//! 12..16  body length (everything after the header), u32 little-endian
//! body    zstd frame | raw bytes
//! ```
//!
//! Version 2, encrypted. The server is the adversary here, so the public
//! header carries no plaintext length and no compression flag, and the
//! stored body length is only a Padmé bucket ([`crate::padme`]):
//!
//! ```text
//! 0..4    magic "SSch"
//! 4       format version (2)
//! 5       flags: bit 1 = encrypted, must be set; bit 2 = the cipher is
//!         AES-256-GCM instead of XChaCha20-Poly1305; bit 0 must be 0
//! 6..8    key generation minus one, u16 little-endian (generations 1 to
//!         65536; these bytes were "reserved, must be 0" before key
//!         rotation, so every chunk stored before it is generation 1)
//! 8..12   body length (everything after the header), u32 little-endian:
//!         padme(stored + 8) + 16
//! 12..36  24-byte random nonce
//! body    encrypted: stored body, zero bytes up to the bucket, then
//!         stored length and plaintext length (u32 little-endian each);
//!         followed by the 16-byte tag (Poly1305 or GCM)
//! ```
//!
//! The stored body is the raw plaintext when the two inner lengths are
//! equal and a zstd frame when the stored length is smaller (the encoder
//! only keeps a compressed body that is smaller); a larger one is refused.
//! The inner lengths sit at the end so that a raw plaintext stays where it
//! is on both sides (encrypted and decrypted in place, no shift). Decoding
//! checks, after authentication, that the lengths fit the bucket and
//! [`MAX_CHUNK_LEN`] and that every padding byte is zero, so an encrypted
//! chunk has exactly one valid encoding per nonce. What the server still
//! learns is the bucket, O(log log n) bits of the stored length, and its
//! cut points come from a keyed gear table (see `gear`).
//!
//! Version 1 with the encrypted bit (what builds before version 2 wrote)
//! is refused as a downgrade ([`ChunkProblem::Downgrade`]): it shows the
//! lengths in the clear, and no such chunk was ever synced. Version 2
//! without it is refused too ([`ChunkProblem::PlainInEncryptedFormat`]).
//!
//! XChaCha20-Poly1305 uses the 24-byte nonce as is. AES-256-GCM only takes
//! 12-byte nonces, too few to pick at random for every chunk of a workspace
//! for ever, so it gets the same 192-bit margin the way XChaCha20 does: the
//! first 12 bytes select a per-chunk key, keyed BLAKE3 (workspace AES master
//! key) of those bytes, and the last 12 are that key's GCM nonce. AES-256-GCM
//! exists because with AES-NI and carry-less multiplication it costs about
//! 0.35 CPU-s per GB against XChaCha20-Poly1305's 1.0 (`bench`, stage
//! costs), which decides whether two cores reach 1 GB/s; XChaCha20 stays for
//! machines without those instructions.
//!
//! When encrypted, the whole header and the chunk id are the associated
//! data, so changing the cipher bit, the body length or the key generation,
//! or moving the object to another id, fails authentication.
//!
//! Key generations: an encrypted workspace's key is rotated when a member
//! leaves, and files that did not change keep the chunks written under
//! earlier keys. The generation in the header says which key wrote the
//! chunk (its AEAD key and the id key that named it), so a member decodes
//! with that generation's key and fails closed
//! ([`ChunkProblem::UnknownGeneration`]) on one it does not hold. The
//! server sees each chunk's generation, in the clear but authenticated as
//! part of the header; it tells the server little it does not know from
//! when each chunk was uploaded and when members left.

use crate::chunker::MAX_CHUNK_LEN;
use crate::error::ChunkProblem;
use crate::padme::padme;

const MAGIC: &[u8; 4] = b"SSch";
/// The chunk format version this build writes for unencrypted chunks
/// (plain or compressed). Encrypted chunks are version
/// [`ENCRYPTED_FORMAT_VERSION`].
pub const FORMAT_VERSION: u8 = 1;
/// The chunk format version of encrypted chunks: lengths inside the
/// ciphertext and a padded body.
pub const ENCRYPTED_FORMAT_VERSION: u8 = 2;
pub(crate) const FLAG_COMPRESSED: u8 = 0b01;
pub(crate) const FLAG_ENCRYPTED: u8 = 0b10;
pub(crate) const FLAG_AES_GCM: u8 = 0b100;
const PLAIN_FIXED_LEN: usize = 16;
const SEALED_FIXED_LEN: usize = 12;
pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;
/// The inner lengths at the end of an encrypted chunk body: stored and
/// plaintext.
pub(crate) const INNER_LEN: usize = 8;

/// A parsed chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// Version 1: unencrypted, lengths in the clear.
    Plain {
        compressed: bool,
        plaintext_len: u32,
        body_len: u32,
    },
    /// Version 2: encrypted; `body_len` is a Padmé bucket plus the tag.
    Sealed {
        aes_gcm: bool,
        /// The key generation that sealed it, 1 to
        /// [`MAX_KEY_GENERATION`].
        generation: u32,
        body_len: u32,
        nonce: [u8; NONCE_LEN],
    },
}

impl Header {
    /// Length of the encoded header.
    pub fn len(&self) -> usize {
        Header::len_for(matches!(self, Header::Sealed { .. }))
    }

    /// Length of the header of an encrypted or a plain chunk.
    pub fn len_for(encrypted: bool) -> usize {
        if encrypted {
            SEALED_FIXED_LEN + NONCE_LEN
        } else {
            PLAIN_FIXED_LEN
        }
    }

    /// Writes the encoded header over `out`, which is exactly
    /// [`Self::len`] bytes long.
    pub fn write_to(&self, out: &mut [u8]) {
        let mut v = Vec::with_capacity(self.len());
        self.write(&mut v);
        out.copy_from_slice(&v);
    }

    /// Appends the encoded header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        match self {
            Header::Plain {
                compressed,
                plaintext_len,
                body_len,
            } => {
                let flags = if *compressed { FLAG_COMPRESSED } else { 0 };
                out.extend_from_slice(&[FORMAT_VERSION, flags, 0, 0]);
                out.extend_from_slice(&plaintext_len.to_le_bytes());
                out.extend_from_slice(&body_len.to_le_bytes());
            }
            Header::Sealed {
                aes_gcm,
                generation,
                body_len,
                nonce,
            } => {
                let flags = FLAG_ENCRYPTED | if *aes_gcm { FLAG_AES_GCM } else { 0 };
                out.extend_from_slice(&[ENCRYPTED_FORMAT_VERSION, flags]);
                out.extend_from_slice(&generation_bytes(*generation));
                out.extend_from_slice(&body_len.to_le_bytes());
                out.extend_from_slice(nonce);
            }
        }
    }

    /// Parses and checks a header against the whole encoded chunk. On
    /// success the body is exactly `bytes[header.len()..]`; a plain
    /// header's lengths fit each other and its plaintext length is at most
    /// [`MAX_CHUNK_LEN`] (callers may allocate that many bytes); a sealed
    /// header's body is a Padmé bucket no larger than the bucket of a
    /// maximum chunk, plus the tag.
    pub fn parse(bytes: &[u8]) -> Result<Header, ChunkProblem> {
        let truncated = |needed: usize| ChunkProblem::Truncated {
            needed,
            got: bytes.len(),
        };
        let fixed = bytes.get(..8).ok_or(truncated(PLAIN_FIXED_LEN))?;
        if &fixed[..4] != MAGIC {
            return Err(ChunkProblem::BadMagic);
        }
        let (version, flags) = (fixed[4], fixed[5]);
        // Reserved in version 1, the key generation in version 2.
        let reserved = u16::from_le_bytes([fixed[6], fixed[7]]);
        let le32 = |at: usize| -> Result<u32, ChunkProblem> {
            let b = bytes.get(at..at + 4).ok_or(truncated(at + 4))?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let header = match version {
            FORMAT_VERSION => {
                if bytes.len() < PLAIN_FIXED_LEN {
                    return Err(truncated(PLAIN_FIXED_LEN));
                }
                if flags & FLAG_ENCRYPTED != 0 {
                    return Err(ChunkProblem::Downgrade { version });
                }
                if flags & !FLAG_COMPRESSED != 0 || reserved != 0 {
                    return Err(ChunkProblem::UnknownBits { flags, reserved });
                }
                let (plaintext_len, body_len) = (le32(8)?, le32(12)?);
                if plaintext_len as usize > MAX_CHUNK_LEN {
                    return Err(ChunkProblem::TooLarge {
                        declared: plaintext_len.into(),
                        max: MAX_CHUNK_LEN as u64,
                    });
                }
                let header = Header::Plain {
                    compressed: flags & FLAG_COMPRESSED != 0,
                    plaintext_len,
                    body_len,
                };
                header.check_plain_lengths()?;
                header
            }
            ENCRYPTED_FORMAT_VERSION => {
                if flags & !(FLAG_ENCRYPTED | FLAG_AES_GCM) != 0 {
                    return Err(ChunkProblem::UnknownBits { flags, reserved: 0 });
                }
                if flags & FLAG_ENCRYPTED == 0 {
                    return Err(ChunkProblem::PlainInEncryptedFormat { version });
                }
                let body_len = le32(8)?;
                let end = SEALED_FIXED_LEN + NONCE_LEN;
                let nonce_bytes = bytes.get(SEALED_FIXED_LEN..end).ok_or(truncated(end))?;
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(nonce_bytes);
                check_bucket(body_len)?;
                Header::Sealed {
                    aes_gcm: flags & FLAG_AES_GCM != 0,
                    generation: generation_from(reserved),
                    body_len,
                    nonce,
                }
            }
            other => return Err(ChunkProblem::UnsupportedVersion(other)),
        };
        let needed = header.len() + header.body_len() as usize;
        if bytes.len() < needed {
            return Err(truncated(needed));
        }
        if bytes.len() > needed {
            return Err(ChunkProblem::TrailingBytes {
                extra: bytes.len() - needed,
            });
        }
        Ok(header)
    }

    /// Bytes after the header.
    pub fn body_len(&self) -> u32 {
        match self {
            Header::Plain { body_len, .. } | Header::Sealed { body_len, .. } => *body_len,
        }
    }

    /// The body must be exactly the plaintext when stored raw, and no
    /// longer than that when compressed: the encoder only keeps a
    /// compressed body that is smaller.
    fn check_plain_lengths(&self) -> Result<(), ChunkProblem> {
        let Header::Plain {
            compressed,
            plaintext_len,
            body_len,
        } = *self
        else {
            return Ok(());
        };
        let (body, plaintext) = (u64::from(body_len), u64::from(plaintext_len));
        let fits = if compressed {
            body > 0 && body <= plaintext
        } else {
            body == plaintext
        };
        if fits {
            Ok(())
        } else {
            Err(ChunkProblem::LengthMismatch { body, plaintext })
        }
    }
}

/// The highest key generation an encrypted chunk or delta header can
/// name: its two generation bytes hold the generation minus one.
pub const MAX_KEY_GENERATION: u32 = 1 << 16;

/// Header bytes 6..8 of an encrypted chunk or delta: `generation` minus
/// one, u16 little-endian. Callers only pass generations a codec accepted
/// (1 to [`MAX_KEY_GENERATION`]).
pub(crate) fn generation_bytes(generation: u32) -> [u8; 2] {
    debug_assert!(
        (1..=MAX_KEY_GENERATION).contains(&generation),
        "codecs only hold generations 1 to {MAX_KEY_GENERATION}"
    );
    (generation.saturating_sub(1) as u16).to_le_bytes()
}

/// The key generation that header bytes 6..8 (read as a u16) name: every
/// value is a generation, 0 (what every chunk before key rotation has) is
/// generation 1.
pub(crate) fn generation_from(bytes: u16) -> u32 {
    u32::from(bytes) + 1
}

/// The largest padded body (without the tag) of an encrypted chunk: the
/// bucket of a maximum chunk stored raw.
fn max_padded() -> u64 {
    padme((MAX_CHUNK_LEN + INNER_LEN) as u64)
}

/// An encrypted body length must be a bucket of at least the inner
/// lengths, plus the tag, and no more than a maximum chunk needs.
fn check_bucket(body_len: u32) -> Result<(), ChunkProblem> {
    let body = u64::from(body_len);
    let padded = body.saturating_sub(TAG_LEN as u64);
    let bad = |why: &str| Err(ChunkProblem::Padding(format!("body of {body} bytes {why}")));
    if body < (TAG_LEN + INNER_LEN) as u64 {
        return bad("is too short for the inner lengths and the tag");
    }
    if padded > max_padded() {
        return Err(ChunkProblem::TooLarge {
            declared: padded,
            max: max_padded(),
        });
    }
    if padme(padded) != padded {
        return bad("is not a padding bucket plus the tag");
    }
    Ok(())
}

/// Pads the stored body `buf[from..]` of an encrypted object in place:
/// zero bytes up to the bucket of the body and its trailer, then the
/// trailer (the stored length, then `fields`, u32 little-endian each). The
/// caller encrypts `buf[from..]` afterwards. Returns the padded length.
/// Chunks carry one field (the plaintext length), deltas two.
pub(crate) fn pad<const N: usize>(buf: &mut Vec<u8>, from: usize, fields: [u32; N]) -> usize {
    let stored = buf.len() - from;
    let padded = padded_len::<N>(stored);
    buf.resize(from + padded - trailer_len::<N>(), 0);
    // stored <= a maximum chunk's zstd bound (~16 MiB): fits a u32.
    buf.extend_from_slice(&(stored as u32).to_le_bytes());
    for field in fields {
        buf.extend_from_slice(&field.to_le_bytes());
    }
    padded
}

/// Bytes of a trailer with `N` fields after the stored length.
const fn trailer_len<const N: usize>() -> usize {
    4 * (N + 1)
}

/// The padded length of a stored body of `stored` bytes and a trailer of
/// `N` fields, without the tag.
pub(crate) fn padded_len<const N: usize>(stored: usize) -> usize {
    padme((stored + trailer_len::<N>()) as u64) as usize
}

/// Checks the decrypted padded body `opened` made by [`pad`] (the stored
/// length fits before the trailer, the padding is all zero, and the body
/// is padded to exactly its bucket) and truncates it to the stored body.
/// Returns the trailer's fields, for the caller to check. Total: any bytes
/// give an error or the stored body.
pub(crate) fn unpad<const N: usize>(opened: &mut Vec<u8>) -> Result<[u32; N], ChunkProblem> {
    let padded = opened.len();
    let split = padded
        .checked_sub(trailer_len::<N>())
        .ok_or_else(|| ChunkProblem::Padding(format!("{padded} bytes hold no inner lengths")))?;
    let le32 = |at: usize| {
        u32::from_le_bytes([opened[at], opened[at + 1], opened[at + 2], opened[at + 3]])
    };
    let stored = le32(split);
    let mut fields = [0u32; N];
    for (i, field) in fields.iter_mut().enumerate() {
        *field = le32(split + 4 * (i + 1));
    }
    let stored_len = stored as usize;
    if stored_len > split {
        return Err(ChunkProblem::Padding(format!(
            "stored length {stored} does not fit a padded body of {padded} bytes"
        )));
    }
    // The one bucket the encoder picks: a body padded further than it
    // needs is refused too, so each object has one valid padding.
    if padded_len::<N>(stored_len) != padded {
        return Err(ChunkProblem::Padding(format!(
            "{padded} bytes is not the bucket of a {stored}-byte body"
        )));
    }
    if opened[stored_len..split].iter().any(|&b| b != 0) {
        return Err(ChunkProblem::Padding("padding bytes are not zero".into()));
    }
    opened.truncate(stored_len);
    Ok(fields)
}

/// What the inner lengths of a decrypted chunk body say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inner {
    pub plaintext_len: u32,
    pub compressed: bool,
}

/// [`unpad`] for a chunk: its one field is the plaintext length, at most
/// [`MAX_CHUNK_LEN`]; a stored body shorter than it is a zstd frame, one
/// as long is raw, a longer one is refused.
pub(crate) fn unpad_chunk(opened: &mut Vec<u8>) -> Result<Inner, ChunkProblem> {
    let [plaintext_len] = unpad::<1>(opened)?;
    if plaintext_len as usize > MAX_CHUNK_LEN {
        return Err(ChunkProblem::TooLarge {
            declared: plaintext_len.into(),
            max: MAX_CHUNK_LEN as u64,
        });
    }
    let stored = opened.len() as u64;
    if stored > u64::from(plaintext_len) {
        return Err(ChunkProblem::Padding(format!(
            "stored body of {stored} bytes is longer than its plaintext of {plaintext_len}"
        )));
    }
    Ok(Inner {
        plaintext_len,
        compressed: stored < u64::from(plaintext_len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encrypted header as every build before key rotation wrote it:
    /// bytes 6..8 zero. Followed by the smallest valid body.
    fn v2_chunk(generation_bytes: [u8; 2]) -> Vec<u8> {
        let body_len = (INNER_LEN + TAG_LEN) as u32;
        let mut v = b"SSch\x02\x02".to_vec();
        v.extend_from_slice(&generation_bytes);
        v.extend_from_slice(&body_len.to_le_bytes());
        v.extend_from_slice(&[9; NONCE_LEN]);
        v.resize(v.len() + body_len as usize, 0);
        v
    }

    fn generation(bytes: &[u8]) -> u32 {
        match Header::parse(bytes) {
            Ok(Header::Sealed { generation, .. }) => generation,
            other => panic!("expected a sealed header, got {other:?}"),
        }
    }

    #[test]
    fn generation_bytes_are_the_generation_minus_one_and_zero_is_generation_1() {
        for (bytes, expected) in [
            ([0, 0], 1),
            ([1, 0], 2),
            ([0, 1], 257),
            ([0xff, 0xff], MAX_KEY_GENERATION),
        ] {
            assert_eq!(generation(&v2_chunk(bytes)), expected, "{bytes:?}");
        }
        for g in [1, 2, 255, 256, 257, MAX_KEY_GENERATION] {
            let header = Header::Sealed {
                aes_gcm: true,
                generation: g,
                body_len: (INNER_LEN + TAG_LEN) as u32,
                nonce: [3; NONCE_LEN],
            };
            let mut bytes = Vec::new();
            header.write(&mut bytes);
            assert_eq!(bytes[6..8], generation_bytes(g), "generation {g}");
            bytes.resize(header.len() + header.body_len() as usize, 0);
            assert_eq!(Header::parse(&bytes), Ok(header), "generation {g}");
        }
    }

    /// Plain chunks (version 1) keep bytes 6..8 reserved: no generation.
    #[test]
    fn plain_headers_still_refuse_reserved_bytes() {
        let header = Header::Plain {
            compressed: false,
            plaintext_len: 3,
            body_len: 3,
        };
        let mut bytes = Vec::new();
        header.write(&mut bytes);
        bytes.extend_from_slice(b"abc");
        assert_eq!(bytes[6..8], [0, 0]);
        assert_eq!(Header::parse(&bytes), Ok(header));
        for reserved in [[1, 0], [0, 1]] {
            bytes[6..8].copy_from_slice(&reserved);
            assert!(matches!(
                Header::parse(&bytes),
                Err(ChunkProblem::UnknownBits { .. })
            ));
        }
    }
}
