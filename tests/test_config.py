"""TrialConfig: defaults once, clear errors naming the key and what is allowed."""

from __future__ import annotations

import pytest

from drift_sweeps.spine.config import ConfigError, TrialConfig


@pytest.mark.parametrize(
    "raw,needle",
    [
        ({"kernal": "gaussian"}, "unknown key(s) 'kernal'"),
        ({"bandwidth": -0.5}, "'bandwidth' = -0.5 out of range; allowed: > 0"),
        ({"bandwidth": 0}, "'bandwidth' = 0.0 out of range"),
        ({"k_max": 0}, "'k_max' = 0 out of range; allowed: >= 1"),
        ({"kernel": "gauss"}, "key 'kernel': unknown value 'gauss'; allowed: gaussian, laplacian, cauchy"),
        ({"operator": "nope"}, "key 'operator': unknown value 'nope'"),
        ({"steps": 1.5}, "key 'steps' must be int"),
        ({"stop_gradient": "yes"}, "key 'stop_gradient' must be bool"),
        ({"schedule": "exponential"}, "'rate' must be > 0 when schedule = 'exponential'"),
        ({"amplitude": 1.2}, "'amplitude' = 1.2 must be < 1"),
        ({"k_min": 5, "k_max": 4}, "'k_min' = 5 must be <= k_max = 4"),
        ({"target": "file"}, "'target_path' is required"),
        ({"bandwidth_scales": []}, "'bandwidth_scales' must be"),
        ({"eps": 1.5}, "'eps' = 1.5 out of range"),
    ],
)
def test_bad_configs_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        TrialConfig.from_dict(raw, where="space.yaml")
    assert needle in str(err.value)
    assert str(err.value).startswith("space.yaml")


def test_defaults_and_round_trip() -> None:
    cfg = TrialConfig()
    assert TrialConfig.from_dict(cfg.to_dict()) == cfg
    assert set(cfg.to_dict()) == set(TrialConfig.keys())
    assert TrialConfig.from_dict({"bandwidth": 2}).bandwidth == 2.0  # ints accepted for floats
    assert TrialConfig.from_dict({"bandwidth_scales": [1, 2]}).bandwidth_scales == (1.0, 2.0)
    assert cfg.replace(kernel="laplacian").kernel == "laplacian"
    with pytest.raises(ConfigError):
        cfg.replace(kernel="bogus")


def test_config_is_frozen() -> None:
    with pytest.raises(Exception):
        TrialConfig().kernel = "laplacian"  # type: ignore[misc]
