//! Keel's cluster metadata, in KRaft's role: one registry of nodes (every
//! face reads it) and the Kafka face's topics, partitions, replicas, leaders,
//! epochs and ISRs.
//!
//! It is a pure, deterministic state machine. The controller (the Raft leader)
//! proposes [`Record`]s through the quorum; every node applies them in log
//! order with [`Image::apply`], which checks everything it needs against the
//! image of that moment, so every replica reaches the same image and a stale
//! request changes nothing. Nothing here does I/O: the etcd store keeps the
//! encoded image in its backend and snapshots, and publishes it to the brokers.
//!
//! The rules follow KRaft (`ReplicationControlManager`,
//! `ClusterControlManager`, `PartitionChangeBuilder`):
//! - a node's **epoch** is the Raft index of its registration (KRaft's broker
//!   epoch is the offset of its `RegisterBrokerRecord`); a registration with a
//!   new incarnation is a restart and gets a new epoch;
//! - fencing a node moves leadership of its partitions to another ISR member
//!   and takes it out of the ISRs, except that an ISR is never emptied: a
//!   partition whose last ISR member is fenced keeps it and goes offline
//!   (leader -1) until it returns (KIP-841);
//! - every leader change bumps the **leader epoch**; every change of leader,
//!   ISR or replicas bumps the **partition epoch**, and an ISR change asked by
//!   a leader applies only if it was based on the current partition epoch
//!   (AlterPartition's compare-and-set, KIP-497, KIP-903);
//! - a **reassignment** (KIP-455) makes the replicas the target followed by
//!   the replicas leaving, with the adding and removing ones listed; it
//!   completes in the same apply that finds every target replica in the ISR:
//!   the leaving ones go, and a leader outside the target hands over to the
//!   first target replica that is live and in sync (KRaft's
//!   `PartitionReassignmentReplicas`, `PartitionChangeBuilder`).

pub mod duties;
pub mod features;
pub mod group_configs;
mod place;
pub mod quotas;
pub mod ring;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};

pub use place::{place_replicas, PlaceError};
use prost::Message;
pub use schema::{
    AlterTable, Column, ColumnKind, CreateKeyspace, CreateTable, DropKeyspace, DropTable, Keyspace,
    Table,
};

/// "No leader" in Kafka's metadata.
pub const NO_LEADER: i32 = -1;

/// One change of the metadata: what a Raft entry of the metadata carries.
#[derive(Clone, PartialEq, Message)]
pub struct Record {
    #[prost(
        oneof = "record::Kind",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20"
    )]
    pub kind: Option<record::Kind>,
}

pub mod record {
    /// The kinds of metadata record.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "1")]
        RegisterNode(super::RegisterNode),
        #[prost(message, tag = "2")]
        FenceNode(super::NodeEpoch),
        #[prost(message, tag = "3")]
        UnfenceNode(super::NodeEpoch),
        #[prost(message, tag = "4")]
        CreateTopic(super::CreateTopic),
        #[prost(message, tag = "5")]
        PartitionChange(super::PartitionChange),
        #[prost(message, tag = "6")]
        Config(super::TopicConfig),
        #[prost(message, tag = "7")]
        RemoveTopic(super::RemoveTopic),
        #[prost(message, tag = "8")]
        CreatePartitions(super::CreatePartitions),
        #[prost(message, tag = "9")]
        AllocateProducerIds(super::AllocateProducerIds),
        #[prost(message, tag = "10")]
        ReportLoss(super::ReportLoss),
        #[prost(message, tag = "11")]
        Reassign(super::Reassign),
        #[prost(message, tag = "12")]
        CreateKeyspace(super::CreateKeyspace),
        #[prost(message, tag = "13")]
        DropKeyspace(super::DropKeyspace),
        #[prost(message, tag = "14")]
        CreateTable(super::CreateTable),
        #[prost(message, tag = "15")]
        AlterTable(super::AlterTable),
        #[prost(message, tag = "16")]
        DropTable(super::DropTable),
        #[prost(message, tag = "17")]
        LeaveRing(super::LeaveRing),
        #[prost(message, tag = "18")]
        AlterClientQuota(super::quotas::AlterClientQuota),
        #[prost(message, tag = "19")]
        SetFeatures(super::features::SetFeatures),
        #[prost(message, tag = "20")]
        SetGroupConfigs(super::group_configs::SetGroupConfigs),
    }
}

/// A node joins (or rejoins after a restart): KRaft's RegisterBrokerRecord.
#[derive(Clone, PartialEq, Message)]
pub struct RegisterNode {
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    /// Random per process start: a new one is a restart, and gets a new epoch.
    #[prost(uint64, tag = "2")]
    pub incarnation: u64,
    /// Where Kafka clients reach it (the advertised listener).
    #[prost(string, tag = "3")]
    pub kafka_host: String,
    #[prost(int32, tag = "4")]
    pub kafka_port: i32,
    /// `--rack` (Kafka's broker.rack); empty when not given.
    #[prost(string, tag = "5")]
    pub rack: String,
    /// The Kafka cluster id this node would use; the first registration's
    /// becomes the cluster's, so every broker reports the same one.
    #[prost(string, tag = "6")]
    pub cluster_id: String,
    /// Where CQL clients reach it (empty and 0 when it serves no CQL).
    #[prost(string, tag = "7")]
    pub cql_host: String,
    #[prost(int32, tag = "8")]
    pub cql_port: i32,
    /// The tables face's datacenter (`--datacenter`; empty: `datacenter1`).
    #[prost(string, tag = "9")]
    pub datacenter: String,
    /// Tokens a node serving CQL takes on its first registration
    /// (Cassandra's `num_tokens`; 0: [`ring::DEFAULT_NUM_TOKENS`]).
    #[prost(uint32, tag = "10")]
    pub num_tokens: u32,
}

