"""The procedural demo datasets: determinism, shapes, boxes, skin types, patients, files, learnability."""

import json
import os
from collections import Counter, defaultdict

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.data import demo, schema, skin_tone
from keras_medgan.data.writer import ImageRecord

GENERATORS = {
    "demo-derm": (demo.generate_demo_derm, demo.DEMO_DERM_CLASSES, 3),
    "demo-cxr": (demo.generate_demo_cxr, demo.DEMO_CXR_CLASSES, 1),
}
BALANCED = {"demo-derm": [1.0] * 8, "demo-cxr": [1.0] * 5}


@pytest.fixture(scope="module")
def derm_2000():
    return list(demo.generate_demo_derm(2000, image_size=64, seed=0))


@pytest.fixture(scope="module")
def cxr_400():
    return list(demo.generate_demo_cxr(400, image_size=64, seed=0))


def _same(a: ImageRecord, b: ImageRecord) -> bool:
    return (np.array_equal(a.image, b.image) and a.label == b.label and a.bboxes == b.bboxes
            and a.fitzpatrick == b.fitzpatrick and a.patient_id == b.patient_id and a.source_id == b.source_id)


def _read_split(folder, split, info):
    out = []
    for path in schema.shard_paths(folder, split, info):
        for blob in tf.data.TFRecordDataset(path):
            out.append({k: v.numpy() for k, v in schema.parse_example(blob).items()})
    return out


# ---------------------------------------------------------------------------
# Determinism, shapes, arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_same_seed_same_records_and_image_i_independent_of_count(kind):
    generate = GENERATORS[kind][0]
    first = list(generate(12, image_size=32, seed=5))
    again = list(generate(12, image_size=32, seed=5))
    fewer = list(generate(5, image_size=32, seed=5))
    other = list(generate(12, image_size=32, seed=6))
    assert all(_same(a, b) for a, b in zip(first, again))
    assert all(_same(a, b) for a, b in zip(first, fewer))
    assert not any(np.array_equal(a.image, b.image) for a, b in zip(first, other))


@pytest.mark.parametrize("kind", sorted(GENERATORS))
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_dtypes_and_ids(kind, size):
    generate, classes, channels = GENERATORS[kind]
    records = list(generate(10, image_size=size, seed=0))
    prefix = kind.split("-")[1]
    for i, r in enumerate(records):
        assert r.image.shape == (size, size, channels) and r.image.dtype == np.uint8
        assert 0 <= r.label < len(classes)
        assert r.source_id == f"{kind}-{i:06d}"
        assert r.patient_id.startswith(f"{prefix}-p") and len(r.patient_id) == len(prefix) + 7
        assert r.fitzpatrick_estimated is False
        assert r.bbox_labels == [r.label] * len(r.bboxes)
        for ymin, xmin, ymax, xmax in r.bboxes:
            assert 0.0 <= ymin < ymax <= 1.0 and 0.0 <= xmin < xmax <= 1.0
        assert r.image.std() > 5  # a picture, not a flat fill


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_256_px_image_has_soft_anti_aliased_edges(kind):
    generate, _, channels = GENERATORS[kind]
    record = next(iter(generate(1, image_size=256, seed=0)))
    image = record.image.astype(np.float64)
    assert image.shape == (256, 256, channels)
    # Drawn at full resolution: many distinct levels and no 2x2-constant blocks of an upsampled small image.
    assert len(np.unique(record.image)) > 60
    blocks = image[0::2, 0::2] == image[1::2, 1::2]
    assert blocks.mean() < 0.5


