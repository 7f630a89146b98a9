//! `scripts/bench service`: commits per second and RPC latency through the
//! bus, in-process (SQLite) and on RabbitMQ (PostgreSQL) with one and two
//! service instances, and the time for one commit notification to reach
//! 1,000 subscribed devices.
//!
//! Service instances are tasks in this process, each with its own RabbitMQ
//! connection (as separate processes would have) and sharing one database
//! pool. Clients are tasks with one more connection, each committing new
//! versions of its own item in its own workspace, one request at a time.
//! The RabbitMQ figures need `STACKSYNC_TEST_AMQP` and
//! `STACKSYNC_TEST_POSTGRES`; without them they are reported as null.
//!
//! Options: `--clients N` (16), `--seconds S` per phase (5),
//! `--devices N` (1000), `--rounds N` (20).
//! The last line of stdout is one JSON object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stacksync_blobstore::{BlobStore, LocalStore};
use stacksync_bus::{Bus, BusConfig, MemoryConfig, QueueKind, SubscriptionEvent, Topic};
use stacksync_metastore::MetaStore;
use stacksync_metastore::testing::{TestDb, postgres_admin_url};
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{
    CommitRequest, ContentHash, DeviceId, ItemId, ItemName, ItemStatus, ProposedItem, WorkspaceId,
    wire,
};
use stacksync_service::{Service, ServiceConfig, run_rpc_workers};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

struct Options {
    clients: usize,
    seconds: u64,
    devices: usize,
    rounds: usize,
}

fn options() -> Options {
    let mut o = Options {
        clients: 16,
        seconds: 5,
        devices: 1000,
        rounds: 20,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        match (pair[0].as_str(), value) {
            ("--clients", Some(v)) => o.clients = v.max(1) as usize,
            ("--seconds", Some(v)) => o.seconds = v.max(1),
            ("--devices", Some(v)) => o.devices = v.max(1) as usize,
            ("--rounds", Some(v)) => o.rounds = v.max(1) as usize,
            (flag, _) => {
                eprintln!("unknown or incomplete option {flag}; see the example's docs");
                std::process::exit(2);
            }
        }
    }
    o
}

/// One bench client: a user with a session, a device, a workspace.
struct Client {
    token: String,
    device: DeviceId,
    workspace: WorkspaceId,
}

fn proposed(id: ItemId, v: u64) -> ProposedItem {
    ProposedItem {
        id,
        parent: None,
        name: ItemName::new("bench.bin").expect("a valid name"),
        is_folder: false,
        mimetype: None,
        status: if v == 1 {
            ItemStatus::New
        } else {
            ItemStatus::Changed
        },
        version: v,
        content_hash: Some(ContentHash(*blake3::hash(&v.to_le_bytes()).as_bytes())),
        size: 0,
        client_modified: v as i64,
        chunks: vec![],
        record: None,
    }
}

async fn make_clients(service: &Service, n: usize) -> Vec<Client> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let email = format!("bench{i}-{}@example.com", Uuid::new_v4().simple());
        let (account, ws) = service
            .create_user(&email, "bench", "bench-password", u64::MAX >> 2, None)
            .await
            .expect("a bench user is created");
        let session = service
            .login(&email, "bench-password")
            .await
            .expect("login works");
        let device = service
            .store()
            .upsert_device(account.id, None, "bench", "", "", None)
            .await
            .expect("a device registers");
        out.push(Client {
            token: session.token,
            device: device.id,
            workspace: ws.id,
        });
    }
    out
}

async fn call(bus: &Bus, req: &RpcRequest) -> RpcResponse {
    let reply = bus
        .call(wire::encode(req).into(), Duration::from_secs(30))
        .await
        .expect("the bus answers within 30 s");
    wire::decode(&reply).expect("replies decode")
}

