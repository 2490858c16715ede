//! The replication driver of one node: Kafka's replica fetchers and the
//! leader's ISR duty (`ReplicaFetcherThread`, `Partition.maybeShrinkIsr` /
//! `maybeExpandIsr`).
//!
//! - For every other broker that leads partitions this node follows, one
//!   fetcher task sends that broker Kafka Fetch requests with this node's
//!   replica id, all those partitions in one request (one stream per broker
//!   pair, as Kafka's fetcher threads batch them). Before it copies anything
//!   of a partition at a new leader epoch, it asks the leader where its own
//!   latest epoch ends (OffsetsForLeaderEpoch) and truncates what lies
//!   beyond (KIP-101, KIP-279), so a record the leader does not have is
//!   never kept, let alone served.
//! - Every second, as leader, it proposes the ISR changes the broker sees:
//!   followers not caught up for `replica.lag.time.max.ms` leave the ISR,
//!   caught-up replicas join it, each through a PartitionChange whose
//!   partition and leader epochs must still be current at apply (KRaft's
//!   AlterPartition, KIP-497; KIP-903's check that a joining broker is live
//!   is the metadata's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use keel_broker::Broker;
use keel_meta::{record::Kind, Image, PartitionChange, Record, Replicas, NO_LEADER};
use tokio::sync::watch;

use crate::client::Connection;
use crate::handlers::{ClusterView, Proposer};

/// Kafka's replica.lag.time.max.ms default.
pub const REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;
const FETCH_WAIT_MS: i32 = 500;
const FETCH_BYTES_MAX: i32 = 16 << 20;
const PARTITION_FETCH_BYTES_MAX: i32 = 1 << 20;
const RETRY: Duration = Duration::from_millis(200);

/// Runs the fetchers and the ISR duty until `stop`.
pub async fn run(
    broker: Broker,
    cluster: ClusterView,
    lag_ms: i64,
    mut stop: watch::Receiver<bool>,
) {
    let me = broker.node_id();
    let mut image = cluster.image.clone();
    let mut fetchers: BTreeMap<i32, tokio::task::JoinHandle<()>> = BTreeMap::new();
    let mut isr_tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        // One fetcher per broker that leads something this node follows.
        let current = image.borrow_and_update().clone();
        let leaders = leaders_followed(&current, me);
        fetchers.retain(|id, task| {
            let keep = leaders.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for id in leaders {
            fetchers.entry(id).or_insert_with(|| {
                tokio::spawn(fetch_from(
                    broker.clone(),
                    cluster.image.clone(),
                    cluster.propose.clone(),
                    id,
                    stop.clone(),
                ))
            });
        }
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            changed = image.changed() => if changed.is_err() { break },
            _ = isr_tick.tick() => {
                let now = cluster.image.borrow().clone();
                propose_isr_changes(&broker, &now, &cluster.propose, lag_ms).await;
            }
        }
    }
    for (_, t) in fetchers {
        t.abort();
    }
}

/// The brokers this node fetches from: leaders of partitions it follows.
fn leaders_followed(image: &Image, me: i32) -> BTreeSet<i32> {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.replicas.contains(&me) && p.leader != me && p.leader != NO_LEADER)
        .map(|p| p.leader)
        .collect()
}

/// What one fetcher copies: (topic, partition) → the leader epoch it follows.
fn partitions_from(image: &Image, me: i32, leader: i32) -> BTreeMap<(String, i32), i32> {
    let mut out = BTreeMap::new();
    for (name, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader == leader && p.replicas.contains(&me) && leader != me {
                out.insert((name.clone(), i as i32), p.leader_epoch);
            }
        }
    }
    out
}

