//! Replication of a partition between its replicas, as Kafka does it
//! (`Partition.scala`, `ReplicaManager.scala`): the leader serves its
//! followers' fetches and tracks how far each has come; the high watermark
//! is the smallest log end among the in-sync replicas, and `acks=all` is
//! answered once it passes the batch. A follower copies the leader's batches
//! as they are, fsyncs them before it asks for more (so a follower's fetch
//! offset counts only what it holds durably: Keel's promise that nothing
//! acknowledged is lost even if every replica dies at once), and truncates a
//! divergent tail by leader epoch before it copies (KIP-101, KIP-279).
//!
//! Which node leads, the ISR and the epochs come from the cluster metadata
//! (`cluster.rs` installs them here); ISR changes are proposed by the
//! replication task in `keel-kafka`, never decided here.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{load_producer_state, Broker, Fetched, Partition, PartitionState};
use crate::{BrokerError, Result};

/// This node's part in a replicated partition: the pure core, whose
/// waiting acks=all writes are answered on channels.
pub(crate) type Repl = keel_repl::Replica<oneshot::Sender<Result<()>>>;

/// A follower of the ISR the leader would drop (lagging) or a replica it
/// would add (caught up): the change to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    /// The partition epoch of the metadata the change was computed from:
    /// what the proposal must be based on.
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// What one partition of a fetch answer brings a follower, with the fetch
/// it answers (see [`Broker::append_as_follower_all`]).
#[derive(Debug)]
pub struct FollowerAppend<'a> {
    pub topic: String,
    pub partition: i32,
    pub records: &'a [u8],
    pub high_watermark: i64,
    /// The leader and epoch the fetch was sent to, and its fetch offset.
    pub leader: i32,
    pub leader_epoch: i32,
    pub fetch_offset: i64,
    /// The leader's log start (DeleteRecords moves it).
    pub log_start_offset: i64,
}

impl From<keel_repl::Refusal> for BrokerError {
    fn from(r: keel_repl::Refusal) -> BrokerError {
        use keel_repl::Refusal as R;
        match r {
            R::NotLeader(why) => BrokerError::NotLeader(why),
            R::FencedLeaderEpoch { asked, current } => BrokerError::FencedLeaderEpoch(format!(
                "leader epoch {asked} is older than the current {current}"
            )),
            R::UnknownLeaderEpoch { asked, current } => BrokerError::UnknownLeaderEpoch(format!(
                "leader epoch {asked} is newer than this broker's {current}"
            )),
            R::OffsetOutOfRange { offset, end } => BrokerError::OffsetOutOfRange {
                offset,
                start: 0,
                end,
            },
            R::NotEnoughReplicasAfterAppend { isr, min } => {
                BrokerError::NotEnoughReplicasAfterAppend { isr, min }
            }
        }
    }
}

impl Partition {
    /// The high watermark the leader may publish now (the core's: the
    /// smallest durable log end in the ISR, its own included), and the
    /// acks=all writes it answers.
    pub(super) fn recompute_high_watermark(&self, s: &mut PartitionState) {
        let own = if s.effective.fsync_before_ack() {
            s.log.flushed_offset()
        } else {
            s.log.log_end_offset()
        };
        let hw = match &s.repl {
            None => own,
            Some(r) => match r.high_watermark(own) {
                Some(hw) => hw,
                // A follower's high watermark comes from its leader's fetch answers.
                None => return,
            },
        };
        self.set_high_watermark(hw);
        self.release_replicated(s);
    }

    /// Answers the acks=all writes the high watermark has passed, as the
    /// core says (min.insync.replicas checked again at the answer).
    pub(super) fn release_replicated(&self, s: &mut PartitionState) {
        let hw = self.high_watermark();
        let min = s.effective.min_insync_replicas;
        let Some(r) = s.repl.as_mut() else {
            return;
        };
        for (tx, answer) in r.release(hw, min) {
            let _ = tx.send(answer.map_err(BrokerError::from));
        }
    }

    /// Refuses a client's produce, fetch or list-offsets on a replica that does
    /// not (yet, or any more) lead the partition by its own state.
    pub(super) fn check_local_leader(p: &Partition, s: &PartitionState) -> Result<()> {
        match &s.repl {
            Some(r) if !r.is_leader() => Err(BrokerError::NotLeader(format!(
                "this broker does not lead {}-{} (broker {} does)",
                p.topic,
                p.index,
                r.role().leader
            ))),
            _ => Ok(()),
        }
    }

