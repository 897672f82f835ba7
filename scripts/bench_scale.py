#!/usr/bin/env python3
"""The whole nightly run at production scale: wall time, per-stage seconds and peak memory.

    python scripts/bench_scale.py [--users 100000 1000000] [--items 100000]
                                  [--recjob target/debug/recjob] [--config jobs/synthetic.toml]

For each user count N, the inputs are generated once by scripts/synth.py into out/synth-N-M (a
60-day window plus the evaluation day, --events-per-user events per user in the window, real item
text), then `recjob run` of the last window day runs twice into out/scale-N-M: cold (a fresh
output root: every text is embedded) and warm (--force, the embedding cache full). Each run's peak
RSS is the child's ru_maxrss (os.wait4); per-stage seconds come from the manifest's `timings_s`.
Prints one table; `--json FILE` also writes the rows. `--set KEY=VALUE` goes to every run (a
setting's cost: alternate runs with and without it, `--passes warm`).

`--executors 1 2` runs each pass on a loopback Ballista cluster instead (a scheduler and that
many executors started from the same binary, `engine.url = df://...`), one cluster per
executor count; the peak RSS is then the driver's (the `recjob run` process), and each
executor's peak (VmHWM) is printed too.

Needs numpy and pyarrow (scripts/bench-scale.sh makes a throwaway venv with them).
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["read", "prepare", "embed", "similar", "behavior", "topk", "write", "evaluate"]


def synth(python: str, users: int, items: int, events: int) -> Path:
    data = ROOT / "out" / f"synth-{users}-{items}"
    if not (data / "_synth.json").exists():
        cmd = [python, str(ROOT / "scripts" / "synth.py"), "--out", str(data), "--users", str(users),
               "--items", str(items), "--days", "61", "--events-per-user-window", str(events)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return data


def run(cmd: list[str], log: Path) -> tuple[float, int]:
    """Run `cmd`; returns (wall seconds, peak RSS bytes). Fails loudly on a non-zero exit."""
    print("+", " ".join(cmd), flush=True)
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text().splitlines()[-20:]
        sys.exit(f"bench-scale: exit {code}: {' '.join(cmd)}\n" + "\n".join(tail))
    return wall, usage.ru_maxrss * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def cluster(recjob: str, executors: int, work: Path):
    """A loopback scheduler and `executors` executors; yields the engine URL and the executors'
    processes. Stopped on exit."""
    if executors == 0:
        yield "local", []
        return
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()

    def start(args: list[str], log: Path) -> subprocess.Popen:
        env = dict(os.environ, RECJOB_LOG="info")
        return subprocess.Popen([recjob, *args], stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                                env=env, cwd=ROOT)

    procs = [start(["scheduler", "--bind", "127.0.0.1", "--port", str(port), "--external-host",
                    "127.0.0.1"], work / "scheduler.log")]
    logs = [work / f"executor-{n}.log" for n in range(executors)]
    try:
        for n, log in enumerate(logs):
            procs.append(start(["executor", "--scheduler", f"127.0.0.1:{port}", "--bind", "127.0.0.1",
                                "--external-host", "127.0.0.1", "--port", str(free_port()),
                                "--grpc-port", str(free_port()), "--work-dir", str(work / f"e{n}")],
                               log))
        deadline = time.time() + 60
        while not all("Executor registration succeed" in l.read_text() for l in logs):
            if time.time() > deadline:
                sys.exit(f"bench-scale: executors did not register: see {logs}")
            time.sleep(0.2)
        yield f"df://127.0.0.1:{port}", procs[1:]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events-per-user", type=int, default=30)
    ap.add_argument("--recjob", default="target/debug/recjob")
    ap.add_argument("--config", default="jobs/synthetic.toml")
    ap.add_argument("--passes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to every `recjob run` (e.g. hybrid.neighbor_weight=0.1)")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--executors", type=int, nargs="+", default=[0],
                    help="run on a loopback Ballista cluster of this many executors (0: in process)")
    args = ap.parse_args()

    rows = []
    for n in args.users:
        data = synth(sys.executable, n, args.items, args.events_per_user)
        meta = json.loads((data / "_synth.json").read_text())["summary"]
        date = meta["last_window_day"]
        out = ROOT / "out" / f"scale-{n}-{args.items}"
        if "cold" in args.passes:
            shutil.rmtree(out, ignore_errors=True)
        for p in args.passes:
            for n_exec in args.executors:
                with cluster(args.recjob, n_exec, out.with_name(out.name + f".cluster-{n_exec}")) as (url, procs):
                    cmd = [args.recjob, "run", "--config", args.config, "--date", date,
                           "--set", f"input.behavior={data}/behavior", "--set", f"input.catalog={data}/catalog",
                           "--set", f"output.root={out}", "--set", f"engine.url={url}"]
                    for kv in args.set:
                        cmd += ["--set", kv]
                    if (out / "_manifests" / f"dt={date}" / "manifest.json").exists():
                        cmd.append("--force")
                    wall, rss = run(cmd, out.with_name(out.name + f".{p}.log"))
                    executor_mb = [round(peak_mb(e.pid)) for e in procs]
                manifest = json.loads((out / "_manifests" / f"dt={date}" / "manifest.json").read_text())
                rows.append({
                    "users": n, "active_users": manifest["users"]["active"], "items": args.items,
                    "events": meta["window_events"], "pass": p, "executors": n_exec,
                    "wall_s": round(wall, 1), "peak_rss_gb": round(rss / 1e9, 2),
                    "executor_peak_mb": executor_mb, "timings_s": manifest["timings_s"],
                    "recommendations": manifest["row_counts"]["recommendations"],
                    "command": " ".join(cmd),
                })
                where = f" on {n_exec} executor(s), executors' peaks {executor_mb} MB" if n_exec else ""
                print(f"  {p}{where}: {wall:.1f} s, peak RSS {rss / 1e9:.2f} GB", flush=True)

    print()
    head = ["users", "active", "events", "pass", "executors", "wall s", "peak RSS GB"] + STAGES
    print(" | ".join(head))
    for r in rows:
        t = r["timings_s"]
        cells = [f"{r['users']:,}", f"{r['active_users']:,}", f"{r['events']:,}", r["pass"],
                 str(r["executors"]), f"{r['wall_s']:.1f}", f"{r['peak_rss_gb']:.2f}"]
        cells += [f"{t.get(s, 0.0):.1f}" for s in STAGES]
        print(" | ".join(cells))
    by = {(r["users"], r["pass"], r["executors"]): r["peak_rss_gb"] for r in rows}
    ns = sorted(args.users)
    if len(ns) > 1:
        for p in args.passes:
            for e in args.executors:
                lo, hi = by.get((ns[0], p, e)), by.get((ns[-1], p, e))
                if lo and hi:
                    print(f"peak RSS {p}, {e} executors: {ns[-1]:,} users / {ns[0]:,} users = {hi / lo:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
