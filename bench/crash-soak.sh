#!/usr/bin/env bash
# The crash test, longer and repeated: each round runs server/tests/crash.rs
# with a fresh seed and ROWS rows (SIGKILL at random moments and at every
# failpoint; views and sink files compared with an uncrashed run). A failing
# round prints its seed; `WEIR_CRASH_SEED=<seed>` replays it.
#
# Usage: bench/crash-soak.sh [ROUNDS] [ROWS]   (defaults 10, 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-10}
ROWS=${2:-200000}
for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS ($ROWS rows)"
  WEIR_CRASH_ROWS=$ROWS cargo test -q -p weir-server --test crash -- --nocapture 2>&1 |
    grep -E "crash test: seed|crashes|panicked|differs|twice" || { echo "round $round failed"; exit 1; }
done
