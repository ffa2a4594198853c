"""Render result tables as text: Markdown for the terminal, LaTeX (booktabs) for papers.

Numeric tables keep raw columns (that is what CSV gets); for display, column conventions are folded:
`X_lower_bound` / `X_upper_bound` (bool) turn X into '>X' / '<X'; `X_lo`/`X_hi` turn X into 'X [lo, hi]'.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def fmt_number(v, digits: int = 3) -> str:
    """A number at `digits` significant digits; '-' for missing; bools as True/False."""
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "-"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    if isinstance(v, tuple):
        return "(" + ",".join(fmt_number(x, digits) for x in v) + ")"
    try:
        if pd.isna(v):
            return "-"
    except (TypeError, ValueError):
        pass
    return str(v)


def display_frame(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """All-text copy of a numeric table with the lower-bound and interval conventions folded in."""
    cols = list(df.columns)
    skip = set()
    out = {}
    for c in cols:
        if c in skip:
            continue
        if c.endswith(("_lower_bound", "_upper_bound")) and c[: -len("_lower_bound")] in cols:
            continue
        if (c.endswith("_lo") or c.endswith("_hi")) and c[:-3] in cols:
            continue
        text = df[c].map(lambda v: fmt_number(v, digits))
        lb = f"{c}_lower_bound"
        if lb in cols:
            text = pd.Series([(">" + s if bool(f) and s != "-" else s) for s, f in zip(text, df[lb].fillna(False))],
                             index=df.index)
        ub = f"{c}_upper_bound"
        if ub in cols:
            text = pd.Series([("<" + s if bool(f) and s != "-" else s) for s, f in zip(text, df[ub].fillna(False))],
                             index=df.index)
        lo, hi = f"{c}_lo", f"{c}_hi"
        if lo in cols and hi in cols:
            text = pd.Series([
                s if (pd.isna(a) and pd.isna(b)) or s == "-"
                else f"{s} [{fmt_number(a, digits)}, {fmt_number(b, digits)}]"
                for s, a, b in zip(text, df[lo], df[hi])], index=df.index)
        out[c] = text
    return pd.DataFrame(out, index=df.index)


def markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A Markdown pipe table of `df` (see `display_frame`)."""
    d = display_frame(df, digits)
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in d.itertuples(index=False):
        lines.append("| " + " | ".join(s.replace("|", "\\|") for s in row) + " |")
    return "\n".join(lines)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  ">": r"$>$", "<": r"$<$"}


def latex_escape(s: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in s)


def latex(df: pd.DataFrame, digits: int = 3, caption: str = "", label: str = "") -> str:
    """A booktabs LaTeX table of `df` (see `display_frame`); needs \\usepackage{booktabs}."""
    d = display_frame(df, digits)
    align = "".join("r" if pd.api.types.is_numeric_dtype(df[c]) else "l" for c in d.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(latex_escape(str(c)) for c in d.columns) + r" \\", r"\midrule"]
    for row in d.itertuples(index=False):
        lines.append(" & ".join(latex_escape(s) for s in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
