//! The classic consumer-group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup)
//! as a state machine, after Kafka's `GroupCoordinator` and `GroupMetadata`:
//!
//! ```text
//! Empty ──join──► PreparingRebalance ──all joined or rebalance timeout──► CompletingRebalance
//!   ▲                 ▲        │ (no members left)                           │ leader's SyncGroup
//!   └─────────────────┼────────┘                                             ▼
//!                     └───── join with new metadata / leave / session expiry ─ Stable
//! ```
//!
//! It does no I/O and reads no clock: time comes in as `now`, and replies to
//! requests that wait (JoinGroup, SyncGroup) go through the oneshot senders they
//! brought. Groups whose membership changed in a way Kafka persists are listed in
//! `dirty`; the broker writes their metadata to `__consumer_offsets`.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::oneshot;

use crate::consumer_groups::{self, ConsumerGroup, ConsumerGroupConfig, TopicMeta};
use crate::group_records::{GroupValue, OffsetValue, StoredMember};
use crate::{BrokerError, Result};

/// Limits of the coordinator, with Kafka's broker config names.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members (joined or holding a member id) per group.
    pub max_size: usize,
    /// How many groups a node holds (Kafka has no such limit; Keel bounds memory).
    pub max_groups: usize,
    /// Members and handed-out member ids over all groups of the node, so many
    /// groups of pending members cannot exhaust it either.
    pub max_members_total: usize,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// The most protocol metadata one member may bring to a JoinGroup (all its
    /// protocols together). Kafka bounds it only by the request size (100 MiB);
    /// Keel holds it for every member, so it is bounded per member.
    pub member_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`: a new (Empty) group waits this long for
    /// more members before its first rebalance completes, each new member extending
    /// the wait up to the rebalance timeout, so members starting together join one
    /// generation instead of a cascade of rebalances.
    pub initial_rebalance_delay_ms: i64,
    /// `offsets.retention.minutes` in ms (7 days): committed offsets of a group
    /// without members are dropped this long after the group emptied or the
    /// offset was committed, whichever is later (KIP-211).
    pub offsets_retention_ms: i64,
    /// KIP-848 consumer groups' limits and defaults.
    pub consumer: ConsumerGroupConfig,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: 1_000,
            max_groups: 100_000,
            max_members_total: 100_000,
            offset_metadata_max_bytes: 4096,
            member_metadata_max_bytes: 1 << 20,
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            consumer: ConsumerGroupConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+ (KIP-394): a new member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814): a static leader that rejoins may be told to skip
    /// the assignment instead of causing a rebalance.
    pub supports_skip_assignment: bool,
}

/// A member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// All members with their metadata for the chosen protocol, for the leader only.
    pub members: Vec<JoinedMember>,
    /// KIP-814: the (static) leader must not compute a new assignment.
    pub skip_assignment: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Vec<u8>,
}

/// A SyncGroup request.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// (protocol type, protocol name), which SyncGroup v5+ carries for checking.
    pub protocol: Option<(String, String)>,
    /// The leader's assignment per member id.
    pub assignments: Vec<(String, Vec<u8>)>,
}

pub type JoinReply = oneshot::Sender<Result<JoinResponse>>;
pub type SyncReply = oneshot::Sender<Result<SyncResponse>>;

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Vec<u8>)>,
    assignment: Vec<u8>,
    join_reply: Option<JoinReply>,
    sync_reply: Option<SyncReply>,
    /// The member is gone unless it is heard from before this.
    deadline_ms: i64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
    fn same_protocols(&self, protocols: &[(String, Vec<u8>)]) -> bool {
        self.protocols == protocols
    }
    fn stored(&self, protocol: Option<&str>) -> StoredMember {
        StoredMember {
            member_id: self.id.clone(),
            group_instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            session_timeout_ms: self.session_timeout_ms,
            subscription: protocol.map(|p| self.metadata(p)).unwrap_or_default(),
            assignment: self.assignment.clone(),
        }
    }
}

/// A committed offset with the position of the record that holds it, so that the
/// cache only ever moves to a later write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub value: OffsetValue,
    pub log_offset: i64,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending: HashMap<String, i64>,
    /// group.instance.id -> member id
    statics: HashMap<String, String>,
    join_deadline_ms: i64,
    /// The initial rebalance delay holds the join phase open until this.
    hold_until_ms: i64,
    hold_max_ms: i64,
    initial_delay_ms: i64,
    sync_deadline_ms: i64,
    state_since_ms: i64,
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// Set when the group speaks KIP-848's protocol (a "consumer" group); the
    /// classic fields above stay empty then.
    pub consumer: Option<ConsumerGroup>,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

impl Group {
    fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            statics: HashMap::new(),
            join_deadline_ms: 0,
            hold_until_ms: 0,
            hold_max_ms: 0,
            initial_delay_ms: 0,
            sync_deadline_ms: 0,
            state_since_ms: now,
            offsets: BTreeMap::new(),
            consumer: None,
        }
    }

    pub fn has_members(&self) -> bool {
        !self.members.is_empty() || self.consumer.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// No members of either protocol: offsets may expire, the group may go.
    fn is_empty(&self) -> bool {
        self.state == GroupState::Empty && !self.has_members()
    }

    /// ListGroups' type (KIP-848): "consumer" or "classic".
    pub fn group_type(&self) -> &'static str {
        if self.consumer.is_some() {
            "consumer"
        } else {
            "classic"
        }
    }

    /// ListGroups' state name.
    pub fn state_name(&self) -> &'static str {
        match &self.consumer {
            Some(c) => c.state().name(),
            None => self.state.name(),
        }
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since_ms = now;
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return Vec::new();
        };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in iter {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Vec<u8>)], member: &str) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|m| m.id != member).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(n, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(p, _)| p == n))
        })
    }

    /// Kafka's vote: each member votes for its most preferred common protocol.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.as_str()).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(n, _)| n.to_string())
    }

    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment: false,
        }
    }

    fn sync_response(&self, member: &Member) -> SyncResponse {
        SyncResponse {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol.clone().unwrap_or_default(),
            assignment: member.assignment.clone(),
        }
    }

    /// The group's metadata as Kafka stores it.
    pub fn stored(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| m.stored(self.protocol.as_deref()))
                .collect(),
        }
    }

    pub fn describe(&self) -> GroupDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: if self.state == GroupState::Stable {
                protocol.clone()
            } else {
                String::new()
            },
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(&protocol),
                    assignment: if self.state == GroupState::Stable {
                        m.assignment.clone()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        }
    }

    /// Topics subscribed by members of a consumer group (for OffsetDelete).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if let Some(c) = &self.consumer {
            return Some(c.subscribed_topic_names());
        }
        if self.protocol_type.as_deref() != Some("consumer") || self.state == GroupState::Empty {
            return Some(Vec::new());
        }
        let protocol = self.protocol.clone()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(crate::group_records::subscribed_topics(
                &m.metadata(&protocol),
            )?);
        }
        Some(topics)
    }
}

/// Offsets that expired in one group: (group, partitions, the group is gone too).
pub type Expired = (String, Vec<(String, i32)>, bool);

/// Every group of this coordinator.
pub struct Groups {
    pub limits: GroupConfig,
    groups: HashMap<String, Group>,
    /// Groups whose metadata must be written to `__consumer_offsets`.
    pub dirty: Vec<String>,
    /// Kept by the broker: where each group's latest metadata record ends in its
    /// offsets partition, or `None` when writing it failed. Join and sync answers
    /// wait for it to be durable, so no member acts on a generation a crash could
    /// take back.
    pub written: HashMap<String, Option<i64>>,
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl Groups {
    pub fn new(limits: GroupConfig) -> Groups {
        Groups {
            limits,
            groups: HashMap::new(),
            dirty: Vec::new(),
            written: HashMap::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Group> {
        self.groups.get_mut(id)
    }
    pub fn ids(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }
    pub fn remove(&mut self, id: &str) -> Option<Group> {
        self.written.remove(id);
        self.groups.remove(id)
    }

    /// The group `id`, created Empty if missing (and the node has room for it).
    pub fn get_or_create(&mut self, id: &str, now: i64) -> Result<&mut Group> {
        if !self.groups.contains_key(id) {
            if self.groups.len() >= self.limits.max_groups {
                return Err(BrokerError::CoordinatorNotAvailable(format!(
                    "this node holds its limit of {} groups",
                    self.limits.max_groups
                )));
            }
            let mut g = Group::new(id, now);
            g.initial_delay_ms = self.limits.initial_rebalance_delay_ms;
            self.groups.insert(id.to_string(), g);
        }
        Ok(self.groups.get_mut(id).expect("just inserted"))
    }

    /// Restores a group from its stored metadata (at start-up). A group with
    /// members comes back Stable, each member's session starting now, as Kafka
    /// loads groups.
    pub fn restore(&mut self, id: &str, value: Option<GroupValue>, now: i64) {
        let g = self
            .groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(id, now));
        g.consumer = None;
        let Some(v) = value else {
            // A tombstone: the group was deleted; its offsets were tombstoned too.
            g.members.clear();
            g.statics.clear();
            g.generation = 0;
            g.protocol = None;
            g.protocol_type = None;
            g.leader = None;
            g.set_state(GroupState::Empty, now);
            return;
        };
        g.members.clear();
        g.statics.clear();
        g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        g.generation = v.generation;
        g.protocol = v.protocol.clone();
        g.leader = v.leader;
        for m in v.members {
            if let Some(i) = &m.group_instance_id {
                g.statics.insert(i.clone(), m.member_id.clone());
            }
            let protocols = v
                .protocol
                .clone()
                .map(|p| vec![(p, m.subscription)])
                .unwrap_or_default();
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols,
                    assignment: m.assignment,
                    join_reply: None,
                    sync_reply: None,
                    deadline_ms: now + i64::from(m.session_timeout_ms),
                },
            );
        }
        if g.members.is_empty() {
            // Offset retention counts from when the group emptied, across restarts.
            let since = if v.current_state_timestamp > 0 {
                v.current_state_timestamp.min(now)
            } else {
                now
            };
            g.set_state(GroupState::Empty, since);
        } else {
            g.set_state(GroupState::Stable, now);
        }
    }

    /// Removes empty groups that hold nothing (no members, no offsets).
    pub fn forget_if_unused(&mut self, id: &str) {
        if self
            .groups
            .get(id)
            .is_some_and(|g| g.is_empty() && g.offsets.is_empty())
        {
            self.remove(id);
        }
    }

    pub fn join(&mut self, req: JoinRequest, now: i64, reply: JoinReply) {
        let result = self.try_join(req, now, reply);
        if let Err((e, reply)) = result {
            let _ = reply.send(Err(e));
        }
    }

    fn try_join(
        &mut self,
        req: JoinRequest,
        now: i64,
        reply: JoinReply,
    ) -> std::result::Result<(), (BrokerError, JoinReply)> {
        let limits = self.limits;
        if req.group_id.is_empty() {
            return Err((
                BrokerError::InvalidGroupId("the group id is empty".into()),
                reply,
            ));
        }
        if !(limits.min_session_timeout_ms..=limits.max_session_timeout_ms)
            .contains(&req.session_timeout_ms)
        {
            return Err((
                BrokerError::InvalidSessionTimeout(format!(
                    "session timeout {} ms is outside [{}, {}] (group.min/max.session.timeout.ms)",
                    req.session_timeout_ms,
                    limits.min_session_timeout_ms,
                    limits.max_session_timeout_ms
                )),
                reply,
            ));
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > limits.member_metadata_max_bytes {
            return Err((
                BrokerError::InvalidRequest(format!(
                    "{metadata_bytes} bytes of protocol metadata; a member may bring at most {}",
                    limits.member_metadata_max_bytes
                )),
                reply,
            ));
        }
        if !req.member_id.is_empty() && !self.groups.contains_key(&req.group_id) {
            return Err((unknown_member(&req.member_id), reply));
        }
        if req.member_id.is_empty() {
            let total: usize = self
                .groups
                .values()
                .map(|g| g.members.len() + g.pending.len())
                .sum();
            if total >= limits.max_members_total {
                return Err((
                    BrokerError::GroupMaxSizeReached(format!(
                        "this node holds its limit of {} group members",
                        limits.max_members_total
                    )),
                    reply,
                ));
            }
        }
        let g = match self.get_or_create(&req.group_id, now) {
            Ok(g) => g,
            Err(e) => return Err((e, reply)),
        };
        if let Some(c) = &g.consumer {
            if !c.is_empty() {
                return Err((
                    BrokerError::InconsistentGroupProtocol(format!(
                        "group {} is a consumer group (KIP-848, group.protocol=consumer); \
                         a classic member cannot join it",
                        g.id
                    )),
                    reply,
                ));
            }
            // An empty consumer group becomes a classic one, as in Kafka 4.
            g.consumer = None;
        }
        if !g.supports(&req.protocol_type, &req.protocols, &req.member_id) {
            return Err((
                BrokerError::InconsistentGroupProtocol(format!(
                    "protocol type {:?} with protocols {:?} does not match the group's members",
                    req.protocol_type,
                    req.protocols.iter().map(|(n, _)| n).collect::<Vec<_>>()
                )),
                reply,
            ));
        }
        let mut dirty = false;
        let result = if req.member_id.is_empty() {
            join_unknown(g, req, now, reply, &limits, &mut dirty)
        } else {
            join_known(g, req, now, reply)
        };
        if dirty {
            let id = g.id.clone();
            self.dirty.push(id);
        }
        result
    }

    pub fn sync(&mut self, req: SyncRequest, now: i64, reply: SyncReply) {
        let SyncRequest {
            group_id,
            generation,
            member_id,
            group_instance_id,
            protocol,
            assignments,
        } = req;
        let member_id = member_id.as_str();
        let Some(g) = self.groups.get_mut(&group_id) else {
            let _ = reply.send(Err(unknown_member(member_id)));
            return;
        };
        if let Err(e) = check_member(g, member_id, group_instance_id.as_deref()) {
            let _ = reply.send(Err(e));
            return;
        }
        if generation != g.generation {
            let _ = reply.send(Err(illegal_generation(generation, g.generation)));
            return;
        }
        if let Some((ptype, pname)) = protocol {
            if g.protocol_type.as_deref() != Some(ptype.as_str())
                || g.protocol.as_deref() != Some(pname.as_str())
            {
                let _ = reply.send(Err(BrokerError::InconsistentGroupProtocol(format!(
                    "protocol {ptype}/{pname} is not the group's"
                ))));
                return;
            }
        }
        match g.state {
            GroupState::Empty => {
                let _ = reply.send(Err(unknown_member(member_id)));
            }
            GroupState::PreparingRebalance => {
                let _ = reply.send(Err(BrokerError::RebalanceInProgress));
            }
            GroupState::Stable => {
                let m = g.members.get_mut(member_id).expect("checked");
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                let m = &g.members[member_id];
                let _ = reply.send(Ok(g.sync_response(m)));
            }
            GroupState::CompletingRebalance => {
                let m = g.members.get_mut(member_id).expect("checked");
                m.sync_reply = Some(reply);
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                if g.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Vec<u8>> = assignments.into_iter().collect();
                    for m in g.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    g.set_state(GroupState::Stable, now);
                    self.dirty.push(g.id.clone());
                    let responses: Vec<(String, SyncResponse)> = g
                        .members
                        .values()
                        .filter(|m| m.sync_reply.is_some())
                        .map(|m| (m.id.clone(), g.sync_response(m)))
                        .collect();
                    for (id, r) in responses {
                        if let Some(tx) = g.members.get_mut(&id).and_then(|m| m.sync_reply.take()) {
                            let _ = tx.send(Ok(r));
                        }
                    }
                }
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| unknown_member(member_id))?;
        check_member(g, member_id, instance_id)?;
        if g.state == GroupState::Empty {
            return Err(unknown_member(member_id));
        }
        if generation != g.generation {
            return Err(illegal_generation(generation, g.generation));
        }
        let m = g.members.get_mut(member_id).expect("checked");
        m.deadline_ms = now + i64::from(m.session_timeout_ms);
        if g.state == GroupState::PreparingRebalance {
            return Err(BrokerError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup for each (member id, instance id); member id may be empty when
    /// the instance id names a static member (v3+).
    pub fn leave(
        &mut self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now: i64,
    ) -> Result<Vec<(String, Result<()>)>> {
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| unknown_member(leaving.first().map_or("", |(m, _)| m.as_str())))?;
        let mut out = Vec::new();
        let mut dirty = false;
        for (member_id, instance_id) in leaving {
            let id = match (member_id.is_empty(), instance_id) {
                (true, Some(i)) => g.statics.get(i).cloned().unwrap_or_default(),
                _ => member_id.clone(),
            };
            if g.pending.remove(&id).is_some() {
                out.push((id, Ok(())));
                continue;
            }
            let r = check_member(g, &id, instance_id.as_deref()).map(|()| {
                remove_member(g, &id, now, &mut dirty, "left the group");
            });
            out.push((id, r));
        }
        if dirty {
            self.dirty.push(group_id.to_string());
        }
        Ok(out)
    }

    /// Timers: session expiry, the join phase's rebalance timeout, the sync phase's.
    pub fn tick(&mut self, now: i64) {
        let mut dirty = Vec::new();
        for g in self.groups.values_mut() {
            let mut changed = false;
            if let Some(c) = &mut g.consumer {
                let topics = c.subscribed_topics();
                if c.tick(&self.limits.consumer, &topics, now) {
                    if c.is_empty() {
                        g.state_since_ms = now;
                    }
                    dirty.push(g.id.clone());
                }
                continue;
            }
            g.pending.retain(|_, deadline| *deadline > now);
            // A member whose connection closed while it waited is no longer waiting:
            // its session timeout applies again.
            for m in g.members.values_mut() {
                if m.join_reply.as_ref().is_some_and(|tx| tx.is_closed()) {
                    m.join_reply = None;
                }
                if m.sync_reply.as_ref().is_some_and(|tx| tx.is_closed()) {
                    m.sync_reply = None;
                }
            }
            let expired: Vec<String> = g
                .members
                .values()
                .filter(|m| {
                    m.join_reply.is_none() && m.sync_reply.is_none() && m.deadline_ms <= now
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                remove_member(g, &id, now, &mut changed, "session timed out");
            }
            match g.state {
                GroupState::PreparingRebalance if now >= g.join_deadline_ms => {
                    complete_join(g, now, &mut changed);
                }
                GroupState::PreparingRebalance => try_complete_join(g, now, &mut changed),
                GroupState::CompletingRebalance if now >= g.sync_deadline_ms => {
                    // KAFKA-13213: members that never sent SyncGroup are removed.
                    let late: Vec<String> = g
                        .members
                        .values()
                        .filter(|m| m.sync_reply.is_none())
                        .map(|m| m.id.clone())
                        .collect();
                    for id in late {
                        remove_member(g, &id, now, &mut changed, "did not sync in time");
                    }
                }
                _ => {}
            }
            if changed {
                dirty.push(g.id.clone());
            }
        }
        self.dirty.extend(dirty);
    }

    /// Drops expired offsets from groups without members (KIP-211) and forgets
    /// groups left with nothing. Returns, per group, the partitions whose offsets
    /// expired and whether the group itself is gone, for tombstones.
    pub fn expire_offsets(&mut self, now: i64) -> Vec<Expired> {
        let retention = self.limits.offsets_retention_ms;
        let mut out = Vec::new();
        for g in self.groups.values_mut() {
            if !g.is_empty() {
                continue;
            }
            let since = g.state_since_ms;
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|(_, c)| now - c.value.commit_timestamp.max(since) > retention)
                .map(|(tp, _)| tp.clone())
                .collect();
            for tp in &expired {
                g.offsets.remove(tp);
            }
            let gone = g.offsets.is_empty();
            if !expired.is_empty() || gone {
                out.push((g.id.clone(), expired, gone));
            }
        }
        for (id, _, gone) in &out {
            if *gone {
                self.remove(id);
            }
        }
        out
    }

    /// OffsetCommit's membership check (Kafka's `GroupCoordinator.doCommitOffsets`).
    /// `Ok(true)` when the group must be created (a simple, group-less commit).
    pub fn check_commit(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
    ) -> Result<()> {
        if group_id.is_empty() {
            return Err(BrokerError::InvalidGroupId("the group id is empty".into()));
        }
        let Some(g) = self.groups.get_mut(group_id) else {
            if generation < 0 {
                self.get_or_create(group_id, now)?;
                return Ok(());
            }
            return Err(illegal_generation(generation, -1));
        };
        if let Some(c) = &g.consumer {
            // The generation field carries the member epoch (OffsetCommit v9+).
            return c.check_commit(member_id, generation);
        }
        if generation < 0 && g.state == GroupState::Empty {
            return Ok(());
        }
        if g.state == GroupState::CompletingRebalance {
            return Err(BrokerError::RebalanceInProgress);
        }
        check_member(g, member_id, instance_id)?;
        if generation != g.generation {
            return Err(illegal_generation(generation, g.generation));
        }
        let m = g.members.get_mut(member_id).expect("checked");
        m.deadline_ms = now + i64::from(m.session_timeout_ms);
        Ok(())
    }
}

impl Groups {
    /// ConsumerGroupHeartbeat (KIP-848). `topics` is every topic of the
    /// cluster, for the assignor and regex subscriptions.
    pub fn consumer_heartbeat(
        &mut self,
        req: consumer_groups::Heartbeat,
        topics: &[TopicMeta],
        now: i64,
    ) -> Result<consumer_groups::HeartbeatResponse> {
        let invalid = |why: &str| Err(BrokerError::InvalidRequest(why.to_string()));
        if req.group_id.is_empty() {
            return invalid("the group id is empty");
        }
        if req.instance_id.as_deref() == Some("") || req.rack_id.as_deref() == Some("") {
            return invalid("an instance id or rack id may not be empty");
        }
        let epoch = req.member_epoch;
        if (epoch > 0 || epoch == consumer_groups::LEAVE_EPOCH) && req.member_id.is_empty() {
            return invalid("the member id is empty");
        }
        if epoch == 0 {
            if req.rebalance_timeout_ms == -1 {
                return invalid("a joining member must give its rebalance timeout");
            }
            if req.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("a joining member owns no partitions: send an empty list");
            }
            if req.topics.is_none() && req.regex.is_none() {
                return invalid("a joining member must subscribe to topic names or a regex");
            }
        } else if epoch == consumer_groups::LEAVE_STATIC_EPOCH && req.instance_id.is_none() {
            return invalid("only a static member (with an instance id) leaves with epoch -2");
        } else if epoch < consumer_groups::LEAVE_STATIC_EPOCH {
            return invalid("the member epoch is invalid");
        }
        let mut cfg = self.limits.consumer;
        if let Some(ms) = req.session_timeout_ms {
            cfg.session_timeout_ms = ms;
        }
        if let Some(ms) = req.heartbeat_interval_ms {
            cfg.heartbeat_interval_ms = ms;
        }
        if let Some(a) = req.assignor.as_deref() {
            if consumer_groups::Assignor::from_name(a).is_none() {
                return Err(BrokerError::UnsupportedAssignor(format!(
                    "server assignor {a:?}; this coordinator has \"uniform\" and \"range\""
                )));
            }
        }
        if let Some(r) = req.regex.as_deref().filter(|r| !r.is_empty()) {
            consumer_groups::compile_regex(r, cfg.regex_max_len)?;
        }
        if epoch != 0 && !self.groups.contains_key(&req.group_id) {
            return Err(unknown_member(&req.member_id));
        }
        let created = !self.groups.contains_key(&req.group_id);
        let id = req.group_id.clone();
        let result = self.consumer_heartbeat_in(req, topics, now, cfg);
        if result.is_err() && created {
            self.forget_if_unused(&id);
        }
        result
    }

    fn consumer_heartbeat_in(
        &mut self,
        req: consumer_groups::Heartbeat,
        topics: &[TopicMeta],
        now: i64,
        cfg: ConsumerGroupConfig,
    ) -> Result<consumer_groups::HeartbeatResponse> {
        let epoch = req.member_epoch;
        let g = self.get_or_create(&req.group_id, now)?;
        if g.consumer.is_none() {
            if g.has_members() || g.state != GroupState::Empty {
                return Err(BrokerError::GroupIdNotFound(format!(
                    "{} is a classic group with members, not a consumer group",
                    g.id
                )));
            }
            if epoch != 0 {
                return Err(unknown_member(&req.member_id));
            }
            // An empty classic group (committed offsets only) becomes a
            // consumer group and keeps its offsets, as in Kafka 4.
            g.protocol_type = Some("consumer".into());
            g.protocol = None;
            g.leader = None;
            g.consumer = Some(ConsumerGroup::new());
        }
        let c = g.consumer.as_mut().expect("set above");
        let was_empty = c.is_empty();
        let (resp, changed) = c.heartbeat(req, &cfg, topics, now)?;
        if c.is_empty() && !was_empty {
            g.state_since_ms = now;
        }
        if changed {
            let id = g.id.clone();
            self.dirty.push(id);
        }
        Ok(resp)
    }

    /// Restores a consumer group from its stored snapshot (at load); `None`
    /// for a tombstone.
    pub fn restore_consumer(&mut self, id: &str, value: Option<ConsumerGroup>, now: i64) {
        let cfg = self.limits.consumer;
        let g = self
            .groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(id, now));
        g.members.clear();
        g.statics.clear();
        g.generation = 0;
        g.protocol = None;
        g.leader = None;
        g.set_state(GroupState::Empty, now);
        g.consumer = value.map(|mut c| {
            c.restart_timers(&cfg, now);
            c
        });
        g.protocol_type = g.consumer.as_ref().map(|_| "consumer".to_string());
    }

    /// OffsetFetch v9+ naming a member of a consumer group.
    pub fn check_fetch(&self, group_id: &str, member_id: &str, epoch: i32) -> Result<()> {
        match self.groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(c) => c.check_fetch(member_id, epoch),
            None => Err(unknown_member(member_id)),
        }
    }
}

fn unknown_member(member_id: &str) -> BrokerError {
    BrokerError::UnknownMemberId(member_id.to_string())
}

fn illegal_generation(got: i32, current: i32) -> BrokerError {
    BrokerError::IllegalGeneration(format!(
        "generation {got} is not the group's current generation {current}"
    ))
}

/// The member exists, and a static member's instance id still maps to it.
fn check_member(g: &Group, member_id: &str, instance_id: Option<&str>) -> Result<()> {
    if let Some(i) = instance_id {
        match g.statics.get(i) {
            Some(id) if id != member_id => {
                return Err(BrokerError::FencedInstanceId(format!(
                    "group.instance.id {i:?} now belongs to member {id}"
                )))
            }
            _ => {}
        }
    }
    if !g.members.contains_key(member_id) {
        return Err(unknown_member(member_id));
    }
    Ok(())
}

fn join_unknown(
    g: &mut Group,
    req: JoinRequest,
    now: i64,
    reply: JoinReply,
    limits: &GroupConfig,
    dirty: &mut bool,
) -> std::result::Result<(), (BrokerError, JoinReply)> {
    let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
    let new_id = new_member_id(if prefix.is_empty() { "member" } else { prefix });
    if let Some(instance) = req.group_instance_id.clone() {
        if let Some(old_id) = g.statics.get(&instance).cloned() {
            return rejoin_static(g, req, old_id, new_id, now, reply, dirty);
        }
    }
    if g.members.len() + g.pending.len() >= limits.max_size {
        return Err((
            BrokerError::GroupMaxSizeReached(format!(
                "group {} has reached group.max.size {}",
                g.id, limits.max_size
            )),
            reply,
        ));
    }
    if req.require_known_member_id && req.group_instance_id.is_none() {
        g.pending
            .insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
        return Err((BrokerError::MemberIdRequired(new_id), reply));
    }
    add_member_and_rebalance(g, req, new_id, now, reply, dirty);
    Ok(())
}

/// KIP-345: a static member coming back under a new member id replaces its old
/// self. The old id is fenced. In a Stable group whose protocols are unchanged it
/// gets the current generation and keeps its assignment, with no rebalance.
fn rejoin_static(
    g: &mut Group,
    req: JoinRequest,
    old_id: String,
    new_id: String,
    now: i64,
    reply: JoinReply,
    dirty: &mut bool,
) -> std::result::Result<(), (BrokerError, JoinReply)> {
    let Some(mut m) = g.members.remove(&old_id) else {
        g.statics
            .remove(req.group_instance_id.as_deref().unwrap_or_default());
        add_member_and_rebalance(g, req, new_id, now, reply, dirty);
        return Ok(());
    };
    let fenced = || {
        BrokerError::FencedInstanceId(format!("member {old_id} was replaced by a newer instance"))
    };
    if let Some(tx) = m.join_reply.take() {
        let _ = tx.send(Err(fenced()));
    }
    if let Some(tx) = m.sync_reply.take() {
        let _ = tx.send(Err(fenced()));
    }
    let unchanged = m.same_protocols(&req.protocols);
    let req_skip = req.supports_skip_assignment;
    m.id = new_id.clone();
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    m.client_id = req.client_id;
    m.client_host = req.client_host;
    m.protocols = req.protocols;
    m.deadline_ms = now + i64::from(m.session_timeout_ms);
    if g.leader.as_deref() == Some(old_id.as_str()) {
        g.leader = Some(new_id.clone());
    }
    g.statics.insert(
        req.group_instance_id.clone().unwrap_or_default(),
        new_id.clone(),
    );
    let was_leader = g.leader.as_deref() == Some(new_id.as_str());
    g.members.insert(new_id.clone(), m);
    match g.state {
        GroupState::Stable if unchanged && !was_leader => {
            *dirty = true;
            let _ = reply.send(Ok(g.join_response(&new_id)));
        }
        // KIP-814: a restarted static leader keeps the current assignment too, when
        // its client can be told not to compute a new one.
        GroupState::Stable if unchanged && req_skip => {
            *dirty = true;
            let mut r = g.join_response(&new_id);
            r.skip_assignment = true;
            let _ = reply.send(Ok(r));
        }
        GroupState::PreparingRebalance => {
            g.members.get_mut(&new_id).expect("inserted").join_reply = Some(reply);
            try_complete_join(g, now, dirty);
        }
        _ => {
            g.members.get_mut(&new_id).expect("inserted").join_reply = Some(reply);
            prepare_rebalance(g, now);
            try_complete_join(g, now, dirty);
        }
    }
    Ok(())
}

fn add_member_and_rebalance(
    g: &mut Group,
    req: JoinRequest,
    id: String,
    now: i64,
    reply: JoinReply,
    dirty: &mut bool,
) {
    g.pending.remove(&id);
    if g.members.is_empty() {
        g.protocol_type = Some(req.protocol_type.clone());
    }
    if let Some(i) = &req.group_instance_id {
        g.statics.insert(i.clone(), id.clone());
    }
    // As in Kafka, the first member to join leads until it leaves.
    if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
        g.leader = Some(id.clone());
    }
    g.members.insert(
        id.clone(),
        Member {
            id,
            instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocols: req.protocols,
            assignment: Vec::new(),
            join_reply: Some(reply),
            sync_reply: None,
            deadline_ms: now + i64::from(req.session_timeout_ms),
        },
    );
    if g.state != GroupState::PreparingRebalance {
        let initial = g.state == GroupState::Empty;
        prepare_rebalance(g, now);
        if initial && g.initial_delay_ms > 0 {
            g.hold_until_ms = now + g.initial_delay_ms;
            g.hold_max_ms = now + g.rebalance_timeout_ms();
        }
    } else if g.hold_until_ms > now {
        g.hold_until_ms = (now + g.initial_delay_ms).min(g.hold_max_ms);
    }
    try_complete_join(g, now, dirty);
}

fn join_known(
    g: &mut Group,
    req: JoinRequest,
    now: i64,
    reply: JoinReply,
) -> std::result::Result<(), (BrokerError, JoinReply)> {
    let id = req.member_id.clone();
    let mut unused = false;
    if g.pending.contains_key(&id) {
        add_member_and_rebalance(g, req, id, now, reply, &mut unused);
        return Ok(());
    }
    if let Err(e) = check_member(g, &id, req.group_instance_id.as_deref()) {
        return Err((e, reply));
    }
    let m = g.members.get_mut(&id).expect("checked");
    m.deadline_ms = now + i64::from(req.session_timeout_ms);
    let unchanged = m.same_protocols(&req.protocols);
    let is_leader = g.leader.as_deref() == Some(id.as_str());
    match g.state {
        GroupState::Empty => return Err((unknown_member(&id), reply)),
        GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
            let _ = reply.send(Ok(g.join_response(&id)));
            return Ok(());
        }
        GroupState::CompletingRebalance if unchanged => {
            // The leader lost its response: send it again.
            let _ = reply.send(Ok(g.join_response(&id)));
            return Ok(());
        }
        _ => {}
    }
    let m = g.members.get_mut(&id).expect("checked");
    m.protocols = req.protocols;
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    if let Some(old) = m.join_reply.replace(reply) {
        let _ = old.send(Err(BrokerError::RebalanceInProgress));
    }
    if g.state != GroupState::PreparingRebalance {
        prepare_rebalance(g, now);
    }
    try_complete_join(g, now, &mut unused);
    Ok(())
}

fn prepare_rebalance(g: &mut Group, now: i64) {
    // Followers waiting on SyncGroup learn of the new round and rejoin.
    for m in g.members.values_mut() {
        if let Some(tx) = m.sync_reply.take() {
            let _ = tx.send(Err(BrokerError::RebalanceInProgress));
        }
    }
    g.set_state(GroupState::PreparingRebalance, now);
    g.join_deadline_ms = now + g.rebalance_timeout_ms();
}

fn try_complete_join(g: &mut Group, now: i64, dirty: &mut bool) {
    if g.state == GroupState::PreparingRebalance
        && now >= g.hold_until_ms
        && g.pending.is_empty()
        && g.members.values().all(|m| m.join_reply.is_some())
    {
        complete_join(g, now, dirty);
    }
}

/// Ends the join phase: members that did not rejoin are dropped, the generation
/// advances, a protocol is chosen, and every joined member gets its response (the
/// leader with everyone's metadata).
fn complete_join(g: &mut Group, now: i64, dirty: &mut bool) {
    let gone: Vec<String> = g
        .members
        .values()
        .filter(|m| m.join_reply.is_none())
        .map(|m| m.id.clone())
        .collect();
    for id in gone {
        tracing::info!(group = %g.id, member = %id, "removing member that did not rejoin in time");
        forget_member(g, &id);
    }
    g.pending.clear();
    g.generation += 1;
    if g.members.is_empty() {
        g.protocol = None;
        g.leader = None;
        g.set_state(GroupState::Empty, now);
        *dirty = true;
        return;
    }
    g.protocol = g.select_protocol();
    if !g.leader.as_ref().is_some_and(|l| g.members.contains_key(l)) {
        g.leader = g.members.keys().next().cloned();
    }
    g.set_state(GroupState::CompletingRebalance, now);
    g.sync_deadline_ms = now + g.rebalance_timeout_ms();
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let r = g.join_response(&id);
        let m = g.members.get_mut(&id).expect("listed");
        m.deadline_ms = now + i64::from(m.session_timeout_ms);
        if let Some(tx) = m.join_reply.take() {
            let _ = tx.send(Ok(r));
        }
    }
}

fn forget_member(g: &mut Group, id: &str) {
    if let Some(m) = g.members.remove(id) {
        if let Some(i) = &m.instance_id {
            if g.statics.get(i).map(String::as_str) == Some(id) {
                g.statics.remove(i);
            }
        }
        if let Some(tx) = m.join_reply {
            let _ = tx.send(Err(unknown_member(id)));
        }
        if let Some(tx) = m.sync_reply {
            let _ = tx.send(Err(unknown_member(id)));
        }
    }
}

/// Removes a member and moves the group on, as Kafka's
/// `removeMemberAndUpdateGroup` does.
fn remove_member(g: &mut Group, id: &str, now: i64, dirty: &mut bool, why: &str) {
    tracing::info!(group = %g.id, member = %id, "member {why}");
    forget_member(g, id);
    if g.leader.as_deref() == Some(id) {
        g.leader = None;
    }
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(g, now);
            try_complete_join(g, now, dirty);
        }
        GroupState::PreparingRebalance => try_complete_join(g, now, dirty),
        GroupState::Empty => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn no_delay() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        }
    }

    #[test]
    fn offsets_of_an_empty_group_expire_after_the_retention() {
        let mut gs = Groups::new(no_delay());
        gs.check_commit("simple", -1, "", None, 0).unwrap();
        let g = gs.get_mut("simple").unwrap();
        let committed = |ts| Committed {
            value: OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: ts,
            },
            log_offset: 0,
        };
        g.offsets.insert(("t".into(), 0), committed(0));
        g.offsets.insert(("t".into(), 1), committed(1_000));
        let week = no_delay().offsets_retention_ms;
        assert!(gs.expire_offsets(week).is_empty());
        let out = gs.expire_offsets(week + 1);
        assert_eq!(
            out,
            vec![("simple".to_string(), vec![("t".to_string(), 0)], false)]
        );
        let out = gs.expire_offsets(week + 1_001);
        assert_eq!(
            out,
            vec![("simple".to_string(), vec![("t".to_string(), 1)], true)]
        );
        assert!(gs.get("simple").is_none());
    }

    #[test]
    fn a_new_group_waits_the_initial_delay_for_more_members() {
        let mut gs = Groups::new(GroupConfig::default());
        let (a, mut ja) = join_new(&mut gs, 0);
        gs.tick(2_000);
        assert!(
            ja.try_recv().is_err(),
            "held for group.initial.rebalance.delay.ms"
        );
        // b arrives within the delay and extends it; both land in generation 1.
        let (_b, mut jb) = join_new(&mut gs, 2_500);
        gs.tick(5_000);
        assert!(ja.try_recv().is_err());
        gs.tick(5_500);
        let (ra, rb) = (
            ja.try_recv().unwrap().unwrap(),
            jb.try_recv().unwrap().unwrap(),
        );
        assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
        assert_eq!(ra.leader, a);
        assert_eq!(ra.members.len(), 2);
    }

    pub(crate) fn req(group: &str, member: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group_id: group.into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|p| (p.to_string(), vec![1])).collect(),
            require_known_member_id: true,
            supports_skip_assignment: false,
        }
    }

    fn join(gs: &mut Groups, r: JoinRequest, now: i64) -> oneshot::Receiver<Result<JoinResponse>> {
        let (tx, rx) = oneshot::channel();
        gs.join(r, now, tx);
        rx
    }

    fn sync(
        gs: &mut Groups,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Vec<u8>)>,
        now: i64,
    ) -> oneshot::Receiver<Result<SyncResponse>> {
        let (tx, rx) = oneshot::channel();
        let req = SyncRequest {
            group_id: "g".into(),
            generation,
            member_id: member.into(),
            assignments,
            ..SyncRequest::default()
        };
        gs.sync(req, now, tx);
        rx
    }

    /// Joins a new member through MEMBER_ID_REQUIRED; returns its id and the
    /// receiver of its real join.
    fn join_new(gs: &mut Groups, now: i64) -> (String, oneshot::Receiver<Result<JoinResponse>>) {
        let mut first = join(gs, req("g", "", &["range"]), now);
        let Err(BrokerError::MemberIdRequired(id)) = first.try_recv().unwrap() else {
            panic!("expected MEMBER_ID_REQUIRED");
        };
        let rx = join(gs, req("g", &id, &["range"]), now);
        (id, rx)
    }

    #[test]
    fn two_members_rebalance_sync_and_one_expires() {
        let mut gs = Groups::new(no_delay());
        let (a, mut ja) = join_new(&mut gs, 0);
        let ra = ja.try_recv().unwrap().unwrap();
        assert_eq!((ra.generation_id, ra.leader.as_str()), (1, a.as_str()));
        assert_eq!(ra.members.len(), 1);
        let mut sa = sync(&mut gs, &a, 1, vec![(a.clone(), b"all".to_vec())], 1);
        assert_eq!(sa.try_recv().unwrap().unwrap().assignment, b"all");
        assert_eq!(gs.get("g").unwrap().state, GroupState::Stable);

        // b joins: a learns of the rebalance through its heartbeat and rejoins.
        let (b, mut jb) = join_new(&mut gs, 2);
        assert!(jb.try_recv().is_err(), "b waits for a to rejoin");
        assert_eq!(
            gs.heartbeat("g", 1, &a, None, 3),
            Err(BrokerError::RebalanceInProgress)
        );
        let mut ja = join(&mut gs, req("g", &a, &["range"]), 4);
        let ra = ja.try_recv().unwrap().unwrap();
        let rb = jb.try_recv().unwrap().unwrap();
        assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
        assert_eq!(ra.members.len(), 2, "the leader sees every member");
        assert!(rb.members.is_empty());
        // The follower's sync waits for the leader's.
        let mut sb = sync(&mut gs, &b, 2, vec![], 5);
        assert!(sb.try_recv().is_err());
        assert_eq!(
            sync(&mut gs, &b, 1, vec![], 5).try_recv().unwrap(),
            Err(illegal_generation(1, 2))
        );
        let mut sa = sync(
            &mut gs,
            &a,
            2,
            vec![(a.clone(), b"0".to_vec()), (b.clone(), b"1".to_vec())],
            6,
        );
        assert_eq!(sa.try_recv().unwrap().unwrap().assignment, b"0");
        // The refused sync changed nothing: b's waiting sync gets its assignment.
        assert_eq!(sb.try_recv().unwrap().unwrap().assignment, b"1");

        // b stops heartbeating: after its session timeout it is removed and a rejoins alone.
        assert_eq!(gs.heartbeat("g", 2, &a, None, 9_000), Ok(()));
        gs.tick(10_006);
        assert_eq!(gs.get("g").unwrap().state, GroupState::PreparingRebalance);
        assert_eq!(
            gs.heartbeat("g", 2, &b, None, 10_007),
            Err(BrokerError::UnknownMemberId(b.clone()))
        );
        let mut ja = join(&mut gs, req("g", &a, &["range"]), 10_008);
        let ra = ja.try_recv().unwrap().unwrap();
        assert_eq!((ra.generation_id, ra.members.len()), (3, 1));
    }

    #[test]
    fn a_member_that_never_rejoins_is_dropped_at_the_rebalance_timeout() {
        let mut gs = Groups::new(no_delay());
        let (a, mut ja) = join_new(&mut gs, 0);
        ja.try_recv().unwrap().unwrap();
        sync(&mut gs, &a, 1, vec![], 0).try_recv().unwrap().unwrap();
        let (_b, mut jb) = join_new(&mut gs, 100);
        // a keeps heartbeating but never rejoins.
        for t in (1_000..30_000).step_by(3_000) {
            let _ = gs.heartbeat("g", 1, &a, None, t);
            gs.tick(t);
        }
        assert!(jb.try_recv().is_err());
        gs.tick(30_100);
        let rb = jb.try_recv().unwrap().unwrap();
        assert_eq!((rb.generation_id, rb.members.len()), (2, 1));
        assert_eq!(
            gs.heartbeat("g", 1, &a, None, 30_200),
            Err(BrokerError::UnknownMemberId(a))
        );
    }

    #[test]
    fn bad_requests_get_kafka_errors_and_leave_the_group_usable() {
        let mut gs = Groups::new(no_delay());
        let mut r = req("g", "", &["range"]);
        r.session_timeout_ms = 10;
        assert!(matches!(
            join(&mut gs, r, 0).try_recv().unwrap(),
            Err(BrokerError::InvalidSessionTimeout(_))
        ));
        assert!(matches!(
            join(&mut gs, req("", "", &["range"]), 0)
                .try_recv()
                .unwrap(),
            Err(BrokerError::InvalidGroupId(_))
        ));
        assert!(matches!(
            join(&mut gs, req("g", "nobody", &["range"]), 0)
                .try_recv()
                .unwrap(),
            Err(BrokerError::UnknownMemberId(_))
        ));
        let (a, mut ja) = join_new(&mut gs, 0);
        ja.try_recv().unwrap().unwrap();
        let mut other = req("g", "", &["roundrobin"]);
        other.require_known_member_id = false;
        assert!(matches!(
            join(&mut gs, other, 0).try_recv().unwrap(),
            Err(BrokerError::InconsistentGroupProtocol(_))
        ));
        assert_eq!(
            gs.heartbeat("g", 1, "ghost", None, 1),
            Err(unknown_member("ghost"))
        );
        assert_eq!(
            gs.heartbeat("g", 7, &a, None, 1),
            Err(illegal_generation(7, 1))
        );
        assert!(matches!(
            gs.heartbeat("nope", 1, &a, None, 1),
            Err(BrokerError::UnknownMemberId(_))
        ));
        // Commits from a non-member or an old generation are refused while syncing.
        assert_eq!(
            gs.check_commit("g", 1, &a, None, 1),
            Err(BrokerError::RebalanceInProgress)
        );
        sync(&mut gs, &a, 1, vec![], 2).try_recv().unwrap().unwrap();
        assert_eq!(gs.check_commit("g", 1, &a, None, 3), Ok(()));
        assert_eq!(
            gs.check_commit("g", 0, &a, None, 3),
            Err(illegal_generation(0, 1))
        );
        assert_eq!(
            gs.check_commit("g", -1, "", None, 3),
            Err(unknown_member(""))
        );
        assert_eq!(gs.check_commit("simple", -1, "", None, 3), Ok(()));
        // The group still works.
        assert_eq!(gs.heartbeat("g", 1, &a, None, 4), Ok(()));
    }

    #[test]
    fn group_size_is_bounded_and_pending_ids_lapse() {
        let limits = GroupConfig {
            max_size: 2,
            ..no_delay()
        };
        let mut gs = Groups::new(limits);
        for _ in 0..2 {
            let mut rx = join(&mut gs, req("g", "", &["range"]), 0);
            assert!(matches!(
                rx.try_recv().unwrap(),
                Err(BrokerError::MemberIdRequired(_))
            ));
        }
        assert!(matches!(
            join(&mut gs, req("g", "", &["range"]), 0)
                .try_recv()
                .unwrap(),
            Err(BrokerError::GroupMaxSizeReached(_))
        ));
        // The node-wide bound holds across groups too.
        let mut capped = Groups::new(GroupConfig {
            max_members_total: 1,
            ..no_delay()
        });
        join(&mut capped, req("g1", "", &["range"]), 0)
            .try_recv()
            .unwrap()
            .unwrap_err();
        assert!(matches!(
            join(&mut capped, req("g2", "", &["range"]), 0)
                .try_recv()
                .unwrap(),
            Err(BrokerError::GroupMaxSizeReached(_))
        ));
        // Member ids handed out but never used lapse after the session timeout.
        gs.tick(10_001);
        let mut rx = join(&mut gs, req("g", "", &["range"]), 10_002);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(BrokerError::MemberIdRequired(_))
        ));
    }

    #[test]
    fn static_member_rejoins_without_rebalance_and_fences_its_old_id() {
        let mut gs = Groups::new(no_delay());
        let static_req = |instance: &str| {
            let mut r = req("g", "", &["range"]);
            r.group_instance_id = Some(instance.into());
            r
        };
        let sync_static = |gs: &mut Groups, member: &str, instance: &str, generation: i32| {
            let (tx, rx) = oneshot::channel();
            let req = SyncRequest {
                group_id: "g".into(),
                generation,
                member_id: member.into(),
                group_instance_id: Some(instance.into()),
                protocol: None,
                assignments: vec![(member.to_string(), b"p".to_vec())],
            };
            gs.sync(req, 1, tx);
            rx
        };
        // Static members get their id at once (no MEMBER_ID_REQUIRED).
        let leader = join(&mut gs, static_req("i1"), 0)
            .try_recv()
            .unwrap()
            .unwrap();
        sync_static(&mut gs, &leader.member_id, "i1", 1)
            .try_recv()
            .unwrap()
            .unwrap();
        let mut jf = join(&mut gs, static_req("i2"), 1);
        let mut jl = join(&mut gs, req("g", &leader.member_id, &["range"]), 1);
        let follower = jf.try_recv().unwrap().unwrap();
        jl.try_recv().unwrap().unwrap();
        assert_eq!(follower.generation_id, 2);
        let mut sf = sync_static(&mut gs, &follower.member_id, "i2", 2);
        sync_static(&mut gs, &leader.member_id, "i1", 2)
            .try_recv()
            .unwrap()
            .unwrap();
        sf.try_recv().unwrap().unwrap();

        // The follower restarts: same generation, no rebalance, its old id fenced.
        let again = join(&mut gs, static_req("i2"), 3)
            .try_recv()
            .unwrap()
            .unwrap();
        assert_ne!(again.member_id, follower.member_id);
        assert_eq!(again.generation_id, 2);
        assert_eq!(gs.get("g").unwrap().state, GroupState::Stable);
        assert!(matches!(
            gs.heartbeat("g", 2, &follower.member_id, Some("i2"), 4),
            Err(BrokerError::FencedInstanceId(_))
        ));
        assert_eq!(
            gs.heartbeat("g", 2, &again.member_id, Some("i2"), 4),
            Ok(())
        );
        assert_eq!(
            gs.heartbeat("g", 2, &leader.member_id, Some("i1"), 4),
            Ok(())
        );
    }

    #[test]
    fn leaving_members_trigger_a_rebalance_and_the_last_one_empties_the_group() {
        let mut gs = Groups::new(no_delay());
        let (a, mut ja) = join_new(&mut gs, 0);
        ja.try_recv().unwrap().unwrap();
        sync(&mut gs, &a, 1, vec![], 0).try_recv().unwrap().unwrap();
        gs.dirty.clear();
        let out = gs
            .leave("g", &[(a.clone(), None), ("ghost".into(), None)], 1)
            .unwrap();
        assert_eq!(out[0].1, Ok(()));
        assert_eq!(out[1].1, Err(unknown_member("ghost")));
        let g = gs.get("g").unwrap();
        assert_eq!((g.state, g.generation), (GroupState::Empty, 2));
        assert_eq!(gs.dirty, vec!["g".to_string()]);
    }
}
