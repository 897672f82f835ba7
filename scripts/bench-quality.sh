#!/usr/bin/env bash
# make bench-quality (peer side): popularity, buy-again, implicit ALS, EASE, RP3beta and item-kNN
# under recjob's own evaluation, hyperparameters chosen on validation dates, reported on test dates
# (scripts/bench_quality.py; BENCHMARKS.md "Recommendation quality").
# Installs pinned numpy, scipy, pyarrow and implicit into a throwaway venv on first use
# (BENCH_QUALITY_VENV, default .venv-quality, gitignored). Arguments go to the script, e.g.
#   scripts/bench-quality.sh --self-test
#   scripts/bench-quality.sh --output /tmp/bench-quality.json [--recjob target/debug/recjob]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_QUALITY_VENV:-.venv-quality}
PINS=(numpy==2.4.6 scipy==1.17.1 pyarrow==26.0.1 implicit==0.7.3 threadpoolctl==3.8.0)
if ! "$VENV/bin/python" -c "import implicit, numpy, scipy, pyarrow" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "${PINS[@]}"
fi
# One thread everywhere (BLAS, OpenMP in implicit): the figures are reproducible bit for bit.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec nice -n "${BENCH_QUALITY_NICE:-10}" "$VENV/bin/python" scripts/bench_quality.py "$@"
