//! Behaviour of the partition log as its users (the broker, and a crash) see it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;

use keel_storage::batch::{self, Limits};
use std::sync::atomic::AtomicBool;

use keel_storage::{CleanerConfig, Log, LogConfig, StorageError};
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    batch_bytes_max: 1 << 20,
    decompressed_bytes_max: 1 << 24,
    keys_required: false,
};

static NO_ABORT: AtomicBool = AtomicBool::new(false);

/// Cleaning whenever anything is dirty, tombstones kept `retention` ms.
fn eager(retention: i64) -> CleanerConfig {
    CleanerConfig {
        min_dirty_ratio: 0.0,
        delete_retention_ms: retention,
        ..CleanerConfig::default()
    }
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

/// A batch of `n` records whose values encode `tag`, with timestamps `ts`.
fn batch_of(tag: u32, n: usize, ts: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..n).map(|i| format!("{tag}-{i}").into_bytes()).collect();
    let recs: Vec<batch::KeyValue> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
    batch::build(ts, &recs)
}

/// Appends and returns (base offset, stored bytes) per batch.
fn append_all(log: &mut Log, batches: &[Vec<u8>], now: i64) -> Vec<(i64, Vec<u8>)> {
    batches
        .iter()
        .map(|b| {
            let mut b = b.clone();
            batch::validate(&b, &LIMITS).unwrap();
            let h = log.append(&mut b, 0, false, now).unwrap();
            (h.base_offset, b)
        })
        .collect()
}

/// Reads every batch from `from` to the end, as a consumer would.
fn read_all(log: &Log, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut off = from;
    while off < log.log_end_offset() {
        let r = log.read(off, 300, log.log_end_offset()).unwrap();
        assert!(
            r.batches > 0,
            "read at {off} returned nothing below the end"
        );
        let mut at = 0;
        while at < r.bytes.len() {
            let h = batch::check(
                &r.bytes[at..at
                    + batch::BatchHeader::parse(&r.bytes[at..])
                        .unwrap()
                        .total_bytes()],
            )
            .unwrap();
            off = h.last_offset() + 1;
            at += h.total_bytes();
        }
        out.extend_from_slice(&r.bytes);
    }
    out
}

#[test]
fn appends_read_back_in_order_across_segment_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<u8>> = (0..40)
        .map(|i| batch_of(i, 1 + (i as usize % 3), 1000 + i64::from(i)))
        .collect();
    let (mut log, report) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert!(!report.clean_shutdown);
    let written = append_all(&mut log, &batches, 0);
    assert!(log.segment_count() > 3, "1 KiB segments must roll");
    let expected: Vec<u8> = written.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(read_all(&log, 0), expected);
    // Offsets are dense and start at 0.
    assert_eq!(written[0].0, 0);
    assert_eq!(
        log.log_end_offset(),
        batches
            .iter()
            .map(|b| i64::from(batch::check(b).unwrap().records_count))
            .sum::<i64>()
    );
    // Reading from the middle of a batch starts at that batch.
    let mid = written[10].0 + 1;
    let r = log.read(mid, 1, log.log_end_offset()).unwrap();
    assert_eq!(
        r.bytes, written[10].1,
        "KIP-74: at least one whole batch, even past max_bytes"
    );
    let end = log.log_end_offset();
    log.close().unwrap();

    let (log, report) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(report.batches_checked, 0, "a clean log needs no scan");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log, 0), expected);
}

