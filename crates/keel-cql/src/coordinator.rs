//! The coordinator: any node that receives a statement sends its mutations
//! and reads to the replicas the ring names for each partition, and answers
//! when as many of them as the consistency level needs have.
//!
//! - **Availability first**: a level that the replicas believed up cannot
//!   meet gets Unavailable (`required`, `alive`) at once, before anything is
//!   written, as Cassandra's `AbstractWriteResponseHandler.assureSufficientLiveNodes`.
//!   Up means registered and not fenced on the quorum, not convicted by the
//!   gossip's phi-accrual detector nor leaving ([`crate::gossip`]), and not
//!   marked down by a failed link ([`crate::internode`]).
//! - **Writes** go to every replica believed up; the answer comes when the
//!   level is met, the rest finish in the background. No reply in time:
//!   WriteTimeout with `received`/`block_for`.
//! - **Reads** ask the fewest replicas that meet the level (this node first
//!   when it is one): the first for data, the others for a digest of theirs
//!   (Cassandra's digest reads). Equal digests answer at once; on a mismatch
//!   the others send data too, the cells are merged last-write-wins, and
//!   every replica that answered with an older or missing cell is repaired
//!   before the answer (Cassandra's blocking read repair).
//! - **Hints**: a replica believed down, or one that did not acknowledge,
//!   gets the write later from [`crate::hints`]; ANY is met by a hint alone.
//! - Key ranges spanning several token ranges (full scans) are read one
//!   token range at a time, each from its own replicas; long ranges come in
//!   chunks of at most [`CHUNK_MAX`] bytes per replica.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::message_error::WriteType;
use keel_meta::ring::{Ring, Strategy};
use keel_meta::Image;
use keel_table::cell::{self, TABLE_ID_LEN};
use keel_table::{Cell, Mutation};
use tokio::sync::mpsc;

use crate::error::CqlError;
use crate::exec::Node;
use crate::internode::{LinkError, Reply, Request};
use crate::table::TableSchema;

/// How long a coordinator waits for write acknowledgements (Cassandra's
/// `write_request_timeout`, 2 s).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long it waits for read replies (Cassandra's `read_request_timeout`, 5 s).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a schema change waits for the other nodes to apply it
/// (drivers' `max_schema_agreement_wait`, 10 s).
pub const SCHEMA_AGREEMENT_WAIT: Duration = Duration::from_secs(10);
/// A read still short of its level this long after it was sent asks one
/// more replica (Cassandra's `speculative_retry`, there a latency percentile).
pub const SPECULATE_AFTER: Duration = Duration::from_millis(100);
/// Most bytes of cells one replica returns for one chunk of a read.
pub const CHUNK_MAX: u32 = 4 << 20;
/// The first chunk of a local read: small, so LIMIT 1 reads little.
pub const FIRST_CHUNK: u32 = 64 << 10;

/// A replica's answer to a read: cells and where they stopped short (None:
/// they did not), or the hash of that answer.
#[derive(Debug)]
enum Answer {
    Data(Mutation, Option<Vec<u8>>),
    Digest(Hash),
}

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The digest of a read's answer: every key and cell (timestamps and TTLs
/// included) and where it stopped, so two replicas' digests are equal
/// exactly when their answers are.
pub fn digest(cells: &Mutation, resume: Option<&[u8]>) -> Hash {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut enc = Vec::new();
    for (k, c) in cells {
        enc.clear();
        c.encode_into(&mut enc);
        h.update((k.len() as u32).to_be_bytes());
        h.update(k);
        h.update((enc.len() as u32).to_be_bytes());
        h.update(&enc);
    }
    match resume {
        Some(r) => {
            h.update([1]);
            h.update(r);
        }
        None => h.update([0]),
    }
    h.finalize().into()
}

/// What a consistency level needs: per datacenter (None: any), how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFor {
    need: Vec<(Option<String>, usize)>,
}

