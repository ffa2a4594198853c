"""The results store: the only owner of the Parquet schema.  pandas/pyarrow only (no torch, no ray).

Layout under ``<results>/<sweep>/``: ``trials/``, ``curves/``, ``spectra/``; one file per trial
per table named ``<trial_id>.parquet``, written to a temporary name and renamed, so a crash
never leaves a partial file and a re-run or resumed trial replaces its file instead of
duplicating rows.  ``<results>`` may be a local path or an ``s3://`` URI.
"""

from __future__ import annotations

import json
import logging
import posixpath
import uuid
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .spine import record
from .spine.config import defaults, field_types

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # additive changes (a new nullable column) keep the version; readers fill what is absent
TABLES = ("trials", "curves", "spectra")
OPTIONAL_TABLES = ("samples",)  # written when trials store samples; a sweep folder is complete without them

# Parquet type of each Python type used by the record and the config.
_ARROW_OF_PY = {
    bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string(), Optional[str]: pa.string(),
    tuple[float, ...]: pa.list_(pa.float64()),
}


def _arrow_fields(types: Mapping[str, Any]) -> list[pa.Field]:
    return [pa.field(name, _ARROW_OF_PY[tp]) for name, tp in types.items()]


# Fixed columns of `trials`: identity, the summary record (drift_sweeps.spine.record), provenance; every
# TrialConfig key is added as its own column after these.
TRIAL_FIELDS: list[pa.Field] = [
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("sweep", pa.string()),
    pa.field("trial_id", pa.string(), nullable=False),
    *[f if f.name != "status" else f.with_nullable(False) for f in _arrow_fields(record.SUMMARY_FIELDS)],
    pa.field("node", pa.string()),
    pa.field("attempts", pa.int32()),  # 1 + retries used
    pa.field("error", pa.string()),  # last error message, null when none
    pa.field("swept_axes", pa.string()),  # comma-separated names of the sweep's varied keys
    pa.field("variant", pa.string()),  # the space's variant name; null when the space has one variant
    pa.field("versions", pa.string()),  # JSON: python, torch, ray, ... versions
    pa.field("git_commit", pa.string()),
    pa.field("config_json", pa.string()),
]

CURVES_SCHEMA = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    *[f if f.name != "step" else f.with_nullable(False) for f in _arrow_fields(record.CURVE_METRICS)],
], metadata={"schema_version": str(SCHEMA_VERSION)})

SPECTRA_SCHEMA = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("step", pa.int64(), nullable=False),
    pa.field("t", pa.float64()),
    pa.field("k", pa.int64()),  # max_i |k_i|: the frequency shell (the frequency itself in 1-D)
    pa.field("k_norm", pa.float64()),  # Euclidean |k|, what the linear theory's rate depends on
    pa.field("k_vec", pa.string()),  # the integer frequency vector, e.g. "3" or "1,-2"
    pa.field("error", pa.float64()),  # |E_q exp(i k.x) - phi_p(k)|
], metadata={"schema_version": str(SCHEMA_VERSION)})


def trials_schema() -> pa.Schema:
    """Schema of `trials`: the fixed columns plus one column per TrialConfig key."""
    fixed = {f.name for f in TRIAL_FIELDS}
    extra = []
    for name, tp in field_types().items():
        if name in fixed:
            raise ValueError(f"config key {name!r} collides with a fixed trials column")
        if tp not in _ARROW_OF_PY:
            raise TypeError(f"config key {name!r}: no Parquet type for {tp!r}")
        extra.append(pa.field(name, _ARROW_OF_PY[tp]))
    return pa.schema(TRIAL_FIELDS + extra, metadata={"schema_version": str(SCHEMA_VERSION)})


# `samples` (optional): the last evaluation's samples of each trial (config key `samples_kept`, 0 = none),
# one row per sample, its coordinates as a list
SAMPLES_SCHEMA = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("step", pa.int64(), nullable=False),
    pa.field("index", pa.int64()),
    pa.field("x", pa.list_(pa.float64())),
], metadata={"schema_version": str(SCHEMA_VERSION)})

