"""Recommendation quality: peer baselines under recjob's own evaluation (make bench-quality).

For each dataset, every method is replayed day by day like `recjob backtest`: the lists made on
D-1 (trained on D-1's window) are evaluated against the behavior of D, and the figures are means
over the evaluated dates. Hyperparameters are chosen on validation dates and reported on test
dates that come after them. Figures go to BENCHMARKS.md "Recommendation quality".

recjob's definitions, replicated here (sql/prepare/*.sql, sql/evaluate/*.sql, src/stages/evaluate/,
src/kernels/popularity.rs, src/stages/recommend.rs):

- Window of run date d: behavior partitions [d - lookback + 1, d]. Valid rows: user, item and ts
  present, user not empty, ts before the end of its partition's day, event type in the weights
  map, item in the catalog snapshot (newest catalog dt <= d).
  Deduplicated on (user, item, event_type, ts, dt). Event weight = weights[type] *
  0.5^(age / half_life), age in days from the end (exclusive, midnight UTC) of d, never negative.
  w_ui = sum of the decayed weights of u's events on i.
- Active users: any valid event in the window; each gets a list of K items. Candidates: available
  catalog items (`available_column`, missing column or null = available). Exclusions:
  seen_in_window = every item the user had any event with in the window; allow_repeats = items
  with an event in the last repeat_after_days days (0: none). Users without a positive w_ui get
  the popularity list (recjob's fallback) whatever the method.
- Popularity: events per available item in the window (ties item_id ascending, items without
  events last), minus the user's exclusions.
- Ground truth G(u) of D: distinct items of u's valid events on D whose event type has a positive
  weight (a return is not a hit); `--truth all` counts every valid event (recjob's old default).
  Evaluated users: non-empty G(u) and a list made on D-1. recall@K = mean |R_K n G| / |G|;
  ndcg@K: binary gain, discount 1/log2(rank + 1), IDCG over min(|G|, K) hits.
- Evaluated dates: D in range with behavior, D-1 with behavior, at least one evaluated user.
- catalog_coverage@K (test only): distinct items in the first K of the lists made on each date
  d in range with behavior, for every active user of d, / available items of d; mean over those
  dates (recjob: "of D's own lists").

Hyperparameters: a grid, then coordinate stages around the best (see `stages()`; the popularity
list's horizon: the whole window, or its last 1, 3 or 7 days, `fit_popularity`; buy-again's
order: by decayed weight, or by the days the user had the item first), chosen by
validation ndcg@K (--select) on every N-th evaluated validation date (--val-every; 2 on
online_retail and MovieLens to fit 2 shared cores). Where repeats are allowed (online_retail),
each learned method also gets a `+buy_again` row: its list fused with the buy-again list (in
the order buy-again's own validation chose) by reciprocal rank fusion (--variants).

With --recjob, recjob is tuned the same way (`recjob_stages`; or --recjob-params fixes its
settings) and set against every peer date by date over the test dates (`print_paired`: mean
difference, 95 % bootstrap interval over dates, share of resamples with recjob ahead);
--compare does the same for saved --output files. --peer METHOD=JSON skips every search and
reports only the named peers, with those settings, on the test dates (the CI quality test runs
the strongest peer this way, tests/it/quality.rs). --report-dates DATASET=FROM..TO moves such
a fixed-settings report to other dates, e.g. earlier ones no choice has used (recall and
ndcg only: no coverage there).

Ranking inside a method: items of its training matrix (items with positive weight in the window)
by score descending, ties item_id ascending; candidates outside the matrix follow in popularity
order. Item ids compare as strings (byte order = code point order = recjob's). Scores are
snapped to a grid of `TIE` (2^-30) first, so that the ties of the mathematics stay ties: items
with identical columns, or a user whose items co-occur with nothing, score the same in exact
arithmetic, and BLAS's last bits, which differ between CPUs, would otherwise order them. (A
score whose noise straddles a grid line can still land on either side: rare, not impossible.) Implicit
ALS runs in double precision for the same reason (in single precision its scores differed
between CPUs by up to 3e-4 after 15 sweeps).

Run `python scripts/bench_quality.py --self-test` for the assert-based checks (hand-made tiny data,
EASE primal vs dual, and recjob's published popularity baselines when the data are present).
"""
import argparse
import concurrent.futures
import csv
import datetime as _dt
import glob
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # single-threaded BLAS: reproducible sums, polite on 2 cores

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as pds  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import scipy.linalg as sla  # noqa: E402
import scipy.sparse as sp  # noqa: E402

SEED = 20240607
# Scores closer than this are tied (ranking, module docstring). Between OpenBLAS's Haswell and
# Nehalem kernels EASE's scores differed by at most 8e-15 and double-precision ALS's by 1.1e-11
# (MovieLens). Real gaps below it are rare: none in the users' top 21 of Online Retail (RP3beta)
# or MovieLens (EASE, ALS), 24 of 666 on Amazon (EASE, lambda 200); BENCHMARKS.md.
TIE = 2.0 ** -30
DAY_S = 86400.0
EPOCH = _dt.date(1970, 1, 1)


def day_of(s):
    return (_dt.date.fromisoformat(s) - EPOCH).days


def iso(d):
    return (EPOCH + _dt.timedelta(days=int(d))).isoformat()


# --------------------------------------------------------------------------------------------
# Datasets and their settings (the --set lines of BENCHMARKS.md "Recommendation quality")
# --------------------------------------------------------------------------------------------

DATASETS = {
    "online_retail": dict(
        weights={"purchase": 1.0, "return": 0.0}, policy="allow_repeats", repeat_after_days=0,
        available_column="is_merchandise", lookback=60, half_life=14.0, val_every=2,
        validation=("2011-08-01", "2011-09-30"), test=("2011-10-01", "2011-12-09"),
        recjob_set=[]),
    "amazon2018_small": dict(
        weights={"purchase": 1.0, "return": 0.0, "rating": 1.0}, policy="seen_in_window",
        repeat_after_days=0, available_column="available", lookback=60, half_life=14.0,
        validation=("2016-08-01", "2016-11-30"), test=("2016-12-01", "2018-08-22"),
        recjob_set=["catalog.available_column=available", "events.weights.rating=1.0",
                    "exclusions.policy=seen_in_window"]),
    "movielens_latest_small": dict(
        weights={"purchase": 1.0, "return": 0.0, "rating": 1.0, "tag": 0.5},
        policy="seen_in_window", repeat_after_days=0, available_column="available",
        lookback=365, half_life=14.0, val_every=2,
        validation=("2017-06-01", "2017-12-31"), test=("2018-01-01", "2018-09-24"),
        recjob_set=["catalog.available_column=available", "events.weights.rating=1.0",
                    "events.weights.tag=0.5", "exclusions.policy=seen_in_window",
                    "window.lookback_days=365"]),
}
# jobs/nightly.toml's weights map has purchase and return; the --set lines add the others, so the
# peers use the same map (types absent from a dataset change nothing).


# --------------------------------------------------------------------------------------------
# Data: behavior and catalog snapshots, encoded once
# --------------------------------------------------------------------------------------------

