//! The tables face with ScyllaDB's Rust driver (`scylla`), unchanged, against
//! a real `keel dev`: schema, prepared statements, a batch, paging by the
//! driver's paging state, a lightweight transaction, consistency levels and
//! an error the driver must decode.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::batch::Batch;
use scylla::statement::{Consistency, SerialConsistency, Statement};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

struct Node {
    child: Child,
    cql: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(KEEL)
        .args([
            "dev",
            "--kafka-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--etcd-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            "--cql-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut cql = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("CQL:") {
            cql = rest.split_whitespace().next().map(str::to_string);
        }
        if line.trim().starts_with("Stop:") {
            break;
        }
    }
    Node {
        child,
        cql: cql.expect("the banner names the CQL address"),
        _dir: dir,
    }
}

async fn all_rows(s: &Session, q: &str) -> Vec<(i32, String)> {
    s.query_unpaged(q, &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(i32, String)>()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scylla_rust_driver_round_trip() {
    let node = start();
    let s = SessionBuilder::new()
        .known_node(&node.cql)
        .build()
        .await
        .expect("the driver connects and reads system.local/peers");
    s.query_unpaged(
        "CREATE KEYSPACE rs WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
        &[],
    )
    .await
    .unwrap();
    s.query_unpaged("CREATE TABLE rs.kv (k int PRIMARY KEY, v text)", &[])
        .await
        .unwrap();
    // The driver sees the table in its schema metadata once agreed.
    s.await_schema_agreement().await.unwrap();

    // Prepared statements, at a chosen consistency.
    let mut ins = s
        .prepare("INSERT INTO rs.kv (k, v) VALUES (?, ?)")
        .await
        .unwrap();
    ins.set_consistency(Consistency::All);
    for k in 0..25 {
        s.execute_unpaged(&ins, (k, format!("v{k}"))).await.unwrap();
    }
    let sel = s
        .prepare("SELECT k, v FROM rs.kv WHERE k = ?")
        .await
        .unwrap();
    let row = s
        .execute_unpaged(&sel, (7,))
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i32, String)>()
        .unwrap();
    assert_eq!(row, (7, "v7".to_string()));

    // A logged batch of unprepared statements with bound values.
    let mut batch = Batch::default();
    batch.append_statement("INSERT INTO rs.kv (k, v) VALUES (?, ?)");
    batch.append_statement("UPDATE rs.kv SET v = ? WHERE k = ?");
    s.batch(&batch, ((100, "b"), ("seven", 7))).await.unwrap();
    assert_eq!(
        all_rows(&s, "SELECT k, v FROM rs.kv WHERE k IN (7, 100)").await,
        vec![(7, "seven".into()), (100, "b".into())]
    );

    // Paging: pages of 10 by the paging state the server hands back.
    let mut q = Statement::new("SELECT k, v FROM rs.kv");
    q.set_page_size(10);
    let mut paging = PagingState::start();
    let mut keys = Vec::new();
    let mut pages = 0;
    loop {
        let (res, next) = s.query_single_page(q.clone(), &[], paging).await.unwrap();
        pages += 1;
        let rows = res.into_rows_result().unwrap();
        assert!(rows.rows_num() <= 10);
        keys.extend(rows.rows::<(i32, String)>().unwrap().map(|r| r.unwrap().0));
        match next {
            PagingStateResponse::HasMorePages { state } => paging = state,
            PagingStateResponse::NoMorePages => break,
        }
    }
    keys.sort_unstable();
    let mut want: Vec<i32> = (0..25).collect();
    want.push(100);
    assert_eq!(keys, want);
    assert!(pages >= 3, "{pages} pages");

    // A lightweight transaction: the first applies, the second sees it.
    let mut lwt = Statement::new("INSERT INTO rs.kv (k, v) VALUES (500, 'first') IF NOT EXISTS");
    lwt.set_serial_consistency(Some(SerialConsistency::Serial));
    let first = s.query_unpaged(lwt.clone(), &[]).await.unwrap();
    let first = first.into_rows_result().unwrap();
    assert_eq!(first.single_row::<(bool,)>().unwrap(), (true,));
    // Not applied: [applied] and the row the condition saw.
    let second = s.query_unpaged(lwt, &[]).await.unwrap();
    let second = second.into_rows_result().unwrap();
    assert_eq!(
        second.single_row::<(bool, i32, String)>().unwrap(),
        (false, 500, "first".to_string())
    );

    // An error the driver decodes: a table that does not exist.
    let err = s
        .query_unpaged("SELECT * FROM rs.nope", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    // The session still serves.
    assert_eq!(
        all_rows(&s, "SELECT k, v FROM rs.kv WHERE k = 500").await,
        vec![(500, "first".into())]
    );
}
