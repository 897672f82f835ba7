//! Prepare stage: runs `sql/prepare/*.sql` over the registered inputs and returns what the
//! later stages need for one training window: interaction weights, exclusions, popularity.
//!
//! The window of a run of date D is `[D - lookback_days + 1, D]`; evaluation also prepares
//! D-1's window (`[D - lookback_days, D - 1]`) to rebuild the popularity baseline of D-1.
//!
//! Nothing here holds the window's events: `window_events` and `events` are views, and the
//! window is aggregated a run of consecutive days at a time (`interactions.sql` over those
//! days' `events`, grouped by day), each day's (user, item) rows interned into a
//! [`WindowBuilder`] in date order as they arrive, which spills them to scratch files. A run
//! holds days whose files have at most [`ROWS_PER_QUERY`] rows together (their footers say how
//! many), or a single day: a small shop's whole window is one query, a large shop's day is one
//! query. Memory is per user (ids, counts, offsets) and per excluded pair, plus one run's
//! aggregate and, while the window is built, a bucket of 65,536 users' aggregates, whatever
//! the number of days or events.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use chrono::NaiveDate;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::config::{Config, ExclusionPolicy};
use crate::domain::{Catalog, Inputs, InvalidRows, Window, WindowBuilder, WindowData, dt};
use crate::error::{Context, Error, Result};
use crate::io::{mem_table, query, register, register_view, strings, utf8};

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

/// Behavior rows (by the files' footers, invalid rows included) one `interactions.sql` query
/// aggregates at most, unless a single day has more.
pub const ROWS_PER_QUERY: u64 = 1 << 18;

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
    register_view(
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

/// Interactions, exclusions and popularity of one window (needs `window_events`), over the
/// items of `catalog`; `inputs` says how many behavior rows each day has.
pub async fn prepare_window(
    ctx: &SessionContext,
    config: &Config,
    catalog: &Catalog,
    inputs: &Inputs,
    window: Window,
) -> Result<WindowData> {
    let policy = match config.exclusions.policy {
        ExclusionPolicy::SeenInWindow => "seen_in_window",
        ExclusionPolicy::AllowRepeats => "allow_repeats",
    };
    let cutoff = window.end_epoch() - 86400.0 * f64::from(config.exclusions.repeat_after_days);
    let item_row: HashMap<&str, u32> = catalog
        .ids
        .iter()
        .enumerate()
        .map(|(r, id)| (id.as_str(), r as u32))
        .collect();
    let mut builder = WindowBuilder::new(catalog.ids.clone());
    for days in window.chunks(&inputs.behavior_rows, ROWS_PER_QUERY) {
        let params = vec![
            ("first_dt", utf8(&dt(days.first))),
            ("last_dt", utf8(&dt(days.last))),
            ("end_epoch", ScalarValue::Float64(Some(window.end_epoch()))),
            (
                "half_life_days",
                ScalarValue::Float64(Some(config.window.half_life_days)),
            ),
        ];
        register_view(ctx, "events", EVENTS_SQL, params).await?;
        let params = vec![
            ("policy", utf8(policy)),
            ("repeat_cutoff_epoch", ScalarValue::Float64(Some(cutoff))),
        ];
        let run = query(ctx, "interactions", INTERACTIONS_SQL, params).await?;
        for b in in_date_order(run, days)? {
            // Ids are Utf8 by the read stage's schema; a cast keeps any engine spelling safe.
            let utf8_column = |c: usize| {
                arrow::compute::cast(b.column(c), &DataType::Utf8)
                    .map_err(|e| Error::Audit(format!("interactions: id column: {e}")))
            };
            let (users, items) = (utf8_column(0)?, utf8_column(1)?);
            let (users, items) = (users.as_string::<i32>(), items.as_string::<i32>());
            let n = b.column(2).as_primitive::<Int64Type>();
            let w = b.column(3).as_primitive::<Float64Type>();
            let excluded = b.column(4).as_boolean();
            for i in 0..b.num_rows() {
                let Some(&row) = item_row.get(items.value(i)) else {
                    return Err(Error::Audit(format!(
                        "item {} of a valid event is not in the catalog: this is a bug",
                        items.value(i)
                    )));
                };
                let user = users.value(i);
                builder.add(user, row, n.value(i), w.value(i), excluded.value(i));
            }
        }
    }
    builder.finish(&catalog.available)
}

/// A run's aggregate (`interactions.sql` over `days`) in date order, so that each (user, item)
/// pair's days reach the [`WindowBuilder`] in the same order whatever order the engine returned
/// them in, and its weights sum the same way every run. A single day's needs no sort.
fn in_date_order(batches: Vec<RecordBatch>, days: Window) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first().filter(|_| days.first < days.last) else {
        return Ok(batches);
    };
    let all = arrow::compute::concat_batches(&first.schema(), &batches)
        .context("interactions: joining a run's days")?;
    let dt = all
        .column_by_name("dt")
        .ok_or_else(|| Error::Audit("interactions: no dt column".into()))?;
    let order = arrow::compute::sort_to_indices(dt, None, None)
        .context("interactions: ordering a run's days")?;
    let sorted = arrow::compute::take_record_batch(&all, &order)
        .context("interactions: ordering a run's days")?;
    Ok(vec![sorted])
}

