//! Bus benchmark: RPC round-trip latency with an echo server, and the time
//! for one notification to reach N subscribed devices, on the in-process
//! bus (the baseline, measured in the same run) and on RabbitMQ.
//!
//! `cargo run --release -p stacksync-bus --example bench -- [--calls N]
//! [--devices N] [--rounds N] [--amqp URL]`. The URL defaults to
//! `STACKSYNC_TEST_AMQP`; without one, only the in-process figures are
//! measured. The last line of stdout is one JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stacksync_bus::{Bus, BusConfig, MemoryConfig, QueueKind, SubscriptionEvent, Topic};
use stacksync_proto::WorkspaceId;
use tokio::sync::Notify;

struct Options {
    calls: usize,
    devices: usize,
    rounds: usize,
    amqp: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        calls: 2000,
        devices: 1000,
        rounds: 50,
        amqp: std::env::var("STACKSYNC_TEST_AMQP")
            .ok()
            .filter(|url| !url.is_empty()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--calls" => options.calls = number(value()?)?.max(1),
            "--devices" => options.devices = number(value()?)?.max(1),
            "--rounds" => options.rounds = number(value()?)?.max(1),
            "--amqp" => options.amqp = Some(value()?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// p50 and p99 of `samples`, in microseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[index].as_secs_f64() * 1e6
    };
    (at(0.50), at(0.99))
}

/// Sequential calls against one echo server; one warm-up call first.
async fn rpc_latency(server: &Bus, client: &Bus, calls: usize) -> Result<(f64, f64), String> {
    let mut requests = server.serve(32).await.map_err(|e| e.to_string())?;
    let echo = tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let payload = request.payload().clone();
            let _ = request.reply(payload).await;
        }
    });
    let payload = Bytes::from(vec![7u8; 512]);
    let timeout = Duration::from_secs(10);
    client
        .call(payload.clone(), timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        client
            .call(payload.clone(), timeout)
            .await
            .map_err(|e| e.to_string())?;
        samples.push(start.elapsed());
    }
    echo.abort();
    Ok(percentiles(samples))
}

/// Time from publish to the last of `devices` subscribers receiving it.
async fn fanout_latency(
    subscribers: &Bus,
    publisher: &Bus,
    devices: usize,
    rounds: usize,
) -> Result<(f64, f64), String> {
    let topic = Topic::Workspace(WorkspaceId::new());
    let remaining = Arc::new(AtomicUsize::new(0));
    let all_received = Arc::new(Notify::new());
    let mut listeners = Vec::with_capacity(devices);
    for _ in 0..devices {
        let mut subscription = subscribers
            .subscribe(&[topic])
            .await
            .map_err(|e| e.to_string())?;
        let (remaining, all_received) = (Arc::clone(&remaining), Arc::clone(&all_received));
        listeners.push(tokio::spawn(async move {
            while let Some(event) = subscription.recv().await {
                if let SubscriptionEvent::Message { .. } = event
                    && remaining.fetch_sub(1, Ordering::AcqRel) == 1
                {
                    all_received.notify_one();
                }
            }
        }));
    }
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        remaining.store(devices, Ordering::Release);
        let done = all_received.notified();
        let start = Instant::now();
        publisher
            .publish(&topic, Bytes::from_static(b"commit"))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(30), done)
            .await
            .map_err(|_| "notification did not reach every device within 30 s".to_string())?;
        samples.push(start.elapsed());
    }
    for listener in listeners {
        listener.abort();
    }
    Ok(percentiles(samples))
}

/// Removes the bench namespace's queue and exchange, which the bus
/// deliberately never auto-deletes.
async fn delete_namespace(config: &BusConfig) -> Result<(), String> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let fail = |e: lapin::Error| format!("cleaning up: {e}");
    let connection = lapin::Connection::connect(&config.url, Default::default())
        .await
        .map_err(fail)?;
    let channel = connection.create_channel().await.map_err(fail)?;
    let ns = &config.namespace;
    channel
        .queue_delete(
            format!("{ns}.requests").into(),
            QueueDeleteOptions::default(),
        )
        .await
        .map_err(fail)?;
    channel
        .exchange_delete(
            format!("{ns}.notify").into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .map_err(fail)?;
    connection
        .close(200, "bench done".into())
        .await
        .map_err(fail)
}

