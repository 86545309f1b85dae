"""`medgan-data demo-derm` and `medgan-data demo-cxr`: the built-in procedural datasets."""

from __future__ import annotations

import click

from data_prep.options import check_fractions, dataset_output_options
from keras_medgan.data import demo
from keras_medgan.data.writer import command_line


def _demo_options(func):
    options = dataset_output_options(image_size=64, shards=2) + [
        click.option("--num-images", default=2000, show_default=True, type=click.IntRange(1, None),
                     help="How many images to generate."),
        click.option("--balanced", is_flag=True, default=False,
                     help="Equal class frequencies instead of the default long tail."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _write(kind, out, num_images, image_size, val_fraction, test_fraction, seed, shards, image_format, balanced):
    check_fractions(val_fraction, test_fraction)
    if image_size < 16:
        raise click.BadParameter(f"demo images must be at least 16 px. Received: {image_size}", param_hint="--image-size")
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
