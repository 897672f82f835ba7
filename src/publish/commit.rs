//! Write-audit-publish. A run writes every table to a staging prefix
//! (`_staging/<run_id>/...`), the caller audits, then [`Publisher::publish`]:
//!
//! 1. with `--force` on a published date, first unpublishes it: the old manifest is kept as
//!    `_manifests/dt=D/superseded/<run_id>.json` and removed, so D is "not published" until
//!    step 4 (readers going through manifests never see two runs mixed);
//! 2. copies each staged file to its final place (`<table>/dt=D/part-0.parquet`; one object
//!    per table partition, replaced atomically by the store);
//! 3. removes data files of earlier runs left in those partitions;
//! 4. creates `_manifests/dt=D/manifest.json` with `PutMode::Create`: the date is published.
//!
//! A crash before step 4 leaves D unpublished (and earlier dates untouched); a rerun starts
//! over and, being deterministic, writes the same rows. Two concurrent runs of one date cannot
//! both publish: the second manifest create fails.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::manifest::{MANIFESTS, Manifest, PublishedFile, manifest_path, read_manifest};
use crate::domain::dt;
use crate::error::{Context, Error, Result};
use crate::io::{Location, is_data_file, parquet_rows, write_parquet};

/// Where runs write before they publish.
pub const STAGING: &str = "_staging";

/// A file written to staging, and where it goes.
#[derive(Debug, Clone)]
struct StagedFile {
    table: String,
    staged: Path,
    target: Path,
    /// Final location, as a URL.
    url: String,
    rows: u64,
}

/// The files of one run, staged, then published with its manifest.
pub struct Publisher {
    root: Location,
    date: NaiveDate,
    run_id: String,
    staged: Vec<StagedFile>,
}

impl Publisher {
    /// A run `run_id` of `date` under `root`.
    pub fn new(root: Location, date: NaiveDate, run_id: &str) -> Publisher {
        Publisher {
            root,
            date,
            run_id: run_id.to_string(),
            staged: Vec::new(),
        }
    }

    /// Stage a date-partitioned table (`<table>/dt=D/part-0.parquet`).
    pub async fn stage_partition(
        &mut self,
        table: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let relative = format!("{table}/dt={}/part-0.parquet", dt(self.date));
        self.stage(table, &relative, schema, batches).await
    }

    /// Stage a file of an unpartitioned, append-only table (`<table>/<name>`).
    pub async fn stage_append(
        &mut self,
        table: &str,
        name: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        self.stage(table, &format!("{table}/{name}"), schema, batches)
            .await
    }

    async fn stage(
        &mut self,
        table: &str,
        relative: &str,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let staged = self
            .root
            .path(&format!("{STAGING}/{}/{relative}", self.run_id));
        let rows = write_parquet(&self.root.store, &staged, schema, batches).await?;
        let target = self.root.path(relative);
        self.staged.push(StagedFile {
            table: table.to_string(),
            url: self.root.object_url(&target),
            staged,
            target,
            rows,
        });
        Ok(())
    }

    /// The date being published.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// The staged files, as the manifest lists them.
    pub fn staged(&self) -> Vec<PublishedFile> {
        self.staged
            .iter()
            .map(|f| PublishedFile {
                table: f.table.clone(),
                url: f.url.clone(),
                rows: f.rows,
            })
            .collect()
    }

    /// Check that every staged file reads back with the row count written.
    pub async fn verify_staged(&self) -> Result<()> {
        for f in &self.staged {
            let rows = parquet_rows(&self.root.store, &f.staged).await?;
            if rows != f.rows {
                return Err(Error::Audit(format!(
                    "staged {} has {rows} rows, {} were written",
                    self.root.object_url(&f.staged),
                    f.rows
                )));
            }
        }
        Ok(())
    }

    /// Publish the staged files and then the manifest (see the module doc for the protocol).
    pub async fn publish(self, manifest: &Manifest, force: bool) -> Result<()> {
        let root = &self.root;
        let manifest_path = manifest_path(root, self.date);
        if let Some(old) = read_manifest(root, self.date).await? {
            if !force {
                return Err(Error::AlreadyPublished(format!(
                    "dt={} was published meanwhile by another run",
                    dt(self.date)
                )));
            }
            let old_run = old.run_id.clone();
            let keep = root.path(&format!(
                "{MANIFESTS}/dt={}/superseded/{old_run}.json",
                dt(self.date)
            ));
            root.store
                .put(&keep, PutPayload::from(old.to_json()))
                .await
                .context(format!("writing {}", root.object_url(&keep)))?;
            root.store
                .delete(&manifest_path)
                .await
                .context(format!("unpublishing {}", root.object_url(&manifest_path)))?;
            tracing::info!(date = %dt(self.date), superseded = %old_run, "unpublished the previous run of this date");
        }
        for f in &self.staged {
            root.store
                .copy(&f.staged, &f.target)
                .await
                .context(format!("publishing {}", f.url))?;
        }
        // Remove leftovers of earlier runs from the partitions we own (not from append-only tables).
        let targets: Vec<&Path> = self.staged.iter().map(|f| &f.target).collect();
        let partition_dirs: std::collections::BTreeSet<String> = self
            .staged
            .iter()
            .filter(|f| f.target.as_ref().contains("/dt="))
            .filter_map(|f| {
                f.target
                    .as_ref()
                    .rsplit_once('/')
                    .map(|(d, _)| d.to_string())
            })
            .collect();
        for dir in partition_dirs {
            let loc = Location {
                prefix: Path::from(dir.as_str()),
                ..root.clone()
            };
            for meta in loc.list_files().await? {
                if is_data_file(&meta) && !targets.contains(&&meta.location) {
                    root.store.delete(&meta.location).await.context(format!(
                        "removing stale {}",
                        root.object_url(&meta.location)
                    ))?;
                }
            }
        }
        let bytes = manifest.to_json();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match root
            .store
            .put_opts(&manifest_path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::AlreadyPublished(format!(
                    "dt={} was published meanwhile by another run",
                    dt(self.date)
                )));
            }
            Err(e) => {
                return Err(Error::infra(
                    format!("publishing {}", root.object_url(&manifest_path)),
                    e,
                ));
            }
        }
        self.discard().await;
        Ok(())
    }

    /// Replace already published files of a published date (`recjob evaluate`): each staged
    /// file is copied over its target (one atomic replace per object), then the manifest is
    /// overwritten in one put. Readers see the old or the new file, never a mix within a file.
    pub async fn republish(self, manifest: &Manifest) -> Result<()> {
        let root = &self.root;
        for f in &self.staged {
            root.store
                .copy(&f.staged, &f.target)
                .await
                .context(format!("publishing {}", f.url))?;
        }
        let path = manifest_path(root, self.date);
        root.store
            .put(&path, PutPayload::from(manifest.to_json()))
            .await
            .context(format!("updating {}", root.object_url(&path)))?;
        self.discard().await;
        Ok(())
    }

    /// Remove this run's staging files (best effort: leftovers are never read).
    pub async fn discard(&self) {
        for f in &self.staged {
            let _ = self.root.store.delete(&f.staged).await;
        }
        // Object stores have no directories; a local filesystem keeps the empty ones.
        if self.root.base.scheme() == "file" {
            let staging = std::path::Path::new("/").join(self.root.path(STAGING).as_ref());
            let _ = std::fs::remove_dir_all(staging.join(&self.run_id));
            let _ = std::fs::remove_dir(&staging); // only when no other run is staging
        }
    }
}