fn window_params(window: Window) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("first_dt", utf8(&dt(window.first))),
        ("last_dt", utf8(&dt(window.last))),
    ]
}

#[cfg(test)]
mod tests {
    use arrow::array::{RecordBatch, TimestampMicrosecondArray};
    use arrow::datatypes::TimeUnit;

    use super::*;
    use crate::io::{Location, write_parquet};
    use crate::stages::read::{load_catalog, register_inputs};

    /// `days` of behavior under `root`: every day, 40 users each with a few events on 5 items
    /// at pseudo-random times, so most (user, item) pairs have events on many days.
    async fn write_behavior(root: &Location, first: NaiveDate, days: i64) {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for d in 0..days {
            let day = first + chrono::TimeDelta::days(d);
            let midnight = day
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros();
            let (mut users, mut items, mut types, mut ts) = (vec![], vec![], vec![], vec![]);
            for u in 0..40 {
                for _ in 0..1 + next() % 4 {
                    users.push(format!("U{u:02}"));
                    items.push(format!("I{:03}", 1 + next() % 5));
                    types.push(if next() % 3 == 0 { "purchase" } else { "view" });
                    ts.push(midnight + (next() % 86_400_000_000) as i64);
                }
            }
            let schema = Arc::new(Schema::new(vec![
                Field::new("user_id", DataType::Utf8, true),
                Field::new("item_id", DataType::Utf8, true),
                Field::new("event_type", DataType::Utf8, true),
                Field::new(
                    "ts",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    true,
                ),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(users)),
                    Arc::new(StringArray::from(items)),
                    Arc::new(StringArray::from(types)),
                    Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
                ],
            )
            .unwrap();
            let path = root.path(&format!("dt={}/part-0.parquet", dt(day)));
            write_parquet(&root.store, &path, schema, &[batch])
                .await
                .unwrap();
        }
    }

    /// The window is the same, bit for bit, whether its days are aggregated in one query or a
    /// query each: the days are merged in date order either way. A pair's weight sums one
    /// aggregate per day over up to 24 days, decayed over orders of magnitude, so an order
    /// other than the date order would change the last bits of some sums.
    #[tokio::test]
    async fn a_window_is_the_same_whatever_the_days_per_query() {
        let dir = tempfile::tempdir().unwrap();
        let window = Window {
            first: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            last: NaiveDate::from_ymd_opt(2024, 1, 24).unwrap(),
        };
        let root = dir.path().display();
        let behavior = Location::parse(&format!("{root}/behavior")).unwrap();
        write_behavior(&behavior, window.first, 24).await;
        let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tiny");
        for (policy, half_life) in [("seen_in_window", 14.0), ("allow_repeats", 1.9)] {
            let config = Config::from_parts(
                &format!(
                    "[input]\nbehavior = \"{root}/behavior\"\ncatalog = \"{tiny}/catalog\"\n\
                     [output]\nroot = \"{root}/out\"\n\
                     [exclusions]\npolicy = \"{policy}\"\nrepeat_after_days = 3\n\
                     [window]\nhalf_life_days = {half_life}\n\
                     [events.weights]\nview = 0.3\npurchase = 1.7\n"
                ),
                "t",
                &[],
                &[],
            )
            .unwrap();
            let ctx = crate::engine::context();
            let mut inputs = register_inputs(&ctx, &config, window.first, window.last)
                .await
                .unwrap();
            let catalog = load_catalog(&ctx, &config, &inputs).await.unwrap();
            register_window_events(&ctx, &config, window.first, window.last)
                .await
                .unwrap();

            assert_eq!(inputs.behavior_rows.len(), 24);
            assert_eq!(
                window.chunks(&inputs.behavior_rows, ROWS_PER_QUERY).len(),
                1
            );
            let one = prepare_window(&ctx, &config, &catalog, &inputs, window)
                .await
                .unwrap();
            for rows in inputs.behavior_rows.values_mut() {
                *rows = ROWS_PER_QUERY;
            }
            assert_eq!(
                window.chunks(&inputs.behavior_rows, ROWS_PER_QUERY).len(),
                24
            );
            let each = prepare_window(&ctx, &config, &catalog, &inputs, window)
                .await
                .unwrap();

            assert_eq!(one.len(), 40);
            assert_eq!(one.users, each.users);
            assert_eq!(one.user_events, each.user_events);
            assert_eq!(one.popularity, each.popularity);
            let (a, b) = (
                one.interactions(0..one.len()).unwrap(),
                each.interactions(0..each.len()).unwrap(),
            );
            let bits = |w: &[f64]| w.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let (mut excluded, mut several_days) = (0, 0);
            for u in 0..one.len() {
                let ((items_a, weights_a), (items_b, weights_b)) = (a.of(u), b.of(u));
                assert_eq!(items_a, items_b, "user {}", one.users[u]);
                assert_eq!(bits(weights_a), bits(weights_b), "user {}", one.users[u]);
                assert_eq!(a.days(u), b.days(u), "user {}", one.users[u]);
                assert_eq!(one.excluded(u), each.excluded(u), "user {}", one.users[u]);
                excluded += one.excluded(u).len();
                several_days += a.days(u).iter().filter(|&&d| d > 1).count();
            }
            assert!(excluded > 0, "{policy}");
            assert!(
                several_days > 0,
                "{policy}: pairs with events on several days"
            );
        }
    }
}
