//! etcd's gRPC services on the Raft node: writes are proposals, linearizable
//! reads wait for a ReadIndex barrier, serializable reads are answered from
//! local state (possibly stale, as etcd documents).
//!
//! Lease expiry is the leader's business, as in etcd's lessor: the leader
//! keeps each lease's deadline in memory, refreshes it on KeepAlive, and
//! proposes a revoke when it passes; a new leader gives every lease its full
//! TTL again. Followers forward KeepAlive, TimeToLive and membership changes
//! to the leader over the leader's own client URL.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_raft::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Node, Role};
use prost::Message as _;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{token_index, AuthInfo, AuthShared, Need};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::cluster_client::ClusterClient;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::pb::etcdserverpb::*;
use crate::pb::keelpb::{internal_request, InternalRequest, MemberInfo, RequestHeader};
use crate::pb::mvccpb::Event;
use crate::pb::mvccpb::KeyValue;
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::pb::v3lockpb::lock_server::Lock;
use crate::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::store::{Applied, ApplyResult, RevisionEvents, Store};

/// etcd's `--max-request-bytes` default.
pub const REQUEST_BYTES_MAX: usize = 1536 * 1024;
/// gRPC messages may be this much larger than a request (etcd's grpcOverheadBytes).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// etcd's `--max-txn-ops` default.
pub const TXN_OPS_MAX: usize = 128;
/// Watches per gRPC stream.
pub const WATCHES_PER_STREAM_MAX: usize = 10_000;
/// Revisions read from the backend per catch-up step of a watcher.
const WATCH_CATCHUP_REVISIONS: usize = 1000;
/// How often a `progress_notify` watcher that saw nothing hears the revision
/// by default (etcd's `--experimental-watch-progress-notify-interval`, 10 min).
pub const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);
/// etcd's version this server answers Status with: etcdctl 3.4 and its clients check it.
pub const ETCD_VERSION: &str = "3.4.23";

mod auth_service;

pub type SharedStore = Arc<Mutex<Store>>;

/// Locks the store from async code. Applying one large entry holds the lock
/// for seconds (a 150 000-key range delete under a watcher reads every
/// deleted value); a tokio worker that waited on it plainly would hold up
/// every task queued behind it, Kafka's, CQL's and the Raft transport's
/// included, and two such waits on a two-core machine stalled the whole
/// runtime. When the lock is taken, `block_in_place` hands this worker's
/// other tasks to another thread for as long as the wait lasts.
pub fn lock_store(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    match store.try_lock() {
        Ok(g) => return g,
        Err(std::sync::TryLockError::Poisoned(_)) => panic!("store lock poisoned"),
        Err(std::sync::TryLockError::WouldBlock) => {}
    }
    let multi = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi {
        tokio::task::block_in_place(|| store.lock().expect("store lock"))
    } else {
        store.lock().expect("store lock")
    }
}

/// A channel to another member's TLS client port (`https://HOST:PORT`): the
/// connector dials TLS itself, checking the member's certificate against
/// HOST and presenting this member's own. (Also `keel bench kv`'s.)
pub fn tls_channel(
    config: Arc<keel_tls::rustls::ClientConfig>,
    url: &str,
) -> Result<tonic::transport::Channel, EtcdError> {
    let addr = url.split("://").last().unwrap_or(url).trim_end_matches('/');
    let target = addr.to_string();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (config, target) = (config.clone(), target.clone());
        async move {
            keel_tls::connect(config, &target)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    });
    Ok(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| EtcdError::Internal(e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .connect_with_connector_lazy(connector),
    )
}

/// A member's name: set at bootstrap for the initial members, and published
/// by a member that joined later (etcd publishes `--name` once it starts; a
/// member with no name is listed as unstarted).
pub fn member_name(id: u64) -> String {
    format!("keel-{id}")
}

/// Everything the services share. Cheap to clone.
#[derive(Clone)]
pub struct EtcdServer {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<Node<ApplyResult>>,
    store: SharedStore,
    member_id: u64,
    /// Lease deadlines, kept only while this node leads.
    lessor: Mutex<HashMap<i64, Instant>>,
    next_lease: AtomicI64,
    leader_channel: Mutex<Option<(u64, tonic::transport::Channel)>>,
    data_dir: std::path::PathBuf,
    /// How often an idle `progress_notify` watcher hears the revision.
    watch_progress_interval: Duration,
    /// With TLS on the client port: how to call another member's.
    client_tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
    /// `--client-cert-auth`: a verified client certificate's CN is the user
    /// of a request that carries no token.
    client_cert_auth: bool,
    /// bcrypt's cost for new passwords (`--bcrypt-cost`).
    bcrypt_cost: u32,
    /// The auth store's view for naming a request's user without the store lock.
    auth: Arc<AuthShared>,
    jwt: Option<Arc<crate::jwt::Jwt>>,
    /// The cluster metadata as last applied, readable without the store
    /// lock (which the apply thread holds for a whole entry).
    metadata: tokio::sync::watch::Receiver<Arc<keel_meta::Image>>,
}

/// How a request says who sent it: a token (gRPC metadata `token`, or the
/// gateway's `Authorization` header), or the CN of its client certificate.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    token: Option<String>,
    cn: Option<String>,
}

/// Options of the etcd services that are not the state machine's.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub watch_progress_interval: Duration,
    pub client_tls: Option<Arc<keel_tls::rustls::ClientConfig>>,
    pub client_cert_auth: bool,
    pub bcrypt_cost: u32,
    /// `--auth-token jwt,...`: JWT tokens instead of etcd's simple ones.
    pub jwt: Option<Arc<crate::jwt::Jwt>>,
}

type Res<T> = Result<Response<T>, Status>;

impl EtcdServer {
    pub fn new(
        node: Arc<Node<ApplyResult>>,
        store: SharedStore,
        member_id: u64,
        data_dir: std::path::PathBuf,
        options: ServerOptions,
    ) -> EtcdServer {
        // Lease ids: member id in the high bits, time and a counter below (etcd's idutil).
        let seed = ((member_id & 0xffff) << 47)
            | ((std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
                & 0xff_ffff_ffff)
                << 7);
        let (auth, metadata) = {
            let store = store.lock().expect("store lock");
            (store.auth().shared(), store.watch_metadata())
        };
        EtcdServer {
            inner: Arc::new(Inner {
                auth,
                node,
                store,
                member_id,
                lessor: Mutex::new(HashMap::new()),
                next_lease: AtomicI64::new((seed & (i64::MAX as u64)) as i64),
                leader_channel: Mutex::new(None),
                data_dir,
                watch_progress_interval: options.watch_progress_interval,
                client_tls: options.client_tls,
                client_cert_auth: options.client_cert_auth,
                bcrypt_cost: options.bcrypt_cost,
                jwt: options.jwt,
                metadata,
            }),
        }
    }

    /// The cluster metadata image as last applied on this node, without
    /// waiting for an apply in progress.
    pub fn metadata(&self) -> Arc<keel_meta::Image> {
        self.inner.metadata.borrow().clone()
    }

    /// The metadata image, after each change.
    pub fn watch_metadata(&self) -> tokio::sync::watch::Receiver<Arc<keel_meta::Image>> {
        self.inner.metadata.clone()
    }

