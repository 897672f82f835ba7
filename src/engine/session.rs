//! The DataFusion session every stage shares: one `SessionContext` per run, with recjob's
//! functions ([`super::udf`]); stages register the stores of the URLs they read.

use datafusion::prelude::{SessionConfig, SessionContext};

use crate::io::runtime_builder;

/// A new session for one run.
pub fn context() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .with_information_schema(true);
    let runtime = runtime_builder()
        .build_arc()
        .expect("the default runtime builds");
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for f in super::udf::all() {
        ctx.register_udf(f);
    }
    ctx
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int32Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::context;
    use crate::io::{Location, listing_table, write_parquet};

    /// A session sees a file written after it first read the table: the commit protocol reads
    /// back what it published, and other processes publish while a run is alive.
    #[tokio::test]
    async fn a_session_sees_files_written_after_its_first_listing() {
        let dir = tempfile::tempdir().unwrap();
        let table = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))])
                .unwrap();
        let ctx = context();
        table.register(&ctx);
        let count = || async {
            let t = listing_table(&ctx, &table, Some(schema.clone()), None)
                .await
                .unwrap();
            ctx.deregister_table("t").unwrap();
            ctx.register_table("t", Arc::new(t)).unwrap();
            let batches = ctx
                .sql("SELECT count(*) FROM t")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            batches[0].column(0).as_primitive::<Int64Type>().value(0)
        };
        for (n, name) in ["a.parquet", "b.parquet"].iter().enumerate() {
            write_parquet(
                &table.store,
                &table.prefix.clone().join(*name),
                schema.clone(),
                std::slice::from_ref(&batch),
            )
            .await
            .unwrap();
            assert_eq!(count().await, 2 * (n as i64 + 1), "after writing {name}");
        }
    }
}
