//! Cells and the keys they live under.
//!
//! Every piece of table data is one cell under one key, sorted as Cassandra
//! sorts a table: by token, then partition key, then clustering, then column.
//!
//! ```text
//! key  = table id (16) | token (8, sign flipped) | partition key length (4) | partition key
//!        | kind (1: 0 partition deletion, 2 row) | clustering order keys | column id (4)
//! cell = write timestamp (8) | kind (1) | ttl (4) | local deletion time (4) | value
//! ```
//!
//! Column id 0 of a row is its deletion (a tombstone a DELETE of the row
//! writes) and column id 1 its liveness (the row marker an INSERT writes);
//! regular columns start at 2. Keeping the two apart means an INSERT after a
//! DELETE cannot overwrite the deletion and resurrect older cells (Cassandra
//! keeps a row's deletion and its primary key liveness apart for the same
//! reason). A partition deletion is one cell of kind 0 with no clustering.

/// Bytes of a table id.
pub const TABLE_ID_LEN: usize = 16;
/// Where the partition key length sits in a key.
const PK_LEN_AT: usize = TABLE_ID_LEN + 8;
/// The fixed part before the partition key.
pub const PARTITION_HEADER: usize = PK_LEN_AT + 4;

/// Kind byte of a partition-level cell (its deletion).
pub const KIND_PARTITION: u8 = 0;
/// Kind byte of a row's cells.
pub const KIND_ROW: u8 = 2;
/// The column id of a row's deletion.
pub const ROW_DELETION: u32 = 0;
/// The column id of a row's liveness (the marker INSERT writes).
pub const ROW_MARKER: u32 = 1;
/// The first column id of a table's own columns.
pub const FIRST_COLUMN_ID: u32 = 2;

/// What a cell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CellKind {
    Live = 0,
    /// Live until `ldt` (seconds since the epoch), then a tombstone.
    Expiring = 1,
    /// Deleted at `ldt` (seconds); shadows whatever it covers written at or
    /// before its timestamp.
    Tombstone = 2,
}

/// A cell: a value (or a deletion) with its write timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Microseconds; last write wins.
    pub ts: i64,
    pub kind: CellKind,
    pub ttl: i32,
    /// Local deletion time in seconds: when a tombstone was written, or when
    /// an expiring cell expires.
    pub ldt: i32,
    pub value: Vec<u8>,
}

impl Cell {
    pub fn live(ts: i64, value: Vec<u8>) -> Cell {
        Cell {
            ts,
            kind: CellKind::Live,
            ttl: 0,
            ldt: i32::MAX,
            value,
        }
    }

    /// A value that expires `ttl` seconds after `now`.
    pub fn expiring(ts: i64, value: Vec<u8>, ttl: i32, now_secs: i64) -> Cell {
        Cell {
            ts,
            kind: CellKind::Expiring,
            ttl,
            ldt: (now_secs + ttl as i64).min(i32::MAX as i64) as i32,
            value,
        }
    }

    pub fn tombstone(ts: i64, now_secs: i64) -> Cell {
        Cell {
            ts,
            kind: CellKind::Tombstone,
            ttl: 0,
            ldt: now_secs.min(i32::MAX as i64) as i32,
            value: Vec::new(),
        }
    }

    /// Whether the cell holds a value at `now_secs`.
    pub fn is_live(&self, now_secs: i64) -> bool {
        match self.kind {
            CellKind::Live => true,
            CellKind::Expiring => (self.ldt as i64) > now_secs,
            CellKind::Tombstone => false,
        }
    }

    /// Whether the cell is a deletion at `now_secs` (a tombstone or an
    /// expired value), and since when (seconds).
    pub fn deleted_since(&self, now_secs: i64) -> Option<i64> {
        match self.kind {
            CellKind::Live => None,
            CellKind::Expiring if (self.ldt as i64) > now_secs => None,
            _ => Some(self.ldt as i64),
        }
    }

    /// Cassandra's reconciliation: the higher timestamp wins; on a tie a
    /// deletion wins, then the later expiry, then the greater value, so every
    /// replica picks the same cell whatever order it saw them in.
    pub fn wins_over(&self, other: &Cell) -> bool {
        (
            self.ts,
            self.kind == CellKind::Tombstone,
            self.ldt,
            &self.value,
        ) > (
            other.ts,
            other.kind == CellKind::Tombstone,
            other.ldt,
            &other.value,
        )
    }

