import os

from tests.data_prep.conftest import (FAST, assert_patient_disjoint, by_source, read_dataset, run_cli,
                                      skipped_reasons, write_jpeg, write_png, write_truncated_jpeg)


def _flat_tree(root):
    """benign/ (5 good + 1 truncated JPEG), malignant/ (4 PNGs + a text file)."""
    for i in range(5):
        write_jpeg(root / "benign" / f"b{i}.jpg", seed=i)
    write_truncated_jpeg(root / "benign" / "broken.jpg")
    for i in range(4):
        write_png(root / "malignant" / "nested" / f"m{i}.png", size=(24, 18), seed=10 + i)
    (root / "malignant" / "notes.txt").write_text("not an image")
    return root


def test_folder_flat_layout_grey(tmp_path):
    root = _flat_tree(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["folder", root, "--out", out, "--channels", "1", *FAST])
    info, records = read_dataset(out)

    assert info["source"] == "folder"
    assert info["class_names"] == ["benign", "malignant"]
    assert info["split_unit"] == "image"
    assert info["channels"] == 1
    recs = by_source(records)
    assert sorted(recs) == sorted([f"benign/b{i}.jpg" for i in range(5)]
                                  + [os.path.join("malignant", "nested", f"m{i}.png") for i in range(4)])
    for sid, r in recs.items():
        assert r["label"] == (0 if sid.startswith("benign") else 1)
        assert r["patient_id"] == sid
        assert r["image"].shape == (16, 16, 1) and r["channels"] == 1
        assert r["bbox"] == [] and r["fitzpatrick"] == 0
    assert sum(len(v) for v in records.values()) == 9
    assert_patient_disjoint(records)

    skipped = skipped_reasons(info)
    broken = str(root / "benign" / "broken.jpg")
    assert set(skipped) == {broken, str(root / "malignant" / "notes.txt")}
    assert "unreadable image" in skipped[broken]
    assert "not an image" in skipped[str(root / "malignant" / "notes.txt")]
    assert "broken.jpg" in result.output


def test_folder_corrupt_image_fails_with_max_bad_zero(tmp_path):
    root = _flat_tree(tmp_path / "src")
    out = tmp_path / "out"
    result = run_cli(["folder", root, "--out", out, "--max-bad", "0", *FAST], ok=False)
    assert result.exit_code != 0
    assert "broken.jpg" in result.output and "--max-bad" in result.output
    assert not os.path.exists(out / "dataset.json")
    assert not [n for n in os.listdir(out) if n.endswith(".tfrecord")]


def test_folder_official_splits_kept_and_val_carved(tmp_path):
    root = tmp_path / "src"
    for split, n in (("train", 10), ("test", 3)):
        for cls in ("zebra", "apple"):
            for i in range(n):
                write_png(root / split / cls / f"{split}_{i}.png", seed=i)
    out = tmp_path / "out"
    result = run_cli(["folder", root, "--out", out, "--val-fraction", "0.2", *FAST])
    info, records = read_dataset(out)

    assert info["class_names"] == ["apple", "zebra"]
    assert info["extra"]["official_splits"] is True
    assert sorted(r["source_id"] for r in records["test"]) == sorted(
        os.path.join("test", c, f"test_{i}.png") for c in ("zebra", "apple") for i in range(3))
    assert all(r["source_id"].startswith("train") for r in records["train"] + records["val"])
    assert len(records["val"]) == 4 and len(records["train"]) == 16
    assert info["counts"]["test"] == {"apple": 3, "zebra": 3}
    assert "carved from train/" in result.output
    assert all(r["image"].shape == (16, 16, 3) for r in records["train"])


def test_folder_missing_root_names_it(tmp_path):
    result = run_cli(["folder", tmp_path / "nope", "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "nope" in result.output and "sub-folders are the classes" in result.output


def test_folder_without_class_folders(tmp_path):
    write_png(tmp_path / "src" / "loose.png")
    result = run_cli(["folder", tmp_path / "src", "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "no class folders" in result.output and "<class>/image.png" in result.output
