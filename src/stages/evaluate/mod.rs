//! Evaluate stage (README.md "Metrics"): the lists made for D-1 against the behavior of
//! day D, the popularity baseline of D-1 evaluated the same way, and the coverage and
//! distribution of D's own lists. Metric logic is SQL (`sql/evaluate/*.sql`); this module feeds
//! it the lists and turns its output into long-format [`MetricRow`]s, each with its definition
//! ([`definitions`]).

mod definitions;
mod distribution;
mod ranking;

use std::collections::{HashMap, HashSet};

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int32Type};
use chrono::{NaiveDate, TimeDelta};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

pub use definitions::{SEGMENT_ALL, SEGMENT_BASELINE, SEGMENT_NEW_USERS, SEGMENT_RETURNING_USERS};
use definitions::{SEGMENT_CATEGORY, SEGMENT_LIFT};
use distribution::ListSummary;
use ranking::{RANKING_METRICS, ranking_rows};

use crate::config::Config;
use crate::domain::{Catalog, Lists, MetricRow, PreviousLists, RankedList, Window, WindowData, dt};
use crate::error::Result;
use crate::io::{int_table, query, register, string_table, strings, utf8};

const TRUTH_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/evaluate/truth.sql"
));
const COVERAGE_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/evaluate/coverage.sql"
));
const USER_SEGMENTS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/evaluate/user_segments.sql"
));
const NEW_ITEMS_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/evaluate/new_items.sql"
));

/// D's own lists and the popularity baseline's lists for the same users, summarised one user
/// at a time (coverage and distribution metrics; no list is kept).
pub struct OwnLists {
    k: usize,
    model: ListSummary,
    baseline: ListSummary,
}

impl OwnLists {
    /// Nothing added yet; `window` is D's training window (popularity).
    pub fn new(config: &Config, window: &WindowData) -> OwnLists {
        let ks = config.metric_ks();
        OwnLists {
            k: config.topk.k,
            model: ListSummary::new(&window.popularity, &ks),
            baseline: ListSummary::new(&window.popularity, &ks),
        }
    }

    /// Add `user`'s list (item ids, rank order), and the baseline's list for the user: the
    /// popularity of D's training `window` minus the user's exclusions, first K.
    pub fn add<'s>(
        &mut self,
        window: &WindowData,
        user: &str,
        items: impl IntoIterator<Item = &'s str>,
    ) {
        self.model.add(items);
        let popular = window.popular(window.user(user), self.k);
        self.baseline.add(popular.map(|(i, _)| i.as_str()));
    }

    /// Add every list of `lists`.
    pub fn add_lists(&mut self, window: &WindowData, lists: &Lists) {
        for u in 0..lists.len() {
            self.add(window, &lists.users[u], lists.item_ids_of(u));
        }
    }
}

/// Everything evaluation needs besides the registered `window_events`.
pub struct EvalInput<'a> {
    /// The evaluated date D.
    pub date: NaiveDate,
    /// D's training window (active users, popularity of the distribution metrics).
    pub window: &'a WindowData,
    /// D-1's training window (popularity and exclusions of the baseline evaluated on D).
    pub previous_window: &'a WindowData,
    /// D's own lists and the baseline's, summarised.
    pub own: &'a OwnLists,
    /// The catalog snapshot of D (available items, categories).
    pub catalog: &'a Catalog,
    /// Ground truth of D ([`truth`]).
    pub truth: &'a [(String, String)],
    /// The lists made for D-1 (published, or in memory in a backtest) of the users in the
    /// ground truth; `None` when there are none.
    pub previous: Option<&'a PreviousLists>,
}

/// Evaluate run D. Needs `window_events` registered over D-1's and D's windows.
pub async fn evaluate(
    ctx: &SessionContext,
    config: &Config,
    input: EvalInput<'_>,
) -> Result<Vec<MetricRow>> {
    let ks = config.metric_ks();
    register(
        ctx,
        "ks",
        int_table("k", ks.iter().map(|k| *k as i32).collect())?,
    )?;
    let progress = crate::progress::Progress::new("evaluate", "steps", 4);
    let mut rows = own_list_rows(ctx, config, &input).await?;
    progress.inc(1);
    let truth = input.truth;
    let truth_users = truth_users(truth);
    let previous_date = input.date.pred_opt().expect("date in range");
    let previous = match (input.previous, truth_users.is_empty()) {
        (None, _) => {
            let why = format!(
                "not evaluated: no recommendations published for {}",
                dt(previous_date)
            );
            rows.extend(not_evaluated(&ks, &why));
            return Ok(rows);
        }
        (Some(_), true) => {
            let why = format!("not evaluated: no valid behavior on {}", dt(input.date));
            rows.extend(not_evaluated(&ks, &why));
            return Ok(rows);
        }
        (Some(previous), false) => previous,
    };

    // The model, and the baseline for the same evaluated users with D-1's popularity and
    // exclusions.
    let evaluated = &previous.lists;
    let max_k = ks.iter().copied().max().unwrap_or(1);
    let baseline = baseline_lists(evaluated, input.previous_window, max_k);
    for (segment, lists, n_listed) in [
        (SEGMENT_ALL, evaluated, previous.n_listed),
        (SEGMENT_BASELINE, &baseline, baseline.len()),
    ] {
        rows.extend(ranking_rows(config, lists, truth, segment, n_listed).await?);
        rows.push(ranking::row(
            config,
            "eval_user_coverage",
            None,
            Some(evaluated.len() as f64 / truth_users.len() as f64),
            segment,
            evaluated.len() as i64,
        ));
    }
    progress.inc(1);
    let previous_window = Window::ending(previous_date, config.window.lookback_days);
    rows.extend(user_segment_rows(ctx, config, previous_window, evaluated, truth).await?);
    progress.inc(1);
    rows.extend(category_rows(config, input.catalog, evaluated, truth).await?);
    progress.inc(1);
    let lifts = lift_rows(&rows, &ks);
    rows.extend(lifts);
    Ok(rows)
}

