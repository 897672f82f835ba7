//! `recjob backtest`: replay a configuration over past dates, publishing nothing.

#![allow(clippy::print_stdout)]

use chrono::NaiveDate;

use crate::config::{ConfigArgs, date_arg};
use crate::error::{Error, ExitCode, Result};
use crate::pipeline::{Runner, backtest};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// First evaluated date, YYYY-MM-DD (its D-1 is computed too).
    #[arg(long, value_parser = date_arg)]
    from: NaiveDate,
    /// Last evaluated date (inclusive), YYYY-MM-DD.
    #[arg(long, value_parser = date_arg)]
    to: NaiveDate,
    /// Where to write the table (path or URL); default
    /// <output.root>/backtests/backtest-<from>-<to>-<time>.parquet.
    #[arg(long)]
    output: Option<String>,
    /// Also write each date's own values (the same columns, from_dt = to_dt = the date) to this
    /// path or URL: the rows to compare two settings date by date.
    #[arg(long)]
    daily: Option<String>,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    if args.from > args.to {
        return Err(Error::Config(format!(
            "--from {} is after --to {}",
            args.from, args.to
        )));
    }
    let runner = Runner::new(args.config.load()?);
    let result = backtest(&runner, args.from, args.to).await?;
    print!("{}", result.table());
    let (url, daily) = result
        .write(&runner, args.output.as_deref(), args.daily.as_deref())
        .await?;
    println!("written to {url}");
    if let Some(daily) = daily {
        println!("daily values written to {daily}");
    }
    Ok(ExitCode::Published)
}
