//! Input: a request (method, route, path parts, Authorization, Range,
//! Content-Length, query, body; see `stacksync_gateway::fuzz::request`)
//! sent through the router to a real service on SQLite. No request may
//! panic or answer 500.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use stacksync_blobstore::{BlobStore, LocalStore};
use stacksync_bus::{Bus, MemoryConfig};
use stacksync_gateway::fuzz::{self, Fixture};
use stacksync_metastore::MetaStore;
use stacksync_service::{Service, ServiceConfig};
use tokio::runtime::Runtime;

fn env() -> &'static (Runtime, Fixture) {
    static ENV: OnceLock<(Runtime, Fixture)> = OnceLock::new();
    ENV.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir =
            std::env::temp_dir().join(format!("stacksync-fuzz-gateway-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("blobs")).expect("a temp dir");
        let fixture = runtime.block_on(async {
            let url = format!("sqlite://{}?mode=rwc", dir.join("meta.sqlite").display());
            let store = MetaStore::connect(&url).await.expect("a SQLite store");
            let blobs: Arc<dyn BlobStore> = Arc::new(
                LocalStore::open(dir.join("blobs"))
                    .await
                    .expect("a blob store"),
            );
            let bus = Bus::in_process(MemoryConfig::default());
            fuzz::fixture(Service::new(store, blobs, bus, ServiceConfig::default())).await
        });
        (runtime, fixture)
    })
}

fuzz_target!(
    init: {
        stacksync_proto::fuzz::write_seeds(&fuzz::request_seeds());
        env();
    },
    |data: &[u8]| {
        let (runtime, fixture) = env();
        runtime.block_on(fuzz::request(fixture, data));
    }
);
