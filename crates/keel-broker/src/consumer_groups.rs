//! KIP-848's consumer group protocol ("consumer" groups, `group.protocol=consumer`
//! on the client) as a state machine, after Kafka 4's `GroupMetadataManager`
//! and `CurrentAssignmentBuilder`.
//!
//! The coordinator, not a member, computes the assignment. Each change of
//! membership or of the subscribed topics bumps the **group epoch**; the
//! assignor then computes a **target assignment** at that epoch. Each member
//! moves to the target on its own heartbeats, never stopping the others:
//!
//! ```text
//!             target epoch > member epoch
//!  Stable ──────────────────────────────────► computeNext
//!    ▲                                            │ owns partitions the target moved away?
//!    │ all taken                                  ├─ yes ─► UnrevokedPartitions (keeps its epoch;
//!    │                                            │          the heartbeat that no longer lists them
//!  UnreleasedPartitions ◄── some target          │          moves it on)
//!    (at the target epoch, partitions still  ◄───┘ no ──► target epoch, new partitions that
//!     owned by others come as they are freed)              no one else owns
//! ```
//!
//! A partition is given to a member only once no other member owns it (holds
//! it assigned or pending revocation), so no partition is ever consumed by two
//! members at once, and a member keeps every partition the target leaves it:
//! a join or a leave moves only the partitions that must move.
//!
//! It does no I/O and reads no clock: time comes in as `now`. The group is
//! stored whole (one snapshot record in `__consumer_offsets`, see
//! `group_records::ConsumerGroupValue`) after each change that matters to a
//! member: epochs, assignments, membership and subscriptions; session and
//! revocation timers are not stored and restart with the coordinator.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::{BrokerError, Result};

/// Partitions by topic id, as the protocol carries them.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// `member_epoch` of a member leaving the group.
pub const LEAVE_EPOCH: i32 = -1;
/// `member_epoch` of a static member leaving for now (it keeps its partitions
/// for the session timeout, to come back with the same `group.instance.id`).
pub const LEAVE_STATIC_EPOCH: i32 = -2;

/// The server-side assignors (Kafka's `group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Balanced and sticky: each member keeps what it had where balance allows.
    Uniform,
    /// Per topic, consecutive ranges of partitions over the members sorted by id.
    Range,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "uniform" => Some(Assignor::Uniform),
            "range" => Some(Assignor::Range),
            _ => None,
        }
    }
}

/// Limits and defaults of consumer groups, with Kafka's broker config names.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`
    pub max_size: usize,
    /// The first of `group.consumer.assignors`: used when a member names none.
    pub assignor: Assignor,
    /// The longest `subscribed_topic_regex` a member may send.
    pub regex_max_len: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: 1_000,
            assignor: Assignor::Uniform,
            regex_max_len: 1_000,
        }
    }
}

/// A topic as the assignor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub name: String,
    pub partitions: i32,
    pub internal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Must revoke partitions first; its heartbeat that no longer lists them moves it on.
    UnrevokedPartitions,
    /// At the target epoch, waiting for partitions other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    pub fn code(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }
    pub fn from_code(c: i8) -> Option<MemberState> {
        Some(match c {
            0 => MemberState::Stable,
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names, sorted.
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub assigned: Assignment,
    pub revoking: Assignment,
}

impl ConsumerMember {
    fn new(id: String) -> ConsumerMember {
        ConsumerMember {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: 300_000,
            topics: Vec::new(),
            regex: None,
            assignor: None,
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            revoking: Assignment::new(),
        }
    }

    fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.epoch {
            self.previous_epoch = self.epoch;
            self.epoch = epoch;
        }
    }
}

/// A ConsumerGroupHeartbeat request.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// -1: unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None`: unchanged.
    pub topics: Option<Vec<String>>,
    /// `None`: unchanged; `Some("")`: no regex any more.
    pub regex: Option<String>,
    pub assignor: Option<String>,
    /// The partitions the member owns now; `None`: unchanged since its last heartbeat.
    pub owned: Option<Assignment>,
    pub client_id: String,
    pub client_host: String,
    /// v1+ (KIP-1082): the client names itself; v0 lets the coordinator do it.
    pub client_generates_member_id: bool,
    /// The group's own `consumer.session.timeout.ms` and
    /// `consumer.heartbeat.interval.ms` (KIP-848's group configs, from the
    /// cluster metadata), in place of the coordinator's defaults.
    pub session_timeout_ms: Option<i32>,
    pub heartbeat_interval_ms: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// The member's whole assignment, when it changed or the member asked in full.
    pub assignment: Option<Assignment>,
}

/// Per-member timers, never stored.
#[derive(Debug, Clone, Copy)]
struct Timers {
    session_deadline_ms: i64,
    revoke_deadline_ms: Option<i64>,
}

/// The group states ConsumerGroupDescribe and ListGroups name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    Empty,
    Assigning,
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    pub epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: Option<Assignor>,
    pub members: BTreeMap<String, ConsumerMember>,
    /// The target assignment (at `assignment_epoch`), per member.
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics the target was computed from: name -> (id, partitions).
    pub subscribed: BTreeMap<String, (Uuid, i32)>,
    timers: HashMap<String, Timers>,
}

