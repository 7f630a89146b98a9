//! The delta section: what a small edit costs to send as a zstd patch
//! against the previous version's chunk, against re-chunking the changed
//! chunk at ~8 KiB and sending only the new sub-chunks; and how fast
//! patches are made and applied.

use std::collections::HashSet;
use std::io::Cursor;

use stacksync_content::delta::{apply, encode_delta};
use stacksync_content::{ChunkCodec, ChunkerConfig, chunk_reader};

use crate::measure::{Rate, best_rate, random_data, thread_cpu_seconds};

const MIB: usize = 1 << 20;
/// A sub-chunk reference in a recipe of sub-chunks: 32-byte id, 4-byte size.
const SUB_REF: usize = 36;

/// Figures for the final JSON line.
pub struct DeltaFigures {
    overwrite: usize,
    insert: usize,
    rewrite: usize,
    sub_overwrite: usize,
    sub_insert: usize,
    sub_rewrite: usize,
    file_changed: usize,
    file_delta: usize,
    file_full: usize,
    file_sub: usize,
    encode: Rate,
    decode: Rate,
    sub: Rate,
}

impl DeltaFigures {
    /// The figures as JSON members (no braces), for the final line.
    pub fn json(&self) -> String {
        format!(
            "\"delta_overwrite_1b_bytes\":{},\"delta_insert_1b_bytes\":{},\"delta_rewrite_4k_bytes\":{},\
             \"subchunk8k_overwrite_1b_bytes\":{},\"subchunk8k_insert_1b_bytes\":{},\"subchunk8k_rewrite_4k_bytes\":{},\
             \"delta_file10m_changed_chunks\":{},\"delta_file10m_delta_bytes\":{},\"delta_file10m_full_bytes\":{},\
             \"subchunk8k_file10m_bytes\":{},\"delta_encode_mbps\":{:.0},\"delta_encode_mb_per_cpu_s\":{:.0},\
             \"delta_decode_mbps\":{:.0},\"delta_decode_mb_per_cpu_s\":{:.0},\"subchunk8k_mb_per_cpu_s\":{:.0}",
            self.overwrite,
            self.insert,
            self.rewrite,
            self.sub_overwrite,
            self.sub_insert,
            self.sub_rewrite,
            self.file_changed,
            self.file_delta,
            self.file_full,
            self.file_sub,
            self.encode.wall,
            self.encode.cpu,
            self.decode.wall,
            self.decode.cpu,
            self.sub.cpu,
        )
    }
}

/// The ~8 KiB sub-chunking the patch is compared with.
fn sub_config() -> ChunkerConfig {
    ChunkerConfig::new(2048, 8192, 65536).expect("a valid FastCDC configuration")
}

/// (offset, bytes) of each chunk of `data`.
fn chunks(data: &[u8], config: ChunkerConfig) -> Vec<(usize, Vec<u8>)> {
    chunk_reader(Cursor::new(data), config)
        .expect("config is valid")
        .map(|c| {
            let c = c.expect("in-memory reads cannot fail");
            (c.offset as usize, c.data)
        })
        .collect()
}

/// Bytes to send `target` as ~8 KiB sub-chunks when the receiver has
/// `base`'s sub-chunks: the new sub-chunks plus a recipe naming all of
/// them (uncompressed: incompressible data is the case measured).
fn sub_cost(base: &[u8], target: &[u8]) -> usize {
    let have: HashSet<blake3::Hash> = chunks(base, sub_config())
        .iter()
        .map(|(_, c)| blake3::hash(c))
        .collect();
    let subs = chunks(target, sub_config());
    let new: usize = subs
        .iter()
        .filter(|(_, c)| !have.contains(&blake3::hash(c)))
        .map(|(_, c)| c.len())
        .sum();
    new + subs.len() * SUB_REF
}

fn delta_len(codec: &ChunkCodec, base: &[u8], target: &[u8]) -> usize {
    let delta = encode_delta(codec, base, target).expect("in-memory encoding");
    // Every figure is of a delta that decodes back.
    let back = apply(codec, &delta.id, base, &delta.bytes).expect("own delta");
    assert_eq!(back, target, "delta round trip");
    delta.bytes.len()
}

