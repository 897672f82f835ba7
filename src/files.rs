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
#[allow(deprecated)]
pub use parquet::arrow::async_reader::ParquetObjectReader;
use object_store::buffered::BufWriter;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

use crate::error::{Context, Result};

pub async fn write_parquet(store: &Arc<dyn ObjectStore>, path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<u64> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .build();
    let writer = BufWriter::new(store.clone(), path.clone());
    let mut w = AsyncArrowWriter::try_new(writer, schema, Some(props)).context(format!("writing {path}"))?;
    let mut rows = 0u64;
    for b in batches {
        rows += b.num_rows() as u64;
        w.write(b).await.context(format!("writing {path}"))?;
    }
    w.close().await.context(format!("writing {path}"))?;
    Ok(rows)
}

/// Every batch of a Parquet object.
pub async fn read_parquet(store: &Arc<dyn ObjectStore>, path: &Path) -> std::result::Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store.clone(), path.clone());
    let stream = ParquetRecordBatchStreamBuilder::new(reader).await?.build()?;
    stream.try_collect().await
}

/// Row count from a Parquet footer.
pub async fn parquet_rows(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<u64> {
    #[allow(deprecated)]
    let reader = ParquetObjectReader::new(store.clone(), path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await.context(format!("reading {path}"))?;
    Ok(builder.metadata().file_metadata().num_rows().max(0) as u64)
}
