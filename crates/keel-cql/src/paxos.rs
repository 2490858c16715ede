//! Lightweight transactions across coordinators: Cassandra's per-partition
//! Paxos (the classic protocol of Cassandra 2.0 to 4.x, `StorageProxy.cas`,
//! with CASSANDRA-12126's fix), so `INSERT ... IF NOT EXISTS`,
//! `UPDATE ... IF` and reads at SERIAL are linearizable whichever nodes
//! coordinate them.
//!
//! One round, for one partition:
//! 1. **Prepare**: the coordinator picks a ballot (its hybrid clock and node
//!    id, so ballots are unique and above every one it has seen) and asks
//!    the partition's replicas to promise it. A quorum of the replicas
//!    (SERIAL; a local quorum for LOCAL_SERIAL) must promise; any refusal
//!    means a higher ballot is about, and the round starts again after a
//!    random pause.
//! 2. **Finish what others left**: a promise carries the replica's accepted
//!    but uncommitted proposal. The newest one above the most recent commit
//!    is proposed and committed again under the new ballot before anything
//!    else (it may have been chosen), and the round starts again. Replicas
//!    behind the most recent commit are sent it, so a quorum read sees it.
//! 3. **Read and decide**: the row is read at (local) quorum and the
//!    condition evaluated; if it fails, the answer is `[applied] = False`
//!    and nothing is proposed.
//! 4. **Propose**: the update, its cells stamped with the ballot's time, goes
//!    to the replicas; a quorum must accept. None accepting: the round starts
//!    again. Some but not a quorum: the outcome is unknown (a later round may
//!    finish it), so the answer is WriteTimeout with write type CAS, never a
//!    false `[applied] = False` (CASSANDRA-12126).
//! 5. **Commit**: the update is applied on every replica up, waiting for the
//!    statement's consistency level (ANY: not waiting); replicas down get
//!    hints.
//!
//! Each replica keeps, per partition, the ballot it promised, the proposal it
//! accepted and the last commit, in its table engine (under a reserved table
//! id, Cassandra's `system.paxos`), written through the commit log before it
//! answers, so a promise survives a crash.

use std::sync::Arc;
use std::time::Duration;

use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::message_error::WriteType;
use keel_meta::ring::Strategy;
use keel_meta::Image;
use keel_table::cell::{self, Cell, TABLE_ID_LEN};
use keel_table::engine::commitlog;
use keel_table::Mutation;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::coordinator::{BlockFor, Placement, WRITE_TIMEOUT};
use crate::error::CqlError;
use crate::exec::Node;
use crate::internode::{put_bytes, take_bytes, Reply, Request};

/// How long a conditional write keeps trying when other ballots pre-empt it
/// (Cassandra's `cas_contention_timeout`, 1 s).
pub const CAS_CONTENTION_TIMEOUT: Duration = Duration::from_secs(1);

/// The table id under which replicas keep their Paxos state (no table of a
/// keyspace has it: theirs are random UUIDs of version 4, this is not one).
pub const PAXOS_TABLE: [u8; TABLE_ID_LEN] = *b"keel.paxos.state";

/// A Paxos ballot: a hybrid-clock time and the node that chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Ballot {
    pub micros: i64,
    pub node: i32,
}

impl Ballot {
    pub fn new(micros: i64, node: i32) -> Ballot {
        Ballot { micros, node }
    }

    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.micros.to_be_bytes());
        out.extend_from_slice(&self.node.to_be_bytes());
    }

    pub(crate) fn take(p: &mut &[u8]) -> Option<Ballot> {
        let micros = i64::from_be_bytes(p.get(..8)?.try_into().ok()?);
        let node = i32::from_be_bytes(p.get(8..12)?.try_into().ok()?);
        *p = &p[12..];
        Some(Ballot { micros, node })
    }
}

