"""tf.data input pipelines over schema-v1 datasets.

``make_dataset(cfg, split)`` runs: parallel interleave over shards -> parse ->
decode PNG/JPEG -> resize (stretch, pad or centre crop, boxes moved along) ->
class selection (``DataConfig.classes``: keep those classes, renumber labels) -> cache (decoded uint8) -> shuffle -> repeat -> scale to [-1, 1] -> batch ->
prefetch. Each element is a dict:

| key | shape | dtype |
|---|---|---|
| ``image`` | ``[B, S, S, C]`` in [-1, 1] | float32 |
| ``label`` | ``[B]`` (-1 = unlabeled) | int32 |
| ``label_multi`` | ``[B, num_classes]`` multi-hot | float32 |
| ``fitzpatrick`` | ``[B]`` (0 = unknown) | int32 |
| ``boxes`` | ``[B, max_boxes, 4]`` ``[ymin, xmin, ymax, xmax]``, zero-padded | float32 |
| ``box_labels`` | ``[B, max_boxes]``, zero-padded | int32 |
| ``num_boxes`` | ``[B]`` | int32 |
| ``source_id`` | ``[B]`` | string |

Example:

>>> cfg = DataConfig(data_dir="data/demo-derm", image_size=64, batch_size=16)
>>> ds = make_dataset(cfg, "train")
>>> batch = next(iter(ds))
>>> batch["image"].shape
TensorShape([16, 64, 64, 3])

Under ``tf.distribute``, use ``distribute_dataset(strategy, cfg, split)``: each
input pipeline reads its own shards and batches ``batch_size / replicas``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_medgan.config import DataConfig
from keras_medgan.data import schema

AUTOTUNE = tf.data.AUTOTUNE


def decode_image(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """Decodes PNG or JPEG bytes to uint8 ``[H, W, channels]`` (grey <-> RGB converted as needed)."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def scale_to_unit_range(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clipped); the inverse of ``scale_to_unit_range``."""
    return tf.cast(tf.clip_by_value(tf.round((tf.cast(image, tf.float32) + 1.0) * 127.5), 0, 255), tf.uint8)


