#!/usr/bin/env bash
# make bench-embed: `recjob embed` vs sentence-transformers on CPU on identical texts.
# Installs sentence-transformers (and torch) into a throwaway venv (.venv-bench) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv-bench/bin/python -c "import sentence_transformers, pyarrow, numpy" 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q sentence-transformers==6.2.0 pyarrow numpy
fi
cargo build -q --bins --tests  # the profile and features of `make build`: no second build of the graph
exec .venv-bench/bin/python scripts/bench_embed.py "$@"
