"""etcdctl 3.4 (Debian's etcd-client) against `keel dev` and a three-node cluster."""
import json
import subprocess
import threading
import time

import pytest

from conftest import wait_until
from etcd_cluster import Cluster, etcdctl, http_get


@pytest.fixture
def cluster3(tmp_path):
    c = Cluster(tmp_path, 3).start()
    yield c
    c.stop()


def kv_round_trip(eps):
    """The etcdctl workflow every deployment uses; asserts what etcd would print."""
    one = eps[0] if isinstance(eps, list) else eps
    assert etcdctl(eps, "put", "/app/a", "1").strip() == "OK"
    rev_a = json.loads(etcdctl(eps, "get", "/app/a", "-w", "json"))["header"]["revision"]
    etcdctl(eps, "put", "/app/a", "2")
    etcdctl(eps, "put", "/app/b", "3")
    assert etcdctl(eps, "get", "/app/", "--prefix").split() == ["/app/a", "2", "/app/b", "3"]
    # Reads at a past revision see the past.
    assert etcdctl(eps, "get", "/app/a", f"--rev={rev_a}").split() == ["/app/a", "1"]
    got = json.loads(etcdctl(eps, "get", "/app/a", "-w", "json"))
    kv = got["kvs"][0]
    assert kv["version"] == 2 and kv["create_revision"] == rev_a and kv["mod_revision"] > rev_a
    limited = json.loads(etcdctl(eps, "get", "/app/", "--prefix", "--limit=1", "-w", "json"))
    assert limited["count"] == 2 and limited["more"] is True and len(limited["kvs"]) == 1
    assert etcdctl(eps, "get", "/app/", "--prefix", "--keys-only").split() == ["/app/a", "/app/b"]
    assert etcdctl(eps, "get", "/app/", "--prefix", "--limit=1").split() == ["/app/a", "2"]
    assert etcdctl(eps, "get", "/app/", "--prefix", "--sort-by=KEY", "--order=DESCEND").split()[:2] == ["/app/b", "3"]
    # Txn: compare-and-swap, both branches.
    out = etcdctl(eps, "txn", input='value("/app/a") = "2"\n\nput /app/a 20\n\nput /app/a 99\n\n')
    assert out.split()[0] == "SUCCESS"
    out = etcdctl(eps, "txn", input='value("/app/a") = "2"\n\nput /app/a 21\n\nget /app/a\n\n')
    assert out.split()[:3] == ["FAILURE", "/app/a", "20"]
    assert etcdctl(eps, "del", "/app/", "--prefix").strip() == "2"
    assert etcdctl(eps, "get", "/app/", "--prefix").strip() == ""
    # Watch from an old revision replays history in order.
    p = subprocess.Popen(["etcdctl", f"--endpoints={one}", "watch", "/app/a", f"--rev={rev_a}"],
                         stdout=subprocess.PIPE, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    lines = []
    try:
        wait_until(lambda: (lines.append(p.stdout.readline().strip()) or len(lines) >= 12), timeout=15,
                   what="watch events")
    finally:
        p.kill()
        p.wait()
    assert lines == ["PUT", "/app/a", "1", "PUT", "/app/a", "2", "PUT", "/app/a", "20", "DELETE", "/app/a", ""]
    # Compaction: old revisions go, with etcd's error.
    status = json.loads(etcdctl(eps, "endpoint", "status", "-w", "json"))
    head = status[0]["Status"]["header"]["revision"]
    assert etcdctl(eps, "compaction", str(head)).strip() == f"compacted revision {head}"
    p = etcdctl(eps, "get", "/app/a", f"--rev={rev_a}", check=False)
    assert p.returncode != 0 and "required revision has been compacted" in p.stderr


def test_etcdctl_against_keel_dev(node):
    kv_round_trip(node.etcd)
    st = json.loads(etcdctl(node.etcd, "endpoint", "status", "-w", "json"))[0]["Status"]
    assert st["leader"] == st["header"]["member_id"] and st["version"].startswith("3.4")


def test_endpoints_given_as_urls_and_http_endpoints(node):
    """What operators type and scrape: endpoints as http:// URLs (grpc-go then
    sends the whole URL as :authority), and etcd's plain-HTTP /health, /version
    and /metrics on the client port."""
    url = f"http://{node.etcd}"
    for args in (["endpoint", "status", "-w", "json"], ["endpoint", "hashkv", "-w", "json"],
                 ["endpoint", "status", "--cluster", "-w", "json"], ["defrag"], ["alarm", "list"]):
        etcdctl(url, *args)
    st = json.loads(etcdctl(url, "endpoint", "status", "--cluster", "-w", "json"))
    assert [s["Endpoint"] for s in st] == [url] and st[0]["Status"]["leader"] == st[0]["Status"]["header"]["member_id"]
    assert http_get(node.etcd, "/health") == (200, {"health": "true", "reason": ""})
    assert http_get(node.etcd, "/version") == (200, {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"})
    etcdctl(node.etcd, "put", "m", "1")
    code, text = http_get(node.etcd, "/metrics")
    metrics = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert code == 200 and metrics["etcd_server_has_leader"] == "1" and metrics["etcd_server_is_leader"] == "1"
    head = json.loads(etcdctl(node.etcd, "get", "m", "-w", "json"))["header"]["revision"]
    assert int(metrics["etcd_debugging_mvcc_current_revision"]) == head
    assert int(metrics["process_resident_memory_bytes"]) > 1 << 20
    # etcdctl's own data-scale check: 10 000 writes, memory read from /metrics before and after.
    out = etcdctl(node.etcd, "check", "datascale", "--load=s", timeout=120)
    assert "PASS: Approximate system memory used" in out, out
    assert etcdctl(node.etcd, "get", "/etcdctl-check-datascale/", "--prefix", "--keys-only").strip() == ""


def test_leases_lock_and_elect(node):
    ep = node.etcd
    lease = etcdctl(ep, "lease", "grant", "30").split()[1]
    etcdctl(ep, "put", "held", "x", f"--lease={lease}")
    ttl = etcdctl(ep, "lease", "timetolive", lease, "--keys")
    assert "granted with TTL(30s)" in ttl and "attached keys([held])" in ttl
    ka = etcdctl(ep, "lease", "keep-alive", "--once", lease)
    assert f"lease {lease} keepalived with TTL(30)" in ka
    assert lease in etcdctl(ep, "lease", "list")
    etcdctl(ep, "lease", "revoke", lease)
    assert etcdctl(ep, "get", "held").strip() == ""
    assert "already expired" in etcdctl(ep, "lease", "timetolive", lease)
    # A short lease expires by itself and takes its keys with it.
    short = etcdctl(ep, "lease", "grant", "2").split()[1]
    etcdctl(ep, "put", "ephemeral", "x", f"--lease={short}")
    wait_until(lambda: etcdctl(ep, "get", "ephemeral").strip() == "", timeout=10, what="lease expiry")
    # etcdctl lock: the second holder waits until the first lets go.
    first = subprocess.Popen(["etcdctl", f"--endpoints={ep}", "lock", "L"], stdout=subprocess.PIPE, text=True,
                             env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert first.stdout.readline().startswith("L/")
    second = subprocess.Popen(["etcdctl", f"--endpoints={ep}", "lock", "L", "echo", "second-holds"],
                              stdout=subprocess.PIPE, text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    # While the first holds it, the second's key waits behind the first's.
    wait_until(lambda: len(etcdctl(ep, "get", "L/", "--prefix", "--keys-only").split()) == 2, what="two lock keys")
    assert second.poll() is None
    first.terminate()
    first.wait()
    assert second.stdout.read().strip() == "second-holds"
    assert second.wait(timeout=15) == 0
    # etcdctl elect: a campaign becomes leader; observers see the proclamation.
    cand = subprocess.Popen(["etcdctl", f"--endpoints={ep}", "elect", "E", "alpha"], stdout=subprocess.PIPE,
                            text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert cand.stdout.readline().startswith("E/")
    assert cand.stdout.readline().strip() == "alpha"
    observer = subprocess.Popen(["etcdctl", f"--endpoints={ep}", "elect", "-l", "E"], stdout=subprocess.PIPE,
                                text=True, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    try:
        assert observer.stdout.readline().startswith("E/")
        assert observer.stdout.readline().strip() == "alpha"
    finally:
        observer.kill()
        observer.wait()
    cand.terminate()
    cand.wait()
    # Resigning (the candidate's exit) deletes its key.
    wait_until(lambda: etcdctl(ep, "get", "E/", "--prefix").strip() == "", what="resignation")


def test_etcdctl_against_three_nodes(cluster3):
    c = cluster3
    kv_round_trip(c.endpoints)
    # Every member serves the same data; writes through a follower work.
    leader = c.wait_leader()
    follower = next(n for n in c.nodes.values() if n.id != leader)
    etcdctl(follower.endpoint, "put", "via-follower", "yes")
    for n in c.nodes.values():
        assert etcdctl(n.endpoint, "get", "via-follower", "--print-value-only").strip() == "yes"
    # Status of every endpoint agrees on the leader.
    st = json.loads(etcdctl(c.endpoints, "endpoint", "status", "-w", "json"))
    assert {s["Status"]["leader"] for s in st} == {leader}
    # Leases and keep-alive through a follower reach the leader.
    lease = etcdctl(follower.endpoint, "lease", "grant", "20").split()[1]
    assert "keepalived with TTL(20)" in etcdctl(follower.endpoint, "lease", "keep-alive", "--once", lease)
    members = json.loads(etcdctl(c.endpoints, "member", "list", "-w", "json"))["members"]
    assert sorted(m["ID"] for m in members) == [1, 2, 3]
    wait_until(lambda: all(m.get("clientURLs") for m in
                           json.loads(etcdctl(c.endpoints, "member", "list", "-w", "json"))["members"]),
               what="every member's client URL")
    # --cluster: etcdctl dials every member's advertised client URL.
    st = json.loads(etcdctl(c.endpoints[0], "endpoint", "status", "--cluster", "-w", "json"))
    assert sorted(s["Endpoint"] for s in st) == sorted(f"http://{e}" for e in c.endpoints)
    assert {s["Status"]["leader"] for s in st} == {leader}
    p = etcdctl(c.endpoints[0], "endpoint", "health", "--cluster", check=False)
    # etcdctl 3.4 prints health lines on stderr.
    assert p.returncode == 0 and (p.stdout + p.stderr).count("is healthy") == 3, p.stderr
    for e in c.endpoints:
        assert http_get(e, "/health") == (200, {"health": "true", "reason": ""})


def test_member_add_promote_and_remove(tmp_path):
    from etcd_cluster import ClusterNode
    c = Cluster(tmp_path, 3).start()
    try:
        leader = c.nodes[c.wait_leader()]
        etcdctl(leader.endpoint, "put", "before-join", "1")
        # A fourth node: add it as a learner, start it, promote it once caught up.
        c.peer_ports[4] = __import__("conftest").free_port()
        # Through whichever member etcdctl picks: followers forward to the leader.
        follower = next(n for n in c.nodes.values() if n.id != leader.id)
        out = etcdctl(follower.endpoint, "member", "add", "keel-4", f"--peer-urls=http://127.0.0.1:{c.peer_ports[4]}",
                      "--learner")
        assert "added to cluster" in out
        n4 = ClusterNode(tmp_path, 4, c.peer_ports, existing=True).start()
        c.nodes[4] = n4
        wait_until(lambda: etcdctl(n4.endpoint, "get", "before-join", "--consistency=s",
                                   "--print-value-only", check=False).stdout.strip() == "1",
                   timeout=20, what="the learner to catch up by snapshot")

        # Once started, the new member publishes its name and client URL
        # (etcdctl lists a member without a name as unstarted).
        def started():
            table = etcdctl(follower.endpoint, "member", "list")
            row = next(r for r in table.splitlines() if r.startswith("4,"))
            return row.split(", ")[1] == "started" and row.split(", ")[2] == "keel-4" and n4.endpoint in row
        wait_until(started, timeout=20, what="the new member to publish itself")

        # Promote through a follower: it forwards to the leader, as etcd does.
        def promoted():
            p = etcdctl(follower.endpoint, "member", "promote", "4", check=False)
            assert "leader changed" not in p.stderr, p.stderr
            return p.returncode == 0
        wait_until(promoted, timeout=20, what="promotion")
        members = json.loads(etcdctl(c.endpoints, "member", "list", "-w", "json"))["members"]
        assert sorted((m["ID"], bool(m.get("isLearner"))) for m in members) == [(1, False), (2, False), (3, False), (4, False)]
        # Remove a member; the rest go on.
        victim = next(i for i in (1, 2, 3) if i != leader.id)
        etcdctl(c.nodes[victim].endpoint, "member", "remove", f"{victim:x}")
        c.nodes[victim].stop()
        del c.nodes[victim]
        etcdctl(c.endpoints, "put", "after-remove", "ok")
        members = json.loads(etcdctl(c.endpoints, "member", "list", "-w", "json"))["members"]
        assert victim not in [m["ID"] for m in members] and len(members) == 3
    finally:
        c.stop()


def test_snapshot_save_and_restore(node, tmp_path):
    """etcd's backup workflow: `etcdctl snapshot save` from a running node, then
    `keel snapshot restore` into a new data dir (etcdctl's restore writes a bbolt
    data dir, so it cannot restore into Keel), and a node started there serves
    the same keys, history, revision and leases."""
    from conftest import KEEL, Node
    ep = node.etcd
    etcdctl(ep, "put", "/s/a", "1")
    rev_a = json.loads(etcdctl(ep, "get", "/s/a", "-w", "json"))["header"]["revision"]
    etcdctl(ep, "put", "/s/a", "2")
    etcdctl(ep, "put", "/s/b", "3")
    lease = etcdctl(ep, "lease", "grant", "300").split()[1]
    etcdctl(ep, "put", "/s/l", "x", f"--lease={lease}")
    etcdctl(ep, "del", "/s/b")
    before = json.loads(etcdctl(ep, "get", "/s/", "--prefix", "-w", "json"))
    snap = tmp_path / "backup.db"
    etcdctl(ep, "snapshot", "save", str(snap))
    body = snap.read_bytes()
    assert (len(body) - 32) % 512 == 0 and body.startswith(b"KEELSNAP")

    # A damaged backup is refused, and nothing is created.
    bad = tmp_path / "bad.db"
    bad.write_bytes(body[:40] + bytes([body[40] ^ 1]) + body[41:])
    p = subprocess.run([str(KEEL), "snapshot", "restore", str(bad), "--data-dir", str(tmp_path / "r-bad")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "SHA-256 does not match" in p.stderr, p.stderr
    assert not (tmp_path / "r-bad").exists()

    out = subprocess.run([str(KEEL), "snapshot", "restore", str(snap), "--data-dir", str(tmp_path / "restored")],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"revision {before['header']['revision']}" in out, out
    r = Node(tmp_path / "restored").start()
    try:
        after = json.loads(etcdctl(r.etcd, "get", "/s/", "--prefix", "-w", "json"))
        assert after["kvs"] == before["kvs"] and after["header"]["revision"] == before["header"]["revision"]
        assert etcdctl(r.etcd, "get", "/s/a", f"--rev={rev_a}", "--print-value-only").strip() == "1"
        assert "attached keys([/s/l])" in etcdctl(r.etcd, "lease", "timetolive", lease, "--keys")
        put = json.loads(etcdctl(r.etcd, "put", "/s/c", "4", "-w", "json"))
        assert put["header"]["revision"] == before["header"]["revision"] + 1
        # Restarted, it keeps what it restored (the staged copy has served).
        r.stop()
        assert not (tmp_path / "restored" / "etcd-restore.snapshot").exists()
        r = Node(tmp_path / "restored", etcd_port=r.etcd_port).start()
        assert etcdctl(r.etcd, "get", "/s/", "--prefix", "--keys-only").split() == ["/s/a", "/s/c", "/s/l"]
    finally:
        r.stop()
