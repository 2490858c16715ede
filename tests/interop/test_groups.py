"""Consumer groups against the real binary: committed offsets survive kill -9,
members share partitions and take over a dead member's, and group admin works."""
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until
from kafka_history import History
from test_kafka_replication import read_all as read_log

HERE = Path(__file__).resolve().parent


def create(node, topic, partitions, **config):
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1, config=config)])[topic].result(30)
    return admin


def produce(node, topic, values, partitions=None):
    """Produces idempotently with acks=all; values are bytes or (key, value), and
    with `partitions` record i goes to partition i % partitions."""
    p = Producer({"bootstrap.servers": node.bootstrap, "enable.idempotence": True, "acks": "all"})
    for i, v in enumerate(values):
        key, value = v if isinstance(v, tuple) else (None, v)
        where = {} if partitions is None else {"partition": i % partitions}
        p.produce(topic, key=key, value=value, **where)
    assert p.flush(60) == 0


def group_consumer_conf(node, group):
    return {
        "bootstrap.servers": node.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
        "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
    }


def group_consumer(node, group):
    return Consumer(group_consumer_conf(node, group))


def consume(c, n, read, timeout=60, history=None, name=None, group=None):
    """Polls until `read` holds `n` values, committing synchronously after
    each; with `history`, records each read and each commit the broker took
    as consumer `name` of `group`."""
    deadline = time.monotonic() + timeout
    while len(read) < n:
        assert time.monotonic() < deadline, f"read {len(read)} of {n}"
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        if history is not None:
            history.read(name, m.partition(), m.offset(), m.value().decode())
        taken = c.commit(message=m, asynchronous=False)
        if history is not None:
            for tp in taken or []:
                if tp.error is None and tp.offset >= 0:
                    history.commit(group, name, tp.partition, tp.offset)
        read.append(int(m.value()))


def test_group_resumes_from_committed_offsets_after_kill_9(make_node):
    node = make_node().start()
    create(node, "orders", 3)
    produce(node, "orders", [str(i).encode() for i in range(300)], partitions=3)
    # Every read and commit of both members, for Jepsen's Kafka checker.
    history = History()
    c = group_consumer(node, "billing")
    c.subscribe(["orders"])
    read = []
    consume(c, 120, read, history=history, name="c1", group="billing")
    committed_before = c.committed([TopicPartition("orders", p) for p in range(3)], timeout=10)
    assert sum(max(tp.offset, 0) for tp in committed_before) == 120

    node.kill9()
    node = make_node(port=node.port).start()
    # The same member carries on once the node is back...
    consume(c, 200, read, history=history, name="c1", group="billing")
    c.close()
    # ...and a new one starts exactly where the group's commits stand.
    c = group_consumer(node, "billing")
    c.subscribe(["orders"])
    consume(c, 300, read, history=history, name="c2", group="billing")
    extra = c.poll(2)
    assert extra is None or extra.error(), "nothing beyond the 300 records"
    c.close()
    # No offset with two values, no commit going backwards, no member
    # reading below what the group had committed, nothing skipped.
    final = read_log(None, "orders", 3, 300, through=node.bootstrap)
    faults, summary = history.check(final, groups={"c1": "billing", "c2": "billing"})
    assert not faults, f"{summary}: {faults}"
    assert len(read) == len(set(read)), "nothing was read twice"
    assert set(read) == set(range(300)), "nothing was skipped"
    # What was committed before the crash was still there after it.
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "billing"})
    after = c.committed([TopicPartition("orders", p) for p in range(3)], timeout=10)
    assert [tp.offset for tp in after] == [100, 100, 100]
    c.close()


