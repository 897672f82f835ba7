//! Read stage: finds the input partitions of a run, checks every file's schema against the
//! data contract (DESIGN.md "Inputs") and registers the inputs with DataFusion.
//!
//! - `behavior` is a listing table over the Hive-partitioned root with `dt` as a partition
//!   column; queries filter on `dt`, so only the window's partitions are listed and read. Only
//!   the footers of the window's files are read here, to check their schemas.
//! - `catalog` is the newest catalog partition `<= D`.
//!
//! Every contract violation is an [`Error::Input`] naming table, partition, file and column.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig};
use datafusion::prelude::{SessionContext, col};
use object_store::ObjectMeta;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use serde::Serialize;

use crate::config::Config;
use crate::error::{Context, Error, Result};
#[allow(deprecated)]
use crate::files::ParquetObjectReader;
use crate::storage::{Location, is_data_file};
use crate::text::Template;

/// One input file, as recorded in the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub table: &'static str,
    pub dt: String,
    pub url: String,
    pub size_bytes: u64,
}

#[derive(Debug)]
pub struct Inputs {
    pub files: Vec<InputFile>,
    /// The catalog partition the run uses.
    pub catalog_dt: String,
    /// Text columns the template reads that exist in the catalog.
    pub text_columns: Vec<String>,
    /// Rows in the catalog snapshot.
    pub catalog_rows: usize,
}

/// The `dt=YYYY-MM-DD` partitions of a table root, sorted by date.
pub async fn partitions(root: &Location) -> Result<Vec<NaiveDate>> {
    let mut dates: Vec<NaiveDate> = root
        .list_dirs()
        .await?
        .iter()
        .filter_map(|d| d.strip_prefix("dt="))
        .filter_map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .collect();
    dates.sort();
    Ok(dates)
}

