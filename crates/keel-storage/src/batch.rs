//! The Kafka RecordBatch v2 format (KIP-98), read and patched in place.
//!
//! ```text
//! 0  baseOffset i64          | not covered by the CRC; the broker assigns it
//! 8  batchLength i32         | bytes after this field
//! 12 partitionLeaderEpoch i32| not covered by the CRC
//! 16 magic i8 (= 2)
//! 17 crc u32                 | CRC-32C of bytes 21..end
//! 21 attributes i16          | bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control
//! 23 lastOffsetDelta i32
//! 27 baseTimestamp i64
//! 35 maxTimestamp i64
//! 43 producerId i64
//! 51 producerEpoch i16
//! 53 baseSequence i32
//! 57 recordsCount i32
//! 61 records...
//! ```
//!
//! Everything here parses untrusted bytes into a `Result`; nothing panics on input.

use crate::compression::{self, Codec};
use crate::{Result, StorageError};

/// Bytes before `batchLength`'s payload: baseOffset and batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The fixed header of a v2 batch, up to the first record.
pub const HEADER_BYTES: usize = 61;
/// The smallest legal `batchLength`.
pub const BATCH_LENGTH_MIN: i32 = (HEADER_BYTES - LOG_OVERHEAD) as i32;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn corrupt(why: impl Into<String>) -> StorageError {
    StorageError::CorruptBatch(why.into())
}

impl BatchHeader {
    /// Parses the fixed header from the first [`HEADER_BYTES`] of `buf`. Checks only
    /// what the header alone can tell: length bounds and magic.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < HEADER_BYTES {
            return Err(corrupt(format!(
                "{} bytes is shorter than a batch header",
                buf.len()
            )));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if h.magic != 2 {
            return Err(corrupt(format!(
                "magic {} is not 2 (only RecordBatch v2 is accepted)",
                h.magic
            )));
        }
        if h.batch_length < BATCH_LENGTH_MIN {
            return Err(corrupt(format!(
                "batch length {} is below the minimum {BATCH_LENGTH_MIN}",
                h.batch_length
            )));
        }
        Ok(h)
    }

    /// The whole batch's size on disk and on the wire.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn codec(&self) -> Result<Codec> {
        Codec::from_attributes(self.attributes).ok_or_else(|| {
            corrupt(format!(
                "unknown compression codec in attributes {:#x}",
                self.attributes
            ))
        })
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
}

/// CRC-32C over the part of a batch that its `crc` field covers.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Parses the header of a complete batch and checks its length and CRC.
pub fn check(batch: &[u8]) -> Result<BatchHeader> {
    let h = BatchHeader::parse(batch)?;
    if h.total_bytes() != batch.len() {
        return Err(corrupt(format!(
            "batch length {} disagrees with the {} bytes given",
            h.batch_length,
            batch.len() - LOG_OVERHEAD.min(batch.len())
        )));
    }
    let crc = compute_crc(batch);
    if crc != h.crc {
        return Err(corrupt(format!(
            "CRC-32C is {crc:#010x}, header says {:#010x}",
            h.crc
        )));
    }
    Ok(h)
}

/// Limits for validating a producer's batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `max.message.bytes`: the largest batch accepted.
    pub batch_bytes_max: usize,
    /// The largest a compressed batch may grow when decompressed (defends against bombs).
    pub decompressed_bytes_max: usize,
    /// Every record needs a key (the topic is compacted).
    pub keys_required: bool,
}

/// Splits the `records` field of a produce request into whole batches, checking
/// lengths only. A trailing partial batch is an error: producers never send one.
pub fn split(buf: &[u8]) -> Result<Vec<std::ops::Range<usize>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rest = &buf[at..];
        if rest.len() < HEADER_BYTES {
            return Err(corrupt(format!(
                "{} trailing bytes are shorter than a batch header",
                rest.len()
            )));
        }
        let h = BatchHeader::parse(rest)?;
        let n = h.total_bytes();
        if n > rest.len() {
            return Err(corrupt(format!(
                "batch claims {n} bytes but {} remain",
                rest.len()
            )));
        }
        out.push(at..at + n);
        at += n;
    }
    Ok(out)
}

