#!/usr/bin/env bash
# Spark MLlib implicit ALS vs recjob on the same synthetic window (scripts/bench_spark.py).
# Builds a throwaway venv (.venv-spark, gitignored) with a pinned PySpark from PyPI plus numpy and
# pyarrow on first use; needs Java 17+ on the PATH (Spark 4). All arguments go to bench_spark.py:
#
#   scripts/bench-spark.sh --data out/synth [--recjob target/release/recjob --config jobs/synthetic.toml] [--repeats 3]
#
# With `--users N --items M` first, the inputs are generated (once) into out/synth-N-M by
# scripts/synth.py: a 60-day window plus the evaluation day, 30 events per user in the window.
#
# Runs at nice 10 so the machine stays usable.
set -euo pipefail
cd "$(dirname "$0")/.."
PYSPARK_VERSION=4.3.0
VENV=${BENCH_SPARK_VENV:-.venv-spark}
if ! "$VENV/bin/python" -c "import pyspark, numpy, pyarrow, sys; sys.exit(pyspark.__version__ != '$PYSPARK_VERSION')" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "pyspark==$PYSPARK_VERSION" numpy pyarrow
fi
command -v java >/dev/null || { echo "bench-spark: Java 17+ is required (java not on PATH)" >&2; exit 1; }
# Spark's ALS solves through netlib BLAS/LAPACK (libblas.so.3, liblapack.so.3) when present, else
# its pure-Java fallback; recjob loads OpenBLAS the same way. CI installs libopenblas0-pthread.
if ! ldconfig -p | grep -q 'libblas.so.3'; then
  echo "bench-spark: note: no native BLAS (libblas.so.3): Spark ALS uses its Java BLAS and recjob the gemm crate;" \
       "apt-get install libopenblas0-pthread for the figures CI's machine would give" >&2
fi
if [ "${1:-}" = --users ] && [ "${3:-}" = --items ]; then
  DATA=out/synth-$2-$4
  if [ ! -f "$DATA/_synth.json" ]; then
    "$VENV/bin/python" scripts/synth.py --out "$DATA" --users "$2" --items "$4" --days 61 \
      --events-per-user-window 30
  fi
  shift 4
  set -- --data "$DATA" "$@"
fi
exec nice -n 10 "$VENV/bin/python" scripts/bench_spark.py "$@"
