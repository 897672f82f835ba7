#!/usr/bin/env bash
# make bench-cluster: one process vs a Ballista cluster of 1 and 2 executors on identical
# synthetic data (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/bench_cluster.py "$@"
