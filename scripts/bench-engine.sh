#!/usr/bin/env bash
# Keel's own LSM engine (keel-table) against fjall, for docs/perf.md and the
# engine choice in ARCHITECTURE.md, in one run with the disk's limit:
#   1. fio: 4 KiB writes each followed by fdatasync (the disk's fsyncs/s).
#   2. bench/engine-compare (its own cargo workspace, so fjall is never part
#      of Keel's build): single-cell writes acknowledged after fdatasync from
#      1 and 64 writer threads, a flush, then point reads from 2 threads; for
#      Keel's engine, fjall behind the same group commit, and fjall with its
#      own per-commit SyncData.
# Each step runs ROUNDS times (default 2). Needs fio (apt-get install fio).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
WRITES=${WRITES:-200000}
READS=${READS:-200000}
cargo build --release --quiet --manifest-path bench/engine-compare/Cargo.toml
bin=$PWD/bench/engine-compare/target/release/engine-compare
work=$(mktemp -d "${TMPDIR:-/tmp}/keel-bench-engine.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ), $(nproc) cores"
scripts/fio-fsync.sh "$work" "$ROUNDS"
for r in $(seq "$ROUNDS"); do
  echo "--- round $r"
  (cd "$work" && "$bin" "$WRITES" "$READS")
done
