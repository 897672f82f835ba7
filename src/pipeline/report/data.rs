//! What a report shows, read from published data only: the manifests, the `metrics` table, and
//! for the report's date the published lists, vectors and inputs through `recjob sql`'s session
//! (the queries are `sql/report/*.sql`). Nothing here comes from a run's memory, so a report can
//! be rebuilt at any time (`recjob evaluate`, `recjob report`).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;

use crate::config::Config;
use crate::domain::dt;
use crate::error::{Error, Result};
use crate::io::Location;
use crate::publish::{Manifest, published, query};

/// (evaluated date, metric, segment, k) -> value, from the published metrics.
pub(super) type Series = BTreeMap<(String, String, String, Option<i32>), Option<f64>>;

/// Every published date's manifest and metrics: what trends and checks compare.
pub(super) struct History {
    /// Published dates, oldest first, with their manifests.
    pub manifests: Vec<(NaiveDate, Manifest)>,
    /// The published metrics.
    pub series: Series,
}

impl History {
    /// The metric value of `date` (`None`: absent or NULL).
    pub fn value(&self, date: &str, metric: &str, segment: &str, k: Option<i32>) -> Option<f64> {
        self.series
            .get(&(date.to_string(), metric.to_string(), segment.to_string(), k))
            .copied()
            .flatten()
    }

    /// The manifest of `date`.
    pub fn manifest(&self, date: NaiveDate) -> Option<&Manifest> {
        self.manifests
            .iter()
            .find(|(d, _)| *d == date)
            .map(|(_, m)| m)
    }

    /// The published date before `date`, if any.
    pub fn previous(&self, date: NaiveDate) -> Option<NaiveDate> {
        self.manifests.iter().map(|(d, _)| *d).rfind(|d| *d < date)
    }
}

/// Rows of one input partition a run read.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct InputRows {
    /// `behavior` or `catalog`.
    pub input: String,
    /// The partition.
    pub dt: String,
    /// Its rows (every row, invalid ones included).
    pub rows: u64,
}

/// One catalog item of the run's snapshot: its events in the window and its recommendations.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ItemCounts {
    /// Events in the run's training window (the catalog's popularity).
    pub events: u64,
    /// Users whose list has it.
    pub recs: u64,
}

/// Top-10 lists of a date against the previous published date.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct Changes {
    /// The previous published date.
    pub previous_dt: String,
    /// Users with a list on both dates.
    pub users_both: u64,
    /// Of those, users whose top 10 holds an item it did not hold before.
    pub users_changed_items: u64,
    /// Of those, users with a different item at some rank of the top 10.
    pub users_changed_order: u64,
    /// Users with a list today only.
    pub users_new: u64,
    /// Users with a list on the previous date only.
    pub users_gone: u64,
    /// Items in today's lists and in none of the previous date's: (item, title, users).
    pub entering: Vec<(String, String, u64)>,
    /// Items in the previous date's lists and in none of today's.
    pub leaving: Vec<(String, String, u64)>,
}

/// One sampled user's published list.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Sample {
    /// The user.
    pub user_id: String,
    /// `personal` or `popular`.
    pub source: String,
    /// The user's events in the window (`user_embeddings.n_events`; none for popular lists).
    pub n_events: Option<u64>,
    /// rank, item, title, score, repeat_score, neighbor_score.
    pub rows: Vec<(u64, String, String, f64, f64, f64)>,
}

/// What the report of one date reads beyond the history; each part is read on its own, and a
/// part that cannot be read (an input partition since deleted) says why instead.
pub(super) struct DateData {
    /// Rows per input partition.
    pub inputs: std::result::Result<Vec<InputRows>, String>,
    /// Per item of the run's catalog snapshot.
    pub items: std::result::Result<Vec<ItemCounts>, String>,
    /// Against the previous published date (`Ok(None)`: there is none).
    pub changes: std::result::Result<Option<Changes>, String>,
    /// A few users' lists.
    pub samples: std::result::Result<Vec<Sample>, String>,
}

