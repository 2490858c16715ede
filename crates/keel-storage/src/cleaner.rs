//! Log compaction (`cleanup.policy=compact`), shaped like Kafka's log cleaner
//! (`kafka.log.LogCleaner`): the log below the last compaction's end is *clean*
//! (each key at most once), the closed segments after it are *dirty*. A pass maps
//! the dirty records' keys to their latest offsets, in a map of bounded size
//! (`log.cleaner.dedupe.buffer.size`), then rewrites every segment below the
//! map's end, keeping a record only if no later record has its key. When the map
//! fills before the dirty part ends, the pass stops there and the next one goes
//! on from it, so memory stays bounded however many keys a partition has.
//!
//! Keys are held as 128-bit hashes under per-pass random keys (Kafka holds MD5
//! digests): memory per key is fixed, and no producer can aim two keys at the
//! same slot.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::batch::{self, BatchHeader};
use crate::segment::{self, Segment};
use crate::{Result, StorageError};

/// The suffix of a segment being rewritten by compaction; left over only by a crash.
pub(crate) const CLEANED_SUFFIX: &str = "cleaned";

/// What the key map costs per distinct key: a 16-byte hash and an 8-byte offset
/// with the hash table's slack. The map grows by doubling, so a pass may briefly
/// hold up to twice its share just before it stops.
pub const BYTES_PER_KEY: usize = 32;

/// When and how a compacted log is cleaned: Kafka's topic configs of the same
/// names (<https://kafka.apache.org/documentation/#topicconfigs>).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerConfig {
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes are this share of the
    /// cleanable log.
    pub min_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a segment holding a record younger than this is
    /// not cleaned yet, so consumers can read every update of that age.
    pub min_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty data older than this is cleaned whatever
    /// the ratio.
    pub max_lag_ms: i64,
    /// `delete.retention.ms`: how long a tombstone outlives its timestamp.
    pub delete_retention_ms: i64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            min_dirty_ratio: 0.5,
            min_lag_ms: 0,
            max_lag_ms: i64::MAX,
            delete_retention_ms: 86_400_000,
        }
    }
}

/// A compaction's input: the cleanable segments of a log, taken under the log's
/// lock and worked on without it ([`compact`]).
#[derive(Debug)]
pub struct CompactionPlan {
    pub(crate) dir: PathBuf,
    /// (base offset, path, bytes) of each segment, in order.
    pub(crate) segments: Vec<(i64, PathBuf, u64)>,
    /// Offsets from here are dirty: the previous pass's end.
    pub(crate) dirty_from: i64,
    /// One past the last cleanable offset.
    pub(crate) end: i64,
    pub(crate) delete_retention_ms: i64,
    /// `index.interval.bytes`, for the rewritten segments' indexes.
    pub(crate) index_interval_bytes: u64,
}

impl CompactionPlan {
    /// One past the last offset this pass may clean.
    pub fn end(&self) -> i64 {
        self.end
    }
}

/// A compaction's output, installed with [`crate::Log::install_compaction`].
#[derive(Debug)]
pub struct Compacted {
    /// (base offset, path of the rewritten segment) for each segment that changed.
    pub(crate) rewritten: Vec<(i64, PathBuf)>,
    /// Offsets below this are clean now; the next pass starts here.
    pub(crate) end: i64,
    pub records_removed: u64,
    /// Distinct keys the pass mapped.
    pub keys_mapped: usize,
    /// Bytes the pass read (mapping and rewriting).
    pub bytes_read: u64,
    pub(crate) tombstone_due_ms: Option<i64>,
}

impl Compacted {
    /// One past the last offset now clean.
    pub fn end(&self) -> i64 {
        self.end
    }
}

/// The u128 key hashes are uniformly random already; hashing them again is waste.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// Latest offset per key hash, for one pass.
struct KeyMap {
    a: RandomState,
    b: RandomState,
    latest: HashMap<u128, i64, BuildHasherDefault<Identity>>,
}

impl KeyMap {
    fn new() -> KeyMap {
        KeyMap {
            a: RandomState::new(),
            b: RandomState::new(),
            latest: HashMap::default(),
        }
    }
    fn hash(&self, key: &[u8]) -> u128 {
        (u128::from(self.a.hash_one(key)) << 64) | u128::from(self.b.hash_one(key))
    }
    fn put(&mut self, key: &[u8], offset: i64) {
        let h = self.hash(key);
        self.latest.insert(h, offset);
    }
    fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(&self.hash(key)).copied()
    }
}

