#!/usr/bin/env bash
# make bench-topk: recjob's top-K kernel vs FAISS IndexFlatIP on identical seeded data.
# Installs FAISS, numpy and pyarrow into a throwaway venv (.venv-bench) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv-bench/bin/python -c "import faiss, numpy, pyarrow" 2>/dev/null; then
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q faiss-cpu numpy pyarrow
fi
cargo build -q --bins --tests --examples  # the features of `make build`: no second build of the graph
exec .venv-bench/bin/python scripts/bench_topk.py "$@"
