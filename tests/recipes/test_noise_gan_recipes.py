"""End-to-end tests of `python -m keras_medgan.recipes.cdcgan` and `... .xraygan` at a tiny size."""

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
from PIL import Image

from keras_medgan.data import inspection, schema
from keras_medgan.recipes import cdcgan, noise_gan, xraygan, xraygan_sweeps

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def env(recipe_env):
    return recipe_env


@pytest.fixture(scope="module")
def cdcgan_run(env):
    assert cdcgan.main(["--preset", "smoke"]) == 0
    return str(env / "runs" / "cdcgan" / "00001-smoke")


@pytest.fixture(scope="module")
def ucgan_run(env):
    assert xraygan.main(["--model", "ucgan", "--preset", "smoke"]) == 0
    (run,) = glob.glob(str(env / "runs" / "xraygan" / "*-smoke-ucgan"))
    return run


def _tags(run):
    tags = set()
    for path in glob.glob(os.path.join(run, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    return tags


def test_cdcgan_smoke_run_writes_samples_per_class_metrics_and_report(cdcgan_run):
    for name in ("config.json", "report.md", "metrics.jsonl", "generator.keras", "evaluation.json", "detection.json",
                 "checkpoints/latest.json"):
        assert os.path.exists(os.path.join(cdcgan_run, name)), name
    cfg = json.load(open(os.path.join(cdcgan_run, "config.json")))
    assert cfg["gan"] == "cdcgan" and cfg["data"]["classes"] == list(cdcgan.DEMO_CLASSES)
    assert cfg["model"]["upsampling"] == "transpose" and cfg["model"]["spectral_norm"] is True
    rows = [json.loads(line) for line in open(os.path.join(cdcgan_run, "metrics.jsonl"))]
    assert [r["step"] for r in rows if "loss/g/total" in r] == [2, 4]
    assert [r["step"] for r in rows if "metrics/fid" in r] == [2, 4]
    grid = Image.open(os.path.join(cdcgan_run, "samples", "step-00000004.png"))
    assert grid.size == (4 * (32 + 2) + 2, 2 * (32 + 2) + 2)  # one column per class, samples_per_class rows
    assert {"loss/g/total", "loss/d/total", "grad_norm/g", "lr/g", "samples", "config", "metrics/fid"} <= _tags(
        cdcgan_run)
    report = open(os.path.join(cdcgan_run, "report.md")).read()
    assert report.startswith("# Conditional DCGAN (paper 001) run report")
    assert "## Detection rate (paper 001, Table III)" in report and "| nevus | 4 |" in report
    assert "## Fidelity, diversity and memorization" in report and "steps 0 -> 4" in report


def test_cdcgan_detection_report_scores_each_class_with_the_real_data_classifier(cdcgan_run):
    det = json.load(open(os.path.join(cdcgan_run, "detection.json")))
    assert list(det["classes"]) == list(cdcgan.DEMO_CLASSES)
    assert det["chance"] == pytest.approx(1 / 8) and det["images_per_class"] == 4
    assert det["detector"].endswith("classifier.keras") and 0.0 <= det["detector_val_accuracy"] <= 1.0
    for row in det["classes"].values():
        assert row["n"] == 4 and row["detection_rate"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert 0.0 <= row["mean_confidence"] <= 1.0 and 0.0 <= row["real_val_detection_rate"] <= 1.0
        assert row["real_val_n"] > 0


def test_cdcgan_evaluation_compares_with_the_trained_classes_only(cdcgan_run):
    result = json.load(open(os.path.join(cdcgan_run, "evaluation.json")))
    info = schema.read_dataset_info(result["settings"]["reference"].rsplit(":", 1)[0])
    assert result["settings"]["num_real"] == sum(info.counts["val"].get(c, 0) for c in cdcgan.DEMO_CLASSES)
    assert set(result["per_class"]) == set(cdcgan.DEMO_CLASSES)


def test_cdcgan_generate_writes_a_balanced_dataset_in_the_real_numbering(cdcgan_run, tmp_path):
    out = str(tmp_path / "synth")
    assert cdcgan.main(["generate", "--run", cdcgan_run, "--out", out, "--num-images", "8", "--classes",
                        "melanoma,nevus"]) == 0
    report = inspection.verify_dataset(os.path.join(out, "dataset"))
    assert report.ok, report.problems
    info = schema.read_dataset_info(os.path.join(out, "dataset"))
    assert info.counts["train"] == {"melanoma": 4, "nevus": 4} and info.image_size == [32, 32]
    assert len(info.class_names) == 8  # the real dataset's class list, so it mixes with the real data
    assert len(os.listdir(os.path.join(out, "images"))) == 8 and os.path.getsize(os.path.join(out, "grid.png"))
    assert cdcgan.main(["generate", "--run", cdcgan_run, "--out", out]) == 1  # never overwrites


def test_xraygan_cgan_smoke_run_conditions_on_the_cxr_classes(env):
    assert xraygan.main(["--preset", "smoke", "--set", "train.steps=2"]) == 0
    (run,) = glob.glob(str(env / "runs" / "xraygan" / "*-smoke-cgan"))
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["gan"] == "cgan" and cfg["model"]["g_leaky_slope"] == 0.0
    assert cfg["data"]["classes"] == list(xraygan.DEMO_CLASSES["cgan"])
    det = json.load(open(os.path.join(run, "detection.json")))
    assert list(det["classes"]) == list(xraygan.DEMO_CLASSES["cgan"]) and det["chance"] == pytest.approx(1 / 5)
    assert "XRAY-GAN CGAN (paper 004, Sec. 4.1)" in open(os.path.join(run, "report.md")).read()


def test_ucgan_smoke_run_follows_the_footnote3_phases_and_reports_c_auc(ucgan_run):
    cfg = json.load(open(os.path.join(ucgan_run, "config.json")))
    assert cfg["gan"] == "ucgan" and cfg["guidance"]["schedule"] == "footnote3" and cfg["train"]["steps"] == 6
    model, _, _ = noise_gan.load_model(ucgan_run, xraygan._saved_config)
    # footnote3_schedule(6): steps 0-1 G:D 3:1, steps 2-3 1:3, steps 4-5 1:1
    assert int(model.g_optimizer.iterations) == 3 + 3 + 1 + 1 + 1 + 1
    assert int(model.d_optimizer.iterations) == 1 + 1 + 3 + 3 + 1 + 1
    assert int(model.c_optimizer.iterations) == 6 and int(model.step_counter) == 6
    auc = json.load(open(os.path.join(ucgan_run, "classifier_auc.json")))
    assert set(auc["auc"]) == set(xraygan.DEMO_CLASSES["ucgan"]) | {"macro"} and auc["split"] == "test"
    assert os.path.isfile(os.path.join(ucgan_run, "classifier.keras"))
    report = open(os.path.join(ucgan_run, "report.md")).read()
    assert "## Classifier C on real test images (paper 004, Tables 4-5)" in report
    assert "Style/content features: the classifier C's own activations" in report
    assert {"loss/c/pseudo", "pseudo_label_rate", "loss/g/mmd", "loss/g/style", "lr/c", "val/loss/g/mmd"} <= _tags(
        ucgan_run)
    rows = [json.loads(line) for line in open(os.path.join(ucgan_run, "metrics.jsonl"))]
    assert all(np.isfinite(r["loss/g/total"]) for r in rows if "loss/g/total" in r)


def test_ucgan_generate_labels_images_with_c(ucgan_run, tmp_path):
    out = str(tmp_path / "synth")
    assert xraygan.main(["generate", "--run", ucgan_run, "--out", out, "--num-images", "6", "--min-confidence",
                         "0"]) == 0
    info = schema.read_dataset_info(os.path.join(out, "dataset"))
    assert sum(info.counts["train"].values()) == 6
    assert set(info.counts["train"]) <= set(xraygan.DEMO_CLASSES["ucgan"])
    assert xraygan.main(["generate", "--run", ucgan_run, "--out", str(tmp_path / "none"), "--num-images", "2",
                         "--min-confidence", "1.0", "--batch-size", "2"]) == 1  # an untrained C is never sure


def test_loss_sweep_trains_each_setting_and_tabulates_auc(env, ucgan_run):
    out = str(env / "sweep")
    assert xraygan.main(["sweep", "losses", "--preset", "smoke", "--settings", "simple,is_mmd_gram", "--out", out,
                         "--set", "train.steps=3", "--set", "eval.metrics=fid"]) == 0
    text = open(os.path.join(out, "sweep.md")).read()
    assert "Table 5" in text and "| Simple (no L_reg) |" in text and "| + IS + MMD + Gram |" in text
    simple = json.load(open(os.path.join(out, "simple", "config.json")))["guidance"]
    assert simple["alpha"] == simple["beta"] == simple["eta"] == simple["gamma"] == 0
    data = json.load(open(os.path.join(out, "sweep.json")))
    assert list(data["results"]) == ["simple", "is_mmd_gram"]
    mtime = os.path.getmtime(os.path.join(out, "simple", "report.md"))
    assert xraygan.main(["sweep", "losses", "--preset", "smoke", "--settings", "simple,is_mmd_gram", "--out", out,
                         "--resume"]) == 0
    assert os.path.getmtime(os.path.join(out, "simple", "report.md")) == mtime  # finished runs are kept


def test_sweep_table_refuses_runs_on_different_classes():
    a = {"auc": {"x": {"auc": 0.5}, "macro": {"auc": 0.5}}, "num_images": 3}
    b = {"auc": {"y": {"auc": 0.5}, "macro": {"auc": 0.5}}, "num_images": 3}
    with pytest.raises(xraygan_sweeps.common.RecipeError, match="must share data.classes"):
        xraygan_sweeps.sweep_table({"a": a, "b": b}, {"a": "A", "b": "B"})


@pytest.mark.parametrize("module, args, message", [
    (xraygan, ["--model", "ucgan", "--set", "loss.gan_loss=wgan-gp"], "wgan-gp is for the cDCGAN / CGAN"),
    (cdcgan, ["--set", "data.image_size=512"], "data.image_size must be a power of two from 32 to 256"),
    (xraygan, ["--model", "ucgan", "--set", "guidance.schedule=0:3"], "guidance.schedule must be 'footnote3'"),
    (cdcgan, ["--set", "model.d_conditioning=film"], "model.d_conditioning must be one of"),
])
def test_bad_config_is_rejected_before_training(env, capsys, module, args, message):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--preset", "smoke", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_class_is_one_clear_error(env, capsys, tmp_path):
    status = cdcgan.main(["--preset", "smoke", "--run-dir", str(tmp_path / "r"), "--set", "data.classes=nv,mel"])
    err = capsys.readouterr().err
    assert status == 1 and "data.classes:" in err and "'nv', 'mel'" in err and "'nevus'" in err


def test_gradient_penalty_with_a_batch_norm_discriminator_is_refused(env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cdcgan.main(["--preset", "smoke", "--set", "loss.gp_weight=10"])
    assert exit_info.value.code == 2
    assert "not valid with batch norm in D" in capsys.readouterr().err
    assert cdcgan.main(["--preset", "smoke", "--dry-run", "--set", "loss.gp_weight=10", "--set",
                        "model.d_norm=layer"]) == 0


def test_resume_refuses_another_model(ucgan_run):
    with pytest.raises(SystemExit) as exit_info:
        xraygan.main(["--model", "cgan", "--run-dir", ucgan_run, "--resume"])
    assert exit_info.value.code == 2


def _run(module, *args):
    cmd = [sys.executable, "-m", f"keras_medgan.recipes.{module}", "--preset", "smoke", "--set", "train.steps=8",
           "--set", "train.deterministic=true", *args]
    e = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(cmd, env=e, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _final_state(run):
    with np.load(os.path.join(run, "checkpoints", "ckpt-00000008.npz")) as data:
        return {k: data[k] for k in data.files if k != "__meta__"}


@pytest.mark.parametrize("module, extra", [("cdcgan", []), ("xraygan", ["--model", "ucgan"])])
def test_sigkilled_run_resumes_to_identical_weights(env, cdcgan_run, module, extra):
    straight_dir, killed_dir = str(env / f"straight-{module}"), str(env / f"killed-{module}")
    # Both start together: tracing is single-threaded Python, so two processes share the 2 cores well.
    straight = _run(module, *extra, "--run-dir", straight_dir)
    proc = _run(module, *extra, "--run-dir", killed_dir)
    deadline = time.time() + 300
    while not glob.glob(os.path.join(killed_dir, "checkpoints", "ckpt-00000004.npz")):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert straight.communicate(timeout=300)[0] is not None and straight.returncode == 0
    assert not os.path.exists(os.path.join(killed_dir, "checkpoints", "ckpt-00000008.npz"))
    resumed = subprocess.Popen([sys.executable, "-m", f"keras_medgan.recipes.{module}", "--run-dir", killed_dir,
                                "--resume"], env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, out[-2000:]
    assert "resuming" in out and "at step 4" in out

    a, b = _final_state(straight_dir), _final_state(killed_dir)
    assert a.keys() == b.keys() and any("seed_generator" in k or "state" in k for k in a)
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("module, argv, expect", [
    (cdcgan, ["--config", "recipes/cdcgan/paper.toml"], {"gan": "cdcgan", "classes": ["nv", "bcc", "mel", "bkl"]}),
    (cdcgan, ["--config", "recipes/cdcgan/paper_gp.toml"], {"gan": "cdcgan", "gp_weight": 10.0}),
    (xraygan, ["--model", "cgan", "--config", "recipes/xraygan/paper_cgan.toml"],
     {"gan": "cgan", "classes": ["Pneumonia", "Effusion", "Mass", "Hernia"]}),
    (xraygan, ["--model", "ucgan", "--config", "recipes/xraygan/paper_ucgan.toml"],
     {"gan": "ucgan", "classes": ["Pneumonia", "Edema", "Hernia"], "classifier": "resnet50"}),
])
def test_recipe_card_tomls_are_valid_paper_configs(capsys, monkeypatch, module, argv, expect):
    monkeypatch.chdir(REPO)
    assert module.main(["--preset", "paper", "--dry-run", *argv]) == 0
    cfg = json.loads(capsys.readouterr().out)
    got = {"gan": cfg["gan"], "classes": cfg["data"]["classes"], "gp_weight": cfg["loss"]["gp_weight"],
           "classifier": cfg["model"]["classifier"]}
    assert {k: got[k] for k in expect} == expect


def test_detect_recomputes_the_report_with_another_detector(cdcgan_run, tmp_path, capsys):
    ruler = json.load(open(os.path.join(cdcgan_run, "detection.json")))["detector"]
    out = str(tmp_path / "det")
    assert cdcgan.main(["detect", "--run", cdcgan_run, "--classifier", ruler, "--images-per-class", "3",
                        "--out", out]) == 0
    det = json.load(open(os.path.join(out, "detection.json")))
    assert det["images_per_class"] == 3 and all(r["n"] == 3 for r in det["classes"].values())
    assert "| melanoma | 3 |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cdcgan.main(["detect", "--run", cdcgan_run, "--classifier", str(tmp_path / "missing.keras")])


def test_detect_refuses_a_ucgan_run(ucgan_run, capsys):
    assert xraygan.main(["detect", "--run", ucgan_run]) == 1
    assert "no intended class per image" in capsys.readouterr().err
