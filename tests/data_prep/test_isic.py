import os

from data_prep.sources.isic import ISIC2019_DIAGNOSES
from tests.data_prep.conftest import (FAST, all_records, assert_patient_disjoint, by_source, read_dataset, run_cli,
                                      skipped_reasons, write_csv, write_jpeg, write_truncated_jpeg)

GT_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"
MD_HEADER = "image,age_approx,anatom_site_general,lesion_id,sex"


def _one_hot(dx):
    return ",".join("1.0" if d == dx else "0.0" for d in ISIC2019_DIAGNOSES + ("UNK",))


def _isic2019(root):
    """ISIC 2019 ground truth + metadata: one image per diagnosis, a lesion with two images, awkward rows."""
    images = root / "ISIC_2019_Training_Input"
    rows, md = [], []
    for i, dx in enumerate(ISIC2019_DIAGNOSES):
        name = f"ISIC_00000{i:02d}"
        write_jpeg(images / f"{name}.jpg", size=(24, 18), seed=i)
        rows.append(f"{name},{_one_hot(dx)}")
        md.append(f"{name},55.0,anterior torso,BCN_00000{i:02d},male")
    write_jpeg(images / "ISIC_0000100_downsampled.jpg", size=(24, 18), seed=50)  # 2nd image of lesion BCN_0000000
    rows.append(f"ISIC_0000100_downsampled,{_one_hot('MEL')}")
    md.append("ISIC_0000100_downsampled,55.0,anterior torso,BCN_0000000,male")
    write_jpeg(images / "ISIC_0000101.jpg", size=(24, 18), seed=51)  # no lesion_id in the metadata
    rows.append(f"ISIC_0000101,{_one_hot('NV')}")
    md.append("ISIC_0000101,40.0,,,female")
    write_jpeg(images / "ISIC_0000102.jpg", size=(24, 18), seed=52)
    rows.append(f"ISIC_0000102,{_one_hot('UNK')}")
    rows.append(",,,,,,,,,")
    rows.append("ISIC_0000103," + ",".join(["0.0"] * 9))
    rows.append(f"ISIC_0000104,{_one_hot('BKL')}")  # no image file
    write_truncated_jpeg(images / "ISIC_0000105.jpg")
    rows.append(f"ISIC_0000105,{_one_hot('DF')}")
    gt = write_csv(root / "ISIC_2019_Training_GroundTruth.csv", GT_HEADER, rows)
    meta = write_csv(root / "ISIC_2019_Training_Metadata.csv", MD_HEADER, md)
    return images, gt, meta


