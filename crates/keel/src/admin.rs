//! The admin HTTP listener: `/metrics` in Prometheus text format and `/health`.
//!
//! Metric names follow kafka_exporter (danielqsj/kafka_exporter) wherever it has
//! one, so its Grafana dashboards and lag alerts work unchanged; Keel's own
//! metrics are `keel_*`. State-derived gauges (offsets, lag, log sizes) are read
//! from the broker at each scrape.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keel_broker::Broker;
use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Gauges set from the broker's state at each scrape.
struct StateGauges {
    brokers: IntGauge,
    offline: IntGauge,
    under_replicated_led: IntGauge,
    leader_is_preferred: IntGaugeVec,
    topic_partitions: IntGaugeVec,
    current_offset: IntGaugeVec,
    oldest_offset: IntGaugeVec,
    under_replicated: IntGaugeVec,
    replicas: IntGaugeVec,
    in_sync_replicas: IntGaugeVec,
    leader: IntGaugeVec,
    log_size: IntGaugeVec,
    group_current_offset: IntGaugeVec,
    group_lag: IntGaugeVec,
    group_lag_sum: IntGaugeVec,
    group_members: IntGaugeVec,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

impl StateGauges {
    fn new(r: &Registry) -> Result<Self> {
        let tp = &["topic", "partition"];
        let gtp = &["consumergroup", "topic", "partition"];
        let brokers = IntGauge::new("kafka_brokers", "Number of brokers in the cluster")?;
        r.register(Box::new(brokers.clone()))?;
        let offline = IntGauge::new(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader (Kafka's OfflinePartitionsCount)",
        )?;
        r.register(Box::new(offline.clone()))?;
        let under_replicated_led = IntGauge::new(
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions this broker leads with fewer in-sync replicas than replicas",
        )?;
        r.register(Box::new(under_replicated_led.clone()))?;
        Ok(StateGauges {
            brokers,
            offline,
            under_replicated_led,
            leader_is_preferred: gauge_vec(
                r,
                "kafka_topic_partition_leader_is_preferred",
                "1 if the partition is led by its preferred replica",
                tp,
            )?,
            topic_partitions: gauge_vec(
                r,
                "kafka_topic_partitions",
                "Partitions of a topic",
                &["topic"],
            )?,
            current_offset: gauge_vec(
                r,
                "kafka_topic_partition_current_offset",
                "Current offset (high watermark) of a partition",
                tp,
            )?,
            oldest_offset: gauge_vec(
                r,
                "kafka_topic_partition_oldest_offset",
                "Oldest offset (log start) of a partition",
                tp,
            )?,
            under_replicated: gauge_vec(
                r,
                "kafka_topic_partition_under_replicated_partition",
                "1 if the partition is under-replicated",
                tp,
            )?,
            replicas: gauge_vec(
                r,
                "kafka_topic_partition_replicas",
                "Replicas of a partition",
                tp,
            )?,
            in_sync_replicas: gauge_vec(
                r,
                "kafka_topic_partition_in_sync_replica",
                "In-sync replicas of a partition",
                tp,
            )?,
            leader: gauge_vec(
                r,
                "kafka_topic_partition_leader",
                "Leader broker id of a partition",
                tp,
            )?,
            log_size: gauge_vec(
                r,
                "keel_log_size_bytes",
                "Bytes on disk of a partition's log",
                tp,
            )?,
            group_current_offset: gauge_vec(
                r,
                "kafka_consumergroup_current_offset",
                "Committed offset of a consumer group for a partition",
                gtp,
            )?,
            group_lag: gauge_vec(
                r,
                "kafka_consumergroup_lag",
                "Current approximate lag of a consumer group at a partition",
                gtp,
            )?,
            group_lag_sum: gauge_vec(
                r,
                "kafka_consumergroup_lag_sum",
                "Lag of a consumer group summed over a topic's partitions",
                &["consumergroup", "topic"],
            )?,
            group_members: gauge_vec(
                r,
                "kafka_consumergroup_members",
                "Members of a consumer group",
                &["consumergroup"],
            )?,
        })
    }

    fn refresh(&self, broker: &Broker, image: Option<&keel_meta::Image>) {
        for g in [
            &self.topic_partitions,
            &self.current_offset,
            &self.oldest_offset,
            &self.under_replicated,
            &self.replicas,
            &self.in_sync_replicas,
            &self.leader,
            &self.leader_is_preferred,
            &self.log_size,
            &self.group_current_offset,
            &self.group_lag,
            &self.group_lag_sum,
            &self.group_members,
        ] {
            g.reset();
        }
        self.brokers
            .set(image.map_or(1, |i| i.live_nodes().count() as i64));
        if let Some(i) = image {
            let me = broker.node_id();
            let parts = i.topics.values().flat_map(|t| t.partitions.iter());
            // Kafka's OfflinePartitionsCount (the controller's view, here every
            // node's) and UnderReplicatedPartitions (of those this broker leads).
            self.offline.set(
                parts
                    .clone()
                    .filter(|p| p.leader == keel_meta::NO_LEADER)
                    .count() as i64,
            );
            self.under_replicated_led.set(
                parts
                    .filter(|p| p.leader == me && p.under_replicated())
                    .count() as i64,
            );
        }
        let mut high_watermarks = std::collections::HashMap::new();
        for t in broker.topics() {
            let info = t.info();
            self.topic_partitions
                .with_label_values(&[&info.name])
                .set(i64::from(t.partition_count()));
            for p in &info.partitions {
                let part = p.index.to_string();
                let l = [info.name.as_str(), part.as_str()];
                self.current_offset
                    .with_label_values(&l)
                    .set(p.high_watermark);
                self.oldest_offset
                    .with_label_values(&l)
                    .set(p.log_start_offset);
                // From the cluster metadata when it holds the partition.
                let meta = image.and_then(|i| i.partition(&info.name, p.index));
                let (replicas, isr, leader) = match meta {
                    Some(m) => (m.replicas.len(), m.isr.len(), m.leader),
                    None => (1, 1, broker.node_id()),
                };
                self.under_replicated
                    .with_label_values(&l)
                    .set(i64::from(meta.is_some_and(|m| m.under_replicated())));
                self.replicas.with_label_values(&l).set(replicas as i64);
                self.in_sync_replicas.with_label_values(&l).set(isr as i64);
                self.leader.with_label_values(&l).set(i64::from(leader));
                if let Some(m) = meta {
                    self.leader_is_preferred
                        .with_label_values(&l)
                        .set(i64::from(m.replicas.first() == Some(&m.leader)));
                }
                self.log_size.with_label_values(&l).set(p.size_bytes as i64);
                high_watermarks.insert((info.name.clone(), p.index), p.high_watermark);
            }
        }
        for (group, _, _, _) in broker.list_groups() {
            let members = match broker.describe_group(&group) {
                Some(Ok(d)) => d.members.len(),
                Some(Err(_)) => broker
                    .describe_consumer_group(&group)
                    .map_or(0, |c| c.members.len()),
                None => 0,
            };
            self.group_members
                .with_label_values(&[&group])
                .set(members as i64);
            for (topic, partition, committed) in broker.fetch_offsets(&group, None) {
                let Some(c) = committed else { continue };
                let part = partition.to_string();
                let l = [group.as_str(), topic.as_str(), part.as_str()];
                self.group_current_offset
                    .with_label_values(&l)
                    .set(c.offset);
                // kafka_exporter: lag = high watermark - committed offset.
                if let Some(hw) = high_watermarks.get(&(topic.clone(), partition)) {
                    let lag = (hw - c.offset).max(0);
                    self.group_lag.with_label_values(&l).set(lag);
                    self.group_lag_sum
                        .with_label_values(&[&group, &topic])
                        .add(lag);
                }
            }
        }
    }
}

/// The control plane's admin surface: Raft status and `keel lab` fault injection.
pub struct Lab {
    pub server: keel_etcd::server::EtcdServer,
    pub faults: Arc<keel_raft::Faults>,
    /// The tables face (when this node serves CQL): each node's gossiped
    /// state and whether this node believes it up, for `keel table status`.
    pub cql: Option<Arc<keel_cql::Node>>,
}

struct Admin {
    lab: Option<Lab>,
    broker: Broker,
    registry: Registry,
    state: StateGauges,
}

impl Admin {
    /// The cluster's one id: the one the quorum's metadata holds (set by the
    /// first node to register, the id Kafka's Metadata answers every client),
    /// or this node's own until it has registered.
    fn cluster_id(&self) -> String {
        let from_quorum = self
            .lab
            .as_ref()
            .map(|l| l.server.metadata().cluster_id.clone());
        match from_quorum {
            Some(id) if !id.is_empty() => id,
            _ => self.broker.cluster_id().to_string(),
        }
    }