def test_argument_validation_messages():
    with pytest.raises(ValueError, match=r"`image_size` must be an integer >= 16. Received: image_size=8"):
        demo.generate_demo_derm(4, image_size=8)
    with pytest.raises(ValueError, match=r"`num_images` must be an integer >= 1. Received: num_images=0"):
        demo.generate_demo_cxr(0)
    with pytest.raises(ValueError, match=r"`seed` must be an integer >= 0. Received: seed=-1"):
        demo.generate_demo_derm(4, seed=-1)
    with pytest.raises(ValueError, match="`class_weights` needs one weight per class"):
        demo.generate_demo_cxr(4, class_weights=[1, 2])
    with pytest.raises(ValueError, match=r"`class_weights` names unknown classes \['acne'\]"):
        demo.generate_demo_derm(4, class_weights={"acne": 1.0})
    with pytest.raises(ValueError, match="must be finite, >= 0 and not all 0"):
        demo.generate_demo_derm(4, class_weights=[0.0] * 8)
    with pytest.raises(ValueError, match="`kind` must be one of"):
        demo.write_demo_dataset("demo-mri", "unused")


def test_class_weights_mapping_selects_classes():
    records = list(demo.generate_demo_derm(20, image_size=32, class_weights={"vascular_lesion": 1.0}))
    assert {r.label for r in records} == {demo.DEMO_DERM_CLASSES.index("vascular_lesion")}


def test_tight_box_rule_on_a_known_coverage():
    alpha = np.zeros((10, 20))
    alpha[3:7, 4:15] = 1.0
    alpha[2, 9] = 0.04  # below the 0.05 support threshold
    alpha[7, 9] = 0.06
    assert demo._tight_box(alpha) == [0.3, 0.2, 0.8, 0.75]
    assert demo._tight_box(np.zeros((4, 4))) is None


# ---------------------------------------------------------------------------
# demo-derm content
# ---------------------------------------------------------------------------


def test_derm_lesion_counts_classes_and_long_tail(derm_2000):
    assert all(1 <= len(r.bboxes) <= 3 for r in derm_2000)
    assert any(len(r.bboxes) == 3 for r in derm_2000)
    counts = Counter(r.label for r in derm_2000)
    assert set(counts) == set(range(len(demo.DEMO_DERM_CLASSES)))
    assert max(counts.values()) >= 5 * min(counts.values())
    assert counts.most_common(1)[0][0] == demo.DEMO_DERM_CLASSES.index("nevus")


def test_derm_skin_types_have_their_ita_band(derm_2000):
    # Chardon bands of skin_tone.ITA_FITZPATRICK_THRESHOLDS: type k lies in (lower[k], upper[k]].
    lower = {1: 55.0, 2: 41.0, 3: 28.0, 4: 10.0, 5: -30.0, 6: -90.0}
    upper = {1: 90.0, 2: 55.0, 3: 41.0, 4: 28.0, 5: 10.0, 6: -30.0}
    itas, recovered = defaultdict(list), 0
    for r in derm_2000:
        fitzpatrick, ita = skin_tone.estimate_fitzpatrick(
            r.image, exclude_mask=skin_tone.boxes_to_mask(r.image.shape[:2], r.bboxes))
        itas[r.fitzpatrick].append(ita)
        recovered += fitzpatrick == r.fitzpatrick
    assert sorted(itas) == [1, 2, 3, 4, 5, 6]
    for fitzpatrick, values in itas.items():
        assert lower[fitzpatrick] < np.median(values) <= upper[fitzpatrick]
    assert min(itas[1]) > 50.0 and max(itas[6]) < -25.0
    assert recovered / len(derm_2000) >= 0.9


