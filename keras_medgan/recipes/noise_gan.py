"""What the noise-to-image recipes share: configs, training, evaluation, reports and generation.

``recipes/cdcgan.py`` (paper 001's conditional DCGAN) and ``recipes/xraygan.py`` (paper 004's CGAN and
score-guided UCGAN) are presets and command lines over this module; the training loop, checkpoints, exact
resume, evaluation and the ``generate`` command live here once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Callable, Optional

import keras
import numpy as np

from keras_medgan import config as config_lib
from keras_medgan.callbacks import PeriodicEvaluation, latest_checkpoint, restore_checkpoint
from keras_medgan.callbacks.monitoring import image_grid, save_png_atomic, to_display
from keras_medgan.config import DataConfig, EvalConfig, TrainConfig
from keras_medgan.data import demo, pipelines, schema
from keras_medgan.data.writer import ImageRecord, ShardedWriter, command_line
from keras_medgan.gans.conditional_dcgan import ConditionalDCGAN
from keras_medgan.gans.score_guided_gan import ScoreGuidedGAN, footnote3_schedule
from keras_medgan.io_utils import atomic_open, save_model_atomic
from keras_medgan.losses.guidance import PAPER_MMD_SIGMA
from keras_medgan.metrics import classification
from keras_medgan.metrics import sources as metric_sources
from keras_medgan.metrics.domain_classifier import RulerSettings, ensure_domain_classifier
from keras_medgan.metrics.features import classifier_extractor
from keras_medgan.networks import applications
from keras_medgan.networks.classifiers import domain_classifier
from keras_medgan.networks.dcgan import dcgan_discriminator, dcgan_generator
from keras_medgan.optimizers import FusedAdam
from keras_medgan.recipes import common
from keras_medgan.recipes import evaluation as rec_eval

GANS = ("cdcgan", "cgan", "ucgan")
SAMPLE_SEED = 1234  # noise of the fixed sample grids
EVAL_SEED = 4321  # noise of the evaluation images


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The DCGAN networks (``networks.dcgan``; paper 001 Sec. II-C, paper 004 Sec. 5.4).

    Args:
        latent_dim: int. Size of z (paper 001: 100).
        base_filters, max_filters: int. DCGAN ``ngf``/``ndf`` and the cap on channel counts.
        upsampling: str. ``transpose`` (paper 001, DCGAN) or ``resize_conv``.
        bn_momentum: float. Keras convention; 0.9 = PyTorch's 0.1 (see ``dcgan_generator``).
        g_leaky_slope: float. G's activation: 0.2 (paper 001's LeakyReLU) or 0 (ReLU; paper 004's CGAN).
        d_leaky_slope: float. D's LeakyReLU slope (0.2 in both papers and DCGAN).
        d_norm: str. ``batch`` (paper 001), ``layer`` or ``none`` (needed with a gradient penalty).
        d_conditioning: str. ``label_maps`` (one-hot planes as extra input channels) or ``projection``.
        spectral_norm: bool. ``keras.layers.SpectralNormalization`` on D's weights (paper 001).
        classifier: str. UCGAN's C: ``small`` (``networks.domain_classifier``, demos and tests) or ``resnet50``
            (paper 004 Sec. 5.4).
        classifier_weights: str. ``auto`` (ImageNet when available), ``imagenet`` (fail without) or ``none``.
        style_features: str. UCGAN's style/content loss network: ``auto`` (VGG-16 ImageNet when available, else
            C's own features), ``vgg16`` (fail without the weights) or ``classifier``.
    """

    latent_dim: int = 100
    base_filters: int = 64
    max_filters: int = 512
    upsampling: str = "transpose"
    bn_momentum: float = 0.9
    g_leaky_slope: float = 0.2
    d_leaky_slope: float = 0.2
    d_norm: str = "batch"
    d_conditioning: str = "label_maps"
    spectral_norm: bool = True
    classifier: str = "small"
    classifier_weights: str = "auto"
    style_features: str = "auto"

    def __post_init__(self):
        choices = {"upsampling": ("transpose", "resize_conv"), "d_norm": ("batch", "layer", "none"),
                   "d_conditioning": ("label_maps", "projection"), "classifier": ("small", "resnet50"),
                   "classifier_weights": ("auto", "imagenet", "none"),
                   "style_features": ("auto", "vgg16", "classifier")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"model.{field} must be one of {allowed}. Received: {getattr(self, field)!r}")
        for field in ("latent_dim", "base_filters", "max_filters"):
            value = getattr(self, field)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"model.{field} must be an integer >= 1. Received: {value!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The adversarial objective (``ConditionalDCGAN.compile``).

    Args:
        gan_loss: str. ``vanilla`` (BCE: paper 001, paper 004 Eq. 6), ``hinge``, ``lsgan`` or ``wgan-gp``
            (cDCGAN / CGAN only).
        gp_weight: float or None. Gradient penalty coefficient; None = 10 for ``wgan-gp``, else 0 (paper 001
            names a penalty of 10; it needs ``model.d_norm`` layer or none).
        n_critic: int. D updates per G update (cDCGAN / CGAN).
    """

    gan_loss: str = "vanilla"
    gp_weight: Optional[float] = None
    n_critic: int = 1

    def __post_init__(self):
        if self.gan_loss not in ("vanilla", "hinge", "lsgan", "wgan-gp"):
            raise ValueError(f"loss.gan_loss must be vanilla, hinge, lsgan or wgan-gp. Received: {self.gan_loss!r}")
        if self.gp_weight is not None and not self.gp_weight >= 0:
            raise ValueError(f"loss.gp_weight must be >= 0 or none. Received: {self.gp_weight!r}")
        if not (isinstance(self.n_critic, int) and self.n_critic >= 1):
            raise ValueError(f"loss.n_critic must be an integer >= 1. Received: {self.n_critic!r}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam for G, D (and UCGAN's C). Papers 001 and 004 (CGAN): 2e-4, beta1 0.5; UCGAN: 5e-4 / 1e-3 / 5e-4
    with weight decay 1e-3 (Keras's decoupled form; see ``ScoreGuidedGAN.compile``)."""

    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    c_learning_rate: float = 5e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    weight_decay: float = 0.0

    def __post_init__(self):
        for field in ("g_learning_rate", "d_learning_rate", "c_learning_rate"):
            if not getattr(self, field) > 0:
                raise ValueError(f"optimizer.{field} must be > 0. Received: {getattr(self, field)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"optimizer.weight_decay must be >= 0. Received: {self.weight_decay!r}")


@dataclasses.dataclass(frozen=True)
class GuidanceConfig:
    """UCGAN's score guidance (paper 004 Sec. 4.2, Eq. 7-11; values from Sec. 5.4).

    Args:
        alpha, beta, gamma, eta, delta, lambda_, tau, xi: the loss weights of Eq. 10-11 (IS, MMD, style+content,
            Gram style, G adversarial, D, C, pseudo-labelled fakes).
        threshold: float. Pseudo-label threshold t (Sec. 5.2.1).
        schedule: str. G:D updates: ``footnote3`` (3:1, then 1:3, then 1:1 in thirds of train.steps; footnote 3;
            resuming with a new train.steps moves those boundaries) or phases ``start:g:d,start:g:d,...`` e.g.
            ``0:1:1``.
        mmd_sigma: float or None. Gaussian kernel bandwidth of the MMD (None = median heuristic).
    """

    alpha: float = -0.25
    beta: float = 3.0
    gamma: float = 0.001
    eta: float = 0.015
    delta: float = 1.0
    lambda_: float = 0.5
    tau: float = 1.0
    xi: float = 0.125
    threshold: float = 0.75
    schedule: str = "footnote3"
    mmd_sigma: Optional[float] = PAPER_MMD_SIGMA

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"guidance.threshold must be in (0, 1]. Received: {self.threshold!r}")
        if self.schedule != "footnote3":
            parse_schedule(self.schedule, 3)


