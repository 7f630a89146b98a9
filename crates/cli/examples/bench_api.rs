//! `scripts/bench api`: the REST API v2 (docs/api-v2.md) on the real
//! backends against plain Swift, in one run.
//!
//! A `stacksync server` (the release binary) on PostgreSQL + RabbitMQ +
//! Swift with `[api] trusted_proxies = ["127.0.0.1"]`, one user, an app
//! registered with `stacksync admin oauth add`, and an access token through
//! the three-legged flow over HTTP (request token signed by the consumer
//! with `oauth_callback=oob`, the authorization form posted with email,
//! password and `action=allow`, the verifier read from the page, the
//! exchange). Every request is signed with HMAC-SHA1 by an independent
//! client (`oauth1-request`, see `bench_support/api_client.rs`). A Swift
//! proxy with the `stacksync_api` middleware in its pipeline
//! (`scripts/swift api-proxy`, plain HTTP, or HTTPS with `--tls`) forwards
//! `/v1/...` requests with `StackSync-API: v2` to the server; the token is
//! issued by the server directly and used through the proxy (the signature
//! covers the proxy's URL, which the middleware passes on in
//! `X-Forwarded-*`).
//!
//! Measured, each `--runs` times (median), for a file of `--mib` MiB of
//! random (incompressible) bytes, fresh bytes for every upload so that none
//! is deduplicated against an earlier one:
//! - Swift PUT and GET of the bytes as `test:tester` on the main proxy
//!   (the one the server stores its packs through), the baseline;
//! - API upload `POST /api/v2/file?name=...` (body streamed from one
//!   buffer in 1 MiB slices, with its length) and download
//!   `GET /api/v2/file/ID/data` (streamed, BLAKE3 checked), directly to the
//!   server;
//! - the same through the api-proxy (`/v1/...`, `StackSync-API: v2`), and
//!   plain Swift PUT and GET through that proxy too (what the middleware
//!   and, with `--tls`, the proxy's TLS cost on their own);
//! - once: an upload of bytes the server already holds (every chunk
//!   known, nothing written to Swift);
//! - the latency of `--requests` sequential metadata reads
//!   (`GET /api/v2/file/ID`) of the large file directly and through the
//!   proxy, of the small file directly, and of Swift HEADs of an object,
//!   p50 and p99 (the item lists every chunk id of the file, so its answer
//!   grows with the file: its size is printed);
//! - the server's resident memory: idle, and its peak during each transfer
//!   (VmHWM reset through /proc/PID/clear_refs before each, and VmRSS
//!   sampled every 10 ms), for a small file (`--small-mib`, first) and for
//!   the large ones, so that a peak growing with the file's size shows;
//!   the api-proxy's peak too;
//! - how busy the machine was, and how much of that was other work (the
//!   figures are only comparable on an otherwise idle machine).
//!
//! Usage: bench_api [--mib N] [--runs N] [--requests N] [--small-mib N]
//!   [--tls] [--seed N] [--keep-logs DIR]       (a quick run: `--mib 32`)
//!
//! Needs STACKSYNC_TEST_POSTGRES, STACKSYNC_TEST_AMQP,
//! STACKSYNC_TEST_AMQP_ADMIN and STACKSYNC_TEST_SWIFT (`scripts/bench api`
//! sets them, starting Swift) and the `stacksync` binary at STACKSYNC_BIN or
//! next to this example's folder. The scratch database, bus namespace,
//! containers and the api-proxy are removed at the end. The last line of
//! stdout is one JSON object; the exit status is non-zero if a transfer
//! failed or delivered other bytes.

// Shared with the other end-to-end benches, each of which uses only part of it.
#[allow(dead_code)]
#[path = "bench_support/mod.rs"]
mod support;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;

use support::api_client::{Api, Credentials, Received, http_client, three_legged};
use support::cluster::Cluster;
use support::data::Rng;
use support::proc::{Cpu, peak_rss_mib, proc_cpu, reset_peak_rss, rss_mib};
use support::server::{PASSWORD, Services};
use support::swift_api_proxy::SwiftApiProxy;
use support::swift_http::Swift;
use support::{MIB, json_number, keep_logs, stacksync_bin, tail};

const EMAIL: &str = "api-bench@example.org";
/// Requests before the timed ones of a latency series (connections, caches).
const WARM_UP: usize = 5;
/// How often the sampler reads the processes' VmRSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

