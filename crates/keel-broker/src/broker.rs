//! The broker: a registry of topics whose partitions are logs, and the rules for
//! producing to and reading from them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use keel_storage::batch::{self, Limits};
use keel_storage::{CompactionPlan, FlushJob, Log};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::config::{Effective, TopicConfigs};
use crate::flusher::Flusher;
use crate::groups::{GroupConfig, Groups};
use crate::names::validate_topic_name;
use crate::producers::{Check, ProducerState, Refusal};
use crate::{BrokerError, Result};

mod cluster;
mod coordinator;
mod logs;
mod replication;
pub use cluster::LocalTopic;
pub use coordinator::{FetchedOffset, ListedGroup, OffsetCommit};
pub use logs::{LogDirPartition, HIGH_WATERMARK};
pub use replication::{FollowerAppend, IsrChange};

/// The clock seam: everything time-dependent asks this, so tests can choose time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Node-level settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    /// `num.partitions`: partitions of an auto-created topic or a CreateTopics with -1.
    pub default_partitions: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// The most partitions this node will hold in all, so a request cannot exhaust
    /// its file descriptors or memory.
    pub partitions_max: usize,
    /// A produce batch may decompress to at most this many bytes when validated.
    pub decompressed_batch_bytes_max: usize,
    /// Forget an idempotent producer after this long without a write
    /// (Kafka's `producer.id.expiration.ms`, 1 day).
    pub producer_id_expiration_ms: i64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` (50).
    pub offsets_topic_partitions: i32,
    /// `__consumer_offsets` comes from the cluster metadata (created by the
    /// controller, replicated); this broker never creates it alone.
    pub offsets_topic_from_cluster: bool,
    /// The group coordinator's limits.
    pub group_config: GroupConfig,
    /// Kafka's `log.cleaner.dedupe.buffer.size`: the memory one compaction pass
    /// may use for its key map ([`keel_storage::BYTES_PER_KEY`] a key).
    pub cleaner_dedupe_buffer_bytes: usize,
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            node_id: 1,
            data_dir: data_dir.into(),
            default_partitions: 1,
            auto_create_topics: true,
            partitions_max: 4096,
            decompressed_batch_bytes_max: 64 << 20,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            offsets_topic_partitions: 50,
            offsets_topic_from_cluster: false,
            group_config: GroupConfig::default(),
            cleaner_dedupe_buffer_bytes: 128 << 20,
        }
    }
}

const META_FILE: &str = "meta.json";
/// Each partition's idempotent-producer state, as of the offset it records.
const PRODUCER_SNAPSHOT_FILE: &str = "producer-state.snapshot";
/// Producer ids are handed out from blocks of this many; meta.json records the
/// end of the current block, so ids are never reused after a restart.
const PRODUCER_ID_BLOCK: i64 = keel_meta::PRODUCER_ID_BLOCK;
const PARTITION_META_FILE: &str = "partition.metadata";
/// The leader epoch of every partition while Keel runs a single node.
const LEADER_EPOCH: i32 = 0;

#[derive(Serialize, Deserialize)]
struct MetaFile {
    cluster_id: String,
    topics: Vec<TopicRecord>,
    #[serde(default)]
    producer_id_block_end: i64,
}

#[derive(Serialize, Deserialize, Clone)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

struct PartitionState {
    log: Log,
    effective: Effective,
    /// Producers waiting for offsets below the first element to be fsynced.
    waiters: Vec<(i64, oneshot::Sender<Result<()>>)>,
    unflushed_messages: i64,
    last_flush_ms: i64,
    deleted: bool,
    producers: ProducerState,
    /// The producer state changed since the last snapshot.
    producers_dirty: bool,
    /// This node's role when the cluster metadata replicates the partition.
    repl: Option<replication::Repl>,
    /// Where each follower's log starts, as its last fetch said (on the
    /// leader, for DeleteRecords' low watermark).
    follower_starts: BTreeMap<i32, i64>,
}

/// One partition of a topic: its log and its high watermark.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    state: Mutex<PartitionState>,
    /// Offsets below this are visible to consumers. With fsync-before-ack it is the
    /// flushed offset, so a consumer never sees a record a crash could take back.
    high_watermark: AtomicI64,
    /// Set while the partition sits in the flusher's queue.
    pub(crate) queued: AtomicBool,
    /// The leader epoch batches are stamped with: the cluster metadata's for
    /// this partition (0 for a topic only this node knows).
    pub(crate) leader_epoch: AtomicI32,
    data_version: watch::Sender<u64>,
    /// The broker's clock, for `flush.ms` pacing.
    clock: Arc<dyn Clock>,
}

/// A snapshot of a partition, for Metadata and ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub index: i32,
    pub leader_epoch: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: u64,
}

/// What a produce did; `durable` resolves once the records are fsynced (when the
/// topic acknowledges only after fsync and acks != 0).
pub struct Produced {
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    pub durable: Option<oneshot::Receiver<Result<()>>>,
}

/// Bytes for a fetch, with the partition's offsets at the time of reading.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Reads committed (below the high watermark) batches from `offset` of a
/// partition whose role the caller checked under `s`, and counts them as
/// bytes out: the one read path of a consumer's fetch, leader or follower.
fn read_committed(
    p: &Partition,
    s: std::sync::MutexGuard<'_, PartitionState>,
    offset: i64,
    max_bytes: usize,
) -> Result<Fetched> {
    let hw = p.high_watermark();
    let r = s.log.read(offset, max_bytes, hw)?;
    let log_start_offset = s.log.log_start_offset();
    drop(s);
    crate::metrics::BYTES_OUT
        .with_label_values(&[&p.topic])
        .inc_by(r.bytes.len() as u64);
    Ok(Fetched {
        bytes: r.bytes,
        high_watermark: hw,
        log_start_offset,
    })
}

impl Partition {
    fn lock(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        // A poisoned lock means a thread panicked mid-update; the invariant is ours.
        self.state.lock().expect("partition state lock poisoned")
    }

    pub fn info(&self) -> PartitionInfo {
        let s = self.lock();
        PartitionInfo {
            index: self.index,
            leader_epoch: self.leader_epoch.load(Ordering::Acquire),
            log_start_offset: s.log.log_start_offset(),
            high_watermark: self.high_watermark(),
            log_end_offset: s.log.log_end_offset(),
            size_bytes: s.log.size_bytes(),
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    fn set_high_watermark(&self, hw: i64) {
        let old = self.high_watermark.fetch_max(hw, Ordering::AcqRel);
        if hw > old {
            self.data_version.send_modify(|v| *v += 1);
        }
    }

    pub(crate) fn take_flush_job(&self) -> Option<FlushJob> {
        self.queued.store(false, Ordering::Release);
        self.lock().log.flush_job()
    }

    pub(crate) fn finish_flush(&self, job: &FlushJob, result: std::io::Result<()>) {
        let mut s = self.lock();
        let outcome = match result {
            Ok(()) => s.log.complete_flush(job).map_err(BrokerError::from),
            Err(e) => {
                s.log.fail_flush(job);
                Err(BrokerError::Storage(format!(
                    "fsync {}: {e}",
                    s.log.dir().display()
                )))
            }
        };
        match outcome {
            Ok(()) => {
                let flushed = s.log.flushed_offset();
                s.unflushed_messages = 0;
                s.last_flush_ms = self.clock.now_ms();
                let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut s.waiters)
                    .into_iter()
                    .partition(|(end, _)| *end <= flushed);
                s.waiters = waiting;
                if s.effective.fsync_before_ack() {
                    self.recompute_high_watermark(&mut s);
                }
                drop(s);
                for (_, tx) in done {
                    let _ = tx.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.index, "flush failed: {e}");
                let failed = std::mem::take(&mut s.waiters);
                drop(s);
                for (_, tx) in failed {
                    let _ = tx.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A topic: its id, configs and partitions.
pub struct Topic {
    pub name: String,
    pub id: Uuid,
    configs: RwLock<TopicConfigs>,
    partitions: RwLock<Vec<Arc<Partition>>>,
}

/// A snapshot of a topic for Metadata.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionInfo>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        let ps = self.partitions.read().expect("partitions lock");
        usize::try_from(index).ok().and_then(|i| ps.get(i).cloned())
    }

    pub fn partition_count(&self) -> i32 {
        self.partitions.read().expect("partitions lock").len() as i32
    }

    pub fn configs(&self) -> TopicConfigs {
        self.configs.read().expect("configs lock").clone()
    }

    pub fn info(&self) -> TopicInfo {
        let ps = self.partitions.read().expect("partitions lock").clone();
        TopicInfo {
            name: self.name.clone(),
            id: self.id,
            partitions: ps.iter().map(|p| p.info()).collect(),
        }
    }

    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partition_count(),
            configs: self.configs().overrides().clone(),
        }
    }
}

struct Inner {
    config: BrokerConfig,
    cluster_id: String,
    clock: Arc<dyn Clock>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serialises metadata changes and the writes of meta.json that record them.
    meta_lock: Mutex<()>,
    /// The next producer id, and the end of the block meta.json has reserved.
    producer_ids: Mutex<(i64, i64)>,
    flusher: Flusher,
    data_version: watch::Sender<u64>,
    flusher_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stopped: AtomicBool,
    /// Set by [`Broker::stop_cleaning`] (and shutdown): compaction stops.
    stop_cleaning: AtomicBool,
    /// The group coordinator's state. Lock order: groups, then a partition.
    pub(crate) groups: Mutex<Groups>,
    /// Every topic of the cluster and its partition count, from the last
    /// metadata image applied (None on a node outside a cluster): what
    /// exists, whichever nodes hold it. A coordinator accepts offsets for
    /// any partition of the cluster, not only the ones it holds.
    cluster_partitions: RwLock<Option<BTreeMap<String, i32>>>,
    /// Replicated partitions' high watermarks as checkpointed before the
    /// last stop (`replication-offset-checkpoint`): where each starts when
    /// it first takes its role, instead of its log end.
    hw_checkpoint: Mutex<BTreeMap<(String, i32), i64>>,
}

/// A handle to the node's broker state; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

fn storage_err(action: &str, path: &Path, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Storage(format!("{action} {}: {e}", path.display()))
}

impl Broker {
    /// Opens the node's data directory, recovering every partition log.
    pub fn open(config: BrokerConfig, clock: Arc<dyn Clock>) -> Result<Broker> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| storage_err("create data directory", dir, e))?;
        let meta_path = dir.join(META_FILE);
        let meta = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice::<MetaFile>(&bytes)
                .map_err(|e| storage_err("parse", &meta_path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetaFile {
                cluster_id: new_cluster_id(),
                topics: vec![],
                producer_id_block_end: 0,
            },
            Err(e) => return Err(storage_err("read", &meta_path, e)),
        };
        let (data_version, _) = watch::channel(0u64);
        let group_config = config.group_config;
        let hw_checkpoint = replication::read_hw_checkpoint(dir);
        let inner = Arc::new(Inner {
            config,
            cluster_id: meta.cluster_id.clone(),
            clock,
            topics: RwLock::new(BTreeMap::new()),
            meta_lock: Mutex::new(()),
            producer_ids: Mutex::new((meta.producer_id_block_end, meta.producer_id_block_end)),
            flusher: Flusher::default(),
            data_version,
            flusher_thread: Mutex::new(None),
            stopped: AtomicBool::new(false),
            stop_cleaning: AtomicBool::new(false),
            groups: Mutex::new(Groups::new(group_config)),
            cluster_partitions: RwLock::new(None),
            hw_checkpoint: Mutex::new(hw_checkpoint),
        });
        let broker = Broker { inner };
        for t in &meta.topics {
            let configs = TopicConfigs::new(t.configs.clone())?;
            let topic = broker.open_topic(&t.name, t.id, t.partitions, configs, false)?;
            broker
                .inner
                .topics
                .write()
                .expect("topics lock")
                .insert(t.name.clone(), topic);
        }
        broker.write_meta()?;
        broker.load_groups()?;
        // The thread keeps the broker's state alive until `shutdown` stops it.
        let inner = broker.inner.clone();
        let handle = std::thread::Builder::new()
            .name("keel-flusher".into())
            .spawn(move || {
                inner
                    .flusher
                    .run(|| inner.data_version.send_modify(|v| *v += 1))
            })
            .map_err(|e| BrokerError::Storage(format!("start flusher thread: {e}")))?;
        *broker
            .inner
            .flusher_thread
            .lock()
            .expect("flusher thread lock") = Some(handle);
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }
    pub fn cluster_id(&self) -> &str {
        &self.inner.cluster_id
    }
    pub fn node_id(&self) -> i32 {
        self.inner.config.node_id
    }
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// A receiver that changes whenever any partition's high watermark advances:
    /// long-polling fetches wait on it.
    pub fn data_version(&self) -> watch::Receiver<u64> {
        self.inner.data_version.subscribe()
    }

    /// How many fetches are parked waiting for data (each holds a `data_version`).
    pub fn parked_fetches(&self) -> usize {
        self.inner.data_version.receiver_count()
    }

    fn open_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: TopicConfigs,
        fresh: bool,
    ) -> Result<Arc<Topic>> {
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id,
            configs: RwLock::new(configs),
            partitions: RwLock::new(Vec::new()),
        });
        self.add_partitions(&topic, partitions, fresh)?;
        Ok(topic)
    }

    fn add_partitions(&self, topic: &Topic, up_to: i32, fresh: bool) -> Result<()> {
        let effective = *topic.configs.read().expect("configs lock").effective();
        let now = self.now_ms();
        let mut ps = topic.partitions.write().expect("partitions lock");
        for index in ps.len() as i32..up_to {
            let dir = partition_dir(&self.inner.config.data_dir, &topic.name, index);
            let marker = dir.join(PARTITION_META_FILE);
            let id = topic.id.to_string();
            let existing = std::fs::read_to_string(&marker).ok();
            if existing.as_deref().map(str::trim) != Some(id.as_str()) && dir.exists() {
                if !fresh {
                    return Err(BrokerError::Storage(format!(
                        "{} belongs to another topic id than {id}; refusing to open it",
                        dir.display()
                    )));
                }
                // A leftover of a deleted topic of the same name: it is not ours.
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| storage_err("remove stale partition directory", &dir, e))?;
            }
            let (log, report) = Log::open(&dir, effective.log, now)?;
            if existing.is_none() {
                write_atomically(&marker, id.as_bytes())
                    .map_err(|e| storage_err("write", &marker, e))?;
            }
            if report.truncated_bytes > 0 || report.segments_removed > 0 {
                tracing::warn!(topic = %topic.name, partition = index, truncated_bytes = report.truncated_bytes, segments_removed = report.segments_removed, "recovered partition after unclean shutdown");
            }
            let hw = log.log_end_offset();
            let producers = load_producer_state(&log, now)?;
            ps.push(Arc::new(Partition {
                topic: topic.name.clone(),
                index,
                state: Mutex::new(PartitionState {
                    log,
                    effective,
                    waiters: Vec::new(),
                    unflushed_messages: 0,
                    last_flush_ms: now,
                    deleted: false,
                    producers,
                    producers_dirty: false,
                    repl: None,
                    follower_starts: BTreeMap::new(),
                }),
                high_watermark: AtomicI64::new(hw),
                queued: AtomicBool::new(false),
                leader_epoch: AtomicI32::new(LEADER_EPOCH),
                data_version: self.inner.data_version.clone(),
                clock: self.inner.clock.clone(),
            }));
        }
        Ok(())
    }

    fn write_meta(&self) -> Result<()> {
        let topics = self
            .inner
            .topics
            .read()
            .expect("topics lock")
            .values()
            .map(|t| t.record())
            .collect();
        let producer_id_block_end = self.inner.producer_ids.lock().expect("producer id lock").1;
        let meta = MetaFile {
            cluster_id: self.inner.cluster_id.clone(),
            topics,
            producer_id_block_end,
        };
        let path = self.inner.config.data_dir.join(META_FILE);
        let bytes =
            serde_json::to_vec_pretty(&meta).map_err(|e| storage_err("encode", &path, e))?;
        write_atomically(&path, &bytes).map_err(|e| storage_err("write", &path, e))
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .expect("topics lock")
            .get(name)
            .cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .expect("topics lock")
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect()
    }

    fn partition_count_total(&self) -> usize {
        self.inner
            .topics
            .read()
            .expect("topics lock")
            .values()
            .map(|t| t.partition_count() as usize)
            .sum()
    }

    /// The topic, created with defaults if it does not exist and auto-creation is on.
    pub fn topic_or_auto_create(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        validate_topic_name(name)?;
        if !self.inner.config.auto_create_topics {
            return Err(BrokerError::UnknownTopicOrPartition(name.to_string()));
        }
        match self.create_topic(name, -1, -1, BTreeMap::new(), false) {
            Ok(t) => {
                tracing::info!(
                    topic = name,
                    partitions = t.partition_count(),
                    "auto-created topic"
                );
                Ok(t)
            }
            Err(BrokerError::TopicAlreadyExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.into())),
            Err(e) => Err(e),
        }
    }

    /// CreateTopics for one topic. `-1` partitions or replication factor mean the defaults.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 {
            self.inner.config.default_partitions
        } else {
            partitions
        };
        let max = self.inner.config.partitions_max;
        if partitions < 1 {
            return Err(BrokerError::InvalidPartitions(format!(
                "{partitions} partitions; a topic needs at least 1"
            )));
        }
        if !(replication_factor == -1 || replication_factor == 1) {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is larger than the 1 available broker"
            )));
        }
        let configs = TopicConfigs::new(configs)?;
        let _guard = self.inner.meta_lock.lock().expect("meta lock");
        if self.topic(name).is_some() {
            return Err(BrokerError::TopicAlreadyExists(name.to_string()));
        }
        let total = self.partition_count_total();
        if partitions as usize > max.saturating_sub(total) {
            return Err(BrokerError::InvalidPartitions(format!("{partitions} partitions would exceed this node's limit of {max} (it holds {total})")));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.into(),
                id: Uuid::nil(),
                configs: RwLock::new(configs),
                partitions: RwLock::new(vec![]),
            }));
        }
        let topic = self.open_topic(name, Uuid::new_v4(), partitions, configs, true)?;
        self.inner
            .topics
            .write()
            .expect("topics lock")
            .insert(name.to_string(), topic.clone());
        if let Err(e) = self.write_meta() {
            self.inner.topics.write().expect("topics lock").remove(name);
            return Err(e);
        }
        Ok(topic)
    }

    /// DeleteTopics for one topic: forgotten durably first, then its files removed.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid> {
        refuse_internal(name)?;
        let _guard = self.inner.meta_lock.lock().expect("meta lock");
        let topic = self
            .inner
            .topics
            .write()
            .expect("topics lock")
            .remove(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        self.write_meta()?;
        for p in topic.partitions.read().expect("partitions lock").iter() {
            let mut s = p.lock();
            s.deleted = true;
            for (_, tx) in s.waiters.drain(..) {
                let _ = tx.send(Err(BrokerError::UnknownTopicOrPartition(name.to_string())));
            }
            let dir = s.log.dir().to_path_buf();
            let trash =
                dir.with_file_name(format!("{}-{}.{}-delete", name, p.index, topic.id.simple()));
            if let Err(e) =
                std::fs::rename(&dir, &trash).and_then(|_| std::fs::remove_dir_all(&trash))
            {
                tracing::warn!(dir = %dir.display(), "could not remove deleted partition: {e}");
            }
        }
        crate::metrics::forget_topic(name);
        tracing::info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// CreatePartitions: grow a topic to `count` partitions.
    pub fn create_partitions(&self, name: &str, count: i32, validate_only: bool) -> Result<()> {
        refuse_internal(name)?;
        let _guard = self.inner.meta_lock.lock().expect("meta lock");
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        let have = topic.partition_count();
        if count <= have {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {have} partitions; the new count {count} must be larger"
            )));
        }
        let total = self.partition_count_total();
        let max = self.inner.config.partitions_max;
        if (count - have) as usize > max.saturating_sub(total) {
            return Err(BrokerError::InvalidPartitions(format!(
                "{} more partitions would exceed this node's limit of {max}",
                count - have
            )));
        }
        if validate_only {
            return Ok(());
        }
        self.add_partitions(&topic, count, true)?;
        self.write_meta()
    }

    /// Replaces a topic's config overrides (AlterConfigs and IncrementalAlterConfigs
    /// both end here, with the full resulting set).
    pub fn set_topic_configs(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<()> {
        let configs = TopicConfigs::new(overrides)?;
        let _guard = self.inner.meta_lock.lock().expect("meta lock");
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(name.to_string()))?;
        if validate_only {
            return Ok(());
        }
        let effective = *configs.effective();
        *topic.configs.write().expect("configs lock") = configs;
        for p in topic.partitions.read().expect("partitions lock").iter() {
            let mut s = p.lock();
            s.effective = effective;
            s.log.set_config(effective.log);
        }
        self.write_meta()
    }

    fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>> {
        self.topic(topic)
            .and_then(|t| t.partition(index))
            .ok_or_else(|| BrokerError::UnknownTopicOrPartition(format!("{topic}-{index}")))
    }

    /// A client's produce. Internal topics are written only by the node itself, as
    /// in Kafka.
    pub fn produce(&self, topic: &str, index: i32, records: &[u8], acks: i16) -> Result<Produced> {
        if is_internal(topic) {
            return Err(BrokerError::InvalidTopic(format!(
                "{topic} is internal: only the group coordinator writes it"
            )));
        }
        self.append_batch(topic, index, records, acks)
    }

    /// Validates and appends the batches of one partition's produce. All batches are
    /// checked before any is written: a bad batch changes nothing.
    pub(crate) fn append_batch(
        &self,
        topic: &str,
        index: i32,
        records: &[u8],
        acks: i16,
    ) -> Result<Produced> {
        if !matches!(acks, -1..=1) {
            return Err(BrokerError::InvalidRequiredAcks(acks));
        }
        if self.inner.stopped.load(Ordering::Acquire) {
            return Err(BrokerError::ShuttingDown);
        }
        let p = self.partition(topic, index)?;
        let effective = p.lock().effective;
        // Kafka checks min.insync.replicas before appending (KIP-98's NOT_ENOUGH_REPLICAS).
        let isr = Partition::isr_size(&p.lock());
        if acks == -1 && isr < effective.min_insync_replicas {
            return Err(BrokerError::NotEnoughReplicas {
                isr,
                min: effective.min_insync_replicas,
            });
        }
        let limits = Limits {
            batch_bytes_max: effective.max_message_bytes,
            decompressed_bytes_max: self.inner.config.decompressed_batch_bytes_max,
            keys_required: effective.compact,
        };
        // Kafka accepts exactly one batch per partition in Produce v3+
        // (ProduceRequest.validateRecords): idempotence is checked per batch.
        let ranges = batch::split(records)?;
        if ranges.len() != 1 {
            return Err(BrokerError::InvalidRecord(format!(
                "a produce must carry exactly one record batch per partition, not {}",
                ranges.len()
            )));
        }
        let header = batch::validate(records, &limits)?;
        let records_total = i64::from(header.records_count);
        let mut bytes = match effective.compression {
            // compression.type other than `producer`: stored with the topic's codec.
            Some(codec) if header.codec()? != codec => {
                batch::recompress(records, codec, limits.decompressed_bytes_max)?
            }
            _ => records.to_vec(),
        };
        let now = self.now_ms();
        let mut s = p.lock();
        if s.deleted {
            return Err(BrokerError::UnknownTopicOrPartition(format!(
                "{topic}-{index}"
            )));
        }
        // The partition's own state decides, under its lock: the metadata image
        // may already say "leader" before this broker has taken the role.
        Partition::check_local_leader(&p, &s)?;
        let eff = s.effective;
        let mut appended = true;
        let base_offset = match if header.producer_id >= 0 {
            s.producers.check(&header)
        } else {
            Check::Append
        } {
            Check::Append => {
                let h = s.log.append(
                    &mut bytes,
                    p.leader_epoch.load(Ordering::Acquire),
                    eff.log_append_time,
                    now,
                )?;
                s.producers.apply(&h, now);
                s.producers_dirty |= h.producer_id >= 0;
                h.base_offset
            }
            // A retry of a batch already written: answer with its offset, write nothing.
            // It is acknowledged once everything up to the log end is durable.
            Check::Duplicate { base_offset } => {
                tracing::debug!(
                    topic,
                    partition = index,
                    producer_id = header.producer_id,
                    sequence = header.base_sequence,
                    base_offset,
                    "duplicate batch: answering with its original offset"
                );
                appended = false;
                base_offset
            }
            Check::Reject(r) => {
                return Err(match r {
                    Refusal::StaleEpoch { got, current } => BrokerError::InvalidProducerEpoch(
                        format!("epoch {got} is older than the producer's current epoch {current}"),
                    ),
                    Refusal::OutOfOrder { got, expected } => BrokerError::OutOfOrderSequence(
                        format!("sequence {got} where {expected} was expected"),
                    ),
                    Refusal::UnknownProducer => BrokerError::UnknownProducerId(header.producer_id),
                })
            }
        };
        let end = s.log.log_end_offset();
        let log_start_offset = s.log.log_start_offset();
        let mut durable = None;
        let replicated = acks == -1 && Partition::replicated(&s);
        if replicated {
            // acks=all on a replicated partition: answered once every in-sync
            // replica holds the batch durably (the high watermark passes it).
            if Partition::isr_size(&s) < eff.min_insync_replicas {
                // The ISR shrank while this produce was being checked.
                return Err(BrokerError::NotEnoughReplicasAfterAppend {
                    isr: Partition::isr_size(&s),
                    min: eff.min_insync_replicas,
                });
            }
            durable = Some(p.wait_replicated(&mut s, end));
        }
        let flush = if eff.fsync_before_ack() {
            let already_durable = s.log.flushed_offset() >= end;
            if acks != 0 && !replicated {
                let (tx, rx) = oneshot::channel();
                if already_durable {
                    // A duplicate of a batch that is already on disk: nothing to wait for.
                    let _ = tx.send(Ok(()));
                } else {
                    s.waiters.push((end, tx));
                }
                durable = Some(rx);
            }
            !already_durable
        } else {
            if appended {
                s.unflushed_messages += records_total;
            }
            s.unflushed_messages >= eff.flush_messages
        };
        if !eff.fsync_before_ack() {
            p.recompute_high_watermark(&mut s);
        }
        drop(s);
        if flush {
            self.schedule_flush(&p);
        }
        if appended {
            crate::metrics::BYTES_IN
                .with_label_values(&[topic])
                .inc_by(records.len() as u64);
        }
        Ok(Produced {
            base_offset,
            log_append_time_ms: if eff.log_append_time { now } else { -1 },
            log_start_offset,
            durable,
        })
    }

    /// InitProducerId for an idempotent (non-transactional) producer: a fresh
    /// producer id with epoch 0, as Kafka gives one. Ids come from blocks reserved
    /// in meta.json, so a restart never hands out an id twice.
    pub fn init_producer_id(&self) -> Result<(i64, i16)> {
        self.init_producer_id_with(Ok)
    }

    /// InitProducerId with blocks from elsewhere: `allocate(at_least)` returns
    /// the first id of a new block of `PRODUCER_ID_BLOCK` ids at or above
    /// `at_least` (on a cluster, from the controller, so ids are unique
    /// cluster-wide: KIP-730). The block's end is recorded in meta.json first,
    /// so a restart never hands out an id twice.
    pub fn init_producer_id_with(
        &self,
        allocate: impl FnOnce(i64) -> Result<i64>,
    ) -> Result<(i64, i16)> {
        // Lock order: meta_lock, then producer_ids (as write_meta takes them).
        let _guard = self.inner.meta_lock.lock().expect("meta lock");
        let ids = || self.inner.producer_ids.lock().expect("producer id lock");
        let (next, end) = *ids();
        let next = if next >= end {
            let first = allocate(end)?;
            *ids() = (first, first + PRODUCER_ID_BLOCK);
            if let Err(e) = self.write_meta() {
                *ids() = (next, end);
                return Err(e);
            }
            first
        } else {
            next
        };
        ids().0 = next + 1;
        Ok((next, 0))
    }

    /// Waits until `topic`/`index` is fsynced below `end`: at once when it is, or
    /// when the topic does not fsync before acknowledging (`flush.messages` > 1).
    pub(crate) async fn wait_durable(&self, topic: &str, index: i32, end: i64) -> Result<()> {
        let p = self.partition(topic, index)?;
        let rx = {
            let mut s = p.lock();
            if Partition::replicated(&s) {
                // Committed: every in-sync replica holds it.
                p.wait_replicated(&mut s, end)
            } else {
                if !s.effective.fsync_before_ack() || s.log.flushed_offset() >= end {
                    return Ok(());
                }
                let (tx, rx) = oneshot::channel();
                s.waiters.push((end, tx));
                rx
            }
        };
        // The append that wrote through `end` scheduled a flush; this one covers a
        // flush that failed since, whose waiters were told and dropped.
        self.schedule_flush(&p);
        rx.await.map_err(|_| BrokerError::ShuttingDown)?
    }

    fn schedule_flush(&self, p: &Arc<Partition>) {
        if !p.queued.swap(true, Ordering::AcqRel) {
            self.inner.flusher.enqueue(p.clone());
        }
    }

    /// Reads committed (below the high watermark) batches from `offset`.
    pub fn fetch(&self, topic: &str, index: i32, offset: i64, max_bytes: usize) -> Result<Fetched> {
        let p = self.partition(topic, index)?;
        let s = p.lock();
        Partition::check_local_leader(&p, &s)?;
        read_committed(&p, s, offset, max_bytes)
    }

    /// A consumer's fetch answered without records (the response is full, or
    /// the consumer should read elsewhere): the partition's offsets only.
    pub fn fetch_position(&self, topic: &str, index: i32) -> Result<Fetched> {
        let p = self.partition(topic, index)?;
        let s = p.lock();
        Partition::check_local_leader(&p, &s)?;
        Ok(Fetched {
            bytes: Vec::new(),
            high_watermark: p.high_watermark(),
            log_start_offset: s.log.log_start_offset(),
        })
    }

    /// A consumer's fetch served by a follower (KIP-392): up to the high
    /// watermark the follower learned from its leader. An offset past what
    /// it holds is OFFSET_NOT_AVAILABLE (the consumer is ahead of this
    /// replica; it retries), not out of range.
    pub fn fetch_follower(
        &self,
        topic: &str,
        index: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Fetched> {
        let p = self.partition(topic, index)?;
        let s = p.lock();
        if s.repl.is_none() {
            return Err(BrokerError::NotLeader(format!(
                "this broker holds no replica of {topic}-{index}"
            )));
        }
        if offset > s.log.log_end_offset() && offset >= s.log.log_start_offset() {
            return Err(BrokerError::OffsetNotAvailable(format!(
                "offset {offset} of {topic}-{index} is past this replica's end {}",
                s.log.log_end_offset()
            )));
        }
        read_committed(&p, s, offset, max_bytes)
    }

    /// ListOffsets: -2 earliest, -1 latest (the high watermark), else the first
    /// offset with a timestamp at or after `timestamp`. `None` when there is none.
    pub fn list_offset(
        &self,
        topic: &str,
        index: i32,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>> {
        let p = self.partition(topic, index)?;
        let s = p.lock();
        Partition::check_local_leader(&p, &s)?;
        let hw = p.high_watermark();
        Ok(match timestamp {
            // EARLIEST, and EARLIEST_LOCAL (KIP-1005): no tiered storage, so
            // the local log starts where the log does.
            -2 | -4 => Some((s.log.log_start_offset(), -1)),
            -1 => Some((hw, -1)),
            // MAX_TIMESTAMP (KIP-734): the first record with the largest
            // timestamp below the high watermark.
            -3 => s
                .log
                .max_timestamp_record(hw)?
                .map(|o| (o.offset, o.timestamp)),
            // LATEST_TIERED (KIP-1005): nothing is tiered, so no offset, as
            // Kafka answers without remote storage.
            -5 => Some((-1, -1)),
            ts if ts < 0 => {
                return Err(BrokerError::InvalidConfig(format!(
                    "unsupported special timestamp {ts}"
                )))
            }
            ts => s
                .log
                .offset_for_timestamp(ts, hw)?
                .map(|o| (o.offset, o.timestamp)),
        })
    }

    /// Periodic work: group timers; retention; and flush.ms for topics that
    /// acknowledge before fsync. Compaction is [`Broker::clean`]'s.
    pub fn tick(&self, retention: bool) {
        self.tick_groups(retention);
        let now = self.now_ms();
        for t in self.topics() {
            for p in t.partitions.read().expect("partitions lock").clone() {
                let mut s = p.lock();
                // Retention, producer expiry and producer snapshots share the slow cadence.
                if retention {
                    if let Err(e) = s.log.enforce_retention(now) {
                        tracing::error!(topic = %t.name, partition = p.index, "retention failed: {e}");
                    }
                    let expiration_ms = self.inner.config.producer_id_expiration_ms;
                    if s.producers.expire(now, expiration_ms) > 0 {
                        s.producers_dirty = true;
                    }
                    if s.producers_dirty {
                        match write_producer_snapshot(&s.log, &s.producers) {
                            Ok(()) => s.producers_dirty = false,
                            Err(e) => {
                                tracing::error!(topic = %t.name, partition = p.index, "producer snapshot failed: {e}")
                            }
                        }
                    }
                }
                let due = !s.effective.fsync_before_ack()
                    && s.unflushed_messages > 0
                    && now.saturating_sub(s.last_flush_ms) >= s.effective.flush_ms;
                drop(s);
                if due {
                    self.schedule_flush(&p);
                }
            }
        }
    }

    /// One pass of the log cleaner: compacts each compacted partition that is due
    /// (see [`Log::compaction_plan`]). It runs on its own thread, as Kafka's
    /// cleaner threads do, so a long compaction holds up neither group timers nor
    /// retention. Returns the partitions it compacted.
    pub fn clean(&self) -> usize {
        let mut cleaned = 0;
        for t in self.topics() {
            for p in t.partitions.read().expect("partitions lock").clone() {
                if self.inner.stop_cleaning.load(Ordering::Relaxed) {
                    return cleaned;
                }
                let now = self.now_ms();
                let plan = {
                    let s = p.lock();
                    if !s.effective.compact || s.deleted {
                        continue;
                    }
                    s.log.compaction_plan(now, &s.effective.cleaner)
                };
                if let Some(plan) = plan {
                    self.compact(&p, &plan, now);
                    cleaned += 1;
                }
            }
        }
        cleaned
    }

    /// Compacts closed segments of `p` without its lock (they do not change), then
    /// swaps the results in under it.
    fn compact(&self, p: &Partition, plan: &CompactionPlan, now: i64) {
        let max_keys = self.inner.config.cleaner_dedupe_buffer_bytes / keel_storage::BYTES_PER_KEY;
        let started = std::time::Instant::now();
        let done = match keel_storage::compact(plan, now, max_keys, &self.inner.stop_cleaning) {
            Ok(done) => done,
            Err(keel_storage::StorageError::Aborted) => {
                tracing::info!(topic = %p.topic, partition = p.index, "compaction stopped for shutdown");
                return;
            }
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.index, "compaction failed: {e}");
                return;
            }
        };
        crate::metrics::CLEANER_BYTES_READ.inc_by(done.bytes_read);
        crate::metrics::CLEANER_RECORDS_REMOVED.inc_by(done.records_removed);
        let (removed, keys, bytes, end) = (
            done.records_removed,
            done.keys_mapped,
            done.bytes_read,
            done.end(),
        );
        let mut s = p.lock();
        if s.deleted || self.inner.stopped.load(Ordering::Acquire) {
            // Whatever it wrote is a `.cleaned` file that the next open deletes.
            return;
        }
        match s.log.install_compaction(done, now) {
            Ok(()) => tracing::info!(
                topic = %p.topic,
                partition = p.index,
                removed,
                keys,
                bytes,
                clean_below = end,
                ms = started.elapsed().as_millis() as u64,
                "compacted"
            ),
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.index, "installing compaction failed: {e}")
            }
        }
    }

    /// Stops a running compaction between batches and starts no new one; call it
    /// before waiting for the cleaner, so shutdown does not wait for a long pass.
    pub fn stop_cleaning(&self) {
        self.inner.stop_cleaning.store(true, Ordering::Relaxed);
    }

    /// Stops accepting produces, flushes everything, and closes every log cleanly.
    pub fn shutdown(&self) -> Result<()> {
        self.stop_cleaning();
        if self.inner.stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::error!("high watermark checkpoint failed: {e}");
        }
        if self.inner.stopped.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.flusher.stop();
        if let Some(h) = self
            .inner
            .flusher_thread
            .lock()
            .expect("flusher thread lock")
            .take()
        {
            let _ = h.join();
        }
        let topics: Vec<_> = std::mem::take(&mut *self.inner.topics.write().expect("topics lock"))
            .into_values()
            .collect();
        let mut first_err = None;
        for t in topics {
            for p in std::mem::take(&mut *t.partitions.write().expect("partitions lock")) {
                let Ok(p) = Arc::try_unwrap(p) else {
                    tracing::warn!(topic = %t.name, "partition still in use at shutdown; leaving it for recovery");
                    continue;
                };
                let s = p.state.into_inner().expect("partition state lock poisoned");
                if let Err(e) = write_producer_snapshot(&s.log, &s.producers) {
                    tracing::error!(topic = %t.name, partition = p.index, "producer snapshot failed: {e}");
                }
                if let Err(e) = s.log.close() {
                    tracing::error!(topic = %t.name, partition = p.index, "close failed: {e}");
                    first_err.get_or_insert(BrokerError::from(e));
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Topics only the node writes and nobody may delete.
pub fn is_internal(topic: &str) -> bool {
    topic == OFFSETS_TOPIC
}

fn refuse_internal(topic: &str) -> Result<()> {
    if is_internal(topic) {
        return Err(BrokerError::InvalidTopic(format!(
            "{topic} is internal and cannot be deleted or changed"
        )));
    }
    Ok(())
}

fn new_cluster_id() -> String {
    // Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

fn write_producer_snapshot(log: &Log, producers: &ProducerState) -> Result<()> {
    let path = log.dir().join(PRODUCER_SNAPSHOT_FILE);
    write_atomically(&path, &producers.encode()).map_err(|e| storage_err("write", &path, e))
}

/// The producer state of a log: its snapshot (if valid and not ahead of the log,
/// which a truncation can cause), then a replay of the batches after it.
/// Replayed producers count as active now, so expiry starts afresh.
fn load_producer_state(log: &Log, now_ms: i64) -> Result<ProducerState> {
    let path = log.dir().join(PRODUCER_SNAPSHOT_FILE);
    let mut state = match std::fs::read(&path) {
        Ok(bytes) => ProducerState::decode(&bytes).unwrap_or_else(|| {
            tracing::warn!(snapshot = %path.display(), "producer snapshot is damaged; rebuilding from the log");
            ProducerState::default()
        }),
        Err(_) => ProducerState::default(),
    };
    if state.applied_up_to() > log.log_end_offset() {
        tracing::warn!(snapshot = %path.display(), "producer snapshot is ahead of the recovered log; rebuilding from the log");
        state = ProducerState::default();
    }
    log.for_each_batch_from(state.applied_up_to(), |h| {
        if h.last_offset() >= state.applied_up_to() {
            state.apply(h, now_ms);
        }
    })?;
    Ok(state)
}
