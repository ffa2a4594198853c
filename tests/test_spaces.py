"""Search spaces and the CLI's checks before Ray starts; cluster.yaml against Ray's own validation."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drift_sweeps.sweep import cli, plan as sweep_plan
from drift_sweeps.tune import session
from drift_sweeps.spine.config import TrialConfig
from drift_sweeps.run import main
from drift_sweeps.spaces import (SearchSpace, SpaceError, find_space, list_spaces, load_space, parse_overrides,
                                 parse_space, spaces_dir)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ["quickstart", "kernel_ablation", "annealing", "operators", "stop_gradient", "kmax_scaling",
           "tune_annealing"]


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list:
    """Make any attempt to connect to Ray fail the test; returns the list of attempts."""
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("Ray was started although the input is invalid")

    monkeypatch.setattr(session, "connect", refuse)
    return calls


def test_the_shipped_spaces_are_found_next_to_the_package():
    assert spaces_dir() == REPO / "search_spaces"
    assert set(SHIPPED) <= set(list_spaces())
    assert find_space("quickstart") == REPO / "search_spaces" / "quickstart.yaml"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_space_validates_and_dry_run_reports_its_trial_count(name, capsys, no_ray):
    space = load_space(name)
    assert space.name == name and space.description
    for params in space.grid_points():  # every trial config is a valid TrialConfig
        assert isinstance(space.resolve(params), TrialConfig)
    assert main([name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"^(\d+) trials \(", out, re.M)
    assert m and int(m.group(1)) == space.trial_count(), out
    assert not no_ray


def test_trial_counts_of_the_main_spaces():
    assert load_space("quickstart").trial_count() == 8  # 2 kernels x 2 seeds x 2 schedules
    kmax = load_space("kmax_scaling")
    assert {"kernel", "k_max", "seed"} <= {a.key for a in kmax.axes}
    assert len(next(a for a in kmax.axes if a.key == "k_max").values) >= 6  # points for a scaling law
    assert kmax.trial_count() == 3 * 7 * 5 * 3
    tune = load_space("tune_annealing")
    assert tune.search == "optuna" and tune.scheduler["name"] == "asha" and tune.trial_count() == tune.num_samples
    assert {a.key: a.kind for a in tune.axes} == {"bandwidth": "loguniform", "rate": "loguniform"}
    assert "sinkhorn" in next(a for a in load_space("operators").axes if a.key == "operator").values


def test_quickstart_compares_kernels_and_schedules_on_a_small_budget():
    space = load_space("quickstart")
    configs = [space.resolve(p) for p in space.grid_points()]
    assert {(c.kernel, c.schedule) for c in configs} == {
        (k, s) for k in ("gaussian", "laplacian") for s in ("constant", "exponential")}
    assert all(c.k_max == 4 and c.n_samples <= 512 and c.steps * c.dt <= 40 + 1e-9 for c in configs)
    assert space.group_keys() == ["kernel", "schedule", "bandwidth", "rate", "bandwidth_min"]  # seed pooled


def test_resolve_round_trip_and_serialisation():
    space = load_space("annealing")
    again = SearchSpace.from_dict(space.to_dict())
    assert again.trial_count() == space.trial_count()
    assert [again.resolve(p) for p in again.grid_points()] == [space.resolve(p) for p in space.grid_points()]
    cfg = space.resolve({"bandwidth": 2.0, "seed": 1, "variant": "r0.25"})
    assert (cfg.schedule, cfg.rate, cfg.bandwidth, cfg.seed) == ("exponential", 0.25, 2.0, 1)


def test_overrides_and_smoke():
    assert parse_overrides(["k_max=8", "bandwidth_scales=[0.5, 1, 2]", "device=cpu", "stop_gradient=false"]) == {
        "k_max": 8, "bandwidth_scales": [0.5, 1, 2], "device": "cpu", "stop_gradient": False}
    space = load_space("tune_annealing").with_overrides({"k_max": 16})
    assert space.resolve({"bandwidth": 1.0, "rate": 0.1}).k_max == 16
    smoke = load_space("kmax_scaling").smoked()
    assert smoke.trial_count() == load_space("kmax_scaling").trial_count()
    assert all(smoke.resolve(p).steps <= 60 for p in smoke.grid_points())


# ---- invalid spaces: every error names the file, the key and what is allowed ----------------------

@pytest.fixture
def load_error(make_space):
    """load_error(**fields): the SpaceError message of loading such a space (checked to name the file)."""

    def load(**fields) -> str:
        path = make_space("bad", **fields)
        with pytest.raises(SpaceError) as info:
            load_space(str(path))
        msg = str(info.value)
        assert str(path) in msg, msg
        return msg

    return load


def test_unknown_keys_are_named_with_the_allowed_ones(load_error):
    msg = load_error(serach="grid")
    assert "'serach'" in msg and "allowed: name, description" in msg
    msg = load_error(base_extra={"kernal": "gaussian"})
    assert "base" in msg and "'kernal'" in msg and "allowed keys:" in msg and "kernel" in msg
    msg = load_error(axes={"bandwith": [1.0, 2.0]})
    assert "axes.bandwith" in msg and "allowed keys:" in msg
    msg = load_error(variants=[{"name": "v", "scheduel": "constant"}])
    assert "variants[0]" in msg and "'scheduel'" in msg


def test_unknown_registry_names_list_the_registered_ones(load_error):
    msg = load_error(axes={"kernel": ["gaussian", "gausian"]})
    assert "axes.kernel = 'gausian'" in msg and "allowed: gaussian, laplacian, cauchy" in msg
    msg = load_error(base_extra={"operator": "meanshfit"})
    assert "base.operator" in msg and "sinkhorn" in msg


def test_bad_ranges_and_types(load_error):
    msg = load_error(axes={"bandwidth": [1.0, -0.5]})
    assert "axes.bandwidth = -0.5" in msg and "allowed: > 0" in msg
    msg = load_error(base_extra={"k_max": "four"})
    assert "base.k_max" in msg and "must be int" in msg
    msg = load_error(search="random", axes={"bandwidth": {"loguniform": [0.0, 1.0]}})
    assert "axes.bandwidth" in msg and "0 < low < high" in msg
    msg = load_error(search="random", axes={"k_max": {"uniform": [1, 8]}})
    assert "float key" in msg and "randint" in msg
    msg = load_error(search="random", axes={"bandwidth": {"normal": [0, 1]}})
    assert "loguniform" in msg and "choice" in msg
    msg = load_error(variants=[{"name": "annealed", "schedule": "exponential"}])  # rate stays 0
    assert "variants" in msg or "trial" in msg
    assert "'rate' must be > 0" in msg
    msg = load_error(resources={"cpu": 1, "gpu": 1.5})
    assert "resources.gpu" in msg


def test_search_kind_mismatches(load_error):
    msg = load_error(axes={"bandwidth": {"loguniform": [0.1, 1.0]}})
    assert "search: grid cannot enumerate" in msg
    msg = load_error(search="optuna", axes={"bandwidth": [0.5, 1.0]})
    assert "{choice: [...]}" in msg
    msg = load_error(search="bayes")
    assert "allowed: grid, random, optuna" in msg
    msg = load_error(metric="accuracy")
    assert "allowed: time_to_eps" in msg
    msg = load_error(scheduler="hyperband")
    assert "asha" in msg
    msg = load_error(axes={"schedule": ["constant"]}, variants=[{"name": "v", "schedule": "constant"}])
    assert "both an axis and set by a variant" in msg


def test_invalid_spaces_and_overrides_fail_before_ray_starts(tmp_path, make_space, capsys, no_ray):
    bad = make_space("bad", axes={"kernel": ["gaussian", "epanechnikov"]})
    good = make_space("good", axes={"seed": [0, 1]})
    cases = [
        ([str(bad)], "epanechnikov"),
        (["no_such_space"], "shipped spaces"),
        ([str(good), "--set", "kmax=8"], "unknown key 'kmax'"),
        ([str(good), "--set", "k_max=eight"], "must be int"),
        ([str(good), "--set", "bandwidth=-1"], "--set bandwidth"),
        ([str(good), "--set", "seed=3"], "swept"),
        ([str(good), "--set", "k_max"], "expected key=value"),
        ([str(good), "--gpus-per-trial", "1.5"], "--gpus-per-trial"),
        ([str(good), "--resume", "--results", str(tmp_path / "none")], "no sweep to resume"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err, (argv, err)
    assert not no_ray


def _target_files(folder: Path) -> dict[str, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = {name: folder / name for name in ("good.npy", "one_row.npy", "nan.npy", "words.npy", "text.npy",
                                               "labels.parquet", "cube.npy")}
    np.save(files["good.npy"], np.random.default_rng(0).normal(size=(64, 2)))
    np.save(files["one_row.npy"], np.zeros((1, 2)))
    np.save(files["nan.npy"], np.array([[0.0, 1.0], [np.nan, 2.0]]))
    np.save(files["words.npy"], np.array(["a", "b"]))
    np.save(files["cube.npy"], np.zeros((4, 2, 2)))
    files["text.npy"].write_text("not an array")
    pq.write_table(pa.table({"label": ["a", "b", "c"]}), files["labels.parquet"])
    return files


def test_target_files_are_checked_before_ray(tmp_path, make_space, capsys, no_ray):
    files = _target_files(tmp_path)
    good = make_space("file_target", axes={"seed": [0, 1]})
    cases = [
        (str(tmp_path / "missing.npy"), "no such file"),
        ("/etc/passwd", "expected a .npy or .parquet file"),
        (str(tmp_path), "a folder"),
        (str(files["one_row.npy"]), "N >= 2, got shape (1, 2)"),
        (str(files["cube.npy"]), "got shape (4, 2, 2)"),
        (str(files["nan.npy"]), "non-finite"),
        (str(files["words.npy"]), "not a numeric array"),
        (str(files["text.npy"]), "unreadable"),
        (str(files["labels.parquet"]), "no numeric columns"),
    ]
    for path, expected in cases:
        argv = [str(good), "--set", "target=file", "--set", f"target_path={path}", "--results", str(tmp_path / "r")]
        for extra in ([], ["--serial"]):
            assert main(argv + extra) == 2, (path, extra)
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"target_path {path!r}: " in err[0] and expected in err[0], (path, err)
    # a target file swept as an axis is checked value by value
    swept = make_space("file_axis", base_extra={"target": "file"},
                       axes={"target_path": [str(files["good.npy"]), str(tmp_path / "gone.npy")]})
    assert main([str(swept), "--dry-run"]) == 2
    assert "gone.npy" in capsys.readouterr().err
    argv = [str(good), "--set", "target=file", "--set", f"target_path={files['good.npy']}", "--dry-run"]
    assert main(argv) == 0, capsys.readouterr().err
    assert not no_ray and not (tmp_path / "r").exists()


def test_cli_error_in_a_subprocess_names_the_file():
    done = subprocess.run([sys.executable, "-m", "drift_sweeps.run", "quickstart", "--set", "kernel=gaussian"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "quickstart.yaml" in done.stderr and "swept" in done.stderr and "Ray:" not in done.stdout


def test_make_space_fixture_builds_valid_tiny_spaces(make_space, tiny_base):
    space = load_space(str(make_space("tiny", axes={"seed": [0, 1]})))
    assert space.trial_count() == 2
    assert space.resolve({"seed": 1}).steps == tiny_base["steps"]
    with pytest.raises(SpaceError, match="name"):
        parse_space({"base": {}}, "inline")


# ---- cluster.yaml ----------------------------------------------------------------------------------

def test_cluster_yaml_passes_rays_offline_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)

    assert config["provider"]["type"] == "aws"
    assert config["docker"]["image"] == "rayproject/ray:2.60.0-py311-gpu"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 for t in workers)
    # internet ingress: nothing beyond the launcher's default SSH rule
    assert not config["provider"].get("security_group", {}).get("IpPermissions")
    assert "dashboard-host=0.0.0.0" not in " ".join(config["head_start_ray_commands"])
    # CUDA torch on the GPU workers, the project itself everywhere, the repo synced
    worker_setup = " ".join(config["worker_setup_commands"])
    assert "download.pytorch.org/whl/cu" in worker_setup and "pip install --quiet -e" in worker_setup
    assert "~/drift_sweeps" in config["file_mounts"]
    # no experiment parameters in the cluster file
    text = (REPO / "cluster.yaml").read_text()
    assert not re.search(r"^\s*(k_max|kernel|bandwidth|steps|n_samples)\s*:", text, re.M)

    broken = copy.deepcopy(raw)
    broken["available_node_types"]["head"]["resources"] = {"CPU": 0.5}
    with pytest.raises(Exception, match="integer"):
        validate_config(prepare_config(broken))


LAUNCHER_CONFIGS = ["cluster.yaml", "cluster-local.yaml"]


def test_launcher_configs_are_generated_from_cluster_parts():
    gen = subprocess.run([sys.executable, str(REPO / "cluster" / "generate.py"), "--check"],
                         capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    common = yaml.safe_load((REPO / "cluster" / "common.yaml").read_text())
    configs = [yaml.safe_load((REPO / name).read_text()) for name in LAUNCHER_CONFIGS]
    for key, value in common.items():  # the shared facts are the same in every config
        assert all(config[key] == value for config in configs), key
    # each provider part sets only its own keys: ports, env and mounts come from common.yaml alone
    for part in ("aws.yaml", "local.yaml"):
        assert not set(yaml.safe_load((REPO / "cluster" / part).read_text())) & set(common), part


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_configs_use_ray_token_auth_and_keep_ports_in(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((REPO / name).read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    text = (REPO / name).read_text()
    assert "RAY_AUTH_MODE=disabled" not in text
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "export RAY_AUTH_MODE=token;" in " ".join(config[commands]), commands
    assert "export RAY_AUTH_MODE=token" in " ".join(config["setup_commands"])  # shells of `ray exec`
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--port=6379" in head_start
    if config["provider"]["type"] == "local":
        assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
        assert "pip install --quiet -e ." in " ".join(config["worker_setup_commands"])


def test_a_folder_holding_only_a_killed_writers_temporaries_starts_afresh(tmp_path, make_space):
    space = make_space("fresh", axes={"seed": [0, 1]})
    folder = tmp_path / "res" / "fresh"
    folder.mkdir(parents=True)
    (folder / ".tmp-sweep.json-0123abcd").write_text("{")
    args = cli.build_parser().parse_args([str(space), "--results", str(tmp_path / "res")])
    p = sweep_plan.plan(args)
    assert sweep_plan.settle(p, args).mode == "new"
    (folder / "sweep.json").write_text("{not json")
    with pytest.raises(SpaceError, match="sweep.json: unreadable"):
        sweep_plan.settle(p, args)
