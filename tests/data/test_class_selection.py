"""DataConfig.classes: keep some classes, renumber their labels, and keep exact resume positions."""

import dataclasses

import numpy as np
import pytest

from keras_medgan import config as config_lib
from keras_medgan.config import DataConfig
from keras_medgan.data import demo, pipelines, schema


@pytest.fixture(scope="module")
def cxr(tmp_path_factory):
    return demo.ensure_demo_dataset("demo-cxr", image_size=32, num_images=120,
                                    cache_dir=str(tmp_path_factory.mktemp("cache")))


def _all(cfg, split="train"):
    out = {"label": [], "source_id": [], "label_multi": []}
    for b in pipelines.make_dataset(cfg, split):
        for k in out:
            out[k].append(b[k].numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def test_selected_classes_are_kept_and_renumbered_in_the_given_order(cxr):
    info = schema.read_dataset_info(cxr)
    base = DataConfig(data_dir=cxr, image_size=32, batch_size=8, shuffle_buffer=0, repeat=False,
                      drop_remainder=False)
    everything = _all(base)
    picked = _all(dataclasses.replace(base, classes=("mass", "normal")))
    mass, normal = info.class_names.index("mass"), info.class_names.index("normal")
    expected = {s: (0 if l == mass else 1) for s, l in zip(everything["source_id"], everything["label"])
                if l in (mass, normal)}
    assert dict(zip(picked["source_id"], picked["label"])) == expected
    assert len(picked["label"]) == pipelines.selected_records(DataConfig(data_dir=cxr, classes=("mass", "normal")),
                                                             info, "train")
    assert picked["label_multi"].shape[1] == 2


def test_counted_selection_agrees_with_dataset_json(cxr):
    info = schema.read_dataset_info(cxr)
    cfg = DataConfig(data_dir=cxr, classes=("effusion", "cardiomegaly"))
    files = schema.shard_paths(cxr, "train", info)
    assert pipelines.selected_records(cfg, info, "train", files) == pipelines.selected_records(cfg, info, "train") > 0


def test_resumed_stream_with_a_class_selection_matches_the_straight_one(cxr):
    cfg = DataConfig(data_dir=cxr, image_size=32, batch_size=4, shuffle_buffer=32, classes=("normal", "mass"),
                     deterministic=True, seed=3)
    straight = pipelines.make_dataset(cfg, "train")
    batches = [b["source_id"].numpy() for _, b in zip(range(12), straight)]
    resumed = pipelines.make_dataset(cfg, "train", start_step=7)
    later = [b["source_id"].numpy() for _, b in zip(range(5), resumed)]
    for a, b in zip(batches[7:], later):
        np.testing.assert_array_equal(a, b)


def test_unknown_class_names_are_named_with_the_known_ones(cxr):
    with pytest.raises(ValueError, match=r"names \['pneumonia'\], which the dataset does not have"):
        next(iter(pipelines.make_dataset(DataConfig(data_dir=cxr, image_size=32, classes=("pneumonia",)), "train")))


def test_classes_must_be_distinct_names_and_parse_from_the_command_line():
    with pytest.raises(ValueError, match="DataConfig.classes must be distinct class names"):
        DataConfig(classes=("a", "a"))
    cfg = config_lib.replace(DataConfig(), {"classes": "mass, normal"})  # what --set data.classes=... gives
    assert cfg.classes == ("mass", "normal")
