"""`medgan-data manifest`: a CSV listing images, labels and (optionally) patients, skin types, boxes, splits."""

from __future__ import annotations

import json
import os

import click

from data_prep.options import common_options
from data_prep.prepare import PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import (echo_notes, image_size, is_blank, parse_name_list, pixel_box_to_normalised,
                                      read_csv, require_file, row_input, skip)
from keras_medgan.data import schema

REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("patient_id", "fitzpatrick", "bboxes", "split")


class _RowError(ValueError):
    """A manifest row that cannot be used; the message is its ``skipped`` reason."""


def _parse_fitzpatrick(text: str) -> int:
    if text in ("", "0", "-1", "nan", "unknown"):
        return 0
    try:
        value = float(text)
    except ValueError:
        value = -99.0
    if value != int(value) or not 1 <= value <= 6:
        raise _RowError(f"fitzpatrick {text!r} is not 1..6 (leave it empty, 0 or -1 for unknown)")
    return int(value)


def _box_label(value, row_label: int, class_index: dict[str, int], num_classes: int) -> int:
    if isinstance(value, bool):
        raise _RowError(f"box label {value!r} is neither a class name nor an index")
    if isinstance(value, (int, float)):
        if value != int(value) or not 0 <= int(value) < num_classes:
            raise _RowError(f"box label index {value!r} is outside 0..{num_classes - 1}")
        return int(value)
    if isinstance(value, str):
        if value in class_index:
            return class_index[value]
        if value.isdigit() and int(value) < num_classes:
            return int(value)
        raise _RowError(f"box label {value!r} is not a class name ({', '.join(class_index)})")
    raise _RowError(f"box label {value!r} is neither a class name nor an index")


def _parse_boxes(text: str, path: str, row_label: int, class_index: dict[str, int]) -> tuple[list, list]:
    """JSON pixel boxes -> normalised ``[ymin, xmin, ymax, xmax]`` boxes and labels (empty when no image size)."""
    if text in ("", "[]"):
        return [], []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise _RowError(f"bboxes is not valid JSON ({e.msg}); write e.g. [[10, 20, 50, 60]] or "
                        '[[10, 20, 50, 60, "mel"]]')
    if isinstance(raw, list) and raw and not isinstance(raw[0], list) and len(raw) in (4, 5):
        raw = [raw]  # one box written without the outer list
    if not isinstance(raw, list) or not all(isinstance(b, list) and len(b) in (4, 5) for b in raw):
        raise _RowError(f"bboxes must be a JSON list of [xmin, ymin, xmax, ymax] or [xmin, ymin, xmax, ymax, label] "
                        f"in pixels. Received: {text}")
    size = image_size(path) if os.path.exists(path) else None
    if size is None:
        return [], []  # the driver reports the missing or unreadable file
    width, height = size
    boxes, labels = [], []
    for b in raw:
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b[:4]):
            raise _RowError(f"box {b} must start with four pixel coordinates")
        try:
            boxes.append(pixel_box_to_normalised(*b[:4], width=width, height=height))
        except ValueError as e:
            raise _RowError(str(e))
        labels.append(_box_label(b[4], row_label, class_index, len(class_index)) if len(b) == 5 else row_label)
    return boxes, labels


