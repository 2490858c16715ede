//! The key and value formats of `__consumer_offsets`, exactly as Kafka writes them
//! (group-coordinator `OffsetCommitKey`/`OffsetCommitValue`,
//! `GroupMetadataKey`/`GroupMetadataValue`), so that tools reading that topic work
//! unchanged. Keel writes key versions 1 and 2 and value version 3, as Kafka 3.x
//! does; it reads value versions 0-3. Parsing returns `None` on anything
//! malformed, never panics.
//!
//! KIP-848 consumer groups are Keel's own record: key version
//! [`CONSUMER_GROUP_KEY_VERSION`] (outside the versions Kafka uses) holds the
//! whole group as one snapshot (`ConsumerGroupValue` below), where Kafka
//! spreads it over six record types. One record per change keeps the log the
//! group's history with the last record its state, as for classic groups;
//! Kafka's tools do not read Keel's log, so nothing relies on Kafka's layout.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::consumer_groups::{Assignment, Assignor, ConsumerGroup, ConsumerMember, MemberState};

/// A committed offset, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// One member in a group's stored metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// A group's stored metadata (its membership as of its last completed rebalance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// What a record key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
    /// A KIP-848 consumer group's snapshot.
    ConsumerGroup(String),
}

/// Keel's key version for a consumer group snapshot.
pub const CONSUMER_GROUP_KEY_VERSION: i16 = 1000;
const CONSUMER_GROUP_VALUE_VERSION: i16 = 0;

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len().min(i16::MAX as usize);
    out.extend_from_slice(&(n as i16).to_be_bytes());
    out.extend_from_slice(&b[..n]);
}

fn put_nullable_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.extend_from_slice(&(-1i16).to_be_bytes()),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
    out.extend_from_slice(b);
}

