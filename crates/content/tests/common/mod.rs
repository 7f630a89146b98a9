//! Deterministic test data.
#![allow(dead_code)]

/// `len` pseudo-random (incompressible) bytes from `seed` (xorshift64*).
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `len` bytes of text-like, compressible data.
pub fn text_bytes(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "sync ",
        "chunk ",
        "workspace ",
        "the ",
        "file ",
        "of ",
        "a ",
        "version ",
        "commit ",
        "server ",
        "client ",
        "and ",
        "42 ",
        "device ",
        "share\n",
        "folder ",
        "to ",
        "is ",
        "swift ",
        "metadata\n",
    ];
    let r = random_bytes(seed, len / 3 + 16);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(WORDS[r[i % r.len()] as usize % WORDS.len()].as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}
