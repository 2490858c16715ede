use super::*;
use proptest::prelude::*;

fn reg(id: i32, inc: u64, rack: &str) -> Record {
    Record::new(record::Kind::RegisterNode(RegisterNode {
        node_id: id,
        incarnation: inc,
        kafka_host: "127.0.0.1".into(),
        kafka_port: 9091 + id,
        rack: rack.into(),
        cluster_id: format!("c{id}"),
        ..Default::default()
    }))
}

fn fence(id: i32, epoch: u64) -> Record {
    Record::new(record::Kind::FenceNode(NodeEpoch {
        node_id: id,
        epoch,
        shutdown: false,
    }))
}

fn unfence(id: i32, epoch: u64) -> Record {
    Record::new(record::Kind::UnfenceNode(NodeEpoch {
        node_id: id,
        epoch,
        shutdown: false,
    }))
}

fn create(name: &str, parts: &[&[i32]]) -> Record {
    Record::new(record::Kind::CreateTopic(CreateTopic {
        name: name.into(),
        topic_id: vec![7; 16],
        partitions: parts
            .iter()
            .map(|r| Replicas {
                replicas: r.to_vec(),
            })
            .collect(),
        configs: BTreeMap::new(),
    }))
}

fn three() -> Image {
    let mut img = Image::default();
    for id in 1..=3 {
        img.apply(id as u64, reg(id, 100 + id as u64, "")).unwrap();
    }
    img
}

#[test]
fn registration_epoch_is_the_raft_index_and_a_retry_keeps_it() {
    let mut img = Image::default();
    assert_eq!(
        img.apply(5, reg(1, 9, "a")),
        Ok(Applied::Registered {
            node_id: 1,
            epoch: 5
        })
    );
    // The same incarnation proposed again (a retry) keeps its epoch.
    assert_eq!(
        img.apply(8, reg(1, 9, "a")),
        Ok(Applied::Registered {
            node_id: 1,
            epoch: 5
        })
    );
    // A restart is a new epoch.
    assert_eq!(
        img.apply(12, reg(1, 10, "a")),
        Ok(Applied::Registered {
            node_id: 1,
            epoch: 12
        })
    );
    assert_eq!(img.nodes[&1].epoch, 12);
    assert_eq!(img.applied, 12);
    img.apply(13, reg(2, 1, "a")).unwrap();
    assert_eq!(
        img.cluster_id, "c1",
        "the first registration names the cluster"
    );
}

#[test]
fn fencing_the_leader_moves_leadership_within_the_isr() {
    let mut img = three();
    img.apply(10, create("t", &[&[1, 2, 3]])).unwrap();
    let p = img.partition("t", 0).unwrap().clone();
    assert_eq!(
        (p.leader, p.leader_epoch, p.isr.clone()),
        (1, 0, vec![1, 2, 3])
    );
    img.apply(11, fence(1, 1)).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.leader, 2);
    assert_eq!(p.leader_epoch, 1);
    assert_eq!(p.isr, vec![2, 3]);
    assert_eq!(p.partition_epoch, 1);
    // A stale fence (an old epoch) changes nothing.
    let before = img.clone();
    assert!(matches!(
        img.apply(12, fence(2, 99)),
        Err(MetaError::StaleNodeEpoch(2, 2, 99))
    ));
    assert_eq!(img.topics, before.topics);
    assert_eq!(img.nodes, before.nodes);
}

#[test]
fn the_last_isr_member_stays_and_the_partition_goes_offline_until_it_returns() {
    let mut img = three();
    img.apply(10, create("t", &[&[1, 2]])).unwrap();
    img.apply(11, fence(2, 2)).unwrap();
    img.apply(12, fence(1, 1)).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.leader, NO_LEADER);
    assert_eq!(p.isr, vec![1], "KIP-841: the ISR is never emptied");
    // Node 2 coming back does not lead: it is not in the ISR (a clean election).
    img.apply(13, unfence(2, 2)).unwrap();
    assert_eq!(img.partition("t", 0).unwrap().leader, NO_LEADER);
    // Node 1 does.
    img.apply(14, unfence(1, 1)).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.leader, 1);
    assert_eq!(p.leader_epoch, 2);
}

