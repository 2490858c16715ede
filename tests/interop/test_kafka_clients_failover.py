"""kafka-python, KafkaJS and kcat on a three-broker cluster: each runs its
normal workflow (a producer and a consumer group member, side by side) while
the leader of a partition it writes is killed with -9, and keeps going
without a restart. Their histories (sends, where each was acknowledged,
what the consumer read at which offset) go through the Kafka checker
(kafka_history.py): nothing lost, duplicated, reordered, read at an offset
that held something else, or skipped; the consumer saw every record.
(confluent-kafka does the same in test_kafka_replication.py.)
"""
import json
import shutil
import subprocess
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING

from conftest import KEEL, wait_until
from kafka_history import History
from test_kafka_replication import (SESSION_MS, bootstrap, full_isr, kafka_cluster, metrics, partitions,
                                    read_all)
from test_kafkajs import JS

PARTITIONS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    where = tmp_path_factory.mktemp("clients")
    with kafka_cluster(where, 3, [
            "--broker-session-timeout-ms", str(SESSION_MS), "--replica-lag-time-max-ms", "5000",
            "--leader-imbalance-check-interval-ms", "1000"]) as c:
        yield c
    # The three brokers' logs take gigabytes: kept only when a test of the module failed.
    if request.session.testsfailed == 0:
        shutil.rmtree(where, ignore_errors=True)


