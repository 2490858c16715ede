"""The operator's view: /metrics and /health, and `keel group describe`, agree."""
import json
import subprocess
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from conftest import KEEL, wait_until


def keel(node, *args):
    r = subprocess.run([str(KEEL), *args], capture_output=True, text=True, timeout=60,
                       env={"KEEL_BROKERS": node.bootstrap, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def scrape(node):
    with urllib.request.urlopen(f"{node.admin}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_metrics_report_the_lag_keel_group_describe_shows(node):
    keel(node, "topic", "create", "events", "-p", "3")
    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all"})
    for i in range(30):
        p.produce("events", value=str(i).encode(), partition=i % 3)
    assert p.flush(30) == 0
    # A group commits part of each partition: 4, 7 and 0 records (partition 2 untouched
    # but committed at 0, so its whole backlog is lag).
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "lagging", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("events", 0, 4), TopicPartition("events", 1, 7),
                      TopicPartition("events", 2, 0)], asynchronous=False)
    c.close()

    described = json.loads(keel(node, "group", "describe", "lagging", "-o", "json"))
    cli_lag = {(o["topic"], o["partition"]): o["lag"] for o in described["offsets"]}
    assert cli_lag == {("events", 0): 6, ("events", 1): 3, ("events", 2): 10}

    m = scrape(node)
    metric_lag = {
        (dict(k)["topic"], int(dict(k)["partition"])): v
        for (name, k), v in m.items()
        if name == "kafka_consumergroup_lag" and dict(k)["consumergroup"] == "lagging"
    }
    assert metric_lag == cli_lag
    assert m[("kafka_consumergroup_lag_sum", (("consumergroup", "lagging"), ("topic", "events")))] == 19
    assert m[("kafka_brokers", ())] == 1
    assert m[("kafka_topic_partitions", (("topic", "events"),))] == 3
    for part in range(3):
        labels = (("partition", str(part)), ("topic", "events"))
        assert m[("kafka_topic_partition_current_offset", labels)] == 10
        assert m[("kafka_topic_partition_oldest_offset", labels)] == 0
        assert m[("kafka_topic_partition_under_replicated_partition", labels)] == 0
        assert m[("keel_log_size_bytes", labels)] > 0
    assert m[("keel_requests_total", (("api", "Produce"),))] >= 1
    assert m[("keel_request_duration_seconds_count", (("api", "OffsetCommit"),))] >= 1
    assert m[("keel_topic_bytes_in_total", (("topic", "events"),))] > 0
    assert m[("keel_fsync_duration_seconds_count", ())] > 0
    assert m[("keel_connections_accepted_total", ())] > 0

    with urllib.request.urlopen(f"{node.admin}/health", timeout=10) as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and health["node_id"] == 1


def test_cleaner_honours_kafkas_compaction_configs_and_reports_its_work(make_node):
    """A user sets Kafka's cleaner configs through a real admin client; the node
    validates them, describes them back, cleans when due and counts the work."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    node = make_node(extra=["--log-cleaner-backoff-ms", "100"]).start()
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    bad = admin.create_topics([NewTopic("prefs", 1, 1, config={"cleanup.policy": "compact",
                                                              "min.cleanable.dirty.ratio": "2"})])
    try:
        bad["prefs"].result(30)
        raise AssertionError("a dirty ratio of 2 was accepted")
    except KafkaException as e:
        assert e.args[0].name() == "INVALID_CONFIG", e
    configs = {"cleanup.policy": "compact", "segment.bytes": "4096",
               "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
    admin.create_topics([NewTopic("prefs", 1, 1, config=configs)])["prefs"].result(30)
    described = admin.describe_configs([ConfigResource("topic", "prefs")])
    entries = list(described.values())[0].result(30)
    assert entries["min.cleanable.dirty.ratio"].value == "0.01"
    assert entries["max.compaction.lag.ms"].value == str(2**63 - 1)

    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(400):
        p.produce("prefs", key=f"user{i % 7}".encode(), value=f"{i}".encode())
        if i % 20 == 19:
            p.flush(10)
    p.flush(10)

    def cleaned():
        m = scrape(node)
        removed = m[("keel_log_cleaner_records_removed_total", ())]
        return removed if removed > 0 and m[("keel_log_cleaner_bytes_read_total", ())] > 0 else None

    wait_until(cleaned, timeout=30, what="the cleaner to remove superseded records")
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "prefs-reader",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("prefs", 0, 0)])
    seen = []
    while len(seen) < 400:
        msgs = c.consume(500, timeout=2)
        if not msgs:
            break
        seen += [(m.offset(), m.key().decode(), m.value().decode()) for m in msgs if not m.error()]
    c.close()
    # Fewer records than were written, offsets still increasing, and each key's
    # last value is the one written last.
    assert 7 <= len(seen) < 400
    assert [o for o, _, _ in seen] == sorted(o for o, _, _ in seen)
    latest = {k: v for _, k, v in seen}
    assert latest == {f"user{k}": str(max(i for i in range(400) if i % 7 == k)) for k in range(7)}


def test_a_panic_on_any_thread_stops_the_node_and_says_where(make_node):
    """Issue 34 item 6: a panic outside a contained CQL request (here a task on
    a tokio worker, which tokio alone would swallow, leaving a node that
    accepts connections it may no longer answer) ends the process with 101 and
    a line naming the thread and the source location; the node restarts with
    everything it acknowledged."""
    n = make_node().start()
    p = Producer({"bootstrap.servers": n.bootstrap, "acks": "all"})
    acked = []
    for i in range(50):
        p.produce("before-panic", f"v{i}".encode(),
                  on_delivery=lambda err, msg: acked.append(msg.offset()) if err is None else None)
    assert p.flush(30) == 0 and len(acked) == 50
    try:
        urllib.request.urlopen(urllib.request.Request(f"{n.admin}/lab/panic", method="POST"), timeout=5).read()
    except OSError:
        pass  # the process may end before it answers
    code = n.proc.wait(timeout=20)
    n.stopped = True  # it stopped on purpose: the fixture must not count it as a surprise
    log = n.logs()
    assert code == 101, f"exit code {code}; log ends:\n{log[-2000:]}"
    stop = [line for line in log.splitlines() if line.startswith("keel: stopped because thread")]
    assert stop, f"no stop line; log ends:\n{log[-2000:]}"
    assert "panicked at crates/keel/src/admin.rs:" in stop[-1], stop[-1]
    assert "a panic asked for by POST /lab/panic" in stop[-1], stop[-1]

    again = make_node(port=n.port, etcd_port=n.etcd_port, cql_port=n.cql_port).start()
    c = Consumer({"bootstrap.servers": again.bootstrap, "group.id": "after-panic",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("before-panic", 0, 0)])
    seen = []
    wait_until(lambda: seen.extend(m.value() for m in c.consume(50, 1.0) if m.error() is None) or len(seen) >= 50,
               timeout=30, what="the 50 acknowledged records after the restart")
    c.close()
    assert seen == [f"v{i}".encode() for i in range(50)]
