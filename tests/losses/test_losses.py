import numpy as np
import pytest
import tensorflow as tf

from keras_medgan import losses

REAL = np.array([-5.0, 1.4, 12.5, 2.7], np.float32)
FAKE = np.array([0.5, -3.0, 7.0, -0.2], np.float32)


def softplus(x):
    return np.log1p(np.exp(x))


def test_vanilla_pair_golden_values():
    # softplus(-0.5)=0.474077, softplus(3)=3.048587, softplus(-7)=0.000911, softplus(0.2)=0.798139 -> mean 1.080428
    assert float(losses.vanilla_generator_loss(FAKE)) == pytest.approx(1.0804286, rel=1e-5)
    expect = softplus(-REAL).mean() + softplus(FAKE).mean()
    # real: softplus(5)=5.006715, softplus(-1.4)=0.220417, softplus(-12.5)=3.7e-6, softplus(-2.7)=0.065044 -> 1.323045
    # fake: softplus(0.5)=0.974077, softplus(-3)=0.048587, softplus(7)=7.000911, softplus(-0.2)=0.598139 -> 2.155429
    assert expect == pytest.approx(1.323045 + 2.155429, rel=1e-5)
    assert float(losses.vanilla_discriminator_loss(REAL, FAKE)) == pytest.approx(expect, rel=1e-5)


def test_least_squares_pair_golden_values():
    # G: ((0.5-1)^2 + (-4)^2 + 6^2 + (-1.2)^2)/4 = (0.25+16+36+1.44)/4 = 13.4225
    assert float(losses.least_squares_generator_loss(FAKE)) == pytest.approx(13.4225)
    # D: (36 + 0.16 + 132.25 + 2.89)/4 + (0.25 + 9 + 49 + 0.04)/4 = 42.825 + 14.5725
    assert float(losses.least_squares_discriminator_loss(REAL, FAKE)) == pytest.approx(57.3975)


def test_hinge_pair_golden_values():
    assert float(losses.hinge_generator_loss(FAKE)) == pytest.approx(-1.075)
    # real: relu(1-x) = 6, 0, 0, 0 -> 1.5 ; fake: relu(1+x) = 1.5, 0, 8, 0.8 -> 2.575
    assert float(losses.hinge_discriminator_loss(REAL, FAKE)) == pytest.approx(4.075)


def test_adversarial_losses_accept_patch_maps_and_bfloat16():
    patch = tf.constant(REAL.reshape(1, 2, 2, 1), tf.bfloat16)
    out = losses.hinge_generator_loss(patch)
    assert out.dtype == tf.float32 and out.shape == ()


def test_get_adversarial_loss_registry():
    assert losses.get_adversarial_loss("lsgan") == (losses.least_squares_generator_loss,
                                                    losses.least_squares_discriminator_loss)
    with pytest.raises(ValueError, match="`gan_loss` must be one of .*Received: gan_loss='wgan'"):
        losses.get_adversarial_loss("wgan")


def test_l1_loss_golden():
    a = np.zeros((1, 2, 2, 1), np.float32)
    b = np.array([1, -2, 0.5, 0.5], np.float32).reshape(1, 2, 2, 1)
    assert float(losses.l1_loss(a, b)) == pytest.approx(1.0)


def test_roi_l1_normalises_by_mask_area_and_channels():
    real = np.zeros((2, 2, 2, 3), np.float32)
    fake = np.ones((2, 2, 2, 3), np.float32)
    fake[0, 0, 0] = 4.0  # inside the ROI of image 0
    fake[1] = 100.0  # image 1 has no box: must not count
    mask = np.zeros((2, 2, 2), np.float32)
    mask[0, 0, :] = 1.0  # two pixels
    # masked |err| sum = 3 channels * (4 + 1) = 15 over area 2 px * 3 ch = 6 -> 2.5
    assert float(losses.roi_l1_loss(real, fake, mask)) == pytest.approx(2.5)
    assert float(losses.roi_l1_loss(real, fake, mask[..., None])) == pytest.approx(2.5)


def test_roi_l1_is_zero_safe_without_boxes():
    real = tf.zeros((2, 4, 4, 3))
    fake = tf.Variable(tf.ones((2, 4, 4, 3)))
    with tf.GradientTape() as tape:
        loss = losses.roi_l1_loss(real, fake, tf.zeros((2, 4, 4)))
    grad = tape.gradient(loss, fake)
    assert float(loss) == 0.0 and np.all(np.isfinite(grad.numpy())) and not grad.numpy().any()


def test_feature_matching_golden_and_stops_gradient_through_real():
    real = tf.Variable([[1.0, 2.0], [3.0, 4.0]])
    fake = tf.Variable([[0.0, 2.0], [5.0, 4.0]])
    with tf.GradientTape(persistent=True) as tape:
        loss = losses.feature_matching_loss(real, fake)
    assert float(loss) == pytest.approx((1 + 0 + 4 + 0) / 4)
    assert tape.gradient(loss, real) is None
    np.testing.assert_allclose(tape.gradient(loss, fake).numpy(), [[-0.5, 0], [1.0, 0]])
    both = losses.feature_matching_loss([real, real], [fake, real])
    assert float(both) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="same length"):
        losses.feature_matching_loss([real], [fake, fake])
