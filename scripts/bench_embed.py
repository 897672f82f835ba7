"""Embedding benchmark: `recjob embed` vs sentence-transformers on CPU, same texts, same model,
same thread count, in one invocation. Prints texts/s for both, their ratio, and the minimum
cosine between the two outputs. Run by `make bench-embed`; figures go to BENCHMARKS.md.

Texts: scripts/titles.py (the first N distinct product/movie titles of the public datasets).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--texts", type=int, default=10_000)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--model", default="models/all-MiniLM-L6-v2")
p.add_argument("--repeats", type=int, default=3, help="interleaved runs per side; medians are reported")
p.add_argument("--memory-texts", type=int, default=100_000,
               help="also embed this many titles with recjob alone and print its peak RSS (0: skip)")
a = p.parse_args()
os.environ["OMP_NUM_THREADS"] = os.environ["RAYON_NUM_THREADS"] = str(a.threads)
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(a.threads)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from titles import make_titles  # noqa: E402

titles = make_titles(a.texts)
tmp = tempfile.mkdtemp(prefix="bench-embed-")
env = dict(os.environ, RECJOB_LOG="info", RECJOB_LOG_FORMAT="json")


def recjob_embed(texts, name):
    """Run `recjob embed` on texts: (encoder seconds, whole-command seconds, peak RSS MB)."""
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), f"{tmp}/{name}.parquet")
    t = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-f", "%M", "target/debug/recjob", "embed", "--model", a.model,
                          "--input", f"{tmp}/{name}.parquet", "--column", "text",
                          "--output", f"{tmp}/{name}-out.parquet", "--device", "cpu"],
                         env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    # One "embedded texts" line per chunk of rows: the encoder's time is their sum.
    logs = [json.loads(l) for l in run.stderr.splitlines() if '"embedded texts"' in l]
    return sum(float(l["seconds"]) for l in logs), wall, int(run.stderr.strip().splitlines()[-1]) / 1024


model = SentenceTransformer(a.model, device="cpu")
model.encode(titles[:64])  # warm-up
ours_runs, theirs_runs = [], []
for _ in range(a.repeats):  # interleaved: recjob, sentence-transformers, recjob, ...
    ours_runs.append(recjob_embed(titles, "in"))
    t = time.perf_counter()
    ref = model.encode(titles, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    theirs_runs.append(time.perf_counter() - t)
ours = statistics.median(r[0] for r in ours_runs)
wall = statistics.median(r[1] for r in ours_runs)
peak_mb = max(r[2] for r in ours_runs)
theirs = statistics.median(theirs_runs)

got = np.stack(pq.read_table(f"{tmp}/in-out.parquet").column("embedding").to_numpy(zero_copy_only=False))
cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
print(f"texts={len(titles)} threads={a.threads} model={a.model} repeats={a.repeats} (medians)")
print(f"recjob embed: {len(titles) / ours:.0f} texts/s (encoder {ours:.2f} s: {', '.join(f'{r[0]:.2f}' for r in ours_runs)}; whole command {wall:.2f} s, peak RSS {peak_mb:.0f} MB)")
print(f"sentence-transformers {__import__('sentence_transformers').__version__} (torch {torch.__version__}, batch 64): {len(titles) / theirs:.0f} texts/s ({theirs:.2f} s: {', '.join(f'{t:.2f}' for t in theirs_runs)})")
print(f"ratio recjob/sentence-transformers: {theirs / ours:.2f}x")
print(f"min cosine between the two outputs: {cos.min():.7f}")
if a.memory_texts:
    big = make_titles(a.memory_texts)
    secs, wall, peak = recjob_embed(big, "big")
    print(f"recjob embed, {len(big)} titles: peak RSS {peak:.0f} MB, {len(big) / secs:.0f} texts/s ({wall:.0f} s whole command)")
