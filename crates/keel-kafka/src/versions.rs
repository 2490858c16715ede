//! The APIs and versions this node answers: what ApiVersions advertises, and the
//! gate every request passes. An API not listed here is never decoded.

use kafka_protocol::messages::ApiKey;

/// `(api, min, max)`: every API at the highest version the codec knows; where
/// a version's feature is one Keel lacks (transactions, share groups), the
/// comment says how Keel answers it.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    // v10+ and Fetch v12+ carry KIP-951's leader hints (the leader and its
    // epoch with NOT_LEADER_OR_FOLLOWER; its endpoint from Produce v10 and
    // Fetch v16); Produce v13 and Fetch v13+ name topics by id (KIP-516).
    // Produce v11-12 differ only for transactions (KIP-890), which Keel
    // refuses; Fetch v15 moves a follower's id into its replica state
    // (KIP-903), v17-18 add a follower's directory id and high watermark,
    // which Keel's followers do not send.
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    // v7 MAX_TIMESTAMP (KIP-734), v8/v9 KIP-1005's EARLIEST_LOCAL and
    // LATEST_TIERED (no tiered storage: the log start, and no offset), v10
    // a timeout for remote lookups (KIP-1075), which Keel never waits on.
    (ApiKey::ListOffsets, 1, 10),
    // v13 adds a top-level error code, 0 here (no request-wide failure).
    (ApiKey::Metadata, 0, 13),
    // v3 lists features (KIP-584); v4 lets a supported range start at 0
    // (KAFKA-17011).
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    // v2 lists fenced brokers when asked (KIP-1073).
    (ApiKey::DescribeCluster, 0, 2),
    // Preferred and unclean elections on demand (KIP-183, KIP-460).
    (ApiKey::ElectLeaders, 0, 2),
    // Moving replicas (KIP-455; v1 adds KIP-860's replication-factor guard).
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::ListPartitionReassignments, 0, 0),
    // Followers truncate by it (KIP-101/279); consumers validate positions (KIP-320).
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Idempotent producers only; transactions need a coordinator Keel lacks
    // (v5 only adds KIP-890's TRANSACTION_ABORTABLE, a transactional error).
    (ApiKey::InitProducerId, 0, 5),
    // The classic group protocol beside KIP-848's (ConsumerGroupHeartbeat,
    // ConsumerGroupDescribe; v1 has the client name its member, KIP-1082).
    // OffsetCommit/OffsetFetch start where the codec (and Kafka 4) does; v9
    // carries member epochs, OffsetFetch v10 topic ids (not yet). ListGroups
    // v5 lists group types. FindCoordinator v5 adds KIP-890's
    // TRANSACTION_ABORTABLE, v6 share coordinators (KIP-932), which Keel
    // refuses as INVALID_REQUEST.
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
    // v6 (KIP-1043) gives a reason with an error (a consumer group is not
    // a classic group).
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // KIP-107: the log start moves on the leader, then on the ISR.
    (ApiKey::DeleteRecords, 0, 2),
    // KIP-113: one log directory, the data dir; v4 adds the volume's sizes.
    (ApiKey::DescribeLogDirs, 1, 4),
    // KIP-664: idempotent producers only (no transactions yet).
    (ApiKey::DescribeProducers, 0, 0),
    // KIP-966: Metadata's topics paged by partitions; no eligible leader
    // replicas (ELR) yet, so those fields are null.
    (ApiKey::DescribeTopicPartitions, 0, 0),
    // KIP-546: user and client-id quotas, enforced by throttling (KIP-219);
    // ip quotas and controller_mutation_rate are refused, not enforced.
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
    // KIP-584: group.version (KIP-848 on or off) and transaction.version;
    // ApiVersions v3 lists them.
    (ApiKey::UpdateFeatures, 0, 2),
    // KIP-714: an empty subscription, so clients push no metrics.
    (ApiKey::GetTelemetrySubscriptions, 0, 0),
];

/// The supported range of `api_key`, if Keel answers it at all.
pub fn range(api_key: i16) -> Option<(ApiKey, i16, i16)> {
    SUPPORTED
        .iter()
        .copied()
        .find(|(k, _, _)| *k as i16 == api_key)
}

// Every advertised range must lie inside what the codec can encode.
#[cfg(test)]
mod tests {
    #[test]
    fn advertised_versions_are_within_the_codec() {
        for &(k, lo, hi) in super::SUPPORTED {
            let v = k.valid_versions();
            assert!(
                v.min <= lo && hi <= v.max && lo <= hi,
                "{k:?} {lo}..={hi} vs codec {v:?}"
            );
        }
    }
}
