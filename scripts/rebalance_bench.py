#!/usr/bin/env python3
"""Measures what a member change costs a consumer group, per protocol, in one
run against one `keel dev` node (docs/perf.md, "Consumer group rebalances"):

    KEEL_BIN=target/release/keel python3 scripts/rebalance_bench.py [ROUNDS]

For each protocol (classic eager "range", classic "cooperative-sticky", and
KIP-848's group.protocol=consumer), three members join one by one and two
leave, on a 6-partition topic under a steady producer; every member
heartbeats every 300 ms. Per change it reports the partitions revoked from
members that stay (paused work), the time until every partition is owned
again in the balanced counts, and the longest time any partition had no
owner (from a revoke to the next assign of that partition).
"""
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))

from conftest import Node, wait_until  # noqa: E402
from test_kip848 import FLAGS, Member, SteadyProducer, create  # noqa: E402

CLASSIC = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 300}
PROTOCOLS = {
    "classic eager (range)": {**CLASSIC, "partition.assignment.strategy": "range"},
    "classic cooperative-sticky": {**CLASSIC, "partition.assignment.strategy": "cooperative-sticky"},
    "KIP-848 consumer (uniform)": {"group.protocol": "consumer"},
}
STEPS = [("join", "a", [6]), ("join", "b", [3, 3]), ("join", "c", [2, 2, 2]),
         ("leave", "a", [3, 3]), ("leave", "b", [6])]


def run(node, name, conf, tag):
    topic, group = f"rb-{tag}", f"rb-g-{tag}"
    create(node.bootstrap, topic, 6)
    producer = SteadyProducer(node.bootstrap, topic, 6)
    reads, lock, members = [], threading.Lock(), {}
    everyone = []
    out = []

    def settled(expect):
        owned = {n: m.owned() for n, m in members.items()}
        every = sorted(p for v in owned.values() for p in v)
        return every == list(range(6)) and sorted(len(v) for v in owned.values()) == expect

    for kind, who, expect in STEPS:
        events_before = {n: len(m.changes) for n, m in members.items()}
        t0 = time.monotonic()
        if kind == "join":
            m = Member(who, node.bootstrap, group, [topic], reads, lock, conf=conf)
            members[who] = m
            everyone.append(m)
        else:
            members.pop(who).leave()
        wait_until(lambda: settled(expect), timeout=60, what=f"{name}: {who} {kind}")
        took = time.monotonic() - t0
        revoked = sum(len(ps) for n, m in members.items()
                      for _, k, ps in m.changes[events_before.get(n, 0):] if k == "revoke")
        # The longest a partition went unowned during this change.
        changes = [(t, k, p) for m in everyone for t, k, ps in m.changes if t >= t0 for p in ps]
        changes.sort()
        gap, revoked_at = 0.0, {}
        for t, k, p in changes:
            if k == "revoke":
                revoked_at.setdefault(p, t)
            elif p in revoked_at:
                gap = max(gap, t - revoked_at.pop(p))
        out.append((f"{who} {kind}s", revoked, took, gap))
        mark = len(reads)
        wait_until(lambda: len(reads) >= mark + 100, timeout=60, what="records read")
    producer.finish()
    for m in members.values():
        m.leave()
    return out


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as d:
        node = Node(Path(d) / "data", extra=FLAGS).start()
        try:
            results = {name: [] for name in PROTOCOLS}
            for r in range(rounds):
                # Alternate the protocols within each round, as farm-bench
                # alternates binaries, so drift hits them alike.
                for i, (name, conf) in enumerate(PROTOCOLS.items()):
                    results[name].append(run(node, name, conf, f"{r}-{i}"))
        finally:
            node.stop()
    print(f"{rounds} rounds; per change: partitions revoked from members that stay "
          f"(median), time to a balanced assignment and longest unowned partition "
          f"(median, min-max, ms)")
    print(f"| protocol | change | revoked | settled ms | longest pause ms |")
    print(f"|---|---|---|---|---|")
    for name, rs in results.items():
        for i, (step, _, _, _) in enumerate(rs[0]):
            rev = statistics.median(r[i][1] for r in rs)
            took = [r[i][2] * 1000 for r in rs]
            gap = [r[i][3] * 1000 for r in rs]
            print(f"| {name} | {step} | {rev:g} | {statistics.median(took):.0f} "
                  f"({min(took):.0f}-{max(took):.0f}) | {statistics.median(gap):.0f} "
                  f"({min(gap):.0f}-{max(gap):.0f}) |")


if __name__ == "__main__":
    main()
