"""`medgan-data ham10000`: the HAM10000 dermoscopy dataset (Tschandl et al. 2018), split by lesion."""

from __future__ import annotations

import os

import click

from data_prep.options import common_options
from data_prep.prepare import PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import (echo_notes, index_files, non_blank_rows, read_csv, require_dir, require_file,
                                      row_input, skip)

# The seven diagnoses of HAM10000, in the order of the dataset paper and of most published code.
CLASS_NAMES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")


def read_ham10000(metadata: str, images: dict[str, str] | None = None, masks: dict[str, str] | None = None,
                  image_dir: str = "") -> tuple[list[SourceItem], list[dict], list[str]]:
    """Parses ``HAM10000_metadata.csv`` into items. Returns ``(items, skipped, notes)``.

    ``images`` / ``masks`` map image ids to files (see ``index_files``); an image id
    with no file gets the path ``<image_dir>/<image_id>.jpg`` so the driver reports
    it as not found. Rows without an image id, a known ``dx`` or a ``lesion_id`` (the split
    unit: without it the lesion could sit in two splits) are skipped with their
    line number. Both variants of the file are read: the original one and the
    newer one whose ``image_id`` values end in ``.jpg`` and which adds ``dataset``.
    """
    df = read_csv(metadata, REQUIRED_COLUMNS, expected=COLUMNS,
                  fix="Pass HAM10000_metadata.csv from the HAM10000 download with --metadata.")
    images, masks = images or {}, masks or {}
    index = {c: i for i, c in enumerate(CLASS_NAMES)}
    items, skipped, seen = [], [], set()
    with_mask = 0
    for i, row in non_blank_rows(df.to_dict("records"), metadata, skipped):
        image_id = row["image_id"]
        if image_id.lower().endswith((".jpg", ".jpeg")):
            image_id = os.path.splitext(image_id)[0]
        where = row_input(metadata, i, image_id or row["lesion_id"])
        problems = [f"no {c}" for c in ("image_id", "dx", "lesion_id") if not row[c]]
        if row["dx"] and row["dx"] not in index:
            problems.append(f"unknown dx {row['dx']!r} (expected one of {', '.join(CLASS_NAMES)})")
        if image_id and image_id in seen:
            problems.append("image_id listed twice")
        if problems:
            skipped.append(skip(where, "; ".join(problems)))
            continue
        seen.add(image_id)
        mask = masks.get(image_id)
        with_mask += mask is not None
        items.append(SourceItem(
            source_id=image_id, patient_id=row["lesion_id"], label=index[row["dx"]],
            path=images.get(image_id, os.path.join(image_dir, f"{image_id}.jpg")), mask_path=mask,
        ))
    notes = []
    if masks:
        notes.append(f"{with_mask} of {len(items)} images have a lesion mask (boxes); the others have no box")
    return items, skipped, notes


@click.command("ham10000")
@click.option("--metadata", required=True, type=click.Path(dir_okay=False),
              help="HAM10000_metadata.csv (columns lesion_id, image_id, dx, dx_type, age, sex, localization).")
@click.option("--images", "image_dirs", required=True, multiple=True, type=click.Path(file_okay=False),
              help="Folder holding the <image_id>.jpg files, directly or in HAM10000_images_part_1/ and "
                   "HAM10000_images_part_2/ (searched recursively). Repeat for several folders.")
@click.option("--masks", "mask_dir", default=None, type=click.Path(file_okay=False),
              help="Optional folder of <image_id>_segmentation.png lesion masks (ISIC 2018 Task 1 or the HAM10000 "
                   "segmentations); each connected component becomes a lesion box.")
@common_options
def command(opts: PrepOptions, metadata: str, image_dirs: tuple[str, ...], mask_dir: str | None) -> None:
    """HAM10000: 10,015 dermoscopic images of 7 diagnoses, split by lesion.

    \b
    Classes (label index order): akiec, bcc, bkl, df, mel, nv, vasc.
    Several images of one lesion never cross splits (patient_id = lesion_id).
    The Fitzpatrick skin type is estimated from the pixels by ITA (HAM10000 has none).
    Rows that cannot be used (blank, no image_id, no dx, no lesion_id) are listed
    with their line number under `skipped` in dataset.json.

    \b
    Example:
      medgan-data ham10000 --metadata HAM10000/HAM10000_metadata.csv --images HAM10000/ \\
          --masks ISIC2018_Task1_Training_GroundTruth/ --out data/ham10000 --image-size 256
    """
    require_file(metadata, "--metadata", "Pass HAM10000_metadata.csv from the HAM10000 download.")
    for d in image_dirs:
        require_dir(d, "--images", "Pass the folder holding HAM10000_images_part_1/ and HAM10000_images_part_2/ "
                                   "(or the <image_id>.jpg files).")
    if mask_dir is not None:
        require_dir(mask_dir, "--masks", "Pass the folder of <image_id>_segmentation.png files, or leave --masks out.")
    images = index_files(image_dirs, (".jpg", ".jpeg"))
    masks = index_files([mask_dir], (".png",), suffix="_segmentation") if mask_dir else None
    items, skipped, notes = read_ham10000(metadata, images, masks, image_dir=image_dirs[0])
    echo_notes(notes)
    prepare_dataset(items, opts, source="ham10000", class_names=CLASS_NAMES, channels=3, split_unit="lesion",
                    skipped=skipped, estimate_skin_type=True,
                    extra={"metadata": os.path.abspath(metadata), "masks": bool(mask_dir), "notes": notes})
