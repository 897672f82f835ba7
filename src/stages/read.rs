//! Read stage: finds the input partitions of a run, checks every file's schema against the
//! data contract (ARCHITECTURE.md "Inputs") and registers the inputs with DataFusion.
//!
//! - `behavior` is a table over the Hive-partitioned root with `dt` as a partition column,
//!   pinned to the window's files: the footers of those files are read here to check their
//!   schemas, and queries read exactly those files (filtered on `dt`) without listing the
//!   root again.
//! - `catalog` is the newest catalog partition `<= D`, pinned to its checked files likewise.
//!
//! Every contract violation is an [`Error::Input`] naming table, partition, file and column.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::NaiveDate;
use datafusion::prelude::{SessionContext, col};
use object_store::ObjectMeta;

use crate::config::Config;
use crate::domain::{Catalog, InputFile, Inputs, Template, dt};
use crate::error::{Context, Error, Result};
use crate::io::{
    Columns, Kind, Location, from_datafusion, parquet_footer, partition_files, partitions,
    pinned_table, strings,
};

/// Is the behavior partition of `date` present (with at least one data file)?
pub async fn behavior_ready(config: &Config, date: NaiveDate) -> Result<bool> {
    let root = Location::parse(&config.input.behavior)?;
    Ok(!partition_files(&root, date).await?.is_empty())
}

/// Check the inputs of a run of `date` that reads behavior `[first, date]` and register
/// `behavior` (canonical column names, `dt` partition column) and `catalog`
/// (`item_id, <template columns>, category_segment, available`).
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
    let (mut files, metas, behavior_rows) =
        check_behavior(config, &behavior_root, first, date).await?;
    register_behavior(ctx, config, &behavior_root, metas).await?;
    let catalog = check_catalog(config, &catalog_root, date).await?;
    register_catalog(ctx, config, &catalog).await?;
    files.extend(catalog.files);
    Ok(Inputs {
        files,
        behavior_rows,
        catalog_dt: dt(catalog.date),
        text_columns: catalog.text_columns,
    })
}

/// The schema of every behavior file of `[first, date]` against the contract: the files,
/// as the manifest records them and as the store lists them, and the rows of each day.
async fn check_behavior(
    config: &Config,
    root: &Location,
    first: NaiveDate,
    date: NaiveDate,
) -> Result<(Vec<InputFile>, Vec<ObjectMeta>, BTreeMap<NaiveDate, u64>)> {
    let cols = &config.input.columns;
    let mut files = Vec::new();
    let mut metas = Vec::new();
    let mut rows = BTreeMap::new();
    let mut day = first;
    while day <= date {
        for meta in partition_files(root, day).await? {
            let (schema, n) = footer(root, &meta, "behavior", day).await?;
            *rows.entry(day).or_insert(0) += n as u64;
            let columns = Columns {
                schema: &schema,
                at: |column: &str| {
                    format!(
                        "table behavior, partition dt={}, file {}, column {column}",
                        dt(day),
                        root.object_url(&meta.location)
                    )
                },
            };
            columns.require(&cols.user_id, Kind::Id)?;
            columns.require(&cols.item_id, Kind::Id)?;
            columns.require(&cols.event_type, Kind::String)?;
            columns.require(&cols.ts, Kind::Timestamp)?;
            columns.optional(&cols.value, Kind::Numeric, "")?;
            files.push(InputFile {
                table: "behavior".into(),
                dt: dt(day),
                url: root.object_url(&meta.location),
                size_bytes: meta.size,
            });
            metas.push(meta);
        }
        day = day.succ_opt().expect("date in range: this is a bug");
    }
    Ok((files, metas, rows))
}

