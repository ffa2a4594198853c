"""Where spaces come from: the shipped `search_spaces/` folder, a space file by name or path, and `--set`
overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..spine.config import TrialConfig
from .parts import MAX_FILE_BYTES, MAX_SET_BYTES, SpaceError, _short
from .space import SearchSpace, parse_space
from .yaml_io import load_yaml


def spaces_dir() -> Path:
    """The shipped `search_spaces/` folder: $DRIFT_SWEEPS_SPACES, else next to the package (repo checkout)."""
    env = os.environ.get("DRIFT_SWEEPS_SPACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent  # the drift_sweeps package
    for candidate in (here.parent / "search_spaces", here / "search_spaces", Path.cwd() / "search_spaces"):
        if candidate.is_dir():
            return candidate
    return here.parent / "search_spaces"


def list_spaces() -> list[str]:
    """Names of the shipped search spaces."""
    folder = spaces_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_space(name_or_path: str) -> Path:
    """A space file from a shipped name (`quickstart`) or a path (`my/space.yaml`)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or os.sep in name_or_path or "/" in name_or_path:
        if p.is_file():
            return p
        raise SpaceError(f"search space file {name_or_path} not found")
    for suffix in (".yaml", ".yml"):
        candidate = spaces_dir() / f"{name_or_path}{suffix}"
        if candidate.is_file():
            return candidate
    if p.is_file():
        return p
    raise SpaceError(f"unknown search space {name_or_path!r}; shipped spaces (in {spaces_dir()}): "
                     f"{', '.join(list_spaces()) or 'none'}; or pass a path to a .yaml file")


def load_space(name_or_path: str) -> SearchSpace:
    """Read and validate one space file."""
    path = find_space(name_or_path)
    shown = os.path.relpath(path)
    source = str(path) if shown.startswith("..") else shown
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SpaceError(f"{source}: {path.stat().st_size} bytes; a search space file may have at most "
                             f"{MAX_FILE_BYTES} bytes (1 MiB)")
        data = path.read_bytes()
    except OSError as err:
        raise SpaceError(f"{source}: cannot read it: {err.strerror or err}") from None
    return parse_space(load_yaml(data, source, MAX_FILE_BYTES), source)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` strings (values parsed as YAML) -> {key: value}; keys checked against TrialConfig."""
    out: dict[str, Any] = {}
    known = TrialConfig.keys()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(f"--set {_short(item)}: expected key=value, e.g. --set k_max=8")
        if key not in known:
            raise SpaceError(f"--set {_short(item)}: unknown key {_short(key)}; allowed keys: {', '.join(known)}")
        out[key] = load_yaml(text, f"--set {key}", MAX_SET_BYTES) if text.strip() else None
    return out
