//! Reading what was published: the dates with a manifest, and a date's recommendation lists.

use std::collections::HashMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use chrono::NaiveDate;

use super::manifest::{MANIFESTS, is_published};
use crate::domain::{RankedList, dt};
use crate::error::{Error, Result};
use crate::io::{Location, is_data_file, read_parquet, strings};

/// Dates with a manifest under the output root.
pub async fn published_dates(root: &Location) -> Result<Vec<String>> {
    let manifests = root.child(MANIFESTS);
    let mut dates = Vec::new();
    for dir in manifests.list_dirs().await? {
        if let Some(date) = dir.strip_prefix("dt=")
            && root
                .exists(&manifests.path(&format!("{dir}/manifest.json")))
                .await?
        {
            dates.push(date.to_string());
        }
    }
    Ok(dates)
}

/// The lists published for `date`, if it is published.
pub async fn published_lists(root: &Location, date: NaiveDate) -> Result<Option<Vec<RankedList>>> {
    if !is_published(root, date).await? {
        return Ok(None);
    }
    let dir = root.child(&format!("recommendations/dt={}", dt(date)));
    let mut batches = Vec::new();
    for meta in dir.list_files().await?.iter().filter(|m| is_data_file(m)) {
        batches.extend(
            read_parquet(&dir.store, &meta.location)
                .await
                .map_err(|e| {
                    Error::infra(format!("reading {}", dir.object_url(&meta.location)), e)
                })?,
        );
    }
    Ok(Some(lists_from_batches(&batches)))
}

/// Ranked lists from a `recommendations` batch set (`user_id, rank, item_id` columns).
fn lists_from_batches(batches: &[RecordBatch]) -> Vec<RankedList> {
    let mut by_user: HashMap<String, Vec<(i32, String)>> = HashMap::new();
    for b in batches {
        let (Some(u), Some(r), Some(i)) = (
            b.column_by_name("user_id"),
            b.column_by_name("rank"),
            b.column_by_name("item_id"),
        ) else {
            continue;
        };
        let ub = RecordBatch::try_from_iter(vec![("u", u.clone()), ("i", i.clone())])
            .expect("same length");
        let (users, items) = (strings(&ub, 0), strings(&ub, 1));
        let ranks = arrow::compute::cast(r, &DataType::Int32).expect("integer rank");
        let ranks = ranks.as_primitive::<arrow::datatypes::Int32Type>();
        for j in 0..b.num_rows() {
            if !ranks.is_null(j) {
                by_user
                    .entry(users[j].clone())
                    .or_default()
                    .push((ranks.value(j), items[j].clone()));
            }
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
    lists
}
