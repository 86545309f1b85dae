"""Atomic checkpoints for exact resume: every variable of the run, by group and path, in one ``.npz``.

A checkpoint holds the weights of each network (batch-norm statistics and the
dropout seed-generator states included), every optimiser variable (moments and
iteration counters, loss scale), the model's own RNG state, and a JSON ``meta``
(step, data position, anything else a recipe needs such as an ADA ``p``). It is
written to a temporary file and renamed, and ``latest.json`` is updated the same
way after it, so a crash at any point leaves the previous checkpoint loadable.
Only numpy arrays are stored (``allow_pickle=False`` on load): nothing is unpickled.
"""

from __future__ import annotations

import glob
import json
import os
import re

import keras
import numpy as np

from keras_medgan.data.schema import write_json_atomic
from keras_medgan.io_utils import atomic_open

LATEST = "latest.json"
_NAME_RE = re.compile(r"^ckpt-(\d{8})\.npz$")


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the model being restored."""


def _key(group: str, index: int, variable) -> str:
    # By position, not by ``variable.path``: auto-generated names (``seed_generator_3``) depend on how many
    # objects the process created before, and must not decide whether a checkpoint loads.
    return f"{group}/{index:05d}"


def save_checkpoint(directory: str, step: int, groups: dict, meta: dict | None = None, keep: int = 3) -> str:
    """Writes ``ckpt-<step>.npz`` atomically and points ``latest.json`` at it; keeps the newest ``keep``.

    Args:
        directory: str. The run's ``checkpoints/`` folder.
        step: int. Training step the state belongs to.
        groups: dict name -> list of Keras variables (e.g. ``{"generator": g.variables, ...}``).
        meta: dict. JSON-able extras stored beside the arrays.
        keep: int. Older checkpoints beyond this many are deleted.

    Returns:
        The checkpoint's path.
    """
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for group, variables in groups.items():
        for i, v in enumerate(variables):
            arrays[_key(group, i, v)] = np.asarray(keras.ops.convert_to_numpy(v.value))
    arrays["__meta__"] = np.frombuffer(json.dumps({"step": int(step), **(meta or {})}).encode(), dtype=np.uint8)
    path = os.path.join(directory, f"ckpt-{int(step):08d}.npz")
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)
    write_json_atomic(os.path.join(directory, LATEST), {"checkpoint": os.path.basename(path), "step": int(step)})
    for old in sorted(glob.glob(os.path.join(directory, "ckpt-*.npz")))[:-keep]:
        if os.path.abspath(old) != os.path.abspath(path):
            os.remove(old)
    return path


def latest_checkpoint(directory: str) -> str | None:
    """The checkpoint ``latest.json`` names (or the newest ``ckpt-*.npz``), or None when there is none."""
    pointer = os.path.join(directory, LATEST)
    if os.path.exists(pointer):
        with open(pointer, encoding="utf-8") as f:
            path = os.path.join(directory, json.load(f)["checkpoint"])
        if os.path.exists(path):
            return path
    found = sorted(p for p in glob.glob(os.path.join(directory, "ckpt-*.npz")) if _NAME_RE.match(os.path.basename(p)))
    return found[-1] if found else None


def restore_checkpoint(path: str, groups: dict, strict: bool = True) -> dict:
    """Assigns every variable in ``groups`` from the checkpoint at ``path``; returns its ``meta`` (with ``step``).

    With ``strict=False`` the checkpoint may hold other groups too (e.g. restoring only the generator).

    Raises:
        CheckpointError: a variable is missing, has another shape, or the checkpoint holds extra variables
            (the model was built with other settings than the run being resumed).
    """
    with np.load(path, allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files}
    meta = json.loads(stored.pop("__meta__").tobytes().decode())
    expected = set()
    for group, variables in groups.items():
        for i, v in enumerate(variables):
            key = _key(group, i, v)
            expected.add(key)
            if key not in stored:
                raise CheckpointError(
                    f"checkpoint {path} has no value for {key}: it was written by a differently built model. "
                    "Resume with the run's own config.json (do not change model settings with --set).")
            if tuple(stored[key].shape) != tuple(v.shape):
                raise CheckpointError(f"checkpoint {path}: {key} has shape {stored[key].shape}, the model expects "
                                      f"{tuple(v.shape)}.")
    extra = sorted(set(stored) - expected)
    if extra and strict:
        raise CheckpointError(f"checkpoint {path} holds {len(extra)} variables this model lacks, e.g. {extra[0]}.")
    for group, variables in groups.items():
        for i, v in enumerate(variables):
            v.assign(stored[_key(group, i, v)])
    return meta


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the full training state every ``every_epochs`` fit epochs (and at the end of training).

    Args:
        directory: str. Where checkpoints go.
        groups_fn: callable returning the ``groups`` dict for ``save_checkpoint``.
        step_fn: callable returning the current training step (int).
        every_epochs: int. Fit epochs between checkpoints.
        meta_fn: optional callable returning extra JSON meta.
        keep: int. How many checkpoints to keep.
    """

    def __init__(self, directory, groups_fn, step_fn, every_epochs=1, meta_fn=None, keep=3):
        super().__init__()
        self.directory = directory
        self.groups_fn = groups_fn
        self.step_fn = step_fn
        self.every_epochs = every_epochs
        self.meta_fn = meta_fn or (lambda: {})
        self.keep = keep
        self.last_path = latest_checkpoint(directory) if os.path.isdir(directory) else None
        self.last_step = None

    def save(self) -> str:
        step = int(self.step_fn())
        if step != self.last_step:
            self.last_path = save_checkpoint(self.directory, step, self.groups_fn(), self.meta_fn(), self.keep)
            self.last_step = step
        return self.last_path

    def on_epoch_end(self, epoch, logs=None):
        if getattr(self.model, "stop_training", False) and _non_finite(logs):
            return  # never checkpoint a state with NaN/Inf losses
        if (epoch + 1) % self.every_epochs == 0:
            self.save()


def _non_finite(logs) -> bool:
    return any(not np.isfinite(float(v)) for v in (logs or {}).values() if np.ndim(v) == 0)
