"""The operator's view: /metrics and /health, and `keel group describe`, agree."""
import json
import subprocess
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from conftest import KEEL


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
