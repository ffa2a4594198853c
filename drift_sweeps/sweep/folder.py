"""One sweep's folder, a local path or an s3:// URI: the only owner of its layout.

    <sweep>/sweep.json                the resolved spec, written before any trial starts; --resume reads it
    <sweep>/configs/<trial_id>.json   a trial's parameters and full config, written when it starts
    <sweep>/{trials,curves,spectra,samples}/<trial_id>.parquet   its tables (drift_sweeps.results)
    <sweep>/tune/                     Tune's own experiment state (pickles: never loaded back)
    <sweep>/tensorboard/, optuna.db   the live view of a local folder (drift_sweeps.tune.live)
    <sweep>/.driver-lock.json         the lock of the driver running the sweep (lock.py)
    .tmp-*                            what a writer killed mid-write left behind

A trial is finished when its trials row is readable; every other file of a trial without one is partial
and is removed before the sweep continues.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import logging
import os
import posixpath
import re
from typing import Any, Iterable, Iterator, Mapping, Optional

from .. import results
from ..spaces import SearchSpace, SpaceError, jsonable
from ..spine.config import ConfigError
from ..spine.record import STATUSES
from .lock import LEASE_S, LOCK_NAME, FolderLock

log = logging.getLogger("drift_sweeps")

SPEC_FILE = "sweep.json"
TUNE_DIR = "tune"
CONFIGS_DIR = "configs"
MAX_SPEC_BYTES = 256 * 2**20  # sweep.json read back by --resume (every grid trial's config: ~1 KiB each)


class StorageError(OSError):
    """The sweep folder's storage failed (unwritable, unreachable): exit 74, like sysexits' EX_IOERR."""


def one_line(text: Any) -> str:
    """`text` with its whitespace runs as single spaces."""
    return " ".join(str(text).split())


_ERRNO_RE = re.compile(r"errno[ =:]*(\d+)", re.IGNORECASE)


def storage_cause(err: BaseException) -> str:
    """A short cause of a failed write: 'No space left on device (ENOSPC)', or the error's first 200 characters."""
    code = getattr(err, "errno", None)
    if not code:
        m = _ERRNO_RE.search(str(err))
        code = int(m.group(1)) if m else None
    if code and code in errnos.errorcode:
        return f"{os.strerror(code)} ({errnos.errorcode[code]})"
    return f"{type(err).__name__}: {one_line(err)[:200]}"


@contextlib.contextmanager
def storage_errors(root: str, what: str) -> Iterator[None]:
    """A failed write under `root` (full disk, read-only, permission, S3 after its retries) as a StorageError."""
    try:
        yield
    except StorageError:
        raise
    except OSError as err:
        raise StorageError(f"{root}: cannot write {what}: {storage_cause(err)}") from None


