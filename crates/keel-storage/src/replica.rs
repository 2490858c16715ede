//! What a replicated partition's log needs beyond a leader's appends: copying
//! a leader's batches as they are, truncating a divergent tail, and the
//! leader-epoch cache that says where each epoch began (Kafka's
//! `LeaderEpochFileCache`), which OffsetsForLeaderEpoch answers from
//! (KIP-101, KIP-279).
//!
//! The cache is built from the batches' own `partition_leader_epoch` the
//! first time it is needed, by reading every batch header once, then kept up
//! to date by appends and truncations; a log that is never replicated never
//! pays for it. (Kafka persists it as `leader-epoch-checkpoint`; the headers
//! are the same truth, and reading them costs one pass per start.)

use std::fs::File;

use crate::batch::{self, BatchHeader};
use crate::log::Log;
use crate::segment::Segment;
use crate::{Result, StorageError};

/// Where each leader epoch begins in a log, ascending in both.
pub type EpochCache = Vec<(i32, i64)>;

fn note_epoch(cache: &mut EpochCache, epoch: i32, start: i64) {
    match cache.last() {
        Some((e, _)) if *e >= epoch => {}
        _ => cache.push((epoch, start)),
    }
}

impl Log {
    /// Appends a batch copied from the leader: CRC-checked, its offsets and
    /// leader epoch kept. Its first offset must not be below the log end
    /// (compaction on the leader may leave a gap above it).
    pub fn append_replicated(&mut self, batch: &[u8], now_ms: i64) -> Result<BatchHeader> {
        let h = batch::check(batch)?;
        if h.total_bytes() != batch.len() {
            return Err(StorageError::CorruptBatch(
                "batch length disagrees with its bytes".into(),
            ));
        }
        if h.base_offset < self.log_end_offset {
            return Err(StorageError::CorruptBatch(format!(
                "a replicated batch at offset {} is below the log end {}",
                h.base_offset, self.log_end_offset
            )));
        }
        self.maybe_roll(batch.len() as u64, now_ms)?;
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(batch, &h, interval)?;
        self.log_end_offset = h.last_offset() + 1;
        if let Some(cache) = &mut self.epochs {
            note_epoch(cache, h.partition_leader_epoch, h.base_offset);
        }
        Ok(h)
    }

    /// Records that `epoch` begins at the log end (a new leader does this
    /// before it appends, as Kafka's `Partition.makeLeader` does).
    pub fn begin_epoch(&mut self, epoch: i32) -> Result<()> {
        let end = self.log_end_offset;
        note_epoch(self.epoch_cache()?, epoch, end);
        Ok(())
    }

    /// The newest epoch in the log, if any.
    pub fn latest_epoch(&mut self) -> Result<Option<i32>> {
        Ok(self.epoch_cache()?.last().map(|(e, _)| *e))
    }

    /// Where the newest epoch in the log begins, if any.
    pub fn latest_epoch_start(&mut self) -> Result<Option<i64>> {
        Ok(self.epoch_cache()?.last().map(|(_, start)| *start))
    }

    /// OffsetsForLeaderEpoch: the largest epoch at or below `epoch` this log
    /// has, and where it ends (the next epoch's start, or the log end for the
    /// newest). `(-1, -1)` when the log has no such epoch (UNDEFINED).
    pub fn epoch_end(&mut self, epoch: i32) -> Result<(i32, i64)> {
        let end = self.log_end_offset;
        let cache = self.epoch_cache()?;
        let Some(i) = cache.iter().rposition(|(e, _)| *e <= epoch) else {
            return Ok((-1, -1));
        };
        let next = cache.get(i + 1).map_or(end, |(_, start)| *start);
        Ok((cache[i].0, next))
    }

    /// Where this follower's log must be cut, from its leader's answer to
    /// OffsetsForLeaderEpoch for this log's latest epoch (`keel_repl::truncation`).
    pub fn truncation_for(
        &mut self,
        leader_epoch: i32,
        leader_end: i64,
    ) -> Result<keel_repl::Truncation> {
        let end = self.log_end_offset;
        Ok(keel_repl::truncation(
            self.epoch_cache()?,
            end,
            leader_epoch,
            leader_end,
        ))
    }

    fn epoch_cache(&mut self) -> Result<&mut EpochCache> {
        if self.epochs.is_none() {
            let mut cache = EpochCache::new();
            self.for_each_batch_from(self.log_start_offset(), |h| {
                note_epoch(&mut cache, h.partition_leader_epoch, h.base_offset);
            })?;
            self.epochs = Some(cache);
        }
        Ok(self.epochs.as_mut().expect("built above"))
    }

