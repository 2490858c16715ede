"""Keel clusters as real processes (`keel start`), etcdctl, fault injection and
the history checkers the etcd-face tests use.

Faults: kill -9 and restart, SIGSTOP/SIGCONT, and network partitions through
each node's own transport (`POST /lab/isolate?peers=..` on the admin port):
both sides drop each other's Raft messages, client ports stay open, so a
client can talk to the minority side and must be refused.
"""
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import KEEL, free_port, wait_until

ETCDCTL_ENV = {**os.environ, "ETCDCTL_API": "3"}


def etcdctl(endpoints, *args, input=None, timeout=15, check=True):
    """Runs Debian's etcdctl 3.4; returns stdout. Raises with stderr on failure if `check`."""
    if isinstance(endpoints, (list, tuple)):
        endpoints = ",".join(endpoints)
    p = subprocess.run(["etcdctl", f"--endpoints={endpoints}", "--command-timeout=5s", *args],
                       input=input, capture_output=True, text=True, timeout=timeout, env=ETCDCTL_ENV)
    if check and p.returncode != 0:
        raise AssertionError(f"etcdctl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout if check else p


def http_get(endpoint, path, timeout=10):
    """GET over plain HTTP/1.1 from an etcd client port (as probes and Prometheus
    do); returns (status, body parsed as JSON, or as text if it is not JSON)."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}{path}", timeout=timeout) as r:
            code, raw = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        code, raw = e.code, e.read().decode()
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw


class ClusterNode:
    def __init__(self, base, node_id, peer_ports, existing=False, extra=()):
        self.id = node_id
        self.dir = Path(base) / f"node{node_id}"
        self.peer_ports = peer_ports
        self.etcd_port = free_port()
        self.kafka_port = free_port()
        self.admin_port = free_port()
        self.cql_port = free_port()
        # The tables face's tests give each node its own loopback address and
        # one port, as Cassandra's drivers expect of a cluster.
        self.cql_host = "127.0.0.1"
        self.extra = list(extra)
        self.existing = existing
        self.proc = None
        self.log = Path(base) / f"node{node_id}.log"

    @property
    def endpoint(self):
        return f"127.0.0.1:{self.etcd_port}"

    @property
    def peer(self):
        return f"127.0.0.1:{self.peer_ports[self.id]}"

    def start(self, wait=True):
        """Starts the node; with `wait`, returns once its admin port answers
        (a node of a cluster whose every member was down needs the others
        started too before it can: start each with wait=False, then `wait_up`)."""
        initial = ",".join(f"{i}=127.0.0.1:{p}" for i, p in sorted(self.peer_ports.items()))
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(KEEL), "start", "--node-id", str(self.id), "--data-dir", str(self.dir),
             "--etcd-addr", self.endpoint, "--peer-addr", self.peer,
             "--kafka-addr", f"127.0.0.1:{self.kafka_port}", "--admin-addr", f"127.0.0.1:{self.admin_port}",
             "--cql-addr", f"{self.cql_host}:{self.cql_port}", "--initial-cluster", initial,
             "--initial-cluster-state", "existing" if self.existing else "new", *self.extra],
            stdout=subprocess.DEVNULL, stderr=logf,
        )
        logf.close()
        if wait:
            self.wait_up()
        return self

    def wait_up(self, timeout=20):
        wait_until(self._up, timeout=timeout, what=f"node {self.id} admin port")

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"node {self.id} exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            return self.status()
        except OSError:
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def status(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/raft", timeout=2) as r:
            return json.loads(r.read())

    def lab(self, what):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}/lab/{what}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.loads(r.read())

    def cli(self, *args):
        """`keel ARGS -o json` against this node (its Kafka and admin
        listeners), parsed."""
        r = subprocess.run([str(KEEL), *args, "-o", "json"], capture_output=True, text=True, timeout=60,
                           env={"KEEL_BROKERS": f"127.0.0.1:{self.kafka_port}",
                                "KEEL_ADMIN": f"127.0.0.1:{self.admin_port}", "PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, f"keel {' '.join(args)}: {r.stderr}"
        return json.loads(r.stdout)

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)


class Cluster:
    def __init__(self, base, n, extra=()):
        self.base = Path(base)
        self.peer_ports = {i: free_port() for i in range(1, n + 1)}
        self.nodes = {i: ClusterNode(base, i, self.peer_ports, extra=extra) for i in range(1, n + 1)}

    def start(self):
        for n in self.nodes.values():
            n.start()
        self.wait_leader()
        return self

    @property
    def endpoints(self):
        return [n.endpoint for n in self.nodes.values()]

    def live(self):
        return [n for n in self.nodes.values() if n.alive()]

    def wait_leader(self, timeout=20, among=None, exclude=None):
        """The id of a leader that a majority of the (given) live nodes agree on."""
        def agreed():
            nodes = among or self.live()
            seen = {}
            for n in nodes:
                try:
                    st = n.status()
                except OSError:
                    continue
                if st["leader"]:
                    seen[st["leader"]] = seen.get(st["leader"], 0) + 1
            for leader, votes in seen.items():
                if leader == exclude:
                    continue
                if votes > len(self.nodes) // 2 or (among and votes == len(among)):
                    if self.nodes[leader].alive():
                        st = self.nodes[leader].status()
                        if st["role"] == "Leader":
                            return leader
            return None
        return wait_until(agreed, timeout=timeout, what="an agreed leader")

    def isolate(self, node_id):
        """Cuts `node_id` off from every other node, both directions."""
        others = [i for i in self.nodes if i != node_id]
        self.nodes[node_id].lab("isolate?peers=" + ",".join(map(str, others)))
        for i in others:
            if self.nodes[i].alive():
                self.nodes[i].lab(f"isolate?peers={node_id}")

    def heal(self):
        for n in self.live():
            n.lab("heal")

    def stop(self):
        for n in self.nodes.values():
            n.stop()

    def logs(self):
        return "\n".join(f"--- node {n.id}\n{n.log.read_text(errors='replace')[-3000:]}" for n in self.nodes.values())


# ---- linearizability ------------------------------------------------------

INF = float("inf")


def check_register(history, initial=None):
    """Wing & Gong's search (with memoisation, as in Lowe's and Knossos's
    checkers) for a linearization of one key's history as a CAS register.

    Each op is a dict: f in {"read", "write", "cas"}, call, ret (INF if the
    client never learned the outcome), value (write: new value; read: value
    read, or None for absent), and for cas: old, new, ok (None if unknown).
    Returns None if linearizable, else a description of the failure.
    """
    ops = [o for o in history if not (o["f"] == "read" and o["ret"] == INF)]
    ops.sort(key=lambda o: o["call"])
    n = len(ops)
    must = frozenset(i for i, o in enumerate(ops) if o["ret"] != INF)

    def step(state, o):
        """Possible states after applying o to state (empty if impossible)."""
        if o["f"] == "write":
            return [o["value"]]
        if o["f"] == "read":
            return [state] if o["value"] == state else []
        if o["f"] == "cas":
            if o["ok"] is True:
                return [o["new"]] if state == o["old"] else []
            if o["ok"] is False:
                return [state] if state != o["old"] else []
            return [o["new"]] if state == o["old"] else [state]
        raise ValueError(o)

    seen = set()
    stack = [(frozenset(), initial)]
    while stack:
        done, state = stack.pop()
        if must <= done:
            return None
        key = (done, state)
        if key in seen:
            continue
        seen.add(key)
        # An op may go next only if no pending op returned before it was called.
        pending = [i for i in range(n) if i not in done]
        min_ret = min(ops[i]["ret"] for i in pending)
        for i in pending:
            if ops[i]["call"] > min_ret:
                break
            for s in step(state, ops[i]):
                stack.append((done | {i}, s))
    completed = [o for o in ops if o["ret"] != INF]
    return f"no linearization of {len(completed)} completed ops ({n} in all)"
