"""Deterministic synthetic inputs for recjob at any size, with real item text.

    python scripts/synth.py --out DIR --users N --items M --days D --events-per-user-window E
                            [--seed S] [--end-date YYYY-MM-DD] [--self-check]

Writes recjob's input contract (README "Inputs"):

    DIR/behavior/dt=YYYY-MM-DD/part-0.parquet   user_id string, item_id string,
        event_type string (purchase | view | return), ts timestamp[us, UTC], value float64
        (quantity; negative for returns; null for views). Rows sorted by ts, user_id, item_id.
    DIR/catalog/dt=<first day>/part-0.parquet   item_id, title, category, description (nullable),
    DIR/catalog/dt=<last day>/part-0.parquet    available (bool). Both snapshots are the same
        table (every item, launched later or not), like ../shared/data, so a run of any date finds
        a catalog partition <= its date that holds every item of its window.
    DIR/_synth.json                             the arguments and the summary (no timings)

--days is the total number of days: the training window (D - 1 days, e.g. 60) plus one
evaluation day after it, which is --end-date (default 2024-03-31). recjob's run for the last
window day (end-date - 1) publishes lists that its run for end-date evaluates.

Structure a recommender can learn:
  * items: Zipf popularity (random ranks, exponent --zipf) in ~40 categories; 15 % launch during
    the window (launch day, a novelty boost that decays over ~5 days), 2 % are discontinued during
    it (no events afterwards, available = false);
  * users: heavy-tailed activity (log-normal, mean --events-per-user-window events in the window),
    2-4 favourite categories each (Dirichlet weights) where --fav-share of their fresh choices go;
    75 % exist before the window (with a short prior purchase history), 25 % arrive during it
    (active on their arrival day);
  * events: daily sessions (diurnal clock, ~2 min between events), --view-share views,
    ~3 % returns of the user's own earlier purchases, purchases re-buying one of the user's last
    16 purchases with probability --repeat-prob (a third-ish of purchases repeat an earlier one),
    0.1 % exact duplicate rows (recjob dedupes them).

Item text is real: titles of ../shared/data (Online Retail product names, MovieLens titles, Amazon
gift card and magazine titles) grouped into coherent categories (Online Retail by keywords,
MovieLens by genre, Amazon by its category path), and an item's title is one real title of its
category plus a variant of that category's kind (colour/size/pack for products, edition/format
for films, term/format for magazines, amount/delivery for gift cards), so text and category
agree and every item has its own text (beyond ~800k items some variants carry a " #n" suffix).

Licence: MovieLens and Amazon titles are research-only (../shared/data/DATASETS.md), and so is
output made with them; `--sources retail` uses Online Retail titles alone (11 categories).

Deterministic: the same arguments give byte-identical Parquet (numpy's PCG64 seeded by --seed,
pyarrow zstd level 3, fixed row group size). Generated one day at a time with vectorised numpy;
memory is O(users + items + one day's events).
"""

import argparse
import datetime as dt
import json
import math
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
EVENT_TYPES = np.array(["purchase", "view", "return"])
EVENT_TYPE_ARRAY = pa.array(list(EVENT_TYPES), pa.string())
PURCHASE, VIEW, RETURN = 0, 1, 2
HIST = 16  # purchases remembered per user (repeats and returns draw from them)
HOUR_PROFILE = np.array([1, .6, .4, .3, .3, .4, .8, 1.5, 2.5, 3.5, 4, 4, 4, 3.8, 3.6, 3.6, 3.8, 4.2,
                         4.8, 5.2, 5, 4, 3, 2], dtype=np.float64)
WEEKDAY_FACTOR = np.array([0.95, 0.95, 0.95, 1.0, 1.05, 1.1, 1.0])  # Monday .. Sunday

BEHAVIOR_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("event_type", pa.string()),
    ("ts", pa.timestamp("us", tz="UTC")), ("value", pa.float64())])
CATALOG_SCHEMA = pa.schema([
    ("item_id", pa.string()), ("title", pa.string()), ("category", pa.string()),
    ("description", pa.string()), ("available", pa.bool_())])

# ---------------------------------------------------------------------------------------------
# Real titles, grouped into categories
# ---------------------------------------------------------------------------------------------