/// Copies every partition `leader` leads that this node follows, until the
/// image says it leads none.
async fn fetch_from(
    broker: Broker,
    image: watch::Receiver<Arc<Image>>,
    propose: Proposer,
    leader: i32,
    stop: watch::Receiver<bool>,
) {
    let me = broker.node_id();
    // The epoch at which each partition last checked its tail against the leader.
    let mut truncated: BTreeMap<(String, i32), i32> = BTreeMap::new();
    let mut conn: Option<(String, Connection)> = None;
    loop {
        let stopped = *stop.borrow();
        if stopped {
            return;
        }
        let current = image.borrow().clone();
        let parts = partitions_from(&current, me, leader);
        if parts.is_empty() {
            return;
        }
        let Some(node) = current.nodes.get(&leader) else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let addr = format!("{}:{}", node.kafka_host, node.kafka_port);
        if conn.as_ref().is_none_or(|(a, _)| *a != addr) {
            match Connection::connect(&addr).await {
                Ok(c) => conn = Some((addr.clone(), c)),
                Err(e) => {
                    tracing::debug!(leader, "replica fetcher: {e:#}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let c = &conn.as_ref().expect("connected above").1;
        truncated.retain(|k, _| parts.contains_key(k));
        let result = async {
            let stale: Vec<_> = parts
                .iter()
                .filter(|(k, e)| truncated.get(*k) != Some(*e))
                .map(|(k, e)| (k.clone(), *e))
                .collect();
            if !stale.is_empty() {
                truncate_by_epoch(&broker, &propose, c, me, &stale).await?;
                for (k, e) in stale {
                    truncated.insert(k, e);
                }
            }
            fetch_once(&broker, c, me, &parts).await
        }
        .await;
        if let Err(e) = result {
            tracing::debug!(leader, "replica fetcher: {e:#}");
            conn = None;
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// KIP-279: ask the leader where this replica's latest epoch ends there, and
/// drop whatever this replica holds past it.
async fn truncate_by_epoch(
    broker: &Broker,
    propose: &Proposer,
    c: &Connection,
    me: i32,
    parts: &[((String, i32), i32)],
) -> anyhow::Result<()> {
    let epochs: BTreeMap<(String, i32), i32> = parts.iter().cloned().collect();
    let mut asked = Vec::new();
    let mut by_topic: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    for ((topic, p), epoch) in parts {
        let b = broker.clone();
        let (t, i) = (topic.clone(), *p);
        let (_, latest) = tokio::task::spawn_blocking(move || b.replica_position(&t, i)).await??;
        let Some(latest) = latest else {
            continue; // An empty log has nothing to truncate.
        };
        asked.push((topic.clone(), *p));
        by_topic.entry(topic).or_default().push(
            OffsetForLeaderPartition::default()
                .with_partition(*p)
                .with_current_leader_epoch(*epoch)
                .with_leader_epoch(latest),
        );
    }
    if by_topic.is_empty() {
        return Ok(());
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(me))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = c.call(&req, 4).await?;
    for t in resp.topics {
        for p in t.partitions {
            if p.error_code != 0 {
                anyhow::bail!(
                    "OffsetsForLeaderEpoch {}-{}: {:?}",
                    t.topic.as_str(),
                    p.partition,
                    ResponseError::try_from_code(p.error_code)
                );
            }
            // No epoch at or below ours on the leader: nothing of ours is known
            // to it, so everything goes.
            let end = p.end_offset.max(0);
            let b = broker.clone();
            let topic = t.topic.to_string();
            let part = p.partition;
            let lost = tokio::task::spawn_blocking(move || b.truncate_replica(&topic, part, end))
                .await??;
            if let Some((from, to)) = lost {
                let epoch = epochs
                    .get(&(t.topic.to_string(), part))
                    .copied()
                    .unwrap_or(-1);
                report_loss(broker, propose, t.topic.as_str(), part, from, to, epoch).await;
            }
        }
    }
    Ok(())
}

/// One Fetch of every partition this fetcher copies; appends what came.
async fn fetch_once(
    broker: &Broker,
    c: &Connection,
    me: i32,
    parts: &BTreeMap<(String, i32), i32>,
) -> anyhow::Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    let mut asked = BTreeMap::new();
    for ((topic, p), epoch) in parts {
        let b = broker.clone();
        let (t, i) = (topic.clone(), *p);
        let (held, _) = tokio::task::spawn_blocking(move || b.replica_position(&t, i)).await??;
        asked.insert((topic.clone(), *p), held);
        by_topic.entry(topic).or_default().push(
            FetchPartition::default()
                .with_partition(*p)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(held)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(FETCH_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES_MAX)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = c.call(&req, 12).await?;
    let mut errors = Vec::new();
    let mut got = Vec::new();
    let mut restart = Vec::new();
    for t in resp.responses {
        for p in t.partitions {
            if p.error_code == ResponseError::OffsetOutOfRange.code() {
                let held = asked.get(&(t.topic.to_string(), p.partition_index));
                if held.is_some_and(|o| *o < p.log_start_offset) {
                    restart.push((t.topic.to_string(), p.partition_index, p.log_start_offset));
                    continue;
                }
            }
            if p.error_code != 0 {
                errors.push(format!(
                    "{}-{}: {:?}",
                    t.topic.as_str(),
                    p.partition_index,
                    ResponseError::try_from_code(p.error_code)
                ));
                continue;
            }
            got.push((
                t.topic.to_string(),
                p.partition_index,
                p.records.unwrap_or_default(),
                p.high_watermark,
            ));
        }
    }
    if !got.is_empty() {
        // One blocking call: every partition appended, then fsynced together.
        let b = broker.clone();
        let results = tokio::task::spawn_blocking(move || {
            let parts = got
                .iter()
                .map(|(t, p, bytes, hw)| (t.clone(), *p, bytes.as_ref(), *hw))
                .collect();
            b.append_as_follower_all(parts)
        })
        .await?;
        for r in results {
            r?;
        }
    }
    for (topic, p, start) in restart {
        let b = broker.clone();
        tokio::task::spawn_blocking(move || b.restart_replica_at(&topic, p, start)).await??;
    }
    if !errors.is_empty() {
        // A changed leader or epoch: the metadata will say; wait a little.
        tokio::time::sleep(RETRY).await;
        anyhow::bail!("fetch: {}", errors.join(", "));
    }
    Ok(())
}

/// Says what an unclean election cost: in the log, in /metrics, and in the
/// cluster metadata (kept with the partition, shown by `/cluster`).
async fn report_loss(
    broker: &Broker,
    propose: &Proposer,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    leader_epoch: i32,
) {
    tracing::error!(
        topic,
        partition,
        from,
        to,
        records = to - from,
        leader_epoch,
        "LOST committed records to an unclean leader election: offsets [{from}, {to}) \
         were acknowledged here and the new leader never had them"
    );
    crate::metrics::UNCLEAN_LOST
        .with_label_values(&[topic, &partition.to_string()])
        .inc_by(u64::try_from(to - from).unwrap_or(0));
    let rec = Record::new(Kind::ReportLoss(keel_meta::ReportLoss {
        topic: topic.to_string(),
        partition,
        node_id: broker.node_id(),
        from,
        to,
        leader_epoch,
    }));
    if let Err(e) = propose(rec).await {
        tracing::warn!(
            topic,
            partition,
            "recording the loss in the cluster metadata: {e}"
        );
    }
}

/// Proposes the ISR changes this node sees as leader.
async fn propose_isr_changes(broker: &Broker, image: &Image, propose: &Proposer, lag_ms: i64) {
    let b = broker.clone();
    let Ok(changes) = tokio::task::spawn_blocking(move || b.isr_changes(lag_ms)).await else {
        return;
    };
    for ch in changes {
        let Some(p) = image.partition(&ch.topic, ch.partition) else {
            continue;
        };
        if p.leader_epoch != ch.leader_epoch {
            continue; // The broker has not applied the newest metadata yet.
        }
        let rec = Record::new(Kind::PartitionChange(PartitionChange {
            topic: ch.topic.clone(),
            partition: ch.partition,
            partition_epoch: p.partition_epoch,
            isr: Some(Replicas {
                replicas: ch.isr.clone(),
            }),
            leader: None,
            unclean: false,
            leader_epoch: Some(ch.leader_epoch),
            forced: false,
        }));
        match propose(rec).await {
            Ok(Ok(_)) => {
                if ch.isr.len() < p.isr.len() {
                    crate::metrics::ISR_SHRINKS.inc();
                } else {
                    crate::metrics::ISR_EXPANDS.inc();
                }
                tracing::info!(
                    topic = %ch.topic,
                    partition = ch.partition,
                    from = ?p.isr,
                    to = ?ch.isr,
                    "ISR changed"
                )
            }
            Ok(Err(e)) => {
                tracing::debug!(topic = %ch.topic, partition = ch.partition, "ISR change refused: {e}")
            }
            Err(e) => {
                tracing::debug!(topic = %ch.topic, partition = ch.partition, "ISR change not proposed: {e}")
            }
        }
    }
}