def _transform_boxes(boxes: tf.Tensor, scale_y, scale_x, offset_y, offset_x) -> tf.Tensor:
    """Maps normalised boxes by ``y' = y * scale_y + offset_y`` (same for x), clipped to [0, 1]."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    out = tf.stack([ymin * scale_y + offset_y, xmin * scale_x + offset_x,
                    ymax * scale_y + offset_y, xmax * scale_x + offset_x], axis=-1)
    return tf.clip_by_value(out, 0.0, 1.0)


def resize_image_and_boxes(image: tf.Tensor, boxes: tf.Tensor, box_labels: tf.Tensor, size: int, method: str):
    """Resizes a uint8 image to ``size`` x ``size`` and moves its normalised boxes along.

    ``stretch`` ignores the aspect ratio; ``pad`` fits the image inside and pads
    with black; ``crop`` fills the square and centre-crops, dropping boxes that
    end up outside the frame. Images already at the target size pass untouched.

    Returns:
        ``(image uint8 [size, size, C], boxes [N', 4], box_labels [N'])``.
    """
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    s = tf.cast(size, tf.float32)
    channels = image.shape[-1]

    def resized(new_h, new_w):
        out = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

    same = tf.logical_and(tf.equal(shape[0], size), tf.equal(shape[1], size))
    if method == "stretch":
        out = tf.cond(same, lambda: image, lambda: resized(size, size))
        out_boxes = boxes
    elif method == "pad":
        scale = tf.minimum(s / h, s / w)
        new_h = tf.maximum(1, tf.cast(tf.round(h * scale), tf.int32))
        new_w = tf.maximum(1, tf.cast(tf.round(w * scale), tf.int32))
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out = tf.cond(same, lambda: image,
                      lambda: tf.image.pad_to_bounding_box(resized(new_h, new_w), top, left, size, size))
        out_boxes = _transform_boxes(boxes, tf.cast(new_h, tf.float32) / s, tf.cast(new_w, tf.float32) / s,
                                     tf.cast(top, tf.float32) / s, tf.cast(left, tf.float32) / s)
    elif method == "crop":
        scale = tf.maximum(s / h, s / w)
        new_h = tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32))
        new_w = tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))
        top, left = (new_h - size) // 2, (new_w - size) // 2
        out = tf.cond(same, lambda: image,
                      lambda: tf.image.crop_to_bounding_box(resized(new_h, new_w), top, left, size, size))
        out_boxes = _transform_boxes(boxes, tf.cast(new_h, tf.float32) / s, tf.cast(new_w, tf.float32) / s,
                                     -tf.cast(top, tf.float32) / s, -tf.cast(left, tf.float32) / s)
    else:
        raise ValueError(f"`method` must be one of ('stretch', 'pad', 'crop'). Received: method={method!r}")
    out.set_shape([size, size, channels])
    keep = tf.logical_and(out_boxes[:, 2] > out_boxes[:, 0], out_boxes[:, 3] > out_boxes[:, 1])
    return out, tf.boolean_mask(out_boxes, keep), tf.boolean_mask(box_labels, keep)


def pad_boxes(boxes: tf.Tensor, box_labels: tf.Tensor, max_boxes: int):
    """``[N, 4]`` boxes -> dense ``[max_boxes, 4]`` zero-padded (truncated past ``max_boxes``), labels, and the count."""
    n = tf.minimum(tf.shape(boxes)[0], max_boxes)
    boxes, box_labels = boxes[:n], tf.cast(box_labels[:n], tf.int32)
    dense = tf.pad(boxes, [[0, max_boxes - n], [0, 0]])
    labels = tf.pad(box_labels, [[0, max_boxes - n]])
    dense.set_shape([max_boxes, 4])
    labels.set_shape([max_boxes])
    return dense, labels, n


def _example_fn(cfg: DataConfig, channels: int, num_classes: int):
    """The per-record map: parse -> decode -> resize -> pad boxes (image stays uint8 for the cache)."""

    def fn(serialized):
        ex = schema.parse_example(serialized)
        image = decode_image(ex[schema.IMAGE_ENCODED], channels)
        image, boxes, box_labels = resize_image_and_boxes(image, ex[schema.BBOX], ex[schema.BBOX_LABEL],
                                                          cfg.image_size, cfg.resize)
        boxes, box_labels, num_boxes = pad_boxes(boxes, box_labels, cfg.max_boxes)
        multi = ex[schema.LABEL_MULTI]
        multi_hot = tf.reduce_max(tf.one_hot(multi, max(num_classes, 1), dtype=tf.float32), axis=0)
        multi_hot = tf.cond(tf.size(multi) > 0, lambda: multi_hot, lambda: tf.zeros([max(num_classes, 1)]))
        return {
            "image": image,
            "label": tf.cast(ex[schema.LABEL], tf.int32),
            "label_multi": multi_hot,
            "fitzpatrick": tf.cast(ex[schema.FITZPATRICK], tf.int32),
            "boxes": boxes,
            "box_labels": box_labels,
            "num_boxes": num_boxes,
            "source_id": ex[schema.SOURCE_ID],
        }

    return fn


def class_ids(classes, class_names) -> list[int]:
    """Dataset class indices of the names in ``classes`` (``DataConfig.classes``), in that order.

    Raises:
        ValueError: a name is not one of ``class_names``.
    """
    unknown = [c for c in classes if c not in class_names]
    if unknown:
        raise ValueError(f"DataConfig.classes names {unknown}, which the dataset does not have. Its classes are "
                         f"{list(class_names)}.")
    return [list(class_names).index(c) for c in classes]


def _select_classes(ds: tf.data.Dataset, ids: list[int], num_classes: int) -> tf.data.Dataset:
    """Keeps records whose ``label`` is in ``ids`` and renumbers labels (and ``label_multi`` columns) to 0..len-1.

    Box labels keep the dataset's numbering (they index ``dataset.json`` ``class_names``).
    """
    lookup = np.full(max(num_classes, 1), -1, np.int32)
    lookup[ids] = np.arange(len(ids), dtype=np.int32)
    lookup = tf.constant(lookup)
    columns = tf.constant(ids, tf.int32)

    def keep(ex):
        label = ex["label"]
        return tf.logical_and(label >= 0, tf.gather(lookup, tf.maximum(label, 0)) >= 0)

    def renumber(ex):
        ex = dict(ex)
        ex["label"] = tf.gather(lookup, ex["label"])
        ex["label_multi"] = tf.gather(ex["label_multi"], columns)
        return ex

    return ds.filter(keep).map(renumber)


def selected_records(cfg: DataConfig, info: schema.DatasetInfo, split: str, files=None) -> int:
    """Records of ``split`` that ``cfg.classes`` keeps: from ``dataset.json`` counts, or counted in ``files``."""
    if files is None:
        return int(sum(info.counts.get(split, {}).get(c, 0) for c in cfg.classes))
    ids = set(class_ids(cfg.classes, info.class_names))
    labels = tf.data.TFRecordDataset(files).map(
        lambda s: tf.io.parse_single_example(s, {schema.LABEL: tf.io.FixedLenFeature([], tf.int64, -1)})[schema.LABEL])
    return int(sum(1 for label in labels.as_numpy_iterator() if int(label) in ids))


def _scale(example):
    example = dict(example)
    example["image"] = scale_to_unit_range(example["image"])
    return example


def records_per_pipeline(info: schema.DatasetInfo, split: str, num_pipelines: int = 1, pipeline_id: int = 0) -> int:
    """How many records one input pipeline reads, from ``dataset.json`` (record i sits in shard i % n)."""
    total, n = info.num_examples(split), int(info.shards.get(split, 0))
    if num_pipelines <= 1 or n == 0:
        return total
    per_shard = [len(range(k, total, n)) for k in range(n)]
    if n >= num_pipelines:
        return sum(per_shard[pipeline_id::num_pipelines])
    return len(range(pipeline_id, total, num_pipelines))


def _shuffled_epoch(base: tf.data.Dataset, cfg: DataConfig, epoch: tf.Tensor) -> tf.data.Dataset:
    """One epoch of ``base`` in an order that depends only on ``(cfg.seed, epoch)``.

    Windows of ``min(shuffle_buffer, 1024)`` records are permuted with a stateless
    seed made from the epoch, then a shuffle buffer with a fixed seed mixes across
    windows. Seeding ``Dataset.shuffle`` with the epoch tensor itself is not an
    option: TF 2.21 fails to trace that when the global seed is 0.
    """
    if not cfg.shuffle_buffer:
        return base
    window = min(cfg.shuffle_buffer, 1024)

    def permute(i, records):
        n = tf.shape(records["label"])[0]
        seed = tf.stack([tf.cast(cfg.seed, tf.int64) * 1_000_003 + epoch, i])
        order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed)
        return tf.nest.map_structure(lambda t: tf.gather(t, order), records)

    d = base.batch(window).enumerate().map(permute).unbatch()
    return d.shuffle(cfg.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=False)


def make_dataset(
    cfg: DataConfig,
    split: str,
    input_context: tf.distribute.InputContext | None = None,
    start_step: int = 0,
) -> tf.data.Dataset:
    """Builds the input pipeline for one split of a schema-v1 dataset.

    With ``cfg.repeat`` the stream is a sequence of epochs, each shuffled with a
    seed derived from ``cfg.seed`` and the epoch number and batched with
    ``drop_remainder``; ``start_step`` starts it at that batch, so a resumed run
    sees the batches a straight run would have seen (exactly so with
    ``cfg.deterministic``). Skipping never re-reads more than one epoch.

    Args:
        cfg: DataConfig. Where the data is and how to read it.
        split: str. ``train``, ``val`` or ``test``.
        input_context: optional ``tf.distribute.InputContext`` (given by
            ``strategy.distribute_datasets_from_function``). Each input pipeline
            then reads its own shards and batches the per-replica batch size.
        start_step: int. Batches of the repeated stream to skip (resume).

    Returns:
        A ``tf.data.Dataset`` of dicts (see the module docstring).

    Raises:
        FileNotFoundError / SchemaError: the folder is not a schema-v1 dataset.
        ValueError: the split is empty, or smaller than one batch when repeating.
    """
    info = schema.read_dataset_info(cfg.data_dir)
    files = schema.shard_paths(cfg.data_dir, split, info)
    channels = cfg.channels or info.channels
    batch_size = cfg.batch_size
    deterministic = bool(cfg.deterministic)
    pipelines_n, pipeline_id = 1, 0

    ds = tf.data.Dataset.from_tensor_slices(files)
    shard_records = False
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(cfg.batch_size)
        pipelines_n, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    if pipelines_n > 1:
        if len(files) >= pipelines_n:
            ds = ds.shard(pipelines_n, pipeline_id)
        else:
            shard_records = True
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
        cycle_length=min(len(files), 8),
        num_parallel_calls=AUTOTUNE,
        deterministic=deterministic,
    )
    if shard_records:
        ds = ds.shard(pipelines_n, pipeline_id)
    ds = ds.map(_example_fn(cfg, channels, info.num_classes), num_parallel_calls=AUTOTUNE,
                deterministic=deterministic)
    if cfg.classes:
        ds = _select_classes(ds, class_ids(cfg.classes, info.class_names), info.num_classes)
    if cfg.cache:
        ds = ds.cache()

    if cfg.repeat:
        if not cfg.classes:
            n_records = records_per_pipeline(info, split, pipelines_n, pipeline_id)
        elif pipelines_n == 1:
            n_records = selected_records(cfg, info, split)
        else:  # which selected records this pipeline reads is not in dataset.json: count them
            mine = files[pipeline_id::pipelines_n] if len(files) >= pipelines_n else None
            # Fewer files than pipelines: records are dealt round-robin before the class filter, so this share
            # is an estimate; it only moves where a resumed run restarts inside an epoch.
            n_records = (selected_records(cfg, info, split, mine) if mine is not None
                         else len(range(pipeline_id, selected_records(cfg, info, split), pipelines_n)))
        steps_per_epoch = n_records // batch_size
        if steps_per_epoch == 0:
            raise ValueError(
                f"Split {split!r} of {cfg.data_dir!r} has {n_records} records per input pipeline, fewer than one "
                f"batch of {batch_size}. Lower DataConfig.batch_size or use more data."
            )
        start_epoch, offset = divmod(int(start_step), steps_per_epoch)
        base = ds

        def one_epoch(epoch):
            return _shuffled_epoch(base, cfg, epoch).batch(batch_size, drop_remainder=True)

        ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(one_epoch).skip(offset)
    else:
        if cfg.shuffle_buffer:
            ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed)
        ds = ds.batch(batch_size, drop_remainder=cfg.drop_remainder, num_parallel_calls=AUTOTUNE,
                      deterministic=deterministic)
    ds = ds.map(_scale, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    if input_context is not None:  # this function already sharded per input pipeline
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def distribute_dataset(strategy: tf.distribute.Strategy, cfg: DataConfig, split: str):
    """``make_dataset`` per input pipeline under ``strategy``; ``cfg.batch_size`` is the global batch."""
    if cfg.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"DataConfig.batch_size must be divisible by the {strategy.num_replicas_in_sync} replicas in sync. "
            f"Received: batch_size={cfg.batch_size}"
        )
    return strategy.distribute_datasets_from_function(lambda ctx: make_dataset(cfg, split, input_context=ctx))
