#!/usr/bin/env bash
# Measures Keel against this machine's limits in one run, for docs/perf.md:
#   1. fio: sequential 1 MiB writes, each followed by fdatasync (the disk's
#      fsync'd sequential write bandwidth), and with one fsync at the end.
#   2. keel bench produce, 1 KiB records, acks=all and acks=1, on a fresh node.
#   3. keel bench consume of what was produced.
# Each step runs ROUNDS times (default 3). Needs fio (apt-get install fio).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
RECORDS=${RECORDS:-1000000}
KEEL=${KEEL:-target/release/keel}
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-perf.XXXXXX")
node=""
cleanup() { [ -n "$node" ] && kill "$node" 2>/dev/null && wait "$node" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cargo build --release --locked -q
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
for r in $(seq "$ROUNDS"); do
  for mode in "--fdatasync=1" "--end_fsync=1"; do
    fio --name=seq --directory="$work" --rw=write --bs=1m --size=1g --ioengine=psync $mode --output-format=terse \
      | awk -F';' -v m="$mode" '{printf "fio write bs=1m %s: %.1f MiB/s\n", m, $48/1024}'
    rm -f "$work"/seq*
  done
done
"$KEEL" dev --data-dir "$work/data" --kafka-addr "127.0.0.1:$port" >/dev/null 2>"$work/keel.log" &
node=$!
python3 - "$port" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close(); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.05)
PY
for r in $(seq "$ROUNDS"); do
  for acks in all 1; do
    echo "--- round $r: $KEEL bench produce --records $RECORDS --record-size 1024 --acks $acks --partitions 4 --concurrency 4"
    "$KEEL" bench produce --brokers "127.0.0.1:$port" --topic "perf-$acks-$r" --records "$RECORDS" --record-size 1024 --acks "$acks" --partitions 4 --concurrency 4 2>/dev/null
  done
  echo "--- round $r: $KEEL bench consume --topic perf-all-$r"
  "$KEEL" bench consume --brokers "127.0.0.1:$port" --topic "perf-all-$r" --partitions 4 --concurrency 4 2>/dev/null
done
