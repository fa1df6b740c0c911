#!/usr/bin/env bash
# The benchmark, in one command: Weir (streaming, with checkpoints off and on,
# and batch) against Flink (streaming and batch) and DuckDB on the same data,
# with a result check, a table, a markdown file and a chart in bench/results/.
#
# Usage: bash bench/run.sh [--rows N] [--engines weir,weir-ckpt,weir-batch,flink,flink-batch,duckdb]
#                          [--queries tumble,hop,session,join] [--no-check] [--weir-bin PATH] ...
# (`bash bench/run.sh --help` lists them all; 20M rows by default.)
#
# Builds the release binaries (nice'd) if they are missing or stale, makes
# bench/.venv from bench/requirements.txt, and, on first use of a Flink
# engine, bench/.venv-flink from bench/requirements-flink.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
nice -n 10 cargo build --profile "${PROFILE:-dist}" --bin weir --bin weir-bench >&2
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import duckdb, psycopg, psutil, matplotlib' 2>/dev/null; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/requirements.txt
fi
exec nice -n 10 bench/.venv/bin/python bench/harness/bench.py "$@"
