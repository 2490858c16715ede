//! Who is up, by gossip with a phi-accrual failure detector, as Cassandra's
//! `Gossiper` and `FailureDetector` do (Hayashibara et al., 2004).
//!
//! Every node keeps a heartbeat: a generation (its process's start time, in
//! seconds, so a restart is told apart from a node that carried on) and a
//! version it raises every gossip round. Each round it sends its whole view
//! (every node's generation, version and state: a few bytes per node) to one
//! peer it believes up, and now and then to one it believes down, so a node
//! that comes back is heard of; the peer merges it and answers with its own
//! view. A node's heartbeat thus reaches every other node through any
//! path, and its arrivals feed a window of inter-arrival times per node.
//!
//! Suspicion is phi = -log10(P(no heartbeat for this long)), with arrivals
//! modelled as exponential (Cassandra's choice): `phi = t / mean · log10(e)`.
//! A node is convicted (down) while phi is at or above
//! `phi_convict_threshold` (8, Cassandra's default): with the default round
//! of [`DEFAULT_INTERVAL`], about 18 rounds without news. A paused node
//! (SIGSTOP) is convicted this way though its connections stay open.
//!
//! States, as `nodetool status` shows them: JOINING until the node has
//! streamed the ranges it takes over ([`crate::bootstrap`]), NORMAL, and LEAVING from a controlled shutdown
//! (announced to every peer before the node stops, so coordinators stop
//! sending to it at once rather than after conviction). Up or down is the
//! detector's verdict, never gossiped. The peers to gossip with are the
//! nodes on the metadata quorum's registry: it plays the role of
//! Cassandra's seed list, and holds every node rather than a few.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::exec::Node;
use crate::internode::{Reply, Request};

/// How often a node gossips (Cassandra: 1 s; shorter here so a paused node
/// is convicted in seconds).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);
/// Cassandra's default `phi_convict_threshold`.
pub const DEFAULT_PHI_CONVICT: f64 = 8.0;
/// Inter-arrival times kept per node (Cassandra keeps 1000).
const WINDOW: usize = 100;
/// log10(e): phi of an exponential distribution per unit of mean.
const PHI_FACTOR: f64 = std::f64::consts::LOG10_E;

/// A node's state in its own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Joining = 0,
    Normal = 1,
    Leaving = 2,
}

impl State {
    fn from_u8(b: u8) -> Option<State> {
        match b {
            0 => Some(State::Joining),
            1 => Some(State::Normal),
            2 => Some(State::Leaving),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Joining => "JOINING",
            State::Normal => "NORMAL",
            State::Leaving => "LEAVING",
        }
    }
}

/// One node's heartbeat as gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub node: i32,
    pub generation: i64,
    pub version: u64,
    pub state: State,
}

const HEARTBEAT_LEN: usize = 4 + 8 + 8 + 1;

/// Encodes a view: a count, then each heartbeat.
pub(crate) fn encode_view(view: &[Heartbeat], out: &mut Vec<u8>) {
    out.extend_from_slice(&(view.len() as u32).to_be_bytes());
    for h in view {
        out.extend_from_slice(&h.node.to_be_bytes());
        out.extend_from_slice(&h.generation.to_be_bytes());
        out.extend_from_slice(&h.version.to_be_bytes());
        out.push(h.state as u8);
    }
}

pub(crate) fn decode_view(b: &[u8]) -> Option<Vec<Heartbeat>> {
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let body = &b[4..];
    if body.len() != n.checked_mul(HEARTBEAT_LEN)? {
        return None;
    }
    body.chunks_exact(HEARTBEAT_LEN)
        .map(|c| {
            Some(Heartbeat {
                node: i32::from_be_bytes(c[..4].try_into().ok()?),
                generation: i64::from_be_bytes(c[4..12].try_into().ok()?),
                version: u64::from_be_bytes(c[12..20].try_into().ok()?),
                state: State::from_u8(c[20])?,
            })
        })
        .collect()
}

