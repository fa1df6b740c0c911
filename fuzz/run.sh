#!/usr/bin/env bash
# Run every fuzz target for a while with cargo-afl (stable toolchain).
#
#   fuzz/run.sh [seconds per target] [target...]
#
# Needs `cargo install cargo-afl` once (cargo-afl 0.18 builds AFL++'s LLVM
# runtime for the installed rustc then; `cargo afl config --build --force`
# rebuilds it after a toolchain update). Findings go to fuzz/out/<target>/;
# a crash replays as
#   fuzz/target/release/<target> < fuzz/out/<target>/default/crashes/<file>
# and becomes a regression test in the crate it belongs to.
# `FUZZ_FEATURES=--no-default-features fuzz/run.sh 60 pgwire_guard` builds
# only the DataFusion-free targets (pgwire, pgwire_guard): what CI runs.
# `pgwire` fuzzes pgwire's codec alone and still finds its panics (they are
# caught in front of it by the server's frame guard; see
# server/tests/fuzz_regressions.rs), so its crashes do not fail the run
# unless FUZZ_STRICT_PGWIRE=1.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sql pgwire pgwire_guard csv json wal manifest chunk)
fi
# Instrumented build, its own target dir (fuzz/target): the workspace's
# build is never touched.
# shellcheck disable=SC2086
nice -n 19 cargo afl build --release ${FUZZ_FEATURES:-} --bins
# CI machines have no core-dump handler to configure, and the CPU governor
# is not ours to change.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_QUIET=1
status=0
for target in "${targets[@]}"; do
  out="out/$target"
  mkdir -p "$out"
  # Resume from earlier findings when there are some ("-i -").
  input="seeds/$target"
  [ -d "$out/default/queue" ] && input="-"
  nice -n 19 cargo afl fuzz -V "$seconds" -i "$input" -o "$out" \
    "target/release/$target" >"$out/log.txt" 2>&1 || true
  stats="$out/default/fuzzer_stats"
  execs=$(awk -F: '/^execs_done/ {gsub(/ /, "", $2); print $2}' "$stats" 2>/dev/null || echo 0)
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  hangs=$(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  echo "fuzz $target: ${execs:-0} executions, $crashes crashes, $hangs hangs"
  if [ "$crashes" -gt 0 ] && { [ "$target" != pgwire ] || [ "${FUZZ_STRICT_PGWIRE:-0}" = 1 ]; }; then
    status=1
  fi
done
exit $status
