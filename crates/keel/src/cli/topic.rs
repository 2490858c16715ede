//! `keel topic create|list|describe|delete|alter-config`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest,
    ListPartitionReassignmentsRequest,
};
use kafka_protocol::ResponseError;
use serde_json::json;

use super::client::{admin_json, check, st, topic_name, Cluster};
use super::Common;

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (the broker's default when omitted).
        #[arg(long, short = 'p', default_value_t = -1)]
        partitions: i32,
        /// Replication factor (the broker's default when omitted).
        #[arg(long, short = 'r', default_value_t = -1)]
        replicas: i16,
        /// A topic config, NAME=VALUE; repeat for more.
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
    },
    /// Partitions, leaders, offsets and configs of a topic.
    Describe { name: String },
    /// Delete topics.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Move a partition to other brokers, or cancel the move under way
    /// (Kafka's partition reassignment, KIP-455): the new replicas copy it,
    /// and the switch happens once they are in sync.
    Move {
        name: String,
        partition: i32,
        /// The replicas to end with, preferred leader first: 2,3,4.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        to: Vec<i32>,
        /// Cancel the move under way, back to the replicas before it.
        #[arg(long, conflicts_with = "to")]
        cancel: bool,
    },
    /// Set or remove topic configs.
    AlterConfig {
        name: String,
        /// NAME=VALUE to set; repeat for more.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// NAME to reset to its default; repeat for more.
        #[arg(long = "delete", value_name = "NAME")]
        delete: Vec<String>,
    },
}

fn pair(s: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| anyhow!("{s:?}: expected NAME=VALUE"))
}

pub async fn run(cmd: TopicCommand, common: &Common) -> Result<()> {
    let mut c = common.connect().await?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            configs,
        } => create(&c, common, &name, partitions, replicas, &configs).await,
        TopicCommand::List { internal } => list(&mut c, common, internal).await,
        TopicCommand::Describe { name } => describe(&mut c, common, &name).await,
        TopicCommand::Delete { names } => delete(&c, common, &names).await,
        TopicCommand::Move {
            name,
            partition,
            to,
            cancel,
        } => {
            let target = (!cancel).then_some(to);
            move_partition(&c, common, &name, partition, target).await
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            alter(&mut c, common, &name, &set, &delete).await
        }
    }
}

