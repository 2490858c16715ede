//! The storage engine of one node: an LSM tree in Cassandra's shape.
//!
//! A write goes to the commit log thread, which appends every mutation that
//! arrived meanwhile in one write and one `fdatasync` (group commit: one
//! fsync shared by all concurrent writers), then applies them to the active
//! memtable and answers. In `periodic` mode it answers after the write and
//! fsyncs every period instead, as Cassandra's `commitlog_sync: periodic`
//! does (a crash may lose that window). When the memtable outgrows its
//! budget the log thread freezes it and starts a new segment; the flusher
//! thread writes the frozen memtable as an SSTable, then deletes the
//! segments it covered, then runs size-tiered compaction if a tier is full.
//!
//! Because one thread both appends to the log and applies to the memtable,
//! and freezes the memtable between appends, a mutation in segment N is
//! always in a memtable frozen no earlier than N: deleting the segments
//! below a flushed memtable's successor never loses a write.
//!
//! Reads merge the active memtable, the frozen ones and the SSTables (bloom
//! filters skip SSTables without the partition), reconciling each key's cells
//! by timestamp ([`Cell::wins_over`]).

pub mod commitlog;
pub mod sstable;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cell::{self, Cell, CellKind, KIND_PARTITION, ROW_DELETION};
pub use commitlog::Mutation;
use sstable::SsTable;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// After the commit log holding it is fsynced (Cassandra's `batch`/`group`
    /// modes): nothing acknowledged is lost. The default.
    Batch,
    /// After it is written; the log is fsynced every period (Cassandra's
    /// `periodic`, 10 s by default): a crash of the machine can lose up to one
    /// period of acknowledged writes.
    Periodic(Duration),
}

/// What an engine is opened with.
#[derive(Clone)]
pub struct EngineConfig {
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// A memtable larger than this is flushed (Cassandra's
    /// `memtable_heap_space`, per node here).
    pub memtable_bytes: usize,
    /// Size-tiered compaction's `min_threshold`: SSTables of similar size
    /// merged at once.
    pub compaction_min_threshold: usize,
    /// Seconds since the epoch (TTLs and gc_grace_seconds).
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl EngineConfig {
    pub fn new(dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            dir: dir.into(),
            sync: SyncMode::Batch,
            memtable_bytes: 64 << 20,
            compaction_min_threshold: 4,
            clock: Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0)
            }),
        }
    }
}

/// Cassandra's default gc_grace_seconds (10 days).
pub const GC_GRACE_DEFAULT: i64 = 864_000;

struct Memtable {
    map: RwLock<BTreeMap<Vec<u8>, Cell>>,
    bytes: AtomicUsize,
    /// The smallest write timestamp it holds (tombstones older than every
    /// memtable's cells may be purged).
    min_ts: AtomicI64,
}

impl Memtable {
    fn new() -> Memtable {
        Memtable {
            map: RwLock::new(BTreeMap::new()),
            bytes: AtomicUsize::new(0),
            min_ts: AtomicI64::new(i64::MAX),
        }
    }