/// Fence or unfence a node, if its epoch is still `epoch` (so a decision about
/// an old incarnation never touches the new one).
#[derive(Clone, PartialEq, Message)]
pub struct NodeEpoch {
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    /// A fence the node asked for as it stops (KRaft's controlled shutdown):
    /// that incarnation is never unfenced; the next start registers anew.
    #[prost(bool, tag = "3")]
    pub shutdown: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateTopic {
    #[prost(string, tag = "1")]
    pub name: String,
    /// 16 bytes: Kafka's topic id (KIP-516), chosen by the controller.
    #[prost(bytes = "vec", tag = "2")]
    pub topic_id: Vec<u8>,
    /// Each partition's replicas, preferred leader first.
    #[prost(message, repeated, tag = "3")]
    pub partitions: Vec<Replicas>,
    #[prost(btree_map = "string, string", tag = "4")]
    pub configs: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Replicas {
    #[prost(int32, repeated, tag = "1")]
    pub replicas: Vec<i32>,
}

/// A change of one partition (KRaft's PartitionChangeRecord, as an
/// AlterPartition or a reassignment asks it): applies only if the partition
/// epoch is still `partition_epoch`.
#[derive(Clone, PartialEq, Message)]
pub struct PartitionChange {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(int32, tag = "2")]
    pub partition: i32,
    #[prost(int32, tag = "3")]
    pub partition_epoch: i32,
    /// A new ISR (the leader's AlterPartition).
    #[prost(message, optional, tag = "4")]
    pub isr: Option<Replicas>,
    /// A new leader (an election); must be in the ISR unless `unclean`.
    #[prost(int32, optional, tag = "5")]
    pub leader: Option<i32>,
    /// The leader is not in the ISR: an unclean election, allowed only when
    /// the topic says so.
    #[prost(bool, tag = "6")]
    pub unclean: bool,
    /// Asked by the leader at this leader epoch (AlterPartition); 0 = the controller.
    #[prost(int32, optional, tag = "7")]
    pub leader_epoch: Option<i32>,
    /// An operator's ElectLeaders(UNCLEAN): allowed whatever the topic says
    /// (KIP-460).
    #[prost(bool, tag = "8")]
    pub forced: bool,
}

/// Sets and removes topic configs (IncrementalAlterConfigs).
#[derive(Clone, PartialEq, Message)]
pub struct TopicConfig {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub set: BTreeMap<String, String>,
    #[prost(string, repeated, tag = "3")]
    pub delete: Vec<String>,
}

/// More partitions for a topic (CreatePartitions): the new ones' replicas.
#[derive(Clone, PartialEq, Message)]
pub struct CreatePartitions {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(message, repeated, tag = "2")]
    pub partitions: Vec<Replicas>,
}

/// A block of producer ids for one broker (KIP-730's AllocateProducerIds):
/// ids are unique across the cluster. `at_least` is where the broker's own
/// earlier ids end, so ids it gave out before it joined are never reused.
#[derive(Clone, PartialEq, Message)]
pub struct AllocateProducerIds {
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    #[prost(int64, tag = "2")]
    pub at_least: i64,
}

/// Records an unclean election cost: a replica that returned found records
/// it had known committed missing from the new leader, and truncated them.
/// Kept with the partition (the last [`LOSSES_KEPT`]), so any node can say
/// what was lost; Kafka loses them silently.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct ReportLoss {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The replica that truncated them.
    #[prost(int32, tag = "3")]
    pub node_id: i32,
    /// Offsets [from, to) were lost.
    #[prost(int64, tag = "4")]
    pub from: i64,
    #[prost(int64, tag = "5")]
    pub to: i64,
    /// The leader epoch of the unclean leader that caused it.
    #[prost(int32, tag = "6")]
    pub leader_epoch: i32,
}

/// Losses remembered per partition.
pub const LOSSES_KEPT: usize = 16;

/// Producer ids per block (Kafka's ProducerIdsBlock size).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// Moves a partition to a new set of replicas (AlterPartitionReassignments,
/// KIP-455), or cancels the move in progress (`target` absent).
#[derive(Clone, PartialEq, Message)]
pub struct Reassign {
    #[prost(string, tag = "1")]
    pub topic: String,
    #[prost(int32, tag = "2")]
    pub partition: i32,
    /// The replicas when done, preferred leader first.
    #[prost(message, optional, tag = "3")]
    pub target: Option<Replicas>,
}

