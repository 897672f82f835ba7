"""Check the recjob Airflow DAGs (jobs/airflow) with Airflow's own DagBag; no database needed.

Run through scripts/airflow-check.sh (venv with apache-airflow, AIRFLOW_HOME in a temp dir).
Checks the defaults, so RECJOB_* environment variables are cleared first. The last checks run the
real BashOperator against a fake `recjob` on PATH to see what each exit code becomes.
Prints `airflow-dag: N passed, M failed`; exits 1 on any failure.
"""

from __future__ import annotations

import inspect
import os
import stat
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAG_FOLDER = REPO / "jobs" / "airflow"
DS = "2011-11-30"

for k in ("RECJOB_BIN", "RECJOB_CONFIG", "RECJOB_BACKFILL_CONFIG", "RECJOB_HOME"):
    os.environ.pop(k, None)

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models import DagBag

passed = 0
failed = 0


def check(name, fn):
    """Run one check; a falsy result or an exception fails it."""
    global passed, failed
    try:
        ok = fn()
        if ok is False:
            raise AssertionError("check returned False")
    except Exception as e:  # noqa: BLE001
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
        if os.environ.get("CHECK_VERBOSE"):
            traceback.print_exc()
        return
    passed += 1
    print(f"ok   {name}" + (f": {ok}" if isinstance(ok, str) else ""))


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)
    return True


# Airflow 3.3's DagBag has no include_examples (examples follow AIRFLOW__CORE__LOAD_EXAMPLES).
kwargs = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
dagbag = DagBag(dag_folder=str(DAG_FOLDER), **kwargs)
check("no import errors", lambda: expect(not dagbag.import_errors, f"import_errors: {dagbag.import_errors}"))
check("dag recjob_nightly exists", lambda: expect("recjob_nightly" in dagbag.dags, f"dags: {sorted(dagbag.dags)}"))
check("dag recjob_backfill exists", lambda: expect("recjob_backfill" in dagbag.dags, f"dags: {sorted(dagbag.dags)}"))
if failed:
    print(f"airflow-dag: {passed} passed, {failed} failed")
    sys.exit(1)

nightly = dagbag.dags["recjob_nightly"]
backfill = dagbag.dags["recjob_backfill"]


def nightly_dag_settings():
    expect(nightly.catchup is False, f"catchup={nightly.catchup}")
    expect(nightly.max_active_runs == 1, f"max_active_runs={nightly.max_active_runs}")
    tt = nightly.timetable
    expect(type(tt).__name__ == "CronDataIntervalTimetable", f"timetable {type(tt).__name__}")
    expr = getattr(tt, "expression", None) or getattr(tt, "_expression", None)
    expect(expr == "0 3 * * *", f"cron {expr!r}")
    tz = getattr(tt, "timezone", None) or getattr(tt, "_timezone", None)
    expect(str(getattr(tz, "name", tz)) in ("UTC", "Etc/UTC"), f"timezone {tz!r}")
    return True


check("nightly: daily 03:00 UTC data intervals, catchup off, 1 active run", nightly_dag_settings)


def run_at_0300_gets_yesterday():
    """The run that starts 2011-12-01 03:00 UTC must have ds = 2011-11-30 (the day that ended)."""
    try:
        from airflow.serialization.encoders import coerce_to_core_timetable

        tt = coerce_to_core_timetable(nightly.timetable)
    except ImportError:  # Airflow 2: the DAG holds the core timetable
        tt = nightly.timetable
    from airflow.timetables.base import TimeRestriction

    info = tt.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(
            earliest=datetime(2011, 11, 30, tzinfo=timezone.utc), latest=None, catchup=True
        ),
    )
    run_after = info.run_after
    logical = info.logical_date if getattr(info, "logical_date", None) else info.data_interval.start
    expect(
        run_after.isoformat().startswith("2011-12-01T03:00") and logical.strftime("%Y-%m-%d") == DS,
        f"first run after 2011-11-30: run_after={run_after}, ds={logical:%Y-%m-%d}",
    )
    return f"run_after {run_after:%Y-%m-%d %H:%M} -> ds {logical:%Y-%m-%d}"


check("nightly: the 03:00 run processes the previous day", run_at_0300_gets_yesterday)

