"""The tables face with the real clients: cqlsh and DataStax's Python driver
(cassandra-driver) against a real keel process, unchanged. Single node: the ring,
replication and the coordinator across nodes are not built yet (issue 14)."""

import re
import socket
import struct
import subprocess

import pytest
from cassandra import ConsistencyLevel, InvalidRequest, Unavailable
from cassandra.cluster import Cluster, ExecutionProfile, EXEC_PROFILE_DEFAULT
from cassandra.policies import FallthroughRetryPolicy, RoundRobinPolicy
from cassandra.query import BatchStatement, SimpleStatement


def session_for(node, protocol_version=4, **kw):
    # Fallthrough: errors reach the test as the server sent them, not retried
    # on the next host (there is none) and wrapped in NoHostAvailable.
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=20,
                               retry_policy=FallthroughRetryPolicy())
    cluster = Cluster(
        ["127.0.0.1"], port=node.cql_port, protocol_version=protocol_version,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile}, **kw,
    )
    return cluster, cluster.connect()


@pytest.fixture
def cql(node):
    cluster, session = session_for(node, compression="lz4")
    yield session
    cluster.shutdown()


def cqlsh(node, script):
    # Stripped: cqlsh -e appends ";" to text not ending in one, and a lone ";" is a
    # syntax error to Cassandra as to Keel.
    out = subprocess.run(
        ["cqlsh", "127.0.0.1", str(node.cql_port), "--no-color", "-e", script.strip()],
        capture_output=True, text=True, timeout=60,
    )
    return out.returncode, out.stdout, out.stderr


def counts(out):
    """The values of every `count` column cqlsh printed."""
    return re.findall(r"^\s*count\n-+\n\s*(\d+)$", out, re.M)


def test_cqlsh_creates_writes_reads_and_describes(node):
    code, out, err = cqlsh(node, """
        CREATE KEYSPACE shop WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};
        CREATE TABLE shop.orders (customer text, placed int, item text, qty int, tags set<text>,
            PRIMARY KEY (customer, placed)) WITH CLUSTERING ORDER BY (placed DESC);
        INSERT INTO shop.orders (customer, placed, item, qty, tags) VALUES ('ann', 1, 'tea', 2, {'hot'});
        INSERT INTO shop.orders (customer, placed, item, qty) VALUES ('ann', 2, 'cake', 1);
        INSERT INTO shop.orders (customer, placed, item, qty) VALUES ('bob', 1, 'jam', 5) USING TTL 600;
        UPDATE shop.orders SET qty = 3 WHERE customer = 'ann' AND placed = 1;
        SELECT placed, item, qty, tags FROM shop.orders WHERE customer = 'ann';
        SELECT count(*) FROM shop.orders;
        DELETE FROM shop.orders WHERE customer = 'ann' AND placed = 2;
        SELECT item FROM shop.orders WHERE customer = 'ann';
        DESCRIBE TABLE shop.orders;
    """)
    assert code == 0, err
    rows = [line.split("|") for line in out.splitlines() if line.count("|") == 3]
    assert [[c.strip() for c in r] for r in rows[1:]] == [
        ["2", "cake", "1", "null"],
        ["1", "tea", "3", "{'hot'}"],
    ], out
    # count(*) sees three rows; after the delete only tea is left.
    assert counts(out) == ["3"], out
    assert "\n  tea\n" in out and out.count("cake") == 1, out
    assert "CREATE TABLE shop.orders" in out and "CLUSTERING ORDER BY (placed DESC)" in out, out
    # Bad CQL gets Cassandra's message and changes nothing.
    code, out, err = cqlsh(node, "SELECT * FROM shop.orders WHERE qty = 3;")
    assert code != 0 and "ALLOW FILTERING" in err, (out, err)
    code, out, err = cqlsh(node, "INSERT INTO shop.orders (customer, item) VALUES ('x', 'y');")
    assert code != 0 and "placed" in err, (out, err)
    code, out, err = cqlsh(node, "SELECT count(*) FROM shop.orders;")
    assert code == 0 and counts(out) == ["2"], (out, err)


