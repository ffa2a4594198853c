"""The results store: fixed schemas, one atomic file per trial per table, local and s3:// folders."""

from __future__ import annotations

import dataclasses
import math
import os

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from drift_sweeps import results
from drift_sweeps.results import files
from drift_sweeps.spine.config import TrialConfig

def reports(n_evals: int, freqs=([1], [2])) -> list[dict]:
    """Reports shaped like run_trial's."""
    return [{"step": 5 * i, "t": 0.5 * i, "bandwidth": 1.0, "loss": 1.0 / (i + 1), "drift_rms": 0.1,
             "worst_rel_error": 1.0 / (i + 1), "sample_distance": 0.01, "spectrum_k": [list(k) for k in freqs],
             "spectrum_error": [0.1 / (i + 1)] * len(freqs)} for i in range(n_evals)]


def write_one(root: str, trial_id: str, status: str = "censored", error: str | None = None, n_evals: int = 3,
              **config) -> None:
    cfg = TrialConfig.from_dict(config).to_dict()
    summary = {"status": status, "convergence_time": 1.0 if status == "converged" else None, "steps_run": 10,
               "t_final": 1.0, "final_loss": 0.1, "final_drift_rms": 0.1, "final_worst_rel_error": 0.2,
               "final_sample_distance": 0.01, "noise_floor": 0.03, "wall_time_s": 1.5, "device_used": "cpu"}
    if status == "error":
        summary = {"status": "error"}
    row = results.trial_row(sweep="s", trial_id=trial_id, config=cfg, summary=summary, node="host/1.2.3.4/abc",
                            error=error, swept_axes=["kernel", "seed"], versions={"torch": "x"}, git_commit="deadbeef")
    results.write_trial(root, trial_id, row)
    results.write_curves(root, trial_id, reports(n_evals))
    results.write_spectra(root, trial_id, reports(n_evals))


def test_three_tables_round_trip_with_every_reader(tmp_path):
    root = str(tmp_path / "sweep")
    write_one(root, "t0", status="converged", kernel="gaussian", seed=0)
    write_one(root, "t1", status="error", error="InjectedFailure: boom", n_evals=1, kernel="laplacian", seed=1)
    write_one(root, "t2", kernel="cauchy", seed=2, target_path=None, bandwidth_scales=[0.5, 1.0])

    trials = results.read_table(root, "trials")
    assert sorted(trials["trial_id"]) == ["t0", "t1", "t2"]
    assert set(TrialConfig.keys()) <= set(trials.columns)
    t = trials.set_index("trial_id")
    assert t.loc["t1", "status"] == "error" and t.loc["t1", "error"] == "InjectedFailure: boom"
    assert pd.isna(t.loc["t1", "convergence_time"]) and t.loc["t0", "convergence_time"] == 1.0
    assert list(t.loc["t2", "bandwidth_scales"]) == [0.5, 1.0]
    assert results.read_table(root, "curves").shape[0] == 3 + 1 + 3
    spectra = results.read_table(root, "spectra")
    assert len(spectra) == 2 * 7 and set(spectra["k_vec"]) == {"1", "2"}

    for table in results.TABLES:
        folder = f"{root}/{table}"
        n = len(pd.read_parquet(folder))
        assert pads.dataset(folder, format="parquet").count_rows() == n
        assert duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall()[0][0] == n
    # a column that is null in one file and text in another reads back (fixed schema, not inferred)
    assert pq.read_schema(f"{root}/trials/t0.parquet").field("error").type == pa.string()


