//! Typed request handlers: decode with `kafka-protocol`, act on `keel-broker`,
//! encode the response. A body that does not decode is an error, and the server
//! closes the connection, as Kafka does.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use keel_broker::{Broker, BrokerError, ConfigEntry, PartitionInfo};

use crate::error::code;
use crate::frame::{self, Request};
use crate::quotas::{self, Quotas, Throttle, ANONYMOUS};
use crate::versions;

mod cluster;
mod consumer_groups;
mod features;
mod groups;
mod logs;
mod quota_admin;
pub use cluster::{ClusterView, Proposer};
use cluster::{LeaderHint, ReadFrom};

/// Longest a Fetch may long-poll, whatever it asks for.
pub const FETCH_WAIT_MS_MAX: i32 = 30_000;
/// Longest a Produce waits for durability, whatever its timeout says.
pub const PRODUCE_TIMEOUT_MS_MAX: i32 = 300_000;

/// What the connection sends back for a request, in request order.
pub enum Reply {
    /// Encoded and framed.
    Ready(Bytes),
    /// Finishes later (a produce waiting for fsync, a long-polling fetch).
    Deferred(Pin<Box<dyn Future<Output = anyhow::Result<Bytes>> + Send>>),
    /// acks=0 produce: Kafka sends no response at all.
    Nothing,
}

/// Where clients should connect, as Metadata and DescribeCluster say.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub host: String,
    pub port: i32,
}

/// One broker as Metadata and DescribeCluster list it: id, host, port, rack.
type BrokerEntry = (i32, String, i32, Option<String>);

#[derive(Clone)]
pub struct Handler {
    broker: Broker,
    advertised: Advertised,
    cluster: Option<ClusterView>,
    quotas: Quotas,
}

/// Who sent a request, as client quotas measure it, and its connection's
/// mute.
struct Caller {
    /// A cheap clone of the header's (refcounted) bytes: no allocation on
    /// the produce and fetch paths.
    client_id: StrBytes,
    mute: Option<std::sync::Arc<Throttle>>,
}

impl Caller {
    fn of(header: &RequestHeader, mute: &Option<std::sync::Arc<Throttle>>) -> Caller {
        Caller {
            client_id: header.client_id.clone().unwrap_or_default(),
            mute: mute.clone(),
        }
    }

    /// Mutes the connection for `d`; returns it in ms for `throttle_time_ms`.
    fn throttle(&self, d: Duration) -> i32 {
        if let Some(m) = &self.mute {
            m.hold(d);
        }
        i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
    }
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_name(n: &str) -> TopicName {
    TopicName(s(n))
}

/// Encodes and frames a response.
pub fn encode<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> anyhow::Result<Bytes> {
    let size = body.compute_size(version).context("size response")?;
    let mut buf = BytesMut::with_capacity(4 + 8 + size);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .context("encode response header")?;
    body.encode(&mut buf, version)
        .with_context(|| format!("encode {api_key:?} v{version} response"))?;
    Ok(frame::with_length(buf))
}

/// ApiVersions at v0, the version every client can read (KIP-511): used both for
/// requests and, with UNSUPPORTED_VERSION, to answer a version it does not know.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error_code;
    r.api_keys = versions::SUPPORTED
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    r
}

impl Handler {
    pub fn new(broker: Broker, advertised: Advertised) -> Self {
        Handler {
            broker,
            advertised,
            cluster: None,
            quotas: Quotas::new(quotas::Windows::default()),
        }
    }

    /// Measures client quotas over these windows (Kafka's
    /// `quota.window.num`, `quota.window.size.seconds`).
    pub fn with_quota_windows(mut self, windows: quotas::Windows) -> Self {
        self.quotas = Quotas::new(windows);
        self
    }

