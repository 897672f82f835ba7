//! Where the heavy stages run: embedding texts, ALS and exact top-K.
//!
//! [`Engine::Local`] calls the kernels in this process ([`kernels::encode_batches`],
//! [`kernels::als`], [`kernels::top_k`]). [`Engine::Sql`] runs the same kernels as DataFusion
//! plans over recjob's own functions ([`udf`]: `recjob_embed`, `recjob_als`, `recjob_topk`; the
//! statements are `sql/engine/*.sql`) in a `SessionContext`; with `engine.url = "df://HOST:PORT"` that context
//! is a Ballista client ([`cluster`]), so the plans' tasks run on Ballista executors,
//! which Ballista schedules, retries and re-runs when an executor is lost.
//!
//! A plan reads its inputs from Parquet staged under `<output.root>/_engine/<id>-<stage>/`
//! (executors are other processes: they cannot see this process's memory) and the results come
//! back to the driver, which carries on with the run exactly as in one process. The staged
//! files are deleted when the stage ends, whether it succeeded or not.
//!
//! Same answer by construction: the driver plans the encoder batches exactly as the local path
//! does and each batch is one row of the embedding plan (a batch's vectors depend only on its
//! rows), every ALS row is solved against the same fixed side from the same observations
//! ([`als`]), and top-K re-scores its final candidates with a fixed summation order, so its
//! lists do not depend on how users are split into tasks.

mod als;
mod cluster;
mod plans;
mod session;
mod udf;

pub use cluster::{ExecutorOptions, HostPort, SchedulerOptions, executor, scheduler};
pub use plans::{Items, SqlEngine};
pub use session::context;

use std::ops::Range;

use crate::config::{Config, HybridConfig};
use crate::error::{Context, Result};
use crate::io::Location;
use crate::kernels::{self, Adjustments, EmbedStats, Encoder, Hit, Rows, TopkParams};

/// Where the heavy stages run.
pub enum Engine {
    /// The kernels in this process.
    Local,
    /// The kernels as DataFusion plans in `ctx` (a Ballista client for `df://` URLs).
    Sql(Box<SqlEngine>),
}

impl Engine {
    /// The engine `config.engine` names. A cluster is reached once here, so a run fails before
    /// reading any data when its scheduler is down.
    pub async fn connect(config: &Config) -> Result<Engine> {
        if config.engine.url == "local" {
            // `topk.device` names a device that is there: checked before any data is read.
            let device = kernels::select_device(config.topk.device, "topk.device")?;
            tracing::info!(device = ?device, "top-K and similar items on this device");
            return Ok(Engine::Local);
        }
        let ctx = cluster::client(&config.engine.url, config.engine.partitions).await?;
        let probe = async { ctx.sql("SELECT 1").await?.collect().await };
        probe.await.context(format!(
                "cannot run a query on the Ballista cluster at {} (is `recjob scheduler` running, with executors?)",
                config.engine.url
            ))?;
        tracing::info!(engine = %config.engine.url, "connected to the cluster");
        Ok(Engine::Sql(Box::new(SqlEngine {
            ctx,
            url: config.engine.url.clone(),
            staging: Location::parse(&config.output.root)?.child("_engine"),
            partitions: config.engine.partitions,
            // Executors resolve the driver's path, not their own working directory's.
            model_dir: std::path::absolute(&config.model.dir)
                .map_or(config.model.dir.clone(), |p| p.display().to_string()),
            device: config.model.device,
            dtype: config.model.dtype,
        })))
    }

    /// `local`, or the cluster's URL (manifests, logs).
    pub fn name(&self) -> &str {
        match self {
            Engine::Local => "local",
            Engine::Sql(e) => &e.url,
        }
    }

