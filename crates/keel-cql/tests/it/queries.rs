//! Statements as a CQL user sees them: writes, reads, deletions, the WHERE
//! clause's rules, ordering, paging and conditional writes.

use keel_cql::exec::{Outcome, Params};

use crate::{local, show, Local};

async fn schema(l: &mut Local) {
    l.ok("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}").await;
    l.ok("USE ks").await;
    l.ok("CREATE TABLE t (k text, c int, v text, w int, PRIMARY KEY (k, c))")
        .await;
}

#[tokio::test]
async fn rows_are_written_read_updated_and_deleted() {
    let mut l = local();
    schema(&mut l).await;
    l.ok("INSERT INTO t (k, c, v) VALUES ('a', 1, 'one')").await;
    l.ok("INSERT INTO t (k, c, v, w) VALUES ('a', 2, 'two', 2)")
        .await;
    l.ok("INSERT INTO t (k, c, v) VALUES ('b', 1, 'bee')").await;
    assert_eq!(
        show(&l.rows("SELECT * FROM t WHERE k = 'a'").await),
        ["a,1,one,null", "a,2,two,2"]
    );
    l.ok("UPDATE t SET v = 'uno', w = 1 WHERE k = 'a' AND c = 1")
        .await;
    assert_eq!(
        show(&l.rows("SELECT v, w FROM t WHERE k = 'a' AND c = 1").await),
        ["uno,1"]
    );
    // A column set to null is deleted; the row stays (its marker is live).
    l.ok("UPDATE t SET w = null WHERE k = 'a' AND c = 1").await;
    assert_eq!(
        show(&l.rows("SELECT v, w FROM t WHERE k = 'a' AND c = 1").await),
        ["uno,null"]
    );
    l.ok("DELETE FROM t WHERE k = 'a' AND c = 2").await;
    assert_eq!(show(&l.rows("SELECT c FROM t WHERE k = 'a'").await), ["1"]);
    l.ok("DELETE FROM t WHERE k = 'b'").await;
    assert_eq!(show(&l.rows("SELECT k, c FROM t").await), ["a,1"]);
    // A row an UPDATE made (no marker) goes when its last column goes.
    l.ok("UPDATE t SET v = 'x' WHERE k = 'u' AND c = 1").await;
    l.ok("DELETE v FROM t WHERE k = 'u' AND c = 1").await;
    assert!(l
        .rows("SELECT * FROM t WHERE k = 'u'")
        .await
        .rows
        .is_empty());
    assert_eq!(show(&l.rows("SELECT count(*) FROM t").await), ["1"]);
}

#[tokio::test]
async fn last_write_wins_by_timestamp_and_deletions_do_not_come_back() {
    let mut l = local();
    schema(&mut l).await;
    l.ok("INSERT INTO t (k, c, v) VALUES ('a', 1, 'new') USING TIMESTAMP 200")
        .await;
    l.ok("INSERT INTO t (k, c, v) VALUES ('a', 1, 'old') USING TIMESTAMP 100")
        .await;
    assert_eq!(
        show(&l.rows("SELECT v, writetime(v) FROM t WHERE k = 'a'").await),
        ["new,200"]
    );
    // A row deletion at 300 shadows everything written at or before it...
    l.ok("DELETE FROM t USING TIMESTAMP 300 WHERE k = 'a' AND c = 1")
        .await;
    l.ok("INSERT INTO t (k, c, v) VALUES ('a', 1, 'late') USING TIMESTAMP 250")
        .await;
    assert!(l
        .rows("SELECT * FROM t WHERE k = 'a'")
        .await
        .rows
        .is_empty());
    // ...and a later INSERT of other columns does not bring v back.
    l.ok("INSERT INTO t (k, c, w) VALUES ('a', 1, 7) USING TIMESTAMP 400")
        .await;
    assert_eq!(
        show(&l.rows("SELECT v, w FROM t WHERE k = 'a'").await),
        ["null,7"]
    );
    // The same after a flush and a major compaction.
    let engine = l.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine.flush().unwrap();
        engine.compact(true).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(
        show(&l.rows("SELECT v, w FROM t WHERE k = 'a'").await),
        ["null,7"]
    );
    // A partition deletion shadows older rows, not newer ones.
    l.ok("INSERT INTO t (k, c, v) VALUES ('p', 1, 'x') USING TIMESTAMP 10")
        .await;
    l.ok("INSERT INTO t (k, c, v) VALUES ('p', 2, 'y') USING TIMESTAMP 30")
        .await;
    l.ok("DELETE FROM t USING TIMESTAMP 20 WHERE k = 'p'").await;
    assert_eq!(
        show(&l.rows("SELECT c, v FROM t WHERE k = 'p'").await),
        ["2,y"]
    );
    assert_eq!(
        show(&l.rows("SELECT c, v FROM t WHERE k = 'p' AND c >= 2").await),
        ["2,y"]
    );
    assert!(l
        .rows("SELECT c FROM t WHERE k = 'p' AND c = 1")
        .await
        .rows
        .is_empty());
}

