//! The LSM engine: reads merge memtables and SSTables by timestamp, restarts
//! replay the commit log (cutting torn tails), compaction keeps the newest
//! cells and purges tombstones only after gc_grace_seconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keel_table::cell::{self, Cell};
use keel_table::engine::{commitlog, Engine, EngineConfig, SyncMode};
use proptest::prelude::*;

const TABLE: [u8; 16] = [1; 16];

fn key(pk: &str, ck: u32, col: u32) -> Vec<u8> {
    let p = cell::partition_prefix(&TABLE, pk.len() as i64, pk.as_bytes());
    cell::cell_key(&cell::row_prefix(&p, &ck.to_be_bytes()), col)
}

fn cfg(dir: &std::path::Path, clock: Arc<AtomicI64>) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.clock = Arc::new(move || clock.load(Ordering::Relaxed));
    c.memtable_bytes = 1 << 20;
    c
}

fn all(e: &Engine) -> Vec<(Vec<u8>, Cell)> {
    e.scan(&[], &[], None).collect::<Result<_, _>>().unwrap()
}

#[test]
fn newest_timestamp_wins_across_memtable_and_sstables() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(1_000));
    let (e, _) = Engine::open(cfg(dir.path(), clock)).unwrap();
    e.write_blocking(vec![(key("a", 1, 1), Cell::live(20, b"new".to_vec()))])
        .unwrap();
    e.flush().unwrap();
    // An older write arriving later (a hint, a repair) does not win.
    e.write_blocking(vec![(key("a", 1, 1), Cell::live(10, b"old".to_vec()))])
        .unwrap();
    e.write_blocking(vec![(key("b", 1, 1), Cell::live(5, b"b".to_vec()))])
        .unwrap();
    let got = all(&e);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got.iter()
            .find(|(k, _)| *k == key("a", 1, 1))
            .unwrap()
            .1
            .value,
        b"new"
    );
    // Bloom-filtered partition read finds it too.
    let p = cell::partition_prefix(&TABLE, 1, b"a");
    let one: Vec<_> = e
        .scan(&p, &cell::prefix_end(&p), Some(&p))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].1.value, b"new");
}

#[test]
fn restart_replays_the_commit_log_and_keeps_sstables() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(1_000));
    {
        let (e, _) = Engine::open(cfg(dir.path(), clock.clone())).unwrap();
        for i in 0..100u32 {
            e.write_blocking(vec![(key("p", i, 1), Cell::live(i as i64, vec![i as u8]))])
                .unwrap();
            if i == 50 {
                e.flush().unwrap();
            }
        }
        e.shutdown();
    }
    let (e, rec) = Engine::open(cfg(dir.path(), clock)).unwrap();
    assert_eq!(rec.sstables, 1);
    assert_eq!(rec.mutations, 49);
    assert_eq!(all(&e).len(), 100);
}

#[test]
fn periodic_mode_acknowledges_before_the_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(1_000));
    let mut c = cfg(dir.path(), clock);
    c.sync = SyncMode::Periodic(std::time::Duration::from_secs(3600));
    let (e, _) = Engine::open(c).unwrap();
    for i in 0..10u32 {
        e.write_blocking(vec![(key("p", i, 1), Cell::live(1, vec![1]))])
            .unwrap();
    }
    assert_eq!(e.stats().syncs.load(Ordering::Relaxed), 0);
    assert_eq!(all(&e).len(), 10);
}

#[test]
fn compaction_merges_tiers_and_purges_tombstones_after_gc_grace() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(1_000));
    let (e, _) = Engine::open(cfg(dir.path(), clock.clone())).unwrap();
    e.set_gc_grace(&TABLE, 100);
    for round in 0..4i64 {
        e.write_blocking(vec![
            (key("x", 1, 1), Cell::live(round, vec![round as u8])),
            (key("y", 1, 1), Cell::expiring(round, vec![1], 10, 1_000)),
        ])
        .unwrap();
        if round == 3 {
            e.write_blocking(vec![(
                key("z", 1, cell::ROW_DELETION),
                Cell::tombstone(10, 1_000),
            )])
            .unwrap();
            e.write_blocking(vec![(key("z", 1, 2), Cell::live(9, vec![9]))])
                .unwrap();
        }
        e.flush().unwrap();
    }
    // The fourth flush filled a tier: compacted into one (by the flusher after
    // that flush; a compaction asked now is queued behind it and finds
    // nothing to do).
    assert_eq!(e.compact(false).unwrap(), 0);
    assert_eq!(e.sstables().0, 1);
    let got = all(&e);
    let x = got.iter().find(|(k, _)| *k == key("x", 1, 1)).unwrap();
    assert_eq!(x.1.value, vec![3]);
    // The value the row tombstone shadows is gone; the tombstone stays.
    assert!(!got.iter().any(|(k, _)| *k == key("z", 1, 2)));
    assert!(got
        .iter()
        .any(|(k, _)| *k == key("z", 1, cell::ROW_DELETION)));
    // Within gc_grace the expired cell and the tombstone are kept...
    clock.store(1_050, Ordering::Relaxed);
    e.compact(true).unwrap();
    assert_eq!(all(&e).len(), 3);
    // ...after it, they are purged.
    clock.store(1_200, Ordering::Relaxed);
    e.compact(true).unwrap();
    let got = all(&e);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(e.stats().purged.load(Ordering::Relaxed) >= 2);
}

