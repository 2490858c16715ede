//! The cluster metadata's moving parts on each member: registering this node
//! in the one node registry, and the controller's liveness duty.
//!
//! The records and their rules are `keel-meta`'s; they are applied by the
//! [`Store`](crate::store::Store) beside the etcd state, in the same Raft log.
//! The controller is the Raft leader (as KRaft's active controller is the
//! metadata quorum's leader). Liveness: every node is a Raft member, so the
//! leader hears from each one every heartbeat tick; a node it has not heard
//! from for the session timeout (Kafka's `broker.session.timeout.ms`, 9 s) is
//! fenced by a proposed `FenceNode`, and unfenced when it is heard again. Only
//! those decisions are records, never the heartbeats themselves. A new leader
//! gives every node a full session first, as etcd's lessor renews every lease
//! after an election (and KRaft's new controller every broker's session).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_meta::{duties, record::Kind, Applied, MetaError, NodeEpoch, Record, RegisterNode};
use tokio::sync::watch;

use crate::server::EtcdServer;

/// Kafka's broker.session.timeout.ms default.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(9);
/// How often the controller looks at liveness: one Raft tick, so a node is
/// fenced within a tick of its session running out (KRaft schedules the
/// fencing at the deadline itself).
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// How often it looks for partitions to elect (unclean, preferred).
const ELECT_EVERY: Duration = Duration::from_millis(500);
/// A gap this long between two checks means this process did not run.
const STALLED: Duration = Duration::from_secs(2);

/// The controller's timings.
#[derive(Debug, Clone, Copy)]
pub struct Duties {
    /// Fence a node not heard from for this long (broker.session.timeout.ms).
    pub session_timeout: Duration,
    /// How often preferred leaders are given their partitions back (Kafka's
    /// leader.imbalance.check.interval.seconds, with auto.leader.rebalance.enable).
    pub rebalance_every: Duration,
}

/// What this node registers: its id, where Kafka clients reach it, its rack.
#[derive(Debug, Clone)]
pub struct Registration {
    pub node_id: i32,
    pub kafka_host: String,
    pub kafka_port: i32,
    pub rack: String,
    /// This node's own Kafka cluster id, used if it is the first to register.
    pub cluster_id: String,
    /// Where CQL clients reach it (empty, 0: no CQL listener).
    pub cql_host: String,
    pub cql_port: i32,
    /// The tables face's datacenter and tokens to take on first joining.
    pub datacenter: String,
    pub num_tokens: u32,
}

/// This node's part in the cluster metadata, for as long as it runs.
#[derive(Clone)]
pub struct Membership {
    server: EtcdServer,
    me: RegisterNode,
}

impl Membership {
    pub fn new(server: EtcdServer, reg: Registration) -> Membership {
        let mut b = [0u8; 8];
        // A new incarnation per process start (Kafka's incarnation id): a
        // restart is told apart from a retried registration.
        getrandom::fill(&mut b).expect("operating system randomness");
        Membership {
            server,
            me: RegisterNode {
                node_id: reg.node_id,
                incarnation: u64::from_le_bytes(b),
                kafka_host: reg.kafka_host,
                kafka_port: reg.kafka_port,
                rack: reg.rack,
                cluster_id: reg.cluster_id,
                cql_host: reg.cql_host,
                cql_port: reg.cql_port,
                datacenter: reg.datacenter,
                num_tokens: reg.num_tokens,
            },
        }
    }

    pub fn node_id(&self) -> i32 {
        self.me.node_id
    }

    /// This process's incarnation (a new one per start).
    pub fn incarnation(&self) -> u64 {
        self.me.incarnation
    }

    /// Resolves once the image holds this node's registration (this
    /// incarnation's, not one left by an earlier run).
    pub async fn registered(&self) {
        let mut image = self.watch();
        let (id, inc) = (self.me.node_id, self.me.incarnation);
        let _ = image.wait_for(|i| i.holds_registration(id, inc)).await;
    }

