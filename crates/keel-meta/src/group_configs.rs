//! A consumer group's own configs (KIP-848's group configs: the GROUP
//! resource of IncrementalAlterConfigs and DescribeConfigs), kept in the
//! image as KRaft keeps a `ConfigRecord` of a group: the overrides of
//! `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms` that
//! a KIP-848 group uses in place of the coordinator's defaults.

use std::collections::BTreeMap;

use prost::Message;

use crate::{Applied, MetaError};

pub const SESSION_TIMEOUT_MS: &str = "consumer.session.timeout.ms";
pub const HEARTBEAT_INTERVAL_MS: &str = "consumer.heartbeat.interval.ms";

/// The keys a group takes, and the range of each (the ranges the
/// coordinator's own `--group-consumer-*` flags accept).
pub const KEYS: &[(&str, i32, i32)] = &[
    (SESSION_TIMEOUT_MS, 1_000, 1_800_000),
    (HEARTBEAT_INTERVAL_MS, 100, 300_000),
];

/// One group's overrides.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct GroupConfigs {
    #[prost(btree_map = "string, string", tag = "1")]
    pub configs: BTreeMap<String, String>,
}

/// Replaces a group's overrides (none: back to the defaults).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct SetGroupConfigs {
    #[prost(string, tag = "1")]
    pub group: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub configs: BTreeMap<String, String>,
}

/// The value of `key` in `configs`, if set and valid.
pub fn get(configs: &BTreeMap<String, String>, key: &str) -> Option<i32> {
    configs.get(key)?.trim().parse().ok()
}

/// Checks a group's overrides: known keys, whole numbers in range, and a
/// heartbeat interval below the session timeout, the defaults (`session`,
/// `heartbeat`) standing in for a key not set (Kafka's
/// `GroupConfig.validate`). The message is Kafka's INVALID_CONFIG text.
pub fn check(
    configs: &BTreeMap<String, String>,
    session: i32,
    heartbeat: i32,
) -> Result<(), String> {
    for (k, v) in configs {
        let Some(&(_, lo, hi)) = KEYS.iter().find(|(name, ..)| name == k) else {
            return Err(format!("Unknown group config name: {k}"));
        };
        let n: i32 = v.trim().parse().map_err(|_| {
            format!("Invalid value {v} for configuration {k}: Not a number of type INT")
        })?;
        if !(lo..=hi).contains(&n) {
            return Err(format!(
                "Invalid value {n} for configuration {k}: Value must be between {lo} and {hi}"
            ));
        }
    }
    let s = get(configs, SESSION_TIMEOUT_MS).unwrap_or(session);
    let h = get(configs, HEARTBEAT_INTERVAL_MS).unwrap_or(heartbeat);
    if h >= s {
        return Err(format!(
            "{HEARTBEAT_INTERVAL_MS} ({h}) must be less than {SESSION_TIMEOUT_MS} ({s})"
        ));
    }
    Ok(())
}

pub(crate) fn apply(
    groups: &mut BTreeMap<String, GroupConfigs>,
    change: SetGroupConfigs,
) -> Result<Applied, MetaError> {
    if change.group.is_empty() {
        return Err(MetaError::Invalid("a group config needs a group id".into()));
    }
    // The keys and numbers only: the interval-below-session check depends
    // on each coordinator's defaults, so the handler makes it before
    // proposing.
    for (k, v) in &change.configs {
        let known = KEYS.iter().any(|(name, ..)| name == k);
        if !known || v.trim().parse::<i32>().map_or(true, |n| n <= 0) {
            return Err(MetaError::Invalid(format!("group config {k}={v}")));
        }
    }
    if change.configs.is_empty() {
        groups.remove(&change.group);
    } else {
        groups.insert(
            change.group,
            GroupConfigs {
                configs: change.configs,
            },
        );
    }
    Ok(Applied::ConfigChanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn group_configs_are_checked_against_each_other_and_the_defaults() {
        assert!(check(&cfg(&[(HEARTBEAT_INTERVAL_MS, "200")]), 45_000, 5_000).is_ok());
        assert!(check(&cfg(&[(HEARTBEAT_INTERVAL_MS, "50")]), 45_000, 5_000).is_err());
        assert!(check(&cfg(&[(HEARTBEAT_INTERVAL_MS, "x")]), 45_000, 5_000).is_err());
        assert!(check(&cfg(&[("group.max.size", "3")]), 45_000, 5_000).is_err());
        // Below the default interval: refused unless the interval comes down too.
        assert!(check(&cfg(&[(SESSION_TIMEOUT_MS, "4000")]), 45_000, 5_000).is_err());
        assert!(check(
            &cfg(&[
                (SESSION_TIMEOUT_MS, "4000"),
                (HEARTBEAT_INTERVAL_MS, "1000")
            ]),
            45_000,
            5_000
        )
        .is_ok());

        let mut groups = BTreeMap::new();
        let set = |c: &[(&str, &str)]| SetGroupConfigs {
            group: "g".into(),
            configs: cfg(c),
        };
        apply(&mut groups, set(&[(HEARTBEAT_INTERVAL_MS, "200")])).unwrap();
        assert_eq!(get(&groups["g"].configs, HEARTBEAT_INTERVAL_MS), Some(200));
        assert!(apply(&mut groups, set(&[(HEARTBEAT_INTERVAL_MS, "-1")])).is_err());
        assert_eq!(get(&groups["g"].configs, HEARTBEAT_INTERVAL_MS), Some(200));
        apply(&mut groups, set(&[])).unwrap();
        assert!(groups.is_empty());
    }
}
