"""Fixture writers for the `medgan-data` source tests: tiny images in the real layouts, and a dataset reader."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from keras_medgan.data import schema

SKIN = (210, 160, 125)  # an ITA "intermediate" skin colour (Fitzpatrick III)
FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "shared", "fixtures")
# Fast settings for every CLI run: tiny output, one process, one shard per split.
FAST = ["--image-size", "16", "--workers", "1", "--shards", "1"]


def _pixels(size, color, channels, seed):
    """A ``color`` image of ``size`` (width, height) with a little noise, so JPEGs have a real scan to truncate."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = np.broadcast_to(np.asarray(color, dtype=np.int16)[:channels], (h, w, channels))
    noisy = np.clip(base + rng.integers(-6, 7, size=(h, w, channels)), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy[..., 0] if channels == 1 else noisy)


def write_jpeg(path, size=(20, 16), color=SKIN, channels=3, seed=0):
    """Writes a small JPEG (``size`` = (width, height)) and returns its path."""
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    _pixels(size, color, channels, seed).save(str(path), format="JPEG", quality=90)
    return str(path)


def write_png(path, size=(20, 16), color=SKIN, channels=3, seed=0):
    """Writes a small PNG (``size`` = (width, height)) and returns its path."""
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    _pixels(size, color, channels, seed).save(str(path), format="PNG")
    return str(path)


def write_truncated_jpeg(path, size=(40, 32), color=SKIN, channels=3):
    """Writes a valid JPEG, then cuts it to half its bytes (a typical broken download)."""
    write_jpeg(path, size, color, channels, seed=1)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return str(path)


def write_mask(path, size, box):
    """A binary PNG mask (``size`` = (width, height)) with 255 on pixel rows y0..y1-1, columns x0..x1-1."""
    w, h = size
    x0, y0, x1, y1 = box
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 255
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    Image.fromarray(mask).save(str(path))
    return str(path)


def write_csv(path, header, rows):
    """Writes ``header`` and ``rows`` (lists of cells or raw strings) as a CSV file, as published files are."""
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    lines = [header] + [r if isinstance(r, str) else ",".join(str(c) for c in r) for r in rows]
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def run_cli(args, ok=True):
    """Invokes ``medgan-data`` in-process; with ``ok`` asserts exit status 0 (printing the output if not)."""
    from data_prep.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_dataset(out):
    """Reads a written dataset back: ``(dataset.json as a dict, {split: [record dict, ...]})``.

    Every record of every shard is parsed with ``schema.parse_example``; values
    come back as Python types (``bbox`` as a list of 4-lists, strings decoded),
    and ``image`` as the decoded uint8 array.
    """
    with open(os.path.join(out, schema.DATASET_JSON), encoding="utf-8") as f:
        info = json.load(f)
    records = {}
    for split in schema.SPLITS:
        paths = sorted(glob.glob(os.path.join(out, f"{split}-*-of-*.tfrecord")))
        records[split] = []
        if not paths:
            continue
        for p in tf.data.TFRecordDataset(paths).map(schema.parse_example).as_numpy_iterator():
            records[split].append({
                "image": tf.io.decode_image(p[schema.IMAGE_ENCODED]).numpy(),
                "height": int(p[schema.IMAGE_HEIGHT]),
                "width": int(p[schema.IMAGE_WIDTH]),
                "channels": int(p[schema.IMAGE_CHANNELS]),
                "label": int(p[schema.LABEL]),
                "label_multi": [int(v) for v in p[schema.LABEL_MULTI]],
                "fitzpatrick": int(p[schema.FITZPATRICK]),
                "fitzpatrick_estimated": int(p[schema.FITZPATRICK_ESTIMATED]),
                "bbox": [[float(v) for v in b] for b in p[schema.BBOX]],
                "bbox_label": [int(v) for v in p[schema.BBOX_LABEL]],
                "patient_id": p[schema.PATIENT_ID].decode(),
                "source_id": p[schema.SOURCE_ID].decode(),
            })
    return info, records


def all_records(records):
    """Every record of every split, each with its ``split`` added."""
    return [dict(r, split=s) for s, recs in records.items() for r in recs]


def by_source(records):
    """``{source_id: record}`` over all splits."""
    return {r["source_id"]: r for r in all_records(records)}


def assert_patient_disjoint(records):
    """No patient id in more than one split."""
    seen = {}
    for r in all_records(records):
        seen.setdefault(r["patient_id"], set()).add(r["split"])
    crossing = {p: s for p, s in seen.items() if len(s) > 1}
    assert not crossing, f"patients in several splits: {crossing}"


def assert_boxes(record, expected, labels=None):
    """The record's normalised boxes equal ``expected`` (to float32 precision), and its box labels ``labels``."""
    np.testing.assert_allclose(np.reshape(record["bbox"], (-1, 4)), np.reshape(expected, (-1, 4)), atol=1e-6)
    if labels is not None:
        assert record["bbox_label"] == list(labels)


def skipped_reasons(info):
    """``{input: reason}`` of ``dataset.json`` ``skipped``."""
    return {s["input"]: s["reason"] for s in info["skipped"]}


@pytest.fixture
def shared_fixtures():
    """The folder of real-format fixtures (``../shared/fixtures``); skips the test when it is absent."""
    path = os.path.abspath(FIXTURES)
    if not os.path.isdir(path):
        pytest.skip(f"real-format fixtures not found at {path} (the shared/fixtures folder beside the repository)")
    return path
