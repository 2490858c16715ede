"""Client quotas (issue 37): set and described through kafka-python's
protocol messages for AlterClientQuotas/DescribeClientQuotas (KIP-546; its
admin client has no quota methods, so the test sends them on the admin
client's own connections), and enforced as Kafka enforces them: a producer
or consumer over its byte rate is slowed to it by `throttle_time_ms` and a
muted connection, with no error, while other clients go at full speed.

The node measures over 3 windows of 1 s (`--quota-window-num 3`) instead of
Kafka's 11, so a new client's allowance before its first throttle (two
windows' worth) is used up within the test's first seconds.
"""
import json
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.protocol.admin.client_quotas import (AlterClientQuotasRequest,
                                                DescribeClientQuotasRequest)
from kafka.protocol.metadata import MetadataRequest

from conftest import Node, report_unexpected_exit, wait_until

WINDOWS = ["--quota-window-num", "3", "--quota-window-size-seconds", "1"]


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "data", extra=WINDOWS).start()
    yield n
    died = report_unexpected_exit(n)
    n.stop()
    assert died is None, f"keel exited by itself with {died}"


def send(admin, request):
    async def go():
        return await admin._manager.send(request)
    return admin._manager.run(go)


def entity(**parts):
    E = AlterClientQuotasRequest.EntryData.EntityData
    return [E(entity_type=t.replace("_", "-"), entity_name=n) for t, n in parts.items()]


def alter(admin, entries, validate_only=False):
    Entry = AlterClientQuotasRequest.EntryData
    Op = Entry.OpData
    req = AlterClientQuotasRequest(
        entries=[Entry(entity=ent, ops=[Op(key=k, value=float(v or 0), remove=v is None) for k, v in ops.items()])
                 for ent, ops in entries],
        validate_only=validate_only)
    resp = send(admin, req)
    return [(e.error_code, e.error_message) for e in resp.entries]


def describe(admin, components, strict=False):
    C = DescribeClientQuotasRequest.ComponentData
    resp = send(admin, DescribeClientQuotasRequest(
        components=[C(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict))
    if resp.error_code:
        return resp.error_code, resp.error_message
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity): {v.key: v.value for v in entry.values}
            for entry in resp.entries}


def test_quotas_are_set_described_kept_and_refused_as_kafka_does(tmp_path):
    n = Node(tmp_path / "data", extra=WINDOWS).start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=n.bootstrap)
        ok = alter(admin, [
            (entity(client_id="slow"), {"producer_byte_rate": 1024000, "consumer_byte_rate": 2048000}),
            (entity(user=None), {"request_percentage": 50.5}),
            (entity(user="ann", client_id=None), {"producer_byte_rate": 1000}),
        ])
        assert ok == [(0, None)] * 3, ok
        # Refused, each with INVALID_REQUEST (42) and a reason; nothing changes.
        bad = alter(admin, [
            (entity(client_id="slow"), {"producer_byte_rate": 10.5}),      # not a whole number
            (entity(client_id="slow"), {"producer_byte_rate": -5}),        # not positive
            (entity(client_id="slow"), {"made_up_rate": 5}),               # unknown key
            (entity(group="g"), {"producer_byte_rate": 5}),                # unknown entity type
            (entity(ip="127.0.0.1"), {"connection_creation_rate": 5}),     # not enforced by Keel
            ([], {"producer_byte_rate": 5}),                               # empty entity
        ])
        assert [c for c, _ in bad] == [42] * 6, bad
        assert all(m for _, m in bad), bad
        # validate_only checks and changes nothing.
        assert alter(admin, [(entity(client_id="dry"), {"producer_byte_rate": 5})], validate_only=True) == [(0, None)]

        everything = describe(admin, [])
        assert everything == {
            (("client-id", "slow"),): {"producer_byte_rate": 1024000.0, "consumer_byte_rate": 2048000.0},
            (("user", None),): {"request_percentage": 50.5},
            (("client-id", None), ("user", "ann")): {"producer_byte_rate": 1000.0},
        }, everything
        # Match types: 0 exact name, 1 the default, 2 any; strict leaves out
        # entities with other parts.
        assert list(describe(admin, [("client-id", 0, "slow")])) == [(("client-id", "slow"),)]
        assert list(describe(admin, [("user", 1, None)], strict=True)) == [(("user", None),)]
        assert len(describe(admin, [("user", 2, None)])) == 2
        assert describe(admin, [("user", 0, "ann")], strict=True) == {}
        assert describe(admin, [("user", 2, None), ("user", 2, None)])[0] == 42
        assert describe(admin, [("group", 2, None)])[0] == 42

        # Removing a key; an entity left with none is gone.
        assert alter(admin, [(entity(client_id="slow"), {"consumer_byte_rate": None}),
                             (entity(user=None), {"request_percentage": None})]) == [(0, None)] * 2
        admin.close()

        # The quotas are cluster metadata: they survive a kill -9.
        n.kill9()
        n = Node(tmp_path / "data", port=n.port, extra=WINDOWS, etcd_port=n.etcd_port, cql_port=n.cql_port).start()
        admin = KafkaAdminClient(bootstrap_servers=n.bootstrap)
        assert describe(admin, []) == {
            (("client-id", "slow"),): {"producer_byte_rate": 1024000.0},
            (("client-id", None), ("user", "ann")): {"producer_byte_rate": 1000.0},
        }
        admin.close()
    finally:
        n.stop()


