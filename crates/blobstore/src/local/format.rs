//! The on-disk object format of the local backend.
//!
//! Chunk ids are BLAKE3 of the chunk's *plaintext*, but the store holds the
//! encoded bytes (compressed, maybe encrypted), so the id cannot verify what
//! is on disk. Each object file therefore starts with its own checksum:
//!
//! ```text
//! magic "SSBLOB\0\x01" (8) | BLAKE3 of payload (32) | payload length, u64 LE (8) | payload
//! ```
//!
//! The header is written last (after the payload, at offset 0) so a writer can
//! stream a payload of unknown length; the file only becomes visible under
//! its final name after the header is in place and synced.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::at_rest::{self, Opener, SealedHeader};
use crate::error::{BlobError, BlobErrorKind, Result};
use crate::store::ByteStream;

/// Identifies version 1 of the format.
pub const MAGIC: [u8; 8] = *b"SSBLOB\0\x01";
/// Bytes before the payload.
pub const HEADER_LEN: u64 = 48;
/// How much is read from disk at a time.
const READ_BLOCK: usize = 256 * 1024;
/// Pieces at least this large are hashed off the async runtime.
const BLOCKING_HASH_MIN: usize = 128 * 1024;

/// The parsed header of an object file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// BLAKE3 of the payload.
    pub checksum: [u8; 32],
    /// Payload length in bytes.
    pub len: u64,
}

impl Header {
    /// The 48 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[..8].copy_from_slice(&MAGIC);
        out[8..40].copy_from_slice(&self.checksum);
        out[40..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Parses header bytes; `what` names the object for the error.
    pub fn decode(bytes: &[u8; HEADER_LEN as usize], what: &str) -> Result<Header> {
        if bytes[..8] != MAGIC {
            return Err(BlobError::new(
                BlobErrorKind::Integrity,
                format!("{what}: not an object file (bad magic)"),
            ));
        }
        let mut checksum = [0u8; 32];
        checksum.copy_from_slice(&bytes[8..40]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[40..]);
        Ok(Header {
            checksum,
            len: u64::from_le_bytes(len),
        })
    }
}

/// Feeds `piece` to `hasher`, off the runtime when it is large.
pub async fn hash_piece(mut hasher: blake3::Hasher, piece: Bytes) -> Result<blake3::Hasher> {
    if piece.len() < BLOCKING_HASH_MIN {
        hasher.update(&piece);
        return Ok(hasher);
    }
    tokio::task::spawn_blocking(move || {
        hasher.update(&piece);
        hasher
    })
    .await
    .map_err(|e| BlobError::new(BlobErrorKind::Io, format!("hashing task failed: {e}")))
}

/// The header of an object file, plain (version 1) or sealed (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredHeader {
    /// Stored as the payload's bytes.
    Plain(Header),
    /// Encrypted at rest.
    Sealed(SealedHeader),
}

impl StoredHeader {
    /// The payload's (plaintext) length.
    pub fn len(&self) -> u64 {
        match self {
            StoredHeader::Plain(h) => h.len,
            StoredHeader::Sealed(h) => h.len,
        }
    }

    /// The payload's checksum (keyed for a sealed object).
    pub fn checksum(&self) -> [u8; 32] {
        match self {
            StoredHeader::Plain(h) => h.checksum,
            StoredHeader::Sealed(h) => h.checksum(),
        }
    }

    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            StoredHeader::Plain(h) => h.encode().to_vec(),
            StoredHeader::Sealed(h) => h.encode().to_vec(),
        }
    }
}

/// Reads the header of an open object file, of either version.
pub async fn read_header(file: &mut tokio::fs::File, what: &str) -> Result<StoredHeader> {
    let mut buf = [0u8; at_rest::HEADER_LEN as usize];
    read_exact(file, &mut buf[..HEADER_LEN as usize], what).await?;
    if buf[..8] == at_rest::MAGIC {
        read_exact(file, &mut buf[HEADER_LEN as usize..], what).await?;
        return SealedHeader::decode(buf, what).map(StoredHeader::Sealed);
    }
    let mut v1 = [0u8; HEADER_LEN as usize];
    v1.copy_from_slice(&buf[..HEADER_LEN as usize]);
    Header::decode(&v1, what).map(StoredHeader::Plain)
}

