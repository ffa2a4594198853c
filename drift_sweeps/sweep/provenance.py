"""Where a sweep's results come from: the checkout's commit and the driver's package versions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]  # the checkout holding the drift_sweeps package


def git_commit() -> Optional[str]:
    """HEAD of the checkout the package runs from ('+dirty' with uncommitted changes), None outside git."""
    if not (REPO / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def driver_versions() -> str:
    """JSON of the driver's package versions (workers report their own with each trial, `trial.versions`, under
    the same keys); null where absent.  From the installed packages' metadata: the driver never imports torch."""
    import importlib.metadata
    import importlib.util
    import platform
    import re

    from .. import __version__

    def version(name: str) -> Optional[str]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cuda = None
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:  # torch/version.py: `cuda: Optional[str] = '12.8'` (None on CPU builds)
        try:
            found = re.search(r"^cuda\b[^=]*=\s*'([^']+)'", (Path(spec.origin).parent / "version.py").read_text(), re.M)
            cuda = found.group(1) if found else None
        except OSError:
            pass
    names = ("torch", "ray", "numpy", "optuna", "pandas", "pyarrow")
    return json.dumps({"python": platform.python_version(), "drift_sweeps": __version__, "cuda": cuda,
                       **{n: version(n) for n in names}}, sort_keys=True)
