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

/// Reads the header of an open object file.
pub async fn read_header(file: &mut tokio::fs::File, what: &str) -> Result<Header> {
    let mut buf = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut buf)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => BlobError::new(
                BlobErrorKind::Integrity,
                format!("{what}: truncated header"),
            ),
            _ => BlobError::io(format!("read header of {what}"), e),
        })?;
    Header::decode(&buf, what)
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
