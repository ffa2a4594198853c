"""Loading a sweep folder: the three tables, and clear errors for folders that are not one."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from analysis.load import SweepFolderError, load_sweep
from drift_sweeps.results import SCHEMA_VERSION, TABLES


def test_loads_three_tables_and_the_swept_axes(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    assert len(sweep.trials) == 12
    assert set(sweep.curves["trial_id"]) == set(sweep.trials["trial_id"]) == set(sweep.spectra["trial_id"])
    assert sweep.axes == ["schedule", "bandwidth", "rate", "bandwidth_min", "k_max"]
    assert sweep.scaling_axis == "k_max"
    assert sweep.group_keys == ["schedule", "bandwidth", "rate", "bandwidth_min"]
    partial = load_sweep(tiny_sweep, tables=("curves",))
    assert len(partial.curves) == len(sweep.curves) and partial.spectra.empty


@pytest.fixture
def copy_of(tiny_sweep, tmp_path):
    dst = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, dst)
    return dst


@pytest.mark.parametrize("table", TABLES)
def test_missing_table_is_named(copy_of, table):
    shutil.rmtree(copy_of / table)
    with pytest.raises(SweepFolderError, match=rf"missing table\(s\) {table}/"):
        load_sweep(str(copy_of))


def test_empty_table_folder(copy_of):
    for f in (copy_of / "spectra").iterdir():
        f.unlink()
    with pytest.raises(SweepFolderError, match="spectra/ holds no Parquet files"):
        load_sweep(str(copy_of))


def test_wrong_schema_version_is_reported(copy_of):
    path = next((copy_of / "curves").glob("*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({"schema_version": str(SCHEMA_VERSION + 1)}), path)
    with pytest.raises(SweepFolderError, match=rf"curves/ was written with schema version {SCHEMA_VERSION + 1}"):
        load_sweep(str(copy_of))


def test_wrong_schema_version_in_trial_rows(copy_of):
    import pyarrow as pa

    path = next((copy_of / "trials").glob("*.parquet"))
    table = pq.read_table(path)
    i = table.schema.get_field_index("schema_version")
    table = table.set_column(i, table.schema.field(i), pa.array([SCHEMA_VERSION + 7], pa.int32()))
    pq.write_table(table, path)
    with pytest.raises(SweepFolderError, match="schema_version"):
        load_sweep(str(copy_of))


def test_not_a_sweep_folder(tmp_path, tiny_sweep):
    with pytest.raises(SweepFolderError, match="no such folder"):
        load_sweep(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepFolderError, match="not a drift_sweeps sweep folder"):
        load_sweep(str(tmp_path / "empty"))
    results_root = tmp_path / "results"
    shutil.copytree(tiny_sweep, results_root / "tiny")
    with pytest.raises(SweepFolderError, match="results root holding the sweep.*tiny"):
        load_sweep(str(results_root))


def test_loads_from_s3(tiny_sweep, monkeypatch):
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    import logging
    import os

    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        s3.create_bucket(Bucket="results")
        for folder, _, files in os.walk(tiny_sweep):
            for name in files:
                path = os.path.join(folder, name)
                s3.upload_file(path, "results", "tiny/" + os.path.relpath(path, tiny_sweep))
        query = f"?endpoint_override={host}:{port}&scheme=http"
        sweep = load_sweep("s3://results/tiny" + query)
        assert len(sweep.trials) == 12 and sweep.name == "tiny"
        with pytest.raises(SweepFolderError, match="results root holding the sweep"):
            load_sweep("s3://results" + query)
    finally:
        server.stop()
