//! The group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups,
//! OffsetDelete. Translation only; the rules live in `keel_broker::groups`.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use keel_broker::groups::{JoinRequest, SyncRequest};
use keel_broker::{BrokerError, FetchedOffset, OffsetCommit};

use super::{s, topic_name, Handler, GROUP_OPERATIONS};
use crate::error::code;

/// FindCoordinator key types (KIP-98): 0 a group, 1 a transactional id.
const KEY_TYPE_GROUP: i8 = 0;

fn message(v: i16, from: i16, e: &BrokerError) -> Option<kafka_protocol::protocol::StrBytes> {
    (v >= from).then(|| s(e.to_string()))
}

impl Handler {
    /// The coordinator of a group: (id, host, port).
    fn coordinator_for(&self, key_type: i8, key: &str) -> Result<(i32, String, i32), BrokerError> {
        match key_type {
            KEY_TYPE_GROUP => {}
            1 => {
                return Err(BrokerError::CoordinatorNotAvailable(
                    "transactions are not supported yet: there is no transaction coordinator"
                        .into(),
                ))
            }
            // v6 (KIP-932).
            2 => {
                return Err(BrokerError::InvalidRequest(
                    "share groups (KIP-932) are not supported: there is no share coordinator"
                        .into(),
                ))
            }
            other => {
                return Err(BrokerError::InvalidRequest(format!(
                    "unknown coordinator key type {other}"
                )))
            }
        }
        if key.is_empty() {
            return Err(BrokerError::InvalidGroupId("the group id is empty".into()));
        }
        if self.cluster.is_some() {
            return self.cluster_coordinator(key);
        }
        self.broker.find_group_coordinator(key)?;
        Ok((
            self.broker.node_id(),
            self.advertised.host.clone(),
            self.advertised.port,
        ))
    }

    pub(super) fn find_coordinator(
        &self,
        r: FindCoordinatorRequest,
        v: i16,
    ) -> FindCoordinatorResponse {
        let mut resp = FindCoordinatorResponse::default();
        if v >= 4 {
            resp.coordinators = r
                .coordinator_keys
                .iter()
                .map(|key| {
                    let c = Coordinator::default().with_key(key.clone());
                    match self.coordinator_for(r.key_type, key.as_str()) {
                        Ok((id, host, port)) => c
                            .with_node_id(BrokerId(id))
                            .with_host(s(host))
                            .with_port(port),
                        Err(e) => c
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(code(&e))
                            .with_error_message(Some(s(e.to_string()))),
                    }
                })
                .collect();
            return resp;
        }
        match self.coordinator_for(r.key_type, r.key.as_str()) {
            Ok((id, host, port)) => {
                resp.node_id = BrokerId(id);
                resp.host = s(host);
                resp.port = port;
            }
            Err(e) => {
                resp.node_id = BrokerId(-1);
                resp.port = -1;
                resp.error_code = code(&e);
                resp.error_message = message(v, 1, &e);
            }
        }
        resp
    }

