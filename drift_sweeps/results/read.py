"""Reading a sweep folder: its checks (a damaged or foreign file is named) and its tables as DataFrames."""

from __future__ import annotations

import posixpath
from typing import Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..spine.config import defaults
from .files import SweepFolderError, _damaged, _subfolders, is_part, resolve, table_files, table_uri
from .schema import OPTIONAL_TABLES, SCHEMA_VERSION, SCHEMAS, TABLES, required_columns

def file_versions(sweep_root: str, table: str) -> set[str]:
    """The schema_version metadata values found in one table's Parquet files."""
    fs, paths = table_files(sweep_root, table)
    versions = set()
    for path in paths:
        meta = _file_schema(fs, path).metadata or {}
        versions.add(meta.get(b"schema_version", b"<none>").decode())
    return versions


def _file_schema(fs: pafs.FileSystem, path: str) -> pa.Schema:
    """A Parquet file's schema; a damaged file (truncated, not Parquet) is a SweepFolderError naming it."""
    try:
        return pq.read_schema(path, filesystem=fs)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise _damaged(path, f"not a readable Parquet file ({' '.join(str(err).split())[:200]})") from None


CHUNK_FILES = 256  # files read at once: a dataset of 3000 trials files held 0.8 GB of their Parquet metadata


def _check_files(fs: pafs.FileSystem, files: Sequence[str], table: str) -> pa.Schema:
    """The files' schema (unified over files written by different versions).  Refuses, naming the file, a
    damaged file, a column of the wrong type, or a trials file whose row is not the trial its name says (a
    copy or a duplicate).  Each file is opened once."""
    expected = {f.name: f.type for f in SCHEMAS[table]()}
    found: dict[str, pa.Schema] = {}
    for path in files:
        ids = None
        try:
            with fs.open_input_file(path) as handle:
                parquet = pq.ParquetFile(handle)
                schema = parquet.schema_arrow
                if table == "trials" and not is_part(path):  # a compacted file's ids are checked as it is written
                    ids = parquet.read(columns=["trial_id"]).column("trial_id").to_pylist()
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            raise _damaged(path, f"not a readable Parquet file ({' '.join(str(err).split())[:200]})") from None
        for field in schema:
            want = expected.get(field.name)
            if want is not None and field.type != want and not pa.types.is_null(field.type):
                raise _damaged(path, f"column {field.name!r} is {field.type}, the schema says {want}")
        name = posixpath.basename(path)[: -len(".parquet")]
        if ids is not None and ids != [name]:
            raise _damaged(path, f"holds trial id(s) {ids[:3]} but is named after {name!r} (one row per trial, "
                                 "in the file named after it: a copied or renamed file?)")
        found.setdefault(str(schema), schema)
    schemas = list(found.values())
    return schemas[0] if len(schemas) == 1 else pa.unify_schemas(schemas)


def read_chunks(fs: pafs.FileSystem, files: Sequence[str], schema: pa.Schema) -> Iterator[pa.Table]:
    """The files' rows under `schema`, CHUNK_FILES files at a time: memory flat in the number of files."""
    for i in range(0, len(files), CHUNK_FILES):
        chunk = pads.dataset(list(files[i:i + CHUNK_FILES]), filesystem=fs, format="parquet", schema=schema)
        yield chunk.to_table().combine_chunks()  # one batch, not one per file (3000 files: 1.2 GB -> 0.26 GB)


def check_sweep_folder(sweep_root: str, tables: Sequence[str] = TABLES) -> None:
    """Raise SweepFolderError naming what is wrong if `sweep_root` is not a sweep folder of this schema
    (every one of `tables` present, with Parquet files of schema version SCHEMA_VERSION)."""
    fs, path = resolve(sweep_root)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise SweepFolderError(f"{sweep_root}: no such folder")
    if info.type != pafs.FileType.Directory:
        raise SweepFolderError(f"{sweep_root}: not a folder (expected a sweep folder holding {', '.join(TABLES)}/)")
    subs = _subfolders(fs, path)
    missing = [t for t in tables if t not in subs]
    if not set(TABLES) & set(subs):
        nested = [s for s in subs if set(TABLES) & set(_subfolders(fs, f"{path}/{s}"))]
        hint = (f"; it looks like a results root holding the sweep(s) {', '.join(nested)}: pass one of those folders"
                if nested else "")
        raise SweepFolderError(f"{sweep_root} is not a drift_sweeps sweep folder: none of the tables "
                               f"{', '.join(t + '/' for t in TABLES)} is there{hint}")
    if missing:
        raise SweepFolderError(f"{sweep_root}: incomplete sweep folder, missing table(s) "
                               f"{', '.join(t + '/' for t in missing)} (found {', '.join(subs) or 'nothing'})")
    for table in tables:
        versions = file_versions(sweep_root, table)
        if not versions:
            raise SweepFolderError(f"{sweep_root}: table {table}/ holds no Parquet files")
        wrong = sorted(versions - {str(SCHEMA_VERSION)})
        if wrong:
            raise SweepFolderError(
                f"{sweep_root}: table {table}/ was written with schema version {', '.join(wrong)}, but this "
                f"version reads schema version {SCHEMA_VERSION} (drift_sweeps.results.SCHEMA_VERSION); "
                "analyse it with the drift_sweeps version that wrote it, or re-run the sweep")


def read_table(sweep_root: str, table: str) -> pd.DataFrame:
    """Read one table of a sweep folder whole (ignores temporary files); raises if missing.

    Files written by different versions are read together: columns of the current schema that a file
    lacks are null, columns the current schema no longer has are kept.
    """
    if table not in (*TABLES, *OPTIONAL_TABLES):
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    fs, files = table_files(sweep_root, table)
    if not files:
        fs_, folder = resolve(table_uri(sweep_root, table))
        if fs_.get_file_info(folder).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"{sweep_root}: no {table}/ table (is this a drift_sweeps sweep folder?)")
        raise FileNotFoundError(f"{sweep_root}: {table}/ holds no Parquet files")
    schema = _check_files(fs, files, table)
    try:
        df = pa.concat_tables(list(read_chunks(fs, files, schema))).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as err:
        for path in files:  # name the file that cannot be read
            try:
                pq.read_table(path, filesystem=fs)
            except (pa.ArrowException, OSError, ValueError) as file_err:
                raise _damaged(path, f"unreadable ({' '.join(str(file_err).split())[:200]})") from None
        raise SweepFolderError(f"{sweep_root}: table {table}/ cannot be read whole "
                               f"({' '.join(str(err).split())[:200]})") from None
    lacking = [c for c in required_columns(table) if c not in df.columns]
    if lacking:
        raise SweepFolderError(f"{sweep_root}: table {table}/ lacks column(s) {', '.join(lacking)} "
                               f"of schema version {SCHEMA_VERSION}")
    config_defaults = defaults() if table == "trials" else {}
    for f in SCHEMAS[table]():
        if f.name not in df.columns:  # an older file: a config key means its default, anything else null
            fill = config_defaults.get(f.name)
            df[f.name] = pd.Series([fill] * len(df), dtype=float if pa.types.is_floating(f.type) else object)
    return df
