//! The repeat term (README "The model"): each published `repeat_score` recomputed from the raw
//! events of the tiny fixture, inside scores that stay an exact top-K.

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

/// w_ui of the 7-day window ending on 2024-01-05: the distinct events' weights, each halved
/// every 14 days of age counted from the end of the run date.
fn window_weights() -> BTreeMap<(String, String), f64> {
    let end_micros = 1_704_499_200_000_000_i64; // 2024-01-06T00:00:00Z
    let mut events: Vec<(String, String, String, i64)> = [
        "2023-12-30",
        "2023-12-31",
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ]
    .iter()
    .flat_map(|d| raw_events(d))
    .collect();
    events.sort();
    events.dedup();
    let mut w = BTreeMap::new();
    for (u, i, e, ts) in events {
        let age_days = (end_micros - ts).max(0) as f64 / 86_400e6;
        *w.entry((u, i)).or_insert(0.0) += event_weight(&e) * 0.5f64.powf(age_days / 14.0);
    }
    w
}

/// (user, rank, item, score, repeat_score, source): one published row.
type Row = (String, i32, String, f32, f32, String);

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
        for j in 0..b.num_rows() {
            rows.push((u[j].clone(), r[j], i[j].clone(), s[j], x[j], src[j].clone()));
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
fn the_repeat_term_is_the_users_own_decayed_history_inside_an_exact_top_k() {
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
    let weights = window_weights();
    let max_of: HashMap<&str, f64> = weights.iter().fold(HashMap::new(), |mut acc, ((u, _), w)| {
        let e = acc.entry(u.as_str()).or_insert(0.0f64);
        *e = e.max(*w);
        acc
    });
    let expected = |u: &str, i: &str| -> f32 {
        match weights.get(&(u.to_string(), i.to_string())) {
            Some(w) if *w > 0.0 => (rho * w / max_of[u]) as f32,
            _ => 0.0,
        }
    };

    let rows = published(&out);
    let mut lists: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        lists.entry(r.0.as_str()).or_default().push(r);
    }
    let mut repeats = 0;
    for (user, list) in &mut lists {
        list.sort_by_key(|r| r.1);
        if list[0].5 != "personal" {
            assert!(list.iter().all(|r| r.4 == 0.0), "{user}: popular rows");
            continue;
        }
        let u = &users[*user];
        for (_, rank, item, score, repeat, _) in list.iter() {
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
