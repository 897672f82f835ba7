//! Prepare stage: runs `sql/prepare/*.sql` over the registered inputs and returns what the
//! later stages need for one training window: interaction weights, exclusions, popularity.
//!
//! The window of a run of date D is `[D - lookback_days + 1, D]`; evaluation also prepares
//! D-1's window (`[D - lookback_days, D - 1]`) to rebuild the popularity baseline of D-1.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use chrono::{NaiveDate, TimeDelta};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::config::{Config, ExclusionPolicy};
use crate::error::{Context, Error, Result};
use crate::read::dt;

pub const WINDOW_EVENTS_SQL: &str = include_str!("../sql/prepare/window_events.sql");
pub const INVALID_ROWS_SQL: &str = include_str!("../sql/prepare/invalid_rows.sql");
pub const EVENTS_SQL: &str = include_str!("../sql/prepare/events.sql");
pub const INTERACTIONS_SQL: &str = include_str!("../sql/prepare/interactions.sql");
pub const EXCLUSIONS_SQL: &str = include_str!("../sql/prepare/exclusions.sql");
pub const POPULARITY_SQL: &str = include_str!("../sql/prepare/popularity.sql");

/// Inclusive range of behavior partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl Window {
    /// The training window of a run of `date`.
    pub fn ending(date: NaiveDate, lookback_days: u32) -> Window {
        Window {
            first: date - TimeDelta::days(i64::from(lookback_days) - 1),
            last: date,
        }
    }

    /// Seconds since the epoch at the end (exclusive) of the window's last day, UTC.
    pub fn end_epoch(&self) -> f64 {
        let end = self.last.succ_opt().expect("date in range: this is a bug");
        end.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp() as f64
    }
}

/// One user's weight on one item in a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub user_id: String,
    pub item_id: String,
    pub n_events: i64,
    pub weight: f64,
}

#[derive(Debug, Default)]
pub struct WindowData {
    pub interactions: Vec<Interaction>,
    /// Items each user must not be recommended.
    pub exclusions: HashMap<String, Vec<String>>,
    /// Available items, most popular first (ties: item_id), with their event counts.
    pub popularity: Vec<(String, i64)>,
    /// Valid (deduplicated) events per user: the active users of the window.
    pub user_events: HashMap<String, i64>,
}

impl WindowData {
    /// Users with any valid event in the window, sorted.
    pub fn active_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.user_events.keys().cloned().collect();
        users.sort();
        users
    }
}

/// Invalid rows by reason, and the total rows of the training window.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct InvalidRows {
    pub total_rows: u64,
    pub by_reason: std::collections::BTreeMap<String, u64>,
}

impl InvalidRows {
    pub fn invalid(&self) -> u64 {
        self.by_reason.values().sum()
    }
}

/// Run a SQL file with named parameters and collect the result.
pub async fn query(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    params: Vec<(&str, ScalarValue)>,
) -> Result<Vec<RecordBatch>> {
    let used: Vec<(&str, ScalarValue)> = params
        .into_iter()
        .filter(|(k, _)| sql.contains(&format!("${k}")))
        .collect();
    let df = ctx.sql(sql).await.context(format!("planning {name}"))?;
    let df = if used.is_empty() {
        df
    } else {
        df.with_param_values(used)
            .context(format!("binding {name}"))?
    };
    df.collect().await.map_err(|e| from_datafusion(name, e))
}

/// Run a SQL file and register its (materialised) result as a table.
async fn materialise(
    ctx: &SessionContext,
    table: &str,
    sql: &str,
    params: Vec<(&str, ScalarValue)>,
) -> Result<()> {
    let batches = query(ctx, table, sql, params).await?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => ctx
            .sql(sql)
            .await
            .context(format!("planning {table}"))?
            .schema()
            .inner()
            .clone(),
    };
    let mem = MemTable::try_new(schema, vec![batches]).context(format!("materialising {table}"))?;
    ctx.deregister_table(table)
        .context(format!("replacing {table}"))?;
    ctx.register_table(table, Arc::new(mem))
        .context(format!("registering {table}"))?;
    Ok(())
}

/// Engine errors that carry our own input errors (raised while reading files) keep their kind.
pub fn from_datafusion(what: &str, e: datafusion::error::DataFusionError) -> Error {
    use datafusion::error::DataFusionError as D;
    match e.find_root() {
        D::ParquetError(p) => Error::Input(format!(
            "{what}: a behavior or catalog file cannot be decoded: {p}"
        )),
        D::ArrowError(a, _)
            if matches!(
                **a,
                arrow::error::ArrowError::CastError(_) | arrow::error::ArrowError::ParseError(_)
            ) =>
        {
            Error::Input(format!(
                "{what}: a value does not fit the column's contract type: {a}"
            ))
        }
        _ => Error::infra(format!("executing {what}"), e),
    }
}

