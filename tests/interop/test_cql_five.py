"""The tables face at five nodes in two datacenters (dc1: nodes 1-3, dc2:
nodes 4 and 5, each with its rack), one cluster for the file's tests:
QUORUM's read/write history and lightweight transactions' linearizability
while two nodes are down at once (one killed -9, one paused with SIGSTOP),
and NetworkTopologyStrategy end to end: LOCAL_QUORUM keeps answering in a
datacenter cut off from the other, EACH_QUORUM and QUORUM refuse there,
and after the heal a repair leaves every write readable at ALL."""

import pytest
from cassandra import ConsistencyLevel as CL
from cassandra import Unavailable, WriteTimeout
from cassandra.metadata import Murmur3Token

from conftest import free_port, wait_until
from etcd_cluster import Cluster as KeelCluster
from test_cql_cluster import (SESSION_MS, all_up, connect, lwt_history, quorum_history, repair_converges,
                              ring_is_whole, st)

PLACES = {1: ("dc1", "r1"), 2: ("dc1", "r2"), 3: ("dc1", "r3"), 4: ("dc2", "r1"), 5: ("dc2", "r2")}
DC1, DC2 = [1, 2, 3], [4, 5]


@pytest.fixture(scope="module")
def cluster5(tmp_path_factory):
    c = KeelCluster(tmp_path_factory.mktemp("five"), 5, extra=["--broker-session-timeout-ms", str(SESSION_MS)])
    port = free_port()
    for i, n in c.nodes.items():
        n.cql_host = f"127.0.0.{20 + i}"
        n.cql_port = port
        dc, rack = PLACES[i]
        n.extra += ["--datacenter", dc, "--rack", rack]
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def five(cluster5):
    """The shared cluster, left whole by each test: every node running and
    resumed, every cut healed, every node up as every node sees it."""
    yield cluster5
    for n in cluster5.nodes.values():
        if n.alive():
            n.resume()
        else:
            n.start()
    cluster5.heal()
    wait_until(lambda: all_up(cluster5), timeout=30, what="every node UN as every node sees it")


def two_down(c):
    """Node 5 killed -9 and node 4 paused, at the same moment."""
    c.nodes[5].kill9()
    c.nodes[4].pause()


def two_back(c):
    c.nodes[4].resume()
    c.nodes[5].start()


def replicas_of(c, keyspace, keys):
    """Each key's replicas (node ids), from the driver's token map."""
    cluster, _ = connect(c, hosts=[1])
    try:
        tok = cluster.metadata.token_map
        by_host = {n.cql_host: i for i, n in c.nodes.items()}
        return {k: {by_host[h.address] for h in tok.get_replicas(keyspace, Murmur3Token.from_key(k.to_bytes(4, "big")))}
                for k in keys}
    finally:
        cluster.shutdown()


def test_the_ring_knows_each_nodes_datacenter_and_rack(five):
    """What `--datacenter` and `--rack` registered is what drivers read
    from system.local and system.peers."""
    c = five
    wait_until(lambda: ring_is_whole(c), timeout=30, what="every node on the ring")
    cluster, s = connect(c, hosts=[4])
    try:
        local = s.execute("SELECT data_center, rack FROM system.local").one()
        assert (local.data_center, local.rack) == PLACES[4]
        peers = {r.peer: (r.data_center, r.rack) for r in s.execute("SELECT peer, data_center, rack FROM system.peers")}
        by_host = {n.cql_host: i for i, n in c.nodes.items()}
        assert {by_host[p]: place for p, place in peers.items()} == {i: PLACES[i] for i in (1, 2, 3, 5)}
    finally:
        cluster.shutdown()


def test_quorum_history_with_two_of_five_down_at_once(five):
    """QUORUM writes through node 1, QUORUM reads through nodes 2 and 3,
    while node 5 is killed -9 and node 4 paused at the same moment (a key
    with both among its three replicas is refused; the rest go on), then
    both return, then node 3 is cut off: no read returns less than a write
    acknowledged before it began."""
    c = five
    quorum_history(c, writer_on=1, readers_on=(2, 3), faults=[
        ("node 5 killed and node 4 paused", 300, lambda: two_down(c)),
        ("nodes 4 and 5 back", 300, lambda: two_back(c)),
        ("node 3 cut off", 200, lambda: c.isolate(3)),
    ])


