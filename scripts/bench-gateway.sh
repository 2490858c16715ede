#!/usr/bin/env bash
# etcd's HTTP/JSON gateway: Keel's against Debian's etcd 3.4's, one node each,
# in one run, with the same load generator (wrk, one thread, keep-alive
# connections): linearizable range, serializable range and put, each for 10 s.
# Prints the lines docs/perf.md quotes. Needs: target/release/keel, etcd, wrk.
# Uses /tmp and ports 2379-2380.
set -uo pipefail
cd "$(dirname "$0")/.."
K=$PWD/target/release/keel
W=$(mktemp -d /tmp/keel-gw.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
URL=http://127.0.0.1:2379

wait_up() { for _ in $(seq 100); do curl -sf -XPOST $URL/v3/kv/put -d '{"key":"a2V5","value":"dg=="}' >/dev/null && return; sleep 0.1; done; echo "no server"; exit 1; }

lua() { # $1 = body
  printf 'wrk.method = "POST"\nwrk.body = [[%s]]\nwrk.headers["Content-Type"] = "application/json"\n' "$1" >"$W/req.lua"
}

for target in keel etcd; do
  if [ $target = keel ]; then
    "$K" dev --data-dir "$W/keel" --kafka-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >"$W/keel.log" 2>&1 &
  else
    etcd --data-dir "$W/etcd" --listen-client-urls $URL --advertise-client-urls $URL \
      --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
      --initial-cluster default=http://127.0.0.1:2380 >"$W/etcd.log" 2>&1 &
  fi
  pid=$!
  wait_up
  for spec in "range:/v3/kv/range:{\"key\":\"a2V5\"}" \
              "range-serializable:/v3/kv/range:{\"key\":\"a2V5\",\"serializable\":true}" \
              "put:/v3/kv/put:{\"key\":\"a2V5\",\"value\":\"$(head -c 256 /dev/zero | base64 -w0)\"}"; do
    IFS=: read -r name path body <<<"$spec"
    lua "$body"
    for c in 1 32; do
      out=$(wrk -t1 -c$c -d10s --latency -s "$W/req.lua" "$URL$path")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
      p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
      errs=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr -s ' ' | tr '\n' ' ')
      printf '%-5s %-19s %2d conns: %9s req/s  p50 %-8s p99 %-8s %s\n' $target $name $c "$rps" "$p50" "$p99" "$errs"
    done
  done
  kill $pid; wait $pid 2>/dev/null
done
