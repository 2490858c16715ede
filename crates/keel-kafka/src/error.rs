//! The one place where broker errors become Kafka error codes.

use kafka_protocol::ResponseError as E;
use keel_broker::BrokerError;

/// The Kafka error code for `e`.
pub fn code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::UnknownTopicOrPartition(_) => E::UnknownTopicOrPartition,
        BrokerError::TopicAlreadyExists(_) => E::TopicAlreadyExists,
        BrokerError::InvalidTopic(_) => E::InvalidTopicException,
        BrokerError::InvalidPartitions(_) => E::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => E::InvalidReplicationFactor,
        BrokerError::InvalidConfig(_) => E::InvalidConfig,
        BrokerError::InvalidRequiredAcks(_) => E::InvalidRequiredAcks,
        BrokerError::NotEnoughReplicas { .. } => E::NotEnoughReplicas,
        BrokerError::NotEnoughReplicasAfterAppend { .. } => E::NotEnoughReplicasAfterAppend,
        BrokerError::CorruptMessage(_) => E::CorruptMessage,
        BrokerError::MessageTooLarge { .. } => E::MessageTooLarge,
        BrokerError::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
        BrokerError::InvalidRecord(_) | BrokerError::InvalidRecords { .. } => E::InvalidRecord,
        BrokerError::InvalidProducerEpoch(_) => E::InvalidProducerEpoch,
        BrokerError::OutOfOrderSequence(_) => E::OutOfOrderSequenceNumber,
        BrokerError::UnknownProducerId(_) => E::UnknownProducerId,
        BrokerError::InvalidRequest(_) => E::InvalidRequest,
        BrokerError::InvalidGroupId(_) => E::InvalidGroupId,
        BrokerError::InvalidSessionTimeout(_) => E::InvalidSessionTimeout,
        BrokerError::UnknownMemberId(_) => E::UnknownMemberId,
        BrokerError::InconsistentGroupProtocol(_) => E::InconsistentGroupProtocol,
        BrokerError::RebalanceInProgress => E::RebalanceInProgress,
        BrokerError::IllegalGeneration(_) => E::IllegalGeneration,
        BrokerError::FencedInstanceId(_) => E::FencedInstanceId,
        BrokerError::GroupMaxSizeReached(_) => E::GroupMaxSizeReached,
        BrokerError::FencedMemberEpoch(_) => E::FencedMemberEpoch,
        BrokerError::StaleMemberEpoch(_) => E::StaleMemberEpoch,
        BrokerError::UnreleasedInstanceId(_) => E::UnreleasedInstanceId,
        BrokerError::UnsupportedAssignor(_) => E::UnsupportedAssignor,
        BrokerError::InvalidRegularExpression(_) => E::InvalidRegularExpression,
        BrokerError::MemberIdRequired(_) => E::MemberIdRequired,
        BrokerError::CoordinatorNotAvailable(_) => E::CoordinatorNotAvailable,
        BrokerError::GroupIdNotFound(_) => E::GroupIdNotFound,
        BrokerError::NonEmptyGroup(_) => E::NonEmptyGroup,
        BrokerError::OffsetMetadataTooLarge(_) => E::OffsetMetadataTooLarge,
        BrokerError::GroupSubscribedToTopic(_) => E::GroupSubscribedToTopic,
        BrokerError::Storage(_) => E::KafkaStorageError,
        // Retriable: the client refreshes metadata and retries, finding the node again.
        BrokerError::ShuttingDown => E::NotLeaderOrFollower,
        BrokerError::InvalidReplicaAssignment(_) => E::InvalidReplicaAssignment,
        BrokerError::NotCoordinator(_) => E::NotCoordinator,
        BrokerError::FencedLeaderEpoch(_) => E::FencedLeaderEpoch,
        BrokerError::UnknownLeaderEpoch(_) => E::UnknownLeaderEpoch,
        BrokerError::NotLeader(_) => E::NotLeaderOrFollower,
        BrokerError::LeaderNotAvailable(_) => E::LeaderNotAvailable,
        BrokerError::Timeout(_) => E::RequestTimedOut,
        BrokerError::OffsetNotAvailable(_) => E::OffsetNotAvailable,
        BrokerError::PolicyViolation(_) => E::PolicyViolation,
    }
    .code()
}
