//! The commit protocol (ARCHITECTURE.md "Publishing") under crashes, concurrency and storage
//! faults. Every check below can fail: each one asserts that a published manifest describes
//! exactly the rows on disk for its run, and each fault or crash is proven to have landed (the
//! process says where it stopped, or which request it failed).
//!
//! - a crash at every named step of the protocol (`RECJOB_HALT_AT`), on a first publish and on
//!   a `--force` rerun;
//! - two runs of one date, and `recjob evaluate`, started together, many seeded times, on local
//!   files (and on SeaweedFS in `s3.rs`);
//! - a failure injected into every storage request of a run (`RECJOB_FAULTS`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

pub const TABLES: [&str; 5] = [
    "recommendations",
    "user_embeddings",
    "item_vectors",
    "similar_items",
    "metrics",
];

/// What a published date's manifest says about one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub path: PathBuf,
    pub rows: u64,
    pub run_id: String,
}

/// The run a published date's manifest names, and its tables, or `None` when unpublished.
pub fn manifest_tables(out: &Path, date: &str) -> Option<(String, BTreeMap<String, Listed>)> {
    let path = out.join(format!("_manifests/dt={date}/manifest.json"));
    let bytes = std::fs::read(&path).ok()?;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let run = m["run_id"].as_str().unwrap().to_string();
    let tables = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| TABLES.contains(&t["table"].as_str().unwrap()))
        .map(|t| {
            let url = t["url"].as_str().unwrap();
            let rows_run = t["run_id"].as_str().unwrap_or("");
            (
                t["table"].as_str().unwrap().to_string(),
                Listed {
                    path: PathBuf::from(url.strip_prefix("file://").unwrap()),
                    rows: t["rows"].as_u64().unwrap(),
                    run_id: if rows_run.is_empty() {
                        run.clone()
                    } else {
                        rows_run.to_string()
                    },
                },
            )
        })
        .collect();
    Some((run, tables))
}

/// A published date is consistent: its manifest lists all five tables, and each listed file
/// exists with the listed row count, every row carrying the listed run id. Returns the run.
pub fn assert_consistent(out: &Path, date: &str, context: &str) -> Option<String> {
    let (run, tables) = manifest_tables(out, date)?;
    assert_eq!(tables.len(), TABLES.len(), "{context}: {tables:?}");
    for (table, listed) in &tables {
        assert!(
            listed.path.exists(),
            "{context}: the manifest of dt={date} lists {} which is not on disk",
            listed.path.display()
        );
        let mut rows = 0u64;
        for b in read_file(&listed.path) {
            rows += b.num_rows() as u64;
            assert!(
                col_strings(&b, "run_id")
                    .iter()
                    .all(|r| *r == listed.run_id),
                "{context}: {table} dt={date} holds rows of another run than {}",
                listed.run_id
            );
        }
        assert_eq!(rows, listed.rows, "{context}: {table} dt={date} row count");
    }
    Some(run)
}

/// Consistent, and nothing else is left: each partition holds exactly the listed file, and
/// neither staging nor a lease of the date remains.
pub fn assert_exact(out: &Path, date: &str, context: &str) {
    assert_consistent(out, date, context).unwrap_or_else(|| panic!("{context}: unpublished"));
    let (_, tables) = manifest_tables(out, date).unwrap();
    for (table, listed) in &tables {
        let on_disk: BTreeSet<PathBuf> = walk(&out.join(format!("{table}/dt={date}"))).collect();
        assert_eq!(
            on_disk,
            BTreeSet::from([listed.path.clone()]),
            "{context}: {table} dt={date} holds other files"
        );
    }
    for leftover in [format!("_staging/dt={date}"), format!("_leases/dt={date}")] {
        assert!(
            !has_files(&out.join(&leftover)),
            "{context}: {leftover} is not empty"
        );
    }
}

/// Rows of a published table without run_id, sorted.
fn rows(out: &Path, table: &str, date: &str) -> Vec<String> {
    let mut r = file_rows(&published_file(out, table, date), &["run_id"]);
    r.sort();
    r
}

fn all_rows(out: &Path, date: &str) -> BTreeMap<&'static str, Vec<String>> {
    TABLES.iter().map(|t| (*t, rows(out, t, date))).collect()
}

/// Rows per table of a published date.
fn row_counts(out: &Path, date: &str) -> BTreeMap<&'static str, usize> {
    all_rows(out, date)
        .into_iter()
        .map(|(t, r)| (t, r.len()))
        .collect()
}