def test_lightweight_transactions_with_two_of_five_down_at_once(five):
    """Compare-and-set and SERIAL reads through nodes 1, 2 and 3 while node
    5 is killed and node 4 paused at once, then a client's own coordinator
    (node 2) is paused, then node 1 is cut off: each register's history is
    linearizable."""
    c = five
    wait_until(lambda: ring_is_whole(c), timeout=30, what="every node on the ring")
    keys = list(range(4))
    lwt_history(c, clients_on=(1, 2, 3), keys=keys, faults=[
        ("node 5 killed and node 4 paused", 40, lambda: two_down(c)),
        ("nodes 4 and 5 back", 40, lambda: two_back(c)),
        ("node 2 paused", 30, lambda: c.nodes[2].pause()),
        ("node 2 resumed", 30, lambda: c.nodes[2].resume()),
        ("node 1 cut off", 30, lambda: c.isolate(1)),
        ("the heal", 30, c.heal),
    ])


def test_network_topology_local_quorum_answers_in_a_datacenter_cut_off(five):
    """NetworkTopologyStrategy {'dc1': 3, 'dc2': 2}, with dc2 cut off from
    dc1 (Raft's links and the tables face's): in each datacenter
    LOCAL_QUORUM writes and reads go on, EACH_QUORUM and QUORUM are
    Unavailable; after the heal EACH_QUORUM answers again and a repair
    leaves every write of both sides readable at ALL."""
    c = five
    wait_until(lambda: ring_is_whole(c), timeout=30, what="every node on the ring")
    cluster, s = connect(c, hosts=[4])
    try:
        s.execute("CREATE KEYSPACE geo WITH replication = "
                  "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}")
        s.execute("CREATE TABLE geo.kv (k int PRIMARY KEY, v text)")
        # Every node holds every key: three in dc1, two in dc2.
        assert s.execute(st("INSERT INTO geo.kv (k, v) VALUES (-1, 'both')", CL.EACH_QUORUM)) is not None
    finally:
        cluster.shutdown()
    reps = replicas_of(c, "geo", range(10))
    assert all(r == {1, 2, 3, 4, 5} for r in reps.values()), reps

    for i in DC2:
        c.nodes[i].lab("isolate?peers=" + ",".join(map(str, DC1)))
    for i in DC1:
        c.nodes[i].lab("isolate?peers=" + ",".join(map(str, DC2)))
    acked = {}
    for coord, keys in {4: range(0, 100), 1: range(100, 200)}.items():
        cl_, sess = connect(c, hosts=[coord])
        try:
            ins = sess.prepare("INSERT INTO geo.kv (k, v) VALUES (?, ?)")
            ins.consistency_level = CL.LOCAL_QUORUM

            # Until the coordinator sees the other datacenter gone, a write
            # may time out waiting on a link that is cut (as at ONE in
            # test_cql_cluster's partition test); then LOCAL_QUORUM answers
            # from this datacenter alone.
            def local_answers():
                try:
                    sess.execute(ins, (keys[0], f"from{coord}"))
                    return True
                except WriteTimeout:
                    return False
            wait_until(local_answers, timeout=20, what=f"LOCAL_QUORUM to answer on node {coord}'s side")
            for k in keys:
                sess.execute(ins, (k, f"from{coord}"))
                acked[k] = f"from{coord}"
            sel = sess.prepare("SELECT v FROM geo.kv WHERE k = ?")
            sel.consistency_level = CL.LOCAL_QUORUM
            for k in keys:
                assert sess.execute(sel, (k,)).one().v == acked[k], (coord, k)

            def refused(cl):
                def check():
                    try:
                        sess.execute(st("INSERT INTO geo.kv (k, v) VALUES (-2, 'x')", cl))
                    except Unavailable as e:
                        return e
                    except WriteTimeout:
                        pass  # before the coordinator has seen the other side go
                    return None
                return wait_until(check, timeout=20, what=f"{cl} Unavailable on node {coord}'s side")
            each = refused(CL.EACH_QUORUM)
            # QUORUM of five replicas is three: dc2's two cannot make it.
            if coord in DC2:
                refused(CL.QUORUM)
            assert each is not None
        finally:
            cl_.shutdown()

    c.heal()
    wait_until(lambda: all_up(c), timeout=30, what="every node UN as every node sees it")
    cluster, s = connect(c, hosts=[5])
    try:
        def each_quorum_answers():
            try:
                s.execute(st("INSERT INTO geo.kv (k, v) VALUES (-3, 'healed')", CL.EACH_QUORUM))
                return True
            except (Unavailable, WriteTimeout):
                return False
        wait_until(each_quorum_answers, timeout=20, what="EACH_QUORUM to answer after the heal")

        repair_converges(c, "geo", timeout=60)
        sel = s.prepare("SELECT v FROM geo.kv WHERE k = ?")
        sel.consistency_level = CL.ALL
        lost = [k for k, v in acked.items() if (r := s.execute(sel, (k,)).one()) is None or r.v != v]
        assert lost == [], f"{len(lost)} acknowledged writes not read back at ALL: {lost[:10]}"
    finally:
        cluster.shutdown()
