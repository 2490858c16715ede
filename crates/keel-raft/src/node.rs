//! The node loop: one thread owns raft-rs's `RawNode` and does, in order, what
//! its `Ready` asks (raft-rs's documented order): send the leader's messages,
//! install a snapshot, hand committed entries to the apply thread, append new entries and the
//! hard state to the WAL, fsync once, send the messages that needed the fsync,
//! advance. Every client's proposal that arrived while the previous fsync ran
//! goes into the next one: entries from many clients share fsyncs.
//!
//! Committed entries are applied on a second thread, the apply thread, in log
//! order (etcd applies in its own goroutine; TiKV has an apply pool): a long
//! apply (a range delete of 150 000 keys) no longer holds up ticks,
//! heartbeats, votes and appends, so a leader busy applying is not deposed
//! for silence. The Raft thread hands entries over with the proposers waiting
//! on them; the apply thread answers the proposers, persists what is due, and
//! reports back how far it applied and what is durable (raft-rs's
//! `advance_append` and `advance_apply_to`, its asynchronous-apply API).
//! Membership changes take effect in raft-rs when they are handed over (the
//! Raft thread alone owns `RawNode`); the state machine learns them in order.
//!
//! Linearizable reads use ReadIndex (Raft thesis §6.4, as etcd): reads that
//! arrive together share one read-index request; each is released once the
//! local state machine has applied up to the index the leader confirmed with a
//! quorum of heartbeats.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use raft_proto::ConfChangeI as _;
use tokio::sync::{oneshot, watch};

use crate::transport::{Inbound, Transport};
use crate::wal::{snapshot_meta, Wal};
use crate::{Error, StateMachine};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: u64,
    /// One Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before a follower campaigns (randomised up to 2x).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Voters of a brand-new cluster; empty for a node joining an existing one.
    pub initial_voters: Vec<u64>,
    /// Compact the in-memory log when it holds more entries than this (etcd's
    /// `--snapshot-count`, 100 000 since 3.2; each compaction rewrites the WAL) ...
    pub log_entries_max: usize,
    /// ... keeping this many applied entries for slow followers (etcd keeps 5000).
    pub log_entries_keep: u64,
    /// How long a proposal or read waits before it is answered with a timeout.
    pub request_timeout: Duration,
}

impl NodeConfig {
    pub fn new(id: u64, initial_voters: Vec<u64>) -> NodeConfig {
        NodeConfig {
            id,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            initial_voters,
            log_entries_max: 100_000,
            log_entries_keep: 5_000,
            request_timeout: Duration::from_secs(7),
        }
    }
}

/// Why a proposal or read was not carried out. Each is retriable: the request
/// may or may not have been applied only for `Timeout`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("no leader")]
    NoLeader,
    #[error("proposal dropped (leadership is moving)")]
    Dropped,
    #[error("request timed out")]
    Timeout,
    #[error("node stopped")]
    Stopped,
    #[error("{0}")]
    Rejected(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    Follower,
    Candidate,
    PreCandidate,
    Leader,
}

/// What the node looks like now; published after every loop round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub id: u64,
    /// 0 when no leader is known.
    pub leader: u64,
    pub term: u64,
    pub role: Role,
    pub commit: u64,
    pub applied: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// On the leader: the highest index each peer is known to hold.
    pub matched: Vec<(u64, u64)>,
}

pub(crate) enum Input<O> {
    /// From the apply thread: everything up to `applied` (if it moved) is
    /// applied, and everything up to `durable` is durable in the state machine.
    Applied {
        applied: Option<u64>,
        durable: u64,
    },
    Propose(Vec<u8>, oneshot::Sender<Result<O, ProposeError>>),
    ConfChange(ConfChangeV2, oneshot::Sender<Result<O, ProposeError>>),
    Read(oneshot::Sender<Result<(), ProposeError>>),
    Step(Box<Message>),
    Unreachable(u64),
    SnapshotDone(u64, bool),
    TransferLeader(u64),
    Stop,
}

/// Where the transport delivers messages and reports for one node.
pub struct Mailbox<O>(mpsc::Sender<Input<O>>);

impl<O> Clone for Mailbox<O> {
    fn clone(&self) -> Self {
        Mailbox(self.0.clone())
    }
}

