"""How many candidates the neighbour term touches a user: the work of its per-user part.

A user's candidates with a sum are every target item that keeps one of the user's window items
as a neighbour (README "The model", "Neighbours"). From a published night's `item_neighbors`
and the behavior partitions of its window, for users drawn at random among the window's users:

    .venv-synth/bin/python scripts/neighbor_candidates.py --root out/scale-100000-100000 \
        --behavior out/synth-100000-100000/behavior --lookback-days 60

Counts every window item whatever its weight and every target whether or not it is an eligible
candidate (available, not excluded): an upper bound, exact when all are. Needs numpy and pyarrow (the .venv-synth of
scripts/bench-scale.sh has both).
"""
import argparse
import datetime as dt
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="an output root whose last night had the term on")
    ap.add_argument("--behavior", required=True, help="the behavior input (dt=YYYY-MM-DD partitions)")
    ap.add_argument("--lookback-days", type=int, default=60)
    ap.add_argument("--users", type=int, default=2000, help="users drawn")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    night = sorted(Path(args.root, "item_neighbors").glob("dt=*"))[-1]
    date = dt.date.fromisoformat(night.name[3:])
    pairs = pq.read_table(night, columns=["item_id", "neighbor_id"])
    keepers = {}
    for target, source in zip(pairs.column("item_id").to_pylist(), pairs.column("neighbor_id").to_pylist()):
        keepers.setdefault(source, []).append(target)
    days = {str(date - dt.timedelta(days=d)) for d in range(1, args.lookback_days + 1)}
    files = [f for p in sorted(Path(args.behavior).glob("dt=*")) if p.name[3:] in days for f in sorted(p.glob("*.parquet"))]
    everyone = pc.unique(pa.chunked_array([pq.read_table(f, columns=["user_id"]).column("user_id") for f in files]))
    random.seed(args.seed)
    drawn = sorted(random.sample(sorted(everyone.to_pylist()), min(args.users, len(everyone))))
    history = {}
    for f in files:
        t = pq.read_table(f, columns=["user_id", "item_id"])
        t = t.filter(pc.is_in(t.column("user_id"), value_set=pa.array(drawn)))
        for u, i in zip(t.column("user_id").to_pylist(), t.column("item_id").to_pylist()):
            history.setdefault(u, set()).add(i)
    items = np.array([len(h) for h in history.values()])
    touched = np.array([len(set().union(*(keepers.get(i, []) for i in h))) for h in history.values()])
    print(f"{night}: {len(touched)} users drawn of {len(everyone)} in the window; window items a user: "
          f"mean {items.mean():.1f}; candidates with a sum a user: mean {touched.mean():.0f}, "
          f"median {np.median(touched):.0f}, 90th percentile {np.percentile(touched, 90):.0f}, max {touched.max()}")


if __name__ == "__main__":
    main()
