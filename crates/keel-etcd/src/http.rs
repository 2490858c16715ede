//! etcd's plain-HTTP endpoints on the client port, beside gRPC: `/health`,
//! `/version` and `/metrics`. etcd serves them on every client URL (HTTP/1.1 and
//! HTTP/2 on one port), and operators point load balancers, Kubernetes probes,
//! Prometheus and `etcdctl check datascale` at them.
//!
//! `/health` answers as etcd 3.4's `checkHealth` does: unhealthy while an alarm
//! is raised or no leader is known, and otherwise only if a linearizable read
//! (etcd: a quorum GET) completes within a second, so a member cut off from the
//! majority reports itself unhealthy instead of answering from stale state.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

use crate::server::{lock_store, EtcdServer, ETCD_VERSION};

/// The cluster version `/version` reports (etcd 3.4 clusters say 3.4.0).
pub const CLUSTER_VERSION: &str = "3.4.0";
/// How long `/health` waits for its linearizable read (etcd: one second).
pub const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// gRPC routes plus the HTTP endpoints and the JSON gateway, for one listener.
pub fn with_http_endpoints(
    server: &EtcdServer,
    grpc: tonic::service::Routes,
) -> tonic::service::Routes {
    let (health, metrics) = (server.clone(), server.clone());
    grpc.into_axum_router()
        .route("/health", get(move || health_reply(health.clone())))
        .route("/version", get(version_reply))
        .route("/metrics", get(move || metrics_reply(metrics.clone())))
        .merge(crate::gateway::router(server))
        .into()
}

async fn version_reply() -> impl IntoResponse {
    json_reply(
        StatusCode::OK,
        format!("{{\"etcdserver\":\"{ETCD_VERSION}\",\"etcdcluster\":\"{CLUSTER_VERSION}\"}}"),
    )
}

/// Why this member is unhealthy, or `None` when it is healthy.
pub async fn health(server: &EtcdServer) -> Option<String> {
    let alarms = lock_store(server.store()).alarms();
    if !alarms.is_empty() {
        return Some("ALARM NOSPACE".into());
    }
    if server.node().status().leader == 0 {
        return Some("RAFT NO LEADER".into());
    }
    match tokio::time::timeout(HEALTH_READ_TIMEOUT, server.node().read_barrier()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("QGET ERROR: {e}")),
        Err(_) => Some("QGET ERROR: timed out".into()),
    }
}

async fn health_reply(server: EtcdServer) -> impl IntoResponse {
    match health(&server).await {
        None => json_reply(
            StatusCode::OK,
            "{\"health\":\"true\",\"reason\":\"\"}".into(),
        ),
        Some(why) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{{\"health\":\"false\",\"reason\":{why:?}}}"),
        ),
    }
}

fn json_reply(status: StatusCode, body: String) -> impl IntoResponse {
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

async fn metrics_reply(server: EtcdServer) -> impl IntoResponse {
    match render_metrics(&server) {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_string(),
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain".to_string())],
            format!("encoding metrics failed: {e}\n").into_bytes(),
        ),
    }
}

/// This member's state under etcd's metric names (what etcd dashboards and
/// alerts read), and the process's memory (`etcdctl check datascale` reads
/// `process_resident_memory_bytes`). Read at each scrape, like the Kafka
/// face's state gauges.
fn render_metrics(server: &EtcdServer) -> Result<Vec<u8>, prometheus::Error> {
    let st = server.node().status();
    let me = server.member_id();
    let (revision, compacted, in_use, quota) = {
        let s = lock_store(server.store());
        (s.revision(), s.compacted(), s.size_bytes(), s.quota_bytes())
    };
    let (rss, vsz) = process_memory().unwrap_or((0, 0));
    let registry = Registry::new();
    let gauges: [(&str, &str, i64); 12] = [
        (
            "etcd_server_has_leader",
            "Whether a leader exists: 1 yes, 0 no.",
            i64::from(st.leader != 0),
        ),
        (
            "etcd_server_is_leader",
            "Whether this member is the leader: 1 yes, 0 no.",
            i64::from(st.leader == me),
        ),
        (
            "etcd_server_is_learner",
            "Whether this member is a learner: 1 yes, 0 no.",
            i64::from(st.learners.contains(&me)),
        ),
        (
            "etcd_server_proposals_committed_total",
            "The Raft index committed here.",
            st.commit as i64,
        ),
        (
            "etcd_server_proposals_applied_total",
            "The Raft index applied here.",
            st.applied as i64,
        ),
        ("etcd_server_term", "The current Raft term.", st.term as i64),
        (
            "etcd_debugging_mvcc_current_revision",
            "The store's current revision.",
            revision,
        ),
        (
            "etcd_debugging_mvcc_compact_revision",
            "The revision of the last compaction.",
            compacted,
        ),
        (
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Bytes of live values counted against the quota.",
            in_use as i64,
        ),
        (
            "etcd_server_quota_backend_bytes",
            "The backend quota (--quota-backend-bytes).",
            quota as i64,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            vsz,
        ),
    ];
    for (name, help, value) in gauges {
        let g = IntGauge::new(name, help)?;
        g.set(value);
        registry.register(Box::new(g))?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    Ok(out)
}

/// (resident, virtual) bytes of this process, from /proc/self/status.
fn process_memory() -> Option<(i64, i64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |field: &str| -> Option<i64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        line[field.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<i64>()
            .ok()
    };
    Some((kib("VmRSS:")? * 1024, kib("VmSize:")? * 1024))
}
