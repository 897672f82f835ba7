//! Parquet files on an object store: write Arrow batches (zstd), read them back.
//! A write becomes visible only when complete (local files are renamed into place, S3 uploads
//! are completed last), so a crash never leaves a truncated file at the destination.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
// ParquetObjectReader is deprecated in parquet 59 in favour of hand-written AsyncFileReader
// implementations; it remains the maintained reader over object_store, so we keep using it.
use object_store::buffered::BufWriter;
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

use super::storage::Location;
use crate::error::{Context, Error, Result};

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .build()
}

/// A Parquet file written batch by batch (memory: one row group at a time).
pub struct ParquetStreamWriter {
    writer: AsyncArrowWriter<BufWriter>,
    path: Path,
}

impl ParquetStreamWriter {
    /// A writer of `schema` batches to `path`.
    pub fn try_new(store: &Arc<dyn ObjectStore>, path: &Path, schema: SchemaRef) -> Result<Self> {
        let writer = AsyncArrowWriter::try_new(
            BufWriter::new(store.clone(), path.clone()),
            schema,
            Some(writer_properties()),
        )
        .context(format!("writing {path}"))?;
        Ok(ParquetStreamWriter {
            writer,
            path: path.clone(),
        })
    }

    /// Append a batch.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .await
            .context(format!("writing {}", self.path))
    }

    /// End the current row group here (bounds what the writer buffers).
    pub async fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .await
            .context(format!("writing {}", self.path))
    }

    /// Finish the file (it becomes visible now).
    pub async fn close(self) -> Result<()> {
        self.writer
            .close()
            .await
            .context(format!("writing {}", self.path))?;
        Ok(())
    }
}

/// Batches of a Parquet object as a stream.
#[allow(deprecated)]
pub async fn parquet_stream(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> std::result::Result<
    parquet::arrow::async_reader::ParquetRecordBatchStream<ParquetObjectReader>,
    parquet::errors::ParquetError,
> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store.clone(), path.clone());
    ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_batch_size(8192)
        .build()
}

/// Write `batches` as one Parquet file; returns the rows written.
pub async fn write_parquet(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<u64> {
    let mut w = ParquetStreamWriter::try_new(store, path, schema)?;
    let mut rows = 0u64;
    for b in batches {
        rows += b.num_rows() as u64;
        w.write(b).await?;
    }
    w.close().await?;
    Ok(rows)
}

/// `batches` as the bytes of one Parquet file (zstd, like every file the job writes).
pub fn parquet_bytes(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, Some(writer_properties()))
        .context("encoding Parquet")?;
    for b in batches {
        w.write(b).context("encoding Parquet")?;
    }
    w.close().context("encoding Parquet")?;
    Ok(buf)
}

/// Every batch of the Parquet file at `url`, an input of a command: any failure to read it is
/// bad input naming `what` and the URL.
pub async fn read_input_file(url: &str, what: &str) -> Result<Vec<RecordBatch>> {
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

/// Every batch of a Parquet object.
pub async fn read_parquet(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> std::result::Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store.clone(), path.clone());
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .build()?;
    stream.try_collect().await
}

/// The Arrow schema and row count from the footer of the Parquet object `meta`.
pub async fn parquet_footer(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
) -> std::result::Result<(SchemaRef, usize), parquet::errors::ParquetError> {
    #[allow(deprecated)]
    let reader =
        ParquetObjectReader::new(store.clone(), meta.location.clone()).with_file_size(meta.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let rows = builder.metadata().file_metadata().num_rows().max(0) as usize;
    Ok((builder.schema().clone(), rows))
}

/// Row count from a Parquet footer.
pub async fn parquet_rows(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<u64> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store.clone(), path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .context(format!("reading {path}"))?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}
