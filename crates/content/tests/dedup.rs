//! The point of content-defined chunking: one inserted byte changes at most
//! two chunks, where fixed 512 KiB chunks re-send everything after it.

mod common;

use std::collections::HashSet;
use std::io::Cursor;

use stacksync_content::{ChunkCodec, FileEncoder, PipelineConfig};
use stacksync_proto::ChunkRef;

fn chunk_list(data: &[u8]) -> Vec<ChunkRef> {
    let encoder = FileEncoder::new(ChunkCodec::plain(), PipelineConfig::default()).unwrap();
    encoder
        .encode(Cursor::new(data), |_| Ok::<_, ()>(()))
        .unwrap()
        .chunks
}

#[test]
fn inserting_one_byte_changes_at_most_two_chunks() {
    let old = common::random_bytes(64, 64 << 20);
    let mut new = old.clone();
    new.insert(old.len() / 2, 0x42);

    let before: HashSet<_> = chunk_list(&old).into_iter().map(|c| c.id).collect();
    let after = chunk_list(&new);
    let changed: Vec<&ChunkRef> = after.iter().filter(|c| !before.contains(&c.id)).collect();
    let resent: u64 = changed.iter().map(|c| u64::from(c.size)).sum();
    assert!(changed.len() <= 2, "{} chunks changed", changed.len());

    // The original client's fixed 512 KiB pieces, for comparison.
    let fixed =
        |d: &[u8]| -> Vec<blake3::Hash> { d.chunks(512 * 1024).map(blake3::hash).collect() };
    let fixed_before: HashSet<_> = fixed(&old).into_iter().collect();
    let fixed_resent: u64 = new
        .chunks(512 * 1024)
        .filter(|c| !fixed_before.contains(&blake3::hash(c)))
        .map(|c| c.len() as u64)
        .sum();
    eprintln!(
        "1-byte insert into 64 MiB: CDC re-sends {} chunks / {resent} bytes, fixed 512 KiB re-sends {fixed_resent} bytes",
        changed.len()
    );
    assert!(
        fixed_resent > (new.len() as u64) * 4 / 10,
        "fixed chunking should re-send about half"
    );
    assert!(
        resent * 4 < fixed_resent,
        "CDC should re-send far less than fixed chunks"
    );
}