pub fn dt(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Data files of one partition of a table.
async fn partition_files(root: &Location, date: NaiveDate) -> Result<Vec<ObjectMeta>> {
    let files = root.child(&format!("dt={}", dt(date))).list_files().await?;
    Ok(files.into_iter().filter(is_data_file).collect())
}

/// Is the behavior partition of `date` present (with at least one data file)?
pub async fn behavior_ready(config: &Config, date: NaiveDate) -> Result<bool> {
    let root = Location::parse(&config.input.behavior)?;
    Ok(!partition_files(&root, date).await?.is_empty())
}

/// Check the inputs of a run of `date` that reads behavior `[first, date]` and register
/// `behavior` (canonical column names, `dt` partition column) and `catalog`
/// (`item_id, title, <template columns>, available`).
pub async fn register_inputs(
    ctx: &SessionContext,
    config: &Config,
    first: NaiveDate,
    date: NaiveDate,
) -> Result<Inputs> {
    let behavior_root = Location::parse(&config.input.behavior)?;
    let catalog_root = Location::parse(&config.input.catalog)?;
    behavior_root.register(ctx);
    catalog_root.register(ctx);

    if partition_files(&behavior_root, date).await?.is_empty() {
        return Err(Error::NotReady(format!(
            "table behavior: partition dt={} has no data files under {}",
            dt(date),
            behavior_root.url()
        )));
    }

    let mut files = Vec::new();
    let cols = &config.input.columns;
    let mut date_i = first;
    while date_i <= date {
        for meta in partition_files(&behavior_root, date_i).await? {
            let schema = footer_schema(&behavior_root, &meta, "behavior", date_i).await?;
            let at = |column: &str| {
                format!(
                    "table behavior, partition dt={}, file {}, column {column}",
                    dt(date_i),
                    behavior_root.object_url(&meta.location)
                )
            };
            for (name, check, what) in [
                (
                    &cols.user_id,
                    is_id as fn(&DataType) -> bool,
                    "a string or integer",
                ),
                (&cols.item_id, is_id, "a string or integer"),
                (&cols.event_type, is_string, "a string"),
                (&cols.ts, is_timestamp, "a timestamp"),
            ] {
                match schema.field_with_name(name) {
                    Err(_) => {
                        return Err(Error::Input(format!(
                            "{}: required column is missing",
                            at(name)
                        )));
                    }
                    Ok(f) if !check(f.data_type()) => {
                        return Err(Error::Input(format!(
                            "{}: must be {what}, found {}",
                            at(name),
                            f.data_type()
                        )));
                    }
                    Ok(_) => {}
                }
            }
            if let Ok(f) = schema.field_with_name(&cols.value)
                && !f.data_type().is_numeric()
            {
                return Err(Error::Input(format!(
                    "{}: must be numeric, found {}",
                    at(&cols.value),
                    f.data_type()
                )));
            }
            files.push(InputFile {
                table: "behavior",
                dt: dt(date_i),
                url: behavior_root.object_url(&meta.location),
                size_bytes: meta.size,
            });
        }
        date_i = date_i.succ_opt().expect("date in range: this is a bug");
    }

    // behavior: the files' columns cast to the contract's types, then renamed to ours.
    let behavior_schema = Arc::new(Schema::new(vec![
        Field::new(&cols.user_id, DataType::Utf8, true),
        Field::new(&cols.item_id, DataType::Utf8, true),
        Field::new(&cols.event_type, DataType::Utf8, true),
        Field::new(
            &cols.ts,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(&cols.value, DataType::Float64, true),
    ]));
    let table = listing_table(&behavior_root, behavior_schema, true)?;
    ctx.register_table("behavior_files", Arc::new(table))
        .context("registering behavior")?;
    // SELECT "<user_id>" AS user_id, ..., dt FROM behavior_files
    let behavior = ctx
        .table("behavior_files")
        .await
        .context("reading behavior")?
        .select(vec![
            col(format!("\"{}\"", cols.user_id)).alias("user_id"),
            col(format!("\"{}\"", cols.item_id)).alias("item_id"),
            col(format!("\"{}\"", cols.event_type)).alias("event_type"),
            col(format!("\"{}\"", cols.ts)).alias("ts"),
            col(format!("\"{}\"", cols.value)).alias("value"),
            col("dt"),
        ])
        .context("reading behavior")?;
    ctx.register_table("behavior", behavior.into_view())
        .context("registering behavior")?;

    // catalog: the newest snapshot <= date.
    let catalog_dates = partitions(&catalog_root).await?;
    let Some(catalog_date) = catalog_dates.iter().rev().find(|d| **d <= date).copied() else {
        return Err(Error::Input(format!(
            "table catalog: no partition dt<={} under {}",
            dt(date),
            catalog_root.url()
        )));
    };
    let catalog_dir = catalog_root.child(&format!("dt={}", dt(catalog_date)));
    let template = Template::parse(&config.text.template).map_err(Error::Config)?;
    let mut text_columns: Vec<String> = Vec::new();
    let mut has_available = false;
    let mut has_category = false;
    let mut catalog_rows = 0usize;
    let catalog_files = partition_files(&catalog_root, catalog_date).await?;
    if catalog_files.is_empty() {
        return Err(Error::Input(format!(
            "table catalog, partition dt={}: no data files under {}",
            dt(catalog_date),
            catalog_dir.url()
        )));
    }
    for meta in &catalog_files {
        let (schema, rows) = footer(&catalog_root, meta, "catalog", catalog_date).await?;
        catalog_rows += rows;
        let at = |column: &str| {
            format!(
                "table catalog, partition dt={}, file {}, column {column}",
                dt(catalog_date),
                catalog_root.object_url(&meta.location)
            )
        };
        match schema.field_with_name("item_id") {
            Err(_) => {
                return Err(Error::Input(format!(
                    "{}: required column is missing",
                    at("item_id")
                )));
            }
            Ok(f) if !is_id(f.data_type()) => {
                return Err(Error::Input(format!(
                    "{}: must be a string or integer, found {}",
                    at("item_id"),
                    f.data_type()
                )));
            }
            Ok(_) => {}
        }
        if schema.field_with_name("title").is_err() {
            return Err(Error::Input(format!(
                "{}: required column is missing",
                at("title")
            )));
        }
        for column in template.columns() {
            if let Ok(f) = schema.field_with_name(&column) {
                if !(is_string(f.data_type()) || f.data_type().is_numeric()) {
                    return Err(Error::Input(format!(
                        "{}: text template column must be a string or number, found {}",
                        at(&column),
                        f.data_type()
                    )));
                }
                if !text_columns.contains(&column) {
                    text_columns.push(column);
                }
            }
        }
        if let Ok(f) = schema.field_with_name(&config.catalog.category_column) {
            if !is_string(f.data_type()) {
                return Err(Error::Input(format!(
                    "{}: the category column must be a string, found {}",
                    at(&config.catalog.category_column),
                    f.data_type()
                )));
            }
            has_category = true;
        }
        if let Ok(f) = schema.field_with_name(&config.catalog.available_column) {
            if f.data_type() != &DataType::Boolean {
                return Err(Error::Input(format!(
                    "{}: must be a boolean, found {}",
                    at(&config.catalog.available_column),
                    f.data_type()
                )));
            }
            has_available = true;
        }
        files.push(InputFile {
            table: "catalog",
            dt: dt(catalog_date),
            url: catalog_root.object_url(&meta.location),
            size_bytes: meta.size,
        });
    }
    if catalog_rows == 0 {
        return Err(Error::Input(format!(
            "table catalog, partition dt={}: the snapshot has no rows ({})",
            dt(catalog_date),
            catalog_dir.url()
        )));
    }
    if !text_columns.iter().any(|c| c == "title") {
        text_columns.insert(0, "title".into());
    }
    let mut fields = vec![Field::new("item_id", DataType::Utf8, true)];
    fields.extend(
        text_columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true)),
    );
    if has_category && !text_columns.contains(&config.catalog.category_column) {
        fields.push(Field::new(
            &config.catalog.category_column,
            DataType::Utf8,
            true,
        ));
    }
    if has_available {
        fields.push(Field::new(
            &config.catalog.available_column,
            DataType::Boolean,
            true,
        ));
    }
    let table = listing_table(&catalog_dir, Arc::new(Schema::new(fields)), false)?;
    ctx.register_table("catalog_files", Arc::new(table))
        .context("registering catalog")?;
    let available = if has_available {
        format!("coalesce(\"{}\", true)", config.catalog.available_column)
    } else {
        "true".to_string()
    };
    let select_text: String = text_columns.iter().map(|c| format!(", \"{c}\"")).collect();
    let category = if has_category {
        format!("\"{}\"", config.catalog.category_column)
    } else {
        "CAST(NULL AS VARCHAR)".to_string()
    };
    let catalog = ctx
        .sql(&format!(
            "SELECT item_id{select_text}, {category} AS category_segment, {available} AS available FROM catalog_files"
        ))
        .await
        .context("reading catalog")?;
    ctx.register_table("catalog", catalog.into_view())
        .context("registering catalog")?;

    Ok(Inputs {
        files,
        catalog_dt: dt(catalog_date),
        text_columns,
        catalog_rows,
    })
}

