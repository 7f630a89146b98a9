//! The service's metrics, each recorded at its one choke point: RPCs by
//! operation at [`Service::handle`](crate::Service::handle) (requests,
//! errors by kind, latency), versions committed and the fan-out of their
//! notifications at the commit path (`ops.rs`), login failures at the login
//! guard. Process-wide handles; the server lists them (with the blob
//! store's) in its `/metrics` through [`register`]. This crate never
//! serves or encodes them.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use stacksync_proto::ErrorKind;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationError {
    operation: &'static str,
    kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

struct ServiceMetrics {
    rpc_requests: Family<Operation, Counter>,
    rpc_errors: Family<OperationError, Counter>,
    rpc_duration: Family<Operation, Histogram, fn() -> Histogram>,
    commits: Counter,
    fanout: Histogram,
    login_failures: Family<Reason, Counter>,
}

/// Latency buckets, seconds: 0.5 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

static METRICS: LazyLock<ServiceMetrics> = LazyLock::new(|| ServiceMetrics {
    rpc_requests: Family::default(),
    rpc_errors: Family::default(),
    rpc_duration: Family::new_with_constructor(latency_histogram),
    commits: Counter::default(),
    fanout: latency_histogram(),
    login_failures: Family::default(),
});

/// One RPC served: its operation, how long it took, and the kind of its
/// error if it failed.
pub(crate) fn rpc_served(operation: &'static str, took: Duration, error: Option<ErrorKind>) {
    let label = Operation { operation };
    METRICS.rpc_requests.get_or_create(&label).inc();
    METRICS
        .rpc_duration
        .get_or_create(&label)
        .observe(took.as_secs_f64());
    if let Some(kind) = error {
        let kind = serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{kind:?}"));
        METRICS
            .rpc_errors
            .get_or_create(&OperationError { operation, kind })
            .inc();
    }
}

/// Versions a commit made durable.
pub(crate) fn versions_committed(n: usize) {
    METRICS.commits.inc_by(n as u64);
}

/// The time from a commit being durable to its notification published.
pub(crate) fn notification_fanout(took: Duration) {
    METRICS.fanout.observe(took.as_secs_f64());
}

/// A refused login attempt: `"password"` (wrong email or password) or
/// `"throttled"` (blocked after repeated failures).
pub(crate) fn login_failed(reason: &'static str) {
    METRICS
        .login_failures
        .get_or_create(&Reason { reason })
        .inc();
}

/// Adds the service's metrics, and those of the blob store it drives, to
/// `registry`.
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "stacksync_rpc_requests",
        "RPC requests served, by operation (gateway and bus alike)",
        m.rpc_requests.clone(),
    );
    registry.register(
        "stacksync_rpc_errors",
        "RPC requests answered with an error, by operation and error kind",
        m.rpc_errors.clone(),
    );
    registry.register(
        "stacksync_rpc_duration_seconds",
        "Seconds to serve an RPC request, by operation",
        m.rpc_duration.clone(),
    );
    registry.register(
        "stacksync_commits",
        "Versions committed (an identical retry of a stored version counts again)",
        m.commits.clone(),
    );
    registry.register(
        "stacksync_notification_fanout_seconds",
        "Seconds from a commit being durable to its notification published",
        m.fanout.clone(),
    );
    registry.register(
        "stacksync_login_failures",
        "Refused password checks (login, web sign-in, OAuth approval), by reason",
        m.login_failures.clone(),
    );
    stacksync_blobstore::metrics::register(registry);
}
