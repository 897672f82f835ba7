//! Ranking metrics (`sql/evaluate/ranking.sql`) of lists against one day's ground truth, in
//! their own single-partition session so that a rerun publishes the same bits.

use std::sync::Arc;

use arrow::array::{AsArray, Int32Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::definitions::{SEGMENT_ALL, definition};
use crate::config::Config;
use crate::domain::{MetricRow, RankedList};
use crate::error::Result;
use crate::io::{int_table, mem_table, query, register};

const RANKING_SQL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/sql/evaluate/ranking.sql"
));

/// The ranking metrics, in the column order of `sql/evaluate/ranking.sql`.
pub const RANKING_METRICS: [&str; 6] = ["recall", "precision", "ndcg", "mrr", "hit_rate", "map"];
/// Spark RankingMetrics' names of ranking metrics whose value only differs by the users averaged.
const SPARK_METRICS: [(&str, &str); 4] = [
    ("recall", "spark_recall"),
    ("precision", "spark_precision"),
    ("ndcg", "spark_ndcg"),
    ("map", "spark_map"),
];

/// Register `truth (user_id, item_id)`.
fn register_truth(ctx: &SessionContext, pairs: &[(String, String)]) -> Result<()> {
    let (users, items): (Vec<&str>, Vec<&str>) =
        pairs.iter().map(|(u, i)| (u.as_str(), i.as_str())).unzip();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("item_id", DataType::Utf8, false),
    ]));
    let truth = mem_table(
        schema,
        vec![
            Arc::new(StringArray::from(users)),
            Arc::new(StringArray::from(items)),
        ],
    )?;
    register(ctx, "truth", truth)
}

/// Ranking metrics (`sql/evaluate/ranking.sql`) of `lists` against `truth` (sorted), as rows of
/// `segment`; segment `all` also gets the Spark-convention rows, averaged over the `n_listed`
/// users who had a list (`lists` needs only those with ground truth). Runs in its own single-partition
/// context: means of fractions depend on the order they are summed in, and one partition fixes
/// it, so a rerun publishes the same bits.
pub async fn ranking_rows(
    config: &Config,
    lists: &[RankedList],
    truth: &[(String, String)],
    segment: &str,
    n_listed: usize,
) -> Result<Vec<MetricRow>> {
    let ctx = &SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(1),
    );
    let ks = config.metric_ks();
    register(
        ctx,
        "ks",
        int_table("k", ks.iter().map(|k| *k as i32).collect())?,
    )?;
    register(
        ctx,
        "positions",
        int_table(
            "p",
            (1..=ks.iter().copied().max().unwrap_or(1) as i32).collect(),
        )?,
    )?;
    register_truth(ctx, truth)?;
    register(ctx, "recs", lists_table(lists)?)?;
    let mut rows = Vec::new();
    let params = vec![("n_listed", ScalarValue::Int64(Some(n_listed as i64)))];
    for b in query(ctx, "ranking", RANKING_SQL, params).await? {
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

/// A metric row with its definition.
pub fn row(
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

/// `recs (user_id, rank, item_id)` from ranked lists.
fn lists_table(lists: &[RankedList]) -> Result<MemTable> {
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
    mem_table(
        schema,
        vec![
            Arc::new(StringArray::from(users)),
            Arc::new(Int32Array::from(ranks)),
            Arc::new(StringArray::from(items)),
        ],
    )
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
        register(&ctx, "ks", int_table("k", vec![2, 4]).unwrap()).unwrap();
        register(
            &ctx,
            "positions",
            int_table("p", (1..=4).collect()).unwrap(),
        )
        .unwrap();
        register(
            &ctx,
            "recs",
            lists_table(&[
                list("A", &["x", "y", "z", "w"]),
                list("B", &["q", "r", "s", "t"]),
            ])
            .unwrap(),
        )
        .unwrap();
        register(
            &ctx,
            "truth",
            lists_table(&[
                list("A", &["y", "w", "q"]),
                list("B", &["s"]),
                list("C", &["x"]),
            ])
            .unwrap(),
        )
        .unwrap();
        let params = vec![("n_listed", ScalarValue::Int64(Some(2)))];
        let batches = query(&ctx, "ranking", RANKING_SQL, params).await.unwrap();
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
        // Only the lists of users with ground truth are read; the third user counts as listed.
        let rows = ranking_rows(&config, &lists[..2], &truth, SEGMENT_ALL, lists.len())
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
