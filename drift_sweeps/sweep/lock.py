"""One driver per sweep folder: a lock file (on s3://, a lease object) that names its holder.

The holder writes `<sweep>/.driver-lock.json`: host, pid, the process's start time (so that a reused pid
is not taken for it), the machine's boot id, when the driver started, and a lease that it renews every
LEASE_S / 6 seconds.  A second driver that finds the lock
- on the same machine (same host name and boot id) takes it over once the holder's process is gone;
  a living holder is never taken over, whatever its lease says;
- from another machine (a shared folder, S3) takes it over once the lease has expired (no renewal for
  its lease_s seconds: the holder died, or lost the storage);
and otherwise stops with `LockHeld`, which names the holder.

Creation and takeover are atomic on each storage.  A local or NFS folder creates the lock with a hard
link of a complete file (atomic on NFS too).  Every change to an existing lock (a renewal, a takeover, a
release) is made by the one writer that places a claim file named after the lock's content (a hard link
again): it checks the lock is still that content and replaces it in one rename (or removes it), so the lock
file is never absent during a takeover and no two writers act on one version (a dead writer's claim is
passed after CLAIM_STALE_S).  S3 uses conditional writes: If-None-Match: * creates, If-Match: <etag> renews
or takes over (boto3; without it, a best-effort write that is read back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable, Optional

from .lock_stores import CLAIM_STALE_S, LOCK_NAME, ArrowStore, LocalStore, S3Store

log = logging.getLogger("drift_sweeps")

__all__ = ["LOCK_NAME", "LEASE_S", "FolderLock", "Holder", "LockHeld", "stale_reason", "this_driver"]

LEASE_S = 120.0  # a holder on another machine counts as dead this long after its last renewal
RENEWALS_PER_LEASE = 6


class LockHeld(Exception):
    """The sweep folder is locked by a driver that is alive (or whose lease has not expired)."""

    def __init__(self, root: str, holder: Optional["Holder"], age_s: Optional[float] = None) -> None:
        self.root, self.holder = root, holder
        if holder is None:
            written = f", written {age_s:.0f} s ago" if age_s is not None else ""
            who = f"another driver (its lock file {LOCK_NAME} is unreadable{written})"
            until = f"it counts as stale {LEASE_S:.0f} s after it was written; or delete it"
        else:
            who = f"another driver ({holder.describe()})"
            until = (f"it is taken over once pid {holder.pid} has exited" if holder.same_machine()
                     else f"it is taken over once its lease expires ({holder.lease_s:.0f} s without renewal)")
        super().__init__(f"{root} is in use by {who}: wait for it or stop it ({until}); a second driver on one "
                         "sweep folder would run its trials twice")


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a sweep folder's lock, as written in the lock file."""

    host: str
    pid: int
    started: str  # when the driver took the lock, ISO 8601 UTC
    boot_id: str  # the machine's boot id ('' where unknown): a restarted machine runs none of its old drivers
    proc_start: str  # the process's start time in clock ticks since boot ('' where unknown)
    token: str  # one per acquisition
    renewed: float  # time.time() of the last renewal
    lease_s: float
    renewals: int = 0

    def describe(self) -> str:
        """'host h, pid 123, started 2026-05-01T12:00:00Z'."""
        return f"host {self.host}, pid {self.pid}, started {self.started}"

    def same_machine(self) -> bool:
        """True when the holder runs on this machine (same host name and boot)."""
        return self.host == socket.gethostname() and self.boot_id == boot_id()

    def to_bytes(self) -> bytes:
        """The lock file's content."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Holder":
        """Parse a lock file; ValueError when it is not one."""
        try:
            raw = json.loads(data.decode())
            fields = {f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw}
            holder = cls(**fields)
        except (UnicodeDecodeError, TypeError, KeyError, AttributeError) as err:
            raise ValueError(f"not a lock file ({type(err).__name__})") from None
        if not (isinstance(holder.pid, int) and isinstance(holder.renewed, (int, float))
                and isinstance(holder.lease_s, (int, float))):
            raise ValueError("not a lock file (field types)")
        return holder

    def renewed_now(self) -> "Holder":
        """The same holder with a fresh lease."""
        return dataclasses.replace(self, renewed=time.time(), renewals=self.renewals + 1)


def boot_id() -> str:
    """This machine's boot id (Linux), '' elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> Optional[str]:
    """A process's start time (clock ticks since boot) from /proc; '?' for a living process where /proc is
    absent; None when there is no such process."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return None if fields[0] == "Z" else fields[19]  # a zombie has exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return "?"


def this_driver(lease_s: float = LEASE_S) -> Holder:
    """The holder record of this process."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Holder(host=socket.gethostname(), pid=os.getpid(), started=now, boot_id=boot_id(),
                  proc_start=process_start(os.getpid()) or "", token=uuid.uuid4().hex, renewed=time.time(),
                  lease_s=float(lease_s))


