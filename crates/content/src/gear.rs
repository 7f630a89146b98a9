//! FastCDC 2020 cut-point search, bit-for-bit the cut points of
//! `fastcdc::v2020::cut` with the default gear table and normalization
//! level 2 (see [`NORMALIZATION`]) (the `fastcdc` crate stays the reference: the tests below compare
//! the two on many windows), written for a shorter dependency chain.
//!
//! Why not call the crate: its loop adds two table values to the running
//! hash one after the other (`shl`, `add`, `add` per two bytes), so it runs
//! at the latency of that chain. Here the two table values are summed off
//! the chain and the hash takes one `shl` and one `add` per two bytes; the
//! intermediate hash that the odd-position test needs is computed beside it.
//! Chunking is the one sequential stage of the pipeline, so its speed bounds
//! the speed of the whole (measured by `bench`: chunking alone).

use std::borrow::Cow;

use fastcdc::v2020::{Normalization, get_gear_with_seed, select_masks};

/// FastCDC's normalization level. Level 2 keeps chunk sizes close to the
/// average. What a small edit re-sends is the chunk (or two) around it, and
/// the chunk a random position falls in is size-biased (long chunks cover
/// more positions), so a narrow spread is what keeps edits cheap. Measured
/// with 256 KiB / 1 MiB / 4 MiB on eight 64 MiB random files, one byte
/// inserted at a random place: level 1 re-sent 1.5–5.3% of the file (mean
/// 2.85%), level 2 1.6–3.0% (mean 2.20%), with about as many chunks.
pub const NORMALIZATION: Normalization = Normalization::Level2;

/// The masks and gear tables for one chunk-size configuration.
pub(crate) struct GearCutter {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: [u64; 256],
    gear_ls: [u64; 256],
}

fn table(t: Cow<'static, [u64]>) -> [u64; 256] {
    let mut out = [0u64; 256];
    out.copy_from_slice(&t);
    out
}

impl GearCutter {
    /// A cutter for sizes already validated by `ChunkerConfig::validate`
    /// (even, within FastCDC's ranges).
    pub fn new(min: usize, avg: usize, max: usize) -> GearCutter {
        let (mask_s, mask_l) = select_masks(avg, NORMALIZATION);
        let (gear, gear_ls) = get_gear_with_seed(0);
        GearCutter {
            min,
            avg,
            max,
            mask_s,
            mask_l,
            gear: table(gear),
            gear_ls: table(gear_ls),
        }
    }

    /// Length of the first chunk of `source` (all of it if no cut point is
    /// found within `max` bytes and it is no longer than that).
    pub fn cut(&self, source: &[u8]) -> usize {
        let mut remaining = source.len();
        if remaining <= self.min {
            return remaining;
        }
        let mut center = self.avg;
        if remaining > self.max {
            remaining = self.max;
        } else if remaining < center {
            center = remaining;
        }
        let src = &source[..remaining];
        let (cut, hash) = self.scan(src, self.min, center & !1, 0, self.mask_s);
        if let Some(cut) = cut {
            return cut;
        }
        let start = (center / 2).max(self.min / 2) * 2;
        let (cut, _) = self.scan(src, start, remaining & !1, hash, self.mask_l);
        cut.unwrap_or(remaining)
    }

    /// Tests positions `from..to` (both even) two bytes at a time, starting
    /// from `hash`; returns the first cut found, and the hash at `to`.
    #[inline(always)]
    fn scan(
        &self,
        src: &[u8],
        from: usize,
        to: usize,
        mut hash: u64,
        mask: u64,
    ) -> (Option<usize>, u64) {
        let mask_ls = mask << 1;
        if from >= to {
            return (None, hash);
        }
        for (pair, a) in src[from..to].chunks_exact(2).zip((from..).step_by(2)) {
            let (x, y) = (pair[0] as usize, pair[1] as usize);
            let shifted = hash << 2;
            let first = shifted.wrapping_add(self.gear_ls[x]);
            let both = self.gear_ls[x].wrapping_add(self.gear[y]);
            hash = shifted.wrapping_add(both);
            // One branch per pair: cut points are rare.
            if (first & mask_ls) == 0 || (hash & mask) == 0 {
                return (Some(if (first & mask_ls) == 0 { a } else { a + 1 }), hash);
            }
        }
        (None, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// Every cut of `data`'s windows starting at many offsets and with many
    /// lengths equals the `fastcdc` crate's.
    fn check(data: &[u8], min: usize, avg: usize, max: usize) {
        let cutter = GearCutter::new(min, avg, max);
        let (mask_s, mask_l) = select_masks(avg, NORMALIZATION);
        let mut lens: Vec<usize> = vec![
            0,
            1,
            min - 1,
            min,
            min + 1,
            min + 2,
            avg - 1,
            avg,
            avg + 1,
            max - 1,
            max,
            max + 1,
            data.len(),
        ];
        lens.extend((0..40).map(|i| (i * 7919 + 13) % (max + 50)));
        for start in (0..data.len()).step_by(data.len() / 23 + 1) {
            for &len in &lens {
                let window = &data[start..(start + len).min(data.len())];
                let (_, expected) = fastcdc::v2020::cut(
                    window,
                    min,
                    avg,
                    max,
                    mask_s,
                    mask_l,
                    mask_s << 1,
                    mask_l << 1,
                );
                assert_eq!(
                    cutter.cut(window),
                    expected,
                    "start {start} len {} min {min} avg {avg} max {max}",
                    window.len()
                );
            }
        }
    }

    #[test]
    fn cuts_where_the_fastcdc_crate_cuts() {
        let data = random(3, 1 << 20);
        for (min, avg, max) in [
            (64, 256, 1024),
            (1024, 4096, 16384),
            (2048, 8192, 65536),
            (4096, 4096, 4096),
            (16384, 65536, 262144),
        ] {
            check(&data, min, avg, max);
        }
        // Low-entropy input: long runs hit the maximum, text hits odd cuts.
        let mut mixed = vec![0u8; 300_000];
        mixed.extend(b"the quick brown fox jumps over the lazy dog ".repeat(6000));
        mixed.extend(random(4, 100_000));
        check(&mixed, 1024, 4096, 16384);
        check(&mixed, 64, 256, 1024);
    }
}
