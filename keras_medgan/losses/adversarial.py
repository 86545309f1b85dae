"""Adversarial losses in named pairs: ``<name>_generator_loss`` / ``<name>_discriminator_loss``.

Each works on logits of any shape (a vector, or a PatchGAN map ``[B, h, w, 1]``)
and returns the mean over all elements, in float32 whatever the input dtype.

| name | generator | discriminator | reference |
|---|---|---|---|
| ``vanilla`` | ``E[softplus(-D(G))]`` (non-saturating) | ``E[softplus(-D(x))] + E[softplus(D(G))]`` | Goodfellow et al. 2014; pix2pix (Isola et al. 2017) |
| ``lsgan`` | ``E[(D(G) - 1)^2]`` | ``E[(D(x) - 1)^2] + E[D(G)^2]`` | Mao et al. 2017 (pix2pix ``--gan_mode lsgan``) |
| ``hinge`` | ``-E[D(G)]`` | ``E[relu(1 - D(x))] + E[relu(1 + D(G))]`` | Lim & Ye 2017; Miyato et al. 2018 |
| ``wasserstein`` | ``-E[D(G)]`` | ``E[D(G)] - E[D(x)]`` | Arjovsky et al. 2017; Gulrajani et al. 2017, Eq. 3 |

The discriminator losses are the plain sum of the real and fake terms; pix2pix
halves it when updating D ("we divide the objective by 2 while optimizing D"),
which the models do, not these functions.

The ``wasserstein`` pair is not in ``ADVERSARIAL_LOSSES``: its critic is only
meaningful under a Lipschitz constraint, so the models offer it as ``wgan-gp``,
together with the gradient penalty of ``penalties.py``.
"""

from __future__ import annotations

import tensorflow as tf


def _f32(x):
    return tf.cast(x, tf.float32)


def vanilla_generator_loss(fake_logits):
    """Non-saturating GAN loss for G: binary cross-entropy of D(G(z)) against "real"."""
    return tf.reduce_mean(tf.nn.softplus(-_f32(fake_logits)))


def vanilla_discriminator_loss(real_logits, fake_logits):
    """Binary cross-entropy of D: real images against 1, generated ones against 0."""
    return tf.reduce_mean(tf.nn.softplus(-_f32(real_logits))) + tf.reduce_mean(tf.nn.softplus(_f32(fake_logits)))


def least_squares_generator_loss(fake_logits):
    """Least-squares GAN loss for G: ``mean((D(G) - 1)^2)``."""
    return tf.reduce_mean(tf.square(_f32(fake_logits) - 1.0))


def least_squares_discriminator_loss(real_logits, fake_logits):
    """Least-squares GAN loss for D: ``mean((D(x) - 1)^2) + mean(D(G)^2)``."""
    return tf.reduce_mean(tf.square(_f32(real_logits) - 1.0)) + tf.reduce_mean(tf.square(_f32(fake_logits)))


def hinge_generator_loss(fake_logits):
    """Hinge GAN loss for G: ``-mean(D(G))``."""
    return -tf.reduce_mean(_f32(fake_logits))


def hinge_discriminator_loss(real_logits, fake_logits):
    """Hinge GAN loss for D: ``mean(relu(1 - D(x))) + mean(relu(1 + D(G)))``."""
    return tf.reduce_mean(tf.nn.relu(1.0 - _f32(real_logits))) + tf.reduce_mean(tf.nn.relu(1.0 + _f32(fake_logits)))


def wasserstein_generator_loss(fake_logits):
    """Wasserstein loss for G: ``-mean(D(G))`` (WGAN, Arjovsky et al. 2017, Algorithm 1)."""
    return -tf.reduce_mean(_f32(fake_logits))


def wasserstein_discriminator_loss(real_logits, fake_logits):
    """Wasserstein loss for the critic: ``mean(D(G)) - mean(D(x))`` (Gulrajani et al. 2017, Eq. 3 without the penalty)."""
    return tf.reduce_mean(_f32(fake_logits)) - tf.reduce_mean(_f32(real_logits))


ADVERSARIAL_LOSSES = {
    "vanilla": (vanilla_generator_loss, vanilla_discriminator_loss),
    "lsgan": (least_squares_generator_loss, least_squares_discriminator_loss),
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
}


def get_adversarial_loss(name: str):
    """``(generator_loss, discriminator_loss)`` for ``vanilla``, ``lsgan`` or ``hinge``."""
    if name not in ADVERSARIAL_LOSSES:
        raise ValueError(f"`gan_loss` must be one of {sorted(ADVERSARIAL_LOSSES)}. Received: gan_loss={name!r}")
    return ADVERSARIAL_LOSSES[name]
