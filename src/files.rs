//! Parquet files on an object store: write Arrow batches (zstd), read them back.
//! A write becomes visible only when complete (local files are renamed into place, S3 uploads
//! are completed last), so a crash never leaves a truncated file at the destination.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
// ParquetObjectReader is deprecated in parquet 59 in favour of hand-written AsyncFileReader
// implementations; it remains the maintained reader over object_store, so we keep using it.
use object_store::buffered::BufWriter;
#[allow(deprecated)]
pub use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

use crate::error::{Context, Result};

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

/// Row count from a Parquet footer.
pub async fn parquet_rows(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<u64> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store.clone(), path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .context(format!("reading {path}"))?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}
