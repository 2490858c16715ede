//! The controller's liveness duty on a one-member quorum.

use std::time::{Duration, Instant};

use keel_etcd::cluster::{Duties, Membership, Registration};
use keel_meta::{record::Kind, Applied, Record, RegisterNode};
use tokio::sync::watch;

use crate::TestNode;

fn registration(node_id: i32) -> Registration {
    Registration {
        node_id,
        kafka_host: "127.0.0.1".into(),
        kafka_port: 9092 + node_id,
        rack: String::new(),
        cluster_id: "test-cluster".into(),
        cql_host: String::new(),
        cql_port: 0,
        datacenter: String::new(),
        num_tokens: 0,
    }
}

/// The controller fences a silent node after its session while the apply
/// thread holds the store for a long entry. It used to read the registry
/// under the store's lock, so a range delete that held the lock for seconds
/// (test_stall.py: 150 000 keys with a watcher) held back every fencing, and
/// with it every Kafka failover, until the apply was done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_fences_while_a_long_apply_holds_the_store() {
    let node = TestNode::start().await;
    let _ = node.client().await; // leading
    let server = node.quorum.as_ref().unwrap().server.clone();
    let membership = Membership::new(server.clone(), registration(1));
    let (stop_tx, stop_rx) = watch::channel(false);
    let duties = Duties {
        session_timeout: Duration::from_millis(1_000),
        rebalance_every: Duration::from_secs(3_600),
    };
    let controller = tokio::spawn(membership.clone().run(duties, stop_rx));
    tokio::time::timeout(Duration::from_secs(10), membership.registered())
        .await
        .expect("node 1 registered");
    // Node 2 registers and is never heard from (it is not even a Raft member).
    let two = registration(2);
    let rec = Record::new(Kind::RegisterNode(RegisterNode {
        node_id: 2,
        incarnation: 7,
        kafka_host: two.kafka_host,
        kafka_port: two.kafka_port,
        cluster_id: two.cluster_id,
        ..Default::default()
    }));
    match server.propose_metadata(&rec).await {
        Ok(Ok(Applied::Registered { node_id: 2, .. })) => {}
        other => panic!("registering node 2: {other:?}"),
    }
    let mut images = membership.watch();
    assert!(!images.borrow().nodes[&2].fenced);

    // A long apply: the store held by another thread, as the apply thread
    // holds it for a whole entry.
    let store = server.store().clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _guard = store.lock().unwrap();
        held_tx.send(()).unwrap();
        // Bounded: the test fails below, rather than hanging, if nothing releases it.
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    });
    held_rx.recv().unwrap();
    let raft = server.node().clone();
    let committed_before = raft.status().commit;
    // The controller decides, and Raft commits its FenceNode, while the store
    // is still held: nothing else proposes on this quorum.
    let started = Instant::now();
    let mut committed = false;
    while started.elapsed() < Duration::from_secs(10) {
        if raft.status().commit > committed_before {
            committed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(
        committed,
        "no proposal committed in 10 s while the store was held (session 1 s)"
    );
    // And what it committed was node 2's fencing.
    tokio::time::timeout(
        Duration::from_secs(10),
        images.wait_for(|i| i.nodes.get(&2).is_some_and(|n| n.fenced)),
    )
    .await
    .expect("node 2 fenced once the store is free")
    .unwrap();
    assert!(!images.borrow().nodes[&1].fenced);
    let _ = stop_tx.send(true);
    controller.await.unwrap();
    node.stop().await;
}
