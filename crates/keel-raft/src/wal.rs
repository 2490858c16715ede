//! The Raft log on disk: one append-only write-ahead file of CRC-framed records
//! (entries, hard states, a snapshot marker where the log starts), replayed at
//! start-up into memory, where raft-rs reads it through [`raft::Storage`].
//!
//! Like etcd's WAL, a later entry record with an index at or below the last one
//! replaces the tail (a new leader overwrote it), so replaying the records in
//! order rebuilds exactly the log that was acknowledged. Recovery stops at the
//! first torn or corrupt record and truncates the file there: those bytes were
//! never fsynced, so nothing they held was ever acknowledged.
//!
//! Record: `len u32 LE | crc32c u32 LE (of kind and body) | kind u8 | body`.
//!
//! The file is preallocated in 64 MiB steps (etcd's WAL segment size), as etcd
//! preallocates its segments: an fdatasync after an append that stays inside
//! the file's size need not write the inode too, which made a one-entry round
//! about a fifth faster on this project's disk (docs/perf.md). Replay stops at
//! the zeros after the last record; at start-up everything after the last whole
//! record is dropped and preallocated again, so no stale byte can follow a
//! record written later.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::Error;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

/// A record larger than this is corruption, not data (entries are bounded by the
/// request size the fronts accept, far below).
pub const RECORD_BYTES_MAX: u32 = 64 << 20;
const HEADER_BYTES: usize = 9;
/// The file grows by this much at a time (etcd's `SegmentSizeBytes`).
pub const PREALLOCATE_BYTES: u64 = 64 << 20;

/// What the in-memory log holds; shared between the node loop (which writes)
/// and raft-rs (which reads through `Storage`).
#[derive(Default)]
struct Core {
    hard_state: HardState,
    conf_state: ConfState,
    /// Where the log starts: entries at or below this index were compacted.
    snapshot: SnapshotMetadata,
    entries: Vec<Entry>,
    /// A snapshot of the state machine to hand to raft-rs when a follower needs one.
    pending_snapshot: Option<Snapshot>,
}

impl Core {
    fn first_index(&self) -> u64 {
        self.entries
            .first()
            .map_or(self.snapshot.index + 1, |e| e.index)
    }
    fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    /// Appends `e`, dropping any tail it overwrites. Err if it would leave a gap.
    fn push(&mut self, e: Entry) -> Result<(), String> {
        if e.index <= self.snapshot.index {
            return Ok(()); // already covered by the snapshot
        }
        if e.index > self.last_index() + 1 {
            return Err(format!(
                "entry {} after last index {}",
                e.index,
                self.last_index()
            ));
        }
        let keep = (e.index - self.first_index()) as usize;
        self.entries.truncate(keep);
        self.entries.push(e);
        Ok(())
    }
}

/// The WAL file plus the in-memory log. Cloning shares both.
#[derive(Clone)]
pub struct Wal {
    core: Arc<RwLock<Core>>,
    file: Arc<std::sync::Mutex<WalFile>>,
    /// Produces the state-machine snapshot raft-rs asks for (set by the node).
    snapshot_source: Arc<RwLock<Option<SnapshotSource>>>,
}

type SnapshotSource = Box<dyn Fn() -> Option<Snapshot> + Send + Sync>;