/// What one replica remembers of one partition's Paxos rounds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PaxosState {
    /// The highest ballot promised.
    pub promised: Ballot,
    /// The proposal accepted and not yet known committed.
    pub accepted: Option<(Ballot, Mutation)>,
    /// The most recent commit.
    pub committed: Option<(Ballot, Mutation)>,
}

fn put_proposal(out: &mut Vec<u8>, p: &Option<(Ballot, Mutation)>) {
    match p {
        None => out.push(0),
        Some((b, m)) => {
            out.push(1);
            b.put(out);
            put_bytes(out, &commitlog::encode_record(m));
        }
    }
}

fn take_proposal(p: &mut &[u8]) -> Option<Option<(Ballot, Mutation)>> {
    let (flag, rest) = p.split_first()?;
    *p = rest;
    match flag {
        0 => Some(None),
        1 => {
            let b = Ballot::take(p)?;
            let rec = take_bytes(p)?;
            Some(Some((b, commitlog::decode_record(&rec)?)))
        }
        _ => None,
    }
}

impl PaxosState {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.promised.put(out);
        put_proposal(out, &self.accepted);
        put_proposal(out, &self.committed);
    }

    pub(crate) fn decode(p: &mut &[u8]) -> Option<PaxosState> {
        Some(PaxosState {
            promised: Ballot::take(p)?,
            accepted: take_proposal(p)?,
            committed: take_proposal(p)?,
        })
    }
}

/// Whether `partition` is one partition's key prefix and nothing more.
fn is_partition(partition: &[u8]) -> bool {
    cell::partition_prefix_len(partition) == Some(partition.len())
}

/// The key of a partition's Paxos state on a replica.
fn state_key(partition: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let token = cell::split_token(partition).unwrap_or_default();
    let prefix = cell::partition_prefix(&PAXOS_TABLE, token, partition);
    let key = cell::cell_key(&cell::row_prefix(&prefix, &[]), cell::FIRST_COLUMN_ID);
    (key, prefix)
}

/// Cells re-stamped with a ballot's time: a committed proposal's write
/// timestamp, so later rounds' writes win over earlier ones.
fn stamped(cells: Mutation, ballot: Ballot) -> Mutation {
    cells
        .into_iter()
        .map(|(k, mut c)| {
            c.ts = ballot.micros;
            (k, c)
        })
        .collect()
}

/// A random pause before another round (Cassandra sleeps up to 100 ms).
async fn backoff(attempt: u32) {
    let r = uuid::Uuid::new_v4().as_bytes()[0] as u64;
    let cap = 5u64 << attempt.min(4);
    tokio::time::sleep(Duration::from_millis(1 + r % cap)).await;
}

/// A ballot promised by a quorum of a partition's replicas.
pub(crate) struct Round {
    pub ballot: Ballot,
    img: std::sync::Arc<Image>,
    placement: Placement,
    strategy: Arc<Strategy>,
    alive: Vec<i32>,
    serial: Consistency,
}

/// Replies of several replicas to one request.
type Replies = mpsc::Receiver<(i32, Result<Reply, String>)>;

impl Node {
    // ---- the replica's side -------------------------------------------

    fn paxos_lock(&self, partition: &[u8]) -> &tokio::sync::Mutex<()> {
        crate::exec::stripe(&self.paxos, partition)
    }

    /// This replica's Paxos state for a partition, and its cell's timestamp.
    fn paxos_load(&self, partition: &[u8]) -> Result<(PaxosState, i64), String> {
        let (key, prefix) = state_key(partition);
        let mut end = key.clone();
        end.push(0);
        match self.engine.scan(&key, &end, Some(&prefix)).next() {
            None => Ok((PaxosState::default(), 0)),
            Some(Err(e)) => Err(format!("reading Paxos state failed: {e}")),
            Some(Ok((_, c))) => {
                let mut v = &c.value[..];
                match PaxosState::decode(&mut v) {
                    Some(s) if v.is_empty() => Ok((s, c.ts)),
                    _ => Err("corrupt Paxos state".into()),
                }
            }
        }
    }