fn listing_table(root: &Location, schema: SchemaRef, partitioned: bool) -> Result<ListingTable> {
    let mut options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    if partitioned {
        options = options.with_table_partition_cols(vec![("dt".to_string(), DataType::Utf8)]);
    }
    let config = ListingTableConfig::new(root.listing_url()?)
        .with_listing_options(options)
        .with_schema(schema);
    ListingTable::try_new(config).context(format!("cannot open table at {}", root.url()))
}

async fn footer_schema(
    root: &Location,
    meta: &ObjectMeta,
    table: &str,
    date: NaiveDate,
) -> Result<SchemaRef> {
    Ok(footer(root, meta, table, date).await?.0)
}

/// The Arrow schema and row count from a Parquet footer. An unreadable footer is bad input
/// when the object exists (a corrupt or non-Parquet file), infrastructure otherwise.
async fn footer(
    root: &Location,
    meta: &ObjectMeta,
    table: &str,
    date: NaiveDate,
) -> Result<(SchemaRef, usize)> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(root.store.clone(), meta.location.clone())
        .with_file_size(meta.size);
    match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(builder) => {
            let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
            Ok((builder.schema().clone(), rows))
        }
        Err(parquet::errors::ParquetError::External(e)) => Err(Error::infra(
            format!("cannot read {}", root.object_url(&meta.location)),
            e,
        )),
        Err(e) => Err(Error::Input(format!(
            "table {table}, partition dt={}, file {}: not a readable Parquet file: {e}",
            dt(date),
            root.object_url(&meta.location)
        ))),
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_string(v))
}

