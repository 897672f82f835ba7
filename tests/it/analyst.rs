//! The saved analyst queries (`sql/analyst/*.sql`) and `recjob sql`'s guarantees, over the
//! outputs of two nightly runs on `fixtures/tiny` with the real model.
//!
//! `tests/sql/analyst.slt` holds the expected rows (sqllogictest format). A record's SQL may be
//! `FILE <path> [name=value ...]`: the statement of a saved query, with its parameters.
//! Regenerate the expected rows after a reviewed change with `RECJOB_SLT_COMPLETE=1`.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::*;

/// Publish 2024-01-04 and 2024-01-05 of the tiny fixture into `dir/out`; returns the config.
pub fn tiny_outputs(dir: &Path) -> PathBuf {
    let fixtures = repo().join("fixtures/tiny");
    let config = write_config(
        dir,
        &fixtures.join("behavior"),
        &fixtures.join("catalog"),
        &dir.join("out"),
        "[events.weights]\nview = 0.25\npurchase = 1.0\nreturn = 0.0\n[topk]\nk = 5\n[similar_items]\nk = 3\n\
         [window]\nlookback_days = 7\n[evaluate]\nks = [3, 5]\nnew_days = 2\n\
         [exclusions]\npolicy = \"seen_in_window\"\n",
    );
    for date in ["2024-01-04", "2024-01-05"] {
        let o = recjob(
            dir,
            &["run", "--config", config.to_str().unwrap(), "--date", date],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    config
}

struct Db(SessionContext);

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DbError {}

fn cell(batch: &RecordBatch, c: usize, r: usize) -> String {
    let a = batch.column(c);
    if a.is_null(r) {
        return "NULL".into();
    }
    arrow::util::display::array_value_to_string(a, r).unwrap()
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let (sql, params) = match sql.trim().strip_prefix("FILE ") {
            Some(rest) => {
                let mut parts = rest.split_whitespace();
                let path = repo().join(parts.next().unwrap());
                let params: Vec<(String, String)> = parts
                    .map(|p| {
                        p.split_once('=')
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .unwrap()
                    })
                    .collect();
                (
                    std::fs::read_to_string(&path)
                        .map_err(|e| DbError(format!("{}: {e}", path.display())))?,
                    params,
                )
            }
            None => (sql.to_string(), Vec::new()),
        };
        let batches = recjob::publish::query(&self.0, &sql, &params)
            .await
            .map_err(|e| DbError(format!("{e:#}")))?;
        let Some(first) = batches.first() else {
            return Ok(DBOutput::Rows {
                types: vec![],
                rows: vec![],
            });
        };
        let types = first
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                t if t.is_integer() => DefaultColumnType::Integer,
                DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
                _ => DefaultColumnType::Text,
            })
            .collect();
        let rows = batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows())
                    .map(move |r| (0..b.num_columns()).map(|c| cell(b, c, r)).collect())
            })
            .collect();
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test(flavor = "multi_thread")]
async fn saved_queries_give_the_reviewed_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tiny_outputs(tmp.path());
    let config = recjob::config::Config::load(&config_path, &[]).unwrap();
    let ctx = recjob::publish::session(&config).await.unwrap();
    let slt = repo().join("tests/sql/analyst.slt");
    let mut runner = sqllogictest::Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok(Db(ctx)) }
    });
    if std::env::var_os("RECJOB_SLT_COMPLETE").is_some() {
        runner
            .update_test_file(
                &slt,
                " ",
                sqllogictest::default_validator,
                sqllogictest::default_normalizer,
                sqllogictest::default_column_validator,
            )
            .await
            .unwrap();
    } else {
        runner.run_file_async(&slt).await.unwrap();
    }
}

