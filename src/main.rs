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
    // Usage errors are bad configuration (exit 1, not retried), not clap's default 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ProcessExit::from(if e.use_stderr() {
                ExitCode::BadInput as u8
            } else {
                0
            });
        }
    };
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
                "{:<12} {:<34} {:>5} {:>8}  detail",
                "date", "action", "exit", "seconds"
            );
            for r in &rows {
                println!(
                    "{:<12} {:<34} {:>5} {:>8.1}  {}",
                    r.date.to_string(),
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
        Command::Backtest {
            config,
            from,
            to,
            output,
        } => {
            let (from, to) = (parse_date(&from)?, parse_date(&to)?);
            if from > to {
                return Err(Error::Config(format!("--from {from} is after --to {to}")));
            }
            let runner = Runner::new(Config::load(&config.config, &config.sets)?);
            let result = recjob::backtest::backtest(&runner, from, to).await?;
            print!("{}", result.table());
            let url = result.write(&runner, output.as_deref()).await?;
            println!("written to {url}");
            Ok(ExitCode::Published)
        }
        Command::Evaluate { config, date } => {
            let date = parse_date(&date)?;
            let runner = Runner::new(Config::load(&config.config, &config.sets)?);
            let rows = runner.evaluate_published(date).await?;
            println!("republished metrics/dt={date}: {rows} rows");
            Ok(ExitCode::Published)
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
        Command::Sql {
            config,
            command,
            file,
            params,
            format,
            output,
        } => {
            let config = Config::load(&config.config, &config.sets)?;
            let params = params
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::Config("--param expects NAME=VALUE".into()))?;
            let statement = match (command, file) {
                (Some(c), _) => Some(c),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(&f)
                        .map_err(|e| Error::Config(format!("cannot read {}: {e}", f.display())))?,
                ),
                (None, None) => None,
            };
            let ctx = recjob::sql::session(&config).await?;
            match statement {
                Some(sql) => {
                    let batches = recjob::sql::query(&ctx, &sql, &params).await?;
                    recjob::sql::emit(&batches, format, output.as_deref()).await?;
                }
                None => recjob::sql::interactive(&ctx, format).await?,
            }
            Ok(ExitCode::Published)
        }
        Command::Scheduler {
            bind,
            port,
            external_host,
            executor_timeout_seconds,
        } => {
            recjob::cluster::scheduler(&bind, port, &external_host, executor_timeout_seconds)
                .await?;
            Ok(ExitCode::Published)
        }
        Command::Executor {
            scheduler,
            bind,
            external_host,
            port,
            grpc_port,
            vcores,
            work_dir,
            heartbeat_seconds,
        } => {
            let (host, scheduler_port) = scheduler
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| {
                    Error::Config(format!("--scheduler {scheduler}: expected HOST:PORT"))
                })?;
            recjob::cluster::executor(recjob::cluster::ExecutorOptions {
                scheduler_host: host,
                scheduler_port,
                bind,
                external_host,
                port,
                grpc_port,
                vcores,
                work_dir,
                heartbeat_seconds,
            })
            .await?;
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
