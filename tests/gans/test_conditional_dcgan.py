import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.gans import ConditionalDCGAN
from keras_medgan.gans._steps import replica_normal
from keras_medgan.gans.conditional_dcgan import LOSS_NAMES
from keras_medgan.losses import gradient_penalty, wasserstein_discriminator_loss
from keras_medgan.networks import dcgan_discriminator, dcgan_generator

SIZE, LATENT, CLASSES = 32, 8, 2


def _batch(n=4, seed=0):
    """Class 0 dark, class 1 bright: a conditional G has something to learn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int32) % CLASSES
    images = np.where(labels[:, None, None, None] == 1, 0.7, -0.7) + rng.normal(0, 0.05, (n, SIZE, SIZE, 1))
    return {"image": tf.constant(images, tf.float32), "label": tf.constant(labels)}


def _gan(gan_loss="vanilla", norm=None, conditioning="label_maps", spectral_norm=False, lr=2e-4, **compile_kw):
    keras.utils.set_random_seed(1)
    norm = norm or ("layer" if gan_loss == "wgan-gp" else "batch")
    gan = ConditionalDCGAN(
        dcgan_generator(SIZE, 1, latent_dim=LATENT, num_classes=CLASSES, base_filters=8),
        dcgan_discriminator(SIZE, 1, num_classes=CLASSES, base_filters=8, conditioning=conditioning,
                            spectral_norm=spectral_norm, norm=norm),
        latent_dim=LATENT, num_classes=CLASSES, seed=3)
    gan.compile(keras.optimizers.Adam(lr, beta_1=0.5), keras.optimizers.Adam(lr, beta_1=0.5), gan_loss=gan_loss,
                **compile_kw)
    return gan


def _weights(model):
    return [w.numpy().copy() for w in model.trainable_weights]


@pytest.mark.parametrize("gan_loss", ["vanilla", "hinge", "wgan-gp"])
def test_train_step_updates_both_networks_and_reports_every_tracker(gan_loss):
    gan = _gan(gan_loss)
    g0, d0 = _weights(gan.generator), _weights(gan.discriminator)
    logs = gan.train_step(_batch())
    assert set(logs) == set(LOSS_NAMES)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert (float(logs["loss/d/gp"]) > 0) == (gan_loss == "wgan-gp")
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(g0, gan.generator.trainable_weights))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(d0, gan.discriminator.trainable_weights))
    assert int(gan.g_optimizer.iterations) == 1 and int(gan.d_optimizer.iterations) == 1


def test_wgan_gp_discriminator_loss_is_wasserstein_plus_ten_times_the_penalty():
    gan = _gan("wgan-gp", conditioning="projection", spectral_norm=True)
    assert gan.gp_weight == 10.0  # Gulrajani et al. 2017; paper 001 "coefficient=10"
    batch = _batch()
    real, labels = batch["image"], batch["label"]
    fake = gan.generator({"z": tf.random.normal((4, LATENT)), "label": labels}, training=False)
    alpha = tf.constant([0.1, 0.5, 0.9, 0.3])
    terms = gan.discriminator_loss_terms(real, fake, labels, training=False, alpha=alpha)

    def critic(x):
        return gan.discriminator({"image": x, "label": labels}, training=False)

    penalty = gradient_penalty(critic, real, fake, alpha)
    adversarial = wasserstein_discriminator_loss(critic(real), critic(fake))
    assert float(terms["gp"]) == pytest.approx(float(penalty), rel=1e-5) and float(penalty) > 0
    assert float(terms["total"]) == pytest.approx(float(adversarial + 10.0 * penalty), rel=1e-5)
    assert float(terms["d_real"]) == pytest.approx(float(tf.reduce_mean(critic(real))), rel=1e-5)


def test_n_critic_updates_d_that_many_times_per_g_update():
    gan = _gan("wgan-gp", n_critic=3)
    gan.train_step(_batch())
    assert int(gan.d_optimizer.iterations) == 3 and int(gan.g_optimizer.iterations) == 1


def test_gradient_penalty_can_join_bce_as_paper_001_lists_them():
    gan = _gan("vanilla", norm="none", gp_weight=10.0)
    assert float(gan.train_step(_batch())["loss/d/gp"]) > 0


@pytest.mark.parametrize("kw, message", [
    ({"gan_loss": "wgan-gp", "norm": "batch"},
     ("The gradient penalty (gan_loss='wgan-gp', gp_weight=10.0) is per sample and is not valid for a "
      "discriminator with batch normalization (Gulrajani et al. 2017, Sec. 4), which this one has: block_2_norm, "
      "block_3_norm. Build it with `dcgan_discriminator(..., norm='layer')` or `norm='none'`.")),
    ({"gan_loss": "vanilla", "norm": "batch", "gp_weight": 1.0}, "is not valid for a discriminator with batch norm"),
    ({"gan_loss": "wgan-gp", "gp_weight": 0.0}, "`gan_loss='wgan-gp'` needs `gp_weight` > 0"),
    ({"gan_loss": "wgan"},
     "`gan_loss` must be one of ('vanilla', 'lsgan', 'hinge', 'wgan-gp'). Received: gan_loss='wgan'"),
    ({"n_critic": 0}, "`n_critic` must be an integer >= 1. Received: n_critic=0"),
    ({"gp_weight": -1.0}, "`gp_weight` must be >= 0. Received: gp_weight=-1.0"),
])
def test_compile_rejects_bad_settings(kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _gan(**kw)


def test_constructor_checks_the_generator_against_latent_dim_and_num_classes():
    generator = dcgan_generator(SIZE, 1, latent_dim=LATENT, num_classes=CLASSES, base_filters=8)
    discriminator = dcgan_discriminator(SIZE, 1, num_classes=CLASSES, base_filters=8)
    with pytest.raises(ValueError, match=re.escape("`latent_dim` must match the generator's `z` input (8). "
                                                   "Received: latent_dim=100")):
        ConditionalDCGAN(generator, discriminator, latent_dim=100, num_classes=CLASSES)
    with pytest.raises(ValueError, match=re.escape("With num_classes=0 the generator must take `z` alone")):
        ConditionalDCGAN(generator, discriminator, latent_dim=LATENT, num_classes=0)


def test_test_step_reuses_the_loss_helpers_without_updating_and_is_deterministic():
    gan = _gan("wgan-gp")
    before = [w.numpy().copy() for w in gan.weights]
    first = {k: float(v) for k, v in gan.test_step(_batch()).items()}
    assert set(first) == set(LOSS_NAMES) - {"grad_norm/g", "grad_norm/d"} and first["loss/d/gp"] > 0
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, gan.weights))  # seed state included
    for tracker in gan.metrics:
        tracker.reset_state()
    assert {k: float(v) for k, v in gan.test_step(_batch()).items()} == first  # same noise every evaluation


def test_the_generator_learns_the_class_conditional_brightness():
    """Overfit a fixed 8-image batch: class 1 bright, class 0 dark; G must follow the label it is given."""
    gan = _gan("vanilla", lr=2e-3)
    labels = [0] * 8 + [1] * 8
    before = gan.generate(labels, seed=5)
    assert abs(before[8:].mean() - before[:8].mean()) < 0.01
    history = gan.fit(tf.data.Dataset.from_tensors(_batch(8)).repeat(), steps_per_epoch=100, epochs=1, verbose=0,
                      shuffle=False)
    after = gan.generate(labels, seed=5)
    assert after[:8].mean() < -0.2 and after[8:].mean() > 0.2, (after[:8].mean(), after[8:].mean())
    assert history.history["d_real"][-1] > history.history["d_fake"][-1]  # D separates real from generated


def test_generate_is_reproducible_and_validates_labels():
    gan = _gan()
    images = gan.generate([0, 1, 1], seed=7)
    assert images.shape == (3, SIZE, SIZE, 1) and images.dtype == np.float32
    assert images.min() >= -1 and images.max() <= 1
    np.testing.assert_allclose(images, gan.generate([0, 1, 1], seed=7, batch_size=2), rtol=1e-3, atol=1e-9)
    assert not np.array_equal(images, gan.generate([0, 1, 1], seed=8))
    state = gan.seed_generator.state.numpy().copy()
    gan.generate([0], seed=None)
    np.testing.assert_array_equal(gan.seed_generator.state.numpy(), state)  # the training stream is untouched
    with pytest.raises(ValueError, match=re.escape("`labels` must be in [0, 2) (num_classes=2). Received: [-1, 2]")):
        gan.generate([0, 2, -1])


def test_unconditional_model_takes_images_alone():
    keras.utils.set_random_seed(1)
    gan = ConditionalDCGAN(dcgan_generator(SIZE, 1, latent_dim=LATENT, base_filters=8),
                           dcgan_discriminator(SIZE, 1, base_filters=8, norm="none"), latent_dim=LATENT, seed=0)
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5), gan_loss="hinge")
    logs = gan.train_step({"image": _batch()["image"]})
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert gan.generate(3, seed=0).shape == (3, SIZE, SIZE, 1)


def test_config_and_keras_round_trip(tmp_path):
    gan = _gan("wgan-gp", conditioning="projection", spectral_norm=True)
    gan.train_step(_batch())
    clone = ConditionalDCGAN.from_config(gan.get_config())
    assert clone.generator.get_config() == gan.generator.get_config()
    assert (clone.latent_dim, clone.num_classes, clone.seed) == (LATENT, CLASSES, 3)
    path = str(tmp_path / "cdcgan.keras")
    gan.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ConditionalDCGAN)
    # The noise stream's state is a model variable, so checkpoints of `model.variables` resume it exactly.
    assert any(v is gan.seed_generator.state for v in gan.variables)
    np.testing.assert_allclose(loaded.generate([0, 1], seed=2), gan.generate([0, 1], seed=2), atol=1e-6)
    batch = _batch()
    np.testing.assert_allclose(loaded.discriminator(batch, training=False), gan.discriminator(batch, training=False),
                               atol=1e-6)


def test_replicas_draw_different_slices_of_one_global_noise_draw():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    per_replica = strategy.run(tf.function(lambda: replica_normal(3, 4, 11)))
    parts = [t.numpy() for t in strategy.experimental_local_results(per_replica)]
    np.testing.assert_array_equal(np.concatenate(parts), keras.random.normal((6, 4), seed=11).numpy())
    assert not np.array_equal(parts[0], parts[1])


def test_train_step_under_mirrored_strategy_with_two_replicas():
    # Not the default collective all-reduce: a second strategy training in this process would reuse its collective
    # instance keys and abort with "Shape mismatch in the collective instance" (tensorflow/tensorflow#62790).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        gan = _gan("wgan-gp", conditioning="projection", spectral_norm=True)
    ds = tf.data.Dataset.from_tensors(_batch()).repeat()
    history = gan.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert int(keras.ops.convert_to_numpy(gan.g_optimizer.iterations)) == 2
    assert int(keras.ops.convert_to_numpy(gan.d_optimizer.iterations)) == 2
    assert all(np.isfinite(values[-1]) for values in history.history.values())
    assert history.history["loss/d/gp"][-1] > 0


@pytest.mark.parametrize("policy, gan_loss", [("mixed_bfloat16", "wgan-gp"), ("mixed_float16", "vanilla")])
def test_train_step_under_mixed_precision(policy, gan_loss):
    keras.mixed_precision.set_global_policy(policy)
    try:
        gan = _gan(gan_loss, conditioning="projection", spectral_norm=True)
        logs = gan.train_step(_batch())
        fake = gan.generate([0, 1], seed=0)
        logits = gan.discriminator(_batch(), training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert fake.dtype == np.float32 and logits.dtype == "float32"  # output layers stay float32 (DESIGN.md)
    assert all(np.isfinite(float(v)) for v in logs.values())
    wrapped = isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (policy == "mixed_float16")  # loss scaling only where float16 needs it
