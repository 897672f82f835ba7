"""Apache Spark MLlib implicit ALS vs recjob on the same synthetic window (scripts/synth.py output).

    scripts/bench-spark.sh --data DIR [--recjob BIN --config jobs/synthetic.toml] [--repeats 3]

Let D be the evaluation day (the newest behavior partition of DIR, or --eval-date). Both sides
train on the window [D-1 - lookback + 1, D-1] and their top-K lists are scored on D by the same
Python code here (`evaluate`), with recjob's definitions (README "Metrics").

Spark side (a child process `--worker`, so that the JVM it starts is measured with it):
  read DIR/behavior with Spark (dt-pruned to the window), keep valid rows (non-null ids and ts,
  event type in --weights, item in the catalog snapshot newest <= D-1), drop duplicates on
  (user, item, event type, ts) and sum weight * 0.5^(age / half-life) per (user, item), age in
  days from the end of D-1 (as sql/prepare/window_events.sql, events.sql, interactions.sql);
  keep w > 0; index the string ids (StringIndexer); ALS(implicitPrefs=True, rank, maxIter,
  regParam, alpha); recommendForAllUsers(K); write user_id, rank, item_id, score as Parquet.
recjob side (--recjob BIN --config FILE): `BIN run --config FILE --date D-1 --force`, inputs and
  output root set with --set, then its published recommendations/dt=D-1/ are read back.

Runs are interleaved (spark, recjob, spark, recjob, ...); with --repeats N the figures are the
medians. Wall time per phase and total, and the peak RSS of each whole process tree (the sum
over the process and all its descendants, polled every 50 ms from /proc) are printed, and
written to WORKDIR/results.json.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Process-tree memory
# ---------------------------------------------------------------------------------------------

def tree_rss(root_pid, cpu=None):
    """Resident bytes of root_pid and all its descendants; records each one's CPU seconds
    (user + system, own and waited-for children) into `cpu` {pid: seconds}."""
    children, cpus = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            ppid = int(fields[1])
            cpus[int(d)] = sum(int(x) for x in fields[11:15]) / TICK
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    total, todo = 0, [root_pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
            if cpu is not None and p in cpus:
                cpu[p] = cpus[p]
        except (OSError, ValueError, IndexError):
            pass
        todo.extend(children.get(p, ()))
    return total


def run_measured(cmd, cwd=None, env=None, log=None):
    """Run cmd, return (rc, wall seconds, peak tree RSS bytes, CPU seconds of the tree, stdout).
    CPU seconds: the last value polled for each process of the tree (so a process's final 50 ms
    may be missed), or the root's own rusage when larger."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=log or subprocess.DEVNULL, text=True)
    peak, cpu = [0], {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(proc.pid, cpu))
            done.wait(0.05)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out = proc.stdout.read()
    done.set()
    th.join()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    cpu_s = max(sum(cpu.values()), ru.ru_utime + ru.ru_stime)
    return rc, wall, peak[0], cpu_s, out


# ---------------------------------------------------------------------------------------------
# Dates, truth and the evaluator (pyarrow + numpy; identical for both sides)
# ---------------------------------------------------------------------------------------------

def partitions(root: Path):
    return sorted(dt.date.fromisoformat(p.name[3:]) for p in root.glob("dt=*") if p.is_dir())


def catalog_dir(data: Path, day):
    snaps = [d for d in partitions(data / "catalog") if d <= day]
    if not snaps:
        sys.exit(f"bench-spark: no catalog partition <= {day} under {data / 'catalog'}")
    return data / "catalog" / f"dt={snaps[-1]}"


