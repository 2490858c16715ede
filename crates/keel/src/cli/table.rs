//! `keel table ring|status|locate|repair|decommission`: the tables face's ring as the
//! quorum holds it, shown as `nodetool ring`, `nodetool status` and
//! `nodetool getendpoints` show Cassandra's, and anti-entropy repair as
//! `nodetool repair` runs it. Read from a node's admin `/cluster` (its
//! applied metadata image); replicas are placed by the same code the
//! coordinator runs (`keel_meta::ring`), and repair talks to the replicas
//! over the internode protocol (`keel_cql::repair`).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use keel_meta::ring::{Place, Ring, Strategy};
use keel_table::types::{encode_literal, CqlType, Literal};
use serde_json::{json, Value};

use super::client::admin_json;
use super::Common;

#[derive(clap::Subcommand)]
pub enum TableCommand {
    /// Every token on the ring with its node, in ring order (`nodetool ring`).
    Ring,
    /// Each node: up or down, address, tokens, ownership (`nodetool status`);
    /// with a keyspace, its effective ownership under that keyspace's
    /// replication.
    Status { keyspace: Option<String> },
    /// The replicas of a partition key (`nodetool getendpoints`): KEYSPACE
    /// [TABLE] KEY, the table optional when the keyspace has one; a key of
    /// several columns is given as its values separated by ':'.
    Locate {
        keyspace: String,
        #[arg(num_args = 1..=2, value_names = ["TABLE", "KEY"])]
        rest: Vec<String>,
    },
    /// Anti-entropy repair (`nodetool repair`, full): the replicas of every
    /// token range compare Merkle trees and are sent the cells they lack.
    /// Every keyspace, or one, or one table. Reports how many ranges
    /// differed and how much was streamed; exits non-zero if a range could
    /// not be repaired (a replica down).
    Repair {
        keyspace: Option<String>,
        table: Option<String>,
    },
    /// The node --admin names leaves the ring (`nodetool decommission`):
    /// it streams each of its ranges to the replica that gains it, then its
    /// tokens come off the ring. Refused when the nodes left could not hold
    /// a keyspace's replication factor; exits non-zero if a stream failed
    /// (the node stays leaving; run it again to resume).
    Decommission,
}

/// One node as `/cluster` lists it.
struct NodeView {
    id: i32,
    address: String,
    datacenter: String,
    rack: String,
    up: bool,
    /// JOINING, NORMAL or LEAVING, as the node gossips it.
    state: String,
    /// The suspicion the node asked has of it (None: itself, or not heard).
    phi: Option<f64>,
    tokens: Vec<i64>,
}

fn nodes(view: &Value) -> Vec<NodeView> {
    view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let tokens: Vec<i64> = n["tokens"]
                .as_array()?
                .iter()
                .filter_map(Value::as_i64)
                .collect();
            if tokens.is_empty() {
                return None;
            }
            let rack = n["rack"].as_str().unwrap_or_default();
            let gossip = &n["gossip"];
            // Down if the quorum fenced it or the asked node's failure
            // detector convicted it.
            let up =
                !n["fenced"].as_bool().unwrap_or(false) && gossip["up"].as_bool().unwrap_or(true);
            Some(NodeView {
                id: n["id"].as_i64()? as i32,
                address: format!(
                    "{}:{}",
                    n["cql_host"].as_str().unwrap_or_default(),
                    n["cql_port"].as_i64().unwrap_or_default()
                ),
                datacenter: n["datacenter"].as_str().unwrap_or("datacenter1").into(),
                rack: if rack.is_empty() { "rack1" } else { rack }.into(),
                up,
                // Leaving the ring is the metadata's word; the rest gossip's.
                state: if n["leaving"].as_bool().unwrap_or(false) {
                    "LEAVING"
                } else {
                    gossip["state"].as_str().unwrap_or("NORMAL")
                }
                .into(),
                phi: gossip["phi"].as_f64(),
                tokens,
            })
        })
        .collect()
}