/// The users of a ground truth.
pub fn truth_users(truth: &[(String, String)]) -> HashSet<&str> {
    truth.iter().map(|(u, _)| u.as_str()).collect()
}

/// Parameters of the SQL over a window: its days and the first day of its "new" tail.
fn window_params(config: &Config, w: Window) -> Vec<(&'static str, ScalarValue)> {
    vec![
        ("first_dt", utf8(&dt(w.first))),
        ("last_dt", utf8(&dt(w.last))),
        (
            "new_since_dt",
            utf8(&dt(w.last
                - TimeDelta::days(
                    i64::from(config.evaluate.new_days.max(1)) - 1,
                ))),
        ),
    ]
}

/// Coverage, distribution and new-item share of D's own lists and of the baseline's.
async fn own_list_rows(
    ctx: &SessionContext,
    config: &Config,
    input: &EvalInput<'_>,
) -> Result<Vec<MetricRow>> {
    let row = |metric, k, value, segment: &str, n_users| {
        ranking::row(config, metric, k, value, segment, n_users)
    };
    let mut rows = Vec::new();
    let n_candidates = input.catalog.available.iter().filter(|a| **a).count();
    let n_active = input.window.len();
    let window = Window::ending(input.date, config.window.lookback_days);
    for (segment, summary) in [
        (SEGMENT_ALL, &input.own.model),
        (SEGMENT_BASELINE, &input.own.baseline),
    ] {
        summary.register(ctx, &input.window.popularity)?;
        let n = summary.lists() as i64;
        let params = vec![
            (
                "n_candidates",
                ScalarValue::Float64(Some(n_candidates.max(1) as f64)),
            ),
            (
                "n_active",
                ScalarValue::Float64(Some(n_active.max(1) as f64)),
            ),
        ];
        for b in query(ctx, "coverage", COVERAGE_SQL, params).await? {
            let k = b.column(0).as_primitive::<Int32Type>();
            let cat = b.column(1).as_primitive::<Float64Type>();
            let usr = b.column(2).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                let k = k.value(i);
                let (gini, novelty) = summary.distribution(k as usize);
                rows.push(row("gini", Some(k), gini, segment, n));
                rows.push(row("novelty", Some(k), novelty, segment, n));
                let coverage = Some(cat.value(i));
                rows.push(row("catalog_coverage", Some(k), coverage, segment, n));
                let users = Some(usr.value(i));
                rows.push(row(
                    "user_coverage",
                    Some(k),
                    users,
                    segment,
                    n_active as i64,
                ));
            }
        }
        let params = window_params(config, window);
        for b in query(ctx, "new_items", NEW_ITEMS_SQL, params).await? {
            let k = b.column(0).as_primitive::<Int32Type>();
            let share = b.column(1).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                let share = Some(share.value(i));
                rows.push(row("new_item_share", Some(k.value(i)), share, segment, n));
            }
        }
    }
    Ok(rows)
}

/// Ground truth of D, `(user_id, item_id)` sorted: D's events of the ground-truth types.
/// Needs `window_events` registered over D.
pub async fn truth(
    ctx: &SessionContext,
    config: &Config,
    date: NaiveDate,
) -> Result<Vec<(String, String)>> {
    let truth_types = config.events.ground_truth_types();
    register(ctx, "truth_types", string_table("event_type", truth_types)?)?;
    let params = vec![("dt", utf8(&dt(date)))];
    let mut truth: Vec<(String, String)> = query(ctx, "truth", TRUTH_SQL, params)
        .await?
        .iter()
        .flat_map(|b| strings(b, 0).into_iter().zip(strings(b, 1)))
        .collect();
    truth.sort();
    Ok(truth)
}

