//! Retries with exponential backoff and jitter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often and how patiently idempotent requests are retried after a
/// connection error or a 5xx answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles each time.
    pub base_delay_ms: u64,
    /// Upper bound of one delay, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    /// About 15 s of patience in all: enough to ride out a proxy restart.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            base_delay_ms: 100,
            max_delay_ms: 3000,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based): exponential,
    /// capped, with "equal jitter" (half fixed, half random) so that many
    /// clients failing together do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max_delay_ms);
        let half = capped / 2;
        Duration::from_millis(half + fastrand::u64(0..=half))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay_ms: 100,
            max_delay_ms: 1000,
        };
        for _ in 0..100 {
            let d1 = p.delay(1).as_millis();
            assert!((50..=100).contains(&d1), "{d1}");
            let d3 = p.delay(3).as_millis();
            assert!((200..=400).contains(&d3), "{d3}");
            let d30 = p.delay(30).as_millis();
            assert!((500..=1000).contains(&d30), "{d30}");
        }
    }
}
