"""Regularisers of the discriminator: the WGAN-GP gradient penalty.

Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Eq. 3 and Algorithm 1:

    L_D = E[D(x~)] - E[D(x)] + lambda * E[(||grad_x^ D(x^)||_2 - 1)^2],   x^ = eps * x + (1 - eps) * x~,

with ``eps ~ U[0, 1]`` drawn per sample, ``x`` real and ``x~`` generated. The
penalty is per sample, which is why the paper's critic has no batch
normalisation (Sec. 4: "batch normalization ... changes the form of the
discriminator's problem from mapping a single input to a single output to
mapping from an entire batch of inputs to a batch of outputs").
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Keeps the norm's derivative finite where the gradient is exactly zero (d sqrt(s) / ds is infinite at 0).
_NORM_EPSILON = 1e-12


def gradient_penalty(critic_fn, real_images, fake_images, seed_or_alpha=None, target_norm=1.0):
    """WGAN-GP gradient penalty ``mean((||grad D(x^)||_2 - target_norm)^2)`` (Gulrajani et al. 2017, Eq. 3).

    The gradient of the critic's score is taken with respect to each
    interpolate ``x^ = alpha * real + (1 - alpha) * fake`` (Algorithm 1, line 6,
    ``alpha`` being the paper's epsilon), its L2 norm over all pixels and
    channels of that sample, and the squared distance of the norm to
    ``target_norm`` averaged over the batch. The interpolates are constants:
    the penalty trains the critic's weights only, never G. Call it inside the
    critic's ``GradientTape``; the inner gradient is recorded by that tape, so
    the critic update differentiates through it (a second-order gradient).

    Args:
        critic_fn: callable. ``critic_fn(images) -> scores`` of shape ``[B]`` or
            ``[B, 1]``, each score depending on its own image only (bind labels
            with a lambda for a conditional critic).
        real_images: tensor ``[B, ...]``, real samples.
        fake_images: tensor ``[B, ...]``, generated samples, same shape.
        seed_or_alpha: how to interpolate. An int seed or a
            ``keras.random.SeedGenerator`` draws ``alpha ~ U[0, 1)`` per sample;
            a float or a tensor of shape ``[B]`` (or broadcastable to the
            images) is used as ``alpha`` itself; None draws unseeded.
            Defaults to None.
        target_norm: float. The gradient norm the penalty pulls towards (1 in
            the paper). Defaults to `1.0`.

    Returns:
        The penalty, a float32 scalar (not yet multiplied by the coefficient
        lambda, which is 10 in the paper).

    Example:

    >>> w = tf.constant([[0.6], [0.8]])                        # ||w|| = 1
    >>> float(gradient_penalty(lambda x: x @ w, tf.ones((4, 2)), tf.zeros((4, 2)), seed_or_alpha=0))
    0.0

    Reference:
        - [Gulrajani et al., 2017. Improved Training of Wasserstein
          GANs](https://arxiv.org/abs/1704.00028), Eq. 3 and Algorithm 1.
    """
    real = tf.cast(real_images, tf.float32)
    fake = tf.cast(fake_images, tf.float32)
    rank = len(real.shape)
    batch_size = tf.shape(real)[0]
    if isinstance(seed_or_alpha, keras.random.SeedGenerator) or seed_or_alpha is None or (
            isinstance(seed_or_alpha, int) and not isinstance(seed_or_alpha, bool)):
        alpha = keras.random.uniform((batch_size,), seed=seed_or_alpha, dtype="float32")
    else:
        alpha = tf.cast(seed_or_alpha, tf.float32)
    if len(alpha.shape) == 1:  # one weight per sample -> [B, 1, ..., 1]
        alpha = tf.reshape(alpha, [-1] + [1] * (rank - 1))
    interpolates = tf.stop_gradient(alpha * real + (1.0 - alpha) * fake)

    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        scores = tf.cast(critic_fn(interpolates), tf.float32)
    grads = tf.cast(tape.gradient(scores, interpolates), tf.float32)
    norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=list(range(1, rank))) + _NORM_EPSILON)
    return tf.reduce_mean(tf.square(norms - target_norm))


def r1_penalty(real_gradients):
    """R1 (Mescheder et al. 2018, Eq. 9) per image: ``||grad_x D(x)||^2`` summed over pixels and channels.

    ``real_gradients``: ``[batch, H, W, C]`` gradients of the sum of D's logits on real images with respect to
    those images. The StyleGAN2 loss is ``gamma / 2 * mean(r1_penalty)`` (StyleGAN2 Appendix B; ADA Eq. in
    Appendix D, gamma from ``networks.stylegan2.r1_gamma_heuristic``). Returns float32 ``[batch]``.
    """
    g = tf.cast(real_gradients, tf.float32)
    return tf.reduce_sum(tf.square(g), axis=[1, 2, 3])


def path_lengths(ws_gradients):
    """Per-image path lengths of StyleGAN2 Sec. 3.2: ``||J_w^T y||_2`` with the gradient ``J_w^T y``
    (``[batch, num_ws, w_dim]``) averaged over the ``num_ws`` rows as the ADA code does: ``sqrt(mean_ws(sum_w
    g^2))``. Returns float32 ``[batch]``."""
    g = tf.cast(ws_gradients, tf.float32)
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(g), axis=2), axis=1))


def path_length_penalty(lengths, pl_mean, decay=0.01):
    """StyleGAN2 Eq. 4: ``(||J_w^T y|| - a)^2`` with ``a`` the running mean of the lengths.

    Args:
        lengths: ``[batch]`` from ``path_lengths``.
        pl_mean: scalar, the running mean before this batch.
        decay: float. How far ``a`` moves towards the batch mean (StyleGAN2: 0.01).

    Returns:
        ``(penalty [batch], new_pl_mean)``; the penalty uses the updated mean, as the ADA code does.
    """
    lengths = tf.cast(lengths, tf.float32)
    new_mean = pl_mean + decay * (tf.reduce_mean(lengths) - pl_mean)
    return tf.square(lengths - new_mean), new_mean
