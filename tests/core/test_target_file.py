"""The target-file rule has one owner: the sweep's check before Ray and the trial's read agree on every file,
with the same one-line message (the CLI's messages are checked in tests/test_spaces.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from drift_sweeps.core.target_file import read_target_file, target_file_problem
from drift_sweeps.core.targets import load_array


def _files(folder) -> dict[str, str]:
    paths = {}

    def save(name, arr):
        paths[name] = str(folder / name)
        np.save(paths[name], arr)

    save("good.npy", np.arange(12, dtype=np.float64).reshape(6, 2))
    save("line.npy", np.arange(5, dtype=np.int64))
    save("one_row.npy", np.zeros((1, 2)))
    save("no_columns.npy", np.zeros((4, 0)))
    save("beyond_float32.npy", np.array([[0.0, 1.0], [1e39, 2.0]]))
    save("words.npy", np.array(["a", "b"]))
    paths["table.parquet"] = str(folder / "table.parquet")
    pq.write_table(pa.table({"x": [0.0, 1.0, 2.0], "label": ["a", "b", "c"], "y": [3, 4, 5]}), paths["table.parquet"])
    paths["missing.npy"] = str(folder / "missing.npy")
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    return _files(tmp_path_factory.mktemp("targets"))


@pytest.mark.parametrize("name, problem", [
    ("good.npy", ""), ("line.npy", ""), ("table.parquet", ""),
    ("one_row.npy", "expected an (N, D) array with N >= 2, got shape (1, 2)"),
    ("no_columns.npy", "expected an (N, D) array with N >= 2, got shape (4, 0)"),
    ("beyond_float32.npy", "contains non-finite values"),  # finite in float64, not in the trials' float32
    ("words.npy", "not a numeric array (dtype <U1)"),
    ("missing.npy", "no such file"),
])
def test_check_and_read_agree(files, name, problem):
    path = files[name]
    assert target_file_problem(path) == problem
    if problem:
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            load_array(path)
        assert str(err.value) == f"target_path {path!r}: {problem}"
    else:
        arr = load_array(path)
        assert arr.dtype == torch.float32 and arr.ndim == 2 and arr.shape[0] >= 2


def test_read_keeps_rows_and_numeric_columns(files):
    assert np.array_equal(read_target_file(files["good.npy"]), np.arange(12, dtype=np.float32).reshape(6, 2))
    assert read_target_file(files["line.npy"]).shape == (5, 1)
    table = read_target_file(files["table.parquet"])  # the string column is left out
    assert np.array_equal(table, np.array([[0, 3], [1, 4], [2, 5]], dtype=np.float32))
    with pytest.raises(FileNotFoundError):
        read_target_file(files["missing.npy"])