struct Args {
    mib: usize,
    runs: usize,
    requests: usize,
    small_mib: usize,
    tls: bool,
    seed: u64,
    keep_logs: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        mib: 256,
        runs: 3,
        requests: 200,
        small_mib: 0,
        tls: false,
        seed: 1,
        keep_logs: None,
    };
    let mut small = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mib" => args.mib = value()?.parse().context("--mib")?,
            "--runs" => args.runs = value()?.parse().context("--runs")?,
            "--requests" => args.requests = value()?.parse().context("--requests")?,
            "--small-mib" => small = Some(value()?.parse().context("--small-mib")?),
            "--tls" => args.tls = true,
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--keep-logs" => args.keep_logs = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown flag {other} (flags: --mib N, --runs N, --requests N, --small-mib N, --tls, --seed N, --keep-logs DIR)"
            ),
        }
    }
    if args.mib == 0 || args.runs == 0 || args.requests == 0 {
        bail!("--mib, --runs and --requests must be at least 1");
    }
    // By default an eighth of the large file (at least 4 MiB, at most the
    // large file itself).
    args.small_mib = small.unwrap_or((args.mib / 8).max(4)).clamp(1, args.mib);
    Ok(args)
}

/// What one timed transfer cost.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    secs: f64,
    server_cpu_s: f64,
    /// Every Swift process, the api-proxy (and its middleware) included.
    swift_cpu_s: f64,
    /// The server's resident memory when the transfer began.
    server_start_mib: Option<f64>,
    server_peak_mib: Option<f64>,
    proxy_peak_mib: Option<f64>,
}

/// Times futures and watches the server's (and the api-proxy's) memory
/// and CPU while they run.
struct Meter {
    server: u32,
    proxy: Option<u32>,
}

impl Meter {
    async fn run<T>(
        &self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, Sample)> {
        let pids = [Some(self.server), self.proxy];
        // VmHWM from now on; if it cannot be reset, the sampler alone.
        let reset = pids.map(|p| p.is_some_and(reset_peak_rss));
        let stop = Arc::new(AtomicBool::new(false));
        let sampled = Arc::new(Mutex::new([0f64; 2]));
        let sampler = {
            let (stop, sampled) = (stop.clone(), sampled.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for (i, pid) in pids.iter().enumerate() {
                        if let Some(now) = pid.and_then(rss_mib) {
                            let mut s = sampled.lock().unwrap_or_else(|e| e.into_inner());
                            s[i] = s[i].max(now);
                        }
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        let server_start_mib = rss_mib(self.server);
        let server_cpu = proc_cpu(&self.server.to_string(), false);
        let cpu = Cpu::now(None, None);
        let started = Instant::now();
        let out = work.await;
        let secs = started.elapsed().as_secs_f64();
        let swift_cpu_s = Cpu::now(None, None).swift_since(&cpu);
        let server_cpu_s = proc_cpu(&self.server.to_string(), false) - server_cpu;
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        let out = out?;
        let sampled = *sampled.lock().unwrap_or_else(|e| e.into_inner());
        let peak = |i: usize| -> Option<f64> {
            let pid = pids[i]?;
            let hwm = if reset[i] { peak_rss_mib(pid) } else { None };
            match (hwm, sampled[i]) {
                (Some(h), s) => Some(h.max(s)),
                (None, s) if s > 0.0 => Some(s),
                _ => None,
            }
        };
        Ok((
            out,
            Sample {
                secs,
                server_cpu_s,
                swift_cpu_s,
                server_start_mib,
                server_peak_mib: peak(0),
                proxy_peak_mib: peak(1),
            },
        ))
    }
}

/// The samples of one kind of transfer.
#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

impl Series {
    fn push(&mut self, s: Sample) {
        self.samples.push(s);
    }

    fn secs(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.secs).collect())
    }

    /// MiB/s of the median run.
    fn mib_s(&self, mib: usize) -> Option<f64> {
        self.secs().map(|s| mib as f64 / s)
    }

    fn server_cpu_s(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.server_cpu_s).collect())
    }

    fn swift_cpu_s(&self) -> Option<f64> {
        median(self.samples.iter().map(|s| s.swift_cpu_s).collect())
    }

    /// The highest peak of any run.
    fn server_peak(&self) -> Option<f64> {
        self.samples
            .iter()
            .filter_map(|s| s.server_peak_mib)
            .reduce(f64::max)
    }

    /// "START→PEAK" of the run with the highest peak (resident MiB).
    fn server_start_peak(&self) -> String {
        let top = self
            .samples
            .iter()
            .filter(|s| s.server_peak_mib.is_some())
            .max_by(|a, b| {
                a.server_peak_mib
                    .unwrap_or(0.0)
                    .total_cmp(&b.server_peak_mib.unwrap_or(0.0))
            });
        match top {
            Some(s) => format!(
                "{}→{}",
                fmt(s.server_start_mib, 0),
                fmt(s.server_peak_mib, 0)
            ),
            None => "-".to_owned(),
        }
    }

    fn proxy_peak(&self) -> Option<f64> {
        self.samples
            .iter()
            .filter_map(|s| s.proxy_peak_mib)
            .reduce(f64::max)
    }
}

