"""One process per study folder: an exclusive lock held while a study (or its recipe) runs.

A study folder is appended to cell by cell (``results.jsonl``, ``cells/``, ``selections/``). Two processes
running the same folder would train the same cells twice and interleave their rows, which breaks the protocol's
one-row-per-model rule (critical review Sec. 3.1, "Analyses": ten replicates per arm, each counted once). So a
study holds ``<folder>/study.lock`` for as long as it runs:

- The lock is a kernel ``flock`` on that file, so it is released when the holder exits or is killed (SIGKILL,
  out-of-memory): a crash never leaves a folder locked for ever.
- The holder writes its PID, host and start time into the file, so a second process is refused with a message
  naming the folder and the PID (``StudyLocked``).
- A lock file that still names a process but is no longer locked is stale (that process died without
  releasing it, or the PID is gone): it is taken over, with a message naming the previous PID.
- The lock file is never deleted, only emptied on release: deleting it would let a process that opened the old
  file and a process that creates a new one both believe they hold the lock.
- Re-entrant within a process: the recipe holds it around GAN training and the study, and ``Study.run`` takes it
  again.

``flock`` is advisory and local: on a network file system shared by several machines it may not exclude a
process on another host, and the PID in the message is then that host's.

This module imports only the standard library (tests load it in a bare subprocess).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from typing import Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = "study.lock"

_HELD: dict[str, list] = {}  # absolute lock path -> [file descriptor, depth] for the locks this process holds


class StudyLocked(RuntimeError):
    """Another live process holds the study folder's lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_holder(path: str) -> dict | None:
    """What a lock file says about its holder (``{"pid", "host", "since", "command"}``), or None when empty."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    if not text:
        return None
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return {"pid": None, "host": "?", "since": None, "command": f"unreadable lock file: {text[:80]!r}"}
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if not holder or holder.get("pid") is None:
        return "an unknown process"
    text = f"PID {holder['pid']}"
    if holder.get("host") and holder["host"] != socket.gethostname():
        text += f" on host {holder['host']}"
    if holder.get("since"):
        text += f" (running since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder['since']))})"
    return text


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except (BlockingIOError, PermissionError):
        return False


@contextlib.contextmanager
def hold(folder: str, log: Callable[[str], object] = print, what: str = "study"):
    """Holds ``<folder>/study.lock`` for the duration of the ``with`` block.

    Args:
        folder: the study folder (created if absent).
        log: where the stale-lock take-over message goes.
        what: the word used in messages ("study").

    Raises:
        StudyLocked: another live process holds it; the message names the folder, the PID and the fix.

    Example:

    >>> with hold("runs/augment_study/00001-demo"):
    ...     study.run(resume=True)
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.abspath(os.path.join(folder, LOCK_FILE))
    if path in _HELD:  # re-entrant: this process already holds it
        _HELD[path][1] += 1
        try:
            yield path
        finally:
            _HELD[path][1] -= 1
        return
    if fcntl is None:  # pragma: no cover - no flock on this platform: run unlocked, say so
        log(f"warning: no file locking on this platform; nothing stops a second process from running {folder}")
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_flock(fd):
            holder = None
            for _ in range(20):  # the holder writes its PID right after locking: give it a moment
                holder = read_holder(path)
                if holder:
                    break
                time.sleep(0.05)
            raise StudyLocked(
                f"the {what} folder {folder} is already being run by {_describe(holder)} (lock file {path}). Two "
                f"processes on one {what} would train the same cells twice. Wait for it to finish, or stop that "
                f"process (kill {holder.get('pid') if holder else '<PID>'}) and continue with --resume; to run "
                f"another {what} at the same time, pass another --run-dir.")
        previous = read_holder(path)
        if previous and previous.get("pid") != os.getpid():
            here = previous.get("host") in (None, socket.gethostname())
            alive = here and isinstance(previous.get("pid"), int) and pid_alive(previous["pid"])
            why = ("no longer holds it (the PID now belongs to another process)" if alive else
                   "is no longer running" if here else "no longer holds it")
            log(f"{what} {folder}: taking over a stale lock left by {_describe(previous)}, which {why}; cells it "
                f"finished are kept, the rest will be trained ({path})")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
              "command": " ".join(sys.argv)[:300]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        os.fsync(fd)
        _HELD[path] = [fd, 1]
        try:
            yield path
        finally:
            del _HELD[path]
            os.ftruncate(fd, 0)  # released cleanly: an empty lock file is a free lock (never deleted, see above)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if path not in _HELD:
            os.close(fd)