#[test]
fn a_node_that_shut_down_is_not_unfenced_until_it_registers_again() {
    let mut img = three();
    img.apply(
        10,
        Record::new(record::Kind::FenceNode(NodeEpoch {
            node_id: 2,
            epoch: 2,
            shutdown: true,
        })),
    )
    .unwrap();
    assert!(img.apply(11, unfence(2, 2)).is_err());
    assert!(img.nodes[&2].fenced);
    img.apply(12, reg(2, 77, "")).unwrap();
    assert!(!img.nodes[&2].fenced && !img.nodes[&2].shut_down);
}

#[test]
fn a_restart_fences_the_old_incarnation_so_the_leader_epoch_moves() {
    let mut img = three();
    img.apply(10, create("t", &[&[1, 2, 3]])).unwrap();
    img.apply(11, reg(1, 555, "")).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.leader, 2);
    assert_eq!(p.isr, vec![2, 3]);
    assert!(!img.nodes[&1].fenced);
}

#[test]
fn isr_changes_are_a_compare_and_set_on_the_partition_epoch() {
    let mut img = three();
    img.apply(10, create("t", &[&[1, 2, 3]])).unwrap();
    let shrink = |epoch, isr: &[i32]| {
        Record::new(record::Kind::PartitionChange(PartitionChange {
            topic: "t".into(),
            partition: 0,
            partition_epoch: epoch,
            isr: Some(Replicas {
                replicas: isr.to_vec(),
            }),
            leader: None,
            unclean: false,
            leader_epoch: Some(0),
            forced: false,
        }))
    };
    assert!(img.apply(11, shrink(0, &[1, 2])).is_ok());
    assert_eq!(img.partition("t", 0).unwrap().partition_epoch, 1);
    // Based on epoch 0 again: stale, refused, nothing changes.
    assert!(matches!(
        img.apply(12, shrink(0, &[1])),
        Err(MetaError::StaleEpoch(_, 0, 1, 0))
    ));
    assert_eq!(img.partition("t", 0).unwrap().isr, vec![1, 2]);
    // An ISR without the leader is refused.
    assert!(img.apply(13, shrink(1, &[2])).is_err());
    // A replica outside the assignment is refused.
    assert!(img.apply(14, shrink(1, &[1, 4])).is_err());
}

fn reassign(topic: &str, partition: i32, target: Option<&[i32]>) -> Record {
    Record::new(record::Kind::Reassign(Reassign {
        topic: topic.into(),
        partition,
        target: target.map(|t| Replicas {
            replicas: t.to_vec(),
        }),
    }))
}

fn set_isr(img: &Image, isr: &[i32]) -> Record {
    let p = img.partition("t", 0).unwrap();
    Record::new(record::Kind::PartitionChange(PartitionChange {
        topic: "t".into(),
        partition: 0,
        partition_epoch: p.partition_epoch,
        isr: Some(Replicas {
            replicas: isr.to_vec(),
        }),
        leader: None,
        unclean: false,
        leader_epoch: Some(p.leader_epoch),
        forced: false,
    }))
}

#[test]
fn a_reassignment_adds_first_and_completes_when_the_target_is_in_sync() {
    let mut img = three();
    img.apply(4, reg(4, 104, "")).unwrap();
    img.apply(10, create("t", &[&[1, 2, 3]])).unwrap();
    let out = img.apply(11, reassign("t", 0, Some(&[2, 3, 4]))).unwrap();
    let p = img.partition("t", 0).unwrap().clone();
    assert_eq!(out, Applied::Reassigned(p.clone()));
    // The target first, then the replica leaving; node 1 still leads.
    assert_eq!(p.replicas, vec![2, 3, 4, 1]);
    assert_eq!((p.adding.clone(), p.removing.clone()), (vec![4], vec![1]));
    assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));
    assert!(p.reassigning());
    assert_eq!(p.target(), vec![2, 3, 4]);
    assert_eq!(p.original(), vec![2, 3, 1]);
    // Node 4 catches up and joins the ISR: the same apply completes the move,
    // and the leader, leaving, hands over to the first target replica in sync.
    img.apply(12, set_isr(&img, &[1, 2, 3, 4])).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.replicas, vec![2, 3, 4]);
    assert_eq!(p.isr, vec![2, 3, 4]);
    assert_eq!((p.leader, p.leader_epoch), (2, 1));
    assert!(!p.reassigning());
}