#[test]
fn a_dropped_tables_data_is_compacted_away() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = Engine::open(cfg(dir.path(), Arc::new(AtomicI64::new(0)))).unwrap();
    e.write_blocking(vec![(key("a", 1, 1), Cell::live(1, vec![1]))])
        .unwrap();
    e.flush().unwrap();
    e.drop_table(&TABLE);
    e.compact(true).unwrap();
    assert!(all(&e).is_empty());
    assert_eq!(e.sstables().0, 0);
}

#[test]
fn a_corrupt_sstable_block_is_an_error_not_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(0));
    {
        let (e, _) = Engine::open(cfg(dir.path(), clock.clone())).unwrap();
        e.write_blocking(vec![(key("a", 1, 1), Cell::live(1, b"value".to_vec()))])
            .unwrap();
        e.flush().unwrap();
    }
    let path = keel_table::engine::sstable::data_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let (e, _) = Engine::open(cfg(dir.path(), clock)).unwrap();
    let res: Result<Vec<_>, _> = e.scan(&[], &[], None).collect();
    assert!(res.unwrap_err().to_string().contains("CRC"));
}

/// A segment is zero-filled ahead of its records; after a restart its
/// zero tail is read as its end, not as a torn tail, and a new segment's
/// records go after the old ones' replay, none lost.
#[test]
fn a_segments_zero_filled_tail_is_its_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(0));
    for round in 0..3u32 {
        let (e, rec) = Engine::open(cfg(dir.path(), clock.clone())).unwrap();
        assert_eq!(
            rec.cut, 0,
            "round {round}: a zero tail was taken for a torn one"
        );
        assert_eq!(rec.mutations, 5 * round as usize);
        for i in 0..5u32 {
            e.write_blocking(vec![(
                key("p", round * 5 + i, 1),
                Cell::live(1, vec![7; 10]),
            )])
            .unwrap();
        }
        assert_eq!(all(&e).len(), 5 * (round as usize + 1));
    }
    for s in commitlog::segments(dir.path()).unwrap() {
        let len = std::fs::metadata(commitlog::segment_path(dir.path(), s))
            .unwrap()
            .len();
        assert!(len >= commitlog::PREALLOCATE, "segment {s} is {len} bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// A torn commit log tail (cut anywhere, or garbage appended) loses only
    /// the records it tore: every whole record before it is replayed.
    #[test]
    fn torn_commit_log_tails_are_cut(n in 1usize..20, cut_frac in 0.0f64..1.0, garbage in proptest::collection::vec(any::<u8>(), 0..40)) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(0));
        {
            let (e, _) = Engine::open(cfg(dir.path(), clock.clone())).unwrap();
            for i in 0..n as u32 {
                e.write_blocking(vec![(key("p", i, 1), Cell::live(1, vec![7; 10]))]).unwrap();
            }
        }
        let seg = commitlog::segments(dir.path()).unwrap()[0];
        let path = commitlog::segment_path(dir.path(), seg);
        let mut bytes = std::fs::read(&path).unwrap();
        // The records, without the zeros the segment is extended with
        // ahead of them (each record ends with its value's 7s).
        let records = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        prop_assert!(bytes.len() as u64 >= commitlog::PREALLOCATE);
        bytes.truncate(records);
        let rec_len = bytes.len() / n;
        let cut = ((bytes.len() as f64) * cut_frac) as usize;
        bytes.truncate(cut);
        bytes.extend_from_slice(&garbage);
        std::fs::write(&path, &bytes).unwrap();
        let (e, rec) = Engine::open(cfg(dir.path(), clock)).unwrap();
        let whole = cut / rec_len;
        let got = all(&e).len();
        prop_assert!(got >= whole && got <= whole + 1, "got {} of {} whole", got, whole);
        prop_assert_eq!(rec.mutations, got);
    }
}
