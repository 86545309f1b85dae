"""Frozen configuration dataclasses shared by recipes, with validation.

Every field is checked in ``__post_init__`` so a bad value fails before anything
heavy starts, with a message that names the field and the value received.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

RESIZE_METHODS = ("stretch", "pad", "crop")


def _check(condition: bool, cls: str, field: str, value, why: str) -> None:
    if not condition:
        raise ValueError(f"{cls}.{field} {why}. Received: {field}={value!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How a recipe reads a schema-v1 dataset (see ``keras_medgan.data.pipelines.make_dataset``).

    Args:
        data_dir: str. Dataset folder written by `medgan-data` (holds ``dataset.json``).
        image_size: int. Side of the square images the model sees.
        channels: int or None. 1 or 3; None keeps the stored channel count.
        resize: str. ``stretch``, ``pad`` (letterbox) or ``crop`` (fill + centre crop)
            when stored images are not ``image_size`` square.
        batch_size: int. The global batch size (split over replicas under tf.distribute).
        shuffle_buffer: int. Shuffle buffer in examples; 0 disables shuffling.
        cache: bool. Cache decoded, resized images in memory (when they fit).
        repeat: bool. Repeat forever (training); False gives one pass (evaluation).
        drop_remainder: bool. Drop the last partial batch (static shapes for XLA / tf.distribute).
        max_boxes: int. Boxes per image are padded / truncated to this many.
        deterministic: bool. Same order every run for a given ``seed`` (slower).
        seed: int. Seed for shuffling.
    """

    data_dir: str = ""
    image_size: int = 64
    channels: Optional[int] = None
    resize: str = "stretch"
    batch_size: int = 16
    shuffle_buffer: int = 2048
    cache: bool = True
    repeat: bool = True
    drop_remainder: bool = True
    max_boxes: int = 8
    deterministic: bool = False
    seed: int = 0

    def __post_init__(self):
        name = type(self).__name__
        _check(isinstance(self.image_size, int) and self.image_size >= 8, name, "image_size", self.image_size,
               "must be an integer >= 8")
        _check(self.channels in (None, 1, 3), name, "channels", self.channels, "must be 1, 3 or None")
        _check(self.resize in RESIZE_METHODS, name, "resize", self.resize, f"must be one of {RESIZE_METHODS}")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, name, "batch_size", self.batch_size,
               "must be an integer >= 1")
        _check(isinstance(self.shuffle_buffer, int) and self.shuffle_buffer >= 0, name, "shuffle_buffer",
               self.shuffle_buffer, "must be an integer >= 0")
        _check(isinstance(self.max_boxes, int) and self.max_boxes >= 1, name, "max_boxes", self.max_boxes,
               "must be an integer >= 1")