const METRICS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/report/metrics.sql"
));
const INPUT_ROWS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/report/input_rows.sql"
));
const ITEMS_SQL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/report/items.sql"));
const USER_CHANGES_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/report/user_changes.sql"
));
const ITEM_CHANGES_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/report/item_changes.sql"
));
const SAMPLES_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/report/samples.sql"
));

/// Every published manifest and the published metrics.
pub(super) async fn history(ctx: &SessionContext, root: &Location) -> Result<History> {
    let mut manifests = published(root).await?;
    manifests.sort_by_key(|(d, _)| *d);
    let mut series = Series::new();
    if ctx.table_exist("metrics").unwrap_or(false) {
        for b in query(ctx, METRICS_SQL, &[]).await? {
            let (d, m, s) = (texts(&b, "d"), texts(&b, "metric"), texts(&b, "segment"));
            let (k, v) = (numbers(&b, "k"), numbers(&b, "value"));
            for r in 0..b.num_rows() {
                let key = (
                    d[r].clone(),
                    m[r].clone(),
                    s[r].clone(),
                    k[r].map(|k| k as i32),
                );
                series.insert(key, v[r]);
            }
        }
    }
    Ok(History { manifests, series })
}

/// The per-date parts of the report of `date`.
pub(super) async fn date_data(
    ctx: &SessionContext,
    config: &Config,
    history: &History,
    date: NaiveDate,
) -> Result<DateData> {
    let manifest = history
        .manifest(date)
        .ok_or_else(|| Error::Input(format!("dt={} is not published", dt(date))))?;
    let day = dt(date);
    let changes = match history.previous(date) {
        Some(previous) => shown(changes(ctx, &day, &dt(previous)).await.map(Some)),
        None => Ok(None),
    };
    Ok(DateData {
        inputs: shown(input_rows(ctx, manifest).await),
        items: shown(items(ctx, config, manifest).await),
        changes,
        samples: shown(samples(ctx, &day).await),
    })
}