#[test]
fn cancelling_returns_to_the_original_replicas_and_needs_one_in_sync() {
    let mut img = three();
    img.apply(4, reg(4, 104, "")).unwrap();
    img.apply(10, create("t", &[&[1, 2]])).unwrap();
    assert_eq!(
        img.apply(11, reassign("t", 0, None)),
        Err(MetaError::NoReassignment("t".into(), 0))
    );
    img.apply(12, reassign("t", 0, Some(&[3, 4]))).unwrap();
    // Replaced by another target: the originals stay the ones before the first.
    img.apply(13, reassign("t", 0, Some(&[2, 4]))).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!(p.replicas, vec![2, 4, 1]);
    assert_eq!((p.adding.clone(), p.removing.clone()), (vec![4], vec![1]));
    img.apply(14, reassign("t", 0, None)).unwrap();
    let p = img.partition("t", 0).unwrap();
    // The order is the current one without the adding replicas, as Kafka's
    // PartitionReassignmentRevert: the first target's order is not kept.
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![2, 1], vec![1, 2])
    );
    assert!(!p.reassigning());
    // Only an adding replica in sync: cancelling would empty the ISR, refused.
    img.apply(15, reassign("t", 0, Some(&[3, 4]))).unwrap();
    img.apply(16, set_isr(&img, &[1, 2, 3])).unwrap();
    assert!(img.partition("t", 0).unwrap().reassigning());
    img.apply(17, fence(1, 1)).unwrap();
    img.apply(18, fence(2, 2)).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.isr.clone(), p.leader), (vec![3], 3));
    let before = img.clone();
    assert!(matches!(
        img.apply(19, reassign("t", 0, None)),
        Err(MetaError::InvalidReplicas(_))
    ));
    assert_eq!(img.topics, before.topics);
}

#[test]
fn a_reorder_completes_at_once_and_a_bad_target_changes_nothing() {
    let mut img = three();
    img.apply(10, create("t", &[&[1, 2, 3]])).unwrap();
    img.apply(11, reassign("t", 0, Some(&[3, 2, 1]))).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.replicas.clone(), p.leader), (vec![3, 2, 1], 1));
    assert!(!p.reassigning());
    let before = img.clone();
    for bad in [&[][..], &[1, 1][..], &[1, 9][..]] {
        assert!(matches!(
            img.apply(12, reassign("t", 0, Some(bad))),
            Err(MetaError::InvalidReplicas(_))
        ));
    }
    assert!(matches!(
        img.apply(13, reassign("t", 5, Some(&[1]))),
        Err(MetaError::UnknownPartition(..))
    ));
    assert_eq!(img.topics, before.topics);
}

#[test]
fn unclean_election_needs_the_topic_config() {
    let mut img = three();
    img.apply(10, create("t", &[&[1, 2]])).unwrap();
    img.apply(
        11,
        Record::new(record::Kind::PartitionChange(PartitionChange {
            topic: "t".into(),
            partition: 0,
            partition_epoch: 0,
            isr: Some(Replicas { replicas: vec![1] }),
            leader: None,
            unclean: false,
            leader_epoch: None,
            forced: false,
        })),
    )
    .unwrap();
    img.apply(12, fence(1, 1)).unwrap();
    let elect = |epoch| {
        Record::new(record::Kind::PartitionChange(PartitionChange {
            topic: "t".into(),
            partition: 0,
            partition_epoch: epoch,
            isr: None,
            leader: Some(2),
            unclean: true,
            leader_epoch: None,
            forced: false,
        }))
    };
    let epoch = img.partition("t", 0).unwrap().partition_epoch;
    assert!(matches!(
        img.apply(13, elect(epoch)),
        Err(MetaError::UncleanNotAllowed(_))
    ));
    img.apply(
        14,
        Record::new(record::Kind::Config(TopicConfig {
            topic: "t".into(),
            set: BTreeMap::from([(UNCLEAN_LEADER_ELECTION.into(), "true".into())]),
            delete: vec![],
        })),
    )
    .unwrap();
    let before = img.partition("t", 0).unwrap().leader_epoch;
    assert_eq!(img.partition("t", 0).unwrap().last_unclean_epoch, 0);
    img.apply(15, elect(epoch)).unwrap();
    let p = img.partition("t", 0).unwrap();
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    // The epoch it began is kept: a replica that truncates records of an
    // earlier epoch reports them lost.
    assert!(p.leader_epoch > before);
    assert_eq!(p.last_unclean_epoch, p.leader_epoch);
}

