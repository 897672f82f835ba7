//! CLI entry: parse, load a validated configuration, run, map the outcome to an exit code.

use std::process::ExitCode as ProcessExit;

use clap::Parser;
use recjob::cli::{Cli, Command, LogFormat};
use recjob::config::{Config, parse_date};
use recjob::error::{Error, ExitCode};
use recjob::pipeline::{RunOptions, Runner, backfill, backfill_exit_code};
use recjob::standalone;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RECJOB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ProcessExit {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ProcessExit::from(ExitCode::Infrastructure as u8);
        }
    };
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            match e.exit_code() {
                ExitCode::NothingToDo => eprintln!("recjob: nothing to do: {e:#}"),
                _ => eprintln!("recjob: error: {e:#}"),
            }
            e.exit_code()
        }
    };
    ProcessExit::from(code as u8)
}

async fn dispatch(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Run {
            config,
            date,
            force,
            dry_run,
        } => {
            let date = parse_date(&date)?;
            let runner = Runner::new(Config::load(&config.config, &config.sets)?);
            let report = runner.run(date, RunOptions { force, dry_run }).await?;
            if dry_run {
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
        Command::Backfill {
            config,
            from,
            to,
            force,
            dry_run,
            keep_going,
        } => {
            let (from, to) = (parse_date(&from)?, parse_date(&to)?);
            if from > to {
                return Err(Error::Config(format!("--from {from} is after --to {to}")));
            }
            let runner = Runner::new(Config::load(&config.config, &config.sets)?);
            let rows = backfill(&runner, from, to, RunOptions { force, dry_run }, keep_going).await;
            println!(
                "{:<12} {:<22} {:>5} {:>8}  detail",
                "date", "action", "exit", "seconds"
            );
            for r in &rows {
                println!(
                    "{:<12} {:<22} {:>5} {:>8.1}  {}",
                    r.date, r.action, r.code as u8, r.seconds, r.detail
                );
            }
            let code = backfill_exit_code(&rows);
            println!("{} dates, exit code {}", rows.len(), code as u8);
            Ok(code)
        }
        Command::Embed {
            model,
            input,
            column,
            output,
            device,
            max_batch_tokens,
        } => {
            let n =
                standalone::embed_file(&model, &input, &column, &output, device, max_batch_tokens)
                    .await?;
            println!("embedded {n} texts into {output}");
            Ok(ExitCode::Published)
        }
        Command::Topk {
            users,
            items,
            k,
            output,
            exclude,
            block_users,
            block_items,
        } => {
            let short = standalone::topk_files(
                &users,
                &items,
                k,
                &output,
                exclude.as_deref(),
                block_users,
                block_items,
            )
            .await?;
            println!("wrote {output} ({short} users with fewer than {k} results)");
            Ok(ExitCode::Published)
        }
    }
}
