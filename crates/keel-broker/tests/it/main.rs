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
    assert!(matches!(
        b.produce("t", 0, &bad, 1),
        Err(BrokerError::CorruptMessage(_))
    ));
    let both = [good.clone(), good.clone()].concat();
    assert!(
        matches!(
            b.produce("t", 0, &both, 1),
            Err(BrokerError::InvalidRecord(_))
        ),
        "Produce v3+ carries exactly one batch per partition"
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

fn idempotent(values: &[&str], producer_id: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut b = one_batch(values);
    batch::set_producer(&mut b, producer_id, epoch, seq);
    b
}

async fn produce_ok(b: &Broker, topic: &str, records: &[u8]) -> i64 {
    let p = b.produce(topic, 0, records, -1).unwrap();
    p.durable.unwrap().await.unwrap().unwrap();
    p.base_offset
}

/// A producer's retries are answered with the original offset and written once,
/// also after a restart, clean (snapshot) or not (replay of the log).
#[tokio::test]
async fn idempotent_retries_are_deduplicated_across_restarts() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path());
        b.create_topic("idem", 1, 1, BTreeMap::new(), false)
            .unwrap();
        let (pid, epoch) = b.init_producer_id().unwrap();
        let (other, _) = b.init_producer_id().unwrap();
        assert_ne!(pid, other, "every producer gets its own id");
        assert_eq!(
            produce_ok(&b, "idem", &idempotent(&["a", "b", "c"], pid, epoch, 0)).await,
            0
        );
        assert_eq!(
            produce_ok(&b, "idem", &idempotent(&["d"], pid, epoch, 3)).await,
            3
        );
        assert_eq!(
            produce_ok(&b, "idem", &idempotent(&["d"], pid, epoch, 3)).await,
            3,
            "a retry is a duplicate"
        );
        if clean {
            b.shutdown().unwrap();
        } // else: dropped without shutdown, as a crash leaves it
        let b = open(dir.path());
        assert_eq!(b.list_offset("idem", 0, -1).unwrap(), Some((4, -1)));
        assert_eq!(
            produce_ok(&b, "idem", &idempotent(&["d"], pid, epoch, 3)).await,
            3,
            "still a duplicate after restart (clean: {clean})"
        );
        assert_eq!(
            produce_ok(&b, "idem", &idempotent(&["a", "b", "c"], pid, epoch, 0)).await,
            0
        );
        assert_eq!(
            b.list_offset("idem", 0, -1).unwrap(),
            Some((4, -1)),
            "nothing written twice"
        );
        assert!(matches!(
            b.produce("idem", 0, &idempotent(&["x"], pid, epoch, 9), -1),
            Err(BrokerError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            b.produce("idem", 0, &idempotent(&["x"], pid, epoch - 1, 4), -1),
            Err(BrokerError::InvalidProducerEpoch(_))
        ));
        assert!(matches!(
            b.produce("idem", 0, &idempotent(&["x"], 999_999, 0, 5), -1),
            Err(BrokerError::UnknownProducerId(999_999))
        ));
        assert_eq!(
            produce_ok(&b, "idem", &idempotent(&["e"], pid, epoch, 4)).await,
            4
        );
        let (after, _) = b.init_producer_id().unwrap();
        assert!(after > other, "producer ids are not reused after a restart");
        b.shutdown().unwrap();
    }
}