#[test]
fn producer_id_blocks_never_overlap_and_respect_earlier_ids() {
    let mut img = Image::default();
    let alloc = |node, at_least| {
        Record::new(record::Kind::AllocateProducerIds(AllocateProducerIds {
            node_id: node,
            at_least,
        }))
    };
    assert_eq!(
        img.apply(1, alloc(1, 0)),
        Ok(Applied::ProducerIds { first: 0 })
    );
    assert_eq!(
        img.apply(2, alloc(2, 0)),
        Ok(Applied::ProducerIds {
            first: PRODUCER_ID_BLOCK
        })
    );
    // A broker that handed out ids up to 5000 on its own gets a block above them.
    assert_eq!(
        img.apply(3, alloc(3, 5000)),
        Ok(Applied::ProducerIds { first: 5000 })
    );
    assert_eq!(
        img.apply(4, alloc(1, 0)),
        Ok(Applied::ProducerIds {
            first: 5000 + PRODUCER_ID_BLOCK
        })
    );
}

#[test]
fn placement_spreads_leaders_and_racks() {
    let nodes: Vec<Node> = (1..=6)
        .map(|id| Node {
            id,
            rack: ["a", "b", "c"][(id as usize - 1) % 3].into(),
            ..Node::default()
        })
        .collect();
    let placed = place_replicas(&nodes, 12, 3, 0).unwrap();
    let mut leaders = BTreeMap::new();
    for r in &placed {
        assert_eq!(r.len(), 3);
        let racks: BTreeSet<&str> = r
            .iter()
            .map(|id| nodes[*id as usize - 1].rack.as_str())
            .collect();
        assert_eq!(racks.len(), 3, "{r:?} puts two replicas on one rack");
        *leaders.entry(r[0]).or_insert(0) += 1;
    }
    assert_eq!(leaders.len(), 6);
    assert!(leaders.values().all(|n| *n == 2), "{leaders:?}");
    assert_eq!(
        place_replicas(&nodes, 1, 7, 0),
        Err(PlaceError::TooFewNodes(7, 6))
    );
}

fn col(name: &str, ty: &str, kind: ColumnKind, position: i32) -> Column {
    Column {
        name: name.into(),
        cql_type: ty.into(),
        kind: kind as i32,
        position,
        ..Default::default()
    }
}

fn ks(name: &str) -> Record {
    Record::new(record::Kind::CreateKeyspace(CreateKeyspace {
        name: name.into(),
        replication: [("class".to_string(), "SimpleStrategy".to_string())].into(),
        durable_writes: true,
        alter: false,
    }))
}

fn table(ks: &str, name: &str, id: u8) -> Record {
    Record::new(record::Kind::CreateTable(CreateTable {
        keyspace: ks.into(),
        name: name.into(),
        id: vec![id; 16],
        columns: vec![
            col("k", "text", ColumnKind::PartitionKey, 0),
            col("c", "int", ColumnKind::Clustering, 0),
            col("v", "text", ColumnKind::Regular, 0),
        ],
        options: Default::default(),
    }))
}