/// Sequential request latencies, in milliseconds.
struct Latency {
    ms: Vec<f64>,
}

impl Latency {
    async fn measure<F, Fut>(requests: usize, mut one: F) -> anyhow::Result<Latency>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        for _ in 0..WARM_UP {
            one().await?;
        }
        let mut ms = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            one().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        Ok(Latency { ms })
    }

    /// The nearest-rank percentile `p` (0-100).
    fn pct(&self, p: f64) -> f64 {
        let rank = ((p / 100.0) * self.ms.len() as f64).ceil() as usize;
        self.ms[rank.clamp(1, self.ms.len()) - 1]
    }

    fn mean(&self) -> f64 {
        self.ms.iter().sum::<f64>() / self.ms.len() as f64
    }
}

/// `len` fresh random bytes (xorshift64*: incompressible, no chunk shared
/// with bytes of another seed).
fn random_bytes(seed: u64, len: usize) -> (Bytes, blake3::Hash) {
    let data = Rng::new(seed).bytes(len);
    let hash = blake3::hash(&data);
    (Bytes::from(data), hash)
}

fn check(what: &str, got: Received, len: usize, hash: blake3::Hash) -> anyhow::Result<()> {
    if got.len != len as u64 || got.hash != hash {
        bail!(
            "{what}: got {} bytes with BLAKE3 {}, expected {len} bytes with {}",
            got.len,
            got.hash,
            hash
        );
    }
    Ok(())
}

fn item_id(item: &serde_json::Value, len: usize) -> anyhow::Result<String> {
    let id = item["id"]
        .as_str()
        .with_context(|| format!("no id in the new item {item}"))?
        .to_owned();
    if item["size"].as_u64() != Some(len as u64) {
        bail!("the new item's size is not {len}: {item}");
    }
    Ok(id)
}

/// `key: ...` and `secret: ...` of `stacksync admin oauth add`.
fn register_app(cluster: &Cluster, bin: &std::path::Path) -> anyhow::Result<Credentials> {
    let out = std::process::Command::new(bin)
        .args(["admin", "--config"])
        .arg(&cluster.config)
        .args(["oauth", "add", "StackSync API bench"])
        .env("RUST_LOG", "warn")
        .output()
        .context("running stacksync admin oauth add")?;
    if !out.status.success() {
        bail!("admin oauth add: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no {prefix:?} in {text:?}"))
    };
    Ok(Credentials {
        key: line("key: ")?,
        secret: line("secret: ")?,
    })
}

/// Everything measured.
#[derive(Default)]
struct Figures {
    proxy_url: String,
    rss_idle: Option<f64>,
    small_up: Series,
    small_down: Series,
    swift_put: Series,
    swift_get: Series,
    api_up: Series,
    api_down: Series,
    via_up: Series,
    via_down: Series,
    swift_via_put: Series,
    swift_via_get: Series,
    dedup_up: Series,
    /// The answer to `GET /file/ID` of the large file: its bytes and the
    /// chunk ids it lists.
    meta_bytes: Option<usize>,
    meta_chunks: Option<usize>,
    /// How busy the machine was while measuring (all cores), and the part
    /// of that spent outside this bench, the server and Swift (PostgreSQL,
    /// RabbitMQ, and anything else running on the machine).
    machine_busy_pct: Option<f64>,
    others_pct: Option<f64>,
    load_average: String,
    meta_small_bytes: Option<usize>,
    meta_small_chunks: Option<usize>,
    meta_direct: Option<Latency>,
    meta_via: Option<Latency>,
    /// `GET /file/ID` of the small file (a shorter chunk list).
    meta_small: Option<Latency>,
    swift_head: Option<Latency>,
}

