//! Idempotent-producer state of one partition: for each producer id, its epoch
//! and its last 5 batches, as Kafka's ProducerStateManager keeps them (KIP-98,
//! KIP-360). A pure state machine: batches and times in, decisions out. The
//! broker persists it as a snapshot plus a replay of the log after it.

use std::collections::{HashMap, VecDeque};

use keel_storage::batch::BatchHeader;

/// Batches remembered per producer: Kafka's limit on
/// `max.in.flight.requests.per.connection` for idempotent producers.
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_append_ms: i64,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it.
    Append,
    /// Already written at this base offset: answer with it and write nothing.
    Duplicate { base_offset: i64 },
    /// Refuse it with this reason.
    Reject(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The epoch is older than the producer's current one: a zombie (fenced).
    StaleEpoch { got: i16, current: i16 },
    /// The sequence does not follow the last one (a gap, or a batch too old to
    /// be recognised as a duplicate).
    OutOfOrder { got: i32, expected: i32 },
    /// No state for this producer, and the batch does not start a sequence.
    UnknownProducer,
}

/// The last sequence number of a batch, wrapping past i32::MAX to 0 as Kafka does.
fn last_seq(first: i32, last_offset_delta: i32) -> i32 {
    let v = i64::from(first) + i64::from(last_offset_delta);
    if v > i64::from(i32::MAX) {
        (v - i64::from(i32::MAX) - 1) as i32
    } else {
        v as i32
    }
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, Entry>,
    /// Offsets below this have been applied.
    applied_up_to: i64,
}

/// One producer's state as DescribeProducers (KIP-664) shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence number written (-1: none yet at this epoch).
    pub last_sequence: i32,
    /// When its last batch was appended here (Kafka reports its last batch's
    /// max timestamp; the append time is what this state keeps).
    pub last_timestamp_ms: i64,
}

impl ProducerState {
    /// Every producer with state here, by id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, e)| ActiveProducer {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp_ms: e.last_append_ms,
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    pub fn applied_up_to(&self) -> i64 {
        self.applied_up_to
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Decides what to do with a batch from a producer (`producer_id >= 0`).
    pub fn check(&self, h: &BatchHeader) -> Check {
        let first = h.base_sequence;
        let last = last_seq(first, h.last_offset_delta);
        let Some(e) = self.producers.get(&h.producer_id) else {
            // KIP-360: a sequence may only start at 0 for a producer we do not know.
            return if first == 0 {
                Check::Append
            } else {
                Check::Reject(Refusal::UnknownProducer)
            };
        };
        if h.producer_epoch < e.epoch {
            return Check::Reject(Refusal::StaleEpoch {
                got: h.producer_epoch,
                current: e.epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            return if first == 0 {
                Check::Append
            } else {
                Check::Reject(Refusal::OutOfOrder {
                    got: first,
                    expected: 0,
                })
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Check::Duplicate {
                base_offset: b.base_offset,
            };
        }
        let expected = e.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if first == expected {
            Check::Append
        } else {
            Check::Reject(Refusal::OutOfOrder {
                got: first,
                expected,
            })
        }
    }

    /// Records a batch as written (after an append, or while replaying the log).
    pub fn apply(&mut self, h: &BatchHeader, append_ms: i64) {
        self.applied_up_to = self.applied_up_to.max(h.last_offset() + 1);
        if h.producer_id < 0 {
            return;
        }
        let e = self.producers.entry(h.producer_id).or_insert(Entry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_append_ms: append_ms,
        });
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_seq(h.base_sequence, h.last_offset_delta),
            base_offset: h.base_offset,
        });
        while e.batches.len() > BATCHES_PER_PRODUCER_MAX {
            e.batches.pop_front();
        }
        e.last_append_ms = e.last_append_ms.max(append_ms);
    }

    /// Forgets producers idle for longer than `expiration_ms` (KIP-854's
    /// `producer.id.expiration.ms`). Returns how many were forgotten.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_append_ms) <= expiration_ms);
        before - self.producers.len()
    }

    /// Forgets everything at or above `offset` (the log was truncated there).
    pub fn reset_to(&mut self, offset: i64) {
        if self.applied_up_to > offset {
            *self = ProducerState::default();
        }
    }

