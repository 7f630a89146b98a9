//! The short fuzz run on stable Rust: the fuzz bodies of
//! `stacksync_vault::fuzz` over random inputs and mutations of valid
//! blobs (the decoders' own property tests are in `tests/decoders.rs`).
//! Nothing may panic, and nothing but a valid blob may authenticate.

use std::sync::OnceLock;

use proptest::prelude::*;
use stacksync_proto::fuzz::{Mutation, mutate};
use stacksync_vault::fuzz::{self, local_blobs, public_blobs, record_and_name, statement};

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(fuzz::seeds)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<u8>(), any::<usize>(), any::<u64>()).prop_map(|(op, at, x)| Mutation { op, at, x })
}

fn all(data: &[u8]) -> usize {
    public_blobs(data) + local_blobs(data) + statement(data) + record_and_name(data)
}

#[test]
fn seeds_open() {
    // Public identity, pins, freshness, three local blobs, the genesis
    // (as genesis, and seen again after itself; twice in a chain it is
    // refused), the second statement (alone and in the chain), the record,
    // the name.
    let opened: Vec<usize> = seeds().iter().map(|s| all(s)).collect();
    assert_eq!(opened, vec![1, 1, 1, 1, 1, 1, 2, 2, 1, 1]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(statement(&data) + record_and_name(&data) + local_blobs(&data), 0);
        let _ = public_blobs(&data);
    }

    #[test]
    fn mutated_blobs_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut v = pick.get(seeds()).clone();
        mutate(&mut v, &muts);
        let _ = all(&v);
    }
}
