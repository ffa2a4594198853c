"""Facts about the torus targets, torch-free: which targets live on the torus, and which frequencies
a target of given k_min..k_max carries.

`core.targets` builds its tensors from these lists and `analysis` reads them, so the mode layout is
written once.  Pure Python (no torch, no numpy).
"""

from __future__ import annotations

import math

TORUS_DIMS = {"torus1d": 1, "torus2d": 2, "torus3d": 3}  # torus target name -> dimension of [0, 2pi)^D
TORUS3D_K_MAX = 16  # torus3d: highest k_max (a trial enumerates (2 k_max + 1)^3 / 2 frequencies per evaluation)


def lowest_mode(k_min: int, k_max: int, target_modes: str = "band") -> int:
    """Lowest frequency a torus target carries: k_max alone with target_modes='single', else k_min."""
    return int(k_max) if target_modes == "single" else min(int(k_min), int(k_max))


def mode_vectors(dim: int, k_low: int, k_max: int) -> list[tuple[int, ...]]:
    """Integer frequency vectors a torus target carries: k in k_low..k_max in 1-D; in 2-D the axes
    (k, 0), (0, k) and the diagonals (k, k), (k, -k); in 3-D the three axes and the six face diagonals
    (k, k, 0), (k, -k, 0), (k, 0, k), (k, 0, -k), (0, k, k), (0, k, -k) (each coordinate plane as in 2-D)."""
    ks = range(int(k_low), int(k_max) + 1)
    if dim == 1:
        return [(k,) for k in ks]
    if dim == 2:
        return [(k, 0) for k in ks] + [(0, k) for k in ks] + [(k, k) for k in ks] + [(k, -k) for k in ks]
    if dim == 3:
        axes = [(k, 0, 0) for k in ks] + [(0, k, 0) for k in ks] + [(0, 0, k) for k in ks]
        diagonals = [v for k in ks for v in ((k, k, 0), (k, -k, 0), (k, 0, k), (k, 0, -k), (0, k, k), (0, k, -k))]
        return axes + diagonals
    raise ValueError(f"torus targets exist in 1-D, 2-D and 3-D, not {dim}-D")


def mode_norms(dim: int, k_low: int, k_max: int) -> list[float]:
    """|k| of the carried modes, each distinct value once, ascending."""
    return sorted({math.sqrt(sum(c * c for c in v)) for v in mode_vectors(dim, k_low, k_max)})


def carries(k_vec: tuple[int, ...], dim: int, k_low: int, k_max: int) -> bool:
    """Whether the integer frequency k_vec (up to sign) is one of the carried modes."""
    vec = tuple(int(c) for c in k_vec)
    carried = set(mode_vectors(dim, k_low, k_max))
    return vec in carried or tuple(-c for c in vec) in carried
