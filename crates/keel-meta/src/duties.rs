//! The controller's decisions, pure: which nodes to fence or unfence, and
//! which partitions to elect a leader for. No clock and no I/O: the caller
//! passes the times in (milliseconds on any monotonic scale) and proposes
//! the records these return. `keel-etcd`'s controller duty drives them on
//! the Raft leader; `keel-sim` drives the same functions in simulation.

use crate::{
    record::Kind, Image, Node, NodeEpoch, Partition, Record, NO_LEADER, UNCLEAN_LEADER_ELECTION,
};

/// A fenced node heard within this long is live again.
pub const HEARD_RECENTLY_MS: i64 = 1_000;

/// The controller's decision about one node: `Some(true)` fence it,
/// `Some(false)` unfence it, `None` leave it. `last_ms` is when it was last
/// heard, `since_ms` when this controller took over (everyone gets a full
/// session from then, as etcd's lessor renews every lease after an
/// election and KRaft's new controller every broker's session).
pub fn liveness(
    n: &Node,
    last_ms: Option<i64>,
    since_ms: i64,
    now_ms: i64,
    session_ms: i64,
) -> Option<bool> {
    let last = last_ms.map_or(since_ms, |l| l.max(since_ms));
    let silent = now_ms.saturating_sub(last).max(0);
    if !n.fenced && silent > session_ms {
        return Some(true);
    }
    if n.fenced && !n.shut_down && silent < HEARD_RECENTLY_MS && last > since_ms {
        return Some(false);
    }
    None
}

/// The fence and unfence records for every node of `image`, with
/// `heard(node)` the time each was last heard.
pub fn liveness_records(
    image: &Image,
    heard: impl Fn(i32) -> Option<i64>,
    since_ms: i64,
    now_ms: i64,
    session_ms: i64,
) -> Vec<(i32, bool, Record)> {
    let mut out = Vec::new();
    for n in image.nodes.values() {
        let Some(fence) = liveness(n, heard(n.id), since_ms, now_ms, session_ms) else {
            continue;
        };
        let epoch = NodeEpoch {
            node_id: n.id,
            epoch: n.epoch,
            shutdown: false,
        };
        let kind = if fence {
            Kind::FenceNode(epoch)
        } else {
            Kind::UnfenceNode(epoch)
        };
        out.push((n.id, fence, Record::new(kind)));
    }
    out
}

/// An election the controller proposes: the partition, the new leader, and
/// the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Election {
    pub topic: String,
    pub partition: i32,
    pub from: i32,
    pub to: i32,
    pub isr: Vec<i32>,
    pub record: Record,
}

impl Election {
    /// Partition `index` of `topic`, as it is in the image, to be led by `to`.
    fn of(topic: &str, index: usize, p: &Partition, to: i32, unclean: bool) -> Election {
        let partition = i32::try_from(index).unwrap_or(i32::MAX);
        Election {
            topic: topic.to_string(),
            partition,
            from: p.leader,
            to,
            isr: p.isr.clone(),
            record: Record::elect(topic, partition, p.partition_epoch, to, unclean, false),
        }
    }
}

/// Unclean leader election, the explicit availability-over-consistency
/// switch: a partition with no leader (every in-sync replica fenced) whose
/// topic sets `unclean.leader.election.enable=true` goes to its first live
/// replica outside the ISR.
pub fn unclean_elections(image: &Image) -> Vec<Election> {
    let mut out = Vec::new();
    for (name, t) in &image.topics {
        if t.configs.get(UNCLEAN_LEADER_ELECTION).map(String::as_str) != Some("true") {
            continue;
        }
        for (i, p) in t.partitions.iter().enumerate() {
            if p.leader != NO_LEADER {
                continue;
            }
            let Some(&to) = p.replicas.iter().find(|r| image.is_live(**r)) else {
                continue;
            };
            out.push(Election::of(name, i, p, to, true));
        }
    }
    out
}

/// Auto leader rebalance: a partition led by another replica than its
/// preferred one (the first), while the preferred one is live and in the
/// ISR, is handed back to it (a clean election: it holds every committed
/// record).
pub fn preferred_elections(image: &Image) -> Vec<Election> {
    let mut out = Vec::new();
    for (name, t) in &image.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(&preferred) = p.replicas.first() else {
                continue;
            };
            if p.leader == preferred || !image.is_live(preferred) || !p.isr.contains(&preferred) {
                continue;
            }
            out.push(Election::of(name, i, p, preferred, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(fenced: bool, shut_down: bool) -> Node {
        Node {
            id: 1,
            fenced,
            shut_down,
            ..Default::default()
        }
    }

    #[test]
    fn liveness_fences_after_the_session_and_unfences_when_heard() {
        let s = 9_000;
        // Heard 1 s ago: leave it.
        assert_eq!(
            liveness(&node(false, false), Some(9_000), 0, 10_000, s),
            None
        );
        // Silent for 9.5 s: fence.
        assert_eq!(
            liveness(&node(false, false), Some(500), 0, 10_000, s),
            Some(true)
        );
        // Never heard, but this controller took over 2 s ago: a full session first.
        assert_eq!(liveness(&node(false, false), None, 8_000, 10_000, s), None);
        assert_eq!(liveness(&node(false, false), None, 0, 9_500, s), Some(true));
        // Fenced and heard again just now: unfence; unless it shut down.
        assert_eq!(
            liveness(&node(true, false), Some(9_900), 0, 10_000, s),
            Some(false)
        );
        assert_eq!(liveness(&node(true, true), Some(9_900), 0, 10_000, s), None);
        // Fenced and still silent: leave it.
        assert_eq!(liveness(&node(true, false), Some(100), 0, 10_000, s), None);
    }
}