#[tokio::test]
async fn compacted_topics_need_keys_and_keep_the_latest_value_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let configs = cfg(&[("cleanup.policy", "compact"), ("segment.bytes", "1024")]);
    b.create_topic("c", 1, 1, configs, false).unwrap();
    assert!(matches!(
        b.produce("c", 0, &one_batch(&["keyless"]), -1),
        Err(BrokerError::InvalidRecords { indexes, .. }) if indexes == [0]
    ));
    for i in 0..60 {
        let (k, v) = (format!("k{}", i % 4), format!("v{i}"));
        let recs = [(Some(k.as_bytes()), Some(v.as_bytes()))];
        let p = b.produce("c", 0, &batch::build(0, &recs), -1).unwrap();
        p.durable.unwrap().await.unwrap().unwrap();
    }
    let read = |b: &Broker| {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let f = b.fetch("c", 0, offset, 1 << 20).unwrap();
            if f.bytes.is_empty() {
                return out;
            }
            for r in batch::split(&f.bytes).unwrap() {
                let h = batch::for_each_record(&f.bytes[r], |h, r| {
                    let o = h.base_offset + i64::from(r.offset_delta);
                    out.push((o, String::from_utf8(r.value.unwrap().to_vec()).unwrap()));
                    false
                })
                .unwrap();
                offset = h.last_offset() + 1;
            }
        }
    };
    let before = read(&b);
    assert_eq!(before.len(), 60);
    assert_eq!(b.clean(), 1, "the compacted partition was due");
    let after = read(&b);
    assert!(after.len() < 60, "closed segments were compacted");
    // Keys cycle every 4 offsets, so the latest of each key in the compacted part
    // are its last 4 records: what remains is a dense suffix, at unchanged offsets.
    let first = after[0].0;
    assert!(first > 0);
    let expected: Vec<(i64, String)> = (first..60).map(|o| (o, format!("v{o}"))).collect();
    assert_eq!(after, expected);
    assert_eq!(after.last().unwrap().0, 59);
    b.shutdown().unwrap();
    let b = open(dir.path());
    assert_eq!(read(&b), after, "compaction survives a restart");
    b.shutdown().unwrap();
}

/// A follower's view of one partition, `t-0`, replicated on nodes 1, 2, 3.
fn image_following(leader: i32, epoch: i32) -> keel_meta::Image {
    let mut image = keel_meta::Image::default();
    image.topics.insert(
        "t".into(),
        keel_meta::Topic {
            id: uuid::Uuid::from_u128(7).as_bytes().to_vec(),
            partitions: vec![keel_meta::Partition {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader,
                leader_epoch: epoch,
                ..Default::default()
            }],
            configs: BTreeMap::new(),
        },
    );
    image
}

fn copied(base: i64, epoch: i32, values: &[&str]) -> Vec<u8> {
    let mut b = one_batch(values);
    batch::set_base_offset(&mut b, base);
    batch::set_partition_leader_epoch(&mut b, epoch);
    b
}

fn answer(records: &[u8], leader: i32, epoch: i32, at: i64) -> keel_broker::FollowerAppend<'_> {
    keel_broker::FollowerAppend {
        topic: "t".into(),
        partition: 0,
        records,
        high_watermark: 0,
        leader,
        leader_epoch: epoch,
        fetch_offset: at,
        log_start_offset: 0,
    }
}

/// A restarted broker holds its logs before it has a role in them: it leads
/// a partition only once the metadata has installed the role, and only at
/// that role's epoch (the Kafka handler asks this before it appends; a
/// replayed image from before the restart can name it leader at an epoch
/// whose records its followers hold differently: keel-sim, seed
/// 778011130109).
#[test]
fn a_restarted_broker_leads_only_at_the_epoch_the_metadata_gave_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    assert!(!b.leads_at("t", 0, 3), "no such partition yet");
    assert!(b.apply_metadata(&image_following(2, 3), 2).is_empty());
    assert!(b.leads_at("t", 0, 3));
    assert!(!b.leads_at("t", 0, 2) && !b.leads_at("t", 0, 4));
    b.shutdown().unwrap();

    let b = open(dir.path());
    assert!(b.topic("t").is_some(), "the log is back");
    assert!(
        !b.leads_at("t", 0, 3),
        "no role before the metadata gives one"
    );
    assert!(b.apply_metadata(&image_following(1, 4), 2).is_empty());
    assert!(!b.leads_at("t", 0, 4), "a follower at the new epoch");
    assert!(b.apply_metadata(&image_following(2, 5), 2).is_empty());
    assert!(b.leads_at("t", 0, 5));
    b.shutdown().unwrap();
}

