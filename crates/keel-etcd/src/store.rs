//! The etcd state machine: MVCC key-value store, leases, members and alarms,
//! changed only by applying Raft entries, the same way on every replica.
//!
//! As in etcd, every stored version of a key lives in the backend under its
//! revision (`main`, `sub`), and an in-memory index maps each key to its
//! revisions (etcd's treeIndex); a range at revision R finds, per key, the
//! newest revision at or below R. The backend is redb, an embedded B-tree in
//! bbolt's role: values are on disk, not in memory.
//!
//! Applies do not touch redb. As etcd's backend keeps its batch transaction's
//! writes in a read buffer (`txReadBuffer`) that reads consult before bbolt,
//! every write of an apply goes into a [`WriteBuffer`] that reads see at once;
//! every `PERSIST_INTERVAL` (and at a clean stop) the buffer is handed to the
//! persister thread, which writes it to redb in one transaction, fsynced
//! together with the applied Raft index, while the Raft loop goes on applying
//! into a fresh buffer. The Raft log is kept from the last durable index on,
//! so a crash replays the entries after it (etcd's consistent index does the
//! same). Reads look in the buffer being filled, then the one being persisted,
//! then redb: a version leaves the buffers only once redb holds it durably.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_raft::{ConfChangeType, ConfChangeV2, ConfState};
use prost::Message as _;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, watch};

use crate::auth::{AuthStore, Need};
use crate::error::EtcdError;
use crate::pb::etcdserverpb::{
    compare, request_op, response_op, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::pb::keelpb::{
    internal_request, AuthState, InternalRequest, MemberInfo, RequestHeader, SnapshotKv,
    SnapshotLease, StateSnapshot,
};
use crate::pb::mvccpb::{event::EventType, Event, KeyValue};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
const MEMBERS: TableDefinition<u64, &[u8]> = TableDefinition::new("members");

/// How often applied state is fsynced, by default (etcd's backend batch interval is 100 ms).
pub const PERSIST_INTERVAL: Duration = Duration::from_millis(100);
/// etcd's `MaxLeaseTTL`.
pub const LEASE_TTL_MAX: i64 = 9_000_000_000;
/// Flag byte before a stored KeyValue.
const PUT: u8 = 0;
const TOMBSTONE: u8 = 1;

/// A revision: the store's `main` revision and the `sub` index of a change inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rev {
    pub main: i64,
    pub sub: i64,
}