    pub fn node(&self) -> &Arc<Node<ApplyResult>> {
        &self.inner.node
    }
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }
    pub fn member_id(&self) -> u64 {
        self.inner.member_id
    }

    fn header(&self) -> ResponseHeader {
        let term = self.inner.node.status().term;
        lock_store(&self.inner.store).header(self.inner.member_id, term)
    }

    fn header_at(&self, revision: i64) -> ResponseHeader {
        let mut h = self.header();
        h.revision = revision;
        h
    }

    /// Proposes a client's request, with who sent it for the apply's check.
    async fn propose_as(
        &self,
        header: &RequestHeader,
        req: internal_request::Request,
    ) -> Result<(Applied, i64), Status> {
        self.propose_with(header.clone(), req).await
    }

    /// Proposes a request the members make themselves (never checked).
    pub(crate) async fn propose_system(
        &self,
        req: internal_request::Request,
    ) -> Result<(Applied, i64), Status> {
        let header = RequestHeader {
            system: true,
            ..RequestHeader::default()
        };
        self.propose_with(header, req).await
    }

    async fn propose_with(
        &self,
        header: RequestHeader,
        req: internal_request::Request,
    ) -> Result<(Applied, i64), Status> {
        let data = InternalRequest {
            request: Some(req),
            header: Some(header),
        }
        .encode_to_vec();
        if data.len() > REQUEST_BYTES_MAX {
            return Err(EtcdError::RequestTooLarge.into());
        }
        match self.inner.node.propose(data).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(EtcdError::from(e).into()),
        }
    }

    /// Who sent `req` (nothing is looked up yet).
    pub fn caller<T>(&self, req: &Request<T>) -> Caller {
        let md = req.metadata();
        let token = md
            .get("token")
            .or_else(|| md.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).to_string());
        let cn = if self.inner.client_cert_auth {
            req.extensions()
                .get::<keel_tls::TlsConnectInfo>()
                .and_then(|i| i.client_cn.clone())
        } else {
            None
        };
        Caller { token, cn }
    }

    /// The caller's user and the auth revision it was found at; `None` when
    /// auth is off or the caller named no one (etcd's AuthInfoFromCtx, then
    /// AuthInfoFromTLS). A token this member has not applied yet (its index
    /// is ahead of the local apply) is looked up again after a read barrier,
    /// as etcd's simple tokens wait for their index.
    async fn auth_info(&self, c: &Caller) -> Result<Option<AuthInfo>, Status> {
        let a = &self.inner.auth;
        let mut waited = false;
        loop {
            // The revision is read before the user is looked up: an auth
            // change in between makes the request's revision old, never new.
            let revision = a.revision();
            if !a.enabled() {
                // A token while auth looks off: this member may not have
                // applied the log yet (just restarted); look again after a
                // read barrier. (Clients send tokens only once auth is on.)
                if c.token.is_some() && !waited {
                    waited = true;
                    self.barrier(false).await?;
                    continue;
                }
                return Ok(None);
            }
            let Some(token) = &c.token else {
                return Ok(c.cn.clone().map(|user| AuthInfo { user, revision }));
            };
            if let Some(jwt) = &self.inner.jwt {
                // The token says at which auth revision it was issued.
                return match jwt.verify(token) {
                    Some((user, revision)) => Ok(Some(AuthInfo { user, revision })),
                    None => Err(EtcdError::InvalidAuthToken.into()),
                };
            }
            if let Some(user) = a.token_user(token) {
                return Ok(Some(AuthInfo { user, revision }));
            }
            let applied = lock_store(&self.inner.store).applied_index();
            let ahead = token_index(token).is_some_and(|i| i > applied);
            if waited || !ahead {
                return Err(EtcdError::InvalidAuthToken.into());
            }
            waited = true;
            self.barrier(false).await?;
        }
    }

    /// The header a request's proposal carries.
    async fn header_of(&self, c: &Caller) -> Result<RequestHeader, Status> {
        Ok(AuthInfo::header(self.auth_info(c).await?.as_ref()))
    }

    /// Refuses a caller that is not root, when auth is on.
    async fn require_admin(&self, c: &Caller) -> Result<RequestHeader, Status> {
        let h = self.header_of(c).await?;
        let store = lock_store(&self.inner.store);
        store.auth().check_admin(&h)?;
        Ok(h)
    }

    /// Refuses a caller that names no user, when auth is on (etcd's requireAuthInfo).
    async fn require_user(&self, c: &Caller) -> Result<RequestHeader, Status> {
        let h = self.header_of(c).await?;
        let store = lock_store(&self.inner.store);
        if store.auth().enabled() && h.username.is_empty() {
            return Err(EtcdError::UserEmpty.into());
        }
        Ok(h)
    }

    async fn barrier(&self, serializable: bool) -> Result<(), Status> {
        if serializable {
            return Ok(());
        }
        self.inner
            .node
            .read_barrier()
            .await
            .map_err(|e| Status::from(EtcdError::from(e)))
    }

    /// The services, ready to add to a tonic server.
    pub fn routes(&self) -> tonic::service::Routes {
        use crate::pb::etcdserverpb::{
            auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
            lease_server::LeaseServer, maintenance_server::MaintenanceServer,
            watch_server::WatchServer,
        };
        use crate::pb::v3electionpb::election_server::ElectionServer;
        use crate::pb::v3lockpb::lock_server::LockServer;
        let max = REQUEST_BYTES_MAX + GRPC_OVERHEAD_BYTES;
        tonic::service::Routes::new(KvServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(WatchServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(LeaseServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(ClusterServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(LockServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(ElectionServer::new(self.clone()).max_decoding_message_size(max))
            .add_service(AuthServer::new(self.clone()).max_decoding_message_size(max))
    }

    /// Runs the leader's lease expiry until `stop`.
    pub async fn run_lessor(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut status = self.inner.node.watch_status();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut was_leader = false;
        let mut revoking: HashMap<i64, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tick.tick() => {}
                _ = status.changed() => {}
            }
            let leader = status.borrow().role == Role::Leader;
            let now = Instant::now();
            let expired: Vec<i64> = {
                let store = lock_store(&self.inner.store);
                let mut lessor = self.inner.lessor.lock().expect("lessor lock");
                if !leader {
                    lessor.clear();
                    was_leader = false;
                    continue;
                }
                if !was_leader {
                    // A new leader: every lease gets its full TTL again (etcd's Promote).
                    lessor.clear();
                    was_leader = true;
                }
                lessor.retain(|id, _| store.leases().contains_key(id));
                for (id, l) in store.leases() {
                    lessor
                        .entry(*id)
                        .or_insert_with(|| now + Duration::from_secs(l.ttl as u64));
                }
                lessor
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(id, _)| *id)
                    .collect()
            };
            revoking.retain(|_, at| now.duration_since(*at) < Duration::from_secs(5));
            for id in expired {
                if revoking.contains_key(&id) {
                    continue;
                }
                revoking.insert(id, now);
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me
                        .propose_system(internal_request::Request::LeaseRevoke(
                            LeaseRevokeRequest { id },
                        ))
                        .await;
                });
            }
        }
    }

    /// A Lease client on the current leader's client URL.
    async fn leader_lease_client(&self) -> Result<LeaseClient<tonic::transport::Channel>, Status> {
        Ok(LeaseClient::new(self.leader_channel()?))
    }

    /// A channel to the current leader's client URL (etcd forwards lease and
    /// member requests to the leader the same way).
    fn leader_channel(&self) -> Result<tonic::transport::Channel, EtcdError> {
        let st = self.inner.node.status();
        if st.leader == 0 {
            return Err(EtcdError::NoLeader);
        }
        if let Some((id, c)) = self.inner.leader_channel.lock().expect("lock").as_ref() {
            if *id == st.leader {
                return Ok(c.clone());
            }
        }
        let url = {
            let store = lock_store(&self.inner.store);
            store
                .members()
                .into_iter()
                .find(|m| m.id == st.leader)
                .and_then(|m| m.client_urls.first().cloned())
        }
        .ok_or(EtcdError::NoLeader)?;
        let ch = match &self.inner.client_tls {
            None => {
                let url = if url.contains("://") {
                    url
                } else {
                    format!("http://{url}")
                };
                tonic::transport::Endpoint::from_shared(url)
                    .map_err(|e| EtcdError::Internal(e.to_string()))?
                    .connect_timeout(Duration::from_secs(2))
                    .connect_lazy()
            }
            Some(config) => tls_channel(config.clone(), &url)?,
        };
        *self.inner.leader_channel.lock().expect("lock") = Some((st.leader, ch.clone()));
        Ok(ch)
    }

    /// Records this member's client URL in the membership (etcd's publish).
    pub async fn publish_client_url(&self, url: String) -> Result<(), Status> {
        let info = MemberInfo {
            id: self.inner.member_id,
            name: member_name(self.inner.member_id),
            client_urls: vec![url],
            ..MemberInfo::default()
        };
        self.propose_system(internal_request::Request::MemberUpdate(info))
            .await
            .map(|_| ())
    }

    fn is_leader(&self) -> bool {
        self.inner.node.status().role == Role::Leader
    }

    /// Refreshes a lease on the leader; returns its TTL (0 when it is gone).
    async fn keep_alive_once(&self, id: i64) -> Result<i64, Status> {
        if self.is_leader() {
            let ttl = {
                let store = lock_store(&self.inner.store);
                store.leases().get(&id).map(|l| l.ttl)
            };
            let Some(ttl) = ttl else {
                return Err(EtcdError::LeaseNotFound.into());
            };
            self.inner
                .lessor
                .lock()
                .expect("lessor lock")
                .insert(id, Instant::now() + Duration::from_secs(ttl as u64));
            return Ok(ttl);
        }
        let mut c = self.leader_lease_client().await?;
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.send(LeaseKeepAliveRequest { id }).await;
        let mut resp = c
            .lease_keep_alive(ReceiverStream::new(rx))
            .await?
            .into_inner();
        match resp.next().await {
            Some(Ok(r)) => Ok(r.ttl),
            Some(Err(e)) => Err(e),
            None => Err(EtcdError::LeaderChanged.into()),
        }
    }

    /// Waits until the key `key` with create revision `my_rev` is the oldest
    /// under `prefix` (etcd's waitDeletes): the lock or election is ours.
    async fn wait_for_turn(&self, prefix: &[u8], my_rev: i64) -> Result<(), Status> {
        let end = prefix_end(prefix);
        loop {
            let (mut events, older) = {
                let store = lock_store(&self.inner.store);
                let rx = store.subscribe();
                let r = store.range(&RangeRequest {
                    key: prefix.to_vec(),
                    range_end: end.clone(),
                    max_create_revision: my_rev - 1,
                    sort_order: 2,  // descend
                    sort_target: 1, // create
                    limit: 1,
                    ..RangeRequest::default()
                })?;
                (rx, r.kvs.into_iter().next().map(|kv| kv.key))
            };
            let Some(older) = older else { return Ok(()) };
            // Wait for that key's deletion.
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if ev
                            .events
                            .iter()
                            .any(|e| e.r#type == 1 && e.kv.as_ref().map(|k| &k.key) == Some(&older))
                        {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(EtcdError::Stopped.into())
                    }
                }
            }
        }
    }
}

