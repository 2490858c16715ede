"""Failover as a client sees it, on three brokers (issue 13's measurements).

- How long a partition's writes stop when its leader is killed (-9): from
  the kill to the first acknowledgement after it, for a leader that is not
  the controller (fencing after the broker session timeout) and for one that
  is (a Raft election first, then a session), with tuned timeouts and with
  the defaults. Printed (`-s`) and recorded in docs/perf.md; the assertion
  is only that writes resume within the bound Keel promises (session +
  election, with slack for a loaded machine).
- What acks=1 loses when its leader is killed: the records the leader
  acknowledged that no follower had copied yet. Measured and printed; the
  test asserts that only such a tail is lost (nothing acknowledged longer
  ago than replica.lag.time.max.ms before the kill), that nothing is
  duplicated, and that acks=all in the same run loses nothing.
"""
import json
import threading
import time
import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, Producer
from kafka.admin import KafkaAdminClient, NewTopic

from conftest import wait_until
from kafka_history import History
from test_kafka_replication import kafka_cluster, partitions, read_all

LAG_MS = 5000


def controller(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/cluster", timeout=5) as r:
        return json.loads(r.read())["controller"]


def start(tmp_path, session_ms, election_ms):
    """Three nodes with these timeouts (None: the default)."""
    extra = ["--replica-lag-time-max-ms", str(LAG_MS)]
    if session_ms:
        extra += ["--broker-session-timeout-ms", str(session_ms)]
    if election_ms:
        extra += ["--election-timeout-ms", str(election_ms)]
    return kafka_cluster(tmp_path, 3, extra, timeout=30)


def place(cluster, topic, replicas):
    """Creates `topic` with one partition on `replicas` (the first leads) and
    min.insync.replicas=2, and waits for every node to see it in sync."""
    ka = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{cluster.nodes[1].kafka_port}")
    try:
        ka.create_topics([NewTopic(topic, replica_assignments={0: replicas},
                                   topic_configs={"min.insync.replicas": "2"})])
    finally:
        ka.close()
    wait_until(lambda: in_sync(cluster, topic, replicas), timeout=30, what="a full ISR")


def in_sync(cluster, topic, replicas):
    return all(partitions(n, topic).get(0, (None, None, None))[2] == sorted(replicas)
               and partitions(n, topic)[0][0] == replicas[0] for n in cluster.live())


class Writer:
    """A producer writing a steady ~1000 records/s to partition 0 of
    `topic`, recording when each acknowledgement arrived."""

    def __init__(self, cluster, topic, acks, extra=None):
        self.acked = {}  # value -> (offset, monotonic time of the ack)
        self.errors = []
        self.history = History()  # the same, for the Kafka history checker
        self.stop = threading.Event()
        conf = {"bootstrap.servers": ",".join(f"127.0.0.1:{n.kafka_port}" for n in cluster.nodes.values()),
                "acks": acks, "linger.ms": 2, "message.timeout.ms": 60000,
                "retry.backoff.ms": 50, "retry.backoff.max.ms": 200, **(extra or {})}
        if acks == "all":
            conf["enable.idempotence"] = True
        else:
            conf["enable.idempotence"] = False
        self.producer = Producer(conf)
        self.topic = topic
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        def done(err, msg):
            if err is None:
                self.acked[msg.value().decode()] = (msg.offset(), time.monotonic())
                self.history.ack(msg.value().decode(), msg.partition(), msg.offset())
            else:
                self.errors.append(err)
                self.history.fail(msg.value().decode(), str(err))
        i = 0
        while not self.stop.is_set():
            self.history.send("w", f"r{i}")
            self.producer.produce(self.topic, value=f"r{i}", partition=0, on_delivery=done)
            self.producer.poll(0)
            i += 1
            if i % 10 == 0:
                time.sleep(0.01)
        self.producer.flush(60)

    def first_ack_after(self, t):
        return min((at for _, at in self.acked.values() if at > t), default=None)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=90)
        assert not self.thread.is_alive()


def kill_leader_and_time(cluster, topic, leader_is_controller, client):
    """Puts partition 0's leader on (or off) the controller, kills it with
    acks=all writes going, and returns the seconds until a surviving node's
    metadata names a new leader, and until the writer's first acknowledgement
    after the kill."""
    ctl = controller(cluster.nodes[1])
    others = [i for i in cluster.nodes if i != ctl]
    replicas = [ctl, *others] if leader_is_controller else [others[0], ctl, others[1]]
    place(cluster, topic, replicas)
    w = Writer(cluster, topic, "all", client)
    try:
        wait_until(lambda: len(w.acked) > 500, timeout=30, what="writes acknowledged")
        victim = cluster.nodes[replicas[0]]
        witness = cluster.nodes[replicas[2]]
        t_kill = time.monotonic()
        victim.kill9()

        def new_leader():
            try:
                return partitions(witness, topic)[0][0] not in (victim.id, -1)
            except OSError:
                return False
        wait_until(new_leader, timeout=60, what="a new leader")
        elected = time.monotonic() - t_kill
        wait_until(lambda: w.first_ack_after(t_kill + 0.05), timeout=60, what="writes to resume")
        # The first acknowledgement of a record the new leader took after the kill.
        resumed = w.first_ack_after(t_kill + 0.05) - t_kill
        victim.start()
    finally:
        w.finish()
    assert not w.errors, w.errors[:3]
    return elected, resumed


