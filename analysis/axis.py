"""The axis scaling laws are fitted against: `k_max` (the default) or an arithmetic expression of config keys.

`python -m analysis.report SWEEP --axis separation/bandwidth` fits convergence time against the ratio of two
config keys.  An expression is parsed with `ast` and only these pieces are accepted: names of numeric config
keys (trials columns, or keys of a trial's `config_json` for keys newer than this schema), numbers,
`+ - * / **`, unary minus and the functions in `FUNCTIONS`.  Anything else is an `AxisError` (a ValueError)
whose one-line message names the offending piece and what is allowed.  The value is computed per trial row
and stored in the trials table under the expression's compact text (`separation/bandwidth`), so every table
and figure that reads the scaling axis reads that column.
"""

from __future__ import annotations

import ast
import difflib
import json
import logging
import math
import operator
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import pandas as pd

from drift_sweeps.spine.config import field_types

from .load import SCALING_AXIS, Sweep

log = logging.getLogger(__name__)

MAX_EXPR_LEN = 200  # an axis is a short formula; a longer string is a mistake, not a formula
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log, "log2": np.log2, "log10": np.log10, "sqrt": np.sqrt, "exp": np.exp, "abs": np.abs,
}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_NUMERIC = (int, float, bool)


class AxisError(ValueError):
    """A bad --axis expression; the message (one line) names what is wrong and what is allowed."""


@dataclass(frozen=True)
class Axis:
    """A parsed axis: its compact text (the column name), the config keys it reads and its syntax tree."""

    expr: str
    names: tuple[str, ...]
    tree: ast.Expression

    @property
    def is_default(self) -> bool:
        """True for the K_max study's axis (plain `k_max`), whose tables and figures keep their K_max names."""
        return self.expr == SCALING_AXIS


def _check_node(node: ast.AST, names: list[str], text: str) -> None:
    """Raise AxisError unless `node` (recursively) is a number, a name, + - * / **, unary -, or f(one arg)."""
    if isinstance(node, ast.Expression):
        return _check_node(node.body, names, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return None
    if isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise AxisError(f"--axis {text!r}: {node.id} is a function; write {node.id}(...)")
        names.append(node.id)
        return None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        _check_node(node.left, names, text)
        return _check_node(node.right, names, text)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_node(node.operand, names, text)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
        if len(node.args) != 1 or node.keywords:
            raise AxisError(f"--axis {text!r}: {node.func.id}() takes exactly one argument")
        return _check_node(node.args[0], names, text)
    piece = ast.get_source_segment(text, node) if hasattr(node, "lineno") else type(node).__name__
    raise AxisError(f"--axis {text!r}: {piece!r} is not allowed; use config keys, numbers, + - * / ** and "
                    f"the functions {', '.join(FUNCTIONS)}")


def parse_axis(text: str) -> Axis:
    """Parse an axis expression (syntax only; `resolve_axis` checks its names against a sweep)."""
    compact = "".join(str(text).split())
    if not compact:
        raise AxisError("--axis is empty; give a config key such as k_max or an expression such as "
                        "separation/bandwidth")
    if len(compact) > MAX_EXPR_LEN:
        raise AxisError(f"--axis is {len(compact)} characters long; at most {MAX_EXPR_LEN}")
    try:
        tree = ast.parse(compact, mode="eval")
    except SyntaxError as err:
        raise AxisError(f"--axis {compact!r} is not an expression ({err.msg}); e.g. separation/bandwidth, "
                        "log(n_samples), k_max*bandwidth") from None
    names: list[str] = []
    _check_node(tree, names, compact)
    return Axis(expr=compact, names=tuple(dict.fromkeys(names)), tree=tree)


def _config_json_keys(trials: pd.DataFrame, skip: set[str]) -> dict[str, pd.Series]:
    """Keys of the trials' `config_json` outside `skip` (config keys of another schema version) -> their values
    (the trials column of that name when there is one, e.g. a key this schema dropped)."""
    if "config_json" not in trials or trials.empty:
        return {}
    parsed = [json.loads(s) if isinstance(s, str) and s else {} for s in trials["config_json"]]
    keys = dict.fromkeys(k for cfg in parsed for k in cfg if k not in skip)
    return {k: trials[k] if k in trials.columns else pd.Series([cfg.get(k) for cfg in parsed], index=trials.index)
            for k in keys}


def _is_numeric(values: pd.Series) -> bool:
    v = values.dropna()
    return len(v) > 0 and all(isinstance(x, _NUMERIC) or isinstance(x, np.number) for x in v)


def axis_keys(trials: pd.DataFrame) -> dict[str, pd.Series]:
    """Every numeric config key of the trials (columns and config_json-only keys) -> its values."""
    config = set(field_types())
    cols = {c: trials[c] for c in trials.columns if c in config}
    cols.update(_config_json_keys(trials, set(cols)))
    return {k: v for k, v in cols.items() if _is_numeric(v)}


def _unknown_name(name: str, axis: Axis, known: dict[str, pd.Series], trials: pd.DataFrame) -> AxisError:
    if name in trials.columns or name in field_types():
        why = f"{name!r} is not a numeric config key"
    else:
        close = difflib.get_close_matches(name, list(known), n=1)
        why = f"unknown key {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
    return AxisError(f"--axis {axis.expr!r}: {why}; allowed keys: {', '.join(sorted(known))}; functions: "
                     f"{', '.join(FUNCTIONS)}")


def _evaluate(node: ast.AST, values: dict[str, np.ndarray]) -> np.ndarray:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, values)
    if isinstance(node, ast.Constant):
        return np.asarray(float(node.value))
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    return FUNCTIONS[node.func.id](_evaluate(node.args[0], values))  # a checked ast.Call


