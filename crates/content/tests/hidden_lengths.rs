//! Encrypted chunks (format version 2) hide their lengths: the public
//! header has no plaintext length, the stored body is a Padmé bucket, and
//! the real lengths are inside the ciphertext.

mod common;

use stacksync_content::{
    ChunkCodec, ChunkProblem, Cipher, Compression, ContentError, ENCRYPTED_FORMAT_VERSION,
    FORMAT_VERSION, MAX_CHUNK_LEN, WorkspaceKey, padme,
};
use stacksync_proto::ChunkId;

/// Public header of an encrypted chunk: 12 fixed bytes and the nonce.
const SEALED_HEADER: usize = 36;
const TAG: usize = 16;
/// Stored and plaintext length, inside the ciphertext.
const INNER: usize = 8;

fn problem(result: Result<Vec<u8>, ContentError>) -> ChunkProblem {
    match result {
        Err(ContentError::Chunk { problem, .. }) => problem,
        other => panic!("expected a chunk problem, got {other:?}"),
    }
}

fn raw_codecs(key: &WorkspaceKey) -> [ChunkCodec; 2] {
    [
        ChunkCodec::new(Compression::Off, Some(key)).with_cipher(Cipher::XChaCha20Poly1305),
        ChunkCodec::new(Compression::Off, Some(key)).with_cipher(Cipher::Aes256Gcm),
    ]
}

/// The stored length of an encrypted raw chunk of `len` bytes.
fn stored_len(len: usize) -> usize {
    SEALED_HEADER + padme((len + INNER) as u64) as usize + TAG
}

#[test]
fn round_trips_at_bucket_edges_with_both_ciphers() {
    let key = WorkspaceKey::from_bytes([11; 32]);
    let mut lens = vec![0, 1, 2, 7, 8, 9, 100, 1000, 4096, 65_536, 1 << 20];
    // Around bucket edges of the padded length (len + 8).
    for shift in 4..21 {
        let edge = (1usize << shift) - INNER;
        lens.extend([edge - 1, edge, edge + 1]);
        let bucket = padme((edge + 3 * (1 << shift) / 7) as u64) as usize - INNER;
        lens.extend([bucket - 1, bucket, bucket + 1]);
    }
    lens.extend([MAX_CHUNK_LEN - 1, MAX_CHUNK_LEN]);
    for len in lens {
        let data = common::random_bytes(len as u64, len);
        for codec in raw_codecs(&key) {
            let enc = codec.encode(&data).unwrap();
            assert_eq!(enc.bytes[4], ENCRYPTED_FORMAT_VERSION);
            assert_eq!(enc.bytes.len(), stored_len(len), "len {len}");
            assert_eq!(
                codec.decode(&enc.id, &enc.bytes).unwrap(),
                data,
                "len {len}"
            );
        }
    }
    // Compressed and encrypted: the bucket of the compressed body.
    let codec = ChunkCodec::encrypted(&key);
    for len in [1, 5000, 70_000, MAX_CHUNK_LEN] {
        let data = common::text_bytes(len as u64, len);
        let enc = codec.encode(&data).unwrap();
        assert_eq!(
            codec.decode(&enc.id, &enc.bytes).unwrap(),
            data,
            "len {len}"
        );
        let padded = enc.bytes.len() - SEALED_HEADER - TAG;
        assert_eq!(padme(padded as u64), padded as u64);
        if len > 1000 {
            assert!(enc.compressed && padded < len / 2, "len {len}: {padded}");
        }
    }
}

#[test]
fn the_header_shows_no_length_and_one_bucket_one_stored_length() {
    let key = WorkspaceKey::from_bytes([12; 32]);
    for codec in raw_codecs(&key) {
        // 1 MiB + 1 .. 1 MiB + 32 KiB - 8 share a bucket.
        let a = codec
            .encode(&common::random_bytes(1, (1 << 20) + 1))
            .unwrap();
        let b = codec
            .encode(&common::random_bytes(2, (1 << 20) + (1 << 15) - INNER))
            .unwrap();
        assert_eq!(a.bytes.len(), b.bytes.len());
        assert_eq!(a.bytes.len(), SEALED_HEADER + (1 << 20) + (1 << 15) + TAG);
        // Headers differ only in the nonce: nothing else depends on the
        // plaintext.
        assert_eq!(a.bytes[..12], b.bytes[..12]);
        // One byte more starts the next bucket.
        let c = codec
            .encode(&common::random_bytes(3, (1 << 20) + (1 << 15) - INNER + 1))
            .unwrap();
        assert_eq!(c.bytes.len(), a.bytes.len() + (1 << 15));
        // Small chunks: every length from 100 to 103 looks the same.
        let small: Vec<usize> = (100..104)
            .map(|n| codec.encode(&vec![7u8; n]).unwrap().bytes.len())
            .collect();
        assert_eq!(small, vec![stored_len(100); 4]);
    }
}