def test_isic2019_all_diagnoses(tmp_path):
    images, gt, meta = _isic2019(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["isic", "--year", "2019", "--images", images, "--ground-truth", gt, "--metadata", meta,
                      "--out", out, *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)

    assert info["class_names"] == list(ISIC2019_DIAGNOSES) and info["split_unit"] == "lesion"
    assert len(recs) == 10
    for i, dx in enumerate(ISIC2019_DIAGNOSES):
        assert recs[f"ISIC_00000{i:02d}"]["label"] == i
        assert recs[f"ISIC_00000{i:02d}"]["patient_id"] == f"BCN_00000{i:02d}"
    assert recs["ISIC_0000100_downsampled"]["patient_id"] == "BCN_0000000"
    assert recs["ISIC_0000100_downsampled"]["split"] == recs["ISIC_0000000"]["split"]
    assert recs["ISIC_0000101"]["patient_id"] == "ISIC_0000101"  # empty lesion_id: the image is its own unit
    assert "3 image(s) have no lesion_id" in result.output  # 0000101, and 0000104/5 not in the metadata
    assert_patient_disjoint(records)
    assert all(r["fitzpatrick_estimated"] == 1 for r in recs.values())

    skipped = skipped_reasons(info)
    assert skipped == {
        "ISIC_2019_Training_GroundTruth.csv line 12 (ISIC_0000102)": "UNK: unknown diagnosis",
        "ISIC_2019_Training_GroundTruth.csv line 13": "blank row",
        "ISIC_2019_Training_GroundTruth.csv line 14 (ISIC_0000103)": "0 diagnoses marked (expected 1)",
        str(images / "ISIC_0000104.jpg"): f"file not found: {images / 'ISIC_0000104.jpg'}",
        str(images / "ISIC_0000105.jpg"): skipped[str(images / "ISIC_0000105.jpg")],
    }
    assert skipped[str(images / "ISIC_0000105.jpg")].startswith("unreadable image")


def test_isic2019_melanoma_vs_benign_drops_carcinomas(tmp_path):
    images, gt, meta = _isic2019(tmp_path / "src")
    out = tmp_path / "out"
    run_cli(["isic", "--year", "2019", "--images", images, "--ground-truth", gt, "--metadata", meta,
             "--task", "melanoma-vs-benign", "--out", out, *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert info["class_names"] == ["benign", "melanoma"]
    dx_of = {f"ISIC_00000{i:02d}": dx for i, dx in enumerate(ISIC2019_DIAGNOSES)}
    kept = {k for k, dx in dx_of.items() if dx not in ("BCC", "SCC")}
    assert set(recs) == kept | {"ISIC_0000100_downsampled", "ISIC_0000101"}
    assert {k for k, r in recs.items() if r["label"] == 1} == {"ISIC_0000000", "ISIC_0000100_downsampled"}
    assert recs["ISIC_0000003"]["label"] == 0  # AK is benign, as in Bissoto et al. 2021, Table 3
    skipped = skipped_reasons(info)
    assert skipped["ISIC_2019_Training_GroundTruth.csv line 4 (ISIC_0000002)"] == (
        "BCC: carcinoma, not part of the melanoma-vs-benign task")
    assert skipped["ISIC_2019_Training_GroundTruth.csv line 9 (ISIC_0000007)"] == (
        "SCC: carcinoma, not part of the melanoma-vs-benign task")
    assert info["extra"]["task"] == "melanoma-vs-benign" and info["extra"]["actinic_keratosis"] == "benign"

    run_cli(["isic", "--year", "2019", "--images", images, "--ground-truth", gt, "--metadata", meta,
             "--task", "melanoma-vs-benign", "--actinic-keratosis", "drop", "--out", out, *FAST])
    info, records = read_dataset(out)
    assert "ISIC_0000003" not in by_source(records)
    assert "actinic keratosis" in skipped_reasons(info)["ISIC_2019_Training_GroundTruth.csv line 5 (ISIC_0000003)"]


def _isic2020(root):
    images = root / "train"
    rows = []
    spec = [  # (image, patient, diagnosis, benign_malignant, target)
        ("ISIC_2637011", "IP_7279968", "unknown", "benign", 0),
        ("ISIC_0015719", "IP_3075186", "unknown", "benign", 0),
        ("ISIC_0052212", "IP_2842074", "nevus", "benign", 0),
        ("ISIC_0068279", "IP_6890425", "melanoma", "malignant", 1),
        ("ISIC_0074268", "IP_6723298", "seborrheic keratosis", "benign", 0),
        ("ISIC_0074311", "IP_2950485", "lentigo NOS", "benign", 0),
        ("ISIC_0074542", "IP_4698288", "melanoma", "malignant", 1),
        ("ISIC_0075663", "IP_7279968", "melanoma", "malignant", 1),
        ("ISIC_0075914", "IP_7279968", "cafe-au-lait macule", "benign", 0),
        ("ISIC_0076262", "IP_4723582", "solar lentigo", "benign", 0),
    ]
    for i, (name, patient, diagnosis, bm, target) in enumerate(spec):
        write_jpeg(images / f"{name}.jpg", size=(24, 16), seed=i)
        rows.append(f"{name},{patient},male,45.0,torso,{diagnosis},{bm},{target}")
    rows.insert(3, ",,,,,,,")
    rows.append("ISIC_0076545,IP_9802602,female,55.0,upper extremity,unknown,,")  # no label
    header = "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target"
    return images, write_csv(root / "train.csv", header, rows)


def test_isic2020_tasks(tmp_path):
    images, train_csv = _isic2020(tmp_path / "src")
    out = tmp_path / "out"
    run_cli(["isic", "--year", "2020", "--images", images, "--metadata", train_csv, "--out", out,
             "--val-fraction", "0.3", "--test-fraction", "0.3", *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert info["class_names"] == ["benign", "malignant"] and info["split_unit"] == "patient"
    assert len(recs) == 10
    assert {k for k, r in recs.items() if r["label"] == 1} == {"ISIC_0068279", "ISIC_0074542", "ISIC_0075663"}
    assert {recs[k]["split"] for k in ("ISIC_2637011", "ISIC_0075663", "ISIC_0075914")} == {
        recs["ISIC_2637011"]["split"]}
    assert_patient_disjoint(records)
    assert skipped_reasons(info) == {
        "train.csv line 5": "blank row",
        "train.csv line 13 (ISIC_0076545)": "benign_malignant '' is not benign/malignant",
    }

    run_cli(["isic", "--year", "2020", "--images", images, "--ground-truth", train_csv,
             "--task", "melanoma-vs-benign", "--out", out, *FAST])
    info, records = read_dataset(out)
    assert info["class_names"] == ["benign", "melanoma"]
    assert sorted(r["source_id"] for r in all_records(records) if r["label"] == 1) == [
        "ISIC_0068279", "ISIC_0074542", "ISIC_0075663"]
    assert skipped_reasons(info)["train.csv line 13 (ISIC_0076545)"] == "target '' is not 0 or 1"


def test_isic2020_missing_target_column_names_it(tmp_path):
    os.makedirs(tmp_path / "train")
    csv = write_csv(tmp_path / "train.csv", "image_name,patient_id,sex,diagnosis,benign_malignant",
                    ["ISIC_2637011,IP_7279968,male,unknown,benign"])
    result = run_cli(["isic", "--year", "2020", "--images", tmp_path / "train", "--metadata", csv,
                      "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "train.csv is missing columns ['target']" in result.output


def test_isic2019_needs_ground_truth(tmp_path):
    os.makedirs(tmp_path / "imgs")
    result = run_cli(["isic", "--year", "2019", "--images", tmp_path / "imgs", "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "--ground-truth ISIC_2019_Training_GroundTruth.csv" in result.output
