"""The results store: the only owner of the Parquet schema.  pandas/pyarrow only (no torch, no ray).

Layout under ``<results>/<sweep>/``: ``trials/``, ``curves/``, ``spectra/`` (and ``samples/`` when trials store
samples); one file per trial per table named ``<trial_id>.parquet``, or compacted files of many trials.
``<results>`` may be a local path or an ``s3://`` URI.  Three modules: `schema` (the columns, one `trials` row),
`files` (paths, atomic writes, listing, removal) and `read` (checks and tables); their public names are here.
"""

from .files import (PART_PREFIX, SweepFolderError, is_part, read_json, remove_sweep, remove_temporaries, remove_trials,
                    resolve, sweep_exists, sweep_uri, table_files, table_uri, tables_present, trial_ids, write_curves,
                    write_json, write_samples, write_spectra, write_trial)
from .read import check_sweep_folder, file_versions, read_table
from .schema import (CURVES_SCHEMA, OPTIONAL_TABLES, SAMPLES_SCHEMA, SCHEMA_VERSION, SCHEMAS, SPECTRA_SCHEMA, TABLES,
                     TRIAL_FIELDS, required_columns, trial_row, trials_schema)

__all__ = [
    "CURVES_SCHEMA", "OPTIONAL_TABLES", "PART_PREFIX", "SAMPLES_SCHEMA", "SCHEMAS", "SCHEMA_VERSION", "SPECTRA_SCHEMA",
    "TABLES", "TRIAL_FIELDS", "SweepFolderError", "check_sweep_folder", "file_versions", "is_part", "read_json",
    "read_table", "remove_sweep", "remove_temporaries", "remove_trials", "required_columns", "resolve",
    "sweep_exists", "sweep_uri", "table_files", "table_uri", "tables_present", "trial_ids", "trial_row",
    "trials_schema", "write_curves", "write_json", "write_samples", "write_spectra", "write_trial",
]
