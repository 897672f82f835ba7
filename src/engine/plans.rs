//! The heavy stages as DataFusion plans over recjob's functions ([`super::udf`]): inputs staged
//! as Parquet where every executor reaches them, one plan per stage (`sql/engine/*.sql`), results
//! put back in input order, staged files removed whatever happened.

use std::sync::Arc;

use arrow::array::{
    AsArray, Float32Builder, ListBuilder, RecordBatch, StringBuilder, UInt32Array, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef, UInt32Type};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use super::udf::hits_from_arrow;
use crate::config::{DeviceChoice, ModelDtype};
use crate::error::{Context, Error, Result};
use crate::io::{self, Location, embedding_type, to_arrow};
use crate::kernels::{Adjustments, Encoder, Hit, TopkParams};

const EMBED_SQL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/engine/embed.sql"));
const TOPK_SQL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/engine/topk.sql"));

/// The kernels as plans in a session: a local one (tests) or a Ballista client.
pub struct SqlEngine {
    /// The session the plans run in.
    pub ctx: SessionContext,
    /// `engine.url`, for logs and errors.
    pub url: String,
    /// Where stage inputs are staged (`<output.root>/_engine`): a store every executor reaches.
    pub staging: Location,
    /// Files (hence tasks) per stage.
    pub partitions: usize,
    /// The model directory and device the executors load (the same path on every machine).
    pub model_dir: String,
    /// The device the executors use.
    pub device: DeviceChoice,
    /// The encoder's precision on an executor's GPU (`model.dtype`).
    pub dtype: ModelDtype,
}

/// A stage's staged inputs; [`Staged::remove`] deletes them.
pub(super) struct Staged {
    pub(super) dir: Location,
}

impl Staged {
    pub(super) async fn remove(self) {
        let files = match self.dir.list_files().await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(dir = %self.dir.url(), error = %format!("{e:#}"), "could not list staged engine files to delete them; remove the folder by hand");
                return;
            }
        };
        for f in files {
            if let Err(e) = self.dir.store.delete(&f.location).await {
                tracing::warn!(file = %f.location, error = %e, "could not delete a staged engine file");
            }
        }
    }
}

impl SqlEngine {
    pub(super) fn stage(&self, name: &str) -> Staged {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Staged {
            dir: self.staging.child(&format!("{}-{name}", &id[..12])),
        }
    }

    /// Write `batches` round-robin into `partitions` files under `dir/table/`; returns the
    /// table's URL.
    pub(super) async fn write_table(
        &self,
        dir: &Location,
        table: &str,
        schema: SchemaRef,
        rows: usize,
        batch: impl Fn(&[usize]) -> Result<RecordBatch>,
    ) -> Result<String> {
        let location = dir.child(table);
        let parts = self.partitions.clamp(1, rows.max(1));
        for p in 0..parts {
            let rows: Vec<usize> = (p..rows).step_by(parts).collect();
            let path = location.path(&format!("part-{p:04}.parquet"));
            io::write_parquet(&location.store, &path, schema.clone(), &[batch(&rows)?]).await?;
        }
        Ok(location.url())
    }

    /// The batches of `sql` over the table `table` registered from `url`, with `params`.
    pub(super) async fn run(
        &self,
        sql: &str,
        table: &str,
        url: &str,
        params: Vec<(&str, ScalarValue)>,
    ) -> Result<Vec<RecordBatch>> {
        let what = format!("engine {}: {table}", self.url);
        let stream = self.stream(sql, table, url, params).await?;
        stream.try_collect().await.context(what)
    }

    /// [`SqlEngine::run`] as a stream: its batches as they arrive (the caller holds what it
    /// keeps of them). The table is deregistered once the plan is made.
    pub(super) async fn stream(
        &self,
        sql: &str,
        table: &str,
        url: &str,
        params: Vec<(&str, ScalarValue)>,
    ) -> Result<SendableRecordBatchStream> {
        let what = format!("engine {}: {table}", self.url);
        self.ctx
            .register_parquet(table, url, ParquetReadOptions::default())
            .await
            .context(format!("{what}: cannot register {url}"))?;
        let result = async {
            self.ctx
                .sql(sql)
                .await?
                .with_param_values(
                    params
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Vec<_>>(),
                )?
                .execute_stream()
                .await
        }
        .await
        .context(what);
        let _ = self.ctx.deregister_table(table);
        result
    }

