"""Benchmark texts: the first N distinct product/movie titles of the public datasets in
../shared/data (Online Retail, Amazon, MovieLens catalogs, in that order); past their distinct
titles, deterministic pairs of them. Used by bench_embed.py and gpu_check.py."""
import glob

import pyarrow.parquet as pq


def make_titles(n, root="../shared/data"):
    base, seen = [], set()
    for ds in ["online_retail", "amazon2018_small", "movielens_latest_small"]:
        f = sorted(glob.glob(f"{root}/{ds}/parquet/catalog/*/part-0.parquet"))[0]
        for t in pq.read_table(f, columns=["title"]).column(0).to_pylist():
            if t and t not in seen:
                seen.add(t)
                base.append(t)
    out = list(base[:n])
    while len(out) < n:
        out.append(f"{base[len(out) % 7919]} {base[(len(out) * 31) % 7919]}")
    return out
