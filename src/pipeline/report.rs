//! The report people open each morning: `reports/dt=D/report.html` per published date and
//! `reports/index.html` over all of them, self-contained HTML (inline CSS and SVG, no script, no
//! network) readable on a phone. A report says whether the night was normal (each indicator
//! against the previous published dates), what the run read, used and measured, the metrics
//! against the popularity baseline for every K and segment, trends with configuration changes
//! marked, how concentrated the lists are, what changed since the previous published date, and a
//! few users' lists with titles and score components.
//!
//! Built from published data only (manifests, and the published tables through `recjob sql`'s
//! session), after the date is published: a failure to write it is logged and does not fail the
//! run. `recjob evaluate` and `recjob report` rebuild it. Reading: `report/data.rs`; the verdict:
//! `report/checks.rs`; charts: `report/charts.rs`; the HTML: `report/page.rs` and `templates/`.

mod charts;
mod checks;
mod data;
mod page;

use chrono::NaiveDate;
use object_store::{ObjectStoreExt, PutPayload};

use super::runner::Runner;
use crate::config::Config;
use crate::domain::dt;
use crate::error::{Context, Error, Result};
use crate::io::Location;
use crate::publish::{ManifestVersions, session};

/// The report of `date` under the output root (where it is written, and the manifest's link).
pub(crate) fn report_url(root: &Location, date: NaiveDate) -> String {
    root.object_url(&root.path(&report_path(date)))
}

fn report_path(date: NaiveDate) -> String {
    format!("reports/dt={}/report.html", dt(date))
}

/// The index of every report, under the output root.
const INDEX_PATH: &str = "reports/index.html";

impl Runner {
    /// Write the date's HTML report and the index; a failure is logged, never fatal (the data
    /// is published).
    pub(crate) async fn report(&self, date: NaiveDate) {
        self.report_with(&self.config, date).await;
    }

    /// [`Runner::report`] under another configuration (an evaluation's, at the published K).
    pub(crate) async fn report_with(&self, config: &Config, date: NaiveDate) {
        match write_reports(config, &[date]).await {
            Ok(urls) => tracing::info!(report = %urls.join(", "), "report written"),
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(error = %error, "could not write the report");
                let page = async {
                    let root = Location::parse(&config.output.root)?;
                    put(&root, &report_path(date), page::unavailable(date, &error)?).await
                };
                if let Err(e) = page.await {
                    tracing::warn!(error = %format!("{e:#}"), "could not write the page that says so");
                }
            }
        }
    }

    /// Rewrite the reports of `dates` (every published date when empty) and the index; returns
    /// the URLs written, the index last. A date that is not published is an error (exit 1).
    pub async fn write_reports(&self, dates: &[NaiveDate]) -> Result<Vec<String>> {
        write_reports(&self.config, dates).await
    }
}

/// The K the report's verdict and trends use: the largest metric K up to 20 (else the smallest,
/// else `topk.k`).
fn report_k(config: &Config) -> i32 {
    let ks = config.metric_ks();
    ks.iter()
        .copied()
        .filter(|k| *k <= 20)
        .max()
        .or(ks.first().copied())
        .unwrap_or(config.topk.k) as i32
}

/// How often the reports are rebuilt when a run publishes while they are written.
const ATTEMPTS: usize = 3;

/// Write the reports of `dates` (all published dates when empty) and the index, built from the
/// manifests as they are when the writing ends: when a run published or republished any date
/// meanwhile (its files replaced under this build, its report or the index written before this
/// one's), they are built again, so neither a report nor the index ends up describing a run its
/// date no longer publishes, nor the index missing a date. The check is one listing of the
/// manifests before and after ([`ManifestVersions`]); should the one after fail, what was
/// written stands, with a warning.
async fn write_reports(config: &Config, dates: &[NaiveDate]) -> Result<Vec<String>> {
    let root = Location::parse(&config.output.root)?;
    let mut attempt = 1;
    loop {
        let before = ManifestVersions::of(&root).await?;
        let written = write_once(config, &root, dates).await;
        match ManifestVersions::of(&root).await {
            Ok(after) if after == before => return written,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot list the manifests after writing the reports: they may miss a run published meanwhile (`recjob report` rebuilds them)");
                return written;
            }
        }
        if attempt == ATTEMPTS {
            tracing::warn!(
                attempts = ATTEMPTS,
                "the manifests kept changing while the reports were written: the run that changed them last rewrites its own report"
            );
            return written;
        }
        tracing::info!(
            attempt,
            "a date was published or republished while the reports were written: building them again"
        );
        attempt += 1;
    }
}

/// One build of the reports of `dates` and the index.
async fn write_once(config: &Config, root: &Location, dates: &[NaiveDate]) -> Result<Vec<String>> {
    let ctx = session(config).await?;
    let history = data::history(&ctx, root).await?;
    let k = report_k(config);
    let dates: Vec<NaiveDate> = if dates.is_empty() {
        history.manifests.iter().map(|(d, _)| *d).collect()
    } else {
        dates.to_vec()
    };
    let mut urls = Vec::new();
    for &date in &dates {
        if history.manifest(date).is_none() {
            return Err(Error::Input(format!(
                "dt={} is not published under {}: no report",
                dt(date),
                root.url()
            )));
        }
        let day = data::date_data(&ctx, config, &history, date).await?;
        let html = page::report(&history, &day, date, k)?;
        urls.push(put(root, &report_path(date), html).await?);
    }
    urls.push(put(root, INDEX_PATH, page::index(&history, k)?).await?);
    Ok(urls)
}

/// Put `html` at `path` under the root; returns its URL.
async fn put(root: &Location, path: &str, html: String) -> Result<String> {
    let path = root.path(path);
    root.store
        .put(&path, PutPayload::from(html.into_bytes()))
        .await
        .context(format!("writing {}", root.object_url(&path)))?;
    Ok(root.object_url(&path))
}
