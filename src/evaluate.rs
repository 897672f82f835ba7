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

/// One row of the `metrics` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub metric: &'static str,
    pub k: Option<i32>,
    pub value: Option<f64>,
    pub segment: &'static str,
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

fn definition(metric: &str, segment: &str) -> String {
    let lists = if segment == SEGMENT_BASELINE {
        "lists: popularity of the training window of evaluated_dt - 1 (events per item, ties by item_id), minus each user's exclusions"
    } else {
        "lists: recommendations published for evaluated_dt - 1"
    };
    let body = match metric {
        "recall" => {
            format!("mean over evaluated users of |R_K(u) ∩ G(u)| / |G(u)|; {TRUTH}; {USERS}")
        }
        "precision" => format!(
            "mean over evaluated users of |R_K(u) ∩ G(u)| / K (K, not list length); {TRUTH}; {USERS}"
        ),
        "ndcg" => format!(
            "mean over evaluated users of DCG/IDCG, binary gain, discount 1/log2(rank+1), IDCG over min(|G(u)|, K) hits; {TRUTH}; {USERS}"
        ),
        "mrr" => format!(
            "mean over evaluated users of 1/rank of the first hit within K, 0 if none; {TRUTH}; {USERS}"
        ),
        "hit_rate" => {
            format!("share of evaluated users with at least one hit within K; {TRUTH}; {USERS}")
        }
        "eval_user_coverage" => {
            format!("evaluated users / users with non-empty G(u); {TRUTH}; {USERS}")
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

const RANKING_METRICS: [&str; 5] = ["recall", "precision", "ndcg", "mrr", "hit_rate"];

/// Everything evaluation needs besides the registered `window_events`.
pub struct EvalInput<'a> {
    pub date: NaiveDate,
    /// D's training window (popularity of the distribution metrics).
    pub window: &'a WindowData,
    /// D's own lists, and the baseline's lists for D's active users.
    pub own: &'a [RankedList],
    pub own_baseline: &'a [RankedList],
    pub n_candidates: usize,
    pub n_active: usize,
}

/// Evaluate run D. Needs `window_events` registered over D-1's and D's windows; reads the lists
/// published for D-1 under `root` and prepares D-1's window for the baseline.
pub async fn evaluate(
    ctx: &SessionContext,
    config: &Config,
    root: &crate::storage::Location,
    input: EvalInput<'_>,
) -> Result<Vec<MetricRow>> {
    let ks = config.metric_ks();
    let max_k = ks.iter().copied().max().unwrap_or(1);
    register(
        ctx,
        "ks",
        int_table("k", ks.iter().map(|k| *k as i32).collect()),
    )?;
    register(
        ctx,
        "positions",
        int_table("p", (1..=max_k as i32).collect()),
    )?;
    let mut rows = Vec::new();

    for (segment, lists) in [
        (SEGMENT_ALL, input.own),
        (SEGMENT_BASELINE, input.own_baseline),
    ] {
        register(ctx, "recs", lists_table(lists))?;
        let params = vec![
            (
                "n_candidates",
                ScalarValue::Float64(Some(input.n_candidates.max(1) as f64)),
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
                rows.push(row(
                    "gini",
                    Some(k.value(i)),
                    gini,
                    segment,
                    lists.len() as i64,
                ));
                rows.push(row(
                    "novelty",
                    Some(k.value(i)),
                    novelty,
                    segment,
                    lists.len() as i64,
                ));
                rows.push(row(
                    "catalog_coverage",
                    Some(k.value(i)),
                    Some(cat.value(i)),
                    segment,
                    lists.len() as i64,
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
    let truth_batches = query(ctx, "truth", TRUTH_SQL, params).await?;
    let mut truth_users: HashSet<String> = HashSet::new();
    for b in &truth_batches {
        truth_users.extend(strings(b, 0));
    }
    let truth_schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, true),
        Field::new("item_id", DataType::Utf8, true),
    ]));
    let truth_batches: Vec<RecordBatch> = truth_batches
        .iter()
        .map(|b| {
            RecordBatch::try_new(
                truth_schema.clone(),
                vec![cast_utf8(b.column(0)), cast_utf8(b.column(1))],
            )
        })
        .collect::<std::result::Result<_, _>>()
        .context("truth")?;
    register(
        ctx,
        "truth",
        MemTable::try_new(truth_schema, vec![truth_batches]).context("truth")?,
    )?;

    let previous_date = input.date.pred_opt().expect("date in range");
    let previous = published_lists(root, previous_date).await?;
    let previous_window = crate::prepare::prepare_window(
        ctx,
        config,
        crate::prepare::Window::ending(previous_date, config.window.lookback_days),
    )
    .await?;
    let reason = match (&previous, truth_users.is_empty()) {
        (None, _) => Some(format!(
            "not evaluated: no recommendations published for {}",
            dt(input.date.pred_opt().expect("date in range"))
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
                        segment,
                        definition: reason.clone(),
                        n_users: 0,
                    });
                }
            }
            rows.push(MetricRow {
                metric: "eval_user_coverage",
                k: None,
                value: None,
                segment,
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
        .filter(|l| truth_users.contains(&l.user_id))
        .collect();
    let empty = Vec::new();
    let baseline: Vec<RankedList> = evaluated
        .iter()
        .map(|l| {
            let excluded = previous_window.exclusions.get(&l.user_id).unwrap_or(&empty);
            RankedList {
                user_id: l.user_id.clone(),
                items: popular_list(&previous_window.popularity, excluded, max_k)
                    .into_iter()
                    .map(|(i, _)| i.clone())
                    .collect(),
            }
        })
        .collect();
    let n_evaluated = evaluated.len();
    for (segment, lists) in [
        (SEGMENT_ALL, previous.as_slice()),
        (SEGMENT_BASELINE, baseline.as_slice()),
    ] {
        register(ctx, "recs", lists_table(lists))?;
        let mut seen_k = HashSet::new();
        for b in query(ctx, "ranking", RANKING_SQL, vec![]).await? {
            let k = b.column(0).as_primitive::<arrow::datatypes::Int32Type>();
            let n = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                seen_k.insert(k.value(i));
                for (c, metric) in RANKING_METRICS.iter().enumerate() {
                    let v = b.column(2 + c).as_primitive::<Float64Type>();
                    rows.push(row(
                        metric,
                        Some(k.value(i)),
                        Some(v.value(i)),
                        segment,
                        n.value(i),
                    ));
                }
            }
        }
        rows.push(row(
            "eval_user_coverage",
            None,
            Some(n_evaluated as f64 / truth_users.len() as f64),
            segment,
            n_evaluated as i64,
        ));
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
                    segment: SEGMENT_LIFT,
                    definition: format!("{metric}@K of the model (segment all) / {metric}@K of the popularity baseline, same evaluated users; NULL when the baseline is 0"),
                    n_users: n,
                });
            }
        }
    }
    rows.extend(lifts);
    Ok(rows)
}

fn row(
    metric: &'static str,
    k: Option<i32>,
    value: Option<f64>,
    segment: &'static str,
    n_users: i64,
) -> MetricRow {
    MetricRow {
        metric,
        k,
        value,
        segment,
        definition: definition(metric, segment),
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

fn cast_utf8(a: &arrow::array::ArrayRef) -> arrow::array::ArrayRef {
    arrow::compute::cast(a, &DataType::Utf8).expect("string column")
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
            (2, [1.0 / 6.0, 0.25, 0.1934264, 0.25, 0.5]),
            (4, [5.0 / 6.0, 0.375, 0.4990955, 5.0 / 12.0, 1.0]),
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
