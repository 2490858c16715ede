#!/usr/bin/env bash
# Keel's etcd face against Debian's etcd 3.4 on this machine, in one run, with
# the same client (keel bench kv) and etcd's own `etcdctl check perf`; then the
# same for three-node clusters. Prints the numbers docs/perf.md quotes.
# Needs: target/release/keel, etcd, etcdctl, fio, bc, taskset. Uses /tmp and ports 2379-2380, 12379-32380.
set -uo pipefail
cd "$(dirname "$0")/.."
K=$PWD/target/release/keel
export ETCDCTL_API=3
W=$(mktemp -d /tmp/keel-bench.XXXX)
KEEP=
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "$KEEP" ] || rm -rf "$W"' EXIT

echo "== disk: fio 4 KiB writes, fdatasync after each (the fsync limit)"
fio --name=fsync --directory="$W" --size=64m --bs=4k --rw=write --ioengine=sync --fdatasync=1 \
    --runtime=10 --time_based --output-format=json >"$W/fio.json" 2>/dev/null
python3 - "$W/fio.json" <<'PY'
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print("  %.0f fsynced 4 KiB writes/s, mean %.0f us each" % (w["iops"], w["clat_ns"]["mean"] / 1e3))
PY

wait_up() { for _ in $(seq 100); do etcdctl --endpoints="$1" put warm x >/dev/null 2>&1 && return; sleep 0.1; done; echo "no server on $1"; exit 1; }

# A server that died under load says how: its exit status or signal, the
# end of its log, the kernel's OOM lines, and its data dir kept. (A single
# node once vanished here under 64 clients' serializable ranges, and its log
# went with the temp dir: issue 34, item 6.)
check_alive() { # $1 = pid, $2 = its log
  if kill -0 "$1" 2>/dev/null; then
    # keel dev --nodes 3 lives on when one of its nodes dies, and says so.
    grep -q "^keel dev: node [0-9]* exited" "$2" || return 0
    echo "!! a node of the cluster is gone:"
  else
    wait "$1"; local rc=$?
    echo "!! the server (pid $1) is gone: exit status $rc$( [ $rc -gt 128 ] && echo ", signal $((rc - 128))")"
  fi
  tail -n 40 "$2"
  dmesg 2>/dev/null | grep -iE "out of memory|oom|killed process" | tail -5
  KEEP=1
  echo "!! its data and log are kept in $W"
  exit 1
}

run_loads() { # $1 = name, $2 = endpoints, $3 = server pid, $4 = its log
  local name=$1 eps=$2 spid=$3 slog=$4
  for spec in "put 64 8" "put 1 1" "txn 64 8" "range 64 8" "range-serializable 64 8"; do
    set -- $spec
    total=$(( $2 == 1 ? 3000 : 40000 ))
    echo "== $name: keel bench kv --op $1 --clients $2 --conns $3 --total $total"
    "$K" bench kv --endpoints "$eps" --op "$1" --clients "$2" --conns "$3" --total $total | tail -1
    check_alive "$spid" "$slog"
  done
}

start_one() { # $1 = keel|etcd, $2 = data dir, $3 = cpu list for taskset ("" = all)
  local pin=(); [ -n "$3" ] && pin=(taskset -c "$3")
  if [ "$1" = keel ]; then
    "${pin[@]}" "$K" dev --data-dir "$2" --kafka-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$2.log" 2>&1 &
  else
    "${pin[@]}" etcd --data-dir "$2" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
      --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
      --initial-cluster default=http://127.0.0.1:2380 >"$2.log" 2>&1 &
  fi
  pid=$!
  wait_up 127.0.0.1:2379
}

cpu_s() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }

for target in keel etcd; do
  start_one $target "$W/$target-1" ""
  run_loads "$target, 1 node" 127.0.0.1:2379 $pid "$W/$target-1.log"
  for load in s l; do
    echo "== $target, 1 node: etcdctl check perf --load $load"
    before=$(cpu_s $pid)
    etcdctl --endpoints=127.0.0.1:2379 check perf --load $load 2>&1 | tr '\r' '\n' | grep -E "PASS|FAIL|Slowest|Stddev|rror"
    echo "  server CPU during the check: $(echo "$(cpu_s $pid) - $before" | bc) s"
  done
  kill $pid; wait $pid 2>/dev/null
  # The same check with a core each, as with the load generator on another machine.
  start_one $target "$W/$target-1p" 0
  echo "== $target, 1 node on CPU 0, etcdctl on CPU 1: etcdctl check perf --load l"
  before=$(cpu_s $pid)
  taskset -c 1 etcdctl --endpoints=127.0.0.1:2379 check perf --load l 2>&1 | tr '\r' '\n' | grep -E "PASS|FAIL|Slowest|Stddev|rror"
  echo "  server CPU during the check: $(echo "$(cpu_s $pid) - $before" | bc) s"
  kill $pid; wait $pid 2>/dev/null
done

EPS=127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379
for target in keel etcd; do
  pids=()
  if [ $target = keel ]; then
    "$K" dev --nodes 3 --data-dir "$W/k3" >"$W/k3.log" 2>&1 &
    pids+=($!)
  else
    IC=e1=http://127.0.0.1:2380,e2=http://127.0.0.1:12380,e3=http://127.0.0.1:22380
    for i in 1 2 3; do
      c=$(( (i-1)*10000 + 2379 )); p=$(( c + 1 ))
      etcd --name e$i --data-dir "$W/e3-$i" --listen-client-urls http://127.0.0.1:$c --advertise-client-urls http://127.0.0.1:$c \
        --listen-peer-urls http://127.0.0.1:$p --initial-advertise-peer-urls http://127.0.0.1:$p \
        --initial-cluster $IC >"$W/e3-$i.log" 2>&1 &
      pids+=($!)
    done
  fi
  wait_up $EPS
  # keel dev reports a node that died, with its exit status, in its own log.
  run_loads "$target, 3 nodes" $EPS ${pids[0]} "$( [ $target = keel ] && echo "$W/k3.log" || echo "$W/e3-1.log")"
  echo "== $target, 3 nodes: etcdctl check perf --load s"
  etcdctl --endpoints=$EPS check perf --load s 2>&1 | tr '\r' '\n' | grep -E "PASS|FAIL|Slowest|Stddev|rror"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
done
