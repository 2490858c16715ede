//! The replication core of one node's part in one replicated partition: a
//! pure state machine. No I/O, no clock, no locks: the caller passes the
//! time and the log's ends in and acts on what comes back (the sans-I/O
//! shape of openraft's `Engine` and raft-rs's `Ready`). Two drivers run
//! this same code: `keel-broker` (a real log, real fetches over TCP, the
//! system clock) and `keel-sim` (simulated logs, network and time, under
//! seeded faults), so what the simulator checks is what the broker does.
//!
//! What it decides, Kafka's `Partition` and `ReplicaManager` rules:
//! - the leader's view of each follower (its durable log end, from its
//!   fetch offset, and when it was last caught up: `Replica.updateFetchState`);
//! - the high watermark: the smallest durable log end in the ISR;
//! - when an acks=all write may be answered, and with what: only once the
//!   high watermark passes it, and NOT_ENOUGH_REPLICAS_AFTER_APPEND if the
//!   ISR is below min.insync.replicas at that moment
//!   (`Partition.checkEnoughReplicasReachOffset`);
//! - the ISR changes the leader should propose (`maybeShrinkIsr`,
//!   `maybeExpandIsr`);
//! - fencing by leader epoch (KIP-320), on the leader and on a follower;
//! - where a follower truncates, from its leader's OffsetsForLeaderEpoch
//!   answer (KIP-101, KIP-279): [`truncation`].
//!
//! Invariants it keeps: the high watermark a leader computes never passes
//! a durable end an ISR member reported; a write is answered at most once,
//! successfully only with the ISR at min.insync.replicas or more; a
//! follower acts only on answers from the leader and epoch it follows.

use std::collections::BTreeMap;

/// This node's role in the partition, from the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Role {
    pub me: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    /// The partition epoch of the metadata this role comes from: an ISR
    /// change is proposed against it, so the controller refuses a proposal
    /// computed from an ISR it has changed since (the core stops counting a
    /// pending proposal once a newer ISR is applied, so a proposal from an
    /// older one must never be accepted).
    pub partition_epoch: i32,
    /// The leader epoch the partition's last unclean election began (0: none).
    pub last_unclean_epoch: i32,
}

/// The leader's view of one follower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Follower {
    /// Its log end (its last fetch offset): everything below it is durable there.
    pub leo: i64,
    /// When it was last caught up with the leader (Kafka's lastCaughtUpTimeMs).
    pub caught_up_ms: i64,
    /// The leader's log end and the time of its previous fetch.
    pub prev_leader_leo: i64,
    pub prev_fetch_ms: i64,
}

/// Why the core refuses a request or fails a waiting write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not (or no longer) hold the role the request needs.
    NotLeader(String),
    /// KIP-320: the request's epoch is older than this node's.
    FencedLeaderEpoch { asked: i32, current: i32 },
    /// KIP-320: the request's epoch is newer than this node knows.
    UnknownLeaderEpoch { asked: i32, current: i32 },
    /// A follower asked from past the leader's log end.
    OffsetOutOfRange { offset: i64, end: i64 },
    /// The write is in the log but the ISR shrank below min.insync.replicas.
    NotEnoughReplicasAfterAppend { isr: i32, min: i32 },
}

/// What a change of role asks of the driver.
#[derive(Debug)]
pub struct RoleChange<W> {
    /// This node leads at a new epoch: record that the epoch begins at the
    /// log end before appending anything (Kafka's `Partition.makeLeader`).
    pub begin_epoch: Option<i32>,
    /// This node led and no longer does: these waiting writes failed.
    pub failed: Vec<W>,
    /// It led before this change and does not now.
    pub lost_leadership: bool,
}

/// One node's part in one replicated partition. `W` is whatever the driver
/// answers a waiting acks=all write with (a channel, a simulated client).
#[derive(Debug)]
pub struct Replica<W> {
    role: Role,
    followers: BTreeMap<i32, Follower>,
    /// acks=all writes waiting for the high watermark: (their end offset, answer).
    waiters: Vec<(i64, W)>,
    /// The ISR this leader proposed and has not seen applied yet, and when.
    pending_isr: Option<(Vec<i32>, i64)>,
}

/// How long a leader waits for a proposed ISR change to come back in the
/// metadata before it proposes again (Kafka retries its AlterPartition).
pub const ISR_PROPOSAL_RETRY_MS: i64 = 5_000;

