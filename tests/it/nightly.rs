//! The nightly run end to end on real data: UCI Online Retail, the real model, two
//! consecutive dates (issue #2's acceptance), then rerun semantics.

use std::collections::{HashMap, HashSet};

use crate::common::*;

const OUT_TABLES: [&str; 5] = [
    "recommendations",
    "user_embeddings",
    "item_vectors",
    "similar_items",
    "metrics",
];

/// (user, item) pairs with an event in behavior partitions [first, last] of online retail.
fn window_pairs(first: &str, last: &str) -> HashMap<String, HashSet<String>> {
    let root = shared_data().join("online_retail/parquet/behavior");
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let dt = name.trim_start_matches("dt=");
        if dt < first || dt > last {
            continue;
        }
        for file in walk(&root.join(&name)) {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(
                std::fs::File::open(file).unwrap(),
                8192,
            )
            .unwrap();
            for b in reader {
                let b = b.unwrap();
                for (u, i) in col_strings(&b, "user_id")
                    .into_iter()
                    .zip(col_strings(&b, "item_id"))
                {
                    out.entry(u).or_default().insert(i);
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nights_on_online_retail_publish_exact_complete_lists() {
    let data = shared_data().join("online_retail/parquet");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let config = write_config(
        tmp.path(),
        &data.join("behavior"),
        &data.join("catalog"),
        &out,
        "[catalog]\navailable_column = \"is_merchandise\"\n",
    );
    let config = config.to_str().unwrap();
    // seen_in_window: this test proves that no window item comes back.
    let sets = [
        "--set",
        "window.lookback_days=30",
        "--set",
        "topk.k=20",
        "--set",
        "exclusions.policy=seen_in_window",
    ];
    for date in ["2011-11-29", "2011-11-30"] {
        let o = recjob(
            tmp.path(),
            &[&["run", "--config", config, "--date", date], &sets[..]].concat(),
        );
        assert_eq!(code(&o), 0, "run {date}: {}", stderr(&o));
    }
    let url = |t: &str| format!("{}/{t}/dt=2011-11-30/", out.display());
    let recs = read_table(&url("recommendations")).await;
    let users = vectors_by_id(&read_table(&url("user_embeddings")).await, "user_id");
    let items = vectors_by_id(&read_table(&url("item_vectors")).await, "item_id");
    let window = window_pairs("2011-11-01", "2011-11-30");

    // Every active user has exactly ranks 1..20, never a window item, scores descending.
    let mut lists: HashMap<String, Vec<(i32, String, f32, String)>> = HashMap::new();
    for b in &recs {
        let (u, r, i, s, src) = (
            col_strings(b, "user_id"),
            col_i32(b, "rank"),
            col_strings(b, "item_id"),
            col_f32(b, "score"),
            col_strings(b, "source"),
        );
        for j in 0..b.num_rows() {
            lists
                .entry(u[j].clone())
                .or_default()
                .push((r[j], i[j].clone(), s[j], src[j].clone()));
        }
    }
    let active: HashSet<&String> = window.keys().collect();
    assert_eq!(
        lists.keys().collect::<HashSet<_>>(),
        active,
        "recommendations cover exactly the window's users"
    );
    let mut personal = 0;
    for (user, list) in lists.iter_mut() {
        list.sort_by_key(|r| r.0);
        assert_eq!(
            list.iter().map(|r| r.0).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>(),
            "user {user}"
        );
        for w in list.windows(2) {
            assert!(w[0].2 >= w[1].2, "user {user}: scores rise {w:?}");
        }
        for (_, item, _, _) in list.iter() {
            assert!(
                !window[user].contains(item),
                "user {user}: window item {item} recommended"
            );
        }
        if list[0].3 == "personal" {
            personal += 1;
            let u = &users[user];
            for (rank, item, score, _) in list.iter() {
                let dot: f32 = u.iter().zip(&items[item]).map(|(a, b)| a * b).sum();
                assert!(
                    (dot - score).abs() < 1e-3,
                    "user {user} rank {rank}: score {score} vs dot {dot}"
                );
            }
            // Exact top-K: no eligible item beats the 20th.
            let twentieth = list[19].2;
            let chosen: HashSet<&String> = list.iter().map(|r| &r.1).collect();
            for (item, v) in &items {
                if window[user].contains(item) || chosen.contains(item) {
                    continue;
                }
                let dot: f32 = u.iter().zip(v).map(|(a, b)| a * b).sum();
                assert!(
                    dot <= twentieth + 1e-5,
                    "user {user}: item {item} scores {dot} > 20th {twentieth}"
                );
            }
        } else {
            assert!(
                list.iter().all(|r| r.3 == "popular"),
                "user {user}: one source per list"
            );
        }
    }
    assert!(personal > 1500, "most users get personal lists: {personal}");

    // similar_items never pairs an item with itself.
    for b in read_table(&url("similar_items")).await {
        for (a, s) in col_strings(&b, "item_id")
            .iter()
            .zip(col_strings(&b, "similar_item_id"))
        {
            assert_ne!(a, &s);
        }
    }

    // metrics of 2011-11-30: recall and catalog_coverage at k=20 for the model and the baseline.
    let mut found = HashSet::new();
    for b in read_table(&url("metrics")).await {
        let (m, s) = (col_strings(&b, "metric"), col_strings(&b, "segment"));
        let k = b.column_by_name("k").unwrap();
        let v = b.column_by_name("value").unwrap();
        for j in 0..b.num_rows() {
            use arrow::array::{Array, AsArray};
            let kk =
                (!k.is_null(j)).then(|| k.as_primitive::<arrow::datatypes::Int32Type>().value(j));
            if kk == Some(20) && !v.is_null(j) {
                let value = v.as_primitive::<arrow::datatypes::Float64Type>().value(j);
                // Shares are within [0, 1]; novelty (bits) and lift are not shares.
                if m[j] != "novelty" && s[j] != "lift_vs_baseline" {
                    assert!((0.0..=1.0).contains(&value), "{} {} = {value}", m[j], s[j]);
                }
                found.insert((m[j].clone(), s[j].clone()));
            }
        }
    }
    for m in ["recall", "catalog_coverage", "ndcg", "precision"] {
        for s in ["all", "baseline_popular"] {
            assert!(
                found.contains(&(m.to_string(), s.to_string())),
                "metrics lack {m}@20 for {s}: {found:?}"
            );
        }
    }

    // The second night reused every cached vector.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("_manifests/dt=2011-11-30/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["embedding"]["embedded"], 0,
        "{}",
        manifest["embedding"]
    );
    assert_eq!(
        manifest["users"]["active"].as_u64().unwrap() as usize,
        active.len()
    );
    // OpenBLAS ran the kernels of this CPU's instruction set, not the generic fallback it picks
    // for a CPU model it does not know.
    let want = std::env::var("OPENBLAS_CORETYPE")
        .ok()
        .or(recjob::kernels::openblas_kernels_for_cpu().map(String::from));
    let blas = manifest["model"]["blas"].as_str().unwrap();
    if let (Some(want), true) = (want, blas.starts_with("libopenblas")) {
        assert!(
            blas.to_lowercase()
                .ends_with(&format!("({})", want.to_lowercase())),
            "GEMM ran on {blas}, not OpenBLAS's {want} kernels"
        );
    }

    // Rerun: exit 99 without --force; with --force the same rows (run_id aside) replace the partition.
    let o = recjob(
        tmp.path(),
        &[
            &["run", "--config", config, "--date", "2011-11-30"],
            &sets[..],
        ]
        .concat(),
    );
    assert_eq!(code(&o), 99, "{}", stderr(&o));
    assert!(stderr(&o).contains("already published"), "{}", stderr(&o));
    let o = recjob(
        tmp.path(),
        &[
            &["run", "--config", config, "--date", "2011-11-30", "--force"],
            &sets[..],
        ]
        .concat(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let again = read_table(&url("recommendations")).await;
    let strip = |bs: &[arrow::array::RecordBatch]| -> Vec<(String, i32, String, u32)> {
        let mut rows = Vec::new();
        for b in bs {
            let (u, r, i, s) = (
                col_strings(b, "user_id"),
                col_i32(b, "rank"),
                col_strings(b, "item_id"),
                col_f32(b, "score"),
            );
            rows.extend(
                (0..b.num_rows()).map(|j| (u[j].clone(), r[j], i[j].clone(), s[j].to_bits())),
            );
        }
        rows.sort();
        rows
    };
    assert_eq!(
        strip(&recs),
        strip(&again),
        "a forced rerun reproduces the rows exactly"
    );
    for t in OUT_TABLES {
        let files: Vec<_> = walk(&out.join(t).join("dt=2011-11-30")).collect();
        assert_eq!(
            files.len(),
            1,
            "{t}: one file per partition after a rerun: {files:?}"
        );
    }
    assert!(out.join("_manifests/dt=2011-11-30/superseded").exists());
    assert!(
        !has_files(&out.join("_staging")),
        "staging is cleaned after publishing"
    );

    // A backtest of 2011-11-30 with the same configuration evaluates exactly like the run did,
    // and publishes nothing.
    let published = metric_values(&read_table(&url("metrics")).await);
    let table = tmp.path().join("bt.parquet");
    let o = recjob(
        tmp.path(),
        &[
            &[
                "backtest",
                "--config",
                config,
                "--from",
                "2011-11-30",
                "--to",
                "2011-11-30",
                "--output",
                table.to_str().unwrap(),
            ],
            &sets[..],
        ]
        .concat(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        stdout.contains("1 dates with behavior, 1 evaluated"),
        "{stdout}"
    );
    let bt = read_file(&table);
    let (mut compared, mut cold_start) = (0, 0);
    for b in &bt {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Float64Type, Int32Type};
        let metric = col_strings(b, "metric");
        let segments = col_strings(b, "segment");
        let (k, model, base) = (
            b.column_by_name("k").unwrap().as_primitive::<Int32Type>(),
            b.column_by_name("model")
                .unwrap()
                .as_primitive::<Float64Type>(),
            b.column_by_name("baseline")
                .unwrap()
                .as_primitive::<Float64Type>(),
        );
        for j in 0..b.num_rows() {
            let kk = (!k.is_null(j)).then(|| k.value(j));
            // Model rows of every segment (all, new_users, returning_users); the baseline's.
            cold_start += usize::from(segments[j] != "all" && !model.is_null(j));
            for (segment, col) in [(segments[j].as_str(), model), ("baseline_popular", base)] {
                if col.is_null(j) {
                    continue;
                }
                let want = published[&(metric[j].clone(), kk, segment.to_string())];
                assert!(
                    (col.value(j) - want).abs() < 1e-9,
                    "{} @{kk:?} {segment}: backtest {} vs published {want}",
                    metric[j],
                    col.value(j)
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 30, "compared {compared} metric values");
    assert!(cold_start >= 6, "{cold_start} cold-start segment rows");
    let manifests: Vec<_> = std::fs::read_dir(out.join("_manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        manifests.len(),
        2,
        "the backtest published nothing: {manifests:?}"
    );
}

/// `(metric, k, segment) -> value` of a metrics partition (rows with a value).
fn metric_values(
    batches: &[arrow::array::RecordBatch],
) -> HashMap<(String, Option<i32>, String), f64> {
    use arrow::array::{Array, AsArray};
    let mut out = HashMap::new();
    for b in batches {
        let (m, s) = (col_strings(b, "metric"), col_strings(b, "segment"));
        let k = b.column_by_name("k").unwrap();
        let v = b.column_by_name("value").unwrap();
        for j in 0..b.num_rows() {
            if v.is_null(j) {
                continue;
            }
            let kk =
                (!k.is_null(j)).then(|| k.as_primitive::<arrow::datatypes::Int32Type>().value(j));
            out.insert(
                (m[j].clone(), kk, s[j].clone()),
                v.as_primitive::<arrow::datatypes::Float64Type>().value(j),
            );
        }
    }
    out
}

/// The embedding cache across nights: the second night embeds nothing; a changed title is the
/// only text embedded the night after.
#[test]
fn the_next_night_embeds_only_changed_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = repo().join("fixtures/tiny");
    let catalog = tmp.path().join("catalog");
    std::fs::create_dir_all(catalog.join("dt=2024-01-01")).unwrap();
    std::fs::copy(
        fixtures.join("catalog/dt=2024-01-01/part-0.parquet"),
        catalog.join("dt=2024-01-01/part-0.parquet"),
    )
    .unwrap();
    let config = write_config(
        tmp.path(),
        &fixtures.join("behavior"),
        &catalog,
        &tmp.path().join("out"),
        "[events.weights]\nview = 0.25\npurchase = 1.0\nreturn = 0.0\n[topk]\nk = 5\n[window]\nlookback_days = 7\n",
    );
    let embedded = |date: &str| -> (u64, u64) {
        let o = recjob(
            tmp.path(),
            &["run", "--config", config.to_str().unwrap(), "--date", date],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let m: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                tmp.path()
                    .join(format!("out/_manifests/dt={date}/manifest.json")),
            )
            .unwrap(),
        )
        .unwrap();
        (
            m["embedding"]["embedded"].as_u64().unwrap(),
            m["embedding"]["reused"].as_u64().unwrap(),
        )
    };
    assert_eq!(embedded("2024-01-03"), (40, 0));
    assert_eq!(embedded("2024-01-04"), (0, 40));
    // A new snapshot (dt=2024-01-05) where one title changed.
    let batches = read_file(&catalog.join("dt=2024-01-01/part-0.parquet"));
    let b = &batches[0];
    let mut titles = col_strings(b, "title");
    titles[7] = format!("{} deluxe", titles[7]);
    let idx = b.schema().index_of("title").unwrap();
    let mut columns = b.columns().to_vec();
    columns[idx] = std::sync::Arc::new(arrow::array::StringArray::from(titles));
    let changed = arrow::array::RecordBatch::try_new(b.schema(), columns).unwrap();
    write_file(&catalog.join("dt=2024-01-05/part-0.parquet"), &changed);
    assert_eq!(embedded("2024-01-05"), (1, 39));
}
