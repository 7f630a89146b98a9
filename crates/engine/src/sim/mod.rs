//! Deterministic test doubles: an in-memory file system with injectable
//! faults, an in-memory server that applies the real commit rules, a fake
//! clock, seeded ids and a seeded random number generator. Used by the
//! engine's own tests and by whole-system simulations.

mod fs;
mod server;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use stacksync_proto::{ItemId, Millis};

pub use fs::MemFs;
pub use server::{DeviceLink, FakeServer};

use crate::io::{Clock, IdSource};

/// A clock that starts at a fixed instant and moves one second per reading,
/// so that two conflicted copies made in one test get different names.
#[derive(Debug)]
pub struct FakeClock {
    now: AtomicI64,
}

impl FakeClock {
    /// A clock at `start` milliseconds since the epoch.
    pub fn new(start: Millis) -> FakeClock {
        FakeClock {
            now: AtomicI64::new(start),
        }
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        // 2025-01-01T00:00:00Z
        FakeClock::new(1_735_689_600_000)
    }
}

impl Clock for FakeClock {
    fn now_millis(&self) -> Millis {
        self.now.fetch_add(1000, Ordering::Relaxed)
    }
}

/// Item ids from a per-device seed and a counter: deterministic, and
/// distinct across devices with distinct seeds.
#[derive(Debug)]
pub struct SeqIds {
    seed: u64,
    next: AtomicU64,
}

impl SeqIds {
    /// Ids `(seed, 1)`, `(seed, 2)`, ...
    pub fn new(seed: u64) -> SeqIds {
        SeqIds {
            seed,
            next: AtomicU64::new(1),
        }
    }
}

impl IdSource for SeqIds {
    fn new_item_id(&self) -> ItemId {
        ItemId(uuid::Uuid::from_u64_pair(
            self.seed,
            self.next.fetch_add(1, Ordering::Relaxed),
        ))
    }
}

/// SplitMix64: a tiny, well-known generator; plenty for choosing test
/// actions, and the same seed always gives the same run.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}