    /// The metadata image, after each change.
    pub fn watch(&self) -> watch::Receiver<Arc<keel_meta::Image>> {
        self.server.watch_metadata()
    }

    /// Registers this node once it has caught up with the log (so it serves
    /// the metadata of now), then acts as the controller whenever it leads.
    pub async fn run(self, duties: Duties, mut stop: watch::Receiver<bool>) {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = self.register() => {}
        }
        self.control(duties, stop).await;
    }

    async fn register(&self) {
        let mut status = self.server.node().watch_status();
        loop {
            if status.borrow().leader != 0 && self.server.node().read_barrier().await.is_ok() {
                let rec = Record::new(Kind::RegisterNode(self.me.clone()));
                match self.server.propose_metadata(&rec).await {
                    Ok(Ok(Applied::Registered { node_id, epoch })) => {
                        tracing::info!("registered as node {node_id}, epoch {epoch}");
                        return;
                    }
                    Ok(Err(e)) => {
                        // A bad address cannot get better by retrying.
                        tracing::error!("registering node {}: {e}", self.me.node_id);
                        return;
                    }
                    Ok(Ok(other)) => tracing::warn!("registering: unexpected {other:?}"),
                    Err(e) => tracing::debug!("registering: {e}; retrying"),
                }
            }
            tokio::select! {
                _ = status.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// The controller's liveness duty, run on every node and acting only on the leader.
    async fn control(&self, duties: Duties, mut stop: watch::Receiver<bool>) {
        let session_timeout = duties.session_timeout;
        let mut last_rebalance = Instant::now();
        let node = self.server.node().clone();
        let me = u64::try_from(self.me.node_id).unwrap_or(0);
        let mut led_since: Option<(u64, Instant)> = None;
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_tick = Instant::now();
        let mut last_elect = Instant::now();
        let t0 = Instant::now();
        // The applied image, as published after each metadata change: read
        // without the store's lock, which the apply thread holds for a whole
        // entry (a range delete of 150 000 keys holds it for seconds; the
        // controller must go on fencing meanwhile, test_stall.py).
        let images = self.watch();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
            }
            let status = node.status();
            let now = Instant::now();
            // This process did not run for a while (SIGSTOP, a stalled host):
            // what it last heard is old news, not silence. Like a new
            // controller, it gives every node a full session from now.
            let stalled = now.duration_since(last_tick) > STALLED;
            last_tick = now;
            if status.leader != me {
                led_since = None;
                continue;
            }
            let since = match led_since {
                Some((term, at)) if term == status.term && !stalled => at,
                _ => {
                    led_since = Some((status.term, now));
                    now
                }
            };
            let heard = node.last_heard();
            let image = images.borrow().clone();
            // keel-meta's decisions take milliseconds on one monotonic scale.
            let ms = |i: Instant| i.saturating_duration_since(t0).as_millis() as i64;
            let last_heard = |id: i32| {
                let id = u64::try_from(id).unwrap_or(0);
                if id == me {
                    Some(ms(now))
                } else {
                    heard.get(&id).map(|i| ms(*i))
                }
            };
            let session = session_timeout.as_millis() as i64;
            for (id, fence, rec) in
                duties::liveness_records(&image, last_heard, ms(since), ms(now), session)
            {
                match self.server.propose_metadata(&rec).await {
                    Ok(Ok(a)) => tracing::warn!(
                        "controller: node {id} {} ({a:?})",
                        if fence {
                            "fenced: silent past the session timeout"
                        } else {
                            "unfenced: heard again"
                        }
                    ),
                    Ok(Err(e)) => tracing::debug!("controller: node {id}: {e}"),
                    Err(e) => tracing::debug!("controller: node {id}: {e}"),
                }
            }
            if now.duration_since(last_elect) < ELECT_EVERY {
                continue;
            }
            last_elect = now;
            // Elections decide on the image of now, with the fencing above applied.
            let image = images.borrow().clone();
            self.elect_unclean(&image).await;
            if now.duration_since(last_rebalance) >= duties.rebalance_every {
                last_rebalance = now;
                self.elect_preferred(&image).await;
            }
        }
    }

    /// Unclean leader election, the explicit availability-over-consistency
    /// switch: a partition with no leader (every in-sync replica fenced) whose
    /// topic sets `unclean.leader.election.enable=true` is given to a live
    /// replica outside the ISR. Records the old ISR had committed and this
    /// replica lacks are lost; the replicas that return report exactly which
    /// (`ReportLoss`). Without the setting the partition stays offline.
    async fn elect_unclean(&self, image: &keel_meta::Image) {
        for e in duties::unclean_elections(image) {
            let (name, i) = (&e.topic, e.partition);
            match self.server.propose_metadata(&e.record).await {
                Ok(Ok(_)) => tracing::error!(
                    topic = %name,
                    partition = i,
                    leader = e.to,
                    isr = ?e.isr,
                    "controller: UNCLEAN leader election: every in-sync replica is down; \
                     records only they held are lost if they return"
                ),
                Ok(Err(err)) => {
                    tracing::debug!("controller: unclean election of {name}-{i}: {err}")
                }
                Err(err) => tracing::debug!("controller: unclean election of {name}-{i}: {err}"),
            }
        }
    }

    /// Auto leader rebalance: a partition led by another replica than its
    /// preferred one (the first), while the preferred one is live and in the
    /// ISR, is handed back to it (a clean election: it holds every committed
    /// record), so leadership spreads as placement intended after a broker
    /// returns.
    async fn elect_preferred(&self, image: &keel_meta::Image) {
        for e in duties::preferred_elections(image) {
            let (name, i) = (&e.topic, e.partition);
            match self.server.propose_metadata(&e.record).await {
                Ok(Ok(_)) => tracing::info!(
                    topic = %name,
                    partition = i,
                    from = e.from,
                    to = e.to,
                    "controller: preferred leader elected"
                ),
                Ok(Err(err)) => {
                    tracing::debug!("controller: preferred leader of {name}-{i}: {err}")
                }
                Err(err) => tracing::debug!("controller: preferred leader of {name}-{i}: {err}"),
            }
        }
    }

    /// Fences this node as it stops (KRaft's controlled shutdown), so the
    /// cluster stops sending it clients at once rather than after the session
    /// timeout. Best effort, bounded.
    pub async fn shut_down(&self) {
        let epoch = {
            match self.server.metadata().nodes.get(&self.me.node_id) {
                Some(n) if n.incarnation == self.me.incarnation && !n.fenced => n.epoch,
                _ => return,
            }
        };
        let rec = Record::new(Kind::FenceNode(NodeEpoch {
            node_id: self.me.node_id,
            epoch,
            shutdown: true,
        }));
        match tokio::time::timeout(Duration::from_secs(2), self.server.propose_metadata(&rec)).await
        {
            Ok(Ok(Ok(_))) => tracing::info!("fenced this node for shutdown"),
            other => tracing::debug!("fencing this node for shutdown: {other:?}"),
        }
    }
}

impl EtcdServer {
    /// Proposes a cluster metadata record; resolves with what applying it did
    /// (or why it changed nothing) once it is applied on this member.
    pub async fn propose_metadata(
        &self,
        rec: &Record,
    ) -> Result<Result<Applied, MetaError>, tonic::Status> {
        use crate::pb::keelpb::internal_request::Request as R;
        match self.propose_system(R::Metadata(rec.to_bytes())).await? {
            (crate::store::Applied::Metadata(out), _) => Ok(out),
            (other, _) => Err(tonic::Status::internal(format!(
                "metadata record applied as {other:?}"
            ))),
        }
    }
}
