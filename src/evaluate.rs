//! Evaluation of run D (DESIGN.md "Evaluation"): the lists published for D-1 against the
//! behavior of day D, the popularity baseline of D-1 evaluated the same way, and coverage of
//! D's own lists. Metric logic is SQL (`sql/evaluate/*.sql`); this module feeds it the lists
//! and turns its output into long-format [`MetricRow`]s, each with its definition.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use chrono::NaiveDate;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::config::Config;
use crate::error::{Context, Result};
use crate::fallback::popular_list;
use crate::prepare::{WindowData, query, strings, utf8};
use crate::read::dt;

pub const TRUTH_SQL: &str = include_str!("../sql/evaluate/truth.sql");
pub const RANKING_SQL: &str = include_str!("../sql/evaluate/ranking.sql");
pub const COVERAGE_SQL: &str = include_str!("../sql/evaluate/coverage.sql");

pub const SEGMENT_ALL: &str = "all";
pub const SEGMENT_BASELINE: &str = "baseline_popular";
pub const SEGMENT_LIFT: &str = "lift_vs_baseline";
pub const SEGMENT_NEW_USERS: &str = "new_users";
pub const SEGMENT_RETURNING_USERS: &str = "returning_users";
/// Prefix of the per-category segments: `category=<value>`.
pub const SEGMENT_CATEGORY: &str = "category=";
pub const USER_SEGMENTS_SQL: &str = include_str!("../sql/evaluate/user_segments.sql");
pub const NEW_ITEMS_SQL: &str = include_str!("../sql/evaluate/new_items.sql");

/// One row of the `metrics` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub metric: &'static str,
    pub k: Option<i32>,
    pub value: Option<f64>,
    pub segment: String,
    pub definition: String,
    pub n_users: i64,
}

/// A user's ranked items (rank = position + 1).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedList {
    pub user_id: String,
    pub items: Vec<String>,
}

const TRUTH: &str = "G(u) = distinct items u interacted with on evaluated_dt";
const USERS: &str =
    "evaluated users = users with non-empty G(u) and a list published for evaluated_dt - 1";

