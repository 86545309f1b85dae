"""XRAY-GAN recipe (paper 004: Chen & Wan, "XRAY-GAN"): the conditional CGAN (Sec. 4.1) and the unconditional
score-guided UCGAN with its pseudo-labelling classifier (Sec. 4.2). Recipe card: ``recipes/xraygan/README.md``.

\b
Train (no arguments: --model cgan, preset demo on demo-cxr at 64 px, the UCGAN at 32 px; about 10 minutes on 2
CPU cores):
    python -m keras_medgan.recipes.xraygan
    python -m keras_medgan.recipes.xraygan --model ucgan
    python -m keras_medgan.recipes.xraygan --model ucgan --preset paper --data data/cxr14-128
    python -m keras_medgan.recipes.xraygan --resume                      # newest run, exactly where it stopped
\b
Sweeps of paper 004 (each trains one UCGAN per setting and tabulates C's test AUC per class, 95% CIs):
    python -m keras_medgan.recipes.xraygan sweep threshold               # Table 4: t in 0.6, 0.7, 0.8, 0.9
    python -m keras_medgan.recipes.xraygan sweep losses                  # Table 5: simple, +IS, +IS+MMD, +Gram
\b
The CGAN's detection report again, or with your own detector:
    python -m keras_medgan.recipes.xraygan detect --run runs/xraygan/00001-demo-cgan --classifier my_cnn.keras
\b
Generate a labelled synthetic dataset:
    python -m keras_medgan.recipes.xraygan generate --run runs/xraygan/00001-demo-cgan --out synth
"""

from __future__ import annotations

import sys

from keras_medgan import config as config_lib
from keras_medgan.config import DataConfig, EvalConfig, TrainConfig
from keras_medgan.recipes import common, noise_gan
from keras_medgan.recipes.noise_gan import (DetectionConfig, GuidanceConfig, LossConfig, ModelConfig,
                                            NoiseGANConfig, OptimizerConfig)

RECIPE = "xraygan"
PRESETS = ("demo", "smoke", "paper")
MODELS = ("cgan", "ucgan")
PROG = "python -m keras_medgan.recipes.xraygan"
# Paper 004, Sec. 5 ("Class Imbalance"): the CGAN's and the UCGAN's ChestX-ray14 findings, and the demo-cxr
# findings standing in for them (consolidation for Pneumonia, cardiomegaly for Hernia and Edema's stand-in).
PAPER_CLASSES = {"cgan": ("Pneumonia", "Effusion", "Mass", "Hernia"), "ucgan": ("Pneumonia", "Edema", "Hernia")}
DEMO_CLASSES = {"cgan": ("consolidation", "effusion", "mass", "cardiomegaly"),
                "ucgan": ("consolidation", "effusion", "cardiomegaly")}
# Paper 004, Sec. 5.4: CGAN after Mirza & Osindero; "only ReLU in the generator"; Adam 2e-4, beta1 0.5.
CGAN_MODEL = ModelConfig(g_leaky_slope=0.0, d_leaky_slope=0.2, d_norm="batch", spectral_norm=False,
                         upsampling="transpose")
# UCGAN: DCGAN G and D (footnote 4), ResNet-50 C; G 5e-4, D 1e-3, C 5e-4, Adam with weight decay 1e-3.
UCGAN_MODEL = ModelConfig(g_leaky_slope=0.0, d_leaky_slope=0.2, d_norm="batch", spectral_norm=False,
                          classifier="resnet50")
UCGAN_OPTIMIZER = OptimizerConfig(g_learning_rate=5e-4, d_learning_rate=1e-3, c_learning_rate=5e-4, beta_1=0.5,
                                  weight_decay=1e-3)