#[tokio::test]
async fn where_clauses_follow_cassandras_rules() {
    let mut l = local();
    schema(&mut l).await;
    for k in ["a", "b", "c"] {
        for c in 0..5 {
            l.ok(&format!(
                "INSERT INTO t (k, c, v, w) VALUES ('{k}', {c}, '{k}{c}', {})",
                c % 2
            ))
            .await;
        }
    }
    assert_eq!(
        show(
            &l.rows("SELECT c FROM t WHERE k = 'b' AND c > 1 AND c <= 3")
                .await
        ),
        ["2", "3"]
    );
    assert_eq!(
        show(
            &l.rows("SELECT c FROM t WHERE k = 'b' AND c IN (4, 0, 9)")
                .await
        ),
        ["0", "4"]
    );
    assert_eq!(
        show(
            &l.rows("SELECT c FROM t WHERE k = 'b' ORDER BY c DESC LIMIT 2")
                .await
        ),
        ["4", "3"]
    );
    assert_eq!(
        l.rows("SELECT k FROM t WHERE k IN ('a', 'c') AND c = 1")
            .await
            .rows
            .len(),
        2
    );
    assert_eq!(
        show(&l.rows("SELECT DISTINCT k FROM t WHERE k = 'a'").await),
        ["a"]
    );
    assert_eq!(
        l.rows("SELECT k, c FROM t PER PARTITION LIMIT 1")
            .await
            .rows
            .len(),
        3
    );
    // Filtering is refused without ALLOW FILTERING, and honoured with it.
    for q in [
        "SELECT * FROM t WHERE w = 1",
        "SELECT * FROM t WHERE c = 1",
        "SELECT * FROM t WHERE k = 'a' AND w = 1",
    ] {
        assert!(l.err(q).await.contains("ALLOW FILTERING"), "{q}");
    }
    assert_eq!(
        l.rows("SELECT * FROM t WHERE w = 1 ALLOW FILTERING")
            .await
            .rows
            .len(),
        6
    );
    assert_eq!(
        show(&l.rows("SELECT k FROM t WHERE c = 4 ALLOW FILTERING").await).len(),
        3
    );
    // ORDER BY needs the partition key; != is not a WHERE operator.
    assert!(l
        .err("SELECT * FROM t ORDER BY c DESC")
        .await
        .contains("ORDER BY is only supported"));
    assert!(l
        .err("SELECT * FROM t WHERE k = 'a' AND c != 1")
        .await
        .contains("!="));
    assert!(l
        .err("SELECT * FROM t WHERE nope = 1")
        .await
        .contains("Undefined column name nope"));
    // token() ranges split a full scan with nothing lost or doubled.
    let all = l.rows("SELECT token(k), k, c FROM t").await;
    assert_eq!(all.rows.len(), 15);
    let mid = i64::from_be_bytes(all.rows[7][0].clone().unwrap()[..8].try_into().unwrap());
    let low = l
        .rows(&format!("SELECT k, c FROM t WHERE token(k) <= {mid}"))
        .await;
    let high = l
        .rows(&format!("SELECT k, c FROM t WHERE token(k) > {mid}"))
        .await;
    let mut both: Vec<String> = show(&low).into_iter().chain(show(&high)).collect();
    both.sort();
    let mut want: Vec<String> = all
        .rows
        .iter()
        .map(|r| {
            format!(
                "{},{}",
                String::from_utf8_lossy(r[1].as_ref().unwrap()),
                i32::from_be_bytes(r[2].clone().unwrap()[..4].try_into().unwrap())
            )
        })
        .collect();
    want.sort();
    assert_eq!(both, want);
}

#[tokio::test]
async fn pages_resume_where_the_last_one_stopped() {
    let mut l = local();
    schema(&mut l).await;
    for k in 0..7 {
        for c in 0..6 {
            l.ok(&format!("INSERT INTO t (k, c) VALUES ('k{k}', {c})"))
                .await;
        }
    }
    for (q, page) in [
        ("SELECT k, c FROM t", 5),
        ("SELECT k, c FROM t WHERE k = 'k3' ORDER BY c DESC", 4),
        ("SELECT k, c FROM t LIMIT 17", 5),
        ("SELECT k, c FROM t PER PARTITION LIMIT 2", 3),
        ("SELECT k, c FROM t WHERE k IN ('k1', 'k5') AND c > 2", 2),
    ] {
        let whole = show(&l.rows(q).await);
        let mut paged = Vec::new();
        let mut state = None;
        let mut pages = 0;
        loop {
            let params = Params {
                page_size: Some(page),
                paging_state: state.clone(),
                ..Params::default()
            };
            let Outcome::Rows(r) = l.run_with(q, params).await.unwrap() else {
                panic!("rows")
            };
            assert!(r.rows.len() <= page as usize);
            paged.extend(show(&r));
            pages += 1;
            state = r.paging_state;
            if state.is_none() {
                break;
            }
            assert!(pages < 100, "{q}: paging does not end");
        }
        assert_eq!(paged, whole, "{q}");
        assert!(pages > 1, "{q}: one page only");
    }
    // A paging state that is not one is a protocol error, not a panic.
    let params = Params {
        page_size: Some(2),
        paging_state: Some(vec![9, 9, 9]),
        ..Params::default()
    };
    assert!(l.run_with("SELECT * FROM t", params).await.is_err());
}

