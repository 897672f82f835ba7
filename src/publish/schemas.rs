//! Output tables (ARCHITECTURE.md "Outputs"): their Arrow schemas and the batches a run
//! stages. Every row carries the `run_id` of the run that produced it; `dt` is the Hive
//! partition.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::domain::{MetricRow, Recommendation, SimilarItem, UserVectors, Vectors};
use crate::error::{Context, Result};
use crate::io::{embedding_type, to_arrow};

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
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// `recommendations` rows as a batch.
pub fn recommendations(rows: &[Recommendation], run_id: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.user_id.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.rank))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.item_id.as_str()),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.source.as_str()),
        )),
        Arc::new(Float32Array::from_iter_values(
            rows.iter().map(|r| r.repeat_score),
        )),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
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

/// Schema of `user_embeddings`.
pub fn user_embeddings_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("embedding", embedding_type(dim), false),
        Field::new("n_events", DataType::Int64, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

/// `user_embeddings` rows as a batch.
pub fn user_embeddings(users: &UserVectors, run_id: &str) -> Result<RecordBatch> {
    let v = &users.vectors;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(v.ids.iter())),
        to_arrow(&v.flat, v.dim),
        Arc::new(Int64Array::from(users.n_events.clone())),
        Arc::new(StringArray::from(vec![run_id; v.len()])),
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

/// `item_vectors` rows as a batch.
pub fn item_vectors(items: &Vectors, run_id: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(items.ids.iter())),
        to_arrow(&items.flat, items.dim),
        Arc::new(StringArray::from(vec![run_id; items.len()])),
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
