//! `recjob evaluate`: recompute the metrics of a published date and republish only them.

use chrono::{NaiveDate, TimeDelta, Utc};

use super::run::prepare_previous_window;
use super::runner::Runner;
use crate::domain::{Window, dt};
use crate::error::{Error, Result};
use crate::io::Location;
use crate::kernels::popular_lists;
use crate::publish::{Publisher, metrics, metrics_schema, published_lists, read_manifest};
use crate::stages::evaluate::{EvalInput, evaluate};
use crate::stages::prepare::{prepare_window, register_window_events};
use crate::stages::read::{load_catalog, register_inputs};

impl Runner {
    /// Recompute the metrics of a published date from its published lists, D-1's and the raw
    /// behavior, and republish only `metrics/dt=D/` (the manifest records when). Idempotent:
    /// the same inputs give the same rows.
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
        let run_id = manifest.run_id.clone();
        let window = Window::ending(date, config.window.lookback_days);
        let previous_window =
            Window::ending(date - TimeDelta::days(1), config.window.lookback_days);
        let ctx = crate::engine::context();
        root.register(&ctx);
        let inputs = register_inputs(&ctx, config, previous_window.first, date).await?;
        let catalog = load_catalog(&ctx, config, &inputs).await?;
        register_window_events(&ctx, config, previous_window.first, date).await?;
        let data = prepare_window(&ctx, config, window).await?;
        let own = published_lists(&root, date).await?.unwrap_or_default();
        let previous = published_lists(&root, date - TimeDelta::days(1)).await?;
        let active_users = data.active_users();
        let baseline = popular_lists(&data, &active_users, config.topk.k);
        let previous_data = prepare_previous_window(&ctx, config, date).await?;
        let rows = evaluate(
            &ctx,
            config,
            EvalInput {
                date,
                window: &data,
                previous_window: &previous_data,
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
                metrics_schema(),
                &[metrics(&rows, date, &run_id)?],
            )
            .await?;
        publisher.verify_staged().await?;
        manifest.metrics_evaluated_at = Some(Utc::now().to_rfc3339());
        manifest.metrics_code_version = Some(crate::VERSION.to_string());
        manifest
            .row_counts
            .insert("metrics".into(), rows.len() as u64);
        publisher.republish(&manifest).await?;
        self.report(date).await;
        tracing::info!(date = %dt(date), rows = rows.len(), "metrics republished");
        Ok(rows.len())
    }
}
