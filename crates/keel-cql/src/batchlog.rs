//! The batchlog: a logged batch spanning partitions is applied whole or,
//! if its coordinator fails part-way, finished by another node (Cassandra's
//! `BatchlogManager`).
//!
//! Before a logged batch touching more than one partition is written, its
//! coordinator stores the whole batch on up to two other nodes believed up
//! (Cassandra's batchlog endpoints; the coordinator itself only when no other
//! node serves CQL) and waits for both. The store is an ordinary mutation of a
//! reserved table id in each node's engine, so it goes through the commit log
//! before it is acknowledged, and a node's batchlog survives its own crash.
//! Then the batch's cells are written at the statement's level; once they
//! are, the entries are deleted (not waited for). If the write fails (the
//! client sees WriteTimeout or Unavailable) or the coordinator dies, the
//! entries stay, and each node holding one replays it once it is older than
//! [`REPLAY_AFTER`]: it writes the batch to every replica (ANY: replicas
//! down get hints) and then deletes its entry. A batch may so be applied
//! twice; cells reconcile by timestamp, so that is the same as once.
//!
//! A batch that could not be stored in the batchlog is not written at all:
//! WriteTimeout with write type BATCH_LOG, or Unavailable when no other node
//! is up to hold it.

use std::sync::Arc;
use std::time::Duration;

use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::message_error::WriteType;
use keel_table::cell::{self, Cell, CellKind, TABLE_ID_LEN};
use keel_table::engine::commitlog;
use keel_table::Mutation;
use tokio::sync::mpsc;

use crate::coordinator::WRITE_TIMEOUT;
use crate::error::CqlError;
use crate::exec::Node;

/// Where batches are stored (a table id no keyspace uses).
pub const BATCHLOG_TABLE: [u8; TABLE_ID_LEN] = *b"keel.batchlog.v1";
/// An entry older than this is replayed by the node holding it (Cassandra's
/// batchlog timeout: twice the write timeout).
pub const REPLAY_AFTER: Duration = Duration::from_secs(4);
/// How often a node looks for entries to replay.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Most nodes a batch is stored on.
const ENDPOINTS: usize = 2;

/// The key of batch `id`'s entry.
fn entry_key(id: &[u8; 16]) -> Vec<u8> {
    let p = cell::partition_prefix(&BATCHLOG_TABLE, 0, id);
    cell::cell_key(&cell::row_prefix(&p, &[]), cell::FIRST_COLUMN_ID)
}

/// Whether `m` touches more than one partition (a batch of one partition is
/// one commit-log record on each replica already, and skips the batchlog,
/// as in Cassandra).
fn spans_partitions(m: &Mutation) -> bool {
    let mut first: Option<&[u8]> = None;
    for (k, _) in m {
        let Some(n) = cell::partition_prefix_len(k) else {
            return true;
        };
        match first {
            None => first = Some(&k[..n]),
            Some(p) if p != &k[..n] => return true,
            Some(_) => {}
        }
    }
    false
}

impl Node {
    /// Writes a logged batch: through the batchlog when it spans partitions.
    pub(crate) async fn write_logged(&self, m: Mutation, cl: Consistency) -> Result<(), CqlError> {
        if !spans_partitions(&m) {
            return self.write_as(m, cl, WriteType::Batch).await;
        }
        let id = *uuid::Uuid::new_v4().as_bytes();
        let endpoints = self.batchlog_endpoints()?;
        let stored = vec![(
            entry_key(&id),
            Cell::live(self.hlc.now(), commitlog::encode_record(&m)),
        )];
        self.send_to(&endpoints, stored, WriteType::BatchLog)
            .await?;
        self.write_as(m, cl, WriteType::Batch).await?;
        // Written: the entries can go (a failure here only costs a replay).
        let gone = deletion(self, entry_key(&id));
        let (tx, _rx) = mpsc::channel(endpoints.len().max(1));
        let img = self.image();
        for n in endpoints {
            self.send_mutation(&img, n, gone.clone(), WRITE_TIMEOUT, tx.clone());
        }
        Ok(())
    }

