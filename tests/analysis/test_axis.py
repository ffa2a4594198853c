"""--axis: expressions of config keys are parsed safely, evaluated per trial, and drive the report end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.axis import AxisError, apply_axis, evaluate_axis, parse_axis
from analysis.fits import AXIS_LAWS, LAWS, fit_law, laws_for
from analysis.load import Sweep
from analysis.report import main

ROOT = Path(__file__).resolve().parents[2]


def _trials() -> pd.DataFrame:
    cfg = [{"separation": s} for s in (2.0, 4.0, 6.0)]
    return pd.DataFrame({"trial_id": ["a", "b", "c"], "k_max": [1, 2, 4], "bandwidth": [0.5, 1.0, 2.0],
                         "kernel": ["gaussian"] * 3, "config_json": [json.dumps(c) for c in cfg]})


@pytest.mark.parametrize("expr, names", [
    ("separation/bandwidth", ("separation", "bandwidth")),
    (" k_max * bandwidth ", ("k_max", "bandwidth")),
    ("log(n_samples)", ("n_samples",)),
    ("-dim**2 + 1.5", ("dim",)),
])
def test_parse_keeps_the_names_and_a_compact_text(expr, names):
    axis = parse_axis(expr)
    assert axis.names == names and " " not in axis.expr


@pytest.mark.parametrize("expr, piece", [
    ("__import__('os').system('true')", "__import__"),
    ("bandwidth.real", "bandwidth.real"),
    ("k_max[0]", "k_max[0]"),
    ("k_max > 2", "k_max>2"),
    ("'bandwidth'", "'bandwidth'"),
    ("lambda: 1", "lambda:1"),
    ("log", "log"),
    ("log(k_max, 2)", "one argument"),
    ("k_max +", "not an expression"),
])
def test_parse_refuses_everything_but_arithmetic(expr, piece):
    with pytest.raises(AxisError) as err:
        parse_axis(expr)
    assert piece in str(err.value) and "\n" not in str(err.value)


def test_evaluate_reads_columns_and_config_json_keys():
    tr = _trials()
    np.testing.assert_allclose(evaluate_axis(parse_axis("separation/bandwidth"), tr), [4.0, 4.0, 3.0])
    np.testing.assert_allclose(evaluate_axis(parse_axis("log2(k_max)*bandwidth - 1"), tr), [-1.0, 0.0, 3.0])
    np.testing.assert_allclose(evaluate_axis(parse_axis("2**k_max"), tr), [2.0, 4.0, 16.0])
    assert evaluate_axis(parse_axis("k_max/(bandwidth-1)"), tr).isna().tolist() == [False, True, False]


def test_unknown_or_categorical_key_is_one_line_naming_it_and_the_allowed_keys():
    with pytest.raises(AxisError) as err:
        evaluate_axis(parse_axis("separaton/bandwidth"), _trials())
    msg = str(err.value)
    assert "unknown key 'separaton'" in msg and "did you mean separation" in msg
    assert "allowed keys: " in msg and "bandwidth" in msg and "k_max" in msg and "\n" not in msg
    with pytest.raises(AxisError, match="'kernel' is not a numeric config key"):
        evaluate_axis(parse_axis("kernel*2"), _trials())


def test_apply_axis_sets_the_column_and_drops_its_keys_from_the_groups():
    tr = _trials().assign(seed=0, swept_axes="kernel,bandwidth,k_max")
    sweep = Sweep(root="x", trials=tr, curves=pd.DataFrame(), spectra=pd.DataFrame(), axes=["bandwidth", "k_max"])
    assert sweep.scaling_axis == "k_max" and sweep.group_keys == ["bandwidth"]
    assert apply_axis(sweep, None) is sweep and apply_axis(sweep, "k_max") is sweep
    derived = apply_axis(sweep, "k_max*bandwidth")
    assert derived.scaling_axis == "k_max*bandwidth" and derived.group_keys == []
    assert derived.trials["k_max*bandwidth"].tolist() == [0.5, 2.0, 8.0]
    assert apply_axis(sweep, "k_max*0").scaling_axis is None  # one value: no fits


def test_k_max_keeps_its_three_laws_and_any_other_axis_gets_four():
    assert laws_for("k_max") is LAWS and list(LAWS) == ["exp_k2", "power", "log"]
    assert list(laws_for("separation/bandwidth")) == ["exp_lin", "exp_x2", "power", "log"]
    x = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    t = np.exp(0.3 * x)
    assert fit_law(AXIS_LAWS["power"], x, t, np.ones(5, bool), symbol="x").reason == "needs x > 0"
    assert fit_law(AXIS_LAWS["exp_lin"], x, t, np.ones(5, bool)).ok


@pytest.fixture(scope="module")
def planted_report(tmp_path_factory):
    from synthetic_sweep import write_planted_sweep

    root = str(tmp_path_factory.mktemp("planted") / "sweep")
    write_planted_sweep(root, "exp_lin", seeds=3)
    out = os.path.join(root, "report")
    assert main([root, "--axis", "separation / bandwidth", "--n-boot", "20", "--out", out]) == 0
    return root, out


def test_axis_end_to_end_through_the_cli(planted_report):
    root, out = planted_report
    md = Path(out, "report.md").read_text()
    assert "fitted against separation/bandwidth" in md and "## Times per separation/bandwidth" in md
    assert "Here x = separation/bandwidth." in md and "`log T = a + b x`" in md and "## Group statistics" in md
    for name in ("scaling", "scaling_by_group", "error_curves", "ablation"):
        assert os.path.getsize(os.path.join(out, "figures", f"{name}.png")) > 1000, name
    html = Path(out, "report.html").read_text().replace("\\u002f", "/")  # plotly's JSON escapes '/'
    assert "T against separation/bandwidth" in html and 'id="stats"' in html
    fits = pd.read_csv(os.path.join(out, "fits.csv"))
    assert sorted(fits["group"].unique()) == ["kernel=gaussian", "kernel=laplacian"]
    assert fits.groupby("group")["law"].apply(list).map(len).eq(4).all()
    best = fits[fits["best"] & (fits["group"] == "kernel=gaussian")].iloc[0]
    assert best["law"] in ("exp_lin", "exp_x2") and fits["ok"].all()
    assert json.loads(Path(out, "report_args.json").read_text())["axis"] == "separation/bandwidth"
    stats = pd.read_csv(os.path.join(out, "stats.csv")).set_index("group")
    assert stats.loc["kernel=laplacian", "ratio"] == pytest.approx(1.5, rel=0.35)  # planted 1.5x slower


def test_bad_axis_is_one_line_and_exit_code_2(planted_report, capsys):
    root, _ = planted_report
    assert main([root, "--axis", "separaton/bandwidth", "--out", os.path.join(root, "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --axis") and "separaton" in err and "\n" not in err
    done = subprocess.run([sys.executable, "-m", "analysis.report", root, "--axis", "open('x')"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "not allowed" in done.stderr


def test_axis_report_html_renders_without_errors(planted_report):
    from test_html_report import render  # skips without Chromium

    _, out = planted_report
    errors, network, stats, _ = render(os.path.join(out, "report.html"))
    assert not errors and not network
    scaling = [s for s in stats if s["id"] == "fig-scaling"]
    assert scaling and scaling[0]["points"] > 0
