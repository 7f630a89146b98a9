//! One chunk: round trips for every codec kind, and refusals of bad input.

mod common;

use proptest::prelude::*;
use stacksync_content::{
    ChunkCodec, ChunkProblem, Cipher, Compression, ContentError, MAX_CHUNK_LEN, WorkspaceKey,
};
use stacksync_proto::{ChunkId, ErrorKind};

fn codecs(key: &WorkspaceKey) -> Vec<ChunkCodec> {
    vec![
        ChunkCodec::plain(),
        ChunkCodec::compressed(),
        ChunkCodec::encrypted(key).with_cipher(Cipher::XChaCha20Poly1305),
        ChunkCodec::encrypted(key).with_cipher(Cipher::Aes256Gcm),
        ChunkCodec::new(Compression::Off, Some(key)).with_cipher(Cipher::XChaCha20Poly1305),
        ChunkCodec::new(Compression::Off, Some(key)).with_cipher(Cipher::Aes256Gcm),
        ChunkCodec::new(Compression::Zstd { level: -1 }, None),
    ]
}

fn problem(result: Result<Vec<u8>, ContentError>) -> ChunkProblem {
    match result {
        Err(ContentError::Chunk { problem, .. }) => problem,
        other => panic!("expected a chunk problem, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trips_random_and_text(len in 0usize..300_000, seed: u64, text: bool) {
        let data = if text { common::text_bytes(seed, len) } else { common::random_bytes(seed, len) };
        let key = WorkspaceKey::from_bytes([seed as u8; 32]);
        for codec in codecs(&key) {
            let enc = codec.encode(&data).unwrap();
            prop_assert_eq!(enc.id, codec.chunk_id(&data));
            prop_assert_eq!(enc.plaintext_len as usize, data.len());
            prop_assert_eq!(codec.decode(&enc.id, &enc.bytes).unwrap(), data.clone());
        }
    }
}

#[test]
fn boundary_sizes_round_trip() {
    let key = WorkspaceKey::generate().unwrap();
    for len in [
        0,
        1,
        2,
        4095,
        4096,
        4097,
        32 * 1024,
        32 * 1024 + 1,
        65536,
        MAX_CHUNK_LEN,
    ] {
        let data = common::text_bytes(len as u64, len);
        for codec in codecs(&key) {
            let enc = codec.encode(&data).unwrap();
            assert_eq!(
                codec.decode(&enc.id, &enc.bytes).unwrap(),
                data,
                "len {len} {codec:?}"
            );
        }
    }
    let too_big = vec![0u8; MAX_CHUNK_LEN + 1];
    assert!(matches!(
        ChunkCodec::plain().encode(&too_big),
        Err(ContentError::PlaintextTooLarge { .. })
    ));
}

#[test]
fn compression_is_skipped_for_random_and_used_for_text() {
    let codec = ChunkCodec::compressed();
    let random = codec.encode(&common::random_bytes(1, 1 << 20)).unwrap();
    assert!(!random.compressed);
    assert!(random.bytes.len() <= (1 << 20) + 16);
    let text = codec.encode(&common::text_bytes(1, 1 << 20)).unwrap();
    assert!(text.compressed);
    assert!(
        text.bytes.len() < (1 << 20) / 2,
        "text compressed to {}",
        text.bytes.len()
    );
}

#[test]
fn ids_are_plain_blake3_or_keyed_and_differ_between_workspaces() {
    let data = b"hello, stacksync";
    assert_eq!(
        ChunkCodec::plain().chunk_id(data).0,
        *blake3::hash(data).as_bytes()
    );
    let a = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([1; 32]));
    let b = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([2; 32]));
    assert_ne!(a.chunk_id(data), ChunkCodec::plain().chunk_id(data));
    assert_ne!(a.chunk_id(data), b.chunk_id(data));
    // Whole-file hashes stay on the client (sealed in records): unkeyed.
    assert_eq!(a.content_hash(data).0, *blake3::hash(data).as_bytes());
}

