"""Shared test fixtures: tiny schema-v1 datasets written by the tests themselves."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

# Two logical CPU devices, so MirroredStrategy tests run with 2 replicas on a CPU-only machine.
# Must happen before TensorFlow initialises its runtime, hence here at import.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from keras_medgan.data.writer import ImageRecord, ShardedWriter, assign_splits

TINY_CLASSES = ["benign", "malignant", "other"]


def tiny_records(n=24, size=(20, 28), channels=3, seed=0):
    """Deterministic random records: 3 images per patient, every other image with one or two boxes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 256, size=(*size, channels), dtype=np.uint8)
        boxes, labels = [], []
        if i % 2 == 0:
            boxes.append([0.1, 0.2, 0.5, 0.6])
            labels.append(i % 3)
        if i % 4 == 0:
            boxes.append([0.6, 0.5, 0.9, 0.95])
            labels.append((i + 1) % 3)
        out.append(ImageRecord(image=image, label=i % 3, fitzpatrick=1 + i % 6, bboxes=boxes, bbox_labels=labels,
                               patient_id=f"p{i // 3:03d}", source_id=f"img{i:03d}.png"))
    return out


def write_tiny_dataset(out, records=None, shards=2, image_format="png", val_fraction=0.25, test_fraction=0.25,
                       seed=0):
    records = records if records is not None else tiny_records()
    split_of = assign_splits([r.patient_id for r in records], val_fraction, test_fraction, seed)
    with ShardedWriter(out, num_shards=shards, image_format=image_format) as writer:
        for r in records:
            writer.add(split_of[r.patient_id], r, TINY_CLASSES)
        h, w, c = records[0].image.shape
        return writer.finish(source="tiny", command="pytest", image_size=[h, w], channels=c,
                             class_names=list(TINY_CLASSES), split_unit="patient", seed=seed)


@pytest.fixture
def tiny_dataset(tmp_path):
    """(folder, DatasetInfo, records) of a 24-image 20x28 RGB dataset."""
    records = tiny_records()
    out = str(tmp_path / "tiny")
    info = write_tiny_dataset(out, records)
    return out, info, records


# A bare interpreter (no TensorFlow) that loads keras_medgan/evaluation/locking.py by path, holds a study folder's
# lock as a running study does, says "held" and waits.
_LOCK_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locking", sys.argv[1])
locking = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locking)
with locking.hold(sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def hold_study_lock():
    """``hold_study_lock(folder) -> Popen``: another process holding ``folder``'s study lock (killed at teardown)."""
    import subprocess
    import sys

    from keras_medgan.evaluation import locking

    procs = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", _LOCK_HOLDER, os.path.abspath(locking.__file__), str(folder)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture
def trained_cells(monkeypatch):
    """The label counts of every classifier the study trains from now on (``study.train_classifier`` wrapped)."""
    from keras_medgan.evaluation import study

    trained = []
    real_train = study.train_classifier

    def counting(model, images, labels, *args, **kwargs):
        trained.append(len(labels))
        return real_train(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(study, "train_classifier", counting)
    return trained
