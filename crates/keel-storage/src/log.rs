//! A partition's log: an ordered set of segments, the last one active.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, OffsetAndTimestamp};
use crate::cleaner::{CleanerConfig, Compacted, CompactionPlan, CLEANED_SUFFIX};
use crate::segment::{self, Segment};
use crate::{Result, StorageError};

/// Written by a clean close, removed on open: its presence means every segment
/// and index was flushed and written by `close`, so no recovery scan is needed.
const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The base offset of the first segment that may hold unflushed data. Segments
/// before it were fsynced whole when they rolled.
const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Where the last compaction ended (Kafka's `cleaner-offset-checkpoint`), so a
/// restart does not treat the clean part of the log as dirty again. Written
/// after the compacted segments are durable; a stale value only means more work.
const CLEANER_CHECKPOINT_FILE: &str = "cleaner-checkpoint";
/// Where the log starts when that is inside its first segment (Kafka's
/// `log-start-offset-checkpoint`, for this log alone): DeleteRecords moved it,
/// or a follower took its leader's. Written and fsynced before the move is
/// acknowledged, so deleted records never come back after a crash; absent
/// while the start is the first segment's base.
const LOG_START_FILE: &str = "log-start-offset";

/// Per-log settings; the topic configs of the same names, in Kafka's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 means no size limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
        }
    }
}

/// What opening a log found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub clean_shutdown: bool,
    pub segments: usize,
    pub batches_checked: u64,
    pub truncated_bytes: u64,
    pub segments_removed: usize,
}

/// Bytes read for a fetch: whole batches, each CRC-checked after reading.
#[derive(Debug, Default)]
pub struct ReadResult {
    pub bytes: Vec<u8>,
    pub batches: usize,
}

/// The files to fsync to make every offset below `up_to` durable. Taken under the
/// log's lock, run without it, then reported with [`Log::complete_flush`].
#[derive(Debug)]
pub struct FlushJob {
    pub files: Vec<Arc<File>>,
    pub up_to: i64,
    recovery_point: i64,
}

impl FlushJob {
    /// fsyncs (fdatasync) every file of the job.
    pub fn run(&self) -> std::io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        Ok(())
    }
}

pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_end_offset: i64,
    pub(crate) flushed_offset: i64,
    /// Rolled segments whose data is not yet known durable.
    pub(crate) unflushed_rolled: Vec<Arc<File>>,
    pub(crate) recovery_point: i64,
    /// The end of the part of the log the last compaction covered.
    pub(crate) compacted_end: i64,
    /// Where each leader epoch begins, once a replica needed it (`replica`).
    pub(crate) epochs: Option<crate::replica::EpochCache>,
    /// The log start when DeleteRecords put it past the first segment's base
    /// (`i64::MIN`: none); see `LOG_START_FILE`.
    pub(crate) start_override: i64,
    /// When the oldest tombstone that compaction kept becomes removable.
    tombstone_due_ms: Option<i64>,
}

fn read_i64_file(p: &Path) -> Option<i64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Replaces `dir/name` with `value` atomically and durably: the new file is
/// fsynced before the rename, the directory after.
fn write_durable_file(dir: &Path, name: &str, value: &str) -> Result<()> {
    use std::io::Write;
    let p = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(value.as_bytes())?;
            f.sync_all()
        })
        .map_err(StorageError::io("write", &tmp))?;
    std::fs::rename(&tmp, &p).map_err(StorageError::io("write", &p))?;
    sync_dir(dir)
}

/// Replaces `dir/name` with `value` atomically (a hint file: not fsynced, as a
/// stale value is safe wherever one is used).
fn write_hint_file(dir: &Path, name: &str, value: &str) -> Result<()> {
    let p = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, value).map_err(StorageError::io("write", &tmp))?;
    std::fs::rename(&tmp, &p).map_err(StorageError::io("write", &p))
}