class Data:
    """All behavior rows of a dataset, valid apart from the catalog check, deduplicated."""

    def __init__(self, behavior_root, catalog_root, weights, available_column):
        self.weights = dict(weights)
        bdirs = sorted(glob.glob(os.path.join(behavior_root, "dt=*")))
        self.behavior_days = set()
        for d in bdirs:
            if any(f for f in os.listdir(d) if not f.startswith((".", "_"))):
                self.behavior_days.add(day_of(os.path.basename(d)[3:]))
        t = pds.dataset(behavior_root, format="parquet", partitioning="hive").to_table(
            columns=["user_id", "item_id", "event_type", "ts", "dt"])
        users = pc.cast(t["user_id"], pa.string())
        items = pc.cast(t["item_id"], pa.string())
        types = t["event_type"]
        known = pa.array(sorted(self.weights), pa.string())
        keep = pc.and_(pc.and_(pc.is_valid(users), pc.is_valid(items)),
                       pc.and_(pc.is_valid(t["ts"]), pc.is_in(types, value_set=known)))
        keep = pc.and_(keep, pc.not_equal(users, ""))
        keep = pc.fill_null(keep, False)
        users, items, types = (pc.filter(c, keep) for c in (users, items, types))
        ts_us = pc.filter(t["ts"], keep).cast(pa.int64()).to_numpy()
        dts = pc.filter(t["dt"], keep).to_numpy(zero_copy_only=False)

        # Catalog snapshots: newest dt <= the run date.
        self.catalogs = []  # (day, item ids (sorted), available flags)
        cat_ids = set()
        for d in sorted(glob.glob(os.path.join(catalog_root, "dt=*"))):
            files = sorted(f for f in glob.glob(os.path.join(d, "*")) if not
                           os.path.basename(f).startswith((".", "_")))
            if not files:
                continue
            ct = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
            ids = pc.cast(ct["item_id"], pa.string())
            if available_column in ct.schema.names:
                av = pc.fill_null(ct[available_column], True).to_numpy(zero_copy_only=False)
            else:
                av = np.ones(len(ids), bool)
            ok = pc.is_valid(ids).to_numpy(zero_copy_only=False)
            ids = np.array(ids.to_pylist(), dtype=object)[ok]
            self.catalogs.append((day_of(os.path.basename(d)[3:]), ids, av[ok].astype(bool)))
            cat_ids.update(ids.tolist())
        if not self.catalogs:
            raise SystemExit(f"no catalog partition under {catalog_root}")

        # Codes in string order: code order = item_id order = user_id order.
        u_str = users.to_pylist()
        i_str = items.to_pylist()
        self.user_ids = np.array(sorted(set(u_str)), dtype=object)
        self.item_ids = np.array(sorted(set(i_str) | cat_ids), dtype=object)
        u_code = {s: k for k, s in enumerate(self.user_ids.tolist())}
        i_code = {s: k for k, s in enumerate(self.item_ids.tolist())}
        self.n_users, self.n_items = len(self.user_ids), len(self.item_ids)
        type_names = sorted(self.weights)
        type_code = {s: k for k, s in enumerate(type_names)}
        self.type_weight = np.array([self.weights[s] for s in type_names])
        u = np.fromiter((u_code[s] for s in u_str), np.int64, len(u_str))
        i = np.fromiter((i_code[s] for s in i_str), np.int64, len(i_str))
        ty = np.fromiter((type_code[s] for s in types.to_pylist()), np.int64, len(u_str))
        day = np.array([day_of(s) for s in dts], np.int64) if len(dts) else np.zeros(0, np.int64)
        # An event after the end of its partition's day is invalid.
        ok = ts_us < (day + 1) * DAY_S * 1_000_000
        u, i, ty, ts_us, day = u[ok], i[ok], ty[ok], ts_us[ok], day[ok]
        # SELECT DISTINCT user_id, item_id, event_type, ts, dt (+ weight, a function of the type)
        order = np.lexsort((ts_us, ty, i, u, day))
        u, i, ty, ts_us, day = u[order], i[order], ty[order], ts_us[order], day[order]
        first = np.ones(len(u), bool)
        first[1:] = ((u[1:] != u[:-1]) | (i[1:] != i[:-1]) | (ty[1:] != ty[:-1])
                     | (ts_us[1:] != ts_us[:-1]) | (day[1:] != day[:-1]))
        self.u, self.i, self.ty, self.day = u[first], i[first], ty[first], day[first]
        self.ts = ts_us[first].astype(np.float64) / 1e6  # date_part('epoch', ts)
        self.w = self.type_weight[self.ty]
        self.positive_types = [s for s in type_names if self.weights[s] > 0]

        self.in_catalog, self.available = [], []
        for cday, ids, av in self.catalogs:
            codes = np.array([i_code[s] for s in ids.tolist()], np.int64)
            m = np.zeros(self.n_items, bool)
            m[codes] = True
            a = np.zeros(self.n_items, bool)
            # DISTINCT item_id WHERE available: an id listed twice is available if any row is.
            a[codes[av]] = True
            self.in_catalog.append(m)
            self.available.append(a)
        self.cat_days = np.array([c[0] for c in self.catalogs])

    def snapshot(self, d):
        k = np.searchsorted(self.cat_days, d, side="right") - 1
        if k < 0:
            raise ValueError(f"no catalog partition dt <= {iso(d)}")
        return k

    def rows(self, first, last, d_snapshot):
        lo = np.searchsorted(self.day, first, side="left")
        hi = np.searchsorted(self.day, last, side="right")
        idx = np.arange(lo, hi)
        return idx[self.in_catalog[self.snapshot(d_snapshot)][self.i[idx]]]

    def truth(self, d, all_types=False):
        """G(u) of day d: {user code: set of item codes}."""
        idx = self.rows(d, d, d)
        if not all_types:
            idx = idx[self.w[idx] > 0]
        g = {}
        for uu, ii in zip(self.u[idx].tolist(), self.i[idx].tolist()):
            g.setdefault(uu, set()).add(ii)
        return g