impl<O: Send + 'static> Inbound for Mailbox<O> {
    fn deliver(&self, msg: Message) {
        let _ = self.0.send(Input::Step(Box::new(msg)));
    }
    fn unreachable(&self, to: u64) {
        let _ = self.0.send(Input::Unreachable(to));
    }
    fn snapshot_done(&self, to: u64, ok: bool) {
        let _ = self.0.send(Input::SnapshotDone(to, ok));
    }
}

/// The inputs of a node not yet started.
pub struct Inbox<O>(mpsc::Receiver<Input<O>>);

pub fn mailbox<O>() -> (Mailbox<O>, Inbox<O>) {
    let (tx, rx) = mpsc::channel();
    (Mailbox(tx), Inbox(rx))
}

/// A running Raft node. Dropping it does not stop it; call [`Node::stop`].
pub struct Node<O> {
    tx: mpsc::Sender<Input<O>>,
    status: watch::Receiver<NodeStatus>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    applier: Mutex<Option<std::thread::JoinHandle<()>>>,
    request_timeout: Duration,
    heard: Heard,
    contact: Contact,
}

/// When this node last received a Raft message from each peer: the liveness
/// the controller fences nodes by (every node is a Raft member, so the
/// leader's heartbeats and their answers are the nodes' heartbeats).
type Heard = Arc<Mutex<HashMap<u64, Instant>>>;

/// When this node was last in touch with a Raft leader that holds a quorum:
/// as a follower, when a message from its leader last arrived; as the
/// leader, its last round (check_quorum steps a leader down within an
/// election timeout of losing its quorum). A node cut off from the quorum
/// sees it grow old; through an election it stays as fresh as the last
/// leader's last message.
type Contact = Arc<Mutex<Option<Instant>>>;

