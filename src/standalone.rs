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
use crate::files::{ParquetStreamWriter, read_parquet};
use crate::prepare::strings;
use crate::storage::Location;
use crate::topk::{Exclusions, TopkParams, top_k};
use crate::vectors;

async fn read_file(url: &str, what: &str) -> Result<Vec<RecordBatch>> {
    let loc = Location::parse(url)?;
    match read_parquet(&loc.store, &loc.prefix).await {
        Ok(b) => Ok(b),
        Err(parquet::errors::ParquetError::External(e)) => {
            Err(Error::Input(format!("{what} {url}: cannot read: {e}")))
        }
        Err(e) => Err(Error::Input(format!(
            "{what} {url}: not a readable Parquet file: {e}"
        ))),
    }
}

fn concat(batches: &[RecordBatch], url: &str) -> Result<Option<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    arrow::compute::concat_batches(&first.schema(), batches)
        .map(Some)
        .context(format!("reading {url}"))
}

/// `recjob embed`: every input column plus `embedding`, in input order.
pub async fn embed_file(
    model: &Path,
    input: &str,
    column: &str,
    output: &str,
    device: DeviceChoice,
    max_batch_tokens: usize,
) -> Result<usize> {
    let batches = read_file(input, "input").await?;
    let batch =
        concat(&batches, input)?.ok_or_else(|| Error::Input(format!("input {input}: no rows")))?;
    let Some(texts) = batch.column_by_name(column) else {
        return Err(Error::Input(format!(
            "input {input}, column {column}: column is missing"
        )));
    };
    if !matches!(
        texts.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err(Error::Input(format!(
            "input {input}, column {column}: must be a string, found {}",
            texts.data_type()
        )));
    }
    if texts.null_count() > 0 {
        return Err(Error::Input(format!(
            "input {input}, column {column}: {} null texts",
            texts.null_count()
        )));
    }
    let idx = batch.schema().index_of(column).expect("checked above");
    let encoder = CandleEncoder::load(model, device)?;
    tracing::info!(
        model = encoder.model_id(),
        device = encoder.device(),
        blas = crate::blas::backend(),
        "loaded encoder"
    );
    let dim = encoder.dim();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&c| batch.schema().field(c).name() != "embedding")
        .collect();
    let mut fields: Vec<Field> = keep
        .iter()
        .map(|&c| batch.schema().field(c).clone())
        .collect();
    fields.push(Field::new("embedding", vectors::embedding_type(dim), false));
    let schema = Arc::new(Schema::new(fields));
    let loc = Location::parse(output)?;
    // Rows are embedded and written a chunk at a time, so memory does not grow with the file:
    // a row embeds the same whatever its batch (tested), and order is preserved.
    let mut writer = ParquetStreamWriter::try_new(&loc.store, &loc.prefix, schema.clone())?;
    let mut start = 0;
    while start < batch.num_rows() {
        let chunk = batch.slice(start, TEXTS_PER_CHUNK.min(batch.num_rows() - start));
        let texts = strings(&chunk, idx);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let (flat, _) = embed_texts(&encoder, &refs, max_batch_tokens)?;
        let mut columns: Vec<ArrayRef> = keep.iter().map(|&c| chunk.column(c).clone()).collect();
        columns.push(vectors::to_arrow(&flat, dim));
        writer
            .write(&RecordBatch::try_new(schema.clone(), columns).context("building output")?)
            .await?;
        writer.flush().await?; // one row group per chunk
        start += chunk.num_rows();
    }
    writer.close().await?;
    Ok(batch.num_rows())
}

/// Rows of `recjob embed` embedded and written at a time.
const TEXTS_PER_CHUNK: usize = 16_384;

