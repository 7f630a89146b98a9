//! Key generations: a codec holding several generations of an encrypted
//! workspace's key decodes chunks and deltas written under any of them,
//! writes new ones under the current one, and fails closed on a
//! generation it does not hold.

mod common;

use std::io::Cursor;

use proptest::prelude::*;
use stacksync_content::delta::{apply, delta_base, encode_delta};
use stacksync_content::{
    ChunkCodec, ChunkProblem, ChunkerConfig, Cipher, ContentError, GenerationProblem,
    MAX_KEY_GENERATION, WorkspaceKey,
};
use stacksync_proto::{ChunkId, ErrorKind};

fn key(n: u8) -> WorkspaceKey {
    WorkspaceKey::from_bytes([n; 32])
}

/// A codec holding generation `g` with key `key(g)` for each `g` in
/// `held`, writing under `current`.
fn ring(current: u32, held: &[u32]) -> ChunkCodec {
    let keys: Vec<(u32, WorkspaceKey)> = held.iter().map(|&g| (g, key(g as u8))).collect();
    ChunkCodec::encrypted_generations(current, keys.iter().map(|(g, k)| (*g, k))).unwrap()
}

fn problem(result: Result<Vec<u8>, ContentError>) -> ChunkProblem {
    match result {
        Err(ContentError::Chunk { problem, .. }) => problem,
        other => panic!("expected a chunk problem, got {other:?}"),
    }
}

