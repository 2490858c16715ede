//! Client quotas (KIP-13, KIP-55, KIP-124, KIP-546): the limits
//! AlterClientQuotas sets on a user, a client id or both, kept in the image
//! as KRaft keeps them (`ClientQuotaControlManager`, its `QuotaRecord`s).
//!
//! An entity names each part it has: `user` and `client-id` (alone or
//! together) or `ip` alone. A part without a name is that type's default
//! entity (`<default>`): the limit of every user, or client id, that has no
//! limit of its own. The brokers enforce them (keel-kafka's `quotas`), most
//! specific first, as Kafka's `DefaultQuotaCallback` does.

use std::collections::BTreeMap;

use prost::Message;

use crate::{Applied, MetaError};

pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// Bytes a second a producer may append (Kafka's `producer_byte_rate`).
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// Bytes a second a consumer may fetch (`consumer_byte_rate`).
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// Percent of one request thread's time (`request_percentage`).
pub const REQUEST_PERCENTAGE: &str = "request_percentage";

/// The keys a user or client-id entity takes, and whether each is a whole
/// number (Kafka's LONG quota configs) or a fraction (DOUBLE).
///
/// Kafka also has `controller_mutation_rate` (KIP-599) and, for `ip`
/// entities, `connection_creation_rate` (KIP-612); Keel refuses them rather
/// than keep limits it would not enforce.
const KEYS: &[(&str, bool)] = &[
    (PRODUCER_BYTE_RATE, true),
    (CONSUMER_BYTE_RATE, true),
    (REQUEST_PERCENTAGE, false),
];

/// One part of an entity: its type, and its name or `None` for the default.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Message)]
pub struct QuotaEntityPart {
    #[prost(string, tag = "1")]
    pub entity_type: String,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
}

/// One entity's limits, as the image keeps them.
#[derive(Clone, PartialEq, Message)]
pub struct ClientQuota {
    /// Sorted by type; at most one part of each.
    #[prost(message, repeated, tag = "1")]
    pub entity: Vec<QuotaEntityPart>,
    #[prost(btree_map = "string, double", tag = "2")]
    pub values: BTreeMap<String, f64>,
}

/// Sets and removes one entity's limits (AlterClientQuotas' entry).
#[derive(Clone, PartialEq, Message)]
pub struct AlterClientQuota {
    #[prost(message, repeated, tag = "1")]
    pub entity: Vec<QuotaEntityPart>,
    #[prost(btree_map = "string, double", tag = "2")]
    pub set: BTreeMap<String, f64>,
    #[prost(string, repeated, tag = "3")]
    pub remove: Vec<String>,
}

/// Checks an entity as AlterClientQuotas and DescribeClientQuotas take it
/// (Kafka's `validateEntity` and `configKeysForEntityType`) and returns it
/// sorted by type. The message is Kafka's INVALID_REQUEST text.
pub fn check_entity(entity: &[QuotaEntityPart]) -> Result<Vec<QuotaEntityPart>, String> {
    if entity.is_empty() {
        return Err("Invalid empty client quota entity".into());
    }
    let mut sorted = entity.to_vec();
    sorted.sort();
    for (i, part) in sorted.iter().enumerate() {
        match part.entity_type.as_str() {
            USER | CLIENT_ID => {}
            IP => {
                return Err(
                    "ip quotas (connection_creation_rate, KIP-612) are not enforced by Keel".into(),
                )
            }
            other => return Err(format!("Unhandled client quota entity type: {other}")),
        }
        if part.name.as_deref() == Some("") {
            return Err(format!("Empty {} not supported", part.entity_type));
        }
        if i > 0 && sorted[i - 1].entity_type == part.entity_type {
            return Err(format!("Duplicate {} in the entity", part.entity_type));
        }
    }
    Ok(sorted)
}

/// Checks one key and value for a user or client-id entity (Kafka's
/// `validateQuotaKeyValue`, and a limit must be positive: a zero or
/// negative rate would stop a client for good).
pub fn check_value(key: &str, value: f64) -> Result<(), String> {
    let Some(&(_, whole)) = KEYS.iter().find(|(k, _)| *k == key) else {
        return Err(format!("Invalid configuration key {key}"));
    };
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("Configuration {key} must be positive, not {value}"));
    }
    if whole && (value - value.round()).abs() > 1e-6 {
        return Err(format!("Configuration {key} must be a Long value"));
    }
    Ok(())
}