async fn create(
    c: &Cluster,
    common: &Common,
    name: &str,
    partitions: i32,
    replicas: i16,
    configs: &[String],
) -> Result<()> {
    let configs = configs
        .iter()
        .map(|s| {
            pair(s).map(|(k, v)| {
                CreatableTopicConfig::default()
                    .with_name(st(&k))
                    .with_value(Some(st(&v)))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replicas)
            .with_configs(configs)]);
    let resp = c.call(&req, 7).await?;
    let r = resp
        .topics
        .first()
        .ok_or_else(|| anyhow!("the broker did not answer for topic {name:?}"))?;
    if r.error_code != 0 {
        let why = r.error_message.as_ref().map(|m| m.to_string());
        let code = ResponseError::try_from_code(r.error_code)
            .map_or_else(|| format!("error code {}", r.error_code), |e| e.to_string());
        bail!("create topic {name:?}: {}", why.unwrap_or(code));
    }
    let json = json!({"name": name, "created": true, "partitions": r.num_partitions});
    common.print(
        &json,
        &[
            vec!["TOPIC".into(), "STATUS".into()],
            vec![name.into(), "created".into()],
        ],
    )
}

async fn list(c: &mut Cluster, common: &Common, internal: bool) -> Result<()> {
    let md = c.metadata(None).await?;
    let mut topics: Vec<(String, usize, bool)> = md
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .map(|t| {
            (
                t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                t.partitions.len(),
                t.is_internal,
            )
        })
        .collect();
    topics.sort();
    let json = json!(topics
        .iter()
        .map(|(n, p, i)| json!({"name": n, "partitions": p, "internal": i}))
        .collect::<Vec<_>>());
    let mut table = vec![vec!["NAME".into(), "PARTITIONS".into()]];
    table.extend(
        topics
            .iter()
            .map(|(n, p, _)| vec![n.clone(), p.to_string()]),
    );
    common.print(&json, &table)
}

/// (log start, high watermark) of each partition, asked of each leader.
pub async fn offsets(
    c: &mut Cluster,
    topic: &str,
    leaders: &[(i32, i32)],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>> {
    let mut out = Vec::new();
    for &(partition, leader) in leaders {
        let req = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        // A retriable error (the leader has not applied a topic just created,
        // or leadership moved) is asked again of the partition's leader as
        // the metadata names it then, for a bounded time: what Kafka's
        // AdminClient does for listOffsets.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let mut leader = leader;
        let offset = loop {
            if leader < 0 && std::time::Instant::now() < deadline {
                // No leader yet (LEADER_NOT_AVAILABLE in the metadata).
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                leader = leader_of(c, topic, partition).await?;
                continue;
            }
            let resp = c.call_node(leader, &req, 6).await?;
            let p = resp
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| anyhow!("no offsets for {topic}-{partition}"))?;
            let retriable =
                ResponseError::try_from_code(p.error_code).is_some_and(|e| e.is_retriable());
            if !retriable || std::time::Instant::now() >= deadline {
                check(
                    p.error_code,
                    &format!("list offsets of {topic}-{partition}"),
                )?;
                break p.offset;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            leader = leader_of(c, topic, partition).await?;
        };
        out.push((partition, offset));
    }
    Ok(out)
}

/// The leader the metadata names for `topic`-`partition` now (-1: none).
async fn leader_of(c: &mut Cluster, topic: &str, partition: i32) -> Result<i32> {
    let t = c.topic(topic).await?;
    Ok(t.partitions
        .iter()
        .find(|q| q.partition_index == partition)
        .map_or(-1, |q| q.leader_id.0))
}

async fn describe(c: &mut Cluster, common: &Common, name: &str) -> Result<()> {
    let t = c.topic(name).await?;
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let leaders: Vec<(i32, i32)> = parts
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let starts = offsets(c, name, &leaders, -2).await?;
    let ends = offsets(c, name, &leaders, -1).await?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(st(name))
            .with_configuration_keys(None)]);
    let resp = c.call(&req, 4).await.context("describe configs")?;
    let r = resp
        .results
        .first()
        .ok_or_else(|| anyhow!("no configs for topic {name:?}"))?;
    check(r.error_code, &format!("describe configs of {name:?}"))?;
    let mut configs: Vec<(String, String, bool)> = r
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                // config_source 5 is DEFAULT_CONFIG (KIP-226).
                e.config_source == 5,
            )
        })
        .collect();
    configs.sort();
    let moving = reassignments(c, name, &parts).await;
    let lost = losses(&common.admin, name).await;
    let rows: Vec<serde_json::Value> = parts
        .iter()
        .zip(starts.iter().zip(&ends))
        .map(|(p, ((_, start), (_, end)))| {
            let (adding, removing) = moving.get(&p.partition_index).cloned().unwrap_or_default();
            // null when unknown (no admin listener answered).
            let lost = lost
                .as_ref()
                .ok()
                .map(|l| l.get(&p.partition_index).cloned().unwrap_or_default());
            json!({
                "adding": adding,
                "removing": removing,
                "lost_to_unclean_election": lost,
                "partition": p.partition_index,
                "leader": p.leader_id.0,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replica_nodes.iter().map(|r| r.0).collect::<Vec<_>>(),
                "isr": p.isr_nodes.iter().map(|r| r.0).collect::<Vec<_>>(),
                "offline": p.offline_replicas.iter().map(|r| r.0).collect::<Vec<_>>(),
                "log_start_offset": start,
                "high_watermark": end,
            })
        })
        .collect();
    let json = json!({
        "name": name,
        "id": t.topic_id.to_string(),
        "internal": t.is_internal,
        "partitions": rows,
        "configs": configs.iter().map(|(k, v, d)| json!({"name": k, "value": v, "default": d})).collect::<Vec<_>>(),
    });
    let ids = |v: &[kafka_protocol::messages::BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut table = vec![
        vec!["NAME".into(), name.into()],
        vec!["PARTITIONS".into(), parts.len().to_string()],
        vec![String::new()],
        vec![
            "PARTITION".into(),
            "LEADER".into(),
            "EPOCH".into(),
            "REPLICAS".into(),
            "ISR".into(),
            "OFFLINE".into(),
            "ADDING".into(),
            "REMOVING".into(),
            "LOG-START".into(),
            "HIGH-WATERMARK".into(),
            "LOST".into(),
        ],
    ];
    let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for (p, ((_, start), (_, end))) in parts.iter().zip(starts.iter().zip(&ends)) {
        let (adding, removing) = moving.get(&p.partition_index).cloned().unwrap_or_default();
        let lost = match &lost {
            Ok(l) => l
                .get(&p.partition_index)
                .map(|ls| lost_summary(ls))
                .unwrap_or_else(|| "0".into()),
            Err(_) => "?".into(),
        };
        table.push(vec![
            p.partition_index.to_string(),
            p.leader_id.0.to_string(),
            p.leader_epoch.to_string(),
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
            ids(&p.offline_replicas),
            list(&adding),
            list(&removing),
            start.to_string(),
            end.to_string(),
            lost,
        ]);
    }
    if let Err(e) = &lost {
        eprintln!("LOST is unknown: {e:#} (give a node's admin address with --admin)");
    }
    table.push(vec![String::new()]);
    table.push(vec!["CONFIG".into(), "VALUE".into(), "SOURCE".into()]);
    for (k, v, d) in &configs {
        table.push(vec![
            k.clone(),
            v.clone(),
            if *d { "default" } else { "topic" }.into(),
        ]);
    }
    common.print(&json, &table)
}

