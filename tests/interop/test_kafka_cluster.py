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
    # `keel cluster info` lists it as fenced (DescribeCluster v2, KIP-1073).
    info = witness.cli("cluster", "info")
    assert info["fenced_brokers"] == [follower.id], info
    assert {b["id"] for b in info["brokers"]} == set(want)
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


# ---- topics on the cluster metadata ------------------------------------------

def list_offsets_raw(port, topic, partition):
    """One ListOffsets v1 request (latest offset) sent to exactly this broker,
    without a client's routing; returns (error code, offset)."""
    import socket
    import struct

    def string(v):
        b = v.encode()
        return struct.pack(">h", len(b)) + b
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1) \
        + struct.pack(">iq", partition, -1)
    header = struct.pack(">hhi", 2, 1, 7) + string("raw")
    msg = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
        resp = sock.recv(size, socket.MSG_WAITALL)
    (cid, ntopics) = struct.unpack(">ii", resp[:8])
    assert cid == 7 and ntopics == 1
    (nlen,) = struct.unpack(">h", resp[8:10])
    rest = resp[10 + nlen:]
    (_, _, err, _, offset) = struct.unpack(">iihqq", rest[:26])
    return err, offset


def partitions_of(node, topic):
    md = admin(node).list_topics(topic=topic, timeout=10)
    t = md.topics[topic]
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in t.partitions.values()}


def produce(node, topic, n, prefix):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": f"127.0.0.1:{node.kafka_port}", "acks": "all"})
    failed = []
    for i in range(n):
        p.produce(topic, key=f"{prefix}{i}", value=f"{prefix}{i}",
                  on_delivery=lambda err, msg: err and failed.append(err))
    assert p.flush(30) == 0
    assert not failed, failed[:3]


