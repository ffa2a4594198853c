"""Derive, from the tiny real sweep, a k_max-free sweep with named variants and a smoke sweep.json.

The trials at the largest k_max are copied with their curves and spectra; the trials table gets a
`variant` column (`annealed` / `fixed`) and `swept_axes` without k_max; sweep.json records a random
search run with --smoke.  Nothing is re-run: the Parquet files are rewritten with pyarrow, keeping
their schema metadata.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

SWEPT = "schedule,bandwidth,rate,bandwidth_min,seed"


def _set_column(table: pa.Table, name: str, values: list) -> pa.Table:
    col = pa.array(values, type=pa.string())
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, col)
    return table.append_column(name, col)


def make_variant_sweep(tiny_root: str, dest: str, k_max: int = 4, smoke: bool = True, variant: bool = True) -> str:
    """Write the derived sweep folder `dest` from the tiny sweep at `tiny_root`; returns dest."""
    keep = []
    os.makedirs(os.path.join(dest, "trials"), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(tiny_root, "trials"))):
        if not name.endswith(".parquet"):
            continue
        table = pq.read_table(os.path.join(tiny_root, "trials", name))
        row = table.to_pylist()[0]
        if row["k_max"] != k_max:
            continue
        keep.append(name)
        table = _set_column(table, "swept_axes", [SWEPT])
        if variant:
            table = _set_column(table, "variant", ["annealed" if row["schedule"] == "exponential" else "fixed"])
        table = table.replace_schema_metadata(pq.read_schema(os.path.join(tiny_root, "trials", name)).metadata)
        pq.write_table(table, os.path.join(dest, "trials", name))
    for sub in ("curves", "spectra"):
        os.makedirs(os.path.join(dest, sub), exist_ok=True)
        for name in keep:
            pq.write_table(pq.read_table(os.path.join(tiny_root, sub, name)), os.path.join(dest, sub, name))
    spec = {"schema_version": 1, "space": {"name": "variants", "search": "random", "metric": "time_to_eps",
                                           "mode": "min", "smoke": smoke}}
    with open(os.path.join(dest, "sweep.json"), "w") as fh:
        json.dump(spec, fh)
    return dest
