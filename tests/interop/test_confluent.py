"""confluent-kafka (librdkafka 2.x from PyPI) against a real keel node: only the
bootstrap address is configured; everything else is the client's default."""
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic
import pytest

from conftest import wait_until


def produce_all(node, topic, values, **conf):
    p = Producer({"bootstrap.servers": node.bootstrap, **conf})
    results = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: results.append((err, msg.offset())))
    assert p.flush(30) == 0
    assert [e for e, _ in results if e] == []
    return [o for _, o in results]


def consume_all(node, topic, n, partition=0, offset=0):
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, offset)])
    out = []
    while len(out) < n:
        m = c.poll(10)
        assert m is not None, f"only {len(out)} of {n} records arrived"
        assert m.error() is None, m.error()
        out.append(m)
    c.close()
    return out


def test_acks_all_snappy_producer_and_earliest_consumer(node):
    values = [f"value-{i}".encode() * 10 for i in range(5000)]
    offsets = produce_all(node, "orders", values, **{"acks": "all", "compression.type": "snappy"})
    assert sorted(offsets) == list(range(5000))
    got = consume_all(node, "orders", 5000)
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(5000))


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "none"])
def test_every_codec_round_trips(node, codec):
    values = [f"{codec}-{i}".encode() for i in range(1000)]
    produce_all(node, f"c-{codec}", values, **{"compression.type": codec, "linger.ms": 20})
    assert [m.value() for m in consume_all(node, f"c-{codec}", 1000)] == values


def test_offsets_by_timestamp_and_watermarks(node):
    p = Producer({"bootstrap.servers": node.bootstrap})
    for i in range(10):
        p.produce("times", value=b"v%d" % i, timestamp=5_000 + 100 * i)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "x", "enable.auto.commit": False})
    assert c.get_watermark_offsets(TopicPartition("times", 0), timeout=10) == (0, 10)
    found = c.offsets_for_times([TopicPartition("times", 0, 5_450)], timeout=10)
    assert found[0].offset == 5
    beyond = c.offsets_for_times([TopicPartition("times", 0, 99_999)], timeout=10)
    assert beyond[0].offset == -1, "no record that late: the end (-1)"
    c.close()


def test_log_append_time_topic_stamps_records(node):
    a = AdminClient({"bootstrap.servers": node.bootstrap})
    a.create_topics([NewTopic("lat", 1, 1, config={"message.timestamp.type": "LogAppendTime"})])["lat"].result(30)
    produce_all(node, "lat", [b"x"], **{})
    (m,) = consume_all(node, "lat", 1)
    kind, ts = m.timestamp()
    assert kind == 2  # TIMESTAMP_LOG_APPEND_TIME
    assert ts > 1_600_000_000_000


def test_admin_api(node):
    a = AdminClient({"bootstrap.servers": node.bootstrap})
    a.create_topics([NewTopic("adm", num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"})])["adm"].result(30)
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("adm", 1, 1)])["adm"].result(30)
    assert e.value.args[0].name() == "TOPIC_ALREADY_EXISTS"
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("bad", 1, 1, config={"retention.ms": "soon"})])["bad"].result(30)
    assert e.value.args[0].name() == "INVALID_CONFIG"
    assert len(a.list_topics(timeout=10).topics["adm"].partitions) == 3
    cfg = a.describe_configs([ConfigResource("topic", "adm")])
    entries = list(cfg.values())[0].result(30)
    assert entries["retention.ms"].value == "3600000"
    assert entries["segment.bytes"].is_default
    res = ConfigResource("topic", "adm", incremental_configs=[ConfigEntry("retention.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
    list(a.incremental_alter_configs([res]).values())[0].result(30)
    entries = list(a.describe_configs([ConfigResource("topic", "adm")]).values())[0].result(30)
    assert entries["retention.bytes"].value == "1048576"
    assert entries["retention.ms"].value == "3600000", "incremental alter keeps other overrides"
    a.create_partitions([NewPartitions("adm", 5)])["adm"].result(30)
    wait_until(lambda: len(a.list_topics(timeout=10).topics["adm"].partitions) == 5, what="5 partitions")
    a.delete_topics(["adm"])["adm"].result(30)
    assert "adm" not in a.list_topics(timeout=10).topics
    cluster = a.describe_cluster().result(30) if hasattr(a, "describe_cluster") else None
    if cluster is not None:
        assert [n.id for n in cluster.nodes] == [1]


def test_retention_by_size_deletes_old_segments(tmp_path, make_node):
    node = make_node(extra=["--retention-check-ms", "100"]).start()
    a = AdminClient({"bootstrap.servers": node.bootstrap})
    a.create_topics([NewTopic("ret", 1, 1, config={"segment.bytes": "65536", "retention.bytes": "131072"})])["ret"].result(30)
    produce_all(node, "ret", [b"r" * 1000 for _ in range(1000)], **{"linger.ms": 5, "batch.size": 16384})
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "x", "enable.auto.commit": False})
    low = wait_until(lambda: c.get_watermark_offsets(TopicPartition("ret", 0), timeout=10)[0], what="retention to advance the log start")
    lo, hi = c.get_watermark_offsets(TopicPartition("ret", 0), timeout=10)
    assert hi == 1000 and 0 < lo < 1000 and (hi - lo) * 1000 < 3 * 131072
    # Reading from the new start works; reading below it is out of range.
    got = consume_all(node, "ret", hi - lo, offset=lo)
    assert got[0].offset() == lo
    c.close()
