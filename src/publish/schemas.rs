//! Output tables (ARCHITECTURE.md "Outputs"): their Arrow schemas and the batches a run
//! stages. Every row carries the `run_id` of the run that produced it; `dt` is the Hive
//! partition.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::domain::{Lists, MetricRow, SimilarItem, UserVectors, Vectors};
use crate::error::{Context, Result};
use crate::io::{embedding_type, to_arrow};
use crate::kernels::Neighbors;

/// Tables published per date, in the order `SHOW TABLES` lists them (`item_neighbors` only by
/// runs with the neighbour term on).
pub const PUBLISHED_TABLES: [&str; 6] = [
    "recommendations",
    "user_embeddings",
    "item_vectors",
    "similar_items",
    "item_neighbors",
    "metrics",
];

/// The embedding cache table (unpartitioned, one file per run that embedded something).
pub const ITEM_EMBEDDINGS: &str = "item_embeddings";

/// Schema of `recommendations`.
pub fn recommendations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("repeat_score", DataType::Float32, false),
        Field::new("neighbor_score", DataType::Float32, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// The `recommendations` rows of the users `users` (positions in `lists`) as a batch.
pub fn recommendations(lists: &Lists, users: Range<usize>, run_id: &str) -> Result<RecordBatch> {
    let n = lists.entry_range(users.clone()).len();
    let (mut user_ids, mut ranks, mut items) = (
        StringBuilder::with_capacity(n, n * 8),
        Vec::with_capacity(n),
        StringBuilder::with_capacity(n, n * 8),
    );
    let (mut scores, mut sources) = (
        Vec::with_capacity(n),
        StringBuilder::with_capacity(n, n * 8),
    );
    let (mut repeat, mut neighbor) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for u in users {
        let list = lists.get(u);
        for (r, &item) in list.items.iter().enumerate() {
            user_ids.append_value(list.user);
            ranks.push(r as i32 + 1);
            items.append_value(&lists.item_ids[item as usize]);
            sources.append_value(list.source.as_str());
        }
        scores.extend_from_slice(list.scores);
        repeat.extend_from_slice(list.repeat);
        neighbor.extend_from_slice(list.neighbor);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(user_ids.finish()),
        Arc::new(Int32Array::from(ranks)),
        Arc::new(items.finish()),
        Arc::new(Float32Array::from(scores)),
        Arc::new(sources.finish()),
        Arc::new(Float32Array::from(repeat)),
        Arc::new(Float32Array::from(neighbor)),
        Arc::new(StringArray::from(vec![run_id; n])),
    ];
    RecordBatch::try_new(recommendations_schema(), columns).context("building recommendations")
}

/// Schema of `similar_items`.
pub fn similar_items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("similar_item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// `similar_items` rows as a batch.
pub fn similar_items(rows: &[SimilarItem], run_id: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.item_id.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.rank))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.similar_item_id.as_str()),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
    ];
    RecordBatch::try_new(similar_items_schema(), columns).context("building similar_items")
}

/// Schema of `item_neighbors`.
pub fn item_neighbors_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("neighbor_id", DataType::Utf8, false),
        Field::new("similarity", DataType::Float32, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// The `item_neighbors` rows of the items `targets` (rows of `ids`, the window's catalog) as a
/// batch: each one's neighbours, best first.
pub fn item_neighbors(
    neighbors: &Neighbors,
    ids: &[String],
    targets: &[u32],
    run_id: &str,
) -> Result<RecordBatch> {
    let (mut items, mut ranks, mut others, mut sims) = (
        StringBuilder::new(),
        Vec::new(),
        StringBuilder::new(),
        Vec::new(),
    );
    for &j in targets {
        let (sources, s) = neighbors.ranked(j);
        for (r, &i) in sources.iter().enumerate() {
            items.append_value(&ids[j as usize]);
            ranks.push(r as i32 + 1);
            others.append_value(&ids[i as usize]);
        }
        sims.extend_from_slice(s);
    }
    let n = ranks.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(items.finish()),
        Arc::new(Int32Array::from(ranks)),
        Arc::new(others.finish()),
        Arc::new(Float32Array::from(sims)),
        Arc::new(StringArray::from(vec![run_id; n])),
    ];
    RecordBatch::try_new(item_neighbors_schema(), columns).context("building item_neighbors")
}

