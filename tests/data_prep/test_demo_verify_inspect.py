"""`medgan-data demo-derm / demo-cxr`, `verify` and `inspect` through the CLI."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from data_prep.cli import cli
from keras_medgan.data.writer import ImageRecord, ShardedWriter
from tests.conftest import TINY_CLASSES, write_tiny_dataset


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def demo_derm(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "derm"
    result = _invoke("demo-derm", "--out", out, "--num-images", 2000, "--image-size", 64)
    assert result.exit_code == 0, result.output
    return out


def test_demo_derm_2000_at_64_then_verify_exits_0(demo_derm):
    info = json.load(open(demo_derm / "dataset.json"))
    assert info["source"] == "demo-derm" and info["image_size"] == [64, 64] and len(info["class_names"]) == 8
    assert sum(sum(c.values()) for c in info["counts"].values()) == 2000
    result = _invoke("verify", demo_derm)
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "2000 records decoded" in result.output


def test_inspect_prints_counts_and_writes_the_contact_sheet(demo_derm, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = _invoke("inspect", demo_derm, "--sheet", sheet, "--count", 16)
    assert result.exit_code == 0, result.output
    assert "melanoma" in result.output and "type VI" in result.output and "total" in result.output
    img = Image.open(sheet)
    assert img.size == (8 * 128, 2 * 128)
    assert np.asarray(img).std() > 10  # real pictures, not a blank canvas


def test_demo_cxr_is_grey_with_several_images_per_patient(tmp_path):
    out = tmp_path / "cxr"
    assert _invoke("demo-cxr", "--out", out, "--num-images", 60, "--image-size", 32).exit_code == 0
    info = json.load(open(out / "dataset.json"))
    assert info["channels"] == 1 and info["class_names"][0] == "normal"
    assert _invoke("verify", out).exit_code == 0


def test_verify_rejects_a_truncated_shard(tmp_path):
    folder = tmp_path / "d"
    write_tiny_dataset(str(folder))
    shard = folder / "train-00000-of-00002.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-50])
    result = _invoke("verify", folder)
    assert result.exit_code == 1
    assert "truncated or corrupt" in result.output


def test_verify_rejects_patient_overlap_unless_allowed(tmp_path):
    folder = str(tmp_path / "leak")
    rec = ImageRecord(image=np.zeros((8, 8, 3), np.uint8), label=0, patient_id="p1", source_id="a")
    with ShardedWriter(folder, num_shards=1) as w:
        w.add("train", rec, TINY_CLASSES)
        w.add("test", rec, TINY_CLASSES)
        w.finish(source="t", command="c", image_size=[8, 8], channels=3, class_names=list(TINY_CLASSES))
    result = _invoke("verify", folder)
    assert result.exit_code == 1 and "'p1' in ['test', 'train']" in result.output
    result = _invoke("verify", folder, "--allow-patient-overlap")
    assert result.exit_code == 0 and "warning:" in result.output


def test_verify_rejects_counts_that_disagree_and_leftover_temporary_files(tmp_path):
    folder = tmp_path / "d"
    write_tiny_dataset(str(folder))
    info = json.load(open(folder / "dataset.json"))
    info["counts"]["train"]["benign"] += 1
    (folder / "dataset.json").write_text(json.dumps(info))
    (folder / ".tmp-train-00000-of-00002.tfrecord").write_bytes(b"")
    result = _invoke("verify", folder)
    assert result.exit_code == 1
    assert "differ from dataset.json" in result.output and "temporary file" in result.output


def test_verify_of_a_folder_without_dataset_json_names_the_fix(tmp_path):
    result = _invoke("verify", tmp_path)
    assert result.exit_code == 1 and "dataset.json not found" in result.output and "medgan-data" in result.output
