use super::*;

fn role(me: i32, leader: i32, epoch: i32, isr: &[i32]) -> Role {
    Role {
        me,
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
        replicas: vec![1, 2, 3],
        partition_epoch: 0,
        last_unclean_epoch: 0,
    }
}

#[test]
fn the_high_watermark_is_the_isrs_smallest_durable_end() {
    let (mut r, change) = Replica::<u32>::new(role(1, 1, 5, &[1, 2, 3]), 0);
    assert_eq!(change.begin_epoch, Some(5));
    // Followers that have not fetched yet hold it back.
    assert_eq!(r.high_watermark(10), Some(i64::MIN));
    r.on_fetch(2, 5, 7, 10, 1).unwrap();
    r.on_fetch(3, 5, 4, 10, 1).unwrap();
    assert_eq!(r.high_watermark(10), Some(4));
    assert_eq!(
        r.high_watermark(3),
        Some(3),
        "the leader's own durable end counts too"
    );
    // A replica outside the ISR does not hold it back.
    r.set_role(role(1, 1, 5, &[1, 2]), 2, false);
    assert_eq!(r.high_watermark(10), Some(7));
    // A follower has none of its own.
    let (f, change) = Replica::<u32>::new(role(2, 1, 5, &[1, 2, 3]), 0);
    assert_eq!(change.begin_epoch, None);
    assert_eq!(f.high_watermark(10), None);
}

#[test]
fn fetches_are_fenced_by_epoch_and_role() {
    let (mut r, _) = Replica::<u32>::new(role(1, 1, 5, &[1, 2, 3]), 0);
    assert_eq!(
        r.on_fetch(2, 4, 0, 10, 1),
        Err(Refusal::FencedLeaderEpoch {
            asked: 4,
            current: 5
        })
    );
    assert_eq!(
        r.on_fetch(2, 6, 0, 10, 1),
        Err(Refusal::UnknownLeaderEpoch {
            asked: 6,
            current: 5
        })
    );
    assert!(matches!(
        r.on_fetch(9, 5, 0, 10, 1),
        Err(Refusal::NotLeader(_))
    ));
    assert_eq!(
        r.on_fetch(2, 5, 11, 10, 1),
        Err(Refusal::OffsetOutOfRange {
            offset: 11,
            end: 10
        })
    );
    let (f, _) = Replica::<u32>::new(role(2, 1, 5, &[1, 2, 3]), 0);
    assert!(f.check_following(1, 5).is_ok());
    assert!(f.check_following(3, 5).is_err(), "another leader");
    assert!(f.check_following(1, 4).is_err(), "an older epoch");
    assert!(
        f.check_following(1, 6).is_err(),
        "a newer epoch than applied"
    );
    assert!(r.check_following(1, 5).is_err(), "a leader follows nobody");
}

#[test]
fn acks_all_waits_for_the_high_watermark_and_checks_min_insync_at_the_answer() {
    let (mut r, _) = Replica::<&str>::new(role(1, 1, 1, &[1, 2, 3]), 0);
    assert_eq!(r.wait(5, 5, "done already"), Some("done already"));
    assert_eq!(r.wait(8, 5, "a"), None);
    assert_eq!(r.wait(12, 5, "b"), None);
    assert!(r.release(7, 3).is_empty());
    assert_eq!(r.release(9, 3), vec![("a", Ok(()))]);
    // The ISR shrinks to two; the high watermark passes "b" because of it.
    r.set_role(role(1, 1, 1, &[1, 2]), 1, false);
    assert_eq!(
        r.release(12, 3),
        vec![(
            "b",
            Err(Refusal::NotEnoughReplicasAfterAppend { isr: 2, min: 3 })
        )]
    );
    assert_eq!(r.waiting(), 0);
}

#[test]
fn losing_leadership_fails_every_waiting_write() {
    let (mut r, _) = Replica::<u32>::new(role(1, 1, 1, &[1, 2, 3]), 0);
    r.wait(8, 0, 1);
    r.wait(9, 0, 2);
    let change = r.set_role(role(1, 2, 2, &[2, 3]), 1, false);
    assert!(change.lost_leadership);
    assert_eq!(change.failed, vec![1, 2]);
    assert_eq!(r.waiting(), 0);
    // Leading again at a new epoch starts the followers afresh.
    let change = r.set_role(role(1, 1, 3, &[1, 2, 3]), 2, false);
    assert_eq!(change.begin_epoch, Some(3));
    assert_eq!(r.follower(2).unwrap().leo, i64::MIN);
}

#[test]
fn the_isr_sheds_laggards_and_takes_back_replicas_that_caught_up() {
    let (mut r, _) = Replica::<u32>::new(role(1, 1, 1, &[1, 2, 3]), 0);
    r.on_fetch(2, 1, 10, 10, 100).unwrap();
    r.on_fetch(3, 1, 4, 10, 100).unwrap();
    // Node 3 last caught up at 0 (its allowance from the epoch's start).
    assert_eq!(r.isr_change(50, 100, 4, 0, |_| true), None);
    assert_eq!(r.isr_change(150, 100, 4, 0, |_| true), Some(vec![1, 2]));
    r.set_role(role(1, 1, 1, &[1, 2]), 150, false);
    // It fetches everything: caught up, at the high watermark, past the epoch start.
    r.on_fetch(3, 1, 10, 10, 160).unwrap();
    assert_eq!(r.isr_change(170, 100, 10, 0, |_| true), Some(vec![1, 2, 3]));
    // Not before it reaches the start of this leader's epoch.
    assert_eq!(r.isr_change(170, 100, 10, 11, |_| true), None);
}