/// A node leaves the tables face's ring (`nodetool decommission`) in two
/// records: `done = false` marks it leaving (coordinators also write its
/// ranges to the replicas that gain them while it streams its data there),
/// `done = true` takes its tokens off the ring for good.
#[derive(Clone, PartialEq, Message)]
pub struct LeaveRing {
    #[prost(int32, tag = "1")]
    pub node_id: i32,
    #[prost(bool, tag = "2")]
    pub done: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct RemoveTopic {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// A registered node as the image holds it.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Node {
    #[prost(int32, tag = "1")]
    pub id: i32,
    /// The Raft index of its registration.
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(uint64, tag = "3")]
    pub incarnation: u64,
    #[prost(string, tag = "4")]
    pub kafka_host: String,
    #[prost(int32, tag = "5")]
    pub kafka_port: i32,
    #[prost(string, tag = "6")]
    pub rack: String,
    /// Not serving: silent past the session timeout, or shut down.
    #[prost(bool, tag = "7")]
    pub fenced: bool,
    /// Fenced because it stopped (controlled shutdown), not for silence.
    #[prost(bool, tag = "8")]
    pub shut_down: bool,
    #[prost(string, tag = "9")]
    pub cql_host: String,
    #[prost(int32, tag = "10")]
    pub cql_port: i32,
    /// Its datacenter on the tables face's ring.
    #[prost(string, tag = "11")]
    pub datacenter: String,
    /// Its tokens on the ring, allocated at its first registration with a CQL
    /// address and kept across restarts (empty: it owns no data).
    #[prost(int64, repeated, tag = "12")]
    pub tokens: Vec<i64>,
    /// Leaving the ring: streaming its ranges to the replicas that gain them.
    #[prost(bool, tag = "13")]
    pub leaving: bool,
    /// Left the ring: it takes no tokens again, even when it registers again.
    #[prost(bool, tag = "14")]
    pub decommissioned: bool,
}

#[derive(Clone, PartialEq, Eq, Message)]
pub struct Partition {
    #[prost(int32, repeated, tag = "1")]
    pub replicas: Vec<i32>,
    #[prost(int32, repeated, tag = "2")]
    pub isr: Vec<i32>,
    #[prost(int32, tag = "3")]
    pub leader: i32,
    #[prost(int32, tag = "4")]
    pub leader_epoch: i32,
    #[prost(int32, tag = "5")]
    pub partition_epoch: i32,
    /// Records lost to unclean elections, most recent last.
    #[prost(message, repeated, tag = "6")]
    pub lost: Vec<ReportLoss>,
    /// A reassignment in progress: replicas joining (not yet in `replicas`
    /// before it began) and leaving (not in its target). Both empty when none.
    #[prost(int32, repeated, tag = "7")]
    pub adding: Vec<i32>,
    #[prost(int32, repeated, tag = "8")]
    pub removing: Vec<i32>,
    /// The leader epoch the last unclean election began (0: none). A
    /// replica that truncates records of an earlier epoch may have lost
    /// acknowledged ones; after clean elections only, it cannot have.
    #[prost(int32, tag = "9")]
    pub last_unclean_epoch: i32,
}

impl Partition {
    /// Whether a reassignment is under way.
    pub fn reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas this partition will have once its reassignment is done
    /// (its replicas when none is under way).
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// Fewer in-sync replicas than the partition should have: during a
    /// reassignment, than it had before (Kafka's `replicationFactor` of an
    /// ongoing reassignment), so replicas still being added do not count.
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.original().len()
    }

    /// The replicas before the reassignment under way began.
    pub fn original(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }
}

#[derive(Clone, PartialEq, Eq, Message)]
pub struct Topic {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub partitions: Vec<Partition>,
    #[prost(btree_map = "string, string", tag = "3")]
    pub configs: BTreeMap<String, String>,
}

/// The whole metadata at one Raft index: what every node serves from, what
/// the store keeps and what a snapshot carries.
#[derive(Clone, PartialEq, Message)]
pub struct Image {
    /// The Raft index of the last record applied.
    #[prost(uint64, tag = "1")]
    pub applied: u64,
    #[prost(btree_map = "int32, message", tag = "2")]
    pub nodes: BTreeMap<i32, Node>,
    #[prost(btree_map = "string, message", tag = "3")]
    pub topics: BTreeMap<String, Topic>,
    /// The Kafka cluster id (set by the first registration).
    #[prost(string, tag = "4")]
    pub cluster_id: String,
    /// Ids of deleted topics: a node that was down during the deletion removes
    /// its copy instead of offering it back.
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub removed_topic_ids: Vec<Vec<u8>>,
    /// The first producer id no block has handed out yet.
    #[prost(int64, tag = "6")]
    pub next_producer_id: i64,
    /// The tables face's keyspaces and their tables.
    #[prost(btree_map = "string, message", tag = "7")]
    pub keyspaces: BTreeMap<String, Keyspace>,
    /// Ids of dropped tables: never reused, and their data is removed.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub dropped_table_ids: Vec<Vec<u8>>,
    /// Schema changes applied so far (see [`Image::schema_version`]).
    #[prost(uint64, tag = "9")]
    pub schema_epoch: u64,
    /// Client quotas (AlterClientQuotas), sorted by entity.
    #[prost(message, repeated, tag = "10")]
    pub client_quotas: Vec<quotas::ClientQuota>,
    /// Finalized feature levels set by UpdateFeatures (`features`); a
    /// feature not here is at a new cluster's level.
    #[prost(btree_map = "string, int32", tag = "11")]
    pub features: BTreeMap<String, i32>,
    /// The Raft index of the last feature change, or 0.
    #[prost(int64, tag = "12")]
    pub features_epoch: i64,
    /// Consumer groups' own configs (KIP-848's GROUP config resource).
    #[prost(btree_map = "string, message", tag = "13")]
    pub group_configs: BTreeMap<String, group_configs::GroupConfigs>,
}

