"""Malformed spaces, overrides and flags (tests/fuzz_inputs.py): each one exits 2 with a one-line message
naming the problem, before Ray starts, without a traceback, within 10 s.  Validation only: no Ray."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_inputs  # noqa: E402

from drift_sweeps import run as run_module  # noqa: E402
from drift_sweeps.spine.config import field_types  # noqa: E402

CLASSES = ("nonfinite", "int_bounds", "flags", "yaml", "types")


@pytest.fixture(scope="module")
def outcomes() -> list:
    cases = fuzz_inputs.generate(seed=0)
    return fuzz_inputs.run_all(cases, run_module)


def test_every_malformed_input_is_refused_cleanly(outcomes):
    assert len(outcomes) >= 300
    assert {case.cls for case, *_ in outcomes} == set(CLASSES)
    bad = [f"{outcome}: [{case.cls}] {case.label}: {detail}" for case, outcome, detail, _ in outcomes if outcome != "ok"]
    assert not bad, f"{len(bad)} of {len(outcomes)} inputs mishandled:\n" + "\n".join(bad[:40])
    slow = [(case.label, round(secs, 1)) for case, _, _, secs in outcomes if secs > fuzz_inputs.CASE_LIMIT_S]
    assert not slow
    internal = [case.label for case, _, detail, _ in outcomes if "internal error" in detail]
    assert not internal  # the last-resort handler must not be what answered


def test_the_generator_follows_the_config_fields():
    """A new float or int key is fuzzed without touching the generator."""
    labels = {case.label for case in fuzz_inputs.generate(seed=1)}
    for key, tp in field_types().items():
        if tp is float:
            assert f"base.{key}=.nan" in labels and f"--set {key}=.inf" in labels, key
        if tp is int:
            assert f"axes.{key} huge" in labels, key


def test_the_harness_can_fail(tmp_path):
    """A valid space is reported as accepted (the harness would see an invalid input let through)."""
    case = fuzz_inputs.Case("control", "valid", ["{dir}/space.yaml"],
                            {"space.yaml": fuzz_inputs._yaml_bytes(fuzz_inputs._space_doc())})
    outcome, detail, _ = fuzz_inputs.run_case(case, tmp_path / "c", run_module)
    assert outcome == "accepted", detail