class SweepFolder:
    """The folder of one sweep: what it holds, its spec, its finished trials, its lock."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._recorded: set[str] = set()  # trials with a row: kept by `prepare`, written by `record_trial`

    @classmethod
    def under(cls, results_root: str, name: str) -> "SweepFolder":
        """The folder of sweep `name` under a results root."""
        return cls(results.sweep_uri(results_root, name))

    def __repr__(self) -> str:
        return f"SweepFolder({self.root!r})"

    # ---- what it holds -----------------------------------------------------------------------------
    def _entries(self) -> list[Any]:
        """The folder's top-level entries (pyarrow FileInfo), less the driver's lock."""
        import pyarrow.fs as pafs

        fs, root = results.resolve(self.root)
        try:
            entries = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        except OSError:
            return []
        return [e for e in entries if not posixpath.basename(e.path).startswith(LOCK_NAME)]

    def exists(self) -> bool:
        """True when the folder holds anything but a lock."""
        return bool(self._entries())

    def only_temporaries(self) -> bool:
        """True when the folder holds nothing but a killed writer's hidden temporaries (`.tmp-*`)."""
        entries = self._entries()
        return bool(entries) and all(posixpath.basename(e.path).startswith(".tmp-") for e in entries)

    def read_spec(self) -> Optional[dict[str, Any]]:
        """The recorded spec (sweep.json) as plain JSON data, None when absent; never executes what it reads."""
        where = f"{self.root}/{SPEC_FILE}"
        try:
            fs, root = results.resolve(self.root)
            info = fs.get_file_info(f"{root}/{SPEC_FILE}")
            if info.size is not None and info.size > MAX_SPEC_BYTES:
                raise SpaceError(f"{where}: {info.size} bytes; allowed: at most {MAX_SPEC_BYTES}")
            record = results.read_json(self.root, SPEC_FILE)
        except (ValueError, OSError, RecursionError) as err:
            if isinstance(err, SpaceError):
                raise
            raise SpaceError(f"{where}: unreadable ({type(err).__name__}: {one_line(err)[:200]}); pass --overwrite "
                             "to start the sweep over, or --name to write a new one") from None
        if record is not None and not (isinstance(record, dict) and isinstance(record.get("space"), dict)):
            raise SpaceError(f"{where}: not a sweep record (no 'space' mapping); pass --overwrite or --name")
        return record

    def recorded_space(self, record: Mapping[str, Any]) -> SearchSpace:
        """The SearchSpace of a recorded spec, validated again like a space file."""
        where = f"{self.root}/{SPEC_FILE}"
        try:
            return SearchSpace.from_dict(record["space"])
        except (SpaceError, ConfigError) as err:
            raise SpaceError(f"{where}: the recorded spec is invalid: {err}") from None
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise SpaceError(f"{where}: the recorded spec is damaged ({type(err).__name__}: "
                             f"{one_line(err)[:120]}); pass --overwrite or --name") from None

    def finished_rows(self, quiet: bool = False) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """(trial id -> its trials row, unreadable files): the finished trials, read file by file (a damaged
        file is reported and its trial counted as unfinished)."""
        import pyarrow.parquet as pq

        fs, paths = results.table_files(self.root, "trials")
        rows: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        for path in paths:
            if results.is_part(path):  # a compacted file: the rows of many trials (written whole, checked then)
                rows.update({r["trial_id"]: r for r in pq.read_table(path, filesystem=fs).to_pylist()})
                continue
            tid = os.path.basename(path)[: -len(".parquet")]
            try:
                table = pq.read_table(path, filesystem=fs)
                row = table.to_pylist()[0] if table.num_rows == 1 else None
            except Exception as err:  # noqa: BLE001 - any unreadable file: that trial runs again
                row = None
                if not quiet:
                    log.warning("%s: unreadable (%s); its trial runs again", path, one_line(err)[:120])
            if (row is None or row.get("trial_id") != tid or not isinstance(row.get("config_json"), str)
                    or row.get("status") not in STATUSES):
                bad.append(path)
                continue
            rows[tid] = row
        return rows, bad

    def finished_count(self) -> int:
        """How many trials have a readable row."""
        return len(self.finished_rows(quiet=True)[0])

    def row_files(self) -> int:
        """How many trials rows there are, readable or not."""
        return len(results.trial_ids(self.root))

    def recorded(self) -> bool:
        """True when the folder holds this sweep's spec (so `--resume` can continue it)."""
        try:
            return self.exists() and self.read_spec() is not None
        except (SpaceError, OSError):
            return False

    # ---- before the trials ---------------------------------------------------------------------------
    def lock(self, lease_s: float = LEASE_S) -> FolderLock:
        """The folder's driver lock (a context manager; see lock.py)."""
        return FolderLock(self.root, lease_s=lease_s)

    def start_over(self) -> None:
        """Delete everything in the folder except the driver's lock."""
        import pyarrow.fs as pafs

        fs, _ = results.resolve(self.root)
        for entry in self._entries():
            if entry.type == pafs.FileType.Directory:
                fs.delete_dir(entry.path)
            else:
                fs.delete_file(entry.path)

    def prepare(self, resume: bool, overwrite: bool, spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The folder before the trials: on a resume the finished trials' rows (the rest of their files
        removed); otherwise an emptied folder (--overwrite, or only temporaries left) with the spec written.
        -> finished trials (trial id -> trials row)."""
        if resume:
            kept, _ = self.finished_rows()
            results.remove_temporaries(self.root)
            self._log_removed(results.remove_trials(self.root, lambda tid: tid not in kept))
            self.compact()
            self._recorded = set(kept)
            return kept
        if self.exists() and (overwrite or self.only_temporaries()):
            log.info("--overwrite: deleting the previous sweep at %s", self.root)
            self.start_over()
        with storage_errors(self.root, SPEC_FILE):
            results.write_json(self.root, SPEC_FILE, dict(spec))
        self._recorded = set()
        return {}

    def storage(self) -> tuple[str, Any]:
        """(storage_path, storage_filesystem) for Tune's state in TUNE_DIR: a pyarrow filesystem for s3://."""
        fs, path = results.resolve(self.root)
        return (path, fs) if "://" in self.root else (path, None)

    # ---- the trials ------------------------------------------------------------------------------------
    def write_config(self, trial_id: str, params: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """A trial's parameters and full config, before it trains."""
        with storage_errors(self.root, f"trial {trial_id}'s config"):
            results.write_json(self.root, f"{CONFIGS_DIR}/{trial_id}.json",
                               {"trial_id": trial_id, "params": jsonable(params), "config": dict(config)})

    def record_trial(self, trial_id: str, row: Mapping[str, Any], reports: Iterable[Mapping[str, Any]]) -> None:
        """A finished trial's files: its curves, spectra and samples, then its trials row, which marks it
        finished (so a write that fails leaves an unfinished trial, run again on resume).  Raises
        StorageError when a write fails."""
        TrialCurves(self.root).store(trial_id, reports)
        self.record_row(trial_id, row)

    def record_row(self, trial_id: str, row: Mapping[str, Any]) -> None:
        """A finished trial's trials row, written last: its curves are already there (written by the trial,
        `TrialCurves`, or by `record_trial`).  Raises StorageError when the write fails."""
        with storage_errors(self.root, f"trial {trial_id}'s row"):
            results.write_trial(self.root, trial_id, row)
        self._recorded.add(trial_id)

    def curve_files(self) -> "TrialCurves":
        """The writer of the trials' curves, spectra and samples that travels to the trials (picklable)."""
        return TrialCurves(self.root)

    def recorded_count(self) -> int:
        """How many trials have a row, as this driver knows without reading the folder (after `prepare`)."""
        return len(self._recorded)

    def discard_unfinished(self, quiet: bool = False) -> set[str]:
        """Remove temporaries and the partial files of every trial without a row; -> the trials with one."""
        written = results.trial_ids(self.root)
        try:
            results.remove_temporaries(self.root)
            removed = results.remove_trials(self.root, lambda tid: tid not in written)
            if not quiet:
                self._log_removed(removed)
        except OSError as err:  # the storage failed: what is left is removed by the resume that follows
            log.debug("%s: partial files not removed (%s)", self.root, storage_cause(err))
        return written

    def compact(self) -> None:
        """Merge each table's per-trial files into one compacted file (drift_sweeps/compaction.py); a failure
        only warns: the per-trial files are the record until the merged file has replaced them."""
        from ..compaction import compact

        try:
            merged = compact(self.root)
        except (OSError, ValueError) as err:
            log.warning("%s: tables not compacted (%s)", self.root, one_line(err)[:200])
            return
        if any(merged.values()):
            log.debug("compacted: %s", ", ".join(f"{t} {n} files" for t, n in merged.items() if n))

    @staticmethod
    def _log_removed(removed: set[str]) -> None:
        if removed:
            log.info("removed the partial files of %d unfinished trial(s): %s", len(removed),
                     ", ".join(sorted(removed)))


class TrialCurves:
    """The curves, spectra and samples files of trials, written from the trial's side (a Tune trainable on any
    node of the cluster) so that only scalars travel through Tune.  Picklable: only the root travels.

    One writer per file (the trial's, atomic renames); the trials row, written by the driver afterwards, still
    marks a trial finished.  A trial that cannot see the folder (a local path on another machine) gets False
    from `write` and sends its curves with its final report instead.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._reachable: Optional[bool] = None

    def reachable(self) -> bool:
        """Whether this process sees the sweep folder: its spec file (written before any trial) is there."""
        if self._reachable is None:
            import pyarrow.fs as pafs

            try:
                fs, root = results.resolve(self.root)
                self._reachable = fs.get_file_info(f"{root}/{SPEC_FILE}").type == pafs.FileType.File
            except OSError:
                self._reachable = False
        return self._reachable

    def write(self, trial_id: str, reports: Iterable[Mapping[str, Any]]) -> bool:
        """Write (replace) a trial's curves, spectra and samples; False when the folder is out of reach.
        Raises StorageError when a write fails."""
        if not self.reachable():
            return False
        self.store(trial_id, reports)
        return True

    def store(self, trial_id: str, reports: Iterable[Mapping[str, Any]]) -> None:
        """Write (replace) a trial's curves, spectra and samples.  Raises StorageError when a write fails."""
        reports = list(reports)
        with storage_errors(self.root, f"trial {trial_id}'s curves"):
            results.write_curves(self.root, trial_id, reports)
            results.write_spectra(self.root, trial_id, reports)
            results.write_samples(self.root, trial_id, reports)

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "_reachable": None}  # reachability is a property of the process


def table_counts(folder: SweepFolder, tables: Iterable[str] = results.TABLES) -> dict[str, int]:
    """Files per table: what the final report lists."""
    return {t: len(results.trial_ids(folder.root, t)) for t in tables}