/// The smallest key after every key with this prefix (etcd's GetPrefixRangeEnd).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn check_txn(t: &TxnRequest) -> Result<(), EtcdError> {
    if t.compare.len() > TXN_OPS_MAX
        || t.success.len() > TXN_OPS_MAX
        || t.failure.len() > TXN_OPS_MAX
    {
        return Err(EtcdError::TooManyOps);
    }
    for ops in [&t.success, &t.failure] {
        let mut puts = std::collections::HashSet::new();
        for op in ops.iter() {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) => {
                    if p.key.is_empty() {
                        return Err(EtcdError::EmptyKey);
                    }
                    if !puts.insert(p.key.clone()) {
                        return Err(EtcdError::DuplicateKey);
                    }
                }
                Some(request_op::Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                    return Err(EtcdError::EmptyKey)
                }
                Some(request_op::Request::RequestRange(r)) if r.key.is_empty() => {
                    return Err(EtcdError::EmptyKey)
                }
                Some(request_op::Request::RequestTxn(inner)) => check_txn(inner)?,
                _ => {}
            }
        }
    }
    Ok(())
}

fn fill_txn_headers(t: &mut TxnResponse, h: &ResponseHeader) {
    t.header = Some(*h);
    for r in &mut t.responses {
        match &mut r.response {
            Some(response_op::Response::ResponseRange(x)) => x.header = Some(*h),
            Some(response_op::Response::ResponsePut(x)) => x.header = Some(*h),
            Some(response_op::Response::ResponseDeleteRange(x)) => x.header = Some(*h),
            Some(response_op::Response::ResponseTxn(x)) => fill_txn_headers(x, h),
            None => {}
        }
    }
}

fn unexpected() -> Status {
    Status::internal("etcdserver: unexpected apply result")
}

