//! SSTables: immutable sorted files of cells, written whole by a flush or a
//! compaction.
//!
//! ```text
//! blocks   block*: length (4) | crc32c (4) | (key length (4) | key | cell length (4) | cell)*
//! index    per block: first key length (4) | first key | offset (8) | length (4)
//! bloom    hashes (4) | bits (8) | bit words
//! footer   index offset (8) | index length (8) | bloom offset (8) | bloom length (8)
//!          | cells (8) | crc32c of index and bloom (4) | magic (4)
//! ```
//!
//! The index (Cassandra's partition index, sampled per block) and the bloom
//! filter over partition keys are held in memory; blocks are read with
//! `pread` and their CRC checked on every read, so a flipped bit is an error,
//! never a value. A file is written as `.tmp`, fsynced, renamed and the
//! directory fsynced: an SSTable exists whole or not at all.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cell::{partition_prefix_len, Cell};

const MAGIC: u32 = 0x4b45_4c54; // "KELT"
const FOOTER: usize = 8 * 5 + 4 + 4;
/// Target size of one block.
pub const BLOCK_BYTES: usize = 16 << 10;
/// Bits of bloom filter per partition (about 1% false positives with 7 hashes,
/// Cassandra's default `bloom_filter_fp_chance` of 0.01).
const BLOOM_BITS_PER_KEY: u64 = 10;
const BLOOM_HASHES: u32 = 7;

pub fn data_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("sst-{generation:016}.data"))
}

/// The generations of the SSTables in `dir`, oldest first; leftover `.tmp`
/// files (a flush or compaction cut short) are removed.
pub fn generations(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("sst-") && name.ends_with(".tmp") {
            std::fs::remove_file(e.path())?;
            continue;
        }
        if let Some(g) = name
            .strip_prefix("sst-")
            .and_then(|s| s.strip_suffix(".data"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(g);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A bloom filter over partition prefixes.
pub struct Bloom {
    hashes: u32,
    bits: Vec<u64>,
}

impl Bloom {
    fn with_keys(n: u64) -> Bloom {
        let nbits = (n.max(1) * BLOOM_BITS_PER_KEY).next_power_of_two().max(64);
        Bloom {
            hashes: BLOOM_HASHES,
            bits: vec![0; (nbits / 64) as usize],
        }
    }

    fn positions(&self, key: &[u8]) -> impl Iterator<Item = u64> {
        // Double hashing (Kirsch-Mitzenmacher) from two CRC-32C values.
        let h1 = crc32c::crc32c(key) as u64;
        let h2 = crc32c::crc32c_append(0x9e37_79b9, key) as u64 | 1;
        let n = self.bits.len() as u64 * 64;
        (0..self.hashes as u64).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2))) % n)
    }

    fn insert(&mut self, key: &[u8]) {
        let pos: Vec<u64> = self.positions(key).collect();
        for p in pos {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.positions(key)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.hashes.to_be_bytes());
        out.extend_from_slice(&(self.bits.len() as u64 * 64).to_be_bytes());
        for w in &self.bits {
            out.extend_from_slice(&w.to_be_bytes());
        }
    }

    fn decode(b: &[u8]) -> Option<Bloom> {
        let hashes = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
        let nbits = u64::from_be_bytes(b.get(4..12)?.try_into().ok()?);
        let words = b.get(12..)?;
        if nbits == 0
            || nbits % 64 != 0
            || words.len() as u64 != nbits / 8
            || hashes == 0
            || hashes > 32
        {
            return None;
        }
        Some(Bloom {
            hashes,
            bits: words
                .chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        })
    }
}

