//! The store's write buffer, against a store that makes every batch durable
//! before the next: reads see each applied write before redb holds it, and a
//! crash at any point, followed by replaying the log after the durable index,
//! ends in the same state. Auth changes and writes by users ride along, and
//! a snapshot restored into a fresh store reads the same, auth state included.

use std::time::Duration;

use keel_etcd::pb::authpb::{permission, Permission};
use keel_etcd::pb::etcdserverpb::{
    compare, request_op, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use keel_etcd::pb::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};
use keel_etcd::pb::keelpb::{internal_request, InternalRequest, InternalUserAdd, RequestHeader};
use keel_etcd::store::{Store, StoreConfig};
use keel_raft::{ConfState, StateMachine};
use proptest::prelude::*;
use prost::Message as _;

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        value: u8,
        lease: bool,
        /// Written by `user(who)` (3: no user).
        who: u8,
    },
    /// An auth change, as root (`what` picks it, `who` its user, role and key).
    Auth {
        what: u8,
        who: u8,
    },
    /// The reference's snapshot, restored into a fresh store, reads the same.
    Snapshot,
    Delete {
        key: u8,
        to_end: bool,
        prev_kv: bool,
    },
    /// Put if the key's version is `version`, else read it.
    Cas {
        key: u8,
        version: i64,
        value: u8,
    },
    /// Compact at a revision picked from what exists by `pick`.
    Compact {
        pick: u16,
    },
    Grant,
    Revoke,
    /// End the Raft batch: the subject may hand its buffer to the persister.
    EndBatch,
    /// Drop the subject without a clean stop, reopen it, replay the log.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..6, any::<u8>(), any::<bool>(), 0u8..4).prop_map(|(key, value, lease, who)| Op::Put { key, value, lease, who }),
        3 => (0u8..7, 0u8..3).prop_map(|(what, who)| Op::Auth { what, who }),
        1 => Just(Op::Snapshot),
        2 => (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(key, to_end, prev_kv)| Op::Delete { key, to_end, prev_kv }),
        2 => (0u8..6, 0i64..3, any::<u8>()).prop_map(|(key, version, value)| Op::Cas { key, version, value }),
        1 => any::<u16>().prop_map(|pick| Op::Compact { pick }),
        1 => Just(Op::Grant),
        1 => Just(Op::Revoke),
        4 => Just(Op::EndBatch),
        1 => Just(Op::Crash),
    ]
}

const LEASE: i64 = 7;

fn user(who: u8) -> String {
    ["root", "u1", "u2"][usize::from(who % 3)].to_string()
}

/// root, or a role that may write one key.
fn role(who: u8) -> String {
    ["root", "r1", "r2"][usize::from(who % 3)].to_string()
}

fn header(who: u8, reference: &Store) -> Option<RequestHeader> {
    (who < 3).then(|| RequestHeader {
        username: user(who),
        auth_revision: reference.auth().revision(),
        system: false,
    })
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

fn open(dir: &std::path::Path, persist_interval: Duration) -> Store {
    let config = StoreConfig {
        cluster_id: 1,
        initial_members: vec![],
        quota_bytes: 1 << 30,
        lease_ttl_min: 1,
        persist_interval,
        token_ttl: keel_etcd::auth::TOKEN_TTL_DEFAULT,
        seed: None,
    };
    Store::open(dir, config, Default::default()).unwrap()
}

fn entry(op: &Op, reference: &Store) -> Option<Vec<u8>> {
    use internal_request::Request as R;
    let req = match op {
        Op::Put {
            key: k,
            value,
            lease,
            ..
        } => R::Put(PutRequest {
            key: key(*k),
            value: vec![*value; 1 + *value as usize % 40],
            lease: if *lease { LEASE } else { 0 },
            prev_kv: true,
            ..Default::default()
        }),
        Op::Delete {
            key: k,
            to_end,
            prev_kv,
        } => R::DeleteRange(DeleteRangeRequest {
            key: key(*k),
            range_end: if *to_end { vec![0] } else { vec![] },
            prev_kv: *prev_kv,
        }),
        Op::Cas {
            key: k,
            version,
            value,
        } => R::Txn(TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Version as i32,
                key: key(*k),
                range_end: vec![],
                target_union: Some(compare::TargetUnion::Version(*version)),
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key(*k),
                    value: vec![*value; 3],
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: key(*k),
                    ..Default::default()
                })),
            }],
        }),
        Op::Compact { pick } => {
            let (lo, hi) = (reference.compacted(), reference.revision());
            let span = (hi - lo).max(1);
            R::Compaction(CompactionRequest {
                revision: lo + 1 + i64::from(*pick) % span,
                physical: false,
            })
        }
        Op::Grant => R::LeaseGrant(LeaseGrantRequest { ttl: 60, id: LEASE }),
        Op::Revoke => R::LeaseRevoke(LeaseRevokeRequest { id: LEASE }),
        Op::Auth { what, who } => match what {
            0 => R::UserAdd(InternalUserAdd {
                name: user(*who),
                hashed_password: b"$2b$04$notarealhash".to_vec(),
                no_password: false,
            }),
            1 => R::RoleAdd(AuthRoleAddRequest { name: role(*who) }),
            2 => R::UserGrantRole(AuthUserGrantRoleRequest {
                user: user(*who),
                role: role(*who),
            }),
            3 => R::RoleGrantPermission(AuthRoleGrantPermissionRequest {
                name: role(*who),
                perm: Some(Permission {
                    perm_type: permission::Type::Readwrite as i32,
                    key: key(*who),
                    range_end: vec![],
                }),
            }),
            4 => R::AuthEnable(AuthEnableRequest {}),
            5 => R::AuthDisable(AuthDisableRequest {}),
            _ => R::UserRevokeRole(AuthUserRevokeRoleRequest {
                name: user(*who),
                role: role(*who),
            }),
        },
        Op::EndBatch | Op::Crash | Op::Snapshot => return None,
    };
    let header = match op {
        Op::Put { who, .. } => header(*who, reference),
        Op::Auth { .. } => header(0, reference),
        _ => None,
    };
    Some(
        InternalRequest {
            request: Some(req),
            header,
        }
        .encode_to_vec(),
    )
}

