//! Fuzzing entry points. They must never panic, whatever the input; the
//! `fuzz/` cargo-fuzz project and the `decode_fuzz` test both call them.

use stacksync_proto::ChunkId;

use crate::codec::{ChunkCodec, Compression};
use crate::delta;
use crate::format::{ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION, Header, TAG_LEN};
use crate::keys::WorkspaceKey;
use crate::padme::padme;
use crate::wrap::{MemberSecretKey, WrappedKey};

/// The fixed key the fuzz targets decode with, so that a fuzzer can learn
/// (from seeds encoded with it) to reach code behind authentication.
pub const FUZZ_KEY: [u8; 32] = [0x5a; 32];

/// Decodes `data` as a chunk with every codec kind. The first 32 bytes (if
/// present) are the claimed chunk id, the rest the encoded chunk. Returns how
/// many codecs accepted it, which can only be when the bytes hash to the id.
pub fn decode_any(data: &[u8]) -> usize {
    let (id, bytes) = if data.len() >= 32 {
        let mut id = [0u8; 32];
        id.copy_from_slice(&data[..32]);
        (ChunkId(id), &data[32..])
    } else {
        (ChunkId([0; 32]), data)
    };
    let key = WorkspaceKey::from_bytes(FUZZ_KEY);
    let codecs = [
        ChunkCodec::plain(),
        ChunkCodec::new(Compression::default(), None),
        ChunkCodec::new(Compression::default(), Some(&key)),
    ];
    codecs
        .iter()
        .filter(|codec| match codec.decode(&id, bytes) {
            Ok(plain) => {
                // Decoding promised this; a violation is a bug the fuzzer must see.
                assert_eq!(
                    codec.chunk_id(&plain),
                    id,
                    "decode returned bytes that do not match the id"
                );
                // Encrypted chunks are only ever accepted in the format
                // that hides their lengths, padded to exactly their bucket.
                if codec.is_encrypted() {
                    assert_eq!(
                        bytes.get(4),
                        Some(&ENCRYPTED_FORMAT_VERSION),
                        "downgrade accepted"
                    );
                    let padded = (bytes.len() - Header::len_for(true) - TAG_LEN) as u64;
                    assert_eq!(padme(padded), padded, "padded body is not a bucket");
                } else {
                    assert_eq!(bytes.get(4), Some(&FORMAT_VERSION));
                }
                true
            }
            Err(_) => false,
        })
        .count()
}

/// Parses `data` as a wrapped-key blob and tries to open it with a fixed
/// member key (no passphrase paths: Argon2 is too slow to fuzz usefully and
/// its parameters are bounds-checked before use).
pub fn unwrap_any(data: &[u8]) -> bool {
    let Ok(blob) = WrappedKey::from_bytes(data.to_vec()) else {
        return false;
    };
    let member = MemberSecretKey::from_bytes(FUZZ_KEY);
    WorkspaceKey::unwrap_for_member(&blob, &member).is_ok()
}

/// The base every fuzzed delta is applied to: deterministic, so a fuzzer
/// can learn (from seeds made with [`fuzz_delta_seed`]) to get past the
/// base check.
pub fn fuzz_delta_base() -> Vec<u8> {
    (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

/// A valid delta object against [`fuzz_delta_base`] (encrypted with
/// [`FUZZ_KEY`] when `encrypted`), prefixed with its target id: a seed.
pub fn fuzz_delta_seed(encrypted: bool) -> Vec<u8> {
    let key = WorkspaceKey::from_bytes(FUZZ_KEY);
    let codec = if encrypted {
        ChunkCodec::new(Compression::default(), Some(&key))
    } else {
        ChunkCodec::plain()
    };
    let base = fuzz_delta_base();
    let mut target = base.clone();
    target.splice(1000..1010, b"fuzz seed".iter().copied());
    match delta::encode_delta(&codec, &base, &target) {
        Ok(d) => [d.id.as_bytes().as_slice(), &d.bytes].concat(),
        Err(_) => Vec::new(),
    }
}

/// Applies `data` as a delta object to [`fuzz_delta_base`] with an
/// unencrypted and an encrypted codec. The first 32 bytes (if present) are
/// the claimed target id. Returns how many codecs accepted it, which can
/// only be when the result hashes to the id.
pub fn apply_delta_any(data: &[u8]) -> usize {
    let (id, bytes) = if data.len() >= 32 {
        let mut id = [0u8; 32];
        id.copy_from_slice(&data[..32]);
        (ChunkId(id), &data[32..])
    } else {
        (ChunkId([0; 32]), data)
    };
    let key = WorkspaceKey::from_bytes(FUZZ_KEY);
    let base = fuzz_delta_base();
    let _ = delta::delta_base(bytes);
    [
        ChunkCodec::plain(),
        ChunkCodec::new(Compression::default(), Some(&key)),
    ]
    .iter()
    .filter(|codec| match delta::apply(codec, &id, &base, bytes) {
        Ok(target) => {
            assert_eq!(
                codec.chunk_id(&target),
                id,
                "apply returned bytes that do not match the id"
            );
            // Encrypted deltas are only accepted in the format that hides
            // their lengths.
            let version = if codec.is_encrypted() {
                delta::ENCRYPTED_DELTA_FORMAT_VERSION
            } else {
                delta::DELTA_FORMAT_VERSION
            };
            assert_eq!(
                bytes.get(4),
                Some(&version),
                "delta version not its codec's"
            );
            true
        }
        Err(_) => false,
    })
    .count()
}
