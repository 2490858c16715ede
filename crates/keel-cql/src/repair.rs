//! Anti-entropy repair: replicas compare Merkle trees of each token range
//! and stream each other only the cells where they differ (Cassandra's
//! `nodetool repair`, full repair).
//!
//! For every table and every range of the ring (split where it wraps), each
//! replica hashes its cells into [`LEAVES`] leaves, equal slices of the
//! range by token (SHA-256 over keys and cells in key order: replicas with
//! the same data give the same leaves whatever order they got it in). Only
//! the hashes cross the network when a range agrees. Where leaves differ,
//! the driver reads that slice from every replica, merges the cells last-
//! write-wins and sends each replica the cells it lacks or holds older, as
//! read repair does for one partition; then it hashes the range again to
//! check the trees now agree.
//!
//! The driver is a client of the internode protocol ([`crate::internode`]):
//! `keel table repair` runs it with the ring read from a node's admin
//! listener. A replica that cannot be reached fails its ranges (reported);
//! the others are still repaired.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_meta::ring::{Ring, Strategy};
use keel_table::cell::{self, Cell, TABLE_ID_LEN};
use keel_table::Mutation;
use sha2::{Digest, Sha256};

use crate::exec::Node;
use crate::internode::{LinkError, Peers, Reply, Request};

/// Leaves of one range's tree (a tree of depth 6).
pub const LEAVES: usize = 64;
/// Cells one replica sends per read of a differing leaf.
const READ_CHUNK: u32 = 4 << 20;
/// How long one replica may take to hash a range or answer a read.
const REPAIR_TIMEOUT: Duration = Duration::from_secs(60);

/// A leaf's hash; all zeros when the slice holds no cell.
pub use crate::coordinator::Hash;

/// The key range `[start, end)` of a table's tokens `first..=last`.
pub(crate) fn key_range(table: &[u8], first: i64, last: i64) -> (Vec<u8>, Vec<u8>) {
    let mut start = table.to_vec();
    start.extend_from_slice(&cell::token_key(first));
    let end = if last == i64::MAX {
        cell::prefix_end(table)
    } else {
        let mut e = table.to_vec();
        e.extend_from_slice(&cell::token_key(last + 1));
        e
    };
    (start, end)
}

/// Which of `leaves` equal slices of `first..=last` a token falls in.
fn leaf_of(token: i64, first: i64, last: i64, leaves: usize) -> usize {
    let span = last as i128 - first as i128 + 1;
    let i = (token as i128 - first as i128) * leaves as i128 / span;
    (i.clamp(0, leaves as i128 - 1)) as usize
}

/// The tokens of leaf `i`: `first..=last` of it.
fn leaf_tokens(i: usize, first: i64, last: i64, leaves: usize) -> Option<(i64, i64)> {
    let span = last as i128 - first as i128 + 1;
    // The smallest token whose leaf is `i`: ceil(i * span / leaves).
    let lo = |i: usize| first as i128 + (i as i128 * span + leaves as i128 - 1) / leaves as i128;
    let a = lo(i);
    let b = if i + 1 == leaves {
        last as i128
    } else {
        lo(i + 1) - 1
    };
    (a <= b).then_some((a as i64, b as i64))
}

impl Node {
    /// This replica's leaves for a table's tokens `first..=last`.
    pub(crate) fn merkle_leaves(
        &self,
        table: &[u8],
        first: i64,
        last: i64,
        leaves: u32,
    ) -> Result<Vec<Hash>, String> {
        if table.len() != TABLE_ID_LEN || first > last || !(1..=4096).contains(&leaves) {
            return Err("malformed Merkle tree request".into());
        }
        let n = leaves as usize;
        let (start, end) = key_range(table, first, last);
        let mut hashers: Vec<Option<Sha256>> = (0..n).map(|_| None).collect();
        let mut enc = Vec::new();
        for item in self.engine.scan(&start, &end, None) {
            let (k, c) = item.map_err(|e| format!("read failed: {e}"))?;
            let Some(token) = cell::split_token(&k) else {
                continue;
            };
            let h = hashers[leaf_of(token, first, last, n)].get_or_insert_with(Sha256::new);
            enc.clear();
            c.encode_into(&mut enc);
            h.update((k.len() as u32).to_be_bytes());
            h.update(&k);
            h.update((enc.len() as u32).to_be_bytes());
            h.update(&enc);
        }
        Ok(hashers
            .into_iter()
            .map(|h| h.map(|h| h.finalize().into()).unwrap_or_default())
            .collect())
    }
}

/// A table to repair.
#[derive(Debug, Clone)]
pub struct Target {
    pub keyspace: String,
    pub table: String,
    pub id: Vec<u8>,
    pub strategy: Strategy,
}

