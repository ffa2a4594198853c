"""Smaller hardening checks of the sweep runner: a NaN metric is divergence, resources an embedded Ray can
never provide and an address where nothing answers are refused before waiting, and no code loads a
pickle (or anything that embeds one) from a results folder."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.run import main
from drift_sweeps.trial import run_trial

REPO = Path(__file__).resolve().parent.parent


def test_a_nan_metric_ends_the_trial_as_diverged():
    # dt = 1e30 throws the samples to ~1e30: finite, but distances between them are inf - inf = NaN
    cfg = TrialConfig.from_dict({"target": "gaussian_grid", "dt": 1.0e30, "steps": 20, "eval_every": 5,
                                 "n_samples": 128, "n_data": 128, "n_eval": 128, "device": "cpu"})
    summary = run_trial(cfg)
    assert summary["status"] == "diverged", summary
    assert summary["steps_run"] < 20


def test_resources_an_embedded_ray_can_never_provide_are_an_error(make_space, tmp_path, ray_tmp, capsys):
    space = make_space("greedy", axes={"seed": [0, 1]}, resources={"cpu": 3})
    rc = main([str(space), "--results", str(tmp_path / "res"), "--address", "local", "--num-cpus", "2",
               "--temp-dir", ray_tmp])
    out = capsys.readouterr()
    assert rc == 2, out.out + out.err
    err = out.err.strip().splitlines()
    assert len(err) == 1 and "3 CPU" in err[0] and "2 CPUs" in err[0], err
    assert not (tmp_path / "res" / "greedy" / "trials").exists()


def test_an_address_where_nothing_answers_is_refused_before_ray(make_space, tmp_path, capsys):
    import ray

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    space = make_space("nowhere", axes={"seed": [0]})
    rc = main([str(space), "--results", str(tmp_path / "res"), "--address", f"127.0.0.1:{port}"])
    out = capsys.readouterr()
    assert rc == 2 and "nothing answers" in out.err and not ray.is_initialized(), out.out + out.err


# Ways to execute what a file holds: pickles, and Tune's loaders that unpickle (experiment state embeds
# cloudpickle blobs; Tuner.restore loads tuner.pkl).
_LOADS = re.compile(r"pickle\.loads?\(|cloudpickle\.loads?\(|get_pickled_error|pickled_error_file|Tuner\.restore\("
                    r"|ExperimentAnalysis\(|torch\.load\((?!.*weights_only=True)|numpy\.load\(.*allow_pickle=True|np\.load\(.*allow_pickle=True"
                    r"|yaml\.load\(|yaml\.unsafe_load|marshal\.loads?\(")


def _loaders() -> list[str]:
    hits = []
    for folder in ("drift_sweeps", "analysis"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if _LOADS.search(code) and not code.lstrip().startswith(('"', "'")):
                    hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    return hits


def test_the_sweep_runner_loads_no_pickle():
    assert not _loaders(), _loaders()


def test_no_code_loads_a_pickle_from_a_results_folder():
    assert not _loaders(), _loaders()
