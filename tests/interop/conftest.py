"""Fixtures that run the real `keel` binary as a separate process.

Every node listens on a free 127.0.0.1 port with its own temporary data
directory, and is stopped (or killed) and cleaned up by the fixture.
"""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEEL = Path(os.environ.get("KEEL_BIN", ROOT / "target" / "release" / "keel"))


# scripts/test.sh runs the suite in two phases. The "heavy" files load the
# machine and assert on timing under faults (failover within a session, a
# watcher answering during a long apply, throughput under a quota): they run
# two at a time, as on two cores they keep their margins. The rest run three
# at a time, most of their time being spent waiting on timeouts and
# elections. Either way a file's tests stay on one worker (`--dist
# loadfile`): its module fixtures are built once, and tests that use fixed
# ports (test_readme's, Keel's defaults) never meet.
HEAVY = {
    "test_etcd_faults.py", "test_kafka_replication.py", "test_kafka_failover.py", "test_stall.py",
    "test_cql_five.py", "test_kafka_clients_failover.py", "test_kafka_crash_all.py", "test_quotas.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in HEAVY:
            item.add_marker(pytest.mark.heavy)


def _ports_outside_the_ephemeral_range():
    """Ports for the nodes under test lie outside the kernel's ephemeral range
    (ip_local_port_range, 32768-60999 by default): a port picked by binding to 0
    lies inside it, and a client connection made before the node starts may take
    it as its source port, so the node's bind fails (seen in the five-node fault
    tests). Outside the range only listeners compete; each port is handed out
    once per test run and checked free before it is."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return (high + 1, 65535) if high < 64000 else (24000, low)


def _worker_share(low, high):
    """Under pytest-xdist each worker hands out ports from its own share of
    the range (workers do not see each other's handed-out ports)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, high
    i = int(worker[2:])
    width = (high - low) // count
    return low + i * width, low + (i + 1) * width


_PORT_LOW, _PORT_HIGH = _worker_share(*_ports_outside_the_ephemeral_range())
_handed_out = set()


def free_port():
    import random
    for _ in range(1000):
        port = random.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_LOW}-{_PORT_HIGH}")


def wait_until(cond, timeout=15.0, what="condition"):
    """Polls `cond` until it is truthy or `timeout` passes; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Node:
    def __init__(self, data_dir, port=None, extra=(), etcd_port=None, cql_port=None):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.etcd_port = etcd_port or free_port()
        self.cql_port = cql_port or free_port()
        self.extra = list(extra)
        self.proc = None
        self.stopped = False
        self.log = self.data_dir.parent / f"keel-{self.port}.log"

    @property
    def etcd(self):
        return f"127.0.0.1:{self.etcd_port}"

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        assert KEEL.exists(), f"{KEEL} is missing: build it with cargo build --release"
        self._log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(KEEL), "dev", "--data-dir", str(self.data_dir), "--kafka-addr", self.bootstrap,
             "--admin-addr", "127.0.0.1:0", "--etcd-addr", f"127.0.0.1:{self.etcd_port}",
             "--peer-addr", "127.0.0.1:0", "--cql-addr", f"127.0.0.1:{self.cql_port}", *self.extra],
            stdout=subprocess.PIPE, stderr=self._log, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
        )
        lines = []
        for _ in range(20):
            line = self.proc.stdout.readline().decode()
            lines.append(line)
            if not line or line.strip().startswith("Stop:"):
                break
        self.banner = "".join(lines)
        assert "is up" in self.banner, f"keel did not start: {self.banner!r}\n{self.log.read_text()[-3000:]}"
        admin = [w for w in self.banner.split() if w.startswith("http://") and w.endswith("/metrics")]
        self.admin = admin[0][: -len("/metrics")] if admin else None
        wait_until(self._accepting, what=f"keel on {self.bootstrap}")
        return self

    def _accepting(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def exited_by_itself(self):
        """The exit code if the process ended without being told to, else None."""
        if self.proc is None or self.stopped:
            return None
        return self.proc.poll()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        self.stopped = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        code = self.proc.returncode if self.proc else None
        if self.proc:
            self.proc.stdout.close()
            self._log.close()
        return code

    def kill9(self):
        return self.stop(sig=signal.SIGKILL)

    def logs(self):
        return self.log.read_text(errors="replace")


def report_unexpected_exit(n):
    code = n.exited_by_itself()
    if code is not None:
        print(f"keel on {n.bootstrap} exited by itself with {code}; its log ends:\n{n.logs()[-5000:]}")
    return code


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path / "data").start()
    yield n
    died = report_unexpected_exit(n)
    n.stop()
    assert died is None, f"keel exited by itself with {died}"


@pytest.fixture
def make_node(tmp_path):
    """Builds nodes on demand (for restart tests); all are stopped at the end."""
    made = []

    def make(**kw):
        n = Node(tmp_path / "data", **kw)
        made.append(n)
        return n

    yield make
    died = [report_unexpected_exit(n) for n in made]
    for n in made:
        n.stop(sig=signal.SIGKILL)
    assert all(d is None for d in died), f"a keel node exited by itself: {died}"
