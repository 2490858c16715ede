//! The tables face's token ring: which nodes hold the replicas of a token.
//!
//! Tokens are Murmur3Partitioner's: a partition key's token is an `i64`, and
//! `i64::MIN` is the partitioner's minimum, never a node's token. Each node
//! holds `num_tokens` tokens (virtual nodes); a node owns the range from the
//! previous token on the ring (exclusive) to its own (inclusive), wrapping
//! past the largest token to the smallest.
//!
//! The registry runs [`allocate`] at the apply of a node's first registration
//! with a CQL address ([`crate::Image::ring`] gives the ring), so every node
//! agrees on the ring; `keel-cql`'s coordinator places replicas with
//! [`Ring::replicas`].

use std::collections::{BTreeMap, BTreeSet};

/// Cassandra 4's default `num_tokens`.
pub const DEFAULT_NUM_TOKENS: usize = 16;
/// Most tokens a node may take (Cassandra allows 1536).
pub const MAX_NUM_TOKENS: usize = 1536;

/// New tokens for a node joining a ring whose tokens and owners are `taken`.
/// The newcomer should end with a fair share, `1/(n+1)` of the ring, taken
/// evenly from the `n` nodes there: each gives up what it holds above a fair
/// share, from its widest ranges (its share of the `count` tokens in
/// proportion to what it gives), each of those split so the newcomer takes
/// the part next to the range's start. That is the aim of Cassandra 4's
/// `allocate_tokens_for_local_replication_factor`, reached more simply.
/// Deterministic: every replica of the metadata that runs it on the same
/// ring gets the same tokens.
pub fn allocate(taken: &[(i64, i32)], count: usize) -> Vec<i64> {
    const SPAN: i128 = 1 << 64;
    let mut ring: Vec<(i64, i32)> = taken
        .iter()
        .copied()
        .filter(|(t, _)| *t != i64::MIN)
        .collect();
    ring.sort_unstable();
    ring.dedup_by_key(|(t, _)| *t);
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return out;
    }
    if ring.is_empty() {
        // Evenly spaced, the first half a step above the minimum token.
        let step = SPAN / count as i128;
        for i in 0..count as i128 {
            out.push((i64::MIN as i128 + step / 2 + i * step) as i64);
        }
        return out;
    }
    // Every range as (start, width, owner): it runs from the token before
    // (exclusive) to its owner's token (inclusive).
    let ranges: Vec<(i128, i128, i32)> = (0..ring.len())
        .map(|i| {
            let (end, owner) = ring[i];
            let prev = ring[(i + ring.len() - 1) % ring.len()].0;
            let mut width = (end as i128 - prev as i128).rem_euclid(SPAN);
            if width == 0 {
                width = SPAN;
            }
            (prev as i128, width, owner)
        })
        .collect();
    let mut held: BTreeMap<i32, i128> = BTreeMap::new();
    for (_, w, o) in &ranges {
        *held.entry(*o).or_default() += w;
    }
    let fair = SPAN / (held.len() as i128 + 1);
    let give: BTreeMap<i32, i128> = held.iter().map(|(o, h)| (*o, (h - fair).max(0))).collect();
    let total_give: i128 = give.values().sum::<i128>().max(1);
    // Tokens per donor, by largest remainder.
    let mut tokens: BTreeMap<i32, usize> = BTreeMap::new();
    let mut rest: Vec<(i128, i32)> = Vec::new();
    let mut given = 0;
    for (o, g) in &give {
        let exact = g * count as i128;
        let k = (exact / total_give) as usize;
        tokens.insert(*o, k);
        given += k;
        rest.push((exact % total_give, *o));
    }
    rest.sort_by(|a, b| b.cmp(a));
    for (_, o) in rest.iter().take(count.saturating_sub(given)) {
        *tokens.get_mut(o).expect("a donor") += 1;
    }
    for (owner, k) in tokens {
        if k == 0 {
            continue;
        }
        let mut mine: Vec<&(i128, i128, i32)> = ranges.iter().filter(|r| r.2 == owner).collect();
        mine.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        mine.truncate(k);
        let widths: i128 = mine.iter().map(|r| r.1).sum::<i128>().max(1);
        // The fraction of each range to take; at most 9/10 so the old owner keeps some.
        let (num, den) = (give[&owner].min(widths * 9 / 10), widths);
        for (start, width, _) in mine {
            let cut = start + (width / den) * num + (width % den) * num / den;
            let mut t = ((cut - i64::MIN as i128).rem_euclid(SPAN) + i64::MIN as i128) as i64;
            // Step off the reserved minimum and off tokens already taken.
            while t == i64::MIN
                || ring.binary_search_by_key(&t, |(x, _)| *x).is_ok()
                || out.contains(&t)
            {
                t = t.wrapping_add(1);
            }
            out.push(t);
        }
    }
    out.sort_unstable();
    out
}