/// Why a record changed nothing. Deterministic: every replica refuses alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("partition {1} of {0} does not exist")]
    UnknownPartition(String, i32),
    #[error("node {0} is not registered")]
    UnknownNode(i32),
    #[error("{0}")]
    Invalid(String),
    /// The partition changed since the request was made (KIP-497's
    /// INVALID_UPDATE_VERSION).
    #[error("partition {0}-{1} is at epoch {2}, the change was based on {3}")]
    StaleEpoch(String, i32, i32, i32),
    /// The asker is no longer the partition's leader at that epoch (FENCED_LEADER_EPOCH).
    #[error("partition {0}-{1}: leader epoch {2} is not current ({3})")]
    FencedLeaderEpoch(String, i32, i32, i32),
    /// A node's epoch moved on: the record was about an older incarnation.
    #[error("node {0} is at epoch {1}, not {2}")]
    StaleNodeEpoch(i32, u64, u64),
    #[error("unclean leader election is not enabled for {0}")]
    UncleanNotAllowed(String),
    /// A reassignment names no replicas, an unregistered node or one twice.
    #[error("{0}")]
    InvalidReplicas(String),
    /// A cancel with no reassignment under way (NO_REASSIGNMENT_IN_PROGRESS).
    #[error("no reassignment of {0}-{1} is in progress")]
    NoReassignment(String, i32),
    #[error("undecodable metadata record: {0}")]
    Decode(String),
    #[error("Cannot add existing keyspace \"{0}\"")]
    KeyspaceExists(String),
    #[error("Keyspace '{0}' does not exist")]
    UnknownKeyspace(String),
    #[error("Object {0}.{1} already exists")]
    TableExists(String, String),
    #[error("Table '{0}.{1}' doesn't exist")]
    UnknownTable(String, String),
    #[error("{0}")]
    Unauthorized(String),
}

/// What applying a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A node's registration, with its epoch.
    Registered {
        node_id: i32,
        epoch: u64,
    },
    /// Fencing or unfencing: the partitions whose leader changed.
    Fenced {
        changed: usize,
    },
    Unfenced {
        changed: usize,
    },
    TopicCreated,
    PartitionsCreated,
    PartitionChanged(Partition),
    /// A reassignment began, was replaced, completed or was cancelled: the
    /// partition as it is now.
    Reassigned(Partition),
    ConfigChanged,
    TopicRemoved,
    LossReported,
    /// A block of PRODUCER_ID_BLOCK producer ids starting here.
    ProducerIds {
        first: i64,
    },
    /// A keyspace or table was created, altered or dropped.
    SchemaChanged,
    /// A node began leaving the ring, or left it.
    RingChanged,
    /// An entity's client quotas were set or removed.
    QuotasChanged,
    /// Finalized feature levels changed.
    FeaturesChanged,
}

/// The topic config that allows an out-of-sync replica to lead.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

impl Image {
    /// Whether this image holds node `id`'s registration by the process
    /// `incarnation`. Until it does, what the image says the node leads was
    /// said of an earlier incarnation, which its registration fences: a
    /// node acts on the image only from then on.
    pub fn holds_registration(&self, id: i32, incarnation: u64) -> bool {
        self.nodes
            .get(&id)
            .is_some_and(|n| n.incarnation == incarnation)
    }

    /// The tables face's ring: every node with tokens, fenced or not (a node
    /// that is down still owns its ranges; the coordinator skips it).
    pub fn ring(&self) -> ring::Ring {
        self.ring_without(None)
    }

    /// The ring as it will be once every node leaving it has left (None:
    /// none is leaving). A range's replicas there that are not its replicas
    /// now are its pending replicas: writes go to them too.
    pub fn ring_after_leaving(&self) -> Option<ring::Ring> {
        self.nodes
            .values()
            .any(|n| n.leaving)
            .then(|| self.ring_where(|n| !n.leaving))
    }

    /// The ring as it would be without `node` (the ring before it joined,
    /// for the ranges it takes over; or after it leaves).
    pub fn ring_without(&self, node: Option<i32>) -> ring::Ring {
        self.ring_where(|n| Some(n.id) != node)
    }

    fn ring_where(&self, keep: impl Fn(&Node) -> bool) -> ring::Ring {
        ring::Ring::new(
            self.nodes
                .values()
                .filter(|n| !n.tokens.is_empty() && keep(n))
                .map(|n| {
                    (
                        n.id,
                        ring::Place {
                            datacenter: datacenter(&n.datacenter),
                            rack: if n.rack.is_empty() {
                                "rack1".into()
                            } else {
                                n.rack.clone()
                            },
                        },
                        n.tokens.clone(),
                    )
                }),
        )
    }

    /// Decodes a stored or snapshotted image; empty bytes are the empty image.
    pub fn decode_from(bytes: &[u8]) -> Result<Image, MetaError> {
        Image::decode(bytes).map_err(|e| MetaError::Decode(e.to_string()))
    }

    /// Decodes and applies one record, at Raft index `index`.
    pub fn apply_bytes(&mut self, index: u64, bytes: &[u8]) -> Result<Applied, MetaError> {
        let rec = Record::decode(bytes).map_err(|e| MetaError::Decode(e.to_string()))?;
        self.apply(index, rec)
    }

