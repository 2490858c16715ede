//! The tables face's schema on the quorum: keyspaces with their replication,
//! tables with their columns. Cassandra 5 moved schema (and ring) changes
//! onto a linearizable log (transactional cluster metadata, CEP-21) because
//! gossip-spread schema could diverge between nodes; here they are records on
//! the Raft log like every other metadata change, so every node applies the
//! same schema changes in the same order and two concurrent `CREATE TABLE`s
//! cannot both win.
//!
//! Type names and replication options are checked by the proposer (they
//! need the CQL type system); the apply checks what depends on the current
//! schema: existence, duplicates, the shape of a table.

use std::collections::BTreeMap;

use prost::Message;

use crate::{Applied, Image, MetaError};

/// Keyspaces the nodes generate themselves: never created, altered or
/// dropped by a client.
pub const SYSTEM_KEYSPACES: &[&str] = &[
    "system",
    "system_schema",
    "system_auth",
    "system_distributed",
    "system_traces",
    "system_views",
    "system_virtual_schema",
];

#[derive(Clone, PartialEq, Message)]
pub struct CreateKeyspace {
    #[prost(string, tag = "1")]
    pub name: String,
    /// CQL's replication map: `class` and its options.
    #[prost(btree_map = "string, string", tag = "2")]
    pub replication: BTreeMap<String, String>,
    #[prost(bool, tag = "3")]
    pub durable_writes: bool,
    /// ALTER KEYSPACE: the keyspace must exist, and only these change.
    #[prost(bool, tag = "4")]
    pub alter: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct DropKeyspace {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// What a column is to its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ColumnKind {
    PartitionKey = 0,
    Clustering = 1,
    Regular = 2,
}

#[derive(Clone, PartialEq, Eq, Message)]
pub struct Column {
    #[prost(string, tag = "1")]
    pub name: String,
    /// The CQL type, as `system_schema.columns` shows it (`map<text, int>`).
    #[prost(string, tag = "2")]
    pub cql_type: String,
    #[prost(enumeration = "ColumnKind", tag = "3")]
    pub kind: i32,
    /// Place within the partition key or clustering (0 for regular columns).
    #[prost(int32, tag = "4")]
    pub position: i32,
    /// Clustering order DESC.
    #[prost(bool, tag = "5")]
    pub reversed: bool,
    /// The id its cells are stored under; never reused within a table, so a
    /// dropped column's old cells never reappear under a new column.
    #[prost(uint32, tag = "6")]
    pub id: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct CreateTable {
    #[prost(string, tag = "1")]
    pub keyspace: String,
    #[prost(string, tag = "2")]
    pub name: String,
    /// 16 bytes, chosen by the proposer (Cassandra's table id).
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    /// Partition key columns first, then clustering, then the rest; ids are
    /// assigned at apply.
    #[prost(message, repeated, tag = "4")]
    pub columns: Vec<Column>,
    #[prost(btree_map = "string, string", tag = "5")]
    pub options: BTreeMap<String, String>,
}

/// ALTER TABLE: add regular columns, drop regular columns, set options.
#[derive(Clone, PartialEq, Message)]
pub struct AlterTable {
    #[prost(string, tag = "1")]
    pub keyspace: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "3")]
    pub add: Vec<Column>,
    #[prost(string, repeated, tag = "4")]
    pub drop: Vec<String>,
    #[prost(btree_map = "string, string", tag = "5")]
    pub options: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DropTable {
    #[prost(string, tag = "1")]
    pub keyspace: String,
    #[prost(string, tag = "2")]
    pub name: String,
}

#[derive(Clone, PartialEq, Eq, Message)]
pub struct Table {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub columns: Vec<Column>,
    #[prost(btree_map = "string, string", tag = "3")]
    pub options: BTreeMap<String, String>,
    #[prost(uint32, tag = "4")]
    pub next_column_id: u32,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Columns of one kind, in their order.
    pub fn columns_of(&self, kind: ColumnKind) -> Vec<&Column> {
        let mut v: Vec<&Column> = self.columns.iter().filter(|c| c.kind() == kind).collect();
        v.sort_by_key(|c| c.position);
        v
    }
}

#[derive(Clone, PartialEq, Eq, Message)]
pub struct Keyspace {
    #[prost(btree_map = "string, string", tag = "1")]
    pub replication: BTreeMap<String, String>,
    #[prost(bool, tag = "2")]
    pub durable_writes: bool,
    #[prost(btree_map = "string, message", tag = "3")]
    pub tables: BTreeMap<String, Table>,
}

/// A keyspace, table or column name: what Cassandra accepts unquoted or quoted
/// (letters, digits and underscores, at most 48 characters).
pub fn check_name(what: &str, name: &str) -> Result<(), MetaError> {
    if name.is_empty()
        || name.len() > 48
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(MetaError::Invalid(format!(
            "{what} name must not be empty, more than 48 characters long, or contain non-alphanumeric-underscore characters (got \"{name}\")"
        )));
    }
    Ok(())
}

