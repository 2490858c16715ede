/// Errors of the broker's domain. The Kafka front maps each to a protocol error code
/// in exactly one place (`keel_kafka::error::code`).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BrokerError {
    #[error("unknown topic or partition: {0}")]
    UnknownTopicOrPartition(String),
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replication factor: {0}")]
    InvalidReplicationFactor(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("acks must be -1 (all), 0 or 1, not {0}")]
    InvalidRequiredAcks(i16),
    #[error("in-sync replicas {isr} are fewer than min.insync.replicas {min}")]
    NotEnoughReplicas { isr: i32, min: i32 },
    /// The batch was written, but the ISR shrank below min.insync.replicas
    /// meanwhile: the producer retries (Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    #[error("the batch was written but the in-sync replicas ({isr}) fell below min.insync.replicas ({min})")]
    NotEnoughReplicasAfterAppend { isr: i32, min: i32 },
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("record batch of {size} bytes is larger than max.message.bytes {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Records of a batch at fault, by their index in it (KIP-467).
    #[error("invalid record: {why} (records {indexes:?} of the batch)")]
    InvalidRecords { why: String, indexes: Vec<i32> },
    #[error("producer fenced: {0}")]
    InvalidProducerEpoch(String),
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    #[error(
        "unknown producer id {0}: its state expired or was never written; start a new sequence"
    )]
    UnknownProducerId(i64),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("invalid group id: {0}")]
    InvalidGroupId(String),
    #[error("invalid session timeout: {0}")]
    InvalidSessionTimeout(String),
    #[error("unknown member id {0:?}: rejoin the group")]
    UnknownMemberId(String),
    #[error("inconsistent group protocol: {0}")]
    InconsistentGroupProtocol(String),
    #[error("the group is rebalancing: rejoin")]
    RebalanceInProgress,
    #[error("illegal generation: {0}")]
    IllegalGeneration(String),
    #[error("fenced instance id: {0}")]
    FencedInstanceId(String),
    /// KIP-848: the member's epoch is not the coordinator's; it rejoins.
    #[error("fenced member epoch: {0}")]
    FencedMemberEpoch(String),
    /// KIP-848: an OffsetCommit/OffsetFetch at an epoch the member has left.
    #[error("stale member epoch: {0}")]
    StaleMemberEpoch(String),
    #[error("unreleased instance id: {0}")]
    UnreleasedInstanceId(String),
    #[error("unsupported assignor: {0}")]
    UnsupportedAssignor(String),
    #[error("invalid regular expression: {0}")]
    InvalidRegularExpression(String),
    #[error("group full: {0}")]
    GroupMaxSizeReached(String),
    /// KIP-394: the join must be retried with this member id.
    #[error("member id required: rejoin as {0}")]
    MemberIdRequired(String),
    #[error("coordinator not available: {0}")]
    CoordinatorNotAvailable(String),
    #[error("group {0} does not exist")]
    GroupIdNotFound(String),
    #[error("group {0} still has members")]
    NonEmptyGroup(String),
    #[error("offset metadata of {0} bytes is larger than offset.metadata.max.bytes")]
    OffsetMetadataTooLarge(usize),
    #[error("the group's members subscribe to topic {0}")]
    GroupSubscribedToTopic(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// This broker does not coordinate the group (its offsets partition is led elsewhere).
    #[error("{0}")]
    NotCoordinator(String),
    /// KIP-320: the request's leader epoch is older than the partition's.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// KIP-320: the request's leader epoch is newer than this broker knows.
    #[error("{0}")]
    UnknownLeaderEpoch(String),
    /// Another broker leads the partition (Kafka's NOT_LEADER_OR_FOLLOWER).
    #[error("{0}")]
    NotLeader(String),
    /// No broker leads the partition now (Kafka's LEADER_NOT_AVAILABLE).
    #[error("{0}")]
    LeaderNotAvailable(String),
    /// The cluster metadata could not take the change in time (no quorum).
    #[error("{0}")]
    Timeout(String),
    /// A consumer reading from a follower asked for an offset the follower
    /// does not hold yet (Kafka's OFFSET_NOT_AVAILABLE, retriable).
    #[error("{0}")]
    OffsetNotAvailable(String),
    /// The topic's configs forbid it (Kafka's POLICY_VIOLATION).
    #[error("{0}")]
    PolicyViolation(String),
}

impl From<keel_storage::StorageError> for BrokerError {
    fn from(e: keel_storage::StorageError) -> Self {
        use keel_storage::StorageError as S;
        match e {
            S::CorruptBatch(why) => BrokerError::CorruptMessage(why),
            S::InvalidRecords { why, indexes } => BrokerError::InvalidRecords { why, indexes },
            S::BatchTooLarge { size, limit } => BrokerError::MessageTooLarge { size, limit },
            S::OffsetOutOfRange { offset, start, end } => {
                BrokerError::OffsetOutOfRange { offset, start, end }
            }
            S::Aborted => BrokerError::ShuttingDown,
            e @ (S::Damaged { .. } | S::Io { .. }) => BrokerError::Storage(e.to_string()),
        }
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
