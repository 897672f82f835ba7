//! Helpers: paths to the real model and data, running the CLI, reading published tables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Int32Type};
use object_store::ObjectStore;
use recjob::io::read_parquet;
use recjob::io::{Location, is_data_file};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The real all-MiniLM-L6-v2 directory (`make model` puts it there).
pub fn model_dir() -> PathBuf {
    let dir = std::env::var("RECJOB_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").exists(),
        "model missing at {}: run `make model` first",
        dir.display()
    );
    dir
}

/// `../shared/data` (or `$RECJOB_SHARED_DATA`).
pub fn shared_data() -> PathBuf {
    let dir = std::env::var("RECJOB_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join("../shared/data"));
    assert!(
        dir.join("online_retail").exists(),
        "shared data missing at {}",
        dir.display()
    );
    dir
}

/// Run the `recjob` binary in `cwd`.
pub fn recjob(cwd: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_recjob"))
        .args(args)
        .current_dir(cwd)
        .env("RECJOB_LOG", "warn")
        .env_remove("RECJOB_LOG_FORMAT")
        .output()
        .expect("recjob runs")
}

/// Run the `recjob` binary in `cwd` with extra environment variables.
pub fn recjob_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_recjob"));
    cmd.args(args)
        .current_dir(cwd)
        .env("RECJOB_LOG", "warn")
        .env_remove("RECJOB_LOG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("recjob runs")
}

/// A job on the tiny fixture (fixtures/tiny) writing to `dir/out`.
pub fn tiny_config(dir: &Path) -> PathBuf {
    let fixtures = repo().join("fixtures/tiny");
    write_config(
        dir,
        &fixtures.join("behavior"),
        &fixtures.join("catalog"),
        &dir.join("out"),
        "[events.weights]\nview = 0.25\npurchase = 1.0\nreturn = 0.0\n[topk]\nk = 5\n[window]\nlookback_days = 7\n[evaluate]\nks = [5]\n",
    )
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A job config for tests: online retail (or `behavior`/`catalog` roots) into `out`.
pub fn write_config(
    dir: &Path,
    behavior: &Path,
    catalog: &Path,
    out: &Path,
    extra: &str,
) -> PathBuf {
    let text = format!(
        "[input]\nbehavior = {:?}\ncatalog = {:?}\n[output]\nroot = {:?}\n[model]\ndir = {:?}\n{extra}\n",
        behavior.display().to_string(),
        catalog.display().to_string(),
        out.display().to_string(),
        model_dir().display().to_string(),
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// All batches of every data file under `url` (a table partition directory).
pub async fn read_table(url: &str) -> Vec<RecordBatch> {
    let loc = Location::parse(url).unwrap();
    let store: Arc<dyn ObjectStore> = loc.store.clone();
    let mut out = Vec::new();
    for meta in loc
        .list_files()
        .await
        .unwrap()
        .iter()
        .filter(|m| is_data_file(m))
    {
        out.extend(read_parquet(&store, &meta.location).await.unwrap());
    }
    out
}

pub fn col_strings(b: &RecordBatch, name: &str) -> Vec<String> {
    let a = arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
    let a = a.as_string::<i32>();
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

pub fn col_i32(b: &RecordBatch, name: &str) -> Vec<i32> {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Int32Type>()
        .values()
        .to_vec()
}

pub fn col_f32(b: &RecordBatch, name: &str) -> Vec<f32> {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Float32Type>()
        .values()
        .to_vec()
}

/// `id -> vector` from an `embedding` column.
pub fn vectors_by_id(batches: &[RecordBatch], id: &str) -> HashMap<String, Vec<f32>> {
    let mut out = HashMap::new();
    for b in batches {
        let ids = col_strings(b, id);
        let (flat, dim) =
            recjob::io::from_arrow(b.column_by_name("embedding").unwrap().as_ref()).unwrap();
        for (r, i) in ids.into_iter().enumerate() {
            out.insert(i, flat[r * dim..(r + 1) * dim].to_vec());
        }
    }
    out
}

/// A published date's manifest under the local output root `out`.
pub fn manifest(out: &Path, date: &str) -> serde_json::Value {
    let path = out.join(format!("_manifests/dt={date}/manifest.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// The URL of `table`'s file that the manifest of `date` publishes.
pub fn published_url(manifest: &serde_json::Value, table: &str) -> String {
    manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("the manifest lists no {table}"))["url"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The local file of `table` that the manifest of `date` publishes, under the output root `out`.
pub fn published_file(out: &Path, table: &str, date: &str) -> PathBuf {
    let url = published_url(&manifest(out, date), table);
    PathBuf::from(url.strip_prefix("file://").expect("a local output root"))
}

/// Does anything exist under `dir` (a local directory)?
pub fn has_files(dir: &Path) -> bool {
    walk(dir).next().is_some()
}

pub fn walk(dir: &Path) -> impl Iterator<Item = PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path())
                } else {
                    files.push(e.path())
                }
            }
        }
    }
    files.into_iter()
}

/// Every batch of a local Parquet file.
pub fn read_file(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 4096)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Write one batch as a local Parquet file (parent directories created).
pub fn write_file(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// A local Parquet file's rows as `a|b|c` strings, without the columns in `skip`.
pub fn file_rows(path: &Path, skip: &[&str]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in read_file(path) {
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|&c| !skip.contains(&b.schema().field(c).name().as_str()))
            .collect();
        let b = b.project(&keep).unwrap();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| arrow::util::display::array_value_to_string(b.column(c), r).unwrap())
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows
}

/// Run `recjob args` twice in `dir`: once with `RECJOB_FAULTS=trace` to number its storage
/// requests, then with the last request whose traced line ends with `object` and whose
/// operation starts with `op` (`get` for any read, `put`, `list`) held
/// (`RECJOB_FAULTS=hold=N:PATH`) from the moment it is issued until
/// `meanwhile` has returned. Returns the held run's output (its log at `info`). The races of
/// concurrent processes, made repeatable, with no timing.
pub fn held_back(
    dir: &Path,
    args: &[&str],
    object: &str,
    op: &str,
    meanwhile: impl FnOnce() + Send,
) -> Output {
    let o = recjob_env(dir, args, &[("RECJOB_FAULTS", "trace")]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let request = stderr(&o)
        .lines()
        .filter(|l| {
            l.starts_with("recjob-faults:")
                && l.split_whitespace()
                    .nth(2)
                    .is_some_and(|o| o.starts_with(op))
                && l.ends_with(object)
        })
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap_or_else(|| panic!("no request on {object}: {}", stderr(&o)));
    let release = dir.join(format!("release-{request}"));
    let held_marker = dir.join(format!("release-{request}.held"));
    let _ = std::fs::remove_file(&release);
    let _ = std::fs::remove_file(&held_marker);
    let hold = format!("hold={request}:{}", release.display());
    std::thread::scope(|s| {
        let held = s.spawn(|| {
            recjob_env(
                dir,
                args,
                &[("RECJOB_FAULTS", hold.as_str()), ("RECJOB_LOG", "info")],
            )
        });
        while !held_marker.exists() {
            if held.is_finished() {
                let o = held.join().unwrap();
                panic!("request {request} was never held: {}", stderr(&o));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        meanwhile();
        std::fs::write(&release, b"").unwrap();
        held.join().unwrap()
    })
}
