use std::path::PathBuf;

/// Errors from the storage layer. Each says what was being done and to what.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A record batch failed validation; nothing was written.
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A well-formed batch whose records break a rule of the log (a record without
    /// a key on a compacted topic); nothing was written. `indexes` are the
    /// positions in the batch of the records at fault (KIP-467's record errors).
    #[error("invalid record: {why} (record{} {indexes:?} of the batch)", if indexes.len() == 1 { "" } else { "s" })]
    InvalidRecords { why: String, indexes: Vec<i32> },
    /// A batch or request is larger than a configured limit.
    #[error("record batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge { size: usize, limit: usize },
    /// A requested offset lies outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// Stored bytes failed their CRC on read: the log is damaged and is not served.
    #[error("stored data failed its check at offset {offset} in {path}: {why}")]
    Damaged {
        path: PathBuf,
        offset: i64,
        why: String,
    },
    /// Work stopped because the caller asked it to (a compaction at shutdown).
    #[error("aborted")]
    Aborted,
    /// An I/O error, with the action and the file it concerned.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
