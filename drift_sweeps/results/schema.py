"""The Parquet schema of a sweep folder's tables, and one `trials` row.  pyarrow only (no torch, no ray)."""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional, Sequence

import pyarrow as pa

from ..spine import record
from ..spine.config import field_types

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


def required_columns(table: str) -> list[str]:
    """Columns every file of `table` has had since SCHEMA_VERSION (config columns may come and go)."""
    if table == "trials":  # `variant` and the quality columns came later: filled with null
        return [f.name for f in TRIAL_FIELDS if f.name != "variant" and f.name not in record.ADDED_LATER]
    return [n for n in SCHEMAS[table]().names if n not in record.ADDED_LATER]
