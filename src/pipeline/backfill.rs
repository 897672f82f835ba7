//! `recjob backfill`: a range of dates run in order like `run`, resumable (published dates are
//! skipped), going on past dates that are not ready.

use std::time::Instant;

use chrono::{NaiveDate, TimeDelta};

use super::runner::{RunOptions, Runner};
use crate::domain::dt;
use crate::error::ExitCode;

/// One date of a backfill and how it ended.
#[derive(Debug, Clone)]
pub struct BackfillRow {
    /// The date.
    pub date: NaiveDate,
    /// What happened (`published`, `skipped (published)`, `not ready`, `failed`, ...).
    pub action: String,
    /// The date's exit code.
    pub code: ExitCode,
    /// The run id, or the error.
    pub detail: String,
    /// Wall time.
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
    let days = (to - from).num_days().max(0) as u64 + 1;
    let bar = crate::progress::bar("backfill", "dates", days as usize, 1).inspect(|b| {
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
        let row = backfill_date(runner, date, opts).await;
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

/// One date of a backfill: its plan with `--dry-run`, else its run.
async fn backfill_date(runner: &Runner, date: NaiveDate, opts: RunOptions) -> BackfillRow {
    let started = Instant::now();
    if opts.dry_run {
        match runner.plan(date, opts.force).await {
            Ok((action, inputs, code)) => BackfillRow {
                date,
                action,
                code,
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
    }
}

/// The exit code of a backfill (ARCHITECTURE.md "Exit codes").
pub fn backfill_exit_code(rows: &[BackfillRow]) -> ExitCode {
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
