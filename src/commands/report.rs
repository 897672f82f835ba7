//! `recjob report`: rebuild the HTML reports of published dates and the index from what was
//! published (nothing is recomputed).

#![allow(clippy::print_stdout)]

use chrono::NaiveDate;

use crate::config::{ConfigArgs, date_arg};
use crate::error::{ExitCode, Result};
use crate::pipeline::Runner;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Published date YYYY-MM-DD (repeatable); without it, every published date.
    #[arg(long, value_parser = date_arg)]
    date: Vec<NaiveDate>,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    let runner = Runner::new(args.config.load()?);
    for url in runner.write_reports(&args.date).await? {
        println!("{url}");
    }
    Ok(ExitCode::Published)
}
