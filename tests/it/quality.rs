//! Recommendation quality of the shipped configuration (`jobs/nightly.toml`): on a week of
//! Online Retail outside the month the defaults were chosen on, a backtest must beat the
//! popularity baseline (same exclusions) on recall@20 and ndcg@20 by a wide margin and cover
//! at least a quarter of the catalog, and it must publish nothing.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int32Type};

use crate::common::*;

#[test]
fn shipped_config_beats_popularity_on_an_unseen_week() {
    shared_data();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let table = tmp.path().join("backtest.parquet");
    let o = recjob(
        &repo(),
        &[
            "backtest",
            "--config",
            "jobs/nightly.toml",
            "--from",
            "2011-09-19",
            "--to",
            "2011-09-23",
            "--set",
            &format!("output.root={:?}", out.display().to_string()),
            "--output",
            table.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        stdout.contains("5 dates with behavior, 5 evaluated"),
        "{stdout}"
    );
    let mut at20: HashMap<String, (f64, f64)> = HashMap::new();
    for b in read_file(&table) {
        let metric = col_strings(&b, "metric");
        let k = b.column_by_name("k").unwrap().as_primitive::<Int32Type>();
        let model = b
            .column_by_name("model")
            .unwrap()
            .as_primitive::<Float64Type>();
        let base = b
            .column_by_name("baseline")
            .unwrap()
            .as_primitive::<Float64Type>();
        for (j, m) in metric.into_iter().enumerate() {
            if !k.is_null(j) && k.value(j) == 20 {
                at20.insert(m, (model.value(j), base.value(j)));
            }
        }
    }
    let (recall, ndcg, coverage) = (at20["recall"], at20["ndcg"], at20["catalog_coverage"]);
    assert!(
        recall.0 > 1.5 * recall.1,
        "recall@20 {recall:?} (model, baseline)"
    );
    assert!(ndcg.0 > 1.5 * ndcg.1, "ndcg@20 {ndcg:?}");
    assert!(coverage.0 >= 0.25, "catalog_coverage@20 {coverage:?}");
    assert!(
        !out.join("_manifests").exists() && !out.join("recommendations").exists(),
        "a backtest publishes nothing"
    );
}
