//! The stages on their own, over single Parquet files: `recjob embed` ("embed my texts") and
//! `recjob topk` ("bring your own vectors"). They share the nightly run's code paths.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::config::DeviceChoice;
use crate::embed::candle::CandleEncoder;
use crate::embed::{Encoder, embed_texts};
use crate::error::{Context, Error, Result};
use crate::files::{read_parquet, write_parquet};
use crate::prepare::strings;
use crate::storage::Location;
use crate::topk::{Exclusions, TopkParams, top_k};
use crate::vectors;

async fn read_file(url: &str, what: &str) -> Result<Vec<RecordBatch>> {
    let loc = Location::parse(url)?;
    match read_parquet(&loc.store, &loc.prefix).await {
        Ok(b) => Ok(b),
        Err(parquet::errors::ParquetError::External(e)) => Err(Error::Input(format!("{what} {url}: cannot read: {e}"))),
        Err(e) => Err(Error::Input(format!("{what} {url}: not a readable Parquet file: {e}"))),
    }
}

fn concat(batches: &[RecordBatch], url: &str) -> Result<Option<RecordBatch>> {
    let Some(first) = batches.first() else { return Ok(None) };
    arrow::compute::concat_batches(&first.schema(), batches).map(Some).context(format!("reading {url}"))
}

/// `recjob embed`: every input column plus `embedding`, in input order.
pub async fn embed_file(model: &Path, input: &str, column: &str, output: &str, device: DeviceChoice, max_batch_tokens: usize) -> Result<usize> {
    let batches = read_file(input, "input").await?;
    let batch = concat(&batches, input)?.ok_or_else(|| Error::Input(format!("input {input}: no rows")))?;
    let Some(texts) = batch.column_by_name(column) else {
        return Err(Error::Input(format!("input {input}, column {column}: column is missing")));
    };
    if !matches!(texts.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        return Err(Error::Input(format!("input {input}, column {column}: must be a string, found {}", texts.data_type())));
    }
    if texts.null_count() > 0 {
        return Err(Error::Input(format!("input {input}, column {column}: {} null texts", texts.null_count())));
    }
    let idx = batch.schema().index_of(column).expect("checked above");
    let texts = strings(&batch, idx);
    let encoder = CandleEncoder::load(model, device)?;
    tracing::info!(model = encoder.model_id(), device = encoder.device(), "loaded encoder");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (flat, _) = embed_texts(&encoder, &refs, max_batch_tokens)?;
    let dim = encoder.dim();
    let mut fields: Vec<Field> = batch.schema().fields().iter().filter(|f| f.name() != "embedding").map(|f| f.as_ref().clone()).collect();
    let mut columns: Vec<ArrayRef> =
        batch.schema().fields().iter().zip(batch.columns()).filter(|(f, _)| f.name() != "embedding").map(|(_, c)| c.clone()).collect();
    fields.push(Field::new("embedding", vectors::embedding_type(dim), false));
    columns.push(vectors::to_arrow(&flat, dim));
    let schema = Arc::new(Schema::new(fields));
    let out = RecordBatch::try_new(schema.clone(), columns).context("building output")?;
    let loc = Location::parse(output)?;
    write_parquet(&loc.store, &loc.prefix, schema, &[out]).await?;
    Ok(texts.len())
}

/// Ids and L2-normalised vectors of a vectors file (`id` or `<fallback>` + `embedding`).
async fn read_vectors(url: &str, what: &str, fallback: &str) -> Result<(Vec<String>, Vec<f32>, usize)> {
    let batches = read_file(url, what).await?;
    let Some(batch) = concat(&batches, url)? else { return Ok((Vec::new(), Vec::new(), 0)) };
    let id_col = ["id", fallback].into_iter().find(|c| batch.column_by_name(c).is_some());
    let Some(id_col) = id_col else {
        return Err(Error::Input(format!("{what} {url}, column id: column is missing")));
    };
    let ids = strings(&batch, batch.schema().index_of(id_col).expect("present"));
    let Some(emb) = batch.column_by_name("embedding") else {
        return Err(Error::Input(format!("{what} {url}, column embedding: column is missing")));
    };
    let (mut flat, dim) = vectors::from_arrow(emb.as_ref()).map_err(|e| {
        let id = e.strip_prefix("row ").and_then(|r| r.split(':').next()).and_then(|r| r.parse::<usize>().ok()).map(|r| ids[r].clone());
        Error::Input(format!("{what} {url}, column embedding{}: {e}", id.map(|i| format!(", id {i}")).unwrap_or_default()))
    })?;
    if let Err(r) = vectors::normalize_rows(&mut flat, dim) {
        return Err(Error::Input(format!("{what} {url}, column embedding, id {}: zero or non-finite vector", ids[r])));
    }
    let mut sorted = ids.clone();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Input(format!("{what} {url}, column {id_col}: duplicate id {}", w[0])));
    }
    Ok((ids, flat, dim))
}