/// Fully validates one batch from a producer: structure, CRC, and that the records
/// (decompressed, within `limits`) are exactly `recordsCount` well-formed records
/// with offset deltas 0, 1, 2, ... Kafka's broker makes the same checks
/// (LogValidator); a batch that fails them is rejected with CORRUPT_MESSAGE or
/// INVALID_RECORD and nothing is written.
pub fn validate(batch: &[u8], limits: &Limits) -> Result<BatchHeader> {
    if batch.len() > limits.batch_bytes_max {
        return Err(StorageError::BatchTooLarge {
            size: batch.len(),
            limit: limits.batch_bytes_max,
        });
    }
    let h = check(batch)?;
    if h.records_count <= 0 {
        return Err(corrupt(format!("batch holds {} records", h.records_count)));
    }
    if i64::from(h.last_offset_delta) + 1 != i64::from(h.records_count) {
        return Err(corrupt(format!(
            "lastOffsetDelta {} disagrees with {} records",
            h.last_offset_delta, h.records_count
        )));
    }
    if h.attributes & (1 << 5) != 0 {
        return Err(corrupt("control batches may not be produced by clients"));
    }
    // Without a transaction coordinator a read_committed consumer would take these
    // as committed; refuse them until transactions exist.
    if h.attributes & (1 << 4) != 0 {
        return Err(corrupt("transactional batches are not supported yet"));
    }
    let records = plain_records(&h, batch, limits.decompressed_bytes_max)?;
    let mut keyless = Vec::new();
    let mut index = 0i32;
    walk_records(&records, h.records_count, true, |r| {
        if r.key.is_none() {
            keyless.push(index);
        }
        index += 1;
        false
    })?;
    // Kafka's LogValidator: "Compacted topic cannot accept message without
    // key", naming each such record (KIP-467) so a client can tell which.
    if !keyless.is_empty() && limits.keys_required {
        return Err(StorageError::InvalidRecords {
            why: "a compacted topic cannot accept a record without a key".into(),
            indexes: keyless,
        });
    }
    Ok(h)
}

/// The records of a whole `batch` with header `h`: its body as it is, or
/// decompressed within `max_bytes`.
fn plain_records<'a>(
    h: &BatchHeader,
    batch: &'a [u8],
    max_bytes: usize,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    let body = &batch[HEADER_BYTES..];
    Ok(match h.codec()? {
        Codec::None => std::borrow::Cow::Borrowed(body),
        codec => std::borrow::Cow::Owned(
            compression::decompress(codec, body, max_bytes).map_err(corrupt)?,
        ),
    })
}

/// Reads a zigzag varint of at most `max_bytes` bytes.
fn varint(buf: &[u8], at: &mut usize, max_bytes: usize) -> Result<i64> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let b = *buf
            .get(*at)
            .ok_or_else(|| corrupt("record truncated inside a varint"))?;
        *at += 1;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(corrupt("varint is too long"))
}

fn skip_bytes(buf: &[u8], at: &mut usize, len: i64, nullable: bool, what: &str) -> Result<()> {
    if len == -1 && nullable {
        return Ok(());
    }
    if len < 0 || len as u64 > (buf.len() - *at) as u64 {
        return Err(corrupt(format!(
            "{what} length {len} does not fit the record"
        )));
    }
    *at += len as usize;
    Ok(())
}

/// An offset with the timestamp of the record at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    pub offset: i64,
    pub timestamp: i64,
}

/// The largest a stored batch is decompressed to when reading it back.
const READ_DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// The first record of a stored `batch` whose timestamp is `>= ts`, if any.
pub fn first_record_at_or_after(batch: &[u8], ts: i64) -> Result<Option<OffsetAndTimestamp>> {
    let h = check(batch)?;
    if h.is_log_append_time() {
        return Ok((h.max_timestamp >= ts).then_some(OffsetAndTimestamp {
            offset: h.base_offset,
            timestamp: h.max_timestamp,
        }));
    }
    let records = plain_records(&h, batch, READ_DECOMPRESSED_BYTES_MAX)?;
    let mut found = None;
    walk_records(&records, h.records_count, false, |r| {
        let t = h.base_timestamp.saturating_add(r.timestamp_delta);
        if t >= ts {
            found = Some(OffsetAndTimestamp {
                offset: h.base_offset + i64::from(r.offset_delta),
                timestamp: t,
            });
        }
        found.is_some()
    })?;
    Ok(found)
}

