//! `recjob topk` on its own: bring your own vectors.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};

use crate::common::*;

fn write_vectors(path: &Path, ids: &[&str], rows: &[Vec<f32>]) {
    let dim = rows.first().map_or(2, Vec::len);
    let values = Float32Array::from(rows.iter().flatten().copied().collect::<Vec<_>>());
    // pyarrow-style child name, to prove it is not relied on.
    let emb = FixedSizeListArray::new(
        Arc::new(Field::new("element", DataType::Float32, true)),
        dim as i32,
        Arc::new(values),
        None,
    );
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(StringArray::from(ids.to_vec())) as ArrayRef),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap();
    write_file(path, &batch);
}

fn topk(dir: &Path, k: &str, exclude: bool, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "topk",
        "--users",
        "users.parquet",
        "--items",
        "items.parquet",
        "--k",
        k,
        "--output",
        "out.parquet",
    ];
    if exclude {
        args.extend(["--exclude", "exclude.parquet"]);
    }
    args.extend(extra);
    recjob(dir, &args)
}

#[test]
fn exact_lists_with_exclusions_and_short_users() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_vectors(
        &d.join("users.parquet"),
        &["u1", "u2"],
        &[vec![1.0, 0.0, 0.0], vec![0.0, 2.0, 0.0]],
    );
    write_vectors(
        &d.join("items.parquet"),
        &["c", "a", "b"],
        &[
            vec![0.0, 1.0, 0.0],
            vec![1.0, 0.1, 0.0],
            vec![1.0, 0.0, 0.0],
        ],
    );
    let ex = RecordBatch::try_from_iter(vec![
        (
            "user_id",
            Arc::new(StringArray::from(vec!["u1"])) as ArrayRef,
        ),
        (
            "item_id",
            Arc::new(StringArray::from(vec!["b"])) as ArrayRef,
        ),
    ])
    .unwrap();
    write_file(&d.join("exclude.parquet"), &ex);
    let o = topk(d, "5", true, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 users with fewer than 5"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let f = std::fs::File::open(d.join("out.parquet")).unwrap();
    let b = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 100)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let rows: Vec<(String, i32, String)> = col_strings(&b, "user_id")
        .into_iter()
        .zip(col_i32(&b, "rank"))
        .zip(col_strings(&b, "item_id"))
        .map(|((u, r), i)| (u, r, i))
        .collect();
    let expect = [
        ("u1", 1, "a"),
        ("u1", 2, "c"),
        ("u2", 1, "c"),
        ("u2", 2, "a"),
        ("u2", 3, "b"),
    ];
    assert_eq!(
        rows,
        expect
            .iter()
            .map(|(u, r, i)| (u.to_string(), *r, i.to_string()))
            .collect::<Vec<_>>()
    );
    let scores = col_f32(&b, "score");
    assert!(
        (scores[0] - 1.0 / 1.01f32.sqrt()).abs() < 1e-6,
        "{scores:?}"
    );
    // The same lists from `--device cpu`; `--device cuda` without the `cuda` feature is a
    // configuration error naming the option, with nothing written.
    std::fs::remove_file(d.join("out.parquet")).unwrap();
    let o = topk(d, "5", true, &["--device", "cpu"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        col_f32(&read_file(&d.join("out.parquet"))[0], "score"),
        scores
    );
    if !cfg!(feature = "cuda") {
        std::fs::remove_file(d.join("out.parquet")).unwrap();
        let o = topk(d, "5", true, &["--device", "cuda"]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("topk.device = cuda"), "{}", stderr(&o));
        assert!(!d.join("out.parquet").exists());
    }
}

#[test]
fn bad_vectors_are_rejected_naming_the_id() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_vectors(
        &d.join("items.parquet"),
        &["a", "b"],
        &[vec![1.0, 0.0], vec![0.0, 1.0]],
    );
    for (ids, rows, needle) in [
        (
            vec!["u1", "u1"],
            vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            "duplicate id u1",
        ),
        (
            vec!["u1", "u2"],
            vec![vec![1.0, 0.0], vec![0.0, 0.0]],
            "id u2: zero",
        ),
        (vec!["u1"], vec![vec![1.0, 0.0, 0.0]], "dimension 3"),
    ] {
        write_vectors(&d.join("users.parquet"), &ids, &rows);
        let o = topk(d, "1", false, &[]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{needle}: {}", stderr(&o));
    }
    // No items at all.
    write_vectors(&d.join("items.parquet"), &[], &[]);
    let o = topk(d, "1", false, &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("no item vectors"), "{}", stderr(&o));
}

/// Hostile inputs are bad input (exit 1) with a message naming the file and column, never a
/// panic: a list-typed id column, a K that would overflow, a non-string exclusion column.
#[test]
fn hostile_ids_and_k_exit_1_naming_file_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write_vectors(
        &d.join("items.parquet"),
        &["a", "b"],
        &[vec![1.0, 0.0], vec![0.0, 1.0]],
    );
    // Users whose id column is a list of strings.
    let ids =
        arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
            Some(vec![Some(2)]),
        ]);
    let emb = FixedSizeListArray::new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        2,
        Arc::new(Float32Array::from(vec![1.0, 0.0, 0.0, 1.0])),
        None,
    );
    let batch = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(ids) as ArrayRef),
        ("embedding", Arc::new(emb) as ArrayRef),
    ])
    .unwrap();
    write_file(&d.join("users.parquet"), &batch);
    let o = topk(d, "1", false, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(
        err.contains("users.parquet")
            && err.contains("column id")
            && err.contains("must be a string or integer"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    write_vectors(&d.join("users.parquet"), &["u"], &[vec![1.0, 0.0]]);
    for k in ["18446744073709551615", "0", "100001"] {
        let o = topk(d, k, false, &[]);
        let err = stderr(&o);
        assert_eq!(code(&o), 1, "--k {k}: {err}");
        assert!(
            err.contains("--k") && err.contains("1..=100000"),
            "--k {k}: {err}"
        );
    }
    assert!(!d.join("out.parquet").exists(), "nothing was written");

    // Exclusions with a float user_id column.
    let batch = RecordBatch::try_from_iter(vec![
        (
            "user_id",
            Arc::new(Float32Array::from(vec![1.5])) as ArrayRef,
        ),
        (
            "item_id",
            Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
        ),
    ])
    .unwrap();
    write_file(&d.join("exclude.parquet"), &batch);
    let o = topk(d, "1", true, &[]);
    let err = stderr(&o);
    assert_eq!(code(&o), 1, "{err}");
    assert!(err.contains("exclude.parquet, column user_id"), "{err}");
}
