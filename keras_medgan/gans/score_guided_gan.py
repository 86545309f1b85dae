"""XRAY-GAN's unconditional score-guided GAN, UCGAN (paper 004, Chen & Wan, Sec. 4.2, Eq. 7-11, Sec. 5.4).

Three networks: a generator G (noise -> image), a discriminator D and a
classifier C that learns the real labels and, through pseudo-labels, from G.
One ``train_step`` on a real labelled batch ``(x, y)`` is:

    phase = the last of `schedule` whose start <= step         (footnote 3: G:D 3:1, then flipped, then 1:1)
    for k in 1..d_steps(phase):  D step:  min_D  lambda * L_D(D(x), D(G(z_k)))
    C step:  min_C  tau * (CE(C(x), y) + xi * CE(C(G(z)), argmax C(G(z)))  over fakes with max prob >= t)
    for k in 1..g_steps(phase):  G step:  min_G  delta * L_G(D(G(z_k)))                    (Eq. 11)
                                                + alpha * L_IS(C(G(z_k)))                 (Eq. 7)
                                                + beta  * MMD2_u(C(x), C(G(z_k)))         (Eq. 8)
                                                + eta   * l_style(phi(G(z_k)), phi(x))    (Eq. 9)
                                                + gamma * (l_style(phi(I^), phi(x)) + l_content(phi(I^), phi(I_g)))

with fresh noise ``z_k`` for every update; ``I^ = G(z_k)`` under the weights
being updated and ``I_g = G(z_k)`` under the step's starting weights (see
``losses.style_content_loss`` for that reading of the paper's vague ``I^``).
C and phi are only *read* by the G steps (inference mode, no update).

Code (vs. paper):
    - Eq. 11 writes one total loss; each network minimises its own terms with
      its own optimiser (the usual alternating GAN updates): D its lambda term,
      C its tau term, G the rest.
    - Pseudo-labels: "fed to the classifier immediately in each mini-batch"
      (Sec. 4.2). Every C step labels a fresh generated batch of the real
      batch's size with the current C (training mode, the same forward pass the
      loss uses; labels and mask carry no gradient). The pseudo loss is the sum
      of the kept fakes' cross-entropies divided by the batch size, so it is 0
      when none passes ``t`` and a lone confident fake does not get the weight
      of a whole batch. Real images labelled -1 (unlabelled, data contract) are
      left out of the real loss.
    - Schedule: the paper gives the 3:1 -> flipped -> 1:1 order but not the
      boundaries; ``footnote3_schedule(total_steps)`` splits into thirds. One
      ``train_step`` runs ``max(d_steps)`` D slots and ``max(g_steps)`` G slots;
      each slot is a ``tf.cond`` that either updates or does nothing, chosen by
      the phase of the step counter, so it compiles once and works eagerly and
      in ``tf.function``. Optimiser ``iterations`` count real updates only.
      ``MirroredStrategy`` cannot run an optimiser update inside ``tf.cond`` on
      this TensorFlow (see ``ConditionalDCGAN``), so ``compile`` refuses more
      than one replica.
    - Style features: a ``feature_model`` passed in (the paper: a VGG loss
      network following Johnson et al.; ImageNet weights must be available on
      the user's machine) or, when there is none, C's own intermediate
      activations through a sub-model sharing C's weights. ``style_source``
      says which, and reports should print it.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_medgan.distribute import wrap_for_loss_scaling
from keras_medgan.gans._steps import (apply_scaled_gradients, generate_in_batches, replica_normal, scaled_loss,
                                      track_grad_norm)
from keras_medgan.gans.conditional_dcgan import EVAL_SEED, _check_generator_inputs
from keras_medgan.losses import (ADVERSARIAL_LOSSES, gaussian_mmd2, get_adversarial_loss, inception_score_loss,
                                 style_content_loss, style_loss)
from keras_medgan.losses.guidance import PAPER_MMD_SIGMA

LOSS_NAMES = (
    "loss/g/total", "loss/g/adversarial", "loss/g/is", "loss/g/mmd", "loss/g/style", "loss/g/content",
    "loss/d/total", "loss/c/real", "loss/c/pseudo", "loss/c/total", "pseudo_label_rate",
    "grad_norm/g", "grad_norm/d", "grad_norm/c",
)
# Paper 004, Sec. 5.4: alpha, beta, gamma, eta, delta, lambda, tau = -0.25, 3, 0.001, 0.015, 1, 0.5, 1; xi = 0.125;
# t = 0.75 (Sec. 5.2.1 / 5.4).
PAPER_WEIGHTS = {"alpha": -0.25, "beta": 3.0, "gamma": 0.001, "eta": 0.015, "delta": 1.0, "lambda_": 0.5,
                 "tau": 1.0, "xi": 0.125}
PAPER_THRESHOLD = 0.75
# Paper 004, Sec. 5.4: learning rates of G, D, C; Adam with L2 weight decay 1e-3.
PAPER_LEARNING_RATES = {"g": 5e-4, "d": 1e-3, "c": 5e-4}
PAPER_WEIGHT_DECAY = 1e-3


def footnote3_schedule(total_steps: int) -> tuple:
    """Paper 004's G:D schedule (footnote 3): 3:1, then 1:3, then 1:1, each for a third of ``total_steps``.

    The paper gives the order but not where the phases change; thirds are our choice.
    Returns ``((0, 3, 1), (total_steps // 3, 1, 3), (2 * total_steps // 3, 1, 1))`` (phases of
    ``(start_step, g_steps, d_steps)``).
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 3:
        raise ValueError(f"`total_steps` must be an integer >= 3. Received: total_steps={total_steps!r}")
    return ((0, 3, 1), (int(total_steps) // 3, 1, 3), (2 * int(total_steps) // 3, 1, 1))


def _check_schedule(schedule) -> tuple:
    try:
        phases = tuple(tuple(int(v) for v in phase) for phase in schedule)
    except (TypeError, ValueError):
        phases = ()
    ok = (phases and all(len(p) == 3 for p in phases) and phases[0][0] == 0
          and all(a[0] < b[0] for a, b in zip(phases, phases[1:]))
          and all(g >= 1 and d >= 1 for _, g, d in phases))
    if not ok:
        raise ValueError("`schedule` must be a non-empty sequence of (start_step, g_steps, d_steps) with start "
                         "steps strictly increasing from 0 and g_steps, d_steps >= 1, e.g. ((0, 3, 1), (1000, 1, 3),"
                         f" (2000, 1, 1)). Received: schedule={schedule!r}")
    return phases


@keras.saving.register_keras_serializable(package="keras_medgan")
class ScoreGuidedGAN(keras.Model):
    """UCGAN: an unconditional GAN guided by a classifier's IS, MMD and a Gram-matrix style loss.

    Batches are dicts from `keras_medgan.data.pipelines.make_dataset`: `"image"`
    float32 in [-1, 1] and `"label"` int class indices in `[0, num_classes)`
    (-1 = unlabelled: used by D and the MMD, not by C's real loss).

    Args:
        generator: keras.Model. `z [B, latent_dim]` -> images in [-1, 1]
            (`networks.dcgan_generator(..., num_classes=0)`).
        discriminator: keras.Model. Images -> float32 logits `[B, 1]`
            (`networks.dcgan_discriminator(..., num_classes=0)`).
        classifier: keras.Model. Images -> class probabilities `[B, num_classes]`
            (softmax output; `networks.domain_classifier` for demos and tests, a
            ResNet-50 head for the paper).
        latent_dim: int. Size of `z`. Defaults to `100`.
        num_classes: int >= 2. Classes of C. Defaults to `2`.
        feature_model: keras.Model or None. Images in [-1, 1] -> a feature map
            or a list of them (the style/content loss network phi, e.g. VGG-16
            relu1_2..relu4_3 with ImageNet weights, input preprocessing inside
            the model). None: C's own intermediate activations (see
            `style_layers`). Defaults to None.
        style_layers: sequence of layer names of `classifier` or None. Used only
            without a `feature_model`. None picks, for each spatial resolution
            inside C, its last 4-D layer (for `domain_classifier`:
            `block1_relu2`, `block2_relu2`, ..., and the last pool). Defaults to None.
        content_layer: int or None. Index into the style layers for the content
            loss; None is `len(layers) // 2`. Defaults to None.
        seed: int or None. Seed of the noise stream; its state is one of
            `model.variables`. Defaults to None.
        **kwargs: passed to `keras.Model`.

    Attributes:
        style_source: `"feature_model"` or `"classifier"`: where the style
            features come from (also in `get_config`); reports should say it.

    Example:

    >>> gan = ScoreGuidedGAN(dcgan_generator(64, 1, latent_dim=100), dcgan_discriminator(64, 1),
    ...                      domain_classifier(64, 1, 3), latent_dim=100, num_classes=3, seed=0)
    >>> gan.compile(keras.optimizers.Adam(5e-4, weight_decay=1e-3), keras.optimizers.Adam(1e-3, weight_decay=1e-3),
    ...             keras.optimizers.Adam(5e-4, weight_decay=1e-3), schedule=footnote3_schedule(3000))
    >>> gan.fit(train_ds, steps_per_epoch=100, epochs=30)

    Reference:
        - Paper 004: Chen & Wan, "XRAY-GAN", Sec. 4.2 (Eq. 7-11), Sec. 5.4 and footnotes 3-4.
        - [Johnson et al., 2016. Perceptual Losses for Real-Time Style Transfer](https://arxiv.org/abs/1603.08155).
        - [Gretton et al., 2012. A Kernel Two-Sample Test](https://jmlr.org/papers/v13/gretton12a.html), Lemma 6.
        - Lee, 2013. Pseudo-Label: the simple and efficient semi-supervised learning method.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, classifier: keras.Model,
                 latent_dim: int = 100, num_classes: int = 2, feature_model: keras.Model | None = None,
                 style_layers=None, content_layer: int | None = None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        for field, value, minimum in (("latent_dim", latent_dim, 1), ("num_classes", num_classes, 2)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"`{field}` must be an integer >= {minimum}. Received: {field}={value!r}")
        _check_generator_inputs(generator, int(latent_dim), 0)
        out = getattr(classifier, "output_shape", None)
        if isinstance(out, tuple) and out and out[-1] is not None and out[-1] != num_classes:
            raise ValueError(f"The classifier outputs {out[-1]} classes but num_classes={num_classes}.")
        self.generator = generator
        self.discriminator = discriminator
        self.classifier = classifier
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)
        self.content_layer = content_layer
        self.seed = seed
        self.feature_model = feature_model
        if feature_model is not None:
            self.style_source, self.style_layers = "feature_model", None
            self._features = feature_model
        else:
            self.style_source = "classifier"
            self.style_layers = list(style_layers) if style_layers is not None else _default_style_layers(classifier)
            self._features = _classifier_features(classifier, self.style_layers)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.step_counter = keras.Variable(0, dtype="int64", trainable=False, name="step_counter")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.built = True

    def compile(
        self,
        g_optimizer: keras.optimizers.Optimizer,
        d_optimizer: keras.optimizers.Optimizer,
        c_optimizer: keras.optimizers.Optimizer,
        alpha: float = PAPER_WEIGHTS["alpha"],
        beta: float = PAPER_WEIGHTS["beta"],
        gamma: float = PAPER_WEIGHTS["gamma"],
        eta: float = PAPER_WEIGHTS["eta"],
        delta: float = PAPER_WEIGHTS["delta"],
        lambda_: float = PAPER_WEIGHTS["lambda_"],
        tau: float = PAPER_WEIGHTS["tau"],
        xi: float = PAPER_WEIGHTS["xi"],
        threshold: float = PAPER_THRESHOLD,
        schedule=((0, 1, 1),),
        gan_loss: str = "vanilla",
        mmd_sigma: float | None = PAPER_MMD_SIGMA,
        **kwargs,
    ):
        """Sets the optimisers, the loss weights of Eq. 10-11, the pseudo-label rule and the G:D schedule.

        Args:
            g_optimizer, d_optimizer, c_optimizer: Keras optimisers (wrapped for
                loss scaling under mixed_float16). Paper 004 (Sec. 5.4): Adam with
                learning rates 5e-4 (G), 1e-3 (D), 5e-4 (C) and "L2 weight decay
                of 0.001" (`PAPER_LEARNING_RATES`, `PAPER_WEIGHT_DECAY`). In
                PyTorch, the paper's framework, `Adam(weight_decay=...)` adds
                `wd * w` to the gradient (L2, scaled by Adam's normaliser); Keras
                3's `Adam(weight_decay=wd)` decays the weights directly by
                `lr * wd * w` (decoupled, AdamW-style), which is not the same
                optimiser. Recipes use the Keras form; an exact L2 needs a
                kernel regulariser on the networks instead.
            alpha: IS loss weight (Eq. 7); negative maximises IS. Defaults to -0.25.
            beta: MMD weight (Eq. 8). Defaults to 3.
            gamma: style-and-content weight (Eq. 10). Defaults to 0.001.
            eta: style Gram loss weight (Eq. 9). Defaults to 0.015.
            delta: G's adversarial weight. Defaults to 1.
            lambda_: D's loss weight. Defaults to 0.5.
            tau: C's loss weight. Defaults to 1.
            xi: weight of the pseudo-labelled fakes in C's loss. Defaults to 0.125.
            threshold: float in (0, 1]. A fake is pseudo-labelled when C's maximum
                class probability is >= threshold. Defaults to 0.75.
            schedule: phases `(start_step, g_steps, d_steps)`: from train step
                `start_step` on, each step runs `d_steps` D updates and `g_steps`
                G updates. `footnote3_schedule(total)` gives the paper's 3:1 ->
                1:3 -> 1:1. Defaults to `((0, 1, 1),)`.
            gan_loss: `"vanilla"` (BCE, the DCGAN loss of the paper), `"hinge"`
                or `"lsgan"`. Defaults to `"vanilla"`.
            mmd_sigma: Gaussian kernel bandwidth of the MMD; the paper's kernel
                `exp(-||x - x'||^2)` is the default; None = median heuristic.
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, ...).
        """
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            raise ValueError(
                "ScoreGuidedGAN does not support multi-replica strategies (MirroredStrategy): its G:D schedule "
                "updates optimisers inside tf.cond, which MirroredStrategy cannot run on this TensorFlow. "
                "Train it on one device (no strategy, or OneDeviceStrategy).")
        if gan_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"`gan_loss` must be one of {tuple(ADVERSARIAL_LOSSES)}. Received: gan_loss={gan_loss!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1]. Received: threshold={threshold}")
        for field, value in (("lambda_", lambda_), ("tau", tau), ("xi", xi), ("delta", delta)):
            if not value >= 0:
                raise ValueError(f"`{field}` must be >= 0. Received: {field}={value}")
        if mmd_sigma is not None and not mmd_sigma > 0:
            raise ValueError(f"`mmd_sigma` must be > 0 or None. Received: mmd_sigma={mmd_sigma}")
        self.schedule = _check_schedule(schedule)
        self.g_loss_fn, self.d_loss_fn = get_adversarial_loss(gan_loss)
        super().compile(**kwargs)
        self.g_optimizer = wrap_for_loss_scaling(g_optimizer)
        self.d_optimizer = wrap_for_loss_scaling(d_optimizer)
        self.c_optimizer = wrap_for_loss_scaling(c_optimizer)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.c_optimizer.build(self.classifier.trainable_variables)
        self.guidance_weights = {"alpha": float(alpha), "beta": float(beta), "gamma": float(gamma), "eta": float(eta),
                         "delta": float(delta), "lambda_": float(lambda_), "tau": float(tau), "xi": float(xi)}
        self.threshold = float(threshold)
        self.gan_loss = gan_loss
        self.mmd_sigma = mmd_sigma

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def style_features(self, images) -> list:
        """phi(images) as a list of ``[B, H, W, C]`` maps (inference mode: the loss network is not trained here)."""
        features = self._features(images, training=False)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    # ----------------------------------------------------------------------------------------------- phases

    def phase_steps(self, step=None):
        """``(g_steps, d_steps)`` int32 tensors for train step ``step`` (default: the model's step counter)."""
        step = tf.convert_to_tensor(self.step_counter if step is None else step, tf.int64)
        starts = tf.constant([p[0] for p in self.schedule], tf.int64)
        index = tf.reduce_sum(tf.cast(step >= starts, tf.int32)) - 1
        return (tf.gather(tf.constant([p[1] for p in self.schedule], tf.int32), index),
                tf.gather(tf.constant([p[2] for p in self.schedule], tf.int32), index))

    # ----------------------------------------------------------------------------------------------- losses

    def discriminator_loss_terms(self, real, fake, training: bool) -> dict:
        """lambda * L_D on real and (detached) generated images."""
        real_logits = self.discriminator(real, training=training)
        fake_logits = self.discriminator(tf.stop_gradient(fake), training=training)
        return {"total": self.guidance_weights["lambda_"] * self.d_loss_fn(real_logits, fake_logits)}

    def classifier_loss_terms(self, real, labels, fake, training: bool) -> dict:
        """tau * (CE on labelled real images + xi * CE on fakes pseudo-labelled at >= threshold)."""
        labelled = tf.cast(labels >= 0, tf.float32)
        real_probs = self.classifier(real, training=training)
        real_ce = keras.losses.sparse_categorical_crossentropy(tf.maximum(labels, 0), real_probs)
        real_loss = tf.reduce_sum(tf.cast(real_ce, tf.float32) * labelled) / tf.maximum(tf.reduce_sum(labelled), 1.0)

        fake_probs = self.classifier(tf.stop_gradient(fake), training=training)
        confidence = tf.stop_gradient(tf.reduce_max(tf.cast(fake_probs, tf.float32), axis=-1))
        pseudo_labels = tf.stop_gradient(tf.argmax(fake_probs, axis=-1, output_type=tf.int32))
        kept = tf.cast(confidence >= self.threshold, tf.float32)
        fake_ce = tf.cast(keras.losses.sparse_categorical_crossentropy(pseudo_labels, fake_probs), tf.float32)
        pseudo_loss = tf.reduce_sum(fake_ce * kept) / tf.cast(tf.shape(fake)[0], tf.float32)
        total = self.guidance_weights["tau"] * (real_loss + self.guidance_weights["xi"] * pseudo_loss)
        return {"real": real_loss, "pseudo": pseudo_loss, "total": total, "rate": tf.reduce_mean(kept)}

    def generator_loss_terms(self, z, real, real_probs, real_features, content_target, training: bool) -> dict:
        """G's terms of Eq. 10-11 on ``G(z)``; ``content_target``: phi(I_g), or None to skip the gamma term."""
        w = self.guidance_weights
        fake = self.generator(z, training=training)
        adversarial = self.g_loss_fn(self.discriminator(fake, training=training))
        fake_probs = self.classifier(fake, training=False)
        inception = inception_score_loss(fake_probs)
        mmd = gaussian_mmd2(real_probs, fake_probs, sigma=self.mmd_sigma)
        fake_features = self.style_features(fake)
        style = style_loss(fake_features, real_features)
        content = (style_content_loss(fake_features, real_features, content_target, self.content_layer)
                   if content_target is not None else tf.constant(0.0))
        total = (w["delta"] * adversarial + w["alpha"] * inception + w["beta"] * mmd + w["eta"] * style
                 + w["gamma"] * content)
        return {"total": total, "adversarial": adversarial, "is": inception, "mmd": mmd, "style": style,
                "content": content}

    # ----------------------------------------------------------------------------------------------- updates

    def _discriminator_step(self, real):
        z = replica_normal(tf.shape(real)[0], self.latent_dim, self.seed_generator)
        fake = self.generator(z, training=True)
        with tf.GradientTape() as tape:
            terms = self.discriminator_loss_terms(real, fake, training=True)
            loss = scaled_loss(self.d_optimizer, terms["total"])
        return terms, apply_scaled_gradients(self.d_optimizer, tape, loss, self.discriminator.trainable_variables)

    def _classifier_step(self, real, labels):
        z = replica_normal(tf.shape(real)[0], self.latent_dim, self.seed_generator)
        fake = self.generator(z, training=True)
        with tf.GradientTape() as tape:
            terms = self.classifier_loss_terms(real, labels, fake, training=True)
            loss = scaled_loss(self.c_optimizer, terms["total"])
        return terms, apply_scaled_gradients(self.c_optimizer, tape, loss, self.classifier.trainable_variables)

    def _generator_step(self, z, real, real_probs, real_features, content_target):
        with tf.GradientTape() as tape:
            terms = self.generator_loss_terms(z, real, real_probs, real_features, content_target, training=True)
            loss = scaled_loss(self.g_optimizer, terms["total"])
        return terms, apply_scaled_gradients(self.g_optimizer, tape, loss, self.generator.trainable_variables)

    def _maybe(self, run, fn, zeros):
        """``fn()`` when ``run`` else ``zeros``: a skipped slot of the phase schedule updates nothing."""
        return tf.cond(run, fn, lambda: zeros)

    def train_step(self, batch):
        real = tf.convert_to_tensor(batch["image"])
        labels = tf.cast(batch["label"], tf.int32)
        batch_size = tf.shape(real)[0]
        g_steps, d_steps = self.phase_steps()
        max_g = max(p[1] for p in self.schedule)
        max_d = max(p[2] for p in self.schedule)

        # 1. d_steps D updates (of max_d slots), each with fresh z.
        for k in range(max_d):
            run = k < d_steps
            terms, norm = self._maybe(run, lambda: self._discriminator_step(real),
                                      ({"total": tf.constant(0.0)}, tf.constant(0.0)))
            weight = tf.cast(run, tf.float32)
            self.trackers["loss/d/total"].update_state(terms["total"], sample_weight=weight)
            self.trackers["grad_norm/d"].update_state(tf.where(tf.math.is_finite(norm), norm, 0.0),
                                                      sample_weight=weight * tf.cast(tf.math.is_finite(norm),
                                                                                     tf.float32))

        # 2. One C update: real labels + pseudo-labelled fakes at >= threshold, weighted by xi.
        c_terms, c_norm = self._classifier_step(real, labels)
        for key in ("real", "pseudo", "total"):
            self.trackers[f"loss/c/{key}"].update_state(c_terms[key])
        self.trackers["pseudo_label_rate"].update_state(c_terms["rate"])
        track_grad_norm(self.trackers["grad_norm/c"], c_norm)

        # 3. g_steps G updates (of max_g slots) against the updated D and C, each with fresh z_k.
        real_probs = tf.stop_gradient(self.classifier(real, training=False))
        real_features = [tf.stop_gradient(f) for f in self.style_features(real)]
        zs = [replica_normal(batch_size, self.latent_dim, self.seed_generator) for _ in range(max_g)]
        # I_g: phi(G(z_k)) under the step's starting weights, the content target of the gamma term.
        targets = ([[tf.stop_gradient(f) for f in self.style_features(self.generator(z, training=True))] for z in zs]
                   if self.guidance_weights["gamma"] else [None] * max_g)
        zero_g = {key: tf.constant(0.0) for key in ("total", "adversarial", "is", "mmd", "style", "content")}
        for k in range(max_g):
            run = k < g_steps
            terms, norm = self._maybe(
                run, lambda z=zs[k], t=targets[k]: self._generator_step(z, real, real_probs, real_features, t),
                (zero_g, tf.constant(0.0)))
            weight = tf.cast(run, tf.float32)
            for key, value in terms.items():
                self.trackers[f"loss/g/{key}"].update_state(value, sample_weight=weight)
            self.trackers["grad_norm/g"].update_state(tf.where(tf.math.is_finite(norm), norm, 0.0),
                                                      sample_weight=weight * tf.cast(tf.math.is_finite(norm),
                                                                                     tf.float32))
        self.step_counter.assign_add(1)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, batch):
        """Validation losses of D, C and G on a real batch, with fixed noise and every network in inference mode.

        The content term needs G's pre-update output and is not defined without an update: it is left out.
        """
        real = tf.convert_to_tensor(batch["image"])
        labels = tf.cast(batch["label"], tf.int32)
        z = replica_normal(tf.shape(real)[0], self.latent_dim, EVAL_SEED)
        fake = self.generator(z, training=False)
        self.trackers["loss/d/total"].update_state(self.discriminator_loss_terms(real, fake, training=False)["total"])
        c_terms = self.classifier_loss_terms(real, labels, fake, training=False)
        for key in ("real", "pseudo", "total"):
            self.trackers[f"loss/c/{key}"].update_state(c_terms[key])
        self.trackers["pseudo_label_rate"].update_state(c_terms["rate"])
        real_probs = self.classifier(real, training=False)
        g_terms = self.generator_loss_terms(z, real, real_probs, self.style_features(real), None, training=False)
        for key in ("total", "adversarial", "is", "mmd", "style"):
            self.trackers[f"loss/g/{key}"].update_state(g_terms[key])
        return {name: tracker.result() for name, tracker in self.trackers.items()
                if "grad" not in name and name != "loss/g/content"}

    def generate(self, count: int, seed: int | None = None, batch_size: int = 256) -> np.ndarray:
        """``count`` images from fresh noise in inference mode; the same ``seed`` gives the same images."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"`count` must be an integer >= 0. Received: count={count!r}")
        z = keras.random.normal((int(count), self.latent_dim), seed=seed, dtype="float32")
        return generate_in_batches(lambda chunk, _: self.generator(chunk, training=False), z, batch_size,
                                   self.generator.output_shape[1:])

    def get_config(self):
        config = super().get_config()
        config.update({
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "feature_model": (keras.saving.serialize_keras_object(self.feature_model)
                              if self.feature_model is not None else None),
            "style_layers": self.style_layers,
            "content_layer": self.content_layer,
            "seed": self.seed,
            "style_source": self.style_source,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("style_source", None)  # derived from feature_model
        for key in ("generator", "discriminator", "classifier"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("feature_model") is not None:
            config["feature_model"] = keras.saving.deserialize_keras_object(config["feature_model"])
        return cls(**config)


def _default_style_layers(classifier) -> list:
    """For each spatial resolution inside ``classifier``, its last layer with a 4-D output (inputs excluded)."""
    last_at = {}
    for layer in getattr(classifier, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4:
            last_at[(shape[1], shape[2])] = layer.name  # dicts keep first-insertion order of resolutions
    if not last_at:
        raise ValueError(f"Could not find 4-D feature maps in classifier {getattr(classifier, 'name', classifier)!r}"
                         " for the style loss: pass `style_layers` (names of its conv layers) or a `feature_model`.")
    return list(last_at.values())


def _classifier_features(classifier, names) -> keras.Model:
    """A sub-model of ``classifier`` (sharing its weights) returning the outputs of the layers ``names``."""
    try:
        outputs = [classifier.get_layer(name).output for name in names]
        return keras.Model(classifier.inputs, outputs, name=f"{classifier.name}_style_features")
    except (AttributeError, ValueError) as error:
        raise ValueError(f"Cannot take style features {list(names)} from classifier "
                         f"{getattr(classifier, 'name', classifier)!r} ({error}). Use a functional classifier with "
                         "those layers, or pass `feature_model`.") from error
