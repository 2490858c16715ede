"""kafka-python against a real keel node, with the client's defaults (an
idempotent producer in kafka-python 3.x) plus the settings each test is about."""
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import InvalidConfigurationError, TopicAlreadyExistsError


def producer(node, **kw):
    return KafkaProducer(bootstrap_servers=node.bootstrap, **kw)


def read(node, topic, n, partition=0):
    c = KafkaConsumer(bootstrap_servers=node.bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000)
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    for m in c:
        out.append(m)
        if len(out) == n:
            break
    c.close()
    return out


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_round_trip_with_every_codec(node, codec):
    p = producer(node, acks="all", compression_type=codec, linger_ms=10)
    futures = [p.send(f"kp-{codec}", key=b"k%d" % i, value=b"v%d" % i) for i in range(1000)]
    p.flush()
    assert [f.get(30).offset for f in futures] == list(range(1000))
    p.close()
    got = read(node, f"kp-{codec}", 1000)
    assert [(m.key, m.value, m.offset) for m in got] == [(b"k%d" % i, b"v%d" % i, i) for i in range(1000)]


def test_offsets_for_times_and_end_offsets(node):
    p = producer(node)
    for i in range(10):
        p.send("kpt", value=b"%d" % i, timestamp_ms=10_000 + i)
    p.flush()
    p.close()
    c = KafkaConsumer(bootstrap_servers=node.bootstrap)
    tp = TopicPartition("kpt", 0)
    assert c.offsets_for_times({tp: 10_004})[tp].offset == 4
    assert c.end_offsets([tp])[tp] == 10
    assert c.beginning_offsets([tp])[tp] == 0
    c.close()


def test_admin_client(node):
    a = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    a.create_topics([NewTopic("kadm", 2, 1, topic_configs={"retention.ms": "60000"})])
    with pytest.raises(TopicAlreadyExistsError):
        a.create_topics([NewTopic("kadm", 2, 1)])
    with pytest.raises(InvalidConfigurationError):
        a.create_topics([NewTopic("kbad", 1, 1, topic_configs={"max.message.bytes": "-3"})])
    assert "kadm" in a.list_topics()
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kadm")])
    text = repr(res)
    assert "retention.ms" in text and "60000" in text
    a.create_partitions({"kadm": NewPartitions(4)})
    assert len(a.describe_topics(["kadm"])[0]["partitions"]) == 4
    a.delete_topics(["kadm"])
    assert "kadm" not in a.list_topics()
    a.close()