/// Runs the section and prints it.
pub fn run(reps: usize) -> DeltaFigures {
    let codec = ChunkCodec::compressed();
    let base = random_data(77, MIB);
    let mut overwrite = base.clone();
    overwrite[MIB / 3] ^= 0x5a;
    let mut insert = base.clone();
    insert.insert(MIB / 2, 0x42);
    let mut rewrite = base.clone();
    rewrite[600_000..600_000 + 4096].copy_from_slice(&random_data(78, 4096));
    println!("\ndelta chunks (zstd patch-from) vs ~8 KiB sub-chunks, 1 MiB random chunk:");
    println!(
        "  {:<18} {:>12} {:>18}",
        "edit", "patch bytes", "8 KiB sub-chunks"
    );
    let mut sizes = Vec::new();
    for (name, target) in [
        ("1-byte overwrite", &overwrite),
        ("1-byte insert", &insert),
        ("4 KiB rewrite", &rewrite),
    ] {
        let (d, s) = (delta_len(&codec, &base, target), sub_cost(&base, target));
        println!("  {name:<18} {d:>12} {s:>18}");
        sizes.push((d, s));
    }
    let encode = best_rate(reps, MIB, thread_cpu_seconds, || {
        std::hint::black_box(encode_delta(&codec, &base, &rewrite).expect("in memory"));
    });
    let delta = encode_delta(&codec, &base, &rewrite).expect("in memory");
    let decode = best_rate(reps, MIB, thread_cpu_seconds, || {
        std::hint::black_box(apply(&codec, &delta.id, &base, &delta.bytes).expect("own delta"));
    });
    let sub = best_rate(reps, MIB, thread_cpu_seconds, || {
        std::hint::black_box(sub_cost(&base, &rewrite));
    });
    println!(
        "  patch: encode {:.0} MB/s ({:.0} MB/CPU-s), decode {:.0} MB/s ({:.0} MB/CPU-s); \
         sub-chunking both sides and hashing: {:.0} MB/CPU-s (MB of target chunk)",
        encode.wall, encode.cpu, decode.wall, decode.cpu, sub.cpu
    );
    let (changed, file_delta, file_full, file_sub) = shifted_file(&codec);
    DeltaFigures {
        overwrite: sizes[0].0,
        insert: sizes[1].0,
        rewrite: sizes[2].0,
        sub_overwrite: sizes[0].1,
        sub_insert: sizes[1].1,
        sub_rewrite: sizes[2].1,
        file_changed: changed,
        file_delta,
        file_full,
        file_sub,
        encode,
        decode,
        sub,
    }
}

/// A 1-byte insert in a 10 MiB file with default chunking: which chunks
/// change, and what sending them costs as full chunks, as patches against
/// the old chunk at the same offset, and as new 8 KiB sub-chunks.
/// Returns (changed chunks, patch bytes, full bytes, sub-chunk bytes).
fn shifted_file(codec: &ChunkCodec) -> (usize, usize, usize, usize) {
    let old = random_data(79, 10 * MIB);
    let mut new = old.clone();
    // Inside the chunk after the one holding the middle, so that the chunk
    // before it (its neighbour) keeps its bytes but not its place in the
    // file: every later chunk shifts by one byte.
    let at = 5 * MIB + 12_345;
    new.insert(at, 0x42);
    let config = ChunkerConfig::default();
    let (old_chunks, new_chunks) = (chunks(&old, config), chunks(&new, config));
    let cuts = |c: &[(usize, Vec<u8>)]| {
        c.iter()
            .map(|(o, d)| format!("{}", o + d.len()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("\n1-byte insert at byte {at} of a 10 MiB random file (default chunking):");
    println!("  old cut points: {}", cuts(&old_chunks));
    println!("  new cut points: {}", cuts(&new_chunks));
    let old_ids: HashSet<blake3::Hash> = old_chunks.iter().map(|(_, c)| blake3::hash(c)).collect();
    let (mut changed, mut delta, mut full, mut sub) = (0, 0, 0, 0);
    for (offset, chunk) in &new_chunks {
        if old_ids.contains(&blake3::hash(chunk)) {
            continue;
        }
        // The previous version's chunk at the same place: the old chunk
        // that held this offset.
        let (_, base) = old_chunks
            .iter()
            .rev()
            .find(|(o, _)| o <= offset)
            .expect("the first old chunk starts at 0");
        let d = delta_len(codec, base, chunk);
        let f = codec.encode(chunk).expect("in memory").bytes.len();
        let s = sub_cost(base, chunk);
        println!(
            "  changed chunk at {offset} (+{}): full {f} B, patch {d} B, 8 KiB sub-chunks {s} B",
            chunk.len()
        );
        changed += 1;
        delta += d;
        full += f;
        sub += s;
    }
    println!(
        "  {changed} of {} chunks changed: full {full} B, patches {delta} B, sub-chunks {sub} B",
        new_chunks.len()
    );
    (changed, delta, full, sub)
}
