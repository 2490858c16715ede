//! A deterministic simulation of Keel's replicated Kafka partitions.
//!
//! One thread, one seeded PRNG, one simulated clock. Brokers, the
//! controller and producers exchange messages through a simulated network
//! that delays, drops, duplicates and reorders them and can be cut (both
//! ways, one way, or around a zombie leader that its clients still reach);
//! logs live on simulated disks whose fsyncs take time and sometimes stall;
//! a crash loses what was not fsynced, or part of it (a torn tail the
//! recovery's CRC check cut). What runs inside is Keel's own code, not a
//! copy of it:
//!
//! - every broker's part in every partition is a `keel_repl::Replica`, the
//!   same core `keel-broker` drives: follower positions, the high
//!   watermark, when acks=all is answered and with what, ISR changes,
//!   fencing by leader epoch, truncation by OffsetsForLeaderEpoch;
//! - the controller applies `keel_meta` records to a `keel_meta::Image`,
//!   the same state machine the Raft quorum applies: registrations (a
//!   restart fences the old incarnation), fencing after a silent session,
//!   unfencing, the leader's AlterPartition with its partition-epoch check,
//!   preferred-leader elections.
//!
//! What the simulation itself provides is the glue `keel-broker` and
//! `keel-kafka` provide for real (the fetch loop, the log, the produce
//! path), kept to their rules and named where they live. The controller is
//! one process here, its records applied in order at once: the Raft quorum
//! under it is not simulated yet.
//!
//! After every step it checks the invariants (see [`Sim::check`]); a run's
//! events can be printed as a trace and replay bit for bit from its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use keel_meta::{record::Kind, Image, Record};
use keel_repl::{Refusal, Replica, Role};

pub const TOPIC: &str = "sim";
const CONTROLLER: Addr = Addr::Controller;
const HEARTBEAT_MS: i64 = 250;
const ISR_CHECK_MS: i64 = 1000;
const PREFERRED_CHECK_MS: i64 = 1000;
const FETCH_IDLE_MS: i64 = 25;
/// Batches a leader returns per fetch (keel-kafka asks for 1 MiB per
/// partition; these batches are small). Four let a follower fall behind
/// two producers for good under 40 ms delays (seed 9828).
const FETCH_MAX_BATCHES: usize = 64;
const REQUEST_TIMEOUT_MS: i64 = 1500;
const PRODUCE_EVERY_MS: i64 = 15;
const QUIET_MS: i64 = 15_000;
/// How often (in events) the replica invariants are checked in full; the
/// acks=all promise is checked at every answer.
const CHECK_EVERY_EVENTS: u64 = 256;
/// The last part of the quiet period, without producers.
const SETTLE_MS: i64 = 5_000;
/// keel-broker's replica.high.watermark.checkpoint.interval.ms (Kafka's default).
const CHECKPOINT_MS: i64 = 5_000;
const METADATA_MAX_AGE_MS: i64 = 1_000;

// ---- randomness ------------------------------------------------------------

/// SplitMix64: tiny, fast, and the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(0) as u64 + 1) as i64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}

// ---- configuration ---------------------------------------------------------

/// A bug planted in the glue or fed to the core, to show the checks find
/// it (issue 30's "teeth"). Never compiled into a broker: this crate is the
/// simulator's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// KIP-101's bug: a follower truncates to its high watermark on a new
    /// leader epoch instead of asking the leader where its epoch ends.
    TruncateToHighWatermark,
    /// KIP-101 without KIP-279: a follower truncates to the end offset the
    /// leader answers, in one round, even when the leader never had the
    /// follower's epoch (Keel's fetcher before today's fix).
    TruncateToLeaderEnd,
    /// A restarted broker takes its log end as its high watermark (Keel
    /// before it checkpointed high watermarks): the uncommitted tail it
    /// truncates when it follows again is reported as lost committed
    /// records although every election was clean. Found by keel-sim in its
    /// first seeds; fixed in keel-broker.
    HighWatermarkFromLogEnd,
    /// A follower reports its log end, not its fsynced end, as its position:
    /// the leader counts a copy that a crash can still take away.
    CountCopyBeforeFsync,
    /// acks=all answered as soon as the leader has the batch, not the ISR.
    AckBeforeIsr,
    /// acks=all answered even after the ISR shrank below min.insync.replicas.
    AckBelowMinInsync,
    /// A follower appends fetch answers from a leader or epoch it no longer
    /// follows (the bug the interop suite found, fixed in keel-broker).
    AcceptStaleFetch,
    /// A broker the controller fenced keeps leading: it ignores metadata
    /// that takes its leadership away.
    FencedLeaderKeepsLeading,
    /// The leader advances the high watermark by the applied ISR alone while
    /// its proposal to add a replica is in flight (before KIP-497's maximal
    /// ISR): the real bug seed 187 found, fixed in keel-repl.
    ForgetIsrProposal,
    /// The leader proposes a fenced replica back into the ISR and keeps
    /// counting the refused proposal (Keel before KIP-903's check in the
    /// leader): the high watermark stops while the replica is down. Found
    /// by the README's own test, kill -9 of a broker while writes paused.
    StaleIsrProposal,
    /// A replica that truncates records an unclean election lost says
    /// nothing: acknowledged records vanish unreported.
    UnreportedLoss,
    /// A restarted broker acts on metadata before its new registration is in
    /// it: a leader that lost its unflushed tail leads again at its old epoch
    /// and writes new records where its followers hold others of that epoch.
    /// Found by keel-sim in CI (seed 778011130109): the simulator's broker
    /// did not wait as keel's `Membership::registered` does.
    LeadBeforeRegistered,
}

impl Plant {
    pub const ALL: [Plant; 12] = [
        Plant::TruncateToHighWatermark,
        Plant::TruncateToLeaderEnd,
        Plant::HighWatermarkFromLogEnd,
        Plant::CountCopyBeforeFsync,
        Plant::AckBeforeIsr,
        Plant::AckBelowMinInsync,
        Plant::AcceptStaleFetch,
        Plant::FencedLeaderKeepsLeading,
        Plant::ForgetIsrProposal,
        Plant::StaleIsrProposal,
        Plant::UnreportedLoss,
        Plant::LeadBeforeRegistered,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Plant::TruncateToHighWatermark => "truncate-to-high-watermark",
            Plant::TruncateToLeaderEnd => "truncate-to-leader-end",
            Plant::HighWatermarkFromLogEnd => "high-watermark-from-log-end",
            Plant::CountCopyBeforeFsync => "count-copy-before-fsync",
            Plant::AckBeforeIsr => "ack-before-isr",
            Plant::AckBelowMinInsync => "ack-below-min-insync",
            Plant::AcceptStaleFetch => "accept-stale-fetch",
            Plant::FencedLeaderKeepsLeading => "fenced-leader-keeps-leading",
            Plant::ForgetIsrProposal => "forget-isr-proposal",
            Plant::StaleIsrProposal => "stale-isr-proposal",
            Plant::UnreportedLoss => "unreported-loss",
            Plant::LeadBeforeRegistered => "lead-before-registered",
        }
    }

    pub fn parse(s: &str) -> Option<Plant> {
        Plant::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// The shape of one simulated run. [`Config::for_seed`] draws the fault
/// rates from the seed, so seeds differ in kind, not only in timing.
#[derive(Debug, Clone)]
pub struct Config {
    pub brokers: i32,
    pub partitions: i32,
    pub replication_factor: i32,
    pub min_insync: i32,
    /// Simulated time with faults and producers, then a quiet period in
    /// which every fault heals and replicas must converge.
    pub run_ms: i64,
    pub session_ms: i64,
    pub lag_ms: i64,
    pub producers: usize,
    /// Network: one-way delay range, and the chance a message is dropped
    /// or delivered twice.
    pub delay_ms: (i64, i64),
    pub drop: f64,
    pub duplicate: f64,
    /// The chance a message is held up for 0.5 to 3 s (a retransmission
    /// after loss): how an old proposal arrives after a newer one.
    pub long_delay: f64,
    /// Mean time between crashes of some broker, and how long one is down.
    pub crash_every_ms: i64,
    pub down_ms: (i64, i64),
    /// A crash keeps the page cache (kill -9) or loses what was not fsynced
    /// but a random prefix of it (power loss).
    pub power_loss: f64,
    /// Mean time between network cuts, and how long one lasts.
    pub cut_every_ms: i64,
    pub cut_ms: (i64, i64),
    /// fsync latency range, and the chance one stalls for up to a second.
    pub fsync_ms: (i64, i64),
    pub disk_stall: f64,
    /// The topic's unclean.leader.election.enable: availability over
    /// consistency, with every loss reported.
    pub unclean: bool,
    /// Brokers' clocks jump (NTP steps, a VM resumed): each broker's
    /// replication core reads its own clock, which jumps by up to ±3 s
    /// every few seconds.
    pub clock_jumps: bool,
    pub plant: Option<Plant>,
}

impl Config {
    /// A three- or five-broker cluster with fault rates drawn from `seed`.
    pub fn for_seed(seed: u64) -> Config {
        let mut r = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
        let brokers = if r.chance(0.3) { 5 } else { 3 };
        Config {
            brokers,
            partitions: r.range(1, 3) as i32,
            replication_factor: 3,
            min_insync: 2,
            run_ms: 20_000,
            session_ms: 2_000,
            lag_ms: 3_000,
            producers: 2,
            delay_ms: (1, r.range(2, 40)),
            drop: [0.0, 0.01, 0.05][r.below(3) as usize],
            duplicate: [0.0, 0.01][r.below(2) as usize],
            long_delay: [0.0, 0.002, 0.01][r.below(3) as usize],
            crash_every_ms: [3_000, 6_000, 1_000_000][r.below(3) as usize],
            down_ms: (200, r.range(500, 4_000)),
            power_loss: [0.0, 0.5, 1.0][r.below(3) as usize],
            cut_every_ms: [2_500, 5_000, 1_000_000][r.below(3) as usize],
            cut_ms: (300, r.range(800, 5_000)),
            fsync_ms: (1, r.range(2, 10)),
            disk_stall: [0.0, 0.01][r.below(2) as usize],
            unclean: r.chance(0.25),
            clock_jumps: r.chance(0.3),
            plant: None,
        }
    }

    /// No faults at all: the baseline the named scenarios start from.
    pub fn quiet(brokers: i32) -> Config {
        Config {
            brokers,
            partitions: 1,
            replication_factor: 3,
            min_insync: 2,
            run_ms: 5_000,
            session_ms: 2_000,
            lag_ms: 3_000,
            producers: 1,
            delay_ms: (1, 3),
            drop: 0.0,
            duplicate: 0.0,
            long_delay: 0.0,
            crash_every_ms: i64::MAX / 4,
            down_ms: (200, 200),
            power_loss: 0.0,
            cut_every_ms: i64::MAX / 4,
            cut_ms: (300, 300),
            fsync_ms: (1, 2),
            disk_stall: 0.0,
            unclean: false,
            clock_jumps: false,
            plant: None,
        }
    }
}

// ---- the simulated world ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Addr {
    Controller,
    Broker(i32),
    Producer(usize),
}

