"""Compaction: a table's per-trial Parquet files merged into a few large files, atomically.

A sweep writes one file per trial per table (one writer per file, so a crash never leaves a half-written
file).  A 10^4-trial sweep would leave 4 x 10^4 small files, slow to list and to read; when a sweep ends
(and when `--resume` starts) each table's per-trial files are merged into one compacted file
(`results.PART_PREFIX`).  The merged file is written under a temporary name and renamed before any merged
file is deleted; until those deletions finish, the compacted file shadows the per-trial files it holds
(`results.table_files`), so a reader never sees a row twice or misses one.  Pandas, pyarrow, polars and
DuckDB read the folder as before: every file is a plain Parquet file of the table's schema.
"""

from __future__ import annotations

import logging
import uuid
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from . import results
from .results import files, read

log = logging.getLogger(__name__)

MAX_PARTS = 8  # more compacted files than this in a table: they are merged too


def compact(sweep_root: str, tables: Sequence[str] = (*results.TABLES, *results.OPTIONAL_TABLES),
            min_files: int = 2) -> dict[str, int]:
    """Merge each table's per-trial files (at least `min_files` of them) into one compacted file; returns
    table -> the number of files merged (0 where nothing was done)."""
    return {table: _compact_table(sweep_root, table, min_files) for table in tables}


def _compact_table(sweep_root: str, table: str, min_files: int) -> int:
    fs, parts, singles = files._listing(sweep_root, table)
    merge = list(singles.values()) + (list(parts) if len(parts) > MAX_PARTS else [])
    if len(merge) < max(2, min_files):
        return 0
    # one schema over all files (those of different versions too, as `results.read_table` reads them), then the
    # rows read.CHUNK_FILES files at a time (merging 3000 files at once: 1.1 GB; 256 at a time: 0.25 GB)
    schemas = {}
    for path in merge:
        found = pq.read_schema(path, filesystem=fs)
        schemas.setdefault(str(found), found)
    schema = pa.unify_schemas(list(schemas.values()))
    schema = schema.with_metadata({**(schema.metadata or {}), **(results.SCHEMAS[table]().metadata or {})})
    seen: set[str] = set()
    rows = 0

    def chunks() -> Iterator[pa.Table]:
        nonlocal rows
        for chunk in read.read_chunks(fs, merge, schema):
            if table == "trials":
                ids = chunk.column("trial_id").to_pylist()
                if len(set(ids)) != len(ids) or seen & set(ids):
                    raise results.SweepFolderError(f"{sweep_root}: trials/ holds a trial twice; not compacted")
                seen.update(ids)
            rows += chunk.num_rows
            yield chunk

    files.write_chunks_atomic(schema, chunks(), results.table_uri(sweep_root, table),
                              f"{results.PART_PREFIX}{uuid.uuid4().hex}")
    for path in merge:  # the compacted file now shadows these: deleting them can stop at any point
        files._delete_quietly(fs, path)
    log.debug("%s: %s/ compacted, %d files into one (%d rows)", sweep_root, table, len(merge), rows)
    return len(merge)
