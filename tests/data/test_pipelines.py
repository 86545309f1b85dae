import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.config import DataConfig
from keras_medgan.data import pipelines, schema
from tests.conftest import tiny_records, write_tiny_dataset


def _cfg(folder, **kw):
    base = dict(data_dir=folder, image_size=16, batch_size=4, shuffle_buffer=0, cache=False, repeat=False,
                drop_remainder=False, deterministic=True, max_boxes=3)
    base.update(kw)
    return DataConfig(**base)


def test_batches_have_the_documented_keys_shapes_and_range(tiny_dataset):
    folder, info, _ = tiny_dataset
    batch = next(iter(pipelines.make_dataset(_cfg(folder), "train")))
    assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(batch["image"])) and float(tf.reduce_max(batch["image"])) <= 1.0
    assert batch["boxes"].shape == (4, 3, 4) and batch["box_labels"].shape == (4, 3)
    assert batch["label_multi"].shape == (4, 3)
    assert batch["label"].dtype == tf.int32 and batch["num_boxes"].dtype == tf.int32


def test_one_pass_yields_every_record_with_its_annotations(tiny_dataset):
    folder, info, records = tiny_dataset
    by_id = {r.source_id: r for r in records}
    seen = []
    for split in schema.SPLITS:
        for batch in pipelines.make_dataset(_cfg(folder, image_size=20, resize="crop"), split):
            for i, sid in enumerate(batch["source_id"].numpy()):
                r = by_id[sid.decode()]
                seen.append(sid)
                assert int(batch["label"][i]) == r.label and int(batch["fitzpatrick"][i]) == r.fitzpatrick
                n = int(batch["num_boxes"][i])
                assert n == len(r.bboxes)
                # 20x28 -> crop to 20x20: x' = (x*28 - 4) / 20, clipped
                for k, (y0, x0, y1, x1) in enumerate(r.bboxes):
                    expect = [y0, max(0, (x0 * 28 - 4) / 20), y1, min(1, (x1 * 28 - 4) / 20)]
                    np.testing.assert_allclose(batch["boxes"][i, k].numpy(), expect, atol=1e-5)
                    assert int(batch["box_labels"][i, k]) == r.bbox_labels[k]
                assert not batch["boxes"][i, n:].numpy().any()
    assert len(seen) == len(records) == len(set(seen))


