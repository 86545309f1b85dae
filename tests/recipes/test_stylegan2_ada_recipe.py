"""End-to-end tests of `python -m keras_medgan.recipes.stylegan2_ada` at a tiny size.

The uninterrupted run is also the run whose files are checked: it runs in a subprocess in deterministic float32
(op determinism is process-wide), a second run is SIGKILLed after its first checkpoint and resumed, and the two
final checkpoints must be bit-identical: G, D, the EMA G, both optimisers, kimg, ADA p and r_t, the streams.
"""

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

from keras_medgan.data import schema
from keras_medgan.recipes import stylegan2_ada

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 16 px, batch 4, 0.016 kimg = 4 minibatches in ticks of 2; FID every tick; p moves every minibatch.
FLAGS = ["--preset", "smoke", "--set", "train.deterministic=true", "--set", "augment.interval=1",
         "--set", "augment.kimg=0.1", "--set", "eval.metrics=fid,kid,memorization"]


def _start(*args):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen([sys.executable, "-m", "keras_medgan.recipes.stylegan2_ada", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def runs(recipe_env):
    """``(straight, killed)``: both start together (tracing is single-threaded Python, two processes share the 2
    cores well); the second is SIGKILLed right after its first checkpoint."""
    straight, killed = str(recipe_env / "straight"), str(recipe_env / "killed")
    proc = _start(*FLAGS, "--run-dir", straight)
    victim = _start(*FLAGS, "--run-dir", killed)
    deadline = time.time() + 600
    while not os.path.exists(os.path.join(killed, "checkpoints", "ckpt-00000002.npz")):
        assert victim.poll() is None and time.time() < deadline, victim.stdout.read().decode()[-3000:]
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    out = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, out[-3000:]
    return straight, killed


@pytest.fixture(scope="module")
def run(runs):
    return runs[0]


def _state(run_dir, step=4):
    with np.load(os.path.join(run_dir, "checkpoints", f"ckpt-{step:08d}.npz")) as data:
        return {k: data[k] for k in data.files if k != "__meta__"}, json.loads(bytes(data["__meta__"]).decode())


def test_smoke_run_writes_grids_metrics_selection_and_report(run):
    for name in ("config.json", "report.md", "metrics.jsonl", "generator.keras", "evaluation.json", "detection.json",
                 "checkpoints/latest.json", "snapshots/selected.json", "samples/step-00000004.png"):
        assert os.path.exists(os.path.join(run, name)), name
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["gan"] == "stylegan2-ada" and cfg["model"]["conditional"] is True
    assert cfg["train"]["steps"] == 4 and cfg["train"]["log_every"] == 2 and cfg["eval"]["every"] == 2
    rows = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    fids = {r["step"]: r["metrics/fid"] for r in rows if "metrics/fid" in r}
    assert sorted(fids) == [2, 4]
    assert [r["metrics/kimg"] for r in rows if "metrics/kimg" in r] == [0.008, 0.016]
    train_rows = [r for r in rows if "loss/g/main" in r]
    assert all(np.isfinite(r[k]) for r in train_rows for k in ("loss/g/main", "loss/d/main", "loss/d/r1",
                                                                 "loss/g/pl"))
    # The review's rule: the latest FID within 0.3 of the best.
    selected = json.load(open(os.path.join(run, "snapshots", "selected.json")))
    best = min(fids.values())
    assert selected["step"] == max(s for s, v in fids.items() if v - best < 0.3)
    # One column per class (8 demo-derm classes), samples_per_class = 2 rows, 16 px tiles.
    grid = Image.open(os.path.join(run, "samples", "step-00000004.png"))
    assert grid.size == (8 * (16 + 2) + 2, 2 * (16 + 2) + 2)
    report = open(os.path.join(run, "report.md")).read()
    for text in ("StyleGAN2-ADA run report", "R1 gamma", "`bgc`", "final p =", "Selected snapshot", "0.016 kimg",
                 "s/kimg", "Detection rate", "every layer in float32 (model.num_fp16_res = 0"):
        assert text in report, text
    tags = set()
    for path in glob.glob(os.path.join(run, "tensorboard", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss/g/main", "loss/d/r1", "ada/p", "ada/r_t", "progress/kimg", "metrics/fid", "samples"} <= tags


def test_ada_p_moved_and_is_checkpointed(run):
    state, meta = _state(run)
    assert meta["kimg"] == pytest.approx(0.016)
    p = meta["ada_p"]
    # p moves by batch * interval / (ada_kimg * 1000) = 4 / 100 per minibatch, 4 minibatches, clipped at 0.
    steps = p / 0.04
    assert abs(steps - round(steps)) < 1e-4 and 0 <= round(steps) <= 4


def test_sigkilled_run_resumes_to_identical_state(runs):
    run, killed = runs
    assert not os.path.exists(os.path.join(killed, "checkpoints", "ckpt-00000004.npz"))
    resumed = _start("--run-dir", killed, "--resume")
    out = resumed.communicate(timeout=600)[0].decode()
    assert resumed.returncode == 0, out[-3000:]
    assert "at step 2" in out

    (a, meta_a), (b, meta_b) = _state(run), _state(killed)
    assert meta_a["kimg"] == meta_b["kimg"] and meta_a["ada_p"] == meta_b["ada_p"]
    assert any(k.startswith("g_ema") for k in a) and any(k.startswith("state") for k in a)
    assert a.keys() == b.keys()
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different[:5]


def test_generate_writes_a_labelled_dataset_from_the_selected_snapshot(run, recipe_env, capsys):
    out = str(recipe_env / "synth")
    assert stylegan2_ada.main(["generate", "--run", run, "--out", out, "--num-images", "16",
                               "--truncation-psi", "0.7"]) == 0
    assert "selected EMA generator, truncation psi 0.7" in capsys.readouterr().out
    info = schema.read_dataset_info(os.path.join(out, "dataset"))
    assert info.num_examples("train") == 16 and info.extra["truncation_psi"] == 0.7
    assert len(glob.glob(os.path.join(out, "images", "*.png"))) == 16
    # Bad input: one clear message, status 1, nothing written.
    assert stylegan2_ada.main(["generate", "--run", run, "--out", str(recipe_env / "x"), "--truncation-psi",
                               "1.5"]) == 1
    assert "--truncation-psi must be in (0, 1]" in capsys.readouterr().err
    assert not os.path.exists(recipe_env / "x" / "dataset")


def test_sefa_and_project_write_their_outputs_in_the_run(run):
    assert stylegan2_ada.main(["sefa", "--run", run, "--seed", "3", "--k", "3"]) == 0
    assert os.path.isfile(os.path.join(run, "sefa", "grid.png"))
    sefa = json.load(open(os.path.join(run, "sefa", "sefa.json")))
    assert len(sefa["eigenvalues"]) == 3 and sefa["eigenvalues"] == sorted(sefa["eigenvalues"], reverse=True)
    assert stylegan2_ada.main(["project", "--run", run, "--num-images", "4", "--steps", "5"]) == 0
    assert os.path.isfile(os.path.join(run, "projection", "grid.png"))
    record = json.load(open(os.path.join(run, "projection", "projection.json")))
    assert "projection_audit" in record and record["projection_audit"]["n_real"] == 4


def test_resume_may_extend_kimg_but_nothing_else(run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        stylegan2_ada.main(["--run-dir", run, "--resume", "--set", "loss.pl_weight=1", "--dry-run"])
    assert exit_info.value.code == 2
    assert "only train.steps or schedule.kimg may change" in capsys.readouterr().err
    assert stylegan2_ada.main(["--run-dir", run, "--resume", "--set", "schedule.kimg=0.032", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["steps"] == 8


def test_paper_preset_resolves_to_the_papers_settings(capsys):
    assert stylegan2_ada.main(["--preset", "paper", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["data"]["image_size"] == 256 and cfg["data"]["classes"] == ["benign", "malignant"]
    assert cfg["model"]["mapping_layers"] == 8 and cfg["model"]["w_dim"] == 512
    assert cfg["train"]["steps"] == 781_250 and cfg["train"]["log_every"] == 125  # 25,000 kimg at batch 32
    assert stylegan2_ada.r1_gamma(stylegan2_ada.get_config("paper")) == pytest.approx(0.0002 * 256 ** 2 / 32)
