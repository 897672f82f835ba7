//! The nightly run on Apache Ballista: `recjob scheduler` and two `recjob executor` processes
//! on loopback, started and stopped here. A run with `engine.url = df://...` publishes exactly
//! the rows of a single-process run (Online Retail, the real model). An executor killed while it
//! runs a task: Ballista runs the task again elsewhere and the run publishes the same rows.
//! Every executor killed: the run fails with exit 2 and publishes nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const TABLES: [&str; 6] = [
    "recommendations",
    "user_embeddings",
    "item_vectors",
    "similar_items",
    "metrics",
    "item_embeddings",
];
const DATE: &str = "2011-11-30";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn start(dir: &Path, name: &str, args: &[String]) -> Process {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_recjob"))
            .args(args)
            .current_dir(dir)
            .env("RECJOB_LOG", "info")
            .env_remove("RECJOB_LOG_FORMAT")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("recjob starts");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scheduler and two executors; stopped on drop.
struct Cluster {
    scheduler: Process,
    executors: Vec<Process>,
    url: String,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let port = free_port();
        let scheduler = Process::start(
            dir,
            "scheduler",
            &[
                "scheduler".into(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--external-host".into(),
                "127.0.0.1".into(),
                "--executor-timeout-seconds".into(),
                "5".into(),
            ],
        );
        let executors = (0..2)
            .map(|e| {
                let work = dir.join(format!("executor-{e}"));
                std::fs::create_dir_all(&work).unwrap();
                Process::start(
                    dir,
                    &format!("executor-{e}"),
                    &[
                        "executor".into(),
                        "--scheduler".into(),
                        format!("127.0.0.1:{port}"),
                        "--bind".into(),
                        "127.0.0.1".into(),
                        "--external-host".into(),
                        "127.0.0.1".into(),
                        "--port".into(),
                        free_port().to_string(),
                        "--grpc-port".into(),
                        free_port().to_string(),
                        "--heartbeat-seconds".into(),
                        "1".into(),
                        "--work-dir".into(),
                        work.display().to_string(),
                    ],
                )
            })
            .collect();
        let cluster = Cluster {
            scheduler,
            executors,
            url: format!("df://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cluster
            .executors
            .iter()
            .all(|e| e.log().contains("Executor registration succeed"))
        {
            assert!(
                Instant::now() < deadline,
                "executors did not register in 60 s\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    fn logs(&self) -> String {
        let tail = |p: &Process| {
            let log = p.log();
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        let mut out = format!("--- scheduler\n{}\n", tail(&self.scheduler));
        for (i, e) in self.executors.iter().enumerate() {
            out += &format!("--- executor {i}\n{}\n", tail(e));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for e in &mut self.executors {
            e.kill();
        }
        self.scheduler.kill();
    }
}

fn run_args<'a>(config: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--config",
        config,
        "--date",
        DATE,
        "--set",
        &format!("output.root={out}"),
        "--set",
        "window.lookback_days=30",
        "--set",
        "topk.k=20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Every row of every published table of `DATE` under `out`, without `run_id`, sorted.
fn published_rows(out: &Path) -> Vec<(String, Vec<String>)> {
    TABLES
        .iter()
        .map(|t| {
            let dir = if *t == "item_embeddings" {
                out.join(t)
            } else {
                out.join(t).join(format!("dt={DATE}"))
            };
            let mut rows: Vec<String> = walk(&dir)
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .flat_map(|p| file_rows(&p, &["run_id"]))
                .collect();
            rows.sort();
            assert!(!rows.is_empty(), "{t}: no rows under {}", dir.display());
            (t.to_string(), rows)
        })
        .collect()
}

fn assert_same_rows(local: &[(String, Vec<String>)], cluster: &[(String, Vec<String>)]) {
    for ((table, a), (_, b)) in local.iter().zip(cluster) {
        assert_eq!(a.len(), b.len(), "{table}: row counts differ");
        if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
            panic!("{table}: rows differ\n local:   {x}\n cluster: {y}");
        }
    }
}

#[test]
fn a_scheduler_that_cannot_be_reached_fails_the_run_with_exit_2_writing_nothing() {
    let data = shared_data().join("online_retail/parquet");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let config = write_config(
        tmp.path(),
        &data.join("behavior"),
        &data.join("catalog"),
        &out,
        "",
    );
    let engine = format!("engine.url=df://127.0.0.1:{}", free_port());
    let o = recjob(
        tmp.path(),
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--date",
            DATE,
            "--set",
            &engine,
        ],
    );
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot run a query on the Ballista cluster at df://127.0.0.1:"),
        "{}",
        stderr(&o)
    );
    assert!(!has_files(&out), "nothing is written");
}

fn manifest(out: &Path) -> serde_json::Value {
    let path = out.join(format!("_manifests/dt={DATE}/manifest.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn a_run_on_ballista_publishes_the_single_process_rows_reruns_lost_tasks_and_fails_cleanly_without_executors()
 {
    let data = shared_data().join("online_retail/parquet");
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(
        tmp.path(),
        &data.join("behavior"),
        &data.join("catalog"),
        &tmp.path().join("unused"),
        "[catalog]\navailable_column = \"is_merchandise\"\n[engine]\npartitions = 4\n",
    );
    let config = config.to_str().unwrap();

    // The single-process run.
    let local_out = tmp.path().join("local");
    let o = recjob(
        tmp.path(),
        &run_args(config, local_out.to_str().unwrap(), &[])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code(&o), 0, "local run: {}", stderr(&o));
    let local = published_rows(&local_out);

    let mut cluster = Cluster::start(tmp.path());
    let engine = format!("engine.url={}", cluster.url);

    // The same run on the cluster.
    let cluster_out = tmp.path().join("cluster");
    let o = recjob(
        tmp.path(),
        &run_args(config, cluster_out.to_str().unwrap(), &["--set", &engine])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        code(&o),
        0,
        "cluster run: {}\n{}",
        stderr(&o),
        cluster.logs()
    );
    assert_same_rows(&local, &published_rows(&cluster_out));
    let m = manifest(&cluster_out);
    assert_eq!(m["engine"], cluster.url.as_str());
    assert_eq!(manifest(&local_out)["engine"], "local");
    assert!(
        !has_files(&cluster_out.join("_engine")),
        "staged engine inputs are removed"
    );
    for (i, e) in cluster.executors.iter().enumerate() {
        assert!(
            e.log().contains("recjob_embed") || e.log().contains("Execute task"),
            "executor {i} ran no task\n{}",
            cluster.logs()
        );
    }

    // Executor loss that Ballista recovers from: executor 0 dies while it runs its first task of
    // the run (it holds no finished results yet), so the scheduler runs the task again on
    // executor 1 and the run publishes the same rows.
    let started_tasks = |e: &Process| e.log().matches("Execute task").count();
    let loss_out = tmp.path().join("loss");
    let tasks_on_1 = started_tasks(&cluster.executors[1]);
    let mut run = spawn_run(
        tmp.path(),
        &run_args(config, loss_out.to_str().unwrap(), &["--set", &engine]),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    wait_for_staging(&loss_out, &mut run, deadline);
    let before = started_tasks(&cluster.executors[0]);
    while started_tasks(&cluster.executors[0]) == before && run.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run did not finish in 300 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        run.try_wait().unwrap().is_none(),
        "executor 0 ran no task of the run before it ended"
    );
    cluster.executors[0].kill();
    let o = run.wait_with_output().unwrap();
    assert_eq!(
        code(&o),
        0,
        "Ballista did not re-run the lost task: {}\n{}",
        stderr(&o),
        cluster.logs()
    );
    assert_same_rows(&local, &published_rows(&loss_out));
    assert!(
        started_tasks(&cluster.executors[1]) > tasks_on_1,
        "executor 1 ran none of the run's tasks\n{}",
        cluster.logs()
    );

    // Executor loss that it cannot recover from: every executor is gone mid-run. The run fails
    // with exit 2 and publishes nothing; a retry (Airflow's, for exit 2) starts over.
    let lost_out = tmp.path().join("lost");
    let mut run = spawn_run(
        tmp.path(),
        &run_args(config, lost_out.to_str().unwrap(), &["--set", &engine]),
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    wait_for_staging(&lost_out, &mut run, deadline);
    cluster.executors[1].kill();
    let o = run.wait_with_output().unwrap();
    assert_eq!(code(&o), 2, "{}\n{}", stderr(&o), cluster.logs());
    assert!(
        !lost_out.join(format!("_manifests/dt={DATE}")).exists(),
        "a failed run published a manifest"
    );
    for t in TABLES {
        assert!(
            !has_files(&lost_out.join(t)),
            "a failed run left files in {t}"
        );
    }
}

fn spawn_run(dir: &Path, args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_recjob"))
        .args(args)
        .current_dir(dir)
        .env("RECJOB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until the run has staged the inputs of a distributed stage.
fn wait_for_staging(out: &Path, run: &mut Child, deadline: Instant) {
    while !has_files(&out.join("_engine")) && run.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run staged nothing in 300 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run ended before staging"
    );
}