async fn read_exact(file: &mut tokio::fs::File, buf: &mut [u8], what: &str) -> Result<()> {
    file.read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BlobError::new(
                BlobErrorKind::Integrity,
                format!("{what}: truncated header"),
            ),
            _ => BlobError::io(format!("read header of {what}"), e),
        })
}

/// Where a whole read is: the hash so far and the bytes read.
struct ReadState {
    file: tokio::fs::File,
    hasher: blake3::Hasher,
    header: Header,
    /// Payload bytes read so far.
    pos: u64,
    what: String,
    done: bool,
}

/// Streams `start..end` of the payload of an open object file (positioned
/// just after its header), `start <= end <= header.len`.
///
/// A read of the whole payload is hashed, and a mismatch ends the stream
/// with an `Integrity` error. A read of part of it costs only that part: a
/// client reads many small chunks out of one pack, and hashing the whole
/// pack for each would multiply the disk and CPU work by the number of
/// chunks in it. The bytes of a chunk check themselves (the client's
/// decoder verifies them against the chunk id), so only truncation is
/// detected here.
pub fn payload_stream(
    file: tokio::fs::File,
    header: Header,
    start: u64,
    end: u64,
    what: String,
) -> ByteStream {
    if (start, end) == (0, header.len) {
        whole_payload(file, header, what)
    } else {
        payload_range(file, start, end, what)
    }
}

/// Where a range read is: the next payload byte to read and the end.
struct RangeState {
    file: tokio::fs::File,
    pos: u64,
    end: u64,
    /// Whether the file is positioned at `pos` yet (the first step seeks).
    positioned: bool,
    what: String,
}

/// Streams bytes `start..end` of the payload, reading nothing else.
fn payload_range(file: tokio::fs::File, start: u64, end: u64, what: String) -> ByteStream {
    let state = RangeState {
        file,
        pos: start,
        end,
        positioned: false,
        what,
    };
    Box::pin(futures::stream::try_unfold(state, |mut st| async move {
        if st.pos >= st.end {
            return Ok(None);
        }
        if !st.positioned {
            st.file
                .seek(std::io::SeekFrom::Start(HEADER_LEN + st.pos))
                .await
                .map_err(|e| BlobError::io(format!("seek in {}", st.what), e))?;
            st.positioned = true;
        }
        let Some(piece) = read_block(&mut st.file, st.end - st.pos, &st.what).await? else {
            return Err(BlobError::new(
                BlobErrorKind::Integrity,
                format!(
                    "{}: truncated (nothing at payload byte {})",
                    st.what, st.pos
                ),
            ));
        };
        st.pos += piece.len() as u64;
        Ok(Some((piece, st)))
    }))
}

/// Streams the whole payload, checking it against the header's checksum.
fn whole_payload(file: tokio::fs::File, header: Header, what: String) -> ByteStream {
    let state = ReadState {
        file,
        hasher: blake3::Hasher::new(),
        header,
        pos: 0,
        what,
        done: false,
    };
    Box::pin(futures::stream::try_unfold(state, |mut st| async move {
        if st.done {
            return Ok(None);
        }
        let remaining = st.header.len - st.pos;
        if remaining == 0 {
            st.done = true;
            // Anything after the declared payload means the file was
            // tampered with or mis-written.
            let mut extra = [0u8; 1];
            let trailing = st
                .file
                .read(&mut extra)
                .await
                .map_err(|e| BlobError::io(format!("read {}", st.what), e))?;
            let actual = st.hasher.finalize();
            if trailing != 0 || actual.as_bytes() != &st.header.checksum {
                return Err(BlobError::new(
                    BlobErrorKind::Integrity,
                    format!("{}: stored bytes do not match their checksum", st.what),
                ));
            }
            return Ok(None);
        }
        let Some(piece) = read_block(&mut st.file, remaining, &st.what).await? else {
            return Err(BlobError::new(
                BlobErrorKind::Integrity,
                format!(
                    "{}: truncated ({} of {} bytes)",
                    st.what, st.pos, st.header.len
                ),
            ));
        };
        st.hasher = hash_piece(st.hasher, piece.clone()).await?;
        st.pos += piece.len() as u64;
        Ok(Some((piece, st)))
    }))
}

