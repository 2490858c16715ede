//! The system tables drivers and cqlsh read (`system.local`, `system.peers`,
//! `system.peers_v2`, `system_schema.*`, `system_virtual_schema.*`),
//! generated from this node and the schema on the quorum, and the
//! server-side DESCRIBE that cqlsh 6 sends to a 4.0 server.

use std::collections::HashMap;
use std::net::IpAddr;

use keel_meta::{ColumnKind, Image};
use keel_table::types::{self, CqlType, Literal};

use crate::error::CqlError;
use crate::exec::{ColumnSpec, Node, Outcome, Rows};
use crate::parser::Describe;
use crate::read::Row;
use crate::table::{Col, TableSchema};

/// The Cassandra version Keel reports: drivers and cqlsh pick their schema
/// queries and server-side DESCRIBE by it.
pub const RELEASE_VERSION: &str = "4.0.11";
pub const CQL_VERSION: &str = "3.4.5";
pub const PARTITIONER: &str = "org.apache.cassandra.dht.Murmur3Partitioner";

/// Keyspaces that are the system's, not the user's.
pub const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_virtual_schema",
    "system_views",
];

pub fn is_system_keyspace(k: &str) -> bool {
    SYSTEM_KEYSPACES.contains(&k)
}

type Def = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, u8)],
);

