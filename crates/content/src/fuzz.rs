//! Fuzzing entry points. They must never panic, whatever the input; the
//! `fuzz/` cargo-fuzz project and the `decode_fuzz` test both call them.

use stacksync_proto::ChunkId;

use crate::codec::{ChunkCodec, Compression};
use crate::keys::WorkspaceKey;
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
