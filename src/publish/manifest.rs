//! The manifest: one JSON document per published date, `_manifests/dt=D/manifest.json`. Its
//! existence is what makes D published (ARCHITECTURE.md "Publishing"); its content says what the
//! run read, wrote and measured.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::domain::{InputFile, InvalidRows, dt};
use crate::error::{Context, Error, Result};
use crate::io::Location;

/// The folder of manifests under the output root.
pub const MANIFESTS: &str = "_manifests";

/// What a published run was, read and wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The run's id (also the `run_id` column of every row it wrote).
    pub run_id: String,
    /// The published date.
    pub dt: String,
    /// When the run published (RFC 3339, UTC).
    pub published_at: String,
    /// Hash of the effective configuration (where stages ran left out).
    pub config_hash: String,
    /// recjob's version and commit.
    pub code_version: String,
    /// The encoder.
    pub model: ModelInfo,
    /// `local` or the cluster's URL.
    pub engine: String,
    /// The vectors top-K scored.
    pub vectors: VectorsInfo,
    /// The training window.
    pub window: WindowInfo,
    /// The catalog partition used.
    pub catalog_dt: String,
    /// Every input file.
    pub inputs: Vec<InputFile>,
    /// Every file published.
    pub tables: Vec<PublishedFile>,
    /// Rows per table.
    pub row_counts: BTreeMap<String, u64>,
    /// Rows dropped from the window, by reason.
    pub invalid_rows: InvalidRows,
    /// Texts embedded and reused.
    pub embedding: EmbeddingInfo,
    /// Users by kind of list.
    pub users: UsersInfo,
    /// Candidate (available) items.
    pub candidates: usize,
    /// Seconds per stage.
    pub timings_s: BTreeMap<String, f64>,
    /// Peak resident memory of the process up to the end of each stage, MB: the stage where it
    /// rises set the peak (absent where the platform does not report it, and in manifests
    /// written before it was recorded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peak_rss_mb: BTreeMap<String, f64>,
    /// The effective configuration.
    pub config: serde_json::Value,
    /// When `recjob evaluate` last republished the metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_evaluated_at: Option<String>,
    /// The code version that republished them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_code_version: Option<String>,
    /// Peak resident memory of the process that ran it, in bytes (Linux; absent in manifests of
    /// earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// The date's HTML report, `reports/dt=D/report.html` under the output root: written right
    /// after the commit and rebuilt by `recjob evaluate` and `recjob report` (absent in manifests
    /// of earlier versions, whose report is at the same place).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Fields of other versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The encoder of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Identifies the weights (part of the embedding cache key).
    pub id: String,
    /// `model.dir`.
    pub dir: String,
    /// `mean` or `cls`.
    pub pooling: String,
    /// Tokens kept per text.
    pub max_seq_length: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// `cpu`, `cuda:0`.
    pub device: String,
    /// The SGEMM backend.
    pub blas: String,
}

/// The vectors top-K scored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VectorsInfo {
    /// Their dimension.
    pub dim: usize,
    /// `hybrid.factors`.
    pub behavior_factors: usize,
    /// `hybrid.text_weight`.
    pub text_weight: f64,
}

/// The training window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowInfo {
    /// First day.
    pub first_dt: String,
    /// Last day (the run date).
    pub last_dt: String,
}

/// One published file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishedFile {
    /// Its table.
    pub table: String,
    /// Where it is.
    pub url: String,
    /// Its rows.
    pub rows: u64,
    /// The `run_id` of its rows: the run, or the `recjob evaluate` that rewrote the metrics
    /// (empty in manifests of earlier versions: the manifest's `run_id`).
    #[serde(default)]
    pub run_id: String,
}

/// Texts embedded and reused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    /// Catalog items.
    pub items: usize,
    /// Distinct texts embedded by this run.
    pub embedded: usize,
    /// Items whose vector came from the cache.
    pub reused: usize,
    /// Encoder throughput.
    pub texts_per_s: f64,
    /// Tokens encoded.
    pub tokens: usize,
}

/// Users by kind of list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersInfo {
    /// Users with a valid event in the window.
    pub active: usize,
    /// Users with a personal list.
    pub personal: usize,
    /// Users with the popularity list.
    pub popular: usize,
    /// Users with fewer than K recommendations.
    pub short: usize,
    /// Why.
    pub short_reason: Option<String>,
}

/// Path of the manifest that publishes `date`.
pub fn manifest_path(root: &Location, date: NaiveDate) -> Path {
    root.path(&format!("{MANIFESTS}/dt={}/manifest.json", dt(date)))
}

/// Is `date` published?
pub async fn is_published(root: &Location, date: NaiveDate) -> Result<bool> {
    root.exists(&manifest_path(root, date)).await
}

/// The manifest of a published date.
pub async fn read_manifest(root: &Location, date: NaiveDate) -> Result<Option<Manifest>> {
    let path = manifest_path(root, date);
    match root.store.get(&path).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .context(format!("reading {}", root.object_url(&path)))?;
            let v = serde_json::from_slice(&bytes).map_err(|e| {
                Error::Input(format!(
                    "manifest {} is not a valid manifest: {e}",
                    root.object_url(&path)
                ))
            })?;
            Ok(Some(v))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(Error::infra(
            format!("reading {}", root.object_url(&path)),
            e,
        )),
    }
}

impl Manifest {
    /// The published file of `table` for this date (the append-only cache aside).
    pub fn file(&self, table: &str) -> Option<&PublishedFile> {
        self.tables.iter().find(|f| f.table == table)
    }

    /// The document as written.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serialises: this is a bug")
    }
}
