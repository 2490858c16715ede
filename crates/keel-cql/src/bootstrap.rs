//! A node joining the ring streams the ranges it takes over, and only
//! those (Cassandra's bootstrap).
//!
//! When a node serving CQL first sees its own tokens on the ring, it
//! compares the ring with and without itself: for every table and every
//! slice of the ring where it is now a replica, it reads the slice's cells
//! from one replica of the ring before it joined (preferring the one that
//! gives the range up, as Cassandra's strict consistency does) and writes
//! them to its own engine. It gossips JOINING meanwhile, and coordinators
//! read from it only when no NORMAL replica will do; writes reach it from
//! the moment its tokens are on the ring. Done, it records that it
//! bootstrapped (a restart does not stream again) and gossips NORMAL.
//!
//! A write that a coordinator still sent to the range's old replica after
//! the source was read can be missing here; `keel table repair` finds it.
//! A node whose data directory was wiped keeps its tokens on the quorum and
//! streams all its ranges back: Cassandra's replace, by the same path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_meta::ring::Strategy;
use keel_table::cell::{self, Cell};

use crate::exec::Node;
use crate::gossip::State;

/// Where a node records that it bootstrapped (a table id no keyspace uses).
const LOCAL_TABLE: [u8; cell::TABLE_ID_LEN] = *b"keel.local.state";

/// What a node's bootstrap did, for `/cluster` and the docs.
#[derive(Default)]
pub struct Stats {
    pub running: AtomicBool,
    pub done: AtomicBool,
    /// Slices of tables streamed.
    pub ranges: AtomicU64,
    pub cells: AtomicU64,
    pub bytes: AtomicU64,
    pub failures: Mutex<Vec<String>>,
}

fn marker_key() -> Vec<u8> {
    let p = cell::partition_prefix(&LOCAL_TABLE, 0, b"bootstrapped");
    cell::cell_key(&cell::row_prefix(&p, &[]), cell::FIRST_COLUMN_ID)
}

impl Node {
    fn bootstrapped(&self) -> bool {
        let key = marker_key();
        let mut end = key.clone();
        end.push(0);
        matches!(self.engine.scan(&key, &end, None).next(), Some(Ok(_)))
    }
}

/// Streams this node's new ranges once its tokens are on the ring; then
/// gossips NORMAL.
pub(crate) async fn run(node: Arc<Node>) {
    let me = node.local.node_id;
    let mut rx = node.image.clone();
    if rx
        .wait_for(|i| i.nodes.get(&me).is_some_and(|n| !n.tokens.is_empty()))
        .await
        .is_err()
    {
        return;
    }
    if !node.bootstrapped() {
        node.bootstrap.running.store(true, Ordering::Release);
        stream(&node).await;
        let mark = vec![(marker_key(), Cell::live(node.hlc.now(), b"1".to_vec()))];
        if let Ok(Ok(())) = node.engine.write(mark).await {
            node.bootstrap.done.store(true, Ordering::Release);
        }
        node.bootstrap.running.store(false, Ordering::Release);
    }
    node.gossip.set_state(State::Normal);
}

async fn stream(node: &Arc<Node>) {
    let me = node.local.node_id;
    let img = node.image();
    let after = img.ring();
    let before = img.ring_without(Some(me));
    if before.tokens().is_empty() {
        return; // the first node: nothing to take from anyone
    }
    let addrs: BTreeMap<i32, String> = img
        .nodes
        .values()
        .filter(|n| n.cql_port > 0)
        .map(|n| (n.id, format!("{}:{}", n.cql_host, n.cql_port)))
        .collect();
    let stats = &node.bootstrap;
    for (ks_name, ks) in &img.keyspaces {
        let Ok(strategy) = Strategy::from_replication(&ks.replication) else {
            continue;
        };
        for (t_name, t) in &ks.tables {
            for (first, last, owner) in crate::repair::slices(&after) {
                let now = after.replicas(owner, &strategy);
                if !now.contains(&me) {
                    continue;
                }
                let then = before.replicas(owner, &strategy);
                // The replica giving the range up first, then the others.
                let mut sources: Vec<i32> =
                    then.iter().copied().filter(|n| !now.contains(n)).collect();
                sources.extend(then.iter().copied().filter(|n| now.contains(n) && *n != me));
                let (start, end) = crate::repair::key_range(&t.id, first, last);
                let mut got = None;
                for src in sources.iter().filter(|n| node.is_up(&img, **n)) {
                    match crate::repair::read_all(&node.peers, &addrs, *src, &start, &end).await {
                        Ok(cells) => {
                            got = Some(cells);
                            break;
                        }
                        Err(e) => {
                            tracing::info!("bootstrap: {ks_name}.{t_name} from node {src}: {e}")
                        }
                    }
                }
                let Some(cells) = got else {
                    stats.failures.lock().expect("stats lock").push(format!(
                        "{ks_name}.{t_name} tokens {first}..={last}: no replica of {sources:?} answered"
                    ));
                    continue;
                };
                stats.ranges.fetch_add(1, Ordering::Relaxed);
                for batch in cells.chunks(1024) {
                    let bytes: usize = batch.iter().map(|(k, c)| k.len() + c.encoded_len()).sum();
                    match node.engine.write(batch.to_vec()).await {
                        Ok(Ok(())) => {
                            stats.cells.fetch_add(batch.len() as u64, Ordering::Relaxed);
                            stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                        }
                        _ => {
                            stats.failures.lock().expect("stats lock").push(format!(
                                "{ks_name}.{t_name} tokens {first}..={last}: writing locally failed"
                            ));
                            break;
                        }
                    }
                }
            }
        }
    }
    let s = stats;
    tracing::info!(
        ranges = s.ranges.load(Ordering::Relaxed),
        cells = s.cells.load(Ordering::Relaxed),
        bytes = s.bytes.load(Ordering::Relaxed),
        "bootstrap streamed the ranges this node took over"
    );
}
