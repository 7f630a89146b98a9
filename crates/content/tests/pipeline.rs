//! Whole files: parallel encode, decode, content hash, chunking, errors.

mod common;

use std::io::{self, Cursor, Read};

use proptest::prelude::*;
use stacksync_content::{
    ChunkCodec, ChunkerConfig, ContentError, EncodeError, EncodedChunk, FileDecoder, FileEncoder,
    FileSummary, PipelineConfig, WorkspaceKey, chunk_reader,
};

const SMALL: ChunkerConfig = ChunkerConfig {
    min: 1024,
    avg: 4096,
    max: 16384,
};

fn encode(
    codec: &ChunkCodec,
    config: PipelineConfig,
    data: &[u8],
) -> (FileSummary, Vec<EncodedChunk>) {
    let mut out = Vec::new();
    let summary = FileEncoder::new(codec.clone(), config)
        .unwrap()
        .encode(Cursor::new(data), |c| {
            out.push(c);
            Ok::<_, ()>(())
        })
        .unwrap();
    (summary, out)
}

/// Encodes, checks the summary against the data, decodes back.
fn check_round_trip(codec: &ChunkCodec, config: PipelineConfig, data: &[u8]) {
    let (summary, chunks) = encode(codec, config, data);
    assert_eq!(summary.size, data.len() as u64);
    assert_eq!(
        summary.content_hash,
        codec.content_hash(data),
        "len {}",
        data.len()
    );
    if !codec.is_encrypted() {
        assert_eq!(summary.content_hash.0, *blake3::hash(data).as_bytes());
    }
    assert_eq!(summary.chunks.len(), chunks.len());
    let mut offset = 0;
    for (r, c) in summary.chunks.iter().zip(&chunks) {
        assert_eq!((r.id, r.size, c.offset), (c.id, c.plaintext_len, offset));
        offset += u64::from(c.plaintext_len);
    }
    let mut decoder = FileDecoder::new(codec, summary.content_hash, Vec::new());
    for (r, c) in summary.chunks.iter().zip(&chunks) {
        decoder.push(r, &c.bytes).unwrap();
    }
    assert_eq!(decoder.finish().unwrap(), data);
}

#[test]
fn boundary_sizes_round_trip_for_every_codec() {
    let key = WorkspaceKey::from_bytes([4; 32]);
    let block = 64 * 1024;
    let sizes = [
        0,
        1,
        2,
        1023,
        1024,
        1025,
        16383,
        16384,
        16385,
        block - 1,
        block,
        block + 1,
        3 * block,
        300_001,
    ];
    let data = common::random_bytes(11, 300_001);
    for codec in [
        ChunkCodec::plain(),
        ChunkCodec::compressed(),
        ChunkCodec::encrypted(&key),
    ] {
        for &len in &sizes {
            for workers in [1, 3] {
                let config = PipelineConfig {
                    chunker: SMALL,
                    workers,
                    max_in_flight: 0,
                };
                check_round_trip(&codec, config, &data[..len]);
            }
        }
    }
}

#[test]
fn many_mib_with_default_chunks_round_trip() {
    let key = WorkspaceKey::generate().unwrap();
    let mut data = common::random_bytes(5, 14 << 20);
    data.extend(common::text_bytes(6, 3 << 20));
    check_round_trip(
        &ChunkCodec::encrypted(&key),
        PipelineConfig::default(),
        &data,
    );
    check_round_trip(
        &ChunkCodec::compressed(),
        PipelineConfig {
            max_in_flight: 1,
            ..Default::default()
        },
        &data,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_files_round_trip(len in 0usize..400_000, seed: u64, workers in 1usize..4, in_flight in 0usize..4) {
        let data = if seed % 2 == 0 { common::random_bytes(seed, len) } else { common::text_bytes(seed, len) };
        let key = WorkspaceKey::from_bytes([seed as u8; 32]);
        let config = PipelineConfig { chunker: SMALL, workers, max_in_flight: in_flight };
        check_round_trip(&ChunkCodec::encrypted(&key), config, &data);
    }
}

/// A reader that hands out at most 1000 bytes per call, to exercise refills.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn streaming_chunker_cuts_where_fastcdc_cuts_on_the_whole_buffer() {
    let data = common::random_bytes(21, 2 << 20);
    let expected: Vec<(usize, usize)> = fastcdc::v2020::FastCDC::with_level(
        &data,
        1024,
        4096,
        16384,
        stacksync_content::NORMALIZATION,
    )
    .map(|c| (c.offset, c.length))
    .collect();
    let got: Vec<(usize, usize)> = chunk_reader(Trickle(&data), SMALL)
        .unwrap()
        .map(|c| c.map(|c| (c.offset as usize, c.data.len())))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, expected);
    let sizes_ok = got[..got.len() - 1]
        .iter()
        .all(|&(_, l)| (1024..=16384).contains(&l));
    assert!(sizes_ok);
}