/// What this node knows of another.
struct Endpoint {
    generation: i64,
    version: u64,
    state: State,
    last: Instant,
    intervals: VecDeque<f64>,
}

/// A node's view of the others, for the coordinator and `keel table status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub node: i32,
    pub generation: i64,
    pub version: u64,
    pub state: State,
    pub phi: f64,
    pub up: bool,
}

pub struct Gossip {
    node: i32,
    generation: i64,
    version: AtomicU64,
    state: Mutex<State>,
    endpoints: Mutex<BTreeMap<i32, Endpoint>>,
    pub interval: Duration,
    pub phi_convict: f64,
}

impl Gossip {
    pub fn new(node: i32, interval: Duration, phi_convict: f64) -> Gossip {
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        Gossip {
            node,
            generation,
            version: AtomicU64::new(0),
            state: Mutex::new(State::Joining),
            endpoints: Mutex::default(),
            interval,
            phi_convict,
        }
    }

    /// This node's id.
    pub fn node(&self) -> i32 {
        self.node
    }

    pub fn set_state(&self, s: State) {
        *self.state.lock().expect("gossip lock") = s;
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    pub fn state(&self) -> State {
        *self.state.lock().expect("gossip lock")
    }

    fn own(&self) -> Heartbeat {
        Heartbeat {
            node: self.node,
            generation: self.generation,
            version: self.version.load(Ordering::Relaxed),
            state: self.state(),
        }
    }

    /// This node's heartbeat and everything it has heard of.
    pub fn view(&self) -> Vec<Heartbeat> {
        let mut v = vec![self.own()];
        let eps = self.endpoints.lock().expect("gossip lock");
        v.extend(eps.iter().map(|(n, e)| Heartbeat {
            node: *n,
            generation: e.generation,
            version: e.version,
            state: e.state,
        }));
        v
    }

    /// Takes in heartbeats heard: a newer one (higher generation, or the
    /// same and a higher version) is an arrival for the detector.
    pub fn merge(&self, view: &[Heartbeat]) {
        self.merge_at(view, Instant::now());
    }

    fn merge_at(&self, view: &[Heartbeat], now: Instant) {
        let mut eps = self.endpoints.lock().expect("gossip lock");
        for h in view.iter().filter(|h| h.node != self.node) {
            match eps.get_mut(&h.node) {
                None => {
                    eps.insert(
                        h.node,
                        Endpoint {
                            generation: h.generation,
                            version: h.version,
                            state: h.state,
                            last: now,
                            intervals: VecDeque::new(),
                        },
                    );
                }
                Some(e) if (h.generation, h.version) > (e.generation, e.version) => {
                    if h.generation != e.generation {
                        // A restart: what was learnt of the old process
                        // says nothing of the new one.
                        e.intervals.clear();
                    } else {
                        let gap = now.saturating_duration_since(e.last).as_secs_f64() * 1000.0;
                        // A gap far beyond the round (a pause, a partition)
                        // is not the rhythm to expect (Cassandra drops them
                        // too, MAX_INTERVAL).
                        if gap <= self.interval.as_secs_f64() * 1000.0 * 10.0 {
                            if e.intervals.len() == WINDOW {
                                e.intervals.pop_front();
                            }
                            e.intervals.push_back(gap);
                        }
                    }
                    e.generation = h.generation;
                    e.version = h.version;
                    e.state = h.state;
                    e.last = now;
                }
                Some(_) => {}
            }
        }
    }

    fn phi_of(&self, e: &Endpoint, now: Instant) -> f64 {
        let mean = if e.intervals.is_empty() {
            // Before any rhythm is known: twice the round, as Cassandra's
            // initial interval.
            self.interval.as_secs_f64() * 2000.0
        } else {
            e.intervals.iter().sum::<f64>() / e.intervals.len() as f64
        }
        // Never below the round: a node raises its version once a round (and
        // on a state change), so gaps shorter than that are two paths
        // delivering successive versions close together, not a faster
        // rhythm. Without the floor a node heard of a few times in a burst
        // (just after it joined) was convicted after a few hundred ms of
        // ordinary silence.
        .max(self.interval.as_secs_f64() * 1000.0);
        let t = now.saturating_duration_since(e.last).as_secs_f64() * 1000.0;
        PHI_FACTOR * t / mean
    }

    /// Whether `node` is believed up: not convicted and not leaving. A node
    /// never heard of is left to the links to judge.
    pub fn alive(&self, node: i32) -> bool {
        if node == self.node {
            return true;
        }
        let now = Instant::now();
        let eps = self.endpoints.lock().expect("gossip lock");
        eps.get(&node)
            .is_none_or(|e| e.state != State::Leaving && self.phi_of(e, now) < self.phi_convict)
    }

    /// Whether `node` says it is still joining (streaming its ranges).
    pub fn is_joining(&self, node: i32) -> bool {
        node != self.node
            && self
                .endpoints
                .lock()
                .expect("gossip lock")
                .get(&node)
                .is_some_and(|e| e.state == State::Joining)
    }

    /// Every node heard of, with its suspicion.
    pub fn peers(&self) -> Vec<Peer> {
        let now = Instant::now();
        let eps = self.endpoints.lock().expect("gossip lock");
        eps.iter()
            .map(|(n, e)| {
                let phi = self.phi_of(e, now);
                Peer {
                    node: *n,
                    generation: e.generation,
                    version: e.version,
                    state: e.state,
                    phi,
                    up: e.state != State::Leaving && phi < self.phi_convict,
                }
            })
            .collect()
    }
}

impl Node {
    /// The answer to a peer's gossip: take its view in, give ours.
    pub(crate) fn gossip_exchange(&self, view: &[Heartbeat]) -> Reply {
        self.gossip.merge(view);
        Reply::Gossip(self.gossip.view())
    }

