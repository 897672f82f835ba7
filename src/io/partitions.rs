//! Hive partitions of a table root: `<root>/dt=YYYY-MM-DD/*.parquet`.

use chrono::NaiveDate;
use object_store::ObjectMeta;

use super::storage::Location;
use crate::domain::dt;
use crate::error::Result;

/// Data files of a table directory: Parquet objects whose names don't start with `_` or `.`.
pub fn is_data_file(meta: &ObjectMeta) -> bool {
    meta.location
        .filename()
        .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('_') && !n.starts_with('.'))
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

/// Data files of one partition of a table.
pub async fn partition_files(root: &Location, date: NaiveDate) -> Result<Vec<ObjectMeta>> {
    let files = root.child(&format!("dt={}", dt(date))).list_files().await?;
    Ok(files.into_iter().filter(is_data_file).collect())
}