def test_rewriting_a_trial_replaces_its_rows(tmp_path):
    root = str(tmp_path / "sweep")
    write_one(root, "t0", n_evals=5)
    write_one(root, "t0", n_evals=2)  # a resumed / re-run trial
    assert len(results.read_table(root, "trials")) == 1
    assert len(results.read_table(root, "curves")) == 2
    assert results.trial_ids(root) == {"t0"}


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    root = str(tmp_path / "sweep")
    write_one(root, "t0")

    def crash(table, where, filesystem=None, **kw):
        with filesystem.open_output_stream(where) as out:
            out.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(files.pq, "write_table", crash)
    with pytest.raises(OSError):
        results.write_curves(root, "t1", reports(2))
    monkeypatch.undo()
    assert results.trial_ids(root, "curves") == {"t0"}  # no t1.parquet, whole or partial
    assert len(results.read_table(root, "curves")) == 3
    assert not [p for p in os.listdir(f"{root}/curves") if p.startswith(".tmp-")]  # the writer cleaned up


def test_temporaries_of_a_killed_writer_are_ignored_then_removed(tmp_path):
    root = str(tmp_path / "sweep")
    write_one(root, "t0")
    # what a writer killed between write and rename leaves: a hidden partial file
    (tmp_path / "sweep" / "curves" / ".tmp-t1-123.parquet").write_bytes(b"PAR1 half a file")
    assert results.trial_ids(root, "curves") == {"t0"}
    assert len(results.read_table(root, "curves")) == 3
    assert results.remove_temporaries(root) == 1
    assert sorted(os.listdir(f"{root}/curves")) == ["t0.parquet"]


def test_unsafe_trial_ids_and_unknown_status_are_refused(tmp_path):
    with pytest.raises(ValueError):
        results.write_curves(str(tmp_path), "../escape", reports(1))
    with pytest.raises(ValueError, match="status"):
        results.trial_row(sweep="s", trial_id="t", config={}, summary={"status": "ok"}, node="n")


def test_json_records_and_removal(tmp_path):
    root = str(tmp_path / "sweep")
    results.write_json(root, "sweep.json", {"a": 1})
    results.write_json(root, "configs/t0.json", {"trial_id": "t0"})
    results.write_json(root, "configs/t1.json", {"trial_id": "t1"})
    assert results.read_json(root, "sweep.json") == {"a": 1}
    assert results.read_json(root, "missing.json") is None
    write_one(root, "t0")
    write_one(root, "t1")
    assert results.remove_trials(root, lambda tid: tid == "t1") == {"t1"}
    assert results.trial_ids(root) == {"t0"} and results.trial_ids(root, "spectra") == {"t0"}
    assert sorted(os.listdir(f"{root}/configs")) == ["t0.json"]
    assert results.sweep_exists(root)
    results.remove_sweep(root)
    assert not results.sweep_exists(root)


def test_missing_tables_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no trials/ table"):
        results.read_table(str(tmp_path), "trials")
    with pytest.raises(ValueError, match="unknown table"):
        results.read_table(str(tmp_path), "metrics")


@pytest.mark.parametrize("form", ["env", "query"])
def test_s3_results_on_a_local_endpoint(s3_endpoint, monkeypatch, form):
    import boto3

    root = "s3://drift/results/sweep"
    if form == "query":  # the endpoint in the URI instead of the environment
        monkeypatch.delenv("AWS_ENDPOINT_URL")
        root = f"{root}?endpoint_override={s3_endpoint}&scheme=http"
    write_one(root, "t0", kernel="gaussian")
    write_one(root, "t1", kernel="laplacian")
    results.write_json(root, "sweep.json", {"ok": True})
    assert results.trial_ids(root) == {"t0", "t1"}
    assert len(results.read_table(root, "trials")) == 2
    assert len(results.read_table(root, "spectra")) == 2 * 2 * 3
    assert results.read_json(root, "sweep.json") == {"ok": True}
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket="drift", Prefix="results/sweep/")["Contents"]]
    assert "results/sweep/trials/t0.parquet" in keys and not [k for k in keys if "/.tmp-" in k]
    assert results.sweep_uri("s3://drift/results?endpoint_override=x", "q") == "s3://drift/results/q?endpoint_override=x"
    assert not math.isnan(results.read_table(root, "curves")["loss"].iloc[0])


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("trial_id", "step", "k_vec") if c in df.columns]
    return df.sort_values(keys).reset_index(drop=True)


