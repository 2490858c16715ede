//! Hinted handoff: a coordinator keeps the mutations a replica missed while
//! it was down (or did not acknowledge) and sends them when it is up again,
//! as Cassandra's `HintsService`. Hints are kept only while the replica has
//! been down for less than `max_hint_window` (Cassandra's default, 3 h);
//! after that, repair must bring it up to date.
//!
//! Kept in memory, at most [`HINTS_MAX_BYTES`] per replica: a coordinator
//! that restarts loses its hints (Cassandra writes them to disk, flushed
//! every 10 s, so it loses up to that window), and the missed writes then
//! come back only through read repair. A hint is never needed for an
//! acknowledged write to survive: the level's replicas hold it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_table::Mutation;

use crate::coordinator::WRITE_TIMEOUT;
use crate::exec::Node;
use crate::internode::{Reply, Request};

/// Most bytes of hints kept for one replica.
pub const HINTS_MAX_BYTES: usize = 64 << 20;
/// How often a coordinator looks for replicas with hints that are up again.
pub const REPLAY_EVERY: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Queue {
    /// When the first hint of this outage was kept.
    since: Option<Instant>,
    mutations: VecDeque<Mutation>,
    bytes: usize,
}

/// The hints a coordinator holds, per replica.
pub struct Hints {
    window: Duration,
    queues: Mutex<BTreeMap<i32, Queue>>,
    pub stored: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: AtomicU64,
}

fn size(m: &Mutation) -> usize {
    m.iter().map(|(k, c)| k.len() + c.encoded_len() + 8).sum()
}

impl Hints {
    /// Hints kept for up to `window` of a replica's outage (zero: none).
    pub fn new(window: Duration) -> Hints {
        Hints {
            window,
            queues: Mutex::new(BTreeMap::new()),
            stored: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// Keeps `m` for `node`; false if it was not kept (hints off, the
    /// outage longer than the window, or the replica's hints full).
    pub fn store(&self, node: i32, m: Mutation) -> bool {
        if self.window.is_zero() || m.is_empty() {
            return false;
        }
        let mut queues = self.queues.lock().expect("hints lock");
        let q = queues.entry(node).or_default();
        let since = *q.since.get_or_insert_with(Instant::now);
        let n = size(&m);
        if since.elapsed() > self.window || q.bytes + n > HINTS_MAX_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.bytes += n;
        q.mutations.push_back(m);
        self.stored.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Replicas with hints waiting.
    fn waiting(&self) -> Vec<i32> {
        self.queues
            .lock()
            .expect("hints lock")
            .iter()
            .filter(|(_, q)| !q.mutations.is_empty())
            .map(|(n, _)| *n)
            .collect()
    }

    fn front(&self, node: i32) -> Option<Mutation> {
        self.queues
            .lock()
            .expect("hints lock")
            .get(&node)?
            .mutations
            .front()
            .cloned()
    }

    fn pop(&self, node: i32) {
        let mut queues = self.queues.lock().expect("hints lock");
        if let Some(q) = queues.get_mut(&node) {
            if let Some(m) = q.mutations.pop_front() {
                q.bytes -= size(&m);
            }
            if q.mutations.is_empty() {
                queues.remove(&node);
            }
        }
    }

    /// Hints waiting for `node` (for tests and metrics).
    pub fn pending(&self, node: i32) -> usize {
        self.queues
            .lock()
            .expect("hints lock")
            .get(&node)
            .map_or(0, |q| q.mutations.len())
    }
}

/// Sends each replica that is up again the hints kept for it, oldest
/// first, until the node stops.
pub async fn replay(node: Arc<Node>) {
    loop {
        tokio::time::sleep(REPLAY_EVERY).await;
        let img = node.image();
        for id in node.hints.waiting() {
            if !node.is_up(&img, id) {
                continue;
            }
            let Some(n) = img.nodes.get(&id) else {
                continue;
            };
            let addr = format!("{}:{}", n.cql_host, n.cql_port);
            while let Some(m) = node.hints.front(id) {
                match node
                    .peers
                    .call(id, &addr, &Request::Mutate(m), WRITE_TIMEOUT)
                    .await
                {
                    Ok(Reply::Done) => {
                        node.hints.pop(id);
                        node.hints.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_table::Cell;

    #[test]
    fn hints_are_kept_in_order_bounded_and_off_at_zero() {
        let m = |v: u8| -> Mutation { vec![(vec![v], Cell::live(1, vec![v]))] };
        let h = Hints::new(Duration::from_secs(60));
        assert!(h.store(2, m(1)) && h.store(2, m(2)));
        assert_eq!(h.waiting(), vec![2]);
        assert_eq!(h.front(2), Some(m(1)));
        h.pop(2);
        assert_eq!(h.front(2), Some(m(2)));
        h.pop(2);
        assert!(h.waiting().is_empty() && h.pending(2) == 0);
        let off = Hints::new(Duration::ZERO);
        assert!(!off.store(2, m(1)));
        let big: Mutation = vec![(vec![0], Cell::live(1, vec![0; HINTS_MAX_BYTES]))];
        assert!(!h.store(3, big));
        assert_eq!(h.dropped.load(Ordering::Relaxed), 1);
    }
}
