//! The etcd face as a client sees it: a single-member quorum in process,
//! driven by the Rust `etcd-client` crate (a third implementation of etcd's
//! client protocol) and by raw requests for the error paths.

mod auth;
mod cluster;
mod store;

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use keel_etcd::quorum::{Quorum, QuorumArgs};
use tokio::sync::watch;

pub(crate) struct TestNode {
    quorum: Option<Quorum>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl TestNode {
    pub(crate) async fn start() -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let quorum = Quorum::start(
            QuorumArgs {
                node_id: 1,
                data_dir: dir.path().to_path_buf(),
                peer_addr: "127.0.0.1:0".into(),
                etcd_addr: "127.0.0.1:0".into(),
                initial_cluster: vec![(1, "127.0.0.1:0".into())],
                existing: false,
                quota_bytes: 8 << 20,
                election_ms: 1000,
                watch_progress_notify_ms: keel_etcd::server::WATCH_PROGRESS_INTERVAL.as_millis()
                    as u64,
                client_tls: None,
                peer_tls: None,
                auth_token_ttl: keel_etcd::auth::TOKEN_TTL_DEFAULT,
                bcrypt_cost: 4,
                jwt: None,
            },
            stop_rx,
        )
        .await
        .unwrap();
        TestNode {
            quorum: Some(quorum),
            stop,
            _dir: dir,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.quorum.as_ref().unwrap().etcd_local)
    }