    pub(super) async fn join_group(
        &self,
        r: JoinGroupRequest,
        v: i16,
        client_id: String,
        client_host: String,
    ) -> JoinGroupResponse {
        let member_id = r.member_id.to_string();
        let req = JoinRequest {
            group_id: r.group_id.to_string(),
            member_id: member_id.clone(),
            group_instance_id: r.group_instance_id.map(|i| i.to_string()),
            client_id,
            client_host,
            session_timeout_ms: r.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if v == 0 {
                r.session_timeout_ms
            } else {
                r.rebalance_timeout_ms
            },
            protocol_type: r.protocol_type.to_string(),
            protocols: r
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata.to_vec()))
                .collect(),
            require_known_member_id: v >= 4,
            supports_skip_assignment: v >= 9,
        };
        let mut resp = JoinGroupResponse::default();
        match self.broker.join_group(req).await {
            Ok(j) => {
                resp.generation_id = j.generation_id;
                resp.protocol_type = Some(s(j.protocol_type));
                resp.protocol_name = Some(s(j.protocol_name));
                resp.leader = s(j.leader);
                resp.member_id = s(j.member_id);
                resp.skip_assignment = j.skip_assignment;
                resp.members = j
                    .members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(s(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(s))
                            .with_metadata(m.metadata.into())
                    })
                    .collect();
            }
            Err(e) => {
                resp.error_code = code(&e);
                resp.generation_id = -1;
                resp.member_id = match e {
                    BrokerError::MemberIdRequired(id) => s(id),
                    _ => s(member_id),
                };
                if v < 7 {
                    resp.protocol_name = Some(s(""));
                }
            }
        }
        resp
    }

    pub(super) async fn sync_group(&self, r: SyncGroupRequest) -> SyncGroupResponse {
        let req = SyncRequest {
            group_id: r.group_id.to_string(),
            generation: r.generation_id,
            member_id: r.member_id.to_string(),
            group_instance_id: r.group_instance_id.map(|i| i.to_string()),
            protocol: match (r.protocol_type, r.protocol_name) {
                (Some(t), Some(n)) => Some((t.to_string(), n.to_string())),
                _ => None,
            },
            assignments: r
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
                .collect(),
        };
        let result = self.broker.sync_group(req).await;
        let mut resp = SyncGroupResponse::default();
        match result {
            Ok(sync) => {
                resp.protocol_type = Some(s(sync.protocol_type));
                resp.protocol_name = Some(s(sync.protocol_name));
                resp.assignment = sync.assignment.into();
            }
            Err(e) => resp.error_code = code(&e),
        }
        resp
    }

    pub(super) fn heartbeat(&self, r: HeartbeatRequest) -> HeartbeatResponse {
        let result = self.broker.heartbeat(
            r.group_id.as_str(),
            r.generation_id,
            r.member_id.as_str(),
            r.group_instance_id.as_ref().map(|i| i.as_str()),
        );
        HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| code(&e)))
    }

    pub(super) fn leave_group(&self, r: LeaveGroupRequest, v: i16) -> LeaveGroupResponse {
        let leaving: Vec<(String, Option<String>)> = if v >= 3 {
            r.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(r.member_id.to_string(), None)]
        };
        let mut resp = LeaveGroupResponse::default();
        match self.broker.leave_group(r.group_id.as_str(), &leaving) {
            Ok(results) => {
                if v < 3 {
                    resp.error_code = results
                        .first()
                        .and_then(|(_, r)| r.as_ref().err())
                        .map_or(0, code);
                } else {
                    resp.members = results
                        .iter()
                        .zip(&leaving)
                        .map(|((id, r), (_, instance))| {
                            MemberResponse::default()
                                .with_member_id(s(id.clone()))
                                .with_group_instance_id(instance.clone().map(s))
                                .with_error_code(r.as_ref().err().map_or(0, code))
                        })
                        .collect();
                }
            }
            Err(e) => resp.error_code = code(&e),
        }
        resp
    }

    pub(super) async fn offset_commit(&self, r: OffsetCommitRequest) -> OffsetCommitResponse {
        let mut commits = Vec::new();
        for t in &r.topics {
            for p in &t.partitions {
                commits.push(OffsetCommit {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map_or_else(String::new, |m| m.to_string()),
                });
            }
        }
        let result = self
            .broker
            .commit_offsets(
                r.group_id.as_str(),
                r.generation_id_or_member_epoch,
                r.member_id.as_str(),
                r.group_instance_id.as_ref().map(|i| i.as_str()),
                commits,
            )
            .await;
        if let Err(e) = &result {
            tracing::debug!(group = %r.group_id.as_str(), "offset commit refused: {e}");
        }
        let mut codes = match &result {
            Ok(per) => per
                .iter()
                .map(|r| r.as_ref().err().map_or(0, code))
                .collect::<Vec<_>>()
                .into_iter(),
            Err(e) => vec![code(e); r.topics.iter().map(|t| t.partitions.len()).sum()].into_iter(),
        };
        let mut resp = OffsetCommitResponse::default();
        resp.topics = r
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes.next().unwrap_or(0))
                            })
                            .collect(),
                    )
            })
            .collect();
        resp
    }

    fn fetched_offsets(
        &self,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let wanted = topics.map(|ts| {
            ts.into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect()
        });
        let mut by_topic: Vec<(String, Vec<FetchedOffset>)> = Vec::new();
        for o in self.broker.fetch_offsets(group, wanted) {
            match by_topic.last_mut() {
                Some((t, list)) if *t == o.0 => list.push(o),
                _ => by_topic.push((o.0.clone(), vec![o])),
            }
        }
        by_topic
    }

    pub(super) fn offset_fetch(&self, r: OffsetFetchRequest, v: i16) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        let value = |o: &FetchedOffset| match &o.2 {
            Some(c) => (c.offset, c.leader_epoch, c.metadata.clone()),
            None => (-1, -1, String::new()),
        };
        if v >= 8 {
            resp.groups =
                r.groups
                    .into_iter()
                    .map(|g| {
                        let member_check = match (&g.member_id, g.member_epoch) {
                            // v9+ (KIP-848): a member of a consumer group reads at its epoch.
                            (Some(m), epoch) if epoch >= 0 => self
                                .broker
                                .check_offset_fetch_member(g.group_id.as_str(), m.as_str(), epoch),
                            _ => Ok(()),
                        };
                        if let Err(e) = self
                            .broker
                            .check_coordinator(g.group_id.as_str())
                            .and(member_check)
                        {
                            return OffsetFetchResponseGroup::default()
                                .with_group_id(g.group_id)
                                .with_error_code(code(&e));
                        }
                        let topics = g.topics.map(|ts| {
                            ts.into_iter()
                                .map(|t| (t.name.to_string(), t.partition_indexes))
                                .collect()
                        });
                        let topics = self
                            .fetched_offsets(g.group_id.as_str(), topics)
                            .into_iter()
                            .map(|(t, list)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&t))
                                    .with_partitions(
                                        list.iter()
                                            .map(|o| {
                                                let (offset, epoch, meta) = value(o);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(o.1)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(s(meta)))
                                            })
                                            .collect(),
                                    )
                            })
                            .collect();
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_topics(topics)
                    })
                    .collect();
            return resp;
        }
        if let Err(e) = self.broker.check_coordinator(r.group_id.as_str()) {
            resp.error_code = code(&e);
            return resp;
        }
        let topics = r.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        resp.topics = self
            .fetched_offsets(r.group_id.as_str(), topics)
            .into_iter()
            .map(|(t, list)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&t))
                    .with_partitions(
                        list.iter()
                            .map(|o| {
                                let (offset, epoch, meta) = value(o);
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(o.1)
                                    .with_committed_offset(offset)
                                    .with_committed_leader_epoch(epoch)
                                    .with_metadata(Some(s(meta)))
                            })
                            .collect(),
                    )
            })
            .collect();
        resp
    }

    pub(super) fn list_groups(&self, r: ListGroupsRequest) -> ListGroupsResponse {
        let mut resp = ListGroupsResponse::default();
        resp.groups = self
            .broker
            .list_groups()
            .into_iter()
            .filter(|(_, _, state, kind)| {
                (r.states_filter.is_empty()
                    || r.states_filter
                        .iter()
                        .any(|f| f.as_str().eq_ignore_ascii_case(state)))
                    && (r.types_filter.is_empty()
                        || r.types_filter
                            .iter()
                            .any(|f| f.as_str().eq_ignore_ascii_case(kind)))
            })
            .map(|(id, protocol_type, state, kind)| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(protocol_type))
                    .with_group_state(s(state))
                    .with_group_type(s(kind))
            })
            .collect();
        resp
    }

    pub(super) fn describe_groups(
        &self,
        r: DescribeGroupsRequest,
        v: i16,
    ) -> DescribeGroupsResponse {
        let ops = if r.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        };
        let mut resp = DescribeGroupsResponse::default();
        resp.groups = r
            .groups
            .into_iter()
            .map(|id| {
                if let Err(e) = self.broker.check_coordinator(id.as_str()) {
                    return DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(code(&e));
                }
                let d = match self.broker.describe_group(id.as_str()) {
                    None => {
                        return DescribedGroup::default()
                            .with_group_id(id)
                            .with_group_state(s("Dead"))
                    }
                    Some(Err(e)) => {
                        return DescribedGroup::default()
                            .with_group_id(id)
                            .with_error_code(code(&e))
                            // v6 (KIP-1043) carries the reason.
                            .with_error_message((v >= 6).then(|| s(e.to_string())));
                    }
                    Some(Ok(d)) => d,
                };
                DescribedGroup::default()
                    .with_group_id(id)
                    .with_authorized_operations(ops)
                    .with_group_state(s(d.state.name()))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(s))
                                    .with_client_id(s(m.client_id))
                                    .with_client_host(s(m.client_host))
                                    .with_member_metadata(m.metadata.into())
                                    .with_member_assignment(m.assignment.into())
                            })
                            .collect(),
                    )
            })
            .collect();
        resp
    }

    pub(super) async fn delete_groups(&self, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut resp = DeleteGroupsResponse::default();
        for id in r.groups_names {
            let err = self.broker.delete_group(id.as_str()).await.err();
            resp.results.push(
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(err.map_or(0, |e| code(&e))),
            );
        }
        resp
    }

    pub(super) async fn offset_delete(&self, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let wanted: Vec<(String, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.to_string(), p.partition_index))
            })
            .collect();
        let mut resp = OffsetDeleteResponse::default();
        match self
            .broker
            .delete_offsets(r.group_id.as_str(), wanted)
            .await
        {
            Err(e) => resp.error_code = code(&e),
            Ok(results) => {
                let mut codes = results
                    .into_iter()
                    .map(|(_, r)| r.err().map_or(0, |e| code(&e)));
                resp.topics = r
                    .topics
                    .iter()
                    .map(|t| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(codes.next().unwrap_or(0))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
        }
        resp
    }
}