async fn run(
    args: &Args,
    services: &Services,
    bin: &std::path::Path,
    cluster: &mut Cluster,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let i = cluster.start_instance("server").await?;
    let (url, server_pid) = (cluster.instances[i].url.clone(), cluster.instances[i].pid());
    let url = url.trim_end_matches('/').to_owned();
    cluster.add_user(EMAIL)?;
    let consumer = register_app(cluster, bin)?;
    let http = http_client(None)?;
    // Over loopback the server issues credentials without TLS.
    let token = three_legged(&http, &url, &consumer, EMAIL, PASSWORD)
        .await
        .context("the three-legged flow")?;
    let direct = Api {
        http: http.clone(),
        base: url.clone(),
        prefix: "/api/v2".into(),
        header: None,
        consumer: consumer.clone(),
        token: token.clone(),
    };
    let account = direct.get_json("/account").await?;
    if account["email"].as_str() != Some(EMAIL) {
        bail!("GET /api/v2/account answered {account}");
    }

    let proxy = SwiftApiProxy::start(&url, args.tls)?;
    figures.proxy_url = proxy.url.clone();
    let proxy_http = http_client(proxy.ca_file.as_deref())?;
    let via = Api {
        http: proxy_http.clone(),
        base: proxy.url.clone(),
        prefix: "/v1".into(),
        header: Some(("StackSync-API", "v2")),
        consumer,
        token,
    };
    let account = via.get_json("/account").await?;
    if account["email"].as_str() != Some(EMAIL) {
        bail!("GET /v1/account through the proxy answered {account}");
    }

    let swift = Swift::login(&http, &services.swift.swift_auth, "test:tester", "testing").await?;
    let swift_via = Swift::login(
        &proxy_http,
        &format!("{}/auth/v1.0", proxy.url),
        "test:tester",
        "testing",
    )
    .await?;
    let container = format!("bench-api-{}", uuid::Uuid::new_v4().simple());
    swift.create_container(&container).await?;
    let result = measure(
        args,
        figures,
        &direct,
        &via,
        &swift,
        &swift_via,
        &container,
        {
            Meter {
                server: server_pid,
                proxy: proxy.pid(),
            }
        },
    )
    .await;
    for object in ["direct", "via-proxy", "head"] {
        swift.delete(&container, Some(object)).await;
    }
    swift.delete(&container, None).await;
    drop(proxy);
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Args,
    figures: &mut Figures,
    direct: &Api,
    via: &Api,
    swift: &Swift,
    swift_via: &Swift,
    container: &str,
    meter: Meter,
) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    figures.rss_idle = rss_mib(meter.server);
    figures.load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let started = Instant::now();
    let machine = Cpu::now(None, None);
    let own = proc_cpu("self", false) + proc_cpu(&meter.server.to_string(), false);
    measure_all(
        args, figures, direct, via, swift, swift_via, container, &meter,
    )
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let now = Cpu::now(None, None);
    let busy = now.machine_busy_pct(&machine);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ours = proc_cpu("self", false) + proc_cpu(&meter.server.to_string(), false) - own
        + now.swift_since(&machine);
    figures.machine_busy_pct = Some(busy);
    figures.others_pct = Some((busy - 100.0 * ours / (wall * cores)).max(0.0));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure_all(
    args: &Args,
    figures: &mut Figures,
    direct: &Api,
    via: &Api,
    swift: &Swift,
    swift_via: &Swift,
    container: &str,
    meter: &Meter,
) -> anyhow::Result<()> {
    let n = args.mib * MIB;

    // The small file first, while nothing large has passed yet.
    let small = args.small_mib * MIB;
    let (data, hash) = random_bytes(args.seed.wrapping_mul(1000), small);
    let (item, s) = meter.run(direct.upload("small.bin", &data)).await?;
    figures.small_up.push(s);
    let small_id = item_id(&item, small)?;
    let (got, s) = meter.run(direct.download(&small_id)).await?;
    check("the small file's download", got, small, hash)?;
    figures.small_down.push(s);
    drop(data);
    println!(
        "small file: {} MiB up {:.2} s, down {:.2} s; server peak RSS {} / {} MiB",
        args.small_mib,
        figures.small_up.secs().unwrap_or(0.0),
        figures.small_down.secs().unwrap_or(0.0),
        json_number(figures.small_up.server_peak(), 1),
        json_number(figures.small_down.server_peak(), 1),
    );

    let mut last = None;
    for run in 0..args.runs {
        // Swift, then the API directly, with the same bytes.
        let (data, hash) = random_bytes(args.seed.wrapping_mul(1000) + 1 + 2 * run as u64, n);
        let ((), s) = meter.run(swift.put(container, "direct", &data)).await?;
        figures.swift_put.push(s);
        let (got, s) = meter.run(swift.get(container, "direct")).await?;
        check("Swift GET", got, n, hash)?;
        figures.swift_get.push(s);
        swift.delete(container, Some("direct")).await;
        let (item, s) = meter
            .run(direct.upload(&format!("run{run}-direct.bin"), &data))
            .await?;
        figures.api_up.push(s);
        let id = item_id(&item, n)?;
        let (got, s) = meter.run(direct.download(&id)).await?;
        check("the API download", got, n, hash)?;
        figures.api_down.push(s);
        drop(data);

        // Through the proxy with new bytes (none of them stored yet), then
        // plain Swift through the same proxy.
        let (data, hash) = random_bytes(args.seed.wrapping_mul(1000) + 2 + 2 * run as u64, n);
        let (item, s) = meter
            .run(via.upload(&format!("run{run}-via-proxy.bin"), &data))
            .await?;
        figures.via_up.push(s);
        let id = item_id(&item, n)?;
        let (got, s) = meter.run(via.download(&id)).await?;
        check("the API download through the proxy", got, n, hash)?;
        figures.via_down.push(s);
        let ((), s) = meter
            .run(swift_via.put(container, "via-proxy", &data))
            .await?;
        figures.swift_via_put.push(s);
        let (got, s) = meter.run(swift_via.get(container, "via-proxy")).await?;
        check("Swift GET through the api-proxy", got, n, hash)?;
        figures.swift_via_get.push(s);
        swift_via.delete(container, Some("via-proxy")).await;
        println!(
            "run {}/{}: Swift PUT {:.2} s, GET {:.2} s; API up {:.2} s, down {:.2} s; via proxy up {:.2} s, down {:.2} s; Swift via proxy PUT {:.2} s, GET {:.2} s; server peak RSS {} MiB up, {} down, {} via proxy up, {} down",
            run + 1,
            args.runs,
            figures.swift_put.samples[run].secs,
            figures.swift_get.samples[run].secs,
            figures.api_up.samples[run].secs,
            figures.api_down.samples[run].secs,
            figures.via_up.samples[run].secs,
            figures.via_down.samples[run].secs,
            figures.swift_via_put.samples[run].secs,
            figures.swift_via_get.samples[run].secs,
            fmt(figures.api_up.samples[run].server_peak_mib, 0),
            fmt(figures.api_down.samples[run].server_peak_mib, 0),
            fmt(figures.via_up.samples[run].server_peak_mib, 0),
            fmt(figures.via_down.samples[run].server_peak_mib, 0),
        );
        last = Some((data, hash, id));
    }

    // Bytes the server holds already: every chunk known, nothing stored.
    let (data, hash, id) = last.context("no run")?;
    let (item, s) = meter.run(direct.upload("again.bin", &data)).await?;
    figures.dedup_up.push(s);
    let again = item_id(&item, n)?;
    let got = direct.download(&again).await?;
    check("the re-uploaded file's download", got, n, hash)?;
    drop(data);

    // Metadata reads, one after another on a kept-alive connection.
    let path = format!("/file/{id}");
    let small_path = format!("/file/{small_id}");
    (figures.meta_bytes, figures.meta_chunks) = answer_size(direct, &path).await?;
    (figures.meta_small_bytes, figures.meta_small_chunks) =
        answer_size(direct, &small_path).await?;
    let expect_meta = |api: &Api, path: &str| {
        let (api, path) = (api.clone(), path.to_owned());
        move || {
            let (api, path) = (api.clone(), path.clone());
            async move {
                let answer = api.get(&path).await?;
                let status = answer.status();
                let body = answer.bytes().await?;
                if status != reqwest::StatusCode::OK {
                    bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
                }
                Ok(())
            }
        }
    };
    figures.meta_direct = Some(Latency::measure(args.requests, expect_meta(direct, &path)).await?);
    figures.meta_via = Some(Latency::measure(args.requests, expect_meta(via, &path)).await?);
    figures.meta_small =
        Some(Latency::measure(args.requests, expect_meta(direct, &small_path)).await?);
    swift
        .put(container, "head", &Bytes::from_static(b"a small object"))
        .await?;
    figures.swift_head =
        Some(Latency::measure(args.requests, move || swift.head(container, "head")).await?);
    Ok(())
}

