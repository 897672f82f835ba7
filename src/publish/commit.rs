//! The commit protocol (ARCHITECTURE.md "Publishing"): how a run's files become the published
//! partition of its date, safely against crashes and against other processes writing the same
//! date (which the date's [`Lease`] keeps out).
//!
//! A run stages every table under `_staging/dt=D/<run_id>/`, reads each file back, then
//! [`Publisher::publish`], holding the lease:
//!
//! 1. checks the lease, and that D is unpublished unless forced;
//! 2. moves each staged file into place as `<table>/dt=D/part-<run_id>.parquet`: named by run,
//!    so a run never overwrites another run's bytes;
//! 3. checks the lease again, keeps the previous manifest (if any) under
//!    `_manifests/dt=D/superseded/`, and writes the manifest `_manifests/dt=D/manifest.json`
//!    listing exactly this run's files (a conditional create when D was unpublished): from this
//!    instant readers that follow the manifest read the new run;
//! 4. deletes every other data file in the partitions it wrote (the previous run's, and those of
//!    crashed runs) and the date's leftover staging.
//!
//! A crash before step 3 leaves the previous state published (or D unpublished) with extra
//! files that no manifest lists; the next run of D removes them in its step 4. A crash after
//! step 3 leaves the new run published with old files not yet removed.
//!
//! `RECJOB_HALT_AT=<step>` (tests only) aborts the process at a named step, so tests can prove
//! that each step survives a crash: `leased`, `staged`, `moving`, `moved`, `manifest`,
//! `cleaning`, `cleaned`.

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{NaiveDate, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::halt::halt_point;
use super::lease::Lease;
use super::manifest::{MANIFESTS, Manifest, PublishedFile, manifest_path, read_manifest};
use super::schemas::PUBLISHED_TABLES;
use crate::domain::dt;
use crate::error::{Context, Error, Result};
use crate::io::{Location, ParquetStreamWriter, is_data_file, parquet_rows};

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
    /// Whether the file is a partition of a date (`<table>/dt=D/`), not an append-only table.
    partitioned: bool,
}

/// One staged file being written ([`Publisher::partition_writer`]).
pub struct TableWriter {
    writer: ParquetStreamWriter,
    file: StagedFile,
}