/// `recjob topk`: returns the number of users with fewer than K results.
pub async fn topk_files(users: &str, items: &str, k: usize, output: &str, exclude: Option<&str>, block_users: usize, block_items: usize) -> Result<usize> {
    if k == 0 {
        return Err(Error::Config("--k must be at least 1".into()));
    }
    let (user_ids, user_flat, user_dim) = read_vectors(users, "users", "user_id").await?;
    let (item_ids, item_flat, item_dim) = read_vectors(items, "items", "item_id").await?;
    if !user_ids.is_empty() && !item_ids.is_empty() && user_dim != item_dim {
        return Err(Error::Input(format!("users {users} have dimension {user_dim}, items {items} have {item_dim}")));
    }
    // Items in id order, so ties break by item id.
    let mut order: Vec<usize> = (0..item_ids.len()).collect();
    order.sort_by(|&a, &b| item_ids[a].cmp(&item_ids[b]));
    let dim = item_dim.max(1);
    let sorted_ids: Vec<&str> = order.iter().map(|&i| item_ids[i].as_str()).collect();
    let mut sorted_flat = Vec::with_capacity(item_flat.len());
    for &i in &order {
        sorted_flat.extend_from_slice(&item_flat[i * dim..(i + 1) * dim]);
    }
    let item_pos: HashMap<&str, u32> = sorted_ids.iter().enumerate().map(|(j, id)| (*id, j as u32)).collect();
    let user_pos: HashMap<&str, u32> = user_ids.iter().enumerate().map(|(u, id)| (id.as_str(), u as u32)).collect();
    let mut pairs = Vec::new();
    if let Some(path) = exclude {
        for b in read_file(path, "exclusions").await? {
            let (Ok(u), Ok(i)) = (b.schema().index_of("user_id"), b.schema().index_of("item_id")) else {
                return Err(Error::Input(format!("exclusions {path}: columns user_id and item_id are required")));
            };
            for (u, i) in strings(&b, u).iter().zip(strings(&b, i)) {
                if let (Some(&u), Some(&i)) = (user_pos.get(u.as_str()), item_pos.get(i.as_str())) {
                    pairs.push((u, i));
                }
            }
        }
    }
    let exclusions = Exclusions::from_pairs(user_ids.len(), pairs);
    let params = TopkParams { k, block_users, block_items };
    let (mut out_users, mut ranks, mut out_items, mut scores) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut short = 0;
    if !user_ids.is_empty() {
        top_k::<()>(&user_flat, &sorted_flat, dim, &params, &exclusions, |first, lists| {
            for (o, hits) in lists.into_iter().enumerate() {
                short += usize::from(hits.len() < k);
                for (r, h) in hits.iter().enumerate() {
                    out_users.push(user_ids[first + o].clone());
                    ranks.push(r as i32 + 1);
                    out_items.push(sorted_ids[h.item as usize]);
                    scores.push(h.score);
                }
            }
            Ok(())
        })
        .expect("infallible sink");
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(out_users)),
            Arc::new(Int32Array::from(ranks)),
            Arc::new(StringArray::from(out_items)),
            Arc::new(Float32Array::from(scores)),
        ],
    )
    .context("building output")?;
    let loc = Location::parse(output)?;
    write_parquet(&loc.store, &loc.prefix, schema, &[batch]).await?;
    if short > 0 {
        tracing::warn!(short_users = short, k, "users with fewer than K eligible items");
    }
    Ok(short)
}
