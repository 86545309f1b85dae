import pytest

from data_prep.sources.kermany import patient_of
from tests.data_prep.conftest import (FAST, assert_patient_disjoint, by_source, read_dataset, run_cli,
                                      skipped_reasons, write_jpeg, write_truncated_jpeg)

FILES = {  # split -> class folder -> file names
    "train": {"NORMAL": ["IM-0115-0001.jpeg", "IM-0115-0002.jpeg", "NORMAL2-IM-1427-0001.jpeg"],
              "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_virus_6.jpeg", "person2_bacteria_3.jpeg",
                            "scan-final.jpeg"]},
    "val": {"NORMAL": ["NORMAL2-IM-1430-0001.jpeg"], "PNEUMONIA": ["person1946_bacteria_4874.jpeg"]},
    "test": {"NORMAL": ["IM-0001-0001.jpeg", "NORMAL2-IM-0086-0001.jpeg"],
             "PNEUMONIA": ["person100_bacteria_475.jpeg", "person1_virus_11.jpeg"]},
}


@pytest.mark.parametrize("stem, patient", [
    ("person1_bacteria_1", "person1"), ("person1_virus_6", "person1"), ("IM-0115-0001", "IM-0115"),
    ("NORMAL2-IM-1427-0001", "NORMAL2-IM-1427"), ("person1946_bacteria_4874", "person1946"),
    ("scan-final", None), ("IM-0115", None),
])
def test_patient_id_from_file_name(stem, patient):
    assert patient_of(stem) == patient


def _kermany(root):
    base = root / "chest_xray"
    for split, classes in FILES.items():
        for cls, names in classes.items():
            for i, name in enumerate(names):
                write_jpeg(base / split / cls / name, size=(24, 20), color=(120,), channels=1, seed=i)
    write_truncated_jpeg(base / "train" / "PNEUMONIA" / "person3_virus_9.jpeg", channels=1, color=(120,))
    (base / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\0")
    return base


def test_kermany_official_splits_and_patients(tmp_path):
    base = _kermany(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["kermany", tmp_path / "src", "--out", out, *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)

    assert info["class_names"] == ["normal", "pneumonia"] and info["channels"] == 1
    assert info["extra"]["official_splits"] is True
    for split, classes in FILES.items():
        assert sorted(r["source_id"] for r in records[split]) == sorted(
            f"{split}/{cls}/{n}" for cls, names in classes.items() for n in names)
    assert recs["train/NORMAL/IM-0115-0002.jpeg"]["patient_id"] == "IM-0115"
    assert recs["train/NORMAL/NORMAL2-IM-1427-0001.jpeg"]["patient_id"] == "NORMAL2-IM-1427"
    assert recs["train/PNEUMONIA/person1_virus_6.jpeg"]["patient_id"] == "person1"
    assert recs["train/PNEUMONIA/scan-final.jpeg"]["patient_id"] == "scan-final"
    assert recs["train/PNEUMONIA/person1_virus_6.jpeg"]["label"] == 1
    assert recs["test/NORMAL/IM-0001-0001.jpeg"]["label"] == 0
    assert all(r["image"].shape == (16, 16, 1) for r in recs.values())
    assert "1 file name(s) have no patient id pattern" in result.output
    # person1 is in the published train and test splits: kept as published, with a warning.
    assert "appear in more than one official split" in result.output and "person1" in result.output
    broken = str(base / "train" / "PNEUMONIA" / "person3_virus_9.jpeg")
    assert list(skipped_reasons(info)) == [broken]
    assert skipped_reasons(info)[broken].startswith("unreadable image")


def test_kermany_subtype_from_chest_xray_folder(tmp_path):
    base = _kermany(tmp_path / "src")
    out = tmp_path / "out"
    run_cli(["kermany", base, "--subtype", "--out", out, *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert info["class_names"] == ["normal", "bacteria", "virus"]
    assert recs["train/PNEUMONIA/person1_bacteria_1.jpeg"]["label"] == 1
    assert recs["test/PNEUMONIA/person1_virus_11.jpeg"]["label"] == 2
    assert recs["val/NORMAL/NORMAL2-IM-1430-0001.jpeg"]["label"] == 0
    assert "train/PNEUMONIA/scan-final.jpeg" not in recs
    assert skipped_reasons(info)["train/PNEUMONIA/scan-final.jpeg"].startswith("--subtype: the file name says")


def test_kermany_patient_disjoint_within_a_clean_release(tmp_path):
    base = tmp_path / "chest_xray"
    for split, names in (("train", ["person5_bacteria_1.jpeg", "person5_bacteria_2.jpeg"]),
                         ("test", ["person6_virus_1.jpeg"])):
        for i, name in enumerate(names):
            write_jpeg(base / split / "PNEUMONIA" / name, size=(24, 20), channels=1, color=(100,), seed=i)
    out = tmp_path / "out"
    result = run_cli(["kermany", base, "--out", out, *FAST])
    _, records = read_dataset(out)
    assert_patient_disjoint(records)
    assert "more than one official split" not in result.output


def test_kermany_wrong_folder_names_layout(tmp_path):
    (tmp_path / "x").mkdir()
    result = run_cli(["kermany", tmp_path / "x", "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "no train/ folder" in result.output and "chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}" in result.output