/// One record of a batch, borrowed from the batch's (decompressed) records.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The whole record with its length prefix, to copy it unchanged.
    pub raw: &'a [u8],
}

fn bytes_field<'a>(
    rec: &'a [u8],
    at: &mut usize,
    nullable: bool,
    what: &str,
) -> Result<Option<&'a [u8]>> {
    let len = varint(rec, at, 5)?;
    let start = *at;
    skip_bytes(rec, at, len, nullable, what)?;
    Ok((len >= 0).then(|| &rec[start..*at]))
}

/// Checks that `buf` holds exactly `count` well-formed records, calling `each` for
/// each; `each` returning true stops the walk early (and skips the trailing-bytes
/// check). With `dense`, offset deltas must be 0, 1, 2, ... (a producer's batch);
/// otherwise they must only increase (a batch that compaction has thinned).
fn walk_records<'a>(
    buf: &'a [u8],
    count: i32,
    dense: bool,
    mut each: impl FnMut(&Record<'a>) -> bool,
) -> Result<()> {
    let mut at = 0usize;
    let mut previous_delta = -1i64;
    for i in 0..count {
        let start = at;
        let len = varint(buf, &mut at, 5)?;
        if len < 0 || len as u64 > (buf.len() - at) as u64 {
            return Err(corrupt(format!(
                "record {i} length {len} does not fit the batch"
            )));
        }
        let rec = &buf[at..at + len as usize];
        at += len as usize;
        let mut p = 1usize; // attributes
        if rec.is_empty() {
            return Err(corrupt(format!("record {i} is empty")));
        }
        let timestamp_delta = varint(rec, &mut p, 10)?;
        let offset_delta = varint(rec, &mut p, 5)?;
        let in_order = if dense {
            offset_delta == i64::from(i)
        } else {
            offset_delta > previous_delta && offset_delta <= i64::from(i32::MAX)
        };
        if !in_order {
            return Err(corrupt(format!(
                "record {i} has offset delta {offset_delta}"
            )));
        }
        previous_delta = offset_delta;
        let key = bytes_field(rec, &mut p, true, "key")?;
        let value = bytes_field(rec, &mut p, true, "value")?;
        let headers = varint(rec, &mut p, 5)?;
        if headers < 0 {
            return Err(corrupt(format!("record {i} has {headers} headers")));
        }
        for _ in 0..headers {
            bytes_field(rec, &mut p, false, "header key")?;
            bytes_field(rec, &mut p, true, "header value")?;
        }
        if p != rec.len() {
            return Err(corrupt(format!(
                "record {i} has {} stray bytes",
                rec.len() - p
            )));
        }
        let record = Record {
            offset_delta: offset_delta as i32,
            timestamp_delta,
            key,
            value,
            raw: &buf[start..at],
        };
        if each(&record) {
            return Ok(());
        }
    }
    if at != buf.len() {
        return Err(corrupt(format!(
            "{} bytes follow the last record",
            buf.len() - at
        )));
    }
    Ok(())
}

