//! The short fuzz run on stable Rust: the fuzz bodies of
//! `stacksync_client::fuzz` over thousands of random inputs and mutations
//! of valid pack ranges, chunk lists, journal and state rows, TOML files
//! and key files. They must never panic, and what loads must save and load
//! again as itself.

use std::sync::OnceLock;

use proptest::prelude::*;
use stacksync_client::fuzz::{
    self, download, journal_rows, key_files, mounts, pack_ranges, profile, state_rows,
};
use stacksync_proto::fuzz::{Mutation, mutate};

struct Seeds {
    ranges: Vec<Vec<u8>>,
    downloads: Vec<Vec<u8>>,
    states: Vec<Vec<u8>>,
    tomls: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let (ranges, downloads) = fuzz::transfer_seeds();
        Seeds {
            ranges,
            downloads,
            states: fuzz::state_seeds(),
            tomls: fuzz::toml_seeds(),
            keys: fuzz::key_file_seeds(),
        }
    })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<u8>(), any::<usize>(), any::<u64>()).prop_map(|(op, at, x)| Mutation { op, at, x })
}

fn mutated(seeds: &[Vec<u8>], pick: prop::sample::Index, muts: &[Mutation]) -> Vec<u8> {
    let mut v = pick.get(seeds).clone();
    mutate(&mut v, muts);
    v
}

#[test]
fn seeds_load() {
    let s = seeds();
    let read: Vec<usize> = s.ranges.iter().map(|r| pack_ranges(r)).collect();
    // All four chunks (one named twice), but the last under the third
    // seed, whose pack answer is cut short.
    assert_eq!(read, vec![4, 4, 3]);
    assert!(download(&s.downloads[0]));
    assert!(state_rows(&s.states[0]));
    assert!(mounts(&s.tomls[0]));
    assert!(profile(&s.tomls[1]));
    // A direct profile needs no gateway URL.
    assert!(profile(&s.tomls[2]));
    for (i, k) in s.keys.iter().enumerate() {
        assert!(key_files(k), "key file seed {i}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = pack_ranges(&data);
        let _ = download(&data);
        let _ = journal_rows(&data);
        let _ = state_rows(&data);
        let _ = mounts(&data);
        let _ = profile(&data);
    }

    #[test]
    fn mutated_transfers_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let _ = pack_ranges(&mutated(&seeds().ranges, pick, &muts));
        let _ = download(&mutated(&seeds().downloads, pick, &muts));
    }

    #[test]
    fn mutated_files_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let _ = state_rows(&mutated(&seeds().states, pick, &muts));
        let toml = mutated(&seeds().tomls, pick, &muts);
        let _ = mounts(&toml);
        let _ = profile(&toml);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    // Each case writes a file; fewer of them.
    #[test]
    fn mutated_key_files_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let _ = key_files(&mutated(&seeds().keys, pick, &muts));
    }
}
