//! Delta chunks: round trips, sizes of small edits, and a decoder that
//! refuses wrong bases, corruption and hostile headers without panicking.

mod common;

use proptest::prelude::*;
use stacksync_content::delta::{DeltaBase, apply, delta_base, delta_pays, encode_delta};
use stacksync_content::{
    ChunkCodec, ChunkProblem, Cipher, Compression, ContentError, MAX_CHUNK_LEN, WorkspaceKey,
};
use stacksync_proto::ChunkId;

fn codecs() -> Vec<ChunkCodec> {
    let key = WorkspaceKey::from_bytes([3; 32]);
    vec![
        ChunkCodec::plain(),
        ChunkCodec::compressed(),
        ChunkCodec::encrypted(&key).with_cipher(Cipher::Aes256Gcm),
        ChunkCodec::new(Compression::Off, Some(&key)).with_cipher(Cipher::XChaCha20Poly1305),
    ]
}

fn problem(result: Result<Vec<u8>, ContentError>) -> ChunkProblem {
    match result {
        Err(ContentError::Chunk { problem, .. }) => problem,
        other => panic!("expected a chunk problem, got {other:?}"),
    }
}

/// Encodes `target` against `base` with every codec, applies it back, and
/// returns the largest delta object.
fn check(base: &[u8], target: &[u8]) -> usize {
    let mut largest = 0;
    for codec in codecs() {
        let delta = encode_delta(&codec, base, target).unwrap();
        assert_eq!(delta.id, codec.chunk_id(target));
        assert_eq!(delta.base, codec.chunk_id(base));
        assert_eq!(
            delta_base(&delta.bytes).unwrap(),
            DeltaBase {
                id: delta.base,
                // Encrypted deltas keep the base's length inside.
                len: (!codec.is_encrypted()).then_some(base.len() as u32),
            }
        );
        assert_eq!(delta.plaintext_len as usize, target.len());
        let back = apply(&codec, &delta.id, base, &delta.bytes).unwrap();
        assert_eq!(back, target, "{codec:?}");
        largest = largest.max(delta.bytes.len());
    }
    largest
}

const MIB: usize = 1 << 20;

#[test]
fn small_edits_inside_a_random_mib_give_small_deltas() {
    let base = common::random_bytes(1, MIB);
    let mut overwrite = base.clone();
    overwrite[MIB / 3] ^= 0xff;
    let mut insert = base.clone();
    insert.insert(MIB / 2, 0x42);
    let mut change = base.clone();
    change[700_000..700_100].copy_from_slice(&common::random_bytes(2, 100));
    // Header (52; encrypted 68, 16 tag and a padded body) plus a few zstd
    // blocks and sequences.
    for (name, target, limit) in [
        ("1-byte overwrite", &overwrite, 300),
        ("1-byte insert", &insert, 300),
        ("100-byte change", &change, 400),
    ] {
        let size = check(&base, target);
        assert!(size <= limit, "{name}: {size} bytes");
    }
}

#[test]
fn unrelated_empty_and_identical_data_round_trip() {
    let base = common::random_bytes(3, 200_000);
    let other = common::random_bytes(4, 150_000);
    let text = common::text_bytes(5, 100_000);
    // Unrelated random data: the patch is about the target's size.
    let size = check(&base, &other);
    // Encrypted deltas add their padding: up to 1/32 at this size.
    assert!(size > other.len() && size < other.len() + 6000, "{size}");
    check(&base, &text);
    check(&[], &text);
    check(&[], &[]);
    check(&base, &[]);
    check(&base, &base);
    check(&text, &base);
}

#[test]
fn a_wrong_base_is_refused_before_decompressing() {
    let base = common::random_bytes(6, 100_000);
    let mut target = base.clone();
    target[10] ^= 1;
    for codec in codecs() {
        let delta = encode_delta(&codec, &base, &target).unwrap();
        let mut same_len = base.clone();
        same_len[99_999] ^= 1;
        for wrong in [&same_len[..], &base[..99_999], &target[..], &[][..]] {
            let got = apply(&codec, &delta.id, wrong, &delta.bytes);
            assert_eq!(problem(got), ChunkProblem::WrongBase, "{codec:?}");
        }
    }
}

