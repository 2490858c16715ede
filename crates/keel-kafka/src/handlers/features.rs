//! Feature flags and client telemetry: ApiVersions v3's supported and
//! finalized features (KIP-584, what `Admin.describeFeatures` reads),
//! UpdateFeatures (through the cluster metadata, `keel_meta::features`), and
//! GetTelemetrySubscriptions (KIP-714) answered with an empty subscription,
//! so clients that ask push nothing and ask again only after the push
//! interval.

use std::collections::BTreeMap;

use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{
    ApiVersionsResponse, GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse,
    UpdateFeaturesRequest, UpdateFeaturesResponse,
};
use kafka_protocol::ResponseError;
use keel_meta::features::{self, SetFeatures};
use keel_meta::{record::Kind, Record};

use super::{api_versions_response, s, Handler};
use crate::error::code;

/// How long a client waits before asking for its telemetry subscription
/// again (Kafka's default client metrics `interval.ms`, 5 minutes).
const TELEMETRY_PUSH_INTERVAL_MS: i32 = 300_000;
/// UpdateFeatures' upgrade types (v1+).
const UPGRADE: i8 = 1;
const SAFE_DOWNGRADE: i8 = 2;
const UNSAFE_DOWNGRADE: i8 = 3;

impl Handler {
    /// The finalized feature levels and their epoch: the image's, or a new
    /// cluster's without one.
    fn finalized(&self) -> (BTreeMap<String, i32>, i64) {
        self.image().map_or((BTreeMap::new(), 0), |i| {
            (i.features.clone(), i.features_epoch)
        })
    }

    /// Whether KIP-848's consumer group protocol is on (`group.version` 1).
    pub(super) fn consumer_groups_enabled(&self) -> bool {
        features::level(&self.finalized().0, features::GROUP_VERSION) >= 1
    }

    pub(super) fn api_versions(&self, v: i16) -> ApiVersionsResponse {
        let mut r = api_versions_response(0);
        if v >= 3 {
            let (finalized, epoch) = self.finalized();
            // Below v4 a supported range may not start at 0 (KAFKA-17011:
            // clients before Kafka 3.9 refuse the whole answer): as Kafka
            // does, a range from 0 is sent from 1, and one that is only 0
            // is left out.
            r.supported_features = features::SUPPORTED
                .iter()
                .filter(|(_, _, hi, _)| v >= 4 || *hi >= 1)
                .map(|(name, lo, hi, _)| {
                    SupportedFeatureKey::default()
                        .with_name(s(*name))
                        .with_min_version(if v >= 4 { *lo } else { (*lo).max(1) })
                        .with_max_version(*hi)
                })
                .collect();
            // As Kafka lists them: each feature at a level of 1 or more,
            // with its level as both ends (KIP-778).
            r.finalized_features = features::SUPPORTED
                .iter()
                .filter_map(|(name, ..)| {
                    let level = features::level(&finalized, name);
                    (level >= 1).then(|| {
                        FinalizedFeatureKey::default()
                            .with_name(s(*name))
                            .with_min_version_level(level)
                            .with_max_version_level(level)
                    })
                })
                .collect();
            r.finalized_features_epoch = epoch;
        }
        r
    }

    /// UpdateFeatures, all or nothing as KRaft's `FeatureControlManager`:
    /// every update is checked against the levels Keel supports and the
    /// finalized ones, a lower level only with a downgrade type (v1+) or
    /// `allow_downgrade` (v0); any refusal refuses the request.
    pub(super) fn update_features(
        &self,
        r: &UpdateFeaturesRequest,
        v: i16,
    ) -> UpdateFeaturesResponse {
        let (finalized, _) = self.finalized();
        let mut levels = BTreeMap::new();
        let mut refusal: Option<(i16, String)> = None;
        for u in &r.feature_updates {
            let name = u.feature.to_string();
            let downgrade = if v == 0 {
                Ok(u.allow_downgrade)
            } else {
                match u.upgrade_type {
                    UPGRADE => Ok(false),
                    SAFE_DOWNGRADE | UNSAFE_DOWNGRADE => Ok(true),
                    other => Err(format!("Unknown upgrade type {other} for {name}")),
                }
            };
            let checked = downgrade
                .map_err(|m| (ResponseError::InvalidRequest.code(), m))
                .and_then(|down| {
                    features::check(
                        features::level(&finalized, &name),
                        &name,
                        u.max_version_level,
                        down,
                    )
                    .map_err(|m| (ResponseError::InvalidUpdateVersion.code(), m))
                });
            if levels
                .insert(name.clone(), i32::from(u.max_version_level))
                .is_some()
            {
                refusal.get_or_insert((
                    ResponseError::InvalidRequest.code(),
                    format!("The feature {name} is updated twice"),
                ));
            }
            if let Err(e) = checked {
                refusal.get_or_insert(e);
            }
        }
        if refusal.is_none() && !r.validate_only && !levels.is_empty() {
            refusal = match self.cluster {
                None => Some((
                    ResponseError::InvalidRequest.code(),
                    "feature levels are kept in the cluster metadata, which this node has not"
                        .into(),
                )),
                Some(_) => match self.propose_raw(Record::new(Kind::SetFeatures(SetFeatures {
                    levels: levels.clone(),
                }))) {
                    Ok(Ok(_)) => None,
                    Ok(Err(e)) => Some((ResponseError::InvalidUpdateVersion.code(), e.to_string())),
                    Err(e) => Some((code(&e), e.to_string())),
                },
            };
        }
        let mut resp = UpdateFeaturesResponse::default();
        let (err, msg) = refusal.map_or((0, None), |(c, m)| (c, Some(s(m))));
        resp.error_code = err;
        resp.error_message = msg.clone();
        // v2 answers with the top-level error alone (KIP-1022's change).
        if v < 2 {
            resp.results = levels
                .keys()
                .map(|name| {
                    UpdatableFeatureResult::default()
                        .with_feature(s(name.clone()))
                        .with_error_code(err)
                        .with_error_message(msg.clone())
                })
                .collect();
        }
        resp
    }

    pub(super) fn get_telemetry_subscriptions(
        &self,
        r: &GetTelemetrySubscriptionsRequest,
    ) -> GetTelemetrySubscriptionsResponse {
        // A client without an instance id yet is given one (KIP-714).
        let id = if r.client_instance_id.is_nil() {
            uuid::Uuid::new_v4()
        } else {
            r.client_instance_id
        };
        GetTelemetrySubscriptionsResponse::default()
            .with_client_instance_id(id)
            .with_subscription_id(0)
            .with_push_interval_ms(TELEMETRY_PUSH_INTERVAL_MS)
            .with_telemetry_max_bytes(1 << 20)
            .with_delta_temporality(true)
            .with_requested_metrics(Vec::new())
    }
}
