"""DeleteRecords (KIP-107, issue 37), as Kafka's tools use it: confluent-kafka's
`AdminClient.delete_records` and kafka-python's `KafkaAdminClient.delete_records`
against three `keel start` brokers with replication factor 3.

What a user relies on: the answer's low watermark is the new log start on
every in-sync replica, not only the leader's, so after the leader is killed
the new leader starts there too; consumers below it are reset; offsets past
the high watermark and compacted topics are refused and change nothing.
"""
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from conftest import wait_until
from test_kafka_replication import SESSION_MS, admin, bootstrap, full_isr, kafka_cluster, partitions, read_all


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with kafka_cluster(tmp_path_factory.mktemp("records"), 3,
                       ["--broker-session-timeout-ms", str(SESSION_MS),
                        "--replica-lag-time-max-ms", "5000"]) as c:
        yield c


def produce(cluster, topic, per_partition, partitions_n):
    p = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all", "enable.idempotence": True})
    failed = []
    for part in range(partitions_n):
        for i in range(per_partition):
            p.produce(topic, value=f"{part}-{i}", partition=part,
                      on_delivery=lambda err, _m: err and failed.append(err))
    assert p.flush(30) == 0
    assert not failed, failed[:3]


def earliest(cluster, topic, part):
    c = Consumer({"bootstrap.servers": bootstrap(cluster), "group.id": "unused"})
    try:
        low, _high = c.get_watermark_offsets(TopicPartition(topic, part), timeout=10)
        return low
    finally:
        c.close()


def earliest_once(cluster, topic, part):
    """`earliest`, or None while no leader answers (a failover)."""
    try:
        return earliest(cluster, topic, part)
    except KafkaException:
        return None


def create(cluster, topic, partitions_n, configs=None):
    a = admin(cluster.nodes[1])
    a.create_topics([NewTopic(topic, partitions_n, 3, config=configs or {})])[topic].result(timeout=15)
    wait_until(lambda: full_isr(cluster, topic), what=f"{topic} fully in sync")


def test_delete_records_moves_the_start_on_every_in_sync_replica(cluster):
    create(cluster, "trimmed", 2)
    produce(cluster, "trimmed", 100, 2)
    a = admin(cluster.nodes[2])
    fs = a.delete_records([TopicPartition("trimmed", 0, 40), TopicPartition("trimmed", 1, -1)],
                          operation_timeout=15)
    got = {tp.partition: f.result(timeout=20) for tp, f in fs.items()}
    # The answer's low watermark is where the start now is on the leader and
    # its in-sync followers alike; -1 (OFFSET_END) is the high watermark.
    assert got[0].low_watermark == 40, got
    assert got[1].low_watermark == 100, got
    assert earliest(cluster, "trimmed", 0) == 40
    assert earliest(cluster, "trimmed", 1) == 100

    # A consumer from the beginning reads from the new start.
    read = read_all(cluster, "trimmed", 1, 60, start=OFFSET_BEGINNING)
    assert [o for o, _ in read[0]] == list(range(40, 100))
    assert read[0][0][1] == "0-40"

    # The leader of partition 0 dies: the one that takes over had the start
    # too, so nothing below 40 comes back.
    leader = partitions(cluster.nodes[1], "trimmed")[0][0]
    cluster.nodes[leader].kill9()
    witness = next(n for i, n in cluster.nodes.items() if i != leader)
    wait_until(lambda: partitions(witness, "trimmed")[0][0] not in (-1, leader),
               timeout=SESSION_MS / 1000 + 15, what="a new leader for trimmed-0")
    wait_until(lambda: earliest_once(cluster, "trimmed", 0) == 40, what="the new leader answering")
    read = read_all(cluster, "trimmed", 1, 60, start=OFFSET_BEGINNING)
    assert [o for o, _ in read[0]] == list(range(40, 100))

    # It comes back with the start it had (on disk), and catches up.
    cluster.nodes[leader].start()
    wait_until(lambda: full_isr(cluster, "trimmed"), timeout=30, what="the old leader back in sync")
    for i, n in cluster.nodes.items():
        start = (n.dir / "trimmed-0" / "log-start-offset").read_text().strip()
        assert start == "40", (i, start)


def test_kafka_python_deletes_records_and_bad_requests_change_nothing(cluster):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    from kafka.errors import OffsetOutOfRangeError, PolicyViolationError
    create(cluster, "kp", 1)
    create(cluster, "compacted", 1, {"cleanup.policy": "compact"})
    produce(cluster, "kp", 50, 1)
    k = KafkaAdminClient(bootstrap_servers=bootstrap(cluster), request_timeout_ms=15000)
    try:
        out = k.delete_records({KTP("kp", 0): 10}, timeout_ms=15000)
        assert out[KTP("kp", 0)]["low_watermark"] == 10, out
        # Past the high watermark: OFFSET_OUT_OF_RANGE, the start stays.
        with pytest.raises(OffsetOutOfRangeError):
            k.delete_records({KTP("kp", 0): 51}, timeout_ms=15000)
        assert earliest(cluster, "kp", 0) == 10
        # Backwards is no change: the low watermark stays where it was.
        out = k.delete_records({KTP("kp", 0): 5}, timeout_ms=15000)
        assert out[KTP("kp", 0)]["low_watermark"] == 10, out
        # A compacted topic's records are not deleted by offset (Kafka's
        # POLICY_VIOLATION), and its start does not move.
        p = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all"})
        for i in range(5):
            p.produce("compacted", key=f"k{i}", value="v")
        assert p.flush(30) == 0
        with pytest.raises(PolicyViolationError):
            k.delete_records({KTP("compacted", 0): 3}, timeout_ms=15000)
        assert earliest(cluster, "compacted", 0) == 0
    finally:
        k.close()


