"""The torch-free spine: config, record, results and the torch-free core facts load without torch or
ray; older sweep files read the same; the Ray internals we rely on still exist."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "sweep_v1"  # written by drift_sweeps before the spine refactor
EXPECTED = ROOT / "tests" / "fixtures" / "sweep_v1_expected"  # what the analysis computed from it then


def _loaded_modules(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("module", ["drift_sweeps.spine.config", "drift_sweeps.spine.record", "drift_sweeps.results",
                                    "drift_sweeps.spaces", "drift_sweeps.run", "drift_sweeps.sweep.driver",
                                    "drift_sweeps.sweep.serial", "drift_sweeps.tune.session"])
def test_spine_modules_import_without_torch_or_ray(module):
    loaded = _loaded_modules(f"import {module}")
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "ray")], module


def test_cli_help_imports_neither_torch_nor_ray():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "drift_sweeps.run", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "ray")}


def test_config_field_types_drive_the_trials_schema():
    from drift_sweeps import results
    from drift_sweeps.spine.config import field_types

    schema = results.trials_schema()
    assert set(field_types()) <= set(schema.names)
    assert str(schema.field("bandwidth_scales").type) == "list<item: double>"
    assert str(schema.field("target_path").type) == "string" and str(schema.field("k_max").type) == "int64"


def test_config_error_carries_the_key():
    from drift_sweeps.spine.config import ConfigError, TrialConfig

    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"k_max": 2, "k_min": 3})
    assert err.value.key == "k_min"
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict({"kernel": "gausian"})
    assert err.value.key == "kernel" and "gaussian" in str(err.value)


def test_summary_and_curve_names_are_one_record():
    from drift_sweeps import results
    from drift_sweeps.spine import record

    assert results.CURVES_SCHEMA.names == ["trial_id", *record.CURVE_METRICS]
    trial_cols = [f.name for f in results.TRIAL_FIELDS]
    assert all(name in trial_cols for name in record.SUMMARY_FIELDS)
    summary = record.summary(record.CENSORED, {"step": 5, "t": 0.5, "loss": 1.0, "worst_rel_error": 0.3},
                             convergence_time=None, n_samples=100, wall_time_s=1.0, device_used="cpu")
    assert set(summary) == set(record.SUMMARY_FIELDS) and summary["final_worst_rel_error"] == 0.3
    assert summary["noise_floor"] == pytest.approx(0.1)


def _same(expected_csv: Path, got: pd.DataFrame) -> None:
    got = pd.read_csv(io.StringIO(got.reset_index(drop=True).to_csv(index=False)))  # same text round trip
    pd.testing.assert_frame_equal(pd.read_csv(expected_csv), got)


def test_a_sweep_written_before_the_refactor_is_analysed_identically():
    from analysis.convergence import convergence_times
    from analysis.headline import format_markdown, headline_table
    from analysis.load import load_sweep
    from analysis.predict import measured_decay_rates, theory_times

    sweep = load_sweep(str(FIXTURE))
    times = convergence_times(sweep)
    _same(EXPECTED / "convergence_times.csv", times)
    _same(EXPECTED / "theory_times.csv", theory_times(times, sweep.trials, sweep.scaling_axis))
    _same(EXPECTED / "decay_rates.csv", measured_decay_rates(sweep, times))
    assert format_markdown(headline_table(str(FIXTURE))) + "\n" == (EXPECTED / "headline.md").read_text()
    assert sweep.trials["variant"].isna().all()  # a column added later reads as null


def test_the_ray_internals_we_use_still_exist():
    """Fails loudly when a Ray upgrade moves what drift_sweeps.tune.ray_compat relies on."""
    import inspect

    from ray import tune
    from ray._private import services

    from drift_sweeps.tune.ray_compat import connected_dashboard_url, dashboard_dependency_error, last_cluster_address

    assert "temp_dir" in inspect.signature(services.canonicalize_bootstrap_address).parameters
    assert last_cluster_address(temp_dir="/nonexistent-ray-tmp") is None or isinstance(
        last_cluster_address(temp_dir="/nonexistent-ray-tmp"), str)
    assert dashboard_dependency_error() is None or isinstance(dashboard_dependency_error(), str)
    assert callable(connected_dashboard_url)
    from ray._private.worker import get_dashboard_url  # what connected_dashboard_url calls

    assert callable(get_dashboard_url)
    tuner = tune.Tuner(lambda config: None)
    assert hasattr(tuner, "_local_tuner") and hasattr(tuner._local_tuner, "get_run_config")