class Member:
    """A group_member.py process and the events it has printed."""

    def __init__(self, node, topic, group):
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "group_member.py"), node.bootstrap, topic, group],
            stdout=subprocess.PIPE, text=True)
        self.events = queue.Queue()
        self.assigned = []
        self.records = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def drain(self):
        while True:
            try:
                e = self.events.get_nowait()
            except queue.Empty:
                return self
            if "assigned" in e:
                self.assigned = e["assigned"]
            else:
                self.records.append(int(e["record"]))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def test_two_kafka_python_members_split_partitions_and_take_over(node):
    create(node, "six", 6)
    a, b = Member(node, "six", "pair"), Member(node, "six", "pair")
    try:
        def split():
            a.drain(), b.drain()
            return (len(a.assigned) == 3 and len(b.assigned) == 3
                    and sorted(a.assigned + b.assigned) == list(range(6)))
        wait_until(split, timeout=60, what="each member to hold 3 of the 6 partitions")
        produce(node, "six", [str(i).encode() for i in range(600)], partitions=6)

        def all_read(n):
            a.drain(), b.drain()
            return len(a.records) + len(b.records) >= n
        wait_until(lambda: all_read(600), timeout=60, what="600 records read by the pair")
        both = a.records + b.records
        assert len(both) == 600 and set(both) == set(range(600)), "every record exactly once"
        assert a.records and b.records, "both members did work"

        # a dies without leaving: after the session timeout (6 s) b owns everything.
        killed_at = time.monotonic()
        a.kill9()
        wait_until(lambda: b.drain().assigned == list(range(6)), timeout=40,
                   what="b to take over a's partitions")
        took = time.monotonic() - killed_at
        assert took >= 5, f"moved after {took:.1f}s, before the 6 s session timeout could expire"
        produce(node, "six", [str(i).encode() for i in range(600, 900)], partitions=6)
        wait_until(lambda: len(b.drain().records) >= len(b.records) and
                   set(range(600, 900)) <= set(b.records), timeout=60, what="b to read the new records")
        after = [r for r in b.records if r >= 600]
        assert len(after) == len(set(after)) == 300
    finally:
        for m in (a, b):
            if m.proc.poll() is None:
                m.proc.terminate()
                m.proc.wait(10)


def read_all(node, topic, partition=0):
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "reader", "enable.auto.commit": False})
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.assign([TopicPartition(topic, partition, lo)])
    out = []
    while True:
        m = c.poll(5)
        assert m is not None, "the partition ended early"
        assert m.error() is None, m.error()
        out.append((m.key().decode(), None if m.value() is None else m.value().decode()))
        if m.offset() >= hi - 1:
            break
    c.close()
    return out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_compacted_topic_keeps_latest_value_per_key_and_drops_tombstones(make_node, codec):
    """Compaction thins batches and writes them back with the producer's codec;
    librdkafka must read every one."""
    node = make_node(extra=["--retention-check-ms", "100", "--log-cleaner-backoff-ms", "100"]).start()
    create(node, "profiles", 1, **{"cleanup.policy": "compact", "segment.bytes": "1024",
                                   "delete.retention.ms": "4000"})
    # A keyless record is refused by a compacted topic.
    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all", "retries": 0})
    errors = []
    p.produce("profiles", value=b"no key", on_delivery=lambda err, m: errors.append(err))
    p.flush(10)
    assert errors and errors[0].name() == "INVALID_RECORD", errors

    p = Producer({"bootstrap.servers": node.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 0, "compression.type": codec})
    for round_ in range(20):
        for k in range(10):
            p.produce("profiles", key=f"user{k}".encode(), value=f"{round_}-{k}".encode())
        p.flush(10)
    p.produce("profiles", key=b"user0", value=None)
    p.produce("profiles", key=b"user1", value=None)
    # Later writes to other keys close the segments that hold all of the above.
    for i in range(20):
        p.produce("profiles", key=f"filler{i}".encode(), value=b"x" * 100)
        p.flush(10)
    def users(count):
        found = [r for r in read_all(node, "profiles") if r[0].startswith("user")]
        return found if len(found) == count else None

    # Within delete.retention.ms a consumer starting over still sees the deletes.
    kept = wait_until(lambda: users(10), timeout=30, what="compaction to keep one record per key")
    assert dict(kept) == {"user0": None, "user1": None,
                          **{f"user{k}": f"19-{k}" for k in range(2, 10)}}
    # After it, the tombstones go too.
    kept = wait_until(lambda: users(8), timeout=30, what="tombstones to go after delete.retention.ms")
    assert dict(kept) == {f"user{k}": f"19-{k}" for k in range(2, 10)}
    fillers = [r for r in read_all(node, "profiles") if r[0].startswith("filler")]
    assert len(fillers) == 20, "keys written once are all kept"


