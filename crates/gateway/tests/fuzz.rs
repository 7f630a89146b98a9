//! The short fuzz run on stable Rust: the fuzz bodies of
//! `stacksync_gateway::fuzz` over thousands of random inputs and mutations
//! of valid headers and requests, the requests sent through the router to
//! a real service (SQLite, in-process bus, local blob store). Nothing may
//! panic or answer 500.

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;
use stacksync_blobstore::{BlobStore, LocalStore};
use stacksync_bus::{Bus, MemoryConfig};
use stacksync_gateway::fuzz::{self, Fixture, authorization, path_and_query, range_header};
use stacksync_metastore::testing::TestDb;
use stacksync_proto::fuzz::{Mutation, mutate};
use stacksync_service::{Service, ServiceConfig};
use tokio::runtime::Runtime;

/// The service, its router and the runtime the requests run on; kept for
/// the whole test binary.
struct Env {
    runtime: Runtime,
    fixture: Fixture,
    _db: TestDb,
    _blobs: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let blobs = tempfile::tempdir().expect("a temp dir");
        let (db, fixture) = runtime.block_on(async {
            let db = TestDb::sqlite().await;
            let store: Arc<dyn BlobStore> = Arc::new(
                LocalStore::open(blobs.path().to_path_buf())
                    .await
                    .expect("a local blob store"),
            );
            let bus = Bus::in_process(MemoryConfig::default());
            let service = Service::new(db.store.clone(), store, bus, ServiceConfig::default());
            let fixture = fuzz::fixture(service).await;
            (db, fixture)
        });
        Env {
            runtime,
            fixture,
            _db: db,
            _blobs: blobs,
        }
    })
}

fn send(data: &[u8]) -> Option<axum::http::StatusCode> {
    let env = env();
    env.runtime.block_on(fuzz::request(&env.fixture, data))
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (any::<u8>(), any::<usize>(), any::<u64>()).prop_map(|(op, at, x)| Mutation { op, at, x })
}

#[test]
fn seeds_get_their_answers() {
    assert_eq!(range_header(b"bytes=10-19"), Some((10, 20)));
    assert_eq!(authorization(b"Bearer abc").as_deref(), Some("abc"));
    assert_eq!(path_and_query(fuzz::header_seeds().last().unwrap()), 1);
    let statuses: Vec<_> = fuzz::request_seeds().iter().map(|s| send(s)).collect();
    use axum::http::StatusCode as S;
    let expected = [
        S::OK,              // index page
        S::OK,              // health
        S::OK,              // an RPC
        S::BAD_REQUEST,     // a socket without an upgrade
        S::BAD_REQUEST,     // exists, with a bad id in the list
        S::PARTIAL_CONTENT, // a range of the stored object
        S::CONFLICT,        // other bytes under its name
        S::OK,              // the object by its raw path
        S::OK,              // a compressed RPC
    ];
    assert_eq!(statuses, expected.map(Some));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_headers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = range_header(&data);
        let _ = authorization(&data);
        let _ = path_and_query(&data);
        let mut ranged = b"bytes=".to_vec();
        ranged.extend_from_slice(&data);
        let _ = range_header(&ranged);
    }

    #[test]
    fn mutated_headers_never_panic(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut v = seed.get(&fuzz::header_seeds()).clone();
        mutate(&mut v, &muts);
        let _ = range_header(&v);
        let _ = authorization(&v);
        let _ = path_and_query(&v);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_requests_never_fail_the_gateway(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = send(&data);
    }

    #[test]
    fn mutated_requests_never_fail_the_gateway(
        seed in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut v = seed.get(&fuzz::request_seeds()).clone();
        mutate(&mut v, &muts);
        let _ = send(&v);
    }
}