def truth_pairs(data: Path, day, weights, truth):
    """Distinct (user_id, item_id) of the valid events of `day` (recjob's sql/evaluate/truth.sql),
    restricted to event types with a positive weight unless truth == 'all'."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    t = pq.read_table(data / "behavior" / f"dt={day}", columns=["user_id", "item_id", "event_type", "ts"])
    items = pq.read_table(catalog_dir(data, day), columns=["item_id"])["item_id"]
    types = [k for k, w in weights.items() if truth == "all" or w > 0]
    ok = pc.and_(pc.and_(pc.is_valid(t["user_id"]), pc.is_valid(t["item_id"])), pc.is_valid(t["ts"]))
    ok = pc.and_(ok, pc.is_in(t["event_type"], value_set=pa.array(types, pa.string())))
    ok = pc.and_(ok, pc.is_in(t["item_id"], value_set=items))
    t = t.filter(ok).select(["user_id", "item_id"])
    return t.group_by(["user_id", "item_id"]).aggregate([])


def popularity_lists(data: Path, D, lookback, weights, k, truth):
    """recjob's popularity baseline (sql/prepare/popularity.sql): available catalog items by
    deduplicated valid window events, ties by item_id; no exclusions (allow_repeats with
    repeat_after_days = 0). Returned as lists for the users with truth who were active in the
    window (the only listed users the metrics can see)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    last = D - dt.timedelta(days=1)
    cat = pq.read_table(catalog_dir(data, last))
    items = cat["item_id"]
    avail = cat.filter(cat["available"])["item_id"] if "available" in cat.column_names else items
    counts, active = [], []
    for i in range(lookback):
        part = data / "behavior" / f"dt={last - dt.timedelta(days=i)}"
        if not part.exists():
            continue
        t = pq.read_table(part, columns=["user_id", "item_id", "event_type", "ts"])
        ok = pc.and_(pc.and_(pc.is_valid(t["user_id"]), pc.is_valid(t["ts"])),
                     pc.and_(pc.is_in(t["event_type"], value_set=pa.array(list(weights), pa.string())),
                             pc.is_in(t["item_id"], value_set=items)))
        t = t.filter(ok).group_by(["user_id", "item_id", "event_type", "ts"]).aggregate([])
        counts.append(t.group_by("item_id").aggregate([("item_id", "count")]))
        active.append(pc.unique(t["user_id"]))
    c = pa.concat_tables(counts).group_by("item_id").aggregate([("item_id_count", "sum")])
    c = c.filter(pc.is_in(c["item_id"], value_set=avail))
    c = c.sort_by([("item_id_count_sum", "descending"), ("item_id", "ascending")])
    top = c["item_id"].slice(0, k)  # (a catalog with fewer than k items with events: shorter list)
    truth_users = pc.unique(truth["user_id"])
    active = pc.unique(pa.chunked_array(active))
    users = truth_users.filter(pc.is_in(truth_users, value_set=active))
    n, kk = len(users), len(top)
    return pa.table({"user_id": pc.take(users, np.repeat(np.arange(n), kk)),
                     "rank": pa.array(np.tile(np.arange(1, kk + 1, dtype=np.int32), n)),
                     "item_id": pc.take(top, np.tile(np.arange(kk), n))})


def evaluate(recs, truth, ks):
    """recs: table user_id, rank (1..K), item_id; truth: distinct user_id, item_id.
    Evaluated users: non-empty truth and a list. recall = mean |R_K ∩ G| / |G|; precision =
    mean |R_K ∩ G| / K; ndcg: binary gain, 1/log2(rank + 1), IDCG over min(|G|, K);
    hit_rate; map (AP@K over min(|G|, K)) — as sql/evaluate/ranking.sql."""
    import numpy as np
    import pyarrow.compute as pc
    kmax = max(ks)
    recs = recs.select(["user_id", "rank", "item_id"]).filter(pc.less_equal(recs["rank"], kmax))
    truth_users = pc.unique(truth["user_id"])
    listed = pc.unique(recs["user_id"])
    ev_users = truth_users.filter(pc.is_in(truth_users, value_set=listed))
    n_ev = len(ev_users)
    out = {"evaluated_users": n_ev, "truth_users": len(truth_users), "listed_users": len(listed)}
    if n_ev == 0:
        return out
    idx = pc.index_in(truth["user_id"], value_set=ev_users)
    n_truth = np.bincount(idx.drop_null().to_numpy(), minlength=n_ev)
    r = recs.filter(pc.is_in(recs["user_id"], value_set=ev_users))
    hits = r.join(truth, keys=["user_id", "item_id"], join_type="inner")
    hu = pc.index_in(hits["user_id"], value_set=ev_users).to_numpy()
    hr = hits["rank"].to_numpy().astype(np.int64)
    o = np.lexsort((hr, hu))
    hu, hr = hu[o], hr[o]
    first = np.r_[0, np.flatnonzero(hu[1:] != hu[:-1]) + 1] if hu.size else np.array([], np.int64)
    nth = np.arange(hu.size) - np.repeat(first, np.diff(np.r_[first, hu.size])) + 1 if hu.size else hu
    disc = 1.0 / np.log2(np.arange(1, kmax + 1) + 1.0)
    idcg_at = np.cumsum(disc)  # idcg_at[n-1] = IDCG of n hits
    for k in ks:
        m = hr <= k
        nh = np.bincount(hu[m], minlength=n_ev).astype(np.float64)
        dcg = np.bincount(hu[m], weights=disc[hr[m] - 1], minlength=n_ev)
        ap = np.bincount(hu[m], weights=nth[m] / hr[m], minlength=n_ev)
        firsthit = np.full(n_ev, np.inf)
        np.minimum.at(firsthit, hu[m], hr[m].astype(np.float64))
        denom = np.minimum(n_truth, k)
        out[f"recall@{k}"] = float(np.mean(nh / n_truth))
        out[f"precision@{k}"] = float(np.mean(nh / k))
        out[f"ndcg@{k}"] = float(np.mean(dcg / idcg_at[denom - 1]))
        out[f"hit_rate@{k}"] = float(np.mean(nh > 0))
        out[f"mrr@{k}"] = float(np.mean(np.where(np.isfinite(firsthit), 1.0 / firsthit, 0.0)))
        out[f"map@{k}"] = float(np.mean(ap / denom))
    return out


