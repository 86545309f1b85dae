"""DermGAN (Ghorbani et al. 2020): pix2pix from semantic maps to clinical skin images.

Paper: "DermGAN: Synthetic Generation of Clinical Skin Images with Pathology",
Sec. 2 and Fig. 3. G is a U-Net that turns a semantic map (skin type, condition,
ROI boxes; see ``keras_medgan.data.semantic_maps``) into an image; D is a
PatchGAN on ``concat(map, image)``. G minimises four terms:

    L_G = lambda_gan * L_GAN + lambda_l1 * L1(x, G(m)) + lambda_roi * L1_ROI(x, G(m), B(m))
          + lambda_fm * || D_feat(m, x) - D_feat(m, G(m)) ||^2

Code (vs. paper): the paper gives neither the optimiser nor the loss weights;
we follow pix2pix (Adam 2e-4, beta1 0.5; D objective halved; lambda_l1 = 100)
and choose lambda_roi and lambda_fm in the recipe config, where the choice is
explained. The ablations of the paper's Table 1 are ``upsampling="transpose"``
(no checkerboard mitigation), ``lambda_roi=0`` (no condition-specific loss) and
``lambda_fm=0`` (no feature matching).

Update rule: pix2pix (Isola et al. 2017, Sec. 3.3) alternates "one gradient descent step on D, then
one step on G", and G's step is taken against the just-updated D; that is the default. Opt-in
``update_rule="simultaneous"`` takes both steps from one forward pass at the same (G, D), as TF-GAN's
joint train ops do: two D passes per step instead of four (92.8 instead of 105.5 GFLOP per image at
256 px; 13 % faster at batch 4 on a 2-core CPU). It is a different algorithm with its own convergence
behaviour (simultaneous gradient steps are analysed in Mescheder et al. 2017, "The Numerics of GANs").
See ``docs/benchmarks.md`` for the speed and the recipe card for how it trains on the demo.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_medgan.distribute import wrap_for_loss_scaling
from keras_medgan.gans._steps import (apply_gradients_with_norm, apply_scaled_gradients, scaled_loss,
                                      track_grad_norm)
from keras_medgan.losses import feature_matching_loss, get_adversarial_loss, l1_loss, roi_l1_loss

UPDATE_RULES = ("alternating", "simultaneous")
LOSS_NAMES = ("loss/g/total", "loss/g/gan", "loss/g/l1", "loss/g/l1_roi", "loss/g/feature_matching",
              "loss/d/total", "loss/d/real", "loss/d/fake", "grad_norm/g", "grad_norm/d")


def discriminator_outputs(outputs):
    """``(logits, features)`` from the PatchGAN's outputs (a dict with those keys, or a list in that order)."""
    if isinstance(outputs, dict):
        return outputs["logits"], outputs["features"]
    return outputs[0], outputs[1]


