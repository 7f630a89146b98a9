//! `scripts/bench blobstore`: PUT and GET throughput of 1 MiB chunks against
//! the real Swift started by `scripts/swift start` (address in
//! `STACKSYNC_TEST_SWIFT`), at several concurrencies, next to `rclone copy`
//! of the same bytes as files into the same Swift in the same run.
//!
//! Usage: bench [--mib N] [--concurrency 1,4,16] [--rclone-transfers 16]
//! The last line of stdout is one JSON object.

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stacksync_blobstore::{
    AtRestKeys, BlobStore, ContainerName, LocalStore, SwiftAuth, SwiftConfig, SwiftStore,
};
use stacksync_proto::ChunkId;

const CHUNK: usize = 1024 * 1024;

struct Args {
    mib: usize,
    concurrency: Vec<usize>,
    rclone_transfers: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        mib: 256,
        concurrency: vec![1, 4, 16],
        rclone_transfers: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mib" => args.mib = value.parse().context("--mib")?,
            "--concurrency" => {
                args.concurrency = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .context("--concurrency")?
            }
            "--rclone-transfers" => {
                args.rclone_transfers = value.parse().context("--rclone-transfers")?
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if args.mib == 0 || args.concurrency.is_empty() {
        bail!("--mib and --concurrency must be non-empty");
    }
    Ok(args)
}

fn chunks(count: usize) -> Vec<(ChunkId, Bytes)> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..count)
        .map(|_| {
            let mut v = vec![0u8; CHUNK];
            rng.fill(&mut v);
            (ChunkId(*blake3::hash(&v).as_bytes()), Bytes::from(v))
        })
        .collect()
}

fn mib_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn store(auth_url: &str, concurrency: usize) -> anyhow::Result<Arc<SwiftStore>> {
    let mut cfg = SwiftConfig::new(SwiftAuth::V1 {
        auth_url: auth_url.to_owned(),
        user: "test:tester".into(),
        key: "testing".into(),
    });
    cfg.max_concurrency = concurrency;
    Ok(Arc::new(SwiftStore::new(cfg)?))
}

async fn empty_and_delete(store: &SwiftStore, c: &ContainerName) -> anyhow::Result<()> {
    let ids = store.list(c).await?;
    futures::stream::iter(ids)
        .map(|id| async move { store.delete(c, &id).await })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    store.delete_container(c).await?;
    Ok(())
}

/// (PUT MiB/s, GET MiB/s) at one concurrency, in a fresh container.
async fn swift_phase(
    auth_url: &str,
    data: &[(ChunkId, Bytes)],
    c: usize,
) -> anyhow::Result<(f64, f64)> {
    let store = store(auth_url, c)?;
    store.connect().await?;
    let container = ContainerName::new(&format!("bench-c{c}-{}", uuid::Uuid::new_v4()))?;
    store.create_container(&container).await?;
    let total = data.len() * CHUNK;

    let started = Instant::now();
    stacksync_blobstore::put_many(store.as_ref(), &container, data.to_vec(), c).await?;
    let put = mib_per_s(total, started.elapsed().as_secs_f64());

    let started = Instant::now();
    let read: usize = futures::stream::iter(data.iter())
        .map(|(id, _)| {
            let (store, container) = (store.clone(), container.clone());
            async move { store.get_bytes(&container, id).await.map(|b| b.len()) }
        })
        .buffer_unordered(c)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await?;
    let get = mib_per_s(read, started.elapsed().as_secs_f64());
    if read != total {
        bail!("read {read} bytes, expected {total}");
    }
    empty_and_delete(&store, &container).await?;
    Ok((put, get))
}

/// (PUT MiB/s, GET MiB/s) of the local store at concurrency 4, storing
/// objects as they come or sealed at rest (server-side encryption), in a
/// fresh folder.
async fn local_phase(data: &[(ChunkId, Bytes)], sealed: bool) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store = if sealed {
        LocalStore::open_sealed(dir.path(), AtRestKeys::from_bytes([7; 32], &[])).await?
    } else {
        LocalStore::open(dir.path()).await?
    };
    let store = Arc::new(store);
    let container = ContainerName::new("bench-local")?;
    store.create_container(&container).await?;
    let total = data.len() * CHUNK;
    let started = Instant::now();
    stacksync_blobstore::put_many(store.as_ref(), &container, data.to_vec(), 4).await?;
    let put = mib_per_s(total, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let read: usize = futures::stream::iter(data.iter())
        .map(|(id, _)| {
            let (store, container) = (store.clone(), container.clone());
            async move { store.get_bytes(&container, id).await.map(|b| b.len()) }
        })
        .buffer_unordered(4)
        .try_fold(0, |sum, n| async move { Ok(sum + n) })
        .await?;
    let get = mib_per_s(read, started.elapsed().as_secs_f64());
    if read != total {
        bail!("read {read} bytes, expected {total}");
    }
    Ok((put, get))
}