/// A segment's rewrite, streamed to its `.cleaned` file: nothing is written while
/// every batch is unchanged; at the first change, the unchanged prefix is copied
/// from the segment and the rest follows. Memory stays at a batch, not a segment.
struct Rewrite<'a> {
    source: &'a Path,
    target: &'a Path,
    unchanged_prefix: u64,
    out: Option<std::io::BufWriter<File>>,
}

impl<'a> Rewrite<'a> {
    fn new(source: &'a Path, target: &'a Path) -> Self {
        Rewrite {
            source,
            target,
            unchanged_prefix: 0,
            out: None,
        }
    }

    fn unchanged(&mut self, batch: &[u8], written: &mut Vec<PathBuf>) -> Result<()> {
        match &mut self.out {
            None => {
                self.unchanged_prefix += batch.len() as u64;
                Ok(())
            }
            Some(_) => self.changed(batch, written),
        }
    }

    fn changed(&mut self, bytes: &[u8], written: &mut Vec<PathBuf>) -> Result<()> {
        let write_err = StorageError::io("write compacted segment", self.target);
        let out = match &mut self.out {
            Some(out) => out,
            None => {
                let file =
                    File::create(self.target).map_err(StorageError::io("create", self.target))?;
                written.push(self.target.to_path_buf());
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                let mut src = File::open(self.source)
                    .map_err(StorageError::io("open segment", self.source))?;
                std::io::copy(&mut (&mut src).take(self.unchanged_prefix), &mut out)
                    .map_err(StorageError::io("write compacted segment", self.target))?;
                self.out.insert(out)
            }
        };
        out.write_all(bytes).map_err(write_err)
    }

    /// Makes the rewrite durable; `false` when nothing changed and nothing was written.
    fn finish(self) -> Result<bool> {
        let Some(out) = self.out else {
            return Ok(false);
        };
        let file = out.into_inner().map_err(|e| {
            StorageError::io("write compacted segment", self.target)(e.into_error())
        })?;
        file.sync_all()
            .map_err(StorageError::io("sync compacted segment", self.target))?;
        Ok(true)
    }
}

/// Reads every batch of a closed segment, CRC-checked, calling `each` with it
/// until it returns `false`. Returns the bytes read.
pub(crate) fn for_each_stored_batch(
    path: &Path,
    size: u64,
    mut each: impl FnMut(&[u8]) -> Result<bool>,
) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path).map_err(StorageError::io("open segment", path))?;
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos < size {
        buf.resize(batch::HEADER_BYTES, 0);
        file.read_exact_at(&mut buf, pos)
            .map_err(StorageError::io("read segment", path))?;
        let n = BatchHeader::parse(&buf)?.total_bytes();
        buf.resize(n, 0);
        file.read_exact_at(&mut buf, pos)
            .map_err(StorageError::io("read segment", path))?;
        batch::check(&buf).map_err(|e| StorageError::Damaged {
            path: path.to_path_buf(),
            offset: -1,
            why: e.to_string(),
        })?;
        pos += n as u64;
        if !each(&buf)? {
            break;
        }
    }
    Ok(pos)
}

/// Maps the keys of the dirty records, `plan.dirty_from` up to `plan.end`, to
/// their latest offsets, stopping before a batch that could take the map past
/// `max_keys`. Returns the map and where it stopped (one past its last offset).
fn map_dirty(
    plan: &CompactionPlan,
    max_keys: usize,
    abort: &AtomicBool,
    read: &mut u64,
) -> Result<(KeyMap, i64)> {
    let mut map = KeyMap::new();
    let mut stopped = None;
    for (i, (_, path, size)) in plan.segments.iter().enumerate() {
        let next = plan.segments.get(i + 1).map_or(plan.end, |s| s.0);
        if next <= plan.dirty_from {
            continue;
        }
        *read += for_each_stored_batch(path, *size, |b| {
            if abort.load(Ordering::Relaxed) {
                return Err(StorageError::Aborted);
            }
            let h = BatchHeader::parse(b)?;
            if h.last_offset() < plan.dirty_from {
                return Ok(true);
            }
            let count = usize::try_from(h.records_count).unwrap_or(0);
            // At least one batch per pass, so a pass always moves forward.
            if !map.latest.is_empty() && map.latest.len() + count > max_keys {
                stopped = Some(h.base_offset);
                return Ok(false);
            }
            batch::for_each_record(b, |h, r| {
                let offset = h.base_offset + i64::from(r.offset_delta);
                if let (Some(k), true) = (r.key, offset >= plan.dirty_from) {
                    map.put(k, offset);
                }
                false
            })?;
            Ok(true)
        })?;
        if stopped.is_some() {
            break;
        }
    }
    Ok((map, stopped.unwrap_or(plan.end)))
}