/// How a keyspace places its replicas (its `replication` map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// `SimpleStrategy`: the next `rf` distinct nodes on the ring.
    Simple { rf: usize },
    /// `NetworkTopologyStrategy`: per datacenter, its factor, distinct racks
    /// first.
    Network { per_dc: BTreeMap<String, usize> },
}

impl Strategy {
    /// Reads a keyspace's replication map as `CREATE KEYSPACE` gives it.
    pub fn from_replication(map: &BTreeMap<String, String>) -> Result<Strategy, String> {
        let class = map.get("class").map(String::as_str).unwrap_or_default();
        let class = class.rsplit('.').next().unwrap_or_default();
        let factor = |k: &str, v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("replication factor {k} = '{v}' is not a whole number"))
        };
        match class {
            "SimpleStrategy" => {
                let rf = map
                    .get("replication_factor")
                    .ok_or("SimpleStrategy requires a replication_factor strategy option")?;
                Ok(Strategy::Simple {
                    rf: factor("replication_factor", rf)?,
                })
            }
            "NetworkTopologyStrategy" => {
                let mut per_dc = BTreeMap::new();
                for (k, v) in map {
                    if k != "class" {
                        per_dc.insert(k.clone(), factor(k, v)?);
                    }
                }
                Ok(Strategy::Network { per_dc })
            }
            "LocalStrategy" | "EverywhereStrategy" => Ok(Strategy::Simple { rf: usize::MAX }),
            other => Err(format!(
                "Unable to find replication strategy class '{other}'"
            )),
        }
    }
}

/// One datacenter's progress in a NetworkTopologyStrategy walk.
#[derive(Default)]
struct DcWalk {
    /// Replicas it should get: its factor, or all its nodes if fewer.
    want: usize,
    got: usize,
    /// Distinct racks among its nodes, and those that have a replica.
    racks: usize,
    seen: BTreeSet<String>,
    /// Nodes passed over because their rack already had one.
    skipped: Vec<i32>,
}

/// Where a node stands: its datacenter and rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub datacenter: String,
    pub rack: String,
}

/// The ring: every token with its node, and every node's place.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    tokens: Vec<(i64, i32)>,
    places: BTreeMap<i32, Place>,
}

impl Ring {
    /// A ring of nodes, each with its place and tokens.
    pub fn new(nodes: impl IntoIterator<Item = (i32, Place, Vec<i64>)>) -> Ring {
        let mut r = Ring::default();
        for (id, place, tokens) in nodes {
            r.tokens.extend(tokens.into_iter().map(|t| (t, id)));
            r.places.insert(id, place);
        }
        r.tokens.sort_unstable();
        r.tokens.dedup_by_key(|(t, _)| *t);
        r
    }

    pub fn tokens(&self) -> &[(i64, i32)] {
        &self.tokens
    }

    /// The index of the token that owns `token`: the first at or after it,
    /// wrapping to the smallest.
    fn owner_index(&self, token: i64) -> usize {
        let i = self.tokens.partition_point(|(t, _)| *t < token);
        if i == self.tokens.len() {
            0
        } else {
            i
        }
    }

    /// The last token of the range holding `token`: its owner's token, or
    /// `i64::MAX` in the range that wraps past the largest token (None on an
    /// empty ring).
    pub fn range_end(&self, token: i64) -> Option<i64> {
        let (t, _) = self.tokens.get(self.owner_index(token))?;
        Some(if *t < token { i64::MAX } else { *t })
    }

    /// Every node on the ring with its place.
    pub fn places(&self) -> &BTreeMap<i32, Place> {
        &self.places
    }