    /// The partition's ISR size for min.insync.replicas (1 when not replicated).
    pub(super) fn isr_size(s: &PartitionState) -> i32 {
        s.repl.as_ref().map_or(1, Repl::isr_size)
    }

    /// Whether acks=all must wait for other replicas.
    pub(super) fn replicated(s: &PartitionState) -> bool {
        s.repl.as_ref().is_some_and(Repl::must_wait_for_followers)
    }

    /// Registers an acks=all produce that ends at `end`.
    pub(super) fn wait_replicated(
        &self,
        s: &mut PartitionState,
        end: i64,
    ) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        let hw = self.high_watermark();
        match s.repl.as_mut() {
            Some(r) => {
                if let Some(tx) = r.wait(end, hw, tx) {
                    let _ = tx.send(Ok(()));
                }
            }
            None => {
                let _ = tx.send(Ok(()));
            }
        }
        rx
    }

    pub(crate) fn reset_high_watermark(&self, hw: i64) {
        self.high_watermark.store(hw, Ordering::Release);
        self.data_version.send_modify(|v| *v += 1);
    }
}

impl Broker {
    /// Installs this node's role in a partition from the cluster metadata.
    /// Becoming leader at a new epoch records where the epoch begins;
    /// losing leadership fails the produces still waiting for followers.
    pub(super) fn set_replication(
        &self,
        p: &Partition,
        me: i32,
        meta: &keel_meta::Partition,
    ) -> Result<()> {
        let mut s = p.lock();
        let now = self.now_ms();
        let role = keel_repl::Role {
            me,
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
            isr: meta.isr.clone(),
            replicas: meta.replicas.clone(),
            partition_epoch: meta.partition_epoch,
            last_unclean_epoch: meta.last_unclean_epoch,
        };
        let first = s.repl.is_none();
        let change = match s.repl.as_mut() {
            Some(r) => r.set_role(role, now, false),
            None => {
                let (r, change) = Repl::new(role, now);
                s.repl = Some(r);
                change
            }
        };
        if let Some(epoch) = change.begin_epoch {
            s.log.begin_epoch(epoch)?;
            // Followers' log starts are heard anew under each leadership.
            s.follower_starts.clear();
        }
        if first {
            // The log end is only a guess at what is committed: a tail this
            // node appended as leader, or copied, may never have reached the
            // ISR. Start from the checkpointed high watermark (Kafka's
            // replication-offset-checkpoint); the leader's answers, or the
            // ISR's fetches if this node leads, move it on. Taking the log end
            // made a restarted follower that truncated its uncommitted tail
            // report it as committed records lost to an unclean election
            // (found by keel-sim: plant high-watermark-from-log-end).
            let checkpointed = self
                .inner
                .hw_checkpoint
                .lock()
                .expect("checkpoint lock")
                .get(&(p.topic.clone(), p.index))
                .copied()
                .unwrap_or(0);
            p.reset_high_watermark(checkpointed.min(s.log.log_end_offset()));
        }
        let became_leader = change.begin_epoch.is_some();
        let lost = change.lost_leadership;
        p.leader_epoch.store(meta.leader_epoch, Ordering::Release);
        for tx in change.failed {
            let _ = tx.send(Err(BrokerError::NotLeader(format!(
                "{}-{} changed leader before the write reached every in-sync replica",
                p.topic, p.index
            ))));
        }
        p.recompute_high_watermark(&mut s);
        drop(s);
        if p.topic == super::OFFSETS_TOPIC {
            // The group coordinator of this partition is its leader.
            // (At start-up every local partition was loaded already.)
            if became_leader && !first {
                self.load_group_partition(p.index)?;
            } else if (lost || first) && meta.leader != me {
                self.unload_group_partition(p.index);
            }
        }
        Ok(())
    }