/// Writes cells, given in key order, as a new SSTable.
pub fn write(
    dir: &Path,
    generation: u64,
    expected_partitions: u64,
    cells: impl Iterator<Item = (Vec<u8>, Cell)>,
) -> io::Result<Option<SsTable>> {
    let final_path = data_path(dir, generation);
    let tmp = final_path.with_extension("tmp");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut bloom = Bloom::with_keys(expected_partitions);
    let mut index: Vec<(Vec<u8>, u64, u32)> = Vec::new();
    let mut block: Vec<u8> = Vec::with_capacity(BLOCK_BYTES + 1024);
    let mut first: Option<Vec<u8>> = None;
    let mut offset = 0u64;
    let mut count = 0u64;
    let mut last_partition: Vec<u8> = Vec::new();
    let flush_block = |block: &mut Vec<u8>,
                       first: &mut Option<Vec<u8>>,
                       w: &mut BufWriter<File>,
                       offset: &mut u64,
                       index: &mut Vec<(Vec<u8>, u64, u32)>|
     -> io::Result<()> {
        if let Some(f) = first.take() {
            w.write_all(&(block.len() as u32).to_be_bytes())?;
            w.write_all(&crc32c::crc32c(block).to_be_bytes())?;
            w.write_all(block)?;
            index.push((f, *offset, block.len() as u32));
            *offset += 8 + block.len() as u64;
            block.clear();
        }
        Ok(())
    };
    for (k, c) in cells {
        if let Some(p) = partition_prefix_len(&k) {
            if k[..p] != last_partition[..] {
                last_partition = k[..p].to_vec();
                bloom.insert(&last_partition);
            }
        }
        if first.is_none() {
            first = Some(k.clone());
        }
        block.extend_from_slice(&(k.len() as u32).to_be_bytes());
        block.extend_from_slice(&k);
        block.extend_from_slice(&(c.encoded_len() as u32).to_be_bytes());
        c.encode_into(&mut block);
        count += 1;
        if block.len() >= BLOCK_BYTES {
            flush_block(&mut block, &mut first, &mut w, &mut offset, &mut index)?;
        }
    }
    flush_block(&mut block, &mut first, &mut w, &mut offset, &mut index)?;
    if count == 0 {
        drop(w);
        std::fs::remove_file(&tmp)?;
        return Ok(None);
    }
    let mut meta = Vec::new();
    for (k, off, len) in &index {
        meta.extend_from_slice(&(k.len() as u32).to_be_bytes());
        meta.extend_from_slice(k);
        meta.extend_from_slice(&off.to_be_bytes());
        meta.extend_from_slice(&len.to_be_bytes());
    }
    let index_len = meta.len() as u64;
    bloom.encode(&mut meta);
    let bloom_len = meta.len() as u64 - index_len;
    w.write_all(&meta)?;
    let mut footer = Vec::with_capacity(FOOTER);
    footer.extend_from_slice(&offset.to_be_bytes());
    footer.extend_from_slice(&index_len.to_be_bytes());
    footer.extend_from_slice(&(offset + index_len).to_be_bytes());
    footer.extend_from_slice(&bloom_len.to_be_bytes());
    footer.extend_from_slice(&count.to_be_bytes());
    footer.extend_from_slice(&crc32c::crc32c(&meta).to_be_bytes());
    footer.extend_from_slice(&MAGIC.to_be_bytes());
    w.write_all(&footer)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &final_path)?;
    super::commitlog::sync_dir(dir)?;
    SsTable::open(dir, generation).map(Some)
}

/// An open SSTable: its index and bloom filter in memory.
pub struct SsTable {
    pub generation: u64,
    pub path: PathBuf,
    file: File,
    /// First key, offset and length of each block.
    index: Vec<(Vec<u8>, u64, u32)>,
    bloom: Bloom,
    pub cells: u64,
    pub bytes: u64,
}