# ---------------------------------------------------------------------------------------------
# The Spark job (child process)
# ---------------------------------------------------------------------------------------------

def spark_worker(a):
    phases = {}
    t0 = time.perf_counter()
    from pyspark.sql import SparkSession, functions as F
    from pyspark.ml.feature import StringIndexer
    from pyspark.ml.recommendation import ALS

    data, out = Path(a.data).resolve(), Path(a.recs_out).resolve()
    D = dt.date.fromisoformat(a.eval_date)
    last = D - dt.timedelta(days=1)
    first = last - dt.timedelta(days=a.lookback - 1)
    end_epoch = (D - dt.date(1970, 1, 1)).days * 86400  # end of the last window day
    weights = parse_weights(a.weights)

    spark = (SparkSession.builder.master(a.master).appName("bench-spark-als")
             .config("spark.driver.memory", a.driver_memory)
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.shuffle.partitions", str(a.shuffle_partitions))
             .config("spark.default.parallelism", str(a.shuffle_partitions))
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.local.dir", str(Path(a.workdir).resolve() / "spark-tmp"))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    phases["startup_s"] = time.perf_counter() - t0
    note = lambda k: print(f"bench-spark worker: {k} {phases[k]:.1f}s", file=sys.stderr, flush=True)  # noqa: E731
    note("startup_s")

    # -- read + prepare: window_events.sql, events.sql, interactions.sql ---------------------
    t = time.perf_counter()
    b = (spark.read.option("basePath", str(data / "behavior")).parquet(str(data / "behavior"))
         .where((F.col("dt") >= F.lit(str(first)).cast("date")) & (F.col("dt") <= F.lit(str(last)).cast("date"))))
    w = spark.createDataFrame(list(weights.items()), "event_type string, weight double")
    cat = spark.read.parquet(str(catalog_dir(data, last))).select("item_id").distinct()
    ev = (b.where(F.col("user_id").isNotNull() & F.col("item_id").isNotNull() & F.col("ts").isNotNull())
          .join(F.broadcast(w), "event_type")
          .join(cat, "item_id", "left_semi")
          .select("user_id", "item_id", "event_type", "ts", "weight")
          .dropDuplicates(["user_id", "item_id", "event_type", "ts"]))
    age_days = F.greatest(F.lit(0.0), F.lit(float(end_epoch)) - F.unix_micros("ts") / F.lit(1e6)) / F.lit(86400.0)
    ev = ev.withColumn("dw", F.col("weight") * F.pow(F.lit(0.5), age_days / F.lit(a.half_life)))
    inter = (ev.groupBy("user_id", "item_id").agg(F.sum("dw").alias("w"))
             .where(F.col("w") > 0).cache())
    n_inter = inter.count()
    phases["read_prepare_s"] = time.perf_counter() - t
    note("read_prepare_s")

    # -- index ----------------------------------------------------------------------------------
    t = time.perf_counter()
    idx = StringIndexer(inputCols=["user_id", "item_id"], outputCols=["u", "i"],
                        stringOrderType="alphabetAsc").fit(inter)
    user_labels, item_labels = idx.labelsArray
    train = (idx.transform(inter).select(F.col("u").cast("int").alias("u"), F.col("i").cast("int").alias("i"), "w")
             .cache())
    train.count()
    inter.unpersist()
    phases["index_s"] = time.perf_counter() - t
    note("index_s")

    # -- ALS ------------------------------------------------------------------------------------
    t = time.perf_counter()
    als = ALS(userCol="u", itemCol="i", ratingCol="w", implicitPrefs=True, rank=a.rank,
              maxIter=a.max_iter, regParam=a.reg, alpha=a.alpha, seed=a.seed,
              nonnegative=False, coldStartStrategy="drop")
    if a.blocks:
        als = als.setNumUserBlocks(a.blocks).setNumItemBlocks(a.blocks)
    model = als.fit(train)
    model.userFactors.count()
    model.itemFactors.count()
    phases["als_fit_s"] = time.perf_counter() - t
    note("als_fit_s")

    # -- recommend + write ------------------------------------------------------------------
    t = time.perf_counter()
    users = spark.createDataFrame(list(enumerate(user_labels)), "u int, user_id string")
    items = spark.createDataFrame(list(enumerate(item_labels)), "i int, item_id string")
    recs = (model.recommendForAllUsers(a.k)
            .select("u", F.posexplode("recommendations").alias("pos", "r"))
            .select("u", (F.col("pos") + 1).cast("int").alias("rank"), F.col("r.i").alias("i"),
                    F.col("r.rating").cast("float").alias("score"))
            .join(users, "u").join(F.broadcast(items), "i")
            .select("user_id", "rank", "item_id", "score"))
    recs.write.mode("overwrite").parquet(str(out))
    phases["recommend_write_s"] = time.perf_counter() - t
    note("recommend_write_s")
    phases["in_process_total_s"] = time.perf_counter() - t0
    spark.stop()
    print(json.dumps({"phases": phases, "interactions": n_inter, "users": len(user_labels),
                      "items": len(item_labels), "window": [str(first), str(last)]}))


def parse_weights(s):
    out = {}
    for part in s.split(","):
        k, v = part.split("=")
        out[k.strip()] = float(v)
    return out


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------

def run_spark(a, i, D, log):
    recs_out = Path(a.workdir) / f"spark-recs-{i}"
    shutil.rmtree(recs_out, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--data", a.data,
           "--eval-date", str(D), "--recs-out", str(recs_out), "--workdir", a.workdir,
           "--lookback", str(a.lookback), "--half-life", str(a.half_life), "--weights", a.weights,
           "--rank", str(a.rank), "--max-iter", str(a.max_iter), "--reg", str(a.reg),
           "--alpha", str(a.alpha), "--k", str(a.k), "--master", a.master,
           "--driver-memory", a.driver_memory, "--shuffle-partitions", str(a.shuffle_partitions),
           "--seed", str(a.seed), "--blocks", str(a.blocks)]
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    rc, wall, peak, cpu, out = run_measured(cmd, env=env, log=log)
    if rc != 0:
        sys.exit(f"bench-spark: the Spark job failed (exit {rc}); see {log.name}")
    res = json.loads(out.strip().splitlines()[-1])
    res.update(wall_s=wall, cpu_s=cpu, peak_rss_bytes=peak, recs=str(recs_out))
    return res


def run_recjob(a, i, D, log):
    import pyarrow.parquet as pq
    root = Path(a.workdir) / ("recjob-out" if a.recjob_cache == "warm" else f"recjob-out-{i}")
    last = D - dt.timedelta(days=1)
    data = Path(a.data).resolve()
    cmd = [str(Path(a.recjob).resolve()), "run", "--config", str(Path(a.config).resolve()),
           "--date", str(last), "--force",
           "--set", f"input.behavior={data / 'behavior'}", "--set", f"input.catalog={data / 'catalog'}",
           "--set", f"output.root={root.resolve()}", "--set", f"window.lookback_days={a.lookback}",
           "--set", f"window.half_life_days={a.half_life}", "--set", f"topk.k={a.k}",
           "--set", f"hybrid.factors={a.rank}", "--set", f"hybrid.iterations={a.max_iter}",
           "--set", f"hybrid.regularization={a.reg}", "--set", f"hybrid.alpha={a.alpha}"]
    for s in a.recjob_set:
        cmd += ["--set", s]
    rc, wall, peak, cpu, _ = run_measured(cmd, cwd=str(REPO), log=log)
    if rc != 0:
        sys.exit(f"bench-spark: recjob exited {rc}; see {log.name}")
    recs = root / "recommendations" / f"dt={last}"
    stages = {}
    man = root / "_manifests" / f"dt={last}" / "manifest.json"
    if man.exists():
        stages = json.loads(man.read_text()).get("timings_s", {})
    n_users = pq.read_metadata(next(recs.glob("*.parquet"))).num_rows // max(a.k, 1)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": peak, "recs": str(recs), "phases": stages,
            "users": n_users}


