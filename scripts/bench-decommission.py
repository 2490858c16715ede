#!/usr/bin/env python3
"""Measures `keel table decommission` for docs/perf.md: four nodes,
replication factor 3, ROWS rows of 100 B written at ALL by `keel bench
table`; node 4 leaves. Prints its effective ownership before, the time, and
the cells and bytes it streamed to each node, against all the replicas'
cells (so the fraction of the data that moved).

    python3 scripts/bench-decommission.py      # ROWS=100000
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


def main():
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(Path(d), 4)
        port = free_port()
        for i, n in c.nodes.items():
            n.cql_host, n.cql_port = f"127.0.0.{20 + i}", port
        c.start()
        try:
            wait_until(lambda: all(len(n.cli("table", "ring")) == 64 for n in c.nodes.values()), timeout=30,
                       what="the ring")
            nodes = ",".join(f"{n.cql_host}:{n.cql_port}" for n in c.nodes.values())
            out = subprocess.run([str(KEEL), "bench", "table", "--cql", nodes, "--replication-factor", "3",
                                  "--consistency", "ALL", "--total", str(ROWS), "--key-space", str(ROWS),
                                  "--clients", "32"], capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"keel bench table failed: {out.stdout}{out.stderr}")
            out = out.stdout
            print(f"{ROWS} rows at ALL: " + out.strip().splitlines()[-1].strip())
            own = {s["node"]: s for s in c.nodes[1].cli("table", "status", "keel_bench_rf3")}
            print("effective ownership before: " + json.dumps({n: s.get("owns") for n, s in own.items()}))
            t0 = time.monotonic()
            r = c.nodes[4].cli("table", "decommission")
            took = time.monotonic() - t0
            # Each row is its marker and one value: two cells, on three replicas.
            total = 2 * 3 * ROWS
            print(f"decommission of node 4: {took:.2f} s, {r['ranges']} ranges, {r['cells_streamed']} cells "
                  f"({r['cells_streamed'] / total:.1%} of the {total} cells the replicas hold), "
                  f"{r['bytes_streamed']} bytes to {json.dumps(r['bytes_streamed_to'])}")
            after = c.nodes[1].cli("table", "status", "keel_bench_rf3")
            print("nodes on the ring after: " + json.dumps([s["node"] for s in after]))
        finally:
            c.stop()


if __name__ == "__main__":
    main()
