//! Where a new topic's replicas go: Kafka's rack-aware assignment
//! (`AdminUtils.assignReplicasToBrokersRackAware`, KIP-36). Nodes are taken in
//! a rack-alternated order (one from each rack in turn), partition `p`'s
//! first replica is the `(start + p)`-th of that list, so leaders spread
//! evenly, and each further replica is the next node in the list whose rack
//! the partition does not use yet, until every rack holds one.

use std::collections::{BTreeMap, BTreeSet};

use crate::Node;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Kafka's INVALID_REPLICATION_FACTOR.
    #[error("replication factor {0} is larger than the {1} available brokers")]
    TooFewNodes(usize, usize),
    #[error("replication factor must be at least 1")]
    ZeroFactor,
}

/// Replicas for `partitions` new partitions, `factor` each, over `nodes` (the
/// unfenced ones). `start` rotates the first leader (the controller derives it
/// from the topic, so topics do not all start on the same node).
pub fn place_replicas<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    partitions: usize,
    factor: usize,
    start: usize,
) -> Result<Vec<Vec<i32>>, PlaceError> {
    if factor == 0 {
        return Err(PlaceError::ZeroFactor);
    }
    let list = rack_alternated(nodes);
    let n = list.len();
    if factor > n {
        return Err(PlaceError::TooFewNodes(factor, n));
    }
    let racks: BTreeSet<&str> = list.iter().map(|(_, r)| r.as_str()).collect();
    let mut out = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let first = (start + p) % n;
        let mut replicas = vec![list[first].0];
        let mut used: BTreeSet<&str> = BTreeSet::from([list[first].1.as_str()]);
        // Kafka shifts the second replica by a per-round offset so that a
        // node's followers are not always the same nodes.
        let shift = 1 + (p / n) % (n - 1).max(1);
        let mut i = first;
        let mut step = shift;
        while replicas.len() < factor {
            i = (i + step) % n;
            step = 1;
            let (id, rack) = &list[i];
            if replicas.contains(id) {
                continue;
            }
            let all_racks_used = used.len() == racks.len();
            if used.contains(rack.as_str()) && !all_racks_used {
                // Another rack still lacks a replica (and has a node in the list).
                continue;
            }
            used.insert(rack.as_str());
            replicas.push(*id);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// The nodes ordered one per rack in turn: racks in name order, nodes by id
/// within a rack (nodes without a rack form the rack "").
fn rack_alternated<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<(i32, String)> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for n in nodes {
        by_rack.entry(n.rack.as_str()).or_default().push(n.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut out = Vec::new();
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    for k in 0..deepest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(k) {
                out.push((*id, rack.to_string()));
            }
        }
    }
    out
}