fn definition(metric: &str, segment: &str, config: &Config) -> String {
    let users = match segment {
        SEGMENT_NEW_USERS => format!(
            "{USERS}, restricted to new users: first valid event in the training window of evaluated_dt - 1 within its last {} days",
            config.evaluate.new_days
        ),
        SEGMENT_RETURNING_USERS => format!(
            "{USERS}, restricted to returning users: a valid event in the training window of evaluated_dt - 1 before its last {} days",
            config.evaluate.new_days
        ),
        s if s.starts_with(SEGMENT_CATEGORY) => format!(
            "{USERS}; G(u) and hits restricted to items whose catalog {} is {:?} (evaluated users: non-empty restricted G(u))",
            config.catalog.category_column,
            &s[SEGMENT_CATEGORY.len()..]
        ),
        _ => USERS.to_string(),
    };
    let lists = if segment == SEGMENT_BASELINE {
        "lists: popularity of the training window of evaluated_dt - 1 (events per item, ties by item_id), minus each user's exclusions"
    } else {
        "lists: recommendations published for evaluated_dt - 1"
    };
    const SPARK: &str = "Spark RankingMetrics convention: mean over every user with a list for evaluated_dt - 1, a user with empty G(u) counting 0";
    let body = match metric {
        "recall" => {
            format!("mean over evaluated users of |R_K(u) ∩ G(u)| / |G(u)|; {TRUTH}; {users}")
        }
        "precision" => format!(
            "mean over evaluated users of |R_K(u) ∩ G(u)| / K (K, not list length); {TRUTH}; {users}"
        ),
        "ndcg" => format!(
            "mean over evaluated users of DCG/IDCG, binary gain, discount 1/log2(rank+1), IDCG over min(|G(u)|, K) hits; {TRUTH}; {users}"
        ),
        "mrr" => format!(
            "mean over evaluated users of 1/rank of the first hit within K, 0 if none; {TRUTH}; {users}"
        ),
        "hit_rate" => {
            format!("share of evaluated users with at least one hit within K; {TRUTH}; {users}")
        }
        "map" => format!(
            "mean over evaluated users of AP@K = (sum over hits within K of hits-so-far / rank) / min(|G(u)|, K); {TRUTH}; {users}"
        ),
        "spark_precision" => format!("{SPARK}: precisionAt(K) = |R_K(u) ∩ G(u)| / K; {TRUTH}"),
        "spark_recall" => format!("{SPARK}: recallAt(K) = |R_K(u) ∩ G(u)| / |G(u)|; {TRUTH}"),
        "spark_ndcg" => format!(
            "{SPARK}: ndcgAt(K), binary gain, discount 1/log2(rank+1), IDCG over min(|G(u)|, K); {TRUTH}"
        ),
        "spark_map" => {
            format!("{SPARK}: meanAveragePrecisionAt(K), AP@K divided by min(|G(u)|, K); {TRUTH}")
        }
        "eval_user_coverage" => {
            format!("evaluated users / users with non-empty G(u); {TRUTH}; {users}")
        }
        "new_item_share" => {
            return format!(
                "recommendations at rank <= K of new items / recommendations at rank <= K; new item: no valid event in the training window of dt before its last {} days; {}",
                config.evaluate.new_days,
                own_lists(segment)
            );
        }
        "catalog_coverage" => {
            return format!(
                "distinct items in any user's first K of this run's own lists (run date dt) / available items of the catalog snapshot; {}",
                own_lists(segment)
            );
        }
        "gini" => {
            return format!(
                "Gini index of how often each available item appears in users' first K of this run's own lists (items never recommended count as 0): 0 = every item equally often, 1 = one item only; {}",
                own_lists(segment)
            );
        }
        "novelty" => {
            return format!(
                "mean over recommendations at rank <= K of -log2 p(item), p = (events of the item in the window of dt + 1) / (events in the window + available items), log base 2; {}",
                own_lists(segment)
            );
        }
        "user_coverage" => {
            return format!(
                "users with at least K recommendations / active users (any valid event in the window of dt); {}",
                own_lists(segment)
            );
        }
        other => other.to_string(),
    };
    format!("{body}; {lists}")
}

/// Gini index and novelty of lists at K over the window's available items (see `definition`).
pub fn distribution(
    lists: &[RankedList],
    popularity: &[(String, i64)],
    k: usize,
) -> (Option<f64>, Option<f64>) {
    let mut counts: HashMap<&str, u64> = popularity.iter().map(|(i, _)| (i.as_str(), 0)).collect();
    let total_events: i64 = popularity.iter().map(|(_, n)| n).sum();
    let share: HashMap<&str, f64> = popularity
        .iter()
        .map(|(i, n)| {
            (
                i.as_str(),
                (*n as f64 + 1.0) / (total_events as f64 + popularity.len() as f64),
            )
        })
        .collect();
    let (mut surprisal, mut n_recs) = (0.0, 0usize);
    for l in lists {
        for item in l.items.iter().take(k) {
            if let Some(c) = counts.get_mut(item.as_str()) {
                *c += 1;
            }
            if let Some(p) = share.get(item.as_str()) {
                surprisal -= p.log2();
                n_recs += 1;
            }
        }
    }
    let mut x: Vec<u64> = counts.into_values().collect();
    x.sort_unstable();
    let n = x.len() as f64;
    let sum: f64 = x.iter().map(|v| *v as f64).sum();
    let gini = (sum > 0.0).then(|| {
        x.iter()
            .enumerate()
            .map(|(i, v)| (2.0 * (i as f64 + 1.0) - n - 1.0) * *v as f64)
            .sum::<f64>()
            / (n * sum)
    });
    (gini, (n_recs > 0).then(|| surprisal / n_recs as f64))
}

fn own_lists(segment: &str) -> &'static str {
    if segment == SEGMENT_BASELINE {
        "lists: popularity of the window of dt minus each user's exclusions, for every active user"
    } else {
        "lists: this run's recommendations (personal and fallback)"
    }
}

