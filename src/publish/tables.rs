//! `recjob sql`: the published tables one command away, read-only.
//!
//! Registers `recommendations`, `user_embeddings`, `item_vectors`, `similar_items`, `metrics`
//! (published partitions only: a `dt` is visible exactly when its manifest exists, so a run in
//! progress or a crashed one is never seen), `item_embeddings`, and the inputs `behavior` and
//! `catalog`, each with `dt` as a DATE column (the last three only where their files read as one
//! table: else a warning says why; the inputs are the files directly in their `dt=YYYY-MM-DD/`
//! folders, the files a run reads, as listed when the session starts); `runs` (one row per
//! published date, from its manifest) and the `run_catalog` view (each published date's catalog
//! snapshot: `publish/runs.rs`). DDL, DML, `COPY ... TO` and other statements are refused
//! (exit 1): analysts cannot damage the outputs.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use chrono::NaiveDate;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;

use super::manifest::Manifest;
use super::published::published;
use super::schemas::ITEM_EMBEDDINGS;
use crate::config::Config;
use crate::domain::dt;
use crate::error::{Context, Error, Result};
use crate::io::{
    Dot, Location, from_datafusion, is_data_file, listing_table, parquet_footer, pinned_table,
    runtime_builder, table_files,
};

/// Tables published per date, in the order `SHOW TABLES` lists them.
pub const PUBLISHED_TABLES: [&str; 5] = [
    "recommendations",
    "user_embeddings",
    "item_vectors",
    "similar_items",
    "metrics",
];

/// A session with every table registered, and `dot`.
pub async fn session(config: &Config) -> Result<SessionContext> {
    let runtime = runtime_builder()
        .build_arc()
        .context("starting the SQL session")?;
    let ctx = SessionContext::new_with_config_rt(
        SessionConfig::new().with_information_schema(true),
        runtime,
    );
    ctx.register_udf(Dot::udf());
    let root = Location::parse(&config.output.root)?;
    root.register(&ctx);
    let runs = published(&root).await?;
    for table in PUBLISHED_TABLES {
        if register_listing(&ctx, &format!("{table}_files"), &root.child(table), true).await? {
            let view = ctx
                .sql(&format!(
                    "SELECT * FROM {table}_files WHERE {}",
                    published_rows(&runs, table)
                ))
                .await
                .context(format!("registering {table}"))?;
            ctx.register_table(table, view.into_view())
                .context(format!("registering {table}"))?;
        }
    }
    register_or_warn(&ctx, "item_embeddings", &root.child(ITEM_EMBEDDINGS), false).await;
    for (name, url) in [
        ("behavior", &config.input.behavior),
        ("catalog", &config.input.catalog),
    ] {
        let loc = Location::parse(url)?;
        loc.register(&ctx);
        register_or_warn(&ctx, name, &loc, true).await;
    }
    super::runs::register_runs(&ctx, &runs).await?;
    Ok(ctx)
}

/// The filter that keeps exactly the published rows of `table`: per published date, the rows of
/// the run its manifest names. A directory may hold other files for a moment (a rerun between
/// writing its files and switching the manifest, or removing the old ones); they never show.
fn published_rows(runs: &[(NaiveDate, Manifest)], table: &str) -> String {
    let terms: Vec<String> = runs
        .iter()
        .filter_map(|(date, m)| {
            let run = m.rows_run_id(table);
            let plain = run
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c));
            if !plain {
                tracing::warn!(dt = %dt(*date), run, "manifest with an unexpected run id: date left out");
                return None;
            }
            Some(format!("(dt = DATE '{}' AND run_id = '{run}')", dt(*date)))
        })
        .collect();
    if terms.is_empty() {
        "false".to_string()
    } else {
        terms.join(" OR ")
    }
}

/// Register a table that no published table depends on (the inputs, the embedding cache) if it
/// can be read: a file that does not decode, or files whose schemas disagree (one day's ids
/// written as integers, the next as text), leave it out with a warning naming the file or the
/// column, and the published tables stay readable. A partitioned table is its files directly in
/// `dt=YYYY-MM-DD/` folders ([`table_files`], the files a run reads), pinned for the session.
async fn register_or_warn(ctx: &SessionContext, name: &str, loc: &Location, partitioned: bool) {
    let registered = if partitioned {
        register_partitioned(ctx, name, loc).await
    } else {
        register_listing(ctx, name, loc, false).await.map(|_| ())
    };
    let Err(e) = registered else {
        return;
    };
    let mut why = format!("{e:#}");
    let files = match partitioned {
        true => table_files(loc).await,
        false => loc.list_files().await,
    };
    for meta in files.unwrap_or_default().iter().filter(|m| is_data_file(m)) {
        if let Err(bad) = parquet_footer(&loc.store, meta).await {
            let url = loc.object_url(&meta.location);
            why = format!("file {url}: not a readable Parquet file: {bad}");
            break;
        }
    }
    tracing::warn!(table = name, url = %loc.url(), error = %why, "table not registered: its files cannot be read as one table");
}

/// Register the partitioned input table at `loc` over exactly its [`table_files`], if it has any.
async fn register_partitioned(ctx: &SessionContext, name: &str, loc: &Location) -> Result<()> {
    let files = table_files(loc).await?;
    if files.is_empty() {
        tracing::debug!(table = name, url = %loc.url(), "no data files: table not registered");
        return Ok(());
    }
    let table = pinned_table(ctx, loc, None, Some(DataType::Date32), files).await?;
    ctx.register_table(name, Arc::new(table))
        .context(format!("registering {name}"))?;
    Ok(())
}

/// Register a Parquet listing table if it has files; returns whether it was registered.
async fn register_listing(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    partitioned: bool,
) -> Result<bool> {
    if loc.list_files().await?.iter().all(|m| !is_data_file(m)) {
        tracing::debug!(table = name, url = %loc.url(), "no data files: table not registered");
        return Ok(false);
    }
    let table = listing_table(ctx, loc, None, partitioned.then_some(DataType::Date32)).await?;
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
    check_params(&df, params)?;
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
    let schema = df.schema().inner().clone();
    let batches = df
        .collect()
        .await
        .map_err(|e| from_datafusion("query", e))?;
    // No rows still has columns: CSV gets its header, Parquet its schema.
    Ok(if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    })
}

/// Every `$name` of the statement has exactly one `--param name=VALUE`, and every `--param`
/// names a `$name` of the statement: a misspelt or repeated parameter is an error, not a
/// query that silently runs without it.
fn check_params(df: &datafusion::dataframe::DataFrame, params: &[(String, String)]) -> Result<()> {
    let wanted: BTreeSet<String> = df
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| Error::Config(format!("query parameters: {e}")))?
        .into_keys()
        .map(|id| id.trim_start_matches('$').to_string())
        .collect();
    let list = || {
        let names: Vec<String> = wanted.iter().map(|n| format!("${n}")).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let mut given = BTreeSet::new();
    for (name, _) in params {
        if !given.insert(name.as_str()) {
            return Err(Error::Config(format!("--param {name} is given twice")));
        }
        if !wanted.contains(name) {
            return Err(Error::Config(format!(
                "--param {name}: the statement has no ${name} (its parameters: {})",
                list()
            )));
        }
    }
    if let Some(missing) = wanted.iter().find(|n| !given.contains(n.as_str())) {
        return Err(Error::Config(format!(
            "the statement's ${missing} has no value: add --param {missing}=VALUE"
        )));
    }
    Ok(())
}
