//! The blob store's metrics: latency and failures of the requests the
//! Swift backend sends, by HTTP method, recorded at its one sender
//! (`SwiftStore::send`). Kept in process-wide handles that cost an atomic
//! add when nobody reads them (the desktop client's direct transport); the
//! server lists them in its `/metrics` through [`register`].

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The label of a Swift request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

type Histograms = Family<MethodLabel, Histogram, fn() -> Histogram>;

struct SwiftMetrics {
    duration: Histograms,
    errors: Family<MethodLabel, Counter>,
}

/// Bucket bounds of Swift request latency, seconds: 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

static SWIFT: LazyLock<SwiftMetrics> = LazyLock::new(|| SwiftMetrics {
    duration: Family::new_with_constructor(latency_histogram),
    errors: Family::default(),
});

/// Records one attempt of a Swift request: how long until its answer's
/// head (or its failure) came, and whether it failed (no answer, or a 5xx
/// one, which is retried).
pub(crate) fn swift_request(method: &str, took: Duration, failed: bool) {
    let label = MethodLabel {
        method: method.to_owned(),
    };
    SWIFT
        .duration
        .get_or_create(&label)
        .observe(took.as_secs_f64());
    if failed {
        SWIFT.errors.get_or_create(&label).inc();
    }
}

/// Adds the blob store's metrics to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(
        "stacksync_swift_request_duration_seconds",
        "Swift requests by HTTP method: seconds until the answer's head, each attempt",
        SWIFT.duration.clone(),
    );
    registry.register(
        "stacksync_swift_request_errors",
        "Swift request attempts that got no answer or a 5xx one, by HTTP method",
        SWIFT.errors.clone(),
    );
}