def make_topic(cluster, topic):
    node = cluster.nodes[1]
    r = subprocess.run([str(KEEL), "topic", "create", topic, "-p", str(PARTITIONS), "-r", "3",
                        "-c", "min.insync.replicas=2", "--brokers", f"127.0.0.1:{node.kafka_port}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: full_isr(cluster, topic), timeout=30, what="a full ISR")


def written(cluster, topic):
    """Records the leaders of `topic` hold (their high watermarks summed)."""
    total = 0
    for p, (leader, _, _) in partitions(cluster.nodes[1], topic).items():
        node = cluster.nodes.get(leader)
        if node is None or not node.alive():
            continue
        key = f'kafka_topic_partition_current_offset{{partition="{p}",topic="{topic}"}}'
        total += int(metrics(node).get(key, 0))
    return total


def kill_leader_midway(cluster, topic, after):
    """Once `after` records are written, kill -9 the leader of partition 0;
    bring it back once another leads, and wait for the ISR to be whole."""
    wait_until(lambda: written(cluster, topic) >= after, timeout=60, what=f"{after} records written")
    leader = partitions(cluster.nodes[1], topic)[0][0]
    victim = cluster.nodes[leader]
    victim.kill9()
    witness = next(n for i, n in cluster.nodes.items() if i != leader)
    wait_until(lambda: partitions(witness, topic)[0][0] not in (leader, -1),
               timeout=SESSION_MS / 1000 + 20, what="a new leader")
    victim.start()
    return leader


def check_log(cluster, topic, values, history):
    """Every value is in the log exactly once, and nothing else is; the
    client's history has no fault against the log."""
    logs = read_all(cluster, topic, PARTITIONS, len(values), start=OFFSET_BEGINNING)
    faults, summary = history.check(logs)
    assert not faults, f"{summary}: {faults}"
    got = [v for recs in logs.values() for _, v in recs]
    assert len(got) == len(set(got)), "a record was written twice"
    assert set(got) == set(values), (f"{len(set(values) - set(got))} delivered records missing, "
                                     f"{len(set(got) - set(values))} never sent")
    for p, recs in logs.items():
        offsets = [o for o, _ in recs]
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets skip or repeat"


def settle(cluster, topic):
    wait_until(lambda: all(n.alive() for n in cluster.nodes.values()), what="every node up")
    wait_until(lambda: full_isr(cluster, topic), timeout=60, what="the ISR whole again")


def test_kafka_python_keeps_going_through_a_leader_kill(cluster):
    from kafka import KafkaConsumer, KafkaProducer
    topic, count = "kp-failover", 3000
    make_topic(cluster, topic)
    seen, errors = set(), []
    history = History()
    stop = threading.Event()

    def consume():
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap(cluster), group_id="kp-group",
                          auto_offset_reset="earliest", enable_auto_commit=True,
                          auto_commit_interval_ms=500)
        try:
            while not stop.is_set() and len(seen) < count:
                for recs in c.poll(timeout_ms=200).values():
                    for r in recs:
                        history.read("kp-consumer", r.partition, r.offset, r.value.decode())
                        seen.add(r.value.decode())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    reader = threading.Thread(target=consume)
    reader.start()
    # kafka-python 3.x: idempotent by default; acks=all.
    p = KafkaProducer(bootstrap_servers=bootstrap(cluster), acks="all", linger_ms=5,
                      delivery_timeout_ms=60000, request_timeout_ms=10000)
    killer = threading.Thread(target=kill_leader_midway, args=(cluster, topic, count // 3))
    killer.start()
    futures = []
    for i in range(count):
        history.send("kp", f"v{i}")
        futures.append(p.send(topic, key=f"k{i % 13}".encode(), value=f"v{i}".encode()))
        if i % 10 == 9:
            time.sleep(0.02)
    acked = [f.get(timeout=60) for f in futures]
    for i, md in enumerate(acked):
        history.ack(f"v{i}", md.partition, md.offset)
    p.close()
    killer.join(timeout=120)
    wait_until(lambda: len(seen) >= count, timeout=60, what="the consumer to see every record")
    stop.set()
    reader.join(timeout=30)
    assert not errors, errors
    assert len(acked) == count
    check_log(cluster, topic, [f"v{i}" for i in range(count)], history)
    settle(cluster, topic)


def test_kafkajs_keeps_going_through_a_leader_kill(cluster):
    topic, count = "js-failover", 3000
    make_topic(cluster, topic)
    assert (JS / "node_modules" / "kafkajs").exists(), "run npm ci in tests/interop/js"
    proc = subprocess.Popen(["node", str(JS / "client.js"), bootstrap(cluster), "stream", topic, "js-group",
                             str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        kill_leader_midway(cluster, topic, count // 3)
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        (cluster.base / "kafkajs.err").write_text(err)
        raise AssertionError(f"KafkaJS did not finish: {err[-3000:]}")
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    result = json.loads(out)
    assert result["acked"] == count
    assert set(result["seen"]) == {f"v{i}" for i in range(count)}
    history = History()
    for v, partition, offset in result["acks"]:
        history.send("js", v, partition)
        history.ack(v, partition, offset)
    for partition, offset, v in result["reads"]:
        history.read("js-consumer", partition, offset, v)
    check_log(cluster, topic, [f"v{i}" for i in range(count)], history)
    settle(cluster, topic)


def test_kcat_keeps_going_through_a_leader_kill(cluster):
    topic, count = "kcat-failover", 3000
    make_topic(cluster, topic)
    # A balanced consumer (-G) printing each record's partition, offset and
    # value; it may see some twice (at-least-once when its coordinator
    # moves), so distinct values count.
    consumer = subprocess.Popen(["kcat", "-C", "-b", bootstrap(cluster), "-G", "kcat-group", topic,
                                 "-X", "auto.offset.reset=earliest", "-f", "%p %o %s\n", "-q", "-u"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    history = History()

    def read():
        for line in consumer.stdout:
            partition, offset, value = line.split()
            history.read("kcat-consumer", int(partition), int(offset), value)
            seen.add(value)
    reader = threading.Thread(target=read)
    reader.start()
    # kcat exits non-zero if any record could not be delivered.
    producer = subprocess.Popen(["kcat", "-P", "-b", bootstrap(cluster), "-t", topic, "-K", ":",
                                 "-X", "acks=all", "-X", "enable.idempotence=true",
                                 "-X", "message.timeout.ms=60000", "-X", "linger.ms=5"],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    want = {f"v{i}" for i in range(count)}
    try:
        killer = threading.Thread(target=kill_leader_midway, args=(cluster, topic, count // 3))
        killer.start()
        for i in range(count):
            history.send("kcat", f"v{i}")
            producer.stdin.write(f"k{i % 13}:v{i}\n")
            if i % 10 == 9:
                producer.stdin.flush()
                time.sleep(0.02)
        producer.stdin.close()
        assert producer.wait(timeout=120) == 0, producer.stderr.read()[-3000:]
        # Exit status 0: every record delivered (kcat does not say where).
        for i in range(count):
            history.ack(f"v{i}", None, None)
        killer.join(timeout=120)
        wait_until(lambda: want <= seen, timeout=60, what="the consumer to see every record")
        assert consumer.poll() is None, "the consumer exited: " + consumer.stderr.read()[-3000:]
    finally:
        producer.kill()
        consumer.terminate()
        consumer.wait(timeout=30)
        reader.join(timeout=30)
    assert seen == want
    check_log(cluster, topic, sorted(want), history)
    settle(cluster, topic)
