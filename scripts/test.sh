#!/usr/bin/env bash
# Runs every test of Keel from a fresh clone, installing what the tests need:
# Debian's kcat (librdkafka 2.0.2), the Python clients, KafkaJS (npm), and the
# Rust toolchain's own checks. Safe to run again: installs are skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says when it starts and how long the run has taken so far, so a slow CI run shows where its time went.
START=$SECONDS
step() { printf '\n==> [%4ds] %s\n' "$((SECONDS - START))" "$*"; }

# make: the jemalloc allocator's C build (tikv-jemalloc-sys) runs configure and make.
if ! command -v make >/dev/null 2>&1; then
  step "installing make (apt), for jemalloc's build"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq make >/dev/null
fi

if ! command -v kcat >/dev/null 2>&1; then
  step "installing kcat (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kcat >/dev/null
fi

# etcdctl 3.4 (the etcd face's reference client), etcd 3.4 (the peer keel bench kv
# is compared with) and protoc (the Rust etcd-client crate compiles etcd's protos).
if ! command -v etcdctl >/dev/null 2>&1 || ! command -v etcd >/dev/null 2>&1 || ! command -v protoc >/dev/null 2>&1; then
  step "installing etcdctl, etcd and protoc (apt)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-client etcd-server protobuf-compiler >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  step "installing Node.js and npm (apt), for KafkaJS"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi

step "installing KafkaJS (npm ci, pinned by tests/interop/js/package-lock.json)"
(cd tests/interop/js && npm ci --no-audit --no-fund --loglevel=error)

step "installing the Python clients (pip)"
python3 -m pip install -q --disable-pip-version-check -r tests/interop/requirements.txt 2>&1 | grep -v "Running pip as the 'root' user" || true

step "cargo fmt --check"
cargo fmt --all --check

# No separate `cargo build --release`: the dev-dependencies turn on more
# features of shared crates (tokio's, for one), so a plain build and the test
# build would compile the dependency tree twice (about 5 minutes here). The
# test build makes target/release/keel too (crates/keel has integration
# tests), and the interop tests run that binary.
# Clippy lints as this build compiles: clippy-driver compiles the
# workspace's own crates (cargo clippy's own mechanism: it is the
# RUSTC_WORKSPACE_WRAPPER, and CLIPPY_ARGS carries `-D warnings`), so the
# same targets `cargo clippy --all-targets -- -D warnings` checks (libraries,
# binaries, tests; there are no benches or examples) fail the build on a
# lint. A separate `cargo clippy` compiled the whole tree a second time in
# check mode: 8.5-10 minutes of CI. (clippy-driver turns rustc's MIR
# optimizations off for the crates it compiles; LLVM's are unchanged, and the
# binary the interop tests run behaves the same: 45.8 MiB against 44.9.)
step "cargo test, linted by clippy as it builds (unit, property, integration; builds target/release/keel)"
RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" \
  cargo test --workspace --release --locked
test -x target/release/keel
# The release binary stays small enough to ship (line tables for Keel's own
# crates only, compressed: see Cargo.toml and .cargo/config.toml).
size=$(stat -c %s target/release/keel)
echo "target/release/keel: $((size / 1024 / 1024)) MiB"
test "$size" -lt $((50 * 1024 * 1024)) || { echo "the release binary passed 50 MiB" >&2; exit 1; }

step "keel-sim: the replication simulation on fresh seeds for a minute, on one core beside the fuzzing below"
# Seeds start from the clock, so every run covers new ones; the first line
# names them, and a violation prints its seed and the command that replays it.
# The simulator is one thread and runs for a fixed wall time, so it shares the
# machine with the fuzz build (a minute less of CI; fewer seeds, same checks).
test -x target/release/keel-sim
target/release/keel-sim --secs 60 --seeds 100000000 >target/keel-sim.log 2>&1 &
sim=$!

step "fuzzing: every decoder of network and disk bytes, 8 s a target (scripts/fuzz.sh), unoptimized"
# Coverage-guided, from the seed corpora; a crash fails the run and leaves
# its input in fuzz/artifacts/. cargo test above already replayed the seeds
# and every input fuzzing once found (crates/keel-fuzz/tests/corpus.rs).
# Built unoptimized here: 4.8 minutes instead of 10 on two cores (the fuzz
# targets are a build of their own, instrumented), for a tenth of the
# executions a second (kafka_request 1 600 against 19 700, hints_file 2 100
# against 5 500); a smoke run, where the long runs (docs/perf.md,
# "Fuzzing") are optimized. 8 s a target since 2026-12-08 (15 before):
# the whole suite must stay well under CI's 40 minutes.
CARGO_PROFILE_RELEASE_OPT_LEVEL=0 scripts/fuzz.sh 8

step "keel-sim's minute, as it ended"
sim_status=0
wait "$sim" || sim_status=$?
cat target/keel-sim.log
test "$sim_status" = 0 || { echo "keel-sim found a violation (status $sim_status): replay its seed as printed above" >&2; exit 1; }

step "interop tests: the real keel binary with kcat, confluent-kafka, kafka-python, KafkaJS, etcdctl, etcd3, etcd3gw, etcd 3.4 side by side, cqlsh and cassandra-driver"
# pytest-xdist, in two phases (tests/interop/conftest.py says which file
# is in which): first the files that mostly wait on timeouts and elections,
# three at a time; then the "heavy" ones, which load the machine and assert
# on timing under faults, two at a time (a third worker on two cores cost
# test_stall and test_cql_five their margins). Each worker hands out ports
# from its own range (conftest.py).
KEEL_BIN="$PWD/target/release/keel" python3 -m pytest -q -p no:cacheprovider -n 3 --dist loadfile \
  -m "not heavy" --durations=10 -W ignore::DeprecationWarning tests/interop
step "interop tests, the heavy ones: faults, failovers and quotas under load, two at a time"
KEEL_BIN="$PWD/target/release/keel" python3 -m pytest -q -p no:cacheprovider -n 2 --dist loadfile \
  -m heavy --durations=10 -W ignore::DeprecationWarning tests/interop
step "done"
