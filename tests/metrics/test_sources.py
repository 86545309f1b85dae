"""Image sources and the feature cache (``metrics/sources.py``) and the domain-classifier ruler
(``metrics/domain_classifier.py``)."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_medgan.data import schema
from keras_medgan.data.demo import write_demo_dataset
from keras_medgan.metrics import domain_classifier as dc
from keras_medgan.metrics import sources
from keras_medgan.metrics.features import classifier_extractor
from keras_medgan.networks.classifiers import domain_classifier

SIZE = 16


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MEDGAN_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 120-image 16 px demo-derm dataset: (folder, DatasetInfo)."""
    out = str(tmp_path_factory.mktemp("demo") / "derm")
    info = write_demo_dataset("demo-derm", out, num_images=120, image_size=SIZE, seed=0, val_fraction=0.2,
                              test_fraction=0.2)
    return out, info


def _extractor(folder, seed=0, size=SIZE, channels=3):
    keras.utils.set_random_seed(seed)
    path = os.path.join(folder, f"c{seed}-{size}-{channels}.keras")
    domain_classifier(size, channels, 4, filters=(8, 16), feature_dim=8).save(path)
    return classifier_extractor(path)


@pytest.fixture(scope="module")
def extractor(tmp_path_factory):
    return _extractor(str(tmp_path_factory.mktemp("ruler")))


def _png_folder(folder, n=5, size=20, mode="L", start=0):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        value = 40 * (i + start) % 256
        shape = (size, size) if mode == "L" else (size, size, 3)
        Image.fromarray(np.full(shape, value, np.uint8), mode).save(os.path.join(folder, f"img{i + start:02d}.png"))
    return str(folder)


# ---------------------------------------------------------------------------
# parse_source
# ---------------------------------------------------------------------------


def test_parse_source_dataset_with_and_without_split(demo):
    folder, _ = demo
    assert sources.parse_source(folder) == sources.ImageSource("dataset", os.path.abspath(folder), "val")
    assert sources.parse_source(folder, default_split="train").split == "train"
    src = sources.parse_source(f"{folder}:test")
    assert (src.kind, src.path, src.split) == ("dataset", os.path.abspath(folder), "test")
    assert src.describe() == f"{os.path.abspath(folder)}:test"


def test_parse_source_image_folder(tmp_path):
    folder = _png_folder(tmp_path / "pngs")
    src = sources.parse_source(folder)
    assert (src.kind, src.path, src.split) == ("folder", os.path.abspath(folder), None)
    assert src.describe() == os.path.abspath(folder)
    # A colon that is not a split belongs to the path.
    odd = _png_folder(tmp_path / "a:b")
    assert sources.parse_source(odd).path == os.path.abspath(odd)


def test_parse_source_missing_path_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        sources.parse_source(str(tmp_path / "missing"))
    assert "missing" in str(info.value) and "neither a keras-medgan dataset folder" in str(info.value)
    assert "Check the path" in str(info.value)


def test_parse_source_split_on_a_non_dataset_message(tmp_path):
    folder = _png_folder(tmp_path / "pngs")
    with pytest.raises(FileNotFoundError) as info:
        sources.parse_source(f"{folder}:val")
    message = str(info.value)
    assert "has no dataset.json" in message and "':split' does not apply" in message and folder in message


# ---------------------------------------------------------------------------
# Reading folders and datasets
# ---------------------------------------------------------------------------


def test_folder_reading_skips_corrupt_files_and_resizes(tmp_path):
    folder = _png_folder(tmp_path / "pngs", n=4, size=24)
    (tmp_path / "pngs" / "img01b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "pngs" / "notes.txt").write_text("not an image")
    (tmp_path / "pngs" / ".hidden.png").write_bytes(b"junk")
    skipped = []
    batches = list(sources.iterate_source(sources.parse_source(folder), SIZE, batch_size=3, skipped=skipped))
    images = np.concatenate([b["image"] for b in batches])
    assert images.shape == (4, SIZE, SIZE, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 0, 0, 0], [0, 40, 80, 120])  # constant images stay constant
    assert [os.path.basename(p) for p, _ in skipped] == ["img01b.png"]
    assert skipped[0][1].split(":")[0] in ("UnidentifiedImageError", "OSError", "SyntaxError", "ValueError")
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, -1)
    np.testing.assert_array_equal(np.concatenate([b["fitzpatrick"] for b in batches]), 0)
    assert sources.source_resolution(sources.parse_source(folder)) == 24


def test_folder_with_grey_and_colour_images_reads_as_colour(tmp_path):
    folder = _png_folder(tmp_path / "mix", n=2, mode="L")
    _png_folder(tmp_path / "mix", n=2, mode="RGB", start=2)
    (batch,) = sources.iterate_source(sources.parse_source(folder), SIZE)
    assert batch["image"].shape == (4, SIZE, SIZE, 3)
    np.testing.assert_array_equal(batch["image"][1], 40)  # the grey one, repeated to 3 channels


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        list(sources.iterate_source(sources.parse_source(str(tmp_path / "empty")), SIZE))


