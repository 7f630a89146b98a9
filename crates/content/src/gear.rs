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
//!
//! Even so, one hash chain is bound by the latency of its `shl`/`add` and
//! leaves most of a core idle. The gear hash forgets: each byte shifts it
//! left by one, so after 64 bytes nothing of an earlier state is left and
//! the hash at any position is a function of the 64 bytes before it. A long
//! scan therefore runs [`LANES`] chains side by side over neighbouring
//! [`SEGMENT`]s, each lane started 64 bytes early from zero, which gives
//! exactly the hashes the single chain would have at every tested position.
//! The lanes only answer "no cut point in this block"; a block where any
//! lane sees one is rescanned by the single chain, which decides where the
//! cut is, so cut points cannot differ. Measured on random data: about 1.8
//! times the single chain's speed (four lanes; eight were no faster, being
//! limited by table loads).

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

/// Hash chains run side by side in a long scan.
const LANES: usize = 4;
/// Bytes each lane covers per block. Small, because a block with a cut
/// point is scanned again by one chain (at most `LANES * SEGMENT` bytes per
/// cut), and large against [`FORGET`], the start-up each lane repeats.
const SEGMENT: usize = 4096;
/// Bytes after which the gear hash no longer depends on what came before.
const FORGET: usize = 64;

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
        let (cut, hash) = self.scan_lanes(src, self.min, center & !1, 0, self.mask_s);
        if let Some(cut) = cut {
            return cut;
        }
        let start = (center / 2).max(self.min / 2) * 2;
        let (cut, _) = self.scan_lanes(src, start, remaining & !1, hash, self.mask_l);
        cut.unwrap_or(remaining)
    }

    /// The first chunk's length if `source`, a prefix of the input shorter
    /// than `max`, already decides it: a cut point found before its end is
    /// where [`Self::cut`] would cut with the whole input in view, because
    /// the scan stops at the first cut point and, with at least `avg`
    /// bytes in view, uses the same ranges and masks either way. `None`
    /// means more input is needed (no cut point yet, or too short to tell).
    pub fn cut_prefix(&self, source: &[u8]) -> Option<usize> {
        if source.len() < self.avg || source.len() >= self.max {
            return None;
        }
        // `cut` returns the length it was given when it found no cut point.
        let cut = self.cut(source);
        (cut < source.len()).then_some(cut)
    }

    /// [`Self::scan`], with the same result, over whole blocks of
    /// [`LANES`] segments at a time while they fit (see the module doc).
    fn scan_lanes(
        &self,
        src: &[u8],
        from: usize,
        to: usize,
        hash: u64,
        mask: u64,
    ) -> (Option<usize>, u64) {
        let block_len = LANES * SEGMENT;
        let (mut pos, mut hash) = (from, hash);
        while to.saturating_sub(pos) >= block_len {
            match self.block_hash(&src[pos..pos + block_len], hash, mask) {
                Some(end_hash) => hash = end_hash,
                // A cut point somewhere in this block: the single chain
                // finds the first one.
                None => return self.scan(src, pos, to, hash, mask),
            }
            pos += block_len;
        }
        self.scan(src, pos, to, hash, mask)
    }

    /// The hash after `block` (`LANES * SEGMENT` bytes) given `hash` before
    /// it, or `None` if some position in it is a cut point for `mask`.
    #[inline(always)]
    fn block_hash(&self, block: &[u8], hash: u64, mask: u64) -> Option<u64> {
        let mask_ls = mask << 1;
        let mut lanes = [0u64; LANES];
        lanes[0] = hash;
        // Lane `l` starts from zero `FORGET` bytes before its segment: by
        // the segment's first byte it holds the true hash.
        for i in (0..FORGET).step_by(2) {
            for (l, lane) in lanes.iter_mut().enumerate().skip(1) {
                let at = l * SEGMENT - FORGET + i;
                *lane = self.step(*lane, block[at], block[at + 1]).1;
            }
        }
        for i in (0..SEGMENT).step_by(2) {
            let mut cut = false;
            for (l, lane) in lanes.iter_mut().enumerate() {
                let at = l * SEGMENT + i;
                let (first, both) = self.step(*lane, block[at], block[at + 1]);
                *lane = both;
                // `|`, not `||`: one branch per step of all lanes.
                cut |= ((first & mask_ls) == 0) | ((both & mask) == 0);
            }
            if cut {
                return None;
            }
        }
        Some(lanes[LANES - 1])
    }

    /// One two-byte step from `hash`: the hash after the first byte
    /// (shifted left by one, as tested against `mask << 1`) and after both.
    #[inline(always)]
    fn step(&self, hash: u64, x: u8, y: u8) -> (u64, u64) {
        let shifted = hash << 2;
        let first = shifted.wrapping_add(self.gear_ls[x as usize]);
        let both = self.gear_ls[x as usize].wrapping_add(self.gear[y as usize]);
        (first, shifted.wrapping_add(both))
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
            let first;
            (first, hash) = self.step(hash, pair[0], pair[1]);
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

    /// The lanes give the single chain's answer whatever the range, the
    /// starting hash and the mask: masks from every few bytes to never put
    /// cut points in every lane, at block edges, and nowhere.
    #[test]
    fn lanes_find_the_single_chains_cut_points() {
        let data = random(5, 300_000);
        let cutter = GearCutter::new(64, 256, 1024);
        let masks = [
            0,
            fastcdc::v2020::MASKS[8],
            fastcdc::v2020::MASKS[12],
            fastcdc::v2020::MASKS[14],
            fastcdc::v2020::MASKS[16],
            fastcdc::v2020::MASKS[20],
            u64::MAX,
        ];
        let block = LANES * SEGMENT;
        let spans = [
            0,
            2,
            FORGET,
            block - 2,
            block,
            block + 2,
            3 * block + 10,
            270_000,
        ];
        for mask in masks {
            for from in [0, 2, 64, SEGMENT - 2, 1000] {
                for &span in &spans {
                    let to = (from + span).min(data.len()) & !1;
                    for hash in [0, 0x9e37_79b9_7f4a_7c15] {
                        assert_eq!(
                            cutter.scan_lanes(&data, from, to, hash, mask),
                            cutter.scan(&data, from, to, hash, mask),
                            "mask {mask:x} from {from} to {to} hash {hash:x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn default_sized_cuts_are_where_the_fastcdc_crate_cuts() {
        let (min, avg, max) = (256 << 10, 1 << 20, 4 << 20);
        let mut data = random(6, 6 << 20);
        data.extend(b"the quick brown fox jumps over the lazy dog ".repeat(50_000));
        let cutter = GearCutter::new(min, avg, max);
        let (mask_s, mask_l) = select_masks(avg, NORMALIZATION);
        let mut start = 0;
        while start < data.len() {
            let window = &data[start..];
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
            assert_eq!(cutter.cut(window), expected, "start {start}");
            start += expected.max(1);
        }
    }

    /// A cut decided from a prefix is the cut of the whole input, for
    /// every prefix length, on data where cut points are common or rare.
    #[test]
    fn a_cut_found_in_a_prefix_is_the_cut_of_the_whole_input() {
        let mut data = random(7, 200_000);
        data.extend(vec![0u8; 40_000]);
        data.extend(random(8, 60_000));
        let (min, avg, max) = (1024, 4096, 16384);
        let cutter = GearCutter::new(min, avg, max);
        let mut decided = 0;
        for start in (0..data.len() - max).step_by(997) {
            let whole = cutter.cut(&data[start..]);
            for len in (0..max + 2)
                .step_by(7)
                .chain([avg - 1, avg, avg + 1, max - 1])
            {
                if let Some(cut) = cutter.cut_prefix(&data[start..start + len]) {
                    assert_eq!(cut, whole, "start {start} prefix {len}");
                    decided += 1;
                }
            }
        }
        // Not vacuous: most prefixes past the first cut point decide it.
        assert!(decided > 10_000, "only {decided} prefixes decided a cut");
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
