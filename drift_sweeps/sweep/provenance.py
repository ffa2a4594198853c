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
    """JSON of the driver's package versions (`spine.record.versions`, the keys each trial reports with its own),
    torch's from its metadata and its version.py: the driver never imports torch."""
    import importlib.metadata
    import importlib.util
    import re

    from .. import __version__
    from ..spine import record

    try:
        torch: Optional[str] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch = None
    cuda = None
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:  # torch/version.py: `cuda: Optional[str] = '12.8'` (None on CPU builds)
        try:
            found = re.search(r"^cuda\b[^=]*=\s*'([^']+)'", (Path(spec.origin).parent / "version.py").read_text(), re.M)
            cuda = found.group(1) if found else None
        except OSError:
            pass
    return record.versions(__version__, torch, cuda, more=("optuna", "pandas", "pyarrow"))