    /// This node is no longer a replica of `p` (a reassignment moved it away
    /// while it was up, or while it was down, and its log still holds the
    /// old copy): produces still waiting fail, its group coordination ends,
    /// and the log is emptied, durably (Kafka's StopReplica with delete).
    /// If it becomes a replica again it copies the partition anew.
    pub(super) fn retire_replica(&self, p: &Partition, meta: &keel_meta::Partition) -> Result<()> {
        let mut s = p.lock();
        p.leader_epoch.store(meta.leader_epoch, Ordering::Release);
        let held = s.log.log_end_offset() > s.log.log_start_offset();
        let was = s.repl.take();
        if was.is_none() && !held {
            return Ok(());
        }
        // Its groups are served here if it led, or if it had no role yet (at
        // start-up every local offsets partition was loaded).
        let served_groups = was.as_ref().is_none_or(Repl::is_leader);
        if let Some(mut r) = was {
            let gone = r.set_role(keel_repl::Role::default(), self.now_ms(), false);
            for tx in gone.failed {
                let _ = tx.send(Err(BrokerError::NotLeader(format!(
                    "{}-{} moved to other brokers before the write reached every in-sync replica",
                    p.topic, p.index
                ))));
            }
        }
        let now = self.now_ms();
        let start = s.log.log_start_offset();
        s.log.truncate_to(start, now)?;
        s.producers = load_producer_state(&s.log, now)?;
        s.producers_dirty = true;
        p.reset_high_watermark(s.log.log_end_offset());
        drop(s);
        tracing::info!(
            topic = %p.topic,
            partition = p.index,
            "no longer a replica here: the local copy is emptied"
        );
        if p.topic == super::OFFSETS_TOPIC && served_groups {
            self.unload_group_partition(p.index);
        }
        Ok(())
    }

    /// The leader's side of a follower's fetch: what the follower holds
    /// (`offset`, its durable log end, and where its log starts) is
    /// recorded, the high watermark moves, and batches from `offset` up to
    /// the log end are returned.
    #[allow(clippy::too_many_arguments)]
    pub fn replica_fetch(
        &self,
        topic: &str,
        index: i32,
        follower: i32,
        leader_epoch: i32,
        offset: i64,
        follower_log_start: i64,
        max_bytes: usize,
    ) -> Result<Fetched> {
        let p = self.partition(topic, index)?;
        let now = self.now_ms();
        let mut s = p.lock();
        let end = s.log.log_end_offset();
        let Some(r) = s.repl.as_mut() else {
            return Err(BrokerError::NotLeader(format!(
                "broker does not lead {topic}-{index}"
            )));
        };
        r.on_fetch(follower, leader_epoch, offset, end, now)
            .map_err(|e| match e {
                keel_repl::Refusal::OffsetOutOfRange { offset, end } => {
                    BrokerError::OffsetOutOfRange {
                        offset,
                        start: s.log.log_start_offset(),
                        end,
                    }
                }
                e => BrokerError::from(e),
            })?;
        p.recompute_high_watermark(&mut s);
        p.note_follower_start(&mut s, follower, follower_log_start);
        let read = s.log.read(offset, max_bytes, i64::MAX)?;
        Ok(Fetched {
            bytes: read.bytes,
            high_watermark: p.high_watermark(),
            log_start_offset: s.log.log_start_offset(),
        })
    }

