"""Import discipline: analysis/ never reaches torch or ray; core/ imports torch and the standard library only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)
FORBIDDEN = {"torch", "ray"}
ANALYSIS_THIRD_PARTY = {"numpy", "pandas", "pyarrow", "scipy", "matplotlib", "seaborn", "statsmodels", "lmfit",
                        "optuna", "plotly"}  # optuna: fANOVA importances; plotly: report.html
# the torch-free spine: config (names, defaults), record (what a trial reports), the results store,
# and the torch-free facts of core (theory, torus modes, schedules)
ANALYSIS_MAY_USE = {"drift_sweeps.results", "drift_sweeps.record", "drift_sweeps.config", "drift_sweeps.core.theory",
                    "drift_sweeps.core.torus", "drift_sweeps.core.schedules", "drift_sweeps.core.registry"}
CORE_LAZY = {"numpy", "pyarrow", "scipy", "sklearn", "finufft"}  # only inside functions (file target, digits, NUFFT)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, inside a function?) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.append((mod, nested))
                for alias in child.names:  # `from pkg import submodule`
                    if module_file(f"{mod}.{alias.name}") is not None:
                        found.append((f"{mod}.{alias.name}", nested))
            visit(child, inner)

    visit(tree, False)
    return found


def in_repo(name: str) -> bool:
    return name.split(".")[0] in {"analysis", "drift_sweeps"} and module_file(name) is not None


def with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def reachable_from(start: list[str]) -> tuple[set[str], dict[str, set[str]]]:
    """In-repo modules reachable from `start` (package __init__s included) and the external imports of each."""
    seen: set[str] = set()
    external: dict[str, set[str]] = {}
    todo = [m for s in start for m in with_parents(s)]
    while todo:
        mod = todo.pop()
        if mod in seen or module_file(mod) is None:
            continue
        seen.add(mod)
        for name, _ in imports_of(module_file(mod)):
            if in_repo(name):
                todo.extend(with_parents(name))
            else:
                external.setdefault(mod, set()).add(name.split(".")[0])
    return seen, external


ANALYSIS_MODULES = sorted(module_name(p) for p in (ROOT / "analysis").glob("*.py"))
CORE_FILES = sorted((ROOT / "drift_sweeps" / "core").glob("*.py"))


def test_there_is_something_to_check():
    assert {"analysis.load", "analysis.fits", "analysis.report", "analysis.headline"} <= set(ANALYSIS_MODULES)
    assert any(p.name == "theory.py" for p in CORE_FILES)


def test_analysis_never_reaches_torch_or_ray():
    seen, external = reachable_from(ANALYSIS_MODULES)
    bad = {mod: sorted(ext & FORBIDDEN) for mod, ext in external.items() if ext & FORBIDDEN}
    assert not bad, f"torch/ray reachable from analysis/ through: {bad}"
    drift = {m for m in seen if m.startswith("drift_sweeps")} - {"drift_sweeps", "drift_sweeps.core"}
    extra = drift - ANALYSIS_MAY_USE
    assert not extra, f"analysis/ reaches drift_sweeps modules outside the torch-free spine: {extra}"


def test_analysis_uses_only_the_scientific_python_stack():
    for mod in ANALYSIS_MODULES:
        for name, _ in imports_of(module_file(mod)):
            root = name.split(".")[0]
            assert root in STDLIB or root in ANALYSIS_THIRD_PARTY or in_repo(name), f"{mod} imports {name}"


def test_core_imports_torch_and_stdlib_only():
    for path in CORE_FILES:
        for name, nested in imports_of(path):
            root = name.split(".")[0]
            if name.startswith("drift_sweeps."):
                assert name.startswith("drift_sweeps.core"), f"{path.name} imports {name} from outside core"
                continue
            allowed = STDLIB | {"torch"} | (CORE_LAZY if nested else set())
            assert root in allowed, f"core/{path.name} imports {name}" + ("" if nested else " at module level")


def test_theory_module_is_pure_python():
    path = ROOT / "drift_sweeps" / "core" / "theory.py"
    assert all(name.split(".")[0] in STDLIB for name, _ in imports_of(path))


def test_importing_every_analysis_module_loads_no_torch_or_ray():
    code = ("import sys\nimport analysis.headline\n"  # the sweep CLI imports this one: keep it light
            + "heavy = sorted(m for m in ('scipy', 'matplotlib', 'seaborn') if m in sys.modules)\n"
            + "assert not heavy, f'analysis.headline pulls in {heavy}'\n"
            + "".join(f"import {m}\n" for m in ANALYSIS_MODULES)
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray'))\n"
            + "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
