//! The short fuzz run on stable Rust: the fuzz bodies of
//! `stacksync_blobstore::fuzz` over random inputs and mutations of valid
//! names and Swift answers (listing, catalog, ACL, `/info`), read by a real
//! Swift store from a fake cluster on loopback. Nothing may panic.

use proptest::prelude::*;
use stacksync_blobstore::fuzz::{self, names, swift_answers};
use stacksync_proto::fuzz::{Mutation, mutate};

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<u8>(), any::<usize>(), any::<u64>()).prop_map(|(op, at, x)| Mutation { op, at, x })
}

#[test]
fn seeds_are_accepted() {
    let seeds = fuzz::seeds();
    // Listing, ACL, /info and the Keystone login.
    assert_eq!(swift_answers(&seeds[0]), 4);
    // A valid container name that is also a storage user.
    assert_eq!(names(&seeds[1]), 2);
    assert_eq!(names(&seeds[2]), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_names_never_panic(data in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = names(&data);
    }
}

proptest! {
    // Each case is four HTTP exchanges on loopback.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_answers_never_panic(
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let seeds = fuzz::seeds();
        let mut v = pick.get(&seeds).clone();
        mutate(&mut v, &muts);
        let _ = swift_answers(&v);
        let _ = names(&v);
    }
}
