//! An optional bandwidth limit: a token bucket shared by all transfers of
//! one direction.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket of bytes. A transfer larger than what the bucket holds
/// is let through at once and the bucket goes into debt, which later
/// transfers wait off: the average rate holds however large chunks are,
/// and concurrent transfers queue fairly for their share.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket refilling at `bytes_per_sec` (at least 1), holding at most
    /// one second's worth; it starts full.
    pub fn new(bytes_per_sec: u64) -> TokenBucket {
        let rate = bytes_per_sec.max(1) as f64;
        TokenBucket {
            rate,
            burst: rate,
            state: Mutex::new(Bucket {
                tokens: rate,
                at: Instant::now(),
            }),
        }
    }

    /// Takes `bytes` at `now`; returns how long the caller must wait before
    /// sending them.
    pub(crate) fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        // Poisoning only means another taker panicked mid-update of two
        // plain numbers; the numbers are still usable.
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now.max(b.at);
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / self.rate)
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_average_rate_and_allows_a_burst() {
        let bucket = TokenBucket::new(1000);
        let t0 = Instant::now();
        // The first second's worth goes at once.
        assert_eq!(bucket.reserve(1000, t0), Duration::ZERO);
        // The next 500 bytes wait half a second.
        assert_eq!(bucket.reserve(500, t0), Duration::from_millis(500));
        // A second taker queues behind the first's debt.
        assert_eq!(bucket.reserve(500, t0), Duration::from_millis(1000));
        // After the debt is paid and a full second more, a burst is free
        // again, but never more than one second's worth.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(bucket.reserve(1000, later), Duration::ZERO);
        assert_eq!(bucket.reserve(1000, later), Duration::from_secs(1));
    }

    #[test]
    fn a_chunk_larger_than_the_bucket_goes_into_debt() {
        let bucket = TokenBucket::new(100);
        let t0 = Instant::now();
        assert_eq!(bucket.reserve(400, t0), Duration::from_secs(3));
        assert_eq!(
            bucket.reserve(100, t0 + Duration::from_secs(3)),
            Duration::from_secs(1)
        );
    }
}
