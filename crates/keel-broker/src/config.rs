//! Topic configs: Kafka's names, types, defaults and validation, in one table.

use std::collections::BTreeMap;

use keel_storage::{CleanerConfig, LogConfig};

use crate::{BrokerError, Result};

/// Kafka's DescribeConfigs `config_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    /// An integer within an inclusive range.
    Range(i64, i64),
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A comma-separated, non-empty set of these words.
    SetOf(&'static [&'static str]),
    /// A decimal number in [0, 1].
    Ratio,
}

/// One topic config Keel understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    pub doc: &'static str,
    rule: Rule,
}

const I32: i64 = i32::MAX as i64;
const DAY_MS: &str = "604800000";

/// Every topic config Keel accepts. Anything else is INVALID_CONFIG, as in Kafka.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "cleanup.policy", kind: ConfigType::List, default: "delete", rule: Rule::SetOf(&["delete", "compact"]),
        doc: "`delete`: drop closed segments by retention.ms/retention.bytes. `compact`: keep only the latest record of each key in closed segments (records need keys). `compact,delete`: both." },
    ConfigDef { name: "min.cleanable.dirty.ratio", kind: ConfigType::Double, default: "0.5", rule: Rule::Ratio,
        doc: "On a compacted topic, clean once the bytes written since the last cleaning are this share of the cleanable log; lower cleans sooner and more often." },
    ConfigDef { name: "min.compaction.lag.ms", kind: ConfigType::Long, default: "0", rule: Rule::Range(0, i64::MAX),
        doc: "On a compacted topic, a record stays uncompacted at least this long, so consumers can read every update of that age." },
    ConfigDef { name: "max.compaction.lag.ms", kind: ConfigType::Long, default: "9223372036854775807", rule: Rule::Range(1, i64::MAX),
        doc: "On a compacted topic, clean data older than this whatever min.cleanable.dirty.ratio says (the active segment still has to roll first: segment.ms)." },
    ConfigDef { name: "delete.retention.ms", kind: ConfigType::Long, default: "86400000", rule: Rule::Range(0, i64::MAX),
        doc: "On a compacted topic, how long a tombstone (a null value) stays after its timestamp, so consumers that read from the start see the delete." },
    ConfigDef { name: "retention.ms", kind: ConfigType::Long, default: DAY_MS, rule: Rule::Range(-1, i64::MAX),
        doc: "Delete a closed segment once its newest record is older than this; -1 keeps data forever." },
    ConfigDef { name: "retention.bytes", kind: ConfigType::Long, default: "-1", rule: Rule::Range(-1, i64::MAX),
        doc: "Delete the oldest closed segments while a partition is larger than this; -1 for no limit." },
    ConfigDef { name: "segment.bytes", kind: ConfigType::Int, default: "1073741824", rule: Rule::Range(1024, I32),
        doc: "Roll to a new segment file at this size." },
    ConfigDef { name: "segment.ms", kind: ConfigType::Long, default: DAY_MS, rule: Rule::Range(1, i64::MAX),
        doc: "Roll to a new segment once the active one is this old, so retention can delete it." },
    ConfigDef { name: "max.message.bytes", kind: ConfigType::Int, default: "1048588", rule: Rule::Range(0, I32),
        doc: "The largest record batch a producer may send." },
    ConfigDef { name: "message.timestamp.type", kind: ConfigType::String, default: "CreateTime", rule: Rule::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock." },
    ConfigDef { name: "min.insync.replicas", kind: ConfigType::Int, default: "1", rule: Rule::Range(1, I32),
        doc: "acks=all produce fails with NOT_ENOUGH_REPLICAS when fewer replicas than this are in sync." },
    ConfigDef { name: "unclean.leader.election.enable", kind: ConfigType::Boolean, default: "false", rule: Rule::OneOf(&["true", "false"]),
        doc: "true lets an out-of-sync replica lead when every in-sync one is down: available again, at the cost of the records only they held (Keel reports which). false keeps the partition offline instead." },
    ConfigDef { name: "flush.messages", kind: ConfigType::Long, default: "1", rule: Rule::Range(1, i64::MAX),
        doc: "1 (Keel's default): acks=1/all are acknowledged only after fsync, shared by group commit, and consumers see only fsynced data. N>1: acknowledge on write and fsync after N unflushed messages or flush.ms; a machine crash may lose acknowledged records." },
    ConfigDef { name: "flush.ms", kind: ConfigType::Long, default: "9223372036854775807", rule: Rule::Range(0, i64::MAX),
        doc: "With flush.messages > 1: the longest acknowledged data may wait for fsync." },
    ConfigDef { name: "compression.type", kind: ConfigType::String, default: "producer", rule: Rule::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        doc: "producer: store each batch as the producer compressed it. uncompressed, gzip, snappy, lz4, zstd: the broker stores every batch with that codec, recompressing when the producer used another." },
    ConfigDef { name: "index.interval.bytes", kind: ConfigType::Int, default: "4096", rule: Rule::Range(0, I32),
        doc: "Bytes of log between offset index entries." },
];

