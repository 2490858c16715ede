//! The simulated log (`SimLog`) is a model of `keel_storage::Log`'s
//! replica bookkeeping: the simulation's verdicts hold for Keel only as far
//! as the model matches. Random sequences of what a replica does (append a
//! batch copied from a leader, begin an epoch as a new leader, truncate by
//! a leader's answer) are run on both, and every epoch lookup must agree.
//! The model once drifted here: `truncate_to` at the log end dropped an
//! epoch begun without records in the model, not in the real log, and a
//! real follower livelocked in truncation that the simulation could not see.

use keel_sim::{Batch, SimLog};
use keel_storage::batch::{build, set_base_offset, set_partition_leader_epoch, KeyValue};
use keel_storage::{Log, LogConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A batch of `n` records at the next epoch step (`bump` higher).
    Append { bump: i32, n: usize },
    /// A leader's new epoch, `bump` above the latest.
    Begin { bump: i32 },
    /// A follower's truncation from a leader's answer (epoch, end).
    Truncate { epoch: i32, end: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..2i32, 1..4usize).prop_map(|(bump, n)| Op::Append { bump, n }),
        (1..3i32).prop_map(|bump| Op::Begin { bump }),
        (-1..12i32, -1..40i64).prop_map(|(epoch, end)| Op::Truncate { epoch, end }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]
    #[test]
    fn the_simulated_log_keeps_epochs_as_the_real_one(ops in proptest::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut real, _) = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        let mut sim = SimLog::default();
        // The epoch the next append or begin builds on (never decreasing,
        // as a replica only ever sees newer leaders).
        let mut epoch = 0;
        for op in &ops {
            match *op {
                Op::Append { bump, n } => {
                    epoch += bump;
                    let base = real.log_end_offset();
                    let value = b"v".to_vec();
                    let kvs: Vec<KeyValue<'_>> = (0..n).map(|_| (None, Some(&value[..]))).collect();
                    let mut b = build(1_000, &kvs);
                    set_base_offset(&mut b, base);
                    set_partition_leader_epoch(&mut b, epoch);
                    real.append_replicated(&b, 0).unwrap();
                    sim.append(Batch { base, epoch, records: vec![0; n] });
                }
                Op::Begin { bump } => {
                    epoch += bump;
                    real.begin_epoch(epoch).unwrap();
                    sim.begin_epoch(epoch);
                }
                Op::Truncate { epoch: le, end } => {
                    let cut = real.truncation_for(le, end).unwrap();
                    real.truncate_to(cut.offset, 0).unwrap();
                    sim.truncate_to(cut.offset);
                }
            }
            prop_assert_eq!(real.log_end_offset(), sim.end(), "log end after {:?}", op);
            prop_assert_eq!(real.latest_epoch().unwrap(), sim.latest_epoch(), "latest epoch after {:?}", op);
            for e in -1..=epoch + 1 {
                prop_assert_eq!(real.epoch_end(e).unwrap(), sim.epoch_end(e), "epoch_end({}) after {:?}", e, op);
            }
        }
    }
}