#[test]
fn truncation_corruption_wrong_id_and_wrong_key_are_errors() {
    let key = WorkspaceKey::from_bytes([3; 32]);
    let base = common::random_bytes(7, 50_000);
    let mut target = base.clone();
    target.splice(20_000..20_000, b"inserted".iter().copied());
    for codec in codecs() {
        let delta = encode_delta(&codec, &base, &target).unwrap();
        let bytes = &delta.bytes;
        for len in 0..bytes.len() {
            assert!(apply(&codec, &delta.id, &base, &bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            problem(apply(&codec, &delta.id, &base, &longer)),
            ChunkProblem::TrailingBytes { extra: 1 }
        ));
        // A single-bit flip anywhere is caught (header checks, base check,
        // authentication, zstd or the id check), or, in a bit zstd
        // ignores, changes nothing; with encryption it is always caught.
        for at in 0..bytes.len() {
            for bit in [0x01, 0x10, 0x80] {
                let mut flipped = bytes.clone();
                flipped[at] ^= bit;
                match apply(&codec, &delta.id, &base, &flipped) {
                    Err(_) => {}
                    Ok(out) => {
                        assert!(!codec.is_encrypted(), "flip at {at} authenticated");
                        assert_eq!(out, target, "flip at {at} changed the output");
                    }
                }
            }
        }
        let wrong_id = ChunkId([9; 32]);
        let expected = if codec.is_encrypted() {
            // The id is associated data: another id fails authentication.
            ChunkProblem::Authentication
        } else {
            ChunkProblem::IdMismatch
        };
        assert_eq!(problem(apply(&codec, &wrong_id, &base, bytes)), expected);
        if codec.is_encrypted() {
            assert_eq!(
                problem(apply(&ChunkCodec::plain(), &delta.id, &base, bytes)),
                ChunkProblem::KeyRequired
            );
        } else {
            // An encrypted workspace never takes a plain delta (downgrade).
            let keyed = ChunkCodec::encrypted(&key);
            assert_eq!(
                problem(apply(&keyed, &delta.id, &base, bytes)),
                ChunkProblem::NotEncrypted
            );
        }
    }
    // Another workspace's key names the base differently: wrong base.
    let other = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([4; 32]));
    let delta = encode_delta(&ChunkCodec::encrypted(&key), &base, &target).unwrap();
    assert_eq!(
        problem(apply(&other, &delta.id, &base, &delta.bytes)),
        ChunkProblem::WrongBase
    );
}

/// Rewrites the header's little-endian u32 at `at`.
fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn hostile_lengths_are_refused_and_output_stays_bounded() {
    let codec = ChunkCodec::plain();
    let base = common::random_bytes(8, 10_000);
    let target = common::text_bytes(9, 60_000);
    let delta = encode_delta(&codec, &base, &target).unwrap();
    let too_large = MAX_CHUNK_LEN as u32 + 1;
    for at in [8, 16] {
        let mut bytes = delta.bytes.clone();
        set_u32(&mut bytes, at, too_large);
        assert!(matches!(
            problem(apply(&codec, &delta.id, &base, &bytes)),
            ChunkProblem::TooLarge { .. }
        ));
    }
    // A claimed size below what the patch inflates to: zstd stops at the
    // buffer's end instead of writing past it.
    let mut bytes = delta.bytes.clone();
    set_u32(&mut bytes, 8, 1000);
    assert!(matches!(
        problem(apply(&codec, &delta.id, &base, &bytes)),
        ChunkProblem::Decompress(_)
    ));
    // Header fields outside what version 1 defines.
    for (at, value) in [(4, 2u8), (5, 0b1000), (5, 0b100), (5, 0b1), (6, 1)] {
        let mut bytes = delta.bytes.clone();
        bytes[at] = value;
        assert!(apply(&codec, &delta.id, &base, &bytes).is_err(), "{at}");
        assert!(delta_base(&bytes).is_err(), "{at}");
    }
    // A full chunk object is not a delta.
    let chunk = codec.encode(&target).unwrap();
    assert_eq!(
        problem(apply(&codec, &chunk.id, &base, &chunk.bytes)),
        ChunkProblem::BadMagic
    );
}

#[test]
fn oversized_plaintexts_are_refused_by_the_encoder() {
    let big = vec![0u8; MAX_CHUNK_LEN + 1];
    for (base, target) in [(&big[..], &[][..]), (&[][..], &big[..])] {
        assert!(matches!(
            encode_delta(&ChunkCodec::plain(), base, target),
            Err(ContentError::PlaintextTooLarge { .. })
        ));
    }
}

#[test]
fn deltas_pay_only_when_much_smaller_than_the_full_chunk() {
    for (delta, full, pays) in [
        (100, 1 << 20, true),
        ((1 << 20) / 4, 1 << 20, true),
        ((1 << 20) / 4 + 1, 1 << 20, false),
        (900, 4000, false),
        (1000, 5096, true),
        (0, 0, false),
        (usize::MAX, 10, false),
    ] {
        assert_eq!(delta_pays(delta, full), pays, "{delta} vs {full}");
    }
}

/// Edits of a base: a span replaced by other bytes (empty span: insert;
/// empty bytes: delete).
fn edited(base: &[u8], edits: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = base.to_vec();
    for (at, del, ins) in edits {
        let at = at % (out.len() + 1);
        let end = (at + del).min(out.len());
        out.splice(at..end, ins.iter().copied());
    }
    out
}