def test_dataset_reading_order_count_and_limit(demo):
    folder, info = demo
    src = sources.parse_source(f"{folder}:val")
    images = np.concatenate([b["image"] for b in sources.iterate_source(src, SIZE, batch_size=7)])
    assert images.shape == (info.num_examples("val"), SIZE, SIZE, 3) and images.dtype == np.uint8
    again = np.concatenate([b["image"] for b in sources.iterate_source(src, SIZE, batch_size=64)])
    np.testing.assert_array_equal(images, again)  # fixed order, whatever the batch size
    limited = np.concatenate([b["image"] for b in sources.iterate_source(src, SIZE, batch_size=4, max_images=9)])
    np.testing.assert_array_equal(limited, images[:9])
    assert sources.source_resolution(src) == SIZE


def test_array_batches_quantise_and_resize():
    floats = np.linspace(-1.0, 1.0, 2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    (batch,) = sources.array_batches(floats)
    np.testing.assert_array_equal(batch["image"], np.round((floats + 1.0) * 127.5).astype(np.uint8))
    np.testing.assert_array_equal(batch["label"], [-1, -1])
    batches = list(sources.array_batches(np.zeros((5, 8, 8, 1), np.uint8), labels=np.arange(5), resolution=4,
                                         batch_size=2))
    assert [b["image"].shape for b in batches] == [(2, 4, 4, 1), (2, 4, 4, 1), (1, 4, 4, 1)]
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), np.arange(5))


def test_thumbnails_are_32px_rgb_area_means():
    images = np.zeros((1, 64, 64, 1), np.uint8)
    images[0, :, 32:] = 200
    thumbs = sources.thumbnails(images)
    assert thumbs.shape == (1, 32, 32, 3) and thumbs.dtype == np.uint8
    np.testing.assert_array_equal(thumbs[0, :, :16], 0)
    np.testing.assert_array_equal(thumbs[0, :, 16:], 200)


def test_source_features_of_a_dataset_split(extractor, demo):
    folder, info = demo
    fs = sources.source_features(extractor, sources.parse_source(f"{folder}:test"), SIZE, batch_size=8)
    n = info.num_examples("test")
    assert len(fs) == n and fs.features.shape == (n, 8) and fs.probs.shape == (n, 4)
    assert fs.thumbnails.shape == (n, 32, 32, 3) and fs.resolution == SIZE
    assert fs.source == f"{os.path.abspath(folder)}:test"
    assert fs.labels.dtype == np.int32 and set(fs.labels.tolist()) <= set(range(len(info.class_names)))
    assert fs.fitzpatrick.min() >= 0 and fs.fitzpatrick.max() <= 6


# ---------------------------------------------------------------------------
# Feature cache
# ---------------------------------------------------------------------------


def _count_extract(monkeypatch, extractor):
    calls = []
    original = type(extractor).extract

    def counting(self, *args, **kwargs):
        calls.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(extractor), "extract", counting)
    return calls