    /// The replicas of `token`, in ring order from its owner.
    pub fn replicas(&self, token: i64, strategy: &Strategy) -> Vec<i32> {
        if self.tokens.is_empty() {
            return Vec::new();
        }
        let start = self.owner_index(token);
        let walk = (0..self.tokens.len()).map(|k| self.tokens[(start + k) % self.tokens.len()].1);
        match strategy {
            Strategy::Simple { rf } => {
                let mut out: Vec<i32> = Vec::new();
                for n in walk {
                    if out.len() >= *rf.min(&self.places.len()) {
                        break;
                    }
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
                out
            }
            Strategy::Network { per_dc } => {
                // Cassandra's NetworkTopologyStrategy.calculateNaturalReplicas:
                // per datacenter, take nodes of racks not yet used; once
                // every rack has one, the nodes skipped on the way, in order.
                let mut chosen: Vec<i32> = Vec::new();
                let mut state: BTreeMap<&str, DcWalk> = BTreeMap::new();
                for (dc, rf) in per_dc {
                    let in_dc: Vec<&Place> = self
                        .places
                        .values()
                        .filter(|p| p.datacenter == *dc)
                        .collect();
                    let racks: BTreeSet<&str> = in_dc.iter().map(|p| p.rack.as_str()).collect();
                    state.insert(
                        dc.as_str(),
                        DcWalk {
                            want: (*rf).min(in_dc.len()),
                            racks: racks.len(),
                            ..Default::default()
                        },
                    );
                }
                for n in walk {
                    if chosen.contains(&n) {
                        continue;
                    }
                    let place = &self.places[&n];
                    let Some(d) = state.get_mut(place.datacenter.as_str()) else {
                        continue;
                    };
                    if d.got >= d.want || d.skipped.contains(&n) {
                        continue;
                    }
                    if d.seen.len() == d.racks {
                        chosen.push(n);
                        d.got += 1;
                    } else if d.seen.insert(place.rack.clone()) {
                        chosen.push(n);
                        d.got += 1;
                        if d.seen.len() == d.racks {
                            while d.got < d.want && !d.skipped.is_empty() {
                                chosen.push(d.skipped.remove(0));
                                d.got += 1;
                            }
                        }
                    } else {
                        d.skipped.push(n);
                    }
                    if state.values().all(|d| d.got >= d.want) {
                        break;
                    }
                }
                chosen
            }
        }
    }

    /// Whether the ring has nodes enough for every replica `strategy` asks
    /// for (a datacenter's factor needs that many nodes in it).
    pub fn holds_replicas(&self, strategy: &Strategy) -> bool {
        match strategy {
            Strategy::Simple { rf } => *rf == usize::MAX || self.places.len() >= *rf,
            Strategy::Network { per_dc } => per_dc.iter().all(|(dc, rf)| {
                self.places.values().filter(|p| p.datacenter == *dc).count() >= *rf
            }),
        }
    }

    /// Each node's share of the data under `strategy` (Cassandra's
    /// "effective ownership"): the ring's ranges it is a replica of, as a
    /// fraction of the whole ring.
    pub fn ownership(&self, strategy: &Strategy) -> BTreeMap<i32, f64> {
        const SPAN: f64 = 18_446_744_073_709_551_616.0;
        let mut own: BTreeMap<i32, f64> = self.places.keys().map(|n| (*n, 0.0)).collect();
        let n = self.tokens.len();
        for i in 0..n {
            let end = self.tokens[i].0;
            let prev = self.tokens[(i + n - 1) % n].0;
            let mut width = (end as i128 - prev as i128).rem_euclid(1 << 64) as f64;
            if n == 1 {
                width = SPAN;
            }
            for r in self.replicas(end, strategy) {
                *own.entry(r).or_default() += width / SPAN;
            }
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert_eq, proptest};

    fn place(dc: &str, rack: &str) -> Place {
        Place {
            datacenter: dc.into(),
            rack: rack.into(),
        }
    }

    /// Nodes 1..=n joining one after another, each allocating 16 tokens.
    fn joined(places: &[Place]) -> Ring {
        let mut nodes = Vec::new();
        let mut taken = Vec::new();
        for (i, p) in places.iter().enumerate() {
            let id = i as i32 + 1;
            let t = allocate(&taken, DEFAULT_NUM_TOKENS);
            assert_eq!(t.len(), DEFAULT_NUM_TOKENS);
            taken.extend(t.iter().map(|t| (*t, id)));
            nodes.push((id, p.clone(), t));
        }
        Ring::new(nodes)
    }

    #[test]
    fn allocation_keeps_ownership_even_as_nodes_join() {
        for n in 1..=8 {
            let ring = joined(&vec![place("dc1", "r1"); n]);
            assert_eq!(
                ring.tokens().len(),
                n * DEFAULT_NUM_TOKENS,
                "no token given twice"
            );
            assert!(ring.tokens().iter().all(|(t, _)| *t != i64::MIN));
            let own = ring.ownership(&Strategy::Simple { rf: 1 });
            let total: f64 = own.values().sum();
            assert!((total - 1.0).abs() < 1e-9, "{own:?}");
            let fair = 1.0 / n as f64;
            for (node, share) in &own {
                // Splitting the widest range keeps every share within a
                // factor of 1.5 of a fair one (random tokens do far worse).
                assert!(
                    *share > fair / 1.5 && *share < fair * 1.5,
                    "{n} nodes, node {node}: {share}"
                );
            }
        }
    }

    #[test]
    fn simple_strategy_takes_the_next_distinct_nodes() {
        let ring = joined(&vec![place("dc1", "r1"); 4]);
        for t in [i64::MIN, -1, 0, 1, i64::MAX, 42_424_242] {
            let r = ring.replicas(t, &Strategy::Simple { rf: 3 });
            assert_eq!(r.len(), 3);
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3);
            // The first replica owns the token: the first token at or after it.
            let owner = ring
                .tokens()
                .iter()
                .find(|(x, _)| *x >= t)
                .unwrap_or(&ring.tokens()[0])
                .1;
            assert_eq!(r[0], owner);
        }
        // More replicas asked than nodes: every node, once.
        assert_eq!(ring.replicas(7, &Strategy::Simple { rf: 9 }).len(), 4);
        let own = ring.ownership(&Strategy::Simple { rf: 3 });
        assert!((own.values().sum::<f64>() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn network_topology_spreads_over_racks_and_counts_per_datacenter() {
        let ring = joined(&[
            place("dc1", "a"),
            place("dc1", "a"),
            place("dc1", "b"),
            place("dc1", "c"),
            place("dc2", "x"),
            place("dc2", "x"),
        ]);
        let s = Strategy::from_replication(&BTreeMap::from([
            ("class".to_string(), "NetworkTopologyStrategy".to_string()),
            ("dc1".to_string(), "3".to_string()),
            ("dc2".to_string(), "2".to_string()),
        ]))
        .unwrap();
        for t in (0..50).map(|i| i64::MIN / 50 * (25 - i)) {
            let r = ring.replicas(t, &s);
            let dc1: Vec<i32> = r.iter().copied().filter(|n| *n <= 4).collect();
            let dc2: Vec<i32> = r.iter().copied().filter(|n| *n > 4).collect();
            assert_eq!((dc1.len(), dc2.len()), (3, 2), "{r:?}");
            // Three replicas in dc1 over three racks: one per rack.
            let racks: BTreeSet<&str> = dc1
                .iter()
                .map(|n| match n {
                    1 | 2 => "a",
                    3 => "b",
                    _ => "c",
                })
                .collect();
            assert_eq!(racks.len(), 3, "{r:?}");
        }
    }

    #[test]
    fn replication_maps_are_read_as_cassandra_names_them() {
        let m = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            Strategy::from_replication(&m(&[
                ("class", "org.apache.cassandra.locator.SimpleStrategy"),
                ("replication_factor", "3")
            ])),
            Ok(Strategy::Simple { rf: 3 })
        );
        assert!(Strategy::from_replication(&m(&[("class", "SimpleStrategy")])).is_err());
        assert!(Strategy::from_replication(&m(&[
            ("class", "SimpleStrategy"),
            ("replication_factor", "x")
        ]))
        .is_err());
        assert!(Strategy::from_replication(&m(&[("class", "Nope")])).is_err());
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_and_as_many_as_can_be(
            n in 1usize..8, rf in 1usize..5, token in any::<i64>(),
        ) {
            let ring = joined(&vec![place("dc1", "r1"); n]);
            let r = ring.replicas(token, &Strategy::Simple { rf });
            prop_assert_eq!(r.len(), rf.min(n));
            prop_assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), r.len());
        }
    }
}