def evaluate_axis(axis: Axis, trials: pd.DataFrame) -> pd.Series:
    """The axis' value for every trial row (float; NaN where undefined, e.g. a division by zero)."""
    known = axis_keys(trials)
    missing = [n for n in axis.names if n not in known]
    if missing:
        raise _unknown_name(missing[0], axis, known, trials)
    values = {n: pd.to_numeric(known[n], errors="coerce").astype(float).to_numpy() for n in axis.names}
    with np.errstate(all="ignore"):
        out = np.broadcast_to(np.asarray(_evaluate(axis.tree, values), dtype=float), (len(trials),)).copy()
    out[~np.isfinite(out)] = math.nan
    bad = int(np.isnan(out).sum())
    if bad:
        log.warning("--axis %s is undefined (not finite) for %d trial(s); they are left out of the fits",
                    axis.expr, bad)
    return pd.Series(out, index=trials.index, name=axis.expr)


def apply_axis(sweep: Sweep, expr: Optional[str]) -> Sweep:
    """The sweep with its scaling axis set to `expr` (None or `k_max`: the sweep unchanged).

    The axis' values go into `trials[expr]`; the keys it reads stop being group keys.  The axis counts as
    varied (fits are made) when it takes at least two distinct finite values.
    """
    if expr is None:
        return sweep
    axis = parse_axis(expr)
    if axis.is_default:
        return sweep
    trials = sweep.trials.copy()
    values = evaluate_axis(axis, trials)
    if axis.expr not in trials.columns:  # a plain key with a column keeps it (and its dtype) as it is
        trials[axis.expr] = values
    varies = values.dropna().nunique() >= 2
    return replace(sweep, trials=trials, axis=axis.expr, axis_keys=axis.names, axis_varies=bool(varies))


def axis_label(axis: Optional[str]) -> str:
    """How figures name the axis: K_max in mathtext for the K_max study, else the expression itself."""
    return r"$K_{\max}$" if axis in (None, SCALING_AXIS) else axis


def axis_symbol(axis: Optional[str]) -> str:
    """The axis' one-letter symbol in law formulas and legends: K for k_max, x for any other axis."""
    return "K" if axis in (None, SCALING_AXIS) else "x"


def axis_grid(values: pd.Series, axis: Optional[str], n: int = 120) -> np.ndarray:
    """Where fitted laws are drawn: 1..max K (log-spaced) for k_max; the measured range of any other axis
    (log-spaced when positive, else linear)."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").astype(float)
    v = v[np.isfinite(v)]
    if axis in (None, SCALING_AXIS):
        return np.geomspace(1.0, max(float(v.max()) if len(v) else 1.0, 2.0), n)
    if not len(v):
        return np.array([])
    lo, hi = float(v.min()), float(v.max())
    if lo > 0:
        return np.geomspace(lo, hi if hi > lo else 2 * lo, n)
    return np.linspace(lo, hi if hi > lo else lo + 1.0, n)
