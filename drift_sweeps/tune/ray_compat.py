"""The one place where drift_sweeps relies on a Ray internal, kept apart so that a Ray upgrade that changes
it fails one test (tests/test_spine.py) instead of a user's sweep.

- `last_cluster_address`: where `ray start` / `ray up` recorded the running cluster (what
  `ray.init(address="auto")` reads), without connecting to it.
- `dashboard_dependency_error`, `connected_dashboard_url`: whether this Ray can start its dashboard, and
  where the dashboard of the connected cluster is (the live view, `live.py`).
- `tensorboardx_without_torch`: tensorboardX (Tune's loggers, our live TensorBoard view) imported without
  the torch that its package imports, in a try, only to accept tensors: the driver never imports torch.

(`--resume` used to restore Tune's pickled experiment state and patch its RunConfig here; it now builds a
fresh Tuner from the recorded JSON spec instead, see `drift_sweeps.sweep.tune_runner`.)
"""

from __future__ import annotations

import sys
from typing import Callable, Optional


def last_cluster_address(temp_dir: Optional[str]) -> Optional[str]:
    """RAY_ADDRESS, else the address of the last cluster started on this machine, else None."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None, temp_dir=temp_dir)


def dashboard_dependency_error() -> Optional[str]:
    """Why this Ray installation cannot start its dashboard (ray[default] missing), None when it can."""
    from ray._private.utils import get_dashboard_dependency_error

    err = get_dashboard_dependency_error()  # an ImportError instance, or None
    return None if err is None else str(err)


def connected_dashboard_url() -> Optional[str]:
    """The dashboard address (host:port) of the cluster this process joined, None when there is none."""
    from ray._private.worker import get_dashboard_url

    return get_dashboard_url() or None


RAY_STORAGE_LOGGERS = ("ray.train._internal.storage", "ray.train._internal.syncer")  # Tune's uploads to storage


class _OneLineErrors:
    """A logging filter: a record logged with an exception (logger.exception) keeps its message and `cause(err)`,
    not the traceback."""

    def __init__(self, cause: Callable[[BaseException], str]) -> None:
        self.cause = cause

    def filter(self, record) -> bool:  # noqa: ANN001 - logging.LogRecord
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()} ({self.cause(record.exc_info[1])})", None
            record.exc_info, record.exc_text = None, None
        return True


def one_line_storage_errors(cause: Callable[[BaseException], str]) -> None:
    """Ray's writes of Tune's state to the sweep's storage log a failure with its traceback; a storage fault is
    the sweep's own one-line error (exit 74), and can reach Ray's writes first (a trial's folder created as
    the endpoint goes): their records keep one line each, the error as `cause` gives it.  Idempotent."""
    import logging

    for name in RAY_STORAGE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OneLineErrors) for f in logger.filters):
            logger.addFilter(_OneLineErrors(cause))


def quiet_storage_loggers() -> None:
    """Once the sweep has stopped on its storage: Ray's own writes of Tune's state there (threads that can outlive
    fit) fail the same way, and would each log a traceback."""
    import logging

    for name in RAY_STORAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def quiet_exit_in_callbacks() -> None:
    """In a trial process: when Ray stops the worker (SIGTERM -> SystemExit) while the garbage collector runs a
    callback, Python prints 'Exception ignored in ... Traceback' to the worker's stderr, which Ray forwards to the
    sweep's terminal.  Such an exit is what was asked for: it is not shown.  Every other unraisable error is."""
    import sys

    if getattr(sys.unraisablehook, "drift_quiet", False):
        return
    default = sys.unraisablehook

    def hook(unraisable) -> None:  # noqa: ANN001 - sys.UnraisableHookArgs
        if not isinstance(unraisable.exc_value, (SystemExit, KeyboardInterrupt)):
            default(unraisable)

    hook.drift_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def tensorboardx_without_torch() -> None:
    """Import tensorboardX with torch hidden (torch is optional to it: `try: import torch`).  The driver handles
    no tensors; without this, the first TensorBoard writer (Tune's or ours) imports torch into the driver: 2 s
    of a sweep's start and ~150 MB of its memory.  Nothing when either is imported already."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError meanwhile
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        pass  # not installed: the writers say so themselves
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
