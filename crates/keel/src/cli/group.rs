//! `keel group list|describe|reset-offsets|delete`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use serde_json::json;

use super::client::{check, st, topic_name, Cluster};
use super::consume::{parse_start, starting_offsets};
use super::topic::offsets;
use super::Common;

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// Members, assignments, committed offsets and lag of a group.
    Describe { group: String },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets {
        group: String,
        #[arg(long, short = 't')]
        topic: String,
        /// Only this partition.
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        /// earliest, latest, an offset, or @TIMESTAMP_MS.
        #[arg(long)]
        to: String,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete groups (their committed offsets go too).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

pub async fn run(cmd: GroupCommand, common: &Common) -> Result<()> {
    let mut c = common.connect().await?;
    match cmd {
        GroupCommand::List => list(&c, common).await,
        GroupCommand::Describe { group } => describe(&mut c, common, &group).await,
        GroupCommand::ResetOffsets {
            group,
            topic,
            partition,
            to,
            dry_run,
        } => reset(&mut c, common, &group, &topic, partition, &to, dry_run).await,
        GroupCommand::Delete { groups } => delete(&mut c, common, &groups).await,
    }
}

async fn list(c: &Cluster, common: &Common) -> Result<()> {
    let resp = c.call(&ListGroupsRequest::default(), 4).await?;
    check(resp.error_code, "list groups")?;
    let mut groups: Vec<(String, String, String)> = resp
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.group_state.to_string(),
                g.protocol_type.to_string(),
            )
        })
        .collect();
    groups.sort();
    let json = json!(groups
        .iter()
        .map(|(g, s, t)| json!({"group": g, "state": s, "protocol_type": t}))
        .collect::<Vec<_>>());
    let mut table = vec![vec!["GROUP".into(), "STATE".into(), "TYPE".into()]];
    table.extend(groups.into_iter().map(|(g, s, t)| vec![g, s, t]));
    common.print(&json, &table)
}

/// (topic, partition) → committed offset, for every partition the group has committed.
async fn committed(
    c: &mut Cluster,
    coordinator: i32,
    group: &str,
    topic: Option<(&str, Vec<i32>)>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(st(group)))
        .with_topics(topic.map(|(t, ps)| {
            vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(t))
                .with_partition_indexes(ps)]
        }));
    let resp = c.call_node(coordinator, &req, 7).await?;
    check(
        resp.error_code,
        &format!("fetch the offsets of group {group:?}"),
    )?;
    let mut out = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                &format!("offset of {}-{}", t.name.as_str(), p.partition_index),
            )?;
            out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
        }
    }
    Ok(out)
}

struct Described {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<serde_json::Value>,
    member_rows: Vec<Vec<String>>,
}

