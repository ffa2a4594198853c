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
from typing import Sequence

import pyarrow as pa
import pyarrow.dataset as pads

from . import results
from .results import files

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
    dataset = pads.dataset(merge, filesystem=fs, format="parquet")
    schemas = {str(fr.physical_schema): fr.physical_schema for fr in dataset.get_fragments()}
    if len(schemas) > 1:  # files of different versions: one unified schema, as `results.read_table` reads them
        dataset = pads.dataset(merge, filesystem=fs, format="parquet", schema=pa.unify_schemas(list(schemas.values())))
    merged = dataset.to_table()
    if table == "trials":
        ids = merged.column("trial_id").to_pylist()
        if len(ids) != len(set(ids)):
            raise results.SweepFolderError(f"{sweep_root}: trials/ holds a trial twice; not compacted")
    schema = results.SCHEMAS[table]()
    merged = merged.replace_schema_metadata({**(merged.schema.metadata or {}), **(schema.metadata or {})})
    files._write_atomic(merged, results.table_uri(sweep_root, table), f"{results.PART_PREFIX}{uuid.uuid4().hex}")
    for path in merge:  # the compacted file now shadows these: deleting them can stop at any point
        files._delete_quietly(fs, path)
    log.debug("%s: %s/ compacted, %d files into one (%d rows)", sweep_root, table, len(merge), merged.num_rows)
    return len(merge)