    /// Applies one record at Raft index `index`. On an error nothing changed.
    pub fn apply(&mut self, index: u64, rec: Record) -> Result<Applied, MetaError> {
        use record::Kind;
        let out = match rec.kind {
            Some(Kind::RegisterNode(r)) => self.register(index, r),
            Some(Kind::FenceNode(f)) => self.fence(f),
            Some(Kind::UnfenceNode(f)) => self.unfence(f),
            Some(Kind::CreateTopic(t)) => self.create_topic(t),
            Some(Kind::PartitionChange(c)) => self.change_partition(c),
            Some(Kind::Config(c)) => self.set_config(c),
            Some(Kind::RemoveTopic(r)) => match self.topics.remove(&r.name) {
                Some(t) => {
                    self.removed_topic_ids.push(t.id);
                    Ok(Applied::TopicRemoved)
                }
                None => Err(MetaError::UnknownTopic(r.name)),
            },
            Some(Kind::CreatePartitions(c)) => self.create_partitions(c),
            Some(Kind::Reassign(r)) => self.reassign(r),
            Some(Kind::CreateKeyspace(k)) => self.create_keyspace(k),
            Some(Kind::DropKeyspace(k)) => self.drop_keyspace(k),
            Some(Kind::CreateTable(t)) => self.create_table(t),
            Some(Kind::AlterTable(t)) => self.alter_table(t),
            Some(Kind::DropTable(t)) => self.drop_table(t),
            Some(Kind::LeaveRing(l)) => self.leave_ring(l),
            Some(Kind::AlterClientQuota(q)) => quotas::apply(&mut self.client_quotas, q),
            Some(Kind::SetGroupConfigs(g)) => group_configs::apply(&mut self.group_configs, g),
            Some(Kind::SetFeatures(f)) => {
                features::apply(&mut self.features, &mut self.features_epoch, index, f)
            }
            Some(Kind::ReportLoss(l)) => {
                let p = usize::try_from(l.partition)
                    .ok()
                    .and_then(|i| self.topics.get_mut(&l.topic)?.partitions.get_mut(i))
                    .ok_or_else(|| MetaError::UnknownPartition(l.topic.clone(), l.partition))?;
                if l.to <= l.from || l.from < 0 {
                    Err(MetaError::Invalid(format!(
                        "empty loss range {}..{}",
                        l.from, l.to
                    )))
                } else {
                    p.lost.push(l);
                    if p.lost.len() > LOSSES_KEPT {
                        p.lost.remove(0);
                    }
                    Ok(Applied::LossReported)
                }
            }
            Some(Kind::AllocateProducerIds(a)) => {
                if a.at_least < 0 || a.at_least > i64::MAX / 2 {
                    Err(MetaError::Invalid(format!(
                        "producer id {} out of range",
                        a.at_least
                    )))
                } else {
                    let first = self.next_producer_id.max(a.at_least);
                    self.next_producer_id = first + PRODUCER_ID_BLOCK;
                    Ok(Applied::ProducerIds { first })
                }
            }
            None => Err(MetaError::Invalid("empty metadata record".into())),
        };
        self.applied = index;
        out
    }

    /// `count` tokens (0: the default) for `node`, taken evenly from the
    /// other nodes' ([`ring::allocate`]).
    fn allocate_tokens(&self, node: i32, count: u32) -> Vec<i64> {
        let taken: Vec<(i64, i32)> = self
            .nodes
            .values()
            .filter(|n| n.id != node)
            .flat_map(|n| n.tokens.iter().map(|t| (*t, n.id)))
            .collect();
        let count = match count {
            0 => ring::DEFAULT_NUM_TOKENS,
            c => (c as usize).min(ring::MAX_NUM_TOKENS),
        };
        ring::allocate(&taken, count)
    }

    /// A node leaving the ring: marked leaving first, then its tokens go.
    /// Refused when the nodes left could not hold a keyspace's replicas.
    fn leave_ring(&mut self, l: LeaveRing) -> Result<Applied, MetaError> {
        let n = self
            .nodes
            .get(&l.node_id)
            .ok_or(MetaError::UnknownNode(l.node_id))?;
        if n.tokens.is_empty() {
            return Err(MetaError::Invalid(format!(
                "node {} has no tokens on the ring",
                l.node_id
            )));
        }
        if !l.done {
            // Every keyspace's replicas must still fit on the nodes staying
            // (Cassandra's decommission refuses the same way).
            let after = self.ring_where(|m| m.id != l.node_id && !m.leaving);
            for (name, ks) in &self.keyspaces {
                let Ok(strategy) = ring::Strategy::from_replication(&ks.replication) else {
                    continue;
                };
                if !after.holds_replicas(&strategy) {
                    return Err(MetaError::Invalid(format!(
                        "node {} cannot leave: the nodes left could not hold keyspace {name}'s \
                         replicas ({:?}); lower its replication first",
                        l.node_id, ks.replication
                    )));
                }
            }
        } else if !n.leaving {
            return Err(MetaError::Invalid(format!(
                "node {} is not leaving the ring",
                l.node_id
            )));
        }
        let n = self.nodes.get_mut(&l.node_id).expect("checked above");
        if l.done {
            n.tokens.clear();
            n.leaving = false;
            n.decommissioned = true;
        } else {
            n.leaving = true;
        }
        Ok(Applied::RingChanged)
    }