def test_group_admin_list_describe_delete(node):
    create(node, "adm", 2)
    produce(node, "adm", [str(i).encode() for i in range(10)], partitions=2)
    c = group_consumer(node, "auditors")
    c.subscribe(["adm"])
    consume(c, 10, [])
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    groups = {g.group_id: g for g in admin.list_consumer_groups().result(10).valid}
    assert "auditors" in groups and groups["auditors"].state.name == "STABLE"
    d = admin.describe_consumer_groups(["auditors"])["auditors"].result(10)
    assert d.state.name == "STABLE" and len(d.members) == 1
    assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1]
    # A group with members cannot be deleted.
    try:
        admin.delete_consumer_groups(["auditors"])["auditors"].result(10)
        raise AssertionError("deleting a live group succeeded")
    except KafkaException as e:
        assert e.args[0].name() == "NON_EMPTY_GROUP"
    c.close()
    wait_until(lambda: admin.describe_consumer_groups(["auditors"])["auditors"].result(10).state.name == "EMPTY",
               what="the group to be empty after its member left")
    admin.delete_consumer_groups(["auditors"])["auditors"].result(10)
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "auditors"})
    assert [tp.offset for tp in c.committed([TopicPartition("adm", p) for p in range(2)], timeout=10)] == [-1001, -1001]
    c.close()


def java_hash(s):
    """Java's String.hashCode, over UTF-16 code units."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def test_offsets_topic_holds_kafka_formats_in_kafkas_partition(node):
    """Read __consumer_offsets as Kafka's own tools would: the group's records are in
    partition abs(hashCode(group)) % 50, with OffsetCommitKey v1 / OffsetCommitValue v3."""
    import struct
    create(node, "fmt", 1)
    produce(node, "fmt", [b"x"] * 5)
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "formats", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("fmt", 0, 4, "note")], asynchronous=False)
    c.close()
    h = java_hash("formats")
    partition = (0 if h == -(1 << 31) else abs(h)) % 50
    r = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "fmt-reader", "enable.auto.commit": False})
    lo, hi = r.get_watermark_offsets(TopicPartition("__consumer_offsets", partition), timeout=10)
    assert hi > lo, "the commit landed in the partition Kafka would use"
    r.assign([TopicPartition("__consumer_offsets", partition, lo)])
    found = None
    while True:
        m = r.poll(5)
        assert m is not None and m.error() is None
        key = m.key()
        version, = struct.unpack(">h", key[:2])
        if version in (0, 1):
            glen, = struct.unpack(">h", key[2:4])
            group = key[4:4 + glen].decode()
            tlen, = struct.unpack(">h", key[4 + glen:6 + glen])
            topic = key[6 + glen:6 + glen + tlen].decode()
            part, = struct.unpack(">i", key[6 + glen + tlen:])
            v = m.value()
            vversion, offset, epoch, mlen = struct.unpack(">hqih", v[:16])
            # confluent-kafka sends the metadata string with its C terminator.
            meta = v[16:16 + mlen].decode().rstrip("\x00")
            ts, = struct.unpack(">q", v[16 + mlen:])
            if (group, topic, part) == ("formats", "fmt", 0):
                found = (vversion, offset, meta, ts > 0)
        if m.offset() >= hi - 1:
            break
    r.close()
    assert found == (3, 4, "note", True)


def poll_both(consumers, read, until, timeout=60):
    """Polls every consumer in turn until `until()`, committing each record
    asynchronously. (A synchronous commit here would block this one thread while
    its group waits for the other consumer to be polled into the rebalance.) A
    commit that meets a rebalance fails, as with Kafka; the record may then be
    read again by its next owner (at-least-once)."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        for c in consumers:
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                read.append(int(m.value()))
                c.commit(message=m, asynchronous=True)