    fn metrics(&self) -> Result<Vec<u8>> {
        let image = self.lab.as_ref().map(|l| l.server.metadata());
        self.state.refresh(&self.broker, image.as_deref());
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }

    /// `POST /table/decommission`: this node leaves the tables face's ring,
    /// streaming its ranges first (`keel table decommission`). Answers when
    /// done, with what was streamed to whom.
    async fn decommission(&self) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, body: String| {
            let json = status == StatusCode::OK;
            Response::builder()
                .status(status)
                .header(
                    "content-type",
                    if json {
                        "application/json"
                    } else {
                        "text/plain"
                    },
                )
                .body(Full::new(Bytes::from(body)))
                .expect("valid response")
        };
        let Some(cql) = self.lab.as_ref().and_then(|l| l.cql.clone()) else {
            return reply(
                StatusCode::BAD_REQUEST,
                "this node does not serve CQL (start it with --cql-addr)\n".into(),
            );
        };
        let started = std::time::Instant::now();
        match keel_cql::bootstrap::decommission(&cql).await {
            Ok(r) => {
                let to: serde_json::Map<String, serde_json::Value> = r
                    .streamed_to
                    .iter()
                    .map(|(n, b)| (n.to_string(), serde_json::json!(b)))
                    .collect();
                let body = serde_json::json!({
                    "node": self.broker.node_id(), "left": r.failures.is_empty(),
                    "ranges": r.ranges, "cells_streamed": r.cells_streamed,
                    "bytes_streamed": r.bytes_streamed, "bytes_streamed_to": to,
                    "failures": r.failures, "seconds": started.elapsed().as_secs_f64(),
                });
                reply(StatusCode::OK, format!("{body}\n"))
            }
            Err(e) => reply(StatusCode::CONFLICT, format!("{e}\n")),
        }
    }