SCHEMAS: dict[str, Callable[[], pa.Schema]] = {
    "trials": trials_schema, "curves": lambda: CURVES_SCHEMA, "spectra": lambda: SPECTRA_SCHEMA,
    "samples": lambda: SAMPLES_SCHEMA,
}


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or an s3:// URI (endpoint from ?endpoint_override= or env)."""
    if "://" in uri:
        if uri.startswith("s3://") and "allow_delayed_open=" not in uri:
            # small files then go up in one PutObject instead of a multipart upload: fewer round
            # trips, and S3 emulators (moto 5.2) reject pyarrow 26's CompleteMultipartUpload
            uri += ("&" if "?" in uri else "?") + "allow_delayed_open=true"
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), posixpath.abspath(uri)


def sweep_uri(results: str, sweep: str) -> str:
    """URI of one sweep's folder under a results root (keeps any ?query of an s3 URI)."""
    base, _, query = results.partition("?")
    joined = base.rstrip("/") + "/" + sweep
    return joined + ("?" + query if query else "")


def table_uri(sweep_root: str, table: str) -> str:
    """URI of one table's folder under a sweep folder."""
    base, _, query = sweep_root.partition("?")
    return base.rstrip("/") + "/" + table + ("?" + query if query else "")


def _write_atomic(table: pa.Table, folder_uri: str, name: str) -> str:
    fs, folder = resolve(folder_uri)
    fs.create_dir(folder, recursive=True)
    final = f"{folder}/{name}.parquet"
    tmp = f"{folder}/.tmp-{name}-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp, filesystem=fs)
        fs.move(tmp, final)  # atomic rename locally; on object stores the put itself is atomic
    except BaseException:
        _delete_quietly(fs, tmp)
        raise
    return final


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except OSError:
        pass  # never written, or already gone


# A compacted file holds the rows of many trials (`compaction.compact`); every other file is one trial's,
# named after it.  A trial in a compacted file shadows a per-trial file of the same id (left by a compaction
# that stopped between writing the part and deleting what it merged), so no row is ever read twice.
PART_PREFIX = "part-"  # not "_" or ".": pyarrow and pandas skip such names


def _safe_name(trial_id: str) -> str:
    if (not trial_id or any(c in trial_id for c in "/\\?#") or trial_id.startswith(".")
            or trial_id.startswith(PART_PREFIX)):
        raise ValueError(f"trial_id {trial_id!r} is not usable as a file name")
    return trial_id


def trial_row(
    *,
    sweep: str,
    trial_id: str,
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    node: str,
    attempts: int = 1,
    error: Optional[str] = None,
    swept_axes: Sequence[str] = (),
    variant: Optional[str] = None,
    versions: Optional[Mapping[str, str]] = None,
    git_commit: Optional[str] = None,
) -> dict[str, Any]:
    """One `trials` row from a config dict and a run_trial summary (or a failure)."""
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "sweep": sweep, "trial_id": trial_id,
        "status": summary.get("status", record.ERROR), "node": node, "attempts": attempts, "error": error,
        "swept_axes": ",".join(swept_axes), "variant": variant,
        "versions": json.dumps(dict(versions or {}), sort_keys=True),
        "git_commit": git_commit, "config_json": json.dumps(dict(config), sort_keys=True),
    }
    for f in TRIAL_FIELDS:
        if f.name not in row:
            row[f.name] = summary.get(f.name)
    if row["status"] not in record.STATUSES:
        raise ValueError(f"status {row['status']!r} not one of {record.STATUSES}")
    row.update(config)
    return row


def write_trial(sweep_root: str, trial_id: str, row: Mapping[str, Any]) -> str:
    """Write the one-row `trials` file of a trial."""
    schema = trials_schema()
    table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema}], schema=schema)
    return _write_atomic(table, table_uri(sweep_root, "trials"), _safe_name(trial_id))