    /// A follower appends what its leader sent for every partition of one
    /// fetch response, fsyncs it, and takes the leader's high watermark
    /// (never past what it holds); each answer is the partition's new log
    /// end, the offset of its next fetch. All appends come first, then every
    /// partition's fsync at once (on scoped threads, so the disk sees them
    /// together), then the high watermarks.
    ///
    /// An answer is taken only if this replica still follows the leader and
    /// epoch it was fetched at and its log still ends where the fetch began
    /// (a truncation in between would otherwise leave a gap, or keep a
    /// deposed leader's records); otherwise it is dropped, as Kafka's
    /// fetcher drops a response whose partition state changed in flight.
    pub fn append_as_follower_all(&self, parts: Vec<FollowerAppend<'_>>) -> Vec<Result<i64>> {
        let now = self.now_ms();
        let appended: Vec<Result<(Arc<Partition>, Option<keel_storage::FlushJob>)>> = parts
            .iter()
            .map(|a| {
                let (topic, index, bytes) = (&a.topic, a.partition, a.records);
                let p = self.partition(topic, index)?;
                let job = {
                    let mut s = p.lock();
                    check_following(&s, &p, a.leader, a.leader_epoch)?;
                    let end = s.log.log_end_offset();
                    if end != a.fetch_offset {
                        tracing::debug!(
                            topic = topic.as_str(),
                            partition = index,
                            end,
                            fetched_at = a.fetch_offset,
                            "dropped a fetch answer: the log moved while it was in flight"
                        );
                        return Ok((p.clone(), None));
                    }
                    for range in keel_storage::batch::split(bytes)? {
                        let h = s.log.append_replicated(&bytes[range], now)?;
                        s.producers.apply(&h, now);
                        s.producers_dirty |= h.producer_id >= 0;
                    }
                    s.log.flush_job()
                };
                Ok((p, job))
            })
            .collect();
        let synced: Vec<std::io::Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = appended
                .iter()
                .map(|a| match a {
                    Ok((_, Some(job))) => Some(scope.spawn(move || job.run())),
                    _ => None,
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h {
                    Some(h) => h
                        .join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked"))),
                    None => Ok(()),
                })
                .collect()
        });
        appended
            .into_iter()
            .zip(synced)
            .zip(&parts)
            .map(|((a, synced), part)| {
                let (topic, index, leader_hw) = (&part.topic, part.partition, &part.high_watermark);
                let (p, job) = a?;
                let mut s = p.lock();
                if let Some(job) = job {
                    match synced {
                        Ok(()) => s.log.complete_flush(&job)?,
                        Err(e) => {
                            s.log.fail_flush(&job);
                            return Err(BrokerError::Storage(format!(
                                "fsync {topic}-{index}: {e}"
                            )));
                        }
                    }
                }
                let held = s.log.flushed_offset();
                // Exactly the leader's (never past what this replica holds), lower
                // too: after a restart this replica's own guess (its log end) may
                // be above it.
                let hw = (*leader_hw).min(held);
                if hw != p.high_watermark() && hw >= 0 {
                    p.reset_high_watermark(hw);
                }
                p.follow_leader_start(&mut s, part.log_start_offset)?;
                Ok(held)
            })
            .collect()
    }

    /// The follower's log end, latest epoch and replication role (for the fetcher).
    /// Whether this broker has taken the lead of `topic`-`index` at
    /// `leader_epoch` (the metadata image can name it leader before
    /// `apply_metadata` has installed the role, as a restarted node's
    /// replayed image does before it registers).
    pub fn leads_at(&self, topic: &str, index: i32, leader_epoch: i32) -> bool {
        self.partition(topic, index).is_ok_and(|p| {
            p.lock()
                .repl
                .as_ref()
                .is_some_and(|r| r.is_leader() && r.role().leader_epoch == leader_epoch)
        })
    }

    pub fn replica_position(&self, topic: &str, index: i32) -> Result<(i64, Option<i32>)> {
        let p = self.partition(topic, index)?;
        let mut s = p.lock();
        let epoch = s.log.latest_epoch()?;
        Ok((s.log.flushed_offset(), epoch))
    }

    /// OffsetsForLeaderEpoch on the leader: the largest epoch at or below
    /// `epoch` and where it ends in this log.
    pub fn epoch_end(
        &self,
        topic: &str,
        index: i32,
        current_epoch: i32,
        epoch: i32,
    ) -> Result<(i32, i64)> {
        let p = self.partition(topic, index)?;
        let mut s = p.lock();
        if let Some(r) = &s.repl {
            if !r.is_leader() {
                return Err(BrokerError::NotLeader(format!(
                    "broker does not lead {topic}-{index}"
                )));
            }
            if current_epoch >= 0 {
                check_epoch(r.role().leader_epoch, current_epoch)?;
            }
        }
        Ok(s.log.epoch_end(epoch)?)
    }

    /// A follower removes the tail its leader does not have, from the
    /// leader's OffsetsForLeaderEpoch answer for this log's latest epoch
    /// (whole batches, durably; see `keel_repl::truncation` for where it
    /// cuts), and rebuilds its producer state from what is left. Returns what
    /// the cut may have lost, `[from, to)`, when an unclean election followed
    /// the records cut (`keel_repl::truncation_loss`: a clean leader holds
    /// everything committed), and whether the truncation is complete: if
    /// not, the follower asks again for its new latest epoch.
    ///
    /// `following` is the (leader, leader epoch) the fetcher asked: refused
    /// unless this replica has applied exactly that, so no answer to a fetch
    /// from an earlier leader can be appended after this truncation.
    pub fn truncate_replica(
        &self,
        topic: &str,
        index: i32,
        following: (i32, i32),
        leader_epoch: i32,
        leader_end: i64,
    ) -> Result<(Option<(i64, i64)>, bool)> {
        let p = self.partition(topic, index)?;
        let now = self.now_ms();
        let mut s = p.lock();
        check_following(&s, &p, following.0, following.1)?;
        let before = s.log.log_end_offset();
        let hw = p.high_watermark();
        let latest = s.log.latest_epoch()?;
        let unclean = s.repl.as_ref().map_or(0, |r| r.role().last_unclean_epoch);
        let cut = s.log.truncation_for(leader_epoch, leader_end)?;
        s.log.truncate_to(cut.offset, now)?;
        let after = s.log.log_end_offset();
        let mut lost = None;
        if after < before {
            tracing::warn!(
                topic,
                partition = index,
                from = after,
                to = before,
                "truncated a divergent tail by leader epoch"
            );
            s.producers = load_producer_state(&s.log, now)?;
            s.producers_dirty = true;
            lost = keel_repl::truncation_loss(unclean, latest, after, before);
            if hw > after {
                p.reset_high_watermark(after);
            }
        }
        Ok((lost, cut.done))
    }

    /// A follower whose log ends below its leader's log start (it was away
    /// while retention removed the rest, or it is a new replica of an old
    /// topic) drops its copy and continues at `start`, the leader's log start.
    pub fn restart_replica_at(&self, topic: &str, index: i32, start: i64) -> Result<()> {
        let p = self.partition(topic, index)?;
        let now = self.now_ms();
        let mut s = p.lock();
        if s.repl.as_ref().is_none_or(|r| r.is_leader()) {
            return Err(BrokerError::NotLeader(format!(
                "{topic}-{index}: this broker leads it now"
            )));
        }
        let end = s.log.log_end_offset();
        if end >= start {
            return Ok(());
        }
        s.log.restart_at(start, now)?;
        s.producers = load_producer_state(&s.log, now)?;
        s.producers_dirty = true;
        p.reset_high_watermark(s.log.log_end_offset());
        tracing::warn!(
            topic,
            partition = index,
            end,
            start,
            "this replica ended below its leader's log start: it starts again there"
        );
        Ok(())
    }

    /// Answers every acks=all write waiting on this node's partitions with
    /// NOT_LEADER_OR_FOLLOWER: the node has been cut off from the controller
    /// for a session, so its leaderships have moved or are moving, and what
    /// it holds past the high watermark may be truncated. None of those
    /// writes was acknowledged; the producer retries at the new leader (an
    /// idempotent one with the same sequence numbers). Returns how many.
    pub fn fail_waiting_writes(&self) -> usize {
        let mut n = 0;
        for t in self.topics() {
            for p in t.partitions.read().expect("partitions lock").iter() {
                let waiters = match p.lock().repl.as_mut() {
                    Some(r) => r.take_waiters(),
                    None => continue,
                };
                for tx in waiters {
                    n += 1;
                    let _ = tx.send(Err(BrokerError::NotLeader(format!(
                        "{}-{}: this broker has not heard from the controller for a broker \
                         session; its leadership may have moved",
                        p.topic, p.index
                    ))));
                }
            }
        }
        n
    }

    /// ISR changes this leader should propose: followers in the ISR not
    /// caught up for `lag_ms` leave it; replicas outside it that have reached
    /// the high watermark (and this epoch's start) join it. The caller
    /// proposes each (the core counts it proposed).
    pub fn isr_changes(&self, lag_ms: i64, eligible: impl Fn(i32) -> bool) -> Vec<IsrChange> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for t in self.topics() {
            for p in t.partitions.read().expect("partitions lock").iter() {
                let mut s = p.lock();
                let hw = p.high_watermark();
                let Ok(Some(epoch_start)) = s.log.latest_epoch_start() else {
                    continue;
                };
                let Some(r) = s.repl.as_mut() else {
                    continue;
                };
                if let Some(isr) = r.isr_change(now, lag_ms, hw, epoch_start, &eligible) {
                    // Proposed from here on: the high watermark waits for the
                    // replicas it adds (KIP-497's maximal ISR).
                    r.proposed_isr(isr.clone(), now);
                    out.push(IsrChange {
                        topic: p.topic.clone(),
                        partition: p.index,
                        leader_epoch: r.role().leader_epoch,
                        partition_epoch: r.role().partition_epoch,
                        isr,
                    });
                }
            }
        }
        out
    }
}