def get_config(preset: str = "demo", model: str = "cgan") -> NoiseGANConfig:
    """The recipe's presets, per model.

    \b
    demo  : python -m keras_medgan.recipes.xraygan [--model cgan|ucgan]
            demo-cxr (2,000 images); cgan at 64 px: classes consolidation, effusion, mass, cardiomegaly, batch
            32, 3,000 steps; ucgan: consolidation, effusion, cardiomegaly, batch 12 (the paper's), small-CNN C,
            footnote-3 G:D schedule, 32 px, 1,500 steps. FID/KID with the classifier:auto ruler.
    smoke : 32 px, a few steps; for tests.
    paper : python -m keras_medgan.recipes.xraygan --model cgan|ucgan --preset paper --data DIR
            ChestX-ray14 (medgan-data chestxray14 --classes ...) at 128 px (footnote 4). cgan: Pneumonia,
            Effusion, Mass, Hernia; Adam 2e-4 / 0.5; batch 64. ucgan: Pneumonia, Edema, Hernia; ResNet-50 C
            (ImageNet weights when available), VGG-16 style network, the Sec. 5.4 weights and learning rates,
            batch 12. Inception-v3 FID (the paper reports pytorch-fid).
    """
    if model not in MODELS:
        raise config_lib.ConfigError(f"unknown model {model!r}; choose one of {MODELS}")
    ucgan = model == "ucgan"
    if preset == "demo":
        return NoiseGANConfig(
            preset="demo", name=f"demo-{model}", gan=model, demo_dataset="demo-cxr",
            data=DataConfig(image_size=32 if ucgan else 64, batch_size=12 if ucgan else 32, shuffle_buffer=2048,
                            classes=DEMO_CLASSES[model]),
            model=config_lib.replace(UCGAN_MODEL if ucgan else CGAN_MODEL,
                                     {"base_filters": 32, "classifier": "small"}),
            optimizer=UCGAN_OPTIMIZER if ucgan else OptimizerConfig(),
            train=TrainConfig(steps=1500 if ucgan else 3000, log_every=100, sample_every=500, checkpoint_every=500),
            eval=EvalConfig(every=500 if ucgan else 1000),
        )
    if preset == "smoke":
        return NoiseGANConfig(
            preset="smoke", name=f"smoke-{model}", gan=model, demo_dataset="demo-cxr", demo_num_images=200,
            data=DataConfig(image_size=32, batch_size=8, shuffle_buffer=64, classes=DEMO_CLASSES[model]),
            model=config_lib.replace(UCGAN_MODEL if ucgan else CGAN_MODEL,
                                     {"base_filters": 8, "latent_dim": 16, "classifier": "small"}),
            optimizer=UCGAN_OPTIMIZER if ucgan else OptimizerConfig(),
            train=TrainConfig(steps=6 if ucgan else 4, log_every=2, sample_every=2, checkpoint_every=2,
                              precision="float32"),
            samples_per_class=2, validation_steps=1,
            eval=EvalConfig(every=2, trials=3, bootstrap=5, ruler_epochs=1),
            detection=DetectionConfig(images_per_class=4, bootstrap=5),
        )
    if preset == "paper":
        return NoiseGANConfig(
            preset="paper", name=f"paper-{model}", gan=model,
            data=DataConfig(image_size=128, batch_size=12 if ucgan else 64, shuffle_buffer=8192,
                            classes=PAPER_CLASSES[model]),
            model=UCGAN_MODEL if ucgan else CGAN_MODEL,
            loss=LossConfig(gan_loss="vanilla"),
            optimizer=UCGAN_OPTIMIZER if ucgan else OptimizerConfig(),
            guidance=GuidanceConfig(),
            train=TrainConfig(steps=30_000 if ucgan else 20_000, log_every=200, sample_every=2000,
                              checkpoint_every=2000),
            eval=EvalConfig(features="inception_v3", every=5000),
        )
    raise config_lib.ConfigError(f"unknown preset {preset!r}; choose one of {PRESETS}")


def _saved_config(preset: str = "demo") -> NoiseGANConfig:
    """For loading a run: the saved config.json carries ``gan`` and every field, so the model's defaults
    do not matter (``common.load_run_config`` overlays them)."""
    return get_config(preset, "cgan")


def _add_model_argument(parser):
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="cgan (paper 004 Sec. 4.1, default) or ucgan (Sec. 4.2, with classifier C). "
                             "With --resume it must match the run (or be left out).")


def _apply_model(cfg: NoiseGANConfig, args) -> NoiseGANConfig:
    if args.resume and args.model and args.model != cfg.gan:
        raise config_lib.ConfigError(f"--model {args.model} does not match the run being resumed ({cfg.gan})")
    return cfg


def train(argv) -> int:
    import argparse

    pre = argparse.ArgumentParser(add_help=False)
    _add_model_argument(pre)
    model = pre.parse_known_args(argv)[0].model or "cgan"
    return noise_gan.train(argv, PROG, __doc__, lambda preset: get_config(preset, model), PRESETS, RECIPE,
                           add_arguments=_add_model_argument, config_updates=_apply_model)


def main(argv=None) -> int:
    """Entry point: ``generate ...``, ``sweep ...`` or training; returns the exit status (1 on a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "generate":
        return common.guarded(noise_gan.generate, argv[1:], PROG, _saved_config)
    if argv and argv[0] == "detect":
        return common.guarded(noise_gan.detect, argv[1:], PROG, _saved_config)
    if argv and argv[0] == "sweep":
        from keras_medgan.recipes import xraygan_sweeps

        return common.guarded(xraygan_sweeps.sweep, argv[1:])
    return common.guarded(train, argv)


if __name__ == "__main__":
    sys.exit(main())
