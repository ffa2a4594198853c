"""`python -m benchmarks.field`: the --quick smoke run writes valid JSON; skips are explained."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import field as bench


def test_quick_run_writes_json_with_expected_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| size NxMxD |" in printed and "load average" in printed

    report = json.loads(out.read_text())
    assert report["schema"] == bench.SCHEMA
    for key in ("command", "started", "wall_time_s", "machine", "limits", "settings", "cases"):
        assert key in report, key
    assert len(report["machine"]["load_avg_before"]) == 3 and report["machine"]["torch_threads"] >= 1
    assert report["limits"]["exp_per_s"] > 0 and report["limits"]["matmul_flops"] > 0
    cases = report["cases"]
    sizes = {c["size"] for c in cases}
    assert sizes == set(bench.QUICK_SIZES.split(","))
    assert {c["operator"] for c in cases} == set(bench.QUICK_OPERATORS.split(","))
    for c in cases:
        for key in bench.CASE_KEYS:
            assert key in c, key
        if c["backend"] in ("stream", "dense", "auto") or (c["backend"] == "spectral" and c["periodic"]
                                                            and c["operator"] == "meanshift"):
            assert c["status"] == "ok", c
            assert c["time_s"] > 0 and c["pairs"] == c["n"] * (c["m"] + c["n"])
            assert math.isclose(c["pairs_per_s"], c["pairs"] / c["time_s"])
            assert c["peak_mem_bytes"] >= 0 and c["memory_method"]
            assert 0 < c["frac_of_limit"] and c["limit_s"] > 0
        else:  # spectral: torus and meanshift/score/mmd only, the rest skipped with a reason
            assert c["status"] == "skipped" and "spectral" in c["reason"], c
    streamed = [c for c in cases if c["backend"] == "stream"]
    assert all(c["speedup_vs_dense"] is not None for c in streamed)
    spec = [c for c in cases if c["backend"] == "spectral" and c["status"] == "ok"]
    assert spec and all(c["speedup_vs_stream"] is not None and c["plan"].startswith(("direct", "ewald")) for c in spec)


def test_dense_reference_skipped_where_it_cannot_fit(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--sizes", "65536x65536x2", "--operators", "meanshift", "--kernels", "gaussian",
            "--backends", "dense", "--in-process", "--json", str(out)]
    assert bench.main(argv) == 0
    (case,) = json.loads(out.read_text())["cases"]
    assert case["status"] == "skipped" and "GiB" in case["reason"]
    assert "skipped" in bench.format_table(json.loads(out.read_text()))


def test_size_parsing() -> None:
    assert bench.Size.parse("4096x1024x2") == bench.Size(4096, 1024, 2, False)
    assert bench.Size.parse("1024x1024x1t") == bench.Size(1024, 1024, 1, True)
    assert bench.Size.parse("8x9x3").pairs() == 8 * (9 + 8)
    with pytest.raises(Exception, match="NxMxD"):
        bench.Size.parse("4096x2")


def test_unknown_names_are_refused() -> None:
    with pytest.raises(SystemExit, match="allowed"):
        bench.main(["--quick", "--operators", "nope"])


def test_sweep_mode_reports_the_wall_time_ratio(tmp_path: Path, make_space, ray_tmp: str) -> None:
    """--sweep on a two-trial space: sequential, then through Tune on a local Ray."""
    space = make_space("bench_tiny", axes={"seed": [0, 1]}, base_extra={"steps": 5})
    out = tmp_path / "sweep.json"
    argv = ["--sweep", "--space", str(space), "--num-cpus", "2", "--ray-temp-dir", ray_tmp, "--json", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["trials"] == 2 and report["parallel_slots"] == 2 and report["tune_exit_code"] == 0
    assert report["sequential_wall_s"] > 0 and report["tune_wall_s"] > 0
    assert math.isclose(report["ratio"], report["tune_wall_s"] * 2 / report["sequential_wall_s"])


def test_annealed_schedule_and_auto_against_the_best(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--schedules fixed,annealed: every case twice; auto rows carry their ratio to the fastest backend."""
    out = tmp_path / "bench.json"
    argv = ["--sizes", "64x64x1t", "--operators", "meanshift", "--kernels", "gaussian", "--bandwidths", "0.3",
            "--backends", "stream,auto", "--schedules", "fixed,annealed", "--repeats", "1", "--in-process",
            "--json", str(out)]
    assert bench.main(argv) == 0
    assert "auto / best" in capsys.readouterr().out
    cases = json.loads(out.read_text())["cases"]
    assert sorted((c["backend"], c["schedule"]) for c in cases) == [
        ("auto", "annealed"), ("auto", "fixed"), ("stream", "annealed"), ("stream", "fixed")]
    for c in cases:
        assert c["status"] == "ok", c
        assert (c["auto_vs_best"] is not None) == (c["backend"] == "auto")
        if c["backend"] == "auto":
            assert c["auto_vs_best"] >= 1.0


def test_floor_noise_prints_a_row_per_target_and_metric(capsys):
    from benchmarks import floor_noise

    assert floor_noise.main(["--reps", "2", "--n", "100", "--repeats", "2", "--targets", "moons"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| moons")]
    assert len(rows) == 2 and all(line.split("|")[3].strip() == "2" for line in rows)
    ratio = float(rows[0].split("|")[6])  # the median ratio of a perfect generator: near 1
    assert 0.2 < ratio < 5.0
