//! `recjob sql`'s `runs` table, one row per published date from its manifest (run id, the
//! catalog snapshot it used, configuration hash, code version, publication time), and the
//! `run_catalog` view over it (`sql/publish/run_catalog.sql`): each published date joined to its
//! catalog snapshot, so that a join with the catalog never repeats rows when the catalog holds
//! several snapshots.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;

use super::manifest::Manifest;
use crate::domain::{dt, parse_date};
use crate::error::{Context, Result};
use crate::io::mem_table;

const RUN_CATALOG_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/publish/run_catalog.sql"
));

/// Days since the Unix epoch, as Arrow's `Date32`.
fn days(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch")).num_days() as i32
}

/// Register `runs` from the published manifests and, when `catalog` is registered,
/// `run_catalog`. A manifest whose `catalog_dt` is not a date is left out with a warning.
pub(super) async fn register_runs(
    ctx: &SessionContext,
    runs: &[(NaiveDate, Manifest)],
) -> Result<()> {
    let runs: Vec<(&NaiveDate, &Manifest, NaiveDate)> = runs
        .iter()
        .filter_map(|(date, m)| match parse_date(&m.catalog_dt) {
            Ok(c) => Some((date, m, c)),
            Err(_) => {
                tracing::warn!(dt = %dt(*date), catalog_dt = m.catalog_dt, "manifest with an invalid catalog_dt: left out of runs");
                None
            }
        })
        .collect();
    let text = |f: &dyn Fn(&Manifest) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|(_, m, _)| f(m)),
        ))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("dt", DataType::Date32, false),
        Field::new("run_id", DataType::Utf8, false),
        Field::new("catalog_dt", DataType::Date32, false),
        Field::new("config_hash", DataType::Utf8, false),
        Field::new("code_version", DataType::Utf8, false),
        Field::new("published_at", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Date32Array::from_iter_values(
            runs.iter().map(|(d, ..)| days(**d)),
        )),
        text(&|m| &m.run_id),
        Arc::new(Date32Array::from_iter_values(
            runs.iter().map(|(.., c)| days(*c)),
        )),
        text(&|m| &m.config_hash),
        text(&|m| &m.code_version),
        text(&|m| &m.published_at),
    ];
    ctx.register_table("runs", Arc::new(mem_table(schema, columns)?))
        .context("registering runs")?;
    if ctx
        .table_exist("catalog")
        .context("registering run_catalog")?
    {
        let view = ctx
            .sql(RUN_CATALOG_SQL)
            .await
            .context("registering run_catalog")?;
        ctx.register_table("run_catalog", view.into_view())
            .context("registering run_catalog")?;
    }
    Ok(())
}