    fn respond(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let reply = |status: StatusCode, content_type: &str, body: Vec<u8>| {
            Response::builder()
                .status(status)
                .header("content-type", content_type)
                .body(Full::new(Bytes::from(body)))
                .expect("valid response")
        };
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => match self.metrics() {
                Ok(body) => reply(StatusCode::OK, TextEncoder::new().format_type(), body),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("encoding metrics failed: {e}\n").into_bytes(),
                ),
            },
            (&Method::GET, "/health") => {
                let body = serde_json::json!({
                    "status": "ok",
                    "node_id": self.broker.node_id(),
                    "cluster_id": self.cluster_id(),
                    "topics": self.broker.topics().len(),
                });
                reply(
                    StatusCode::OK,
                    "application/json",
                    format!("{body}\n").into_bytes(),
                )
            }
            (&Method::GET, "/cluster") if self.lab.is_some() => {
                let lab = self.lab.as_ref().expect("checked");
                let body = cluster_json(lab);
                reply(
                    StatusCode::OK,
                    "application/json",
                    format!("{body}\n").into_bytes(),
                )
            }
            (method, path)
                if self.lab.is_some() && (path == "/raft" || path.starts_with("/lab/")) =>
            {
                let lab = self.lab.as_ref().expect("checked");
                match lab_request(lab, method, path, req.uri().query().unwrap_or("")) {
                    Ok(body) => reply(
                        StatusCode::OK,
                        "application/json",
                        format!("{body}\n").into_bytes(),
                    ),
                    Err(e) => reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!("{e}\n").into_bytes(),
                    ),
                }
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found: try /metrics, /health, /raft or /cluster\n".to_vec(),
            ),
        }
    }
}

