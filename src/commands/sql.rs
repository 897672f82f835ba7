//! `recjob sql`: the published tables one command away, read-only
//! ([`crate::publish::session`]): a statement from `-c` or `-f`, or an interactive prompt.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use object_store::ObjectStoreExt;

use crate::config::{Config, ConfigArgs};
use crate::error::{Context, Error, ExitCode, Result};
use crate::io::{Location, parquet_bytes};
use crate::publish::{PUBLISHED_TABLES, session, statement as run_statement};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// The statement to run.
    #[arg(short = 'c', long = "command", conflicts_with = "file")]
    command: Option<String>,
    /// A file holding the statement (e.g. sql/analyst/top_items_per_day.sql).
    #[arg(short = 'f', long)]
    file: Option<PathBuf>,
    /// Value of a `$name` parameter of the statement: --param user_id=12346 (one per `$name`).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = param_arg)]
    params: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the result here instead of stdout (required for parquet).
    #[arg(long)]
    output: Option<String>,
}

fn param_arg(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| "--param expects NAME=VALUE".to_string())
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    let config = args.config.load()?;
    let statement = match (args.command, args.file.as_ref()) {
        (Some(c), _) => Some(c),
        (None, Some(f)) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| Error::Config(format!("cannot read {}: {e}", f.display())))?,
        ),
        (None, None) => None,
    };
    let output = match &args.output {
        Some(out) => Some(output_target(&config, out, args.file.as_deref())?),
        None => None,
    };
    match statement {
        Some(sql) => {
            let batches = run_statement(&config, &sql, &args.params).await?;
            emit(&batches, args.format, output.as_ref()).await?;
        }
        None if output.is_some() || !args.params.is_empty() => {
            return Err(Error::Config(
                "--output and --param go with a statement (-c or -f); the prompt prints its results"
                    .into(),
            ));
        }
        None => interactive(&config, args.format).await?,
    }
    Ok(ExitCode::Published)
}

/// How a result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    /// An aligned text table.
    Table,
    /// CSV with a header.
    Csv,
    /// JSON lines.
    Json,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Print or write a result in the chosen format.
async fn emit(batches: &[RecordBatch], format: Format, output: Option<&Target>) -> Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    match format {
        Format::Table => {
            let table =
                arrow::util::pretty::pretty_format_batches(batches).context("formatting")?;
            buf.extend(format!("{table}\n").into_bytes());
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buf);
            for b in batches {
                w.write(b).context("writing CSV")?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            for b in batches {
                w.write(b).context("writing JSON")?;
            }
            w.finish().context("writing JSON")?;
        }
        Format::Parquet => {
            if output.is_none() {
                return Err(Error::Config("--format parquet needs --output PATH".into()));
            }
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => Arc::new(arrow::datatypes::Schema::empty()),
            };
            buf = parquet_bytes(schema, batches)?;
        }
    }
    match output {
        Some(Target::File(path)) => std::fs::write(path, &buf).map_err(|e| {
            use std::io::ErrorKind as K;
            match e.kind() {
                // The path is wrong, not the machine: retrying will not help.
                K::NotFound | K::NotADirectory | K::PermissionDenied | K::IsADirectory => {
                    Error::Config(format!("--output {}: {e}", path.display()))
                }
                _ => Error::infra(format!("writing {}", path.display()), e),
            }
        }),
        Some(Target::Store(loc)) => loc
            .store
            .put(&loc.prefix, buf.into())
            .await
            .map(|_| ())
            .context(format!("writing {}", loc.prefix)),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&buf)
                .map_err(|e| Error::infra("writing to stdout", e))
        }
    }
}

/// Where `--output` writes, decided before the statement runs and then written to exactly.
enum Target {
    /// A local file: its folder canonical, its name not a symbolic link.
    File(PathBuf),
    /// An object on a store (`s3://`, `memory://`).
    Store(Location),
}

