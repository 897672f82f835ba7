//! Bad input: the documented exit code, a message naming table, file and column, and nothing
//! published.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use arrow::datatypes::DataType;

use crate::common::*;

/// Write a Parquet file with the given columns.
fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    write_file(path, &RecordBatch::try_from_iter(columns).unwrap());
}

fn strings(v: &[&str]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

/// A valid little dataset: behavior for 2024-01-01..02, catalog snapshot 2024-01-01.
fn dataset(root: &Path) {
    let ts = |n: usize| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(vec![1_704_100_000_000_000i64; n]).with_timezone("UTC"),
        )
    };
    for dt in ["2024-01-01", "2024-01-02"] {
        write(
            &root.join(format!("behavior/dt={dt}/part-0.parquet")),
            vec![
                ("user_id", strings(&["u1", "u2", "u2"])),
                ("item_id", strings(&["a", "b", "c"])),
                ("event_type", strings(&["purchase", "purchase", "purchase"])),
                ("ts", ts(3)),
                (
                    "value",
                    Arc::new(Float64Array::from(vec![Some(1.0), None, Some(2.0)])),
                ),
            ],
        );
    }
    write(
        &root.join("catalog/dt=2024-01-01/part-0.parquet"),
        vec![
            ("item_id", strings(&["a", "b", "c", "d"])),
            (
                "title",
                strings(&["red mug", "blue mug", "garden hose", "tea pot"]),
            ),
            (
                "available",
                Arc::new(BooleanArray::from(vec![true, true, true, true])),
            ),
        ],
    );
}

/// Run `recjob run` for 2024-01-02 on the dataset in `root`; returns (exit code, stderr).
fn run(root: &Path, date: &str, extra: &[&str]) -> (i32, String) {
    let config = write_config(
        root,
        &root.join("behavior"),
        &root.join("catalog"),
        &root.join("out"),
        "",
    );
    let args = [
        &["run", "--config", config.to_str().unwrap(), "--date", date],
        extra,
    ]
    .concat();
    let o = recjob(root, &args);
    (code(&o), stderr(&o))
}

fn assert_nothing_published(root: &Path) {
    let out = root.join("out");
    for t in [
        "recommendations",
        "metrics",
        "_manifests",
        "item_embeddings",
    ] {
        assert!(!has_files(&out.join(t)), "{t} was written");
    }
}

#[test]
fn the_valid_dataset_publishes() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let (code, err) = run(tmp.path(), "2024-01-02", &["--set", "topk.k=2"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        tmp.path()
            .join("out/_manifests/dt=2024-01-02/manifest.json")
            .exists()
    );
}

