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


CACHE_ENV = "KERAS_MEDGAN_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> str:
    """``cache_dir``, else ``$KERAS_MEDGAN_CACHE``, else ``~/.cache/keras_medgan``: where demo datasets, domain
    classifiers and cached real-image features live."""
    if cache_dir is not None:
        return os.fspath(cache_dir)
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "keras_medgan")


def save_model_atomic(model, path: str | os.PathLike) -> str:
    """``model.save`` to a temporary ``.keras`` name beside ``path``, then rename over it (Keras saves by path,
    so ``atomic_open`` cannot be used). Returns ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
