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
    """JSON of the driver's package versions (workers report their own with each trial); null where absent."""
    import importlib.metadata

    from ..trial import versions

    def version(name: str) -> Optional[str]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return json.dumps({**json.loads(versions()), **{n: version(n) for n in ("optuna", "pandas", "pyarrow")}},
                      sort_keys=True)