/// The size of the answer to a signed GET of `path`, and how many chunk
/// ids it lists.
async fn answer_size(api: &Api, path: &str) -> anyhow::Result<(Option<usize>, Option<usize>)> {
    let answer = api.get(path).await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    if status != reqwest::StatusCode::OK {
        bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    let chunks = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|item| item["chunks"].as_array().map(Vec::len));
    Ok((Some(body.len()), chunks))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn report(args: &Args, f: &Figures) {
    let mib = args.mib;
    let via_name = if args.tls {
        "via Swift proxy (HTTPS)"
    } else {
        "via Swift proxy"
    };
    println!();
    println!(
        "{:<44} {:>8} {:>8} {:>10} {:>10} {:>13} {:>10}",
        "transfer", "MiB/s", "s", "server CPU", "Swift CPU", "server RSS", "proxy RSS"
    );
    let rows: Vec<(String, &Series, usize)> = vec![
        ("Swift PUT (main proxy)".into(), &f.swift_put, mib),
        ("Swift GET (main proxy)".into(), &f.swift_get, mib),
        ("API upload, direct".into(), &f.api_up, mib),
        ("API download, direct".into(), &f.api_down, mib),
        (format!("API upload, {via_name}"), &f.via_up, mib),
        (format!("API download, {via_name}"), &f.via_down, mib),
        (format!("Swift PUT, {via_name}"), &f.swift_via_put, mib),
        (format!("Swift GET, {via_name}"), &f.swift_via_get, mib),
        (
            "API upload of stored bytes (dedup), direct".into(),
            &f.dedup_up,
            mib,
        ),
        (
            format!("API upload, direct, {} MiB", args.small_mib),
            &f.small_up,
            args.small_mib,
        ),
        (
            format!("API download, direct, {} MiB", args.small_mib),
            &f.small_down,
            args.small_mib,
        ),
    ];
    for (name, s, size) in rows {
        println!(
            "{:<44} {:>8} {:>8} {:>10} {:>10} {:>13} {:>10}",
            name,
            fmt(s.mib_s(size), 1),
            fmt(s.secs(), 2),
            fmt(s.server_cpu_s(), 2),
            fmt(s.swift_cpu_s(), 2),
            s.server_start_peak(),
            fmt(s.proxy_peak(), 0),
        );
    }
    println!(
        "(MiB/s and s: median of {} runs; CPU: seconds, median; Swift CPU includes the api-proxy and its middleware; server RSS: resident MiB at the start -> peak during the transfer, of the run with the highest peak; proxy RSS: the api-proxy's peak)",
        args.runs
    );
    println!();
    let r = |name: &str, a: &Series, b: &Series| {
        println!(
            "  {name:<52} = {}x",
            fmt(ratio(a.mib_s(mib), b.mib_s(mib)), 2)
        );
    };
    println!("ratios (throughput):");
    r("API upload / Swift PUT", &f.api_up, &f.swift_put);
    r("API download / Swift GET", &f.api_down, &f.swift_get);
    r("API upload via proxy / Swift PUT", &f.via_up, &f.swift_put);
    r(
        "API download via proxy / Swift GET",
        &f.via_down,
        &f.swift_get,
    );
    r(
        "API upload via proxy / Swift PUT via the same proxy",
        &f.via_up,
        &f.swift_via_put,
    );
    r(
        "API download via proxy / Swift GET via the same proxy",
        &f.via_down,
        &f.swift_via_get,
    );
    r(
        "API upload via proxy / API upload direct",
        &f.via_up,
        &f.api_up,
    );
    r(
        "API download via proxy / API download direct",
        &f.via_down,
        &f.api_down,
    );
    println!();
    println!(
        "metadata reads ({} sequential, after {WARM_UP} unmeasured):",
        args.requests
    );
    let count = |x: Option<usize>| x.map_or("-".into(), |b| b.to_string());
    println!(
        "  (the answer lists every chunk id: {} bytes of JSON and {} ids for the {mib} MiB file, {} bytes and {} ids for the {} MiB one)",
        count(f.meta_bytes),
        count(f.meta_chunks),
        count(f.meta_small_bytes),
        count(f.meta_small_chunks),
        args.small_mib,
    );
    println!(
        "  {:<40} {:>8} {:>8} {:>8}",
        "", "p50 ms", "p99 ms", "mean ms"
    );
    let small_name = format!("GET /api/v2/file/ID, {} MiB file", args.small_mib);
    for (name, l) in [
        ("GET /api/v2/file/ID, direct", &f.meta_direct),
        ("GET /v1/file/ID, via Swift proxy", &f.meta_via),
        (small_name.as_str(), &f.meta_small),
        ("Swift HEAD of an object (main proxy)", &f.swift_head),
    ] {
        if let Some(l) = l {
            println!(
                "  {name:<40} {:>8.2} {:>8.2} {:>8.2}",
                l.pct(50.0),
                l.pct(99.0),
                l.mean()
            );
        }
    }
    println!();
    println!(
        "server memory: idle {} MiB; peak {} MiB uploading {} MiB, {} MiB uploading {} MiB ({} through the proxy); peak {} MiB downloading {} MiB, {} MiB downloading {} MiB ({} through the proxy)",
        fmt(f.rss_idle, 1),
        fmt(f.small_up.server_peak(), 1),
        args.small_mib,
        fmt(f.api_up.server_peak(), 1),
        mib,
        fmt(f.via_up.server_peak(), 1),
        fmt(f.small_down.server_peak(), 1),
        args.small_mib,
        fmt(f.api_down.server_peak(), 1),
        mib,
        fmt(f.via_down.server_peak(), 1),
    );
    println!(
        "machine while measuring: {}% busy (all cores), {}% of it outside the bench, the server and Swift (PostgreSQL, RabbitMQ, other work on the machine); load average at the start {}",
        fmt(f.machine_busy_pct, 0),
        fmt(f.others_pct, 0),
        f.load_average,
    );
}

fn json(args: &Args, f: &Figures) -> String {
    let mib = args.mib;
    let n = |x: Option<f64>, d: i32| json_number(x, d);
    let lat = |l: &Option<Latency>, p: f64| l.as_ref().map(|l| l.pct(p));
    let peak = |a: &Series, b: &Series| match (a.server_peak(), b.server_peak()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let fields: Vec<(&str, String)> = vec![
        ("mib", mib.to_string()),
        ("runs", args.runs.to_string()),
        ("tls_proxy", args.tls.to_string()),
        ("swift_put_mib_s", n(f.swift_put.mib_s(mib), 1)),
        ("swift_get_mib_s", n(f.swift_get.mib_s(mib), 1)),
        ("api_upload_mib_s", n(f.api_up.mib_s(mib), 1)),
        ("api_download_mib_s", n(f.api_down.mib_s(mib), 1)),
        ("proxy_api_upload_mib_s", n(f.via_up.mib_s(mib), 1)),
        ("proxy_api_download_mib_s", n(f.via_down.mib_s(mib), 1)),
        ("proxy_swift_put_mib_s", n(f.swift_via_put.mib_s(mib), 1)),
        ("proxy_swift_get_mib_s", n(f.swift_via_get.mib_s(mib), 1)),
        ("dedup_upload_mib_s", n(f.dedup_up.mib_s(mib), 1)),
        (
            "upload_vs_swift_put",
            n(ratio(f.api_up.mib_s(mib), f.swift_put.mib_s(mib)), 3),
        ),
        (
            "download_vs_swift_get",
            n(ratio(f.api_down.mib_s(mib), f.swift_get.mib_s(mib)), 3),
        ),
        (
            "proxy_upload_vs_swift_put",
            n(ratio(f.via_up.mib_s(mib), f.swift_put.mib_s(mib)), 3),
        ),
        (
            "proxy_download_vs_swift_get",
            n(ratio(f.via_down.mib_s(mib), f.swift_get.mib_s(mib)), 3),
        ),
        (
            "proxy_upload_vs_proxy_swift_put",
            n(ratio(f.via_up.mib_s(mib), f.swift_via_put.mib_s(mib)), 3),
        ),
        (
            "proxy_download_vs_proxy_swift_get",
            n(ratio(f.via_down.mib_s(mib), f.swift_via_get.mib_s(mib)), 3),
        ),
        ("api_upload_server_cpu_s", n(f.api_up.server_cpu_s(), 2)),
        ("api_download_server_cpu_s", n(f.api_down.server_cpu_s(), 2)),
        ("meta_p50_ms", n(lat(&f.meta_direct, 50.0), 3)),
        ("meta_p99_ms", n(lat(&f.meta_direct, 99.0), 3)),
        ("proxy_meta_p50_ms", n(lat(&f.meta_via, 50.0), 3)),
        ("proxy_meta_p99_ms", n(lat(&f.meta_via, 99.0), 3)),
        ("small_meta_p50_ms", n(lat(&f.meta_small, 50.0), 3)),
        ("small_meta_p99_ms", n(lat(&f.meta_small, 99.0), 3)),
        ("swift_head_p50_ms", n(lat(&f.swift_head, 50.0), 3)),
        ("swift_head_p99_ms", n(lat(&f.swift_head, 99.0), 3)),
        ("meta_requests", args.requests.to_string()),
        ("meta_answer_bytes", n(f.meta_bytes.map(|b| b as f64), 0)),
        ("meta_chunks", n(f.meta_chunks.map(|c| c as f64), 0)),
        (
            "small_meta_answer_bytes",
            n(f.meta_small_bytes.map(|b| b as f64), 0),
        ),
        (
            "small_meta_chunks",
            n(f.meta_small_chunks.map(|c| c as f64), 0),
        ),
        ("server_rss_idle_mib", n(f.rss_idle, 1)),
        ("small_mib", args.small_mib.to_string()),
        (
            "server_rss_peak_small_upload_mib",
            n(f.small_up.server_peak(), 1),
        ),
        (
            "server_rss_peak_small_download_mib",
            n(f.small_down.server_peak(), 1),
        ),
        (
            "server_rss_peak_upload_mib",
            n(peak(&f.api_up, &f.via_up), 1),
        ),
        (
            "server_rss_peak_download_mib",
            n(peak(&f.api_down, &f.via_down), 1),
        ),
        (
            "proxy_rss_peak_mib",
            n(
                [&f.via_up, &f.via_down, &f.swift_via_put, &f.swift_via_get]
                    .iter()
                    .filter_map(|s| s.proxy_peak())
                    .reduce(f64::max),
                1,
            ),
        ),
        ("machine_busy_pct", n(f.machine_busy_pct, 1)),
        ("others_busy_pct", n(f.others_pct, 1)),
    ];
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{\"bench\":\"api\",{}}}", body.join(","))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let services = Services::from_env("api")?;
    let bin = stacksync_bin()?;
    println!(
        "api bench: {} MiB of random bytes per transfer, {} runs each (median); `stacksync server` ({}) on PostgreSQL + RabbitMQ + Swift ({}); the Swift proxy with the stacksync_api middleware over {}; {} cores",
        args.mib,
        args.runs,
        bin.display(),
        services.swift.swift_auth,
        if args.tls { "HTTPS" } else { "plain HTTP" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let scratch = tempfile::Builder::new()
        .prefix("stacksync-bench-api-")
        .tempdir()?;
    let mut cluster = Cluster::create(&bin, &services, scratch.path())?;
    // The middleware's forwarded URL is believed from loopback.
    let mut config = std::fs::read_to_string(&cluster.config)?;
    config.push_str("\n[api]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    std::fs::write(&cluster.config, config)?;

    let mut figures = Figures::default();
    let result = run(&args, &services, &bin, &mut cluster, &mut figures).await;
    cluster.stop_all().await;
    let logs: Vec<(String, PathBuf)> = cluster
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.log.clone()))
        .collect();
    if let Some(dir) = &args.keep_logs {
        keep_logs(dir, &logs);
    }
    if let Err(e) = &result {
        for (name, log) in &logs {
            eprintln!("--- {name}'s log (last lines):\n{}", tail(log, 30));
        }
        eprintln!("api bench failed: {e:#}");
    }
    cluster.shut_down().await;
    drop(cluster);
    result?;
    println!("proxy: {}", figures.proxy_url);
    report(&args, &figures);
    println!("{}", json(&args, &figures));
    Ok(())
}
