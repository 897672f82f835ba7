//! Reading what was published, through the manifests: which dates are published and by which
//! run, and a date's recommendation lists (exactly the files its manifest lists, whatever else
//! a partition directory holds at the moment).

use std::collections::HashMap;

use arrow::array::RecordBatch;
use chrono::NaiveDate;

use super::manifest::{MANIFESTS, Manifest, read_manifest};
use crate::domain::{RankedList, dt, parse_date};
use crate::error::{Error, Result};
use crate::io::{Location, id_strings, int_values, read_parquet};

/// Published dates and their manifests, by date. Folders of `_manifests/` whose names are not
/// `dt=YYYY-MM-DD` are skipped and counted in a warning.
pub async fn published(root: &Location) -> Result<Vec<(NaiveDate, Manifest)>> {
    let manifests = root.child(MANIFESTS);
    let mut out = Vec::new();
    let mut malformed = Vec::new();
    for dir in manifests.list_dirs().await? {
        let Some(date) = dir.strip_prefix("dt=").and_then(|d| parse_date(d).ok()) else {
            malformed.push(dir);
            continue;
        };
        if let Some(m) = read_manifest(root, date).await? {
            out.push((date, m));
        }
    }
    if !malformed.is_empty() {
        tracing::warn!(count = malformed.len(), folders = ?malformed, under = %manifests.url(), "ignoring folders that are not dt=YYYY-MM-DD");
    }
    Ok(out)
}

/// Dates with a manifest under the output root.
pub async fn published_dates(root: &Location) -> Result<Vec<NaiveDate>> {
    Ok(published(root).await?.into_iter().map(|(d, _)| d).collect())
}

/// Every batch of the file `table` of a published manifest.
pub async fn published_batches(
    root: &Location,
    manifest: &Manifest,
    table: &str,
) -> Result<Vec<RecordBatch>> {
    let Some(file) = manifest.file(table) else {
        return Err(Error::Input(format!(
            "the manifest of dt={} lists no {table} file",
            manifest.dt
        )));
    };
    let Some(path) = root.object_path(&file.url) else {
        return Err(Error::Input(format!(
            "the manifest of dt={} lists {} outside {}",
            manifest.dt,
            file.url,
            root.url()
        )));
    };
    read_parquet(&root.store, &path)
        .await
        .map_err(|e| Error::infra(format!("reading {}", file.url), e))
}

/// The lists published for `date`, if it is published.
pub async fn published_lists(root: &Location, date: NaiveDate) -> Result<Option<Vec<RankedList>>> {
    let Some(manifest) = read_manifest(root, date).await? else {
        return Ok(None);
    };
    let batches = published_batches(root, &manifest, "recommendations").await?;
    let url = manifest
        .file("recommendations")
        .map_or("", |f| f.url.as_str());
    let what = |c: &str| {
        format!(
            "table recommendations, partition dt={}, file {url}, column {c}",
            dt(date)
        )
    };
    Ok(Some(lists_from_batches(&batches, &what)?))
}

/// Ranked lists from `recommendations` batches (`user_id, rank, item_id`).
fn lists_from_batches(
    batches: &[RecordBatch],
    what: &dyn Fn(&str) -> String,
) -> Result<Vec<RankedList>> {
    let mut by_user: HashMap<String, Vec<(i64, String)>> = HashMap::new();
    for b in batches {
        let column = |c: &str| {
            b.column_by_name(c)
                .ok_or_else(|| Error::Input(format!("{}: required column is missing", what(c))))
        };
        let users = id_strings(column("user_id")?.as_ref(), &what("user_id"))?;
        let items = id_strings(column("item_id")?.as_ref(), &what("item_id"))?;
        let ranks = int_values(column("rank")?.as_ref(), &what("rank"))?;
        for ((u, i), r) in users.into_iter().zip(items).zip(ranks) {
            by_user.entry(u).or_default().push((r, i));
        }
    }
    let mut lists: Vec<RankedList> = by_user
        .into_iter()
        .map(|(user_id, mut items)| {
            items.sort();
            RankedList {
                user_id,
                items: items.into_iter().map(|(_, i)| i).collect(),
            }
        })
        .collect();
    lists.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(lists)
}