fn is_id(t: &DataType) -> bool {
    is_string(t) || t.is_integer()
}

fn is_timestamp(t: &DataType) -> bool {
    matches!(t, DataType::Timestamp(_, _))
}

/// The catalog snapshot in memory: items sorted by id, with their rendered text.
#[derive(Debug, Default)]
pub struct Catalog {
    pub ids: Vec<String>,
    pub texts: Vec<String>,
    pub available: Vec<bool>,
    /// `catalog.category_column`, when the snapshot has it (else all `None`).
    pub categories: Vec<Option<String>>,
}

/// Load the registered `catalog`, render each item's text and check ids are present and unique.
pub async fn load_catalog(
    ctx: &SessionContext,
    config: &Config,
    inputs: &Inputs,
) -> Result<Catalog> {
    use arrow::array::{Array, AsArray};
    let template = Template::parse(&config.text.template).map_err(Error::Config)?;
    let batches = ctx
        .sql("SELECT * FROM catalog ORDER BY item_id")
        .await
        .context("reading catalog")?
        .collect()
        .await
        .map_err(|e| crate::prepare::from_datafusion("table catalog", e))?;
    let at = format!("table catalog, partition dt={}", inputs.catalog_dt);
    let mut catalog = Catalog::default();
    let mut null_ids = 0usize;
    for b in &batches {
        let ids = b.column(0);
        let texts: Vec<Vec<String>> = (1..=inputs.text_columns.len())
            .map(|c| crate::prepare::strings(b, c))
            .collect();
        let available = b.column(b.num_columns() - 1).as_boolean();
        let category = b.column(b.num_columns() - 2);
        let category_strings = crate::prepare::strings(b, b.num_columns() - 2);
        let id_strings = crate::prepare::strings(b, 0);
        for r in 0..b.num_rows() {
            if ids.is_null(r) {
                null_ids += 1;
                continue;
            }
            let text = template.render(|column| {
                inputs
                    .text_columns
                    .iter()
                    .position(|c| c == column)
                    .map(|c| texts[c][r].as_str())
            });
            catalog.ids.push(id_strings[r].clone());
            catalog.texts.push(text);
            catalog.available.push(available.value(r));
            catalog
                .categories
                .push((!category.is_null(r)).then(|| category_strings[r].clone()));
        }
    }
    if null_ids > 0 {
        return Err(Error::Input(format!(
            "{at}, column item_id: {null_ids} rows have a null item_id"
        )));
    }
    let duplicates: Vec<&String> = catalog
        .ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    if !duplicates.is_empty() {
        let files: Vec<&str> = inputs
            .files
            .iter()
            .filter(|f| f.table == "catalog")
            .map(|f| f.url.as_str())
            .collect();
        return Err(Error::Input(format!(
            "{at} ({}), column item_id: {} duplicate ids, e.g. {:?}",
            files.join(", "),
            duplicates.len(),
            duplicates.iter().take(5).collect::<Vec<_>>()
        )));
    }
    Ok(catalog)
}
