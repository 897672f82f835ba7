#!/usr/bin/env python3
"""Digest of a run's published partitions, `run_id` aside: one line per table partition,
`<table>/dt=<D>  <rows>  <sha256>`, where the hash covers every other column's values in file
order (Arrow IPC of the table without `run_id`). The files are the ones each date's manifest
lists (a local output root). Two runs that wrote the same rows print the
same lines, so `diff` of two digests proves outputs identical across a code change.

    python scripts/output_digest.py OUTPUT_ROOT [DATE ...]
"""
import hashlib
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

TABLES = ["recommendations", "user_embeddings", "item_vectors", "similar_items", "metrics"]


def digest(path: Path) -> tuple[int, str]:
    table = pq.read_table(path)
    if "run_id" in table.column_names:
        table = table.drop_columns(["run_id"])
    table = table.combine_chunks()
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return table.num_rows, hashlib.sha256(sink.getvalue()).hexdigest()


def main() -> None:
    root = Path(sys.argv[1])
    dates = sys.argv[2:]
    listed = {}
    for m in sorted((root / "_manifests").glob("dt=*/manifest.json")):
        date = m.parent.name[3:]
        if not dates or date in dates:
            for entry in json.loads(m.read_text())["tables"]:
                listed[(entry["table"], date)] = Path(entry["url"].removeprefix("file://"))
    for t in TABLES:
        for (table, date), f in sorted(listed.items()):
            if table == t:
                rows, h = digest(f)
                print(f"{t}/dt={date}\t{rows}\t{h}")
    cache = root / "item_embeddings"
    if cache.exists():
        tables = [pq.read_table(f).drop_columns(["run_id"]) for f in sorted(cache.glob("*.parquet"))]
        if tables:
            t = pa.concat_tables(tables).sort_by([("content_hash", "ascending")])
            sink = io.BytesIO()
            with ipc.new_stream(sink, t.schema) as w:
                w.write_table(t.combine_chunks())
            print(f"item_embeddings\t{t.num_rows}\t{hashlib.sha256(sink.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
