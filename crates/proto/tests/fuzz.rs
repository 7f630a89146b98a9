//! The short fuzz run on stable Rust: the fuzz bodies of `stacksync_proto::fuzz`
//! over thousands of random inputs and mutations of valid messages
//! (plain, compact and compressed). They must never panic; accepted
//! messages must survive encoding again, and a compressed message must
//! never inflate past the cap (checked here on the allocations too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

use proptest::prelude::*;
use stacksync_proto::fuzz::{self, Mutation, brief_reply, notification, wire_message};
use stacksync_proto::wire::{self, MAX_MESSAGE_BYTES};

/// Counts the bytes this thread holds, and the most it held since
/// [`peak_during`] started: decoding runs on the caller's thread.
struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(grow: usize, shrink: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(grow).saturating_sub(shrink);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting touches only const-initialized thread locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size(), 0);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        note(0, layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size, layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes this thread's Rust allocations grew by while `f` ran.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    f();
    PEAK.with(Cell::get) - base
}

/// A compressed message declaring `declared` bytes whose frame inflates
/// to `actual` bytes of JSON-ish filler.
fn bomb(declared: u32, actual: usize) -> Vec<u8> {
    let mut out = vec![0, b'Z'];
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&zstd::bulk::compress(&vec![b' '; actual], 1).unwrap());
    out
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(fuzz::seeds)
}

fn brief_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(fuzz::brief_seeds)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<u8>(), any::<usize>(), any::<u64>()).prop_map(|(op, at, x)| Mutation { op, at, x })
}

/// `plain` compressed as a peer would, declaring its true length unless
/// `lie` says otherwise.
fn compressed(plain: &[u8], lie: Option<u32>) -> Vec<u8> {
    let declared = lie.unwrap_or(plain.len() as u32);
    let mut out = vec![0, b'Z'];
    out.extend_from_slice(&declared.to_le_bytes());
    out.extend_from_slice(&zstd::bulk::compress(plain, 3).unwrap());
    out
}

#[test]
fn seeds_decode() {
    for (i, s) in fuzz::seeds().iter().enumerate() {
        assert!(wire_message(s) >= 1, "seed {i} refused");
    }
    for (i, s) in fuzz::brief_seeds().iter().enumerate() {
        assert!(brief_reply(s), "brief seed {i} refused");
    }
}

#[test]
fn compressed_bombs_stop_at_the_cap() {
    let _ = wire_message(&bomb(1000, 1 << 20)); // warm up lazy statics
    // A frame inflating to 64 MiB, declaring 1000 bytes: refused after
    // reading 1001.
    let small = bomb(1000, 64 << 20);
    let peak = peak_during(|| assert_eq!(wire_message(&small), 0));
    println!("bomb declaring 1000 bytes: {peak} bytes allocated at most");
    assert!(
        peak < 1 << 20,
        "{peak} bytes allocated for a 1000-byte message"
    );
    // The same frame declaring the cap: refused before the output holds
    // more than the cap (plus the growth of one buffer).
    let large = bomb(MAX_MESSAGE_BYTES as u32, 64 << 20);
    let peak = peak_during(|| assert_eq!(wire_message(&large), 0));
    println!("bomb declaring the cap: {peak} bytes allocated at most");
    assert!(
        peak <= 2 * (MAX_MESSAGE_BYTES + 1) + (1 << 20),
        "{peak} bytes allocated for a message capped at {MAX_MESSAGE_BYTES}"
    );
    // Declaring more than the cap is refused before inflating anything.
    let over = bomb(MAX_MESSAGE_BYTES as u32 + 1, 10);
    let peak = peak_during(|| assert_eq!(wire_message(&over), 0));
    assert!(
        peak < 64 << 10,
        "{peak} bytes allocated for a refused header"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = wire_message(&data);
        let _ = brief_reply(&data);
        // Behind a valid envelope and behind a compressed header, so the
        // bytes reach the body decoders and zstd.
        let mut framed = br#"{"v":1,"c":1,"body":"#.to_vec();
        framed.extend_from_slice(&data);
        framed.push(b'}');
        let _ = wire_message(&framed);
        let mut packed = vec![0, b'Z'];
        packed.extend_from_slice(&data);
        let _ = wire_message(&packed);
    }

    #[test]
    fn mutated_messages_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..5),
        lie in proptest::option::of(any::<u32>()),
    ) {
        let mut v = seed.get(seeds()).clone();
        fuzz::mutate(&mut v, &muts);
        let _ = wire_message(&v);
        let _ = notification(&v);
        // Mutated JSON, compressed afresh (with or without a lying
        // length), reaches the decoders through zstd.
        if !wire::is_compressed(&v) {
            let _ = wire_message(&compressed(&v, lie));
        }
    }

    #[test]
    fn mutated_brief_replies_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut v = seed.get(brief_seeds()).clone();
        fuzz::mutate(&mut v, &muts);
        let _ = brief_reply(&v);
    }
}
