//! The published metrics recomputed by a second, independent, deliberately plain
//! implementation from the published tables and the raw input files (README.md "Metrics").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use arrow::array::{Array, AsArray};

use crate::common::*;

/// (user, item, event_type, ts) rows of one raw behavior partition of the tiny fixture.
pub fn raw_events(dt: &str) -> Vec<(String, String, String, i64)> {
    let path = repo().join(format!("fixtures/tiny/behavior/dt={dt}/part-0.parquet"));
    let Ok(file) = std::fs::File::open(&path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 4096).unwrap() {
        let b = b.unwrap();
        let ts = b
            .column_by_name("ts")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .clone();
        let (u, i, e) = (
            col_strings(&b, "user_id"),
            col_strings(&b, "item_id"),
            col_strings(&b, "event_type"),
        );
        for r in 0..b.num_rows() {
            out.push((u[r].clone(), i[r].clone(), e[r].clone(), ts.value(r)));
        }
    }
    out
}

fn lists(out: &Path, dt: &str) -> BTreeMap<String, Vec<String>> {
    let f = std::fs::File::open(published_file(out, "recommendations", dt)).unwrap();
    let mut rows: Vec<(String, i32, String)> = Vec::new();
    for b in parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 4096).unwrap() {
        let b = b.unwrap();
        let (u, r, i) = (
            col_strings(&b, "user_id"),
            col_i32(&b, "rank"),
            col_strings(&b, "item_id"),
        );
        rows.extend((0..b.num_rows()).map(|j| (u[j].clone(), r[j], i[j].clone())));
    }
    rows.sort();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (u, _, i) in rows {
        out.entry(u).or_default().push(i);
    }
    out
}

/// The six ranking metrics at K of `lists` against `truth`, over users with truth and a list.
fn ranking(
    lists: &BTreeMap<String, Vec<String>>,
    truth: &BTreeMap<String, BTreeSet<String>>,
    k: usize,
) -> [f64; 6] {
    let (mut recall, mut precision, mut ndcg, mut mrr, mut hit, mut ap, mut n) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (user, relevant) in truth {
        let Some(list) = lists.get(user) else {
            continue;
        };
        n += 1.0;
        let top: Vec<&String> = list.iter().take(k).collect();
        let hits: Vec<usize> = top
            .iter()
            .enumerate()
            .filter(|(_, i)| relevant.contains(**i))
            .map(|(r, _)| r + 1)
            .collect();
        recall += hits.len() as f64 / relevant.len() as f64;
        precision += hits.len() as f64 / k as f64;
        let dcg: f64 = hits.iter().map(|r| 1.0 / ((*r as f64) + 1.0).log2()).sum();
        let idcg: f64 = (1..=relevant.len().min(k))
            .map(|r| 1.0 / ((r as f64) + 1.0).log2())
            .sum();
        ndcg += dcg / idcg;
        mrr += hits.first().map_or(0.0, |r| 1.0 / *r as f64);
        hit += if hits.is_empty() { 0.0 } else { 1.0 };
        // Average precision: precision at each hit's rank, over min(|G|, K).
        ap += hits
            .iter()
            .enumerate()
            .map(|(nth, r)| (nth + 1) as f64 / *r as f64)
            .sum::<f64>()
            / relevant.len().min(k) as f64;
    }
    [
        recall / n,
        precision / n,
        ndcg / n,
        mrr / n,
        hit / n,
        ap / n,
    ]
}

