//! `recjob sql`: the published tables one command away, read-only.
//!
//! Registers `recommendations`, `user_embeddings`, `item_vectors`, `similar_items`,
//! `item_neighbors` (when some date has it), `metrics` (exactly the files the manifests list: a `dt` is visible exactly when its manifest exists, so
//! a run in progress or a crashed one is never seen), `item_embeddings`, and the inputs
//! `behavior` and `catalog`, each with `dt` as a DATE column (a table whose files do not read as
//! one table is left out with a warning that says why; the inputs are the files directly in their
//! `dt=YYYY-MM-DD/` folders, the files a run reads), all as listed when the session starts; `runs` (one row per
//! published date, from its manifest) and the `run_catalog` view (each published date's catalog
//! snapshot: `publish/runs.rs`). DDL, DML, `COPY ... TO` and other statements are refused
//! (exit 1): analysts cannot damage the outputs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use chrono::NaiveDate;
use datafusion::catalog::TableProvider;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use object_store::ObjectMeta;

use super::manifest::Manifest;
use super::published::{ManifestVersions, published};
use super::schemas::{ITEM_EMBEDDINGS, PUBLISHED_TABLES};
use crate::config::Config;
use crate::domain::dt;
use crate::error::{Context, Error, Result};
use crate::io::{
    Dot, Location, from_datafusion, is_data_file, parquet_footer, pinned_table, runtime_builder,
    table_files,
};

/// A session with every table registered, and `dot`: a snapshot of what is published when it
/// starts. Each published table reads exactly the files its dates' manifests list (never a
/// file of a run in progress, a crashed one or one being replaced); a run that replaces a date
/// afterwards removes files the session would read, and its queries of that date then fail
/// rather than show part of either run ([`statement`] runs them again on a new session).
pub async fn session(config: &Config) -> Result<SessionContext> {
    let (ctx, left_out) = snapshot(config).await?;
    left_out.iter().for_each(LeftOut::warn);
    Ok(ctx)
}

/// What a session left out and why. It is told ([`LeftOut::warn`]) only for the session whose
/// answer is kept: a statement run again because a run republished a date meanwhile
/// ([`statement`]) does not warn about the files that republishing removed.
#[derive(Debug)]
enum LeftOut {
    /// A file that the manifest of `date` lists for `table` is not there.
    File {
        table: &'static str,
        date: NaiveDate,
        url: String,
    },
    /// `table` is not registered: its files at `url` cannot be listed.
    Unlisted {
        table: String,
        url: String,
        error: String,
    },
    /// `table` is not registered: its files at `url` cannot be read as one table.
    Unreadable {
        table: String,
        url: String,
        error: String,
    },
}

impl LeftOut {
    fn warn(&self) {
        match self {
            LeftOut::File { table, date, url } => {
                tracing::warn!(table, dt = %dt(*date), file = url, "a file the manifest lists is not there: the date's rows of this table are missing until `recjob run --date D --force` republishes it")
            }
            LeftOut::Unlisted { table, url, error } => {
                tracing::warn!(
                    table,
                    url,
                    error,
                    "table not registered: its files cannot be listed"
                )
            }
            LeftOut::Unreadable { table, url, error } => {
                tracing::warn!(
                    table,
                    url,
                    error,
                    "table not registered: its files cannot be read as one table"
                )
            }
        }
    }
}

/// [`session`], with what it left out not told yet.
async fn snapshot(config: &Config) -> Result<(SessionContext, Vec<LeftOut>)> {
    let mut left_out = Vec::new();
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
        let loc = root.child(table);
        let files = listed_files(&loc, table, &runs, &mut left_out).await?;
        left_out.extend(register(&ctx, table, &loc, Ok(files), true).await);
    }
    let cache = root.child(ITEM_EMBEDDINGS);
    let files = cache
        .list_files()
        .await
        .map(|f| f.into_iter().filter(is_data_file).collect());
    left_out.extend(register(&ctx, "item_embeddings", &cache, files, false).await);
    for (name, url) in [
        ("behavior", &config.input.behavior),
        ("catalog", &config.input.catalog),
    ] {
        let loc = Location::parse(url)?;
        loc.register(&ctx);
        let files = table_files(&loc).await;
        left_out.extend(register(&ctx, name, &loc, files, true).await);
    }
    super::runs::register_runs(&ctx, &runs).await?;
    Ok((ctx, left_out))
}

/// The files of `table` that the published dates' manifests list, from one listing of the
/// table's folder. A file is known by its partition and name (`dt=D/part-<run>.parquet`), not
/// by the URL the manifest holds, so an output root copied or reached under another URL reads
/// the same. A listed file that is not there is left out (`left_out`, a warning naming it): the
/// date's rows of the table are missing until the date is run again.
async fn listed_files(
    loc: &Location,
    table: &'static str,
    runs: &[(NaiveDate, Manifest)],
    left_out: &mut Vec<LeftOut>,
) -> Result<Vec<ObjectMeta>> {
    let mut listed: BTreeMap<String, (NaiveDate, &str)> = runs
        .iter()
        .flat_map(|(date, m)| {
            m.tables
                .iter()
                .filter(|f| f.table == table)
                .map(|f| (partition_and_name(&f.url), (*date, f.url.as_str())))
        })
        .collect();
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let files: Vec<ObjectMeta> = loc
        .list_files()
        .await?
        .into_iter()
        .filter(|m| {
            listed
                .remove(&partition_and_name(m.location.as_ref()))
                .is_some()
        })
        .collect();
    left_out.extend(listed.into_values().map(|(date, url)| LeftOut::File {
        table,
        date,
        url: url.to_string(),
    }));
    Ok(files)
}

