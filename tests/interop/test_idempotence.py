"""The idempotent producer: retries never duplicate, even across kill -9,
and a consumer group reading through the crash sees every record once, in
order (the whole history through Jepsen's Kafka checker, kafka_history.py)."""
import threading

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until
from kafka_history import History, group_member, members_read_to_the_end
from test_kafka_replication import read_all

GROUP = "idem-readers"


def test_retrying_across_kill_9_and_restart_leaves_no_duplicates(make_node):
    node = make_node().start()
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("idem", 2, 1)])["idem"].result(30)
    total = 40_000
    history = History()

    def on_delivery(err, msg):
        value = msg.value().decode()
        if err:
            history.fail(value, str(err))
        else:
            history.ack(value, msg.partition(), msg.offset())

    p = Producer({
        "bootstrap.servers": node.bootstrap, "enable.idempotence": True, "acks": "all",
        "linger.ms": 2, "message.timeout.ms": 120_000, "retry.backoff.ms": 20,
        "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200, "client.id": "p1",
    })
    # Two committing members read through the crash.
    stop, ends = threading.Event(), {}
    members = [threading.Thread(target=group_member, args=(node.bootstrap, "idem", GROUP, history, f"c{i}", stop, ends),
                                daemon=True) for i in (1, 2)]
    for m in members:
        m.start()
    restarted = threading.Event()
    acked_at_kill = None

    def restart_mid_stream():
        wait_until(lambda: len(history.acked) >= 10_000, timeout=60, what="10000 acknowledged records")
        nonlocal node, acked_at_kill
        node.kill9()
        acked_at_kill = len(history.acked)
        node = make_node(port=node.port).start()
        restarted.set()

    t = threading.Thread(target=restart_mid_stream)
    t.start()
    for i in range(total):
        value = str(i)
        history.send("p1", value)
        while True:
            try:
                p.produce("idem", key=str(i % 2), value=value.encode(), on_delivery=on_delivery)
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
    stop.set()
    assert not history.failed, list(history.failed.items())[:3]
    assert len(history.acked) == total

    final = read_all(None, "idem", 2, total, through=node.bootstrap)
    members_read_to_the_end(history, final, ends, members)
    # Lost, duplicated (one send at two offsets), reordered, inconsistent
    # offsets, commits backwards, reads behind a commit, skips: none.
    faults, summary = history.check(final, groups={"c1": GROUP, "c2": GROUP})
    print(summary)
    assert not faults, f"{summary}: {faults}"
    stored = [v for recs in final.values() for _, v in recs]
    assert sorted(stored, key=int) == [str(i) for i in range(total)], "every record stored, once"
