//! `keel consume TOPIC`: from the beginning, the end, an offset or a timestamp;
//! stop at the end or follow; alone or as a member of a consumer group.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, FetchRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use serde_json::json;

use super::client::{check, st, topic_name, Cluster};
use super::topic::offsets;
use super::{Common, Format};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Where to start: beginning, end, an offset, or @TIMESTAMP_MS. In a group,
    /// only for partitions without a committed offset.
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Only this partition (not with --group).
    #[arg(long, short = 'p', conflicts_with = "group")]
    partition: Option<i32>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Join this consumer group: share partitions with its other members and
    /// commit offsets as records are printed.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// How to print each record: %t topic, %p partition, %o offset, %k key,
    /// %v value, %T timestamp, %h headers, %% a percent sign; \n and \t escapes.
    #[arg(long, short = 'F', default_value = "%v\\n")]
    format: String,
}

/// Where consumption starts in a partition without a committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

pub(super) fn parse_start(s: &str) -> Result<Start> {
    Ok(match s {
        "beginning" | "earliest" | "start" => Start::Beginning,
        "end" | "latest" => Start::End,
        _ => {
            let bad = || {
                anyhow!("--from {s:?}: expected beginning, end, an offset (e.g. 42) or @TIMESTAMP_MS (e.g. @1700000000000)")
            };
            match s.strip_prefix('@') {
                Some(ts) => {
                    Start::Timestamp(ts.parse().ok().filter(|t: &i64| *t >= 0).ok_or_else(bad)?)
                }
                None => Start::Offset(s.parse().ok().filter(|o: &i64| *o >= 0).ok_or_else(bad)?),
            }
        }
    })
}

/// One record to print.
struct Out<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<&'a Bytes>,
    value: Option<&'a Bytes>,
    headers: Vec<(String, Option<String>)>,
}

fn text(b: Option<&Bytes>) -> String {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

fn render(format: &str, r: &Out) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    't' => out.push_str(r.topic),
                    'p' => out.push_str(&r.partition.to_string()),
                    'o' => out.push_str(&r.offset.to_string()),
                    'k' => out.push_str(&text(r.key)),
                    'v' | 's' => out.push_str(&text(r.value)),
                    'T' => out.push_str(&r.timestamp.to_string()),
                    'h' => out.push_str(
                        &r.headers
                            .iter()
                            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some('n')) => {
                chars.next();
                out.push('\n');
            }
            ('\\', Some('t')) => {
                chars.next();
                out.push('\t');
            }
            (c, _) => out.push(c),
        }
    }
    out
}

fn as_json(r: &Out) -> String {
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": r.key.map(|k| String::from_utf8_lossy(k).into_owned()),
        "value": r.value.map(|v| String::from_utf8_lossy(v).into_owned()),
        "headers": r.headers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
    .to_string()
        + "\n"
}

/// A partition being read.
struct Position {
    leader: i32,
    next: i64,
    /// Where "the end" was when reading began (the high watermark then).
    end: i64,
    /// Offset to commit, when in a group and records were printed since.
    uncommitted: bool,
}

/// Resolves `start` into an offset for each partition; checks explicit offsets.
pub(super) async fn starting_offsets(
    c: &mut Cluster,
    topic: &str,
    leaders: &[(i32, i32)],
    start: Start,
) -> Result<BTreeMap<i32, i64>> {
    let lows = offsets(c, topic, leaders, -2).await?;
    let highs = offsets(c, topic, leaders, -1).await?;
    let mut out = BTreeMap::new();
    for (((p, lo), (_, hi)), &(_, leader)) in lows.iter().zip(&highs).zip(leaders) {
        let at = match start {
            Start::Beginning => *lo,
            Start::End => *hi,
            Start::Offset(o) => {
                if o < *lo || o > *hi {
                    bail!(
                        "offset {o} is out of range for {topic}-{p}: it holds offsets {lo}..{hi}"
                    );
                }
                o
            }
            Start::Timestamp(ts) => {
                let found = offsets(c, topic, &[(*p, leader)], ts).await?;
                match found.first() {
                    Some((_, o)) if *o >= 0 => *o,
                    _ => *hi,
                }
            }
        };
        out.insert(*p, at);
    }
    Ok(out)
}

struct Printer {
    format: String,
    json: bool,
    printed: u64,
    limit: Option<u64>,
}

impl Printer {
    fn done(&self) -> bool {
        self.limit.is_some_and(|l| self.printed >= l)
    }
}