impl Image {
    pub(crate) fn create_keyspace(&mut self, k: CreateKeyspace) -> Result<Applied, MetaError> {
        if SYSTEM_KEYSPACES.contains(&k.name.as_str()) {
            return Err(MetaError::Unauthorized(format!(
                "{} keyspace is not user-modifiable",
                k.name
            )));
        }
        if k.alter {
            let ks = self
                .keyspaces
                .get_mut(&k.name)
                .ok_or_else(|| MetaError::UnknownKeyspace(k.name.clone()))?;
            ks.replication = k.replication;
            ks.durable_writes = k.durable_writes;
        } else {
            check_name("Keyspace", &k.name)?;
            if self.keyspaces.contains_key(&k.name) {
                return Err(MetaError::KeyspaceExists(k.name));
            }
            self.keyspaces.insert(
                k.name,
                Keyspace {
                    replication: k.replication,
                    durable_writes: k.durable_writes,
                    tables: BTreeMap::new(),
                },
            );
        }
        self.schema_epoch += 1;
        Ok(Applied::SchemaChanged)
    }

    pub(crate) fn drop_keyspace(&mut self, d: DropKeyspace) -> Result<Applied, MetaError> {
        let ks = self
            .keyspaces
            .remove(&d.name)
            .ok_or_else(|| MetaError::UnknownKeyspace(d.name.clone()))?;
        self.dropped_table_ids
            .extend(ks.tables.into_values().map(|t| t.id));
        self.schema_epoch += 1;
        Ok(Applied::SchemaChanged)
    }

    pub(crate) fn create_table(&mut self, t: CreateTable) -> Result<Applied, MetaError> {
        check_name("Table", &t.name)?;
        if t.id.len() != 16 {
            return Err(MetaError::Invalid("a table id is 16 bytes".into()));
        }
        if self.dropped_table_ids.contains(&t.id)
            || self
                .keyspaces
                .values()
                .any(|k| k.tables.values().any(|x| x.id == t.id))
        {
            return Err(MetaError::Invalid("table id already used".into()));
        }
        let ks = self
            .keyspaces
            .get_mut(&t.keyspace)
            .ok_or_else(|| MetaError::UnknownKeyspace(t.keyspace.clone()))?;
        if ks.tables.contains_key(&t.name) {
            return Err(MetaError::TableExists(t.keyspace, t.name));
        }
        let mut columns = t.columns;
        if !columns.iter().any(|c| c.kind() == ColumnKind::PartitionKey) {
            return Err(MetaError::Invalid(
                "No PRIMARY KEY specifed (exactly one required)".into(),
            ));
        }
        for (i, c) in columns.iter_mut().enumerate() {
            check_name("Column", &c.name)?;
            // Ids 0 and 1 are a row's deletion and liveness in the table engine.
            c.id = i as u32 + 2;
        }
        let mut names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(MetaError::Invalid(format!(
                "Duplicate column {} declaration for table {}.{}",
                w[0], t.keyspace, t.name
            )));
        }
        let next_column_id = columns.len() as u32 + 2;
        ks.tables.insert(
            t.name,
            Table {
                id: t.id,
                columns,
                options: t.options,
                next_column_id,
            },
        );
        self.schema_epoch += 1;
        Ok(Applied::SchemaChanged)
    }

    pub(crate) fn alter_table(&mut self, a: AlterTable) -> Result<Applied, MetaError> {
        let ks = self
            .keyspaces
            .get_mut(&a.keyspace)
            .ok_or_else(|| MetaError::UnknownKeyspace(a.keyspace.clone()))?;
        let table = ks
            .tables
            .get(&a.name)
            .ok_or_else(|| MetaError::UnknownTable(a.keyspace.clone(), a.name.clone()))?;
        let mut t = table.clone();
        for c in a.add {
            check_name("Column", &c.name)?;
            if t.column(&c.name).is_some() {
                return Err(MetaError::Invalid(format!(
                    "Column with name '{}' already exists",
                    c.name
                )));
            }
            t.columns.push(Column {
                kind: ColumnKind::Regular as i32,
                position: 0,
                reversed: false,
                id: t.next_column_id,
                ..c
            });
            t.next_column_id += 1;
        }
        for name in a.drop {
            match t.column(&name) {
                None => {
                    return Err(MetaError::Invalid(format!(
                        "Column {name} was not found in table {}",
                        a.name
                    )))
                }
                Some(c) if c.kind() != ColumnKind::Regular => {
                    return Err(MetaError::Invalid(format!(
                        "Cannot drop PRIMARY KEY part {name}"
                    )))
                }
                Some(_) => t.columns.retain(|c| c.name != name),
            }
        }
        t.options.extend(a.options);
        ks.tables.insert(a.name, t);
        self.schema_epoch += 1;
        Ok(Applied::SchemaChanged)
    }

    pub(crate) fn drop_table(&mut self, d: DropTable) -> Result<Applied, MetaError> {
        let ks = self
            .keyspaces
            .get_mut(&d.keyspace)
            .ok_or_else(|| MetaError::UnknownKeyspace(d.keyspace.clone()))?;
        let t = ks
            .tables
            .remove(&d.name)
            .ok_or_else(|| MetaError::UnknownTable(d.keyspace.clone(), d.name.clone()))?;
        self.dropped_table_ids.push(t.id);
        self.schema_epoch += 1;
        Ok(Applied::SchemaChanged)
    }

    /// The schema version every node reports (`system.local.schema_version`):
    /// the same on every node that applied the same schema changes, which is
    /// what drivers wait for after DDL ("schema agreement").
    pub fn schema_version(&self) -> [u8; 16] {
        let mut v = [0u8; 16];
        v[..8].copy_from_slice(&0x4b45_454c_5343_4845u64.to_be_bytes());
        v[8..].copy_from_slice(&self.schema_epoch.to_be_bytes());
        // A version 4 UUID's bits, so drivers parse it as one.
        v[6] = (v[6] & 0x0f) | 0x40;
        v[8] = (v[8] & 0x3f) | 0x80;
        v
    }
}
