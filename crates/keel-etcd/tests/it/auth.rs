//! Authentication and authorization over gRPC, with the `etcd-client`
//! crate: every path for an allowed and a denied user, and a role revoked
//! under a running writer.

use std::sync::Arc;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, Error, LockOptions, Permission, Txn, TxnOp,
    WatchOptions,
};
use tokio::sync::Notify;
use tonic::Code;

use crate::TestNode;

async fn connect_as(ep: &str, user: &str, password: &str) -> Result<Client, Error> {
    Client::connect([ep], Some(ConnectOptions::new().with_user(user, password))).await
}

/// The gRPC status of a failed call.
fn status<T: std::fmt::Debug>(r: Result<T, Error>) -> (Code, String) {
    match r {
        Err(Error::GRpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

const DENIED: (Code, &str) = (Code::PermissionDenied, "etcdserver: permission denied");

fn denied<T: std::fmt::Debug>(r: Result<T, Error>) {
    let (code, msg) = status(r);
    assert_eq!((code, msg.as_str()), DENIED);
}

/// root (root role), and `app` with readwrite on the prefix `app/` held by
/// `alice`; `bob` holds nothing. Auth on.
async fn lock_down(c: &mut Client) {
    c.user_add("root", "rootpw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.role_add("app").await.unwrap();
    c.role_grant_permission("app", Permission::read_write("app/").with_prefix())
        .await
        .unwrap();
    for u in ["alice", "bob"] {
        c.user_add(u, format!("{u}pw"), None).await.unwrap();
    }
    c.user_grant_role("alice", "app").await.unwrap();
    c.auth_enable().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_is_checked_for_an_allowed_and_a_denied_user() {
    let node = TestNode::start().await;
    let ep = node.endpoint();
    lock_down(&mut node.client().await).await;
    let (code, msg) = status(node.client().await.get("app/x", None).await);
    assert_eq!(
        (code, msg.as_str()),
        (Code::InvalidArgument, "etcdserver: user name is empty")
    );
    let (code, msg) = status(connect_as(&ep, "alice", "wrong").await.map(drop));
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password"
        )
    );
    let mut root = connect_as(&ep, "root", "rootpw").await.unwrap();
    let lease = root.lease_grant(60, None).await.unwrap().id();
    root.put(
        "secret",
        "s",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();

    for (user, allowed) in [("alice", true), ("bob", false)] {
        let mut c = connect_as(&ep, user, &format!("{user}pw")).await.unwrap();
        let check = |r: Result<(), Error>| {
            if allowed {
                r.unwrap();
            } else {
                denied(r);
            }
        };
        check(c.put("app/k", user, None).await.map(drop));
        check(c.get("app/k", None).await.map(drop));
        check(
            c.get("app/", Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .map(drop),
        );
        let txn = Txn::new()
            .when([Compare::version("app/k", CompareOp::Greater, 0)])
            .and_then([TxnOp::put("app/t", "1", None)])
            .or_else([TxnOp::get("app/t", None)]);
        check(c.txn(txn).await.map(drop));
        check(c.delete("app/t", None).await.map(drop));
        // Nobody but root may touch what lies outside app/, by any path.
        denied(c.put("other", "x", None).await);
        denied(c.get("secret", None).await);
        denied(c.delete("secret", None).await);
        denied(
            c.txn(Txn::new().when([Compare::value("secret", CompareOp::Equal, "s")]))
                .await,
        );
        denied(
            c.txn(Txn::new().and_then([TxnOp::txn(
                Txn::new().and_then([TxnOp::delete("secret", None)]),
            )]))
            .await,
        );
        denied(c.lease_revoke(lease).await);
        denied(
            c.lease_time_to_live(
                lease,
                Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
            )
            .await,
        );
        c.lease_time_to_live(lease, None).await.unwrap();
        denied(
            c.put(
                "app/steal",
                "x",
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )
            .await,
        );
        // Watch: created, or (denied) created and canceled with watch id -1;
        // etcd-client reads the created answer itself.
        let (w, mut stream) = c
            .watch("app/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        if allowed {
            assert!(w.watch_id() >= 0);
            c.put("app/seen", "1", None).await.unwrap();
            let ev = stream.message().await.unwrap().unwrap();
            assert_eq!(ev.events()[0].kv().unwrap().key(), b"app/seen");
        } else {
            assert_eq!(w.watch_id(), -1);
        }
        let (w, _) = c.watch("secret", None).await.unwrap();
        assert_eq!(w.watch_id(), -1);
        // Lock and election lines under app/.
        let mine = c.lease_grant(60, None).await.unwrap().id();
        check(
            c.lock("app/lk", Some(LockOptions::new().with_lease(mine)))
                .await
                .map(drop),
        );
        check(c.campaign("app/el", user, mine).await.map(drop));
        check(c.leader("app/el").await.map(drop));
        // Cluster, maintenance and auth administration: root's.
        denied(c.defragment().await);
        denied(c.hash().await);
        denied(c.member_add(["http://127.0.0.1:1"], None).await);
        denied(c.user_list().await);
        denied(c.role_add("r2").await);
        denied(c.auth_disable().await);
        c.member_list().await.unwrap();
        c.status().await.unwrap();
    }
    // Root may do it all.
    root.defragment().await.unwrap();
    root.hash().await.unwrap();
    root.lease_revoke(lease).await.unwrap();
    assert_eq!(root.get("secret", None).await.unwrap().count(), 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_revoked_under_a_running_writer_stops_its_writes_at_the_revoke() {
    let node = TestNode::start().await;
    let ep = node.endpoint();
    lock_down(&mut node.client().await).await;
    let going = Arc::new(Notify::new());
    let writer = {
        let (ep, going) = (ep.clone(), going.clone());
        tokio::spawn(async move {
            // (value, revision) of every acknowledged write, and the first denial.
            let mut acked: Vec<(u64, i64)> = Vec::new();
            let mut c = connect_as(&ep, "alice", "alicepw").await.unwrap();
            for i in 0..100_000u64 {
                match c.put("app/w", i.to_string(), None).await {
                    Ok(r) => {
                        acked.push((i, r.header().unwrap().revision()));
                        if acked.len() == 50 {
                            going.notify_one();
                        }
                    }
                    Err(e) => {
                        let (code, msg) = status::<()>(Err(e));
                        if msg == "etcdserver: revision of auth store is old"
                            || code == Code::Unauthenticated
                        {
                            // etcd's clients fetch a new token and retry.
                            c = connect_as(&ep, "alice", "alicepw").await.unwrap();
                            continue;
                        }
                        assert_eq!((code, msg.as_str()), DENIED);
                        return (acked, i);
                    }
                }
            }
            panic!("the writer was never denied");
        })
    };
    going.notified().await;
    let mut root = connect_as(&ep, "root", "rootpw").await.unwrap();
    let revoked_at = root
        .user_revoke_role("alice", "app")
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let (acked, denied_at) = writer.await.unwrap();
    assert!(acked.len() >= 50);
    // Every acknowledged write was applied before the revoke, and the store
    // holds the last of them: nothing slipped through after it.
    assert!(
        acked.iter().all(|(_, rev)| *rev <= revoked_at),
        "{acked:?} after {revoked_at}"
    );
    let kv = root.get("app/w", None).await.unwrap();
    let kv = &kv.kvs()[0];
    let (last_value, last_rev) = acked.last().unwrap();
    assert_eq!(kv.value_str().unwrap(), last_value.to_string());
    assert_eq!(kv.mod_revision(), *last_rev);
    assert!(denied_at > *last_value);
    node.stop().await;
}