/// The last two parts of a file's path or URL: `dt=D/part-<run>.parquet`.
fn partition_and_name(path: &str) -> String {
    let mut parts = path.rsplitn(3, '/');
    let name = parts.next().unwrap_or_default();
    format!("{}/{name}", parts.next().unwrap_or_default())
}

/// Register `name` over exactly `files` (below `loc`; partitioned: `dt` a DATE column) for the
/// session, if it has any. A table whose files cannot be listed or read as one table (a file
/// that does not decode, or files whose schemas disagree: one day's ids written as integers,
/// the next as text) is left out, the file or the column named in what is returned, and the
/// other tables stay readable.
async fn register(
    ctx: &SessionContext,
    name: &str,
    loc: &Location,
    files: Result<Vec<ObjectMeta>>,
    partitioned: bool,
) -> Option<LeftOut> {
    let files = match files {
        Ok(files) => files,
        Err(e) => {
            return Some(LeftOut::Unlisted {
                table: name.to_string(),
                url: loc.url(),
                error: format!("{e:#}"),
            });
        }
    };
    if files.is_empty() {
        tracing::debug!(table = name, url = %loc.url(), "no data files: table not registered");
        return None;
    }
    let dt_type = partitioned.then_some(DataType::Date32);
    let table = match pinned_table(ctx, loc, None, dt_type.clone(), files.clone()).await {
        Ok(t) => {
            let schema = nullable(&t.schema(), partitioned.then_some("dt"));
            pinned_table(ctx, loc, Some(schema), dt_type, files.clone()).await
        }
        Err(e) => Err(e),
    };
    let registered = match table {
        Ok(t) => ctx
            .register_table(name, Arc::new(t))
            .map(|_| ())
            .context(format!("registering {name}")),
        Err(e) => Err(e),
    };
    let Err(e) = registered else {
        return None;
    };
    let mut why = format!("{e:#}");
    for meta in &files {
        if let Err(bad) = parquet_footer(&loc.store, meta).await {
            let url = loc.object_url(&meta.location);
            why = format!("file {url}: not a readable Parquet file: {bad}");
            break;
        }
    }
    Some(LeftOut::Unreadable {
        table: name.to_string(),
        url: loc.url(),
        error: why,
    })
}

/// `schema` (the files' columns, merged) with every column nullable and without the partition
/// column: a column that a later version of recjob added reads as NULL on the dates published
/// before it, where a non-nullable column would fail every statement that reads it.
fn nullable(schema: &Schema, partition: Option<&str>) -> SchemaRef {
    let fields: Vec<_> = (schema.fields().iter())
        .filter(|f| Some(f.name().as_str()) != partition)
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}

/// Run one read-only statement with `$name` parameters on a session of its own, made now.
///
/// A run that republishes a date while the session is made or the statement reads removes
/// files the session listed: the statement may then fail, or answer without that date. So the
/// manifests' versions are taken before and after ([`ManifestVersions`], one listing each), and
/// when a date the session saw was republished in between, the statement runs once more on a
/// new session, which reads the new run's files. Republished again during that one: exit 2.
/// What a session left out is told only for the session that answers ([`LeftOut`]).
pub async fn statement(
    config: &Config,
    sql: &str,
    params: &[(String, String)],
) -> Result<Vec<RecordBatch>> {
    let root = Location::parse(&config.output.root)?;
    for attempt in 1..=2 {
        let seen = ManifestVersions::of(&root).await?;
        let (answer, left_out) = match snapshot(config).await {
            Ok((ctx, left_out)) => (query(&ctx, sql, params).await, left_out),
            Err(e) => (Err(e), Vec::new()),
        };
        if !seen.replaced_in(&ManifestVersions::of(&root).await?) {
            left_out.iter().for_each(LeftOut::warn);
            return answer;
        }
        if attempt == 1 {
            tracing::info!(
                "a run republished a date while the statement read it: running it again on what is published now"
            );
        }
    }
    Err(Error::infra(
        "query",
        "runs republished dates while the statement read them, twice: run the statement again",
    ))
}

/// Plan and run one read-only statement with `$name` parameters on `ctx`.
pub async fn query(
    ctx: &SessionContext,
    sql: &str,
    params: &[(String, String)],
) -> Result<Vec<RecordBatch>> {
    let df = plan(ctx, sql, params).await?;
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

/// The plan of a read-only statement, its parameters bound.
async fn plan(
    ctx: &SessionContext,
    sql: &str,
    params: &[(String, String)],
) -> Result<datafusion::dataframe::DataFrame> {
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
    if params.is_empty() {
        return Ok(df);
    }
    let values: Vec<(&str, ScalarValue)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), ScalarValue::Utf8(Some(v.clone()))))
        .collect();
    df.with_param_values(values)
        .map_err(|e| Error::Config(format!("query parameters: {e}")))
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