#[test]
fn schema_changes_are_checked_at_apply_and_column_ids_are_never_reused() {
    let mut img = Image::default();
    let v0 = img.schema_version();
    assert_eq!(
        img.apply(1, table("ks", "t", 1)),
        Err(MetaError::UnknownKeyspace("ks".into()))
    );
    img.apply(2, ks("ks")).unwrap();
    assert_eq!(
        img.apply(3, ks("ks")),
        Err(MetaError::KeyspaceExists("ks".into()))
    );
    assert!(matches!(
        img.apply(3, ks("system")),
        Err(MetaError::Unauthorized(_))
    ));
    assert!(matches!(
        img.apply(3, ks("bad-name")),
        Err(MetaError::Invalid(_))
    ));
    img.apply(4, table("ks", "t", 1)).unwrap();
    assert_eq!(
        img.apply(5, table("ks", "t", 2)),
        Err(MetaError::TableExists("ks".into(), "t".into()))
    );
    assert_ne!(img.schema_version(), v0);
    let alter = |add: &[&str], drop: &[&str]| {
        Record::new(record::Kind::AlterTable(AlterTable {
            keyspace: "ks".into(),
            name: "t".into(),
            add: add
                .iter()
                .map(|n| col(n, "int", ColumnKind::Regular, 0))
                .collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
            options: Default::default(),
        }))
    };
    img.apply(6, alter(&["w"], &[])).unwrap();
    img.apply(7, alter(&[], &["w"])).unwrap();
    img.apply(8, alter(&["w"], &[])).unwrap();
    let t = &img.keyspaces["ks"].tables["t"];
    assert_eq!(
        t.column("w").unwrap().id,
        6,
        "a re-added column gets a new id"
    );
    assert!(matches!(
        img.apply(9, alter(&[], &["k"])),
        Err(MetaError::Invalid(_))
    ));
    let before = img.clone();
    assert!(img.apply(10, alter(&["x", "v"], &[])).is_err());
    assert_eq!(
        img.keyspaces, before.keyspaces,
        "a refused ALTER changes nothing"
    );
    img.apply(
        11,
        Record::new(record::Kind::DropKeyspace(DropKeyspace {
            name: "ks".into(),
        })),
    )
    .unwrap();
    assert_eq!(img.dropped_table_ids, vec![vec![1; 16]]);
    img.apply(12, ks("ks")).unwrap();
    assert!(
        matches!(
            img.apply(13, table("ks", "t", 1)),
            Err(MetaError::Invalid(_))
        ),
        "a dropped table's id is never reused"
    );
}

fn arb_record() -> impl Strategy<Value = Record> {
    let node = 1..=4i32;
    prop_oneof![
        (node.clone(), 0..3u64).prop_map(|(id, inc)| reg(id, inc, "")),
        (node.clone(), 0..30u64, any::<bool>()).prop_map(|(id, epoch, shutdown)| Record::new(
            record::Kind::FenceNode(NodeEpoch {
                node_id: id,
                epoch,
                shutdown
            })
        )),
        (node.clone(), 0..30u64).prop_map(|(id, e)| unfence(id, e)),
        (
            0..3usize,
            proptest::collection::vec(proptest::collection::vec(1..=4i32, 1..4), 1..3)
        )
            .prop_map(|(t, parts)| {
                let parts: Vec<&[i32]> = parts.iter().map(|p| p.as_slice()).collect();
                create(&format!("t{t}"), &parts)
            }),
        (
            0..3usize,
            0..2i32,
            0..6i32,
            proptest::option::of(proptest::collection::vec(1..=4i32, 0..4)),
            proptest::option::of(-1..=4i32),
            any::<bool>()
        )
            .prop_map(|(t, p, epoch, isr, leader, unclean)| Record::new(
                record::Kind::PartitionChange(PartitionChange {
                    topic: format!("t{t}"),
                    partition: p,
                    partition_epoch: epoch,
                    isr: isr.map(|replicas| Replicas { replicas }),
                    leader,
                    unclean,
                    leader_epoch: None,
                    forced: false,
                })
            )),
        (
            0..3usize,
            proptest::collection::vec(proptest::collection::vec(1..=4i32, 1..4), 1..3)
        )
            .prop_map(|(t, parts)| Record::new(record::Kind::CreatePartitions(
                CreatePartitions {
                    topic: format!("t{t}"),
                    partitions: parts
                        .into_iter()
                        .map(|replicas| Replicas { replicas })
                        .collect(),
                }
            ))),
        (
            0..3usize,
            0..2i32,
            proptest::option::of(proptest::collection::vec(1..=4i32, 0..4))
        )
            .prop_map(|(t, p, target)| reassign(&format!("t{t}"), p, target.as_deref())),
        (0..3usize).prop_map(|t| Record::new(record::Kind::RemoveTopic(RemoveTopic {
            name: format!("t{t}")
        }))),
        (0..3usize, any::<bool>()).prop_map(|(t, on)| Record::new(record::Kind::Config(
            TopicConfig {
                topic: format!("t{t}"),
                set: BTreeMap::from([(UNCLEAN_LEADER_ELECTION.into(), on.to_string())]),
                delete: vec![],
            }
        ))),
    ]
}

