"""The TFRecord contract of keras-medgan (schema version 1): the single source of truth.

Every dataset on disk is a folder of sharded files
``<split>-<i:05d>-of-<n:05d>.tfrecord`` (splits ``train``, ``val``, ``test``)
beside a ``dataset.json`` that describes it. One ``tf.train.Example`` per image,
with the keys of ``FEATURE_KEYS`` (see ``DESIGN.md``, "Data contract").

Example:

>>> blob = encode_example(png_bytes, "png", 64, 64, 3, label=2,
...                       bbox=[[0.1, 0.2, 0.5, 0.6]], bbox_label=[2],
...                       patient_id="p1", source_id="img1.png")
>>> features = parse_example(tf.constant(blob))
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Iterable, Mapping, Sequence

import tensorflow as tf

from keras_medgan.io_utils import atomic_open

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
IMAGE_FORMATS = ("png", "jpeg")
SPLIT_UNITS = ("patient", "lesion", "image")
DATASET_JSON = "dataset.json"

# Feature keys of schema version 1.
IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL = "label"
LABEL_MULTI = "label/multi"
FITZPATRICK = "fitzpatrick"
FITZPATRICK_ESTIMATED = "fitzpatrick/estimated"
BBOX = "bbox"
BBOX_LABEL = "bbox/label"
PATIENT_ID = "patient_id"
SOURCE_ID = "source_id"

FEATURE_KEYS = (
    IMAGE_ENCODED,
    IMAGE_FORMAT,
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    IMAGE_CHANNELS,
    LABEL,
    LABEL_MULTI,
    FITZPATRICK,
    FITZPATRICK_ESTIMATED,
    BBOX,
    BBOX_LABEL,
    PATIENT_ID,
    SOURCE_ID,
)

_FEATURE_SPEC = {
    IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
    IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string),
    IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_CHANNELS: tf.io.FixedLenFeature([], tf.int64),
    LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    LABEL_MULTI: tf.io.VarLenFeature(tf.int64),
    FITZPATRICK: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    FITZPATRICK_ESTIMATED: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    BBOX: tf.io.VarLenFeature(tf.float32),
    BBOX_LABEL: tf.io.VarLenFeature(tf.int64),
    PATIENT_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
    SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


class SchemaError(ValueError):
    """A dataset on disk does not follow the keras-medgan TFRecord contract."""


def feature_spec() -> dict:
    """A copy of the ``tf.io.parse_example`` spec of schema version 1."""
    return dict(_FEATURE_SPEC)


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values: Iterable[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else str(text).encode("utf-8")


def encode_example(
    image_encoded: bytes,
    image_format: str,
    height: int,
    width: int,
    channels: int,
    *,
    label: int = -1,
    label_multi: Sequence[int] = (),
    fitzpatrick: int = 0,
    fitzpatrick_estimated: bool = False,
    bbox: Sequence[Sequence[float]] = (),
    bbox_label: Sequence[int] = (),
    patient_id: str = "",
    source_id: str = "",
) -> bytes:
    """Serialises one image and its annotations as a schema-v1 ``tf.train.Example``.

    Args:
        image_encoded: bytes. The PNG or JPEG file content.
        image_format: str. ``"png"`` or ``"jpeg"``.
        height, width, channels: int. The stored image's shape.
        label: int. Class index into ``dataset.json`` ``class_names``; -1 = unlabeled.
        label_multi: sequence of int. All class indices of a multi-label image.
        fitzpatrick: int. Fitzpatrick skin type 1..6; 0 = unknown.
        fitzpatrick_estimated: bool. True when estimated from pixels (ITA).
        bbox: sequence of ``[ymin, xmin, ymax, xmax]`` boxes normalised to [0, 1].
        bbox_label: sequence of int. Class index per box, same length as ``bbox``.
        patient_id: str. The unit that must never cross splits.
        source_id: str. Original file name or record id.

    Returns:
        The serialised example, ready for ``tf.io.TFRecordWriter.write``.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"`image_format` must be one of {IMAGE_FORMATS}. Received: image_format={image_format!r}")
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be 1 or 3. Received: channels={channels}")
    if not 0 <= int(fitzpatrick) <= 6:
        raise ValueError(f"`fitzpatrick` must be in 0..6 (0 = unknown). Received: fitzpatrick={fitzpatrick}")
    boxes = [list(map(float, b)) for b in bbox]
    for b in boxes:
        if len(b) != 4:
            raise ValueError(f"each box must be [ymin, xmin, ymax, xmax]. Received: {b}")
        if not (0.0 <= b[0] <= b[2] <= 1.0 and 0.0 <= b[1] <= b[3] <= 1.0):
            raise ValueError(f"boxes must be normalised [ymin, xmin, ymax, xmax] with min <= max in [0, 1]. Received: {b}")
    if len(bbox_label) != len(boxes):
        raise ValueError(
            f"`bbox_label` needs one class index per box. Received: {len(boxes)} boxes and {len(bbox_label)} labels"
        )
    feature = {
        IMAGE_ENCODED: _bytes([image_encoded]),
        IMAGE_FORMAT: _bytes([image_format.encode()]),
        IMAGE_HEIGHT: _ints([height]),
        IMAGE_WIDTH: _ints([width]),
        IMAGE_CHANNELS: _ints([channels]),
        LABEL: _ints([label]),
        LABEL_MULTI: _ints(label_multi),
        FITZPATRICK: _ints([fitzpatrick]),
        FITZPATRICK_ESTIMATED: _ints([1 if fitzpatrick_estimated else 0]),
        BBOX: _floats(v for b in boxes for v in b),
        BBOX_LABEL: _ints(bbox_label),
        PATIENT_ID: _bytes([_as_bytes(patient_id)]),
        SOURCE_ID: _bytes([_as_bytes(source_id)]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialised example into dense tensors; usable inside ``Dataset.map``.

    Variable-length keys come back dense: ``label/multi`` as ``[K]`` int64,
    ``bbox`` as ``[N, 4]`` float32 and ``bbox/label`` as ``[N]`` int64. The image
    stays encoded (``image/encoded``); ``pipelines.decode_image`` decodes it.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURE_SPEC)
    for key in (LABEL_MULTI, BBOX, BBOX_LABEL):
        parsed[key] = tf.sparse.to_dense(parsed[key])
    parsed[BBOX] = tf.reshape(parsed[BBOX], [-1, 4])
    return parsed


# ---------------------------------------------------------------------------
# dataset.json
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class DatasetInfo:
    """What ``dataset.json`` says about a dataset folder.

    Args:
        source: str. The adapter that wrote it (``demo-derm``, ``ham10000``, ...).
        command: str. The command line that wrote it.
        image_size: list of int. ``[height, width]`` of the stored images.
        channels: int. 1 (grey) or 3 (RGB).
        class_names: list of str. Class names in index order.
        image_format: str. ``png`` or ``jpeg``.
        split_unit: str. What splits are made by: ``patient``, ``lesion`` or ``image``.
        seed: int. Seed used for the split and any randomness in preparation.
        shards: dict split -> number of shard files.
        counts: dict split -> {class name -> count}; unlabeled images count under ``"unlabeled"``.
        fitzpatrick_counts: dict split -> {"0".."6" -> count}.
        fitzpatrick_estimated: int. How many records have an ITA-estimated skin type.
        skipped: list of {"input", "reason"} for inputs that could not be used.
        multi_label: bool. Whether ``label/multi`` carries the labels.
        extra: dict. Adapter-specific notes (official splits used, task, ...).
        schema_version: int. Always ``SCHEMA_VERSION`` when written by this code.
    """

    source: str
    command: str
    image_size: list
    channels: int
    class_names: list
    image_format: str = "png"
    split_unit: str = "patient"
    seed: int = 0
    shards: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)
    fitzpatrick_counts: dict = dataclasses.field(default_factory=dict)
    fitzpatrick_estimated: int = 0
    skipped: list = dataclasses.field(default_factory=list)
    multi_label: bool = False
    extra: dict = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def num_examples(self, split: str) -> int:
        """Total records in a split."""
        return int(sum(self.counts.get(split, {}).values()))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = DATASET_JSON) -> "DatasetInfo":
        """Builds and validates; ``where`` names the file in error messages."""
        if "schema_version" not in data:
            raise SchemaError(
                f"{where} has no `schema_version`: it was not written by keras-medgan. "
                "Re-create the dataset with `medgan-data`."
            )
        if data["schema_version"] != SCHEMA_VERSION:
            raise SchemaError(
                f"{where} has schema_version={data['schema_version']!r}, but this keras-medgan reads "
                f"schema version {SCHEMA_VERSION}. Re-create the dataset with this version's `medgan-data`."
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SchemaError(f"{where} has unknown keys {unknown}; known keys are {sorted(names)}.")
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise SchemaError(f"{where} is missing required keys {missing}.")
        info = cls(**dict(data))
        info.validate(where)
        return info

    def validate(self, where: str = DATASET_JSON) -> None:
        """Raises ``SchemaError`` naming the first field that is wrong."""

        def fail(field: str, why: str) -> None:
            raise SchemaError(f"{where}: `{field}` {why}. Received: {field}={getattr(self, field)!r}")

        if not (isinstance(self.image_size, (list, tuple)) and len(self.image_size) == 2
                and all(isinstance(v, int) and v > 0 for v in self.image_size)):
            fail("image_size", "must be [height, width] of positive integers")
        if self.channels not in (1, 3):
            fail("channels", "must be 1 or 3")
        if not isinstance(self.class_names, (list, tuple)) or not all(isinstance(c, str) for c in self.class_names):
            fail("class_names", "must be a list of strings")
        if len(set(self.class_names)) != len(self.class_names):
            fail("class_names", "must not repeat a name")
        if self.image_format not in IMAGE_FORMATS:
            fail("image_format", f"must be one of {IMAGE_FORMATS}")
        if self.split_unit not in SPLIT_UNITS:
            fail("split_unit", f"must be one of {SPLIT_UNITS}")
        if not isinstance(self.shards, dict) or any(s not in SPLITS for s in self.shards):
            fail("shards", f"must map split names {SPLITS} to shard counts")
        if any(s not in SPLITS for s in self.counts):
            fail("counts", f"must map split names {SPLITS} to per-class counts")
        for item in self.skipped:
            if not (isinstance(item, dict) and {"input", "reason"} <= set(item)):
                fail("skipped", 'must be a list of {"input": ..., "reason": ...}')


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Writes JSON to a temporary file in the same folder, then renames it over ``path``."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=False)
        f.write("\n")


def write_dataset_info(data_dir: str | os.PathLike, info: DatasetInfo) -> str:
    """Validates ``info`` and writes ``<data_dir>/dataset.json`` atomically. Returns the path."""
    info.validate()
    path = os.path.join(os.fspath(data_dir), DATASET_JSON)
    write_json_atomic(path, info.to_dict())
    return path


def read_dataset_info(data_dir: str | os.PathLike) -> DatasetInfo:
    """Reads and validates ``<data_dir>/dataset.json``.

    Raises:
        FileNotFoundError: the folder has no ``dataset.json`` (not a dataset, or an interrupted write).
        SchemaError: the file is not valid JSON, or its schema version is missing or not ours.
    """
    data_dir = os.fspath(data_dir)
    path = os.path.join(data_dir, DATASET_JSON)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Dataset folder {data_dir!r} does not exist. Create one with `medgan-data`.")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {data_dir!r} is not a complete keras-medgan dataset (or its preparation was "
            "interrupted). Run `medgan-data <source> --out DIR` to (re)create it."
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path} is not valid JSON ({e}). Re-create the dataset with `medgan-data`.") from e
    if not isinstance(data, dict):
        raise SchemaError(f"{path} must hold a JSON object. Re-create the dataset with `medgan-data`.")
    return DatasetInfo.from_dict(data, where=path)


