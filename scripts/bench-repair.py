#!/usr/bin/env python3
"""Measures `keel table repair` for docs/perf.md: three nodes (hints off),
replication factor 3, ROWS rows of 100 B written at ALL by `keel bench
table`; a repair with nothing to do (Merkle trees only); node 3 killed while
MISSED more writes go in at QUORUM, restarted; a repair that streams them.
Each line: seconds, ranges compared/differed, cells and bytes streamed.

    python3 scripts/bench-repair.py            # ROWS=100000 MISSED=10000
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))
from conftest import KEEL, free_port, wait_until  # noqa: E402
from etcd_cluster import Cluster  # noqa: E402

ROWS = int(os.environ.get("ROWS", 100000))
MISSED = int(os.environ.get("MISSED", 10000))


def bench(c, cl, total, keys):
    nodes = ",".join(f"{n.cql_host}:{n.cql_port}" for n in c.nodes.values() if n.alive())
    out = subprocess.run([str(KEEL), "bench", "table", "--cql", nodes, "--replication-factor", "3",
                          "--consistency", cl, "--total", str(total), "--key-space", str(keys),
                          "--clients", "32"], capture_output=True, text=True, check=True).stdout
    print("  " + out.strip().splitlines()[-1].strip())


def repair(c, what):
    t0 = time.monotonic()
    r = c.nodes[1].cli("table", "repair", "keel_bench_rf3")
    took = time.monotonic() - t0
    print(f"{what}: {took:.2f} s, {r['ranges']} ranges, {r['ranges_differed']} differed, "
          f"{r['leaves_differed']} leaves, {r['cells_streamed']} cells / {r['bytes_streamed']} bytes streamed "
          f"to {json.dumps(r['bytes_streamed_to'])}, still differing {r['ranges_still_differing']}")


def main():
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(Path(d), 3, extra=["--max-hint-window-ms", "0"])
        port = free_port()
        for i, n in c.nodes.items():
            n.cql_host, n.cql_port = f"127.0.0.{20 + i}", port
        c.start()
        try:
            wait_until(lambda: all(len(n.cli("table", "ring")) == 48 for n in c.nodes.values()), timeout=30,
                       what="the ring")
            print(f"{ROWS} rows at ALL:")
            bench(c, "ALL", ROWS, ROWS)
            repair(c, "repair, replicas equal")
            c.nodes[3].kill9()
            print(f"node 3 killed; {MISSED} writes at QUORUM:")
            bench(c, "QUORUM", MISSED, ROWS)
            c.nodes[3].start()
            wait_until(lambda: all(s["up"] for s in c.nodes[1].cli("table", "status")), timeout=30,
                       what="node 3 up")
            time.sleep(1)  # its links come back up; a repair meanwhile fails loudly
            repair(c, "repair, node 3 behind")
            repair(c, "repair again")
        finally:
            c.stop()


if __name__ == "__main__":
    main()