/// Kafka's file name and format (version 0: a version line, a count line,
/// then `topic partition offset` lines).
pub(super) const HW_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

/// Reads the high watermark checkpoint; a missing or unreadable one is
/// empty (every replicated partition then starts from 0 and learns its high
/// watermark from its leader), never an error that stops the node.
pub(super) fn read_hw_checkpoint(dir: &std::path::Path) -> BTreeMap<(String, i32), i64> {
    let path = dir.join(HW_CHECKPOINT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!("{}: {e}; high watermarks start from 0", path.display());
            return BTreeMap::new();
        }
    };
    match parse_hw_checkpoint(&text) {
        Some(m) => m,
        None => {
            tracing::warn!(
                "{}: not a version 0 checkpoint; high watermarks start from 0",
                path.display()
            );
            BTreeMap::new()
        }
    }
}

fn parse_hw_checkpoint(text: &str) -> Option<BTreeMap<(String, i32), i64>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut out = BTreeMap::new();
    for line in lines.by_ref().take(count) {
        let mut f = line.split(' ');
        let (topic, index, offset) = (f.next()?, f.next()?, f.next()?);
        if f.next().is_some() {
            return None;
        }
        out.insert(
            (topic.to_string(), index.parse().ok()?),
            offset.parse().ok()?,
        );
    }
    (out.len() == count).then_some(out)
}

