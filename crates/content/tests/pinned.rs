//! Stored values pinned: cut points, chunk ids, whole-file hashes and the
//! bytes of raw-stored chunk objects for fixed inputs, as every earlier
//! build computed them. Chunk ids name objects already in the blob store
//! and file hashes are in the metadata store, so a faster pipeline must
//! reproduce them exactly; a change here is a change of stored format, not
//! a test to update. The `z` marks (compressed or not) pin the compression
//! decision too: decoders read it from each chunk's header, so it may
//! change without breaking stored data, but only on purpose.
//!
//! Encrypted rows were re-pinned once, when encrypted workspaces moved to
//! cut points keyed by the workspace key (format version 2; no encrypted
//! chunk had been synced before): their file hashes did not change, their
//! cut points and so their chunk ids did. Their file hashes were re-pinned
//! once, still before any encrypted file was synced, when whole-file hashes
//! became unkeyed in every workspace (an encrypted workspace's version
//! record carries the hash sealed). Unencrypted rows never change.

mod common;

use std::io::Cursor;

use stacksync_content::{
    ChunkCodec, ChunkerConfig, EncodedChunk, FileEncoder, PipelineConfig, WorkspaceKey,
};

const SMALL: ChunkerConfig = ChunkerConfig {
    min: 1024,
    avg: 4096,
    max: 16384,
};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line for the whole file: its hash, then per chunk its offset, size,
/// the first 8 bytes of its id and whether it was compressed; raw-stored
/// unencrypted chunk objects (deterministic: no nonce) add the first 8
/// bytes of BLAKE3 of the object.
fn describe(codec: &ChunkCodec, config: PipelineConfig, data: &[u8]) -> String {
    let mut chunks: Vec<EncodedChunk> = Vec::new();
    let summary = FileEncoder::new(codec.clone(), config)
        .unwrap()
        .encode(Cursor::new(data), |c| {
            chunks.push(c);
            Ok::<_, ()>(())
        })
        .unwrap();
    assert_eq!(summary.size, data.len() as u64);
    let mut out = format!("file {}", hex(&summary.content_hash.0));
    for (r, c) in summary.chunks.iter().zip(&chunks) {
        assert_eq!((r.id, r.size), (c.id, c.plaintext_len));
        out.push_str(&format!(
            "\n{} +{} {}{}",
            c.offset,
            c.plaintext_len,
            hex(&c.id.0[..8]),
            if c.compressed { " z" } else { "" }
        ));
        if !codec.is_encrypted() && !c.compressed {
            out.push_str(&format!(
                " obj {}",
                hex(&blake3::hash(&c.bytes).as_bytes()[..8])
            ));
        }
    }
    out
}

fn check(codec: &ChunkCodec, config: PipelineConfig, data: &[u8], expected: &str) {
    let got = describe(codec, config, data);
    assert_eq!(got, expected.trim(), "\n--- got:\n{got}\n");
}

fn small(workers: usize) -> PipelineConfig {
    PipelineConfig {
        chunker: SMALL,
        workers,
        max_in_flight: 0,
    }
}