/// What this node's gossip and links say of `node` (null when it does not
/// serve CQL or has not heard of it).
fn gossip_json(lab: &Lab, node: i32) -> serde_json::Value {
    let Some(cql) = &lab.cql else {
        return serde_json::Value::Null;
    };
    let g = &cql.gossip;
    if node == g.node() {
        return serde_json::json!({"up": true, "state": g.state().name(), "phi": 0.0});
    }
    match g.peers().into_iter().find(|p| p.node == node) {
        // Up as the coordinator sees it: gossip's verdict and the link's.
        Some(p) => serde_json::json!({
            "up": p.up && cql.peers.is_up(node), "state": p.state.name(), "phi": p.phi,
            "generation": p.generation, "heartbeat": p.version,
        }),
        None => serde_json::Value::Null,
    }
}

/// `/cluster`: this node's view of the cluster metadata (the image it has
/// applied): the controller, every registered node, every topic's partitions.
fn cluster_json(lab: &Lab) -> serde_json::Value {
    let image = lab.server.metadata();
    let leader = lab.server.node().status().leader;
    let nodes: Vec<_> = image
        .nodes
        .values()
        .map(|n| {
            serde_json::json!({
                "id": n.id, "epoch": n.epoch, "host": n.kafka_host, "port": n.kafka_port,
                "rack": n.rack, "fenced": n.fenced, "shut_down": n.shut_down,
                "cql_host": n.cql_host, "cql_port": n.cql_port,
                "datacenter": n.datacenter, "tokens": n.tokens,
                "leaving": n.leaving, "decommissioned": n.decommissioned,
                "gossip": gossip_json(lab, n.id),
            })
        })
        .collect();
    let topics: serde_json::Map<String, serde_json::Value> = image
        .topics
        .iter()
        .map(|(name, t)| {
            let parts: Vec<_> = t
                .partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let lost: Vec<_> = p
                        .lost
                        .iter()
                        .map(|l| {
                            serde_json::json!({
                                "from": l.from, "to": l.to, "records": l.to - l.from,
                                "node": l.node_id, "leader_epoch": l.leader_epoch,
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "partition": i, "leader": p.leader, "leader_epoch": p.leader_epoch,
                        "partition_epoch": p.partition_epoch, "replicas": p.replicas, "isr": p.isr,
                        "adding": p.adding, "removing": p.removing,
                        "lost_to_unclean_election": lost,
                    })
                })
                .collect();
            (name.clone(), serde_json::Value::Array(parts))
        })
        .collect();
    // The tables face: each keyspace's replication and each table's
    // partition key (what `keel table locate` needs to place a key).
    let keyspaces: serde_json::Map<String, serde_json::Value> = image
        .keyspaces
        .iter()
        .map(|(name, k)| {
            let tables: serde_json::Map<String, serde_json::Value> = k
                .tables
                .iter()
                .map(|(t, table)| {
                    let pk: Vec<_> = table
                        .columns_of(keel_meta::ColumnKind::PartitionKey)
                        .iter()
                        .map(|c| serde_json::json!({"name": c.name, "type": c.cql_type}))
                        .collect();
                    let id: String = table.id.iter().map(|b| format!("{b:02x}")).collect();
                    (
                        t.clone(),
                        serde_json::json!({ "id": id, "partition_key": pk }),
                    )
                })
                .collect();
            (
                name.clone(),
                serde_json::json!({ "replication": k.replication, "tables": tables }),
            )
        })
        .collect();
    let bootstrap = lab.cql.as_ref().map(|n| {
        use std::sync::atomic::Ordering::Relaxed;
        let b = &n.bootstrap;
        serde_json::json!({
            "state": n.gossip.state().name(), "running": b.running.load(Relaxed),
            "done": b.done.load(Relaxed), "ranges": b.ranges.load(Relaxed),
            "cells": b.cells.load(Relaxed), "bytes": b.bytes.load(Relaxed),
            "failures": *b.failures.lock().expect("bootstrap lock"),
        })
    });
    let reads = lab.cql.as_ref().map(|n| {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "digest_reads": n.digest_reads.load(Relaxed),
            "digest_mismatches": n.digest_mismatches.load(Relaxed),
        })
    });
    let batchlog = lab.cql.as_ref().map(|n| {
        serde_json::json!({
            "replayed": n.batchlog.replayed.load(std::sync::atomic::Ordering::Relaxed),
        })
    });
    serde_json::json!({
        "table_bootstrap": bootstrap,
        "table_batchlog": batchlog,
        "table_reads": reads,
        "keyspaces": keyspaces,
        "controller": leader,
        "cluster_id": image.cluster_id,
        "metadata_index": image.applied,
        "nodes": nodes,
        "topics": topics,
    })
}