fn ring_of(nodes: &[NodeView]) -> Ring {
    Ring::new(nodes.iter().map(|n| {
        (
            n.id,
            Place {
                datacenter: n.datacenter.clone(),
                rack: n.rack.clone(),
            },
            n.tokens.clone(),
        )
    }))
}

fn strategy(view: &Value, keyspace: &str) -> Result<Strategy> {
    let ks = view["keyspaces"]
        .get(keyspace)
        .ok_or_else(|| anyhow!("keyspace {keyspace} does not exist"))?;
    let replication: BTreeMap<String, String> = ks["replication"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    Strategy::from_replication(&replication).map_err(|e| anyhow!(e))
}

pub async fn run(cmd: TableCommand, common: &Common) -> Result<()> {
    let view = admin_json(&common.admin, "/cluster")
        .await
        .context("reading the ring from a node's admin listener (--admin or KEEL_ADMIN)")?;
    let nodes = nodes(&view);
    if nodes.is_empty() {
        bail!("no node serving CQL has joined the ring yet");
    }
    let by_id: BTreeMap<i32, &NodeView> = nodes.iter().map(|n| (n.id, n)).collect();
    let ring = ring_of(&nodes);
    match cmd {
        TableCommand::Decommission => {
            let r = super::client::admin_request(
                &common.admin,
                hyper::Method::POST,
                "/table/decommission",
                std::time::Duration::from_secs(3600),
            )
            .await
            .context("decommissioning the node --admin names")?;
            let to = r["bytes_streamed_to"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut table = vec![vec![
                "NODE".to_string(),
                "LEFT".into(),
                "RANGES".into(),
                "CELLS STREAMED".into(),
                "BYTES STREAMED".into(),
                "TO".into(),
            ]];
            table.push(vec![
                r["node"].to_string(),
                r["left"].to_string(),
                r["ranges"].to_string(),
                r["cells_streamed"].to_string(),
                r["bytes_streamed"].to_string(),
                to.iter()
                    .map(|(n, b)| format!("{n}:{b}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
            common.print(&r, &table)?;
            let failures = r["failures"].as_array().cloned().unwrap_or_default();
            if !failures.is_empty() {
                for f in failures.iter().take(5) {
                    eprintln!("stream failed: {}", f.as_str().unwrap_or_default());
                }
                bail!(
                    "{} range(s) not streamed: the node is still leaving; run this again to resume",
                    failures.len()
                );
            }
            Ok(())
        }
        TableCommand::Ring => {
            let mut table = vec![vec![
                "ADDRESS".to_string(),
                "DC".into(),
                "RACK".into(),
                "STATUS".into(),
                "NODE".into(),
                "TOKEN".into(),
            ]];
            let mut rows = Vec::new();
            for (t, id) in ring.tokens() {
                let n = by_id[id];
                let status = if n.up { "Up" } else { "Down" };
                table.push(vec![
                    n.address.clone(),
                    n.datacenter.clone(),
                    n.rack.clone(),
                    status.into(),
                    id.to_string(),
                    t.to_string(),
                ]);
                rows.push(
                    json!({"token": t.to_string(), "node": id, "address": n.address,
                                 "datacenter": n.datacenter, "rack": n.rack, "status": status}),
                );
            }
            common.print(&Value::Array(rows), &table)
        }
        TableCommand::Status { keyspace } => {
            let s = match &keyspace {
                Some(k) => strategy(&view, k)?,
                None => Strategy::Simple { rf: 1 },
            };
            let own = ring.ownership(&s);
            let mut table = vec![vec![
                "STATE".to_string(),
                "NODE".into(),
                "ADDRESS".into(),
                "TOKENS".into(),
                if keyspace.is_some() {
                    "OWNS (EFFECTIVE)".into()
                } else {
                    "OWNS".into()
                },
                "DC".into(),
                "RACK".into(),
                "PHI".into(),
            ]];
            let mut rows = Vec::new();
            for n in &nodes {
                // nodetool's two letters: Up/Down, then Normal/Joining/Leaving.
                let state = format!(
                    "{}{}",
                    if n.up { "U" } else { "D" },
                    n.state.chars().next().unwrap_or('N')
                );
                let share = own.get(&n.id).copied().unwrap_or(0.0);
                table.push(vec![
                    state.clone(),
                    n.id.to_string(),
                    n.address.clone(),
                    n.tokens.len().to_string(),
                    format!("{:.1}%", share * 100.0),
                    n.datacenter.clone(),
                    n.rack.clone(),
                    // The asked node's suspicion of this one (gossip's
                    // phi-accrual detector); "-" for itself or one not heard.
                    n.phi.map_or_else(|| "-".into(), |p| format!("{p:.1}")),
                ]);
                rows.push(
                    json!({"node": n.id, "state": state, "up": n.up, "status": n.state,
                                 "phi": n.phi, "address": n.address,
                                 "tokens": n.tokens.len(), "owns": share,
                                 "datacenter": n.datacenter, "rack": n.rack}),
                );
            }
            common.print(&Value::Array(rows), &table)
        }
        TableCommand::Locate { keyspace, rest } => {
            let s = strategy(&view, &keyspace)?;
            let tables = view["keyspaces"][&keyspace]["tables"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let (table, key) = match rest.as_slice() {
                [key] if tables.len() == 1 => (tables.keys().next().cloned().unwrap_or_default(), key),
                [_] => bail!(
                    "keyspace {keyspace} has {} tables: name one (keel table locate {keyspace} TABLE KEY)",
                    tables.len()
                ),
                [t, key] => (t.clone(), key),
                _ => bail!("give KEYSPACE [TABLE] KEY"),
            };
            let pk = tables
                .get(&table)
                .ok_or_else(|| anyhow!("table {keyspace}.{table} does not exist"))?
                ["partition_key"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let parts: Vec<&str> = if pk.len() == 1 {
                vec![key.as_str()]
            } else {
                key.split(':').collect()
            };
            if parts.len() != pk.len() {
                bail!(
                    "{keyspace}.{table}'s partition key has {} columns; give their values separated by ':'",
                    pk.len()
                );
            }
            let mut values = Vec::new();
            for (col, text) in pk.iter().zip(parts) {
                let ty = col["type"].as_str().unwrap_or_default();
                let ty = CqlType::parse(ty).map_err(|e| anyhow!(e))?;
                values.push(key_value(&ty, text).with_context(|| {
                    format!(
                        "{text:?} is not a {}",
                        col["type"].as_str().unwrap_or_default()
                    )
                })?);
            }
            let token = keel_cql::table::token(&keel_cql::table::partition_key_bytes(&values));
            let replicas = ring.replicas(token, &s);
            let mut out = vec![vec!["NODE".to_string(), "ADDRESS".into(), "STATE".into()]];
            let mut rows = Vec::new();
            for id in &replicas {
                let n = by_id[id];
                let state = if n.up { "UP" } else { "DOWN" };
                out.push(vec![id.to_string(), n.address.clone(), state.into()]);
                rows.push(json!({"node": id, "address": n.address, "up": n.up}));
            }
            common.print(
                &json!({"keyspace": keyspace, "table": table, "token": token.to_string(), "replicas": rows}),
                &out,
            )
        }
        TableCommand::Repair { keyspace, table } => {
            let targets = repair_targets(&view, keyspace.as_deref(), table.as_deref())?;
            let addrs: BTreeMap<i32, String> =
                nodes.iter().map(|n| (n.id, n.address.clone())).collect();
            let peers = std::sync::Arc::new(keel_cql::internode::Peers::default());
            let started = std::time::Instant::now();
            let r = keel_cql::repair::repair(&peers, &addrs, &ring, &targets).await;
            let streamed: serde_json::Map<String, Value> = r
                .streamed_to
                .iter()
                .map(|(n, b)| (n.to_string(), json!(b)))
                .collect();
            let out = json!({
                "tables": targets.len(), "ranges": r.ranges, "ranges_differed": r.ranges_differed,
                "leaves_differed": r.leaves_differed, "cells_streamed": r.cells_streamed,
                "bytes_streamed": r.bytes_streamed, "bytes_streamed_to": streamed,
                "ranges_still_differing": r.ranges_still_differing, "failures": r.failures,
                "seconds": started.elapsed().as_secs_f64(),
            });
            let table = vec![
                vec![
                    "TABLES".to_string(),
                    "RANGES".into(),
                    "DIFFERED".into(),
                    "CELLS STREAMED".into(),
                    "BYTES STREAMED".into(),
                    "STILL DIFFERING".into(),
                    "FAILED".into(),
                ],
                vec![
                    targets.len().to_string(),
                    r.ranges.to_string(),
                    r.ranges_differed.to_string(),
                    r.cells_streamed.to_string(),
                    r.bytes_streamed.to_string(),
                    r.ranges_still_differing.to_string(),
                    r.failures.len().to_string(),
                ],
            ];
            common.print(&out, &table)?;
            if !r.failures.is_empty() {
                for f in r.failures.iter().take(5) {
                    eprintln!("repair failed: {f}");
                }
                bail!("{} range(s) could not be repaired", r.failures.len());
            }
            Ok(())
        }
    }
}

/// The tables `keel table repair` names: every table of every keyspace, of
/// one keyspace, or one.
fn repair_targets(
    view: &Value,
    keyspace: Option<&str>,
    table: Option<&str>,
) -> Result<Vec<keel_cql::repair::Target>> {
    let all = view["keyspaces"].as_object().cloned().unwrap_or_default();
    if let Some(k) = keyspace {
        if !all.contains_key(k) {
            bail!("keyspace {k} does not exist");
        }
    }
    let mut out = Vec::new();
    for (ks, v) in &all {
        if keyspace.is_some_and(|k| k != ks) {
            continue;
        }
        let tables = v["tables"].as_object().cloned().unwrap_or_default();
        if let Some(t) = table {
            if !tables.contains_key(t) {
                bail!("table {ks}.{t} does not exist");
            }
        }
        let s = strategy(view, ks)?;
        for (name, t) in tables {
            if table.is_some_and(|want| want != name) {
                continue;
            }
            let hex = t["id"].as_str().unwrap_or_default();
            let id = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
                .filter(|id| id.len() == keel_table::cell::TABLE_ID_LEN)
                .ok_or_else(|| anyhow!("the node lists no id for {ks}.{name}"))?;
            out.push(keel_cql::repair::Target {
                keyspace: ks.clone(),
                table: name,
                id,
                strategy: s.clone(),
            });
        }
    }
    Ok(out)
}

/// A key value typed on the command line: text as it is, anything else as
/// CQL writes its literal.
fn key_value(ty: &CqlType, text: &str) -> Result<Vec<u8>> {
    let lit = match ty {
        CqlType::Text | CqlType::Ascii => Literal::Str(text.into()),
        CqlType::Uuid | CqlType::Timeuuid => Literal::Uuid(text.into()),
        CqlType::Boolean => Literal::Bool(text.eq_ignore_ascii_case("true")),
        CqlType::Blob => {
            let hex = text.strip_prefix("0x").unwrap_or(text);
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("x"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| anyhow!("not hex"))?;
            Literal::Blob(bytes)
        }
        CqlType::Timestamp | CqlType::Date | CqlType::Time | CqlType::Inet
            if text.parse::<f64>().is_err() =>
        {
            Literal::Str(text.into())
        }
        _ => Literal::Number(text.into()),
    };
    encode_literal(ty, &lit)
        .map_err(|e| anyhow!(e))?
        .ok_or_else(|| anyhow!("a partition key cannot be null"))
}
