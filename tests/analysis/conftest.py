"""Fixtures for the analysis tests: one tiny real sweep (run_trial, no Ray), built once per session."""

from __future__ import annotations

import pytest

TINY_AXES = ["schedule", "bandwidth", "rate", "bandwidth_min", "k_max", "seed"]


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> str:
    """A sweep folder: annealed and fixed-bandwidth Gaussian on the 1-D torus, K in 1,2,4 x 2 seeds (12 trials)."""
    import torch

    # tests/analysis is on sys.path: it has no __init__.py, which would shadow the `analysis` package
    from sweep_builder import tiny_configs, write_sweep

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; 1 thread is also faster for these sizes
    try:
        root = str(tmp_path_factory.mktemp("results") / "tiny")
        write_sweep(root, tiny_configs(), TINY_AXES)
    finally:
        torch.set_num_threads(threads)
    return root