/// One encoder reuses its read windows from file to file (and its clones
/// share them): a window still holding an earlier file's bytes must never
/// leak into a later file's chunks, whatever the order of sizes.
#[test]
fn an_encoder_reused_for_many_files_gives_what_fresh_encoders_give() {
    let config = PipelineConfig {
        chunker: SMALL,
        workers: 2,
        max_in_flight: 0,
    };
    let codec = ChunkCodec::compressed();
    let reused = FileEncoder::new(codec.clone(), config).unwrap();
    let clone = reused.clone();
    let files = [
        common::random_bytes(31, 400_000),
        common::text_bytes(32, 9_000),
        common::random_bytes(33, 100_000),
        Vec::new(),
        common::text_bytes(34, 300_000),
        common::random_bytes(35, 20_000),
    ];
    for (i, data) in files.iter().enumerate() {
        let encoder = if i % 2 == 0 { &reused } else { &clone };
        let mut chunks = Vec::new();
        let summary = encoder
            .encode(Trickle(data), |c| {
                chunks.push(c);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!((summary, chunks), encode(&codec, config, data), "file {i}");
    }
}

#[test]
fn invalid_configs_are_refused() {
    for (min, avg, max) in [
        (0, 4096, 16384),
        (4096, 1024, 16384),
        (1024, 4096, 32 << 20),
        (1025, 4096, 16384),
    ] {
        assert!(
            ChunkerConfig::new(min, avg, max).is_err(),
            "{min} {avg} {max}"
        );
    }
    assert!(ChunkerConfig::new(1024, 4096, 16384).is_ok());
    assert!(ChunkerConfig::default().validate().is_ok());
}

struct FailAfter(usize);

impl Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn read_errors_and_sink_errors_stop_the_pipeline() {
    let encoder = FileEncoder::new(
        ChunkCodec::compressed(),
        PipelineConfig {
            chunker: SMALL,
            workers: 2,
            max_in_flight: 2,
        },
    )
    .unwrap();
    let err = encoder
        .encode(FailAfter(200_000), |_| Ok::<_, ()>(()))
        .unwrap_err();
    assert!(
        matches!(err, EncodeError::Content(ContentError::Read { .. })),
        "{err:?}"
    );

    let data = common::random_bytes(3, 1 << 20);
    let mut seen = 0;
    let err = encoder
        .encode(Cursor::new(&data), |_| {
            seen += 1;
            if seen == 5 {
                Err("upload refused")
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert!(matches!(err, EncodeError::Sink("upload refused")));
    assert_eq!(seen, 5);
}

#[test]
fn decoder_refuses_wrong_sizes_and_wrong_file_hash() {
    let codec = ChunkCodec::compressed();
    let data = common::text_bytes(8, 100_000);
    let (summary, chunks) = encode(
        &codec,
        PipelineConfig {
            chunker: SMALL,
            ..Default::default()
        },
        &data,
    );

    let mut lying = summary.chunks[0];
    lying.size += 1;
    let mut decoder = FileDecoder::new(&codec, summary.content_hash, Vec::new());
    assert!(matches!(
        decoder.push(&lying, &chunks[0].bytes),
        Err(ContentError::ChunkSizeMismatch { .. })
    ));

    // Every chunk valid, but one missing: only the whole-file hash notices.
    let mut decoder = FileDecoder::new(&codec, summary.content_hash, Vec::new());
    for (r, c) in summary.chunks.iter().zip(&chunks).skip(1) {
        decoder.push(r, &c.bytes).unwrap();
    }
    assert!(matches!(
        decoder.finish(),
        Err(ContentError::ContentHashMismatch { .. })
    ));
}

/// Cut points and ids from the codec's serial chunker (keyed cut points
/// when encrypted), over a reader that hands out odd-sized pieces.
fn serial_chunks(
    codec: &ChunkCodec,
    data: &[u8],
    config: ChunkerConfig,
) -> Vec<(u64, u32, [u8; 32])> {
    codec
        .chunk_reader(Trickle(data), config)
        .unwrap()
        .map(|c| {
            let c = c.unwrap();
            (c.offset, c.data.len() as u32, codec.chunk_id(&c.data).0)
        })
        .collect()
}

#[test]
fn parallel_pipeline_cuts_and_names_chunks_exactly_like_the_serial_chunker() {
    let key = WorkspaceKey::from_bytes([12; 32]);
    // Sizes past the pipeline's read window (8 MiB plus one maximum chunk)
    // exercise its refills and its switches between two shared windows;
    // the small config gives many chunks.
    let big = common::random_bytes(31, (16 << 20) + (4 << 20) + 3 * 65_536 + 17);
    let cases: [(ChunkerConfig, &[usize]); 2] = [
        (SMALL, &[0, 1, 1025, 16_384, 100_003, 3 << 20]),
        (
            ChunkerConfig::default(),
            // Up to one maximum chunk (4 MiB) a file is encoded on the
            // calling thread; one byte more takes the threaded pipeline.
            &[
                (256 << 10) + 1,
                4 << 20,
                (4 << 20) + 1,
                5 << 20,
                (16 << 20) + 12_345,
                big.len(),
            ],
        ),
    ];
    for (config, sizes) in cases {
        for &len in sizes {
            let data = &big[..len];
            for codec in [ChunkCodec::plain(), ChunkCodec::encrypted(&key)] {
                let expected = serial_chunks(&codec, data, config);
                let runs: &[(usize, usize)] = if len > 1 << 20 {
                    &[(2, 0), (3, 1)]
                } else {
                    &[(1, 1), (2, 0), (3, 2)]
                };
                for &(workers, max_in_flight) in runs {
                    let (summary, chunks) = encode(
                        &codec,
                        PipelineConfig {
                            chunker: config,
                            workers,
                            max_in_flight,
                        },
                        data,
                    );
                    let got: Vec<_> = chunks
                        .iter()
                        .map(|c| (c.offset, c.plaintext_len, c.id.0))
                        .collect();
                    assert_eq!(got, expected, "len {len} workers {workers}");
                    assert_eq!(summary.content_hash, codec.content_hash(data));
                }
            }
        }
    }
}
