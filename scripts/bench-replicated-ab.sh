#!/bin/bash
# Same-run A/B of the replicated produce benchmark (docs/perf.md): for each
# round, a fresh `keel dev --nodes 3` of binary A, then of binary B, each
# running `keel bench produce` with replication factor 3 and acks=all.
# Uses the default ports (9092-9094, 2379, 9644-9646): run it with nothing
# else on them.   scripts/bench-replicated-ab.sh BEFORE AFTER [ROUNDS]
set -euo pipefail
a=$(realpath "$1"); b=$(realpath "$2"); rounds=${3:-3}
work=$(mktemp -d)
trap 'pkill -f -- "--data-dir ./keel-data/node" 2>/dev/null || true; rm -rf "$work"' EXIT
run() {
  local bin=$1 dir=$work/$2
  mkdir -p "$dir" && cd "$dir"
  "$bin" dev --nodes 3 > dev.log 2>&1 &
  local dev=$!
  for _ in $(seq 150); do
    [ "$(grep -c 'is up (node' dev.log || true)" -ge 3 ] && break
    sleep 0.2
  done
  "$bin" bench produce --brokers 127.0.0.1:9092 --topic T --partitions 4 --replicas 1,2,3 \
    --records 600000 --record-size 1024 --acks all --concurrency 4 2>&1 |
    grep -E '^(records/s|MiB/s|latency p50|latency p99 )'
  kill -INT "$dev"; wait "$dev" 2>/dev/null || true
  pkill -f -- "--data-dir ./keel-data/node" 2>/dev/null || true
}
for r in $(seq "$rounds"); do
  echo "== round $r: $a"; run "$a" "a$r"
  echo "== round $r: $b"; run "$b" "b$r"
done
