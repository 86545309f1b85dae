import json
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.data import schema
from keras_medgan.data.writer import encode_image


def _example(**kw):
    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    args = dict(label=2, label_multi=[0, 2], fitzpatrick=5, fitzpatrick_estimated=True,
                bbox=[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], bbox_label=[2, 1], patient_id="pat-1",
                source_id="a/b.png")
    args.update(kw)
    return img, schema.encode_example(encode_image(img), "png", 4, 5, 3, **args)


def test_encode_parse_round_trip_every_key():
    img, blob = _example()
    ex = schema.parse_example(tf.constant(blob))
    assert set(ex) == set(schema.FEATURE_KEYS)
    assert ex["image/format"].numpy() == b"png"
    assert (ex["image/height"].numpy(), ex["image/width"].numpy(), ex["image/channels"].numpy()) == (4, 5, 3)
    np.testing.assert_array_equal(tf.io.decode_png(ex["image/encoded"]).numpy(), img)
    assert ex["label"].numpy() == 2
    assert ex["label/multi"].numpy().tolist() == [0, 2]
    assert ex["fitzpatrick"].numpy() == 5 and ex["fitzpatrick/estimated"].numpy() == 1
    np.testing.assert_allclose(ex["bbox"].numpy(), [[0.1, 0.2, 0.5, 0.6], [0, 0, 1, 1]], rtol=1e-6)
    assert ex["bbox/label"].numpy().tolist() == [2, 1]
    assert ex["patient_id"].numpy() == b"pat-1" and ex["source_id"].numpy() == b"a/b.png"


def test_parse_defaults_for_unlabeled_example_without_boxes():
    _, blob = _example(label=-1, label_multi=[], fitzpatrick=0, fitzpatrick_estimated=False, bbox=[], bbox_label=[])
    ex = schema.parse_example(tf.constant(blob))
    assert ex["label"].numpy() == -1 and ex["fitzpatrick"].numpy() == 0
    assert ex["bbox"].shape == (0, 4) and ex["bbox/label"].shape == (0,) and ex["label/multi"].shape == (0,)


def test_parse_works_inside_dataset_map():
    _, blob = _example()
    ds = tf.data.Dataset.from_tensor_slices([blob, blob]).map(schema.parse_example)
    assert [int(e["label"]) for e in ds] == [2, 2]


@pytest.mark.parametrize("kw, message", [
    (dict(bbox=[[0.5, 0.2, 0.1, 0.6]], bbox_label=[0]), "min <= max"),
    (dict(bbox=[[0.1, 0.2, 0.5]], bbox_label=[0]), "ymin, xmin, ymax, xmax"),
    (dict(bbox_label=[1]), "one class index per box"),
    (dict(fitzpatrick=7), "`fitzpatrick` must be in 0..6"),
])
def test_encode_rejects_bad_annotations(kw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        _example(**kw)


def test_encode_rejects_unknown_format():
    with pytest.raises(ValueError, match="image_format"):
        schema.encode_example(b"", "gif", 1, 1, 3)


def _info(**kw):
    base = dict(source="t", command="c", image_size=[8, 8], channels=3, class_names=["a", "b"])
    base.update(kw)
    return schema.DatasetInfo(**base)


def test_dataset_json_round_trip(tmp_path):
    info = _info(counts={"train": {"a": 3}}, shards={"train": 1}, skipped=[{"input": "x.jpg", "reason": "bad"}])
    path = schema.write_dataset_info(tmp_path, info)
    assert os.path.basename(path) == "dataset.json"
    back = schema.read_dataset_info(tmp_path)
    assert back == info and back.num_examples("train") == 3 and back.num_classes == 2
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("schema_version"), "has no `schema_version`"),
    (lambda d: d.update(schema_version=2), "schema_version=2.*reads schema version 1"),
    (lambda d: d.update(channels=4), "`channels` must be 1 or 3"),
    (lambda d: d.update(class_names=["a", "a"]), "must not repeat"),
    (lambda d: d.update(bogus=1), r"unknown keys \['bogus'\]"),
    (lambda d: d.pop("class_names"), r"missing required keys \['class_names'\]"),
])
def test_read_dataset_info_rejects_bad_files(tmp_path, edit, message):
    data = _info().to_dict()
    edit(data)
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    with pytest.raises(schema.SchemaError, match=message):
        schema.read_dataset_info(tmp_path)


def test_read_dataset_info_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="medgan-data"):
        schema.read_dataset_info(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(schema.SchemaError, match="not valid JSON"):
        schema.read_dataset_info(tmp_path)


def test_shard_paths_checks_empty_split_and_missing_files(tiny_dataset):
    folder, info, _ = tiny_dataset
    paths = schema.shard_paths(folder, "train")
    assert [os.path.basename(p) for p in paths] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    os.remove(paths[1])
    with pytest.raises(FileNotFoundError, match="missing"):
        schema.shard_paths(folder, "train")
    with pytest.raises(ValueError, match="must be one of"):
        schema.shard_paths(folder, "holdout")