    /// Serves the cluster's brokers, controller and id from the metadata image.
    pub fn with_cluster(mut self, cluster: ClusterView) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// Every live broker (id, host, port, rack) and the controller: from the
    /// metadata image once this node is in it, else this node alone. This
    /// node is always listed while it answers (a fenced node still serves
    /// what it leads locally).
    fn brokers(&self) -> (Vec<BrokerEntry>, i32, String) {
        let me = self.broker.node_id();
        let own = (me, self.advertised.host.clone(), self.advertised.port, None);
        let Some(c) = &self.cluster else {
            return (vec![own], me, self.broker.cluster_id().to_string());
        };
        let image = c.image.borrow().clone();
        let mut out: Vec<_> = image
            .live_nodes()
            .map(|n| {
                let rack = (!n.rack.is_empty()).then(|| n.rack.clone());
                (n.id, n.kafka_host.clone(), n.kafka_port, rack)
            })
            .collect();
        if !out.iter().any(|b| b.0 == me) {
            let rack = image
                .nodes
                .get(&me)
                .filter(|n| !n.rack.is_empty())
                .map(|n| n.rack.clone());
            out.push((own.0, own.1, own.2, rack));
            out.sort_by_key(|b| b.0);
        }
        let cluster_id = if image.cluster_id.is_empty() {
            self.broker.cluster_id().to_string()
        } else {
            image.cluster_id.clone()
        };
        (out, (c.controller)(), cluster_id)
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Handles one request. Appends happen before this returns, so requests on one
    /// connection are applied in order even when their replies are deferred.
    ///
    /// The time it takes counts against the client's `request_percentage`
    /// quota, if it has one; over it, the connection is muted (Kafka's
    /// `ClientRequestQuotaManager`; Keel's own replication client, whose
    /// client id has Kafka's internal prefix `__`, is exempt).
    pub fn handle(&self, req: Request) -> anyhow::Result<Reply> {
        let image = self.image();
        let limited = image.as_ref().is_some_and(|i| !i.client_quotas.is_empty())
            && !req
                .header
                .client_id
                .as_ref()
                .is_some_and(|c| c.starts_with("__"));
        if !limited {
            return self.dispatch(req);
        }
        let started = std::time::Instant::now();
        let caller = Caller::of(&req.header, &req.throttle);
        let out = self.dispatch(req);
        let percent = started.elapsed().as_secs_f64() * 100.0;
        let quotas = image.as_ref().map_or(&[][..], |i| &i.client_quotas[..]);
        let wait = self.quotas.record(
            quotas,
            quotas::Kind::Request,
            ANONYMOUS,
            caller.client_id.as_str(),
            percent,
            quotas::now_ms(),
        );
        caller.throttle(wait);
        out
    }

    /// The image's client quotas (none without a cluster).
    fn client_quotas(&self) -> Option<std::sync::Arc<keel_meta::Image>> {
        self.image().filter(|i| !i.client_quotas.is_empty())
    }

    fn dispatch(&self, req: Request) -> anyhow::Result<Reply> {
        let v = req.header.request_api_version;
        let cid = req.header.correlation_id;
        let mut body = req.body;
        macro_rules! decode {
            ($t:ty) => {{
                let r = <$t>::decode(&mut body, v)
                    .with_context(|| format!("decode {:?} v{v}", req.api_key))?;
                // Kafka ignores bytes after a decoded body, and clients rely on it:
                // librdkafka 2.16 leaves a 4-byte array-count placeholder in an
                // all-topics Metadata v9+ request (rd_kafka_MetadataRequest0).
                if !body.is_empty() {
                    tracing::debug!(
                        "ignoring {} bytes after the {:?} v{v} body",
                        body.len(),
                        req.api_key
                    );
                }
                r
            }};
        }
        let key = req.api_key;
        match key {
            ApiKey::ApiVersions => {
                let _ = decode!(ApiVersionsRequest);
                encode(key, v, cid, &self.api_versions(v)).map(Reply::Ready)
            }
            ApiKey::Metadata => {
                let r = decode!(MetadataRequest);
                let resp = self.metadata(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DescribeTopicPartitions => {
                let r = decode!(DescribeTopicPartitionsRequest);
                let resp = self.describe_topic_partitions(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::Produce => {
                let caller = Caller::of(&req.header, &req.throttle);
                let r = decode!(ProduceRequest);
                Ok(self.produce(r, v, cid, &caller))
            }
            ApiKey::Fetch => {
                let mut r = decode!(FetchRequest);
                // v15+ carries a follower's id in its replica state (KIP-903).
                if v >= 15 {
                    r.replica_id = r.replica_state.replica_id;
                }
                let follower = r.replica_id.0;
                if follower >= 0 && self.cluster.as_ref().is_some_and(|c| c.is_cut(follower)) {
                    // As a network partition would: the follower hears nothing.
                    anyhow::bail!("the lab cut this node off from broker {follower}");
                }
                let h = self.clone();
                let caller = Caller::of(&req.header, &req.throttle);
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.fetch(r, v, &caller).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::ListOffsets => {
                let r = decode!(ListOffsetsRequest);
                let resp = self.list_offsets(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::CreateTopics => {
                let r = decode!(CreateTopicsRequest);
                let resp = self.create_topics(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DeleteTopics => {
                let r = decode!(DeleteTopicsRequest);
                let resp = self.delete_topics(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::CreatePartitions => {
                let r = decode!(CreatePartitionsRequest);
                let resp = self.create_partitions(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DescribeConfigs => {
                let r = decode!(DescribeConfigsRequest);
                let resp = self.describe_configs(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::AlterConfigs => {
                let r = decode!(AlterConfigsRequest);
                let resp = self.alter_configs(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::IncrementalAlterConfigs => {
                let r = decode!(IncrementalAlterConfigsRequest);
                let resp = self.incremental_alter_configs(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DescribeCluster => {
                let r = decode!(DescribeClusterRequest);
                let resp = self.describe_cluster(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::InitProducerId => {
                let r = decode!(InitProducerIdRequest);
                let resp = self.init_producer_id(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::FindCoordinator => {
                let r = decode!(FindCoordinatorRequest);
                let resp = self.find_coordinator(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::JoinGroup => {
                let r = decode!(JoinGroupRequest);
                let h = self.clone();
                let client_id = client_id(&req.header);
                let host = req.client_host;
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.join_group(r, v, client_id, host).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::SyncGroup => {
                let r = decode!(SyncGroupRequest);
                let h = self.clone();
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.sync_group(r).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::Heartbeat => {
                let r = decode!(HeartbeatRequest);
                encode(key, v, cid, &self.heartbeat(r)).map(Reply::Ready)
            }
            ApiKey::LeaveGroup => {
                let r = decode!(LeaveGroupRequest);
                encode(key, v, cid, &self.leave_group(r, v)).map(Reply::Ready)
            }
            ApiKey::OffsetCommit => {
                let r = decode!(OffsetCommitRequest);
                let h = self.clone();
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.offset_commit(r).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::OffsetFetch => {
                let r = decode!(OffsetFetchRequest);
                encode(key, v, cid, &self.offset_fetch(r, v)).map(Reply::Ready)
            }
            ApiKey::ListGroups => {
                let r = decode!(ListGroupsRequest);
                encode(key, v, cid, &self.list_groups(r)).map(Reply::Ready)
            }
            ApiKey::DescribeGroups => {
                let r = decode!(DescribeGroupsRequest);
                encode(key, v, cid, &self.describe_groups(r, v)).map(Reply::Ready)
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let r = decode!(ConsumerGroupHeartbeatRequest);
                if !self.consumer_groups_enabled() {
                    // Kafka 4's answer while group.version is below 1.
                    let resp = ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(ResponseError::UnsupportedVersion.code())
                        .with_error_message(Some(s(
                            "the consumer group protocol is off: group.version is 0",
                        )))
                        .with_member_epoch(-1);
                    return encode(key, v, cid, &resp).map(Reply::Ready);
                }
                let h = self.clone();
                let client_id = client_id(&req.header);
                let host = req.client_host;
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.consumer_group_heartbeat(r, v, client_id, host).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::ConsumerGroupDescribe => {
                let r = decode!(ConsumerGroupDescribeRequest);
                encode(key, v, cid, &self.consumer_group_describe(r)).map(Reply::Ready)
            }
            ApiKey::DeleteGroups => {
                let r = decode!(DeleteGroupsRequest);
                let h = self.clone();
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.delete_groups(r).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::ElectLeaders => {
                let r = decode!(ElectLeadersRequest);
                let resp = self.elect_leaders(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::AlterPartitionReassignments => {
                let r = decode!(AlterPartitionReassignmentsRequest);
                let resp = self.alter_partition_reassignments(r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::ListPartitionReassignments => {
                let r = decode!(ListPartitionReassignmentsRequest);
                let resp = self.list_partition_reassignments(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::OffsetForLeaderEpoch => {
                let r = decode!(OffsetForLeaderEpochRequest);
                let resp = self.offset_for_leader_epoch(r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::OffsetDelete => {
                let r = decode!(OffsetDeleteRequest);
                let h = self.clone();
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.offset_delete(r).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::DescribeLogDirs => {
                let r = decode!(DescribeLogDirsRequest);
                let resp = self.describe_log_dirs(&r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DescribeProducers => {
                let r = decode!(DescribeProducersRequest);
                let resp = self.describe_producers(&r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DeleteRecords => {
                let r = decode!(DeleteRecordsRequest);
                // The logs' starts move now, in request order; the answer
                // waits for the followers.
                let asked = self.delete_records_start(&r);
                let h = self.clone();
                Ok(Reply::Deferred(Box::pin(async move {
                    let resp = h.delete_records_done(r, asked).await;
                    encode(key, v, cid, &resp)
                })))
            }
            ApiKey::UpdateFeatures => {
                let r = decode!(UpdateFeaturesRequest);
                let resp = self.update_features(&r, v);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::GetTelemetrySubscriptions => {
                let r = decode!(GetTelemetrySubscriptionsRequest);
                let resp = self.get_telemetry_subscriptions(&r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::DescribeClientQuotas => {
                let r = decode!(DescribeClientQuotasRequest);
                let resp = self.describe_client_quotas(&r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            ApiKey::AlterClientQuotas => {
                let r = decode!(AlterClientQuotasRequest);
                let resp = self.alter_client_quotas(&r);
                encode(key, v, cid, &resp).map(Reply::Ready)
            }
            other => bail!("{other:?} passed the version gate but has no handler"),
        }
    }

    /// A partition as the cluster metadata has it: leader, epoch, replicas,
    /// ISR, and the replicas on fenced brokers as offline.
    fn image_partition_metadata(
        image: &keel_meta::Image,
        index: i32,
        p: &keel_meta::Partition,
    ) -> MetadataResponsePartition {
        let ids = |v: &[i32]| v.iter().map(|i| BrokerId(*i)).collect::<Vec<_>>();
        let offline: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|r| image.nodes.get(r).is_none_or(|n| n.fenced))
            .collect();
        let mut m = MetadataResponsePartition::default()
            .with_partition_index(index)
            .with_leader_id(BrokerId(p.leader))
            .with_leader_epoch(p.leader_epoch)
            .with_replica_nodes(ids(&p.replicas))
            .with_isr_nodes(ids(&p.isr))
            .with_offline_replicas(ids(&offline));
        if p.leader == keel_meta::NO_LEADER {
            m.error_code = ResponseError::LeaderNotAvailable.code();
        }
        m
    }

    /// A topic's Metadata entry from the cluster metadata.
    fn image_topic_entry(
        image: &keel_meta::Image,
        name: &str,
        t: &keel_meta::Topic,
        v: i16,
    ) -> MetadataResponseTopic {
        let mut e = MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_is_internal(keel_broker::is_internal(name));
        if v >= 10 {
            e.topic_id = uuid::Uuid::from_slice(&t.id).unwrap_or_default();
        }
        e.partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| Self::image_partition_metadata(image, i as i32, p))
            .collect();
        e
    }

    fn partition_metadata(&self, p: &PartitionInfo) -> MetadataResponsePartition {
        let node = BrokerId(self.broker.node_id());
        MetadataResponsePartition::default()
            .with_partition_index(p.index)
            .with_leader_id(node)
            .with_leader_epoch(p.leader_epoch)
            .with_replica_nodes(vec![node])
            .with_isr_nodes(vec![node])
    }

    /// DescribeTopicPartitions (KIP-966, what Kafka's admin client 3.8+ uses
    /// to describe topics): Metadata's topics, never auto-created, sorted by
    /// name and paged by partitions: at most `response_partition_limit`
    /// (Kafka's cap, 2000, when unset or larger) from the cursor on, and the
    /// cursor where the next page starts.
    fn describe_topic_partitions(
        &self,
        r: DescribeTopicPartitionsRequest,
    ) -> DescribeTopicPartitionsResponse {
        use kafka_protocol::messages::describe_topic_partitions_response::{
            Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
        };
        const PARTITIONS_MAX: usize = 2000;
        let asked = (!r.topics.is_empty()).then(|| {
            r.topics
                .iter()
                .map(|t| {
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(t.name.clone()))
                })
                .collect()
        });
        let md = self.metadata(
            MetadataRequest::default()
                .with_topics(asked)
                .with_allow_auto_topic_creation(false)
                .with_include_topic_authorized_operations(true),
            12,
        );
        let mut topics = md.topics;
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let limit = usize::try_from(r.response_partition_limit)
            .ok()
            .filter(|l| *l > 0)
            .map_or(PARTITIONS_MAX, |l| l.min(PARTITIONS_MAX));
        let mut resp = DescribeTopicPartitionsResponse::default();
        let mut room = limit;
        for t in topics {
            let name = t.name.clone().unwrap_or_default();
            let from = match &r.cursor {
                Some(c) if name.as_str() < c.topic_name.as_str() => continue,
                Some(c) if name.as_str() == c.topic_name.as_str() => c.partition_index,
                _ => 0,
            };
            let mut partitions: Vec<_> = t
                .partitions
                .into_iter()
                .filter(|p| p.partition_index >= from)
                .collect();
            partitions.sort_by_key(|p| p.partition_index);
            if partitions.len() > room {
                resp.next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(name.clone())
                        .with_partition_index(partitions[room].partition_index),
                );
                partitions.truncate(room);
            }
            room -= partitions.len();
            let entry = DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(t.error_code)
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_is_internal(t.is_internal)
                .with_topic_authorized_operations(t.topic_authorized_operations)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            DescribeTopicPartitionsResponsePartition::default()
                                .with_error_code(p.error_code)
                                .with_partition_index(p.partition_index)
                                .with_leader_id(p.leader_id)
                                .with_leader_epoch(p.leader_epoch)
                                .with_replica_nodes(p.replica_nodes)
                                .with_isr_nodes(p.isr_nodes)
                                .with_offline_replicas(p.offline_replicas)
                        })
                        .collect(),
                );
            let full = resp.next_cursor.is_some();
            if !entry.partitions.is_empty() || entry.error_code != 0 || !full {
                resp.topics.push(entry);
            }
            if full {
                break;
            }
        }
        resp
    }

    fn metadata(&self, r: MetadataRequest, v: i16) -> MetadataResponse {
        let (brokers, controller, cluster_id) = self.brokers();
        let mut resp = MetadataResponse::default();
        resp.brokers = brokers
            .into_iter()
            .map(|(id, host, port, rack)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(port)
                    .with_rack(rack.map(s))
            })
            .collect();
        if v >= 2 {
            resp.cluster_id = Some(s(cluster_id));
        }
        resp.controller_id = BrokerId(controller);
        // v0: an empty list means every topic; v1+: null means every topic.
        let wanted = match r.topics {
            None => None,
            Some(t) if t.is_empty() && v == 0 => None,
            Some(t) => Some(t),
        };
        // Before v4 a Metadata request always auto-creates (KIP-204 added the flag).
        let may_create = v < 4 || r.allow_auto_topic_creation;
        let topic_entry = |t: &keel_broker::Topic| {
            let info = t.info();
            let mut e = MetadataResponseTopic::default()
                .with_name(Some(topic_name(&info.name)))
                .with_is_internal(keel_broker::is_internal(&info.name));
            if v >= 10 {
                e.topic_id = info.id;
            }
            e.partitions = info
                .partitions
                .iter()
                .map(|p| self.partition_metadata(p))
                .collect();
            e
        };
        let image = self.image();
        // On a cluster, a topic the metadata holds is described from it;
        // others (this node's own __consumer_offsets) from the local broker.
        let from_image = |name: &str| {
            let image = image.as_ref()?;
            let t = image.topics.get(name)?;
            Some(Self::image_topic_entry(image, name, t, v))
        };
        let by_id = |id: uuid::Uuid| {
            let image = image.as_ref()?;
            image
                .topics
                .iter()
                .find(|(_, t)| t.id.as_slice() == id.as_bytes())
                .map(|(n, t)| Self::image_topic_entry(image, n, t, v))
        };
        resp.topics = match wanted {
            None => {
                let mut all: Vec<MetadataResponseTopic> = Vec::new();
                if let Some(image) = &image {
                    for (n, t) in &image.topics {
                        all.push(Self::image_topic_entry(image, n, t, v));
                    }
                }
                for t in self.broker.topics() {
                    if !image
                        .as_ref()
                        .is_some_and(|i| i.topics.contains_key(&t.name))
                    {
                        all.push(topic_entry(&t));
                    }
                }
                all
            }
            Some(list) => list
                .into_iter()
                .map(|want| {
                    if let Some(e) = want.name.as_ref().and_then(|n| from_image(n.as_str())) {
                        return e;
                    }
                    if want.name.is_none() && !want.topic_id.is_nil() {
                        if let Some(e) = by_id(want.topic_id) {
                            return e;
                        }
                    }
                    let found = match (&want.name, want.topic_id.is_nil()) {
                        (Some(n), _)
                            if self.cluster.is_some()
                                && !keel_broker::is_internal(n.as_str())
                                && self.broker.topic(n.as_str()).is_none() =>
                        {
                            // Auto-creation goes through the cluster metadata too.
                            let created = if may_create && self.broker.config().auto_create_topics {
                                self.cluster_create_topic(
                                    n.as_str(),
                                    -1,
                                    -1,
                                    None,
                                    BTreeMap::new(),
                                    false,
                                )
                                .map(|_| ())
                                .or_else(|e| match e {
                                    BrokerError::TopicAlreadyExists(_) => Ok(()),
                                    e => Err(e),
                                })
                            } else {
                                keel_broker::validate_topic_name(n.as_str())
                                    .and(Err(BrokerError::UnknownTopicOrPartition(n.to_string())))
                            };
                            match created.map(|_| from_image(n.as_str())) {
                                Ok(Some(e)) => return e,
                                // Kafka answers a topic it is auto-creating
                                // LEADER_NOT_AVAILABLE, and clients ask again;
                                // so does a creation the quorum has not taken
                                // in time (a controller election under way):
                                // REQUEST_TIMED_OUT here made librdkafka fail
                                // the records it was about to send.
                                Ok(None) | Err(BrokerError::Timeout(_)) => Err((
                                    ResponseError::LeaderNotAvailable.code(),
                                    Some(n.clone()),
                                    want.topic_id,
                                )),
                                Err(e) => Err((code(&e), Some(n.clone()), want.topic_id)),
                            }
                        }
                        (Some(n), _) => {
                            let got = if may_create {
                                self.broker.topic_or_auto_create(n.as_str())
                            } else {
                                self.broker.topic(n.as_str()).ok_or_else(|| {
                                    BrokerError::UnknownTopicOrPartition(n.to_string())
                                })
                            };
                            got.map_err(|e| (code(&e), Some(n.clone()), want.topic_id))
                        }
                        (None, false) => self.broker.topic_by_id(want.topic_id).ok_or((
                            ResponseError::UnknownTopicId.code(),
                            None,
                            want.topic_id,
                        )),
                        (None, true) => {
                            Err((ResponseError::InvalidRequest.code(), None, want.topic_id))
                        }
                    };
                    match found {
                        Ok(t) => topic_entry(&t),
                        Err((err, name, id)) => {
                            let mut e = MetadataResponseTopic::default()
                                .with_error_code(err)
                                .with_name(name);
                            if v >= 10 {
                                e.topic_id = id;
                            }
                            e
                        }
                    }
                })
                .collect(),
        };
        // Cut off from the controller for a session, this node may no longer
        // lead what its metadata says it does: it names no leader there, and
        // leaves itself out of the brokers, so a client whose one connection
        // is to this node (librdkafka connects only where it must) opens one
        // to another broker and asks there (see `ClusterView::fresh`).
        if self.cluster.as_ref().is_some_and(|c| !(c.fresh)()) {
            let me = self.broker.node_id();
            if resp.brokers.iter().any(|b| b.node_id.0 != me) {
                resp.brokers.retain(|b| b.node_id.0 != me);
            }
            resp.controller_id = BrokerId(-1);
            for p in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                if p.leader_id.0 == me {
                    p.leader_id = BrokerId(-1);
                    p.error_code = ResponseError::LeaderNotAvailable.code();
                }
            }
        }
        // What the caller may do (KIP-430), when asked: Keel has no
        // authorizer yet, so everything a topic or the cluster supports, as
        // Kafka answers without one.
        if r.include_topic_authorized_operations {
            for t in resp.topics.iter_mut().filter(|t| t.error_code == 0) {
                t.topic_authorized_operations = TOPIC_OPERATIONS;
            }
        }
        if (8..=10).contains(&v) && r.include_cluster_authorized_operations {
            resp.cluster_authorized_operations = CLUSTER_OPERATIONS;
        }
        resp
    }

    fn produce(&self, r: ProduceRequest, v: i16, cid: i32, caller: &Caller) -> Reply {
        let acks = r.acks;
        let mut appended = 0usize;
        let mut resp = ProduceResponse::default();
        let mut waits = Vec::new();
        let mut hinted = BTreeMap::new();
        for t in &r.topic_data {
            let mut parts = Vec::new();
            // v13 names topics by id (KIP-516).
            let name = if v >= 13 {
                self.topic_name_of(t.topic_id).map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(t.name.as_str()))
            };
            for p in &t.partition_data {
                let mut pr = PartitionProduceResponse::default().with_index(p.index);
                let records = p.records.as_deref().unwrap_or(&[]);
                let Some(name) = name.as_deref() else {
                    pr.error_code = ResponseError::UnknownTopicId.code();
                    pr.base_offset = -1;
                    parts.push(pr);
                    continue;
                };
                match self
                    .check_leader(name, p.index)
                    .and_then(|_| self.broker.produce(name, p.index, records, acks))
                {
                    Ok(done) => {
                        appended += records.len();
                        pr.base_offset = done.base_offset;
                        pr.log_append_time_ms = done.log_append_time_ms;
                        pr.log_start_offset = done.log_start_offset;
                        if let Some(rx) = done.durable {
                            waits.push((resp.responses.len(), parts.len(), rx));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(topic = %name, partition = p.index, "produce rejected: {e}");
                        pr.error_code = code(&e);
                        // KIP-951 (v10+): where the leader is.
                        if v >= 10 && pr.error_code == ResponseError::NotLeaderOrFollower.code() {
                            if let Some(h) = self.leader_hint(name, p.index) {
                                pr.current_leader = produce_response::LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(h.leader))
                                    .with_leader_epoch(h.epoch);
                                hinted.insert(h.leader, h);
                            }
                        }
                        if v >= 8 {
                            pr.error_message = Some(s(e.to_string()));
                            // KIP-467: which records of the batch were at fault.
                            if let BrokerError::InvalidRecords { why, indexes } = &e {
                                pr.record_errors = indexes
                                    .iter()
                                    .map(|i| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(*i)
                                            .with_batch_index_error_message(Some(s(why.clone())))
                                    })
                                    .collect();
                            }
                        }
                        pr.base_offset = -1;
                    }
                }
                parts.push(pr);
            }
            let topic = TopicProduceResponse::default().with_partition_responses(parts);
            resp.responses.push(if v >= 13 {
                topic.with_topic_id(t.topic_id)
            } else {
                topic.with_name(t.name.clone())
            });
        }
        resp.node_endpoints = hinted
            .into_values()
            .map(|h: LeaderHint| {
                produce_response::NodeEndpoint::default()
                    .with_node_id(BrokerId(h.leader))
                    .with_host(s(h.host))
                    .with_port(h.port)
                    .with_rack(h.rack.map(s))
            })
            .collect();
        // Kafka's produce quota counts what was appended; over the limit
        // the answer says how long to wait and the connection is muted for
        // it, acks=0 included (no answer, but the mute holds).
        if let Some(image) = self.client_quotas() {
            let wait = self.quotas.record(
                &image.client_quotas,
                quotas::Kind::Produce,
                ANONYMOUS,
                caller.client_id.as_str(),
                appended as f64,
                quotas::now_ms(),
            );
            resp.throttle_time_ms = caller.throttle(wait);
        }
        if acks == 0 {
            return Reply::Nothing;
        }
        if waits.is_empty() {
            return match encode(ApiKey::Produce, v, cid, &resp) {
                Ok(b) => Reply::Ready(b),
                Err(e) => Reply::Deferred(Box::pin(async move { Err(e) })),
            };
        }
        let timeout = Duration::from_millis(r.timeout_ms.clamp(0, PRODUCE_TIMEOUT_MS_MAX) as u64);
        Reply::Deferred(Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            for (ti, pi, rx) in waits {
                let pr = &mut resp.responses[ti].partition_responses[pi];
                let err = match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some((code(&e), e.to_string())),
                    Ok(Err(_)) => Some((
                        code(&BrokerError::ShuttingDown),
                        "the node stopped before the write was durable".to_string(),
                    )),
                    // Kafka's answer when acks cannot be gathered in time; the records may
                    // still become durable, so a retry may duplicate them (as in Kafka).
                    Err(_) => Some((
                        ResponseError::RequestTimedOut.code(),
                        "timed out waiting for fsync".to_string(),
                    )),
                };
                if let Some((c, msg)) = err {
                    pr.error_code = c;
                    pr.base_offset = -1;
                    if v >= 8 {
                        pr.error_message = Some(s(msg));
                    }
                }
            }
            encode(ApiKey::Produce, v, cid, &resp)
        }))
    }

    /// One pass over a fetch's partitions. Returns the response and its record bytes.
    fn fetch_once(&self, r: &FetchRequest, v: i16) -> (FetchResponse, usize, bool) {
        // v11+ carries the consumer's rack (KIP-392): it may read from a follower.
        let rack = (v >= 11).then(|| r.rack_id.as_str());
        let mut resp = FetchResponse::default();
        let mut remaining = if r.max_bytes <= 0 {
            i32::MAX as usize
        } else {
            r.max_bytes as usize
        };
        let mut total = 0usize;
        let mut any_error = false;
        let mut hinted = BTreeMap::new();
        for t in &r.topics {
            let mut parts = Vec::new();
            // v13+ names topics by id (KIP-516).
            let name = if v >= 13 {
                self.topic_name_of(t.topic_id).map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(t.topic.as_str()))
            };
            for p in &t.partitions {
                let mut pd = FetchPartitionData::default().with_partition_index(p.partition);
                let Some(name) = name.as_deref() else {
                    any_error = true;
                    pd.error_code = ResponseError::UnknownTopicId.code();
                    pd.high_watermark = -1;
                    pd.records = Some(Bytes::new());
                    parts.push(pd);
                    continue;
                };
                let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                let read = if r.replica_id.0 >= 0 {
                    // A follower's fetch (Kafka's replica fetcher): up to the log
                    // end, its offset recorded as what it holds.
                    self.broker.replica_fetch(
                        name,
                        p.partition,
                        r.replica_id.0,
                        p.current_leader_epoch,
                        p.fetch_offset,
                        p.log_start_offset,
                        limit.max(1),
                    )
                } else {
                    match self.read_from(name, p.partition, p.current_leader_epoch, rack) {
                        Err(e) => Err(e),
                        Ok(ReadFrom::Elsewhere(id)) => {
                            // The consumer should read from `id`: offsets, no records.
                            pd.preferred_read_replica = BrokerId(id);
                            self.broker.fetch_position(name, p.partition)
                        }
                        Ok(ReadFrom::Follower) => self.broker.fetch_follower(
                            name,
                            p.partition,
                            p.fetch_offset,
                            if limit == 0 && total > 0 {
                                0
                            } else {
                                limit.max(1)
                            },
                        ),
                        Ok(ReadFrom::Leader) if limit == 0 && total > 0 => {
                            // The response is full: report offsets without records.
                            self.broker.fetch_position(name, p.partition)
                        }
                        // KIP-74: the first batch is returned whole even past the limits.
                        Ok(ReadFrom::Leader) => {
                            self.broker
                                .fetch(name, p.partition, p.fetch_offset, limit.max(1))
                        }
                    }
                };
                match read {
                    Ok(mut f) => {
                        // KIP-74: only the response's first batch may pass the
                        // limits (so a consumer always progresses); after it, a
                        // partition whose next batch does not fit in what is left
                        // sends no records this time, as Kafka's readFromLog
                        // with minOneMessage false. Without this every partition
                        // added one batch past fetch.max.bytes.
                        if total > 0 && f.bytes.len() > limit {
                            f.bytes.clear();
                        }
                        pd.high_watermark = f.high_watermark;
                        pd.last_stable_offset = f.high_watermark;
                        pd.log_start_offset = f.log_start_offset;
                        total += f.bytes.len();
                        remaining = remaining.saturating_sub(f.bytes.len());
                        pd.records = Some(Bytes::from(f.bytes));
                    }
                    Err(e) => {
                        any_error = true;
                        pd.error_code = code(&e);
                        pd.high_watermark = -1;
                        // KIP-951 (v12+; the endpoints from v16): where the leader is.
                        let moved = [
                            ResponseError::NotLeaderOrFollower.code(),
                            ResponseError::FencedLeaderEpoch.code(),
                        ];
                        if v >= 12 && moved.contains(&pd.error_code) {
                            if let Some(h) = self.leader_hint(name, p.partition) {
                                pd.current_leader = fetch_response::LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(h.leader))
                                    .with_leader_epoch(h.epoch);
                                hinted.insert(h.leader, h);
                            }
                        }
                        if let BrokerError::OffsetOutOfRange { start, end, .. } = e {
                            pd.log_start_offset = start;
                            pd.high_watermark = end;
                        }
                        pd.records = Some(Bytes::new());
                    }
                }
                parts.push(pd);
            }
            let topic = FetchableTopicResponse::default().with_partitions(parts);
            resp.responses.push(if v >= 13 {
                topic.with_topic_id(t.topic_id)
            } else {
                topic.with_topic(t.topic.clone())
            });
        }
        if v >= 16 {
            resp.node_endpoints = hinted
                .into_values()
                .map(|h: LeaderHint| {
                    fetch_response::NodeEndpoint::default()
                        .with_node_id(BrokerId(h.leader))
                        .with_host(s(h.host))
                        .with_port(h.port)
                        .with_rack(h.rack.map(s))
                })
                .collect();
        }
        (resp, total, any_error)
    }

    /// Fetch with long-polling: answers as soon as `min_bytes` are there, an error
    /// occurs, or `max_wait_ms` passes. Sessions (KIP-227) are not kept: session id 0
    /// tells clients to send full fetches, which every client supports.
    /// A fetch, long-polling until `min_bytes` or `max_wait_ms`. A
    /// consumer's is measured against its `consumer_byte_rate`: it asks for
    /// no more than the limit allows in one quota window, and an answer
    /// that takes it over the limit goes out empty, saying how long to
    /// wait (Kafka's `KafkaApis.handleFetchRequest`).
    async fn fetch(&self, mut r: FetchRequest, v: i16, caller: &Caller) -> FetchResponse {
        let limits = self.client_quotas().filter(|_| r.replica_id.0 < 0);
        if let Some(image) = &limits {
            if let Some(max) = self.quotas.fetch_bytes_max(
                &image.client_quotas,
                ANONYMOUS,
                caller.client_id.as_str(),
            ) {
                r.max_bytes = r.max_bytes.min(i32::try_from(max).unwrap_or(i32::MAX));
            }
        }
        let (mut resp, bytes) = self.fetch_until(&r, v).await;
        if let Some(image) = &limits {
            let now = quotas::now_ms();
            let (user, client) = (ANONYMOUS, caller.client_id.as_str());
            let kind = quotas::Kind::Fetch;
            let wait =
                self.quotas
                    .record(&image.client_quotas, kind, user, client, bytes as f64, now);
            if !wait.is_zero() {
                self.quotas
                    .unrecord(&image.client_quotas, kind, user, client, bytes as f64, now);
                resp.responses.clear();
                resp.throttle_time_ms = caller.throttle(wait);
            }
        }
        resp
    }

    async fn fetch_until(&self, r: &FetchRequest, v: i16) -> (FetchResponse, usize) {
        let wait = Duration::from_millis(r.max_wait_ms.clamp(0, FETCH_WAIT_MS_MAX) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.broker.data_version();
        loop {
            changes.borrow_and_update();
            let (resp, bytes, any_error) = self.fetch_once(r, v);
            if bytes >= r.min_bytes.max(0) as usize
                || any_error
                || tokio::time::Instant::now() >= deadline
            {
                return (resp, bytes);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return (resp, bytes); },
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn list_offsets(&self, r: ListOffsetsRequest, v: i16) -> ListOffsetsResponse {
        let mut resp = ListOffsetsResponse::default();
        for t in r.topics {
            let parts = t
                .partitions
                .iter()
                .map(|p| {
                    let mut pr = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match self
                        .check_leader(t.name.as_str(), p.partition_index)
                        .and_then(|_| {
                            self.check_client_epoch(
                                t.name.as_str(),
                                p.partition_index,
                                p.current_leader_epoch,
                            )
                        })
                        .and_then(|_| {
                            // Each special timestamp from the version that
                            // brought it: MAX_TIMESTAMP (-3) v7, KIP-1005's
                            // EARLIEST_LOCAL (-4) v8 and LATEST_TIERED (-5) v9.
                            let since = match p.timestamp {
                                -3 => 7,
                                -4 => 8,
                                -5 => 9,
                                _ => 0,
                            };
                            if v < since {
                                return Err(BrokerError::InvalidConfig(format!(
                                    "timestamp {} needs ListOffsets v{since}",
                                    p.timestamp
                                )));
                            }
                            self.broker
                                .list_offset(t.name.as_str(), p.partition_index, p.timestamp)
                        }) {
                        Ok(found) => {
                            let (offset, ts) = found.unwrap_or((-1, -1));
                            pr.offset = offset;
                            pr.timestamp = ts;
                            if v >= 4 {
                                pr.leader_epoch = self
                                    .image()
                                    .and_then(|i| {
                                        i.partition(t.name.as_str(), p.partition_index)
                                            .map(|p| p.leader_epoch)
                                    })
                                    .unwrap_or(0);
                            }
                        }
                        Err(e) => {
                            pr.error_code = match e {
                                // A special timestamp this version cannot serve.
                                BrokerError::InvalidConfig(_) => {
                                    ResponseError::UnsupportedVersion.code()
                                }
                                e => code(&e),
                            };
                            pr.offset = -1;
                            pr.timestamp = -1;
                        }
                    }
                    pr
                })
                .collect();
            resp.topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(parts),
            );
        }
        resp
    }

    fn describe_entries(&self, entries: Vec<ConfigEntry>) -> Vec<CreatableTopicConfigs> {
        entries
            .into_iter()
            .map(|e| {
                CreatableTopicConfigs::default()
                    .with_name(s(e.name))
                    .with_value(Some(s(e.value)))
                    .with_config_source(if e.is_default {
                        CONFIG_SOURCE_DEFAULT
                    } else {
                        CONFIG_SOURCE_TOPIC
                    })
            })
            .collect()
    }

    fn create_topics(&self, r: CreateTopicsRequest, v: i16) -> CreateTopicsResponse {
        let mut resp = CreateTopicsResponse::default();
        let mut seen = HashSet::new();
        let dupes: HashSet<String> = r
            .topics
            .iter()
            .filter(|t| !seen.insert(t.name.to_string()))
            .map(|t| t.name.to_string())
            .collect();
        for t in r.topics {
            let mut res = CreatableTopicResult::default().with_name(t.name.clone());
            let outcome = (|| {
                if dupes.contains(t.name.as_str()) {
                    return Err((
                        ResponseError::InvalidRequest.code(),
                        format!(
                            "topic {} appears more than once in the request",
                            t.name.as_str()
                        ),
                    ));
                }
                let mut partitions = t.num_partitions;
                let mut replication = t.replication_factor;
                let mut configs = BTreeMap::new();
                for c in &t.configs {
                    let Some(value) = &c.value else {
                        return Err((
                            ResponseError::InvalidConfig.code(),
                            format!("config {} has a null value", c.name.as_str()),
                        ));
                    };
                    configs.insert(c.name.to_string(), value.to_string());
                }
                if self.cluster.is_some() {
                    let assignment = if t.assignments.is_empty() {
                        None
                    } else {
                        if t.num_partitions != -1 || t.replication_factor != -1 {
                            return Err((ResponseError::InvalidRequest.code(), "with replica assignments, partitions and replication factor must be -1".to_string()));
                        }
                        let mut a: Vec<_> = t.assignments.iter().collect();
                        a.sort_by_key(|a| a.partition_index);
                        if a.iter()
                            .enumerate()
                            .any(|(i, a)| a.partition_index != i as i32)
                        {
                            return Err((
                                ResponseError::InvalidReplicaAssignment.code(),
                                "replica assignments must number partitions 0, 1, 2, ..."
                                    .to_string(),
                            ));
                        }
                        Some(
                            a.iter()
                                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                                .collect(),
                        )
                    };
                    return self
                        .cluster_create_topic(
                            t.name.as_str(),
                            partitions,
                            replication,
                            assignment,
                            configs,
                            r.validate_only,
                        )
                        .map(|c| (c.id, c.partitions, c.replication_factor, c.configs))
                        .map_err(|e| (code(&e), e.to_string()));
                }
                if !t.assignments.is_empty() {
                    let node = BrokerId(self.broker.node_id());
                    if t.num_partitions != -1
                        || t.replication_factor != -1
                        || t.assignments.iter().any(|a| a.broker_ids != [node])
                    {
                        return Err((ResponseError::InvalidReplicaAssignment.code(), format!("replica assignments must name only broker {}, with partitions and replication factor -1", node.0)));
                    }
                    partitions = t.assignments.len() as i32;
                    replication = 1;
                }
                if partitions == -1 {
                    partitions = self.broker.config().default_partitions;
                }
                self.broker
                    .create_topic(
                        t.name.as_str(),
                        partitions,
                        replication,
                        configs,
                        r.validate_only,
                    )
                    .map(|topic| (topic.id, partitions, 1, topic.configs()))
                    .map_err(|e| (code(&e), e.to_string()))
            })();
            match outcome {
                Ok((id, partitions, replication, configs)) => {
                    if v >= 5 {
                        res.num_partitions = partitions;
                        res.replication_factor = replication;
                        res.configs = Some(self.describe_entries(configs.describe()));
                    }
                    if v >= 7 {
                        res.topic_id = id;
                    }
                }
                Err((c, msg)) => {
                    res.error_code = c;
                    if v >= 1 {
                        res.error_message = Some(s(msg));
                    }
                    if v >= 5 {
                        res.num_partitions = -1;
                        res.replication_factor = -1;
                    }
                }
            }
            resp.topics.push(res);
        }
        resp
    }

    fn delete_topics(&self, r: DeleteTopicsRequest, v: i16) -> DeleteTopicsResponse {
        let mut resp = DeleteTopicsResponse::default();
        let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if v >= 6 {
            r.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
        } else {
            r.topic_names
                .into_iter()
                .map(|n| (Some(n), uuid::Uuid::nil()))
                .collect()
        };
        for (name, id) in targets {
            let mut res = DeletableTopicResult::default()
                .with_name(name.clone())
                .with_topic_id(id);
            let image = self.image();
            let name = match (&name, id.is_nil()) {
                (Some(n), _) => Ok(n.to_string()),
                (None, false) => image
                    .as_ref()
                    .and_then(|i| {
                        i.topics
                            .iter()
                            .find(|(_, t)| t.id.as_slice() == id.as_bytes())
                            .map(|(n, _)| n.clone())
                    })
                    .or_else(|| self.broker.topic_by_id(id).map(|t| t.name.clone()))
                    .ok_or(ResponseError::UnknownTopicId.code()),
                (None, true) => Err(ResponseError::InvalidRequest.code()),
            };
            match name.and_then(|n| {
                if self.governed(&n) {
                    self.cluster_delete_topic(&n)
                } else {
                    self.broker.delete_topic(&n)
                }
                .map(|id| (n, id))
                .map_err(|e| code(&e))
            }) {
                Ok((n, deleted)) => {
                    res.name = Some(topic_name(&n));
                    if v >= 6 {
                        res.topic_id = deleted;
                    }
                }
                Err(c) => {
                    res.error_code = c;
                    if v >= 5 {
                        res.error_message =
                            ResponseError::try_from_code(c).map(|e| s(e.to_string()));
                    }
                }
            }
            resp.responses.push(res);
        }
        resp
    }

    fn create_partitions(&self, r: CreatePartitionsRequest) -> CreatePartitionsResponse {
        let mut resp = CreatePartitionsResponse::default();
        for t in r.topics {
            let mut res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let done = if self.governed(t.name.as_str()) {
                let assignment = t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
                self.cluster_create_partitions(
                    t.name.as_str(),
                    t.count,
                    assignment,
                    r.validate_only,
                )
            } else {
                self.broker
                    .create_partitions(t.name.as_str(), t.count, r.validate_only)
            };
            if let Err(e) = done {
                res.error_code = code(&e);
                res.error_message = Some(s(e.to_string()));
            }
            resp.results.push(res);
        }
        resp
    }

    fn describe_configs(&self, r: DescribeConfigsRequest, v: i16) -> DescribeConfigsResponse {
        let mut resp = DescribeConfigsResponse::default();
        for res in r.resources {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let entries = match res.resource_type {
                RESOURCE_TOPIC => match self.cluster_configs(res.resource_name.as_str()) {
                    Some(overrides) => {
                        keel_broker::TopicConfigs::new(overrides).map(|c| c.describe())
                    }
                    None => self
                        .broker
                        .topic(res.resource_name.as_str())
                        .map(|t| t.configs().describe())
                        .ok_or_else(|| {
                            BrokerError::UnknownTopicOrPartition(res.resource_name.to_string())
                        }),
                },
                RESOURCE_BROKER => Ok(broker_entries(&self.broker)),
                RESOURCE_GROUP => Ok(self.group_entries(res.resource_name.as_str())),
                other => Err(BrokerError::InvalidConfig(format!(
                    "resource type {other} is not supported"
                ))),
            };
            match entries {
                Ok(entries) => {
                    let keys = res
                        .configuration_keys
                        .as_ref()
                        .map(|k| k.iter().map(|k| k.to_string()).collect::<HashSet<_>>());
                    out.configs = entries
                        .into_iter()
                        .filter(|e| keys.as_ref().is_none_or(|k| k.contains(e.name)))
                        .map(|e| {
                            let source = if res.resource_type == RESOURCE_BROKER {
                                CONFIG_SOURCE_STATIC_BROKER
                            } else if e.is_default {
                                CONFIG_SOURCE_DEFAULT
                            } else if res.resource_type == RESOURCE_GROUP {
                                CONFIG_SOURCE_GROUP
                            } else {
                                CONFIG_SOURCE_TOPIC
                            };
                            let mut c = DescribeConfigsResourceResult::default()
                                .with_name(s(e.name))
                                .with_value(Some(s(e.value.clone())))
                                .with_read_only(res.resource_type == RESOURCE_BROKER)
                                .with_config_source(source);
                            if r.include_synonyms {
                                c.synonyms = vec![DescribeConfigsSynonym::default()
                                    .with_name(s(e.name))
                                    .with_value(Some(s(e.value)))
                                    .with_source(source)];
                            }
                            if v >= 3 {
                                c.config_type = e.kind as i8;
                                if r.include_documentation {
                                    c.documentation = Some(s(e.doc));
                                }
                            }
                            c
                        })
                        .collect();
                }
                Err(e) => {
                    out.error_code = match &e {
                        BrokerError::InvalidConfig(_) => ResponseError::InvalidRequest.code(),
                        e => code(e),
                    };
                    out.error_message = Some(s(e.to_string()));
                }
            }
            resp.results.push(out);
        }
        resp
    }

    /// Applies a topic's new overrides, or explains why not, as an (error code, message).
    fn apply_topic_configs(
        &self,
        resource_type: i8,
        name: &str,
        validate_only: bool,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    ) -> (i16, Option<StrBytes>) {
        if resource_type == RESOURCE_GROUP {
            return self.apply_group_configs(name, validate_only, edit);
        }
        if resource_type != RESOURCE_TOPIC {
            return (
                ResponseError::InvalidRequest.code(),
                Some(s(
                    "only topic configs can be altered; a broker's settings are its flags, KEEL_* variables or --config-file keys, read at start",
                )),
            );
        }
        let governed = self.cluster_configs(name);
        let current = match &governed {
            Some(c) => c.clone(),
            None => match self.broker.topic(name) {
                Some(t) => t.configs().overrides().clone(),
                None => {
                    return (
                        ResponseError::UnknownTopicOrPartition.code(),
                        Some(s(format!("unknown topic {name}"))),
                    )
                }
            },
        };
        let mut overrides = current;
        if let Err(msg) = edit(&mut overrides) {
            return (ResponseError::InvalidConfig.code(), Some(s(msg)));
        }
        let done = if governed.is_some() {
            self.cluster_set_configs(name, overrides, validate_only)
        } else {
            self.broker
                .set_topic_configs(name, overrides, validate_only)
        };
        match done {
            Ok(()) => (0, None),
            Err(e) => (code(&e), Some(s(e.to_string()))),
        }
    }

    /// A consumer group's own configs in the image (none without one).
    fn group_overrides(&self, group: &str) -> BTreeMap<String, String> {
        self.image()
            .and_then(|i| i.group_configs.get(group).map(|g| g.configs.clone()))
            .unwrap_or_default()
    }

    /// A consumer group's configs as DescribeConfigs lists them: each key
    /// with the group's value, or the coordinator's default.
    fn group_entries(&self, group: &str) -> Vec<ConfigEntry> {
        let overrides = self.group_overrides(group);
        let defaults = self.broker.config().group_config.consumer;
        let default_of = |key: &str| match key {
            keel_meta::group_configs::SESSION_TIMEOUT_MS => defaults.session_timeout_ms,
            _ => defaults.heartbeat_interval_ms,
        };
        keel_meta::group_configs::KEYS
            .iter()
            .map(|&(key, ..)| {
                let set = keel_meta::group_configs::get(&overrides, key);
                ConfigEntry {
                    name: key,
                    value: set.unwrap_or_else(|| default_of(key)).to_string(),
                    is_default: set.is_none(),
                    kind: keel_broker::ConfigType::Int,
                    doc: if key == keel_meta::group_configs::SESSION_TIMEOUT_MS {
                        "How long a member of this KIP-848 group may go without a heartbeat before it is removed."
                    } else {
                        "How often members of this KIP-848 group heartbeat."
                    },
                }
            })
            .collect()
    }

    /// Replaces a consumer group's configs (IncrementalAlterConfigs and
    /// AlterConfigs on a GROUP resource), checked against the coordinator's
    /// defaults as Kafka's `GroupConfig.validate` checks them.
    fn apply_group_configs(
        &self,
        group: &str,
        validate_only: bool,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), String>,
    ) -> (i16, Option<StrBytes>) {
        if group.is_empty() {
            return (
                ResponseError::InvalidRequest.code(),
                Some(s("a GROUP resource needs a group id")),
            );
        }
        if self.cluster.is_none() {
            return (
                ResponseError::InvalidRequest.code(),
                Some(s(
                    "group configs are kept in the cluster metadata, which this node has not",
                )),
            );
        }
        let mut configs = self.group_overrides(group);
        let defaults = self.broker.config().group_config.consumer;
        if let Err(msg) = edit(&mut configs).and_then(|()| {
            keel_meta::group_configs::check(
                &configs,
                defaults.session_timeout_ms,
                defaults.heartbeat_interval_ms,
            )
        }) {
            return (ResponseError::InvalidConfig.code(), Some(s(msg)));
        }
        if validate_only {
            return (0, None);
        }
        let rec = keel_meta::Record::new(keel_meta::record::Kind::SetGroupConfigs(
            keel_meta::group_configs::SetGroupConfigs {
                group: group.to_string(),
                configs,
            },
        ));
        match self.propose_raw(rec) {
            Ok(Ok(_)) => (0, None),
            Ok(Err(e)) => (ResponseError::InvalidConfig.code(), Some(s(e.to_string()))),
            Err(e) => (code(&e), Some(s(e.to_string()))),
        }
    }

    fn alter_configs(&self, r: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut resp = AlterConfigsResponse::default();
        for res in r.resources {
            // AlterConfigs replaces the whole set: configs left out return to defaults.
            let (c, msg) = self.apply_topic_configs(
                res.resource_type,
                res.resource_name.as_str(),
                r.validate_only,
                |o| {
                    o.clear();
                    for c in &res.configs {
                        if let Some(v) = &c.value {
                            o.insert(c.name.to_string(), v.to_string());
                        }
                    }
                    Ok(())
                },
            );
            resp.responses.push(
                AlterConfigsResourceResponse::default()
                    .with_error_code(c)
                    .with_error_message(msg)
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name),
            );
        }
        resp
    }

    fn incremental_alter_configs(
        &self,
        r: IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut resp = IncrementalAlterConfigsResponse::default();
        for res in r.resources {
            let (c, msg) = self.apply_topic_configs(res.resource_type, res.resource_name.as_str(), r.validate_only, |o| {
                for c in &res.configs {
                    let name = c.name.to_string();
                    let value = c.value.as_ref().map(|v| v.to_string());
                    match (c.config_operation, value) {
                        (OP_SET, Some(v)) => {
                            o.insert(name, v);
                        }
                        (OP_DELETE, _) => {
                            o.remove(&name);
                        }
                        (OP_APPEND | OP_SUBTRACT, Some(v)) => {
                            let Some(list) = keel_broker::config::def(&name).filter(|d| d.kind == keel_broker::ConfigType::List) else {
                                return Err(format!("{name} is not a list; APPEND and SUBTRACT apply only to lists"));
                            };
                            let current = o.get(&name).cloned().unwrap_or_else(|| list.default.to_string());
                            let mut items: Vec<String> = current.split(',').map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect();
                            for x in v.split(',').map(str::trim).filter(|x| !x.is_empty()) {
                                if c.config_operation == OP_APPEND {
                                    if !items.iter().any(|i| i == x) {
                                        items.push(x.to_string());
                                    }
                                } else {
                                    items.retain(|i| i != x);
                                }
                            }
                            o.insert(name, items.join(","));
                        }
                        (OP_SET | OP_APPEND | OP_SUBTRACT, None) => return Err(format!("{name}: a null value needs the DELETE operation")),
                        (op, _) => return Err(format!("{name}: unknown config operation {op}")),
                    }
                }
                Ok(())
            });
            resp.responses.push(
                IncrementalAlterConfigsResponseResource::default()
                    .with_error_code(c)
                    .with_error_message(msg)
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name),
            );
        }
        resp
    }

    /// InitProducerId: every idempotent producer gets a fresh id at epoch 0, as
    /// Kafka gives one without a transactional id. Transactional ids are refused:
    /// clients reach this only after FindCoordinator, which Keel does not offer.
    fn init_producer_id(&self, r: InitProducerIdRequest) -> InitProducerIdResponse {
        let mut resp = InitProducerIdResponse::default();
        resp.producer_id = ProducerId(-1);
        resp.producer_epoch = -1;
        if r.transactional_id.is_some() {
            resp.error_code = ResponseError::InvalidRequest.code();
            return resp;
        }
        let got = if self.cluster.is_some() {
            self.broker
                .init_producer_id_with(|at_least| self.allocate_producer_ids(at_least))
        } else {
            self.broker.init_producer_id()
        };
        match got {
            Ok((id, epoch)) => {
                resp.producer_id = ProducerId(id);
                resp.producer_epoch = epoch;
            }
            Err(e) => resp.error_code = code(&e),
        }
        resp
    }

    fn describe_cluster(&self, r: DescribeClusterRequest) -> DescribeClusterResponse {
        let mut resp = DescribeClusterResponse::default();
        if r.endpoint_type > 1 {
            resp.error_code = ResponseError::InvalidRequest.code();
            resp.error_message = Some(s("this node serves broker endpoints only"));
            return resp;
        }
        let (brokers, controller, cluster_id) = self.brokers();
        resp.cluster_id = s(cluster_id);
        resp.controller_id = BrokerId(controller);
        resp.brokers = brokers
            .into_iter()
            .map(|(id, host, port, rack)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(id))
                    .with_host(s(host))
                    .with_port(port)
                    .with_rack(rack.map(s))
            })
            .collect();
        // v2 (KIP-1073): fenced brokers too, when asked, marked as such.
        if r.include_fenced_brokers {
            if let Some(image) = self.image() {
                for n in image.nodes.values().filter(|n| n.fenced) {
                    if resp.brokers.iter().any(|b| b.broker_id.0 == n.id) {
                        continue;
                    }
                    resp.brokers.push(
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(n.id))
                            .with_host(s(n.kafka_host.clone()))
                            .with_port(n.kafka_port)
                            .with_rack((!n.rack.is_empty()).then(|| s(n.rack.clone())))
                            .with_is_fenced(true),
                    );
                }
                resp.brokers.sort_by_key(|b| b.broker_id.0);
            }
        }
        if r.include_cluster_authorized_operations {
            resp.cluster_authorized_operations = CLUSTER_OPERATIONS;
        }
        resp
    }
}

/// The client id a request's header names (empty when it names none), which
/// group members are described with.
fn client_id(header: &RequestHeader) -> String {
    header
        .client_id
        .as_ref()
        .map_or_else(String::new, |c| c.to_string())
}

/// Kafka's AclOperation codes, as a KIP-430 bit field of operations.
const fn operations(codes: &[u8]) -> i32 {
    let mut bits = 0;
    let mut i = 0;
    while i < codes.len() {
        bits |= 1 << codes[i];
        i += 1;
    }
    bits
}

/// A topic's operations (Kafka's AclEntry.supportedOperations(TOPIC)): READ 3,
/// WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11.
const TOPIC_OPERATIONS: i32 = operations(&[3, 4, 5, 6, 7, 8, 10, 11]);

/// The cluster's: CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
const CLUSTER_OPERATIONS: i32 = operations(&[5, 7, 8, 9, 10, 11, 12]);

/// A group's: READ 3, DELETE 6, DESCRIBE 8.
const GROUP_OPERATIONS: i32 = operations(&[3, 6, 8]);

type FetchPartitionData = fetch_response::PartitionData;
type IncrementalAlterConfigsResponseResource =
    incremental_alter_configs_response::AlterConfigsResourceResponse;
type AlterConfigsResourceResponse = alter_configs_response::AlterConfigsResourceResponse;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// A consumer group's configs (KIP-848).
const RESOURCE_GROUP: i8 = 32;
/// DescribeConfigs' GROUP_CONFIG source.
const CONFIG_SOURCE_GROUP: i8 = 8;
const CONFIG_SOURCE_TOPIC: i8 = 1;
const CONFIG_SOURCE_STATIC_BROKER: i8 = 4;
const CONFIG_SOURCE_DEFAULT: i8 = 5;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The node's settings as read-only broker configs, under Kafka's names.
fn broker_entries(b: &Broker) -> Vec<ConfigEntry> {
    use keel_broker::ConfigType as T;
    let c = b.config();
    let entry = |name, value: String, kind, doc| ConfigEntry {
        name,
        value,
        is_default: false,
        kind,
        doc,
    };
    vec![
        entry(
            "broker.id",
            c.node_id.to_string(),
            T::Int,
            "This node's id.",
        ),
        entry(
            "num.partitions",
            c.default_partitions.to_string(),
            T::Int,
            "Partitions of an auto-created topic.",
        ),
        entry(
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
            T::Boolean,
            "Create unknown topics on first Metadata request.",
        ),
        entry(
            "log.dirs",
            c.data_dir.display().to_string(),
            T::String,
            "Where partition logs live.",
        ),
    ]
}