impl SsTable {
    pub fn open(dir: &Path, generation: u64) -> io::Result<SsTable> {
        let path = data_path(dir, generation);
        let file = File::open(&path)?;
        let size = file.metadata()?.len();
        if size < FOOTER as u64 {
            return Err(corrupt("sstable shorter than its footer"));
        }
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, size - FOOTER as u64)?;
        let u64_at = |i: usize| u64::from_be_bytes(footer[i..i + 8].try_into().expect("8 bytes"));
        let (index_off, index_len, bloom_off, bloom_len, cells) =
            (u64_at(0), u64_at(8), u64_at(16), u64_at(24), u64_at(32));
        let crc = u32::from_be_bytes(footer[40..44].try_into().expect("4 bytes"));
        if u32::from_be_bytes(footer[44..48].try_into().expect("4 bytes")) != MAGIC {
            return Err(corrupt("sstable footer has no magic"));
        }
        let meta_len = index_len
            .checked_add(bloom_len)
            .ok_or_else(|| corrupt("bad lengths"))?;
        if bloom_off != index_off.wrapping_add(index_len)
            || index_off.checked_add(meta_len) != Some(size - FOOTER as u64)
        {
            return Err(corrupt("sstable footer lengths do not add up"));
        }
        let mut meta = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut meta, index_off)?;
        if crc32c::crc32c(&meta) != crc {
            return Err(corrupt("sstable index or bloom filter fails its CRC"));
        }
        let (idx, bl) = meta.split_at(index_len as usize);
        let bloom = Bloom::decode(bl).ok_or_else(|| corrupt("bad bloom filter"))?;
        let mut index = Vec::new();
        let mut p = idx;
        while !p.is_empty() {
            let kl = u32::from_be_bytes(
                p.get(..4)
                    .ok_or_else(|| corrupt("index"))?
                    .try_into()
                    .expect("4"),
            ) as usize;
            let rec = p.get(4..4 + kl + 12).ok_or_else(|| corrupt("index"))?;
            let key = rec[..kl].to_vec();
            let off = u64::from_be_bytes(rec[kl..kl + 8].try_into().expect("8"));
            let len = u32::from_be_bytes(rec[kl + 8..kl + 12].try_into().expect("4"));
            if off + 8 + len as u64 > index_off {
                return Err(corrupt("index points past the blocks"));
            }
            index.push((key, off, len));
            p = &p[4 + kl + 12..];
        }
        Ok(SsTable {
            generation,
            path,
            file,
            index,
            bloom,
            cells,
            bytes: size,
        })
    }

    /// Whether the partition with this prefix may have cells here.
    pub fn may_contain_partition(&self, prefix: &[u8]) -> bool {
        self.bloom.may_contain(prefix)
    }

    /// Reads and checks block `i`.
    fn block(&self, i: usize) -> io::Result<Vec<(Vec<u8>, Cell)>> {
        let (_, off, len) = &self.index[i];
        let mut buf = vec![0u8; 8 + *len as usize];
        self.file.read_exact_at(&mut buf, *off)?;
        let blen = u32::from_be_bytes(buf[..4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4"));
        let body = &buf[8..];
        if blen != body.len() || crc32c::crc32c(body) != crc {
            return Err(corrupt(&format!(
                "{}: block at {off} fails its CRC",
                self.path.display()
            )));
        }
        let mut out = Vec::new();
        let mut p = body;
        while !p.is_empty() {
            let bad = || corrupt("malformed block");
            let kl =
                u32::from_be_bytes(p.get(..4).ok_or_else(bad)?.try_into().expect("4")) as usize;
            let k = p.get(4..4 + kl).ok_or_else(bad)?.to_vec();
            p = &p[4 + kl..];
            let cl =
                u32::from_be_bytes(p.get(..4).ok_or_else(bad)?.try_into().expect("4")) as usize;
            let c = Cell::decode(p.get(4..4 + cl).ok_or_else(bad)?).ok_or_else(bad)?;
            p = &p[4 + cl..];
            out.push((k, c));
        }
        Ok(out)
    }

    /// Cells with keys in `[start, end)` (an empty `end`: to the last), a block at a time.
    pub fn range(self: &std::sync::Arc<Self>, start: &[u8], end: &[u8]) -> SsRange {
        // The last block whose first key is <= start.
        let first = self
            .index
            .partition_point(|(k, _, _)| k.as_slice() <= start);
        SsRange {
            table: self.clone(),
            next_block: first.saturating_sub(1),
            buf: Vec::new().into_iter(),
            start: start.to_vec(),
            end: end.to_vec(),
            done: false,
        }
    }
}

/// An iterator over a key range of one SSTable.
pub struct SsRange {
    table: std::sync::Arc<SsTable>,
    next_block: usize,
    buf: std::vec::IntoIter<(Vec<u8>, Cell)>,
    start: Vec<u8>,
    end: Vec<u8>,
    done: bool,
}

impl Iterator for SsRange {
    type Item = io::Result<(Vec<u8>, Cell)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            for (k, c) in self.buf.by_ref() {
                if k.as_slice() < self.start.as_slice() {
                    continue;
                }
                if !self.end.is_empty() && k.as_slice() >= self.end.as_slice() {
                    self.done = true;
                    return None;
                }
                return Some(Ok((k, c)));
            }
            if self.next_block >= self.table.index.len()
                || (!self.end.is_empty()
                    && self.table.index[self.next_block].0.as_slice() >= self.end.as_slice())
            {
                self.done = true;
                return None;
            }
            match self.table.block(self.next_block) {
                Ok(b) => self.buf = b.into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
            self.next_block += 1;
        }
    }
}
