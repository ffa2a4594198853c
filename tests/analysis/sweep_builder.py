"""Build a tiny real sweep (no Ray): run_trial for a handful of configs, written with the results store."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from drift_sweeps import results
from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.trial import run_trial

BASE = dict(steps=40, n_samples=128, n_data=128, n_eval=128, eval_every=5, device="cpu")
ANNEALED = dict(kernel="gaussian", schedule="exponential", rate=0.25, bandwidth=2.0, bandwidth_min=0.05)
FIXED = dict(kernel="gaussian", schedule="constant", rate=0.0, bandwidth=1.0, bandwidth_min=0.0)


def write_sweep(sweep_root: str, configs: Iterable[Mapping], swept_axes: Sequence[str],
                sweep: str = "tiny", samples: bool = False) -> list[str]:
    """Run each config with run_trial and write its trials/curves/spectra files (and its samples, if asked);
    returns trial ids."""
    ids = []
    for i, raw in enumerate(configs):
        cfg = TrialConfig.from_dict(dict(raw))
        reports: list[dict] = []
        summary = run_trial(cfg, reports.append)
        tid = f"t{i:03d}"
        row = results.trial_row(sweep=sweep, trial_id=tid, config=cfg.to_dict(), summary=summary,
                                node="local", swept_axes=swept_axes)
        results.write_trial(sweep_root, tid, row)
        results.write_curves(sweep_root, tid, reports)
        results.write_spectra(sweep_root, tid, reports)
        if samples:
            results.write_samples(sweep_root, tid, reports)
        ids.append(tid)
    return ids


def tiny_configs(k_values=(1, 2, 4), seeds=(0, 1), **overrides) -> list[dict]:
    """Annealed-Gaussian group over K x seeds, plus a fixed-bandwidth Gaussian group."""
    out = []
    for sched in (ANNEALED, FIXED):
        for k in k_values:
            for s in seeds:
                out.append({**BASE, **sched, "k_max": k, "seed": s, **overrides})
    return out


DEMO_AXES = ["kernel", "schedule", "bandwidth", "rate", "stop_gradient", "k_max", "seed"]


def demo_configs() -> list[dict]:
    """A medium 1-D torus sweep for eyeballing the report: annealed vs fixed Gaussian, fixed Laplacian, no stop-grad."""
    base = dict(steps=300, n_samples=256, n_data=256, n_eval=256, eval_every=5, device="cpu", amplitude=0.9)
    groups = [
        ({**ANNEALED}, (1, 2, 3, 4, 6, 8)),
        ({**FIXED}, (1, 2, 3, 4, 6)),
        ({**FIXED, "kernel": "laplacian"}, (1, 2, 3, 4, 6, 8)),
        ({**ANNEALED, "stop_gradient": False}, (1, 2, 4, 8)),
    ]
    return [{**base, **g, "k_max": k, "seed": s} for g, ks in groups for k in ks for s in (0, 1, 2)]


if __name__ == "__main__":  # python tests/analysis/sweep_builder.py OUT [demo]
    import sys
    import time

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if len(sys.argv) > 2 and sys.argv[2] == "demo":
        write_sweep(sys.argv[1], demo_configs(), DEMO_AXES, sweep="demo")
    else:
        write_sweep(sys.argv[1], tiny_configs(), ["schedule", "bandwidth", "rate", "bandwidth_min", "k_max", "seed"])
    print(f"{time.perf_counter() - t0:.1f}s")