#[tokio::test]
async fn conditional_writes_apply_once() {
    let mut l = local();
    schema(&mut l).await;
    let applied = |o: Outcome| match o {
        Outcome::Rows(r) => r.rows[0][0] == Some(vec![1]),
        o => panic!("{o:?}"),
    };
    assert!(applied(
        l.ok("INSERT INTO t (k, c, v) VALUES ('a', 1, 'x') IF NOT EXISTS")
            .await
    ));
    assert!(!applied(
        l.ok("INSERT INTO t (k, c, v) VALUES ('a', 1, 'y') IF NOT EXISTS")
            .await
    ));
    assert!(!applied(
        l.ok("UPDATE t SET v = 'z' WHERE k = 'a' AND c = 1 IF v = 'y'")
            .await
    ));
    assert!(applied(
        l.ok("UPDATE t SET v = 'z' WHERE k = 'a' AND c = 1 IF v = 'x'")
            .await
    ));
    assert!(applied(
        l.ok("DELETE FROM t WHERE k = 'a' AND c = 1 IF EXISTS")
            .await
    ));
    assert!(!applied(
        l.ok("DELETE FROM t WHERE k = 'a' AND c = 1 IF EXISTS")
            .await
    ));
    // Many racing IF NOT EXISTS on one row: exactly one wins.
    let node = l.node.clone();
    let ks = l.keyspace.clone();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let node = node.clone();
        let ks = ks.clone();
        tasks.push(tokio::spawn(async move {
            let p = keel_cql::exec::parse(&format!(
                "INSERT INTO t (k, c, v) VALUES ('race', 1, 'w{i}') IF NOT EXISTS"
            ))
            .unwrap();
            match node.execute(&ks, &p, &Params::default()).await.unwrap() {
                Outcome::Rows(r) => r.rows[0][0] == Some(vec![1]),
                o => panic!("{o:?}"),
            }
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);
    assert!(l
        .err("INSERT INTO t (k, c, v) VALUES ('a', 1, 'x') IF NOT EXISTS USING TIMESTAMP 5")
        .await
        .contains("timestamp"));
}

#[tokio::test]
async fn bad_statements_get_cassandras_errors_and_change_nothing() {
    let mut l = local();
    schema(&mut l).await;
    assert!(l.err("SELEC * FROM t").await.contains("line 1"));
    assert!(l
        .err("INSERT INTO t (k, v) VALUES ('a', 'x')")
        .await
        .contains("Some clustering key parts are missing: c"));
    assert!(
        l.err("INSERT INTO t (k, c) VALUES ('a', 'notanint')")
            .await
            .len()
            > 3
    );
    assert!(l
        .err("INSERT INTO system.local (key) VALUES ('x')")
        .await
        .contains("not user-modifiable"));
    assert!(l
        .err("CREATE TABLE t (k int PRIMARY KEY)")
        .await
        .contains("already exists"));
    assert!(l.err("SELECT * FROM nope").await.contains("does not exist"));
    assert!(l
        .err("CREATE KEYSPACE bad WITH replication = {'class': 'NoSuchStrategy'}")
        .await
        .contains("NoSuchStrategy"));
    let e = l
        .err("INSERT INTO t (k, c) VALUES ('a', 1) USING TTL -1")
        .await;
    assert!(e.contains("TTL"), "{e}");
    assert!(l.rows("SELECT * FROM t").await.rows.is_empty());
    // A keyspace with replication factor 3 on one node: QUORUM and ALL
    // cannot be met, ONE can.
    l.ok("CREATE KEYSPACE rf3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}").await;
    l.ok("CREATE TABLE rf3.t (k int PRIMARY KEY, v int)").await;
    use cassandra_protocol::consistency::Consistency;
    for (cl, ok) in [
        (Consistency::One, true),
        (Consistency::Quorum, false),
        (Consistency::All, false),
    ] {
        let r = l
            .run_with(
                "INSERT INTO rf3.t (k, v) VALUES (1, 1)",
                Params {
                    consistency: cl,
                    ..Params::default()
                },
            )
            .await;
        match r {
            Ok(_) => assert!(ok, "{cl:?}"),
            Err(keel_cql::CqlError::Unavailable {
                required, alive, ..
            }) => {
                assert!(!ok, "{cl:?}");
                assert_eq!(
                    (required, alive),
                    (if cl == Consistency::All { 3 } else { 2 }, 1)
                );
            }
            Err(e) => panic!("{cl:?}: {e}"),
        }
    }
}
