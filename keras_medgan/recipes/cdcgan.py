"""Conditional DCGAN recipe (paper 001: Bingol et al., "Overcoming Medical Data Scarcity with GAN Generated
Synthetic Images", HAM10000). Recipe card: ``recipes/cdcgan/README.md``.

\b
Train (no arguments: preset ``demo``, four demo-derm classes standing in for nv, bcc, mel and bkl, 64 px,
about 10 minutes on 2 CPU cores):
    python -m keras_medgan.recipes.cdcgan
    python -m keras_medgan.recipes.cdcgan --preset paper --data data/ham10000-64
    python -m keras_medgan.recipes.cdcgan --resume                      # newest run, exactly where it stopped
\b
Each run writes samples per class, TensorBoard logs, evaluation.json (FID/KID/IS/PRDC with intervals,
memorization audit), detection.json (paper 001 Table III: a real-data classifier scores 100 generated
images per class) and report.md.
\b
The detection report again, or with your own detector (a saved classifier over the dataset's classes):
    python -m keras_medgan.recipes.cdcgan detect --run runs/cdcgan/00001-demo --classifier my_cnn.keras
\b
Generate a labelled synthetic dataset (equal numbers per class):
    python -m keras_medgan.recipes.cdcgan generate --run runs/cdcgan/00001-demo --out synth --num-images 400
"""

from __future__ import annotations

import sys

from keras_medgan import config as config_lib
from keras_medgan.config import DataConfig, EvalConfig, TrainConfig
from keras_medgan.recipes import common, noise_gan
from keras_medgan.recipes.noise_gan import DetectionConfig, ModelConfig, NoiseGANConfig

RECIPE = "cdcgan"
PRESETS = ("demo", "smoke", "paper")
PROG = "python -m keras_medgan.recipes.cdcgan"
# Paper 001, Sec. III / Table III: the four most common HAM10000 classes, and the demo-derm classes standing in.
PAPER_CLASSES = ("nv", "bcc", "mel", "bkl")
DEMO_CLASSES = ("nevus", "basal_cell_carcinoma", "melanoma", "seborrheic_keratosis")
# Paper 001, Sec. II-C: transposed convolutions, batch norm (momentum 0.9), LeakyReLU 0.2 in G and D,
# latent 100, spectral normalisation; BCE. The gradient penalty it also names needs a D without batch norm:
# recipes/cdcgan/paper_gp.toml.
PAPER_MODEL = ModelConfig(latent_dim=100, upsampling="transpose", bn_momentum=0.9, g_leaky_slope=0.2,
                          d_leaky_slope=0.2, d_norm="batch", spectral_norm=True)


def get_config(preset: str = "demo") -> NoiseGANConfig:
    """The recipe's presets.

    \b
    demo  : python -m keras_medgan.recipes.cdcgan
            demo-derm (2,000 images, the DermGAN demo's cache), classes nevus, basal_cell_carcinoma, melanoma,
            seborrheic_keratosis; 64 px, batch 32, base_filters 32, paper-001 layers; FID/KID every 1,000 steps
            with the classifier:auto ruler; detection report on 100 images per class.
    smoke : 32 px, a few steps; for tests.
    paper : python -m keras_medgan.recipes.cdcgan --preset paper --data DIR
            HAM10000 (medgan-data ham10000) classes nv, bcc, mel, bkl at 64 px, batch 64, Adam 2e-4 / 0.5, BCE,
            spectral norm, 12,000 steps (~100 epochs of the four classes' training split, Sec. II-C);
            Inception-v3 FID every 2,000 steps.
    """
    if preset == "demo":
        return NoiseGANConfig(
            preset="demo", name="demo", gan="cdcgan", demo_dataset="demo-derm",
            data=DataConfig(image_size=64, batch_size=32, shuffle_buffer=2048, classes=DEMO_CLASSES),
            model=config_lib.replace(PAPER_MODEL, {"base_filters": 32}),
            train=TrainConfig(steps=3000, log_every=100, sample_every=500, checkpoint_every=500),
            eval=EvalConfig(every=1000),
        )
    if preset == "smoke":
        return NoiseGANConfig(
            preset="smoke", name="smoke", gan="cdcgan", demo_dataset="demo-derm", demo_num_images=200,
            data=DataConfig(image_size=32, batch_size=8, shuffle_buffer=64, classes=DEMO_CLASSES),
            model=config_lib.replace(PAPER_MODEL, {"base_filters": 8, "latent_dim": 16}),
            train=TrainConfig(steps=4, log_every=2, sample_every=2, checkpoint_every=2, precision="float32"),
            samples_per_class=2, validation_steps=1,
            eval=EvalConfig(every=2, trials=3, bootstrap=5, ruler_epochs=1),
            detection=DetectionConfig(images_per_class=4, bootstrap=5),
        )
    if preset == "paper":
        return NoiseGANConfig(
            preset="paper", name="paper", gan="cdcgan",
            data=DataConfig(image_size=64, batch_size=64, shuffle_buffer=8192, classes=PAPER_CLASSES),
            model=PAPER_MODEL,
            train=TrainConfig(steps=12_000, log_every=200, sample_every=1000, checkpoint_every=1000),
            eval=EvalConfig(features="inception_v3", every=2000),
        )
    raise config_lib.ConfigError(f"unknown preset {preset!r}; choose one of {PRESETS}")


def main(argv=None) -> int:
    """Entry point: ``generate ...`` or training; returns the exit status (1 on a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "generate":
        return common.guarded(noise_gan.generate, argv[1:], PROG, get_config)
    if argv and argv[0] == "detect":
        return common.guarded(noise_gan.detect, argv[1:], PROG, get_config)
    return common.guarded(noise_gan.train, argv, PROG, __doc__, get_config, PRESETS, RECIPE)


if __name__ == "__main__":
    sys.exit(main())
