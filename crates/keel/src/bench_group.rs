//! `keel bench group`: how long a consumer group takes to stabilise, and what an
//! OffsetCommit costs. Members speak the classic protocol directly (JoinGroup v5
//! with KIP-394's member-id round, SyncGroup v3), so the numbers are the node's,
//! without a client library's own timers.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    OffsetCommitRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use keel_kafka::client::{check, Connection};

use crate::bench::{ensure_topic, GroupArgs};

fn st(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A joined member: its connection, id and generation.
struct Member {
    conn: Connection,
    id: String,
    generation: i32,
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(st(group)))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(st(member))
        .with_protocol_type(st("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(st("range"))
            .with_metadata(Bytes::from_static(b"\x00\x00\x00\x00\x00\x00"))])
}

/// Errors after which a member rejoins, as consumers do.
fn rejoin_on(code: i16) -> bool {
    code == ResponseError::RebalanceInProgress.code()
        || code == ResponseError::IllegalGeneration.code()
        || code == ResponseError::UnknownMemberId.code()
}

/// One member, as a consumer runs it: join (with KIP-394's member-id round),
/// sync (the leader with an assignment for everyone), then heartbeat every 50 ms;
/// rejoin whenever the coordinator says so. Reports each generation it completes.
async fn member(
    conn: Connection,
    group: String,
    synced: tokio::sync::mpsc::UnboundedSender<(usize, i32)>,
    index: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Member> {
    let mut id = String::new();
    'rejoin: loop {
        let r = conn.call(&join_req(&group, &id), 5).await?;
        if r.error_code == ResponseError::MemberIdRequired.code() {
            id = r.member_id.to_string();
            continue;
        }
        if r.error_code == ResponseError::UnknownMemberId.code() {
            id.clear();
            continue;
        }
        check(r.error_code, "JoinGroup")?;
        id = r.member_id.to_string();
        let generation = r.generation_id;
        let assignments = if r.leader == r.member_id {
            r.members
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(m.member_id.clone())
                        .with_assignment(Bytes::from_static(b"assignment"))
                })
                .collect()
        } else {
            Vec::new()
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(st(&group)))
            .with_generation_id(generation)
            .with_member_id(st(&id))
            .with_assignments(assignments);
        let code = conn.call(&sync, 3).await?.error_code;
        if rejoin_on(code) {
            continue;
        }
        check(code, "SyncGroup")?;
        let _ = synced.send((index, generation));
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(Member { conn, id, generation }),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
            let hb = HeartbeatRequest::default()
                .with_group_id(GroupId(st(&group)))
                .with_generation_id(generation)
                .with_member_id(st(&id));
            let code = conn.call(&hb, 4).await?.error_code;
            if rejoin_on(code) {
                continue 'rejoin;
            }
            check(code, "Heartbeat")?;
        }
    }
}

/// Forms one group; returns the time from the first JoinGroup until every
/// member has synced the same generation, and the members.
async fn stabilise(a: &GroupArgs, group: &str) -> Result<(Duration, Vec<Member>)> {
    let n = a.members as usize;
    let coordinator = coordinator_of(&a.common.brokers, group).await?;
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(Connection::connect(&coordinator).await?);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(member(c, group.to_string(), tx.clone(), i, stopped.clone())))
        .collect();
    drop(tx);
    let mut generation_of = vec![-1; n];
    let took = loop {
        let Some((i, generation)) = rx.recv().await else {
            bail!("every member stopped before the group was stable")
        };
        generation_of[i] = generation;
        if generation_of.iter().all(|g| *g == generation) {
            break start.elapsed();
        }
    };
    let _ = stop.send(true);
    let mut members = Vec::new();
    for t in tasks {
        members.push(t.await??);
    }
    Ok((took, members))
}

