"""`medgan-data demo-derm` and `medgan-data demo-cxr`: the built-in procedural datasets."""

from __future__ import annotations

import click

from keras_medgan.data import demo
from keras_medgan.data.writer import command_line


def _demo_options(func):
    options = [
        click.option("--out", required=True, type=click.Path(file_okay=False),
                     help="Folder to write the dataset into (a previous dataset there is replaced)."),
        click.option("--num-images", default=2000, show_default=True, type=click.IntRange(1, None),
                     help="How many images to generate."),
        click.option("--image-size", default=64, show_default=True, type=click.IntRange(16, 1024),
                     help="Side of the square images, in pixels."),
        click.option("--val-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Fraction of images (split by patient) for validation."),
        click.option("--test-fraction", default=0.1, show_default=True, type=click.FloatRange(0, 1, max_open=True),
                     help="Fraction of images (split by patient) for testing."),
        click.option("--seed", default=0, show_default=True, type=int,
                     help="Generator and split seed; the same seed gives byte-identical shards."),
        click.option("--shards", default=2, show_default=True, type=click.IntRange(1, 1024), help="Shard files per split."),
        click.option("--format", "image_format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True,
                     help="Stored image encoding."),
        click.option("--balanced", is_flag=True, default=False,
                     help="Equal class frequencies instead of the default long tail."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _write(kind, out, num_images, image_size, val_fraction, test_fraction, seed, shards, image_format, balanced):
    if val_fraction + test_fraction >= 1:
        raise click.BadParameter("--val-fraction + --test-fraction must be < 1", param_hint="--val-fraction")
    classes = demo.DEMO_DERM_CLASSES if kind == "demo-derm" else demo.DEMO_CXR_CLASSES
    weights = [1.0] * len(classes) if balanced else None
    with click.progressbar(length=num_images, label=f"{kind}: writing {out}") as bar:
        info = demo.write_demo_dataset(kind, out, num_images=num_images, image_size=image_size, seed=seed,
                                       val_fraction=val_fraction, test_fraction=test_fraction, shards=shards,
                                       image_format=image_format, class_weights=weights, command=command_line(),
                                       progress=bar.update)
    click.echo(f"wrote {sum(info.num_examples(s) for s in ('train', 'val', 'test'))} records "
               f"(train {info.num_examples('train')}, val {info.num_examples('val')}, test {info.num_examples('test')}) "
               f"to {out}")


@click.command("demo-derm")
@_demo_options
def demo_derm(**kwargs):
    """Write demo-derm: procedural clinical-style skin crops (8 conditions, Fitzpatrick I-VI, boxes).

    \b
    Example:
      medgan-data demo-derm --out data/demo-derm --num-images 2000 --image-size 64
    """
    _write("demo-derm", **kwargs)


@click.command("demo-cxr")
@_demo_options
def demo_cxr(**kwargs):
    """Write demo-cxr: procedural grey chest-radiograph phantoms (5 classes, boxes, several images per patient).

    \b
    Example:
      medgan-data demo-cxr --out data/demo-cxr --num-images 2000 --image-size 64
    """
    _write("demo-cxr", **kwargs)