// (keyspace, table, [(column, type, kind: 0 partition key, 1 clustering, 2 regular)])
const TABLES: &[Def] = &[
    (
        "system",
        "local",
        &[
            ("key", "text", 0),
            ("bootstrapped", "text", 2),
            ("broadcast_address", "inet", 2),
            ("broadcast_port", "int", 2),
            ("cluster_name", "text", 2),
            ("cql_version", "text", 2),
            ("data_center", "text", 2),
            ("gossip_generation", "int", 2),
            ("host_id", "uuid", 2),
            ("listen_address", "inet", 2),
            ("listen_port", "int", 2),
            ("native_protocol_version", "text", 2),
            ("partitioner", "text", 2),
            ("rack", "text", 2),
            ("release_version", "text", 2),
            ("rpc_address", "inet", 2),
            ("rpc_port", "int", 2),
            ("schema_version", "uuid", 2),
            ("tokens", "set<text>", 2),
            ("truncated_at", "map<uuid, blob>", 2),
        ],
    ),
    (
        "system",
        "peers",
        &[
            ("peer", "inet", 0),
            ("data_center", "text", 2),
            ("host_id", "uuid", 2),
            ("preferred_ip", "inet", 2),
            ("rack", "text", 2),
            ("release_version", "text", 2),
            ("rpc_address", "inet", 2),
            ("schema_version", "uuid", 2),
            ("tokens", "set<text>", 2),
        ],
    ),
    (
        "system",
        "peers_v2",
        &[
            ("peer", "inet", 0),
            ("peer_port", "int", 1),
            ("data_center", "text", 2),
            ("host_id", "uuid", 2),
            ("native_address", "inet", 2),
            ("native_port", "int", 2),
            ("preferred_ip", "inet", 2),
            ("preferred_port", "int", 2),
            ("rack", "text", 2),
            ("release_version", "text", 2),
            ("schema_version", "uuid", 2),
            ("tokens", "set<text>", 2),
        ],
    ),
    (
        "system_schema",
        "keyspaces",
        &[
            ("keyspace_name", "text", 0),
            ("durable_writes", "boolean", 2),
            ("replication", "frozen<map<text, text>>", 2),
        ],
    ),
    (
        "system_schema",
        "tables",
        &[
            ("keyspace_name", "text", 0),
            ("table_name", "text", 1),
            ("additional_write_policy", "text", 2),
            ("bloom_filter_fp_chance", "double", 2),
            ("caching", "frozen<map<text, text>>", 2),
            ("cdc", "boolean", 2),
            ("comment", "text", 2),
            ("compaction", "frozen<map<text, text>>", 2),
            ("compression", "frozen<map<text, text>>", 2),
            ("crc_check_chance", "double", 2),
            ("default_time_to_live", "int", 2),
            ("extensions", "frozen<map<text, blob>>", 2),
            ("flags", "frozen<set<text>>", 2),
            ("gc_grace_seconds", "int", 2),
            ("id", "uuid", 2),
            ("max_index_interval", "int", 2),
            ("memtable_flush_period_in_ms", "int", 2),
            ("min_index_interval", "int", 2),
            ("read_repair", "text", 2),
            ("speculative_retry", "text", 2),
        ],
    ),
    (
        "system_schema",
        "columns",
        &[
            ("keyspace_name", "text", 0),
            ("table_name", "text", 1),
            ("column_name", "text", 1),
            ("clustering_order", "text", 2),
            ("column_name_bytes", "blob", 2),
            ("kind", "text", 2),
            ("position", "int", 2),
            ("type", "text", 2),
        ],
    ),
    (
        "system_schema",
        "types",
        &[
            ("keyspace_name", "text", 0),
            ("type_name", "text", 1),
            ("field_names", "frozen<list<text>>", 2),
            ("field_types", "frozen<list<text>>", 2),
        ],
    ),
    (
        "system_schema",
        "functions",
        &[
            ("keyspace_name", "text", 0),
            ("function_name", "text", 1),
            ("argument_types", "frozen<list<text>>", 1),
            ("argument_names", "frozen<list<text>>", 2),
            ("body", "text", 2),
            ("called_on_null_input", "boolean", 2),
            ("language", "text", 2),
            ("return_type", "text", 2),
        ],
    ),
    (
        "system_schema",
        "aggregates",
        &[
            ("keyspace_name", "text", 0),
            ("aggregate_name", "text", 1),
            ("argument_types", "frozen<list<text>>", 1),
            ("final_func", "text", 2),
            ("initcond", "text", 2),
            ("return_type", "text", 2),
            ("state_func", "text", 2),
            ("state_type", "text", 2),
        ],
    ),
    (
        "system_schema",
        "triggers",
        &[
            ("keyspace_name", "text", 0),
            ("table_name", "text", 1),
            ("trigger_name", "text", 1),
            ("options", "frozen<map<text, text>>", 2),
        ],
    ),
    (
        "system_schema",
        "indexes",
        &[
            ("keyspace_name", "text", 0),
            ("table_name", "text", 1),
            ("index_name", "text", 1),
            ("kind", "text", 2),
            ("options", "frozen<map<text, text>>", 2),
        ],
    ),
    (
        "system_schema",
        "views",
        &[
            ("keyspace_name", "text", 0),
            ("view_name", "text", 1),
            ("base_table_id", "uuid", 2),
            ("base_table_name", "text", 2),
            ("include_all_columns", "boolean", 2),
            ("where_clause", "text", 2),
        ],
    ),
    (
        "system_virtual_schema",
        "keyspaces",
        &[("keyspace_name", "text", 0)],
    ),
    (
        "system_virtual_schema",
        "tables",
        &[
            ("keyspace_name", "text", 0),
            ("table_name", "text", 1),
            ("comment", "text", 2),
        ],
    ),
    (
        "system_virtual_schema",
        "columns",
        &[
            ("keyspace_name", "text", 0),
            ("table_name", "text", 1),
            ("column_name", "text", 1),
            ("clustering_order", "text", 2),
            ("column_name_bytes", "blob", 2),
            ("kind", "text", 2),
            ("position", "int", 2),
            ("type", "text", 2),
        ],
    ),
];

/// A system table's schema, if `keyspace.name` is one.
pub fn table(keyspace: &str, name: &str) -> Option<TableSchema> {
    let (ks, tn, cols) = TABLES
        .iter()
        .find(|(k, t, _)| *k == keyspace && *t == name)?;
    let mut t = TableSchema {
        keyspace: ks.to_string(),
        name: tn.to_string(),
        id: [0xff; 16],
        partition_key: Vec::new(),
        clustering: Vec::new(),
        regular: Vec::new(),
        default_ttl: 0,
        gc_grace: 0,
    };
    for (i, (n, ty, kind)) in cols.iter().enumerate() {
        let c = Col {
            name: n.to_string(),
            ty: CqlType::parse(ty).expect("system table types parse"),
            kind: match kind {
                0 => ColumnKind::PartitionKey,
                1 => ColumnKind::Clustering,
                _ => ColumnKind::Regular,
            },
            reversed: false,
            id: keel_table::cell::FIRST_COLUMN_ID + i as u32,
        };
        match c.kind {
            ColumnKind::PartitionKey => t.partition_key.push(c),
            ColumnKind::Clustering => t.clustering.push(c),
            ColumnKind::Regular => t.regular.push(c),
        }
    }
    t.regular.sort_by(|a, b| a.name.cmp(&b.name));
    Some(t)
}