proptest! {
    /// Whatever records arrive, the image keeps KRaft's invariants, a refused
    /// record changes nothing, epochs only grow, and the image survives its
    /// encoding (what the store and snapshots keep).
    #[test]
    fn invariants_hold_under_any_records(recs in proptest::collection::vec(arb_record(), 1..60)) {
        let mut img = Image::default();
        for (i, rec) in recs.into_iter().enumerate() {
            let index = i as u64 + 1;
            let before = img.clone();
            let out = img.apply(index, rec);
            prop_assert_eq!(img.applied, index);
            if out.is_err() {
                let mut same = img.clone();
                same.applied = before.applied;
                prop_assert_eq!(&same, &before);
            }
            for (name, t) in &img.topics {
                for (i, p) in t.partitions.iter().enumerate() {
                    prop_assert!(!p.isr.is_empty(), "{}-{} has an empty ISR", name, i);
                    prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
                    let set: BTreeSet<i32> = p.replicas.iter().copied().collect();
                    prop_assert_eq!(set.len(), p.replicas.len(), "{}-{}: replicas {:?}", name, i, &p.replicas);
                    prop_assert!(p.adding.iter().chain(&p.removing).all(|r| p.replicas.contains(r)));
                    prop_assert!(p.adding.iter().all(|r| !p.removing.contains(r)));
                    // A reassignment whose target is all in sync is already complete.
                    if p.reassigning() {
                        prop_assert!(!p.target().iter().all(|r| p.isr.contains(r)), "{}-{}: {:?}", name, i, p);
                    }
                    if p.leader != NO_LEADER {
                        prop_assert!(p.isr.contains(&p.leader), "{}-{}: leader {} not in ISR {:?}", name, i, p.leader, p.isr);
                        prop_assert!(!img.nodes[&p.leader].fenced, "{}-{}: fenced leader", name, i);
                    }
                    if let Some(old) = before.topics.get(name).and_then(|t| t.partitions.get(i)) {
                        prop_assert!(p.leader_epoch >= old.leader_epoch);
                        prop_assert!(p.partition_epoch >= old.partition_epoch);
                        if p.leader != old.leader {
                            prop_assert!(p.leader_epoch > old.leader_epoch);
                        }
                        if p != old {
                            prop_assert!(p.partition_epoch > old.partition_epoch);
                        }
                    }
                }
            }
            let decoded = Image::decode_from(&img.encode_to_vec()).unwrap();
            prop_assert_eq!(&decoded, &img);
        }
    }
}

fn reg_cql(id: i32, inc: u64, dc: &str, rack: &str) -> Record {
    Record::new(record::Kind::RegisterNode(RegisterNode {
        node_id: id,
        incarnation: inc,
        kafka_host: "127.0.0.1".into(),
        kafka_port: 9091 + id,
        rack: rack.into(),
        cql_host: format!("127.0.0.{id}"),
        cql_port: 9042,
        datacenter: dc.into(),
        ..Default::default()
    }))
}