/// Reads the next piece of at most `remaining` bytes (and at most
/// [`READ_BLOCK`]); `None` when the file ends first.
async fn read_block(
    file: &mut tokio::fs::File,
    remaining: u64,
    what: &str,
) -> Result<Option<Bytes>> {
    let mut buf = BytesMut::zeroed(remaining.min(READ_BLOCK as u64) as usize);
    let got = file
        .read(&mut buf)
        .await
        .map_err(|e| BlobError::io(format!("read {what}"), e))?;
    if got == 0 {
        return Ok(None);
    }
    buf.truncate(got);
    Ok(Some(buf.freeze()))
}

/// Where a read of a sealed object is.
struct SealedState {
    file: tokio::fs::File,
    opener: Opener,
    /// The object's plaintext length.
    total: u64,
    /// The next segment to read.
    segment: u64,
    /// Payload bytes wanted: `pos..end`.
    pos: u64,
    end: u64,
    /// Whole reads: the keyed checksum so far, and the one expected.
    check: Option<(blake3::Hasher, [u8; 32])>,
    positioned: bool,
    what: String,
}

/// Streams `start..end` of a sealed object's plaintext (`start <= end <=
/// header.len`), decrypting only the segments the range covers; each
/// segment is authenticated as it is read. A whole read also checks the
/// keyed checksum (`check`: a hasher under the key that made it) and that
/// nothing follows the last segment.
pub fn sealed_stream(
    file: tokio::fs::File,
    header: SealedHeader,
    opener: Opener,
    check: Option<blake3::Hasher>,
    start: u64,
    end: u64,
    what: String,
) -> ByteStream {
    let whole = (start, end) == (0, header.len);
    let state = SealedState {
        file,
        opener,
        total: header.len,
        segment: start / at_rest::SEGMENT,
        pos: start,
        end,
        check: check
            .filter(|_| whole)
            .map(|hasher| (hasher, header.checksum())),
        positioned: false,
        what,
    };
    Box::pin(futures::stream::try_unfold(state, |mut st| async move {
        loop {
            // An empty object's one (empty) segment is still checked on a whole read.
            let empty_unchecked = st.total == 0 && st.segment == 0 && st.check.is_some();
            if st.pos >= st.end && !empty_unchecked {
                if let Some((hasher, expected)) = st.check.take() {
                    let mut extra = [0u8; 1];
                    let trailing = st
                        .file
                        .read(&mut extra)
                        .await
                        .map_err(|e| BlobError::io(format!("read {}", st.what), e))?;
                    if trailing != 0 || hasher.finalize().as_bytes() != &expected {
                        return Err(BlobError::new(
                            BlobErrorKind::Integrity,
                            format!("{}: stored bytes do not match their checksum", st.what),
                        ));
                    }
                }
                return Ok(None);
            }
            if !st.positioned {
                st.file
                    .seek(std::io::SeekFrom::Start(at_rest::segment_offset(
                        st.segment,
                    )))
                    .await
                    .map_err(|e| BlobError::io(format!("seek in {}", st.what), e))?;
                st.positioned = true;
            }
            let seg_start = st.segment * at_rest::SEGMENT;
            let plain_len = (st.total - seg_start).min(at_rest::SEGMENT);
            let mut buf = BytesMut::zeroed((plain_len + at_rest::TAG) as usize);
            st.file
                .read_exact(&mut buf)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => BlobError::new(
                        BlobErrorKind::Integrity,
                        format!("{}: truncated at segment {}", st.what, st.segment),
                    ),
                    _ => BlobError::io(format!("read {}", st.what), e),
                })?;
            let plain = st.opener.open(st.segment, buf)?;
            if let Some((hasher, _)) = st.check.as_mut() {
                hasher.update(&plain);
            }
            st.segment += 1;
            let from = (st.pos - seg_start) as usize;
            let to = ((st.end - seg_start) as usize).min(plain.len());
            st.pos = seg_start + to as u64;
            if to > from {
                return Ok(Some((plain.slice(from..to), st)));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_bad_magic() {
        let h = Header {
            checksum: [7; 32],
            len: 12345,
        };
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes, "x").unwrap(), h);
        let mut bad = bytes;
        bad[0] ^= 1;
        assert_eq!(
            Header::decode(&bad, "x").unwrap_err().kind,
            BlobErrorKind::Integrity
        );
    }
}