/// The group's coordinator, HOST:PORT, asked of the bootstrap broker: on a
/// cluster it is the leader of the group's `__consumer_offsets` partition,
/// often another node.
async fn coordinator_of(brokers: &str, group: &str) -> Result<String> {
    let conn = Connection::connect(brokers).await?;
    let find = FindCoordinatorRequest::default().with_key(st(group));
    // COORDINATOR_NOT_AVAILABLE while __consumer_offsets is being created or
    // its leader moves: ask again, as clients do, for up to 10 s.
    for _ in 0..100 {
        let r = conn.call(&find, 3).await?;
        if r.error_code == ResponseError::CoordinatorNotAvailable.code() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        check(r.error_code, "FindCoordinator")?;
        return Ok(format!("{}:{}", r.host.as_str(), r.port));
    }
    bail!("no coordinator for group {group} within 10 s")
}

async fn leave(members: &[Member], group: &str) -> Result<()> {
    let req = LeaveGroupRequest::default()
        .with_group_id(GroupId(st(group)))
        .with_members(
            members
                .iter()
                .map(|m| MemberIdentity::default().with_member_id(st(&m.id)))
                .collect(),
        );
    check(
        members[0].conn.call(&req, 3).await?.error_code,
        "LeaveGroup",
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub async fn run(a: GroupArgs) -> Result<()> {
    ensure_topic(&a.common).await?;
    let tag = std::process::id();
    let mut times = Vec::new();
    let mut last = None;
    for round in 0..a.rounds {
        let group = format!("keel-bench-{tag}-{round}");
        let (took, members) = stabilise(&a, &group).await?;
        eprintln!(
            "  group {}/{}: {} members stable in {:.1} ms",
            round + 1,
            a.rounds,
            a.members,
            ms(took)
        );
        times.push(took);
        if round + 1 == a.rounds {
            last = Some((group, members));
        } else {
            leave(&members, &group).await?;
        }
    }
    times.sort();
    let (group, members) = last.expect("at least one round");
    // OffsetCommit: each connection commits one partition's offset at a time.
    let per_conn = a.commits / u64::from(a.common.concurrency).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let coordinator = coordinator_of(&a.common.brokers, &group).await?;
    for w in 0..a.common.concurrency {
        let conn = Connection::connect(&coordinator).await?;
        let m = &members[w as usize % members.len()];
        let (group, id, generation) = (group.clone(), m.id.clone(), m.generation);
        let topic = a.common.topic.clone();
        let partition = w as i32 % a.common.partitions;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..per_conn {
                let req = OffsetCommitRequest::default()
                    .with_group_id(GroupId(st(&group)))
                    .with_generation_id_or_member_epoch(generation)
                    .with_member_id(st(&id))
                    .with_topics(vec![OffsetCommitRequestTopic::default()
                        .with_name(TopicName(st(&topic)))
                        .with_partitions(vec![OffsetCommitRequestPartition::default()
                            .with_partition_index(partition)
                            .with_committed_offset(i as i64)])]);
                let t = Instant::now();
                let r = conn.call(&req, 8).await?;
                lat.push(t.elapsed());
                check(r.topics[0].partitions[0].error_code, "OffsetCommit")?;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    leave(&members, &group).await?;
    let pick =
        |v: &[Duration], q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    println!("group of {} members, {} rounds", a.members, a.rounds);
    let mut rows = vec![
        vec!["RESULT".to_string(), "VALUE".to_string()],
        vec![
            "stabilise".into(),
            format!(
                "min {:.1} ms, median {:.1} ms, max {:.1} ms",
                ms(times[0]),
                ms(pick(&times, 0.5)),
                ms(times[times.len() - 1])
            ),
        ],
    ];
    if !lat.is_empty() {
        rows.push(vec![
            "OffsetCommit".into(),
            format!(
                "{} commits over {} connections in {:.2} s: {:.0} commits/s",
                lat.len(),
                a.common.concurrency,
                secs,
                lat.len() as f64 / secs
            ),
        ]);
        rows.push(vec![
            "commit latency".into(),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                ms(pick(&lat, 0.5)),
                ms(pick(&lat, 0.99))
            ),
        ]);
    }
    print!("{}", crate::cli::render(&rows));
    Ok(())
}
