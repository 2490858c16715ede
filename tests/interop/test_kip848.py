"""KIP-848's consumer group protocol (group.protocol=consumer) with
librdkafka's own implementation: the coordinator assigns, members move
incrementally, and nothing is read twice or skipped across the moves."""
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                  ResourceType)

from conftest import Node, wait_until
from test_kafka_replication import SESSION_MS, bootstrap, kafka_cluster, partitions

# Heartbeats every 300 ms (Kafka's default is 5 s), so a member change
# settles in about a second; a member gone for 6 s is removed.
FLAGS = [
    "--group-consumer-heartbeat-interval-ms", "300",
    "--group-consumer-session-timeout-ms", "6000",
    "--group-initial-rebalance-delay-ms", "0",
]


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "data", extra=FLAGS).start()
    yield n
    n.stop()


def create(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)


def member(bootstrap, group, **extra):
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
        "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra,
    })


class Member:
    """A consumer on its own thread: reads, commits each record synchronously
    (so a partition it gives up is committed up to what it read), and keeps
    what it read and each assignment change. What it owns is kept from its
    rebalance callbacks (incremental under KIP-848): calling assignment()
    from another thread while poll() runs a callback deadlocks on the GIL."""

    def __init__(self, name, bootstrap, group, topics, reads, lock, conf=None):
        self.name, self.reads, self.lock = name, reads, lock
        self.changes = []  # (time, "assign"/"revoke", partitions)
        if conf is None:
            self.c = member(bootstrap, group)
        else:  # another protocol, for scripts/rebalance_bench.py
            self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                               "auto.offset.reset": "earliest", "enable.auto.commit": False, **conf})
        self.stop = threading.Event()
        self.errors = []
        self.held = set()
        self.stale = 0

        def on_assign(c, ps):
            with lock:
                self.held |= {p.partition for p in ps}
            self.changes.append((time.monotonic(), "assign", sorted(p.partition for p in ps)))

        def on_revoke(c, ps):
            with lock:
                self.held -= {p.partition for p in ps}
            self.changes.append((time.monotonic(), "revoke", sorted(p.partition for p in ps)))

        self.c.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            m = self.c.poll(0.1)
            if m is None:
                continue
            if m.error():
                if m.error().code() != KafkaError._PARTITION_EOF:
                    self.errors.append(m.error())
                continue
            if not self.commit(m):
                continue
            with self.lock:
                self.reads.append((self.name, m.partition(), m.offset(), int(m.value())))
        self.c.close()

    def commit(self, m):
        """Commits synchronously. A commit sent at the member epoch the
        member is just leaving (its heartbeat acknowledging a revocation
        crossed it) is refused STALE_MEMBER_EPOCH, as in Kafka 4.0, and
        retried at the new epoch, as Kafka's Java consumer does; it is for a
        partition the member keeps, since revoked ones were committed before
        the revocation was acknowledged."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.c.commit(message=m, asynchronous=False)
                return True
            except KafkaException as e:
                # Retriable too: the coordinator moving (NOT_COORDINATOR,
                # COORDINATOR_NOT_AVAILABLE, a request cut by its death).
                if e.args[0].code() == KafkaError.STALE_MEMBER_EPOCH:
                    self.stale += 1
                elif not e.args[0].retriable():
                    self.errors.append(e)
                    return False
                time.sleep(0.02)
        self.errors.append(f"commit of {m.partition()}@{m.offset()} stayed stale")
        return False

    def owned(self):
        with self.lock:
            return sorted(self.held)

    def leave(self):
        self.stop.set()
        self.t.join(30)


class SteadyProducer:
    """Writes 0, 1, 2, ... round-robin over the partitions until stopped."""

    def __init__(self, bootstrap_servers, topic, partitions):
        self.stop = threading.Event()
        self.produced = []
        self.p = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                           "acks": "all", "linger.ms": 5})

        def run():
            i = 0
            while not self.stop.is_set():
                self.p.produce(topic, value=str(i).encode(), partition=i % partitions)
                self.produced.append(i)
                i += 1
                if i % 50 == 0:
                    self.p.flush(30)
                    time.sleep(0.05)

        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def finish(self):
        self.stop.set()
        self.t.join(30)
        assert self.p.flush(60) == 0
        return len(self.produced)


def check_exactly_once(reads, total):
    values = [r[3] for r in reads]
    seen = set()
    dup = sorted({v for v in values if v in seen or seen.add(v)})
    assert not dup, f"read twice: {dup[:20]}"
    assert sorted(values) == list(range(total)), "nothing skipped"


def java_hash_partition(group, partitions=50):
    """Kafka's `abs(groupId.hashCode()) % partitions`: the group's partition of
    __consumer_offsets, whose leader is its coordinator."""
    h = 0
    for unit in group.encode("utf-16-be").hex(" ", 2).split():
        h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    h = h - (1 << 32) if h >= 1 << 31 else h
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def test_members_join_and_leave_one_by_one_under_a_steady_producer(node):
    """Three members join and leave one by one while a producer writes: every
    record is read exactly once (each read is committed before its partition
    moves), and each change moves only the partitions that must move."""
    create(node.bootstrap, "kip848", 6)
    producer = SteadyProducer(node.bootstrap, "kip848", 6)
    reads, lock = [], threading.Lock()
    members = {}

    def settled(expect):
        owned = {n: m.owned() for n, m in members.items()}
        counts = sorted(len(v) for v in owned.values())
        every = sorted(p for v in owned.values() for p in v)
        return every == list(range(6)) and counts == expect and owned

    def progress():
        """Some records are read between one change and the next."""
        mark = len(reads)
        wait_until(lambda: len(reads) >= mark + 100, timeout=30, what="records read")

    history, revoked, everyone = [], 0, []
    for n, expect in (("a", [6]), ("b", [3, 3]), ("c", [2, 2, 2])):
        members[n] = Member(n, node.bootstrap, "g848", ["kip848"], reads, lock)
        everyone.append(members[n])
        history.append(wait_until(lambda: settled(expect), timeout=30, what=f"{n} joined"))
        progress()
    for n, expect in (("a", [3, 3]), ("b", [6])):
        gone = members.pop(n)
        revoked += sum(len(ps) for _, kind, ps in gone.changes if kind == "revoke")
        gone.leave()
        history.append(wait_until(lambda: settled(expect), timeout=30, what=f"{n} left"))
        progress()
    total = producer.finish()
    wait_until(lambda: len(reads) >= total, timeout=60, what="every record read")
    c = members["c"]
    revoked += sum(len(ps) for _, kind, ps in c.changes if kind == "revoke")
    c.leave()
    check_exactly_once(reads, total)
    # Only what must move moved: b's join took 3 of a's 6, c's one from each
    # (2), and the two leaves took nothing from anyone who stayed: 5
    # partitions revoked in all, where the classic eager protocol revokes
    # every partition at every change.
    assert revoked == 5, [(n, m.changes) for n, m in members.items()]
    for before, after in zip(history, history[1:]):
        for n in after:
            if n in before and len(after[n]) >= len(before[n]):
                assert set(before[n]) <= set(after[n]), (before, after)
    assert not [m.errors for m in everyone if m.errors]


def test_a_regex_subscription_picks_up_a_topic_created_later(node):
    create(node.bootstrap, "rx-orders-eu", 2)
    create(node.bootstrap, "rx-payments", 2)
    c = member(node.bootstrap, "g848-rx")
    c.subscribe(["^rx-orders-.*"])
    topics = lambda: sorted({p.topic for p in c.assignment()})
    try:
        wait_until(lambda: c.poll(0.1) is None and topics() == ["rx-orders-eu"],
                   timeout=30, what="the first matching topic")
        create(node.bootstrap, "rx-orders-us", 3)
        wait_until(lambda: c.poll(0.1) is None and topics() == ["rx-orders-eu", "rx-orders-us"],
                   timeout=30, what="the topic created later")
        assert len(c.assignment()) == 5
    finally:
        c.close()


def test_admin_lists_and_describes_a_consumer_group(node):
    create(node.bootstrap, "kip848-admin", 4)
    c = member(node.bootstrap, "g848-admin")
    c.subscribe(["kip848-admin"])
    try:
        wait_until(lambda: c.poll(0.1) is None and len(c.assignment()) == 4, timeout=30,
                   what="the assignment")
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        listed = admin.list_consumer_groups().result(30)
        mine = [g for g in listed.valid if g.group_id == "g848-admin"]
        assert len(mine) == 1, listed.valid
        assert str(mine[0].type).endswith("CONSUMER"), mine[0].type
        d = admin.describe_consumer_groups(["g848-admin"])["g848-admin"].result(30)
        assert str(d.state).endswith("STABLE"), d.state
        assert len(d.members) == 1
        assert sorted(tp.partition for tp in d.members[0].assignment.topic_partitions) == [0, 1, 2, 3]
    finally:
        c.close()


def test_the_group_goes_on_when_its_coordinator_is_killed(tmp_path):
    """Three brokers; the group's coordinator (the leader of its partition of
    __consumer_offsets, replicated to all three) is killed -9 while two
    members consume under a producer. The group state was replicated: the
    members carry on at their epochs with a new coordinator, which takes a
    third member in, and no record is read twice or skipped."""
    flags = FLAGS + ["--broker-session-timeout-ms", str(SESSION_MS),
                     "--replica-lag-time-max-ms", "5000"]
    with kafka_cluster(tmp_path, 3, flags) as cluster:
        servers = bootstrap(cluster)
        admin = AdminClient({"bootstrap.servers": servers})
        admin.create_topics([NewTopic("kip848-ha", 3, 3)])["kip848-ha"].result(30)
        producer = SteadyProducer(servers, "kip848-ha", 3)
        reads, lock, members = [], threading.Lock(), []

        def owned():
            every = sorted(p for m in members for p in m.owned())
            return every == [0, 1, 2] and sorted(len(m.owned()) for m in members)

        def progress():
            mark = len(reads)
            wait_until(lambda: len(reads) >= mark + 100, timeout=60, what="records read")

        for name in ("a", "b"):
            members.append(Member(name, servers, "g848-ha", ["kip848-ha"], reads, lock))
        wait_until(lambda: owned() == [1, 2], timeout=30, what="a and b assigned")
        progress()
        index = java_hash_partition("g848-ha")
        witness = cluster.nodes[1]
        coordinator = partitions(witness, "__consumer_offsets")[index][0]
        cluster.nodes[coordinator].kill9()
        witness = next(n for i, n in cluster.nodes.items() if i != coordinator)
        wait_until(lambda: partitions(witness, "__consumer_offsets")[index][0] not in (coordinator, -1),
                   timeout=SESSION_MS / 1000 + 20, what="a new coordinator")
        progress()
        members.append(Member("c", servers, "g848-ha", ["kip848-ha"], reads, lock))
        wait_until(lambda: owned() == [1, 1, 1], timeout=30, what="c assigned by the new coordinator")
        progress()
        total = producer.finish()
        wait_until(lambda: len(reads) >= total, timeout=60, what="every record read")
        for m in members:
            m.leave()
        check_exactly_once(reads, total)
        assert not [m.errors for m in members if m.errors]


def test_a_groups_own_configs_are_set_described_and_used(tmp_path):
    """KIP-848's group configs (the GROUP resource of IncrementalAlterConfigs
    and DescribeConfigs), through confluent-kafka's admin client: a group
    given a 200 ms heartbeat interval settles a join within a couple of
    them, on a node whose default interval (5 s, Kafka's) would take 5 s."""
    n = Node(tmp_path / "data", extra=["--group-initial-rebalance-delay-ms", "0"]).start()
    try:
        admin = AdminClient({"bootstrap.servers": n.bootstrap})
        create(n.bootstrap, "grouped", 2)

        def alter(group, **configs):
            entries = [ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
                       for k, v in configs.items()]
            res = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
            return admin.incremental_alter_configs([res])[res]

        def described(group):
            res = ConfigResource(ResourceType.GROUP, group)
            # (value, source): 5 is DEFAULT_CONFIG, 8 GROUP_CONFIG (KIP-848).
            return {k: (e.value, int(getattr(e.source, "value", e.source)))
                    for k, e in admin.describe_configs([res])[res].result(15).items()}

        # Refused with INVALID_CONFIG, changing nothing: out of range, an
        # interval not below the session timeout, an unknown key.
        for bad in ({"consumer_heartbeat_interval_ms": "50"}, {"consumer_session_timeout_ms": "3000"},
                    {"consumer_max_size": "3"}):
            with pytest.raises(KafkaException) as e:
                alter("g-fast", **bad).result(15)
            assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value
        alter("g-fast", consumer_heartbeat_interval_ms="200").result(15)
        got = described("g-fast")
        assert got == {"consumer.heartbeat.interval.ms": ("200", 8),
                       "consumer.session.timeout.ms": ("45000", 5)}, got

        a, b = member(n.bootstrap, "g-fast"), member(n.bootstrap, "g-fast")
        try:
            a.subscribe(["grouped"])
            wait_until(lambda: a.poll(0.05) is None and len(a.assignment()) == 2, timeout=20,
                       what="the first member's assignment")
            b.subscribe(["grouped"])
            joined = time.monotonic()

            def balanced():
                a.poll(0.05)
                b.poll(0.05)
                return len(a.assignment()) == 1 and len(b.assignment()) == 1
            wait_until(balanced, timeout=20, what="one partition each")
            settled = time.monotonic() - joined
            print(f"a join settled in {settled:.2f} s with the group's 200 ms heartbeats")
            assert settled < 2.5, settled
        finally:
            a.close()
            b.close()
    finally:
        n.stop()
