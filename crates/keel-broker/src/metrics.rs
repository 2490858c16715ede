//! The broker's metrics: fsync latency, bytes in and out per topic, and the log
//! cleaner's work. The
//! binary registers them with its Prometheus registry ([`register`]).

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// How long each fsync (fdatasync of one partition's files) takes.
pub static FSYNC_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::with_opts(
        HistogramOpts::new(
            "keel_fsync_duration_seconds",
            "Time of one partition's fsync in a group-commit round",
        )
        .buckets(prometheus::exponential_buckets(0.0000625, 2.0, 16).expect("valid buckets")),
    )
    .expect("valid histogram")
});

/// Record batch bytes accepted by Produce, per topic.
pub static BYTES_IN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "keel_topic_bytes_in_total",
            "Record bytes produced to a topic",
        ),
        &["topic"],
    )
    .expect("valid counter")
});

/// Record batch bytes served by Fetch, per topic.
pub static BYTES_OUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "keel_topic_bytes_out_total",
            "Record bytes fetched from a topic",
        ),
        &["topic"],
    )
    .expect("valid counter")
});

/// Bytes the log cleaner read, mapping keys and rewriting segments.
pub static CLEANER_BYTES_READ: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "keel_log_cleaner_bytes_read_total",
        "Bytes the log cleaner read from compacted topics",
    )
    .expect("valid counter")
});

/// Records compaction removed (superseded values and expired tombstones).
pub static CLEANER_RECORDS_REMOVED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "keel_log_cleaner_records_removed_total",
        "Records compaction removed from compacted topics",
    )
    .expect("valid counter")
});

/// Adds the broker's metrics to `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(FSYNC_SECONDS.clone()))?;
    registry.register(Box::new(BYTES_IN.clone()))?;
    registry.register(Box::new(CLEANER_BYTES_READ.clone()))?;
    registry.register(Box::new(CLEANER_RECORDS_REMOVED.clone()))?;
    registry.register(Box::new(BYTES_OUT.clone()))
}

/// Forgets a deleted topic's series.
pub(crate) fn forget_topic(topic: &str) {
    let _ = BYTES_IN.remove_label_values(&[topic]);
    let _ = BYTES_OUT.remove_label_values(&[topic]);
}