    /// Drops the whole log and continues, empty, at `start` (Kafka's
    /// `truncateFullyAndStartAt`): a replica whose log ends below its leader's
    /// log start can never copy the gap, so it starts where the leader's log
    /// does. Durable at every step: the log is first emptied in place (a
    /// crash leaves an empty log), then an empty segment at `start` replaces
    /// the emptied one (a crash between leaves two empty segments, and the
    /// log ends at `start`).
    pub fn restart_at(&mut self, start: i64, now_ms: i64) -> Result<()> {
        // Everything goes: truncated to the first segment's base, not to a
        // start DeleteRecords moved inside it.
        let first = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        self.truncate_to(first, now_ms)?;
        let (&base, _) = self
            .segments
            .iter()
            .next()
            .expect("a log always has a segment");
        if start > base {
            let dir = self.dir.clone();
            let seg = Segment::create(&dir, start, now_ms)?;
            crate::log::sync_dir(&dir)?;
            let old = self.segments.remove(&base).expect("seen above");
            self.segments.insert(start, seg);
            old.delete_files(&dir)?;
            crate::log::sync_dir(&dir)?;
        }
        let end = self.log_start_offset().max(start);
        self.log_end_offset = end;
        self.flushed_offset = end;
        self.recovery_point = end;
        self.compacted_end = self.compacted_end.min(end);
        self.epochs = Some(Vec::new());
        self.clamp_start_override()?;
        self.write_recovery_point()
    }

    /// Removes every batch that holds `offset` or anything after it (Kafka's
    /// `truncateTo`: whole batches go, so the log end may land below
    /// `offset`), and makes the removal durable before returning.
    pub fn truncate_to(&mut self, offset: i64, now_ms: i64) -> Result<()> {
        if offset >= self.log_end_offset {
            // No record to cut, but an epoch that begins at or after the
            // offset goes (Kafka's `LeaderEpochFileCache.truncateFromEnd`):
            // a leader's `begin_epoch` with nothing appended before it
            // became a follower. Kept, the follower asked its new leader
            // about that empty epoch, was told to cut at its own log end,
            // and asked again forever, never fetching (a zombie leader cut
            // off before its first append, in a test under CPU load).
            if let Some(cache) = &mut self.epochs {
                cache.retain(|(_, start)| *start < offset);
            }
            return Ok(());
        }
        let dir = self.dir.clone();
        // Whole segments at or after the offset go, the first one excepted (a
        // log always keeps a segment: it is emptied and restarts at `offset`).
        let later: Vec<i64> = self
            .segments
            .range(offset.max(0)..)
            .map(|(b, _)| *b)
            .collect();
        let first_base = *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment");
        for base in later {
            if base == first_base {
                continue;
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files(&dir)?;
            }
        }
        let (&base, seg) = self
            .segments
            .iter()
            .next_back()
            .expect("a log always has a segment");
        let cut = match seg.position_of(offset)? {
            Some((pos, _)) => pos,
            None => seg.size,
        };
        let file = File::options()
            .write(true)
            .open(&seg.path)
            .map_err(StorageError::io("open segment", &seg.path))?;
        file.set_len(cut)
            .and_then(|_| file.sync_all())
            .map_err(StorageError::io("truncate segment", &seg.path))?;
        // The segment's indexes describe the old tail: rebuild them by reading it.
        seg.delete_files_except_log(&dir)?;
        let interval = self.config.index_interval_bytes;
        let (seg, _) = Segment::open(&dir, base, false, interval, now_ms)?;
        let next = if cut == 0 {
            base.max(offset.min(base))
        } else {
            seg.next_offset
        };
        self.segments.insert(base, seg);
        self.log_end_offset = next.max(base);
        self.flushed_offset = self.flushed_offset.min(self.log_end_offset);
        self.unflushed_rolled.clear();
        self.recovery_point = self.recovery_point.min(base);
        self.compacted_end = self.compacted_end.min(self.log_end_offset);
        let end = self.log_end_offset;
        if let Some(cache) = &mut self.epochs {
            cache.retain(|(_, start)| *start < end);
        }
        self.clamp_start_override()?;
        self.write_recovery_point()?;
        crate::log::sync_dir(&dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build, KeyValue};
    use crate::log::LogConfig;

    fn batch_at(base: i64, epoch: i32, n: usize) -> Vec<u8> {
        let kvs: Vec<KeyValue<'_>> = (0..n).map(|_| (Some(&b"k"[..]), Some(&b"v"[..]))).collect();
        let mut b = build(1_000, &kvs);
        batch::set_base_offset(&mut b, base);
        batch::set_partition_leader_epoch(&mut b, epoch);
        b
    }

    #[test]
    fn copies_keep_offsets_and_epochs_and_truncation_drops_whole_batches() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(dir.path(), cfg, 0).unwrap();
        let mut off = 0;
        for (epoch, n) in [(0, 3), (0, 2), (2, 4), (2, 1), (5, 3)] {
            log.append_replicated(&batch_at(off, epoch, n), 0).unwrap();
            off += n as i64;
        }
        assert_eq!(log.log_end_offset(), 13);
        assert!(log.segment_count() > 1, "the test needs several segments");
        // Below the end is refused.
        assert!(log.append_replicated(&batch_at(12, 5, 1), 0).is_err());
        assert_eq!(log.epoch_end(0).unwrap(), (0, 5));
        assert_eq!(log.epoch_end(1).unwrap(), (0, 5));
        assert_eq!(log.epoch_end(4).unwrap(), (2, 10));
        assert_eq!(log.epoch_end(9).unwrap(), (5, 13));
        assert_eq!(log.epoch_end(-3).unwrap(), (-1, -1));
        // Truncating inside the batch 5..9 removes it whole.
        log.truncate_to(7, 0).unwrap();
        assert_eq!(log.log_end_offset(), 5);
        assert_eq!(log.epoch_end(9).unwrap(), (0, 5));
        log.append_replicated(&batch_at(5, 7, 2), 0).unwrap();
        assert_eq!(log.epoch_end(7).unwrap(), (7, 7));
        let read = log.read(0, 1 << 20, i64::MAX).unwrap();
        assert_eq!(read.batches, 3);
        // Reopened (after a crash: no clean close), it holds the same.
        drop(log);
        let (mut log, report) = Log::open(dir.path(), cfg, 0).unwrap();
        assert_eq!(report.truncated_bytes, 0);
        assert_eq!(log.log_end_offset(), 7);
        assert_eq!(log.epoch_end(6).unwrap(), (0, 5));
        assert_eq!(log.epoch_end(7).unwrap(), (7, 7));
        // Truncating everything leaves an empty log that continues at 0.
        log.truncate_to(0, 0).unwrap();
        assert_eq!(log.log_end_offset(), 0);
        log.append_replicated(&batch_at(0, 8, 1), 0).unwrap();
        assert_eq!(log.log_end_offset(), 1);
    }