def test_driver_prepares_batches_pages_and_compares_and_sets(cql):
    cql.execute("CREATE KEYSPACE app WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    cql.execute("CREATE TABLE app.events (device uuid, at timestamp, seq bigint, reading double, "
                "labels map<text, int>, PRIMARY KEY (device, seq))")
    import uuid
    from datetime import datetime, timezone
    dev = uuid.uuid4()
    insert = cql.prepare("INSERT INTO app.events (device, at, seq, reading, labels) VALUES (?, ?, ?, ?, ?)")
    # The driver routes by the partition key Keel names in the prepared metadata.
    assert insert.routing_key_indexes == [0]
    batch = BatchStatement()
    when = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    for seq in range(100):
        batch.add(insert, (dev, when, seq, seq / 4, {"n": seq}))
    cql.execute(batch)
    # Paging: 100 rows in pages of 7, resumed from the server's paging_state.
    stmt = SimpleStatement("SELECT seq, reading FROM app.events WHERE device = %s", fetch_size=7)
    result = cql.execute(stmt, (dev,))
    assert len(result.current_rows) == 7 and result.has_more_pages
    seqs = [r.seq for r in result]
    assert seqs == list(range(100))
    row = cql.execute("SELECT at, labels FROM app.events WHERE device = %s AND seq = 42", (dev,)).one()
    assert row.labels == {"n": 42} and row.at.replace(tzinfo=timezone.utc) == when
    # Clustering ranges, ORDER BY, LIMIT.
    rows = cql.execute("SELECT seq FROM app.events WHERE device = %s AND seq >= 10 AND seq < 20 "
                       "ORDER BY seq DESC LIMIT 3", (dev,))
    assert [r.seq for r in rows] == [19, 18, 17]
    # Lightweight transactions: applied once, then refused with the current row.
    cql.execute("CREATE TABLE app.locks (name text PRIMARY KEY, owner text)")
    first = cql.execute("INSERT INTO app.locks (name, owner) VALUES ('job', 'a') IF NOT EXISTS").one()
    second = cql.execute("INSERT INTO app.locks (name, owner) VALUES ('job', 'b') IF NOT EXISTS").one()
    assert first.applied is True and second.applied is False and second.owner == "a"
    swap = cql.execute("UPDATE app.locks SET owner = 'b' WHERE name = 'job' IF owner = 'a'").one()
    stale = cql.execute("UPDATE app.locks SET owner = 'c' WHERE name = 'job' IF owner = 'a'").one()
    assert swap.applied is True and stale.applied is False and stale.owner == "b"
    # A bad statement is an InvalidRequest and the session keeps working.
    with pytest.raises(InvalidRequest, match="ALLOW FILTERING"):
        cql.execute("SELECT * FROM app.events WHERE reading = 1.0")
    assert cql.execute("SELECT owner FROM app.locks WHERE name = 'job'").one().owner == "b"


@pytest.mark.parametrize("compression", [False, "lz4"])
def test_protocol_v5_carries_prepared_batches_paging_large_values_and_lwt(node, compression):
    # Protocol v5's frames (CRC24/CRC32-checked, lz4 per frame when agreed); a
    # 300 KiB value spans several 128 KiB frames each way.
    cluster, cql = session_for(node, protocol_version=5, compression=compression)
    try:
        assert cluster.protocol_version == 5
        ks = "v5_lz4" if compression else "v5_plain"
        cql.execute(f"CREATE KEYSPACE {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}")
        cql.execute(f"CREATE TABLE {ks}.blobs (k int, c int, v blob, PRIMARY KEY (k, c))")
        insert = cql.prepare(f"INSERT INTO {ks}.blobs (k, c, v) VALUES (?, ?, ?)")
        assert insert.routing_key_indexes == [0]
        batch = BatchStatement()
        for c in range(60):
            batch.add(insert, (1, c, bytes([c]) * 100))
        cql.execute(batch)
        big = bytes(range(256)) * 1200
        cql.execute(insert, (2, 0, big))
        stmt = SimpleStatement(f"SELECT c, v FROM {ks}.blobs WHERE k = 1", fetch_size=7)
        result = cql.execute(stmt)
        assert len(result.current_rows) == 7 and result.has_more_pages
        rows = list(result)
        assert [r.c for r in rows] == list(range(60))
        assert all(r.v == bytes([r.c]) * 100 for r in rows)
        select = cql.prepare(f"SELECT v FROM {ks}.blobs WHERE k = ? AND c = ?")
        assert cql.execute(select, (2, 0)).one().v == big
        first = cql.execute(f"INSERT INTO {ks}.blobs (k, c, v) VALUES (3, 0, 0x01) IF NOT EXISTS").one()
        second = cql.execute(f"INSERT INTO {ks}.blobs (k, c, v) VALUES (3, 0, 0x02) IF NOT EXISTS").one()
        assert first.applied is True and second.applied is False and second.v == b"\x01"
        with pytest.raises(InvalidRequest, match="ALLOW FILTERING"):
            cql.execute(f"SELECT * FROM {ks}.blobs WHERE v = 0x01")
        assert cql.execute(select, (3, 0)).one().v == b"\x01"
    finally:
        cluster.shutdown()
    # cqlsh negotiates the highest version the server offers.
    code, out, err = cqlsh(node, "SHOW VERSION")
    assert code == 0, err
    assert "Native protocol v5" in out, out


def test_consistency_levels_one_node_can_meet_and_the_ones_it_cannot(cql):
    cql.execute("CREATE KEYSPACE rf3 WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}")
    cql.execute("CREATE TABLE rf3.kv (k text PRIMARY KEY, v int)")
    ok = [ConsistencyLevel.ONE, ConsistencyLevel.LOCAL_ONE, ConsistencyLevel.ANY]
    for i, cl in enumerate(ok):
        cql.execute(SimpleStatement("INSERT INTO rf3.kv (k, v) VALUES ('k', %s)", consistency_level=cl), (i,))
    got = cql.execute(SimpleStatement("SELECT v FROM rf3.kv WHERE k = 'k'",
                                      consistency_level=ConsistencyLevel.ONE)).one()
    assert got.v == 2
    # Three replicas but one node: every level that needs two answers Unavailable
    # at once, with Cassandra's fields, and writes nothing.
    for cl, required in [(ConsistencyLevel.TWO, 2), (ConsistencyLevel.QUORUM, 2),
                         (ConsistencyLevel.ALL, 3), (ConsistencyLevel.LOCAL_QUORUM, 2)]:
        with pytest.raises(Unavailable) as e:
            cql.execute(SimpleStatement("INSERT INTO rf3.kv (k, v) VALUES ('k', 99)", consistency_level=cl))
        assert e.value.required_replicas == required and e.value.alive_replicas == 1, e.value
        with pytest.raises(Unavailable):
            cql.execute(SimpleStatement("SELECT v FROM rf3.kv WHERE k = 'k'", consistency_level=cl))
    assert cql.execute("SELECT v FROM rf3.kv WHERE k = 'k'").one().v == 2


def test_acknowledged_writes_survive_kill9(make_node):
    from conftest import wait_until
    import threading
    n = make_node().start()
    cluster, s = session_for(n)
    s.execute("CREATE KEYSPACE d WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}")
    s.execute("CREATE TABLE d.t (k int, c int, v text, PRIMARY KEY (k, c))")
    ins = s.prepare("INSERT INTO d.t (k, c, v) VALUES (?, ?, ?)")
    for i in range(200):
        s.execute(ins, (i % 10, i, f"v{i}"))
    s.execute("DELETE FROM d.t WHERE k = 3")
    # Then kill -9 while writes are in flight: every acknowledged one must be
    # there after the restart, with its value; unacknowledged ones may or may not.
    acked, lock = set(), threading.Lock()

    def ok(_, i):
        with lock:
            acked.add(i)

    for i in range(200, 5000):
        f = s.execute_async(ins, (i % 10, i, f"v{i}"))
        f.add_callback(ok, i)
    wait_until(lambda: len(acked) >= 500, timeout=60, what="500 acknowledged inserts")
    n.kill9()
    with lock:
        acked_at_kill = set(acked)
    cluster.shutdown()
    again = make_node(port=n.port, etcd_port=n.etcd_port, cql_port=n.cql_port).start()
    cluster, s = session_for(again)
    rows = {(r.k, r.c): r.v for r in s.execute(SimpleStatement("SELECT k, c, v FROM d.t", fetch_size=500))}
    cluster.shutdown()
    before = {(i % 10, i) for i in range(200) if i % 10 != 3}
    assert before <= rows.keys(), "rows written before the delete were lost"
    assert not any(k == 3 and c < 200 for k, c in rows), "a deleted row came back"
    lost = [i for i in acked_at_kill if (i % 10, i) not in rows]
    print(f"acked at kill {len(acked_at_kill)}, rows after restart {len(rows)}")
    assert not lost, f"{len(lost)} acknowledged inserts lost, e.g. {sorted(lost)[:5]}"
    assert all(v == f"v{c}" for (k, c), v in rows.items()), "a row has a wrong value"


def frame(version, stream, opcode, body, flags=0):
    return struct.pack(">BBhBi", version, flags, stream, opcode, len(body)) + body


def read_frame(sock):
    head = b""
    while len(head) < 9:
        chunk = sock.recv(9 - len(head))
        assert chunk, "connection closed"
        head += chunk
    version, _, stream, opcode, length = struct.unpack(">BBhBi", head)
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return version, stream, opcode, body


def test_malformed_frames_get_protocol_errors_and_the_server_keeps_serving(node, cql):
    startup = struct.pack(">h", 1) + struct.pack(">h", 11) + b"CQL_VERSION" + struct.pack(">h", 5) + b"3.0.0"
    # Protocol v6 (Cassandra's beta) is refused with the message drivers parse to downgrade.
    with socket.create_connection(("127.0.0.1", node.cql_port), timeout=10) as s:
        s.sendall(frame(6, 0, 0x01, startup))
        version, _, opcode, body = read_frame(s)
        assert opcode == 0x00 and struct.unpack(">i", body[:4])[0] == 0x000A
        assert b"Invalid or unsupported protocol version (6)" in body
    # A QUERY whose [long string] claims more bytes than the frame has, and one with a
    # negative value count: protocol errors on their stream, the connection goes on.
    with socket.create_connection(("127.0.0.1", node.cql_port), timeout=10) as s:
        s.sendall(frame(4, 1, 0x01, startup))
        assert read_frame(s)[2] == 0x02  # READY
        s.sendall(frame(4, 2, 0x07, struct.pack(">i", 1_000_000) + b"SELECT"))
        _, stream, opcode, body = read_frame(s)
        assert (stream, opcode, struct.unpack(">i", body[:4])[0]) == (2, 0x00, 0x000A)
        q = b"SELECT key FROM system.local"
        bad = struct.pack(">i", len(q)) + q + struct.pack(">hBh", 1, 0x01, -5)
        s.sendall(frame(4, 3, 0x07, bad))
        _, stream, opcode, _ = read_frame(s)
        assert (stream, opcode) == (3, 0x00)
        good = struct.pack(">i", len(q)) + q + struct.pack(">hB", 1, 0)
        s.sendall(frame(4, 4, 0x07, good))
        _, stream, opcode, body = read_frame(s)
        assert (stream, opcode) == (4, 0x08), body  # RESULT
    # An absurd length is refused before anything is read or allocated.
    with socket.create_connection(("127.0.0.1", node.cql_port), timeout=10) as s:
        s.sendall(struct.pack(">BBhBi", 4, 0, 0, 0x01, 0x7FFFFFFF))
        _, _, opcode, body = read_frame(s)
        assert opcode == 0x00 and b"too big" in body
    assert cql.execute("SELECT release_version FROM system.local").one().release_version.startswith("4.")


def test_keel_bench_table_writes_then_reads_back_every_key(node):
    from conftest import KEEL
    cmd = [str(KEEL), "bench", "table", "--cql", f"127.0.0.1:{node.cql_port}"]
    base = cmd + ["--total", "400", "--clients", "4"]
    w = subprocess.run(base + ["--op", "insert"], capture_output=True, text=True, timeout=60)
    assert w.returncode == 0, w.stderr
    assert "table insert at ONE (replication factor 1): 400 requests" in w.stdout, w.stdout
    r = subprocess.run(base + ["--op", "select"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "(400 rows found)" in r.stdout, r.stdout
    # The bench's keyspace has replication_factor 1, so ALL is this node alone.
    one = subprocess.run(cmd + ["--consistency", "ALL", "--total", "1", "--clients", "1"],
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 0 and "table insert at ALL (replication factor 1): 1 requests" in one.stdout, one.stderr
    bad = subprocess.run(base + ["--consistency", "SERIALISH"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not a consistency level" in bad.stderr, bad.stderr