def parse_schedule(text: str, total_steps: int) -> tuple:
    """``footnote3`` or ``start:g:d,...`` -> phases ``((start, g_steps, d_steps), ...)`` (validated)."""
    if text == "footnote3":
        return footnote3_schedule(max(int(total_steps), 3))
    try:
        phases = tuple(tuple(int(v) for v in part.split(":")) for part in text.split(",") if part.strip())
    except ValueError:
        phases = ()
    from keras_medgan.gans.score_guided_gan import _check_schedule

    try:
        return _check_schedule(phases)
    except ValueError:
        raise ValueError(f"guidance.schedule must be 'footnote3' or phases 'start:g_steps:d_steps,...' starting at "
                         f"0, e.g. '0:3:1,1000:1:3,2000:1:1'. Received: {text!r}") from None


@dataclasses.dataclass(frozen=True)
class DetectionConfig:
    """Paper 001's detection report (Table III): a real-data classifier scores generated images per class.

    Args:
        images_per_class: int. Generated images per class (paper 001: 100).
        classifier: str. ``auto`` (the ``classifier:auto`` domain classifier of the run's data: three conv
            blocks with batch norm and dropout, as paper 001's detector) or a path to a saved classifier whose
            outputs are the dataset's classes.
        bootstrap: int. Resamples for the intervals (detection rates and UCGAN C's test AUC).
    """

    images_per_class: int = 100
    classifier: str = "auto"
    bootstrap: int = 200


