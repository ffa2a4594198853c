"""The live view of a running sweep, through the tools a researcher already uses.

- Ray dashboard: an embedded Ray starts with its dashboard when the dashboard's dependencies are
  installed (`pip install "ray[default]"`, or the project's `live` extra); the URL is printed at the start.
- TensorBoard: every metric a trial reports is written, as it reports it, to
  `<sweep>/tensorboard/<trial_id>/` (tensorboardX, which ray[tune] already brings); open them with
  `tensorboard --logdir <sweep>/tensorboard` (`pip install tensorboard`).
- Optuna: an `optuna` search mirrors its study to `<sweep>/optuna.db` (SQLite), so
  `optuna-dashboard sqlite:///<sweep>/optuna.db` shows it while the sweep runs.

Neither live view can take the sweep down: the first write that fails (a full or read-only disk) warns once
and that view stops; the study itself is held in memory.

TensorBoard files and the Optuna database need a local sweep folder; with an `s3://` results root
the progress lines and the Ray dashboard remain.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Iterable, Optional

from ray import tune

from .ray_compat import connected_dashboard_url, dashboard_dependency_error

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
OPTUNA_DB = "optuna.db"
FLUSH_S = 2  # TensorBoard files are at most this many seconds behind the reports


def local_folder(sweep_root: str) -> Optional[str]:
    """The sweep folder as an absolute local path; None for a remote (s3://, ...) results root."""
    if sweep_root.startswith("file://"):
        sweep_root = sweep_root[len("file://"):]
    if "://" in sweep_root:
        return None
    return os.path.abspath(sweep_root)


def dashboard_available() -> bool:
    """Whether this Ray installation can start its dashboard (ray[default]'s extra packages are present)."""
    try:
        return dashboard_dependency_error() is None
    except ImportError:  # pragma: no cover - an older or newer Ray layout
        return False


def dashboard_url(context: Any = None) -> Optional[str]:
    """The Ray dashboard's URL (http://host:port) from ray.init's return value, or of the connected cluster."""
    url = getattr(context, "dashboard_url", None) if context is not None else None
    if not url:
        try:
            import ray

            url = connected_dashboard_url() if ray.is_initialized() else None
        except Exception:  # noqa: BLE001 - no dashboard is a normal state, not an error
            url = None
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def optuna_storage_url(sweep_root: str) -> Optional[str]:
    """`sqlite:////abs/path/<sweep>/optuna.db` for a local sweep folder, else None (in-memory study)."""
    folder = local_folder(sweep_root)
    return f"sqlite:///{os.path.join(folder, OPTUNA_DB)}" if folder else None


def optuna_storage(sweep_root: str):
    """The sweep's Optuna storage: the study in memory, mirrored to `optuna.db` in a local sweep folder (created
    on first use) for optuna-dashboard; None for a remote root.  A file that cannot be opened or written (a
    full or read-only disk) warns once and the study goes on in memory (tune/study_storage.py)."""
    folder = local_folder(sweep_root)
    if folder is None:
        return None
    from .study_storage import MirroredStorage

    path = os.path.join(folder, OPTUNA_DB)

    def open_file():
        os.makedirs(folder, exist_ok=True)
        if not os.path.exists(path):
            _create_study_file(path)
        return _open_study_file(f"sqlite:///{path}")

    return MirroredStorage(path, open_file)


OPEN_TRIES = 3  # a study file whose schema another process is still making: tries of opening it, 0.5 s apart


def _create_study_file(path: str) -> None:
    """Optuna's schema made in a file of its own and linked in under `path` complete: a reader that opens
    `path` as soon as it appears (optuna-dashboard) never meets, or races to make, a half-made schema.  A file
    someone else put there first (a dashboard started before the sweep) is kept."""
    import optuna

    tmp = f"{path}.{os.getpid()}.new"
    try:
        optuna.storages.RDBStorage(f"sqlite:///{tmp}").engine.dispose()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a rename, kept from clobbering a file made since
            if not os.path.exists(path):
                os.rename(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open_study_file(url: str):
    """RDBStorage on `url`; a reader may hold the file briefly (SQLite waits up to 30 s for it), and a file that
    another program made in place (an optuna-dashboard started first) may still be getting its schema: that
    fails a try with 'already exists' or a UNIQUE constraint."""
    import optuna

    for attempt in range(OPEN_TRIES):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})
        except Exception:  # noqa: BLE001 - the last try's error is the one reported
            if attempt == OPEN_TRIES - 1:
                raise
            time.sleep(0.5)


