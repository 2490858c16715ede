"""Every broker at once (issue 34, items 2 and 3): a three-broker cluster,
replication factor 3, idempotent acks=all producers and a consumer group of
two committing members, while all three brokers are killed with -9 together,
several times, and then the controller alone. Keel promises more than Kafka
here: an acknowledged record was fsynced on every in-sync replica (Keel's
default flush.messages=1), so even a cluster-wide power cut loses nothing.

The whole history goes through Jepsen's Kafka checker (kafka_history.py):
nothing acknowledged lost, nothing duplicated or reordered, no offset with two
values, no committed offset going backwards, no member reading behind what
its group committed, and no record skipped.
"""
import threading
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from conftest import wait_until
from kafka_history import History, group_member, members_read_to_the_end, produce_recorded
from test_kafka_replication import GROUP, SESSION_MS, bootstrap, create, full_isr, kafka_cluster, read_all

TOPIC = "ledger"
PARTITIONS = 3


@pytest.fixture
def cluster(tmp_path):
    with kafka_cluster(tmp_path, 3, ["--broker-session-timeout-ms", str(SESSION_MS),
                                     "--replica-lag-time-max-ms", "5000"]) as c:
        yield c


def produce(cluster, history, name, stop):
    p = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "message.timeout.ms": 180000, "client.id": name})

    produce_recorded(p, TOPIC, history, name, stop, key=lambda i: str(i % 17))
    assert p.flush(180) == 0, "sends still unanswered three minutes after the last fault"


def test_every_broker_killed_at_once_and_the_controller_lose_nothing(cluster):
    create(cluster.nodes[1], NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"}))
    wait_until(lambda: full_isr(cluster, TOPIC), what="a full ISR")
    history = History()
    stop = threading.Event()
    ends = {}
    producers = [threading.Thread(target=produce, args=(cluster, history, f"p{i}", stop)) for i in (1, 2)]
    members = [threading.Thread(target=group_member, args=(bootstrap(cluster), TOPIC, GROUP, history, f"c{i}", stop, ends), daemon=True)
               for i in (1, 2)]
    for t in producers + members:
        t.start()
    timings = []
    try:
        for _ in range(3):
            before = len(history.acked)
            wait_until(lambda: len(history.acked) > before + 300, timeout=60, what="writes acknowledged")
            for n in cluster.nodes.values():
                n.kill9()
            down = time.monotonic()
            for n in cluster.nodes.values():
                n.start(wait=False)
            for n in cluster.nodes.values():
                n.wait_up(timeout=30)
            before = len(history.acked)
            wait_until(lambda: len(history.acked) > before, timeout=60, what="an acknowledgement after the restart")
            timings.append(round(time.monotonic() - down, 1))
            wait_until(lambda: full_isr(cluster, TOPIC), timeout=60, what="the ISR whole again")

        # The controller (the Raft leader) alone.
        before = len(history.acked)
        wait_until(lambda: len(history.acked) > before + 300, timeout=60, what="writes acknowledged")
        controller = cluster.wait_leader()
        cluster.nodes[controller].kill9()
        before = len(history.acked)
        wait_until(lambda: len(history.acked) > before + 300, timeout=SESSION_MS / 1000 + 30,
                   what="writes acknowledged without the controller")
        cluster.nodes[controller].start()
        wait_until(lambda: full_isr(cluster, TOPIC), timeout=60, what="the ISR whole again")
    finally:
        stop.set()
        for t in producers:
            t.join(timeout=200)
    assert not any(t.is_alive() for t in producers), "a producer did not finish"

    final = read_all(cluster, TOPIC, PARTITIONS, len(history.acked))
    # The members read on until the group has read everything the log holds.
    members_read_to_the_end(history, final, ends, members)

    faults, summary = history.check(final, groups={"c1": GROUP, "c2": GROUP})
    print(f"{summary}; first acknowledgement after each cluster-wide kill -9: {timings} s")
    assert not faults, f"{summary}: {faults}"
    assert not history.failed, f"sends failed: {list(history.failed.items())[:5]}"
    assert len(history.acked) > 2000
    assert set(history.acked) <= {v for recs in final.values() for _, v in recs}