/// The definition of the topic config called `name`, if Keel has one.
pub fn def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

fn check(name: &str, value: &str) -> Result<()> {
    let d = def(name)
        .ok_or_else(|| BrokerError::InvalidConfig(format!("unknown topic config {name:?}")))?;
    match d.rule {
        Rule::Range(lo, hi) => match value.trim().parse::<i64>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(()),
            _ => Err(BrokerError::InvalidConfig(format!(
                "{name}={value:?}: must be an integer in [{lo}, {hi}]"
            ))),
        },
        Rule::SetOf(words) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if !items.is_empty() && items.iter().all(|i| words.contains(i)) {
                Ok(())
            } else {
                Err(BrokerError::InvalidConfig(format!(
                    "{name}={value:?}: must be a comma-separated list of {}",
                    words.join(", ")
                )))
            }
        }
        Rule::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(BrokerError::InvalidConfig(format!(
                "{name}={value:?}: must be a number in [0, 1]"
            ))),
        },
        Rule::OneOf(words) => {
            if words.contains(&value.trim()) {
                Ok(())
            } else {
                Err(BrokerError::InvalidConfig(format!(
                    "{name}={value:?}: must be one of {}",
                    words.join(", ")
                )))
            }
        }
    }
}

/// The values a partition acts on, derived from a topic's configs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub min_insync_replicas: i32,
    pub flush_messages: i64,
    pub flush_ms: i64,
    /// `cleanup.policy` includes `compact`.
    pub compact: bool,
    /// `cleanup.policy` includes `delete` (retention, and DeleteRecords).
    pub delete: bool,
    /// When compaction runs and what it keeps.
    pub cleaner: CleanerConfig,
    /// `compression.type`: the codec every batch is stored with, or None
    /// (`producer`) to keep each producer's own.
    pub compression: Option<keel_storage::compression::Codec>,
}

impl Effective {
    /// Acknowledgements (acks=1/all) wait for fsync, and consumers see only fsynced data.
    pub fn fsync_before_ack(&self) -> bool {
        self.flush_messages <= 1
    }
}

/// A topic's config overrides, validated, with the values they imply.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfigs {
    overrides: BTreeMap<String, String>,
    effective: Effective,
}

/// One row of DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub is_default: bool,
    pub kind: ConfigType,
    pub doc: &'static str,
}

