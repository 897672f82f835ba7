//! `recjob evaluate`: recompute the metrics of a published date and republish only them.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeDelta, Utc};

use super::run::{new_run_id, prepare_previous_window};
use super::runner::Runner;
use crate::config::Config;
use crate::domain::{InputFile, MetricRow};
use crate::domain::{Window, dt};
use crate::error::{Error, Result};
use crate::io::Location;
use crate::publish::{
    Lease, Publisher, is_published, metrics, metrics_schema, published_previous, read_manifest,
    visit_published_lists,
};
use crate::stages::evaluate::{EvalInput, OwnLists, evaluate, truth, truth_users};
use crate::stages::prepare::{prepare_window, register_window_events};
use crate::stages::read::{load_catalog, register_inputs};

impl Runner {
    /// Recompute the metrics of a published date from its published lists, D-1's and the raw
    /// behavior, and republish only `metrics/dt=D/` (the manifest records when). Idempotent:
    /// the same inputs give the same rows.
    pub async fn evaluate_published(&self, date: NaiveDate) -> Result<usize> {
        let config = &self.config;
        let root = Location::parse(&config.output.root)?;
        if !is_published(&root, date).await? {
            return Err(not_published(&root, date));
        }
        let eval_id = format!("{}-evaluate", new_run_id());
        let lease = Lease::acquire(
            &root,
            date,
            &eval_id,
            "evaluate",
            config.publish.lease_seconds,
        )
        .await?;
        let result = self.reevaluate_leased(&root, date, &eval_id, &lease).await;
        lease.release().await;
        let (rows, config) = result?;
        self.report_with(&config, date).await;
        tracing::info!(date = %dt(date), rows, "metrics republished");
        Ok(rows)
    }

    /// Under the date's lease: recompute the metrics and publish them as a new file of
    /// `metrics/dt=D/`, whose rows carry `eval_id` as their `run_id`; the manifest switches to
    /// it and the previous metrics file is removed. Returns the rows and the configuration they
    /// were computed under (the published lists' K).
    async fn reevaluate_leased(
        &self,
        root: &Location,
        date: NaiveDate,
        eval_id: &str,
        lease: &Lease,
    ) -> Result<(usize, Config)> {
        let Some(mut manifest) = read_manifest(root, date).await? else {
            return Err(not_published(root, date));
        };
        // The lists are as long as the run made them: metrics at K above that length would
        // grade lists that were never that long.
        let mut config = self.config.clone();
        let published = manifest.config.pointer("/topk/k").and_then(|k| k.as_u64());
        if let Some(k) = published.map(|k| k as usize)
            && k != config.topk.k
        {
            tracing::warn!(dt = %dt(date), published = k, configured = config.topk.k, "evaluating at the published lists' topk.k, not the configured one");
            config.topk.k = k;
        }
        // The window is the run's: the inputs it read are checked against the manifest's.
        let lookback = manifest
            .config
            .pointer("/window/lookback_days")
            .and_then(|d| d.as_u64());
        if let Some(days) = lookback.map(|d| d as u32)
            && days != config.window.lookback_days
        {
            tracing::warn!(dt = %dt(date), published = days, configured = config.window.lookback_days, "evaluating over the published run's window.lookback_days, not the configured one");
            config.window.lookback_days = days;
        }
        let rows = recompute_metrics(&config, root, date, &manifest.inputs).await?;
        let mut publisher = Publisher::new(root.clone(), date, eval_id);
        publisher
            .stage_partition("metrics", metrics_schema(), [metrics(&rows, date, eval_id)])
            .await?;
        publisher.verify_staged().await?;
        manifest.tables.retain(|f| f.table != "metrics");
        manifest.tables.extend(publisher.staged());
        manifest.metrics_evaluated_at = Some(Utc::now().to_rfc3339());
        manifest.metrics_code_version = Some(crate::VERSION.to_string());
        manifest.report = Some(super::report::report_url(root, date));
        manifest
            .row_counts
            .insert("metrics".into(), rows.len() as u64);
        publisher.publish(&manifest, true, lease).await?;
        Ok((rows.len(), config))
    }
}

/// The metrics of published date D: its published lists and D-1's against the raw behavior,
/// exactly as its run computed them. The input files must be the run's (`published`): metrics
/// over other inputs would not describe the lists.
async fn recompute_metrics(
    config: &Config,
    root: &Location,
    date: NaiveDate,
    published: &[InputFile],
) -> Result<Vec<MetricRow>> {
    let window = Window::ending(date, config.window.lookback_days);
    let previous_window = Window::ending(date - TimeDelta::days(1), config.window.lookback_days);
    let ctx = crate::engine::context();
    root.register(&ctx);
    let inputs = match register_inputs(&ctx, config, previous_window.first, date).await {
        // The run read this partition: it was there.
        Err(Error::NotReady(why)) => return Err(changed(date, &[why])),
        other => other?,
    };
    check_unchanged(date, published, &inputs.files)?;
    let catalog = load_catalog(&ctx, config, &inputs).await?;
    register_window_events(&ctx, config, previous_window.first, date).await?;
    let mut data = prepare_window(&ctx, config, &catalog, &inputs, window).await?;
    data.release_interactions();
    let mut own = OwnLists::new(config, &data);
    visit_published_lists(root, date, &mut |user, items| {
        own.add(&data, user, items.iter().map(String::as_str))
    })
    .await?;
    let previous_data = prepare_previous_window(&ctx, config, &catalog, &inputs, date).await?;
    let truth = truth(&ctx, config, date).await?;
    let keep = truth_users(&truth);
    let previous = published_previous(root, date - TimeDelta::days(1), &keep).await?;
    let input = EvalInput {
        date,
        window: &data,
        previous_window: &previous_data,
        own: &own,
        catalog: &catalog,
        truth: &truth,
        previous: previous.as_ref(),
    };
    evaluate(&ctx, config, input).await
}

