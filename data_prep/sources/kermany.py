"""`medgan-data kermany`: the paediatric pneumonia chest X-rays of Kermany et al. (2018)."""

from __future__ import annotations

import os
import re

import click

from data_prep.options import common_options
from data_prep.prepare import PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import echo_notes, index_files, require_dir, skip
from keras_medgan.data import schema

FOLDER_CLASSES = ("NORMAL", "PNEUMONIA")
CLASS_NAMES = ("normal", "pneumonia")
SUBTYPE_CLASS_NAMES = ("normal", "bacteria", "virus")

# person1_bacteria_1 -> person1; person1_virus_6 -> person1; IM-0115-0001 -> IM-0115;
# NORMAL2-IM-1427-0001 -> NORMAL2-IM-1427 (the last number is the image of that patient).
_PERSON = re.compile(r"^(person\d+)_(bacteria|virus)_\d+$", re.IGNORECASE)
_IM = re.compile(r"^((?:[A-Za-z0-9]+-)?IM-\d+)-\d+$", re.IGNORECASE)


def patient_of(stem: str) -> str | None:
    """The patient id in a Kermany file name (without extension), or None when the name has no known pattern."""
    for pattern in (_PERSON, _IM):
        m = pattern.match(stem)
        if m:
            return m.group(1)
    return None


def subtype_of(stem: str) -> str | None:
    """``bacteria`` / ``virus`` from a pneumonia file name such as ``person1_virus_6``."""
    low = stem.lower()
    kinds = [k for k in ("bacteria", "virus") if k in low]
    return kinds[0] if len(kinds) == 1 else None


def find_split_root(root: str) -> str:
    """The folder holding train/ val/ test/: ROOT, ROOT/chest_xray or ROOT/chest_xray/chest_xray (Kaggle zip)."""
    for candidate in (root, os.path.join(root, "chest_xray"), os.path.join(root, "chest_xray", "chest_xray")):
        if os.path.isdir(os.path.join(candidate, "train")):
            return candidate
    raise click.BadParameter(
        f"no train/ folder in {root!r} or {os.path.join(root, 'chest_xray')!r}. Pass the folder that holds "
        "chest_xray/ (or chest_xray/ itself), laid out as chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg.",
        param_hint="ROOT")


def read_kermany(root: str, subtype: bool = False) -> tuple[list[SourceItem], list[str], list[dict], list[str]]:
    """Builds the items of the Kermany chest X-ray folder. Returns ``(items, class_names, skipped, notes)``."""
    base = find_split_root(root)
    class_names = SUBTYPE_CLASS_NAMES if subtype else CLASS_NAMES
    items, skipped, unparsed = [], [], []
    for split in schema.SPLITS:
        split_dir = os.path.join(base, split)
        if not os.path.isdir(split_dir):
            continue
        for folder_class, cls in zip(FOLDER_CLASSES, CLASS_NAMES):
            class_dir = os.path.join(split_dir, folder_class)
            if not os.path.isdir(class_dir):
                continue
            for stem, path in sorted(index_files([class_dir], (".jpeg", ".jpg", ".png")).items()):
                rel = os.path.relpath(path, base)
                name = cls
                if subtype and cls == "pneumonia":
                    name = subtype_of(stem)
                    if name is None:
                        skipped.append(skip(rel, "--subtype: the file name says neither bacteria nor virus"))
                        continue
                patient = patient_of(stem)
                if patient is None:
                    unparsed.append(rel)
                    patient = stem
                items.append(SourceItem(source_id=rel, patient_id=patient, path=path,
                                        label=class_names.index(name), split=split))
    if not items and not skipped:
        raise click.BadParameter(f"no images under {base}/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/.",
                                 param_hint="ROOT")
    notes = []
    if unparsed:
        notes.append(f"{len(unparsed)} file name(s) have no patient id pattern (e.g. {unparsed[0]}); "
                     "each of those images is its own patient")
    return items, list(class_names), skipped, notes


@click.command("kermany")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--subtype/--no-subtype", default=False, show_default=True,
              help="Three classes normal, bacteria, virus (from the file names) instead of normal, pneumonia.")
@common_options
def command(opts: PrepOptions, root: str, subtype: bool) -> None:
    """Paediatric chest X-rays for pneumonia (Kermany et al., Cell 2018; the Kaggle "chest_xray" set).

    \b
    Layout read: ROOT/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg
    (ROOT may be chest_xray/ itself). The official splits are kept as published.
    Patient ids come from the file names: person1_bacteria_1.jpeg -> person1,
    IM-0115-0001.jpeg -> IM-0115, NORMAL2-IM-1427-0001.jpeg -> NORMAL2-IM-1427;
    other names are their own patient. Grey images (1 channel).
    The published splits share some patients; the run warns when they do.

    \b
    Example:
      medgan-data kermany ~/data/chest_xray --out data/kermany --image-size 128
      medgan-data kermany ~/data --subtype --out data/kermany3 --image-size 128
    """
    require_dir(root, "ROOT", "Pass the folder that holds chest_xray/ (or chest_xray/ itself).")
    items, class_names, skipped, notes = read_kermany(root, subtype)
    echo_notes(notes)
    prepare_dataset(items, opts, source="kermany", class_names=class_names, channels=1, split_unit="patient",
                    skipped=skipped, extra={"subtype": subtype, "notes": notes,
                                            "patient_id_from_file_name": True})
