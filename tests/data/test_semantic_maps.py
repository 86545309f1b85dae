import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.data import semantic_maps as sm


def _one():
    boxes = tf.constant([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 0.75, 1.0], [0, 0, 0, 0]], tf.float32)
    return boxes, tf.constant([1, 3, 0], tf.int32), tf.constant(2, tf.int32)


def test_semantic_map_golden_values():
    boxes, labels, n = _one()
    m = sm.semantic_map(tf.constant(3), boxes, labels, n, num_classes=4, image_size=4).numpy()
    assert m.shape == (4, 4, 3)
    np.testing.assert_allclose(m[..., 0], 0.5)  # Fitzpatrick III / 6
    g = np.array([[0.5, 0.5, 0, 0],
                  [0.5, 0.5, 1, 1],
                  [0, 0, 1, 1],
                  [0, 0, 0, 0]])  # (1 + 1) / 4 and (3 + 1) / 4
    np.testing.assert_allclose(m[..., 1], g)
    np.testing.assert_allclose(m[..., 2], (g > 0).astype(float))


def test_semantic_map_overlap_takes_larger_class_and_tiny_box_marks_a_pixel():
    boxes = tf.constant([[0.0, 0.0, 1.0, 1.0], [0.1, 0.1, 0.12, 0.12]])
    m = sm.semantic_map(tf.constant(0), boxes, tf.constant([0, 1]), tf.constant(2), 2, 10).numpy()
    assert m[1, 1, 1] == 1.0 and m[5, 5, 1] == 0.5 and m[..., 0].max() == 0.0
    assert m[..., 2].min() == 1.0


def test_semantic_map_without_boxes_is_skin_only_and_batches_work():
    boxes, labels, _ = _one()
    batch = sm.semantic_map(tf.constant([6, 1]), tf.stack([boxes, boxes]), tf.stack([labels, labels]),
                            tf.constant([0, 2]), 4, (4, 6)).numpy()
    assert batch.shape == (2, 4, 6, 3)
    np.testing.assert_allclose(batch[0, ..., 0], 1.0)
    assert batch[0, ..., 1:].max() == 0.0 and batch[1, ..., 2].sum() > 0


def test_decode_semantic_map_inverts_encoding():
    boxes, labels, n = _one()
    m = sm.semantic_map(tf.constant(5), boxes, labels, n, 4, 8)
    fitz, classes, roi = sm.decode_semantic_map(m, 4)
    assert int(fitz) == 5
    assert set(np.unique(classes.numpy())) == {-1, 1, 3}
    assert roi.numpy().sum() == 16 + 16


def test_translate_boxes_keeps_size_and_stays_inside_and_ignores_padding():
    boxes, _, n = _one()
    for s in range(20):
        moved = sm.translate_boxes(boxes, n, tf.constant([s, 7])).numpy()
        sizes = moved[:2, 2:] - moved[:2, :2]
        np.testing.assert_allclose(sizes, (boxes.numpy()[:2, 2:] - boxes.numpy()[:2, :2]), atol=1e-6)
        assert moved.min() >= 0 and moved.max() <= 1
        assert not moved[2].any()
    a = sm.translate_boxes(boxes, n, tf.constant([1, 2])).numpy()
    assert np.array_equal(a, sm.translate_boxes(boxes, n, tf.constant([1, 2])).numpy())


def test_random_box_subset_is_non_empty_and_packs_kept_boxes_first():
    boxes, labels, n = _one()
    counts = set()
    for s in range(30):
        b, lab, k = sm.random_box_subset(boxes, labels, n, tf.constant([s, 0]))
        k = int(k)
        counts.add(k)
        assert 1 <= k <= 2
        kept = {tuple(np.round(x, 4)) for x in b.numpy()[:k]}
        assert kept <= {tuple(np.round(x, 4)) for x in boxes.numpy()[:2]}
        assert not b.numpy()[k:].any()
        for row, l in zip(b.numpy()[:k], lab.numpy()[:k]):
            assert l == (1 if row[0] == 0.0 else 3)
    assert counts == {1, 2}
    b, lab, k = sm.random_box_subset(boxes, labels, tf.constant(0), tf.constant([0, 0]))
    assert int(k) == 0


def test_rescale_boxes_golden_values():
    boxes = tf.constant([[0.4, 0.4, 0.6, 0.6], [0.0, 0.0, 0.2, 0.2]])
    out = sm.rescale_boxes(boxes, tf.constant(2), 2.0).numpy()
    np.testing.assert_allclose(out, [[0.3, 0.3, 0.7, 0.7], [0.0, 0.0, 0.3, 0.3]], atol=1e-6)


def test_replace_skin_type_only_touches_red_channel():
    boxes, labels, n = _one()
    m = sm.semantic_map(tf.constant(2), boxes, labels, n, 4, 8)
    out = sm.replace_skin_type(m, 6).numpy()
    np.testing.assert_allclose(out[..., 0], 1.0)
    np.testing.assert_allclose(out[..., 1:], m.numpy()[..., 1:])


def test_transforms_work_inside_dataset_map_with_stateless_seeds():
    boxes, labels, n = _one()
    ex = {"fitzpatrick": tf.constant(4), "boxes": boxes, "box_labels": labels, "num_boxes": n}
    ds = tf.data.Dataset.from_tensors(ex).repeat(3).enumerate().map(
        lambda i, e: sm.sample_map_variation(e, 4, 16, tf.stack([i, tf.constant(9, tf.int64)])))
    maps = [m.numpy() for m in ds]
    assert all(m.shape == (16, 16, 3) for m in maps)
    again = [m.numpy() for m in ds]
    assert all(np.array_equal(a, b) for a, b in zip(maps, again))
    assert not np.array_equal(maps[0], maps[1])
    batched = tf.data.Dataset.from_tensors(ex).batch(1).map(sm.add_semantic_map(4, 8))
    assert next(iter(batched))["semantic_map"].shape == (1, 8, 8, 3)


def test_semantic_map_rejects_zero_classes():
    boxes, labels, n = _one()
    with pytest.raises(ValueError, match="num_classes"):
        sm.semantic_map(tf.constant(1), boxes, labels, n, 0, 4)
