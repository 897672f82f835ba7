#!/usr/bin/env python3
"""The whole nightly run at production scale: wall time, per-stage seconds and peak memory.

    python scripts/bench_scale.py [--users 100000 1000000] [--items 100000]
                                  [--recjob target/debug/recjob] [--config jobs/synthetic.toml]

For each user count N, the inputs are generated once by scripts/synth.py into out/synth-N-M (a
60-day window plus the evaluation day, --events-per-user events per user in the window, real item
text), then `recjob run` of the last window day runs twice into out/scale-N-M: cold (a fresh
output root: every text is embedded) and warm (--force, the embedding cache full). Each run's peak
RSS is the child's ru_maxrss (os.wait4); per-stage seconds come from the manifest's `timings_s`.
Prints one table; `--json FILE` also writes the rows.

Needs numpy and pyarrow (scripts/bench-scale.sh makes a throwaway venv with them).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events-per-user", type=int, default=30)
    ap.add_argument("--recjob", default="target/debug/recjob")
    ap.add_argument("--config", default="jobs/synthetic.toml")
    ap.add_argument("--passes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    ap.add_argument("--json", help="also write the rows here")
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
            cmd = [args.recjob, "run", "--config", args.config, "--date", date,
                   "--set", f"input.behavior={data}/behavior", "--set", f"input.catalog={data}/catalog",
                   "--set", f"output.root={out}"]
            if (out / "_manifests" / f"dt={date}" / "manifest.json").exists():
                cmd.append("--force")
            wall, rss = run(cmd, out.with_name(out.name + f".{p}.log"))
            manifest = json.loads((out / "_manifests" / f"dt={date}" / "manifest.json").read_text())
            rows.append({
                "users": n, "active_users": manifest["users"]["active"], "items": args.items,
                "events": meta["window_events"], "pass": p, "wall_s": round(wall, 1),
                "peak_rss_gb": round(rss / 1e9, 2), "timings_s": manifest["timings_s"],
                "recommendations": manifest["row_counts"]["recommendations"],
                "command": " ".join(cmd),
            })
            print(f"  {p}: {wall:.1f} s, peak RSS {rss / 1e9:.2f} GB", flush=True)

    print()
    head = ["users", "active", "events", "pass", "wall s", "peak RSS GB"] + STAGES
    print(" | ".join(head))
    for r in rows:
        t = r["timings_s"]
        cells = [f"{r['users']:,}", f"{r['active_users']:,}", f"{r['events']:,}", r["pass"],
                 f"{r['wall_s']:.1f}", f"{r['peak_rss_gb']:.2f}"]
        cells += [f"{t.get(s, 0.0):.1f}" for s in STAGES]
        print(" | ".join(cells))
    by = {(r["users"], r["pass"]): r["peak_rss_gb"] for r in rows}
    ns = sorted(args.users)
    if len(ns) > 1:
        for p in args.passes:
            lo, hi = by.get((ns[0], p)), by.get((ns[-1], p))
            if lo and hi:
                print(f"peak RSS {p}: {ns[-1]:,} users / {ns[0]:,} users = {hi / lo:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