#[tonic::async_trait]
impl Kv for EtcdServer {
    async fn range(&self, req: Request<RangeRequest>) -> Res<RangeResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        self.barrier(req.serializable).await?;
        let term = self.inner.node.status().term;
        let store = lock_store(&self.inner.store);
        store
            .auth()
            .check(&h, Need::Read, &req.key, &req.range_end)?;
        let mut r = store.range(&req)?;
        r.header = Some(store.header(self.inner.member_id, term));
        Ok(Response::new(r))
    }

    async fn put(&self, req: Request<PutRequest>) -> Res<PutResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        match self
            .propose_as(&h, internal_request::Request::Put(req))
            .await?
        {
            (Applied::Put(mut r), rev) => {
                r.header = Some(self.header_at(rev));
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Res<DeleteRangeResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        match self
            .propose_as(&h, internal_request::Request::DeleteRange(req))
            .await?
        {
            (Applied::DeleteRange(mut r), rev) => {
                r.header = Some(self.header_at(rev));
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Res<TxnResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        check_txn(&req)?;
        let read_only = !txn_writes(&req);
        if read_only {
            // A read-only txn is a read: no proposal (etcd serves it the same way).
            let serializable = txn_all_serializable(&req);
            self.barrier(serializable).await?;
            return match self.read_only_txn(&h, req) {
                Ok(r) => Ok(Response::new(r)),
                Err(e) => Err(e.into()),
            };
        }
        match self
            .propose_as(&h, internal_request::Request::Txn(req))
            .await?
        {
            (Applied::Txn(mut r), rev) => {
                let h = self.header_at(rev);
                fill_txn_headers(&mut r, &h);
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn compact(&self, req: Request<CompactionRequest>) -> Res<CompactionResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        match self
            .propose_as(&h, internal_request::Request::Compaction(req.into_inner()))
            .await?
        {
            (Applied::Compaction(_), rev) => Ok(Response::new(CompactionResponse {
                header: Some(self.header_at(rev)),
            })),
            _ => Err(unexpected()),
        }
    }
}

fn txn_writes(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_))
            | Some(request_op::Request::RequestDeleteRange(_)) => true,
            Some(request_op::Request::RequestTxn(inner)) => txn_writes(inner),
            _ => false,
        })
}

fn txn_all_serializable(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(r)) => r.serializable,
            Some(request_op::Request::RequestTxn(inner)) => txn_all_serializable(inner),
            _ => true,
        })
}

impl EtcdServer {
    /// Evaluates a txn without writes against local state.
    fn read_only_txn(&self, h: &RequestHeader, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        let term = self.inner.node.status().term;
        let store = lock_store(&self.inner.store);
        store.check_txn_auth(h, &req)?;
        let mut r = store.read_only_txn(&req)?;
        let h = store.header(self.inner.member_id, term);
        fill_txn_headers(&mut r, &h);
        Ok(r)
    }
}

pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for EtcdServer {
    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(&self, req: Request<Streaming<WatchRequest>>) -> Res<Self::WatchStream> {
        let caller = self.caller(&req);
        Ok(Response::new(self.watch_stream(req.into_inner(), caller)))
    }
}

