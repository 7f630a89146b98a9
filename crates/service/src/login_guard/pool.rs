//! A few dedicated threads for password hashing behind a bounded queue.
//!
//! Argon2 takes ~19 MiB per hash. On tokio's blocking pool every login
//! could get its own thread (and, with glibc, its own malloc arena that
//! keeps the memory): 64 concurrent logins cost gigabytes. Here at most
//! `workers` hashes run at once, at most `queue` wait, and anything beyond
//! is refused at once instead of piling up.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolError {
    /// Every worker is busy and the queue is full.
    Overloaded,
    /// The workers are gone (a job panicked, or the pool is shutting down).
    Gone,
}

/// The hashing threads. Dropping the pool lets them finish their current
/// job and exit.
#[derive(Debug)]
pub(crate) struct HashPool {
    tx: SyncSender<Job>,
}

impl HashPool {
    /// Starts `workers` threads (at least one) with room for `queue`
    /// waiting jobs.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<HashPool> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("stacksync-hash-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(HashPool { tx })
    }

    /// Runs `f` on a worker and waits for its result without blocking the
    /// runtime. A caller that gives up before its job starts costs nothing:
    /// the job is skipped.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !done_tx.is_closed() {
                let _ = done_tx.send(f());
            }
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PoolError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Gone),
        }
        done_rx.await.map_err(|_| PoolError::Gone)
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, never while running it.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                // A panicking job must not take the worker with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[tokio::test]
    async fn jobs_run_and_overload_is_refused_at_once() {
        let pool = HashPool::new(1, 1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        // Hold the only worker, fill the queue, then one more is refused.
        let gate = Arc::new(Barrier::new(2));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let g = Arc::clone(&gate);
        let mut busy = Box::pin(pool.run(move || {
            let _ = started_tx.send(());
            g.wait();
        }));
        // The job is submitted on the first poll; wait until it runs.
        assert!(futures::poll!(&mut busy).is_pending());
        started_rx.recv().unwrap();
        let mut queued = Box::pin(pool.run(|| 1));
        assert!(futures::poll!(&mut queued).is_pending());
        assert_eq!(pool.run(|| 0).await, Err(PoolError::Overloaded));
        gate.wait();
        assert_eq!(busy.await, Ok(()));
        assert_eq!(queued.await, Ok(1));
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_worker() {
        let pool = HashPool::new(1, 4).unwrap();
        assert_eq!(
            pool.run(|| panic!("boom")).await,
            Err::<(), _>(PoolError::Gone)
        );
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