class Rate:
    """A producer that sends as fast as librdkafka takes records, counting
    acknowledged bytes by the second they were acknowledged in."""

    def __init__(self, bootstrap, topic, client_id, seconds):
        self.stats = []
        self.errors = []
        self.acked = []  # (time, bytes)
        self.p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "acks": "all",
                           "linger.ms": 5, "batch.size": 16384, "queue.buffering.max.messages": 300,
                           "statistics.interval.ms": 1000,
                           "stats_cb": self.stats.append})
        self.topic, self.seconds = topic, seconds
        self.thread = threading.Thread(target=self.run)

    def run(self):
        value = b"x" * 1000
        self.start = time.monotonic()
        end = self.start + self.seconds
        while time.monotonic() < end:
            try:
                self.p.produce(self.topic, value, on_delivery=self.delivered)
            except BufferError:
                self.p.poll(0.01)
            self.p.poll(0)
        assert self.p.flush(60) == 0

    def delivered(self, err, msg):
        if err:
            self.errors.append(err)
        else:
            self.acked.append((time.monotonic() - self.start, len(msg.value())))

    def rate(self, since, until):
        return sum(b for t, b in self.acked if since <= t < until) / (until - since)

    def throttled_ms(self):
        """The longest throttle librdkafka was told of, from its statistics."""
        most = 0
        for s in self.stats:
            for b in json.loads(s)["brokers"].values():
                most = max(most, b["throttle"]["max"])
        return most


def test_a_produce_quota_slows_its_producer_to_the_rate_and_no_other(node):
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("quoted", 4, 1)])["quoted"].result(15)
    ka = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    limit = 128 * 1024
    assert alter(ka, [(entity(client_id="slow"), {"producer_byte_rate": limit})]) == [(0, None)]
    ka.close()

    slow = Rate(node.bootstrap, "quoted", "slow", 10)
    fast = Rate(node.bootstrap, "quoted", "fast", 10)
    for r in (slow, fast):
        r.thread.start()
    for r in (slow, fast):
        r.thread.join(90)
        assert not r.thread.is_alive()
    assert not slow.errors and not fast.errors, (slow.errors[:3], fast.errors[:3])
    # After its allowance (two windows' worth, in the first seconds), the
    # slow producer goes at its limit; the other is not held back by it.
    measured = slow.rate(4, 10)
    print(f"slow: {measured / 1024:.0f} KiB/s against a limit of {limit / 1024:.0f} KiB/s; "
          f"fast: {fast.rate(4, 10) / 1024:.0f} KiB/s; throttles told: {slow.throttled_ms()} ms, {fast.throttled_ms()} ms")
    assert 0.75 * limit <= measured <= 1.25 * limit, measured
    # The other producer is never throttled; what it reaches depends on what
    # else the two cores run (1.3 MB/s beside the heaviest tests, 40-90 MB/s
    # alone), always well past the slow one's limit.
    assert slow.throttled_ms() > 0
    assert fast.throttled_ms() == 0
    assert fast.rate(4, 10) > 2 * limit


def test_a_fetch_quota_slows_its_consumer_and_a_request_quota_mutes_its_client(node):
    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    admin.create_topics([NewTopic("read", 1, 1)])["read"].result(15)
    p = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 5})
    total = 3 * 1024 * 1024
    for _ in range(total // 1000):
        p.produce("read", b"y" * 1000)
        p.poll(0)
    assert p.flush(30) == 0

    ka = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    limit = 512 * 1024
    assert alter(ka, [(entity(client_id="reader"), {"consumer_byte_rate": limit}),
                      (entity(client_id="chatty"), {"request_percentage": 0.0001})]) == [(0, None)] * 2

    def read_all(client_id):
        # Fetches of 128 KiB: a fetch as large as the quota's whole window
        # allowance (here 1 MiB) would be answered once per (windows) seconds,
        # (windows - 1) / windows of the limit, by Kafka's arithmetic too.
        c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": client_id, "client.id": client_id,
                      "enable.auto.commit": False, "max.partition.fetch.bytes": 131072,
                      "fetch.max.bytes": 131072, "message.max.bytes": 131072})
        c.assign([TopicPartition("read", 0, OFFSET_BEGINNING)])
        got, start, times = 0, None, []
        while got < total // 1000:
            m = c.poll(1)
            if m is not None and not m.error():
                start = start or time.monotonic()
                got += 1
                times.append((time.monotonic() - start, len(m.value())))
        c.close()
        return times

    free = read_all("free")
    quoted = read_all("reader")
    took_free, took_quoted = free[-1][0], quoted[-1][0]
    # Two windows' worth come at once, the rest at the limit.
    since = 2.0
    measured = sum(b for t, b in quoted if t >= since) / (took_quoted - since)
    print(f"3 MiB read in {took_free:.2f} s freely, {took_quoted:.2f} s at {limit // 1024} KiB/s "
          f"({measured / 1024:.0f} KiB/s after the allowance)")
    assert took_free < 2.0
    # Never faster than the limit. Slower by up to a third with three
    # windows: an answer that would take the consumer over its limit goes
    # out empty and the consumer waits as if it had had the bytes (Kafka's
    # arithmetic), and the windows' sawtooth is coarse with three of them.
    assert 0.5 * limit <= measured <= 1.15 * limit, measured

    # request_percentage: a client over it is muted, a window (1 s) at most
    # at a time; another client on the same broker is not.
    def metadata_rounds(client_id, n):
        c = KafkaAdminClient(bootstrap_servers=node.bootstrap, client_id=client_id)
        start = time.monotonic()
        for _ in range(n):
            send(c, MetadataRequest(topics=[]))
        took = time.monotonic() - start
        c.close()
        return took

    assert metadata_rounds("other", 5) < 0.5
    took = metadata_rounds("chatty", 5)
    assert 2.5 <= took <= 8, took
    ka.close()
