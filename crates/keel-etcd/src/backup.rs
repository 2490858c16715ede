//! Backups of the etcd state: what `Maintenance.Snapshot` streams (so
//! `etcdctl snapshot save` works) and what `keel snapshot restore` seeds a new
//! cluster from.
//!
//! etcd streams its bbolt file, whose size is a multiple of the page size, and
//! then the file's SHA-256 as a last 32-byte message; etcdctl 3.4's `snapshot
//! save` refuses a download whose size is not `512 * n + 32` ("sha256 checksum
//! not found"), and `snapshot restore` checks the digest. Keel's backup keeps
//! that envelope around its own content:
//!
//! ```text
//! "KEELSNAP" | format u32 LE (1) | length u64 LE | StateSnapshot (protobuf)
//! | zero padding to a multiple of 512 | SHA-256 of everything before it
//! ```
//!
//! The content is not a bbolt file, so etcdctl's `snapshot status` and
//! `snapshot restore` cannot read it; `keel snapshot restore` does.

use std::path::{Path, PathBuf};

use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::pb::keelpb::StateSnapshot;

pub const MAGIC: &[u8; 8] = b"KEELSNAP";
pub const FORMAT: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 8;
/// etcdctl expects the body to be a whole number of 512-byte blocks.
pub const BLOCK: usize = 512;
pub const DIGEST_BYTES: usize = 32;
/// Where `keel snapshot restore` leaves a verified backup for a new member's first start.
pub const RESTORE_FILE: &str = "etcd-restore.snapshot";

/// The backup body for an encoded [`StateSnapshot`]; its digest follows it
/// ([`digest`]), as etcd sends it, in a message of its own.
pub fn encode(state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + state.len() + BLOCK);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    out.extend_from_slice(state);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

pub fn digest(body: &[u8]) -> [u8; DIGEST_BYTES] {
    Sha256::digest(body).into()
}

/// Checks a whole backup file (body and digest) and returns its state.
pub fn decode(file: &[u8]) -> Result<StateSnapshot, String> {
    if file.len() < DIGEST_BYTES || !(file.len() - DIGEST_BYTES).is_multiple_of(BLOCK) {
        return Err(format!(
            "{} bytes is not a snapshot (512 * n bytes and a 32-byte SHA-256 expected)",
            file.len()
        ));
    }
    let (body, sha) = file.split_at(file.len() - DIGEST_BYTES);
    if digest(body)[..] != *sha {
        return Err("SHA-256 does not match: the file is damaged or incomplete".into());
    }
    if body.len() < HEADER_BYTES || &body[..8] != MAGIC {
        return Err(
            "not a Keel snapshot (an etcd bbolt snapshot cannot be restored into Keel)".into(),
        );
    }
    let format = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(format!(
            "snapshot format {format} is not one this Keel reads ({FORMAT})"
        ));
    }
    let len = u64::from_le_bytes(body[12..20].try_into().expect("8 bytes"));
    let state = usize::try_from(len)
        .ok()
        .and_then(|len| body[HEADER_BYTES..].get(..len))
        .ok_or_else(|| format!("snapshot claims {len} bytes of state, holds fewer"))?;
    StateSnapshot::decode(state).map_err(|e| format!("snapshot content does not decode: {e}"))
}

/// What a restore staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub path: PathBuf,
    pub revision: i64,
    pub compact_revision: i64,
    /// Stored versions (every revision kept since the last compaction).
    pub versions: usize,
    pub leases: usize,
}

/// Checks `backup` and leaves it in `data_dir` (which must be new or empty) for
/// the member's first start, where it becomes the new cluster's state: keys,
/// their history since the last compaction, and leases, with the membership
/// of the new `--initial-cluster` (as `etcdctl snapshot restore` does). Every
/// member of the new cluster restores the same file.
pub fn stage_restore(backup: &Path, data_dir: &Path) -> Result<Staged, String> {
    let file = std::fs::read(backup).map_err(|e| format!("read {}: {e}", backup.display()))?;
    let state = decode(&file).map_err(|e| format!("{}: {e}", backup.display()))?;
    if let Ok(mut entries) = std::fs::read_dir(data_dir) {
        if entries.next().is_some() {
            return Err(format!(
                "data dir {} is not empty; restore into a new directory",
                data_dir.display()
            ));
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("create {}: {e}", data_dir.display()))?;
    let path = data_dir.join(RESTORE_FILE);
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&file)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(Staged {
        path,
        revision: state.current_revision,
        compact_revision: state.compact_revision,
        versions: state.kvs.len(),
        leases: state.leases.len(),
    })
}

/// The staged backup in `data_dir`, if any, checked again.
pub fn staged(data_dir: &Path) -> Result<Option<StateSnapshot>, String> {
    let path = data_dir.join(RESTORE_FILE);
    match std::fs::read(&path) {
        Ok(file) => decode(&file)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateSnapshot {
        StateSnapshot {
            current_revision: 7,
            compact_revision: 2,
            cluster_id: 9,
            ..StateSnapshot::default()
        }
    }

    fn file_of(state: &StateSnapshot) -> Vec<u8> {
        let mut f = encode(&state.encode_to_vec());
        let d = digest(&f);
        f.extend_from_slice(&d);
        f
    }

    #[test]
    fn a_backup_has_etcds_shape_and_round_trips() {
        let f = file_of(&sample());
        assert!((f.len() - DIGEST_BYTES).is_multiple_of(BLOCK));
        assert_eq!(decode(&f).unwrap(), sample());
    }

    #[test]
    fn every_damaged_or_foreign_file_is_refused() {
        let good = file_of(&sample());
        for i in [0, 9, 13, 20, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipped byte {i} accepted");
        }
        assert!(decode(&good[..good.len() - 1]).is_err());
        assert!(decode(&[]).is_err());
        // The right envelope around something else: a bbolt file, or a lie about the length.
        let mut foreign = vec![0u8; BLOCK];
        foreign[..8].copy_from_slice(b"BOLTDB\0\0");
        let d = digest(&foreign);
        foreign.extend_from_slice(&d);
        assert!(decode(&foreign)
            .unwrap_err()
            .contains("not a Keel snapshot"));
        let mut long = encode(&sample().encode_to_vec());
        long[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
        let d = digest(&long);
        long.extend_from_slice(&d);
        assert!(decode(&long).unwrap_err().contains("holds fewer"));
    }

    #[test]
    fn restore_stages_only_into_an_empty_dir() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("b.db");
        std::fs::write(&backup, file_of(&sample())).unwrap();
        let target = dir.path().join("new");
        let s = stage_restore(&backup, &target).unwrap();
        assert_eq!((s.revision, s.compact_revision), (7, 2));
        assert_eq!(staged(&target).unwrap(), Some(sample()));
        let again = stage_restore(&backup, &target).unwrap_err();
        assert!(again.contains("not empty"), "{again}");
        std::fs::write(&backup, b"junk").unwrap();
        assert!(stage_restore(&backup, &dir.path().join("other")).is_err());
        assert!(!dir.path().join("other").exists());
    }
}
