"""`medgan-data folder`: one sub-folder per class, optionally under train/ val/ test/."""

from __future__ import annotations

import os

import click

from data_prep.options import common_options
from data_prep.prepare import PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import IMAGE_EXTENSIONS, echo_notes, require_dir, skip
from keras_medgan.data import schema
from keras_medgan.data.writer import assign_splits


def _subdirs(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)) and not d.startswith(".") and d != "__MACOSX")


def _images_in(folder: str) -> tuple[list[str], list[str]]:
    """Image files (recursively, sorted) and other files under a class folder."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            (images if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS else others).append(path)
    return images, others


def collect_folder(root: str, val_fraction: float, test_fraction: float,
                   seed: int) -> tuple[list[SourceItem], list[str], list[dict], list[str]]:
    """Builds the items of a class-per-folder tree. Returns ``(items, class_names, skipped, notes)``.

    When ``root`` has ``train/`` (and ``val/``, ``test/``), those splits are kept;
    a missing ``val/`` or ``test/`` is carved from ``train/`` by image with the
    given fractions. Otherwise every image is split by the driver.
    """
    subdirs = _subdirs(root)
    split_dirs = [s for s in schema.SPLITS if s in subdirs]
    notes, skipped = [], []
    if split_dirs:
        if "train" not in split_dirs:
            raise click.BadParameter(
                f"{root!r} has {'/'.join(split_dirs)}/ but no train/ folder. Add train/<class>/ folders, or pass the "
                "folder whose sub-folders are the classes.", param_hint="ROOT")
        others = [d for d in subdirs if d not in schema.SPLITS]
        if others:
            notes.append(f"ignored folders {others} beside the split folders {split_dirs}")
        layout = [(s, os.path.join(root, s)) for s in split_dirs]
    else:
        layout = [(None, root)]

    per_class: list[tuple[str | None, str, str]] = []  # (split, class, path)
    for split, base in layout:
        loose = [n for n in sorted(os.listdir(base)) if os.path.isfile(os.path.join(base, n)) and not n.startswith(".")]
        for name in loose:
            skipped.append(skip(os.path.join(base, name), "file outside a class folder (put it in <class>/)"))
        for cls in _subdirs(base):
            images, others = _images_in(os.path.join(base, cls))
            for p in others:
                skipped.append(skip(p, f"not an image file (extensions read: {', '.join(IMAGE_EXTENSIONS)})"))
            per_class.extend((split, cls, p) for p in images)
    class_names = sorted({cls for _, cls, _ in per_class})
    if not class_names:
        hint = "train/<class>/image.png" if split_dirs else "<class>/image.png"
        raise click.BadParameter(f"no class folders with images under {root!r}; expected {hint}.", param_hint="ROOT")

    index = {c: i for i, c in enumerate(class_names)}
    items = []
    for split, cls, path in per_class:
        rel = os.path.relpath(path, root)
        items.append(SourceItem(source_id=rel, patient_id=rel, path=path, label=index[cls], split=split))

    if split_dirs:
        carve = {s: f for s, f in (("val", val_fraction), ("test", test_fraction)) if s not in split_dirs and f > 0}
        if carve:
            train_ids = [it.patient_id for it in items if it.split == "train"]
            assigned = assign_splits(train_ids, carve.get("val", 0.0), carve.get("test", 0.0), seed)
            for it in items:
                if it.split == "train":
                    it.split = assigned[it.patient_id]
            notes.append(f"no {'/'.join(f'{s}/' for s in carve)} folder: carved from train/ "
                         f"({', '.join(f'{s} {f:g}' for s, f in carve.items())})")
    return items, class_names, skipped, notes


@click.command("folder")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="Store grey (1) or RGB (3) images.")
@common_options
def command(opts: PrepOptions, root: str, channels: str) -> None:
    """Images sorted into one sub-folder per class (class names are the folder names, sorted).

    \b
    Layouts read:
      ROOT/<class>/*.png                  split by image with --val/--test-fraction
      ROOT/{train,val,test}/<class>/*.png official splits kept (a missing val/ or
                                          test/ is carved from train/)
    Image files: png, jpg, jpeg, bmp, tif, tiff, gif, webp (in nested folders too).
    There is no patient information: each image is its own split unit.

    \b
    Example:
      medgan-data folder ~/data/lesions --out data/lesions --image-size 128 --channels 3
    """
    require_dir(root, "ROOT", "Pass the folder whose sub-folders are the classes (or that holds train/ val/ test/).")
    items, class_names, skipped, notes = collect_folder(root, opts.val_fraction, opts.test_fraction, opts.seed)
    echo_notes(notes)
    prepare_dataset(items, opts, source="folder", class_names=class_names, channels=int(channels),
                    split_unit="image", skipped=skipped, extra={"root": os.path.abspath(root), "notes": notes})
