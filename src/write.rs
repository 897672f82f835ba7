//! Output tables (DESIGN.md "Outputs"): their Arrow schemas and the batches a run stages.
//! Every row carries the `run_id` of the run that produced it; `dt` is the Hive partition.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use crate::error::{Context, Result};
use crate::evaluate::MetricRow;
use crate::vectors;

/// One row of `recommendations` (and, with `source` unused, of `similar_items`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecRow {
    pub user_id: String,
    pub rank: i32,
    pub item_id: String,
    pub score: f32,
    pub source: &'static str,
}

pub fn recommendations_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

pub fn recommendations(rows: &[RecRow], run_id: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.user_id.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.rank))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.item_id.as_str()),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.source))),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
    ];
    RecordBatch::try_new(recommendations_schema(), columns).context("building recommendations")
}

pub fn similar_items_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("similar_item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

pub fn similar_items(rows: &[RecRow], run_id: &str) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.user_id.as_str()),
        )),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.rank))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.item_id.as_str()),
        )),
        Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.score))),
        Arc::new(StringArray::from(vec![run_id; rows.len()])),
    ];
    RecordBatch::try_new(similar_items_schema(), columns).context("building similar_items")
}

pub fn user_embeddings_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("embedding", vectors::embedding_type(dim), false),
        Field::new("n_events", DataType::Int64, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

pub fn user_embeddings(
    user_ids: &[String],
    flat: &[f32],
    dim: usize,
    n_events: &[i64],
    run_id: &str,
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(user_ids.iter())),
        vectors::to_arrow(flat, dim),
        Arc::new(Int64Array::from(n_events.to_vec())),
        Arc::new(StringArray::from(vec![run_id; user_ids.len()])),
    ];
    RecordBatch::try_new(user_embeddings_schema(dim), columns).context("building user_embeddings")
}

pub fn item_vectors_schema(dim: usize) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("embedding", vectors::embedding_type(dim), false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

pub fn item_vectors(
    item_ids: &[String],
    flat: &[f32],
    dim: usize,
    run_id: &str,
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(item_ids.iter())),
        vectors::to_arrow(flat, dim),
        Arc::new(StringArray::from(vec![run_id; item_ids.len()])),
    ];
    RecordBatch::try_new(item_vectors_schema(dim), columns).context("building item_vectors")
}

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
