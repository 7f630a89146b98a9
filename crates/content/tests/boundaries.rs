//! Where files are cut. Unencrypted codecs cut with FastCDC's public gear
//! table, exactly as every earlier build did (stored chunk ids and dedup
//! depend on it); encrypted codecs cut with a gear table derived from the
//! workspace key, so that a server cannot match a known file's chunk
//! sequence (confirmation of file).

mod common;

use std::io::Cursor;

use stacksync_content::{
    Chunk, ChunkCodec, ChunkerConfig, ContentError, FileEncoder, PipelineConfig, WorkspaceKey,
    chunk_reader,
};

const SMALL: ChunkerConfig = ChunkerConfig {
    min: 1024,
    avg: 4096,
    max: 16384,
};

/// Cut points (every chunk start after the first) of a chunk stream.
fn cuts_of(chunks: impl Iterator<Item = Result<Chunk, ContentError>>) -> Vec<u64> {
    chunks.map(|c| c.unwrap().offset).skip(1).collect()
}

/// Cut points of `data` as `codec`'s file encoder makes them.
fn encoder_cuts(codec: &ChunkCodec, chunker: ChunkerConfig, data: &[u8]) -> Vec<u64> {
    let config = PipelineConfig {
        chunker,
        workers: 2,
        max_in_flight: 0,
    };
    let mut offsets = Vec::new();
    FileEncoder::new(codec.clone(), config)
        .unwrap()
        .encode(Cursor::new(data), |c| {
            offsets.push(c.offset);
            Ok::<_, ()>(())
        })
        .unwrap();
    offsets.into_iter().skip(1).collect()
}

/// Computed by the build before keyed boundaries existed: unencrypted
/// cut points must never move.
const SMALL_CUTS: [u64; 41] = [
    6260, 7301, 12535, 17296, 22045, 26795, 32021, 37052, 38222, 44752, 51668, 57631, 63436, 68459,
    73000, 77350, 83684, 89437, 94544, 99116, 103851, 108918, 113089, 117296, 123505, 128650,
    132276, 136420, 142031, 147360, 150865, 153518, 159307, 164115, 168231, 173200, 177560, 182605,
    188336, 193097, 195589,
];
const DEFAULT_CUTS: [u64; 3] = [1392231, 3047461, 4729413];

#[test]
fn unencrypted_codecs_cut_where_they_always_did() {
    let data = common::random_bytes(2026, 200_000);
    let big = common::random_bytes(77, 5 << 20);
    assert_eq!(
        cuts_of(chunk_reader(Cursor::new(&data), SMALL).unwrap()),
        SMALL_CUTS
    );
    assert_eq!(
        cuts_of(chunk_reader(Cursor::new(&big), ChunkerConfig::default()).unwrap()),
        DEFAULT_CUTS
    );
    for codec in [ChunkCodec::plain(), ChunkCodec::compressed()] {
        let reader = codec.chunk_reader(Cursor::new(&data), SMALL).unwrap();
        assert_eq!(cuts_of(reader), SMALL_CUTS);
        assert_eq!(encoder_cuts(&codec, SMALL, &data), SMALL_CUTS);
        assert_eq!(
            encoder_cuts(&codec, ChunkerConfig::default(), &big),
            DEFAULT_CUTS
        );
    }
}

#[test]
fn encrypted_cut_points_follow_the_workspace_key() {
    let data = common::random_bytes(2026, 200_000);
    let cuts = |key: u8| {
        let codec = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([key; 32]));
        let from_reader = cuts_of(codec.chunk_reader(Cursor::new(&data), SMALL).unwrap());
        // The encoder cuts exactly where the codec's reader does.
        assert_eq!(encoder_cuts(&codec, SMALL, &data), from_reader);
        from_reader
    };
    let (a, a_again, b) = (cuts(1), cuts(1), cuts(2));
    assert_eq!(a, a_again, "same key, same cut points");
    for keyed in [&a, &b] {
        // Still FastCDC with these sizes: about 200 KB / 4 KiB chunks ...
        assert!((30..=60).contains(&keyed.len()), "{} chunks", keyed.len());
        // ... but not the public cut points, nor each other's: almost
        // none shared (a shared cut point would also need the same
        // previous one to give a same-length chunk).
        let shared = keyed.iter().filter(|c| SMALL_CUTS.contains(c)).count();
        assert!(
            shared <= 3,
            "{shared} cut points shared with the public table"
        );
    }
    let shared = a.iter().filter(|c| b.contains(c)).count();
    assert!(shared <= 3, "{shared} cut points shared between two keys");
    // The same for the default sizes, through the threaded encoder.
    let big = common::random_bytes(77, 5 << 20);
    let codec = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([1; 32]));
    let keyed = encoder_cuts(&codec, ChunkerConfig::default(), &big);
    assert!(!keyed.is_empty());
    assert!(keyed.iter().all(|c| !DEFAULT_CUTS.contains(c)), "{keyed:?}");
}

/// An edit still only changes the chunks around it with a keyed table:
/// dedup within an encrypted workspace keeps working.
#[test]
fn keyed_cut_points_still_resynchronise_after_an_edit() {
    let codec = ChunkCodec::encrypted(&WorkspaceKey::from_bytes([3; 32]));
    let data = common::random_bytes(99, 300_000);
    let mut edited = data.clone();
    edited.insert(150_000, 0x42);
    let before = cuts_of(codec.chunk_reader(Cursor::new(&data), SMALL).unwrap());
    let after = cuts_of(codec.chunk_reader(Cursor::new(&edited), SMALL).unwrap());
    let moved = |c: &u64| if *c > 150_000 { c - 1 } else { *c };
    let kept = after
        .iter()
        .map(moved)
        .filter(|c| before.contains(c))
        .count();
    assert!(kept + 3 >= before.len(), "{kept} of {} kept", before.len());
}
