"""`medgan-data medmnist`: a MedMNIST ``.npz`` file (Yang et al. 2021/2023), official splits kept."""

from __future__ import annotations

import os
import zipfile

import click
import numpy as np

from data_prep.options import common_options
from data_prep.prepare import PreparationError, PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import parse_name_list, require_file
from keras_medgan.data import schema

KEYS = tuple(f"{s}_{k}" for s in schema.SPLITS for k in ("images", "labels"))


def load_npz(path: str) -> dict[str, np.ndarray]:
    """The ``<split>_images`` / ``<split>_labels`` arrays of a MedMNIST file (no pickles are loaded)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k in KEYS}
            names = list(data.files)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise PreparationError(f"{path} is not a readable .npz file ({type(e).__name__}: {e}). Download the "
                               "MedMNIST file again (e.g. pathmnist.npz).")
    present = [s for s in schema.SPLITS if f"{s}_images" in arrays or f"{s}_labels" in arrays]
    missing = [f"{s}_{k}" for s in present for k in ("images", "labels") if f"{s}_{k}" not in arrays]
    if not present or missing:
        raise PreparationError(
            f"{os.path.basename(path)} is missing arrays {missing or list(KEYS)}; expected {', '.join(KEYS)}. "
            f"Found: {', '.join(names) or 'nothing'}. Pass a MedMNIST .npz file.")
    return arrays


def read_medmnist(arrays: dict[str, np.ndarray], class_names: list[str] | None, path: str = "",
                  ) -> tuple[list[SourceItem], list[str], int, bool]:
    """Builds items from MedMNIST arrays. Returns ``(items, class_names, channels, multi_label)``.

    Labels ``[N, 1]`` (or ``[N]``) are class indices; ``[N, K]`` with K > 1 are
    multi-label 0/1 columns: ``label/multi`` = the columns set, ``label`` = that
    column when exactly one is set, else -1.
    """
    name = os.path.basename(path) or "the .npz file"
    splits = [s for s in schema.SPLITS if f"{s}_images" in arrays]
    shapes = {s: arrays[f"{s}_images"].shape for s in splits}
    first = shapes[splits[0]]
    if len(first) == 3 or (len(first) == 4 and first[-1] in (1, 3)):
        channels = 1 if len(first) == 3 or first[-1] == 1 else 3
    else:
        raise PreparationError(f"{name}: images of shape {first} are neither [N, H, W] nor [N, H, W, 3] "
                               "(3-D MedMNIST volumes are not supported).")
    widths = set()
    for s in splits:
        images, labels = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        if images.shape[1:] != first[1:] or images.dtype != np.uint8:
            raise PreparationError(f"{name}: {s}_images has shape {images.shape} and dtype {images.dtype}; expected "
                                   f"uint8 [N, {', '.join(map(str, first[1:]))}] like {splits[0]}_images.")
        if labels.ndim not in (1, 2) or len(labels) != len(images):
            raise PreparationError(f"{name}: {s}_labels has shape {labels.shape}; expected [{len(images)}, 1] "
                                   f"(or [{len(images)}, K] for multi-label).")
        widths.add(1 if labels.ndim == 1 else labels.shape[1])
    if len(widths) != 1:
        raise PreparationError(f"{name}: the label arrays have different widths {sorted(widths)} across splits.")
    width = widths.pop()
    multi = width > 1
    if multi:
        num_classes = width
    else:
        num_classes = int(max(int(arrays[f"{s}_labels"].max()) for s in splits if len(arrays[f"{s}_labels"]))) + 1
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    elif len(class_names) < num_classes or (multi and len(class_names) != num_classes):
        raise click.BadParameter(f"{len(class_names)} names given but {name} has {num_classes} classes "
                                 f"({'label columns' if multi else 'largest label + 1'}).", param_hint="--class-names")
    items = []
    for s in splits:
        images, labels = arrays[f"{s}_images"], arrays[f"{s}_labels"]
        for i in range(len(images)):
            if multi:
                on = tuple(int(k) for k in np.flatnonzero(labels[i] > 0))
                label = on[0] if len(on) == 1 else -1
            else:
                on, label = (), int(np.ravel(labels[i])[0])
            items.append(SourceItem(source_id=f"{s}-{i}", patient_id=f"{s}-{i}", array=images[i], label=label,
                                    label_multi=on, split=s))
    return items, list(class_names), channels, multi


@click.command("medmnist")
@click.argument("npz", type=click.Path(dir_okay=False))
@click.option("--class-names", default=None,
              help='Comma-separated class names in label order. Default: "0", "1", ...')
@common_options
def command(opts: PrepOptions, npz: str, class_names: str | None) -> None:
    """A MedMNIST file (pathmnist.npz, chestmnist.npz, dermamnist_224.npz, ...), official splits kept.

    \b
    Arrays read: train_images, train_labels, val_images, val_labels, test_images, test_labels.
    Images are grey [N, H, W] or RGB [N, H, W, 3] uint8. Labels [N, 1] are class indices;
    [N, K] are multi-label (ChestMNIST): label/multi holds the set columns and label is the
    class when exactly one is set (else -1). MedMNIST has no patient ids: each image is its
    own split unit, and the published splits are kept.

    \b
    Example:
      medgan-data medmnist ~/.medmnist/dermamnist.npz --out data/dermamnist --image-size 28 \\
          --class-names akiec,bcc,bkl,df,mel,nv,vasc
    """
    require_file(npz, "NPZ", "Pass a MedMNIST .npz file (e.g. ~/.medmnist/pathmnist.npz).")
    names = parse_name_list(class_names, "--class-names")
    items, names, channels, multi = read_medmnist(load_npz(npz), names, npz)
    prepare_dataset(items, opts, source="medmnist", class_names=names, channels=channels, split_unit="image",
                    multi_label=multi, extra={"npz": os.path.abspath(npz), "file": os.path.basename(npz)})
