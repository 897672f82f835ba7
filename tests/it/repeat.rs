//! The sparse terms (README "The model"): each published `repeat_score` and `neighbor_score`
//! recomputed from the raw events of the tiny fixture, inside scores that stay an exact top-K.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::common::*;
use crate::metrics::raw_events;

/// The fixture's event weights, as `tiny_config` sets them.
fn event_weight(event_type: &str) -> f64 {
    match event_type {
        "purchase" => 1.0,
        "view" => 0.25,
        _ => 0.0,
    }
}

/// The days of the 7-day window ending on 2024-01-05.
const WINDOW: [&str; 7] = [
    "2023-12-30",
    "2023-12-31",
    "2024-01-01",
    "2024-01-02",
    "2024-01-03",
    "2024-01-04",
    "2024-01-05",
];

/// w_ui of the window: the distinct events' weights, each halved every 14 days of age counted
/// from the end of the run date.
fn window_weights() -> BTreeMap<(String, String), f64> {
    let end_micros = 1_704_499_200_000_000_i64; // 2024-01-06T00:00:00Z
    let mut events: Vec<(String, String, String, i64)> =
        WINDOW.iter().flat_map(|d| raw_events(d)).collect();
    events.sort();
    events.dedup();
    let mut w = BTreeMap::new();
    for (u, i, e, ts) in events {
        let age_days = (end_micros - ts).max(0) as f64 / 86_400e6;
        *w.entry((u, i)).or_insert(0.0) += event_weight(&e) * 0.5f64.powf(age_days / 14.0);
    }
    w
}

/// d_ui of the window: the days (partitions) on which the user had an event of a type with a
/// positive weight with the item.
fn window_days() -> BTreeMap<(String, String), u32> {
    let mut days = BTreeMap::new();
    for d in WINDOW {
        let pairs: HashSet<(String, String)> = raw_events(d)
            .into_iter()
            .filter(|e| event_weight(&e.2) > 0.0)
            .map(|(u, i, _, _)| (u, i))
            .collect();
        for pair in pairs {
            *days.entry(pair).or_insert(0) += 1;
        }
    }
    days
}

/// The repeat term of user `u` and item `i`: rho ln(1 + d_ui), 0 without a day.
fn repeat_term(days: &BTreeMap<(String, String), u32>, rho: f64, u: &str, i: &str) -> f64 {
    let d = days.get(&(u.to_string(), i.to_string())).copied();
    rho * f64::from(d.unwrap_or(0)).ln_1p()
}

/// (user, rank, item, score, repeat_score, source, neighbor_score): one published row.
type Row = (String, i32, String, f32, f32, String, f32);

/// The published rows of 2024-01-05.
fn published(out: &std::path::Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in read_file(&published_file(out, "recommendations", "2024-01-05")) {
        let (u, r, i, s, x, src) = (
            col_strings(&b, "user_id"),
            col_i32(&b, "rank"),
            col_strings(&b, "item_id"),
            col_f32(&b, "score"),
            col_f32(&b, "repeat_score"),
            col_strings(&b, "source"),
        );
        let n = col_f32(&b, "neighbor_score");
        for j in 0..b.num_rows() {
            let (user, item, source) = (u[j].clone(), i[j].clone(), src[j].clone());
            rows.push((user, r[j], item, s[j], x[j], source, n[j]));
        }
    }
    rows
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>() as f32
}