/// One batch in a simulated log: each record takes one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub base: i64,
    pub epoch: i32,
    pub records: Vec<u64>,
}

impl Part {
    /// Starts an fsync of everything appended, unless one runs: how many
    /// batches it will make durable.
    fn start_flush(&mut self) -> Option<usize> {
        if self.flushing {
            return None;
        }
        self.flushing = true;
        Some(self.log.batches.len())
    }
}

impl Batch {
    fn end(&self) -> i64 {
        self.base + self.records.len() as i64
    }
}

/// A partition's log on a simulated disk: its batches, how many of them an
/// fsync has made durable, and the leader-epoch cache `keel-storage` keeps
/// (rebuilt from the batches after a restart; a new leader's epoch noted
/// at the log end before it appends, in memory only).
#[derive(Debug, Clone, Default)]
pub struct SimLog {
    pub batches: Vec<Batch>,
    pub durable: usize,
    epochs: Vec<(i32, i64)>,
}

impl SimLog {
    pub fn end(&self) -> i64 {
        self.batches.last().map_or(0, Batch::end)
    }
    pub fn durable_end(&self) -> i64 {
        self.durable
            .checked_sub(1)
            .map_or(0, |i| self.batches[i].end())
    }
    fn note_epoch(&mut self, epoch: i32, start: i64) {
        if self.epochs.last().is_none_or(|(e, _)| *e < epoch) {
            self.epochs.push((epoch, start));
        }
    }
    pub fn append(&mut self, b: Batch) {
        self.note_epoch(b.epoch, b.base);
        self.batches.push(b);
    }
    pub fn begin_epoch(&mut self, epoch: i32) {
        let end = self.end();
        self.note_epoch(epoch, end);
    }
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.last().map(|(e, _)| *e)
    }
    /// `keel_storage::Log::epoch_end`: the largest epoch at or below `epoch`
    /// and where it ends here.
    pub fn epoch_end(&self, epoch: i32) -> (i32, i64) {
        let Some(i) = self.epochs.iter().rposition(|(e, _)| *e <= epoch) else {
            return (-1, -1);
        };
        let next = self.epochs.get(i + 1).map_or(self.end(), |(_, s)| *s);
        (self.epochs[i].0, next)
    }
    /// Whole batches holding `offset` or later go (`Log::truncate_to`).
    pub fn truncate_to(&mut self, offset: i64) {
        let keep = self
            .batches
            .iter()
            .take_while(|b| b.end() <= offset)
            .count();
        self.batches.truncate(keep);
        self.durable = self.durable.min(keep);
        let end = self.end();
        self.epochs.retain(|(_, s)| *s < end);
    }
    fn rebuild_epochs(&mut self) {
        self.epochs.clear();
        for i in 0..self.batches.len() {
            let (e, s) = (self.batches[i].epoch, self.batches[i].base);
            self.note_epoch(e, s);
        }
    }
    /// The record at `offset`, if this log holds one there.
    pub fn at(&self, offset: i64) -> Option<u64> {
        let i = self.batches.partition_point(|b| b.end() <= offset);
        let b = self.batches.get(i)?;
        (b.base <= offset).then(|| b.records[(offset - b.base) as usize])
    }
    /// Batches from the one holding `offset` on (a leader's read).
    fn read_from(&self, offset: i64, max: usize) -> Vec<Batch> {
        let i = self.batches.partition_point(|b| b.end() <= offset);
        self.batches[i..].iter().take(max).cloned().collect()
    }
}

/// An acks=all write waiting in the core: who to answer, and where it landed.
#[derive(Debug, Clone)]
struct Waiter {
    producer: usize,
    req: u64,
    base: i64,
    epoch: i32,
    records: Vec<u64>,
}

#[derive(Debug, Default)]
struct Part {
    log: SimLog,
    core: Option<Replica<Waiter>>,
    hw: i64,
    /// A follower: the high watermark its leader last sent (taken once what
    /// it copied is durable, never past that).
    leader_hw: i64,
    /// The high watermark as last checkpointed to disk (Kafka's
    /// replication-offset-checkpoint): where a restart starts from.
    hw_checkpoint: i64,
    flushing: bool,
    fetch: Option<FetchState>,
}

#[derive(Debug, Clone)]
struct FetchState {
    leader: i32,
    epoch: i32,
    truncated: bool,
    inflight: Option<u64>,
    scheduled: bool,
}

#[derive(Debug)]
struct Broker {
    id: i32,
    up: bool,
    incarnation: u64,
    applied: u64,
    /// The last metadata image it took: a restarted keel node replays its
    /// Raft log, so the image it starts from is the one it had, which may
    /// still name it leader of partitions its earlier incarnation led.
    image: Option<Arc<Image>>,
    parts: BTreeMap<i32, Part>,
}

#[derive(Debug, Default)]
struct Producer {
    next_record: u64,
    inflight: BTreeMap<u64, (i32, Vec<u64>, i64)>,
    /// Records to send again (their earlier attempt failed or timed out).
    retry: Vec<(i32, Vec<u64>)>,
    next_req: u64,
    /// Its metadata: each partition's leader as of `refreshed_at` (a client's
    /// view is stale: it keeps writing to a deposed leader until an error or
    /// its next refresh, metadata.max.age.ms).
    leaders: BTreeMap<i32, i32>,
    refreshed_at: Option<i64>,
}

#[derive(Debug, Clone)]
enum Msg {
    Heartbeat {
        incarnation: u64,
        applied: u64,
    },
    AlterIsr {
        partition: i32,
        partition_epoch: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    Metadata(Arc<Image>),
    AlterIsrReply {
        partition: i32,
        accepted: bool,
    },
    Fetch {
        partition: i32,
        epoch: i32,
        offset: i64,
        req: u64,
        inc: u64,
    },
    FetchReply {
        partition: i32,
        epoch: i32,
        offset: i64,
        req: u64,
        inc: u64,
        result: Result<(Vec<Batch>, i64), Refusal>,
    },
    EpochQuery {
        partition: i32,
        current: i32,
        epoch: i32,
        req: u64,
        inc: u64,
    },
    EpochReply {
        partition: i32,
        current: i32,
        req: u64,
        inc: u64,
        result: Result<(i32, i64), Refusal>,
    },
    Produce {
        partition: i32,
        records: Vec<u64>,
        req: u64,
    },
    ProduceReply {
        req: u64,
        result: Result<(i64, i32), String>,
    },
}

/// A fault a named scenario injects at a chosen time (the random faults
/// draw from the same kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The broker's process dies; with `power_loss`, what was not fsynced is lost.
    Crash {
        node: i32,
        power_loss: bool,
    },
    Restart(i32),
    /// Cut from every other broker and the controller, both ways, and from
    /// its clients.
    Isolate(i32),
    /// Cut from the cluster while its producers still reach it.
    Zombie(i32),
    Heal,
    /// Every fsync of the broker takes this long from now on.
    SlowDisk {
        node: i32,
        ms: i64,
    },
    /// Producers stop sending, or start again.
    PauseProducers,
    ResumeProducers,
    /// A liveness expectation: some write of partition 0 was acknowledged
    /// since this time (a violation if not).
    ExpectAcksSince(i64),
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        from: Addr,
        to: Addr,
        msg: Msg,
    },
    BrokerTick(i32, u64),
    IsrTick(i32, u64),
    FetchTimer(i32, u64, i32),
    RequestTimeout(i32, u64, i32, u64),
    FsyncDone {
        node: i32,
        inc: u64,
        partition: i32,
        upto: usize,
    },
    ControllerTick,
    PreferredTick,
    ProducerTick(usize),
    ProduceTimeout(usize, u64),
    Crash,
    Restart(i32),
    Cut,
    Heal,
    Scripted(Action),
    ClockJump,
}

struct Scheduled {
    at: i64,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// What one run did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub sim_ms: i64,
    pub events: u64,
    pub acked: usize,
    pub leader_changes: usize,
    pub crashes: usize,
    pub cuts: usize,
    pub violations: Vec<String>,
    pub trace: Vec<String>,
}

