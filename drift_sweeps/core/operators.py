"""Drift operators V(x; p, q): one registry, one signature.

Signature: ``operator(x, pos, neg, field) -> V`` with x (N, D) the points where the field is
evaluated, pos (M, D) data samples of p, neg (K, D) samples of the model q (usually x itself,
then ``field.neg_is_x`` is set and self-pairs are masked out where the operator says so), and
the returned drift V (N, D).

Two implementations of every operator, chosen by ``field.backend``:
- "stream" (default, what trials use): `streaming.py`, the kernel matrix visited block by
  block, O((N + M) D) memory;
- "dense": `dense.py`, the reference that builds the whole (N, M) matrix.
They agree to float32 round-off (tests/test_streaming.py).  When gradients must flow through
V (autograd on and an input requires grad: the no-stop-gradient ablation), every operator
uses the dense, differentiable code.  A new operator is one `OPERATORS` entry (its dense form
in `dense.py`, and a streaming form in `streaming.py` when it has one).
"""

from __future__ import annotations

from typing import Optional

import torch

from . import streaming
from .dense import DENSE_OPERATORS, sinkhorn_conditional, weighted_displacement
from .field import BACKENDS, FieldSpec, Operator
from .registry import Registry

__all__ = [
    "BACKENDS", "DENSE_OPERATORS", "OPERATORS", "FieldSpec", "Operator", "drift", "needs_grad",
    "sinkhorn_conditional", "weighted_displacement",
]

OPERATORS: Registry[Operator] = Registry("operator")


def needs_grad(*tensors: torch.Tensor) -> bool:
    """True when autograd is recording and some input requires grad (V must be differentiable)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _dispatching(name: str, stream: Optional[Operator]) -> Operator:
    """The OPERATORS entry `name`: streaming unless the field asks for dense or grads are needed."""
    dense = DENSE_OPERATORS.get(name)

    def op(x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
        if stream is None or field.backend == "dense" or needs_grad(x, pos, neg):
            return dense(x, pos, neg, field)
        with torch.no_grad():
            return stream(x, pos, neg, field)

    op.__name__ = name
    op.__doc__ = dense.__doc__
    return op


for _name in DENSE_OPERATORS.names():
    OPERATORS.add(_name, _dispatching(_name, streaming.STREAM_IMPLEMENTATIONS.get(_name)))


def drift(name: str, x: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, field: FieldSpec) -> torch.Tensor:
    """Evaluate the registered operator `name`.  -> (N, D)."""
    return OPERATORS.get(name)(x, pos, neg, field)


# the operators by name, as before the streaming backend existed
meanshift = OPERATORS.get("meanshift")
deng = OPERATORS.get("deng")
score = OPERATORS.get("score")
mmd = OPERATORS.get("mmd")
sinkhorn = OPERATORS.get("sinkhorn")
