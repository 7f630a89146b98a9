//! What the daemon syncs next: a pure decision over the workspaces it
//! keeps, fed by triggers (the watcher's paths, push notifications, the
//! periodic rescan, a start) and by the outcome of each sync. Each
//! workspace has what its next sync must look at (`Changed`, merged from
//! every trigger since its last sync) and when it may run (now, or after a
//! backoff that grows with each failure in a row, from the one
//! [`RetryPolicy`]). Workspaces take turns, so one that keeps failing or
//! keeps changing never starves the others. No I/O, no clock of its own:
//! the caller passes the time in.

use std::collections::BTreeMap;
use std::time::Duration;

use stacksync_engine::Changed;
use stacksync_gateway_client::{Delays, RetryPolicy};
use tokio::time::Instant;

/// How a sync of one workspace ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing left to do.
    Done,
    /// Work is left, or it failed in a way waiting may fix: retry after
    /// the next backoff delay.
    Retry,
    /// It failed in a way retrying soon will not fix: retry after the
    /// longest delay.
    Slow,
}

#[derive(Debug)]
struct Entry {
    /// What the next sync looks at; `None` when nothing is due.
    pending: Option<Changed>,
    /// Not before this.
    retry_at: Option<Instant>,
    /// The delays of the current run of failures (`None`: no failure).
    delays: Option<Delays>,
}

/// The daemon's schedule over workspaces keyed by `K`.
#[derive(Debug)]
pub struct Schedule<K: Ord + Copy> {
    policy: RetryPolicy,
    entries: BTreeMap<K, Entry>,
    /// The key that ran last: the next turn starts after it.
    last: Option<K>,
}

impl<K: Ord + Copy> Schedule<K> {
    /// An empty schedule whose retries follow `policy` (its attempts are
    /// ignored: a daemon retries for as long as it runs, at the longest
    /// delay once the policy's delays run out).
    pub fn new(policy: RetryPolicy) -> Schedule<K> {
        Schedule {
            policy,
            entries: BTreeMap::new(),
            last: None,
        }
    }

    /// Starts keeping `key`, with a sync of everything due (a start: edits
    /// made while nothing ran). Already kept: the same as a full rescan.
    pub fn add(&mut self, key: K) {
        self.note(key, Changed::Anywhere);
    }

    /// Stops keeping `key` (its workspace was unmounted).
    pub fn remove(&mut self, key: K) {
        self.entries.remove(&key);
    }

    /// Whether `key` is kept.
    pub fn contains(&self, key: K) -> bool {
        self.entries.contains_key(&key)
    }

    /// Adds `changed` to what the next sync of `key` looks at.
    pub fn note(&mut self, key: K, changed: Changed) {
        let entry = self.entries.entry(key).or_insert(Entry {
            pending: None,
            retry_at: None,
            delays: None,
        });
        entry.pending = Some(merge(entry.pending.take(), changed));
    }

    /// Adds `changed` to every kept workspace (a rescan, a resync).
    pub fn note_all(&mut self, changed: &Changed) {
        let keys: Vec<K> = self.entries.keys().copied().collect();
        for key in keys {
            self.note(key, changed.clone());
        }
    }

    /// Cancels the backoff of `key` (something changed that may let it
    /// succeed now, e.g. its shared folders were mounted).
    pub fn hurry(&mut self, key: K) {
        if let Some(e) = self.entries.get_mut(&key) {
            e.retry_at = None;
        }
    }

    /// The next workspace to sync at `now` and what to look at, taken off
    /// the schedule: the first due one after the last that ran.
    pub fn next(&mut self, now: Instant) -> Option<(K, Changed)> {
        let due = |e: &Entry| e.pending.is_some() && e.retry_at.is_none_or(|at| at <= now);
        let after = self
            .last
            .and_then(|last| {
                self.entries
                    .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                    .find(|(_, e)| due(e))
                    .map(|(k, _)| *k)
            })
            .or_else(|| self.entries.iter().find(|(_, e)| due(e)).map(|(k, _)| *k))?;
        let entry = self.entries.get_mut(&after).expect("found just above");
        entry.retry_at = None;
        self.last = Some(after);
        Some((after, entry.pending.take().expect("due entries have work")))
    }

    /// Records how the sync of `key` that looked at `changed` ended: done
    /// resets its backoff; otherwise `changed` is due again after the next
    /// delay.
    pub fn finished(&mut self, key: K, changed: Changed, outcome: Outcome, now: Instant) {
        let Some(entry) = self.entries.get_mut(&key) else {
            return;
        };
        let delay = match outcome {
            Outcome::Done => {
                entry.delays = None;
                return;
            }
            Outcome::Retry => entry
                .delays
                .get_or_insert_with(|| self.policy.delays())
                .next()
                .unwrap_or(self.policy.max_delay),
            Outcome::Slow => self.policy.max_delay,
        };
        entry.pending = Some(merge(entry.pending.take(), changed));
        entry.retry_at = Some(now + delay);
    }

