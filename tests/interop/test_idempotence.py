"""The idempotent producer: retries never duplicate, even across kill -9."""
import threading

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until


def read_partition(node, topic, partition):
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "check", "enable.auto.commit": False})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.assign([TopicPartition(topic, partition, lo)])
    out = []
    while len(out) < hi - lo:
        m = c.poll(10)
        assert m is not None and m.error() is None
        out.append(int(m.value()))
    c.close()
    return out


def test_retrying_across_kill_9_and_restart_leaves_no_duplicates(make_node):
    node = make_node().start()
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("idem", 2, 1)])["idem"].result(30)
    total = 40_000
    acked, failed = set(), []
    lock = threading.Lock()

    def on_delivery(err, msg):
        with lock:
            if err:
                failed.append(err)
            else:
                acked.add(int(msg.value()))

    p = Producer({
        "bootstrap.servers": node.bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 2, "message.timeout.ms": 120_000, "retry.backoff.ms": 20,
        "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
    })
    restarted = threading.Event()
    acked_at_kill = None

    def restart_mid_stream():
        wait_until(lambda: len(acked) >= 10_000, timeout=60, what="10000 acknowledged records")
        nonlocal node, acked_at_kill
        node.kill9()
        with lock:
            acked_at_kill = len(acked)
        node = make_node(port=node.port).start()
        restarted.set()

    t = threading.Thread(target=restart_mid_stream)
    t.start()
    for i in range(total):
        while True:
            try:
                p.produce("idem", key=str(i % 2), value=str(i).encode(), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    while t.is_alive():
        p.poll(0.05)  # delivery callbacks run only inside poll()
    t.join()
    assert restarted.is_set()
    assert acked_at_kill < total, "the kill landed mid-stream, with records still unacknowledged"
    assert p.flush(120) == 0
    assert failed == [], failed[:3]
    assert len(acked) == total

    stored = [read_partition(node, "idem", part) for part in range(2)]
    everything = stored[0] + stored[1]
    assert len(everything) == len(set(everything)), f"{len(everything) - len(set(everything))} duplicates"
    assert set(everything) == set(range(total)), "every acknowledged record is stored"
    for vals in stored:
        assert vals == sorted(vals), "in order within each partition"
