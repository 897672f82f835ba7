"""GPU check, run on the GPU machine by `scripts/gpu-check.sh run`: one table of
- parity: `recjob embed --device cuda` (f32, f16, bf16) against `--device cpu` on the first 2,000 texts;
- speed: `recjob embed --device cuda` (f32, f16, bf16) against sentence-transformers on the same GPU
  and weights (fp32, and fp16 as its fast path), whole commands on N texts, interleaved, median of
  --repeats, with the minimum cosine of each against sentence-transformers fp32;
- top-K: `recjob topk --device cuda` against `--device cpu` on the same seeded unit vectors with
  exclusions: equal lists, largest score difference, both wall times.
Needs torch, sentence-transformers, numpy and pyarrow (the GPU machine's torch venv)."""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

p = argparse.ArgumentParser()
p.add_argument("--recjob", required=True)
p.add_argument("--model", required=True)
p.add_argument("--texts", required=True, help="Parquet with a `text` column")
p.add_argument("--repeats", type=int, default=3)
p.add_argument("--topk-users", type=int, default=100_000)
p.add_argument("--topk-items", type=int, default=100_000)
a = p.parse_args()
tmp = tempfile.mkdtemp(prefix="gpu-check-")
env = dict(os.environ, RECJOB_LOG="info", RECJOB_LOG_FORMAT="json", HF_HUB_OFFLINE="1")
rows = []


def run(args):
    t = time.perf_counter()
    r = subprocess.run([a.recjob, *args], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"recjob {' '.join(args)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return time.perf_counter() - t


def vectors(path):
    return np.stack(pq.read_table(path).column("embedding").to_numpy(zero_copy_only=False))


def min_cosine(x, y):
    return float(((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).min())


def embed(inp, device, dtype, name):
    out = f"{tmp}/{name}.parquet"
    secs = run(["embed", "--model", a.model, "--input", inp, "--column", "text", "--output", out,
                "--device", device, "--dtype", dtype])
    return secs, out


texts = pq.read_table(a.texts, columns=["text"]).column(0).to_pylist()
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = "unknown (no nvidia-smi)"
print(f"GPU: {gpu}; texts: {len(texts)}; {a.recjob}", flush=True)

# Parity on the first 2,000 texts.
small = f"{tmp}/small.parquet"
pq.write_table(pa.table({"text": texts[:2000]}), small)
cpu = vectors(embed(small, "cpu", "f32", "small-cpu")[1])
for dtype in ["f32", "f16", "bf16"]:
    got = vectors(embed(small, "cuda", dtype, f"small-{dtype}")[1])
    rows.append((f"parity: recjob cuda {dtype} vs recjob cpu, {len(cpu):,} texts", "", f"{min_cosine(got, cpu):.7f}"))

# Speed: whole commands, interleaved.
ST = r'''
import sys, time, pyarrow as pa, pyarrow.parquet as pq, torch
from sentence_transformers import SentenceTransformer
model, inp, out, half = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
m = SentenceTransformer(model, device="cuda")
if half:
    m = m.half()
t = pq.read_table(inp, columns=["text"]).column(0).to_pylist()
v = m.encode(t, batch_size=256, normalize_embeddings=True, convert_to_numpy=True).astype("float32")
pq.write_table(pa.table({"text": t, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])}), out)
'''
script = f"{tmp}/st.py"
open(script, "w").write(ST)


def st(half, name):
    out = f"{tmp}/{name}.parquet"
    t = time.perf_counter()
    subprocess.run([sys.executable, script, a.model, a.texts, out, "1" if half else "0"], env=env, check=True)
    return time.perf_counter() - t, out


sides = {"recjob f32": lambda: embed(a.texts, "cuda", "f32", "r32"),
         "recjob f16": lambda: embed(a.texts, "cuda", "f16", "r16"),
         "recjob bf16": lambda: embed(a.texts, "cuda", "bf16", "rb16"),
         "sentence-transformers fp32": lambda: st(False, "s32"),
         "sentence-transformers fp16": lambda: st(True, "s16")}
times, outs = {k: [] for k in sides}, {}
for f in sides.values():  # warm-up: JIT, caches, disk
    f()
for _ in range(a.repeats):
    for k, f in sides.items():
        secs, outs[k] = f()
        times[k].append(secs)
ref = vectors(outs["sentence-transformers fp32"])
base = statistics.median(times["sentence-transformers fp32"])
for k in sides:
    med = statistics.median(times[k])
    rows.append((f"embed {len(texts):,} texts: {k} (whole command)",
                 f"{med:.2f} s ({', '.join(f'{t:.2f}' for t in times[k])}); {base / med:.2f}x ST fp32",
                 f"{min_cosine(vectors(outs[k]), ref):.7f}"))

# Top-K: the GPU path against the CPU kernel.
rng = np.random.default_rng(7)
def unit(n):
    v = rng.standard_normal((n, 384), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
def table(prefix, v):
    ids = [f"{prefix}{i}" for i in range(len(v))]
    return pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), 384)})
pq.write_table(table("u", unit(a.topk_users)), f"{tmp}/users.parquet")
pq.write_table(table("i", unit(a.topk_items)), f"{tmp}/items.parquet")
ex_u = rng.integers(0, a.topk_users, 200_000)
ex_i = rng.integers(0, a.topk_items, 200_000)
pq.write_table(pa.table({"user_id": [f"u{u}" for u in ex_u], "item_id": [f"i{i}" for i in ex_i]}), f"{tmp}/ex.parquet")
lists = {}
for device in ["cuda", "cpu"]:
    out = f"{tmp}/topk-{device}.parquet"
    secs = run(["topk", "--users", f"{tmp}/users.parquet", "--items", f"{tmp}/items.parquet", "--k", "50",
                "--exclude", f"{tmp}/ex.parquet", "--output", out, "--device", device])
    lists[device] = (secs, pq.read_table(out).sort_by([("user_id", "ascending"), ("rank", "ascending")]))
g, c = lists["cuda"][1], lists["cpu"][1]
same_items = g.column("item_id").to_pylist() == c.column("item_id").to_pylist()
diff = float(np.abs(g.column("score").to_numpy() - c.column("score").to_numpy()).max()) if g.num_rows == c.num_rows else float("nan")
rows.append((f"top-K {a.topk_users:,} x {a.topk_items:,} x 384, K 50: cuda vs cpu",
             f"cuda {lists['cuda'][0]:.1f} s, cpu {lists['cpu'][0]:.1f} s ({lists['cpu'][0] / lists['cuda'][0]:.1f}x)",
             f"lists equal: {same_items}; max score diff {diff:.1e}"))

print("\n| check | time | agreement |\n|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
