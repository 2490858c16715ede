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
/// ISR shrinks this broker made as a leader (Kafka's IsrShrinksPerSec).
pub static ISR_SHRINKS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "kafka_server_replicamanager_isrshrinks_total",
        "ISR shrinks of partitions this broker leads",
    )
    .expect("valid counter")
});

/// ISR expansions this broker made as a leader (Kafka's IsrExpandsPerSec).
pub static ISR_EXPANDS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "kafka_server_replicamanager_isrexpands_total",
        "ISR expansions of partitions this broker leads",
    )
    .expect("valid counter")
});

/// Records this broker truncated that it had known committed: the cost of an
/// unclean leader election, per partition (Kafka has no such count).
pub static UNCLEAN_LOST: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "keel_unclean_election_lost_records_total",
            "Committed records this broker truncated after an unclean leader election",
        ),
        &["topic", "partition"],
    )
    .expect("valid counter")
});

pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(UNCLEAN_LOST.clone()))?;
    registry.register(Box::new(ISR_SHRINKS.clone()))?;
    registry.register(Box::new(ISR_EXPANDS.clone()))?;
    registry.register(Box::new(REQUESTS.clone()))?;
    registry.register(Box::new(REQUEST_SECONDS.clone()))?;
    registry.register(Box::new(CONNECTIONS.clone()))?;
    registry.register(Box::new(CONNECTIONS_ACCEPTED.clone()))
}