/// Fetches once from every leader; prints records; advances positions. Returns
/// whether anything was read.
async fn fetch_round(
    c: &mut Cluster,
    topic: &str,
    positions: &mut BTreeMap<i32, Position>,
    wait_ms: i32,
    printer: &mut Printer,
) -> Result<bool> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (p, pos) in positions.iter() {
        by_leader.entry(pos.leader).or_default().push(*p);
    }
    let mut any = false;
    let stdout = std::io::stdout();
    for (leader, parts) in by_leader {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(positions[p].next)
                                .with_partition_max_bytes(4 << 20)
                        })
                        .collect(),
                )]);
        let resp = c.call_node(leader, &req, 12).await?;
        check(resp.error_code, "fetch")?;
        for t in &resp.responses {
            for pr in &t.partitions {
                let p = pr.partition_index;
                check(pr.error_code, &format!("fetch {topic}-{p}"))?;
                let Some(bytes) = pr.records.clone() else {
                    continue;
                };
                if bytes.is_empty() {
                    continue;
                }
                let pos = positions.get_mut(&p).ok_or_else(|| {
                    anyhow!("the broker sent records for {topic}-{p}, not asked for")
                })?;
                // Batch boundaries come from the headers, so a batch that compaction
                // thinned (its last records gone) still moves the position past it.
                let mut last = None;
                for range in keel_storage::batch::split(&bytes).context("fetched records")? {
                    let h = keel_storage::batch::BatchHeader::parse(&bytes[range])?;
                    last = Some(h.last_offset());
                }
                let mut buf = bytes.clone();
                let sets =
                    RecordBatchDecoder::decode_all(&mut buf).context("decode fetched records")?;
                let mut out = stdout.lock();
                for set in sets {
                    for r in set.records {
                        if r.offset < pos.next || printer.done() {
                            continue;
                        }
                        let o = Out {
                            topic,
                            partition: p,
                            offset: r.offset,
                            timestamp: r.timestamp,
                            key: r.key.as_ref(),
                            value: r.value.as_ref(),
                            headers: r
                                .headers
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.to_string(),
                                        v.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
                                    )
                                })
                                .collect(),
                        };
                        let line = if printer.json {
                            as_json(&o)
                        } else {
                            render(&printer.format, &o)
                        };
                        out.write_all(line.as_bytes())?;
                        printer.printed += 1;
                        pos.next = r.offset + 1;
                        pos.uncommitted = true;
                        any = true;
                    }
                }
                out.flush()?;
                if !printer.done() {
                    if let Some(l) = last {
                        pos.next = pos.next.max(l + 1);
                    }
                }
            }
        }
    }
    Ok(any)
}

pub async fn run(a: ConsumeArgs, common: &Common) -> Result<()> {
    let start = parse_start(&a.from)?;
    let mut c = common.connect().await?;
    let t = c.topic(&a.topic).await?;
    let mut leaders: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    leaders.sort();
    if let Some(p) = a.partition {
        leaders.retain(|(i, _)| *i == p);
        if leaders.is_empty() {
            bail!(
                "partition {p} does not exist: topic {:?} has {} partitions",
                a.topic,
                t.partitions.len()
            );
        }
    }
    let mut printer = Printer {
        format: a.format.clone(),
        json: common.output == Format::Json,
        printed: 0,
        limit: a.count,
    };
    match &a.group {
        None => {
            let starts = starting_offsets(&mut c, &a.topic, &leaders, start).await?;
            let ends = offsets(&mut c, &a.topic, &leaders, -1).await?;
            let mut positions: BTreeMap<i32, Position> = leaders
                .iter()
                .zip(&ends)
                .map(|(&(p, leader), (_, end))| {
                    (
                        p,
                        Position {
                            leader,
                            next: starts[&p],
                            end: *end,
                            uncommitted: false,
                        },
                    )
                })
                .collect();
            loop {
                if printer.done() || (!a.follow && positions.values().all(|p| p.next >= p.end)) {
                    return Ok(());
                }
                let wait = if a.follow { 500 } else { 100 };
                fetch_round(&mut c, &a.topic, &mut positions, wait, &mut printer).await?;
            }
        }
        Some(group) => consume_in_group(&mut c, &a, group, start, &leaders, &mut printer).await,
    }
}

fn subscription(topic: &str) -> Result<Bytes> {
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&0i16.to_be_bytes());
    ConsumerProtocolSubscription::default()
        .with_topics(vec![st(topic)])
        .encode(&mut buf, 0)?;
    Ok(buf.freeze())
}