/// Checks a whole change: the entity, every value set, every key removed.
pub fn check(change: &AlterClientQuota) -> Result<Vec<QuotaEntityPart>, String> {
    let entity = check_entity(&change.entity)?;
    for (k, v) in &change.set {
        check_value(k, *v)?;
    }
    for k in &change.remove {
        if !KEYS.iter().any(|(known, _)| known == k) {
            return Err(format!("Invalid configuration key {k}"));
        }
        if change.set.contains_key(k) {
            return Err(format!("{k} is both set and removed"));
        }
    }
    Ok(entity)
}

/// Applies a change to the image's quotas (kept sorted by entity); an entity
/// left with no limits is removed.
pub(crate) fn apply(
    quotas: &mut Vec<ClientQuota>,
    change: AlterClientQuota,
) -> Result<Applied, MetaError> {
    let entity = check(&change).map_err(MetaError::Invalid)?;
    let at = quotas.binary_search_by(|q| q.entity.cmp(&entity));
    let i = match at {
        Ok(i) => i,
        Err(i) => {
            quotas.insert(
                i,
                ClientQuota {
                    entity,
                    values: BTreeMap::new(),
                },
            );
            i
        }
    };
    let q = &mut quotas[i];
    for k in &change.remove {
        q.values.remove(k);
    }
    q.values.extend(change.set);
    if q.values.is_empty() {
        quotas.remove(i);
    }
    Ok(Applied::QuotasChanged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(t: &str, name: Option<&str>) -> QuotaEntityPart {
        QuotaEntityPart {
            entity_type: t.into(),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn entities_and_values_are_checked_as_kafka_checks_them() {
        assert!(check_entity(&[]).is_err());
        assert!(check_entity(&[part("group", Some("g"))]).is_err());
        assert!(check_entity(&[part(USER, Some(""))]).is_err());
        assert!(check_entity(&[part(USER, Some("a")), part(USER, None)]).is_err());
        assert!(check_entity(&[part(IP, Some("127.0.0.1"))]).is_err());
        // Sorted by type whatever the order asked.
        let e = check_entity(&[part(USER, None), part(CLIENT_ID, Some("c"))]).unwrap();
        assert_eq!(e[0].entity_type, CLIENT_ID);
        assert!(check_value(PRODUCER_BYTE_RATE, 1024.0).is_ok());
        assert!(check_value(PRODUCER_BYTE_RATE, 10.5).is_err());
        assert!(check_value(PRODUCER_BYTE_RATE, 0.0).is_err());
        assert!(check_value(PRODUCER_BYTE_RATE, f64::NAN).is_err());
        assert!(check_value(REQUEST_PERCENTAGE, 12.5).is_ok());
        assert!(check_value("controller_mutation_rate", 10.0).is_err());
        assert!(check_value("nonsense", 10.0).is_err());
    }

    #[test]
    fn a_change_sets_and_removes_and_an_empty_entity_goes() {
        let mut qs = Vec::new();
        let change = |set: &[(&str, f64)], remove: &[&str]| AlterClientQuota {
            entity: vec![part(USER, None), part(CLIENT_ID, Some("c"))],
            set: set.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            remove: remove.iter().map(|k| k.to_string()).collect(),
        };
        apply(&mut qs, change(&[(PRODUCER_BYTE_RATE, 100.0)], &[])).unwrap();
        apply(&mut qs, change(&[(CONSUMER_BYTE_RATE, 200.0)], &[])).unwrap();
        assert_eq!(qs.len(), 1);
        assert_eq!(qs[0].values.len(), 2);
        assert_eq!(qs[0].entity[0].entity_type, CLIENT_ID);
        // A refused change changes nothing.
        assert!(apply(&mut qs, change(&[(PRODUCER_BYTE_RATE, -1.0)], &[])).is_err());
        assert_eq!(qs[0].values[PRODUCER_BYTE_RATE], 100.0);
        apply(
            &mut qs,
            change(&[], &[PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE]),
        )
        .unwrap();
        assert!(qs.is_empty());
    }
}
