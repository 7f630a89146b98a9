//! Versioned encoding of every message that crosses a process boundary.
//!
//! A message travels as `{"v": N, "body": ...}` JSON. Readers accept any
//! `v` up to their own [`PROTOCOL_VERSION`] and ignore fields they do not
//! know, so a newer peer may add optional fields without breaking older
//! ones; a change that old readers cannot ignore bumps the version, and a
//! reader refuses a body from the future with a clear error instead of
//! misreading it.
//!
//! **Compact messages**, negotiated in band so that they work the same on
//! every transport (HTTP gateway, RabbitMQ, in-process bus): every request
//! and reply this build sends ([`encode_for`]) says which compact features
//! it reads (`"c": 1` in a plain envelope, a field older readers ignore; a
//! compressed message says so by being one). A sender uses compact forms only towards a peer that
//! said it reads them ([`Peer`], learned from the peer's last message), so
//! an older peer never receives what it cannot read. Level 1 is:
//!
//! * a message of at least [`COMPRESS_FROM`] bytes may travel compressed:
//!   a NUL byte, `Z`, the length of the JSON envelope inside (4 bytes,
//!   little-endian), then one zstd frame of that envelope, made with the
//!   level's dictionary (`wire_dictionary`) so that small messages shrink
//!   too. JSON never
//!   starts with a NUL byte, so the two forms cannot be confused, and an
//!   older reader refuses a compressed message as malformed instead of
//!   misreading it. The declared length is checked against
//!   [`MAX_MESSAGE_BYTES`] before anything is decompressed, decompression
//!   stops one byte past it, and the zstd window is capped, so a small
//!   hostile frame cannot make a reader allocate more than a plain message
//!   of the largest size could;
//! * a commit's reply may be brief ([`crate::brief`]).

use std::io::Read;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};
use crate::wire_dictionary::DICTIONARY;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// The compact features this build reads and writes (see the module
/// documentation); 0 is a peer that reads plain JSON only.
pub const COMPACT_LEVEL: u16 = 1;

/// Largest message accepted from a peer, in bytes (compressed or, for a
/// compressed message, once decompressed). Chunk data never travels in
/// these messages, only metadata, so this is generous.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Smaller messages are sent as they are: below this, even with the
/// dictionary, zstd's frame costs about what it saves.
pub const COMPRESS_FROM: usize = 96;

/// The first two bytes of a compressed message.
const COMPRESSED_MAGIC: [u8; 2] = [0, b'Z'];

/// The compressed header: magic and declared length.
const COMPRESSED_HEADER: usize = 6;

/// zstd level: fast, and already most of the gain on JSON metadata.
const ZSTD_LEVEL: i32 = 3;

/// Largest zstd window a reader accepts (2^24 = 16 MiB, the message cap).
const MAX_WINDOW_LOG: u32 = 24;

/// What a peer said it reads, from the last message it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    /// The peer's compact level (0: plain JSON only).
    pub compact: u16,
}

impl Peer {
    /// A peer that reads everything this build writes.
    pub const CURRENT: Peer = Peer {
        compact: COMPACT_LEVEL,
    };

    /// Whether the peer reads compressed messages and brief replies.
    pub fn reads_compact(self) -> bool {
        self.compact >= 1
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    c: Option<u16>,
    body: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    // `v` was checked first through `Header`; serde ignores it here.
    body: T,
}

#[derive(Deserialize)]
struct Header {
    v: u16,
    #[serde(default)]
    c: u16,
}

/// Encodes `body` as plain JSON in the current protocol version, for any
/// reader (old ones included) and without saying what this side reads:
/// for messages nobody answers, like notifications.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    plain(body, None)
}

/// Encodes `body` for `peer`, saying what this side reads: compressed when
/// the peer reads it and that makes the message smaller, plain JSON
/// otherwise. Requests and replies travel this way.
pub fn encode_for<T: Serialize>(body: &T, peer: Peer) -> Vec<u8> {
    let plain = plain(body, Some(COMPACT_LEVEL));
    if !peer.reads_compact() || plain.len() < COMPRESS_FROM {
        return plain;
    }
    match compress(&plain) {
        Some(packed) if packed.len() < plain.len() => packed,
        _ => plain,
    }
}