/// Schema of `user_embeddings`.
pub fn user_embeddings_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("embedding", embedding_type(dim), false),
        Field::new("n_events", DataType::Int64, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// The `user_embeddings` rows of users `rows` (positions in `users`) as a batch.
pub fn user_embeddings(
    users: &UserVectors,
    rows: Range<usize>,
    run_id: &str,
) -> Result<RecordBatch> {
    let v = &users.vectors;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(v.ids[rows.clone()].iter())),
        to_arrow(&v.flat[rows.start * v.dim..rows.end * v.dim], v.dim),
        Arc::new(Int64Array::from(users.n_events[rows.clone()].to_vec())),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
    ];
    RecordBatch::try_new(user_embeddings_schema(v.dim), columns).context("building user_embeddings")
}

/// Schema of `item_vectors`.
pub fn item_vectors_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("embedding", embedding_type(dim), false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// The `item_vectors` rows of items `rows` (positions in `items`) as a batch.
pub fn item_vectors(items: &Vectors, rows: Range<usize>, run_id: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            items.ids[rows.clone()].iter(),
        )),
        to_arrow(
            &items.flat[rows.start * items.dim..rows.end * items.dim],
            items.dim,
        ),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
    ];
    RecordBatch::try_new(item_vectors_schema(items.dim), columns).context("building item_vectors")
}

/// Schema of `metrics`.
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("k", DataType::Int32, true),
        Field::new("value", DataType::Float64, true),
        Field::new("segment", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("evaluated_dt", DataType::Date32, false),
        Field::new("n_users", DataType::Int64, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// `metrics` rows of evaluated date `date` as a batch.
pub fn metrics(rows: &[MetricRow], date: NaiveDate, run_id: &str) -> Result<RecordBatch> {
    let days = (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.metric))),
        Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.k))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.value))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.segment.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.definition.as_str()),
        )),
        Arc::new(Date32Array::from(vec![days; rows.len()])),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.n_users))),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
    ];
    RecordBatch::try_new(metrics_schema(), columns).context("building metrics")
}

/// Schema of `item_embeddings`.
pub fn item_embeddings_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("content_hash", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("embedding", embedding_type(dim), false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// New cache entries as a batch of the `item_embeddings` table.
pub fn item_embeddings(
    item_ids: &[&str],
    hashes: &[&str],
    model_id: &str,
    flat: &[f32],
    dim: usize,
    run_id: &str,
) -> Result<RecordBatch> {
    let n = item_ids.len();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(item_ids.to_vec())),
        Arc::new(StringArray::from(hashes.to_vec())),
        Arc::new(StringArray::from(vec![model_id; n])),
        to_arrow(flat, dim),
        Arc::new(StringArray::from(vec![run_id; n])),
    ];
    RecordBatch::try_new(item_embeddings_schema(dim), columns).context("building item_embeddings")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Source;

    /// Batches of any users ranges hold the rows of those users, ranks 1..n, in list order.
    #[test]
    fn recommendations_batches_cover_their_users_rows() {
        let mut lists = Lists::new(std::sync::Arc::new(vec!["a".into(), "b".into()]));
        lists.push(
            "u1".into(),
            Source::Personal,
            [(1, 0.9, 0.2, 0.1), (0, 0.5, 0.0, 0.3)],
        );
        lists.push("u2".into(), Source::Popular, [(0, 1.0, 0.0, 0.0)]);
        lists.push("u3".into(), Source::Popular, []);
        let whole = recommendations(&lists, 0..3, "r").unwrap();
        assert_eq!(whole.num_rows(), 3);
        let parts: Vec<RecordBatch> = [0..1, 1..3]
            .into_iter()
            .map(|r| recommendations(&lists, r, "r").unwrap())
            .collect();
        let joined = arrow::compute::concat_batches(&whole.schema(), &parts).unwrap();
        assert_eq!(joined, whole);
        let column = |c: &str| {
            let a = whole.column_by_name(c).unwrap();
            (0..a.len())
                .map(|i| arrow::util::display::array_value_to_string(a, i).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(column("user_id"), "u1,u1,u2");
        assert_eq!(column("rank"), "1,2,1");
        assert_eq!(column("item_id"), "b,a,a");
        assert_eq!(column("source"), "personal,personal,popular");
        assert_eq!(column("repeat_score"), "0.2,0.0,0.0");
        assert_eq!(column("neighbor_score"), "0.1,0.3,0.0");
    }
}
