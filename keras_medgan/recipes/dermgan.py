"""DermGAN recipe: train the semantic-map-to-skin-image GAN, then generate controllable synthetic data.

Paper: Ghorbani et al. 2020, "DermGAN: Synthetic Generation of Clinical Skin
Images with Pathology" (Sec. 2 model and losses; Sec. 3 sampling maps, skin
colour and lesion size sweeps). Recipe card: ``recipes/dermgan/README.md``.

\b
Train (no arguments: preset ``demo`` on the procedural demo-derm data, 64 px, ~10 min on 2 CPU cores):
    python -m keras_medgan.recipes.dermgan
    python -m keras_medgan.recipes.dermgan --preset paper --data data/my-derm-256
    python -m keras_medgan.recipes.dermgan --config recipes/dermgan/ablation_no_fm.toml --data DIR
    python -m keras_medgan.recipes.dermgan --resume                      # newest run, exactly where it stopped
\b
Ablation (Sec. 4, Table 1): the four variants, each evaluated with the same ruler, in one FID table:
    python -m keras_medgan.recipes.dermgan ablation
\b
Generate (Sec. 3): sampled maps, skin-type and lesion-size sweeps, and a TFRecord dataset:
    python -m keras_medgan.recipes.dermgan generate --run runs/dermgan/00001-demo --out synth --num-images 500
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from keras_medgan import config as config_lib
from keras_medgan.callbacks import PeriodicEvaluation, latest_checkpoint, restore_checkpoint
from keras_medgan.callbacks.monitoring import image_grid, save_png_atomic, to_display
from keras_medgan.config import DataConfig, EvalConfig, TrainConfig
from keras_medgan.data import demo, pipelines, schema
from keras_medgan.data import semantic_maps as sm
from keras_medgan.data.writer import ImageRecord, ShardedWriter, command_line
from keras_medgan.gans import DermGAN
from keras_medgan.gans.dermgan import UPDATE_RULES
from keras_medgan.io_utils import atomic_open, save_model_atomic
from keras_medgan.networks.patch_discriminator import patch_discriminator
from keras_medgan.networks.unet_generator import unet_generator
from keras_medgan.optimizers import FusedAdam
from keras_medgan.recipes import common
from keras_medgan.recipes import evaluation as rec_eval

RECIPE = "dermgan"
PRESETS = ("demo", "smoke", "paper")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Networks (DermGAN Sec. 2, Fig. 3; pix2pix ``unet_256`` + ``basic`` PatchGAN).

    Args:
        upsampling: str. ``resize_conv`` (DermGAN: nearest x2 + 3x3 conv against checkerboard
            artifacts) or ``transpose`` (pix2pix; the "no checkerboard mitigation" ablation).
        norm: str. ``batch`` (pix2pix default) or ``instance``.
        base_filters: int. U-Net ``ngf`` and PatchGAN ``ndf`` (pix2pix: 64).
        d_layers: int. PatchGAN stride-2 layers (3 -> 70x70 patches).
        dropout_rate: float. Dropout in the first three decoder blocks, G's noise source (pix2pix: 0.5).
    """

    upsampling: str = "resize_conv"
    norm: str = "batch"
    base_filters: int = 64
    d_layers: int = 3
    dropout_rate: float = 0.5

    def __post_init__(self):
        if self.upsampling not in ("resize_conv", "transpose"):
            raise ValueError(f"model.upsampling must be 'resize_conv' or 'transpose'. Received: {self.upsampling!r}")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"model.norm must be 'batch' or 'instance'. Received: {self.norm!r}")
        if not (isinstance(self.base_filters, int) and self.base_filters >= 1):
            raise ValueError(f"model.base_filters must be an integer >= 1. Received: {self.base_filters!r}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"model.dropout_rate must be in [0, 1). Received: {self.dropout_rate!r}")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights of G's four terms (DermGAN Sec. 2). The paper does not publish them; ours:

    Args:
        lambda_l1: float. Whole-image L1. 100, pix2pix's value (Isola et al. 2017, Sec. 4).
        lambda_roi: float. Condition-specific L1, normalised by the ROI area. 100 gives the lesion
            pixels as much total weight as the whole image has, i.e. the pathology counts twice per
            pixel; that is the paper's stated aim ("to put more emphasis on the condition") without
            letting the ROI term swamp the background. 0 = the "no condition-specific loss" ablation.
        lambda_fm: float. Feature matching (L2 on D's second-to-last activations). 10, the weight
            pix2pixHD gives its feature-matching term (Wang et al. 2018); D's LeakyReLU features have
            a magnitude near 1, so at 10 the term is on the scale of the L1 terms. 0 = "no feature matching".
        lambda_gan: float. Adversarial term (pix2pix: 1).
        gan_loss: str. ``vanilla`` (pix2pix BCE), ``lsgan`` or ``hinge``.
    """

    lambda_l1: float = 100.0
    lambda_roi: float = 100.0
    lambda_fm: float = 10.0
    lambda_gan: float = 1.0
    gan_loss: str = "vanilla"

    def __post_init__(self):
        for name in ("lambda_l1", "lambda_roi", "lambda_fm", "lambda_gan"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"loss.{name} must be a number >= 0. Received: {name}={value!r}")
        if self.gan_loss not in ("vanilla", "lsgan", "hinge"):
            raise ValueError(f"loss.gan_loss must be 'vanilla', 'lsgan' or 'hinge'. Received: {self.gan_loss!r}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam for G and D (pix2pix: lr 2e-4, beta1 0.5; the DermGAN paper names no optimiser).

    ``update_rule``: ``alternating`` (pix2pix Sec. 3.3: a D step, then a G step against the updated D; the
    default) or ``simultaneous`` (both gradients from one forward pass at the same weights: 12 % fewer
    FLOPs per step at 256 px, a different algorithm; ``keras_medgan.gans.dermgan``).
    """

    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    update_rule: str = "alternating"

    def __post_init__(self):
        for name in ("g_learning_rate", "d_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"optimizer.{name} must be > 0. Received: {name}={getattr(self, name)!r}")
        if self.update_rule not in UPDATE_RULES:
            raise ValueError(f"optimizer.update_rule must be one of {', '.join(UPDATE_RULES)}. "
                             f"Received: update_rule={self.update_rule!r}")


@dataclasses.dataclass(frozen=True)
class DermGANConfig:
    """Everything a DermGAN run needs; ``config.json`` in the run directory is this, as JSON.

    Args:
        preset: str. The preset it started from.
        name: str. Run name (the run folder is ``<number>-<name>``).
        data: DataConfig. ``data_dir=""`` builds the demo-derm dataset into the cache.
        demo_num_images: int. Size of the demo dataset when ``data_dir`` is empty.
        model, loss, optimizer, train: see their classes.
        num_samples: int. Validation maps in the fixed sample grid.
        validation_steps: int. Validation batches per periodic validation pass.
        eval: EvalConfig. Periodic FID/KID and the final evaluation (FID/KID/IS/PRDC with intervals, per-class
            and per-skin-type FID/KID, memorization audit), written to ``evaluation.json`` and ``report.md``.
    """

    preset: str = "demo"
    name: str = "demo"
    data: DataConfig = DataConfig()
    demo_num_images: int = 2000
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    train: TrainConfig = TrainConfig()
    num_samples: int = 8
    validation_steps: int = 4
    eval: EvalConfig = EvalConfig()

    def __post_init__(self):
        if self.eval.every % self.train.log_every:
            raise ValueError(f"eval.every must be a multiple of train.log_every={self.train.log_every} (0 = off). "
                             f"Received: every={self.eval.every}")
        size = self.data.image_size
        if not (32 <= size <= 512 and size & (size - 1) == 0):
            raise ValueError(
                f"data.image_size must be a power of two between 32 and 512 (the U-Net halves it down to 1x1). "
                f"Received: image_size={size}")
        if size < 3 * 2 ** self.model.d_layers:
            raise ValueError(f"model.d_layers={self.model.d_layers} is too deep for data.image_size={size}: the "
                             f"PatchGAN needs image_size >= 3 * 2**d_layers.")


def get_config(preset: str = "demo") -> DermGANConfig:
    """The recipe's presets.

    \b
    demo  : python -m keras_medgan.recipes.dermgan
            64 px demo-derm (2,000 images), batch 8, 3,000 steps, base_filters 32, mixed_bfloat16 where the
            CPU supports it. FID/KID every 1,000 steps and a full evaluation at the end, measured with a domain
            classifier trained on the demo train split (classifier:auto; trained once and cached, works offline).
            About 10 minutes on 2 CPU cores (recipes/dermgan/README.md gives the numbers).
    smoke : 32 px, a few steps; for tests.
    paper : python -m keras_medgan.recipes.dermgan --preset paper --data DIR
            256 px, pix2pix unet_256 widths (base 64), batch 1 (pix2pix's default), Adam 2e-4 / 0.5,
            lambda_l1 100, lambda_roi 100, lambda_fm 10; 200k steps; Inception-v3 FID every 10k steps
            (DermGAN Sec. 4 reports Inception FID). Needs a GPU.
    """
    if preset == "demo":
        return DermGANConfig(
            preset="demo", name="demo",
            data=DataConfig(image_size=64, batch_size=8, shuffle_buffer=2048, max_boxes=4),
            model=ModelConfig(base_filters=32),
            train=TrainConfig(steps=3000, log_every=100, sample_every=500, checkpoint_every=500),
            eval=EvalConfig(every=1000),
        )
    if preset == "smoke":
        return DermGANConfig(
            preset="smoke", name="smoke", demo_num_images=200,
            data=DataConfig(image_size=32, batch_size=4, shuffle_buffer=64, max_boxes=4),
            model=ModelConfig(base_filters=8),
            train=TrainConfig(steps=4, log_every=2, sample_every=2, checkpoint_every=2, precision="float32"),
            num_samples=4, validation_steps=1,
            eval=EvalConfig(every=2, trials=3, bootstrap=5, ruler_epochs=1),
        )
    if preset == "paper":
        return DermGANConfig(
            preset="paper", name="paper",
            data=DataConfig(image_size=256, batch_size=1, shuffle_buffer=4096, max_boxes=8, cache=False),
            model=ModelConfig(base_filters=64),
            train=TrainConfig(steps=200_000, log_every=500, sample_every=5000, checkpoint_every=5000),
            validation_steps=50,
            eval=EvalConfig(features="inception_v3", every=10_000),
        )
    raise config_lib.ConfigError(f"unknown preset {preset!r}; choose one of {PRESETS}")


def build_networks(cfg: DermGANConfig, channels: int):
    """(generator, discriminator) for a config."""
    g = unet_generator(image_size=cfg.data.image_size, input_channels=3, output_channels=channels,
                       base_filters=cfg.model.base_filters, norm=cfg.model.norm, upsampling=cfg.model.upsampling,
                       dropout_rate=cfg.model.dropout_rate)
    d = patch_discriminator(image_size=cfg.data.image_size, map_channels=3, image_channels=channels,
                            base_filters=cfg.model.base_filters, n_layers=cfg.model.d_layers, norm=cfg.model.norm)
    return g, d


def with_semantic_maps(ds: tf.data.Dataset, num_classes: int, image_size: int) -> tf.data.Dataset:
    """Batches of ``make_dataset`` -> ``{"semantic_map", "image"}`` (maps built on the fly from each record)."""

    def fn(batch):
        return {"semantic_map": sm.semantic_map(batch["fitzpatrick"], batch["boxes"], batch["box_labels"],
                                                batch["num_boxes"], num_classes, image_size),
                "image": batch["image"]}

    return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def resolve_data_dir(cfg: DermGANConfig) -> DermGANConfig:
    """Builds the demo dataset into the cache when ``data.data_dir`` is empty."""
    if cfg.data.data_dir:
        return cfg
    path = demo.ensure_demo_dataset("demo-derm", image_size=cfg.data.image_size, num_images=cfg.demo_num_images)
    return config_lib.replace(cfg, {"data": {"data_dir": path}})


def _training_groups(model: DermGAN) -> dict:
    return {"generator": model.generator.variables, "discriminator": model.discriminator.variables,
            "g_optimizer": model.g_optimizer.variables, "d_optimizer": model.d_optimizer.variables}


def map_generate_fn(generator: keras.Model, cfg: DermGANConfig, num_classes: int, split: str, seed: int = 0):
    """``n -> {"image", "label", "fitzpatrick"}``: the generator's images for the maps of ``split``.

    The first pass uses each record's own map, so generated and real images of the split pair up (how DermGAN
    Sec. 4 computes its FID on the test set). Further passes, when more images than maps are asked for, move
    the boxes randomly (Sec. 3's sampler) so no image is generated twice.
    """
    size = cfg.data.image_size
    read_cfg = dataclasses.replace(cfg.data, batch_size=max(cfg.data.batch_size, 16), shuffle_buffer=0,
                                   repeat=False, drop_remainder=False, cache=False, deterministic=True)

    def generate(n: int) -> dict:
        out = {"image": [], "label": [], "fitzpatrick": []}
        count, epoch = 0, 0
        while count < n:
            for i, b in enumerate(pipelines.make_dataset(read_cfg, split)):
                boxes = b["boxes"]
                if epoch:
                    seeds = tf.random.experimental.stateless_split(tf.constant([seed, epoch * 100_003 + i], tf.int64),
                                                                   len(boxes))
                    boxes = tf.stack([sm.translate_boxes(boxes[j], b["num_boxes"][j], seeds[j])
                                      for j in range(len(boxes))])
                maps = sm.semantic_map(b["fitzpatrick"], boxes, b["box_labels"], b["num_boxes"], num_classes, size)
                take = min(n - count, len(maps))
                out["image"].append(keras.ops.convert_to_numpy(generator(maps[:take], training=False)).astype(np.float32))
                out["label"].append(b["label"][:take].numpy())
                out["fitzpatrick"].append(b["fitzpatrick"][:take].numpy())
                count += take
                if count >= n:
                    break
            epoch += 1
        return {k: np.concatenate(v) for k, v in out.items()}

    return generate


def write_report(path: str, cfg: DermGANConfig, info: schema.DatasetInfo, fit: common.FitResult, val: dict,
                 runtime: common.Runtime, evaluation: dict | None = None) -> None:
    """``report.md``: what was trained on what, how long it took, and the validation losses."""
    rows = "\n".join(f"| `{k}` | {v:.4f} |" for k, v in sorted(val.items()))
    text = f"""# DermGAN run report

- Data: `{cfg.data.data_dir}` ({info.source}; {info.num_examples('train')} train / {info.num_examples('val')} val
  images, {info.num_classes} classes, stored {info.image_size[0]} px, trained at {cfg.data.image_size} px)
- Model: U-Net ({cfg.model.upsampling}, {cfg.model.norm} norm, base {cfg.model.base_filters}) + PatchGAN
  ({cfg.model.d_layers} layers); loss weights L1 {cfg.loss.lambda_l1}, ROI {cfg.loss.lambda_roi},
  FM {cfg.loss.lambda_fm}, GAN {cfg.loss.lambda_gan} ({cfg.loss.gan_loss})
{common.runtime_lines(cfg, fit, runtime, os.path.dirname(path))}
  (validation map | real | generated)

## Validation losses (whole validation split, generator in inference mode)

| term | value |
|---|---|
{rows}

Lower `loss/g/l1` and `loss/g/l1_roi` mean the generator reproduces the validation images and their lesions
more closely from the maps alone. These are reconstruction losses, not a verdict on realism; the next section is.

{rec_eval.markdown_section(evaluation) if evaluation is not None else ""}"""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def train(argv=None) -> int:
    parser = common.build_parser("python -m keras_medgan.recipes.dermgan", __doc__, PRESETS)
    args = parser.parse_args(argv)
    cfg, run_dir, ckpt = common.start_run(parser, args, get_config, RECIPE)
    if cfg is None:
        return 0
    runtime = common.setup_runtime(cfg)
    cfg = resolve_data_dir(cfg)
    info = common.check_data_dir(cfg.data.data_dir)
    for split in ("train", "val"):
        if info.num_examples(split) == 0:
            raise common.RecipeError(f"{cfg.data.data_dir} has no {split!r} records; DermGAN trains on 'train' and "
                                     "samples fixed maps from 'val'. Re-create it with a non-zero --val-fraction.")
    channels = cfg.data.channels or info.channels
    run_dir = common.prepare_run_dir(run_dir, ckpt, RECIPE, cfg)

    # The ruler may be trained here on first use (then cached); re-seed after it so that the GAN's initial weights
    # and noise do not depend on whether the ruler was already in the cache.
    evaluator = rec_eval.GeneratorEvaluator(cfg.eval, cfg.data.data_dir, cfg.data.image_size)
    keras.utils.set_random_seed(cfg.train.seed)
    with runtime.strategy.scope():
        generator, discriminator = build_networks(cfg, channels)
        model = DermGAN(generator, discriminator)
        opt = cfg.optimizer
        model.compile(
            g_optimizer=FusedAdam(opt.g_learning_rate, beta_1=opt.beta_1, beta_2=opt.beta_2),
            d_optimizer=FusedAdam(opt.d_learning_rate, beta_1=opt.beta_1, beta_2=opt.beta_2),
            lambda_l1=cfg.loss.lambda_l1, lambda_roi=cfg.loss.lambda_roi, lambda_fm=cfg.loss.lambda_fm,
            lambda_gan=cfg.loss.lambda_gan, gan_loss=cfg.loss.gan_loss, update_rule=opt.update_rule,
            jit_compile=runtime.jit)
    start_step = common.restore_for_resume(ckpt, _training_groups(model), run_dir)
    data_cfg = common.train_data_config(cfg)
    num_classes = info.num_classes
    train_ds = with_semantic_maps(pipelines.make_dataset(data_cfg, "train", start_step=start_step), num_classes,
                                  cfg.data.image_size)
    val_cfg = dataclasses.replace(data_cfg, shuffle_buffer=0, repeat=False, drop_remainder=False, cache=False)
    val_batches = -(-info.num_examples("val") // cfg.data.batch_size)
    val_ds = with_semantic_maps(pipelines.make_dataset(val_cfg, "val"), num_classes, cfg.data.image_size)
    fixed = next(iter(val_ds.unbatch().batch(cfg.num_samples)))
    fixed_maps, fixed_real = fixed["semantic_map"], fixed["image"]

    def render():
        fake = generator(fixed_maps, training=False)
        return [to_display(fixed_maps * 2.0 - 1.0), to_display(fixed_real), to_display(fake)]

    step_fn = lambda: int(keras.ops.convert_to_numpy(model.g_optimizer.iterations))  # noqa: E731
    generate_fn = map_generate_fn(generator, cfg, num_classes, cfg.eval.reference_split)
    extra_callbacks = []
    if cfg.eval.every:
        extra_callbacks.append(PeriodicEvaluation(lambda: evaluator.periodic(generate_fn),
                                                  cfg.eval.every // cfg.train.log_every, step_fn,
                                                  os.path.join(run_dir, "tensorboard"),
                                                  os.path.join(run_dir, "metrics.jsonl")))
    fit = common.fit_with_checkpoints(
        model, train_ds, val_ds.repeat(), cfg.train, run_dir, start_step=start_step, step_fn=step_fn,
        groups_fn=lambda: _training_groups(model), render_fn=render,
        optimizers={"g": model.g_optimizer, "d": model.d_optimizer}, config_text=common.config_markdown(cfg),
        validation_steps=min(cfg.validation_steps, val_batches), extra_callbacks=extra_callbacks)
    val = model.evaluate(val_ds, steps=val_batches, verbose=0, return_dict=True)
    val = {k: float(v) for k, v in val.items()}
    save_model_atomic(generator, os.path.join(run_dir, "generator.keras"))
    print("final evaluation (FID/KID/IS/PRDC with intervals, memorization audit) ...")
    evaluation = evaluator.final(generate_fn, run_dir, extra={"step": fit.end_step, "run": os.path.abspath(run_dir)})
    write_report(os.path.join(run_dir, "report.md"), cfg, info, fit, val, runtime, evaluation)
    common.print_run_summary(run_dir, fit)
    return 0


# ---------------------------------------------------------------------------
# generate (paper Sec. 3)
# ---------------------------------------------------------------------------

SKIN_TYPES = (1, 2, 3, 4, 5, 6)
SIZE_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


def load_generator(run_dir: str) -> tuple[keras.Model, DermGANConfig, schema.DatasetInfo]:
    """The generator of a run, from its newest checkpoint (or ``generator.keras``), with the run's config."""
    cfg = common.load_run_config(run_dir, get_config)
    info = common.check_data_dir(cfg.data.data_dir)
    ckpt = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    exported = os.path.join(run_dir, "generator.keras")
    if ckpt is None and not os.path.exists(exported):
        raise common.RecipeError(f"{run_dir} has neither a checkpoint nor generator.keras; train it first.")
    if ckpt is None:
        return keras.saving.load_model(exported), cfg, info
    generator, _ = build_networks(cfg, cfg.data.channels or info.channels)
    restore_checkpoint(ckpt, {"generator": generator.variables}, strict=False)
    return generator, cfg, info


def _label_row(grid: np.ndarray, labels, cell: int, pad: int = 2) -> np.ndarray:
    """Adds a header strip with one text label per column."""
    from PIL import Image, ImageDraw

    header = Image.new("RGB", (grid.shape[1], 14), (255, 255, 255))
    draw = ImageDraw.Draw(header)
    for i, text in enumerate(labels):
        draw.text((pad + i * (cell + pad) + 2, 1), str(text), fill=(0, 0, 0))
    return np.concatenate([np.asarray(header), grid], axis=0)


def generate(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_medgan.recipes.dermgan generate",
        description="Generate synthetic images from a trained DermGAN run (paper Sec. 3): maps sampled from a "
                    "split with random box subsets and translations, a skin-type sweep (Fig. 5), a lesion-size "
                    "sweep (Fig. 6), PNGs, labelled grids and a TFRecord dataset in the keras-medgan schema.\n\n"
                    "Example:\n  python -m keras_medgan.recipes.dermgan generate --run runs/dermgan/00001-demo "
                    "--out synth --num-images 500",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="The run directory of a trained DermGAN.")
    parser.add_argument("--out", required=True, help="Output folder (images/, grids and dataset/ go here).")
    parser.add_argument("--split", choices=schema.SPLITS, default="val",
                        help="Split whose maps are sampled (the paper uses validation maps). Default: val.")
    parser.add_argument("--data", default=None, help="Dataset to sample maps from. Default: the run's own data.")
    parser.add_argument("--num-images", type=int, default=200, help="Synthetic images to generate. Default: 200.")
    parser.add_argument("--max-shift", type=float, default=0.25,
                        help="Largest random box translation, as a fraction of the image side. Default: 0.25.")
    parser.add_argument("--no-subset", action="store_true",
                        help="Keep every box of a map instead of a random non-empty subset.")
    parser.add_argument("--sweep-maps", type=int, default=4,
                        help="Maps shown in the skin-type and lesion-size sweep grids. Default: 4.")
    parser.add_argument("--batch-size", type=int, default=16, help="Generator batch size. Default: 16.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for map sampling. Default: 0.")
    parser.add_argument("--format", choices=["png", "jpeg"], default="png", help="Stored image format.")
    args = parser.parse_args(argv)
    if args.num_images < 1 or args.sweep_maps < 1 or args.batch_size < 1:
        parser.error("--num-images, --sweep-maps and --batch-size must be >= 1")
    if not os.path.isdir(args.run):
        parser.error(f"--run {args.run!r} is not a folder")

    generator, cfg, info = load_generator(args.run)
    data_dir = args.data or cfg.data.data_dir
    if args.data:
        info = common.check_data_dir(data_dir)
    size, num_classes = cfg.data.image_size, info.num_classes
    read_cfg = dataclasses.replace(cfg.data, data_dir=data_dir, batch_size=1, shuffle_buffer=0, repeat=False,
                                   drop_remainder=False, cache=False)
    sources = [{k: v[0] for k, v in b.items()} for b in pipelines.make_dataset(read_cfg, args.split)]
    with_boxes = [s for s in sources if int(s["num_boxes"]) > 0] or sources
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)

    # 1. Sampled maps: random subset of boxes, random translation (Sec. 3, Fig. 4).
    maps, records = [], []
    for i in range(args.num_images):
        src = with_boxes[i % len(with_boxes)]
        seeds = tf.random.experimental.stateless_split(tf.constant([args.seed, i], tf.int64), 2)
        boxes, labels, n = src["boxes"], src["box_labels"], src["num_boxes"]
        if not args.no_subset:
            boxes, labels, n = sm.random_box_subset(boxes, labels, n, seeds[0])
        boxes = sm.translate_boxes(boxes, n, seeds[1], max_shift=args.max_shift)
        maps.append(sm.semantic_map(src["fitzpatrick"], boxes, labels, n, num_classes, size))
        k = int(n)
        records.append(dict(label=int(src["label"]), fitzpatrick=int(src["fitzpatrick"]),
                            bboxes=boxes.numpy()[:k].tolist(), bbox_labels=labels.numpy()[:k].tolist(),
                            source=src["source_id"].numpy().decode()))
    images = []
    for start in range(0, len(maps), args.batch_size):
        batch = tf.stack(maps[start:start + args.batch_size])
        images.append(to_display(generator(batch, training=False)))
    images = np.concatenate(images)
    if images.shape[-1] == 3 and info.channels == 1:
        images = images[..., :1]
    run_name = os.path.basename(os.path.normpath(args.run))
    writer_dir = os.path.join(args.out, "dataset")
    with ShardedWriter(writer_dir, num_shards=max(1, min(8, args.num_images // 500 + 1)),
                       image_format=args.format) as writer:
        for i, (img, rec) in enumerate(zip(images, records)):
            save_png_atomic(img if img.shape[-1] == 3 else img[..., 0], os.path.join(args.out, "images",
                                                                                      f"{i:06d}.png"))
            writer.add("train", ImageRecord(image=img,
                                            label=rec["label"], fitzpatrick=rec["fitzpatrick"],
                                            bboxes=[[min(max(v, 0.0), 1.0) for v in b] for b in rec["bboxes"]],
                                            bbox_labels=rec["bbox_labels"], patient_id=f"synthetic-{i:06d}",
                                            source_id=f"dermgan:{run_name}:{i:06d}:map-from:{rec['source']}"),
                       info.class_names)
        writer.finish(source=f"dermgan-generate:{run_name}", command=command_line(), image_size=[size, size],
                      channels=info.channels, class_names=list(info.class_names), split_unit="image",
                      seed=args.seed, extra={"generator_run": os.path.abspath(args.run), "map_split": args.split,
                                             "max_shift": args.max_shift, "subset": not args.no_subset})
    n_grid = min(len(images), 32)
    sample_maps = to_display(tf.stack(maps[:n_grid]) * 2.0 - 1.0)
    save_png_atomic(_label_row(image_grid([sample_maps[: n_grid // 2], images[: n_grid // 2]]), ["map", "generated"],
                               size), os.path.join(args.out, "grid.png"))

    # 2. Skin-type sweep (Fig. 5) and 3. lesion-size sweep (Fig. 6) on the first maps with boxes.
    sweep_src = with_boxes[: args.sweep_maps]
    skin_cols, size_cols = [], []
    for t in SKIN_TYPES:
        batch = tf.stack([sm.semantic_map(tf.constant(t), s["boxes"], s["box_labels"], s["num_boxes"], num_classes,
                                          size) for s in sweep_src])
        skin_cols.append(to_display(generator(batch, training=False)))
    for scale in SIZE_SCALES:
        batch = tf.stack([sm.semantic_map(s["fitzpatrick"], sm.rescale_boxes(s["boxes"], s["num_boxes"], scale),
                                          s["box_labels"], s["num_boxes"], num_classes, size) for s in sweep_src])
        size_cols.append(to_display(generator(batch, training=False)))
    save_png_atomic(_label_row(image_grid(skin_cols), [f"type {'I II III IV V VI'.split()[t - 1]}" for t in SKIN_TYPES],
                               size), os.path.join(args.out, "sweep_skin_type.png"))
    save_png_atomic(_label_row(image_grid(size_cols), [f"x{s:g}" for s in SIZE_SCALES], size),
                    os.path.join(args.out, "sweep_lesion_size.png"))
    print(f"wrote {len(images)} images to {args.out}/images, dataset {writer_dir}, grids grid.png, "
          f"sweep_skin_type.png, sweep_lesion_size.png")
    return 0


# ---------------------------------------------------------------------------
# ablation (paper Sec. 4, Table 1)
# ---------------------------------------------------------------------------

# (key, Table 1 column, overrides); the TOML files in recipes/dermgan/ hold the same overrides.
ABLATIONS = (
    ("full", "DermGAN (full model)", []),
    ("no_checkerboard", "no checkerboard mitigation (transposed convolutions)", ["model.upsampling=transpose"]),
    ("no_roi", "no condition-specific (ROI) loss", ["loss.lambda_roi=0"]),
    ("no_fm", "no feature matching", ["loss.lambda_fm=0"]),
)


def _fid_cell(result: dict) -> str:
    if "fid" not in result:
        return "—"
    t = result["fid"].get("trials")
    return f"{t['mean']:.3f} ± {1.959963984540054 * t['std']:.3f}" if t else f"{result['fid']['value']:.3f}"


def _interval_cell(row: tuple) -> str:
    value, low, high = row
    return f"{value:.4g} [{low:.4g}, {high:.4g}]" if low is not None else f"{value:.4g}"


def ablation_table(results: dict, labels: dict) -> str:
    """Markdown table in the shape of DermGAN Table 1, from ``{key: evaluation result}``."""
    fingerprints = {r["settings"]["extractor"]["fingerprint"] for r in results.values()}
    if len(fingerprints) != 1:
        raise common.RecipeError(f"the ablation runs were evaluated with different rulers ({sorted(fingerprints)}); "
                                 "their FIDs cannot be compared. Re-run them with the same eval.features.")
    cols = ["kid", "precision", "recall", "coverage", "likely_copies"]
    rows = ["| variant | FID (± 1.96 STD) | " + " | ".join(f"{c} [95%]" for c in cols) + " |",
            "|---|---|" + "---|" * len(cols)]
    for key, result in results.items():
        h = rec_eval.ev.headline(result)
        rows.append(f"| {labels[key]} | {_fid_cell(result)} | "
                    + " | ".join(_interval_cell(h[c]) if c in h else "—" for c in cols) + " |")
    return "\n".join(rows)


def ablation(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keras_medgan.recipes.dermgan ablation",
        description="Trains the four variants of DermGAN's ablation (paper Sec. 4, Table 1): the full model, no "
                    "checkerboard mitigation (transposed convolutions), no condition-specific ROI loss, no feature "
                    "matching; each with the same preset, data, seed and ruler. Then writes ablation.md / "
                    "ablation.json with FID (mean ± 1.96 std over eval.trials random subsets, 50 as in the paper), "
                    "KID, precision, recall, coverage and likely copies, plus a real-vs-real floor row.\n\n"
                    "Example (demo preset, about 4 x 10 minutes on 2 CPU cores):\n"
                    "  python -m keras_medgan.recipes.dermgan ablation\n"
                    "  python -m keras_medgan.recipes.dermgan ablation --out runs/dermgan-ablation/00001-demo "
                    "--resume",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(PRESETS), default="demo", help="Preset of every variant.")
    parser.add_argument("--data", default=None, help="Dataset folder (default: the preset's).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="Override applied to every variant, e.g. --set train.steps=2000. Repeatable.")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"], default=None,
                        help="Compute precision of every variant.")
    parser.add_argument("--variants", default=",".join(k for k, _, _ in ABLATIONS),
                        help="Comma-separated subset of " + ",".join(k for k, _, _ in ABLATIONS) + ".")
    parser.add_argument("--out", default=None,
                        help="Ablation folder (one run per variant inside). Default: a new "
                             "runs/dermgan-ablation/<00001-preset>/.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue the ablation in --out: finished variants are kept, interrupted ones resumed.")
    args = parser.parse_args(argv)
    known = {k: (label, overrides) for k, label, overrides in ABLATIONS}
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in known]
    if unknown or not variants:
        parser.error(f"--variants: unknown {unknown or args.variants!r}; choose from {','.join(known)}")
    out = common.study_folder(args, f"{RECIPE}-ablation")
    base = ["--preset", args.preset] + (["--data", args.data] if args.data else [])
    base += ["--precision", args.precision] if args.precision else []
    base += [a for o in args.overrides for a in ("--set", o)]
    runs = common.run_variants(train, out, [(k, *known[k]) for k in variants], base, "evaluation.json")
    results = {}
    for key, run_dir in runs.items():
        with open(os.path.join(run_dir, "evaluation.json"), encoding="utf-8") as f:
            results[key] = json.load(f)
        if "skipped" in results[key]:
            raise common.RecipeError(f"{key} was not evaluated: {results[key]['skipped']}")
    labels = {k: known[k][0] for k in results}
    floor = _real_floor(os.path.join(out, variants[0]))
    if floor is not None:
        results["real_floor"], labels["real_floor"] = floor, "real test split vs real val split (floor)"
    table = ablation_table(results, labels)
    first = results[variants[0]]["settings"]
    text = (f"# DermGAN ablation (paper Sec. 4, Table 1)\n\nPreset `{args.preset}`; ruler `{first['extractor']['name']}` "
            f"({first['extractor']['weights']}, fingerprint `{first['extractor']['fingerprint']}`); "
            f"{first['num_fake']} generated vs {first['num_real']} real images of the `{first['reference']}` split "
            f"at {first['resolution']} px; FID over {first['trials']} random {first['subset_fraction']:.0%} subsets. "
            f"Other intervals are 95% bootstrap / subset percentiles. Lower FID and KID are better.\n\n{table}\n\n"
            "Runs: " + ", ".join(f"`{k}/`" for k in variants) + "\n")
    with atomic_open(os.path.join(out, "ablation.md"), "w", encoding="utf-8") as f:
        f.write(text)
    schema.write_json_atomic(os.path.join(out, "ablation.json"), {"labels": labels, "results": results})
    print("\n" + text)
    print(f"wrote {os.path.join(out, 'ablation.md')}")
    return 0


def _real_floor(run_dir: str) -> dict | None:
    """The same metrics for real test images against the real reference split: the best a generator can do."""
    cfg = common.load_run_config(run_dir, get_config)
    info = common.check_data_dir(cfg.data.data_dir)
    heldout = cfg.eval.heldout_split
    if heldout == cfg.eval.reference_split or info.num_examples(heldout) < 12:
        return None
    evaluator = rec_eval.GeneratorEvaluator(cfg.eval, cfg.data.data_dir, cfg.data.image_size, verbose=False)
    src = rec_eval.sources.ImageSource("dataset", evaluator.reference.path, heldout)
    fake = rec_eval.sources.cached_source_features(evaluator.extractor, src, cfg.data.image_size)
    metrics = tuple(m for m in rec_eval.registry.parse_metrics(cfg.eval.metrics) if m != "memorization")
    settings = rec_eval.ev.EvalSettings(metrics=metrics, trials=cfg.eval.trials, bootstrap=cfg.eval.bootstrap)
    result, _ = rec_eval.ev.evaluate_features(evaluator.real, fake, evaluator.extractor.record(), settings,
                                              class_names=info.class_names)
    return result


def main(argv=None) -> int:
    """Entry point: ``generate ...``, ``ablation ...`` or training; returns the exit status (1 on a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "generate":
        return common.guarded(generate, argv[1:])
    if argv and argv[0] == "ablation":
        return common.guarded(ablation, argv[1:])
    return common.guarded(train, argv)


if __name__ == "__main__":
    sys.exit(main())
