//! The whole-file BLAKE3 hash, computed in parallel from pieces.
//!
//! BLAKE3 is a tree: any 64 KiB-aligned, 64 KiB-long block of the file that
//! is not the last block is a complete subtree, so pipeline workers hash the
//! blocks inside their chunks independently (`blake3::hazmat`) and the
//! collector merges the chaining values in order. The result is bit-for-bit
//! `blake3::hash` (or `keyed_hash`) of the whole file, so it is independent
//! of chunk sizes and anyone can check it with a plain BLAKE3 hasher.

use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use stacksync_proto::ContentHash;

/// Size of the blocks whose chaining values are computed independently. A
/// power-of-two multiple of BLAKE3's 1 KiB chunk, as subtrees must be;
/// 64 chunks also give the SIMD code enough lanes.
pub(crate) const HASH_BLOCK: usize = 64 * 1024;

fn hasher(key: Option<&[u8; 32]>) -> blake3::Hasher {
    match key {
        None => blake3::Hasher::new(),
        Some(k) => blake3::Hasher::new_keyed(k),
    }
}

fn mode(key: Option<&[u8; 32]>) -> Mode<'_> {
    match key {
        None => Mode::Hash,
        Some(k) => Mode::KeyedHash(k),
    }
}

/// Copies `data` to the end of `out` and computes, in the same pass, the
/// chaining values of `work`'s blocks (the `work.blocks` complete blocks at
/// the start of `work.prefix ++ data`, none of them the file's last): one
/// block at a time, so each block is hashed while it is still in cache
/// from the copy.
///
/// The chunk id is not fed here piece by piece: a BLAKE3 hasher holds back
/// the last 1 KiB of every `update` (it might be the root) and hashes it
/// alone later, without SIMD, and splits the rest into ever smaller
/// subtrees; fed 64 KiB at a time that was ~4 % of the pipeline's CPU
/// (`perf`). One `blake3::hash` over the copied chunk avoids both.
pub(crate) fn copy_and_hash(
    key: Option<&[u8; 32]>,
    work: &BlockWork,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Vec<ChainingValue> {
    let prefix = &work.prefix;
    let mut cvs = Vec::with_capacity(work.blocks);
    let mut done = 0;
    for i in 0..work.blocks {
        let (lo, hi) = (i * HASH_BLOCK, (i + 1) * HASH_BLOCK);
        let mut h = hasher(key);
        h.set_input_offset(work.start + lo as u64);
        if lo < prefix.len() {
            h.update(&prefix[lo..hi.min(prefix.len())]);
        }
        if hi > prefix.len() {
            let end = hi - prefix.len();
            let at = out.len();
            out.extend_from_slice(&data[done..end]);
            h.update(&out[at..]);
            done = end;
        }
        cvs.push(h.finalize_non_root());
    }
    out.extend_from_slice(&data[done..]);
    cvs
}

/// The block hashing a pipeline job must do for its chunk: the complete
/// blocks at the start of `prefix ++ chunk`, which begins at `start`.
pub(crate) struct BlockWork {
    pub start: u64,
    pub prefix: Vec<u8>,
    pub blocks: usize,
}

/// Decides, chunk by chunk in file order, which blocks each chunk's job
/// hashes. The last (partial or full) block seen so far is always held back
/// as the carry, because only at the end is it known whether it is the
/// file's final block, which BLAKE3 hashes differently.
#[derive(Default)]
pub(crate) struct BlockSplitter {
    carry: Vec<u8>,
    carry_start: u64,
}

impl BlockSplitter {
    /// The work for the job owning `chunk`, the next chunk of the file.
    pub fn split(&mut self, chunk: &[u8]) -> BlockWork {
        let total = self.carry.len() + chunk.len();
        if total == 0 {
            return BlockWork {
                start: self.carry_start,
                prefix: Vec::new(),
                blocks: 0,
            };
        }
        let carry_len = (total - 1) % HASH_BLOCK + 1;
        if carry_len > chunk.len() {
            // No block completes inside this chunk: keep accumulating.
            self.carry.extend_from_slice(chunk);
            return BlockWork {
                start: self.carry_start,
                prefix: Vec::new(),
                blocks: 0,
            };
        }
        let blocks = (total - carry_len) / HASH_BLOCK;
        let work = BlockWork {
            start: self.carry_start,
            prefix: std::mem::replace(&mut self.carry, chunk[chunk.len() - carry_len..].to_vec()),
            blocks,
        };
        self.carry_start += (blocks * HASH_BLOCK) as u64;
        work
    }

    /// The held-back final block, once the file has ended.
    pub fn into_tail(self) -> Vec<u8> {
        self.carry
    }
}

/// Merges block chaining values in file order, then the final block.
pub(crate) struct CvStack {
    key: Option<[u8; 32]>,
    stack: Vec<ChainingValue>,
    blocks: u64,
}

impl CvStack {
    pub fn new(key: Option<&[u8; 32]>) -> CvStack {
        CvStack {
            key: key.copied(),
            stack: Vec::new(),
            blocks: 0,
        }
    }

    /// Adds the next block's chaining value. Merging eagerly is right here
    /// because a pushed block is never the last one: the tail always follows.
    pub fn push(&mut self, mut cv: ChainingValue) {
        self.blocks += 1;
        let mut n = self.blocks;
        while n & 1 == 0 {
            let Some(left) = self.stack.pop() else { break };
            cv = merge_subtrees_non_root(&left, &cv, mode(self.key.as_ref()));
            n >>= 1;
        }
        self.stack.push(cv);
    }

    /// The file hash, given its last block (1..=HASH_BLOCK bytes, or empty
    /// for an empty file).
    pub fn finish(mut self, tail: &[u8]) -> ContentHash {
        let key = self.key;
        let mut h = hasher(key.as_ref());
        if self.stack.is_empty() {
            h.update(tail);
            return ContentHash(*h.finalize().as_bytes());
        }
        h.set_input_offset(self.blocks * HASH_BLOCK as u64);
        h.update(tail);
        let mut right = h.finalize_non_root();
        loop {
            let Some(left) = self.stack.pop() else {
                unreachable!(
                    "the stack was checked non-empty and the loop returns at its last entry"
                )
            };
            if self.stack.is_empty() {
                let root = merge_subtrees_root(&left, &right, mode(key.as_ref()));
                return ContentHash(*root.as_bytes());
            }
            right = merge_subtrees_non_root(&left, &right, mode(key.as_ref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `data` at the given cut points the way the pipeline does and
    /// checks the merged hash against plain BLAKE3.
    fn check(data: &[u8], cuts: &[usize], key: Option<&[u8; 32]>) {
        let mut stack = CvStack::new(key);
        let mut splitter = BlockSplitter::default();
        let mut bounds: Vec<usize> = cuts
            .iter()
            .copied()
            .filter(|&c| c > 0 && c < data.len())
            .collect();
        bounds.push(data.len());
        let mut from = 0;
        for &to in bounds.iter().filter(|&&b| b > 0) {
            let chunk = &data[from..to];
            from = to;
            let work = splitter.split(chunk);
            let mut copy = vec![1, 2];
            for cv in copy_and_hash(key, &work, chunk, &mut copy) {
                stack.push(cv);
            }
            assert_eq!(&copy[2..], chunk, "the copy goes after what was there");
        }
        let carry = splitter.into_tail();
        let expected = match key {
            None => blake3::hash(data),
            Some(k) => blake3::keyed_hash(k, data),
        };
        assert_eq!(
            stack.finish(&carry).0,
            *expected.as_bytes(),
            "len {} cuts {cuts:?}",
            data.len()
        );
    }

    #[test]
    fn merged_block_hashes_equal_plain_blake3() {
        let data: Vec<u8> = (0..(HASH_BLOCK * 9 + 77))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let b = HASH_BLOCK;
        for len in [
            0,
            1,
            1023,
            1024,
            b - 1,
            b,
            b + 1,
            2 * b,
            2 * b + 1,
            3 * b,
            8 * b,
            9 * b + 77,
        ] {
            for cuts in [
                vec![],
                vec![1],
                vec![b],
                vec![b - 1, b + 1, 2 * b],
                vec![100, 200, 5 * b + 3],
            ] {
                check(&data[..len], &cuts, None);
                check(&data[..len], &cuts, Some(&[7; 32]));
            }
        }
    }
}
