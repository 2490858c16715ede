//! Feature flags (KIP-584, KIP-778): the levels of Kafka's features this
//! cluster has finalized, which ApiVersions v3+ lists and UpdateFeatures
//! changes, kept in the image as KRaft's `FeatureControlManager` keeps its
//! `FeatureLevelRecord`s.
//!
//! Keel knows two of Kafka 4's features:
//! - `group.version`: 1 turns KIP-848's consumer group protocol on (Kafka
//!   4's default), 0 turns it off (ConsumerGroupHeartbeat is refused);
//! - `transaction.version`: 0 only, since Keel has no transactions yet; a
//!   client that reads it (KIP-890's producers) knows not to use version 2.
//!
//! `metadata.version` and `kraft.version` describe Kafka's own metadata log
//! format, which Keel's is not, so it does not claim them.

use std::collections::BTreeMap;

use prost::Message;

use crate::{Applied, MetaError};

pub const GROUP_VERSION: &str = "group.version";
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// Each feature Keel supports: (name, lowest level, highest level, level of
/// a new cluster).
pub const SUPPORTED: &[(&str, i16, i16, i16)] =
    &[(GROUP_VERSION, 0, 1, 1), (TRANSACTION_VERSION, 0, 0, 0)];

/// One UpdateFeatures: the new level of each feature named (0 removes it).
#[derive(Clone, PartialEq, Message)]
pub struct SetFeatures {
    #[prost(btree_map = "string, int32", tag = "1")]
    pub levels: BTreeMap<String, i32>,
}

/// Checks a new level for `feature` against what Keel supports and what is
/// finalized now (Kafka's INVALID_UPDATE_VERSION reasons): a lower level
/// needs `downgrade` (UpdateFeatures' SAFE_DOWNGRADE, or v0's
/// allow_downgrade).
pub fn check(current: i16, feature: &str, level: i16, downgrade: bool) -> Result<(), String> {
    let Some(&(_, lo, hi, _)) = SUPPORTED.iter().find(|(n, ..)| *n == feature) else {
        return Err(format!(
            "The feature {feature} is not supported by this cluster"
        ));
    };
    if level < 0 || level > hi || (level > 0 && level < lo) {
        return Err(format!(
            "Invalid update version {level} for feature {feature}: Keel supports {lo} to {hi}"
        ));
    }
    if level < current && !downgrade {
        return Err(format!(
            "Can not downgrade {feature} from {current} to {level} without setting the upgrade type to safe or unsafe downgrade"
        ));
    }
    Ok(())
}

/// The finalized level of `feature`: its set level, or a new cluster's.
pub fn level(finalized: &BTreeMap<String, i32>, feature: &str) -> i16 {
    match finalized.get(feature) {
        Some(l) => i16::try_from(*l).unwrap_or(0),
        None => SUPPORTED
            .iter()
            .find(|(n, ..)| *n == feature)
            .map_or(0, |f| f.3),
    }
}

/// Applies a change at Raft index `index`; the epoch clients see
/// (`finalized_features_epoch`) is the index of the last change.
pub(crate) fn apply(
    finalized: &mut BTreeMap<String, i32>,
    epoch: &mut i64,
    index: u64,
    change: SetFeatures,
) -> Result<Applied, MetaError> {
    for (name, l) in &change.levels {
        let lvl = i16::try_from(*l).map_err(|_| MetaError::Invalid(format!("{name} level {l}")))?;
        check(level(finalized, name), name, lvl, true).map_err(MetaError::Invalid)?;
    }
    finalized.extend(change.levels);
    *epoch = i64::try_from(index).unwrap_or(i64::MAX);
    Ok(Applied::FeaturesChanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_and_a_downgrade_must_say_so() {
        let mut f = BTreeMap::new();
        assert_eq!(level(&f, GROUP_VERSION), 1);
        assert!(check(1, GROUP_VERSION, 0, false).is_err());
        assert!(check(1, GROUP_VERSION, 0, true).is_ok());
        assert!(check(1, GROUP_VERSION, 2, false).is_err());
        assert!(check(0, TRANSACTION_VERSION, 2, false).is_err());
        assert!(check(0, "metadata.version", 20, false).is_err());
        let mut epoch = -1;
        let set = |l: i32| SetFeatures {
            levels: [(GROUP_VERSION.to_string(), l)].into(),
        };
        apply(&mut f, &mut epoch, 7, set(0)).unwrap();
        assert_eq!((level(&f, GROUP_VERSION), epoch), (0, 7));
        // A refused change changes nothing, epoch included.
        assert!(apply(&mut f, &mut epoch, 8, set(5)).is_err());
        assert_eq!((level(&f, GROUP_VERSION), epoch), (0, 7));
        apply(&mut f, &mut epoch, 9, set(1)).unwrap();
        assert_eq!((level(&f, GROUP_VERSION), epoch), (1, 9));
    }
}
