"""StyleGAN2-ADA recipe (Karras et al. 2020; the dermatology comparative study, paper 003, Sec. 3.1 and 4).
Recipe card: ``recipes/stylegan2_ada/README.md``.

\b
Train (no arguments: preset ``demo``, conditional on the demo-derm classes at 32 px with small channel counts,
about 15 minutes on 2 CPU cores):
    python -m keras_medgan.recipes.stylegan2_ada
    python -m keras_medgan.recipes.stylegan2_ada --preset paper --data data/isic-256     # benign / malignant
    python -m keras_medgan.recipes.stylegan2_ada --preset paper --data DIR --set model.conditional=false
    python -m keras_medgan.recipes.stylegan2_ada --set augment.pipeline=bg               # no colour transforms
    python -m keras_medgan.recipes.stylegan2_ada --resume --set schedule.kimg=50         # continue, longer
\b
Training is scheduled in kimg (thousands of real images shown to D). Every run writes per-class sample grids of
the EMA generator, TensorBoard (losses, ADA p and r_t, path-length mean, kimg, FID/KID), metrics.jsonl,
evaluation.json (FID/KID/IS/PRDC with intervals, memorization audit), detection.json (conditional runs),
the snapshot the review's rule selects (snapshots/: the latest FID within 0.3 of the best) and
report.md. --resume continues exactly: weights, EMA weights, optimizers, kimg, ADA p and the random streams.
\b
After training:
    python -m keras_medgan.recipes.stylegan2_ada generate --run RUN --out synth --num-images 400 --truncation-psi 0.7
    python -m keras_medgan.recipes.stylegan2_ada project --run RUN       # projector + memorization check
    python -m keras_medgan.recipes.stylegan2_ada sefa --run RUN --seed 3 # closed-form latent directions
    python -m keras_medgan.recipes.stylegan2_ada ppl --run RUN           # perceptual path length in W
    python -m keras_medgan.recipes.stylegan2_ada detect --run RUN        # paper 001's detection report
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Optional

import keras
import numpy as np

from keras_medgan import config as config_lib
from keras_medgan.callbacks import PeriodicEvaluation, latest_checkpoint, restore_checkpoint
from keras_medgan.callbacks.checkpoint import save_checkpoint
from keras_medgan.callbacks.monitoring import to_display
from keras_medgan.config import DataConfig, EvalConfig, TrainConfig
from keras_medgan.data import demo, pipelines, schema
from keras_medgan.gans.stylegan2_ada import StyleGAN2ADA
from keras_medgan.io_utils import atomic_open, save_model_atomic
from keras_medgan.metrics.intervals import select_checkpoint
from keras_medgan.networks.stylegan2 import (lazy_regularization, r1_gamma_heuristic, stylegan2_discriminator,
                                             stylegan2_generator)
from keras_medgan.optimizers import FusedAdam
from keras_medgan.recipes import common, noise_gan
from keras_medgan.recipes import evaluation as rec_eval
from keras_medgan.recipes.noise_gan import DetectionConfig

RECIPE = "stylegan2_ada"
PRESETS = ("demo", "smoke", "paper")
PROG = "python -m keras_medgan.recipes.stylegan2_ada"
SAMPLE_SEED = 1234
# Paper 003 Sec. 3.1: benign vs malignant (ISIC 2020): `medgan-data isic --year 2020 ...` (its default task).
PAPER_CLASSES = ("benign", "malignant")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The StyleGAN2 networks (``networks.stylegan2``; config F with the ADA code's changes).

    Args:
        conditional: bool. Class-conditional G (embedding concatenated to z) and D (projection); paper 003 trains
            both a conditional model and unconditional ones.
        z_dim, w_dim: int. Latent sizes (512).
        mapping_layers: int. Mapping network depth (8; learning-rate multiplier 0.01).
        d_mapping_layers: int. Depth of D's class mapping (the ADA code uses the same ``map`` value).
        channel_base, channel_max: int. Feature maps ``min(channel_base // res, channel_max)``; ADA ``paper256``:
            16384 (32768 x 0.5) and 512.
        mbstd_group_size: int. Minibatch-stddev group (4).
        num_fp16_res: int. Highest resolutions run in the reduced-precision policy (ADA: 4); the rest in float32.
        conv_clamp: float or None. Activation clamp on those layers (ADA: 256).
    """

    conditional: bool = True
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    d_mapping_layers: int = 8
    channel_base: int = 16384
    channel_max: int = 512
    mbstd_group_size: int = 4
    num_fp16_res: int = 4
    conv_clamp: Optional[float] = 256.0

    def __post_init__(self):
        for field in ("z_dim", "w_dim", "mapping_layers", "d_mapping_layers", "channel_base", "channel_max",
                      "mbstd_group_size"):
            value = getattr(self, field)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"model.{field} must be an integer >= 1. Received: {value!r}")
        if not (isinstance(self.num_fp16_res, int) and self.num_fp16_res >= 0):
            raise ValueError(f"model.num_fp16_res must be an integer >= 0. Received: {self.num_fp16_res!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """StyleGAN2's loss (``StyleGAN2ADA.compile``).

    Args:
        r1_gamma: float or None. R1 weight; None = the ADA heuristic ``0.0002 * res^2 / batch``.
        r1_interval, pl_interval: int. Lazy regularisation (16 and 4).
        pl_weight: float. Path-length weight (2; 0 = off).
        style_mixing_prob: float. (0.9.)
    """

    r1_gamma: Optional[float] = None
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    style_mixing_prob: float = 0.9

    def __post_init__(self):
        if self.r1_gamma is not None and not self.r1_gamma >= 0:
            raise ValueError(f"loss.r1_gamma must be >= 0 or none. Received: {self.r1_gamma!r}")
        for field in ("r1_interval", "pl_interval"):
            if not (isinstance(getattr(self, field), int) and getattr(self, field) >= 1):
                raise ValueError(f"loss.{field} must be an integer >= 1. Received: {getattr(self, field)!r}")
        if not self.pl_weight >= 0:
            raise ValueError(f"loss.pl_weight must be >= 0. Received: {self.pl_weight!r}")
        if not 0 <= self.style_mixing_prob <= 1:
            raise ValueError(f"loss.style_mixing_prob must be in [0, 1]. Received: {self.style_mixing_prob!r}")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Adaptive discriminator augmentation (ADA Sec. 2-3).

    Args:
        pipeline: str. ``bgc`` (blit, geometric, colour: ADA's default), ``bg`` (no colour: paper 003 found the
            colour transforms leaking into generated skin as red/violet hues, Sec. 4) or ``none``.
        p: float. Initial probability (or the fixed one with ``target=0``).
        target: float. Target r_t (0.6); 0 keeps p fixed.
        interval: int. Minibatches between p updates (4).
        kimg: float. kimg for p to go from 0 to 1 (500).
    """

    pipeline: str = "bgc"
    p: float = 0.0
    target: float = 0.6
    interval: int = 4
    kimg: float = 500.0

    def __post_init__(self):
        if self.pipeline not in ("bgc", "bg", "none"):
            raise ValueError(f"augment.pipeline must be bgc, bg or none. Received: {self.pipeline!r}")
        if not 0 <= self.p <= 1 or not 0 <= self.target < 1:
            raise ValueError(f"augment.p must be in [0, 1] and augment.target in [0, 1). Received: p={self.p!r}, "
                             f"target={self.target!r}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam for G and D (ADA code: lr 0.0025 below 1024 px, betas (0, 0.99), eps 1e-8); the lazily regularised
    networks get ``lazy_regularization``'s adjusted lr and betas."""

    g_learning_rate: float = 0.0025
    d_learning_rate: float = 0.0025
    beta_1: float = 0.0
    beta_2: float = 0.99
    epsilon: float = 1e-8

    def __post_init__(self):
        for field in ("g_learning_rate", "d_learning_rate", "epsilon"):
            if not getattr(self, field) > 0:
                raise ValueError(f"optimizer.{field} must be > 0. Received: {getattr(self, field)!r}")


@dataclasses.dataclass(frozen=True)
class EmaConfig:
    """The EMA generator: half-life ``kimg`` thousand images (10, the issue's and ADA ``auto``'s value at batch 32)
    and ramp-up (ADA ``auto``: 0.05 of the images seen so far; 0 = none)."""

    kimg: float = 10.0
    rampup: float = 0.05

    def __post_init__(self):
        if not self.kimg >= 0 or not self.rampup >= 0:
            raise ValueError(f"ema.kimg and ema.rampup must be >= 0. Received: {self.kimg!r}, {self.rampup!r}")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """Training length and cadence in kimg, as NVIDIA's training loop counts them; ``train.steps``,
    ``train.log_every``, ``train.sample_every``, ``train.checkpoint_every`` and ``eval.every`` follow from them.

    Args:
        kimg: float. Thousands of real images to show D (ADA ``paper256``: 25000).
        tick_kimg: float. kimg between progress lines and TensorBoard scalars (4).
        snapshot_ticks: int. Ticks between checkpoints and sample grids (50).
        eval_ticks: int. Ticks between FID/KID evaluations (50; 0 = final only).
        selection_tolerance: float. The review's checkpoint rule: the latest snapshot whose FID is within this
            of the best (paper 002 Sec. 3.2: 0.3).
    """

    kimg: float = 25000.0
    tick_kimg: float = 4.0
    snapshot_ticks: int = 50
    eval_ticks: int = 50
    selection_tolerance: float = 0.3

    def __post_init__(self):
        for field in ("kimg", "tick_kimg", "selection_tolerance"):  # --set schedule.kimg=50 must stay a float
            if isinstance(getattr(self, field), int) and not isinstance(getattr(self, field), bool):
                object.__setattr__(self, field, float(getattr(self, field)))
        if not self.kimg > 0 or not self.tick_kimg > 0:
            raise ValueError(f"schedule.kimg and schedule.tick_kimg must be > 0. Received: {self.kimg!r}, "
                             f"{self.tick_kimg!r}")
        if not (isinstance(self.snapshot_ticks, int) and self.snapshot_ticks >= 1):
            raise ValueError(f"schedule.snapshot_ticks must be an integer >= 1. Received: {self.snapshot_ticks!r}")
        if not (isinstance(self.eval_ticks, int) and self.eval_ticks >= 0):
            raise ValueError(f"schedule.eval_ticks must be an integer >= 0. Received: {self.eval_ticks!r}")


@dataclasses.dataclass(frozen=True)
class StyleGANConfig:
    """Everything a StyleGAN2-ADA run needs; ``config.json`` in the run directory is this, as JSON.

    ``train.steps``, ``train.log_every``, ``train.sample_every``, ``train.checkpoint_every`` and ``eval.every`` are
    derived from ``schedule`` (see ``apply_schedule``); set the kimg values instead.
    """

    preset: str = "demo"
    name: str = "demo"
    gan: str = "stylegan2-ada"
    data: DataConfig = DataConfig()
    demo_dataset: str = "demo-derm"
    demo_num_images: int = 2000
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    augment: AugmentConfig = AugmentConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    ema: EmaConfig = EmaConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    detection: DetectionConfig = DetectionConfig()
    samples_per_class: int = 6
    validation_steps: int = 4

    def __post_init__(self):
        if self.gan != "stylegan2-ada":
            raise ValueError(f"gan must be 'stylegan2-ada'. Received: {self.gan!r}")
        if self.demo_dataset not in demo.DEMO_KINDS:
            raise ValueError(f"demo_dataset must be one of {tuple(demo.DEMO_KINDS)}. Received: {self.demo_dataset!r}")
        size = self.data.image_size
        if not (8 <= size <= 1024 and size & (size - 1) == 0):
            raise ValueError(f"data.image_size must be a power of two from 8 to 1024. Received: image_size={size}")
        if self.data.batch_size % min(self.model.mbstd_group_size, self.data.batch_size):
            raise ValueError(f"data.batch_size={self.data.batch_size} must be a multiple of "
                             f"model.mbstd_group_size={self.model.mbstd_group_size} (minibatch-stddev groups)")


def apply_schedule(cfg: StyleGANConfig, args=None) -> StyleGANConfig:
    """``schedule`` (kimg) -> ``train.steps`` / ``log_every`` / ``sample_every`` / ``checkpoint_every`` and
    ``eval.every`` (minibatches of ``data.batch_size`` images); the last tick is completed."""
    s, batch = cfg.schedule, cfg.data.batch_size
    log_every = max(1, round(s.tick_kimg * 1000 / batch))
    steps = math.ceil(math.ceil(s.kimg * 1000 / batch) / log_every) * log_every
    snapshot = log_every * s.snapshot_ticks
    return config_lib.replace(cfg, {"train": {"steps": steps, "log_every": log_every, "sample_every": snapshot,
                                              "checkpoint_every": snapshot},
                                    "eval": {"every": log_every * s.eval_ticks}})


def get_config(preset: str = "demo") -> StyleGANConfig:
    """The recipe's presets.

    \b
    demo  : python -m keras_medgan.recipes.stylegan2_ada
            conditional on the 8 demo-derm classes (2,000 images) at 32 px, batch 16; z = w = 128, 2 mapping
            layers, channel_base 2048 / max 128; no path-length regularisation and no style mixing (the ADA
            code's low-resolution ``cifar`` configuration); ADA ``bg`` (no colour transforms: with ``bgc`` the
            demo's skin turned violet, as paper 003 Sec. 4 reports for ISIC) from p = 0, its p step sized for
            100 kimg instead of 500 so that p can move within the demo; 24 kimg (1,500 minibatches); FID/KID
            every 8 kimg with the classifier:auto ruler.
    smoke : 16 px, a few minibatches; for tests.
    paper : python -m keras_medgan.recipes.stylegan2_ada --preset paper --data DIR
            paper 003's conditional benign / malignant model at 256 px; ADA ``auto`` settings at batch 32 (gamma
            0.0002 * 256^2 / 32 = 0.41, EMA 10 kimg with ramp-up 0.05, lr 0.0025, mbstd 4), 8-layer mapping at
            width 512, channel_base 16384; 25,000 kimg; Inception-v3 FID every 200 kimg; float16 on the 4 highest
            resolutions with clamp 256 on GPUs.
    """
    if preset == "demo":
        return StyleGANConfig(
            preset="demo", name="demo", demo_dataset="demo-derm",
            data=DataConfig(image_size=32, batch_size=16, shuffle_buffer=2048),
            model=ModelConfig(z_dim=128, w_dim=128, mapping_layers=2, d_mapping_layers=2, channel_base=2048,
                              channel_max=128, num_fp16_res=0, conv_clamp=None),
            # ADA code, cfg_specs["cifar"] (32 px): pl_weight = 0, style_mixing_prob = 0.
            loss=LossConfig(pl_weight=0.0, style_mixing_prob=0.0),
            schedule=ScheduleConfig(kimg=24.0, tick_kimg=1.6, snapshot_ticks=5, eval_ticks=5),
            augment=AugmentConfig(pipeline="bg", kimg=100.0),
            eval=EvalConfig(trials=10, bootstrap=50),
        )
    if preset == "smoke":
        return StyleGANConfig(
            preset="smoke", name="smoke", demo_dataset="demo-derm", demo_num_images=200,
            data=DataConfig(image_size=16, batch_size=4, shuffle_buffer=64),
            model=ModelConfig(z_dim=16, w_dim=16, mapping_layers=1, d_mapping_layers=1, channel_base=128,
                              channel_max=16, num_fp16_res=0, conv_clamp=None),
            loss=LossConfig(r1_interval=1, pl_interval=1),  # one phase combination: one trace
            schedule=ScheduleConfig(kimg=0.016, tick_kimg=0.008, snapshot_ticks=1, eval_ticks=1),
            train=TrainConfig(precision="float32"), samples_per_class=2, validation_steps=1,
            eval=EvalConfig(trials=3, bootstrap=5, ruler_epochs=1),
            detection=DetectionConfig(images_per_class=4, bootstrap=5),
        )
    if preset == "paper":
        return StyleGANConfig(
            preset="paper", name="paper",
            data=DataConfig(image_size=256, batch_size=32, shuffle_buffer=8192, classes=PAPER_CLASSES),
            model=ModelConfig(),
            schedule=ScheduleConfig(kimg=25000, tick_kimg=4, snapshot_ticks=50, eval_ticks=50),
            eval=EvalConfig(features="inception_v3"),
        )
    raise config_lib.ConfigError(f"unknown preset {preset!r}; choose one of {PRESETS}")


# ---------------------------------------------------------------------------------------------- building


def resolve_data(cfg: StyleGANConfig):
    """``noise_gan.resolve_data`` (demo data, explicit classes, non-empty splits); an unconditional model trains on
    the images of ``data.classes`` without their labels."""
    return noise_gan.resolve_data(cfg)


def num_classes(cfg: StyleGANConfig) -> int:
    return len(cfg.data.classes) if cfg.model.conditional else 0


def build_model(cfg: StyleGANConfig, channels: int, jit: bool) -> StyleGAN2ADA:
    """The compiled StyleGAN2-ADA model of ``cfg`` (G, D, the EMA G, ADA and the lazily regularised Adams)."""
    m, size, k = cfg.model, cfg.data.image_size, num_classes(cfg)
    g = stylegan2_generator(size, channels, k, m.z_dim, m.w_dim, m.mapping_layers, 0.01, m.channel_base,
                            m.channel_max, m.num_fp16_res, m.conv_clamp, seed=cfg.train.seed)
    d = stylegan2_discriminator(size, channels, k, m.channel_base, m.channel_max, m.mbstd_group_size, 1,
                                m.d_mapping_layers, m.num_fp16_res, m.conv_clamp)
    model = StyleGAN2ADA(g, d, seed=cfg.train.seed)
    o, loss, a = cfg.optimizer, cfg.loss, cfg.augment

    def adam(lr, interval, active):
        lr, (b1, b2) = lazy_regularization(lr, (o.beta_1, o.beta_2), interval) if active else (lr, (o.beta_1,
                                                                                                 o.beta_2))
        return FusedAdam(lr, beta_1=b1, beta_2=b2, epsilon=o.epsilon)

    gamma = r1_gamma(cfg)
    model.compile(adam(o.g_learning_rate, loss.pl_interval, loss.pl_weight > 0),
                  adam(o.d_learning_rate, loss.r1_interval, gamma > 0),
                  r1_gamma=gamma, r1_interval=loss.r1_interval, pl_weight=loss.pl_weight,
                  pl_interval=loss.pl_interval, style_mixing_prob=loss.style_mixing_prob, ema_kimg=cfg.ema.kimg,
                  ema_rampup=cfg.ema.rampup or None, augment=a.pipeline, augment_p=a.p,
                  ada_target=a.target or None, ada_interval=a.interval, ada_kimg=a.kimg,
                  batch_size=cfg.data.batch_size, jit_compile=jit)
    return model


def r1_gamma(cfg: StyleGANConfig) -> float:
    """``loss.r1_gamma``, or the ADA heuristic for the image size and batch."""
    if cfg.loss.r1_gamma is not None:
        return float(cfg.loss.r1_gamma)
    return r1_gamma_heuristic(cfg.data.image_size, cfg.data.batch_size)


def training_groups(model: StyleGAN2ADA) -> dict:
    """Everything exact resume needs: G, D, the EMA G, both optimisers, kimg, ADA p and r_t, the random streams."""
    return {"generator": model.generator.variables, "discriminator": model.discriminator.variables,
            "g_ema": model.g_ema.variables, "g_optimizer": model.g_optimizer.variables,
            "d_optimizer": model.d_optimizer.variables, "state": model.training_state()}


def step_of(model: StyleGAN2ADA) -> int:
    return int(keras.ops.convert_to_numpy(model.step_counter))


class _Sampler:
    """``generate(labels, seed, batch_size, **options)`` for the noise-GAN tools: an unconditional model takes the
    number of images."""

    def __init__(self, model: StyleGAN2ADA):
        self.model = model

    def generate(self, labels, seed=None, batch_size=64, **options):
        labels = labels if self.model.num_classes else len(np.atleast_1d(labels))
        return self.model.generate(labels, seed=seed, batch_size=batch_size, **options)


def eval_generate_fn(model: StyleGAN2ADA, ids: np.ndarray, reference_labels: np.ndarray):
    """``n -> {"image", "label"}`` for the evaluator: the EMA generator without truncation (FID's convention); a
    conditional model follows the reference split's labels, an unconditional one is labelled with its single
    class (or -1 for several)."""
    if model.num_classes:
        return noise_gan.eval_generate_fn(_Sampler(model), ids, reference_labels)
    label = int(ids[0]) if len(ids) == 1 else -1

    def generate(n: int) -> dict:
        return {"image": model.generate(n, seed=noise_gan.EVAL_SEED), "label": np.full(n, label, np.int64)}

    return generate


# ---------------------------------------------------------------------------------------------- selection


class SnapshotSelector:
    """The critical review's checkpoint rule (paper 002 Sec. 3.2), kept as training goes: after every FID, the EMA
    generator of the latest evaluation whose FID is within ``tolerance`` of the best is saved in ``snapshots/``
    (``ckpt-<step>.npz``, named by ``latest.json``) with ``selected.json``. The selection only ever moves
    forward, so one file is enough."""

    def __init__(self, model: StyleGAN2ADA, run_dir: str, tolerance: float):
        self.model = model
        self.dir = os.path.join(run_dir, "snapshots")
        self.metrics_path = os.path.join(run_dir, "metrics.jsonl")
        self.tolerance = tolerance

    def scores(self) -> dict:
        scores = {}
        if os.path.isfile(self.metrics_path):
            with open(self.metrics_path, encoding="utf-8") as f:
                for line in f:
                    row = json.loads(line)
                    if "metrics/fid" in row:
                        scores[int(row["step"])] = float(row["metrics/fid"])
        return scores

    def update(self, step: int, fid: float) -> None:
        scores = {**self.scores(), step: fid}
        if select_checkpoint(scores, self.tolerance) != step:
            return
        save_checkpoint(self.dir, step, {"g_ema": self.model.g_ema.variables},
                        meta={"kimg": step * self.model.batch_size / 1000, "fid": fid}, keep=1)
        schema.write_json_atomic(os.path.join(self.dir, "selected.json"),
                                 {"step": step, "kimg": step * self.model.batch_size / 1000, "fid": fid,
                                  "rule": f"latest FID within {self.tolerance} of the best (paper 002 Sec. 3.2)",
                                  "scores": {str(k): v for k, v in sorted(scores.items())}})


# ---------------------------------------------------------------------------------------------- train


def render_fn(model: StyleGAN2ADA, cfg: StyleGANConfig):
    """Fixed-seed grids of the EMA generator: one column per class (four columns for an unconditional model)."""
    k = num_classes(cfg)

    def render():
        if not k:
            images = model.generate(4 * cfg.samples_per_class, seed=SAMPLE_SEED)
            return [to_display(c) for c in np.split(images, 4)]
        return [to_display(model.generate(np.full(cfg.samples_per_class, c), seed=SAMPLE_SEED)) for c in range(k)]

    return render


def write_report(path: str, cfg: StyleGANConfig, info: schema.DatasetInfo, model: StyleGAN2ADA,
                 fit: common.FitResult, val: dict, runtime: common.Runtime, sections: list) -> None:
    m, a = cfg.model, cfg.augment
    rows = "\n".join(f"| `{k}` | {v:.4f} |" for k, v in sorted(val.items()))
    kind = f"conditional on {len(cfg.data.classes)} classes" if m.conditional else "unconditional"
    ada = ("off" if a.pipeline == "none" else
           f"`{a.pipeline}`, p {'adaptive (target r_t ' + str(a.target) + ')' if a.target else 'fixed'}, "
           f"final p = {float(model.ada_p.numpy()):.4f}")
    text = f"""# StyleGAN2-ADA run report

- Data: `{cfg.data.data_dir}` ({info.source}), trained at {cfg.data.image_size} px, batch {cfg.data.batch_size}
- Classes: {', '.join(cfg.data.classes)} ({kind})
- Model: z {m.z_dim}, w {m.w_dim}, {m.mapping_layers}-layer mapping, channel_base {m.channel_base} / max \
{m.channel_max}, minibatch-stddev group {m.mbstd_group_size}; {_precision_scope(m)}
- Loss: non-saturating logistic; R1 gamma {r1_gamma(cfg):.4g} every {cfg.loss.r1_interval} minibatches; path \
length weight {cfg.loss.pl_weight} every {cfg.loss.pl_interval}; style mixing {cfg.loss.style_mixing_prob}
- Augmentation (ADA): {ada}
- EMA generator: half-life {cfg.ema.kimg} kimg, ramp-up {cfg.ema.rampup or 'none'}; all samples and metrics use it
- Trained: {model.kimg:g} kimg of {cfg.schedule.kimg:g}; {_seconds_per_kimg(fit, cfg)} in this session
{common.runtime_lines(cfg, fit, runtime, os.path.dirname(path))}

## Validation (val split, no augmentation, EMA generator, fixed noise)

D's mean logit on real validation images against generated ones; a real-validation score falling towards the
generated one while the training score stays high is the overfitting ADA counters (ADA Sec. 2).

| term | value |
|---|---|
{rows}

""" + "\n".join(sections)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _seconds_per_kimg(fit: common.FitResult, cfg: StyleGANConfig) -> str:
    """Training speed of this session (periodic evaluations included), in NVIDIA's unit."""
    kimg = (fit.end_step - fit.start_step) * cfg.data.batch_size / 1000
    return f"{fit.seconds / kimg:.1f} s/kimg" if kimg > 0 else "no minibatch"


def selection_markdown(run_dir: str) -> str:
    path = os.path.join(run_dir, "snapshots", "selected.json")
    if not os.path.isfile(path):
        return ("## Selected snapshot (paper 002 Sec. 3.2)\n\nNo periodic FID was computed (schedule.eval_ticks = 0 "
                "or the run is shorter than one evaluation), so the last checkpoint is the model.\n")
    with open(path, encoding="utf-8") as f:
        sel = json.load(f)
    rows = "\n".join(f"| {int(s)} | {v:.3f} |{' selected' if int(s) == sel['step'] else ''}"
                     for s, v in sel["scores"].items())
    return (f"## Selected snapshot (paper 002 Sec. 3.2)\n\n{sel['rule']}: step {sel['step']} ({sel['kimg']:g} "
            f"kimg), FID {sel['fid']:.3f}; its EMA generator is in `snapshots/` and `generate --checkpoint selected` "
            f"uses it.\n\n| step | FID | |\n|---|---|---|\n{rows}\n")


def _precision_scope(m: ModelConfig) -> str:
    """Where the training precision applies: as in the ADA code, only the ``num_fp16_res`` highest resolutions."""
    if not m.num_fp16_res:
        return "every layer in float32 (model.num_fp16_res = 0: the precision policy below changes nothing)"
    clamp = f", activations clamped to +-{m.conv_clamp:g}" if m.conv_clamp else ""
    return f"the {m.num_fp16_res} highest resolutions in the precision below{clamp}, the rest in float32"


def train(argv) -> int:
    parser = common.build_parser(PROG, __doc__, PRESETS, changeable=("schedule.kimg",))  # train.steps follows it
    args = parser.parse_args(argv)
    cfg, run_dir, ckpt = common.start_run(parser, args, get_config, RECIPE, apply_schedule,
                                          changeable=("train.steps", "schedule.kimg"))
    if cfg is None:
        return 0
    runtime = common.setup_runtime(cfg)
    cfg, info = resolve_data(cfg)
    run_dir = common.prepare_run_dir(run_dir, ckpt, RECIPE, cfg)
    ids = noise_gan.dataset_ids(cfg, info)
    channels = cfg.data.channels or info.channels

    evaluator = rec_eval.GeneratorEvaluator(cfg.eval, cfg.data.data_dir, cfg.data.image_size, classes=ids)
    keras.utils.set_random_seed(cfg.train.seed)  # the ruler may have trained just now; see dermgan.train
    with runtime.strategy.scope():
        model = build_model(cfg, channels, runtime.jit)
    start_step = common.restore_for_resume(ckpt, training_groups(model), run_dir)
    data_cfg = common.train_data_config(cfg)
    train_ds = pipelines.make_dataset(data_cfg, "train", start_step=start_step)
    n_val = pipelines.selected_records(cfg.data, info, "val")
    full = n_val >= cfg.data.batch_size
    val_cfg = dataclasses.replace(data_cfg, shuffle_buffer=0, repeat=False, drop_remainder=full, cache=False)
    val_batches = max(1, n_val // cfg.data.batch_size) if full else 1
    val_ds = pipelines.make_dataset(val_cfg, "val")

    generate_fn = eval_generate_fn(model, ids, evaluator.real.labels)
    selector = SnapshotSelector(model, run_dir, cfg.schedule.selection_tolerance)

    def periodic():
        result = evaluator.periodic(generate_fn)
        selector.update(step_of(model), float(result["fid"]))
        return {**result, "kimg": model.kimg}

    extra_callbacks = []
    if cfg.eval.every:
        extra_callbacks.append(PeriodicEvaluation(periodic, cfg.eval.every // cfg.train.log_every,
                                                  lambda: step_of(model), os.path.join(run_dir, "tensorboard"),
                                                  os.path.join(run_dir, "metrics.jsonl")))
    print(f"StyleGAN2-ADA: {cfg.schedule.kimg:g} kimg = {cfg.train.steps} minibatches of {cfg.data.batch_size}; "
          f"R1 gamma {r1_gamma(cfg):.4g}; ADA {cfg.augment.pipeline}")
    fit = common.fit_with_checkpoints(
        model, train_ds, val_ds.repeat(), cfg.train, run_dir, start_step=start_step, step_fn=lambda: step_of(model),
        groups_fn=lambda: training_groups(model), render_fn=render_fn(model, cfg),
        optimizers={"g": model.g_optimizer, "d": model.d_optimizer}, config_text=common.config_markdown(cfg),
        meta_fn=lambda: {"kimg": model.kimg, "ada_p": float(model.ada_p.numpy())},
        validation_steps=min(cfg.validation_steps, val_batches), extra_callbacks=extra_callbacks)
    val = {k_: float(v) for k_, v in model.evaluate(val_ds, steps=val_batches, verbose=0, return_dict=True).items()}
    save_model_atomic(model.g_ema, os.path.join(run_dir, "generator.keras"))
    print("final evaluation (FID/KID/IS/PRDC with intervals, memorization audit) ...")
    evaluation = evaluator.final(generate_fn, run_dir, extra={"step": fit.end_step, "kimg": model.kimg,
                                                              "run": os.path.abspath(run_dir)})
    sections = [rec_eval.markdown_section(evaluation), selection_markdown(run_dir)]
    if model.num_classes:
        sections.insert(0, noise_gan.detection_markdown(noise_gan.detection_report(_Sampler(model), cfg, info,
                                                                                   run_dir)))
    write_report(os.path.join(run_dir, "report.md"), cfg, info, model, fit, val, runtime, sections)
    common.print_run_summary(run_dir, fit)
    return 0


# ---------------------------------------------------------------------------------------------- after training


def load_model(run_dir: str, checkpoint: str = "latest"):
    """The model of a run (``checkpoint``: ``latest`` or ``selected``, the review rule's EMA snapshot), its config
    and dataset info."""
    cfg = common.load_run_config(run_dir, get_config)
    info = common.check_data_dir(cfg.data.data_dir)
    ckpt = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if ckpt is None:
        raise common.RecipeError(f"{run_dir} has no checkpoint; train it first (or resume it with --resume).")
    model = build_model(cfg, cfg.data.channels or info.channels, False)
    restore_checkpoint(ckpt, training_groups(model), strict=False)
    if checkpoint == "selected":
        selected = latest_checkpoint(os.path.join(run_dir, "snapshots"))
        if selected is None:
            raise common.RecipeError(f"{run_dir} has no selected snapshot (no periodic FID was computed); use "
                                     "--checkpoint latest.")
        restore_checkpoint(selected, {"g_ema": model.g_ema.variables})
    return model, cfg, info


def _generate_arguments(parser):
    parser.add_argument("--truncation-psi", type=float, default=1.0,
                        help="Truncation trick psi in (0, 1]: lower trades diversity for typicality (StyleGAN "
                             "Sec. 3.1). Default: 1 (none).")
    parser.add_argument("--checkpoint", choices=["selected", "latest"], default=None,
                        help="selected = the EMA snapshot the review's rule chose (latest FID within 0.3 of the "
                             "best); latest = the last checkpoint. Default: selected when the run has one.")


def _load_for_generate(args):
    if not 0 < args.truncation_psi <= 1.0:
        raise common.RecipeError(f"--truncation-psi must be in (0, 1]. Received: {args.truncation_psi}")
    choice = args.checkpoint or ("selected" if latest_checkpoint(os.path.join(args.run, "snapshots")) else "latest")
    model, cfg, info = load_model(args.run, choice)
    print(f"generating from the {choice} EMA generator, truncation psi {args.truncation_psi}")
    return _Sampler(model), cfg, info, {"truncation_psi": args.truncation_psi}


def _load_detect(run_dir, _get_config):
    model, cfg, info = load_model(run_dir)
    if not model.num_classes:
        raise common.RecipeError(f"{run_dir} is an unconditional run: it has no intended class per image to detect.")
    return _Sampler(model), cfg, info


def main(argv=None) -> int:
    """Entry point: ``generate``, ``detect``, ``project``, ``sefa``, ``ppl`` or training; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    if command == "generate":
        return common.guarded(noise_gan.generate, argv[1:], PROG, get_config, _load_for_generate,
                              _generate_arguments)
    if command == "detect":
        return common.guarded(noise_gan.detect, argv[1:], PROG, get_config, _load_detect)
    if command in ("project", "sefa", "ppl"):
        from keras_medgan.recipes import stylegan2_tools

        fn = getattr(stylegan2_tools, f"{command}_command")
        return common.guarded(fn, argv[1:], PROG, lambda run: load_model(run))
    return common.guarded(train, argv)


if __name__ == "__main__":
    sys.exit(main())
