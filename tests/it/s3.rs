//! Against a real S3-compatible server: SeaweedFS (`weed mini`) on loopback, started and
//! stopped by scripts/seaweedfs.sh. A run and a backfill read and write `s3://`; the server
//! stopped mid-run gives exit 2 and publishes nothing; after a restart the rerun publishes.
//! Credentials never appear in logs or manifests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::*;

const BUCKET: &str = "recjob";
const KEY: &str = "recjob-test-access";
const SECRET: &str = "recjob-test-secret-0c5d2e";

struct Server {
    dir: PathBuf,
    port: u16,
}

impl Server {
    fn start(dir: &Path, port: u16) -> Server {
        let o = Command::new(repo().join("scripts/seaweedfs.sh"))
            .args([
                "start",
                dir.to_str().unwrap(),
                &port.to_string(),
                BUCKET,
                KEY,
                SECRET,
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "SeaweedFS did not start (run `make setup`): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Server {
            dir: dir.to_path_buf(),
            port,
        }
    }

    fn stop(&self) {
        let o = Command::new(repo().join("scripts/seaweedfs.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success());
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(BUCKET)
                .with_endpoint(format!("http://127.0.0.1:{}", self.port))
                .with_access_key_id(KEY)
                .with_secret_access_key(SECRET)
                .with_region("us-east-1")
                .with_allow_http(true)
                .build()
                .unwrap(),
        )
    }

    /// `recjob` with the standard AWS variables pointing at this server.
    fn recjob(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_recjob"))
            .args(args)
            .current_dir(cwd)
            .env("RECJOB_LOG", "info")
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env(
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A base port with the 11 ports above it free on loopback.
fn free_base_port() -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 20_000 + (seed.wrapping_mul(31).wrapping_add(attempt * 97)) % 30_000;
        if (0..11).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range on 127.0.0.1");
}

/// Upload Online Retail's behavior partitions in [first, last] and its catalog under `in/`.
async fn upload_inputs(store: &Arc<dyn ObjectStore>, first: &str, last: &str) {
    let data = shared_data().join("online_retail/parquet");
    for table in ["behavior", "catalog"] {
        for file in walk(&data.join(table)) {
            let rel = file
                .strip_prefix(&data)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let dt = rel.split("dt=").nth(1).unwrap().split('/').next().unwrap();
            if table == "behavior" && (dt < first || dt > last) {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap();
            store
                .put(
                    &ObjectPath::from(format!("in/{rel}")),
                    PutPayload::from(bytes),
                )
                .await
                .unwrap();
        }
    }
}

fn config(dir: &Path, out: &str) -> PathBuf {
    let text = format!(
        "[input]\nbehavior = \"s3://{BUCKET}/in/behavior\"\ncatalog = \"s3://{BUCKET}/in/catalog\"\n\
         [output]\nroot = \"s3://{BUCKET}/{out}\"\n[model]\ndir = {:?}\n[catalog]\navailable_column = \"is_merchandise\"\n\
         [topk]\nk = 20\n[window]\nlookback_days = 30\n",
        model_dir().display().to_string()
    );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn assert_no_secrets(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} contains the secret key");
    assert!(!text.contains(KEY), "{what} contains the access key id");
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_and_backfills_on_s3_and_survives_an_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("weed"), free_base_port());
    let store = server.store();
    upload_inputs(&store, "2011-10-30", "2011-12-01").await;

    // A run, then a backfill over it and the next day.
    let cfg = config(tmp.path(), "out");
    let cfg = cfg.to_str().unwrap();
    let o = server.recjob(
        tmp.path(),
        &["run", "--config", cfg, "--date", "2011-11-29"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_no_secrets("run log", &stderr(&o));
    let o = server.recjob(
        tmp.path(),
        &[
            "backfill",
            "--config",
            cfg,
            "--from",
            "2011-11-29",
            "--to",
            "2011-11-30",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let summary = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        summary.contains("skipped (published)") && summary.contains("published"),
        "{summary}"
    );
    for dt in ["2011-11-29", "2011-11-30"] {
        let manifest = store
            .get(&ObjectPath::from(format!(
                "out/_manifests/dt={dt}/manifest.json"
            )))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_no_secrets("manifest", &String::from_utf8_lossy(&manifest));
        let recs = store
            .head(&ObjectPath::from(format!(
                "out/recommendations/dt={dt}/part-0.parquet"
            )))
            .await
            .unwrap();
        assert!(recs.size > 10_000);
    }

    // The server stops mid-run (cold cache: the run embeds the catalog for seconds).
    let cold = config(tmp.path(), "cold");
    let cold = cold.to_str().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_recjob"))
        .args(["run", "--config", cold, "--date", "2011-12-01"])
        .current_dir(tmp.path())
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", server.port),
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ALLOW_HTTP", "true")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    server.stop();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "retries are bounded"
    );
    assert!(
        err.contains("s3://recjob/cold"),
        "the message names the object: {err}"
    );
    assert_no_secrets("failure log", &err);

    // Restarted: nothing was published; the rerun publishes.
    let server = Server::start(&tmp.path().join("weed"), server.port);
    let manifest = ObjectPath::from("cold/_manifests/dt=2011-12-01/manifest.json");
    assert!(
        matches!(
            store.head(&manifest).await,
            Err(object_store::Error::NotFound { .. })
        ),
        "nothing published by the failed run"
    );
    let o = server.recjob(
        tmp.path(),
        &["run", "--config", cold, "--date", "2011-12-01"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(server.store().head(&manifest).await.is_ok());
}