struct WalFile {
    path: PathBuf,
    file: File,
    dirty: bool,
    /// Where the next record goes: the end of the last whole record.
    end: u64,
    /// The file's size (preallocated past `end`); `None` where the filesystem
    /// cannot preallocate, and the file simply grows with each write.
    allocated: Option<u64>,
    /// The in-memory hard state has a commit index not yet written (it goes
    /// with the next records; a lower commit after a crash is safe).
    commit_pending: bool,
}

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub records: u64,
    pub truncated_bytes: u64,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir`, replaying it and truncating a torn tail.
    pub fn open(dir: &Path) -> Result<(Wal, Recovered), Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create raft dir", e))?;
        let path = dir.join("wal");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open raft wal", e))?;
        let (core, good_len, records) = replay(&mut file)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat raft wal", e))?
            .len();
        let mut torn = 0;
        if good_len < len {
            // Zeros there are preallocation; anything else is a torn or corrupt tail.
            torn = nonzero_span(&file, good_len, len)?;
            if torn > 0 {
                tracing::warn!("raft wal: truncating {torn} bytes of torn or corrupt tail");
            }
            file.set_len(good_len)
                .map_err(|e| Error::io("truncate raft wal", e))?;
        }
        let allocated = preallocate(&file, good_len)?;
        file.sync_all().map_err(|e| Error::io("sync raft wal", e))?;
        sync_dir(dir)?;
        let wal = Wal {
            core: Arc::new(RwLock::new(core)),
            file: Arc::new(std::sync::Mutex::new(WalFile {
                path,
                file,
                dirty: false,
                end: good_len,
                allocated,
                commit_pending: false,
            })),
            snapshot_source: Arc::new(RwLock::new(None)),
        };
        Ok((
            wal,
            Recovered {
                records,
                truncated_bytes: torn,
            },
        ))
    }

    /// Whether this log has never held anything (a brand-new node).
    pub fn is_empty(&self) -> bool {
        let c = self.core.read().expect("wal lock");
        c.entries.is_empty() && c.snapshot.index == 0 && c.hard_state == HardState::default()
    }

    pub fn hard_state(&self) -> HardState {
        self.core.read().expect("wal lock").hard_state.clone()
    }
    pub fn conf_state(&self) -> ConfState {
        self.core.read().expect("wal lock").conf_state.clone()
    }
    pub fn snapshot_index(&self) -> u64 {
        self.core.read().expect("wal lock").snapshot.index
    }
    pub fn last_index_now(&self) -> u64 {
        self.core.read().expect("wal lock").last_index()
    }
    pub fn first_index_now(&self) -> u64 {
        self.core.read().expect("wal lock").first_index()
    }
    /// Bytes of records in the file (it is preallocated beyond them).
    pub fn written_bytes(&self) -> u64 {
        self.file.lock().expect("wal file lock").end
    }
    /// Entries in memory (what compaction bounds).
    pub fn len(&self) -> usize {
        self.core.read().expect("wal lock").entries.len()
    }

    pub(crate) fn set_snapshot_source(&self, f: SnapshotSource) {
        *self.snapshot_source.write().expect("wal lock") = Some(f);
    }

    /// Writes entries (not yet synced).
    pub fn append(&self, entries: &[Entry]) -> Result<(), Error> {
        self.save(entries, None)
    }

    /// Writes a hard state (not yet synced).
    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), Error> {
        self.save(&[], Some(hs))
    }

    /// Writes a round's entries and hard state in one write (not yet synced),
    /// with a commit index raised since the last write if `hs` is `None`.
    pub fn save(&self, entries: &[Entry], hs: Option<&HardState>) -> Result<(), Error> {
        let mut f = self.file.lock().expect("wal file lock");
        let hs = match hs {
            Some(hs) => Some(hs.clone()),
            None if f.commit_pending => Some(self.hard_state()),
            None => None,
        };
        if entries.is_empty() && hs.is_none() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in entries {
            encode_record(
                &mut buf,
                KIND_ENTRY,
                &e.write_to_bytes().map_err(Error::codec)?,
            );
        }
        if let Some(hs) = &hs {
            encode_record(
                &mut buf,
                KIND_HARD_STATE,
                &hs.write_to_bytes().map_err(Error::codec)?,
            );
        }
        f.write(&buf)?;
        let mut c = self.core.write().expect("wal lock");
        for e in entries {
            c.push(e.clone()).map_err(Error::Corrupt)?;
        }
        if let Some(hs) = hs {
            c.hard_state = hs;
            f.commit_pending = false;
        }
        Ok(())
    }

    /// Raises the commit index in the hard state (after a LightReady), to be
    /// written with the next records and never synced for its own sake: a
    /// lower commit index after a crash is safe, raft learns it again (and the
    /// node raises it to what the state machine applied before it starts).
    pub fn set_commit(&self, commit: u64) {
        let mut f = self.file.lock().expect("wal file lock");
        let mut c = self.core.write().expect("wal lock");
        if commit > c.hard_state.commit {
            c.hard_state.commit = commit;
            f.commit_pending = true;
        }
    }

    pub fn set_conf_state(&self, cs: ConfState) {
        self.core.write().expect("wal lock").conf_state = cs;
    }

    /// fsyncs everything written so far (one fsync for however many records).
    pub fn sync(&self) -> Result<(), Error> {
        let mut f = self.file.lock().expect("wal file lock");
        if f.dirty {
            f.file
                .sync_data()
                .map_err(|e| Error::io("fsync raft wal", e))?;
            f.dirty = false;
        }
        Ok(())
    }

    /// Makes the log start after `meta.index` (a snapshot was installed, or the
    /// state machine durably holds everything up to there). Rewrites the file:
    /// marker, hard state, the entries after the marker; fsync; rename; fsync dir.
    pub fn compact_to(&self, meta: SnapshotMetadata) -> Result<(), Error> {
        let mut f = self.file.lock().expect("wal file lock");
        let mut c = self.core.write().expect("wal lock");
        if meta.index <= c.snapshot.index {
            return Ok(());
        }
        // What the log lets go of (a hundred thousand entries, and the old
        // file whose close frees its blocks) is freed on another thread: on
        // this project's disk that took 0.1 s and 0.2 s of the Raft thread.
        let first = c.first_index();
        let matches = meta.index <= c.last_index()
            && meta.index >= first
            && c.entries[(meta.index - first) as usize].term == meta.term;
        let released = if matches {
            let kept = c.entries.split_off((meta.index + 1 - first) as usize);
            std::mem::replace(&mut c.entries, kept)
        } else {
            std::mem::take(&mut c.entries)
        };
        if c.hard_state.commit < meta.index {
            c.hard_state.commit = meta.index;
        }
        if c.hard_state.term < meta.term {
            c.hard_state.term = meta.term;
        }
        c.conf_state = meta.get_conf_state().clone();
        c.snapshot = meta;
        let mut buf = Vec::new();
        encode_record(
            &mut buf,
            KIND_SNAPSHOT,
            &c.snapshot.write_to_bytes().map_err(Error::codec)?,
        );
        encode_record(
            &mut buf,
            KIND_HARD_STATE,
            &c.hard_state.write_to_bytes().map_err(Error::codec)?,
        );
        for e in &c.entries {
            encode_record(
                &mut buf,
                KIND_ENTRY,
                &e.write_to_bytes().map_err(Error::codec)?,
            );
        }
        let tmp = f.path.with_extension("tmp");
        let mut nf = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io("create raft wal", e))?;
        nf.write_all(&buf)
            .map_err(|e| Error::io("write raft wal", e))?;
        let allocated = preallocate(&nf, buf.len() as u64)?;
        nf.sync_all().map_err(|e| Error::io("fsync raft wal", e))?;
        std::fs::rename(&tmp, &f.path).map_err(|e| Error::io("rename raft wal", e))?;
        sync_dir(f.path.parent().expect("wal has a dir"))?;
        let old = std::mem::replace(&mut f.file, nf);
        let _ = std::thread::Builder::new()
            .name("wal-release".into())
            .spawn(move || drop((old, released)));
        f.end = buf.len() as u64;
        f.allocated = allocated;
        f.dirty = false;
        f.commit_pending = false;
        Ok(())
    }
}

impl WalFile {
    fn write(&mut self, buf: &[u8]) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        let end = self.end + buf.len() as u64;
        if self.allocated.is_some_and(|a| end > a) {
            self.allocated = preallocate(&self.file, end)?;
        }
        self.file
            .write_all_at(buf, self.end)
            .map_err(|e| Error::io("write raft wal", e))?;
        self.end = end;
        self.dirty = true;
        Ok(())
    }
}

/// Makes the file's size the next multiple of `PREALLOCATE_BYTES` above `end`,
/// reading as zeros past what was written. Returns the new size, or `None` if
/// the filesystem cannot preallocate (then writes just extend it).
fn preallocate(file: &File, end: u64) -> Result<Option<u64>, Error> {
    use std::os::fd::AsRawFd;
    let size = (end / PREALLOCATE_BYTES + 1) * PREALLOCATE_BYTES;
    let len = libc::off_t::try_from(size).map_err(|_| Error::Corrupt("wal too large".into()))?;
    // SAFETY: fallocate only reads its integer arguments; the descriptor is
    // owned by `file` and open for writing for the whole call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
    if rc == 0 {
        return Ok(Some(size));
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(None),
        _ => Err(Error::io("preallocate raft wal", err)),
    }
}

/// How many bytes of `[from, to)` lie before the last non-zero byte there (0 if all zero).
fn nonzero_span(file: &File, from: u64, to: u64) -> Result<u64, Error> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut last = None;
    let mut pos = from;
    while pos < to {
        let n = usize::try_from(to - pos).map_or(buf.len(), |left| left.min(buf.len()));
        file.read_exact_at(&mut buf[..n], pos)
            .map_err(|e| Error::io("read raft wal", e))?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b != 0) {
            last = Some(pos + i as u64);
        }
        pos += n as u64;
    }
    Ok(last.map_or(0, |l| l + 1 - from))
}

/// Where a log starts: everything up to `index` (of `term`) is in the state machine.
pub fn snapshot_meta(index: u64, term: u64, cs: ConfState) -> SnapshotMetadata {
    let mut m = SnapshotMetadata {
        index,
        term,
        ..SnapshotMetadata::default()
    };
    m.set_conf_state(cs);
    m
}

fn encode_record(buf: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let len = u32::try_from(body.len() + 1).expect("record below 4 GiB");
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, body);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
}

/// Replays records; returns the log, the length of the good prefix and the record count.
fn replay(file: &mut File) -> Result<(Core, u64, u64), Error> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("seek raft wal", e))?;
    let mut r = BufReader::with_capacity(1 << 20, &mut *file);
    let mut core = Core::default();
    let mut pos = 0u64;
    let mut records = 0u64;
    loop {
        let mut header = [0u8; HEADER_BYTES];
        match read_full(&mut r, &mut header) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(Error::io("read raft wal", e)),
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let kind = header[8];
        if len == 0 || len > RECORD_BYTES_MAX {
            break;
        }
        let mut body = vec![0u8; len as usize - 1];
        match read_full(&mut r, &mut body) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(Error::io("read raft wal", e)),
        }
        if crc32c::crc32c_append(crc32c::crc32c(&[kind]), &body) != crc {
            break;
        }
        let ok = match kind {
            KIND_ENTRY => match Entry::parse_from_bytes(&body) {
                Ok(e) => core.push(e).is_ok(),
                Err(_) => false,
            },
            KIND_HARD_STATE => match HardState::parse_from_bytes(&body) {
                Ok(hs) => {
                    core.hard_state = hs;
                    true
                }
                Err(_) => false,
            },
            KIND_SNAPSHOT => match SnapshotMetadata::parse_from_bytes(&body) {
                Ok(m) => {
                    core.entries.clear();
                    core.conf_state = m.get_conf_state().clone();
                    core.snapshot = m;
                    true
                }
                Err(_) => false,
            },
            _ => false,
        };
        if !ok {
            break;
        }
        pos += HEADER_BYTES as u64 + u64::from(len) - 1;
        records += 1;
    }
    // The conf state of the log is the snapshot's plus the conf changes after it;
    // the node re-applies those, so start from the snapshot's.
    Ok((core, pos, records))
}

/// Reads exactly `buf.len()` bytes; Ok(false) on a clean or torn end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => return Ok(false),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync raft dir", e))
}

impl Storage for Wal {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let c = self.core.read().expect("wal lock");
        Ok(RaftState::new(c.hard_state.clone(), c.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let c = self.core.read().expect("wal lock");
        if low < c.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > c.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let off = c.first_index();
        let mut out = Vec::new();
        let mut size = 0u64;
        let max = max_size.into().unwrap_or(u64::MAX);
        for e in &c.entries[(low - off) as usize..(high - off) as usize] {
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let c = self.core.read().expect("wal lock");
        if idx == c.snapshot.index {
            return Ok(c.snapshot.term);
        }
        if idx < c.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > c.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(c.entries[(idx - c.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().expect("wal lock").first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.read().expect("wal lock").last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if let Some(s) = self.core.write().expect("wal lock").pending_snapshot.take() {
            if s.get_metadata().index >= request_index {
                return Ok(s);
            }
        }
        let source = self.snapshot_source.read().expect("wal lock");
        match source.as_ref().and_then(|f| f()) {
            Some(s) if s.get_metadata().index >= request_index => Ok(s),
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}
