//! `recjob run`: publish one date.

#![allow(clippy::print_stdout)]

use chrono::NaiveDate;

use crate::config::{ConfigArgs, date_arg};
use crate::error::{ExitCode, Result};
use crate::pipeline::{RunOptions, Runner};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Logical date YYYY-MM-DD (Airflow's {{ ds }}).
    #[arg(long, value_parser = date_arg)]
    date: NaiveDate,
    /// Replace the date's partitions if it is already published.
    #[arg(long)]
    force: bool,
    /// Say what would happen; read no data and write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    let runner = Runner::new(args.config.load()?);
    let opts = RunOptions {
        force: args.force,
        dry_run: args.dry_run,
    };
    let report = runner.run(args.date, opts).await?;
    if args.dry_run {
        println!("{}\t{}", report.date, report.action);
    } else {
        println!(
            "{} {}: run {} in {:.1}s",
            report.action,
            report.date,
            report.run_id.unwrap_or_default(),
            report.seconds
        );
        println!("manifest: {}", report.manifest.unwrap_or_default());
        for (table, rows) in &report.rows {
            println!("  {table}: {rows} rows");
        }
    }
    Ok(ExitCode::Published)
}
