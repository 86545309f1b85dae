"""Options shared by every `medgan-data` source command."""

from __future__ import annotations

import functools

import click

from data_prep.prepare import PrepOptions
from keras_medgan.data.writer import RESIZE_MODES


def dataset_output_options(image_size: int, shards: int):
    """The options of every command that writes a dataset: --out, --image-size, split fractions, seed, shards, format."""
    return [
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Folder to write the dataset into (created; a previous dataset there is replaced)."),
        click.option("--image-size", default=image_size, show_default=True, type=click.IntRange(8, 4096),
                     help="Side of the stored square images, in pixels."),
        click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Fraction of images (split by patient) for validation, when the source has no official "
                          "split."),
        click.option("--test-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Fraction of images (split by patient) for testing, when the source has no official split."),
        click.option("--seed", default=0, show_default=True, type=click.IntRange(0, None),
                     help="Seed for the patient split and any randomness; the same seed gives byte-identical shards."),
        click.option("--shards", default=shards, show_default=True, type=click.IntRange(1, 4096),
                     help="Shard files per split."),
        click.option("--format", "image_format", type=click.Choice(["png", "jpeg"]), default="png",
                     show_default=True, help="Stored image encoding: png is lossless; jpeg is smaller."),
    ]


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Rejects fractions that leave no training split."""
    if val_fraction + test_fraction >= 1:
        raise click.BadParameter(
            f"--val-fraction + --test-fraction must be < 1 to leave a training split. "
            f"Received: {val_fraction} + {test_fraction}", param_hint="--val-fraction/--test-fraction")


def common_options(func):
    """Adds the options every source shares and passes them on as ``opts: PrepOptions``."""

    options = dataset_output_options(image_size=256, shards=4) + [
        click.option("--resize", type=click.Choice(RESIZE_MODES), default="crop", show_default=True,
                     help="How non-square images become square: stretch, pad with black, or centre crop "
                          "(boxes are moved with the image; boxes cropped away are dropped)."),
        click.option("--max-bad", default=100, show_default=True, type=click.IntRange(0, None),
                     help="How many unreadable inputs to skip (and list in dataset.json) before failing."),
        click.option("--workers", default=0, show_default=True, type=click.IntRange(0, 64),
                     help="Worker processes for decoding and encoding; 0 = one per CPU core (at most 8)."),
        click.option("--roi-crop/--no-roi-crop", default=False, show_default=True,
                     help="For sources with boxes: crop random square windows around an ROI or a group of "
                          "adjacent ROIs, then resize (DermGAN Sec. 2 pre-processing)."),
        click.option("--crops-per-image", default=1, show_default=True, type=click.IntRange(1, 1000),
                     help="With --roi-crop: how many windows to crop from each image."),
    ]

    @functools.wraps(func)
    def wrapper(out, image_size, resize, val_fraction, test_fraction, seed, shards, image_format, max_bad, workers,
                roi_crop, crops_per_image, **kwargs):
        check_fractions(val_fraction, test_fraction)
        opts = PrepOptions(out=out, image_size=image_size, resize=resize, val_fraction=val_fraction,
                           test_fraction=test_fraction, seed=seed, shards=shards, image_format=image_format,
                           max_bad=max_bad, workers=workers, roi_crop=roi_crop, crops_per_image=crops_per_image)
        return func(opts=opts, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
