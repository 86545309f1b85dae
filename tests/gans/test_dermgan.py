import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_medgan.data import semantic_maps as sm
from keras_medgan.gans import DermGAN
from keras_medgan.gans.dermgan import LOSS_NAMES
from keras_medgan.networks.patch_discriminator import patch_discriminator
from keras_medgan.networks.unet_generator import unet_generator

SIZE = 32


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    boxes = np.zeros((n, 2, 4), np.float32)
    boxes[:, 0] = [0.25, 0.25, 0.75, 0.75]
    maps = sm.semantic_map(tf.constant([1, 3, 5, 6][:n]), boxes, tf.constant([[2, 0]] * n),
                           tf.constant([1, 1, 0, 1][:n]), 4, SIZE)
    images = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
    images = tf.where(maps[..., 2:] > 0, tf.constant(0.8), images * 0.2 - 0.3)  # bright lesion on a darker skin
    return {"semantic_map": maps, "image": images}


def _gan(base=8, g_lr=2e-4, d_lr=2e-4, **compile_kw):
    keras.utils.set_random_seed(1)
    gan = DermGAN(unet_generator(SIZE, base_filters=base), patch_discriminator(SIZE, base_filters=base, n_layers=2))
    kw = dict(lambda_l1=100.0, lambda_roi=100.0, lambda_fm=10.0)
    kw.update(compile_kw)
    gan.compile(keras.optimizers.Adam(g_lr, beta_1=0.5), keras.optimizers.Adam(d_lr, beta_1=0.5), **kw)
    return gan


def test_train_step_updates_both_networks_and_reports_every_term():
    gan = _gan()
    batch = _batch()
    g0 = [w.numpy().copy() for w in gan.generator.trainable_weights]
    d0 = [w.numpy().copy() for w in gan.discriminator.trainable_weights]
    logs = gan.train_step(batch)
    assert set(logs) == set(LOSS_NAMES)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(g0, gan.generator.trainable_weights))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(d0, gan.discriminator.trainable_weights))
    assert int(gan.g_optimizer.iterations) == 1 and int(gan.d_optimizer.iterations) == 1


def test_total_is_the_weighted_sum_of_the_terms():
    gan = _gan(lambda_l1=3.0, lambda_roi=5.0, lambda_fm=7.0, lambda_gan=2.0)
    batch = _batch()
    fake = gan.generator(batch["semantic_map"], training=False)
    t = gan.generator_loss_terms(batch["semantic_map"], batch["image"], fake, training=False)
    expect = 2 * t["gan"] + 3 * t["l1"] + 5 * t["l1_roi"] + 7 * t["feature_matching"]
    assert float(t["total"]) == pytest.approx(float(expect), rel=1e-6)


def test_ablations_zero_their_terms():
    gan = _gan(lambda_fm=0.0, lambda_roi=0.0)
    batch = _batch()
    fake = gan.generator(batch["semantic_map"], training=False)
    t = gan.generator_loss_terms(batch["semantic_map"], batch["image"], fake, training=False)
    assert float(t["feature_matching"]) == 0.0
    assert float(t["total"]) == pytest.approx(float(t["gan"] + 100 * t["l1"]), rel=1e-6)


def test_test_step_reuses_the_loss_helpers_without_updating():
    gan = _gan()
    before = [w.numpy().copy() for w in gan.generator.weights]
    logs = gan.test_step(_batch())
    assert "loss/g/l1_roi" in logs and "grad_norm/g" not in logs
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, gan.generator.weights))


