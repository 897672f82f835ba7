"""Airflow DAGs for recjob: `recjob_nightly` (daily 03:00 UTC) and `recjob_backfill` (manual).

Settings come from the worker's environment (no Airflow Variables, no database at parse time):
  RECJOB_BIN              recjob binary (default `recjob`, i.e. on PATH)
  RECJOB_CONFIG           nightly config, relative to RECJOB_HOME (default jobs/nightly.toml)
  RECJOB_BACKFILL_CONFIG  backfill config (default jobs/backfill.toml)
  RECJOB_HOME             working directory: the repo checkout (default: two levels above this
                          file; set it when this file is copied into a separate dags folder)

recjob's exit codes (ARCHITECTURE.md "Exit codes") and what the nightly task does with them:
  0 published -> success; 99 already published -> skipped (skip_on_exit_code);
  1 bad input/config -> failed at once, no retry (retry_policy below, Airflow >= 3.3;
    on older Airflow it is retried uselessly, 3 times);
  2 infrastructure, 3 input not ready (the partition may land later) -> retried, 3 x 10 min.
"""

from __future__ import annotations

import os
import re
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

try:
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2 without the standard provider
    from airflow.operators.bash import BashOperator
try:
    from airflow.sdk import DAG, CronDataIntervalTimetable, Param
except ImportError:  # Airflow 2 / early 3.x
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.timetables.interval import CronDataIntervalTimetable
try:
    from airflow.sdk import RetryDecision, RetryPolicy
except ImportError:  # retry policies arrived in Airflow 3.3
    RetryPolicy = None

RECJOB_BIN = os.environ.get("RECJOB_BIN", "recjob")
RECJOB_CONFIG = os.environ.get("RECJOB_CONFIG", "jobs/nightly.toml")
RECJOB_BACKFILL_CONFIG = os.environ.get("RECJOB_BACKFILL_CONFIG", "jobs/backfill.toml")
RECJOB_HOME = os.environ.get("RECJOB_HOME", str(Path(__file__).resolve().parents[2]))
# Early on purpose (UCI Online Retail starts 2010-12-01): a run whose logical date is before the
# start_date runs no task at all, silently. catchup=False keeps the scheduler from filling the gap.
START_DATE = datetime(2010, 12, 1, tzinfo=timezone.utc)

# Exit codes a retry cannot fix. BashOperator raises the same AirflowException for every
# non-zero code, naming the code only in its message ("... non-zero exit code 1."), so the
# policy reads it from there; a message it does not recognise falls back to normal retries.
NO_RETRY_EXIT_CODES = {1}

if RetryPolicy is not None:

    class ExitCodeRetryPolicy(RetryPolicy):
        """Fail at once (no retries) when the bash command exited with a code in NO_RETRY_EXIT_CODES."""

        def evaluate(self, exception, try_number, max_tries, context=None):
            m = re.search(r"non-zero exit code (\d+)", str(exception))
            if m and int(m.group(1)) in NO_RETRY_EXIT_CODES:
                return RetryDecision.fail(f"recjob exit code {m.group(1)}: bad input or config")
            return RetryDecision.default()

    RETRY_POLICY = {"retry_policy": ExitCodeRetryPolicy()}
else:
    RETRY_POLICY = {}

with DAG(
    dag_id="recjob_nightly",
    # Data-interval semantics on purpose: the run that starts at 03:00 UTC on day D+1 has
    # {{ ds }} = D, the day that just ended. A plain cron string would, with Airflow 3's default
    # (scheduler.create_cron_data_intervals = False), give ds = D+1, whose partition never exists.
    schedule=CronDataIntervalTimetable("0 3 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["recjob"],
):
    BashOperator(
        task_id="recjob_run",
        bash_command=f"{shlex.quote(RECJOB_BIN)} run --config {shlex.quote(RECJOB_CONFIG)}"
        " --date {{ ds }} --log-format json",
        cwd=RECJOB_HOME,
        skip_on_exit_code=99,
        retries=3,
        retry_delay=timedelta(minutes=10),
        **RETRY_POLICY,
    )

with DAG(
    dag_id="recjob_backfill",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    # format="date" is validated when a run is triggered; it also keeps shell syntax out of the
    # bash_command, which Airflow does not escape.
    params={
        "from_date": Param("2011-11-01", type="string", format="date"),
        "to_date": Param("2011-11-30", type="string", format="date"),
    },
    tags=["recjob"],
):
    BashOperator(
        task_id="recjob_backfill",
        bash_command=f"{shlex.quote(RECJOB_BIN)} backfill --config {shlex.quote(RECJOB_BACKFILL_CONFIG)}"
        " --from {{ params.from_date }} --to {{ params.to_date }} --log-format json",
        cwd=RECJOB_HOME,
        # Exit 3 from a backfill: the only problems were dates without a behavior partition
        # (days without data); the rest is published. Shown as skipped, not failed; see the log.
        skip_on_exit_code=3,
        retries=0,
    )