/// What a repair did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Token ranges (per table) whose replicas' trees were compared.
    pub ranges: u64,
    /// Of those, ranges where the trees differed.
    pub ranges_differed: u64,
    /// Leaves that differed, over all ranges.
    pub leaves_differed: u64,
    /// Cells sent to replicas that lacked them (or held older ones).
    pub cells_streamed: u64,
    pub bytes_streamed: u64,
    /// Bytes each node received.
    pub streamed_to: BTreeMap<i32, u64>,
    /// Ranges that differed and still differ after streaming (writes came
    /// in meanwhile, or a replica failed).
    pub ranges_still_differing: u64,
    /// Ranges not repaired, and why.
    pub failures: Vec<String>,
}

/// Asks one replica, as the coordinator's links do.
async fn ask(
    peers: &Arc<Peers>,
    addrs: &BTreeMap<i32, String>,
    node: i32,
    req: &Request,
) -> Result<Reply, String> {
    let addr = addrs
        .get(&node)
        .ok_or_else(|| format!("node {node} has no address"))?;
    match peers.call(node, addr, req, REPAIR_TIMEOUT).await {
        Ok(Reply::Failed(why)) => Err(format!("node {node}: {why}")),
        Ok(r) => Ok(r),
        Err(LinkError::Timeout) => Err(format!("node {node}: timed out")),
        Err(LinkError::Unreachable(why)) => Err(format!("node {node}: {why}")),
    }
}

async fn trees(
    peers: &Arc<Peers>,
    addrs: &BTreeMap<i32, String>,
    replicas: &[i32],
    table: &[u8],
    first: i64,
    last: i64,
) -> Result<Vec<Vec<Hash>>, String> {
    let req = Request::Merkle {
        table: table.to_vec(),
        first,
        last,
        leaves: LEAVES as u32,
    };
    let mut out = Vec::new();
    let calls: Vec<_> = replicas
        .iter()
        .map(|n| {
            let (peers, addrs, req, n) = (peers.clone(), addrs.clone(), req.clone(), *n);
            tokio::spawn(async move { ask(&peers, &addrs, n, &req).await })
        })
        .collect();
    for c in calls {
        match c.await.map_err(|e| e.to_string())?? {
            Reply::Hashes(h) if h.len() == LEAVES => out.push(h),
            other => return Err(format!("unexpected reply to a Merkle request: {other:?}")),
        }
    }
    Ok(out)
}

/// Every cell one replica holds in `[start, end)`.
pub(crate) async fn read_all(
    peers: &Arc<Peers>,
    addrs: &BTreeMap<i32, String>,
    node: i32,
    start: &[u8],
    end: &[u8],
) -> Result<Mutation, String> {
    let mut out = Vec::new();
    let mut from = start.to_vec();
    loop {
        let req = Request::Read {
            start: from.clone(),
            end: end.to_vec(),
            partition: None,
            max_bytes: READ_CHUNK,
            digest: false,
        };
        match ask(peers, addrs, node, &req).await? {
            Reply::Cells { cells, resume } => {
                out.extend(cells);
                match resume {
                    Some(r) if r > from => from = r,
                    _ => return Ok(out),
                }
            }
            other => return Err(format!("unexpected reply to a read: {other:?}")),
        }
    }
}

/// Repairs one slice of a table's tokens on `replicas`: every replica ends
/// with every cell's newest version; what was sent is added to `report`.
async fn sync_slice(
    peers: &Arc<Peers>,
    addrs: &BTreeMap<i32, String>,
    replicas: &[i32],
    table: &[u8],
    first: i64,
    last: i64,
    report: &mut Report,
) -> Result<(), String> {
    let (start, end) = key_range(table, first, last);
    let mut held: Vec<BTreeMap<Vec<u8>, Cell>> = Vec::new();
    for n in replicas {
        held.push(
            read_all(peers, addrs, *n, &start, &end)
                .await?
                .into_iter()
                .collect(),
        );
    }
    let mut merged: BTreeMap<&[u8], &Cell> = BTreeMap::new();
    for h in &held {
        for (k, c) in h {
            match merged.get(k.as_slice()) {
                Some(m) if !c.wins_over(m) => {}
                _ => {
                    merged.insert(k, c);
                }
            }
        }
    }
    for (i, n) in replicas.iter().enumerate() {
        let missing: Mutation = merged
            .iter()
            .filter(|(k, c)| held[i].get(**k).is_none_or(|have| c.wins_over(have)))
            .map(|(k, c)| (k.to_vec(), (*c).clone()))
            .collect();
        if missing.is_empty() {
            continue;
        }
        send_cells(peers, addrs, *n, missing, report).await?;
    }
    Ok(())
}

