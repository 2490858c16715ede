//! A node joining the ring streams the ranges it takes over, and only
//! those (Cassandra's bootstrap); a node leaving it streams each of its
//! ranges to the replica that gains it (Cassandra's decommission).
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
//!
//! Leaving ([`decommission`]) runs the other way, in two metadata records.
//! The first marks the node leaving: from then on every coordinator also
//! sends writes of its ranges to the replicas that will gain them, counted
//! on top of the level ([`Node::write_placement`]), and the node waits until
//! every node up has applied it. Then it reads each slice it holds where a
//! replica gains it and sends the cells there. The second record takes its
//! tokens off the ring. Any write acknowledged after the first record holds
//! the level among the replicas after the leave, and any before it is in
//! what was streamed (or on the staying replicas), so nothing acknowledged
//! is lost; a failed stream leaves the node leaving, and running the
//! command again resumes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use keel_meta::record::Kind;
use keel_meta::ring::Strategy;
use keel_meta::{Image, LeaveRing, Record};
use keel_table::cell::{self, Cell};
use keel_table::Mutation;

use crate::exec::Node;
use crate::gossip::State;
use crate::repair::Report;

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
    /// A decommission is running on this node.
    pub leaving: AtomicBool,
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

/// Every node's internode (CQL) address.
fn cql_addrs(img: &Image) -> BTreeMap<i32, String> {
    img.nodes
        .values()
        .filter(|n| n.cql_port > 0)
        .map(|n| (n.id, format!("{}:{}", n.cql_host, n.cql_port)))
        .collect()
}

async fn stream(node: &Arc<Node>) {
    let me = node.local.node_id;
    let img = node.image();
    let after = img.ring();
    let before = img.ring_without(Some(me));
    if before.tokens().is_empty() {
        return; // the first node: nothing to take from anyone
    }
    let addrs = cql_addrs(&img);
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
    let ranges = s.ranges.load(Ordering::Relaxed);
    let (cells, bytes) = (
        s.cells.load(Ordering::Relaxed),
        s.bytes.load(Ordering::Relaxed),
    );
    // A node that took over nothing (every node of a new cluster) has
    // nothing to say at INFO.
    if ranges == 0 {
        tracing::debug!("bootstrap: no ranges to take over");
    } else {
        tracing::info!(
            ranges,
            cells,
            bytes,
            "bootstrap streamed the ranges this node took over"
        );
    }
}

/// Clears [`Stats::leaving`] however a decommission ends.
struct LeavingFlag<'a>(&'a AtomicBool);

impl Drop for LeavingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Takes this node off the ring (Cassandra's `nodetool decommission`; see
/// the module's comment for the order of the steps). Answers what was
/// streamed to whom; with failures in the report the node stays leaving
/// and its tokens stay on the ring, and calling this again resumes.
pub async fn decommission(node: &Arc<Node>) -> Result<Report, String> {
    if node.bootstrap.leaving.swap(true, Ordering::AcqRel) {
        return Err("a decommission of this node is already running".into());
    }
    let _flag = LeavingFlag(&node.bootstrap.leaving);
    let me = node.local.node_id;
    let img = node.image();
    let n = img
        .nodes
        .get(&me)
        .ok_or("this node is not registered in the cluster metadata")?;
    if n.tokens.is_empty() {
        return Err(if n.decommissioned {
            "this node has already left the ring".into()
        } else {
            "this node has no tokens on the ring".into()
        });
    }
    if !n.leaving {
        propose(node, false).await?;
    }
    node.wait_image(|i| i.nodes.get(&me).is_some_and(|n| n.leaving))
        .await;
    let img = node.image();
    let (now, Some(after)) = (img.ring(), img.ring_after_leaving()) else {
        return Err("this node's leaving was not applied here in time; run it again".into());
    };
    let addrs = cql_addrs(&img);
    let mut report = Report::default();
    for (ks_name, ks) in &img.keyspaces {
        let Ok(strategy) = Strategy::from_replication(&ks.replication) else {
            continue;
        };
        for (t_name, t) in &ks.tables {
            for (first, last, owner) in crate::repair::slices(&now) {
                let then = now.replicas(owner, &strategy);
                if !then.contains(&me) {
                    continue;
                }
                let gain: Vec<i32> = after
                    .replicas(owner, &strategy)
                    .into_iter()
                    .filter(|n| !then.contains(n))
                    .collect();
                if gain.is_empty() {
                    continue;
                }
                let (start, end) = crate::repair::key_range(&t.id, first, last);
                let what = format!("{ks_name}.{t_name} tokens {first}..={last}");
                let cells = read_local_all(node, &start, &end)
                    .await
                    .map_err(|e| format!("{what}: reading it here failed: {e}"))?;
                // Slices of tables streamed.
                report.ranges += 1;
                for g in gain {
                    if let Err(e) = crate::repair::send_cells(
                        &node.peers,
                        &addrs,
                        g,
                        cells.clone(),
                        &mut report,
                    )
                    .await
                    {
                        report.failures.push(format!("{what} to node {g}: {e}"));
                    }
                }
            }
        }
    }
    if report.failures.is_empty() {
        propose(node, true).await?;
        node.wait_image(|i| i.nodes.get(&me).is_some_and(|n| n.tokens.is_empty()))
            .await;
        tracing::info!(
            cells = report.cells_streamed,
            bytes = report.bytes_streamed,
            "left the ring: streamed this node's ranges to the replicas that gained them"
        );
    }
    Ok(report)
}

async fn propose(node: &Node, done: bool) -> Result<(), String> {
    let rec = Record::new(Kind::LeaveRing(LeaveRing {
        node_id: node.local.node_id,
        done,
    }));
    match (node.propose)(rec).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("not committed to the cluster metadata: {e}")),
    }
}

/// Every cell this node holds in `[start, end)`.
async fn read_local_all(node: &Node, start: &[u8], end: &[u8]) -> Result<Mutation, String> {
    let mut out = Vec::new();
    let mut from = start.to_vec();
    loop {
        let (cells, resume) = node
            .read_local(&from, end, None, crate::coordinator::CHUNK_MAX)
            .map_err(|e| e.to_string())?;
        out.extend(cells);
        match resume {
            Some(r) if r > from => from = r,
            _ => return Ok(out),
        }
        tokio::task::yield_now().await;
    }
}
