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
//! - Every five seconds it checkpoints the high watermarks
//!   (`replication-offset-checkpoint`), where a restart starts from.
//! - Every second, as leader, it proposes the ISR changes the broker sees:
//!   followers not caught up for `replica.lag.time.max.ms` leave the ISR,
//!   caught-up replicas join it, each through a PartitionChange whose
//!   partition and leader epochs must still be current at apply (KRaft's
//!   AlterPartition, KIP-497; KIP-903's check that a joining broker is live
//!   is the metadata's).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, OffsetForLeaderEpochRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use keel_broker::{Broker, FollowerAppend};
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
/// How long a replica fetcher fails before it says so at WARN (and again
/// as often while it goes on failing).
const FAILING_WARN_AFTER: Duration = Duration::from_secs(10);
/// Kafka's replica.high.watermark.checkpoint.interval.ms default.
const HW_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

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
    let mut checkpoint_tick = tokio::time::interval(HW_CHECKPOINT_INTERVAL);
    // Whether this node was cut off from the controller at the last look.
    let mut was_stale = false;
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
                    cluster.clone(),
                    id,
                    stop.clone(),
                ))
            });
        }
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            changed = image.changed() => if changed.is_err() { break },
            _ = isr_tick.tick() => {
                // Cut off for a session: the writes waiting here can never be
                // acknowledged by this node; answer them now, so producers
                // move to the new leader instead of waiting out their timeout.
                let stale = !(cluster.fresh)();
                if stale && !was_stale {
                    let n = broker.fail_waiting_writes();
                    tracing::warn!("no word from the controller for a broker session: acting as leader of nothing; {n} waiting writes answered NOT_LEADER_OR_FOLLOWER");
                } else if !stale && was_stale {
                    tracing::info!("in touch with the controller again");
                }
                was_stale = stale;
                let now = cluster.image.borrow().clone();
                propose_isr_changes(&broker, &now, &cluster.propose, lag_ms).await;
            }
            _ = checkpoint_tick.tick() => {
                let b = broker.clone();
                match tokio::task::spawn_blocking(move || b.checkpoint_high_watermarks()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("high watermark checkpoint: {e}"),
                    Err(e) => tracing::warn!("high watermark checkpoint: {e}"),
                }
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
    cluster: ClusterView,
    leader: i32,
    stop: watch::Receiver<bool>,
) {
    let (image, propose) = (&cluster.image, &cluster.propose);
    let me = broker.node_id();
    // The epoch at which each partition last checked its tail against the leader.
    let mut truncated: BTreeMap<(String, i32), i32> = BTreeMap::new();
    let mut conn: Option<(String, Connection)> = None;
    let mut failing_since: Option<std::time::Instant> = None;
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
        if cluster.is_cut(leader) {
            // The lab cut the link: nothing goes through, the connection
            // with it (a real partition would time it out).
            conn = None;
            tokio::time::sleep(RETRY).await;
            continue;
        }
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
                truncate_by_epoch(&broker, propose, c, me, leader, &stale).await?;
                for (k, e) in stale {
                    truncated.insert(k, e);
                }
            }
            fetch_once(&broker, c, me, leader, &parts).await
        }
        .await;
        if let Err(e) = result {
            // A fetcher that keeps failing says so, once in a while: at
            // debug only, a follower that never caught up was invisible.
            if failing_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
                >= FAILING_WARN_AFTER
            {
                tracing::warn!(
                    leader,
                    "replica fetcher failing for {FAILING_WARN_AFTER:?}: {e:#}"
                );
                failing_since = Some(std::time::Instant::now());
            } else {
                tracing::debug!(leader, "replica fetcher: {e:#}");
            }
            conn = None;
            tokio::time::sleep(RETRY).await;
        } else {
            failing_since = None;
        }
    }
}

/// Rounds of OffsetsForLeaderEpoch one truncation may take: each round that
/// does not finish removes at least this replica's latest epoch, so a log
/// with more epochs than this past the divergence is finished on the next
/// pass of the fetcher (an error here makes it start over).
const TRUNCATION_ROUNDS: usize = 64;

