//! One run date, end to end: read .. behavior ([`Runner::compute`], shared with backtests),
//! then top-K streamed through the audit into the staged `recommendations` and
//! `user_embeddings`, the per-item tables, evaluate, publish with the manifest
//! (ARCHITECTURE.md "Publishing").

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use chrono::{NaiveDate, TimeDelta, Utc};
use datafusion::prelude::SessionContext;

use super::runner::{RunOptions, Runner, Timings};
use crate::config::Config;
use crate::domain::{
    Catalog, Inputs, InvalidRows, Lists, MetricRow, SimilarItem, UserRows, Vectors, Window,
    WindowData, dt, normalize_rows, ranges,
};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::io::Location;
use crate::kernels::{Encoder, Neighbors, blas_backend};
use crate::publish::{
    EmbeddingInfo, Lease, Manifest, ModelInfo, Publisher, UsersInfo, VectorsInfo, WindowInfo,
    is_published, manifest_path, published_previous,
};
use crate::stages::audit::{AuditReport, ListAudit, audit_items};
use crate::stages::embed::{ItemEmbeddings, cache, embed_items};
use crate::stages::evaluate::{EvalInput, OwnLists, evaluate, truth, truth_users};
use crate::stages::hybrid::{HybridUsers, UserFactors, hybrid, item_neighbors};
use crate::stages::prepare::{check_invalid_rows, prepare_window, register_window_events};
use crate::stages::read::{behavior_ready, load_catalog, register_inputs};
use crate::stages::recommend::{Recommender, candidates, similar_items};

/// What a run did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The run date.
    pub date: String,
    /// `published`, `replaced`, or the dry run's plan.
    pub action: String,
    /// The run's id.
    pub run_id: Option<String>,
    /// The manifest's URL.
    pub manifest: Option<String>,
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Wall time.
    pub seconds: f64,
}

/// What [`Runner::compute`] makes of one date.
pub(crate) struct Computed {
    pub(crate) ctx: SessionContext,
    pub(crate) inputs: Inputs,
    pub(crate) invalid: InvalidRows,
    pub(crate) catalog: Catalog,
    /// The window (its interactions are what the user vectors are made from).
    pub(crate) data: WindowData,
    /// Text embeddings of every catalog item (catalog order, unit length).
    pub(crate) items: ItemEmbeddings,
    /// The vectors top-K scored: candidates (item_vectors) and what makes the users'
    /// (user_embeddings, [`Computed::user_rows`]).
    pub(crate) candidates: Vectors,
    pub(crate) users: UserFactors,
    /// The window's item neighbours (`item_neighbors`), when the neighbour term is on.
    pub(crate) neighbors: Option<Neighbors>,
    /// `similar_items`, by text embeddings.
    pub(crate) similar: Vec<SimilarItem>,
    pub(crate) t: Timings,
}

/// Where the lists made for D-1 come from when D is evaluated.
pub(crate) enum Previous<'a> {
    /// Published under this output root (a run, which reads only the users it evaluates).
    Published(&'a Location),
    /// Computed in this process (a backtest); `None` when D-1 was not computed.
    Computed(Option<&'a Lists>),
}

/// Users (or items) per batch when a run's per-user and per-item tables are written: bounds
/// the memory of a batch and of the writer's row group.
const USERS_PER_BATCH: usize = 16_384;
/// Rows per batch of `similar_items` (items x K rows).
const ROWS_PER_BATCH: usize = 1 << 20;

impl Computed {
    /// The users' vectors (`user_embeddings`), made a chunk at a time.
    pub(crate) fn user_rows(&self) -> HybridUsers<'_> {
        self.users.rows(&self.data, &self.items.vectors)
    }

    /// The metrics of D from this computed run: D-1's lists against D's behavior, D's own lists
    /// (`own`, summarised as they were made) for coverage.
    pub(crate) async fn evaluate(
        &self,
        config: &Config,
        date: NaiveDate,
        previous: Previous<'_>,
        own: &OwnLists,
    ) -> Result<Vec<MetricRow>> {
        let previous_window =
            prepare_previous_window(&self.ctx, config, &self.catalog, &self.inputs, date).await?;
        let truth = truth(&self.ctx, config, date).await?;
        let keep = truth_users(&truth);
        let previous = match previous {
            Previous::Published(root) => {
                published_previous(root, date - TimeDelta::days(1), &keep).await?
            }
            Previous::Computed(lists) => lists.map(|l| l.previous(&keep)),
        };
        let input = EvalInput {
            date,
            window: &self.data,
            previous_window: &previous_window,
            own,
            catalog: &self.catalog,
            truth: &truth,
            previous: previous.as_ref(),
        };
        evaluate(&self.ctx, config, input).await
    }
}

