//! DescribeClientQuotas and AlterClientQuotas (KIP-546): client quotas live
//! in the cluster metadata (`keel_meta::quotas`), so any broker answers and
//! changes them, and every broker enforces them (`crate::quotas`).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    alter_client_quotas_response, describe_client_quotas_response, AlterClientQuotasRequest,
    AlterClientQuotasResponse, DescribeClientQuotasRequest, DescribeClientQuotasResponse,
};
use kafka_protocol::ResponseError;
use keel_meta::quotas::{self, AlterClientQuota, QuotaEntityPart};
use keel_meta::{record::Kind, Record};

use super::{s, Handler};
use crate::error::code;

/// DescribeClientQuotas' match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

impl Handler {
    pub(super) fn describe_client_quotas(
        &self,
        r: &DescribeClientQuotasRequest,
    ) -> DescribeClientQuotasResponse {
        let mut resp = DescribeClientQuotasResponse::default();
        // Kafka's verifyDescribeQuotaRequest: known types, each once, ip alone.
        let mut filter: BTreeMap<&str, Option<Option<&str>>> = BTreeMap::new();
        for c in &r.components {
            let t = c.entity_type.as_str();
            let why = match t {
                quotas::USER | quotas::CLIENT_ID | quotas::IP => None,
                "" => Some("Unexpected empty filter component entity type".to_string()),
                other => Some(format!("Custom entity type {other} not supported")),
            };
            let m = match (c.match_type, &c._match) {
                (MATCH_EXACT, Some(name)) => Some(Some(name.as_str())),
                (MATCH_EXACT, None) | (MATCH_DEFAULT, _) => Some(None),
                (MATCH_ANY, _) => None,
                (other, _) => {
                    return refused(resp, format!("Unexpected match type {other}"));
                }
            };
            if let Some(why) = why {
                return refused(resp, why);
            }
            if filter.insert(t, m).is_some() {
                return refused(resp, format!("Duplicate {t} filter component entity type"));
            }
        }
        if filter.contains_key(quotas::IP) && filter.len() > 1 {
            return refused(
                resp,
                "Invalid entity filter component combination, IP filter component should not be used with user or clientId filter component.".into(),
            );
        }
        let image = self.image();
        let all = image.as_ref().map_or(&[][..], |i| &i.client_quotas[..]);
        let entries = all
            .iter()
            .filter(|q| {
                let has = |t: &str| q.entity.iter().find(|p| p.entity_type == t);
                filter.iter().all(|(t, m)| match (has(t), m) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(p), Some(name)) => p.name.as_deref() == *name,
                }) && (!r.strict
                    || q.entity
                        .iter()
                        .all(|p| filter.contains_key(p.entity_type.as_str())))
            })
            .map(|q| {
                describe_client_quotas_response::EntryData::default()
                    .with_entity(
                        q.entity
                            .iter()
                            .map(|p| {
                                describe_client_quotas_response::EntityData::default()
                                    .with_entity_type(s(p.entity_type.clone()))
                                    .with_entity_name(p.name.clone().map(s))
                            })
                            .collect(),
                    )
                    .with_values(
                        q.values
                            .iter()
                            .map(|(k, v)| {
                                describe_client_quotas_response::ValueData::default()
                                    .with_key(s(k.clone()))
                                    .with_value(*v)
                            })
                            .collect(),
                    )
            })
            .collect();
        resp.entries = Some(entries);
        resp
    }

    pub(super) fn alter_client_quotas(
        &self,
        r: &AlterClientQuotasRequest,
    ) -> AlterClientQuotasResponse {
        let mut resp = AlterClientQuotasResponse::default();
        for e in &r.entries {
            let change = AlterClientQuota {
                entity: e
                    .entity
                    .iter()
                    .map(|p| QuotaEntityPart {
                        entity_type: p.entity_type.to_string(),
                        name: p.entity_name.as_ref().map(|n| n.to_string()),
                    })
                    .collect(),
                set: e
                    .ops
                    .iter()
                    .filter(|o| !o.remove)
                    .map(|o| (o.key.to_string(), o.value))
                    .collect(),
                remove: e
                    .ops
                    .iter()
                    .filter(|o| o.remove)
                    .map(|o| o.key.to_string())
                    .collect(),
            };
            let keys: BTreeSet<&str> = e.ops.iter().map(|o| o.key.as_str()).collect();
            let outcome = if keys.len() < e.ops.len() {
                Err((
                    ResponseError::InvalidRequest.code(),
                    "a quota key is given twice".to_string(),
                ))
            } else {
                self.alter_one_quota(change, r.validate_only)
            };
            let (error_code, error_message) = match outcome {
                Ok(()) => (0, None),
                Err((c, m)) => (c, Some(s(m))),
            };
            resp.entries.push(
                alter_client_quotas_response::EntryData::default()
                    .with_error_code(error_code)
                    .with_error_message(error_message)
                    .with_entity(
                        e.entity
                            .iter()
                            .map(|p| {
                                alter_client_quotas_response::EntityData::default()
                                    .with_entity_type(p.entity_type.clone())
                                    .with_entity_name(p.entity_name.clone())
                            })
                            .collect(),
                    ),
            );
        }
        resp
    }

    /// Checks one entity's change and, unless only validating, proposes it.
    fn alter_one_quota(
        &self,
        change: AlterClientQuota,
        validate_only: bool,
    ) -> Result<(), (i16, String)> {
        let invalid = |m: String| (ResponseError::InvalidRequest.code(), m);
        quotas::check(&change).map_err(invalid)?;
        if self.cluster.is_none() {
            return Err(invalid(
                "client quotas are kept in the cluster metadata, which this node has not".into(),
            ));
        }
        if validate_only {
            return Ok(());
        }
        match self.propose_raw(Record::new(Kind::AlterClientQuota(change))) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(invalid(e.to_string())),
            Err(e) => Err((code(&e), e.to_string())),
        }
    }
}

fn refused(mut resp: DescribeClientQuotasResponse, why: String) -> DescribeClientQuotasResponse {
    resp.error_code = ResponseError::InvalidRequest.code();
    resp.error_message = Some(s(why));
    resp.entries = None;
    resp
}