impl<W> Replica<W> {
    /// A replica that takes `role` at `now_ms` (a new one, or one that
    /// restarted: it knows nothing of its followers yet).
    pub fn new(role: Role, now_ms: i64) -> (Replica<W>, RoleChange<W>) {
        let mut r = Replica {
            role: Role::default(),
            followers: BTreeMap::new(),
            waiters: Vec::new(),
            pending_isr: None,
        };
        let change = r.set_role(role, now_ms, true);
        (r, change)
    }

    /// Installs a new role from the metadata. Becoming leader at a new epoch
    /// gives every follower a full lag allowance from now; losing
    /// leadership fails the writes still waiting.
    pub fn set_role(&mut self, role: Role, now_ms: i64, first: bool) -> RoleChange<W> {
        let was_leader = !first && self.is_leader();
        let became_leader =
            role.leader == role.me && (!was_leader || self.role.leader_epoch != role.leader_epoch);
        if became_leader {
            self.followers.clear();
            for id in role.replicas.iter().filter(|id| **id != role.me) {
                self.followers.insert(
                    *id,
                    Follower {
                        leo: i64::MIN,
                        caught_up_ms: now_ms,
                        prev_leader_leo: i64::MAX,
                        prev_fetch_ms: now_ms,
                    },
                );
            }
        }
        self.followers.retain(|id, _| role.replicas.contains(id));
        let lost_leadership = was_leader && role.leader != role.me;
        let epoch = role.leader_epoch;
        if became_leader || role.isr != self.role.isr || role.leader != role.me {
            // The proposal came back (or another change overtook it).
            self.pending_isr = None;
        }
        self.role = role;
        RoleChange {
            begin_epoch: became_leader.then_some(epoch),
            failed: if lost_leadership {
                std::mem::take(&mut self.waiters)
                    .into_iter()
                    .map(|(_, w)| w)
                    .collect()
            } else {
                Vec::new()
            },
            lost_leadership,
        }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    pub fn is_leader(&self) -> bool {
        self.role.leader == self.role.me
    }

    /// The ISR's size, for min.insync.replicas.
    pub fn isr_size(&self) -> i32 {
        i32::try_from(self.role.isr.len()).unwrap_or(i32::MAX)
    }

    /// Whether an acks=all write here must wait for other replicas.
    pub fn must_wait_for_followers(&self) -> bool {
        self.is_leader() && self.role.isr.len() > 1
    }

    /// The leader's view of follower `id`, if it has one.
    pub fn follower(&self, id: i32) -> Option<&Follower> {
        self.followers.get(&id)
    }

    /// The high watermark a leader may publish when its own durable log end
    /// is `own_end`: the smallest durable end in the ISR (a follower that
    /// has not fetched from this leader yet holds it back). `None` on a
    /// follower, whose high watermark comes from its leader's answers.
    pub fn high_watermark(&self, own_end: i64) -> Option<i64> {
        if !self.is_leader() {
            return None;
        }
        let mut hw = own_end;
        for id in self.maximal_isr().filter(|id| *id != self.role.me) {
            hw = hw.min(self.followers.get(&id).map_or(i64::MIN, |f| f.leo));
        }
        Some(hw)
    }

    /// The ISR for the high watermark: the applied one and any replica a
    /// proposal in flight adds (KIP-497's maximal ISR). Once the controller
    /// has applied an expansion, an election may pick the new member; if
    /// the leader advanced the high watermark without it meanwhile, that
    /// member would lead without records acknowledged to clients. Found by
    /// `keel-sim` (seed 187): an ISR expansion applied at the controller,
    /// a write acknowledged by the two old members before the leader saw
    /// the expansion, then a preferred-leader election of the new member.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let pending = self.pending_isr.iter().flat_map(|(isr, _)| isr.iter());
        let added = pending.filter(|id| !self.role.isr.contains(id));
        self.role.isr.iter().chain(added).copied()
    }

    /// Records that this leader proposed `isr` at `now_ms`: until the
    /// metadata brings it back, the high watermark waits for its new
    /// members too, and no other change is proposed for
    /// [`ISR_PROPOSAL_RETRY_MS`].
    pub fn proposed_isr(&mut self, isr: Vec<i32>, now_ms: i64) {
        self.pending_isr = Some((isr, now_ms));
    }

    /// The controller refused the proposal (a stale partition epoch, a
    /// fenced replica): the applied ISR alone counts again, and the next
    /// check may propose anew. Without this a refused expansion held the
    /// high watermark back for a replica that will never join (seen with
    /// a dead broker still caught up by the leader's clock).
    pub fn isr_proposal_refused(&mut self) {
        self.pending_isr = None;
    }

