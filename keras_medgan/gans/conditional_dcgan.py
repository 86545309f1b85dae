"""Class-conditional DCGAN: paper 001's cDCGAN on HAM10000 and XRAY-GAN's CGAN (paper 004, Sec. 4.1).

Paper 001 (Bingol et al., "Overcoming Medical Data Scarcity with GAN Generated
Synthetic Images", Sec. II-C): G turns Gaussian noise and a one-hot class label
into an image through transposed convolutions; D judges image and label; binary
cross-entropy, Adam with learning rate 2e-4; spectral normalisation and a
gradient penalty with coefficient 10 "enhance stability". Paper 004 (Chen &
Wan, "XRAY-GAN", Sec. 4.1, Eq. 6) trains the same conditional min-max game,
with Adam 2e-4, beta1 0.5 (Sec. 5.4). One step is:

    for i in 1..n_critic:   D step:  min_D  L_D(D(x | y), D(G(z | y) | y)) + gp_weight * GP
    G step:                          min_G  L_G(D(G(z' | y) | y))

where ``(x, y)`` is the real batch, ``z, z' ~ N(0, I)`` are fresh for every
update and the generated images take the real batch's labels ``y``, so G is
trained on the class balance of the data (sample the labels yourself in
``generate`` to balance them).

Code (vs. papers):
    - Paper 001 names BCE and a gradient penalty side by side without saying how
      they combine; ``gan_loss="vanilla", gp_weight=10`` is that literal reading,
      ``gan_loss="wgan-gp"`` (Gulrajani et al. 2017) the usual home of the
      penalty. Either way the penalty needs a D without batch norm.
    - ``n_critic > 1`` runs that many D updates in each ``train_step``, all on
      the step's real batch with fresh noise; Gulrajani et al.'s Algorithm 1
      draws a new real batch for each. A step that would update G only every
      ``n_critic`` batches needs a conditional optimizer update, which
      ``MirroredStrategy`` cannot run on this TensorFlow.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_medgan.distribute import wrap_for_loss_scaling
from keras_medgan.gans._steps import (
    check_generate_labels,
    generate_in_batches,
    apply_scaled_gradients,
    replica_normal,
    replica_uniform,
    scaled_loss,
    track_grad_norm,
)
from keras_medgan.losses import (
    ADVERSARIAL_LOSSES,
    get_adversarial_loss,
    gradient_penalty,
    wasserstein_discriminator_loss,
    wasserstein_generator_loss,
)

GAN_LOSSES = (*ADVERSARIAL_LOSSES, "wgan-gp")
WGAN_GP_WEIGHT = 10.0  # Gulrajani et al. 2017, Sec. 4 (lambda = 10); paper 001, Sec. II-C ("coefficient=10")
LOSS_NAMES = ("loss/g/total", "loss/d/total", "loss/d/gp", "d_real", "d_fake", "grad_norm/g", "grad_norm/d")
EVAL_SEED = 0  # test_step draws the same noise every time, so validation losses compare across epochs


@keras.saving.register_keras_serializable(package="keras_medgan")
class ConditionalDCGAN(keras.Model):
    """A class-conditional (or, with `num_classes=0`, unconditional) noise-to-image GAN.

    Batches are dicts from `keras_medgan.data.pipelines.make_dataset`: `"image"`
    float32 in [-1, 1] and `"label"` int32 class indices in `[0, num_classes)`
    (other keys are ignored; `"label"` is not needed when `num_classes=0`).
    Generated images take the labels of the real batch, so G sees the data's
    class balance.

    Args:
        generator: keras.Model. `{"z": [B, latent_dim], "label": int32 [B]}`
            (or `z` alone when `num_classes=0`) -> images in [-1, 1]
            (`networks.dcgan_generator`).
        discriminator: keras.Model. `{"image": ..., "label": int32 [B]}` (or the
            image alone when `num_classes=0`) -> float32 logits `[B, 1]`
            (`networks.dcgan_discriminator`).
        latent_dim: int. Size of `z` (100 in paper 001). Defaults to `100`.
        num_classes: int. Number of classes; `0` for an unconditional GAN.
            Defaults to `0`.
        seed: int or None. Seed of the noise stream (`z` and the gradient
            penalty's interpolation weights). Its state,
            `seed_generator.state`, is one of `model.variables`, so checkpoints
            of those resume it exactly; a `.keras` file does not keep it.
            Defaults to None.
        **kwargs: passed to `keras.Model` (`name`, ...).

    Example:

    >>> gan = ConditionalDCGAN(dcgan_generator(64, num_classes=4), dcgan_discriminator(64, num_classes=4),
    ...                        latent_dim=100, num_classes=4, seed=0)
    >>> gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5))
    >>> gan.fit(train_ds, steps_per_epoch=100, epochs=10)   # batches: {"image": ..., "label": ...}
    >>> images = gan.generate(labels=[0] * 8 + [3] * 8, seed=1)   # [16, 64, 64, 3] in [-1, 1]

    Reference:
        - Paper 001: Bingol et al., "Overcoming Medical Data Scarcity with GAN
          Generated Synthetic Images", Sec. II-B, Eq. 1 and Sec. II-C.
        - Paper 004: Chen & Wan, "XRAY-GAN", Sec. 4.1, Eq. 6 and Sec. 5.4.
        - [Mirza & Osindero, 2014. Conditional Generative Adversarial
          Nets](https://arxiv.org/abs/1411.1784).
        - [Gulrajani et al., 2017. Improved Training of Wasserstein
          GANs](https://arxiv.org/abs/1704.00028), Algorithm 1.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int = 100,
                 num_classes: int = 0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for field, value, minimum in (("latent_dim", latent_dim, 1), ("num_classes", num_classes, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"`{field}` must be an integer >= {minimum}. Received: {field}={value!r}")
        _check_generator_inputs(generator, int(latent_dim), int(num_classes))
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.built = True  # MirroredStrategy needs a built model before fit (DESIGN.md).

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        gan_loss: str = "vanilla",
        gp_weight: float | None = None,
        n_critic: int = 1,
        **kwargs,
    ):
        """Sets the optimisers and the adversarial objective.

        Args:
            g_optimizer, d_optimizer: Keras optimisers (wrapped for loss scaling
                under mixed_float16). The papers' setting for both is
                `keras.optimizers.Adam(2e-4, beta_1=0.5)`: learning rate 2e-4 in
                paper 001 (Sec. II-C) and paper 004 (Sec. 5.4), beta1 0.5 in
                paper 004 (Sec. 5.4) and DCGAN (Radford et al. 2016, Sec. 4);
                paper 001 does not give beta1.
            gan_loss: str. `"vanilla"` (binary cross-entropy on logits, the
                non-saturating G loss: paper 001; paper 004, Eq. 6), `"hinge"`
                (Lim & Ye 2017; Miyato et al. 2018), `"lsgan"`, or `"wgan-gp"`
                (Wasserstein critic with the gradient penalty, Gulrajani et al.
                2017). Defaults to `"vanilla"`.
            gp_weight: float or None. Coefficient of the gradient penalty
                (`losses.gradient_penalty`). None means 10 for `"wgan-gp"`
                (Gulrajani et al. 2017, Sec. 4; paper 001, Sec. II-C) and 0 (no
                penalty) for the others; a positive value adds the penalty to
                any loss (paper 001 lists BCE and a penalty of 10 together).
                Defaults to None.
            n_critic: int. D updates per G update, each with fresh noise, all on
                the step's real batch (Gulrajani et al. use 5 with a new batch
                each). Defaults to `1`.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, ...).
        """
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"`gan_loss` must be one of {GAN_LOSSES}. Received: gan_loss={gan_loss!r}")
        if gp_weight is None:
            gp_weight = WGAN_GP_WEIGHT if gan_loss == "wgan-gp" else 0.0
        if not gp_weight >= 0:
            raise ValueError(f"`gp_weight` must be >= 0. Received: gp_weight={gp_weight}")
        if gan_loss == "wgan-gp" and gp_weight == 0:
            raise ValueError("`gan_loss='wgan-gp'` needs `gp_weight` > 0: without the penalty the Wasserstein "
                             f"critic is unconstrained. Received: gp_weight={gp_weight}")
        if isinstance(n_critic, bool) or not isinstance(n_critic, (int, np.integer)) or n_critic < 1:
            raise ValueError(f"`n_critic` must be an integer >= 1. Received: n_critic={n_critic!r}")
        batch_norms = _batch_norm_layers(self.discriminator)
        if gp_weight > 0 and batch_norms:
            raise ValueError(
                f"The gradient penalty (gan_loss={gan_loss!r}, gp_weight={gp_weight}) is per sample and is not "
                "valid for a discriminator with batch normalization (Gulrajani et al. 2017, Sec. 4), which this "
                f"one has: {', '.join(batch_norms)}. Build it with `dcgan_discriminator(..., norm='layer')` or "
                "`norm='none'`."
            )
        if gan_loss == "wgan-gp":
            self.g_loss_fn, self.d_loss_fn = wasserstein_generator_loss, wasserstein_discriminator_loss
        else:
            self.g_loss_fn, self.d_loss_fn = get_adversarial_loss(gan_loss)
        super().compile(**kwargs)
        self.g_optimizer = wrap_for_loss_scaling(g_optimizer)
        self.d_optimizer = wrap_for_loss_scaling(d_optimizer)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.gan_loss = gan_loss
        self.gp_weight = float(gp_weight)
        self.n_critic = int(n_critic)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def _generate(self, z, labels, training):
        return self.generator({"z": z, "label": labels} if self.num_classes else z, training=training)

    def _discriminate(self, images, labels, training):
        return self.discriminator({"image": images, "label": labels} if self.num_classes else images,
                                  training=training)

    def _unpack(self, batch):
        """``(images, labels)`` of a pipeline batch as tensors; labels are None for an unconditional GAN."""
        return tf.convert_to_tensor(batch["image"]), tf.cast(batch["label"], tf.int32) if self.num_classes else None

    def generator_loss_terms(self, z, labels, training: bool) -> dict:
        """G's adversarial loss on ``G(z | labels)`` (shared by train_step and test_step)."""
        fake_logits = self._discriminate(self._generate(z, labels, training), labels, training)
        return {"total": self.g_loss_fn(fake_logits)}

    def discriminator_loss_terms(self, real, fake, labels, training: bool, alpha=None) -> dict:
        """D's loss on real and (detached) generated images, plus ``gp_weight`` times the gradient penalty.

        ``alpha``: the penalty's per-sample interpolation weights ``[B]``; drawn from the model's seed when None.
        """
        fake = tf.stop_gradient(fake)
        real_logits = self._discriminate(real, labels, training)
        fake_logits = self._discriminate(fake, labels, training)
        terms = {"total": self.d_loss_fn(real_logits, fake_logits), "gp": tf.constant(0.0),
                 "d_real": tf.reduce_mean(tf.cast(real_logits, tf.float32)),
                 "d_fake": tf.reduce_mean(tf.cast(fake_logits, tf.float32))}
        if self.gp_weight > 0:  # Gulrajani et al. 2017, Eq. 3
            if alpha is None:
                alpha = replica_uniform(tf.shape(real)[0], self.seed_generator)
            terms["gp"] = gradient_penalty(lambda x: self._discriminate(x, labels, training), real, fake, alpha)
            terms["total"] = terms["total"] + self.gp_weight * terms["gp"]
        return terms

    def _discriminator_step(self, real, labels):
        z = replica_normal(tf.shape(real)[0], self.latent_dim, self.seed_generator)
        fake = self._generate(z, labels, training=True)
        with tf.GradientTape() as tape:
            terms = self.discriminator_loss_terms(real, fake, labels, training=True)
            loss = scaled_loss(self.d_optimizer, terms["total"])
        return terms, apply_scaled_gradients(self.d_optimizer, tape, loss, self.discriminator.trainable_variables)

    def _generator_step(self, batch_size, labels):
        z = replica_normal(batch_size, self.latent_dim, self.seed_generator)
        with tf.GradientTape() as tape:
            terms = self.generator_loss_terms(z, labels, training=True)
            loss = scaled_loss(self.g_optimizer, terms["total"])
        return terms, apply_scaled_gradients(self.g_optimizer, tape, loss, self.generator.trainable_variables)

    def train_step(self, batch):
        real, labels = self._unpack(batch)

        # 1. n_critic D updates: real (x, y) -> "real", (G(z | y), y) -> "fake", each with fresh z.
        for _ in range(self.n_critic):
            d_terms, d_norm = self._discriminator_step(real, labels)
            self._log_discriminator(d_terms)
            track_grad_norm(self.trackers["grad_norm/d"], d_norm)

        # 2. One G update against the updated D, with fresh z and the same labels.
        g_terms, g_norm = self._generator_step(tf.shape(real)[0], labels)
        self.trackers["loss/g/total"].update_state(g_terms["total"])
        track_grad_norm(self.trackers["grad_norm/g"], g_norm)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, batch):
        real, labels = self._unpack(batch)
        batch_size = tf.shape(real)[0]
        z = replica_normal(batch_size, self.latent_dim, EVAL_SEED)
        fake = self._generate(z, labels, training=False)
        self._log_discriminator(self.discriminator_loss_terms(
            real, fake, labels, training=False, alpha=replica_uniform(batch_size, EVAL_SEED + 1)))
        self.trackers["loss/g/total"].update_state(self.generator_loss_terms(z, labels, training=False)["total"])
        return {name: tracker.result() for name, tracker in self.trackers.items() if "grad" not in name}

    def _log_discriminator(self, terms):
        for key, value in terms.items():
            self.trackers[key if key.startswith("d_") else f"loss/d/{key}"].update_state(value)

    def generate(self, labels, seed: int | None = None, batch_size: int = 256) -> np.ndarray:
        """Images from fresh noise, in inference mode (batch-norm moving statistics).

        Args:
            labels: int sequence. One class index per image, each in
                `[0, num_classes)`; for an unconditional model, the number of
                images (an int).
            seed: int or None. The same seed gives the same images; None draws
                from Keras's global stream, never from the training stream.
                Defaults to None.
            batch_size: int. Images per generator call (the result does not
                depend on it). Defaults to `256`.

        Returns:
            float32 numpy array `[N, H, W, C]` in [-1, 1].
        """
        count, labels = check_generate_labels(labels, self.num_classes)
        z = keras.random.normal((count, self.latent_dim), seed=seed, dtype="float32")
        return generate_in_batches(
            lambda chunk, i: self._generate(chunk, None if labels is None else labels[i:i + batch_size],
                                            training=False), z, batch_size, self.generator.output_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update({
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "seed": self.seed,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def _batch_norm_layers(model) -> list:
    """Names of the BatchNormalization layers in ``model``, nested models and wrappers included."""
    found, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer.name)
        stack.extend(getattr(layer, "layers", []))
        if isinstance(getattr(layer, "layer", None), keras.layers.Layer):
            stack.append(layer.layer)
    return sorted(found)


def _check_generator_inputs(generator, latent_dim: int, num_classes: int) -> None:
    """A clear error when a functional generator's inputs disagree with ``latent_dim`` / ``num_classes``."""
    try:
        inputs = generator.input
    except (AttributeError, ValueError):  # a subclassed generator: nothing to check before it runs
        return
    conditional = isinstance(inputs, dict)
    if conditional != bool(num_classes) or (conditional and set(inputs) != {"z", "label"}):
        want = '{"z", "label"}' if num_classes else "`z` alone"
        got = sorted(inputs) if conditional else "one tensor"
        raise ValueError(f"With num_classes={num_classes} the generator must take {want}. Received a generator "
                         f"with inputs {got}: build it with `dcgan_generator(..., num_classes={num_classes})`.")
    z = inputs["z"] if conditional else inputs
    if z.shape[-1] != latent_dim:
        raise ValueError(f"`latent_dim` must match the generator's `z` input ({z.shape[-1]}). "
                         f"Received: latent_dim={latent_dim}")