/// The ranking metrics, in the column order of `sql/evaluate/ranking.sql`.
const RANKING_METRICS: [&str; 6] = ["recall", "precision", "ndcg", "mrr", "hit_rate", "map"];
/// Spark RankingMetrics' names of ranking metrics whose value only differs by the users averaged.
const SPARK_METRICS: [(&str, &str); 4] = [
    ("recall", "spark_recall"),
    ("precision", "spark_precision"),
    ("ndcg", "spark_ndcg"),
    ("map", "spark_map"),
];

/// Everything evaluation needs besides the registered `window_events`.
pub struct EvalInput<'a> {
    pub date: NaiveDate,
    /// D's training window (popularity of the distribution metrics).
    pub window: &'a WindowData,
    /// D's own lists, and the baseline's lists for D's active users.
    pub own: &'a [RankedList],
    pub own_baseline: &'a [RankedList],
    /// The catalog snapshot of D (available items, categories).
    pub catalog: &'a crate::read::Catalog,
    pub n_active: usize,
    /// The lists made for D-1 (published, or in memory in a backtest); `None` when there are none.
    pub previous: Option<&'a [RankedList]>,
}

/// Evaluate run D. Needs `window_events` registered over D-1's and D's windows; prepares D-1's
/// window for the baseline.
pub async fn evaluate(
    ctx: &SessionContext,
    config: &Config,
    input: EvalInput<'_>,
) -> Result<Vec<MetricRow>> {
    let ks = config.metric_ks();
    let max_k = ks.iter().copied().max().unwrap_or(1);
    register(
        ctx,
        "ks",
        int_table("k", ks.iter().map(|k| *k as i32).collect()),
    )?;
    let row =
        |metric, k, value, segment: &str, n_users| row(config, metric, k, value, segment, n_users);
    let mut rows = Vec::new();
    let n_candidates = input.catalog.available.iter().filter(|a| **a).count();

    // Distribution metrics of D's own lists.
    let window = crate::prepare::Window::ending(input.date, config.window.lookback_days);
    let window_params = |w: crate::prepare::Window| {
        vec![
            ("first_dt", utf8(&dt(w.first))),
            ("last_dt", utf8(&dt(w.last))),
            (
                "new_since_dt",
                utf8(&dt(w.last
                    - chrono::TimeDelta::days(
                        i64::from(config.evaluate.new_days.max(1)) - 1,
                    ))),
            ),
        ]
    };
    for (segment, lists) in [
        (SEGMENT_ALL, input.own),
        (SEGMENT_BASELINE, input.own_baseline),
    ] {
        register(ctx, "recs", lists_table(lists))?;
        let params = vec![
            (
                "n_candidates",
                ScalarValue::Float64(Some(n_candidates.max(1) as f64)),
            ),
            (
                "n_active",
                ScalarValue::Float64(Some(input.n_active.max(1) as f64)),
            ),
        ];
        for b in query(ctx, "coverage", COVERAGE_SQL, params).await? {
            let k = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
            let cat = b.column(1).as_primitive::<Float64Type>();
            let usr = b.column(2).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                let (gini, novelty) =
                    distribution(lists, &input.window.popularity, k.value(i) as usize);
                let n = lists.len() as i64;
                rows.push(row("gini", Some(k.value(i)), gini, segment, n));
                rows.push(row("novelty", Some(k.value(i)), novelty, segment, n));
                rows.push(row(
                    "catalog_coverage",
                    Some(k.value(i)),
                    Some(cat.value(i)),
                    segment,
                    n,
                ));
                rows.push(row(
                    "user_coverage",
                    Some(k.value(i)),
                    Some(usr.value(i)),
                    segment,
                    input.n_active as i64,
                ));
            }
        }
        for b in query(ctx, "new_items", NEW_ITEMS_SQL, window_params(window)).await? {
            let k = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
            let share = b.column(1).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                rows.push(row(
                    "new_item_share",
                    Some(k.value(i)),
                    Some(share.value(i)),
                    segment,
                    lists.len() as i64,
                ));
            }
        }
    }

    // Ground truth of D.
    let truth_types: Vec<&str> = config
        .events
        .truth_types
        .iter()
        .map(String::as_str)
        .collect();
    register(ctx, "truth_types", string_table("event_type", truth_types))?;
    let params = vec![
        ("dt", utf8(&dt(input.date))),
        (
            "all_types",
            ScalarValue::Boolean(Some(config.events.truth_types.is_empty())),
        ),
    ];
    let mut truth: Vec<(String, String)> = query(ctx, "truth", TRUTH_SQL, params)
        .await?
        .iter()
        .flat_map(|b| strings(b, 0).into_iter().zip(strings(b, 1)))
        .collect();
    truth.sort();
    let truth_users: HashSet<&str> = truth.iter().map(|(u, _)| u.as_str()).collect();

    let previous_date = input.date.pred_opt().expect("date in range");
    let previous = input.previous;
    let previous_window =
        crate::prepare::Window::ending(previous_date, config.window.lookback_days);
    let previous_data = crate::prepare::prepare_window(ctx, config, previous_window).await?;
    let reason = match (&previous, truth_users.is_empty()) {
        (None, _) => Some(format!(
            "not evaluated: no recommendations published for {}",
            dt(previous_date)
        )),
        (Some(_), true) => Some(format!(
            "not evaluated: no valid behavior on {}",
            dt(input.date)
        )),
        _ => None,
    };
    if let Some(reason) = reason {
        for segment in [SEGMENT_ALL, SEGMENT_BASELINE] {
            for metric in RANKING_METRICS {
                for &k in &ks {
                    rows.push(MetricRow {
                        metric,
                        k: Some(k as i32),
                        value: None,
                        segment: segment.to_string(),
                        definition: reason.clone(),
                        n_users: 0,
                    });
                }
            }
            rows.push(MetricRow {
                metric: "eval_user_coverage",
                k: None,
                value: None,
                segment: segment.to_string(),
                definition: reason.clone(),
                n_users: 0,
            });
        }
        return Ok(rows);
    }
    let previous = previous.expect("checked above");

    // The baseline for the same evaluated users, with D-1's popularity and exclusions.
    let evaluated: Vec<&RankedList> = previous
        .iter()
        .filter(|l| truth_users.contains(l.user_id.as_str()))
        .collect();
    let empty = Vec::new();
    let baseline: Vec<RankedList> = evaluated
        .iter()
        .map(|l| {
            let excluded = previous_data.exclusions.get(&l.user_id).unwrap_or(&empty);
            RankedList {
                user_id: l.user_id.clone(),
                items: popular_list(&previous_data.popularity, excluded, max_k)
                    .into_iter()
                    .map(|(i, _)| i.clone())
                    .collect(),
            }
        })
        .collect();
    let n_evaluated = evaluated.len();
    for (segment, lists) in [
        (SEGMENT_ALL, previous),
        (SEGMENT_BASELINE, baseline.as_slice()),
    ] {
        rows.extend(ranking_rows(config, lists, &truth, segment).await?);
        rows.push(row(
            "eval_user_coverage",
            None,
            Some(n_evaluated as f64 / truth_users.len() as f64),
            segment,
            n_evaluated as i64,
        ));
    }

    // The model's ranking metrics for new and returning users.
    let user_segment: HashMap<String, String> = query(
        ctx,
        "user_segments",
        USER_SEGMENTS_SQL,
        window_params(previous_window),
    )
    .await?
    .iter()
    .flat_map(|b| strings(b, 0).into_iter().zip(strings(b, 1)))
    .collect();
    for segment in [SEGMENT_NEW_USERS, SEGMENT_RETURNING_USERS] {
        let lists: Vec<RankedList> = previous
            .iter()
            .filter(|l| user_segment.get(&l.user_id).map(String::as_str) == Some(segment))
            .cloned()
            .collect();
        if lists
            .iter()
            .any(|l| truth_users.contains(l.user_id.as_str()))
        {
            rows.extend(ranking_rows(config, &lists, &truth, segment).await?);
        }
    }

    // ... and per catalog category (the largest evaluate.max_categories), G(u) restricted to it.
    let category_of: HashMap<&str, &str> = input
        .catalog
        .ids
        .iter()
        .zip(&input.catalog.categories)
        .filter_map(|(id, c)| Some((id.as_str(), c.as_deref()?)))
        .collect();
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for (c, a) in input
        .catalog
        .categories
        .iter()
        .zip(&input.catalog.available)
    {
        if let (Some(c), true) = (c, a) {
            *sizes.entry(c.as_str()).or_default() += 1;
        }
    }
    let mut categories: Vec<(&str, usize)> = sizes.into_iter().collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
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
        rows.extend(ranking_rows(config, previous, &in_category, &segment).await?);
    }

    // Lift: the model's value over the baseline's, per ranking metric and K.
    let value = |m: &str, seg: &str, k: Option<i32>| {
        rows.iter()
            .find(|r| r.metric == m && r.segment == seg && r.k == k)
            .and_then(|r| r.value)
    };
    let mut lifts = Vec::new();
    for metric in RANKING_METRICS {
        for &k in &ks {
            let k = Some(k as i32);
            if let (Some(m), Some(b)) = (
                value(metric, SEGMENT_ALL, k),
                value(metric, SEGMENT_BASELINE, k),
            ) {
                let n = rows
                    .iter()
                    .find(|r| r.metric == metric && r.segment == SEGMENT_ALL && r.k == k)
                    .map_or(0, |r| r.n_users);
                lifts.push(MetricRow {
                    metric,
                    k,
                    value: (b > 0.0).then(|| m / b),
                    segment: SEGMENT_LIFT.to_string(),
                    definition: format!("{metric}@K of the model (segment all) / {metric}@K of the popularity baseline, same evaluated users; NULL when the baseline is 0"),
                    n_users: n,
                });
            }
        }
    }
    rows.extend(lifts);
    Ok(rows)
}

