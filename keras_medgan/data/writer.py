"""Writing schema-v1 datasets: patient-level splits, deterministic shards, atomic finish.

Used by `medgan-data` (``data_prep``), by the demo datasets and by the GANs'
``generate`` commands, so that every dataset on disk is written one way.

Example:

>>> split_of = assign_splits(patient_ids, val_fraction=0.1, test_fraction=0.1, seed=0)
>>> with ShardedWriter("out/", num_shards={"train": 4, "val": 1, "test": 1}) as writer:
...     for rec in records:
...         writer.add(split_of[rec.patient_id], rec)
...     writer.finish(source="mine", command="...", class_names=["a", "b"], ...)
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
import re
import sys
from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from keras_medgan.data import schema

RESIZE_MODES = ("stretch", "pad", "crop")


@dataclasses.dataclass
class ImageRecord:
    """One image with its annotations, in memory.

    Args:
        image: uint8 array ``[H, W, C]`` with C in (1, 3).
        label: int. Class index; -1 = unlabeled.
        label_multi: tuple of int. Every class index of a multi-label image.
        fitzpatrick: int. 1..6, 0 = unknown.
        fitzpatrick_estimated: bool. True when estimated from pixels.
        bboxes: list of normalised ``[ymin, xmin, ymax, xmax]``.
        bbox_labels: list of int, one per box.
        patient_id: str. The unit that never crosses splits.
        source_id: str. File name or record id, for tracing.
    """

    image: np.ndarray
    label: int = -1
    label_multi: tuple = ()
    fitzpatrick: int = 0
    fitzpatrick_estimated: bool = False
    bboxes: list = dataclasses.field(default_factory=list)
    bbox_labels: list = dataclasses.field(default_factory=list)
    patient_id: str = ""
    source_id: str = ""


def encode_image(image: np.ndarray, image_format: str = "png") -> bytes:
    """Encodes a uint8 ``[H, W, C]`` array as PNG or JPEG, byte-identical for identical input."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected a uint8 [H, W, 1|3] image. Received: dtype={image.dtype}, shape={image.shape}")
    pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    buf = io.BytesIO()
    if image_format == "png":
        pil.save(buf, format="PNG", compress_level=6)
    elif image_format == "jpeg":
        pil.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        raise ValueError(f"`image_format` must be one of {schema.IMAGE_FORMATS}. Received: {image_format!r}")
    return buf.getvalue()


def serialize_record(record: ImageRecord, image_format: str = "png") -> bytes:
    """``ImageRecord`` -> serialised schema-v1 example."""
    h, w, c = record.image.shape
    return schema.encode_example(
        encode_image(record.image, image_format),
        image_format,
        h,
        w,
        c,
        label=record.label,
        label_multi=record.label_multi,
        fitzpatrick=record.fitzpatrick,
        fitzpatrick_estimated=record.fitzpatrick_estimated,
        bbox=record.bboxes,
        bbox_label=record.bbox_labels,
        patient_id=record.patient_id,
        source_id=record.source_id,
    )


