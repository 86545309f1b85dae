"""Classifier builders, conventional augmentation (config and save/load round trips) and the training setup."""


import dataclasses

import keras
import numpy as np
import tensorflow as tf
import pytest

from keras_medgan.evaluation import training
from keras_medgan.evaluation.augmentation import AugmentationConfig, conventional_augmentation
from keras_medgan.evaluation.classifiers import ClassifierConfig, build_classifier


def _separable(n, size=16, seed=0):
    """Two classes a CNN separates at once: dark vs bright images (uint8)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels[:, None, None, None] == 1, 190, 60)
    images = np.clip(base + rng.integers(-30, 30, (n, size, size, 3)), 0, 255).astype(np.uint8)
    return images, labels


def test_small_cnn_builder_round_trips_config_and_keras_file(tmp_path):
    model, origin = build_classifier(ClassifierConfig(filters=(4, 8)), 16, 3, 3)
    assert origin.startswith("random init") and model.output_shape == (None, 3)
    clone = keras.Model.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    path = str(tmp_path / "small.keras")
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(x), model(x), atol=1e-6)


def test_imagenet_builder_reports_its_weights_and_takes_grey_images():
    model, origin = build_classifier(ClassifierConfig(name="mobilenet", weights="none", dropout=0.2), 32, 1, 2)
    assert origin == "random init" and model.output_shape == (None, 2) and model.input_shape == (None, 32, 32, 1)


def test_classifier_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"classifier.name must be one of .*'small_cnn'.*Received: 'inception_v4'"):
        ClassifierConfig(name="inception_v4")
    with pytest.raises(ValueError, match="classifier.weights"):
        ClassifierConfig(weights="yes")


def test_augmentation_is_identity_at_inference_random_in_training_and_round_trips(tmp_path):
    augment = conventional_augmentation(AugmentationConfig(), channels=3, seed=1)
    assert [layer.name for layer in augment.layers] == ["flip", "rotation", "resized_crop", "hue"]
    assert augment.layers[2].height_factor == pytest.approx((-(1 - np.sqrt(0.75)), 0.0))
    assert augment.layers[3].factor == pytest.approx((0.0, 0.2))  # Keras shifts by factor/2: +-10% of the circle
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(augment(x, training=False), x)
    y = keras.ops.convert_to_numpy(augment(x, training=True))
    assert y.shape == x.shape and not np.allclose(y, x) and y.min() >= -1.001 and y.max() <= 1.001
    clone = keras.Sequential.from_config(augment.get_config())
    assert clone.get_config() == augment.get_config()
    inputs = keras.Input((16, 16, 3))
    wrapper = keras.Model(inputs, augment(inputs))
    path = str(tmp_path / "augment.keras")
    wrapper.save(path)
    loaded = keras.models.load_model(path)
    inner = loaded.get_layer("conventional_augmentation")
    assert [layer.name for layer in inner.layers] == ["flip", "rotation", "resized_crop", "hue"]
    assert inner.get_layer("hue").factor == pytest.approx((0.0, 0.2))
    assert inner.get_layer("rotation").factor == pytest.approx((-0.125, 0.125))  # +-45 degrees
    np.testing.assert_allclose(loaded(x, training=False), x)
    grey = conventional_augmentation(AugmentationConfig(), channels=1)
    assert "hue" not in [layer.name for layer in grey.layers]
    assert not conventional_augmentation(AugmentationConfig(enabled=False)).layers


def test_augmentation_config_errors():
    with pytest.raises(ValueError, match="min_crop_area must be in"):
        AugmentationConfig(min_crop_area=0.0)
    with pytest.raises(ValueError, match="hue must be in"):
        AugmentationConfig(hue=0.8)


def test_training_config_defaults_are_the_reviews_and_errors_name_the_field():
    cfg = training.TrainingConfig()
    assert (cfg.learning_rate, cfg.momentum, cfg.weight_decay, cfg.batch_size, cfg.max_epochs) == (1e-3, 0.9, 1e-3,
                                                                                                   32, 100)
    assert (cfg.plateau_patience, cfg.plateau_factor, cfg.min_learning_rate, cfg.early_stopping_patience,
            cfg.tta) == (10, 0.1, 1e-5, 22, 50)
    with pytest.raises(ValueError, match="training.class_balance must be one of"):
        training.TrainingConfig(class_balance="smote")
    with pytest.raises(ValueError, match="training.tta must be an integer >= 1"):
        training.TrainingConfig(tta=0)


def test_class_weights_golden():
    assert training.class_weights([0, 0, 0, 1], 3) == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}


def test_oversampling_balances_the_stream():
    images = np.zeros((40, 4, 4, 3), np.uint8)
    labels = np.array([0] * 36 + [1] * 4)
    ds = training._train_stream(images, labels, training.TrainingConfig(class_balance="oversample", batch_size=50),
                                2, None, seed=0)
    seen = np.concatenate([y.numpy() for _, y in ds.take(8)])
    assert abs(seen.mean() - 0.5) < 0.06
    plain = training._train_stream(images, labels, training.TrainingConfig(batch_size=40), 2, None, seed=0)
    assert next(iter(plain))[1].numpy().mean() == pytest.approx(0.1)


def test_train_classifier_selects_on_validation_and_uses_the_step_budget():
    keras.utils.set_random_seed(0)
    x, y = _separable(64)
    vx, vy = _separable(32, seed=1)
    model, _ = build_classifier(ClassifierConfig(filters=(4, 8), dropout=0.0), 16, 3, 2)
    cfg = training.TrainingConfig(learning_rate=0.05, batch_size=16, max_epochs=3, plateau_patience=1,
                                  early_stopping_patience=2, tta=1)
    result = training.train_classifier(model, x, y, vx, vy, cfg, reference_size=32, seed=0)
    assert result.steps_per_epoch == 2  # budget "steps": ceil(32 / 16) whatever the training-set size
    losses = result.history["val_loss"]
    assert result.best_epoch == int(np.argmin(losses)) + 1 and result.best_value == pytest.approx(min(losses))
    probs = training.predict_probabilities(model, vx)
    assert probs.shape == (32, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == vy).mean() > 0.8
    # the restored weights are the best validation epoch's: its loss is reproduced
    assert model.evaluate(x=(vx.astype(np.float32) / 127.5 - 1), y=vy, verbose=0)[0] == pytest.approx(
        result.best_value, rel=1e-4)
    epochs = training.train_classifier(model, x, y, vx, vy, dataclasses.replace(cfg, budget="epochs", max_epochs=1),
                                       reference_size=32)
    assert epochs.steps_per_epoch == 4


def test_test_time_augmentation_averages_replicas():
    model, _ = build_classifier(ClassifierConfig(filters=(4, 8)), 16, 3, 2)
    x, _ = _separable(8)
    augment = conventional_augmentation(AugmentationConfig(), seed=0)
    plain = training.predict_probabilities(model, x, augment, tta=1)
    np.testing.assert_allclose(plain, model.predict(x.astype(np.float32) / 127.5 - 1, verbose=0), atol=1e-6)
    tta = training.predict_probabilities(model, x, augment, tta=3)
    assert tta.shape == (8, 2) and np.allclose(tta.sum(1), 1, atol=1e-5) and not np.allclose(tta, plain)


def test_train_classifier_refuses_empty_validation():
    model, _ = build_classifier(ClassifierConfig(filters=(4,)), 8, 3, 2)
    x, y = _separable(4, size=8)
    with pytest.raises(ValueError, match="model selection reads the validation split"):
        training.train_classifier(model, x, y, x[:0], y[:0], training.TrainingConfig())


def _graph_constants(ds):
    """(serialized graph bytes, largest constant in bytes) of a dataset's graph, functions included."""
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    sizes = [len(n.attr["value"].tensor.tensor_content) + len(n.attr["value"].tensor.string_val)
             + 8 * len(n.attr["value"].tensor.int64_val) for n in nodes if n.op == "Const"]
    return graph.ByteSize(), max(sizes, default=0)


