//! Padmé padding: the sizes the server may see.
//!
//! From "Reducing Metadata Leakage from Encrypted Files and Communication
//! with PURBs" (Nikitin et al., PETS 2019). A length `L` is rounded up so
//! that only its top `floor(log2(floor(log2 L))) + 1` bits may be non-zero:
//! the padded length leaks O(log log L) bits about `L` instead of
//! O(log L), at most about 12 % overhead (less as `L` grows: under 6.3 %
//! from 256 bytes, 3.2 % from 64 KiB, 1.6 % from 4 GiB). Encrypted chunk bodies are padded to it
//! (see `format`); other crates pad file sizes with the same function so
//! that one bucket rule holds everywhere.

/// The Padmé bucket of `len`: the smallest length `>= len` whose low
/// `E - S` bits are zero, with `E = floor(log2 len)` and
/// `S = floor(log2 E) + 1`. Lengths below 2 are their own bucket.
///
/// Idempotent (`padme(padme(l)) == padme(l)`, so a reader can check that a
/// length is a bucket) and monotonic. Saturates at `u64::MAX` for lengths
/// within 2^57 of it, which no file or chunk reaches.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = len.ilog2(); // >= 1
    let s = e.ilog2() + 1; // <= e for every e >= 1
    let zeroed = e - s;
    let mask = (1u64 << zeroed) - 1;
    len.checked_add(mask).map_or(u64::MAX, |l| l & !mask)
}

#[cfg(test)]
mod tests {
    use super::padme;

    /// The paper's definition, written the way it is printed.
    fn reference(len: u64) -> u64 {
        if len < 2 {
            return len;
        }
        let e = len.ilog2();
        let s = e.ilog2() + 1;
        let last_bits = e - s;
        let bit_mask = (1u64 << last_bits) - 1;
        (len + bit_mask) & !bit_mask
    }

    #[test]
    fn small_lengths_and_known_buckets() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (7, 7),
            (8, 8),
            (9, 10),
            (15, 16),
            (17, 18),
            (100, 104),
            (1000, 1024),
            (1025, 1088),
            ((1 << 20) + 1, (1 << 20) + (1 << 15)),
            ((16 << 20) + 8, (16 << 20) + (1 << 19)),
        ];
        for (len, bucket) in cases {
            assert_eq!(padme(len), bucket, "padme({len})");
        }
    }

    #[test]
    fn matches_the_papers_formula_is_idempotent_and_bounded() {
        let mut lens: Vec<u64> = (0..5000).collect();
        for shift in 2..52 {
            let p = 1u64 << shift;
            lens.extend([p - 1, p, p + 1, p + p / 3, 2 * p - 1]);
        }
        for len in lens {
            let p = padme(len);
            assert_eq!(p, reference(len), "len {len}");
            assert!(p >= len);
            assert_eq!(padme(p), p, "bucket of a bucket, len {len}");
            // At most ~12 % (exactly: 1/2^(S-1) of 2^E), and monotonic.
            assert!((p - len) * 8 <= len.max(8), "overhead of {len}: {p}");
            assert!(padme(len + 1) >= p);
        }
        assert_eq!(padme(u64::MAX), u64::MAX);
        assert_eq!(padme(u64::MAX - 5), u64::MAX);
    }
}
