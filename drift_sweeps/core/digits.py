"""The 8x8 handwritten digits bundled with scikit-learn, a held-out split and a feature classifier.

No download: `sklearn.datasets.load_digits` reads a file shipped inside scikit-learn (1797
images, 64 pixels in 0..16, 10 classes).  Pixels are scaled to [0, 1].  The split is fixed
(stratified per class, `HELD_OUT_SHARE` held out, seed `SPLIT_SEED`) so every trial and the
classifier see the same partition.

The classifier (64 -> 128 -> 64 -> 10, SiLU) is trained once on the training split, in float64
on one thread from a fixed seed (bit-identical reruns), and cached twice: in the process and on
disk (`$DRIFT_SWEEPS_CACHE`, default ~/.cache/drift_sweeps), keyed by a hash of the data and the
recipe.  Its 64-D penultimate activations are the features of the Frechet distance; its
predictions give the class histogram of generated samples.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from . import quality
from .targets import TARGETS, Target, TargetSpec

HELD_OUT_SHARE = 0.25  # share of each class held out (1797 -> 1347 train, 450 held out)
SPLIT_SEED = 0
N_CLASSES = 10
IMAGE_SIDE = 8
# classifier recipe (part of the cache key)
_RECIPE = {"hidden": 128, "features": 64, "epochs": 300, "lr": 3e-3, "weight_decay": 1e-4, "noise": 0.05,
           "seed": 0, "version": 1}


@dataclass(frozen=True)
class DigitsData:
    """The fixed split: images in [0, 1] (N, 64) float32 and labels (N,) long."""

    train: torch.Tensor
    train_labels: torch.Tensor
    held_out: torch.Tensor
    held_out_labels: torch.Tensor


@functools.lru_cache(maxsize=1)
def digits_data() -> DigitsData:
    """Load the bundled digits and split them (stratified, fixed seed)."""
    from sklearn.datasets import load_digits  # optional dependency: only the digits target needs it

    raw = load_digits()
    x = torch.as_tensor(raw.data, dtype=torch.float32) / 16.0  # (1797, 64)
    y = torch.as_tensor(raw.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    train_idx, test_idx = [], []
    for c in range(N_CLASSES):
        idx = torch.nonzero(y == c).squeeze(1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_out = round(HELD_OUT_SHARE * idx.numel())
        test_idx.append(idx[:n_out])
        train_idx.append(idx[n_out:])
    tr, te = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return DigitsData(x[tr], y[tr], x[te], y[te])


class DigitsClassifier(torch.nn.Module):
    """64 -> hidden -> features -> 10 MLP; `features(x)` are the Frechet-distance features."""

    def __init__(self, hidden: int, n_features: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.SiLU(),
                                        torch.nn.Linear(hidden, n_features), torch.nn.SiLU())
        self.head = torch.nn.Linear(n_features, N_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 64) -> (n, n_features)."""
        return self.body(x.to(self.head.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class per image (n,)."""
        return self.forward(x).argmax(1)


@dataclass(frozen=True)
class TrainedClassifier:
    """The cached classifier (CPU, float64, eval mode) and its held-out accuracy."""

    model: DigitsClassifier
    test_accuracy: float


def cache_dir() -> Path:
    """$DRIFT_SWEEPS_CACHE, else ~/.cache/drift_sweeps."""
    return Path(os.environ.get("DRIFT_SWEEPS_CACHE", Path.home() / ".cache" / "drift_sweeps"))


def _cache_key(data: DigitsData) -> str:
    h = hashlib.sha256()
    for t in (data.train, data.train_labels, data.held_out, data.held_out_labels):
        h.update(t.numpy().tobytes())
    h.update(repr(sorted(_RECIPE.items())).encode())
    return h.hexdigest()[:16]


def _train(data: DigitsData) -> DigitsClassifier:
    """Full-batch Adam on the training split, float64, one thread, seeded: the same weights every time."""
    gen = torch.Generator().manual_seed(_RECIPE["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_RECIPE["seed"])  # nn.Linear init has no generator argument
            model = DigitsClassifier(_RECIPE["hidden"], _RECIPE["features"]).double()
        opt = torch.optim.Adam(model.parameters(), lr=_RECIPE["lr"], weight_decay=_RECIPE["weight_decay"])
        x, y = data.train.double(), data.train_labels
        for _ in range(_RECIPE["epochs"]):
            noisy = x + _RECIPE["noise"] * torch.randn(x.shape, generator=gen, dtype=torch.float64)
            loss = torch.nn.functional.cross_entropy(model(noisy), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@functools.lru_cache(maxsize=1)
def digits_classifier() -> TrainedClassifier:
    """The classifier, trained on first use and cached in the process and on disk."""
    data = digits_data()
    path = cache_dir() / f"digits_classifier_{_cache_key(data)}.pt"
    model = DigitsClassifier(_RECIPE["hidden"], _RECIPE["features"]).double()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        model = _train(data)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        with os.fdopen(fd, "wb") as f:  # write to a temporary name, then rename: never a partial file
            f.write(buf.getvalue())
        os.replace(tmp, path)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        acc = float((model.predict(data.held_out) == data.held_out_labels).double().mean())
    return TrainedClassifier(model, acc)


class DigitsTarget(Target):
    """The training split as an empirical law on [0, 1]^64; the held-out split is kept for evaluation."""

    name = "digits"
    dim = IMAGE_SIDE * IMAGE_SIDE
    periodic = False
    image_side = IMAGE_SIDE

    def __init__(self) -> None:
        self.data = digits_data()

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Rows of the training split drawn with replacement."""
        return self.data.train[torch.randint(0, self.data.train.shape[0], (n,), generator=gen)]

    def sample_stratified(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Rows without replacement (whole passes over the split, then a random subset)."""
        m = self.data.train.shape[0]
        idx = torch.cat([torch.randperm(m, generator=gen) for _ in range(n // m + 1)])[:n]
        return self.data.train[idx]

    def init(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """Particles start at N(0.5, 0.1^2) per pixel: a grey blur, far from every digit."""
        return 0.5 + 0.1 * torch.randn(n, self.dim, generator=gen)


@TARGETS.register("digits")
def digits(spec: TargetSpec) -> Target:
    """sklearn's 8x8 digits (training split; the held-out split is used by the quality metrics)."""
    return DigitsTarget()


def digits_metrics(x: torch.Tensor, held_out_features: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Frechet distance to the held-out split and class coverage of generated images x (n, 64)."""
    clf = digits_classifier().model
    data = digits_data()
    with torch.no_grad():
        xc = x.detach().to("cpu", torch.float64)
        feats = clf.features(xc)
        ref = clf.features(data.held_out) if held_out_features is None else held_out_features
        hist = quality.class_histogram(clf.predict(xc), N_CLASSES)
    return {
        "frechet_distance": quality.frechet_distance(feats, ref),
        "class_coverage": quality.class_coverage(hist),
        "class_kl": quality.class_kl(hist),
        "class_max_deviation": quality.class_max_deviation(hist),
    }


def digits_floors(n: int, gen: torch.Generator) -> dict[str, float]:
    """The metrics of three references, suffixed by name: `_floor` for n training images (the
    data-vs-data floor), `_gaussian` for a Gaussian fitted to the training split (mean and full
    covariance), `_noise` for independent Gaussian pixel noise with the data's per-pixel mean and variance."""
    data = digits_data()
    m = data.train.shape[0]
    sub = data.train[torch.randperm(m, generator=gen)[: min(n, m)]]
    mu, cov = quality.gaussian_stats(data.train)
    chol = torch.linalg.cholesky(cov + 1e-6 * torch.eye(cov.shape[0], dtype=cov.dtype))
    fitted = (mu + torch.randn(n, mu.numel(), generator=gen, dtype=torch.float64) @ chol.T).float()
    noise = (mu + torch.randn(n, mu.numel(), generator=gen, dtype=torch.float64) * cov.diagonal().sqrt()).float()
    out: dict[str, float] = {}
    for suffix, x in (("floor", sub), ("gaussian", fitted), ("noise", noise)):
        out.update({f"{k}_{suffix}": v for k, v in digits_metrics(x).items()})
    return out
