//! Wiring of `stacksync server`: store, blobs, bus, service, RPC workers,
//! HTTP, and graceful shutdown on SIGINT/SIGTERM.

use std::time::Duration;

use anyhow::Context;
use stacksync_blobstore::{StoreConfig, open_store};
use stacksync_bus::{Bus, BusConfig, MemoryConfig, QueueKind};
use stacksync_client::private;
use stacksync_metastore::MetaStore;
use stacksync_service::{BrokerAdmin, BrokerAdminConfig, Service, ServiceConfig, run_rpc_workers};
use tokio::sync::watch;

use crate::config::{BusKind, Config, QueueKindName, StorageKind};

/// Opens every handle the configuration names and builds the service.
/// `with_bus: false` gives an in-process bus whatever the configuration says
/// (administration commands publish nothing anyone listens to).
pub async fn open_service(config: &Config, with_bus: bool) -> anyhow::Result<Service> {
    let data_dir = config.data_dir()?;
    // The data folder holds password hashes and everyone's file names:
    // private (0700/0600), repaired if an older version left it open.
    private::dir(&data_dir)
        .with_context(|| format!("creating data folder {}", data_dir.display()))?;
    let db_url = config.database_url(&data_dir);
    if let Some(file) = Config::sqlite_file(&db_url) {
        private::sqlite_file(&file)
            .with_context(|| format!("creating the database file {}", file.display()))?;
    }
    let store = MetaStore::connect(&db_url)
        .await
        .context("opening the metadata database")?;
    let blob_config = store_config(config, &data_dir)?;
    let blobs = open_store(&blob_config)
        .await
        .context("opening the blob store")?;
    let bus = if with_bus {
        open_bus(config).await?
    } else {
        Bus::in_process(MemoryConfig::default())
    };
    let service_config = ServiceConfig {
        session_ttl: Duration::from_secs(config.session_ttl_days.unwrap_or(30) * 24 * 3600),
        storage_url: config.storage.storage_url.clone(),
        login: config.limits.login(),
        oauth: config.api.oauth(),
    };
    let service = Service::new(store, blobs, bus, service_config);
    Ok(match broker_admin(config)? {
        Some(admin) => service.with_broker_admin(admin),
        None => service,
    })
}

/// The blob store the configuration describes; for the local store, its
/// folder (made private) and its at-rest key (made on first use).
pub fn store_config(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<StoreConfig> {
    Ok(match config.storage.kind {
        StorageKind::Local => {
            let root = config
                .storage
                .root
                .clone()
                .unwrap_or_else(|| data_dir.join("blobs"));
            private::dir(&root)
                .with_context(|| format!("creating the blob folder {}", root.display()))?;
            let at_rest_key_file = match config.storage.at_rest_encryption {
                Some(false) => None,
                _ => {
                    let key = config
                        .storage
                        .at_rest_key_file
                        .clone()
                        .unwrap_or_else(|| data_dir.join("at-rest.key"));
                    if !key.exists() {
                        stacksync_blobstore::local::at_rest::create_key_file(&key).with_context(
                            || format!("creating the at-rest key {}", key.display()),
                        )?;
                    }
                    Some(key)
                }
            };
            StoreConfig::Local {
                root,
                user: None,
                at_rest_key_file,
                at_rest_old_key_files: config.storage.at_rest_old_key_files.clone(),
            }
        }
        StorageKind::Swift => StoreConfig::Swift(Box::new(
            config
                .storage
                .swift
                .clone()
                .context("storage kind \"swift\" needs a [storage.swift] section")?,
        )),
    })
}

/// The broker administration `[bus.admin]` asks for (RabbitMQ only).
fn broker_admin(config: &Config) -> anyhow::Result<Option<BrokerAdmin>> {
    let Some(admin) = &config.bus.admin else {
        return Ok(None);
    };
    if config.bus.kind != BusKind::Rabbitmq {
        anyhow::bail!("[bus.admin] needs bus kind \"rabbitmq\"");
    }
    let password = match std::env::var("STACKSYNC_BUS_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => admin
            .password
            .clone()
            .context("[bus.admin] needs a password (or STACKSYNC_BUS_ADMIN_PASSWORD)")?,
    };
    let admin_config = BrokerAdminConfig {
        url: admin.url.clone(),
        user: admin.user.clone(),
        password,
        vhost: admin.vhost.clone(),
    };
    BrokerAdmin::new(admin_config, &config.bus.namespace)
        .map(Some)
        .context("setting up the broker administration")
}

/// Withdraws, every `every`, the broker users whose session ended (however
/// it ended: logout, revocation, expiry), until `stop`.
async fn sweep_broker_users(
    service: Service,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => match service.sweep_broker_users().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(withdrawn = n, "broker users of ended sessions withdrawn"),
                Err(e) => tracing::warn!(error = %e, "broker user sweep failed; will retry"),
            },
        }
    }
}