/// Register `window_events` over `[first, last]` (all windows of the run read these rows).
pub async fn register_window_events(
    ctx: &SessionContext,
    config: &Config,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<()> {
    let (types, weights): (Vec<&str>, Vec<f64>) = config
        .events
        .weights
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .unzip();
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_type", DataType::Utf8, false),
        Field::new("weight", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(types)),
            Arc::new(Float64Array::from(weights)),
        ],
    )
    .context("building event weights")?;
    let weights = MemTable::try_new(schema, vec![vec![batch]]).context("building event weights")?;
    ctx.deregister_table("event_weights")
        .context("event weights")?;
    ctx.register_table("event_weights", Arc::new(weights))
        .context("event weights")?;
    materialise(
        ctx,
        "window_events",
        WINDOW_EVENTS_SQL,
        vec![("first_dt", utf8(&dt(first))), ("last_dt", utf8(&dt(last)))],
    )
    .await
}

/// Count invalid rows of the training window; fail when they exceed the configured share.
pub async fn check_invalid_rows(
    ctx: &SessionContext,
    config: &Config,
    window: Window,
) -> Result<InvalidRows> {
    let batches = query(ctx, "invalid_rows", INVALID_ROWS_SQL, window_params(window)).await?;
    let mut out = InvalidRows::default();
    for b in &batches {
        let reasons = strings(b, 0);
        let counts = b.column(1).as_primitive::<Int64Type>();
        for (r, c) in reasons.iter().zip(counts.values()) {
            if r == "total" {
                out.total_rows += *c as u64;
            } else {
                *out.by_reason.entry(r.clone()).or_default() += *c as u64;
            }
        }
    }
    let invalid = out.invalid();
    if invalid > 0 {
        tracing::warn!(invalid, total = out.total_rows, by_reason = ?out.by_reason, "dropped invalid behavior rows");
    }
    if out.total_rows > 0
        && invalid as f64 > config.input.max_invalid_fraction * out.total_rows as f64
    {
        return Err(Error::Input(format!(
            "table behavior, partitions dt={}..{}: {invalid} of {} rows are invalid ({}), above input.max_invalid_fraction = {}",
            dt(window.first),
            dt(window.last),
            out.total_rows,
            out.by_reason
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            config.input.max_invalid_fraction
        )));
    }
    Ok(out)
}

/// Interactions, exclusions and popularity of one window (needs `window_events`).
pub async fn prepare_window(
    ctx: &SessionContext,
    config: &Config,
    window: Window,
) -> Result<WindowData> {
    let mut params = window_params(window);
    params.push(("end_epoch", ScalarValue::Float64(Some(window.end_epoch()))));
    params.push((
        "half_life_days",
        ScalarValue::Float64(Some(config.window.half_life_days)),
    ));
    materialise(ctx, "events", EVENTS_SQL, params).await?;

    let mut data = WindowData::default();
    for b in query(ctx, "interactions", INTERACTIONS_SQL, vec![]).await? {
        let (users, items) = (strings(&b, 0), strings(&b, 1));
        let n = b.column(2).as_primitive::<Int64Type>();
        let w = b.column(3).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            *data.user_events.entry(users[i].clone()).or_default() += n.value(i);
            data.interactions.push(Interaction {
                user_id: users[i].clone(),
                item_id: items[i].clone(),
                n_events: n.value(i),
                weight: w.value(i),
            });
        }
    }
    // Engine output order depends on partitioning: sort for determinism.
    data.interactions
        .sort_by(|a, b| (&a.user_id, &a.item_id).cmp(&(&b.user_id, &b.item_id)));

    let policy = match config.exclusions.policy {
        ExclusionPolicy::SeenInWindow => "seen_in_window",
        ExclusionPolicy::AllowRepeats => "allow_repeats",
    };
    let cutoff = window.end_epoch() - 86400.0 * f64::from(config.exclusions.repeat_after_days);
    let params = vec![
        ("policy", utf8(policy)),
        ("repeat_cutoff_epoch", ScalarValue::Float64(Some(cutoff))),
    ];
    for b in query(ctx, "exclusions", EXCLUSIONS_SQL, params).await? {
        for (u, i) in strings(&b, 0).into_iter().zip(strings(&b, 1)) {
            data.exclusions.entry(u).or_default().push(i);
        }
    }
    for items in data.exclusions.values_mut() {
        items.sort();
    }
    for b in query(ctx, "popularity", POPULARITY_SQL, vec![]).await? {
        let n = b.column(1).as_primitive::<Int64Type>();
        for (item, n) in strings(&b, 0).into_iter().zip(n.values()) {
            data.popularity.push((item, *n));
        }
    }
    data.popularity
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(data)
}

fn window_params(window: Window) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("first_dt", utf8(&dt(window.first))),
        ("last_dt", utf8(&dt(window.last))),
    ]
}

pub fn utf8(s: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(s.to_string()))
}

/// A string column of a batch as owned strings (nulls become empty strings).
pub fn strings(batch: &RecordBatch, column: usize) -> Vec<String> {
    let array = arrow::compute::cast(batch.column(column), &DataType::Utf8)
        .expect("string column: this is a bug");
    let array = array.as_string::<i32>();
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                String::new()
            } else {
                array.value(i).to_string()
            }
        })
        .collect()
}