def test_host_images_never_embed_the_arrays_in_the_dataset_graph():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    labels = np.arange(64) % 2
    stream = training._train_stream(images, labels, training.TrainingConfig(batch_size=8), 2, None, seed=0)
    # the same order as shuffling the (image, label) pairs themselves with that seed
    reference = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(64, seed=0).repeat().batch(8)
    for (x, y), (rx, ry) in zip(stream.take(10), reference.take(10)):
        np.testing.assert_allclose(x.numpy(), rx.numpy() / 127.5 - 1.0, atol=1e-6)
        np.testing.assert_array_equal(y.numpy(), ry.numpy())


@pytest.mark.parametrize("balance", ["none", "oversample"])
def test_the_dataset_graph_does_not_grow_with_the_arrays(balance):
    # Paper scale (review Sec. 3.1: 14,805 images at 299 px, 4 GB) must not embed the pixels, the labels or an
    # index array as graph constants (tf.data refuses constants over 2 GB): the graph of 16 images and of 4,096
    # is the same, and no constant in it is larger than one batch of images.
    cfg = training.TrainingConfig(batch_size=8, class_balance=balance)
    augment = conventional_augmentation(AugmentationConfig(rotation_degrees=10.0), seed=0)
    batch_bytes = cfg.batch_size * 16 * 16 * 3
    measured = []
    for n in (16, 4096):
        images = np.zeros((n, 16, 16, 3), np.uint8)
        labels = np.arange(n) % 3
        streams = [training._train_stream(images, labels, cfg, 3, augment, seed=0)]
        if balance == "none":  # the prediction streams do not depend on the class balance
            streams += [training.prediction_stream(images, augment, tta=5, batch_size=8),
                        training.prediction_stream(images, None, tta=1, batch_size=8)]
        measured.append([_graph_constants(ds) for ds in streams])
        for size, largest in measured[-1]:
            assert largest < batch_bytes, (n, size, largest)
    for (small, _), (large, _) in zip(*measured):
        assert abs(large - small) <= 64, (small, large)  # a few digits of n, nothing per image