def test_pixels_are_scaled_exactly_to_minus_one_one(tmp_path):
    records = tiny_records(n=3, size=(8, 8))
    folder = str(tmp_path / "d")
    write_tiny_dataset(folder, records, val_fraction=0.0, test_fraction=0.0)
    batch = next(iter(pipelines.make_dataset(_cfg(folder, image_size=8, batch_size=3), "train")))
    got = {sid.decode(): batch["image"][i].numpy() for i, sid in enumerate(batch["source_id"].numpy())}
    for r in records:
        np.testing.assert_allclose(got[r.source_id], r.image / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_array_equal(pipelines.to_uint8(batch["image"]).numpy().shape, (3, 8, 8, 3))


@pytest.mark.parametrize("method, expect", [
    ("stretch", [0.2, 0.1, 0.6, 0.3]),
    ("pad", [0.35, 0.1, 0.55, 0.3]),
    ("crop", [0.2, 0.0, 0.6, 0.1]),
])
def test_resize_image_and_boxes_matches_the_writer_geometry(method, expect):
    image = tf.zeros([50, 100, 3], tf.uint8)
    out, boxes, labels = pipelines.resize_image_and_boxes(image, tf.constant([[0.2, 0.1, 0.6, 0.3]]),
                                                          tf.constant([4], tf.int64), 40, method)
    assert out.shape == (40, 40, 3) and out.dtype == tf.uint8
    np.testing.assert_allclose(boxes.numpy()[0], expect, atol=1e-6)
    assert labels.numpy().tolist() == [4]


def test_resize_pad_puts_black_bars_outside_the_image():
    out, _, _ = pipelines.resize_image_and_boxes(tf.fill([10, 20, 1], tf.constant(200, tf.uint8)),
                                                 tf.zeros([0, 4]), tf.zeros([0], tf.int64), 20, "pad")
    out = out.numpy()[..., 0]
    assert out[:5].max() == 0 and out[15:].max() == 0 and out[5:15].min() == 200


def test_pad_boxes_truncates_and_pads():
    boxes = tf.constant([[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.4, 0.4], [0.5, 0.5, 0.6, 0.6]])
    dense, labels, n = pipelines.pad_boxes(boxes, tf.constant([1, 2, 3], tf.int64), 2)
    assert int(n) == 2 and labels.numpy().tolist() == [1, 2]
    dense, labels, n = pipelines.pad_boxes(boxes[:1], tf.constant([7], tf.int64), 3)
    assert int(n) == 1 and labels.numpy().tolist() == [7, 0, 0] and not dense[1:].numpy().any()


def test_deterministic_mode_repeats_the_same_order_and_seed_changes_it(tiny_dataset):
    folder, _, _ = tiny_dataset

    def order(seed):
        cfg = _cfg(folder, shuffle_buffer=64, seed=seed, cache=True, repeat=True)
        ds = pipelines.make_dataset(cfg, "train").take(6)
        return [s.decode() for b in ds for s in b["source_id"].numpy()]

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_grey_dataset_can_be_read_as_rgb(tmp_path):
    folder = str(tmp_path / "g")
    write_tiny_dataset(folder, tiny_records(n=6, channels=1), val_fraction=0.0, test_fraction=0.0)
    grey = next(iter(pipelines.make_dataset(_cfg(folder), "train")))["image"]
    rgb = next(iter(pipelines.make_dataset(_cfg(folder, channels=3), "train")))["image"]
    assert grey.shape[-1] == 1 and rgb.shape[-1] == 3
    np.testing.assert_allclose(rgb[..., 0], grey[..., 0], atol=1e-6)


def test_empty_split_and_missing_dataset_raise_clear_errors(tmp_path):
    folder = str(tmp_path / "d")
    write_tiny_dataset(folder, tiny_records(n=6), val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(ValueError, match="Split 'val'.*is empty"):
        pipelines.make_dataset(_cfg(folder), "val")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pipelines.make_dataset(_cfg(str(tmp_path / "nope")), "train")


def test_per_replica_batches_under_mirrored_strategy(tiny_dataset):
    folder, _, _ = tiny_dataset
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    dist = pipelines.distribute_dataset(strategy, _cfg(folder, batch_size=4, repeat=True, drop_remainder=True),
                                        "train")
    batch = next(iter(dist))
    per_replica = strategy.experimental_local_results(batch["image"])
    assert [t.shape[0] for t in per_replica] == [2, 2]
    with pytest.raises(ValueError, match="divisible"):
        pipelines.distribute_dataset(strategy, _cfg(folder, batch_size=3), "train")


def test_records_per_pipeline_follows_round_robin_shards(tiny_dataset):
    folder, info, _ = tiny_dataset
    n = info.num_examples("train")
    assert pipelines.records_per_pipeline(info, "train") == n
    assert (pipelines.records_per_pipeline(info, "train", 2, 0) + pipelines.records_per_pipeline(info, "train", 2, 1)
            == n)


def test_start_step_resumes_the_repeated_stream_exactly(tiny_dataset):
    folder, info, _ = tiny_dataset
    tf.random.set_seed(0)  # a global seed of 0 once broke epoch-seeded shuffles
    cfg = _cfg(folder, shuffle_buffer=16, seed=5, cache=True, repeat=True, batch_size=4)

    def ids(start, count):
        ds = pipelines.make_dataset(cfg, "train", start_step=start).take(count)
        return [[s.decode() for s in b["source_id"].numpy()] for b in ds]

    straight = ids(0, 9)  # crosses epoch boundaries (train has 12 records -> 3 batches per epoch)
    assert straight[1:] != straight[:-1]
    assert ids(4, 5) == straight[4:]
    assert ids(7, 2) == straight[7:]
    assert sorted(sum(straight[0:3], [])) == sorted(sum(straight[3:6], []))  # each epoch is a permutation
    assert straight[0:3] != straight[3:6]


def test_split_smaller_than_a_batch_is_rejected_when_repeating(tiny_dataset):
    folder, _, _ = tiny_dataset
    with pytest.raises(ValueError, match="fewer than one batch"):
        pipelines.make_dataset(_cfg(folder, batch_size=64, repeat=True), "train")
