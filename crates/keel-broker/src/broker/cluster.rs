//! The broker's side of the cluster metadata: the partitions this node holds
//! follow the metadata image applied from the quorum (`keel-meta`), as a
//! KRaft broker follows its metadata log (`BrokerMetadataPublisher`).
//!
//! The image says which topics exist, their ids, partition counts, configs,
//! replicas and leader epochs. `apply_metadata` makes the node's local logs
//! agree: it opens every topic of which this node holds a replica (with the
//! image's topic id), grows partition counts, installs configs and leader
//! epochs, and removes the local copy of a topic the image deleted (its id
//! is among the removed ones) and of partitions reassigned away from it. Topics that were only local before the node
//! joined the metadata are offered to it once (`local_topics_to_adopt`), so a
//! data directory from before keeps its topics. `meta.json` stays this
//! node's record of what it holds locally.

use std::collections::BTreeMap;

use keel_meta::Image;
use uuid::Uuid;

use super::{is_internal, Broker};
use crate::config::TopicConfigs;
use crate::{BrokerError, Result};

/// A local topic to offer to the cluster metadata.
#[derive(Debug, Clone)]
pub struct LocalTopic {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

impl Broker {
    /// Whether `topic`-`partition` exists: in the cluster's metadata when this
    /// node follows one, else among this node's own topics.
    pub fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        match &*self
            .inner
            .cluster_partitions
            .read()
            .expect("cluster partitions lock")
        {
            Some(all) => all.get(topic).is_some_and(|n| (0..*n).contains(&partition)),
            None => self
                .topic(topic)
                .and_then(|t| t.partition(partition))
                .is_some(),
        }
    }

    /// Makes the local logs agree with `image` for node `me`. Returns one line
    /// per topic it could not bring into line (the rest are done).
    pub fn apply_metadata(&self, image: &Image, me: i32) -> Vec<String> {
        *self
            .inner
            .cluster_partitions
            .write()
            .expect("cluster partitions lock") = Some(
            image
                .topics
                .iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                    )
                })
                .collect(),
        );
        let mut problems = Vec::new();
        for (name, t) in &image.topics {
            let Ok(id) = Uuid::from_slice(&t.id) else {
                problems.push(format!("{name}: bad topic id in the metadata"));
                continue;
            };
            if !t.partitions.iter().any(|p| p.replicas.contains(&me)) {
                // Every replica here was moved away (a reassignment): the local
                // copy goes, as a deleted topic's does.
                let held = self.topic(name).is_some_and(|l| l.id == id);
                if held && name != super::OFFSETS_TOPIC {
                    match self.delete_topic(name) {
                        Ok(_) => {
                            tracing::info!(topic = %name, "removed: no replica of it is here any more")
                        }
                        Err(e) => problems.push(format!("{name}: {e}")),
                    }
                    continue;
                }
                if !held {
                    continue;
                }
            }
            let count = i32::try_from(t.partitions.len()).unwrap_or(i32::MAX);
            match self.ensure_topic(name, id, count, &t.configs) {
                Ok(topic) => {
                    for (i, p) in t.partitions.iter().enumerate() {
                        let Some(local) = topic.partition(i as i32) else {
                            continue;
                        };
                        let done = if p.replicas.contains(&me) {
                            self.set_replication(&local, me, p)
                        } else {
                            self.retire_replica(&local, p)
                        };
                        if let Err(e) = done {
                            problems.push(format!("{name}-{i}: {e}"));
                        }
                    }
                }
                Err(e) => problems.push(format!("{name}: {e}")),
            }
        }
        for local in self.topics() {
            let removed = image
                .removed_topic_ids
                .iter()
                .any(|r| r.as_slice() == local.id.as_bytes());
            if removed && !image.topics.contains_key(&local.name) {
                match self.delete_topic(&local.name) {
                    Ok(_) => tracing::info!(topic = %local.name, "removed: the cluster deleted it"),
                    Err(e) => problems.push(format!("{}: {e}", local.name)),
                }
            }
        }
        problems
    }

    /// Local topics the cluster metadata does not know (by name), that it
    /// has not deleted: to be offered to it when this node joins.
    pub fn local_topics_to_adopt(&self, image: &Image) -> Vec<LocalTopic> {
        self.topics()
            .into_iter()
            .filter(|t| {
                (!is_internal(&t.name) || t.name == super::OFFSETS_TOPIC)
                    && !image.topics.contains_key(&t.name)
            })
            .filter(|t| {
                !image
                    .removed_topic_ids
                    .iter()
                    .any(|r| r.as_slice() == t.id.as_bytes())
            })
            .map(|t| LocalTopic {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partition_count(),
                configs: t.configs().overrides().clone(),
            })
            .collect()
    }

    /// The local topic `name` with this id, at least `partitions` partitions
    /// and exactly these config overrides; opened or created as needed.
    fn ensure_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<std::sync::Arc<super::Topic>> {
        let _guard = self.inner.meta_lock.lock().expect("meta lock");
        let mut changed = false;
        let topic = match self.topic(name) {
            Some(t) if t.id == id => t,
            Some(t) => {
                return Err(BrokerError::Storage(format!(
                "this node holds a different topic of that name (id {}, the cluster's is {id}); \
                     it is left alone and not served",
                t.id
            )))
            }
            None => {
                let c = TopicConfigs::new(configs.clone())?;
                let t = self.open_topic(name, id, partitions, c, true)?;
                self.inner
                    .topics
                    .write()
                    .expect("topics lock")
                    .insert(name.to_string(), t.clone());
                changed = true;
                tracing::info!(
                    topic = name,
                    partitions,
                    "created from the cluster metadata"
                );
                t
            }
        };
        if topic.partition_count() < partitions {
            self.add_partitions(&topic, partitions, true)?;
            changed = true;
        }
        if topic.configs().overrides() != configs {
            let c = TopicConfigs::new(configs.clone())?;
            let effective = *c.effective();
            *topic.configs.write().expect("configs lock") = c;
            for p in topic.partitions.read().expect("partitions lock").iter() {
                let mut s = p.lock();
                s.effective = effective;
                s.log.set_config(effective.log);
            }
            changed = true;
        }
        if changed {
            self.write_meta()?;
        }
        Ok(topic)
    }
}
