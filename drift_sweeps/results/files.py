"""The files of a sweep folder: where each lives (local or s3://), atomic writes, listing, removal.

One file per trial per table, named ``<trial_id>.parquet``, written to a temporary name and renamed, so a crash
never leaves a partial file and a re-run or resumed trial replaces its file instead of duplicating rows.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..spine import record
from .schema import CURVES_SCHEMA, OPTIONAL_TABLES, SAMPLES_SCHEMA, SPECTRA_SCHEMA, TABLES, trials_schema


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
    return _atomically(folder_uri, name, lambda fs, tmp: pq.write_table(table, tmp, filesystem=fs))


def write_chunks_atomic(schema: pa.Schema, chunks: Iterable[pa.Table], folder_uri: str, name: str) -> str:
    """Write the tables of `chunks` (each of `schema`) one after another into one Parquet file, atomically:
    only one chunk is in memory at a time (compaction merges thousands of files this way)."""
    def write(fs: pafs.FileSystem, tmp: str) -> None:
        with pq.ParquetWriter(tmp, schema, filesystem=fs) as out:
            for chunk in chunks:
                out.write_table(chunk.replace_schema_metadata(schema.metadata))

    return _atomically(folder_uri, name, write)


def _atomically(folder_uri: str, name: str, write: Callable[[pafs.FileSystem, str], None]) -> str:
    """`write(fs, temporary path)`, then the rename to <folder>/<name>.parquet; on any failure the temporary
    is removed and the error raised."""
    fs, folder = resolve(folder_uri)
    fs.create_dir(folder, recursive=True)
    final = f"{folder}/{name}.parquet"
    tmp = f"{folder}/.tmp-{name}-{uuid.uuid4().hex}.parquet"
    try:
        write(fs, tmp)
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



# ---- listing ----------------------------------------------------------------------------------------


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


def _damaged(path: str, what: str) -> SweepFolderError:
    return SweepFolderError(f"{path}: {what}; move or delete this file (a `--resume` of the sweep runs its "
                            "trial again when its trials/ file is gone)")


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
