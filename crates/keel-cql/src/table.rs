//! A table's schema as statements use it: the metadata's columns with their
//! parsed types, and how a row's primary key becomes keys in the engine.

use cassandra_protocol::token::Murmur3Token;
use keel_meta::{ColumnKind, Table};
use keel_table::cell;
use keel_table::types::{self, CqlType};

use crate::error::CqlError;

#[derive(Debug, Clone)]
pub struct Col {
    pub name: String,
    pub ty: CqlType,
    pub kind: ColumnKind,
    pub reversed: bool,
    pub id: u32,
}

/// One table, resolved.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub keyspace: String,
    pub name: String,
    pub id: [u8; 16],
    pub partition_key: Vec<Col>,
    pub clustering: Vec<Col>,
    pub regular: Vec<Col>,
    pub default_ttl: i32,
    pub gc_grace: i64,
}

impl TableSchema {
    pub fn new(keyspace: &str, name: &str, t: &Table) -> Result<TableSchema, CqlError> {
        let conv = |c: &keel_meta::Column| -> Result<Col, CqlError> {
            Ok(Col {
                name: c.name.clone(),
                ty: CqlType::parse(&c.cql_type).map_err(CqlError::Server)?,
                kind: c.kind(),
                reversed: c.reversed,
                id: c.id,
            })
        };
        let of = |k: ColumnKind| -> Result<Vec<Col>, CqlError> {
            t.columns_of(k).into_iter().map(conv).collect()
        };
        let id: [u8; 16] =
            t.id.as_slice()
                .try_into()
                .map_err(|_| CqlError::Server("table id is not 16 bytes".into()))?;
        let opt = |k: &str| t.options.get(k).and_then(|v| v.parse::<i64>().ok());
        Ok(TableSchema {
            keyspace: keyspace.to_string(),
            name: name.to_string(),
            id,
            partition_key: of(ColumnKind::PartitionKey)?,
            clustering: of(ColumnKind::Clustering)?,
            regular: {
                let mut r = of(ColumnKind::Regular)?;
                r.sort_by(|a, b| a.name.cmp(&b.name));
                r
            },
            default_ttl: opt("default_time_to_live").unwrap_or(0) as i32,
            gc_grace: opt("gc_grace_seconds").unwrap_or(keel_table::engine::GC_GRACE_DEFAULT),
        })
    }

    /// Every column in `SELECT *` order: partition key, clustering, then the
    /// rest by name (Cassandra's order).
    pub fn all(&self) -> impl Iterator<Item = &Col> {
        self.partition_key
            .iter()
            .chain(self.clustering.iter())
            .chain(self.regular.iter())
    }

    pub fn column(&self, name: &str) -> Result<&Col, CqlError> {
        self.all().find(|c| c.name == name).ok_or_else(|| {
            CqlError::Invalid(format!(
                "Undefined column name {name} in table {}.{}",
                self.keyspace, self.name
            ))
        })
    }

    pub fn regular_by_id(&self, id: u32) -> Option<&Col> {
        self.regular.iter().find(|c| c.id == id)
    }

    /// The partition key's bytes (Cassandra's serialised key: the value for
    /// one column; for several, each as length, bytes, 0).
    pub fn partition_bytes(&self, values: &[Vec<u8>]) -> Vec<u8> {
        partition_key_bytes(values)
    }

    /// The partition key's column values from its bytes.
    pub fn split_partition(&self, pk: &[u8]) -> Vec<Vec<u8>> {
        if self.partition_key.len() == 1 {
            return vec![pk.to_vec()];
        }
        let mut out = Vec::new();
        let mut rest = pk;
        while rest.len() >= 2 {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            if rest.len() < 2 + len {
                break;
            }
            out.push(rest[2..2 + len].to_vec());
            rest = &rest[(2 + len + 1).min(rest.len())..];
        }
        out
    }

    /// The key prefix of a partition.
    pub fn partition_prefix(&self, pk: &[u8]) -> Vec<u8> {
        cell::partition_prefix(&self.id, token(pk), pk)
    }

    /// The clustering values of a row as ordered bytes (reversed columns
    /// inverted, so DESC order is byte order).
    pub fn clustering_bytes(&self, values: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (c, v) in self.clustering.iter().zip(values) {
            push_clustering(c, v, &mut out);
        }
        out
    }

    /// The clustering values from their ordered bytes.
    pub fn split_clustering(&self, mut b: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for c in &self.clustering {
            let plain: Vec<u8>;
            let view: &[u8] = if c.reversed {
                plain = b.iter().map(|x| !x).collect();
                &plain
            } else {
                b
            };
            let Some(n) = types::order_key_len(&c.ty, view) else {
                break;
            };
            out.push(types::from_order_key(&c.ty, &view[..n]));
            b = &b[n..];
        }
        out
    }
}

/// Appends one clustering value's ordered bytes.
pub fn push_clustering(c: &Col, v: &[u8], out: &mut Vec<u8>) {
    let k = types::order_key(&c.ty, v);
    if c.reversed {
        out.extend(k.iter().map(|x| !x));
    } else {
        out.extend_from_slice(&k);
    }
}

/// A partition key's bytes as Cassandra hashes them: the one value, or a
/// composite of several (`len u16 | value | 0` each).
pub fn partition_key_bytes(values: &[Vec<u8>]) -> Vec<u8> {
    if values.len() == 1 {
        return values[0].clone();
    }
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Cassandra's Murmur3Partitioner token of a partition key.
pub fn token(pk: &[u8]) -> i64 {
    Murmur3Token::generate(pk).value
}
