//! The group coordinator: the [`Groups`] state machine wired to the node's
//! `__consumer_offsets` topic, where committed offsets and group metadata are
//! written in Kafka's formats and read back at start-up.
//!
//! Every change is appended to the group's partition of `__consumer_offsets`
//! (`abs(groupId.hashCode) % 50`, as Kafka places it) under the groups lock, so the
//! log holds changes in the order they were made. An OffsetCommit is answered
//! after its record is fsynced, and only then enters the cache OffsetFetch reads:
//! a committed offset that was acknowledged survives kill -9, and nobody reads an
//! offset a crash could take back.

use std::collections::BTreeMap;
use std::sync::MutexGuard;

use keel_storage::batch;
use tokio::sync::oneshot;

use super::{Broker, Produced, OFFSETS_TOPIC};
use crate::consumer_groups::{self, ConsumerGroup, TopicMeta};
use crate::group_records::{
    decode_consumer_group, encode_consumer_group, partition_for, GroupValue, OffsetValue, RecordKey,
};
use crate::groups::{
    Committed, GroupDescription, Groups, JoinRequest, JoinResponse, SyncRequest, SyncResponse,
};
use crate::{BrokerError, Result};

/// One partition's offset in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// A committed offset as OffsetFetch returns it; `None` when nothing is committed.
pub type FetchedOffset = (String, i32, Option<OffsetValue>);

/// A partition's outcome in a request about many.
pub type PartitionResult = ((String, i32), Result<()>);

/// A group as ListGroups shows it: id, protocol type, state name, group type
/// ("classic" or "consumer", KIP-848).
pub type ListedGroup = (String, String, &'static str, &'static str);

/// A group's latest metadata record while loading: classic or KIP-848.
enum StoredGroup {
    Classic(Option<GroupValue>),
    Consumer(Option<ConsumerGroup>),
}

type Record = (Vec<u8>, Option<Vec<u8>>);

/// Waits for an append to `__consumer_offsets` to be fsynced.
async fn await_durable(produced: Produced) -> Result<()> {
    match produced.durable {
        Some(durable) => durable.await.map_err(|_| BrokerError::ShuttingDown)?,
        None => Ok(()),
    }
}

fn gone() -> BrokerError {
    BrokerError::CoordinatorNotAvailable("the node is shutting down".into())
}