def test_derm_boxes_hold_the_lesion_and_are_tight():
    def grow(box, px, size):
        return [box[0] - px / size, box[1] - px / size, box[2] + px / size, box[3] + px / size]

    def smooth(d):
        p = np.pad(d, 1, mode="edge")
        return sum(p[i : i + d.shape[0], j : j + d.shape[1]] for i in range(3) for j in range(3)) / 9.0

    sides_ok = []
    for r in demo.generate_demo_derm(48, image_size=128, seed=3, class_weights=BALANCED["demo-derm"]):
        image, size = r.image.astype(np.float64), r.image.shape[0]
        near_lesions = skin_tone.boxes_to_mask((size, size), [grow(b, 3, size) for b in r.bboxes])
        skin = np.median(image[~near_lesions], axis=0)
        for box in r.bboxes:
            ring = (skin_tone.boxes_to_mask((size, size), [grow(box, 8, size)]) & ~near_lesions)
            ring_colour = np.median(image[ring], axis=0)
            assert np.abs(ring_colour - skin).sum() / skin.sum() < 0.15  # well outside the box: skin
            distance = smooth(np.abs(image - ring_colour).sum(axis=-1))
            y0, x0, y1, x1 = (int(round(v * size)) for v in box)
            assert distance[y0:y1, x0:x1].max() > np.percentile(distance[ring], 95) + 20  # a lesion inside
            level = np.median(distance[ring]) + 8
            for strip in (distance[y0 : y0 + 2, x0:x1], distance[y1 - 2 : y1, x0:x1],
                          distance[y0:y1, x0 : x0 + 2], distance[y0:y1, x1 - 2 : x1]):
                sides_ok.append(strip.max() > level)
    # Each side of a tight box touches the lesion (a box 2 px too large passes on only ~75% of sides).
    assert np.mean(sides_ok) >= 0.9


# ---------------------------------------------------------------------------
# demo-cxr content
# ---------------------------------------------------------------------------


def test_cxr_boxes_by_class_and_anatomy(cxr_400):
    names = demo.DEMO_CXR_CLASSES
    assert {r.label for r in cxr_400} == set(range(len(names)))
    normals = []
    for r in cxr_400:
        name = names[r.label]
        assert r.fitzpatrick == 0
        assert len(r.bboxes) == (0 if name == "normal" else 1)
        if name == "normal":
            normals.append(r.image[..., 0].astype(np.float64))
            continue
        ymin, xmin, ymax, xmax = r.bboxes[0]
        if name == "mass":
            assert max(ymax - ymin, xmax - xmin) < 0.25
        if name == "effusion":
            assert ymax > 0.6  # at a lung base
        if name == "cardiomegaly":  # a heart wider than a third of the image, left of the patient's midline
            assert xmax - xmin > 0.35 and xmin < 0.5 < (xmin + xmax) / 2 and ymax > 0.6
    mean = np.mean(normals, axis=0)
    lungs = np.concatenate([mean[20:36, 12:22].ravel(), mean[20:36, 42:52].ravel()]).mean()
    mediastinum = mean[20:36, 30:34].mean()
    below_diaphragm = mean[56:62, 16:48].mean()
    assert lungs + 30 < mediastinum and lungs + 30 < below_diaphragm  # dark lung fields


# ---------------------------------------------------------------------------
# Patients
# ---------------------------------------------------------------------------


def test_several_images_per_patient(derm_2000, cxr_400):
    derm_per_patient = Counter(r.patient_id for r in derm_2000)
    assert set(derm_per_patient.values()) <= {1, 2, 3, 4} and max(derm_per_patient.values()) == 4
    types = defaultdict(set)
    for r in derm_2000:
        types[r.patient_id].add(r.fitzpatrick)
    assert all(len(t) == 1 for t in types.values())
    cxr_per_patient = Counter(r.patient_id for r in cxr_400)
    assert set(list(cxr_per_patient.values())[:-1]) <= {2, 3, 4, 5}  # the last patient may be cut short
    assert np.mean(list(cxr_per_patient.values())) > 2.5


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_write_demo_dataset_patient_disjoint_splits_and_counts(tmp_path, kind):
    generate, classes, channels = GENERATORS[kind]
    calls = []
    out = tmp_path / kind
    info = demo.write_demo_dataset(kind, out, num_images=150, image_size=32, seed=1, val_fraction=0.2,
                                   test_fraction=0.2, shards=2, progress=calls.append)
    assert sum(calls) == 150
    assert info == schema.read_dataset_info(out)
    assert info.source == kind and info.channels == channels and info.image_size == [32, 32]
    assert info.class_names == list(classes) and info.split_unit == "patient" and info.seed == 1
    assert info.extra["generator_version"] == demo.DEMO_GENERATOR_VERSION and info.extra["num_images"] == 150
    with open(out / "dataset.json", encoding="utf-8") as f:
        assert json.load(f)["counts"] == info.counts

    expected = {r.source_id: r for r in generate(150, image_size=32, seed=1)}
    patients = {}
    for split in schema.SPLITS:
        rows = _read_split(out, split, info)
        assert len(rows) == info.num_examples(split) > 0
        counts = Counter(classes[int(row[schema.LABEL])] for row in rows)
        assert counts == Counter(info.counts[split])
        patients[split] = {row[schema.PATIENT_ID] for row in rows}
        for row in rows[:5]:
            record = expected[row[schema.SOURCE_ID].decode()]
            image = tf.io.decode_png(row[schema.IMAGE_ENCODED], channels=channels).numpy()
            np.testing.assert_array_equal(image, record.image)
            np.testing.assert_allclose(row[schema.BBOX], np.reshape(record.bboxes, (-1, 4)), atol=1e-6)
    assert sum(info.num_examples(s) for s in schema.SPLITS) == 150
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])