    fn register(&mut self, index: u64, r: RegisterNode) -> Result<Applied, MetaError> {
        if r.node_id < 0 {
            return Err(MetaError::Invalid(format!("node id {} < 0", r.node_id)));
        }
        if r.kafka_host.is_empty() || !(0..=65535).contains(&r.kafka_port) {
            return Err(MetaError::Invalid(format!(
                "node {}: bad Kafka address {}:{}",
                r.node_id, r.kafka_host, r.kafka_port
            )));
        }
        if let Some(n) = self.nodes.get_mut(&r.node_id) {
            if n.incarnation == r.incarnation {
                // The same process again (a retried proposal): same epoch; it
                // may update its addresses.
                n.kafka_host = r.kafka_host;
                n.kafka_port = r.kafka_port;
                n.rack = r.rack;
                n.cql_host = r.cql_host;
                n.cql_port = r.cql_port;
                n.datacenter = datacenter(&r.datacenter);
                let epoch = n.epoch;
                if n.tokens.is_empty() && n.cql_port > 0 && !n.decommissioned {
                    let tokens = self.allocate_tokens(r.node_id, r.num_tokens);
                    if let Some(n) = self.nodes.get_mut(&r.node_id) {
                        n.tokens = tokens;
                    }
                }
                return Ok(Applied::Registered {
                    node_id: r.node_id,
                    epoch,
                });
            }
            // A restart: the old incarnation is fenced first, so the partitions
            // it led change leader epoch before the new one leads anything.
            let old = NodeEpoch {
                node_id: r.node_id,
                epoch: n.epoch,
                shutdown: false,
            };
            if !n.fenced {
                self.fence(old)?;
            }
        }
        if self.cluster_id.is_empty() {
            self.cluster_id = r.cluster_id;
        }
        // A node keeps its tokens across restarts; one serving CQL for the
        // first time takes its share of the ring now, at apply, so every
        // replica of the metadata gives it the same tokens and ring ownership
        // changes take their place in one order with schema changes.
        let (mut tokens, leaving, decommissioned) = self
            .nodes
            .get(&r.node_id)
            .map(|n| (n.tokens.clone(), n.leaving, n.decommissioned))
            .unwrap_or_default();
        if tokens.is_empty() && r.cql_port > 0 && !decommissioned {
            tokens = self.allocate_tokens(r.node_id, r.num_tokens);
        }
        let node = Node {
            id: r.node_id,
            epoch: index,
            incarnation: r.incarnation,
            kafka_host: r.kafka_host,
            kafka_port: r.kafka_port,
            rack: r.rack,
            fenced: false,
            shut_down: false,
            cql_host: r.cql_host,
            cql_port: r.cql_port,
            datacenter: datacenter(&r.datacenter),
            tokens,
            leaving,
            decommissioned,
        };
        self.nodes.insert(node.id, node);
        // A registered node serves: partitions that were offline waiting for it lead again.
        self.elect_offline_with(r.node_id);
        Ok(Applied::Registered {
            node_id: r.node_id,
            epoch: index,
        })
    }

    fn node_at(&mut self, f: &NodeEpoch) -> Result<&mut Node, MetaError> {
        let n = self
            .nodes
            .get_mut(&f.node_id)
            .ok_or(MetaError::UnknownNode(f.node_id))?;
        if n.epoch != f.epoch {
            return Err(MetaError::StaleNodeEpoch(f.node_id, n.epoch, f.epoch));
        }
        Ok(n)
    }