/// `/raft` shows the node's Raft status; `/lab/...` (POST) injects faults on
/// this node's peer links: `isolate?peers=2,3`, `drop-to?peers=..`,
/// `drop-from?peers=..`, `loss?permille=N`, `delay?ms=N`, `heal`.
fn lab_request(lab: &Lab, method: &Method, path: &str, query: &str) -> Result<serde_json::Value> {
    use std::sync::atomic::Ordering;
    let param = |name: &str| -> Option<&str> {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let peers = || -> Result<Vec<u64>> {
        param("peers")
            .context("say which peers: ?peers=2,3")?
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u64>()
                    .with_context(|| format!("peer id {p:?} is not a number"))
            })
            .collect()
    };
    let number = |name: &str| -> Result<u64> {
        param(name)
            .with_context(|| format!("say ?{name}=N"))?
            .parse::<u64>()
            .with_context(|| format!("{name} is not a number"))
    };
    let f = &lab.faults;
    match (method, path) {
        (&Method::GET, "/raft") => {}
        (&Method::POST, "/lab/isolate") => f.isolate_from(&peers()?),
        (&Method::POST, "/lab/drop-to") => f.drop_to.write().expect("faults lock").extend(peers()?),
        (&Method::POST, "/lab/drop-from") => f.drop_from.write().expect("faults lock").extend(peers()?),
        (&Method::POST, "/lab/loss") => f.loss_permille.store(number("permille")?.min(1000) as u32, Ordering::Relaxed),
        (&Method::POST, "/lab/delay") => f.delay_ms.store(number("ms")?.min(60_000), Ordering::Relaxed),
        (&Method::POST, "/lab/heal") => f.heal(),
        // A bug, on purpose: a task on a tokio worker panics, the case tokio
        // itself would swallow (ending only the task). The node's panic hook
        // must log it and stop the process (main.rs `stop_on_panic`).
        (&Method::POST, "/lab/panic") => {
            tokio::spawn(async { panic!("a panic asked for by POST /lab/panic") });
        }
        _ => anyhow::bail!("unknown lab request {method} {path}: try GET /raft, POST /lab/isolate?peers=2,3, /lab/heal, /lab/panic"),
    }
    let st = lab.server.node().status();
    Ok(serde_json::json!({
        "id": st.id,
        "leader": st.leader,
        "term": st.term,
        "role": format!("{:?}", st.role),
        "commit": st.commit,
        "applied": st.applied,
        "voters": st.voters,
        "learners": st.learners,
        "faults": f.describe(),
    }))
}

/// Binds the admin listener; errors name the address.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind the admin listener on {addr}"))
}

/// Serves `/metrics` and `/health` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    lab: Option<Lab>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let registry = Registry::new();
    keel_broker::metrics::register(&registry)?;
    keel_kafka::metrics::register(&registry)?;
    let state = StateGauges::new(&registry)?;
    let admin = Arc::new(Admin {
        lab,
        broker,
        registry,
        state,
    });
    loop {
        let (sock, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return Ok(()),
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move {
                    if req.method() == Method::POST && req.uri().path() == "/table/decommission" {
                        return Ok::<_, Infallible>(admin.decommission().await);
                    }
                    Ok::<_, Infallible>(admin.respond(&req))
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), service)
                .await
            {
                tracing::debug!(%peer, "admin connection ended: {e}");
            }
        });
    }
}
