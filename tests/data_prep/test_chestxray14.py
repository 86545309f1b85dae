from data_prep.sources.chestxray14 import CLASS_NAMES
from tests.data_prep.conftest import (FAST, assert_boxes, assert_patient_disjoint, by_source, read_dataset, run_cli,
                                      skipped_reasons, write_csv, write_png)

# The real headers, brackets and trailing commas included.
DATA_ENTRY_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
                     "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
ENTRIES = [  # (image, findings, patient, images_00k folder or None when the file is missing)
    ("00000001_000.png", "Cardiomegaly", 1, 1),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1),
    ("00000002_000.png", "No Finding", 2, 1),
    ("00000003_000.png", "Infiltration", 3, 1),
    ("00000004_000.png", "Effusion", 4, 2),
    ("00000005_000.png", "Pneumonia", 5, 2),
    ("00000006_000.png", "Mass", 6, None),
    ("00000007_000.png", "Hernia", 7, 2),
    ("00000007_001.png", "Pneumonia|Effusion", 7, 2),
    ("00000008_000.png", "Heart Attack", 8, 2),
    ("00000009_000.png", "Effusion", 9, 2),
    ("00000010_000.png", "Mass", 10, 2),
]
TEST_LIST = ["00000007_000.png", "00000007_001.png", "00000008_000.png", "00000010_000.png"]


def _cxr14(root):
    """Kaggle layout: images_001/images/, images_002/images/; 40x32 grey PNGs standing in for 1024x1024."""
    rows = []
    for name, findings, patient, folder in ENTRIES:
        if folder is not None:
            write_png(root / f"images_{folder:03d}" / "images" / name, size=(40, 32), color=(90,), channels=1,
                      seed=patient)
        rows.append(f"{name},{findings},0,{patient},58,M,PA,2682,2749,0.143,0.143,")
    rows.insert(5, ",,,,,,,,,,,")
    write_csv(root / "Data_Entry_2017.csv", DATA_ENTRY_HEADER, rows)
    write_csv(root / "BBox_List_2017.csv", BBOX_HEADER, [
        "00000003_000.png,Infiltrate,8,4,16,12,,,",  # x, y, w, h in pixels; "Infiltrate" = Infiltration
        "00000004_000.png,Effusion,0,16,40,16,,,",
        "00000004_000.png,Effusion,30,0,20,8,,,",  # runs off the right edge: clipped
        "00000005_000.png,Atelectasis,1,1,2,2,,,",  # a finding the image is not labelled with still counts
    ])
    (root / "train_val_list.txt").write_text("\n".join(n for n, *_ in ENTRIES if n not in TEST_LIST) + "\n")
    (root / "test_list.txt").write_text("\n".join(TEST_LIST) + "\n")
    return root