    /// When the earliest workspace waiting on a backoff becomes due
    /// (`None`: none waits; what is due now is found by [`Schedule::next`]).
    pub fn wake_at(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| e.pending.is_some())
            .filter_map(|e| e.retry_at)
            .min()
    }

    /// The longest delay between retries.
    pub fn max_delay(&self) -> Duration {
        self.policy.max_delay
    }
}

/// `more` added to what `pending` looks at.
pub fn merge(pending: Option<Changed>, more: Changed) -> Changed {
    match (pending, more) {
        (None, more) => more,
        (Some(Changed::Paths(mut a)), Changed::Paths(b)) => {
            a.extend(b);
            Changed::Paths(a)
        }
        _ => Changed::Anywhere,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use stacksync_engine::RelPath;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }

    fn paths(p: &[&str]) -> Changed {
        Changed::Paths(p.iter().map(|s| RelPath::parse(s).unwrap()).collect())
    }

    #[test]
    fn triggers_merge_and_a_sync_takes_them() {
        let now = Instant::now();
        let mut s = Schedule::new(policy());
        assert_eq!(s.next(now), None);
        s.note(1, paths(&["a"]));
        s.note(1, paths(&["b"]));
        assert_eq!(s.next(now), Some((1, paths(&["a", "b"]))));
        assert_eq!(s.next(now), None, "taken once");
        s.note(1, paths(&["a"]));
        s.note(1, Changed::Anywhere);
        s.note(1, paths(&["c"]));
        assert_eq!(s.next(now), Some((1, Changed::Anywhere)));
        s.note(1, Changed::Paths(BTreeSet::new()));
        assert_eq!(s.next(now), Some((1, paths(&[]))));
    }

    #[test]
    fn failures_back_off_and_keep_what_was_to_be_looked_at() {
        let t0 = Instant::now();
        let mut s = Schedule::new(policy());
        s.add(7);
        let (k, changed) = s.next(t0).unwrap();
        assert_eq!((k, &changed), (7, &Changed::Anywhere));
        s.note(7, paths(&["x"]));
        s.finished(7, changed, Outcome::Retry, t0);
        assert_eq!(s.next(t0), None, "due only after the backoff");
        let first = s.wake_at().expect("waits") - t0;
        assert!(first >= Duration::from_millis(100), "{first:?}");
        let (_, again) = s.next(t0 + first).expect("due after the delay");
        assert_eq!(again, Changed::Anywhere, "the failed look is kept, merged");
        // Failures in a row wait longer, up to the longest delay.
        let mut last = first;
        let mut at = t0 + first;
        for _ in 0..6 {
            s.finished(7, paths(&[]), Outcome::Retry, at);
            let wait = s.wake_at().unwrap() - at;
            assert!(wait <= s.max_delay() * 2, "{wait:?}");
            last = last.max(wait);
            at += wait;
            assert!(s.next(at).is_some());
        }
        assert!(last > first, "the delays grow: {first:?} then {last:?}");
        // A success resets them.
        s.finished(7, paths(&[]), Outcome::Done, at);
        s.note(7, paths(&["y"]));
        s.finished(7, paths(&[]), Outcome::Retry, at);
        assert!(s.wake_at().unwrap() - at < last);
        // Slow failures wait the longest delay at once.
        let (_, c) = s.next(at + s.max_delay() * 2).unwrap();
        s.finished(7, c, Outcome::Slow, at);
        assert_eq!(s.wake_at(), Some(at + s.max_delay()));
        s.hurry(7);
        assert!(s.next(at).is_some(), "hurried");
    }

    #[test]
    fn workspaces_take_turns_and_one_backing_off_does_not_hold_the_others() {
        let now = Instant::now();
        let mut s = Schedule::new(policy());
        for k in [1, 2, 3] {
            s.add(k);
        }
        let (a, ca) = s.next(now).unwrap();
        s.finished(a, ca, Outcome::Retry, now);
        s.note(a, Changed::Anywhere);
        let (b, cb) = s.next(now).unwrap();
        s.finished(b, cb, Outcome::Done, now);
        s.note(b, paths(&["again"]));
        let (c, _) = s.next(now).unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        // 2 changed again and is due; 1 is backing off; turns go on after 3.
        assert_eq!(s.next(now).map(|(k, _)| k), Some(2));
        assert_eq!(s.next(now), None);
        s.remove(1);
        assert_eq!(s.wake_at(), None, "a removed workspace is not waited for");
        assert!(!s.contains(1));
        s.note_all(&Changed::Anywhere);
        assert_eq!(s.next(now).map(|(k, _)| k), Some(3));
        assert_eq!(s.next(now).map(|(k, _)| k), Some(2));
    }
}
