"""Other engines read recjob's published Parquet: row counts and dt values per table, as DuckDB
(hive_partitioning) and pyarrow (dataset, partitioning='hive') see them. Prints one JSON object.
Used by tests/it/analyst.rs, which compares the counts with `recjob sql`.

usage: readers.py OUTPUT_ROOT
"""
import json
import sys

import duckdb
import pyarrow.dataset as ds

root = sys.argv[1]
out = {}
for table in ["recommendations", "user_embeddings", "item_vectors", "similar_items", "item_neighbors",
              "metrics"]:
    path = f"{root}/{table}"
    d = duckdb.sql(
        f"SELECT CAST(dt AS VARCHAR) AS dt, typeof(dt) AS t, count(*) AS n "
        f"FROM read_parquet('{path}/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY 1"
    ).fetchall()
    p = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    counts = {}
    for dt in p.column("dt").to_pylist():
        counts[str(dt)] = counts.get(str(dt), 0) + 1
    out[table] = {
        "duckdb": {dt: n for dt, _, n in d},
        "duckdb_dt_type": sorted({t for _, t, _ in d}),
        "pyarrow": counts,
        "pyarrow_dt_type": str(p.schema.field("dt").type),
    }
print(json.dumps(out))