def test_chestxray14_multi_label(tmp_path):
    root = _cxr14(tmp_path / "CXR14")
    out = tmp_path / "out"
    result = run_cli(["chestxray14", "--root", root, "--out", out, "--resize", "stretch", "--val-fraction", "0.3",
                      *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    idx = {c: i for i, c in enumerate(CLASS_NAMES)}

    assert info["class_names"] == list(CLASS_NAMES) and len(CLASS_NAMES) == 15 and CLASS_NAMES[-1] == "No Finding"
    assert info["multi_label"] is True and info["channels"] == 1 and info["split_unit"] == "patient"
    assert len(recs) == 10
    assert recs["00000001_000.png"]["label_multi"] == [idx["Cardiomegaly"]]
    assert recs["00000001_000.png"]["label"] == idx["Cardiomegaly"]
    assert recs["00000001_001.png"]["label_multi"] == sorted([idx["Cardiomegaly"], idx["Emphysema"]])
    assert recs["00000001_001.png"]["label"] == -1
    assert recs["00000002_000.png"]["label_multi"] == [14] and recs["00000002_000.png"]["label"] == 14
    assert recs["00000001_000.png"]["patient_id"] == "1"
    assert all(r["image"].shape == (16, 16, 1) for r in recs.values())
    # Boxes: pixels of the 40x32 stored image -> [y/32, x/40, (y+h)/32, (x+w)/40].
    assert_boxes(recs["00000003_000.png"], [[4 / 32, 8 / 40, 16 / 32, 24 / 40]], [idx["Infiltration"]])
    assert_boxes(recs["00000004_000.png"], [[0.5, 0.0, 1.0, 1.0], [0.0, 0.75, 0.25, 1.0]], [idx["Effusion"]] * 2)
    assert_boxes(recs["00000005_000.png"], [[1 / 32, 1 / 40, 3 / 32, 3 / 40]], [idx["Atelectasis"]])
    assert_boxes(recs["00000009_000.png"], [])
    # Official split: test_list.txt is the test split; val is carved from train_val by patient.
    assert sorted(r["source_id"] for r in records["test"]) == ["00000007_000.png", "00000007_001.png",
                                                               "00000010_000.png"]
    assert records["val"] and records["train"]
    assert_patient_disjoint(records)
    assert info["extra"]["official_splits"] is True
    assert "test from test_list.txt" in result.output

    skipped = skipped_reasons(info)
    missing = str(root / "images*" / "00000006_000.png")  # searched in every images*/ folder
    assert set(skipped) == {"Data_Entry_2017.csv line 7", "Data_Entry_2017.csv line 12 (00000008_000.png)", missing}
    assert skipped["Data_Entry_2017.csv line 7"] == "blank row"
    assert skipped["Data_Entry_2017.csv line 12 (00000008_000.png)"].startswith("unknown finding(s) ['Heart Attack']")
    assert skipped[missing] == f"file not found: {missing}"


def test_chestxray14_classes_filter_as_xray_gan(tmp_path):
    root = _cxr14(tmp_path / "CXR14")
    out = tmp_path / "out"
    run_cli(["chestxray14", "--root", root, "--classes", "Pneumonia,Effusion,Mass,Hernia", "--out", out,
             "--resize", "stretch", *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert info["class_names"] == ["Pneumonia", "Effusion", "Mass", "Hernia"] and info["multi_label"] is False
    assert {k: r["label"] for k, r in recs.items()} == {
        "00000004_000.png": 1, "00000005_000.png": 0, "00000007_000.png": 3, "00000009_000.png": 1,
        "00000010_000.png": 2}
    assert all(r["label_multi"] == [] for r in recs.values())
    assert_boxes(recs["00000004_000.png"], [[0.5, 0.0, 1.0, 1.0], [0.0, 0.75, 0.25, 1.0]], [1, 1])
    assert_boxes(recs["00000005_000.png"], [])  # its Atelectasis box is not one of the classes
    assert "left out 5 others" in " ".join(info["extra"]["notes"])
    assert_patient_disjoint(records)


def test_chestxray14_unknown_class_is_a_usage_error(tmp_path):
    root = _cxr14(tmp_path / "CXR14")
    result = run_cli(["chestxray14", "--root", root, "--classes", "Pneumonia,Covid", "--out", tmp_path / "o"],
                     ok=False)
    assert result.exit_code != 0 and "Covid" in result.output and "Hernia" in result.output


def test_chestxray14_missing_column_names_it(tmp_path):
    root = tmp_path / "CXR14"
    write_png(root / "images" / "00000001_000.png", channels=1)
    write_csv(root / "Data_Entry_2017.csv", "Image Index,Follow-up #,Patient ID", ["00000001_000.png,0,1"])
    result = run_cli(["chestxray14", "--root", root, "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "Data_Entry_2017.csv is missing columns ['Finding Labels']" in result.output


def test_chestxray14_missing_images_folder(tmp_path):
    root = tmp_path / "CXR14"
    write_csv(root / "Data_Entry_2017.csv", DATA_ENTRY_HEADER, ["00000001_000.png,Mass,0,1,58,M,PA,1,1,1,1,"])
    result = run_cli(["chestxray14", "--root", root, "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0 and "no images*/ folder" in result.output
