"""A trial that runs out of memory (issue 23) is an `error` row with the reason, and the sweep goes on.

The allocation failures are the exception types torch and Python raise (torch.OutOfMemoryError, MemoryError,
the CPU allocator's RuntimeError), raised by the trial loop for the oversized trials of a real --serial sweep
(the streaming kernel path keeps a real trial's memory O(N), so an honest OOM takes minutes to reach)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from drift_sweeps import trial as trial_module
from drift_sweeps.sweep.cli import main

FAILURES = {
    256: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB"),
    512: MemoryError("Unable to allocate 4.00 GiB"),
    1024: RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried "
                       "to allocate 4294967296 bytes."),
}


def test_oversized_trials_are_error_rows_and_the_sweep_goes_on(make_space, tmp_path, monkeypatch):
    real = trial_module.run_trial

    def run_trial(cfg, report, *args, **kwargs):
        if cfg.n_samples in FAILURES:
            raise FAILURES[cfg.n_samples]
        return real(cfg, report, *args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", run_trial)
    space = make_space("oom", axes={"n_samples": [128, 256, 512, 1024]})
    assert main([str(space), "--serial", "--results", str(tmp_path / "res")]) == 0
    rows = {r["n_samples"]: r for r in pq.read_table(tmp_path / "res" / "oom" / "trials").to_pylist()}
    assert sorted(rows) == [128, 256, 512, 1024]
    assert rows[128]["status"] != "error" and rows[128]["error"] is None
    for n, err in FAILURES.items():
        assert rows[n]["status"] == "error", rows[n]
        assert rows[n]["error"] == f"{type(err).__name__}: {err}"