/// The cleaner checkpoint: "END" or "END DUE" (when a kept tombstone comes due);
/// `None` when missing or unreadable, which costs one full pass.
fn read_cleaner_checkpoint(dir: &Path) -> Option<(i64, Option<i64>)> {
    let text = std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT_FILE)).ok()?;
    let mut words = text.split_whitespace();
    let end = words.next()?.parse().ok()?;
    let due = match words.next() {
        None => None,
        Some(w) => Some(w.parse().ok()?),
    };
    Some((end, due))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("sync directory", dir))
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering it if it was not closed cleanly.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<(Log, RecoveryReport)> {
        std::fs::create_dir_all(dir).map_err(StorageError::io("create log directory", dir))?;
        let mut bases: Vec<i64> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(StorageError::io("list log directory", dir))? {
            let entry = entry.map_err(StorageError::io("list log directory", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            } else if name.ends_with(CLEANED_SUFFIX) {
                // A compaction that crashed before its rename: the original stands.
                let p = entry.path();
                std::fs::remove_file(&p).map_err(StorageError::io("remove stale file", &p))?;
            }
        }
        bases.sort_unstable();
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = clean_marker.exists();
        let recovery_point = if clean {
            i64::MAX
        } else {
            read_i64_file(&dir.join(RECOVERY_POINT_FILE)).unwrap_or(i64::MIN)
        };
        let mut report = RecoveryReport {
            clean_shutdown: clean,
            ..Default::default()
        };
        let mut segments = BTreeMap::new();
        let mut damaged = false;
        for (i, &base) in bases.iter().enumerate() {
            if damaged {
                // Everything after a truncated segment is unreachable: its offsets would leave a gap.
                let (seg, _) = Segment::open(dir, base, true, config.index_interval_bytes, now_ms)?;
                seg.delete_files(dir)?;
                report.segments_removed += 1;
                continue;
            }
            // Segments wholly before the recovery point were fsynced when they rolled.
            let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let trusted = next_base <= recovery_point || clean;
            let (seg, scan) =
                Segment::open(dir, base, trusted, config.index_interval_bytes, now_ms)?;
            report.batches_checked += scan.batches;
            report.truncated_bytes += scan.truncated_bytes;
            if scan.truncated_bytes > 0 {
                damaged = true;
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0, now_ms)?);
            sync_dir(dir)?;
        }
        report.segments = segments.len();
        let active = segments
            .values()
            .next_back()
            .expect("a log always has a segment");
        // Whatever survived a crash sits in the page cache at best: make it durable
        // before anything new is acknowledged on top of it.
        active
            .file
            .sync_all()
            .map_err(StorageError::io("sync segment", &active.path))?;
        let log_end_offset = active.next_offset;
        let cleaner_checkpoint = read_cleaner_checkpoint(dir);
        let active_base = active.base_offset;
        if clean {
            std::fs::remove_file(&clean_marker).map_err(StorageError::io(
                "remove clean-shutdown marker",
                &clean_marker,
            ))?;
            sync_dir(dir)?;
        }
        let log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_end_offset,
            flushed_offset: log_end_offset,
            unflushed_rolled: Vec::new(),
            recovery_point: active_base,
            compacted_end: cleaner_checkpoint
                .map(|(end, _)| end)
                .filter(|end| *end <= log_end_offset)
                .unwrap_or(i64::MIN),
            tombstone_due_ms: cleaner_checkpoint.and_then(|(_, due)| due),
            epochs: None,
            start_override: read_i64_file(&dir.join(LOG_START_FILE)).unwrap_or(i64::MIN),
        };
        log.write_recovery_point()?;
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.first()
            .base_offset
            .max(self.start_override)
            .min(self.log_end_offset)
    }

    /// Moves the log start up to `offset` (at most the log end): Kafka's
    /// `maybeIncrementLogStartOffset`, for DeleteRecords on a leader and for a
    /// follower taking its leader's start. Offsets below it are out of range
    /// from then on (a read inside the batch that holds the new start still
    /// returns that whole batch, as Kafka's does); segments wholly below it
    /// are deleted. Durable before it returns. Whether the start moved.
    pub fn advance_start(&mut self, offset: i64) -> Result<bool> {
        let offset = offset.min(self.log_end_offset);
        if offset <= self.log_start_offset() {
            return Ok(false);
        }
        write_durable_file(&self.dir, LOG_START_FILE, &offset.to_string())?;
        self.start_override = offset;
        while self.segments.len() > 1 {
            let mut bases = self.segments.keys();
            let (first, next) = match (bases.next(), bases.next()) {
                (Some(f), Some(n)) => (*f, *n),
                _ => break,
            };
            if next > offset {
                break;
            }
            let seg = self.segments.remove(&first).expect("listed above");
            seg.delete_files(&self.dir)?;
            tracing::info!(log = %self.dir.display(), base_offset = first, "deleted segment below the log start");
        }
        Ok(true)
    }

    /// After the log end moved down (a truncation), a start recorded past it
    /// comes down to it: else the next appends would land below the start.
    pub(crate) fn clamp_start_override(&mut self) -> Result<()> {
        if self.start_override > self.log_end_offset {
            self.start_override = self.log_end_offset;
            write_durable_file(&self.dir, LOG_START_FILE, &self.log_end_offset.to_string())?;
        }
        Ok(())
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
    /// Every offset below this is on disk (fsynced).
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn first(&self) -> &Segment {
        self.segments
            .values()
            .next()
            .expect("a log always has a segment")
    }
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }
    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Appends one validated batch: assigns its offsets (and, with `log_append_time`,
    /// the broker's timestamp), rolling the segment first if it is full or old.
    /// Returns the batch's header as written.
    pub fn append(
        &mut self,
        batch: &mut [u8],
        leader_epoch: i32,
        log_append_time: bool,
        now_ms: i64,
    ) -> Result<BatchHeader> {
        let mut h = BatchHeader::parse(batch)?;
        if h.total_bytes() != batch.len() {
            return Err(StorageError::CorruptBatch(
                "batch length disagrees with its bytes".into(),
            ));
        }
        self.maybe_roll(batch.len() as u64, now_ms)?;
        batch::set_base_offset(batch, self.log_end_offset);
        batch::set_partition_leader_epoch(batch, leader_epoch);
        if log_append_time {
            batch::set_log_append_time(batch, now_ms);
            h.max_timestamp = now_ms;
        }
        h.base_offset = self.log_end_offset;
        h.partition_leader_epoch = leader_epoch;
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(batch, &h, interval)?;
        self.log_end_offset = h.last_offset() + 1;
        if let Some(cache) = &mut self.epochs {
            if cache.last().is_none_or(|(e, _)| *e < leader_epoch) {
                cache.push((leader_epoch, h.base_offset));
            }
        }
        Ok(h)
    }

    pub(crate) fn maybe_roll(&mut self, incoming: u64, now_ms: i64) -> Result<()> {
        let a = self.active();
        let full = a.size > 0 && a.size + incoming > self.config.segment_bytes;
        let old = a.size > 0 && now_ms - a.created_ms >= self.config.segment_ms;
        // Relative offsets in the index are u32: roll before they could overflow.
        let wide = self.log_end_offset - a.base_offset >= i64::from(u32::MAX) / 2;
        if !(full || old || wide) {
            return Ok(());
        }
        a.write_indexes(&self.dir)?;
        self.unflushed_rolled.push(a.file.clone());
        let seg = Segment::create(&self.dir, self.log_end_offset, now_ms)?;
        // The new file's directory entry must be durable before data in it is acknowledged.
        sync_dir(&self.dir)?;
        tracing::debug!(log = %self.dir.display(), base_offset = seg.base_offset, "rolled segment");
        self.segments.insert(seg.base_offset, seg);
        Ok(())
    }

    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes`
    /// (but always at least one whole batch, as KIP-74 asks) and only batches that
    /// end below `max_offset` (the high watermark). Every batch is CRC-checked
    /// after reading: damaged bytes are reported, never returned.
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult> {
        let start = self.log_start_offset();
        if offset < start || offset > self.log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                start,
                end: self.log_end_offset,
            });
        }
        for seg in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .map(|(_, s)| s)
            .chain(self.segments.range(offset + 1..).map(|(_, s)| s))
        {
            if seg.next_offset <= offset {
                continue;
            }
            let Some((pos, first)) = seg.position_of(offset)? else {
                continue;
            };
            if first.last_offset() >= max_offset {
                return Ok(ReadResult::default());
            }
            let mut end = pos + first.total_bytes() as u64;
            let mut batches = 1;
            while end < seg.size {
                let h = seg.header_at(end)?;
                let n = h.total_bytes() as u64;
                if h.last_offset() >= max_offset || end + n - pos > max_bytes as u64 {
                    break;
                }
                end += n;
                batches += 1;
            }
            if end > seg.size {
                return Err(StorageError::Damaged {
                    path: seg.path.clone(),
                    offset,
                    why: "batch runs past the end of the segment".into(),
                });
            }
            let bytes = seg.read_at(pos, (end - pos) as usize)?;
            let mut at = 0;
            while at < bytes.len() {
                let h = BatchHeader::parse(&bytes[at..]).and_then(|h| {
                    let n = h.total_bytes();
                    batch::check(
                        bytes
                            .get(at..at + n)
                            .ok_or_else(|| StorageError::CorruptBatch("short".into()))?,
                    )
                });
                match h {
                    Ok(h) => at += h.total_bytes(),
                    Err(e) => {
                        tracing::error!(segment = %seg.path.display(), position = pos + at as u64, "refusing to serve damaged batch: {e}");
                        return Err(StorageError::Damaged {
                            path: seg.path.clone(),
                            offset,
                            why: e.to_string(),
                        });
                    }
                }
            }
            return Ok(ReadResult { bytes, batches });
        }
        Ok(ReadResult::default())
    }

    /// Kafka's ListOffsets by timestamp: the first offset below `max_offset` whose
    /// record timestamp is `>= ts`, or `None`. Resolution is the batch: the answer is
    /// the first record of the first batch whose max timestamp is `>= ts`, refined to
    /// the exact record for uncompressed CreateTime batches.
    pub fn offset_for_timestamp(
        &self,
        ts: i64,
        max_offset: i64,
    ) -> Result<Option<OffsetAndTimestamp>> {
        for seg in self.segments.values() {
            if seg.max_timestamp < ts {
                continue;
            }
            let Some((pos, h)) = seg.position_of_timestamp(ts)? else {
                continue;
            };
            if h.base_offset >= max_offset {
                return Ok(None);
            }
            let bytes = seg.read_at(pos, h.total_bytes())?;
            let found = batch::first_record_at_or_after(&bytes, ts)
                .ok()
                .flatten()
                .unwrap_or(OffsetAndTimestamp {
                    offset: h.base_offset,
                    timestamp: h.max_timestamp,
                });
            return Ok(Some(found));
        }
        Ok(None)
    }

    /// The first record with the largest timestamp among the records from
    /// the log start to below `max_offset`, if any has a timestamp
    /// (ListOffsets' MAX_TIMESTAMP, KIP-734; the record's own offset, as
    /// Kafka answers since KAFKA-16310). Segments are read largest maximum
    /// first, and only their batch headers until the batch is found; a
    /// segment's kept maximum can only overstate (a truncation may have
    /// removed its largest batch), so the scan stops once the next segment's
    /// maximum is below what was found.
    pub fn max_timestamp_record(&self, max_offset: i64) -> Result<Option<OffsetAndTimestamp>> {
        let start = self.log_start_offset();
        let mut segs: Vec<&Segment> = self
            .segments
            .values()
            .filter(|s| s.max_timestamp >= 0 && s.base_offset < max_offset)
            .collect();
        segs.sort_by(|a, b| {
            b.max_timestamp
                .cmp(&a.max_timestamp)
                .then(a.base_offset.cmp(&b.base_offset))
        });
        // (timestamp, segment, position, header) of the best batch so far.
        let mut best: Option<(i64, &Segment, u64, BatchHeader)> = None;
        for seg in segs {
            if best.as_ref().is_some_and(|b| seg.max_timestamp < b.0) {
                break;
            }
            let mut pos = 0u64;
            while pos + batch::LOG_OVERHEAD as u64 <= seg.size {
                let h = seg.header_at(pos)?;
                if h.base_offset >= max_offset {
                    break;
                }
                let better = best.as_ref().is_none_or(|b| {
                    h.max_timestamp > b.0
                        || (h.max_timestamp == b.0 && h.base_offset < b.3.base_offset)
                });
                if h.last_offset() >= start && h.max_timestamp >= 0 && better {
                    best = Some((h.max_timestamp, seg, pos, h));
                }
                pos += h.total_bytes() as u64;
            }
        }
        let Some((ts, seg, pos, h)) = best else {
            return Ok(None);
        };
        let bytes = seg.read_at(pos, h.total_bytes())?;
        let found = batch::first_record_at_or_after(&bytes, ts)
            .ok()
            .flatten()
            .filter(|f| f.offset >= start)
            .unwrap_or(OffsetAndTimestamp {
                offset: h.base_offset.max(start),
                timestamp: ts,
            });
        Ok((found.offset < max_offset).then_some(found))
    }

    /// Calls `each` with the header of every batch from the one holding `offset` to
    /// the end, in order: how state derived from the log (producer state) is replayed.
    pub fn for_each_batch_from(
        &self,
        offset: i64,
        mut each: impl FnMut(&BatchHeader),
    ) -> Result<()> {
        let from = offset.max(self.log_start_offset());
        for (_, seg) in self
            .segments
            .range(..=from)
            .next_back()
            .into_iter()
            .chain(self.segments.range(from + 1..))
        {
            let Some((mut pos, _)) = seg.position_of(from)? else {
                continue;
            };
            while pos < seg.size {
                let h = seg.header_at(pos)?;
                each(&h);
                pos += h.total_bytes() as u64;
            }
        }
        Ok(())
    }

    /// Deletes whole segments past `retention.ms` or beyond `retention.bytes`, oldest
    /// first, never the active segment. Returns how many were deleted.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize> {
        let mut deleted = 0;
        let mut total = self.size_bytes() as i64;
        while self.segments.len() > 1 {
            let first = self.first();
            let expired_by_time = self.config.retention_ms >= 0
                && first.max_timestamp >= 0
                && now_ms - first.max_timestamp > self.config.retention_ms;
            let expired_by_size = self.config.retention_bytes >= 0
                && total - first.size as i64 >= self.config.retention_bytes;
            if !(expired_by_time || expired_by_size) {
                break;
            }
            let base = first.base_offset;
            let seg = self.segments.remove(&base).expect("first segment exists");
            total -= seg.size as i64;
            seg.delete_files(&self.dir)?;
            tracing::info!(log = %self.dir.display(), base_offset = base, by_time = expired_by_time, "deleted segment by retention");
            deleted += 1;
        }
        Ok(deleted)
    }

    /// What a compaction would work on now, if it is due (Kafka's
    /// `LogCleanerManager.grabFilthiestCompactedLog`, for one log): the closed,
    /// durable segments before the recovery point (so a crash never rescans a
    /// cleaned segment as the dense tail) and before the first one holding a
    /// record younger than `min.compaction.lag.ms`. It is due when the dirty share
    /// of those bytes reaches `min.cleanable.dirty.ratio`, when dirty data is older
    /// than `max.compaction.lag.ms`, or when a kept tombstone has come due.
    pub fn compaction_plan(&self, now_ms: i64, cfg: &CleanerConfig) -> Option<CompactionPlan> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut segments = Vec::new();
        let mut end = i64::MIN;
        let (mut dirty_bytes, mut total_bytes) = (0u64, 0u64);
        let mut first_dirty = None;
        for pair in bases.windows(2) {
            let next_base = pair[1];
            if next_base > self.recovery_point || next_base > self.flushed_offset {
                break;
            }
            let seg = &self.segments[&pair[0]];
            if cfg.min_lag_ms > 0 && seg.max_timestamp > now_ms.saturating_sub(cfg.min_lag_ms) {
                break;
            }
            if next_base > self.compacted_end {
                dirty_bytes += seg.size;
                first_dirty.get_or_insert(seg);
            }
            total_bytes += seg.size;
            segments.push((seg.base_offset, seg.path.clone(), seg.size));
            end = next_base;
        }
        let tombstones_due = self.tombstone_due_ms.is_some_and(|due| now_ms >= due);
        let ratio_due =
            dirty_bytes > 0 && dirty_bytes as f64 >= cfg.min_dirty_ratio * total_bytes as f64;
        let lag_due = cfg.max_lag_ms < i64::MAX
            && first_dirty.is_some_and(|seg| {
                seg.first_batch_timestamp()
                    .is_some_and(|ts| ts <= now_ms.saturating_sub(cfg.max_lag_ms))
            });
        if segments.is_empty() || !(ratio_due || lag_due || tombstones_due) {
            return None;
        }
        Some(CompactionPlan {
            dir: self.dir.clone(),
            segments,
            dirty_from: self.compacted_end,
            index_interval_bytes: self.config.index_interval_bytes,
            end,
            delete_retention_ms: cfg.delete_retention_ms,
        })
    }

    /// Offsets below this have been compacted: each key appears there at most once.
    pub fn cleaned_below(&self) -> i64 {
        self.compacted_end.max(self.log_start_offset())
    }

    /// Swaps in the segments a compaction rewrote. Each rename replaces a segment
    /// atomically; its stale index files are deleted first, so a crash in between
    /// leaves a segment that recovery rescans rather than one with a wrong index.
    pub fn install_compaction(&mut self, done: Compacted, now_ms: i64) -> Result<()> {
        let cleaned_index = |base: i64, ext: &str| {
            self.dir.join(format!(
                "{}.{CLEANED_SUFFIX}",
                segment::file_name(base, ext)
            ))
        };
        let mut renamed = Vec::new();
        for (base, cleaned) in &done.rewritten {
            if !self.segments.contains_key(base) {
                // Deleted by retention meanwhile.
                for p in [
                    cleaned.clone(),
                    cleaned_index(*base, "index"),
                    cleaned_index(*base, "timeindex"),
                ] {
                    std::fs::remove_file(&p)
                        .map_err(StorageError::io("remove compacted segment", &p))?;
                }
                continue;
            }
            for ext in ["index", "timeindex"] {
                let p = self.dir.join(segment::file_name(*base, ext));
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io("remove index", &p)(e)),
                }
            }
            sync_dir(&self.dir)?;
            let target = self.dir.join(segment::file_name(*base, "log"));
            std::fs::rename(cleaned, &target)
                .map_err(StorageError::io("install compacted segment", &target))?;
            renamed.push(*base);
        }
        // The segments are in place before their new indexes are: a crash in
        // between leaves a segment without indexes, which recovery rescans.
        sync_dir(&self.dir)?;
        for base in &renamed {
            for ext in ["index", "timeindex"] {
                let target = self.dir.join(segment::file_name(*base, ext));
                std::fs::rename(cleaned_index(*base, ext), &target)
                    .map_err(StorageError::io("install compacted index", &target))?;
            }
        }
        sync_dir(&self.dir)?;
        // The cleaner checked every batch and built the indexes without the lock;
        // opening with them reads only the tail batch.
        for base in renamed {
            let (seg, _) = Segment::open(
                &self.dir,
                base,
                true,
                self.config.index_interval_bytes,
                now_ms,
            )?;
            self.segments.insert(base, seg);
        }
        self.compacted_end = done.end;
        self.tombstone_due_ms = done.tombstone_due_ms;
        let due = done
            .tombstone_due_ms
            .map_or(String::new(), |d| format!(" {d}"));
        write_hint_file(
            &self.dir,
            CLEANER_CHECKPOINT_FILE,
            &format!("{}{due}", done.end),
        )
    }

    /// What to fsync to make everything appended so far durable; `None` if it is.
    pub fn flush_job(&mut self) -> Option<FlushJob> {
        if self.flushed_offset == self.log_end_offset && self.unflushed_rolled.is_empty() {
            return None;
        }
        let mut files = std::mem::take(&mut self.unflushed_rolled);
        files.push(self.active().file.clone());
        Some(FlushJob {
            files,
            up_to: self.log_end_offset,
            recovery_point: self.active().base_offset,
        })
    }

    /// Records that `job` ran successfully.
    pub fn complete_flush(&mut self, job: &FlushJob) -> Result<()> {
        self.flushed_offset = self.flushed_offset.max(job.up_to);
        if job.recovery_point > self.recovery_point {
            self.recovery_point = job.recovery_point;
            self.write_recovery_point()?;
        }
        Ok(())
    }

    /// Hands back a job's files after a failed fsync so a later job retries them.
    pub fn fail_flush(&mut self, job: &FlushJob) {
        let active = self.active().file.clone();
        self.unflushed_rolled.extend(
            job.files
                .iter()
                .filter(|f| !Arc::ptr_eq(f, &active))
                .cloned(),
        );
    }

    pub(crate) fn write_recovery_point(&self) -> Result<()> {
        write_hint_file(
            &self.dir,
            RECOVERY_POINT_FILE,
            &self.recovery_point.to_string(),
        )
    }

    /// Flushes everything, writes the indexes and marks the log cleanly closed.
    pub fn close(mut self) -> Result<()> {
        if let Some(job) = self.flush_job() {
            job.run()
                .map_err(StorageError::io("sync segment", &self.dir))?;
            self.complete_flush(&job)?;
        }
        self.active().write_indexes(&self.dir)?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(StorageError::io("write clean-shutdown marker", &marker))?;
        sync_dir(&self.dir)
    }

    /// Removes the log and its directory.
    pub fn delete(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir)
            .map_err(StorageError::io("delete log directory", &self.dir))
    }

    /// File name of the segment holding `offset`, for messages and tests.
    pub fn segment_file_of(&self, offset: i64) -> Option<PathBuf> {
        self.segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| self.dir.join(segment::file_name(*b, "log")))
    }
}