fn refusal(result: Result<ChunkCodec, ContentError>) -> GenerationProblem {
    match result {
        Err(ContentError::Generations(p)) => p,
        other => panic!("expected a generation problem, got {other:?}"),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn id(s: &str) -> ChunkId {
    ChunkId(unhex(s).try_into().unwrap())
}

/// Objects written by the build before key rotation (bytes 6..8 were
/// "reserved, must be 0"), key `key(0x21)`, uncompressed: a chunk with
/// each cipher, and a delta.
const PINNED_PLAINTEXT: &[u8] = b"stored before key rotation";
const PINNED_ID: &str = "532ffdb4c09ae882fc7f2b3001e7319a243e789705b511df0c5a6f6cf2cfd65e";
const PINNED_CHUNKS: [&str; 2] = [
    "5353636802020000340000008d3a1542750bfd8804b701dec7be33ca1626dc3f506ebc75b5ebe185ffb43ba1\
     7c523e282810891c022255585a054c5f89c8e02700f37edbf77c5b5fde2179e9b4471b6ae057f0484e2f296f",
    "5353636802060000340000005fc8a90160aac5b6c081a9f9f40ceffcda31b600129a233d5eb1e69aad89a83f\
     f64e0854843cca46c18fe29db13453deeef171cf117f59f7cc32ee45bf44f0f73559f3d4b182e740890f7cfd",
];
const PINNED_DELTA_BASE: &[u8] = b"base of a delta stored before key rotation";
const PINNED_DELTA_TARGET: &[u8] = b"target of a delta stored before key rotation";
const PINNED_DELTA_ID: &str = "68ce7035255763266dce57863afbe12024cf5fdb9920798568f7ef8f153ed4e4";
const PINNED_DELTA_BASE_ID: &str =
    "b62f7bbb9234ccd0fae0edcabdd6067533789494ff141d7bfe99a10e7304a15c";
const PINNED_DELTA: &str = "535364740202000034000000b62f7bbb9234ccd0fae0edcabdd6067533789494\
     ff141d7bfe99a10e7304a15cafda5a36176c2e98aea1888d09ca901313796d219655e854996b19d6c4b689d5\
     55462c7ecb8e9cb57dfe00769bae1e1ffc481d34a25c41998d2c781403ad288bd15d8c448646d3ad733e2853";

/// Every encrypted chunk and delta stored before key rotation has zeros
/// where the generation now is: it must decode as generation 1, with a
/// codec of that key alone (as before) and with one that has rotated since.
#[test]
fn objects_stored_before_key_rotation_decode_as_generation_1() {
    let old = key(0x21);
    let new = key(0x22);
    let before = ChunkCodec::encrypted(&old);
    let rotated = ChunkCodec::encrypted_generations(2, [(1, &old), (2, &new)]).unwrap();
    let only_new = ChunkCodec::encrypted_generations(2, [(2, &new)]).unwrap();
    for hex in PINNED_CHUNKS {
        let bytes = unhex(hex);
        assert_eq!(bytes[6..8], [0, 0]);
        for codec in [&before, &rotated] {
            assert_eq!(
                codec.decode(&id(PINNED_ID), &bytes).unwrap(),
                PINNED_PLAINTEXT
            );
        }
        assert_eq!(
            problem(only_new.decode(&id(PINNED_ID), &bytes)),
            ChunkProblem::UnknownGeneration { generation: 1 }
        );
    }
    assert_eq!(before.chunk_id(PINNED_PLAINTEXT), id(PINNED_ID));

    let delta = unhex(PINNED_DELTA);
    assert_eq!(delta_base(&delta).unwrap().id, id(PINNED_DELTA_BASE_ID));
    for codec in [&before, &rotated] {
        let target = apply(codec, &id(PINNED_DELTA_ID), PINNED_DELTA_BASE, &delta).unwrap();
        assert_eq!(target, PINNED_DELTA_TARGET);
    }
    assert_eq!(
        problem(apply(
            &only_new,
            &id(PINNED_DELTA_ID),
            PINNED_DELTA_BASE,
            &delta
        )),
        ChunkProblem::UnknownGeneration { generation: 1 }
    );
}

/// A chunk decodes with the key (AEAD and id key) of the generation that
/// wrote it, whatever the decoding codec's current generation.
#[test]
fn chunks_decode_with_the_generation_that_wrote_them() {
    let data = common::text_bytes(1, 50_000);
    let first = ChunkCodec::encrypted(&key(1));
    assert_eq!(first.generation(), Some(1));
    let old = first.encode(&data).unwrap();
    assert_eq!(old.bytes[6..8], [0, 0]);
    let current_2 = ring(2, &[1, 2]);
    assert_eq!(current_2.generation(), Some(2));
    for cipher in [Cipher::XChaCha20Poly1305, Cipher::Aes256Gcm] {
        let current_2 = current_2.clone().with_cipher(cipher);
        let new = current_2.encode(&data).unwrap();
        assert_eq!(new.bytes[6..8], [1, 0], "generation 2 is written as 1");
        // Held: generation 1 under a ring now at 2, generation 2 under any
        // ring that has it, current or not.
        assert_eq!(current_2.decode(&old.id, &old.bytes).unwrap(), data);
        for codec in [
            &current_2,
            &ring(2, &[2]),
            &ring(3, &[2, 3]),
            &ring(1, &[1, 2]),
        ] {
            assert_eq!(codec.decode(&new.id, &new.bytes).unwrap(), data);
        }
        // Not held: refused by name, before any decryption.
        for codec in [&first, &ring(1, &[1]), &ring(3, &[1, 3])] {
            assert_eq!(
                problem(codec.decode(&new.id, &new.bytes)),
                ChunkProblem::UnknownGeneration { generation: 2 }
            );
        }
        assert_eq!(
            problem(ring(3, &[2, 3]).decode(&old.id, &old.bytes)),
            ChunkProblem::UnknownGeneration { generation: 1 }
        );
        // Another workspace's generation 2 is another key.
        let stranger = ChunkCodec::encrypted_generations(2, [(2, &key(99))]).unwrap();
        assert_eq!(
            problem(stranger.decode(&new.id, &new.bytes)),
            ChunkProblem::Authentication
        );
        assert_eq!(
            problem(ChunkCodec::compressed().decode(&new.id, &new.bytes)),
            ChunkProblem::KeyRequired
        );
    }
}

/// The generation bytes are in the authenticated header: relabelling a
/// chunk or delta never decodes, even between two generations that
/// (absurdly) share a key, where only the associated data tells them
/// apart.
#[test]
fn relabelled_generations_never_decode() {
    let data = common::random_bytes(2, 3000);
    let held = ring(2, &[1, 2, 3]);
    let enc = held.encode(&data).unwrap();
    let base = common::random_bytes(3, 20_000);
    let mut target = base.clone();
    target[100..110].copy_from_slice(b"relabelled");
    let delta = encode_delta(&held, &base, &target).unwrap();
    for label in [[0u8, 0], [2, 0], [1, 1], [0xff, 0xff], [3, 0]] {
        let mut chunk = enc.bytes.clone();
        chunk[6..8].copy_from_slice(&label);
        let p = problem(held.decode(&enc.id, &chunk));
        let g = u32::from(u16::from_le_bytes(label)) + 1;
        let expected = if g <= 3 {
            ChunkProblem::Authentication
        } else {
            ChunkProblem::UnknownGeneration { generation: g }
        };
        assert_eq!(p, expected, "chunk relabelled {label:?}");
        let mut d = delta.bytes.clone();
        d[6..8].copy_from_slice(&label);
        let p = problem(apply(&held, &delta.id, &base, &d));
        // A generation held names the base with another id key.
        assert!(
            matches!(
                p,
                ChunkProblem::WrongBase | ChunkProblem::UnknownGeneration { .. }
            ),
            "delta relabelled {label:?}: {p:?}"
        );
    }
    // Every bit of the generation bytes, against a ring of one key under
    // two generations: ids and keys agree, the associated data does not.
    let k = key(7);
    let twins = ChunkCodec::encrypted_generations(2, [(1, &k), (2, &k)]).unwrap();
    let enc = twins.encode(&data).unwrap();
    let delta = encode_delta(&twins, &base, &target).unwrap();
    for bit in 0..16 {
        let mut chunk = enc.bytes.clone();
        chunk[6 + bit / 8] ^= 1 << (bit % 8);
        let p = problem(twins.decode(&enc.id, &chunk));
        let mut d = delta.bytes.clone();
        d[6 + bit / 8] ^= 1 << (bit % 8);
        let q = problem(apply(&twins, &delta.id, &base, &d));
        let expected = if bit == 0 {
            // Generation 2 relabelled 1: held, same key, refused by the AEAD.
            ChunkProblem::Authentication
        } else {
            let g = u32::from(u16::from_le_bytes(chunk[6..8].try_into().unwrap())) + 1;
            ChunkProblem::UnknownGeneration { generation: g }
        };
        assert_eq!((p, q), (expected.clone(), expected), "bit {bit}");
    }
}

/// The same plaintext has another id under each generation (an id is a
/// keyed hash); a codec names new chunks, cuts files and writes deltas
/// with its current generation only.
#[test]
fn ids_cut_points_and_deltas_follow_the_current_generation() {
    let data = common::text_bytes(4, 300_000);
    let at_1 = ring(1, &[1, 2]);
    let at_2 = ring(2, &[1, 2]);
    assert_ne!(at_1.chunk_id(&data), at_2.chunk_id(&data));
    assert_eq!(
        at_1.chunk_id(&data),
        ChunkCodec::encrypted(&key(1)).chunk_id(&data)
    );
    assert_eq!(
        at_2.chunk_id(&data),
        ChunkCodec::encrypted(&key(2)).chunk_id(&data)
    );
    // What the upload path checks before a delta: a base decoded from an
    // earlier generation is not named by its id under the current one.
    let old = at_1.encode(&data).unwrap();
    let plain = at_2.decode(&old.id, &old.bytes).unwrap();
    assert_ne!(at_2.chunk_id(&plain), old.id);

    let config = ChunkerConfig {
        min: 1024,
        avg: 4096,
        max: 16384,
    };
    let cuts = |codec: &ChunkCodec| -> Vec<u64> {
        codec
            .chunk_reader(Cursor::new(&data), config)
            .unwrap()
            .map(|c| c.unwrap().offset)
            .collect()
    };
    assert_eq!(cuts(&at_2), cuts(&ChunkCodec::encrypted(&key(2))));
    assert_ne!(cuts(&at_2), cuts(&at_1));

    let mut target = data.clone();
    target[150_000..150_010].copy_from_slice(b"generation");
    let delta = encode_delta(&at_2, &data, &target).unwrap();
    assert_eq!(delta.bytes[6..8], [1, 0]);
    assert_eq!(delta.base, at_2.chunk_id(&data));
    assert_eq!(delta_base(&delta.bytes).unwrap().id, delta.base);
    assert_eq!(delta.id, at_2.chunk_id(&target));
}

/// A delta is opened, and its base and target checked, under the
/// generation that wrote it.
#[test]
fn deltas_apply_with_the_generation_that_wrote_them() {
    let base = common::random_bytes(5, 100_000);
    let mut target = base.clone();
    target.splice(
        40_000..40_000,
        b"inserted under a later key".iter().copied(),
    );
    let at_2 = ring(2, &[1, 2]);
    let new = encode_delta(&at_2, &base, &target).unwrap();
    let old = encode_delta(&ChunkCodec::encrypted(&key(1)), &base, &target).unwrap();
    assert_eq!(old.bytes[6..8], [0, 0]);
    for codec in [&at_2, &ring(1, &[1, 2]), &ring(3, &[2, 3]), &ring(2, &[2])] {
        assert_eq!(apply(codec, &new.id, &base, &new.bytes).unwrap(), target);
    }
    for codec in [&at_2, &ring(3, &[1, 2, 3]), &ring(1, &[1])] {
        assert_eq!(apply(codec, &old.id, &base, &old.bytes).unwrap(), target);
    }
    for codec in [&ChunkCodec::encrypted(&key(1)), &ring(3, &[1, 3])] {
        assert_eq!(
            problem(apply(codec, &new.id, &base, &new.bytes)),
            ChunkProblem::UnknownGeneration { generation: 2 }
        );
    }
    // Still the base it names, under its own generation's id key.
    let mut other_base = base.clone();
    other_base[0] ^= 1;
    assert_eq!(
        problem(apply(
            &ring(3, &[1, 2, 3]),
            &new.id,
            &other_base,
            &new.bytes
        )),
        ChunkProblem::WrongBase
    );
}

#[test]
fn codecs_of_generations_that_do_not_fit_together_are_refused() {
    let (a, b) = (key(1), key(2));
    assert_eq!(
        refusal(ChunkCodec::encrypted_generations(1, [])),
        GenerationProblem::Empty
    );
    for generation in [0, MAX_KEY_GENERATION + 1, u32::MAX] {
        assert_eq!(
            refusal(ChunkCodec::encrypted_generations(
                1,
                [(1, &a), (generation, &b)]
            )),
            GenerationProblem::OutOfRange {
                generation,
                max: MAX_KEY_GENERATION
            }
        );
    }
    assert_eq!(
        refusal(ChunkCodec::encrypted_generations(3, [(1, &a), (2, &b)])),
        GenerationProblem::CurrentMissing { current: 3 }
    );
    for current in [1, 2] {
        assert_eq!(
            refusal(ChunkCodec::encrypted_generations(
                current,
                [(1, &a), (2, &b), (2, &a)]
            )),
            GenerationProblem::Duplicate { generation: 2 }
        );
    }
    let err = ChunkCodec::encrypted_generations(3, [(1, &a)]).unwrap_err();
    assert_eq!(err.to_proto().kind, ErrorKind::BadRequest);
    assert!(err.to_string().contains("generation 3"), "{err}");
    assert_eq!(ChunkCodec::plain().generation(), None);

    // The last generation a header can name round trips.
    let last =
        ChunkCodec::encrypted_generations(MAX_KEY_GENERATION, [(MAX_KEY_GENERATION, &a)]).unwrap();
    let enc = last.encode(b"the last generation").unwrap();
    assert_eq!(enc.bytes[6..8], [0xff, 0xff]);
    assert_eq!(
        last.decode(&enc.id, &enc.bytes).unwrap(),
        b"the last generation"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Mutated chunks and deltas of two generations, decoded by rings that
    /// hold both, one or neither: never a panic, and nothing accepted but
    /// the exact plaintext.
    #[test]
    fn mutated_objects_of_any_generation_never_panic(
        written in 1u32..3,
        at in any::<usize>(),
        value: u8,
        cut in 0usize..4,
    ) {
        let writer = ring(written, &[1, 2]);
        let base = common::text_bytes(6, 5000);
        let target = [&base[..2000], b"mutant", &base[2000..]].concat();
        let chunk = writer.encode(&target).unwrap();
        let delta = encode_delta(&writer, &base, &target).unwrap();
        for (bytes, is_delta) in [(chunk.bytes, false), (delta.bytes, true)] {
            let mut bytes = bytes;
            let at = at % bytes.len();
            bytes[at] = value;
            bytes.truncate(bytes.len() - cut);
            for reader in [ring(2, &[1, 2]), ring(1, &[1]), ring(3, &[2, 3])] {
                let got = if is_delta {
                    apply(&reader, &delta.id, &base, &bytes)
                } else {
                    reader.decode(&chunk.id, &bytes)
                };
                if let Ok(out) = got {
                    prop_assert_eq!(&out, &target);
                }
            }
        }
    }
}
