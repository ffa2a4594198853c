"""Drift operators V(x; p, q): one registry, one signature.

Signature: ``operator(x, pos, neg, field) -> V`` with x (N, D) the points where the field is
evaluated, pos (M, D) data samples of p, neg (K, D) samples of the model q (usually x itself,
then ``field.neg_is_x`` is set and self-pairs are masked out where the operator says so), and
the returned drift V (N, D).

Implementations, chosen by ``field.backend``:
- "stream": `streaming.py`, the kernel matrix visited block by block, O((N + M) D) memory;
- "spectral" (torus; meanshift, score, mmd): `spectral.py`, the periodic kernel through its
  Fourier series with a NUFFT, Ewald-split where the coefficients decay slowly;
- "auto" (default, what trials use): "spectral" where it applies and the cost model
  (`spectral.plan_for`) says it is cheaper, else "stream";
- "dense": `dense.py`, the reference that builds the whole (N, M) matrix.
Stream and dense agree to float32 round-off (tests/test_streaming.py); spectral agrees with a
float64 brute-force image sum to 1e-6 of max |V| (tests/core/test_spectral.py).  When gradients must flow through
V (autograd on and an input requires grad: the no-stop-gradient ablation), every operator
uses the dense, differentiable code.  A new operator is one `OPERATORS` entry (its dense form
in `dense.py`, and a streaming form in `streaming.py` when it has one).
"""

from __future__ import annotations

from typing import Optional

import torch

from . import spectral, streaming
from .dense import DENSE_OPERATORS, sinkhorn_conditional, weighted_displacement
from .field import BACKENDS, FieldSpec, Operator
from ..spine.registry import Registry

__all__ = [
    "BACKENDS", "DENSE_OPERATORS", "OPERATORS", "FieldSpec", "Operator", "drift", "needs_grad",
    "sinkhorn_conditional", "weighted_displacement",
]

OPERATORS: Registry[Operator] = Registry("operator")


def needs_grad(*tensors: torch.Tensor) -> bool:
    """True when autograd is recording and some input requires grad (V must be differentiable)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _dispatching(name: str, stream: Optional[Operator]) -> Operator:
    """The OPERATORS entry `name`: dense when asked or when grads are needed, else spectral or
    streaming as the field's backend says."""
    dense = DENSE_OPERATORS.get(name)
    spec = spectral.SPECTRAL_IMPLEMENTATIONS.get(name)

    def op(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
        if stream is None or field.backend == "dense" or needs_grad(x, pos, neg):
            return dense(x, pos, neg, field)
        with torch.no_grad():
            plan = _spectral_plan(name, spec, x, pos, neg, field)
            if plan is not None:
                return spec(x, pos, neg, field, plan)
            return stream(x, pos, neg, field)

    op.__name__ = name
    op.__doc__ = dense.__doc__
    return op


def _spectral_plan(name: str, spec: Optional[object], x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                   field: FieldSpec) -> Optional[spectral.Plan]:
    """The spectral plan for this call, or None to stream."""
    if field.backend == "stream":
        return None
    if field.backend == "spectral":
        if spec is None:
            raise ValueError(f"backend 'spectral' has no {name!r} operator; it has "
                             f"{', '.join(spectral.SPECTRAL_IMPLEMENTATIONS)}")
        return spectral.forced_plan(field, field.bandwidth, x.shape[1], x.shape[0], max(pos.shape[0], neg.shape[0]),
                                    x.dtype)
    if spec is None:
        return None
    plan = spectral.plan_for(field, field.bandwidth, x.shape[1], x.shape[0], pos.shape[0], neg.shape[0], x.device,
                             x.dtype)
    return None if plan.method == "stream" else plan


for _name in DENSE_OPERATORS.names():
    OPERATORS.add(_name, _dispatching(_name, streaming.STREAM_IMPLEMENTATIONS.get(_name)))


def drift(name: str, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Evaluate the registered operator `name`.  -> (N, D)."""
    return OPERATORS.get(name)(x, pos, neg, field)