/// MiB/s of `rclone copy` of the same bytes, as files, into a fresh container.
async fn rclone_phase(
    auth_url: &str,
    data: &[(ChunkId, Bytes)],
    transfers: usize,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("files");
    std::fs::create_dir(&files)?;
    for (id, bytes) in data {
        std::fs::write(files.join(id.to_hex()), bytes)?;
    }
    let conf = dir.path().join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[swift]\ntype = swift\nuser = test:tester\nkey = testing\nauth = {auth_url}\nauth_version = 1\n"
        ),
    )?;
    let container = ContainerName::new(&format!("bench-rclone-{}", uuid::Uuid::new_v4()))?;
    let started = Instant::now();
    let status = Command::new("rclone")
        .arg("--config")
        .arg(&conf)
        .arg("copy")
        .arg(&files)
        .arg(format!("swift:{container}"))
        .args([
            "--transfers",
            &transfers.to_string(),
            "--checkers",
            &transfers.to_string(),
        ])
        .status()
        .context("run rclone (apt-get install -y rclone)")?;
    let secs = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("rclone copy failed: {status}");
    }
    let store = store(auth_url, 16)?;
    let stored = store.list(&container).await?.len();
    if stored != data.len() {
        bail!("rclone stored {stored} objects, expected {}", data.len());
    }
    empty_and_delete(&store, &container).await?;
    Ok(mib_per_s(data.len() * CHUNK, secs))
}

/// Asks `scripts/swift env` for the auth URL of the Swift it started.
fn swift_from_script() -> anyhow::Result<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/swift");
    let out = Command::new("bash").arg(&script).arg("env").output()?;
    if !out.status.success() {
        bail!(
            "{} env: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("export STACKSYNC_TEST_SWIFT=")
                .map(str::to_owned)
        })
        .context("no STACKSYNC_TEST_SWIFT in `scripts/swift env`")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let auth_url = match std::env::var("STACKSYNC_TEST_SWIFT") {
        Ok(url) if !url.is_empty() => url,
        _ => swift_from_script().context(
            "STACKSYNC_TEST_SWIFT is not set and `scripts/swift env` failed: run `scripts/swift start`",
        )?,
    };
    println!(
        "blobstore bench: {} x 1 MiB chunks per phase against {auth_url}",
        args.mib
    );
    let data = chunks(args.mib);

    let rclone = rclone_phase(&auth_url, &data, args.rclone_transfers).await?;
    println!(
        "rclone copy (--transfers {}): {rclone:8.1} MiB/s  (baseline)",
        args.rclone_transfers
    );

    let mut results = Vec::new();
    for &c in &args.concurrency {
        let (put, get) = swift_phase(&auth_url, &data, c).await?;
        println!(
            "swift c={c:<3} PUT {put:8.1} MiB/s ({:.2}x rclone)   GET {get:8.1} MiB/s",
            put / rclone
        );
        results.push((c, put, get));
    }
    println!(
        "(scripts/swift runs the proxies' encryption middleware: both rclone and us write encrypted at rest)"
    );
    let (plain_put, plain_get) = local_phase(&data, false).await?;
    let (sealed_put, sealed_get) = local_phase(&data, true).await?;
    println!("local store c=4 PUT {plain_put:8.1} MiB/s  GET {plain_get:8.1} MiB/s  (as stored)");
    println!(
        "local sealed c=4 PUT {sealed_put:8.1} MiB/s ({:.2}x)  GET {sealed_get:8.1} MiB/s ({:.2}x)  (encrypted at rest)",
        sealed_put / plain_put,
        sealed_get / plain_get
    );
    let at = |c: usize| results.iter().find(|r| r.0 == c).copied();
    let first = results[0];
    let last = results[results.len() - 1];
    let (c1, c16) = (at(1).unwrap_or(first), at(16).unwrap_or(last));
    // Written by hand to keep the key order the bench dispatcher documents.
    let json = format!(
        "{{\"bench\":\"blobstore\",\"swift_put_mbps_c1\":{},\"swift_put_mbps_c16\":{},\"swift_get_mbps_c16\":{},\"rclone_mbps\":{},\"ratio_put_c16_to_rclone\":{},\"local_put_mbps\":{},\"local_sealed_put_mbps\":{},\"local_get_mbps\":{},\"local_sealed_get_mbps\":{},\"ratio_sealed_put\":{},\"ratio_sealed_get\":{}}}",
        round2(c1.1),
        round2(c16.1),
        round2(c16.2),
        round2(rclone),
        round2(c16.1 / rclone),
        round2(plain_put),
        round2(sealed_put),
        round2(plain_get),
        round2(sealed_get),
        round2(sealed_put / plain_put),
        round2(sealed_get / plain_get)
    );
    println!("(throughput in MiB/s; the JSON's *_mbps are MiB/s too)");
    println!("{json}");
    Ok(())
}
