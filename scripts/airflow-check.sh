#!/usr/bin/env bash
# Checks the Airflow DAGs in jobs/airflow with Airflow's own DagBag (tests/airflow/check_dag.py):
# they import, render the documented recjob command, and map recjob's exit codes as intended.
# Needs no database and no recjob build. Idempotent: the venv .venv-airflow (repo root) is created
# and apache-airflow installed into it only when missing (about 2 minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-airflow
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import airflow' 2>/dev/null; then
  echo "installing apache-airflow into $VENV (about 2 minutes)..."
  "$VENV/bin/python" -m pip install --quiet apache-airflow
fi

AIRFLOW_HOME="$(mktemp -d)"
trap 'rm -rf "$AIRFLOW_HOME"' EXIT
export AIRFLOW_HOME
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-ERROR}"  # INFO to see the runs
echo "airflow $("$VENV/bin/python" -c 'import airflow; print(airflow.__version__)')"
"$VENV/bin/python" tests/airflow/check_dag.py
