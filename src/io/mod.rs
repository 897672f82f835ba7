//! The I/O layer: object-store locations, Parquet files, Hive partitions, Arrow arrays, SQL
//! helpers and column contracts. Knows nothing of stages; uses [`crate::domain`] and
//! [`crate::error`].

mod arrays;
mod columns;
mod faults;
mod files;
mod functions;
mod listings;
mod partitions;
mod scratch;
mod sql;
mod storage;

pub use arrays::{embedding_type, from_arrow, id_strings, int_values, strings, to_arrow};
pub use columns::{Columns, Kind};
pub use files::{
    ParquetStreamWriter, parquet_bytes, parquet_footer, parquet_rows, parquet_stream,
    read_input_file, read_parquet, write_parquet,
};
pub use functions::Dot;
pub use listings::runtime_builder;
pub use partitions::{is_data_file, partition_date, partition_files, partitions, table_files};
pub use scratch::ScratchRows;
pub use sql::{
    from_datafusion, int_table, listing_table, mem_table, pinned_table, query, register,
    register_view, string_table, utf8,
};
pub use storage::Location;
