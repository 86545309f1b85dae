import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.gans import ScoreGuidedGAN, footnote3_schedule
from keras_medgan.gans.score_guided_gan import LOSS_NAMES
from keras_medgan.networks import dcgan_discriminator, dcgan_generator, domain_classifier

SIZE, LATENT, CLASSES = 32, 4, 2


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int32) % CLASSES
    images = np.where(labels[:, None, None, None] == 1, 0.6, -0.6) + rng.normal(0, 0.05, (n, SIZE, SIZE, 1))
    return {"image": tf.constant(images, tf.float32), "label": tf.constant(labels)}


def _controlled_classifier(kernel, bias):
    """Probabilities fixed by a frozen Dense on the image mean: softmax(mean(x) * kernel + bias).

    A trainable 1x1 conv in front (initialised to the identity) gives C weights to update and a 4-D
    layer for the style features; with a zero Dense kernel the output ignores it.
    """
    inputs = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    dense = keras.layers.Dense(CLASSES, activation="softmax", name="probs",
                               kernel_initializer=keras.initializers.Constant(np.asarray(kernel, np.float32)),
                               bias_initializer=keras.initializers.Constant(np.asarray(bias, np.float32)))
    model = keras.Model(inputs, dense(x))
    dense.trainable = False
    return model


def _gan(classifier=None, schedule=((0, 1, 1),), feature_model=None, **compile_kw):
    keras.utils.set_random_seed(1)
    classifier = classifier or domain_classifier(SIZE, 1, CLASSES, filters=(4, 8), feature_dim=8)
    gan = ScoreGuidedGAN(dcgan_generator(SIZE, 1, latent_dim=LATENT, base_filters=4),
                         dcgan_discriminator(SIZE, 1, base_filters=4), classifier, latent_dim=LATENT,
                         num_classes=CLASSES, feature_model=feature_model, seed=3)
    gan.compile(keras.optimizers.Adam(5e-4, weight_decay=1e-3), keras.optimizers.Adam(1e-3, weight_decay=1e-3),
                keras.optimizers.Adam(5e-4, weight_decay=1e-3), schedule=schedule, **compile_kw)
    return gan


def test_train_step_gives_finite_values_for_every_tracker_and_updates_all_three_networks():
    gan = _gan()
    assert gan.style_source == "classifier"
    assert gan.style_layers == ["block1_relu2", "block2_relu2", "block2_pool"]
    before = {name: [w.numpy().copy() for w in net.trainable_weights]
              for name, net in (("g", gan.generator), ("d", gan.discriminator), ("c", gan.classifier))}
    logs = gan.train_step(_batch())
    assert set(logs) == set(LOSS_NAMES)
    assert all(np.isfinite(float(v)) for v in logs.values()), logs
    for key in ("adversarial", "mmd", "style", "content"):
        assert float(logs[f"loss/g/{key}"]) != 0.0, key
    assert 0.0 <= float(logs["loss/g/is"]) <= math.log(CLASSES) + 1e-6
    w = gan.guidance_weights
    expected = (w["delta"] * logs["loss/g/adversarial"] + w["alpha"] * logs["loss/g/is"]
                + w["beta"] * logs["loss/g/mmd"] + w["eta"] * logs["loss/g/style"]
                + w["gamma"] * logs["loss/g/content"])
    assert float(logs["loss/g/total"]) == pytest.approx(float(expected), rel=1e-5)
    for name, net in (("g", gan.generator), ("d", gan.discriminator), ("c", gan.classifier)):
        assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before[name], net.trainable_weights)), name
    assert int(gan.step_counter.numpy()) == 1
    assert gan.guidance_weights == {"alpha": -0.25, "beta": 3.0, "gamma": 0.001, "eta": 0.015, "delta": 1.0,
                                    "lambda_": 0.5, "tau": 1.0, "xi": 0.125}
    assert gan.threshold == 0.75


@pytest.mark.parametrize("bias, rate", [((0.0, 0.0), 0.0), ((5.0, 0.0), 1.0)])
def test_pseudo_label_rate_follows_the_threshold_in_a_train_step(bias, rate):
    """Probabilities 0.5 everywhere (below t = 0.75): no fake reaches C; 0.9933 everywhere: all do."""
    gan = _gan(_controlled_classifier(np.zeros((1, CLASSES)), bias))
    logs = gan.train_step(_batch())
    assert float(logs["pseudo_label_rate"]) == rate
    confidence = 1 / (1 + math.exp(-bias[0])) if rate else 0.5
    assert float(logs["loss/c/pseudo"]) == pytest.approx(-math.log(confidence) if rate else 0.0, abs=1e-5)
    assert float(logs["loss/c/total"]) == pytest.approx(
        float(logs["loss/c/real"]) + 0.125 * float(logs["loss/c/pseudo"]), rel=1e-6)