impl<O: Send + 'static> Node<O> {
    /// Starts the node's thread. `sm` is shared with readers; the node locks it
    /// only while applying a batch.
    pub fn start<S>(
        config: NodeConfig,
        wal: Wal,
        sm: Arc<Mutex<S>>,
        transport: Arc<dyn Transport>,
        mailbox: Mailbox<O>,
        inbox: Inbox<O>,
    ) -> Result<Node<O>, Error>
    where
        S: StateMachine<Output = O>,
    {
        // A brand-new member of a new cluster: the log starts after index 1 with
        // the initial voters (as TiKV bootstraps a region), so a node that joins
        // later, with an empty log, can only catch up by a snapshot, which
        // carries the membership.
        if wal.is_empty() && !config.initial_voters.is_empty() {
            let voters = ConfState::from((config.initial_voters.clone(), vec![]));
            wal.compact_to(snapshot_meta(1, 1, voters))?;
        }
        let (applied, applied_term, sm_conf) = sm.lock().expect("state machine lock").applied();
        if applied < wal.snapshot_index() {
            // A fresh state machine on a bootstrapped log: it starts empty at the marker.
            let cs = wal.conf_state();
            let idx = wal.snapshot_index();
            let term = wal.term(idx).unwrap_or(1);
            sm.lock()
                .expect("state machine lock")
                .restore(idx, term, &cs, &[])?;
        } else if applied > 0 {
            if applied > wal.last_index_now() {
                // Crashed after installing a snapshot, before the log was reset.
                wal.compact_to(snapshot_meta(applied, applied_term, sm_conf.clone()))?;
            }
            // The membership as of what the state machine holds; conf changes after
            // it are re-applied from the log.
            wal.set_conf_state(sm_conf);
        }
        let applied = sm.lock().expect("state machine lock").applied().0;
        // What the state machine applied was committed, even where the WAL's
        // last commit record is older (it is written lazily); raft-rs refuses
        // to start with applied above committed.
        if applied <= wal.last_index_now() {
            wal.set_commit(applied);
        }
        {
            // The closure must not hold the WAL (it lives in the WAL: a cycle).
            let sm = Arc::downgrade(&sm);
            wal.set_snapshot_source(Box::new(move || {
                let sm = sm.upgrade()?;
                // Asked on the Raft thread: while a long apply holds the
                // state machine, raft-rs hears "temporarily unavailable" and
                // asks again later, instead of the thread waiting it out.
                let sm = sm.try_lock().ok()?;
                let (index, term, cs) = sm.applied();
                let mut s = Snapshot::default();
                s.set_data(sm.snapshot().into());
                let m = s.mut_metadata();
                m.index = index;
                m.term = term;
                m.set_conf_state(cs);
                Some(s)
            }));
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            ..raft::Config::default()
        };
        raft_config.validate()?;
        let logger = slog::Logger::root(TracingDrain, slog::o!());
        let mut raw = RawNode::new(&raft_config, wal.clone(), &logger)?;
        // The only voter need not wait out an election timeout to lead.
        if raw
            .raft
            .prs()
            .conf()
            .voters()
            .ids()
            .iter()
            .collect::<Vec<_>>()
            == [config.id]
        {
            raw.campaign()?;
        }
        let (status_tx, status_rx) = watch::channel(NodeStatus::default());
        let request_timeout = config.request_timeout;
        let heard = Heard::default();
        let contact = Contact::default();
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let applier = {
            let (sm, report, tick, id) = (sm.clone(), mailbox.0.clone(), config.tick, config.id);
            std::thread::Builder::new()
                .name(format!("raft-apply-{id}"))
                .spawn(move || apply_loop(id, sm, jobs_rx, report, tick))
                .map_err(|e| Error::io("spawn raft apply thread", e))?
        };
        let mut lp = Loop {
            jobs: Some(jobs_tx),
            heard: heard.clone(),
            contact: contact.clone(),
            id: config.id,
            config,
            raw,
            wal,
            sm,
            transport,
            status: status_tx,
            waiters: HashMap::new(),
            seq: 0,
            reads_new: Vec::new(),
            reads_asked: HashMap::new(),
            reads_ready: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("raft-{}", lp.id))
            .spawn(move || lp.run(inbox.0))
            .map_err(|e| Error::io("spawn raft thread", e))?;
        Ok(Node {
            tx: mailbox.0,
            status: status_rx,
            thread: Mutex::new(Some(thread)),
            applier: Mutex::new(Some(applier)),
            request_timeout,
            heard,
            contact,
        })
    }

    /// Proposes `data`; resolves with the state machine's output once applied here.
    pub async fn propose(&self, data: Vec<u8>) -> Result<O, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Input::Propose(data, tx))
            .map_err(|_| ProposeError::Stopped)?;
        self.wait(rx).await?
    }

    /// Proposes a membership change.
    pub async fn change_membership(&self, cc: ConfChangeV2) -> Result<O, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Input::ConfChange(cc, tx))
            .map_err(|_| ProposeError::Stopped)?;
        self.wait(rx).await?
    }

    /// Resolves once this node has applied everything committed before the call
    /// (ReadIndex): a read of local state after it is linearizable.
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Input::Read(tx))
            .map_err(|_| ProposeError::Stopped)?;
        self.wait(rx).await?
    }

    async fn wait<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, ProposeError> {
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::Timeout),
        }
    }

    pub fn transfer_leader(&self, to: u64) {
        let _ = self.tx.send(Input::TransferLeader(to));
    }

    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// When a message from each peer last arrived.
    pub fn last_heard(&self) -> HashMap<u64, Instant> {
        self.heard.lock().expect("heard lock").clone()
    }

    /// Whether this node was in touch with a leader holding a quorum within
    /// `within` (see [`Contact`]): what a broker asks before it acts as a
    /// partition leader on metadata that may be stale.
    pub fn in_touch_within(&self, within: Duration) -> bool {
        self.contact
            .lock()
            .expect("contact lock")
            .is_some_and(|at| at.elapsed() <= within)
    }

    /// Changes of status (leader, term, role), for whoever acts on leadership.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// Stops the thread after its current round; what was fsynced stays.
    pub fn stop(&self) {
        let _ = self.tx.send(Input::Stop);
        if let Some(t) = self.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
        // The Raft thread closed the apply thread's queue as it finished.
        if let Some(t) = self.applier.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

/// The log or the state machine cannot be written: the node stops (status
/// 70) rather than acknowledge what is not durable.
fn stop_unwritable(id: u64, e: &Error) -> ! {
    tracing::error!("raft node {id}: {e}; stopping");
    std::process::exit(70);
}

/// Work for the apply thread, in log order.
enum Job<O> {
    /// Committed entries, each with the membership after it when it is a
    /// membership change (already in effect in raft-rs) and the proposer
    /// waiting on it when it was proposed here.
    Entries(Vec<Committed<O>>),
    /// Answered once every earlier job is done: the Raft thread waits on it
    /// before it installs a snapshot or stops.
    Barrier(mpsc::Sender<()>),
}

struct Committed<O> {
    entry: Entry,
    change: Option<(ConfChangeV2, ConfState)>,
    waiter: Option<oneshot::Sender<Result<O, ProposeError>>>,
}

/// The apply thread: applies what the Raft thread hands over, answers the
/// proposers, persists what is due (also between batches, once a tick) and
/// reports its progress to the Raft thread.
fn apply_loop<S: StateMachine>(
    id: u64,
    sm: Arc<Mutex<S>>,
    jobs: mpsc::Receiver<Job<S::Output>>,
    report: mpsc::Sender<Input<S::Output>>,
    tick: Duration,
) {
    let mut reported = 0;
    loop {
        let applied = match jobs.recv_timeout(tick) {
            Ok(Job::Entries(batch)) => {
                let mut replies = Vec::with_capacity(batch.len());
                let mut last = 0;
                let mut sm = sm.lock().expect("state machine lock");
                for c in batch {
                    let e = &c.entry;
                    let out = match &c.change {
                        None => sm.apply(e.index, e.term, e.get_data()),
                        Some((cc, cs)) => {
                            sm.apply_conf_change(e.index, e.term, cc, cs, cc.get_context())
                        }
                    };
                    last = e.index;
                    if let Some(tx) = c.waiter {
                        replies.push((tx, out));
                    }
                }
                sm.finish_batch();
                drop(sm);
                for (tx, out) in replies {
                    let _ = tx.send(Ok(out));
                }
                Some(last)
            }
            Ok(Job::Barrier(done)) => {
                let _ = done.send(());
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let durable = match sm.lock().expect("state machine lock").persist(false) {
            Ok(d) => d,
            Err(e) => stop_unwritable(id, &e),
        };
        if applied.is_none() && durable == reported {
            continue;
        }
        reported = durable;
        if report.send(Input::Applied { applied, durable }).is_err() {
            return;
        }
    }
}

type Waiter<O> = (Instant, oneshot::Sender<Result<O, ProposeError>>);
type ReadWaiter = oneshot::Sender<Result<(), ProposeError>>;

struct Loop<S: StateMachine> {
    id: u64,
    /// The apply thread's queue; `None` once the loop finished.
    jobs: Option<mpsc::Sender<Job<S::Output>>>,
    config: NodeConfig,
    raw: RawNode<Wal>,
    wal: Wal,
    sm: Arc<Mutex<S>>,
    transport: Arc<dyn Transport>,
    status: watch::Sender<NodeStatus>,
    heard: Heard,
    contact: Contact,
    /// Proposals of this node waiting to be applied, by sequence number.
    waiters: HashMap<u64, Waiter<S::Output>>,
    seq: u64,
    /// Reads that arrived since the last read-index request.
    reads_new: Vec<ReadWaiter>,
    /// Read-index requests in flight, by context: when asked, and who waits.
    reads_asked: HashMap<u64, (Instant, Vec<ReadWaiter>)>,
    /// Reads with a confirmed index, waiting for the apply to reach it.
    reads_ready: Vec<(u64, Vec<ReadWaiter>)>,
}

/// How many inputs one round takes before it handles a Ready.
const INPUTS_PER_ROUND_MAX: usize = 4096;
/// A read-index request unanswered this long is asked again (a leader changed).
const READ_RETRY: Duration = Duration::from_millis(500);

impl<S: StateMachine> Loop<S> {
    fn run(&mut self, rx: mpsc::Receiver<Input<S::Output>>) {
        let mut next_tick = Instant::now() + self.config.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Input::Stop) => break,
                Ok(input) => {
                    self.handle(input);
                    let mut n = 1;
                    while n < INPUTS_PER_ROUND_MAX {
                        match rx.try_recv() {
                            Ok(Input::Stop) => return self.finish(),
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = now + self.config.tick;
                self.expire(now);
            }
            if !self.reads_new.is_empty() {
                let waiters = std::mem::take(&mut self.reads_new);
                self.ask_read_index(waiters);
            }
            if let Err(e) = self.on_ready() {
                stop_unwritable(self.id, &e);
            }
            self.publish_status();
        }
        self.finish();
    }

    fn finish(&mut self) {
        self.drain_applies();
        // Closing the queue ends the apply thread.
        self.jobs = None;
        if let Ok(mut sm) = self.sm.lock() {
            if let Err(e) = sm.persist(true) {
                tracing::error!("raft node {}: persist on stop: {e}", self.id);
            }
        }
    }

    /// Waits until the apply thread has done everything handed to it.
    fn drain_applies(&self) {
        let Some(jobs) = &self.jobs else {
            return;
        };
        let (tx, rx) = mpsc::channel();
        if jobs.send(Job::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    fn handle(&mut self, input: Input<S::Output>) {
        match input {
            Input::Applied { applied, durable } => {
                // A report queued before a snapshot was installed may name
                // an index the snapshot already passed.
                if let Some(index) = applied.filter(|i| *i > self.raw.raft.raft_log.applied) {
                    self.raw.advance_apply_to(index);
                    self.release_reads();
                }
                if let Err(e) = self.maybe_compact(durable) {
                    stop_unwritable(self.id, &e);
                }
            }
            Input::Propose(data, reply) => {
                if self.raw.raft.leader_id == raft::INVALID_ID {
                    let _ = reply.send(Err(ProposeError::NoLeader));
                    return;
                }
                let seq = self.next_seq();
                match self.raw.propose(self.context(seq), data) {
                    Ok(()) => {
                        self.waiters
                            .insert(seq, (Instant::now() + self.config.request_timeout, reply));
                    }
                    Err(_) => {
                        let _ = reply.send(Err(ProposeError::Dropped));
                    }
                }
            }
            Input::ConfChange(cc, reply) => {
                if self.raw.raft.state != StateRole::Leader {
                    // raft-rs does not forward conf changes; etcd forwards member
                    // requests to the leader, the front does that for us.
                    let _ = reply.send(Err(ProposeError::NoLeader));
                    return;
                }
                let seq = self.next_seq();
                match self.raw.propose_conf_change(self.context(seq), cc) {
                    Ok(()) => {
                        self.waiters
                            .insert(seq, (Instant::now() + self.config.request_timeout, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ProposeError::Rejected(e.to_string())));
                    }
                }
            }
            Input::Read(reply) => self.reads_new.push(reply),
            Input::Step(msg) => {
                self.heard
                    .lock()
                    .expect("heard lock")
                    .insert(msg.from, Instant::now());
                let from = msg.from;
                let _ = self.raw.step(*msg);
                if from == self.raw.raft.leader_id {
                    *self.contact.lock().expect("contact lock") = Some(Instant::now());
                }
            }
            Input::Unreachable(to) => self.raw.report_unreachable(to),
            Input::SnapshotDone(to, ok) => self.raw.report_snapshot(
                to,
                if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                },
            ),
            Input::TransferLeader(to) => self.raw.transfer_leader(to),
            Input::Stop => {}
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// An entry's context: who proposed it and which of its proposals it is.
    fn context(&self, seq: u64) -> Vec<u8> {
        let mut c = Vec::with_capacity(16);
        c.extend_from_slice(&self.id.to_le_bytes());
        c.extend_from_slice(&seq.to_le_bytes());
        c
    }

    fn ask_read_index(&mut self, waiters: Vec<ReadWaiter>) {
        let ctx = self.next_seq();
        self.raw.read_index(ctx.to_le_bytes().to_vec());
        self.reads_asked.insert(ctx, (Instant::now(), waiters));
    }

    fn expire(&mut self, now: Instant) {
        self.waiters
            .retain(|_, (deadline, tx)| !tx.is_closed() && *deadline > now);
        let stale: Vec<u64> = self
            .reads_asked
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) >= READ_RETRY)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            let (_, mut waiters) = self.reads_asked.remove(&k).expect("key just listed");
            waiters.retain(|w| !w.is_closed());
            if !waiters.is_empty() {
                self.ask_read_index(waiters);
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), Error> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        let mut snapshot_at = None;
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if !ready.snapshot().is_empty() {
            // Everything handed over before the snapshot is applied first;
            // the snapshot then replaces it, here, while the apply thread waits.
            self.drain_applies();
            let snap = ready.snapshot().clone();
            let meta = snap.get_metadata().clone();
            tracing::info!(
                "raft node {}: installing snapshot at index {} term {}",
                self.id,
                meta.index,
                meta.term
            );
            self.sm.lock().expect("state machine lock").restore(
                meta.index,
                meta.term,
                meta.get_conf_state(),
                snap.get_data(),
            )?;
            self.wal.compact_to(meta.clone())?;
            snapshot_at = Some(meta.index);
        }
        self.apply(ready.take_committed_entries())?;
        // One write and one fsync for the round's entries and hard state.
        self.wal.save(ready.entries(), ready.hs())?;
        self.wal.sync()?;
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        for rs in ready.take_read_states() {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            if let Some((_, waiters)) = self.reads_asked.remove(&u64::from_le_bytes(ctx)) {
                self.reads_ready.push((rs.index, waiters));
            }
        }
        // The apply thread reports what it applied (Input::Applied).
        let mut light = self.raw.advance_append(ready);
        if let Some(index) = snapshot_at {
            self.raw.advance_apply_to(index);
        }
        if let Some(commit) = light.commit_index() {
            self.wal.set_commit(commit);
        }
        if !light.messages().is_empty() {
            self.transport.send(light.take_messages());
        }
        self.apply(light.take_committed_entries())?;
        self.release_reads();
        Ok(())
    }

    /// Hands committed entries to the apply thread, with their proposers;
    /// a membership change takes effect in raft-rs here.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut batch = Vec::with_capacity(entries.len());
        for entry in entries {
            let change = match entry.get_entry_type() {
                EntryType::EntryNormal => None,
                t @ (EntryType::EntryConfChange | EntryType::EntryConfChangeV2) => {
                    let cc = match t {
                        EntryType::EntryConfChange => {
                            raft::eraftpb::ConfChange::parse_from_bytes(entry.get_data())
                                .map(|c| c.into_v2())
                        }
                        _ => ConfChangeV2::parse_from_bytes(entry.get_data()),
                    }
                    .map_err(|err| Error::Corrupt(format!("conf change {}: {err}", entry.index)))?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    self.wal.set_conf_state(cs.clone());
                    Some((cc, cs))
                }
            };
            let waiter = self
                .own_seq(entry.get_context())
                .and_then(|seq| self.waiters.remove(&seq))
                .map(|(_, tx)| tx);
            batch.push(Committed {
                entry,
                change,
                waiter,
            });
        }
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job::Entries(batch)).is_ok());
        if !sent {
            return Err(Error::StateMachine("the apply thread is gone".into()));
        }
        Ok(())
    }

    fn own_seq(&self, ctx: &[u8]) -> Option<u64> {
        if ctx.len() != 16 {
            return None;
        }
        let node = u64::from_le_bytes(ctx[..8].try_into().ok()?);
        (node == self.id).then(|| u64::from_le_bytes(ctx[8..].try_into().expect("8 bytes")))
    }

    fn release_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.raw.raft.raft_log.applied;
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = wait;
        for (_, waiters) in done {
            for w in waiters {
                let _ = w.send(Ok(()));
            }
        }
    }

    /// Drops log entries the state machine durably holds (the apply thread
    /// says up to where), keeping `log_entries_keep` for followers that lag.
    fn maybe_compact(&mut self, durable: u64) -> Result<(), Error> {
        if self.wal.len() <= self.config.log_entries_max {
            return Ok(());
        }
        let upto = durable.saturating_sub(self.config.log_entries_keep);
        if upto <= self.wal.snapshot_index() {
            return Ok(());
        }
        let term = self.wal.term(upto)?;
        self.wal
            .compact_to(snapshot_meta(upto, term, self.wal.conf_state()))
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        let conf = r.prs().conf();
        let mut voters: Vec<u64> = conf.voters().ids().iter().collect();
        voters.sort_unstable();
        let mut learners: Vec<u64> = conf.learners().iter().copied().collect();
        learners.sort_unstable();
        let matched = if r.state == StateRole::Leader {
            let mut m: Vec<(u64, u64)> = r.prs().iter().map(|(id, p)| (*id, p.matched)).collect();
            m.sort_unstable();
            m
        } else {
            Vec::new()
        };
        let status = NodeStatus {
            id: self.id,
            leader: r.leader_id,
            term: r.term,
            role: match r.state {
                StateRole::Follower => Role::Follower,
                StateRole::Candidate => Role::Candidate,
                StateRole::PreCandidate => Role::PreCandidate,
                StateRole::Leader => Role::Leader,
            },
            commit: r.raft_log.committed,
            applied: r.raft_log.applied,
            voters,
            learners,
            matched,
        };
        if r.state == StateRole::Leader {
            // Elected by a quorum, or still leading one (check_quorum).
            *self.contact.lock().expect("contact lock") = Some(Instant::now());
        }
        self.status.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }
}

/// raft-rs logs through slog; this sends its warnings and errors to tracing.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!("raft: {}", record.msg())
            }
            slog::Level::Warning => tracing::warn!("raft: {}", record.msg()),
            slog::Level::Info => tracing::debug!("raft: {}", record.msg()),
            _ => tracing::trace!("raft: {}", record.msg()),
        }
        Ok(())
    }
}

/// Whether a message carries a snapshot (the transport reports how it went).
pub(crate) fn is_snapshot(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgSnapshot
}
