//! Snapshot tests of the CLI's tables and JSON, against a real `keel dev`.
//! Values that differ per run (cluster and topic ids, member ids, ports,
//! timestamps) are replaced by placeholders before comparing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

struct Node {
    child: Child,
    kafka: String,
    admin: String,
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
            // Tests run side by side: no fixed port for the etcd face either.
            "--etcd-addr",
            "127.0.0.1:0",
            "--peer-addr",
            "127.0.0.1:0",
            "--cql-addr",
            "127.0.0.1:0",
        ])
        .args(["--group-initial-rebalance-delay-ms", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut kafka = None;
    let mut admin = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("Kafka:") {
            kafka = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.trim().strip_prefix("Admin:") {
            // "http://HOST:PORT/metrics ..."
            admin = rest
                .split_whitespace()
                .next()
                .and_then(|u| u.strip_prefix("http://"))
                .and_then(|u| u.split('/').next())
                .map(str::to_string);
        }
        if line.trim().starts_with("Stop:") {
            break;
        }
    }
    Node {
        child,
        kafka: kafka.expect("the banner names the Kafka address"),
        admin: admin.expect("the banner names the admin address"),
        _dir: dir,
    }
}

/// Runs the CLI; returns (exit success, stdout, stderr).
fn keel(node: &Node, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(KEEL)
        .args(args)
        .env("KEEL_BROKERS", &node.kafka)
        .env("KEEL_ADMIN", &node.admin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ok(node: &Node, args: &[&str]) -> String {
    let (success, out, err) = keel(node, args, "");
    assert!(success, "keel {args:?} failed: {err}");
    out
}

/// Replaces UUIDs (member ids) with a placeholder.
fn redact_uuids(s: &str) -> String {
    let b = s.as_bytes();
    let shape = [8, 4, 4, 4, 12];
    let mut out = String::new();
    let mut i = 0;
    'scan: while i < b.len() {
        let mut j = i;
        for (n, len) in shape.iter().enumerate() {
            if j + len > b.len() || !b[j..j + len].iter().all(u8::is_ascii_hexdigit) {
                out.push(b[i] as char);
                i += 1;
                continue 'scan;
            }
            j += len;
            if n < 4 {
                if b.get(j) != Some(&b'-') {
                    out.push(b[i] as char);
                    i += 1;
                    continue 'scan;
                }
                j += 1;
            }
        }
        out.push_str("[uuid]");
        i = j;
    }
    out
}

fn redact(node: &Node, s: &str, cluster_id: &str, topic_id: Option<&str>) -> String {
    let port = node.kafka.rsplit(':').next().unwrap();
    let mut s = s.replace(cluster_id, "[cluster-id]");
    if let Some(id) = topic_id {
        s = s.replace(id, "[topic-id]");
    }
    let s = redact_uuids(&s);
    s.replace(port, "[port]")
}

#[test]
fn cli_tables_and_json() {
    let node = start();
    let info: serde_json::Value =
        serde_json::from_str(&ok(&node, &["cluster", "info", "-o", "json"])).unwrap();
    let cluster_id = info["cluster_id"].as_str().unwrap().to_string();
    let r = |s: &str, topic_id: Option<&str>| redact(&node, s, &cluster_id, topic_id);

    insta::assert_snapshot!("cluster_info", r(&ok(&node, &["cluster", "info"]), None));
    insta::assert_snapshot!(
        "cluster_info_json",
        r(&serde_json::to_string_pretty(&info).unwrap(), None)
    );

    insta::assert_snapshot!(
        "topic_create",
        ok(
            &node,
            &[
                "topic",
                "create",
                "orders",
                "-p",
                "3",
                "-c",
                "retention.ms=3600000"
            ]
        )
    );
    ok(&node, &["topic", "create", "audit", "-p", "1"]);
    insta::assert_snapshot!("topic_list", ok(&node, &["topic", "list"]));
    insta::assert_snapshot!(
        "topic_list_json",
        ok(&node, &["topic", "list", "-o", "json"])
    );

    let (success, out, err) = keel(
        &node,
        &["produce", "orders", "-k", ":", "-H", "src=cli"],
        "alice:1\nbob:2\ncarol:3\ndave:4\nerin:5\n",
    );
    assert!(success, "{err}");
    insta::assert_snapshot!("produce", out);

    let described: serde_json::Value =
        serde_json::from_str(&ok(&node, &["topic", "describe", "orders", "-o", "json"])).unwrap();
    let topic_id = described["id"].as_str().unwrap().to_string();
    insta::assert_snapshot!(
        "topic_describe",
        r(
            &ok(&node, &["topic", "describe", "orders"]),
            Some(&topic_id)
        )
    );
    insta::assert_snapshot!(
        "topic_describe_json",
        r(
            &serde_json::to_string_pretty(&described).unwrap(),
            Some(&topic_id)
        )
    );

    insta::assert_snapshot!(
        "consume_format",
        ok(&node, &["consume", "orders", "-F", "%p/%o %k=%v [%h]\\n"])
    );
    let mut records: Vec<serde_json::Value> =
        ok(&node, &["consume", "orders", "-o", "json", "--from", "1"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    for rec in &mut records {
        assert!(rec["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        rec["timestamp"] = serde_json::json!("[timestamp]");
    }
    insta::assert_snapshot!(
        "consume_json",
        serde_json::to_string_pretty(&records).unwrap()
    );

    // A group reads one record, commits, and leaves: partition 0 has one more.
    ok(
        &node,
        &[
            "consume", "orders", "-g", "billing", "-n", "1", "-F", "%v\\n",
        ],
    );
    insta::assert_snapshot!("group_list", ok(&node, &["group", "list"]));
    insta::assert_snapshot!(
        "group_describe",
        r(
            &ok(&node, &["group", "describe", "billing"]),
            Some(&topic_id)
        )
    );
    insta::assert_snapshot!(
        "group_describe_json",
        r(
            &ok(&node, &["group", "describe", "billing", "-o", "json"]),
            Some(&topic_id)
        )
    );
    insta::assert_snapshot!(
        "group_reset_dry_run",
        ok(
            &node,
            &[
                "group",
                "reset-offsets",
                "billing",
                "--topic",
                "orders",
                "--to",
                "earliest",
                "--dry-run"
            ]
        )
    );
    insta::assert_snapshot!(
        "group_reset",
        ok(
            &node,
            &[
                "group",
                "reset-offsets",
                "billing",
                "--topic",
                "orders",
                "--to",
                "latest"
            ]
        )
    );
    insta::assert_snapshot!(
        "topic_alter_config",
        ok(
            &node,
            &[
                "topic",
                "alter-config",
                "orders",
                "--set",
                "retention.ms=7200000"
            ]
        )
    );
    insta::assert_snapshot!("group_delete", ok(&node, &["group", "delete", "billing"]));
    insta::assert_snapshot!("topic_delete", ok(&node, &["topic", "delete", "audit"]));
}

#[test]
fn errors_are_one_line_and_name_the_problem() {
    let node = start();
    ok(&node, &["topic", "create", "t", "-p", "1"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["topic", "describe", "ghost"],
            "topic \"ghost\" does not exist",
        ),
        (
            &["topic", "delete", "ghost"],
            "topic \"ghost\" does not exist",
        ),
        (&["consume", "ghost"], "topic \"ghost\" does not exist"),
        (&["produce", "ghost"], "topic \"ghost\" does not exist"),
        (
            &["group", "describe", "ghost"],
            "group \"ghost\" does not exist",
        ),
        (
            &["group", "delete", "ghost"],
            "group \"ghost\" does not exist",
        ),
        (
            &["consume", "t", "--from", "yesterday"],
            "--from \"yesterday\": expected beginning, end",
        ),
        (
            &["consume", "t", "--from", "99"],
            "offset 99 is out of range for t-0",
        ),
        (&["topic", "create", "t"], "create topic \"t\""),
    ];
    for (args, want) in cases {
        let (success, out, err) = keel(&node, args, "");
        assert!(!success, "keel {args:?} succeeded: {out}");
        assert_eq!(err.lines().count(), 1, "keel {args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(want),
            "keel {args:?}: {err}"
        );
    }
    // A broker that is down.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for args in [
        &["topic", "list"][..],
        &["topic", "create", "t"],
        &["topic", "describe", "t"],
        &["topic", "delete", "t"],
        &["topic", "alter-config", "t", "--set", "retention.ms=1"],
        &["produce", "t"],
        &["consume", "t"],
        &["group", "list"],
        &["group", "describe", "g"],
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to",
            "earliest",
        ],
        &["group", "delete", "g"],
        &["cluster", "info"],
    ] {
        let out = Command::new(KEEL)
            .args(args)
            .env("KEEL_BROKERS", format!("127.0.0.1:{port}"))
            .output()
            .unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("cannot reach a broker at 127.0.0.1:{port}")),
            "{err}"
        );
    }
}

#[test]
fn a_reader_that_goes_away_ends_a_tool_quietly() {
    use std::io::Read;
    // `keel completion bash | head -3`: the reader closes after a few bytes.
    let mut child = Command::new(KEEL)
        .args(["completion", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout dropped here: every later write meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // Ended by SIGPIPE, as cat or grep would be (the shell shows 141).
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(13),
        "{:?}",
        out.status
    );
}