/// The reassignments under way of these partitions: {partition: (adding, removing)}.
/// Empty when the broker does not answer ListPartitionReassignments.
async fn reassignments(
    c: &Cluster,
    name: &str,
    parts: &[&kafka_protocol::messages::metadata_response::MetadataResponsePartition],
) -> BTreeMap<i32, (Vec<i32>, Vec<i32>)> {
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
            .with_name(topic_name(name))
            .with_partition_indexes(
                parts.iter().map(|p| p.partition_index).collect(),
            )]));
    let Ok(resp) = c.call(&req, 0).await else {
        return BTreeMap::new();
    };
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    resp.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            (
                p.partition_index,
                (ids(&p.adding_replicas), ids(&p.removing_replicas)),
            )
        })
        .collect()
}

/// What unclean elections lost, per partition of `name`, from a node's
/// admin /cluster page: [{from, to, records, node, leader_epoch}].
async fn losses(admin: &str, name: &str) -> Result<BTreeMap<i32, Vec<serde_json::Value>>> {
    let view = admin_json(admin, "/cluster").await?;
    let mut out = BTreeMap::new();
    for p in view["topics"][name].as_array().into_iter().flatten() {
        let lost = p["lost_to_unclean_election"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let (Some(i), false) = (p["partition"].as_i64(), lost.is_empty()) {
            out.insert(i as i32, lost);
        }
    }
    Ok(out)
}

/// "N" records in all, with each lost range: "120 (5..125 on 2)".
fn lost_summary(lost: &[serde_json::Value]) -> String {
    let total: i64 = lost.iter().filter_map(|l| l["records"].as_i64()).sum();
    let ranges: Vec<String> = lost
        .iter()
        .map(|l| format!("{}..{} on {}", l["from"], l["to"], l["node"]))
        .collect();
    format!("{total} ({})", ranges.join(", "))
}

/// `keel topic move`: AlterPartitionReassignments for one partition.
async fn move_partition(
    c: &Cluster,
    common: &Common,
    name: &str,
    partition: i32,
    target: Option<Vec<i32>>,
) -> Result<()> {
    let cancel = target.is_none();
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_allow_replication_factor_change(true)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(topic_name(name))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    target.map(|t| t.into_iter().map(BrokerId).collect()),
                )])]);
    let resp = c.call(&req, 1).await?;
    check(resp.error_code, "reassign")?;
    let r = resp
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| anyhow!("the broker did not answer for {name}-{partition}"))?;
    if r.error_code != 0 {
        let msg = r
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        check(r.error_code, &format!("move {name}-{partition}")).with_context(|| msg.clone())?;
    }
    let status = if cancel { "cancelled" } else { "moving" };
    common.print(
        &json!({"topic": name, "partition": partition, "status": status}),
        &[
            vec!["TOPIC".into(), "PARTITION".into(), "STATUS".into()],
            vec![name.into(), partition.to_string(), status.into()],
        ],
    )
}

async fn delete(c: &Cluster, common: &Common, names: &[String]) -> Result<()> {
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(names.iter().map(|n| topic_name(n)).collect());
    let resp = c.call(&req, 5).await?;
    let mut failed = None;
    let mut table = vec![vec!["TOPIC".into(), "STATUS".into()]];
    let mut json = Vec::new();
    for r in &resp.responses {
        let name = r.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        let status = if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
            failed.get_or_insert(format!(
                "topic {name:?} does not exist (see `keel topic list`)"
            ));
            "does not exist".to_string()
        } else if let Err(e) = check(r.error_code, &format!("delete topic {name:?}")) {
            let msg = r
                .error_message
                .as_ref()
                .map_or(e.to_string(), |m| format!("delete topic {name:?}: {m}"));
            failed.get_or_insert(msg.clone());
            msg
        } else {
            "deleted".to_string()
        };
        json.push(json!({"name": name, "status": status}));
        table.push(vec![name, status]);
    }
    common.print(&json!(json), &table)?;
    match failed {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}

async fn alter(
    c: &mut Cluster,
    common: &Common,
    name: &str,
    set: &[String],
    delete: &[String],
) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --set NAME=VALUE or --delete NAME");
    }
    c.topic(name).await?;
    let mut configs = Vec::new();
    for s in set {
        let (k, v) = pair(s)?;
        configs.push(
            AlterableConfig::default()
                .with_name(st(&k))
                .with_config_operation(0)
                .with_value(Some(st(&v))),
        );
    }
    for k in delete {
        configs.push(
            AlterableConfig::default()
                .with_name(st(k))
                .with_config_operation(1)
                .with_value(None),
        );
    }
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(st(name))
            .with_configs(configs),
    ]);
    let resp = c.call(&req, 1).await?;
    let r = resp
        .responses
        .first()
        .ok_or_else(|| anyhow!("no answer for topic {name:?}"))?;
    if r.error_code != 0 {
        let msg = r.error_message.as_ref().map(|m| m.to_string());
        check(r.error_code, &format!("alter configs of {name:?}")).map_err(|e| match msg {
            Some(m) => anyhow!("alter configs of {name:?}: {m}"),
            None => e,
        })?;
    }
    common.print(
        &json!({"name": name, "set": set, "deleted": delete}),
        &[
            vec!["TOPIC".into(), "STATUS".into()],
            vec![name.into(), "updated".into()],
        ],
    )
}