impl Broker {
    fn groups(&self) -> MutexGuard<'_, Groups> {
        self.inner.groups.lock().expect("groups lock")
    }

    /// `__consumer_offsets`, created on first use as Kafka creates it (compacted,
    /// 100 MiB segments).
    fn ensure_offsets_topic(&self) -> Result<()> {
        if self.topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        if self.inner.config.offsets_topic_from_cluster {
            // On a cluster the controller creates it (FindCoordinator asks).
            return Err(BrokerError::NotCoordinator(format!(
                "this broker holds no replica of {OFFSETS_TOPIC}"
            )));
        }
        let configs = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "104857600"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        match self.create_topic(
            OFFSETS_TOPIC,
            self.inner.config.offsets_topic_partitions,
            1,
            configs,
            false,
        ) {
            Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// FindCoordinator for a group: this node, once its offsets topic exists.
    pub fn find_group_coordinator(&self, group_id: &str) -> Result<()> {
        let _ = group_id;
        self.ensure_offsets_topic()
    }

    /// Appends records for `group` to its offsets partition (acks=all).
    fn append_group_records(&self, group: &str, records: &[Record]) -> Result<Produced> {
        self.ensure_offsets_topic()?;
        let partitions = self.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count());
        let kvs: Vec<batch::KeyValue> = records
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), v.as_deref()))
            .collect();
        let b = batch::build(self.now_ms(), &kvs);
        self.append_batch(OFFSETS_TOPIC, partition_for(group, partitions), &b, -1)
    }

    /// Writes the metadata of every group whose membership changed. Failures are
    /// logged: the group's state in memory stays right, and the next change
    /// writes it again.
    fn write_dirty_groups(&self, gs: &mut Groups) {
        let dirty = std::mem::take(&mut gs.dirty);
        for id in dirty {
            let Some(g) = gs.get(&id) else { continue };
            let record = match &g.consumer {
                Some(c) => (
                    RecordKey::ConsumerGroup(id.clone()).encode(),
                    Some(encode_consumer_group(c)),
                ),
                None => (
                    RecordKey::Group(id.clone()).encode(),
                    Some(g.stored().encode()),
                ),
            };
            let end = match self.append_group_records(&id, &[record]) {
                Ok(p) => Some(p.base_offset + 1),
                Err(e) => {
                    tracing::error!(group = %id, "writing group metadata failed: {e}");
                    None
                }
            };
            gs.written.insert(id, end);
        }
    }

    /// Waits until the group's latest metadata record is fsynced. Kafka answers
    /// SyncGroup, and a static member's rejoin, from the callback of the group's
    /// store (`GroupMetadataManager.storeGroup`); so does Keel, so an assignment a
    /// member was told survives kill -9.
    async fn group_durable(&self, group_id: &str) -> Result<()> {
        // Taking the lock orders this after the call that answered us, which wrote
        // the group's metadata before letting go of it.
        let end = self.groups().written.get(group_id).copied();
        match end {
            None => Ok(()),
            Some(None) => Err(BrokerError::CoordinatorNotAvailable(format!(
                "writing the metadata of group {group_id} failed; rejoin"
            ))),
            Some(Some(end)) => {
                let partitions = self.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count());
                self.wait_durable(OFFSETS_TOPIC, partition_for(group_id, partitions), end)
                    .await
            }
        }
    }

    pub async fn join_group(&self, req: JoinRequest) -> Result<JoinResponse> {
        self.ensure_offsets_topic()?;
        self.check_coordinator(&req.group_id)?;
        let group_id = req.group_id.clone();
        let (tx, rx) = oneshot::channel();
        {
            let mut gs = self.groups();
            gs.join(req, self.now_ms(), tx);
            self.write_dirty_groups(&mut gs);
        }
        let resp = rx.await.map_err(|_| gone())??;
        self.group_durable(&group_id).await?;
        Ok(resp)
    }

    pub async fn sync_group(&self, req: SyncRequest) -> Result<SyncResponse> {
        self.check_coordinator(&req.group_id)?;
        let group_id = req.group_id.clone();
        let (tx, rx) = oneshot::channel();
        {
            let mut gs = self.groups();
            gs.sync(req, self.now_ms(), tx);
            self.write_dirty_groups(&mut gs);
        }
        let resp = rx.await.map_err(|_| gone())??;
        self.group_durable(&group_id).await?;
        Ok(resp)
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<()> {
        self.check_coordinator(group_id)?;
        let now = self.now_ms();
        self.groups()
            .heartbeat(group_id, generation, member_id, instance_id, now)
    }

    pub fn leave_group(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Result<Vec<(String, Result<()>)>> {
        self.check_coordinator(group_id)?;
        let mut gs = self.groups();
        let out = gs.leave(group_id, leaving, self.now_ms());
        self.write_dirty_groups(&mut gs);
        out
    }

    /// ConsumerGroupHeartbeat (KIP-848): answered once the group's record is
    /// fsynced, so no member acts on an assignment a crash could take back.
    /// `topics`: every topic of the cluster.
    pub async fn consumer_group_heartbeat(
        &self,
        req: consumer_groups::Heartbeat,
        topics: &[TopicMeta],
    ) -> Result<consumer_groups::HeartbeatResponse> {
        self.ensure_offsets_topic()?;
        self.check_coordinator(&req.group_id)?;
        let group_id = req.group_id.clone();
        let resp = {
            let mut gs = self.groups();
            let resp = gs.consumer_heartbeat(req, topics, self.now_ms());
            self.write_dirty_groups(&mut gs);
            resp?
        };
        self.group_durable(&group_id).await?;
        Ok(resp)
    }

    /// ConsumerGroupDescribe for one group: the group, or GROUP_ID_NOT_FOUND.
    pub fn describe_consumer_group(&self, group_id: &str) -> Result<ConsumerGroup> {
        self.check_coordinator(group_id)?;
        let gs = self.groups();
        match gs.get(group_id) {
            Some(g) => g.consumer.clone().ok_or_else(|| {
                BrokerError::GroupIdNotFound(format!("{group_id} is not a consumer group"))
            }),
            None => Err(BrokerError::GroupIdNotFound(group_id.to_string())),
        }
    }

    /// The default server assignor (`group.consumer.assignors`' first).
    pub fn default_assignor(&self) -> consumer_groups::Assignor {
        self.inner.config.group_config.consumer.assignor
    }

    /// OffsetFetch v9+ naming a member of a consumer group (KIP-848).
    pub fn check_offset_fetch_member(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<()> {
        self.groups().check_fetch(group_id, member_id, epoch)
    }

    /// OffsetCommit: checks membership, writes one record per partition, waits
    /// for fsync, then makes the offsets visible. The outer error is the group's;
    /// the inner ones are per partition (unknown topic, metadata too large).
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetCommit>,
    ) -> Result<Vec<Result<()>>> {
        self.ensure_offsets_topic()?;
        self.check_coordinator(group_id)?;
        let now = self.now_ms();
        let limits = self.inner.config.group_config;
        let mut results = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for o in offsets {
            let r = if o.metadata.len() > limits.offset_metadata_max_bytes {
                Err(BrokerError::OffsetMetadataTooLarge(o.metadata.len()))
            } else if !self.partition_exists(&o.topic, o.partition) {
                Err(BrokerError::UnknownTopicOrPartition(format!(
                    "{}-{}",
                    o.topic, o.partition
                )))
            } else {
                let value = OffsetValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp: now,
                };
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                };
                records.push((key.encode(), Some(value.encode())));
                accepted.push(((o.topic, o.partition), value));
                Ok(())
            };
            results.push(r);
        }
        let produced = {
            let mut gs = self.groups();
            gs.check_commit(group_id, generation, member_id, instance_id, now)?;
            if records.is_empty() {
                return Ok(results);
            }
            let produced = self.append_group_records(group_id, &records)?;
            drop(gs);
            produced
        };
        let base_offset = produced.base_offset;
        await_durable(produced).await?;
        let mut gs = self.groups();
        if let Some(g) = gs.get_mut(group_id) {
            for (tp, value) in accepted {
                let newer = g
                    .offsets
                    .get(&tp)
                    .is_none_or(|c| c.log_offset <= base_offset);
                if newer {
                    g.offsets.insert(
                        tp,
                        Committed {
                            value,
                            log_offset: base_offset,
                        },
                    );
                }
            }
        }
        Ok(results)
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every partition
    /// the group has committed when `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<FetchedOffset> {
        let gs = self.groups();
        let g = gs.get(group_id);
        match partitions {
            Some(ps) => ps
                .into_iter()
                .map(|(t, p)| {
                    let v = g.and_then(|g| g.offsets.get(&(t.clone(), p)).map(|c| c.value.clone()));
                    (t, p, v)
                })
                .collect(),
            None => g
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), c)| (t.clone(), *p, Some(c.value.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn list_groups(&self) -> Vec<ListedGroup> {
        let gs = self.groups();
        let mut out: Vec<ListedGroup> = gs
            .ids()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state_name(),
                    g.group_type(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// DescribeGroups for one group; `None` when the node knows no such group
    /// (Kafka answers with state "Dead").
    pub fn describe_group(&self, group_id: &str) -> Option<Result<GroupDescription>> {
        self.groups().get(group_id).map(|g| match g.consumer {
            // Kafka 4 describes KIP-848 groups with ConsumerGroupDescribe.
            Some(_) => Err(BrokerError::GroupIdNotFound(format!(
                "{group_id} is a consumer group (KIP-848): describe it with ConsumerGroupDescribe"
            ))),
            None => Ok(g.describe()),
        })
    }

    /// DeleteGroups for one group: only an empty group can go. Its metadata and
    /// offsets are tombstoned, so compaction removes them.
    pub async fn delete_group(&self, group_id: &str) -> Result<()> {
        self.check_coordinator(group_id)?;
        let produced = self.tombstone_group(group_id)?;
        await_durable(produced).await
    }

    fn tombstone_group(&self, group_id: &str) -> Result<Produced> {
        let mut gs = self.groups();
        let g = gs
            .get(group_id)
            .ok_or_else(|| BrokerError::GroupIdNotFound(group_id.to_string()))?;
        if g.has_members() {
            return Err(BrokerError::NonEmptyGroup(group_id.to_string()));
        }
        let mut records: Vec<Record> = vec![
            (RecordKey::Group(group_id.to_string()).encode(), None),
            (
                RecordKey::ConsumerGroup(group_id.to_string()).encode(),
                None,
            ),
        ];
        records.extend(g.offsets.keys().map(|(t, p)| {
            let key = RecordKey::Offset {
                group: group_id.to_string(),
                topic: t.clone(),
                partition: *p,
            };
            (key.encode(), None)
        }));
        let produced = self.append_group_records(group_id, &records)?;
        gs.remove(group_id);
        Ok(produced)
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not
    /// consume now. Per-partition errors for subscribed topics.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<PartitionResult>> {
        self.check_coordinator(group_id)?;
        let (out, produced) = self.tombstone_offsets(group_id, partitions)?;
        if let Some(p) = produced {
            await_durable(p).await?;
        }
        Ok(out)
    }

    fn tombstone_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<(Vec<PartitionResult>, Option<Produced>)> {
        let mut gs = self.groups();
        let g = gs
            .get(group_id)
            .ok_or_else(|| BrokerError::GroupIdNotFound(group_id.to_string()))?;
        let subscribed = g.subscribed_topics().ok_or_else(|| {
            BrokerError::NonEmptyGroup(format!(
                "{group_id} (its members' subscriptions cannot be read)"
            ))
        })?;
        let mut out = Vec::new();
        let mut records = Vec::new();
        let mut removed = Vec::new();
        for (t, p) in partitions {
            if subscribed.contains(&t) {
                out.push(((t.clone(), p), Err(BrokerError::GroupSubscribedToTopic(t))));
                continue;
            }
            if g.offsets.contains_key(&(t.clone(), p)) {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: t.clone(),
                    partition: p,
                };
                records.push((key.encode(), None));
                removed.push((t.clone(), p));
            }
            out.push(((t, p), Ok(())));
        }
        let produced = if records.is_empty() {
            None
        } else {
            Some(self.append_group_records(group_id, &records)?)
        };
        if let Some(g) = gs.get_mut(group_id) {
            for tp in removed {
                g.offsets.remove(&tp);
            }
        }
        Ok((out, produced))
    }

    /// Group timers (sessions, rebalance timeouts), run by the node's ticker; with
    /// `retention`, offset expiry too, written as tombstones.
    pub(super) fn tick_groups(&self, retention: bool) {
        let mut gs = self.groups();
        let now = self.now_ms();
        gs.tick(now);
        self.write_dirty_groups(&mut gs);
        if !retention {
            return;
        }
        for (group, expired, gone) in gs.expire_offsets(now) {
            let mut records: Vec<Record> = expired
                .iter()
                .map(|(t, p)| {
                    let key = RecordKey::Offset {
                        group: group.clone(),
                        topic: t.clone(),
                        partition: *p,
                    };
                    (key.encode(), None)
                })
                .collect();
            if gone {
                records.push((RecordKey::Group(group.clone()).encode(), None));
                records.push((RecordKey::ConsumerGroup(group.clone()).encode(), None));
            }
            tracing::info!(
                group,
                offsets = expired.len(),
                gone,
                "expired committed offsets"
            );
            if let Err(e) = self.append_group_records(&group, &records) {
                tracing::error!(group, "writing offset expiry failed: {e}");
            }
        }
    }

    /// Rebuilds the coordinator's state from `__consumer_offsets` at start-up: the
    /// last record of each key wins, a tombstone deletes.
    pub(super) fn load_groups(&self) -> Result<()> {
        let Some(topic) = self.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        for index in 0..topic.partition_count() {
            self.load_group_partition(index)?;
        }
        Ok(())
    }

    /// Loads the groups of one partition of `__consumer_offsets` (replacing
    /// what was held for them): at start-up, and when this broker becomes the
    /// partition's leader, so its coordinator (Kafka's
    /// `GroupMetadataManager.loadGroupsForPartition`).
    pub(super) fn load_group_partition(&self, index: i32) -> Result<()> {
        let Some(topic) = self.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let Some(p) = topic.partition(index) else {
            return Ok(());
        };
        let partitions = topic.partition_count();
        let now = self.now_ms();
        let mut offsets: BTreeMap<(String, String, i32), Option<Committed>> = BTreeMap::new();
        let mut metadata: BTreeMap<String, StoredGroup> = BTreeMap::new();
        let mut records = 0u64;
        let mut at = p.lock().log.log_start_offset();
        loop {
            let bytes = {
                let s = p.lock();
                // Up to the log end: a new leader's log holds every committed record.
                s.log.read(at, 1 << 20, i64::MAX)?.bytes
            };
            if bytes.is_empty() {
                break;
            }
            for range in batch::split(&bytes)? {
                let h = batch::for_each_record(&bytes[range], |h, r| {
                    records += 1;
                    let log_offset = h.base_offset + i64::from(r.offset_delta);
                    match r.key.and_then(RecordKey::decode) {
                        Some(RecordKey::Offset {
                            group,
                            topic,
                            partition,
                        }) => {
                            let v = r.value.and_then(OffsetValue::decode);
                            let c = v.map(|value| Committed { value, log_offset });
                            offsets.insert((group, topic, partition), c);
                        }
                        Some(RecordKey::Group(group)) => {
                            let v = r.value.and_then(GroupValue::decode);
                            metadata.insert(group, StoredGroup::Classic(v));
                        }
                        Some(RecordKey::ConsumerGroup(group)) => {
                            let v = r.value.and_then(decode_consumer_group);
                            metadata.insert(group, StoredGroup::Consumer(v));
                        }
                        None => tracing::warn!(
                            partition = index,
                            offset = log_offset,
                            "skipping a record of {OFFSETS_TOPIC} with an unknown key"
                        ),
                    }
                    false
                })?;
                at = h.last_offset() + 1;
            }
        }
        let mut gs = self.groups();
        unload(&mut gs, partitions, index);
        for (id, value) in metadata {
            match value {
                StoredGroup::Classic(v) => gs.restore(&id, v, now),
                StoredGroup::Consumer(v) => gs.restore_consumer(&id, v, now),
            }
        }
        for ((group, topic, partition), c) in offsets {
            let Some(c) = c else { continue };
            if let Ok(g) = gs.get_or_create(&group, now) {
                g.offsets.insert((topic, partition), c);
            }
        }
        let ids: Vec<String> = gs
            .ids()
            .filter(|g| partition_for(&g.id, partitions) == index)
            .map(|g| g.id.clone())
            .collect();
        for id in &ids {
            gs.forget_if_unused(id);
        }
        // One line per partition that held groups; the empty ones (most of
        // fifty on a young cluster) are only worth a debug line.
        if ids.is_empty() {
            tracing::debug!(
                records,
                partition = index,
                "no group state in {OFFSETS_TOPIC}"
            );
        } else {
            tracing::info!(
                records,
                partition = index,
                groups = ids.len(),
                "loaded group state from {OFFSETS_TOPIC}"
            );
        }
        Ok(())
    }

    /// Drops the groups of one partition of `__consumer_offsets`: this broker
    /// no longer coordinates them. Members waiting in a join or sync hear
    /// NOT_COORDINATOR and find the new coordinator.
    pub(super) fn unload_group_partition(&self, index: i32) {
        let partitions = self.topic(OFFSETS_TOPIC).map_or(1, |t| t.partition_count());
        let mut gs = self.groups();
        let n = unload(&mut gs, partitions, index);
        if n > 0 {
            tracing::info!(
                partition = index,
                groups = n,
                "unloaded groups: no longer their coordinator"
            );
        }
    }

    /// NOT_COORDINATOR unless this broker leads the group's partition of
    /// `__consumer_offsets` (always true where the partition is not replicated).
    pub fn check_coordinator(&self, group_id: &str) -> Result<()> {
        let Some(topic) = self.topic(OFFSETS_TOPIC) else {
            if self.inner.config.offsets_topic_from_cluster {
                return Err(BrokerError::NotCoordinator(format!(
                    "this broker holds no replica of {OFFSETS_TOPIC}"
                )));
            }
            return Ok(());
        };
        let index = partition_for(group_id, topic.partition_count());
        let Some(p) = topic.partition(index) else {
            return Ok(());
        };
        let s = p.lock();
        match &s.repl {
            Some(r) if !r.is_leader() => Err(BrokerError::NotCoordinator(format!(
                "broker {} is not the coordinator of group {group_id}",
                r.role().me
            ))),
            _ => Ok(()),
        }
    }
}

/// Removes every group of partition `index`; returns how many.
fn unload(gs: &mut Groups, partitions: i32, index: i32) -> usize {
    let ids: Vec<String> = gs
        .ids()
        .filter(|g| partition_for(&g.id, partitions) == index)
        .map(|g| g.id.clone())
        .collect();
    for id in &ids {
        gs.remove(id);
    }
    ids.len()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::{pin, Pin};
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::{BrokerConfig, SystemClock};

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Each answer that reports a change to the group waits for the fsync of the
    /// record that holds it; with flushes held back, none of them comes.
    #[tokio::test]
    async fn group_changes_are_answered_only_once_fsynced() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig::new(dir.path());
        config.group_config.initial_rebalance_delay_ms = 0;
        let b = Broker::open(config, Arc::new(SystemClock)).unwrap();
        b.create_topic("t", 1, 1, BTreeMap::new(), false).unwrap();
        b.ensure_offsets_topic().unwrap();
        let flusher = &b.inner.flusher;

        // Completing a join writes nothing (as in Kafka): the generation is stored
        // with its assignment, at SyncGroup.
        let mut join = crate::groups::tests::req("g", "", &["range"]);
        join.require_known_member_id = false;
        let joined = b.join_group(join).await.unwrap();
        assert_eq!(joined.generation_id, 1);

        flusher.hold(true);
        let mut sync = pin!(b.sync_group(SyncRequest {
            group_id: "g".into(),
            generation: 1,
            member_id: joined.member_id.clone(),
            assignments: vec![(joined.member_id.clone(), b"p0".to_vec())],
            ..SyncRequest::default()
        }));
        assert!(
            poll_once(sync.as_mut()).is_pending(),
            "SyncGroup answered before its fsync"
        );
        flusher.hold(false);
        assert_eq!(sync.await.unwrap().assignment, b"p0");

        let left = b
            .leave_group("g", &[(joined.member_id.clone(), None)])
            .unwrap();
        assert!(left[0].1.is_ok());
        let commit = OffsetCommit {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let committed = b.commit_offsets("g", -1, "", None, vec![commit]).await;
        assert!(committed.unwrap()[0].is_ok());

        flusher.hold(true);
        let mut delete = pin!(b.delete_offsets("g", vec![("t".into(), 0)]));
        assert!(
            poll_once(delete.as_mut()).is_pending(),
            "OffsetDelete answered before its fsync"
        );
        flusher.hold(false);
        assert!(delete.await.unwrap()[0].1.is_ok());

        flusher.hold(true);
        let mut delete = pin!(b.delete_group("g"));
        assert!(
            poll_once(delete.as_mut()).is_pending(),
            "DeleteGroups answered before its fsync"
        );
        flusher.hold(false);
        delete.await.unwrap();
        b.shutdown().unwrap();
    }
}
