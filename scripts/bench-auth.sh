#!/usr/bin/env bash
# Puts with auth off and on, and over plaintext and TLS: Keel against
# Debian's etcd 3.4, one node each, in one run, with the same load generator
# (`keel bench kv`, gRPC, 64 clients on 8 connections, 256 B values).
#   plain: no auth, plaintext
#   auth:  auth enabled, as a user whose role may write the keys' prefix
#          (not root, so every put's permission is checked)
#   tls:   no auth, TLS on the client port (mutual, as `keel dev --tls`)
# Each case runs ROUNDS times, alternating Keel and etcd; prints every run
# and the medians that docs/perf.md quotes. Needs target/release/keel, etcd,
# etcdctl, openssl. Uses /tmp and ports 2379-2380.
set -uo pipefail
cd "$(dirname "$0")/.."
K=$PWD/target/release/keel
ROUNDS=${ROUNDS:-3}
TOTAL=${TOTAL:-40000}
W=$(mktemp -d /tmp/keel-auth.XXXX)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
EP=127.0.0.1:2379

# A throwaway CA and one certificate for 127.0.0.1, server and client.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -keyout "$W/ca.key" -out "$W/ca.pem" -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$W/node.key" -out "$W/node.csr" -subj /CN=root 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$W/ext"
openssl x509 -req -in "$W/node.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
  -days 1 -extfile "$W/ext" -out "$W/node.pem" 2>/dev/null
TLS_SERVER=(--cert-file "$W/node.pem" --key-file "$W/node.key" --trusted-ca-file "$W/ca.pem" --client-cert-auth)
TLS_CLIENT=(--cacert "$W/ca.pem" --cert "$W/node.pem" --key "$W/node.key")

start() { # $1 = keel|etcd, $2 = plain|tls
  rm -rf "$W/data"
  local scheme=http extra=()
  if [ "$2" = tls ]; then scheme=https; extra=("${TLS_SERVER[@]}"); fi
  if [ "$1" = keel ]; then
    "$K" start --data-dir "$W/data" --etcd-addr $EP --peer-addr 127.0.0.1:2380 \
      --kafka-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 "${extra[@]}" >"$W/server.log" 2>&1 &
  else
    etcd --data-dir "$W/data" --listen-client-urls $scheme://$EP --advertise-client-urls $scheme://$EP \
      --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
      --initial-cluster default=http://127.0.0.1:2380 "${extra[@]}" >"$W/server.log" 2>&1 &
  fi
  local flags=()
  [ "$2" = tls ] && flags=("${TLS_CLIENT[@]}")
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints $scheme://$EP "${flags[@]}" put warm up >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "no server: $(tail -3 "$W/server.log")"; exit 1
}

stop() { kill "$(jobs -p)" 2>/dev/null; wait 2>/dev/null; }

lock_down() { # a bench user who may write the prefix 0 (the bench's keys)
  local e=(etcdctl --endpoints $EP)
  for cmd in "user add root:rootpw" "role add root" "user grant-role root root" "role add bench" \
             "role grant-permission bench --prefix=true readwrite 0" "user add bench:benchpw" \
             "user grant-role bench bench" "auth enable"; do
    ETCDCTL_API=3 "${e[@]}" $cmd >/dev/null || { echo "etcdctl $cmd failed"; exit 1; }
  done
}

bench() { # prints req/s
  "$K" bench kv --endpoints $EP --op put --total "$TOTAL" --clients 64 --conns 8 "$@" 2>&1 |
    awk '/req\/s/ {print $1}'
}

declare -A runs
for round in $(seq "$ROUNDS"); do
  for target in keel etcd; do
    line="round $round $target:"
    for mode in plain auth tls; do
      # A fresh server per case, so no case inherits another's keys.
      if [ $mode = tls ]; then start $target tls; else start $target plain; fi
      case $mode in
        plain) r=$(bench) ;;
        auth) lock_down; r=$(bench --user bench:benchpw) ;;
        tls) r=$(bench "${TLS_CLIENT[@]}") ;;
      esac
      stop
      runs[$target-$mode]+="$r "
      line+=" $mode $r"
    done
    echo "$line"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A med
for key in "${!runs[@]}"; do med[$key]=$(echo "${runs[$key]}" | median); done
printf '%-6s %10s %10s %10s %12s %12s\n' "" plain auth tls auth/plain tls/plain
for target in keel etcd; do
  printf '%-6s %10s %10s %10s %12.2f %12.2f\n' $target "${med[$target-plain]}" "${med[$target-auth]}" \
    "${med[$target-tls]}" "$(echo "${med[$target-auth]} / ${med[$target-plain]}" | bc -l)" \
    "$(echo "${med[$target-tls]} / ${med[$target-plain]}" | bc -l)"
done
printf 'keel/etcd with auth: %.2f   with TLS: %.2f\n' \
  "$(echo "${med[keel-auth]} / ${med[etcd-auth]}" | bc -l)" "$(echo "${med[keel-tls]} / ${med[etcd-tls]}" | bc -l)"
