"""SIGINT / SIGTERM during a sweep: the first stops it the way Tune's own Ctrl-C does, a second at once."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Optional


class Interrupts:
    """SIGINT / SIGTERM during a sweep.  The first stops Tune the way its own Ctrl-C handling does (running
    trials are stopped and not recorded, finished ones are kept); a second one aborts at once.  Without Tune
    (`--serial`, or before the Tuner runs) the first raises KeyboardInterrupt; once `closing` (the sweep over,
    Ray shutting down) it is only noted, for the driver to report after.  Replaces Ray's SIGTERM handling in the
    driver (which ends in a C++ stack dump)."""

    def __init__(self) -> None:
        self.signame: Optional[str] = None
        self.in_fit = False
        self.closing = False  # the sweep is over and Ray shuts down: a first signal is only noted
        self.on_first: Any = None
        self._old: dict[int, Any] = {}
        self._env: Optional[str] = None

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours forwards to Tune's (via its SIGUSR1 hook)
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def arm(self) -> None:
        """Install the handlers again (after code that installed its own)."""
        for sig in self._old:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        if self._old:
            if self._env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
        self._old = {}

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signame is not None:
            raise KeyboardInterrupt(name)
        self.signame = name
        if self.closing:
            return
        if self.on_first is not None:
            self.on_first()
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if self.in_fit and callable(tune_stop) and getattr(tune_stop, "__name__", "") == "signal_interrupt_tune_run":
            print(f"\n{name}: stopping the sweep; finished trials are kept, running ones are not recorded "
                  "(send it again to stop at once)", flush=True)
            tune_stop(signal.SIGUSR1, frame)
        else:
            raise KeyboardInterrupt(name)