def write_curves(sweep_root: str, trial_id: str, reports: Iterable[Mapping[str, Any]]) -> str:
    """Write the `curves` file of a trial from its per-eval reports."""
    rows = [{f.name: (trial_id if f.name == "trial_id" else r.get(f.name)) for f in CURVES_SCHEMA} for r in reports]
    table = pa.Table.from_pylist(rows, schema=CURVES_SCHEMA)
    return _write_atomic(table, table_uri(sweep_root, "curves"), _safe_name(trial_id))


def write_samples(sweep_root: str, trial_id: str, reports: Iterable[Mapping[str, Any]]) -> Optional[str]:
    """Write the `samples` file of a trial from the reports that carry samples; nothing when none does."""
    rows = [{"trial_id": trial_id, "step": r.get("step"), "index": i, "x": [float(c) for c in x]}
            for r in reports for i, x in enumerate(r.get(record.SAMPLES_KEY) or [])]
    if not rows:
        return None
    return _write_atomic(pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA), table_uri(sweep_root, "samples"),
                         _safe_name(trial_id))


def write_spectra(sweep_root: str, trial_id: str, reports: Iterable[Mapping[str, Any]]) -> str:
    """Write the `spectra` file of a trial: one row per report per frequency (`spectrum_k`, `spectrum_error`)."""
    cols: dict[str, list] = {f.name: [] for f in SPECTRA_SCHEMA}
    for r in reports:
        ks, errs = r.get("spectrum_k") or [], r.get("spectrum_error") or []
        if len(ks) != len(errs):
            raise ValueError(f"trial {trial_id} step {r.get('step')}: {len(ks)} frequencies but {len(errs)} errors")
        for kv, e in zip(ks, errs):
            kv = [int(c) for c in (kv if isinstance(kv, (list, tuple)) else [kv])]
            cols["trial_id"].append(trial_id)
            cols["step"].append(r.get("step"))
            cols["t"].append(r.get("t"))
            cols["k"].append(max(abs(c) for c in kv))
            cols["k_norm"].append(sum(c * c for c in kv) ** 0.5)
            cols["k_vec"].append(",".join(map(str, kv)))
            cols["error"].append(e)
    table = pa.Table.from_pydict(cols, schema=SPECTRA_SCHEMA)
    return _write_atomic(table, table_uri(sweep_root, "spectra"), _safe_name(trial_id))


# ---- reading: listing, checks, tables ---------------------------------------------------------------

class SweepFolderError(ValueError):
    """The folder is not a readable drift_sweeps sweep folder; the message says what is wrong."""


def _is_table_file(path: str) -> bool:
    base = posixpath.basename(path)
    return base.endswith(".parquet") and not base.startswith(".")  # hidden names are writers' temporaries


def is_part(path: str) -> bool:
    """True for a compacted file (the rows of many trials)."""
    return posixpath.basename(path).startswith(PART_PREFIX)


def _part_ids(fs: pafs.FileSystem, parts: Sequence[str]) -> dict[str, list[str]]:
    """Compacted file -> the trial ids it holds."""
    out = {}
    for path in parts:
        try:
            out[path] = sorted(set(pq.read_table(path, filesystem=fs, columns=["trial_id"]).column("trial_id")
                                   .to_pylist()))
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            raise _damaged(path, f"unreadable ({' '.join(str(err).split())[:200]})") from None
    return out


def _listing(sweep_root: str, table: str) -> tuple[pafs.FileSystem, dict[str, list[str]], dict[str, str]]:
    """(filesystem, compacted file -> its trial ids, trial id -> its per-trial file not shadowed by a part)."""
    fs, folder = resolve(table_uri(sweep_root, table))
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return fs, {}, {}
    paths = sorted(f.path for f in fs.get_file_info(pafs.FileSelector(folder)) if f.is_file and _is_table_file(f.path))
    parts = _part_ids(fs, [p for p in paths if is_part(p)])
    in_parts = {tid for ids in parts.values() for tid in ids}
    singles = {posixpath.basename(p)[: -len(".parquet")]: p for p in paths if not is_part(p)}
    return fs, parts, {tid: p for tid, p in singles.items() if tid not in in_parts}


