//! `recjob sql`: the published tables one command away, read-only.
//!
//! Registers `recommendations`, `user_embeddings`, `item_vectors`, `similar_items`, `metrics`
//! (published partitions only: a `dt` is visible exactly when its manifest exists, so a run in
//! progress or a crashed one is never seen), `item_embeddings`, and the inputs `behavior` and
//! `catalog`, each with `dt` as a DATE column. DDL, DML, `COPY ... TO` and other statements are
//! refused (exit 1): analysts cannot damage the outputs.

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::commit::MANIFESTS;
use crate::config::Config;
use crate::error::{Context, Error, Result};
use crate::storage::Location;

/// Tables published per date, in the order `SHOW TABLES` lists them.
pub const PUBLISHED_TABLES: [&str; 5] = [
    "recommendations",
    "user_embeddings",
    "item_vectors",
    "similar_items",
    "metrics",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Parquet,
}

/// Dates with a manifest under the output root.
pub async fn published_dates(root: &Location) -> Result<Vec<String>> {
    let manifests = root.child(MANIFESTS);
    let mut dates = Vec::new();
    for dir in manifests.list_dirs().await? {
        if let Some(date) = dir.strip_prefix("dt=")
            && root
                .exists(&manifests.path(&format!("{dir}/manifest.json")))
                .await?
        {
            dates.push(date.to_string());
        }
    }
    Ok(dates)
}

/// A session with every table registered.
pub async fn session(config: &Config) -> Result<SessionContext> {
    let ctx = crate::session::context();
    let root = Location::parse(&config.output.root)?;
    root.register(&ctx);
    let dates = published_dates(&root).await?;
    let in_list = if dates.is_empty() {
        "false".to_string()
    } else {
        format!(
            "dt IN ({})",
            dates
                .iter()
                .map(|d| format!("DATE '{d}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    for table in PUBLISHED_TABLES {
        if register_listing(&ctx, &format!("{table}_files"), &root.child(table), true).await? {
            let view = ctx
                .sql(&format!("SELECT * FROM {table}_files WHERE {in_list}"))
                .await
                .context(format!("registering {table}"))?;
            ctx.register_table(table, view.into_view())
                .context(format!("registering {table}"))?;
        }
    }
    register_listing(
        &ctx,
        "item_embeddings",
        &root.child(crate::embed::cache::TABLE),
        false,
    )
    .await?;
    for (name, url) in [
        ("behavior", &config.input.behavior),
        ("catalog", &config.input.catalog),
    ] {
        let loc = Location::parse(url)?;
        loc.register(&ctx);
        register_listing(&ctx, name, &loc, true).await?;
    }
    Ok(ctx)
}

/// Register a Parquet listing table if it has files; returns whether it was registered.
async fn register_listing(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    partitioned: bool,
) -> Result<bool> {
    if loc
        .list_files()
        .await?
        .iter()
        .all(|m| !crate::storage::is_data_file(m))
    {
        tracing::debug!(table = name, url = %loc.url(), "no data files: table not registered");
        return Ok(false);
    }
    let mut options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if partitioned {
        options = options.with_table_partition_cols(vec![("dt".to_string(), DataType::Date32)]);
    }
    let config = ListingTableConfig::new(loc.listing_url()?)
        .with_listing_options(options)
        .infer_schema(&ctx.state())
        .await
        .map_err(|e| {
            crate::prepare::from_datafusion(&format!("reading the schema of {}", loc.url()), e)
        })?;
    let table = ListingTable::try_new(config).context(format!("opening {}", loc.url()))?;
    ctx.register_table(name, Arc::new(table))
        .context(format!("registering {name}"))?;
    Ok(true)
}

/// Plan and run one read-only statement with `$name` parameters.
pub async fn query(
    ctx: &SessionContext,
    sql: &str,
    params: &[(String, String)],
) -> Result<Vec<RecordBatch>> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(|e| match e.find_root() {
            datafusion::error::DataFusionError::Plan(msg) if msg.contains("not supported") => {
                Error::Config(format!("recjob sql is read-only: {msg}"))
            }
            _ => Error::Config(format!("invalid query: {e}")),
        })?;
    let df = if params.is_empty() {
        df
    } else {
        let values: Vec<(&str, ScalarValue)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), ScalarValue::Utf8(Some(v.clone()))))
            .collect();
        df.with_param_values(values)
            .map_err(|e| Error::Config(format!("query parameters: {e}")))?
    };
    df.collect()
        .await
        .map_err(|e| crate::prepare::from_datafusion("query", e))
}

/// Print or write a result in the chosen format.
pub async fn emit(batches: &[RecordBatch], format: Format, output: Option<&str>) -> Result<()> {
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
            let Some(path) = output else {
                return Err(Error::Config("--format parquet needs --output PATH".into()));
            };
            let loc = Location::parse(path)?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => Arc::new(arrow::datatypes::Schema::empty()),
            };
            crate::files::write_parquet(&loc.store, &loc.prefix, schema, batches).await?;
            return Ok(());
        }
    }
    match output {
        Some(path) => {
            std::fs::write(path, &buf).map_err(|e| Error::infra(format!("writing {path}"), e))
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&buf)
                .map_err(|e| Error::infra("writing to stdout", e))
        }
    }
}

/// The interactive prompt: statements end with `;`, history in `~/.recjob_sql_history`.
pub async fn interactive(ctx: &SessionContext, format: Format) -> Result<()> {
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| Error::infra("starting the prompt", e))?;
    let history = std::env::var_os("HOME").map(|h| Path::new(&h).join(".recjob_sql_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    println!(
        "recjob sql: read-only. Tables: {}. End statements with ';', \\q quits.",
        {
            let mut names = PUBLISHED_TABLES.to_vec();
            names.extend(["item_embeddings", "behavior", "catalog"]);
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
                    match query(ctx, &statement, &[]).await {
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
