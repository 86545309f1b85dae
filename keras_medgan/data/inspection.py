"""Checking and looking at a schema-v1 dataset: ``verify_dataset``, ``summarize``, ``contact_sheet``.

``medgan-data verify`` and ``medgan-data inspect`` are thin wrappers over these.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import re

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from keras_medgan.data import schema
from keras_medgan.io_utils import atomic_open

_SHARD_RE = re.compile(r"^(train|val|test)-(\d{5})-of-(\d{5})\.tfrecord$")
# Distinct, colour-blind-safe box colours (Okabe-Ito), cycled by class index.
BOX_COLOURS = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
               (204, 121, 167), (255, 255, 255))


@dataclasses.dataclass
class VerifyReport:
    """What ``verify_dataset`` found: ``problems`` (any -> not valid) and ``warnings``."""

    records: dict
    problems: list
    warnings: list

    @property
    def ok(self) -> bool:
        return not self.problems


def _decoded_records(files):
    """Parses every record and decodes its image; records whose image fails to decode are dropped."""

    def parse(serialized):
        ex = schema.parse_example(serialized)
        img = tf.io.decode_image(ex[schema.IMAGE_ENCODED], expand_animations=False)
        ex["decoded_shape"] = tf.cast(tf.shape(img), tf.int64)
        return ex

    ds = tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.ignore_errors(log_warning=False).as_numpy_iterator()


def _undecodable(files) -> list[str]:
    """source_id of every record whose image does not decode."""
    bad = []
    for ex in tf.data.TFRecordDataset(files).map(schema.parse_example).as_numpy_iterator():
        try:
            tf.io.decode_image(ex[schema.IMAGE_ENCODED], expand_animations=False)
        except tf.errors.InvalidArgumentError:
            bad.append(ex[schema.SOURCE_ID].decode("utf-8", "replace"))
    return bad


def _count_records(files) -> int:
    return sum(1 for _ in tf.data.TFRecordDataset(files))


def _record_problems(ex: dict, info: schema.DatasetInfo, split: str) -> list[str]:
    """Everything wrong with one parsed, decoded record."""
    problems = []
    where = f"split {split}, record {ex[schema.SOURCE_ID].decode('utf-8', 'replace')!r}"
    h, w, c = (int(v) for v in ex["decoded_shape"])
    stored = (int(ex[schema.IMAGE_HEIGHT]), int(ex[schema.IMAGE_WIDTH]), int(ex[schema.IMAGE_CHANNELS]))
    if (h, w, c) != stored:
        problems.append(f"{where}: decoded image is {h}x{w}x{c} but the record says {stored}")
    if [h, w] != list(info.image_size) or c != info.channels:
        problems.append(f"{where}: image is {h}x{w}x{c}, dataset.json says "
                        f"{info.image_size[0]}x{info.image_size[1]}x{info.channels}")
    label = int(ex[schema.LABEL])
    if not -1 <= label < info.num_classes:
        problems.append(f"{where}: label {label} outside -1..{info.num_classes - 1}")
    multi = ex[schema.LABEL_MULTI]
    if len(multi) and (multi.min() < 0 or multi.max() >= info.num_classes):
        problems.append(f"{where}: label/multi {multi.tolist()} outside 0..{info.num_classes - 1}")
    fitz = int(ex[schema.FITZPATRICK])
    if not 0 <= fitz <= 6:
        problems.append(f"{where}: fitzpatrick {fitz} outside 0..6")
    boxes = ex[schema.BBOX]
    if len(boxes) != len(ex[schema.BBOX_LABEL]):
        problems.append(f"{where}: {len(boxes)} boxes but {len(ex[schema.BBOX_LABEL])} box labels")
    if len(boxes) and (boxes.min() < 0 or boxes.max() > 1 or np.any(boxes[:, 2] < boxes[:, 0])
                       or np.any(boxes[:, 3] < boxes[:, 1])):
        problems.append(f"{where}: boxes not normalised [ymin, xmin, ymax, xmax]: {boxes.tolist()}")
    return problems


def verify_dataset(data_dir: str, allow_patient_overlap: bool = False) -> VerifyReport:
    """Decodes every record and checks it against ``dataset.json`` and the schema.

    Checks: ``dataset.json`` is schema v1; every listed shard exists and no other
    or temporary shard files lie beside them; every image decodes with the
    stored and declared size and channels; labels, multi-labels, skin types and
    boxes are in range; counts per split and class match ``dataset.json``; and
    no ``patient_id`` is in two splits (a warning instead of a problem with
    ``allow_patient_overlap``, for sources whose official splits overlap).
    """
    problems, warnings = [], []
    try:
        info = schema.read_dataset_info(data_dir)
    except (FileNotFoundError, schema.SchemaError) as e:
        return VerifyReport({}, [str(e)], [])
    listed = {s: [schema.shard_name(s, i, n) for i in range(n)] for s, n in info.shards.items()}
    present = set(os.listdir(data_dir))
    for name in sorted(present):
        if name.startswith(".tmp-"):
            problems.append(f"temporary file {name} left by an interrupted write; re-create the dataset")
        elif _SHARD_RE.match(name) and not any(name in v for v in listed.values()):
            problems.append(f"shard {name} is not listed in dataset.json (left from another run?)")
    patients: dict[str, set] = collections.defaultdict(set)
    counted = {}
    for split in schema.SPLITS:
        names = listed.get(split, [])
        missing = [n for n in names if n not in present]
        if missing:
            problems.append(f"split {split}: {len(missing)} shard(s) listed in dataset.json are missing, e.g. {missing[0]}")
            continue
        files = [os.path.join(data_dir, n) for n in names]
        counts = collections.Counter()
        fitz_counts = collections.Counter()
        n_records = 0
        try:
            raw = _count_records(files)
        except tf.errors.DataLossError as e:
            problems.append(f"split {split}: a shard is truncated or corrupt ({e.message.splitlines()[0]})")
            continue
        for ex in _decoded_records(files) if files else ():
            n_records += 1
            problems += _record_problems(ex, info, split)
            label, fitz = int(ex[schema.LABEL]), int(ex[schema.FITZPATRICK])
            counts[info.class_names[label] if 0 <= label < info.num_classes else "unlabeled"] += 1
            fitz_counts[str(fitz)] += 1
            patients[ex[schema.PATIENT_ID].decode("utf-8", "replace")].add(split)
        if n_records < raw:
            bad = _undecodable(files)
            problems.append(f"split {split}: {raw - n_records} record(s) hold an image that does not decode, "
                            f"e.g. {bad[:3]}")
        counted[split] = n_records
        declared = info.counts.get(split, {})
        if dict(counts) != {k: v for k, v in declared.items() if v}:
            problems.append(f"split {split}: counts per class {dict(sorted(counts.items()))} differ from "
                            f"dataset.json {dict(sorted(declared.items()))}")
        declared_fitz = {k: v for k, v in info.fitzpatrick_counts.get(split, {}).items() if v}
        if dict(fitz_counts) != declared_fitz:
            problems.append(f"split {split}: Fitzpatrick counts {dict(sorted(fitz_counts.items()))} differ from "
                            f"dataset.json {declared_fitz}")
    overlap = {p: sorted(s) for p, s in patients.items() if len(s) > 1}
    if overlap:
        p, s = next(iter(sorted(overlap.items())))
        msg = (f"{len(overlap)} {info.split_unit} id(s) appear in more than one split, e.g. {p!r} in {s}: "
               "splits must be disjoint by patient")
        (warnings if allow_patient_overlap else problems).append(msg)
    if sum(counted.values()) == 0 and not problems:
        problems.append("the dataset holds no records")
    return VerifyReport(counted, problems, warnings)


def summarize(info: schema.DatasetInfo) -> str:
    """A plain-text table of counts per split and class, and per split and Fitzpatrick type."""
    lines = [f"source: {info.source}   image: {info.image_size[0]}x{info.image_size[1]}x{info.channels} "
             f"{info.image_format}   split by: {info.split_unit}   seed: {info.seed}", ""]
    names = list(info.class_names) + (["unlabeled"] if any("unlabeled" in c for c in info.counts.values()) else [])
    width = max([len(n) for n in names] + [9])
    lines.append(f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in schema.SPLITS))
    for name in names:
        lines.append(f"{name:<{width}} " + " ".join(f"{info.counts.get(s, {}).get(name, 0):>7}" for s in schema.SPLITS))
    lines.append(f"{'total':<{width}} " + " ".join(f"{info.num_examples(s):>7}" for s in schema.SPLITS))
    lines += ["", f"{'skin type':<{width}} " + " ".join(f"{s:>7}" for s in schema.SPLITS)]
    for t in range(7):
        label = "unknown" if t == 0 else f"type {'I II III IV V VI'.split()[t - 1]}"
        row = [info.fitzpatrick_counts.get(s, {}).get(str(t), 0) for s in schema.SPLITS]
        if any(row):
            lines.append(f"{label:<{width}} " + " ".join(f"{v:>7}" for v in row))
    if info.fitzpatrick_estimated:
        lines.append(f"({info.fitzpatrick_estimated} skin types estimated from pixels by ITA)")
    if info.skipped:
        lines += ["", f"skipped inputs: {len(info.skipped)} (see dataset.json)"]
    return "\n".join(lines)


def contact_sheet(data_dir: str, path: str, split: str = "train", count: int = 64, columns: int = 8,
                  cell: int = 128) -> str:
    """Writes a PNG grid of the first ``count`` images of ``split`` with their boxes and labels drawn.

    Returns the path written. The write is atomic (temporary file, then rename).
    """
    info = schema.read_dataset_info(data_dir)
    files = schema.shard_paths(data_dir, split, info)
    tiles = []
    for ex in tf.data.TFRecordDataset(files).take(count).map(schema.parse_example).as_numpy_iterator():
        img = Image.open(io.BytesIO(ex[schema.IMAGE_ENCODED])).convert("RGB").resize((cell, cell))
        draw = ImageDraw.Draw(img)
        for box, lab in zip(ex[schema.BBOX], ex[schema.BBOX_LABEL]):
            y0, x0, y1, x1 = (float(v) * cell for v in box)
            draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=BOX_COLOURS[int(lab) % 8], width=2)
        label = int(ex[schema.LABEL])
        text = info.class_names[label] if 0 <= label < info.num_classes else "unlabeled"
        if int(ex[schema.FITZPATRICK]):
            text += f" F{int(ex[schema.FITZPATRICK])}"
        draw.rectangle([0, cell - 12, cell, cell], fill=(0, 0, 0))
        draw.text((2, cell - 12), text[: cell // 6], fill=(255, 255, 255))
        tiles.append(img)
    if not tiles:
        raise ValueError(f"split {split!r} of {data_dir!r} has no records to draw")
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * cell, rows * cell), (40, 40, 40))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    with atomic_open(path, "wb") as f:
        sheet.save(f, format="PNG")
    return path