/// A system row's values by column name.
type Values = HashMap<&'static str, Vec<u8>>;

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}
fn int(n: i32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}
fn boolean(b: bool) -> Vec<u8> {
    vec![b as u8]
}
fn inet(host: &str) -> Vec<u8> {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.octets().to_vec(),
        Ok(IpAddr::V6(a)) => a.octets().to_vec(),
        Err(_) => vec![127, 0, 0, 1],
    }
}
fn lit(ty: &str, l: Literal) -> Vec<u8> {
    let ty = CqlType::parse(ty).expect("type");
    types::encode_literal(&ty, &l)
        .ok()
        .flatten()
        .unwrap_or_default()
}
fn text_map(m: &[(String, String)]) -> Vec<u8> {
    lit(
        "map<text, text>",
        Literal::Map(
            m.iter()
                .map(|(k, v)| (Literal::Str(k.clone()), Literal::Str(v.clone())))
                .collect(),
        ),
    )
}
fn text_set(items: &[String]) -> Vec<u8> {
    lit(
        "set<text>",
        Literal::Set(items.iter().map(|s| Literal::Str(s.clone())).collect()),
    )
}

/// The rows of a system table now.
pub fn rows(node: &Node, t: &TableSchema) -> Vec<Row> {
    let img = node.image();
    let system = system_tables();
    let values: Vec<Values> = match (t.keyspace.as_str(), t.name.as_str()) {
        ("system", "local") => vec![local(node, &img)],
        ("system", "peers") => peers(node, &img, false),
        ("system", "peers_v2") => peers(node, &img, true),
        ("system_schema", "keyspaces") => keyspaces(&img)
            .map(|(name, replication, durable)| {
                Values::from([
                    ("keyspace_name", text(&name)),
                    ("durable_writes", boolean(durable)),
                    ("replication", text_map(&replication)),
                ])
            })
            .collect(),
        ("system_schema", "tables") => system
            .iter()
            .map(|(k, n, t)| (k.clone(), n.clone(), t))
            .chain(tables(&img))
            .map(|(ks, name, tbl)| table_row(&ks, &name, tbl))
            .collect(),
        ("system_schema", "columns") => system
            .iter()
            .map(|(k, n, t)| (k.clone(), n.clone(), t))
            .chain(tables(&img))
            .flat_map(|(ks, name, tbl)| {
                tbl.columns
                    .iter()
                    .map(|c| column_row(&ks, &name, c))
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => Vec::new(),
    };
    values.into_iter().map(|v| to_row(t, v)).collect()
}

fn to_row(t: &TableSchema, mut v: Values) -> Row {
    let pk: Vec<Vec<u8>> = t
        .partition_key
        .iter()
        .map(|c| v.remove(c.name.as_str()).unwrap_or_default())
        .collect();
    let ck: Vec<Vec<u8>> = t
        .clustering
        .iter()
        .map(|c| v.remove(c.name.as_str()).unwrap_or_default())
        .collect();
    let pkb = t.partition_bytes(&pk);
    let mut key = types::order_key(&CqlType::Blob, &pkb);
    let partition = key.clone();
    key.extend_from_slice(&t.clustering_bytes(&ck));
    let cells = t
        .regular
        .iter()
        .filter_map(|c| {
            v.remove(c.name.as_str())
                .map(|x| (c.id, keel_table::Cell::live(0, x)))
        })
        .collect();
    Row {
        key,
        token: crate::table::token(&pkb),
        partition,
        pk,
        ck,
        cells,
    }
}

fn local(node: &Node, img: &Image) -> Values {
    let l = &node.local;
    Values::from([
        ("key", text("local")),
        ("bootstrapped", text("COMPLETED")),
        ("broadcast_address", inet(&l.cql_host)),
        ("broadcast_port", int(7000)),
        ("cluster_name", text(&l.cluster_name)),
        ("cql_version", text(CQL_VERSION)),
        ("data_center", text(&l.datacenter)),
        ("gossip_generation", int(1)),
        ("host_id", host_id(&img.cluster_id, l.node_id).to_vec()),
        ("listen_address", inet(&l.cql_host)),
        ("listen_port", int(7000)),
        ("native_protocol_version", text("4")),
        ("partitioner", text(PARTITIONER)),
        ("rack", text(&l.rack)),
        ("release_version", text(RELEASE_VERSION)),
        ("rpc_address", inet(&l.cql_host)),
        ("rpc_port", int(l.cql_port)),
        ("schema_version", img.schema_version().to_vec()),
        ("tokens", text_set(&tokens_of(img, l.node_id))),
    ])
}

/// A node's host id (a version 4 UUID's shape), the same wherever it is
/// computed: from the cluster id and the node id.
pub fn host_id(cluster_id: &str, node_id: i32) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, b) in format!("{cluster_id}/{node_id}").bytes().enumerate() {
        id[i % 16] = id[i % 16].wrapping_mul(31).wrapping_add(b);
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// A node's tokens as drivers read them (one covering the ring while the
/// node has none yet, so a lone node still owns everything; none once it
/// has left the ring, so drivers route nothing to it for its tokens).
fn tokens_of(img: &Image, node: i32) -> Vec<String> {
    match img.nodes.get(&node) {
        Some(n) if !n.tokens.is_empty() => n.tokens.iter().map(|t| t.to_string()).collect(),
        Some(n) if n.decommissioned => Vec::new(),
        _ => vec![i64::MIN.to_string()],
    }
}

/// The other nodes serving CQL, for `system.peers` and `peers_v2` (down ones
/// too: drivers learn who is down by trying them).
fn peers(node: &Node, img: &Image, v2: bool) -> Vec<Values> {
    img.nodes
        .values()
        .filter(|n| n.id != node.local.node_id && n.cql_port > 0 && !n.tokens.is_empty())
        .map(|n| {
            let mut v = Values::from([
                ("peer", inet(&n.cql_host)),
                ("data_center", text(&n.datacenter)),
                ("host_id", host_id(&img.cluster_id, n.id).to_vec()),
                ("preferred_ip", inet(&n.cql_host)),
                (
                    "rack",
                    text(if n.rack.is_empty() { "rack1" } else { &n.rack }),
                ),
                ("release_version", text(RELEASE_VERSION)),
                ("schema_version", img.schema_version().to_vec()),
                ("tokens", text_set(&tokens_of(img, n.id))),
            ]);
            if v2 {
                v.insert("peer_port", int(7000));
                v.insert("native_address", inet(&n.cql_host));
                v.insert("native_port", int(n.cql_port));
                v.insert("preferred_port", int(7000));
            } else {
                v.insert("rpc_address", inet(&n.cql_host));
            }
            v
        })
        .collect()
}

/// Every keyspace, the system's first: name, replication, durable_writes.
fn keyspaces(img: &Image) -> impl Iterator<Item = (String, Vec<(String, String)>, bool)> + '_ {
    let local = vec![(
        "class".to_string(),
        "org.apache.cassandra.locator.LocalStrategy".to_string(),
    )];
    ["system", "system_schema"]
        .into_iter()
        .map(move |k| (k.to_string(), local.clone(), true))
        .chain(
            ["system_auth", "system_distributed", "system_traces"]
                .into_iter()
                .map(|k| {
                    (
                        k.to_string(),
                        vec![
                            (
                                "class".to_string(),
                                "org.apache.cassandra.locator.SimpleStrategy".to_string(),
                            ),
                            ("replication_factor".to_string(), "1".to_string()),
                        ],
                        true,
                    )
                }),
        )
        .chain(img.keyspaces.iter().map(|(n, k)| {
            (
                n.clone(),
                k.replication
                    .iter()
                    .map(|(a, b)| (a.clone(), b.clone()))
                    .collect(),
                k.durable_writes,
            )
        }))
}

fn tables(img: &Image) -> impl Iterator<Item = (String, String, &keel_meta::Table)> + '_ {
    img.keyspaces.iter().flat_map(|(k, ks)| {
        ks.tables
            .iter()
            .map(move |(n, t)| (k.clone(), n.clone(), t))
    })
}

