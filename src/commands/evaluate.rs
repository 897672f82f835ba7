//! `recjob evaluate`: recompute and republish the metrics of a published date.

#![allow(clippy::print_stdout)]

use chrono::NaiveDate;

use crate::config::{ConfigArgs, date_arg};
use crate::error::{ExitCode, Result};
use crate::pipeline::Runner;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Published date YYYY-MM-DD.
    #[arg(long, value_parser = date_arg)]
    date: NaiveDate,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    let runner = Runner::new(args.config.load()?);
    let rows = runner.evaluate_published(args.date).await?;
    println!("republished metrics/dt={}: {rows} rows", args.date);
    Ok(ExitCode::Published)
}