    pub(crate) async fn client(&self) -> Client {
        let ep = format!("http://{}", self.quorum.as_ref().unwrap().etcd_local);
        // The single voter campaigns at once; wait for it to lead.
        for _ in 0..200 {
            if self.quorum.as_ref().unwrap().server.node().status().leader == 1 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Client::connect([ep], None).await.unwrap()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        self.quorum.take().unwrap().shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_round_trip() {
    let node = TestNode::start().await;
    let mut c = node.client().await;
    let r1 = c
        .put("k", "v1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    let got = c.get("k", None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(
        (kv.value(), kv.version(), kv.create_revision()),
        (&b"v2"[..], 2, r1)
    );
    let old = c
        .get("k", Some(GetOptions::new().with_revision(r1)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"v1");
    // CAS on the mod revision.
    let mod_rev = kv.mod_revision();
    let txn = Txn::new()
        .when([Compare::mod_revision("k", CompareOp::Equal, mod_rev)])
        .and_then([TxnOp::put("k", "v3", None)])
        .or_else([TxnOp::get("k", None)]);
    assert!(c.txn(txn.clone()).await.unwrap().succeeded());
    assert!(!c.txn(txn).await.unwrap().succeeded());
    // Watch from an old revision replays every change in order.
    let (_w, mut stream) = c
        .watch("k", Some(WatchOptions::new().with_start_revision(r1)))
        .await
        .unwrap();
    let mut values = Vec::new();
    while values.len() < 3 {
        let resp = stream.message().await.unwrap().unwrap();
        for e in resp.events() {
            assert_eq!(e.event_type(), EventType::Put);
            values.push(e.kv().unwrap().value().to_vec());
        }
    }
    assert_eq!(values, vec![b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]);
    // Leases: keys go with their lease.
    let lease = c.lease_grant(30, None).await.unwrap().id();
    c.put("leased", "x", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 30);
    c.lease_revoke(lease).await.unwrap();
    assert!(c.get("leased", None).await.unwrap().kvs().is_empty());
    let status = c.status().await.unwrap();
    assert_eq!(status.leader(), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_etcds_errors_and_change_nothing() {
    let node = TestNode::start().await;
    let mut c = node.client().await;
    let head = c
        .put("a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let code_of = |e: etcd_client::Error| match e {
        etcd_client::Error::GRpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("not a gRPC status: {other}"),
    };
    // Future revision.
    let e = c
        .get("a", Some(GetOptions::new().with_revision(head + 10)))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(e),
        (
            tonic_code_out_of_range(),
            "etcdserver: mvcc: required revision is a future revision".into()
        )
    );
    // Too many ops in a txn.
    let ops: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("t{i}"), "x", None))
        .collect();
    let e = c.txn(Txn::new().and_then(ops)).await.unwrap_err();
    assert_eq!(
        code_of(e).1,
        "etcdserver: too many operations in txn request"
    );
    // The same key twice in one txn.
    let e = c
        .txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(e).1,
        "etcdserver: duplicate key given in txn request"
    );
    // A put on a lease that does not exist.
    let e = c
        .put("a", "2", Some(PutOptions::new().with_lease(12345)))
        .await
        .unwrap_err();
    assert_eq!(code_of(e).1, "etcdserver: requested lease not found");
    // A request over 1.5 MiB.
    let e = c
        .put("big", vec![0u8; 1600 * 1024], None)
        .await
        .unwrap_err();
    assert_eq!(code_of(e).1, "etcdserver: request is too large");
    // Nothing of the above was applied.
    let now = c.get("a", None).await.unwrap();
    assert_eq!(now.header().unwrap().revision(), head);
    assert_eq!(now.kvs()[0].value(), b"1");
    // Compacted revisions: reads fail with etcd's error, watches get the compacted answer.
    c.put("a", "2", None).await.unwrap();
    let top = c
        .put("a", "3", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(top, None).await.unwrap();
    let e = c
        .get("a", Some(GetOptions::new().with_revision(head)))
        .await
        .unwrap_err();
    assert_eq!(
        code_of(e).1,
        "etcdserver: mvcc: required revision has been compacted"
    );
    let (_w, mut stream) = c
        .watch("a", Some(WatchOptions::new().with_start_revision(head)))
        .await
        .unwrap();
    let resp = stream.message().await.unwrap().unwrap();
    let resp = if resp.created() && !resp.canceled() {
        stream.message().await.unwrap().unwrap()
    } else {
        resp
    };
    assert!(resp.canceled());
    assert_eq!(resp.compact_revision(), top);
    node.stop().await;
}

fn tonic_code_out_of_range() -> tonic::Code {
    tonic::Code::OutOfRange
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_and_refuses_writes_until_space_is_freed() {
    let node = TestNode::start().await;
    let mut c = node.client().await;
    // 8 MiB quota: fill it with 1 MiB values.
    let mut refused = None;
    for i in 0..20 {
        if let Err(e) = c.put(format!("fill{i}"), vec![7u8; 1 << 20], None).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let refused = refused.expect("the quota never refused a write");
    assert!(refused.contains("database space exceeded"), "{refused}");
    let alarms = c
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    // Deletes still work; after compaction and disarming, writes work again.
    let rev = c
        .delete(
            "fill",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(rev, None).await.unwrap();
    c.alarm(
        etcd_client::AlarmAction::Deactivate,
        etcd_client::AlarmType::Nospace,
        None,
    )
    .await
    .unwrap();
    c.put("after", "ok", None).await.unwrap();
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let args = QuorumArgs {
        node_id: 1,
        data_dir: dir.path().to_path_buf(),
        peer_addr: "127.0.0.1:0".into(),
        etcd_addr: "127.0.0.1:0".into(),
        initial_cluster: vec![(1, "127.0.0.1:0".into())],
        existing: false,
        quota_bytes: 1 << 30,
        election_ms: 1000,
        watch_progress_notify_ms: keel_etcd::server::WATCH_PROGRESS_INTERVAL.as_millis() as u64,
        client_tls: None,
        peer_tls: None,
        auth_token_ttl: keel_etcd::auth::TOKEN_TTL_DEFAULT,
        bcrypt_cost: 4,
        jwt: None,
    };
    let mut last = 0;
    for round in 0..3 {
        if round == 2 {
            // The WAL's commit index is written lazily, with the next round's
            // records, so after a crash it can lag what the store durably
            // applied; raft-rs refuses to start with applied above committed.
            let (wal, _) = keel_raft::wal::Wal::open(&dir.path().join("raft")).unwrap();
            let hs = wal.hard_state();
            wal.set_hard_state(&keel_raft::HardState { commit: 1, ..hs })
                .unwrap();
            wal.sync().unwrap();
        }
        let (stop, rx) = watch::channel(false);
        let q = Quorum::start(args.clone(), rx).await.unwrap();
        let node = TestNode {
            quorum: Some(q),
            stop,
            _dir: tempfile::tempdir().unwrap(),
        };
        let mut c = node.client().await;
        // Everything written before is there, at the same revisions.
        let all = c
            .get("k", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(all.kvs().len(), round * 100);
        if round > 0 {
            assert_eq!(all.header().unwrap().revision(), last);
        }
        for i in 0..100 {
            last = c
                .put(format!("k{round}-{i:03}"), format!("{i}"), None)
                .await
                .unwrap()
                .header()
                .unwrap()
                .revision();
        }
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_services() {
    let node = TestNode::start().await;
    let mut c = node.client().await;
    // v3lock: a second locker waits until the first unlocks.
    let l1 = c.lease_grant(30, None).await.unwrap().id();
    let l2 = c.lease_grant(30, None).await.unwrap().id();
    let held = c
        .lock("L", Some(etcd_client::LockOptions::new().with_lease(l1)))
        .await
        .unwrap();
    let mut c2 = c.clone();
    let second = tokio::spawn(async move {
        c2.lock("L", Some(etcd_client::LockOptions::new().with_lease(l2)))
            .await
            .unwrap()
    });
    // Both keys are in line; the second has not got the lock.
    let mut waiting = 0;
    while c
        .get("L/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap()
        .kvs()
        .len()
        < 2
    {
        waiting += 1;
        assert!(waiting < 500, "the second locker never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!second.is_finished());
    c.unlock(held.key()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .unwrap()
        .unwrap();
    assert!(got.key().starts_with(b"L/"));
    // v3election: campaign, leader, proclaim, observe, resign.
    let lease = c.lease_grant(30, None).await.unwrap().id();
    let won = c.campaign("E", "alpha", lease).await.unwrap();
    let leader_key = won.leader().unwrap().clone();
    let now = c.leader("E").await.unwrap();
    assert_eq!(now.kv().unwrap().value(), b"alpha");
    let mut observe = c.observe("E").await.unwrap();
    assert_eq!(next_leader_value(&mut observe).await, b"alpha");
    c.proclaim(
        "beta",
        Some(etcd_client::ProclaimOptions::new().with_leader(leader_key.clone())),
    )
    .await
    .unwrap();
    assert_eq!(next_leader_value(&mut observe).await, b"beta");
    // Campaigning again on the same lease with a new value proclaims it.
    let again = c.campaign("E", "gamma", lease).await.unwrap();
    assert_eq!(again.leader().unwrap().rev(), leader_key.rev());
    assert_eq!(next_leader_value(&mut observe).await, b"gamma");
    // A second candidate waits behind the leader.
    let other = c.lease_grant(30, None).await.unwrap().id();
    let mut c3 = c.clone();
    let runner_up = tokio::spawn(async move { c3.campaign("E", "delta", other).await.unwrap() });
    c.resign(Some(
        etcd_client::ResignOptions::new().with_leader(leader_key),
    ))
    .await
    .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), runner_up)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.leader("E").await.unwrap().kv().unwrap().value(), b"delta");
    c.resign(Some(
        etcd_client::ResignOptions::new().with_leader(next.leader().unwrap().clone()),
    ))
    .await
    .unwrap();
    assert!(c.leader("E").await.is_err());
    node.stop().await;
}

/// The leader's value in the next message of an Observe stream.
async fn next_leader_value(observe: &mut etcd_client::ObserveStream) -> Vec<u8> {
    let msg = observe
        .message()
        .await
        .unwrap()
        .expect("the stream goes on");
    msg.kv().expect("a leader's key").value().to_vec()
}