#[test]
fn a_missing_behavior_partition_is_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let (code, err) = run(tmp.path(), "2024-01-03", &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("behavior") && err.contains("dt=2024-01-03"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

#[test]
fn a_missing_required_column_names_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = tmp.path().join("behavior/dt=2024-01-02/part-0.parquet");
    write(
        &file,
        vec![
            ("user_id", strings(&["u1"])),
            ("item_id", strings(&["a"])),
            ("event_type", strings(&["purchase"])),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("table behavior")
            && err.contains("column ts")
            && err.contains(&file.display().to_string()),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

#[test]
fn a_wrong_column_type_names_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = tmp.path().join("behavior/dt=2024-01-01/part-0.parquet");
    write(
        &file,
        vec![
            ("user_id", strings(&["u1"])),
            ("item_id", strings(&["a"])),
            ("event_type", strings(&["purchase"])),
            ("ts", strings(&["yesterday"])),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("column ts")
            && err.contains("must be a timestamp")
            && err.contains("dt=2024-01-01"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

/// `catalog.category_column` (the per-category metric segments) must be a string column.
#[test]
fn a_numeric_category_column_names_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write(
        &tmp.path().join("catalog/dt=2024-01-01/part-0.parquet"),
        vec![
            ("item_id", strings(&["a", "b", "c", "d"])),
            (
                "title",
                strings(&["red mug", "blue mug", "hose", "tea pot"]),
            ),
            (
                "dept",
                Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
            ),
        ],
    );
    let (code, err) = run(
        tmp.path(),
        "2024-01-02",
        &["--set", "catalog.category_column=dept"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("table catalog")
            && err.contains("column dept")
            && err.contains("must be a string")
            && err.contains("dt=2024-01-01"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

#[test]
fn a_corrupt_file_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let file = tmp.path().join("behavior/dt=2024-01-02/part-1.parquet");
    std::fs::write(&file, b"this is not parquet").unwrap();
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not a readable Parquet file") && err.contains("part-1.parquet"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

#[test]
fn duplicate_catalog_ids_are_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write(
        &tmp.path().join("catalog/dt=2024-01-01/part-0.parquet"),
        vec![
            ("item_id", strings(&["a", "b", "c", "a"])),
            ("title", strings(&["x", "y", "z", "w"])),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("table catalog")
            && err.contains("column item_id")
            && err.contains("duplicate"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

#[test]
fn a_null_catalog_id_is_bad_input_naming_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write(
        &tmp.path().join("catalog/dt=2024-01-01/part-0.parquet"),
        vec![
            (
                "item_id",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
            ),
            ("title", strings(&["x", "y", "z"])),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("table catalog")
            && err.contains("catalog/dt=2024-01-01/part-0.parquet")
            && err.contains("column item_id: 1 rows have a null item_id"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

#[test]
fn unknown_types_unknown_items_empty_users_and_future_events_count_against_the_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    // The fourth row's timestamp, 2024-01-05T00:00:00Z, is after its partition's day; the
    // fifth has an empty user id.
    let ts: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(vec![
            1_704_200_000_000_000i64,
            1_704_200_000_000_000,
            1_704_200_000_000_000,
            1_704_412_800_000_000,
            1_704_200_000_000_000,
        ])
        .with_timezone("UTC"),
    );
    write(
        &tmp.path().join("behavior/dt=2024-01-02/part-0.parquet"),
        vec![
            ("user_id", strings(&["u1", "u2", "u3", "u1", ""])),
            ("item_id", strings(&["a", "zzz", "b", "c", "d"])),
            (
                "event_type",
                strings(&["purchase", "purchase", "teleport", "purchase", "purchase"]),
            ),
            ("ts", ts),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown_event_type: 1")
            && err.contains("item_not_in_catalog: 1")
            && err.contains("ts_after_partition: 1")
            && err.contains("empty_user_id: 1"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
    // Tolerated below the threshold: dropped, counted in the manifest.
    let (code, err) = run(
        tmp.path(),
        "2024-01-02",
        &["--set", "input.max_invalid_fraction=0.6"],
    );
    assert_eq!(code, 0, "{err}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            tmp.path()
                .join("out/_manifests/dt=2024-01-02/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["invalid_rows"]["by_reason"]["unknown_event_type"],
        1
    );
    assert_eq!(
        manifest["invalid_rows"]["by_reason"]["item_not_in_catalog"],
        1
    );
    assert_eq!(
        manifest["invalid_rows"]["by_reason"]["ts_after_partition"],
        1
    );
    assert_eq!(manifest["invalid_rows"]["by_reason"]["empty_user_id"], 1);
}

#[test]
fn only_the_files_directly_in_a_partition_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let put = |path: &str| {
        let path = tmp.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not parquet").unwrap();
    };
    // A sub-folder of a behavior partition is not read (this file would not decode).
    put("behavior/dt=2024-01-02/sub/part-0.parquet");
    let (status, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(
        err.matches("ignoring sub-folders of a partition").count(),
        1,
        "said once, however often the run lists the partition: {err}"
    );
    let manifest = std::fs::read_to_string(
        tmp.path()
            .join("out/_manifests/dt=2024-01-02/manifest.json"),
    )
    .unwrap();
    assert!(!manifest.contains("sub/"), "{manifest}");
    // `recjob sql` reads the inputs by the same rule: not a readable file in a `key=value`
    // sub-folder, nor a folder whose date does not exist (which failed every query of the table).
    let valid = tmp.path().join("behavior/dt=2024-01-01/part-0.parquet");
    for copy in [
        "behavior/dt=2024-01-02/k=v/part-0.parquet",
        "behavior/dt=2024-13-45/part-0.parquet",
        "behavior/stray.parquet",
    ] {
        let copy = tmp.path().join(copy);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&valid, copy).unwrap();
    }
    let cfg = tmp.path().join("job.toml");
    let o = recjob(
        tmp.path(),
        &[
            "sql",
            "--config",
            cfg.to_str().unwrap(),
            "--format",
            "csv",
            "-c",
            "SELECT dt, count(*) AS n FROM behavior GROUP BY dt ORDER BY dt",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "dt,n\n2024-01-01,3\n2024-01-02,3\n"
    );
    for folder in [
        "dt=2024-01-02/k=v",
        "dt=2024-01-02/sub",
        "dt=2024-13-45",
        "stray.parquet",
    ] {
        assert!(stderr(&o).contains(folder), "{folder}: {}", stderr(&o));
    }
    // A catalog snapshot whose only file is a write in progress has no data files: the run
    // says so of the catalog (it used to read the file and blame behavior).
    put("catalog/dt=2024-01-02/_temporary/part-0.parquet");
    let (status, err) = run(tmp.path(), "2024-01-02", &["--force"]);
    assert_eq!(status, 1, "{err}");
    assert!(
        err.contains("table catalog, partition dt=2024-01-02: no data files"),
        "{err}"
    );
}

#[test]
fn an_unreadable_input_file_leaves_the_published_tables_and_the_report_readable() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let (status, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(status, 0, "{err}");
    // A day the published run never read; `recjob sql` and the report list every partition.
    let bad = tmp.path().join("behavior/dt=2024-01-03/x.parquet");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, b"not parquet").unwrap();
    let config = tmp.path().join("job.toml");
    let cfg = config.to_str().unwrap();
    let sql = |q: &str| {
        recjob(
            tmp.path(),
            &["sql", "--config", cfg, "--format", "csv", "-c", q],
        )
    };
    let o = sql("SELECT count(*) AS n FROM recommendations");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let n: u64 = stdout
        .lines()
        .nth(1)
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(n > 0, "the published rows: {stdout}");
    assert!(
        stderr(&o).contains("table not registered")
            && stderr(&o).contains("dt=2024-01-03/x.parquet"),
        "the warning names the file: {}",
        stderr(&o)
    );
    let o = sql("SELECT count(*) FROM behavior");
    assert_eq!(code(&o), 1, "behavior is not a table: {}", stderr(&o));
    let o = recjob(tmp.path(), &["report", "--config", cfg]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let report =
        std::fs::read_to_string(tmp.path().join("out/reports/dt=2024-01-02/report.html")).unwrap();
    let run_id = manifest(&tmp.path().join("out"), "2024-01-02")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(report.contains(&run_id), "the report is this run's");
}

#[test]
fn bad_configuration_and_dates_exit_1_before_any_io() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    for (args, needle) in [
        (vec!["--set", "topk.kk=3"], "kk"),
        (vec!["--set", "exclusions.policy=sometimes"], "sometimes"),
        (vec!["--set", "topk.k=18446744073709551615"], "topk.k"),
        (
            vec!["--set", "topk.k=1000000"],
            "topk.k must be within 1..=100000",
        ),
    ] {
        let (code, err) = run(tmp.path(), "2024-01-02", &args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }
    let (code, err) = run(tmp.path(), "2024-13-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("malformed date"), "{err}");
    assert_nothing_published(tmp.path());
}

#[test]
fn an_empty_catalog_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let empty: Vec<&str> = Vec::new();
    write(
        &tmp.path().join("catalog/dt=2024-01-01/part-0.parquet"),
        vec![("item_id", strings(&empty)), ("title", strings(&empty))],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("table catalog") && err.contains("dt=2024-01-01") && err.contains("no rows"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

/// A catalog whose items are all unavailable would publish empty lists over the good ones.
#[test]
fn a_catalog_without_an_available_item_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write(
        &tmp.path().join("catalog/dt=2024-01-01/part-0.parquet"),
        vec![
            ("item_id", strings(&["a", "b"])),
            ("title", strings(&["red mug", "blue mug"])),
            (
                "available",
                Arc::new(BooleanArray::from(vec![false, false])),
            ),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("table catalog, partition dt=2024-01-01")
            && err.contains("catalog/dt=2024-01-01/part-0.parquet")
            && err.contains("column available")
            && err.contains("none of the 2 items is available"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
}

/// `recjob evaluate` grades a published date's lists against the inputs its run read: when a
/// file of them is gone, grown or new, it names it, exits 1 and republishes nothing.
#[test]
fn evaluate_refuses_inputs_that_changed_since_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let (status, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(status, 0, "{err}");
    let cfg = tmp.path().join("job.toml");
    let evaluate = || {
        recjob(
            tmp.path(),
            &[
                "evaluate",
                "--config",
                cfg.to_str().unwrap(),
                "--date",
                "2024-01-02",
            ],
        )
    };
    let o = evaluate();
    assert_eq!(code(&o), 0, "unchanged inputs: {}", stderr(&o));
    let manifest = tmp
        .path()
        .join("out/_manifests/dt=2024-01-02/manifest.json");
    let published = std::fs::read(&manifest).unwrap();
    let file = tmp.path().join("behavior/dt=2024-01-01/part-0.parquet");
    let moved = tmp.path().join("part-0.parquet");
    std::fs::rename(&file, &moved).unwrap();
    let o = evaluate();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("table behavior, partition dt=2024-01-01, file")
            && stderr(&o).contains("dt=2024-01-01/part-0.parquet: gone")
            && stderr(&o).contains("--force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        published,
        "nothing republished"
    );
    std::fs::rename(&moved, &file).unwrap();
    std::fs::copy(
        &file,
        tmp.path().join("behavior/dt=2024-01-02/part-1.parquet"),
    )
    .unwrap();
    let o = evaluate();
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("dt=2024-01-02/part-1.parquet: new since the run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        published,
        "nothing republished"
    );
}

#[test]
fn null_ids_are_dropped_and_counted_then_fail_above_the_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let ts: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(vec![1_704_200_000_000_000i64; 4]).with_timezone("UTC"),
    );
    write(
        &tmp.path().join("behavior/dt=2024-01-02/part-0.parquet"),
        vec![
            (
                "user_id",
                Arc::new(StringArray::from(vec![
                    Some("u1"),
                    None,
                    Some("u2"),
                    Some("u3"),
                ])) as ArrayRef,
            ),
            (
                "item_id",
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    None,
                    Some("c"),
                ])) as ArrayRef,
            ),
            ("event_type", strings(&["purchase"; 4])),
            ("ts", ts),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("null_user_id: 1")
            && err.contains("null_item_id: 1")
            && err.contains("max_invalid_fraction"),
        "{err}"
    );
    assert_nothing_published(tmp.path());
    let (code, err) = run(
        tmp.path(),
        "2024-01-02",
        &["--set", "input.max_invalid_fraction=0.5"],
    );
    assert_eq!(code, 0, "{err}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            tmp.path()
                .join("out/_manifests/dt=2024-01-02/manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["invalid_rows"]["by_reason"]["null_user_id"], 1);
    assert_eq!(manifest["invalid_rows"]["by_reason"]["null_item_id"], 1);
    assert_eq!(manifest["invalid_rows"]["total_rows"], 7);
}

#[test]
fn integer_ids_and_other_timestamp_units_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    write(
        &tmp.path().join("behavior/dt=2024-01-02/part-0.parquet"),
        vec![
            (
                "user_id",
                Arc::new(arrow::array::Int64Array::from(vec![7, 8])) as ArrayRef,
            ),
            ("item_id", strings(&["a", "b"])),
            ("event_type", strings(&["purchase", "purchase"])),
            (
                "ts",
                Arc::new(arrow::array::TimestampMillisecondArray::from(
                    vec![1_704_200_000_000i64; 2],
                )) as ArrayRef,
            ),
        ],
    );
    let (code, err) = run(tmp.path(), "2024-01-02", &["--set", "topk.k=2"]);
    assert_eq!(code, 0, "{err}");
}

/// A published list that breaks the table's contract (a decimal rank, here) is bad input
/// naming the file and the column when the next night evaluates it, and nothing is published.
#[test]
fn a_published_file_with_a_decimal_rank_is_bad_input_naming_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let cfg = config.to_str().unwrap();
    let out = tmp.path().join("out");
    let o = recjob(
        tmp.path(),
        &["run", "--config", cfg, "--date", "2024-01-04"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let file = published_file(&out, "recommendations", "2024-01-04");
    let b = read_file(&file).remove(0);
    let ranks =
        arrow::compute::cast(b.column_by_name("rank").unwrap(), &DataType::Float64).unwrap();
    let i = b.schema().index_of("rank").unwrap();
    let mut columns = b.columns().to_vec();
    columns[i] = ranks;
    let mut fields: Vec<arrow::datatypes::Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[i] = arrow::datatypes::Field::new("rank", DataType::Float64, false);
    let bad =
        RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).unwrap();
    write_file(&file, &bad);
    let o = recjob(
        tmp.path(),
        &["run", "--config", cfg, "--date", "2024-01-05"],
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains(&file.display().to_string())
            && err.contains("column rank")
            && err.contains("must be an integer"),
        "{err}"
    );
    assert!(!out.join("_manifests/dt=2024-01-05/manifest.json").exists());
}