impl TopicConfigs {
    /// Validates every override; the first bad one is the error.
    pub fn new(overrides: BTreeMap<String, String>) -> Result<Self> {
        for (k, v) in &overrides {
            check(k, v)?;
        }
        let value = |name: &str| -> &str {
            let d = def(name).expect("config in table");
            overrides.get(name).map_or(d.default, String::as_str).trim()
        };
        let get = |name: &str| -> i64 { value(name).parse().expect("validated integer") };
        let policy = overrides
            .get("cleanup.policy")
            .map_or("delete", String::as_str);
        let has = |word: &str| policy.split(',').any(|p| p.trim() == word);
        // Without `delete` in the policy, retention never removes data.
        let retention = |name: &str| if has("delete") { get(name) } else { -1 };
        let effective = Effective {
            log: LogConfig {
                segment_bytes: get("segment.bytes") as u64,
                segment_ms: get("segment.ms"),
                retention_ms: retention("retention.ms"),
                retention_bytes: retention("retention.bytes"),
                index_interval_bytes: get("index.interval.bytes") as u64,
            },
            max_message_bytes: get("max.message.bytes") as usize,
            log_append_time: overrides
                .get("message.timestamp.type")
                .is_some_and(|v| v.trim() == "LogAppendTime"),
            min_insync_replicas: get("min.insync.replicas") as i32,
            flush_messages: get("flush.messages"),
            flush_ms: get("flush.ms"),
            compact: has("compact"),
            delete: has("delete"),
            cleaner: CleanerConfig {
                min_dirty_ratio: value("min.cleanable.dirty.ratio")
                    .parse()
                    .expect("validated ratio"),
                min_lag_ms: get("min.compaction.lag.ms"),
                max_lag_ms: get("max.compaction.lag.ms"),
                delete_retention_ms: get("delete.retention.ms"),
            },
            compression: keel_storage::compression::Codec::from_topic_config(value(
                "compression.type",
            )),
        };
        let overrides = overrides
            .into_iter()
            .map(|(k, v)| (k, v.trim().to_string()))
            .collect();
        Ok(TopicConfigs {
            overrides,
            effective,
        })
    }

    pub fn effective(&self) -> &Effective {
        &self.effective
    }

    pub fn overrides(&self) -> &BTreeMap<String, String> {
        &self.overrides
    }

    /// Every config with its current value, as DescribeConfigs shows them.
    pub fn describe(&self) -> Vec<ConfigEntry> {
        TOPIC_CONFIGS
            .iter()
            .map(|d| {
                let o = self.overrides.get(d.name);
                ConfigEntry {
                    name: d.name,
                    value: o.cloned().unwrap_or_else(|| d.default.to_string()),
                    is_default: o.is_none(),
                    kind: d.kind,
                    doc: d.doc,
                }
            })
            .collect()
    }
}

impl Default for TopicConfigs {
    fn default() -> Self {
        TopicConfigs::new(BTreeMap::new()).expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(k: &str, v: &str) -> Result<TopicConfigs> {
        TopicConfigs::new([(k.to_string(), v.to_string())].into())
    }

    #[test]
    fn defaults_match_kafka_except_flush_messages() {
        let c = TopicConfigs::default();
        assert_eq!(c.effective().log.retention_ms, 604_800_000);
        assert_eq!(c.effective().max_message_bytes, 1_048_588);
        assert!(c.effective().fsync_before_ack());
    }

    #[test]
    fn bad_values_and_unknown_names_are_rejected() {
        assert!(with("retention.ms", "-2").is_err());
        assert!(with("retention.ms", "soon").is_err());
        assert!(with("segment.bytes", "10").is_err());
        assert!(with("segment.bytes", "99999999999").is_err());
        assert!(with("message.timestamp.type", "Whenever").is_err());
        assert!(with("no.such.config", "1").is_err());
        assert!(with("cleanup.policy", "compact,shred").is_err());
        assert!(with("cleanup.policy", "").is_err());
        let c = with("cleanup.policy", "compact").unwrap();
        assert!(c.effective().compact);
        assert_eq!(
            c.effective().log.retention_ms,
            -1,
            "compact alone never deletes"
        );
        let c = with("cleanup.policy", "compact, delete").unwrap();
        assert!(c.effective().compact);
        assert_eq!(c.effective().log.retention_ms, 604_800_000);
        let c = with("message.timestamp.type", "LogAppendTime").unwrap();
        assert!(c.effective().log_append_time);
        let c = with("flush.messages", "1000").unwrap();
        assert!(!c.effective().fsync_before_ack());
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            assert!(with("min.cleanable.dirty.ratio", bad).is_err(), "{bad}");
        }
        let c = with("min.cleanable.dirty.ratio", " 0.01").unwrap();
        assert_eq!(c.effective().cleaner.min_dirty_ratio, 0.01);
        assert_eq!(
            TopicConfigs::default().effective().cleaner.min_dirty_ratio,
            0.5
        );
        assert!(with("max.compaction.lag.ms", "0").is_err());
        assert!(with("min.compaction.lag.ms", "-1").is_err());
    }
}