/// The whole simulated cluster.
pub struct Sim {
    cfg: Config,
    rng: Rng,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    image: Image,
    index: u64,
    last_heard: BTreeMap<i32, i64>,
    brokers: BTreeMap<i32, Broker>,
    producers: Vec<Producer>,
    cut: BTreeSet<(Addr, Addr)>,
    faults_on: bool,
    /// Producers send (a scenario may pause them; they stop to let the
    /// cluster settle at the end).
    producing: bool,
    /// Loss ranges replicas reported after unclean elections: (partition, from, to).
    reported_lost: Vec<(i32, i64, i64)>,
    /// Acknowledged records an unclean leader's history replaced: (partition, offset, record).
    replaced: Vec<(i32, i64, u64)>,
    /// Each partition's last acks=all acknowledgement, in simulated ms.
    last_ack_at: BTreeMap<i32, i64>,
    /// (partition, offset) -> the record acks=all acknowledged there.
    acked: BTreeMap<(i32, i64), u64>,
    /// (partition, leader epoch) -> the broker that acknowledged at it.
    ack_leaders: BTreeMap<(i32, i32), i32>,
    max_epoch: BTreeMap<i32, i32>,
    /// Each broker's clock offset from simulated time (clock jumps).
    clock: BTreeMap<i32, i64>,
    /// Brokers whose every fsync takes this long (a scenario's slow disk).
    slow_disk: BTreeMap<i32, i64>,
    pub report: Report,
    tracing: bool,
}

impl Sim {
    pub fn new(seed: u64, cfg: Config, tracing: bool) -> Sim {
        let mut sim = Sim {
            rng: Rng::new(seed),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            image: Image::default(),
            index: 0,
            last_heard: BTreeMap::new(),
            brokers: BTreeMap::new(),
            producers: (0..cfg.producers).map(|_| Producer::default()).collect(),
            cut: BTreeSet::new(),
            faults_on: true,
            producing: true,
            last_ack_at: BTreeMap::new(),
            reported_lost: Vec::new(),
            replaced: Vec::new(),
            acked: BTreeMap::new(),
            ack_leaders: BTreeMap::new(),
            max_epoch: BTreeMap::new(),
            slow_disk: BTreeMap::new(),
            clock: BTreeMap::new(),
            report: Report {
                seed,
                ..Report::default()
            },
            tracing,
            cfg,
        };
        for id in 1..=sim.cfg.brokers {
            sim.brokers.insert(
                id,
                Broker {
                    id,
                    up: true,
                    incarnation: 1,
                    applied: 0,
                    image: None,
                    parts: BTreeMap::new(),
                },
            );
            sim.register(id, 1);
        }
        let n = sim.cfg.brokers;
        let rf = sim.cfg.replication_factor.min(n);
        let partitions = (0..sim.cfg.partitions)
            .map(|p| keel_meta::Replicas {
                replicas: (0..rf).map(|i| (p + i) % n + 1).collect(),
            })
            .collect();
        let mut configs: BTreeMap<String, String> = [(
            "min.insync.replicas".to_string(),
            sim.cfg.min_insync.to_string(),
        )]
        .into_iter()
        .collect();
        if sim.cfg.unclean {
            configs.insert(keel_meta::UNCLEAN_LEADER_ELECTION.into(), "true".into());
        }
        sim.propose(Record::new(Kind::CreateTopic(keel_meta::CreateTopic {
            name: TOPIC.into(),
            topic_id: (1..=16).collect(),
            partitions,
            configs,
        })));
        for id in 1..=n {
            let at = sim.rng.range(0, HEARTBEAT_MS);
            sim.at(at, Event::BrokerTick(id, 1));
            sim.at(at + ISR_CHECK_MS, Event::IsrTick(id, 1));
        }
        sim.at(100, Event::ControllerTick);
        sim.at(PREFERRED_CHECK_MS, Event::PreferredTick);
        for k in 0..sim.cfg.producers {
            sim.at(200 + k as i64, Event::ProducerTick(k));
        }
        let crash = sim.exp(sim.cfg.crash_every_ms);
        sim.at(crash, Event::Crash);
        let cut = sim.exp(sim.cfg.cut_every_ms);
        sim.at(cut, Event::Cut);
        if sim.cfg.clock_jumps {
            let first = sim.rng.range(1_000, 6_000);
            sim.at(first, Event::ClockJump);
        }
        sim
    }

    fn exp(&mut self, mean: i64) -> i64 {
        if mean >= i64::MAX / 8 {
            return i64::MAX / 4;
        }
        mean / 2 + self.rng.range(0, mean)
    }