#[test]
fn the_repeat_term_counts_the_users_own_days_with_the_item_inside_an_exact_top_k() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let cfg = config.to_str().unwrap();
    let out = tmp.path().join("out");
    // A weight well above the default, so that the term visibly reorders the tiny lists.
    let rho = 0.3;
    let o = recjob(
        tmp.path(),
        &[
            "run",
            "--config",
            cfg,
            "--date",
            "2024-01-05",
            "--set",
            "hybrid.repeat_weight=0.3",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let table = |t: &str| read_file(&published_file(&out, t, "2024-01-05"));
    let users = vectors_by_id(&table("user_embeddings"), "user_id");
    let items = vectors_by_id(&table("item_vectors"), "item_id");
    let days = window_days();
    let expected = |u: &str, i: &str| -> f32 { repeat_term(&days, rho, u, i) as f32 };

    let rows = published(&out);
    let mut lists: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        lists.entry(r.0.as_str()).or_default().push(r);
    }
    let (mut repeats, mut again) = (0, 0);
    for (user, list) in &mut lists {
        list.sort_by_key(|r| r.1);
        if list[0].5 != "personal" {
            assert!(list.iter().all(|r| r.4 == 0.0), "{user}: popular rows");
            continue;
        }
        let u = &users[*user];
        for (_, rank, item, score, repeat, _, neighbor) in list.iter() {
            assert_eq!(*neighbor, 0.0, "the neighbour term is off by default");
            let want = expected(user, item);
            assert!(
                (repeat - want).abs() < 1e-6,
                "{user} rank {rank} {item}: repeat_score {repeat}, recomputed {want}"
            );
            let d = dot(u, &items[item]);
            assert!(
                (d + repeat - score).abs() < 1e-5,
                "{user} rank {rank} {item}: score {score} != dot {d} + repeat {repeat}"
            );
            repeats += usize::from(*repeat > 0.0);
            again += usize::from(days.get(&(user.to_string(), item.clone())) > Some(&1));
        }
        // Exact top-K with the term: no other candidate's dot + repeat beats the last row.
        let last = list.last().unwrap().3;
        let chosen: HashSet<&String> = list.iter().map(|r| &r.2).collect();
        for (item, v) in &items {
            if !chosen.contains(item) {
                let s = dot(u, v) + expected(user, item);
                assert!(s <= last + 1e-5, "{user}: {item} scores {s} > {last}");
            }
        }
    }
    assert!(repeats >= 10, "only {repeats} rows carry a repeat term");
    assert!(
        again >= 3,
        "only {again} rows of items the user had on two days or more"
    );

    // rho = 0 turns the term off: every row's repeat_score is 0.
    let o = recjob(
        tmp.path(),
        &[
            "run",
            "--config",
            cfg,
            "--date",
            "2024-01-05",
            "--force",
            "--set",
            "hybrid.repeat_weight=0",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let off = published(&out);
    assert!(off.iter().all(|r| r.4 == 0.0));
    assert_ne!(
        off.iter().map(|r| &r.2).collect::<Vec<_>>(),
        rows.iter().map(|r| &r.2).collect::<Vec<_>>(),
        "the term changes lists"
    );
}

/// The neighbour term's item similarities, naively from the window's binary user x item
/// matrix: s_ij = c_ij / (sqrt(n_i n_j) + 10), each target j keeping its `n` best sources
/// i != j (ties: the lower item id). Keyed (source, target).
fn kept_neighbors(
    weights: &BTreeMap<(String, String), f64>,
    n: usize,
) -> HashMap<(String, String), f64> {
    let mut by_item: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for ((u, i), w) in weights {
        if *w > 0.0 {
            by_item.entry(i.as_str()).or_default().insert(u.as_str());
        }
    }
    let mut kept = HashMap::new();
    for (j, users_j) in &by_item {
        let mut sims: Vec<(f64, &str)> = by_item
            .iter()
            .filter(|(i, _)| *i != j)
            .filter_map(|(i, users_i)| {
                let c = users_i.intersection(users_j).count() as f64;
                let n_ij = (users_i.len() * users_j.len()) as f64;
                (c > 0.0).then(|| (c / (n_ij.sqrt() + 10.0), *i))
            })
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        for (s, i) in sims.into_iter().take(n) {
            kept.insert((i.to_string(), j.to_string()), s);
        }
    }
    kept
}

/// With `hybrid.neighbor_weight` on, each personal row's `neighbor_score` is gamma D_u n_uj / max
/// over the candidates of n_uj', n_uj = sum over the user's items i (w_ui > 0) of s_ij (item-kNN of
/// the window, 3 neighbours per item) and D_u the user's largest dot product with a candidate
/// that has a sum, beside the repeat term; the score is the dot product
/// plus both, and the lists stay an exact top-K of that sum.
#[test]
fn the_neighbor_term_is_item_knn_of_the_window_inside_an_exact_top_k() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let cfg = config.to_str().unwrap();
    let out = tmp.path().join("out");
    let (rho, gamma) = (0.3, 0.5);
    let sets = [
        "hybrid.repeat_weight=0.3",
        "hybrid.neighbor_weight=0.5",
        "hybrid.neighbors=3",
    ];
    let mut args = vec!["run", "--config", cfg, "--date", "2024-01-05"];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let o = recjob(tmp.path(), &args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let table = |t: &str| read_file(&published_file(&out, t, "2024-01-05"));
    let users = vectors_by_id(&table("user_embeddings"), "user_id");
    let items = vectors_by_id(&table("item_vectors"), "item_id");
    let (weights, days) = (window_weights(), window_days());
    let kept = kept_neighbors(&weights, 3);
    let mut history: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for ((u, i), w) in &weights {
        if *w > 0.0 {
            history
                .entry(u.as_str())
                .or_default()
                .push((i.as_str(), *w));
        }
    }
    // n_uj over the candidates (the published item vectors), then scaled by the user's max.
    let sums = |u: &str| -> HashMap<&str, f64> {
        let mut out = HashMap::new();
        for j in items.keys() {
            let n: f64 = (history.get(u).into_iter().flatten())
                .filter_map(|(i, _)| kept.get(&(i.to_string(), j.clone())))
                .sum();
            out.insert(j.as_str(), n);
        }
        out
    };
    let rows = published(&out);
    let mut lists: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        lists.entry(r.0.as_str()).or_default().push(r);
    }
    let mut near = 0;
    for (user, list) in &mut lists {
        list.sort_by_key(|r| r.1);
        if list[0].5 != "personal" {
            assert!(
                list.iter().all(|r| r.4 == 0.0 && r.6 == 0.0),
                "{user}: popular rows"
            );
            continue;
        }
        let n = sums(user);
        let u = &users[*user];
        let max = n.values().copied().fold(0.0, f64::max);
        // D_u: the user's largest dot product among the candidates with a sum.
        let scale = (n.iter().filter(|(_, s)| **s > 0.0))
            .map(|(j, _)| dot(u, &items[*j]))
            .fold(0.0f32, f32::max);
        let terms = |item: &str| -> (f32, f32) {
            let repeat = repeat_term(&days, rho, user, item);
            let neighbor = if max > 0.0 && scale > 0.0 {
                gamma * f64::from(scale) * n[item] / max
            } else {
                0.0
            };
            (repeat as f32, neighbor as f32)
        };
        for (_, rank, item, score, repeat, _, neighbor) in list.iter() {
            let (want_r, want_n) = terms(item);
            assert!(
                (repeat - want_r).abs() < 1e-6 && (neighbor - want_n).abs() < 1e-5,
                "{user} rank {rank} {item}: repeat {repeat}, neighbour {neighbor}; recomputed {want_r}, {want_n}"
            );
            let d = dot(u, &items[item]);
            assert!(
                (d + repeat + neighbor - score).abs() < 1e-5,
                "{user} rank {rank} {item}: score {score} != dot {d} + {repeat} + {neighbor}"
            );
            near += usize::from(*neighbor > 0.0);
        }
        let last = list.last().unwrap().3;
        let chosen: HashSet<&String> = list.iter().map(|r| &r.2).collect();
        for (item, v) in &items {
            if !chosen.contains(item) {
                let (r, n) = terms(item);
                let s = dot(u, v) + r + n;
                assert!(s <= last + 1e-5, "{user}: {item} scores {s} > {last}");
            }
        }
    }
    assert!(near >= 10, "only {near} rows carry a neighbour term");
    // Every row's parts are the published score through `recjob sql` and why_user.sql too.
    let saved = |file: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let path = repo().join("sql/analyst").join(file);
        let args = [
            "sql",
            "--config",
            cfg,
            "-f",
            path.to_str().unwrap(),
            "--format",
            "json",
            "--param",
            "user_id=U03",
            "--param",
            "dt=2024-01-05",
        ];
        let o = recjob(tmp.path(), &[&args[..], extra].concat());
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let why = saved("why_user.sql", &[]);
    for row in &why {
        let x = |name: &str| row[name].as_f64().unwrap();
        let parts = x("model_score") + x("repeat_score") + x("neighbor_score");
        assert!((parts - x("score")).abs() < 2e-6, "{row}");
    }
    assert_eq!(why.len(), 5, "{why:?}");

    // item_neighbors is the reference's kept pairs of the candidates, best first.
    let mut published_pairs = HashMap::new();
    for b in table("item_neighbors") {
        let (i, r, n, s) = (
            col_strings(&b, "item_id"),
            col_i32(&b, "rank"),
            col_strings(&b, "neighbor_id"),
            col_f32(&b, "similarity"),
        );
        for k in 0..b.num_rows() {
            assert!(r[k] >= 1 && r[k] <= 3, "{} rank {}", i[k], r[k]);
            published_pairs.insert((n[k].clone(), i[k].clone()), f64::from(s[k]));
        }
    }
    let candidates_kept: HashMap<_, _> = (kept.iter())
        .filter(|((_, j), _)| items.contains_key(j))
        .map(|(p, s)| (p.clone(), *s))
        .collect();
    assert_eq!(published_pairs.len(), candidates_kept.len());
    for (pair, s) in &candidates_kept {
        assert!((published_pairs[pair] - s).abs() < 1e-6, "{pair:?}");
    }
    // why_neighbors.sql: for each of U03's rows, the user's items among the item's neighbours;
    // an item with a neighbour term has at least one, an item without has none.
    let mut because: HashMap<String, usize> = HashMap::new();
    for row in saved("why_neighbors.sql", &["--param", "lookback_days=7"]) {
        let (item, by) = (
            row["item_id"].as_str().unwrap(),
            row["because_item_id"].as_str().unwrap(),
        );
        let s = kept[&(by.to_string(), item.to_string())];
        assert!(
            (row["similarity"].as_f64().unwrap() - s).abs() < 1e-4,
            "{row}"
        );
        assert!(
            weights.contains_key(&("U03".to_string(), by.to_string())),
            "{row}"
        );
        *because.entry(item.to_string()).or_default() += 1;
    }
    for r in &lists["U03"] {
        assert_eq!(
            r.6 > 0.0,
            because.contains_key(&r.2),
            "U03 {}: {}",
            r.2,
            r.6
        );
    }

    // Turned off again, a rerun publishes no neighbour term and leaves no item_neighbors file.
    let o = recjob(
        tmp.path(),
        &["run", "--config", cfg, "--date", "2024-01-05", "--force"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(published(&out).iter().all(|r| r.6 == 0.0));
    assert!(!has_files(&out.join("item_neighbors/dt=2024-01-05")));
}
