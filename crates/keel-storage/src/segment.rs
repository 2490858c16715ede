//! One segment: a `.log` file of whole batches plus its two sparse indexes.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_BYTES, LOG_OVERHEAD};
use crate::index::{OffsetIndex, TimeIndex};
use crate::{Result, StorageError};

/// Segment file names are the base offset padded to 20 digits, as in Kafka.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub file: Arc<File>,
    pub path: PathBuf,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// One past the last offset in this segment (`base_offset` when empty).
    pub next_offset: i64,
    /// Largest batch max-timestamp, or -1 when empty.
    pub max_timestamp: i64,
    /// When the segment was created, for `segment.ms`.
    pub created_ms: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    /// Leader epoch of the last batch, for the recovery check.
    last_epoch: i32,
}

/// What a recovery scan found.
pub(crate) struct Scan {
    pub truncated_bytes: u64,
    pub batches: u64,
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StorageError::io("create segment", &path))?;
        Ok(Segment::empty(base_offset, file, path, now_ms))
    }

    fn empty(base_offset: i64, file: File, path: PathBuf, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file: Arc::new(file),
            path,
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            created_ms: now_ms,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            last_epoch: -1,
        }
    }

    /// Opens an existing segment. With `trust_indexes`, valid index files are used as
    /// they are and only the last batch is read; otherwise (or when they are missing
    /// or invalid) every batch is read and CRC-checked, and anything after the first
    /// bad batch is truncated away.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        trust_indexes: bool,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<(Segment, Scan)> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(StorageError::io("open segment", &path))?;
        let len = file
            .metadata()
            .map_err(StorageError::io("stat segment", &path))?
            .len();
        let mut seg = Segment::empty(base_offset, file, path, now_ms);
        if trust_indexes && seg.load_indexes(dir, len)? {
            return Ok((
                seg,
                Scan {
                    truncated_bytes: 0,
                    batches: 0,
                },
            ));
        }
        // A segment before the recovery point may have been compacted, which leaves
        // gaps between batches; later segments never are, so their offsets are dense.
        let scan = seg.recover(len, index_interval_bytes, !trust_indexes)?;
        Ok((seg, scan))
    }

    /// Reads and CRC-checks a compacted segment the cleaner just wrote to `path`
    /// (its `.cleaned` file), building its indexes. Anything wrong is an error,
    /// never a truncation: the original segment still stands.
    pub fn verify_cleaned(
        path: &Path,
        base_offset: i64,
        index_interval_bytes: u64,
    ) -> Result<Segment> {
        let file = File::open(path).map_err(StorageError::io("open compacted segment", path))?;
        let len = file
            .metadata()
            .map_err(StorageError::io("stat compacted segment", path))?
            .len();
        let mut seg = Segment::empty(base_offset, file, path.to_path_buf(), 0);
        let file = seg.file.clone();
        let mut r = BufReader::with_capacity(1 << 20, &*file);
        let mut buf = Vec::new();
        let damaged = |why: String| StorageError::Damaged {
            path: path.to_path_buf(),
            offset: -1,
            why,
        };
        let mut pos = 0u64;
        while pos < len {
            buf.resize(HEADER_BYTES, 0);
            r.read_exact(&mut buf)
                .map_err(StorageError::io("read compacted segment", path))?;
            let h = BatchHeader::parse(&buf).map_err(|e| damaged(e.to_string()))?;
            let total = h.total_bytes() as u64;
            if total > len - pos || h.base_offset < seg.next_offset {
                return Err(damaged(format!(
                    "batch at {pos} does not follow its predecessor"
                )));
            }
            buf.resize(total as usize, 0);
            r.read_exact(&mut buf[HEADER_BYTES..])
                .map_err(StorageError::io("read compacted segment", path))?;
            batch::check(&buf).map_err(|e| damaged(e.to_string()))?;
            seg.index_batch(&h, pos, total, index_interval_bytes);
            pos += total;
        }
        Ok(seg)
    }

    /// Loads index files and the tail batch; false if anything does not add up.
    fn load_indexes(&mut self, dir: &Path, len: u64) -> Result<bool> {
        let (Ok(oi), Ok(ti)) = (
            std::fs::read(dir.join(file_name(self.base_offset, "index"))),
            std::fs::read(dir.join(file_name(self.base_offset, "timeindex"))),
        ) else {
            return Ok(false);
        };
        let (Some(oi), Some(ti)) = (OffsetIndex::decode(&oi, len.max(1)), TimeIndex::decode(&ti))
        else {
            return Ok(false);
        };
        // Walk from the last indexed position to the end to learn next_offset and max timestamp.
        let mut pos = u64::from(oi.lookup(u32::MAX));
        let mut next = self.base_offset;
        let mut max_ts = ti.last_timestamp();
        while pos < len {
            let Ok(h) = self.header_at(pos) else {
                return Ok(false);
            };
            if pos + h.total_bytes() as u64 > len || h.base_offset < next {
                return Ok(false);
            }
            next = h.last_offset() + 1;
            max_ts = max_ts.max(h.max_timestamp);
            pos += h.total_bytes() as u64;
        }
        if pos != len {
            return Ok(false);
        }
        self.size = len;
        self.next_offset = next;
        self.max_timestamp = max_ts;
        self.offset_index = oi;
        self.time_index = ti;
        Ok(true)
    }

    /// Reads every batch, checking framing, CRC and offset order; truncates at the first
    /// failure. This is the only way bytes enter a segment's in-memory view after a crash.
    fn recover(&mut self, len: u64, index_interval_bytes: u64, dense: bool) -> Result<Scan> {
        let file = self.file.clone();
        let mut r = BufReader::with_capacity(1 << 20, &*file);
        let mut pos = 0u64;
        let mut batches = 0u64;
        let mut buf = Vec::new();
        let reason = loop {
            if pos == len {
                break None;
            }
            if len - pos < HEADER_BYTES as u64 {
                break Some(format!("{} trailing bytes", len - pos));
            }
            buf.resize(HEADER_BYTES, 0);
            if let Err(e) = r.read_exact(&mut buf) {
                break Some(format!("read: {e}"));
            }
            let h = match BatchHeader::parse(&buf) {
                Ok(h) => h,
                Err(e) => break Some(e.to_string()),
            };
            let total = h.total_bytes() as u64;
            if total > len - pos {
                break Some(format!(
                    "batch at {pos} claims {total} bytes, {} remain",
                    len - pos
                ));
            }
            buf.resize(total as usize, 0);
            if let Err(e) = r.read_exact(&mut buf[HEADER_BYTES..]) {
                break Some(format!("read: {e}"));
            }
            if let Err(e) = batch::check(&buf) {
                break Some(e.to_string());
            }
            // baseOffset is outside the CRC, so check it against its neighbours: offsets
            // are dense in a segment compaction has not touched, and increase in any.
            // The leader epoch is outside the CRC too; epochs never go down along a log.
            if h.partition_leader_epoch < self.last_epoch {
                break Some(format!(
                    "batch at {pos} has leader epoch {} after {}",
                    h.partition_leader_epoch, self.last_epoch
                ));
            }
            let offset_ok = if dense {
                h.base_offset == self.next_offset
            } else {
                h.base_offset >= self.next_offset
            };
            if !offset_ok
                || h.last_offset_delta < 0
                || h.last_offset() - self.base_offset > i64::from(u32::MAX)
            {
                break Some(format!(
                    "batch at {pos} has offsets {}..={} after {}",
                    h.base_offset,
                    h.last_offset(),
                    self.next_offset
                ));
            }
            self.index_batch(&h, pos, total, index_interval_bytes);
            pos += total;
            batches += 1;
        };
        drop(r);
        let truncated_bytes = len - pos;
        if let Some(why) = reason {
            tracing::warn!(segment = %self.path.display(), position = pos, truncated_bytes, "truncating torn or corrupt tail: {why}");
            self.file
                .set_len(pos)
                .map_err(StorageError::io("truncate segment", &self.path))?;
            self.file
                .sync_all()
                .map_err(StorageError::io("sync segment", &self.path))?;
        }
        self.size = pos;
        Ok(Scan {
            truncated_bytes,
            batches,
        })
    }

    fn index_batch(
        &mut self,
        h: &BatchHeader,
        position: u64,
        total: u64,
        index_interval_bytes: u64,
    ) {
        let rel = (h.base_offset - self.base_offset) as u32;
        if self.size == 0 && position == 0 || self.bytes_since_index >= index_interval_bytes {
            self.offset_index.push(rel, position as u32);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += total;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.time_index.push(h.max_timestamp, rel);
        }
        self.next_offset = h.last_offset() + 1;
        self.last_epoch = h.partition_leader_epoch;
        self.size = position + total;
    }

    /// Appends one batch whose offsets are already assigned.
    pub fn append(
        &mut self,
        batch: &[u8],
        h: &BatchHeader,
        index_interval_bytes: u64,
    ) -> Result<()> {
        let pos = self.size;
        self.file
            .write_all_at(batch, pos)
            .map_err(StorageError::io("append to segment", &self.path))?;
        self.index_batch(h, pos, batch.len() as u64, index_interval_bytes);
        Ok(())
    }

    pub fn header_at(&self, pos: u64) -> Result<BatchHeader> {
        let mut b = [0u8; HEADER_BYTES];
        self.file
            .read_exact_at(&mut b, pos)
            .map_err(StorageError::io("read segment", &self.path))?;
        BatchHeader::parse(&b).map_err(|e| StorageError::Damaged {
            path: self.path.clone(),
            offset: -1,
            why: e.to_string(),
        })
    }

    /// The max timestamp of the first batch (Kafka's `getFirstBatchTimestamp`, for
    /// `max.compaction.lag.ms`); `None` when empty or unreadable.
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        (self.size > 0)
            .then(|| self.header_at(0).ok().map(|h| h.max_timestamp))
            .flatten()
    }

    /// The position of the first batch whose last offset is `>= offset`, scanning from
    /// the index entry at or before it. `None` if no such batch is in this segment.
    pub fn position_of(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        self.scan_from(u64::from(self.offset_index.lookup(rel)), |h| {
            h.last_offset() >= offset
        })
    }

    /// The first batch (from the time index's hint) whose max timestamp is `>= ts`.
    pub fn position_of_timestamp(&self, ts: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = self.time_index.lookup(ts);
        self.scan_from(u64::from(self.offset_index.lookup(rel)), |h| {
            h.max_timestamp >= ts
        })
    }

    fn scan_from(
        &self,
        mut pos: u64,
        found: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        while pos + LOG_OVERHEAD as u64 <= self.size {
            let h = self.header_at(pos)?;
            if found(&h) {
                return Ok(Some((pos, h)));
            }
            pos += h.total_bytes() as u64;
        }
        Ok(None)
    }

    pub fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(StorageError::io("read segment", &self.path))?;
        Ok(buf)
    }

    /// Writes both index files (when the segment is rolled or the log closes).
    pub fn write_indexes(&self, dir: &Path) -> Result<()> {
        self.write_indexes_as(dir, "")
    }

    /// Writes the index files with `suffix` after their names (`.cleaned` for a
    /// compaction's output).
    pub fn write_indexes_as(&self, dir: &Path, suffix: &str) -> Result<()> {
        for (ext, bytes) in [
            ("index", self.offset_index.encode()),
            ("timeindex", self.time_index.encode()),
        ] {
            let p = dir.join(format!("{}{suffix}", file_name(self.base_offset, ext)));
            std::fs::write(&p, bytes).map_err(StorageError::io("write index", &p))?;
        }
        Ok(())
    }

    /// Removes the index files (they are rebuilt by reading the segment).
    pub fn delete_files_except_log(&self, dir: &Path) -> Result<()> {
        for ext in ["index", "timeindex"] {
            let p = dir.join(file_name(self.base_offset, ext));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("delete index file", &p)(e)),
            }
        }
        Ok(())
    }

    pub fn delete_files(&self, dir: &Path) -> Result<()> {
        for ext in ["log", "index", "timeindex"] {
            let p = dir.join(file_name(self.base_offset, ext));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io("delete segment file", &p)(e)),
            }
        }
        Ok(())
    }
}