impl Broker {
    /// The controller refused this leader's ISR proposal for the partition
    /// (or it was never sent): the core stops counting the replicas it added.
    pub fn isr_proposal_refused(&self, topic: &str, index: i32) {
        if let Ok(p) = self.partition(topic, index) {
            let mut s = p.lock();
            if let Some(r) = s.repl.as_mut() {
                r.isr_proposal_refused();
                p.recompute_high_watermark(&mut s);
            }
        }
    }

    /// Writes every replicated partition's high watermark to
    /// `replication-offset-checkpoint` (atomically: write, fsync, rename),
    /// as Kafka does every replica.high.watermark.checkpoint.interval.ms
    /// and at shutdown. A restart starts each partition from it.
    pub fn checkpoint_high_watermarks(&self) -> Result<()> {
        let mut now = BTreeMap::new();
        for t in self.topics() {
            for p in t.partitions.read().expect("partitions lock").iter() {
                if p.lock().repl.is_some() {
                    now.insert((p.topic.clone(), p.index), p.high_watermark());
                }
            }
        }
        let mut text = format!("0\n{}\n", now.len());
        for ((topic, index), hw) in &now {
            text.push_str(&format!("{topic} {index} {hw}\n"));
        }
        let path = self.inner.config.data_dir.join(HW_CHECKPOINT_FILE);
        super::write_atomically(&path, text.as_bytes())
            .map_err(|e| super::storage_err("write", &path, e))?;
        *self.inner.hw_checkpoint.lock().expect("checkpoint lock") = now;
        Ok(())
    }
}

/// Whether this replica follows `leader` at `epoch` by the metadata it has
/// applied (the core's rule: a fetcher acts on a partition only then).
fn check_following(s: &PartitionState, p: &Partition, leader: i32, epoch: i32) -> Result<()> {
    match &s.repl {
        Some(r) => r.check_following(leader, epoch).map_err(|e| match e {
            keel_repl::Refusal::NotLeader(why) => {
                BrokerError::NotLeader(format!("{}-{}: {why}", p.topic, p.index))
            }
            e => BrokerError::from(e),
        }),
        None => Err(BrokerError::NotLeader(format!(
            "{}-{}: not a replica here",
            p.topic, p.index
        ))),
    }
}

/// KIP-320 (the core's rule).
fn check_epoch(current: i32, asked: i32) -> Result<()> {
    keel_repl::check_epoch(current, asked).map_err(BrokerError::from)
}
