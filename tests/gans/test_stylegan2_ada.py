"""StyleGAN2-ADA: argument checks, a traced fit with every phase, the host-side choice of compiled phase variants,
the EMA closed form, the ADA p controller, R1 through the model on a linear D, generation, resume state and two
MirroredStrategy replicas. 8-px models with 8 channels keep each trace to seconds."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.callbacks.checkpoint import restore_checkpoint, save_checkpoint
from keras_medgan.gans.stylegan2_ada import TRACKERS, VAL_TRACKERS, StyleGAN2ADA, ema_beta
from keras_medgan.networks.stylegan2 import stylegan2_discriminator, stylegan2_generator

RES, Z, CLASSES = 8, 8, 2
NET = dict(channel_base=64, channel_max=8, mapping_layers=1)


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": tf.constant(rng.uniform(-1, 1, (n, RES, RES, 3)).astype("float32")),
            "label": tf.constant(np.arange(n, dtype=np.int32) % CLASSES)}


def _generator(classes):
    return stylegan2_generator(RES, 3, num_classes=classes, z_dim=Z, w_dim=Z, **NET)


def _discriminator(classes):
    return stylegan2_discriminator(RES, 3, num_classes=classes, mbstd_group_size=2, **NET)


def _linear_discriminator():
    image = keras.Input((RES, RES, 3))
    return keras.Model(image, keras.layers.Dense(1)(keras.layers.Flatten()(image)))


def _model(classes=CLASSES, discriminator=None, g_optimizer=None, d_optimizer=None, **compile_kw):
    keras.utils.set_random_seed(0)
    model = StyleGAN2ADA(_generator(classes), discriminator or _discriminator(classes), seed=1)
    adam = lambda: keras.optimizers.Adam(0.002, beta_1=0.0, beta_2=0.99, epsilon=1e-8)  # noqa: E731
    compile_kw.setdefault("batch_size", 4)
    model.compile(g_optimizer or adam(), d_optimizer or adam(), **compile_kw)
    return model


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def _ema_weights(model):
    """g_ema's counterparts of G's trainable weights (g_ema is frozen, so its own trainable list is empty)."""
    pairs = list(zip(model.g_ema.variables, model.generator.variables))
    assert len(pairs) == len(model.generator.variables) and any(g.trainable for _, g in pairs)
    assert all(e.name == g.name and e.shape == g.shape for e, g in pairs)
    return [e for e, g in pairs if g.trainable]


def _g_weights(model):
    return [g for g in model.generator.variables if g.trainable]


def _changed(before, variables):
    return any(not np.array_equal(a, b) for a, b in zip(before, _values(variables)))


# ---------------------------------------------------------------------------------------------- arguments


def test_constructor_refuses_mismatched_or_foreign_networks():
    with pytest.raises(ValueError, match="num_classes=2 but the discriminator is unconditional"):
        StyleGAN2ADA(_generator(2), _linear_discriminator())
    with pytest.raises(ValueError, match="num_classes=0 but the discriminator is conditional"):
        StyleGAN2ADA(_generator(0), _discriminator(2))
    with pytest.raises(TypeError, match="StyleGAN2Generator"):
        StyleGAN2ADA(_linear_discriminator(), _linear_discriminator())


@pytest.fixture(scope="module")
def uncompiled():
    keras.utils.set_random_seed(0)
    return StyleGAN2ADA(_generator(0), _linear_discriminator())


@pytest.mark.parametrize("kwargs, message", [
    (dict(augment="bgcfn"), "`augment` must be one of"),
    (dict(r1_interval=0), "`r1_interval` must be an integer >= 1"),
    (dict(pl_interval=2.0), "`pl_interval` must be an integer >= 1"),
    (dict(ada_interval=True), "`ada_interval` must be an integer >= 1"),
    (dict(batch_size=0), "`batch_size` must be an integer >= 1"),
    (dict(r1_gamma=-1.0), "`r1_gamma` must be >= 0"),
    (dict(pl_weight=float("nan")), "`pl_weight` must be >= 0"),
    (dict(style_mixing_prob=1.5), r"`style_mixing_prob` must be in \[0, 1\]"),
    (dict(augment_p=-0.1), r"`augment_p` must be in \[0, 1\]"),
    (dict(ada_target=1.0), r"`ada_target` must be in \(0, 1\) or None"),
    (dict(steps_per_execution=2), "steps_per_execution must be 1"),
])
def test_compile_refuses_bad_values(uncompiled, kwargs, message):
    opt = keras.optimizers.Adam()
    with pytest.raises(ValueError, match=message):
        uncompiled.compile(opt, opt, **kwargs)


def test_ema_beta_half_life_and_ramp_up():
    beta = ema_beta(32, 10 ** 6, ema_kimg=10.0)
    assert beta ** (10_000 / 32) == pytest.approx(0.5, rel=1e-9)  # half-life: 10 kimg
    assert ema_beta(64, 0, ema_kimg=20.0) ** (20_000 / 64) == pytest.approx(0.5, rel=1e-9)
    assert ema_beta(32, 1000, 10.0, ema_rampup=0.05) == pytest.approx(0.5 ** (32 / 50))  # 1000 * 0.05 images
    assert ema_beta(32, 10 ** 6, 10.0, ema_rampup=0.05) == beta  # ramp-up over: 50 kimg > 10 kimg
    assert ema_beta(32, 0, 10.0, ema_rampup=0.05) == 0.0  # the first step copies G


# ---------------------------------------------------------------------------------------------- a traced fit


@pytest.fixture(scope="module")
def trained():
    """A conditional model after a 2-step fit with every phase on every step (one compiled variant)."""
    model = _model(r1_interval=1, pl_interval=1, augment="bgc", augment_p=0.2, ada_interval=1)
    before = {name: _values(getattr(model, name).trainable_variables) for name in ("generator", "discriminator")}
    before["g_ema"] = _values(_ema_weights(model))
    ds = tf.data.Dataset.from_tensors(_batch()).repeat()
    history = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    return model, history.history, before


def test_fit_runs_every_phase_and_advances_the_counters(trained):
    model, history, before = trained
    assert set(history) == set(TRACKERS)
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert history["loss/g/pl"][-1] > 0 and history["loss/d/r1"][-1] > 0
    assert _changed(before["generator"], model.generator.trainable_variables)
    assert _changed(before["discriminator"], model.discriminator.trainable_variables)
    assert int(model.step_counter.numpy()) == 2 and model.kimg == pytest.approx(2 * 4 / 1000)
    assert int(model.g_optimizer.iterations.numpy()) == 4  # G main + G reg, each its own Adam step, twice
    assert int(model.d_optimizer.iterations.numpy()) == 4  # D main + D reg
    assert float(model.pl_mean.numpy()) > 0
    assert np.any(model.generator.w_avg.numpy() != 0)
    # EMA: trainable weights moved towards G, buffers (w_avg, fixed noise) copied.
    assert _changed(before["g_ema"], _ema_weights(model))
    np.testing.assert_array_equal(model.g_ema.w_avg.numpy(), model.generator.w_avg.numpy())
    # ADA with ada_interval=1: p moved by +-batch / (500 kimg) per step from 0.2.
    steps = (float(model.ada_p.numpy()) - 0.2) / (4 / 500_000)
    assert steps == pytest.approx(round(steps), abs=1e-2) and abs(round(steps)) <= 2
    assert -1.0 <= history["ada/r_t"][-1] <= 1.0


def test_test_step_scores_reals_with_d_and_fakes_with_g_ema(trained):
    model, _, _ = trained
    batch = _batch(seed=5)
    for tracker in model.metrics:
        tracker.reset_state()
    logs = model.test_step(batch)
    assert set(logs) == set(VAL_TRACKERS) and all(np.isfinite(float(v)) for v in logs.values())
    real_logits = model.discriminator([batch["image"], tf.one_hot(batch["label"], CLASSES)], training=False)
    assert float(logs["scores/real"]) == pytest.approx(float(tf.reduce_mean(real_logits)), rel=1e-5)
    again = model.test_step(batch)  # EVAL_SEED and fixed noise: the same fakes, so the means do not move
    assert float(again["scores/fake"]) == pytest.approx(float(logs["scores/fake"]), rel=1e-5)


def test_generate_is_reproducible_independent_of_batch_size_and_checks_labels(trained):
    model, _, _ = trained
    labels = [0, 1, 1, 0, 1]
    images = model.generate(labels, seed=3, batch_size=2)
    assert images.shape == (5, RES, RES, 3) and images.dtype == np.float32
    np.testing.assert_allclose(model.generate(labels, seed=3, batch_size=64), images, atol=1e-5)
    np.testing.assert_array_equal(model.generate(labels, seed=3, batch_size=2), images)
    assert not np.allclose(model.generate(labels, seed=4), images)
    assert not np.allclose(model.generate([1, 0, 0, 1, 0], seed=3), images)  # the class matters
    assert model.generate(np.array([], np.int64), seed=0).shape == (0, RES, RES, 3)
    with pytest.raises(ValueError, match=r"must be in \[0, 2\).*Received: \[2, 5\]"):
        model.generate([0, 2, 5])
    for bad in ([[0, 1]], [0.5, 1.0], 3):
        with pytest.raises(ValueError, match="1-D sequence of class indices"):
            model.generate(bad)


def test_training_state_round_trips_through_a_checkpoint(trained, tmp_path):
    model, _, _ = trained
    model.ada_signs.update_state(tf.constant([1.0, -1.0, 1.0]))
    saved = _values(model.training_state())
    path = save_checkpoint(str(tmp_path), 2, {"state": model.training_state()})
    fresh = _model(augment_p=0.9)
    assert float(fresh.ada_p.numpy()) == pytest.approx(0.9)
    meta = restore_checkpoint(path, {"state": fresh.training_state()})
    assert meta["step"] == 2
    for a, b in zip(saved, _values(fresh.training_state())):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.step_counter.numpy()) == 2 and fresh.kimg == pytest.approx(0.008)
    assert float(fresh.ada_p.numpy()) == float(model.ada_p.numpy())
    assert float(fresh.pl_mean.numpy()) == float(model.pl_mean.numpy()) > 0
    assert float(fresh.ada_signs.result()) == pytest.approx(float(model.ada_signs.result()))
    # The restored noise streams draw what the original's would.
    draws = [keras.random.normal((3,), seed=m.seed_generator).numpy() for m in (model, fresh)]
    np.testing.assert_array_equal(draws[0], draws[1])
    model.ada_signs.reset_state()


# ---------------------------------------------------------------------------------------------- phase variants


@pytest.mark.parametrize("r1_interval, pl_interval, r1_gamma, sequence", [
    (2, 2, 1.0, [(True, True), (False, False), (True, True), (False, False)]),
    (4, 2, 1.0, [(True, True), (False, False), (True, False), (False, False)]),
    (1, 3, 0.0, [(True, False), (False, False), (False, False), (True, False)]),
])
def test_make_train_function_compiles_one_variant_per_phase_combination(monkeypatch, r1_interval, pl_interval,
                                                                         r1_gamma, sequence):
    model = _model(r1_interval=r1_interval, pl_interval=pl_interval, r1_gamma=r1_gamma, augment="none")
    traces, chosen = [], []

    def fake_phases(batch, g_reg, d_reg):  # a Python side effect runs once per trace
        traces.append((g_reg, d_reg))
        return {"loss/g/main": tf.reduce_mean(batch["image"])}

    reg_phases = model._reg_phases

    def recording_reg_phases(step):
        chosen.append(reg_phases(step))
        return chosen[-1]

    monkeypatch.setattr(model, "train_phases", fake_phases)
    monkeypatch.setattr(model, "_reg_phases", recording_reg_phases)
    model.fit(tf.data.Dataset.from_tensors(_batch()).repeat(), steps_per_epoch=4, epochs=1, verbose=0,
              shuffle=False)
    assert chosen == sequence
    assert sorted(traces) == sorted(set(sequence))  # each combination traced exactly once
    assert int(model.step_counter.numpy()) == 4 and model.kimg == pytest.approx(0.016)


# ---------------------------------------------------------------------------------------------- host updates


def test_update_ema_closed_form_and_buffer_copy():
    model = _model(0, _linear_discriminator())
    g, e = model.generator, model.g_ema
    e0 = _values(_ema_weights(model))
    for i, v in enumerate(_g_weights(model)):  # G perturbed by a known amount, then fixed
        v.assign(v + 0.1 * (i + 1))
    g.w_avg.assign(np.full(Z, 0.25, "float32"))
    target = _values(_g_weights(model))
    beta, n = 0.9, 3
    for _ in range(n):
        model.update_ema(beta)
    assert len(e0) == len(target) > 10
    for got, start, goal in zip(_values(_ema_weights(model)), e0, target):
        np.testing.assert_allclose(got, beta ** n * start + (1 - beta ** n) * goal, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(e.w_avg.numpy(), 0.25)  # buffers are copied, not averaged


def test_after_minibatch_applies_the_ema_beta_of_each_step():
    model = _model(0, _linear_discriminator(), batch_size=8, ema_kimg=10.0, ema_rampup=0.05, augment="none")
    for v in _g_weights(model):
        v.assign(v + 1.0)
    goal, e0 = _values(_g_weights(model)), _values(_ema_weights(model))
    assert len(goal) == len(e0) > 10
    model.step_counter.assign(1000)
    betas = [ema_beta(8, step * 8, 10.0, 0.05) for step in (1000, 1001, 1002)]
    assert betas[0] == pytest.approx(0.5 ** (8 / 400))  # ramp-up: 8000 images * 0.05
    for step in (1000, 1001, 1002):
        model.after_minibatch(step)
    decay = np.prod(betas)
    for got, start, target in zip(_values(_ema_weights(model)), e0, goal):
        np.testing.assert_allclose(got, target + decay * (start - target), rtol=1e-5, atol=1e-5)
    assert int(model.step_counter.numpy()) == 1003


def test_ada_controller_moves_p_by_batch_times_interval_over_ada_kimg():
    model = _model(0, _linear_discriminator(), batch_size=8, ada_kimg=1.0, ada_interval=1, augment_p=0.5)
    step = 8 * 1 / 1000.0
    model.ada_signs.update_state(tf.ones(4))  # r_t = 1 > 0.6: D too sure of the reals
    model.after_minibatch(0)
    assert float(model.ada_p.numpy()) == pytest.approx(0.5 + step, abs=1e-7)
    assert float(model.trackers["ada/r_t"].result()) == 1.0 and float(model.ada_signs.count.numpy()) == 0
    model.ada_signs.update_state(tf.constant([1.0, -1.0, -1.0, 1.0]))  # r_t = 0 < 0.6
    model.after_minibatch(1)
    assert float(model.ada_p.numpy()) == pytest.approx(0.5, abs=1e-7)
    model.ada_p.assign(0.003)
    model.ada_signs.update_state(-tf.ones(2))
    model.after_minibatch(2)
    assert float(model.ada_p.numpy()) == 0.0  # clipped at 0

    model.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), batch_size=8, ada_kimg=1.0, ada_interval=2,
                  augment_p=0.5)
    model.ada_signs.update_state(tf.ones(2))
    model.after_minibatch(0)
    assert float(model.ada_p.numpy()) == 0.5  # not an update step
    model.ada_signs.update_state(tf.constant([1.0, 0.0]))  # r_t over both minibatches: 3 / 4 > 0.6
    model.after_minibatch(1)
    assert float(model.ada_p.numpy()) == pytest.approx(0.5 + 2 * step, abs=1e-7)

    for fixed in (dict(ada_target=None), dict(augment="none")):
        model.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), batch_size=8, ada_kimg=1.0,
                      ada_interval=1, augment_p=0.5, **fixed)
        model.ada_signs.update_state(tf.ones(2))
        model.after_minibatch(0)
        assert float(model.ada_p.numpy()) == 0.5


def test_discriminator_reg_is_r1_on_a_linear_discriminator():
    # D(x) = sum(w * x) + b: ||grad_x D||^2 = ||w||^2 per image; the loss gamma / 2 * interval * ||w||^2 has the
    # gradient gamma * interval * w, so one SGD step scales w by (1 - lr * gamma * interval) and leaves b alone.
    gamma, interval, lr = 0.5, 4, 0.1
    model = _model(0, _linear_discriminator(), d_optimizer=keras.optimizers.SGD(lr), r1_gamma=gamma,
                   r1_interval=interval, augment="none")
    dense = model.discriminator.layers[-1]
    dense.bias.assign([0.3])
    w, b = dense.kernel.numpy().copy(), dense.bias.numpy().copy()
    real = _batch()["image"]
    penalty, norm, logits = model.discriminator_reg(real, None)
    assert float(penalty) == pytest.approx(float(np.sum(w ** 2)), rel=1e-5)
    assert float(norm) == pytest.approx(gamma * interval * float(np.linalg.norm(w)), rel=1e-5)
    np.testing.assert_allclose(logits.numpy()[:, 0], real.numpy().reshape(4, -1) @ w[:, 0] + 0.3, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(dense.kernel.numpy(), (1 - lr * gamma * interval) * w, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(dense.bias.numpy(), b)


def test_unconditional_generate_takes_a_count():
    model = _model(0, _linear_discriminator())
    images = model.generate(3, seed=2, batch_size=2)
    assert images.shape == (3, RES, RES, 3)
    np.testing.assert_allclose(model.generate(3, seed=2), images, atol=1e-5)
    for bad in (-1, True, [0, 1]):
        with pytest.raises(ValueError, match="takes the number of images"):
            model.generate(bad)


# ---------------------------------------------------------------------------------------------- distributed


def test_fit_under_mirrored_strategy_with_two_replicas():
    # ReductionToOneDevice, as in test_conditional_dcgan: a second collective all-reduce strategy in one process
    # can reuse collective instance keys (tensorflow/tensorflow#62790).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        model = _model(r1_gamma=0.0, pl_interval=1, augment="none")
    history = model.fit(tf.data.Dataset.from_tensors(_batch()).repeat(), steps_per_epoch=2, epochs=1,
                        verbose=0, shuffle=False).history
    assert all(np.isfinite(values[-1]) for values in history.values())
    assert history["loss/g/pl"][-1] > 0 and history["loss/d/r1"][-1] == 0
    assert int(model.step_counter.numpy()) == 2 and model.kimg == pytest.approx(0.008)
    assert int(keras.ops.convert_to_numpy(model.g_optimizer.iterations)) == 4
    for variable in (model.generator.w_avg, model.pl_mean):  # aggregation="mean": one value on both replicas
        replicas = [np.asarray(v) for v in strategy.experimental_local_results(variable.value)]
        assert len(replicas) == 2 and np.any(replicas[0] != 0) and np.all(np.isfinite(replicas[0]))
        np.testing.assert_array_equal(replicas[0], replicas[1])
    assert math.isfinite(float(model.generate([0, 1], seed=0).mean()))