impl EtcdServer {
    /// One watch stream: creates, cancels and progress requests from
    /// `inbound`, events out. A client that stops sending (a gRPC CloseSend, or
    /// the gateway at the end of a request body) keeps its watches until it
    /// stops reading, as etcd's watch server goes on sending after its receive
    /// loop ends; an inbound error (the client reset the stream) ends them.
    ///
    /// Each create is checked as etcd's isWatchPermitted: the caller's token
    /// is looked up again, and a watch the user may not read is answered
    /// created and canceled with the reason.
    pub fn watch_stream<S>(&self, mut inbound: S, caller: Caller) -> BoxStream<WatchResponse>
    where
        S: Stream<Item = Result<WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel::<Result<WatchResponse, Status>>(1024);
        let me = self.clone();
        tokio::spawn(async move {
            let mut watchers: HashMap<i64, (tokio::task::JoinHandle<()>, Arc<AtomicI64>)> =
                HashMap::new();
            let mut next_id: i64 = 0;
            let mut reset = false;
            while let Some(msg) = inbound.next().await {
                let Ok(msg) = msg else {
                    reset = true;
                    break;
                };
                watchers.retain(|_, (h, _)| !h.is_finished());
                match msg.request_union {
                    Some(watch_request::RequestUnion::CreateRequest(c)) => {
                        let id = if c.watch_id != 0 {
                            c.watch_id
                        } else {
                            while watchers.contains_key(&next_id) {
                                next_id += 1;
                            }
                            next_id
                        };
                        let bad = if watchers.contains_key(&id) {
                            Some("etcdserver: duplicate watch ID".to_string())
                        } else if watchers.len() >= WATCHES_PER_STREAM_MAX {
                            Some("etcdserver: too many watches on this stream".to_string())
                        } else {
                            me.watch_permitted(&caller, &c.key, &c.range_end)
                                .await
                                .err()
                        };
                        if let Some(reason) = bad {
                            let _ = tx
                                .send(Ok(WatchResponse {
                                    header: Some(me.header()),
                                    watch_id: -1,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: reason,
                                    ..WatchResponse::default()
                                }))
                                .await;
                            continue;
                        }
                        let progress = Arc::new(AtomicI64::new(0));
                        // Subscribe before answering "created", so nothing applied
                        // after the answer is missed.
                        let (events, current, compacted) = {
                            let s = lock_store(&me.inner.store);
                            (s.subscribe(), s.revision(), s.compacted())
                        };
                        let start = if c.start_revision > 0 {
                            c.start_revision
                        } else {
                            current + 1
                        };
                        progress.store(start - 1, Ordering::Relaxed);
                        if tx
                            .send(Ok(WatchResponse {
                                header: Some(me.header_at(current)),
                                watch_id: id,
                                created: true,
                                ..WatchResponse::default()
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        let w = Watcher {
                            server: me.clone(),
                            id,
                            key: c.key,
                            range_end: c.range_end,
                            prev_kv: c.prev_kv,
                            no_put: c.filters.contains(&0),
                            no_delete: c.filters.contains(&1),
                            progress_notify: c.progress_notify,
                            next: start,
                            progress: progress.clone(),
                            sent_since_tick: false,
                            tx: tx.clone(),
                        };
                        let _ = compacted;
                        let h = tokio::spawn(w.run(events));
                        next_id = next_id.max(id + 1);
                        watchers.insert(id, (h, progress));
                    }
                    Some(watch_request::RequestUnion::CancelRequest(c)) => {
                        if let Some((h, _)) = watchers.remove(&c.watch_id) {
                            h.abort();
                            let _ = tx
                                .send(Ok(WatchResponse {
                                    header: Some(me.header()),
                                    watch_id: c.watch_id,
                                    canceled: true,
                                    ..WatchResponse::default()
                                }))
                                .await;
                        }
                    }
                    Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                        // Only a revision every watcher has delivered up to (etcd
                        // answers progress only for synced watchers).
                        let current = lock_store(&me.inner.store).revision();
                        let rev = watchers
                            .values()
                            .map(|(_, p)| p.load(Ordering::Relaxed))
                            .min()
                            .unwrap_or(current);
                        let _ = tx
                            .send(Ok(WatchResponse {
                                header: Some(me.header_at(rev)),
                                watch_id: -1,
                                ..WatchResponse::default()
                            }))
                            .await;
                    }
                    None => {}
                }
            }
            if !reset {
                tx.closed().await;
            }
            for (_, (h, _)) in watchers {
                h.abort();
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

impl EtcdServer {
    /// Whether the caller may watch `[key, range_end)`; the error is the
    /// cancel reason etcd sends (a gRPC status's text, as Go prints it).
    async fn watch_permitted(
        &self,
        c: &Caller,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), String> {
        let reason = |s: Status| format!("rpc error: code = {:?} desc = {}", s.code(), s.message());
        let h = self.header_of(c).await.map_err(reason)?;
        let store = lock_store(&self.inner.store);
        store
            .auth()
            .check(&h, Need::Read, key, range_end)
            .map_err(|e| reason(e.into()))
    }
}

struct Watcher {
    server: EtcdServer,
    id: i64,
    key: Vec<u8>,
    range_end: Vec<u8>,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    /// The next revision to deliver.
    next: i64,
    /// The revision delivered up to, for progress answers.
    progress: Arc<AtomicI64>,
    /// Events went out since the last progress tick.
    sent_since_tick: bool,
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
}

impl Watcher {
    fn matches(&self, e: &Event) -> bool {
        let Some(kv) = &e.kv else { return false };
        if (e.r#type == 0 && self.no_put) || (e.r#type == 1 && self.no_delete) {
            return false;
        }
        if self.range_end.is_empty() {
            kv.key == self.key
        } else if self.range_end == [0] {
            kv.key >= self.key
        } else {
            kv.key >= self.key && kv.key < self.range_end
        }
    }

    /// Sends the matching events of these revisions; false if the client is gone.
    async fn deliver(&mut self, revs: &[Arc<RevisionEvents>], header_rev: i64) -> bool {
        let mut events = Vec::new();
        let mut last = self.next - 1;
        for r in revs {
            if r.revision < self.next {
                continue;
            }
            last = r.revision;
            for e in &r.events {
                if self.matches(e) {
                    let mut e = e.clone();
                    if !self.prev_kv {
                        e.prev_kv = None;
                    }
                    events.push(e);
                }
            }
        }
        self.next = last + 1;
        if !events.is_empty() {
            let resp = WatchResponse {
                header: Some(self.server.header_at(header_rev.max(last))),
                watch_id: self.id,
                events,
                ..WatchResponse::default()
            };
            if self.tx.send(Ok(resp)).await.is_err() {
                return false;
            }
            self.sent_since_tick = true;
        }
        self.progress.store(self.next - 1, Ordering::Relaxed);
        true
    }

    async fn run(mut self, mut events: broadcast::Receiver<Arc<RevisionEvents>>) {
        let mut progress_tick = tokio::time::interval(self.server.inner.watch_progress_interval);
        progress_tick.tick().await;
        loop {
            // Catch up from the backend to the revision at subscription time.
            let (cut, compacted) = {
                let s = lock_store(&self.server.inner.store);
                (s.revision(), s.compacted())
            };
            if self.next <= compacted {
                let _ = self
                    .tx
                    .send(Ok(WatchResponse {
                        header: Some(self.server.header()),
                        watch_id: self.id,
                        canceled: true,
                        // etcd 3.4 says why by compact_revision alone (its
                        // clients build ErrCompacted from it).
                        compact_revision: compacted,
                        ..WatchResponse::default()
                    }))
                    .await;
                return;
            }
            while self.next <= cut {
                let batch = {
                    let s = lock_store(&self.server.inner.store);
                    s.history(self.next, cut, WATCH_CATCHUP_REVISIONS)
                };
                let Ok(batch) = batch else { return };
                let batch: Vec<Arc<RevisionEvents>> = batch.into_iter().map(Arc::new).collect();
                let before = self.next;
                if !self.deliver(&batch, cut).await {
                    return;
                }
                if batch.is_empty() || self.next == before {
                    self.next = cut + 1;
                    self.progress.store(cut, Ordering::Relaxed);
                }
            }
            // Synced: follow applied revisions as they are published.
            loop {
                tokio::select! {
                    r = events.recv() => match r {
                        Ok(ev) => {
                            let rev = ev.revision;
                            if !self.deliver(&[ev], rev).await {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Too slow for the broadcast: resubscribe, then read
                            // what was missed from the backend.
                            events = lock_store(&self.server.inner.store).subscribe();
                            break;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = progress_tick.tick(), if self.progress_notify => {
                        // As etcd's watch server: only a watcher that was sent
                        // nothing during the last interval hears the revision.
                        if std::mem::take(&mut self.sent_since_tick) {
                            continue;
                        }
                        let resp = WatchResponse {
                            header: Some(self.server.header_at(self.next - 1)),
                            watch_id: self.id,
                            ..WatchResponse::default()
                        };
                        if self.tx.send(Ok(resp)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

impl EtcdServer {
    /// One keep-alive stream: each request renews its lease and is answered
    /// with the TTL (0 for an unknown lease, as etcd answers); the stream ends
    /// when the client stops sending, as etcd's does.
    pub fn keep_alive_stream<S>(&self, mut inbound: S) -> BoxStream<LeaseKeepAliveResponse>
    where
        S: Stream<Item = Result<LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(64);
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(r)) = inbound.next().await {
                let resp = match me.keep_alive_once(r.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(me.header()),
                        id: r.id,
                        ttl,
                    }),
                    // etcd answers a keep-alive of an unknown lease with TTL 0.
                    Err(s) if s.code() == tonic::Code::NotFound => Ok(LeaseKeepAliveResponse {
                        header: Some(me.header()),
                        id: r.id,
                        ttl: 0,
                    }),
                    Err(s) => Err(s),
                };
                let stop = resp.is_err();
                if tx.send(resp).await.is_err() || stop {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl Lease for EtcdServer {
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Res<LeaseGrantResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let mut req = req.into_inner();
        if req.id < 0 {
            return Err(EtcdError::InvalidArgument("lease id must not be negative".into()).into());
        }
        if req.id == 0 {
            req.id = self.inner.next_lease.fetch_add(1, Ordering::Relaxed) & i64::MAX;
        }
        match self
            .propose_as(&h, internal_request::Request::LeaseGrant(req))
            .await?
        {
            (Applied::LeaseGrant(mut r), rev) => {
                r.header = Some(self.header_at(rev));
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Res<LeaseRevokeResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        match self
            .propose_as(&h, internal_request::Request::LeaseRevoke(req.into_inner()))
            .await?
        {
            (Applied::LeaseRevoke(_), rev) => Ok(Response::new(LeaseRevokeResponse {
                header: Some(self.header_at(rev)),
            })),
            _ => Err(unexpected()),
        }
    }

    type LeaseKeepAliveStream = BoxStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Res<Self::LeaseKeepAliveStream> {
        Ok(Response::new(self.keep_alive_stream(req.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Res<LeaseTimeToLiveResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        if req.keys {
            // The attached keys are the user's to read, or not (etcd 3.5's
            // checkLeaseTimeToLive; 3.4 showed them to anyone).
            let store = lock_store(&self.inner.store);
            let a = store.auth();
            if a.check_admin(&h).is_err() {
                for key in store
                    .leases()
                    .get(&req.id)
                    .map(|l| &l.keys)
                    .into_iter()
                    .flatten()
                {
                    a.check(&h, Need::Read, key, &[])?;
                }
            }
        }
        if !self.is_leader() {
            // Only the leader knows the time left; the keys (checked above
            // against this member's auth store) come from here, so the
            // leader, which sees this member rather than the caller, has
            // nothing to check.
            let mut c = self.leader_lease_client().await?;
            let mut r = c
                .lease_time_to_live(LeaseTimeToLiveRequest { keys: false, ..req })
                .await?
                .into_inner();
            if req.keys && r.ttl != -1 {
                let store = lock_store(&self.inner.store);
                r.keys = store
                    .leases()
                    .get(&req.id)
                    .map(|l| l.keys.iter().cloned().collect())
                    .unwrap_or_default();
            }
            return Ok(Response::new(r));
        }
        self.barrier(false).await?;
        let (granted, keys) = {
            let store = lock_store(&self.inner.store);
            match store.leases().get(&req.id) {
                Some(l) => (Some(l.ttl), l.keys.iter().cloned().collect::<Vec<_>>()),
                None => (None, vec![]),
            }
        };
        let Some(granted) = granted else {
            return Ok(Response::new(LeaseTimeToLiveResponse {
                header: Some(self.header()),
                id: req.id,
                ttl: -1,
                ..LeaseTimeToLiveResponse::default()
            }));
        };
        let remaining = self
            .inner
            .lessor
            .lock()
            .expect("lessor lock")
            .get(&req.id)
            .map(|at| {
                at.saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    .ceil() as i64
            })
            .unwrap_or(granted);
        Ok(Response::new(LeaseTimeToLiveResponse {
            header: Some(self.header()),
            id: req.id,
            ttl: remaining,
            granted_ttl: granted,
            keys: if req.keys { keys } else { vec![] },
        }))
    }

    async fn lease_leases(&self, _req: Request<LeaseLeasesRequest>) -> Res<LeaseLeasesResponse> {
        self.barrier(false).await?;
        let store = lock_store(&self.inner.store);
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            leases: store
                .leases()
                .keys()
                .map(|id| LeaseStatus { id: *id })
                .collect(),
        }))
    }
}

fn to_member(m: &MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

impl EtcdServer {
    async fn change_members(
        &self,
        change: ConfChangeType,
        info: MemberInfo,
    ) -> Result<Vec<Member>, Status> {
        if !self.is_leader() {
            // The handlers forward to the leader first; leadership moved meanwhile.
            return Err(EtcdError::LeaderChanged.into());
        }
        let mut single = ConfChangeSingle::default();
        single.set_change_type(change);
        single.node_id = info.id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        cc.set_context(info.encode_to_vec().into());
        match self.inner.node.change_membership(cc).await {
            Ok(Ok((Applied::Members(ms), _))) => Ok(ms.iter().map(to_member).collect()),
            Ok(Ok(_)) => Err(unexpected()),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(EtcdError::from(e).into()),
        }
    }
}

#[tonic::async_trait]
impl Cluster for EtcdServer {
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Res<MemberAddResponse> {
        let caller = self.caller(&req);
        self.require_admin(&caller).await?;
        let req = req.into_inner();
        if !self.is_leader() {
            return ClusterClient::new(self.leader_channel()?)
                .member_add(forwarded(&caller, req))
                .await;
        }
        if req.peer_ur_ls.is_empty() {
            return Err(EtcdError::InvalidArgument("member peer URLs are not given".into()).into());
        }
        let (id, exists) = {
            let store = lock_store(&self.inner.store);
            let ms = store.members();
            let exists = ms
                .iter()
                .any(|m| m.peer_urls.iter().any(|u| req.peer_ur_ls.contains(u)));
            (ms.iter().map(|m| m.id).max().unwrap_or(0) + 1, exists)
        };
        if exists {
            return Err(EtcdError::PeerUrlExist.into());
        }
        let info = MemberInfo {
            id,
            name: String::new(),
            peer_urls: req.peer_ur_ls.clone(),
            client_urls: vec![],
            is_learner: req.is_learner,
        };
        let kind = if req.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let members = self.change_members(kind, info.clone()).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.header()),
            member: Some(to_member(&info)),
            members,
        }))
    }

    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Res<MemberRemoveResponse> {
        let caller = self.caller(&req);
        self.require_admin(&caller).await?;
        let req = req.into_inner();
        if !self.is_leader() {
            return ClusterClient::new(self.leader_channel()?)
                .member_remove(forwarded(&caller, req))
                .await;
        }
        let id = req.id;
        let known = lock_store(&self.inner.store)
            .members()
            .iter()
            .any(|m| m.id == id);
        if !known {
            return Err(EtcdError::MemberNotFound.into());
        }
        let members = self
            .change_members(
                ConfChangeType::RemoveNode,
                MemberInfo {
                    id,
                    ..MemberInfo::default()
                },
            )
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.header()),
            members,
        }))
    }

    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Res<MemberUpdateResponse> {
        self.require_admin(&self.caller(&req)).await?;
        let req = req.into_inner();
        let info = MemberInfo {
            id: req.id,
            peer_urls: req.peer_ur_ls,
            ..MemberInfo::default()
        };
        match self
            .propose_system(internal_request::Request::MemberUpdate(info))
            .await?
        {
            (Applied::Members(ms), _) => Ok(Response::new(MemberUpdateResponse {
                header: Some(self.header()),
                members: ms.iter().map(to_member).collect(),
            })),
            _ => Err(unexpected()),
        }
    }

    async fn member_list(&self, req: Request<MemberListRequest>) -> Res<MemberListResponse> {
        let _ = req;
        self.barrier(false).await?;
        let store = lock_store(&self.inner.store);
        Ok(Response::new(MemberListResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            members: store.members().iter().map(to_member).collect(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Res<MemberPromoteResponse> {
        let caller = self.caller(&req);
        self.require_admin(&caller).await?;
        let req = req.into_inner();
        if !self.is_leader() {
            // Only the leader knows how far the learner got (etcd forwards
            // promote to the leader too).
            return ClusterClient::new(self.leader_channel()?)
                .member_promote(forwarded(&caller, req))
                .await;
        }
        let id = req.id;
        let member = lock_store(&self.inner.store)
            .members()
            .into_iter()
            .find(|m| m.id == id);
        let Some(member) = member else {
            return Err(EtcdError::MemberNotFound.into());
        };
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner.into());
        }
        // etcd: a learner is ready when it holds 90% of the leader's log.
        let st = self.inner.node.status();
        let leader_match = st
            .matched
            .iter()
            .find(|(i, _)| *i == st.id)
            .map_or(0, |m| m.1);
        let learner_match = st.matched.iter().find(|(i, _)| *i == id).map_or(0, |m| m.1);
        if (learner_match as f64) < 0.9 * leader_match as f64 {
            return Err(EtcdError::LearnerNotReady.into());
        }
        let members = self
            .change_members(
                ConfChangeType::AddNode,
                MemberInfo {
                    is_learner: false,
                    ..member
                },
            )
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.header()),
            members,
        }))
    }
}

#[tonic::async_trait]
impl Maintenance for EtcdServer {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Res<AlarmResponse> {
        let caller = self.caller(&req);
        let req = req.into_inner();
        if req.action == alarm_request::AlarmAction::Get as i32 {
            self.require_user(&caller).await?;
        } else {
            self.require_admin(&caller).await?;
        }
        if req.action == alarm_request::AlarmAction::Get as i32 {
            let store = lock_store(&self.inner.store);
            let alarms = store
                .alarms()
                .into_iter()
                .map(|a| AlarmMember {
                    member_id: self.inner.member_id,
                    alarm: a,
                })
                .collect();
            return Ok(Response::new(AlarmResponse {
                header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
                alarms,
            }));
        }
        match self
            .propose_system(internal_request::Request::Alarm(req))
            .await?
        {
            (Applied::Alarm(mut r), rev) => {
                r.header = Some(self.header_at(rev));
                Ok(Response::new(r))
            }
            _ => Err(unexpected()),
        }
    }

    async fn status(&self, req: Request<StatusRequest>) -> Res<StatusResponse> {
        self.require_user(&self.caller(&req)).await?;
        let st = self.inner.node.status();
        let db_size = std::fs::metadata(self.inner.data_dir.join("kv.redb"))
            .map(|m| m.len() as i64)
            .unwrap_or(0);
        let store = lock_store(&self.inner.store);
        let mut errors = Vec::new();
        if store.no_space() {
            errors.push(
                "memberID:".to_string() + &self.inner.member_id.to_string() + " alarm:NOSPACE ",
            );
        }
        Ok(Response::new(StatusResponse {
            header: Some(store.header(self.inner.member_id, st.term)),
            version: ETCD_VERSION.into(),
            db_size,
            leader: st.leader,
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: st.applied,
            errors,
            db_size_in_use: store.size_bytes() as i64,
            is_learner: st.learners.contains(&self.inner.member_id),
        }))
    }

    async fn defragment(&self, req: Request<DefragmentRequest>) -> Res<DefragmentResponse> {
        self.require_admin(&self.caller(&req)).await?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.header()),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Res<HashResponse> {
        self.require_admin(&self.caller(&req)).await?;
        let store = lock_store(&self.inner.store);
        let hash = store.hash_kv(store.revision())?;
        Ok(Response::new(HashResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            hash,
        }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Res<HashKvResponse> {
        self.require_admin(&self.caller(&req)).await?;
        let req = req.into_inner();
        let store = lock_store(&self.inner.store);
        let rev = if req.revision <= 0 {
            store.revision()
        } else {
            req.revision
        };
        if rev > store.revision() {
            return Err(EtcdError::FutureRev.into());
        }
        if rev < store.compacted() {
            return Err(EtcdError::Compacted.into());
        }
        let hash = store.hash_kv(rev)?;
        Ok(Response::new(HashKvResponse {
            header: Some(store.header(self.inner.member_id, self.inner.node.status().term)),
            hash,
            compact_revision: store.compacted(),
        }))
    }

    type SnapshotStream = BoxStream<SnapshotResponse>;

    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Res<Self::SnapshotStream> {
        self.require_admin(&self.caller(&req)).await?;
        let (state, header) = {
            let store = lock_store(&self.inner.store);
            (
                store.snapshot_bytes()?,
                store.header(self.inner.member_id, self.inner.node.status().term),
            )
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            // etcd's envelope: the body in 512-byte blocks, then its SHA-256
            // in a last message (see `backup`).
            let body = crate::backup::encode(&state);
            let digest = crate::backup::digest(&body);
            let total = body.len() + digest.len();
            let mut sent = 0;
            for chunk in body.chunks(32 << 10).chain([&digest[..]]) {
                sent += chunk.len();
                let r = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - sent) as u64,
                    blob: chunk.to_vec(),
                };
                if tx.blocking_send(Ok(r)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Res<MoveLeaderResponse> {
        self.require_admin(&self.caller(&req)).await?;
        let target = req.into_inner().target_id;
        let st = self.inner.node.status();
        if st.role != Role::Leader {
            return Err(EtcdError::NotLeader.into());
        }
        if !st.voters.contains(&target) {
            return Err(EtcdError::MemberNotFound.into());
        }
        self.inner.node.transfer_leader(target);
        let mut status = self.inner.node.watch_status();
        let moved = tokio::time::timeout(
            Duration::from_secs(5),
            status.wait_for(|s| s.leader == target),
        )
        .await;
        match moved {
            Ok(Ok(_)) => Ok(Response::new(MoveLeaderResponse {
                header: Some(self.header()),
            })),
            _ => Err(EtcdError::Timeout.into()),
        }
    }
}

/// etcd serves Lock and Campaign through its own client and the concurrency
/// recipes, so what the store refuses (a lease that does not exist or
/// expired) reaches the caller as a client-side error: code Unknown with
/// etcd's message, not the store's NotFound.
/// A request to forward to the leader, with the caller's token.
fn forwarded<T>(caller: &Caller, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = &caller.token {
        if let Ok(v) = tonic::metadata::MetadataValue::try_from(t.as_str()) {
            r.metadata_mut().insert("token", v);
        }
    }
    r
}

fn recipe_error(s: Status) -> Status {
    if s.code() == tonic::Code::NotFound {
        Status::unknown(s.message())
    } else {
        s
    }
}

#[tonic::async_trait]
impl Lock for EtcdServer {
    /// etcd's v3lock: put `name/<lease hex>` if absent, then wait until it is the
    /// oldest key under `name/`.
    async fn lock(&self, req: Request<LockRequest>) -> Res<LockResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        if req.name.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        let (prefix, key) = line_key(&req.name, req.lease);
        // The recipe reads the whole line, and writes its own key at apply.
        self.check_line_read(&h, &prefix)?;
        let (my_rev, _) = self
            .claim(&h, &key, req.lease, vec![])
            .await
            .map_err(recipe_error)?;
        self.wait_for_turn(&prefix, my_rev).await?;
        if !self.exists(&key)? {
            // The lease expired while waiting: the lock is not held.
            return Err(recipe_error(EtcdError::LeaseNotFound.into()));
        }
        Ok(Response::new(LockResponse {
            header: Some(self.header()),
            key,
        }))
    }

    async fn unlock(&self, req: Request<UnlockRequest>) -> Res<UnlockResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let key = req.into_inner().key;
        let (_, rev) = self
            .propose_as(
                &h,
                internal_request::Request::DeleteRange(DeleteRangeRequest {
                    key,
                    ..DeleteRangeRequest::default()
                }),
            )
            .await?;
        Ok(Response::new(UnlockResponse {
            header: Some(self.header_at(rev)),
        }))
    }
}

impl EtcdServer {
    /// Puts `key` (bound to `lease`) unless it exists; returns its create
    /// revision (etcd's concurrency recipes: a lock's or candidate's place in
    /// line) and, if it existed already, the value it holds.
    async fn claim(
        &self,
        h: &RequestHeader,
        key: &[u8],
        lease: i64,
        value: Vec<u8>,
    ) -> Result<(i64, Option<Vec<u8>>), Status> {
        let put = request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            lease,
            ..PutRequest::default()
        });
        let get = request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..RangeRequest::default()
        });
        let txn = if_created_at(key, 0, put, Some(get));
        let (applied, rev) = self
            .propose_as(h, internal_request::Request::Txn(txn))
            .await?;
        let Applied::Txn(t) = applied else {
            return Err(unexpected());
        };
        if t.succeeded {
            return Ok((rev, None));
        }
        Ok(
            match t.responses.first().and_then(|r| r.response.as_ref()) {
                Some(response_op::Response::ResponseRange(r)) => match r.kvs.first() {
                    Some(kv) => (kv.create_revision, Some(kv.value.clone())),
                    None => (rev, None),
                },
                _ => (rev, None),
            },
        )
    }

    /// Whether `key` still exists (a lease may expire while its holder waits in line).
    fn exists(&self, key: &[u8]) -> Result<bool, EtcdError> {
        let store = lock_store(&self.inner.store);
        let r = store.range(&RangeRequest {
            key: key.to_vec(),
            count_only: true,
            ..RangeRequest::default()
        })?;
        Ok(r.count > 0)
    }

    /// Replaces the leader's value if `leader` still leads (its key has the
    /// create revision it won with); etcd's Election.Proclaim.
    async fn proclaim_as(
        &self,
        h: &RequestHeader,
        leader: LeaderKey,
        value: Vec<u8>,
    ) -> Result<i64, Status> {
        let put = request_op::Request::RequestPut(PutRequest {
            key: leader.key.clone(),
            value,
            lease: leader.lease,
            ..PutRequest::default()
        });
        let txn = if_created_at(&leader.key, leader.rev, put, None);
        match self
            .propose_as(h, internal_request::Request::Txn(txn))
            .await?
        {
            (Applied::Txn(t), rev) if t.succeeded => Ok(rev),
            // etcd's ErrElectionNotLeader, a plain error of its recipes: code Unknown.
            _ => Err(Status::unknown("election: not leader")),
        }
    }

    /// May the caller read a lock's or election's whole line?
    fn check_line_read(&self, h: &RequestHeader, prefix: &[u8]) -> Result<(), EtcdError> {
        let store = lock_store(&self.inner.store);
        store
            .auth()
            .check(h, Need::Read, prefix, &prefix_end(prefix))
    }

    /// The oldest key under `prefix`: the lock holder or elected leader.
    fn first_in_line(&self, prefix: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let store = lock_store(&self.inner.store);
        let r = store.range(&RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            sort_order: 1,  // ascend
            sort_target: 1, // create
            limit: 1,
            ..RangeRequest::default()
        })?;
        Ok(r.kvs.into_iter().next())
    }
}

/// A txn that does `then` if `key` has create revision `rev` (0: it does not
/// exist), else `otherwise`: how etcd's concurrency recipes guard a lock or
/// leader key.
fn if_created_at(
    key: &[u8],
    rev: i64,
    then: request_op::Request,
    otherwise: Option<request_op::Request>,
) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.to_vec(),
            range_end: vec![],
            target_union: Some(compare::TargetUnion::CreateRevision(rev)),
        }],
        success: vec![RequestOp {
            request: Some(then),
        }],
        failure: otherwise
            .map(|r| RequestOp { request: Some(r) })
            .into_iter()
            .collect(),
    }
}

/// The prefix a lock's or election's line lives under: `name/`.
fn line_prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// The line's prefix and the key a lease holds in it: `name/<lease hex>`, as
/// etcd's v3lock and v3election name them.
fn line_key(name: &[u8], lease: i64) -> (Vec<u8>, Vec<u8>) {
    let prefix = line_prefix(name);
    let mut key = prefix.clone();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    (prefix, key)
}

#[tonic::async_trait]
impl Election for EtcdServer {
    /// etcd's v3election Campaign: join the line under `name/` with the
    /// lease's key, and wait to be first.
    async fn campaign(&self, req: Request<CampaignRequest>) -> Res<CampaignResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        if req.name.is_empty() {
            return Err(EtcdError::EmptyKey.into());
        }
        let (prefix, key) = line_key(&req.name, req.lease);
        self.check_line_read(&h, &prefix)?;
        let (rev, held) = self
            .claim(&h, &key, req.lease, req.value.clone())
            .await
            .map_err(recipe_error)?;
        let leader = LeaderKey {
            name: req.name,
            key: key.clone(),
            rev,
            lease: req.lease,
        };
        if held.is_some_and(|v| v != req.value) {
            // Campaigning again with a new value proclaims it (etcd's Campaign).
            self.proclaim_as(&h, leader.clone(), req.value).await?;
        }
        self.wait_for_turn(&prefix, rev).await?;
        if !self.exists(&key)? {
            // The lease expired while waiting: this candidate is out of the race.
            return Err(recipe_error(EtcdError::LeaseNotFound.into()));
        }
        Ok(Response::new(CampaignResponse {
            header: Some(self.header()),
            leader: Some(leader),
        }))
    }