# Online Retail has no categories: the first rule whose keywords meet a title's words wins.
RETAIL_RULES = [
    ("Seasonal > Christmas & Easter", "CHRISTMAS XMAS ADVENT SANTA REINDEER SNOWFLAKE SNOWMAN WREATH "
     "EASTER BUNNY CHICK CHICKS NATIVITY ANGEL HALLOWEEN ROBIN"),
    ("Home > Party & Celebration", "PARTY BUNTING BIRTHDAY BALLOON BALLOONS GARLAND CONFETTI STRAWS "
     "NAPKINS PINATA CAKE CAKES CUPCAKE CASES SPRINKLES"),
    ("Fashion > Jewellery & Accessories", "NECKLACE NECKLACE. EARRINGS BRACELET RING RINGS CHARM BEAD "
     "BEADS BEADED DIAMANTE HAIR BROOCH JEWELLED PEARL BLING CRYSTAL SCARF GLOVES HAIRCLIP HAIRSLIDE"),
    ("Kids > Toys & Games", "TOY TOYS GAME GAMES DOLL DOLLY CHILDRENS CHILDS SPACEBOY JIGSAW BALL PLAY "
     "KIDS TEDDY BABY SKIPPING PUPPET DOMINOES SOLDIERS DINOSAUR ROBOT FELTCRAFT"),
    ("Home > Candles & Lighting", "CANDLE CANDLES T-LIGHT T-LIGHTS TEALIGHT LANTERN LIGHTS LIGHT LAMP "
     "INCENSE SCENTED WARMER NIGHTLIGHT CANDLEHOLDER"),
    ("Home > Garden & Outdoor", "GARDEN PLANT PLANTER PLANTERS BIRD BIRDHOUSE WATERING POT POTS "
     "PARASOL UMBRELLA DOORMAT HEN SEED SEEDS TROWEL GNOME FLOWERPOT"),
    ("Home > Kitchen & Dining", "MUG MUGS CUP CUPS TEA TEACUP TEAPOT PLATE PLATES BOWL BOWLS CUTLERY "
     "SPOON SPOONS JAR JARS BOTTLE TRAY DISH KITCHEN PANTRY BAKING COFFEE JAM LUNCH DINNER APRON "
     "CAKESTAND TUMBLER GLASSES BEAKER COASTER COASTERS TOWEL OVEN CHOPPING SAUCER SUGAR MILK"),
    ("Office > Stationery & Gift Wrap", "CARD CARDS WRAP PAPER NOTEBOOK PEN PENS PENCIL PENCILS "
     "STICKERS STICKER TAPE RIBBON RIBBONS TAG TAGS ENVELOPE ENVELOPES BOOK ERASER NOTEPAD DIARY "
     "CALENDAR STAMP STAMPS NOTECARD"),
    ("Home > Bags & Storage", "BAG BAGS BOX BOXES TIN TINS BASKET STORAGE DRAWER CASE PURSE HOLDALL "
     "TRINKET TOTE SHOPPER CRATE HAMPER WASHBAG"),
    ("Home > Decor & Furnishing", "HEART HEARTS SIGN FRAME CLOCK MIRROR CUSHION HOOK HOOKS WALL "
     "DECORATION HANGING KNOB KNOBS TILE PHOTO PICTURE HANGER ORNAMENT DOOR CABINET VASE THROW "
     "MAGNET MAGNETS DOORSTOP CHANDELIER QUILT"),
]
RETAIL_OTHER = "Gifts > Novelties & Keepsakes"

# MovieLens: the first genre in this order that the film has.
MOVIE_RULES = [
    ("Movies > Documentary", {"Documentary"}),
    ("Movies > Animation & Family", {"Animation", "Children"}),
    ("Movies > Horror", {"Horror"}),
    ("Movies > War & Western", {"War", "Western"}),
    ("Movies > Sci-Fi & Fantasy", {"Sci-Fi", "Fantasy"}),
    ("Movies > Crime & Thriller", {"Crime", "Mystery", "Thriller", "Film-Noir"}),
    ("Movies > Action & Adventure", {"Action", "Adventure", "IMAX"}),
    ("Movies > Romance & Musical", {"Romance", "Musical"}),
    ("Movies > Comedy", {"Comedy"}),
    ("Movies > Drama", {"Drama"}),
]
MOVIE_OTHER = "Movies > Drama"

GIFT_FOOD = re.compile(r"restaurant|grill|cafe|café|pizza|steak|roadhouse|chicken|coffee|bar\b|bistro|"
                       r"kitchen|food|burger|taco|sushi|bbq|diner|bakery|starbucks|dunkin|tavern|"
                       r"olive garden|applebee|chili|outback|maggiano|cheesecake|wings|donut|"
                       r"catering|cooking", re.I)