impl Runner {
    /// Stages read .. behavior of `date`, in memory: what a run's lists (made a chunk of users
    /// at a time after this) and per-item tables come from.
    /// `cached`: text embeddings by content hash (the `item_embeddings` cache). `similar`:
    /// whether to compute `similar_items` (a backtest does not need them).
    pub(crate) async fn compute(
        &self,
        date: NaiveDate,
        root: &Location,
        cached: &HashMap<String, Vec<f32>>,
        similar: bool,
    ) -> Result<Computed> {
        let config = &self.config;
        let mut t = Timings::start();
        let window = Window::ending(date, config.window.lookback_days);
        let previous_window =
            Window::ending(date - TimeDelta::days(1), config.window.lookback_days);

        // Reach the engine first: a cluster that is down fails the run before any reading.
        let engine = self.engine().await?;

        // read
        let ctx = crate::engine::context();
        root.register(&ctx);
        let inputs = register_inputs(&ctx, config, previous_window.first, date).await?;
        let catalog = load_catalog(&ctx, config, &inputs).await?;
        t.lap("read");

        // prepare
        register_window_events(&ctx, config, previous_window.first, date).await?;
        let invalid = check_invalid_rows(&ctx, config, window).await?;
        let data = prepare_window(&ctx, config, &catalog, &inputs, window).await?;
        t.lap("prepare");

        // embed
        let encoder = self.encoder()?;
        let (ids, texts) = (&catalog.ids, &catalog.texts);
        let budget = config.model.max_batch_tokens;
        let mut items = embed_items(engine, encoder.as_ref(), cached, ids, texts, budget).await?;
        let dim = items.vectors.dim;
        if let Err(r) = normalize_rows(&mut items.vectors.flat, dim) {
            return Err(Error::Audit(format!(
                "item {}: zero embedding",
                catalog.ids[r]
            )));
        }
        t.lap("embed");

        let text_candidates = candidates(&catalog, &items.vectors);

        // similar items: text embeddings only
        let similar = if similar {
            similar_items(engine, config, &items.vectors, &text_candidates).await?
        } else {
            Vec::new()
        };
        t.lap("similar");

        // behavior: ALS factors of the window, blended with the text vectors; item neighbours
        let (candidates, users) = hybrid(
            engine,
            &config.hybrid,
            &data,
            &items.vectors,
            text_candidates,
        )
        .await?;
        let neighbors = item_neighbors(&config.hybrid, &data)?;
        t.lap("behavior");
        Ok(Computed {
            ctx,
            inputs,
            invalid,
            catalog,
            data,
            items,
            candidates,
            users,
            neighbors,
            similar,
            t,
        })
    }

