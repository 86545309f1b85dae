"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A reader (or a crash) never sees a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """Opens a temporary file beside ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    Example:

    >>> with atomic_open("report.md", "w", encoding="utf-8") as f:
    ...     f.write(text)
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