    /// Encodes a snapshot: a version byte, `applied_up_to`, then per producer its
    /// id, epoch, last append time and batches, then a CRC-32C of all of it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend_from_slice(&self.applied_up_to.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.last_append_ms.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot; `None` if it is damaged or of an unknown version.
    pub fn decode(bytes: &[u8]) -> Option<ProducerState> {
        let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return None;
        }
        let mut r = Reader(body);
        if r.take::<1>()?[0] != 1 {
            return None;
        }
        let applied_up_to = i64::from_be_bytes(r.take()?);
        let n = u32::from_be_bytes(r.take()?);
        let mut producers = HashMap::new();
        for _ in 0..n {
            let id = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let last_append_ms = i64::from_be_bytes(r.take()?);
            let count = r.take::<1>()?[0] as usize;
            if count > BATCHES_PER_PRODUCER_MAX {
                return None;
            }
            let mut batches = VecDeque::with_capacity(count);
            for _ in 0..count {
                batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    base_offset: i64::from_be_bytes(r.take()?),
                });
            }
            producers.insert(
                id,
                Entry {
                    epoch,
                    batches,
                    last_append_ms,
                },
            );
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(ProducerState {
            producers,
            applied_up_to,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut s = ProducerState::default();
        let b0 = batch(7, 0, 0, 3, 100);
        assert_eq!(s.check(&b0), Check::Append);
        s.apply(&b0, 1);
        let b1 = batch(7, 0, 3, 2, 103);
        assert_eq!(s.check(&b1), Check::Append);
        s.apply(&b1, 2);
        assert_eq!(
            s.check(&batch(7, 0, 0, 3, -1)),
            Check::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            s.check(&batch(7, 0, 3, 2, -1)),
            Check::Duplicate { base_offset: 103 }
        );
        assert_eq!(
            s.check(&batch(7, 0, 6, 1, -1)),
            Check::Reject(Refusal::OutOfOrder {
                got: 6,
                expected: 5
            }),
            "a gap"
        );
        assert_eq!(s.check(&batch(7, 0, 5, 1, -1)), Check::Append);
    }

    #[test]
    fn epochs_fence_and_reset_sequences() {
        let mut s = ProducerState::default();
        s.apply(&batch(1, 3, 0, 1, 0), 0);
        assert_eq!(
            s.check(&batch(1, 2, 1, 1, -1)),
            Check::Reject(Refusal::StaleEpoch { got: 2, current: 3 })
        );
        assert_eq!(
            s.check(&batch(1, 4, 5, 1, -1)),
            Check::Reject(Refusal::OutOfOrder {
                got: 5,
                expected: 0
            })
        );
        assert_eq!(s.check(&batch(1, 4, 0, 1, -1)), Check::Append);
        s.apply(&batch(1, 4, 0, 1, 1), 0);
        assert_eq!(
            s.check(&batch(1, 3, 1, 1, -1)),
            Check::Reject(Refusal::StaleEpoch { got: 3, current: 4 })
        );
    }

    #[test]
    fn unknown_producers_must_start_at_zero_and_only_five_batches_are_kept() {
        let mut s = ProducerState::default();
        assert_eq!(
            s.check(&batch(9, 0, 4, 1, -1)),
            Check::Reject(Refusal::UnknownProducer)
        );
        for i in 0..7 {
            s.apply(&batch(9, 0, i, 1, i64::from(i)), 0);
        }
        assert_eq!(
            s.check(&batch(9, 0, 6, 1, -1)),
            Check::Duplicate { base_offset: 6 }
        );
        assert_eq!(
            s.check(&batch(9, 0, 1, 1, -1)),
            Check::Reject(Refusal::OutOfOrder {
                got: 1,
                expected: 7
            }),
            "older than the last five"
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut s = ProducerState::default();
        s.apply(&batch(2, 0, i32::MAX - 1, 2, 0), 0);
        assert_eq!(s.check(&batch(2, 0, 0, 1, -1)), Check::Append);
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerState::default();
        s.apply(&batch(1, 0, 0, 1, 0), 1_000);
        s.apply(&batch(2, 0, 0, 1, 1), 5_000);
        assert_eq!(s.expire(7_000, 3_000), 1);
        assert_eq!(
            s.check(&batch(1, 0, 1, 1, -1)),
            Check::Reject(Refusal::UnknownProducer)
        );
        assert_eq!(s.check(&batch(2, 0, 1, 1, -1)), Check::Append);
    }

    #[test]
    fn snapshots_round_trip_and_reject_damage() {
        let mut s = ProducerState::default();
        for i in 0..8 {
            s.apply(
                &batch(i64::from(i % 3), 1, i / 3, 2, i64::from(i) * 2),
                i64::from(i),
            );
        }
        s.apply(&batch(-1, -1, -1, 4, 16), 9);
        let bytes = s.encode();
        assert_eq!(ProducerState::decode(&bytes), Some(s.clone()));
        assert_eq!(s.applied_up_to(), 20);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(ProducerState::decode(&bad), None, "flip at {i}");
        }
        assert_eq!(ProducerState::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(ProducerState::decode(&[]), None);
    }
}