/// Figures of one load phase.
struct Load {
    commits_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Clients commit as fast as replies come back for `seconds`.
async fn load(bus: &Bus, clients: Vec<Client>, seconds: u64) -> Load {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let bus = bus.clone();
        tasks.spawn(async move {
            let item = ItemId::new();
            let mut latencies = Vec::new();
            let mut v = 1;
            while Instant::now() < end {
                let req = RpcRequest {
                    request_id: Uuid::new_v4(),
                    token: c.token.clone(),
                    request: Request::Commit(CommitRequest {
                        workspace: c.workspace,
                        device: c.device,
                        items: vec![proposed(item, v)],
                    }),
                };
                let t = Instant::now();
                let resp = call(&bus, &req).await;
                latencies.push(t.elapsed());
                assert!(
                    matches!(resp.result, Ok(Reply::Commit(_))),
                    "commit failed: {:?}",
                    resp.result
                );
                v += 1;
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("a bench client finishes"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    Load {
        commits_per_s: all.len() as f64 / elapsed,
        p50_ms: percentile(&all, 0.5),
        p99_ms: percentile(&all, 0.99),
    }
}

/// Starts `instances` service instances, each on its own bus handle.
fn start_instances(
    services: &[Service],
    buses: &[Bus],
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    services
        .iter()
        .zip(buses)
        .map(|(service, bus)| {
            let (service, bus, mut stop) = (service.clone(), bus.clone(), stop.clone());
            tokio::spawn(async move {
                run_rpc_workers(service, bus, 32, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .expect("the workers run");
            })
        })
        .collect()
}

/// Time from sending a commit until all `devices` subscriptions hold its
/// notification, over `rounds` commits: (p50, p99) in milliseconds.
async fn fanout(bus: &Bus, client: &Client, devices: usize, rounds: usize) -> (f64, f64) {
    let topic = Topic::Workspace(client.workspace);
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let mut ready = Vec::with_capacity(devices);
    for _ in 0..devices {
        let mut sub = bus.subscribe(&[topic]).await.expect("a subscription opens");
        let tx = tx.clone();
        ready.push(tokio::spawn(async move {
            let mut round = 0;
            while let Some(event) = sub.recv().await {
                if let SubscriptionEvent::Message { .. } = event {
                    if tx.send((round, Instant::now())).is_err() {
                        return;
                    }
                    round += 1;
                }
            }
        }));
    }
    drop(tx);
    let item = ItemId::new();
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let req = RpcRequest {
            request_id: Uuid::new_v4(),
            token: client.token.clone(),
            request: Request::Commit(CommitRequest {
                workspace: client.workspace,
                device: client.device,
                items: vec![proposed(item, round as u64 + 1)],
            }),
        };
        let start = Instant::now();
        let resp = call(bus, &req).await;
        assert!(
            resp.result.is_ok(),
            "fan-out commit failed: {:?}",
            resp.result
        );
        let mut last = start;
        for _ in 0..devices {
            let (r, at) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("every device is notified within 60 s")
                .expect("subscribers are alive");
            assert_eq!(r, round, "notifications arrive in order");
            last = last.max(at);
        }
        times.push(last - start);
    }
    for task in ready {
        task.abort();
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn print_load(name: &str, l: &Load, baseline: Option<f64>) {
    let ratio = baseline.map_or(String::new(), |b| {
        format!("  ({:.2}x in-process)", l.commits_per_s / b)
    });
    println!(
        "{name:<22} {:>9.0} commits/s   p50 {:>7.2} ms   p99 {:>7.2} ms{ratio}",
        l.commits_per_s, l.p50_ms, l.p99_ms
    );
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.3}"),
        _ => "null".into(),
    }
}

async fn local_blobs() -> (tempfile::TempDir, Arc<dyn BlobStore>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = LocalStore::open(dir.path().to_path_buf())
        .await
        .expect("a local store opens");
    (dir, Arc::new(store))
}

#[tokio::main]
async fn main() {
    let o = options();
    println!(
        "service bench: {} clients, {} s per phase, fan-out to {} devices x {} rounds",
        o.clients, o.seconds, o.devices, o.rounds
    );

    // In-process bus, SQLite.
    let db = TestDb::sqlite().await;
    let (_dir, blobs) = local_blobs().await;
    let bus = Bus::in_process(MemoryConfig {
        queue_capacity: 4096,
        subscriber_buffer: 1024,
    });
    let service = Service::new(
        db.store.clone(),
        blobs.clone(),
        bus.clone(),
        ServiceConfig::default(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let workers = start_instances(
        std::slice::from_ref(&service),
        std::slice::from_ref(&bus),
        &stop_rx,
    );
    let clients = make_clients(&service, o.clients).await;
    let inproc = load(&bus, clients, o.seconds).await;
    print_load("in-process + SQLite", &inproc, None);
    let fan_client = make_clients(&service, 1).await.remove(0);
    let inproc_fan = fanout(&bus, &fan_client, o.devices, o.rounds).await;
    println!(
        "fan-out in-process     p50 {:>7.2} ms   p99 {:>7.2} ms  to {} devices",
        inproc_fan.0, inproc_fan.1, o.devices
    );
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }

    // RabbitMQ + PostgreSQL, one and two instances.
    let amqp = std::env::var("STACKSYNC_TEST_AMQP")
        .ok()
        .filter(|u| !u.is_empty());
    let mut rabbit: Option<(Load, Load, (f64, f64))> = None;
    if let (Some(amqp), Some(_)) = (amqp, postgres_admin_url()) {
        let mut figures = Vec::new();
        let mut fan = (f64::NAN, f64::NAN);
        for instances in [1usize, 2] {
            let db = TestDb::postgres().await.expect("PostgreSQL is configured");
            let store: MetaStore = db.store.clone();
            let ns = format!("stacksync-bench.{}", Uuid::new_v4().simple());
            let connect = || {
                let mut c = BusConfig::new(amqp.clone(), ns.clone());
                c.queue_kind = QueueKind::Classic;
                c.subscriber_buffer = 1024;
                Bus::rabbitmq(c)
            };
            let client_bus = connect().await.expect("RabbitMQ is reachable");
            let mut services = Vec::new();
            let mut buses = Vec::new();
            for _ in 0..instances {
                let b = connect().await.expect("RabbitMQ is reachable");
                services.push(Service::new(
                    store.clone(),
                    blobs.clone(),
                    b.clone(),
                    ServiceConfig::default(),
                ));
                buses.push(b);
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            let workers = start_instances(&services, &buses, &stop_rx);
            let clients = make_clients(&services[0], o.clients).await;
            let l = load(&client_bus, clients, o.seconds).await;
            print_load(
                &format!("RabbitMQ x{instances} + PG"),
                &l,
                Some(inproc.commits_per_s),
            );
            if instances == 1 {
                let c = make_clients(&services[0], 1).await.remove(0);
                fan = fanout(&client_bus, &c, o.devices, o.rounds).await;
                println!(
                    "fan-out RabbitMQ       p50 {:>7.2} ms   p99 {:>7.2} ms  to {} devices ({:.1}x in-process p50)",
                    fan.0,
                    fan.1,
                    o.devices,
                    fan.0 / inproc_fan.0
                );
            }
            let _ = stop_tx.send(true);
            for w in workers {
                let _ = w.await;
            }
            figures.push(l);
        }
        let two = figures.pop().expect("two phases ran");
        let one = figures.pop().expect("two phases ran");
        rabbit = Some((one, two, fan));
    } else {
        println!(
            "RabbitMQ/PostgreSQL phases skipped: set STACKSYNC_TEST_AMQP and STACKSYNC_TEST_POSTGRES"
        );
    }

    let (a1, a2, p50, p99, f50, f99) = match &rabbit {
        Some((one, two, fan)) => (
            Some(one.commits_per_s),
            Some(two.commits_per_s),
            Some(one.p50_ms),
            Some(one.p99_ms),
            Some(fan.0),
            Some(fan.1),
        ),
        // Without RabbitMQ the fan-out figures are the in-process ones.
        None => (
            None,
            None,
            None,
            None,
            Some(inproc_fan.0),
            Some(inproc_fan.1),
        ),
    };
    println!(
        "{{\"bench\":\"service\",\"inproc_commits_per_s\":{},\"amqp_commits_per_s_1\":{},\"amqp_commits_per_s_2\":{},\"amqp_rpc_p50_ms\":{},\"amqp_rpc_p99_ms\":{},\"fanout_1000_p50_ms\":{},\"fanout_1000_p99_ms\":{}}}",
        json_num(Some(inproc.commits_per_s)),
        json_num(a1),
        json_num(a2),
        json_num(p50),
        json_num(p99),
        json_num(f50),
        json_num(f99),
    );
}