    /// Run and publish `date` (or, with `--dry-run`, say what would happen).
    pub async fn run(&self, date: NaiveDate, opts: RunOptions) -> Result<RunReport> {
        let started = Instant::now();
        let config = &self.config;
        let root = Location::parse(&config.output.root)?;
        if !opts.force && is_published(&root, date).await? {
            return Err(Error::AlreadyPublished(format!(
                "dt={} is already published ({}); use --force to replace it",
                dt(date),
                root.object_url(&manifest_path(&root, date))
            )));
        }
        if !behavior_ready(config, date).await? {
            return Err(Error::NotReady(format!(
                "table behavior: partition dt={} does not exist (or has no data files) under {}",
                dt(date),
                Location::parse(&config.input.behavior)?.url()
            )));
        }
        if opts.dry_run {
            let (action, inputs, _) = self.plan(date, opts.force).await?;
            return Ok(RunReport {
                date: dt(date),
                action: format!("{action}\t{inputs}"),
                run_id: None,
                manifest: None,
                rows: BTreeMap::new(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let run_id = new_run_id();
        tracing::info!(date = %dt(date), run_id, "run started");
        let lease =
            Lease::acquire(&root, date, &run_id, "run", config.publish.lease_seconds).await?;
        let result = self.run_leased(date, opts, &root, &run_id, &lease).await;
        lease.release().await;
        let (manifest_url, rows) = result?;
        self.report(date).await;
        tracing::info!(date = %dt(date), run_id, manifest = %manifest_url, seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "published");
        Ok(RunReport {
            date: dt(date),
            action: if opts.force {
                "replaced".into()
            } else {
                "published".into()
            },
            run_id: Some(run_id),
            manifest: Some(manifest_url),
            rows,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// The run of `date` under its lease: compute, evaluate, audit, stage, publish. Returns the
    /// manifest's URL and the rows per table.
    async fn run_leased(
        &self,
        date: NaiveDate,
        opts: RunOptions,
        root: &Location,
        run_id: &str,
        lease: &Lease,
    ) -> Result<(String, BTreeMap<String, u64>)> {
        let config = &self.config;
        if !opts.force && is_published(root, date).await? {
            return Err(Error::AlreadyPublished(format!(
                "dt={} was published by another run meanwhile",
                dt(date)
            )));
        }
        let encoder = self.encoder()?;
        let cached = cache::load(root, encoder.model_id(), encoder.dim()).await?;
        let mut c = self.compute(date, root, &cached, true).await?;
        let engine = self.engine().await?;

        // The lists stream from top-K through the audit into their staged file; then the
        // per-user and per-item tables are staged and their vectors given back before
        // evaluation prepares D-1's window: the peak stays that of one window.
        let mut publisher = Publisher::new(root.clone(), date, run_id);
        let staged = async {
            let (listed, own) = stage_lists(&mut publisher, engine, config, &c, run_id).await?;
            c.t.lap("topk");
            audit_items(&c.candidates, &c.similar)?;
            stage_tables(&mut publisher, &c, encoder.model_id(), run_id).await?;
            c.t.lap("write");
            c.data.release_interactions();
            c.users = UserFactors::default();
            c.similar = Vec::new();
            let previous = Previous::Published(root);
            let metric_rows = c.evaluate(config, date, previous, &own).await?;
            stage_metrics(&mut publisher, &metric_rows, run_id).await?;
            c.t.lap("evaluate");
            publisher.verify_staged().await?;
            Ok(listed)
        };
        let listed = match staged.await {
            Ok(listed) => listed,
            Err(e) => {
                publisher.discard().await;
                return Err(e);
            }
        };

        let manifest = self
            .manifest(date, run_id, &c, &listed, encoder.as_ref(), &publisher)
            .await?;
        let rows = manifest.row_counts.clone();
        publisher.publish(&manifest, opts.force, lease).await?;
        Ok((root.object_url(&manifest_path(root, date)), rows))
    }

    /// The manifest of a computed, staged run.
    async fn manifest(
        &self,
        date: NaiveDate,
        run_id: &str,
        c: &Computed,
        listed: &Listed,
        encoder: &dyn Encoder,
        publisher: &Publisher,
    ) -> Result<Manifest> {
        let config = &self.config;
        let window = Window::ending(date, config.window.lookback_days);
        let stats = &c.items.stats;
        let tables = publisher.staged();
        Ok(Manifest {
            run_id: run_id.to_string(),
            dt: dt(date),
            published_at: Utc::now().to_rfc3339(),
            config_hash: config.hash(),
            code_version: crate::VERSION.to_string(),
            model: ModelInfo {
                id: encoder.model_id().to_string(),
                dir: config.model.dir.clone(),
                pooling: encoder.pooling().to_string(),
                max_seq_length: encoder.max_seq_length(),
                dim: c.items.vectors.dim,
                device: encoder.device(),
                blas: blas_backend().to_string(),
            },
            engine: self.engine().await?.name().to_string(),
            vectors: VectorsInfo {
                dim: c.candidates.dim,
                behavior_factors: config.hybrid.factors,
                text_weight: config.hybrid.text_weight,
            },
            window: WindowInfo {
                first_dt: dt(window.first),
                last_dt: dt(window.last),
            },
            catalog_dt: c.inputs.catalog_dt.clone(),
            inputs: c.inputs.files.clone(),
            row_counts: tables.iter().map(|f| (f.table.clone(), f.rows)).collect(),
            tables,
            invalid_rows: c.invalid.clone(),
            embedding: EmbeddingInfo {
                items: c.catalog.ids.len(),
                embedded: c.items.new_rows.len(),
                reused: c.items.reused,
                texts_per_s: if stats.seconds > 0.0 {
                    stats.texts as f64 / stats.seconds
                } else {
                    0.0
                },
                tokens: stats.tokens,
            },
            users: UsersInfo {
                active: listed.personal + listed.popular,
                personal: listed.personal,
                popular: listed.popular,
                short: listed.report.short_users,
                short_reason: listed.report.short_reason.clone(),
            },
            candidates: c.candidates.len(),
            timings_s: c
                .t
                .stages
                .iter()
                .map(|(k, s, _)| (k.to_string(), *s))
                .collect(),
            peak_rss_mb: c
                .t
                .stages
                .iter()
                .filter_map(|(k, _, m)| Some((k.to_string(), ((*m)? as f64 / 1e6).round())))
                .collect(),
            config: serde_json::to_value(config).expect("config serialises: this is a bug"),
            metrics_evaluated_at: None,
            metrics_code_version: None,
            peak_memory_bytes: crate::memory::peak_rss(),
            report: Some(super::report::report_url(
                &Location::parse(&config.output.root)?,
                date,
            )),
            extra: Default::default(),
        })
    }
}

/// What staging the lists found: users per source, and the audit's report.
struct Listed {
    personal: usize,
    popular: usize,
    report: AuditReport,
}

/// Make every active user's list a chunk of users at a time, audit the chunk and stage it with
/// the chunk's `user_embeddings`; returns what was listed and D's own lists summarised for the
/// evaluation. No list or user vector outlives its chunk.
async fn stage_lists(
    publisher: &mut Publisher,
    engine: &Engine,
    config: &Config,
    c: &Computed,
    run_id: &str,
) -> Result<(Listed, OwnLists)> {
    use crate::publish as p;
    let users = c.user_rows();
    let mut audit = ListAudit::new(config.topk.k, &c.data, &c.candidates);
    let mut own = OwnLists::new(config, &c.data);
    let mut lists_out =
        publisher.partition_writer("recommendations", p::recommendations_schema())?;
    let schema = p::user_embeddings_schema(users.dim());
    let mut vectors_out = publisher.partition_writer("user_embeddings", schema)?;
    let (flat, dim) = (&c.candidates.flat, c.candidates.dim);
    let neighbors = c.neighbors.as_ref();
    let (personal, popular) = engine
        .with_items(flat, dim, async |items| {
            let mut recommender = Recommender::new(
                engine,
                config,
                &c.candidates,
                neighbors,
                items,
                &users,
                &c.data,
            );
            while let Some((lists, vectors)) = recommender.next().await? {
                audit.check(&lists, &vectors)?;
                own.add_lists(&c.data, &lists);
                for users in chunks(lists.len()) {
                    lists_out
                        .write(&p::recommendations(&lists, users, run_id)?)
                        .await?;
                }
                for rows in chunks(vectors.vectors.len()) {
                    vectors_out
                        .write(&p::user_embeddings(&vectors, rows, run_id)?)
                        .await?;
                }
            }
            Ok(recommender.counts())
        })
        .await?;
    publisher.close(lists_out).await?;
    publisher.close(vectors_out).await?;
    let report = audit.finish()?;
    if report.short_users > 0 {
        tracing::warn!(short_users = report.short_users, reason = ?report.short_reason, "users with fewer than K recommendations");
    }
    let listed = Listed {
        personal,
        popular,
        report,
    };
    Ok((listed, own))
}

/// A new run's id: UTC time and a random suffix (sortable, unique).
pub(crate) fn new_run_id() -> String {
    format!(
        "{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `0..n` in ranges of [`USERS_PER_BATCH`] (users or items).
fn chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    ranges(n, USERS_PER_BATCH)
}

/// D-1's training window, prepared as far as evaluation of D needs it: its popularity and
/// exclusions for the baseline. (Re-registers `events` in `ctx`: call it after D's own
/// stages.)
pub(crate) async fn prepare_previous_window(
    ctx: &SessionContext,
    config: &Config,
    catalog: &Catalog,
    inputs: &Inputs,
    date: NaiveDate,
) -> Result<WindowData> {
    let window = Window::ending(date - TimeDelta::days(1), config.window.lookback_days);
    let mut data = prepare_window(ctx, config, catalog, inputs, window).await?;
    data.release_interactions();
    Ok(data)
}

/// Stage the per-item tables of a computed run and the new embedding cache entries.
async fn stage_tables(
    publisher: &mut Publisher,
    c: &Computed,
    model_id: &str,
    run_id: &str,
) -> Result<()> {
    use crate::publish as p;
    let items = &c.candidates;
    let batches = chunks(items.len()).map(|rows| p::item_vectors(items, rows, run_id));
    publisher
        .stage_partition("item_vectors", p::item_vectors_schema(items.dim), batches)
        .await?;
    let batches = c
        .similar
        .chunks(ROWS_PER_BATCH)
        .map(|rows| p::similar_items(rows, run_id));
    publisher
        .stage_partition("similar_items", p::similar_items_schema(), batches)
        .await?;
    if let Some(neighbors) = &c.neighbors {
        // The candidates' neighbours (the items top-K can recommend), a batch of items at a time.
        let rows = c.candidates.rows_of(&c.data.item_ids);
        let targets: Vec<u32> = (0..rows.len() as u32)
            .filter(|&r| rows[r as usize].is_some())
            .collect();
        let ids = &c.data.item_ids;
        let batches = targets
            .chunks(USERS_PER_BATCH)
            .map(|t| p::item_neighbors(neighbors, ids, t, run_id));
        publisher
            .stage_partition("item_neighbors", p::item_neighbors_schema(), batches)
            .await?;
    }
    let items = &c.items;
    if !items.new_rows.is_empty() {
        let new = items.vectors.select(&items.new_rows);
        let ids: Vec<&str> = new.ids.iter().map(String::as_str).collect();
        let hashes: Vec<&str> = items
            .new_rows
            .iter()
            .map(|&r| items.hashes[r].as_str())
            .collect();
        let batch = p::item_embeddings(&ids, &hashes, model_id, &new.flat, new.dim, run_id)?;
        publisher
            .stage_append(
                p::ITEM_EMBEDDINGS,
                &format!("part-{run_id}.parquet"),
                p::item_embeddings_schema(new.dim),
                [Ok(batch)],
            )
            .await?;
    }
    Ok(())
}

/// Stage the run's `metrics`.
async fn stage_metrics(
    publisher: &mut Publisher,
    metric_rows: &[MetricRow],
    run_id: &str,
) -> Result<()> {
    use crate::publish as p;
    let date = publisher.date();
    publisher
        .stage_partition(
            "metrics",
            p::metrics_schema(),
            [p::metrics(metric_rows, date, run_id)],
        )
        .await
}