fn ratio(value: Option<f64>, baseline: f64) -> String {
    value.map_or("n/a".into(), |v| format!("{:.1}x", v / baseline.max(1e-9)))
}

fn json_number(value: Option<f64>) -> serde_json::Value {
    value.map_or(serde_json::Value::Null, |v| {
        serde_json::json!((v * 10.0).round() / 10.0)
    })
}

async fn run(options: Options) -> Result<(), String> {
    let memory = Bus::in_process(MemoryConfig {
        queue_capacity: 4096,
        subscriber_buffer: 64,
    });
    let rpc_mem = rpc_latency(&memory, &memory, options.calls).await?;
    let fan_mem = fanout_latency(&memory, &memory, options.devices, options.rounds).await?;

    let (mut rpc_amqp, mut fan_amqp) = (None, None);
    if let Some(url) = &options.amqp {
        let mut config = BusConfig::new(
            url.clone(),
            format!("stacksync-bench.{}", uuid::Uuid::new_v4().simple()),
        );
        config.queue_kind = QueueKind::Classic;
        let connect = || async {
            Bus::rabbitmq(config.clone())
                .await
                .map_err(|e| e.to_string())
        };
        let (server, client) = (connect().await?, connect().await?);
        rpc_amqp = Some(rpc_latency(&server, &client, options.calls).await?);
        let subscribers = connect().await?;
        fan_amqp =
            Some(fanout_latency(&subscribers, &client, options.devices, options.rounds).await?);
        // Stop every connection first, so that nothing re-declares what we delete.
        drop((server, client, subscribers));
        delete_namespace(&config).await?;
    } else {
        println!("RabbitMQ: skipped (set STACKSYNC_TEST_AMQP or pass --amqp URL)");
    }

    println!(
        "RPC round trip, 512-byte echo, {} sequential calls:",
        options.calls
    );
    println!(
        "  in-process  p50 {:>9.1} us  p99 {:>9.1} us  (baseline)",
        rpc_mem.0, rpc_mem.1
    );
    if let Some((p50, p99)) = rpc_amqp {
        println!(
            "  RabbitMQ    p50 {p50:>9.1} us  p99 {p99:>9.1} us  ({} / {} of in-process)",
            ratio(Some(p50), rpc_mem.0),
            ratio(Some(p99), rpc_mem.1)
        );
    }
    println!(
        "One notification to {} devices, {} rounds:",
        options.devices, options.rounds
    );
    println!(
        "  in-process  p50 {:>9.1} us  p99 {:>9.1} us  (baseline)",
        fan_mem.0, fan_mem.1
    );
    if let Some((p50, p99)) = fan_amqp {
        println!(
            "  RabbitMQ    p50 {p50:>9.1} us  p99 {p99:>9.1} us  ({} / {} of in-process)",
            ratio(Some(p50), fan_mem.0),
            ratio(Some(p99), fan_mem.1)
        );
    }
    let summary = serde_json::json!({
        "bench": "bus",
        "calls": options.calls,
        "devices": options.devices,
        "rounds": options.rounds,
        "rpc_inproc_p50_us": json_number(Some(rpc_mem.0)),
        "rpc_inproc_p99_us": json_number(Some(rpc_mem.1)),
        "rpc_rabbitmq_p50_us": json_number(rpc_amqp.map(|r| r.0)),
        "rpc_rabbitmq_p99_us": json_number(rpc_amqp.map(|r| r.1)),
        "fanout_inproc_p50_us": json_number(Some(fan_mem.0)),
        "fanout_inproc_p99_us": json_number(Some(fan_mem.1)),
        "fanout_rabbitmq_p50_us": json_number(fan_amqp.map(|r| r.0)),
        "fanout_rabbitmq_p99_us": json_number(fan_amqp.map(|r| r.1)),
    });
    println!("{summary}");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match options() {
        Ok(options) => run(options).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}