def tensorboard_dir(sweep_root: str) -> Optional[str]:
    folder = local_folder(sweep_root)
    return os.path.join(folder, TENSORBOARD_DIR) if folder else None


class TensorBoardWriter(tune.Callback):
    """Driver-side: each numeric metric of each `tune.report` as a TensorBoard scalar, step = the trial's step.

    One event file per trial under `<logdir>/<trial_id>/`, flushed at each report (well within FLUSH_S) so
    TensorBoard shows a running sweep; the trial's swept parameters are its first text summary.  Written in
    the callback itself (tensorboardX's event file, without its writer thread: a thread that dies on a full
    disk prints a traceback, and its queue then blocks the driver).  A live view must never take the sweep
    down: the first failed write warns once, and TensorBoard output stops for the rest of the sweep.
    """

    def __init__(self, logdir: str, metrics: Iterable[str]) -> None:
        self._logdir = logdir
        self._metrics = list(metrics)
        self._writers: dict[str, Any] = {}
        self.failed = False

    def _guard(self, action: Any, *args: Any) -> None:
        """Run a write; the first failure warns once and turns TensorBoard output off."""
        if self.failed:
            return
        try:
            action(*args)
        except Exception as err:  # noqa: BLE001 - a live view's failure must not stop the sweep
            self.failed = True
            self._writers.clear()
            log.warning("TensorBoard output stopped (%s: %s); the sweep goes on", type(err).__name__,
                        " ".join(str(err).split())[:200])

    def _writer(self, trial: Any):
        w = self._writers.get(trial.trial_id)
        if w is None:
            from tensorboardX.event_file_writer import EventsWriter
            from tensorboardX.summary import text

            folder = os.path.join(self._logdir, trial.trial_id)
            os.makedirs(folder, exist_ok=True)
            w = EventsWriter(os.path.join(folder, "events"))
            params = ", ".join(f"{k}={v}" for k, v in sorted((trial.config or {}).items()))
            w.write_event(_event(0, text("params", params or "base config")))
            self._writers[trial.trial_id] = w
        return w

    def _report(self, trial: Any, result: dict) -> None:
        from tensorboardX.summary import scalar

        w = self._writer(trial)
        for name in self._metrics:
            v = result.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                w.write_event(_event(int(result["step"]), scalar(name, float(v))))
        w.flush()  # one flush per report (a few a second at most): TensorBoard sees it at once

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("step") is not None:
            self._guard(self._report, trial, result)

    def _close(self, trial: Any) -> None:
        w = self._writers.pop(trial.trial_id, None)
        if w is not None:
            self._guard(w.close)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._close(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for w in list(self._writers.values()):
            self._guard(w.close)
        self._writers.clear()


def _event(step: int, summary: Any) -> Any:
    """A TensorBoard event of one summary at `step`."""
    from tensorboardX.proto.event_pb2 import Event

    return Event(wall_time=time.time(), step=step, summary=summary)


def live_lines(sweep_root: str, dashboard: Optional[str], optuna_db: Optional[str]) -> list[str]:
    """The lines printed at the start of a sweep: where to watch it."""
    lines = []
    if dashboard:
        lines.append(f"live: Ray dashboard {dashboard}")
    tb = tensorboard_dir(sweep_root)
    if tb:
        lines.append(f"live: tensorboard --logdir {tb}")
    if optuna_db:
        lines.append(f"live: optuna-dashboard {optuna_db}")
    return lines