VARIANTS = {  # singles of each list, then every pair "b, a"
    "retail": (["RED", "BLUE", "PINK", "IVORY", "GREEN", "BLACK", "WHITE", "SILVER", "GOLD", "PURPLE",
                "YELLOW", "CREAM", "ORANGE", "GREY", "TURQUOISE", "NATURAL", "LILAC", "CHARCOAL",
                "MINT", "NAVY"],
               ["SMALL", "LARGE", "MINI", "JUMBO", "SET OF 2", "SET OF 3", "SET OF 4", "SET OF 6",
                "PACK OF 12", "PACK OF 24", "GIFT BOXED", "VINTAGE STYLE"]),
    "movie": (["DVD", "Blu-ray", "4K Ultra HD", "Digital HD", "VHS", "Blu-ray + DVD"],
              ["Collector's Edition", "Director's Cut", "Special Edition", "Anniversary Edition",
               "Widescreen", "Steelbook", "Remastered", "Extended Cut", "Box Set",
               "English subtitles", "French audio", "Spanish subtitles", "German dub"]),
    "magazine": (["print", "digital", "print + digital", "Kindle edition", "gift subscription",
                  "auto-renewal", "student rate"],
                 ["1-year subscription", "2-year subscription", "6-month subscription",
                  "3-year subscription", "single issue", "back issue", "monthly", "quarterly"]),
    "giftcard": (["$10", "$15", "$20", "$25", "$30", "$40", "$50", "$75", "$100", "$150", "$200",
                  "$250", "$500"],
                 ["email delivery", "mail delivery", "print at home", "gift box", "greeting card",
                  "reloadable", "multipack", "mobile delivery"]),
}
FORMAT = {
    "retail": lambda base, v: f"{base} - {v}",
    "movie": lambda base, v: f"{base} [{v}]",
    "magazine": lambda base, v: f"{base} ({v})",
    "giftcard": lambda base, v: f"{base} - {v}",
}
FAMILY_SHARE = {"retail": 0.45, "movie": 0.30, "magazine": 0.17, "giftcard": 0.08}


def variant_words(family):
    a, b = VARIANTS[family]
    return [""] + a + b + [f"{y}, {x}" for y in b for x in a]


def load_pools(data_dir: Path):
    """[(category, family, titles, descriptions)] sorted by category; titles distinct and sorted."""
    pools = {}  # category -> (family, {title: description})
    seen = set()  # a title belongs to one category only (Amazon repeats some under several paths)

    def add(cat, family, title, desc=None):
        title = " ".join(title.split())
        if len(title) < 3 or title in seen:
            return
        seen.add(title)
        fam, d = pools.setdefault(cat, (family, {}))
        d.setdefault(title, desc)

    retail = pq.read_table(next((data_dir / "online_retail/parquet/catalog").glob("dt=*")),
                           columns=["title", "is_merchandise"]).to_pylist()
    rules = [(c, set(w.split())) for c, w in RETAIL_RULES]
    for r in retail:
        t = r["title"]
        if not r["is_merchandise"] or t != t.upper() or not re.search(r"[A-Z]{3}", t):
            continue  # postage, fees, junk notes ("thrown away", "?")
        words = set(re.split(r"[^A-Z0-9\-]+", t))
        add(next((c for c, kw in rules if words & kw), RETAIL_OTHER), "retail", t)

    movies = pq.read_table(next((data_dir / "movielens_latest_small/parquet/catalog").glob("dt=*")),
                           columns=["title", "category"]).to_pylist()
    for r in movies:
        genres = set((r["category"] or "").split("|"))
        add(next((c for c, g in MOVIE_RULES if genres & g), MOVIE_OTHER), "movie", r["title"])

    amazon = pq.read_table(next((data_dir / "amazon2018_small/parquet/catalog").glob("dt=*")),
                           columns=["title", "description", "category", "title_source",
                                    "source_category"]).to_pylist()
    mag_counts = {}
    for r in amazon:
        if r["source_category"] == "Magazine_Subscriptions" and r["category"]:
            k = r["category"].split(" > ")[1] if " > " in r["category"] else "General Interest"
            mag_counts[k] = mag_counts.get(k, 0) + 1
    for r in amazon:
        if r["title_source"] not in ("title", "description"):
            continue  # a brand name or an ASIN is no item text
        desc = r["description"] if r["title_source"] == "title" and r["description"] else None
        if desc is not None:
            desc = " ".join(desc.split())[:400] or None
        if r["source_category"] == "Gift_Cards":
            cat = ("Gift Cards > Amazon" if r["title"].startswith("Amazon") else
                   "Gift Cards > Restaurants & Food" if GIFT_FOOD.search(r["title"]) else
                   "Gift Cards > Stores & Experiences")
            add(cat, "giftcard", r["title"], desc)
        else:
            sub = (r["category"] or "").split(" > ")
            sub = sub[1] if len(sub) > 1 else "General Interest"
            if mag_counts.get(sub, 0) < 30:
                sub = "General Interest"
            add(f"Magazines > {sub}", "magazine", r["title"], desc)

    out = []
    for cat in sorted(pools):
        fam, d = pools[cat]
        titles = sorted(d)
        out.append((cat, fam, titles, [d[t] for t in titles]))
    return out


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

