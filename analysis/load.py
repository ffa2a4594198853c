"""Read a sweep folder (local or s3://) into its three tables, checking that it is one."""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from drift_sweeps.results import (SCHEMA_VERSION, SCHEMAS, TABLES, SweepFolderError, check_sweep_folder, read_table,
                                  tables_present)

log = logging.getLogger(__name__)

SCALING_AXIS = "k_max"  # the axis the scaling laws are fitted against
__all__ = ["Sweep", "SweepFolderError", "load_sweep", "swept_axes", "hashable", "SCALING_AXIS"]


@dataclass
class Sweep:
    """The three tables of one sweep plus its swept axes."""

    root: str
    trials: pd.DataFrame
    curves: pd.DataFrame
    spectra: pd.DataFrame
    axes: list[str] = field(default_factory=list)  # swept keys, without `seed`
    axis: str = SCALING_AXIS  # what laws are fitted against: k_max or an expression (analysis.axis.apply_axis)
    axis_keys: tuple[str, ...] = (SCALING_AXIS,)  # the config keys the axis reads
    axis_varies: bool = False  # for an expression: whether it takes two or more values (k_max: swept or not)

    @property
    def scaling_axis(self) -> Optional[str]:
        """The axis laws are fitted against (a trials column) when the sweep varied it, else None (no fits)."""
        if self.axis == SCALING_AXIS:
            return SCALING_AXIS if SCALING_AXIS in self.axes else None
        return self.axis if self.axis_varies else None

    @property
    def group_keys(self) -> list[str]:
        """The axes that define a fit group: every swept axis except `seed` and the keys the scaling axis reads."""
        axis = self.scaling_axis
        return [a for a in self.axes if a != axis and not (axis and a in self.axis_keys)]

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
        present = set(tables_present(sweep_root))
        wanted = [t for t in wanted if t == "trials" or t not in missing_ok or t in present]
    if check:
        check_sweep_folder(sweep_root, wanted)
    tables = {t: SCHEMAS[t]().empty_table().to_pandas() for t in TABLES}  # typed empty tables for the ones not read
    for table in wanted:
        try:
            tables[table] = read_table(sweep_root, table)
        except FileNotFoundError as err:
            raise SweepFolderError(str(err)) from None
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