def test_feature_cache_hit_skips_the_extractor(extractor, demo, tmp_path, monkeypatch):
    folder, _ = demo
    src = sources.parse_source(f"{folder}:val")
    calls = _count_extract(monkeypatch, extractor)
    first = sources.cached_source_features(extractor, src, SIZE)
    assert len(calls) == 1
    cache = tmp_path / "cache" / "features"  # $KERAS_MEDGAN_CACHE
    key = sources.feature_cache_key(extractor, src, SIZE, None)
    assert sorted(os.listdir(cache)) == [f"{key}.npz"]
    second = sources.cached_source_features(extractor, src, SIZE)
    assert len(calls) == 1
    for field in ("features", "probs", "labels", "fitzpatrick", "thumbnails"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
    assert (second.source, second.resolution) == (first.source, first.resolution)
    # An explicit cache_dir is used instead of the environment's.
    sources.cached_source_features(extractor, src, SIZE, cache_dir=str(tmp_path / "other"))
    assert len(calls) == 2 and os.listdir(tmp_path / "other" / "features") == [f"{key}.npz"]
    assert not [f for d in (cache, tmp_path / "other" / "features") for f in os.listdir(d) if "tmp" in f]


def test_feature_cache_key_changes_with_every_setting(extractor, demo, tmp_path):
    folder, _ = demo
    val, test = sources.parse_source(f"{folder}:val"), sources.parse_source(f"{folder}:test")
    key = sources.feature_cache_key(extractor, val, SIZE, None)
    assert key == sources.feature_cache_key(extractor, sources.parse_source(folder), SIZE, None)
    other = _extractor(str(tmp_path), seed=5)
    assert len({key, sources.feature_cache_key(extractor, val, 8, None),
                sources.feature_cache_key(other, val, SIZE, None),
                sources.feature_cache_key(extractor, test, SIZE, None),
                sources.feature_cache_key(extractor, val, SIZE, 10)}) == 5


def test_feature_cache_limited_count_and_folders_are_not_cached(extractor, demo, tmp_path):
    folder, _ = demo
    fs = sources.cached_source_features(extractor, sources.parse_source(f"{folder}:val"), SIZE, max_images=5)
    assert len(fs) == 5
    pngs = _png_folder(tmp_path / "pngs", n=3)
    fs = sources.cached_source_features(extractor, sources.parse_source(pngs), SIZE)
    assert len(fs) == 3 and fs.source == os.path.abspath(pngs)
    assert len(os.listdir(tmp_path / "cache" / "features")) == 1  # only the dataset split


# ---------------------------------------------------------------------------
# images_at / sparse_images
# ---------------------------------------------------------------------------


def test_images_at_and_sparse_images_return_the_indexed_images(demo):
    folder, _ = demo
    src = sources.parse_source(f"{folder}:train")
    everything = np.concatenate([b["image"] for b in sources.iterate_source(src, SIZE)])
    picked = sources.images_at(src, [17, 0, 5, 17], SIZE, batch_size=4)
    np.testing.assert_array_equal(picked, everything[[17, 0, 5, 17]])
    sparse = sources.sparse_images(src, [40, 3, 3], len(everything), SIZE)
    assert len(sparse) == len(everything)
    np.testing.assert_array_equal(sparse[3], everything[3])
    np.testing.assert_array_equal(sparse[np.int64(40)], everything[40])
    with pytest.raises(KeyError):
        sparse[4]


def test_images_at_in_a_folder_with_a_corrupt_file_matches_the_feature_order(tmp_path):
    folder = _png_folder(tmp_path / "pngs", n=4)  # values 0, 40, 80, 120
    (tmp_path / "pngs" / "img00b.png").write_bytes(b"broken")  # sorts between img00 and img01
    src = sources.parse_source(folder)
    read = np.concatenate([b["image"] for b in sources.iterate_source(src, SIZE)])
    assert read[:, 0, 0, 0].tolist() == [0, 40, 80, 120]
    np.testing.assert_array_equal(sources.images_at(src, [3, 1], SIZE)[:, 0, 0, 0], [120, 40])


# ---------------------------------------------------------------------------
# Domain classifier (ruler)
# ---------------------------------------------------------------------------


SETTINGS = dc.RulerSettings(epochs=1, batch_size=64, feature_dim=16, seed=3)


def test_train_then_cached_domain_classifier(demo, tmp_path, monkeypatch):
    folder, info = demo
    records, train = [], dc.train_domain_classifier
    monkeypatch.setattr(dc, "train_domain_classifier", lambda *a, **k: records.append(train(*a, **k)) or records[-1])
    path = dc.ensure_domain_classifier(folder, SETTINGS, verbose=0)
    assert len(records) == 1
    assert path.startswith(str(tmp_path / "cache" / "rulers" / schema.dataset_fingerprint(folder)))
    assert os.path.basename(path) == "classifier.keras"
    with open(path + ".json", encoding="utf-8") as f:
        record = json.load(f)
    assert record == records[0] and record["ruler_version"] == dc.RULER_VERSION
    assert record["dataset_fingerprint"] == schema.dataset_fingerprint(folder)
    assert record["data_dir"] == os.path.abspath(folder) and record["class_names"] == list(info.class_names)
    assert record["settings"] == {"image_size": SIZE, "epochs": 1, "batch_size": 64, "learning_rate": 1e-3, "seed": 3,
                                  "feature_dim": 16}
    assert 0.0 <= record["val_accuracy"] <= 1.0 and 0.0 <= record["train_accuracy"] <= 1.0
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp")]
    model = keras.saving.load_model(path, safe_mode=True)
    assert tuple(model.inputs[0].shape) == (None, SIZE, SIZE, 3) and model.get_layer("features").units == 16
    extractor = classifier_extractor(path)
    assert (extractor.input_size, extractor.channels, extractor.feature_dim, extractor.num_classes) == \
        (SIZE, 3, 16, len(info.class_names))

    def no_training(*args, **kwargs):
        raise AssertionError("the cached ruler should have been reused")

    monkeypatch.setattr(dc, "train_domain_classifier", no_training)
    assert dc.ensure_domain_classifier(folder, SETTINGS) == path
    # Other settings are another ruler: it would be trained.
    with pytest.raises(AssertionError, match="reused"):
        dc.ensure_domain_classifier(folder, dc.RulerSettings(epochs=2, batch_size=64, feature_dim=16, seed=3))


def test_domain_classifier_needs_two_classes(tmp_path, monkeypatch):
    folder = str(tmp_path / "one")
    write_demo_dataset("demo-cxr", folder, num_images=8, image_size=SIZE)
    real = schema.read_dataset_info(folder)
    monkeypatch.setattr(dc.schema, "read_dataset_info",
                        lambda d: dataclasses.replace(real, class_names=real.class_names[:1]))
    with pytest.raises(ValueError, match="at least 2"):
        dc.train_domain_classifier(folder, str(tmp_path / "r.keras"))
    assert not os.path.exists(tmp_path / "r.keras")
