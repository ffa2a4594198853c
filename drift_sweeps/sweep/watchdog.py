"""The watchdog of an embedded Ray: a separate process that SIGKILLs the embedded Ray's processes (every
descendant of the driver it has seen) when the driver dies without shutting Ray down (SIGKILL, the OOM
killer): Ray's own fate sharing leaves agents and workers running for a while.

Linux only (it reads /proc); `start` is a no-op elsewhere.  The process runs this file as a script, with
the standard library only, so it starts fast and needs nothing of the package.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Optional

log = logging.getLogger("drift_sweeps")

POLL_S = 0.5  # how often the driver's descendants are listed


def start_time(pid: int) -> Optional[str]:
    """A process's start time (clock ticks since boot), None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children() -> dict[int, list[tuple[int, str]]]:
    """parent pid -> [(pid, start time)] of every process."""
    out: dict[int, list[tuple[int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out.setdefault(int(fields[1]), []).append((int(entry), fields[19]))
            except (OSError, IndexError, ValueError):
                pass
    return out


def watch(driver: int) -> None:
    """Collect the driver's descendants while it lives; once it is gone, SIGKILL the ones still running."""
    born = start_time(driver)
    seen: dict[int, str] = {}
    while born is not None and start_time(driver) == born:
        kids = children()
        todo = [driver]
        while todo:
            for pid, started in kids.get(todo.pop(), []):
                if pid not in seen and pid != os.getpid():
                    seen[pid] = started
                    todo.append(pid)
        time.sleep(POLL_S)
    for pid, started in seen.items():
        if start_time(pid) == started:  # the same process, not a reused pid
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def start(driver: int) -> None:
    """Start the watchdog of `driver`'s embedded Ray in a session of its own (Linux; elsewhere a no-op)."""
    if not os.path.isdir("/proc/self"):
        return
    try:
        subprocess.Popen([sys.executable, os.path.abspath(__file__), str(driver)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         close_fds=True)
    except OSError as err:
        log.debug("no watchdog for the embedded Ray: %s", err)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]))
