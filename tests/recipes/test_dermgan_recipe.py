"""End-to-end tests of `python -m keras_medgan.recipes.dermgan` at a tiny size."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.data import inspection, schema
from keras_medgan.recipes import dermgan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def env(recipe_env):
    return recipe_env


@pytest.fixture(scope="module")
def smoke_run(env):
    assert dermgan.main(["--preset", "smoke"]) == 0
    (run,) = glob.glob(str(env / "runs" / "dermgan" / "00001-smoke"))
    return run


def _tags(run):
    tags = set()
    for path in glob.glob(os.path.join(run, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_smoke_run_leaves_a_complete_run_directory(smoke_run):
    for name in ("config.json", "report.md", "metrics.jsonl", "generator.keras", "checkpoints/latest.json"):
        assert os.path.exists(os.path.join(smoke_run, name)), name
    cfg = json.load(open(os.path.join(smoke_run, "config.json")))
    assert cfg["preset"] == "smoke" and cfg["data"]["image_size"] == 32 and cfg["data"]["data_dir"]
    rows = [json.loads(line) for line in open(os.path.join(smoke_run, "metrics.jsonl"))]
    losses = [r for r in rows if "loss/g/l1_roi" in r]
    assert [r["step"] for r in losses] == [2, 4]
    assert all(np.isfinite(r["loss/g/l1_roi"]) for r in losses)
    evals = [r for r in rows if "metrics/fid" in r]  # eval.every=2 in the smoke preset
    assert [r["step"] for r in evals] == [2, 4]
    assert all(r["metrics/fid"] >= 0 and np.isfinite(r["metrics/kid"]) for r in evals)
    assert sorted(os.listdir(os.path.join(smoke_run, "samples"))) == ["step-00000000.png", "step-00000002.png",
                                                                     "step-00000004.png"]
    report = open(os.path.join(smoke_run, "report.md")).read()
    assert "steps 0 -> 4" in report and "| `loss/g/l1_roi` |" in report


def test_smoke_run_is_evaluated_with_intervals_and_a_memorization_audit(smoke_run):
    result = json.load(open(os.path.join(smoke_run, "evaluation.json")))
    s = result["settings"]
    assert s["extractor"]["name"] == "classifier" and s["extractor"]["weights"].startswith("sha256:")
    assert s["resolution"] == 32 and s["num_fake"] == s["num_real"] > 0 and s["reference"].endswith(":val")
    assert s["trials"] == 3 and s["step"] == 4
    trials = result["fid"]["trials"]
    assert trials["ci_high"] - trials["mean"] == pytest.approx(1.959963984540054 * trials["std"])
    assert result["kid"]["ci_low"] <= result["kid"]["mean"] <= result["kid"]["ci_high"]
    assert set(result["prdc"]) == {"k", "precision", "recall", "density", "coverage"}
    m = result["memorization"]
    assert m["n_generated"] == s["num_fake"] and 0.0 <= m["likely_copy_fraction"] <= 1.0
    assert os.path.isfile(os.path.join(smoke_run, m["contact_sheet"]))
    assert set(result["per_class"]) <= set(json.load(open(os.path.join(s["reference"].rsplit(":", 1)[0],
                                                                       "dataset.json")))["class_names"])
    report = open(os.path.join(smoke_run, "report.md")).read()
    assert "## Fidelity, diversity and memorization" in report and "| fid |" in report
    assert "Memorization audit:" in report and s["extractor"]["fingerprint"] in report
    tags = _tags(smoke_run)
    assert {"metrics/fid", "metrics/kid"} <= tags


def test_ablation_trains_each_variant_and_writes_the_table(env, smoke_run):
    out = str(env / "ablation")
    assert dermgan.main(["ablation", "--preset", "smoke", "--variants", "full,no_roi", "--out", out,
                         "--set", "train.steps=2"]) == 0
    table = open(os.path.join(out, "ablation.md")).read()
    assert "| DermGAN (full model) |" in table and "| no condition-specific (ROI) loss |" in table
    assert "real test split vs real val split (floor)" in table and " ± " in table
    data = json.load(open(os.path.join(out, "ablation.json")))
    assert set(data["results"]) == {"full", "no_roi", "real_floor"}
    assert json.load(open(os.path.join(out, "no_roi", "config.json")))["loss"]["lambda_roi"] == 0
    # resuming a finished ablation retrains nothing and rewrites the same table
    mtime = os.path.getmtime(os.path.join(out, "full", "report.md"))
    assert dermgan.main(["ablation", "--preset", "smoke", "--variants", "full,no_roi", "--out", out,
                         "--resume"]) == 0
    assert os.path.getmtime(os.path.join(out, "full", "report.md")) == mtime


def test_ablation_table_refuses_different_rulers():
    def result(fp):
        return {"settings": {"extractor": {"fingerprint": fp}}, "fid": {"value": 1.0}}

    with pytest.raises(dermgan.common.RecipeError, match="different rulers"):
        dermgan.ablation_table({"a": result("x"), "b": result("y")}, {"a": "A", "b": "B"})


def test_tensorboard_has_losses_learning_rates_grids_and_config(smoke_run):
    tags = _tags(smoke_run)
    for tag in ("loss/g/l1", "loss/g/l1_roi", "loss/g/feature_matching", "loss/d/total", "grad_norm/g", "lr/g",
                "lr/d", "val/loss/g/l1", "samples", "config"):
        assert tag in tags, tag


def test_generate_writes_sweeps_and_a_dataset_verify_accepts(smoke_run, tmp_path):
    out = str(tmp_path / "synth")
    assert dermgan.main(["generate", "--run", smoke_run, "--out", out, "--num-images", "6", "--sweep-maps", "2"]) == 0
    for name in ("grid.png", "sweep_skin_type.png", "sweep_lesion_size.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert len(os.listdir(os.path.join(out, "images"))) == 6
    report = inspection.verify_dataset(os.path.join(out, "dataset"))
    assert report.ok, report.problems
    info = schema.read_dataset_info(os.path.join(out, "dataset"))
    assert info.num_examples("train") == 6 and info.image_size == [32, 32]
    from PIL import Image
    sweep = Image.open(os.path.join(out, "sweep_skin_type.png"))
    assert sweep.width == 6 * (32 + 2) + 2  # one column per Fitzpatrick type


@pytest.mark.parametrize("args, message", [
    (["--set", "loss.lambda_bogus=1"], "unknown config key `loss.lambda_bogus`"),
    (["--set", "loss.lambda_roi=-1"], "loss.lambda_roi must be a number >= 0. Received: lambda_roi=-1.0"),
    (["--set", "data.image_size=100"], "data.image_size must be a power of two between 32 and 512"),
    (["--set", "train.steps=ten"], "`train.steps` must be a int. Received: 'ten'"),
])
def test_bad_config_is_rejected_before_training(env, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        dermgan.main(["--preset", "smoke"] + args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_an_existing_run_dir_is_not_overwritten(smoke_run, capsys):
    before = open(os.path.join(smoke_run, "config.json")).read()
    assert dermgan.main(["--preset", "smoke", "--run-dir", smoke_run]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert open(os.path.join(smoke_run, "config.json")).read() == before


def test_data_without_dataset_json_is_rejected(env, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dermgan.main(["--preset", "smoke", "--data", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "data.data_dir=" in err and "dataset.json not found" in err


def _run(env, *args, **kw):
    cmd = [sys.executable, "-m", "keras_medgan.recipes.dermgan", "--preset", "smoke", "--set", "train.steps=8",
           "--set", "train.deterministic=true", *args]
    e = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(cmd, env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _final_state(run):
    with np.load(os.path.join(run, "checkpoints", "ckpt-00000008.npz")) as data:
        return {k: data[k] for k in data.files if k != "__meta__"}


def test_sigkilled_run_resumes_to_identical_weights(env, smoke_run):
    straight_dir, killed_dir = str(env / "straight"), str(env / "killed")
    # Both start together: tracing is single-threaded Python, so two processes share the 2 cores well.
    straight = _run(env, "--run-dir", straight_dir)
    proc = _run(env, "--run-dir", killed_dir, "--set", "train.log_every=2")
    deadline = time.time() + 300
    while not glob.glob(os.path.join(killed_dir, "checkpoints", "ckpt-00000004.npz")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    out = straight.communicate(timeout=300)[0].decode()
    assert straight.returncode == 0, out[-2000:]
    assert not os.path.exists(os.path.join(killed_dir, "checkpoints", "ckpt-00000008.npz"))
    resumed = _run(env, "--run-dir", killed_dir, "--resume")
    out = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, out[-2000:]
    assert "resuming" in out and "at step" in out

    a, b = _final_state(straight_dir), _final_state(killed_dir)
    assert a.keys() == b.keys() and len(a) > 50
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different[:5]


def test_offline_inception_ruler_is_one_clear_error(env, tmp_path, monkeypatch, capsys):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(file_utils, "get_file", offline)
    status = dermgan.main(["--preset", "smoke", "--run-dir", str(tmp_path / "run"), "--set",
                           "eval.features=inception_v3"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("error: could not load the InceptionV3 ImageNet weights")
    assert "eval.features=classifier:auto" in err
    assert not os.path.exists(tmp_path / "run" / "checkpoints")  # failed before any training
