"""`medgan-data isic`: the ISIC 2019 and ISIC 2020 challenge training sets."""

from __future__ import annotations

import os

import click

from data_prep.options import common_options
from data_prep.prepare import PreparationError, PrepOptions, SourceItem, prepare_dataset
from data_prep.sources.common import (echo_notes, index_files, non_blank_rows, read_csv, require_dir, require_file,
                                      row_input, skip)

# ISIC 2019 Task 1 diagnoses, in the column order of ISIC_2019_Training_GroundTruth.csv (UNK has no training image).
ISIC2019_DIAGNOSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
ISIC2019_COLUMNS = ("image",) + ISIC2019_DIAGNOSES + ("UNK",)
ISIC2019_METADATA_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")
ISIC2019_CARCINOMAS = ("BCC", "SCC")
ISIC2020_COLUMNS = ("image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
                    "benign_malignant", "target")
MELANOMA_VS_BENIGN = ("benign", "melanoma")
BENIGN_MALIGNANT = ("benign", "malignant")


def _missing_image(image_dir: str, name: str) -> str:
    return os.path.join(image_dir, f"{name}.jpg")


def read_isic2019(ground_truth: str, metadata: str | None, images: dict[str, str], task: str,
                  actinic_keratosis: str = "benign", image_dir: str = "",
                  ) -> tuple[list[SourceItem], list[str], list[dict], list[str]]:
    """Parses the ISIC 2019 ground truth (+ metadata). Returns ``(items, class_names, skipped, notes)``.

    ``task="all"``: the 8 diagnoses. ``task="melanoma-vs-benign"``: MEL -> melanoma;
    NV, BKL, DF, VASC (and AK unless ``actinic_keratosis="drop"``) -> benign;
    carcinomas (BCC, SCC) skipped. The split unit is ``lesion_id`` from the
    metadata, or the image itself where the lesion id is empty.
    """
    gt = read_csv(ground_truth, ISIC2019_COLUMNS[:-1], expected=ISIC2019_COLUMNS,
                  fix="Pass ISIC_2019_Training_GroundTruth.csv with --ground-truth.")
    lesion_of: dict[str, str] = {}
    if metadata is not None:
        md = read_csv(metadata, ("image", "lesion_id"), expected=ISIC2019_METADATA_COLUMNS,
                      fix="Pass ISIC_2019_Training_Metadata.csv with --metadata.")
        lesion_of = {r["image"]: r["lesion_id"] for r in md.to_dict("records") if r["image"]}
    if task == "all":
        class_names = list(ISIC2019_DIAGNOSES)
        target = {d: d for d in ISIC2019_DIAGNOSES}
    else:
        class_names = list(MELANOMA_VS_BENIGN)
        target = {"MEL": "melanoma", "NV": "benign", "BKL": "benign", "DF": "benign", "VASC": "benign",
                  "AK": "benign" if actinic_keratosis == "benign" else None, "BCC": None, "SCC": None}
    index = {c: i for i, c in enumerate(class_names)}
    items, skipped, no_lesion = [], [], 0
    for i, row in non_blank_rows(gt.to_dict("records"), ground_truth, skipped):
        name = row["image"]
        where = row_input(ground_truth, i, name)
        try:
            hot = [d for d in ISIC2019_COLUMNS[1:] if d in row and row[d] and float(row[d]) >= 0.5]
        except ValueError:
            skipped.append(skip(where, "diagnosis columns must hold 0.0 or 1.0"))
            continue
        if not name or len(hot) != 1:
            skipped.append(skip(where, "no image name" if not name else f"{len(hot)} diagnoses marked (expected 1)"))
            continue
        dx = hot[0]
        if dx == "UNK":
            skipped.append(skip(where, "UNK: unknown diagnosis"))
            continue
        cls = target[dx]
        if cls is None:
            why = "carcinoma" if dx in ISIC2019_CARCINOMAS else "actinic keratosis (--actinic-keratosis drop)"
            skipped.append(skip(where, f"{dx}: {why}, not part of the melanoma-vs-benign task"))
            continue
        lesion = lesion_of.get(name, "")
        if not lesion:
            no_lesion += 1
            lesion = name
        items.append(SourceItem(source_id=name, patient_id=lesion, label=index[cls],
                                path=images.get(name, _missing_image(image_dir, name))))
    notes = []
    if no_lesion:
        notes.append(f"{no_lesion} image(s) have no lesion_id" + ("" if metadata else " (no --metadata given)")
                     + ": each of those images is its own split unit")
    return items, class_names, skipped, notes