@dataclasses.dataclass(frozen=True)
class NoiseGANConfig:
    """Everything a cDCGAN / CGAN / UCGAN run needs; ``config.json`` in the run directory is this, as JSON.

    Args:
        preset, name: the preset it started from and the run name.
        gan: str. ``cdcgan`` (paper 001), ``cgan`` (paper 004 Sec. 4.1) or ``ucgan`` (paper 004 Sec. 4.2).
        data: DataConfig. ``data.classes`` picks and orders the classes (empty = all labelled classes).
        demo_dataset: str. Demo data built when ``data.data_dir`` is empty (``demo-derm`` or ``demo-cxr``).
        demo_num_images: int. Its size.
        model, loss, optimizer, guidance, train, eval, detection: see their classes.
        samples_per_class: int. Fixed-noise samples per class in each sample grid.
        validation_steps: int. Validation batches per periodic validation pass.
    """

    preset: str = "demo"
    name: str = "demo"
    gan: str = "cdcgan"
    data: DataConfig = DataConfig()
    demo_dataset: str = "demo-derm"
    demo_num_images: int = 2000
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    guidance: GuidanceConfig = GuidanceConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    detection: DetectionConfig = DetectionConfig()
    samples_per_class: int = 6
    validation_steps: int = 4

    def __post_init__(self):
        if self.gan not in GANS:
            raise ValueError(f"gan must be one of {GANS}. Received: {self.gan!r}")
        if self.demo_dataset not in demo.DEMO_KINDS:
            raise ValueError(f"demo_dataset must be one of {tuple(demo.DEMO_KINDS)}. Received: {self.demo_dataset!r}")
        size = self.data.image_size
        if not (32 <= size <= 256 and size & (size - 1) == 0):
            raise ValueError(f"data.image_size must be a power of two from 32 to 256 (DCGAN networks). "
                             f"Received: image_size={size}")
        if self.eval.every % self.train.log_every:
            raise ValueError(f"eval.every must be a multiple of train.log_every={self.train.log_every} (0 = off). "
                             f"Received: every={self.eval.every}")
        if self.gan == "ucgan" and self.loss.gan_loss == "wgan-gp":
            raise ValueError("loss.gan_loss=wgan-gp is for the cDCGAN / CGAN; the UCGAN takes vanilla, hinge or lsgan")
        penalty = self.loss.gan_loss == "wgan-gp" or (self.loss.gp_weight or 0) > 0
        if penalty and self.model.d_norm == "batch":
            raise ValueError("a gradient penalty (loss.gan_loss=wgan-gp or loss.gp_weight > 0) is per sample and not "
                             "valid with batch norm in D (Gulrajani et al. 2017, Sec. 4): also set "
                             "model.d_norm=layer or model.d_norm=none")
        if self.gan == "ucgan" and len(self.data.classes) == 1:
            raise ValueError("the UCGAN's classifier needs at least two classes in data.classes")
        if self.gan == "ucgan" and self.guidance.schedule == "footnote3" and self.train.steps < 3:
            raise ValueError("guidance.schedule=footnote3 needs train.steps >= 3 (three phases)")


# ---------------------------------------------------------------------------------------------- building


def resolve_data(cfg: NoiseGANConfig) -> tuple[NoiseGANConfig, schema.DatasetInfo]:
    """Builds the demo dataset when ``data.data_dir`` is empty and makes ``data.classes`` explicit."""
    if not cfg.data.data_dir:
        path = demo.ensure_demo_dataset(cfg.demo_dataset, image_size=cfg.data.image_size,
                                        num_images=cfg.demo_num_images)
        cfg = config_lib.replace(cfg, {"data": {"data_dir": path}})
    info = common.check_data_dir(cfg.data.data_dir)
    if not cfg.data.classes:
        cfg = config_lib.replace(cfg, {"data": {"classes": tuple(info.class_names)}})
    try:
        pipelines.class_ids(cfg.data.classes, info.class_names)
    except ValueError as e:
        raise config_lib.ConfigError(f"data.classes: {e}") from None
    for split in ("train", "val"):
        n = pipelines.selected_records(cfg.data, info, split)
        if n == 0:
            raise common.RecipeError(f"{cfg.data.data_dir} has no {split!r} images of the classes "
                                     f"{list(cfg.data.classes)}; the recipe trains on 'train' and validates on 'val'.")
    return cfg, info


def dataset_ids(cfg: NoiseGANConfig, info: schema.DatasetInfo) -> np.ndarray:
    """Dataset class index of each trained class (generator label k is dataset class ``ids[k]``)."""
    return np.asarray(pipelines.class_ids(cfg.data.classes, info.class_names), np.int64)


def build_networks(cfg: NoiseGANConfig, channels: int) -> dict:
    """``{"generator", "discriminator"}`` and, for the UCGAN, ``"classifier"``, ``"features"`` and notes."""
    m, size = cfg.model, cfg.data.image_size
    conditional = cfg.gan != "ucgan"
    k = len(cfg.data.classes) if conditional else 0
    nets = {
        "generator": dcgan_generator(size, channels, m.latent_dim, k, m.base_filters, m.max_filters, m.upsampling,
                                     m.bn_momentum, m.g_leaky_slope),
        "discriminator": dcgan_discriminator(size, channels, k, m.base_filters, m.max_filters,
                                             m.d_conditioning if conditional else None, m.spectral_norm,
                                             m.d_leaky_slope, m.d_norm, m.bn_momentum),
    }
    if conditional:
        return nets
    num_classes = len(cfg.data.classes)
    if m.classifier == "small":
        nets["classifier"] = domain_classifier(size, channels, num_classes, name="classifier")
        nets["classifier_origin"] = "small CNN (networks.domain_classifier), random init"
    else:
        weights = {"auto": "auto", "imagenet": "imagenet", "none": None}[m.classifier_weights]
        nets["classifier"], origin = applications.imagenet_classifier("resnet50", size, channels, num_classes,
                                                                     weights=weights)
        nets["classifier_origin"] = f"ResNet-50, {origin}"
    nets["features"], nets["style_origin"] = None, "the classifier C's own activations"
    if m.style_features in ("auto", "vgg16"):
        try:
            nets["features"], origin = applications.vgg16_style_features(size, channels, weights="imagenet")
            nets["style_origin"] = f"VGG-16 relu1_2/2_2/3_3/4_3, {origin}"
        except applications.PretrainedWeightsUnavailable as e:
            if m.style_features == "vgg16":
                raise common.RecipeError(f"model.style_features=vgg16: {e}") from None
            nets["style_origin"] = ("the classifier C's own activations (VGG-16 ImageNet weights unavailable on this "
                                    "machine; copy vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 into "
                                    "~/.keras/models to use them)")
    return nets