def resize_with_boxes(
    image: np.ndarray,
    boxes: Sequence[Sequence[float]],
    size: int | tuple[int, int],
    mode: str = "crop",
) -> tuple[np.ndarray, list, list]:
    """Resizes an image to ``size`` and moves its normalised boxes with it.

    Args:
        image: uint8 ``[H, W, C]``.
        boxes: normalised ``[ymin, xmin, ymax, xmax]`` boxes.
        size: int or (height, width). The output size.
        mode: ``stretch`` (ignore aspect ratio), ``pad`` (fit inside, pad with
            black) or ``crop`` (fill, centre crop; boxes are clipped, and boxes
            that leave the frame are dropped).

    Returns:
        ``(image, boxes, kept)`` where ``kept`` lists the indices of input boxes kept.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"`mode` must be one of {RESIZE_MODES}. Received: mode={mode!r}")
    out_h, out_w = (size, size) if isinstance(size, int) else size
    h, w = image.shape[:2]
    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if mode == "stretch":
        scale_y, scale_x, off_y, off_x = out_h / h, out_w / w, 0.0, 0.0
        new_h, new_w = out_h, out_w
    elif mode == "pad":
        s = min(out_h / h, out_w / w)
        new_h, new_w = max(1, round(h * s)), max(1, round(w * s))
        scale_y, scale_x = new_h / h, new_w / w
        off_y, off_x = (out_h - new_h) // 2, (out_w - new_w) // 2
    else:
        s = max(out_h / h, out_w / w)
        new_h, new_w = max(out_h, round(h * s)), max(out_w, round(w * s))
        scale_y, scale_x = new_h / h, new_w / w
        off_y, off_x = -((new_h - out_h) // 2), -((new_w - out_w) // 2)
    if (new_h, new_w) != (h, w):
        pil = pil.resize((new_w, new_h), Image.BICUBIC if (new_h > h) else Image.LANCZOS)
    canvas = Image.new(pil.mode, (out_w, out_h))
    canvas.paste(pil, (int(off_x), int(off_y)))
    out = np.asarray(canvas, dtype=np.uint8)
    if squeeze:
        out = out[..., None]
    # Pixel coordinates in the output frame, then normalise and clip.
    py = boxes[:, [0, 2]] * h * scale_y + off_y
    px = boxes[:, [1, 3]] * w * scale_x + off_x
    ny, nx = np.clip(py / out_h, 0.0, 1.0), np.clip(px / out_w, 0.0, 1.0)
    new_boxes, kept = [], []
    for i in range(len(boxes)):
        if ny[i, 1] - ny[i, 0] > 0 and nx[i, 1] - nx[i, 0] > 0:
            new_boxes.append([float(ny[i, 0]), float(nx[i, 0]), float(ny[i, 1]), float(nx[i, 1])])
            kept.append(i)
    return out, new_boxes, kept


def assign_splits(
    patient_ids: Iterable[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Maps each patient id to ``train``, ``val`` or ``test``; no patient is in two splits.

    Patients are shuffled with ``seed`` and filled into test, then val, until each
    holds its fraction of the *images* (patients with many images count more).

    Raises:
        ValueError: fractions outside [0, 1) or summing to 1 or more.
    """
    for name, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1). Received: {name}={v}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"`val_fraction` + `test_fraction` must be < 1 to leave a training split. "
            f"Received: {val_fraction} + {test_fraction}"
        )
    per_patient = Counter(str(p) for p in patient_ids)
    patients = sorted(per_patient)
    rng = np.random.default_rng(seed)
    rng.shuffle(patients)
    total = sum(per_patient.values())
    targets = [("test", test_fraction * total), ("val", val_fraction * total)]
    out, filled, stage = {}, 0.0, 0
    bound = targets[0][1]
    for p in patients:
        while stage < len(targets) and filled >= bound:
            stage += 1
            bound += targets[stage][1] if stage < len(targets) else 0
        out[p] = targets[stage][0] if stage < len(targets) else "train"
        filled += per_patient[p]
    return out


_SHARD_RE = re.compile(r"^(train|val|test)-\d{5}-of-\d{5}\.tfrecord$")


