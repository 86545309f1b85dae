"""StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data").

One minibatch runs the phases of NVIDIA's training loop, in order:

1. **G main**: the non-saturating logistic loss ``softplus(-D(A(G(z, c)), c))`` (StyleGAN2 Appendix B), with style
   mixing (probability 0.9, StyleGAN Sec. 3.1) and the adaptive augmentation ``A`` in front of D.
2. **G reg** (every ``pl_interval`` = 4 minibatches): the path-length penalty (StyleGAN2 Sec. 3.2, Eq. 4) on half
   the batch, weight 2, times the interval (lazy regularisation, StyleGAN2 Sec. 3.1).
3. **D main**: ``softplus(D(A(G(z)))) + softplus(-D(A(x)))``.
4. **D reg** (every ``r1_interval`` = 16 minibatches): R1, ``gamma / 2 * ||grad_x D(A(x))||^2`` (Mescheder et al.
   2018), times the interval.

After the minibatch: the EMA generator moves towards G with a 10-kimg half-life (ADA Appendix D), and every
``ada_interval`` = 4 minibatches the augmentation probability p moves by
``sign(r_t - 0.6) * batch * 4 / (500 kimg)``, with ``r_t = E[sign(D(A(x)))]`` over those minibatches (ADA
Sec. 3, Eq. 1).

The reg phases exist only on their minibatches: the model keeps one compiled step per combination of phases and
picks it on the host from the step counter, so no optimiser update sits inside a ``tf.cond`` (which
``MirroredStrategy`` cannot run) and no minibatch pays for a penalty it does not apply. Each phase is its own Adam
step, with the learning rate and betas of ``networks.stylegan2.lazy_regularization``, as in the ADA code.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from keras_medgan.distribute import wrap_for_loss_scaling
from keras_medgan.gans._steps import (apply_scaled_gradients, check_generate_labels, generate_in_batches,
                                      replica_normal, scaled_loss, track_grad_norm)
from keras_medgan.layers.ada import AUGMENT_SPECS, ada_augment, adjust_p
from keras_medgan.losses.adversarial import vanilla_discriminator_loss, vanilla_generator_loss
from keras_medgan.losses.penalties import path_length_penalty, path_lengths, r1_penalty
from keras_medgan.networks.stylegan2 import StyleGAN2Generator

TRACKERS = ("loss/g/main", "loss/g/pl", "loss/d/main", "loss/d/r1", "scores/real", "scores/fake", "ada/p",
            "ada/r_t", "pl/mean", "progress/kimg", "grad_norm/g", "grad_norm/d")
VAL_TRACKERS = ("loss/g/main", "loss/d/main", "scores/real", "scores/fake")
EVAL_SEED = 97531


def ema_beta(batch_size: int, cur_nimg: int, ema_kimg: float = 10.0, ema_rampup: float | None = None) -> float:
    """The EMA decay per minibatch: a half-life of ``ema_kimg`` thousand images (ADA Appendix D: 10 kimg), shortened
    to ``cur_nimg * ema_rampup`` early in training when a ramp-up is set (the ADA code's ``auto`` config: 0.05)."""
    ema_nimg = ema_kimg * 1000.0
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


def clone_generator(generator: StyleGAN2Generator) -> StyleGAN2Generator:
    """A copy of ``generator`` with its own variables and the same values (the EMA generator's start)."""
    clone = StyleGAN2Generator.from_config(generator.get_config())
    inputs = [np.zeros((1, generator.z_dim), "float32")]
    if generator.num_classes:
        inputs.append(np.zeros((1, generator.num_classes), "float32"))
    clone(inputs if generator.num_classes else inputs[0])
    clone.set_weights(generator.get_weights())
    return clone


@keras.saving.register_keras_serializable(package="keras_medgan")
class StyleGAN2ADA(keras.Model):
    """StyleGAN2 with adaptive discriminator augmentation, conditional (``generator.num_classes > 0``) or not.

    Batches are pipeline dicts ``{"image": [B, H, W, C] in [-1, 1], "label": [B] int}``; a conditional model
    generates with the real batch's labels (the training label distribution, as the ADA code samples it).

    Args:
        generator: a ``networks.stylegan2.StyleGAN2Generator``.
        discriminator: ``networks.stylegan2.stylegan2_discriminator`` with the same ``num_classes``.
        g_ema: the EMA generator; a copy of ``generator`` when None.
        seed: int. Seed of the latent codes, style mixing and the augmentation draws.
    """

    def __init__(self, generator: StyleGAN2Generator, discriminator: keras.Model,
                 g_ema: StyleGAN2Generator | None = None, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(generator, StyleGAN2Generator):
            raise TypeError(f"`generator` must be a StyleGAN2Generator (networks.stylegan2.stylegan2_generator). "
                            f"Received: {type(generator).__name__}")
        d_conditional = len(discriminator.inputs) > 1
        if d_conditional != bool(generator.num_classes):
            raise ValueError(f"The generator has num_classes={generator.num_classes} but the discriminator is "
                             f"{'conditional' if d_conditional else 'unconditional'}; build both with the same "
                             "num_classes.")
        self.generator = generator
        self.discriminator = discriminator
        self.g_ema = g_ema if g_ema is not None else clone_generator(generator)
        self.g_ema.trainable = False
        self.num_classes = generator.num_classes
        self.z_dim = generator.z_dim
        self.num_ws = generator.num_ws
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.augment_seed = keras.random.SeedGenerator(self.seed + 1)
        self.ada_p = self.add_weight(name="ada_p", shape=(), initializer="zeros", trainable=False)
        self.pl_mean = self.add_weight(name="pl_mean", shape=(), initializer="zeros", trainable=False,
                                       aggregation="mean")
        self.step_counter = self.add_weight(name="step", shape=(), dtype="int64", initializer="zeros",
                                            trainable=False)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in TRACKERS}
        # r_t accumulates over ada_interval minibatches, across fit epochs: it is not in `metrics`, so Keras's
        # per-epoch reset_metrics leaves it alone.
        self.ada_signs = keras.metrics.Mean(name="ada_signs")
        self.built = True  # MirroredStrategy needs a built model before fit (DESIGN.md).

    def compile(self, g_optimizer, d_optimizer, *, r1_gamma: float = 10.0, r1_interval: int = 16,
                pl_weight: float = 2.0, pl_interval: int = 4, pl_batch_shrink: int = 2, pl_decay: float = 0.01,
                style_mixing_prob: float = 0.9, ema_kimg: float = 10.0, ema_rampup: float | None = None,
                augment: str = "bgc", augment_p: float = 0.0, ada_target: float | None = 0.6,
                ada_interval: int = 4, ada_kimg: float = 500.0, batch_size: int = 32, **kwargs):
        """Sets the optimisers and the StyleGAN2-ADA hyperparameters.

        Args:
            g_optimizer, d_optimizer: Adam (ADA code: lr 0.0025 for ``paper256``, 0.002 ``auto``; betas (0, 0.99);
                eps 1e-8), with ``lazy_regularization``'s adjustment when the penalty is lazy. Wrapped for loss
                scaling under mixed_float16.
            r1_gamma: float. R1 weight (``networks.stylegan2.r1_gamma_heuristic``: 0.0002 R^2 / batch; ADA
                ``paper256``: 1). 0 turns R1 off.
            r1_interval, pl_interval: int. Lazy regularisation intervals (StyleGAN2 Sec. 3.1: 16 and 4).
            pl_weight: float. Path-length weight (StyleGAN2 Sec. 3.2: 2). 0 turns it off.
            pl_batch_shrink: int. The penalty runs on ``batch / pl_batch_shrink`` images (2).
            pl_decay: float. Decay of the running mean path length (0.01).
            style_mixing_prob: float. Probability of mixing two latents in a minibatch (0.9).
            ema_kimg, ema_rampup: the EMA generator's half-life in kimg and ramp-up (``ema_beta``).
            augment: str. ``bgc`` (ADA's default pipeline), ``bg`` (no colour transforms) or ``none``.
            augment_p: float. Initial (or, with ``ada_target=None``, fixed) augmentation probability.
            ada_target: float or None. Target of r_t (ADA Sec. 3: 0.6); None keeps p fixed.
            ada_interval: int. Minibatches between p updates (4).
            ada_kimg: float. kimg for p to move from 0 to 1 (500).
            batch_size: int. Global batch size: the unit of kimg, of the EMA half-life and of the p step.
            **kwargs: passed to ``keras.Model.compile``; ``steps_per_execution`` must stay 1.
        """
        if augment not in AUGMENT_SPECS:
            raise ValueError(f"`augment` must be one of {tuple(AUGMENT_SPECS)}. Received: augment={augment!r}")
        for name, value in (("r1_interval", r1_interval), ("pl_interval", pl_interval),
                            ("pl_batch_shrink", pl_batch_shrink), ("ada_interval", ada_interval),
                            ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
        for name, value in (("r1_gamma", r1_gamma), ("pl_weight", pl_weight), ("ema_kimg", ema_kimg)):
            if not value >= 0:
                raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
        for name, value in (("style_mixing_prob", style_mixing_prob), ("augment_p", augment_p)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")
        if ada_target is not None and not 0.0 < ada_target < 1.0:
            raise ValueError(f"`ada_target` must be in (0, 1) or None. Received: ada_target={ada_target!r}")
        if kwargs.get("steps_per_execution", 1) != 1:
            raise ValueError("StyleGAN2ADA picks its phases on the host every minibatch: steps_per_execution "
                             "must be 1.")
        super().compile(**kwargs)
        self.g_optimizer = wrap_for_loss_scaling(g_optimizer)
        self.d_optimizer = wrap_for_loss_scaling(d_optimizer)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.r1_gamma, self.r1_interval = float(r1_gamma), int(r1_interval)
        self.pl_weight, self.pl_interval = float(pl_weight), int(pl_interval)
        self.pl_batch_shrink, self.pl_decay = int(pl_batch_shrink), float(pl_decay)
        self.style_mixing_prob = float(style_mixing_prob)
        self.ema_kimg, self.ema_rampup = float(ema_kimg), ema_rampup
        self.augment_spec = augment
        self.ada_target, self.ada_interval, self.ada_kimg = ada_target, int(ada_interval), float(ada_kimg)
        self.batch_size = int(batch_size)
        self.ada_p.assign(float(augment_p))
        self._ema_fn = None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.g_ema(inputs, training=training)

    # ------------------------------------------------------------------------------------------ pieces

    @property
    def kimg(self) -> float:
        """Thousands of real images shown to D so far."""
        return int(self.step_counter.numpy()) * self.batch_size / 1000.0

    def _unpack(self, batch):
        """``(images, one-hot classes or None)`` of a pipeline batch."""
        images = tf.convert_to_tensor(batch["image"])
        if not self.num_classes:
            return images, None
        return images, tf.one_hot(tf.cast(batch["label"], tf.int32), self.num_classes, dtype=tf.float32)

    def _augment(self, images):
        if self.augment_spec == "none":
            return images
        return ada_augment(images, self.ada_p, seed=self.augment_seed, spec=self.augment_spec)

    def _discriminate(self, images, c, training=True):
        return self.discriminator([images, c] if self.num_classes else images, training=training)

    def _mapped(self, batch_size, c, update_w_avg=True):
        """ws for fresh latents, with style mixing: from a random cutoff in [1, num_ws) on, with probability
        ``style_mixing_prob``, the rows come from a second latent (StyleGAN Sec. 3.1; ADA code ``run_G``)."""
        z = replica_normal(batch_size, self.z_dim, self.seed_generator)
        ws = self.generator.map(z, c, training=True)
        if update_w_avg:
            self.generator.update_w_avg(ws)
        if self.style_mixing_prob > 0 and self.num_ws > 1:
            cutoff = keras.random.randint((), 1, self.num_ws, seed=self.seed_generator)
            mixing = keras.random.uniform((), seed=self.seed_generator) < self.style_mixing_prob
            cutoff = tf.where(mixing, cutoff, self.num_ws)
            z2 = replica_normal(batch_size, self.z_dim, self.seed_generator)
            ws2 = self.generator.map(z2, c, training=True)
            mask = tf.range(self.num_ws)[None, :, None] >= tf.cast(cutoff, tf.int32)
            ws = tf.where(mask, ws2, ws)
        return ws

    # ------------------------------------------------------------------------------------------ phases

    def generator_main(self, batch_size, c):
        """Phase G main: non-saturating loss of augmented fakes."""
        with tf.GradientTape() as tape:
            fake = self.generator.synthesis(self._mapped(batch_size, c), training=True)
            fake_logits = self._discriminate(self._augment(fake), c)
            loss = vanilla_generator_loss(fake_logits)
            scaled = scaled_loss(self.g_optimizer, loss)
        norm = apply_scaled_gradients(self.g_optimizer, tape, scaled, self.generator.trainable_variables)
        return loss, norm, fake_logits

    def generator_reg(self, batch_size, c):
        """Phase G reg: the path-length penalty of StyleGAN2 Eq. 4, ``pl_weight * pl_interval`` times its mean."""
        pl_batch = tf.maximum(batch_size // self.pl_batch_shrink, 1)
        c_pl = None if c is None else c[:pl_batch]
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                ws = self._mapped(pl_batch, c_pl, update_w_avg=False)
                inner.watch(ws)
                fake = tf.cast(self.generator.synthesis(ws, training=True), tf.float32)
                pixels = tf.cast(tf.shape(fake)[1] * tf.shape(fake)[2], tf.float32)
                noise = replica_normal_like(fake, self.seed_generator) / tf.sqrt(pixels)
                projected = tf.reduce_sum(fake * noise)
            lengths = path_lengths(inner.gradient(projected, ws))
            penalty, new_mean = path_length_penalty(lengths, self.pl_mean, self.pl_decay)
            loss = tf.reduce_mean(penalty) * self.pl_weight * self.pl_interval
            scaled = scaled_loss(self.g_optimizer, loss)
        norm = apply_scaled_gradients(self.g_optimizer, tape, scaled, self.generator.trainable_variables,
                                      skip_missing=True)  # the constant and the last toRGB bias have none
        self.pl_mean.assign(new_mean)
        return tf.reduce_mean(penalty), norm

    def discriminator_main(self, real, c):
        """Phase D main: logistic loss on augmented reals and (detached) augmented fakes."""
        fake = tf.stop_gradient(self.generator.synthesis(self._mapped(tf.shape(real)[0], c), training=True))
        with tf.GradientTape() as tape:
            fake_logits = self._discriminate(self._augment(fake), c)
            real_logits = self._discriminate(self._augment(real), c)
            loss = vanilla_discriminator_loss(real_logits, fake_logits)
            scaled = scaled_loss(self.d_optimizer, loss)
        norm = apply_scaled_gradients(self.d_optimizer, tape, scaled, self.discriminator.trainable_variables)
        return loss, norm, real_logits, fake_logits

    def discriminator_reg(self, real, c):
        """Phase D reg: R1 on augmented reals, ``gamma / 2 * r1_interval`` times its mean."""
        with tf.GradientTape() as tape:
            with tf.GradientTape() as inner:
                inner.watch(real)
                real_logits = self._discriminate(self._augment(real), c)
                total = tf.reduce_sum(tf.cast(real_logits, tf.float32))
            penalty = r1_penalty(inner.gradient(total, real))
            loss = tf.reduce_mean(penalty) * (self.r1_gamma / 2.0) * self.r1_interval
            scaled = scaled_loss(self.d_optimizer, loss)
        norm = apply_scaled_gradients(self.d_optimizer, tape, scaled, self.discriminator.trainable_variables,
                                      skip_missing=True)  # output biases do not change grad_x D
        return tf.reduce_mean(penalty), norm, real_logits

    def train_phases(self, batch, g_reg: bool, d_reg: bool):
        """One minibatch: G main, [G reg], D main, [D reg]."""
        real, c = self._unpack(batch)
        batch_size = tf.shape(real)[0]
        t = self.trackers

        g_loss, g_norm, _ = self.generator_main(batch_size, c)
        t["loss/g/main"].update_state(g_loss)
        track_grad_norm(t["grad_norm/g"], g_norm)
        if g_reg:
            pl, pl_norm = self.generator_reg(batch_size, c)
            t["loss/g/pl"].update_state(pl)

        d_loss, d_norm, real_logits, fake_logits = self.discriminator_main(real, c)
        t["loss/d/main"].update_state(d_loss)
        track_grad_norm(t["grad_norm/d"], d_norm)
        t["scores/real"].update_state(tf.cast(real_logits, tf.float32))
        t["scores/fake"].update_state(tf.cast(fake_logits, tf.float32))
        self.ada_signs.update_state(tf.sign(tf.cast(real_logits, tf.float32)))
        if d_reg:
            r1, r1_norm, reg_logits = self.discriminator_reg(real, c)
            t["loss/d/r1"].update_state(r1)
            self.ada_signs.update_state(tf.sign(tf.cast(reg_logits, tf.float32)))

        # Current values, not epoch means: each of these trackers holds this minibatch's value only.
        for name, value in (("ada/p", self.ada_p), ("pl/mean", self.pl_mean),
                            ("progress/kimg", tf.cast(self.step_counter + 1, tf.float32) * (self.batch_size / 1000.0))):
            t[name].reset_state()
            t[name].update_state(value)
        return {name: tracker.result() for name, tracker in t.items()}

    def train_step(self, batch):
        """A minibatch with the phases its step number asks for (``fit`` goes through ``make_train_function``,
        which picks the compiled variant on the host; this is the eager / single-call entry point)."""
        step = int(self.step_counter.numpy())
        logs = self.train_phases(batch, *self._reg_phases(step))
        self.after_minibatch(step)
        return logs

    def _reg_phases(self, step: int) -> tuple:
        return (self.pl_weight > 0 and step % self.pl_interval == 0,
                self.r1_gamma > 0 and step % self.r1_interval == 0)

    def make_train_function(self, force=False):
        """One compiled step per phase combination (G reg and/or D reg or neither), picked on the host."""
        if self.train_function is not None and not force:
            return self.train_function
        variants = {}

        def function(iterator):
            step = int(self.step_counter.numpy())
            key = self._reg_phases(step)
            if key not in variants:
                variants[key] = self._make_function(functools.partial(self.train_phases, g_reg=key[0],
                                                                      d_reg=key[1]))
            logs = variants[key](iterator)
            self.after_minibatch(step)
            return logs

        self.train_function = function
        return function

    def after_minibatch(self, step: int) -> None:
        """Host side of a minibatch: EMA generator, the step counter and, every ``ada_interval`` minibatches, p."""
        beta = ema_beta(self.batch_size, step * self.batch_size, self.ema_kimg, self.ema_rampup)
        self.update_ema(beta)
        self.step_counter.assign(step + 1)
        if self.ada_target is not None and self.augment_spec != "none" and (step + 1) % self.ada_interval == 0:
            r_t = float(self.ada_signs.result())
            self.ada_p.assign(adjust_p(float(self.ada_p.numpy()), r_t, self.ada_target, self.batch_size,
                                       self.ada_interval, self.ada_kimg))
            self.ada_signs.reset_state()
            self.trackers["ada/r_t"].update_state(r_t)

    def update_ema(self, beta: float) -> None:
        """``g_ema = beta * g_ema + (1 - beta) * G`` for trainable weights; buffers (``w_avg``, fixed noise) are
        copied (ADA code, ``training_loop``)."""
        if self._ema_fn is None:
            pairs = list(zip(self.g_ema.variables, self.generator.variables))  # g_ema is frozen: pair by order
            buffers = [(e, g) for e, g in pairs if not g.trainable]
            pairs = [(e, g) for e, g in pairs if g.trainable]

            @tf.function
            def ema(beta):
                for e, g in pairs:
                    e.assign(beta * e + (1.0 - beta) * g)
                for e, g in buffers:
                    e.assign(g)

            self._ema_fn = ema
        self._ema_fn(tf.constant(beta, tf.float32))

    def test_step(self, batch):
        """Validation: D on real val images and on EMA-generator images (fixed noise, no augmentation)."""
        real, c = self._unpack(batch)
        z = replica_normal(tf.shape(real)[0], self.z_dim, EVAL_SEED)
        fake = self.g_ema.synthesis(self.g_ema.map(z, c), training=False)
        real_logits = self._discriminate(real, c, training=False)
        fake_logits = self._discriminate(fake, c, training=False)
        t = self.trackers
        t["loss/d/main"].update_state(vanilla_discriminator_loss(real_logits, fake_logits))
        t["loss/g/main"].update_state(vanilla_generator_loss(fake_logits))
        t["scores/real"].update_state(tf.cast(real_logits, tf.float32))
        t["scores/fake"].update_state(tf.cast(fake_logits, tf.float32))
        return {name: t[name].result() for name in VAL_TRACKERS}

    # ------------------------------------------------------------------------------------------ sampling

    def generate(self, labels, seed: int | None = None, batch_size: int = 64, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None) -> np.ndarray:
        """Images of the EMA generator (fixed noise buffers), float32 ``[N, H, W, C]`` in about [-1, 1].

        Args:
            labels: class indices (conditional) or the number of images (unconditional).
            seed: int or None. The same seed gives the same images.
            batch_size: int. Images per call (the result does not depend on it).
            truncation_psi, truncation_cutoff: the truncation trick (StyleGAN Sec. 3.1 / Appendix B).
        """
        count, labels = check_generate_labels(labels, self.num_classes)
        z = keras.random.normal((count, self.z_dim), seed=seed, dtype="float32")

        def run(chunk, i):
            c = None if labels is None else tf.one_hot(labels[i:i + batch_size], self.num_classes)
            ws = self.g_ema.map(chunk, c, truncation_psi, truncation_cutoff)
            return self.g_ema.synthesis(ws, training=False)

        return generate_in_batches(run, z, batch_size, self.g_ema.synthesis.output_shape[1:])

    def training_state(self) -> list:
        """Variables exact resume needs beyond weights and optimisers: noise and augmentation streams, ADA p and
        its running r_t, the path-length mean and the step counter."""
        return [self.seed_generator.state, self.augment_seed.state, self.ada_p, self.pl_mean, self.step_counter,
                *self.ada_signs.variables]


def replica_normal_like(x, seed):
    """N(0, 1) noise shaped like ``x`` (float32), different on every replica."""
    shape = tf.shape(x)
    flat = replica_normal(shape[0], tf.reduce_prod(shape[1:]), seed)
    return tf.reshape(flat, shape)