    /// Writes `state` (with `data`, a commit's cells, in the same record) and
    /// waits until the commit log holds it.
    async fn paxos_store(
        &self,
        partition: &[u8],
        state: &PaxosState,
        prev_ts: i64,
        mut data: Mutation,
    ) -> Result<(), String> {
        let (key, _) = state_key(partition);
        let mut v = Vec::new();
        state.encode(&mut v);
        // Above the state it replaces even if this node's clock went back.
        let ts = self.hlc.now().max(prev_ts + 1);
        data.push((key, Cell::live(ts, v)));
        match self.engine.write(data).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err("the table engine stopped".into()),
        }
    }

    /// A partition's Paxos state, read under its stripe's lock (held until
    /// the guard drops), or the Failed reply for a `what` on a malformed key
    /// or an unreadable state.
    async fn paxos_locked(
        &self,
        partition: &[u8],
        what: &str,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, PaxosState, i64), Reply> {
        if !is_partition(partition) {
            return Err(Reply::Failed(format!(
                "Paxos {what} for a malformed partition key"
            )));
        }
        let g = self.paxos_lock(partition).lock().await;
        let (state, ts) = self.paxos_load(partition).map_err(Reply::Failed)?;
        Ok((g, state, ts))
    }

    pub(crate) async fn paxos_prepare(&self, partition: &[u8], ballot: Ballot) -> Reply {
        let (_g, mut state, ts) = match self.paxos_locked(partition, "prepare").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        if ballot <= state.promised {
            return Reply::Promise { ok: false, state };
        }
        state.promised = ballot;
        if let Err(e) = self.paxos_store(partition, &state, ts, Vec::new()).await {
            return Reply::Failed(e);
        }
        Reply::Promise { ok: true, state }
    }

    pub(crate) async fn paxos_propose(
        &self,
        partition: &[u8],
        ballot: Ballot,
        cells: Mutation,
    ) -> Reply {
        let (_g, mut state, ts) = match self.paxos_locked(partition, "proposal").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        if ballot < state.promised {
            return Reply::Accepted(false);
        }
        state.promised = ballot;
        state.accepted = Some((ballot, cells));
        match self.paxos_store(partition, &state, ts, Vec::new()).await {
            Ok(()) => Reply::Accepted(true),
            Err(e) => Reply::Failed(e),
        }
    }

    pub(crate) async fn paxos_commit(
        &self,
        partition: &[u8],
        ballot: Ballot,
        cells: Mutation,
    ) -> Reply {
        let (_g, mut state, ts) = match self.paxos_locked(partition, "commit").await {
            Ok(x) => x,
            Err(r) => return r,
        };
        if let Some(ts) = cells.iter().map(|(_, c)| c.ts).max() {
            self.hlc.observe(ts);
        }
        if state.committed.as_ref().is_none_or(|(b, _)| *b < ballot) {
            state.committed = Some((ballot, cells.clone()));
        }
        if state.accepted.as_ref().is_some_and(|(b, _)| *b <= ballot) {
            state.accepted = None;
        }
        // The data and the state in one commit-log record.
        match self.paxos_store(partition, &state, ts, cells).await {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Failed(e),
        }
    }

    // ---- the coordinator's side ---------------------------------------

    /// Sends `req` to `nodes` (this node's share handled here, the others'
    /// over their links) and returns their replies as they come.
    async fn paxos_send(&self, img: &Image, nodes: &[i32], req: Request) -> Replies {
        let (tx, rx) = mpsc::channel(nodes.len().max(1));
        let mut local = false;
        for &n in nodes {
            if n == self.local.node_id {
                local = true;
                continue;
            }
            let Some(addr) = Self::addr_of(img, n) else {
                let _ = tx.try_send((n, Err("not registered".into())));
                continue;
            };
            let (peers, tx, req) = (self.peers.clone(), tx.clone(), req.clone());
            tokio::spawn(async move {
                let r = peers
                    .call(n, &addr, &req, WRITE_TIMEOUT)
                    .await
                    .map_err(|e| format!("{e:?}"));
                let _ = tx.send((n, r)).await;
            });
        }
        if local {
            // This node's share goes the way a peer's request does.
            let r = self.replica_request(req).await;
            let _ = tx.try_send((self.local.node_id, Ok(r)));
        }
        rx
    }

    /// Where a partition's replicas are and which are up, or Unavailable if
    /// they cannot make a (local) quorum.
    fn paxos_placement(
        &self,
        img: &Image,
        partition: &[u8],
        serial: Consistency,
    ) -> Result<(Placement, Arc<Strategy>, Vec<i32>), CqlError> {
        let (Some(table), Some(token)) =
            (partition.get(..TABLE_ID_LEN), cell::split_token(partition))
        else {
            return Err(CqlError::Server(
                "a conditional write without a partition".into(),
            ));
        };
        let strategy = self.strategy_of(img, table)?;
        let ring = self.ring(img);
        // Pending replicas take part too (Cassandra's Paxos counts them), so
        // a round's quorum still holds among the replicas after a node leaves.
        let p = self.write_placement(img, &ring, &strategy, token, serial);
        let alive = self.alive(img, &p, serial)?;
        Ok((p, strategy, alive))
    }

    /// Phase 1: a ballot promised by a quorum, with any proposal left
    /// unfinished by another coordinator finished first and the most recent
    /// commit on every replica that promised (Cassandra's
    /// `beginAndRepairPaxos`). Gives up with WriteTimeout (CAS) at
    /// `deadline`.
    pub(crate) async fn paxos_begin(
        &self,
        partition: &[u8],
        serial: Consistency,
        deadline: Instant,
    ) -> Result<Round, CqlError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let img = self.image();
            let (placement, strategy, alive) = self.paxos_placement(&img, partition, serial)?;
            let timeout = |received: i32| CqlError::WriteTimeout {
                cl: serial,
                received,
                block_for: placement.block.required(),
                write_type: WriteType::Cas,
            };
            if Instant::now() >= deadline {
                return Err(timeout(0));
            }
            let ballot = Ballot::new(self.hlc.now(), self.local.node_id);
            let req = Request::Prepare {
                partition: partition.to_vec(),
                ballot,
            };
            let mut rx = self.paxos_send(&img, &alive, req).await;
            let mut promised: Vec<(i32, PaxosState)> = Vec::new();
            let mut refused = None;
            let mut answered = 0;
            let round_end = (Instant::now() + WRITE_TIMEOUT).min(deadline + WRITE_TIMEOUT);
            let ids = |v: &[(i32, PaxosState)]| v.iter().map(|(n, _)| *n).collect::<Vec<_>>();
            while answered < alive.len() && !placement.block.met(placement.dcs_of(&ids(&promised)))
            {
                match tokio::time::timeout_at(round_end, rx.recv()).await {
                    Ok(Some((n, Ok(Reply::Promise { ok: true, state })))) => {
                        promised.push((n, state))
                    }
                    Ok(Some((_, Ok(Reply::Promise { ok: false, state })))) => {
                        refused = Some(state.promised);
                        break;
                    }
                    Ok(Some((n, r))) => {
                        tracing::debug!(node = n, "Paxos prepare not answered: {r:?}");
                    }
                    Ok(None) | Err(_) => break,
                }
                answered += 1;
            }
            if let Some(higher) = refused {
                // Someone holds a higher ballot: go above it, after a pause.
                self.hlc.observe(higher.micros);
                backoff(attempt).await;
                continue;
            }
            let promisers = ids(&promised);
            if !placement.block.met(placement.dcs_of(&promisers)) {
                return Err(timeout(
                    placement.block.counted(placement.dcs_of(&promisers)),
                ));
            }
            let round = Round {
                ballot,
                img: img.clone(),
                placement,
                strategy,
                alive,
                serial,
            };
            let latest = promised
                .iter()
                .filter_map(|(_, s)| s.committed.clone())
                .max_by_key(|(b, _)| *b);
            let unfinished = promised
                .iter()
                .filter_map(|(_, s)| s.accepted.clone())
                .filter(|(b, _)| latest.as_ref().is_none_or(|(c, _)| b > c))
                .max_by_key(|(b, _)| *b);
            if let Some((_, cells)) = unfinished {
                // It may have been chosen: finish it under this ballot, then
                // start again for this statement's own round.
                let cells = stamped(cells, ballot);
                if self.paxos_accept(&round, partition, cells.clone()).await? {
                    self.paxos_apply(&round, partition, cells, serial).await?;
                } else {
                    backoff(attempt).await;
                }
                continue;
            }
            if let Some((b, cells)) = latest {
                let behind: Vec<i32> = promised
                    .iter()
                    .filter(|(_, s)| s.committed.as_ref().is_none_or(|(c, _)| *c < b))
                    .map(|(n, _)| *n)
                    .collect();
                if !behind.is_empty() {
                    let req = Request::Commit {
                        partition: partition.to_vec(),
                        ballot: b,
                        cells,
                    };
                    let mut rx = self.paxos_send(&img, &behind, req).await;
                    let mut ok = 0;
                    while let Ok(Some((_, r))) = tokio::time::timeout_at(round_end, rx.recv()).await
                    {
                        ok += matches!(r, Ok(Reply::Done)) as usize;
                    }
                    if ok < behind.len() {
                        backoff(attempt).await;
                        continue;
                    }
                }
            }
            return Ok(round);
        }
    }

    /// Phase 2: whether a quorum accepted `cells` at the round's ballot.
    /// False when none did (pre-empted: try another round); WriteTimeout
    /// (CAS) when some did but not a quorum, or replies are missing, as the
    /// proposal may yet be chosen by a later round.
    pub(crate) async fn paxos_accept(
        &self,
        round: &Round,
        partition: &[u8],
        cells: Mutation,
    ) -> Result<bool, CqlError> {
        let req = Request::Propose {
            partition: partition.to_vec(),
            ballot: round.ballot,
            cells,
        };
        let p = &round.placement;
        let mut rx = self.paxos_send(&round.img, &round.alive, req).await;
        let mut accepted: Vec<i32> = Vec::new();
        let (mut refused, mut answered) = (0, 0);
        let end = Instant::now() + WRITE_TIMEOUT;
        while answered < round.alive.len() && !p.block.met(p.dcs_of(&accepted)) {
            match tokio::time::timeout_at(end, rx.recv()).await {
                Ok(Some((n, Ok(Reply::Accepted(true))))) => accepted.push(n),
                Ok(Some((_, Ok(Reply::Accepted(false))))) => refused += 1,
                Ok(Some((n, r))) => tracing::debug!(node = n, "Paxos proposal not answered: {r:?}"),
                Ok(None) | Err(_) => break,
            }
            answered += 1;
        }
        if p.block.met(p.dcs_of(&accepted)) {
            return Ok(true);
        }
        if accepted.is_empty() && refused == round.alive.len() {
            return Ok(false);
        }
        Err(CqlError::WriteTimeout {
            cl: round.serial,
            received: p.block.counted(p.dcs_of(&accepted)),
            block_for: p.block.required(),
            write_type: WriteType::Cas,
        })
    }

    /// The commit: `cells` applied on every replica up, waiting for `cl`
    /// (ANY: for none); replicas down get hints.
    pub(crate) async fn paxos_apply(
        &self,
        round: &Round,
        partition: &[u8],
        cells: Mutation,
        cl: Consistency,
    ) -> Result<(), CqlError> {
        let p = &round.placement;
        for n in p.replicas.iter().filter(|n| !round.alive.contains(n)) {
            self.hints.store(*n, cells.clone());
        }
        let block = p.with_pending(BlockFor::new(cl, &round.strategy, &self.local.datacenter));
        let req = Request::Commit {
            partition: partition.to_vec(),
            ballot: round.ballot,
            cells,
        };
        let mut rx = self.paxos_send(&round.img, &round.alive, req).await;
        if cl == Consistency::Any {
            return Ok(());
        }
        let mut done: Vec<i32> = Vec::new();
        let mut answered = 0;
        let end = Instant::now() + WRITE_TIMEOUT;
        while answered < round.alive.len() && !block.met(p.dcs_of(&done)) {
            match tokio::time::timeout_at(end, rx.recv()).await {
                Ok(Some((n, Ok(Reply::Done)))) => done.push(n),
                Ok(Some((n, r))) => tracing::debug!(node = n, "Paxos commit not answered: {r:?}"),
                Ok(None) | Err(_) => break,
            }
            answered += 1;
        }
        if !block.met(p.dcs_of(&done)) {
            return Err(CqlError::WriteTimeout {
                cl,
                received: block.counted(p.dcs_of(&done)),
                block_for: block.required(),
                write_type: WriteType::Simple,
            });
        }
        Ok(())
    }

    /// A conditional write's rounds: `decide` reads the row at (local)
    /// quorum and says which cells to write if the condition holds (None:
    /// it does not, and nothing is proposed). Answers whether it applied
    /// and what `decide` returned.
    pub(crate) async fn cas<T, F, Fut>(
        &self,
        partition: &[u8],
        serial: Consistency,
        commit_cl: Consistency,
        mut decide: F,
    ) -> Result<T, CqlError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(Option<Mutation>, T), CqlError>>,
    {
        let deadline = Instant::now() + CAS_CONTENTION_TIMEOUT;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let round = self.paxos_begin(partition, serial, deadline).await?;
            if commit_cl != Consistency::Any {
                // The commit must be able to meet its level too.
                let p = &round.placement;
                let block = p.with_pending(BlockFor::new(
                    commit_cl,
                    &round.strategy,
                    &self.local.datacenter,
                ));
                if !block.met(p.dcs_of(&round.alive)) {
                    return Err(CqlError::Unavailable {
                        cl: commit_cl,
                        required: block.required(),
                        alive: block.counted(p.dcs_of(&round.alive)),
                    });
                }
            }
            let (cells, answer) = decide().await?;
            let Some(cells) = cells else {
                return Ok(answer);
            };
            let cells = stamped(cells, round.ballot);
            if self.paxos_accept(&round, partition, cells.clone()).await? {
                self.paxos_apply(&round, partition, cells, commit_cl)
                    .await?;
                return Ok(answer);
            }
            backoff(attempt).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballots_order_by_time_then_node_and_state_round_trips() {
        assert!(Ballot::new(5, 1) < Ballot::new(5, 2));
        assert!(Ballot::new(5, 9) < Ballot::new(6, 1));
        let s = PaxosState {
            promised: Ballot::new(10, 3),
            accepted: Some((
                Ballot::new(9, 1),
                vec![(vec![1], Cell::live(9, b"x".to_vec()))],
            )),
            committed: None,
        };
        let mut b = Vec::new();
        s.encode(&mut b);
        let mut p = &b[..];
        assert_eq!(PaxosState::decode(&mut p), Some(s));
        assert!(p.is_empty());
        for cut in 0..b.len() {
            let mut p = &b[..cut];
            assert_eq!(PaxosState::decode(&mut p), None);
        }
    }

    #[test]
    fn the_state_key_is_a_partition_of_its_own_table() {
        let part = cell::partition_prefix(&[7; 16], -42, b"pk");
        let (key, prefix) = state_key(&part);
        assert!(key.starts_with(&prefix));
        let parts = cell::split_key(&key).unwrap();
        assert_eq!(parts.table, &PAXOS_TABLE[..]);
        assert_eq!(parts.token, -42);
        assert_eq!(parts.pk, &part[..]);
        assert!(is_partition(&part) && !is_partition(&key));
    }
}
