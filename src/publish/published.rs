//! Reading what was published, through the manifests: which dates are published and by which
//! run, and a date's recommendation lists, streamed one user at a time (exactly the files its manifest lists, whatever else
//! a partition directory holds at the moment).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use object_store::path::Path;

use super::manifest::{MANIFESTS, Manifest, read_manifest};
use crate::domain::{PreviousLists, RankedList, dt};
use crate::error::{Error, Result};
use crate::io::{Location, id_strings, int_values, parquet_stream, partition_date};

/// Published dates and their manifests, by date. Folders of `_manifests/` whose names are not
/// `dt=YYYY-MM-DD` are skipped and counted in a warning, and so is a manifest that does not
/// parse (its date reads as unpublished).
pub async fn published(root: &Location) -> Result<Vec<(NaiveDate, Manifest)>> {
    let manifests = root.child(MANIFESTS);
    let mut dates = Vec::new();
    let mut malformed = Vec::new();
    for dir in manifests.list_dirs().await? {
        match partition_date(&dir) {
            Some(date) => dates.push(date),
            None => malformed.push(dir),
        }
    }
    if !malformed.is_empty() {
        tracing::warn!(count = malformed.len(), folders = ?malformed, under = %manifests.url(), "ignoring folders that are not dt=YYYY-MM-DD");
    }
    // Several reads in flight: on an object store a long history is otherwise one round trip
    // per date.
    let mut reads = futures::stream::iter(dates)
        .map(|date| async move { (date, read_manifest(root, date).await) })
        .buffered(MANIFEST_READS);
    let mut out = Vec::new();
    while let Some((date, read)) = reads.next().await {
        match read {
            Ok(Some(m)) => out.push((date, m)),
            Ok(None) => {}
            // One broken manifest must not hide every other date from readers.
            Err(Error::Input(why)) => {
                tracing::warn!(dt = %dt(date), error = %why, "ignoring a manifest that is not valid: the date reads as unpublished until `recjob run --date D --force` republishes it");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// How many manifests [`published`] reads at once.
const MANIFEST_READS: usize = 16;

/// The manifests as they stand, from one listing of `_manifests/` (no manifest is read): each
/// date's `manifest.json` by its store version (e-tag, modification time, size). A run or an
/// evaluation that replaces a date's manifest changes its entry, so two of these taken around a
/// read say whether what the read saw was republished meanwhile.
#[derive(Debug, PartialEq, Eq)]
pub struct ManifestVersions(BTreeMap<Path, (Option<String>, DateTime<Utc>, u64)>);

impl ManifestVersions {
    /// Under `root` now.
    pub async fn of(root: &Location) -> Result<ManifestVersions> {
        let files = root.child(MANIFESTS).list_files().await?;
        Ok(ManifestVersions(
            files
                .into_iter()
                .filter(|m| {
                    let parts: Vec<_> = m.location.parts().collect();
                    matches!(parts.as_slice(), [.., folder, name]
                        if name.as_ref() == "manifest.json"
                            && partition_date(folder.as_ref()).is_some())
                })
                .map(|m| (m.location, (m.e_tag, m.last_modified, m.size)))
                .collect(),
        ))
    }

    /// Whether a manifest of `self` was replaced or removed by `now`. A date first published
    /// in between is not a change: a read that started before it did not see it.
    pub fn replaced_in(&self, now: &ManifestVersions) -> bool {
        self.0.iter().any(|(path, v)| now.0.get(path) != Some(v))
    }
}

/// Dates with a manifest under the output root.
pub async fn published_dates(root: &Location) -> Result<Vec<NaiveDate>> {
    Ok(published(root).await?.into_iter().map(|(d, _)| d).collect())
}

/// The object path of the file `table` of a published manifest, and its URL.
fn published_file(root: &Location, manifest: &Manifest, table: &str) -> Result<(Path, String)> {
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
    Ok((path, file.url.clone()))
}

/// Visit the lists published for `date` one user at a time, in file order (items in rank
/// order), reading the file batch by batch; `false` when the date is not published. A user's
/// rows are contiguous and in rank order in every file a run writes; a file where they are not
/// is bad input.
pub async fn visit_published_lists(
    root: &Location,
    date: NaiveDate,
    visit: &mut dyn FnMut(&str, &[String]),
) -> Result<bool> {
    let Some(manifest) = read_manifest(root, date).await? else {
        return Ok(false);
    };
    let (path, url) = published_file(root, &manifest, "recommendations")?;
    let what = |c: &str| {
        format!(
            "table recommendations, partition dt={}, file {url}, column {c}",
            dt(date)
        )
    };
    let mut stream = parquet_stream(&root.store, &path)
        .await
        .map_err(|e| Error::infra(format!("reading {url}"), e))?;
    let mut seen: HashSet<String> = HashSet::new();
    let (mut user, mut items, mut last_rank) = (String::new(), Vec::new(), 0);
    while let Some(b) = stream.next().await {
        let b = b.map_err(|e| Error::infra(format!("reading {url}"), e))?;
        let column = |c: &str| {
            b.column_by_name(c)
                .ok_or_else(|| Error::Input(format!("{}: required column is missing", what(c))))
        };
        let users = id_strings(column("user_id")?.as_ref(), &what("user_id"))?;
        let ids = id_strings(column("item_id")?.as_ref(), &what("item_id"))?;
        let ranks = int_values(column("rank")?.as_ref(), &what("rank"))?;
        for ((u, i), r) in users.into_iter().zip(ids).zip(ranks) {
            if u != user {
                if !items.is_empty() {
                    visit(&user, &items);
                }
                if !seen.insert(u.clone()) {
                    return Err(Error::Input(format!(
                        "{}: the rows of user {u} are not contiguous",
                        what("user_id")
                    )));
                }
                (user, last_rank) = (u, 0);
                items.clear();
            }
            if r <= last_rank {
                return Err(Error::Input(format!(
                    "{}: user {user}'s ranks are not increasing ({r} after {last_rank})",
                    what("rank")
                )));
            }
            last_rank = r;
            items.push(i);
        }
    }
    if !items.is_empty() {
        visit(&user, &items);
    }
    Ok(true)
}

/// The lists published for `date` that the evaluation of the next day reads: those of the users
/// in `keep`, and how many users had a list; `None` when `date` is not published.
pub async fn published_previous(
    root: &Location,
    date: NaiveDate,
    keep: &HashSet<&str>,
) -> Result<Option<PreviousLists>> {
    let mut previous = PreviousLists::default();
    let mut visit = |user: &str, items: &[String]| {
        previous.n_listed += 1;
        if keep.contains(user) {
            previous.lists.push(RankedList {
                user_id: user.to_string(),
                items: items.to_vec(),
            });
        }
    };
    if !visit_published_lists(root, date, &mut visit).await? {
        return Ok(None);
    }
    previous.lists.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(Some(previous))
}
