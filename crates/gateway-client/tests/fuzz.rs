//! The short fuzz run on stable Rust: the fuzz bodies of
//! `stacksync_gateway_client::fuzz` over thousands of random inputs and
//! mutations of valid notification streams, answers and URLs. They must
//! never panic, and the notification reader never yields an error or a
//! message over the limit.

use std::sync::OnceLock;

use proptest::prelude::*;
use stacksync_gateway_client::fuzz::{self, base_url, frame, notification_frames, response_bodies};
use stacksync_proto::Notification;
use stacksync_proto::fuzz::{Mutation, mutate};

fn frame_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(fuzz::frame_seeds)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<u8>(), any::<usize>(), any::<u64>()).prop_map(|(op, at, x)| Mutation { op, at, x })
}

#[test]
fn seeds_read_as_the_client_reads_them() {
    let seeds = frame_seeds();
    for (i, s) in seeds[..seeds.len() - 1].iter().enumerate() {
        assert_eq!(notification_frames(s).len(), 1, "seed {i}");
    }
    let mixed = notification_frames(&seeds[seeds.len() - 1]);
    assert_eq!(mixed.len(), seeds.len() - 1);
    assert!(!mixed.iter().all(|n| *n == Notification::Resync));
    // A notification this build cannot read asks for a resync.
    let unknown = frame(1, true, br#"{"v":1,"body":{"type":"from_the_future"}}"#);
    assert_eq!(notification_frames(&unknown), vec![Notification::Resync]);
    // A frame announcing more than the limit ends the stream unread.
    let mut huge = vec![0x81, 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    assert!(notification_frames(&huge).is_empty());
    for s in fuzz::response_seeds() {
        assert!(response_bodies(&s) >= 1 || s.ends_with(b"</html>"));
    }
    for s in fuzz::url_seeds() {
        assert!(base_url(&s));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), op in 0u8..16) {
        let _ = notification_frames(&data);
        let _ = response_bodies(&data);
        let _ = base_url(&data);
        // Behind a valid frame header, so the bytes reach the decoders.
        let _ = notification_frames(&frame(op, op % 2 == 0, &data));
    }

    #[test]
    fn mutated_streams_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..5),
    ) {
        let mut v = seed.get(frame_seeds()).clone();
        mutate(&mut v, &muts);
        let _ = notification_frames(&v);
    }

    #[test]
    fn mutated_answers_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut v = seed.get(&fuzz::response_seeds()).clone();
        mutate(&mut v, &muts);
        let _ = response_bodies(&v);
        let mut u = seed.get(&fuzz::url_seeds()).clone();
        mutate(&mut u, &muts);
        let _ = base_url(&u);
    }
}
