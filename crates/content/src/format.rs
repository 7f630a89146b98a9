//! The chunk object format: a small versioned header, then the body.
//!
//! ```text
//! 0..4    magic "SSch"
//! 4       format version (1)
//! 5       flags: bit 0 = body is zstd-compressed, bit 1 = body is encrypted,
//!         bit 2 = the cipher is AES-256-GCM instead of XChaCha20-Poly1305
//!         (only with bit 1)
//! 6..8    reserved, must be 0
//! 8..12   plaintext length, u32 little-endian
//! 12..16  body length (everything after the header), u32 little-endian
//! 16..40  24-byte random nonce, only when encrypted
//! body    [zstd frame | raw bytes], encrypted in place when encrypted,
//!         followed by the 16-byte tag (Poly1305 or GCM)
//! ```
//!
//! XChaCha20-Poly1305 uses the 24-byte nonce as is. AES-256-GCM only takes
//! 12-byte nonces, too few to pick at random for every chunk of a workspace
//! for ever, so it gets the same 192-bit margin the way XChaCha20 does: the
//! first 12 bytes select a per-chunk key, keyed BLAKE3 (workspace AES master
//! key) of those bytes, and the last 12 are that key's GCM nonce. AES-256-GCM
//! exists because with AES-NI and carry-less multiplication it costs about
//! 0.35 CPU-s per GB against XChaCha20-Poly1305's 1.0 (`bench`, stage
//! costs), which decides whether two cores reach 1 GB/s; XChaCha20 stays for
//! machines without those instructions. Readers of format version 1 that
//! predate bit 2 refuse such chunks as unknown bits rather than misread them.
//!
//! When encrypted, the whole header and the chunk id are the associated
//! data, so flipping the compressed flag, changing a length or moving the
//! object to another id fails authentication.

use crate::chunker::MAX_CHUNK_LEN;
use crate::error::ChunkProblem;

const MAGIC: &[u8; 4] = b"SSch";
/// The chunk format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
pub(crate) const FLAG_COMPRESSED: u8 = 0b01;
pub(crate) const FLAG_ENCRYPTED: u8 = 0b10;
pub(crate) const FLAG_AES_GCM: u8 = 0b100;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_AES_GCM;
const FIXED_LEN: usize = 16;
pub(crate) const NONCE_LEN: usize = 24;
pub(crate) const TAG_LEN: usize = 16;

/// A parsed chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub flags: u8,
    pub plaintext_len: u32,
    pub body_len: u32,
    pub nonce: Option<[u8; NONCE_LEN]>,
}

impl Header {
    pub fn compressed(&self) -> bool {
        self.flags & FLAG_COMPRESSED != 0
    }

    pub fn encrypted(&self) -> bool {
        self.flags & FLAG_ENCRYPTED != 0
    }

    /// Whether an encrypted body uses AES-256-GCM (else XChaCha20-Poly1305).
    pub fn aes_gcm(&self) -> bool {
        self.flags & FLAG_AES_GCM != 0
    }

    /// Length of the encoded header.
    pub fn len(&self) -> usize {
        Header::len_for(self.nonce.is_some())
    }

    /// Length of the header of an encrypted or a plain chunk.
    pub fn len_for(encrypted: bool) -> usize {
        FIXED_LEN + if encrypted { NONCE_LEN } else { 0 }
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
        out.extend_from_slice(&[FORMAT_VERSION, self.flags, 0, 0]);
        out.extend_from_slice(&self.plaintext_len.to_le_bytes());
        out.extend_from_slice(&self.body_len.to_le_bytes());
        if let Some(nonce) = &self.nonce {
            out.extend_from_slice(nonce);
        }
    }

    /// Parses and checks a header against the whole encoded chunk. On
    /// success the body is exactly `bytes[header.len()..]`, its length fits
    /// the plaintext length, and the plaintext length is at most
    /// [`MAX_CHUNK_LEN`]; callers may allocate `plaintext_len` bytes.
    pub fn parse(bytes: &[u8]) -> Result<Header, ChunkProblem> {
        if bytes.len() < FIXED_LEN {
            return Err(ChunkProblem::Truncated {
                needed: FIXED_LEN,
                got: bytes.len(),
            });
        }
        if &bytes[..4] != MAGIC {
            return Err(ChunkProblem::BadMagic);
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(ChunkProblem::UnsupportedVersion(bytes[4]));
        }
        let flags = bytes[5];
        let reserved = u16::from_le_bytes([bytes[6], bytes[7]]);
        let cipher_without_encryption = flags & FLAG_AES_GCM != 0 && flags & FLAG_ENCRYPTED == 0;
        if flags & !KNOWN_FLAGS != 0 || reserved != 0 || cipher_without_encryption {
            return Err(ChunkProblem::UnknownBits { flags, reserved });
        }
        let le32 = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let plaintext_len = le32(8);
        let body_len = le32(12);
        if plaintext_len as usize > MAX_CHUNK_LEN {
            return Err(ChunkProblem::TooLarge {
                declared: plaintext_len.into(),
                max: MAX_CHUNK_LEN as u64,
            });
        }
        let mut header = Header {
            flags,
            plaintext_len,
            body_len,
            nonce: None,
        };
        if header.encrypted() {
            let end = FIXED_LEN + NONCE_LEN;
            if bytes.len() < end {
                return Err(ChunkProblem::Truncated {
                    needed: end,
                    got: bytes.len(),
                });
            }
            let mut nonce = [0u8; NONCE_LEN];
            nonce.copy_from_slice(&bytes[FIXED_LEN..end]);
            header.nonce = Some(nonce);
        }
        header.check_lengths()?;
        let needed = header.len() + body_len as usize;
        if bytes.len() < needed {
            return Err(ChunkProblem::Truncated {
                needed,
                got: bytes.len(),
            });
        }
        if bytes.len() > needed {
            return Err(ChunkProblem::TrailingBytes {
                extra: bytes.len() - needed,
            });
        }
        Ok(header)
    }

    /// The body must be exactly the plaintext (plus tag) when stored raw,
    /// and no longer than that when compressed: the encoder only keeps a
    /// compressed body that is smaller.
    fn check_lengths(&self) -> Result<(), ChunkProblem> {
        let tag = if self.encrypted() { TAG_LEN as u64 } else { 0 };
        let body = u64::from(self.body_len);
        let plaintext = u64::from(self.plaintext_len);
        let fits = if self.compressed() {
            body > tag && body <= plaintext + tag
        } else {
            body == plaintext + tag
        };
        if fits {
            Ok(())
        } else {
            Err(ChunkProblem::LengthMismatch { body, plaintext })
        }
    }
}