/// The `system` and `system_schema` tables as schema records, so that
/// `system_schema.tables`/`columns` list them as Cassandra does: the drivers
/// build their metadata from those rows, and cqlsh refuses a SELECT on a
/// table its driver's metadata does not know.
fn system_tables() -> Vec<(String, String, keel_meta::Table)> {
    TABLES
        .iter()
        .filter(|(k, _, _)| matches!(*k, "system" | "system_schema"))
        .map(|(k, n, cols)| {
            let mut positions = [0i32; 3];
            let columns = cols
                .iter()
                .enumerate()
                .map(|(i, (name, ty, kind))| {
                    let kind = *kind as usize;
                    let position = positions[kind];
                    positions[kind] += 1;
                    keel_meta::Column {
                        name: name.to_string(),
                        cql_type: ty.to_string(),
                        kind: match kind {
                            0 => ColumnKind::PartitionKey,
                            1 => ColumnKind::Clustering,
                            _ => ColumnKind::Regular,
                        } as i32,
                        position: if kind == 2 { 0 } else { position },
                        reversed: false,
                        id: keel_table::cell::FIRST_COLUMN_ID + i as u32,
                    }
                })
                .collect();
            // A fixed id per table, as Cassandra's system tables have.
            let name = format!("{k}.{n}");
            let fnv = |seed: u64| {
                name.bytes().fold(seed, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
                })
            };
            let mut id = fnv(0xcbf2_9ce4_8422_2325).to_be_bytes().to_vec();
            id.extend_from_slice(&fnv(0x6c62_272e_07bb_0142).to_be_bytes());
            let table = keel_meta::Table {
                id,
                columns,
                options: Default::default(),
                next_column_id: 0,
            };
            (k.to_string(), n.to_string(), table)
        })
        .collect()
}

