//! Hive partitions of a table root: `<root>/dt=YYYY-MM-DD/*.parquet`.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

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

/// The date of a partition folder's name, `dt=YYYY-MM-DD`; `None` for any other name.
pub fn partition_date(folder: &str) -> Option<NaiveDate> {
    folder.strip_prefix("dt=").and_then(|v| parse_date(v).ok())
}

/// The `dt=YYYY-MM-DD` partitions of a table root, sorted by date. Other folders are not
/// partitions: hidden ones (`_temporary/`, `.` folders) are skipped silently, the others with a
/// warning that counts them.
pub async fn partitions(root: &Location) -> Result<Vec<NaiveDate>> {
    let mut dates = Vec::new();
    let mut ignored = Vec::new();
    for d in root.list_dirs().await? {
        match partition_date(&d) {
            Some(date) => dates.push(date),
            None if is_hidden(&d) => {}
            None => ignored.push(d),
        }
    }
    if !ignored.is_empty() && first_time(&root.url()) {
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
    if !ignored.is_empty() && first_time(&dir.url()) {
        tracing::warn!(partition = %dir.url(), folders = ?ignored, "ignoring sub-folders of a partition: only the files directly in it are read");
    }
    Ok(files.into_iter().filter(is_data_file).collect())
}

/// Every data file of a partitioned table root, by the rules of [`partitions`] and
/// [`partition_files`] in one listing: the files directly in `dt=YYYY-MM-DD/` folders. Files
/// elsewhere (folders that are not partitions, sub-folders of a partition, files at the root)
/// are not the table's, and a warning names their folders (and the data files at the root).
pub async fn table_files(root: &Location) -> Result<Vec<ObjectMeta>> {
    let mut files = Vec::new();
    let mut ignored = BTreeSet::new();
    for meta in root.list_files().await? {
        let Some(rel) = meta.location.prefix_match(&root.prefix) else {
            continue;
        };
        let parts: Vec<String> = rel.map(|p| p.as_ref().to_string()).collect();
        let in_partition = match parts.as_slice() {
            [folder, _] => partition_date(folder).is_some(),
            _ => false,
        };
        if in_partition {
            if is_data_file(&meta) {
                files.push(meta);
            }
        } else if parts.len() == 1 {
            if is_data_file(&meta) {
                ignored.insert(parts[0].clone());
            }
        } else if !parts[..parts.len() - 1].iter().any(|p| is_hidden(p)) {
            ignored.insert(parts[..parts.len() - 1].join("/"));
        }
    }
    if !ignored.is_empty() && first_time(&format!("{} as a table", root.url())) {
        tracing::warn!(root = %root.url(), count = ignored.len(), folders = ?ignored, "ignoring files outside dt=YYYY-MM-DD partitions and in their sub-folders");
    }
    Ok(files)
}

/// Whether this process warns about `what` for the first time: a run lists a partition at
/// several stages, and says what it ignores once.
fn first_time(what: &str) -> bool {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    WARNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(what.to_string())
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}
