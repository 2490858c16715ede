//! The Kafka face on a cluster: topics live in the cluster metadata on the
//! quorum (`keel-meta`), so any broker creates, deletes and alters them by
//! proposing a record (KRaft forwards these requests to its controller; a
//! Raft proposal from any member reaches the leader the same way), places
//! replicas rack-aware, and serves Metadata from the image every node
//! applies. A broker answers produce, fetch and list-offsets only for the
//! partitions it leads; others get NOT_LEADER_OR_FOLLOWER (or
//! LEADER_NOT_AVAILABLE while a partition has no leader), so clients refresh
//! metadata and go to the leader.
//!
//! Topics the image does not hold (`__consumer_offsets`, which each node
//! still keeps for itself) are served from the local broker as before.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;
use keel_broker::{BrokerError, TopicConfigs};
use keel_meta::{record::Kind, Applied, Image, MetaError, Record, Replicas, NO_LEADER};
use uuid::Uuid;

use super::Handler;

/// Proposes a metadata record through the quorum; resolves once it is applied
/// on this node, with what it did (or why it changed nothing), or with why
/// it could not be proposed.
pub type Proposer = Arc<
    dyn Fn(
            Record,
        )
            -> Pin<Box<dyn Future<Output = Result<Result<Applied, MetaError>, String>> + Send>>
        + Send
        + Sync,
>;

/// What this node knows of the cluster: the metadata image it applied from
/// the quorum, who the controller is, and how to propose a change.
#[derive(Clone)]
pub struct ClusterView {
    pub image: tokio::sync::watch::Receiver<Arc<Image>>,
    /// The controller (the Raft leader), or -1 when none is known.
    pub controller: Arc<dyn Fn() -> i32 + Send + Sync>,
    pub propose: Proposer,
    /// Kafka's `replica.selector.class` set to the rack-aware selector: a
    /// leader sends a consumer that names its rack to an in-sync replica in
    /// that rack (KIP-392). Off by default, as in Kafka.
    pub rack_aware_reads: bool,
    /// Whether the link between this node and broker `id` is cut (the lab's
    /// `/lab/isolate`, as for Raft and the tables face): a follower does not
    /// fetch from a leader it is cut off from, and a leader refuses a cut
    /// follower's fetch, so a partition leader can be isolated from its
    /// followers while its clients still reach it (issue 34: the zombie
    /// leader).
    pub cut: Arc<dyn Fn(i32) -> bool + Send + Sync>,
    /// Whether this node's metadata can be trusted to say what it leads: it
    /// was in touch with the quorum's leader within the broker session
    /// timeout (`keel_raft::Node::in_touch_within`). A node cut off for
    /// longer has been fenced by the controller, or is about to be, and its
    /// partitions led elsewhere: it stops acting as their leader (Produce
    /// and a consumer's Fetch get NOT_LEADER_OR_FOLLOWER, Metadata shows
    /// them leaderless) so clients go to the brokers that know, instead of
    /// waiting on a zombie until their requests time out.
    pub fresh: Arc<dyn Fn() -> bool + Send + Sync>,
    /// This process's incarnation: the local logs take their roles only
    /// from an image that holds its registration
    /// (`Image::holds_registration`).
    pub incarnation: u64,
}

impl ClusterView {
    pub(crate) fn is_cut(&self, id: i32) -> bool {
        (self.cut)(id)
    }
}

/// Where a consumer's fetch of one partition is served (KIP-392).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// This node leads it (or the topic is local): read here.
    Leader,
    /// This node follows it and the consumer may read from a follower.
    Follower,
    /// The leader names a replica in the consumer's rack; no records.
    Elsewhere(i32),
}

/// A partition's leader as KIP-951's hints name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    pub leader: i32,
    pub epoch: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// Kafka's default.replication.factor is a broker setting; Keel's default is
/// min(3, live brokers): three copies where there are three brokers.
pub const DEFAULT_REPLICATION_FACTOR: usize = 3;

/// A topic as created through the cluster metadata.
pub struct Created {
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: TopicConfigs,
}

