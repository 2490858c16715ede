//! The Kafka front's metrics: requests and their latency per API, connections.

use std::sync::LazyLock;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Requests handled, per API (Kafka's RequestsPerSec).
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new("keel_requests_total", "Kafka requests handled, per API"),
        &["api"],
    )
    .expect("valid counter")
});

/// From a request's arrival to its reply being ready, per API (Kafka's
/// TotalTimeMs; a Fetch's long-poll and a Produce's fsync wait are included).
pub static REQUEST_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    HistogramVec::new(
        HistogramOpts::new(
            "keel_request_duration_seconds",
            "Time from a Kafka request's arrival to its reply, per API",
        )
        .buckets(prometheus::exponential_buckets(0.0000625, 2.0, 20).expect("valid buckets")),
        &["api"],
    )
    .expect("valid histogram")
});

/// Open client connections.
pub static CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    IntGauge::new("keel_connections", "Open Kafka client connections").expect("valid gauge")
});

/// Connections accepted since start.
pub static CONNECTIONS_ACCEPTED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "keel_connections_accepted_total",
        "Kafka client connections accepted",
    )
    .expect("valid counter")
});

/// Adds the Kafka front's metrics to `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(REQUESTS.clone()))?;
    registry.register(Box::new(REQUEST_SECONDS.clone()))?;
    registry.register(Box::new(CONNECTIONS.clone()))?;
    registry.register(Box::new(CONNECTIONS_ACCEPTED.clone()))
}
