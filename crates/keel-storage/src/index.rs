//! Sparse per-segment indexes. Both are derived data: they are written when a
//! segment is closed, validated when loaded, and rebuilt from the log whenever a
//! file is missing or fails validation, so they never need an fsync of their own.

/// Offset index: `(offset - segment base, byte position)`, 8 big-endian bytes an entry.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        self.entries.push((relative_offset, position));
    }

    /// The byte position of the last indexed batch starting at or before `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Decodes an index file; `None` if it is not a valid index for a log of `log_bytes`.
    pub fn decode(bytes: &[u8], log_bytes: u64) -> Option<Self> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let mut idx = OffsetIndex::default();
        for c in bytes.chunks_exact(8) {
            let o = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let p = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if u64::from(p) >= log_bytes
                || idx
                    .entries
                    .last()
                    .is_some_and(|&(lo, lp)| o <= lo || p <= lp)
            {
                return None;
            }
            idx.push(o, p);
        }
        Some(idx)
    }
}

/// Time index: `(max timestamp so far, offset - segment base)`, 12 bytes an entry;
/// an entry is added only when the segment's max timestamp grows, as in Kafka.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| timestamp > t) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// A relative offset from which a scan for the first record with a timestamp
    /// `>= target` may start: every batch before it has a smaller max timestamp.
    pub fn lookup(&self, target: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < target);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The segment's max timestamp as far as the index knows, or -1.
    pub fn last_timestamp(&self) -> i64 {
        self.entries.last().map_or(-1, |&(t, _)| t)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(12) {
            return None;
        }
        let mut idx = TimeIndex::default();
        for c in bytes.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if idx
                .entries
                .last()
                .is_some_and(|&(lt, lo)| t <= lt || o < lo)
            {
                return None;
            }
            idx.entries.push((t, o));
        }
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_roundtrip_and_lookup() {
        let mut i = OffsetIndex::default();
        i.push(0, 0);
        i.push(10, 4096);
        i.push(25, 9000);
        assert_eq!(i.lookup(0), 0);
        assert_eq!(i.lookup(9), 0);
        assert_eq!(i.lookup(10), 4096);
        assert_eq!(i.lookup(1000), 9000);
        assert_eq!(OffsetIndex::decode(&i.encode(), 10_000), Some(i.clone()));
        assert_eq!(
            OffsetIndex::decode(&i.encode(), 9000),
            None,
            "a position past the log is invalid"
        );
        assert_eq!(OffsetIndex::decode(&i.encode()[..7], 10_000), None);
    }

    #[test]
    fn time_index_only_grows() {
        let mut t = TimeIndex::default();
        t.push(100, 0);
        t.push(90, 1);
        t.push(200, 5);
        assert_eq!(t.entries, vec![(100, 0), (200, 5)]);
        assert_eq!(t.lookup(50), 0);
        assert_eq!(t.lookup(150), 0);
        assert_eq!(t.lookup(201), 5);
        assert_eq!(TimeIndex::decode(&t.encode()), Some(t));
    }
}
