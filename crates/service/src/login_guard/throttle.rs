//! Failure counting with exponential backoff, for one kind of key (an
//! account or an address), in a table of bounded size.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How one table counts: after `free_failures` failures every further one
/// blocks the key for `base * 2^(n-1)` (capped at `max`); a key that has not
/// failed for `forget_after` starts again from zero.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub free_failures: u32,
    pub base: Duration,
    pub max: Duration,
    pub forget_after: Duration,
    pub capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

impl Record {
    fn is_forgotten(&self, now: Instant, policy: &Policy) -> bool {
        let blocked = self.blocked_until.is_some_and(|until| until > now);
        !blocked && now.saturating_duration_since(self.last_failure) >= policy.forget_after
    }
}

/// The failure records of one kind of key. Its size never exceeds the
/// policy's capacity: when full, forgotten records go first, then the
/// unblocked one whose last failure is oldest, and only when every record
/// is blocked the oldest blocked one. So an attacker rotating keys evicts
/// its own unblocked keys, not a block it earned with enough failures.
#[derive(Debug)]
pub(crate) struct Throttle<K> {
    policy: Policy,
    records: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    pub fn new(policy: Policy) -> Throttle<K> {
        Throttle {
            policy,
            records: HashMap::new(),
        }
    }

    /// `Err(wait)` while `key` is blocked.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.records.get(key).and_then(|r| r.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure; returns how long `key` is now blocked, if it is.
    pub fn fail(&mut self, key: &K, now: Instant) -> Option<Duration> {
        if !self.records.contains_key(key) {
            self.make_room(now);
        }
        let policy = self.policy;
        let record = self.records.entry(key.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
            blocked_until: None,
        });
        if record.is_forgotten(now, &policy) {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let over = record.failures.checked_sub(policy.free_failures)?;
        if over == 0 {
            return None;
        }
        let wait = policy
            .base
            .saturating_mul(1u32 << (over - 1).min(20))
            .min(policy.max);
        record.blocked_until = Some(now + wait);
        Some(wait)
    }

    /// Forgets `key`'s failures (a successful login).
    pub fn clear(&mut self, key: &K) {
        self.records.remove(key);
    }

    /// How many keys are tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    fn make_room(&mut self, now: Instant) {
        if self.records.len() < self.policy.capacity.max(1) {
            return;
        }
        let policy = self.policy;
        self.records.retain(|_, r| !r.is_forgotten(now, &policy));
        while self.records.len() >= policy.capacity.max(1) {
            let unblocked_first = |r: &Record| {
                let blocked = r.blocked_until.is_some_and(|until| until > now);
                (blocked, r.last_failure)
            };
            let oldest = self
                .records
                .iter()
                .min_by_key(|(_, r)| unblocked_first(r))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => self.records.remove(&key),
                None => break,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            free_failures: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
            forget_after: Duration::from_secs(3600),
            capacity: 4,
        }
    }

    #[test]
    fn backoff_starts_after_the_free_failures_and_doubles_up_to_the_cap() {
        let mut t = Throttle::new(policy());
        let now = Instant::now();
        let waits: Vec<_> = (0..8).map(|_| t.fail(&"a", now)).collect();
        let s = |n| Some(Duration::from_secs(n));
        assert_eq!(waits, [None, None, None, s(1), s(2), s(4), s(8), s(8)]);
        assert_eq!(t.check(&"a", now), Err(Duration::from_secs(8)));
        assert_eq!(t.check(&"a", now + Duration::from_secs(8)), Ok(()));
        assert_eq!(t.check(&"b", now), Ok(()));
        t.clear(&"a");
        assert_eq!(t.check(&"a", now), Ok(()));
    }

    #[test]
    fn failures_long_ago_are_forgotten() {
        let mut t = Throttle::new(policy());
        let now = Instant::now();
        for _ in 0..3 {
            t.fail(&"a", now);
        }
        let later = now + Duration::from_secs(3600);
        assert_eq!(t.fail(&"a", later), None, "counting starts again");
    }

    #[test]
    fn the_table_never_grows_past_its_capacity_and_keeps_blocks() {
        let mut t = Throttle::new(policy());
        let now = Instant::now();
        for _ in 0..4 {
            t.fail(&0, now);
        }
        for key in 1..1000 {
            t.fail(&key, now + Duration::from_millis(key));
            assert!(t.len() <= 4);
        }
        // Rotating keys evict each other, not the oldest but blocked key.
        assert_eq!(t.len(), 4);
        assert!(t.check(&0, now).is_err());
        assert!(t.check(&999, now).is_ok());
    }
}
