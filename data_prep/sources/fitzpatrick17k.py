"""`medgan-data fitzpatrick17k`: clinical images with Fitzpatrick skin types (Groh et al. 2021)."""

from __future__ import annotations

import os

import click

from data_prep.options import common_options
from data_prep.prepare import PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import (echo_notes, index_files, is_blank, read_csv, require_dir, require_file,
                                      row_input, skip)

COLUMNS = ("md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label", "nine_partition_label",
           "three_partition_label", "qc", "url", "url_alphanum")
LABEL_COLUMNS = ("label", "nine_partition_label", "three_partition_label")


def read_fitzpatrick17k(csv_path: str, images: dict[str, str], label_column: str, image_dir: str = "",
                        ) -> tuple[list[SourceItem], list[str], list[dict], list[str]]:
    """Parses ``fitzpatrick17k.csv``. Returns ``(items, class_names, skipped, notes)``.

    Class names are the sorted values of ``label_column``. ``fitzpatrick_scale``
    (``fitzpatrick`` in the first release) 1..6 is kept as annotated; -1 (unknown)
    becomes 0, so the driver estimates it by ITA and marks it estimated.
    """
    df = read_csv(csv_path, ("md5hash", label_column), expected=COLUMNS,
                  fix="Pass fitzpatrick17k.csv from the Fitzpatrick 17k repository with --csv.")
    fitz_column = next((c for c in ("fitzpatrick_scale", "fitzpatrick") if c in df.columns), None)
    rows = df.to_dict("records")
    class_names = sorted({r[label_column] for r in rows if r[label_column]})
    index = {c: i for i, c in enumerate(class_names)}
    items, skipped, seen, unknown_fitz = [], [], set(), 0
    for i, row in enumerate(rows):
        if is_blank(row.values()):
            skipped.append(skip(row_input(csv_path, i), "blank row"))
            continue
        md5 = row["md5hash"]
        where = row_input(csv_path, i, md5)
        if not md5 or not row[label_column]:
            skipped.append(skip(where, "no md5hash" if not md5 else f"no {label_column}"))
            continue
        if md5 in seen:
            skipped.append(skip(where, "md5hash listed twice"))
            continue
        fitz = 0
        text = row[fitz_column] if fitz_column else ""
        try:
            value = int(float(text)) if text else -1
        except ValueError:
            value = -99
        if 1 <= value <= 6:
            fitz = value
        elif value == -1:
            unknown_fitz += 1
        else:
            skipped.append(skip(where, f"{fitz_column} {text!r} is not 1..6 or -1"))
            continue
        seen.add(md5)
        items.append(SourceItem(source_id=md5, patient_id=md5, label=index[row[label_column]], fitzpatrick=fitz,
                                path=images.get(md5, os.path.join(image_dir, f"{md5}.jpg"))))
    notes = []
    if fitz_column is None:
        notes.append("no fitzpatrick_scale column: every skin type is estimated by ITA")
    elif unknown_fitz:
        notes.append(f"{unknown_fitz} image(s) have {fitz_column} -1 (unknown): estimated by ITA and marked estimated")
    return items, class_names, skipped, notes


@click.command("fitzpatrick17k")
@click.option("--csv", "csv_path", required=True, type=click.Path(dir_okay=False),
              help="fitzpatrick17k.csv (md5hash, fitzpatrick_scale, ..., label, nine_partition_label, "
                   "three_partition_label, qc, url, url_alphanum).")
@click.option("--images", "image_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of the downloaded <md5hash>.jpg images (searched recursively).")
@click.option("--label-column", type=click.Choice(LABEL_COLUMNS), default="label", show_default=True,
              help="Which label to use: the 114 conditions, the nine or the three partitions.")
@common_options
def command(opts: PrepOptions, csv_path: str, image_dir: str, label_column: str) -> None:
    """Fitzpatrick 17k: 16,577 clinical images of 114 skin conditions with Fitzpatrick skin types.

    \b
    Images are <md5hash>.jpg under --images (download them from the url column; dead
    links become "file not found" entries in dataset.json). Class names are the sorted
    values of --label-column. fitzpatrick_scale 1..6 is kept; -1 (unknown) is
    estimated from the pixels by ITA and marked estimated. Each image is its own split
    unit (the dataset has no patient ids).

    \b
    Example:
      medgan-data fitzpatrick17k --csv fitzpatrick17k.csv --images fitz17k_images/ \\
          --label-column nine_partition_label --out data/fitz17k-9 --image-size 256
    """
    require_file(csv_path, "--csv", "Pass fitzpatrick17k.csv from the Fitzpatrick 17k repository.")
    require_dir(image_dir, "--images", "Pass the folder of the downloaded <md5hash>.jpg images.")
    images = index_files([image_dir], (".jpg", ".jpeg", ".png"))
    items, class_names, skipped, notes = read_fitzpatrick17k(csv_path, images, label_column, image_dir=image_dir)
    echo_notes(notes)
    prepare_dataset(items, opts, source="fitzpatrick17k", class_names=class_names, channels=3, split_unit="image",
                    skipped=skipped, estimate_skin_type=True,
                    extra={"label_column": label_column, "notes": notes})