#[test]
fn published_metrics_match_an_independent_recomputation() {
    let tmp = tempfile::tempdir().unwrap();
    crate::analyst::tiny_outputs(tmp.path()); // publishes 2024-01-04 and 2024-01-05, ks = [3, 5]
    let out = tmp.path().join("out");

    // Ground truth of 2024-01-05: distinct (user, item) of the day's events of a type with a
    // positive weight (the default of `events.truth_types`): returns (weight 0) are no hit.
    let day = raw_events("2024-01-05");
    let returned: BTreeSet<(String, String)> = day
        .iter()
        .filter(|(_, _, e, _)| e == "return")
        .map(|(u, i, _, _)| (u.clone(), i.clone()))
        .collect();
    let mut truth: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (u, i, _, _) in day.iter().filter(|(_, _, e, _)| e != "return") {
        truth.entry(u.clone()).or_default().insert(i.clone());
    }
    assert!(
        returned
            .iter()
            .any(|(u, i)| !truth.get(u).is_some_and(|t| t.contains(i))),
        "the fixture's evaluated day needs a return that is the only event of its pair"
    );
    let model = lists(&out, "2024-01-04");

    // The baseline: events per available item in 2023-12-29..2024-01-04 (deduplicated), most
    // popular first, ties by id, minus each user's items of that window.
    let window: Vec<(String, String, String, i64)> = {
        let mut all: Vec<_> = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
            .iter()
            .flat_map(|d| raw_events(d))
            .collect();
        all.sort();
        all.dedup();
        all
    };
    let category: HashMap<String, String> = {
        let f =
            std::fs::File::open(repo().join("fixtures/tiny/catalog/dt=2024-01-01/part-0.parquet"))
                .unwrap();
        let mut m = HashMap::new();
        for b in parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 4096).unwrap() {
            let b = b.unwrap();
            m.extend(
                col_strings(&b, "item_id")
                    .into_iter()
                    .zip(col_strings(&b, "category")),
            );
        }
        m
    };
    let unavailable: BTreeSet<String> = {
        let f =
            std::fs::File::open(repo().join("fixtures/tiny/catalog/dt=2024-01-01/part-0.parquet"))
                .unwrap();
        let mut s = BTreeSet::new();
        for b in parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 4096).unwrap() {
            let b = b.unwrap();
            let ids = col_strings(&b, "item_id");
            let avail = b.column_by_name("available").unwrap().as_boolean().clone();
            s.extend(
                ids.into_iter()
                    .enumerate()
                    .filter(|(r, _)| avail.is_valid(*r) && !avail.value(*r))
                    .map(|(_, i)| i),
            );
        }
        s
    };
    let mut counts: HashMap<String, i64> = HashMap::new();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (u, i, _, _) in &window {
        *counts.entry(i.clone()).or_default() += 1;
        seen.entry(u.clone()).or_default().insert(i.clone());
    }
    let mut popular: Vec<(i64, String)> = counts
        .into_iter()
        .filter(|(i, _)| !unavailable.contains(i))
        .map(|(i, n)| (-n, i))
        .collect();
    popular.sort();
    let baseline: BTreeMap<String, Vec<String>> = truth
        .keys()
        .filter(|u| model.contains_key(*u))
        .map(|u| {
            (
                u.clone(),
                popular
                    .iter()
                    .map(|(_, i)| i.clone())
                    .filter(|i| !seen[u].contains(i))
                    .take(5)
                    .collect(),
            )
        })
        .collect();

    // The published rows.
    let f = std::fs::File::open(published_file(&out, "metrics", "2024-01-05")).unwrap();
    let mut published: HashMap<(String, String, Option<i32>), f64> = HashMap::new();
    for b in parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 4096).unwrap() {
        let b = b.unwrap();
        let (m, s) = (col_strings(&b, "metric"), col_strings(&b, "segment"));
        let k = b
            .column_by_name("k")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .clone();
        let v = b
            .column_by_name("value")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone();
        for r in 0..b.num_rows() {
            if v.is_valid(r) {
                published.insert(
                    (
                        m[r].clone(),
                        s[r].clone(),
                        k.is_valid(r).then(|| k.value(r)),
                    ),
                    v.value(r),
                );
            }
        }
    }
    let mut checked = 0;
    for (segment, lists) in [("all", &model), ("baseline_popular", &baseline)] {
        for k in [3, 5] {
            let want = ranking(lists, &truth, k);
            for (metric, value) in ["recall", "precision", "ndcg", "mrr", "hit_rate", "map"]
                .iter()
                .zip(want)
            {
                let got = published[&(metric.to_string(), segment.to_string(), Some(k as i32))];
                assert!(
                    (got - value).abs() < 1e-6,
                    "{metric}@{k} {segment}: published {got}, recomputed {value}"
                );
                checked += 1;
            }
        }
        let evaluated = truth.keys().filter(|u| model.contains_key(*u)).count() as f64;
        let got = published[&("eval_user_coverage".to_string(), segment.to_string(), None)];
        assert!((got - evaluated / truth.len() as f64).abs() < 1e-9);
    }
    // Coverage of 2024-01-05's own lists: distinct items in the first K / available items.
    let own = lists(&out, "2024-01-05");
    for k in [3usize, 5] {
        let items: BTreeSet<&String> = own.values().flat_map(|l| l.iter().take(k)).collect();
        let want = items.len() as f64 / (40 - unavailable.len()) as f64;
        let got = published[&(
            "catalog_coverage".to_string(),
            "all".to_string(),
            Some(k as i32),
        )];
        assert!(
            (got - want).abs() < 1e-9,
            "catalog_coverage@{k}: {got} vs {want}"
        );
    }
    assert_eq!(checked, 24);

    // new_item_share@5 of 2024-01-05's own lists: items without an event before 2024-01-04
    // (the window's last 2 days are 01-04 and 01-05).
    let established: BTreeSet<String> = ["2024-01-01", "2024-01-02", "2024-01-03"]
        .iter()
        .flat_map(|d| raw_events(d))
        .map(|(_, i, _, _)| i)
        .collect();
    let recs: Vec<&String> = own.values().flat_map(|l| l.iter().take(5)).collect();
    let want =
        recs.iter().filter(|i| !established.contains(**i)).count() as f64 / recs.len() as f64;
    let got = published[&("new_item_share".to_string(), "all".to_string(), Some(5))];
    assert!(
        (got - want).abs() < 1e-9,
        "new_item_share@5: {got} vs {want}"
    );

    // Spark's convention: the same sums over every user with a list of 2024-01-04.
    for k in [3, 5] {
        let with_truth = ranking(&model, &truth, k);
        let evaluated = truth.keys().filter(|u| model.contains_key(*u)).count() as f64;
        let got = published[&(
            "spark_precision".to_string(),
            "all".to_string(),
            Some(k as i32),
        )];
        let want = with_truth[1] * evaluated / model.len() as f64;
        assert!(
            (got - want).abs() < 1e-9,
            "spark_precision@{k}: {got} vs {want}"
        );
    }

    // New users (first event of the window 2023-12-29..2024-01-04 on 01-03 or 01-04,
    // evaluate.new_days = 2) and returning users, recomputed on their own lists.
    let mut first_day: BTreeMap<String, &str> = BTreeMap::new();
    for d in ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"] {
        for (u, _, _, _) in raw_events(d) {
            first_day.entry(u).or_insert(d);
        }
    }
    let mut segments_checked = 0;
    for (segment, new) in [("new_users", true), ("returning_users", false)] {
        let part: BTreeMap<String, Vec<String>> = model
            .iter()
            .filter(|(u, _)| (first_day[*u] >= "2024-01-03") == new)
            .map(|(u, l)| (u.clone(), l.clone()))
            .collect();
        if !truth.keys().any(|u| part.contains_key(u)) {
            assert!(
                !published.contains_key(&("recall".to_string(), segment.to_string(), Some(5))),
                "{segment}: no evaluated user, no row"
            );
            continue;
        }
        let want = ranking(&part, &truth, 5)[0];
        let got = published[&("recall".to_string(), segment.to_string(), Some(5))];
        assert!(
            (got - want).abs() < 1e-9,
            "recall@5 {segment}: {got} vs {want}"
        );
        segments_checked += 1;
    }
    assert!(segments_checked >= 1);

    // Per category: G(u) restricted to the category's items, users with such an item.
    let mut categories_checked = 0;
    for c in ["garden", "kitchen", "stationery", "toys"] {
        let restricted: BTreeMap<String, BTreeSet<String>> = truth
            .iter()
            .map(|(u, items)| {
                let items: BTreeSet<String> = items
                    .iter()
                    .filter(|i| category[*i] == c)
                    .cloned()
                    .collect();
                (u.clone(), items)
            })
            .filter(|(_, items)| !items.is_empty())
            .collect();
        let key = ("recall".to_string(), format!("category={c}"), Some(5));
        if !restricted.keys().any(|u| model.contains_key(u)) {
            continue;
        }
        let want = ranking(&model, &restricted, 5)[0];
        let got = published[&key];
        assert!(
            (got - want).abs() < 1e-9,
            "recall@5 category={c}: {got} vs {want}"
        );
        categories_checked += 1;
    }
    assert!(
        categories_checked >= 2,
        "{categories_checked} categories checked"
    );
}