    fn trace(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            let l = line();
            self.report.trace.push(format!("{:>7}ms {l}", self.now));
        }
    }

    fn violation(&mut self, what: String) {
        if self.report.violations.len() < 20 {
            if self.tracing {
                self.report
                    .trace
                    .push(format!("{:>7}ms VIOLATION {what}", self.now));
            }
            self.report
                .violations
                .push(format!("at {}ms: {what}", self.now));
        }
    }

    fn at(&mut self, delay: i64, ev: Event) {
        self.seq += 1;
        let at = self.now.saturating_add(delay.max(0));
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn send(&mut self, from: Addr, to: Addr, msg: Msg) {
        if self.faults_on && self.rng.chance(self.cfg.drop) {
            return;
        }
        let copies = if self.faults_on && self.rng.chance(self.cfg.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = self.cfg.delay_ms;
            let d = if self.faults_on && self.rng.chance(self.cfg.long_delay) {
                self.rng.range(500, 3_000)
            } else {
                self.rng.range(lo, hi)
            };
            self.at(
                d,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Runs the faulty period, heals everything, lets the cluster settle and
    /// checks that every replica converged.
    pub fn run(mut self) -> Report {
        let end = self.cfg.run_ms;
        self.run_until(end);
        self.producing = true;
        self.faults_on = false;
        self.cut.clear();
        let down: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| !b.up)
            .map(|b| b.id)
            .collect();
        for id in down {
            self.restart(id);
        }
        self.trace(|| "faults off: the cluster heals while producers go on".into());
        self.run_until(end + QUIET_MS - SETTLE_MS);
        self.producing = false;
        self.trace(|| "producers stop: the cluster settles".into());
        self.run_until(end + QUIET_MS);
        self.check_converged();
        self.check_progress(end);
        self.report.sim_ms = self.now;
        self.report.acked = self.acked.len();
        self.report
    }

    pub fn run_until(&mut self, until: i64) {
        while let Some(Reverse(s)) = self.queue.peek() {
            if s.at > until {
                break;
            }
            let Reverse(s) = self.queue.pop().expect("peeked");
            self.now = s.at;
            self.report.events += 1;
            self.step(s.ev);
            if self.report.events.is_multiple_of(CHECK_EVERY_EVENTS) {
                self.check();
            }
        }
        self.now = until;
        self.check();
    }

    // ---- the controller --------------------------------------------------

    /// Applies a record as the Raft quorum would (in order, once), and
    /// pushes the new image to every broker.
    fn propose(&mut self, rec: Record) -> bool {
        self.index += 1;
        let what = format!("{:?}", rec.kind);
        match self.image.apply(self.index, rec) {
            Ok(_) => {
                self.trace(|| format!("controller applied {}", short(&what)));
                self.check_image();
                let image = Arc::new(self.image.clone());
                let ids: Vec<i32> = self.brokers.keys().copied().collect();
                for id in ids {
                    self.send(CONTROLLER, Addr::Broker(id), Msg::Metadata(image.clone()));
                }
                true
            }
            Err(e) => {
                self.trace(|| format!("controller refused {}: {e}", short(&what)));
                false
            }
        }
    }

    fn register(&mut self, id: i32, incarnation: u64) {
        self.last_heard.insert(id, self.now);
        self.propose(Record::new(Kind::RegisterNode(keel_meta::RegisterNode {
            node_id: id,
            incarnation,
            kafka_host: "sim".into(),
            kafka_port: 9092,
            rack: String::new(),
            cluster_id: "sim".into(),
            cql_host: String::new(),
            cql_port: 0,
            datacenter: String::new(),
            num_tokens: 0,
        })));
    }

    fn on_heartbeat(&mut self, id: i32, incarnation: u64, applied: u64) {
        let Some(n) = self.image.nodes.get(&id).cloned() else {
            return;
        };
        if n.incarnation != incarnation {
            self.register(id, incarnation);
            return;
        }
        self.last_heard.insert(id, self.now);
        if applied < self.image.applied {
            let image = Arc::new(self.image.clone());
            self.send(CONTROLLER, Addr::Broker(id), Msg::Metadata(image));
        }
    }

    /// The liveness duty, keel-meta's decisions as keel-etcd's controller
    /// makes them: fence a broker silent past the session, unfence one heard
    /// again. (This controller took over at time 0.)
    fn controller_tick(&mut self) {
        let heard = |id: i32| self.last_heard.get(&id).copied();
        let records = keel_meta::duties::liveness_records(
            &self.image,
            heard,
            0,
            self.now,
            self.cfg.session_ms,
        );
        for (_, _, rec) in records {
            self.propose(rec);
        }
        self.at(100, Event::ControllerTick);
    }

    /// `leader.imbalance` duty (keel-meta's): each partition back to its
    /// first replica when that one is live and in sync.
    fn preferred_tick(&mut self) {
        for e in keel_meta::duties::unclean_elections(&self.image) {
            if self.propose(e.record) {
                self.trace(|| {
                    format!(
                        "controller: UNCLEAN election of {TOPIC}-{} to {}",
                        e.partition, e.to
                    )
                });
            }
        }
        for e in keel_meta::duties::preferred_elections(&self.image) {
            self.propose(e.record);
        }
        self.at(PREFERRED_CHECK_MS, Event::PreferredTick);
    }

    // ---- the step --------------------------------------------------------

    fn step(&mut self, ev: Event) {
        match ev {
            Event::Deliver { from, to, msg } => {
                if self.cut.contains(&(from, to)) {
                    return;
                }
                self.deliver(from, to, msg);
            }
            Event::BrokerTick(id, inc) => {
                if self.alive(id, inc) {
                    let applied = self.brokers[&id].applied;
                    if self.rng.chance(HEARTBEAT_MS as f64 / CHECKPOINT_MS as f64) {
                        for part in self.brokers.get_mut(&id).expect("alive").parts.values_mut() {
                            part.hw_checkpoint = part.hw;
                        }
                    }
                    self.send(
                        Addr::Broker(id),
                        CONTROLLER,
                        Msg::Heartbeat {
                            incarnation: inc,
                            applied,
                        },
                    );
                    self.at(HEARTBEAT_MS, Event::BrokerTick(id, inc));
                }
            }
            Event::IsrTick(id, inc) => {
                if self.alive(id, inc) {
                    self.isr_tick(id);
                    self.at(ISR_CHECK_MS, Event::IsrTick(id, inc));
                }
            }
            Event::FetchTimer(id, inc, p) => {
                if self.alive(id, inc) {
                    if let Some(f) = self.part_mut(id, p).and_then(|x| x.fetch.as_mut()) {
                        f.scheduled = false;
                    }
                    self.fetch(id, p);
                }
            }
            Event::RequestTimeout(id, inc, p, req) => {
                if self.alive(id, inc) {
                    let stuck = self
                        .part_mut(id, p)
                        .and_then(|x| x.fetch.as_mut())
                        .filter(|f| f.inflight == Some(req));
                    if let Some(f) = stuck {
                        f.inflight = None;
                        self.fetch_later(id, p, 0);
                    }
                }
            }
            Event::FsyncDone {
                node,
                inc,
                partition,
                upto,
            } => {
                if self.alive(node, inc) {
                    self.fsync_done(node, partition, upto);
                }
            }
            Event::ControllerTick => self.controller_tick(),
            Event::PreferredTick => self.preferred_tick(),
            Event::ProducerTick(k) => self.producer_tick(k),
            Event::ProduceTimeout(k, req) => {
                if let Some((p, records, _)) = self.producers[k].inflight.remove(&req) {
                    self.producers[k].retry.push((p, records));
                    self.producers[k].refreshed_at = None;
                }
            }
            Event::Crash => self.crash_some(),
            Event::Restart(id) => self.restart(id),
            Event::Cut => self.cut_some(),
            Event::Heal => {
                self.trace(|| "network healed".into());
                self.cut.clear();
            }
            Event::Scripted(a) => self.act(a),
            Event::ClockJump => {
                if self.faults_on {
                    let id = self.rng.range(1, self.cfg.brokers as i64) as i32;
                    let by = self.rng.range(-3_000, 3_000);
                    *self.clock.entry(id).or_default() += by;
                    self.trace(|| format!("broker {id}'s clock jumps {by}ms"));
                    let next = self.rng.range(1_000, 6_000);
                    self.at(next, Event::ClockJump);
                }
            }
        }
    }

    /// What broker `id`'s clock reads now.
    fn clock_of(&self, id: i32) -> i64 {
        self.now + self.clock.get(&id).copied().unwrap_or(0)
    }

    fn alive(&self, id: i32, inc: u64) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| b.up && b.incarnation == inc)
    }

    fn part_mut(&mut self, id: i32, p: i32) -> Option<&mut Part> {
        self.brokers.get_mut(&id)?.parts.get_mut(&p)
    }

    fn deliver(&mut self, from: Addr, to: Addr, msg: Msg) {
        match to {
            Addr::Controller => match msg {
                Msg::Heartbeat {
                    incarnation,
                    applied,
                } => {
                    if let Addr::Broker(id) = from {
                        self.on_heartbeat(id, incarnation, applied);
                    }
                }
                Msg::AlterIsr {
                    partition,
                    partition_epoch,
                    leader_epoch,
                    isr,
                } => {
                    let accepted = self.propose(Record::new(Kind::PartitionChange(
                        keel_meta::PartitionChange {
                            topic: TOPIC.into(),
                            partition,
                            partition_epoch,
                            isr: Some(keel_meta::Replicas { replicas: isr }),
                            leader: None,
                            unclean: false,
                            leader_epoch: Some(leader_epoch),
                            forced: false,
                        },
                    )));
                    if let Addr::Broker(id) = from {
                        let reply = Msg::AlterIsrReply {
                            partition,
                            accepted,
                        };
                        self.send(CONTROLLER, Addr::Broker(id), reply);
                    }
                }
                _ => {}
            },
            Addr::Producer(k) => {
                if let Msg::ProduceReply { req, result } = msg {
                    self.on_produce_reply(k, req, result);
                }
            }
            Addr::Broker(id) => {
                if !self.brokers[&id].up {
                    return;
                }
                match msg {
                    Msg::Metadata(image) => self.on_metadata(id, image),
                    Msg::AlterIsrReply {
                        partition,
                        accepted: false,
                    } if self.cfg.plant != Some(Plant::StaleIsrProposal) => {
                        // keel-kafka's propose_isr_changes on a refusal.
                        let core = self.part_mut(id, partition).and_then(|x| x.core.as_mut());
                        if let Some(core) = core {
                            core.isr_proposal_refused();
                        }
                        self.leader_hw(id, partition);
                    }
                    Msg::Fetch {
                        partition,
                        epoch,
                        offset,
                        req,
                        inc,
                    } => self.on_fetch(id, from, partition, epoch, offset, req, inc),
                    Msg::FetchReply {
                        partition,
                        epoch,
                        offset,
                        req,
                        inc,
                        result,
                    } if inc == self.brokers[&id].incarnation => {
                        self.on_fetch_reply(id, from, partition, epoch, offset, req, result)
                    }
                    Msg::EpochQuery {
                        partition,
                        current,
                        epoch,
                        req,
                        inc,
                    } => self.on_epoch_query(id, from, partition, current, epoch, req, inc),
                    Msg::EpochReply {
                        partition,
                        current,
                        req,
                        inc,
                        result,
                    } if inc == self.brokers[&id].incarnation => {
                        self.on_epoch_reply(id, from, partition, current, req, result)
                    }
                    Msg::Produce {
                        partition,
                        records,
                        req,
                    } => {
                        if let Addr::Producer(k) = from {
                            self.on_produce(id, k, partition, records, req)
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    // ---- brokers: metadata -----------------------------------------------

    /// `Broker::apply_metadata` / `set_replication`: each partition's role
    /// from the image, through the core.
    fn on_metadata(&mut self, id: i32, image: Arc<Image>) {
        let now = self.clock_of(id);
        let plant = self.cfg.plant;
        let b = self.brokers.get_mut(&id).expect("broker");
        if image.applied <= b.applied {
            return; // Older than what it has (reordered or duplicated).
        }
        if b.image.as_ref().is_none_or(|i| i.applied < image.applied) {
            b.image = Some(image.clone());
        }
        // keel's main.rs follows the metadata only once the image holds this
        // process's own registration (`Membership::registered`): until then
        // what the image says this node leads was said of an earlier
        // incarnation, whose tail a power loss may have taken. Registering
        // fences that incarnation and moves its partitions' leader epochs,
        // so a restarted leader never appends at an epoch whose records its
        // followers already hold differently (seed 778011130109: a restarted
        // leader led again at its old epoch from a shorter log, and its
        // followers' logs diverged from it below the high watermark).
        if !image.holds_registration(id, b.incarnation)
            && plant != Some(Plant::LeadBeforeRegistered)
        {
            return;
        }
        b.applied = image.applied;
        let Some(t) = image.topics.get(TOPIC) else {
            return;
        };
        let mut failed = Vec::new();
        let mut fetch = Vec::new();
        let mut leads = Vec::new();
        for (i, p) in t.partitions.iter().enumerate() {
            let i = i as i32;
            if !p.replicas.contains(&id) {
                continue;
            }
            let role = Role {
                me: id,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                isr: p.isr.clone(),
                replicas: p.replicas.clone(),
                partition_epoch: p.partition_epoch,
                last_unclean_epoch: p.last_unclean_epoch,
            };
            let part = b.parts.entry(i).or_default();
            if plant == Some(Plant::FencedLeaderKeepsLeading)
                && part.core.as_ref().is_some_and(|c| c.is_leader())
                && role.leader != id
            {
                continue; // Planted: it never lets go.
            }
            let change = match part.core.as_mut() {
                Some(c) => c.set_role(role.clone(), now, false),
                None => {
                    let (c, change) = Replica::new(role.clone(), now);
                    part.core = Some(c);
                    change
                }
            };
            if let Some(e) = change.begin_epoch {
                part.log.begin_epoch(e);
                leads.push(i);
            }
            failed.extend(change.failed);
            if role.leader != id && role.leader != keel_meta::NO_LEADER {
                let same = part
                    .fetch
                    .as_ref()
                    .is_some_and(|f| f.leader == role.leader && f.epoch == role.leader_epoch);
                if !same {
                    let scheduled = part.fetch.as_ref().is_some_and(|f| f.scheduled);
                    // The high watermark a follower takes comes from its
                    // current leader's answers only (keel-broker takes it
                    // from each fetch answer); one from an earlier leader,
                    // applied by an fsync finishing after the change, set a
                    // high watermark this replica never had (seed 720).
                    part.leader_hw = -1;
                    part.fetch = Some(FetchState {
                        leader: role.leader,
                        epoch: role.leader_epoch,
                        truncated: false,
                        inflight: None,
                        scheduled,
                    });
                    fetch.push(i);
                }
            } else {
                part.fetch = None;
            }
        }
        for w in failed {
            self.send(
                Addr::Broker(id),
                Addr::Producer(w.producer),
                Msg::ProduceReply {
                    req: w.req,
                    result: Err("NOT_LEADER_OR_FOLLOWER".into()),
                },
            );
        }
        for p in leads {
            let epoch = self.brokers[&id].parts[&p]
                .core
                .as_ref()
                .map_or(-1, |c| c.role().leader_epoch);
            self.trace(|| format!("broker {id} leads {TOPIC}-{p} at epoch {epoch}"));
            self.report.leader_changes += 1;
            self.leader_hw(id, p);
        }
        for p in fetch {
            self.fetch_later(id, p, 0);
        }
    }

    // ---- brokers: the follower's fetcher (keel-kafka's replication.rs) ---

    fn fetch_later(&mut self, id: i32, p: i32, delay: i64) {
        let inc = self.brokers[&id].incarnation;
        if let Some(f) = self.part_mut(id, p).and_then(|x| x.fetch.as_mut()) {
            if f.scheduled {
                return;
            }
            f.scheduled = true;
            self.at(delay, Event::FetchTimer(id, inc, p));
        }
    }

    fn fetch(&mut self, id: i32, p: i32) {
        let plant = self.cfg.plant;
        let inc = self.brokers[&id].incarnation;
        self.seq += 1;
        let req = self.seq;
        let Some(part) = self.part_mut(id, p) else {
            return;
        };
        if part.flushing && plant != Some(Plant::CountCopyBeforeFsync) {
            return; // It asks again once what it copied is durable.
        }
        let hw = part.hw;
        let Some(f) = part.fetch.as_mut() else {
            return;
        };
        if f.inflight.is_some() {
            return;
        }
        let (leader, epoch) = (f.leader, f.epoch);
        if !f.truncated {
            if plant == Some(Plant::TruncateToHighWatermark) {
                // Planted (KIP-101's bug): cut at the high watermark, ask nothing.
                f.truncated = true;
                part.log.truncate_to(hw);
            } else if let Some(latest) = part.log.latest_epoch() {
                // The broker's state must follow this epoch first (keel-broker's
                // truncate_replica refuses otherwise).
                if part
                    .core
                    .as_ref()
                    .is_some_and(|c| c.check_following(leader, epoch).is_ok())
                {
                    f.inflight = Some(req);
                    let msg = Msg::EpochQuery {
                        partition: p,
                        current: epoch,
                        epoch: latest,
                        req,
                        inc,
                    };
                    self.send(Addr::Broker(id), Addr::Broker(leader), msg);
                    self.at(REQUEST_TIMEOUT_MS, Event::RequestTimeout(id, inc, p, req));
                }
                return;
            } else {
                f.truncated = true;
            }
        }
        let offset = if plant == Some(Plant::CountCopyBeforeFsync) {
            part.log.end()
        } else {
            part.log.durable_end()
        };
        let Some(f) = part.fetch.as_mut() else {
            return;
        };
        f.inflight = Some(req);
        let msg = Msg::Fetch {
            partition: p,
            epoch,
            offset,
            req,
            inc,
        };
        self.send(Addr::Broker(id), Addr::Broker(leader), msg);
        self.at(REQUEST_TIMEOUT_MS, Event::RequestTimeout(id, inc, p, req));
    }

    #[allow(clippy::too_many_arguments)]
    fn on_epoch_query(
        &mut self,
        id: i32,
        from: Addr,
        p: i32,
        current: i32,
        epoch: i32,
        req: u64,
        inc: u64,
    ) {
        let result = match self.part_mut(id, p) {
            Some(part) => match part.core.as_ref() {
                Some(c) if c.is_leader() => keel_repl::check_epoch(c.role().leader_epoch, current)
                    .map(|_| part.log.epoch_end(epoch)),
                _ => Err(Refusal::NotLeader("not the leader".into())),
            },
            None => Err(Refusal::NotLeader("no replica".into())),
        };
        let msg = Msg::EpochReply {
            partition: p,
            current,
            req,
            inc,
            result,
        };
        self.send(Addr::Broker(id), from, msg);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_epoch_reply(
        &mut self,
        id: i32,
        from: Addr,
        p: i32,
        current: i32,
        req: u64,
        result: Result<(i32, i64), Refusal>,
    ) {
        let Addr::Broker(leader) = from else { return };
        let plant = self.cfg.plant;
        let Some(part) = self.part_mut(id, p) else {
            return;
        };
        let Some(f) = part.fetch.as_mut() else { return };
        if f.inflight != Some(req) {
            return;
        }
        f.inflight = None;
        let following = part
            .core
            .as_ref()
            .is_some_and(|c| c.check_following(leader, current).is_ok());
        let (Ok((le, lend)), true) = (result, following) else {
            self.fetch_later(id, p, FETCH_IDLE_MS * 4);
            return;
        };
        let unclean_epoch = part
            .core
            .as_ref()
            .map_or(0, |c| c.role().last_unclean_epoch);
        let log = &mut part.log;
        let latest = log.latest_epoch();
        let before = log.end();
        let t = if plant == Some(Plant::TruncateToLeaderEnd) {
            keel_repl::Truncation {
                offset: if lend < 0 { 0 } else { lend.min(before) },
                done: true,
            }
        } else {
            keel_repl::truncation(&log.epochs, log.end(), le, lend)
        };
        log.truncate_to(t.offset);
        let after = log.end();
        let hw = part.hw;
        if t.done {
            if let Some(f) = part.fetch.as_mut() {
                f.truncated = true;
            }
        }
        if after < before {
            self.trace(|| format!("broker {id} truncated {TOPIC}-{p} [{after}, {before}) by epoch (leader said {le}:{lend})"));
        }
        // keel-broker's truncate_replica: reported as lost only after an
        // unclean election (keel_repl::truncation_loss).
        let reported = if plant == Some(Plant::UnreportedLoss) {
            None
        } else {
            keel_repl::truncation_loss(unclean_epoch, latest, after, before)
        };
        if let Some((from, to)) = reported {
            self.trace(|| {
                format!(
                    "broker {id} reports {TOPIC}-{p} [{from}, {to}) lost to an unclean election"
                )
            });
            self.reported_lost.push((p, from, to));
        }
        if hw > after {
            if reported.is_none() {
                // Below what this replica knew committed, after clean
                // elections only: a real loss, or a false report.
                self.violation(format!(
                    "broker {id} truncated {TOPIC}-{p} below its high watermark {hw} to {after} and reported no loss: after clean elections only this is a real loss (or a false report), after an unclean one an unreported loss"
                ));
            }
            if let Some(part) = self.part_mut(id, p) {
                part.hw = after;
            }
        }
        self.fetch_later(id, p, 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fetch(
        &mut self,
        id: i32,
        from: Addr,
        p: i32,
        epoch: i32,
        offset: i64,
        req: u64,
        inc: u64,
    ) {
        let Addr::Broker(follower) = from else { return };
        let now = self.clock_of(id);
        let result = match self.part_mut(id, p) {
            Some(part) => {
                let end = part.log.end();
                match part.core.as_mut() {
                    Some(c) => c.on_fetch(follower, epoch, offset, end, now),
                    None => Err(Refusal::NotLeader("no role".into())),
                }
            }
            None => Err(Refusal::NotLeader("no replica".into())),
        };
        self.trace(|| format!("broker {id}: {follower} fetches {TOPIC}-{p} at {offset} (epoch {epoch}): {result:?}"));
        let result = match result {
            Ok(()) => {
                self.leader_hw(id, p);
                let part = self.part_mut(id, p).expect("checked above");
                Ok((part.log.read_from(offset, FETCH_MAX_BATCHES), part.hw))
            }
            Err(e) => Err(e),
        };
        let msg = Msg::FetchReply {
            partition: p,
            epoch,
            offset,
            req,
            inc,
            result,
        };
        self.send(Addr::Broker(id), from, msg);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_fetch_reply(
        &mut self,
        id: i32,
        from: Addr,
        p: i32,
        epoch: i32,
        offset: i64,
        req: u64,
        result: Result<(Vec<Batch>, i64), Refusal>,
    ) {
        let Addr::Broker(leader) = from else { return };
        let plant = self.cfg.plant;
        let fsync = self.fsync_latency(id);
        let inc = self.brokers[&id].incarnation;
        let Some(part) = self.part_mut(id, p) else {
            return;
        };
        let ours = part.fetch.as_ref().is_some_and(|f| f.inflight == Some(req));
        if ours {
            if let Some(f) = part.fetch.as_mut() {
                f.inflight = None;
            }
        } else if plant != Some(Plant::AcceptStaleFetch) {
            return; // An answer to a request this fetcher gave up on.
        }
        let Ok((batches, leader_hw)) = result else {
            self.fetch_later(id, p, FETCH_IDLE_MS * 4);
            return;
        };
        // keel-broker's append_as_follower_all: only at the leader and epoch it
        // follows now, and only where its log still ends.
        let following = part
            .core
            .as_ref()
            .is_some_and(|c| c.check_following(leader, epoch).is_ok());
        let offset_now = if plant == Some(Plant::CountCopyBeforeFsync) {
            part.log.end()
        } else {
            part.log.durable_end()
        };
        let current = following && part.log.end() == offset && offset_now == offset;
        if !current && plant != Some(Plant::AcceptStaleFetch) {
            self.fetch_later(id, p, 0);
            return;
        }
        let mut appended = 0;
        let mut bad = None;
        for b in batches {
            if b.end() <= part.log.end() {
                continue;
            }
            if b.base < part.log.end() {
                bad = Some((b.base, part.log.end()));
                break;
            }
            part.log.append(b);
            appended += 1;
        }
        part.leader_hw = leader_hw;
        if appended > 0 && plant == Some(Plant::CountCopyBeforeFsync) {
            // Planted: it asks for more before what it copied is durable.
            if let Some(upto) = part.start_flush() {
                self.flush_later(id, inc, p, upto, fsync);
            }
            self.fetch_later(id, p, 0);
        } else if appended > 0 && !part.flushing {
            let upto = part.start_flush().expect("not flushing");
            self.flush_later(id, inc, p, upto, fsync);
        } else if !part.flushing {
            let hw = leader_hw.min(part.log.durable_end());
            if hw >= 0 {
                part.hw = hw;
            }
            self.fetch_later(id, p, FETCH_IDLE_MS);
        }
        if let Some((base, end)) = bad {
            // keel-storage refuses such a batch (below the log end): the fetcher
            // would retry forever with a log that diverged from its leader's.
            self.violation(format!(
                "broker {id} got a batch of {TOPIC}-{p} at {base} from leader {leader} below its log end {end}: its log diverged"
            ));
        }
    }

    /// The fsync of broker `id`'s partition `p` (incarnation `inc`) that
    /// makes its first `upto` batches durable ends in `delay` ms.
    fn flush_later(&mut self, id: i32, inc: u64, p: i32, upto: usize, delay: i64) {
        let ev = Event::FsyncDone {
            node: id,
            inc,
            partition: p,
            upto,
        };
        self.at(delay, ev);
    }

    /// How long the next fsync on broker `id` takes: its disk's usual
    /// latency, a stall now and then, or a scenario's slow disk.
    fn fsync_latency(&mut self, id: i32) -> i64 {
        if let Some(ms) = self.slow_disk.get(&id) {
            return *ms;
        }
        let (lo, hi) = self.cfg.fsync_ms;
        if self.faults_on && self.rng.chance(self.cfg.disk_stall) {
            self.rng.range(200, 1000)
        } else {
            self.rng.range(lo, hi)
        }
    }

    fn fsync_done(&mut self, id: i32, p: i32, upto: usize) {
        let next = self.fsync_latency(id);
        let inc = self.brokers[&id].incarnation;
        let Some(part) = self.part_mut(id, p) else {
            return;
        };
        part.log.durable = part.log.durable.max(upto.min(part.log.batches.len()));
        part.flushing = false;
        if part.log.durable < part.log.batches.len() {
            let upto = part.start_flush().expect("not flushing");
            self.flush_later(id, inc, p, upto, next);
        }
        let leads = self
            .part_mut(id, p)
            .is_some_and(|x| x.core.as_ref().is_some_and(|c| c.is_leader()));
        if leads {
            self.leader_hw(id, p);
        } else if let Some(part) = self.part_mut(id, p) {
            let hw = part.leader_hw.min(part.log.durable_end());
            if hw >= 0 && !part.flushing {
                part.hw = hw;
            }
            if !part.flushing {
                self.fetch_later(id, p, 0);
            }
        }
    }

    // ---- brokers: the leader ---------------------------------------------

    /// `Partition::recompute_high_watermark` and `release_replicated`.
    fn leader_hw(&mut self, id: i32, p: i32) {
        let min = self.cfg.min_insync;
        let plant = self.cfg.plant;
        let Some(part) = self.part_mut(id, p) else {
            return;
        };
        let own = part.log.durable_end();
        let Some(core) = part.core.as_mut() else {
            return;
        };
        let Some(hw) = core.high_watermark(own) else {
            return;
        };
        let hw = if plant == Some(Plant::AckBeforeIsr) {
            part.log.end()
        } else {
            hw
        };
        if hw > part.hw {
            part.hw = hw;
        }
        let min = if plant == Some(Plant::AckBelowMinInsync) {
            0
        } else {
            min
        };
        let released = core.release(part.hw, min);
        let epoch = core.role().leader_epoch;
        for (w, answer) in released {
            let result = match answer {
                Ok(()) => {
                    self.acknowledge(id, p, &w, epoch);
                    self.last_ack_at.insert(p, self.now);
                    Ok((w.base, w.epoch))
                }
                Err(e) => Err(format!("{e:?}")),
            };
            self.send(
                Addr::Broker(id),
                Addr::Producer(w.producer),
                Msg::ProduceReply { req: w.req, result },
            );
        }
    }

    fn acknowledge(&mut self, id: i32, p: i32, w: &Waiter, epoch: i32) {
        match self.ack_leaders.get(&(p, epoch)) {
            Some(other) if *other != id => {
                let other = *other;
                self.violation(format!(
                    "two leaders acknowledged acks=all writes of {TOPIC}-{p} at epoch {epoch}: {other} and {id}"
                ));
            }
            _ => {
                self.ack_leaders.insert((p, epoch), id);
            }
        }
        // acks=all's promise, at the moment it is kept: the record is on disk
        // (fsynced) on at least min.insync.replicas replicas.
        let last = w.base + w.records.len() as i64 - 1;
        let rec = w.records[w.records.len() - 1];
        let durable_on: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| {
                b.parts
                    .get(&p)
                    .is_some_and(|x| last < x.log.durable_end() && x.log.at(last) == Some(rec))
            })
            .map(|b| b.id)
            .collect();
        if (durable_on.len() as i32) < self.cfg.min_insync {
            self.violation(format!(
                "broker {id} acknowledged {TOPIC}-{p}@{last} with acks=all while only {durable_on:?} had it on disk (min.insync.replicas={})",
                self.cfg.min_insync
            ));
        }
        for (i, r) in w.records.iter().enumerate() {
            let off = w.base + i as i64;
            if let Some(old) = self.acked.insert((p, off), *r) {
                if old != *r && self.unclean_happened(p) {
                    // An unclean leader's history replaced it: it must be
                    // reported lost by the time the cluster settles.
                    self.replaced.push((p, off, old));
                } else if old != *r {
                    self.violation(format!(
                        "offset {off} of {TOPIC}-{p} acknowledged twice, for records {old} and {r}"
                    ));
                }
            }
        }
        let records = w.records.clone();
        self.trace(|| {
            format!(
                "broker {id} acknowledged {records:?} at {TOPIC}-{p}@{} (epoch {epoch})",
                w.base
            )
        });
    }

    fn isr_tick(&mut self, id: i32) {
        let plant = self.cfg.plant;
        let now = self.clock_of(id);
        let lag = self.cfg.lag_ms;
        let mut alters = Vec::new();
        let image = &self.image;
        for (p, part) in self.brokers.get_mut(&id).expect("alive").parts.iter_mut() {
            let Some(core) = part.core.as_mut() else {
                continue;
            };
            let Some(epoch_start) = part.log.epochs.last().map(|(_, s)| *s) else {
                continue;
            };
            // KIP-903: only live brokers join (the controller's view stands in
            // for the leader's own metadata here).
            let stale = plant == Some(Plant::StaleIsrProposal);
            let live = |n: i32| stale || image.is_live(n);
            if let Some(isr) = core.isr_change(now, lag, part.hw, epoch_start, live) {
                if self.tracing {
                    let f: Vec<_> = core
                        .role()
                        .replicas
                        .iter()
                        .map(|r| (*r, core.follower(*r).map(|x| x.leo)))
                        .collect();
                    self.report.trace.push(format!("{:>7}ms broker {id} proposes ISR {isr:?} for {TOPIC}-{p} at hw {} (followers {f:?})", now, part.hw));
                }
                if plant != Some(Plant::ForgetIsrProposal) {
                    core.proposed_isr(isr.clone(), now);
                }
                // Proposed with the partition epoch of the metadata this broker
                // applied, as keel-kafka's propose_isr_changes does: a change
                // the controller made since (a fenced member left) refuses it.
                // (Proposing with the controller's newest epoch instead let a
                // proposal computed from an older ISR through, which the core
                // had stopped counting: seed 351, three brokers, before the
                // simulator's later changes moved its draws.)
                alters.push((
                    *p,
                    core.role().partition_epoch,
                    core.role().leader_epoch,
                    isr,
                ));
            }
        }
        for (p, partition_epoch, leader_epoch, isr) in alters {
            self.send(
                Addr::Broker(id),
                CONTROLLER,
                Msg::AlterIsr {
                    partition: p,
                    partition_epoch,
                    leader_epoch,
                    isr,
                },
            );
        }
    }

    /// `Broker::produce` with acks=all on a replicated partition.
    fn on_produce(&mut self, id: i32, k: usize, p: i32, records: Vec<u64>, req: u64) {
        let min = self.cfg.min_insync;
        let fsync = self.fsync_latency(id);
        let inc = self.brokers[&id].incarnation;
        let reply = |s: &mut Sim, result| {
            s.send(
                Addr::Broker(id),
                Addr::Producer(k),
                Msg::ProduceReply { req, result },
            );
        };
        let Some(part) = self.part_mut(id, p) else {
            return reply(self, Err("UNKNOWN_TOPIC_OR_PARTITION".into()));
        };
        let Some(core) = part.core.as_ref().filter(|c| c.is_leader()) else {
            return reply(self, Err("NOT_LEADER_OR_FOLLOWER".into()));
        };
        if core.isr_size() < min {
            return reply(self, Err("NOT_ENOUGH_REPLICAS".into()));
        }
        let epoch = core.role().leader_epoch;
        let base = part.log.end();
        let end = base + records.len() as i64;
        part.log.append(Batch {
            base,
            epoch,
            records: records.clone(),
        });
        if let Some(upto) = part.start_flush() {
            self.flush_later(id, inc, p, upto, fsync);
        }
        let part = self.part_mut(id, p).expect("checked above");
        let hw = part.hw;
        let core = part.core.as_mut().expect("checked above");
        let w = Waiter {
            producer: k,
            req,
            base,
            epoch,
            records,
        };
        if core.wait(end, hw, w).is_some() {
            self.leader_hw(id, p);
        }
    }

    // ---- producers ---------------------------------------------------------

    fn producer_tick(&mut self, k: usize) {
        if self.producing && self.producers[k].inflight.len() < 5 {
            let (p, records) = match self.producers[k].retry.pop() {
                Some(r) => r,
                None => {
                    let p = self.rng.below(self.cfg.partitions as u64) as i32;
                    let n = self.rng.range(1, 3) as u64;
                    let first = (k as u64 + 1) * 1_000_000_000 + self.producers[k].next_record;
                    self.producers[k].next_record += n;
                    (p, (first..first + n).collect())
                }
            };
            if self.producers[k]
                .refreshed_at
                .is_none_or(|t| self.now - t > METADATA_MAX_AGE_MS)
            {
                let leaders = self
                    .image
                    .topics
                    .get(TOPIC)
                    .map(|t| {
                        t.partitions
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (i as i32, x.leader))
                            .collect()
                    })
                    .unwrap_or_default();
                self.producers[k].leaders = leaders;
                self.producers[k].refreshed_at = Some(self.now);
            }
            let leader = self.producers[k].leaders.get(&p).copied().unwrap_or(-1);
            if leader > 0 {
                self.producers[k].next_req += 1;
                let req = self.producers[k].next_req;
                self.producers[k]
                    .inflight
                    .insert(req, (p, records.clone(), self.now));
                self.send(
                    Addr::Producer(k),
                    Addr::Broker(leader),
                    Msg::Produce {
                        partition: p,
                        records,
                        req,
                    },
                );
                self.at(REQUEST_TIMEOUT_MS * 2, Event::ProduceTimeout(k, req));
            } else {
                self.producers[k].retry.push((p, records));
            }
        }
        if self.now < self.cfg.run_ms + QUIET_MS {
            self.at(PRODUCE_EVERY_MS, Event::ProducerTick(k));
        }
    }

    fn on_produce_reply(&mut self, k: usize, req: u64, result: Result<(i64, i32), String>) {
        let Some((p, records, _)) = self.producers[k].inflight.remove(&req) else {
            return;
        };
        if result.is_err() && self.producing {
            self.producers[k].retry.push((p, records));
            self.producers[k].refreshed_at = None;
        }
    }

    // ---- faults ------------------------------------------------------------

    fn crash_some(&mut self) {
        if !self.faults_on {
            return;
        }
        let next = self.exp(self.cfg.crash_every_ms);
        self.at(next, Event::Crash);
        let up: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| b.up)
            .map(|b| b.id)
            .collect();
        if up.len() < 2 {
            return;
        }
        let id = up[self.rng.below(up.len() as u64) as usize];
        let power = self.rng.chance(self.cfg.power_loss);
        self.crash(id, power);
        let down = self.rng.range(self.cfg.down_ms.0, self.cfg.down_ms.1);
        self.at(down, Event::Restart(id));
    }

    /// Broker `id` dies: with `power` (power loss), each log keeps what was
    /// fsynced and a random prefix of the rest (a torn tail is what recovery
    /// cut at the first bad CRC); without it (kill -9) the page cache survives.
    fn crash(&mut self, id: i32, power: bool) {
        if !self.brokers.get(&id).is_some_and(|b| b.up) {
            return;
        }
        let mut lost = 0;
        let mut keeps = Vec::new();
        for part in self.brokers[&id].parts.values() {
            let unflushed = part.log.batches.len() - part.log.durable;
            keeps.push(if power {
                self.rng.below(unflushed as u64 + 1) as usize
            } else {
                unflushed
            });
        }
        let from_end = self.cfg.plant == Some(Plant::HighWatermarkFromLogEnd);
        let b = self.brokers.get_mut(&id).expect("broker");
        b.up = false;
        for (part, keep) in b.parts.values_mut().zip(keeps) {
            let kept = part.log.durable + keep;
            lost += part.log.batches.len() - kept;
            part.log.batches.truncate(kept);
            part.log.durable = kept;
            part.log.rebuild_epochs();
            part.core = None;
            part.fetch = None;
            part.flushing = false;
            // keel-broker at start-up: the checkpointed high watermark, at most the log end.
            part.hw = part.hw_checkpoint.min(part.log.end());
            if from_end {
                part.hw = part.log.end();
            }
        }
        b.applied = 0;
        self.report.crashes += 1;
        self.trace(|| {
            format!(
                "broker {id} crashed ({}; {lost} unflushed batches lost)",
                if power { "power loss" } else { "kill -9" }
            )
        });
    }

    fn restart(&mut self, id: i32) {
        let b = self.brokers.get_mut(&id).expect("broker");
        if b.up {
            return;
        }
        b.up = true;
        b.incarnation += 1;
        let inc = b.incarnation;
        self.trace(|| format!("broker {id} restarted (incarnation {inc})"));
        self.send(
            Addr::Broker(id),
            CONTROLLER,
            Msg::Heartbeat {
                incarnation: inc,
                applied: 0,
            },
        );
        self.at(HEARTBEAT_MS, Event::BrokerTick(id, inc));
        self.at(ISR_CHECK_MS, Event::IsrTick(id, inc));
        // The image its Raft log replays, before the quorum has heard it.
        if let Some(image) = self.brokers[&id].image.clone() {
            self.on_metadata(id, image);
        }
    }

    /// Schedules `action` at simulated time `at_ms`.
    pub fn inject(&mut self, at_ms: i64, action: Action) {
        let delay = at_ms - self.now;
        self.at(delay, Event::Scripted(action));
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Crash { node, power_loss } => self.crash(node, power_loss),
            Action::Restart(node) => self.restart(node),
            Action::Isolate(node) => self.cut_off(node, 0),
            Action::Zombie(node) => self.cut_off(node, 2),
            Action::Heal => {
                self.trace(|| "network healed".into());
                self.cut.clear();
            }
            Action::SlowDisk { node, ms } => {
                self.slow_disk.insert(node, ms);
            }
            Action::PauseProducers => self.producing = false,
            Action::ResumeProducers => self.producing = true,
            Action::ExpectAcksSince(t) => {
                if self.last_ack_at.get(&0).is_none_or(|at| *at < t) {
                    let isr = self.isr_of(0);
                    self.violation(format!(
                        "{TOPIC}-0 acknowledged nothing since {t}ms although its ISR {isr:?} meets min.insync.replicas={}",
                        self.cfg.min_insync
                    ));
                }
            }
        }
    }

    /// The leader of partition `p` by the controller's metadata.
    pub fn leader_of(&self, p: i32) -> i32 {
        self.image.partition(TOPIC, p).map_or(-1, |x| x.leader)
    }

    /// The ISR of partition `p` by the controller's metadata.
    pub fn isr_of(&self, p: i32) -> Vec<i32> {
        self.image
            .partition(TOPIC, p)
            .map_or(Vec::new(), |x| x.isr.clone())
    }

    /// How many records acks=all acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.len()
    }

    fn cut_some(&mut self) {
        if !self.faults_on {
            return;
        }
        let next = self.exp(self.cfg.cut_every_ms);
        self.at(next, Event::Cut);
        self.cut.clear();
        let victim = self.rng.range(1, self.cfg.brokers as i64) as i32;
        let kind = self.rng.below(3);
        self.cut_off(victim, kind);
        let heal = self.rng.range(self.cfg.cut_ms.0, self.cfg.cut_ms.1);
        self.at(heal, Event::Heal);
    }

    /// Cuts `victim` off: 0 isolated (from its clients too), 1 deaf (nothing
    /// reaches it from the cluster, it still sends), 2 a zombie (cut from
    /// the cluster both ways, its producers still reach it).
    fn cut_off(&mut self, victim: i32, kind: u64) {
        let v = Addr::Broker(victim);
        let others: Vec<Addr> = (1..=self.cfg.brokers)
            .filter(|i| *i != victim)
            .map(Addr::Broker)
            .chain([CONTROLLER])
            .collect();
        for o in others {
            self.cut.insert((o, v));
            if kind != 1 {
                self.cut.insert((v, o));
            }
        }
        if kind == 0 {
            for k in 0..self.cfg.producers {
                self.cut.insert((v, Addr::Producer(k)));
                self.cut.insert((Addr::Producer(k), v));
            }
        }
        self.report.cuts += 1;
        let what = ["isolated", "deafened (one way)", "made a zombie"][kind as usize];
        self.trace(|| format!("network: broker {victim} {what}"));
    }

    // ---- the invariants ----------------------------------------------------

    fn check_image(&mut self) {
        let Some(t) = self.image.topics.get(TOPIC) else {
            return;
        };
        let mut bad = Vec::new();
        for (i, p) in t.partitions.iter().enumerate() {
            let i = i as i32;
            if !p.isr.iter().all(|r| p.replicas.contains(r)) {
                bad.push(format!(
                    "the ISR {:?} of {TOPIC}-{i} is not within its replicas {:?}",
                    p.isr, p.replicas
                ));
            }
            let max = self.max_epoch.entry(i).or_insert(p.leader_epoch);
            if p.leader_epoch < *max {
                bad.push(format!(
                    "the leader epoch of {TOPIC}-{i} went back from {max} to {}",
                    p.leader_epoch
                ));
            }
            *max = (*max).max(p.leader_epoch);
        }
        for b in bad {
            self.violation(b);
        }
    }

    /// After every few steps: acknowledged records stay where they were
    /// acknowledged on every replica that counts them committed, and any two
    /// replicas agree below both their high watermarks.
    pub fn check(&mut self) {
        let mut bad = Vec::new();
        for p in 0..self.cfg.partitions {
            if self.unclean_happened(p) {
                // Replicas disagree until every old ISR member truncated: only
                // the end of the run judges this partition (every loss reported).
                continue;
            }
            let reps: Vec<(i32, &Part)> = self
                .brokers
                .values()
                .filter(|b| b.up)
                .filter_map(|b| b.parts.get(&p).map(|x| (b.id, x)))
                .collect();
            for (id, part) in &reps {
                let hw = part.hw.min(part.log.end());
                for ((_, off), rec) in self.acked.range((p, 0)..(p, hw)) {
                    let got = part.log.at(*off);
                    if got != Some(*rec) {
                        bad.push(format!(
                            "broker {id}'s {TOPIC}-{p} holds {got:?} at {off} below its high watermark {hw}, where {rec} was acknowledged"
                        ));
                        break;
                    }
                }
            }
            for (i, (a, pa)) in reps.iter().enumerate() {
                for (b, pb) in &reps[i + 1..] {
                    let upto = pa.hw.min(pb.hw).min(pa.log.end()).min(pb.log.end());
                    if let Some(off) = first_difference(&pa.log, &pb.log, upto) {
                        bad.push(format!(
                            "brokers {a} and {b} disagree on {TOPIC}-{p} at {off}, below both high watermarks ({} and {}): {:?} vs {:?}",
                            pa.hw, pb.hw, pa.log.at(off), pb.log.at(off)
                        ));
                    }
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
    }

    /// Whether the controller elected an unclean leader of partition `p`.
    fn unclean_happened(&self, p: i32) -> bool {
        self.image
            .partition(TOPIC, p)
            .is_some_and(|x| x.last_unclean_epoch > 0)
    }

    fn reported(&self, p: i32, offset: i64) -> bool {
        self.reported_lost
            .iter()
            .any(|(q, from, to)| *q == p && (*from..*to).contains(&offset))
    }

    /// Liveness, after the quiet period: every partition acknowledged writes
    /// after the faults healed (at `healed`), its ISR is every replica again,
    /// and its leader's high watermark reached its log end.
    fn check_progress(&mut self, healed: i64) {
        let mut bad = Vec::new();
        for p in 0..self.cfg.partitions {
            if self.last_ack_at.get(&p).is_none_or(|t| *t < healed) {
                bad.push(format!(
                    "{TOPIC}-{p} acknowledged nothing after the faults healed at {healed}ms"
                ));
            }
            let Some(meta) = self.image.partition(TOPIC, p) else {
                continue;
            };
            let (mut isr, mut all) = (meta.isr.clone(), meta.replicas.clone());
            isr.sort_unstable();
            all.sort_unstable();
            if isr != all {
                bad.push(format!("{TOPIC}-{p}'s ISR is {isr:?}, not every replica {all:?}, after the cluster settled"));
            }
            let leader = self.brokers.get(&meta.leader).and_then(|b| b.parts.get(&p));
            if let Some(part) = leader {
                if part.hw != part.log.end() {
                    bad.push(format!(
                        "{TOPIC}-{p}'s leader {} has its high watermark at {} below its log end {} after the cluster settled",
                        meta.leader,
                        part.hw,
                        part.log.end()
                    ));
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
    }

    /// After the quiet period: every replica holds the same log, and every
    /// acknowledged record is in it at its offset.
    fn check_converged(&mut self) {
        let mut bad = Vec::new();
        for p in 0..self.cfg.partitions {
            let reps: Vec<(i32, &Part)> = self
                .brokers
                .values()
                .filter_map(|b| b.parts.get(&p).map(|x| (b.id, x)))
                .collect();
            let Some((first, fp)) = reps.first() else {
                continue;
            };
            for (id, part) in &reps[1..] {
                if part.log.batches != fp.log.batches {
                    let at = first_difference(&fp.log, &part.log, fp.log.end().max(part.log.end()))
                        .or_else(|| {
                            // Same records, other batches: where the first batch differs.
                            fp.log
                                .batches
                                .iter()
                                .zip(&part.log.batches)
                                .find(|(a, b)| a != b)
                                .map(|(a, _)| a.base)
                        });
                    bad.push(format!(
                        "after {QUIET_MS}ms without faults brokers {first} and {id} hold different logs of {TOPIC}-{p} (ends {} and {}, first difference at or in the batch at {at:?})",
                        fp.log.end(),
                        part.log.end()
                    ));
                }
            }
            for ((_, off), rec) in self.acked.range((p, 0)..(p, i64::MAX)) {
                if fp.log.at(*off) != Some(*rec) && !self.reported(p, *off) {
                    bad.push(format!(
                        "acknowledged record {rec} at {TOPIC}-{p}@{off} is gone from broker {first} after the cluster settled (it holds {:?}), and no replica reported it lost",
                        fp.log.at(*off)
                    ));
                    break;
                }
            }
            for (q, off, rec) in &self.replaced {
                if *q == p && !self.reported(p, *off) {
                    bad.push(format!(
                        "acknowledged record {rec} at {TOPIC}-{p}@{off} was replaced by an unclean leader's history, and no replica reported it lost"
                    ));
                    break;
                }
            }
        }
        for b in bad {
            self.violation(b);
        }
    }
}

fn first_difference(a: &SimLog, b: &SimLog, upto: i64) -> Option<i64> {
    (0..upto).find(|o| a.at(*o) != b.at(*o))
}

fn short(s: &str) -> String {
    let s = s
        .replace("Some(", "")
        .replace("PartitionChange(PartitionChange", "PartitionChange");
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// Runs seed `seed` with its own drawn configuration (and `plant`, if any).
pub fn run_seed(seed: u64, plant: Option<Plant>, tracing: bool) -> Report {
    let mut cfg = Config::for_seed(seed);
    cfg.plant = plant;
    Sim::new(seed, cfg, tracing).run()
}

/// A named scenario: a quiet cluster, the faults it injects at given
/// times, and the bug it is about (planted, it must show).
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub config: Config,
    pub actions: Vec<(i64, Action)>,
    pub plant: Plant,
}

/// The named scenarios (issue 30's list, as far as this simulator goes).
pub fn scenarios() -> Vec<Scenario> {
    let base = |run_ms, min_insync| Config {
        run_ms,
        min_insync,
        producers: 2,
        ..Config::quiet(3)
    };
    // Partition 0's replicas are [1, 2, 3]: broker 1 leads it first, and
    // leads it again whenever it is back in sync (preferred leader).
    vec![
        Scenario {
            name: "kip101-leader-changes-while-a-follower-lags",
            about: "KIP-101: the leader is cut off, the next leader dies soon after; a follower that truncated to its high watermark on the first change leads without records acknowledged before it",
            config: base(14_000, 2),
            actions: vec![
                (3_000, Action::Isolate(1)),
                (5_100, Action::Crash { node: 2, power_loss: false }),
                (5_300, Action::Heal),
                (7_000, Action::Restart(2)),
            ],
            plant: Plant::TruncateToHighWatermark,
        },
        Scenario {
            name: "a-fenced-follower-while-writes-pause",
            about: "writes pause, a caught-up follower dies and is fenced, writes resume: the two left in the ISR acknowledge them (the leader must not propose the fenced broker back, nor count a refused proposal)",
            config: base(14_000, 2),
            actions: vec![
                (2_800, Action::PauseProducers),
                (3_000, Action::Crash { node: 3, power_loss: false }),
                (7_000, Action::ResumeProducers),
                (9_000, Action::ExpectAcksSince(7_000)),
                (12_000, Action::Restart(3)),
            ],
            plant: Plant::StaleIsrProposal,
        },
        Scenario {
            name: "unclean-election-reports-its-loss",
            about: "unclean.leader.election.enable and min.insync.replicas=1: the ISR shrinks to the leader, which takes writes alone and dies; a stale replica returns and is elected; the old leader returns, truncates, and reports every acknowledged record it loses",
            config: Config {
                unclean: true,
                ..base(16_000, 1)
            },
            actions: vec![
                (2_000, Action::Crash { node: 3, power_loss: false }),
                (4_500, Action::Crash { node: 2, power_loss: false }),
                (7_000, Action::Crash { node: 1, power_loss: false }),
                (8_000, Action::Restart(3)),
                (12_000, Action::Restart(1)),
                (12_000, Action::Restart(2)),
            ],
            plant: Plant::UnreportedLoss,
        },
        Scenario {
            name: "zombie-leader",
            about: "a leader cut off from the cluster while its producers still reach it: it must stop acknowledging once fenced, and its tail must go",
            config: base(12_000, 2),
            actions: vec![(3_000, Action::Zombie(1)), (7_000, Action::Heal)],
            plant: Plant::FencedLeaderKeepsLeading,
        },
        Scenario {
            name: "isr-shrinks-below-min-insync-while-acks-all-waits",
            about: "min.insync.replicas=3 and a follower dies with writes waiting: they are refused with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrinks, never acknowledged with two copies",
            config: base(10_000, 3),
            actions: vec![(3_000, Action::Crash { node: 3, power_loss: false }), (7_000, Action::Restart(3))],
            plant: Plant::AckBelowMinInsync,
        },
        Scenario {
            name: "a-leader-loses-power-and-restarts-within-its-session",
            about: "the leader loses power and is back before the controller fences it: it must not lead at its old epoch from the shorter log the crash left, but register first, which moves the epoch",
            config: Config {
                fsync_ms: (5, 20),
                ..base(10_000, 2)
            },
            // Cut from the controller and the other brokers as it comes back
            // (its producers still reach it), so its registration waits.
            actions: vec![
                (3_000, Action::Crash { node: 1, power_loss: true }),
                (3_005, Action::Zombie(1)),
                (3_010, Action::Restart(1)),
                (3_600, Action::Heal),
            ],
            plant: Plant::LeadBeforeRegistered,
        },
        Scenario {
            name: "every-replica-loses-power-at-once",
            about: "all three brokers lose power together: what acks=all acknowledged was fsynced on every in-sync replica, so it survives",
            config: base(10_000, 2),
            actions: vec![
                (4_000, Action::Crash { node: 1, power_loss: true }),
                (4_000, Action::Crash { node: 2, power_loss: true }),
                (4_000, Action::Crash { node: 3, power_loss: true }),
                (5_000, Action::Restart(1)),
                (5_000, Action::Restart(2)),
                (5_000, Action::Restart(3)),
            ],
            plant: Plant::CountCopyBeforeFsync,
        },
    ]
}

/// Runs scenario `s` on `seed` (the seed varies network delays and disk
/// latencies), with its bug planted or not.
pub fn run_scenario(s: &Scenario, seed: u64, planted: bool, tracing: bool) -> Report {
    let mut cfg = s.config.clone();
    cfg.plant = planted.then_some(s.plant);
    let mut sim = Sim::new(seed, cfg, tracing);
    for (at, a) in &s.actions {
        sim.inject(*at, a.clone());
    }
    sim.run()
}