const STEPS: [&str; 7] = [
    "leased", "staged", "moving", "moved", "manifest", "cleaning", "cleaned",
];

/// A tiny-fixture job with 2024-01-03 and 2024-01-04 published: (its directory, its config,
/// its output root).
fn two_nights() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config(tmp.path());
    let out = tmp.path().join("out");
    for date in ["2024-01-03", "2024-01-04"] {
        let cfg = config.to_str().unwrap();
        let o = recjob(tmp.path(), &["run", "--config", cfg, "--date", date]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    (tmp, config, out)
}

#[test]
fn a_crash_at_every_step_of_the_protocol_leaves_one_whole_run_published() {
    let (tmp, config, out) = two_nights();
    let cfg = config.to_str().unwrap();
    let reference = all_rows(&out, "2024-01-04");
    let mut landed = Vec::new();
    // A first publish has nothing to clean: its `cleaning` step never comes.
    let scenarios = STEPS
        .iter()
        .filter(|s| **s != "cleaning")
        .map(|s| (*s, "2024-01-05", false))
        .chain(STEPS.iter().map(|s| (*s, "2024-01-04", true)));
    for (step, date, force) in scenarios {
        let before = manifest_tables(&out, date).map(|(run, _)| run);
        let mut args = vec!["run", "--config", cfg, "--date", date];
        if force {
            args.push("--force");
        }
        let o = recjob_env(tmp.path(), &args, &[("RECJOB_HALT_AT", step)]);
        let context = format!("halt at {step}, dt={date}, force={force}");
        assert!(
            stderr(&o).contains(&format!("halting at {step}")) && o.status.code().is_none(),
            "{context}: the process did not stop there: {}",
            stderr(&o)
        );
        landed.push(context.clone());
        // Before the manifest step the previous state stands; from it on, the new run does.
        let after = assert_consistent(&out, date, &context);
        let switched =
            STEPS.iter().position(|s| *s == step) >= STEPS.iter().position(|s| *s == "manifest");
        if switched {
            assert!(
                after.is_some() && after != before,
                "{context}: {before:?} -> {after:?}"
            );
        } else {
            assert_eq!(after, before, "{context}: the published state changed");
        }
        // An operator reruns the date (the crashed holder's lease is seen dead): exactly one
        // run's files remain, with the rows of an uninterrupted run.
        let o = recjob(
            tmp.path(),
            &["run", "--config", cfg, "--date", date, "--force"],
        );
        assert_eq!(code(&o), 0, "{context}: rerun: {}", stderr(&o));
        assert_exact(&out, date, &context);
        if date == "2024-01-04" {
            assert_eq!(
                all_rows(&out, date),
                reference,
                "{context}: rows after the rerun"
            );
        }
        if date == "2024-01-05" {
            std::fs::remove_file(out.join("_manifests/dt=2024-01-05/manifest.json")).unwrap();
        }
    }
    assert_eq!(landed.len(), 13);
    eprintln!("crash points landed and survived: {}", landed.len());
}

/// Seeded pseudo-random numbers (a failing trial can be replayed).
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Start `recjob` with `args` after `delay`.
fn spawn_after(
    cwd: &Path,
    args: &[String],
    delay: Duration,
    env: &[(String, String)],
) -> std::thread::JoinHandle<std::process::Output> {
    let (cwd, args, env) = (cwd.to_path_buf(), args.to_vec(), env.to_vec());
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        Command::new(env!("CARGO_BIN_EXE_recjob"))
            .args(&args)
            .current_dir(&cwd)
            .envs(env)
            .env("RECJOB_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    })
}

/// While processes run, a reader that follows the manifest reads every file it lists: a
/// manifest that is current never lists a file that is missing or holds another run's rows.
fn watch(out: &Path, date: &str, until: &std::sync::atomic::AtomicBool) -> usize {
    let mut checks = 0;
    while !until.load(std::sync::atomic::Ordering::SeqCst) {
        if let Some((_, tables)) = manifest_tables(out, date) {
            for (table, listed) in &tables {
                let readable = std::fs::File::open(&listed.path)
                    .ok()
                    .and_then(|f| {
                        parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(f, 4096)
                            .ok()
                    })
                    .map(|r| r.map(|b| b.unwrap()).collect::<Vec<_>>());
                match readable {
                    Some(batches) => {
                        for b in batches {
                            assert!(
                                col_strings(&b, "run_id")
                                    .iter()
                                    .all(|r| *r == listed.run_id)
                            );
                        }
                        checks += 1;
                    }
                    // Gone: only allowed once the manifest lists another file for the table (a
                    // rerun, or an evaluation's new metrics file).
                    None => assert_ne!(
                        manifest_tables(out, date)
                            .and_then(|(_, now)| now.get(table).map(|l| l.path.clone())),
                        Some(listed.path.clone()),
                        "the current manifest lists {}, which is gone",
                        listed.path.display()
                    ),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    checks
}

/// Two runs of one date and an evaluation, started within a few hundred milliseconds of each
/// other, `trials` seeded times, against the job in `cwd` (config `cfg`, local output `out`).
pub fn concurrent_trials(
    cwd: &Path,
    cfg: &str,
    out: Option<&Path>,
    date: &str,
    trials: usize,
    env: &[(String, String)],
    check: &dyn Fn(&str),
) -> BTreeMap<(i32, i32, i32), usize> {
    let mut state = 0xC0FFEE_u64;
    let mut outcomes = BTreeMap::new();
    for trial in 0..trials {
        let run = |force: bool| {
            let mut a: Vec<String> = ["run", "--config", cfg, "--date", date]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if force {
                a.push("--force".into());
            }
            a
        };
        let evaluate: Vec<String> = ["evaluate", "--config", cfg, "--date", date]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let delays: Vec<Duration> = (0..3)
            .map(|_| Duration::from_millis(next(&mut state) % 400))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = out.map(|o| {
            let (o, d, stop) = (o.to_path_buf(), date.to_string(), stop.clone());
            std::thread::spawn(move || watch(&o, &d, &stop))
        });
        let a = spawn_after(cwd, &run(true), delays[0], env);
        let b = spawn_after(cwd, &run(trial % 2 == 0), delays[1], env);
        let e = spawn_after(cwd, &evaluate, delays[2], env);
        let (a, b, e) = (a.join().unwrap(), b.join().unwrap(), e.join().unwrap());
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(w) = watcher {
            w.join().unwrap();
        }
        for (name, o) in [("run --force", &a), ("run", &b), ("evaluate", &e)] {
            let c = code(o);
            assert!(
                [0, 2, 3, 99].contains(&c),
                "trial {trial}: {name} exited {c}: {}",
                stderr(o)
            );
            if c == 2 {
                assert!(
                    stderr(o).contains("busy"),
                    "trial {trial}: {name}: {}",
                    stderr(o)
                );
            }
        }
        // Whoever took the lease first did its work: the others waited for nothing.
        assert!(
            [&a, &b, &e].iter().any(|o| code(o) == 0),
            "trial {trial}: nobody succeeded: {} / {} / {}",
            stderr(&a),
            stderr(&b),
            stderr(&e)
        );
        check(&format!("trial {trial}"));
        *outcomes.entry((code(&a), code(&b), code(&e))).or_insert(0) += 1;
    }
    outcomes
}

#[test]
fn concurrent_runs_and_evaluations_of_one_date_never_mix() {
    let (tmp, config, out) = two_nights();
    let cfg = config.to_str().unwrap();
    let reference = all_rows(&out, "2024-01-04");
    let check = |context: &str| {
        assert_exact(&out, "2024-01-04", context);
        let mut now = all_rows(&out, "2024-01-04");
        let mut want = reference.clone();
        // An evaluation republishes the same metric values under its own id.
        now.remove("metrics");
        want.remove("metrics");
        assert_eq!(now, want, "{context}: rows differ from a lone run");
    };
    let outcomes = concurrent_trials(tmp.path(), cfg, Some(&out), "2024-01-04", 8, &[], &check);
    let busy: usize = outcomes
        .iter()
        .filter(|((a, b, e), _)| [a, b, e].contains(&&2))
        .map(|(_, n)| n)
        .sum();
    eprintln!("concurrent trials (run --force, run, evaluate exit codes): {outcomes:?}");
    assert!(busy > 0, "no trial overlapped: {outcomes:?}");
}

/// A run of 2024-01-05 on the tiny fixture with `RECJOB_FAULTS` set; returns (exit code,
/// stderr).
fn faulty_run(tmp: &Path, cfg: &str, faults: &str, force: bool) -> (i32, String) {
    let mut args = vec!["run", "--config", cfg, "--date", "2024-01-05"];
    if force {
        args.push("--force");
    }
    let o = recjob_env(tmp, &args, &[("RECJOB_FAULTS", faults)]);
    (code(&o), stderr(&o))
}

/// Remove every trace of `date` under `out`, as if it had never run.
fn unpublish(out: &Path, date: &str) {
    for dir in TABLES
        .iter()
        .map(|t| t.to_string())
        .chain(["_manifests", "_staging", "_leases"].map(String::from))
    {
        let _ = std::fs::remove_dir_all(out.join(format!("{dir}/dt={date}")));
    }
}

/// The numbers and operations of the storage requests of a run.
fn requests(trace: &str) -> Vec<(u64, String)> {
    trace
        .lines()
        .filter_map(|l| l.strip_prefix("recjob-faults: "))
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((parts.next()?.parse().ok()?, parts.next()?.to_string()))
        })
        .collect()
}

#[test]
fn a_failure_of_any_storage_request_publishes_all_or_nothing() {
    let (tmp, config, out) = two_nights();
    let cfg = config.to_str().unwrap();
    // A clean first publish of 01-05 and a clean --force rerun: their request sequences.
    let (c, first) = faulty_run(tmp.path(), cfg, "trace", false);
    assert_eq!(c, 0, "{first}");
    // A run that could not read the embedding cache embeds again, in other batches: the same
    // lists, vectors equal only to float noise. So runs are compared by their row counts.
    let reference = row_counts(&out, "2024-01-05");
    let (c, rerun) = faulty_run(tmp.path(), cfg, "trace", true);
    assert_eq!(c, 0, "{rerun}");
    let first = requests(&first);
    let rerun = requests(&rerun);
    assert!(first.len() > 50, "{} requests", first.len());
    let published_run = |out: &Path| manifest_tables(out, "2024-01-05").map(|(r, _)| r);

    let mut survived = 0;
    let mut published_anyway = 0;
    // Every request of a first publish fails once, in its own run.
    for (n, op) in &first {
        unpublish(&out, "2024-01-05");
        let (c, err) = faulty_run(tmp.path(), cfg, &format!("fail={n}"), false);
        let context = format!("first publish, request {n} ({op}) fails");
        assert!(
            err.contains(&format!("failing request {n} ")),
            "{context}: the fault did not land: {err}"
        );
        match c {
            0 => {
                published_anyway += 1;
                assert_consistent(&out, "2024-01-05", &context).unwrap();
                assert_eq!(row_counts(&out, "2024-01-05"), reference, "{context}");
            }
            2 => assert!(
                published_run(&out).is_none(),
                "{context}: published after exit 2"
            ),
            c => panic!("{context}: exit {c} (not retryable): {err}"),
        }
        survived += 1;
    }
    // Every request of a --force rerun from its first staged write on fails once: the date
    // stays published, by the old run or by the new one, never a mix.
    let start = rerun
        .iter()
        .position(|(_, op)| op == "put")
        .expect("the rerun writes");
    for (n, op) in &rerun[start..] {
        let before = published_run(&out);
        let (c, err) = faulty_run(tmp.path(), cfg, &format!("fail={n}"), true);
        let context = format!("--force rerun, request {n} ({op}) fails");
        assert!(
            err.contains(&format!("failing request {n} ")),
            "{context}: the fault did not land: {err}"
        );
        let after = assert_consistent(&out, "2024-01-05", &context)
            .unwrap_or_else(|| panic!("{context}: the date was unpublished"));
        match c {
            0 => published_anyway += 1,
            2 => assert_eq!(
                after,
                before.unwrap(),
                "{context}: exit 2 but the run changed"
            ),
            c => panic!("{context}: exit {c} (not retryable): {err}"),
        }
        assert_eq!(row_counts(&out, "2024-01-05"), reference, "{context}");
        survived += 1;
    }
    // Listings that come back truncated never publish a mix either.
    let lists: Vec<u64> = first
        .iter()
        .filter(|(_, op)| op.starts_with("list"))
        .map(|(n, _)| *n)
        .collect();
    for n in &lists {
        let (c, err) = faulty_run(tmp.path(), cfg, &format!("partial_list={n}"), true);
        let context = format!("listing {n} truncated");
        if c == 0 {
            assert_consistent(&out, "2024-01-05", &context).unwrap();
        } else {
            assert!(published_run(&out).is_some(), "{context}: {err}");
            assert_consistent(&out, "2024-01-05", &context).unwrap();
        }
    }
    eprintln!(
        "faults injected and survived: {survived} failed requests ({} of a first publish, {} of a --force rerun; {published_anyway} still published), {} truncated listings",
        first.len(),
        rerun.len() - start,
        lists.len()
    );
}
