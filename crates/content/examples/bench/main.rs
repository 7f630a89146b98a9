//! `scripts/bench content`: throughput of each pipeline stage against raw
//! single-thread BLAKE3 measured in the same run on the same buffers, peak
//! memory for a streamed 1 GiB file, and re-sent bytes after a one-byte
//! insertion with CDC versus the original fixed 512 KiB chunks, and what
//! small edits cost as delta chunks (`delta.rs`).
//!
//! Usage: `bench [--mib N] [--reps N] [--runs N] [--rss-mib N] [--sweep]`.
//! The last line of stdout is one JSON object.

use std::collections::HashSet;
use std::io::Cursor;
use std::process::Command;

mod delta;
mod measure;

use measure::{
    RandomReader, Rate, best_mbps, best_rate, random_data, text_data, thread_cpu_seconds,
};

use stacksync_content::{
    ChunkCodec, ChunkerConfig, Cipher, Compression, FileEncoder, PipelineConfig, WorkspaceKey,
    chunk_reader,
};

struct Args {
    mib: usize,
    reps: usize,
    rss_mib: u64,
    sweep: bool,
    runs: usize,
    rss_child: Option<u64>,
}

fn parse_args() -> Args {
    let mut args = Args {
        mib: 128,
        reps: 2,
        rss_mib: 1024,
        sweep: false,
        runs: 7,
        rss_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--mib" => args.mib = num("--mib") as usize,
            "--reps" => args.reps = num("--reps").max(1) as usize,
            "--rss-mib" => args.rss_mib = num("--rss-mib"),
            "--rss-child" => args.rss_child = Some(num("--rss-child")),
            "--sweep" => args.sweep = true,
            "--runs" => args.runs = num("--runs").max(1) as usize,
            other => panic!("unknown argument {other}; see the doc comment of examples/bench.rs"),
        }
    }
    args
}

fn encode_all(encoder: &FileEncoder, data: &[u8]) -> u64 {
    let mut out = 0u64;
    encoder
        .encode(Cursor::new(data), |c| {
            out += c.bytes.len() as u64;
            Ok::<_, ()>(())
        })
        .expect("in-memory encoding cannot fail");
    out
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child process: stream `mib` MiB of generated data through the full
/// pipeline and print VmHWM, so the parent's buffers do not count.
fn rss_child(mib: u64) {
    let key = WorkspaceKey::from_bytes([1; 32]);
    let encoder = FileEncoder::new(ChunkCodec::encrypted(&key), PipelineConfig::default())
        .expect("default config is valid");
    let reader = RandomReader {
        state: 7,
        left: mib << 20,
    };
    let summary = encoder
        .encode(reader, |_| Ok::<_, ()>(()))
        .expect("generated input cannot fail");
    assert_eq!(summary.size, mib << 20);
    println!("{}", vm_hwm_kib());
}

fn measure_rss(mib: u64) -> f64 {
    let exe = std::env::current_exe().expect("the running example has a path");
    let out = Command::new(exe)
        .args(["--rss-child", &mib.to_string()])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse::<f64>()
            .map_or(f64::NAN, |kib| kib / 1024.0),
        Ok(o) => {
            eprintln!("rss child failed: {}", String::from_utf8_lossy(&o.stderr));
            f64::NAN
        }
        Err(e) => {
            eprintln!("rss child did not start: {e}");
            f64::NAN
        }
    }
}

/// Ids of CDC chunks (plain BLAKE3) and bytes per chunk.
fn cdc_chunks(data: &[u8], config: ChunkerConfig) -> Vec<(blake3::Hash, usize)> {
    chunk_reader(Cursor::new(data), config)
        .expect("config is valid")
        .map(|c| {
            let c = c.expect("in-memory reads cannot fail");
            (blake3::hash(&c.data), c.data.len())
        })
        .collect()
}

/// (changed chunks, re-sent bytes) after inserting one byte at `at`.
fn insert_cost(data: &[u8], at: usize, config: ChunkerConfig) -> (usize, usize) {
    let before: HashSet<_> = cdc_chunks(data, config)
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    let mut edited = data.to_vec();
    edited.insert(at, 0x42);
    let changed: Vec<_> = cdc_chunks(&edited, config)
        .into_iter()
        .filter(|(h, _)| !before.contains(h))
        .collect();
    (changed.len(), changed.iter().map(|(_, l)| l).sum())
}