def test_only_fakes_at_or_above_the_threshold_reach_c_weighted_by_xi():
    """p(class 0) = sigmoid(2 mean(x)); fakes with means 0.3, 0.8, -0.8, 0 have confidences .646, .832, .832, .5."""
    gan = _gan(_controlled_classifier([[1.0, -1.0]], [0.0, 0.0]), xi=0.125, tau=2.0)
    fake = tf.constant(np.array([0.3, 0.8, -0.8, 0.0], np.float32)[:, None, None, None] * np.ones((1, SIZE, SIZE, 1)),
                       tf.float32)
    real = tf.zeros((4, SIZE, SIZE, 1))  # p = (0.5, 0.5): CE = log 2 whatever the label
    labels = tf.constant([0, 1, -1, 1])  # -1: unlabelled, left out of the real loss
    terms = gan.classifier_loss_terms(real, labels, fake, training=False)
    kept_ce = -math.log(1 / (1 + math.exp(-1.6)))  # both kept fakes, each with its own argmax label
    assert float(terms["rate"]) == 0.5
    assert float(terms["pseudo"]) == pytest.approx(2 * kept_ce / 4, abs=1e-5)
    assert float(terms["real"]) == pytest.approx(math.log(2), abs=1e-6)
    assert float(terms["total"]) == pytest.approx(2.0 * (math.log(2) + 0.125 * 2 * kept_ce / 4), abs=1e-5)
    gan.compile(gan.g_optimizer, gan.d_optimizer, gan.c_optimizer, threshold=0.9)
    assert float(gan.classifier_loss_terms(real, labels, fake, training=False)["pseudo"]) == 0.0


def test_phase_schedule_sets_the_number_of_g_and_d_updates_in_a_compiled_step():
    gan = _gan(schedule=((0, 3, 1), (2, 1, 3), (3, 1, 1)))
    step = tf.function(gan.train_step)
    expected_counts = [(3, 1), (6, 2), (7, 5), (8, 6)]
    batch = _batch()
    for i, (g, d) in enumerate(expected_counts):
        logs = step(batch)
        assert (int(gan.g_optimizer.iterations), int(gan.d_optimizer.iterations)) == (g, d), f"after step {i}"
        assert int(gan.c_optimizer.iterations) == i + 1
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert [tuple(int(v) for v in gan.phase_steps(s)) for s in (0, 1, 2, 3, 100)] == [(3, 1), (3, 1), (1, 3),
                                                                                        (1, 1), (1, 1)]


def test_footnote3_schedule_and_schedule_validation():
    assert footnote3_schedule(300) == ((0, 3, 1), (100, 1, 3), (200, 1, 1))
    gan = _gan()
    for bad in [((1, 1, 1),), ((0, 1, 1), (0, 2, 1)), ((0, 0, 1),), ((0, 1),), ()]:
        with pytest.raises(ValueError, match="schedule"):
            gan.compile(gan.g_optimizer, gan.d_optimizer, gan.c_optimizer, schedule=bad)
    with pytest.raises(ValueError, match="threshold"):
        gan.compile(gan.g_optimizer, gan.d_optimizer, gan.c_optimizer, threshold=0.0)
    with pytest.raises(ValueError, match="total_steps"):
        footnote3_schedule(2)


def test_config_round_trip_records_the_style_source():
    gan = _gan()
    clone = ScoreGuidedGAN.from_config(gan.get_config())
    assert clone.get_config()["style_source"] == "classifier"
    assert clone.style_layers == gan.style_layers and clone.latent_dim == LATENT and clone.num_classes == CLASSES
    assert clone.seed == 3

    feature_model = keras.Sequential([keras.Input((SIZE, SIZE, 1)), keras.layers.Conv2D(3, 3, name="phi")])
    gan = ScoreGuidedGAN(dcgan_generator(SIZE, 1, latent_dim=LATENT, base_filters=4),
                         dcgan_discriminator(SIZE, 1, base_filters=4),
                         domain_classifier(SIZE, 1, CLASSES, filters=(4,), feature_dim=4),
                         latent_dim=LATENT, num_classes=CLASSES, feature_model=feature_model)
    config = gan.get_config()
    assert config["style_source"] == "feature_model" and config["style_layers"] is None
    clone = ScoreGuidedGAN.from_config(config)
    assert clone.style_source == "feature_model"
    assert [f.shape for f in clone.style_features(tf.zeros((2, SIZE, SIZE, 1)))] == [(2, SIZE - 2, SIZE - 2, 3)]


def test_constructor_rejects_a_class_count_that_disagrees_with_the_classifier():
    with pytest.raises(ValueError, match="3 classes"):
        ScoreGuidedGAN(dcgan_generator(SIZE, 1, latent_dim=LATENT, base_filters=4),
                       dcgan_discriminator(SIZE, 1, base_filters=4),
                       domain_classifier(SIZE, 1, 3, filters=(4,), feature_dim=4), latent_dim=LATENT, num_classes=2)


def test_test_step_reports_validation_losses_without_updating_anything():
    gan = _gan()
    weights = [v.numpy().copy() for v in gan.variables]
    first = {k: float(v) for k, v in gan.test_step(_batch(6, seed=2)).items()}
    assert "loss/g/content" not in first and not any("grad" in k for k in first)
    assert {"loss/d/total", "loss/c/real", "loss/c/pseudo", "pseudo_label_rate", "loss/g/mmd",
            "loss/g/style"} <= set(first)
    assert all(np.isfinite(v) for v in first.values()), first
    w = gan.guidance_weights
    assert first["loss/g/total"] == pytest.approx(
        w["delta"] * first["loss/g/adversarial"] + w["alpha"] * first["loss/g/is"] + w["beta"] * first["loss/g/mmd"]
        + w["eta"] * first["loss/g/style"], rel=1e-5)
    for before, v in zip(weights, gan.variables):
        np.testing.assert_array_equal(before, v.numpy())
    for tracker in gan.metrics:
        tracker.reset_state()
    again = {k: float(v) for k, v in gan.test_step(_batch(6, seed=2)).items()}
    assert again == pytest.approx(first)  # fixed noise: the same batch gives the same losses
