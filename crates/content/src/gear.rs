//! FastCDC 2020 cut-point search, bit-for-bit the cut points of
//! `fastcdc::v2020::cut` with the default gear table and normalization
//! level 2 (see [`NORMALIZATION`]) (the `fastcdc` crate stays the reference: the tests below compare
//! the two on many windows), written for a shorter dependency chain.
//!
//! The gear table is FastCDC's public one for unencrypted codecs (stored
//! chunk ids and dedup depend on those cut points) and a table derived from
//! the workspace key for encrypted ones ([`GearTable::keyed`]): with the
//! public table anyone can chunk a file they know and match its sequence of
//! chunk lengths against a workspace (confirmation of file). Keying alone
//! does not hide much while lengths are exact (Truong et al., CCS 2025,
//! recover keyed-chunker secrets from them), which is why encrypted chunks
//! also pad their bodies (see `format`).
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
//! times the single chain's speed (four lanes; eight were no faster). The
//! lanes are then bound by instruction count, not latency: the block loop
//! (`block_hash`) is kept to about four instructions per byte, which took
//! the search from ~0.33 to ~0.2 CPU-s per GB of file (`bench`, `perf`).

use std::borrow::Cow;

use fastcdc::v2020::{Normalization, get_gear_with_seed, select_masks};
use zeroize::Zeroize;

use crate::keys::Secret32;

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

/// Where [`GearCutter::cut_resumable`] stopped in a chunk's input: the
/// next position to test and the hash there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ScanState {
    started: bool,
    pos: usize,
    hash: u64,
}

/// A FastCDC 2020 gear table and its copy shifted left by one bit, which
/// the two-bytes-at-a-time search adds for the first byte of each pair
/// (the `fastcdc` crate's `GEAR_LS` is `GEAR << 1` entry by entry).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct GearTable {
    gear: [u64; 256],
    gear_ls: [u64; 256],
}

impl GearTable {
    /// FastCDC's public table (`get_gear_with_seed(0)`): the cut points of
    /// every unencrypted chunk ever stored.
    pub fn public() -> GearTable {
        let (gear, gear_ls) = get_gear_with_seed(0);
        GearTable {
            gear: table(gear),
            gear_ls: table(gear_ls),
        }
    }

    /// The table of an encrypted workspace: 256 little-endian u64s from
    /// the BLAKE3 output stream (XOF) keyed with `key`, the workspace's
    /// gear subkey. Not `get_gear_with_seed`: its seed is one 64-bit XOR
    /// over the public table, which leaves every difference between
    /// entries public. Built once per codec.
    pub fn keyed(key: &Secret32) -> GearTable {
        let mut bytes = [0u8; 256 * 8];
        blake3::Hasher::new_keyed(&key.0)
            .update(b"FastCDC 2020 gear table")
            .finalize_xof()
            .fill(&mut bytes);
        let mut gear = [0u64; 256];
        for (entry, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            *entry = u64::from_le_bytes(b.try_into().expect("chunks_exact gives 8 bytes"));
        }
        bytes.zeroize();
        let gear_ls = gear.map(|g| g << 1);
        GearTable { gear, gear_ls }
    }
}

impl Drop for GearTable {
    fn drop(&mut self) {
        // A keyed table is as secret as the key it came from.
        self.gear.zeroize();
        self.gear_ls.zeroize();
    }
}

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

impl Drop for GearCutter {
    fn drop(&mut self) {
        // Its copy of a keyed table is as secret as the table.
        self.gear.zeroize();
        self.gear_ls.zeroize();
    }
}