#[test]
fn reads_stop_at_the_high_watermark_and_reject_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let w = append_all(&mut log, &[batch_of(1, 2, 0), batch_of(2, 2, 0)], 0);
    let r = log.read(0, 1 << 20, 2).unwrap();
    assert_eq!(r.bytes, w[0].1, "the second batch is above the watermark");
    assert_eq!(log.read(2, 1 << 20, 2).unwrap().batches, 0);
    assert!(matches!(
        log.read(5, 100, 4),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(-1, 100, 4),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

/// DeleteRecords moves the start inside a segment: below it is out of
/// range, segments wholly below it go, and the move survives a crash; a
/// truncation below it brings it down, so later appends are readable.
#[test]
fn the_log_start_moves_inside_a_segment_durably_and_a_truncation_brings_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<u8>> = (0..40).map(|i| batch_of(i, 2, 1000)).collect();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    let written = append_all(&mut log, &batches, 0);
    let segments = log.segment_count();
    assert!(segments > 3);
    assert!(
        !log.advance_start(0).unwrap(),
        "not past the start: no move"
    );

    // Offset 31 is the second record of the batch at 30.
    assert!(log.advance_start(31).unwrap());
    assert_eq!(log.log_start_offset(), 31);
    assert!(log.segment_count() < segments, "segments wholly below went");
    assert!(matches!(
        log.read(30, 1 << 20, 80),
        Err(StorageError::OffsetOutOfRange { start: 31, .. })
    ));
    let r = log.read(31, 1, 80).unwrap();
    assert_eq!(r.bytes, written[15].1, "the batch holding the start, whole");
    assert!(!log.advance_start(20).unwrap(), "never backwards");

    // A crash (no close) keeps the start.
    assert!(log.advance_start(79).unwrap());
    drop(log);
    let (mut log, report) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert!(!report.clean_shutdown);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (79, 80));

    // A follower's truncation below the start (an unclean election cut the
    // batch at 78) brings it down, and what is appended next is readable.
    log.truncate_to(78, 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (78, 78));
    let again = append_all(&mut log, &[batch_of(99, 3, 1000)], 0);
    assert_eq!(again[0].0, 78);
    assert_eq!(log.read(78, 1 << 20, 81).unwrap().bytes, again[0].1);
    drop(log);
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (78, 81));
    assert!(log.advance_start(1_000).unwrap());
    assert_eq!(log.log_start_offset(), 81, "at most the log end");
}

fn active_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn torn_tail_is_truncated_on_unclean_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let w = append_all(
        &mut log,
        &[batch_of(1, 3, 0), batch_of(2, 3, 0), batch_of(3, 3, 0)],
        0,
    );
    drop(log); // a crash: no close
               // Tear the last batch in half, as a crash during write would.
    let seg = active_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - (w[2].1.len() as u64 / 2)).unwrap();
    let (log, report) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(
        report.truncated_bytes,
        (w[2].1.len() - w[2].1.len() / 2) as u64
    );
    assert_eq!(log.log_end_offset(), 6);
    let expected: Vec<u8> = w[..2].iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(read_all(&log, 0), expected);
}

#[test]
fn garbage_after_the_last_batch_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    append_all(&mut log, &[batch_of(1, 2, 0)], 0);
    drop(log);
    let seg = active_segment(dir.path());
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0xff; 100])
        .unwrap();
    let (mut log, report) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert_eq!(report.truncated_bytes, 100);
    // The log keeps working: the next append follows on.
    let w = append_all(&mut log, &[batch_of(2, 1, 0)], 0);
    assert_eq!(w[0].0, 2);
}

#[test]
fn flipped_bit_truncates_from_the_damaged_batch_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    let batches: Vec<Vec<u8>> = (0..30).map(|i| batch_of(i, 2, 0)).collect();
    let w = append_all(&mut log, &batches, 0);
    let victim = &w[20];
    let seg = log.segment_file_of(victim.0).unwrap();
    drop(log);
    // Flip one bit inside batch 20's records, wherever it sits in its segment.
    let data = std::fs::read(&seg).unwrap();
    let at = data
        .windows(victim.1.len())
        .position(|win| win == victim.1.as_slice())
        .unwrap()
        + victim.1.len()
        - 3;
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[data[at] ^ 0x10], at as u64).unwrap();
    // Forget the recovery point too, so the damaged segment is rescanned.
    std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let (log, report) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(
        log.log_end_offset(),
        victim.0,
        "everything from the damaged batch on is gone"
    );
    let expected: Vec<u8> = w[..20].iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(read_all(&log, 0), expected);
}

#[test]
fn damage_in_trusted_data_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let w = append_all(&mut log, &[batch_of(1, 2, 0), batch_of(2, 2, 0)], 0);
    log.close().unwrap();
    let seg = active_segment(dir.path());
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"X", (w[0].1.len() - 2) as u64).unwrap();
    let (log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    assert!(matches!(
        log.read(0, 1 << 20, log.log_end_offset()),
        Err(StorageError::Damaged { .. })
    ));
    // The undamaged batch is still served.
    assert_eq!(
        log.read(2, 1 << 20, log.log_end_offset()).unwrap().bytes,
        w[1].1
    );
}

