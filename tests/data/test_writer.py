import os

import numpy as np
import pytest

from keras_medgan.data import inspection, schema
from keras_medgan.data.writer import ImageRecord, ShardedWriter, assign_splits, encode_image, resize_with_boxes
from tests.conftest import TINY_CLASSES, tiny_records, write_tiny_dataset


def test_assign_splits_is_patient_disjoint_deterministic_and_near_fractions():
    pids = [f"p{i // 4}" for i in range(400)]  # 100 patients, 4 images each
    a = assign_splits(pids, 0.1, 0.2, seed=3)
    assert a == assign_splits(list(reversed(pids)), 0.1, 0.2, seed=3)
    assert a != assign_splits(pids, 0.1, 0.2, seed=4)
    assert set(a) == {f"p{i}" for i in range(100)}
    per_split = {s: sum(4 for p in a if a[p] == s) for s in ("train", "val", "test")}
    assert per_split == {"train": 280, "val": 40, "test": 80}


def test_assign_splits_with_zero_fractions_puts_everyone_in_train():
    assert set(assign_splits(["a", "b", "c"], 0.0, 0.0, 0).values()) == {"train"}


@pytest.mark.parametrize("val, test", [(0.5, 0.5), (-0.1, 0.1), (0.1, 1.0)])
def test_assign_splits_rejects_bad_fractions(val, test):
    with pytest.raises(ValueError, match="fraction"):
        assign_splits(["a"], val, test, 0)


def test_resize_with_boxes_golden_values():
    img = np.zeros((50, 100, 3), np.uint8)
    box = [[0.2, 0.1, 0.6, 0.3]]  # pixels y 10..30, x 10..30
    out, boxes, kept = resize_with_boxes(img, box, 40, "stretch")
    assert out.shape == (40, 40, 3) and kept == [0]
    np.testing.assert_allclose(boxes, box)
    # pad: scale 0.4 -> 20x40 image at top 10: y' = (0.2*50*0.4+10)/40 = 0.35, (0.6*20+10)/40 = 0.55
    out, boxes, _ = resize_with_boxes(img, box, 40, "pad")
    np.testing.assert_allclose(boxes, [[0.35, 0.1, 0.55, 0.3]], atol=1e-9)
    # crop: scale 0.8 -> 40x80, left offset 20: x' = (0.1*80-20)/40 < 0 -> 0, (0.3*80-20)/40 = 0.1
    out, boxes, _ = resize_with_boxes(img, box, 40, "crop")
    np.testing.assert_allclose(boxes, [[0.2, 0.0, 0.6, 0.1]], atol=1e-9)
    # a box entirely in the cropped-away margin is dropped
    _, boxes, kept = resize_with_boxes(img, [[0.2, 0.0, 0.6, 0.1], [0.1, 0.4, 0.3, 0.6]], 40, "crop")
    assert kept == [1] and len(boxes) == 1


def test_resize_with_boxes_pad_keeps_pixels_and_fills_black():
    img = np.full((10, 20, 1), 200, np.uint8)
    out, _, _ = resize_with_boxes(img, [], 20, "pad")
    assert out.shape == (20, 20, 1)
    assert out[:5].max() == 0 and out[15:].max() == 0 and out[5:15].min() == 200


def test_encode_image_is_deterministic_and_lossless():
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert encode_image(img) == encode_image(img.copy())
    from PIL import Image
    import io
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_image(img)))), img)


def test_writer_counts_shards_and_byte_identical_rerun(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    info = write_tiny_dataset(a)
    write_tiny_dataset(b)
    assert info.shards == {"train": 2, "val": 2, "test": 2}
    assert sum(info.num_examples(s) for s in schema.SPLITS) == 24
    assert sum(sum(c.values()) for c in info.fitzpatrick_counts.values()) == 24
    shards = sorted(f for f in os.listdir(a) if f.endswith(".tfrecord"))
    assert len(shards) == 6
    for f in shards:
        assert open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
    assert inspection.verify_dataset(a).ok


def test_interrupted_write_leaves_nothing_verify_accepts(tmp_path):
    out = str(tmp_path / "d")
    write_tiny_dataset(out)
    assert inspection.verify_dataset(out).ok

    class Boom(Exception):
        pass

    # A rerun that dies half-way removes the old dataset.json first and its own temporary shards on the way out.
    with pytest.raises(Boom):
        with ShardedWriter(out, num_shards=2) as writer:
            for r in tiny_records()[:5]:
                writer.add("train", r, TINY_CLASSES)
            raise Boom()
    assert not os.path.exists(os.path.join(out, "dataset.json"))
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")]
    report = inspection.verify_dataset(out)
    assert not report.ok and "dataset.json not found" in report.problems[0]


def test_killed_write_leaves_only_temporary_files(tmp_path):
    out = str(tmp_path / "d")
    writer = ShardedWriter(out, num_shards=1)
    writer.add("train", tiny_records()[0], TINY_CLASSES)
    writer._close_files()  # as if the process were killed here: no finish(), no abort()
    names = os.listdir(out)
    assert names and all(n.startswith(".tmp-") for n in names)
    assert not inspection.verify_dataset(out).ok


def test_writer_rejects_bad_split_and_format(tmp_path):
    with pytest.raises(ValueError, match="image_format"):
        ShardedWriter(str(tmp_path), image_format="bmp")
    with ShardedWriter(str(tmp_path / "x")) as w:
        with pytest.raises(ValueError, match="split"):
            w.add("holdout", ImageRecord(image=np.zeros((4, 4, 3), np.uint8)), ["a"])
        w.abort()
