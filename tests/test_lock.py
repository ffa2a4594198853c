"""One driver per sweep folder (`drift_sweeps.sweep.lock`): a second driver exits 2 naming the holder, a
stale lock (its driver dead; on shared storage, an expired lease) is taken over with a notice, and
contenders racing for one lock never hold it together; on a local folder and on S3 (moto)."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drift_sweeps import results
from drift_sweeps.sweep import lock as lock_module
from drift_sweeps.sweep.lock import LOCK_NAME, FolderLock, LockHeld, this_driver
from drift_sweeps.sweep import lock_stores
from drift_sweeps.sweep.lock_stores import LocalStore, S3Store

REPO = Path(__file__).resolve().parent.parent


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _holder(**changes) -> bytes:
    return dataclasses.replace(this_driver(), **changes).to_bytes()


def test_a_second_driver_is_refused_with_the_holder_named_and_the_lock_goes_with_the_first(tmp_path):
    root = str(tmp_path / "res" / "sweep")
    first = FolderLock(root)
    first.acquire()
    held = json.loads(Path(root, LOCK_NAME).read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    with pytest.raises(LockHeld) as err:
        FolderLock(root).acquire()
    text = str(err.value)
    assert f"host {socket.gethostname()}, pid {os.getpid()}, started {held['started']}" in text, text
    assert root in text and "\n" not in text
    first.release()
    assert not Path(root).exists()  # the folder it created, empty again, went with the lock
    with FolderLock(root):
        assert Path(root, LOCK_NAME).is_file()


@pytest.mark.parametrize("case", ["dead_pid", "reused_pid", "lease_expired_elsewhere", "restarted", "unreadable"])
def test_a_stale_lock_is_taken_over_with_a_notice(tmp_path, case):
    root = tmp_path / "sweep"
    root.mkdir()
    data = {
        "dead_pid": lambda: _holder(pid=_dead_pid(), proc_start=""),
        "reused_pid": lambda: _holder(proc_start="1"),  # our pid, but another process's start time
        "lease_expired_elsewhere": lambda: _holder(host="elsewhere", renewed=time.time() - 100, lease_s=60.0),
        "restarted": lambda: _holder(pid=1, boot_id="an-earlier-boot"),
        "unreadable": lambda: b"{half a lock",
    }[case]()
    Path(root, LOCK_NAME).write_bytes(data)
    if case == "unreadable":
        old = time.time() - 600
        os.utime(Path(root, LOCK_NAME), (old, old))
    notices: list[str] = []
    with FolderLock(str(root), notice=notices.append) as lock:
        assert json.loads(Path(root, LOCK_NAME).read_text())["token"] == lock.holder.token
    assert len(notices) == 1 and "taking over the lock of a driver that is gone" in notices[0], notices
    assert not Path(root, LOCK_NAME).exists()


def test_a_living_holder_elsewhere_keeps_its_lock_while_it_renews_its_lease(tmp_path, monkeypatch):
    root = str(tmp_path / "sweep")
    holder = FolderLock(root, lease_s=0.6)
    holder.acquire()
    monkeypatch.setattr(lock_module.socket, "gethostname", lambda: "another-host")  # the contender's view
    time.sleep(1.0)  # past the first lease: only the renewals keep it
    with pytest.raises(LockHeld, match="lease expires"):
        FolderLock(root, lease_s=0.6).acquire()
    assert json.loads(Path(root, LOCK_NAME).read_text())["renewals"] >= 3

    holder._stop.set()  # the holder's machine is lost: no more renewals
    holder._thread.join()
    time.sleep(0.8)
    notices: list[str] = []
    contender = FolderLock(root, lease_s=0.6, notice=notices.append)
    contender.acquire()
    assert "its lease expired" in notices[0]
    holder.release()  # the old holder, back: it must not remove the new holder's lock
    assert json.loads(Path(root, LOCK_NAME).read_text())["token"] == contender.holder.token
    contender.release()


RACE = """
import sys, time
from drift_sweeps.sweep.lock import FolderLock, LockHeld
root, start = sys.argv[1], float(sys.argv[2])
while time.time() < start:
    time.sleep(0.002)