    pub fn encoded_len(&self) -> usize {
        17 + self.value.len()
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.to_be_bytes());
        out.push(self.kind as u8);
        out.extend_from_slice(&self.ttl.to_be_bytes());
        out.extend_from_slice(&self.ldt.to_be_bytes());
        out.extend_from_slice(&self.value);
    }

    pub fn decode(b: &[u8]) -> Option<Cell> {
        if b.len() < 17 {
            return None;
        }
        let kind = match b[8] {
            0 => CellKind::Live,
            1 => CellKind::Expiring,
            2 => CellKind::Tombstone,
            _ => return None,
        };
        Some(Cell {
            ts: i64::from_be_bytes(b[..8].try_into().ok()?),
            kind,
            ttl: i32::from_be_bytes(b[9..13].try_into().ok()?),
            ldt: i32::from_be_bytes(b[13..17].try_into().ok()?),
            value: b[17..].to_vec(),
        })
    }
}

/// The key prefix of one partition of a table.
pub fn partition_prefix(table: &[u8; TABLE_ID_LEN], token: i64, pk: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(PARTITION_HEADER + pk.len() + 16);
    k.extend_from_slice(table);
    k.extend_from_slice(&((token as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&(pk.len() as u32).to_be_bytes());
    k.extend_from_slice(pk);
    k
}

/// A token's place in keys (sign flipped so unsigned order is token order).
pub fn token_key(token: i64) -> [u8; 8] {
    ((token as u64) ^ (1 << 63)).to_be_bytes()
}

/// The token of the partition a key (or partition prefix) is in.
pub fn split_token(key: &[u8]) -> Option<i64> {
    let b: [u8; 8] = key.get(TABLE_ID_LEN..PK_LEN_AT)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// The length of the partition prefix at the start of `key`.
pub fn partition_prefix_len(key: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(key.get(PK_LEN_AT..PARTITION_HEADER)?.try_into().ok()?) as usize;
    let end = PARTITION_HEADER.checked_add(len)?;
    (end <= key.len()).then_some(end)
}

/// The parts of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub table: &'a [u8],
    pub token: i64,
    pub pk: &'a [u8],
    pub kind: u8,
    /// The clustering order keys, concatenated.
    pub clustering: &'a [u8],
    pub column: u32,
}

/// Splits a key into its parts.
pub fn split_key(key: &[u8]) -> Option<KeyParts<'_>> {
    let p = partition_prefix_len(key)?;
    let token =
        (u64::from_be_bytes(key[TABLE_ID_LEN..PK_LEN_AT].try_into().ok()?) ^ (1 << 63)) as i64;
    let kind = *key.get(p)?;
    if key.len() < p + 1 + 4 {
        return None;
    }
    let col_at = key.len() - 4;
    Some(KeyParts {
        table: &key[..TABLE_ID_LEN],
        token,
        pk: &key[PARTITION_HEADER..p],
        kind,
        clustering: &key[p + 1..col_at],
        column: u32::from_be_bytes(key[col_at..].try_into().ok()?),
    })
}

/// The key of a partition's deletion.
pub fn partition_deletion_key(prefix: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.push(KIND_PARTITION);
    k.extend_from_slice(&ROW_DELETION.to_be_bytes());
    k
}

/// The key prefix of one row (partition prefix, kind, clustering).
pub fn row_prefix(partition: &[u8], clustering: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(partition.len() + 1 + clustering.len() + 4);
    k.extend_from_slice(partition);
    k.push(KIND_ROW);
    k.extend_from_slice(clustering);
    k
}

/// The key of one cell of a row.
pub fn cell_key(row_prefix: &[u8], column: u32) -> Vec<u8> {
    let mut k = row_prefix.to_vec();
    k.extend_from_slice(&column.to_be_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_back_into_their_parts() {
        let table = [7u8; 16];
        let p = partition_prefix(&table, -5, b"pk");
        let r = row_prefix(&p, b"\x80\x00\x00\x01");
        let k = cell_key(&r, 3);
        let parts = split_key(&k).unwrap();
        assert_eq!(parts.token, -5);
        assert_eq!(parts.pk, b"pk");
        assert_eq!(parts.kind, KIND_ROW);
        assert_eq!(parts.clustering, b"\x80\x00\x00\x01");
        assert_eq!(parts.column, 3);
        assert!(partition_prefix(&table, -6, b"zz") < p);
        assert!(split_key(&k[..20]).is_none());
    }

    #[test]
    fn later_timestamps_and_deletions_win() {
        let a = Cell::live(10, b"a".to_vec());
        let b = Cell::live(11, b"a".to_vec());
        let t = Cell::tombstone(10, 0);
        assert!(b.wins_over(&a) && !a.wins_over(&b));
        assert!(t.wins_over(&a) && !a.wins_over(&t));
        let enc = {
            let mut v = Vec::new();
            b.encode_into(&mut v);
            v
        };
        assert_eq!(Cell::decode(&enc), Some(b));
    }
}