/// `recjob evaluate` republishes only the metrics of a published date: idempotent, and able to
/// refresh history (here: D-1 gets published after D's run, so D becomes evaluable).
#[test]
fn evaluate_republishes_only_the_metrics_of_a_published_date() {
    let tmp = tempfile::tempdir().unwrap();
    let config = crate::analyst::tiny_outputs(tmp.path());
    let cfg = config.to_str().unwrap();
    let out = tmp.path().join("out");
    // Rows as published, without run_id (an evaluation's rows carry its own id).
    let metrics_rows =
        |dt: &str| -> Vec<String> { file_rows(&published_file(&out, "metrics", dt), &["run_id"]) };
    let before = metrics_rows("2024-01-05");
    let old_metrics = published_file(&out, "metrics", "2024-01-05");
    let recs_file = published_file(&out, "recommendations", "2024-01-05");
    let recs = std::fs::read(&recs_file).unwrap();
    let o = recjob(
        tmp.path(),
        &["evaluate", "--config", cfg, "--date", "2024-01-05"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(metrics_rows("2024-01-05"), before, "idempotent");
    assert_eq!(
        published_file(&out, "recommendations", "2024-01-05"),
        recs_file
    );
    assert_eq!(
        std::fs::read(&recs_file).unwrap(),
        recs,
        "only metrics are rewritten"
    );
    let m = manifest(&out, "2024-01-05");
    assert!(m["metrics_evaluated_at"].is_string());
    // The new metrics are a new file whose rows carry the evaluation's id; the old one is gone.
    let new_metrics = published_file(&out, "metrics", "2024-01-05");
    assert_ne!(new_metrics, old_metrics);
    assert!(
        !old_metrics.exists(),
        "the superseded metrics file is removed"
    );
    let metrics_run = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "metrics")
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(metrics_run.ends_with("-evaluate"), "{metrics_run}");
    for b in read_file(&new_metrics) {
        assert!(col_strings(&b, "run_id").iter().all(|r| *r == metrics_run));
    }
    let report = std::fs::read_to_string(out.join("reports/dt=2024-01-05/report.html")).unwrap();
    assert!(
        report.contains("<svg")
            && report.contains("recall@5")
            && report.contains("baseline recall@5"),
        "{report}"
    );
    // A larger configured K cannot grade lists the run made shorter: the published K (5) holds.
    let o = recjob(
        tmp.path(),
        &[
            "evaluate",
            "--config",
            cfg,
            "--date",
            "2024-01-05",
            "--set",
            "topk.k=10",
            "--set",
            "evaluate.ks=[3, 5, 10]",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("evaluating at the published lists' topk.k"),
        "{}",
        stderr(&o)
    );
    assert_eq!(metrics_rows("2024-01-05"), before, "no metric at K = 10");
    let report = std::fs::read_to_string(out.join("reports/dt=2024-01-05/report.html")).unwrap();
    assert!(report.contains("baseline recall@5"), "the report at K = 5");
    // A shorter configured window is not an input change: the run's window holds.
    let o = recjob(
        tmp.path(),
        &[
            "evaluate",
            "--config",
            cfg,
            "--date",
            "2024-01-05",
            "--set",
            "window.lookback_days=6",
            "--set",
            "evaluate.new_days=6",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the published run's window.lookback_days"),
        "{}",
        stderr(&o)
    );

    // 2024-01-04 was not evaluable (2024-01-03 unpublished); publish 2024-01-03, re-evaluate.
    let not_evaluated = metrics_rows("2024-01-04");
    assert!(
        not_evaluated
            .iter()
            .any(|r| r.contains("not evaluated: no recommendations published for 2024-01-03"))
    );
    let o = recjob(
        tmp.path(),
        &["run", "--config", cfg, "--date", "2024-01-03"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = recjob(
        tmp.path(),
        &["evaluate", "--config", cfg, "--date", "2024-01-04"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let refreshed = metrics_rows("2024-01-04");
    assert!(
        refreshed
            .iter()
            .any(|r| r.starts_with("recall|5|0.") || r.starts_with("recall|5|1")),
        "{refreshed:?}"
    );
    assert!(!refreshed.iter().any(|r| r.contains("not evaluated")));

    let o = recjob(
        tmp.path(),
        &["evaluate", "--config", cfg, "--date", "2024-01-07"],
    );
    assert_eq!(code(&o), 3, "an unpublished date: {}", stderr(&o));

    // evaluate.max_categories caps the category segments.
    let categories = |rows: &[String]| -> BTreeSet<String> {
        rows.iter()
            .filter_map(|r| r.split('|').find(|f| f.starts_with("category=")))
            .map(str::to_string)
            .collect()
    };
    assert!(categories(&before).len() >= 2, "{before:?}");
    for (max, want) in [(0usize, 0usize), (1, 1)] {
        let o = recjob(
            tmp.path(),
            &[
                "evaluate",
                "--config",
                cfg,
                "--date",
                "2024-01-05",
                "--set",
                &format!("evaluate.max_categories={max}"),
            ],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let got = categories(&metrics_rows("2024-01-05"));
        assert!(
            got.len() <= want && (want == 0 || !got.is_empty()),
            "max {max}: {got:?}"
        );
    }
}
