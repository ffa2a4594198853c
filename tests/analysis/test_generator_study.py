"""Generator studies through the one report pipeline: the quality table's means and intervals are
`analysis.stats.mean_ci`, its text is `analysis.formatting`, and `analysis.report` writes the section."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis.generator_study import (is_generator_sweep, quality_figure_data, quality_markdown, quality_table,
                                      sample_panels)
from analysis.report import main
from analysis.stats import mean_ci


def _trials() -> pd.DataFrame:
    rows = []
    for kernel, base in (("gaussian", 2.0), ("laplacian", 1.0)):
        for seed in range(3):
            rows.append({"trial_id": f"{kernel}{seed}", "target": "moons", "model": "mlp", "kernel": kernel,
                         "variant": None, "operator": "meanshift", "seed": seed, "wall_time_s": 1.0,
                         "final_sample_distance": base + 0.1 * seed, "sample_distance_floor": 0.5,
                         "final_class_coverage": math.nan})
    return pd.DataFrame(rows)


def test_mean_ci_is_a_student_t_interval():
    v = [1.0, 2.0, 4.0, math.nan]
    m, lo, hi = mean_ci(v)
    half = scipy_stats.t.ppf(0.975, 2) * np.std([1, 2, 4], ddof=1) / math.sqrt(3)
    assert m == pytest.approx(7 / 3) and (lo, hi) == pytest.approx((m - half, m + half))
    assert mean_ci([3.0])[0] == 3.0 and math.isnan(mean_ci([3.0])[1])
    assert all(math.isnan(x) for x in mean_ci([]))


def test_quality_table_and_its_markdown():
    trials = _trials()
    table = quality_table(trials)
    assert list(table["kernel"]) == ["gaussian", "laplacian"] and set(table["seeds"]) == {3}
    g = table[table["kernel"] == "gaussian"].iloc[0]
    assert (g["final_sample_distance"], g["final_sample_distance_lo"]) == pytest.approx(mean_ci([2.0, 2.1, 2.2])[:2])
    assert g["final_sample_distance_ratio"] == pytest.approx(4.2)
    assert "final_class_coverage" not in table  # all NaN: not shown
    text = quality_markdown(table)
    assert text.startswith("#### moons")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| kernel"))
    assert header == "| kernel | variant | operator | seeds | sample_distance | sample_distance / floor |"
    assert lines.index(next(line for line in lines if "| laplacian" in line)) < \
        lines.index(next(line for line in lines if "| gaussian" in line))  # best (lowest ratio) first
    assert re.search(r"\| gaussian \| - \| meanshift \| 3 \| 2\.1 \[[\d.]+, [\d.]+\] \| 4\.2 \|", text)
    assert "Floors (data vs data): sample_distance 0.5" in text
    data = quality_figure_data(table)
    assert [d["target"] for d in data] == ["moons"] and data[0]["ratio"] == pytest.approx([4.2, 2.2])


def test_sample_panels_take_the_lowest_seed():
    trials = _trials()
    samples = pd.DataFrame({"trial_id": ["gaussian1", "gaussian0", "gaussian0"], "index": [0, 1, 0],
                            "x": [[9.0, 9.0], [1.0, 1.0], [0.0, 0.0]]})
    panels = sample_panels(trials, samples)
    assert len(panels) == 1 and panels[0]["label"] == "moons, mlp, gaussian, -, meanshift"
    assert panels[0]["x"].tolist() == [[0.0, 0.0], [1.0, 1.0]]


@pytest.fixture(scope="module")
def generator_sweep(tmp_path_factory) -> str:
    """Two kernels x two seeds of a small MLP generator on moons, with stored samples."""
    import torch
    from sweep_builder import write_sweep

    base = dict(target="moons", model="mlp", steps=12, eval_every=6, n_samples=64, n_data=64, n_eval=128, eps=0.001,
                hidden=16, layers=2, samples_kept=32, device="cpu")
    configs = [{**base, "kernel": k, "seed": s} for k in ("gaussian", "laplacian") for s in (0, 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = str(tmp_path_factory.mktemp("results") / "gen")
        write_sweep(root, configs, ["kernel", "seed"], sweep="gen", samples=True)
    finally:
        torch.set_num_threads(threads)
    return root


def test_report_of_a_generator_sweep_has_the_quality_section(generator_sweep, tmp_path, capsys):
    from analysis.load import load_sweep

    assert is_generator_sweep(load_sweep(generator_sweep).trials)
    out = tmp_path / "report"
    assert main([generator_sweep, "--out", str(out), "--n-boot", "0", "--no-html"]) == 0
    capsys.readouterr()
    text = (out / "report.md").read_text()
    assert "## Sample quality" in text and "### moons" in text and "sample_distance / floor" in text
    assert "figures/quality.png" in text and "figures/samples_moons.png" in text
    assert "No figure of generated samples" not in text
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (out / link).is_file() and (out / link).stat().st_size > 0, link
    table = pd.read_csv(out / "quality.csv")
    assert len(table) == 2 and {"final_sample_distance_lo", "final_sample_distance_ratio"} <= set(table.columns)
    assert (out / "quality.md").read_text().startswith("#### moons")