#[test]
fn retention_by_size_and_time_deletes_oldest_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_bytes: 2048,
        ..small_segments()
    };
    let (mut log, _) = Log::open(dir.path(), cfg, 0).unwrap();
    let batches: Vec<Vec<u8>> = (0..60)
        .map(|i| batch_of(i, 2, 1000 + i64::from(i)))
        .collect();
    append_all(&mut log, &batches, 0);
    let before = log.segment_count();
    let deleted = log.enforce_retention(0).unwrap();
    assert!(deleted > 0 && log.segment_count() == before - deleted);
    assert!(log.size_bytes() <= 2048 + 1024);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, 100, log.log_end_offset()),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let start = log.log_start_offset();
    assert!(!read_all(&log, start).is_empty());

    let cfg = LogConfig {
        retention_ms: 500,
        retention_bytes: -1,
        ..small_segments()
    };
    log.set_config(cfg);
    assert_eq!(
        log.enforce_retention(1000).unwrap(),
        0,
        "nothing is older than 500 ms yet"
    );
    let n = log.enforce_retention(10_000).unwrap();
    assert!(n > 0);
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    let batches: Vec<Vec<u8>> = (0..30)
        .map(|i| batch_of(i, 1, 1000 + 10 * i64::from(i)))
        .collect();
    append_all(&mut log, &batches, 0);
    let end = log.log_end_offset();
    let hit = log.offset_for_timestamp(1095, end).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (10, 1100));
    assert_eq!(log.offset_for_timestamp(0, end).unwrap().unwrap().offset, 0);
    assert_eq!(log.offset_for_timestamp(5000, end).unwrap(), None);
    assert_eq!(
        log.offset_for_timestamp(1095, 5).unwrap(),
        None,
        "above the watermark is invisible"
    );
}

#[test]
fn the_largest_timestamp_is_found_across_segments_first_record_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    // Timestamps rise, fall back, and reach their largest, 5 000, at offsets
    // 12 and 20 (the first one counts); later records are older.
    let ts = |i: u32| match i {
        12 | 20 => 5_000,
        i if i < 12 => 1_000 + i64::from(i),
        i => 2_000 + i64::from(i),
    };
    let batches: Vec<Vec<u8>> = (0..30).map(|i| batch_of(i, 1, ts(i))).collect();
    append_all(&mut log, &batches, 0);
    assert!(log.segment_count() > 2, "the records span several segments");
    let end = log.log_end_offset();
    let hit = log.max_timestamp_record(end).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (12, 5_000));
    // Below the watermark only: the largest visible below offset 12.
    let hit = log.max_timestamp_record(12).unwrap().unwrap();
    assert_eq!((hit.offset, hit.timestamp), (11, 1_011));
    assert_eq!(log.max_timestamp_record(0).unwrap(), None);
}

#[test]
fn log_append_time_rewrites_timestamp_and_keeps_crc_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
    let mut b = batch_of(1, 2, 5);
    let h = log.append(&mut b, 3, true, 777_777).unwrap();
    assert_eq!(h.max_timestamp, 777_777);
    let r = log.read(0, 1 << 20, 2).unwrap();
    let stored = batch::check(&r.bytes).unwrap();
    assert!(stored.is_log_append_time());
    assert_eq!(
        (stored.max_timestamp, stored.partition_leader_epoch),
        (777_777, 3)
    );
}

#[test]
fn flush_job_covers_rolled_segments_and_advances_flushed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert!(log.flush_job().is_none());
    append_all(
        &mut log,
        &(0..20).map(|i| batch_of(i, 1, 0)).collect::<Vec<_>>(),
        0,
    );
    let job = log.flush_job().unwrap();
    assert!(job.files.len() > 1, "rolled segments are flushed too");
    job.run().unwrap();
    log.complete_flush(&job).unwrap();
    assert_eq!(log.flushed_offset(), log.log_end_offset());
    assert!(log.flush_job().is_none());
}

/// (offset, key, value) of one record.
type Kept = (i64, Vec<u8>, Option<Vec<u8>>);

