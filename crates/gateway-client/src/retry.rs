//! The one retry policy of the client side: how many times a transient
//! failure is retried and how long to wait before each retry. Every retry
//! loop of the client (gateway calls, the notification socket, RPCs over
//! the bus) takes its waits from [`RetryPolicy::delays`], so the schedule
//! is written once, here, on top of `backon`'s exponential backoff.

use std::fmt;
use std::iter::FusedIterator;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// How often and how patiently transient failures are retried.
///
/// The waits are exponential with jitter; see [`Delays`] for exactly what
/// they are and how long one can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (0 is taken as 1: no retry).
    /// `u32::MAX`, as [`RetryPolicy::forever`] sets it, in practice never
    /// gives up.
    pub attempts: u32,
    /// Base wait before the first retry; doubled for each later one.
    pub initial_delay: Duration,
    /// Cap on the base wait. With jitter, one wait is at most twice this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that never gives up (for a daemon's reconnection loop):
    /// `attempts` is `u32::MAX`, about four billion retries, which at even
    /// a millisecond apart is seven weeks.
    pub fn forever(initial_delay: Duration, max_delay: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: u32::MAX,
            initial_delay,
            max_delay,
        }
    }

    /// The waits before each retry of one operation, in order: one item
    /// per retry, `attempts - 1` of them (none for `attempts` 0 or 1). A
    /// retry loop makes one of these per operation and gives up when it
    /// ends.
    pub fn delays(&self) -> Delays {
        let backoff = ExponentialBuilder::new()
            // A first wait above the cap would otherwise be taken as is.
            .with_min_delay(self.initial_delay.min(self.max_delay))
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .build();
        Delays {
            policy: *self,
            bound: self.max_delay.saturating_mul(2),
            backoff,
        }
    }
}

/// The waits of a [`RetryPolicy`], made by [`RetryPolicy::delays`].
///
/// Wait number `n` (from 1) starts from a base of
/// `min(initial_delay × 2^(n-1), max_delay)` (backon doubles in `f32`, so
/// the base is exact to about one part in ten million). backon's jitter
/// then *adds* a random extra of `base × r`, with `r` uniform in `[0, 1)`
/// (from a `fastrand` generator of each `Delays`'s own, seeded from the
/// thread's), so the wait is in `[base, 2 × base)`: never shorter than the
/// base, and on average one and a half times it. Devices cut off together thus spread out instead
/// of coming back in lockstep. Whatever `f32` rounding does, no wait is
/// ever longer than `2 × max_delay`: this iterator holds that bound.
pub struct Delays {
    policy: RetryPolicy,
    /// `2 × max_delay`, the longest wait given.
    bound: Duration,
    backoff: ExponentialBackoff,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.backoff.next().map(|delay| delay.min(self.bound))
    }
}

// backon's exponential backoff ends for good once its count is used up.
impl FusedIterator for Delays {}

impl fmt::Debug for Delays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The generator state and backon's counters say nothing useful.
        f.debug_struct("Delays")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// backon doubles in `f32`; a base may be off by this much.
    const ROUNDING: Duration = Duration::from_micros(1);

    fn policy(attempts: u32, initial_ms: u64, max_ms: u64) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay: MS * initial_ms as u32,
            max_delay: MS * max_ms as u32,
        }
    }

    /// The base (unjittered) wait before retry `n` (from 1).
    fn base(p: &RetryPolicy, n: u32) -> Duration {
        let doubled = p.initial_delay.saturating_mul(1 << (n - 1).min(20));
        doubled.min(p.max_delay)
    }

    #[test]
    fn delays_are_exponential_with_added_jitter_and_capped() {
        let p = policy(40, 100, 1_000);
        // Many runs, so that a jitter that subtracted, or one that could
        // reach twice the base, would show.
        for _ in 0..200 {
            let delays: Vec<Duration> = p.delays().collect();
            assert_eq!(delays.len(), 39);
            for (i, &d) in delays.iter().enumerate() {
                let b = base(&p, i as u32 + 1);
                assert!(
                    d + ROUNDING >= b && d < b * 2 + ROUNDING,
                    "retry {}: {d:?} outside [{b:?}, {:?})",
                    i + 1,
                    b * 2
                );
                assert!(
                    d <= p.max_delay * 2,
                    "retry {}: {d:?} over the bound",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn delays_grow_until_the_cap() {
        let p = policy(12, 10, 10_000);
        // Bases 10, 20, ..., 10240 capped at 10000 ms: each wait is at
        // least its base and below twice it, so while the base doubles
        // every wait is at least the one before it.
        let delays: Vec<Duration> = p.delays().collect();
        for pair in delays.windows(2).take(9) {
            assert!(pair[1] >= pair[0], "{delays:?}");
        }
        assert!(delays[0] < MS * 20, "{delays:?}");
        assert!(delays[10] >= MS * 10_000, "{delays:?}");
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let p = policy(2, 1_000, 1_000);
        let firsts: Vec<Duration> = (0..50).map(|_| p.delays().next().unwrap()).collect();
        let lowest = firsts.iter().min().unwrap();
        let highest = firsts.iter().max().unwrap();
        // Fifty draws from [1 s, 2 s) all within 10 ms of each other would
        // mean the jitter is gone (chance about 50 × 0.01^49).
        assert!(*highest - *lowest > MS * 10, "{firsts:?}");
    }

    #[test]
    fn the_count_is_attempts_minus_one() {
        for attempts in [2, 3, 5, 17, 100] {
            assert_eq!(
                policy(attempts, 1, 5).delays().count(),
                attempts as usize - 1,
                "attempts {attempts}"
            );
        }
    }

    #[test]
    fn zero_or_one_attempt_gives_no_delay() {
        for attempts in [0, 1] {
            let mut delays = policy(attempts, 100, 1_000).delays();
            assert_eq!(delays.next(), None, "attempts {attempts}");
            assert_eq!(delays.next(), None, "attempts {attempts}");
        }
    }

    #[test]
    fn forever_does_not_end() {
        let p = RetryPolicy::forever(MS, MS * 50);
        assert_eq!(p.attempts, u32::MAX);
        let mut delays = p.delays();
        for i in 0..10_000 {
            let d = delays.next().unwrap_or_else(|| panic!("ended after {i}"));
            assert!(d <= MS * 100, "{i}: {d:?}");
        }
        // Long since at the cap: at least it, below twice it.
        let d = delays.next().unwrap();
        assert!(d + ROUNDING >= MS * 50 && d <= MS * 100, "{d:?}");
    }

    #[test]
    fn a_first_wait_above_the_cap_is_capped() {
        let p = policy(4, 10_000, 100);
        for d in p.delays() {
            assert!(d + ROUNDING >= MS * 100 && d <= MS * 200, "{d:?}");
        }
        // Capped before the jitter, not after: the first waits still spread
        // over [100 ms, 200 ms) rather than all sitting on the bound.
        let firsts: Vec<Duration> = (0..50).map(|_| p.delays().next().unwrap()).collect();
        let lowest = firsts.iter().min().unwrap();
        assert!(*lowest < MS * 190, "{firsts:?}");
    }

    #[test]
    fn delays_can_move_between_threads_and_print() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        let delays = RetryPolicy::default().delays();
        send_sync(&delays);
        let shown = format!("{delays:?}");
        assert!(shown.starts_with("Delays { policy: RetryPolicy"), "{shown}");
    }
}