impl BlockFor {
    /// The acknowledgements `cl` needs from the replicas of a keyspace
    /// replicated by `strategy`, seen from `local_dc`.
    pub fn new(cl: Consistency, strategy: &Strategy, local_dc: &str) -> BlockFor {
        // No map built per request: a SimpleStrategy keyspace's every
        // replica counts as local, as Cassandra's does.
        let (total, local_rf) = match strategy {
            Strategy::Simple { rf } => (*rf, *rf),
            Strategy::Network { per_dc } => (
                per_dc.values().sum(),
                per_dc.get(local_dc).copied().unwrap_or(0),
            ),
        };
        let local = |n: usize| vec![(Some(local_dc.to_string()), n)];
        let quorum = || vec![(None, total / 2 + 1)];
        let need = match cl {
            Consistency::Any | Consistency::One => vec![(None, 1)],
            Consistency::Two => vec![(None, 2)],
            Consistency::Three => vec![(None, 3)],
            Consistency::All => vec![(None, total)],
            Consistency::LocalOne => local(1),
            Consistency::LocalQuorum | Consistency::LocalSerial => local(local_rf / 2 + 1),
            Consistency::EachQuorum => match strategy {
                Strategy::Network { per_dc } => per_dc
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(dc, n)| (Some(dc.clone()), n / 2 + 1))
                    .collect(),
                Strategy::Simple { .. } => quorum(),
            },
            _ => quorum(),
        };
        BlockFor { need }
    }

    /// One more acknowledgement, from a pending replica in `dc`: wherever
    /// the level counts that datacenter (Cassandra's `blockForWithPending`).
    pub fn add_pending(&mut self, dc: &str) {
        for (d, n) in &mut self.need {
            if d.as_deref().is_none_or(|d| d == dc) {
                *n += 1;
            }
        }
    }

    /// How many acknowledgements in all.
    pub fn required(&self) -> i32 {
        self.need.iter().map(|(_, n)| *n as i32).sum()
    }

    /// Whether `nodes` (each with its datacenter) meet the level.
    pub fn met<'a>(&self, nodes: impl Iterator<Item = &'a str> + Clone) -> bool {
        self.need.iter().all(|(dc, n)| {
            nodes
                .clone()
                .filter(|d| dc.as_deref().is_none_or(|want| want == *d))
                .count()
                >= *n
        })
    }

    /// Of `nodes`, how many count towards the level.
    pub fn counted<'a>(&self, nodes: impl Iterator<Item = &'a str> + Clone) -> i32 {
        if self.need.iter().any(|(dc, _)| dc.is_none()) {
            return nodes.count() as i32;
        }
        nodes
            .filter(|d| self.need.iter().any(|(dc, _)| dc.as_deref() == Some(*d)))
            .count() as i32
    }
}

/// Where the replicas of one partition are, for one request.
pub(crate) struct Placement {
    /// Every replica, in ring order (for a write, then its pending replicas).
    pub(crate) replicas: Vec<i32>,
    /// Each replica's datacenter.
    dcs: BTreeMap<i32, String>,
    pub(crate) block: BlockFor,
    /// The datacenter of each pending replica (see [`Node::write_placement`]).
    pending: Vec<String>,
}

impl Placement {
    /// `block` raised by this placement's pending replicas.
    pub(crate) fn with_pending(&self, mut block: BlockFor) -> BlockFor {
        for dc in &self.pending {
            block.add_pending(dc);
        }
        block
    }

    pub(crate) fn dcs_of<'a>(
        &'a self,
        nodes: &'a [i32],
    ) -> impl Iterator<Item = &'a str> + Clone + 'a {
        nodes
            .iter()
            .map(|n| self.dcs.get(n).map(String::as_str).unwrap_or_default())
    }
}

/// The token a cell key's partition has (keys start with the table id and
/// the token).
fn key_token(key: &[u8]) -> Option<i64> {
    cell::split_token(key)
}

/// The smallest key above `key`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// What the coordinator derives from one metadata image (its applied
/// index): the rings as they are and as they will be once the nodes leaving
/// have left (None: none is), table schemas, and keyspaces' replication by
/// table id. Each is built on first use and all are dropped together when
/// the image changes, so a request neither rebuilds a ring, re-parses column
/// types and replication options, nor scans every keyspace for a table id.
#[derive(Default)]
pub(crate) struct ImageCache {
    applied: u64,
    rings: Option<(Arc<Ring>, Option<Arc<Ring>>)>,
    pub(crate) tables: HashMap<String, HashMap<String, Arc<TableSchema>>>,
    pub(crate) strategies: HashMap<Vec<u8>, Arc<Strategy>>,
}

