//! `recjob backfill`: a range of dates, in order, resumable.

#![allow(clippy::print_stdout)]

use chrono::NaiveDate;

use crate::config::{ConfigArgs, date_arg};
use crate::domain::dt;
use crate::error::{Error, ExitCode, Result};
use crate::pipeline::{RunOptions, Runner, backfill, backfill_exit_code};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// First date, YYYY-MM-DD.
    #[arg(long, value_parser = date_arg)]
    from: NaiveDate,
    /// Last date (inclusive), YYYY-MM-DD.
    #[arg(long, value_parser = date_arg)]
    to: NaiveDate,
    /// Rerun dates that are already published.
    #[arg(long)]
    force: bool,
    /// List each date with its action; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Go on after a failed date (dates not ready never stop a backfill).
    #[arg(long)]
    keep_going: bool,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    if args.from > args.to {
        return Err(Error::Config(format!(
            "--from {} is after --to {}",
            args.from, args.to
        )));
    }
    let runner = Runner::new(args.config.load()?);
    let opts = RunOptions {
        force: args.force,
        dry_run: args.dry_run,
    };
    let rows = backfill(&runner, args.from, args.to, opts, args.keep_going).await;
    println!(
        "{:<12} {:<34} {:>5} {:>8}  detail",
        "date", "action", "exit", "seconds"
    );
    for r in &rows {
        println!(
            "{:<12} {:<34} {:>5} {:>8.1}  {}",
            dt(r.date),
            r.action,
            r.code as u8,
            r.seconds,
            r.detail
        );
    }
    let code = backfill_exit_code(&rows);
    println!("{} dates, exit code {}", rows.len(), code as u8);
    Ok(code)
}