/// Register `truth (user_id, item_id)`.
fn register_truth(ctx: &SessionContext, pairs: &[(String, String)]) -> Result<()> {
    let (users, items): (Vec<&str>, Vec<&str>) =
        pairs.iter().map(|(u, i)| (u.as_str(), i.as_str())).unzip();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(users)),
            Arc::new(StringArray::from(items)),
        ],
    )
    .context("truth")?;
    register(
        ctx,
        "truth",
        MemTable::try_new(schema, vec![vec![batch]]).context("truth")?,
    )
}

/// Ranking metrics (`sql/evaluate/ranking.sql`) of `lists` against `truth` (sorted), as rows of
/// `segment`; segment `all` also gets the Spark-convention rows. Runs in its own single-partition
/// context: means of fractions depend on the order they are summed in, and one partition fixes
/// it, so a rerun publishes the same bits.
async fn ranking_rows(
    config: &Config,
    lists: &[RankedList],
    truth: &[(String, String)],
    segment: &str,
) -> Result<Vec<MetricRow>> {
    let ctx = &SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(1),
    );
    let ks = config.metric_ks();
    register(
        ctx,
        "ks",
        int_table("k", ks.iter().map(|k| *k as i32).collect()),
    )?;
    register(
        ctx,
        "positions",
        int_table(
            "p",
            (1..=ks.iter().copied().max().unwrap_or(1) as i32).collect(),
        ),
    )?;
    register_truth(ctx, truth)?;
    register(ctx, "recs", lists_table(lists))?;
    let mut rows = Vec::new();
    for b in query(ctx, "ranking", RANKING_SQL, vec![]).await? {
        let k = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
        let n = b.column(1).as_primitive::<Int64Type>();
        let listed = b
            .column(2 + RANKING_METRICS.len())
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            for (c, metric) in RANKING_METRICS.iter().enumerate() {
                let v = b.column(2 + c).as_primitive::<Float64Type>().value(i);
                rows.push(row(
                    config,
                    metric,
                    Some(k.value(i)),
                    Some(v),
                    segment,
                    n.value(i),
                ));
                if segment != SEGMENT_ALL {
                    continue;
                }
                // Users with an empty G(u) add 0 to Spark's sums, so its mean over every
                // listed user is the canonical mean scaled by evaluated / listed users.
                if let Some((_, spark)) = SPARK_METRICS.iter().find(|(m, _)| m == metric) {
                    rows.push(row(
                        config,
                        spark,
                        Some(k.value(i)),
                        Some(v * n.value(i) as f64 / listed.value(i) as f64),
                        segment,
                        listed.value(i),
                    ));
                }
            }
        }
    }
    Ok(rows)
}