    /// Sends this node's view to `node` and merges the answer.
    async fn gossip_with(&self, node: i32, timeout: Duration) -> bool {
        let img = self.image();
        let Some(addr) = Self::addr_of(&img, node) else {
            return false;
        };
        match self
            .peers
            .call(node, &addr, &Request::Gossip(self.gossip.view()), timeout)
            .await
        {
            Ok(Reply::Gossip(view)) => {
                self.gossip.merge(&view);
                true
            }
            _ => false,
        }
    }

    /// Tells every peer this node is leaving (a controlled shutdown), so
    /// they stop sending to it now.
    pub async fn announce_leaving(&self) {
        self.gossip.set_state(State::Leaving);
        let img = self.image();
        let peers: Vec<i32> = img
            .nodes
            .values()
            .filter(|n| n.id != self.local.node_id && n.cql_port > 0)
            .map(|n| n.id)
            .collect();
        for n in peers {
            let _ = self.gossip_with(n, self.gossip.interval * 2).await;
        }
    }
}

/// Gossips every round while the node serves.
pub(crate) async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(node.gossip.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u64;
    loop {
        tick.tick().await;
        round += 1;
        let img = node.image();
        let me = node.local.node_id;
        node.gossip.version.fetch_add(1, Ordering::Relaxed);
        let others: Vec<i32> = img
            .nodes
            .values()
            .filter(|n| n.id != me && n.cql_port > 0 && !n.fenced)
            .map(|n| n.id)
            .collect();
        if others.is_empty() {
            continue;
        }
        let (live, dead): (Vec<i32>, Vec<i32>) =
            others.iter().partition(|n| node.gossip.alive(**n));
        let pick = |v: &[i32]| v[(round as usize).wrapping_mul(2654435761) % v.len()];
        let timeout = node.gossip.interval * 2;
        if !live.is_empty() {
            let n = pick(&live);
            let node = node.clone();
            tokio::spawn(async move { node.gossip_with(n, timeout).await });
        }
        // A node believed down hears from us now and then (Cassandra:
        // with probability unreachable / (live + 1)), so its return is seen
        // even if no one else talks to it.
        if !dead.is_empty() && (round as usize).is_multiple_of(live.len() + 1) {
            let n = pick(&dead);
            let node = node.clone();
            tokio::spawn(async move { node.gossip_with(n, timeout).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(node: i32, generation: i64, version: u64) -> Heartbeat {
        Heartbeat {
            node,
            generation,
            version,
            state: State::Normal,
        }
    }

    /// What `g`'s detector says of `node` at `at`.
    fn phi_at(g: &Gossip, node: i32, at: Instant) -> f64 {
        let eps = g.endpoints.lock().unwrap();
        g.phi_of(&eps[&node], at)
    }

    #[test]
    fn silence_raises_phi_until_conviction_and_news_clears_it() {
        let g = Gossip::new(1, Duration::from_millis(100), 8.0);
        let t0 = Instant::now();
        for i in 0..20u64 {
            g.merge_at(&[hb(2, 5, i)], t0 + Duration::from_millis(100 * i));
        }
        let e = |g: &Gossip, at: Instant| phi_at(g, 2, at);
        let last = t0 + Duration::from_millis(1900);
        // A round late: barely suspicious. 1.9 s of silence (19 rounds): phi > 8.
        assert!(e(&g, last + Duration::from_millis(100)) < 1.0);
        let p = e(&g, last + Duration::from_millis(1900));
        assert!(p > 8.0, "{p}");
        // An old heartbeat is no news; a newer one is.
        g.merge_at(&[hb(2, 5, 3)], last + Duration::from_millis(1900));
        assert!(e(&g, last + Duration::from_millis(1900)) > 8.0);
        g.merge_at(&[hb(2, 5, 20)], last + Duration::from_millis(1900));
        assert!(e(&g, last + Duration::from_millis(1900)) < 0.01);
        // A restart (a new generation) starts the rhythm over, whatever its version.
        g.merge_at(&[hb(2, 6, 0)], last + Duration::from_millis(2000));
        assert_eq!(g.endpoints.lock().unwrap()[&2].intervals.len(), 0);
        // Leaving is down at once.
        g.merge(&[Heartbeat {
            state: State::Leaving,
            ..hb(2, 6, 1)
        }]);
        assert!(!g.alive(2));
        assert!(
            g.alive(3) && g.alive(1),
            "unknown nodes and this one are up"
        );
    }

    #[test]
    fn a_burst_of_arrivals_does_not_shorten_the_silence_that_convicts() {
        let g = Gossip::new(1, Duration::from_millis(200), 8.0);
        let t0 = Instant::now();
        // Three versions 5 ms apart (two paths and a state change).
        for i in 0..3u64 {
            g.merge_at(&[hb(2, 5, i)], t0 + Duration::from_millis(5 * i));
        }
        let phi = |after_ms: u64| phi_at(&g, 2, t0 + Duration::from_millis(10 + after_ms));
        // A second of silence is five rounds: not convicted.
        assert!(phi(1000) < 8.0, "{}", phi(1000));
        // 19 rounds is.
        assert!(phi(3800) > 8.0, "{}", phi(3800));
    }

    #[test]
    fn views_round_trip_and_bad_bytes_are_refused() {
        let v = vec![
            hb(1, 7, 9),
            Heartbeat {
                state: State::Joining,
                ..hb(-3, i64::MIN, u64::MAX)
            },
        ];
        let mut b = Vec::new();
        encode_view(&v, &mut b);
        assert_eq!(decode_view(&b), Some(v));
        for cut in 0..b.len() {
            assert_eq!(decode_view(&b[..cut]), None);
        }
        let last = b.len() - 1;
        b[last] = 9;
        assert_eq!(decode_view(&b), None);
        assert_eq!(decode_view(&[0xff, 0xff, 0xff, 0xff]), None);
    }
}
