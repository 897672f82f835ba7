//! CLI entry: parse, start logging and the async runtime, run the command, map the outcome to
//! an exit code (ARCHITECTURE.md "Exit codes").

use std::process::ExitCode as ProcessExit;

use clap::Parser;
use recjob::commands::{Cli, LogFormat};
use recjob::error::ExitCode;

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
    // First, while this is the only thread: OpenBLAS reads its kernel choice when it loads.
    recjob::kernels::select_openblas_kernels();
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
    let code = match runtime.block_on(cli.execute()) {
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