@pytest.mark.parametrize("chunk", [256, 4], ids=["one-chunk", "chunks-of-4"])
def test_compaction_merges_files_and_reads_the_same(tmp_path, monkeypatch, chunk):
    from drift_sweeps.compaction import compact

    monkeypatch.setattr(results.read, "CHUNK_FILES", chunk)  # 4: the six files are read in two chunks
    root = str(tmp_path / "sweep")
    for i in range(6):
        write_one(root, f"t{i}", seed=i, n_evals=2 + i % 3)
    before = {t: _sorted(results.read_table(root, t)) for t in results.TABLES}
    merged = compact(root)
    assert merged == {"trials": 6, "curves": 6, "spectra": 6, "samples": 0}
    for table in results.TABLES:
        files = os.listdir(f"{root}/{table}")
        assert len(files) == 1 and files[0].startswith(results.PART_PREFIX), files
        pd.testing.assert_frame_equal(_sorted(results.read_table(root, table)), before[table])
        n = len(before[table])
        assert pads.dataset(f"{root}/{table}", format="parquet").count_rows() == n
        assert duckdb.sql(f"select count(*) from read_parquet('{root}/{table}/*.parquet')").fetchall()[0][0] == n
    assert results.trial_ids(root) == {f"t{i}" for i in range(6)}
    results.check_sweep_folder(root)
    # new trials after compaction, then a second compaction: still every row once
    write_one(root, "t6", seed=6)
    assert results.trial_ids(root, "curves") == {f"t{i}" for i in range(7)}
    assert compact(root)["trials"] == 0 and len(results.read_table(root, "trials")) == 7  # one file: nothing to do
    write_one(root, "t7", seed=7)
    assert compact(root)["trials"] == 2 and len(results.read_table(root, "trials")) == 8


def test_a_trial_twice_in_different_chunks_stops_the_compaction_and_keeps_every_file(tmp_path, monkeypatch):
    from drift_sweeps import compaction

    monkeypatch.setattr(results.read, "CHUNK_FILES", 4)
    root = str(tmp_path / "sweep")
    for i in range(5):
        write_one(root, f"t{i}", seed=i)
    again = results.trial_row(sweep="s", trial_id="t1", config=TrialConfig().to_dict(), summary={"status": "censored"},
                              node="n")
    results.write_trial(root, "t9", again)  # t1's row in a file of its own: read in the second chunk, t1 in the first
    with pytest.raises(results.SweepFolderError, match="holds a trial twice"):
        compaction.compact(root)
    names = sorted(os.listdir(f"{root}/trials"))
    assert names == [f"t{i}.parquet" for i in (0, 1, 2, 3, 4, 9)], names  # no part, no temporary


def test_a_compaction_stopped_before_its_deletions_reads_each_row_once(tmp_path, monkeypatch):
    from drift_sweeps import compaction

    root = str(tmp_path / "sweep")
    for i in range(3):
        write_one(root, f"t{i}", seed=i)
    monkeypatch.setattr(files, "_delete_quietly", lambda fs, path: None)  # the process dies before deleting
    compaction.compact(root)
    monkeypatch.undo()
    assert len(os.listdir(f"{root}/curves")) == 4  # the compacted file and the three it merged
    assert len(results.read_table(root, "trials")) == 3 and len(results.read_table(root, "curves")) == 9
    assert results.trial_ids(root) == {"t0", "t1", "t2"}


def test_removing_trials_from_a_compacted_table(tmp_path):
    from drift_sweeps.compaction import compact

    root = str(tmp_path / "sweep")
    for i in range(4):
        write_one(root, f"t{i}", seed=i)
    compact(root)
    assert results.remove_trials(root, lambda tid: tid in ("t1", "t3")) == {"t1", "t3"}
    assert results.trial_ids(root) == {"t0", "t2"}
    assert sorted(results.read_table(root, "curves")["trial_id"].unique()) == ["t0", "t2"]
    with pytest.raises(ValueError, match="not usable"):
        results.write_trial(root, results.PART_PREFIX + "x", {})
