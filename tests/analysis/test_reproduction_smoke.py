"""Smoke versions of the reproduction studies: structure, not science.

For every `search_spaces/repro_*.yaml`, a few of its trials (the --smoke caps, shortened further)
run through the real trial loop and the real Parquet writer; `analysis.reproduction` then builds
the whole report over those folders.  Checks that every study section, table and figure appears.
"""

from __future__ import annotations

import os

import pytest
import torch

from analysis.reproduction import STUDIES, build
from drift_sweeps.spaces import load_space

SMOKE = {"steps": 12, "eval_every": 4, "n_samples": 64, "n_data": 64, "n_eval": 64}


def _few(configs: list[dict], group_keys: list[str]) -> list[dict]:
    """Seed-0 trials, at most two k_max values per group: every group and the K axis survive."""
    picked, seen = [], {}
    for c in configs:
        if c.get("seed", 0) != 0:
            continue
        g = tuple(repr(c[k]) for k in group_keys if k not in ("k_max", "seed"))
        if seen.setdefault(g, 0) < 2:
            seen[g] += 1
            picked.append({**c, **SMOKE, "sinkhorn_iters": min(c["sinkhorn_iters"], 3)})
    return picked


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> str:
    from sweep_builder import write_sweep  # tests/analysis is on sys.path

    root = tmp_path_factory.mktemp("repro")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for study in STUDIES:
            space = load_space(study.name).smoked()
            configs = _few(space.trial_configs(), space.swept_keys())
            assert configs, study.name
            write_sweep(str(root / study.name), configs, [k for k in space.swept_keys() if k != "seed"],
                        sweep=study.name)
    finally:
        torch.set_num_threads(threads)
    return str(root)


def test_every_study_has_a_shipped_space() -> None:
    for study in STUDIES:
        assert load_space(study.name).trial_count() > 0


def test_reproduction_report_has_every_study(smoke_results: str, tmp_path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("## overview\n\nsmoke overview\n\n## repro_kmax\n\nsmoke commentary for K_max\n")
    timings = tmp_path / "timings.txt"
    timings.write_text("repro_kmax rc=0 wall_s=120\n")
    path = build(smoke_results, str(tmp_path / "docs"), str(notes), str(timings), n_boot=10)
    text = open(path).read()
    for study in STUDIES:
        assert f"## {study.title}" in text
        assert os.path.exists(tmp_path / "docs" / "reproduction" / study.name / "report.md")
        assert not [f for f in os.listdir(tmp_path / "docs" / "reproduction" / study.name / "figures")
                    if f.endswith(".svg")]
    assert "smoke overview" in text and "smoke commentary for K_max" in text
    # the re-run block: each study's command, then this very page's command with its notes and timings
    rerun = text.split("## Re-running the studies")[1].split("```bash")[1].split("```")[0].strip().splitlines()
    assert rerun == [study.command() for study in STUDIES] + [
        f"python -m analysis.reproduction results --out docs --notes {notes} --timings {timings}"]
    assert "2.0 min" in text  # the study's wall time from the timings file
    assert "### Against the theory" in text  # studies 1 and 2 carry their theory checks
    assert text.count("![") >= len(STUDIES)