/// Bytes the original fixed 512 KiB chunking re-sends after the same insert.
fn fixed_insert_cost(data: &[u8], at: usize) -> usize {
    const FIXED: usize = 512 * 1024;
    let before: HashSet<_> = data.chunks(FIXED).map(blake3::hash).collect();
    let mut edited = data.to_vec();
    edited.insert(at, 0x42);
    edited
        .chunks(FIXED)
        .filter(|c| !before.contains(&blake3::hash(c)))
        .map(<[u8]>::len)
        .sum()
}

fn sweep(data: &[u8]) {
    println!(
        "\nchunk-size trade-off on {} MiB random data (1-byte insert at 8 places):",
        data.len() >> 20
    );
    println!(
        "{:>10} {:>12} {:>12} {:>16}",
        "avg", "chunk MB/s", "chunks/GiB", "re-sent/insert"
    );
    for avg in [
        128u32 << 10,
        256 << 10,
        512 << 10,
        1 << 20,
        2 << 20,
        4 << 20,
    ] {
        let config = ChunkerConfig::new(avg / 4, avg, (avg * 4).min(16 << 20))
            .expect("sweep configs are valid");
        let mut n = 0;
        let mbps = best_mbps(2, data.len(), || n = cdc_chunks(data, config).len()).wall;
        let resent: usize = (1..=8)
            .map(|i| insert_cost(data, data.len() * i / 9, config).1)
            .sum::<usize>()
            / 8;
        let per_gib = n as f64 * (1024.0 * 1024.0 * 1024.0) / data.len() as f64;
        println!(
            "{:>9}K {mbps:>12.0} {per_gib:>12.0} {:>15}K",
            avg >> 10,
            resent >> 10
        );
    }
}

/// One thread, one stage at a time over 1 MiB pieces of `data`: the CPU
/// each stage costs, in CPU-seconds per GB, to compare their sum with what
/// two cores can give (2 CPU-s per GB at 1 GB/s).
fn stage_costs(data: &[u8], reps: usize, key: &WorkspaceKey) {
    let piece = 1 << 20;
    let cost = |f: &mut dyn FnMut(&[u8])| {
        let rate = best_rate(reps, data.len(), thread_cpu_seconds, || {
            for p in data.chunks(piece) {
                f(p);
            }
        });
        1000.0 / rate.cpu
    };
    let config = ChunkerConfig::default();
    let chunking = 1000.0
        / best_rate(reps, data.len(), thread_cpu_seconds, || {
            std::hint::black_box(
                chunk_reader(Cursor::new(data), config)
                    .expect("valid")
                    .count(),
            );
        })
        .cpu;
    let hash = cost(&mut |p| {
        std::hint::black_box(blake3::hash(p));
    });
    let codec_cost = |codec: ChunkCodec| {
        cost(&mut |p| {
            std::hint::black_box(codec.encode(p).expect("in memory"));
        })
    };
    let copy_only = codec_cost(ChunkCodec::plain());
    let xchacha = codec_cost(
        ChunkCodec::new(Compression::Off, Some(key)).with_cipher(Cipher::XChaCha20Poly1305),
    );
    let aes =
        codec_cost(ChunkCodec::new(Compression::Off, Some(key)).with_cipher(Cipher::Aes256Gcm));
    println!("  CPU-s per GB, one thread (1 MiB pieces; encode rows include their id hash):");
    println!(
        "    chunking {chunking:.2}  blake3 {hash:.2}  encode plain {copy_only:.2}  \
         + XChaCha20-Poly1305 {xchacha:.2}  + AES-256-GCM {aes:.2}"
    );
    print!("    zstd on 1 MiB pieces (CPU-s/GB, stored %):");
    for level in [-1, 1, 2, 3] {
        let codec = ChunkCodec::new(Compression::Zstd { level }, None);
        let mut stored = 0usize;
        let c = cost(&mut |p| stored += codec.encode(p).expect("in memory").bytes.len());
        let stored = 100.0 * stored as f64 / (data.len() * reps) as f64;
        print!("  level {level}: {c:.2}, {stored:.1}%");
    }
    println!();
    println!(
        "    sum for the full pipeline (chunking + file hash + id + encode with AES): {:.2} CPU-s/GB",
        chunking + hash + aes
    );
}

