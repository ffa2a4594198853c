"""Damaged sweep folders: `results.read_table` and `python -m analysis.report` refuse a damaged file by
name (exit 2, one line), never with a traceback; `--resume` runs the damaged file's trial again."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drift_sweeps import results
from drift_sweeps.sweep.folder import SweepFolder

sys.path.insert(0, str(Path(__file__).resolve().parent / "analysis"))
from sweep_builder import tiny_configs, write_sweep  # noqa: E402


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweeps") / "tiny"
    write_sweep(str(root), tiny_configs(k_values=(2,), seeds=(0, 1)), swept_axes=["schedule", "k_max"])
    return root


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def _duplicate(path: Path) -> None:
    shutil.copy(path, path.with_name("t999.parquet"))


def _int_status(path: Path) -> None:
    table = pq.read_table(path)
    i = table.schema.get_field_index("status")
    pq.write_table(table.set_column(i, "status", pa.array([3], pa.int64())), path)


DAMAGE = [("trials", "t001", _truncate, "t001.parquet"), ("spectra", "t002", _random_bytes, "t002.parquet"),
          ("curves", "t000", _truncate, "t000.parquet"), ("trials", "t000", _duplicate, "t999.parquet"),
          ("trials", "t003", _int_status, "t003.parquet")]


@pytest.mark.parametrize("table,tid,damage,named", DAMAGE, ids=[f"{d[2].__name__}-{d[0]}" for d in DAMAGE])
def test_a_damaged_file_is_named_and_refused(pristine, tmp_path, capsys, table, tid, damage, named):
    from analysis.report import main as report_main

    root = tmp_path / "tiny"
    shutil.copytree(pristine, root)
    damage(root / table / f"{tid}.parquet")
    with pytest.raises(results.SweepFolderError) as err:
        results.read_table(str(root), table)
    assert named in str(err.value)
    rc = report_main([str(root), "--out", str(tmp_path / "out"), "--n-boot", "5", "--no-html"])
    text = capsys.readouterr().err.strip()
    assert rc == 2 and len(text.splitlines()) == 1 and text.startswith("error: ") and named in text, text
    if table == "trials" and damage is not _duplicate:
        rows, bad = SweepFolder(str(root)).finished_rows(quiet=True)
        assert tid not in rows and any(named in b for b in bad)  # --resume runs it again