def build_model(cfg: NoiseGANConfig, channels: int, jit: bool, total_steps: int):
    """The compiled GAN and the networks' notes (``classifier_origin``, ``style_origin``)."""
    nets = build_networks(cfg, channels)
    o = cfg.optimizer

    def adam(lr):
        return FusedAdam(lr, beta_1=o.beta_1, beta_2=o.beta_2, weight_decay=o.weight_decay or None)

    if cfg.gan == "ucgan":
        g = cfg.guidance
        model = ScoreGuidedGAN(nets["generator"], nets["discriminator"], nets["classifier"], cfg.model.latent_dim,
                               len(cfg.data.classes), feature_model=nets["features"],
                               content_layer=(applications.VGG16_CONTENT_INDEX if nets["features"] is not None
                                              else None), seed=cfg.train.seed)
        model.compile(adam(o.g_learning_rate), adam(o.d_learning_rate), adam(o.c_learning_rate), alpha=g.alpha,
                      beta=g.beta, gamma=g.gamma, eta=g.eta, delta=g.delta, lambda_=g.lambda_, tau=g.tau, xi=g.xi,
                      threshold=g.threshold, schedule=parse_schedule(g.schedule, total_steps),
                      gan_loss=cfg.loss.gan_loss, mmd_sigma=g.mmd_sigma, jit_compile=jit)
    else:
        model = ConditionalDCGAN(nets["generator"], nets["discriminator"], cfg.model.latent_dim,
                                 len(cfg.data.classes), seed=cfg.train.seed)
        model.compile(adam(o.g_learning_rate), adam(o.d_learning_rate), gan_loss=cfg.loss.gan_loss,
                      gp_weight=cfg.loss.gp_weight, n_critic=cfg.loss.n_critic, jit_compile=jit)
    notes = {k: nets[k] for k in ("classifier_origin", "style_origin") if k in nets}
    return model, notes


def training_groups(model) -> dict:
    """Everything exact resume needs: weights, optimizer slots, the noise stream (and UCGAN's step counter)."""
    groups = {"generator": model.generator.variables, "discriminator": model.discriminator.variables,
              "g_optimizer": model.g_optimizer.variables, "d_optimizer": model.d_optimizer.variables,
              "state": [model.seed_generator.state]}
    if isinstance(model, ScoreGuidedGAN):
        groups["classifier"] = model.classifier.variables
        groups["c_optimizer"] = model.c_optimizer.variables
        groups["state"] = [model.seed_generator.state, model.step_counter]
    return groups


def step_of(model) -> int:
    counter = model.step_counter if isinstance(model, ScoreGuidedGAN) else model.g_optimizer.iterations
    return int(keras.ops.convert_to_numpy(counter))


def sample(model, labels, seed: int, batch_size: int = 64, **options) -> np.ndarray:
    """Images in [-1, 1] for generator labels (an int count for the UCGAN); ``options`` go to ``model.generate``
    (StyleGAN2-ADA's ``truncation_psi``)."""
    if isinstance(model, ScoreGuidedGAN):
        return model.generate(int(labels) if isinstance(labels, (int, np.integer)) else len(labels), seed=seed,
                              batch_size=batch_size)
    return model.generate(labels, seed=seed, batch_size=batch_size, **options)


def eval_generate_fn(model, ids: np.ndarray, reference_labels: np.ndarray) -> Callable[[int], dict]:
    """``n -> {"image", "label"}`` for the evaluator: a conditional model follows the reference split's labels
    (so per-class FID pairs up); the UCGAN's images are unlabelled (-1)."""
    lookup = {int(d): k for k, d in enumerate(ids)}
    reference = np.array([lookup[int(v)] for v in reference_labels if int(v) in lookup], np.int64)

    def generate(n: int) -> dict:
        if isinstance(model, ScoreGuidedGAN):
            return {"image": sample(model, n, EVAL_SEED), "label": np.full(n, -1, np.int64)}
        local = np.resize(reference, n) if len(reference) else np.arange(n) % len(ids)
        return {"image": sample(model, local, EVAL_SEED), "label": ids[local]}

    return generate


# ---------------------------------------------------------------------------------------------- reports


