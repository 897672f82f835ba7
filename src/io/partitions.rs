//! Hive partitions of a table root: `<root>/dt=YYYY-MM-DD/*.parquet`.

use chrono::NaiveDate;
use object_store::ObjectMeta;

use super::storage::Location;
use crate::domain::{dt, parse_date};
use crate::error::Result;

/// Data files of a table directory: Parquet objects whose names don't start with `_` or `.`.
pub fn is_data_file(meta: &ObjectMeta) -> bool {
    meta.location
        .filename()
        .is_some_and(|n| n.ends_with(".parquet") && !is_hidden(n))
}

/// The `dt=YYYY-MM-DD` partitions of a table root, sorted by date. Other folders are not
/// partitions: they are ignored, with a warning that counts them.
pub async fn partitions(root: &Location) -> Result<Vec<NaiveDate>> {
    let mut dates = Vec::new();
    let mut ignored = Vec::new();
    for d in root.list_dirs().await? {
        match d.strip_prefix("dt=").and_then(|v| parse_date(v).ok()) {
            Some(date) => dates.push(date),
            None => ignored.push(d),
        }
    }
    if !ignored.is_empty() {
        tracing::warn!(root = %root.url(), count = ignored.len(), folders = ?ignored, "ignoring folders that are not dt=YYYY-MM-DD partitions");
    }
    dates.sort();
    Ok(dates)
}

/// Data files of one partition of a table: the files directly in its folder. Sub-folders are
/// not read: hidden ones (`_temporary/` of a write in progress, `.` folders) silently, others
/// with a warning that names them.
pub async fn partition_files(root: &Location, date: NaiveDate) -> Result<Vec<ObjectMeta>> {
    let dir = root.child(&format!("dt={}", dt(date)));
    let (files, dirs) = dir.list_dir().await?;
    let ignored: Vec<&String> = dirs.iter().filter(|d| !is_hidden(d)).collect();
    if !ignored.is_empty() {
        tracing::warn!(partition = %dir.url(), folders = ?ignored, "ignoring sub-folders of a partition: only the files directly in it are read");
    }
    Ok(files.into_iter().filter(is_data_file).collect())
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}