@pytest.mark.parametrize("kw, message", [
    (dict(lambda_roi=-1.0), "`lambda_roi` must be >= 0. Received: lambda_roi=-1.0"),
    (dict(gan_loss="wgan"), "`gan_loss` must be one of"),
    (dict(update_rule="joint"), "`update_rule` must be one of"),
])
def test_compile_rejects_bad_settings(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _gan(**kw)


@pytest.mark.parametrize("update_rule", ["alternating", "simultaneous"])
def test_the_model_can_learn_l1_halves_on_a_fixed_batch(update_rule):
    gan = _gan(base=16, update_rule=update_rule)
    batch = _batch()
    ds = tf.data.Dataset.from_tensors(batch).repeat()
    first = float(gan.train_step(batch)["loss/g/l1"])
    gan.fit(ds, steps_per_epoch=200, epochs=1, verbose=0, shuffle=False)
    fake = gan.generator(batch["semantic_map"], training=True)
    last = float(tf.reduce_mean(tf.abs(fake - batch["image"])))
    assert last < 0.5 * first, (first, last)


def test_config_and_keras_round_trip(tmp_path):
    gan = DermGAN(unet_generator(SIZE, base_filters=4), patch_discriminator(SIZE, base_filters=4, n_layers=2))
    clone = DermGAN.from_config(gan.get_config())
    assert clone.generator.get_config() == gan.generator.get_config()
    maps = _batch()["semantic_map"]
    path = str(tmp_path / "dermgan.keras")
    gan.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, DermGAN)
    np.testing.assert_allclose(loaded.generator(maps, training=False), gan.generator(maps, training=False), atol=1e-6)


def test_train_step_under_mirrored_strategy_with_two_replicas():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        gan = _gan()
    ds = tf.data.Dataset.from_tensors(_batch()).repeat()
    history = gan.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert int(keras.ops.convert_to_numpy(gan.g_optimizer.iterations)) == 2
    assert np.isfinite(history.history["loss/g/total"][-1])


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_train_step_under_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        gan = _gan()
        logs = gan.train_step(_batch())
        fake = gan.generator(_batch()["semantic_map"], training=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert fake.dtype == "float32"  # G's output layer stays float32 (DESIGN.md)
    assert all(np.isfinite(float(v)) for v in logs.values())
    wrapped = isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (policy == "mixed_float16")  # loss scaling only where float16 needs it


@pytest.mark.parametrize("frozen", ["generator", "discriminator"])
def test_simultaneous_step_takes_both_gradients_at_the_same_weights(frozen):
    # With one network's learning rate at 0 the alternating step's second update sees the same weights as the
    # simultaneous step's, so the other network must come out identical; with both learning rates on, the
    # alternating G step sees the updated D and the two rules differ.
    lrs = {"g_lr": 0.0} if frozen == "generator" else {"d_lr": 0.0}
    moving = "discriminator" if frozen == "generator" else "generator"
    batch = _batch()
    after = {}
    for rule in ("alternating", "simultaneous"):
        gan = _gan(update_rule=rule, **lrs)
        logs = gan.train_step(batch)
        after[rule] = ([w.numpy() for w in getattr(gan, moving).trainable_weights],
                       [w.numpy() for w in getattr(gan, frozen).trainable_weights], logs)
    for a, b in zip(after["alternating"][0], after["simultaneous"][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(after["alternating"][1], after["simultaneous"][1]):
        np.testing.assert_array_equal(a, b)  # lr 0: untouched by either rule
    # The D side's logs agree in both cases; G's only when D is frozen (else alternating's G sees D_{t+1}).
    names = ("loss/d/total", "grad_norm/d") + (("loss/g/total", "grad_norm/g") if frozen == "discriminator" else ())
    for name in names:
        assert float(after["alternating"][2][name]) == pytest.approx(float(after["simultaneous"][2][name]), rel=1e-5)


def test_simultaneous_and_alternating_differ_when_both_networks_learn():
    batch = _batch()
    g_after = {}
    for rule in ("alternating", "simultaneous"):
        gan = _gan(update_rule=rule, d_lr=1e-2)
        gan.train_step(batch)
        g_after[rule] = np.concatenate([w.numpy().ravel() for w in gan.generator.trainable_weights])
    assert np.abs(g_after["alternating"] - g_after["simultaneous"]).max() > 1e-6