/// A part of the report, or why it could not be read.
fn shown<T>(r: Result<T>) -> std::result::Result<T, String> {
    r.map_err(|e| format!("{e:#}"))
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Rows of every input partition the manifest lists.
async fn input_rows(ctx: &SessionContext, m: &Manifest) -> Result<Vec<InputRows>> {
    let behavior: Vec<&str> = m
        .inputs
        .iter()
        .filter(|f| f.table == "behavior")
        .map(|f| f.dt.as_str())
        .collect();
    let (Some(&first), Some(&last)) = (behavior.iter().min(), behavior.iter().max()) else {
        return Ok(Vec::new());
    };
    let p = params(&[
        ("first_dt", first),
        ("last_dt", last),
        ("catalog_dt", m.catalog_dt.as_str()),
    ]);
    let mut out = Vec::new();
    for b in query(ctx, INPUT_ROWS_SQL, &p).await? {
        let (input, d, rows) = (texts(&b, "input"), texts(&b, "dt"), numbers(&b, "n_rows"));
        for r in 0..b.num_rows() {
            out.push(InputRows {
                input: input[r].clone(),
                dt: d[r].clone(),
                rows: rows[r].unwrap_or(0.0) as u64,
            });
        }
    }
    Ok(out)
}

/// Events and recommendations per item of the run's catalog snapshot.
async fn items(ctx: &SessionContext, config: &Config, m: &Manifest) -> Result<Vec<ItemCounts>> {
    // The behavior item column is configuration: its quoted name replaces "item_id".
    let column = format!("\"{}\"", config.input.columns.item_id.replace('"', "\"\""));
    let sql = ITEMS_SQL.replace("\"item_id\"", &column);
    let p = params(&[
        ("dt", m.dt.as_str()),
        ("first_dt", m.window.first_dt.as_str()),
        ("last_dt", m.window.last_dt.as_str()),
    ]);
    let mut out = Vec::new();
    for b in query(ctx, &sql, &p).await? {
        let (events, recs) = (numbers(&b, "n_events"), numbers(&b, "n_recs"));
        for r in 0..b.num_rows() {
            out.push(ItemCounts {
                events: events[r].unwrap_or(0.0) as u64,
                recs: recs[r].unwrap_or(0.0) as u64,
            });
        }
    }
    Ok(out)
}

/// Top-10 lists and items of `day` against `previous`.
async fn changes(ctx: &SessionContext, day: &str, previous: &str) -> Result<Changes> {
    let p = params(&[("dt", day), ("previous_dt", previous)]);
    let mut c = Changes {
        previous_dt: previous.to_string(),
        ..Changes::default()
    };
    for b in query(ctx, USER_CHANGES_SQL, &p).await? {
        let n = |name: &str| numbers(&b, name).first().copied().flatten().unwrap_or(0.0) as u64;
        c.users_both = n("users_both");
        c.users_changed_items = n("users_changed_items");
        c.users_changed_order = n("users_changed_order");
        c.users_new = n("users_new");
        c.users_gone = n("users_gone");
    }
    for b in query(ctx, ITEM_CHANGES_SQL, &p).await? {
        let (item, title) = (texts(&b, "item_id"), texts(&b, "title"));
        let (today, before) = (numbers(&b, "n_today"), numbers(&b, "n_before"));
        for r in 0..b.num_rows() {
            let (t, y) = (
                today[r].unwrap_or(0.0) as u64,
                before[r].unwrap_or(0.0) as u64,
            );
            let row = (item[r].clone(), title[r].clone(), t.max(y));
            if y == 0 {
                c.entering.push(row);
            } else if t == 0 {
                c.leaving.push(row);
            }
        }
    }
    Ok(c)
}

/// A few users' lists of `day`, spread over the user ids, with titles and score components.
async fn samples(ctx: &SessionContext, day: &str) -> Result<Vec<Sample>> {
    let mut out: Vec<Sample> = Vec::new();
    for b in query(ctx, SAMPLES_SQL, &params(&[("dt", day)])).await? {
        let (user, source, item, title) = (
            texts(&b, "user_id"),
            texts(&b, "source"),
            texts(&b, "item_id"),
            texts(&b, "title"),
        );
        let (rank, score, events) = (
            numbers(&b, "rank"),
            numbers(&b, "score"),
            numbers(&b, "n_events"),
        );
        let (repeat, neighbor) = (numbers(&b, "repeat_score"), numbers(&b, "neighbor_score"));
        for r in 0..b.num_rows() {
            if out.last().is_none_or(|s| s.user_id != user[r]) {
                out.push(Sample {
                    user_id: user[r].clone(),
                    source: source[r].clone(),
                    n_events: events[r].map(|n| n as u64),
                    rows: Vec::new(),
                });
            }
            let row = (
                rank[r].unwrap_or(0.0) as u64,
                item[r].clone(),
                title[r].clone(),
                score[r].unwrap_or(f64::NAN),
                repeat[r].unwrap_or(0.0),
                neighbor[r].unwrap_or(0.0),
            );
            out.last_mut().expect("pushed above").rows.push(row);
        }
    }
    Ok(out)
}

/// A column as text, NULL as "".
fn texts(b: &RecordBatch, name: &str) -> Vec<String> {
    let Some(column) = b.column_by_name(name) else {
        return vec![String::new(); b.num_rows()];
    };
    let a = arrow::compute::cast(column, &DataType::Utf8).expect("any column casts to text");
    let a = a.as_string::<i32>();
    (0..a.len())
        .map(|i| {
            if a.is_null(i) {
                String::new()
            } else {
                a.value(i).to_string()
            }
        })
        .collect()
}

/// A numeric column as f64.
fn numbers(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let Some(column) = b.column_by_name(name) else {
        return vec![None; b.num_rows()];
    };
    let a = arrow::compute::cast(column, &DataType::Float64).expect("a numeric column");
    let a = a.as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i)))
        .collect()
}