def test_a_consumer_parked_below_the_new_start_is_reset(cluster):
    """A consumer waiting at an offset that DeleteRecords removes is told
    OFFSET_OUT_OF_RANGE and, with auto.offset.reset=earliest, goes on from
    the start; with `error` it sees the error instead of silently skipping."""
    create(cluster, "parked", 1)
    produce(cluster, "parked", 30, 1)
    c = Consumer({"bootstrap.servers": bootstrap(cluster), "group.id": "strict",
                  "enable.auto.commit": False, "auto.offset.reset": "error"})
    c.assign([TopicPartition("parked", 0, 10)])
    first = None
    deadline = time.monotonic() + 20
    while first is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            first = m.offset()
    assert first == 10
    a = admin(cluster.nodes[1])  # kept alive until the future resolves
    fs = a.delete_records([TopicPartition("parked", 0, 25)], operation_timeout=15)
    assert fs[TopicPartition("parked", 0, 25)].result(timeout=20).low_watermark == 25
    c.seek(TopicPartition("parked", 0, 12))
    err = None
    deadline = time.monotonic() + 20
    while err is None and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() and m.error().code() != KafkaError._PARTITION_EOF:
            err = m.error()
        elif m is not None and not m.error():
            pytest.fail(f"read offset {m.offset()} below the log start 25")
    c.close()
    assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err


def test_log_dirs_and_producers_as_kafka_python_describes_them(cluster):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    create(cluster, "sized", 2)
    produce(cluster, "sized", 100, 2)
    wait_until(lambda: full_isr(cluster, "sized"), what="sized fully in sync")
    k = KafkaAdminClient(bootstrap_servers=bootstrap(cluster), request_timeout_ms=15000)
    try:
        def on_disk(node, p):
            return sum(f.stat().st_size for f in (node.dir / f"sized-{p}").glob("*.log"))

        def sizes_agree():
            dirs = k.describe_log_dirs(["sized"])
            seen = {}
            for broker in dirs:
                for d in broker["log_dirs"]:
                    assert d["error_code"] == 0, d
                    assert d["total_bytes"] >= d["usable_bytes"] > 0, d
                    for t in d["topics"]:
                        for part in t["partitions"]:
                            seen[(broker["broker"], part["partition_index"])] = part["partition_size"]
            want = {(i, p): on_disk(n, p) for i, n in cluster.nodes.items() for p in (0, 1)}
            return seen == want and all(v > 0 for v in want.values())
        # Every broker reports its own replicas, at the bytes its files hold.
        wait_until(sizes_agree, what="every replica's size as on disk")

        # The idempotent producer's state on each partition: one producer,
        # epoch 0, its last sequence the 100th record's.
        got = k.describe_producers([KTP("sized", 0), KTP("sized", 1)])
        for tp in (KTP("sized", 0), KTP("sized", 1)):
            producers = got[tp].active_producers
            assert len(producers) == 1, got
            assert (producers[0].producer_epoch, producers[0].last_sequence) == (0, 99), producers
    finally:
        k.close()


def test_describe_topic_partitions_pages_through_every_partition(cluster):
    """KIP-966 as kafka-python asks it: topics by name, at most N partitions
    a page, a cursor to the next; the pages together are Metadata's view."""
    from kafka import KafkaAdminClient
    create(cluster, "paged-a", 3)
    create(cluster, "paged-b", 4)
    k = KafkaAdminClient(bootstrap_servers=bootstrap(cluster), request_timeout_ms=15000)
    try:
        seen, cursor, pages = [], None, 0
        while True:
            page = k.describe_topic_partitions(["paged-b", "paged-a", "no-such-topic"],
                                               response_partition_limit=2, cursor=cursor)
            pages += 1
            for t in page["topics"]:
                if t["name"] == "no-such-topic":
                    assert t["error_code"] == 3, t  # UNKNOWN_TOPIC_OR_PARTITION
                    continue
                assert t["error_code"] == 0, t
                for p in t["partitions"]:
                    assert len(p["replica_nodes"]) == 3 and p["leader_id"] in p["isr_nodes"], p
                    seen.append((t["name"], p["partition_index"]))
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 10, "the cursor must move on"
        assert seen == [("paged-a", i) for i in range(3)] + [("paged-b", i) for i in range(4)], seen
        assert pages == 4
    finally:
        k.close()