fn row(
    config: &Config,
    metric: &'static str,
    k: Option<i32>,
    value: Option<f64>,
    segment: &str,
    n_users: i64,
) -> MetricRow {
    MetricRow {
        metric,
        k,
        value,
        segment: segment.to_string(),
        definition: definition(metric, segment, config),
        n_users,
    }
}

fn register(ctx: &SessionContext, name: &str, table: MemTable) -> Result<()> {
    ctx.deregister_table(name)
        .context(format!("replacing {name}"))?;
    ctx.register_table(name, Arc::new(table))
        .context(format!("registering {name}"))?;
    Ok(())
}

fn int_table(column: &str, values: Vec<i32>) -> MemTable {
    let schema = Arc::new(Schema::new(vec![Field::new(
        column,
        DataType::Int32,
        false,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(values))])
        .expect("valid batch");
    MemTable::try_new(schema, vec![vec![batch]]).expect("valid table")
}

fn string_table(column: &str, values: Vec<&str>) -> MemTable {
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))])
        .expect("valid batch");
    MemTable::try_new(schema, vec![vec![batch]]).expect("valid table")
}

/// `recs (user_id, rank, item_id)` from ranked lists.
pub fn lists_table(lists: &[RankedList]) -> MemTable {
    let (mut users, mut ranks, mut items) = (Vec::new(), Vec::new(), Vec::new());
    for l in lists {
        for (r, item) in l.items.iter().enumerate() {
            users.push(l.user_id.as_str());
            ranks.push(r as i32 + 1);
            items.push(item.as_str());
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("item_id", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(users)),
            Arc::new(Int32Array::from(ranks)),
            Arc::new(StringArray::from(items)),
        ],
    )
    .expect("valid batch");
    MemTable::try_new(schema, vec![vec![batch]]).expect("valid table")
}