    /// The leader's side of a follower's fetch at `offset` (its durable log
    /// end) and `epoch`, when the leader's log ends at `log_end`: recorded,
    /// with Kafka's caught-up rule (caught up now if it has the whole log,
    /// or as of its previous fetch if it has what the log held then).
    pub fn on_fetch(
        &mut self,
        follower: i32,
        epoch: i32,
        offset: i64,
        log_end: i64,
        now_ms: i64,
    ) -> Result<(), Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader(format!(
                "broker {} does not lead this partition (broker {} does)",
                self.role.me, self.role.leader
            )));
        }
        check_epoch(self.role.leader_epoch, epoch)?;
        if !self.role.replicas.contains(&follower) {
            return Err(Refusal::NotLeader(format!(
                "broker {follower} is not a replica of this partition"
            )));
        }
        if offset > log_end {
            return Err(Refusal::OffsetOutOfRange {
                offset,
                end: log_end,
            });
        }
        let f = self.followers.entry(follower).or_default();
        f.leo = offset;
        if offset >= log_end {
            f.caught_up_ms = now_ms;
        } else if offset >= f.prev_leader_leo {
            f.caught_up_ms = f.caught_up_ms.max(f.prev_fetch_ms);
        }
        f.prev_leader_leo = log_end;
        f.prev_fetch_ms = now_ms;
        Ok(())
    }

    /// Registers an acks=all write ending at `end`; gives `answer` back if
    /// the high watermark `hw` has passed it already.
    pub fn wait(&mut self, end: i64, hw: i64, answer: W) -> Option<W> {
        if hw >= end {
            Some(answer)
        } else {
            self.waiters.push((end, answer));
            None
        }
    }

    /// The waiting writes the high watermark `hw` has passed, each with its
    /// answer. min.insync.replicas is checked again here, at the moment of
    /// the answer: the high watermark also moves when the ISR shrinks, and
    /// a write that waited for three copies must not be acknowledged with
    /// two (it gets NOT_ENOUGH_REPLICAS_AFTER_APPEND: it is in the log, and
    /// an idempotent producer's retry is answered from it once the ISR is
    /// large enough again).
    pub fn release(&mut self, hw: i64, min_insync: i32) -> Vec<(W, Result<(), Refusal>)> {
        if self.waiters.is_empty() {
            return Vec::new();
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(end, _)| *end <= hw);
        self.waiters = waiting;
        let isr = self.isr_size();
        done.into_iter()
            .map(|(_, w)| {
                let answer = if isr < min_insync {
                    Err(Refusal::NotEnoughReplicasAfterAppend {
                        isr,
                        min: min_insync,
                    })
                } else {
                    Ok(())
                };
                (w, answer)
            })
            .collect()
    }

    /// Every waiting write, taken out unanswered: the node stopped being a
    /// leader it can trust itself to be (cut off from the controller for a
    /// session), so none of them can be acknowledged from here; the caller
    /// answers each NOT_LEADER_OR_FOLLOWER, as a leader that lost its
    /// leadership does.
    pub fn take_waiters(&mut self) -> Vec<W> {
        std::mem::take(&mut self.waiters)
            .into_iter()
            .map(|(_, w)| w)
            .collect()
    }

    /// How many writes wait.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The ISR this leader should propose at `now_ms`, if it differs from
    /// the current one: members not caught up within `lag_ms` leave;
    /// replicas that reached the high watermark `hw` and the start of this
    /// epoch in the log (`epoch_start`), caught up within `lag_ms`, and
    /// `eligible` by the metadata (live, not fenced: KIP-903), join.
    /// Sorted.
    pub fn isr_change(
        &self,
        now_ms: i64,
        lag_ms: i64,
        hw: i64,
        epoch_start: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> Option<Vec<i32>> {
        if !self.is_leader() {
            return None;
        }
        if self
            .pending_isr
            .as_ref()
            .is_some_and(|(_, at)| now_ms - at < ISR_PROPOSAL_RETRY_MS)
        {
            return None; // One proposal at a time, as Kafka's AlterPartition.
        }
        let me = self.role.me;
        let recent = |f: &Follower| now_ms - f.caught_up_ms <= lag_ms;
        let mut isr = self.role.isr.clone();
        isr.retain(|id| *id == me || self.followers.get(id).is_some_and(recent));
        for (id, f) in &self.followers {
            if !isr.contains(id)
                && f.leo >= hw
                && f.leo >= epoch_start
                && recent(f)
                && eligible(*id)
            {
                isr.push(*id);
            }
        }
        isr.sort_unstable();
        let mut old = self.role.isr.clone();
        old.sort_unstable();
        (isr != old).then_some(isr)
    }

    /// Whether this replica follows `leader` at `epoch` now: a follower acts
    /// on a fetch answer or truncates only then. Without the check, an
    /// answer from a deposed leader could land after the truncation for the
    /// new one and leave records the new leader does not have in an in-sync
    /// replica (Kafka's fetcher drops a response whose partition state
    /// changed while it was in flight).
    pub fn check_following(&self, leader: i32, epoch: i32) -> Result<(), Refusal> {
        if self.is_leader() {
            return Err(Refusal::NotLeader("this broker leads it now".into()));
        }
        check_epoch(self.role.leader_epoch, epoch)?;
        if self.role.leader != leader {
            return Err(Refusal::NotLeader(format!(
                "this replica follows {} now, not {leader}",
                self.role.leader
            )));
        }
        Ok(())
    }
}