    #[test]
    fn a_new_leader_records_where_its_epoch_begins() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        log.append_replicated(&batch_at(0, 1, 4), 0).unwrap();
        log.begin_epoch(3).unwrap();
        assert_eq!(log.epoch_end(1).unwrap(), (1, 4));
        assert_eq!(log.epoch_end(3).unwrap(), (3, 4));
        assert_eq!(log.latest_epoch().unwrap(), Some(3));
    }

    #[test]
    fn an_epoch_begun_without_records_goes_when_a_follower_truncates_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        log.append_replicated(&batch_at(0, 3, 4), 0).unwrap();
        // Leader at epoch 5, cut off before any append; then a follower of a
        // leader that has epochs 3 and 4 (4 from offset 4).
        log.begin_epoch(5).unwrap();
        let first = log.truncation_for(4, 6).unwrap();
        assert_eq!((first.offset, first.done), (4, false));
        log.truncate_to(first.offset, 0).unwrap();
        assert_eq!(log.latest_epoch().unwrap(), Some(3));
        // The next round asks about epoch 3, which the leader ends at 4: done.
        let next = log.truncation_for(3, 4).unwrap();
        assert_eq!((next.offset, next.done), (4, true));
        assert_eq!(log.log_end_offset(), 4);
    }

    #[test]
    fn a_replica_behind_its_leaders_log_start_restarts_there_durably() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(dir.path(), cfg, 0).unwrap();
        let mut off = 0;
        for n in [3, 2, 4, 1] {
            log.append_replicated(&batch_at(off, 1, n), 0).unwrap();
            off += n as i64;
        }
        assert!(log.segment_count() > 1, "the test needs several segments");
        log.restart_at(50, 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
        assert_eq!(log.flushed_offset(), 50);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.latest_epoch().unwrap(), None);
        assert!(
            log.read(0, 1 << 20, i64::MAX).is_err(),
            "below the log start"
        );
        log.append_replicated(&batch_at(50, 4, 2), 0).unwrap();
        // After a crash the log is the new one: nothing of the old copy is back.
        drop(log);
        let (mut log, _) = Log::open(dir.path(), cfg, 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 52));
        assert_eq!(log.epoch_end(4).unwrap(), (4, 52));
        let read = log.read(50, 1 << 20, i64::MAX).unwrap();
        assert_eq!(read.batches, 1);
        // Restarting at or below its own start just empties it.
        log.restart_at(10, 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 50));
    }

    fn batch_of(base: i64, epoch: i32, n: usize, value: &[u8]) -> Vec<u8> {
        let kvs: Vec<KeyValue<'_>> = (0..n).map(|_| (Some(&b"k"[..]), Some(value))).collect();
        let mut b = build(1_000, &kvs);
        batch::set_base_offset(&mut b, base);
        batch::set_partition_leader_epoch(&mut b, epoch);
        b
    }

    fn log_of(dir: &std::path::Path, batches: &[(i64, i32, usize, &[u8])]) -> Log {
        let (mut log, _) = Log::open(dir, LogConfig::default(), 0).unwrap();
        for (base, epoch, n, value) in batches {
            log.append_replicated(&batch_of(*base, *epoch, *n, value), 0)
                .unwrap();
        }
        log
    }

    /// What a follower's fetcher does: truncate by epoch, asking again until
    /// told it is done, then copy the leader's batches from its log end.
    fn follow(follower: &mut Log, leader: &mut Log) -> usize {
        let mut rounds = 0;
        while let Some(latest) = follower.latest_epoch().unwrap() {
            rounds += 1;
            let (epoch, end) = leader.epoch_end(latest).unwrap();
            let cut = follower.truncation_for(epoch, end).unwrap();
            follower.truncate_to(cut.offset, 0).unwrap();
            if cut.done {
                break;
            }
        }
        let read = leader
            .read(follower.log_end_offset(), 1 << 20, i64::MAX)
            .unwrap();
        let mut rest = &read.bytes[..];
        while !rest.is_empty() {
            // A batch is its 12-byte offset-and-length prefix and that length.
            let len = 12 + i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize;
            follower.append_replicated(&rest[..len], 0).unwrap();
            rest = &rest[len..];
        }
        rounds
    }

    fn bytes(log: &Log) -> Vec<u8> {
        log.read(0, 1 << 20, i64::MAX).unwrap().bytes
    }

    /// KIP-279's scenario, which KIP-101 alone gets wrong. Offsets 0..4 are
    /// committed at epoch 0. A leads epoch 1 and appends 4..7, which B copies
    /// and C does not. C, in the ISR at offset 4, becomes leader at epoch 2
    /// and appends its own 4..6, which nobody copies. B becomes leader at
    /// epoch 3 and appends 7..9. When C follows B, B answers C's epoch 2 with
    /// (1, 7): truncating to 7 would keep C's epoch-2 records at 4..6, which
    /// B holds different records for. C must cut back to the end of its
    /// epoch 0 (4) and ask again.
    #[test]
    fn a_follower_drops_an_epoch_its_leader_never_had_even_below_the_leaders_end() {
        let (db, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut b = log_of(
            db.path(),
            &[
                (0, 0, 4, b"committed"),
                (4, 1, 3, b"from-a"),
                (7, 3, 2, b"from-b"),
            ],
        );
        let mut c = log_of(dc.path(), &[(0, 0, 4, b"committed"), (4, 2, 2, b"from-c")]);
        assert_eq!(b.epoch_end(2).unwrap(), (1, 7));
        let rounds = follow(&mut c, &mut b);
        assert_eq!(
            rounds, 2,
            "one answer names an epoch C never had, the second agrees"
        );
        assert_eq!(bytes(&c), bytes(&b), "C holds exactly B's log");
        assert_eq!(c.epoch_end(3).unwrap(), (3, 9));
        // A follower that is merely behind truncates nothing and copies the rest.
        let dd = tempfile::tempdir().unwrap();
        let mut d = log_of(dd.path(), &[(0, 0, 4, b"committed"), (4, 1, 3, b"from-a")]);
        assert_eq!(follow(&mut d, &mut b), 1);
        assert_eq!(bytes(&d), bytes(&b));
    }
}
