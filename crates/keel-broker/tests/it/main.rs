//! The broker as the Kafka front sees it: produce, durability, fetch, admin, restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_broker::{Broker, BrokerConfig, BrokerError, SystemClock};
use keel_storage::batch;

fn open(dir: &std::path::Path) -> Broker {
    Broker::open(BrokerConfig::new(dir), Arc::new(SystemClock)).unwrap()
}

fn one_batch(values: &[&str]) -> Vec<u8> {
    let recs: Vec<batch::KeyValue> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    batch::build(1_700_000_000_000, &recs)
}

fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn acks_all_resolves_after_fsync_and_only_then_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("t", 2, 1, BTreeMap::new(), false).unwrap();
    let p = b.produce("t", 1, &one_batch(&["a", "b"]), -1).unwrap();
    assert_eq!(p.base_offset, 0);
    p.durable
        .expect("acks=all waits for fsync")
        .await
        .unwrap()
        .unwrap();
    let f = b.fetch("t", 1, 0, 1 << 20).unwrap();
    assert_eq!(f.high_watermark, 2);
    assert_eq!(batch::check(&f.bytes).unwrap().records_count, 2);
    let p = b.produce("t", 1, &one_batch(&["c"]), 1).unwrap();
    assert_eq!(p.base_offset, 2);
    p.durable.unwrap().await.unwrap().unwrap();
    assert_eq!(b.list_offset("t", 1, -1).unwrap(), Some((3, -1)));
    assert_eq!(b.list_offset("t", 1, -2).unwrap(), Some((0, -1)));
    b.shutdown().unwrap();
}

#[tokio::test]
async fn relaxed_flush_acknowledges_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("fast", 1, -1, cfg(&[("flush.messages", "1000000")]), false)
        .unwrap();
    let p = b.produce("fast", 0, &one_batch(&["x"]), -1).unwrap();
    assert!(p.durable.is_none());
    assert_eq!(
        b.fetch("fast", 0, 0, 1024).unwrap().high_watermark,
        1,
        "visible at once"
    );
    b.shutdown().unwrap();
}

#[test]
fn bad_produces_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic(
        "t",
        1,
        1,
        cfg(&[("min.insync.replicas", "2"), ("max.message.bytes", "200")]),
        false,
    )
    .unwrap();
    assert!(matches!(
        b.produce("t", 0, &one_batch(&["a"]), -1),
        Err(BrokerError::NotEnoughReplicas { .. })
    ));
    assert!(matches!(
        b.produce("t", 0, &one_batch(&["a"]), 2),
        Err(BrokerError::InvalidRequiredAcks(2))
    ));
    assert!(matches!(
        b.produce("t", 0, &one_batch(&[&"z".repeat(500)]), 1),
        Err(BrokerError::MessageTooLarge { .. })
    ));
    let mut bad = one_batch(&["a"]);
    let n = bad.len();
    bad[n - 1] ^= 1;
    let good = one_batch(&["ok"]);
    let both = [good.clone(), bad].concat();
    assert!(
        matches!(
            b.produce("t", 0, &both, 1),
            Err(BrokerError::CorruptMessage(_))
        ),
        "one bad batch fails the whole partition"
    );
    assert!(matches!(
        b.produce("t", 0, &good[..good.len() - 1], 1),
        Err(BrokerError::CorruptMessage(_))
    ));
    assert!(matches!(
        b.produce("t", 7, &good, 1),
        Err(BrokerError::UnknownTopicOrPartition(_))
    ));
    assert!(matches!(
        b.produce("nope", 0, &good, 1),
        Err(BrokerError::UnknownTopicOrPartition(_))
    ));
    assert_eq!(
        b.list_offset("t", 0, -1).unwrap(),
        Some((0, -1)),
        "nothing was written"
    );
}

#[test]
fn admin_limits_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = BrokerConfig::new(dir.path());
    c.partitions_max = 10;
    let b = Broker::open(c, Arc::new(SystemClock)).unwrap();
    assert!(matches!(
        b.create_topic("bad/name", 1, 1, BTreeMap::new(), false),
        Err(BrokerError::InvalidTopic(_))
    ));
    assert!(matches!(
        b.create_topic("t", 0, 1, BTreeMap::new(), false),
        Err(BrokerError::InvalidPartitions(_))
    ));
    assert!(matches!(
        b.create_topic("t", 11, 1, BTreeMap::new(), false),
        Err(BrokerError::InvalidPartitions(_))
    ));
    assert!(matches!(
        b.create_topic("t", 1, 3, BTreeMap::new(), false),
        Err(BrokerError::InvalidReplicationFactor(_))
    ));
    assert!(matches!(
        b.create_topic("t", 1, 1, cfg(&[("retention.ms", "-5")]), false),
        Err(BrokerError::InvalidConfig(_))
    ));
    b.create_topic("t", 1, 1, BTreeMap::new(), true).unwrap();
    assert!(b.topic("t").is_none(), "validate_only creates nothing");
    b.create_topic("t", 4, 1, BTreeMap::new(), false).unwrap();
    assert!(matches!(
        b.create_topic("t", 1, 1, BTreeMap::new(), false),
        Err(BrokerError::TopicAlreadyExists(_))
    ));
    assert!(matches!(
        b.create_partitions("t", 3, false),
        Err(BrokerError::InvalidPartitions(_))
    ));
    assert!(matches!(
        b.create_partitions("t", 20, false),
        Err(BrokerError::InvalidPartitions(_))
    ));
    b.create_partitions("t", 6, false).unwrap();
    assert_eq!(b.topic("t").unwrap().partition_count(), 6);
}

#[tokio::test]
async fn topics_configs_and_data_survive_restart_and_delete_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.create_topic("keep", 3, 1, cfg(&[("retention.ms", "1000")]), false)
        .unwrap();
    b.create_topic("drop", 1, 1, BTreeMap::new(), false)
        .unwrap();
    let p = b.produce("keep", 2, &one_batch(&["v"]), -1).unwrap();
    p.durable.unwrap().await.unwrap().unwrap();
    b.produce("drop", 0, &one_batch(&["gone"]), 0).unwrap();
    b.set_topic_configs("keep", cfg(&[("retention.ms", "2000")]), false)
        .unwrap();
    let id = b.topic("drop").unwrap().id;
    assert_eq!(b.delete_topic("drop").unwrap(), id);
    let cluster = b.cluster_id().to_string();
    b.shutdown().unwrap();

    let b = open(dir.path());
    assert_eq!(b.cluster_id(), cluster);
    let t = b.topic("keep").unwrap();
    assert_eq!(t.partition_count(), 3);
    assert_eq!(
        t.configs()
            .overrides()
            .get("retention.ms")
            .map(String::as_str),
        Some("2000")
    );
    assert_eq!(b.fetch("keep", 2, 0, 1024).unwrap().high_watermark, 1);
    assert!(b.topic("drop").is_none());
    // A new topic of the same name starts empty.
    b.create_topic("drop", 1, 1, BTreeMap::new(), false)
        .unwrap();
    assert_eq!(b.list_offset("drop", 0, -1).unwrap(), Some((0, -1)));
    b.shutdown().unwrap();
}