/// Ids and L2-normalised vectors of a batch of a vectors file (`id` or `<fallback>` +
/// `embedding`); `first_row` numbers rows in error messages.
fn batch_vectors(
    batch: &RecordBatch,
    url: &str,
    what: &str,
    fallback: &str,
) -> Result<(Vec<String>, Vec<f32>, usize)> {
    let id_col = ["id", fallback]
        .into_iter()
        .find(|c| batch.column_by_name(c).is_some());
    let Some(id_col) = id_col else {
        return Err(Error::Input(format!(
            "{what} {url}, column id: column is missing"
        )));
    };
    let ids = strings(batch, batch.schema().index_of(id_col).expect("present"));
    let Some(emb) = batch.column_by_name("embedding") else {
        return Err(Error::Input(format!(
            "{what} {url}, column embedding: column is missing"
        )));
    };
    let (mut flat, dim) = vectors::from_arrow(emb.as_ref()).map_err(|e| {
        let id = e
            .strip_prefix("row ")
            .and_then(|r| r.split(':').next())
            .and_then(|r| r.parse::<usize>().ok())
            .map(|r| ids[r].clone());
        Error::Input(format!(
            "{what} {url}, column embedding{}: {e}",
            id.map(|i| format!(", id {i}")).unwrap_or_default()
        ))
    })?;
    if let Err(r) = vectors::normalize_rows(&mut flat, dim) {
        return Err(Error::Input(format!(
            "{what} {url}, column embedding, id {}: zero or non-finite vector",
            ids[r]
        )));
    }
    Ok((ids, flat, dim))
}

/// Checks ids are unique across a stream with a 64-bit hash per id (memory: 16 bytes a row).
#[derive(Default)]
struct UniqueIds(std::collections::HashSet<u64>);

impl UniqueIds {
    fn check(&mut self, id: &str, what: &str, url: &str) -> Result<()> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h =
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(id);
        if self.0.insert(h) {
            Ok(())
        } else {
            Err(Error::Input(format!("{what} {url}: duplicate id {id}")))
        }
    }
}

/// Users per kernel call of `recjob topk`: input is streamed, so memory stays flat in users.
const USERS_PER_CHUNK: usize = 16_384;

