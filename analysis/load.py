"""Read a sweep folder (local or s3://) into its three tables, checking that it is one."""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from drift_sweeps.results import (CURVES_SCHEMA, SCHEMA_VERSION, SPECTRA_SCHEMA, TABLES, TRIAL_FIELDS, read_table,
                                  resolve, table_uri)

log = logging.getLogger(__name__)

SCALING_AXIS = "k_max"  # the axis the scaling laws are fitted against
_REQUIRED = {
    "trials": [f.name for f in TRIAL_FIELDS],
    "curves": CURVES_SCHEMA.names,
    "spectra": SPECTRA_SCHEMA.names,
}


class SweepFolderError(ValueError):
    """The folder is not a readable drift_sweeps sweep folder; the message says what is wrong."""


@dataclass
class Sweep:
    """The three tables of one sweep plus its swept axes."""

    root: str
    trials: pd.DataFrame
    curves: pd.DataFrame
    spectra: pd.DataFrame
    axes: list[str] = field(default_factory=list)  # swept keys, without `seed`

    @property
    def scaling_axis(self) -> Optional[str]:
        """`k_max` when the sweep varied it, else None (no scaling-law fits)."""
        return SCALING_AXIS if SCALING_AXIS in self.axes else None

    @property
    def group_keys(self) -> list[str]:
        """The axes that define a fit group: every swept axis except `seed` and the scaling axis."""
        return [a for a in self.axes if a != self.scaling_axis]

    @property
    def name(self) -> str:
        """The sweep's name (its `sweep` column, else the folder name)."""
        names = self.trials["sweep"].dropna().unique() if "sweep" in self.trials else []
        if len(names) == 1:
            return str(names[0])
        return posixpath.basename(self.root.partition("?")[0].rstrip("/"))


def swept_axes(trials: pd.DataFrame) -> list[str]:
    """The trials table's `swept_axes` (comma-separated varied keys), minus `seed`, in first-seen order."""
    keys: list[str] = []
    if "swept_axes" not in trials:
        return keys
    for value in trials["swept_axes"].dropna().unique():
        for key in str(value).split(","):
            key = key.strip()
            if key and key != "seed" and key not in keys:
                if key not in trials.columns:
                    log.warning("swept axis %r has no column in trials; ignored", key)
                    continue
                keys.append(key)
    return keys


def hashable(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A copy whose `columns` hold hashable values (lists/arrays -> tuples) so they can be grouped on."""
    def fix(v):
        if isinstance(v, np.ndarray):
            return tuple(v.tolist())
        return tuple(v) if isinstance(v, list) else v

    out = df.copy()
    for c in columns:
        if out[c].dtype == object:
            out[c] = out[c].map(fix)
    return out


def _listing(sweep_root: str) -> tuple[pafs.FileSystem, str, pafs.FileInfo]:
    fs, path = resolve(sweep_root)
    return fs, path, fs.get_file_info(path)


def _subfolders(fs: pafs.FileSystem, path: str) -> list[str]:
    try:
        return sorted(posixpath.basename(i.path) for i in fs.get_file_info(pafs.FileSelector(path))
                      if i.type == pafs.FileType.Directory)
    except OSError:
        return []


def _file_versions(sweep_root: str, table: str) -> set[str]:
    """The schema_version metadata values found in one table's Parquet files."""
    fs, folder = resolve(table_uri(sweep_root, table))
    versions = set()
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        base = posixpath.basename(info.path)
        if info.is_file and base.endswith(".parquet") and not base.startswith("."):
            meta = pq.read_schema(info.path, filesystem=fs).metadata or {}
            versions.add(meta.get(b"schema_version", b"<none>").decode())
    return versions


def check_sweep_folder(sweep_root: str, tables: Sequence[str] = TABLES) -> None:
    """Raise SweepFolderError naming what is wrong if `sweep_root` is not a sweep folder of this schema
    (every one of `tables` present, with Parquet files of schema version SCHEMA_VERSION)."""
    fs, path, info = _listing(sweep_root)
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
        versions = _file_versions(sweep_root, table)
        if not versions:
            raise SweepFolderError(f"{sweep_root}: table {table}/ holds no Parquet files")
        wrong = sorted(versions - {str(SCHEMA_VERSION)})
        if wrong:
            raise SweepFolderError(
                f"{sweep_root}: table {table}/ was written with schema version {', '.join(wrong)}, but this "
                f"analysis reads schema version {SCHEMA_VERSION} (drift_sweeps.results.SCHEMA_VERSION); "
                "analyse it with the drift_sweeps version that wrote it, or re-run the sweep")


def load_sweep(sweep_root: str, check: bool = True, tables: Sequence[str] = TABLES,
               missing_ok: Sequence[str] = ()) -> Sweep:
    """Read `trials`, `curves` and `spectra` of a sweep folder (local path or s3:// URI) into a Sweep.

    `tables` limits what is read (`trials` always is); the others are left empty with their columns.
    Tables in `missing_ok` may be absent or empty (e.g. curves when every trial failed at start-up).
    """
    wanted = ["trials", *[t for t in tables if t != "trials"]]
    unknown = sorted(set(wanted) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown}; tables: {', '.join(TABLES)}")
    if missing_ok:
        fs, path, info = _listing(sweep_root)
        present = set(_subfolders(fs, path)) if info.type == pafs.FileType.Directory else set()
        wanted = [t for t in wanted if t == "trials" or t not in missing_ok or
                  (t in present and _file_versions(sweep_root, t))]
    if check:
        check_sweep_folder(sweep_root, wanted)
    tables = {"trials": pd.DataFrame(columns=_REQUIRED["trials"]),  # typed empty tables for the ones not read
              "curves": CURVES_SCHEMA.empty_table().to_pandas(), "spectra": SPECTRA_SCHEMA.empty_table().to_pandas()}
    for table in wanted:
        try:
            df = read_table(sweep_root, table)
        except FileNotFoundError as err:
            raise SweepFolderError(str(err)) from None
        lacking = [c for c in _REQUIRED[table] if c not in df.columns]
        if lacking:
            raise SweepFolderError(f"{sweep_root}: table {table}/ lacks column(s) {', '.join(lacking)} "
                                   f"of schema version {SCHEMA_VERSION}")
        tables[table] = df
    trials = tables["trials"]
    versions = set(trials["schema_version"].dropna().astype(int).unique().tolist())
    if versions - {SCHEMA_VERSION}:
        raise SweepFolderError(f"{sweep_root}: trials rows carry schema_version {sorted(versions)}, "
                               f"this analysis reads {SCHEMA_VERSION}")
    no_curves = sorted(set(trials["trial_id"]) - set(tables["curves"]["trial_id"]))
    if no_curves:
        log.warning("%d trial(s) have no curves (e.g. %s); they count as failed if their status says so",
                    len(no_curves), ", ".join(no_curves[:3]))
    axes = swept_axes(trials)
    trials = hashable(trials, axes).sort_values("trial_id", kind="stable").reset_index(drop=True)
    curves = tables["curves"].sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)
    spectra = tables["spectra"].sort_values(["trial_id", "step", "k_vec"], kind="stable").reset_index(drop=True)
    return Sweep(root=sweep_root, trials=trials, curves=curves, spectra=spectra, axes=axes)
