//! Padmé: the size padding of "Reducing Metadata Leakage from Encrypted
//! Files and Communication with PURBs" (Nikitin et al., PETS 2019).
//!
//! A length `L` is rounded up so that only its top `floor(log2 E) + 1` bits
//! remain, where `E = floor(log2 L)`: the padded size leaks O(log log L)
//! bits about `L`, and costs at most about 12% (11.1% for large sizes)
//! extra. Sizes the server sees (a file's `size` field) are `padme(total)`.

/// Pads `len` with Padmé. Lengths 0 and 1 are returned as they are (there is
/// nothing to hide below two bytes); a result that would not fit in a u64
/// saturates to `u64::MAX`, which keeps the function monotonic and `>= len`.
pub fn padme(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros()); // floor(log2 len), >= 1
    let s = (63 - u64::from(e.leading_zeros())) + 1; // floor(log2 e) + 1
    let last_bits = e - s;
    let mask = (1u64 << last_bits) - 1;
    match len.checked_add(mask) {
        Some(v) => v & !mask,
        None => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values worked by hand from the paper's Algorithm 1.
    #[test]
    fn known_values() {
        let cases = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (8, 8),
            (9, 10),
            (10, 10),
            (11, 12),
            (100, 104),
            (1000, 1024),
            (1024, 1024),
            (1025, 1088),
            (1_000_000, 1_015_808),
            (1 << 40, 1 << 40),
            ((1 << 40) + 1, (1 << 40) + (1 << 34)),
        ];
        for (len, padded) in cases {
            assert_eq!(padme(len), padded, "padme({len})");
        }
        assert_eq!(padme(u64::MAX), u64::MAX);
    }

    #[test]
    fn overhead_is_at_most_twelve_percent_over_a_sweep() {
        let mut len = 2u64;
        while len < 1 << 50 {
            let p = padme(len);
            assert!(
                p >= len && (p - len) as f64 <= 0.12 * len as f64,
                "{len} -> {p}"
            );
            len = len * 3 / 2 + 1;
        }
    }

    proptest! {
        #[test]
        fn monotonic_and_never_smaller(a in any::<u64>(), b in any::<u64>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(padme(lo) <= padme(hi));
            prop_assert!(padme(a) >= a);
            prop_assert_eq!(padme(padme(a)), padme(a));
        }
    }
}