fn uuid_of(id: &[u8]) -> Vec<u8> {
    let mut v = [0u8; 16];
    let n = id.len().min(16);
    v[..n].copy_from_slice(&id[..n]);
    v.to_vec()
}

fn table_row(ks: &str, name: &str, t: &keel_meta::Table) -> Values {
    let opt = |k: &str, d: &str| t.options.get(k).cloned().unwrap_or_else(|| d.to_string());
    let dbl = |k: &str, d: f64| {
        opt(k, "")
            .parse::<f64>()
            .unwrap_or(d)
            .to_be_bytes()
            .to_vec()
    };
    let i = |k: &str, d: i32| int(opt(k, "").parse::<i32>().unwrap_or(d));
    Values::from([
        ("keyspace_name", text(ks)),
        ("table_name", text(name)),
        (
            "additional_write_policy",
            text(&opt("additional_write_policy", "99p")),
        ),
        (
            "bloom_filter_fp_chance",
            dbl("bloom_filter_fp_chance", 0.01),
        ),
        (
            "caching",
            text_map(&[
                ("keys".into(), "ALL".into()),
                ("rows_per_partition".into(), "NONE".into()),
            ]),
        ),
        ("cdc", boolean(false)),
        ("comment", text(&opt("comment", ""))),
        (
            "compaction",
            text_map(&[
                (
                    "class".into(),
                    "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy".into(),
                ),
                ("max_threshold".into(), "32".into()),
                ("min_threshold".into(), "4".into()),
            ]),
        ),
        ("compression", text_map(&[])),
        ("crc_check_chance", dbl("crc_check_chance", 1.0)),
        ("default_time_to_live", i("default_time_to_live", 0)),
        (
            "extensions",
            lit("map<text, blob>", Literal::Map(Vec::new())),
        ),
        ("flags", text_set(&["compound".to_string()])),
        (
            "gc_grace_seconds",
            i(
                "gc_grace_seconds",
                keel_table::engine::GC_GRACE_DEFAULT as i32,
            ),
        ),
        ("id", uuid_of(&t.id)),
        ("max_index_interval", i("max_index_interval", 2048)),
        (
            "memtable_flush_period_in_ms",
            i("memtable_flush_period_in_ms", 0),
        ),
        ("min_index_interval", i("min_index_interval", 128)),
        ("read_repair", text(&opt("read_repair", "BLOCKING"))),
        ("speculative_retry", text(&opt("speculative_retry", "99p"))),
    ])
}

fn column_row(ks: &str, table: &str, c: &keel_meta::Column) -> Values {
    let (kind, position, order) = match c.kind() {
        ColumnKind::PartitionKey => ("partition_key", c.position, "none"),
        ColumnKind::Clustering => (
            "clustering",
            c.position,
            if c.reversed { "desc" } else { "asc" },
        ),
        ColumnKind::Regular => ("regular", -1, "none"),
    };
    Values::from([
        ("keyspace_name", text(ks)),
        ("table_name", text(table)),
        ("column_name", text(&c.name)),
        ("clustering_order", text(order)),
        ("column_name_bytes", c.name.as_bytes().to_vec()),
        ("kind", text(kind)),
        ("position", int(position)),
        ("type", text(&c.cql_type)),
    ])
}

