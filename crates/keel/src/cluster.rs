//! Wiring of the Kafka face to the cluster metadata: the proposer the Kafka
//! handlers use, the loop that keeps this node's logs in line with each new
//! metadata image, and the adoption of topics a data directory held before
//! the node joined the metadata.

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_broker::Broker;
use keel_etcd::cluster::Membership;
use keel_etcd::server::EtcdServer;
use keel_kafka::handlers::Proposer;
use keel_meta::{record::Kind, CreateTopic, Record, Replicas};
use tokio::sync::watch;

/// Metadata records proposed through this node's Raft member.
pub fn proposer(server: EtcdServer) -> Proposer {
    Arc::new(move |rec: Record| {
        let server = server.clone();
        Box::pin(async move {
            server
                .propose_metadata(&rec)
                .await
                .map_err(|s| s.message().to_string())
        })
    })
}

/// Offers the local topics the metadata does not know to it, each as a
/// topic whose every partition lives on this node alone (as it did).
pub async fn adopt_local_topics(broker: &Broker, membership: &Membership, server: &EtcdServer) {
    let image = membership.watch().borrow().clone();
    let me = broker.node_id();
    for t in broker.local_topics_to_adopt(&image) {
        let rec = Record::new(Kind::CreateTopic(CreateTopic {
            name: t.name.clone(),
            topic_id: t.id.as_bytes().to_vec(),
            partitions: (0..t.partitions)
                .map(|_| Replicas { replicas: vec![me] })
                .collect(),
            configs: t.configs.clone(),
        }));
        match server.propose_metadata(&rec).await {
            Ok(Ok(_)) => {
                tracing::info!(topic = %t.name, "adopted this node's topic into the cluster metadata")
            }
            Ok(Err(e)) => {
                tracing::warn!(topic = %t.name, "this node's topic stays local and is not served: {e}")
            }
            Err(e) => {
                tracing::warn!(topic = %t.name, "adopting this node's topic: {}", e.message())
            }
        }
    }
}

/// Keeps this node's logs in line with the metadata image, after each change.
pub async fn follow_metadata(
    broker: Broker,
    mut image: watch::Receiver<Arc<keel_meta::Image>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut reported = BTreeSet::new();
    loop {
        let current = image.borrow_and_update().clone();
        let b = broker.clone();
        let me = broker.node_id();
        let problems = tokio::task::spawn_blocking(move || b.apply_metadata(&current, me))
            .await
            .unwrap_or_default();
        for p in problems {
            if reported.insert(p.clone()) {
                tracing::error!("cluster metadata: {p}");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = image.changed() => if changed.is_err() { return },
        }
    }
}