    fn fence(&mut self, f: NodeEpoch) -> Result<Applied, MetaError> {
        let n = self.node_at(&f)?;
        n.fenced = true;
        n.shut_down |= f.shutdown;
        let id = f.node_id;
        let mut changed = 0;
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if !p.isr.contains(&id) {
                    continue;
                }
                if p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    p.partition_epoch += 1;
                }
                if p.leader == id {
                    // Another ISR member leads, or nobody (the ISR was this node alone).
                    let next = p
                        .isr
                        .iter()
                        .copied()
                        .find(|r| *r != id && is_live(&self.nodes, *r));
                    p.leader = next.unwrap_or(NO_LEADER);
                    p.leader_epoch += 1;
                    if p.isr.len() == 1 && p.isr[0] == id {
                        p.partition_epoch += 1;
                    }
                    changed += 1;
                }
            }
        }
        Ok(Applied::Fenced { changed })
    }

    fn unfence(&mut self, f: NodeEpoch) -> Result<Applied, MetaError> {
        let n = self.node_at(&f)?;
        if n.shut_down {
            return Err(MetaError::Invalid(format!(
                "node {} shut down; it registers again when it starts",
                f.node_id
            )));
        }
        n.fenced = false;
        let changed = self.elect_offline_with(f.node_id);
        Ok(Applied::Unfenced { changed })
    }

    /// Partitions without a leader whose ISR holds `id` (now live) get it as leader.
    fn elect_offline_with(&mut self, id: i32) -> usize {
        let mut changed = 0;
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if p.leader == NO_LEADER && p.isr.contains(&id) {
                    p.leader = id;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                    changed += 1;
                }
            }
        }
        changed
    }

    fn create_topic(&mut self, t: CreateTopic) -> Result<Applied, MetaError> {
        if self.topics.contains_key(&t.name) {
            return Err(MetaError::TopicExists(t.name));
        }
        if t.name.is_empty() || t.name.len() > 249 {
            return Err(MetaError::Invalid(format!("bad topic name {:?}", t.name)));
        }
        if t.topic_id.len() != 16 {
            return Err(MetaError::Invalid("a topic id is 16 bytes".into()));
        }
        if self.removed_topic_ids.contains(&t.topic_id) {
            return Err(MetaError::Invalid(format!(
                "topic id of {} belongs to a deleted topic",
                t.name
            )));
        }
        if t.partitions.is_empty() {
            return Err(MetaError::Invalid("a topic needs a partition".into()));
        }
        let partitions = self.new_partitions(&t.partitions, 0)?;
        self.topics.insert(
            t.name,
            Topic {
                id: t.topic_id,
                partitions,
                configs: t.configs,
            },
        );
        Ok(Applied::TopicCreated)
    }

    /// New, empty partitions with these replicas, numbered from `first`.
    fn new_partitions(
        &self,
        assigned: &[Replicas],
        first: usize,
    ) -> Result<Vec<Partition>, MetaError> {
        let mut partitions = Vec::with_capacity(assigned.len());
        for (i, a) in assigned.iter().enumerate() {
            check_replicas(&self.nodes, &a.replicas)
                .map_err(|e| MetaError::Invalid(format!("partition {}: {e}", first + i)))?;
            // A new partition is empty on every replica: all are in sync, and
            // the first live one (the preferred leader when it is up) leads.
            let leader = a
                .replicas
                .iter()
                .copied()
                .find(|r| is_live(&self.nodes, *r))
                .unwrap_or(NO_LEADER);
            partitions.push(Partition {
                replicas: a.replicas.clone(),
                isr: a.replicas.clone(),
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                lost: Vec::new(),
                adding: Vec::new(),
                removing: Vec::new(),
                last_unclean_epoch: 0,
            });
        }
        Ok(partitions)
    }

    fn create_partitions(&mut self, c: CreatePartitions) -> Result<Applied, MetaError> {
        let have = self
            .topics
            .get(&c.topic)
            .ok_or_else(|| MetaError::UnknownTopic(c.topic.clone()))?
            .partitions
            .len();
        if c.partitions.is_empty() {
            return Err(MetaError::Invalid("no new partitions".into()));
        }
        let new = self.new_partitions(&c.partitions, have)?;
        let topic = self.topics.get_mut(&c.topic).expect("checked above");
        topic.partitions.extend(new);
        Ok(Applied::PartitionsCreated)
    }

    fn change_partition(&mut self, c: PartitionChange) -> Result<Applied, MetaError> {
        let nodes = &self.nodes;
        let topic = self
            .topics
            .get_mut(&c.topic)
            .ok_or_else(|| MetaError::UnknownTopic(c.topic.clone()))?;
        let unclean_ok = topic
            .configs
            .get(UNCLEAN_LEADER_ELECTION)
            .is_some_and(|v| v == "true");
        let p = usize::try_from(c.partition)
            .ok()
            .and_then(|i| topic.partitions.get_mut(i))
            .ok_or_else(|| MetaError::UnknownPartition(c.topic.clone(), c.partition))?;
        if let Some(le) = c.leader_epoch {
            if le != p.leader_epoch {
                return Err(MetaError::FencedLeaderEpoch(
                    c.topic,
                    c.partition,
                    le,
                    p.leader_epoch,
                ));
            }
        }
        if c.partition_epoch != p.partition_epoch {
            return Err(MetaError::StaleEpoch(
                c.topic,
                c.partition,
                p.partition_epoch,
                c.partition_epoch,
            ));
        }
        let mut next = p.clone();
        let mut unclean = false;
        if let Some(isr) = &c.isr {
            if isr.replicas.is_empty() {
                return Err(MetaError::Invalid("an ISR cannot be empty".into()));
            }
            let mut seen = BTreeSet::new();
            for r in &isr.replicas {
                if !p.replicas.contains(r) || !seen.insert(*r) {
                    return Err(MetaError::Invalid(format!(
                        "ISR {:?} is not a set of the replicas {:?}",
                        isr.replicas, p.replicas
                    )));
                }
                // KIP-903: a fenced or restarted broker may not join the ISR.
                if !is_live(nodes, *r) && !p.isr.contains(r) {
                    return Err(MetaError::Invalid(format!(
                        "node {r} is fenced and cannot join the ISR"
                    )));
                }
            }
            next.isr = isr.replicas.clone();
        }
        if let Some(l) = c.leader {
            if l == NO_LEADER {
                next.leader = NO_LEADER;
            } else {
                if !p.replicas.contains(&l) {
                    return Err(MetaError::Invalid(format!("node {l} is not a replica")));
                }
                if !is_live(nodes, l) {
                    return Err(MetaError::Invalid(format!("node {l} is not live")));
                }
                if !next.isr.contains(&l) {
                    if !(c.unclean && (unclean_ok || c.forced)) {
                        return Err(MetaError::UncleanNotAllowed(c.topic));
                    }
                    // The new leader's log is the truth from now on: it is the ISR.
                    next.isr = vec![l];
                    unclean = true;
                }
                next.leader = l;
            }
            if next.leader != p.leader {
                next.leader_epoch += 1;
            }
            if unclean {
                next.last_unclean_epoch = next.leader_epoch;
            }
        } else if next.leader != NO_LEADER && !next.isr.contains(&next.leader) {
            return Err(MetaError::Invalid(format!(
                "the ISR {:?} must hold the leader {}",
                next.isr, next.leader
            )));
        }
        // A replica that joined the ISR may be the last one a reassignment waited for.
        complete_reassignment(nodes, &mut next);
        if next != *p {
            next.partition_epoch += 1;
            *p = next;
        }
        Ok(Applied::PartitionChanged(p.clone()))
    }

    /// KIP-455. A new target replaces any reassignment under way (its
    /// original replicas stay the ones before the first); no target cancels
    /// it, back to the original replicas, which must keep an in-sync one.
    fn reassign(&mut self, r: Reassign) -> Result<Applied, MetaError> {
        let nodes = &self.nodes;
        let p = usize::try_from(r.partition)
            .ok()
            .and_then(|i| self.topics.get_mut(&r.topic)?.partitions.get_mut(i))
            .ok_or_else(|| MetaError::UnknownPartition(r.topic.clone(), r.partition))?;
        let original = p.original();
        let mut next = p.clone();
        match r.target {
            Some(target) => {
                check_replicas(nodes, &target.replicas).map_err(MetaError::InvalidReplicas)?;
                let target = target.replicas;
                next.adding = target
                    .iter()
                    .copied()
                    .filter(|t| !original.contains(t))
                    .collect();
                next.removing = original
                    .iter()
                    .copied()
                    .filter(|o| !target.contains(o))
                    .collect();
                next.replicas = target;
                next.replicas.extend(next.removing.iter().copied());
                // Replicas a replaced reassignment had been adding leave the ISR too.
                next.isr.retain(|r| next.replicas.contains(r));
                if next.isr.is_empty() {
                    return Err(MetaError::InvalidReplicas(format!(
                        "{}-{}: no in-sync replica would remain",
                        r.topic, r.partition
                    )));
                }
            }
            None => {
                if !p.reassigning() {
                    return Err(MetaError::NoReassignment(r.topic, r.partition));
                }
                next.isr.retain(|r| original.contains(r));
                if next.isr.is_empty() {
                    return Err(MetaError::InvalidReplicas(format!(
                        "{}-{}: cancelling would leave no in-sync replica; \
                         let the reassignment finish or reassign again",
                        r.topic, r.partition
                    )));
                }
                next.replicas = original;
                next.adding.clear();
                next.removing.clear();
            }
        }
        if next.leader != NO_LEADER && !next.replicas.contains(&next.leader) {
            next.leader = first_live(nodes, &next.replicas, &next.isr);
            next.leader_epoch += 1;
        }
        complete_reassignment(nodes, &mut next);
        if next != *p {
            next.partition_epoch += 1;
            *p = next;
        }
        Ok(Applied::Reassigned(p.clone()))
    }

    fn set_config(&mut self, c: TopicConfig) -> Result<Applied, MetaError> {
        let topic = self
            .topics
            .get_mut(&c.topic)
            .ok_or_else(|| MetaError::UnknownTopic(c.topic.clone()))?;
        for k in &c.delete {
            topic.configs.remove(k);
        }
        topic.configs.extend(c.set);
        Ok(Applied::ConfigChanged)
    }

    /// Unfenced nodes, in id order.
    pub fn live_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().filter(|n| !n.fenced)
    }

    /// Whether node `id` is registered and not fenced: may lead, and join an ISR.
    pub fn is_live(&self, id: i32) -> bool {
        is_live(&self.nodes, id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&Partition> {
        let i = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(i)
    }
}

/// Finishes a reassignment whose target replicas are all in sync: the leaving
/// replicas go (from the ISR too), and a leader outside the target hands over
/// to the first target replica that is live and in sync (a new leader epoch).
fn complete_reassignment(nodes: &BTreeMap<i32, Node>, p: &mut Partition) {
    if !p.reassigning() {
        return;
    }
    let target = p.target();
    if !target.iter().all(|r| p.isr.contains(r)) {
        return;
    }
    p.isr.retain(|r| target.contains(r));
    if !target.contains(&p.leader) {
        p.leader = first_live(nodes, &target, &p.isr);
        p.leader_epoch += 1;
    }
    p.replicas = target;
    p.adding.clear();
    p.removing.clear();
}

/// The first of `replicas` that is live and in `isr`, or no leader.
fn first_live(nodes: &BTreeMap<i32, Node>, replicas: &[i32], isr: &[i32]) -> i32 {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && is_live(nodes, *r))
        .unwrap_or(NO_LEADER)
}