#[test]
fn a_cql_node_takes_tokens_once_and_keeps_them_across_restarts() {
    let mut img = Image::default();
    // A node without CQL owns nothing.
    img.apply(1, reg(9, 1, "")).unwrap();
    assert!(img.nodes[&9].tokens.is_empty());
    for id in 1..=3 {
        img.apply(id as u64 + 1, reg_cql(id, 1, "", "r1")).unwrap();
        assert_eq!(img.nodes[&id].tokens.len(), ring::DEFAULT_NUM_TOKENS);
        assert_eq!(img.nodes[&id].datacenter, "datacenter1");
    }
    let before = img.nodes[&2].tokens.clone();
    // A retry and a restart keep the tokens.
    img.apply(10, reg_cql(2, 1, "", "r1")).unwrap();
    img.apply(11, reg_cql(2, 2, "", "r1")).unwrap();
    assert_eq!(img.nodes[&2].tokens, before);
    assert_eq!(img.nodes[&2].epoch, 11);
    // No token is held twice, and ownership is near a third each.
    let ring = img.ring();
    assert_eq!(ring.tokens().len(), 3 * ring::DEFAULT_NUM_TOKENS);
    let own = ring.ownership(&ring::Strategy::Simple { rf: 1 });
    for id in 1..=3 {
        assert!((own[&id] - 1.0 / 3.0).abs() < 0.05, "{own:?}");
    }
    // Every replica of the metadata computes the same tokens.
    let mut again = Image::default();
    again.apply(1, reg(9, 1, "")).unwrap();
    for id in 1..=3 {
        again
            .apply(id as u64 + 1, reg_cql(id, 1, "", "r1"))
            .unwrap();
    }
    for id in 1..=3 {
        assert_eq!(again.nodes[&id].tokens, img.nodes[&id].tokens);
    }
    // A fenced node stays on the ring (it still owns its ranges).
    img.apply(12, fence(1, img.nodes[&1].epoch)).unwrap();
    assert!(img.nodes[&1].fenced);
    assert_eq!(img.ring().tokens().len(), 3 * ring::DEFAULT_NUM_TOKENS);
}

#[test]
fn num_tokens_and_datacenter_come_from_the_registration() {
    let mut img = Image::default();
    let mut r = reg_cql(1, 1, "east", "r1");
    if let Some(record::Kind::RegisterNode(n)) = &mut r.kind {
        n.num_tokens = 4;
    }
    img.apply(1, r).unwrap();
    assert_eq!(img.nodes[&1].tokens.len(), 4);
    assert_eq!(img.nodes[&1].datacenter, "east");
}

fn keyspace_rf(name: &str, rf: u32) -> Record {
    Record::new(record::Kind::CreateKeyspace(CreateKeyspace {
        name: name.into(),
        replication: [
            ("class".to_string(), "SimpleStrategy".to_string()),
            ("replication_factor".to_string(), rf.to_string()),
        ]
        .into(),
        durable_writes: true,
        alter: false,
    }))
}

fn leave(id: i32, done: bool) -> Record {
    Record::new(record::Kind::LeaveRing(LeaveRing { node_id: id, done }))
}

#[test]
fn a_node_leaves_the_ring_in_two_steps_and_never_takes_tokens_again() {
    let mut img = Image::default();
    for id in 1..=4 {
        img.apply(id as u64, reg_cql(id, 1, "", "r1")).unwrap();
    }
    img.apply(5, keyspace_rf("ks", 3)).unwrap();
    assert!(img.ring_after_leaving().is_none());
    // Done before it began leaving, or an unknown node: refused, nothing changes.
    let before = img.clone();
    assert!(img.apply(6, leave(4, true)).is_err());
    assert!(img.apply(7, leave(8, false)).is_err());
    assert_eq!(img.nodes, before.nodes);
    img.apply(8, leave(4, false)).unwrap();
    assert!(img.nodes[&4].leaving);
    assert_eq!(img.ring().tokens().len(), 4 * ring::DEFAULT_NUM_TOKENS);
    let after = img.ring_after_leaving().expect("node 4 is leaving");
    assert_eq!(after.tokens().len(), 3 * ring::DEFAULT_NUM_TOKENS);
    assert!(after.tokens().iter().all(|(_, n)| *n != 4));
    // A third node may not leave now: two could not hold RF 3.
    let err = img.apply(9, leave(3, false)).unwrap_err().to_string();
    assert!(err.contains("keyspace ks"), "{err}");
    img.apply(10, leave(4, true)).unwrap();
    let n = &img.nodes[&4];
    assert!(n.tokens.is_empty() && !n.leaving && n.decommissioned);
    assert!(img.ring_after_leaving().is_none());
    // A restart (a new incarnation) or a retried registration takes no tokens.
    img.apply(11, reg_cql(4, 2, "", "r1")).unwrap();
    img.apply(12, reg_cql(4, 2, "", "r1")).unwrap();
    assert!(img.nodes[&4].tokens.is_empty());
    assert!(img.nodes[&4].decommissioned);
    assert!(img.apply(13, leave(4, false)).is_err());
}
