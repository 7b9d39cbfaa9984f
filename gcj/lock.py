"""One training run per workdir: ``<workdir>/train.lock`` names the run that holds it (host, pid,
since when). A second run on the same workdir refuses at once, naming the holder; a lock left by
a process that is gone (same host, pid not running) is taken over with a warning. The lock is a
file created exclusively (``O_EXCL``), so two runs started at the same moment cannot both win."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings

from gcj.errors import UserError

NAME = "train.lock"


class WorkdirLockedError(UserError):
    """Another run (alive, or on another host) holds the workdir."""


def holder(workdir: str) -> dict | None:
    """The lock's record (host, pid, since) if the workdir is locked, else None."""
    try:
        with open(os.path.join(workdir, NAME)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def alive(record: dict) -> bool:
    """Whether the lock's holder may still run: a live pid on this host, or any other host's
    (which cannot be checked from here)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def describe(record: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.get("since", 0)))
    return f"pid {record.get('pid')} on {record.get('host')} (since {since})"


def _create(path: str) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(dict(host=socket.gethostname(), pid=os.getpid(), since=time.time()), f)
    return True


def acquire(workdir: str) -> str:
    """Takes the workdir's lock (returns its path) or raises ``WorkdirLockedError`` naming the holder."""
    path = os.path.join(workdir, NAME)
    for _ in range(3):
        if _create(path):
            return path
        record = holder(workdir)
        if record is None:  # being written by the winner of a race, or emptied: look again
            time.sleep(0.2)
            record = holder(workdir)
            if record is None:
                continue
        if alive(record):
            raise WorkdirLockedError(f"{workdir} is being trained by {describe(record)}: one run per workdir "
                                     f"(its lock: {path}; remove it only if that run is gone)")
        # its process is gone: move the stale lock away (one taker wins the rename), then retry
        stale = f"{path}.stale.{os.getpid()}"
        try:
            os.rename(path, stale)
        except FileNotFoundError:
            continue
        os.remove(stale)
        warnings.warn(f"took over the lock of {workdir} left by {describe(record)}, which is no longer "
                      "running", stacklevel=2)
    raise WorkdirLockedError(f"could not take the lock of {workdir} ({path}): other runs keep taking it")


def release(path: str) -> None:
    """Removes the lock if this process still holds it."""
    record = holder(os.path.dirname(path))
    if record and record.get("pid") == os.getpid() and record.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


@contextlib.contextmanager
def hold(workdir: str, active: bool = True):
    """The workdir's lock for the duration of the block (``active`` False: no lock, e.g. the
    processes of a multi-process run other than the first)."""
    if not active:
        yield None
        return
    path = acquire(workdir)
    try:
        yield path
    finally:
        release(path)