impl Rev {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        b[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        b
    }
    fn from_bytes(b: &[u8]) -> Option<Rev> {
        if b.len() != 16 {
            return None;
        }
        Some(Rev {
            main: u64::from_be_bytes(b[..8].try_into().ok()?) as i64,
            sub: u64::from_be_bytes(b[8..].try_into().ok()?) as i64,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    rev: Rev,
    tombstone: bool,
    /// Key and value bytes of this version, counted against the quota.
    bytes: u32,
}

/// Writes applied but not yet in redb, readable at once (etcd's txReadBuffer).
#[derive(Default)]
struct WriteBuffer {
    /// Stored versions by revision (flag byte, then the KeyValue); `None`
    /// removes one (compaction).
    kv: BTreeMap<Rev, Option<Vec<u8>>>,
    meta: BTreeMap<&'static str, Vec<u8>>,
    /// Lease TTLs by id; `None` removes the lease.
    leases: BTreeMap<i64, Option<i64>>,
    /// The whole members table, when it changed.
    members: Option<Vec<(u64, Vec<u8>)>>,
    /// The applied Raft index that redb holds once this buffer is written.
    applied: u64,
}

impl WriteBuffer {
    fn is_empty(&self) -> bool {
        self.kv.is_empty()
            && self.meta.is_empty()
            && self.leases.is_empty()
            && self.members.is_none()
    }

    /// Writes the buffer into `tx`, in one redb transaction.
    fn write_to(&self, tx: &redb::WriteTransaction) -> Result<(), EtcdError> {
        let mut kv = tx.open_table(KV).map_err(internal)?;
        for (rev, v) in &self.kv {
            let k = rev.to_bytes();
            match v {
                Some(v) => kv.insert(k.as_slice(), v.as_slice()),
                None => kv.remove(k.as_slice()),
            }
            .map_err(internal)?;
        }
        let mut meta = tx.open_table(META).map_err(internal)?;
        for (k, v) in &self.meta {
            meta.insert(*k, v.as_slice()).map_err(internal)?;
        }
        let mut leases = tx.open_table(LEASES).map_err(internal)?;
        for (id, ttl) in &self.leases {
            match ttl {
                Some(ttl) => leases.insert(*id, *ttl),
                None => leases.remove(*id),
            }
            .map_err(internal)?;
        }
        if let Some(list) = &self.members {
            let mut members = tx.open_table(MEMBERS).map_err(internal)?;
            members.retain(|_, _| false).map_err(internal)?;
            for (id, m) in list {
                members.insert(*id, m.as_slice()).map_err(internal)?;
            }
        }
        Ok(())
    }
}

/// The thread that writes full buffers to redb, one durable transaction each,
/// in the order they were handed over.
struct Persister {
    jobs: Option<std::sync::mpsc::Sender<Arc<WriteBuffer>>>,
    done: std::sync::mpsc::Receiver<Result<u64, EtcdError>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Persister {
    fn start(db: Arc<Database>) -> Result<Persister, EtcdError> {
        let (jobs, rx) = std::sync::mpsc::channel::<Arc<WriteBuffer>>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("etcd-persist".into())
            .spawn(move || {
                for job in rx {
                    let r = (|| -> Result<u64, EtcdError> {
                        let mut tx = db.begin_write().map_err(internal)?;
                        tx.set_durability(Durability::Immediate);
                        job.write_to(&tx)?;
                        tx.commit().map_err(internal)?;
                        Ok(job.applied)
                    })();
                    if done_tx.send(r).is_err() {
                        return;
                    }
                }
            })
            .map_err(internal)?;
        Ok(Persister {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for Persister {
    fn drop(&mut self) {
        // The thread ends when its queue closes; joining it lets go of the
        // database, so the same directory can be opened again at once.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Events of one revision, as watchers receive them.
#[derive(Debug, Clone)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// What applying an entry produced, for the proposer.
#[derive(Debug, Clone)]
pub enum Applied {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(i64),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(i64),
    Alarm(AlarmResponse),
    Members(Vec<MemberInfo>),
    /// An auth store change (its response is only a header).
    Auth,
    /// Authenticate's simple token.
    Token(String),
    /// A cluster metadata record: what it did, or why it changed nothing
    /// (a refusal is an answer, not a failure of the store).
    Metadata(Result<keel_meta::Applied, keel_meta::MetaError>),
    Noop,
}

/// The output and the store's revision right after the apply (for the header).
pub type ApplyResult = Result<(Applied, i64), EtcdError>;

/// A lease as the replicated state knows it (expiry is the leader's business).
#[derive(Debug, Clone, Default)]
pub struct Lease {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// Static facts a node needs to create its state machine.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub cluster_id: u64,
    /// Members of a brand-new cluster.
    pub initial_members: Vec<MemberInfo>,
    /// Bytes the backend may hold before the NOSPACE alarm (etcd's quota-backend-bytes).
    pub quota_bytes: u64,
    /// The shortest lease TTL, in seconds (etcd: 1.5 election timeouts, rounded up).
    pub lease_ttl_min: i64,
    /// How often applied writes are handed to the persister ([`PERSIST_INTERVAL`]).
    pub persist_interval: Duration,
    /// How long a simple token lives without use (etcd's `--auth-token-ttl`).
    pub token_ttl: Duration,
    /// A backup to start a brand-new cluster from (`keel snapshot restore`):
    /// its keys, history and leases, with `initial_members` as the membership.
    pub seed: Option<StateSnapshot>,
}

pub struct Store {
    db: Arc<Database>,
    /// Writes since the last hand-over to the persister.
    buf: WriteBuffer,
    /// The buffer the persister is writing, until redb holds it durably.
    flushing: Option<Arc<WriteBuffer>>,
    persister: Persister,
    config: StoreConfig,
    index: BTreeMap<Vec<u8>, Vec<Version>>,
    revision: i64,
    compacted: i64,
    applied: (u64, u64),
    conf_state: ConfState,
    leases: BTreeMap<i64, Lease>,
    members: BTreeMap<u64, MemberInfo>,
    alarms: BTreeSet<i32>,
    auth: AuthStore,
    /// Events applied in the current batch, published when it is committed.
    pending_events: Vec<RevisionEvents>,
    events: broadcast::Sender<Arc<RevisionEvents>>,
    last_persist: Instant,
    durable_index: u64,
    /// Where peers are reached, updated from membership (shared with the transport).
    peer_addresses: keel_raft::transport::AddressBook,
    /// Approximate bytes of stored values, checked against the quota.
    size_bytes: u64,
    /// The cluster metadata (keel-meta), applied beside the etcd state.
    metadata: keel_meta::Image,
    /// Whether `metadata` changed in the current batch.
    metadata_changed: bool,
    /// Every node's view of the metadata, published after each batch that changed it.
    metadata_tx: watch::Sender<Arc<keel_meta::Image>>,
}

/// Up to this many leases, a range delete finds a deleted key's lease by
/// looking in each, instead of reading the key's value.
const DELETE_LEASES_SCANNED_MAX: usize = 64;

/// Watch subscribers that fall this many revisions behind catch up from the backend.
pub const WATCH_BROADCAST_CAPACITY: usize = 4096;

impl Store {
    pub fn open(
        dir: &Path,
        config: StoreConfig,
        peer_addresses: keel_raft::transport::AddressBook,
    ) -> Result<Store, EtcdError> {
        std::fs::create_dir_all(dir).map_err(internal)?;
        let db = Arc::new(Database::create(dir.join("kv.redb")).map_err(internal)?);
        let (events, _) = broadcast::channel(WATCH_BROADCAST_CAPACITY);
        let persister = Persister::start(db.clone())?;
        let token_ttl = config.token_ttl;
        let mut s = Store {
            db,
            buf: WriteBuffer::default(),
            flushing: None,
            persister,
            config,
            index: BTreeMap::new(),
            revision: 1,
            compacted: 0,
            applied: (0, 0),
            conf_state: ConfState::default(),
            leases: BTreeMap::new(),
            members: BTreeMap::new(),
            alarms: BTreeSet::new(),
            auth: AuthStore::new(token_ttl),
            pending_events: Vec::new(),
            events,
            last_persist: Instant::now(),
            durable_index: 0,
            peer_addresses,
            size_bytes: 0,
            metadata: keel_meta::Image::default(),
            metadata_changed: false,
            metadata_tx: watch::channel(Arc::new(keel_meta::Image::default())).0,
        };
        s.load()?;
        Ok(s)
    }

    /// Rebuilds the in-memory index, leases and members from the backend.
    fn load(&mut self) -> Result<(), EtcdError> {
        let rtx = self.db.begin_read().map_err(internal)?;
        self.index.clear();
        self.leases.clear();
        self.members.clear();
        self.alarms.clear();
        self.size_bytes = 0;
        if let Ok(meta) = rtx.open_table(META) {
            let get = |k: &str| -> Option<Vec<u8>> {
                meta.get(k).ok().flatten().map(|v| v.value().to_vec())
            };
            if let Some(v) = get("revision") {
                self.revision = i64_from(&v);
            }
            if let Some(v) = get("compacted") {
                self.compacted = i64_from(&v);
            }
            if let Some(v) = get("applied") {
                if v.len() == 16 {
                    self.applied = (
                        u64::from_le_bytes(v[..8].try_into().expect("8")),
                        u64::from_le_bytes(v[8..].try_into().expect("8")),
                    );
                }
            }
            if let Some(v) = get("conf_state") {
                self.conf_state = decode_conf_state(&v);
            }
            let auth = get("auth")
                .map(|v| AuthState::decode(v.as_slice()))
                .transpose()
                .map_err(internal)?;
            self.auth.load(auth.unwrap_or_default());
            self.metadata = match get("metadata") {
                Some(v) => keel_meta::Image::decode_from(&v).map_err(internal)?,
                None => keel_meta::Image::default(),
            };
            self.metadata_tx
                .send_replace(Arc::new(self.metadata.clone()));
            if let Some(v) = get("alarms") {
                self.alarms = v
                    .chunks(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                    .collect();
            }
        }
        if let Ok(leases) = rtx.open_table(LEASES) {
            for row in leases.iter().map_err(internal)? {
                let (id, ttl) = row.map_err(internal)?;
                self.leases.insert(
                    id.value(),
                    Lease {
                        ttl: ttl.value(),
                        keys: BTreeSet::new(),
                    },
                );
            }
        }
        if let Ok(members) = rtx.open_table(MEMBERS) {
            for row in members.iter().map_err(internal)? {
                let (id, m) = row.map_err(internal)?;
                let m = MemberInfo::decode(m.value()).map_err(internal)?;
                self.members.insert(id.value(), m);
            }
        }
        if let Ok(kv) = rtx.open_table(KV) {
            for row in kv.iter().map_err(internal)? {
                let (k, v) = row.map_err(internal)?;
                let rev = Rev::from_bytes(k.value())
                    .ok_or_else(|| EtcdError::Internal("bad revision key in backend".into()))?;
                let (tombstone, kv) = decode_value(v.value())?;
                let bytes = version_bytes(&kv);
                self.size_bytes += u64::from(bytes);
                self.index.entry(kv.key.clone()).or_default().push(Version {
                    rev,
                    tombstone,
                    bytes,
                });
            }
        }
        // Lease attachments follow each key's live version.
        let live: Vec<(Vec<u8>, Rev)> = self
            .index
            .iter()
            .filter_map(|(k, vs)| {
                vs.last()
                    .filter(|v| !v.tombstone)
                    .map(|v| (k.clone(), v.rev))
            })
            .collect();
        for (key, rev) in live {
            if let Some(kv) = read_stored(&rtx, rev)? {
                if kv.lease != 0 {
                    if let Some(l) = self.leases.get_mut(&kv.lease) {
                        l.keys.insert(key);
                    }
                }
            }
        }
        self.durable_index = self.applied.0;
        self.publish_peers();
        Ok(())
    }

    fn publish_peers(&self) {
        let mut book = self.peer_addresses.write().expect("address book lock");
        for m in self.members.values() {
            if let Some(url) = m.peer_urls.first() {
                book.insert(m.id, strip_scheme(url).to_string());
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RevisionEvents>> {
        self.events.subscribe()
    }
    pub fn revision(&self) -> i64 {
        self.revision
    }
    pub fn compacted(&self) -> i64 {
        self.compacted
    }
    pub fn cluster_id(&self) -> u64 {
        self.config.cluster_id
    }
    pub fn members(&self) -> Vec<MemberInfo> {
        self.members.values().cloned().collect()
    }
    pub fn leases(&self) -> &BTreeMap<i64, Lease> {
        &self.leases
    }
    pub fn alarms(&self) -> Vec<i32> {
        self.alarms.iter().copied().collect()
    }
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    pub fn quota_bytes(&self) -> u64 {
        self.config.quota_bytes
    }
    pub fn lease_ttl_min(&self) -> i64 {
        self.config.lease_ttl_min
    }
    /// The cluster metadata, as applied so far.
    pub fn metadata(&self) -> &keel_meta::Image {
        &self.metadata
    }

    /// The cluster metadata after each batch that changed it.
    pub fn watch_metadata(&self) -> watch::Receiver<Arc<keel_meta::Image>> {
        self.metadata_tx.subscribe()
    }

    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }
    /// The last Raft index applied here.
    pub fn applied_index(&self) -> u64 {
        self.applied.0
    }

    /// A stored version as the buffers show it: `Some(None)` if a buffer
    /// removed it, `None` if neither buffer knows it (then redb does).
    fn buffered(&self, rev: Rev) -> Option<Option<&[u8]>> {
        if let Some(v) = self.buf.kv.get(&rev) {
            return Some(v.as_deref());
        }
        let v = self.flushing.as_ref()?.kv.get(&rev)?;
        Some(v.as_deref())
    }

    /// A reader of stored versions: the buffers first, then redb (opened on
    /// the first miss). Valid while the store is not changed.
    fn reader(&self) -> impl FnMut(Rev) -> Result<Option<KeyValue>, EtcdError> + '_ {
        let mut rtx: Option<redb::ReadTransaction> = None;
        move |rev| match self.buffered(rev) {
            Some(Some(v)) => Ok(Some(decode_value(v)?.1)),
            Some(None) => Ok(None),
            None => {
                if rtx.is_none() {
                    rtx = Some(self.db.begin_read().map_err(internal)?);
                }
                read_stored(rtx.as_ref().expect("opened above"), rev)
            }
        }
    }

    /// One stored version (see [`Store::reader`]).
    fn get_kv(&self, rev: Rev) -> Result<Option<KeyValue>, EtcdError> {
        self.reader()(rev)
    }

    /// Visits stored versions with revisions in `[lo, hi]` in order, as the
    /// buffers and redb together hold them, until `f` returns false.
    fn scan_stored(
        &self,
        lo: Rev,
        hi: Rev,
        mut f: impl FnMut(Rev, &[u8]) -> Result<bool, EtcdError>,
    ) -> Result<(), EtcdError> {
        // The buffers' view of the range, the newer buffer winning.
        let mut buffered: BTreeMap<Rev, Option<&[u8]>> = BTreeMap::new();
        for b in self.flushing.iter().map(|b| &**b).chain([&self.buf]) {
            for (rev, v) in b.kv.range(lo..=hi) {
                buffered.insert(*rev, v.as_deref());
            }
        }
        let mut buffered = buffered.into_iter().peekable();
        let rtx = self.db.begin_read().map_err(internal)?;
        let table = match rtx.open_table(KV) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(internal(e)),
        };
        let (lo_b, hi_b) = (lo.to_bytes(), hi.to_bytes());
        if let Some(t) = &table {
            for row in t
                .range(lo_b.as_slice()..=hi_b.as_slice())
                .map_err(internal)?
            {
                let (k, v) = row.map_err(internal)?;
                let rev = Rev::from_bytes(k.value())
                    .ok_or_else(|| EtcdError::Internal("bad revision key in backend".into()))?;
                // Buffered versions up to this row come first; one at this
                // very revision (or its removal) stands instead of the row.
                let mut shadowed = false;
                while let Some((b_rev, b)) = buffered.next_if(|(r, _)| *r <= rev) {
                    if let Some(b) = b {
                        if !f(b_rev, b)? {
                            return Ok(());
                        }
                    }
                    shadowed = b_rev == rev;
                }
                if shadowed {
                    continue;
                }
                if !f(rev, v.value())? {
                    return Ok(());
                }
            }
        }
        for (rev, b) in buffered {
            if let Some(b) = b {
                if !f(rev, b)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The live version of `key` at revision `at` (current when `None`).
    fn live_rev(&self, key: &[u8], at: Option<i64>) -> Option<Rev> {
        let vs = self.index.get(key)?;
        let v = match at {
            None => vs.last()?,
            Some(at) => vs.iter().rev().find(|v| v.rev.main <= at)?,
        };
        (!v.tombstone).then_some(v.rev)
    }

    fn keys_in_range<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Vec<Version>)> + 'a> {
        if range_end.is_empty() {
            return Box::new(self.index.get_key_value(key).into_iter());
        }
        let end = if range_end == [0] {
            Bound::Unbounded
        } else {
            if range_end <= key {
                return Box::new(std::iter::empty());
            }
            Bound::Excluded(range_end.to_vec())
        };
        Box::new(self.index.range((Bound::Included(key.to_vec()), end)))
    }

    // ---- reads ----------------------------------------------------------

    /// A Range at the request's revision (or the current one).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.range_with(req, self.reader())
    }

    fn range_with(
        &self,
        req: &RangeRequest,
        mut get: impl FnMut(Rev) -> Result<Option<KeyValue>, EtcdError>,
    ) -> Result<RangeResponse, EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        let at = if req.revision <= 0 {
            self.revision
        } else {
            req.revision
        };
        if at > self.revision {
            return Err(EtcdError::FutureRev);
        }
        if at < self.compacted {
            return Err(EtcdError::Compacted);
        }
        let revs: Vec<Rev> = self
            .keys_in_range(&req.key, &req.range_end)
            .filter_map(|(_, vs)| {
                let v = vs.iter().rev().find(|v| v.rev.main <= at)?;
                (!v.tombstone).then_some(v.rev)
            })
            .collect();
        let count = revs.len() as i64;
        let filtered = req.min_mod_revision > 0
            || req.max_mod_revision > 0
            || req.min_create_revision > 0
            || req.max_create_revision > 0;
        let sorted = req.sort_order != 0 && !(req.sort_target == 0 && req.sort_order == 1); // KEY ascend is the natural order
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        if req.count_only {
            return Ok(RangeResponse {
                header: None,
                kvs: vec![],
                more: false,
                count,
            });
        }
        // Without filters or sorting, read only what the limit lets through.
        let take = if filtered || sorted {
            usize::MAX
        } else {
            limit.saturating_add(1)
        };
        let mut kvs = Vec::new();
        for rev in revs.into_iter().take(take) {
            let Some(mut kv) = get(rev)? else { continue };
            if (req.min_mod_revision > 0 && kv.mod_revision < req.min_mod_revision)
                || (req.max_mod_revision > 0 && kv.mod_revision > req.max_mod_revision)
                || (req.min_create_revision > 0 && kv.create_revision < req.min_create_revision)
                || (req.max_create_revision > 0 && kv.create_revision > req.max_create_revision)
            {
                continue;
            }
            if req.keys_only {
                kv.value.clear();
            }
            kvs.push(kv);
        }
        if sorted {
            use crate::pb::etcdserverpb::range_request::SortTarget;
            let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
            kvs.sort_by(|a, b| match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            });
            if req.sort_order == 2 {
                kvs.reverse();
            }
        }
        let more = kvs.len() > limit;
        kvs.truncate(limit);
        Ok(RangeResponse {
            header: None,
            kvs,
            more,
            count,
        })
    }

    /// Events of revisions in `[from, to]` for keys in `[key, range_end)`, read
    /// from the backend, for a watcher catching up. At most `max` revisions.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        max: usize,
    ) -> Result<Vec<RevisionEvents>, EtcdError> {
        let lo = Rev { main: from, sub: 0 };
        let hi = Rev {
            main: to,
            sub: i64::MAX,
        };
        let mut out: Vec<RevisionEvents> = Vec::new();
        let mut get = self.reader();
        self.scan_stored(lo, hi, |rev, v| {
            let (tombstone, kv) = decode_value(v)?;
            if out.last().map(|r| r.revision) != Some(rev.main) {
                if out.len() == max {
                    return Ok(false);
                }
                out.push(RevisionEvents {
                    revision: rev.main,
                    events: Vec::new(),
                });
            }
            let prev_kv = match self.prev_version(&kv.key, rev) {
                Some(p) => get(p)?,
                None => None,
            };
            out.last_mut().expect("pushed above").events.push(Event {
                r#type: if tombstone {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(kv),
                prev_kv,
            });
            Ok(true)
        })?;
        Ok(out)
    }

    /// The live version of `key` just before `rev`, if any.
    fn prev_version(&self, key: &[u8], rev: Rev) -> Option<Rev> {
        let vs = self.index.get(key)?;
        let v = vs.iter().rev().find(|v| v.rev < rev)?;
        (!v.tombstone).then_some(v.rev)
    }

    // ---- writes ---------------------------------------------------------

    fn write_version(&mut self, rev: Rev, kv: &KeyValue, tombstone: bool) -> Result<(), EtcdError> {
        let mut buf = Vec::with_capacity(kv.encoded_len() + 1);
        buf.push(if tombstone { TOMBSTONE } else { PUT });
        kv.encode(&mut buf).map_err(internal)?;
        self.buf.kv.insert(rev, Some(buf));
        let bytes = version_bytes(kv);
        self.size_bytes += u64::from(bytes);
        self.index.entry(kv.key.clone()).or_default().push(Version {
            rev,
            tombstone,
            bytes,
        });
        Ok(())
    }

    fn check_put(&self, req: &PutRequest) -> Result<(), EtcdError> {
        if req.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
        if req.ignore_value && !req.value.is_empty() {
            return Err(EtcdError::ValueProvided);
        }
        if req.ignore_lease && req.lease != 0 {
            return Err(EtcdError::LeaseProvided);
        }
        if !req.ignore_lease && req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && self.live_rev(&req.key, None).is_none() {
            return Err(EtcdError::KeyNotFound);
        }
        Ok(())
    }

    fn put(
        &mut self,
        req: &PutRequest,
        rev: Rev,
        events: &mut Vec<Event>,
    ) -> Result<PutResponse, EtcdError> {
        let prev = match self.live_rev(&req.key, None) {
            Some(r) => self.get_kv(r)?,
            None => None,
        };
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (rev.main, 1),
        };
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let lease = if req.ignore_lease {
            prev.as_ref().map_or(0, |p| p.lease)
        } else {
            req.lease
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        if let Some(p) = &prev {
            if p.lease != 0 && p.lease != lease {
                if let Some(l) = self.leases.get_mut(&p.lease) {
                    l.keys.remove(&req.key);
                }
            }
        }
        if lease != 0 {
            if let Some(l) = self.leases.get_mut(&lease) {
                l.keys.insert(req.key.clone());
            }
        }
        self.write_version(rev, &kv, false)?;
        events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        main: i64,
        sub: &mut i64,
        events: &mut Vec<Event>,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        // Nobody needs the deleted values when the client did not ask for
        // them and no watcher is subscribed (one that subscribes later reads
        // history, prev_kv included, from the backend): then the tombstones
        // come from the key index alone, as etcd's mvcc writes them, without
        // reading a value per key. Leases are few enough to look in each.
        let values_needed = req.prev_kv
            || self.events.receiver_count() > 0
            || self.leases.len() > DELETE_LEASES_SCANNED_MAX;
        if !values_needed {
            let keys: Vec<Vec<u8>> = self
                .keys_in_range(&req.key, &req.range_end)
                .filter(|(_, vs)| vs.last().is_some_and(|v| !v.tombstone))
                .map(|(k, _)| k.clone())
                .collect();
            let deleted = keys.len() as i64;
            for key in keys {
                self.delete_key(key, None, Rev { main, sub: *sub }, events)?;
                *sub += 1;
            }
            return Ok(DeleteRangeResponse {
                header: None,
                deleted,
                prev_kvs: vec![],
            });
        }
        let live: Vec<Rev> = self
            .keys_in_range(&req.key, &req.range_end)
            .filter_map(|(_, vs)| vs.last().filter(|v| !v.tombstone).map(|v| v.rev))
            .collect();
        // One reader for all of them: a range delete may cover many keys.
        let prevs = {
            let mut get = self.reader();
            let mut prevs = Vec::with_capacity(live.len());
            for r in live {
                prevs.extend(get(r)?);
            }
            prevs
        };
        let deleted = prevs.len() as i64;
        let mut prev_kvs = Vec::new();
        for prev in prevs {
            if req.prev_kv {
                prev_kvs.push(prev.clone());
            }
            self.delete_key(
                prev.key.clone(),
                Some(prev),
                Rev { main, sub: *sub },
                events,
            )?;
            *sub += 1;
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted,
            prev_kvs: if req.prev_kv { prev_kvs } else { vec![] },
        })
    }

    /// Writes `key`'s tombstone at `rev`. With its live version `prev` read,
    /// the key leaves that version's lease and the event carries it; without,
    /// the key leaves whichever lease holds it (there are few: see
    /// `DELETE_LEASES_SCANNED_MAX`).
    fn delete_key(
        &mut self,
        key: Vec<u8>,
        prev: Option<KeyValue>,
        rev: Rev,
        events: &mut Vec<Event>,
    ) -> Result<(), EtcdError> {
        match &prev {
            Some(p) if p.lease != 0 => {
                if let Some(l) = self.leases.get_mut(&p.lease) {
                    l.keys.remove(&key);
                }
            }
            Some(_) => {}
            None => {
                for l in self.leases.values_mut() {
                    l.keys.remove(&key);
                }
            }
        }
        let tomb = KeyValue {
            key,
            mod_revision: rev.main,
            ..KeyValue::default()
        };
        self.write_version(rev, &tomb, true)?;
        events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(tomb),
            prev_kv: prev,
        });
        Ok(())
    }

    fn compare(&self, c: &Compare) -> Result<bool, EtcdError> {
        self.compare_with(c, self.reader())
    }

    fn compare_with(
        &self,
        c: &Compare,
        mut get: impl FnMut(Rev) -> Result<Option<KeyValue>, EtcdError>,
    ) -> Result<bool, EtcdError> {
        use compare::{CompareResult, CompareTarget, TargetUnion};
        let revs: Vec<Rev> = if c.range_end.is_empty() {
            self.live_rev(&c.key, None).into_iter().collect()
        } else {
            self.keys_in_range(&c.key, &c.range_end)
                .filter_map(|(_, vs)| vs.last().filter(|v| !v.tombstone).map(|v| v.rev))
                .collect()
        };
        let mut kvs = Vec::new();
        for r in revs {
            if let Some(kv) = get(r)? {
                kvs.push(kv);
            }
        }
        let target = CompareTarget::try_from(c.target)
            .map_err(|_| EtcdError::InvalidArgument("unknown compare target".into()))?;
        let result = CompareResult::try_from(c.result)
            .map_err(|_| EtcdError::InvalidArgument("unknown compare result".into()))?;
        // A missing key compares as zero revisions/version (etcd: a Value or Lease
        // compare against a missing key fails).
        if kvs.is_empty() {
            match target {
                CompareTarget::Value | CompareTarget::Lease => {
                    // etcd treats a missing key's lease as 0.
                    if target == CompareTarget::Lease {
                        kvs.push(KeyValue::default());
                    } else {
                        return Ok(false);
                    }
                }
                _ => kvs.push(KeyValue::default()),
            }
        }
        let ok = kvs.iter().all(|kv| {
            let ord = match (&c.target_union, target) {
                (Some(TargetUnion::Version(v)), CompareTarget::Version) => kv.version.cmp(v),
                (Some(TargetUnion::CreateRevision(v)), CompareTarget::Create) => {
                    kv.create_revision.cmp(v)
                }
                (Some(TargetUnion::ModRevision(v)), CompareTarget::Mod) => kv.mod_revision.cmp(v),
                (Some(TargetUnion::Value(v)), CompareTarget::Value) => kv.value.cmp(v),
                (Some(TargetUnion::Lease(v)), CompareTarget::Lease) => kv.lease.cmp(v),
                (None, CompareTarget::Version) => kv.version.cmp(&0),
                (None, CompareTarget::Create) => kv.create_revision.cmp(&0),
                (None, CompareTarget::Mod) => kv.mod_revision.cmp(&0),
                (None, CompareTarget::Lease) => kv.lease.cmp(&0),
                (None, CompareTarget::Value) => kv.value.as_slice().cmp(&[][..]),
                _ => return false,
            };
            match result {
                CompareResult::Equal => ord.is_eq(),
                CompareResult::NotEqual => ord.is_ne(),
                CompareResult::Greater => ord.is_gt(),
                CompareResult::Less => ord.is_lt(),
            }
        });
        Ok(ok)
    }

    /// Checks a txn before anything of it is applied (etcd's checkTxn): every
    /// write must be able to succeed, so a txn applies whole or not at all.
    fn check_ops(&self, ops: &[RequestOp]) -> Result<(), EtcdError> {
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) => self.check_put(p)?,
                Some(request_op::Request::RequestRange(r)) => {
                    let at = if r.revision <= 0 {
                        self.revision
                    } else {
                        r.revision
                    };
                    if at > self.revision + 1 {
                        return Err(EtcdError::FutureRev);
                    }
                    if at < self.compacted {
                        return Err(EtcdError::Compacted);
                    }
                }
                Some(request_op::Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                    return Err(EtcdError::EmptyKey);
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    self.check_ops(&t.success)?;
                    self.check_ops(&t.failure)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn txn(
        &mut self,
        req: &TxnRequest,
        main: i64,
        sub: &mut i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse, EtcdError> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    // Reads inside a write txn see the txn's own earlier writes.
                    let mut r = r.clone();
                    if r.revision <= 0 || r.revision > self.revision {
                        r.revision = 0;
                    }
                    let saved = self.revision;
                    if !events.is_empty() {
                        self.revision = main;
                    }
                    // The write buffer holds this txn's earlier writes.
                    let res = self.range_with(&r, self.reader());
                    self.revision = saved;
                    response_op::Response::ResponseRange(res?)
                }
                Some(request_op::Request::RequestPut(p)) => {
                    let r = self.put(p, Rev { main, sub: *sub }, events)?;
                    *sub += 1;
                    response_op::Response::ResponsePut(r)
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    response_op::Response::ResponseDeleteRange(
                        self.delete_range(d, main, sub, events)?,
                    )
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    response_op::Response::ResponseTxn(self.txn(t, main, sub, events)?)
                }
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(resp),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    /// A txn without writes, evaluated against committed state.
    pub fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse, EtcdError> {
        let mut get = self.reader();
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare_with(c, &mut get)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    response_op::Response::ResponseRange(self.range_with(r, &mut get)?)
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    response_op::Response::ResponseTxn(self.read_only_txn(t)?)
                }
                _ => continue,
            };
            responses.push(ResponseOp {
                response: Some(resp),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn compact(&mut self, req: &CompactionRequest) -> Result<i64, EtcdError> {
        let rev = req.revision;
        if rev <= self.compacted {
            return Err(EtcdError::Compacted);
        }
        if rev > self.revision {
            return Err(EtcdError::FutureRev);
        }
        let mut drop = Vec::new();
        let mut emptied = Vec::new();
        for (key, vs) in self.index.iter_mut() {
            // Keep the newest version at or below `rev` unless it is a tombstone.
            let Some(keep) = vs.iter().rposition(|v| v.rev.main <= rev) else {
                continue;
            };
            let cut = if vs[keep].tombstone { keep + 1 } else { keep };
            drop.extend(vs.drain(..cut));
            if vs.is_empty() {
                emptied.push(key.clone());
            }
        }
        for k in emptied {
            self.index.remove(&k);
        }
        let mut freed = 0u64;
        for v in &drop {
            self.buf.kv.insert(v.rev, None);
            freed += u64::from(v.bytes);
        }
        self.size_bytes = self.size_bytes.saturating_sub(freed);
        self.compacted = rev;
        self.put_meta("compacted", &rev.to_le_bytes())?;
        Ok(rev)
    }

    fn put_meta(&mut self, k: &'static str, v: &[u8]) -> Result<(), EtcdError> {
        self.buf.meta.insert(k, v.to_vec());
        Ok(())
    }

    fn lease_grant(&mut self, req: &LeaseGrantRequest) -> Result<LeaseGrantResponse, EtcdError> {
        if req.id <= 0 {
            return Err(EtcdError::InvalidArgument(
                "lease id must be positive".into(),
            ));
        }
        if self.leases.contains_key(&req.id) {
            return Err(EtcdError::LeaseExist);
        }
        if req.ttl > LEASE_TTL_MAX {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let ttl = req.ttl.max(self.config.lease_ttl_min);
        self.leases.insert(
            req.id,
            Lease {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        self.buf.leases.insert(req.id, Some(ttl));
        Ok(LeaseGrantResponse {
            header: None,
            id: req.id,
            ttl,
            error: String::new(),
        })
    }

    fn lease_revoke(
        &mut self,
        req: &LeaseRevokeRequest,
        events: &mut Vec<Event>,
    ) -> Result<i64, EtcdError> {
        let Some(lease) = self.leases.remove(&req.id) else {
            return Err(EtcdError::LeaseNotFound);
        };
        self.buf.leases.insert(req.id, None);
        let main = self.revision + 1;
        let mut sub = 0;
        for key in lease.keys {
            if let Some(r) = self.live_rev(&key, None) {
                if let Some(prev) = self.get_kv(r)? {
                    self.delete_key(prev.key.clone(), Some(prev), Rev { main, sub }, events)?;
                    sub += 1;
                }
            }
        }
        Ok(req.id)
    }

    fn alarm(&mut self, req: &AlarmRequest) -> Result<AlarmResponse, EtcdError> {
        use crate::pb::etcdserverpb::alarm_request::AlarmAction;
        let action = AlarmAction::try_from(req.action).unwrap_or(AlarmAction::Get);
        let member = |a: i32| AlarmMember {
            member_id: req.member_id,
            alarm: a,
        };
        let resp = match action {
            AlarmAction::Get => self.alarms.iter().map(|a| member(*a)).collect(),
            AlarmAction::Activate => {
                if req.alarm == AlarmType::None as i32 {
                    vec![]
                } else {
                    self.alarms.insert(req.alarm);
                    vec![member(req.alarm)]
                }
            }
            AlarmAction::Deactivate => {
                if self.alarms.remove(&req.alarm) {
                    vec![member(req.alarm)]
                } else {
                    vec![]
                }
            }
        };
        let bytes: Vec<u8> = self.alarms.iter().flat_map(|a| a.to_le_bytes()).collect();
        self.put_meta("alarms", &bytes)?;
        Ok(AlarmResponse {
            header: None,
            alarms: resp,
        })
    }

    pub fn no_space(&self) -> bool {
        self.alarms.contains(&(AlarmType::Nospace as i32))
    }

    /// etcd's authApplierV3: may the request's user do what it asks, by the
    /// auth store as it is at this apply? Checked before anything changes.
    fn check_auth(&self, req: &InternalRequest) -> Result<(), EtcdError> {
        use internal_request::Request as R;
        let a = &self.auth;
        if !a.enabled() {
            return Ok(());
        }
        let no_user = RequestHeader::default();
        let h = req.header.as_ref().unwrap_or(&no_user);
        if h.system {
            return Ok(());
        }
        match &req.request {
            Some(R::Put(p)) => self.check_put_auth(h, p),
            Some(R::DeleteRange(d)) => self.check_delete_auth(h, d),
            Some(R::Txn(t)) => self.check_txn_auth(h, t),
            Some(R::LeaseRevoke(r)) => self.check_lease_keys_auth(h, r.id),
            Some(
                R::AuthEnable(_)
                | R::AuthDisable(_)
                | R::UserAdd(_)
                | R::UserDelete(_)
                | R::UserChangePassword(_)
                | R::UserGrantRole(_)
                | R::UserRevokeRole(_)
                | R::RoleAdd(_)
                | R::RoleDelete(_)
                | R::RoleGrantPermission(_)
                | R::RoleRevokePermission(_),
            ) => a.check_admin(h),
            // Only the members themselves write cluster metadata (they send it
            // as a system request; no etcd API makes one).
            Some(R::Metadata(_)) => Err(EtcdError::PermissionDenied),
            // etcd checks neither compaction nor lease grants; alarms and
            // membership are checked where they are taken; Authenticate
            // checks the user itself.
            Some(
                R::Compaction(_)
                | R::LeaseGrant(_)
                | R::Alarm(_)
                | R::MemberUpdate(_)
                | R::LeaseRenewAll(_)
                | R::Authenticate(_),
            )
            | None => Ok(()),
        }
    }

    fn check_put_auth(&self, h: &RequestHeader, p: &PutRequest) -> Result<(), EtcdError> {
        self.auth.check(h, Need::Write, &p.key, &[])?;
        // Attaching a lease whose keys the user may not write would let them
        // revoke those keys (etcd's checkLeasePuts).
        self.check_lease_keys_auth(h, p.lease)?;
        if p.prev_kv {
            self.auth.check(h, Need::Read, &p.key, &[])?;
        }
        Ok(())
    }

    fn check_delete_auth(
        &self,
        h: &RequestHeader,
        d: &DeleteRangeRequest,
    ) -> Result<(), EtcdError> {
        self.auth.check(h, Need::Write, &d.key, &d.range_end)?;
        if d.prev_kv {
            self.auth.check(h, Need::Read, &d.key, &d.range_end)?;
        }
        Ok(())
    }

    fn check_lease_keys_auth(&self, h: &RequestHeader, lease: i64) -> Result<(), EtcdError> {
        if lease == 0 || self.auth.check_admin(h).is_ok() {
            return Ok(());
        }
        if let Some(l) = self.leases.get(&lease) {
            for key in &l.keys {
                self.auth.check(h, Need::Write, key, &[])?;
            }
        }
        Ok(())
    }

    /// Every compare reads, every operation in both branches (nested txns
    /// too) needs what it would need alone.
    pub fn check_txn_auth(&self, h: &RequestHeader, t: &TxnRequest) -> Result<(), EtcdError> {
        let a = &self.auth;
        for c in &t.compare {
            a.check(h, Need::Read, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    a.check(h, Need::Read, &r.key, &r.range_end)?
                }
                Some(request_op::Request::RequestPut(p)) => self.check_put_auth(h, p)?,
                Some(request_op::Request::RequestDeleteRange(d)) => self.check_delete_auth(h, d)?,
                Some(request_op::Request::RequestTxn(inner)) => self.check_txn_auth(h, inner)?,
                None => {}
            }
        }
        Ok(())
    }

    /// Applies an auth store change and writes the new auth state.
    fn apply_auth(
        &mut self,
        req: internal_request::Request,
        index: u64,
    ) -> Result<Applied, EtcdError> {
        use internal_request::Request as R;
        let a = &mut self.auth;
        let out = match req {
            R::Authenticate(r) => {
                // Not a change: only this member's token table.
                let token = format!("{}.{index}", r.simple_token);
                return a.authenticate(&r.name, &token).map(Applied::Token);
            }
            R::AuthEnable(_) => a.auth_enable(),
            R::AuthDisable(_) => {
                a.auth_disable();
                Ok(())
            }
            R::UserAdd(r) => a.user_add(&r),
            R::UserDelete(r) => a.user_delete(&r.name),
            R::UserChangePassword(r) => a.user_change_password(&r),
            R::UserGrantRole(r) => a.user_grant_role(&r),
            R::UserRevokeRole(r) => a.user_revoke_role(&r),
            R::RoleAdd(r) => a.role_add(&r.name),
            R::RoleDelete(r) => a.role_delete(&r.role),
            R::RoleGrantPermission(r) => a.role_grant_permission(&r),
            R::RoleRevokePermission(r) => a.role_revoke_permission(&r),
            _ => return Err(EtcdError::Internal("not an auth request".into())),
        };
        out?;
        let state = self.auth.state().encode_to_vec();
        self.put_meta("auth", &state)?;
        Ok(Applied::Auth)
    }

    /// Applies one client request; the revision advances if anything changed.
    fn apply_request(&mut self, req: InternalRequest, index: u64) -> Result<Applied, EtcdError> {
        use internal_request::Request as R;
        self.check_auth(&req)?;
        let main = self.revision + 1;
        let mut events = Vec::new();
        let is_write = matches!(req.request, Some(R::Put(_)) | Some(R::Txn(_)));
        // etcd's quota: once NOSPACE is raised, writes that grow the store are refused.
        if is_write && (self.no_space() || self.size_bytes > self.config.quota_bytes) {
            if !self.no_space() {
                self.alarms.insert(AlarmType::Nospace as i32);
                let bytes: Vec<u8> = self.alarms.iter().flat_map(|a| a.to_le_bytes()).collect();
                self.put_meta("alarms", &bytes)?;
            }
            if let Some(R::Txn(t)) = &req.request {
                if !txn_has_put(t) {
                    return self.apply_request_unchecked(req, main, index, &mut events);
                }
            }
            return Err(EtcdError::NoSpace);
        }
        self.apply_request_unchecked(req, main, index, &mut events)
    }

    fn apply_request_unchecked(
        &mut self,
        req: InternalRequest,
        main: i64,
        index: u64,
        events: &mut Vec<Event>,
    ) -> Result<Applied, EtcdError> {
        use internal_request::Request as R;
        let out = match req.request {
            Some(R::Put(p)) => {
                self.check_put(&p)?;
                Applied::Put(self.put(&p, Rev { main, sub: 0 }, events)?)
            }
            Some(R::DeleteRange(d)) => {
                if d.key.is_empty() {
                    return Err(EtcdError::EmptyKey);
                }
                let mut sub = 0;
                Applied::DeleteRange(self.delete_range(&d, main, &mut sub, events)?)
            }
            Some(R::Txn(t)) => {
                self.check_ops(&t.success)?;
                self.check_ops(&t.failure)?;
                let mut sub = 0;
                Applied::Txn(self.txn(&t, main, &mut sub, events)?)
            }
            Some(R::Compaction(c)) => Applied::Compaction(self.compact(&c)?),
            Some(R::LeaseGrant(g)) => Applied::LeaseGrant(self.lease_grant(&g)?),
            Some(R::LeaseRevoke(r)) => Applied::LeaseRevoke(self.lease_revoke(&r, events)?),
            Some(R::Alarm(a)) => Applied::Alarm(self.alarm(&a)?),
            Some(R::MemberUpdate(info)) => {
                if let Some(m) = self.members.get_mut(&info.id) {
                    if !info.peer_urls.is_empty() {
                        m.peer_urls = info.peer_urls.clone();
                    }
                    if !info.client_urls.is_empty() {
                        m.client_urls = info.client_urls.clone();
                    }
                    if !info.name.is_empty() {
                        m.name = info.name.clone();
                    }
                } else {
                    return Err(EtcdError::MemberNotFound);
                }
                self.write_members()?;
                self.publish_peers();
                Applied::Members(self.members())
            }
            Some(
                r @ (R::AuthEnable(_)
                | R::AuthDisable(_)
                | R::Authenticate(_)
                | R::UserAdd(_)
                | R::UserDelete(_)
                | R::UserChangePassword(_)
                | R::UserGrantRole(_)
                | R::UserRevokeRole(_)
                | R::RoleAdd(_)
                | R::RoleDelete(_)
                | R::RoleGrantPermission(_)
                | R::RoleRevokePermission(_)),
            ) => self.apply_auth(r, index)?,
            Some(R::Metadata(bytes)) => {
                let out = self.metadata.apply_bytes(index, &bytes);
                // Kept whole: metadata changes are rare (no heartbeat is a record).
                let image = self.metadata.encode_to_vec();
                self.put_meta("metadata", &image)?;
                self.metadata_changed = true;
                Applied::Metadata(out)
            }
            Some(R::LeaseRenewAll(_)) | None => Applied::Noop,
        };
        if !events.is_empty() {
            self.revision = main;
            self.put_meta("revision", &main.to_le_bytes())?;
            self.pending_events.push(RevisionEvents {
                revision: main,
                events: std::mem::take(events),
            });
        }
        Ok(out)
    }

    /// The response header's revision after an apply.
    pub fn header(&self, member_id: u64, raft_term: u64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.config.cluster_id,
            member_id,
            revision: self.revision,
            raft_term,
        }
    }

    fn set_applied(&mut self, index: u64, term: u64) -> Result<(), EtcdError> {
        self.applied = (index, term);
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&index.to_le_bytes());
        v.extend_from_slice(&term.to_le_bytes());
        self.put_meta("applied", &v)
    }

    /// Takes the persister's answer for the buffer it is writing, waiting for
    /// it if `wait`; then that buffer's versions are read from redb.
    fn collect_persisted(&mut self, wait: bool) -> Result<(), EtcdError> {
        if self.flushing.is_none() {
            return Ok(());
        }
        let r = if wait {
            self.persister.done.recv().map_err(|_| ())
        } else {
            match self.persister.done.try_recv() {
                Ok(r) => Ok(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(()),
            }
        };
        let applied =
            r.map_err(|_| EtcdError::Internal("the persister thread is gone".into()))??;
        self.durable_index = applied;
        self.flushing = None;
        Ok(())
    }

    /// Hands the write buffer to the persister if it is due (or `force`, which
    /// also waits until redb holds everything applied).
    fn persist_due(&mut self, force: bool) -> Result<(), EtcdError> {
        self.collect_persisted(force)?;
        let due = force || self.last_persist.elapsed() >= self.config.persist_interval;
        if !due || self.flushing.is_some() || self.buf.is_empty() {
            return Ok(());
        }
        let mut job = std::mem::take(&mut self.buf);
        job.applied = self.applied.0;
        let job = Arc::new(job);
        self.flushing = Some(job.clone());
        self.last_persist = Instant::now();
        self.persister
            .jobs
            .as_ref()
            .expect("the queue closes only on drop")
            .send(job)
            .map_err(|_| EtcdError::Internal("the persister thread is gone".into()))?;
        if force {
            self.collect_persisted(true)?;
        }
        Ok(())
    }

    fn write_members(&mut self) -> Result<(), EtcdError> {
        let members: Vec<(u64, Vec<u8>)> = self
            .members
            .iter()
            .map(|(id, m)| (*id, m.encode_to_vec()))
            .collect();
        self.buf.members = Some(members);
        Ok(())
    }

    fn snapshot_message(&self) -> Result<StateSnapshot, EtcdError> {
        let mut kvs = Vec::new();
        self.scan_stored(
            Rev { main: 0, sub: 0 },
            Rev {
                main: i64::MAX,
                sub: i64::MAX,
            },
            |rev, v| {
                let (tombstone, kv) = decode_value(v)?;
                kvs.push(SnapshotKv {
                    main: rev.main,
                    sub: rev.sub,
                    tombstone,
                    kv: Some(kv),
                });
                Ok(true)
            },
        )?;
        Ok(StateSnapshot {
            applied_index: self.applied.0,
            compact_revision: self.compacted,
            current_revision: self.revision,
            kvs,
            leases: self
                .leases
                .iter()
                .map(|(id, l)| SnapshotLease {
                    id: *id,
                    ttl: l.ttl,
                })
                .collect(),
            members: self.members(),
            alarms: self.alarms(),
            cluster_id: self.config.cluster_id,
            auth: Some(self.auth.state()),
            metadata: self.metadata.encode_to_vec(),
        })
    }

    /// A consistent copy of the backend, for etcd's Maintenance.Snapshot.
    pub fn snapshot_bytes(&self) -> Result<Vec<u8>, EtcdError> {
        Ok(self.snapshot_message()?.encode_to_vec())
    }

    /// A hash of every stored version up to `rev` (etcd's HashKV role).
    pub fn hash_kv(&self, rev: i64) -> Result<u32, EtcdError> {
        let mut h = 0u32;
        let hi = Rev {
            main: rev,
            sub: i64::MAX,
        };
        self.scan_stored(Rev { main: 0, sub: 0 }, hi, |rev, v| {
            h = crc32c::crc32c_append(h, &rev.to_bytes());
            h = crc32c::crc32c_append(h, v);
            Ok(true)
        })?;
        Ok(h)
    }

    /// Stored versions (every key's, tombstones included): for status.
    pub fn stored_versions(&self) -> u64 {
        self.index.values().map(|vs| vs.len() as u64).sum()
    }
}

fn txn_has_put(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_has_put(t),
            _ => false,
        })
}

impl keel_raft::StateMachine for Store {
    type Output = ApplyResult;

    fn applied(&self) -> (u64, u64, ConfState) {
        (self.applied.0, self.applied.1, self.conf_state.clone())
    }

    fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> ApplyResult {
        let out: Result<Applied, EtcdError> = if data.is_empty() {
            Ok(Applied::Noop)
        } else {
            match InternalRequest::decode(data) {
                Ok(req) => self.apply_request(req, index),
                Err(e) => Err(EtcdError::Internal(format!(
                    "undecodable entry {index}: {e}"
                ))),
            }
        };
        if let Err(e) = self.set_applied(index, term) {
            fatal(&e);
        }
        if let Err(EtcdError::Internal(m)) = &out {
            // The backend failed mid-apply: replicas would diverge if we went on.
            fatal(&EtcdError::Internal(m.clone()));
        }
        out.map(|a| (a, self.revision))
    }

    fn apply_conf_change(
        &mut self,
        index: u64,
        term: u64,
        cc: &ConfChangeV2,
        cs: &ConfState,
        context: &[u8],
    ) -> ApplyResult {
        let info = MemberInfo::decode(context).unwrap_or_default();
        for change in cc.get_changes() {
            let id = change.node_id;
            match change.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let learner = change.get_change_type() == ConfChangeType::AddLearnerNode;
                    let entry = self
                        .members
                        .entry(id)
                        .or_insert_with(|| MemberInfo { id, ..info.clone() });
                    entry.is_learner = learner;
                    if !info.peer_urls.is_empty() && info.id == id {
                        entry.peer_urls = info.peer_urls.clone();
                    }
                }
                ConfChangeType::RemoveNode => {
                    self.members.remove(&id);
                    self.peer_addresses
                        .write()
                        .expect("address book lock")
                        .remove(&id);
                }
            }
        }
        self.conf_state = cs.clone();
        let res = self
            .write_members()
            .and_then(|_| self.put_meta("conf_state", &encode_conf_state(cs)))
            .and_then(|_| self.set_applied(index, term));
        if let Err(e) = res {
            fatal(&e);
        }
        self.publish_peers();
        Ok((Applied::Members(self.members()), self.revision))
    }

    fn finish_batch(&mut self) {
        for ev in self.pending_events.drain(..) {
            let _ = self.events.send(Arc::new(ev));
        }
        if std::mem::take(&mut self.metadata_changed) {
            self.metadata_tx
                .send_replace(Arc::new(self.metadata.clone()));
        }
    }

    fn persist(&mut self, force: bool) -> Result<u64, keel_raft::Error> {
        self.persist_due(force)
            .map_err(|e| keel_raft::Error::StateMachine(e.to_string()))?;
        Ok(self.durable_index)
    }

    fn snapshot(&self) -> Vec<u8> {
        match self.snapshot_bytes() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("snapshot of the etcd state: {e}");
                Vec::new()
            }
        }
    }

    fn restore(
        &mut self,
        index: u64,
        term: u64,
        cs: &ConfState,
        data: &[u8],
    ) -> Result<(), keel_raft::Error> {
        let err = |e: EtcdError| keel_raft::Error::StateMachine(e.to_string());
        let snap = if data.is_empty() {
            // A brand-new cluster: the initial members, and an empty store or
            // the restored backup's keys, history and leases (its members and
            // alarms belonged to the old cluster, as etcdctl snapshot restore).
            // Taken: once bootstrapped, the store holds it (and need not keep a copy).
            let seed = self.config.seed.take().unwrap_or_default();
            StateSnapshot {
                current_revision: seed.current_revision.max(1),
                compact_revision: seed.compact_revision,
                kvs: seed.kvs,
                leases: seed.leases,
                // Users, roles and whether auth is on survive a restore, as
                // etcdctl snapshot restore keeps etcd's auth buckets.
                auth: seed.auth,
                members: self.config.initial_members.clone(),
                cluster_id: self.config.cluster_id,
                ..StateSnapshot::default()
            }
        } else {
            StateSnapshot::decode(data).map_err(|e| err(internal(e)))?
        };
        // Whatever the persister is writing lands first; the buffers are
        // replaced whole by the snapshot.
        self.collect_persisted(true).map_err(err)?;
        self.buf = WriteBuffer::default();
        let mut tx = self.db.begin_write().map_err(|e| err(internal(e)))?;
        tx.set_durability(Durability::Immediate);
        {
            for name in ["kv", "meta", "leases", "members"] {
                let _ = tx.delete_table(redb::TableDefinition::<&[u8], &[u8]>::new(name));
                let _ = tx.delete_table(redb::TableDefinition::<i64, i64>::new(name));
                let _ = tx.delete_table(redb::TableDefinition::<u64, &[u8]>::new(name));
                let _ = tx.delete_table(redb::TableDefinition::<&str, &[u8]>::new(name));
            }
            let mut kv = tx.open_table(KV).map_err(|e| err(internal(e)))?;
            for s in &snap.kvs {
                let Some(k) = &s.kv else { continue };
                let mut buf = vec![if s.tombstone { TOMBSTONE } else { PUT }];
                k.encode(&mut buf).map_err(|e| err(internal(e)))?;
                kv.insert(
                    Rev {
                        main: s.main,
                        sub: s.sub,
                    }
                    .to_bytes()
                    .as_slice(),
                    buf.as_slice(),
                )
                .map_err(|e| err(internal(e)))?;
            }
            let mut leases = tx.open_table(LEASES).map_err(|e| err(internal(e)))?;
            for l in &snap.leases {
                leases.insert(l.id, l.ttl).map_err(|e| err(internal(e)))?;
            }
            let mut members = tx.open_table(MEMBERS).map_err(|e| err(internal(e)))?;
            for m in &snap.members {
                members
                    .insert(m.id, m.encode_to_vec().as_slice())
                    .map_err(|e| err(internal(e)))?;
            }
            let mut meta = tx.open_table(META).map_err(|e| err(internal(e)))?;
            let mut applied = Vec::new();
            applied.extend_from_slice(&index.to_le_bytes());
            applied.extend_from_slice(&term.to_le_bytes());
            let alarms: Vec<u8> = snap.alarms.iter().flat_map(|a| a.to_le_bytes()).collect();
            for (k, v) in [
                (
                    "revision",
                    snap.current_revision.max(1).to_le_bytes().to_vec(),
                ),
                ("compacted", snap.compact_revision.to_le_bytes().to_vec()),
                ("applied", applied),
                ("conf_state", encode_conf_state(cs)),
                ("alarms", alarms),
                (
                    "auth",
                    snap.auth.clone().unwrap_or_default().encode_to_vec(),
                ),
                ("metadata", snap.metadata.clone()),
            ] {
                meta.insert(k, v.as_slice()).map_err(|e| err(internal(e)))?;
            }
        }
        tx.commit().map_err(|e| err(internal(e)))?;
        self.revision = 1;
        self.compacted = 0;
        self.load().map_err(err)?;
        self.last_persist = Instant::now();
        Ok(())
    }
}

fn fatal(e: &EtcdError) -> ! {
    tracing::error!("etcd state machine: {e}; stopping so that replicas do not diverge");
    std::process::exit(70);
}

fn internal(e: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(e.to_string())
}

fn i64_from(v: &[u8]) -> i64 {
    v.try_into().map(i64::from_le_bytes).unwrap_or(0)
}

/// A version's key and value bytes, as the quota counts them.
fn version_bytes(kv: &KeyValue) -> u32 {
    u32::try_from(kv.key.len() + kv.value.len()).unwrap_or(u32::MAX)
}

/// A stored version straight from redb.
fn read_stored(rtx: &redb::ReadTransaction, rev: Rev) -> Result<Option<KeyValue>, EtcdError> {
    let t = match rtx.open_table(KV) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(internal(e)),
    };
    match t.get(rev.to_bytes().as_slice()).map_err(internal)? {
        Some(v) => Ok(Some(decode_value(v.value())?.1)),
        None => Ok(None),
    }
}

fn decode_value(v: &[u8]) -> Result<(bool, KeyValue), EtcdError> {
    let (flag, body) = v
        .split_first()
        .ok_or_else(|| EtcdError::Internal("empty stored value".into()))?;
    let kv = KeyValue::decode(body).map_err(internal)?;
    Ok((*flag == TOMBSTONE, kv))
}

fn encode_conf_state(cs: &ConfState) -> Vec<u8> {
    // voters, learners, voters_outgoing, learners_next, auto_leave: as u64 lists.
    let mut out = Vec::new();
    for list in [
        cs.get_voters(),
        cs.get_learners(),
        cs.get_voters_outgoing(),
        cs.get_learners_next(),
    ] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out.push(u8::from(cs.auto_leave));
    out
}

fn decode_conf_state(mut b: &[u8]) -> ConfState {
    let mut lists: Vec<Vec<u64>> = Vec::new();
    for _ in 0..4 {
        if b.len() < 4 {
            return ConfState::default();
        }
        let n = u32::from_le_bytes(b[..4].try_into().expect("4")) as usize;
        b = &b[4..];
        if b.len() < n * 8 {
            return ConfState::default();
        }
        lists.push(
            b[..n * 8]
                .chunks(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        );
        b = &b[n * 8..];
    }
    let mut cs = ConfState::default();
    cs.set_voters(lists[0].clone());
    cs.set_learners(lists[1].clone());
    cs.set_voters_outgoing(lists[2].clone());
    cs.set_learners_next(lists[3].clone());
    cs.auto_leave = b.first() == Some(&1);
    cs
}

/// `http://host:port` → `host:port`.
pub fn strip_scheme(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .trim_end_matches('/')
}
