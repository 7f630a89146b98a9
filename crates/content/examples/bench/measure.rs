//! Test data and clocks shared by the bench's sections.

use std::io::{self, Read};
use std::time::Instant;

/// Endless pseudo-random bytes (xorshift64*), for streaming without a buffer.
pub struct RandomReader {
    /// Generator state (never zero).
    pub state: u64,
    /// Bytes still to produce.
    pub left: u64,
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize & !7;
        let n = if n == 0 {
            (buf.len() as u64).min(self.left) as usize
        } else {
            n
        };
        for word in buf[..n].chunks_mut(8) {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn random_data(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut r = RandomReader {
        state: seed | 1,
        left: len as u64,
    };
    let mut filled = 0;
    while filled < len {
        filled += r.read(&mut v[filled..]).expect("RandomReader never fails");
    }
    v
}

/// Text-like data: lines drawn with a skewed distribution from a pool of
/// generated sentences, with numbers that vary, as in logs, source code and
/// prose (phrases repeat; word salad would be unrealistically hard on zstd).
pub fn text_data(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be",
        "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
        "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
        "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "file", "sync",
        "server", "version", "chunk",
    ];
    let r = random_data(seed, 64 * 1024);
    let mut byte = 0usize;
    let mut next = || {
        byte += 1;
        r[byte % r.len()] as usize
    };
    let sentences: Vec<Vec<u8>> = (0..4096)
        .map(|_| {
            let words = 4 + next() % 12;
            let mut s: Vec<u8> = (0..words)
                .flat_map(|_| [WORDS[next() % WORDS.len()].as_bytes(), b" "].concat())
                .collect();
            s.pop();
            s
        })
        .collect();
    let mut out = Vec::with_capacity(len + 256);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        // Squaring a uniform index skews the choice towards early sentences.
        let u = (v >> 40) as f64 / (1u64 << 24) as f64;
        out.extend_from_slice(&sentences[(u * u * sentences.len() as f64) as usize]);
        out.extend_from_slice(format!(" {}\n", v % 100_000).as_bytes());
    }
    out.truncate(len);
    out
}

/// CPU seconds (user + system) this process has used, all threads
/// including finished ones, from getrusage (microseconds).
pub fn cpu_seconds() -> f64 {
    rusage_seconds(libc::RUSAGE_SELF)
}

fn rusage_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given, which is a
    // plain C struct for which all-zero bytes are a valid value.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return f64::NAN;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Throughput of the best of `reps` runs of `f` over `bytes` bytes: MB/s of
/// wall time, and MB per CPU-second (all threads), which the
/// other jobs on a shared machine disturb less.
#[derive(Clone, Copy)]
pub struct Rate {
    /// MB per wall-clock second.
    pub wall: f64,
    /// MB per CPU-second.
    pub cpu: f64,
}

pub fn best_mbps(reps: usize, bytes: usize, f: impl FnMut()) -> Rate {
    best_rate(reps, bytes, cpu_seconds, f)
}

/// CPU seconds of the calling thread, for one-thread stage costs. From
/// `CLOCK_THREAD_CPUTIME_ID` (nanoseconds, including the running slice):
/// getrusage's per-thread figure only advances at scheduler ticks, too
/// coarse for a millisecond of work.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

pub fn best_rate(reps: usize, bytes: usize, clock: fn() -> f64, mut f: impl FnMut()) -> Rate {
    let mut best = Rate {
        wall: 0.0,
        cpu: 0.0,
    };
    for _ in 0..reps {
        let (t, c) = (Instant::now(), clock());
        f();
        let wall = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
        let cpu = bytes as f64 / (clock() - c).max(1e-6) / 1e6;
        // Each figure is its best run: the other jobs of a shared machine
        // only ever slow a run down.
        best.wall = best.wall.max(wall);
        best.cpu = best.cpu.max(cpu);
    }
    best
}