/// Calls `each` with every record of a stored `batch` (CRC-checked first, and
/// decompressed within a fixed limit); `each` returning true stops early.
pub fn for_each_record(
    batch: &[u8],
    mut each: impl FnMut(&BatchHeader, &Record<'_>) -> bool,
) -> Result<BatchHeader> {
    let h = check(batch)?;
    let records = plain_records(&h, batch, READ_DECOMPRESSED_BYTES_MAX)?;
    walk_records(&records, h.records_count, false, |r| each(&h, r))?;
    Ok(h)
}

/// The timestamp of `record` in a batch with header `h`.
pub fn record_timestamp(h: &BatchHeader, record: &Record<'_>) -> i64 {
    if h.is_log_append_time() {
        h.max_timestamp
    } else {
        h.base_timestamp.saturating_add(record.timestamp_delta)
    }
}

/// A copy of a stored batch holding only `records` (`count` raw records, as
/// [`Record::raw`] gives them), compressed again with the batch's codec.
/// Everything else in the header stays: base offset, lastOffsetDelta (so the
/// producer's sequence numbers still add up), timestamps, producer
/// id/epoch/sequence. Kafka's log cleaner does the same.
pub fn rebuild(h: &BatchHeader, records: &[u8], count: i32) -> Result<Vec<u8>> {
    let codec = h.codec()?;
    let packed;
    let records = if codec == Codec::None {
        records
    } else {
        packed = compression::compress(codec, records).map_err(corrupt)?;
        &packed[..]
    };
    let mut b = Vec::with_capacity(HEADER_BYTES + records.len());
    b.extend_from_slice(&h.base_offset.to_be_bytes());
    b.extend_from_slice(&((HEADER_BYTES - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&h.attributes.to_be_bytes());
    b.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&h.base_timestamp.to_be_bytes());
    b.extend_from_slice(&h.max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(records);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// A validated producer batch stored with `codec` instead of its own, as
/// Kafka's LogValidator recompresses for a topic whose `compression.type`
/// is not `producer`. The header keeps everything but the codec bits
/// (offsets, timestamps, producer id, epoch and sequence).
pub fn recompress(batch: &[u8], codec: Codec, decompressed_bytes_max: usize) -> Result<Vec<u8>> {
    let h = check(batch)?;
    let records = plain_records(&h, batch, decompressed_bytes_max)?;
    let h2 = BatchHeader {
        attributes: (h.attributes & !0x7) | codec.attribute_bits(),
        ..h
    };
    rebuild(&h2, &records, h.records_count)
}

/// Sets the broker-assigned base offset. Not covered by the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch (KIP-101). Not covered by the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Marks a batch as `LogAppendTime` with the broker's time, as Kafka does for topics
/// with `message.timestamp.type=LogAppendTime`, and recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record's key and value, either of which may be null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds an uncompressed batch of `(key, value)` records. Used by tests and by
/// `keel bench`; real producers build their own.
pub fn build(base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut rec = Vec::new();
        rec.push(0u8);
        put_varint(&mut rec, 0);
        put_varint(&mut rec, i as i64);
        for field in [k, v] {
            match field {
                Some(b) => {
                    put_varint(&mut rec, b.len() as i64);
                    rec.extend_from_slice(b);
                }
                None => put_varint(&mut rec, -1),
            }
        }
        put_varint(&mut rec, 0);
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::with_capacity(HEADER_BYTES + body.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_BYTES - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32 - 1).to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&base_timestamp.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Stamps an idempotent producer's id, epoch and first sequence on a batch and
/// recomputes its CRC, as a producer does before sending. For tests and bench.
pub fn set_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        batch_bytes_max: 1 << 20,
        decompressed_bytes_max: 1 << 24,
        keys_required: false,
    };

    #[test]
    fn built_batch_validates_and_patching_keeps_crc_valid() {
        let mut b = build(1000, &[(Some(b"k"), Some(b"v1")), (None, Some(b"v2"))]);
        let h = validate(&b, &LIMITS).unwrap();
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        set_base_offset(&mut b, 42);
        set_partition_leader_epoch(&mut b, 7);
        set_log_append_time(&mut b, 5555);
        let h = check(&b).unwrap();
        assert_eq!(
            (h.base_offset, h.last_offset(), h.partition_leader_epoch),
            (42, 43, 7)
        );
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 5555);
    }

    #[test]
    fn count_mismatch_is_rejected() {
        let mut b = build(0, &[(None, Some(b"a")), (None, Some(b"b"))]);
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate(&b, &LIMITS),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn control_and_transactional_batches_are_refused() {
        for bit in [4, 5] {
            let mut b = build(0, &[(None, Some(b"v"))]);
            let attrs = i16::from_be_bytes([b[21], b[22]]) | (1 << bit);
            b[21..23].copy_from_slice(&attrs.to_be_bytes());
            let crc = compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            assert!(
                matches!(validate(&b, &LIMITS), Err(StorageError::CorruptBatch(_))),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn oversized_batch_is_rejected() {
        let b = build(0, &[(None, Some(&[0u8; 2000]))]);
        let limits = Limits {
            batch_bytes_max: 1000,
            ..LIMITS
        };
        assert!(matches!(
            validate(&b, &limits),
            Err(StorageError::BatchTooLarge { .. })
        ));
    }
}