    pub(super) async fn embed(
        &self,
        encoder: &dyn Encoder,
        texts: &[&str],
        batches: &[Vec<usize>],
    ) -> Result<Vec<f32>> {
        let dim = encoder.dim();
        let staged = self.stage("embed");
        let result = async {
            let schema = Arc::new(Schema::new(vec![
                Field::new("batch", DataType::UInt32, false),
                Field::new(
                    "texts",
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    false,
                ),
            ]));
            let url = self
                .write_table(&staged.dir, "batches", schema.clone(), batches.len(), |bs| {
                    let mut list = ListBuilder::new(StringBuilder::new());
                    for &b in bs {
                        for &r in &batches[b] {
                            list.values().append_value(texts[r]);
                        }
                        list.append(true);
                    }
                    let ids = UInt32Array::from_iter_values(bs.iter().map(|&b| b as u32));
                    RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(list.finish())])
                        .context("staging texts")
                })
                .await?;
            let out = self
                .run(
                    EMBED_SQL,
                    "engine_batches",
                    &url,
                    vec![
                        ("model_dir", ScalarValue::from(self.model_dir.as_str())),
                        ("device", ScalarValue::from(self.device.as_str())),
                        ("model_id", ScalarValue::from(encoder.model_id())),
                        ("dtype", ScalarValue::from(self.dtype.as_str())),
                    ],
                )
                .await?;
            let mut flat = vec![0f32; texts.len() * dim];
            let mut seen = vec![false; batches.len()];
            for batch in &out {
                let ids = batch.column(0).as_primitive::<UInt32Type>();
                let vectors = batch.column(1).as_list::<i32>();
                for i in 0..batch.num_rows() {
                    let b = ids.value(i) as usize;
                    let v = vectors.value(i);
                    let v = v.as_primitive::<Float32Type>().values();
                    let rows = &batches[b];
                    if seen[b] || v.len() != rows.len() * dim {
                        return Err(Error::infra(
                            format!("engine {}", self.url),
                            format!("embedding batch {b}: {} values for {} texts of dimension {dim}, or returned twice", v.len(), rows.len()),
                        ));
                    }
                    seen[b] = true;
                    for (j, &r) in rows.iter().enumerate() {
                        flat[r * dim..(r + 1) * dim].copy_from_slice(&v[j * dim..(j + 1) * dim]);
                    }
                }
            }
            check_all(&self.url, "embedding batches", &seen)?;
            Ok(flat)
        }
        .await;
        staged.remove().await;
        result
    }

    /// [`crate::engine::Engine::with_items`] on the cluster: the item vectors staged as one
    /// Parquet file for every top-K call of `f`.
    pub(super) async fn with_items<R>(
        &self,
        flat: &[f32],
        dim: usize,
        f: impl AsyncFnOnce(&Items<'_>) -> Result<R>,
    ) -> Result<R> {
        let staged = self.stage("items");
        let result = async {
            let path = staged.dir.path("items.parquet");
            let schema = Arc::new(Schema::new(vec![Field::new(
                "embedding",
                embedding_type(dim),
                false,
            )]));
            let batch = RecordBatch::try_new(schema.clone(), vec![to_arrow(flat, dim)])
                .context("staging item vectors")?;
            io::write_parquet(&staged.dir.store, &path, schema, &[batch]).await?;
            let url = staged.dir.object_url(&path);
            f(&Items::staged(flat, dim, url)).await
        }
        .await;
        staged.remove().await;
        result
    }

    /// Every user's top-K against the item vectors staged at `items_url` ([`Self::with_items`]).
    pub(super) async fn top_k(
        &self,
        users: &[f32],
        items_url: &str,
        dim: usize,
        params: &TopkParams,
        adjustments: &Adjustments,
    ) -> Result<Vec<Vec<Hit>>> {
        let n_users = users.len() / dim;
        let staged = self.stage("topk");
        let result = async {
            let schema = Arc::new(Schema::new(vec![
                Field::new("row", DataType::UInt32, false),
                Field::new("query", embedding_type(dim), false),
                Field::new(
                    "adjusted",
                    DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
                    false,
                ),
                Field::new(
                    "adjustment",
                    DataType::List(Arc::new(Field::new("item", DataType::Float32, true))),
                    false,
                ),
            ]));
            // Contiguous ranges of users per file keep each task's queries together.
            let url = self
                .write_table(&staged.dir, "queries", schema.clone(), n_users, |rs| {
                    let mut flat = Vec::with_capacity(rs.len() * dim);
                    let mut adjusted = ListBuilder::new(UInt32Builder::new());
                    let mut adjustment = ListBuilder::new(Float32Builder::new());
                    for &u in rs {
                        flat.extend_from_slice(&users[u * dim..(u + 1) * dim]);
                        let (items, values) = adjustments.of(u);
                        adjusted.values().append_slice(items);
                        adjusted.append(true);
                        adjustment.values().append_slice(values);
                        adjustment.append(true);
                    }
                    let rows = UInt32Array::from_iter_values(rs.iter().map(|&u| u as u32));
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(rows),
                            to_arrow(&flat, dim),
                            Arc::new(adjusted.finish()),
                            Arc::new(adjustment.finish()),
                        ],
                    )
                    .context("staging user vectors")
                })
                .await?;
            let out = self
                .run(
                    TOPK_SQL,
                    "engine_queries",
                    &url,
                    vec![
                        ("items", ScalarValue::from(items_url)),
                        ("k", ScalarValue::from(params.k as i64)),
                        ("block_users", ScalarValue::from(params.block_users as i64)),
                        ("block_items", ScalarValue::from(params.block_items as i64)),
                    ],
                )
                .await?;
            let mut lists: Vec<Option<Vec<Hit>>> = vec![None; n_users];
            for batch in &out {
                let rows = batch.column(0).as_primitive::<UInt32Type>();
                let hits = batch.column(1).as_list::<i32>();
                for i in 0..batch.num_rows() {
                    let u = rows.value(i) as usize;
                    lists[u] = Some(hits_from_arrow(&hits.value(i)));
                }
            }
            let seen: Vec<bool> = lists.iter().map(Option::is_some).collect();
            check_all(&self.url, "top-K users", &seen)?;
            Ok(lists.into_iter().map(Option::unwrap_or_default).collect())
        }
        .await;
        staged.remove().await;
        result
    }
}