/// (offset, key, value) of every record from `from`, as a consumer would see them.
fn records_of(log: &Log, from: i64) -> Vec<Kept> {
    let bytes = read_all(log, from);
    let mut out = Vec::new();
    for range in batch::split(&bytes).unwrap() {
        batch::for_each_record(&bytes[range], |h, r| {
            out.push((
                h.base_offset + i64::from(r.offset_delta),
                r.key.unwrap().to_vec(),
                r.value.map(<[u8]>::to_vec),
            ));
            false
        })
        .unwrap();
    }
    out
}

#[test]
fn compaction_keeps_the_latest_value_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    // 60 batches of 3 records over 6 keys; key 0 is deleted (tombstone at t=100).
    for n in 0..60u32 {
        let keys: Vec<Vec<u8>> = (0..3)
            .map(|i| match (n * 3 + i) % 6 {
                // After its tombstone nobody writes k0 again.
                0 if n > 40 => format!("x{n}").into_bytes(),
                k => format!("k{k}").into_bytes(),
            })
            .collect();
        let values: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("v{}", n * 3 + i).into_bytes())
            .collect();
        let tombstone = n == 40;
        let recs: Vec<batch::KeyValue> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| {
                let dead = tombstone && k.as_slice() == b"k0";
                (Some(k.as_slice()), (!dead).then_some(v.as_slice()))
            })
            .collect();
        let ts = if tombstone { 100 } else { 0 };
        append_all(&mut log, &[batch::build(ts, &recs)], 0);
    }
    let before = records_of(&log, 0);
    let job = log.flush_job().unwrap();
    job.run().unwrap();
    log.complete_flush(&job).unwrap();
    assert!(log.segment_count() > 3);

    let expect = |records: &[Kept], end: i64, expired: bool| {
        let mut latest = std::collections::HashMap::new();
        for (o, k, _) in records.iter().filter(|(o, _, _)| *o < end) {
            latest.insert(k.clone(), *o);
        }
        records
            .iter()
            .filter(|(o, k, v)| *o >= end || (latest[k] == *o && !(expired && v.is_none())))
            .cloned()
            .collect::<Vec<_>>()
    };

    // Within delete.retention.ms the tombstone stays.
    let cfg = CleanerConfig {
        delete_retention_ms: 10_000,
        ..CleanerConfig::default()
    };
    let plan = log.compaction_plan(1000, &cfg).unwrap();
    let end = plan.end();
    let done = keel_storage::compact(&plan, 1000, usize::MAX, &NO_ABORT).unwrap();
    assert!(done.records_removed > 0);
    log.install_compaction(done, 1000).unwrap();
    let after = records_of(&log, 0);
    assert_eq!(after, expect(&before, end, false));
    assert!(
        after.iter().any(|(o, _, v)| v.is_none() && *o < end),
        "tombstone kept"
    );
    assert!(
        log.compaction_plan(1000, &cfg).is_none(),
        "nothing new to compact"
    );
    // A crash forgets neither where cleaning ended nor when the tombstone is due.
    drop(log);
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert!(
        log.compaction_plan(1000, &cfg).is_none(),
        "still clean after a restart"
    );

    // After it, the tombstone goes too; a crash and recovery keep the result.
    let plan = log
        .compaction_plan(10_101, &cfg)
        .expect("the tombstone came due");
    let done = keel_storage::compact(&plan, 10_101, usize::MAX, &NO_ABORT).unwrap();
    log.install_compaction(done, 10_101).unwrap();
    let after = records_of(&log, 0);
    assert_eq!(after, expect(&before, end, true));
    let tombstones_left = after
        .iter()
        .filter(|(o, _, v)| v.is_none() && *o < end)
        .count();
    assert_eq!(tombstones_left, 0);
    drop(log);
    let (log, report) = Log::open(dir.path(), small_segments(), 0).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(records_of(&log, 0), after);
    // A fetch from any offset, gap or not, starts at the next record kept.
    for probe in 0..end {
        let first = records_of(&log, probe)[0].0;
        assert!(first >= probe || batch_holding(&log, probe) <= probe);
    }
}