def table_files(sweep_root: str, table: str) -> tuple[pafs.FileSystem, list[str]]:
    """(filesystem, paths) of one table's Parquet files, sorted (compacted files, then per-trial files that no
    compacted file shadows); no paths when the folder is absent."""
    fs, parts, singles = _listing(sweep_root, table)
    return fs, sorted(parts) + sorted(singles.values())


def trial_ids(sweep_root: str, table: str = "trials") -> set[str]:
    """Trial ids that already have rows in `table` (empty if the folder does not exist)."""
    _, parts, singles = _listing(sweep_root, table)
    return set(singles) | {tid for ids in parts.values() for tid in ids}


def _subfolders(fs: pafs.FileSystem, path: str) -> list[str]:
    try:
        return sorted(posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(path))
                      if i.type == pafs.FileType.Directory)
    except OSError:
        return []


def tables_present(sweep_root: str) -> list[str]:
    """The tables of TABLES whose folder exists and holds at least one Parquet file."""
    return [t for t in TABLES if table_files(sweep_root, t)[1]]


def file_versions(sweep_root: str, table: str) -> set[str]:
    """The schema_version metadata values found in one table's Parquet files."""
    fs, paths = table_files(sweep_root, table)
    versions = set()
    for path in paths:
        meta = _file_schema(fs, path).metadata or {}
        versions.add(meta.get(b"schema_version", b"<none>").decode())
    return versions


def _damaged(path: str, what: str) -> SweepFolderError:
    return SweepFolderError(f"{path}: {what}; move or delete this file (a `--resume` of the sweep runs its "
                            "trial again when its trials/ file is gone)")


def _file_schema(fs: pafs.FileSystem, path: str) -> pa.Schema:
    """A Parquet file's schema; a damaged file (truncated, not Parquet) is a SweepFolderError naming it."""
    try:
        return pq.read_schema(path, filesystem=fs)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise _damaged(path, f"not a readable Parquet file ({' '.join(str(err).split())[:200]})") from None


def _check_files(fs: pafs.FileSystem, files: Sequence[str], table: str) -> None:
    """Refuse (naming the file) a damaged file, a column of the wrong type, or a trials file whose row is
    not the trial its name says (a copy or a duplicate)."""
    expected = {f.name: f.type for f in SCHEMAS[table]()}
    for path in files:
        schema = _file_schema(fs, path)
        for field in schema:
            want = expected.get(field.name)
            if want is not None and field.type != want and not pa.types.is_null(field.type):
                raise _damaged(path, f"column {field.name!r} is {field.type}, the schema says {want}")
    if table != "trials":
        return
    for path in files:
        if is_part(path):
            continue  # a compacted file's ids are checked when it is written (one row per trial)
        try:
            ids = pq.read_table(path, filesystem=fs, columns=["trial_id"]).column("trial_id").to_pylist()
        except (pa.ArrowException, OSError, ValueError, KeyError) as err:
            raise _damaged(path, f"unreadable ({' '.join(str(err).split())[:200]})") from None
        name = posixpath.basename(path)[: -len(".parquet")]
        if ids != [name]:
            raise _damaged(path, f"holds trial id(s) {ids[:3]} but is named after {name!r} (one row per trial, "
                                 "in the file named after it: a copied or renamed file?)")


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


def required_columns(table: str) -> list[str]:
    """Columns every file of `table` has had since SCHEMA_VERSION (config columns may come and go)."""
    if table == "trials":  # `variant` and the quality columns came later: filled with null
        return [f.name for f in TRIAL_FIELDS if f.name != "variant" and f.name not in record.ADDED_LATER]
    return [n for n in SCHEMAS[table]().names if n not in record.ADDED_LATER]


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
    _check_files(fs, files, table)
    try:
        dataset = pads.dataset(files, filesystem=fs, format="parquet")
        schemas = {str(fr.physical_schema): fr.physical_schema for fr in dataset.get_fragments()}
        if len(schemas) > 1:  # files of different versions: read them under one unified schema
            dataset = pads.dataset(files, filesystem=fs, format="parquet",
                                   schema=pa.unify_schemas(list(schemas.values())))
        df = dataset.to_table().to_pandas()
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