/// Compacts the log of `plan`: of each key only the record with the highest
/// offset stays, and a tombstone (a null value) goes too once its timestamp is
/// more than `delete.retention.ms` old, so a consumer that starts over within
/// that time still sees the delete. Records without a key are kept. Offsets never
/// change; a batch keeps its header and loses records (recompressed with its own
/// codec), an emptied batch is dropped, an emptied segment stays as an empty
/// file. Runs without the log's lock: closed segments do not change. The key map
/// holds at most `max_keys` keys; see the module docs. Setting `abort` stops the
/// pass between batches with [`StorageError::Aborted`], leaving the log as it was.
pub fn compact(
    plan: &CompactionPlan,
    now_ms: i64,
    max_keys: usize,
    abort: &AtomicBool,
) -> Result<Compacted> {
    let mut written = Vec::new();
    let result = compact_into(plan, now_ms, max_keys, abort, &mut written);
    if result.is_err() {
        // Recovery would delete them too; a failed pass tidies up after itself.
        for path in written {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

fn compact_into(
    plan: &CompactionPlan,
    now_ms: i64,
    max_keys: usize,
    abort: &AtomicBool,
    written: &mut Vec<PathBuf>,
) -> Result<Compacted> {
    let mut bytes_read = 0;
    let (map, end) = map_dirty(plan, max_keys.max(1), abort, &mut bytes_read)?;
    let horizon = now_ms.saturating_sub(plan.delete_retention_ms);
    let mut out = Compacted {
        rewritten: Vec::new(),
        end,
        records_removed: 0,
        keys_mapped: map.latest.len(),
        bytes_read: 0,
        tombstone_due_ms: None,
    };
    for (base, path, size) in plan.segments.iter().filter(|s| s.0 < end) {
        let cleaned = plan.dir.join(format!(
            "{}.{CLEANED_SUFFIX}",
            segment::file_name(*base, "log")
        ));
        let mut rewrite = Rewrite::new(path, &cleaned);
        let mut removed = 0u64;
        bytes_read += for_each_stored_batch(path, *size, |b| {
            if abort.load(Ordering::Relaxed) {
                return Err(StorageError::Aborted);
            }
            let mut kept = Vec::new();
            let mut kept_count = 0i32;
            let mut dropped = 0u64;
            let h = batch::for_each_record(b, |h, r| {
                let offset = h.base_offset + i64::from(r.offset_delta);
                let keep = match r.key {
                    None => true,
                    _ if offset >= end => true,
                    Some(k) if map.get(k).is_some_and(|latest| latest != offset) => false,
                    Some(_) if r.value.is_some() => true,
                    Some(_) => {
                        let ts = batch::record_timestamp(h, r);
                        let keep = ts > horizon;
                        if keep {
                            let due = ts
                                .saturating_add(plan.delete_retention_ms)
                                .saturating_add(1);
                            out.tombstone_due_ms =
                                Some(out.tombstone_due_ms.map_or(due, |d: i64| d.min(due)));
                        }
                        keep
                    }
                };
                if keep {
                    kept.extend_from_slice(r.raw);
                    kept_count += 1;
                } else {
                    dropped += 1;
                }
                false
            })?;
            if dropped == 0 {
                rewrite.unchanged(b, written)?;
            } else if kept_count > 0 {
                rewrite.changed(&batch::rebuild(&h, &kept, kept_count)?, written)?;
            } else {
                rewrite.changed(&[], written)?;
            }
            removed += dropped;
            Ok(true)
        })?;
        if rewrite.finish()? {
            // Check what was written and index it here, without the log's lock,
            // so installing it takes no scan.
            let seg = Segment::verify_cleaned(&cleaned, *base, plan.index_interval_bytes)?;
            let indexes = ["index", "timeindex"].map(|ext| {
                plan.dir.join(format!(
                    "{}.{CLEANED_SUFFIX}",
                    segment::file_name(*base, ext)
                ))
            });
            written.extend(indexes.iter().cloned());
            seg.write_indexes_as(&plan.dir, &format!(".{CLEANED_SUFFIX}"))?;
            for p in &indexes {
                File::open(p)
                    .and_then(|f| f.sync_all())
                    .map_err(StorageError::io("sync compacted index", p))?;
            }
            out.records_removed += removed;
            out.rewritten.push((*base, cleaned));
        }
    }
    out.bytes_read = bytes_read;
    Ok(out)
}