def serializes():
    """The DAG processor serializes every DAG for the scheduler; a failure there is an import error."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization as ser
    except ImportError:
        from airflow.serialization.serialized_objects import SerializedDAG as ser
    for dag in (nightly, backfill):
        back = ser.from_dict(ser.to_dict(dag))
        expect(back.dag_id == dag.dag_id, f"round trip gave {back.dag_id}")
    return True


check("both DAGs serialize for the scheduler", serializes)
check("task recjob_run exists", lambda: expect("recjob_run" in nightly.task_dict, f"tasks: {list(nightly.task_dict)}"))
task = nightly.task_dict.get("recjob_run")


def render(t, params=None):
    ctx = {"ds": DS, "params": params or {}}
    return t.render_template(t.bash_command, ctx, jinja_env=t.get_template_env())


def nightly_command():
    cmd = render(task)
    for part in ("recjob run --config jobs/nightly.toml", "run --config", f"--date {DS}", "--log-format json"):
        expect(part in cmd, f"{part!r} not in {cmd!r}")
    return cmd


check("recjob_run: rendered bash_command", nightly_command)
check("recjob_run: skip_on_exit_code includes 99", lambda: expect(99 in task.skip_on_exit_code, task.skip_on_exit_code))
check("recjob_run: retries == 3, retry_delay 10 min", lambda: expect(
    task.retries == 3 and task.retry_delay.total_seconds() == 600, (task.retries, task.retry_delay)))
check("recjob_run: cwd is the repo root", lambda: expect(Path(task.cwd).resolve() == REPO, task.cwd))


def backfill_command():
    t = backfill.task_dict["recjob_backfill"]
    params = {k: (v.value if hasattr(v, "value") else v) for k, v in backfill.params.items()}
    expect(set(params) >= {"from_date", "to_date"}, f"params {params}")
    cmd = render(t, {"from_date": "2011-11-01", "to_date": DS})
    for part in ("backfill --config jobs/backfill.toml", "--from 2011-11-01", f"--to {DS}"):
        expect(part in cmd, f"{part!r} not in {cmd!r}")
    expect(backfill.timetable.__class__.__name__ == "NullTimetable", f"schedule {backfill.timetable}")
    return cmd


check("recjob_backfill: schedule None, params, rendered bash_command", backfill_command)


def backfill_params_reject_non_dates():
    for name in ("from_date", "to_date"):
        param = backfill.params.get_param(name)
        expect(param.resolve("2011-12-01") == "2011-12-01", f"{name} rejects a date")
        try:
            param.resolve("2011-12-01; echo injected")
        except Exception:  # noqa: BLE001 (ParamValidationError)
            continue
        raise AssertionError(f"{name} accepts a non-date, which would reach the bash command")
    return True


check("recjob_backfill: params accept only dates", backfill_params_reject_non_dates)


# --- The real BashOperator against a fake `recjob` on PATH: what each exit code becomes. ---
def run_task_with_exit_code(code):
    """Execute recjob_run (rendered) with a fake recjob exiting `code`; returns (result, exception)."""
    with tempfile.TemporaryDirectory() as bindir:
        fake = Path(bindir) / "recjob"
        fake.write_text(f'#!/bin/sh\necho "fake recjob $* (cwd $(pwd))"\nexit {code}\n')
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        old_path, old_cmd = os.environ["PATH"], task.bash_command
        os.environ["PATH"] = f"{bindir}:{old_path}"
        task.bash_command = render(task)
        try:
            return task.execute({}), None
        except Exception as e:  # noqa: BLE001
            return None, e
        finally:
            os.environ["PATH"], task.bash_command = old_path, old_cmd


def decision_for(exc):
    policy = getattr(task, "retry_policy", None)
    expect(policy is not None, "recjob_run has no retry_policy (needs Airflow >= 3.3)")
    return policy.evaluate(exception=exc, try_number=1, max_tries=4).action.value


def exit_0_succeeds():
    out, exc = run_task_with_exit_code(0)
    expect(exc is None, f"exit 0 raised {exc!r}")
    expect(f"run --config jobs/nightly.toml --date {DS} --log-format json" in out and str(REPO) in out, out)
    return out


def exit_99_skips():
    _, exc = run_task_with_exit_code(99)
    expect(type(exc).__name__ == "AirflowSkipException", f"exit 99 gave {exc!r}")
    return True


def exit_1_fails_without_retry():
    _, exc = run_task_with_exit_code(1)
    expect(exc is not None and type(exc).__name__ != "AirflowSkipException", f"exit 1 gave {exc!r}")
    action = decision_for(exc)
    expect(action == "fail", f"exit 1: retry policy said {action!r} for {exc}")
    return True


def exit_2_and_3_retry():
    for code in (2, 3):
        _, exc = run_task_with_exit_code(code)
        expect(exc is not None and type(exc).__name__ != "AirflowSkipException", f"exit {code} gave {exc!r}")
        action = decision_for(exc)
        expect(action in ("default", "retry"), f"exit {code}: retry policy said {action!r}")
    return True


check("recjob_run: exit 0 -> success (real command, cwd)", exit_0_succeeds)
check("recjob_run: exit 99 -> skipped", exit_99_skips)
check("recjob_run: exit 1 -> failed, no retry", exit_1_fails_without_retry)
check("recjob_run: exit 2, 3 -> retried", exit_2_and_3_retry)

print(f"airflow-dag: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