/// The range assignor (Kafka's RangeAssignor for one topic): each member, in
/// member-id order, gets a contiguous run of partitions.
fn range_assign(
    members: &[String],
    partitions: &[i32],
    topic: &str,
) -> Result<Vec<(String, Bytes)>> {
    let mut members = members.to_vec();
    members.sort();
    let n = members.len().max(1);
    let per = partitions.len() / n;
    let extra = partitions.len() % n;
    let mut out = Vec::new();
    let mut at = 0;
    for (i, m) in members.iter().enumerate() {
        let take = per + usize::from(i < extra);
        let mine = partitions[at..at + take].to_vec();
        at += take;
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&0i16.to_be_bytes());
        ConsumerProtocolAssignment::default()
            .with_assigned_partitions(vec![AssignedTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(mine)])
            .encode(&mut buf, 0)?;
        out.push((m.clone(), buf.freeze()));
    }
    Ok(out)
}

struct Membership {
    coordinator: i32,
    member_id: String,
    generation: i32,
}

async fn join(
    c: &mut Cluster,
    group: &str,
    topic: &str,
    partitions: &[i32],
    member_id: &mut String,
) -> Result<(Membership, Vec<i32>)> {
    let coordinator = c.coordinator(group).await?;
    loop {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(st(group)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(st(member_id))
            .with_protocol_type(st("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(st("range"))
                .with_metadata(subscription(topic)?)]);
        let r = c.call_node(coordinator, &req, 7).await?;
        if r.error_code == ResponseError::MemberIdRequired.code() {
            *member_id = r.member_id.to_string();
            continue;
        }
        if r.error_code == ResponseError::UnknownMemberId.code() {
            member_id.clear();
            continue;
        }
        check(r.error_code, &format!("join group {group:?}"))?;
        *member_id = r.member_id.to_string();
        let assignments = if r.leader == r.member_id {
            let ids: Vec<String> = r.members.iter().map(|m| m.member_id.to_string()).collect();
            range_assign(&ids, partitions, topic)?
                .into_iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(st(&m))
                        .with_assignment(a)
                })
                .collect()
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(st(group)))
            .with_generation_id(r.generation_id)
            .with_member_id(st(member_id))
            .with_protocol_type(Some(st("consumer")))
            .with_protocol_name(Some(st("range")))
            .with_assignments(assignments);
        let s = c.call_node(coordinator, &sync, 5).await?;
        if s.error_code == ResponseError::RebalanceInProgress.code() {
            continue;
        }
        check(s.error_code, &format!("sync group {group:?}"))?;
        let mut mine = Vec::new();
        if s.assignment.len() > 2 {
            let mut body = s.assignment.slice(2..);
            let a = ConsumerProtocolAssignment::decode(&mut body, 0)
                .context("decode the group's assignment")?;
            for t in a.assigned_partitions {
                if t.topic.as_str() == topic {
                    mine.extend(t.partitions);
                }
            }
        }
        mine.sort();
        return Ok((
            Membership {
                coordinator,
                member_id: member_id.clone(),
                generation: r.generation_id,
            },
            mine,
        ));
    }
}

async fn commit(
    c: &mut Cluster,
    group: &str,
    m: &Membership,
    topic: &str,
    positions: &mut BTreeMap<i32, Position>,
) -> Result<()> {
    let parts: Vec<OffsetCommitRequestPartition> = positions
        .iter()
        .filter(|(_, p)| p.uncommitted)
        .map(|(i, p)| {
            OffsetCommitRequestPartition::default()
                .with_partition_index(*i)
                .with_committed_offset(p.next)
        })
        .collect();
    if parts.is_empty() {
        return Ok(());
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(st(group)))
        .with_generation_id_or_member_epoch(m.generation)
        .with_member_id(st(&m.member_id))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(parts)]);
    let resp = c.call_node(m.coordinator, &req, 8).await?;
    for t in &resp.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                &format!("commit the offset of {topic}-{}", p.partition_index),
            )?;
        }
    }
    for p in positions.values_mut() {
        p.uncommitted = false;
    }
    Ok(())
}

