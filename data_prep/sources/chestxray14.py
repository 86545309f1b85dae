"""`medgan-data chestxray14`: NIH ChestX-ray14 (Wang et al. 2017), multi-label, split by patient."""

from __future__ import annotations

import glob
import os

import click

from data_prep.options import common_options
from data_prep.prepare import PreparationError, PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import (echo_notes, image_size, index_files, is_blank, non_blank_rows, parse_name_list,
                                      pixel_box_to_normalised, read_csv, require_dir, row_input, skip)
from keras_medgan.data.writer import assign_splits

# The 14 findings of ChestX-ray14, in the order of the dataset paper, then the "No Finding" label.
FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
            "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
NO_FINDING = "No Finding"
CLASS_NAMES = FINDINGS + (NO_FINDING,)
DATA_ENTRY_COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                      "View Position", "OriginalImage[Width,Height]", "OriginalImagePixelSpacing[x,y]")
# BBox_List_2017.csv spells one finding differently from Data_Entry_2017.csv.
BBOX_LABEL_ALIASES = {"Infiltrate": "Infiltration"}


def find_data_entry(root: str) -> str:
    """``Data_Entry_2017.csv`` (or the 2020 re-release ``Data_Entry_2017_v2020.csv``) in ``root``."""
    for name in ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"):
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    others = sorted(glob.glob(os.path.join(root, "Data_Entry*.csv")))
    if others:
        return others[0]
    raise click.BadParameter(
        f"no Data_Entry_2017.csv in {root!r}. Pass the ChestX-ray14 folder that holds Data_Entry_2017.csv and the "
        "images*/ folders.", param_hint="--root")


def image_folders(root: str) -> list[str]:
    """The ``images*`` folders of the NIH or Kaggle layout (``images/``, ``images_001/images/``, ...)."""
    return sorted(p for p in glob.glob(os.path.join(root, "images*")) if os.path.isdir(p))


def read_boxes(path: str, image_paths: dict[str, str], class_index: dict[str, int],
               ) -> tuple[dict[str, tuple[list, list]], list[dict]]:
    """Reads ``BBox_List_2017.csv`` into image -> (normalised boxes, labels).

    The real header is ``Image Index,Finding Label,Bbox [x,y,w,h],,,``, which a CSV
    reader sees as columns ``Bbox [x``, ``y``, ``w``, ``h]`` (plus empty ones); the
    four numbers after ``Finding Label`` are taken whatever their names. Boxes are
    in pixels of the stored image and are normalised by that image's size (read
    from the file header). Boxes of images not in ``image_paths``, or of findings
    not among the classes, are dropped.
    """
    df = read_csv(path, ("Image Index", "Finding Label"), expected=("Image Index", "Finding Label", "Bbox [x", "y",
                                                                     "w", "h]"),
                  fix="Pass the ChestX-ray14 BBox_List_2017.csv.")
    cols = list(df.columns)
    start = cols.index("Finding Label") + 1
    if len(cols) < start + 4:
        raise PreparationError(f"{os.path.basename(path)} needs four box columns x, y, w, h after 'Finding Label'. "
                               f"Found columns: {', '.join(cols)}.")
    xc, yc, wc, hc = cols[start:start + 4]
    out: dict[str, tuple[list, list]] = {}
    skipped, sizes = [], {}
    for i, row in enumerate(df.to_dict("records")):
        name = row["Image Index"]
        if is_blank(row.values()) or name not in image_paths:
            continue
        label = BBOX_LABEL_ALIASES.get(row["Finding Label"], row["Finding Label"])
        if label not in class_index:
            continue
        if name not in sizes:
            sizes[name] = image_size(image_paths[name]) if os.path.exists(image_paths[name]) else None
        size = sizes[name]
        if size is None:
            continue  # unreadable image: the driver reports it
        try:
            x, y, w, h = (float(row[c]) for c in (xc, yc, wc, hc))
            box = pixel_box_to_normalised(x, y, x + w, y + h, *size)
        except ValueError as e:
            skipped.append(skip(row_input(path, i, name), f"box not used: {e}"))
            continue
        boxes, labels = out.setdefault(name, ([], []))
        boxes.append(box)
        labels.append(class_index[label])
    return out, skipped


