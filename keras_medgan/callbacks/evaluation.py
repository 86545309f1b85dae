"""Periodic evaluation during training: FID/KID (or any metric) every N steps, to TensorBoard and metrics.jsonl."""

from __future__ import annotations

import json
import time

import keras
import tensorflow as tf


class PeriodicEvaluation(keras.callbacks.Callback):
    """Calls ``evaluate_fn()`` every ``every_epochs`` fit epochs and logs what it returns.

    Each value is written as TensorBoard scalar ``metrics/<name>`` at the current training step and appended to
    ``metrics.jsonl`` as ``{"step": ..., "metrics/<name>": ...}``; checkpoint selection
    (``python -m keras_medgan.metrics select-checkpoint``) reads those rows.

    Args:
        evaluate_fn: callable returning ``{name: float}`` (e.g. ``{"fid": 41.2, "kid": 0.03}``).
        every_epochs: int. Fit epochs between evaluations.
        step_fn: callable returning the current training step.
        log_dir: str. TensorBoard folder.
        metrics_path: str. The run's ``metrics.jsonl``.
    """

    def __init__(self, evaluate_fn, every_epochs: int, step_fn, log_dir: str, metrics_path: str):
        super().__init__()
        if every_epochs < 1:
            raise ValueError(f"every_epochs must be >= 1. Received {every_epochs}")
        self.evaluate_fn = evaluate_fn
        self.every_epochs = every_epochs
        self.step_fn = step_fn
        self.writer = tf.summary.create_file_writer(log_dir)
        self.metrics_path = metrics_path
        self.history: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs:
            return
        t0 = time.time()
        values = {f"metrics/{k}": float(v) for k, v in self.evaluate_fn().items()}
        step = int(self.step_fn())
        with self.writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
        self.writer.flush()
        row = {"step": step, **values, "eval_time_s": round(time.time() - t0, 2)}
        self.history.append(row)
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(" - ".join([f"\nstep {step}"] + [f"{k} {v:.4f}" for k, v in values.items()]))