/// The input files of a date are still those its run read: the same files (by table,
/// partition and name, so a root that moved with its files is the same input) of the same
/// sizes, from the same catalog snapshot. Else the error names what changed, and nothing is
/// republished.
fn check_unchanged(date: NaiveDate, published: &[InputFile], now: &[InputFile]) -> Result<()> {
    let snapshot = |files: &[InputFile]| {
        files
            .iter()
            .find(|f| f.table == "catalog")
            .map(|f| f.dt.clone())
    };
    let mut changes = Vec::new();
    let (then_snapshot, now_snapshot) = (snapshot(published), snapshot(now));
    let superseded = then_snapshot != now_snapshot;
    if superseded {
        changes.push(format!(
            "table catalog: the run used the snapshot dt={}, the newest on or before dt={} is now dt={}",
            then_snapshot.as_deref().unwrap_or("(none)"),
            dt(date),
            now_snapshot.as_deref().unwrap_or("(none)")
        ));
    }
    let key = |f: &InputFile| {
        let name = f.url.rsplit('/').next().unwrap_or(&f.url).to_string();
        (f.table.clone(), f.dt.clone(), name)
    };
    let compared = |f: &&InputFile| !(superseded && f.table == "catalog");
    let then: BTreeMap<_, &InputFile> = published
        .iter()
        .filter(compared)
        .map(|f| (key(f), f))
        .collect();
    let now: BTreeMap<_, &InputFile> = now.iter().filter(compared).map(|f| (key(f), f)).collect();
    for (k, f) in &then {
        match now.get(k) {
            None => changes.push(format!(
                "table {}, partition dt={}, file {}: gone",
                f.table, f.dt, f.url
            )),
            Some(g) if g.size_bytes != f.size_bytes => changes.push(format!(
                "table {}, partition dt={}, file {}: {} bytes, the run read {}",
                g.table, g.dt, g.url, g.size_bytes, f.size_bytes
            )),
            Some(_) => {}
        }
    }
    for (k, g) in &now {
        if !then.contains_key(k) {
            changes.push(format!(
                "table {}, partition dt={}, file {}: new since the run",
                g.table, g.dt, g.url
            ));
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(changed(date, &changes))
}

/// The error of inputs that changed since the date was published.
fn changed(date: NaiveDate, changes: &[String]) -> Error {
    let more = match changes.len() {
        n if n > 5 => format!("; and {} more", n - 5),
        _ => String::new(),
    };
    Error::Input(format!(
        "the inputs of dt={} changed since it was published ({}{more}): its metrics describe \
         lists made from the inputs as they were. `recjob run --date {} --force` rebuilds the \
         date from today's inputs",
        dt(date),
        changes[..changes.len().min(5)].join("; "),
        dt(date)
    ))
}

fn not_published(root: &Location, date: NaiveDate) -> Error {
    Error::NotReady(format!(
        "dt={} is not published under {}: nothing to evaluate",
        dt(date),
        root.url()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(root: &str, dt: &str, name: &str, size_bytes: u64) -> InputFile {
        InputFile {
            table: "behavior".into(),
            dt: dt.into(),
            url: format!("{root}/behavior/dt={dt}/{name}"),
            size_bytes,
        }
    }

    #[test]
    fn inputs_are_unchanged_by_table_partition_name_and_size() {
        let date = NaiveDate::from_ymd_opt(2024, 1, 2).unwrap();
        let run = [
            file("s3://a", "2024-01-01", "part-0.parquet", 10),
            file("s3://a", "2024-01-02", "part-0.parquet", 20),
        ];
        // The same files under a root that moved.
        let moved = [
            file("file:///b", "2024-01-01", "part-0.parquet", 10),
            file("file:///b", "2024-01-02", "part-0.parquet", 20),
        ];
        assert!(check_unchanged(date, &run, &moved).is_ok());
        let message = |now: &[InputFile]| match check_unchanged(date, &run, now) {
            Err(Error::Input(m)) => m,
            other => panic!("expected bad input, got {other:?}"),
        };
        let grown = message(&[
            run[0].clone(),
            file("s3://a", "2024-01-02", "part-0.parquet", 21),
        ]);
        assert!(
            grown.contains("dt=2024-01-02/part-0.parquet: 21 bytes, the run read 20"),
            "{grown}"
        );
        let gone = message(&run[..1]);
        assert!(
            gone.contains("dt=2024-01-02/part-0.parquet: gone"),
            "{gone}"
        );
        let new = message(&[
            run[0].clone(),
            run[1].clone(),
            file("s3://a", "2024-01-01", "part-1.parquet", 5),
        ]);
        assert!(
            new.contains("dt=2024-01-01/part-1.parquet: new since the run"),
            "{new}"
        );
        assert!(new.contains("--force"), "{new}");
        // A newer catalog snapshot is named as such, not as its files gone and new.
        let catalog = |dt: &str| InputFile {
            table: "catalog".into(),
            dt: dt.into(),
            url: format!("s3://a/catalog/dt={dt}/part-0.parquet"),
            size_bytes: 7,
        };
        let superseded = match check_unchanged(
            date,
            &[run[0].clone(), run[1].clone(), catalog("2023-12-01")],
            &[run[0].clone(), run[1].clone(), catalog("2024-01-01")],
        ) {
            Err(Error::Input(m)) => m,
            other => panic!("expected bad input, got {other:?}"),
        };
        assert!(
            superseded.contains("(table catalog: the run used the snapshot dt=2023-12-01, the newest on or before dt=2024-01-02 is now dt=2024-01-01)"),
            "{superseded}"
        );
    }
}