fn fenced_epoch(got: i32, known: i32) -> BrokerError {
    BrokerError::FencedMemberEpoch(format!(
        "member epoch {got} is not the coordinator's {known}: abandon all partitions and rejoin"
    ))
}

fn unknown_member(id: &str) -> BrokerError {
    BrokerError::UnknownMemberId(id.to_string())
}

/// Anchored (RE2J's `matches()`, a whole-name match) and bounded, as an
/// untrusted pattern must be.
pub fn compile_regex(pattern: &str, max_len: usize) -> Result<regex_lite::Regex> {
    if pattern.len() > max_len {
        return Err(BrokerError::InvalidRegularExpression(format!(
            "a subscription regex of {} bytes; at most {max_len}",
            pattern.len()
        )));
    }
    regex_lite::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| BrokerError::InvalidRegularExpression(format!("{pattern:?}: {e}")))
}

fn is_subset(owned: Option<&Assignment>, of: &Assignment) -> bool {
    let Some(owned) = owned else { return false };
    owned.iter().all(|(t, ps)| {
        ps.is_empty()
            || of
                .get(t)
                .is_some_and(|have| ps.iter().all(|p| have.contains(p)))
    })
}

/// Adds `(topic, partition)` to an assignment.
fn add(a: &mut Assignment, t: Uuid, p: i32) {
    a.entry(t).or_default().insert(p);
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| {
            m.epoch != LEAVE_STATIC_EPOCH
                && (m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        }) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    pub fn assignor_name(&self, default: Assignor) -> &'static str {
        self.assignor.unwrap_or(default).name()
    }

    /// Restarts the members' timers (after loading the group from its log).
    pub fn restart_timers(&mut self, cfg: &ConsumerGroupConfig, now: i64) {
        self.timers = self
            .members
            .values()
            .map(|m| {
                let t = Timers {
                    session_deadline_ms: now + i64::from(cfg.session_timeout_ms),
                    revoke_deadline_ms: (m.state == MemberState::UnrevokedPartitions)
                        .then(|| now + i64::from(m.rebalance_timeout_ms)),
                };
                (m.id.clone(), t)
            })
            .collect();
    }

    /// The topic ids `m` subscribes to, by name or by regex, among `topics`.
    fn member_topics(
        m: &ConsumerMember,
        topics: &[TopicMeta],
        regexes: &HashMap<String, regex_lite::Regex>,
    ) -> BTreeSet<Uuid> {
        let re = m.regex.as_ref().and_then(|r| regexes.get(r));
        topics
            .iter()
            .filter(|t| {
                m.topics.binary_search(&t.name).is_ok()
                    || (!t.internal && re.is_some_and(|re| re.is_match(&t.name)))
            })
            .map(|t| t.id)
            .collect()
    }

    fn compile_all(&self, cfg: &ConsumerGroupConfig) -> Result<HashMap<String, regex_lite::Regex>> {
        let mut out = HashMap::new();
        for m in self.members.values() {
            if let Some(r) = &m.regex {
                if !out.contains_key(r) {
                    out.insert(r.clone(), compile_regex(r, cfg.regex_max_len)?);
                }
            }
        }
        Ok(out)
    }

    /// The subscribed topics' metadata now; a change bumps the group epoch.
    fn subscription_metadata(
        &self,
        topics: &[TopicMeta],
        regexes: &HashMap<String, regex_lite::Regex>,
    ) -> BTreeMap<String, (Uuid, i32)> {
        let mut ids = BTreeSet::new();
        for m in self.members.values() {
            ids.extend(Self::member_topics(m, topics, regexes));
        }
        topics
            .iter()
            .filter(|t| ids.contains(&t.id))
            .map(|t| (t.name.clone(), (t.id, t.partitions)))
            .collect()
    }

    /// Recomputes the target assignment at the group epoch.
    fn assign(&mut self, cfg: &ConsumerGroupConfig, topics: &[TopicMeta]) -> Result<()> {
        let regexes = self.compile_all(cfg)?;
        let subs: BTreeMap<String, BTreeSet<Uuid>> = self
            .members
            .values()
            .map(|m| (m.id.clone(), Self::member_topics(m, topics, &regexes)))
            .collect();
        let counts: BTreeMap<Uuid, i32> = topics.iter().map(|t| (t.id, t.partitions)).collect();
        let assignor = self.assignor.unwrap_or(cfg.assignor);
        self.target = match assignor {
            Assignor::Uniform => uniform(&subs, &counts, &self.target),
            Assignor::Range => range(&subs, &counts),
        };
        self.assignment_epoch = self.epoch;
        Ok(())
    }

    /// Partitions owned (assigned or pending revocation) by members other than `me`.
    fn owned_by_others(&self, me: &str) -> BTreeSet<(Uuid, i32)> {
        let mut out = BTreeSet::new();
        for m in self.members.values().filter(|m| m.id != me) {
            for a in [&m.assigned, &m.revoking] {
                for (t, ps) in a {
                    out.extend(ps.iter().map(|p| (*t, *p)));
                }
            }
        }
        out
    }

    /// Kafka's `CurrentAssignmentBuilder`: moves member `id` towards its target
    /// as far as the other members' partitions and its own revocations allow.
    fn reconcile(&mut self, id: &str, owned: Option<&Assignment>) {
        let Some(m) = self.members.get(id) else {
            return;
        };
        if m.epoch == LEAVE_STATIC_EPOCH {
            return;
        }
        let epoch = match m.state {
            MemberState::Stable if m.epoch == self.assignment_epoch => return,
            MemberState::Stable | MemberState::UnreleasedPartitions => m.epoch,
            MemberState::UnrevokedPartitions => {
                // Revoked once its heartbeat no longer lists any of them.
                let Some(owned) = owned else { return };
                let still = owned.iter().any(|(t, ps)| {
                    m.revoking
                        .get(t)
                        .is_some_and(|r| ps.iter().any(|p| r.contains(p)))
                });
                if still {
                    return;
                }
                m.epoch
            }
        };
        let others = self.owned_by_others(id);
        let target = self.target.get(id).cloned().unwrap_or_default();
        let target_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id).expect("checked");
        let mut assigned = Assignment::new();
        let mut revoking = Assignment::new();
        let mut pending = Assignment::new();
        let mut unreleased = false;
        let mut ids: BTreeSet<Uuid> = target.keys().copied().collect();
        ids.extend(m.assigned.keys().copied());
        for t in ids {
            let want = target.get(&t).cloned().unwrap_or_default();
            let have = m.assigned.get(&t).cloned().unwrap_or_default();
            for p in &have {
                if want.contains(p) {
                    add(&mut assigned, t, *p);
                } else {
                    add(&mut revoking, t, *p);
                }
            }
            for p in want.difference(&have) {
                if others.contains(&(t, *p)) {
                    unreleased = true;
                } else {
                    add(&mut pending, t, *p);
                }
            }
        }
        if !revoking.is_empty() {
            m.state = MemberState::UnrevokedPartitions;
            m.set_epoch(epoch);
            m.assigned = assigned;
            m.revoking = revoking;
            return;
        }
        for (t, ps) in pending {
            assigned.entry(t).or_default().extend(ps);
        }
        m.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        m.set_epoch(target_epoch);
        m.assigned = assigned;
        m.revoking = Assignment::new();
    }

    fn remove_member(&mut self, id: &str) {
        self.members.remove(id);
        self.target.remove(id);
        self.timers.remove(id);
    }

    /// Recomputes the subscription metadata; true when it changed (which
    /// bumps the group epoch).
    fn refresh_subscriptions(
        &mut self,
        cfg: &ConsumerGroupConfig,
        topics: &[TopicMeta],
    ) -> Result<bool> {
        let regexes = self.compile_all(cfg)?;
        let now = self.subscription_metadata(topics, &regexes);
        let changed = now != self.subscribed;
        self.subscribed = now;
        Ok(changed)
    }

    /// One ConsumerGroupHeartbeat. Returns the response and whether the group's
    /// stored state changed.
    pub fn heartbeat(
        &mut self,
        req: Heartbeat,
        cfg: &ConsumerGroupConfig,
        topics: &[TopicMeta],
        now: i64,
    ) -> Result<(HeartbeatResponse, bool)> {
        let before_epoch = self.epoch;
        let before_target_epoch = self.assignment_epoch;
        let mut bump = false;
        if req.member_epoch == LEAVE_EPOCH || req.member_epoch == LEAVE_STATIC_EPOCH {
            return self.leave(req, cfg, topics, now);
        }
        if let Some(a) = &req.assignor {
            let a = Assignor::from_name(a).ok_or_else(|| {
                BrokerError::UnsupportedAssignor(format!(
                    "server assignor {a:?}; this coordinator has \"uniform\" and \"range\""
                ))
            })?;
            // As Kafka, the group uses the assignor its members name (the
            // latest here), else the broker's default.
            if self.assignor != Some(a) {
                self.assignor = Some(a);
                bump = true;
            }
        }
        if let Some(r) = req.regex.as_deref().filter(|r| !r.is_empty()) {
            compile_regex(r, cfg.regex_max_len)?;
        }
        let mut joined = false;
        let id = if req.member_epoch == 0 {
            self.join(&req, cfg, &mut joined)?
        } else {
            let m = self
                .members
                .get(&req.member_id)
                .ok_or_else(|| unknown_member(&req.member_id))?;
            if let Some(i) = &req.instance_id {
                if m.instance_id.as_ref() != Some(i) {
                    return Err(BrokerError::FencedInstanceId(format!(
                        "member {} is not the one holding group.instance.id {i:?}",
                        req.member_id
                    )));
                }
            }
            if req.member_epoch > m.epoch
                || (req.member_epoch < m.epoch
                    && (req.member_epoch != m.previous_epoch
                        || !is_subset(req.owned.as_ref(), &m.assigned)))
            {
                return Err(fenced_epoch(req.member_epoch, m.epoch));
            }
            req.member_id.clone()
        };
        let old = self.members.get(&id).cloned();
        {
            let m = self.members.get_mut(&id).expect("present");
            if req.rack_id.is_some() {
                m.rack_id = req.rack_id.clone();
            }
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            if req.rebalance_timeout_ms > 0 {
                m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            }
            let mut subscription_changed = false;
            if let Some(names) = &req.topics {
                let mut names = names.clone();
                names.sort();
                names.dedup();
                if names != m.topics {
                    m.topics = names;
                    subscription_changed = true;
                }
            }
            if let Some(r) = &req.regex {
                let r = (!r.is_empty()).then(|| r.clone());
                if r != m.regex {
                    m.regex = r;
                    subscription_changed = true;
                }
            }
            if req.assignor.is_some() {
                m.assignor = req.assignor.clone();
            }
            bump |= joined || subscription_changed;
        }
        bump |= self.refresh_subscriptions(cfg, topics)?;
        if bump {
            self.epoch += 1;
        }
        if self.epoch > self.assignment_epoch {
            self.assign(cfg, topics)?;
        }
        self.reconcile(&id, req.owned.as_ref());
        let m = &self.members[&id];
        let revoke_deadline_ms = (m.state == MemberState::UnrevokedPartitions).then(|| {
            self.timers
                .get(&id)
                .and_then(|t| t.revoke_deadline_ms)
                .unwrap_or(now + i64::from(m.rebalance_timeout_ms))
        });
        self.timers.insert(
            id.clone(),
            Timers {
                session_deadline_ms: now + i64::from(cfg.session_timeout_ms),
                revoke_deadline_ms,
            },
        );
        let full = req.member_epoch == 0
            || (req.rebalance_timeout_ms > 0 && req.topics.is_some() && req.owned.is_some());
        let assignment_changed = old
            .as_ref()
            .is_none_or(|o| o.assigned != m.assigned || o.epoch != m.epoch);
        let differs_from_owned = req.owned.as_ref().is_some_and(|o| {
            let o: Assignment = o
                .iter()
                .filter(|(_, ps)| !ps.is_empty())
                .map(|(t, ps)| (*t, ps.clone()))
                .collect();
            o != m.assigned
        });
        let resp = HeartbeatResponse {
            member_id: id.clone(),
            member_epoch: m.epoch,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            assignment: (full || assignment_changed || differs_from_owned)
                .then(|| m.assigned.clone()),
        };
        let changed = old.as_ref() != Some(m)
            || self.epoch != before_epoch
            || self.assignment_epoch != before_target_epoch;
        Ok((resp, changed))
    }

    /// A member at epoch 0: new, a static member coming back, or a member
    /// rejoining after it lost its partitions.
    fn join(
        &mut self,
        req: &Heartbeat,
        cfg: &ConsumerGroupConfig,
        joined: &mut bool,
    ) -> Result<String> {
        let id = if req.member_id.is_empty() {
            if req.client_generates_member_id {
                return Err(BrokerError::InvalidRequest(
                    "the member id is empty: a client of this version names itself".into(),
                ));
            }
            Uuid::new_v4().simple().to_string()
        } else {
            req.member_id.clone()
        };
        if let Some(instance) = &req.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .map(|m| (m.id.clone(), m.epoch));
            if let Some((old_id, old_epoch)) = holder {
                if old_id != id {
                    if old_epoch != LEAVE_STATIC_EPOCH {
                        return Err(BrokerError::UnreleasedInstanceId(format!(
                            "group.instance.id {instance:?} is held by member {old_id}; it must leave first"
                        )));
                    }
                    // KIP-848: the returning static member takes over its
                    // predecessor's partitions and target, with no new epoch.
                    let mut m = self.members.remove(&old_id).expect("found");
                    self.timers.remove(&old_id);
                    if let Some(t) = self.target.remove(&old_id) {
                        self.target.insert(id.clone(), t);
                    }
                    m.id = id.clone();
                    m.epoch = m.previous_epoch.max(0);
                    self.members.insert(id.clone(), m);
                    return Ok(id);
                }
            }
        }
        match self.members.get_mut(&id) {
            Some(m) => {
                // Rejoining at epoch 0, it owns nothing any more.
                m.assigned.clear();
                m.revoking.clear();
                m.state = MemberState::Stable;
                m.set_epoch(0);
            }
            None => {
                if self.members.len() >= cfg.max_size {
                    return Err(BrokerError::GroupMaxSizeReached(format!(
                        "the group has reached group.consumer.max.size {}",
                        cfg.max_size
                    )));
                }
                let mut m = ConsumerMember::new(id.clone());
                m.instance_id = req.instance_id.clone();
                self.members.insert(id.clone(), m);
                *joined = true;
            }
        }
        Ok(id)
    }

    fn leave(
        &mut self,
        req: Heartbeat,
        cfg: &ConsumerGroupConfig,
        topics: &[TopicMeta],
        now: i64,
    ) -> Result<(HeartbeatResponse, bool)> {
        let _ = now;
        let id = match (&req.instance_id, req.member_epoch) {
            (Some(i), LEAVE_STATIC_EPOCH) => self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(i))
                .map(|m| m.id.clone())
                .ok_or_else(|| {
                    BrokerError::UnknownMemberId(format!("no member holds group.instance.id {i:?}"))
                })?,
            _ => req.member_id.clone(),
        };
        if !self.members.contains_key(&id) {
            return Err(unknown_member(&id));
        }
        if req.member_epoch == LEAVE_STATIC_EPOCH {
            let m = self.members.get_mut(&id).expect("checked");
            if m.id != req.member_id {
                return Err(BrokerError::FencedInstanceId(format!(
                    "member {} does not hold the instance id of {}",
                    req.member_id, m.id
                )));
            }
            m.set_epoch(LEAVE_STATIC_EPOCH);
        } else {
            self.remove_member(&id);
            self.refresh_subscriptions(cfg, topics)?;
            self.epoch += 1;
            self.assign(cfg, topics)?;
        }
        let resp = HeartbeatResponse {
            member_id: id,
            member_epoch: req.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        Ok((resp, true))
    }

    /// Session timeouts and revocations not acknowledged within the member's
    /// rebalance timeout: such members are removed (fenced). Returns whether
    /// the group changed.
    pub fn tick(&mut self, cfg: &ConsumerGroupConfig, topics: &[TopicMeta], now: i64) -> bool {
        let expired: Vec<String> = self
            .timers
            .iter()
            .filter(|(_, t)| {
                t.session_deadline_ms <= now || t.revoke_deadline_ms.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if expired.is_empty() {
            return false;
        }
        for id in &expired {
            tracing::info!(member = %id, "consumer group member removed: session or revocation timed out");
            self.remove_member(id);
        }
        self.epoch += 1;
        // A regex that does not compile cannot appear here: each was checked
        // when its member sent it.
        let _ = self
            .refresh_subscriptions(cfg, topics)
            .and_then(|_| self.assign(cfg, topics));
        true
    }

    /// OffsetCommit's check for a consumer group (Kafka's
    /// `ConsumerGroup.validateOffsetCommit`): a commit names a member at its
    /// current epoch, or comes from outside the group while it has no members.
    pub fn check_commit(&self, member_id: &str, epoch: i32) -> Result<()> {
        if epoch < 0 && member_id.is_empty() && self.members.is_empty() {
            return Ok(());
        }
        self.check_fetch(member_id, epoch)
    }

    /// OffsetFetch v9+'s check when it names a member: it exists, at `epoch`.
    pub fn check_fetch(&self, member_id: &str, epoch: i32) -> Result<()> {
        let m = self
            .members
            .get(member_id)
            .ok_or_else(|| unknown_member(member_id))?;
        if epoch != m.epoch {
            return Err(BrokerError::StaleMemberEpoch(format!(
                "member epoch {epoch} is not the member's current epoch {}",
                m.epoch
            )));
        }
        Ok(())
    }

    /// The subscribed topics as the assignor last saw them (for the timers,
    /// which remove members without a fresh view of the cluster's topics).
    pub fn subscribed_topics(&self) -> Vec<TopicMeta> {
        self.subscribed
            .iter()
            .map(|(name, (id, partitions))| TopicMeta {
                id: *id,
                name: name.clone(),
                partitions: *partitions,
                internal: crate::is_internal(name),
            })
            .collect()
    }

    /// The topics some member subscribes to (for OffsetDelete).
    pub fn subscribed_topic_names(&self) -> Vec<String> {
        self.subscribed.keys().cloned().collect()
    }
}

/// All partitions of the topics in `subs`, in a fixed order.
fn all_partitions(
    subs: &BTreeMap<String, BTreeSet<Uuid>>,
    counts: &BTreeMap<Uuid, i32>,
) -> Vec<(Uuid, i32)> {
    let topics: BTreeSet<Uuid> = subs.values().flatten().copied().collect();
    topics
        .into_iter()
        .flat_map(|t| (0..counts.get(&t).copied().unwrap_or(0).max(0)).map(move |p| (t, p)))
        .collect()
}

/// The uniform assignor: sticky and balanced. Each member keeps the partitions
/// of its previous target it still subscribes to; the rest go to the
/// subscribed member with the fewest; then partitions move from a member to a
/// subscribed one holding at least two fewer, until none can. With one
/// subscription for all, counts differ by at most one, and a join or leave
/// moves only what balance needs.
pub fn uniform(
    subs: &BTreeMap<String, BTreeSet<Uuid>>,
    counts: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let mut load: BTreeMap<String, usize> = subs.keys().map(|m| (m.clone(), 0)).collect();
    for (m, a) in previous {
        let Some(topics) = subs.get(m) else { continue };
        for (t, ps) in a {
            if !topics.contains(t) {
                continue;
            }
            let n = counts.get(t).copied().unwrap_or(0);
            for p in ps.iter().filter(|p| **p < n) {
                if owner.insert((*t, *p), m.clone()).is_none() {
                    *load.get_mut(m).expect("subscribed") += 1;
                }
            }
        }
    }
    let candidates = |t: &Uuid| -> Vec<&String> {
        subs.iter()
            .filter(|(_, ts)| ts.contains(t))
            .map(|(m, _)| m)
            .collect()
    };
    let mut by_topic: HashMap<Uuid, Vec<&String>> = HashMap::new();
    let partitions = all_partitions(subs, counts);
    for tp in &partitions {
        if owner.contains_key(tp) {
            continue;
        }
        let cands = by_topic.entry(tp.0).or_insert_with(|| candidates(&tp.0));
        if let Some(best) = cands.iter().min_by_key(|m| (load[**m], (**m).clone())) {
            let best = (*best).clone();
            *load.get_mut(&best).expect("subscribed") += 1;
            owner.insert(*tp, best);
        }
    }
    // Balance: the most loaded member gives one partition to the least loaded
    // member subscribed to it, while that lowers the spread. With one
    // subscription for all, a member only gives or only takes, so nothing
    // moves twice; every move lowers the sum of squared loads, so this ends.
    let mut held: BTreeMap<String, BTreeSet<(Uuid, i32)>> =
        subs.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (tp, m) in &owner {
        held.get_mut(m).expect("subscribed").insert(*tp);
    }
    loop {
        let mut givers: Vec<&String> = subs.keys().collect();
        givers.sort_by_key(|m| (std::cmp::Reverse(load[*m]), (*m).clone()));
        let mut step = None;
        'find: for from in givers {
            for tp in &held[from] {
                let cands = by_topic.entry(tp.0).or_insert_with(|| candidates(&tp.0));
                if let Some(to) = cands.iter().min_by_key(|m| (load[**m], (**m).clone())) {
                    if load[*to] + 1 < load[from] {
                        step = Some((from.clone(), (*to).clone(), *tp));
                        break 'find;
                    }
                }
            }
        }
        let Some((from, to, tp)) = step else { break };
        *load.get_mut(&from).expect("giver") -= 1;
        *load.get_mut(&to).expect("taker") += 1;
        held.get_mut(&from).expect("giver").remove(&tp);
        held.get_mut(&to).expect("taker").insert(tp);
        owner.insert(tp, to);
    }
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for ((t, p), m) in owner {
        add(out.get_mut(&m).expect("member"), t, p);
    }
    out
}