def score(a, res, truth):
    import pyarrow.parquet as pq
    recs = pq.read_table(res["recs"], columns=["user_id", "rank", "item_id"])
    return evaluate(recs, truth, a.eval_ks)


def fmt_phases(ph):
    return ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in ph.items()
                     if isinstance(v, (int, float)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a scripts/synth.py output dir (behavior/, catalog/)")
    p.add_argument("--eval-date", help="evaluation day D (default: the newest behavior partition)")
    p.add_argument("--workdir", default=None, help="outputs and logs (default out/bench-spark)")
    p.add_argument("--lookback", type=int, default=60)
    p.add_argument("--half-life", type=float, default=14.0)
    p.add_argument("--weights", default="purchase=1.0,view=0.25,return=0.0")
    p.add_argument("--truth", choices=["positive", "all"], default="positive",
                   help="ground truth: events of positive-weight types (default) or every valid event "
                        "(recjob's default when events.truth_types is empty)")
    p.add_argument("--rank", type=int, default=128)
    p.add_argument("--max-iter", type=int, default=10)
    p.add_argument("--reg", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--eval-ks", type=lambda s: [int(x) for x in s.split(",")], default=[10, 20, 50])
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default=None,
                   help="default: 60%% of this machine's memory (the whole JVM in local mode)")
    p.add_argument("--shuffle-partitions", type=int, default=8)
    p.add_argument("--blocks", type=int, default=0, help="ALS user/item blocks (0: Spark's default, 10)")
    p.add_argument("--recjob", help="recjob binary; skipped (with a note) when absent")
    p.add_argument("--config", default=str(REPO / "jobs/synthetic.toml"))
    p.add_argument("--recjob-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra --set for recjob, repeatable")
    p.add_argument("--recjob-cache", choices=["warm", "cold"], default="warm",
                   help="warm: one untimed run first fills the embedding cache, timed runs reuse it; "
                        "cold: every timed run starts from an empty output root")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--skip-spark", action="store_true")
    # child mode
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--recs-out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.driver_memory is None:
        with open("/proc/meminfo") as f:
            kb = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
        a.driver_memory = f"{max(1, int(kb * 0.6 / 1024 / 1024))}g"
    if a.worker:
        return spark_worker(a)

    data = Path(a.data)
    days = partitions(data / "behavior")
    if not days:
        sys.exit(f"bench-spark: no behavior partitions under {data / 'behavior'}")
    D = dt.date.fromisoformat(a.eval_date) if a.eval_date else days[-1]
    last = D - dt.timedelta(days=1)
    a.workdir = str(Path(a.workdir or REPO / "out" / "bench-spark").resolve())
    Path(a.workdir).mkdir(parents=True, exist_ok=True)
    log = open(Path(a.workdir) / "bench.log", "w")
    weights = parse_weights(a.weights)
    print(f"data {data}: window {last - dt.timedelta(days=a.lookback - 1)} .. {last}, evaluated on {D}; "
          f"ALS rank {a.rank}, {a.max_iter} iterations, reg {a.reg}, alpha {a.alpha}, K {a.k}; "
          f"Spark {a.master}, driver memory {a.driver_memory}")
    import pyarrow.compute as pc  # noqa: F401  (fail early if the venv lacks pyarrow)
    truth = truth_pairs(data, D, weights, a.truth)
    print(f"ground truth on {D} ({a.truth} events): {truth.num_rows:,} (user, item) pairs, "
          f"{len(pc.unique(truth['user_id'])):,} users")
    t = time.perf_counter()
    baseline = evaluate(popularity_lists(data, D, a.lookback, weights, a.k, truth), truth, a.eval_ks)
    print(f"popularity baseline: recall@20 {baseline.get('recall@20', float('nan')):.4f}  "
          f"ndcg@20 {baseline.get('ndcg@20', float('nan')):.4f}  ({baseline['evaluated_users']:,} evaluated "
          f"users; {time.perf_counter() - t:.1f}s)", flush=True)

    use_recjob = False
    if a.recjob:
        if Path(a.recjob).is_file() and os.access(a.recjob, os.X_OK):
            use_recjob = True
        else:
            print(f"note: recjob binary {a.recjob} not found or not executable: Spark side only")
    sides = ([] if a.skip_spark else ["spark"]) + (["recjob"] if use_recjob else [])
    if use_recjob and a.recjob_cache == "warm":
        print("recjob warm-up run (fills the embedding cache; not in the medians) ...", flush=True)
        r = run_recjob(a, 0, D, log)
        print(f"  recjob cold: {r['wall_s']:.1f}s wall, {r['cpu_s']:.1f}s CPU, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB; "
              f"{fmt_phases(r['phases'])}")
        cold = r
    else:
        cold = None

    results = {s: [] for s in sides}
    for i in range(1, a.repeats + 1):
        for s in sides:
            print(f"[{i}/{a.repeats}] {s} ...", flush=True)
            r = run_spark(a, i, D, log) if s == "spark" else run_recjob(a, i, D, log)
            t = time.perf_counter()
            r["metrics"] = score(a, r, truth)
            r["eval_s"] = time.perf_counter() - t
            results[s].append(r)
            m = r["metrics"]
            print(f"  {s}: {r['wall_s']:.1f}s wall, {r['cpu_s']:.1f}s CPU, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB; "
                  f"{fmt_phases(r['phases'])}")
            print(f"  recall@20 {m.get('recall@20', float('nan')):.4f}  ndcg@20 {m.get('ndcg@20', float('nan')):.4f}"
                  f"  ({m['evaluated_users']:,} evaluated users of {m['truth_users']:,} with truth; "
                  f"{m['listed_users']:,} listed)", flush=True)

    med = {}
    for s, rs in results.items():
        med[s] = {
            "wall_s": statistics.median(r["wall_s"] for r in rs),
            "cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "peak_rss_gib": statistics.median(r["peak_rss_bytes"] for r in rs) / 2**30,
            **{k: statistics.median(r["metrics"][k] for r in rs)
               for k in rs[0]["metrics"] if "@" in k},
            "evaluated_users": rs[0]["metrics"]["evaluated_users"],
        }
        phase_keys = [k for k, v in rs[0]["phases"].items() if isinstance(v, (int, float))]
        med[s]["phases"] = {k: statistics.median(r["phases"].get(k, 0.0) for r in rs) for k in phase_keys}
    print(f"\nmedians over {a.repeats} run(s):")
    print(f"{'':8} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9} {'recall@20':>10} {'ndcg@20':>8} {'users eval':>10}")
    for s, m in med.items():
        print(f"{s:8} {m['wall_s']:8.1f} {m['cpu_s']:8.1f} {m['peak_rss_gib']:9.2f} {m.get('recall@20', float('nan')):10.4f} "
              f"{m.get('ndcg@20', float('nan')):8.4f} {m['evaluated_users']:10,}")
        print(f"{'':8} phases: {fmt_phases(m['phases'])}")
    print(f"{'popular':8} {'':8} {'':8} {'':9} {baseline.get('recall@20', float('nan')):10.4f} "
          f"{baseline.get('ndcg@20', float('nan')):8.4f} {baseline['evaluated_users']:10,}")
    if "spark" in med and "recjob" in med:
        sp, rj = med["spark"], med["recjob"]
        print(f"spark / recjob: wall {sp['wall_s'] / rj['wall_s']:.2f}x, CPU {sp['cpu_s'] / max(rj['cpu_s'], 1e-9):.2f}x, peak memory "
              f"{sp['peak_rss_gib'] / rj['peak_rss_gib']:.2f}x, recall@20 "
              f"{sp.get('recall@20', 0) / max(rj.get('recall@20', 0), 1e-12):.2f}x, ndcg@20 "
              f"{sp.get('ndcg@20', 0) / max(rj.get('ndcg@20', 0), 1e-12):.2f}x")
    out = {"args": {k: v for k, v in vars(a).items() if k not in ("worker", "recs_out")},
           "eval_date": str(D), "truth_pairs": truth.num_rows, "runs": results,
           "recjob_cold": cold, "medians": med,
           "popularity_baseline": baseline}
    (Path(a.workdir) / "results.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"results: {Path(a.workdir) / 'results.json'}; logs: {log.name}")


if __name__ == "__main__":
    main()
