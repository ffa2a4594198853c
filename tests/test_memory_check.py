"""A trial's peak memory, bounded from below by its config (spine/memory.py) and checked against the node before
Ray (sweep/memory_check.py): a space whose trials cannot fit exits with one line; every shipped space passes."""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drift_sweeps.spaces import SpaceError, load_space
from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.spine.memory import PROCESS_BYTES, peak_bytes, peak_parts
from drift_sweeps.sweep.memory_check import check_trial_memory, memory_configs, node_memory_bytes

ROOT = Path(__file__).resolve().parents[1]
LOCAL = argparse.Namespace(serial=True, address=None, gpus_per_trial=None, temp_dir=None)

# a trial run to its first evaluation in a fresh process: its peak resident memory (ru_maxrss)
_PEAK = """
import json, resource, sys
import torch
torch.set_num_threads(1)
from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.trial import run_trial
run_trial(TrialConfig(**{"steps": 1, "eval_every": 1, "device": "cpu", **json.loads(sys.argv[1])}))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _measured_peak(**fields) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", _PEAK, json.dumps(fields)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("fields", [
    {"target": "torus1d", "n_eval": 4096},  # the evaluation's (n, n, 1) displacements on the torus
    {"target": "torus2d", "n_eval": 4096, "n_samples": 4096},
    {"target": "mixture", "dim": 4, "n_eval": 4096, "n_samples": 4096},  # on the plane
    {"target": "mixture", "dim": 4, "n_eval": 256, "n_samples": 2048, "n_data": 2048, "stop_gradient": False},
])
def test_estimate_is_a_lower_bound_of_the_measured_peak(fields):
    cfg = TrialConfig(**{"steps": 1, "eval_every": 1, "device": "cpu", **fields})
    estimate, peak = peak_bytes(cfg), _measured_peak(**fields)
    print(f"\n{fields}: estimate {estimate / 2**20:.0f} MiB, measured peak {peak / 2**20:.0f} MiB "
          f"({estimate / peak:.0%})")
    assert estimate <= peak  # errs low: a refusal means the trial cannot fit


def test_parts_of_the_estimate():
    base = TrialConfig(target="torus2d", n_eval=1000, n_samples=512, n_data=512)
    assert peak_parts(base) == {"process": PROCESS_BYTES, "evaluation": 2 * 1000 * 1000 * 4, "dense_field": 0}
    plane = TrialConfig(target="mixture", dim=3, n_eval=1000)
    assert peak_parts(plane)["evaluation"] == 2 * 1000 * 1000 * 4  # (n, n) at a time, whatever the dimension
    ablation = TrialConfig(target="torus1d", n_eval=100, n_samples=1000, n_data=3000, stop_gradient=False)
    assert peak_parts(ablation)["dense_field"] == 2 * 1000 * (3000 + 1000) * 1 * 4
    streaming = TrialConfig(target="torus1d", n_eval=100, n_samples=10**6, n_data=10**6)  # O(N): not counted
    assert peak_bytes(streaming) == PROCESS_BYTES + 2 * 100 * 100 * 4


@pytest.mark.parametrize("path", sorted(glob.glob(str(ROOT / "search_spaces" / "*.yaml"))),
                         ids=lambda p: Path(p).stem)
def test_shipped_spaces_fit_a_small_node(path):
    space = load_space(path)
    check_trial_memory(space, LOCAL, node_bytes=2 << 30)  # no refusal even on a 2 GiB node
    assert sum(1 for _ in memory_configs(space)) >= 1


def test_a_space_that_cannot_fit_exits_before_ray_with_one_line(make_space, tmp_path):
    node = node_memory_bytes()
    assert node and node > 2**30
    n_eval = int((node / (2 * 4)) ** 0.5) + 1000  # 2 (n, n) float32 tensors exceed the node
    space = make_space("huge", axes={"seed": [0, 1]}, base_extra={"n_eval": n_eval})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "drift_sweeps.run", str(space), "--results", str(tmp_path / "res"),
                           "--address", "local"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr  # nothing started: no Ray line
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(space) in lines[0], lines
    assert f"n_eval = {n_eval}" in lines[0] and "GiB of memory" in lines[0]
    assert f"this node's {node / 2**30:.2f} GiB" in lines[0]
    assert not (tmp_path / "res").exists()


def test_not_checked_where_the_node_is_unknown_or_the_trial_on_a_gpu(make_space):
    space = load_space(str(make_space("huge", base_extra={"n_eval": 10**6})))
    with pytest.raises(SpaceError, match="needs at least"):
        check_trial_memory(space, LOCAL, node_bytes=8 << 30)
    check_trial_memory(space, argparse.Namespace(serial=False, address="10.0.0.1:6379", gpus_per_trial=None))
    on_gpu = load_space(str(make_space("huge_gpu", base_extra={"n_eval": 10**6, "device": "cuda"})))
    check_trial_memory(on_gpu, LOCAL, node_bytes=8 << 30)
