"""The tables face on three nodes with DataStax's Python driver
(cassandra-driver), unchanged: the ring's tokens on the quorum, token-aware
routing from system.peers, replication factor 3 with every consistency level,
Unavailable while a replica is down (kill -9), read repair after it returns,
QUORUM reads that never miss a QUORUM write acknowledged before them, and
linearizable lightweight transactions across coordinators, while a replica
is killed or paused (SIGSTOP)."""

import random
import subprocess
import threading
import time

import pytest
from cassandra import ConsistencyLevel as CL
from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.metadata import Murmur3Token
from cassandra.policies import (FallthroughRetryPolicy, RoundRobinPolicy, TokenAwarePolicy,
                                WhiteListRoundRobinPolicy)
from cassandra.query import SimpleStatement

from conftest import KEEL, free_port, wait_until
from etcd_cluster import Cluster as KeelCluster
from etcd_cluster import check_register

SESSION_MS = 3000


def three_nodes(base, extra=(), session_ms=SESSION_MS):
    c = KeelCluster(base, 3, extra=["--broker-session-timeout-ms", str(session_ms), *extra])
    port = free_port()
    for i, n in c.nodes.items():
        n.cql_host = f"127.0.0.{20 + i}"
        n.cql_port = port
    return c


@pytest.fixture
def three(tmp_path):
    c = three_nodes(tmp_path).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def three_no_hints(tmp_path):
    """Hinted handoff off (as past max_hint_window): a returning replica
    catches up only through read repair."""
    c = three_nodes(tmp_path, ["--max-hint-window-ms", "0"]).start()
    try:
        yield c
    finally:
        c.stop()