class ShardedWriter:
    """Writes records into ``<split>-<i>-of-<n>.tfrecord`` shards, atomically.

    Shards are written under temporary names (``.tmp-...``). ``finish()`` renames
    them and writes ``dataset.json`` last, so a folder without ``dataset.json``
    is never a complete dataset. Opening a writer on a folder removes a previous
    ``dataset.json`` and shards there first: an interrupted rerun cannot leave
    new shards next to an old, matching ``dataset.json``. Record ``i`` of a split
    goes to shard ``i % n``, so the same records in the same order give
    byte-identical shards.

    Args:
        out_dir: str. The dataset folder (created if needed).
        num_shards: int or dict split -> int. Shards per split; 0 for an empty split
            is allowed only when no record goes there.
        image_format: str. ``png`` (lossless, default) or ``jpeg``.
    """

    def __init__(self, out_dir, num_shards: int | Mapping[str, int] = 1, image_format: str = "png"):
        import tensorflow as tf  # lazy: writer helpers above are usable without TF

        self._tf = tf
        if image_format not in schema.IMAGE_FORMATS:
            raise ValueError(f"`image_format` must be one of {schema.IMAGE_FORMATS}. Received: {image_format!r}")
        self.out_dir = os.fspath(out_dir)
        self.image_format = image_format
        if isinstance(num_shards, int):
            num_shards = {s: num_shards for s in schema.SPLITS}
        for split, n in num_shards.items():
            if split not in schema.SPLITS or int(n) < 1:
                raise ValueError(f"`num_shards` must give each split in {schema.SPLITS} at least 1 shard. "
                                 f"Received: {dict(num_shards)}")
        self.num_shards = {s: int(num_shards.get(s, 1)) for s in schema.SPLITS}
        os.makedirs(self.out_dir, exist_ok=True)
        self._clear_previous()
        self._writers: dict[tuple[str, int], object] = {}
        self._index = Counter()
        self.counts: dict[str, Counter] = {s: Counter() for s in schema.SPLITS}
        self.fitzpatrick_counts: dict[str, Counter] = {s: Counter() for s in schema.SPLITS}
        self.fitzpatrick_estimated = 0
        self._finished = False

    def _clear_previous(self) -> None:
        info = os.path.join(self.out_dir, schema.DATASET_JSON)
        if os.path.exists(info):
            os.remove(info)
        for name in os.listdir(self.out_dir):
            if _SHARD_RE.match(name) or name.startswith(".tmp-"):
                os.remove(os.path.join(self.out_dir, name))

    def _tmp_path(self, split: str, i: int) -> str:
        n = self.num_shards[split]
        return os.path.join(self.out_dir, ".tmp-" + schema.shard_name(split, i, n))

    def add_serialized(self, split: str, example: bytes, *, label_name: str, fitzpatrick: int,
                       fitzpatrick_estimated: bool) -> None:
        """Adds one already serialised example (from ``serialize_record``), with what the counts need."""
        if self._finished:
            raise RuntimeError("this ShardedWriter has finished; open a new one")
        if split not in schema.SPLITS:
            raise ValueError(f"`split` must be one of {schema.SPLITS}. Received: split={split!r}")
        i = self._index[split] % self.num_shards[split]
        self._index[split] += 1
        key = (split, i)
        if key not in self._writers:
            self._writers[key] = self._tf.io.TFRecordWriter(self._tmp_path(split, i))
        self._writers[key].write(example)
        self.counts[split][label_name] += 1
        self.fitzpatrick_counts[split][str(int(fitzpatrick))] += 1
        self.fitzpatrick_estimated += int(bool(fitzpatrick_estimated))

    def add(self, split: str, record: ImageRecord, class_names: Sequence[str]) -> None:
        """Encodes and adds one record."""
        if not -1 <= record.label < len(class_names):
            raise ValueError(f"record {record.source_id!r} has label {record.label}, outside -1..{len(class_names) - 1} "
                             f"for class_names={list(class_names)}")
        label_name = class_names[record.label] if record.label >= 0 else "unlabeled"
        self.add_serialized(split, serialize_record(record, self.image_format), label_name=label_name,
                            fitzpatrick=record.fitzpatrick, fitzpatrick_estimated=record.fitzpatrick_estimated)

    def _close_files(self) -> None:
        for w in self._writers.values():
            w.close()
        self._writers = {}

    def finish(self, **info_fields) -> schema.DatasetInfo:
        """Closes and renames the shards, then writes ``dataset.json``.

        ``info_fields`` are the ``DatasetInfo`` fields other than the counts and
        shards, which the writer fills in. Splits without records get 0 shards.
        """
        self._close_files()
        shards = {}
        for split in schema.SPLITS:
            n = self.num_shards[split]
            if self._index[split] == 0:
                shards[split] = 0
                continue
            # A split with fewer records than shards still gets n (possibly empty) files, so names stay "-of-n".
            for i in range(n):
                tmp = self._tmp_path(split, i)
                if not os.path.exists(tmp):
                    self._tf.io.TFRecordWriter(tmp).close()
                os.replace(tmp, os.path.join(self.out_dir, schema.shard_name(split, i, n)))
            shards[split] = n
        info = schema.DatasetInfo(
            shards=shards,
            counts={s: dict(sorted(self.counts[s].items())) for s in schema.SPLITS},
            fitzpatrick_counts={s: dict(sorted(self.fitzpatrick_counts[s].items())) for s in schema.SPLITS},
            fitzpatrick_estimated=self.fitzpatrick_estimated,
            image_format=self.image_format,
            **info_fields,
        )
        schema.write_dataset_info(self.out_dir, info)
        self._finished = True
        return info

    def abort(self) -> None:
        """Closes and deletes the temporary shards; leaves no dataset behind."""
        self._close_files()
        for name in glob.glob(os.path.join(self.out_dir, ".tmp-*")):
            os.remove(name)

    def __enter__(self) -> "ShardedWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._finished:
            self.abort()


def command_line() -> str:
    """The current process's command line, for ``dataset.json``."""
    return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])