    async fn proclaim(&self, req: Request<ProclaimRequest>) -> Res<ProclaimResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let req = req.into_inner();
        let Some(leader) = req.leader else {
            return Err(EtcdError::InvalidArgument("leader key is not provided".into()).into());
        };
        let rev = self.proclaim_as(&h, leader, req.value).await?;
        Ok(Response::new(ProclaimResponse {
            header: Some(self.header_at(rev)),
        }))
    }

    async fn leader(&self, req: Request<LeaderRequest>) -> Res<LeaderResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let name = req.into_inner().name;
        self.barrier(false).await?;
        self.check_line_read(&h, &line_prefix(&name))?;
        match self.first_in_line(&line_prefix(&name))? {
            Some(kv) => Ok(Response::new(LeaderResponse {
                header: Some(self.header()),
                kv: Some(kv),
            })),
            // etcd's ErrElectionNoLeader, a plain error of its recipes: code Unknown.
            None => Err(Status::unknown("election: no leader")),
        }
    }

    type ObserveStream = BoxStream<LeaderResponse>;

    /// Streams the leader's key and value each time either changes.
    async fn observe(&self, req: Request<LeaderRequest>) -> Res<Self::ObserveStream> {
        let h = self.header_of(&self.caller(&req)).await?;
        let prefix = line_prefix(&req.into_inner().name);
        self.check_line_read(&h, &prefix)?;
        let (tx, rx) = mpsc::channel(16);
        let me = self.clone();
        tokio::spawn(async move {
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                let mut events = lock_store(&me.inner.store).subscribe();
                match me.first_in_line(&prefix) {
                    Ok(Some(kv)) => {
                        let now = Some((kv.key.clone(), kv.mod_revision));
                        if now != last {
                            last = now;
                            let resp = LeaderResponse {
                                header: Some(me.header()),
                                kv: Some(kv),
                            };
                            if tx.send(Ok(resp)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => last = None,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                // Wait for any change under the prefix, or for the client to go.
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        r = events.recv() => match r {
                            Ok(ev) if !ev.events.iter().any(|e| {
                                e.kv.as_ref().is_some_and(|k| k.key.starts_with(&prefix))
                            }) => continue,
                            Err(broadcast::error::RecvError::Closed) => return,
                            _ => break,
                        },
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, req: Request<ResignRequest>) -> Res<ResignResponse> {
        let h = self.header_of(&self.caller(&req)).await?;
        let Some(leader) = req.into_inner().leader else {
            return Err(EtcdError::InvalidArgument("leader key is not provided".into()).into());
        };
        let delete = request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: leader.key.clone(),
            ..DeleteRangeRequest::default()
        });
        let txn = if_created_at(&leader.key, leader.rev, delete, None);
        let (_, rev) = self
            .propose_as(&h, internal_request::Request::Txn(txn))
            .await?;
        Ok(Response::new(ResignResponse {
            header: Some(self.header_at(rev)),
        }))
    }
}
