"""FusedAdam: keras.optimizers.Adam's update in TensorFlow's fused kernel."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.optimizers import FusedAdam


def _run(opt, steps=5, seed=0, shapes=((3, 4), (7,))):
    rng = np.random.default_rng(seed)
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in shapes]
    grads = [[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(steps)]
    opt.build(variables)
    apply = tf.function(lambda g: opt.apply(g, variables))
    for g in grads:
        apply([tf.constant(x) for x in g])
    return [v.numpy() for v in variables], opt


def test_one_step_golden_value():
    # w = 1, g = 0.5, lr 0.1, beta_1 0.5, beta_2 0.999, eps 1e-7, t = 1:
    # m = 0.25, v = 0.00025, alpha = 0.1 * sqrt(0.001) / 0.5, w = 1 - alpha * m / (sqrt(v) + eps) = 0.9 (to 1e-7).
    w = keras.Variable(np.array([1.0], "float32"))
    opt = FusedAdam(0.1, beta_1=0.5, beta_2=0.999, epsilon=1e-7)
    opt.build([w])
    tf.function(lambda: opt.apply([tf.constant([0.5])], [w]))()
    alpha = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.5)
    expected = 1.0 - alpha * 0.25 / (np.sqrt(0.00025) + 1e-7)
    np.testing.assert_allclose(w.numpy(), [expected], rtol=1e-6)
    np.testing.assert_allclose(opt._momentums[0].numpy(), [0.25])  # m
    np.testing.assert_allclose(opt._velocities[0].numpy(), [0.00025], rtol=1e-4)  # v (1 - 0.999 in float32)
    assert int(opt.iterations.numpy()) == 1


@pytest.mark.parametrize("kwargs", [{}, {"beta_1": 0.5}, {"beta_1": 0.0, "beta_2": 0.99, "epsilon": 1e-8},
                                    {"weight_decay": 0.01}, {"amsgrad": True}])
def test_matches_keras_adam_over_several_steps(kwargs):
    fused, _ = _run(FusedAdam(2e-3, **kwargs))
    ref, _ = _run(keras.optimizers.Adam(2e-3, **kwargs))
    for a, b in zip(fused, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_uses_the_fused_kernel_only_where_it_applies():
    w = keras.Variable(np.ones((2,), "float32"))
    for opt, fused in ((FusedAdam(1e-3), True), (FusedAdam(1e-3, amsgrad=True), False)):
        opt.build([w])
        graph = tf.function(lambda: opt.apply([tf.ones((2,))], [w])).get_concrete_function().graph
        assert ("ResourceApplyAdam" in {op.type for op in graph.get_operations()}) is fused


def test_mirrored_strategy_falls_back_with_the_same_result():
    # ReductionToOneDevice: the default collective all-reduce would reuse another test's collective instance
    # keys in this process (tensorflow/tensorflow#62790, as in tests/gans/test_conditional_dcgan.py).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        w = keras.Variable(np.ones((3,), "float32"))
        opt = FusedAdam(0.1, beta_1=0.5)
        opt.build([w])

    @tf.function
    def step():
        strategy.run(lambda: opt.apply([tf.constant([0.5, -1.0, 2.0])], [w]))

    step()
    ref_w = keras.Variable(np.ones((3,), "float32"))
    ref = keras.optimizers.Adam(0.1, beta_1=0.5)
    ref.build([ref_w])
    ref.apply([tf.constant([0.5, -1.0, 2.0])], [ref_w])
    # Two replicas each apply the same gradient; Keras sums them (all-reduce), hence 2x the gradient,
    # which Adam's normalisation makes the same step.
    np.testing.assert_allclose(w.numpy(), ref_w.numpy(), rtol=1e-5)


def test_checkpoints_move_between_keras_adam_and_fused_adam(tmp_path):
    _, keras_opt = _run(keras.optimizers.Adam(1e-3, beta_1=0.5))
    fused = FusedAdam(1e-3, beta_1=0.5)
    fused.build([keras.Variable(np.zeros(s, "float32")) for s in ((3, 4), (7,))])
    assert [v.shape for v in fused.variables] == [v.shape for v in keras_opt.variables]
    path = os.path.join(tmp_path, "opt.ckpt")
    tf.train.Checkpoint(opt=keras_opt).write(path)
    tf.train.Checkpoint(opt=fused).read(path).assert_consumed()
    for a, b in zip(fused.variables, keras_opt.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_config_round_trip():
    opt = FusedAdam(3e-4, beta_1=0.5, beta_2=0.99, epsilon=1e-8)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(restored) is FusedAdam
    assert restored.get_config() == opt.get_config()