/// The lists published for `date`, if it is published.
pub async fn published_lists(
    root: &crate::storage::Location,
    date: NaiveDate,
) -> Result<Option<Vec<RankedList>>> {
    if !crate::commit::is_published(root, date).await? {
        return Ok(None);
    }
    let dir = root.child(&format!("recommendations/dt={}", dt(date)));
    let mut batches = Vec::new();
    for meta in dir
        .list_files()
        .await?
        .iter()
        .filter(|m| crate::storage::is_data_file(m))
    {
        batches.extend(
            crate::files::read_parquet(&dir.store, &meta.location)
                .await
                .map_err(|e| {
                    crate::error::Error::infra(
                        format!("reading {}", dir.object_url(&meta.location)),
                        e,
                    )
                })?,
        );
    }
    Ok(Some(lists_from_batches(&batches)))
}

/// Ranked lists from a `recommendations` batch set (`user_id, rank, item_id` columns).
pub fn lists_from_batches(batches: &[RecordBatch]) -> Vec<RankedList> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn list(user: &str, items: &[&str]) -> RankedList {
        RankedList {
            user_id: user.into(),
            items: items.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A hand-worked example of `sql/evaluate/ranking.sql`.
    ///
    /// A: list [x, y, z, w], truth {y, w, q}.  B: list [q, r, s, t], truth {s}.
    /// C: truth {x} but no list: not evaluated.
    /// K = 2: A hits y at rank 2: recall 1/3, precision 1/2, DCG 1/log2(3) = 0.6309298,
    ///        IDCG over min(3, 2) = 2 hits: 1 + 0.6309298, NDCG 0.3868528, MRR 1/2, hit 1.
    ///        B has no hit: all 0. Means: recall 1/6, precision 1/4, NDCG 0.1934264, MRR 1/4,
    ///        hit rate 1/2.
    /// K = 4: A hits y (2) and w (4): recall 2/3, precision 2/4, DCG 0.6309298 + 1/log2(5)
    ///        = 1.0616064, IDCG over 3 hits = 2.1309298, NDCG 0.4981910, MRR 1/2.
    ///        B hits s at 3: recall 1, precision 1/4, DCG 1/2, IDCG 1, NDCG 1/2, MRR 1/3.
    ///        Means: recall 5/6, precision 3/8, NDCG 0.4990955, MRR 5/12, hit rate 1.
    /// MAP (AP@K = sum over hits of hits-so-far / rank, / min(|G|, K)):
    ///   K = 2: A (1/2) / 2 = 1/4, B 0 -> 1/8.
    ///   K = 4: A (1/2 + 2/4) / 3 = 1/3, B (1/3) / 1 = 1/3 -> 1/3.
    #[tokio::test]
    async fn ranking_sql_reproduces_a_hand_worked_example() {
        let ctx = SessionContext::new();
        register(&ctx, "ks", int_table("k", vec![2, 4])).unwrap();
        register(&ctx, "positions", int_table("p", (1..=4).collect())).unwrap();
        register(
            &ctx,
            "recs",
            lists_table(&[
                list("A", &["x", "y", "z", "w"]),
                list("B", &["q", "r", "s", "t"]),
            ]),
        )
        .unwrap();
        register(
            &ctx,
            "truth",
            lists_table(&[
                list("A", &["y", "w", "q"]),
                list("B", &["s"]),
                list("C", &["x"]),
            ]),
        )
        .unwrap();
        let batches = query(&ctx, "ranking", RANKING_SQL, vec![]).await.unwrap();
        let b = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let want = [
            (2, [1.0 / 6.0, 0.25, 0.1934264, 0.25, 0.5, 0.125]),
            (4, [5.0 / 6.0, 0.375, 0.4990955, 5.0 / 12.0, 1.0, 1.0 / 3.0]),
        ];
        assert_eq!(b.num_rows(), 2);
        for (row, (k, values)) in want.iter().enumerate() {
            assert_eq!(
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .value(row),
                *k
            );
            assert_eq!(
                b.column(1).as_primitive::<Int64Type>().value(row),
                2,
                "C is not evaluated"
            );
            for (c, v) in values.iter().enumerate() {
                let got = b.column(2 + c).as_primitive::<Float64Type>().value(row);
                assert!(
                    (got - v).abs() < 1e-6,
                    "k={k} {}: {got} vs {v}",
                    RANKING_METRICS[c]
                );
            }
        }
    }
}

#[cfg(test)]
mod spark_tests {
    use super::*;

    /// The worked example of Spark's RankingMetrics documentation (mllib "Ranking systems"),
    /// through the same `ranking_rows` the job publishes with. Spark averages over every user
    /// with a list, the third user's empty ground truth counting 0:
    ///   precisionAt(1) = 1/3 = 0.333, precisionAt(3) = 1/3 = 0.333, precisionAt(5) = 4/15 = 0.267,
    ///   ndcgAt(3) = 0.333, ndcgAt(5) = 0.328, meanAveragePrecision (K = 10, whole lists) = 0.355.
    /// By hand, user 1 (labels 1..5) hits ranks 1, 3, 6, 9, 10: AP = (1 + 2/3 + 3/6 + 4/9 + 5/10)/5
    /// = 0.6222; user 2 (labels 1, 2, 3) hits ranks 2, 5, 7: AP = (1/2 + 2/5 + 3/7)/3 = 0.4429;
    /// MAP = (0.6222 + 0.4429 + 0)/3 = 0.3550.
    #[tokio::test]
    async fn spark_ranking_metrics_worked_example() {
        let config = crate::config::Config::from_parts(
            "[input]\nbehavior = \"b\"\ncatalog = \"c\"\n[output]\nroot = \"o\"\n",
            "t",
            &[],
            &["evaluate.ks=[1, 3, 5, 10]".into()],
        )
        .unwrap();
        let list = |u: &str, items: &[u32]| RankedList {
            user_id: u.into(),
            items: items.iter().map(|i| i.to_string()).collect(),
        };
        let lists = [
            list("1", &[1, 6, 2, 7, 8, 3, 9, 10, 4, 5]),
            list("2", &[4, 1, 5, 6, 2, 7, 3, 8, 9, 10]),
            list("3", &[1, 2, 3, 4, 5]),
        ];
        let truth: Vec<(String, String)> = [("1", 1..=5), ("2", 1..=3)]
            .into_iter()
            .flat_map(|(u, items)| items.map(move |i| (u.to_string(), i.to_string())))
            .collect();
        let rows = ranking_rows(&config, &lists, &truth, SEGMENT_ALL)
            .await
            .unwrap();
        let get = |metric: &str, k: i32| {
            rows.iter()
                .find(|r| r.metric == metric && r.k == Some(k))
                .unwrap_or_else(|| panic!("no {metric}@{k}"))
        };
        for (metric, k, want) in [
            ("spark_precision", 1, 0.333),
            ("spark_precision", 3, 0.333),
            ("spark_precision", 5, 0.267),
            ("spark_ndcg", 3, 0.333),
            ("spark_ndcg", 5, 0.328),
            ("spark_map", 10, 0.355),
        ] {
            let r = get(metric, k);
            // Spark's documentation prints three decimals (truncated: ndcgAt(5) is 0.32879).
            assert!(
                (r.value.unwrap() - want).abs() < 1e-3,
                "{metric}@{k} = {:?}, Spark says {want}",
                r.value
            );
            assert_eq!(r.n_users, 3, "Spark averages over every listed user");
        }
        // The canonical rows average over the two users with a non-empty G(u).
        assert!((get("precision", 1).value.unwrap() - 0.5).abs() < 1e-12);
        assert!((get("map", 10).value.unwrap() - 0.53254).abs() < 1e-4);
        assert_eq!(get("precision", 1).n_users, 2);
    }
}

#[cfg(test)]
mod distribution_tests {
    use super::*;

    /// Items a (9 events), b (0), c (0); lists at K=1: [a], [a] -> counts a=2, b=0, c=0.
    /// Gini over x = [0, 0, 2] (sorted): sum((2i - n - 1) x_i) / (n sum x) = (2*3 - 3 - 1) * 2 / (3 * 2) = 2/3.
    /// Novelty: p(a) = (9 + 1) / (9 + 3) = 5/6, -log2(5/6) = 0.2630344.
    #[test]
    fn gini_and_novelty_by_hand() {
        let pop = vec![
            ("a".to_string(), 9),
            ("b".to_string(), 0),
            ("c".to_string(), 0),
        ];
        let lists = vec![
            RankedList {
                user_id: "u".into(),
                items: vec!["a".into(), "b".into()],
            },
            RankedList {
                user_id: "v".into(),
                items: vec!["a".into(), "c".into()],
            },
        ];
        let (gini, novelty) = distribution(&lists, &pop, 1);
        assert!((gini.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((novelty.unwrap() - 0.2630344).abs() < 1e-6);
        // K=2: counts a=2, b=1, c=1 -> x = [1, 1, 2]: ((-2)*1 + 0*1 + 2*2) / (3*4) = 1/6.
        let (gini, _) = distribution(&lists, &pop, 2);
        assert!((gini.unwrap() - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(distribution(&[], &pop, 2), (None, None));
    }
}