/// Sends `cells` to `node` in mutations of about 1 MiB each, adding what
/// was sent to `report`.
pub(crate) async fn send_cells(
    peers: &Arc<Peers>,
    addrs: &BTreeMap<i32, String>,
    node: i32,
    cells: Mutation,
    report: &mut Report,
) -> Result<(), String> {
    let mut batch: Mutation = Vec::new();
    let mut size = 0usize;
    let mut batches = Vec::new();
    for (k, c) in cells {
        size += k.len() + c.encoded_len();
        batch.push((k, c));
        if size >= 1 << 20 {
            batches.push(std::mem::take(&mut batch));
            size = 0;
        }
    }
    batches.push(batch);
    for b in batches.into_iter().filter(|b| !b.is_empty()) {
        let bytes: u64 = b
            .iter()
            .map(|(k, c)| (k.len() + c.encoded_len()) as u64)
            .sum();
        let cells = b.len() as u64;
        match ask(peers, addrs, node, &Request::Mutate(b)).await? {
            Reply::Done => {}
            other => return Err(format!("unexpected reply to a mutation: {other:?}")),
        }
        report.cells_streamed += cells;
        report.bytes_streamed += bytes;
        *report.streamed_to.entry(node).or_default() += bytes;
    }
    Ok(())
}

/// The ring's ranges as inclusive token slices, each with its last token
/// (the one whose owner heads its replicas): `(first, last)` pieces, the
/// range that wraps past the largest token split in two.
pub fn slices(ring: &Ring) -> Vec<(i64, i64, i64)> {
    let tokens = ring.tokens();
    let mut out = Vec::new();
    for (i, (t, _)) in tokens.iter().enumerate() {
        let prev = if i == 0 {
            tokens[tokens.len() - 1].0
        } else {
            tokens[i - 1].0
        };
        if prev < *t {
            out.push((prev + 1, *t, *t));
        } else {
            // (prev, MAX] and [MIN, t]: the range that wraps.
            if prev < i64::MAX {
                out.push((prev + 1, i64::MAX, *t));
            }
            out.push((i64::MIN, *t, *t));
        }
    }
    out
}

/// Repairs `targets` on every range of `ring`; `addrs`: each node's CQL
/// address (where the internode protocol is served).
pub async fn repair(
    peers: &Arc<Peers>,
    addrs: &BTreeMap<i32, String>,
    ring: &Ring,
    targets: &[Target],
) -> Report {
    let mut report = Report::default();
    for t in targets {
        for (first, last, owner) in slices(ring) {
            let replicas = ring.replicas(owner, &t.strategy);
            if replicas.len() < 2 {
                continue;
            }
            let what = format!("{}.{} tokens {first}..={last}", t.keyspace, t.table);
            report.ranges += 1;
            let leaves = match trees(peers, addrs, &replicas, &t.id, first, last).await {
                Ok(l) => l,
                Err(e) => {
                    report.failures.push(format!("{what}: {e}"));
                    continue;
                }
            };
            let differ: Vec<usize> = (0..LEAVES)
                .filter(|i| leaves.iter().any(|l| l[*i] != leaves[0][*i]))
                .collect();
            if differ.is_empty() {
                continue;
            }
            report.ranges_differed += 1;
            report.leaves_differed += differ.len() as u64;
            let mut failed = false;
            for i in differ {
                let Some((a, b)) = leaf_tokens(i, first, last, LEAVES) else {
                    continue;
                };
                if let Err(e) = sync_slice(peers, addrs, &replicas, &t.id, a, b, &mut report).await
                {
                    report.failures.push(format!("{what}: {e}"));
                    failed = true;
                    break;
                }
            }
            let agree = !failed
                && trees(peers, addrs, &replicas, &t.id, first, last)
                    .await
                    .is_ok_and(|l| l.iter().all(|x| *x == l[0]));
            if !agree {
                report.ranges_still_differing += 1;
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_cover_a_slice_exactly_once_in_order() {
        for (first, last) in [
            (i64::MIN, i64::MAX),
            (-5, 100),
            (7, 7),
            (i64::MAX - 10, i64::MAX),
            (0, 63),
        ] {
            let mut next = first as i128;
            for i in 0..LEAVES {
                if let Some((a, b)) = leaf_tokens(i, first, last, LEAVES) {
                    assert_eq!(a as i128, next, "{first}..={last} leaf {i}");
                    assert!(a <= b);
                    assert_eq!(leaf_of(a, first, last, LEAVES), i);
                    assert_eq!(leaf_of(b, first, last, LEAVES), i);
                    next = b as i128 + 1;
                }
            }
            assert_eq!(next, last as i128 + 1, "{first}..={last}");
        }
    }

    #[test]
    fn slices_cover_the_ring_once() {
        let place = keel_meta::ring::Place {
            datacenter: "dc".into(),
            rack: "r".into(),
        };
        let ring = Ring::new([
            (1, place.clone(), vec![-100, 50]),
            (2, place, vec![i64::MAX]),
        ]);
        let s = slices(&ring);
        assert_eq!(
            s,
            vec![
                (i64::MIN, -100, -100),
                (-99, 50, 50),
                (51, i64::MAX, i64::MAX)
            ]
        );
        let ring = Ring::new([(
            1,
            keel_meta::ring::Place {
                datacenter: "dc".into(),
                rack: "r".into(),
            },
            vec![0],
        )]);
        assert_eq!(slices(&ring), vec![(1, i64::MAX, 0), (i64::MIN, 0, 0)]);
    }
}