async fn describe_state(c: &mut Cluster, coordinator: i32, group: &str) -> Result<Described> {
    let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(st(group))]);
    let resp = c.call_node(coordinator, &req, 5).await?;
    let g = resp
        .groups
        .first()
        .ok_or_else(|| anyhow!("no description of group {group:?}"))?;
    check(g.error_code, &format!("describe group {group:?}"))?;
    let mut members = Vec::new();
    let mut member_rows = Vec::new();
    for m in &g.members {
        let mut assigned: Vec<(String, Vec<i32>)> = Vec::new();
        if g.protocol_type.as_str() == "consumer" && m.member_assignment.len() > 2 {
            let mut body = m.member_assignment.slice(2..);
            if let Ok(a) = ConsumerProtocolAssignment::decode(&mut body, 0) {
                assigned = a
                    .assigned_partitions
                    .iter()
                    .map(|t| (t.topic.to_string(), t.partitions.clone()))
                    .collect();
            }
        }
        let text = assigned
            .iter()
            .map(|(t, ps)| {
                format!(
                    "{t}:{}",
                    ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        members.push(json!({
            "member_id": m.member_id.as_str(),
            "group_instance_id": m.group_instance_id.as_ref().map(|i| i.to_string()),
            "client_id": m.client_id.as_str(),
            "host": m.client_host.as_str(),
            "assignment": assigned.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>(),
        }));
        member_rows.push(vec![
            m.member_id.to_string(),
            m.client_id.to_string(),
            m.client_host.to_string(),
            text,
        ]);
    }
    Ok(Described {
        state: g.group_state.to_string(),
        protocol_type: g.protocol_type.to_string(),
        protocol: g.protocol_data.to_string(),
        members,
        member_rows,
    })
}

async fn describe(c: &mut Cluster, common: &Common, group: &str) -> Result<()> {
    let coordinator = c.coordinator(group).await?;
    let d = describe_state(c, coordinator, group).await?;
    let offsets_by_tp = committed(c, coordinator, group, None).await?;
    if d.state == "Dead" && offsets_by_tp.is_empty() {
        bail!("group {group:?} does not exist (see `keel group list`)");
    }
    // High watermarks, asked of each partition's leader.
    let mut rows = Vec::new();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in offsets_by_tp.keys() {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    for (topic, parts) in by_topic {
        let Ok(t) = c.topic(&topic).await else {
            continue;
        };
        let leaders: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .filter(|p| parts.contains(&p.partition_index))
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        for (p, hw) in offsets(c, &topic, &leaders, -1).await? {
            let committed = offsets_by_tp[&(topic.clone(), p)];
            let lag = if committed >= 0 {
                (hw - committed).max(0)
            } else {
                hw
            };
            rows.push((topic.clone(), p, committed, hw, lag));
        }
    }
    rows.sort();
    let json = json!({
        "group": group,
        "state": d.state,
        "protocol_type": d.protocol_type,
        "protocol": d.protocol,
        "members": d.members,
        "offsets": rows.iter().map(|(t, p, c, hw, lag)| json!({
            "topic": t, "partition": p, "committed": c, "high_watermark": hw, "lag": lag,
        })).collect::<Vec<_>>(),
        "total_lag": rows.iter().map(|r| r.4).sum::<i64>(),
    });
    let mut table = vec![
        vec!["GROUP".into(), group.into()],
        vec!["STATE".into(), d.state.clone()],
        vec![
            "PROTOCOL".into(),
            format!("{} {}", d.protocol_type, d.protocol)
                .trim()
                .to_string(),
        ],
        vec!["MEMBERS".into(), d.member_rows.len().to_string()],
        vec![
            "TOTAL LAG".into(),
            rows.iter().map(|r| r.4).sum::<i64>().to_string(),
        ],
    ];
    if !d.member_rows.is_empty() {
        table.push(vec![String::new()]);
        table.push(vec![
            "MEMBER".into(),
            "CLIENT-ID".into(),
            "HOST".into(),
            "ASSIGNMENT".into(),
        ]);
        table.extend(d.member_rows.iter().cloned());
    }
    table.push(vec![String::new()]);
    table.push(vec![
        "TOPIC".into(),
        "PARTITION".into(),
        "COMMITTED".into(),
        "HIGH-WATERMARK".into(),
        "LAG".into(),
    ]);
    for (t, p, c, hw, lag) in &rows {
        table.push(vec![
            t.clone(),
            p.to_string(),
            c.to_string(),
            hw.to_string(),
            lag.to_string(),
        ]);
    }
    common.print(&json, &table)
}

#[allow(clippy::too_many_arguments)]
async fn reset(
    c: &mut Cluster,
    common: &Common,
    group: &str,
    topic: &str,
    partition: Option<i32>,
    to: &str,
    dry_run: bool,
) -> Result<()> {
    let start =
        parse_start(to).map_err(|e| anyhow!("{}", e.to_string().replace("--from", "--to")))?;
    let t = c.topic(topic).await?;
    let mut leaders: Vec<(i32, i32)> = t
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    leaders.sort();
    if let Some(p) = partition {
        leaders.retain(|(i, _)| *i == p);
        if leaders.is_empty() {
            bail!(
                "partition {p} does not exist: topic {topic:?} has {} partitions",
                t.partitions.len()
            );
        }
    }
    let coordinator = c.coordinator(group).await?;
    let d = describe_state(c, coordinator, group).await?;
    if !matches!(d.state.as_str(), "Empty" | "Dead") {
        bail!(
            "group {group:?} is {} with {} members: stop them before resetting its offsets",
            d.state,
            d.member_rows.len()
        );
    }
    let parts: Vec<i32> = leaders.iter().map(|(p, _)| *p).collect();
    let old = committed(c, coordinator, group, Some((topic, parts))).await?;
    let new = starting_offsets(c, topic, &leaders, start).await?;
    if !dry_run {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(st(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(st(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    new.iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                )]);
        let resp = c.call_node(coordinator, &req, 8).await?;
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code == ResponseError::UnknownMemberId.code() {
                    bail!(
                        "group {group:?} has members now: stop them before resetting its offsets"
                    );
                }
                check(
                    p.error_code,
                    &format!("commit {topic}-{}", p.partition_index),
                )?;
            }
        }
    }
    let rows: Vec<(i32, i64, i64)> = new
        .iter()
        .map(|(p, n)| {
            (
                *p,
                old.get(&(topic.to_string(), *p)).copied().unwrap_or(-1),
                *n,
            )
        })
        .collect();
    let json = json!({
        "group": group, "topic": topic, "dry_run": dry_run,
        "partitions": rows.iter().map(|(p, o, n)| json!({"partition": p, "old": o, "new": n})).collect::<Vec<_>>(),
    });
    let mut table = vec![vec![
        "TOPIC".into(),
        "PARTITION".into(),
        "OLD".into(),
        "NEW".into(),
    ]];
    for (p, o, n) in &rows {
        table.push(vec![
            topic.into(),
            p.to_string(),
            o.to_string(),
            n.to_string(),
        ]);
    }
    if dry_run {
        table.push(vec![String::new()]);
        table.push(vec!["(dry run: nothing was changed)".into()]);
    }
    common.print(&json, &table)
}

async fn delete(c: &mut Cluster, common: &Common, groups: &[String]) -> Result<()> {
    let mut table = vec![vec!["GROUP".into(), "STATUS".into()]];
    let mut json = Vec::new();
    let mut failed = None;
    for g in groups {
        let coordinator = c.coordinator(g).await?;
        let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(st(g))]);
        let resp = c.call_node(coordinator, &req, 2).await?;
        let code = resp.results.first().map_or(0, |r| r.error_code);
        let status = if code == ResponseError::GroupIdNotFound.code() {
            format!("group {g:?} does not exist (see `keel group list`)")
        } else if code == ResponseError::NonEmptyGroup.code() {
            format!("group {g:?} still has members: stop them first")
        } else if let Err(e) = check(code, &format!("delete group {g:?}")) {
            e.to_string()
        } else {
            "deleted".to_string()
        };
        if status != "deleted" {
            failed.get_or_insert(status.clone());
        }
        json.push(json!({"group": g, "status": status}));
        table.push(vec![g.clone(), status]);
    }
    common.print(&json!(json), &table)?;
    match failed {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}