/// NULL ranking rows (and user coverage) of the model and the baseline, saying why.
fn not_evaluated(ks: &[usize], why: &str) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    for segment in [SEGMENT_ALL, SEGMENT_BASELINE] {
        for metric in RANKING_METRICS {
            for &k in ks {
                rows.push(MetricRow {
                    metric,
                    k: Some(k as i32),
                    value: None,
                    segment: segment.to_string(),
                    definition: why.to_string(),
                    n_users: 0,
                });
            }
        }
        rows.push(MetricRow {
            metric: "eval_user_coverage",
            k: None,
            value: None,
            segment: segment.to_string(),
            definition: why.to_string(),
            n_users: 0,
        });
    }
    rows
}

/// The popularity baseline's lists for the evaluated users: D-1's popularity minus each user's
/// D-1 exclusions, first `k`.
fn baseline_lists(evaluated: &[RankedList], previous: &WindowData, k: usize) -> Vec<RankedList> {
    evaluated
        .iter()
        .map(|l| RankedList {
            user_id: l.user_id.clone(),
            items: previous
                .popular(previous.user(&l.user_id), k)
                .map(|(i, _)| i.clone())
                .collect(),
        })
        .collect()
}

/// The model's ranking metrics for new and returning users of D-1's window (`previous`: the
/// lists of users with ground truth).
async fn user_segment_rows(
    ctx: &SessionContext,
    config: &Config,
    previous_window: Window,
    previous: &[RankedList],
    truth: &[(String, String)],
) -> Result<Vec<MetricRow>> {
    let params = window_params(config, previous_window);
    let user_segment: HashMap<String, String> =
        query(ctx, "user_segments", USER_SEGMENTS_SQL, params)
            .await?
            .iter()
            .flat_map(|b| strings(b, 0).into_iter().zip(strings(b, 1)))
            .collect();
    let mut rows = Vec::new();
    for segment in [SEGMENT_NEW_USERS, SEGMENT_RETURNING_USERS] {
        let lists: Vec<RankedList> = previous
            .iter()
            .filter(|l| user_segment.get(&l.user_id).map(String::as_str) == Some(segment))
            .cloned()
            .collect();
        if !lists.is_empty() {
            let n = lists.len();
            rows.extend(ranking_rows(config, &lists, truth, segment, n).await?);
        }
    }
    Ok(rows)
}

/// The model's ranking metrics per catalog category (the largest `evaluate.max_categories`),
/// G(u) restricted to the category.
async fn category_rows(
    config: &Config,
    catalog: &Catalog,
    previous: &[RankedList],
    truth: &[(String, String)],
) -> Result<Vec<MetricRow>> {
    let category_of: HashMap<&str, &str> = catalog
        .ids
        .iter()
        .zip(&catalog.categories)
        .filter_map(|(id, c)| Some((id.as_str(), c.as_deref()?)))
        .collect();
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for (c, a) in catalog.categories.iter().zip(&catalog.available) {
        if let (Some(c), true) = (c, a) {
            *sizes.entry(c.as_str()).or_default() += 1;
        }
    }
    let mut categories: Vec<(&str, usize)> = sizes.into_iter().collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut rows = Vec::new();
    for (category, _) in categories.into_iter().take(config.evaluate.max_categories) {
        let in_category: Vec<(String, String)> = truth
            .iter()
            .filter(|(_, i)| category_of.get(i.as_str()) == Some(&category))
            .cloned()
            .collect();
        if in_category.is_empty() {
            continue;
        }
        let segment = format!("{SEGMENT_CATEGORY}{category}");
        let n = previous.len();
        rows.extend(ranking_rows(config, previous, &in_category, &segment, n).await?);
    }
    Ok(rows)
}

/// Lift: the model's value over the baseline's, per ranking metric and K.
fn lift_rows(rows: &[MetricRow], ks: &[usize]) -> Vec<MetricRow> {
    let find = |m: &str, seg: &str, k: Option<i32>| {
        rows.iter()
            .find(|r| r.metric == m && r.segment == seg && r.k == k)
    };
    let mut lifts = Vec::new();
    for metric in RANKING_METRICS {
        for &k in ks {
            let k = Some(k as i32);
            let model = find(metric, SEGMENT_ALL, k);
            if let (Some(m), Some(b)) = (
                model.and_then(|r| r.value),
                find(metric, SEGMENT_BASELINE, k).and_then(|r| r.value),
            ) {
                lifts.push(MetricRow {
                    metric,
                    k,
                    value: (b > 0.0).then(|| m / b),
                    segment: SEGMENT_LIFT.to_string(),
                    definition: format!("{metric}@K of the model (segment all) / {metric}@K of the popularity baseline, same evaluated users; NULL when the baseline is 0"),
                    n_users: model.map_or(0, |r| r.n_users),
                });
            }
        }
    }
    lifts
}
