//! Command-line definitions (a contract: scripts, DAGs and checks call it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::DeviceChoice;

pub const EXIT_CODES: &str = "\
Exit codes:
  0   published (or, for backfill, every date published or already published)
  1   bad input or configuration: a retry will not help
  2   infrastructure or unexpected failure: a retry may help
  3   input not ready: the behavior partition for the date does not exist yet
  99  nothing to do: the date is already published and --force was not given";

#[derive(Debug, Parser)]
#[command(name = "recjob", version, about = "Nightly batch recommendations: Parquet in, sentence embeddings, exact cosine top-K, Parquet out", after_help = EXIT_CODES)]
pub struct Cli {
    /// Log format: human-readable text, or one JSON object per line for schedulers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RECJOB_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Job configuration (TOML), e.g. jobs/nightly.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Override a configuration key: --set topk.k=20 (repeatable). Environment variables
    /// RECJOB_SECTION__KEY=value apply first.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the nightly job for one logical date and publish its partitions.
    #[command(after_help = EXIT_CODES)]
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Logical date YYYY-MM-DD (Airflow's {{ ds }}).
        #[arg(long)]
        date: String,
        /// Replace the date's partitions if it is already published.
        #[arg(long)]
        force: bool,
        /// Say what would happen; read no data and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a range of dates in order, skipping published ones (resumable).
    #[command(
        after_help = "Exit code: 0 when every date is published or skipped as already published, 3 when the only problems were dates not ready, otherwise the code of the first failure."
    )]
    Backfill {
        #[command(flatten)]
        config: ConfigArgs,
        /// First date, YYYY-MM-DD.
        #[arg(long)]
        from: String,
        /// Last date (inclusive), YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// Rerun dates that are already published.
        #[arg(long)]
        force: bool,
        /// List each date with its action; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Go on after a failed date (dates not ready never stop a backfill).
        #[arg(long)]
        keep_going: bool,
    },
    /// Replay a configuration over a date range without publishing anything: mean metrics per K
    /// of the model and the popularity baseline, printed and written as Parquet.
    #[command(after_help = EXIT_CODES)]
    Backtest {
        #[command(flatten)]
        config: ConfigArgs,
        /// First evaluated date, YYYY-MM-DD (its D-1 is computed too).
        #[arg(long)]
        from: String,
        /// Last evaluated date (inclusive), YYYY-MM-DD.
        #[arg(long)]
        to: String,
        /// Where to write the table (path or URL); default
        /// <output.root>/backtests/backtest-<from>-<to>-<time>.parquet.
        #[arg(long)]
        output: Option<String>,
    },
    /// Recompute and republish the metrics of a published date (after a definition changed).
    #[command(after_help = EXIT_CODES)]
    Evaluate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Published date YYYY-MM-DD.
        #[arg(long)]
        date: String,
    },
    /// Embed a text column of a Parquet file: every input column plus `embedding`.
    Embed {
        /// Sentence-transformers model directory.
        #[arg(long)]
        model: PathBuf,
        /// Input Parquet file (path or URL).
        #[arg(long)]
        input: String,
        /// Text column to embed.
        #[arg(long, default_value = "text")]
        column: String,
        /// Output Parquet file (path or URL).
        #[arg(long)]
        output: String,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
        /// Tokens per encoder batch, padding included.
        #[arg(long, default_value_t = 8192)]
        max_batch_tokens: usize,
    },
    /// Query the published tables with SQL (read-only). Without -c or -f: an interactive prompt.
    Sql {
        #[command(flatten)]
        config: ConfigArgs,
        /// The statement to run.
        #[arg(short = 'c', long = "command", conflicts_with = "file")]
        command: Option<String>,
        /// A file holding the statement (e.g. sql/analyst/top_items_per_day.sql).
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Value of a `$name` parameter of the statement: --param user_id=12346 (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[arg(long, value_enum, default_value_t = crate::sql::Format::Table)]
        format: crate::sql::Format,
        /// Write the result here instead of stdout (required for parquet).
        #[arg(long)]
        output: Option<String>,
    },
    /// Exact top-K of user vectors against item vectors: `user_id, rank, item_id, score`.
    Topk {
        /// Parquet with `id` (or `user_id`) and `embedding`.
        #[arg(long)]
        users: String,
        /// Parquet with `id` (or `item_id`) and `embedding`.
        #[arg(long)]
        items: String,
        /// Results per user.
        #[arg(long)]
        k: usize,
        /// Output Parquet file.
        #[arg(long)]
        output: String,
        /// Parquet of `user_id, item_id` pairs never to return.
        #[arg(long)]
        exclude: Option<String>,
        /// Users per block.
        #[arg(long, default_value_t = 1024)]
        block_users: usize,
        /// Items per block.
        #[arg(long, default_value_t = 2048)]
        block_items: usize,
    },
    /// Start an Apache Ballista scheduler that knows recjob's functions; runs until stopped.
    /// Runs then use it with --set engine.url=df://HOST:PORT.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: String,
        /// gRPC port (clients and executors connect here).
        #[arg(long, default_value_t = 50050)]
        port: u16,
        /// Host name under which executors and clients reach this scheduler.
        #[arg(long, default_value = "localhost")]
        external_host: String,
        /// Seconds without a heartbeat after which an executor is dead and its tasks run again
        /// elsewhere.
        #[arg(long, default_value_t = 30)]
        executor_timeout_seconds: u64,
    },
    /// Start an Apache Ballista executor with recjob's functions, registered with a scheduler;
    /// runs until stopped (SIGTERM).
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long)]
        scheduler: String,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind: String,
        /// Host name under which the scheduler and other executors reach this one (default:
        /// what the scheduler sees).
        #[arg(long)]
        external_host: Option<String>,
        /// Arrow Flight port (task results and shuffle data).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// gRPC port (the scheduler's task launches).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks at once; recjob's functions use every core themselves.
        #[arg(long, default_value_t = 1)]
        vcores: usize,
        /// Directory for shuffle and spill files (default: a temporary directory).
        #[arg(long)]
        work_dir: Option<String>,
        /// Seconds between heartbeats to the scheduler (below its --executor-timeout-seconds).
        #[arg(long, default_value_t = 5)]
        heartbeat_seconds: u64,
    },
}