def connect(c, hosts=None):
    """A driver session; `hosts`: only these coordinators, else token-aware
    over all. Errors come back as the server sent them (no retries)."""
    any_node = next(iter(c.nodes.values()))
    if hosts:
        policy = WhiteListRoundRobinPolicy([c.nodes[h].cql_host for h in hosts])
    else:
        policy = TokenAwarePolicy(RoundRobinPolicy())
    profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=20,
                               retry_policy=FallthroughRetryPolicy())
    contact = [c.nodes[h].cql_host for h in hosts] if hosts else [any_node.cql_host]
    cluster = Cluster(contact, port=any_node.cql_port, protocol_version=4,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    return cluster, cluster.connect()


def listen_for_events(node, kinds=("STATUS_CHANGE", "TOPOLOGY_CHANGE")):
    """A raw native-protocol connection REGISTERed for `kinds` on `node`."""
    import socket
    import struct

    def strings(*xs):
        return b"".join(struct.pack(">H", len(x)) + x.encode() for x in xs)
    sock = socket.create_connection((node.cql_host, node.cql_port), timeout=30)
    for opcode, body in [(0x01, struct.pack(">H", 1) + strings("CQL_VERSION", "3.0.0")),
                         (0x0B, struct.pack(">H", len(kinds)) + strings(*kinds))]:
        sock.sendall(struct.pack(">BBhBI", 0x04, 0, 1, opcode, len(body)) + body)
        _, op, _ = read_cql_frame(sock)
        assert op == 0x02, op  # READY
    return sock


def read_cql_frame(sock):
    import struct

    def exact(n):
        b = b""
        while len(b) < n:
            chunk = sock.recv(n - len(b))
            if not chunk:
                raise ConnectionError("closed")
            b += chunk
        return b
    _, _, stream, op, n = struct.unpack(">BBhBI", exact(9))
    return stream, op, exact(n)


def wait_for_event(sock, want, timeout=20):
    """Reads EVENT frames until one is `want` = (type, change, host, port)."""
    import struct
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            stream, op, body = read_cql_frame(sock)
        except TimeoutError:
            break
        assert stream == -1 and op == 0x0C, (stream, op)

        def string(b):
            (n,) = struct.unpack(">H", b[:2])
            return b[2:2 + n].decode(), b[2 + n:]
        kind, rest = string(body)
        change, rest = string(rest)
        if kind in ("STATUS_CHANGE", "TOPOLOGY_CHANGE"):
            size = rest[0]
            host = ".".join(str(x) for x in rest[1:1 + size])
            (port,) = struct.unpack(">i", rest[1 + size:5 + size])
            ev = (kind, change, host, port)
        else:
            ev = (kind, change)
        seen.append(ev)
        if ev == want:
            return
    raise AssertionError(f"no {want} within {timeout}s; saw {seen}")


def table_reads(node):
    """The coordinator's digest read counters, from its admin `/cluster`."""
    import json
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{node.admin_port}/cluster", timeout=5) as r:
        return json.loads(r.read())["table_reads"]


def st(q, cl):
    return SimpleStatement(q, consistency_level=cl)


def all_up(c):
    """Every node UN as every node sees it (`keel table status`)."""
    return all(n["state"] == "UN" for i in c.nodes for n in c.nodes[i].cli("table", "status"))


def repair_converges(c, keyspace, timeout=30):
    """Runs `keel table repair` on node 1 until a run leaves every range
    agreeing (a node's links may still be coming up after a heal); returns
    that run's report."""
    def repaired():
        try:
            r = c.nodes[1].cli("table", "repair", keyspace)
        except AssertionError:
            return None
        return r if r["ranges_still_differing"] == 0 else None
    return wait_until(repaired, timeout=timeout, what="a repair that leaves every range agreeing")


def ring_is_whole(c):
    """Every node lists its own 16 tokens and every peer's (a node serves
    CQL a moment before its own registration is applied)."""
    for i in c.nodes:
        cluster, s = connect(c, hosts=[i])
        try:
            local = s.execute("SELECT tokens FROM system.local").one().tokens
            peers = [r.tokens for r in s.execute("SELECT tokens FROM system.peers")]
            if len(local) != 16 or sorted(len(p) for p in peers) != [16] * (len(c.nodes) - 1):
                return False
        finally:
            cluster.shutdown()
    return True


def test_rf3_every_level_token_aware_a_dead_replica_and_read_repair(three_no_hints):
    c = three_no_hints
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    cluster, s = connect(c)
    try:
        hosts = cluster.metadata.all_hosts()
        assert sorted(h.address for h in hosts) == sorted(n.cql_host for n in c.nodes.values())
        # 16 virtual nodes each, as the driver reads them from system.local/peers.
        assert len(cluster.metadata.token_map.ring) == 48
        s.execute("CREATE KEYSPACE ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        s.execute("CREATE KEYSPACE one WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute("CREATE TABLE ks.kv (k int PRIMARY KEY, v text)")
        s.execute("CREATE TABLE one.kv (k int PRIMARY KEY, v text)")
        ins = s.prepare("INSERT INTO ks.kv (k, v) VALUES (?, ?)")
        levels = [CL.ANY, CL.ONE, CL.TWO, CL.THREE, CL.QUORUM, CL.ALL, CL.LOCAL_ONE, CL.LOCAL_QUORUM,
                  CL.EACH_QUORUM]
        for i in range(90):
            ins.consistency_level = levels[i % len(levels)]
            s.execute(ins, (i, f"v{i}"))
        # RF 1: each key on exactly the node the driver's ring names.
        ins1 = s.prepare("INSERT INTO one.kv (k, v) VALUES (?, ?)")
        for i in range(60):
            s.execute(ins1, (i, f"w{i}"))
        for lvl in [CL.ONE, CL.TWO, CL.THREE, CL.QUORUM, CL.ALL, CL.LOCAL_ONE, CL.LOCAL_QUORUM]:
            rows = s.execute(st("SELECT k, v FROM ks.kv", lvl)).all()
            assert sorted(r.k for r in rows) == list(range(90)), lvl
    finally:
        cluster.shutdown()
    # Every node holds every RF-3 row: each answers them at ONE by itself.
    # With RF 1 the three nodes' own rows split the keys with none twice.
    owned = {}
    for i, n in c.nodes.items():
        cl_, s1 = connect(c, hosts=[i])
        try:
            assert s1.execute(st("SELECT count(*) FROM ks.kv", CL.ONE)).one()[0] == 90
            # A full scan at ONE covers every range, from whichever replica holds it.
            assert s1.execute(st("SELECT count(*) FROM one.kv", CL.ONE)).one()[0] == 60
            tok = cl_.metadata.token_map
            mine = [k for k in range(60)
                    if next(iter(tok.get_replicas("one", Murmur3Token.from_key(k.to_bytes(4, "big"))))).address
                    == n.cql_host]
            owned[i] = mine
        finally:
            cl_.shutdown()
    assert sorted(k for ks in owned.values() for k in ks) == list(range(60))
    assert all(owned.values()), owned
    # `keel table locate` places keys where the driver's ring does.
    for i, keys in owned.items():
        for k in keys[:3]:
            loc = c.nodes[1].cli("table", "locate", "one", "kv", str(k))
            assert [r["node"] for r in loc["replicas"]] == [i], (k, loc)
    assert sorted(r["node"] for r in c.nodes[2].cli("table", "locate", "ks", "7")["replicas"]) == [1, 2, 3]
    status = c.nodes[1].cli("table", "status", "ks")
    assert [(n["node"], n["up"], n["tokens"]) for n in status] == [(1, True, 16), (2, True, 16), (3, True, 16)]
    assert all(abs(n["owns"] - 1.0) < 1e-9 for n in status), status
    raw = c.nodes[1].cli("table", "status")
    assert abs(sum(n["owns"] for n in raw) - 1.0) < 1e-9 and all(0.2 < n["owns"] < 0.45 for n in raw), raw
    assert len(c.nodes[1].cli("table", "ring")) == 48

    # Node 3 dies: ALL cannot be met (Unavailable with Cassandra's fields, or a
    # WriteTimeout for a request sent before the link saw it go), QUORUM and
    # ONE go on.
    c.nodes[3].kill9()
    cluster, s = connect(c, hosts=[1])
    try:
        timed_out = []

        def all_unavailable():
            try:
                s.execute(st("INSERT INTO ks.kv (k, v) VALUES (1000, 'x')", CL.ALL))
            except Unavailable as e:
                assert (e.required_replicas, e.alive_replicas) == (3, 2), e
                return True
            except WriteTimeout as e:
                assert e.required_responses == 3 and e.received_responses == 2, e
                timed_out.append(e)  # applied where it was acknowledged, as in Cassandra
            return False
        wait_until(all_unavailable, timeout=10, what="ALL to be Unavailable")
        with pytest.raises(Unavailable):
            s.execute(st("SELECT v FROM ks.kv WHERE k = 1", CL.ALL))
        for i in range(100, 150):
            s.execute(st("INSERT INTO ks.kv (k, v) VALUES (%s, %s)", CL.QUORUM), (i, f"v{i}"))
        want = 141 if timed_out else 140
        for lvl in [CL.ONE, CL.TWO, CL.QUORUM]:
            assert s.execute(st("SELECT count(*) FROM ks.kv", lvl)).one()[0] == want
        # RF 1 keys whose only replica is dead: Unavailable, the rest answer.
        dead = owned[3][0]
        with pytest.raises(Unavailable):
            s.execute(st("SELECT v FROM one.kv WHERE k = %s", CL.ONE), (dead,))
        alive_key = owned[1][0]
        assert s.execute(st("SELECT v FROM one.kv WHERE k = %s", CL.ONE), (alive_key,)).one().v == f"w{alive_key}"
        # The quorum fences it after the session timeout: `keel table status` shows it down.
        wait_until(lambda: [n["up"] for n in c.nodes[1].cli("table", "status")] == [True, True, False],
                   timeout=SESSION_MS / 1000 + 10, what="node 3 shown down")
    finally:
        cluster.shutdown()

    # Node 3 returns without the 50 rows written meanwhile; a read at ALL
    # repairs it, so afterwards it answers them alone at ONE.
    c.nodes[3].start()
    cluster, s = connect(c, hosts=[1])
    try:
        def all_works():
            try:
                s.execute(st("SELECT v FROM ks.kv WHERE k = 1", CL.ALL))
                return True
            except (Unavailable, ReadTimeout):
                return False
        wait_until(all_works, timeout=20, what="ALL to answer again")
        cl3, s3 = connect(c, hosts=[3])
        try:
            missing = [i for i in range(100, 150)
                       if s3.execute(st("SELECT v FROM ks.kv WHERE k = %s", CL.ONE), (i,)).one() is None]
            assert missing, "node 3 should have missed the writes made while it was dead"
            # Node 1 reads with digests: node 3's differs, so the read is
            # done again in full and repairs node 3.
            before = table_reads(c.nodes[1])
            assert s.execute(st("SELECT count(*) FROM ks.kv", CL.ALL)).one()[0] == want
            after = table_reads(c.nodes[1])
            assert after["digest_mismatches"] > before["digest_mismatches"], (before, after)
            still = [i for i in range(100, 150)
                     if s3.execute(st("SELECT v FROM ks.kv WHERE k = %s", CL.ONE), (i,)).one() is None]
            assert still == [], f"read repair left {still} missing on node 3"
            # Repaired, the replicas' digests agree: no more mismatches.
            assert s.execute(st("SELECT count(*) FROM ks.kv", CL.ALL)).one()[0] == want
            again = table_reads(c.nodes[1])
            assert again["digest_reads"] > after["digest_reads"], (after, again)
            assert again["digest_mismatches"] == after["digest_mismatches"], (after, again)
        finally:
            cl3.shutdown()
    finally:
        cluster.shutdown()


def test_quorum_reads_see_every_quorum_write_acknowledged_before_them(three):
    """A writer raises each key's value at QUORUM through one coordinator,
    readers read at QUORUM through the others, while node 3 is killed,
    restarted and paused, and node 2 is cut off and healed. A read must return at least the value of the last
    write acknowledged before the read began (checked over the recorded
    history), and never one nobody wrote."""
    c = three
    quorum_history(c, writer_on=1, readers_on=(2, 1), faults=[
        ("node 3 dead", 400, lambda: c.nodes[3].kill9()),
        ("node 3 back", 400, lambda: c.nodes[3].start()),
        ("node 3 paused", 200, lambda: c.nodes[3].pause()),
        # A partition: node 2 (a reader's coordinator and a replica) cut off
        # from both others, Raft's links and the tables face's; its reads
        # are refused meanwhile, and must not go back in time after the heal.
        ("node 2 cut off", 200, lambda: (c.nodes[3].resume(), c.isolate(2))),
    ])


def quorum_history(c, writer_on, readers_on, faults, keys=range(8)):
    """Writes at QUORUM through `writer_on`, reads at QUORUM through each of
    `readers_on`, through `faults` in order (each: what, writes acknowledged
    meanwhile before the next, the action), then a heal; checks that no read
    returned less than a write acknowledged before it began."""
    wait_until(lambda: ring_is_whole(c), timeout=30, what="every node on the ring")
    cluster, s = connect(c, hosts=[writer_on])
    s.execute("CREATE KEYSPACE h WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
    s.execute("CREATE TABLE h.reg (k int PRIMARY KEY, v int)")
    cluster.shutdown()
    acked = {k: [] for k in keys}  # (ack time, value)
    reads = []  # (key, start, value)
    stop = threading.Event()
    errors = []

    def writer():
        cl_, w = connect(c, hosts=[writer_on])
        ins = w.prepare("INSERT INTO h.reg (k, v) VALUES (?, ?)")
        ins.consistency_level = CL.QUORUM
        v = 0
        try:
            while not stop.is_set():
                v += 1
                for k in keys:
                    try:
                        w.execute(ins, (k, v))
                        acked[k].append((time.monotonic(), v))
                    except (Unavailable, WriteTimeout):
                        pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            cl_.shutdown()

    def reader(host):
        cl_, r = connect(c, hosts=[host])
        sel = r.prepare("SELECT v FROM h.reg WHERE k = ?")
        sel.consistency_level = CL.QUORUM
        try:
            while not stop.is_set():
                for k in keys:
                    t0 = time.monotonic()
                    try:
                        row = r.execute(sel, (k,)).one()
                    except (Unavailable, ReadTimeout):
                        continue
                    reads.append((k, t0, row.v if row else 0))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            cl_.shutdown()

    def writes():
        return sum(len(a) for a in acked.values())

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(h,)) for h in readers_on]
    for t in threads:
        t.start()
    try:
        # Load before the faults: the history needs writes and reads to check.
        wait_until(lambda: writes() > 200 and len(reads) > 200, timeout=30,
                   what="writes and reads before the faults")
        for what, count, action in faults:
            action()
            n_before = writes()
            wait_until(lambda: writes() > n_before + count, timeout=60, what=f"writes with {what}")
        c.heal()
        n_reads = len(reads)
        wait_until(lambda: len(reads) > n_reads + 200, timeout=60, what="reads after the heal")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    assert len(reads) > 500, len(reads)
    stale = []
    for k, t0, v in reads:
        before = [val for (t, val) in acked[k] if t < t0]
        floor = max(before) if before else 0
        if v < floor:
            stale.append((k, v, floor))
        highest = max((val for _, val in acked[k]), default=0)
        # Anything read was written (an unacknowledged write may show: Cassandra's too).
        assert v <= highest + 1, (k, v, highest)
    assert stale == [], f"{len(stale)} QUORUM reads missed an acknowledged QUORUM write: {stale[:10]}"


def test_keel_bench_table_at_quorum_across_three_nodes(three):
    """`keel bench table` spreads its clients over the nodes and writes at
    QUORUM with replication factor 3; every key is then on every node."""
    import subprocess
    from conftest import KEEL
    c = three
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    nodes = ",".join(f"{n.cql_host}:{n.cql_port}" for n in c.nodes.values())
    cmd = [str(KEEL), "bench", "table", "--cql", nodes, "--replication-factor", "3", "--consistency", "QUORUM",
           "--total", "600", "--clients", "6", "--key-space", "600"]
    w = subprocess.run(cmd + ["--op", "insert"], capture_output=True, text=True, timeout=120)
    assert w.returncode == 0 and "table insert at QUORUM (replication factor 3): 600 requests" in w.stdout, \
        w.stdout + w.stderr
    r = subprocess.run(cmd + ["--op", "select"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "(600 rows found)" in r.stdout, r.stdout + r.stderr
    # cassandra-stress's mixed load, once per level in one run, reads and
    # writes timed apart.
    mixed = [str(KEEL), "bench", "table", "--cql", nodes, "--replication-factor", "3", "--total", "600",
             "--clients", "6", "--key-space", "600", "--op", "mixed", "--consistency", "ONE,QUORUM,ALL"]
    m = subprocess.run(mixed, capture_output=True, text=True, timeout=120)
    assert m.returncode == 0, m.stdout + m.stderr
    for level in ["ONE", "QUORUM", "ALL"]:
        assert f"table mixed at {level} (replication factor 3): 600 requests" in m.stdout, m.stdout
    assert m.stdout.count("  insert: ") == 3 and m.stdout.count("  select: ") == 3, m.stdout
    assert "(300 rows found)" in m.stdout, m.stdout  # every key read was written before
    # QUORUM wrote two copies at least; a read at ALL repairs the third.
    cluster, s = connect(c, hosts=[1])
    try:
        assert s.execute(st("SELECT count(*) FROM keel_bench_rf3.kv", CL.ALL)).one()[0] == 600
    finally:
        cluster.shutdown()
    for i in c.nodes:
        cl_, s1 = connect(c, hosts=[i])
        try:
            assert s1.execute(st("SELECT count(*) FROM keel_bench_rf3.kv", CL.ONE)).one()[0] == 600, i
        finally:
            cl_.shutdown()


def test_reads_at_one_can_be_stale_and_the_test_measures_how_often_and_how_long(three_no_hints):
    """The price of PA/EL, measured: a writer at ONE through node 1 sweeps
    50 keys, a reader at ONE through node 3 (which answers from its own
    replica). Node 3 is killed for 2 s and restarted; it missed the writes
    of that time (no hints yet), so it answers older values until a key is
    written again or read at a stronger level. The writer holds still
    while the reader's first sweep after the restart, so that sweep is
    certainly stale, then goes on for 3 s. Checked: every value read was
    written, reads before the restart are never stale, and a read at ALL
    ends the staleness; printed: how many reads were stale and how long.
    Hints are off here (an outage past max_hint_window): with them the
    missed writes come back within a replay round of the restart."""
    c = three_no_hints
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    cluster, s = connect(c, hosts=[1])
    s.execute("CREATE KEYSPACE p WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
    s.execute("CREATE TABLE p.reg (k int PRIMARY KEY, v int)")
    cluster.shutdown()
    keys = range(50)
    acked = {k: [] for k in keys}  # (ack time, value), in order
    reads = []  # (key, start, value)
    stop, hold, swept = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def writer():
        cl_, w = connect(c, hosts=[1])
        ins = w.prepare("INSERT INTO p.reg (k, v) VALUES (?, ?)")
        ins.consistency_level = CL.ONE
        v = 0
        try:
            while not stop.is_set():
                if hold.is_set():
                    swept.wait(timeout=30)
                v += 1
                for k in keys:
                    w.execute(ins, (k, v))
                    acked[k].append((time.monotonic(), v))
                    time.sleep(0.005)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            cl_.shutdown()

    def reader():
        cl_, r = connect(c, hosts=[3])
        sel = r.prepare("SELECT v FROM p.reg WHERE k = ?")
        sel.consistency_level = CL.ONE
        try:
            while not stop.is_set():
                for k in keys:
                    t0 = time.monotonic()
                    row = r.execute(sel, (k,)).one()
                    reads.append((k, t0, row.v if row else 0))
                swept.set()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            cl_.shutdown()

    w = threading.Thread(target=writer)
    w.start()
    wait_until(lambda: all(acked[k] for k in keys), timeout=20, what="a first sweep of writes")
    c.nodes[3].kill9()
    time.sleep(2.0)  # writes node 3 misses
    hold.set()
    c.nodes[3].start()
    restarted = time.monotonic()
    rd = threading.Thread(target=reader)
    rd.start()
    wait_until(swept.is_set, timeout=30, what="the reader's first sweep")
    time.sleep(3.0)
    stop.set()
    w.join(timeout=30)
    rd.join(timeout=30)
    assert not errors, errors
    stale = []
    for k, t0, v in reads:
        assert t0 > restarted
        written = [val for _, val in acked[k]]
        assert v == 0 or v in written, (k, v)  # 0: a write in flight at the kill never reached it
        before = [(t, val) for (t, val) in acked[k] if t < t0]
        if v < before[-1][1]:
            # Stale since the first acknowledged write newer than what was read.
            since = next(t for (t, val) in before if val > v)
            stale.append((k, t0 - since))
    share = len(stale) / len(reads)
    ages = sorted(a for _, a in stale)
    print(f"\nreads at ONE from node 3 in the {time.monotonic() - restarted:.1f} s after its restart: "
          f"{len(reads)}, stale {len(stale)} ({share:.1%}); staleness median {ages[len(ages) // 2] * 1000:.0f} ms, "
          f"max {ages[-1] * 1000:.0f} ms")
    assert len(stale) >= len(keys), "the first sweep after the restart must be stale"
    # A read at ALL repairs node 3: afterwards it answers every key's newest value alone.
    newest = {k: acked[k][-1][1] for k in keys}
    cluster, s = connect(c, hosts=[1])
    try:
        for k in keys:
            assert s.execute(st("SELECT v FROM p.reg WHERE k = %s", CL.ALL), (k,)).one().v == newest[k]
    finally:
        cluster.shutdown()
    cl3, s3 = connect(c, hosts=[3])
    try:
        for k, v in newest.items():
            assert s3.execute(st("SELECT v FROM p.reg WHERE k = %s", CL.ONE), (k,)).one().v == v, k
    finally:
        cl3.shutdown()


def test_hinted_handoff_brings_a_returning_replica_the_writes_it_missed(three):
    """Node 3 is killed; writes at QUORUM (RF 3) and at ANY (RF 1, keys
    whose only replica is node 3) are acknowledged, kept as hints by the
    coordinator, and delivered when node 3 is back: it then answers them
    alone at ONE, with no read having repaired it."""
    c = three
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    cluster, s = connect(c, hosts=[1])
    try:
        s.execute("CREATE KEYSPACE h3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        s.execute("CREATE KEYSPACE h1 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute("CREATE TABLE h3.kv (k int PRIMARY KEY, v text)")
        s.execute("CREATE TABLE h1.kv (k int PRIMARY KEY, v text)")
        tok = cluster.metadata.token_map
        on3 = [k for k in range(200)
               if next(iter(tok.get_replicas("h1", Murmur3Token.from_key(k.to_bytes(4, "big"))))).address
               == c.nodes[3].cql_host][:10]
        assert on3
        c.nodes[3].kill9()
        for i in range(60):
            s.execute(st("INSERT INTO h3.kv (k, v) VALUES (%s, %s)", CL.QUORUM), (i, f"v{i}"))
        # ANY: acknowledged with every replica down, held as a hint.
        for k in on3:
            s.execute(st("INSERT INTO h1.kv (k, v) VALUES (%s, %s)", CL.ANY), (k, f"a{k}"))
        with pytest.raises(Unavailable):
            s.execute(st("INSERT INTO h1.kv (k, v) VALUES (%s, 'x')", CL.ONE), (on3[0],))
    finally:
        cluster.shutdown()
    c.nodes[3].start()
    cl3, s3 = connect(c, hosts=[3])
    try:
        def delivered():
            got = s3.execute(st("SELECT count(*) FROM h3.kv", CL.ONE)).one()[0]
            return got == 60
        # Node 3 answers at ONE from its own replica (RF 3: it is one for every
        # key), so nothing but the hints can have brought these rows.
        wait_until(delivered, timeout=20, what="hints delivered to node 3")
        for i in range(60):
            assert s3.execute(st("SELECT v FROM h3.kv WHERE k = %s", CL.ONE), (i,)).one().v == f"v{i}"
        for k in on3:
            assert s3.execute(st("SELECT v FROM h1.kv WHERE k = %s", CL.ONE), (k,)).one().v == f"a{k}"
    finally:
        cl3.shutdown()
    # The hints left nothing for repair: every range's Merkle trees agree.
    r = c.nodes[1].cli("table", "repair", "h3")
    assert r["ranges"] in (48, 49) and r["ranges_differed"] == 0 and r["cells_streamed"] == 0, r


def test_lightweight_transactions_are_linearizable_across_coordinators(three):
    """Three clients, each on its own coordinator, run compare-and-set
    (`UPDATE ... IF v = ?`) and SERIAL reads on a few registers while node 3
    is killed and restarted, node 2 paused and node 1 cut off: each register's recorded
    history must be linearizable (the etcd face's checker). Outcomes a client
    never learned (timeouts) may or may not have happened; Unavailable and
    refused connections happen before anything is proposed."""
    c = three
    lwt_history(c, clients_on=(1, 2, 3), keys=range(3), faults=[
        ("node 3 dead", 60, lambda: c.nodes[3].kill9()),
        ("node 3 back", 60, lambda: c.nodes[3].start()),
        ("node 2 paused", 40, lambda: c.nodes[2].pause()),
        ("node 2 resumed", 40, lambda: c.nodes[2].resume()),
        # A partition: node 1 (a client's coordinator) cut off from both
        # others; its rounds cannot reach a quorum while the others go on.
        ("node 1 cut off", 40, lambda: c.isolate(1)),
        ("the heal", 40, c.heal),
    ])


def lwt_history(c, clients_on, keys, faults):
    """Compare-and-set and SERIAL reads on registers `keys`, one client on
    each of `clients_on`, through `faults` in order (each: what, operations
    meanwhile before the next, the action); checks each register's history
    for linearizability."""
    wait_until(lambda: ring_is_whole(c), timeout=30, what="every node on the ring")
    first, second = clients_on[0], clients_on[1]
    cluster, s = connect(c, hosts=[first])
    s.execute("CREATE KEYSPACE lin WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
    s.execute("CREATE TABLE lin.reg (k int PRIMARY KEY, v int)")
    for k in keys:
        assert s.execute(st("INSERT INTO lin.reg (k, v) VALUES (%s, 0) IF NOT EXISTS", CL.QUORUM), (k,)).one()[0]
    # Another coordinator sees them taken.
    cl2, s2 = connect(c, hosts=[second])
    row = s2.execute("INSERT INTO lin.reg (k, v) VALUES (%s, 9) IF NOT EXISTS", (keys[0],)).one()
    assert not row[0] and row.v == 0, row
    cl2.shutdown()
    cluster.shutdown()

    history = {k: [] for k in keys}
    stop = threading.Event()
    errors = []
    lock = threading.Lock()

    def client(host, seed):
        rng = random.Random(seed)
        cluster_, sess = connect(c, hosts=[host])
        cas = sess.prepare("UPDATE lin.reg SET v = ? WHERE k = ? IF v = ?")
        cas.serial_consistency_level = CL.SERIAL
        cas.consistency_level = CL.QUORUM
        read = sess.prepare("SELECT v FROM lin.reg WHERE k = ?")
        read.consistency_level = CL.SERIAL
        try:
            while not stop.is_set():
                k = rng.choice(keys)
                t0 = time.monotonic()
                if rng.random() < 0.3:
                    op = {"f": "read", "call": t0}
                    try:
                        r = sess.execute(read, (k,), timeout=8).one()
                        op.update(value=r.v if r else None, ret=time.monotonic())
                    except (Unavailable, ReadTimeout, WriteTimeout, OperationTimedOut, NoHostAvailable,
                            ConnectionException):
                        continue  # reads that did not answer constrain nothing
                else:
                    old, new = rng.randrange(4), rng.randrange(4)
                    op = {"f": "cas", "call": t0, "old": old, "new": new}
                    try:
                        r = sess.execute(cas, (new, k, old), timeout=8).one()
                        op.update(ok=bool(r[0]), ret=time.monotonic())
                    except (Unavailable, NoHostAvailable):
                        continue  # refused before any proposal
                    except (WriteTimeout, ReadTimeout, OperationTimedOut, ConnectionException):
                        # Unknown (a ReadTimeout comes from the round's read,
                        # before this op proposed; unknown is the safe reading).
                        op.update(ok=None, ret=float("inf"))
                with lock:
                    history[k].append(op)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            cluster_.shutdown()

    def ops():
        with lock:
            return sum(len(h) for h in history.values())

    threads = [threading.Thread(target=client, args=(h, h)) for h in clients_on]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: ops() > 60, timeout=30, what="conditional writes before the faults")
        for what, count, action in faults:
            action()
            n = ops()
            wait_until(lambda: ops() > n + count, timeout=60, what=f"conditional writes with {what}")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    for k, h in history.items():
        applied = [o for o in h if o["f"] == "cas" and o["ok"]]
        assert applied, f"register {k}: no compare-and-set applied in {len(h)} ops"
        bad = check_register(h, initial=0)
        assert bad is None, f"register {k}: {bad}"


def test_repair_compares_merkle_trees_and_streams_only_what_differs(three_no_hints):
    """With hints off, node 3 misses the writes and deletions made while it
    was dead. `keel table repair` finds the ranges whose Merkle trees differ,
    streams node 3 what it lacks (and only that), and leaves every range's
    trees equal: node 3 then answers every acknowledged write alone at ONE,
    and a second repair finds nothing. A replica that is down fails its
    ranges, and the command says so."""
    c = three_no_hints
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    cluster, s = connect(c, hosts=[1])
    try:
        s.execute("CREATE KEYSPACE rp WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        s.execute("CREATE TABLE rp.kv (k int PRIMARY KEY, v text)")
        ins = s.prepare("INSERT INTO rp.kv (k, v) VALUES (?, ?)")
        ins.consistency_level = CL.ALL
        for i in range(300):
            s.execute(ins, (i, "x" * 100))
        # 48 token ranges (16 per node); the one that wraps past the largest
        # token is compared as two slices.
        first = c.nodes[1].cli("table", "repair", "rp")
        assert first["ranges"] in (48, 49) and first["ranges_differed"] == 0, first
        c.nodes[3].kill9()
        ins.consistency_level = CL.QUORUM
        for i in range(300, 400):
            s.execute(ins, (i, "y" * 100))
        for i in range(0, 20):
            s.execute(st("DELETE FROM rp.kv WHERE k = %s", CL.QUORUM), (i,))
    finally:
        cluster.shutdown()
    c.nodes[3].start()
    wait_until(lambda: c.nodes[1].cli("table", "status")[2]["up"], timeout=20, what="node 3 up")
    cl3, s3 = connect(c, hosts=[3])
    try:
        # Node 3's own replica, read alone: the 300 rows it had, none of the rest.
        assert s3.execute(st("SELECT count(*) FROM rp.kv", CL.ONE)).one()[0] == 300
    finally:
        cl3.shutdown()

    def repaired():
        try:
            return c.nodes[1].cli("table", "repair", "rp")
        except AssertionError:
            return None  # node 3's links are still coming up
    r = wait_until(repaired, timeout=20, what="a repair with every replica up")
    assert r["failures"] == [] and r["ranges_still_differing"] == 0, r
    assert 0 < r["ranges_differed"] <= r["ranges"], r
    # What moved: the 100 rows' cells (row marker and value) and the 20
    # deletions, to node 3 alone; nothing it already had.
    assert list(r["bytes_streamed_to"]) == ["3"], r
    assert 120 <= r["cells_streamed"] <= 100 * 2 + 20 + 10, r
    total = 400 * 100
    assert r["bytes_streamed"] < total, r
    cl3, s3 = connect(c, hosts=[3])
    try:
        rows = {row.k for row in s3.execute(st("SELECT k FROM rp.kv", CL.ONE))}
        assert rows == set(range(20, 400)), (len(rows), sorted(set(range(20, 400)) ^ rows)[:10])
    finally:
        cl3.shutdown()
    again = c.nodes[1].cli("table", "repair", "rp")
    assert again["ranges_differed"] == 0 and again["cells_streamed"] == 0, again

    c.nodes[2].kill9()
    p = subprocess.run([str(KEEL), "table", "repair", "rp", "-o", "json"], capture_output=True, text=True,
                       timeout=120, env={"KEEL_ADMIN": f"127.0.0.1:{c.nodes[1].admin_port}", "PATH": "/usr/bin:/bin"})
    assert p.returncode != 0 and "could not be repaired" in p.stderr, (p.returncode, p.stderr)


def test_gossip_convicts_a_paused_node_by_phi_and_hears_a_leaving_one(tmp_path):
    """The quorum's session timeout is set long (60 s) so only the tables
    face's own detector can see a node go: a paused node (SIGSTOP) stops
    heartbeating and node 1's phi for it climbs past phi_convict_threshold
    (8), so `keel table status` shows it DN, ALL is Unavailable at once and
    registered connections get STATUS_CHANGE DOWN; resumed, it is UN again
    (and UP is sent). A node stopped cleanly announces LEAVING and is
    shown down at once."""
    c = three_nodes(tmp_path, session_ms=60000).start()
    try:
        wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")

        def status():
            return {n["node"]: n for n in c.nodes[1].cli("table", "status")}
        # A node not heard of by gossip yet counts as up (phi None): wait
        # until node 1 has heard from every node.
        wait_until(lambda: all(n["state"] == "UN" and n["phi"] is not None
                               for n in status().values()), timeout=10,
                   what="every node UN by gossip")
        s3 = status()[3]
        assert s3["status"] == "NORMAL" and s3["phi"] is not None and s3["phi"] < 8, s3
        cluster, s = connect(c, hosts=[1])
        try:
            s.execute("CREATE KEYSPACE g WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
            s.execute("CREATE TABLE g.kv (k int PRIMARY KEY, v int)")
            events = listen_for_events(c.nodes[1])
            c.nodes[3].pause()
            t0 = time.monotonic()
            wait_until(lambda: status()[3]["state"] == "DN", timeout=15, what="node 3 convicted")
            # Drivers registered for STATUS_CHANGE hear of it.
            wait_for_event(events, ("STATUS_CHANGE", "DOWN", c.nodes[3].cql_host, c.nodes[3].cql_port))
            # Its link's timeouts may call it down first; the detector's
            # suspicion keeps rising past the threshold all the same.
            wait_until(lambda: status()[3]["phi"] >= 8, timeout=15, what="phi past 8")
            convicted_after = time.monotonic() - t0
            # Not the quorum's doing: its 60 s session timeout has not passed.
            assert convicted_after < 30, convicted_after
            t1 = time.monotonic()
            with pytest.raises(Unavailable) as e:
                s.execute(st("INSERT INTO g.kv (k, v) VALUES (1, 1)", CL.ALL))
            assert time.monotonic() - t1 < 1.0, "Unavailable must come at once, not after a timeout"
            assert (e.value.required_replicas, e.value.alive_replicas) == (3, 2)
            s.execute(st("INSERT INTO g.kv (k, v) VALUES (1, 1)", CL.QUORUM))
            c.nodes[3].resume()
            wait_until(lambda: status()[3]["state"] == "UN", timeout=15, what="node 3 up again")
            wait_for_event(events, ("STATUS_CHANGE", "UP", c.nodes[3].cql_host, c.nodes[3].cql_port))
            events.close()

            def all_works():
                try:
                    s.execute(st("INSERT INTO g.kv (k, v) VALUES (2, 2)", CL.ALL))
                    return True
                except (Unavailable, WriteTimeout):
                    return False
            wait_until(all_works, timeout=15, what="ALL to answer again")
        finally:
            cluster.shutdown()
        c.nodes[2].stop()
        left = status()[2]
        assert left["status"] == "LEAVING" and left["state"] == "DL", left
    finally:
        c.stop()


def test_five_nodes_partitioned_one_answers_on_both_sides_and_the_heal_converges(tmp_path):
    """Five nodes, RF 3, cut into {1, 2, 3} and {4, 5} (Raft's links and the
    tables face's alike, `keel lab isolate`). On each side writes and reads
    at ONE go on for every key with a replica there, and ALL is Unavailable.
    After the heal, hinted handoff and `keel table repair` leave every
    range's Merkle trees equal and every acknowledged write readable at ALL."""
    c = KeelCluster(tmp_path, 5, extra=["--broker-session-timeout-ms", str(SESSION_MS)])
    port = free_port()
    for i, n in c.nodes.items():
        n.cql_host = f"127.0.0.{20 + i}"
        n.cql_port = port
    c.start()
    majority, minority = [1, 2, 3], [4, 5]
    try:
        wait_until(lambda: ring_is_whole(c), timeout=30, what="every node on the ring")
        cluster, s = connect(c, hosts=[1])
        try:
            s.execute("CREATE KEYSPACE p WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
            s.execute("CREATE TABLE p.kv (k int PRIMARY KEY, v text)")
            tok = cluster.metadata.token_map
            by_host = {n.cql_host: i for i, n in c.nodes.items()}
            replicas = {k: {by_host[h.address] for h in tok.get_replicas("p", Murmur3Token.from_key(k.to_bytes(4, "big")))}
                        for k in range(400)}
        finally:
            cluster.shutdown()
        assert all(len(r) == 3 for r in replicas.values())
        for i in minority:
            c.nodes[i].lab("isolate?peers=" + ",".join(map(str, majority)))
        for i in majority:
            c.nodes[i].lab("isolate?peers=" + ",".join(map(str, minority)))

        acked = {}
        sides = {1: [k for k in range(200)],  # every key has a replica among three of five
                 4: [k for k in range(200, 400) if replicas[k] & set(minority)]}
        assert len(sides[4]) > 50, len(sides[4])
        for coord, keys in sides.items():
            cl_, sess = connect(c, hosts=[coord])
            try:
                ins = sess.prepare("INSERT INTO p.kv (k, v) VALUES (?, ?)")
                ins.consistency_level = CL.ONE

                # Until the coordinator sees the other side gone, a write may
                # wait on it and time out; then ONE answers from this side.
                def one_answers():
                    try:
                        sess.execute(ins, (keys[0], f"from{coord}"))
                        return True
                    except WriteTimeout:
                        return False
                wait_until(one_answers, timeout=20, what=f"ONE to answer on node {coord}'s side")
                for k in keys:
                    sess.execute(ins, (k, f"from{coord}"))
                    acked[k] = f"from{coord}"
                sel = sess.prepare("SELECT v FROM p.kv WHERE k = ?")
                sel.consistency_level = CL.ONE
                for k in keys:
                    assert sess.execute(sel, (k,)).one().v == acked[k], (coord, k)

                # A key with a replica across the cut.
                here = set(majority if coord in majority else minority)
                across = next(k for k in keys if replicas[k] - here)

                def all_unavailable():
                    try:
                        sess.execute(st("INSERT INTO p.kv (k, v) VALUES (%s, 'x')", CL.ALL), (across,))
                    except Unavailable:
                        return True
                    except WriteTimeout:
                        pass
                    return False
                wait_until(all_unavailable, timeout=20, what=f"ALL Unavailable on node {coord}'s side")
            finally:
                cl_.shutdown()
        c.heal()

        wait_until(lambda: all_up(c), timeout=30, what="every node UN as every node sees it")
        repair_converges(c, "p")
        again = c.nodes[2].cli("table", "repair", "p")
        assert again["ranges_differed"] == 0 and again["cells_streamed"] == 0, again
        cluster, s = connect(c, hosts=[5])
        try:
            sel = s.prepare("SELECT v FROM p.kv WHERE k = ?")
            sel.consistency_level = CL.ALL

            def lost_writes():
                try:
                    return [k for k, v in acked.items() if (r := s.execute(sel, (k,)).one()) is None or r.v != v]
                except (Unavailable, ReadTimeout):
                    return None
            # A request still waiting on a link cut before the heal can mark
            # its peer down once more when it times out; the link's probe
            # brings it back.
            checked = {}

            def every_key_answered():
                checked["lost"] = lost_writes()
                return checked["lost"] is not None
            wait_until(every_key_answered, timeout=20, what="ALL to answer every key on node 5")
            lost = checked["lost"]
            assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:10]}"
        finally:
            cluster.shutdown()
    finally:
        c.stop()


def test_a_node_joins_and_leaves_streaming_only_the_ranges_that_move(tmp_path):
    """A fourth node joins three holding 600 rows at replication factor 1:
    it takes 16 tokens, streams exactly the rows whose ranges it now owns
    (and nothing else), gossips JOINING then NORMAL, and answers those rows
    as their only replica. Then it leaves again (`keel table decommission`,
    see leave_the_ring)."""
    import json
    import urllib.request
    from etcd_cluster import ClusterNode
    c = three_nodes(tmp_path).start()
    try:
        wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
        cluster, s = connect(c, hosts=[1])
        try:
            s.execute("CREATE KEYSPACE j WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
            s.execute("CREATE TABLE j.kv (k int PRIMARY KEY, v text)")
            ins = s.prepare("INSERT INTO j.kv (k, v) VALUES (?, ?)")
            for k in range(600):
                s.execute(ins, (k, f"v{k}"))
        finally:
            cluster.shutdown()
        events = listen_for_events(c.nodes[1])
        # The fourth node: a Raft learner first (as etcd adds members), then a voter.
        c.peer_ports[4] = free_port()
        endpoint = c.nodes[1].endpoint
        add = subprocess.run(["etcdctl", f"--endpoints={endpoint}", "member", "add", "keel-4",
                              f"--peer-urls=http://127.0.0.1:{c.peer_ports[4]}", "--learner"],
                             capture_output=True, text=True, timeout=30)
        assert add.returncode == 0, add.stderr
        n4 = ClusterNode(tmp_path, 4, c.peer_ports, existing=True,
                         extra=["--broker-session-timeout-ms", str(SESSION_MS)])
        n4.cql_host, n4.cql_port = "127.0.0.24", c.nodes[1].cql_port
        n4.start()
        c.nodes[4] = n4

        def promoted():
            p = subprocess.run(["etcdctl", f"--endpoints={endpoint}", "member", "promote", "4"],
                               capture_output=True, text=True, timeout=30)
            return p.returncode == 0
        wait_until(promoted, timeout=30, what="node 4 promoted")

        def bootstrap():
            with urllib.request.urlopen(f"http://127.0.0.1:{n4.admin_port}/cluster", timeout=5) as r:
                b = json.loads(r.read())["table_bootstrap"]
            return b if b and b["done"] and b["state"] == "NORMAL" else None
        b = wait_until(bootstrap, timeout=30, what="node 4 to stream its ranges")
        # Registered connections hear of the new node (TOPOLOGY_CHANGE).
        wait_for_event(events, ("TOPOLOGY_CHANGE", "NEW_NODE", n4.cql_host, n4.cql_port))
        events.close()
        assert b["failures"] == [], b
        wait_until(lambda: ring_is_whole(c), timeout=20, what="node 4 on every node's ring")
        cluster, s = connect(c)
        try:
            tok = cluster.metadata.token_map
            assert len(tok.ring) == 64
            owned = [k for k in range(600)
                     if next(iter(tok.get_replicas("j", Murmur3Token.from_key(k.to_bytes(4, "big"))))).address
                     == n4.cql_host]
            # Exactly its rows moved: a row is two cells (its marker and v).
            assert b["cells"] == 2 * len(owned), (b, len(owned))
            assert 0.1 < len(owned) / 600 < 0.45, len(owned)
            print(f"node 4 took {len(owned)} of 600 rows ({len(owned) / 600:.1%}), "
                  f"{b['bytes']} bytes in {b['ranges']} ranges")
            # Node 4 is their only replica now, and has them.
            sel = s.prepare("SELECT v FROM j.kv WHERE k = ?")
            for k in owned:
                assert s.execute(sel, (k,)).one().v == f"v{k}", k
        finally:
            cluster.shutdown()
        status = {n["node"]: n for n in c.nodes[1].cli("table", "status")}
        assert sorted(status) == [1, 2, 3, 4] and status[4]["tokens"] == 16, status
        wait_until(lambda: all(n["state"] == "UN" for n in c.nodes[1].cli("table", "status")), timeout=10,
                   what="all four UN")
        leave_the_ring(c, owned)
    finally:
        c.stop()


def keel_cli(node, *args):
    """`keel ARGS -o json` against `node`, whatever its exit code."""
    return subprocess.run([str(KEEL), *args, "-o", "json"], capture_output=True, text=True, timeout=300,
                          env={"KEEL_BROKERS": f"127.0.0.1:{node.kafka_port}",
                               "KEEL_ADMIN": f"127.0.0.1:{node.admin_port}", "PATH": "/usr/bin:/bin"})


def leave_the_ring(c, owned):
    """Node 4 (of four) leaves while a writer keeps writing at QUORUM to an
    RF 3 keyspace. A first try with node 3 killed fails and leaves node 4
    leaving (UL; ALL counts node 3 as a pending replica: required 4); once
    node 3 is back the command resumes: node 4 streams its ranges to the
    nodes that gain them and only there, its tokens come off the ring, a
    REMOVED_NODE event is sent, and once it is killed every row of the RF 1
    keyspace is on its one replica and every acknowledged QUORUM write reads
    back at QUORUM."""
    cluster, s = connect(c, hosts=[1])
    s.execute("CREATE KEYSPACE d WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
    s.execute("CREATE TABLE d.kv (k int PRIMARY KEY, v int)")
    ins = s.prepare("INSERT INTO d.kv (k, v) VALUES (?, ?)")
    ins.consistency_level = CL.QUORUM
    acked, stop, errors = {}, threading.Event(), []

    def writer():
        i = 0
        while not stop.is_set() and i < 20000:
            try:
                s.execute(ins, (i % 500, i))
                acked[i % 500] = i
            except (WriteTimeout, Unavailable, OperationTimedOut) as e:
                errors.append(repr(e))
            i += 1
    # A key node 4 holds whose other replicas are 1 and 2: node 3 gains it.
    key = next(k for k in range(1000, 2000)
               if {r["node"] for r in c.nodes[1].cli("table", "locate", "d", "kv", str(k))["replicas"]}
               == {1, 2, 4})
    events = listen_for_events(c.nodes[1])
    w = threading.Thread(target=writer)
    w.start()
    try:
        wait_until(lambda: len(acked) >= 100, timeout=30, what="writes before the leave")
        # With node 3 (a node that gains ranges) down, the stream fails: node
        # 4 stays leaving, on the ring, and writes of its ranges count node 3
        # as a pending replica on top of the level.
        c.nodes[3].kill9()
        failed = keel_cli(c.nodes[4], "table", "decommission")
        assert failed.returncode != 0 and "still leaving" in failed.stderr, failed.stderr
        status = {n["node"]: n["state"] for n in c.nodes[1].cli("table", "status")}
        assert status[4] == "UL", status
        probe = SimpleStatement("INSERT INTO d.kv (k, v) VALUES (%s, 0)" % key, consistency_level=CL.ALL)
        with pytest.raises(Unavailable) as e:
            s.execute(probe)
        assert (e.value.required_replicas, e.value.alive_replicas) == (4, 3), e.value
        c.nodes[3].start()
        # Run again (it resumes) until node 4 can reach node 3 again.
        r = wait_until(lambda: (lambda p: p if p.returncode == 0 else None)(
            keel_cli(c.nodes[4], "table", "decommission")), timeout=60, what="the decommission to finish")
        wait_until(lambda: len(acked) >= 300, timeout=30, what="writes after the leave")
    finally:
        stop.set()
        w.join(timeout=60)
    d = __import__("json").loads(r.stdout)
    assert d["left"] and d["failures"] == [], d
    # Only the staying nodes received anything, and at least the 600-row
    # keyspace's rows node 4 owned (two cells each) plus its share of d.
    assert set(d["bytes_streamed_to"]) <= {"1", "2", "3"} and d["bytes_streamed_to"], d
    assert d["cells_streamed"] >= 2 * len(owned), (d, len(owned))
    print(f"node 4 left in {d['seconds']:.2f} s: {d['cells_streamed']} cells, {d['bytes_streamed']} bytes "
          f"in {d['ranges']} ranges to {d['bytes_streamed_to']}; {len(errors)} write errors meanwhile")
    wait_for_event(events, ("TOPOLOGY_CHANGE", "REMOVED_NODE", c.nodes[4].cql_host, c.nodes[4].cql_port))
    events.close()
    cluster.shutdown()
    status = {n["node"]: n for n in c.nodes[1].cli("table", "status")}
    assert sorted(status) == [1, 2, 3], status
    # A node that left takes no tokens again, and the three left cannot lose
    # one more at RF 3: both refused with a plain message.
    again = keel_cli(c.nodes[4], "table", "decommission")
    assert again.returncode != 0 and "already left the ring" in again.stderr, again.stderr
    three_left = keel_cli(c.nodes[3], "table", "decommission")
    assert three_left.returncode != 0 and "keyspace d" in three_left.stderr, three_left.stderr
    c.nodes[4].kill9()
    del c.nodes[4]
    wait_until(lambda: ring_is_whole(c), timeout=20, what="three nodes on every node's ring")
    # Node 3 was killed and restarted above: a read at ONE of an RF 1 row it
    # holds is Unavailable until the coordinator believes it up again.
    wait_until(lambda: all(n["state"] == "UN" for i in c.nodes for n in c.nodes[i].cli("table", "status")),
               timeout=30, what="every node UN as every node sees it")
    cluster, s = connect(c)
    try:
        sel = s.prepare("SELECT v FROM j.kv WHERE k = ?")
        sel.consistency_level = CL.ONE
        for k in range(600):
            assert s.execute(sel, (k,)).one().v == f"v{k}", k
        sel = s.prepare("SELECT v FROM d.kv WHERE k = ?")
        sel.consistency_level = CL.QUORUM
        for k, v in acked.items():
            got = s.execute(sel, (k,)).one()
            assert got is not None and got.v >= v, (k, v, got)
    finally:
        cluster.shutdown()


def test_hints_survive_a_kill_9_of_the_coordinator_holding_them(three):
    """Node 3 is down while node 1 coordinates QUORUM writes, keeping hints
    for it; node 1 is killed (-9) and restarted before node 3 returns. Its
    hints were on disk: node 3 gets the writes from them and answers them
    alone at ONE."""
    c = three
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    cluster, s = connect(c, hosts=[1])
    try:
        s.execute("CREATE KEYSPACE hd WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
        s.execute("CREATE TABLE hd.kv (k int PRIMARY KEY, v text)")
        c.nodes[3].kill9()
        for i in range(40):
            s.execute(st("INSERT INTO hd.kv (k, v) VALUES (%s, %s)", CL.QUORUM), (i, f"d{i}"))
    finally:
        cluster.shutdown()
    c.nodes[1].kill9()
    c.nodes[1].start()
    c.nodes[3].start()
    cl3, s3 = connect(c, hosts=[3])
    try:
        def delivered():
            return s3.execute(st("SELECT count(*) FROM hd.kv", CL.ONE)).one()[0] == 40
        wait_until(delivered, timeout=30, what="node 1's hints, read back from disk, delivered to node 3")
        for i in range(40):
            assert s3.execute(st("SELECT v FROM hd.kv WHERE k = %s", CL.ONE), (i,)).one().v == f"d{i}"
    finally:
        cl3.shutdown()


def test_a_logged_batch_its_coordinator_could_not_finish_is_finished_from_the_batchlog(three):
    """Replication factor 1, a batch across two partitions (one on node 2, one
    on node 3) through node 1, with node 3 killed (-9). A logged batch fails
    at the client (Unavailable), yet node 2, which holds it in its batchlog,
    writes it whole a few seconds later (node 3's part as a hint, delivered
    when it is back): all or eventually all. An unlogged batch in the same
    state is never written."""
    import json
    import urllib.request
    c = three
    wait_until(lambda: ring_is_whole(c), timeout=20, what="every node on the ring")
    cluster, s = connect(c, hosts=[1])
    try:
        s.execute("CREATE KEYSPACE b WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
        s.execute("CREATE TABLE b.kv (k int PRIMARY KEY, v text)")

        def owner(k):
            return c.nodes[1].cli("table", "locate", "b", "kv", str(k))["replicas"][0]["node"]
        on2 = [k for k in range(200) if owner(k) == 2][:3]
        on3 = [k for k in range(200) if owner(k) == 3][:3]
        assert len(on2) == 3 and len(on3) == 3, (on2, on3)

        def batch(kind, k2, k3, v):
            return SimpleStatement(f"BEGIN {kind}BATCH INSERT INTO b.kv (k, v) VALUES ({k2}, '{v}'); "
                                   f"INSERT INTO b.kv (k, v) VALUES ({k3}, '{v}'); APPLY BATCH",
                                   consistency_level=CL.ONE)
        # Everything up: a logged batch is written and its batchlog entries removed.
        s.execute(batch("", on2[0], on3[0], "ok"))
        c.nodes[3].kill9()

        def node3_unavailable():
            try:
                s.execute(SimpleStatement(f"INSERT INTO b.kv (k, v) VALUES ({on3[0]}, 'ok')",
                                          consistency_level=CL.ONE))
                return False
            except (Unavailable, WriteTimeout):
                return True
        wait_until(node3_unavailable, timeout=20, what="node 1 to see node 3 down")
        with pytest.raises(Unavailable):
            s.execute(batch("UNLOGGED ", on2[2], on3[2], "unlogged"))
        with pytest.raises((Unavailable, WriteTimeout)):
            s.execute(batch("", on2[1], on3[1], "logged"))
    finally:
        cluster.shutdown()
    # Node 2 replays the batch from its batchlog: its row at once, node 3's
    # as a hint once node 3 is back.
    def replayed(i):
        with urllib.request.urlopen(f"http://127.0.0.1:{c.nodes[i].admin_port}/cluster", timeout=5) as r:
            return json.loads(r.read())["table_batchlog"]["replayed"]
    wait_until(lambda: replayed(2) >= 1, timeout=30, what="node 2 to replay the batch")
    c.nodes[3].start()
    cluster, s2 = connect(c, hosts=[2])
    try:
        def both():
            try:
                rows = {k: s2.execute(st("SELECT v FROM b.kv WHERE k = %s", CL.ONE), (k,)).one() for k in
                        (on2[1], on3[1])}
            except (Unavailable, ReadTimeout):
                return None
            return all(r is not None for r in rows.values()) and rows
        rows = wait_until(both, timeout=30, what="the logged batch replayed from the batchlog")
        assert {r.v for r in rows.values()} == {"logged"}, rows
        # The unlogged batch had no batchlog: neither of its rows exists.
        for k in (on2[2], on3[2]):
            assert s2.execute(st("SELECT v FROM b.kv WHERE k = %s", CL.ONE), (k,)).one() is None, k
        # Node 2 held both logged batches' entries: the first, written whole,
        # was removed, so it replayed only the second.
        assert replayed(2) == 1
    finally:
        cluster.shutdown()
