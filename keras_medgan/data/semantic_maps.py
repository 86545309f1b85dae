"""DermGAN semantic maps and the transforms used to sample new ones, in TF ops.

The map (Ghorbani et al. 2020, Sec. 2 and Fig. 3; DESIGN.md "DermGAN semantic
map") is an image-sized float map with 3 channels in [0, 1]:

- R: skin type everywhere, ``fitzpatrick / 6`` (unknown = 0);
- G: inside each condition box ``(class_index + 1) / num_classes``, 0 outside;
- B: 1 inside any condition box, 0 outside: the ROI mask of the condition-specific L1 loss.

Where boxes overlap, G takes the larger value. A pixel is inside a box when its
area overlaps the box, so every box of non-zero size marks at least one pixel.

The transforms (paper Sec. 3, "we apply random translations on the bounding
boxes and if there are more than one bounding boxes in the map, we randomly
select a subset of them"; size and skin-colour sweeps of Figs. 5 and 6) act on
the padded box representation of ``pipelines.make_dataset`` (``boxes [M, 4]``,
``box_labels [M]``, ``num_boxes``) before rasterisation. Random ones take a
stateless ``seed`` (shape ``[2]`` int) so they are reproducible inside
``Dataset.map``.

Example:

>>> ds = make_dataset(cfg, "train").map(add_semantic_map(num_classes=8, image_size=64))
>>> batch["semantic_map"].shape   # [B, 64, 64, 3]
"""

from __future__ import annotations

import tensorflow as tf