def stale_reason(holder: Holder, now: float) -> Optional[str]:
    """Why a lock's holder is known to be dead (so its lock may be taken over), or None while it may live."""
    if holder.same_machine():
        start = process_start(holder.pid)
        if start is None:
            return "its process has exited"
        if holder.proc_start and start not in ("?", holder.proc_start):
            return "its pid belongs to another process now"
        return None
    if holder.host == socket.gethostname() and holder.boot_id and boot_id():
        return "this machine has restarted since"
    age = now - holder.renewed
    if age > holder.lease_s:
        return f"its lease expired: no renewal for {age:.0f} s (lease {holder.lease_s:.0f} s)"
    return None


def _store(sweep_root: str) -> Any:
    if sweep_root.startswith("s3://"):
        try:
            return S3Store(sweep_root)
        except ImportError:
            log.warning("%s: boto3 is not installed, so the sweep folder's lock is not atomic on S3 "
                        "(pip install boto3)", sweep_root)
            return ArrowStore(sweep_root)
    if "://" in sweep_root:
        return ArrowStore(sweep_root)
    return LocalStore(sweep_root)


class FolderLock:
    """The lock of one sweep folder, held from `acquire` to `release` (a context manager), renewed by a
    daemon thread.  `lost` turns true if another driver took it over meanwhile (this one was presumed dead)."""

    def __init__(self, sweep_root: str, lease_s: float = LEASE_S, store: Any = None,
                 notice: Callable[[str], None] = log.warning) -> None:
        self.root = sweep_root
        self.lease_s = lease_s
        self.store = store if store is not None else _store(sweep_root)
        self.notice = notice
        self.lost = False
        self.holder: Optional[Holder] = None
        self._version: Any = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._mutex = threading.Lock()

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self, attempts: int = 5) -> None:
        """Take the lock, or a stale one over (with a notice); LockHeld when a living driver holds it.  While
        another contender's claim keeps a stale lock from being taken over, wait (at most CLAIM_STALE_S and a
        little: a claim that old is passed)."""
        me = this_driver(self.lease_s)
        deadline = time.monotonic() + CLAIM_STALE_S + 2.0
        for tries in itertools.count(1):
            if tries > attempts and time.monotonic() > deadline:
                break
            version = self.store.create(me.to_bytes())
            if version is not None:
                return self._hold(me, version)
            found = self.store.read()
            if found is None:
                continue  # released meanwhile: try again
            data, version = found
            holder, reason = self._judge(data)
            if reason is None:
                raise LockHeld(self.root, holder, None if holder else self.store.age())
            version = self.store.take_over(me.to_bytes(), version)
            if version is not None:
                who = holder.describe() if holder else "an unreadable lock file"
                self.notice(f"{self.root}: taking over the lock of a driver that is gone ({who}: {reason})")
                return self._hold(me, version)
            if tries == attempts:  # another contender's claim keeps it: let it finish (or its claim age)
                self.notice(f"{self.root}: another driver is taking the stale lock over; waiting for it "
                            f"(at most {CLAIM_STALE_S:.0f} s)")
            time.sleep(0.02 if tries < attempts else 0.5)
        found = self.store.read()
        raise LockHeld(self.root, self._judge(found[0])[0] if found else None)

    def _judge(self, data: bytes) -> tuple[Optional[Holder], Optional[str]]:
        try:
            holder = Holder.from_bytes(data)
        except ValueError:
            age = self.store.age()
            return None, (f"unreadable, written {age:.0f} s ago" if age is not None and age > self.lease_s else None)
        return holder, stale_reason(holder, time.time())

    def _hold(self, me: Holder, version: Any) -> None:
        self.holder, self._version, self.lost = me, version, False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="sweep-folder-lock", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        failing = False
        while not self._stop.wait(self.lease_s / RENEWALS_PER_LEASE):
            with self._mutex:
                if self._stop.is_set() or self.holder is None:
                    return
                fresh = self.holder.renewed_now()
                try:
                    version = self.store.renew(fresh.to_bytes(), self._version)
                except Exception as err:  # noqa: BLE001 - storage hiccup: try again at the next renewal
                    if not failing:
                        log.warning("%s: could not renew the sweep folder's lock (%s: %s); retrying",
                                    self.root, type(err).__name__, err)
                    failing = True
                    continue
                failing = False
                if version is None:
                    self.lost = True
                    log.error("%s: another driver took this sweep folder's lock over (this one was presumed dead); "
                              "stop one of them", self.root)
                    return
                self.holder, self._version = fresh, version

    def release(self, failed: bool = False) -> None:
        """Stop renewing and delete the lock if it is still this driver's.  `failed`: the folder's storage has
        failed (already reported): wait at most a second for the renewal, and leave the lock in place (a resume
        takes a dead driver's lock over) rather than wait out the storage's retries."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1 if failed else 10)
            self._thread = None
        if failed:
            self.holder = None
            return
        with self._mutex:
            if self.holder is not None and not self.lost:
                try:
                    self.store.delete(self._version)
                except OSError as err:
                    log.warning("%s: could not remove the sweep folder's lock: %s", self.root, err)
            self.holder = None
