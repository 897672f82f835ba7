//! The commands: `recjob <subcommand>`, one file each. The command line is a contract
//! (scripts, DAGs and checks call it); raw arguments are parsed into validated values here,
//! once, and this layer is the only code that prints to stdout.

mod backfill;
mod backtest;
mod cluster;
mod embed;
mod evaluate;
mod report;
mod run;
mod sql;
mod topk;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{ExitCode, Result};

/// Exit codes, as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0   published (or, for backfill, every date published or already published)
  1   bad input or configuration: a retry will not help
  2   infrastructure or unexpected failure: a retry may help
  3   input not ready: the behavior partition for the date does not exist yet
  99  nothing to do: the date is already published and --force was not given";

/// The `recjob` command line.
#[derive(Debug, Parser)]
#[command(name = "recjob", version, about = "Nightly batch recommendations: Parquet in, sentence embeddings, exact cosine top-K, Parquet out", after_help = EXIT_CODES)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line for schedulers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RECJOB_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the nightly job for one logical date and publish its partitions.
    #[command(after_help = EXIT_CODES)]
    Run(run::Args),
    /// Run a range of dates in order, skipping published ones (resumable).
    #[command(
        after_help = "Exit code: 0 when every date is published or skipped as already published, 3 when the only problems were dates not ready, otherwise the code of the first failure."
    )]
    Backfill(backfill::Args),
    /// Replay a configuration over a date range without publishing anything: mean metrics per K
    /// of the model and the popularity baseline, printed and written as Parquet.
    #[command(after_help = EXIT_CODES)]
    Backtest(backtest::Args),
    /// Recompute and republish the metrics of a published date (after a definition changed).
    #[command(after_help = EXIT_CODES)]
    Evaluate(evaluate::Args),
    /// Rebuild the HTML reports (reports/dt=D/report.html, reports/index.html) of published
    /// dates from what was published; prints their URLs.
    Report(report::Args),
    /// Embed a text column of a Parquet file: every input column plus `embedding`.
    Embed(embed::Args),
    /// Query the published tables with SQL (read-only). Without -c or -f: an interactive prompt.
    Sql(sql::Args),
    /// Exact top-K of user vectors against item vectors: `user_id, rank, item_id, score`.
    Topk(topk::Args),
    /// Start an Apache Ballista scheduler that knows recjob's functions; runs until stopped.
    /// Runs then use it with --set engine.url=df://HOST:PORT.
    Scheduler(crate::engine::SchedulerOptions),
    /// Start an Apache Ballista executor with recjob's functions, registered with a scheduler;
    /// runs until stopped (SIGTERM).
    Executor(crate::engine::ExecutorOptions),
}

impl Cli {
    /// Run the command; its exit code, or the error to report.
    pub async fn execute(self) -> Result<ExitCode> {
        match self.command {
            Command::Run(a) => run::execute(a).await,
            Command::Backfill(a) => backfill::execute(a).await,
            Command::Backtest(a) => backtest::execute(a).await,
            Command::Evaluate(a) => evaluate::execute(a).await,
            Command::Report(a) => report::execute(a).await,
            Command::Embed(a) => embed::execute(a).await,
            Command::Sql(a) => sql::execute(a).await,
            Command::Topk(a) => topk::execute(a).await,
            Command::Scheduler(a) => cluster::scheduler(a).await,
            Command::Executor(a) => cluster::executor(a).await,
        }
    }
}
