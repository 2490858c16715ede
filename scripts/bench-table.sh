#!/usr/bin/env bash
# Measures the tables face against this machine's limits in one run, for docs/perf.md:
#   1. fio: 4 KiB writes each followed by fdatasync (the disk's fsyncs per second:
#      the ceiling for one client whose every write waits for its own fsync).
#   2. keel bench table over CQL on a fresh node with the default commit log
#      (batch: acknowledged after fsync, one fsync per group): inserts from 1 and
#      64 clients, then reads of what was written.
#   3. The same inserts with --commitlog-sync periodic (acknowledged before fsync).
#   4. Three nodes (`keel dev --nodes 3`: CQL on 127.0.0.1-3:9042, so those ports
#      must be free), replication factor 3, 64 clients spread over the nodes:
#      inserts, reads and a half-and-half mix, each at ONE, QUORUM and ALL.
# Each step runs ROUNDS times (default 3). Needs fio (apt-get install fio).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
TOTAL=${TOTAL:-100000}
KEEL=${KEEL:-target/release/keel}
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-table.XXXXXX")
node=""
dev=""
stop() { [ -n "$node" ] && kill "$node" 2>/dev/null && wait "$node" 2>/dev/null; node=""; }
stop_dev() { [ -n "$dev" ] && kill "$dev" 2>/dev/null && wait "$dev" 2>/dev/null; dev=""; }
cleanup() { stop; stop_dev; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --locked -q
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # data dir, extra flags...
  local dir=$1; shift
  cql=$(free_port)
  "$KEEL" dev --data-dir "$dir" --kafka-addr "127.0.0.1:$(free_port)" --etcd-addr "127.0.0.1:$(free_port)" \
    --peer-addr "127.0.0.1:$(free_port)" --admin-addr 127.0.0.1:0 --cql-addr "127.0.0.1:$cql" "$@" \
    >/dev/null 2>"$dir.log" &
  node=$!
  python3 - "$cql" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close(); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
PY
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
scripts/fio-fsync.sh "$work" "$ROUNDS"
for r in $(seq "$ROUNDS"); do
  start "$work/batch-$r"
  echo "--- round $r, commitlog batch"
  "$KEEL" bench table --cql "127.0.0.1:$cql" --op insert --clients 1 --total $((TOTAL / 10)) | tail -1 | sed 's/^/insert  1 client : /'
  "$KEEL" bench table --cql "127.0.0.1:$cql" --op insert --clients 64 --total "$TOTAL" | tail -1 | sed 's/^/insert 64 clients: /'
  "$KEEL" bench table --cql "127.0.0.1:$cql" --op select --clients 64 --total "$TOTAL" | tail -1 | sed 's/^/select 64 clients: /'
  stop
  start "$work/periodic-$r" --commitlog-sync periodic
  echo "--- round $r, commitlog periodic"
  "$KEEL" bench table --cql "127.0.0.1:$cql" --op insert --clients 1 --total $((TOTAL / 10)) | tail -1 | sed 's/^/insert  1 client : /'
  "$KEEL" bench table --cql "127.0.0.1:$cql" --op insert --clients 64 --total "$TOTAL" | tail -1 | sed 's/^/insert 64 clients: /'
  stop
done
keel_abs=$(realpath "$KEEL")
three="127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042"
for r in $(seq "$ROUNDS"); do
  mkdir -p "$work/three-$r"
  (cd "$work/three-$r" && exec "$keel_abs" dev --nodes 3 >/dev/null 2>dev.log) &
  dev=$!
  python3 - <<'PY'
import socket, time
deadline = time.time() + 60
for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
    while True:
        try:
            socket.create_connection((host, 9042), timeout=0.5).close(); break
        except OSError:
            if time.time() > deadline: raise
            time.sleep(0.05)
PY
  echo "--- round $r, three nodes, replication factor 3, commitlog batch"
  # One run per op, every level in it (cassandra-stress's write, read, mixed).
  for op in insert select mixed; do
    "$KEEL" bench table --cql "$three" --replication-factor 3 --consistency ONE,QUORUM,ALL --op $op --clients 64 \
      --total "$TOTAL" | grep -v "req/s in all"
  done
  stop_dev
done