    /// Up to two other nodes believed up, in a random order; this node only
    /// when no other node serves CQL.
    fn batchlog_endpoints(&self) -> Result<Vec<i32>, CqlError> {
        let img = self.image();
        let me = self.local.node_id;
        let others: Vec<i32> = img
            .nodes
            .values()
            .filter(|n| n.id != me && n.cql_port > 0)
            .map(|n| n.id)
            .collect();
        if others.is_empty() {
            return Ok(vec![me]);
        }
        let mut up: Vec<i32> = others
            .into_iter()
            .filter(|n| self.is_up(&img, *n))
            .collect();
        if up.is_empty() {
            return Err(CqlError::Unavailable {
                cl: Consistency::One,
                required: 1,
                alive: 0,
            });
        }
        // A random pair (uuid's randomness; the crate has no rand), so the
        // batchlog's load spreads over the other nodes.
        let r = uuid::Uuid::new_v4();
        up.sort_by_key(|n| r.as_bytes()[(*n as usize) % 16] as u32 * 65_536 + *n as u32);
        up.truncate(ENDPOINTS);
        Ok(up)
    }

    /// Sends `cells` to every one of `nodes` and waits for all of them.
    async fn send_to(
        &self,
        nodes: &[i32],
        cells: Mutation,
        write_type: WriteType,
    ) -> Result<(), CqlError> {
        let img = self.image();
        let (tx, mut rx) = mpsc::channel(nodes.len().max(1));
        for n in nodes {
            self.send_mutation(&img, *n, cells.clone(), WRITE_TIMEOUT, tx.clone());
        }
        drop(tx);
        let mut acked = 0;
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        while let Ok(Some((n, r))) = tokio::time::timeout_at(deadline, rx.recv()).await {
            match r {
                Ok(()) => acked += 1,
                Err(e) => tracing::debug!(node = n, "batchlog store failed: {e}"),
            }
        }
        if acked < nodes.len() {
            return Err(CqlError::WriteTimeout {
                cl: if nodes.len() == 1 {
                    Consistency::One
                } else {
                    Consistency::Two
                },
                received: acked as i32,
                block_for: nodes.len() as i32,
                write_type,
            });
        }
        Ok(())
    }
}

/// A batchlog entry's deletion: a tombstone stamped by the node's clock, its
/// local deletion time in seconds from the same stamp (as statements' are).
fn deletion(node: &Node, key: Vec<u8>) -> Mutation {
    let ts = node.hlc.now();
    vec![(key, Cell::tombstone(ts, ts / 1_000_000))]
}

/// What a node's batchlog replay did, for `/cluster`.
#[derive(Default)]
pub struct Stats {
    pub replayed: std::sync::atomic::AtomicU64,
}

/// Replays this node's batchlog entries older than [`REPLAY_AFTER`] while
/// the node serves.
pub(crate) async fn replay(node: Arc<Node>) {
    use std::sync::atomic::Ordering;
    let start = cell::partition_prefix(&BATCHLOG_TABLE, i64::MIN, &[]);
    let end = cell::prefix_end(&BATCHLOG_TABLE);
    loop {
        tokio::time::sleep(SCAN_EVERY).await;
        let old_before = node.hlc.now() - REPLAY_AFTER.as_micros() as i64;
        let mut due: Vec<(Vec<u8>, Mutation)> = Vec::new();
        for item in node.engine.scan(&start, &end, None) {
            let Ok((k, c)) = item else {
                break;
            };
            if c.kind != CellKind::Live || c.ts > old_before {
                continue;
            }
            match commitlog::decode_record(&c.value) {
                Some(m) => due.push((k, m)),
                None => tracing::warn!("a batchlog entry does not decode; left alone"),
            }
        }
        for (k, m) in due {
            match node.write_as(m, Consistency::Any, WriteType::Batch).await {
                Ok(()) => {
                    if let Ok(Ok(())) = node.engine.write(deletion(&node, k)).await {
                        node.batchlog.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::info!("batchlog replay not done yet: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_spans_partitions_only_with_two_partition_prefixes() {
        let t = [7u8; TABLE_ID_LEN];
        let a = cell::partition_prefix(&t, 1, b"a");
        let b = cell::partition_prefix(&t, 2, b"b");
        let key = |p: &[u8], col| cell::cell_key(&cell::row_prefix(p, &[]), col);
        let one: Mutation = vec![
            (key(&a, 2), Cell::live(1, b"x".to_vec())),
            (key(&a, 3), Cell::live(1, b"y".to_vec())),
        ];
        assert!(!spans_partitions(&one));
        let mut two = one.clone();
        two.push((key(&b, 2), Cell::live(1, b"z".to_vec())));
        assert!(spans_partitions(&two));
        let e = entry_key(&[1; 16]);
        assert_eq!(cell::split_key(&e).unwrap().table, &BATCHLOG_TABLE[..]);
    }
}
