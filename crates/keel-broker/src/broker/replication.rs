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

/// This node's part in a replicated partition, from the cluster metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct Repl {
    pub me: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    /// On the leader: what each follower's fetches said.
    pub followers: BTreeMap<i32, Follower>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Follower {
    /// Its log end (its last fetch offset): everything below it is durable there.
    pub leo: i64,
    /// When it was last caught up with the leader (Kafka's lastCaughtUpTimeMs).
    pub caught_up_ms: i64,
    /// The leader's log end and the time of its previous fetch.
    pub prev_leader_leo: i64,
    pub prev_fetch_ms: i64,
}

/// A follower of the ISR the leader would drop (lagging) or a replica it
/// would add (caught up): the change to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

impl Repl {
    pub fn is_leader(&self) -> bool {
        self.leader == self.me
    }
}

impl Partition {
    /// The high watermark the leader may publish now: the smallest durable
    /// log end among the in-sync replicas (its own included).
    pub(super) fn recompute_high_watermark(&self, s: &mut PartitionState) {
        let own = if s.effective.fsync_before_ack() {
            s.log.flushed_offset()
        } else {
            s.log.log_end_offset()
        };
        let mut hw = own;
        if let Some(r) = s.repl.as_ref().filter(|r| r.is_leader()) {
            for id in r.isr.iter().filter(|id| **id != r.me) {
                // A follower that has not fetched from this leader yet holds it back.
                let leo = r.followers.get(id).map_or(i64::MIN, |f| f.leo);
                hw = hw.min(leo);
            }
        } else if s.repl.is_some() {
            // A follower's high watermark comes from its leader's fetch answers.
            return;
        }
        self.set_high_watermark(hw);
        self.release_replicated(s);
    }

    /// Answers the acks=all produces the high watermark has passed.
    pub(super) fn release_replicated(&self, s: &mut PartitionState) {
        let hw = self.high_watermark();
        if s.hw_waiters.is_empty() {
            return;
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut s.hw_waiters)
            .into_iter()
            .partition(|(end, _)| *end <= hw);
        s.hw_waiters = waiting;
        for (_, tx) in done {
            let _ = tx.send(Ok(()));
        }
    }

    /// Refuses a client's produce, fetch or list-offsets on a replica that does
    /// not (yet, or any more) lead the partition by its own state.
    pub(super) fn check_local_leader(p: &Partition, s: &PartitionState) -> Result<()> {
        match &s.repl {
            Some(r) if !r.is_leader() => Err(BrokerError::NotLeader(format!(
                "this broker does not lead {}-{} (broker {} does)",
                p.topic, p.index, r.leader
            ))),
            _ => Ok(()),
        }
    }

    /// The partition's ISR size for min.insync.replicas (1 when not replicated).
    pub(super) fn isr_size(s: &PartitionState) -> i32 {
        s.repl.as_ref().map_or(1, |r| r.isr.len() as i32)
    }

    /// Whether acks=all must wait for other replicas.
    pub(super) fn replicated(s: &PartitionState) -> bool {
        s.repl
            .as_ref()
            .is_some_and(|r| r.is_leader() && r.isr.len() > 1)
    }