def detection_report(model, cfg: NoiseGANConfig, info: schema.DatasetInfo, out_dir: str) -> dict:
    """Paper 001 Table III: a classifier trained on real data scores ``images_per_class`` fakes per class."""
    n = cfg.detection.images_per_class
    if cfg.detection.classifier == "auto":
        path = ensure_domain_classifier(cfg.data.data_dir, RulerSettings(epochs=cfg.eval.ruler_epochs))
    else:
        path = cfg.detection.classifier
    extractor = classifier_extractor(path)
    k = len(cfg.data.classes)
    labels = np.repeat(np.arange(k), n)
    probs = _detector_probs(extractor, sample(model, labels, EVAL_SEED + 1), cfg.data.image_size)
    detector_classes = list(info.class_names)
    if probs.shape[1] != len(detector_classes):
        return {"skipped": f"the detector {path} has {probs.shape[1]} outputs but the dataset has "
                           f"{len(detector_classes)} classes"}
    rows = classification.detection_rates(labels, probs, list(cfg.data.classes), detector_classes,
                                          bootstrap=cfg.detection.bootstrap, seed=cfg.train.seed)
    # The same detector on the real validation images of each class: the rate a perfect generator would get.
    read = dataclasses.replace(cfg.data, batch_size=64, shuffle_buffer=0, repeat=False, drop_remainder=False,
                               cache=False)
    real = [(b["image"].numpy(), b["label"].numpy()) for b in pipelines.make_dataset(read, "val")]
    real_labels = np.concatenate([lab for _, lab in real])
    real_rows = classification.detection_rates(
        real_labels, _detector_probs(extractor, np.concatenate([im for im, _ in real]), cfg.data.image_size),
        list(cfg.data.classes), detector_classes)
    for name, row in rows.items():
        row["real_val_detection_rate"] = real_rows[name]["detection_rate"] if name in real_rows else None
        row["real_val_n"] = real_rows[name]["n"] if name in real_rows else 0
    accuracy = None
    if os.path.isfile(path + ".json"):
        with open(path + ".json", encoding="utf-8") as f:
            accuracy = json.load(f).get("val_accuracy")
    result = {"detector": os.path.abspath(path), "detector_val_accuracy": accuracy, "images_per_class": n,
              "chance": 1.0 / len(detector_classes), "classes": rows}
    schema.write_json_atomic(os.path.join(out_dir, "detection.json"), result)
    return result


def _detector_probs(extractor, images: np.ndarray, resolution: int) -> np.ndarray:
    """The detector's class probabilities for images in [-1, 1] (quantised and resized as for the metrics)."""
    batches = metric_sources.array_batches(images, None, None, resolution)
    return metric_sources.extract_batches(extractor, batches, "detection", resolution, total=len(images)).probs


