//! The stage sequence of one run date; `backfill` loops over it. The only module that knows
//! the order of stages:
//!
//! read -> prepare -> embed -> users (text) -> similar items -> behavior (ALS factors blended
//! with the text: the hybrid vectors) -> recommend (top-K, fallback) -> evaluate -> write ->
//! audit -> publish. `recjob backtest` runs the same stages up to evaluate, in memory.
//!
//! A run is idempotent per date: a published date is skipped (exit 99) unless forced, and a
//! forced rerun replaces the partition as described in [`crate::commit`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chrono::{NaiveDate, TimeDelta, Utc};
use serde_json::json;

use crate::audit::{AuditInput, audit};
use crate::commit::{Publisher, is_published, manifest_path, read_manifest};
use crate::config::Config;
use crate::embed::candle::CandleEncoder;
use crate::embed::{Encoder, cache, embed_items};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::evaluate::{EvalInput, evaluate, published_lists};
use crate::fallback::popular_lists;
use crate::prepare::{Window, check_invalid_rows, prepare_window, register_window_events};
use crate::read::{behavior_ready, dt, load_catalog, partitions, register_inputs};
use crate::recommend::{Candidates, recommend, similar_items};
use crate::storage::Location;
use crate::write;
use crate::{session, users, vectors};

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub force: bool,
    pub dry_run: bool,
}

/// What a run did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub date: String,
    pub action: String,
    pub run_id: Option<String>,
    pub manifest: Option<String>,
    pub rows: BTreeMap<String, u64>,
    pub seconds: f64,
}

/// Runs dates with one configuration; the encoder is loaded once, on first use.
pub struct Runner {
    pub config: Config,
    encoder: OnceLock<Arc<dyn Encoder>>,
    engine: tokio::sync::OnceCell<Engine>,
}

