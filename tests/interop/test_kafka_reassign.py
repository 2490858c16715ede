"""Partition reassignment (KIP-455) on a four-broker cluster, driven by
kafka-python's AdminClient (AlterPartitionReassignments and
ListPartitionReassignments) while an idempotent acks=all producer writes:
the new replicas copy the partition (starting at the leader's log start when
retention removed the beginning), the switch happens once they are in sync,
the replicas that left drop their copies, and every acknowledged record is
read back at its offset, once. A reassignment that cannot finish (its new
replica is down) is listed, and cancelled back to the original replicas.
"""
import json
import threading
import time
import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer
from kafka import TopicPartition as TP
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import (InvalidReplicationAssignmentError,
                          NoReassignmentInProgressError, UnknownTopicOrPartitionError)

from conftest import wait_until
from kafka_history import History
from test_kafka_replication import SESSION_MS, kafka_cluster, metrics, partitions, read_all

TOPIC = "move"


@pytest.fixture
def four(tmp_path):
    with kafka_cluster(tmp_path, 4, ["--broker-session-timeout-ms", str(SESSION_MS),
                                     "--replica-lag-time-max-ms", "5000",
                                     "--retention-check-ms", "200"]) as c:
        yield c


def settled(cluster, want):
    """Every live node sees each partition with exactly the wanted replicas,
    all in sync and led, and no reassignment under way."""
    for n in cluster.live():
        parts = partitions(n, TOPIC)
        for p, replicas in want.items():
            leader, have, isr = parts.get(p, (-1, [], []))
            if have != replicas or isr != sorted(replicas) or leader not in replicas:
                return False
    return True


def fenced(witness, node_id):
    with urllib.request.urlopen(f"http://127.0.0.1:{witness.admin_port}/cluster", timeout=5) as r:
        nodes = json.loads(r.read())["nodes"]
    return next(n["fenced"] for n in nodes if n["id"] == node_id)


def first_base(node, p):
    """The base offset of the partition's first segment on `node`."""
    return min(int(f.stem) for f in (node.dir / f"{TOPIC}-{p}").glob("*.log"))


def high_watermarks(node):
    """{partition: high watermark} of the topic as `node` holds it (/metrics)."""
    out = {}
    for series, value in metrics(node).items():
        if series.startswith("kafka_topic_partition_current_offset{") and f'topic="{TOPIC}"' in series:
            part = int(series.split('partition="')[1].split('"')[0])
            out[part] = int(value)
    return out