impl RecordKey {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                out.extend_from_slice(&OFFSET_KEY_VERSION.to_be_bytes());
                put_str(&mut out, group);
                put_str(&mut out, topic);
                out.extend_from_slice(&partition.to_be_bytes());
            }
            RecordKey::Group(group) => {
                out.extend_from_slice(&GROUP_KEY_VERSION.to_be_bytes());
                put_str(&mut out, group);
            }
            RecordKey::ConsumerGroup(group) => {
                out.extend_from_slice(&CONSUMER_GROUP_KEY_VERSION.to_be_bytes());
                put_str(&mut out, group);
            }
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<RecordKey> {
        let mut r = Reader(b);
        let key = match r.i16()? {
            0 | 1 => RecordKey::Offset {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            },
            2 => RecordKey::Group(r.string()?),
            CONSUMER_GROUP_KEY_VERSION => RecordKey::ConsumerGroup(r.string()?),
            _ => return None,
        };
        Some(key)
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&OFFSET_VALUE_VERSION.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.leader_epoch.to_be_bytes());
        put_str(&mut out, &self.metadata);
        out.extend_from_slice(&self.commit_timestamp.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<OffsetValue> {
        let mut r = Reader(b);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp = r.i64()?;
        if version == 1 {
            r.i64()?; // expireTimestamp
        }
        Some(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&GROUP_VALUE_VERSION.to_be_bytes());
        put_str(&mut out, &self.protocol_type);
        out.extend_from_slice(&self.generation.to_be_bytes());
        put_nullable_str(&mut out, self.protocol.as_deref());
        put_nullable_str(&mut out, self.leader.as_deref());
        out.extend_from_slice(&self.current_state_timestamp.to_be_bytes());
        out.extend_from_slice(&(self.members.len() as i32).to_be_bytes());
        for m in &self.members {
            put_str(&mut out, &m.member_id);
            put_nullable_str(&mut out, m.group_instance_id.as_deref());
            put_str(&mut out, &m.client_id);
            put_str(&mut out, &m.client_host);
            out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
            out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
            put_bytes(&mut out, &m.subscription);
            put_bytes(&mut out, &m.assignment);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<GroupValue> {
        let mut r = Reader(b);
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let protocol_type = r.string()?;
        let generation = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = r.string()?;
            let group_instance_id = if version >= 3 {
                r.nullable_string()?
            } else {
                None
            };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let session_timeout_ms;
            let rebalance_timeout_ms = if version >= 1 {
                let rebalance = r.i32()?;
                session_timeout_ms = r.i32()?;
                rebalance
            } else {
                session_timeout_ms = r.i32()?;
                session_timeout_ms
            };
            members.push(StoredMember {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Some(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

/// The topics a consumer-protocol subscription (`ConsumerProtocolSubscription`,
/// versions 0-3 share the prefix) names; `None` if it is not one.
fn put_assignment(out: &mut Vec<u8>, a: &Assignment) {
    out.extend_from_slice(&(a.len() as i32).to_be_bytes());
    for (t, ps) in a {
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&(ps.len() as i32).to_be_bytes());
        for p in ps {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
}

fn read_assignment(r: &mut Reader) -> Option<Assignment> {
    let n = r.i32()?;
    let mut a = Assignment::new();
    for _ in 0..n.max(0) {
        let t = Uuid::from_slice(r.take(16)?).ok()?;
        let k = r.i32()?;
        let ps: BTreeSet<i32> = (0..k.max(0)).map(|_| r.i32()).collect::<Option<_>>()?;
        a.insert(t, ps);
    }
    Some(a)
}

/// A consumer group's snapshot, as Keel stores it.
pub fn encode_consumer_group(g: &ConsumerGroup) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&CONSUMER_GROUP_VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&g.epoch.to_be_bytes());
    out.extend_from_slice(&g.assignment_epoch.to_be_bytes());
    put_nullable_str(&mut out, g.assignor.map(Assignor::name));
    out.extend_from_slice(&(g.subscribed.len() as i32).to_be_bytes());
    for (name, (id, partitions)) in &g.subscribed {
        put_str(&mut out, name);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&partitions.to_be_bytes());
    }
    out.extend_from_slice(&(g.members.len() as i32).to_be_bytes());
    for m in g.members.values() {
        put_str(&mut out, &m.id);
        put_nullable_str(&mut out, m.instance_id.as_deref());
        put_nullable_str(&mut out, m.rack_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        out.extend_from_slice(&(m.topics.len() as i32).to_be_bytes());
        for t in &m.topics {
            put_str(&mut out, t);
        }
        put_nullable_str(&mut out, m.regex.as_deref());
        put_nullable_str(&mut out, m.assignor.as_deref());
        out.extend_from_slice(&m.epoch.to_be_bytes());
        out.extend_from_slice(&m.previous_epoch.to_be_bytes());
        out.push(m.state.code() as u8);
        put_assignment(&mut out, &m.assigned);
        put_assignment(&mut out, &m.revoking);
        put_assignment(&mut out, g.target.get(&m.id).unwrap_or(&Assignment::new()));
    }
    out
}

/// Reads a consumer group's snapshot; `None` when malformed.
pub fn decode_consumer_group(b: &[u8]) -> Option<ConsumerGroup> {
    let mut r = Reader(b);
    if r.i16()? != CONSUMER_GROUP_VALUE_VERSION {
        return None;
    }
    let mut g = ConsumerGroup::new();
    g.epoch = r.i32()?;
    g.assignment_epoch = r.i32()?;
    g.assignor = match r.nullable_string()? {
        Some(a) => Some(Assignor::from_name(&a)?),
        None => None,
    };
    let n = r.i32()?;
    let mut subscribed = BTreeMap::new();
    for _ in 0..n.max(0) {
        let name = r.string()?;
        let id = Uuid::from_slice(r.take(16)?).ok()?;
        subscribed.insert(name, (id, r.i32()?));
    }
    g.subscribed = subscribed;
    let n = r.i32()?;
    for _ in 0..n.max(0) {
        let id = r.string()?;
        let instance_id = r.nullable_string()?;
        let rack_id = r.nullable_string()?;
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = r.i32()?;
        let k = r.i32()?;
        let topics = (0..k.max(0))
            .map(|_| r.string())
            .collect::<Option<Vec<_>>>()?;
        let regex = r.nullable_string()?;
        let assignor = r.nullable_string()?;
        let epoch = r.i32()?;
        let previous_epoch = r.i32()?;
        let state = MemberState::from_code(r.take(1)?[0] as i8)?;
        let assigned = read_assignment(&mut r)?;
        let revoking = read_assignment(&mut r)?;
        let target = read_assignment(&mut r)?;
        g.target.insert(id.clone(), target);
        g.members.insert(
            id.clone(),
            ConsumerMember {
                id,
                instance_id,
                rack_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                topics,
                regex,
                assignor,
                epoch,
                previous_epoch,
                state,
                assigned,
                revoking,
            },
        );
    }
    r.0.is_empty().then_some(g)
}

pub fn subscribed_topics(subscription: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(subscription);
    if r.i16()? < 0 {
        return None;
    }
    let n = r.i32()?;
    (0..n.max(0)).map(|_| r.string()).collect()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn nullable_string(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        let b = self.take(n as usize)?;
        Some(Some(String::from_utf8(b.to_vec()).ok()?))
    }
    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.i32()?;
        if n < 0 {
            return Some(Vec::new());
        }
        Some(self.take(n as usize)?.to_vec())
    }
}

/// Kafka's `Utils.abs(groupId.hashCode()) % partitions`: Java's `String.hashCode`
/// over UTF-16 code units. Using the same function puts each group in the same
/// `__consumer_offsets` partition Kafka would.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncations_are_refused() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(RecordKey::decode(&k.encode()), Some(k.clone()));
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp: 7,
        };
        let bytes = v.encode();
        assert_eq!(OffsetValue::decode(&bytes), Some(v));
        for cut in 0..bytes.len() {
            assert_eq!(OffsetValue::decode(&bytes[..cut]), None);
        }
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: vec![1, 2],
                assignment: vec![3],
            }],
        };
        let bytes = g.encode();
        assert_eq!(GroupValue::decode(&bytes), Some(g));
        for cut in 0..bytes.len() {
            assert_eq!(GroupValue::decode(&bytes[..cut]), None);
        }
    }

    #[test]
    fn a_consumer_group_snapshot_round_trips_and_truncations_are_refused() {
        use crate::consumer_groups::{ConsumerGroupConfig, Heartbeat, TopicMeta};
        let topics = [TopicMeta {
            id: Uuid::from_bytes([3; 16]),
            name: "t".into(),
            partitions: 5,
            internal: false,
        }];
        let mut g = ConsumerGroup::new();
        let cfg = ConsumerGroupConfig::default();
        for (m, instance) in [("a", Some("i")), ("b", None)] {
            let req = Heartbeat {
                group_id: "g".into(),
                member_id: m.into(),
                instance_id: instance.map(str::to_string),
                rebalance_timeout_ms: 1000,
                topics: Some(vec!["t".into()]),
                regex: Some("x.*".into()),
                assignor: Some("range".into()),
                owned: Some(Assignment::new()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                client_generates_member_id: true,
                session_timeout_ms: None,
                heartbeat_interval_ms: None,
                ..Heartbeat::default()
            };
            g.heartbeat(req, &cfg, &topics, 0).unwrap();
        }
        // a hears of b: it must give up partitions first.
        let a = &g.members["a"];
        let beat = Heartbeat {
            group_id: "g".into(),
            member_id: "a".into(),
            member_epoch: a.epoch,
            rebalance_timeout_ms: -1,
            owned: Some(a.assigned.clone()),
            client_generates_member_id: true,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            ..Heartbeat::default()
        };
        g.heartbeat(beat, &cfg, &topics, 1).unwrap();
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        let bytes = encode_consumer_group(&g);
        let back = decode_consumer_group(&bytes).unwrap();
        assert_eq!(back.members, g.members);
        assert_eq!(back.target, g.target);
        assert_eq!(back.subscribed, g.subscribed);
        assert_eq!(
            (back.epoch, back.assignment_epoch, back.assignor),
            (g.epoch, g.assignment_epoch, g.assignor)
        );
        for cut in 0..bytes.len() {
            assert!(
                decode_consumer_group(&bytes[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        let key = RecordKey::ConsumerGroup("g".into());
        assert_eq!(RecordKey::decode(&key.encode()), Some(key));
    }

    #[test]
    fn partition_matches_java_string_hash_code() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE, which Utils.abs maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // "".hashCode() == 0.
        assert_eq!(partition_for("", 50), 0);
        // "a".hashCode() == 97.
        assert_eq!(partition_for("a", 50), 47);
    }
}