def read_isic2020(train_csv: str, images: dict[str, str], task: str, image_dir: str = "",
                  ) -> tuple[list[SourceItem], list[str], list[dict], list[str]]:
    """Parses ISIC 2020 ``train.csv``. Returns ``(items, class_names, skipped, notes)``.

    ``task="all"``: benign / malignant from ``benign_malignant``.
    ``task="melanoma-vs-benign"``: ``target`` 1 -> melanoma, 0 -> benign (every
    malignant ISIC 2020 training image is a melanoma). Split unit: ``patient_id``.
    """
    df = read_csv(train_csv, ("image_name", "patient_id", "benign_malignant", "target"), expected=ISIC2020_COLUMNS,
                  fix="Pass the ISIC 2020 train.csv (ISIC_2020_Training_GroundTruth.csv) with --metadata.")
    class_names = list(BENIGN_MALIGNANT if task == "all" else MELANOMA_VS_BENIGN)
    items, skipped, no_patient = [], [], 0
    for i, row in non_blank_rows(df.to_dict("records"), train_csv, skipped):
        name = row["image_name"]
        where = row_input(train_csv, i, name)
        if not name:
            skipped.append(skip(where, "no image_name"))
            continue
        if task == "all":
            value = row["benign_malignant"].lower()
            if value not in BENIGN_MALIGNANT:
                skipped.append(skip(where, f"benign_malignant {row['benign_malignant']!r} is not benign/malignant"))
                continue
            label = BENIGN_MALIGNANT.index(value)
        else:
            if row["target"] not in ("0", "1", "0.0", "1.0"):
                skipped.append(skip(where, f"target {row['target']!r} is not 0 or 1"))
                continue
            label = int(float(row["target"]))
        patient = row["patient_id"]
        if not patient:
            no_patient += 1
            patient = name
        items.append(SourceItem(source_id=name, patient_id=patient, label=label,
                                path=images.get(name, _missing_image(image_dir, name))))
    notes = [f"{no_patient} image(s) have no patient_id: each of those images is its own split unit"] if no_patient \
        else []
    return items, class_names, skipped, notes


@click.command("isic")
@click.option("--year", type=click.Choice(["2019", "2020"]), required=True, help="Which ISIC challenge release.")
@click.option("--images", "image_dir", required=True, type=click.Path(file_okay=False),
              help="Folder of the training JPEGs (ISIC_2019_Training_Input/ or the 2020 train/), searched recursively.")
@click.option("--ground-truth", default=None, type=click.Path(dir_okay=False),
              help="2019: ISIC_2019_Training_GroundTruth.csv (required). 2020: same as --metadata.")
@click.option("--metadata", default=None, type=click.Path(dir_okay=False),
              help="2019: ISIC_2019_Training_Metadata.csv (optional; gives lesion_id, the split unit). "
                   "2020: train.csv (required).")
@click.option("--task", type=click.Choice(["all", "melanoma-vs-benign"]), default="all", show_default=True,
              help="all: every diagnosis (2019) or benign/malignant (2020). melanoma-vs-benign: two classes "
                   "(benign, melanoma), carcinomas dropped, as in Bissoto et al. 2021.")