/// Register `behavior`: the checked `files` (and no others), their columns cast to the
/// contract's types, renamed to ours.
async fn register_behavior(
    ctx: &SessionContext,
    config: &Config,
    root: &Location,
    files: Vec<ObjectMeta>,
) -> Result<()> {
    let cols = &config.input.columns;
    let schema = Arc::new(Schema::new(vec![
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
    let table = pinned_table(ctx, root, Some(schema), Some(DataType::Utf8), files).await?;
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
    Ok(())
}

/// The catalog snapshot a run uses, as checked.
struct CatalogSnapshot {
    date: NaiveDate,
    dir: Location,
    files: Vec<InputFile>,
    /// The same files as the store lists them: the only ones `catalog` reads.
    metas: Vec<ObjectMeta>,
    /// Text columns the template reads that exist in the snapshot (`title` first).
    text_columns: Vec<String>,
    has_category: bool,
    has_available: bool,
}

/// Find the newest catalog partition `<= date` and check its files against the contract.
async fn check_catalog(
    config: &Config,
    root: &Location,
    date: NaiveDate,
) -> Result<CatalogSnapshot> {
    let dates = partitions(root).await?;
    let Some(snapshot) = dates.iter().rev().find(|d| **d <= date).copied() else {
        return Err(Error::Input(format!(
            "table catalog: no partition dt<={} under {}",
            dt(date),
            root.url()
        )));
    };
    let dir = root.child(&format!("dt={}", dt(snapshot)));
    let template = Template::parse(&config.text.template).map_err(Error::Config)?;
    let metas = partition_files(root, snapshot).await?;
    if metas.is_empty() {
        return Err(Error::Input(format!(
            "table catalog, partition dt={}: no data files under {}",
            dt(snapshot),
            dir.url()
        )));
    }
    let mut out = CatalogSnapshot {
        date: snapshot,
        dir,
        files: Vec::new(),
        metas: Vec::new(),
        text_columns: Vec::new(),
        has_category: false,
        has_available: false,
    };
    let mut rows = 0usize;
    for meta in &metas {
        let (schema, n) = footer(root, meta, "catalog", snapshot).await?;
        rows += n;
        let columns = Columns {
            schema: &schema,
            at: |column: &str| {
                format!(
                    "table catalog, partition dt={}, file {}, column {column}",
                    dt(snapshot),
                    root.object_url(&meta.location)
                )
            },
        };
        columns.require("item_id", Kind::Id)?;
        if schema.field_with_name("title").is_err() {
            columns.require("title", Kind::Text)?;
        }
        for column in template.columns() {
            if columns.optional(&column, Kind::Text, "text template column ")?
                && !out.text_columns.contains(&column)
            {
                out.text_columns.push(column);
            }
        }
        out.has_category |= columns.optional(
            &config.catalog.category_column,
            Kind::String,
            "the category column ",
        )?;
        out.has_available |=
            columns.optional(&config.catalog.available_column, Kind::Boolean, "")?;
        out.files.push(InputFile {
            table: "catalog".into(),
            dt: dt(snapshot),
            url: root.object_url(&meta.location),
            size_bytes: meta.size,
        });
    }
    out.metas = metas;
    if rows == 0 {
        return Err(Error::Input(format!(
            "table catalog, partition dt={}: the snapshot has no rows ({})",
            dt(snapshot),
            out.dir.url()
        )));
    }
    let absent: Vec<String> = template
        .columns()
        .into_iter()
        .filter(|c| c != "title" && !out.text_columns.contains(c))
        .collect();
    if !absent.is_empty() {
        tracing::warn!(catalog = %out.dir.url(), columns = ?absent, template = %config.text.template, "text template columns that no catalog file has: they render empty");
    }
    if !out.text_columns.iter().any(|c| c == "title") {
        out.text_columns.insert(0, "title".into());
    }
    Ok(out)
}

/// Register `catalog`: `item_id`, the text columns, `category_segment`, `available`.
async fn register_catalog(
    ctx: &SessionContext,
    config: &Config,
    snapshot: &CatalogSnapshot,
) -> Result<()> {
    let category_column = &config.catalog.category_column;
    let available_column = &config.catalog.available_column;
    let mut fields = vec![Field::new("item_id", DataType::Utf8, true)];
    fields.extend(
        snapshot
            .text_columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true)),
    );
    if snapshot.has_category && !snapshot.text_columns.contains(category_column) {
        fields.push(Field::new(category_column, DataType::Utf8, true));
    }
    if snapshot.has_available {
        fields.push(Field::new(available_column, DataType::Boolean, true));
    }
    let schema = Arc::new(Schema::new(fields));
    let files = snapshot.metas.clone();
    let table = pinned_table(ctx, &snapshot.dir, Some(schema), None, files).await?;
    ctx.register_table("catalog_files", Arc::new(table))
        .context("registering catalog")?;
    let available = if snapshot.has_available {
        format!("coalesce(\"{available_column}\", true)")
    } else {
        "true".to_string()
    };
    let select_text: String = snapshot
        .text_columns
        .iter()
        .map(|c| format!(", \"{c}\""))
        .collect();
    let category = if snapshot.has_category {
        format!("\"{category_column}\"")
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
    Ok(())
}

/// The Arrow schema and row count from a Parquet footer. An unreadable footer is bad input
/// when the object exists (a corrupt or non-Parquet file), infrastructure otherwise.
async fn footer(
    root: &Location,
    meta: &ObjectMeta,
    table: &str,
    date: NaiveDate,
) -> Result<(SchemaRef, usize)> {
    match parquet_footer(&root.store, meta).await {
        Ok(footer) => Ok(footer),
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

/// Load the registered `catalog`, render each item's text and check ids are present and unique.
pub async fn load_catalog(
    ctx: &SessionContext,
    config: &Config,
    inputs: &Inputs,
) -> Result<Catalog> {
    let template = Template::parse(&config.text.template).map_err(Error::Config)?;
    let batches = ctx
        .sql("SELECT * FROM catalog ORDER BY item_id")
        .await
        .context("reading catalog")?
        .collect()
        .await
        .map_err(|e| from_datafusion("table catalog", e))?;
    let at = format!("table catalog, partition dt={}", inputs.catalog_dt);
    let mut catalog = Catalog::default();
    let mut null_ids = 0usize;
    for b in &batches {
        let ids = b.column(0);
        let texts: Vec<Vec<String>> = (1..=inputs.text_columns.len())
            .map(|c| strings(b, c))
            .collect();
        let available = b.column(b.num_columns() - 1).as_boolean();
        let category = b.column(b.num_columns() - 2);
        let category_strings = strings(b, b.num_columns() - 2);
        let id_strings = strings(b, 0);
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
    // The snapshot's files, for the messages below (only made when one is).
    let files = || {
        let urls: Vec<&str> = inputs
            .files
            .iter()
            .filter(|f| f.table == "catalog")
            .map(|f| f.url.as_str())
            .collect();
        urls.join(", ")
    };
    if null_ids > 0 {
        return Err(Error::Input(format!(
            "{at} ({}), column item_id: {null_ids} rows have a null item_id",
            files()
        )));
    }
    let duplicates: Vec<&String> = catalog
        .ids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| &w[0])
        .collect();
    if !duplicates.is_empty() {
        return Err(Error::Input(format!(
            "{at} ({}), column item_id: {} duplicate ids, e.g. {:?}",
            files(),
            duplicates.len(),
            duplicates.iter().take(5).collect::<Vec<_>>()
        )));
    }
    if !catalog.available.iter().any(|a| *a) {
        return Err(Error::Input(format!(
            "{at} ({}), column {}: none of the {} items is available, so every list would be empty",
            files(),
            config.catalog.available_column,
            catalog.ids.len()
        )));
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Int64Type;

    use super::*;

    async fn behavior_rows(ctx: &SessionContext) -> Result<i64> {
        let batches = ctx
            .sql("SELECT count(*) FROM behavior WHERE dt >= '2024-01-01' AND dt <= '2024-01-03'")
            .await
            .context("counting")?
            .collect()
            .await
            .map_err(|e| from_datafusion("table behavior", e))?;
        Ok(batches[0].column(0).as_primitive::<Int64Type>().value(0))
    }

    /// The input scans read the files the read stage checked and no others: a corrupt file that
    /// lands in a window partition or the catalog snapshot afterwards is not listed, so not
    /// read, by this run's queries; a new session (the next run) checks it and fails on it.
    #[tokio::test]
    async fn input_scans_read_exactly_the_checked_files() {
        let dir = tempfile::tempdir().unwrap();
        for table in ["behavior", "catalog"] {
            let out = std::process::Command::new("cp")
                .arg("-r")
                .arg(format!(
                    "{}/fixtures/tiny/{table}",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(out.success());
        }
        let root = dir.path().display();
        let config = Config::from_parts(
            &format!(
                "[input]\nbehavior = \"{root}/behavior\"\ncatalog = \"{root}/catalog\"\n[output]\nroot = \"{root}/out\"\n"
            ),
            "t",
            &[],
            &[],
        )
        .unwrap();
        let (first, date) = (
            NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            NaiveDate::from_ymd_opt(2024, 1, 3).unwrap(),
        );
        let ctx = crate::engine::context();
        let inputs = register_inputs(&ctx, &config, first, date).await.unwrap();
        assert_eq!(
            inputs
                .files
                .iter()
                .filter(|f| f.table == "behavior")
                .count(),
            3
        );
        let before = behavior_rows(&ctx).await.unwrap();
        assert!(before > 0);

        for late in ["behavior/dt=2024-01-02", "catalog/dt=2024-01-01"] {
            std::fs::write(dir.path().join(late).join("late.parquet"), b"not parquet").unwrap();
        }
        assert_eq!(behavior_rows(&ctx).await.unwrap(), before);
        let catalog = load_catalog(&ctx, &config, &inputs).await.unwrap();
        assert!(!catalog.ids.is_empty());

        let next = crate::engine::context();
        let err = register_inputs(&next, &config, first, date)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Input(m) if m.contains("late.parquet")),
            "{err}"
        );
    }
}