def consume_all(node, topic, partitions, want):
    """Reads every partition from the start (no group: assign) through `node`."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": f"127.0.0.1:{node.kafka_port}", "group.id": "unused",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = set()
    deadline = time.monotonic() + 30
    while len(got) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.add(m.value().decode())
    c.close()
    return got


def test_topics_are_placed_across_brokers_and_served_only_by_their_leaders(cluster):
    from confluent_kafka.admin import NewTopic
    want = every_broker(cluster)
    for n in cluster.nodes.values():
        wait_until(lambda: brokers_seen(n)[0] == want, what="every broker registered")
    a = admin(cluster.nodes[1])
    a.create_topics([NewTopic("spread", 6, 1)])["spread"].result(timeout=15)
    # Every node describes the topic alike, and the leaders spread over all three.
    parts = partitions_of(cluster.nodes[1], "spread")
    for n in cluster.nodes.values():
        wait_until(lambda: partitions_of(n, "spread") == parts, what=f"node {n.id} to agree")
    assert {leader for leader, _, _ in parts.values()} == {1, 2, 3}, parts
    # More copies than brokers is refused, and so is a second topic of that name.
    with pytest.raises(Exception, match="INVALID_REPLICATION_FACTOR"):
        a.create_topics([NewTopic("copies", 1, 4)])["copies"].result(timeout=15)
    with pytest.raises(Exception, match="TOPIC_ALREADY_EXISTS"):
        a.create_topics([NewTopic("spread", 2, 1)])["spread"].result(timeout=15)

    produce(cluster.nodes[2], "spread", 300, "a")
    assert len(consume_all(cluster.nodes[3], "spread", range(6), 300)) == 300
    # Straight to a broker: the leader answers, any other refuses with
    # NOT_LEADER_OR_FOLLOWER (6), so a client goes to the leader.
    for p, (leader, _, _) in parts.items():
        for i, n in cluster.nodes.items():
            err, offset = list_offsets_raw(n.kafka_port, "spread", p)
            if i == leader:
                assert err == 0 and offset >= 0, (p, i, err)
            else:
                assert err == 6, (p, i, err)

    # kill -9 one broker: its partitions have no leader (RF 1: nobody else
    # holds them), listed as offline; the others keep serving.
    victim = cluster.nodes[3]
    victim.kill9()
    witness = cluster.nodes[1]
    wait_until(lambda: all(leader == -1 for leader, _, _ in
                           [v for k, v in partitions_of(witness, "spread").items() if parts[k][0] == 3]),
               timeout=SESSION_MS / 1000 + 10, what="node 3's partitions offline")
    md = admin(witness).list_topics(topic="spread", timeout=10).topics["spread"]
    offline = {p.id for p in md.partitions.values() if p.error is not None}
    assert offline == {p for p, (leader, _, _) in parts.items() if leader == 3}
    # It comes back with its data: the same leaders, every record still there.
    victim.start()
    wait_until(lambda: partitions_of(witness, "spread") == parts, timeout=30,
               what="node 3's partitions led again")
    assert len(consume_all(cluster.nodes[2], "spread", range(6), 300)) == 300


def test_deleting_a_topic_removes_it_everywhere_even_on_a_node_that_was_down(cluster):
    from confluent_kafka.admin import NewTopic
    want = every_broker(cluster)
    for n in cluster.nodes.values():
        wait_until(lambda: brokers_seen(n)[0] == want, what="every broker registered")
    a = admin(cluster.nodes[1])
    a.create_topics([NewTopic("doomed", 3, 1)])["doomed"].result(timeout=15)
    produce(cluster.nodes[1], "doomed", 30, "d")
    dirs = {i: sorted(p.name for p in n.dir.glob("doomed-*")) for i, n in cluster.nodes.items()}
    assert sum(len(d) for d in dirs.values()) >= 3, dirs
    down = cluster.nodes[3]
    down.kill9()
    a.delete_topics(["doomed"])["doomed"].result(timeout=15)
    for i in (1, 2):
        n = cluster.nodes[i]
        wait_until(lambda: "doomed" not in admin(n).list_topics(timeout=10).topics,
                   what=f"node {i} to forget the topic")
        wait_until(lambda: not list(n.dir.glob("doomed-*")), what=f"node {i}'s files gone")
    down.start()
    wait_until(lambda: not list(down.dir.glob("doomed-*")), timeout=30,
               what="the node that was down to remove its copy")
    # Not offered back to the cluster either (adoption runs before the files go).
    assert "doomed" not in admin(cluster.nodes[1]).list_topics(timeout=10).topics


def test_a_data_dir_from_before_the_cluster_metadata_keeps_its_topics(make_node):
    """A node whose topics predate the metadata (its Raft state holds none)
    offers them to the metadata when it joins, with their ids, partition
    counts and configs, and keeps serving their records."""
    import shutil
    from confluent_kafka.admin import ConfigResource, NewTopic
    n = make_node().start()
    a = AdminClient({"bootstrap.servers": n.bootstrap})
    a.create_topics([NewTopic("old", 3, 1, config={"retention.ms": "123456"})])["old"].result(timeout=15)

    class Port:
        kafka_port = n.port
    produce(Port, "old", 60, "o")
    n.stop()
    # What a data dir from before looks like: the partition logs and meta.json,
    # a Raft state without cluster metadata.
    shutil.rmtree(n.data_dir / "raft")
    shutil.rmtree(n.data_dir / "etcd")
    n = make_node(port=n.port).start()
    a = AdminClient({"bootstrap.servers": n.bootstrap})
    wait_until(lambda: "old" in a.list_topics(timeout=10).topics, what="the topic adopted")
    # The line is logged once the proposal is answered, which can be a moment
    # after clients see the topic applied.
    wait_until(lambda: "adopted this node's topic into the cluster metadata" in n.logs(),
               timeout=10, what="the adoption logged")
    md = a.list_topics(topic="old", timeout=10).topics["old"]
    assert len(md.partitions) == 3
    # Adopted with its own topic id: the logs on disk are opened as they are
    # (a different id would be refused as another topic's).
    assert "cluster metadata:" not in n.logs()
    cfg = a.describe_configs([ConfigResource("topic", "old")])
    entries = list(cfg.values())[0].result(timeout=10)
    assert entries["retention.ms"].value == "123456"
    assert len(consume_all(Port, "old", range(3), 60)) == 60