def read_split_list(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def read_chestxray14(root: str, classes: list[str] | None, val_fraction: float, seed: int,
                     ) -> tuple[list[SourceItem], list[str], list[dict], list[str]]:
    """Builds the items of a ChestX-ray14 folder. Returns ``(items, class_names, skipped, notes)``.

    Without ``classes``: all images, ``label/multi`` = every finding (or No Finding),
    ``label`` = the finding when there is exactly one, else -1. With ``classes``:
    only images whose single finding is one of them, labelled in that order.
    When ``train_val_list.txt`` and ``test_list.txt`` are present the official test
    split is kept and val is carved from train_val by patient.
    """
    data_entry = find_data_entry(root)
    df = read_csv(data_entry, ("Image Index", "Finding Labels", "Patient ID"), expected=DATA_ENTRY_COLUMNS,
                  fix="Pass the ChestX-ray14 folder holding the original Data_Entry_2017.csv.")
    folders = image_folders(root)
    if not folders:
        raise click.BadParameter(f"no images*/ folder in {root!r}: expected images/ or images_001/images/ ... as in "
                                 "the NIH download.", param_hint="--root")
    files = index_files(folders, (".png",))
    class_names = list(classes) if classes else list(CLASS_NAMES)
    class_index = {c: i for i, c in enumerate(class_names)}
    items, skipped, notes, filtered = [], [], [], 0
    for i, row in non_blank_rows(df.to_dict("records"), data_entry, skipped):
        name = row["Image Index"]
        where = row_input(data_entry, i, name)
        findings = [f.strip() for f in row["Finding Labels"].split("|") if f.strip()]
        unknown = [f for f in findings if f not in CLASS_NAMES]
        problems = (["no Image Index"] if not name else []) + (["no Patient ID"] if not row["Patient ID"] else []) \
            + (["no Finding Labels"] if not findings else []) \
            + ([f"unknown finding(s) {unknown} (expected {', '.join(CLASS_NAMES)})"] if unknown else [])
        if NO_FINDING in findings and len(findings) > 1:
            problems.append("'No Finding' together with findings")
        if problems:
            skipped.append(skip(where, "; ".join(problems)))
            continue
        if classes:
            if len(findings) != 1 or findings[0] not in class_index:
                filtered += 1
                continue
            label, multi = class_index[findings[0]], ()
        else:
            multi = tuple(sorted(class_index[f] for f in set(findings)))
            label = multi[0] if len(multi) == 1 else -1
        items.append(SourceItem(source_id=name, patient_id=row["Patient ID"],
                                path=files.get(os.path.splitext(name)[0], os.path.join(root, "images*", name)),
                                label=label, label_multi=multi))
    if classes:
        notes.append(f"--classes {','.join(classes)}: kept {len(items)} single-finding images, left out {filtered} "
                     "others")

    bbox_csv = os.path.join(root, "BBox_List_2017.csv")
    if os.path.isfile(bbox_csv):
        boxes, box_skipped = read_boxes(bbox_csv, {it.source_id: it.path for it in items}, class_index)
        skipped += box_skipped
        for it in items:
            if it.source_id in boxes:
                it.bboxes, it.bbox_labels = boxes[it.source_id]
        notes.append(f"{sum(1 for it in items if it.bboxes)} image(s) have boxes from BBox_List_2017.csv")

    lists = [os.path.join(root, n) for n in ("train_val_list.txt", "test_list.txt")]
    if all(os.path.isfile(p) for p in lists):
        train_val, test = (read_split_list(p) for p in lists)
        official = [it for it in items if it.source_id in train_val or it.source_id in test]
        tv_patients = [it.patient_id for it in official if it.source_id not in test]
        carve = assign_splits(tv_patients, val_fraction, 0.0, seed) if tv_patients else {}
        unlisted = 0
        for it in items:
            if it.source_id in test:
                it.split = "test"
            elif it.source_id in train_val:
                it.split = carve[it.patient_id]
            else:
                unlisted += 1
        notes.append("official split kept: test from test_list.txt, train/val from train_val_list.txt "
                     f"(val = {val_fraction:g} of its patients)"
                     + (f"; {unlisted} image(s) in neither list are split by patient" if unlisted else ""))
    return items, class_names, skipped, notes


@click.command("chestxray14")
@click.option("--root", required=True, type=click.Path(file_okay=False),
              help="The ChestX-ray14 folder: Data_Entry_2017.csv, images*/ and optionally BBox_List_2017.csv, "
                   "train_val_list.txt, test_list.txt.")
@click.option("--classes", default=None,
              help="Comma-separated findings: keep only images whose single finding is one of them (as XRAY-GAN's "
                   "CGAN uses Pneumonia,Effusion,Mass,Hernia); class names in the given order.")
@common_options
def command(opts: PrepOptions, root: str, classes: str | None) -> None:
    """NIH ChestX-ray14: 112,120 frontal chest X-rays of 30,805 patients, 14 findings.

    \b
    Layout read (NIH or Kaggle download):
      ROOT/Data_Entry_2017.csv       Image Index, Finding Labels (a|b|c), Patient ID, ...
      ROOT/images*/ **/*.png         images/ or images_001/images/ ... images_012/images/
      ROOT/BBox_List_2017.csv        optional: boxes (x, y, w, h in pixels) for 984 images
      ROOT/train_val_list.txt, test_list.txt   optional: the official patient-wise split
    Grey images (1 channel). Splits by Patient ID.

    \b
    Labels: without --classes, classes are the 14 findings then "No Finding"; every
    finding goes into label/multi, and label is the class index when an image has exactly
    one (else -1). With --classes, only single-finding images of those classes are kept
    and label is set (XRAY-GAN, Chen & Wan: CGAN on Pneumonia, Effusion, Mass, Hernia; the
    paper does not say how multi-finding images were handled, so they are left out).

    \b
    Example:
      medgan-data chestxray14 --root ~/data/CXR14 --classes Pneumonia,Effusion,Mass,Hernia \\
          --out data/cxr14-4 --image-size 128
    """
    require_dir(root, "--root", "Pass the ChestX-ray14 folder holding Data_Entry_2017.csv and images*/.")
    names = parse_name_list(classes, "--classes")
    if names:
        unknown = [c for c in names if c not in CLASS_NAMES]
        if unknown:
            raise click.BadParameter(f"unknown finding(s) {unknown}; choose from {', '.join(CLASS_NAMES)}",
                                     param_hint="--classes")
    items, class_names, skipped, notes = read_chestxray14(root, names, opts.val_fraction, opts.seed)
    echo_notes(notes)
    prepare_dataset(items, opts, source="chestxray14", class_names=class_names, channels=1, split_unit="patient",
                    skipped=skipped, multi_label=not names,
                    extra={"root": os.path.abspath(root), "classes_filter": names or [], "notes": notes})
