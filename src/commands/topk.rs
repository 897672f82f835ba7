//! `recjob topk`: "bring your own vectors". Exact top-K of user vectors against item vectors
//! with the nightly run's kernel, optional exclusions, `user_id, rank, item_id, score` out.
//! Users are streamed in chunks, so memory stays flat in the number of users.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Float32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;

use crate::config::{DeviceChoice, TopkConfig, k_arg};
use crate::domain::{Vectors, normalize_rows};
use crate::error::{Context, Error, ExitCode, Result};
use crate::io::{
    Location, ParquetStreamWriter, from_arrow, id_strings, parquet_stream, read_input_file,
};
use crate::kernels::{Adjustments, TopkParams, blas_backend, select_device, top_k_on};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Parquet with `id` (or `user_id`) and `embedding`.
    #[arg(long)]
    users: String,
    /// Parquet with `id` (or `item_id`) and `embedding`.
    #[arg(long)]
    items: String,
    /// Results per user (1..=100000).
    #[arg(long, value_parser = k_arg)]
    k: usize,
    /// Output Parquet file.
    #[arg(long)]
    output: String,
    /// Parquet of `user_id, item_id` pairs never to return.
    #[arg(long)]
    exclude: Option<String>,
    /// Users per block.
    #[arg(long, default_value_t = TopkConfig::default().block_users)]
    block_users: usize,
    /// Items per block.
    #[arg(long, default_value_t = TopkConfig::default().block_items)]
    block_items: usize,
    /// Where the kernel runs: a CUDA GPU when the binary has one (`auto`), the CPU, or the GPU.
    /// On a GPU the blocks are the device's own (8192 x 8192).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    // A device that is not there fails before any input is read.
    select_device(args.device, "topk.device")?;
    let items = read_items(&args.items).await?;
    let excluded = match &args.exclude {
        Some(path) => read_exclusions(path, &items).await?,
        None => HashMap::new(),
    };
    let short = rank_users(&args, &items, &excluded).await?;
    println!(
        "wrote {} ({short} users with fewer than {} results)",
        args.output, args.k
    );
    Ok(ExitCode::Published)
}

/// Users per kernel call: input is streamed, so memory stays flat in users.
const USERS_PER_CHUNK: usize = 16_384;

/// The item vectors, in id order so ties break by item id; ids unique.
async fn read_items(url: &str) -> Result<Vectors> {
    let batches = read_input_file(url, "items").await?;
    let (mut ids, mut flat, mut dim) = (Vec::new(), Vec::new(), 0);
    let mut unique = UniqueIds::default();
    for b in &batches {
        let (batch_ids, batch_flat, d) = batch_vectors(b, url, "items", "item_id")?;
        if !batch_ids.is_empty() && dim != 0 && d != dim {
            return Err(Error::Input(format!(
                "items {url}: dimension {d} differs from {dim} (id {})",
                batch_ids[0]
            )));
        }
        dim = dim.max(d);
        for id in &batch_ids {
            unique.check(id, "items", url)?;
        }
        ids.extend(batch_ids);
        flat.extend(batch_flat);
    }
    drop(batches);
    if ids.is_empty() {
        return Err(Error::Input(format!(
            "items {url}: no item vectors (the file has no rows)"
        )));
    }
    let unsorted = Vectors::new(ids, flat, dim);
    let mut order: Vec<usize> = (0..unsorted.len()).collect();
    order.sort_by(|&a, &b| unsorted.ids[a].cmp(&unsorted.ids[b]));
    Ok(unsorted.select(&order))
}

/// Excluded item rows per user id.
async fn read_exclusions(path: &str, items: &Vectors) -> Result<HashMap<String, Vec<u32>>> {
    let item_pos = items.index();
    let mut excluded: HashMap<String, Vec<u32>> = HashMap::new();
    for b in read_input_file(path, "exclusions").await? {
        let (Ok(u), Ok(i)) = (
            b.schema().index_of("user_id"),
            b.schema().index_of("item_id"),
        ) else {
            return Err(Error::Input(format!(
                "exclusions {path}: columns user_id and item_id are required"
            )));
        };
        let at = |c: &str| format!("exclusions {path}, column {c}");
        let users = id_strings(b.column(u).as_ref(), &at("user_id"))?;
        let items = id_strings(b.column(i).as_ref(), &at("item_id"))?;
        for (u, i) in users.into_iter().zip(items) {
            if let Some(&i) = item_pos.get(i.as_str()) {
                excluded.entry(u).or_default().push(i);
            }
        }
    }
    Ok(excluded)
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("item_id", DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
    ]))
}