def shard_name(split: str, index: int, num_shards: int) -> str:
    """``<split>-<i:05d>-of-<n:05d>.tfrecord``."""
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def shard_paths(data_dir: str | os.PathLike, split: str, info: DatasetInfo | None = None) -> list[str]:
    """The shard files of one split, checked against ``dataset.json``.

    Raises:
        ValueError: ``split`` is not a split name, or the split has no records.
        FileNotFoundError: a shard listed by ``dataset.json`` is missing.
    """
    data_dir = os.fspath(data_dir)
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}. Received: split={split!r}")
    info = info or read_dataset_info(data_dir)
    n = int(info.shards.get(split, 0))
    if n == 0 or info.num_examples(split) == 0:
        raise ValueError(
            f"Split {split!r} of {data_dir!r} is empty (counts: "
            f"{ {s: info.num_examples(s) for s in SPLITS} }). Choose another split or re-create the dataset with "
            "non-zero --val-fraction/--test-fraction."
        )
    paths = [os.path.join(data_dir, shard_name(split, i, n)) for i in range(n)]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} shard(s) of split {split!r} listed in dataset.json are missing, e.g. {missing[0]}. "
            "Re-create the dataset with `medgan-data`."
        )
    return paths


def dataset_fingerprint(data_dir: str | os.PathLike) -> str:
    """Hash of ``dataset.json`` and the shard files' names and sizes: changes whenever the data does.

    Used as a cache key for everything derived from a dataset (domain classifiers, real-image features).
    """
    data_dir = os.fspath(data_dir)
    digest = hashlib.sha256()
    with open(os.path.join(data_dir, DATASET_JSON), "rb") as f:
        digest.update(f.read())
    for name in sorted(os.listdir(data_dir)):
        if name.endswith(".tfrecord"):
            digest.update(f"{name}:{os.path.getsize(os.path.join(data_dir, name))}".encode())
    return digest.hexdigest()[:16]
