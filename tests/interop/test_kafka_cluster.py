"""The Kafka face as a cluster (issue 13): every node registers in the one
node registry on the Raft quorum, and Kafka clients see every live broker and
the controller from any of them. The controller (the Raft leader) fences a
node it has not heard from for the session timeout (kill -9, SIGSTOP, a
partition) and unfences it when it is heard again; a node that stops cleanly
fences itself at once (KRaft's controlled shutdown); a restart registers
anew with a new epoch.

Seen with confluent-kafka (librdkafka): Metadata and DescribeCluster.
"""
import time

import pytest
from confluent_kafka.admin import AdminClient

from conftest import wait_until
from etcd_cluster import Cluster

SESSION_MS = 3000


def admin(node):
    return AdminClient({"bootstrap.servers": f"127.0.0.1:{node.kafka_port}", "socket.timeout.ms": 5000})


def brokers_seen(node):
    """{broker id: port} that `node` lists in Metadata, and its controller."""
    md = admin(node).list_topics(timeout=10)
    return {b.id: b.port for b in md.brokers.values()}, md.controller_id, md.cluster_id


@pytest.fixture
def cluster(tmp_path):
    racks = {1: "r1", 2: "r2", 3: "r1"}
    c = Cluster(tmp_path, 3, extra=["--broker-session-timeout-ms", str(SESSION_MS)])
    for i, n in c.nodes.items():
        n.extra += ["--rack", racks[i]]
    c.start()
    try:
        yield c
    finally:
        c.stop()


def every_broker(c):
    return {i: n.kafka_port for i, n in c.nodes.items()}


def test_every_node_lists_every_broker_the_controller_and_one_cluster_id(cluster):
    want = every_broker(cluster)
    leader = cluster.wait_leader()
    ids = set()
    for n in cluster.nodes.values():
        wait_until(lambda: brokers_seen(n)[0] == want, what=f"node {n.id} to list every broker")
        seen, controller, cluster_id = brokers_seen(n)
        assert controller == leader, (n.id, controller, leader)
        ids.add(cluster_id)
    assert len(ids) == 1 and None not in ids, ids
    # DescribeCluster: the same brokers, with their racks.
    a = admin(cluster.nodes[2])  # kept: the future needs its client alive
    desc = a.describe_cluster().result(timeout=10)
    assert {b.id: (b.port, b.rack) for b in desc.nodes} == {
        1: (want[1], "r1"), 2: (want[2], "r2"), 3: (want[3], "r1")}
    assert desc.controller.id == leader
    assert desc.cluster_id in ids


def test_a_killed_or_paused_or_cut_off_node_is_fenced_and_comes_back(cluster):
    want = every_broker(cluster)
    leader = cluster.wait_leader()
    for n in cluster.nodes.values():
        wait_until(lambda: brokers_seen(n)[0] == want, what="every broker registered")
    follower = next(n for i, n in cluster.nodes.items() if i != leader)
    witness = cluster.nodes[leader]
    without = {i: p for i, p in want.items() if i != follower.id}

    # kill -9: fenced after the session timeout, not before.
    follower.kill9()
    t0 = time.monotonic()
    wait_until(lambda: brokers_seen(witness)[0] == without, timeout=SESSION_MS / 1000 + 10,
               what="the killed node to be fenced")
    assert time.monotonic() - t0 >= SESSION_MS / 1000 - 1.0, "fenced before the session ran out"
    # A restart registers again (a new epoch) and is listed again.
    follower.start()
    wait_until(lambda: brokers_seen(witness)[0] == want, timeout=20, what="the restarted node back")

    # SIGSTOP: silent, so fenced; SIGCONT: heard again, so unfenced.
    follower.pause()
    try:
        wait_until(lambda: brokers_seen(witness)[0] == without, timeout=SESSION_MS / 1000 + 10,
                   what="the paused node to be fenced")
    finally:
        follower.resume()
    wait_until(lambda: brokers_seen(witness)[0] == want, timeout=20, what="the resumed node back")

    # A partition (each side drops the other's Raft messages): the same.
    cluster.isolate(follower.id)
    try:
        wait_until(lambda: brokers_seen(witness)[0] == without, timeout=SESSION_MS / 1000 + 10,
                   what="the cut-off node to be fenced")
    finally:
        cluster.heal()
    wait_until(lambda: brokers_seen(witness)[0] == want, timeout=20, what="the healed node back")
    assert "fenced: silent past the session timeout" in witness.log.read_text()


def test_a_clean_stop_fences_at_once_and_the_new_controller_takes_over(cluster):
    want = every_broker(cluster)
    leader = cluster.wait_leader()
    for n in cluster.nodes.values():
        wait_until(lambda: brokers_seen(n)[0] == want, what="every broker registered")
    # The leader stops cleanly: it fences itself before it goes, so the others
    # stop listing it well within the session timeout.
    old = cluster.nodes[leader]
    old.stop()
    assert "fenced this node for shutdown" in old.log.read_text()
    other = next(n for i, n in cluster.nodes.items() if i != leader)
    without = {i: p for i, p in want.items() if i != leader}
    wait_until(lambda: brokers_seen(other)[0] == without, timeout=10, what="the stopped node gone")
    new_leader = cluster.wait_leader(exclude=leader)
    wait_until(lambda: brokers_seen(other)[1] == new_leader, what="the new controller in Metadata")
    # It comes back when it starts again.
    old.start()
    wait_until(lambda: brokers_seen(other)[0] == want, timeout=20, what="the restarted node back")
