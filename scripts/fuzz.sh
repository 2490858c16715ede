#!/usr/bin/env bash
# Coverage-guided fuzzing of Keel's decoders (fuzz/, crates/keel-fuzz):
#   scripts/fuzz.sh [SECONDS_EACH] [TARGET...]
# runs each target (all of them by default) for SECONDS_EACH seconds (60) with
# libFuzzer, starting from its seed corpus in fuzz/corpus/TARGET; what it
# learns goes to fuzz/target/corpus/TARGET (not committed). A crash stops the
# run with the input in fuzz/artifacts/TARGET/: fix the bug, then keep the
# input as a regression test in fuzz/regressions/TARGET/ (cargo test replays it).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes rustc flags that only nightly accepts; this machine's one
# toolchain is stable, which accepts them under RUSTC_BOOTSTRAP (as Rust's own
# build of std does). No sanitizer: Keel's decoders are safe Rust, so what a
# fuzzer finds is a panic (an overflow included: debug assertions stay on), an
# allocation without bound or a hang, which libFuzzer sees without one, at
# several times the speed ASan would leave.
export RUSTC_BOOTSTRAP=1
# `--cfg fuzzing` turns on fuzz-only modules in vendored crates (vendor/h2),
# whose own lints deny them as undocumented: path dependencies do not get
# cargo's usual cap on dependencies' lints, so cap them here.
export RUSTFLAGS="${RUSTFLAGS:-} --cap-lints=warn"
FUZZ=(--sanitizer none --release --debug-assertions)

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
cargo fuzz build "${FUZZ[@]}"
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t"
  echo "==> fuzzing $t for ${secs}s"
  cargo fuzz run "${FUZZ[@]}" "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    2>&1 | grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb|==|SUMMARY|thread '|.*panicked at)|Done [0-9]+ runs" || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "fuzz target $t failed: its input is in fuzz/artifacts/$t/ (replay: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run ${FUZZ[*]} $t fuzz/artifacts/$t/FILE)" >&2
    exit 1
  fi
done
