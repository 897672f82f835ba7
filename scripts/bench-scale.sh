#!/usr/bin/env bash
# The whole nightly at 100k and 1M users x 100k items, cold and warm (scripts/bench_scale.py).
# Builds a throwaway venv (.venv-synth, gitignored) with numpy and pyarrow for the generator on
# first use. All arguments go to bench_scale.py, e.g.
#
#   scripts/bench-scale.sh --users 100000 1000000 --items 100000 --recjob target/debug/recjob
#
# Runs at nice 10 so the machine stays usable.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_SCALE_VENV:-.venv-synth}
if ! "$VENV/bin/python" -c "import numpy, pyarrow" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy pyarrow
fi
exec nice -n 10 "$VENV/bin/python" scripts/bench_scale.py "$@"
