//! Running SQL: statements from `sql/` with named `$parameters`, small in-memory tables,
//! Parquet listing tables, and the mapping of engine errors to the crate's error kinds.

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::cache::TableScopedPath;
use datafusion::execution::cache::cache_manager::CachedFileList;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use object_store::ObjectMeta;

use super::storage::Location;
use crate::error::{Context, Error, Result};

/// Run a SQL file with named parameters and collect the result. Parameters the statement does
/// not mention are ignored, so callers can pass one set to several files.
pub async fn query(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    params: Vec<(&str, ScalarValue)>,
) -> Result<Vec<RecordBatch>> {
    let df = bound(ctx, name, sql, params).await?;
    df.collect().await.map_err(|e| from_datafusion(name, e))
}

/// Register a SQL file, its parameters bound, as the view `name` (replacing a table of that
/// name): every query of the view re-reads its inputs, so nothing is held in memory.
pub async fn register_view(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    params: Vec<(&str, ScalarValue)>,
) -> Result<()> {
    let df = bound(ctx, name, sql, params).await?;
    ctx.deregister_table(name)
        .context(format!("replacing {name}"))?;
    ctx.register_table(name, df.into_view())
        .context(format!("registering {name}"))?;
    Ok(())
}

/// The plan of a SQL file with the parameters it mentions bound.
async fn bound(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    params: Vec<(&str, ScalarValue)>,
) -> Result<datafusion::dataframe::DataFrame> {
    let used: Vec<(&str, ScalarValue)> = params
        .into_iter()
        .filter(|(k, _)| sql.contains(&format!("${k}")))
        .collect();
    let df = ctx.sql(sql).await.context(format!("planning {name}"))?;
    if used.is_empty() {
        return Ok(df);
    }
    df.with_param_values(used)
        .context(format!("binding {name}"))
}

/// Register `table` under `name`, replacing a table of that name.
pub fn register(ctx: &SessionContext, name: &str, table: MemTable) -> Result<()> {
    ctx.deregister_table(name)
        .context(format!("replacing {name}"))?;
    ctx.register_table(name, Arc::new(table))
        .context(format!("registering {name}"))?;
    Ok(())
}

/// A one-batch in-memory table.
pub fn mem_table(schema: SchemaRef, columns: Vec<arrow::array::ArrayRef>) -> Result<MemTable> {
    let batch = RecordBatch::try_new(schema.clone(), columns).context("building a table")?;
    MemTable::try_new(schema, vec![vec![batch]]).context("building a table")
}

/// A one-column table of integers.
pub fn int_table(column: &str, values: Vec<i32>) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        column,
        DataType::Int32,
        false,
    )]));
    mem_table(schema, vec![Arc::new(Int32Array::from(values))])
}

/// A one-column table of strings.
pub fn string_table(column: &str, values: Vec<&str>) -> Result<MemTable> {
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]));
    mem_table(schema, vec![Arc::new(StringArray::from(values))])
}

/// A string parameter value.
pub fn utf8(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

/// A Parquet listing table over `root`: with `dt` as a partition column of type `dt_type`
/// when given, and with `schema` when given (else inferred from the files). Every scan lists
/// `root` afresh.
pub async fn listing_table(
    ctx: &SessionContext,
    root: &Location,
    schema: Option<SchemaRef>,
    dt_type: Option<DataType>,
) -> Result<ListingTable> {
    table_at(ctx, root, root.listing_url()?, schema, dt_type).await
}

/// A listing table like [`listing_table`] whose scans read exactly `files` (objects below
/// `root`) for the rest of the session: `root` is not listed again, and a file that appears
/// under it later is not read. Inputs a run has checked file by file are opened this way. The
/// session must be made from [`super::runtime_builder`].
pub async fn pinned_table(
    ctx: &SessionContext,
    root: &Location,
    schema: Option<SchemaRef>,
    dt_type: Option<DataType>,
    files: Vec<ObjectMeta>,
) -> Result<ListingTable> {
    let url = root
        .listing_url()?
        .with_table_ref(TableReference::bare(root.url()));
    let key = TableScopedPath {
        table: url.get_table_ref().clone(),
        path: url.prefix().clone(),
    };
    let listings = ctx.runtime_env().cache_manager.get_list_files_cache();
    let Some(listings) = listings else {
        return Err(Error::infra(
            format!("cannot pin the files of {}", root.url()),
            "the session keeps no listings (not made from io::runtime_builder): this is a bug",
        ));
    };
    listings.put(&key, CachedFileList::new(files));
    table_at(ctx, root, url, schema, dt_type).await
}

async fn table_at(
    ctx: &SessionContext,
    root: &Location,
    url: ListingTableUrl,
    schema: Option<SchemaRef>,
    dt_type: Option<DataType>,
) -> Result<ListingTable> {
    let mut options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if let Some(t) = dt_type {
        options = options.with_table_partition_cols(vec![("dt".to_string(), t)]);
    }
    let config = ListingTableConfig::new(url).with_listing_options(options);
    let config = match schema {
        Some(s) => config.with_schema(s),
        None => config
            .infer_schema(&ctx.state())
            .await
            .map_err(|e| from_datafusion(&format!("the schema of {}", root.url()), e))?,
    };
    ListingTable::try_new(config).context(format!("cannot open table at {}", root.url()))
}

/// Engine errors that carry our own input errors (raised while reading files) keep their kind.
pub fn from_datafusion(what: &str, e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        // Reading failed (storage), not decoding: a retry may help.
        D::ParquetError(p) if matches!(**p, parquet::errors::ParquetError::External(_)) => {
            Error::infra(format!("reading {what}"), e)
        }
        D::ObjectStore(_) | D::IoError(_) => Error::infra(format!("reading {what}"), e),
        D::ParquetError(p) => {
            Error::Input(format!("{what}: a Parquet file cannot be decoded: {p}"))
        }
        D::ArrowError(a, _)
            if matches!(
                **a,
                arrow::error::ArrowError::CastError(_) | arrow::error::ArrowError::ParseError(_)
            ) =>
        {
            Error::Input(format!(
                "{what}: a value does not fit the column's contract type: {a}"
            ))
        }
        _ => Error::infra(format!("executing {what}"), e),
    }
}
