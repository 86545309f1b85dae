import os

from tests.data_prep.conftest import (FAST, assert_boxes, assert_patient_disjoint, by_source, read_dataset, run_cli,
                                      skipped_reasons, write_csv, write_jpeg, write_png)

HEADER = "path,label,patient_id,fitzpatrick,bboxes,split"


def _manifest(root):
    """A DermGAN-style manifest over 40x30 images (width 40, height 30) with every awkward case."""
    write_png(root / "img" / "a1.png", size=(40, 30), seed=1)
    write_jpeg(root / "img" / "a2.jpg", size=(40, 30), seed=2)
    write_png(root / "img" / "b1.png", size=(40, 30), seed=3)
    write_png(root / "img" / "b2.png", size=(40, 30), seed=4)
    write_png(root / "img" / "c1.png", size=(40, 30), seed=5)
    write_png(root / "img" / "c2.png", size=(40, 30), seed=6)
    write_png(root / "img" / "d1.png", size=(40, 30), seed=7)
    abs_png = write_png(root / "elsewhere" / "e1.png", size=(40, 30), seed=8)
    return write_csv(root / "manifest.csv", HEADER, [
        'img/a1.png,eczema,p1,3,"[[4, 3, 20, 15]]",',
        'img/a2.jpg,melanoma,p1,,"[[0, 0, 40, 30, ""eczema""]]",',
        'img/b1.png,melanoma,p2,5,"[[10, 6, 30, 24, 1], [2, 3, 8, 9]]",',
        ",,,,,",
        "img/c1.png,psoriasis,p3,2,,",
        "img/missing.png,eczema,p3,2,,",
        "img/b2.png,eczema,p2,9,,",
        "img/c2.png,eczema,p3,2,not json,",
        "img/d1.png,melanoma,p4,4,,test",
        f"{abs_png},eczema,,6,,",
        "img/a1.png,,p1,3,,",
    ])


def test_manifest_labels_boxes_skin_types_and_skips(tmp_path):
    csv = _manifest(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["manifest", csv, "--out", out, "--class-names", "eczema,melanoma", "--resize", "stretch",
                      "--val-fraction", "0.25", "--test-fraction", "0.25", *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)

    assert info["class_names"] == ["eczema", "melanoma"]
    assert info["split_unit"] == "patient"
    abs_png = str(tmp_path / "src" / "elsewhere" / "e1.png")
    assert sorted(recs) == sorted(["img/a1.png", "img/a2.jpg", "img/b1.png", "img/d1.png", abs_png])
    # Pixel [xmin, ymin, xmax, ymax] -> normalised [ymin, xmin, ymax, xmax] of the 40x30 image.
    assert_boxes(recs["img/a1.png"], [[3 / 30, 4 / 40, 15 / 30, 20 / 40]], [0])
    assert_boxes(recs["img/a2.jpg"], [[0.0, 0.0, 1.0, 1.0]], [0])  # named box label "eczema" on a melanoma row
    assert_boxes(recs["img/b1.png"], [[6 / 30, 10 / 40, 24 / 30, 30 / 40], [3 / 30, 2 / 40, 9 / 30, 8 / 40]],
                 [1, 1])  # index 1, then the row's label
    assert_boxes(recs["img/d1.png"], [], [])
    assert [recs[k]["label"] for k in ("img/a1.png", "img/a2.jpg", "img/b1.png", "img/d1.png", abs_png)] == [
        0, 1, 1, 1, 0]
    # Annotated skin types are kept; the empty one is estimated by ITA and marked.
    assert (recs["img/a1.png"]["fitzpatrick"], recs["img/a1.png"]["fitzpatrick_estimated"]) == (3, 0)
    assert (recs["img/b1.png"]["fitzpatrick"], recs["img/b1.png"]["fitzpatrick_estimated"]) == (5, 0)
    assert 1 <= recs["img/a2.jpg"]["fitzpatrick"] <= 6 and recs["img/a2.jpg"]["fitzpatrick_estimated"] == 1
    assert info["fitzpatrick_estimated"] == 1
    # Patients: given ids, and the path where the id is empty; the split column is honoured.
    assert recs["img/a1.png"]["patient_id"] == recs["img/a2.jpg"]["patient_id"] == "p1"
    assert recs[abs_png]["patient_id"] == abs_png
    assert recs["img/d1.png"]["split"] == "test"
    assert_patient_disjoint(records)
    assert "1 row(s) have an empty patient_id" in result.output

    skipped = skipped_reasons(info)
    assert skipped == {
        "manifest.csv line 5": "blank row",
        "manifest.csv line 6 (img/c1.png)": "label 'psoriasis' is not one of --class-names eczema,melanoma",
        "manifest.csv line 8 (img/b2.png)": "fitzpatrick '9' is not 1..6 (leave it empty, 0 or -1 for unknown)",
        "manifest.csv line 9 (img/c2.png)": skipped["manifest.csv line 9 (img/c2.png)"],
        "manifest.csv line 12 (img/a1.png)": "no label",
        str(tmp_path / "src" / "img" / "missing.png"): "file not found: "
                                                        + str(tmp_path / "src" / "img" / "missing.png"),
    }
    assert skipped["manifest.csv line 9 (img/c2.png)"].startswith("bboxes is not valid JSON")


def test_manifest_default_class_names_and_no_skin_estimate(tmp_path):
    csv = _manifest(tmp_path / "src")
    out = tmp_path / "out"
    run_cli(["manifest", csv, "--out", out, "--no-estimate-skin-type", *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert info["class_names"] == ["eczema", "melanoma", "psoriasis"]  # sorted labels found
    assert recs["img/c1.png"]["label"] == 2
    assert recs["img/a2.jpg"]["fitzpatrick"] == 0 and recs["img/a2.jpg"]["fitzpatrick_estimated"] == 0
    assert info["fitzpatrick_estimated"] == 0


def test_manifest_roi_crop_multiplies_records(tmp_path):
    root = tmp_path / "src"
    rows = []
    for i in range(4):
        write_png(root / f"{i}.png", size=(64, 48), seed=i)
        rows.append(f'{i}.png,{"ab"[i % 2]},p{i},2,"[[{8 + i}, 10, {24 + i}, 30]]"')
    csv = write_csv(root / "m.csv", "path,label,patient_id,fitzpatrick,bboxes", rows)
    out = tmp_path / "out"
    run_cli(["manifest", csv, "--out", out, "--roi-crop", "--crops-per-image", "3", *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert len(recs) == 12
    assert sorted(recs) == sorted(f"{i}.png#crop{k}" for i in range(4) for k in range(3))
    for r in recs.values():
        assert len(r["bbox"]) >= 1 and r["image"].shape == (16, 16, 3)
        assert all(0.0 <= v <= 1.0 for v in r["bbox"][0])
    assert info["extra"]["roi_crop"] is True and info["extra"]["crops_per_image"] == 3
    assert_patient_disjoint(records)


def test_manifest_missing_column_names_it(tmp_path):
    write_png(tmp_path / "a.png")
    csv = write_csv(tmp_path / "m.csv", "file,label", ["a.png,x"])
    result = run_cli(["manifest", csv, "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "m.csv is missing columns ['path']" in result.output
    assert "path, label" in result.output


def test_manifest_missing_csv_names_it(tmp_path):
    result = run_cli(["manifest", tmp_path / "nope.csv", "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "nope.csv" in result.output and "columns path,label" in result.output
    assert not os.path.exists(tmp_path / "out")