def detection_markdown(result: dict) -> str:
    if "skipped" in result:
        return f"## Detection rate (paper 001, Table III)\n\nNot computed: {result['skipped']}.\n"
    acc = result["detector_val_accuracy"]
    lines = ["## Detection rate (paper 001, Table III)", "",
             f"A classifier trained on the real training split (`{os.path.basename(result['detector'])}`"
             + (f", validation accuracy {acc:.3f}" if acc is not None else "") + f") scores "
             f"{result['images_per_class']} generated images per class. Chance is {result['chance']:.1%}. "
             "Detection = share assigned to the intended class (95% bootstrap interval); mean confidence = mean "
             "probability of the intended class; the last column is Table III's \"average accuracy\" read as the "
             "mean top probability of the detected images. The last column is the detector's rate on the real "
             "validation images of the class: what a perfect generator would score.", "",
             "| class | generated | successful detection | 95% interval | mean confidence | confidence of detected |"
             " most confused with | real val images detected |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["classes"].items():
        ci = f"[{r['ci_low']:.1%}, {r['ci_high']:.1%}]" if r["ci_low"] is not None else ""
        det = "—" if r["mean_confidence_detected"] is None else f"{r['mean_confidence_detected']:.1%}"
        real = ("—" if r.get("real_val_detection_rate") is None
                else f"{r['real_val_detection_rate']:.1%} (n={r['real_val_n']})")
        lines.append(f"| {name} | {r['n']} | {r['detection_rate']:.1%} | {ci} | {r['mean_confidence']:.1%} | {det} | "
                     f"{r['most_confused_with'] or '—'} | {real} |")
    return "\n".join(lines) + "\n"


def classifier_auc_report(model: ScoreGuidedGAN, cfg: NoiseGANConfig, info: schema.DatasetInfo,
                          out_dir: str) -> dict:
    """Paper 004 Tables 4-5: the UCGAN's classifier C on the real test split, one-vs-rest AUC per class."""
    split = "test" if pipelines.selected_records(cfg.data, info, "test") else "val"
    read = dataclasses.replace(cfg.data, batch_size=64, shuffle_buffer=0, repeat=False, drop_remainder=False,
                               cache=False)
    labels, probs = [], []
    for batch in pipelines.make_dataset(read, split):
        labels.append(batch["label"].numpy())
        probs.append(keras.ops.convert_to_numpy(model.classifier(batch["image"], training=False)))
    labels, probs = np.concatenate(labels), np.concatenate(probs).astype(np.float64)
    aucs = classification.one_vs_rest_auc(labels, probs, list(cfg.data.classes), bootstrap=cfg.detection.bootstrap,
                                          seed=cfg.train.seed)
    result = {"split": split, "num_images": int(len(labels)), "accuracy": float((probs.argmax(1) == labels).mean()),
              "auc": aucs}
    schema.write_json_atomic(os.path.join(out_dir, "classifier_auc.json"), result)
    return result


def auc_markdown(result: dict, notes: dict) -> str:
    lines = ["## Classifier C on real test images (paper 004, Tables 4-5)", "",
             f"C: {notes.get('classifier_origin', '?')}. Style/content features: {notes.get('style_origin', '?')}. "
             f"{result['num_images']} images of the `{result['split']}` split; accuracy {result['accuracy']:.3f}. "
             "One-vs-rest ROC AUC with 95% bootstrap intervals over the test images.", "",
             "| class | AUC | 95% interval | positives |", "|---|---|---|---|"]
    for name, r in result["auc"].items():
        ci = f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r["ci_low"] is not None else ""
        lines.append(f"| {name} | {r['auc']:.3f} | {ci} | {r['positives'] if name != 'macro' else ''} |")
    return "\n".join(lines) + "\n"


TITLES = {"cdcgan": "Conditional DCGAN (paper 001)", "cgan": "XRAY-GAN CGAN (paper 004, Sec. 4.1)",
          "ucgan": "XRAY-GAN score-guided UCGAN (paper 004, Sec. 4.2)"}


def write_report(path: str, cfg: NoiseGANConfig, info: schema.DatasetInfo, fit: common.FitResult, val: dict,
                 runtime: common.Runtime, sections: list) -> None:
    m = cfg.model
    rows = "\n".join(f"| `{k}` | {v:.4f} |" for k, v in sorted(val.items()))
    model_line = (f"DCGAN {cfg.data.image_size} px, latent {m.latent_dim}, base {m.base_filters}, {m.upsampling} "
                  f"upsampling, G {'ReLU' if not m.g_leaky_slope else f'LeakyReLU {m.g_leaky_slope}'}, D {m.d_norm} norm"
                  f"{' + spectral norm' if m.spectral_norm else ''}, loss {cfg.loss.gan_loss}")
    if cfg.gan == "ucgan":
        g = cfg.guidance
        model_line += (f"; C `{m.classifier}`; alpha {g.alpha}, beta {g.beta}, gamma {g.gamma}, eta {g.eta}, "
                       f"delta {g.delta}, lambda {g.lambda_}, tau {g.tau}, xi {g.xi}, t {g.threshold}, "
                       f"schedule {g.schedule}")
    else:
        model_line += f" ({cfg.model.d_conditioning} conditioning)"
    text = f"""# {TITLES[cfg.gan]} run report

- Data: `{cfg.data.data_dir}` ({info.source}), trained at {cfg.data.image_size} px
- Classes: {', '.join(cfg.data.classes)}
- Model: {model_line}
{common.runtime_lines(cfg, fit, runtime, os.path.dirname(path))}

## Validation losses (val split, fixed noise, inference mode)

| term | value |
|---|---|
{rows}

""" + "\n".join(sections)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------------------------------------- train


def train(argv, prog: str, description: str, get_config: Callable, presets, recipe: str,
          add_arguments: Callable | None = None, config_updates: Callable | None = None) -> int:
    """The training command of a noise-GAN recipe (see ``recipes/cdcgan.py``, ``recipes/xraygan.py``)."""
    parser = common.build_parser(prog, description, presets)
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    cfg, run_dir, ckpt = common.start_run(parser, args, get_config, recipe, config_updates)
    if cfg is None:
        return 0
    runtime = common.setup_runtime(cfg)
    if cfg.gan == "ucgan" and runtime.strategy.num_replicas_in_sync > 1:
        raise common.RecipeError("the UCGAN trains on one device (its G:D schedule cannot run under "
                                 "MirroredStrategy on this TensorFlow); pass --set train.strategy=default")
    cfg, info = resolve_data(cfg)
    run_dir = common.prepare_run_dir(run_dir, ckpt, recipe, cfg)
    ids = dataset_ids(cfg, info)
    channels = cfg.data.channels or info.channels

    evaluator = rec_eval.GeneratorEvaluator(cfg.eval, cfg.data.data_dir, cfg.data.image_size, classes=ids)
    keras.utils.set_random_seed(cfg.train.seed)  # the ruler may have trained just now; see dermgan.train
    with runtime.strategy.scope():
        model, notes = build_model(cfg, channels, runtime.jit, cfg.train.steps)
    start_step = common.restore_for_resume(ckpt, training_groups(model), run_dir)
    data_cfg = common.train_data_config(cfg)
    train_ds = pipelines.make_dataset(data_cfg, "train", start_step=start_step)
    # Whole batches only (when the split has one): the UCGAN's unbiased MMD is undefined for a batch of 1.
    n_val = pipelines.selected_records(cfg.data, info, "val")
    full = n_val >= cfg.data.batch_size
    val_cfg = dataclasses.replace(data_cfg, shuffle_buffer=0, repeat=False, drop_remainder=full, cache=False)
    val_batches = n_val // cfg.data.batch_size if full else 1
    val_ds = pipelines.make_dataset(val_cfg, "val")
    k = len(cfg.data.classes)

    def render():
        if cfg.gan == "ucgan":
            images = sample(model, k * cfg.samples_per_class, SAMPLE_SEED)
            return [to_display(c) for c in np.split(images, k)]
        return [to_display(sample(model, np.full(cfg.samples_per_class, c), SAMPLE_SEED)) for c in range(k)]

    generate_fn = eval_generate_fn(model, ids, evaluator.real.labels)
    extra_callbacks = []
    if cfg.eval.every:
        extra_callbacks.append(PeriodicEvaluation(lambda: evaluator.periodic(generate_fn),
                                                  cfg.eval.every // cfg.train.log_every, lambda: step_of(model),
                                                  os.path.join(run_dir, "tensorboard"),
                                                  os.path.join(run_dir, "metrics.jsonl")))
    optimizers = {"g": model.g_optimizer, "d": model.d_optimizer}
    if cfg.gan == "ucgan":
        optimizers["c"] = model.c_optimizer
    fit = common.fit_with_checkpoints(
        model, train_ds, val_ds.repeat(), cfg.train, run_dir, start_step=start_step, step_fn=lambda: step_of(model),
        groups_fn=lambda: training_groups(model), render_fn=render, optimizers=optimizers,
        config_text=common.config_markdown(cfg), validation_steps=min(cfg.validation_steps, val_batches),
        extra_callbacks=extra_callbacks)
    val = {k_: float(v) for k_, v in model.evaluate(val_ds, steps=val_batches, verbose=0, return_dict=True).items()}
    save_model_atomic(model.generator, os.path.join(run_dir, "generator.keras"))
    if cfg.gan == "ucgan":
        save_model_atomic(model.classifier, os.path.join(run_dir, "classifier.keras"))
    print("final evaluation (FID/KID/IS/PRDC with intervals, memorization audit) ...")
    evaluation = evaluator.final(generate_fn, run_dir, extra={"step": fit.end_step, "run": os.path.abspath(run_dir)})
    sections = [rec_eval.markdown_section(evaluation)]
    if cfg.gan == "ucgan":
        sections.insert(0, auc_markdown(classifier_auc_report(model, cfg, info, run_dir), notes))
    else:
        sections.insert(0, detection_markdown(detection_report(model, cfg, info, run_dir)))
    write_report(os.path.join(run_dir, "report.md"), cfg, info, fit, val, runtime, sections)
    common.print_run_summary(run_dir, fit)
    return 0


# ---------------------------------------------------------------------------------------------- generate


def load_model(run_dir: str, get_config: Callable):
    """The GAN of a run at its newest checkpoint, its config and dataset info."""
    cfg = common.load_run_config(run_dir, get_config)
    info = common.check_data_dir(cfg.data.data_dir)
    ckpt = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if ckpt is None:
        raise common.RecipeError(f"{run_dir} has no checkpoint; train it first (or resume it with --resume).")
    model, _ = build_model(cfg, cfg.data.channels or info.channels, False, cfg.train.steps)
    restore_checkpoint(ckpt, training_groups(model), strict=False)
    return model, cfg, info


def generate(argv, prog: str, get_config: Callable, load: Callable | None = None,
             add_arguments: Callable | None = None) -> int:
    """The ``generate`` command. ``load(args) -> (model, cfg, info, sample_options)`` replaces the noise-GAN loader
    (StyleGAN2-ADA picks a snapshot and a truncation); ``add_arguments(parser)`` adds its options."""
    parser = argparse.ArgumentParser(
        prog=f"{prog} generate",
        description="Generate a labelled synthetic dataset from a trained run: PNGs, a grid per class and a "
                    "TFRecord dataset in the keras-medgan schema (its class names are the real dataset's, so it "
                    "mixes with the real data in downstream studies). A conditional model generates equal numbers "
                    "per class; the UCGAN's images are labelled by its classifier C, keeping only those C is at "
                    "least --min-confidence sure of (its pseudo-label rule).\n\n"
                    f"Example:\n  {prog} generate --run runs/<recipe>/00001-demo --out synth --num-images 400",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="Run directory of a trained model.")
    parser.add_argument("--out", required=True, help="Output folder (images/, grid.png and dataset/ go here).")
    parser.add_argument("--num-images", type=int, default=400, help="Images to generate in all. Default: 400.")
    parser.add_argument("--classes", default=None,
                        help="Comma-separated subset of the run's classes to generate. Default: all of them.")
    parser.add_argument("--min-confidence", type=float, default=None,
                        help="UCGAN only: keep images whose top class probability under C is at least this. "
                             "Default: the run's pseudo-label threshold t.")
    parser.add_argument("--seed", type=int, default=0, help="Noise seed. Default: 0.")
    parser.add_argument("--batch-size", type=int, default=64, help="Generator batch size. Default: 64.")
    parser.add_argument("--format", choices=["png", "jpeg"], default="png", help="Stored image format.")
    if add_arguments:
        add_arguments(parser)
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.batch_size < 1:
        parser.error("--num-images and --batch-size must be >= 1")
    if not os.path.isdir(args.run):
        parser.error(f"--run {args.run!r} is not a folder")
    if os.path.exists(os.path.join(args.out, "dataset", schema.DATASET_JSON)):
        raise common.RecipeError(f"{args.out} already holds a generated dataset; choose another --out.")
    if load is None:
        model, cfg, info = load_model(args.run, get_config)
        options = {}
    else:
        model, cfg, info, options = load(args)
    trained = list(cfg.data.classes)
    wanted = [c.strip() for c in args.classes.split(",")] if args.classes else trained
    unknown = [c for c in wanted if c not in trained]
    if unknown or not wanted:
        parser.error(f"--classes: {unknown or args.classes!r} not among the run's classes {trained}")
    ids = dataset_ids(cfg, info)
    local = np.array([trained.index(c) for c in wanted])
    if isinstance(model, ScoreGuidedGAN):
        threshold = cfg.guidance.threshold if args.min_confidence is None else args.min_confidence
        images, labels, confidence = _pseudo_labelled(model, args.num_images, set(local.tolist()), threshold,
                                                      args.seed, args.batch_size)
    else:
        labels = np.resize(local, args.num_images)
        labels.sort(kind="stable")
        images = sample(model, labels, args.seed, args.batch_size, **options)
        confidence = None
    images = to_display(images)
    if info.channels == 1:
        images = images[..., :1]
    run_name = os.path.basename(os.path.normpath(args.run))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    with ShardedWriter(os.path.join(args.out, "dataset"), num_shards=max(1, min(8, len(images) // 500 + 1)),
                       image_format=args.format) as writer:
        for i, (img, label) in enumerate(zip(images, labels)):
            save_png_atomic(img if img.shape[-1] == 3 else img[..., 0], os.path.join(args.out, "images",
                                                                                      f"{i:06d}.png"))
            writer.add("train", ImageRecord(image=img, label=int(ids[label]), patient_id=f"synthetic-{i:06d}",
                                            source_id=f"{cfg.gan}:{run_name}:{i:06d}"), info.class_names)
        writer.finish(source=f"{cfg.gan}-generate:{run_name}", command=command_line(),
                      image_size=[cfg.data.image_size] * 2, channels=info.channels,
                      class_names=list(info.class_names), split_unit="image", seed=args.seed,
                      extra={"generator_run": os.path.abspath(args.run), "gan": cfg.gan, "classes": wanted,
                             "min_confidence": None if confidence is None else float(threshold), **options})
    columns = [to_display(images[labels == c][:8]) for c in local if (labels == c).any()]
    depth = min(len(c) for c in columns)
    save_png_atomic(image_grid([c[:depth] for c in columns]), os.path.join(args.out, "grid.png"))
    counts = {trained[c]: int((labels == c).sum()) for c in local}
    print(f"wrote {len(images)} images ({counts}) to {args.out}/images, dataset {args.out}/dataset, grid grid.png")
    return 0


def detect(argv, prog: str, get_config: Callable, load: Callable | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{prog} detect",
        description="Paper 001's detection report (Table III) for a trained conditional run, again or with another "
                    "detector: a classifier trained on the real data scores --images-per-class generated images "
                    "per class; writes detection.json in the run folder (or --out) and prints the table.\n\n"
                    f"Example:\n  {prog} detect --run runs/<recipe>/00001-demo --classifier my_cnn.keras",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="Run directory of a trained conditional model.")
    parser.add_argument("--classifier", default=None,
                        help="Detector: 'auto' (the classifier:auto domain CNN of the run's data) or a saved Keras "
                             "classifier whose outputs are the dataset's classes. Default: the run's setting.")
    parser.add_argument("--images-per-class", type=int, default=None,
                        help="Generated images per class. Default: the run's setting (100 in the presets).")
    parser.add_argument("--out", default=None, help="Folder for detection.json. Default: the run folder.")
    args = parser.parse_args(argv)
    if args.images_per_class is not None and args.images_per_class < 1:
        parser.error("--images-per-class must be >= 1")
    if not os.path.isdir(args.run):
        parser.error(f"--run {args.run!r} is not a folder")
    if args.classifier not in (None, "auto") and not os.path.isfile(args.classifier):
        parser.error(f"--classifier {args.classifier!r} is not a file; pass a saved .keras classifier or 'auto'")
    model, cfg, info = (load or load_model)(args.run, get_config)
    if isinstance(model, ScoreGuidedGAN):
        raise common.RecipeError(f"{args.run} is a UCGAN run: it has no intended class per image to detect. Its "
                                 "classifier C is judged in classifier_auc.json instead.")
    updates = {k: v for k, v in (("classifier", args.classifier), ("images_per_class", args.images_per_class))
               if v is not None}
    cfg = config_lib.replace(cfg, {"detection": updates}) if updates else cfg
    out = args.out or args.run
    os.makedirs(out, exist_ok=True)
    print(detection_markdown(detection_report(model, cfg, info, out)))
    print(f"wrote {os.path.join(out, 'detection.json')}")
    return 0


def _pseudo_labelled(model: ScoreGuidedGAN, n: int, wanted: set, threshold: float, seed: int, batch_size: int):
    """UCGAN images labelled by C's argmax, keeping those at >= ``threshold`` of the wanted classes."""
    images, labels, conf = [], [], []
    kept, attempt = 0, 0
    while kept < n:
        if attempt >= 50:
            raise common.RecipeError(f"only {kept} of {n} generated images reached C's confidence {threshold} in "
                                     f"the requested classes after {attempt * batch_size} tries; lower "
                                     "--min-confidence or train longer.")
        batch = sample(model, batch_size, seed * 1000 + attempt, batch_size)
        probs = keras.ops.convert_to_numpy(model.classifier(batch, training=False)).astype(np.float64)
        top, arg = probs.max(axis=1), probs.argmax(axis=1)
        keep = (top >= threshold) & np.isin(arg, list(wanted))
        images.append(batch[keep])
        labels.append(arg[keep])
        conf.append(top[keep])
        kept += int(keep.sum())
        attempt += 1
    return np.concatenate(images)[:n], np.concatenate(labels)[:n], np.concatenate(conf)[:n]