    /// Registers an acks=all produce that ends at `end`.
    pub(super) fn wait_replicated(
        &self,
        s: &mut PartitionState,
        end: i64,
    ) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        if self.high_watermark() >= end {
            let _ = tx.send(Ok(()));
        } else {
            s.hw_waiters.push((end, tx));
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
        let was = s.repl.clone();
        let was_leader = was.as_ref().is_some_and(Repl::is_leader);
        let became_leader = meta.leader == me
            && (!was_leader
                || was
                    .as_ref()
                    .is_some_and(|w| w.leader_epoch != meta.leader_epoch));
        let mut r = Repl {
            me,
            leader: meta.leader,
            leader_epoch: meta.leader_epoch,
            isr: meta.isr.clone(),
            replicas: meta.replicas.clone(),
            followers: match &was {
                Some(w) if !became_leader => w.followers.clone(),
                _ => BTreeMap::new(),
            },
        };
        r.followers.retain(|id, _| meta.replicas.contains(id));
        if became_leader {
            s.log.begin_epoch(meta.leader_epoch)?;
            let now = self.now_ms();
            // Every follower gets a full replica.lag.time.max.ms from now.
            for id in meta.replicas.iter().filter(|id| **id != me) {
                r.followers.insert(
                    *id,
                    Follower {
                        leo: i64::MIN,
                        caught_up_ms: now,
                        prev_leader_leo: i64::MAX,
                        prev_fetch_ms: now,
                    },
                );
            }
        }
        let lost = was_leader && meta.leader != me;
        s.repl = Some(r);
        p.leader_epoch.store(meta.leader_epoch, Ordering::Release);
        if lost {
            for (_, tx) in s.hw_waiters.drain(..) {
                let _ = tx.send(Err(BrokerError::NotLeader(format!(
                    "{}-{} changed leader before the write reached every in-sync replica",
                    p.topic, p.index
                ))));
            }
        }
        p.recompute_high_watermark(&mut s);
        let first = was.is_none();
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
        let Some(was) = s.repl.take().or_else(|| held.then(Repl::default)) else {
            return Ok(());
        };
        for (_, tx) in s.hw_waiters.drain(..) {
            let _ = tx.send(Err(BrokerError::NotLeader(format!(
                "{}-{} moved to other brokers before the write reached every in-sync replica",
                p.topic, p.index
            ))));
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
        if p.topic == super::OFFSETS_TOPIC && was.is_leader() {
            self.unload_group_partition(p.index);
        }
        Ok(())
    }

    /// The leader's side of a follower's fetch: what the follower holds
    /// (`offset`, its durable log end) is recorded, the high watermark moves,
    /// and batches from `offset` up to the log end are returned.
    pub fn replica_fetch(
        &self,
        topic: &str,
        index: i32,
        follower: i32,
        leader_epoch: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Fetched> {
        let p = self.partition(topic, index)?;
        let now = self.now_ms();
        let mut s = p.lock();
        let end = s.log.log_end_offset();
        {
            let Some(r) = s.repl.as_mut().filter(|r| r.is_leader()) else {
                return Err(BrokerError::NotLeader(format!(
                    "broker does not lead {topic}-{index}"
                )));
            };
            check_epoch(r.leader_epoch, leader_epoch)?;
            if !r.replicas.contains(&follower) {
                return Err(BrokerError::NotLeader(format!(
                    "broker {follower} is not a replica of {topic}-{index}"
                )));
            }
            let f = r.followers.entry(follower).or_default();
            if offset > end {
                return Err(BrokerError::OffsetOutOfRange {
                    offset,
                    start: s.log.log_start_offset(),
                    end,
                });
            }
            f.leo = offset;
            // Kafka's rule: caught up now if it has the whole log, or caught up
            // as of its previous fetch if it has what the log held then.
            if offset >= end {
                f.caught_up_ms = now;
            } else if offset >= f.prev_leader_leo {
                f.caught_up_ms = f.caught_up_ms.max(f.prev_fetch_ms);
            }
            f.prev_leader_leo = end;
            f.prev_fetch_ms = now;
        }
        p.recompute_high_watermark(&mut s);
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
    pub fn append_as_follower_all(
        &self,
        parts: Vec<(String, i32, &[u8], i64)>,
    ) -> Vec<Result<i64>> {
        let now = self.now_ms();
        let appended: Vec<Result<(Arc<Partition>, Option<keel_storage::FlushJob>)>> = parts
            .iter()
            .map(|(topic, index, bytes, _)| {
                let p = self.partition(topic, *index)?;
                let job = {
                    let mut s = p.lock();
                    if s.repl.as_ref().is_none_or(|r| r.is_leader()) {
                        return Err(BrokerError::NotLeader(format!(
                            "{topic}-{index}: this broker leads it now"
                        )));
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
            .map(|((a, synced), (topic, index, _, leader_hw))| {
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
                Ok(held)
            })
            .collect()
    }

    /// The follower's log end, latest epoch and replication role (for the fetcher).
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
                check_epoch(r.leader_epoch, current_epoch)?;
            }
        }
        Ok(s.log.epoch_end(epoch)?)
    }

    /// A follower removes a tail its leader does not have (whole batches from
    /// `offset`), durably, and rebuilds its producer state from what is left.
    /// Returns the offsets it had known committed (below its high watermark)
    /// and removed, `[from, to)`: only an unclean election makes those, since
    /// a clean leader holds everything committed.
    pub fn truncate_replica(
        &self,
        topic: &str,
        index: i32,
        offset: i64,
    ) -> Result<Option<(i64, i64)>> {
        let p = self.partition(topic, index)?;
        let now = self.now_ms();
        let mut s = p.lock();
        let before = s.log.log_end_offset();
        let hw = p.high_watermark();
        s.log.truncate_to(offset, now)?;
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
            if hw > after {
                lost = Some((after, hw));
                p.reset_high_watermark(after);
            }
        }
        Ok(lost)
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

    /// ISR changes this leader should propose: followers in the ISR not
    /// caught up for `lag_ms` leave it; replicas outside it that have reached
    /// the high watermark (and this epoch's start) join it.
    pub fn isr_changes(&self, lag_ms: i64) -> Vec<IsrChange> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for t in self.topics() {
            for p in t.partitions.read().expect("partitions lock").iter() {
                let mut s = p.lock();
                let hw = p.high_watermark();
                let Ok(Some(epoch_start)) = s.log.latest_epoch_start() else {
                    continue;
                };
                let Some(r) = s.repl.as_ref().filter(|r| r.is_leader()) else {
                    continue;
                };
                let mut isr = r.isr.clone();
                isr.retain(|id| {
                    *id == r.me
                        || r.followers
                            .get(id)
                            .is_some_and(|f| now - f.caught_up_ms <= lag_ms)
                });
                for (id, f) in &r.followers {
                    if !isr.contains(id)
                        && f.leo >= hw
                        && f.leo >= epoch_start
                        && now - f.caught_up_ms <= lag_ms
                    {
                        isr.push(*id);
                    }
                }
                isr.sort_unstable();
                let mut old = r.isr.clone();
                old.sort_unstable();
                if isr != old {
                    out.push(IsrChange {
                        topic: p.topic.clone(),
                        partition: p.index,
                        leader_epoch: r.leader_epoch,
                        isr,
                    });
                }
            }
        }
        out
    }
}

/// KIP-320: a request at an older epoch is fenced; one at a newer epoch than
/// this broker knows means its metadata is behind.
fn check_epoch(current: i32, asked: i32) -> Result<()> {
    if asked < current {
        Err(BrokerError::FencedLeaderEpoch(format!(
            "leader epoch {asked} is older than the current {current}"
        )))
    } else if asked > current {
        Err(BrokerError::UnknownLeaderEpoch(format!(
            "leader epoch {asked} is newer than this broker's {current}"
        )))
    } else {
        Ok(())
    }
}