impl TableWriter {
    /// Append a batch as one row group: the writer never buffers more than one batch.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.file.rows += batch.num_rows() as u64;
        self.writer.write(batch).await?;
        self.writer.flush().await
    }
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

    /// Stage a date-partitioned table (`<table>/dt=D/part-<run_id>.parquet`). `batches` are
    /// made and written one at a time, so a table larger than memory streams through.
    pub async fn stage_partition(
        &mut self,
        table: &str,
        schema: SchemaRef,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
    ) -> Result<()> {
        let writer = self.partition_writer(table, schema)?;
        self.write_all(writer, batches).await
    }

    /// A writer of a date-partitioned table's staged file, for batches made as the run goes
    /// (handed back to [`Publisher::close`] once all are written).
    pub fn partition_writer(&self, table: &str, schema: SchemaRef) -> Result<TableWriter> {
        let relative = format!("{table}/dt={}/part-{}.parquet", dt(self.date), self.run_id);
        self.writer(table, &relative, true, schema)
    }

    /// Stage a file of an unpartitioned, append-only table (`<table>/<name>`).
    pub async fn stage_append(
        &mut self,
        table: &str,
        name: &str,
        schema: SchemaRef,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
    ) -> Result<()> {
        let writer = self.writer(table, &format!("{table}/{name}"), false, schema)?;
        self.write_all(writer, batches).await
    }

    /// Write `batches` one at a time to `writer`, then close it.
    async fn write_all(
        &mut self,
        mut writer: TableWriter,
        batches: impl IntoIterator<Item = Result<RecordBatch>>,
    ) -> Result<()> {
        for batch in batches {
            writer.write(&batch?).await?;
        }
        self.close(writer).await
    }

    fn staging(&self) -> Location {
        self.root
            .child(&format!("{STAGING}/dt={}/{}", dt(self.date), self.run_id))
    }

    fn writer(
        &self,
        table: &str,
        relative: &str,
        partitioned: bool,
        schema: SchemaRef,
    ) -> Result<TableWriter> {
        let staged = self.staging().path(relative);
        Ok(TableWriter {
            writer: ParquetStreamWriter::try_new(&self.root.store, &staged, schema)?,
            file: StagedFile {
                table: table.to_string(),
                url: self.root.object_url(&self.root.path(relative)),
                staged,
                target: self.root.path(relative),
                rows: 0,
                partitioned,
            },
        })
    }

    /// Finish a staged file: it is published with the run.
    pub async fn close(&mut self, writer: TableWriter) -> Result<()> {
        let TableWriter { writer, file } = writer;
        writer.close().await?;
        self.staged.push(file);
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
                run_id: self.run_id.clone(),
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
        halt_point("staged");
        Ok(())
    }

    /// Publish the staged files under `manifest` (the module doc gives the protocol). `force`
    /// replaces a published date; without it a published date is [`Error::AlreadyPublished`].
    /// The caller holds the date's `lease`.
    pub async fn publish(self, manifest: &Manifest, force: bool, lease: &Lease) -> Result<()> {
        let root = &self.root;
        lease.verify().await?;
        let (old, broken) = match read_manifest(root, self.date).await {
            Ok(old) => (old, false),
            // A manifest that does not parse publishes nothing readable: `--force` keeps its
            // bytes beside the superseded ones and replaces it.
            Err(Error::Input(why)) if force => {
                tracing::warn!(dt = %dt(self.date), error = %why, "replacing a manifest that is not valid");
                self.keep_broken().await?;
                (None, true)
            }
            Err(e) => return Err(e),
        };
        if old.is_some() && !force {
            self.discard().await;
            return Err(Error::AlreadyPublished(format!(
                "dt={} was published meanwhile by another run",
                dt(self.date)
            )));
        }
        for (i, f) in self.staged.iter().enumerate() {
            root.store
                .rename(&f.staged, &f.target)
                .await
                .context(format!("publishing {}", f.url))?;
            if i == 0 {
                halt_point("moving");
            }
        }
        halt_point("moved");
        lease.verify().await?;
        if let Some(old) = &old {
            self.keep_superseded(old).await?;
        }
        self.write_manifest(manifest, old.is_none() && !broken)
            .await?;
        halt_point("manifest");
        self.clean_up(manifest).await;
        halt_point("cleaned");
        Ok(())
    }

    /// Keep a replaced manifest as `_manifests/dt=D/superseded/<run_id>-<time>.json`.
    async fn keep_superseded(&self, old: &Manifest) -> Result<()> {
        let keep = self.root.path(&format!(
            "{MANIFESTS}/dt={}/superseded/{}-{}.json",
            dt(self.date),
            old.run_id,
            Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
        ));
        self.root
            .store
            .put(&keep, PutPayload::from(old.to_json()))
            .await
            .context(format!("writing {}", self.root.object_url(&keep)))?;
        Ok(())
    }

    /// Keep a manifest that does not parse as `_manifests/dt=D/superseded/invalid-<time>.json`.
    async fn keep_broken(&self) -> Result<()> {
        let from = manifest_path(&self.root, self.date);
        let keep = self.root.path(&format!(
            "{MANIFESTS}/dt={}/superseded/invalid-{}.json",
            dt(self.date),
            Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
        ));
        self.root
            .store
            .copy(&from, &keep)
            .await
            .context(format!("writing {}", self.root.object_url(&keep)))?;
        Ok(())
    }

    /// Write the manifest: a conditional create when the date was unpublished (another
    /// publisher that got there first wins), else a replace (the lease keeps others out).
    async fn write_manifest(&self, manifest: &Manifest, create: bool) -> Result<()> {
        let path = manifest_path(&self.root, self.date);
        let mode = if create {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let put = self
            .root
            .store
            .put_opts(&path, PutPayload::from(manifest.to_json()), opts)
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                for f in &self.staged {
                    let _ = self.root.store.delete(&f.target).await;
                }
                Err(Error::AlreadyPublished(format!(
                    "dt={} was published meanwhile by another run",
                    dt(self.date)
                )))
            }
            Err(e) => Err(Error::infra(
                format!("publishing {}", self.root.object_url(&path)),
                e,
            )),
        }
    }

    /// Delete the data files that `manifest` does not list from the date's partitions of every
    /// published table (a table this run did not write, such as `item_neighbors` after the
    /// neighbour term was turned off, loses the previous run's files too), and the date's
    /// leftover staging. The date is published already: a failure here is logged, and the next
    /// run of the date finishes the job.
    async fn clean_up(&self, manifest: &Manifest) {
        let keep: BTreeSet<&str> = manifest.tables.iter().map(|f| f.url.as_str()).collect();
        let written = self
            .staged
            .iter()
            .filter(|f| f.partitioned)
            .filter_map(|f| {
                f.target
                    .as_ref()
                    .rsplit_once('/')
                    .map(|(d, _)| Path::from(d))
            });
        let every = PUBLISHED_TABLES
            .iter()
            .map(|t| self.root.path(&format!("{t}/dt={}", dt(self.date))));
        let dirs: BTreeSet<Path> = written.chain(every).collect();
        let mut first = true;
        for dir in dirs {
            let loc = Location {
                prefix: dir,
                ..self.root.clone()
            };
            let files = match loc.list_files().await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(partition = %loc.url(), error = %format!("{e:#}"), "could not list a published partition to remove superseded files");
                    continue;
                }
            };
            for meta in files.iter().filter(|m| is_data_file(m)) {
                let url = self.root.object_url(&meta.location);
                if keep.contains(url.as_str()) {
                    continue;
                }
                match self.root.store.delete(&meta.location).await {
                    Ok(()) => tracing::debug!(file = %url, "removed a superseded file"),
                    Err(e) => {
                        tracing::warn!(file = %url, error = %e, "could not remove a superseded file")
                    }
                }
                if std::mem::take(&mut first) {
                    halt_point("cleaning");
                }
            }
        }
        let staging = self.root.child(&format!("{STAGING}/dt={}", dt(self.date)));
        match staging.list_files().await {
            Ok(files) => {
                for meta in files {
                    let _ = self.root.store.delete(&meta.location).await;
                }
            }
            Err(e) => {
                tracing::warn!(staging = %staging.url(), error = %format!("{e:#}"), "could not list leftover staging")
            }
        }
        self.remove_empty_dirs(true);
    }

    /// Remove this run's staging files (best effort: leftovers are never read, and the next
    /// run of the date removes them).
    pub async fn discard(&self) {
        for f in &self.staged {
            let _ = self.root.store.delete(&f.staged).await;
        }
        self.remove_empty_dirs(false);
    }

    /// Object stores have no directories; a local filesystem keeps the empty ones. `all`: the
    /// date's whole staging (the lease holder after publishing), else this run's.
    fn remove_empty_dirs(&self, all: bool) {
        if self.root.base.scheme() == "file" {
            let staging = std::path::Path::new("/").join(self.root.path(STAGING).as_ref());
            let date_dir = staging.join(format!("dt={}", dt(self.date)));
            if all {
                let _ = std::fs::remove_dir_all(&date_dir);
            } else {
                let _ = std::fs::remove_dir_all(date_dir.join(&self.run_id));
                let _ = std::fs::remove_dir(&date_dir);
            }
            let _ = std::fs::remove_dir(&staging); // only when no other date is staging
        }
    }
}