fn plain<T: Serialize>(body: &T, c: Option<u16>) -> Vec<u8> {
    // Serializing our own types to JSON cannot fail: no maps with non-string
    // keys, no foreign Serialize impls that error.
    serde_json::to_vec(&EnvelopeOut {
        v: PROTOCOL_VERSION,
        c,
        body,
    })
    .expect("protocol types always serialize to JSON")
}

/// `plain` in the compressed form; None if zstd fails (it does not on
/// in-memory input, but plain JSON is always a correct fallback).
fn compress(plain: &[u8]) -> Option<Vec<u8>> {
    let declared = u32::try_from(plain.len()).ok()?;
    let frame = zstd::bulk::Compressor::with_dictionary(ZSTD_LEVEL, DICTIONARY)
        .ok()?
        .compress(plain)
        .ok()?;
    let mut out = Vec::with_capacity(COMPRESSED_HEADER + frame.len());
    out.extend_from_slice(&COMPRESSED_MAGIC);
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&frame);
    Some(out)
}

/// Whether `bytes` is a compressed message (its first byte says so).
pub fn is_compressed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&COMPRESSED_MAGIC[0])
}

fn too_large(what: &str, len: usize) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("{what} of {len} bytes exceeds {MAX_MESSAGE_BYTES}"),
    )
}

/// The JSON envelope inside a compressed message, never larger than
/// [`MAX_MESSAGE_BYTES`].
fn decompress(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    if bytes.len() < COMPRESSED_HEADER || bytes[..2] != COMPRESSED_MAGIC {
        return Err(Error::bad_request(
            "malformed message: starts with a NUL byte but is not a compressed message",
        ));
    }
    let declared = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
    if declared > MAX_MESSAGE_BYTES {
        return Err(too_large("compressed message declaring", declared));
    }
    let bad = |e: std::io::Error| Error::bad_request(format!("malformed compressed message: {e}"));
    let mut decoder =
        zstd::stream::read::Decoder::with_dictionary(&bytes[COMPRESSED_HEADER..], DICTIONARY)
            .map_err(bad)?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(bad)?;
    // Grown as bytes arrive, so a lying header cannot reserve memory; one
    // byte past the declared length is enough to see a lie.
    let mut plain = Vec::new();
    decoder
        .take(declared as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(bad)?;
    if plain.len() != declared {
        return Err(Error::bad_request(format!(
            "malformed compressed message: declares {declared} bytes, holds {}{}",
            plain.len().min(declared),
            if plain.len() > declared {
                " or more"
            } else {
                ""
            }
        )));
    }
    Ok(plain)
}

/// Decodes a message, refusing oversized input, unknown future versions and
/// malformed bodies with a [`ErrorKind::BadRequest`],
/// [`ErrorKind::TooLarge`] or [`ErrorKind::UnsupportedVersion`] error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    decode_from(bytes).map(|(body, _)| body)
}

/// [`decode`], also saying what the sender reads (so the answer can use
/// it: [`encode_for`]).
pub fn decode_from<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Peer), Error> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(too_large("message", bytes.len()));
    }
    let inflated;
    let (json, compressed) = if is_compressed(bytes) {
        inflated = decompress(bytes)?;
        (&inflated[..], true)
    } else {
        (bytes, false)
    };
    let header: Header = serde_json::from_slice(json)
        .map_err(|e| Error::bad_request(format!("malformed message: {e}")))?;
    if header.v == 0 || header.v > PROTOCOL_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "protocol version {} not supported (this side speaks 1..={PROTOCOL_VERSION})",
                header.v
            ),
        ));
    }
    let env: EnvelopeIn<T> = serde_json::from_slice(json)
        .map_err(|e| Error::bad_request(format!("malformed message body: {e}")))?;
    // Sending a compressed message is itself proof of reading them.
    let compact = if compressed {
        header.c.max(1)
    } else {
        header.c
    };
    Ok((env.body, Peer { compact }))
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
