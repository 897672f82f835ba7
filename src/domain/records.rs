//! Rows that stages hand to each other and to the writers: ranked lists of item ids, the rows
//! of `similar_items` and `metrics`.

/// A user's ranked items (rank = position + 1).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedList {
    /// The user.
    pub user_id: String,
    /// Item ids, best first.
    pub items: Vec<String>,
}

/// Where a recommendation comes from (the `source` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The user's own top-K of the item vectors.
    Personal,
    /// The popularity list: the user has no usable history.
    Popular,
}

impl Source {
    /// The value written in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Personal => "personal",
            Source::Popular => "popular",
        }
    }
}

/// One row of `similar_items`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarItem {
    /// The query item.
    pub item_id: String,
    /// 1..K.
    pub rank: i32,
    /// An item similar to it (never itself).
    pub similar_item_id: String,
    /// Cosine of the two items' text embeddings.
    pub score: f32,
}

/// One row of the `metrics` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// `recall`, `ndcg`, `catalog_coverage`, ...
    pub metric: &'static str,
    /// The cut-off, when the metric has one.
    pub k: Option<i32>,
    /// NULL when the metric could not be evaluated (the definition says why).
    pub value: Option<f64>,
    /// `all`, `baseline_popular`, `lift_vs_baseline`, `new_users`, `category=<value>`, ...
    pub segment: String,
    /// The convention the value follows, in words.
    pub definition: String,
    /// Users the value averages over.
    pub n_users: i64,
}
