"""Top-K benchmark: recjob's kernel vs FAISS IndexFlatIP on identical seeded unit vectors.

Prints times, effective GFLOP/s (2 * users * items * d / t), the ratio to FAISS, the fraction of
the machine's measured GEMM peak (examples/gemm_peak, same `gemm` kernel), and checks that both
return the same top-K (up to score ties). Run by `make bench-topk`; figures go to BENCHMARKS.md.
"""
import argparse, json, os, statistics, subprocess, tempfile, time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

p = argparse.ArgumentParser()
p.add_argument("--users", type=int, default=20_000)
p.add_argument("--items", type=int, default=100_000)
p.add_argument("--dim", type=int, default=384)
p.add_argument("--k", type=int, default=50)
p.add_argument("--exclusions", type=int, default=60_000)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--skip-faiss", action="store_true")
p.add_argument("--repeats", type=int, default=3, help="interleaved runs per side; medians are reported")
a = p.parse_args()

os.environ["OMP_NUM_THREADS"] = os.environ["RAYON_NUM_THREADS"] = str(a.threads)
rng = np.random.default_rng(42)

def unit(n):
    v = rng.standard_normal((n, a.dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v

def vectors_table(ids, v):
    emb = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), a.dim)
    return pa.table({"id": ids, "embedding": emb})

users, items = unit(a.users), unit(a.items)
user_ids = [f"u{i:07d}" for i in range(a.users)]
item_ids = [f"i{i:07d}" for i in range(a.items)]  # zero-padded: id order = index order
ex_u = rng.integers(0, a.users, a.exclusions)
ex_i = rng.integers(0, a.items, a.exclusions)

tmp = tempfile.mkdtemp(prefix="bench-topk-")
# Row groups of 64k users: readers stream them, so memory does not grow with the user count.
pq.write_table(vectors_table(user_ids, users), f"{tmp}/users.parquet", row_group_size=65_536)
pq.write_table(vectors_table(item_ids, items), f"{tmp}/items.parquet")
pq.write_table(pa.table({"user_id": [user_ids[i] for i in ex_u], "item_id": [item_ids[i] for i in ex_i]}), f"{tmp}/exclude.parquet")

peak = json.loads(subprocess.check_output(["target/debug/examples/gemm_peak", "2048", "5"]))["gflops"]
flop = 2.0 * a.users * a.items * a.dim

env = dict(os.environ, RECJOB_LOG="info", RECJOB_LOG_FORMAT="json")


def run_recjob():
    """(kernel seconds, whole-command seconds, peak RSS MB) of one `recjob topk`."""
    t = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "%M", "target/debug/recjob", "topk", "--users", f"{tmp}/users.parquet", "--items", f"{tmp}/items.parquet",
                          "--k", str(a.k), "--exclude", f"{tmp}/exclude.parquet", "--output", f"{tmp}/out.parquet", "--device", "cpu"],
                         env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    kernel = next(json.loads(l) for l in run.stderr.splitlines() if '"top-K kernel"' in l)
    return float(kernel["kernel_seconds"]), wall, int(run.stderr.strip().splitlines()[-1]) / 1024, kernel["blas"]


# A warm-up run, which also says which OpenBLAS kernels recjob chose for this CPU: FAISS's own
# OpenBLAS gets the same (unless OPENBLAS_CORETYPE is set), or it may fall back to SSE3 kernels
# on a CPU model it does not know, as recjob's did before it chose.
blas = run_recjob()[3]
if "(" in blas and "OPENBLAS_CORETYPE" not in os.environ:
    os.environ["OPENBLAS_CORETYPE"] = blas.split("(")[1].rstrip(")")
import faiss  # noqa: E402  (after OMP_NUM_THREADS and OPENBLAS_CORETYPE)

faiss.omp_set_num_threads(a.threads)


excluded = {}
for u, i in zip(ex_u, ex_i):
    excluded.setdefault(int(u), set()).add(int(i))
extra = max(len(s) for s in excluded.values())
if not a.skip_faiss:
    index = faiss.IndexFlatIP(a.dim)
    index.add(items)


def run_faiss():
    """(seconds, filtered lists) of one FAISS search of every user."""
    t = time.perf_counter()
    D, I = index.search(users, a.k + extra)
    lists = []
    for u in range(a.users):
        ex = excluded.get(u, ())
        lists.append([(d, i) for d, i in zip(D[u], I[u]) if i not in ex][: a.k])
    return time.perf_counter() - t, lists


ours_runs, theirs_runs = [], []
for _ in range(a.repeats):  # interleaved: recjob, FAISS, recjob, FAISS, ...
    ours_runs.append(run_recjob())
    if not a.skip_faiss:
        secs, theirs_lists = run_faiss()
        theirs_runs.append(secs)
ours = statistics.median(r[0] for r in ours_runs)
wall = statistics.median(r[1] for r in ours_runs)
peak_mb = max(r[2] for r in ours_runs)
print(f"users={a.users} items={a.items} d={a.dim} K={a.k} exclusions={a.exclusions} threads={a.threads} repeats={a.repeats}")
print(f"GEMM peak (gemm crate, 2048^3, {a.threads} threads): {peak:.1f} GFLOP/s")
print(f"recjob's BLAS: {blas}; FAISS's OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
print(f"recjob kernel: median {ours:.2f} s ({', '.join(f'{r[0]:.2f}' for r in ours_runs)})  {flop / ours / 1e9:.1f} GFLOP/s  ({flop / ours / 1e9 / peak:.0%} of peak); whole command {wall:.2f} s, peak RSS {peak_mb:.0f} MB")

if not a.skip_faiss:
    theirs = statistics.median(theirs_runs)
    print(f"FAISS IndexFlatIP (k={a.k}+{extra}, then filtered): median {theirs:.2f} s ({', '.join(f'{t:.2f}' for t in theirs_runs)})  {flop / theirs / 1e9:.1f} GFLOP/s")
    print(f"ratio recjob/FAISS speed: {theirs / ours:.2f}x")
    out = pq.read_table(f"{tmp}/out.parquet").to_pydict()
    mine = {}
    for u, r, i, s in zip(out["user_id"], out["rank"], out["item_id"], out["score"]):
        mine.setdefault(u, []).append((r, int(i[1:]), s))
    mismatched = 0
    for u in range(a.users):
        m = sorted(mine[user_ids[u]])
        f = theirs_lists[u]
        if len(m) != len(f) or any(abs(x[2] - y[0]) > 1e-4 for x, y in zip(m, f)):
            mismatched += 1
        elif {x[1] for x in m} != {int(y[1]) for y in f}:
            # Only acceptable where the last scores tie.
            if abs(m[-1][2] - f[-1][0]) > 1e-6:
                mismatched += 1
    print(f"same top-K as FAISS (up to score ties): {a.users - mismatched}/{a.users} users")