/// KIP-320: a request at an older epoch is fenced; one at a newer epoch than
/// this node knows means its metadata is behind.
pub fn check_epoch(current: i32, asked: i32) -> Result<(), Refusal> {
    if asked < current {
        Err(Refusal::FencedLeaderEpoch { asked, current })
    } else if asked > current {
        Err(Refusal::UnknownLeaderEpoch { asked, current })
    } else {
        Ok(())
    }
}

/// What a follower's truncation of `[after, before)` cost, if anything,
/// when the records it cut were written at epochs up to `latest_epoch`.
/// Only an unclean election loses acknowledged records (a clean leader
/// holds everything committed), so a truncation is a loss only if an
/// election after those records' epoch was unclean; then every record cut
/// is reported: all were acknowledged if this replica was the last one in
/// the ISR (the usual way to lose them), and a follower's tail past what
/// was committed is reported with them. After clean elections alone, a cut
/// tail was never committed, whatever high watermark a restart guessed.
pub fn truncation_loss(
    last_unclean_epoch: i32,
    latest_epoch: Option<i32>,
    after: i64,
    before: i64,
) -> Option<(i64, i64)> {
    (after < before && last_unclean_epoch > latest_epoch.unwrap_or(-1)).then_some((after, before))
}

/// What a follower does with its leader's OffsetsForLeaderEpoch answer
/// (KIP-279): truncate to `offset`, and, unless `done`, ask again with the
/// latest epoch left after the truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub offset: i64,
    pub done: bool,
}

/// Where a follower's log stops agreeing with its leader's, from the
/// leader's answer `(leader_epoch, leader_end)` for the follower's latest
/// epoch: the largest epoch at or below it the leader has, and where that
/// epoch ends there. `local` is the follower's epoch cache (each epoch and
/// the offset it begins at, ascending), `end` its log end. Kafka's
/// `AbstractFetcherThread.getOffsetTruncationState`:
///
/// - The leader has no epoch at or below ours (`leader_end < 0`): nothing
///   we hold is known to it; everything goes.
/// - We hold the leader's epoch too: our records of it agree with the
///   leader's up to where the shorter of the two ends; cut there. Done.
/// - We never had the leader's epoch (KIP-101's gap, which KIP-279 closes):
///   our records past the end of our largest epoch below it were written by
///   a leader the current one never followed, so the leader's end offset
///   says nothing about them. Cut at the end of that epoch of ours, and ask
///   again for the epoch now latest.
/// - We have no epoch at or below the leader's: every record of ours below
///   the leader's end was written by another leader than the leader's
///   record there; cut where our first epoch begins (or at the leader's
///   end, if that is lower).
pub fn truncation(
    local: &[(i32, i64)],
    end: i64,
    leader_epoch: i32,
    leader_end: i64,
) -> Truncation {
    if leader_end < 0 || leader_epoch < 0 {
        return Truncation {
            offset: 0,
            done: true,
        };
    }
    let Some(i) = local.iter().rposition(|(e, _)| *e <= leader_epoch) else {
        // Every record we hold is of a later epoch than any the leader has
        // below `leader_end`: from where our first epoch begins, the same
        // offsets were written by different leaders. (Kafka cuts at the
        // leader's end here; keel-sim seed 2235 showed a follower keeping a
        // tail of its own epoch below it.)
        let first = local.first().map_or(end, |(_, start)| *start);
        return Truncation {
            offset: leader_end.min(first).min(end),
            done: true,
        };
    };
    let ours_end = local.get(i + 1).map_or(end, |(_, start)| *start);
    if local[i].0 == leader_epoch {
        Truncation {
            offset: leader_end.min(ours_end).min(end),
            done: true,
        }
    } else {
        Truncation {
            offset: ours_end.min(end),
            done: false,
        }
    }
}

#[cfg(test)]
mod tests;