class Window:
    """What every method sees of the training window of run date d."""

    def __init__(self, data, d, lookback, half_life, policy, repeat_after_days):
        self.d = d
        self.data = data
        idx = data.rows(d - lookback + 1, d, d)
        n_items = data.n_items
        self.available = data.available[data.snapshot(d)]
        end = float(d + 1) * DAY_S
        u, i, ts = data.u[idx], data.i[idx], data.ts[idx]
        dec = data.w[idx] * np.power(0.5, np.maximum(0.0, end - ts) / DAY_S / half_life)
        self.active = np.unique(u)
        # Popularity: events per available item (all valid event types), ties by item_id.
        counts = np.bincount(i, minlength=n_items)
        cand = np.flatnonzero(self.available)
        self.pop_order = cand[np.lexsort((cand, -counts[cand]))]
        self.counts = counts
        self.n_candidates = len(cand)
        # Interactions w_ui.
        key = u * n_items + i
        keys, inv = np.unique(key, return_inverse=True)
        wui = np.bincount(inv, weights=dec)
        pu, pi = keys // n_items, keys % n_items
        # Exclusions.
        if policy == "seen_in_window":
            ex = keys
        elif policy == "allow_repeats":
            cut = end - DAY_S * repeat_after_days
            ex = np.unique(key[ts >= cut])
        else:
            raise ValueError(policy)
        self.ex_user, self.ex_item = ex // n_items, ex % n_items  # sorted by user, then item
        # Training matrix: users and items with positive weight.
        pos = wui > 0
        self.pu, self.pi, self.pw = pu[pos], pi[pos], wui[pos]
        self.mat_users = np.unique(self.pu)
        self.mat_items = np.unique(self.pi)  # sorted codes: column order = item_id order
        self.row_of = {x: k for k, x in enumerate(self.mat_users.tolist())}
        self.col_of = np.full(n_items, -1, np.int64)
        self.col_of[self.mat_items] = np.arange(len(self.mat_items))
        r = np.searchsorted(self.mat_users, self.pu)
        c = self.col_of[self.pi]
        shape = (len(self.mat_users), len(self.mat_items))
        self.X_w = sp.csr_matrix((self.pw, (r, c)), shape=shape)
        self.X_b = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=shape)
        # Days of the window on which the user had a positive-weight event with the item (the
        # buy-again peer's {"order": "days"}; recjob's repeat term counts the same days).
        ev = data.w[idx] > 0
        day_keys = np.unique(np.stack([key[ev], (ts[ev] // DAY_S).astype(np.int64)], axis=1), axis=0)
        dk, nd = np.unique(day_keys[:, 0], return_counts=True)
        self.X_days = sp.csr_matrix((nd[np.searchsorted(dk, keys[pos])].astype(float), (r, c)),
                                    shape=shape)
        self._cache = {}  # per-window work shared by configurations (EASE, kNN)

    def excluded(self, user):
        lo = np.searchsorted(self.ex_user, user, side="left")
        hi = np.searchsorted(self.ex_user, user, side="right")
        return self.ex_item[lo:hi]

    def own_items(self, user, order="weight"):
        """The user's positive-weight window items by w_ui descending, ties item_id; with order
        "days", by the days they had the item first (then w_ui, then item_id)."""
        r = self.row_of.get(user)
        if r is None:
            return np.zeros(0, np.int64)
        row = self.X_w.getrow(r)
        cols, vals = row.indices, row.data
        items = self.mat_items[cols]
        if order == "days":
            days = self.X_days.getrow(r)
            assert (days.indices == cols).all()
            return items[np.lexsort((items, -vals, -days.data))]
        return items[np.lexsort((items, -vals))]


# --------------------------------------------------------------------------------------------
# Lists
# --------------------------------------------------------------------------------------------

def popular_list(win, excluded, k, skip=(), order=None):
    out = []
    excl = set(excluded.tolist()) | set(skip)
    for it in win.pop_order if order is None else order:
        if len(out) == k:
            break
        if it not in excl:
            out.append(int(it))
    return out


def rank_rows(win, users, scores, k):
    """Lists for `users` (all with a matrix row) from scores over win.mat_items."""
    cand_cols = win.available[win.mat_items]
    lists = []
    for n, user in enumerate(users):
        s = np.asarray(scores[n], dtype=np.float64).copy()
        s[~cand_cols] = -np.inf
        excl = win.excluded(user)
        if len(excl):
            c = win.col_of[excl]
            s[c[c >= 0]] = -np.inf
        finite = np.isfinite(s)
        s[finite] = np.round(s[finite] / TIE)  # ties stay ties whatever the CPU
        nf = int(finite.sum())
        if nf > k:
            kth = -np.partition(-s, k - 1)[k - 1]
            sel = np.flatnonzero(s >= kth)
        else:
            sel = np.flatnonzero(finite)
        order = np.lexsort((sel, -s[sel]))  # column order = item_id order
        top = win.mat_items[sel[order[:k]]].tolist()
        if len(top) < k:  # the rest of the candidates, in popularity order
            top += popular_list(win, excl, k - len(top), skip=set(top) | set(win.mat_items.tolist()))
        lists.append(top)
    return lists


def make_lists(win, method, model, users, k):
    """{user: list} for `users`; users without a positive weight get the popularity list."""
    out = {}
    personal = [u for u in users if u in win.row_of]
    for u in users:
        if u not in win.row_of:
            out[u] = popular_list(win, win.excluded(u), k)
    if not personal:
        return out
    if method == "popularity":  # model: fit_popularity's order (None: the window's)
        for u in personal:
            out[u] = popular_list(win, win.excluded(u), k, order=model)
        return out
    if method == "buy_again":
        for u in personal:
            excl = win.excluded(u)
            es = set(excl.tolist())
            own = [int(x) for x in win.own_items(u, model) if int(x) not in es
                   and win.available[x]][:k]
            out[u] = own + popular_list(win, excl, k - len(own), skip=own)
        return out
    rows = np.array([win.row_of[u] for u in personal])
    for start in range(0, len(rows), 512):
        chunk = rows[start:start + 512]
        scores = model(chunk)
        for u, lst in zip(personal[start:start + 512], rank_rows(win, personal[start:start + 512],
                                                                  scores, k)):
            out[u] = lst
    return out


RRF_C = 60


def fuse_rrf(a, b, k):
    """Reciprocal rank fusion (Cormack, Clarke & Buettcher 2009) of two lists: score(i) = sum
    over the lists holding i of 1 / (60 + rank); ties item_id ascending."""
    score = {}
    for lst in (a, b):
        for r, it in enumerate(lst, start=1):
            score[it] = score.get(it, 0.0) + 1.0 / (RRF_C + r)
    return sorted(score, key=lambda it: (-score[it], it))[:k]


# --------------------------------------------------------------------------------------------
# Methods: fit(win, params) -> score function rows -> dense scores over win.mat_items
# --------------------------------------------------------------------------------------------

def fit_popularity(win, p):
    """The popularity list's order with {"days": N}: available items by their events on the
    window's last N days (ties: events in the window, then item_id), what is in demand now;
    {}: None, the window's order (recjob's baseline and fallback)."""
    if "days" not in p:
        return None
    data = win.data
    idx = data.rows(win.d - p["days"] + 1, win.d, win.d)
    recent = np.bincount(data.i[idx], minlength=data.n_items)
    cand = np.flatnonzero(win.available)
    return cand[np.lexsort((cand, -win.counts[cand], -recent[cand]))]


def fit_als(win, p):
    from implicit.cpu.als import AlternatingLeastSquares
    C = win.X_w.tocsr(copy=True)
    C.data = 1.0 + p["alpha"] * C.data  # c_ui = 1 + alpha w_ui (implicit: c = value)
    m = AlternatingLeastSquares(factors=p["factors"], regularization=p["regularization"], alpha=1.0,
                                iterations=p.get("iterations", 15), num_threads=1,
                                random_state=SEED, calculate_training_loss=False,
                                dtype=np.float64)  # float32 factors differ between CPUs
    m.fit(C, show_progress=False)
    U = np.asarray(m.user_factors, np.float64)
    V = np.asarray(m.item_factors, np.float64)
    return lambda rows: U[rows] @ V.T


class Ease:
    """EASE (Steck 2019): B = I - P diag(1/diag P), P = (X'X + lam I)^-1, scores X[rows] B.
    One eigendecomposition per matrix serves every lambda: of X'X (primal), or of XX' when there
    are fewer users than items (dual: P = (I - X' (lam I + XX')^-1 X) / lam)."""

    def __init__(self, X, dual=None):
        X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        self.X = X
        n_u, n_i = X.shape
        self.dual = (n_u < n_i) if dual is None else dual
        if self.dual:
            self.e, U = sla.eigh(X @ X.T, driver="evd")
            self.Q = U.T @ X  # P = (I - Q' diag(1/(e + lam)) Q) / lam
            self.Q2 = self.Q * self.Q
        else:
            self.e, self.V = sla.eigh(X.T @ X, driver="evd")  # P = V diag(1/(e + lam)) V'
            self.V2 = self.V * self.V

    def scores(self, lam, rows):
        Xr = self.X[rows]
        f = 1.0 / (np.maximum(self.e, 0.0) + lam)
        if self.dual:
            dP = (1.0 - f @ self.Q2) / lam
            XrP = (Xr - ((Xr @ self.Q.T) * f) @ self.Q) / lam
        else:
            dP = self.V2 @ f
            XrP = ((Xr @ self.V) * f) @ self.V.T
        return Xr - XrP / dP


def ease_scores(X, lam, rows, dual=None):
    return Ease(X, dual).scores(lam, rows)


def fit_ease(win, p):
    cache = win._cache.setdefault("ease", {})
    if p["input"] not in cache:
        cache[p["input"]] = Ease(win.X_b if p["input"] == "binary" else win.X_w)
    e = cache[p["input"]]
    return lambda rows: e.scores(p["lambda"], rows)


def keep_top_per_column(W, k):
    """Keep the k largest entries of each column (target item), zero the rest."""
    if k is None or k >= W.shape[0]:
        return W
    Wt = np.ascontiguousarray(W.T)  # one row per target item
    idx = np.argpartition(-Wt, k - 1, axis=1)[:, :k]
    out = np.zeros_like(Wt)
    r = np.arange(Wt.shape[0])[:, None]
    out[r, idx] = Wt[r, idx]
    return np.ascontiguousarray(out.T)


def fit_rp3beta(win, p):
    """RP3beta (Paudel et al. 2017): W_ij = sum_u P(i->u)^a P(u->j)^a / deg(j)^b on the binary
    user-item graph (3-step walk user->item->user->item), top-k per target item."""
    X = win.X_b
    cache = win._cache.setdefault("rp3", {})
    if p["alpha"] not in cache:
        deg_u = np.asarray(X.sum(axis=1)).ravel()
        deg_i = np.asarray(X.sum(axis=0)).ravel()
        Pui = (sp.diags(1.0 / deg_u) @ X).tocsr()  # user -> item
        Piu = (sp.diags(1.0 / deg_i) @ X.T).tocsr()  # item -> user
        if p["alpha"] != 1.0:
            Pui, Piu = Pui.power(p["alpha"]), Piu.power(p["alpha"])
        cache[p["alpha"]] = ((Piu @ Pui).toarray(), deg_i)
    W, deg_i = cache[p["alpha"]]
    W = keep_top_per_column(W / np.power(deg_i, p["beta"])[None, :], p["neighbours"])
    Xs = X.tocsr()
    return lambda rows: np.asarray(Xs[rows] @ W)


def fit_itemknn(win, p):
    """Item-kNN cosine: s_ij = x_i.x_j / (|x_i| |x_j| + shrink), no self-similarity, top-k per
    target item; score(u, j) = sum_i x_ui s_ij."""
    cache = win._cache.setdefault("knn", {})
    if p["input"] not in cache:
        X = (win.X_b if p["input"] == "binary" else win.X_w).tocsc()
        G = (X.T @ X).toarray()
        cache[p["input"]] = (X.tocsr(), G, np.sqrt(np.diag(G)))
    Xr, G, norms = cache[p["input"]]
    S = G / (np.outer(norms, norms) + p["shrink"] + 1e-12)
    np.fill_diagonal(S, 0.0)
    S = keep_top_per_column(S, p["neighbours"])
    return lambda rows: np.asarray(Xr[rows] @ S)


VARIANT = "+buy_again"  # the method's list fused with the buy-again list (fuse_rrf)
FITS = {"popularity": fit_popularity, "buy_again": lambda win, p: p.get("order", "weight"),
        "als": fit_als, "ease": fit_ease, "rp3beta": fit_rp3beta,
        "itemknn": fit_itemknn}
POPULARITY_DAYS = [{"days": n} for n in (1, 3, 7)]
BUY_AGAIN_ORDERS = [{"order": "days"}]  # beside {}: by decayed weight
METHODS = ["popularity", "buy_again", "als", "ease", "rp3beta", "itemknn"]


def stages(quick=False):
    """Hyperparameter search per method: stage 1 is a grid; each later stage varies some keys
    around the best configuration so far (coordinate search, to fit 2 shared cores). The best
    configuration over all stages on the validation dates is the one reported on the test dates.
    ALS: confidence c = 1 + alpha w (implicit, CG solver, 15 iterations)."""
    if quick:
        return {
            "als": [[dict(factors=64, alpha=10.0, regularization=1.0)]],
            "ease": [[{"input": "binary", "lambda": 100.0}]],
            "rp3beta": [[dict(alpha=1.0, beta=0.3, neighbours=None)]],
            "itemknn": [[dict(input="binary", shrink=10.0, neighbours=None)]],
        }
    return {
        "als": [
            [dict(factors=64, alpha=a, regularization=1.0) for a in (1.0, 10.0, 40.0)],
            lambda b: [dict(b, regularization=r) for r in (0.1, 10.0)],
            lambda b: [dict(b, factors=f) for f in (128, 256)],
        ],
        "ease": [  # one eigendecomposition per input serves all lambdas
            [{"input": x, "lambda": lam} for x, lam in
             itertools.product(["binary", "weighted"], [1.0, 10.0, 50.0, 200.0, 1000.0])],
        ],
        "rp3beta": [
            [dict(alpha=a, beta=b, neighbours=None) for a, b in
             itertools.product([0.5, 1.0], [0.0, 0.3, 0.6])],
            lambda b: [dict(b, neighbours=n) for n in (50, 200)],
        ],
        "itemknn": [
            [dict(input=x, shrink=sh, neighbours=None) for x, sh in
             itertools.product(["binary", "weighted"], [0.0, 10.0, 100.0])],
            lambda b: [dict(b, neighbours=n) for n in (50, 200)],
        ],
    }


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def user_metrics(lst, g, k):
    hits = [r for r, it in enumerate(lst[:k], start=1) if it in g]
    dcg = sum(1.0 / math.log2(r + 1.0) for r in hits)
    idcg = sum(1.0 / math.log2(r + 1.0) for r in range(1, min(len(g), k) + 1))
    return len(hits) / len(g), dcg / idcg


class Acc:
    """Means over dates of per-date means (like `recjob backtest`), and each date's value."""

    def __init__(self):
        self.sums = {}
        self.daily = {}

    def add(self, metric, value, date):
        s = self.sums.setdefault(metric, [0.0, 0])
        s[0] += value
        s[1] += 1
        self.daily.setdefault(metric, {})[iso(date)] = value

    def mean(self, metric):
        s = self.sums.get(metric)
        return (s[0] / s[1], s[1]) if s and s[1] else (None, 0)


def evaluated_dates(data, first, last, lookback, all_types=False):
    """Dates D in [first, last] that `recjob backtest` evaluates: D and D-1 have behavior, and
    some user with G(u) non-empty is active in D-1's window."""
    out = []
    for d in range(first, last + 1):
        if d in data.behavior_days and d - 1 in data.behavior_days:
            g = data.truth(d, all_types)
            if g and np.isin(np.fromiter(g, np.int64),
                             data.u[data.rows(d - lookback, d - 1, d - 1)]).any():
                out.append(d)
    return out


def replay(data, ds, first, last, methods, k, coverage, all_types=False, log=None, only=None,
           again=None):
    """Replay dates [first, last]. methods: list of (name, method, params). Returns {name: Acc}.
    only: evaluate only these dates (and compute lists only where needed), no coverage.
    again: the buy-again params the +buy_again variants fuse with (None: {}, by decayed weight)."""
    acc = {name: Acc() for name, _, _ in methods}
    d = first - 1
    while d <= last:
        if d not in data.behavior_days:
            d += 1
            continue
        wanted = d + 1 <= last and d + 1 in data.behavior_days and (only is None or d + 1 in only)
        truth_next = data.truth(d + 1, all_types) if wanted else {}
        ev_truth = truth_next  # evaluated users of d+1 must have a list made on d
        need_cov = coverage and d >= first
        if not ev_truth and not need_cov:
            d += 1
            continue
        t0 = time.time()
        win = Window(data, d, ds["lookback"], ds["half_life"], ds["policy"], ds["repeat_after_days"])
        active = set(win.active.tolist())
        evaluated = sorted(u for u in ev_truth if u in active)
        users = win.active.tolist() if need_cov else evaluated
        made = {}

        def lists_of(method, params):
            key = (method, json.dumps(params, sort_keys=True))
            if key not in made:
                if method.endswith(VARIANT):
                    base = lists_of(method[:-len(VARIANT)], params)
                    own = lists_of("buy_again", again or {})
                    made[key] = {u: fuse_rrf(base[u], own[u], k) for u in users}
                else:
                    fit = FITS.get(method)
                    made[key] = make_lists(win, method, fit(win, params) if fit else None, users, k)
            return made[key]

        for name, method, params in methods:
            lists = lists_of(method, params)
            if need_cov:
                items = set()
                for u in users:
                    items.update(lists[u][:k])
                acc[name].add("catalog_coverage", len(items) / max(win.n_candidates, 1), d)
            if evaluated:
                rs = [user_metrics(lists[u], ev_truth[u], k) for u in evaluated]
                acc[name].add("recall", sum(r for r, _ in rs) / len(rs), d + 1)
                acc[name].add("ndcg", sum(n for _, n in rs) / len(rs), d + 1)
                acc[name].add("n_users", len(rs), d + 1)
        if log:
            log(f"  {iso(d)}: {len(win.active)} active, {len(evaluated)} evaluated on {iso(d + 1)}, "
                f"{len(win.mat_items)} items in the matrix, {time.time() - t0:.1f} s")
        d += 1
    return acc


def pname(method, params):
    return method + ("" if not params else "[" + ",".join(f"{a}={b}" for a, b in params.items()) + "]")


def best(rows, select):
    """The row with the best validation `select` metric (the other breaks ties; the first wins a
    full tie), among rows that have one."""
    other = "ndcg" if select == "recall" else "recall"
    return max((r for r in rows if r["recall"] is not None),
               key=lambda r: (r[select], r[other]))


def run_dataset(name, args, log):
    ds = DATASETS[name]
    lookback = args.lookback.get(name, ds["lookback"])
    ds = dict(ds, lookback=lookback)
    root = os.path.join(args.data_dir, name, "parquet")
    t0 = time.time()
    data = Data(os.path.join(root, "behavior"), os.path.join(root, "catalog"), ds["weights"],
                ds["available_column"])
    log(f"{name}: {len(data.u)} valid-type events, {data.n_users} users, {data.n_items} items, "
        f"read in {time.time() - t0:.1f} s; lookback {lookback} d, half-life {ds['half_life']} d, "
        f"policy {ds['policy']}, truth types {data.positive_types}")
    k = args.k
    vf, vt = map(day_of, ds["validation"])
    tf, tt = map(day_of, ds["test"])
    st = stages(args.quick)
    grid_rows = []
    every = args.val_every.get(name, ds.get("val_every", 1))
    val_dates = evaluated_dates(data, vf, vt, lookback)[::every]
    log(f"{name}: validation {ds['validation'][0]}..{ds['validation'][1]}: {len(val_dates)} dates "
        f"(every {every} of the evaluated dates)")

    def validate(cands, again):
        t1 = time.time()
        acc = replay(data, ds, vf, vt, cands, k, coverage=False, only=set(val_dates), again=again)
        for cname, method, params in cands:
            r, n = acc[cname].mean("recall")
            nd, _ = acc[cname].mean("ndcg")
            grid_rows.append(dict(dataset=name, kind="validation_grid", method=method,
                                  params=params, recall=r, ndcg=nd, days=n, val_every=every))
            log(f"  val {cname:70s} recall@{k} {fmt(r)} ndcg@{k} {fmt(nd)} ({n} days)")
        log(f"  ({len(cands)} configurations, {time.time() - t1:.0f} s)")

    def best_of(method):
        return best([r for r in grid_rows if r["method"] == method], args.select)

    learned = [m for m in ("als", "ease", "rp3beta", "itemknn") if m in args.methods]
    # +buy_again variants where repeats are allowed (with seen_in_window, buy-again = popularity).
    variants = [m + VARIANT for m in learned] if (
        args.variants == "on" or (args.variants == "auto" and ds["policy"] == "allow_repeats")) else []
    if args.peer:  # no search: the given settings, on the test dates only
        methods = list(args.peer)
        for m in methods:
            if m not in METHODS and not (m.endswith(VARIANT) and m[:-len(VARIANT)] in METHODS):
                raise SystemExit(f"--peer {m}: no such method (known: {METHODS}, "
                                 f"and each with {VARIANT})")
        chosen = {m: dict(params=p, recall=None, ndcg=None, days=0) for m, p in args.peer.items()}
        again = args.peer.get("buy_again", {})
    else:
        methods = args.methods + variants
        cands = [(m, m, {}) for m in ("popularity", "buy_again") if m in args.methods]
        if "popularity" in args.methods and not args.quick:  # its horizon, tuned like the rest
            cands += [(pname("popularity", p), "popularity", p) for p in POPULARITY_DAYS]
        if "buy_again" in args.methods and not args.quick:  # its order, tuned like the rest
            cands += [(pname("buy_again", p), "buy_again", p) for p in BUY_AGAIN_ORDERS]
        # First the simple lists: the +buy_again variants fuse with buy-again's chosen order.
        if cands:
            validate(cands, None)
        again = best_of("buy_again")["params"] if "buy_again" in args.methods else {}
        cands = []
        for m in learned:
            cands += [(pname(m, p), m, p) for p in st[m][0]]
        cands += [(pname(m + VARIANT, p), m + VARIANT, p) for _, m, p in list(cands) if m in learned
                  and m + VARIANT in variants]
        validate(cands, again)
        for n_stage in range(1, max([len(st[m]) for m in learned] + [1])):
            seen = {(r["method"], json.dumps(r["params"], sort_keys=True)) for r in grid_rows}
            cands = []
            for m in learned:
                if n_stage < len(st[m]):
                    for p in st[m][n_stage](best_of(m)["params"]):
                        if (m, json.dumps(p, sort_keys=True)) not in seen:
                            cands.append((pname(m, p), m, p))
                            if m + VARIANT in variants:  # the variant follows its method's search
                                cands.append((pname(m + VARIANT, p), m + VARIANT, p))
            if cands:
                validate(cands, again)
        chosen = {m: best_of(m) for m in methods}
    t_val = time.time() - t0

    log(f"{name}: test {ds['test'][0]}..{ds['test'][1]} with the chosen configurations")
    t1 = time.time()
    # Coverage needs every active user's list on every date; a check on other dates skips it.
    acc = replay(data, ds, tf, tt, [(m, m, chosen[m]["params"]) for m in methods], k,
                 coverage=name not in args.report_dates, log=log if args.verbose else None,
                 again=again)
    results = []
    for m in methods:
        r, n = acc[m].mean("recall")
        nd, _ = acc[m].mean("ndcg")
        cov, ncov = acc[m].mean("catalog_coverage")
        nu, _ = acc[m].mean("n_users")
        results.append(dict(
            dataset=name, kind="test", method=m, params=chosen[m]["params"],
            lookback_days=lookback, half_life_days=ds["half_life"], policy=ds["policy"],
            truth_types=data.positive_types,
            validation=f"{ds['validation'][0]}..{ds['validation'][1]}",
            test=f"{ds['test'][0]}..{ds['test'][1]}",
            val_recall=chosen[m]["recall"], val_ndcg=chosen[m]["ndcg"], val_days=chosen[m]["days"],
            val_every=every, select=f"{args.select}@{k}",
            test_recall=r, test_ndcg=nd, test_coverage=cov, test_days=n, coverage_days=ncov,
            mean_evaluated_users=nu, k=k, fused_with=again if m.endswith(VARIANT) else None,
            test_daily={x: acc[m].daily.get(x, {}) for x in ("recall", "ndcg")}))
    log(f"{name}: validation {t_val:.0f} s, test {time.time() - t1:.0f} s")
    return results, grid_rows


# --------------------------------------------------------------------------------------------
# recjob beside the peers (optional), tuned the same way
# --------------------------------------------------------------------------------------------

# The neighbour term's stages (added 2026-12-07, after the others): its weight, then, when it
# is on, the neighbours per item beside the default 50 (the peers' item-kNN searches 50 and 200).
NEIGHBOR_STAGES = [
    lambda b: [dict(b, neighbor_weight=g) for g in (0.03, 0.1, 0.3, 1.0)],
    lambda b: [dict(b, neighbors=n) for n in (20, 200)] if b.get("neighbor_weight", 0) > 0 else [],
]


def recjob_stages(policy, quick=False, start=None):
    """recjob's `hybrid.*` settings, searched like the peers' (coordinate stages on the validation
    dates): the behavior model with its alpha or lambda (ALS at alpha 10, 1, 40 with lambda 1,
    the first being the settings shipped before this search chose Online Retail's; low-rank EASE
    at lambda 50, 200, 1000), then lambda x0.1 and x10 around the best, then the text and
    popularity weights jointly (every pair of the two grids: the weights trade against each
    other, and one at a time the search stopped short of the better corners), where repeats
    are allowed the repeat weight (0, 0.03 or 0.3 beside the shipped 0.1), then the number of
    factors (32, 64 or 256 beside the shipped 128; the peers' ALS searches it too), and last
    the neighbour term (`NEIGHBOR_STAGES`). Unlisted keys keep `jobs/nightly.toml`'s values.
    `start`: the setting an earlier full search chose before the neighbour stages existed; the
    search then runs only those stages from it (the earlier stages are deterministic, so the
    full search would reach the same start)."""
    if quick:
        return [[{}]]
    if start is not None:
        return [[start]] + NEIGHBOR_STAGES
    st = [
        [dict(alpha=a, regularization=1.0) for a in (10.0, 1.0, 40.0)]
        + [dict(model="ease", regularization=lam) for lam in (50.0, 200.0, 1000.0)],
        lambda b: [dict(b, regularization=b["regularization"] * m) for m in (0.1, 10.0)],
        lambda b: [dict(b, text_weight=t, popularity_weight=p)
                   for t in (0.0, 0.03, 0.1, 0.3, 1.0) for p in (0.0, 0.03, 0.3, 1.0)],
    ]
    if policy == "allow_repeats":
        st.append(lambda b: [dict(b, repeat_weight=r) for r in (0.0, 0.03, 0.3)])
    st.append(lambda b: [dict(b, factors=f) for f in (32, 64, 256)])
    return st + NEIGHBOR_STAGES


def recjob_sets(args, name, truth_types, root):
    """The --set lines of every recjob command on a dataset: its inputs, event weights, exclusion
    policy and truth types, and an output root whose embedding cache the backtests share."""
    ds = DATASETS[name]
    data = os.path.abspath(os.path.join(args.data_dir, name, "parquet"))
    sets = [f"input.behavior={data}/behavior", f"input.catalog={data}/catalog",
            f"output.root={root}"] + ds["recjob_set"]
    if name in args.lookback:
        sets = [s for s in sets if not s.startswith("window.lookback_days=")]
        sets.append(f"window.lookback_days={args.lookback[name]}")
    sets.append("events.truth_types=[" + ",".join(json.dumps(t) for t in truth_types) + "]")
    return sets


def run_recjob(args, sub, sets, log):
    cmd = [args.recjob] + sub + ["--config", args.config]
    for s in sets:
        cmd += ["--set", s]
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"recjob {sub[0]} failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout


def recjob_rows(args, name, truth_types, log):
    """recjob tuned like a peer: `recjob run` of the last test date fills an embedding cache (the
    way a nightly output root has one), `recjob backtest` of the validation dates per candidate
    setting, then `recjob backtest` of the test dates with the chosen one."""
    ds = DATASETS[name]
    tmp = tempfile.mkdtemp(prefix="bench-quality-recjob-")
    k = str(args.k)
    try:
        base = recjob_sets(args, name, truth_types, os.path.join(tmp, "out"))
        # The first validation dates of a small shop can have a few invalid rows in a tiny window.
        base.append("input.max_invalid_fraction=0.5")
        run_recjob(args, ["run", "--date", ds["test"][1]], base, log)

        def backtest(first, last, params):
            sets = base + [f"hybrid.{a}={b}" for a, b in params.items()]
            # Backtests may run side by side (--recjob-jobs): each writes its own tables.
            run_dir = tempfile.mkdtemp(dir=tmp)
            daily = os.path.join(run_dir, "daily.parquet")
            out = run_recjob(args, ["backtest", "--from", first, "--to", last, "--output",
                                    os.path.join(run_dir, "backtest.parquet"), "--daily", daily],
                             sets, log)
            t = parse_backtest_table(out)
            days = pq.read_table(daily).filter(pc.equal(pc.field("k"), int(k))).filter(
                pc.equal(pc.field("segment"), "all")).to_pylist()
            by_day = lambda col: {x: {r["from_dt"]: r[col] for r in days  # noqa: E731
                                      if r["metric"] == x and r[col] is not None}
                                  for x in ("recall", "ndcg")}
            get = lambda m, col="model": t.get((m, k), {}).get(col)  # noqa: E731
            return dict(recall=get("recall"), ndcg=get("ndcg"),
                        coverage=get("catalog_coverage"), days=t.get(("recall", k), {}).get("days"),
                        baseline_recall=get("recall", "baseline"),
                        baseline_ndcg=get("ndcg", "baseline"),
                        baseline_coverage=get("catalog_coverage", "baseline"),
                        daily=by_day("model"), baseline_daily=by_day("baseline"))

        t0 = time.time()
        grid, seen = [], set()
        fixed = args.recjob_params.get(name)
        stages_ = [] if fixed is not None else recjob_stages(
            ds["policy"], args.quick, args.recjob_from.get(name))
        for n, stage in enumerate(stages_):
            cands = []
            for params in (stage if n == 0 else stage(best(grid, args.select)["params"])):
                key = json.dumps(params, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    cands.append((params, args.recjob_reuse.get((name, key))))
            # A stage's candidates are independent: --recjob-jobs of them at a time (a low-rank
            # EASE backtest keeps about one core busy), recorded in the stage's order.
            with concurrent.futures.ThreadPoolExecutor(args.recjob_jobs) as pool:
                runs = [None if reused else pool.submit(backtest, *ds["validation"], params)
                        for params, reused in cands]
                for (params, reused), run in zip(cands, runs):
                    v = reused or run.result()
                    grid.append(dict(v, params=params))
                    log(f"  val recjob {fmt_params(params):50s} recall@{k} {fmt(v['recall'])} "
                        f"ndcg@{k} {fmt(v['ndcg'])} ({v['days']} days)"
                        + (" (reused)" if reused else ""))
        chosen = best(grid, args.select) if fixed is None else dict(
            params=fixed, recall=None, ndcg=None, days=None)
        t_val = time.time() - t0
        test = backtest(*ds["test"], chosen["params"])
        log(f"{name}: recjob validation {t_val:.0f} s, test {time.time() - t0 - t_val:.0f} s")
    except RuntimeError as e:
        print(str(e), flush=True)
        return [], []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sets = [f"hybrid.{a}={b}" for a, b in chosen["params"].items()]
    common = dict(dataset=name, kind="recjob", validation=None, val_days=chosen["days"],
                  test_days=test["days"])
    rows = [
        dict(common, method="recjob", params={"set": sets},
             val_recall=chosen["recall"], val_ndcg=chosen["ndcg"], test_recall=test["recall"],
             test_ndcg=test["ndcg"], test_coverage=test["coverage"], test_daily=test["daily"]),
        dict(common, method="recjob popularity baseline", params={},
             test_recall=test["baseline_recall"], test_ndcg=test["baseline_ndcg"],
             test_coverage=test["baseline_coverage"], test_daily=test["baseline_daily"]),
    ]
    # Each candidate's validation values date by date (None where reused): what a rule that
    # moves the setting only on a gain clear of the validation dates' noise would need.
    grid_rows = [dict(dataset=name, kind="validation_grid", method="recjob", params=g["params"],
                      recall=g["recall"], ndcg=g["ndcg"], days=g["days"], daily=g.get("daily"))
                 for g in grid]
    return rows, grid_rows


def parse_backtest_table(text):
    """src/pipeline/backtest.rs `table()`: a title line, a header `metric k model baseline lift days`,
    then one row per metric; missing values are '-'."""
    out = {}
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if line.split()[:6] == ["metric", "k", "model", "baseline", "lift", "days"]:
            for row in lines[n + 1:]:
                f = row.split()
                if len(f) != 6:
                    break
                num = lambda s: None if s == "-" else float(s.rstrip("x"))  # noqa: E731
                try:
                    out[(f[0], f[1])] = dict(model=num(f[2]), baseline=num(f[3]), lift=num(f[4]),
                                             days=int(f[5]))
                except ValueError:
                    break
            break
    return out


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def fmt(v, digits=4):
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_params(p):
    if not p:
        return "-"
    if "set" in p:
        return ", ".join(p["set"]) or "shipped"
    return ", ".join(f"{a}={'all' if b is None else b}" for a, b in p.items())


def print_table(name, rows, k):
    r0 = next(r for r in rows if r["kind"] == "test")
    print(f"\n### {name}: validation {r0['validation']}, test {r0['test']}, lookback {r0['lookback_days']} d, "
          f"half-life {r0['half_life_days']} d, {r0['policy']}, truth types {r0['truth_types']}, K={k}\n")
    print(f"| method | chosen hyperparameters | val recall@{k} | val ndcg@{k} | test recall@{k} | "
          f"test ndcg@{k} | test catalog coverage@{k} | evaluated days (val/test) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        fused = r.get("fused_with")
        hp = fmt_params(r["params"]) + (f"; buy_again {fmt_params(fused)}" if fused else "")
        print(f"| {r['method']} | {hp} | {fmt(r.get('val_recall'))} | "
              f"{fmt(r.get('val_ndcg'))} | {fmt(r['test_recall'])} | {fmt(r['test_ndcg'])} | "
              f"{fmt(r['test_coverage'])} | {r.get('val_days', '-')}/{r['test_days']} |")
    sys.stdout.flush()


BOOTSTRAP = 10000


def paired(a, b, rng):
    """recjob minus a peer over the test dates both evaluated: the mean difference of the
    per-date values, its 95 % interval from a bootstrap over dates (the unit the means are
    taken over; a date's users share its catalog and its popularity), and the share of the
    resamples where recjob is ahead."""
    dates = sorted(set(a) & set(b))
    if len(dates) < 2:
        return None
    d = np.array([a[x] - b[x] for x in dates])
    means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return dict(dates=len(dates), diff=float(d.mean()), lo=float(lo), hi=float(hi),
                ahead=float((means > 0).mean()))


def print_paired(rows, k):
    """Per dataset: recjob against every peer on the test dates, date by date (rows with
    `test_daily`; the first recjob row of a dataset is the one compared)."""
    rng = np.random.default_rng(SEED)
    by_ds = {}
    for r in rows:
        if r.get("kind") in ("test", "recjob") and r.get("test_daily"):
            rs = by_ds.setdefault(r["dataset"], [])
            if all(x["method"] != r["method"] for x in rs):  # a method run twice: the first
                rs.append(r)
    for name, rs in by_ds.items():
        me = next((r for r in rs if r["method"] == "recjob"), None)
        if me is None:
            continue
        print(f"\n### {name}: recjob minus each peer on the test dates, per date "
              f"(95 % bootstrap interval over dates, {BOOTSTRAP} resamples; share of resamples "
              f"with recjob ahead)\n")
        print(f"| peer | dates | recall@{k} difference | share ahead | ndcg@{k} difference | "
              f"share ahead |")
        print("|---|---|---|---|---|---|")
        for r in rs:
            if r is me:
                continue
            ps = [paired(me["test_daily"][x], r["test_daily"][x], rng) for x in ("recall", "ndcg")]
            cells = [f"{p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] | {p['ahead']:.2f}"
                     if p else "- | -" for p in ps]
            n = ps[0]["dates"] if ps[0] else "-"
            print(f"| {r['method']} | {n} | {cells[0]} | {cells[1]} |")
    sys.stdout.flush()


def write_output(path, rows):
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(rows, f, indent=1, default=str)
        return
    keys = []
    for r in rows:
        keys += [x for x in r if x not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({a: (json.dumps(b) if isinstance(b, (dict, list)) else b) for a, b in r.items()})


# --------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------

def _write_tiny(root):
    """A hand-made dataset (3 days), checked by hand in self_test()."""
    ts = lambda d, h: _dt.datetime.fromisoformat(f"{d}T{h:02d}:00:00+00:00")  # noqa: E731
    rows = {
        "2020-01-01": [("u1", "a", "purchase", ts("2020-01-01", 10)),
                       ("u1", "a", "purchase", ts("2020-01-01", 10)),  # duplicate: one event
                       ("u1", "b", "purchase", ts("2020-01-01", 12)),
                       ("u2", "b", "purchase", ts("2020-01-01", 9)),
                       ("u2", "c", "purchase", ts("2020-01-01", 9)),
                       ("u3", "c", "return", ts("2020-01-01", 9)),  # weight 0: active, no vector
                       ("u2", "zz", "purchase", ts("2020-01-01", 9)),  # not in the catalog
                       (None, "a", "purchase", ts("2020-01-01", 9)),  # no user
                       ("u1", "a", "view", ts("2020-01-01", 9))],  # unknown type
        "2020-01-02": [("u2", "a", "purchase", ts("2020-01-02", 0)),
                       ("u1", "p", "purchase", ts("2020-01-02", 0))],  # p: not available
        "2020-01-03": [("u1", "c", "purchase", ts("2020-01-03", 8)),
                       ("u1", "d", "purchase", ts("2020-01-03", 8)),
                       ("u1", "b", "return", ts("2020-01-03", 9)),  # a return is not a hit
                       ("u2", "d", "purchase", ts("2020-01-03", 8)),
                       ("u4", "a", "purchase", ts("2020-01-03", 8))],  # no list on 01-02
    }
    for d, rs in rows.items():
        os.makedirs(f"{root}/behavior/dt={d}")
        t = pa.table({"user_id": pa.array([r[0] for r in rs], pa.string()),
                      "item_id": [r[1] for r in rs], "event_type": [r[2] for r in rs],
                      "ts": pa.array([r[3] for r in rs], pa.timestamp("us", tz="UTC")),
                      "value": pa.array([1.0] * len(rs))})
        pq.write_table(t, f"{root}/behavior/dt={d}/part-0.parquet")
    os.makedirs(f"{root}/catalog/dt=2020-01-01")
    pq.write_table(pa.table({"item_id": ["a", "b", "c", "d", "e", "p"], "title": list("abcdep"),
                             "is_merchandise": [True, True, True, True, True, False]}),
                   f"{root}/catalog/dt=2020-01-01/part-0.parquet")


def self_test(args):
    k = 3
    tmp = tempfile.mkdtemp(prefix="bench-quality-selftest-")
    try:
        _write_tiny(tmp)
        data = Data(f"{tmp}/behavior", f"{tmp}/catalog", {"purchase": 1.0, "return": 0.0},
                    "is_merchandise")
        code = {s: n for n, s in enumerate(data.item_ids.tolist())}
        ucode = {s: n for n, s in enumerate(data.user_ids.tolist())}
        name = lambda c: data.item_ids[c]  # noqa: E731
        d2 = day_of("2020-01-02")
        win = Window(data, d2, 60, 14.0, "allow_repeats", 0)
        # Valid deduplicated events: u1 a, u1 b, u2 b, u2 c, u3 c(return), u2 a, u1 p  -> 7
        assert sorted(name(i) for i in win.pop_order) == ["a", "b", "c", "d", "e"]
        assert [name(i) for i in win.pop_order] == ["a", "b", "c", "d", "e"], "n desc, then item_id"
        assert win.counts[code["a"]] == 2 and win.counts[code["c"]] == 2 and win.counts[code["p"]] == 1
        assert sorted(data.user_ids[win.active].tolist()) == ["u1", "u2", "u3"]
        assert len(win.ex_user) == 0, "allow_repeats with repeat_after_days = 0 excludes nothing"
        # Decay from the end of 2020-01-02: u1's purchase of a at 01-01 10:00 is 38 h old.
        w = dict(zip(zip(data.user_ids[win.pu], data.item_ids[win.pi]), win.pw))
        assert abs(w[("u1", "a")] - 0.5 ** (38 / 24 / 14)) < 1e-12, w
        assert abs(w[("u2", "a")] - 0.5 ** (24 / 24 / 14)) < 1e-12
        assert ("u3", "c") not in w and ucode["u3"] not in win.row_of, "zero weight: no vector"
        # Popularity lists and the fallback.
        u1, u2, u3 = ucode["u1"], ucode["u2"], ucode["u3"]
        lists = make_lists(win, "popularity", None, [u1, u2, u3], k)
        assert [name(i) for i in lists[u1]] == ["a", "b", "c"]
        # The recent order: events of the last N days, ties by the window's events, then id.
        from types import SimpleNamespace as NS
        def last_3_days(first, last, snapshot):  # rows of days 8..10 of a run of date 10
            assert (first, last, snapshot) == (8, 10, 10)
            return np.arange(1, 5)

        days = NS(n_items=4, i=np.array([0, 1, 2, 2, 3, 1]), rows=last_3_days)
        toy = NS(d=10, data=days, available=np.array([True, True, True, False]),
                 counts=np.array([5, 1, 1, 9]))
        assert fit_popularity(toy, {"days": 3}).tolist() == [2, 1, 0], "c 2, b 1, a 0 (p unavailable)"
        assert fit_popularity(win, {}) is None
        lists = make_lists(win, "popularity", np.array([code["c"], code["b"], code["a"]]), [u1], k)
        assert [name(i) for i in lists[u1]] == ["c", "b", "a"], "the order it is given"
        ba = make_lists(win, "buy_again", None, [u1, u2, u3], k)
        # u1: a (38 h old) and b (36 h): b is fresher, so heavier; p is not available.
        assert [name(i) for i in ba[u1]] == ["b", "a", "c"], [name(i) for i in ba[u1]]
        assert [name(i) for i in ba[u3]] == ["a", "b", "c"], "no positive weight: popularity"
        # Buy-again by days: the days with a positive-weight event, not events nor weight.
        w3 = Window(data, day_of("2020-01-03"), 60, 14.0, "allow_repeats", 0)
        days = {(name(w3.mat_items[c]), int(v)) for c, v in
                zip(w3.X_days.getrow(w3.row_of[u1]).indices, w3.X_days.getrow(w3.row_of[u1]).data)}
        # u1: a twice on 01-01 (one day), b bought 01-01 and returned 01-03 (a return is no day).
        assert days == {("a", 1), ("b", 1), ("c", 1), ("d", 1), ("p", 1)}, days
        two = NS(row_of={7: 0}, mat_items=np.array([10, 11, 12]),
                 X_w=sp.csr_matrix(np.array([[0.9, 0.5, 0.5]])),
                 X_days=sp.csr_matrix(np.array([[1.0, 2.0, 2.0]])))
        assert Window.own_items(two, 7).tolist() == [10, 11, 12], "by weight, ties item_id"
        assert Window.own_items(two, 7, "days").tolist() == [11, 12, 10], "2 days before 1"
        seen = Window(data, d2, 60, 14.0, "seen_in_window", 0)
        pl = make_lists(seen, "popularity", None, [u1, u2, u3], k)
        assert [name(i) for i in pl[u1]] == ["c", "d", "e"]
        assert [name(i) for i in pl[u3]] == ["a", "b", "d"], "a return excludes the item"
        # Ranking: ties by item_id, candidates outside the matrix last in popularity order.
        sc = np.zeros((1, len(win.mat_items)))
        got = rank_rows(win, [u1], sc, 5)[0]
        assert [name(i) for i in got] == ["a", "b", "c", "d", "e"], [name(i) for i in got]
        assert [name(i) for i in win.mat_items] == ["a", "b", "c", "p"]
        sc = np.array([[0.1, 0.5, 0.5, 9.0]])  # p is not available
        got = rank_rows(win, [u2], sc, 4)[0]
        assert [name(i) for i in got] == ["b", "c", "a", "d"], [name(i) for i in got]
        got = rank_rows(win, [u2], np.array([[0.1, 0.5, 0.5 + 3e-16, 9.0]]), 4)[0]
        assert [name(i) for i in got] == ["b", "c", "a", "d"], "noise does not reorder a tie"
        got = rank_rows(win, [u2], np.array([[0.1, 0.5, 0.5 + 1e-8, 9.0]]), 4)[0]
        assert [name(i) for i in got] == ["c", "b", "a", "d"], "a real gap does"
        # Truth of 01-03: positive types only; a return is no hit.
        g = data.truth(day_of("2020-01-03"))
        assert {data.user_ids[u]: sorted(name(i) for i in s) for u, s in g.items()} == {
            "u1": ["c", "d"], "u2": ["d"], "u4": ["a"]}
        g_all = data.truth(day_of("2020-01-03"), all_types=True)
        assert sorted(name(i) for i in g_all[u1]) == ["b", "c", "d"]
        # Metrics by hand: list [a, c, e], G = {c, d}: recall 1/2; DCG = 1/log2(3);
        # IDCG = 1 + 1/log2(3).
        r, n = user_metrics([code["a"], code["c"], code["e"]], {code["c"], code["d"]}, 3)
        assert abs(r - 0.5) < 1e-12 and abs(n - (1 / math.log2(3)) / (1 + 1 / math.log2(3))) < 1e-12
        r, n = user_metrics([code["d"]], {code["d"]}, 3)
        assert r == 1.0 and n == 1.0
        # A replay of 01-02..01-03 with the popularity list. 01-02 is evaluated on 01-01's lists
        # (window 01-01: b 2, c 2, a 1 events): [b, c, a] for u1 (G {p}: 0) and u2 (G {a}: recall
        # 1, ndcg 1/log2 4 = 0.5); mean 0.5 / 0.25. 01-03 on 01-02's lists [a, b, c]: u1 (G {c, d})
        # recall 0.5, ndcg (1/log2 4)/(1 + 1/log2 3); u2 (G {d}) 0; u4 has no list; mean 0.25.
        ds = dict(lookback=60, half_life=14.0, policy="allow_repeats", repeat_after_days=0)
        acc = replay(data, ds, d2, day_of("2020-01-03"), [("popularity", "popularity", {})], k,
                     coverage=True)
        rr, days = acc["popularity"].mean("recall")
        nn, _ = acc["popularity"].mean("ndcg")
        assert days == 2 and abs(rr - (0.5 + 0.25) / 2) < 1e-12, (rr, days)
        assert abs(nn - (0.25 + 0.5 * (0.5 / (1 + 1 / math.log2(3)))) / 2) < 1e-12, nn
        cov, ncov = acc["popularity"].mean("catalog_coverage")
        assert ncov == 2 and abs(cov - 3 / 5) < 1e-12, (cov, ncov)  # [a, b, c] for all, 2 dates
        # Learned methods run end to end on the tiny window.
        for m, p in (("als", dict(factors=4, alpha=10.0, regularization=0.1)),
                     ("ease", {"input": "binary", "lambda": 1.0}),
                     ("rp3beta", dict(alpha=1.0, beta=0.5, neighbours=None)),
                     ("itemknn", dict(input="weighted", shrink=0.0, neighbours=2))):
            ls = make_lists(win, m, FITS[m](win, p), [u1, u2, u3], k)
            assert all(len(v) == k and len(set(v)) == k for v in ls.values()), (m, ls)
            assert all(win.available[v].all() for v in ls.values()), m
        acc = replay(data, ds, d2, day_of("2020-01-03"),
                     [("v", "ease" + VARIANT, {"input": "binary", "lambda": 1.0}),
                      ("e", "ease", {"input": "binary", "lambda": 1.0})], k, coverage=True)
        assert acc["v"].mean("recall")[1] == 2 and acc["v"].mean("catalog_coverage")[1] == 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # The paired comparison: a constant lead is that lead with no spread; dates only one side
    # evaluated are left out; noise around zero straddles it.
    rng = np.random.default_rng(0)
    p = paired({"a": 0.3, "b": 0.5, "c": 0.1}, {"a": 0.2, "b": 0.4, "c": 0.0, "d": 0.9}, rng)
    assert p["dates"] == 3 and abs(p["diff"] - 0.1) < 1e-12 and p["ahead"] == 1.0, p
    assert abs(p["lo"] - 0.1) < 1e-12 and abs(p["hi"] - 0.1) < 1e-12, p
    noise = rng.normal(0, 1, 200)
    noise -= noise.mean()
    p = paired(dict(enumerate(noise)), dict(enumerate(np.zeros(200))), rng)
    assert abs(p["diff"]) < 1e-12 and p["lo"] < -0.1 and p["hi"] > 0.1, p
    assert 0.4 < p["ahead"] < 0.6, p

    # EASE: primal = dual; B has a zero diagonal (no item predicts itself).
    rng = np.random.default_rng(0)
    X = (rng.random((30, 12)) < 0.3) * rng.random((30, 12))
    rows = np.array([0, 5, 7])
    a = ease_scores(X, 3.0, rows, dual=False)
    b = ease_scores(X, 3.0, rows, dual=True)
    assert np.allclose(a, b, atol=1e-10), np.abs(a - b).max()
    G = X.T @ X + 3.0 * np.eye(12)
    P = np.linalg.inv(G)
    Bref = np.eye(12) - P / np.diag(P)[None, :]
    assert np.allclose(np.diag(Bref), 0) and np.allclose(X[rows] @ Bref, a, atol=1e-10)
    # Reciprocal rank fusion: items in both lists first, then by rank, ties item_id.
    assert fuse_rrf([1, 2, 3], [3, 4, 5], 3) == [3, 1, 2]
    # `recjob backtest`'s table (src/pipeline/backtest.rs `table()`), formatted as it prints it.
    head = "backtest 2011-09-01..2011-10-31: 61 dates with behavior, 43 evaluated (lists of D-1 against D)\n"
    head += f"{'metric':<32} {'k':>4} {'model':>9} {'baseline':>9} {'lift':>7} {'days':>5}\n"
    body = "".join(f"{m:<32} {k:>4} {v:>9.4f} {b:>9.4f} {v / b:>6.2f}x {n:>5}\n"
                   for m, k, v, b, n in (("recall", 20, 0.2817, 0.0681, 43), ("ndcg", 20, 0.2512, 0.0817, 43)))
    body += f"{'catalog_coverage':<32} {20:>4} {0.3531:>9.4f} {0.0051:>9.4f} {0.3531 / 0.0051:>6.2f}x {61:>5}\n"
    body += f"{'eval_user_coverage':<32} {'-':>4} {'-':>9} {0.5:>9.4f} {'-':>7} {0:>5}\n"
    body += f"{'recall/new_users':<32} {20:>4} {0.1:>9.4f} {'-':>9} {'-':>7} {40:>5}\n"
    t = parse_backtest_table("INFO something\n" + head + body + "wrote out/backtests/x.parquet\n")
    assert t[("recall", "20")] == dict(model=0.2817, baseline=0.0681, lift=round(0.2817 / 0.0681, 2), days=43), t
    assert t[("catalog_coverage", "20")]["days"] == 61 and t[("eval_user_coverage", "-")]["model"] is None
    assert t[("recall/new_users", "20")] == dict(model=0.1, baseline=None, lift=None, days=40), t
    print("self-test: hand-made example, metrics, exclusions, fallback, EASE primal = dual, "
          "backtest table parser: ok")

    # recjob's published popularity baselines (BENCHMARKS.md; truth = every event type then).
    published = [
        ("online_retail", "2011-09-01", "2011-10-31", 60, 0.068, 0.082, 43, 0.005),
        ("online_retail", "2011-11-01", "2011-11-30", 60, 0.099, 0.105, 22, None),
        ("amazon2018_small", "2016-12-01", "2017-03-31", 60, 0.298, 0.155, 67, 0.007),
        ("movielens_latest_small", "2018-01-01", "2018-09-24", 365, 0.022, 0.017, 154, 0.008),
    ]
    for name, f, t, lb, rec, ndcg, days, cov in published:
        root = os.path.join(args.data_dir, name, "parquet")
        if not os.path.isdir(root):
            print(f"self-test: {root} missing, skipping the published {name} baseline")
            continue
        ds = dict(DATASETS[name], lookback=lb)
        data = Data(f"{root}/behavior", f"{root}/catalog", ds["weights"], ds["available_column"])
        out = {}
        for truth_all in (True, False):
            acc = replay(data, ds, day_of(f), day_of(t), [("popularity", "popularity", {})], 20,
                         coverage=truth_all and cov is not None, all_types=truth_all)
            out[truth_all] = acc["popularity"]
        r, n_days = out[True].mean("recall")
        nd, _ = out[True].mean("ndcg")
        c, _ = out[True].mean("catalog_coverage")
        rp, _ = out[False].mean("recall")
        ndp, _ = out[False].mean("ndcg")
        print(f"self-test: {name} {f}..{t} popularity, all-type truth: recall@20 {r:.4f} (published "
              f"{rec}), ndcg@20 {nd:.4f} ({ndcg}), coverage@20 {fmt(c)} ({cov}), {n_days} days ({days}); "
              f"positive-weight truth: recall@20 {rp:.4f}, ndcg@20 {ndp:.4f}")
        assert n_days == days, (name, n_days, days)
        assert len(evaluated_dates(data, day_of(f), day_of(t), lb, all_types=True)) == days
        assert abs(r - rec) <= 0.0005 + 1e-9 and abs(nd - ndcg) <= 0.0005 + 1e-9, (name, r, nd)
        if cov is not None:
            assert abs(c - cov) <= 0.0005 + 1e-9, (name, c)
    # --report-dates: fixed settings only, well-formed spans.
    ml, span = "movielens_latest_small", "2015-01-01..2017-05-31"
    assert parse_report_dates([f"{ml}={span}"], {"ease": {}}, None, {}) == {
        ml: ("2015-01-01", "2017-05-31")}
    for items, peer, recjob in (([f"{ml}={span}"], {}, None),  # a search would run
                                ([f"{ml}={span}"], {"ease": {}}, "recjob"),  # recjob not fixed
                                ([f"{ml}=2017-05-31..2015-01-01"], {"ease": {}}, None),
                                ([f"{ml}=2015-01-01"], {"ease": {}}, None),
                                ([f"nosuch={span}"], {"ease": {}}, None)):
        try:
            parse_report_dates(items, peer, recjob, {})
            raise AssertionError(f"accepted {items} {peer} {recjob}")
        except ValueError:
            pass
    print("self-test: passed")


# --------------------------------------------------------------------------------------------

def parse_report_dates(items, peer, recjob, recjob_params):
    """--report-dates DATASET=FROM..TO items as {dataset: (from, to)}; ValueError unless every
    setting reported there is fixed (peers by --peer, recjob by --recjob-params)."""
    out = {}
    for a in items:
        name, _, span = a.partition("=")
        first, _, last = span.partition("..")
        try:
            ok = name in DATASETS and day_of(first) <= day_of(last)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"--report-dates {a}: expected DATASET=YYYY-MM-DD..YYYY-MM-DD")
        if not peer or (recjob and name not in recjob_params):
            raise ValueError(f"--report-dates {name}: only with fixed settings (--peer, and "
                             f"--recjob-params {name}=... with --recjob)")
        out[name] = (first, last)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "..", "shared", "data"))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--select", choices=["recall", "ndcg"], default="ndcg",
                    help="validation metric that chooses the hyperparameters (the other breaks ties)")
    ap.add_argument("--lookback", action="append", default=[], metavar="DATASET=DAYS",
                    help="override a dataset's lookback_days (defaults: online_retail 60, "
                         "amazon2018_small 60, movielens_latest_small 365)")
    ap.add_argument("--val-every", action="append", default=[], metavar="DATASET=N",
                    help="validate on every N-th evaluated validation date (defaults: online_retail 2, "
                         "movielens_latest_small 2, amazon2018_small 1)")
    ap.add_argument("--variants", choices=["auto", "on", "off"], default="auto",
                    help="also rows <method>+buy_again: the learned method's list fused with the "
                         "buy-again list by reciprocal rank fusion; auto: where repeats are allowed")
    ap.add_argument("--quick", action="store_true", help="one configuration per method (smoke run)")
    ap.add_argument("--output", default="bench-quality.json", help=".json, else CSV")
    ap.add_argument("--recjob", help="recjob binary: also tune recjob on the validation dates "
                    "(`recjob backtest` per setting) and report the chosen one on the test dates")
    ap.add_argument("--recjob-params", action="append", default=[], metavar="DATASET=JSON",
                    help="no search for recjob on DATASET: report these hybrid.* settings (e.g. "
                         "what an earlier run's search chose) on the test dates")
    ap.add_argument("--recjob-from", action="append", default=[], metavar="DATASET=JSON",
                    help="start recjob's search on DATASET at these hybrid.* settings (what an "
                         "earlier full search chose) and run only the stages added since: the "
                         "neighbour term's")
    ap.add_argument("--recjob-jobs", type=int, default=1, metavar="N",
                    help="recjob backtests of one search stage run N at a time (default 1; 2 "
                         "nearly halves a low-rank EASE search on 2 cores, whose backtests keep "
                         "one core busy; the choices are the same)")
    ap.add_argument("--recjob-reuse", action="append", default=[], metavar="JSON",
                    help="recjob's validation rows of an earlier --output: a candidate setting "
                         "found there is not backtested again. Only with a build whose backtests "
                         "of those settings are unchanged (e.g. after adding a key they omit)")
    ap.add_argument("--peer", action="append", default=[], metavar="METHOD=JSON",
                    help="no search: report only these peers, with these settings, on the test "
                         "dates (e.g. the strongest peer of an earlier run; the CI quality test); "
                         "the +buy_again variants fuse with --peer buy_again's settings, if given")
    ap.add_argument("--report-dates", action="append", default=[], metavar="DATASET=FROM..TO",
                    help="report on these dates instead of DATASET's test dates, with fixed "
                         "settings only (--peer, and --recjob-params for recjob): e.g. earlier "
                         "dates that no choice has used, to see whether a validation choice holds")
    ap.add_argument("--config", default="jobs/nightly.toml")
    ap.add_argument("--compare", nargs="+", metavar="JSON",
                    help="print the per-date comparison of recjob with the peers from earlier "
                         "--output files (e.g. the peers' run and a recjob-only run) and exit")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    args.data_dir = os.path.normpath(args.data_dir)
    args.lookback = {a.split("=")[0]: int(a.split("=")[1]) for a in args.lookback}
    args.val_every = {a.split("=")[0]: int(a.split("=")[1]) for a in args.val_every}
    args.recjob_params = {a.split("=", 1)[0]: json.loads(a.split("=", 1)[1])
                          for a in args.recjob_params}
    args.recjob_from = {a.split("=", 1)[0]: json.loads(a.split("=", 1)[1])
                        for a in args.recjob_from}
    args.recjob_reuse = {(r["dataset"], json.dumps(r["params"], sort_keys=True)): r
                         for f in args.recjob_reuse for r in json.load(open(f))
                         if r["kind"] == "validation_grid" and r["method"] == "recjob"}
    args.peer = {a.split("=", 1)[0]: json.loads(a.split("=", 1)[1]) for a in args.peer}
    try:
        args.report_dates = parse_report_dates(args.report_dates, args.peer, args.recjob,
                                               args.recjob_params)
    except ValueError as e:
        ap.error(str(e))
    for name, span in args.report_dates.items():
        DATASETS[name] = dict(DATASETS[name], test=span)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {METHODS}")
    if args.self_test:
        self_test(args)
        return
    if args.compare:
        rows = []
        for path in args.compare:
            with open(path) as f:
                rows += json.load(f)
        print_paired(rows, args.k)
        return
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    import implicit, scipy  # noqa: E401
    print(f"bench-quality: numpy {np.__version__}, scipy {scipy.__version__}, pyarrow {pa.__version__}, "
          f"implicit {implicit.__version__}; K={args.k}; hyperparameters chosen on validation "
          f"{args.select}@{args.k}; seed {SEED}; data {args.data_dir}", flush=True)
    all_rows = []
    t_all = time.time()
    for name in [n for n in args.datasets.split(",") if n]:
        t0 = time.time()
        rows, grid_rows = run_dataset(name, args, log)
        recjob, recjob_grid = [], []
        if args.recjob:
            if os.path.isfile(args.recjob) and os.access(args.recjob, os.X_OK):
                recjob, recjob_grid = recjob_rows(args, name, rows[0]["truth_types"], log)
            else:
                print(f"--recjob {args.recjob}: no such executable; recjob rows skipped", flush=True)
        print_table(name, rows + recjob, args.k)
        print(f"({name}: {time.time() - t0:.0f} s)", flush=True)
        all_rows += rows + recjob + grid_rows + recjob_grid
        write_output(args.output, all_rows)
    print_paired(all_rows, args.k)
    print(f"\nwrote {args.output} ({len(all_rows)} rows) in {time.time() - t_all:.0f} s", flush=True)


if __name__ == "__main__":
    main()