/// KIP-279: ask the leader where this replica's latest epoch ends there, and
/// drop whatever this replica holds past it; when the leader never had that
/// epoch, cut back to this replica's own end of the epoch the leader names
/// and ask again, until the logs agree (`keel_storage::truncation`).
async fn truncate_by_epoch(
    broker: &Broker,
    propose: &Proposer,
    c: &Connection,
    me: i32,
    leader: i32,
    parts: &[((String, i32), i32)],
) -> anyhow::Result<()> {
    let epochs: BTreeMap<(String, i32), i32> = parts.iter().cloned().collect();
    let mut pending: Vec<(String, i32)> = parts.iter().map(|(k, _)| k.clone()).collect();
    for _ in 0..TRUNCATION_ROUNDS {
        if pending.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<String, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (topic, p) in &pending {
            let b = broker.clone();
            let (t, i) = (topic.clone(), *p);
            let (_, latest) =
                tokio::task::spawn_blocking(move || b.replica_position(&t, i)).await??;
            let Some(latest) = latest else {
                continue; // An empty log has nothing to truncate.
            };
            let epoch = epochs.get(&(topic.clone(), *p)).copied().unwrap_or(-1);
            by_topic.entry(topic.clone()).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(*p)
                    .with_current_leader_epoch(epoch)
                    .with_leader_epoch(latest),
            );
        }
        pending.clear();
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
                            .with_topic(TopicName(StrBytes::from_string(t)))
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
                let b = broker.clone();
                let topic = t.topic.to_string();
                let part = p.partition;
                let key = (t.topic.to_string(), part);
                let following = (leader, epochs.get(&key).copied().unwrap_or(-1));
                let (epoch, end) = (p.leader_epoch, p.end_offset);
                let (lost, done) = tokio::task::spawn_blocking(move || {
                    b.truncate_replica(&topic, part, following, epoch, end)
                })
                .await??;
                if let Some((from, to)) = lost {
                    let epoch = epochs.get(&key).copied().unwrap_or(-1);
                    report_loss(broker, propose, t.topic.as_str(), part, from, to, epoch).await;
                }
                if !done {
                    pending.push(key);
                }
            }
        }
    }
    anyhow::bail!("OffsetsForLeaderEpoch: still diverging after {TRUNCATION_ROUNDS} rounds")
}

/// One Fetch of every partition this fetcher copies; appends what came.
async fn fetch_once(
    broker: &Broker,
    c: &Connection,
    me: i32,
    leader: i32,
    parts: &BTreeMap<(String, i32), i32>,
) -> anyhow::Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    let mut asked = BTreeMap::new();
    for ((topic, p), epoch) in parts {
        let b = broker.clone();
        let (t, i) = (topic.clone(), *p);
        let (held, start) = tokio::task::spawn_blocking(move || {
            let (held, _) = b.replica_position(&t, i)?;
            // Where this replica's log starts: the leader's low watermark
            // for DeleteRecords counts it.
            let start = b
                .topic(&t)
                .and_then(|t| t.partition(i))
                .map_or(-1, |p| p.info().log_start_offset);
            Ok::<_, keel_broker::BrokerError>((held, start))
        })
        .await??;
        asked.insert((topic.clone(), *p), held);
        by_topic.entry(topic).or_default().push(
            FetchPartition::default()
                .with_partition(*p)
                .with_current_leader_epoch(*epoch)
                .with_fetch_offset(held)
                .with_log_start_offset(start)
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
            let key = (t.topic.to_string(), p.partition_index);
            let (Some(epoch), Some(held)) = (parts.get(&key), asked.get(&key)) else {
                continue; // Not asked: nothing to take.
            };
            got.push((
                key,
                p.records.unwrap_or_default(),
                (p.high_watermark, p.log_start_offset),
                *epoch,
                *held,
            ));
        }
    }
    if !got.is_empty() {
        // One blocking call: every partition appended, then fsynced together.
        let b = broker.clone();
        let results = tokio::task::spawn_blocking(move || {
            let parts = got
                .iter()
                .map(
                    |((topic, p), bytes, (hw, start), epoch, held)| FollowerAppend {
                        topic: topic.clone(),
                        partition: *p,
                        records: bytes.as_ref(),
                        high_watermark: *hw,
                        leader,
                        leader_epoch: *epoch,
                        fetch_offset: *held,
                        log_start_offset: *start,
                    },
                )
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
    // KIP-903: only a live, unfenced broker may join an ISR.
    // (The live ids, not the whole image, go to the blocking task.)
    let live: std::collections::BTreeSet<i32> = image
        .nodes
        .keys()
        .copied()
        .filter(|id| image.is_live(*id))
        .collect();
    let Ok(changes) =
        tokio::task::spawn_blocking(move || b.isr_changes(lag_ms, |id| live.contains(&id))).await
    else {
        return;
    };
    for ch in changes {
        let refused = || broker.isr_proposal_refused(&ch.topic, ch.partition);
        let Some(p) = image.partition(&ch.topic, ch.partition) else {
            refused();
            continue;
        };
        if p.leader_epoch != ch.leader_epoch {
            refused();
            continue; // The broker has not applied the newest metadata yet.
        }
        // Based on the partition epoch the broker computed the change from,
        // not this newer image's: a proposal from an ISR the controller has
        // changed since must be refused (keel-sim seed 351 showed what
        // happens otherwise).
        let rec = Record::new(Kind::PartitionChange(PartitionChange {
            topic: ch.topic.clone(),
            partition: ch.partition,
            partition_epoch: ch.partition_epoch,
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
                refused();
                tracing::debug!(topic = %ch.topic, partition = ch.partition, "ISR change refused: {e}")
            }
            Err(e) => {
                tracing::debug!(topic = %ch.topic, partition = ch.partition, "ISR change not proposed: {e}")
            }
        }
    }
}