#[test]
fn refuses_wrong_key_tampering_truncation_and_wrong_id() {
    let key = WorkspaceKey::from_bytes([9; 32]);
    let codec = ChunkCodec::encrypted(&key);
    let data = common::text_bytes(3, 100_000);
    let enc = codec.encode(&data).unwrap();

    let other = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([8; 32]));
    assert_eq!(
        problem(other.decode(&enc.id, &enc.bytes)),
        ChunkProblem::Authentication
    );
    assert_eq!(
        problem(ChunkCodec::plain().decode(&enc.id, &enc.bytes)),
        ChunkProblem::KeyRequired
    );

    for at in [5, 9, 20, 45, enc.bytes.len() / 2, enc.bytes.len() - 1] {
        let mut bad = enc.bytes.clone();
        bad[at] ^= 0x40;
        assert!(
            codec.decode(&enc.id, &bad).is_err(),
            "flip at {at} accepted"
        );
    }
    for len in [0, 3, 15, 16, 39, 40, enc.bytes.len() - 1] {
        assert!(
            codec.decode(&enc.id, &enc.bytes[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    let mut longer = enc.bytes.clone();
    longer.push(0);
    assert_eq!(
        problem(codec.decode(&enc.id, &longer)),
        ChunkProblem::TrailingBytes { extra: 1 }
    );
    // The id is authenticated too: the right bytes under another name fail.
    assert_eq!(
        problem(codec.decode(&ChunkId([0; 32]), &enc.bytes)),
        ChunkProblem::Authentication
    );

    let plain = ChunkCodec::compressed().encode(&data).unwrap();
    assert_eq!(
        problem(codec.decode(&plain.id, &plain.bytes)),
        ChunkProblem::NotEncrypted
    );
    assert_eq!(
        problem(ChunkCodec::compressed().decode(&ChunkId([1; 32]), &plain.bytes)),
        ChunkProblem::IdMismatch
    );
}

#[test]
fn hostile_headers_are_refused_before_allocating() {
    let id = ChunkId([0; 32]);
    let mut header = b"SSch\x01\x01\0\0".to_vec();
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    header.extend_from_slice(&8u32.to_le_bytes());
    header.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]);
    let p = problem(ChunkCodec::compressed().decode(&id, &header));
    assert!(matches!(p, ChunkProblem::TooLarge { .. }), "{p:?}");

    // A zstd frame that claims to inflate far beyond the declared length.
    let bomb = zstd::bulk::compress(&vec![0u8; 8 << 20], 3).unwrap();
    let mut chunk = b"SSch\x01\x01\0\0".to_vec();
    chunk.extend_from_slice(&(bomb.len() as u32 + 10).to_le_bytes());
    chunk.extend_from_slice(&(bomb.len() as u32).to_le_bytes());
    chunk.extend_from_slice(&bomb);
    let p = problem(ChunkCodec::compressed().decode(&id, &chunk));
    assert!(matches!(p, ChunkProblem::Decompress(_)), "{p:?}");

    let mut v3 = header.clone();
    v3[4] = 3;
    assert_eq!(
        problem(ChunkCodec::plain().decode(&id, &v3)),
        ChunkProblem::UnsupportedVersion(3)
    );
    let err = ChunkCodec::plain().decode(&id, &v3).unwrap_err();
    assert_eq!(err.to_proto().kind, ErrorKind::UnsupportedVersion);
    let mut flags = header.clone();
    flags[5] = 0x80;
    assert!(matches!(
        problem(ChunkCodec::plain().decode(&id, &flags)),
        ChunkProblem::UnknownBits { .. }
    ));
    assert_eq!(
        problem(ChunkCodec::plain().decode(&id, b"NOPE\x01\0\0\0\0\0\0\0\0\0\0\0")),
        ChunkProblem::BadMagic
    );
}

#[test]
fn either_cipher_decodes_with_any_codec_of_the_workspace_and_is_authenticated() {
    let key = WorkspaceKey::from_bytes([6; 32]);
    let xchacha = ChunkCodec::encrypted(&key).with_cipher(Cipher::XChaCha20Poly1305);
    let aes = ChunkCodec::encrypted(&key).with_cipher(Cipher::Aes256Gcm);
    let other = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([7; 32]));
    for data in [
        common::random_bytes(1, 70_000),
        common::text_bytes(2, 70_000),
        Vec::new(),
    ] {
        let a = aes.encode(&data).unwrap();
        let x = xchacha.encode(&data).unwrap();
        // Ids do not depend on the cipher: dedup works across devices.
        assert_eq!(a.id, x.id);
        assert_eq!((a.bytes[5] & 0b100, x.bytes[5] & 0b100), (0b100, 0));
        for enc in [&a, &x] {
            assert_eq!(aes.decode(&enc.id, &enc.bytes).unwrap(), data);
            assert_eq!(xchacha.decode(&enc.id, &enc.bytes).unwrap(), data);
            assert_eq!(
                problem(other.decode(&enc.id, &enc.bytes)),
                ChunkProblem::Authentication
            );
            // The cipher bit is in the authenticated header: switching the
            // cipher of a chunk fails authentication, whichever way.
            let mut switched = enc.bytes.clone();
            switched[5] ^= 0b100;
            assert_eq!(
                problem(aes.decode(&enc.id, &switched)),
                ChunkProblem::Authentication
            );
        }
        // Same plaintext, fresh nonces: never the same object twice.
        assert_ne!(aes.encode(&data).unwrap().bytes, a.bytes);
    }
    // The AES bit means nothing without the encrypted bit.
    let plain = ChunkCodec::plain().encode(b"hello").unwrap();
    let mut bad = plain.bytes.clone();
    bad[5] |= 0b100;
    assert!(matches!(
        problem(ChunkCodec::plain().decode(&plain.id, &bad)),
        ChunkProblem::UnknownBits { .. }
    ));
}