    fn apply(&self, m: Mutation) {
        let mut map = self.map.write().expect("memtable lock");
        let mut added = 0;
        let mut min_ts = i64::MAX;
        for (k, c) in m {
            min_ts = min_ts.min(c.ts);
            added += k.len() + c.encoded_len() + 64;
            // One descent of the tree whether the key is new or not.
            match map.entry(k) {
                Entry::Occupied(mut old) => {
                    if c.wins_over(old.get()) {
                        *old.get_mut() = c;
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(c);
                }
            }
        }
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.min_ts.fetch_min(min_ts, Ordering::Relaxed);
    }
}

/// What a read sees: one consistent set of sources.
#[derive(Clone)]
struct View {
    active: Arc<Memtable>,
    /// Frozen memtables waiting for their flush, oldest first.
    frozen: Vec<Arc<Memtable>>,
    sstables: Vec<Arc<SsTable>>,
}

struct Inner {
    cfg: EngineConfig,
    view: RwLock<View>,
    next_generation: AtomicU64,
    gc_grace: RwLock<HashMap<Vec<u8>, i64>>,
    dropped: RwLock<HashSet<Vec<u8>>>,
    /// Set when the commit log could not be written: every later write fails
    /// (Cassandra's `commit_failure_policy: stop_commit`).
    failed: Mutex<Option<String>>,
    stats: Stats,
}

/// Counters of what the engine did.
#[derive(Default)]
pub struct Stats {
    pub writes: AtomicU64,
    pub syncs: AtomicU64,
    pub flushes: AtomicU64,
    pub compactions: AtomicU64,
    pub purged: AtomicU64,
}

enum LogReq {
    Write(
        Vec<u8>,
        Mutation,
        tokio::sync::oneshot::Sender<io::Result<()>>,
    ),
    /// Freeze the active memtable and flush it; answered once it is an SSTable.
    Flush(tokio::sync::oneshot::Sender<io::Result<()>>),
    Stop,
}

enum FlushReq {
    Flush(
        Arc<Memtable>,
        u64,
        Vec<tokio::sync::oneshot::Sender<io::Result<()>>>,
    ),
    Compact(bool, tokio::sync::oneshot::Sender<io::Result<usize>>),
    Stop,
}

/// One node's table storage.
pub struct Engine {
    inner: Arc<Inner>,
    log_tx: Mutex<mpsc::Sender<LogReq>>,
    flush_tx: Mutex<mpsc::Sender<FlushReq>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// What `open` found and did.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    pub sstables: usize,
    pub segments: usize,
    pub mutations: usize,
    /// Segments whose torn or corrupt tail was cut.
    pub cut: usize,
}

impl Engine {
    /// Opens (or creates) the engine in `cfg.dir`: opens every SSTable, and
    /// replays the commit log into the memtable.
    pub fn open(cfg: EngineConfig) -> io::Result<(Engine, Recovery)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let mut rec = Recovery::default();
        let mut sstables = Vec::new();
        let gens = sstable::generations(&cfg.dir)?;
        for g in &gens {
            let t = SsTable::open(&cfg.dir, *g).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: {e}", sstable::data_path(&cfg.dir, *g).display()),
                )
            })?;
            sstables.push(Arc::new(t));
        }
        rec.sstables = sstables.len();
        let active = Arc::new(Memtable::new());
        let segs = commitlog::segments(&cfg.dir)?;
        for s in &segs {
            let (muts, cut) = commitlog::replay(&commitlog::segment_path(&cfg.dir, *s))?;
            if cut {
                tracing::warn!(segment = s, "cut a torn or corrupt commit log tail");
                rec.cut += 1;
            }
            rec.mutations += muts.len();
            for m in muts {
                active.apply(m);
            }
        }
        rec.segments = segs.len();
        let next_seq = segs.last().map_or(1, |s| s + 1);
        let inner = Arc::new(Inner {
            view: RwLock::new(View {
                active,
                frozen: Vec::new(),
                sstables,
            }),
            next_generation: AtomicU64::new(gens.last().map_or(1, |g| g + 1)),
            gc_grace: RwLock::new(HashMap::new()),
            dropped: RwLock::new(HashSet::new()),
            failed: Mutex::new(None),
            stats: Stats::default(),
            cfg,
        });
        let segment = commitlog::Segment::create(&inner.cfg.dir, next_seq)?;
        let (log_tx, log_rx) = mpsc::channel();
        let (flush_tx, flush_rx) = mpsc::channel();
        let li = inner.clone();
        let ftx = flush_tx.clone();
        let log = std::thread::Builder::new()
            .name("table-commitlog".into())
            .spawn(move || log_thread(li, segment, log_rx, ftx))?;
        let fi = inner.clone();
        let flusher = std::thread::Builder::new()
            .name("table-flush".into())
            .spawn(move || flush_thread(fi, flush_rx))?;
        Ok((
            Engine {
                inner,
                log_tx: Mutex::new(log_tx),
                flush_tx: Mutex::new(flush_tx),
                threads: Mutex::new(vec![log, flusher]),
            },
            rec,
        ))
    }

    /// Writes a mutation; the receiver answers once it is durable (or
    /// written, in periodic mode) and visible to reads.
    pub fn write(&self, m: Mutation) -> tokio::sync::oneshot::Receiver<io::Result<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(why) = self.inner.failed.lock().expect("lock").clone() {
            let _ = tx.send(Err(io::Error::other(format!(
                "the commit log failed: {why}"
            ))));
            return rx;
        }
        let rec = commitlog::encode_record(&m);
        if rec.len() > commitlog::RECORD_MAX {
            let _ = tx.send(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "mutation of {} bytes is too large for the maximum size of {}",
                    rec.len(),
                    commitlog::RECORD_MAX
                ),
            )));
            return rx;
        }
        if let Err(mpsc::SendError(LogReq::Write(_, _, tx))) = self
            .log_tx
            .lock()
            .expect("lock")
            .send(LogReq::Write(rec, m, tx))
        {
            let _ = tx.send(Err(io::Error::other("the table engine is shut down")));
        }
        rx
    }

    /// Writes and waits (for tests and tools outside an async runtime).
    pub fn write_blocking(&self, m: Mutation) -> io::Result<()> {
        self.write(m)
            .blocking_recv()
            .unwrap_or_else(|_| Err(io::Error::other("the table engine stopped")))
    }

    /// Flushes the active memtable to an SSTable and waits for it.
    pub fn flush(&self) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.log_tx
            .lock()
            .expect("lock")
            .send(LogReq::Flush(tx))
            .map_err(|_| io::Error::other("the table engine is shut down"))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(io::Error::other("the table engine stopped")))
    }

    /// Runs a compaction now: `major` merges every SSTable into one (Cassandra's
    /// `nodetool compact`), else one size tier if one is full. Returns how many
    /// SSTables were merged.
    pub fn compact(&self, major: bool) -> io::Result<usize> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.flush_tx
            .lock()
            .expect("lock")
            .send(FlushReq::Compact(major, tx))
            .map_err(|_| io::Error::other("the table engine is shut down"))?;
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(io::Error::other("the table engine stopped")))
    }

    /// A table's gc_grace_seconds: how long its tombstones are kept.
    pub fn set_gc_grace(&self, table: &[u8], secs: i64) {
        self.inner
            .gc_grace
            .write()
            .expect("lock")
            .insert(table.to_vec(), secs);
    }

    /// Forgets a dropped table's data: reads must no longer ask for it, and
    /// compaction removes it.
    pub fn drop_table(&self, table: &[u8]) {
        self.inner
            .dropped
            .write()
            .expect("lock")
            .insert(table.to_vec());
    }

    /// Every cell with a key in `[start, end)` (an empty `end`: to the last),
    /// reconciled across memtables and
    /// SSTables, in key order. With `partition`, SSTables whose bloom filter
    /// rules that partition out are skipped.
    pub fn scan(&self, start: &[u8], end: &[u8], partition: Option<&[u8]>) -> Scan {
        let view = self.inner.view.read().expect("view lock").clone();
        let mut sources: Vec<BoxedCells> = Vec::new();
        for m in std::iter::once(&view.active).chain(view.frozen.iter()) {
            sources.push(Box::new(MemRange::new(m.clone(), start, end)));
        }
        for t in &view.sstables {
            if partition.is_some_and(|p| !t.may_contain_partition(p)) {
                continue;
            }
            sources.push(Box::new(t.range(start, end)));
        }
        Scan {
            sources: sources.into_iter().map(|s| s.peekable()).collect(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// SSTables on disk now, and their bytes.
    pub fn sstables(&self) -> (usize, u64) {
        let v = self.inner.view.read().expect("view lock");
        (v.sstables.len(), v.sstables.iter().map(|t| t.bytes).sum())
    }

    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }

    /// Stops the threads after the log's last fsync.
    pub fn shutdown(&self) {
        let _ = self.log_tx.lock().expect("lock").send(LogReq::Stop);
        let threads: Vec<_> = self.threads.lock().expect("lock").drain(..).collect();
        let mut it = threads.into_iter();
        if let Some(log) = it.next() {
            let _ = log.join();
        }
        let _ = self.flush_tx.lock().expect("lock").send(FlushReq::Stop);
        for t in it {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Most bytes of mutations written in one round.
const ROUND_BYTES: usize = 8 << 20;

fn log_thread(
    inner: Arc<Inner>,
    mut segment: commitlog::Segment,
    rx: mpsc::Receiver<LogReq>,
    flush_tx: mpsc::Sender<FlushReq>,
) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let first = match inner.cfg.sync {
            SyncMode::Batch => rx.recv().ok(),
            SyncMode::Periodic(p) => match rx.recv_timeout(p.saturating_sub(last_sync.elapsed())) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if unsynced {
                        sync_or_fail(&inner, &segment);
                        unsynced = false;
                    }
                    last_sync = Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        let mut reqs = vec![first];
        let mut bytes = 0;
        while bytes < ROUND_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    if let LogReq::Write(rec, _, _) = &r {
                        bytes += rec.len();
                    }
                    reqs.push(r);
                }
                Err(_) => break,
            }
        }
        let mut buf = Vec::with_capacity(bytes);
        let mut writes = Vec::new();
        let mut flushes = Vec::new();
        let mut stop = false;
        for r in reqs {
            match r {
                LogReq::Write(rec, m, done) => {
                    buf.extend_from_slice(&rec);
                    writes.push((m, done));
                }
                LogReq::Flush(done) => flushes.push(done),
                LogReq::Stop => stop = true,
            }
        }
        if !writes.is_empty() {
            let mut res = segment.append(&buf);
            if res.is_ok() {
                match inner.cfg.sync {
                    SyncMode::Batch => {
                        res = segment.sync();
                        inner.stats.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    SyncMode::Periodic(p) => {
                        unsynced = true;
                        if last_sync.elapsed() >= p {
                            res = segment.sync();
                            inner.stats.syncs.fetch_add(1, Ordering::Relaxed);
                            last_sync = Instant::now();
                            unsynced = false;
                        }
                    }
                }
            }
            match res {
                Ok(()) => {
                    let active = inner.view.read().expect("view lock").active.clone();
                    let n = writes.len() as u64;
                    let mut dones = Vec::with_capacity(writes.len());
                    // One lock round for the whole group.
                    let mut all = Vec::new();
                    for (m, done) in writes {
                        all.extend(m);
                        dones.push(done);
                    }
                    active.apply(all);
                    inner.stats.writes.fetch_add(n, Ordering::Relaxed);
                    for d in dones {
                        let _ = d.send(Ok(()));
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    tracing::error!("commit log write failed, refusing writes: {why}");
                    *inner.failed.lock().expect("lock") = Some(why.clone());
                    for (_, d) in writes {
                        let _ = d.send(Err(io::Error::other(format!(
                            "the commit log failed: {why}"
                        ))));
                    }
                }
            }
        }
        let full = inner
            .view
            .read()
            .expect("view lock")
            .active
            .bytes
            .load(Ordering::Relaxed)
            >= inner.cfg.memtable_bytes;
        if full || !flushes.is_empty() || stop {
            // Freeze the memtable; later writes go to a new segment.
            if unsynced {
                sync_or_fail(&inner, &segment);
                unsynced = false;
            }
            if stop && flushes.is_empty() {
                break;
            }
            match commitlog::Segment::create(&inner.cfg.dir, segment.seq + 1) {
                Ok(next) => {
                    segment = next;
                    let frozen = {
                        let mut v = inner.view.write().expect("view lock");
                        let old = std::mem::replace(&mut v.active, Arc::new(Memtable::new()));
                        v.frozen.push(old.clone());
                        old
                    };
                    let _ = flush_tx.send(FlushReq::Flush(frozen, segment.seq, flushes));
                }
                Err(e) => {
                    for f in flushes {
                        let _ = f.send(Err(io::Error::other(format!(
                            "new commit log segment: {e}"
                        ))));
                    }
                }
            }
        }
        if stop {
            break;
        }
    }
    if unsynced {
        sync_or_fail(&inner, &segment);
    }
}

fn sync_or_fail(inner: &Inner, segment: &commitlog::Segment) {
    inner.stats.syncs.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = segment.sync() {
        tracing::error!("commit log fsync failed, refusing writes: {e}");
        *inner.failed.lock().expect("lock") = Some(e.to_string());
    }
}

fn flush_thread(inner: Arc<Inner>, rx: mpsc::Receiver<FlushReq>) {
    while let Ok(req) = rx.recv() {
        match req {
            FlushReq::Flush(mem, next_seq, waiters) => {
                let res = flush_memtable(&inner, &mem, next_seq);
                if let Err(e) = &res {
                    tracing::error!("memtable flush failed: {e}");
                }
                for w in waiters {
                    let _ = w.send(
                        res.as_ref()
                            .map(|_| ())
                            .map_err(|e| io::Error::new(e.kind(), e.to_string())),
                    );
                }
                if res.is_ok() {
                    if let Err(e) = compact(&inner, false) {
                        tracing::error!("compaction failed: {e}");
                    }
                }
            }
            FlushReq::Compact(major, done) => {
                let _ = done.send(compact(&inner, major));
            }
            FlushReq::Stop => break,
        }
    }
}

fn flush_memtable(inner: &Inner, mem: &Arc<Memtable>, next_seq: u64) -> io::Result<()> {
    let generation = inner.next_generation.fetch_add(1, Ordering::SeqCst);
    let table = {
        let map = mem.map.read().expect("memtable lock");
        let partitions = map.len() as u64 / 2 + 1;
        sstable::write(
            &inner.cfg.dir,
            generation,
            partitions,
            map.iter().map(|(k, c)| (k.clone(), c.clone())),
        )?
    };
    {
        let mut v = inner.view.write().expect("view lock");
        v.frozen.retain(|m| !Arc::ptr_eq(m, mem));
        if let Some(t) = table {
            v.sstables.push(Arc::new(t));
        }
    }
    inner.stats.flushes.fetch_add(1, Ordering::Relaxed);
    // Every mutation in a segment below next_seq is in this memtable or an
    // earlier one, all flushed now.
    for s in commitlog::segments(&inner.cfg.dir)? {
        if s < next_seq {
            std::fs::remove_file(commitlog::segment_path(&inner.cfg.dir, s))?;
        }
    }
    Ok(())
}

/// Size-tiered selection: SSTables within half and one and a half times a
/// tier's average size (all below 50 MiB in one tier), the fullest tier with
/// at least `min` members.
fn pick_tier(tables: &[Arc<SsTable>], min: usize) -> Vec<Arc<SsTable>> {
    let mut sorted: Vec<_> = tables.to_vec();
    sorted.sort_by_key(|t| t.bytes);
    let mut tiers: Vec<Vec<Arc<SsTable>>> = Vec::new();
    for t in sorted {
        let fits = tiers.last().is_some_and(|tier| {
            let avg = tier.iter().map(|x| x.bytes).sum::<u64>() / tier.len() as u64;
            (t.bytes < 50 << 20 && avg < 50 << 20) || (t.bytes * 2 >= avg && t.bytes * 2 <= avg * 3)
        });
        if fits {
            tiers.last_mut().expect("a tier").push(t);
        } else {
            tiers.push(vec![t]);
        }
    }
    tiers
        .into_iter()
        .filter(|t| t.len() >= min)
        .max_by_key(|t| t.len())
        .map(|mut t| {
            t.truncate(32);
            t
        })
        .unwrap_or_default()
}

fn compact(inner: &Inner, major: bool) -> io::Result<usize> {
    let view = inner.view.read().expect("view lock").clone();
    let inputs = if major {
        view.sstables.clone()
    } else {
        pick_tier(&view.sstables, inner.cfg.compaction_min_threshold)
    };
    if inputs.len() < 2 && !(major && inputs.len() == 1) {
        return Ok(0);
    }
    let now = (inner.cfg.clock)();
    // Tombstones may go only if nothing they shadow can be elsewhere: every
    // SSTable is in this compaction and no memtable holds an older write.
    let all = inputs.len() == view.sstables.len();
    let mem_min = std::iter::once(&view.active)
        .chain(view.frozen.iter())
        .map(|m| m.min_ts.load(Ordering::Relaxed))
        .min()
        .unwrap_or(i64::MAX);
    let gc_grace = inner.gc_grace.read().expect("lock").clone();
    let dropped = inner.dropped.read().expect("lock").clone();
    let sources = inputs
        .iter()
        .map(|t| Box::new(t.range(&[], &[])) as BoxedCells)
        .map(|s| s.peekable())
        .collect();
    let merged = Scan { sources };
    let mut err = None;
    let mut purged = 0u64;
    let mut shadow = Shadow::default();
    let cells = merged
        .map_while(|r| match r {
            Ok(x) => Some(x),
            Err(e) => {
                err = Some(e);
                None
            }
        })
        .filter_map(|(k, mut c)| {
            let parts = cell::split_key(&k)?;
            if dropped.contains(parts.table) {
                purged += 1;
                return None;
            }
            if shadow.shadows(&k, &parts, &c) {
                purged += 1;
                return None;
            }
            if let Some(since) = c.deleted_since(now) {
                let grace = gc_grace
                    .get(parts.table)
                    .copied()
                    .unwrap_or(GC_GRACE_DEFAULT);
                if all && since + grace < now && c.ts < mem_min {
                    purged += 1;
                    return None;
                }
                if c.kind == CellKind::Expiring {
                    // An expired value becomes a tombstone, as in Cassandra.
                    c.kind = CellKind::Tombstone;
                    c.value.clear();
                }
            }
            Some((k, c))
        });
    let generation = inner.next_generation.fetch_add(1, Ordering::SeqCst);
    let partitions = inputs.iter().map(|t| t.cells).sum::<u64>() / 2 + 1;
    let out = sstable::write(&inner.cfg.dir, generation, partitions, cells)?;
    if let Some(e) = err {
        let _ = std::fs::remove_file(sstable::data_path(&inner.cfg.dir, generation));
        return Err(e);
    }
    {
        let mut v = inner.view.write().expect("view lock");
        v.sstables
            .retain(|t| !inputs.iter().any(|i| Arc::ptr_eq(i, t)));
        if let Some(t) = out {
            v.sstables.push(Arc::new(t));
        }
        v.sstables.sort_by_key(|t| t.generation);
    }
    for t in &inputs {
        std::fs::remove_file(&t.path)?;
    }
    inner.stats.compactions.fetch_add(1, Ordering::Relaxed);
    inner.stats.purged.fetch_add(purged, Ordering::Relaxed);
    Ok(inputs.len())
}

/// Tracks the partition and row deletions seen so far in key order, to drop
/// the cells they shadow.
#[derive(Default)]
struct Shadow {
    partition: Vec<u8>,
    partition_del: i64,
    row: Vec<u8>,
    row_del: i64,
}

impl Shadow {
    fn shadows(&mut self, key: &[u8], parts: &cell::KeyParts<'_>, c: &Cell) -> bool {
        let plen = key.len() - parts.clustering.len() - 5;
        if key[..plen] != self.partition[..] {
            self.partition = key[..plen].to_vec();
            self.partition_del = i64::MIN;
            self.row.clear();
            self.row_del = i64::MIN;
        }
        if parts.kind == KIND_PARTITION {
            if c.kind == CellKind::Tombstone {
                self.partition_del = c.ts;
            }
            return false;
        }
        let rlen = key.len() - 4;
        if key[..rlen] != self.row[..] {
            self.row = key[..rlen].to_vec();
            self.row_del = i64::MIN;
        }
        if c.ts <= self.partition_del {
            return true;
        }
        if parts.column == ROW_DELETION {
            if c.kind == CellKind::Tombstone {
                self.row_del = c.ts;
            }
            return false;
        }
        c.ts <= self.row_del
    }
}

/// A memtable's key range, copied out a chunk at a time so no lock is held
/// between chunks.
struct MemRange {
    mem: Arc<Memtable>,
    from: Bound<Vec<u8>>,
    end: Vec<u8>,
    buf: VecDeque<(Vec<u8>, Cell)>,
    done: bool,
}

impl MemRange {
    fn new(mem: Arc<Memtable>, start: &[u8], end: &[u8]) -> MemRange {
        MemRange {
            mem,
            from: Bound::Included(start.to_vec()),
            end: end.to_vec(),
            buf: VecDeque::new(),
            done: false,
        }
    }
}

impl Iterator for MemRange {
    type Item = io::Result<(Vec<u8>, Cell)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            if !self.end.is_empty() && self.end.as_slice() <= self.bound_key() {
                self.done = true;
                return None;
            }
            let map = self.mem.map.read().expect("memtable lock");
            let end = if self.end.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(self.end.clone())
            };
            let range = (self.from.clone(), end);
            self.buf.extend(
                map.range(range)
                    .take(512)
                    .map(|(k, c)| (k.clone(), c.clone())),
            );
            drop(map);
            match self.buf.back() {
                Some((k, _)) => self.from = Bound::Excluded(k.clone()),
                None => self.done = true,
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

impl MemRange {
    fn bound_key(&self) -> &[u8] {
        match &self.from {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[],
        }
    }
}

type BoxedCells = Box<dyn Iterator<Item = io::Result<(Vec<u8>, Cell)>> + Send>;
type Source = std::iter::Peekable<BoxedCells>;

/// A merge of sorted sources, each key once with its winning cell.
pub struct Scan {
    sources: Vec<Source>,
}

impl Iterator for Scan {
    type Item = io::Result<(Vec<u8>, Cell)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut min: Option<Vec<u8>> = None;
        for s in self.sources.iter_mut() {
            match s.peek() {
                Some(Ok((k, _))) if min.as_ref().is_none_or(|m| k < m) => {
                    min = Some(k.clone());
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => return s.next(),
                None => {}
            }
        }
        let min = min?;
        let mut best: Option<Cell> = None;
        for s in self.sources.iter_mut() {
            if matches!(s.peek(), Some(Ok((k, _))) if *k == min) {
                if let Some(Ok((_, c))) = s.next() {
                    if best.as_ref().is_none_or(|b| c.wins_over(b)) {
                        best = Some(c);
                    }
                }
            }
        }
        best.map(|c| Ok((min, c)))
    }
}