/// Every staged row came back (a lost or duplicated task must never go unnoticed).
pub(super) fn check_all(url: &str, what: &str, seen: &[bool]) -> Result<()> {
    let missing = seen.iter().filter(|s| !**s).count();
    if missing > 0 {
        return Err(Error::infra(
            format!("engine {url}"),
            format!("{missing} of {} {what} did not come back", seen.len()),
        ));
    }
    Ok(())
}

/// Candidate item vectors for the top-K calls of one stage
/// ([`crate::engine::Engine::with_items`]).
pub struct Items<'a> {
    /// `n x dim`, sorted by id.
    pub flat: &'a [f32],
    /// Values per vector.
    pub dim: usize,
    /// Where a cluster's executors read them; `None` in this process.
    url: Option<String>,
}

impl<'a> Items<'a> {
    /// Items ranked in this process.
    pub(super) fn local(flat: &'a [f32], dim: usize) -> Items<'a> {
        Items {
            flat,
            dim,
            url: None,
        }
    }

    /// Items staged at `url` for a cluster's executors.
    fn staged(flat: &'a [f32], dim: usize, url: String) -> Items<'a> {
        Items {
            flat,
            dim,
            url: Some(url),
        }
    }

    /// Where they are staged, if they are.
    pub(super) fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_rows_are_errors() {
        assert!(check_all("df://x:1", "rows", &[true, true]).is_ok());
        let e = check_all("df://x:1", "top-K users", &[true, false]).unwrap_err();
        assert!(e.to_string().contains("1 of 2 top-K users"), "{e}");
        assert_eq!(e.exit_code(), crate::error::ExitCode::Infrastructure);
    }
}
