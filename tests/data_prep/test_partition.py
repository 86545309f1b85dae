"""`medgan-data partition`: whole patients per client, class mixes per --skew, byte-identical records."""

import json
import os
from collections import Counter

import pytest
import tensorflow as tf
from click.testing import CliRunner

from data_prep.cli import cli
from keras_medgan.data import demo, schema


def _read(data_dir):
    """``[(split, patient_id, label, serialized)]`` of every record of a dataset."""
    info = schema.read_dataset_info(data_dir)
    rows = []
    for split in schema.SPLITS:
        if info.num_examples(split):
            for path in schema.shard_paths(data_dir, split, info):
                for raw in tf.data.TFRecordDataset(path):
                    ex = schema.parse_example(raw)
                    rows.append((split, ex["patient_id"].numpy().decode(), int(ex["label"]), raw.numpy()))
    return rows


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "demo"
    demo.write_demo_dataset("demo-derm", str(out), num_images=240, image_size=16, shards=2)
    return str(out)


def _partition(source, out, *extra):
    result = CliRunner().invoke(cli, ["partition", source, "--out", str(out), "--clients", "3",
                                      "--sizes", "30,70,110", *extra])
    assert result.exit_code == 0, result.output
    return result


def test_partition_is_patient_disjoint_and_byte_identical(source, tmp_path):
    _partition(source, tmp_path / "fed")
    src = {raw: pid for _, pid, _, raw in _read(source)}
    owner = {}
    sizes = []
    for i in range(3):
        rows = _read(str(tmp_path / "fed" / f"client-{i}"))
        sizes.append(len(rows))
        for split, pid, _, raw in rows:
            assert raw in src and src[raw] == pid  # copied byte for byte
            assert owner.setdefault(pid, i) == i, f"patient {pid} in clients {owner[pid]} and {i}"
        by_split = {}
        for split, pid, _, _ in rows:  # a patient is in one split of its client
            assert by_split.setdefault(pid, split) == split
        info = schema.read_dataset_info(str(tmp_path / "fed" / f"client-{i}"))
        assert info.split_unit == "patient" and info.num_examples("train") > 0 and info.num_examples("val") > 0
    # Sizes reached, overshooting by less than one patient (demo-derm: at most 4 images per patient).
    assert all(0 <= s - r < 4 for s, r in zip(sizes, (30, 70, 110))), sizes
    pooled = _read(str(tmp_path / "fed" / "pooled"))
    assert len(pooled) == sum(sizes)
    plan = json.loads((tmp_path / "fed" / "partition.json").read_text())
    assert [c["num_images"] for c in plan["clients"]] == sizes and plan["skew"] == "none"


def test_label_skew_changes_class_mix(source, tmp_path):
    _partition(source, tmp_path / "none", "--skew", "none", "--no-pooled")
    _partition(source, tmp_path / "label", "--skew", "label", "--no-pooled")
    assert not os.path.exists(tmp_path / "none" / "pooled")

    def mixes(root):
        out = []
        for i in range(3):
            c = Counter(label for _, _, label, _ in _read(str(root / f"client-{i}")))
            n = sum(c.values())
            out.append({k: v / n for k, v in c.items()})
        return out

    def spread(ms):  # largest difference of one class's share between two clients
        labels = set().union(*ms)
        return max(max(m.get(k, 0) for m in ms) - min(m.get(k, 0) for m in ms) for k in labels)

    assert spread(mixes(tmp_path / "label")) > spread(mixes(tmp_path / "none"))


def test_partition_rejects_bad_sizes(source, tmp_path):
    result = CliRunner().invoke(cli, ["partition", source, "--out", str(tmp_path / "x"), "--clients", "3",
                                      "--sizes", "10,20"])
    assert result.exit_code != 0 and "one size per client" in result.output
    result = CliRunner().invoke(cli, ["partition", source, "--out", str(tmp_path / "x"), "--clients", "2",
                                      "--sizes", "200,200"])
    assert result.exit_code != 0 and "sum to 400" in result.output
