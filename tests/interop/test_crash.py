"""kill -9 of the node mid-stream: every acknowledged record survives, exactly
once and in order; nothing unacknowledged is invented; the node restarts."""
import threading

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import wait_until
from kafka_history import History


def test_kill_9_mid_stream_loses_no_acknowledged_record(make_node):
    node = make_node().start()
    acked, failed = [], []
    lock = threading.Lock()
    history = History()

    def on_delivery(err, msg):
        with lock:
            (failed if err else acked).append((int(msg.value()), msg.partition(), msg.offset()))
        if err:
            history.fail(msg.value().decode(), str(err))
        else:
            history.ack(msg.value().decode(), msg.partition(), msg.offset())

    # No retries across the crash: a record is acknowledged at most once.
    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all", "linger.ms": 2,
                  "message.timeout.ms": 3000, "retries": 0, "compression.type": "lz4"})
    stop = threading.Event()

    def pump():
        i = 0
        while not stop.is_set():
            try:
                p.produce("crash", key=str(i % 4), value=str(i).encode(), on_delivery=on_delivery)
                history.send("p1", str(i))
                i += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0)

    # Four partitions so the crash lands across several logs.
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("crash", 4, 1)])["crash"].result(30)
    t = threading.Thread(target=pump)
    t.start()
    wait_until(lambda: len(acked) >= 20_000, timeout=60, what="20000 acknowledged records")
    node.kill9()
    stop.set()
    t.join()
    p.flush(10)
    with lock:
        acked_now = list(acked)
    assert len(acked_now) >= 20_000

    node = make_node(port=node.port).start()
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "check", "enable.auto.commit": False})
    stored = {}
    for part in range(4):
        lo, hi = c.get_watermark_offsets(TopicPartition("crash", part), timeout=10)
        assert lo == 0
        c.assign([TopicPartition("crash", part, 0)])
        vals = []
        while len(vals) < hi:
            m = c.poll(10)
            assert m is not None and m.error() is None
            vals.append((int(m.value()), m.offset()))
        stored[part] = vals
    c.close()

    # The Kafka history checker: lost, duplicated, reordered, two values at an offset.
    faults, summary = history.check({part: [(o, str(v)) for v, o in vals] for part, vals in stored.items()})
    assert not faults, f"{summary}: {faults}"
    for part, vals in stored.items():
        offsets = [o for _, o in vals]
        assert offsets == list(range(len(vals))), "dense offsets from 0"
        values = [v for v, _ in vals]
        assert len(values) == len(set(values)), "no record stored twice"
        assert values == sorted(values), "order within a partition is the order produced"
    where = {v: (part, o) for part, vals in stored.items() for v, o in vals}
    for v, part, off in acked_now:
        assert where.get(v) == (part, off), f"acknowledged record {v} at {part}/{off} is missing or moved"


def test_sigterm_and_ctrl_c_stop_cleanly_and_keep_everything(make_node):
    import signal
    node = make_node().start()
    assert f"Kafka:  {node.bootstrap}" in node.banner and str(node.data_dir) in node.banner
    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all"})
    for i in range(1000):
        p.produce("clean", value=b"%d" % i)
    assert p.flush(30) == 0
    assert node.stop(signal.SIGTERM) == 0
    assert "stopped cleanly" in node.logs()
    assert (node.data_dir / "clean-0" / "clean-shutdown").exists()

    node = make_node(port=node.port).start()
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "c", "enable.auto.commit": False})
    assert c.get_watermark_offsets(TopicPartition("clean", 0), timeout=10) == (0, 1000)
    c.close()
    assert node.stop(signal.SIGINT) == 0, "Ctrl-C stops cleanly too"
