"""Watching a run: NaN stop, TensorBoard scalars under hierarchical tags, fixed-input sample grids."""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from keras_medgan.io_utils import atomic_open


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and records which one, at which step.

    After ``fit`` returns, ``message`` is set when it stopped; the recipe then
    exits non-zero, naming the last good checkpoint.

    Args:
        step_fn: callable returning the current training step.
    """

    def __init__(self, step_fn):
        super().__init__()
        self.step_fn = step_fn
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            value = np.asarray(value)
            if value.ndim == 0 and not np.isfinite(value):
                self.message = f"{name} became {float(value)} at step {int(self.step_fn())}"
                self.model.stop_training = True
                return


def _optimizer_lr(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


class TensorBoardScalars(keras.callbacks.Callback):
    """Writes every log value (``loss/g/l1_roi``, ``val_loss/...`` -> ``val/loss/...``) and the learning rates.

    One point per fit epoch, at the current training step. The resolved config is
    written once as text (``config``).

    Args:
        log_dir: str. The run's ``tensorboard/`` folder.
        step_fn: callable returning the current training step.
        optimizers: dict name -> optimizer, logged as ``lr/<name>``.
        config_text: str. Markdown shown under TensorBoard's Text tab.
    """

    def __init__(self, log_dir, step_fn, optimizers=None, config_text=None):
        super().__init__()
        self.writer = tf.summary.create_file_writer(log_dir)
        self.step_fn = step_fn
        self.optimizers = optimizers or {}
        self.config_text = config_text

    def on_train_begin(self, logs=None):
        if self.config_text:
            with self.writer.as_default():
                tf.summary.text("config", self.config_text, step=int(self.step_fn()))
            self.writer.flush()

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.step_fn())
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                if np.ndim(value) != 0:
                    continue
                tag = "val/" + name[4:] if name.startswith("val_") else name
                tf.summary.scalar(tag, float(value), step=step)
            for name, opt in self.optimizers.items():
                tf.summary.scalar(f"lr/{name}", _optimizer_lr(opt), step=step)
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.flush()


def to_display(images) -> np.ndarray:
    """[-1, 1] images -> uint8 RGB (grey repeated to 3 channels)."""
    x = np.asarray(keras.ops.convert_to_numpy(images), dtype=np.float32)
    x = np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def image_grid(columns: list, pad: int = 2) -> np.ndarray:
    """Stacks equal-length lists of uint8 ``[N, H, W, 3]`` images as columns of one grid image ``[rows*H, cols*W, 3]``."""
    n = len(columns[0])
    h, w = columns[0].shape[1:3]
    grid = np.full((n * (h + pad) + pad, len(columns) * (w + pad) + pad, 3), 255, np.uint8)
    for c, col in enumerate(columns):
        for r in range(n):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x:x + w] = col[r]
    return grid


def save_png_atomic(array: np.ndarray, path: str) -> str:
    """Writes a uint8 image as PNG via a temporary file and rename."""
    with atomic_open(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")
    return path


class SampleGrid(keras.callbacks.Callback):
    """Every ``every_epochs`` epochs: a grid of fixed inputs beside the real images and the generator's outputs.

    Written to ``samples/step-<step>.png`` and to TensorBoard (``samples``).

    Args:
        render_fn: callable() -> list of uint8 ``[N, H, W, 3]`` columns (e.g. maps, real, fake).
        samples_dir: str. Folder for PNGs.
        log_dir: str. TensorBoard folder.
        step_fn: callable returning the current training step.
        every_epochs: int.
    """

    def __init__(self, render_fn, samples_dir, log_dir, step_fn, every_epochs=1):
        super().__init__()
        self.render_fn = render_fn
        self.samples_dir = samples_dir
        self.writer = tf.summary.create_file_writer(log_dir)
        self.step_fn = step_fn
        self.every_epochs = every_epochs
        self.last_path = None

    def write(self) -> str:
        step = int(self.step_fn())
        grid = image_grid(self.render_fn())
        self.last_path = save_png_atomic(grid, os.path.join(self.samples_dir, f"step-{step:08d}.png"))
        with self.writer.as_default():
            tf.summary.image("samples", grid[None], step=step)
        self.writer.flush()
        return self.last_path

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs == 0:
            self.write()