#[test]
fn truncation_cuts_where_the_logs_stop_agreeing() {
    let local = [(0, 0), (2, 4)];
    let t = |offset, done| Truncation { offset, done };
    // The leader has our latest epoch: the shorter end of it.
    assert_eq!(truncation(&local, 9, 2, 7), t(7, true));
    assert_eq!(truncation(&local, 6, 2, 7), t(6, true));
    // The leader has an epoch of ours below our latest: where ours ends, if first.
    assert_eq!(truncation(&local, 9, 0, 3), t(3, true));
    assert_eq!(truncation(&local, 9, 0, 6), t(4, true));
    // The leader names an epoch we never had: back to our end of the one below, ask again.
    assert_eq!(truncation(&local, 9, 1, 7), t(4, false));
    // Nothing of ours is known to the leader.
    assert_eq!(truncation(&local, 9, -1, -1), t(0, true));
    // The leader's epoch is below all of ours: ours from 5 were written by
    // another leader than its records up to 7; cut at 5.
    assert_eq!(truncation(&[(3, 5)], 9, 1, 7), t(5, true));
    assert_eq!(truncation(&[(3, 5)], 9, 1, 4), t(4, true));
    // Seed 2235: our epoch 1 from 0, the leader's epoch 0 up to 11: all goes.
    assert_eq!(truncation(&[(1, 0)], 11, 0, 11), t(0, true));
}

/// KIP-497's maximal ISR, found missing by keel-sim's seed 187.
#[test]
fn while_an_isr_expansion_is_in_flight_the_high_watermark_waits_for_the_new_member() {
    let (mut r, _) = Replica::<u32>::new(role(1, 1, 1, &[1, 2]), 0);
    r.on_fetch(2, 1, 10, 10, 100).unwrap();
    r.on_fetch(3, 1, 8, 10, 100).unwrap();
    assert_eq!(r.high_watermark(10), Some(10), "node 3 is outside the ISR");
    let isr = r
        .isr_change(100, 1_000, 8, 0, |_| true)
        .expect("node 3 caught up to the high watermark");
    assert_eq!(isr, vec![1, 2, 3]);
    r.proposed_isr(isr, 100);
    // The controller may have applied it already: node 3's copy counts from now.
    assert_eq!(r.high_watermark(12), Some(8));
    assert_eq!(
        r.isr_change(200, 1_000, 8, 0, |_| true),
        None,
        "one proposal at a time"
    );
    // The change comes back in the metadata: the ISR is the applied one again.
    r.set_role(role(1, 1, 1, &[1, 2, 3]), 300, false);
    r.on_fetch(3, 1, 12, 12, 300).unwrap();
    r.on_fetch(2, 1, 12, 12, 300).unwrap();
    assert_eq!(r.high_watermark(12), Some(12));
    // A proposed shrink does not lower the bar: the applied ISR still counts.
    r.proposed_isr(vec![1, 2], 400);
    r.on_fetch(2, 1, 14, 14, 400).unwrap();
    assert_eq!(
        r.high_watermark(14),
        Some(12),
        "node 3 is still in the applied ISR"
    );
    // A proposal that never comes back is made again after the retry interval.
    r.set_role(role(1, 1, 1, &[1, 2, 3]), 401, false);
    assert!(r
        .isr_change(401 + ISR_PROPOSAL_RETRY_MS + 10_000, 1_000, 12, 0, |_| true)
        .is_some());
}

#[test]
fn only_an_unclean_election_after_the_cut_records_makes_a_truncation_a_loss() {
    // Clean elections only: a cut tail was never committed.
    assert_eq!(truncation_loss(0, Some(3), 10, 60), None);
    // An unclean election at epoch 4, after the records' epoch 3: all of them.
    assert_eq!(truncation_loss(4, Some(3), 10, 60), Some((10, 60)));
    // The unclean election came before these records were written.
    assert_eq!(truncation_loss(4, Some(4), 10, 60), None);
    assert_eq!(truncation_loss(4, Some(5), 10, 60), None);
    // Nothing cut, nothing lost.
    assert_eq!(truncation_loss(4, Some(3), 60, 60), None);
}

#[test]
fn a_fenced_replica_is_never_proposed_and_a_refused_proposal_stops_counting() {
    let (mut r, _) = Replica::<u32>::new(role(1, 1, 1, &[1, 3]), 0);
    r.on_fetch(2, 1, 10, 10, 100).unwrap();
    r.on_fetch(3, 1, 10, 10, 100).unwrap();
    // Node 2 looks caught up by the leader's clock, but the metadata says fenced.
    assert_eq!(r.isr_change(150, 1_000, 10, 0, |id| id != 2), None);
    // Proposed anyway (an older check) and refused: it no longer holds the
    // high watermark back.
    r.proposed_isr(vec![1, 2, 3], 150);
    r.on_fetch(3, 1, 14, 14, 160).unwrap();
    assert_eq!(
        r.high_watermark(14),
        Some(10),
        "node 2 counts while proposed"
    );
    r.isr_proposal_refused();
    assert_eq!(r.high_watermark(14), Some(14));
}
