//! The operator CLI: `keel topic|produce|consume|group|cluster`, the daily verbs
//! of rpk and kcat. Tables by default, `-o json` for scripts; every failure is
//! one line on stderr and a non-zero exit.

pub mod client;
pub mod consume;
pub mod group;
pub mod produce;
pub mod table;
pub mod topic;

use std::io::Write;

use anyhow::Result;
use kafka_protocol::messages::DescribeClusterRequest;
use serde_json::Value;

pub use consume::ConsumeArgs;
pub use group::GroupCommand;
pub use produce::ProduceArgs;
pub use table::TableCommand;
pub use topic::TopicCommand;

use client::Cluster;

/// Where to connect, and how to print.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...].
    #[arg(
        long,
        short = 'b',
        env = "KEEL_BROKERS",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub brokers: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// A Keel node's admin listener, HOST:PORT, read for what no Kafka API
    /// carries: `keel table` reads the ring, node states and schema from its
    /// /cluster, `topic describe` what unclean elections lost.
    #[arg(
        long,
        env = "KEEL_ADMIN",
        default_value = "127.0.0.1:9644",
        global = true
    )]
    pub admin: String,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Brokers, the controller, the cluster id and versions.
    Info,
}

impl Common {
    pub async fn connect(&self) -> Result<Cluster> {
        Cluster::connect(&self.brokers).await
    }

    /// Prints `json` as JSON, or `table` (rows of cells, the first the header).
    pub fn print(&self, json: &Value, table: &[Vec<String>]) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match self.output {
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(json)?)?,
            Format::Table => out.write_all(render(table).as_bytes())?,
        }
        Ok(())
    }
}

/// Aligns cells into columns separated by two spaces; the last column is not
/// padded. A row with one empty cell separates sections, each aligned alone.
pub fn render(rows: &[Vec<String>]) -> String {
    rows.split(|r| r.len() == 1 && r[0].is_empty())
        .map(render_section)
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_section(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub async fn cluster(cmd: ClusterCommand, common: &Common) -> Result<()> {
    match cmd {
        ClusterCommand::Info => cluster_info(common).await,
    }
}

async fn cluster_info(common: &Common) -> Result<()> {
    let mut c = common.connect().await?;
    let md = c.metadata(None).await?;
    let controller = md.controller_id.0;
    let cluster_id = md
        .cluster_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    // DescribeCluster v2 (KIP-1073) lists fenced brokers too; Metadata and
    // older brokers list only the live ones.
    let described = c
        .call(
            &DescribeClusterRequest::default().with_include_fenced_brokers(true),
            2,
        )
        .await
        .ok()
        .filter(|r| r.error_code == 0);
    let brokers: Vec<(i32, String, i32, bool)> = match &described {
        Some(r) => r
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.host.to_string(), b.port, b.is_fenced))
            .collect(),
        None => md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port, false))
            .collect(),
    };
    let fenced: Vec<String> = brokers
        .iter()
        .filter(|b| b.3)
        .map(|b| b.0.to_string())
        .collect();
    // Partitions without a leader, and with fewer in-sync replicas than
    // replicas, over every topic (Kafka's OfflinePartitionsCount and
    // UnderReplicatedPartitions, as kafka-topics --describe
    // --under-replicated-partitions / --unavailable-partitions find them).
    let mut offline = Vec::new();
    let mut under = Vec::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        for p in &t.partitions {
            if p.leader_id.0 < 0 {
                offline.push(format!("{name}-{}", p.partition_index));
            } else if p.isr_nodes.len() < p.replica_nodes.len() {
                under.push(format!("{name}-{}", p.partition_index));
            }
        }
    }
    let json = serde_json::json!({
        "cluster_id": cluster_id,
        "controller": controller,
        "fenced_brokers": brokers.iter().filter(|b| b.3).map(|b| b.0).collect::<Vec<_>>(),
        "offline_partitions": offline,
        "under_replicated_partitions": under,
        "cli_version": env!("CARGO_PKG_VERSION"),
        "bootstrap": c.bootstrap(),
        "brokers": brokers.iter().map(|(id, host, port, fenced)| serde_json::json!({
            "id": id, "host": host, "port": port, "controller": *id == controller,
            "fenced": fenced,
        })).collect::<Vec<_>>(),
    });
    let mut table = vec![
        vec!["CLUSTER".into(), cluster_id.clone()],
        vec!["CONTROLLER".into(), controller.to_string()],
        vec!["CLI VERSION".into(), env!("CARGO_PKG_VERSION").into()],
        vec!["FENCED".into(), list_or_none(&fenced)],
        vec!["OFFLINE".into(), list_or_none(&offline)],
        vec!["UNDER-REPLICATED".into(), list_or_none(&under)],
        vec![String::new()],
        vec![
            "BROKER".into(),
            "HOST".into(),
            "PORT".into(),
            "CONTROLLER".into(),
            "FENCED".into(),
        ],
    ];
    for (id, host, port, fenced) in &brokers {
        table.push(vec![
            id.to_string(),
            host.clone(),
            port.to_string(),
            if *id == controller { "yes" } else { "" }.into(),
            if *fenced { "yes" } else { "" }.into(),
        ]);
    }
    common.print(&json, &table)
}

/// A comma-separated list, or "none".
pub(crate) fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_and_do_not_pad_the_last_column() {
        let t = super::render(&[
            vec!["NAME".into(), "PARTITIONS".into()],
            vec!["a-long-name".into(), "3".into()],
        ]);
        assert_eq!(t, "NAME         PARTITIONS\na-long-name  3\n");
        let t = super::render(&[
            vec!["A".into(), "1".into()],
            vec![String::new()],
            vec!["LONGER".into(), "2".into()],
        ]);
        assert_eq!(t, "A  1\n\nLONGER  2\n");
    }
}