/// The range assignor: per topic, its subscribers sorted by member id take
/// consecutive ranges, the first ones one partition more when it does not divide.
pub fn range(
    subs: &BTreeMap<String, BTreeSet<Uuid>>,
    counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let topics: BTreeSet<Uuid> = subs.values().flatten().copied().collect();
    for t in topics {
        let members: Vec<&String> = subs
            .iter()
            .filter(|(_, ts)| ts.contains(&t))
            .map(|(m, _)| m)
            .collect();
        let n = counts.get(&t).copied().unwrap_or(0).max(0) as usize;
        let (each, extra) = (n / members.len(), n % members.len());
        let mut next = 0usize;
        for (i, m) in members.iter().enumerate() {
            let take = each + usize::from(i < extra);
            for p in next..next + take {
                add(out.get_mut(*m).expect("member"), t, p as i32);
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u8, name: &str, partitions: i32) -> TopicMeta {
        TopicMeta {
            id: Uuid::from_bytes([n; 16]),
            name: name.into(),
            partitions,
            internal: false,
        }
    }

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            group_id: "g".into(),
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 60_000,
            topics: Some(topics.iter().map(|t| t.to_string()).collect()),
            owned: Some(Assignment::new()),
            client_generates_member_id: true,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            ..Heartbeat::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &Assignment) -> Heartbeat {
        Heartbeat {
            group_id: "g".into(),
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(owned.clone()),
            client_generates_member_id: true,
            session_timeout_ms: None,
            heartbeat_interval_ms: None,
            ..Heartbeat::default()
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    /// What each member owns, as its client would after applying the answers.
    struct Clients(BTreeMap<String, (i32, Assignment)>);

    impl Clients {
        fn heartbeat(&mut self, g: &mut ConsumerGroup, id: &str, topics: &[TopicMeta], now: i64) {
            let (epoch, owned) = self.0.get(id).cloned().expect("client");
            let cfg = ConsumerGroupConfig::default();
            let (r, _) = g
                .heartbeat(beat(id, epoch, &owned), &cfg, topics, now)
                .unwrap();
            let owned = r.assignment.unwrap_or(owned);
            self.0.insert(id.into(), (r.member_epoch, owned));
        }
        /// No partition is owned by two clients at once.
        fn check_exclusive(&self) {
            let mut seen = BTreeSet::new();
            for (_, a) in self.0.values() {
                for (t, ps) in a {
                    for p in ps {
                        assert!(seen.insert((*t, *p)), "{t}-{p} owned twice: {:?}", self.0);
                    }
                }
            }
        }
    }

    #[test]
    fn members_join_and_leave_moving_only_what_must_move_and_never_sharing_a_partition() {
        let topics = [topic(1, "t", 12)];
        let cfg = ConsumerGroupConfig::default();
        let mut g = ConsumerGroup::new();
        let mut c = Clients(BTreeMap::new());
        let (r, changed) = g.heartbeat(join("a", &["t"]), &cfg, &topics, 0).unwrap();
        assert!(changed);
        assert_eq!(r.member_epoch, 1);
        assert_eq!(count(r.assignment.as_ref().unwrap()), 12);
        c.0.insert("a".into(), (r.member_epoch, r.assignment.unwrap()));

        // b joins: a must first give up half; b gets them only once a revoked.
        let (r, _) = g.heartbeat(join("b", &["t"]), &cfg, &topics, 1).unwrap();
        assert_eq!(r.member_epoch, 2);
        assert_eq!(
            count(r.assignment.as_ref().unwrap()),
            0,
            "a still owns them"
        );
        c.0.insert("b".into(), (r.member_epoch, r.assignment.unwrap()));
        c.check_exclusive();
        let a_before = c.0["a"].1.clone();
        c.heartbeat(&mut g, "a", &topics, 2); // told to revoke
        c.check_exclusive();
        assert_eq!(count(&c.0["a"].1), 6);
        assert!(
            is_subset(Some(&c.0["a"].1), &a_before),
            "a kept part of its own"
        );
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        c.heartbeat(&mut g, "a", &topics, 3); // acknowledges the revocation
        assert_eq!(c.0["a"].0, 2);
        c.heartbeat(&mut g, "b", &topics, 4);
        c.check_exclusive();
        assert_eq!(count(&c.0["b"].1), 6);
        assert_eq!(g.state(), ConsumerGroupState::Stable);

        // c joins: a and b each give up two; nothing else moves.
        let (r, _) = g.heartbeat(join("c", &["t"]), &cfg, &topics, 5).unwrap();
        c.0.insert("c".into(), (r.member_epoch, r.assignment.unwrap()));
        let (a0, b0) = (c.0["a"].1.clone(), c.0["b"].1.clone());
        for now in 6..12 {
            for m in ["a", "b", "c"] {
                c.heartbeat(&mut g, m, &topics, now);
                c.check_exclusive();
            }
        }
        assert_eq!(g.state(), ConsumerGroupState::Stable);
        for m in ["a", "b", "c"] {
            assert_eq!(count(&c.0[m].1), 4, "{m}");
        }
        assert!(is_subset(Some(&c.0["a"].1), &a0));
        assert!(is_subset(Some(&c.0["b"].1), &b0));

        // b leaves: its four are shared by a and c, who keep theirs.
        let (a1, c1) = (c.0["a"].1.clone(), c.0["c"].1.clone());
        let leave = Heartbeat {
            member_epoch: LEAVE_EPOCH,
            ..beat("b", 0, &Assignment::new())
        };
        let (r, _) = g.heartbeat(leave, &cfg, &topics, 20).unwrap();
        assert_eq!(r.member_epoch, LEAVE_EPOCH);
        c.0.remove("b");
        for now in 21..24 {
            for m in ["a", "c"] {
                c.heartbeat(&mut g, m, &topics, now);
                c.check_exclusive();
            }
        }
        assert_eq!(count(&c.0["a"].1), 6);
        assert_eq!(count(&c.0["c"].1), 6);
        assert!(is_subset(Some(&a1), &c.0["a"].1));
        assert!(is_subset(Some(&c1), &c.0["c"].1));
    }

    #[test]
    fn stale_and_future_epochs_are_fenced_and_a_lost_response_is_forgiven() {
        let topics = [topic(1, "t", 4)];
        let cfg = ConsumerGroupConfig::default();
        let mut g = ConsumerGroup::new();
        let (r, _) = g.heartbeat(join("a", &["t"]), &cfg, &topics, 0).unwrap();
        let owned = r.assignment.unwrap();
        let e = g.heartbeat(beat("a", 5, &owned), &cfg, &topics, 1);
        assert!(matches!(e, Err(BrokerError::FencedMemberEpoch(_))), "{e:?}");
        let e = g.heartbeat(beat("nobody", 1, &owned), &cfg, &topics, 1);
        assert!(matches!(e, Err(BrokerError::UnknownMemberId(_))), "{e:?}");
        // b joins and a moves to epoch 2 keeping 2 partitions; a's response is
        // lost, so it comes again with epoch 1 and the partitions it kept.
        g.heartbeat(join("b", &["t"]), &cfg, &topics, 2).unwrap();
        let (r, _) = g.heartbeat(beat("a", 1, &owned), &cfg, &topics, 3).unwrap();
        let kept = r.assignment.unwrap();
        assert_eq!(count(&kept), 2);
        let (r, _) = g.heartbeat(beat("a", 1, &kept), &cfg, &topics, 4).unwrap();
        assert_eq!(r.member_epoch, 2);
        // ... but not with partitions it no longer holds.
        let e = g.heartbeat(beat("a", 1, &owned), &cfg, &topics, 5);
        assert!(matches!(e, Err(BrokerError::FencedMemberEpoch(_))), "{e:?}");
    }

    #[test]
    fn sessions_and_unacknowledged_revocations_expire() {
        let topics = [topic(1, "t", 4)];
        let cfg = ConsumerGroupConfig {
            session_timeout_ms: 1_000,
            ..ConsumerGroupConfig::default()
        };
        let mut g = ConsumerGroup::new();
        let mut j = join("a", &["t"]);
        j.rebalance_timeout_ms = 500;
        g.heartbeat(j, &cfg, &topics, 0).unwrap();
        g.heartbeat(join("b", &["t"]), &cfg, &topics, 100).unwrap();
        // a is asked to revoke at 200 and never acknowledges.
        let all = g.members["a"].assigned.clone();
        g.heartbeat(beat("a", 1, &all), &cfg, &topics, 200).unwrap();
        assert_eq!(g.members["a"].state, MemberState::UnrevokedPartitions);
        g.heartbeat(beat("a", 1, &all), &cfg, &topics, 600).unwrap();
        assert!(!g.tick(&cfg, &topics, 699));
        assert!(g.tick(&cfg, &topics, 700), "revocation timeout");
        assert!(!g.members.contains_key("a"));
        assert_eq!(count(&g.target["b"]), 4);
        assert!(g.tick(&cfg, &topics, 1_100), "b's session");
        assert!(g.is_empty());
    }

    #[test]
    fn a_static_member_comes_back_to_its_partitions_without_a_new_epoch() {
        let topics = [topic(1, "t", 4)];
        let cfg = ConsumerGroupConfig::default();
        let mut g = ConsumerGroup::new();
        let mut j = join("a1", &["t"]);
        j.instance_id = Some("i".into());
        let (r, _) = g.heartbeat(j.clone(), &cfg, &topics, 0).unwrap();
        let first = r.assignment.unwrap();
        g.heartbeat(join("b", &["t"]), &cfg, &topics, 1).unwrap();
        let mut c = Clients(BTreeMap::new());
        c.0.insert("a1".into(), (1, first));
        c.0.insert("b".into(), (2, Assignment::new()));
        for now in 2..6 {
            c.heartbeat(&mut g, "a1", &topics, now);
            c.heartbeat(&mut g, "b", &topics, now);
        }
        let epoch = g.epoch;
        let held = g.members["a1"].assigned.clone();
        let mut leave = beat("a1", LEAVE_STATIC_EPOCH, &held);
        leave.instance_id = Some("i".into());
        g.heartbeat(leave, &cfg, &topics, 10).unwrap();
        // The same instance under a new member id gets the same partitions.
        let mut back = join("a2", &["t"]);
        back.instance_id = Some("i".into());
        let before = g.epoch;
        let (r, _) = g.heartbeat(back, &cfg, &topics, 12).unwrap();
        assert_eq!(
            g.epoch, before,
            "no new group epoch for a returning static member"
        );
        assert_eq!(epoch, before, "nor for its leaving");
        assert!(!g.members.contains_key("a1"));
        assert!(is_subset(r.assignment.as_ref(), &held));
        assert!(is_subset(Some(&held), r.assignment.as_ref().unwrap()));
        // Another member may not take the id while it is held.
        let mut dup = join("a4", &["t"]);
        dup.instance_id = Some("i".into());
        let e = g.heartbeat(dup, &cfg, &topics, 13);
        assert!(
            matches!(e, Err(BrokerError::UnreleasedInstanceId(_))),
            "{e:?}"
        );
    }

    #[test]
    fn a_regex_subscription_picks_up_a_topic_created_later() {
        let mut topics = vec![topic(1, "orders-eu", 2), topic(2, "payments", 2)];
        let cfg = ConsumerGroupConfig::default();
        let mut g = ConsumerGroup::new();
        let mut j = join("a", &[]);
        j.topics = None;
        j.regex = Some("orders-.*".into());
        let (r, _) = g.heartbeat(j, &cfg, &topics, 0).unwrap();
        let a = r.assignment.unwrap();
        assert_eq!(a.keys().copied().collect::<Vec<_>>(), vec![topics[0].id]);
        topics.push(topic(3, "orders-us", 3));
        let (r, changed) = g.heartbeat(beat("a", 1, &a), &cfg, &topics, 1).unwrap();
        assert!(changed);
        assert_eq!(r.member_epoch, 2);
        assert_eq!(count(&r.assignment.unwrap()), 5);
        let mut bad = join("b", &[]);
        bad.regex = Some("(unclosed".into());
        let e = g.heartbeat(bad, &cfg, &topics, 2);
        assert!(
            matches!(e, Err(BrokerError::InvalidRegularExpression(_))),
            "{e:?}"
        );
    }

    #[test]
    fn the_uniform_assignor_balances_unequal_subscriptions() {
        let (t1, t2) = (Uuid::from_bytes([1; 16]), Uuid::from_bytes([2; 16]));
        let counts = BTreeMap::from([(t1, 6), (t2, 2)]);
        let subs = BTreeMap::from([
            ("a".to_string(), BTreeSet::from([t1])),
            ("b".to_string(), BTreeSet::from([t1, t2])),
            ("c".to_string(), BTreeSet::from([t2])),
        ]);
        let out = uniform(&subs, &counts, &BTreeMap::new());
        let loads: Vec<usize> = out.values().map(count).collect();
        assert_eq!(loads.iter().sum::<usize>(), 8);
        assert!(
            loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 2,
            "{out:?}"
        );
        assert!(out["a"].keys().all(|t| *t == t1) && out["c"].keys().all(|t| *t == t2));
        let r = range(&subs, &counts);
        assert_eq!(count(&r["a"]), 3);
        assert_eq!(count(&r["b"]), 4);
        assert_eq!(count(&r["c"]), 1);
    }
}