lock = FolderLock(root, notice=lambda message: None)
try:
    lock.acquire()
except LockHeld:
    print("held")
    sys.exit(0)
got = time.time()
time.sleep(1.0)
left = time.time()
lock.release()
print("won", got, left)
"""


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_racing_contenders_never_hold_the_lock_together(tmp_path, stale):
    root = tmp_path / "sweep"
    root.mkdir()
    if stale:
        Path(root, LOCK_NAME).write_bytes(_holder(pid=_dead_pid(), proc_start=""))
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(root), str(start)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    wins = sorted((float(got), float(left)) for tag, got, left in (o.split() for o, _ in outs if o.startswith("won")))
    assert wins, outs
    for (_, left), (got, _) in zip(wins, wins[1:]):
        assert got >= left, f"two drivers held the lock at once: {wins}"


def test_a_losing_takeover_never_opens_the_lock_to_a_newcomer(tmp_path, monkeypatch):
    # two contenders judged the same lock stale; the first took it over.  Between every filesystem step of
    # the second one's takeover, a newcomer tries to create the lock: it must find it there each time.
    root = tmp_path / "sweep"
    root.mkdir()
    stale = _holder(pid=_dead_pid(), proc_start="")
    Path(root, LOCK_NAME).write_bytes(stale)
    winner, loser, newcomer = (LocalStore(str(root)) for _ in range(3))
    assert winner.take_over(b"winner", stale) == b"winner"
    real, busy, created = lock_stores.os, [], []

    class Interleaved:
        def __getattr__(self, name):
            call = getattr(real, name)
            if name not in ("link", "rename", "replace", "unlink", "open") or busy:
                return call

            def step(*args, **kwargs):
                try:
                    return call(*args, **kwargs)
                finally:
                    busy.append(1)
                    created.append(newcomer.create(b"newcomer"))
                    busy.pop()
            return step

    monkeypatch.setattr(lock_stores, "os", Interleaved())
    assert loser.take_over(b"loser", stale) is None
    monkeypatch.undo()
    assert created and not any(created), created
    assert Path(root, LOCK_NAME).read_bytes() == b"winner"
    assert sorted(p.name for p in root.iterdir()) == [LOCK_NAME]  # no claim or side file left


def _stale_lock_with_a_claim(tmp_path: Path) -> tuple[Path, bytes, Path]:
    """A sweep folder with a dead driver's lock and a contender's (young) claim on it: (folder, lock, claim)."""
    root = tmp_path / "sweep"
    root.mkdir()
    stale = _holder(pid=_dead_pid(), proc_start="")
    Path(root, LOCK_NAME).write_bytes(stale)
    claim = Path(LocalStore(str(root)).claim_path(stale))
    claim.write_bytes(b"")
    return root, stale, claim


def test_a_claim_left_by_a_contender_that_died_mid_takeover_expires(tmp_path):
    root, stale, claim = _stale_lock_with_a_claim(tmp_path)
    assert LocalStore(str(root)).take_over(b"me", stale) is None  # a young claim: its contender may be at work
    old = time.time() - lock_stores.CLAIM_STALE_S - 5
    os.utime(claim, (old, old))
    notices: list[str] = []
    with FolderLock(str(root), notice=notices.append) as lock:
        assert json.loads(Path(root, LOCK_NAME).read_text())["token"] == lock.holder.token
        assert not claim.exists()
    assert len(notices) == 1 and "taking over" in notices[0], notices
    assert list(root.iterdir()) == []


def test_acquire_waits_while_another_contender_takes_a_stale_lock_over(tmp_path):
    # a contender's claim on the stale lock (young: it may be at work) keeps this one waiting, not refused
    root, _, claim = _stale_lock_with_a_claim(tmp_path)
    threading.Timer(0.8, claim.unlink).start()  # the contender gives up (here: without taking it)
    notices: list[str] = []
    with FolderLock(str(root), notice=notices.append) as lock:
        assert json.loads(Path(root, LOCK_NAME).read_text())["token"] == lock.holder.token
    assert len(notices) == 2 and "waiting for it" in notices[0] and "taking over" in notices[1], notices


def test_a_renewal_or_release_does_not_act_on_a_lock_being_taken_over(tmp_path):
    # a contender holds the claim on this driver's lock (it judged it stale: the lease ran out while this one's
    # machine was cut off): the late renewal must not overwrite what the contender writes, nor the release
    # remove it
    root = tmp_path / "sweep"
    store = LocalStore(str(root))
    assert store.create(b"mine") == b"mine"
    claim = Path(store.claim_path(b"mine"))
    claim.write_bytes(b"")
    assert store.renew(b"mine, renewed", b"mine") is None  # the holder learns it has lost the lock
    store.delete(b"mine")
    assert Path(root, LOCK_NAME).read_bytes() == b"mine"  # left for the contender to replace
    claim.unlink()
    assert store.renew(b"renewed", b"mine") == b"renewed"
    store.delete(b"renewed")
    assert not root.exists()  # the lock, no claim left, and the folder the store made


class _Turns:
    """Runs writer threads one filesystem step at a time (every os call and open of lock_stores), in an order
    drawn from `rng`: the interleavings a real race may take, reproducibly."""

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng, self.cv, self.turn = rng, threading.Condition(), None
        self.waiting: set[str] = set()
        self.running = set(names)

    def step(self) -> None:
        me = threading.current_thread().name
        if me not in self.running:
            return
        with self.cv:
            self.waiting.add(me)
            self.cv.notify_all()
            self.cv.wait_for(lambda: self.turn == me)
            self.waiting.discard(me)
            self.turn = None
            self.cv.notify_all()

    def done(self) -> None:
        with self.cv:
            self.running.discard(threading.current_thread().name)
            self.cv.notify_all()

    def schedule(self) -> None:
        with self.cv:
            while True:
                self.cv.wait_for(lambda: self.turn is None and self.waiting == self.running)
                if not self.running:
                    return
                self.turn = self.rng.choice(sorted(self.waiting))
                self.cv.notify_all()


def test_contenders_passing_a_dead_writers_claim_take_the_lock_over_once(tmp_path, monkeypatch):
    # a writer died mid-change (its claim on the stale lock stays); two contenders judge the lock stale at once.
    # Over many interleavings of their filesystem steps exactly one takes the lock over
    names, real_os, real_open = ["c1", "c2"], lock_stores.os, open
    turns: list[_Turns] = []

    class Stepped:
        def __getattr__(self, name):
            call = getattr(real_os, name)
            if name not in ("link", "rename", "replace", "unlink", "open", "stat"):
                return call
            return lambda *args, **kwargs: (turns[0].step(), call(*args, **kwargs))[1]

    monkeypatch.setattr(lock_stores, "os", Stepped())
    monkeypatch.setattr(lock_stores, "open", lambda *a, **k: (turns[0].step(), real_open(*a, **k))[1], raising=False)
    stale = _holder(pid=_dead_pid(), proc_start="")
    for seed in range(150):
        root = tmp_path / f"s{seed}"
        root.mkdir()
        Path(root, LOCK_NAME).write_bytes(stale)
        dead = Path(LocalStore(str(root)).claim_path(stale))
        dead.write_bytes(b"")
        old = time.time() - lock_stores.CLAIM_STALE_S - 5
        real_os.utime(dead, (old, old))
        turns[:] = [_Turns(random.Random(seed), names)]
        got: dict[str, object] = {}

        def contend(name):
            try:
                got[name] = LocalStore(str(root)).take_over(name.encode(), stale)
            finally:
                turns[0].done()

        threads = [threading.Thread(target=contend, args=(n,), name=n) for n in names]
        for t in threads:
            t.start()
        turns[0].schedule()
        for t in threads:
            t.join()
        won = [n for n in names if got[n] is not None]
        assert len(won) == 1, (seed, got)
        assert Path(root, LOCK_NAME).read_bytes() == won[0].encode(), seed
        assert sorted(p.name for p in root.iterdir()) == [LOCK_NAME], seed  # the dead claim went with the lock


def test_s3_lock_is_a_conditional_lease_object(s3_endpoint):
    import boto3

    root = "s3://drift/sweeps/x"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    first = FolderLock(root)
    first.acquire()
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        FolderLock(root).acquire()
    first.release()
    assert "Contents" not in s3.list_objects_v2(Bucket="drift", Prefix=f"sweeps/x/{LOCK_NAME}")

    # compare-and-swap: of two writers that saw the same version, one wins
    store = S3Store(root)
    assert store.create(b"a") is not None and store.create(b"b") is None
    _, etag = store.read()
    assert store.take_over(b"c", etag) is not None and store.take_over(b"d", etag) is None
    assert store.read()[0] == b"c"

    s3.put_object(Bucket="drift", Key=f"sweeps/x/{LOCK_NAME}",
                  Body=_holder(host="elsewhere", renewed=time.time() - 100, lease_s=60.0))
    notices: list[str] = []
    with FolderLock(root, notice=notices.append) as lock:
        body = s3.get_object(Bucket="drift", Key=f"sweeps/x/{LOCK_NAME}")["Body"].read()
        assert json.loads(body)["token"] == lock.holder.token
    assert "lease expired" in notices[0] and "host elsewhere" in notices[0]


def test_the_cli_refuses_a_held_s3_folder_before_ray(make_space, s3_endpoint, capsys):
    import boto3

    from drift_sweeps.run import main

    space = make_space("held", axes={"seed": [0]})
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(
        Bucket="drift", Key=f"sweeps/held/{LOCK_NAME}", Body=_holder(host="node-7", pid=4242, renewed=time.time()))
    rc = main([str(space), "--serial", "--results", "s3://drift/sweeps"])
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "host node-7, pid 4242" in err[0], out.out + out.err
    assert not results.sweep_exists("s3://drift/sweeps/held/trials")


def test_the_cli_takes_a_dead_drivers_lock_over(make_space, tmp_path, capsys):
    from drift_sweeps.run import main

    space = make_space("orphan", axes={"seed": [0, 1]})
    folder = tmp_path / "res" / "orphan"
    folder.mkdir(parents=True)
    dead = _dead_pid()
    Path(folder, LOCK_NAME).write_bytes(_holder(pid=dead, proc_start=""))
    rc = main([str(space), "--serial", "--results", str(tmp_path / "res")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"taking over the lock of a driver that is gone (host {socket.gethostname()}, pid {dead}" in out, out
    assert len(results.read_table(str(folder), "trials")) == 2
    assert not Path(folder, LOCK_NAME).exists()


def test_two_drivers_on_one_folder_the_second_exits_2_naming_the_first(make_space, tmp_path):
    # the first driver runs 8 trials of ~1 s in its own process (--serial: the lock is taken before either
    # runner starts); the second comes while it runs, once as a Tune driver and once as a serial one
    space = make_space("twice", axes={"seed": list(range(8))}, base_extra={"steps": 150, "eps": 0.01, "dt": 0.1})
    res = tmp_path / "res"
    cmd = [sys.executable, "-m", "drift_sweeps.run", str(space), "--results", str(res)]
    first = subprocess.Popen([*cmd, "--serial"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        lock_file = res / "twice" / LOCK_NAME
        deadline = time.monotonic() + 60
        while not (lock_file.exists() and lock_file.read_bytes()):
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.poll() else ""
            time.sleep(0.05)
        started = json.loads(lock_file.read_text())["started"]
        seconds = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for argv in ([*cmd, "--address", "local", "--num-cpus", "2"], [*cmd, "--serial"])]
        refused = [(p, *p.communicate(timeout=120)) for p in seconds]
        still_running = first.poll() is None
        out, _ = first.communicate(timeout=400)
    finally:
        if first.poll() is None:
            first.kill()
    assert still_running, "the first driver ended before the second ones were refused: make its trials longer"
    for second, stdout, stderr in refused:
        err = stderr.strip().splitlines()
        assert second.returncode == 2 and len(err) == 1, stdout + stderr
        assert f"host {socket.gethostname()}, pid {first.pid}, started {started}" in err[0], err
        assert "Ray:" not in stdout  # refused before Ray
    assert first.returncode == 0, out[-3000:]
    trials = results.read_table(str(res / "twice"), "trials")
    assert len(trials) == 8 and sorted(trials["seed"]) == list(range(8)) and trials["trial_id"].is_unique
    assert not lock_file.exists()