def test_cooperative_sticky_members_hand_over_partitions_incrementally(node):
    create(node, "coop", 6)
    conf = {"partition.assignment.strategy": "cooperative-sticky"}
    events = []

    def on_assign(who):
        return lambda c, ps: events.append((who, "assign", sorted(p.partition for p in ps)))

    def on_revoke(who):
        return lambda c, ps: events.append((who, "revoke", sorted(p.partition for p in ps)))

    a = Consumer({**group_consumer_conf(node, "coop-g"), **conf})
    a.subscribe(["coop"], on_assign=on_assign("a"), on_revoke=on_revoke("a"))
    read = []
    poll_both([a], read, lambda: len(a.assignment()) == 6)
    produce(node, "coop", [str(i).encode() for i in range(300)], partitions=6)
    poll_both([a], read, lambda: len(read) >= 150)
    b = Consumer({**group_consumer_conf(node, "coop-g"), **conf})
    b.subscribe(["coop"], on_assign=on_assign("b"), on_revoke=on_revoke("b"))
    poll_both([a, b], read, lambda: len(a.assignment()) == 3 and len(b.assignment()) == 3)
    poll_both([a, b], read, lambda: set(read) >= set(range(300)))
    a.close(), b.close()
    assert set(read) == set(range(300)), "nothing skipped"
    # Incremental: a only ever gave up partitions; it never lost all six at once.
    assert ("a", "revoke", [0, 1, 2, 3, 4, 5]) not in events, events
    assert any(e[0] == "a" and e[1] == "revoke" and len(e[2]) == 3 for e in events), events


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(node):
    create(node, "static", 4)

    def conf(instance):
        return {**group_consumer_conf(node, "static-g"), "group.instance.id": instance,
                "session.timeout.ms": 30000}
    a_events = []
    # a joins first and so leads. (A restarting static *leader* rebalances, in Kafka
    # too, for clients before JoinGroup v9's KIP-814; b is the follower here.)
    a = Consumer(conf("a"))
    a.subscribe(["static"], on_assign=lambda c, ps: a_events.append("assign"),
                on_revoke=lambda c, ps: a_events.append("revoke"))
    poll_both([a], [], lambda: len(a.assignment()) == 4)
    b = Consumer(conf("b"))
    b.subscribe(["static"])
    poll_both([a, b], [], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
    b_parts = sorted(p.partition for p in b.assignment())
    a_events.clear()
    # b goes away without leaving (a static member's close does not leave the
    # group, KIP-345) and comes back under the same group.instance.id.
    b.close()
    b = Consumer(conf("b"))
    b.subscribe(["static"])
    poll_both([a, b], [], lambda: len(b.assignment()) == 2)
    assert sorted(p.partition for p in b.assignment()) == b_parts, "the same partitions as before"
    for _ in range(20):
        a.poll(0.05)
    assert a_events == [], f"a saw a rebalance: {a_events}"
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    after = admin.describe_consumer_groups(["static-g"])["static-g"].result(10)
    assert after.state.name == "STABLE"
    assert sorted(m.group_instance_id for m in after.members) == ["a", "b"]
    a.close(), b.close()



def _raw_call(sock, api_key, version, body, correlation=7):
    """One request of the classic (non-flexible) header, its answer's body."""
    import socket
    import struct
    header = struct.pack(">hhi", api_key, version, correlation) + struct.pack(">h", 4) + b"test"
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
    resp = sock.recv(size, socket.MSG_WAITALL)
    assert struct.unpack(">i", resp[:4])[0] == correlation
    return resp[4:]


def _first_groups_are_fetchable(node, tag):
    """FindCoordinator (until __consumer_offsets exists), then OffsetFetch at
    once, for a node's first groups."""
    import socket
    import struct
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        for g in [f"first-{tag}", f"second-{tag}"]:
            key = struct.pack(">h", len(g)) + g.encode()
            deadline = time.monotonic() + 15
            while True:
                err = struct.unpack(">h", _raw_call(sock, 10, 0, key)[:2])[0]
                if err == 0:
                    break
                # COORDINATOR_NOT_AVAILABLE while __consumer_offsets is created.
                assert err == 15 and time.monotonic() < deadline, f"FindCoordinator: error {err}"
                time.sleep(0.05)
            # OffsetFetch v2 for every topic (null): a new group has none.
            r = _raw_call(sock, 9, 2, key + struct.pack(">i", -1))
            topics, err = struct.unpack(">ih", r[:6])
            assert (topics, err) == (0, 0), f"OffsetFetch for {g}: error {err}"


def test_offset_fetch_right_after_find_coordinator_is_answered_by_that_coordinator(tmp_path):
    """A client asks FindCoordinator, then sends OffsetFetch to the node it
    named. On a fresh node the first group creates __consumer_offsets, and
    the node's logs followed the new metadata a moment after FindCoordinator
    had answered from it: OffsetFetch got NOT_COORDINATOR. Checked on fresh
    nodes, over raw sockets so no client retry hides it."""
    from conftest import Node
    for i in range(3):
        n = Node(tmp_path / f"fresh{i}").start()
        try:
            _first_groups_are_fetchable(n, i)
        finally:
            n.stop()