/// A fetch answered by a deposed leader can arrive after the follower has
/// moved to the new one (its fetcher for the old leader still running for
/// other partitions). Taken then, it would leave the old leader's records
/// in the follower's log at offsets where the new leader holds others, and
/// the new leader would count them as copies: seen in the interop suite as
/// replicas in the ISR that differed at offsets 3744..3752.
#[test]
fn a_follower_takes_only_answers_from_the_leader_and_epoch_it_follows_now() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    assert!(b.apply_metadata(&image_following(1, 3), 2).is_empty());
    let first = copied(0, 3, &["a", "b"]);
    let r = b.append_as_follower_all(vec![answer(&first, 1, 3, 0)]);
    assert_eq!(r[0].as_ref().unwrap(), &2);

    // Node 3 leads now, at epoch 4; an answer node 1 gave at epoch 3 arrives.
    assert!(b.apply_metadata(&image_following(3, 4), 2).is_empty());
    let stale = copied(2, 3, &["from the deposed leader"]);
    let r = b.append_as_follower_all(vec![answer(&stale, 1, 3, 2)]);
    assert!(
        matches!(r[0], Err(BrokerError::FencedLeaderEpoch(_))),
        "{:?}",
        r[0]
    );
    assert_eq!(b.replica_position("t", 0).unwrap(), (2, Some(3)));
    // Truncation is for the epoch this replica follows, and no other.
    assert!(b.truncate_replica("t", 0, (1, 3), 3, 2).is_err());
    assert!(b.truncate_replica("t", 0, (3, 5), 3, 2).is_err());
    let (lost, done) = b.truncate_replica("t", 0, (3, 4), 3, 1).unwrap();
    assert_eq!((lost, done), (None, true));
    assert_eq!(
        b.replica_position("t", 0).unwrap(),
        (0, None),
        "the whole batch 0..2 goes"
    );

    // An answer to a fetch made before that truncation (at offset 2) is dropped:
    // taken, it would leave a gap at 0..2.
    let late = copied(2, 4, &["c"]);
    let r = b.append_as_follower_all(vec![answer(&late, 3, 4, 2)]);
    assert_eq!(r[0].as_ref().unwrap(), &0);
    assert_eq!(b.replica_position("t", 0).unwrap(), (0, None));
    // The answer to the fetch it makes now is taken.
    let now = copied(0, 4, &["a", "c"]);
    let r = b.append_as_follower_all(vec![answer(&now, 3, 4, 0)]);
    assert_eq!(r[0].as_ref().unwrap(), &2);
    assert_eq!(b.replica_position("t", 0).unwrap(), (2, Some(4)));
}

/// Node 2 following node 1 at epoch 3, holding 0..2, committed (the
/// leader's high watermark 2).
fn follower_with_committed(dir: &std::path::Path) -> Broker {
    let b = open(dir);
    assert!(b.apply_metadata(&image_following(1, 3), 2).is_empty());
    let committed = copied(0, 3, &["a", "b"]);
    let mut first = answer(&committed, 1, 3, 0);
    first.high_watermark = 2;
    assert_eq!(
        *b.append_as_follower_all(vec![first])[0].as_ref().unwrap(),
        2
    );
    b
}

fn follower_hw(b: &Broker) -> i64 {
    b.fetch_follower("t", 0, 0, 1 << 20).unwrap().high_watermark
}

/// A follower restarts with a tail its leader never committed. Its high
/// watermark starts from the checkpoint, not its log end, so truncating
/// that tail is no loss. (Starting from the log end, it reported the tail
/// as committed records lost to an unclean election: keel-sim's
/// high-watermark-from-log-end plant.)
#[test]
fn a_restarted_follower_starts_from_its_checkpointed_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = follower_with_committed(dir.path());
        let tail = copied(2, 3, &["c", "d"]);
        let mut second = answer(&tail, 1, 3, 2);
        second.high_watermark = 2;
        assert_eq!(
            *b.append_as_follower_all(vec![second])[0].as_ref().unwrap(),
            4
        );
        assert_eq!(follower_hw(&b), 2);
        b.shutdown().unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("replication-offset-checkpoint")).unwrap();
    assert_eq!(text, "0\n1\nt 0 2\n", "Kafka's format");
    let b = open(dir.path());
    assert!(b.apply_metadata(&image_following(3, 4), 2).is_empty());
    assert_eq!(follower_hw(&b), 2, "the checkpoint, not the log end 4");
    // The new leader had epoch 3 up to offset 2: the tail goes, and nothing
    // committed went with it.
    let (lost, done) = b.truncate_replica("t", 0, (3, 4), 3, 2).unwrap();
    assert_eq!((lost, done), (None, true));
    assert_eq!(b.replica_position("t", 0).unwrap(), (2, Some(3)));
}

#[test]
fn a_damaged_checkpoint_is_ignored_and_the_high_watermark_starts_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = follower_with_committed(dir.path());
        b.shutdown().unwrap();
    }
    std::fs::write(
        dir.path().join("replication-offset-checkpoint"),
        "0\n3\nt 0 x\n",
    )
    .unwrap();
    let b = open(dir.path());
    assert!(b.apply_metadata(&image_following(1, 3), 2).is_empty());
    assert_eq!(follower_hw(&b), 0);
}
