//! The Raft WAL as a crash sees it: whatever prefix of the file survives,
//! recovery yields exactly the entries of whole records, and a torn or
//! corrupt tail is cut off, never served.

use keel_raft::wal::Wal;
use proptest::prelude::*;
use raft::eraftpb::{Entry, HardState};
use raft::{GetEntriesContext, Storage};

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec().into(),
        ..Entry::default()
    }
}

fn entries(w: &Wal) -> Vec<(u64, u64, Vec<u8>)> {
    let (lo, hi) = (w.first_index().unwrap(), w.last_index().unwrap());
    if hi < lo {
        return vec![];
    }
    w.entries(lo, hi + 1, None, GetEntriesContext::empty(false))
        .unwrap()
        .into_iter()
        .map(|e| (e.index, e.term, e.data.to_vec()))
        .collect()
}

#[test]
fn overwritten_tail_and_compaction_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (w, _) = Wal::open(dir.path()).unwrap();
        w.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
            .unwrap();
        // A new leader at term 2 replaces index 3 onwards.
        w.append(&[entry(3, 2, b"C"), entry(4, 2, b"D")]).unwrap();
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 3,
            ..HardState::default()
        };
        w.set_hard_state(&hs).unwrap();
        w.sync().unwrap();
    }
    let (w, rec) = Wal::open(dir.path()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(
        entries(&w),
        vec![
            (1, 1, b"a".to_vec()),
            (2, 1, b"b".to_vec()),
            (3, 2, b"C".to_vec()),
            (4, 2, b"D".to_vec())
        ]
    );
    assert_eq!(
        (
            w.hard_state().term,
            w.hard_state().vote,
            w.hard_state().commit
        ),
        (2, 1, 3)
    );
    w.compact_to(keel_raft::wal::snapshot_meta(2, 1, Default::default()))
        .unwrap();
    drop(w);
    let (w, _) = Wal::open(dir.path()).unwrap();
    assert_eq!(w.first_index().unwrap(), 3);
    assert_eq!(w.term(2).unwrap(), 1);
    assert_eq!(
        entries(&w),
        vec![(3, 2, b"C".to_vec()), (4, 2, b"D".to_vec())]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn recovery_keeps_exactly_the_whole_records(
        sizes in proptest::collection::vec(0usize..300, 1..40),
        cut_frac in 0.0f64..1.0,
        flip in proptest::option::of((0.0f64..1.0, 0u8..8)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut ends = Vec::new(); // file length after each record
        {
            let (w, _) = Wal::open(dir.path()).unwrap();
            for (i, n) in sizes.iter().enumerate() {
                let data = vec![i as u8; *n];
                w.append(&[entry(i as u64 + 1, 1, &data)]).unwrap();
                w.sync().unwrap();
                ends.push(w.written_bytes());
            }
        }
        let path = dir.path().join("wal");
        let len = *ends.last().unwrap();
        // The file is preallocated past its records, and reads as zeros there.
        prop_assert!(std::fs::metadata(&path).unwrap().len() > len);
        let cut = (len as f64 * cut_frac) as u64;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        f.set_len(cut).unwrap();
        let mut whole = ends.iter().filter(|e| **e <= cut).count();
        if let Some((at, bit)) = flip {
            if cut > 0 {
                use std::os::unix::fs::FileExt;
                let pos = ((cut as f64) * at) as u64;
                let mut b = [0u8];
                f.read_at(&mut b, pos).unwrap();
                b[0] ^= 1 << bit;
                f.write_at(&b, pos).unwrap();
                // Records from the one holding the flipped byte on are gone.
                whole = whole.min(ends.iter().filter(|e| **e <= pos).count());
            }
        }
        drop(f);
        let (w, _) = Wal::open(dir.path()).unwrap();
        let got = entries(&w);
        prop_assert_eq!(got.len(), whole);
        for (i, (index, _, data)) in got.iter().enumerate() {
            prop_assert_eq!(*index, i as u64 + 1);
            prop_assert_eq!(data, &vec![i as u8; sizes[i]]);
        }
        // The file is cut at the last whole record, so new appends follow it.
        w.append(&[entry(whole as u64 + 1, 1, b"next")]).unwrap();
        w.sync().unwrap();
        drop(w);
        let (w, rec) = Wal::open(dir.path()).unwrap();
        prop_assert_eq!(rec.truncated_bytes, 0);
        prop_assert_eq!(entries(&w).len(), whole + 1);
    }
}

/// Records that survive after a corrupt one were never acknowledged as part of
/// this log; once recovery cut there, a later record of the same length must
/// not make them readable again (the file is preallocated, so what follows the
/// last record must be zeros, not old bytes).
#[test]
fn records_after_a_corrupt_one_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut ends = vec![0];
    {
        let (w, _) = Wal::open(dir.path()).unwrap();
        for i in 1..=4u64 {
            w.append(&[entry(i, 1, b"old!")]).unwrap();
            w.sync().unwrap();
            ends.push(w.written_bytes());
        }
    }
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("wal"))
            .unwrap();
        f.write_at(b"X", ends[2] - 1).unwrap(); // the last byte of entry 2
    }
    {
        let (w, rec) = Wal::open(dir.path()).unwrap();
        assert_eq!(entries(&w), vec![(1, 1, b"old!".to_vec())]);
        assert_eq!(rec.truncated_bytes, ends[4] - ends[1]);
        // Same length as the old entry 2: entries 3 and 4 would line up after it.
        w.append(&[entry(2, 2, b"new!")]).unwrap();
        w.sync().unwrap();
    }
    let (w, rec) = Wal::open(dir.path()).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(
        entries(&w),
        vec![(1, 1, b"old!".to_vec()), (2, 2, b"new!".to_vec())]
    );
}