def test_reassignment_moves_replicas_under_load_and_can_be_cancelled(four):
    bootstrap = ",".join(f"127.0.0.1:{n.kafka_port}" for n in four.nodes.values())
    ka = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        # Small segments and retention: the leaders' logs soon start above 0.
        ka.create_topics([NewTopic(TOPIC, replica_assignments={0: [1, 2, 3], 1: [2, 3, 1]},
                                   topic_configs={"min.insync.replicas": "2",
                                                  "segment.bytes": "20000",
                                                  "retention.bytes": "60000"})])
        wait_until(lambda: settled(four, {0: [1, 2, 3], 1: [2, 3, 1]}), what="the topic in sync")

        # Errors change nothing: an unknown broker, a duplicate, an unknown
        # partition, and a cancel with nothing to cancel.
        res = ka.alter_partition_reassignments({TP(TOPIC, 0): [1, 9, 3], TP(TOPIC, 1): [2, 2, 3],
                                                TP(TOPIC, 7): [1, 2, 3]})
        assert res[TP(TOPIC, 0)] is InvalidReplicationAssignmentError
        assert res[TP(TOPIC, 1)] is InvalidReplicationAssignmentError
        assert res[TP(TOPIC, 7)] is UnknownTopicOrPartitionError
        assert ka.alter_partition_reassignments({TP(TOPIC, 0): None})[TP(TOPIC, 0)] \
            is NoReassignmentInProgressError
        assert ka.list_partition_reassignments() == {}
        assert settled(four, {0: [1, 2, 3], 1: [2, 3, 1]})

        # The producer's sends and answers, for Jepsen's Kafka checker.
        history = History()
        acked, errors = history.acked, history.failed
        stop = threading.Event()

        def produce():
            p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                          "linger.ms": 5, "message.timeout.ms": 60000})

            def done(err, msg):
                if err is None:
                    history.ack(msg.value().decode(), msg.partition(), msg.offset())
                else:
                    history.fail(msg.value().decode(), str(err))
            i = 0
            while not stop.is_set():
                value = f"v{i:06d}-" + "x" * 200
                history.send("p1", value)
                p.produce(TOPIC, key=str(i % 16), value=value, on_delivery=done)
                p.poll(0)
                i += 1
                if i % 20 == 0:
                    time.sleep(0.02)
            p.flush(60)

        t = threading.Thread(target=produce)
        t.start()
        try:
            wait_until(lambda: len(acked) > 1500, timeout=60, what="writes acknowledged")
            # Retention has removed the start of the leaders' logs.
            wait_until(lambda: first_base(four.nodes[1], 0) > 0 and first_base(four.nodes[2], 1) > 0,
                       timeout=30, what="retention to remove old segments")

            # A move whose new replica is down cannot finish: it is listed,
            # the old replicas keep serving, and a cancel puts them back.
            four.nodes[4].kill9()
            wait_until(lambda: fenced(four.nodes[1], 4), timeout=SESSION_MS / 1000 + 10, what="node 4 fenced")
            assert ka.alter_partition_reassignments({TP(TOPIC, 0): [1, 2, 4]})[TP(TOPIC, 0)] is None
            ongoing = ka.list_partition_reassignments()
            assert ongoing == {TP(TOPIC, 0): {"replicas": [1, 2, 4, 3], "adding_replicas": [4],
                                              "removing_replicas": [3]}}, ongoing
            before = len(acked)
            wait_until(lambda: len(acked) > before + 200, timeout=30, what="writes during the stuck move")
            assert ka.list_partition_reassignments([TP(TOPIC, 0)]) == ongoing
            # `keel topic describe` shows the move; `keel topic move --cancel` ends it.
            d = four.nodes[2].cli("topic", "describe", TOPIC)["partitions"][0]
            assert (d["replicas"], d["adding"], d["removing"]) == ([1, 2, 4, 3], [4], [3]), d
            assert four.nodes[2].cli("topic", "move", TOPIC, "0", "--cancel")["status"] == "cancelled"
            assert ka.list_partition_reassignments() == {}
            assert ka.alter_partition_reassignments({TP(TOPIC, 0): None})[TP(TOPIC, 0)] \
                is NoReassignmentInProgressError
            wait_until(lambda: settled(four, {0: [1, 2, 3], 1: [2, 3, 1]}), what="the cancel applied")

            # Node 4 returns; partition 0 moves off its leader (node 1) to
            # 2,3,4 and partition 1 becomes 4,3,2, under load.
            four.nodes[4].start()
            wait_until(lambda: not fenced(four.nodes[1], 4), timeout=30, what="node 4 back")
            res = ka.alter_partition_reassignments({TP(TOPIC, 0): [2, 3, 4], TP(TOPIC, 1): [4, 3, 2]})
            assert res == {TP(TOPIC, 0): None, TP(TOPIC, 1): None}, res
            wait_until(lambda: settled(four, {0: [2, 3, 4], 1: [4, 3, 2]}), timeout=60,
                       what="the reassignment complete")
            assert ka.list_partition_reassignments() == {}
            before = len(acked)
            wait_until(lambda: len(acked) > before + 200, timeout=30, what="writes after the move")
        finally:
            stop.set()
            t.join(timeout=90)
        assert not t.is_alive()
        assert not errors, list(errors.items())[:5]

        # Node 1 holds no replica of the topic any more: its copy is gone.
        wait_until(lambda: not any((four.nodes[1].dir / f"{TOPIC}-{p}").exists() for p in (0, 1)),
                   what="node 1's copies removed")
        # Node 4 started at its leader's log start, not at 0.
        assert first_base(four.nodes[4], 0) > 0

        # Every acknowledged record still in the logs is there at its offset,
        # once; retention removed only whole old segments.
        logs = read_all(four, TOPIC, 2, 0, start=OFFSET_BEGINNING)
        starts = {p: min((o for o, _ in recs), default=0) for p, recs in logs.items()}
        faults, summary = history.check(logs, log_start=starts)
        assert not faults, f"{summary}: {faults}"
        seen = {}
        for p, recs in logs.items():
            offsets = [o for o, _ in recs]
            assert offsets == sorted(set(offsets)), f"partition {p}: offsets repeat or go back"
            for o, v in recs:
                assert v not in seen, f"{v[:7]} read twice"
                seen[v] = (p, o)
        assert set(seen) <= set(acked), "records read that were never acknowledged"
        for p in (0, 1):
            first = min((o for o, _ in logs[p]), default=None)
            want = {v: at for v, at in acked.items() if at[0] == p and first is not None and at[1] >= first}
            missing = {v: at for v, at in want.items() if seen.get(v) != at}
            assert not missing, f"partition {p}: {len(missing)} acknowledged records lost or moved"
            top = max(at[1] for at in acked.values() if at[0] == p)
            assert logs[p] and logs[p][-1][0] >= top
        # Every replica of each partition reaches the same end (segment
        # boundaries and retention differ per replica; the offsets do not).
        tops = {p: max(at[1] for at in acked.values() if at[0] == p) + 1 for p in (0, 1)}
        for p, replicas in {0: [2, 3, 4], 1: [4, 3, 2]}.items():
            wait_until(lambda: all(high_watermarks(four.nodes[r]).get(p) == tops[p] for r in replicas),
                       timeout=30, what=f"every replica of {p} at offset {tops[p]}")
    finally:
        ka.close()