#[test]
fn empty_and_tiny_files() {
    check(
        &ChunkCodec::plain(),
        PipelineConfig::default(),
        &[],
        "file af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    );
    check(
        &ChunkCodec::compressed(),
        PipelineConfig::default(),
        &common::random_bytes(1, 1000),
        "file 4542151a7016ed94e0854740c1d2d63b5769e2f37bdefda92aa0149f5571965a\n\
        0 +1000 4542151a7016ed94 obj bd4f5af80a1fe2c9",
    );
    let key = WorkspaceKey::from_bytes([5; 32]);
    check(
        &ChunkCodec::encrypted(&key),
        PipelineConfig::default(),
        &common::text_bytes(2, 1000),
        "file fa32e7607521ee7c135325c3f9fbf44fe78f100eb25b32facae9e28c04dc024f\n\
        0 +1000 d5a8044b7fdc0c5f z",
    );
}

#[test]
fn small_chunks_of_random_and_text() {
    let mut data = common::random_bytes(3, 40_000);
    data.extend(common::text_bytes(4, 30_000));
    check(
        &ChunkCodec::compressed(),
        small(2),
        &data,
        "file 649568ed985adc52a225ee21d35af551c0b77ffbb81a1e466875563b821d88dd\n\
        0 +4477 a4adce9c4c1ff3c2 obj 94f88fbe6559dab9\n\
        4477 +4961 68781b505cbef278 obj 27459ca9da4b1630\n\
        9438 +2557 3ec14383fa7e41d2 obj 5f2e0f73eb034867\n\
        11995 +2559 2e90762185beee27 obj d57f44aef89ca7a3\n\
        14554 +4399 a7442f03fcf2faac obj 7b15a3db85cd4500\n\
        18953 +4813 3e8f95f95ed57d70 obj 4c5ed974a535afad\n\
        23766 +6203 10027deb1e531f37 obj be0e027687a07bbc\n\
        29969 +5887 3cf2dccd0af936ac obj d3ee8bd1128a9772\n\
        35856 +4453 462cb32932a54d13 obj e474a0084f34b010\n\
        40309 +4871 7dc3d7259611cbca z\n\
        45180 +7155 4b9ea42f44f22deb z\n\
        52335 +5049 7c194a3b99564b95 z\n\
        57384 +4986 561675ad2bc80322 z\n\
        62370 +4322 032d2dc06b22e1d2 z\n\
        66692 +3308 4309c416ed355e01 z",
    );
    let key = WorkspaceKey::from_bytes([6; 32]);
    check(
        &ChunkCodec::encrypted(&key),
        small(1),
        &data,
        "file 649568ed985adc52a225ee21d35af551c0b77ffbb81a1e466875563b821d88dd\n\
        0 +4308 8d0027ef3c0a588d\n\
        4308 +4776 3f7aa7be3fde0eb8\n\
        9084 +4574 eec1458a69101236\n\
        13658 +2211 5c0a0ed682090a80\n\
        15869 +4503 b4fddf4968f1fdbd\n\
        20372 +4986 fd937209d649df8d\n\
        25358 +5043 a099272cb2828716\n\
        30401 +1269 c8bb913ef5e2114b\n\
        31670 +4145 bd744e3ffce7240d\n\
        35815 +4486 d010acaf8b683acf\n\
        40301 +4300 a8b1bc968afdac9b z\n\
        44601 +5284 91823fb4942fd593 z\n\
        49885 +4497 a4e47e7e473ecbba z\n\
        54382 +1506 f1cc05ed209c6ec1 z\n\
        55888 +5350 ab7459d7c8677962 z\n\
        61238 +5696 f0cdadf4a421025c z\n\
        66934 +3066 2ea5613e4eed07c1 z",
    );
}

#[test]
fn default_chunks_of_a_multi_mib_file() {
    // Over one maximum chunk: the threaded pipeline; the larger file
    // takes the reader through several read windows.
    let data = common::random_bytes(7, (21 << 20) + 12_345);
    check(
        &ChunkCodec::compressed(),
        PipelineConfig::default(),
        &data[..(9 << 20) + 3],
        "file 3555ef1be4bacb9eec324dd6b989c69d71e90887f8e4dce8ce7e8631e616ea62\n\
        0 +1074318 f7968e9e4382e07e obj 0044b0c458703f41\n\
        1074318 +1116690 f6b1a1b4ad7dad1f obj 1bed05f73b92cd28\n\
        2191008 +1076026 afadcdedb0f14d8c obj 8812a69374bbf807\n\
        3267034 +1542258 cc134b71ce919a7e obj a2312ae8a37b1d98\n\
        4809292 +918011 521a7c309e9e551b obj 71ec04bdf3e929f7\n\
        5727303 +1157529 057ba58541ff8d11 obj 2a2e8b856726b409\n\
        6884832 +961915 6b4e750400188a06 obj cd86a351a256ce78\n\
        7846747 +1165312 0f77de8bf77e092c obj 7afb6f396f1b9420\n\
        9012059 +425128 078029c69aad69c2 obj 4ac33be5aabae6df",
    );
    let key = WorkspaceKey::from_bytes([8; 32]);
    check(
        &ChunkCodec::encrypted(&key),
        PipelineConfig::default(),
        &data,
        "file 721c9510aef4dd318d10315321a1b166687013e20d115bfada82dd7e9d9035b9\n\
        0 +418112 dd3edb6122943f8b\n\
        418112 +1170382 72ecfbb61df21dac\n\
        1588494 +1266967 1bc5abc80b212259\n\
        2855461 +1159648 6b7dd8a139bd2582\n\
        4015109 +1179898 db449c6a96833062\n\
        5195007 +1325121 e863f24300d67f6a\n\
        6520128 +1255445 d067c30e7f806e12\n\
        7775573 +1612804 5e9742d9fc13b3e4\n\
        9388377 +2310085 dd74ec2fe73d7d77\n\
        11698462 +956707 7b769bd5a4cc89a8\n\
        12655169 +1084947 0cf8169473a6b3c7\n\
        13740116 +1780060 0ba874cce277d879\n\
        15520176 +1068637 958cdfe75a561673\n\
        16588813 +1486061 d4c7b5af517364e7\n\
        18074874 +1285656 aa3b6b0b58ff1f14\n\
        19360530 +308693 4e912ce6ce20f400\n\
        19669223 +1425413 45b281fb754e7027\n\
        21094636 +937805 fd7ba10dbf49c8ed",
    );
}

#[test]
fn default_chunks_of_text_then_random() {
    // Large compressible chunks are judged by a sample before compression.
    let mut data = common::text_bytes(9, 4 << 20);
    data.extend(common::random_bytes(10, 2 << 20));
    check(
        &ChunkCodec::compressed(),
        PipelineConfig::default(),
        &data,
        "file 2091aa2970ec5e135de7559b3eb2dd0affc30c0442a4772679786e98df50b8c6\n\
        0 +1298432 ec8619aca9f562d4 z\n\
        1298432 +1085112 0e9c2e24130ea0cb z\n\
        2383544 +267922 4a68274dd5e4e7e6 z\n\
        2651466 +437892 596c16ebfbb45283 z\n\
        3089358 +600096 e949d8682c2fb0b7 z\n\
        3689454 +271232 9b78522a206c2cee z\n\
        3960686 +1392480 4c239a8a1d38b3e7 z\n\
        5353166 +938290 874a54799bc50ce9 obj ec435c0d311aebb5",
    );
}