pub(crate) struct Timings(Vec<(&'static str, f64)>, Instant);

/// What [`Runner::compute`] makes of one date.
pub(crate) struct Computed {
    pub(crate) ctx: datafusion::prelude::SessionContext,
    pub(crate) inputs: crate::read::Inputs,
    pub(crate) invalid: crate::prepare::InvalidRows,
    pub(crate) catalog: crate::read::Catalog,
    pub(crate) data: crate::prepare::WindowData,
    /// Text embeddings of every catalog item (catalog order, unit length).
    pub(crate) items: crate::embed::ItemEmbeddings,
    /// The vectors top-K scored: candidates (item_vectors) and users (user_embeddings).
    pub(crate) candidates: Candidates,
    pub(crate) user_vectors: crate::users::UserVectors,
    pub(crate) recs: crate::recommend::Recommendations,
    /// `similar_items`, by text embeddings.
    pub(crate) similar: Vec<crate::write::RecRow>,
    pub(crate) t: Timings,
}

impl Timings {
    fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.0.push((stage, (now - self.1).as_secs_f64()));
        self.1 = now;
    }
}

impl Runner {
    pub fn new(config: Config) -> Runner {
        Runner {
            config,
            encoder: OnceLock::new(),
            engine: tokio::sync::OnceCell::new(),
        }
    }

    /// Where the heavy stages run (`engine.url`); connected once, on first use.
    pub(crate) async fn engine(&self) -> Result<&Engine> {
        self.engine
            .get_or_try_init(|| Engine::connect(&self.config))
            .await
    }

    pub(crate) fn encoder(&self) -> Result<Arc<dyn Encoder>> {
        if let Some(e) = self.encoder.get() {
            return Ok(e.clone());
        }
        let e: Arc<dyn Encoder> = Arc::new(CandleEncoder::load(
            Path::new(&self.config.model.dir),
            self.config.model.device,
        )?);
        tracing::info!(
            model = e.model_id(),
            device = e.device(),
            blas = crate::blas::backend(),
            pooling = e.pooling(),
            max_seq_length = e.max_seq_length(),
            "loaded encoder"
        );
        Ok(self.encoder.get_or_init(|| e).clone())
    }

    /// What a run of `date` would do now and which partitions it would read, from listings
    /// only (no data is read).
    pub async fn plan(&self, date: NaiveDate, force: bool) -> Result<(String, String)> {
        let root = Location::parse(&self.config.output.root)?;
        let action = if is_published(&root, date).await? {
            if force {
                "replace (--force)"
            } else {
                "skip (published)"
            }
        } else if !behavior_ready(&self.config, date).await? {
            "not ready (no behavior partition)"
        } else {
            "run"
        };
        // The run reads D-1's window too, for the baseline of its evaluation.
        let first =
            Window::ending(date - TimeDelta::days(1), self.config.window.lookback_days).first;
        let behavior = partitions(&Location::parse(&self.config.input.behavior)?).await?;
        let n_behavior = behavior
            .iter()
            .filter(|d| **d >= first && **d <= date)
            .count();
        let catalog = partitions(&Location::parse(&self.config.input.catalog)?).await?;
        let catalog = catalog
            .iter()
            .rev()
            .find(|d| **d <= date)
            .map_or("none".to_string(), |d| dt(*d));
        let inputs = format!(
            "behavior dt={}..{}: {n_behavior} partitions; catalog dt={catalog}",
            dt(first),
            dt(date)
        );
        Ok((action.to_string(), inputs))
    }

    /// Write the date's HTML report; a failure is logged, never fatal (the data is published).
    async fn report(&self, date: NaiveDate) {
        match crate::report::write_report(&self.config, date).await {
            Ok(url) => tracing::info!(report = %url, "report written"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not write the report"),
        }
    }

    /// `recjob evaluate`: recompute the metrics of a published date from its published lists,
    /// D-1's and the raw behavior, and republish only `metrics/dt=D/` (the manifest records
    /// when). Idempotent: the same inputs give the same rows.
    pub async fn evaluate_published(&self, date: NaiveDate) -> Result<usize> {
        let config = &self.config;
        let root = Location::parse(&config.output.root)?;
        let Some(mut manifest) = read_manifest(&root, date).await? else {
            return Err(Error::NotReady(format!(
                "dt={} is not published under {}: nothing to evaluate",
                dt(date),
                root.url()
            )));
        };
        let run_id = manifest["run_id"].as_str().unwrap_or("unknown").to_string();
        let window = Window::ending(date, config.window.lookback_days);
        let previous_window =
            Window::ending(date - TimeDelta::days(1), config.window.lookback_days);
        let ctx = session::context();
        root.register(&ctx);
        let inputs = register_inputs(&ctx, config, previous_window.first, date).await?;
        let catalog = load_catalog(&ctx, config, &inputs).await?;
        register_window_events(&ctx, config, previous_window.first, date).await?;
        let data = prepare_window(&ctx, config, window).await?;
        let own = published_lists(&root, date).await?.unwrap_or_default();
        let previous = published_lists(&root, date - TimeDelta::days(1)).await?;
        let active_users = data.active_users();
        let baseline = popular_lists(&data, &active_users, config.topk.k);
        let rows = evaluate(
            &ctx,
            config,
            EvalInput {
                date,
                window: &data,
                own: &own,
                own_baseline: &baseline,
                catalog: &catalog,
                n_active: active_users.len(),
                previous: previous.as_deref(),
            },
        )
        .await?;
        let mut publisher = Publisher::new(root.clone(), date, &format!("{run_id}-evaluate"));
        publisher
            .stage_partition(
                "metrics",
                write::metrics_schema(),
                &[write::metrics(&rows, date, &run_id)?],
            )
            .await?;
        publisher.verify_staged().await?;
        manifest["metrics_evaluated_at"] = json!(Utc::now().to_rfc3339());
        manifest["metrics_code_version"] = json!(crate::VERSION);
        manifest["row_counts"]["metrics"] = json!(rows.len());
        publisher.republish(&manifest).await?;
        self.report(date).await;
        tracing::info!(date = %dt(date), rows = rows.len(), "metrics republished");
        Ok(rows.len())
    }

    /// Stages read .. recommend of `date`, in memory: the lists and vectors a run publishes.
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
        let mut t = Timings(Vec::new(), Instant::now());
        let window = Window::ending(date, config.window.lookback_days);
        let previous_window =
            Window::ending(date - TimeDelta::days(1), config.window.lookback_days);

        // Reach the engine first: a cluster that is down fails the run before any reading.
        let engine = self.engine().await?;

        // read
        let ctx = session::context();
        root.register(&ctx);
        let inputs = register_inputs(&ctx, config, previous_window.first, date).await?;
        let catalog = load_catalog(&ctx, config, &inputs).await?;
        t.lap("read");

        // prepare
        register_window_events(&ctx, config, previous_window.first, date).await?;
        let invalid = check_invalid_rows(&ctx, config, window).await?;
        let data = prepare_window(&ctx, config, window).await?;
        t.lap("prepare");

        // embed
        let encoder = self.encoder()?;
        let dim = encoder.dim();
        let mut items = embed_items(
            engine,
            encoder.as_ref(),
            cached,
            &catalog.texts,
            config.model.max_batch_tokens,
        )
        .await?;
        if let Err(r) = vectors::normalize_rows(&mut items.flat, dim) {
            return Err(Error::Audit(format!(
                "item {}: zero embedding",
                catalog.ids[r]
            )));
        }
        t.lap("embed");

        // users: text vectors
        let item_index: HashMap<&str, usize> = catalog
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let text_users = users::build(&data.interactions, &item_index, &items.flat, dim);
        let text_candidates = Candidates::from_catalog(&catalog, &items.flat, dim);
        t.lap("users");

        // similar items: text embeddings only
        let similar = if similar {
            similar_items(engine, config, &catalog.ids, &items.flat, &text_candidates).await?
        } else {
            Vec::new()
        };
        t.lap("similar");

        // behavior: ALS factors of the window, blended with the text vectors
        let (candidates, user_vectors) = crate::behavior::hybrid(
            &config.hybrid,
            &data.interactions,
            &data.popularity,
            text_candidates,
            text_users,
        );
        t.lap("behavior");

        // top-K
        let recs = recommend(engine, config, &candidates, &user_vectors, &data).await?;
        t.lap("topk");
        Ok(Computed {
            ctx,
            inputs,
            invalid,
            catalog,
            data,
            items,
            candidates,
            user_vectors,
            recs,
            similar,
            t,
        })
    }

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
        let window = Window::ending(date, config.window.lookback_days);
        if opts.dry_run {
            let (action, inputs) = self.plan(date, opts.force).await?;
            return Ok(RunReport {
                date: dt(date),
                action: format!("{action}\t{inputs}"),
                run_id: None,
                manifest: None,
                rows: BTreeMap::new(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let run_id = format!(
            "{}-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        tracing::info!(date = %dt(date), run_id, "run started");
        let cached = cache::load(&root, self.encoder()?.model_id(), self.encoder()?.dim()).await?;
        let Computed {
            ctx,
            inputs,
            invalid,
            catalog,
            data,
            items,
            candidates,
            user_vectors,
            recs,
            similar,
            mut t,
        } = self.compute(date, &root, &cached, true).await?;
        let encoder = self.encoder()?;
        let dim = user_vectors.dim;
        let text_dim = items.dim;

        // evaluate: D-1's published lists against D's behavior.
        let previous = published_lists(&root, date - TimeDelta::days(1)).await?;
        let metric_rows = evaluate(
            &ctx,
            config,
            EvalInput {
                date,
                window: &data,
                own: &recs.lists,
                own_baseline: &recs.baseline,
                catalog: &catalog,
                n_active: recs.active_users.len(),
                previous: previous.as_deref(),
            },
        )
        .await?;
        t.lap("evaluate");

        // audit
        let candidate_set: HashSet<&str> = candidates.ids.iter().map(String::as_str).collect();
        let user_vec_map: HashMap<&str, &[f32]> = user_vectors
            .user_ids
            .iter()
            .enumerate()
            .map(|(u, id)| (id.as_str(), &user_vectors.flat[u * dim..(u + 1) * dim]))
            .collect();
        let item_vec_map: HashMap<&str, &[f32]> = candidates
            .ids
            .iter()
            .enumerate()
            .map(|(j, id)| (id.as_str(), candidates.vector(j)))
            .collect();
        let report = audit(&AuditInput {
            k: config.topk.k,
            recommendations: &recs.rows,
            active_users: &recs.active_users,
            eligible: &recs.eligible,
            exclusions: &data.exclusions,
            candidates: &candidate_set,
            user_vectors: &user_vec_map,
            item_vectors: &item_vec_map,
            similar_items: &similar,
        })?;
        if report.short_users > 0 {
            tracing::warn!(short_users = report.short_users, reason = ?report.short_reason, "users with fewer than K recommendations");
        }

        // write (staging)
        let mut publisher = Publisher::new(root.clone(), date, &run_id);
        publisher
            .stage_partition(
                "recommendations",
                write::recommendations_schema(),
                &[write::recommendations(&recs.rows, &run_id)?],
            )
            .await?;
        publisher
            .stage_partition(
                "user_embeddings",
                write::user_embeddings_schema(dim),
                &[write::user_embeddings(
                    &user_vectors.user_ids,
                    &user_vectors.flat,
                    dim,
                    &user_vectors.n_events,
                    &run_id,
                )?],
            )
            .await?;
        publisher
            .stage_partition(
                "item_vectors",
                write::item_vectors_schema(dim),
                &[write::item_vectors(
                    &candidates.ids,
                    &candidates.flat,
                    dim,
                    &run_id,
                )?],
            )
            .await?;
        publisher
            .stage_partition(
                "similar_items",
                write::similar_items_schema(),
                &[write::similar_items(&similar, &run_id)?],
            )
            .await?;
        publisher
            .stage_partition(
                "metrics",
                write::metrics_schema(),
                &[write::metrics(&metric_rows, date, &run_id)?],
            )
            .await?;
        if !items.new_rows.is_empty() {
            let ids: Vec<&str> = items
                .new_rows
                .iter()
                .map(|&r| catalog.ids[r].as_str())
                .collect();
            let hashes: Vec<&str> = items
                .new_rows
                .iter()
                .map(|&r| items.hashes[r].as_str())
                .collect();
            let mut flat = Vec::with_capacity(ids.len() * text_dim);
            for &r in &items.new_rows {
                flat.extend_from_slice(&items.flat[r * text_dim..(r + 1) * text_dim]);
            }
            let batch = cache::batch(&ids, &hashes, encoder.model_id(), &flat, text_dim, &run_id)?;
            publisher
                .stage_append(
                    cache::TABLE,
                    &format!("part-{run_id}.parquet"),
                    cache::schema(text_dim),
                    &[batch],
                )
                .await?;
        }
        publisher.verify_staged().await?;
        t.lap("write");

        let rows: BTreeMap<String, u64> = publisher
            .staged()
            .iter()
            .map(|f| (f.table.clone(), f.rows))
            .collect();
        let manifest = json!({
            "run_id": run_id,
            "dt": dt(date),
            "published_at": Utc::now().to_rfc3339(),
            "config_hash": config.hash(),
            "code_version": crate::VERSION,
            "model": {
                "id": encoder.model_id(),
                "dir": config.model.dir,
                "pooling": encoder.pooling(),
                "max_seq_length": encoder.max_seq_length(),
                "dim": text_dim,
                "device": encoder.device(),
                "blas": crate::blas::backend(),
            },
            "engine": self.engine().await?.name(),
            "vectors": {
                "dim": dim,
                "behavior_factors": config.hybrid.factors,
                "text_weight": config.hybrid.text_weight,
            },
            "window": { "first_dt": dt(window.first), "last_dt": dt(window.last) },
            "catalog_dt": inputs.catalog_dt,
            "inputs": inputs.files,
            "tables": publisher.staged(),
            "row_counts": rows,
            "invalid_rows": invalid,
            "embedding": {
                "items": catalog.ids.len(),
                "embedded": items.new_rows.len(),
                "reused": items.reused,
                "texts_per_s": if items.stats.seconds > 0.0 { items.stats.texts as f64 / items.stats.seconds } else { 0.0 },
                "tokens": items.stats.tokens,
            },
            "users": {
                "active": recs.active_users.len(),
                "personal": recs.n_personal,
                "popular": recs.n_popular,
                "short": report.short_users,
                "short_reason": report.short_reason,
            },
            "candidates": candidates.len(),
            "timings_s": t.0.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "config": config,
        });
        let manifest_url = root.object_url(&manifest_path(&root, date));
        publisher.publish(&manifest, opts.force).await?;
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
}

/// One date of a backfill and how it ended.
#[derive(Debug, Clone)]
pub struct BackfillRow {
    pub date: NaiveDate,
    pub action: String,
    pub code: crate::error::ExitCode,
    pub detail: String,
    pub seconds: f64,
}

/// Run `from..=to` in order. Published dates are skipped unless `force`; dates not ready are
/// reported and skipped; another failure stops the backfill unless `keep_going`.
pub async fn backfill(
    runner: &Runner,
    from: NaiveDate,
    to: NaiveDate,
    opts: RunOptions,
    keep_going: bool,
) -> Vec<BackfillRow> {
    use crate::error::ExitCode;
    let days = (to - from).num_days().max(0) as u64 + 1;
    let bar = crate::embed::progress_bar(days as usize * 1000).inspect(|b| {
        b.set_length(days);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "backfill [{bar:40}] {pos}/{len} dates {msg} eta {eta}",
            )
            .expect("valid template"),
        );
    });
    let mut rows = Vec::new();
    let mut date = from;
    while date <= to {
        if let Some(b) = &bar {
            b.set_message(dt(date));
        }
        let started = Instant::now();
        let row = if opts.dry_run {
            match runner.plan(date, opts.force).await {
                Ok((action, inputs)) => BackfillRow {
                    date,
                    action,
                    code: ExitCode::Published,
                    detail: inputs,
                    seconds: 0.0,
                },
                Err(e) => BackfillRow {
                    date,
                    action: "error".into(),
                    code: e.exit_code(),
                    detail: format!("{e:#}"),
                    seconds: 0.0,
                },
            }
        } else {
            match runner.run(date, opts).await {
                Ok(report) => BackfillRow {
                    date,
                    action: report.action,
                    code: ExitCode::Published,
                    detail: report.run_id.unwrap_or_default(),
                    seconds: started.elapsed().as_secs_f64(),
                },
                Err(e) => {
                    let action = match e.exit_code() {
                        ExitCode::NothingToDo => "skipped (published)",
                        ExitCode::NotReady => "not ready",
                        _ => "failed",
                    };
                    if e.exit_code() != ExitCode::NothingToDo {
                        tracing::warn!(date = %dt(date), error = %format!("{e:#}"), "{action}");
                    }
                    BackfillRow {
                        date,
                        action: action.into(),
                        code: e.exit_code(),
                        detail: format!("{e}"),
                        seconds: started.elapsed().as_secs_f64(),
                    }
                }
            }
        };
        let stop = !keep_going
            && !matches!(
                row.code,
                ExitCode::Published | ExitCode::NothingToDo | ExitCode::NotReady
            );
        rows.push(row);
        if let Some(b) = &bar {
            b.inc(1);
        }
        if stop {
            break;
        }
        date += TimeDelta::days(1);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    rows
}

/// The exit code of a backfill (DESIGN.md "Exit codes").
pub fn backfill_exit_code(rows: &[BackfillRow]) -> crate::error::ExitCode {
    use crate::error::ExitCode;
    if let Some(r) = rows.iter().find(|r| {
        !matches!(
            r.code,
            ExitCode::Published | ExitCode::NothingToDo | ExitCode::NotReady
        )
    }) {
        return r.code;
    }
    if rows.iter().any(|r| r.code == ExitCode::NotReady) {
        ExitCode::NotReady
    } else {
        ExitCode::Published
    }
}
