//! The short fuzz run on stable Rust: the fuzz bodies over thousands of
//! random inputs and mutations of valid chunks and key blobs. They must
//! never panic, and `decode_any` checks that accepted bytes match the id.

mod common;

use proptest::prelude::*;
use stacksync_content::fuzz::{FUZZ_KEY, decode_any, unwrap_any};
use stacksync_content::{ChunkCodec, Cipher, Compression, MemberSecretKey, WorkspaceKey};

/// Valid encodings (id ++ chunk) of small inputs with every codec kind.
fn seeds() -> Vec<Vec<u8>> {
    let key = WorkspaceKey::from_bytes(FUZZ_KEY);
    let mut out = Vec::new();
    for (i, len) in [0usize, 1, 40, 300, 5000].into_iter().enumerate() {
        let data = if i % 2 == 0 {
            common::text_bytes(i as u64, len)
        } else {
            common::random_bytes(i as u64, len)
        };
        for codec in [
            ChunkCodec::plain(),
            ChunkCodec::new(Compression::default(), None),
            ChunkCodec::new(Compression::default(), Some(&key))
                .with_cipher(Cipher::XChaCha20Poly1305),
            ChunkCodec::new(Compression::default(), Some(&key)).with_cipher(Cipher::Aes256Gcm),
        ] {
            let enc = codec.encode(&data).unwrap();
            let mut v = enc.id.0.to_vec();
            v.extend_from_slice(&enc.bytes);
            out.push(v);
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
    SetU32(usize, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        // Aim at the length fields of the header (after the 32-byte id).
        (
            prop_oneof![Just(40usize), Just(44), any::<usize>()],
            any::<u32>()
        )
            .prop_map(|(i, v)| Mutation::SetU32(i, v)),
    ]
}

fn apply(v: &mut Vec<u8>, m: &Mutation) {
    if v.is_empty() {
        return;
    }
    match *m {
        Mutation::Flip(i, b) => {
            let n = v.len();
            v[i % n] ^= b;
        }
        Mutation::Truncate(i) => v.truncate(i % v.len()),
        Mutation::Insert(i, b) => v.insert(i % v.len(), b),
        Mutation::Remove(i) => {
            v.remove(i % v.len());
        }
        Mutation::SetU32(i, x) => {
            let i = i % v.len();
            let end = (i + 4).min(v.len());
            v[i..end].copy_from_slice(&x.to_le_bytes()[..end - i]);
        }
    }
}

#[test]
fn seeds_decode_with_exactly_their_codec() {
    // Unencrypted chunks open with both unencrypted codecs (compression is
    // per chunk), encrypted ones (either cipher) only with the keyed codec.
    for (i, s) in seeds().iter().enumerate() {
        // Four codecs per input: two unencrypted, then one per cipher.
        let expected = if i % 4 >= 2 { 1 } else { 2 };
        assert_eq!(decode_any(s), expected, "seed {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), flags in 0u8..8) {
        prop_assert_eq!(decode_any(&data), 0);
        let _ = unwrap_any(&data);
        // Behind a valid magic and version, so the random bytes reach the
        // length checks, AEAD and zstd.
        let mut framed = data.iter().take(32).copied().collect::<Vec<u8>>();
        framed.resize(32, 0);
        framed.extend_from_slice(b"SSch\x01");
        framed.push(flags);
        framed.extend_from_slice(&[0, 0]);
        framed.extend_from_slice(&data);
        prop_assert!(decode_any(&framed) <= 2);
        let mut blob = b"SSwk\x01\x02\x01\x00".to_vec();
        blob.extend_from_slice(&data);
        let _ = unwrap_any(&blob);
    }

    #[test]
    fn mutated_chunks_never_panic(seed in 0usize..15, muts in proptest::collection::vec(mutation(), 1..4)) {
        let mut v = seeds().swap_remove(seed);
        for m in &muts {
            apply(&mut v, m);
        }
        // decode_any itself asserts that anything accepted matches its id.
        prop_assert!(decode_any(&v) <= 2);
    }

    #[test]
    fn mutated_key_blobs_never_panic(muts in proptest::collection::vec(mutation(), 1..4)) {
        let member = MemberSecretKey::from_bytes(FUZZ_KEY);
        let blob = WorkspaceKey::from_bytes([3; 32]).wrap_for_member(&member.public_key()).unwrap();
        let mut v = blob.as_bytes().to_vec();
        prop_assert!(unwrap_any(&v));
        for m in &muts {
            apply(&mut v, m);
        }
        let _ = unwrap_any(&v);
    }
}