fn is_live(nodes: &BTreeMap<i32, Node>, id: i32) -> bool {
    nodes.get(&id).is_some_and(|n| !n.fenced)
}

/// A node's datacenter: Cassandra's default name when none is given.
fn datacenter(dc: &str) -> String {
    if dc.is_empty() {
        "datacenter1".into()
    } else {
        dc.into()
    }
}

fn check_replicas(nodes: &BTreeMap<i32, Node>, replicas: &[i32]) -> Result<(), String> {
    if replicas.is_empty() {
        return Err("no replicas".into());
    }
    let mut seen = BTreeSet::new();
    for r in replicas {
        if !nodes.contains_key(r) {
            return Err(format!("node {r} is not registered"));
        }
        if !seen.insert(*r) {
            return Err(format!("node {r} appears twice"));
        }
    }
    Ok(())
}

impl Record {
    pub fn new(kind: record::Kind) -> Record {
        Record { kind: Some(kind) }
    }

    /// A leader election of one partition, based on its partition epoch:
    /// `unclean` when `leader` is outside the ISR, `forced` when an operator
    /// asked for it whatever the topic says.
    pub fn elect(
        topic: &str,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
        unclean: bool,
        forced: bool,
    ) -> Record {
        Record::new(record::Kind::PartitionChange(PartitionChange {
            topic: topic.to_string(),
            partition,
            partition_epoch,
            isr: None,
            leader: Some(leader),
            unclean,
            leader_epoch: None,
            forced,
        }))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

#[cfg(test)]
mod tests;