def test_arrays_beyond_tf_datas_2gb_constant_limit_stream():
    # 30,000 images at 299 px: 8 GB as an array (a zero-stride view here, so the test needs no RAM), 4x the
    # 2 GB that from_tensor_slices could embed. Batches come out with the right labels.
    image = np.arange(299 * 299 * 3, dtype=np.uint32).astype(np.uint8).reshape(1, 299, 299, 3)
    images = np.broadcast_to(image, (30000, 299, 299, 3))
    assert images.nbytes > 2 ** 31 * 3
    labels = np.arange(30000) % 2
    stream = training._train_stream(images, labels, training.TrainingConfig(batch_size=4), 2, None, seed=0)
    x, y = next(iter(stream))
    assert x.shape == (4, 299, 299, 3) and y.shape == (4,)
    np.testing.assert_allclose(x.numpy()[0], image[0] / 127.5 - 1.0, atol=1e-6)
    probs = training.predict_probabilities(MeanPixel(), training.Rows(images[:6], (images, [29999])))
    assert probs.shape == (7, 2)


class MeanPixel(keras.Model):
    """Predicts (mean pixel, 1 - mean pixel): enough to push batches through ``predict``."""

    def call(self, x):
        m = keras.ops.mean((x + 1.0) / 2.0, axis=(1, 2, 3))[:, None]
        return keras.ops.concatenate([m, 1.0 - m], axis=1)


def test_rows_read_several_arrays_as_one_without_copying():
    a = np.broadcast_to(np.arange(5, dtype=np.uint8)[:, None, None, None], (5, 2, 2, 1)).copy()
    b = np.broadcast_to(100 + np.arange(3, dtype=np.uint8)[:, None, None, None], (3, 2, 2, 1)).copy()
    rows = training.Rows((a, [4, 0, 2]), b)
    assert len(rows) == 6 and rows.shape == (6, 2, 2, 1) and rows.dtype == np.uint8
    assert rows[np.array([0, 1, 2, 3, 5])][:, 0, 0, 0].tolist() == [4, 0, 2, 100, 102]
    assert rows.parts[0][0] is a  # referenced, not copied
    with pytest.raises(ValueError, match="same image shape and dtype"):
        training.Rows(a, np.zeros((2, 3, 3, 1), np.uint8))