#[test]
fn fuzz_seeds_apply_with_exactly_their_codec() {
    use stacksync_content::fuzz::{apply_delta_any, fuzz_delta_seed};
    for encrypted in [false, true] {
        let seed = fuzz_delta_seed(encrypted);
        assert_eq!(apply_delta_any(&seed), 1, "encrypted: {encrypted}");
        let mut flipped = seed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(apply_delta_any(&flipped), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn edited_chunks_round_trip(
        len in 0usize..120_000,
        seed: u64,
        text: bool,
        edits in proptest::collection::vec(
            (any::<usize>(), 0usize..3000, proptest::collection::vec(any::<u8>(), 0..300)),
            0..5,
        ),
    ) {
        let base = if text { common::text_bytes(seed, len) } else { common::random_bytes(seed, len) };
        let target = edited(&base, &edits);
        check(&base, &target);
    }

    #[test]
    fn random_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        header in any::<bool>(),
        encrypted in any::<bool>(),
    ) {
        let mut bytes = data;
        if header && bytes.len() >= 8 {
            // Past the magic and version, into the checks behind them.
            let version = if encrypted { 2 } else { 1 };
            bytes[..5].copy_from_slice(&[b'S', b'S', b'd', b't', version]);
            bytes[5] &= if encrypted { 0b110 } else { 0 };
            bytes[6] = 0;
            bytes[7] = 0;
        }
        prop_assert_eq!(stacksync_content::fuzz::apply_delta_any(&bytes), 0);
        let base = common::random_bytes(1, 1000);
        for codec in codecs() {
            let _ = delta_base(&bytes);
            if let Ok(out) = apply(&codec, &ChunkId([0; 32]), &base, &bytes) {
                prop_assert_eq!(codec.chunk_id(&out), ChunkId([0; 32]));
            }
        }
    }

    #[test]
    fn mutated_deltas_never_panic(
        at in any::<usize>(),
        value: u8,
        cut in any::<usize>(),
        which in 0usize..4,
    ) {
        let codec = codecs().swap_remove(which);
        let base = common::text_bytes(11, 20_000);
        let target = edited(&base, &[(7000, 10, b"patched".to_vec())]);
        let delta = encode_delta(&codec, &base, &target).unwrap();
        let mut bytes = delta.bytes.clone();
        let at = at % bytes.len();
        bytes[at] = value;
        bytes.truncate(bytes.len() - cut % 8);
        // Accepted only if it still decodes to exactly the target.
        if let Ok(out) = apply(&codec, &delta.id, &base, &bytes) {
            prop_assert_eq!(out, target);
        }
    }
}

/// Encrypted deltas (version 2) show neither the target's nor the base's
/// length, and their body is a Padmé bucket; a version-1 encrypted delta
/// is refused as a downgrade.
#[test]
fn encrypted_deltas_hide_their_lengths() {
    let key = WorkspaceKey::from_bytes([5; 32]);
    let codec = ChunkCodec::encrypted(&key);
    let base = common::random_bytes(12, 100_000);
    let mut target = base.clone();
    target[500] ^= 1;
    let delta = encode_delta(&codec, &base, &target).unwrap();
    let bytes = &delta.bytes;
    assert_eq!(bytes[4], 2);
    let body = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as u64;
    assert_eq!(bytes.len() as u64, 68 + body);
    assert_eq!(stacksync_content::padme(body - 16), body - 16);
    for len in [target.len() as u32, base.len() as u32] {
        let le = len.to_le_bytes();
        assert!(
            !bytes[..68].windows(4).any(|w| w == le),
            "a length shows in the header"
        );
    }
    // Downgrade: the same body under a version-1 header.
    let mut v1 = b"SSdt\x01\x02\0\0".to_vec();
    v1.extend_from_slice(&(target.len() as u32).to_le_bytes());
    v1.extend_from_slice(&(body as u32).to_le_bytes());
    v1.extend_from_slice(&(base.len() as u32).to_le_bytes());
    v1.extend_from_slice(&bytes[12..68]);
    v1.extend_from_slice(&bytes[68..]);
    assert_eq!(
        problem(apply(&codec, &delta.id, &base, &v1)),
        ChunkProblem::Downgrade { version: 1 }
    );
    // A base of the right id but another length cannot exist; a base of
    // another id is refused before decryption.
    assert_eq!(
        problem(apply(&codec, &delta.id, &target, bytes)),
        ChunkProblem::WrongBase
    );
    let mut plain_v2 = bytes.clone();
    plain_v2[5] = 0;
    assert_eq!(
        problem(apply(&ChunkCodec::plain(), &delta.id, &base, &plain_v2)),
        ChunkProblem::PlainInEncryptedFormat { version: 2 }
    );
}