#[test]
fn every_bit_flip_of_an_encrypted_chunk_is_refused() {
    let key = WorkspaceKey::from_bytes([13; 32]);
    let codecs = [
        ChunkCodec::encrypted(&key).with_cipher(Cipher::XChaCha20Poly1305),
        ChunkCodec::encrypted(&key).with_cipher(Cipher::Aes256Gcm),
    ];
    for codec in &codecs {
        for data in [common::random_bytes(4, 300), common::text_bytes(5, 700)] {
            let enc = codec.encode(&data).unwrap();
            let mut bad = enc.bytes.clone();
            for bit in 0..bad.len() * 8 {
                bad[bit / 8] ^= 1 << (bit % 8);
                for decoder in &codecs {
                    assert!(
                        decoder.decode(&enc.id, &bad).is_err(),
                        "flip of bit {bit} accepted ({codec:?})"
                    );
                }
                bad[bit / 8] ^= 1 << (bit % 8);
            }
            assert_eq!(codec.decode(&enc.id, &bad).unwrap(), data);
        }
    }
}

/// A version-1 header with the encrypted bit around a real encrypted body:
/// what a server would send to learn lengths back. Refused before any
/// decryption, whatever the lengths say.
#[test]
fn version_1_encrypted_chunks_are_refused_as_a_downgrade() {
    let key = WorkspaceKey::from_bytes([14; 32]);
    let codec = ChunkCodec::encrypted(&key);
    let data = common::random_bytes(6, 1000);
    let enc = codec.encode(&data).unwrap();
    let body = &enc.bytes[SEALED_HEADER..];
    for flags in [0b010u8, 0b011, 0b110, 0b111] {
        let mut v1 = b"SSch".to_vec();
        v1.extend_from_slice(&[FORMAT_VERSION, flags, 0, 0]);
        v1.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v1.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v1.extend_from_slice(&enc.bytes[12..SEALED_HEADER]); // nonce
        v1.extend_from_slice(body);
        assert_eq!(
            problem(codec.decode(&enc.id, &v1)),
            ChunkProblem::Downgrade { version: 1 }
        );
        assert_eq!(
            problem(ChunkCodec::plain().decode(&enc.id, &v1)),
            ChunkProblem::Downgrade { version: 1 }
        );
    }
}

#[test]
fn version_2_needs_the_encrypted_bit_and_a_bucket() {
    let key = WorkspaceKey::from_bytes([15; 32]);
    let codec = ChunkCodec::encrypted(&key);
    let enc = codec.encode(&common::random_bytes(7, 500)).unwrap();
    let id = enc.id;
    for flags in [0u8, 0b001, 0b100] {
        let mut bad = enc.bytes.clone();
        bad[5] = flags;
        let p = problem(ChunkCodec::plain().decode(&id, &bad));
        assert!(
            matches!(
                p,
                ChunkProblem::PlainInEncryptedFormat { version: 2 }
                    | ChunkProblem::UnknownBits { .. }
            ),
            "flags {flags:#b}: {p:?}"
        );
    }
    let mut plain_v2 = enc.bytes.clone();
    plain_v2[5] = 0;
    assert_eq!(
        problem(codec.decode(&id, &plain_v2)),
        ChunkProblem::PlainInEncryptedFormat { version: 2 }
    );
    // A body length that is not a bucket plus the tag, with the bytes to
    // match: refused before decryption.
    let body = enc.bytes.len() - SEALED_HEADER;
    let mut longer = enc.bytes.clone();
    longer.push(0);
    longer[8..12].copy_from_slice(&(body as u32 + 1).to_le_bytes());
    assert!(matches!(
        problem(codec.decode(&id, &longer)),
        ChunkProblem::Padding(_)
    ));
    // A huge declared body: refused as too large, nothing allocated.
    let mut huge = enc.bytes[..SEALED_HEADER].to_vec();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        problem(codec.decode(&id, &huge)),
        ChunkProblem::TooLarge { .. }
    ));
    // Decoded with the other cipher's codec and without a key.
    assert_eq!(
        problem(ChunkCodec::compressed().decode(&id, &enc.bytes)),
        ChunkProblem::KeyRequired
    );
    assert_eq!(
        problem(codec.decode(&ChunkId([3; 32]), &enc.bytes)),
        ChunkProblem::Authentication
    );
}