/// `recjob topk`: streams users through the kernel against all items and writes results as it
/// goes. Returns the number of users with fewer than K results.
pub async fn topk_files(
    users: &str,
    items: &str,
    k: usize,
    output: &str,
    exclude: Option<&str>,
    block_users: usize,
    block_items: usize,
) -> Result<usize> {
    use futures::StreamExt;
    if k == 0 {
        return Err(Error::Config("--k must be at least 1".into()));
    }
    // Items, in id order so ties break by item id.
    let item_batches = read_file(items, "items").await?;
    let (mut item_ids, mut item_flat, mut dim) = (Vec::new(), Vec::new(), 0);
    let mut unique = UniqueIds::default();
    for b in &item_batches {
        let (ids, flat, d) = batch_vectors(b, items, "items", "item_id")?;
        if !ids.is_empty() && dim != 0 && d != dim {
            return Err(Error::Input(format!(
                "items {items}: dimension {d} differs from {dim} (id {})",
                ids[0]
            )));
        }
        dim = dim.max(d);
        for id in &ids {
            unique.check(id, "items", items)?;
        }
        item_ids.extend(ids);
        item_flat.extend(flat);
    }
    drop(item_batches);
    let mut order: Vec<usize> = (0..item_ids.len()).collect();
    order.sort_by(|&a, &b| item_ids[a].cmp(&item_ids[b]));
    let dim = dim.max(1);
    let sorted_ids: Vec<&str> = order.iter().map(|&i| item_ids[i].as_str()).collect();
    let mut sorted_flat = Vec::with_capacity(item_flat.len());
    for &i in &order {
        sorted_flat.extend_from_slice(&item_flat[i * dim..(i + 1) * dim]);
    }
    drop(item_flat);
    let item_pos: HashMap<&str, u32> = sorted_ids
        .iter()
        .enumerate()
        .map(|(j, id)| (*id, j as u32))
        .collect();

    let mut excluded: HashMap<String, Vec<u32>> = HashMap::new();
    if let Some(path) = exclude {
        for b in read_file(path, "exclusions").await? {
            let (Ok(u), Ok(i)) = (
                b.schema().index_of("user_id"),
                b.schema().index_of("item_id"),
            ) else {
                return Err(Error::Input(format!(
                    "exclusions {path}: columns user_id and item_id are required"
                )));
            };
            for (u, i) in strings(&b, u).into_iter().zip(strings(&b, i)) {
                if let Some(&i) = item_pos.get(i.as_str()) {
                    excluded.entry(u).or_default().push(i);
                }
            }
        }
    }

    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ]));
    let out = Location::parse(output)?;
    let mut writer =
        crate::files::ParquetStreamWriter::try_new(&out.store, &out.prefix, schema.clone())?;
    let user_loc = Location::parse(users)?;
    let mut stream = crate::files::parquet_stream(&user_loc.store, &user_loc.prefix)
        .await
        .map_err(|e| Error::Input(format!("users {users}: not a readable Parquet file: {e}")))?;
    let params = TopkParams {
        k,
        block_users,
        block_items,
    };
    let (mut short, mut n_users, mut kernel_seconds) = (0usize, 0usize, 0f64);
    let mut unique = UniqueIds::default();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    loop {
        let next = stream.next().await;
        let done = next.is_none();
        if let Some(b) = next {
            let b = b.map_err(|e| Error::Input(format!("users {users}: cannot decode: {e}")))?;
            pending_rows += b.num_rows();
            pending.push(b);
        }
        if pending_rows < USERS_PER_CHUNK && !done {
            continue;
        }
        let (mut chunk_ids, mut chunk_flat) = (Vec::new(), Vec::new());
        for b in pending.drain(..) {
            let (ids, flat, d) = batch_vectors(&b, users, "users", "user_id")?;
            if !ids.is_empty() && d != dim {
                return Err(Error::Input(format!(
                    "users {users}, id {}: dimension {d} differs from the items' {dim}",
                    ids[0]
                )));
            }
            for id in &ids {
                unique.check(id, "users", users)?;
            }
            chunk_ids.extend(ids);
            chunk_flat.extend(flat);
        }
        pending_rows = 0;
        if !chunk_ids.is_empty() {
            let pairs: Vec<(u32, u32)> = chunk_ids
                .iter()
                .enumerate()
                .flat_map(|(u, id)| {
                    excluded
                        .get(id)
                        .into_iter()
                        .flatten()
                        .map(move |&i| (u as u32, i))
                })
                .collect();
            let exclusions = Exclusions::from_pairs(chunk_ids.len(), pairs);
            let started = std::time::Instant::now();
            let (mut out_users, mut ranks, mut out_items, mut scores) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            top_k::<()>(
                &chunk_flat,
                &sorted_flat,
                dim,
                &params,
                &exclusions,
                |first, lists| {
                    for (o, hits) in lists.into_iter().enumerate() {
                        short += usize::from(hits.len() < k);
                        for (r, h) in hits.iter().enumerate() {
                            out_users.push(chunk_ids[first + o].as_str());
                            ranks.push(r as i32 + 1);
                            out_items.push(sorted_ids[h.item as usize]);
                            scores.push(h.score);
                        }
                    }
                    Ok(())
                },
            )
            .expect("infallible sink");
            kernel_seconds += started.elapsed().as_secs_f64();
            n_users += chunk_ids.len();
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
            writer.write(&batch).await?;
        }
        if done {
            break;
        }
    }
    writer.close().await?;
    let gflops = 2.0 * n_users as f64 * sorted_ids.len() as f64 * dim as f64
        / kernel_seconds.max(1e-9)
        / 1e9;
    tracing::info!(
        users = n_users,
        items = sorted_ids.len(),
        dim,
        k,
        kernel_seconds,
        gflops = format!("{gflops:.1}"),
        "top-K kernel"
    );
    if short > 0 {
        tracing::warn!(
            short_users = short,
            k,
            "users with fewer than K eligible items"
        );
    }
    Ok(short)
}
