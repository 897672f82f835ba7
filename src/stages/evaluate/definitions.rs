//! What each metric row means, in words: the `definition` column of `metrics`.

use crate::config::Config;

/// Segment of the model over all evaluated users.
pub const SEGMENT_ALL: &str = "all";
/// Segment of the popularity baseline.
pub const SEGMENT_BASELINE: &str = "baseline_popular";
/// Segment of the model's ranking metrics divided by the baseline's.
pub const SEGMENT_LIFT: &str = "lift_vs_baseline";
/// Users whose first event in the window is recent.
pub const SEGMENT_NEW_USERS: &str = "new_users";
/// Users with an earlier event in the window.
pub const SEGMENT_RETURNING_USERS: &str = "returning_users";
/// Prefix of the per-category segments: `category=<value>`.
pub const SEGMENT_CATEGORY: &str = "category=";

const TRUTH: &str = "G(u) = distinct items u interacted with on evaluated_dt";
const USERS: &str =
    "evaluated users = users with non-empty G(u) and a list published for evaluated_dt - 1";

pub fn definition(metric: &str, segment: &str, config: &Config) -> String {
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

fn own_lists(segment: &str) -> &'static str {
    if segment == SEGMENT_BASELINE {
        "lists: popularity of the window of dt minus each user's exclusions, for every active user"
    } else {
        "lists: this run's recommendations (personal and fallback)"
    }
}