impl GearCutter {
    /// A cutter with `table` for sizes already validated by
    /// `ChunkerConfig::validate` (even, within FastCDC's ranges). Copies
    /// the table (4 KiB) so that the search reads it without indirection.
    pub fn new(min: usize, avg: usize, max: usize, table: &GearTable) -> GearCutter {
        let (mask_s, mask_l) = select_masks(avg, NORMALIZATION);
        GearCutter {
            min,
            avg,
            max,
            mask_s,
            mask_l,
            gear: table.gear,
            gear_ls: table.gear_ls,
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

    /// [`Self::cut`] of an input that arrives in pieces: `source` is all of
    /// the chunk's input seen so far, `complete` says whether that is all
    /// of it (end of input), and `state` (fresh for each chunk) carries
    /// the scan from one call to the next, so no byte is scanned twice.
    /// Returns the cut once the bytes in view decide it: a cut point (the
    /// scan stops at the first one, with the same ranges, masks and hash
    /// as [`Self::cut`]), or `max` bytes or the end of input in view.
    /// `None` means more input is needed.
    pub fn cut_resumable(
        &self,
        source: &[u8],
        complete: bool,
        state: &mut ScanState,
    ) -> Option<usize> {
        let len = source.len();
        if len < self.avg {
            // A short last chunk moves `cut`'s ranges: decide it afresh
            // (at most `avg` bytes, once per file).
            return complete.then(|| self.cut(source));
        }
        let remaining = len.min(self.max);
        let complete = complete || len >= self.max;
        let src = &source[..remaining];
        let to = remaining & !1;
        let small_end = self.avg & !1;
        if !state.started {
            *state = ScanState {
                started: true,
                pos: self.min,
                hash: 0,
            };
        }
        if state.pos < small_end {
            let (cut, hash) = self.scan_lanes(src, state.pos, small_end, state.hash, self.mask_s);
            if cut.is_some() {
                return cut;
            }
            // `cut` starts the large-mask range here, with this hash.
            state.pos = (self.avg / 2).max(self.min / 2) * 2;
            state.hash = hash;
        }
        let (cut, hash) = self.scan_lanes(src, state.pos, to, state.hash, self.mask_l);
        if cut.is_some() {
            return cut;
        }
        state.pos = state.pos.max(to);
        state.hash = hash;
        complete.then_some(remaining)
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
            let block = src[pos..pos + block_len]
                .try_into()
                .expect("the slice is block_len bytes long");
            match self.block_hash(block, hash, mask) {
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
    ///
    /// Written for the instruction count, which bounds it (the lanes hide
    /// the hash chains' latency): per two bytes and lane, two byte loads,
    /// one shift, two adds that take their table value straight from
    /// memory, and two test-and-branch pairs, which fuse; a fixed-size
    /// block so that no index needs a bounds check. Not inlined: on its own
    /// the function has registers for both masks (inlined, one was kept on
    /// the stack and the other recomputed at every test).
    #[inline(never)]
    fn block_hash(&self, block: &[u8; LANES * SEGMENT], hash: u64, mask: u64) -> Option<u64> {
        let mask_ls = mask << 1;
        let (gear, gear_ls) = (&self.gear, &self.gear_ls);
        let mut lanes = [0u64; LANES];
        lanes[0] = hash;
        // Lane `l` starts from zero `FORGET` bytes before its segment: by
        // the segment's first byte it holds the true hash.
        for i in 0..FORGET / 2 {
            for (l, lane) in lanes.iter_mut().enumerate().skip(1) {
                let at = l * SEGMENT - FORGET + 2 * i;
                *lane = self.step(*lane, block[at], block[at + 1]).1;
            }
        }
        for i in 0..SEGMENT / 2 {
            for (l, lane) in lanes.iter_mut().enumerate() {
                let at = l * SEGMENT + 2 * i;
                let first = (*lane << 2).wrapping_add(gear_ls[block[at] as usize]);
                // Cut points are rare: a branch per test, predicted.
                if first & mask_ls == 0 {
                    return None;
                }
                *lane = first.wrapping_add(gear[block[at + 1] as usize]);
                if *lane & mask == 0 {
                    return None;
                }
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
        let cutter = GearCutter::new(min, avg, max, &GearTable::public());
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

    /// `keyed` builds the shifted table the way the public one is built,
    /// and a table depends on its key and on nothing else.
    #[test]
    fn keyed_tables_are_shifted_like_the_public_one_and_follow_the_key() {
        let public = GearTable::public();
        for (g, ls) in public.gear.iter().zip(&public.gear_ls) {
            assert_eq!(*ls, g << 1);
        }
        let a = GearTable::keyed(&Secret32([1; 32]));
        let b = GearTable::keyed(&Secret32([2; 32]));
        assert!(a == GearTable::keyed(&Secret32([1; 32])));
        for (g, ls) in a.gear.iter().zip(&a.gear_ls) {
            assert_eq!(*ls, g << 1);
        }
        let same = |x: &GearTable, y: &GearTable| {
            x.gear.iter().zip(&y.gear).filter(|(p, q)| p == q).count()
        };
        assert_eq!(same(&a, &b), 0);
        assert_eq!(same(&a, &public), 0);
        // Entries look random: about half the bits set overall.
        let ones: u32 = a.gear.iter().map(|g| g.count_ones()).sum();
        assert!((7400..=9000).contains(&ones), "{ones} of 16384 bits set");
    }

    /// The lanes give the single chain's answer whatever the range, the
    /// starting hash, the mask and the table: masks from every few bytes to
    /// never put cut points in every lane, at block edges, and nowhere.
    #[test]
    fn lanes_find_the_single_chains_cut_points() {
        for table in [GearTable::public(), GearTable::keyed(&Secret32([3; 32]))] {
            lanes_agree_with_the_single_chain(&GearCutter::new(64, 256, 1024, &table));
        }
    }

    fn lanes_agree_with_the_single_chain(cutter: &GearCutter) {
        let data = random(5, 300_000);
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
        let cutter = GearCutter::new(min, avg, max, &GearTable::public());
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

    /// Feeding a chunk's input in pieces of any sizes gives the cut of the
    /// whole input, decided as soon as the bytes in view decide it.
    #[test]
    fn a_cut_resumed_over_growing_input_is_the_cut_of_the_whole_input() {
        let mut data = random(7, 200_000);
        data.extend(vec![0u8; 40_000]);
        data.extend(random(8, 60_000));
        data.extend(b"the quick brown fox jumps over the lazy dog ".repeat(500));
        let (min, avg, max) = (1024, 4096, 16384);
        let cutter = GearCutter::new(min, avg, max, &GearTable::public());
        let mut early = 0;
        for (n, start) in (0..data.len()).step_by(997).enumerate() {
            let input = &data[start..];
            let whole = cutter.cut(input);
            for step in [1, 2, 7, 100, 1000, 4096, 5000, max] {
                let step = step + n % 3;
                let mut state = ScanState::default();
                let mut len = 0;
                let cut = loop {
                    len = (len + step).min(input.len());
                    let complete = len == input.len();
                    if let Some(cut) = cutter.cut_resumable(&input[..len], complete, &mut state) {
                        break cut;
                    }
                    assert!(!complete, "complete input must decide");
                };
                assert_eq!(cut, whole, "start {start} step {step}");
                // Decided as soon as it could be: never with `max` in view
                // when an earlier cut point was already in view.
                assert!(cut < len || len <= max, "start {start} step {step}");
                early += usize::from(len < max.min(input.len()));
            }
        }
        // Not vacuous: most cuts are decided before `max` bytes are in view.
        assert!(early > 1000, "only {early} cuts decided early");
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