/// Quotes an identifier when CQL needs it.
pub fn quote(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn cql_map(m: &[(String, String)]) -> String {
    let items: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("'{}': '{}'", k.replace('\'', "''"), v.replace('\'', "''")))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// `CREATE KEYSPACE` for a keyspace.
pub fn keyspace_cql(name: &str, k: &keel_meta::Keyspace) -> String {
    let r: Vec<(String, String)> = k
        .replication
        .iter()
        .map(|(a, b)| (a.clone(), b.clone()))
        .collect();
    format!(
        "CREATE KEYSPACE {} WITH replication = {}  AND durable_writes = {};",
        quote(name),
        cql_map(&r),
        k.durable_writes
    )
}

/// `CREATE TABLE` for a table, in Cassandra 4's layout.
pub fn table_cql(ks: &str, name: &str, t: &keel_meta::Table) -> String {
    let mut s = format!("CREATE TABLE {}.{} (\n", quote(ks), quote(name));
    let pk = t.columns_of(ColumnKind::PartitionKey);
    let ck = t.columns_of(ColumnKind::Clustering);
    let mut regular = t.columns_of(ColumnKind::Regular);
    regular.sort_by(|a, b| a.name.cmp(&b.name));
    for c in pk.iter().chain(ck.iter()).chain(regular.iter()) {
        s.push_str(&format!("    {} {},\n", quote(&c.name), c.cql_type));
    }
    let pk_names: Vec<String> = pk.iter().map(|c| quote(&c.name)).collect();
    let pk_part = if pk_names.len() == 1 {
        pk_names[0].clone()
    } else {
        format!("({})", pk_names.join(", "))
    };
    let mut key = vec![pk_part];
    key.extend(ck.iter().map(|c| quote(&c.name)));
    s.push_str(&format!("    PRIMARY KEY ({})\n)", key.join(", ")));
    let mut with = Vec::new();
    if !ck.is_empty() {
        let order: Vec<String> = ck
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    quote(&c.name),
                    if c.reversed { "DESC" } else { "ASC" }
                )
            })
            .collect();
        with.push(format!("CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    let opt = |k: &str, d: &str| t.options.get(k).cloned().unwrap_or_else(|| d.to_string());
    with.push(format!(
        "additional_write_policy = '{}'",
        opt("additional_write_policy", "99p")
    ));
    with.push(format!(
        "bloom_filter_fp_chance = {}",
        opt("bloom_filter_fp_chance", "0.01")
    ));
    with.push("caching = {'keys': 'ALL', 'rows_per_partition': 'NONE'}".into());
    with.push(format!(
        "comment = '{}'",
        opt("comment", "").replace('\'', "''")
    ));
    with.push("compaction = {'class': 'org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy', 'max_threshold': '32', 'min_threshold': '4'}".into());
    with.push(format!(
        "default_time_to_live = {}",
        opt("default_time_to_live", "0")
    ));
    with.push(format!(
        "gc_grace_seconds = {}",
        opt(
            "gc_grace_seconds",
            &keel_table::engine::GC_GRACE_DEFAULT.to_string()
        )
    ));
    with.push(format!(
        "read_repair = '{}'",
        opt("read_repair", "BLOCKING")
    ));
    with.push(format!(
        "speculative_retry = '{}'",
        opt("speculative_retry", "99p")
    ));
    s.push_str(&format!(" WITH {};", with.join("\n    AND ")));
    s
}

/// Server-side DESCRIBE (Cassandra 4.0's result shapes, which cqlsh prints).
pub fn describe(node: &Node, keyspace: &Option<String>, d: &Describe) -> Result<Outcome, CqlError> {
    let img = node.image();
    let spec = |name: &str| ColumnSpec {
        keyspace: String::new(),
        table: String::new(),
        name: name.to_string(),
        ty: CqlType::Text,
    };
    let list = |rows: Vec<[String; 3]>| -> Outcome {
        Outcome::Rows(Rows {
            columns: vec![spec("keyspace_name"), spec("type"), spec("name")],
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(|s| Some(s.into_bytes())).collect())
                .collect(),
            paging_state: None,
        })
    };
    let element = |rows: Vec<[String; 4]>| -> Outcome {
        Outcome::Rows(Rows {
            columns: vec![
                spec("keyspace_name"),
                spec("type"),
                spec("name"),
                spec("create_statement"),
            ],
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(|s| Some(s.into_bytes())).collect())
                .collect(),
            paging_state: None,
        })
    };
    let keyspace_elements = |name: &str, k: &keel_meta::Keyspace| -> Vec<[String; 4]> {
        let mut out = vec![[
            name.to_string(),
            "keyspace".into(),
            name.to_string(),
            keyspace_cql(name, k),
        ]];
        for (tn, t) in &k.tables {
            out.push([
                name.to_string(),
                "table".into(),
                tn.clone(),
                table_cql(name, tn, t),
            ]);
        }
        out
    };
    Ok(match d {
        Describe::Keyspaces => list(
            keyspaces(&img)
                .map(|(n, _, _)| [n.clone(), "keyspace".into(), n])
                .collect(),
        ),
        Describe::Tables => {
            let mut rows = Vec::new();
            for (k, ks) in &img.keyspaces {
                if keyspace.as_ref().is_some_and(|x| x != k) {
                    continue;
                }
                for tn in ks.tables.keys() {
                    rows.push([k.clone(), "table".into(), tn.clone()]);
                }
            }
            list(rows)
        }
        Describe::EmptyList => list(Vec::new()),
        Describe::Keyspace(name) => {
            let name = name.clone().or_else(|| keyspace.clone()).ok_or_else(|| {
                CqlError::Invalid("No keyspace specified and no current keyspace".into())
            })?;
            let k = img
                .keyspaces
                .get(&name)
                .ok_or_else(|| CqlError::Invalid(format!("'{name}' not found in keyspaces")))?;
            element(keyspace_elements(&name, k))
        }
        Describe::Schema => element(
            img.keyspaces
                .iter()
                .flat_map(|(n, k)| keyspace_elements(n, k))
                .collect(),
        ),
        Describe::Table(q) => {
            let ks = q
                .keyspace
                .clone()
                .or_else(|| keyspace.clone())
                .ok_or_else(|| {
                    CqlError::Invalid("No keyspace specified and no current keyspace".into())
                })?;
            match img.keyspaces.get(&ks) {
                Some(k)
                    if q.keyspace.is_none()
                        && !k.tables.contains_key(&q.name)
                        && img.keyspaces.contains_key(&q.name) =>
                {
                    // DESCRIBE <name>: a keyspace when no such table.
                    let k2 = &img.keyspaces[&q.name];
                    element(keyspace_elements(&q.name, k2))
                }
                Some(k) => {
                    let t = k.tables.get(&q.name).ok_or_else(|| {
                        CqlError::Invalid(format!("Table '{ks}.{}' not found", q.name))
                    })?;
                    element(vec![[
                        ks.clone(),
                        "table".into(),
                        q.name.clone(),
                        table_cql(&ks, &q.name, t),
                    ]])
                }
                None if q.keyspace.is_none() && img.keyspaces.contains_key(&q.name) => {
                    element(keyspace_elements(&q.name, &img.keyspaces[&q.name]))
                }
                None if is_system_keyspace(&ks) => {
                    let system = system_tables();
                    let (_, _, t) = system
                        .iter()
                        .find(|(k, n, _)| *k == ks && *n == q.name)
                        .ok_or_else(|| {
                            CqlError::Invalid(format!("Table '{ks}.{}' not found", q.name))
                        })?;
                    element(vec![[
                        ks.clone(),
                        "table".into(),
                        q.name.clone(),
                        table_cql(&ks, &q.name, t),
                    ]])
                }
                None => return Err(CqlError::Invalid(format!("'{ks}' not found in keyspaces"))),
            }
        }
        Describe::Cluster => Outcome::Rows(Rows {
            columns: vec![spec("cluster"), spec("partitioner"), spec("snitch")],
            rows: vec![vec![
                Some(node.local.cluster_name.clone().into_bytes()),
                Some(PARTITIONER.as_bytes().to_vec()),
                Some(b"org.apache.cassandra.locator.SimpleSnitch".to_vec()),
            ]],
            paging_state: None,
        }),
    })
}
