//! `recjob embed`: "embed my texts" with the nightly run's encoder. Every input column plus
//! `embedding` (`fixed_size_list<float32>[d]`, unit length), row order preserved; rows are
//! embedded and written a chunk at a time, so memory does not grow with the file.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use crate::config::{DeviceChoice, ModelConfig, ModelDtype};
use crate::error::{Context, Error, ExitCode, Result};
use crate::io::{
    Location, ParquetStreamWriter, embedding_type, read_input_file, strings, to_arrow,
};
use crate::kernels::{Encoder, SentenceEncoder, blas_backend, embed_texts, warn_if_slow_blas};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Sentence-transformers model directory.
    #[arg(long)]
    model: PathBuf,
    /// Input Parquet file (path or URL).
    #[arg(long)]
    input: String,
    /// Text column to embed.
    #[arg(long, default_value = "text")]
    column: String,
    /// Output Parquet file (path or URL).
    #[arg(long)]
    output: String,
    #[arg(long, value_enum, default_value_t = ModelConfig::default().device)]
    device: DeviceChoice,
    /// Tokens per encoder batch, padding included.
    #[arg(long, default_value_t = ModelConfig::default().max_batch_tokens)]
    max_batch_tokens: usize,
    /// Text prepended to every text before tokenisation (default: the model folder's, e.g.
    /// `query: ` for multilingual-e5-small, none for MiniLM).
    #[arg(long)]
    prefix: Option<String>,
    /// Precision on a GPU (`model.dtype`); the CPU encoder runs f32.
    #[arg(long, value_enum, default_value_t = ModelDtype::F32)]
    dtype: ModelDtype,
}

pub(super) async fn execute(args: Args) -> Result<ExitCode> {
    let n = embed_file(&args).await?;
    println!("embedded {n} texts into {}", args.output);
    Ok(ExitCode::Published)
}

/// `recjob embed`: every input column plus `embedding`, in input order.
async fn embed_file(args: &Args) -> Result<usize> {
    let (input, column, output) = (&args.input, &args.column, &args.output);
    let batches = read_input_file(input, "input").await?;
    let Some(first) = batches.first() else {
        return Err(Error::Input(format!("input {input}: no rows")));
    };
    let batch = arrow::compute::concat_batches(&first.schema(), &batches)
        .context(format!("reading {input}"))?;
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
    let encoder = SentenceEncoder::load_as(
        &args.model,
        args.device,
        args.prefix.as_deref(),
        args.dtype,
        false,
    )?;
    tracing::info!(
        model = encoder.model_id(),
        device = encoder.device(),
        blas = blas_backend(),
        "loaded encoder"
    );
    warn_if_slow_blas();
    let dim = encoder.dim();
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&c| batch.schema().field(c).name() != "embedding")
        .collect();
    let mut fields: Vec<Field> = keep
        .iter()
        .map(|&c| batch.schema().field(c).clone())
        .collect();
    fields.push(Field::new("embedding", embedding_type(dim), false));
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
        let (flat, _) = embed_texts(&encoder, &refs, args.max_batch_tokens)?;
        let mut columns: Vec<ArrayRef> = keep.iter().map(|&c| chunk.column(c).clone()).collect();
        columns.push(to_arrow(&flat, dim));
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