#[test]
fn recjob_sql_is_read_only_and_sees_only_published_dates() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_outputs(tmp.path());
    let config = config.to_str().unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = walk(&tmp.path().join("out"))
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    for statement in [
        "DROP TABLE metrics",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO metrics SELECT * FROM metrics",
        "COPY (SELECT * FROM recommendations) TO 'stolen.parquet'",
        "CREATE EXTERNAL TABLE y STORED AS PARQUET LOCATION 'out/metrics'",
    ] {
        let o = recjob(tmp.path(), &["sql", "--config", config, "-c", statement]);
        assert_eq!(code(&o), 1, "{statement}: {}", stderr(&o));
    }
    let after: Vec<(PathBuf, Vec<u8>)> = walk(&tmp.path().join("out"))
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before, after, "the outputs are unchanged");
    assert!(!tmp.path().join("stolen.parquet").exists());

    // --output never writes into the job's data, whatever the format.
    for (format, target) in [
        (
            "parquet",
            "out/recommendations/dt=2024-01-05/part-evil.parquet",
        ),
        ("csv", "out/_manifests/dt=2024-01-05/manifest.json"),
        ("json", "./out/../out/metrics/x.json"),
    ] {
        let o = recjob(
            tmp.path(),
            &[
                "sql",
                "--config",
                config,
                "--format",
                format,
                "--output",
                target,
                "-c",
                "SELECT 1 AS x",
            ],
        );
        assert_eq!(code(&o), 1, "{target}: {}", stderr(&o));
        assert!(stderr(&o).contains("inside output.root"), "{}", stderr(&o));
    }
    // Only the published tables, `dot` and DataFusion's own functions: not the engine's, which
    // read any URL with the job's credentials.
    for statement in [
        "SELECT recjob_topk(embedding, [], 's3://any-bucket/x', 1, 1, 1) FROM user_embeddings",
        "SELECT recjob_embed(['a'], '/', 'cpu', 'm', 'f32')",
    ] {
        let o = recjob(tmp.path(), &["sql", "--config", config, "-c", statement]);
        assert_eq!(code(&o), 1, "{statement}: {}", stderr(&o));
        assert!(
            stderr(&o).to_lowercase().contains("recjob_"),
            "{}",
            stderr(&o)
        );
    }
    let after: Vec<(PathBuf, Vec<u8>)> = walk(&tmp.path().join("out"))
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before, after, "the outputs are unchanged");

    // A folder under _manifests that is not a date (an injection attempt, here) is ignored
    // with a warning, never put into SQL.
    std::fs::create_dir_all(tmp.path().join("out/_manifests/dt=2024-01-01') OR (1=1")).unwrap();
    let o = recjob(
        tmp.path(),
        &[
            "sql",
            "--config",
            config,
            "--format",
            "csv",
            "-c",
            "SELECT count(DISTINCT dt) AS n FROM recommendations",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "n\n2\n");
    assert!(stderr(&o).contains("not dt=YYYY-MM-DD"), "{}", stderr(&o));

    // No rows still has columns; a directory or the query file itself is no --output.
    let sql = |extra: &[&str]| {
        let args = [&["sql", "--config", config][..], extra].concat();
        recjob(tmp.path(), &args)
    };
    let o = sql(&[
        "--format",
        "csv",
        "-c",
        "SELECT metric FROM metrics WHERE 1 = 0",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "metric\n");
    std::fs::create_dir(tmp.path().join("results")).unwrap();
    let o = sql(&[
        "--format",
        "csv",
        "--output",
        "results",
        "-c",
        "SELECT 1 AS x",
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    // Nor does a symbolic link lead it into the outputs.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(tmp.path().join("out"), tmp.path().join("link")).unwrap();
        let o = sql(&[
            "--format",
            "csv",
            "--output",
            "link/x.csv",
            "-c",
            "SELECT 1 AS x",
        ]);
        assert_eq!(code(&o), 1, "{}", stderr(&o));
        assert!(stderr(&o).contains("inside output.root"), "{}", stderr(&o));
        assert!(!tmp.path().join("out/x.csv").exists());
        // `..` after a link is the link target's parent, as the kernel reads it (the link
        // points into out/recommendations, so this is out/_manifests), and a link to a file
        // not there yet is where the write would go.
        std::os::unix::fs::symlink(
            tmp.path().join("out/recommendations"),
            tmp.path().join("recs"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            tmp.path().join("out/metrics/new.csv"),
            tmp.path().join("dangling.csv"),
        )
        .unwrap();
        for target in ["recs/../_manifests/x.json", "dangling.csv"] {
            let o = sql(&[
                "--format",
                "json",
                "--output",
                target,
                "-c",
                "SELECT 1 AS x",
            ]);
            assert_eq!(code(&o), 1, "{target}: {}", stderr(&o));
            assert!(stderr(&o).contains("inside output.root"), "{}", stderr(&o));
        }
        assert!(!tmp.path().join("out/_manifests/x.json").exists());
        assert!(!tmp.path().join("out/metrics/new.csv").exists());
    }
    // A folder that does not exist is exit 1 in every format (none is created).
    for format in ["csv", "parquet"] {
        let o = sql(&[
            "--format",
            format,
            "--output",
            "no-such-folder/x",
            "-c",
            "SELECT 1 AS x",
        ]);
        assert_eq!(code(&o), 1, "{format}: {}", stderr(&o));
        assert!(stderr(&o).contains("create it first"), "{}", stderr(&o));
        assert!(!tmp.path().join("no-such-folder").exists());
    }
    // The prompt prints: --output without a statement is refused, not ignored.
    let o = sql(&["--output", "x.csv"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("go with a statement"), "{}", stderr(&o));
    // Every $name has one --param, and every --param a $name.
    let by_user = "SELECT count(*) AS n FROM recommendations WHERE user_id = $user";
    for (params, want) in [
        (
            &["--param", "user=u1", "--param", "user=u2"][..],
            "--param user is given twice",
        ),
        (
            &["--param", "usr=u1"][..],
            "--param usr: the statement has no $usr (its parameters: $user)",
        ),
        (&[][..], "$user has no value: add --param user=VALUE"),
    ] {
        let o = sql(&[&["--format", "csv", "-c", by_user][..], params].concat());
        assert_eq!(code(&o), 1, "{params:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{params:?}: {}", stderr(&o));
    }
    let o = sql(&["--format", "csv", "-c", by_user, "--param", "user=u1"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    std::fs::write(tmp.path().join("q.sql"), "SELECT 1 AS x").unwrap();
    let o = sql(&["--format", "csv", "--output", "q.sql", "-f", "q.sql"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("q.sql")).unwrap(),
        "SELECT 1 AS x"
    );

    // Unpublish 2024-01-05: it disappears from SQL.
    std::fs::remove_file(
        tmp.path()
            .join("out/_manifests/dt=2024-01-05/manifest.json"),
    )
    .unwrap();
    let o = recjob(
        tmp.path(),
        &[
            "sql",
            "--config",
            config,
            "--format",
            "csv",
            "-c",
            "SELECT DISTINCT dt FROM recommendations ORDER BY dt",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "dt\n2024-01-04\n");
}

#[test]
fn duckdb_and_pyarrow_read_the_same_rows_as_recjob_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_outputs(tmp.path());
    // Both dates again with the neighbour term on, so that every table is published.
    for date in ["2024-01-04", "2024-01-05"] {
        let args = [
            "run",
            "--config",
            config.to_str().unwrap(),
            "--date",
            date,
            "--force",
        ];
        let on = ["--set", "hybrid.neighbor_weight=0.5"];
        let o = recjob(tmp.path(), &[&args[..], &on[..]].concat());
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} missing: run `make setup`",
        python.display()
    );
    let o = std::process::Command::new(&python)
        .arg(repo().join("tests/python/readers.py"))
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let readers: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for table in recjob::publish::PUBLISHED_TABLES {
        let sql = format!(
            "SELECT CAST(dt AS VARCHAR) AS dt, count(*) AS n FROM {table} GROUP BY dt ORDER BY dt"
        );
        let o = recjob(
            tmp.path(),
            &[
                "sql",
                "--config",
                config.to_str().unwrap(),
                "--format",
                "json",
                "-c",
                &sql,
            ],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let mut ours = serde_json::Map::new();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            ours.insert(row["dt"].as_str().unwrap().to_string(), row["n"].clone());
        }
        assert_eq!(ours.len(), 2, "{table}: two published dates");
        assert_eq!(
            readers[table]["duckdb"],
            serde_json::Value::Object(ours.clone()),
            "{table}: DuckDB"
        );
        assert_eq!(
            readers[table]["pyarrow"],
            serde_json::Value::Object(ours),
            "{table}: pyarrow"
        );
        assert_eq!(
            readers[table]["duckdb_dt_type"],
            serde_json::json!(["DATE"]),
            "DuckDB types dt as DATE"
        );
        assert_eq!(
            readers[table]["pyarrow_dt_type"], "string",
            "pyarrow types dt as string"
        );
    }
}

#[test]
fn without_a_statement_recjob_sql_reads_statements_from_a_prompt() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_outputs(tmp.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recjob"))
        .args([
            "sql",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "csv",
        ])
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT count(*) AS n\n  FROM recommendations;\nDROP TABLE metrics;\nSELECT 7 AS seven;\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("n\n150\n") && out.contains("seven\n7\n"),
        "{out}"
    );
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));
    let history = std::fs::read_to_string(tmp.path().join(".recjob_sql_history")).unwrap();
    assert!(history.contains("SELECT 7 AS seven;"), "{history}");
}

/// The tiny catalog's batch with " (renamed)"-style `suffix` appended to every title.
fn retitled(batch: &RecordBatch, suffix: &str) -> RecordBatch {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{Field, Schema};
    let titles: Vec<String> = col_strings(batch, "title")
        .into_iter()
        .map(|t| format!("{t}{suffix}"))
        .collect();
    let at = batch.schema().index_of("title").unwrap();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[at] = Field::new("title", DataType::Utf8, true);
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    columns[at] = std::sync::Arc::new(StringArray::from(titles));
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns).unwrap()
}

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = recjob::publish::query(ctx, sql, &[]).await.unwrap();
    let values = col_strings(&batches[0], "n");
    values[0].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_catalog_joins_each_date_to_the_snapshot_its_run_used() {
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = repo().join("fixtures/tiny");
    let source = read_file(&fixtures.join("catalog/dt=2024-01-01/part-0.parquet"));
    let source = arrow::compute::concat_batches(&source[0].schema(), &source).unwrap();
    // Three snapshots: the runs of 2024-01-04 and 2024-01-05 use 2024-01-03 (the newest on or
    // before their date); 2024-01-06 is newer than both, with other titles.
    let catalog = tmp.path().join("catalog");
    for (dt, suffix) in [
        ("2024-01-01", " (old)"),
        ("2024-01-03", ""),
        ("2024-01-06", " (renamed)"),
    ] {
        write_file(
            &catalog.join(format!("dt={dt}/part-0.parquet")),
            &retitled(&source, suffix),
        );
    }
    let config = write_config(
        tmp.path(),
        &fixtures.join("behavior"),
        &catalog,
        &tmp.path().join("out"),
        "[events.weights]\nview = 0.25\npurchase = 1.0\nreturn = 0.0\n[topk]\nk = 5\n[window]\nlookback_days = 7\n[evaluate]\nks = [5]\n",
    );
    for date in ["2024-01-04", "2024-01-05"] {
        let o = recjob(
            tmp.path(),
            &["run", "--config", config.to_str().unwrap(), "--date", date],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let config = recjob::config::Config::load(&config, &[]).unwrap();
    let ctx = recjob::publish::session(&config).await.unwrap();

    let recs = count(&ctx, "SELECT count(*) AS n FROM recommendations").await;
    assert!(recs > 0);
    let raw = "SELECT count(*) AS n FROM recommendations r JOIN catalog c ON r.item_id = c.item_id";
    assert_eq!(
        count(&ctx, raw).await,
        3 * recs,
        "the raw catalog repeats rows per snapshot"
    );
    let view = "SELECT count(*) AS n FROM recommendations r \
                JOIN run_catalog c ON c.dt = r.dt AND c.item_id = r.item_id";
    assert_eq!(count(&ctx, view).await, recs, "run_catalog does not");

    let used = recjob::publish::query(
        &ctx,
        "SELECT DISTINCT CAST(dt AS VARCHAR) AS dt, CAST(catalog_dt AS VARCHAR) AS c FROM run_catalog ORDER BY dt",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(col_strings(&used[0], "dt"), ["2024-01-04", "2024-01-05"]);
    assert_eq!(col_strings(&used[0], "c"), ["2024-01-03", "2024-01-03"]);
    let runs = recjob::publish::query(
        &ctx,
        "SELECT CAST(catalog_dt AS VARCHAR) AS c FROM runs",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(col_strings(&runs[0], "c"), ["2024-01-03", "2024-01-03"]);
    let renamed = "SELECT count(*) AS n FROM recommendations r \
                   JOIN run_catalog c ON c.dt = r.dt AND c.item_id = r.item_id \
                   WHERE c.title LIKE '%(renamed)' OR c.title LIKE '%(old)'";
    assert_eq!(
        count(&ctx, renamed).await,
        0,
        "titles of the snapshot the run used"
    );

    // The saved queries read titles through the view: the snapshot the run used.
    let top = std::fs::read_to_string(repo().join("sql/analyst/top_items_per_day.sql")).unwrap();
    let rows = recjob::publish::query(&ctx, &top, &[]).await.unwrap();
    let titles: Vec<String> = rows.iter().flat_map(|b| col_strings(b, "title")).collect();
    let other = |t: &String| t.ends_with("(renamed)") || t.ends_with("(old)");
    assert!(
        !titles.is_empty() && !titles.iter().any(other),
        "{titles:?}"
    );
}

/// A `recjob sql` session reads exactly the files the manifests list when it starts: a file no
/// manifest lists (here one that does not even decode) is not read; a listed file that is gone
/// leaves its date out of that table with a warning; and a listed file removed while the session
/// lives (a rerun replacing the date) fails the statement as a retryable error, never a partial
/// or empty answer.
#[tokio::test(flavor = "multi_thread")]
async fn recjob_sql_reads_exactly_the_files_the_manifests_list() {
    let tmp = tempfile::tempdir().unwrap();
    let config_path = tiny_outputs(tmp.path());
    let out = tmp.path().join("out");
    let per_date = "SELECT dt, count(*) AS n FROM recommendations GROUP BY dt ORDER BY dt";
    let cli = |sql: &str| {
        recjob(
            tmp.path(),
            &[
                "sql",
                "--config",
                config_path.to_str().unwrap(),
                "--format",
                "csv",
                "-c",
                sql,
            ],
        )
    };
    let o = cli(per_date);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(before.lines().count(), 3, "{before}");
    std::fs::write(
        out.join("recommendations/dt=2024-01-05/part-crashed.parquet"),
        b"PAR1 not a footer",
    )
    .unwrap();
    let o = cli(per_date);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), before);

    let config = recjob::config::Config::load(&config_path, &[]).unwrap();
    let ctx = recjob::publish::session(&config).await.unwrap();
    let listed = published_file(&out, "recommendations", "2024-01-05");
    let kept = std::fs::read(&listed).unwrap();
    std::fs::remove_file(&listed).unwrap();
    let sql = "SELECT count(DISTINCT user_id) AS n, sum(score) AS s FROM recommendations";
    match recjob::publish::query(&ctx, sql, &[]).await {
        Err(recjob::error::Error::Infra { .. }) => {}
        other => panic!("expected a retryable error, got {other:?}"),
    }
    let o = cli(per_date);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        before
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
        "the date whose file is gone is left out"
    );
    assert!(
        stderr(&o).contains("a file the manifest lists is not there")
            && stderr(&o).contains("dt=2024-01-05"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&listed, kept).unwrap();

    // A copy of the output root, read under its own path, reads the same files: they are known
    // by partition and name, not by the URLs the manifests hold.
    let moved = tmp.path().join("moved");
    copy_dir(&out, &moved);
    let o = recjob(
        tmp.path(),
        &[
            "sql",
            "--config",
            config_path.to_str().unwrap(),
            "--set",
            &format!("output.root={}", moved.display()),
            "--format",
            "csv",
            "-c",
            per_date,
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), before);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A one-shot `recjob sql` statement whose files a `run --force` of the date removes while it
/// reads them (exactly that read held until the rerun is done) runs once more
/// on what is published then, and answers with the new run's rows.
#[test]
fn a_statement_whose_date_is_republished_while_it_reads_runs_again_on_the_new_run() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_outputs(tmp.path());
    let cfg = config.to_str().unwrap();
    let out = tmp.path().join("out");
    let sql = "SELECT count(DISTINCT user_id) AS n, min(run_id) AS r FROM recommendations \
               WHERE dt = DATE '2024-01-05'";
    let args = ["sql", "--config", cfg, "--format", "csv", "-c", sql];
    // The read held back is the last of the date's file (the first ones read its footer when the
    // session starts).
    let file = published_file(&out, "recommendations", "2024-01-05");
    let name = file.file_name().unwrap().to_str().unwrap().to_string();
    let held = held_back(tmp.path(), &args, &name, "get", || {
        let o = recjob(
            tmp.path(),
            &["run", "--config", cfg, "--date", "2024-01-05", "--force"],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    });
    assert_eq!(code(&held), 0, "{}", stderr(&held));
    assert!(
        stderr(&held).contains("running it again"),
        "{}",
        stderr(&held)
    );
    let published = manifest(&out, "2024-01-05")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        String::from_utf8_lossy(&held.stdout).contains(&published),
        "the new run's rows: {}",
        String::from_utf8_lossy(&held.stdout)
    );
}

/// A statement whose session lists a table's folder after a `run --force` of a date removed
/// the files the session's manifest lists runs again on the new run, and does not warn that a
/// listed file is missing: that was the rerun, not a damaged root.
#[test]
fn a_statement_retried_after_a_republish_does_not_warn_about_the_files_it_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_outputs(tmp.path());
    let cfg = config.to_str().unwrap();
    let out = tmp.path().join("out");
    let sql = "SELECT min(run_id) AS r FROM recommendations WHERE dt = DATE '2024-01-05'";
    let args = ["sql", "--config", cfg, "--format", "csv", "-c", sql];
    // The listing of the recommendations folder, after the session read the manifests.
    let held = held_back(tmp.path(), &args, "out/recommendations", "list", || {
        let o = recjob(
            tmp.path(),
            &["run", "--config", cfg, "--date", "2024-01-05", "--force"],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    });
    assert_eq!(code(&held), 0, "{}", stderr(&held));
    let log = stderr(&held);
    assert!(log.contains("running it again"), "{log}");
    assert!(!log.contains("is not there"), "{log}");
    let published = manifest(&out, "2024-01-05")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        String::from_utf8_lossy(&held.stdout),
        format!("r\n{published}\n")
    );
}

/// A date published before `neighbor_score` existed (its recommendations written without the
/// column) reads beside a newer one: one table, the column NULL on the older date.
#[test]
fn a_date_published_before_neighbor_score_reads_with_it_null() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_outputs(tmp.path());
    let file = published_file(&tmp.path().join("out"), "recommendations", "2024-01-04");
    let old: Vec<RecordBatch> = read_file(&file)
        .into_iter()
        .map(|mut b| {
            let at = b.schema().index_of("neighbor_score").unwrap();
            b.remove_column(at);
            b
        })
        .collect();
    let batch = arrow::compute::concat_batches(&old[0].schema(), &old).unwrap();
    write_file(&file, &batch);
    let o = recjob(
        tmp.path(),
        &[
            "sql",
            "--config",
            config.to_str().unwrap(),
            "--format",
            "csv",
            "-c",
            "SELECT CAST(dt AS VARCHAR) AS dt, count(*) > 0 AS listed, count(neighbor_score) = 0 AS none_have, \
             count(*) = count(neighbor_score) AS all_have FROM recommendations GROUP BY dt ORDER BY dt",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "dt,listed,none_have,all_have\n2024-01-04,true,true,false\n2024-01-05,true,false,true\n"
    );
}
