//! The commit log: every mutation is appended here before it reaches the
//! memtable, so a crash loses nothing acknowledged.
//!
//! Segments are `commitlog-<seq>.log`, each a run of records:
//! `length (4) | crc32c of payload (4) | payload`, the payload a mutation
//! (`count (4)`, then per cell `key length (4) | key | cell length (4) | cell`).
//! A segment's file is zero-filled ahead of its records ([`PREALLOCATE`]);
//! replay stops at the first zero header (the end) or the first short or
//! corrupt record, and cuts the file there if anything but zeros follows (a
//! torn tail), as Cassandra's commit log replayer stops at a segment's first
//! bad sync section.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cell::Cell;

/// Most bytes of one record (a mutation); Cassandra's default
/// `max_mutation_size` is half a 32 MiB segment.
pub const RECORD_MAX: usize = 16 << 20;

/// One mutation: the cells it writes, in any order.
pub type Mutation = Vec<(Vec<u8>, Cell)>;

pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("commitlog-{seq:016}.log"))
}

/// The sequence numbers of the segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_prefix("commitlog-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Encodes a mutation as one framed record.
pub fn encode_record(m: &Mutation) -> Vec<u8> {
    let size: usize = m.iter().map(|(k, c)| 8 + k.len() + c.encoded_len()).sum();
    let mut out = Vec::with_capacity(8 + 4 + size);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&(m.len() as u32).to_be_bytes());
    for (k, c) in m {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(c.encoded_len() as u32).to_be_bytes());
        c.encode_into(&mut out);
    }
    let len = (out.len() - 8) as u32;
    let crc = crc32c::crc32c(&out[8..]);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out[4..8].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes one record made by [`encode_record`], checking its length and
/// CRC (None if it is short, corrupt or has bytes left over).
pub fn decode_record(rec: &[u8]) -> Option<Mutation> {
    let len = u32::from_be_bytes(rec.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(rec.get(4..8)?.try_into().ok()?);
    let payload = rec.get(8..)?;
    if payload.len() != len || crc32c::crc32c(payload) != crc {
        return None;
    }
    decode_payload(payload)
}

fn decode_payload(mut p: &[u8]) -> Option<Mutation> {
    let take = |p: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        if p.len() < n {
            return None;
        }
        let (a, b) = p.split_at(n);
        *p = b;
        Some(a.to_vec())
    };
    let u32_of = |p: &mut &[u8]| -> Option<usize> {
        let b = take(p, 4)?;
        Some(u32::from_be_bytes(b.try_into().ok()?) as usize)
    };
    let n = u32_of(&mut p)?;
    let mut m = Vec::new();
    for _ in 0..n {
        let kl = u32_of(&mut p)?;
        let k = take(&mut p, kl)?;
        let cl = u32_of(&mut p)?;
        let c = Cell::decode(&take(&mut p, cl)?)?;
        m.push((k, c));
    }
    p.is_empty().then_some(m)
}

/// Reads one segment's whole records, cutting the file after the last one
/// if what follows is torn or corrupt. Returns the mutations and whether it
/// cut anything.
pub fn replay(path: &Path) -> io::Result<(Vec<Mutation>, bool)> {
    let bytes = std::fs::read(path)?;
    let mut at = 0usize;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > RECORD_MAX || at + 8 + len > bytes.len() {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        match decode_payload(payload) {
            Some(m) => out.push(m),
            None => break,
        }
        at += 8 + len;
    }
    // What follows the last whole record: nothing, or the zeros a segment
    // is extended with ahead of its records (see [`PREALLOCATE`]), is its
    // clean end; anything else is a torn or corrupt tail, cut off.
    let cut = bytes[at..].iter().any(|b| *b != 0);
    if cut {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(at as u64)?;
        f.sync_all()?;
    }
    Ok((out, cut))
}

/// How far ahead of its records a segment's file is zero-filled.
///
/// An `fdatasync` after an append that grew the file must also write the
/// inode (its size), a second device write on every group commit; writing
/// into blocks that already exist needs only the data's. So a segment is
/// extended with zeros a chunk at a time and its records overwrite them, as
/// etcd's WAL preallocates its segments and Cassandra's commit log its
/// segments' space. Measured in docs/perf.md; the zeros cost one extra
/// write of each chunk, once. Replay reads a zero header as the end of the
/// records, not as a torn tail.
pub const PREALLOCATE: u64 = 1 << 20;

/// The segment being appended to.
pub struct Segment {
    pub seq: u64,
    file: File,
    /// Where the next record goes: the end of the records written.
    end: u64,
    /// The file's length: zeros from `end` to here.
    allocated: u64,
}

impl Segment {
    /// Creates a new segment, zero-filled for its first records, and makes
    /// its directory entry durable.
    pub fn create(dir: &Path, seq: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(segment_path(dir, seq))?;
        let mut s = Segment {
            seq,
            file,
            end: 0,
            allocated: 0,
        };
        s.zero_to(PREALLOCATE)?;
        sync_dir(dir)?;
        Ok(s)
    }

    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.end + bytes.len() as u64;
        if end > self.allocated {
            self.allocated = self.allocated.max(end);
            self.zero_to(end + PREALLOCATE)?;
        }
        self.file.write_all_at(bytes, self.end)?;
        self.end = end;
        Ok(())
    }

    /// Extends the file with zeros up to `len`.
    fn zero_to(&mut self, len: u64) -> io::Result<()> {
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        while self.allocated < len {
            let n = (len - self.allocated).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], self.allocated)?;
            self.allocated += n as u64;
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