    /// Vectors of `texts` (`texts.len() x dim`, input order) in token-budget batches.
    pub async fn embed(
        &self,
        encoder: &dyn Encoder,
        texts: &[&str],
        max_batch_tokens: usize,
    ) -> Result<(Vec<f32>, EmbedStats)> {
        let Engine::Sql(engine) = self else {
            return kernels::embed_texts(encoder, texts, max_batch_tokens);
        };
        let started = std::time::Instant::now();
        let tokens = encoder.tokenize(texts)?;
        let batches = kernels::plan(&tokens, max_batch_tokens);
        let flat = engine.embed(encoder, texts, &batches).await?;
        let stats = EmbedStats {
            texts: texts.len(),
            tokens: tokens.iter().map(Vec::len).sum(),
            batches: batches.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        stats.log(&format!("{} ({})", engine.url, encoder.device()));
        Ok((flat, stats))
    }

    /// Implicit ALS ([`kernels::als`]) of `n_users` users, `rows(range)` making the rows of a
    /// range of them, on `n_items` items: returns the item factors and hands the users' to
    /// `users(first_user, factors)` (whole rows of consecutive users, in any order of calls).
    /// On a cluster each half-sweep is a plan and neither every user's rows nor their factors
    /// are ever held here ([`als`]); the factors are the same bits.
    pub async fn als(
        &self,
        n_users: usize,
        rows: &(dyn Fn(Range<usize>) -> Result<Rows> + Sync),
        n_items: usize,
        params: &HybridConfig,
        users: &mut (dyn FnMut(usize, &[f32]) -> Result<()> + Send),
    ) -> Result<Vec<f32>> {
        match self {
            Engine::Local => {
                let factors = kernels::als(rows(0..n_users)?, n_items, params);
                users(0, &factors.users)?;
                Ok(factors.items)
            }
            Engine::Sql(engine) => engine.als(n_users, rows, n_items, params, users).await,
        }
    }

    /// Every user's top-K (`users` is `n x dim`, `items` sorted by id), in user order.
    pub async fn top_k(
        &self,
        users: &[f32],
        items: &[f32],
        dim: usize,
        params: &TopkParams,
        adjustments: &Adjustments,
    ) -> Result<Vec<Vec<Hit>>> {
        self.with_items(items, dim, async |items| {
            let mut out = Vec::new();
            let mut collect = |_: usize, lists: Vec<Vec<Hit>>| {
                out.extend(lists);
                Ok(())
            };
            self.top_k_each(users, items, params, adjustments, &mut collect)
                .await?;
            Ok(out)
        })
        .await
    }

    /// `f`'s result, `f` given the item vectors `flat` (`n x dim`, sorted by id) ready for
    /// [`Engine::top_k_each`]: on a cluster they are staged once for every call `f` makes (each
    /// executor reads them once, not once per chunk of users) and deleted when `f` returns,
    /// whatever it returned.
    pub async fn with_items<R>(
        &self,
        flat: &[f32],
        dim: usize,
        f: impl AsyncFnOnce(&Items<'_>) -> Result<R>,
    ) -> Result<R> {
        match self {
            Engine::Local => f(&Items::local(flat, dim)).await,
            Engine::Sql(engine) => engine.with_items(flat, dim, f).await,
        }
    }

    /// Every user's top-K like [`Engine::top_k`] against `items` ([`Engine::with_items`]),
    /// handed to `sink(first_user, lists)` in consecutive chunks of users as they are ready (in
    /// this process one chunk of blocks at a time, so the caller need never hold every list
    /// twice).
    pub async fn top_k_each(
        &self,
        users: &[f32],
        items: &Items<'_>,
        params: &TopkParams,
        adjustments: &Adjustments,
        sink: &mut (dyn FnMut(usize, Vec<Vec<Hit>>) -> Result<()> + Send),
    ) -> Result<()> {
        match (self, items.url()) {
            (Engine::Sql(engine), Some(url)) => {
                let lists = engine
                    .top_k(users, url, items.dim, params, adjustments)
                    .await?;
                sink(0, lists)
            }
            _ => kernels::top_k_on(users, items.flat, items.dim, params, adjustments, sink),
        }
    }
}
