#!/usr/bin/env bash
# The disk's fsync limit, for the benchmark scripts: ROUNDS runs of fio
# writing 4 KiB blocks with an fdatasync after each, in DIR (the directory the
# benchmark's data lives in). Usage: scripts/fio-fsync.sh DIR ROUNDS
set -euo pipefail
dir=$1
for _ in $(seq "$2"); do
  fio --name=sync --directory="$dir" --rw=write --bs=4k --size=16m --ioengine=psync --fdatasync=1 --output-format=terse \
    | awk -F';' '{printf "fio write bs=4k --fdatasync=1: %d fdatasyncs/s\n", $49}'
  rm -f "$dir"/sync*
done