# ---- sweep folder housekeeping (JSON records, removal) -----------------------------------------

def write_json(sweep_root: str, relpath: str, obj: Any) -> str:
    """Write a JSON record (e.g. ``sweep.json``, ``configs/<trial_id>.json``) atomically under a sweep folder."""
    folder_rel, _, name = relpath.rpartition("/")
    fs, root = resolve(sweep_root)
    folder = f"{root}/{folder_rel}" if folder_rel else root
    fs.create_dir(folder, recursive=True)
    tmp = f"{folder}/.tmp-{name}-{uuid.uuid4().hex}"
    try:
        with fs.open_output_stream(tmp) as out:
            out.write(json.dumps(obj, indent=1, sort_keys=True, default=str).encode())
        fs.move(tmp, f"{folder}/{name}")
    except BaseException:
        _delete_quietly(fs, tmp)
        raise
    return f"{folder}/{name}"


def read_json(sweep_root: str, relpath: str) -> Any:
    """Read a JSON record under a sweep folder; None when it does not exist."""
    fs, root = resolve(sweep_root)
    path = f"{root}/{relpath}"
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.readall().decode())


def remove_trials(sweep_root: str, which: Callable[[str], bool]) -> set[str]:
    """Delete every table file and config record of the trial ids for which `which(trial_id)` is true."""
    fs, root = resolve(sweep_root)
    removed: set[str] = set()
    for table in (*TABLES, *OPTIONAL_TABLES):
        _, parts, singles = _listing(sweep_root, table)
        for tid, path in singles.items():
            if which(tid):
                fs.delete_file(path)
                removed.add(tid)
        for path, ids in parts.items():
            gone = [tid for tid in ids if which(tid)]
            if gone:  # rewrite the compacted file without them (the new file first, then the old one goes)
                kept = pq.read_table(path, filesystem=fs)
                kept = kept.filter(pc.invert(pc.is_in(kept.column("trial_id"), pa.array(gone))))
                if kept.num_rows:
                    _write_atomic(kept, table_uri(sweep_root, table), f"{PART_PREFIX}{uuid.uuid4().hex}")
                fs.delete_file(path)
                removed.update(gone)
    configs = f"{root}/configs"
    if fs.get_file_info(configs).type == pafs.FileType.Directory:
        for f in fs.get_file_info(pafs.FileSelector(configs)):
            base = posixpath.basename(f.path)
            if f.is_file and base.endswith(".json") and not base.startswith(".") and which(base[: -len(".json")]):
                fs.delete_file(f.path)
    return removed


def remove_temporaries(sweep_root: str) -> int:
    """Delete the hidden temporary files a killed writer may have left in the table folders; returns how many."""
    fs, root = resolve(sweep_root)
    n = 0
    for sub in (*TABLES, *OPTIONAL_TABLES, "configs"):
        folder = f"{root}/{sub}"
        if fs.get_file_info(folder).type != pafs.FileType.Directory:
            continue
        for f in fs.get_file_info(pafs.FileSelector(folder)):
            if f.is_file and posixpath.basename(f.path).startswith(".tmp-"):
                _delete_quietly(fs, f.path)
                n += 1
    return n


def sweep_exists(sweep_root: str) -> bool:
    """True when the sweep folder exists and holds anything."""
    fs, root = resolve(sweep_root)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return False
    return bool(fs.get_file_info(pafs.FileSelector(root)))


def remove_sweep(sweep_root: str) -> None:
    """Delete a whole sweep folder (its tables, records and Tune state)."""
    fs, root = resolve(sweep_root)
    if fs.get_file_info(root).type == pafs.FileType.Directory:
        fs.delete_dir(root)
