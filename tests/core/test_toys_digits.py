"""The 2-D toy targets and the bundled digits target: laws, initialisations, split and classifier."""

from __future__ import annotations

import math

import pytest
import torch

from drift_sweeps.core import digits, toys  # noqa: F401  (registers the targets)
from drift_sweeps.core.catalog import TARGETS, make_target
from drift_sweeps.core.targets import TargetSpec

TOYS = ["bimodal_between", "bimodal_far", "bimodal_collapsed", "eight_gaussians", "moons"]


@pytest.mark.parametrize("name", TOYS)
def test_toy_targets_sample_their_law(name):
    assert name in TARGETS
    t = make_target(name, TargetSpec())
    x = t.sample(4000, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 2) and torch.isfinite(x).all() and not t.periodic
    assert x.abs().max() < 4.0
    y = t.sample(4000, torch.Generator().manual_seed(0))
    assert torch.equal(x, y)


def test_bimodal_modes_and_initialisations():
    x = make_target("bimodal_between", TargetSpec()).sample(8000, torch.Generator().manual_seed(1))
    right = x[:, 0] > 0
    assert abs(float(right.double().mean()) - 0.5) < 0.03
    assert torch.allclose(x[right].mean(0), torch.tensor([1.5, 0.0]), atol=0.03)
    assert abs(float(x[right, 1].std()) - toys.BIMODAL_STD) < 0.02
    for init, loc in toys.BIMODAL_INITS.items():
        t = make_target(f"bimodal_{init}", TargetSpec())
        assert t.init_loc == loc
        x0 = t.init(2000, torch.Generator().manual_seed(2))
        assert torch.allclose(x0.mean(0), torch.tensor(loc), atol=0.02)
        assert (x0.std(0) - toys.INIT_STD).abs().max() < 0.01


def test_eight_gaussians_sit_on_the_circle():
    x = make_target("eight_gaussians", TargetSpec()).sample(8000, torch.Generator().manual_seed(3))
    assert abs(float(x.norm(dim=1).mean()) - 2.0) < 0.01
    sector = torch.round(torch.atan2(x[:, 1], x[:, 0]) / (math.pi / 4)).long() % 8
    counts = torch.bincount(sector, minlength=8).double() / 8000
    assert (counts - 0.125).abs().max() < 0.015


def test_digits_split_is_fixed_stratified_and_disjoint():
    d = digits.digits_data()
    assert d.train.shape == (1347, 64) and d.held_out.shape == (450, 64)
    assert float(d.train.min()) == 0.0 and float(d.train.max()) == 1.0
    for c in range(10):  # every class keeps its share in both splits
        share = float((d.held_out_labels == c).double().sum() / (d.train_labels == c).double().sum())
        assert abs(share - 1 / 3) < 0.02
    rows = {tuple(r.tolist()) for r in d.train}
    assert sum(tuple(r.tolist()) in rows for r in d.held_out) < 10  # (a few images are duplicated in the data)
    t = make_target("digits", TargetSpec())
    assert t.dim == 64 and t.image_side == 8
    s = t.sample_stratified(1347, torch.Generator().manual_seed(0))
    assert {tuple(r.tolist()) for r in s} == rows  # one whole pass over the training split


def test_digits_classifier_is_accurate_cached_and_gives_floors():
    clf = digits.digits_classifier()
    assert clf.test_accuracy >= 0.95
    cached = list(digits.cache_dir().glob("digits_classifier_*.pt"))
    assert cached
    again = digits.DigitsClassifier(128, 64).double()
    again.load_state_dict(torch.load(cached[0], weights_only=True))
    x = digits.digits_data().held_out
    assert torch.equal(again.eval().predict(x), clf.model.predict(x))
    m = digits.digits_metrics(x)
    assert m["frechet_distance"] == pytest.approx(0.0, abs=1e-6)
    assert m["class_coverage"] == 1.0 and m["class_max_deviation"] < 0.02
    f = digits.digits_floors(1024, torch.Generator().manual_seed(0))
    assert 0 < f["frechet_distance_floor"] < f["frechet_distance_gaussian"]
    assert f["frechet_distance_noise"] > 10 * f["frechet_distance_floor"]