fn meta_err(e: MetaError) -> BrokerError {
    match e {
        MetaError::TopicExists(n) => BrokerError::TopicAlreadyExists(n),
        MetaError::UnknownTopic(n) => BrokerError::UnknownTopicOrPartition(n),
        MetaError::UnknownPartition(t, p) => {
            BrokerError::UnknownTopicOrPartition(format!("{t}-{p}"))
        }
        other => BrokerError::InvalidRequest(other.to_string()),
    }
}

impl Handler {
    /// The metadata image, when this node is part of a cluster.
    pub(crate) fn image(&self) -> Option<Arc<Image>> {
        self.cluster.as_ref().map(|c| c.image.borrow().clone())
    }

    /// Whether the cluster metadata governs `topic` (else it is local only).
    pub(crate) fn governed(&self, topic: &str) -> bool {
        self.image().is_some_and(|i| i.topics.contains_key(topic))
    }

    /// Refuses to serve a partition this node does not lead, so the client
    /// goes to the one that does.
    pub(crate) fn check_leader(&self, topic: &str, partition: i32) -> Result<(), BrokerError> {
        let Some(image) = self.image() else {
            return Ok(());
        };
        let Some(t) = image.topics.get(topic) else {
            return Ok(());
        };
        let p = usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(format!("{topic}-{partition}")))?;
        let me = self.broker.node_id();
        if p.leader == me && !self.cluster.as_ref().is_none_or(|c| (c.fresh)()) {
            Err(BrokerError::NotLeader(format!(
                "broker {me} has not heard from the controller for a broker session: \
                 {topic}-{partition} may be led elsewhere now"
            )))
        } else if p.leader == me && !self.broker.leads_at(topic, partition, p.leader_epoch) {
            // The image names this node before its log has taken the role:
            // a restarted node's replayed image, from before its registration
            // fenced the earlier incarnation, or a change still being
            // applied. Appending now would write at an epoch whose records
            // the followers may hold differently (keel-sim, seed
            // 778011130109). Kafka's ReplicaManager likewise answers from the
            // partition's own state, not the metadata's.
            Err(BrokerError::NotLeader(format!(
                "broker {me} is still taking the lead of {topic}-{partition} at epoch {}",
                p.leader_epoch
            )))
        } else if p.leader == me {
            Ok(())
        } else if p.leader == NO_LEADER {
            Err(BrokerError::LeaderNotAvailable(format!(
                "{topic}-{partition} has no leader: its in-sync replicas {:?} are all down",
                p.isr
            )))
        } else {
            Err(BrokerError::NotLeader(format!(
                "broker {me} does not lead {topic}-{partition}; broker {} does",
                p.leader
            )))
        }
    }

    /// KIP-951's leader hint for an answer saying this node does not lead a
    /// partition: the leader and its epoch by this node's metadata, and
    /// where clients reach it (id, host, port, rack), when another live
    /// broker leads it; so the client goes there without asking for
    /// metadata first.
    pub(crate) fn leader_hint(&self, topic: &str, partition: i32) -> Option<LeaderHint> {
        let image = self.image()?;
        let p = image.partition(topic, partition)?;
        let n = image.nodes.get(&p.leader)?;
        if p.leader == self.broker.node_id() || n.fenced {
            return None;
        }
        Some(LeaderHint {
            leader: p.leader,
            epoch: p.leader_epoch,
            host: n.kafka_host.clone(),
            port: n.kafka_port,
            rack: (!n.rack.is_empty()).then(|| n.rack.clone()),
        })
    }

    /// The name of the topic whose id is `id` (Produce v13 and Fetch v13+
    /// name topics by id, KIP-516): from the metadata image, else a topic
    /// this node keeps for itself.
    pub(crate) fn topic_name_of(&self, id: Uuid) -> Option<String> {
        if id.is_nil() {
            return None;
        }
        if let Some(image) = self.image() {
            if let Some((name, _)) = image
                .topics
                .iter()
                .find(|(_, t)| t.id.as_slice() == id.as_bytes())
            {
                return Some(name.clone());
            }
        }
        self.broker.topic_by_id(id).map(|t| t.name.clone())
    }

    /// Where a consumer's fetch is served. `rack` is the consumer's
    /// `client.rack` when its Fetch version carries one (v11+, KIP-392):
    /// then a follower serves it too, and a leader with the rack-aware
    /// selector names a live in-sync replica in that rack when it is in
    /// another. Without it only the leader serves (Kafka's
    /// `fetchOnlyFromLeader`).
    pub(crate) fn read_from(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
        rack: Option<&str>,
    ) -> Result<ReadFrom, BrokerError> {
        let (Some(c), Some(image)) = (&self.cluster, self.image()) else {
            return Ok(ReadFrom::Leader);
        };
        let Some(p) = image.partition(topic, partition) else {
            // A local topic, or no such partition: the leader path says which.
            self.check_leader(topic, partition)?;
            return Ok(ReadFrom::Leader);
        };
        self.check_client_epoch(topic, partition, epoch)?;
        let me = self.broker.node_id();
        let Some(rack) = rack else {
            self.check_leader(topic, partition)?;
            return Ok(ReadFrom::Leader);
        };
        if p.leader != me {
            if p.replicas.contains(&me) && p.leader != NO_LEADER {
                return Ok(ReadFrom::Follower);
            }
            self.check_leader(topic, partition)?;
        }
        let rack_of = |id: &i32| image.nodes.get(id).map_or("", |n| n.rack.as_str());
        if c.rack_aware_reads && !rack.is_empty() && rack_of(&me) != rack {
            let near = p.isr.iter().copied().find(|r| {
                *r != me && rack_of(r) == rack && image.nodes.get(r).is_some_and(|n| !n.fenced)
            });
            if let Some(r) = near {
                return Ok(ReadFrom::Elsewhere(r));
            }
        }
        Ok(ReadFrom::Leader)
    }

    /// KIP-320: a client's current leader epoch (when it sends one) must be
    /// the partition's: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
    pub(crate) fn check_client_epoch(
        &self,
        topic: &str,
        partition: i32,
        epoch: i32,
    ) -> Result<(), BrokerError> {
        if epoch < 0 {
            return Ok(());
        }
        let Some(image) = self.image() else {
            return Ok(());
        };
        let Some(p) = image.partition(topic, partition) else {
            return Ok(());
        };
        if epoch < p.leader_epoch {
            Err(BrokerError::FencedLeaderEpoch(format!(
                "leader epoch {epoch} of {topic}-{partition} is older than the current {}",
                p.leader_epoch
            )))
        } else if epoch > p.leader_epoch {
            Err(BrokerError::UnknownLeaderEpoch(format!(
                "leader epoch {epoch} of {topic}-{partition} is newer than this broker's {}",
                p.leader_epoch
            )))
        } else {
            Ok(())
        }
    }

    /// OffsetForLeaderEpoch (KIP-101, KIP-279; consumers since KIP-320): for
    /// each partition this broker leads, the largest epoch at or below the one
    /// asked and where it ends in the leader's log.
    pub(crate) fn offset_for_leader_epoch(
        &self,
        r: kafka_protocol::messages::OffsetForLeaderEpochRequest,
    ) -> kafka_protocol::messages::OffsetForLeaderEpochResponse {
        use kafka_protocol::messages::offset_for_leader_epoch_response::{
            EpochEndOffset, OffsetForLeaderTopicResult,
        };
        let mut resp = kafka_protocol::messages::OffsetForLeaderEpochResponse::default();
        for t in r.topics {
            let mut out = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
            for p in t.partitions {
                let mut e = EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1);
                let found = self
                    .check_leader(t.topic.as_str(), p.partition)
                    .and_then(|_| {
                        self.check_client_epoch(
                            t.topic.as_str(),
                            p.partition,
                            p.current_leader_epoch,
                        )
                    })
                    .and_then(|_| {
                        self.broker.epoch_end(
                            t.topic.as_str(),
                            p.partition,
                            p.current_leader_epoch,
                            p.leader_epoch,
                        )
                    });
                match found {
                    Ok((epoch, end)) => {
                        e.leader_epoch = epoch;
                        e.end_offset = end;
                    }
                    Err(err) => e.error_code = crate::error::code(&err),
                }
                out.partitions.push(e);
            }
            resp.topics.push(out);
        }
        resp
    }

    /// Proposes `rec` and waits for it (the connection's requests stay in
    /// order: this runs inside the request's handling). Then the local logs
    /// follow the new image.
    fn propose(&self, rec: Record) -> Result<Applied, BrokerError> {
        let out = self.propose_only(rec)?;
        self.sync_local();
        Ok(out)
    }

    /// Proposes `rec` and waits for it, without touching the local logs.
    fn propose_only(&self, rec: Record) -> Result<Applied, BrokerError> {
        self.propose_raw(rec)?.map_err(meta_err)
    }

    /// Proposes `rec` and waits for it: why it changed nothing, when it was
    /// applied, is the metadata's own error.
    pub(super) fn propose_raw(
        &self,
        rec: Record,
    ) -> Result<Result<Applied, MetaError>, BrokerError> {
        let c = self.cluster.as_ref().expect("cluster mode");
        let fut = (c.propose)(rec);
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut)).map_err(
            |e| BrokerError::Timeout(format!("the cluster metadata did not take the change: {e}")),
        )
    }

    /// Brings this node's logs in line with the image it has applied, once
    /// that image holds this process's registration (before, keel's
    /// `follow_metadata` has not started either: the roles it names are an
    /// earlier incarnation's).
    pub(crate) fn sync_local(&self) {
        let Some(c) = &self.cluster else {
            return;
        };
        let image = c.image.borrow().clone();
        let me = self.broker.node_id();
        if image.holds_registration(me, c.incarnation) {
            for problem in self.broker.apply_metadata(&image, me) {
                tracing::error!("cluster metadata: {problem}");
            }
        }
    }

    /// CreateTopics (and auto-creation) through the cluster metadata.
    pub(crate) fn cluster_create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignment: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Created, BrokerError> {
        keel_broker::validate_topic_name(name)?;
        if keel_broker::is_internal(name) {
            return Err(BrokerError::InvalidTopic(format!(
                "{name} is internal: the brokers create it"
            )));
        }
        self.create_topic_unchecked(
            name,
            partitions,
            replication_factor,
            assignment,
            configs,
            validate_only,
        )
    }

    /// CreateTopics without the internal-name check (for `__consumer_offsets`).
    fn create_topic_unchecked(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        assignment: Option<Vec<Vec<i32>>>,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Created, BrokerError> {
        let image = self.image().expect("cluster mode");
        if image.topics.contains_key(name) {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        let topic_configs = TopicConfigs::new(configs.clone())?;
        let assigned = match assignment {
            Some(a) => {
                check_assignment(&image, &a)?;
                a
            }
            None => {
                let partitions = if partitions == -1 {
                    self.broker.config().default_partitions
                } else {
                    partitions
                };
                if partitions < 1 {
                    return Err(BrokerError::InvalidPartitions(format!(
                        "{partitions} partitions; a topic needs at least 1"
                    )));
                }
                let max = self.broker.config().partitions_max;
                if partitions as usize > max {
                    return Err(BrokerError::InvalidPartitions(format!(
                        "{partitions} partitions exceed the limit of {max}"
                    )));
                }
                let factor = if replication_factor == -1 {
                    DEFAULT_REPLICATION_FACTOR.min(image.live_nodes().count().max(1)) as i16
                } else {
                    replication_factor
                };
                check_factor(factor)?;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                name.hash(&mut h);
                keel_meta::place_replicas(
                    image.live_nodes(),
                    partitions as usize,
                    factor as usize,
                    h.finish() as usize,
                )
                .map_err(|e| BrokerError::InvalidReplicationFactor(e.to_string()))?
            }
        };
        let created = Created {
            id: Uuid::new_v4(),
            partitions: assigned.len() as i32,
            replication_factor: assigned.first().map_or(0, |r| r.len() as i16),
            configs: topic_configs,
        };
        if validate_only {
            return Ok(created);
        }
        self.propose(Record::new(Kind::CreateTopic(keel_meta::CreateTopic {
            name: name.to_string(),
            topic_id: created.id.as_bytes().to_vec(),
            partitions: assigned
                .into_iter()
                .map(|replicas| Replicas { replicas })
                .collect(),
            configs,
        })))?;
        tracing::info!(
            topic = name,
            partitions = created.partitions,
            "created topic in the cluster metadata"
        );
        Ok(created)
    }

    pub(crate) fn cluster_delete_topic(&self, name: &str) -> Result<Uuid, BrokerError> {
        let image = self.image().expect("cluster mode");
        let t = image
            .topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        let id = Uuid::from_slice(&t.id).unwrap_or_default();
        self.propose(Record::new(Kind::RemoveTopic(keel_meta::RemoveTopic {
            name: name.to_string(),
        })))?;
        Ok(id)
    }

    pub(crate) fn cluster_create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let image = self.image().expect("cluster mode");
        let t = image
            .topics
            .get(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        let have = t.partitions.len() as i32;
        if count <= have {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {have} partitions; the new count {count} must be larger"
            )));
        }
        let factor = t.partitions.first().map_or(1, |p| p.replicas.len());
        let assigned = match assignment {
            Some(a) => {
                if a.len() as i32 != count - have {
                    return Err(BrokerError::InvalidRequest(format!(
                        "{} assignments for {} new partitions",
                        a.len(),
                        count - have
                    )));
                }
                check_assignment(&image, &a)?;
                a
            }
            None => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                name.hash(&mut h);
                keel_meta::place_replicas(
                    image.live_nodes(),
                    (count - have) as usize,
                    factor,
                    h.finish() as usize + have as usize,
                )
                .map_err(|e| BrokerError::InvalidReplicationFactor(e.to_string()))?
            }
        };
        if validate_only {
            return Ok(());
        }
        self.propose(Record::new(Kind::CreatePartitions(
            keel_meta::CreatePartitions {
                topic: name.to_string(),
                partitions: assigned
                    .into_iter()
                    .map(|replicas| Replicas { replicas })
                    .collect(),
            },
        )))?;
        Ok(())
    }

    /// The coordinator of a group on a cluster: the leader of the group's
    /// partition of `__consumer_offsets`, which the controller creates on the
    /// first FindCoordinator (offsets.topic.num.partitions partitions,
    /// replicated min(3, brokers) times, compacted), as Kafka does.
    pub(crate) fn cluster_coordinator(
        &self,
        group: &str,
    ) -> Result<(i32, String, i32), BrokerError> {
        let topic = keel_broker::OFFSETS_TOPIC;
        if !self.governed(topic) {
            let configs = [
                ("cleanup.policy", "compact"),
                ("segment.bytes", "104857600"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            match self.create_topic_unchecked(
                topic,
                self.broker.config().offsets_topic_partitions,
                -1,
                None,
                configs,
                false,
            ) {
                Ok(_) | Err(BrokerError::TopicAlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let image = self.image().expect("cluster mode");
        let t = image.topics.get(topic).ok_or_else(|| {
            BrokerError::CoordinatorNotAvailable(format!("{topic} is being created"))
        })?;
        let index = keel_broker::group_records::partition_for(group, t.partitions.len() as i32);
        let p = &t.partitions[index as usize];
        let node = image
            .nodes
            .get(&p.leader)
            .filter(|n| !n.fenced)
            .ok_or_else(|| {
                BrokerError::CoordinatorNotAvailable(format!(
                    "partition {index} of {topic} has no leader"
                ))
            })?;
        // This node leads by the image, but its local logs may not have
        // followed it yet (the follower task applies images as they come):
        // bring them in line now, so the OffsetFetch or JoinGroup that comes
        // right after this answer does not get NOT_COORDINATOR.
        if node.id == self.broker.node_id() && self.broker.check_coordinator(group).is_err() {
            self.sync_local();
        }
        Ok((node.id, node.kafka_host.clone(), node.kafka_port))
    }

    /// ElectLeaders (KIP-183, KIP-460): PREFERRED (0) hands each partition to
    /// its first replica when that one is live and in the ISR; UNCLEAN (1)
    /// gives a leaderless partition to a live replica, an in-sync one if any,
    /// else an out-of-sync one whatever the topic's
    /// `unclean.leader.election.enable` says (what was lost is reported as
    /// for the automatic kind). `None` partitions mean every partition.
    pub(crate) fn elect_leaders(
        &self,
        r: kafka_protocol::messages::ElectLeadersRequest,
        v: i16,
    ) -> kafka_protocol::messages::ElectLeadersResponse {
        use kafka_protocol::messages::elect_leaders_response::{
            PartitionResult, ReplicaElectionResult,
        };
        use kafka_protocol::ResponseError as E;
        let mut resp = kafka_protocol::messages::ElectLeadersResponse::default();
        let unclean = v >= 1 && r.election_type == 1;
        // The image, or why the whole request is refused: v1+ has a
        // top-level error code; v0 has only the partitions' (a field set
        // where the version lacks it cannot be encoded, and the connection
        // closed: found by the version sweep in tests/it).
        let image = match self.image() {
            None => Err((
                E::ClusterAuthorizationFailed.code(),
                "elections need the cluster metadata; this node runs alone",
            )),
            Some(_) if v >= 1 && !matches!(r.election_type, 0 | 1) => {
                Err((E::InvalidRequest.code(), "election type must be 0 or 1"))
            }
            Some(image) => Ok(image),
        };
        if let (Err((code, _)), true) = (&image, v >= 1) {
            resp.error_code = *code;
        }
        let wanted: Vec<(String, Vec<i32>)> = match (r.topic_partitions, &image) {
            (Some(list), _) => list
                .into_iter()
                .map(|t| (t.topic.to_string(), t.partitions))
                .collect(),
            (None, Ok(image)) => image
                .topics
                .iter()
                .map(|(n, t)| (n.clone(), (0..t.partitions.len() as i32).collect()))
                .collect(),
            (None, Err(_)) => Vec::new(),
        };
        for (topic, parts) in wanted {
            let mut out = ReplicaElectionResult::default().with_topic(
                kafka_protocol::messages::TopicName(StrBytes::from_string(topic.clone())),
            );
            for partition in parts {
                let result = match &image {
                    Ok(image) => self.elect_one(image, &topic, partition, unclean),
                    Err((code, why)) => Err((*code, why.to_string())),
                };
                let mut pr = PartitionResult::default().with_partition_id(partition);
                if let Err((code, msg)) = result {
                    pr.error_code = code;
                    pr.error_message = Some(StrBytes::from_string(msg));
                }
                out.partition_result.push(pr);
            }
            resp.replica_election_results.push(out);
        }
        resp
    }

    fn elect_one(
        &self,
        image: &Image,
        topic: &str,
        partition: i32,
        unclean: bool,
    ) -> Result<(), (i16, String)> {
        use kafka_protocol::ResponseError as E;
        let p = image.partition(topic, partition).ok_or((
            E::UnknownTopicOrPartition.code(),
            format!("{topic}-{partition} does not exist"),
        ))?;
        let live = |id: &i32| image.nodes.get(id).is_some_and(|n| !n.fenced);
        let (to, out_of_sync) = if unclean {
            if p.leader != NO_LEADER {
                return Err((
                    E::ElectionNotNeeded.code(),
                    format!("{topic}-{partition} has a leader"),
                ));
            }
            match p.isr.iter().find(|r| live(r)) {
                Some(r) => (*r, false),
                None => match p.replicas.iter().find(|r| live(r)) {
                    Some(r) => (*r, true),
                    None => {
                        return Err((
                            E::EligibleLeadersNotAvailable.code(),
                            format!("no replica of {topic}-{partition} is live"),
                        ))
                    }
                },
            }
        } else {
            let preferred = *p.replicas.first().unwrap_or(&NO_LEADER);
            if p.leader == preferred {
                return Err((
                    E::ElectionNotNeeded.code(),
                    format!("{topic}-{partition} is led by its preferred replica"),
                ));
            }
            if !live(&preferred) || !p.isr.contains(&preferred) {
                return Err((
                    E::PreferredLeaderNotAvailable.code(),
                    format!("the preferred replica {preferred} of {topic}-{partition} is not live and in sync"),
                ));
            }
            (preferred, false)
        };
        let rec = Record::elect(
            topic,
            partition,
            p.partition_epoch,
            to,
            out_of_sync,
            out_of_sync,
        );
        match self.propose(rec) {
            Ok(_) => {
                if out_of_sync {
                    tracing::error!(
                        topic,
                        partition,
                        leader = to,
                        "UNCLEAN leader election asked by ElectLeaders"
                    );
                }
                Ok(())
            }
            Err(e) => Err((crate::error::code(&e), e.to_string())),
        }
    }

    /// AlterPartitionReassignments (KIP-455; v1's KIP-860 check): each
    /// partition gets its target replicas, or its reassignment cancelled
    /// (`replicas` null). The new replicas copy the partition as followers;
    /// the switch happens when they are all in sync (`keel-meta`).
    pub(crate) fn alter_partition_reassignments(
        &self,
        r: kafka_protocol::messages::AlterPartitionReassignmentsRequest,
        v: i16,
    ) -> kafka_protocol::messages::AlterPartitionReassignmentsResponse {
        use kafka_protocol::messages::alter_partition_reassignments_response::{
            ReassignablePartitionResponse, ReassignableTopicResponse,
        };
        let mut resp = kafka_protocol::messages::AlterPartitionReassignmentsResponse::default();
        let Some(image) = self.image() else {
            resp.error_code = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
            return resp;
        };
        let allow_rf_change = v < 1 || r.allow_replication_factor_change;
        for t in r.topics {
            let name = t.name.to_string();
            let mut out = ReassignableTopicResponse::default().with_name(t.name);
            for p in t.partitions {
                let target = p
                    .replicas
                    .map(|rs| rs.into_iter().map(|b| b.0).collect::<Vec<i32>>());
                let mut pr = ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index);
                if let Err((code, msg)) =
                    self.reassign_one(&image, &name, p.partition_index, target, allow_rf_change)
                {
                    pr.error_code = code;
                    pr.error_message = Some(StrBytes::from_string(msg));
                }
                out.partitions.push(pr);
            }
            resp.responses.push(out);
        }
        resp
    }

    fn reassign_one(
        &self,
        image: &Image,
        topic: &str,
        partition: i32,
        target: Option<Vec<i32>>,
        allow_rf_change: bool,
    ) -> Result<(), (i16, String)> {
        use kafka_protocol::ResponseError as E;
        let p = image.partition(topic, partition).ok_or((
            E::UnknownTopicOrPartition.code(),
            format!("{topic}-{partition} does not exist"),
        ))?;
        if let Some(t) = &target {
            if t.is_empty() {
                return Err((
                    E::InvalidReplicaAssignment.code(),
                    format!("the target replicas of {topic}-{partition} are empty"),
                ));
            }
            let have = p.original().len();
            if !allow_rf_change && t.len() != have {
                return Err((
                    E::InvalidReplicationFactor.code(),
                    format!(
                        "{topic}-{partition} has {have} replicas and the target {}; \
                         allow_replication_factor_change is false",
                        t.len()
                    ),
                ));
            }
        }
        let rec = Record::new(Kind::Reassign(keel_meta::Reassign {
            topic: topic.to_string(),
            partition,
            target: target.map(|replicas| Replicas { replicas }),
        }));
        let applied = self
            .propose_raw(rec)
            .map_err(|e| (crate::error::code(&e), e.to_string()))?;
        self.sync_local();
        match applied {
            Ok(_) => Ok(()),
            Err(e @ MetaError::NoReassignment(..)) => {
                Err((E::NoReassignmentInProgress.code(), e.to_string()))
            }
            Err(e @ MetaError::InvalidReplicas(_)) => {
                Err((E::InvalidReplicaAssignment.code(), e.to_string()))
            }
            Err(e) => {
                let e = meta_err(e);
                Err((crate::error::code(&e), e.to_string()))
            }
        }
    }

    /// ListPartitionReassignments: the reassignments under way, of the
    /// partitions asked (all when `topics` is null).
    pub(crate) fn list_partition_reassignments(
        &self,
        r: kafka_protocol::messages::ListPartitionReassignmentsRequest,
    ) -> kafka_protocol::messages::ListPartitionReassignmentsResponse {
        use kafka_protocol::messages::list_partition_reassignments_response::{
            OngoingPartitionReassignment, OngoingTopicReassignment,
        };
        use kafka_protocol::messages::{BrokerId, TopicName};
        let mut resp = kafka_protocol::messages::ListPartitionReassignmentsResponse::default();
        let Some(image) = self.image() else {
            resp.error_code = kafka_protocol::ResponseError::ClusterAuthorizationFailed.code();
            return resp;
        };
        let wanted: Vec<(String, Vec<i32>)> = match r.topics {
            Some(list) => list
                .into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect(),
            None => image
                .topics
                .iter()
                .map(|(n, t)| (n.clone(), (0..t.partitions.len() as i32).collect()))
                .collect(),
        };
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        for (topic, parts) in wanted {
            let ongoing: Vec<_> = parts
                .into_iter()
                .filter_map(|i| Some((i, image.partition(&topic, i)?)))
                .filter(|(_, p)| p.reassigning())
                .map(|(i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding))
                        .with_removing_replicas(ids(&p.removing))
                })
                .collect();
            if !ongoing.is_empty() {
                resp.topics.push(
                    OngoingTopicReassignment::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(ongoing),
                );
            }
        }
        resp
    }

    /// A block of producer ids from the controller (KIP-730).
    pub(crate) fn allocate_producer_ids(&self, at_least: i64) -> Result<i64, BrokerError> {
        let rec = Record::new(Kind::AllocateProducerIds(keel_meta::AllocateProducerIds {
            node_id: self.broker.node_id(),
            at_least,
        }));
        match self.propose_only(rec)? {
            Applied::ProducerIds { first } => Ok(first),
            other => Err(BrokerError::Storage(format!(
                "producer ids: unexpected answer {other:?}"
            ))),
        }
    }

    /// A topic's config overrides, from the image.
    pub(crate) fn cluster_configs(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.image()?.topics.get(name).map(|t| t.configs.clone())
    }

    /// Replaces a topic's overrides with `overrides` (validated first).
    pub(crate) fn cluster_set_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        TopicConfigs::new(overrides.clone())?;
        let old = self
            .cluster_configs(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        if validate_only {
            return Ok(());
        }
        let delete = old
            .keys()
            .filter(|k| !overrides.contains_key(*k))
            .cloned()
            .collect();
        self.propose(Record::new(Kind::Config(keel_meta::TopicConfig {
            topic: name.to_string(),
            set: overrides,
            delete,
        })))?;
        Ok(())
    }
}

fn check_factor(factor: i16) -> Result<(), BrokerError> {
    if factor < 1 {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "replication factor {factor}; it must be at least 1"
        )));
    }
    Ok(())
}

/// A replica assignment names registered brokers, each once per partition,
/// the same number for every partition.
fn check_assignment(image: &Image, a: &[Vec<i32>]) -> Result<(), BrokerError> {
    let factor = a.first().map_or(0, Vec::len);
    if a.is_empty() {
        return Err(BrokerError::InvalidReplicaAssignment(
            "an empty assignment".into(),
        ));
    }
    check_factor(i16::try_from(factor).unwrap_or(i16::MAX))?;
    for (i, replicas) in a.iter().enumerate() {
        if replicas.len() != factor {
            return Err(BrokerError::InvalidReplicaAssignment(format!(
                "partition {i} has {} replicas, partition 0 has {factor}",
                replicas.len()
            )));
        }
        for (k, r) in replicas.iter().enumerate() {
            if !image.nodes.contains_key(r) {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "partition {i}: broker {r} is not registered"
                )));
            }
            if replicas[..k].contains(r) {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "partition {i}: broker {r} appears twice"
                )));
            }
        }
    }
    Ok(())
}
