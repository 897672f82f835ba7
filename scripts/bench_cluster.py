"""make bench-cluster: the nightly run on a synthetic catalog and user base, in one process and on
a Ballista cluster of 1 and then 2 executors on this machine, identical data and config in one
invocation. Prints per-stage seconds (from each manifest's timings_s), ratios, the published
rows' equality, and a projection for 10x and 100x the size from the measured per-stage
throughput.

    .venv/bin/python scripts/bench_cluster.py [--items 20000] [--users 50000] [--events-per-user 12]
"""

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "target/debug/recjob"
MODEL = REPO / "models/all-MiniLM-L6-v2"
DATE = "2024-03-07"
DAYS = [f"2024-03-0{d}" for d in range(1, 8)]

ADJ = ["Red", "Blue", "Green", "Vintage", "Wooden", "Ceramic", "Glass", "Metal", "Large", "Small",
       "Striped", "Floral", "Heart", "Star", "Retro", "Pink", "White", "Black", "Gold", "Silver"]
NOUN = ["Mug", "Teapot", "Candle Holder", "Lantern", "Photo Frame", "Cushion Cover", "Tea Towel",
        "Storage Tin", "Jewellery Box", "Wall Clock", "Doormat", "Lunch Bag", "Gift Wrap", "Bunting",
        "Coaster Set", "Garden Sign", "Egg Cup", "Cake Stand", "Night Light", "Door Stop"]
CATS = ["kitchen", "home decor", "garden", "gifts", "party", "storage", "lighting", "textiles"]
DESC = ["perfect for gifts", "hand finished", "set of four", "for indoor use", "with gift box",
        "dishwasher safe", "assorted colours", "battery operated", ""]


def generate(root: Path, n_items: int, n_users: int, events_per_user: int, seed: int = 11):
    rng = random.Random(seed)
    ids = [f"I{i:07d}" for i in range(n_items)]
    titles = [f"{rng.choice(ADJ)} {rng.choice(ADJ)} {rng.choice(NOUN)} No {i}" for i in range(n_items)]
    cat = pa.table({
        "item_id": ids,
        "title": titles,
        "description": [rng.choice(DESC) or None for _ in ids],
        "category": [rng.choice(CATS) for _ in ids],
        "available": [True] * n_items,
    })
    (root / "catalog" / f"dt={DAYS[0]}").mkdir(parents=True)
    pq.write_table(cat, root / "catalog" / f"dt={DAYS[0]}" / "part-0.parquet")
    # Users prefer a few categories' items (Zipf-like popularity) so ALS has signal.
    weights = [1.0 / (1 + i) ** 0.8 for i in range(n_items)]
    rows = {d: ([], [], [], [], []) for d in DAYS}
    for u in range(n_users):
        picks = rng.choices(range(n_items), weights=weights, k=events_per_user)
        for p in picks:
            d = rng.choice(DAYS)
            cols = rows[d]
            cols[0].append(f"U{u:07d}")
            cols[1].append(ids[p])
            cols[2].append("purchase" if rng.random() < 0.3 else "view")
            cols[3].append(f"{d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z")
            cols[4].append(1.0)
    for d, (us, its, ev, ts, val) in rows.items():
        t = pa.table({
            "user_id": us,
            "item_id": its,
            "event_type": ev,
            "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
            "value": val,
        })
        (root / "behavior" / f"dt={d}").mkdir(parents=True)
        pq.write_table(t, root / "behavior" / f"dt={d}" / "part-0.parquet")
    return sum(len(c[0]) for c in rows.values())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log):
    env = dict(os.environ, RECJOB_LOG="info")
    return subprocess.Popen([str(BIN), *args], stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)