/// `runs` back-to-back encodes of `data`, each with its wall and CPU
/// figures: on a shared machine the spread says as much as the best run.
fn pipeline_runs(encoder: &FileEncoder, data: &[u8], runs: usize) -> Vec<Rate> {
    (0..runs)
        .map(|_| {
            best_mbps(1, data.len(), || {
                encode_all(encoder, data);
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let args = parse_args();
    if let Some(mib) = args.rss_child {
        rss_child(mib);
        return;
    }
    let len = args.mib << 20;
    println!(
        "content bench: {} MiB buffers, best of {} runs, {} cores",
        args.mib,
        args.reps,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Peak memory first, in a child, before this process allocates anything big.
    let rss = measure_rss(args.rss_mib);

    let key = WorkspaceKey::from_bytes([9; 32]);
    let config = PipelineConfig::default();
    let stage = |codec: ChunkCodec, workers: usize| {
        FileEncoder::new(codec, PipelineConfig { workers, ..config })
            .expect("default config is valid")
    };
    let plain = stage(ChunkCodec::plain(), 0);
    let compressed = stage(ChunkCodec::compressed(), 0);
    let encrypted = stage(ChunkCodec::encrypted(&key), 0);
    let encrypted_1w = stage(ChunkCodec::encrypted(&key), 1);
    let encrypted_nozstd = stage(ChunkCodec::new(Compression::Off, Some(&key)), 0);
    let encrypted_xchacha = stage(
        ChunkCodec::encrypted(&key).with_cipher(Cipher::XChaCha20Poly1305),
        0,
    );
    println!(
        "encrypted chunks use {:?} on this CPU",
        ChunkCodec::encrypted(&key).cipher()
    );

    let mut full = [0.0f64; 2];
    // The per-file pipeline without encryption (chunking, ids, file hash,
    // compression decision, framing) on incompressible data: its wall
    // figure, and what two idle cores allow from its CPU costs.
    let mut unencrypted = Rate {
        wall: 0.0,
        cpu: 0.0,
    };
    let mut unencrypted_ceiling = 0.0;
    let mut baseline = 0.0;
    for (k, (name, data)) in [
        ("incompressible", random_data(42, len)),
        ("text-like", text_data(43, len)),
    ]
    .into_iter()
    .enumerate()
    {
        // One-thread rows use the thread's own clock (nanoseconds).
        let b3 = best_rate(args.reps, len, thread_cpu_seconds, || {
            std::hint::black_box(blake3::hash(&data));
        });
        if k == 0 {
            baseline = b3.wall;
        }
        let mut out_len = 0;
        let rows = [
            ("blake3, 1 thread (baseline)", b3),
            (
                "chunking alone (FastCDC)",
                best_rate(args.reps, len, thread_cpu_seconds, || {
                    std::hint::black_box(
                        chunk_reader(Cursor::new(&data), config.chunker)
                            .expect("valid")
                            .count(),
                    );
                }),
            ),
            (
                "chunk + hash (ids, file hash)",
                best_mbps(args.reps, len, || {
                    encode_all(&plain, &data);
                }),
            ),
            (
                "+ compression (zstd-3, sampled)",
                best_mbps(args.reps, len, || {
                    encode_all(&compressed, &data);
                }),
            ),
            (
                "+ encryption = full pipeline",
                best_mbps(args.reps, len, || {
                    out_len = encode_all(&encrypted, &data);
                }),
            ),
            (
                "full pipeline, 1 worker",
                best_mbps(args.reps, len, || {
                    encode_all(&encrypted_1w, &data);
                }),
            ),
            (
                "encryption without compression",
                best_mbps(args.reps, len, || {
                    encode_all(&encrypted_nozstd, &data);
                }),
            ),
            (
                "full pipeline, XChaCha20-Poly1305",
                best_mbps(args.reps, len, || {
                    encode_all(&encrypted_xchacha, &data);
                }),
            ),
        ];
        full[k] = rows[4].1.wall;
        println!(
            "\n{name} data ({} MiB, stored as {:.1}% of its size):",
            args.mib,
            100.0 * out_len as f64 / len as f64
        );
        println!(
            "  {:<34} {:>8} {:>8} {:>13}",
            "stage", "MB/s", "vs b3", "MB/CPU-s"
        );
        for (label, rate) in rows {
            println!(
                "  {label:<34} {:>8.0} {:>7.2}x {:>13.0}",
                rate.wall,
                rate.wall / b3.wall,
                rate.cpu
            );
        }
        // What two idle cores allow, from CPU costs alone: the whole
        // pipeline's CPU shared by two cores, or the reader thread (reading
        // and cutting, the one sequential stage, costed by "chunking
        // alone"), whichever is slower. On a shared machine the wall figures
        // above fall short of it by the other jobs' share.
        let reader = 1000.0 / rows[1].1.cpu;
        let ceiling = |row: usize| {
            let total = 1000.0 / rows[row].1.cpu;
            (total, 1000.0 * (2.0 / total).min(1.0 / reader))
        };
        let (total, full_ceiling) = ceiling(4);
        println!(
            "  2-core ceiling from CPU costs: {full_ceiling:.0} MB/s (full pipeline {total:.2} CPU-s/GB \
             over 2 cores; sequential reader {reader:.2} CPU-s/GB)"
        );
        let (total, plain_ceiling) = ceiling(3);
        println!("  same without encryption: {plain_ceiling:.0} MB/s ({total:.2} CPU-s/GB)");
        if k == 0 {
            unencrypted = rows[3].1;
            unencrypted_ceiling = plain_ceiling;
        }
        stage_costs(&data, args.reps, &key);
    }

    let random = random_data(42, len);
    let runs = pipeline_runs(&compressed, &random, args.runs);
    drop(random);
    let walls: Vec<f64> = runs.iter().map(|r| r.wall).collect();
    let cpus: Vec<f64> = runs.iter().map(|r| r.cpu).collect();
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    println!(
        "\nper-file pipeline without encryption, incompressible, {} back-to-back runs:",
        args.runs
    );
    println!("  wall MB/s:  {}", list(&walls));
    println!("  MB/CPU-s:   {}", list(&cpus));
    let (runs_wall, runs_cpu) = (list(&walls), list(&cpus));
    let (median_wall, median_cpu) = (median(walls), median(cpus));
    println!("  median {median_wall:.0} MB/s, {median_cpu:.0} MB/CPU-s");

    let delta = delta::run(args.reps);

    let dedup_data = random_data(64, 64 << 20);
    let at = dedup_data.len() / 2;
    let (changed, resent) = insert_cost(&dedup_data, at, ChunkerConfig::default());
    let fixed = fixed_insert_cost(&dedup_data, at);
    let fixed_ratio = fixed as f64 / dedup_data.len() as f64;
    println!("\n1-byte insert in the middle of 64 MiB:");
    println!(
        "  CDC (default config): {changed} chunks changed, {} KiB re-sent ({:.2}% of the file)",
        resent >> 10,
        100.0 * resent as f64 / dedup_data.len() as f64
    );
    println!(
        "  fixed 512 KiB (original): {} KiB re-sent ({:.1}% of the file), {:.0}x more than CDC",
        fixed >> 10,
        100.0 * fixed_ratio,
        fixed as f64 / resent.max(1) as f64
    );
    println!(
        "\npeak RSS streaming {} MiB through the full pipeline: {rss:.1} MiB",
        args.rss_mib
    );
    if args.sweep {
        sweep(&dedup_data);
    }
    println!(
        "\nper-file pipeline without encryption, incompressible data: {:.0} MB/s ({:.2}x blake3), \
         {:.0} MB/CPU-s, 2-core ceiling {unencrypted_ceiling:.0} MB/s",
        unencrypted.wall,
        unencrypted.wall / baseline,
        unencrypted.cpu
    );
    // `pipeline_*` keys are the full pipeline (with encryption); the
    // `unencrypted_pipeline_*` ones stop before encryption.
    println!(
        "{{\"bench\":\"content\",\"blake3_1t_mbps\":{:.0},\"pipeline_incompressible_mbps\":{:.0},\"pipeline_text_mbps\":{:.0},\"ratio_pipeline_to_blake3\":{:.3},\"unencrypted_pipeline_incompressible_mbps\":{:.0},\"ratio_unencrypted_pipeline_to_blake3\":{:.3},\"unencrypted_pipeline_incompressible_mb_per_cpu_s\":{:.0},\"unencrypted_pipeline_2core_ceiling_mbps\":{unencrypted_ceiling:.0},\"peak_rss_mib_1gib\":{:.1},\"insert_1byte_changed_chunks\":{changed},\"insert_1byte_fixed512k_resent_ratio\":{fixed_ratio:.4},\"unencrypted_runs_mbps\":[{runs_wall}],\"unencrypted_runs_mb_per_cpu_s\":[{runs_cpu}],\"unencrypted_median_mbps\":{median_wall:.0},\"unencrypted_median_mb_per_cpu_s\":{median_cpu:.0},{}}}",
        baseline,
        full[0],
        full[1],
        full[0] / baseline,
        unencrypted.wall,
        unencrypted.wall / baseline,
        unencrypted.cpu,
        rss,
        delta.json()
    );
}