@click.option("--actinic-keratosis", type=click.Choice(["benign", "drop"]), default="benign", show_default=True,
              help="2019 with --task melanoma-vs-benign: keep AK as benign (as Bissoto et al. 2021, Table 3) "
                   "or drop it.")
@common_options
def command(opts: PrepOptions, year: str, image_dir: str, ground_truth: str | None, metadata: str | None, task: str,
            actinic_keratosis: str) -> None:
    """ISIC 2019 / 2020 dermoscopy challenge training sets.

    \b
    ISIC 2019: --ground-truth ISIC_2019_Training_GroundTruth.csv (image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK)
               [--metadata ISIC_2019_Training_Metadata.csv (image,age_approx,anatom_site_general,lesion_id,sex)]
               split by lesion_id (an image without one is its own unit); classes MEL NV BCC AK BKL DF VASC SCC.
    ISIC 2020: --metadata train.csv (image_name,patient_id,...,benign_malignant,target), split by patient_id;
               classes benign, malignant.
    Images are <image>.jpg / <image_name>.jpg under --images. Skin type is estimated by ITA.

    \b
    --task melanoma-vs-benign follows the protocol of Bissoto et al., "GAN-Based Data
    Augmentation and Anonymization for Skin-Lesion Analysis: A Critical Review" (CVPRW 2021),
    Sec. 3: "carcinomas, if present in the dataset, are discarded from both training and
    testing". Classes (benign, melanoma). 2019: MEL -> melanoma; NV, BKL, DF, VASC and AK ->
    benign (their Table 3 keeps actinic keratosis in isic19 and isic20; --actinic-keratosis
    drop removes it); BCC and SCC are skipped and listed in dataset.json. 2020: target 1 ->
    melanoma, 0 -> benign.

    \b
    Example:
      medgan-data isic --year 2019 --images ISIC_2019_Training_Input/ \\
          --ground-truth ISIC_2019_Training_GroundTruth.csv --metadata ISIC_2019_Training_Metadata.csv \\
          --task melanoma-vs-benign --out data/isic19-mvb --image-size 256
    """
    require_dir(image_dir, "--images", "Pass the folder holding the ISIC training JPEGs.")
    if year == "2019":
        if ground_truth is None:
            raise click.UsageError("ISIC 2019 needs --ground-truth ISIC_2019_Training_GroundTruth.csv.")
        require_file(ground_truth, "--ground-truth", "Pass ISIC_2019_Training_GroundTruth.csv.")
        if metadata is not None:
            require_file(metadata, "--metadata", "Pass ISIC_2019_Training_Metadata.csv, or leave --metadata out.")
    else:
        if metadata and ground_truth and os.path.abspath(metadata) != os.path.abspath(ground_truth):
            raise click.UsageError("ISIC 2020 has one CSV (train.csv): pass it with --metadata only.")
        metadata = metadata or ground_truth
        if metadata is None:
            raise click.UsageError("ISIC 2020 needs --metadata train.csv.")
        require_file(metadata, "--metadata", "Pass the ISIC 2020 train.csv.")
    images = index_files([image_dir], (".jpg", ".jpeg"))
    if year == "2019":
        items, class_names, skipped, notes = read_isic2019(ground_truth, metadata, images, task, actinic_keratosis,
                                                           image_dir=image_dir)
        unit = "lesion"
    else:
        items, class_names, skipped, notes = read_isic2020(metadata, images, task, image_dir=image_dir)
        unit = "patient"
    echo_notes(notes)
    if not items and not skipped:
        raise PreparationError(f"the ISIC {year} CSV lists no images. Check the file you passed.")
    prepare_dataset(items, opts, source=f"isic{year}", class_names=class_names, channels=3, split_unit=unit,
                    skipped=skipped, estimate_skin_type=True,
                    extra={"year": int(year), "task": task, "notes": notes,
                           **({"actinic_keratosis": actinic_keratosis}
                              if year == "2019" and task == "melanoma-vs-benign" else {})})
