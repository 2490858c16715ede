//! KIP-848's group APIs: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
//! Translation only; the rules live in `keel_broker::consumer_groups`.

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTp,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions,
};
use kafka_protocol::messages::*;
use keel_broker::consumer_groups::{Assignment, ConsumerGroup, Heartbeat, TopicMeta};

use super::{s, topic_name, Handler, GROUP_OPERATIONS};
use crate::error::code;
use keel_meta::group_configs;

/// ConsumerGroupHeartbeat v1 (KIP-1082): the client generates its member id.
const CLIENT_MEMBER_ID_VERSION: i16 = 1;

impl Handler {
    /// Every topic of the cluster (the metadata's, and this node's own where
    /// it has topics outside it), for the assignor and regex subscriptions.
    fn topic_metas(&self) -> Vec<TopicMeta> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        if let Some(image) = self.image() {
            for (name, t) in &image.topics {
                seen.insert(name.clone());
                out.push(TopicMeta {
                    id: uuid::Uuid::from_slice(&t.id).unwrap_or_default(),
                    name: name.clone(),
                    partitions: t.partitions.len() as i32,
                    internal: keel_broker::is_internal(name),
                });
            }
        }
        for t in self.broker.topics() {
            if !seen.contains(&t.name) {
                out.push(TopicMeta {
                    id: t.id,
                    name: t.name.clone(),
                    partitions: t.partition_count(),
                    internal: keel_broker::is_internal(&t.name),
                });
            }
        }
        out
    }

    pub(super) async fn consumer_group_heartbeat(
        &self,
        r: ConsumerGroupHeartbeatRequest,
        v: i16,
        client_id: String,
        client_host: String,
    ) -> ConsumerGroupHeartbeatResponse {
        let owned = r.topic_partitions.map(|tps| {
            let mut a = Assignment::new();
            for tp in tps {
                a.entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
            a
        });
        // The group's own configs, if it has any (KIP-848's group configs).
        let overrides = self.group_overrides(r.group_id.as_str());
        let req = Heartbeat {
            session_timeout_ms: group_configs::get(&overrides, group_configs::SESSION_TIMEOUT_MS),
            heartbeat_interval_ms: group_configs::get(
                &overrides,
                group_configs::HEARTBEAT_INTERVAL_MS,
            ),
            group_id: r.group_id.to_string(),
            member_id: r.member_id.to_string(),
            member_epoch: r.member_epoch,
            instance_id: r.instance_id.map(|i| i.to_string()),
            rack_id: r.rack_id.map(|i| i.to_string()),
            rebalance_timeout_ms: r.rebalance_timeout_ms,
            topics: r
                .subscribed_topic_names
                .map(|ts| ts.iter().map(|t| t.to_string()).collect()),
            regex: r.subscribed_topic_regex.map(|x| x.to_string()),
            assignor: r.server_assignor.map(|x| x.to_string()),
            owned,
            client_id,
            client_host,
            client_generates_member_id: v >= CLIENT_MEMBER_ID_VERSION,
        };
        let topics = self.topic_metas();
        let mut resp = ConsumerGroupHeartbeatResponse::default();
        match self.broker.consumer_group_heartbeat(req, &topics).await {
            Ok(h) => {
                resp.member_id = Some(s(h.member_id));
                resp.member_epoch = h.member_epoch;
                resp.heartbeat_interval_ms = h.heartbeat_interval_ms;
                resp.assignment = h.assignment.map(|a| {
                    HeartbeatAssignment::default().with_topic_partitions(
                        a.into_iter()
                            .map(|(t, ps)| {
                                TopicPartitions::default()
                                    .with_topic_id(t)
                                    .with_partitions(ps.into_iter().collect())
                            })
                            .collect(),
                    )
                });
            }
            Err(e) => {
                tracing::debug!(group = %r.group_id.as_str(), "consumer group heartbeat refused: {e}");
                resp.error_code = code(&e);
                resp.error_message = Some(s(e.to_string()));
                resp.member_epoch = -1;
            }
        }
        resp
    }

    pub(super) fn consumer_group_describe(
        &self,
        r: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let topics = self.topic_metas();
        let name_of = |id: &uuid::Uuid| {
            topics
                .iter()
                .find(|t| t.id == *id)
                .map_or_else(String::new, |t| t.name.clone())
        };
        let described = |a: &Assignment| {
            DescribedAssignment::default().with_topic_partitions(
                a.iter()
                    .map(|(t, ps)| {
                        DescribedTp::default()
                            .with_topic_id(*t)
                            .with_topic_name(topic_name(&name_of(t)))
                            .with_partitions(ps.iter().copied().collect())
                    })
                    .collect(),
            )
        };
        let describe = |g: ConsumerGroup| -> (String, i32, i32, String, Vec<Member>) {
            let members = g
                .members
                .values()
                .map(|m| {
                    Member::default()
                        .with_member_id(s(m.id.clone()))
                        .with_instance_id(m.instance_id.clone().map(s))
                        .with_rack_id(m.rack_id.clone().map(s))
                        .with_member_epoch(m.epoch)
                        .with_client_id(s(m.client_id.clone()))
                        .with_client_host(s(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.topics.iter().map(|t| topic_name(t)).collect(),
                        )
                        .with_subscribed_topic_regex(m.regex.clone().map(s))
                        .with_assignment(described(&m.assigned))
                        .with_target_assignment(described(
                            g.target.get(&m.id).unwrap_or(&Assignment::new()),
                        ))
                        // v1: 1 is a member of KIP-848's protocol (0 a classic one).
                        .with_member_type(1)
                })
                .collect();
            (
                g.state().name().to_string(),
                g.epoch,
                g.assignment_epoch,
                g.assignor_name(self.broker.default_assignor()).to_string(),
                members,
            )
        };
        let ops = if r.include_authorized_operations {
            GROUP_OPERATIONS
        } else {
            i32::MIN
        };
        let mut resp = ConsumerGroupDescribeResponse::default();
        resp.groups = r
            .group_ids
            .into_iter()
            .map(
                |id| match self.broker.describe_consumer_group(id.as_str()) {
                    Ok(g) => {
                        let (state, epoch, assignment_epoch, assignor, members) = describe(g);
                        DescribedGroup::default()
                            .with_group_id(id)
                            .with_group_state(s(state))
                            .with_group_epoch(epoch)
                            .with_assignment_epoch(assignment_epoch)
                            .with_assignor_name(s(assignor))
                            .with_members(members)
                            .with_authorized_operations(ops)
                    }
                    Err(e) => DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(code(&e))
                        .with_error_message(Some(s(e.to_string())))
                        .with_authorized_operations(ops),
                },
            )
            .collect();
        resp
    }
}