impl Node {
    /// The cache of `img`, emptied first if it held an older image's.
    pub(crate) fn image_cache(&self, img: &Image) -> std::sync::MutexGuard<'_, ImageCache> {
        let mut cached = self.image_cache.lock().expect("image cache lock");
        if cached.applied != img.applied {
            *cached = ImageCache {
                applied: img.applied,
                ..ImageCache::default()
            };
        }
        cached
    }

    fn rings(&self, img: &Image) -> (Arc<Ring>, Option<Arc<Ring>>) {
        self.image_cache(img)
            .rings
            .get_or_insert_with(|| (Arc::new(img.ring()), img.ring_after_leaving().map(Arc::new)))
            .clone()
    }

    /// The ring of the image, rebuilt only when the image changes.
    pub(crate) fn ring(&self, img: &Image) -> Arc<Ring> {
        self.rings(img).0
    }

    /// Where a write of `token` goes: its replicas, and while a node leaves
    /// the ring, the replicas that gain the range (pending), each counted
    /// on top of the level, as Cassandra's `blockFor + pending` does, so the
    /// level still holds among the replicas once the node has left.
    pub(crate) fn write_placement(
        &self,
        img: &Image,
        ring: &Ring,
        strategy: &Strategy,
        token: i64,
        cl: Consistency,
    ) -> Placement {
        let mut p = self.placement(ring, strategy, token, cl);
        let after = self.rings(img).1;
        if let Some(after) = after {
            for n in after.replicas(token, strategy) {
                if !p.replicas.contains(&n) {
                    let dc = after
                        .places()
                        .get(&n)
                        .map(|p| p.datacenter.clone())
                        .unwrap_or_default();
                    p.block.add_pending(&dc);
                    p.replicas.push(n);
                    p.dcs.insert(n, dc.clone());
                    p.pending.push(dc);
                }
            }
        }
        p
    }

    /// The replication of a table id's keyspace, parsed once per metadata
    /// image (see [`ImageCache`]).
    pub(crate) fn strategy_of(&self, img: &Image, table: &[u8]) -> Result<Arc<Strategy>, CqlError> {
        let mut cache = self.image_cache(img);
        if let Some(s) = cache.strategies.get(table) {
            return Ok(s.clone());
        }
        let ks = img
            .keyspaces
            .values()
            .find(|k| k.tables.values().any(|t| t.id == table))
            .ok_or_else(|| CqlError::Invalid("the table was dropped".into()))?;
        let strategy =
            Arc::new(Strategy::from_replication(&ks.replication).map_err(CqlError::Config)?);
        cache.strategies.insert(table.to_vec(), strategy.clone());
        Ok(strategy)
    }

    pub(crate) fn placement(
        &self,
        ring: &Ring,
        strategy: &Strategy,
        token: i64,
        cl: Consistency,
    ) -> Placement {
        let mut replicas = ring.replicas(token, strategy);
        if ring.tokens().is_empty() {
            // No node has tokens yet (this one has not registered): it holds
            // what it is sent, as a single node does.
            replicas = vec![self.local.node_id];
        }
        let dcs = replicas
            .iter()
            .map(|n| {
                let dc = ring
                    .places()
                    .get(n)
                    .map(|p| p.datacenter.clone())
                    .unwrap_or_else(|| self.local.datacenter.clone());
                (*n, dc)
            })
            .collect();
        Placement {
            replicas,
            dcs,
            block: BlockFor::new(cl, strategy, &self.local.datacenter),
            pending: Vec::new(),
        }
    }

    fn hints_off(&self) -> bool {
        self.local.max_hint_window.is_zero()
    }

    /// Whether the coordinator believes `node` is up.
    pub(crate) fn is_up(&self, img: &Image, node: i32) -> bool {
        if node == self.local.node_id {
            return true;
        }
        img.nodes
            .get(&node)
            .is_some_and(|n| !n.fenced && n.cql_port > 0)
            && self.peers.is_up(node)
            && self.gossip.alive(node)
    }

    pub(crate) fn addr_of(img: &Image, node: i32) -> Option<String> {
        let n = img.nodes.get(&node)?;
        Some(format!("{}:{}", n.cql_host, n.cql_port))
    }

    /// Replicas up, or Unavailable if they cannot meet the level.
    pub(crate) fn alive(
        &self,
        img: &Image,
        p: &Placement,
        cl: Consistency,
    ) -> Result<Vec<i32>, CqlError> {
        let alive: Vec<i32> = p
            .replicas
            .iter()
            .copied()
            .filter(|n| self.is_up(img, *n))
            .collect();
        if !p.block.met(p.dcs_of(&alive)) {
            return Err(CqlError::Unavailable {
                cl,
                required: p.block.required(),
                alive: p.block.counted(p.dcs_of(&alive)),
            });
        }
        Ok(alive)
    }

    /// Writes `m` at `cl` as a single statement's write.
    pub(crate) async fn write(&self, m: Mutation, cl: Consistency) -> Result<(), CqlError> {
        self.write_as(m, cl, WriteType::Simple).await
    }

    /// Writes `m` to the replicas of each of its partitions and waits until
    /// each partition's level is met.
    pub(crate) async fn write_as(
        &self,
        m: Mutation,
        cl: Consistency,
        write_type: WriteType,
    ) -> Result<(), CqlError> {
        if m.is_empty() {
            return Ok(());
        }
        let img = self.image();
        let ring = self.ring(&img);
        // Cells grouped by the replicas they go to (and the level's needs).
        let mut groups: Vec<(Placement, Vec<i32>, Mutation)> = Vec::new();
        for (k, c) in m {
            let (Some(table), Some(token)) = (k.get(..TABLE_ID_LEN), key_token(&k)) else {
                return Err(CqlError::Server("a cell key without a partition".into()));
            };
            let strategy = self.strategy_of(&img, table)?;
            let p = self.write_placement(&img, &ring, &strategy, token, cl);
            match groups
                .iter_mut()
                .find(|(g, _, _)| g.replicas == p.replicas && g.block == p.block)
            {
                Some((_, _, cells)) => cells.push((k, c)),
                None => {
                    // ANY is met by a hint when no replica is up.
                    let alive = match self.alive(&img, &p, cl) {
                        Err(CqlError::Unavailable { .. })
                            if cl == Consistency::Any && !self.hints_off() =>
                        {
                            Vec::new()
                        }
                        other => other?,
                    };
                    groups.push((p, alive, vec![(k, c)]));
                }
            }
        }
        // Every group is available: send them all, then wait for each.
        let mut waits = Vec::with_capacity(groups.len());
        for (p, alive, cells) in groups {
            // Replicas believed down get hints, replayed when they are up.
            let mut hinted = false;
            for n in p.replicas.iter().filter(|n| !alive.contains(n)) {
                hinted |= self.hints.store(*n, cells.clone());
            }
            if alive.is_empty() {
                // Only ANY gets here (the check above refused the others).
                if !hinted {
                    return Err(CqlError::Unavailable {
                        cl,
                        required: 1,
                        alive: 0,
                    });
                }
                continue;
            }
            let (tx, rx) = mpsc::channel(alive.len().max(1));
            for n in &alive {
                self.send_mutation(&img, *n, cells.clone(), WRITE_TIMEOUT, tx.clone());
            }
            waits.push((p, rx, alive.len()));
        }
        for (p, mut rx, expected) in waits {
            let mut acked: Vec<i32> = Vec::new();
            let mut failed = 0;
            let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
            while !p.block.met(p.dcs_of(&acked)) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some((n, Ok(())))) => acked.push(n),
                    Ok(Some((n, Err(e)))) => {
                        tracing::debug!(node = n, "table write to a replica failed: {e}");
                        failed += 1;
                    }
                    Ok(None) | Err(_) => break,
                }
                if acked.len() + failed >= expected {
                    break;
                }
            }
            if !p.block.met(p.dcs_of(&acked)) {
                return Err(CqlError::WriteTimeout {
                    cl,
                    received: p.block.counted(p.dcs_of(&acked)),
                    block_for: p.block.required(),
                    write_type,
                });
            }
        }
        Ok(())
    }

    /// Sends cells to one replica (this node's engine or a peer); the result
    /// goes to `tx` whenever it comes, so writes beyond the level finish
    /// after the answer.
    pub(crate) fn send_mutation(
        &self,
        img: &Image,
        node: i32,
        cells: Mutation,
        timeout: Duration,
        tx: mpsc::Sender<(i32, Result<(), String>)>,
    ) {
        if node == self.local.node_id {
            let rx = self.engine.write(cells);
            tokio::spawn(async move {
                let r = match rx.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(format!("write failed: {e}")),
                    Err(_) => Err("the table engine stopped".into()),
                };
                let _ = tx.send((node, r)).await;
            });
            return;
        }
        let Some(addr) = Self::addr_of(img, node) else {
            let _ = tx.try_send((node, Err("not registered".into())));
            return;
        };
        let (peers, hints) = (self.peers.clone(), self.hints.clone());
        tokio::spawn(async move {
            let req = Request::Mutate(cells);
            let r = match peers.call(node, &addr, &req, timeout).await {
                Ok(Reply::Done) => Ok(()),
                Ok(Reply::Failed(why)) => Err(why),
                Ok(other) => Err(format!("unexpected reply {other:?}")),
                Err(LinkError::Timeout) => Err("timed out".into()),
                Err(LinkError::Unreachable(why)) => Err(why),
            };
            if r.is_err() {
                // Not acknowledged (it may still have been applied: a
                // replay is idempotent, cells reconcile by timestamp).
                if let Request::Mutate(cells) = req {
                    hints.store(node, cells);
                }
            }
            let _ = tx.send((node, r)).await;
        });
    }

    /// Waits (up to [`SCHEMA_AGREEMENT_WAIT`]) until every other node believed
    /// up has applied the metadata up to `index`.
    pub(crate) async fn schema_agreement(&self, index: u64) {
        let img = self.image();
        let mut waits = Vec::new();
        for n in img.nodes.values() {
            if n.id == self.local.node_id || n.cql_port <= 0 || !self.is_up(&img, n.id) {
                continue;
            }
            let (peers, id, addr) = (
                self.peers.clone(),
                n.id,
                format!("{}:{}", n.cql_host, n.cql_port),
            );
            waits.push(tokio::spawn(async move {
                let r = peers
                    .call(
                        id,
                        &addr,
                        &Request::Applied(index),
                        SCHEMA_AGREEMENT_WAIT + Duration::from_secs(1),
                    )
                    .await;
                if !matches!(r, Ok(Reply::Done)) {
                    tracing::info!(node = id, "no schema agreement at index {index}: {r:?}");
                }
            }));
        }
        for w in waits {
            let _ = w.await;
        }
    }

    /// What this node answers a coordinator.
    pub(crate) async fn replica_request(&self, req: Request) -> Reply {
        match req {
            Request::Ping => Reply::Done,
            Request::Applied(index) => {
                let mut rx = self.image.clone();
                let applied = tokio::time::timeout(
                    SCHEMA_AGREEMENT_WAIT,
                    rx.wait_for(|i| i.applied >= index),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                if applied {
                    Reply::Done
                } else {
                    Reply::Failed(format!("metadata not applied to index {index} yet"))
                }
            }
            Request::Mutate(m) => {
                // Keep the clock ahead of what replicas are sent, so a write
                // this node coordinates next does not lose to it.
                if let Some(ts) = m.iter().map(|(_, c)| c.ts).max() {
                    self.hlc.observe(ts);
                }
                match self.engine.write(m).await {
                    Ok(Ok(())) => Reply::Done,
                    Ok(Err(e)) => Reply::Failed(format!("write failed: {e}")),
                    Err(_) => Reply::Failed("the table engine stopped".into()),
                }
            }
            Request::Prepare { partition, ballot } => self.paxos_prepare(&partition, ballot).await,
            Request::Gossip(view) => self.gossip_exchange(&view),
            Request::Merkle {
                table,
                first,
                last,
                leaves,
            } => match self.merkle_leaves(&table, first, last, leaves) {
                Ok(h) => Reply::Hashes(h),
                Err(e) => Reply::Failed(e),
            },
            Request::Propose {
                partition,
                ballot,
                cells,
            } => self.paxos_propose(&partition, ballot, cells).await,
            Request::Commit {
                partition,
                ballot,
                cells,
            } => self.paxos_commit(&partition, ballot, cells).await,
            read @ Request::Read { .. } => self.replica_read(&read),
        }
    }

    /// A replica's answer to a read: the cells, or with `digest` their hash.
    fn replica_read(&self, req: &Request) -> Reply {
        let Request::Read {
            start,
            end,
            partition,
            max_bytes,
            digest: want_digest,
        } = req
        else {
            return Reply::Failed("not a read".into());
        };
        match self.read_local(start, end, partition.as_deref(), *max_bytes) {
            Ok((cells, resume)) if *want_digest => Reply::Digest(digest(&cells, resume.as_deref())),
            Ok((cells, resume)) => Reply::Cells { cells, resume },
            Err(e) => Reply::Failed(e.to_string()),
        }
    }

    /// This node's cells in `[start, end)`, at most about `max_bytes` of them.
    pub(crate) fn read_local(
        &self,
        start: &[u8],
        end: &[u8],
        partition: Option<&[u8]>,
        max_bytes: u32,
    ) -> Result<(Mutation, Option<Vec<u8>>), CqlError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.engine.scan(start, end, partition) {
            let (k, c) = item.map_err(|e| CqlError::Server(format!("read failed: {e}")))?;
            if bytes >= max_bytes as usize {
                let resume = out.last().map(|(k, _): &(Vec<u8>, Cell)| successor(k));
                return Ok((out, resume));
            }
            bytes += k.len() + c.encoded_len();
            out.push((k, c));
        }
        Ok((out, None))
    }

    /// The cells of `[start, end)` at `cl`, merged across the replicas read
    /// and repaired on those behind, and where to resume (None: the range is
    /// done). One call reads one token range's replicas, one chunk of it.
    pub(crate) async fn read_cells(
        &self,
        start: &[u8],
        end: &[u8],
        partition: Option<&[u8]>,
        cl: Consistency,
        chunk: u32,
    ) -> Result<(Mutation, Option<Vec<u8>>), CqlError> {
        let img = self.image();
        let ring = self.ring(&img);
        let table = start
            .get(..TABLE_ID_LEN)
            .ok_or_else(|| CqlError::Server("a read without a table".into()))?;
        let strategy = self.strategy_of(&img, table)?;
        let token = key_token(start).unwrap_or(i64::MIN);
        // A read crossing token ranges stops at this one's end.
        let mut sub_end = end.to_vec();
        if partition.is_none() && ring.places().len() > 1 {
            if let Some(last) = ring.range_end(token) {
                let limit = if last == i64::MAX {
                    cell::prefix_end(table)
                } else {
                    let mut k = table.to_vec();
                    k.extend_from_slice(&cell::token_key(last + 1));
                    k
                };
                if end.is_empty() || limit.as_slice() < end {
                    sub_end = limit;
                }
            }
        }
        let ranged_resume = (sub_end.as_slice() != end).then(|| sub_end.clone());
        let p = self.placement(&ring, &strategy, token, cl);
        let alive = self.alive(&img, &p, cl)?;
        // This node first, then the others in ring order, a node still
        // streaming its ranges (JOINING) last: the fewest that meet the level.
        let mut order: Vec<i32> = alive
            .iter()
            .copied()
            .filter(|n| *n == self.local.node_id)
            .collect();
        order.extend(alive.iter().copied().filter(|n| *n != self.local.node_id));
        order.sort_by_key(|n| self.gossip.is_joining(*n));
        let mut chosen: Vec<i32> = Vec::new();
        for n in &order {
            if p.block.met(p.dcs_of(&chosen)) {
                break;
            }
            chosen.push(*n);
        }
        let mut spare = order[chosen.len()..].iter().copied();
        if chosen == [self.local.node_id] {
            let (cells, resume) = self.read_local(start, &sub_end, partition, chunk)?;
            return Ok((cells, resume.or(ranged_resume)));
        }
        let read = |digest: bool| Request::Read {
            start: start.to_vec(),
            end: sub_end.clone(),
            partition: partition.map(<[u8]>::to_vec),
            max_bytes: chunk,
            digest,
        };
        // Digest reads (Cassandra's): the first replica chosen (this node
        // when it is one) sends the data, the others a hash of theirs; a
        // replica asked beyond those sends data.
        self.digest_reads.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(order.len().max(1));
        for (i, n) in chosen.iter().enumerate() {
            self.send_read(&img, *n, &read(i > 0), tx.clone());
        }
        let mut outstanding = chosen.len();
        let mut replies: Vec<(i32, Mutation, Option<Vec<u8>>)> = Vec::new();
        let mut digests: Vec<(i32, Hash)> = Vec::new();
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        let answered = |r: &[(i32, Mutation, Option<Vec<u8>>)], d: &[(i32, Hash)]| -> Vec<i32> {
            r.iter()
                .map(|(n, _, _)| *n)
                .chain(d.iter().map(|(n, _)| *n))
                .collect()
        };
        // A replica slow to answer (paused, overloaded, dead or cut off but
        // not yet known) is covered by one more, as Cassandra's
        // speculative_retry.
        let mut speculate_at = Some(tokio::time::Instant::now() + SPECULATE_AFTER);
        // Until the level is met with data among the answers.
        while outstanding > 0
            && (replies.is_empty() || !p.block.met(p.dcs_of(&answered(&replies, &digests))))
        {
            let wait_until = speculate_at.map_or(deadline, |s| s.min(deadline));
            let got = tokio::time::timeout_at(wait_until, rx.recv()).await;
            if got.is_err() && speculate_at.is_some() && wait_until < deadline {
                // One more replica each time the ones asked stay silent
                // this long, while there are others to ask.
                speculate_at = None;
                if let Some(next) = spare.next() {
                    self.send_read(&img, next, &read(false), tx.clone());
                    outstanding += 1;
                    speculate_at = Some(tokio::time::Instant::now() + SPECULATE_AFTER);
                }
                continue;
            }
            match got {
                Ok(Some((n, Ok(Answer::Data(cells, resume))))) => {
                    outstanding -= 1;
                    replies.push((n, cells, resume));
                }
                Ok(Some((n, Ok(Answer::Digest(h))))) => {
                    outstanding -= 1;
                    digests.push((n, h));
                    if outstanding == 0 && replies.is_empty() {
                        // The data replica failed: one that answered a hash sends data.
                        self.send_read(&img, n, &read(false), tx.clone());
                        digests.retain(|(d, _)| *d != n);
                        outstanding += 1;
                    }
                }
                Ok(Some((n, Err(why)))) => {
                    outstanding -= 1;
                    tracing::debug!(node = n, "table read from a replica failed: {why}");
                    // Another replica believed up takes its place.
                    if let Some(next) = spare.next() {
                        self.send_read(&img, next, &read(false), tx.clone());
                        outstanding += 1;
                    } else if outstanding == 0 && replies.is_empty() {
                        if let Some((d, _)) = digests.pop() {
                            self.send_read(&img, d, &read(false), tx.clone());
                            outstanding += 1;
                        }
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        let got = answered(&replies, &digests);
        if !p.block.met(p.dcs_of(&got)) || replies.is_empty() {
            return Err(CqlError::ReadTimeout {
                cl,
                received: p.block.counted(p.dcs_of(&got)),
                block_for: p.block.required(),
                data_present: !replies.is_empty(),
            });
        }
        // Every hash equal to the data's: the answer needs no merge or repair.
        let hashes: Vec<Hash> = replies
            .iter()
            .map(|(_, c, r)| digest(c, r.as_deref()))
            .chain(digests.iter().map(|(_, h)| *h))
            .collect();
        if hashes.windows(2).all(|w| w[0] == w[1]) {
            let (_, cells, resume) = replies.swap_remove(0);
            return Ok((cells, resume.or(ranged_resume)));
        }
        // A digest mismatch: the replicas that sent hashes send data, to
        // merge and repair (Cassandra's DigestMismatchException path).
        self.digest_mismatches.fetch_add(1, Ordering::Relaxed);
        if !digests.is_empty() {
            let (tx, mut rx) = mpsc::channel(digests.len());
            for (n, _) in &digests {
                self.send_read(&img, *n, &read(false), tx.clone());
            }
            drop(tx);
            while let Ok(Some((n, r))) = tokio::time::timeout_at(deadline, rx.recv()).await {
                match r {
                    Ok(Answer::Data(cells, resume)) => replies.push((n, cells, resume)),
                    other => {
                        tracing::debug!(node = n, "a data read after a digest mismatch: {other:?}")
                    }
                }
            }
            let got: Vec<i32> = replies.iter().map(|(n, _, _)| *n).collect();
            if !p.block.met(p.dcs_of(&got)) {
                return Err(CqlError::ReadTimeout {
                    cl,
                    received: p.block.counted(p.dcs_of(&got)),
                    block_for: p.block.required(),
                    data_present: true,
                });
            }
        }
        // Every reply is complete below the lowest place one stopped.
        let cut = replies.iter().filter_map(|(_, _, r)| r.clone()).min();
        let mut merged: BTreeMap<Vec<u8>, Cell> = BTreeMap::new();
        for (_, cells, _) in &replies {
            for (k, c) in cells {
                if cut.as_ref().is_some_and(|cut| k >= cut) {
                    break;
                }
                match merged.get(k) {
                    Some(have) if !c.wins_over(have) => {}
                    _ => {
                        merged.insert(k.clone(), c.clone());
                    }
                }
            }
        }
        self.read_repair(&img, &merged, &replies, cut.as_deref())
            .await;
        let resume = cut.or(ranged_resume);
        Ok((merged.into_iter().collect(), resume))
    }

    fn send_read(
        &self,
        img: &Image,
        node: i32,
        req: &Request,
        tx: mpsc::Sender<(i32, Result<Answer, String>)>,
    ) {
        if node == self.local.node_id {
            let r = match self.replica_read(req) {
                Reply::Cells { cells, resume } => Ok(Answer::Data(cells, resume)),
                Reply::Digest(h) => Ok(Answer::Digest(h)),
                Reply::Failed(why) => Err(why),
                other => Err(format!("unexpected reply {other:?}")),
            };
            let _ = tx.try_send((node, r));
            return;
        }
        let Some(addr) = Self::addr_of(img, node) else {
            let _ = tx.try_send((node, Err("not registered".into())));
            return;
        };
        let (peers, req) = (self.peers.clone(), req.clone());
        tokio::spawn(async move {
            let r = match peers.call(node, &addr, &req, READ_TIMEOUT).await {
                Ok(Reply::Cells { cells, resume }) => Ok(Answer::Data(cells, resume)),
                Ok(Reply::Digest(h)) => Ok(Answer::Digest(h)),
                Ok(Reply::Failed(why)) => Err(why),
                Ok(other) => Err(format!("unexpected reply {other:?}")),
                Err(LinkError::Timeout) => Err("timed out".into()),
                Err(LinkError::Unreachable(why)) => Err(why),
            };
            let _ = tx.send((node, r)).await;
        });
    }

    /// Sends each replica that answered the cells it lacks or holds older,
    /// and waits for them (up to the write timeout): a read that returned a
    /// value makes the replicas it read hold it (Cassandra's blocking read
    /// repair, so two reads in a row never go back in time).
    async fn read_repair(
        &self,
        img: &Image,
        merged: &BTreeMap<Vec<u8>, Cell>,
        replies: &[(i32, Mutation, Option<Vec<u8>>)],
        cut: Option<&[u8]>,
    ) {
        let (tx, mut rx) = mpsc::channel(replies.len().max(1));
        let mut sent = 0;
        for (n, cells, _) in replies {
            let have: BTreeMap<&[u8], &Cell> = cells
                .iter()
                .filter(|(k, _)| cut.is_none_or(|c| k.as_slice() < c))
                .map(|(k, c)| (k.as_slice(), c))
                .collect();
            let diff: Mutation = merged
                .iter()
                .filter(|(k, w)| have.get(k.as_slice()).is_none_or(|h| w.wins_over(h)))
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect();
            if diff.is_empty() {
                continue;
            }
            self.read_repairs
                .fetch_add(diff.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.send_mutation(img, *n, diff, WRITE_TIMEOUT, tx.clone());
            sent += 1;
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        for _ in 0..sent {
            if tokio::time::timeout_at(deadline, rx.recv()).await.is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_count_replicas_where_they_must() {
        let simple = Strategy::Simple { rf: 3 };
        let q = BlockFor::new(Consistency::Quorum, &simple, "dc1");
        assert_eq!(q.required(), 2);
        assert!(!q.met(["dc1"].into_iter()));
        assert!(q.met(["dc1", "dc1"].into_iter()));
        assert_eq!(
            BlockFor::new(Consistency::All, &simple, "dc1").required(),
            3
        );
        assert_eq!(
            BlockFor::new(Consistency::One, &simple, "dc1").required(),
            1
        );
        let nts = Strategy::Network {
            per_dc: BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 2)]),
        };
        let lq = BlockFor::new(Consistency::LocalQuorum, &nts, "a");
        assert_eq!(lq.required(), 2);
        // Replicas in another datacenter do not count for a LOCAL level.
        assert!(!lq.met(["a", "b", "b"].into_iter()));
        assert!(lq.met(["a", "a", "b"].into_iter()));
        assert_eq!(lq.counted(["a", "b", "b"].into_iter()), 1);
        let each = BlockFor::new(Consistency::EachQuorum, &nts, "a");
        assert_eq!(each.required(), 4);
        assert!(!each.met(["a", "a", "a", "b"].into_iter()));
        assert!(each.met(["a", "a", "b", "b"].into_iter()));
        let q = BlockFor::new(Consistency::Quorum, &nts, "a");
        assert_eq!(q.required(), 3);
        assert!(q.met(["b", "b", "a"].into_iter()));
        let lo = BlockFor::new(Consistency::LocalOne, &nts, "b");
        assert!(!lo.met(["a", "a"].into_iter()));
        assert!(lo.met(["b"].into_iter()));
    }

    #[test]
    fn a_pending_replica_counts_on_top_of_the_level_where_its_datacenter_counts() {
        let simple = Strategy::Simple { rf: 3 };
        let mut q = BlockFor::new(Consistency::Quorum, &simple, "dc1");
        q.add_pending("dc1");
        assert_eq!(q.required(), 3);
        assert!(!q.met(["dc1", "dc1"].into_iter()));
        let nts = Strategy::Network {
            per_dc: BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 2)]),
        };
        // LOCAL_QUORUM in a: a pending replica in b changes nothing, one in a adds one.
        let mut lq = BlockFor::new(Consistency::LocalQuorum, &nts, "a");
        lq.add_pending("b");
        assert_eq!(lq.required(), 2);
        lq.add_pending("a");
        assert_eq!(lq.required(), 3);
        // EACH_QUORUM: only the pending replica's own datacenter needs more.
        let mut each = BlockFor::new(Consistency::EachQuorum, &nts, "a");
        each.add_pending("b");
        assert!(!each.met(["a", "a", "b", "b"].into_iter()));
        assert!(each.met(["a", "a", "b", "b", "b"].into_iter()));
    }

    #[test]
    fn key_tokens_come_back_from_keys() {
        for t in [i64::MIN, -5, 0, 7, i64::MAX] {
            let k = cell::partition_prefix(&[3; TABLE_ID_LEN], t, b"pk");
            assert_eq!(key_token(&k), Some(t));
        }
        assert_eq!(key_token(&[1, 2]), None);
    }
}