@keras.saving.register_keras_serializable(package="keras_medgan")
class DermGAN(keras.Model):
    """DermGAN: the multi-loss pix2pix of Ghorbani et al. 2020.

    Args:
        generator: keras.Model. Semantic map ``[B, H, W, 3]`` -> image in [-1, 1]
            (``networks.unet_generator``).
        discriminator: keras.Model. ``[map, image]`` -> ``{"logits", "features"}``
            (``networks.patch_discriminator``); ``features`` are the activations of
            its second-to-last convolution, used for feature matching.

    Example:

    >>> gan = DermGAN(unet_generator(64), patch_discriminator(64))
    >>> gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    >>> gan.fit(train_ds, steps_per_epoch=100, epochs=10)   # batches: {"semantic_map": ..., "image": ...}

    Reference:
        Ghorbani et al. 2020, "DermGAN: Synthetic Generation of Clinical Skin Images with Pathology".
        Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks".
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.built = True  # MirroredStrategy needs a built model before fit (DESIGN.md).

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        lambda_l1: float = 100.0,
        lambda_roi: float = 100.0,
        lambda_fm: float = 10.0,
        lambda_gan: float = 1.0,
        gan_loss: str = "vanilla",
        update_rule: str = "alternating",
        **kwargs,
    ):
        """Sets the optimisers and the loss weights of the four G terms.

        Args:
            g_optimizer, d_optimizer: Keras optimisers (wrapped for loss scaling under mixed_float16).
            lambda_l1: float. Whole-image L1 weight (pix2pix: 100).
            lambda_roi: float. Condition-specific (ROI) L1 weight (DermGAN Sec. 2); 0 is the "no
                condition-specific loss" ablation.
            lambda_fm: float. Feature-matching weight (DermGAN Sec. 2); 0 is the "no feature matching" ablation.
            lambda_gan: float. Adversarial weight.
            gan_loss: str. ``vanilla`` (pix2pix), ``lsgan`` or ``hinge``.
            update_rule: str. ``alternating`` (pix2pix Sec. 3.3: D step, then G step against the updated D)
                or ``simultaneous`` (both gradients from one forward pass at the same weights; faster, a
                different algorithm; see the module docstring).
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``, ...).
        """
        for name, value in (("lambda_l1", lambda_l1), ("lambda_roi", lambda_roi), ("lambda_fm", lambda_fm),
                            ("lambda_gan", lambda_gan)):
            if not value >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
        if update_rule not in UPDATE_RULES:
            raise ValueError(f"`update_rule` must be one of {UPDATE_RULES}. Received: update_rule={update_rule!r}")
        self.g_loss_fn, self.d_loss_fn = get_adversarial_loss(gan_loss)
        super().compile(**kwargs)
        self.g_optimizer = wrap_for_loss_scaling(g_optimizer)
        self.d_optimizer = wrap_for_loss_scaling(d_optimizer)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.lambda_l1, self.lambda_roi = float(lambda_l1), float(lambda_roi)
        self.lambda_fm, self.lambda_gan = float(lambda_fm), float(lambda_gan)
        self.gan_loss = gan_loss
        self.update_rule = update_rule

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, semantic_maps, training=False):
        return self.generator(semantic_maps, training=training)

    def _discriminate(self, maps, images, training):
        return discriminator_outputs(self.discriminator([maps, images], training=training))

    def generator_loss_terms(self, maps, real, fake, training: bool, fake_out=None, real_features=None) -> dict:
        """The four DermGAN G terms and their weighted sum (shared by train_step and test_step).

        ``fake_out`` (D's ``(logits, features)`` on the generated pair) and ``real_features`` are computed here
        unless given: the simultaneous update passes the ones its single forward pass already has.
        """
        fake_logits, fake_features = fake_out if fake_out is not None else self._discriminate(maps, fake, training)
        terms = {
            "gan": self.g_loss_fn(fake_logits),  # min-max GAN loss
            "l1": l1_loss(real, fake),  # whole-image L1, pix2pix Eq. 3
            "l1_roi": roi_l1_loss(real, fake, maps[..., 2]),  # condition-specific L1 over the B-channel ROI
        }
        if self.lambda_fm > 0:  # feature matching on D's second-to-last activation
            if real_features is None:
                _, real_features = self._discriminate(maps, real, training)
            terms["feature_matching"] = feature_matching_loss(real_features, fake_features)
        else:
            terms["feature_matching"] = tf.constant(0.0)
        terms["total"] = (self.lambda_gan * terms["gan"] + self.lambda_l1 * terms["l1"]
                          + self.lambda_roi * terms["l1_roi"] + self.lambda_fm * terms["feature_matching"])
        return terms

    def discriminator_loss_terms(self, maps, real, fake, training: bool, real_logits=None, fake_logits=None) -> dict:
        """D's loss on real and (detached) fake pairs, halved as in pix2pix (logits computed here unless given)."""
        if real_logits is None:
            real_logits, _ = self._discriminate(maps, real, training)
        if fake_logits is None:
            fake_logits, _ = self._discriminate(maps, tf.stop_gradient(fake), training)
        total = 0.5 * self.d_loss_fn(real_logits, fake_logits)
        return {"total": total, "real": tf.reduce_mean(tf.cast(real_logits, tf.float32)),
                "fake": tf.reduce_mean(tf.cast(fake_logits, tf.float32))}

    def train_step(self, batch):
        if self.update_rule == "simultaneous":
            return self._simultaneous_step(batch)
        maps, real = batch["semantic_map"], batch["image"]
        with tf.GradientTape() as g_tape:
            fake = self.generator(maps, training=True)

        # 1. D step: real pairs -> 1, generated pairs -> 0.
        with tf.GradientTape() as d_tape:
            d_terms = self.discriminator_loss_terms(maps, real, fake, training=True)
            d_loss = scaled_loss(self.d_optimizer, d_terms["total"])
        d_norm = apply_scaled_gradients(self.d_optimizer, d_tape, d_loss, self.discriminator.trainable_variables)

        # 2. G step against the updated D (the tape that produced `fake` resumes recording).
        with g_tape:
            g_terms = self.generator_loss_terms(maps, real, fake, training=True)
            g_loss = scaled_loss(self.g_optimizer, g_terms["total"])
        g_norm = apply_scaled_gradients(self.g_optimizer, g_tape, g_loss, self.generator.trainable_variables)

        return self._log(g_terms, d_terms, g_norm, d_norm)

    def _simultaneous_step(self, batch):
        """One forward pass of G and two of D (real, fake); both gradients at the same (G, D), then both steps."""
        maps, real = batch["semantic_map"], batch["image"]
        with tf.GradientTape() as g_tape:
            fake = self.generator(maps, training=True)
        # D's tape starts after G's forward pass, so its backward pass stops at `fake` (as stop_gradient would)
        # while G's tape, resumed, records the same two D passes for G's loss.
        with g_tape, tf.GradientTape() as d_tape:
            real_logits, real_features = self._discriminate(maps, real, training=True)
            fake_logits, fake_features = self._discriminate(maps, fake, training=True)
            d_terms = self.discriminator_loss_terms(maps, real, fake, True, real_logits, fake_logits)
            d_loss = scaled_loss(self.d_optimizer, d_terms["total"])
            g_terms = self.generator_loss_terms(maps, real, fake, True, (fake_logits, fake_features), real_features)
            g_loss = scaled_loss(self.g_optimizer, g_terms["total"])
        d_vars, g_vars = self.discriminator.trainable_variables, self.generator.trainable_variables
        d_grads, g_grads = d_tape.gradient(d_loss, d_vars), g_tape.gradient(g_loss, g_vars)  # both before any step
        d_norm = apply_gradients_with_norm(self.d_optimizer, d_grads, d_vars)
        g_norm = apply_gradients_with_norm(self.g_optimizer, g_grads, g_vars)
        return self._log(g_terms, d_terms, g_norm, d_norm)

    def test_step(self, batch):
        maps, real = batch["semantic_map"], batch["image"]
        fake = self.generator(maps, training=False)
        g_terms = self.generator_loss_terms(maps, real, fake, training=False)
        d_terms = self.discriminator_loss_terms(maps, real, fake, training=False)
        return self._log(g_terms, d_terms, None, None)

    def _log(self, g_terms, d_terms, g_norm, d_norm) -> dict:
        for key, value in g_terms.items():
            self.trackers[f"loss/g/{key}"].update_state(value)
        for key, value in d_terms.items():
            self.trackers[f"loss/d/{key}"].update_state(value)
        if g_norm is not None:
            track_grad_norm(self.trackers["grad_norm/g"], g_norm)
            track_grad_norm(self.trackers["grad_norm/d"], d_norm)
        return {name: t.result() for name, t in self.trackers.items() if g_norm is not None or "grad" not in name}

    def get_config(self):
        config = super().get_config()
        config.update({
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)