@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "defaults"])
def test_failover_time(tmp_path, tuned):
    # Tuned: a 1 s broker session, a 300 ms Raft election timeout (its
    # minimum) and a client that refreshes metadata every 250 ms; defaults:
    # Kafka's 9 s session, etcd's 1 s election and librdkafka's own.
    session_ms, election_ms = (1000, 300) if tuned else (None, None)
    client = {"topic.metadata.refresh.interval.ms": 250} if tuned else {}
    with start(tmp_path, session_ms, election_ms) as cluster:
        follower = kill_leader_and_time(cluster, "fo-broker", False, client)
        wait_until(lambda: all(n.alive() for n in cluster.nodes.values()), what="the node back")
        ctl = kill_leader_and_time(cluster, "fo-controller", True, client)
    session = (session_ms or 9000) / 1000
    election = 2 * (election_ms or 1000) / 1000
    print(f"\nfailover ({'tuned' if tuned else 'defaults'}, session {session:.1f} s): "
          f"leader not the controller: new leader {follower[0]:.2f} s, writes {follower[1]:.2f} s; "
          f"leader and controller: new leader {ctl[0]:.2f} s, writes {ctl[1]:.2f} s")
    # A new leader once the old one is fenced: a session, plus an election
    # when the controller died too; the slack is for a loaded two-core machine.
    assert follower[0] < session + 3, follower
    assert ctl[0] < session + election + 3, ctl
    assert follower[1] < session + 6 and ctl[1] < session + election + 6, (follower, ctl)


def test_acks_1_loses_only_the_unreplicated_tail_and_acks_all_nothing(tmp_path):
    with start(tmp_path, 1000, 300) as cluster:
        results = {}
        for acks in ("1", "all"):
            topic = f"loss-{acks}"
            ctl = controller(cluster.nodes[1])
            replicas = [i for i in cluster.nodes if i != ctl] + [ctl]
            place(cluster, topic, replicas)
            w = Writer(cluster, topic, acks)
            try:
                wait_until(lambda: len(w.acked) > 3000, timeout=30, what="writes acknowledged")
                victim = cluster.nodes[replicas[0]]
                t_kill = time.monotonic()
                victim.kill9()
                wait_until(lambda: w.first_ack_after(t_kill + 0.05), timeout=30, what="writes to resume")
                time.sleep(0.5)  # a little load on the new leader
                victim.start()
            finally:
                w.finish()
            assert not w.errors, w.errors[:3]
            # The returning node truncates what the new leader never had, and
            # follows it: the log is the new leader's.
            wait_until(lambda: in_sync(cluster, topic, replicas) or
                       all(partitions(n, topic)[0][2] == sorted(replicas) for n in cluster.live()),
                       timeout=30, what="the ISR whole again")
            got = read_all(cluster, topic, 1, 0, start=OFFSET_BEGINNING)[0]
            at, dups = {}, 0
            for o, v in got:
                # Without idempotence a retried batch the dead leader had
                # written and a follower had copied is written again.
                dups += v in at
                at.setdefault(v, o)
            lost = {v: a for v, a in w.acked.items() if at.get(v) != a[0]}
            faults, summary = w.history.check({0: got})
            if acks == "all":
                assert not faults, f"acks=all: {summary}: {faults}"
            else:
                # Without idempotence a retry may be written twice, and a
                # write after a lost one sits below it: only those.
                assert set(faults) <= {"lost", "duplicated", "reordered"}, f"acks=1: {summary}: {faults}"
            lost_ago = [t_kill - t for _, t in lost.values()]
            results[acks] = (len(w.acked), len(lost), max(lost_ago, default=0.0), dups)
    for acks, (n, lost, oldest, dups) in results.items():
        print(f"\nacks={acks}: {n} acknowledged, {lost} lost at the leader's kill"
              + (f" (acknowledged at most {oldest * 1000:.0f} ms before it)" if lost else "")
              + f", {dups} written twice")
    assert results["all"][1] == 0 and results["all"][3] == 0
    # acks=1 loses at most what followers had not copied: never a record
    # acknowledged longer than replica.lag.time.max.ms before the kill.
    assert results["1"][2] < LAG_MS / 1000