def read_manifest(csv_path: str, class_names: list[str] | None = None,
                  ) -> tuple[list[SourceItem], list[str], list[dict], list[str], bool]:
    """Parses a manifest CSV. Returns ``(items, class_names, skipped, notes, has_patient_ids)``.

    Without ``class_names`` the sorted set of labels is used; with it, rows with
    another label are skipped.
    """
    df = read_csv(csv_path, REQUIRED_COLUMNS, expected=REQUIRED_COLUMNS + tuple(f"[{c}]" for c in OPTIONAL_COLUMNS),
                  fix="The first line of the manifest must be a header such as: path,label,patient_id")
    base = os.path.dirname(os.path.abspath(csv_path))
    columns = set(df.columns)
    rows = df.to_dict("records")
    labels_seen = sorted({r["label"] for r in rows if r["label"]})
    if class_names is None:
        class_names = labels_seen
    class_index = {c: i for i, c in enumerate(class_names)}
    items, skipped, notes = [], [], []
    no_patient = 0
    for i, r in enumerate(rows):
        if is_blank(r.values()):
            skipped.append(skip(row_input(csv_path, i), "blank row"))
            continue
        where = row_input(csv_path, i, r["path"])
        if not r["path"]:
            skipped.append(skip(where, "no path"))
            continue
        if not r["label"]:
            skipped.append(skip(where, "no label"))
            continue
        if r["label"] not in class_index:
            skipped.append(skip(where, f"label {r['label']!r} is not one of --class-names {','.join(class_names)}"))
            continue
        path = r["path"] if os.path.isabs(r["path"]) else os.path.join(base, r["path"])
        label = class_index[r["label"]]
        try:
            fitz = _parse_fitzpatrick(r["fitzpatrick"]) if "fitzpatrick" in columns else 0
            split = r["split"].lower() if "split" in columns and r["split"] else None
            if split is not None and split not in schema.SPLITS:
                raise _RowError(f"split {r['split']!r} is not one of {', '.join(schema.SPLITS)} (or empty)")
            boxes, box_labels = (_parse_boxes(r["bboxes"], path, label, class_index) if "bboxes" in columns
                                 else ([], []))
        except _RowError as e:
            skipped.append(skip(where, str(e)))
            continue
        patient = r.get("patient_id", "")
        if not patient:
            no_patient += "patient_id" in columns
            patient = r["path"]
        items.append(SourceItem(source_id=r["path"], patient_id=patient, path=path, label=label, fitzpatrick=fitz,
                                bboxes=boxes, bbox_labels=box_labels, split=split))
    if no_patient:
        notes.append(f"{no_patient} row(s) have an empty patient_id: each of those images is its own split unit")
    return items, class_names, skipped, notes, "patient_id" in columns


@click.command("manifest")
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.option("--class-names", default=None,
              help="Comma-separated class names in index order; rows with another label are skipped. "
                   "Default: the labels found, sorted.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True,
              help="Store grey (1) or RGB (3) images.")
@click.option("--estimate-skin-type/--no-estimate-skin-type", default=None,
              help="Estimate the Fitzpatrick type by ITA where the fitzpatrick column is empty or absent. "
                   "Default: on for RGB.")
@common_options
def command(opts: PrepOptions, csv_path: str, class_names: str | None, channels: str,
            estimate_skin_type: bool | None) -> None:
    """Images listed in a CSV: the way in for private data such as DermGAN's.

    \b
    Columns:
      path         image file, relative to the CSV's folder (or absolute)
      label        class name
      patient_id   optional; rows of one patient never cross splits (default: each image alone)
      fitzpatrick  optional; 1..6, empty/0/-1 = unknown (then estimated by ITA for RGB)
      bboxes       optional; JSON list of [xmin, ymin, xmax, ymax] or [xmin, ymin, xmax, ymax, label]
                   in pixels; label is a class name or index (default: the row's label)
      split        optional; train, val or test to keep a split (empty rows are split by patient)

    \b
    Example manifest.csv:
      path,label,patient_id,fitzpatrick,bboxes
      img/0001.jpg,eczema,p17,3,"[[120, 80, 260, 200]]"
      img/0002.jpg,melanoma,p18,,"[[40, 40, 90, 100, ""melanoma""]]"

    \b
    Example:
      medgan-data manifest manifest.csv --out data/derm --image-size 256 --roi-crop --crops-per-image 4
    """
    require_file(csv_path, "CSV", "Pass the manifest CSV (columns path,label and optionally patient_id, "
                                  "fitzpatrick, bboxes, split).")
    names = parse_name_list(class_names, "--class-names")
    items, names, skipped, notes, has_patients = read_manifest(csv_path, names)
    echo_notes(notes)
    n_channels = int(channels)
    estimate = (n_channels == 3) if estimate_skin_type is None else estimate_skin_type
    prepare_dataset(items, opts, source="manifest", class_names=names, channels=n_channels,
                    split_unit="patient" if has_patients else "image", skipped=skipped, estimate_skin_type=estimate,
                    extra={"manifest": os.path.abspath(csv_path), "notes": notes})
