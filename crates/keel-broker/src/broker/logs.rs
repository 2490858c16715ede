//! What a partition's log says of itself to admin tools: DeleteRecords
//! (KIP-107), DescribeLogDirs (KIP-113) and DescribeProducers (KIP-664).
//!
//! DeleteRecords: a client moves a partition's log start up to an
//! offset below its high watermark, and the records below become
//! unreadable everywhere. As Kafka does it (`Partition.deleteRecordsOnLeader`,
//! `DelayedDeleteRecords`): the leader moves its own start at once, durably;
//! each follower takes the leader's start from its fetch answers (never
//! past its own high watermark) and reports its own in its next fetch; the
//! request is answered once the partition's low watermark, the smallest
//! start among the leader and its in-sync followers, has reached the offset.
//! Kafka counts every live replica there; the leader here knows the ISR, and
//! a replica out of it takes the start when it fetches again.

use std::sync::atomic::Ordering;

use super::{Broker, Partition, PartitionState};
use crate::producers::ActiveProducer;
use crate::{BrokerError, Result};

/// One partition this node holds, for DescribeLogDirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirPartition {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    /// Kafka's `offset_lag`: how far the log end is below the high
    /// watermark (0 on a leader and on a follower that has caught up).
    pub offset_lag: i64,
}

/// DeleteRecords' offset meaning "the high watermark" (Kafka's
/// `DeleteRecordsRequest.HIGH_WATERMARK`).
pub const HIGH_WATERMARK: i64 = -1;

impl Broker {
    /// Moves the log start of `topic`-`index`, which this broker leads, to
    /// `offset` ([`HIGH_WATERMARK`]: the high watermark), durably. Returns
    /// the offset the start was asked to reach: the request is done once
    /// [`Broker::low_watermark`] reaches it.
    pub fn delete_records(&self, topic: &str, index: i32, offset: i64) -> Result<i64> {
        let p = self.partition(topic, index)?;
        let mut s = p.lock();
        Partition::check_local_leader(&p, &s)?;
        if !s.effective.delete {
            return Err(BrokerError::PolicyViolation(format!(
                "records of {topic}-{index} cannot be deleted: its cleanup.policy has no `delete`"
            )));
        }
        let hw = p.high_watermark();
        let offset = if offset == HIGH_WATERMARK { hw } else { offset };
        if offset < 0 || offset > hw {
            return Err(BrokerError::OffsetOutOfRange {
                offset,
                start: s.log.log_start_offset(),
                end: hw,
            });
        }
        if s.log.advance_start(offset)? {
            tracing::info!(
                topic,
                partition = index,
                log_start_offset = offset,
                "records deleted below the new log start (DeleteRecords)"
            );
        }
        drop(s);
        // Parked fetches below the new start answer OFFSET_OUT_OF_RANGE now.
        p.data_version.send_modify(|v| *v += 1);
        Ok(offset)
    }

    /// Every partition replica this node holds, with its size on disk.
    pub fn log_dir_partitions(&self) -> Vec<LogDirPartition> {
        let mut out = Vec::new();
        for t in self.topics() {
            for i in 0..t.partition_count() {
                let Some(p) = t.partition(i) else { continue };
                let info = p.info();
                out.push(LogDirPartition {
                    topic: t.name.clone(),
                    partition: i,
                    size_bytes: info.size_bytes,
                    offset_lag: (info.high_watermark - info.log_end_offset).max(0),
                });
            }
        }
        out
    }

    /// The data directory's file system: (total bytes, bytes an unprivileged
    /// writer may still use), as DescribeLogDirs v4 reports them.
    pub fn disk_space(&self) -> Option<(u64, u64)> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.config().data_dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs(3) reads a NUL-terminated path we own and writes
        // only into the zeroed struct we pass; nothing else is touched.
        let st = unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            if libc::statvfs(path.as_ptr(), &mut st) != 0 {
                return None;
            }
            st
        };
        let block = st.f_frsize as u64;
        Some((st.f_blocks as u64 * block, st.f_bavail as u64 * block))
    }

    /// The idempotent producers with state in `topic`-`index` on this
    /// replica (any replica answers, as Kafka's does).
    pub fn describe_producers(&self, topic: &str, index: i32) -> Result<Vec<ActiveProducer>> {
        let p = self.partition(topic, index)?;
        let s = p.lock();
        Ok(s.producers.active())
    }

    /// The partition's low watermark on its leader: the smallest log start
    /// among this replica and its in-sync followers, as each last reported
    /// it (a follower not heard from since this node led counts as 0).
    pub fn low_watermark(&self, topic: &str, index: i32) -> Result<i64> {
        let p = self.partition(topic, index)?;
        let s = p.lock();
        Partition::check_local_leader(&p, &s)?;
        Ok(low_watermark(&s))
    }
}

fn low_watermark(s: &PartitionState) -> i64 {
    let own = s.log.log_start_offset();
    let Some(r) = &s.repl else {
        return own;
    };
    let me = r.role().me;
    r.role()
        .isr
        .iter()
        .filter(|id| **id != me)
        .map(|id| s.follower_starts.get(id).copied().unwrap_or(0))
        .fold(own, i64::min)
}

impl Partition {
    /// A follower's fetch said where its log starts: recorded for the low
    /// watermark (an older report never moves it back).
    pub(super) fn note_follower_start(&self, s: &mut PartitionState, follower: i32, start: i64) {
        if start < 0 {
            return;
        }
        // A first report counts as a move too: until it came, the low
        // watermark counted this follower as 0, and a DeleteRecords waiting
        // on it must look again.
        if s.follower_starts
            .get(&follower)
            .is_none_or(|known| start > *known)
        {
            s.follower_starts.insert(follower, start);
            self.data_version.send_modify(|v| *v += 1);
        }
    }

    /// A follower takes its leader's log start from a fetch answer, never
    /// past its own high watermark (Kafka's follower
    /// `maybeIncrementLogStartOffset`).
    pub(super) fn follow_leader_start(
        &self,
        s: &mut PartitionState,
        leader_start: i64,
    ) -> Result<()> {
        let upto = leader_start.min(self.high_watermark.load(Ordering::Acquire));
        s.log.advance_start(upto)?;
        Ok(())
    }
}