def wait_registered(logs, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all("Executor registration succeed" in Path(l).read_text() for l in logs):
            return
        time.sleep(0.2)
    sys.exit(f"executors did not register: see {logs}")


def run(work: Path, config: Path, out: Path, engine: str):
    started = time.time()
    p = subprocess.run(
        [str(BIN), "run", "--config", str(config), "--date", DATE, "--set", f"output.root={out}",
         "--set", f"engine.url={engine}"],
        cwd=work, capture_output=True, text=True, env=dict(os.environ, RECJOB_LOG="warn"))
    if p.returncode != 0:
        sys.exit(f"run on {engine} failed ({p.returncode}):\n{p.stderr}")
    manifest = json.loads((out / f"_manifests/dt={DATE}/manifest.json").read_text())
    manifest["wall_s"] = time.time() - started
    return manifest


def published(out: Path):
    rows = {}
    for t in ["recommendations", "similar_items", "user_embeddings", "item_vectors"]:
        tab = pq.read_table(out / t / f"dt={DATE}").drop_columns(["run_id"])
        rows[t] = sorted(map(str, tab.to_pylist()))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--users", type=int, default=50000)
    ap.add_argument("--events-per-user", type=int, default=12)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recjob-bench-cluster-"))
    t0 = time.time()
    n_events = generate(work / "data", a.items, a.users, a.events_per_user)
    print(f"synthetic data: {a.items} items, {a.users} users, {n_events} events over {len(DAYS)} days "
          f"({time.time() - t0:.0f} s to generate) in {work}")
    config = work / "job.toml"
    config.write_text(
        f'[input]\nbehavior = "{work}/data/behavior"\ncatalog = "{work}/data/catalog"\n'
        f'[output]\nroot = "{work}/unused"\n[model]\ndir = "{MODEL}"\n'
        f'[window]\nlookback_days = 7\n[events.weights]\npurchase = 1.0\nview = 0.25\n'
        f'[hybrid]\nfactors = 64\niterations = 5\n[engine]\npartitions = 8\n')

    results = {"local": run(work, config, work / "out-local", "local")}
    port = free_port()
    procs = [start(["scheduler", "--bind", "127.0.0.1", "--port", str(port), "--external-host",
                    "127.0.0.1"], work / "scheduler.log")]
    try:
        logs = []
        for n in (1, 2):
            log = work / f"executor-{n}.log"
            logs.append(log)
            procs.append(start(["executor", "--scheduler", f"127.0.0.1:{port}", "--bind", "127.0.0.1",
                                "--external-host", "127.0.0.1", "--port", str(free_port()),
                                "--grpc-port", str(free_port()), "--work-dir", str(work / f"e{n}")],
                               log))
            wait_registered(logs)
            results[f"{n} executor{'s' if n > 1 else ''}"] = run(
                work, config, work / f"out-{n}", f"df://127.0.0.1:{port}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()

    same = all(published(work / o) == published(work / "out-local") for o in ("out-1", "out-2"))
    stages = ["read", "prepare", "embed", "users", "similar", "behavior", "topk", "evaluate", "write"]
    names = list(results)
    print(f"\nseconds per stage (manifest timings_s), {os.cpu_count()} cores on this machine")
    print(f"{'stage':<10}" + "".join(f"{n:>14}" for n in names) + f"{'2 exec/1 exec':>15}")
    for s in stages + ["wall_s"]:
        vals = [r["timings_s"].get(s, 0.0) if s != "wall_s" else r["wall_s"] for r in results.values()]
        ratio = vals[1] / vals[2] if vals[2] > 0 else float("nan")
        print(f"{s:<10}" + "".join(f"{v:>14.2f}" for v in vals) + f"{ratio:>14.2f}x")
    print(f"published rows identical across the three runs: {same}")

    # Projection from the 2-executor run's per-stage throughput, at 10x and 100x (items and users
    # both scaled): embedding grows with items, top-K with users x items (+ items x items for
    # similar items), the driver stages roughly with events.
    r = results["2 executors"]["timings_s"]
    emb_rate = a.items / max(r["embed"], 1e-9)                   # texts/s per 2 executors
    pairs = a.users * a.items + a.items * a.items
    topk_rate = pairs / max(r["topk"] + r["similar"], 1e-9)      # scored pairs/s
    driver = sum(r.get(s, 0.0) for s in ["read", "prepare", "users", "behavior", "evaluate", "write"])
    print(f"\nmeasured (2 executors on {os.cpu_count()} shared cores): embedding {emb_rate:.0f} texts/s, "
          f"top-K {topk_rate / 1e6:.0f} M user-item pairs/s, driver stages {driver:.1f} s")
    print(f"{'scale':<7}{'items':>10}{'users':>11}{'embed s/exec':>14}{'topk s/exec':>13}{'driver s':>10}")
    for f in (1, 10, 100):
        items, users = a.items * f, a.users * f
        e = items / emb_rate
        t = (users * items + items * items) / topk_rate
        print(f"{f:>4}x  {items:>10}{users:>11}{e:>14.0f}{t:>13.0f}{driver * f:>10.0f}")
    print("(embed and top-K seconds: one executor with this machine's cores, which the two executors "
          "shared; divide by the number of such executors. The driver stages do not distribute.)")
    if a.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if not same:
        sys.exit("published rows differ between local and cluster runs")


if __name__ == "__main__":
    main()