/// Stream the users through the kernel against all items, writing results as they come.
/// Returns the number of users with fewer than K results.
async fn rank_users(
    args: &Args,
    items: &Vectors,
    excluded: &HashMap<String, Vec<u32>>,
) -> Result<usize> {
    let users = &args.users;
    let out = Location::parse(&args.output)?;
    let mut writer = ParquetStreamWriter::try_new(&out.store, &out.prefix, output_schema())?;
    let user_loc = Location::parse(users)?;
    let mut stream = parquet_stream(&user_loc.store, &user_loc.prefix)
        .await
        .map_err(|e| Error::Input(format!("users {users}: not a readable Parquet file: {e}")))?;
    let params = TopkParams {
        k: args.k,
        block_users: args.block_users,
        block_items: args.block_items,
        device: args.device,
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
            if !ids.is_empty() && d != items.dim {
                return Err(Error::Input(format!(
                    "users {users}, id {}: dimension {d} differs from the items' {}",
                    ids[0], items.dim
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
            let chunk = Vectors::new(chunk_ids, chunk_flat, items.dim);
            let started = std::time::Instant::now();
            let (batch, n_short) = rank_chunk(&chunk, items, excluded, &params)?;
            kernel_seconds += started.elapsed().as_secs_f64();
            short += n_short;
            n_users += chunk.len();
            writer.write(&batch).await?;
        }
        if done {
            break;
        }
    }
    writer.close().await?;
    let gflops = 2.0 * n_users as f64 * items.len() as f64 * items.dim as f64
        / kernel_seconds.max(1e-9)
        / 1e9;
    tracing::info!(
        users = n_users,
        items = items.len(),
        dim = items.dim,
        k = args.k,
        kernel_seconds,
        gflops = format!("{gflops:.1}"),
        blas = blas_backend(),
        "top-K kernel"
    );
    if short > 0 {
        tracing::warn!(
            short_users = short,
            k = args.k,
            "users with fewer than K eligible items"
        );
    }
    Ok(short)
}

/// One chunk of users through the kernel: the output rows, and how many users are short.
fn rank_chunk(
    users: &Vectors,
    items: &Vectors,
    excluded: &HashMap<String, Vec<u32>>,
    params: &TopkParams,
) -> Result<(RecordBatch, usize)> {
    let pairs: Vec<(u32, u32)> = users
        .ids
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
    let exclusions = Adjustments::exclusions(users.len(), pairs);
    let mut short = 0;
    let (mut out_users, mut ranks, mut out_items, mut scores) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    top_k_on(
        &users.flat,
        &items.flat,
        items.dim,
        params,
        &exclusions,
        &mut |first, lists| {
            for (o, hits) in lists.into_iter().enumerate() {
                short += usize::from(hits.len() < params.k);
                for (r, h) in hits.iter().enumerate() {
                    out_users.push(users.ids[first + o].as_str());
                    ranks.push(r as i32 + 1);
                    out_items.push(items.ids[h.item as usize].as_str());
                    scores.push(h.score);
                }
            }
            Ok(())
        },
    )?;
    let batch = RecordBatch::try_new(
        output_schema(),
        vec![
            Arc::new(StringArray::from(out_users)),
            Arc::new(Int32Array::from(ranks)),
            Arc::new(StringArray::from(out_items)),
            Arc::new(Float32Array::from(scores)),
        ],
    )
    .context("building output")?;
    Ok((batch, short))
}

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
    let ids = id_strings(
        batch
            .column(batch.schema().index_of(id_col).expect("present"))
            .as_ref(),
        &format!("{what} {url}, column {id_col}"),
    )?;
    let Some(emb) = batch.column_by_name("embedding") else {
        return Err(Error::Input(format!(
            "{what} {url}, column embedding: column is missing"
        )));
    };
    let (mut flat, dim) = from_arrow(emb.as_ref()).map_err(|e| {
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
    if let Err(r) = normalize_rows(&mut flat, dim) {
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