def gini(counts):
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, s = len(x), x.sum()
    if n == 0 or s == 0:
        return 0.0
    return float((2.0 * np.sum(np.arange(1, n + 1) * x)) / (n * s) - (n + 1) / n)


def write_parquet(table, path: Path, row_group_size):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=3,
                   row_group_size=row_group_size, use_dictionary=True, write_statistics=True)
    tmp.replace(path)


class Generator:
    def __init__(self, a):
        self.a = a
        self.rng = np.random.default_rng([a.seed, 0x5EED])
        self.N, self.M, self.D = a.users, a.items, a.days
        self.W = self.D - 1  # window days; day W (the last) is the evaluation day
        self.end = dt.date.fromisoformat(a.end_date)
        self.first = self.end - dt.timedelta(days=self.D - 1)

    # -- catalog -------------------------------------------------------------------------------
    def build_items(self, pools):
        rng, M = self.rng, self.M
        fam_size = {}
        for _, fam, titles, _ in pools:
            fam_size[fam] = fam_size.get(fam, 0) + len(titles)
        # items per category: the family's share, split in proportion to the categories' pools
        want = np.array([FAMILY_SHARE[fam] * len(t) / fam_size[fam] for _, fam, t, _ in pools])
        n_cat = np.floor(want / want.sum() * M).astype(np.int64)
        rest = M - n_cat.sum()
        n_cat[np.argsort(-(want / want.sum() * M - n_cat), kind="stable")[:rest]] += 1
        C = len(pools)
        cats, titles, descs = [], [], []
        for c, (cat, fam, pool, pdesc) in enumerate(pools):
            P = len(pool)
            words = variant_words(fam)
            V = len(words)
            perm = rng.permutation(P)
            mult = next(m for m in (7, 11, 13, 17, 19, 23, 29, 31) if math.gcd(m, V - 1) == 1)
            fmt = FORMAT[fam]
            for j in range(n_cat[c]):
                b, k = perm[j % P], j // P
                if k == 0:
                    t = pool[b]
                else:  # a different variant word per base, so every (base, k) is a distinct text
                    v = words[1 + ((k - 1) * mult + int(b) * 7) % (V - 1)] if k < V else \
                        f"{words[1 + ((k - 1) * mult + int(b) * 7) % (V - 1)]} #{k // V + 1}"
                    t = fmt(pool[b], v)
                cats.append(c)
                titles.append(t)
                descs.append(pdesc[b])
        cats = np.array(cats, dtype=np.int16)
        # ids in a random order, so that an id says nothing about category or popularity
        shuffle = rng.permutation(M)
        self.item_cat = cats[shuffle]
        self.item_title = [titles[i] for i in shuffle]
        self.item_desc = [descs[i] for i in shuffle]
        self.cat_names = [p[0] for p in pools]
        self.C = C
        # popularity: Zipf over a random rank
        rank = rng.permutation(M)
        self.item_base = (rank + 1.0) ** -self.a.zipf
        # launches: 85 % before the window, 15 % on a day of it (incl. the evaluation day)
        launch = np.full(M, -1, dtype=np.int32)
        new = rng.random(M) < self.a.new_item_share
        launch[new] = rng.integers(1, self.D, new.sum())
        self.item_launch = launch
        end = np.full(M, self.D + 1, dtype=np.int32)  # alive through every day
        gone = (rng.random(M) < self.a.discontinued_share) & ~new
        end[gone] = rng.integers(0, self.W - 1, gone.sum())
        self.item_end = end
        self.item_available = end > self.D
        # items grouped by category for per-category sampling
        self.order = np.argsort(self.item_cat, kind="stable")
        counts = np.bincount(self.item_cat, minlength=C)
        self.cat_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.cat_end = np.cumsum(counts).astype(np.int64)
        self.cat_count = counts
        wid = max(6, len(str(M - 1)))
        self.item_ids = pa.array([f"i{i:0{wid}d}" for i in range(M)], pa.string())

    def catalog_table(self):
        return pa.table({
            "item_id": self.item_ids,
            "title": pa.array(self.item_title, pa.string()),
            "category": pa.array([self.cat_names[c] for c in self.item_cat], pa.string()),
            "description": pa.array(self.item_desc, pa.string()),
            "available": pa.array(self.item_available, pa.bool_()),
        }, schema=CATALOG_SCHEMA)

    # -- users ---------------------------------------------------------------------------------
    def build_users(self):
        rng, N, C, a = self.rng, self.N, self.C, self.a
        arrival = np.full(N, -1, dtype=np.int32)
        late = rng.random(N) < a.new_user_share
        arrival[late] = rng.integers(1, self.D, late.sum())
        self.user_arrival = arrival
        act = np.exp(rng.normal(0.0, a.activity_sigma, N))
        act = np.minimum(act / act.mean(), 200.0)
        # rate so that the window holds users * E events in expectation
        days_in_window = np.clip(self.W - np.maximum(arrival, 0), 0, None)
        self.rate = (a.events_per_user_window * N / float(np.sum(act * days_in_window))) * act
        self.rate = self.rate.astype(np.float32)
        # favourite categories: 2-4, drawn without replacement by category size^0.7 (Gumbel top-k)
        logp = np.log(self.cat_count.astype(np.float64) ** 0.7 + 1e-12)
        self.cat_p = self.cat_count / self.cat_count.sum()
        nfav = 2 + (rng.random(N) < 0.5) + (rng.random(N) < 0.2)
        fav = np.empty((N, 4), dtype=np.int16)
        for s in range(0, N, 65536):
            e = min(N, s + 65536)
            g = logp[None, :] - np.log(-np.log(rng.random((e - s, C))))
            fav[s:e] = np.argsort(-g, axis=1)[:, :4]
        w = rng.gamma(1.0, 1.0, (N, 4))
        w[np.arange(4)[None, :] >= nfav[:, None]] = 0.0
        w /= w.sum(axis=1, keepdims=True)
        self.fav = fav
        self.fav_cw = np.cumsum(w, axis=1).astype(np.float32)
        self.fav_cw[np.arange(4)[None, :] >= (nfav - 1)[:, None]] = 1.0  # no rounding gap
        # purchase memory: ring buffer of the last HIST purchases
        self.hist = np.zeros((N, HIST), dtype=np.int32)
        self.hist_n = np.zeros(N, dtype=np.int64)
        wid = max(7, len(str(N - 1)))
        self.user_ids = pa.array([f"u{i:0{wid}d}" for i in range(N)], pa.string())

    def seed_history(self):
        """Users who exist before the window bought 0-5 items before it (not emitted)."""
        rng = self.rng
        users = np.flatnonzero(self.user_arrival < 0)
        k = rng.integers(0, 6, users.size)
        u = np.repeat(users, k)
        cum, lo, hi = self.day_cdf(0)
        items = self.sample_fresh(rng, u, cum, lo, hi)
        self.remember(u, items)

    # -- one day -------------------------------------------------------------------------------
    def day_weights(self, d):
        L = self.item_launch
        alive = (L <= d) & (d <= self.item_end)
        age = np.maximum(d - L, 0).astype(np.float64)
        boost = np.where(L > 0, 1.0 + self.a.new_item_boost * np.exp(-age / 5.0), 1.0)
        return self.item_base * boost * alive

    def day_cdf(self, d):
        w = self.day_weights(d)
        cum = np.cumsum(w[self.order])
        lo = np.where(self.cat_start > 0, cum[np.maximum(self.cat_start - 1, 0)], 0.0)
        hi = cum[self.cat_end - 1]
        return cum, lo, hi

    def sample_fresh(self, rng, u, cum, lo, hi):
        """Items for users u: a favourite category with prob fav_share, else any category by size;
        then an item of that category by today's popularity."""
        n = u.size
        r = rng.random(n)
        slot = np.sum(r[:, None] > self.fav_cw[u], axis=1)
        cat = self.fav[u, np.minimum(slot, 3)].astype(np.int64)
        explore = rng.random(n) >= self.a.fav_share
        cat[explore] = rng.choice(self.C, explore.sum(), p=self.cat_p)
        empty = hi[cat] <= lo[cat]
        x = rng.random(n)
        target = lo[cat] + x * (hi[cat] - lo[cat])
        pos = np.searchsorted(cum, target, side="right")
        pos = np.clip(pos, self.cat_start[cat], self.cat_end[cat] - 1)
        if empty.any():  # a category with nothing alive today: any item by popularity
            pos[empty] = np.minimum(np.searchsorted(cum, x[empty] * cum[-1], side="right"),
                                    len(cum) - 1)
        return self.order[pos].astype(np.int32)

    def remember(self, u, items):
        """Append purchases (in time order) to the users' ring buffers."""
        if u.size == 0:
            return
        o = np.argsort(u, kind="stable")
        u, items = u[o], items[o]
        starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
        sizes = np.diff(np.r_[starts, u.size])
        rank = np.arange(u.size) - np.repeat(starts, sizes)
        keep = rank >= np.repeat(sizes, sizes) - HIST  # only the last HIST of a day matter
        slot = (self.hist_n[u] + rank) % HIST
        self.hist[u[keep], slot[keep]] = items[keep]
        self.hist_n[u[starts]] += sizes

    def from_history(self, rng, u):
        """One of each user's remembered purchases (uniform), -1 where there is none."""
        n = np.minimum(self.hist_n[u], HIST)
        j = (rng.random(u.size) * np.maximum(n, 1)).astype(np.int64)
        # slot of the j-th most recent purchase
        slot = (self.hist_n[u] - 1 - j) % HIST
        out = self.hist[u, slot]
        return np.where(n > 0, out, -1).astype(np.int32)

    def day(self, d):
        a = self.a
        rng = np.random.default_rng([a.seed, 0xDA7, d])
        date = self.first + dt.timedelta(days=d)
        arrived = self.user_arrival <= d
        lam = self.rate * WEEKDAY_FACTOR[date.weekday()]
        m = a.session_mean
        p = np.minimum(1.0, lam / m)
        active = arrived & (rng.random(self.N) < p)
        active |= self.user_arrival == d  # a new user's first day
        users = np.flatnonzero(active)
        extra = np.maximum(lam[users], m) - 1.0
        sizes = 1 + rng.poisson(extra)
        u = np.repeat(users, sizes).astype(np.int64)
        n = u.size
        # clock: session start from the diurnal profile, ~2 min between a session's events
        hour = rng.choice(24, users.size, p=HOUR_PROFILE / HOUR_PROFILE.sum())
        start = (hour * 3600 + rng.random(users.size) * 3600.0) * 1e6
        gaps = rng.exponential(120e6, n)
        first = np.r_[0, np.cumsum(sizes)[:-1]]
        gaps[first] = 0.0
        c = np.cumsum(gaps)
        off = np.repeat(start - c[first], sizes) + c
        off = np.minimum(off, 86_400e6 - 1).astype(np.int64)
        day0 = int((date - dt.date(1970, 1, 1)).days) * 86_400_000_000
        ts = day0 + off
        # event types
        r = rng.random(n)
        etype = np.full(n, PURCHASE, dtype=np.int8)
        etype[r < a.view_share] = VIEW
        etype[(r >= a.view_share) & (r < a.view_share + a.return_share)] = RETURN
        item = np.full(n, -1, dtype=np.int32)
        hist_item = self.from_history(rng, u)
        ok = (hist_item >= 0) & (self.item_end[np.maximum(hist_item, 0)] >= d)  # not discontinued
        rr = rng.random(n)
        use_hist = ok & (((etype == PURCHASE) & (rr < a.repeat_prob)) |
                         ((etype == VIEW) & (rr < 0.2)) | (etype == RETURN))
        item[use_hist] = hist_item[use_hist]
        etype[(etype == RETURN) & ~use_hist] = VIEW  # nothing to return: a view instead
        fresh = item < 0
        cum, lo, hi = self.day_cdf(d)
        item[fresh] = self.sample_fresh(rng, u[fresh], cum, lo, hi)
        # quantities: >= 1 for purchases, negative for returns, null for views
        qty = rng.geometric(0.55, n).astype(np.float64)
        value = np.where(etype == RETURN, -qty, qty)
        # a few exact duplicate rows
        dup = np.flatnonzero(rng.random(n) < a.dup_share)
        if dup.size:
            u, item, etype, ts, value = (np.concatenate([x, x[dup]]) for x in (u, item, etype, ts, value))
        o = np.lexsort((item, u, ts))
        u, item, etype, ts, value = u[o], item[o], etype[o], ts[o], value[o]
        table = pa.table({
            "user_id": self.user_ids.take(pa.array(u)),
            "item_id": self.item_ids.take(pa.array(item)),
            "event_type": EVENT_TYPE_ARRAY.take(pa.array(etype)),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "value": pa.array(value, pa.float64(), mask=etype == VIEW),
        }, schema=BEHAVIOR_SCHEMA)
        # remember today's purchases for repeats and returns of later days
        buy = etype == PURCHASE
        self.remember(u[buy], item[buy])
        return date, table, u, item, etype

    # -- driver --------------------------------------------------------------------------------
    def run(self, out: Path):
        a = self.a
        t0 = time.perf_counter()
        pools = [pl for pl in load_pools(Path(a.data_dir)) if pl[1] in a.sources]
        self.build_items(pools)
        self.build_users()
        self.seed_history()
        t_setup = time.perf_counter() - t0
        for sub in ("behavior", "catalog"):
            shutil.rmtree(out / sub, ignore_errors=True)
        cat = self.catalog_table()
        for d in sorted({self.first, self.end}):
            write_parquet(cat, out / "catalog" / f"dt={d}" / "part-0.parquet", a.row_group_size)
        M = self.M
        item_events = np.zeros(M, dtype=np.int64)
        type_events = np.zeros(3, dtype=np.int64)
        user_events = np.zeros(self.N, dtype=np.int32)
        user_eval = np.zeros(self.N, dtype=bool)
        pair_days, pair_total = [], 0  # distinct (user, item) purchases per day
        new_item_events, rows_total = 0, 0
        for d in range(self.D):
            date, table, u, item, etype = self.day(d)
            write_parquet(table, out / "behavior" / f"dt={date}" / "part-0.parquet", a.row_group_size)
            rows_total += table.num_rows
            if d < self.W:
                item_events += np.bincount(item, minlength=M)
                type_events += np.bincount(etype, minlength=3)
                user_events += np.bincount(u, minlength=self.N).astype(np.int32)
                new_item_events += int(np.sum(self.item_launch[item] > 0))
                keys = np.unique(u[etype == PURCHASE] * M + item[etype == PURCHASE])
                pair_total += keys.size
                pair_days.append(keys)
            else:
                user_eval[u] = True
                eval_rows, eval_users = table.num_rows, int(user_eval.sum())
                pos = etype != RETURN
                eval_truth_pairs = np.unique(u[pos] * M + item[pos]).size
            if a.verbose:
                print(f"  {date}: {table.num_rows:,} rows", file=sys.stderr)
        distinct_pairs = np.unique(np.concatenate(pair_days)).size if pair_days else 0
        del pair_days
        t_total = time.perf_counter() - t0
        titles = pc.count_distinct(pa.array(self.item_title)).as_py()
        summary = {
            "first_day": str(self.first), "last_window_day": str(self.end - dt.timedelta(days=1)),
            "eval_day": str(self.end), "rows_total": rows_total,
            "window_events": int(type_events.sum()),
            "window_events_by_type": {t: int(x) for t, x in zip(EVENT_TYPES, type_events)},
            "events_per_user_window": round(float(type_events.sum()) / self.N, 2),
            "users_active_window": int(np.sum(user_events > 0)),
            "user_events_window_p50_p90_p99_max": [int(x) for x in np.percentile(
                user_events[user_events > 0], [50, 90, 99, 100], method="lower")] if user_events.any() else [],
            "users_new_in_window": int(np.sum((self.user_arrival > 0) & (self.user_arrival < self.W))),
            "repeat_purchase_share": round(1.0 - distinct_pairs / max(pair_total, 1), 4),
            "item_popularity_gini": round(gini(item_events), 4),
            "items_with_events": int(np.sum(item_events > 0)),
            "top1pct_items_event_share": round(float(np.sort(item_events)[::-1][:max(1, M // 100)].sum()
                                                     / max(item_events.sum(), 1)), 4),
            "new_item_event_share": round(new_item_events / max(int(type_events.sum()), 1), 4),
            "items_launched_in_window": int(np.sum(self.item_launch > 0)),
            "items_unavailable": int(np.sum(~self.item_available)),
            "categories": self.C,
            "distinct_titles": titles,
            "eval_day_rows": eval_rows, "eval_day_users": eval_users,
            "eval_day_truth_pairs": eval_truth_pairs,
        }
        meta = {"args": {k: v for k, v in vars(a).items() if k not in ("out", "verbose", "self_check", "data_dir")},
                "summary": summary, "categories": {n: int(c) for n, c in zip(self.cat_names, self.cat_count)}}
        (out / "_synth.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        return summary, {"setup_s": round(t_setup, 2), "total_s": round(t_total, 2)}


def self_check(out: Path, a):
    """Read the files back and check the contract, the order and a few counts."""
    errors = []
    cats = sorted((out / "catalog").glob("dt=*/part-0.parquet"))
    cat = pq.read_table(cats[-1])
    if cat.schema != CATALOG_SCHEMA:
        errors.append(f"catalog schema {cat.schema}")
    if cat.num_rows != a.items or pc.count_distinct(cat["item_id"]).as_py() != a.items:
        errors.append("catalog ids not unique / wrong count")
    if pc.sum(pc.is_null(cat["title"])).as_py():
        errors.append("null title")
    if [p.read_bytes() for p in cats].count(cats[0].read_bytes()) != len(cats):
        errors.append("catalog snapshots differ")
    ids = cat["item_id"]
    days = sorted((out / "behavior").glob("dt=*/part-0.parquet"))
    if len(days) != a.days:
        errors.append(f"{len(days)} behavior partitions, expected {a.days}")
    rows = 0
    for p in days:
        t = pq.read_table(p)
        rows += t.num_rows
        if t.schema != BEHAVIOR_SCHEMA:
            errors.append(f"{p}: schema {t.schema}")
        day = dt.date.fromisoformat(p.parent.name[3:])
        lo = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
        ts = t["ts"]
        if pc.min(ts).as_py() < lo or pc.max(ts).as_py() >= lo + dt.timedelta(days=1):
            errors.append(f"{p}: ts outside its day")
        if not pc.all(pc.is_in(t["event_type"], pa.array(list(EVENT_TYPES)))).as_py():
            errors.append(f"{p}: unknown event type")
        if not pc.all(pc.is_in(t["item_id"], ids)).as_py():
            errors.append(f"{p}: item not in catalog")
        if pc.sum(pc.is_null(t["user_id"])).as_py() or pc.sum(pc.is_null(t["ts"])).as_py():
            errors.append(f"{p}: null ids or ts")
        s = t.sort_by([("ts", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")])
        if not s.equals(t):
            errors.append(f"{p}: not sorted by ts, user_id, item_id")
    return rows, errors


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--days", type=int, default=61, help="total days: window + 1 evaluation day (61)")
    p.add_argument("--events-per-user-window", type=float, required=True,
                   help="mean events per user in the window (all days but the last)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--end-date", default="2024-03-31", help="the last (evaluation) day")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"),
                   help="the real datasets (titles): ../shared/data")
    p.add_argument("--sources", type=lambda x: x.split(","), default=list(FAMILY_SHARE),
                   help="title families to use, comma-separated: retail (Online Retail), movie "
                        "(MovieLens), magazine, giftcard (Amazon); MovieLens and Amazon are research-only")
    p.add_argument("--zipf", type=float, default=0.9, help="item popularity exponent")
    p.add_argument("--fav-share", type=float, default=0.85, help="fresh picks in favourite categories")
    p.add_argument("--repeat-prob", type=float, default=0.3,
                   help="probability a purchase re-buys one of the user's last 16 purchases")
    p.add_argument("--view-share", type=float, default=0.30)
    p.add_argument("--return-share", type=float, default=0.03)
    p.add_argument("--dup-share", type=float, default=0.001)
    p.add_argument("--session-mean", type=float, default=3.0, help="mean events per active day")
    p.add_argument("--activity-sigma", type=float, default=1.2, help="log-normal sigma of user activity")
    p.add_argument("--new-user-share", type=float, default=0.25)
    p.add_argument("--new-item-share", type=float, default=0.15)
    p.add_argument("--new-item-boost", type=float, default=4.0)
    p.add_argument("--discontinued-share", type=float, default=0.02)
    p.add_argument("--row-group-size", type=int, default=262_144)
    p.add_argument("--self-check", action="store_true", help="read the output back and check it")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args()
    if a.days < 2 or a.users < 1 or a.items < 100:
        p.error("need --days >= 2, --users >= 1, --items >= 100")
    if not a.sources or set(a.sources) - set(FAMILY_SHARE):
        p.error(f"--sources: choose from {','.join(FAMILY_SHARE)}")
    a.out.mkdir(parents=True, exist_ok=True)
    summary, timing = Generator(a).run(a.out)
    size = sum(f.stat().st_size for f in a.out.rglob("*.parquet"))
    print(json.dumps({"out": str(a.out), **timing, "parquet_bytes": size, **summary}, indent=1))
    if a.self_check:
        t = time.perf_counter()
        rows, errors = self_check(a.out, a)
        ok = rows == summary["rows_total"] and not errors
        print(f"self-check: {'OK' if ok else 'FAILED'} ({rows:,} rows read back in "
              f"{time.perf_counter() - t:.1f} s)")
        for e in errors[:20]:
            print("  " + e)
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
