//! Prepare stage: runs `sql/prepare/*.sql` over the registered inputs and returns what the
//! later stages need for one training window: interaction weights, exclusions, popularity.
//!
//! The window of a run of date D is `[D - lookback_days + 1, D]`; evaluation also prepares
//! D-1's window (`[D - lookback_days, D - 1]`) to rebuild the popularity baseline of D-1.

use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::config::{Config, ExclusionPolicy};
use crate::domain::{Interaction, InvalidRows, Window, WindowData, dt};
use crate::error::{Error, Result};
use crate::io::{materialise, mem_table, query, register, strings, utf8};

const WINDOW_EVENTS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/prepare/window_events.sql"
));
const INVALID_ROWS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/prepare/invalid_rows.sql"
));
const EVENTS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/prepare/events.sql"
));
const INTERACTIONS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/prepare/interactions.sql"
));
const EXCLUSIONS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/prepare/exclusions.sql"
));
const POPULARITY_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/prepare/popularity.sql"
));

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
    let weights = mem_table(
        schema,
        vec![
            Arc::new(StringArray::from(types)),
            Arc::new(Float64Array::from(weights)),
        ],
    )?;
    register(ctx, "event_weights", weights)?;
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

/// What of a window [`prepare_window`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPart {
    /// Everything: interactions, active users, exclusions, popularity.
    All,
    /// What the popularity baseline needs: exclusions and popularity only.
    Baseline,
}

/// Interactions, exclusions and popularity of one window (needs `window_events`); with
/// [`WindowPart::Baseline`] only exclusions and popularity.
pub async fn prepare_window(
    ctx: &SessionContext,
    config: &Config,
    window: Window,
    part: WindowPart,
) -> Result<WindowData> {
    let mut params = window_params(window);
    params.push(("end_epoch", ScalarValue::Float64(Some(window.end_epoch()))));
    params.push((
        "half_life_days",
        ScalarValue::Float64(Some(config.window.half_life_days)),
    ));
    materialise(ctx, "events", EVENTS_SQL, params).await?;

    let mut data = WindowData::default();
    if part == WindowPart::Baseline {
        exclusions_and_popularity(ctx, config, window, &mut data).await?;
        return Ok(data);
    }
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
    exclusions_and_popularity(ctx, config, window, &mut data).await?;
    Ok(data)
}

/// The window's exclusions and popularity into `data` (needs `events`).
async fn exclusions_and_popularity(
    ctx: &SessionContext,
    config: &Config,
    window: Window,
    data: &mut WindowData,
) -> Result<()> {
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
    Ok(())
}

fn window_params(window: Window) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("first_dt", utf8(&dt(window.first))),
        ("last_dt", utf8(&dt(window.last))),
    ]
}
