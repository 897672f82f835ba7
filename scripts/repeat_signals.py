"""Which signal of the user's own history says best what they buy again tomorrow?

The implicit ALS peer of `bench_quality.py` (double precision, its rows and dates) scores the
validation dates of a dataset whose exclusions allow repeats, alone and with rho x f(u, i)
added for every item the user has a positive weight on in the window, for several signals f
and weights rho. What it printed on Online Retail is in BENCHMARKS.md ("The repeat term counts
days"); recjob's repeat term is `ln1p_days`. Validation dates only: nothing here looks at a
test date.

    .venv-quality/bin/python scripts/repeat_signals.py [--dataset online_retail]
        [--als '{"factors": 256, "alpha": 10.0, "regularization": 10.0}']
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_quality as bq  # noqa: E402


def signals(data, ds, win):
    """{name: sparse users x items of the window's matrix}, each f(u, i) >= 0."""
    d = win.d
    idx = data.rows(d - ds["lookback"] + 1, d, d)
    idx = idx[data.w[idx] > 0]
    n_items = data.n_items
    pair = data.u[idx].astype(np.int64) * n_items + data.i[idx]
    # Distinct (pair, day): the days on which the user had a positive-weight event with the item.
    pd = np.unique(np.stack([pair, data.day[idx]], axis=1), axis=0)
    keys, start, days = np.unique(pd[:, 0], return_index=True, return_counts=True)
    ages = (d + 1) - pd[:, 1] - 0.5  # days from the middle of the event's day to the window end
    decayed_days = np.add.reduceat(np.power(0.5, ages / ds["half_life"]), start)
    r = np.searchsorted(win.mat_users, keys // n_items)
    c = win.col_of[keys % n_items]
    shape = win.X_w.shape
    w = np.asarray(win.X_w[r, c]).ravel()  # the decayed weight w_ui
    w_max = np.asarray(win.X_w.max(axis=1).todense()).ravel()[r]
    m = lambda v: sp.csr_matrix((v, (r, c)), shape=shape)  # noqa: E731
    return {
        "weight_over_max": m(w / w_max),  # recjob's term before the change
        "weight_capped_5": m(np.minimum(w, 5.0) / 5.0),
        "decayed_days_capped_5": m(np.minimum(decayed_days, 5.0) / 5.0),
        "two_days_or_more": m((days >= 2).astype(float)),
        "days_capped_5": m(np.minimum(days, 5) / 5.0),
        "days_capped_10": m(np.minimum(days, 10) / 10.0),
        "ln1p_days": m(np.log1p(days) / np.log1p(10.0)),  # / ln 11: on the others' scale
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="online_retail")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                      "shared", "data"))
    ap.add_argument("--als", default='{"factors": 256, "alpha": 10.0, "regularization": 10.0}')
    ap.add_argument("--rho", default="0.05,0.2,0.4,0.8,1.6")
    args = ap.parse_args()
    ds = bq.DATASETS[args.dataset]
    if ds["policy"] != "allow_repeats":
        sys.exit(f"{args.dataset}: its exclusions remove every window item, a repeat term is moot")
    root = os.path.join(args.data_dir, args.dataset, "parquet")
    data = bq.Data(os.path.join(root, "behavior"), os.path.join(root, "catalog"), ds["weights"],
                   ds["available_column"])
    als = json.loads(args.als)
    rhos = [float(x) for x in args.rho.split(",")]

    def fit(name, rho):
        def f(win, _params):
            if "als" not in win._cache:
                win._cache["als"] = bq.fit_als(win, als)
                win._cache["signals"] = signals(data, ds, win)
            base = win._cache["als"]
            extra = win._cache["signals"].get(name)
            return lambda rows: base(rows) + (rho * extra[rows].toarray() if rho else 0.0)
        return f

    methods = [("als alone", None, 0.0)]
    for name in ["weight_over_max", "weight_capped_5", "decayed_days_capped_5",
                 "two_days_or_more", "days_capped_5", "days_capped_10", "ln1p_days"]:
        methods += [(f"{name} x {rho:g}", name, rho) for rho in rhos]
    for label, name, rho in methods:
        bq.FITS[label] = fit(name, rho)
    vf, vt = map(bq.day_of, ds["validation"])
    dates = bq.evaluated_dates(data, vf, vt, ds["lookback"])[::ds.get("val_every", 1)]
    t0 = time.time()
    acc = bq.replay(data, ds, vf, vt, [(m, m, {}) for m, _, _ in methods], 20, coverage=False,
                    only=set(dates))
    print(f"{args.dataset}: implicit ALS {als} plus rho x signal, {len(dates)} validation dates "
          f"({ds['validation'][0]}..{ds['validation'][1]}, every {ds.get('val_every', 1)})")
    for label, _, _ in methods:
        r, n = acc[label].mean("recall")
        nd, _ = acc[label].mean("ndcg")
        print(f"  {label:32s} recall@20 {r:.4f}  ndcg@20 {nd:.4f}")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
