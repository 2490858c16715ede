//! A Keel node's broker state: topics and partitions over `keel-storage` logs,
//! group-commit durability, topic configs, and the metadata that lists them.
//!
//! Architecture Invariant: this crate speaks no wire protocol and opens no socket.
//! The Kafka front (`keel-kafka`) translates requests into calls here, and maps
//! [`BrokerError`] to protocol error codes in one place.

mod broker;
pub mod config;
pub mod consumer_groups;
mod error;
mod flusher;
pub mod group_records;
pub mod groups;
pub mod metrics;
mod names;
pub mod producers;

pub use broker::{
    is_internal, Broker, BrokerConfig, Clock, Fetched, FetchedOffset, FollowerAppend, IsrChange,
    ListedGroup, LocalTopic, LogDirPartition, OffsetCommit, Partition, PartitionInfo, Produced,
    SystemClock, Topic, TopicInfo, HIGH_WATERMARK, OFFSETS_TOPIC,
};
pub use config::{ConfigEntry, ConfigType, Effective, TopicConfigs};
pub use error::{BrokerError, Result};
pub use names::validate_topic_name;
