import numpy as np

from tests.data_prep.conftest import FAST, all_records, by_source, read_dataset, run_cli


def _grey_npz(path):
    """A PathMNIST-like file: 12x12 grey images whose pixel value encodes split and index; labels [N, 1]."""
    arrays = {}
    for s, (n, offset) in {"train": (6, 0), "val": (2, 100), "test": (3, 200)}.items():
        arrays[f"{s}_images"] = np.stack([np.full((12, 12), offset + 10 * i, dtype=np.uint8) for i in range(n)])
        arrays[f"{s}_labels"] = (np.arange(n) % 3)[:, None].astype(np.uint8)
    np.savez(path, **arrays)
    return str(path)


def test_medmnist_single_label_official_splits(tmp_path):
    npz = _grey_npz(tmp_path / "pathmnist.npz")
    out = tmp_path / "out"
    run_cli(["medmnist", npz, "--out", out, "--image-size", "12", "--workers", "1", "--shards", "1"])
    info, records = read_dataset(out)
    recs = by_source(records)

    assert info["class_names"] == ["0", "1", "2"] and info["channels"] == 1 and info["split_unit"] == "image"
    assert {s: len(records[s]) for s in records} == {"train": 6, "val": 2, "test": 3}
    assert recs["train-4"]["split"] == "train" and recs["train-4"]["patient_id"] == "train-4"
    assert recs["train-4"]["label"] == 1 and recs["test-2"]["label"] == 2 and recs["val-0"]["label"] == 0
    assert recs["train-4"]["label_multi"] == []
    # Pixels are stored losslessly (PNG) at the original size.
    assert recs["val-1"]["image"].shape == (12, 12, 1) and (recs["val-1"]["image"] == 110).all()
    assert info["skipped"] == []


def test_medmnist_class_names(tmp_path):
    npz = _grey_npz(tmp_path / "pathmnist.npz")
    out = tmp_path / "out"
    run_cli(["medmnist", npz, "--out", out, "--class-names", "adipose,background,debris", *FAST])
    info, records = read_dataset(out)
    assert info["class_names"] == ["adipose", "background", "debris"]
    assert info["counts"]["train"] == {"adipose": 2, "background": 2, "debris": 2}
    result = run_cli(["medmnist", npz, "--out", out, "--class-names", "a,b", *FAST], ok=False)
    assert result.exit_code != 0 and "2 names given but pathmnist.npz has 3 classes" in result.output


def test_medmnist_rgb_multi_label(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=np.uint8)
    arrays = {}
    for s in ("train", "val", "test"):
        arrays[f"{s}_images"] = rng.integers(0, 256, size=(4, 10, 10, 3), dtype=np.uint8)
        arrays[f"{s}_labels"] = labels
    npz = tmp_path / "chestmnist.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "out"
    run_cli(["medmnist", npz, "--out", out, *FAST])
    info, records = read_dataset(out)
    recs = by_source(records)
    assert info["multi_label"] is True and info["class_names"] == ["0", "1", "2", "3"] and info["channels"] == 3
    assert [recs[f"val-{i}"]["label_multi"] for i in range(4)] == [[0], [1, 2], [], [3]]
    assert [recs[f"val-{i}"]["label"] for i in range(4)] == [0, -1, -1, 3]
    assert len(all_records(records)) == 12
    assert all(r["fitzpatrick"] == 0 for r in recs.values())  # no skin-type estimate for MedMNIST


def test_medmnist_missing_array_names_it(tmp_path):
    npz = tmp_path / "broken.npz"
    np.savez(npz, train_images=np.zeros((2, 12, 12), np.uint8), train_labels=np.zeros((2, 1), np.uint8),
             val_images=np.zeros((1, 12, 12), np.uint8))
    result = run_cli(["medmnist", npz, "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0
    assert "broken.npz is missing arrays ['val_labels']" in result.output


def test_medmnist_not_an_npz(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_text("hello")
    result = run_cli(["medmnist", bad, "--out", tmp_path / "out"], ok=False)
    assert result.exit_code != 0 and "x.npz is not a readable .npz file" in result.output