/// Appends one batch per entry of `batches`: (key index, tombstone) records, each
/// value naming its offset-to-be, at timestamp `ts`; then fsyncs.
fn append_keyed(log: &mut Log, batches: &[Vec<(u8, bool)>], ts: i64) {
    for recs in batches {
        let next = log.log_end_offset();
        let keys: Vec<Vec<u8>> = recs
            .iter()
            .map(|(k, _)| format!("k{k}").into_bytes())
            .collect();
        let values: Vec<Vec<u8>> = (0..recs.len())
            .map(|i| format!("v{}", next + i as i64).into_bytes())
            .collect();
        let kvs: Vec<batch::KeyValue> = recs
            .iter()
            .enumerate()
            .map(|(i, (_, dead))| {
                (
                    Some(keys[i].as_slice()),
                    (!dead).then_some(values[i].as_slice()),
                )
            })
            .collect();
        append_all(log, &[batch::build(ts, &kvs)], ts);
    }
    let job = log.flush_job().unwrap();
    job.run().unwrap();
    log.complete_flush(&job).unwrap();
}

/// Runs compaction passes until none is due; returns (passes, largest key map).
fn clean_until_done(
    log: &mut Log,
    cfg: &CleanerConfig,
    now: i64,
    max_keys: usize,
) -> (usize, usize) {
    let (mut passes, mut largest) = (0, 0);
    while let Some(plan) = log.compaction_plan(now, cfg) {
        let done = keel_storage::compact(&plan, now, max_keys, &NO_ABORT).unwrap();
        largest = largest.max(done.keys_mapped);
        log.install_compaction(done, now).unwrap();
        passes += 1;
        assert!(passes < 10_000, "compaction does not converge");
    }
    (passes, largest)
}

/// What compaction must leave of `records` (tombstones kept): below `end` the
/// latest record of each key, from `end` on everything.
fn latest_below(records: &[Kept], end: i64) -> Vec<Kept> {
    let mut latest = std::collections::HashMap::new();
    for (o, k, _) in records.iter().filter(|(o, _, _)| *o < end) {
        latest.insert(k.clone(), *o);
    }
    records
        .iter()
        .filter(|(o, k, _)| *o >= end || latest[k] == *o)
        .cloned()
        .collect()
}

#[test]
fn compaction_waits_for_its_dirty_ratio_and_lag_and_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
    // 240 distinct keys: compaction removes nothing, so the clean part stays big.
    let batches: Vec<Vec<(u8, bool)>> = (0..120u8)
        .map(|i| vec![(i, false), (i + 120, false)])
        .collect();
    append_keyed(&mut log, &batches, 1_000);
    let half = CleanerConfig::default();
    assert!(
        log.compaction_plan(5_000, &half).is_some(),
        "a never-cleaned log is all dirty"
    );
    clean_until_done(&mut log, &half, 5_000, usize::MAX);

    // A little new data is below the 0.5 ratio; a lower ratio cleans it.
    append_keyed(&mut log, &vec![vec![(250, false)]; 15], 2_000);
    assert!(log.compaction_plan(5_000, &half).is_none());
    let low = CleanerConfig {
        min_dirty_ratio: 0.01,
        ..half
    };
    assert!(log.compaction_plan(5_000, &low).is_some());
    // ...unless the dirty segments are younger than min.compaction.lag.ms.
    let lagging = CleanerConfig {
        min_lag_ms: 4_000,
        ..low
    };
    assert!(log.compaction_plan(5_000, &lagging).is_none());
    assert!(log.compaction_plan(6_001, &lagging).is_some());
    // max.compaction.lag.ms cleans old dirty data whatever the ratio.
    // The first dirty segment starts with data written at 1_000.
    let overdue = CleanerConfig {
        max_lag_ms: 3_500,
        ..half
    };
    assert!(log.compaction_plan(4_000, &overdue).is_none());
    assert!(log.compaction_plan(4_500, &overdue).is_some());

    // An aborted pass changes nothing and leaves no files behind.
    let before = records_of(&log, 0);
    let files = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let listed = files(dir.path());
    let plan = log.compaction_plan(5_000, &low).unwrap();
    let abort = AtomicBool::new(true);
    assert!(matches!(
        keel_storage::compact(&plan, 5_000, usize::MAX, &abort),
        Err(StorageError::Aborted)
    ));
    assert_eq!(files(dir.path()), listed);
    assert_eq!(records_of(&log, 0), before);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// However small the key map, and however appends and passes interleave,
    /// repeated passes leave exactly the latest record of each key below the
    /// cleaned end, at unchanged offsets, and a crash keeps that.
    #[test]
    fn bounded_compaction_converges_to_the_latest_record_per_key(
        rounds in prop::collection::vec(
            prop::collection::vec(prop::collection::vec((0u8..24, prop::bool::weighted(0.1)), 1..6), 1..30),
            1..4,
        ),
        max_keys in 1usize..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
        let mut all: Vec<Kept> = Vec::new();
        let cfg = eager(i64::MAX / 4);
        let mut end = 0;
        for batches in &rounds {
            let from = log.log_end_offset();
            append_keyed(&mut log, batches, 0);
            all.extend(records_of(&log, from).into_iter().filter(|(o, _, _)| *o >= from));
            let (_, largest) = clean_until_done(&mut log, &cfg, 0, max_keys);
            prop_assert!(largest <= max_keys.max(5), "a pass mapped {largest} keys");
            end = log.cleaned_below();
            prop_assert_eq!(records_of(&log, 0), latest_below(&all, end));
        }
        drop(log);
        let (log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
        prop_assert_eq!(records_of(&log, 0), latest_below(&all, end));
        // The clean part stays clean across the restart: nothing is due again.
        prop_assert_eq!(log.cleaned_below(), end);
        prop_assert!(log.compaction_plan(0, &cfg).is_none());
    }
}

