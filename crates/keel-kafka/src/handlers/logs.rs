//! Requests about partitions' logs as a whole, as admin tools send them:
//! DeleteRecords (KIP-107), DescribeLogDirs (KIP-113) and DescribeProducers
//! (KIP-664).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use keel_broker::BrokerError;

use super::Handler;
use crate::error::code;

/// Longest a DeleteRecords waits for the followers, whatever it asks.
const DELETE_RECORDS_TIMEOUT_MS_MAX: i32 = 300_000;

/// One partition of a DeleteRecords: the offset its start must reach, or
/// why it cannot.
type Asked = BTreeMap<(String, i32), Result<i64, i16>>;

impl Handler {
    /// DeleteRecords, first half, in request order: each partition's leader
    /// (this node, or the answer is NOT_LEADER_OR_FOLLOWER) moves its log
    /// start, durably. The second half, [`Handler::delete_records_done`],
    /// waits for the followers.
    pub(super) fn delete_records_start(&self, r: &DeleteRecordsRequest) -> Asked {
        let mut asked = Asked::new();
        for t in &r.topics {
            for p in &t.partitions {
                let (topic, index) = (t.name.as_str(), p.partition_index);
                let moved = self
                    .check_leader(topic, index)
                    .and_then(|_| self.broker.delete_records(topic, index, p.offset));
                asked.insert((topic.to_string(), index), moved.map_err(|e| code(&e)));
            }
        }
        asked
    }

    /// DeleteRecords, second half: answered once every partition's low
    /// watermark (its leader's and in-sync followers' smallest log start)
    /// has reached its offset, or REQUEST_TIMED_OUT for those that did not
    /// within `timeout_ms` (Kafka's `DelayedDeleteRecords`).
    pub(super) async fn delete_records_done(
        &self,
        r: DeleteRecordsRequest,
        asked: Asked,
    ) -> DeleteRecordsResponse {
        let timeout =
            Duration::from_millis(r.timeout_ms.clamp(0, DELETE_RECORDS_TIMEOUT_MS_MAX) as u64);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changed = self.broker.data_version();
        let mut answers: BTreeMap<(String, i32), (i64, i16)> = BTreeMap::new();
        loop {
            changed.borrow_and_update();
            for (key, want) in &asked {
                if answers.contains_key(key) {
                    continue;
                }
                let answer = match want {
                    Err(e) => Some((-1, *e)),
                    Ok(want) => match self.broker.low_watermark(&key.0, key.1) {
                        Ok(low) if low >= *want => Some((low, 0)),
                        Ok(_) => None,
                        Err(e) => Some((-1, code(&e))),
                    },
                };
                if let Some(a) = answer {
                    answers.insert(key.clone(), a);
                }
            }
            if answers.len() == asked.len() {
                break;
            }
            tokio::select! {
                c = changed.changed() => if c.is_err() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let mut resp = DeleteRecordsResponse::default();
        for t in r.topics {
            let mut out = DeleteRecordsTopicResult::default().with_name(t.name.clone());
            for p in t.partitions {
                let key = (t.name.to_string(), p.partition_index);
                let (low, error) = answers.get(&key).copied().unwrap_or_else(|| {
                    // Still short of it: the low watermark as it stands.
                    let low = self.broker.low_watermark(&key.0, key.1).unwrap_or(-1);
                    (low, ResponseError::RequestTimedOut.code())
                });
                out.partitions.push(
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(low)
                        .with_error_code(error),
                );
            }
            resp.topics.push(out);
        }
        resp
    }

    /// DescribeLogDirs: every partition replica this node holds (those asked
    /// for, or all), in its one data directory, with the volume's size.
    pub(super) fn describe_log_dirs(&self, r: &DescribeLogDirsRequest) -> DescribeLogDirsResponse {
        let wanted: Option<BTreeMap<&str, &[i32]>> = r.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.topic.as_str(), t.partitions.as_slice()))
                .collect()
        });
        let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
        for p in self.broker.log_dir_partitions() {
            let asked = wanted.as_ref().is_none_or(|w| {
                w.get(p.topic.as_str())
                    .is_some_and(|ps| ps.contains(&p.partition))
            });
            if asked {
                topics.entry(p.topic).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.partition)
                        .with_partition_size(i64::try_from(p.size_bytes).unwrap_or(i64::MAX))
                        .with_offset_lag(p.offset_lag),
                );
            }
        }
        let dir = std::fs::canonicalize(&self.broker.config().data_dir)
            .unwrap_or_else(|_| self.broker.config().data_dir.clone());
        let (total, usable) = self.broker.disk_space().map_or((-1, -1), |(t, u)| {
            (
                i64::try_from(t).unwrap_or(i64::MAX),
                i64::try_from(u).unwrap_or(i64::MAX),
            )
        });
        let result = DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_string(dir.display().to_string()))
            .with_total_bytes(total)
            .with_usable_bytes(usable)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        DescribeLogDirsTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name)))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        DescribeLogDirsResponse::default().with_results(vec![result])
    }

    /// DescribeProducers: the idempotent producers each asked partition
    /// holds state for, on this replica; a node that holds no replica of it
    /// answers NOT_LEADER_OR_FOLLOWER (UNKNOWN_TOPIC_OR_PARTITION when no
    /// node does).
    pub(super) fn describe_producers(
        &self,
        r: &DescribeProducersRequest,
    ) -> DescribeProducersResponse {
        let mut resp = DescribeProducersResponse::default();
        for t in &r.topics {
            let mut out = TopicResponse::default().with_name(t.name.clone());
            for &index in &t.partition_indexes {
                let mut part = PartitionResponse::default().with_partition_index(index);
                match self.broker.describe_producers(t.name.as_str(), index) {
                    Ok(producers) => {
                        part.active_producers = producers
                            .into_iter()
                            .map(|p| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(p.producer_id))
                                    .with_producer_epoch(i32::from(p.epoch))
                                    .with_last_sequence(p.last_sequence)
                                    .with_last_timestamp(p.last_timestamp_ms)
                                    .with_coordinator_epoch(-1)
                                    .with_current_txn_start_offset(-1)
                            })
                            .collect();
                    }
                    Err(e) => {
                        let e = match e {
                            BrokerError::UnknownTopicOrPartition(_)
                                if self.image().is_some_and(|i| {
                                    i.partition(t.name.as_str(), index).is_some()
                                }) =>
                            {
                                BrokerError::NotLeader(format!(
                                    "broker {} holds no replica of {}-{index}",
                                    self.broker.node_id(),
                                    t.name.as_str()
                                ))
                            }
                            e => e,
                        };
                        part.error_code = code(&e);
                        part.error_message = Some(StrBytes::from_string(e.to_string()));
                    }
                }
                out.partitions.push(part);
            }
            resp.topics.push(out);
        }
        resp
    }
}