/// The file `--output` names, checked: symbolic links and `..` resolved the way the kernel
/// resolves them (the folder canonicalised, so `link/../x` is next to the link's target; a
/// link in the last part followed, also one whose target does not exist yet, which the write
/// would create), in a folder that exists, not a directory, not the query file, and never in
/// the job's data: not under `output.root` (published tables, manifests, the cache) nor under
/// the input roots.
fn output_target(config: &Config, output: &str, query_file: Option<&Path>) -> Result<Target> {
    let bad = |why: String| Error::Config(format!("--output {output}: {why}"));
    let loc = Location::parse(output)?;
    let target = if loc.base.scheme() == "file" {
        let mut path = match output.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(output),
        };
        let mut file = None;
        // Bounded like the kernel's own link following, so a loop of links ends.
        for _ in 0..64 {
            let Some(name) = path.file_name() else {
                return Err(bad("name a file".into()));
            };
            let folder = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let folder = std::fs::canonicalize(folder).map_err(|e| {
                bad(format!(
                    "the folder {} cannot be used ({e}); create it first",
                    folder.display()
                ))
            })?;
            let candidate = folder.join(name);
            match std::fs::read_link(&candidate) {
                Ok(link) => path = folder.join(link),
                Err(_) => {
                    file = Some(candidate);
                    break;
                }
            }
        }
        let file = file.ok_or_else(|| bad("a loop of symbolic links".into()))?;
        if file.is_dir() {
            return Err(bad("it is a directory: name a file".into()));
        }
        if let Some(q) = query_file
            && std::fs::canonicalize(q).is_ok_and(|q| q == file)
        {
            return Err(bad("it is the query file itself".into()));
        }
        Target::File(file)
    } else {
        Target::Store(loc)
    };
    let out = match &target {
        Target::File(file) => Location::parse(&file.to_string_lossy())?,
        Target::Store(loc) => loc.clone(),
    };
    for (key, url) in [
        ("output.root", &config.output.root),
        ("input.behavior", &config.input.behavior),
        ("input.catalog", &config.input.catalog),
    ] {
        let root = resolved(url)?;
        let under = out.base == root.base
            && (root.prefix.as_ref().is_empty()
                || out.prefix == root.prefix
                || out.prefix.prefix_match(&root.prefix).is_some());
        if under {
            return Err(Error::Config(format!(
                "--output {output} is inside {key} ({}): recjob sql never writes into the job's data; choose a path elsewhere",
                root.url()
            )));
        }
    }
    Ok(target)
}

/// A root's location with its symbolic links resolved: the longest part of its path that
/// exists, canonicalised, then the rest. Object-store locations are as given.
fn resolved(url: &str) -> Result<Location> {
    let loc = Location::parse(url)?;
    if loc.base.scheme() != "file" {
        return Ok(loc);
    }
    let mut path = PathBuf::from(format!("/{}", loc.prefix));
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&path) {
            let full = rest.iter().rev().fold(real, |p, name| p.join(name));
            return Location::parse(&full.to_string_lossy());
        }
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                path = parent.to_path_buf();
            }
            _ => return Ok(loc),
        }
    }
}

/// The interactive prompt: statements end with `;`, history in `~/.recjob_sql_history`. Each
/// statement reads what is published when it starts, on a session of its own; one made before
/// the prompt checks that the tables can be registered, so a bad configuration fails at once.
async fn interactive(config: &Config, format: Format) -> Result<()> {
    session(config).await?;
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| Error::infra("starting the prompt", e))?;
    let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".recjob_sql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "recjob sql: read-only. Tables: {}. Join titles through run_catalog \
         (ON c.dt = r.dt AND c.item_id = r.item_id): catalog holds every snapshot. \
         End statements with ';', \\q quits.",
        {
            let mut names = PUBLISHED_TABLES.to_vec();
            names.extend([
                "item_embeddings",
                "behavior",
                "catalog",
                "runs",
                "run_catalog",
            ]);
            names.join(", ")
        }
    );
    let mut statement = String::new();
    loop {
        let prompt = if statement.is_empty() {
            "recjob> "
        } else {
            "     -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if statement.is_empty() && matches!(line.trim(), "\\q" | "quit" | "exit") {
                    break;
                }
                statement.push_str(&line);
                statement.push('\n');
                if line.trim_end().ends_with(';') {
                    let _ = editor.add_history_entry(statement.trim());
                    match run_statement(config, &statement, &[]).await {
                        Ok(batches) => emit(&batches, format, None).await?,
                        Err(e) => eprintln!("error: {e:#}"),
                    }
                    statement.clear();
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => statement.clear(),
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(Error::infra("reading the prompt", e)),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