/// The base offset of the batch a read at `offset` returns first.
fn batch_holding(log: &Log, offset: i64) -> i64 {
    let r = log.read(offset, 1, log.log_end_offset()).unwrap();
    batch::BatchHeader::parse(&r.bytes).unwrap().base_offset
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever byte a crash cuts the log at, and whatever bit rots in the tail, reopening
    /// yields exactly a prefix of the appended batches: nothing reordered, nothing corrupt.
    #[test]
    fn any_crash_point_recovers_a_prefix(
        sizes in prop::collection::vec(1usize..5, 1..40),
        cut_fraction in 0.0f64..1.0,
        flip in prop::option::of((0.0f64..1.0, 0u8..8)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let batches: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| batch_of(i as u32, n, i as i64)).collect();
        let (mut log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
        let written = append_all(&mut log, &batches, 0);
        drop(log);
        std::fs::remove_file(dir.path().join("recovery-point")).unwrap();
        let seg = active_segment(dir.path());
        let len = std::fs::metadata(&seg).unwrap().len();
        let cut = (len as f64 * cut_fraction) as u64;
        let f = OpenOptions::new().write(true).read(true).open(&seg).unwrap();
        f.set_len(cut).unwrap();
        if let Some((at, bit)) = flip {
            if cut > 0 {
                let at = ((cut - 1) as f64 * at) as u64;
                let mut b = [0u8];
                f.read_exact_at(&mut b, at).unwrap();
                f.write_all_at(&[b[0] ^ (1 << bit)], at).unwrap();
            }
        }
        let (log, _) = Log::open(dir.path(), small_segments(), 0).unwrap();
        // partitionLeaderEpoch (bytes 12..16) is outside the CRC in Kafka's format; a flip
        // there that keeps epochs monotonic cannot be detected, so compare without it.
        let mask = |bytes: &[u8]| -> Vec<u8> {
            let mut v = bytes.to_vec();
            let mut at = 0;
            while at + 16 <= v.len() {
                let n = batch::BatchHeader::parse(&v[at..]).map(|h| h.total_bytes()).unwrap_or(v.len() - at);
                v[at + 12..at + 16].fill(0);
                at += n;
            }
            v
        };
        let got = mask(&read_all(&log, 0));
        let all: Vec<u8> = mask(&written.iter().flat_map(|(_, b)| b.clone()).collect::<Vec<u8>>());
        prop_assert!(all.starts_with(&got), "recovered bytes are a prefix of what was written");
        // And they end on a batch boundary.
        let mut boundary = 0;
        let mut boundaries = vec![0];
        for (_, b) in &written { boundary += b.len(); boundaries.push(boundary); }
        prop_assert!(boundaries.contains(&got.len()));
    }
}