def test_rewriting_gives_byte_identical_shards(tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder in folders:
        demo.write_demo_dataset("demo-derm", folder, num_images=60, image_size=32, seed=2, shards=2)
    names = sorted(n for n in os.listdir(folders[0]) if n.endswith(".tfrecord"))
    assert names == sorted(n for n in os.listdir(folders[1]) if n.endswith(".tfrecord")) and len(names) == 6
    for name in names:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes()


def test_ensure_demo_dataset_caches_and_rebuilds(tmp_path, monkeypatch):
    folder = demo.ensure_demo_dataset("demo-cxr", image_size=32, num_images=40, seed=0, cache_dir=tmp_path)
    assert folder.startswith(str(tmp_path)) and os.path.basename(folder) == "demo-cxr-32px-40img-seed0"
    info_path = os.path.join(folder, schema.DATASET_JSON)
    stamp = os.stat(info_path).st_mtime_ns
    assert demo.ensure_demo_dataset("demo-cxr", image_size=32, num_images=40, cache_dir=tmp_path) == folder
    assert os.stat(info_path).st_mtime_ns == stamp  # reused, not rebuilt

    with open(info_path, "w", encoding="utf-8") as f:
        f.write("{ not json")
    assert demo.ensure_demo_dataset("demo-cxr", image_size=32, num_images=40, cache_dir=tmp_path) == folder
    assert schema.read_dataset_info(folder).num_examples("train") > 0
    assert not [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".tmp-")]

    monkeypatch.setenv("KERAS_MEDGAN_CACHE", str(tmp_path / "env-cache"))
    from_env = demo.ensure_demo_dataset("demo-derm", image_size=32, num_images=20)
    assert from_env.startswith(str(tmp_path / "env-cache"))
    assert schema.read_dataset_info(from_env).source == "demo-derm"


# ---------------------------------------------------------------------------
# Learnability
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_a_tiny_cnn_learns_the_classes(kind):
    generate, classes, channels = GENERATORS[kind]
    records = list(generate(2000, image_size=32, seed=0, class_weights=BALANCED[kind]))
    x = np.stack([r.image for r in records]).astype("float32") / 127.5 - 1.0
    y = np.array([r.label for r in records])
    train_patients = {r.patient_id for r in records[:1600]}
    held_out = np.array([i for i, r in enumerate(records[1600:], 1600) if r.patient_id not in train_patients])

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, channels)),
        keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(classes)),
    ])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x[:1600], y[:1600], epochs=8, batch_size=32, verbose=0)
    accuracy = model.evaluate(x[held_out], y[held_out], verbose=0)[1]
    majority = np.bincount(y[held_out]).max() / len(held_out)
    assert accuracy > 2.0 / len(classes) and accuracy > majority + 0.15
