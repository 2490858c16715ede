//! Keel's storage layer: one append-only, segmented log per partition.
//!
//! A log holds Kafka RecordBatch v2 bytes exactly as producers sent them (only the
//! base offset, and for `LogAppendTime` the max timestamp and CRC, are rewritten),
//! so fetches serve stored bytes without re-encoding. Each segment has a sparse
//! offset index and a time index. On open, every batch past the last clean point
//! is CRC-checked and a torn or corrupt tail is truncated, never served.
//!
//! Architecture Invariant: nothing in this crate opens a socket, spawns a task, or
//! reads the clock: time comes in as `now_ms` arguments.

pub mod batch;
mod cleaner;
pub mod compression;
mod error;
mod index;
mod log;
mod replica;
mod segment;

pub use batch::OffsetAndTimestamp;
pub use cleaner::{compact, CleanerConfig, Compacted, CompactionPlan, BYTES_PER_KEY};
pub use error::{Result, StorageError};
pub use log::{FlushJob, Log, LogConfig, ReadResult, RecoveryReport};
pub use replica::EpochCache;