/// Everything a client can read, as text to compare.
fn view(s: &Store) -> String {
    let all = |revision| RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..Default::default()
    };
    let mut out = format!(
        "rev {} compacted {} bytes {} versions {}\n",
        s.revision(),
        s.compacted(),
        s.size_bytes(),
        s.stored_versions()
    );
    for rev in [0, s.compacted(), (s.compacted() + s.revision()) / 2] {
        out += &format!("range@{rev}: {:?}\n", s.range(&all(rev)).map(|r| r.kvs));
    }
    let history = s.history(s.compacted().max(1), s.revision(), 1_000_000);
    let history: Vec<_> = history
        .unwrap()
        .into_iter()
        .map(|r| (r.revision, r.events))
        .collect();
    out += &format!("history: {history:?}\n");
    out += &format!("hash: {:?}\n", s.hash_kv(s.revision()));
    let leases: Vec<_> = s
        .leases()
        .iter()
        .map(|(id, l)| (*id, l.ttl, l.keys.clone()))
        .collect();
    out += &format!("leases: {leases:?}\n");
    out += &format!("auth: {:?}\n", s.auth().state());
    out
}

fn run(ops: Vec<Op>) {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The reference makes each batch durable at its end; the subject hands a
    // batch to its persister whenever the last one is done.
    let mut reference = open(dirs.0.path(), Duration::from_secs(3600));
    let mut subject = Some(open(dirs.1.path(), Duration::ZERO));
    // A watcher on the reference makes its range deletes read every deleted
    // value; the subject, watched by nobody, writes tombstones from its key
    // index alone. Both must end in the same state.
    let _watcher = reference.subscribe();
    let cs = ConfState::default();
    reference.restore(1, 1, &cs, &[]).unwrap();
    subject.as_mut().unwrap().restore(1, 1, &cs, &[]).unwrap();
    let mut log: Vec<Vec<u8>> = Vec::new(); // entry i + 2 is log[i]
    for op in ops.iter().chain([&Op::EndBatch]) {
        match op {
            Op::EndBatch => {
                reference.finish_batch();
                reference.persist(true).unwrap();
                let s = subject.as_mut().unwrap();
                s.finish_batch();
                let durable = s.persist(false).unwrap();
                assert!(
                    durable <= log.len() as u64 + 1,
                    "durable {durable} past the log"
                );
                assert_eq!(view(s), view(&reference), "after {} entries", log.len());
            }
            Op::Snapshot => {
                let dir = tempfile::tempdir().unwrap();
                let mut fresh = open(dir.path(), Duration::ZERO);
                let index = log.len() as u64 + 1;
                fresh.restore(index, 1, &cs, &reference.snapshot()).unwrap();
                assert_eq!(view(&fresh), view(&reference), "a snapshot at {index}");
            }
            Op::Crash => {
                drop(subject.take());
                let mut s = open(dirs.1.path(), Duration::ZERO);
                let (applied, _, _) = s.applied();
                assert!(applied >= 1 && applied <= log.len() as u64 + 1);
                for (i, data) in log.iter().enumerate().skip(applied as usize - 1) {
                    let _ = s.apply(i as u64 + 2, 1, data);
                }
                s.finish_batch();
                subject = Some(s);
            }
            _ => {
                let data = entry(op, &reference).unwrap();
                let index = log.len() as u64 + 2;
                let want = reference
                    .apply(index, 1, &data)
                    .map(|(a, r)| (format!("{a:?}"), r));
                let got = subject
                    .as_mut()
                    .unwrap()
                    .apply(index, 1, &data)
                    .map(|(a, r)| (format!("{a:?}"), r));
                assert_eq!(got, want, "entry {index}: {op:?}");
                log.push(data);
            }
        }
    }
    // A clean stop makes everything durable; a reopen reads it all from redb.
    let mut s = subject.take().unwrap();
    assert_eq!(s.persist(true).unwrap(), log.len() as u64 + 1);
    drop(s);
    let s = open(dirs.1.path(), Duration::ZERO);
    assert_eq!(s.applied().0, log.len() as u64 + 1);
    assert_eq!(view(&s), view(&reference));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn buffered_store_reads_and_recovers_as_a_synchronous_one(
        locked_down in any::<bool>(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        // Half the runs start with auth on: root, and u1 who may write key 1.
        let prelude = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (3, 1), (4, 0)]
            .map(|(what, who)| Op::Auth { what, who });
        let ops = if locked_down { prelude.into_iter().chain(ops).collect() } else { ops };
        run(ops);
    }
}