def _box_masks(boxes: tf.Tensor, num_boxes: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """``[..., M, H, W]`` float masks: 1 where a pixel overlaps box m and m < num_boxes."""
    boxes = tf.cast(boxes, tf.float32)
    ys = tf.range(height, dtype=tf.float32)
    xs = tf.range(width, dtype=tf.float32)
    ymin, xmin, ymax, xmax = (boxes[..., i, None] for i in range(4))  # [..., M, 1]
    in_y = tf.logical_and(ys + 1.0 > ymin * height, ys < ymax * height)  # [..., M, H]
    in_x = tf.logical_and(xs + 1.0 > xmin * width, xs < xmax * width)  # [..., M, W]
    nonempty = tf.logical_and(boxes[..., 2] > boxes[..., 0], boxes[..., 3] > boxes[..., 1])
    valid = tf.logical_and(tf.range(tf.shape(boxes)[-2]) < tf.expand_dims(num_boxes, -1), nonempty)  # [..., M]
    mask = tf.logical_and(in_y[..., :, None], in_x[..., None, :])
    return tf.cast(tf.logical_and(mask, valid[..., None, None]), tf.float32)


def semantic_map(
    fitzpatrick: tf.Tensor,
    boxes: tf.Tensor,
    box_labels: tf.Tensor,
    num_boxes: tf.Tensor,
    num_classes: int,
    image_size: int | tuple[int, int],
) -> tf.Tensor:
    """Rasterises skin type and condition boxes into the DermGAN map.

    Args:
        fitzpatrick: int tensor ``[...]``. Skin type 1..6, 0 = unknown.
        boxes: float tensor ``[..., M, 4]`` of normalised ``[ymin, xmin, ymax, xmax]``.
        box_labels: int tensor ``[..., M]``. Class index per box.
        num_boxes: int tensor ``[...]``. How many of the M boxes are real.
        num_classes: int. Number of condition classes (G channel scale).
        image_size: int or (height, width).

    Returns:
        float32 ``[..., H, W, 3]`` in [0, 1].
    """
    if num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1. Received: num_classes={num_classes}")
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    masks = _box_masks(boxes, tf.cast(num_boxes, tf.int32), height, width)  # [..., M, H, W]
    class_value = (tf.cast(box_labels, tf.float32) + 1.0) / float(num_classes)  # [..., M]
    g = tf.reduce_max(masks * class_value[..., None, None], axis=-3, keepdims=False)
    b = tf.reduce_max(masks, axis=-3)
    b = tf.maximum(b, 0.0)  # M = 0 -> reduce_max gives -inf
    g = tf.maximum(g, 0.0)
    r = tf.ones_like(b) * (tf.cast(fitzpatrick, tf.float32) / 6.0)[..., None, None]
    return tf.stack([r, g, b], axis=-1)


def decode_semantic_map(semantic: tf.Tensor, num_classes: int):
    """Reads a map back: ``(fitzpatrick [...], class index per pixel [..., H, W] (-1 outside), roi mask [..., H, W])``."""
    fitz = tf.cast(tf.round(tf.reduce_mean(semantic[..., 0], axis=[-2, -1]) * 6.0), tf.int32)
    classes = tf.cast(tf.round(semantic[..., 1] * num_classes), tf.int32) - 1
    roi = semantic[..., 2] > 0.5
    return fitz, tf.where(roi, classes, -1), roi


def add_semantic_map(num_classes: int, image_size: int, key: str = "semantic_map"):
    """A ``Dataset.map`` function adding the map of each (batched or single) example under ``key``."""

    def fn(example):
        example = dict(example)
        example[key] = semantic_map(example["fitzpatrick"], example["boxes"], example["box_labels"],
                                    example["num_boxes"], num_classes, image_size)
        return example

    return fn


def _valid(boxes: tf.Tensor, num_boxes: tf.Tensor) -> tf.Tensor:
    return tf.range(tf.shape(boxes)[0]) < tf.cast(num_boxes, tf.int32)


def translate_boxes(boxes: tf.Tensor, num_boxes: tf.Tensor, seed: tf.Tensor, max_shift: float = 1.0) -> tf.Tensor:
    """Moves each real box by a random offset, keeping it whole inside the image.

    Each box's offset is uniform over the positions it can reach within
    ``max_shift`` (a fraction of the image side) without leaving the frame.
    Padded boxes stay zero. ``boxes`` is ``[M, 4]``.
    """
    boxes = tf.cast(boxes, tf.float32)
    u = tf.random.stateless_uniform(tf.stack([tf.shape(boxes)[0], 2]), seed=seed)
    lo_y = tf.maximum(-boxes[:, 0], -max_shift)
    hi_y = tf.minimum(1.0 - boxes[:, 2], max_shift)
    lo_x = tf.maximum(-boxes[:, 1], -max_shift)
    hi_x = tf.minimum(1.0 - boxes[:, 3], max_shift)
    dy = lo_y + u[:, 0] * (hi_y - lo_y)
    dx = lo_x + u[:, 1] * (hi_x - lo_x)
    moved = boxes + tf.stack([dy, dx, dy, dx], axis=-1)
    return tf.where(_valid(boxes, num_boxes)[:, None], tf.clip_by_value(moved, 0.0, 1.0), boxes)


def random_box_subset(boxes: tf.Tensor, box_labels: tf.Tensor, num_boxes: tf.Tensor, seed: tf.Tensor):
    """Keeps a random non-empty subset of the real boxes (all of them when there is one or none).

    Each box is kept with probability 1/2; when that keeps none, one box drawn
    uniformly is kept. Kept boxes are moved to the front; returns
    ``(boxes, box_labels, num_boxes)`` with the same padded shapes.
    """
    num_boxes = tf.convert_to_tensor(num_boxes)
    m = tf.shape(boxes)[0]
    n = tf.cast(num_boxes, tf.int32)
    valid = _valid(boxes, n)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    keep = tf.logical_and(tf.random.stateless_uniform([m], seed=seeds[0]) < 0.5, valid)
    fallback = tf.random.stateless_uniform([], seed=seeds[1], maxval=tf.maximum(n, 1), dtype=tf.int32)
    keep = tf.cond(tf.reduce_any(keep), lambda: keep, lambda: tf.logical_and(tf.range(m) == fallback, valid))
    order = tf.argsort(tf.cast(tf.logical_not(keep), tf.int32), stable=True)
    count = tf.reduce_sum(tf.cast(keep, tf.int32))
    live = tf.range(m) < count
    new_boxes = tf.where(live[:, None], tf.gather(boxes, order), tf.zeros_like(boxes))
    new_labels = tf.where(live, tf.gather(box_labels, order), tf.zeros_like(box_labels))
    return new_boxes, new_labels, tf.cast(count, num_boxes.dtype)


def rescale_boxes(boxes: tf.Tensor, num_boxes: tf.Tensor, scale) -> tf.Tensor:
    """Scales each real box about its centre by ``scale`` (the paper's size sweep, Fig. 6), clipped to the image."""
    boxes = tf.cast(boxes, tf.float32)
    scale = tf.cast(scale, tf.float32)
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hh, hw = (boxes[:, 2] - boxes[:, 0]) / 2 * scale, (boxes[:, 3] - boxes[:, 1]) / 2 * scale
    scaled = tf.clip_by_value(tf.stack([cy - hh, cx - hw, cy + hh, cx + hw], axis=-1), 0.0, 1.0)
    return tf.where(_valid(boxes, num_boxes)[:, None], scaled, boxes)


def replace_skin_type(semantic: tf.Tensor, fitzpatrick) -> tf.Tensor:
    """Sets the R channel of a map to ``fitzpatrick / 6`` (the paper's skin-colour sweep, Fig. 5)."""
    r = tf.ones_like(semantic[..., 0]) * (tf.cast(fitzpatrick, semantic.dtype) / 6.0)
    return tf.concat([r[..., None], semantic[..., 1:]], axis=-1)


def sample_map_variation(example: dict, num_classes: int, image_size: int, seed: tf.Tensor,
                         max_shift: float = 0.25, subset: bool = True) -> tf.Tensor:
    """A new map from one (unbatched) validation example: random subset, then random translation (paper Sec. 3).

    ``example`` holds ``fitzpatrick``, ``boxes``, ``box_labels`` and ``num_boxes``
    as produced by ``make_dataset`` (one example, not a batch).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    boxes, labels, n = example["boxes"], example["box_labels"], example["num_boxes"]
    if subset:
        boxes, labels, n = random_box_subset(boxes, labels, n, seeds[0])
    boxes = translate_boxes(boxes, n, seeds[1], max_shift=max_shift)
    return semantic_map(example["fitzpatrick"], boxes, labels, n, num_classes, image_size)