async fn consume_in_group(
    c: &mut Cluster,
    a: &ConsumeArgs,
    group: &str,
    start: Start,
    leaders: &[(i32, i32)],
    printer: &mut Printer,
) -> Result<()> {
    let all: Vec<i32> = leaders.iter().map(|(p, _)| *p).collect();
    let mut member_id = String::new();
    'rejoin: loop {
        let (m, mine) = join(c, group, &a.topic, &all, &mut member_id).await?;
        let my_leaders: Vec<(i32, i32)> = leaders
            .iter()
            .copied()
            .filter(|(p, _)| mine.contains(p))
            .collect();
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(st(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(&a.topic))
                .with_partition_indexes(mine.clone())]));
        let committed = c.call_node(m.coordinator, &req, 7).await?;
        check(
            committed.error_code,
            &format!("fetch the offsets of group {group:?}"),
        )?;
        let starts = starting_offsets(c, &a.topic, &my_leaders, start).await?;
        let ends = offsets(c, &a.topic, &my_leaders, -1).await?;
        let mut positions: BTreeMap<i32, Position> = BTreeMap::new();
        for ((p, leader), (_, end)) in my_leaders.iter().zip(&ends) {
            let c_off = committed
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .find(|x| x.partition_index == *p)
                .map_or(-1, |x| x.committed_offset);
            let next = if c_off >= 0 { c_off } else { starts[p] };
            positions.insert(
                *p,
                Position {
                    leader: *leader,
                    next,
                    end: *end,
                    uncommitted: false,
                },
            );
        }
        let mut last_beat = Instant::now();
        loop {
            let finished =
                printer.done() || (!a.follow && positions.values().all(|p| p.next >= p.end));
            if finished {
                commit(c, group, &m, &a.topic, &mut positions).await?;
                let leave = LeaveGroupRequest::default()
                    .with_group_id(GroupId(st(group)))
                    .with_members(vec![
                        MemberIdentity::default().with_member_id(st(&m.member_id))
                    ]);
                let r = c.call_node(m.coordinator, &leave, 5).await?;
                check(r.error_code, &format!("leave group {group:?}"))?;
                return Ok(());
            }
            if positions.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else {
                let wait = if a.follow { 500 } else { 100 };
                if fetch_round(c, &a.topic, &mut positions, wait, printer).await? {
                    commit(c, group, &m, &a.topic, &mut positions).await?;
                }
            }
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = Instant::now();
                let hb = HeartbeatRequest::default()
                    .with_group_id(GroupId(st(group)))
                    .with_generation_id(m.generation)
                    .with_member_id(st(&m.member_id));
                let r = c.call_node(m.coordinator, &hb, 4).await?;
                if r.error_code == ResponseError::RebalanceInProgress.code() {
                    commit(c, group, &m, &a.topic, &mut positions).await.ok();
                    continue 'rejoin;
                }
                if r.error_code == ResponseError::UnknownMemberId.code()
                    || r.error_code == ResponseError::IllegalGeneration.code()
                {
                    member_id.clear();
                    continue 'rejoin;
                }
                check(r.error_code, &format!("heartbeat to group {group:?}"))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_specs_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(parse_start("beginning").unwrap(), Start::Beginning);
        assert_eq!(parse_start("end").unwrap(), Start::End);
        assert_eq!(parse_start("42").unwrap(), Start::Offset(42));
        assert_eq!(
            parse_start("@1700000000000").unwrap(),
            Start::Timestamp(1_700_000_000_000)
        );
        for bad in ["-1", "soon", "@yesterday", ""] {
            let e = parse_start(bad).unwrap_err().to_string();
            assert!(e.contains("expected beginning, end"), "{e}");
        }
    }

    #[test]
    fn formats_render_every_field() {
        let (k, v) = (Bytes::from_static(b"k1"), Bytes::from_static(b"v1"));
        let r = Out {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: 99,
            key: Some(&k),
            value: Some(&v),
            headers: vec![("h".into(), Some("x".into()))],
        };
        assert_eq!(
            render("%t/%p@%o %k=%v %T [%h] 100%%\\n", &r),
            "t/2@7 k1=v1 99 [h=x] 100%\n"
        );
    }

    #[test]
    fn range_assignment_splits_contiguously() {
        let a = range_assign(&["b".into(), "a".into()], &[0, 1, 2, 3, 4], "t").unwrap();
        let parts = |b: &Bytes| {
            let mut body = b.slice(2..);
            ConsumerProtocolAssignment::decode(&mut body, 0)
                .unwrap()
                .assigned_partitions[0]
                .partitions
                .clone()
        };
        assert_eq!(a[0].0, "a");
        assert_eq!(parts(&a[0].1), vec![0, 1, 2]);
        assert_eq!(parts(&a[1].1), vec![3, 4]);
    }
}