async fn open_bus(config: &Config) -> anyhow::Result<Bus> {
    Ok(match config.bus.kind {
        BusKind::InProcess => Bus::in_process(MemoryConfig::default()),
        BusKind::Rabbitmq => {
            let url = config
                .bus
                .url
                .clone()
                .context("bus kind \"rabbitmq\" needs [bus] url (or STACKSYNC_BUS_URL)")?;
            let mut bc = BusConfig::new(url, config.bus.namespace.clone());
            bc.queue_kind = match config.bus.queue_kind {
                QueueKindName::Classic => QueueKind::Classic,
                QueueKindName::Durable => QueueKind::Durable,
                QueueKindName::Quorum => QueueKind::Quorum,
            };
            bc.rpc_timeout = Duration::from_millis(config.bus.rpc_timeout_ms.max(1));
            Bus::rabbitmq(bc).await.context("connecting to RabbitMQ")?
        }
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn termination() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler only Ctrl-C stops the server.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir()?;
    let service = open_service(&config, true).await?;
    service
        .check_at_rest_promise()
        .await
        .context("checking encryption at rest")?;
    let listen = config
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    println!("StackSync server {}", env!("CARGO_PKG_VERSION"));
    println!("data folder: {}", data_dir.display());
    println!(
        "storage encrypted at rest: {}",
        if service.blobs().encrypts_at_rest() {
            "yes"
        } else {
            "no"
        }
    );
    println!("listening on http://{addr}");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        // An error means the sender is gone, which is a stop too.
        let _ = rx.wait_for(|s| *s).await;
    };
    let prefetch = config.prefetch.unwrap_or(16);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.workers.unwrap_or(1).max(1) {
        workers.spawn(run_rpc_workers(
            service.clone(),
            service.bus().clone(),
            prefetch,
            stopped(stop_rx.clone()),
        ));
    }
    if let Some(every) = config.gc.interval() {
        let gc = crate::admin_gc::periodic(
            service.clone(),
            config.gc.settings(),
            every,
            stopped(stop_rx.clone()),
        );
        tokio::spawn(gc);
    }
    if let Some(admin) = &config.bus.admin {
        let every = Duration::from_secs(admin.sweep_interval_secs.max(1));
        tokio::spawn(sweep_broker_users(
            service.clone(),
            every,
            stopped(stop_rx.clone()),
        ));
    }
    let limits = config.limits.gateway();
    let app = stacksync_gateway::router_observed(
        service.clone(),
        &limits,
        config.api.gateway(),
        config.observability.gateway(),
    );
    let http_task = tokio::spawn(stacksync_gateway::serve(
        listener,
        app,
        limits,
        stopped(stop_rx.clone()),
    ));
    println!("ready");
    tokio::select! {
        () = termination() => tracing::info!("stopping on signal"),
        Some(done) = workers.join_next() => {
            // A consumer ending on its own means the bus failed for good.
            done.context("RPC workers crashed")?.context("RPC workers stopped")?;
        }
    }
    let _ = stop_tx.send(true);
    let mut served = 0u64;
    while let Some(done) = workers.join_next().await {
        served += done
            .context("RPC workers crashed")?
            .context("RPC workers failed")?;
    }
    http_task.await.context("HTTP task crashed")??;
    service.store().close().await;
    tracing::info!(served, "stopped");
    println!("served {served} requests");
    Ok(())
}
