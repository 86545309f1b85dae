"""The project / sefa / ppl command lines on a tiny untrained StyleGAN2-ADA and a tiny demo dataset."""

import json
import os
import types

import keras
import numpy as np
import pytest
from PIL import Image

from keras_medgan.config import DataConfig
from keras_medgan.data import schema
from keras_medgan.data.demo import ensure_demo_dataset
from keras_medgan.gans.stylegan2_ada import StyleGAN2ADA
from keras_medgan.networks.stylegan2 import stylegan2_discriminator, stylegan2_generator
from keras_medgan.recipes import stylegan2_tools as cli
from keras_medgan.recipes.common import RecipeError


@pytest.fixture(scope="module")
def run(recipe_env):
    data_dir = ensure_demo_dataset("demo-derm", image_size=16, num_images=120)
    info = schema.read_dataset_info(data_dir)
    classes = tuple(info.class_names[:2])
    keras.utils.set_random_seed(0)
    g = stylegan2_generator(16, 3, num_classes=2, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256,
                            channel_max=32)
    d = stylegan2_discriminator(16, 3, num_classes=2, channel_base=256, channel_max=32, mapping_layers=2)
    model = StyleGAN2ADA(g, d)
    cfg = types.SimpleNamespace(data=DataConfig(data_dir=data_dir, image_size=16, classes=classes),
                                train=types.SimpleNamespace(seed=0), eval=types.SimpleNamespace(ruler_epochs=1))
    run_dir = recipe_env / "runs" / "00001-tiny"
    run_dir.mkdir(parents=True)
    return str(run_dir), (lambda path: (model, cfg, info)), classes


def test_project_writes_grid_json_markdown_and_audit(run):
    run_dir, load, classes = run
    assert cli.project_command(["--run", run_dir, "--num-images", "4", "--steps", "3", "--num-generated", "4"],
                               "project", load) == 0
    out = os.path.join(run_dir, "projection")
    record = json.load(open(os.path.join(out, "projection.json")))
    assert record["settings"]["num_images"] == 4 and record["settings"]["perceptual"]["kind"] == "classifier"
    assert "VGG16 ImageNet weights unavailable" in record["settings"]["perceptual"]["origin"] or \
        record["settings"]["perceptual"]["kind"] == "vgg16"
    audit = record["projection_audit"]
    assert audit["n_real"] == 4 and audit["n_generated"] == 4 and audit["distance"] == "cosine"
    assert {"rule", "n_flagged", "likely_copy_fraction", "threshold", "flagged_indices"} <= set(audit)
    assert audit["extractor"]["name"] == "classifier"
    assert len(record["per_image"]) == 4 and all(r["class"] in classes for r in record["per_image"])
    assert np.load(os.path.join(out, "ws.npy")).shape == (4, 6, 16)
    grid = np.asarray(Image.open(os.path.join(out, "grid.png")))
    assert grid.shape == (2 + 16 + 2, 8 * (16 + 2) + 2, 3)  # one row of 4 (real | projection) pairs
    assert "Projection audit" in open(os.path.join(out, "projection.md")).read()


def test_sefa_from_a_seed_and_from_an_image(run, tmp_path):
    run_dir, load, classes = run
    assert cli.sefa_command(["--run", run_dir, "--seed", "3", "--k", "3", "--class", classes[1], "--alphas",
                             "-2,2,5", "--layers", "late"], "sefa", load) == 0
    record = json.load(open(os.path.join(run_dir, "sefa", "sefa.json")))
    assert len(record["eigenvalues"]) == 3 and record["original_column"] == 2 and record["w_indices"] == [3, 4]
    assert np.asarray(Image.open(os.path.join(run_dir, "sefa", "grid.png"))).shape == (3 * 18 + 2, 5 * 18 + 2, 3)
    image = tmp_path / "lesion.png"
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(image)
    assert cli.sefa_command(["--run", run_dir, "--image", str(image), "--steps", "2", "--k", "2", "--out",
                             str(tmp_path / "s")], "sefa", load) == 0
    assert json.load(open(tmp_path / "s" / "sefa.json"))["start"]["image"] == str(image)
    with pytest.raises(RecipeError, match="--class 'nope' is not one of"):
        cli.sefa_command(["--run", run_dir, "--class", "nope"], "sefa", load)
    with pytest.raises(RecipeError, match="cannot be read as an image"):
        (tmp_path / "bad.png").write_text("not an image")
        cli.sefa_command(["--run", run_dir, "--image", str(tmp_path / "bad.png")], "sefa", load)


def test_ppl_writes_json_with_the_distance_used(run, capsys):
    run_dir, load, _ = run
    assert cli.ppl_command(["--run", run_dir, "--num-samples", "8", "--batch-size", "8"], "ppl", load) == 0
    record = json.load(open(os.path.join(run_dir, "ppl.json")))
    assert record["n"] == 8 and record["space"] == "w" and record["sampling"] == "end" and record["ppl"] >= 0
    assert record["distance"]["origin"] and "PPL (W, end" in capsys.readouterr().out
    with pytest.raises(RecipeError, match="no such folder"):
        cli.ppl_command(["--run", run_dir + "-missing"], "ppl", load)
    with pytest.raises(SystemExit):
        cli.ppl_command(["--run", run_dir, "--num-samples", "0"], "ppl", load)


@pytest.mark.parametrize("command", [cli.project_command, cli.sefa_command, cli.ppl_command])
def test_help_explains_every_option_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        command(["--help"], "stylegan2_ada tool", None)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "--run RUN" in text and "--out DIR" in text
