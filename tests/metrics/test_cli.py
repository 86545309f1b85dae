"""The metrics command line (``python -m keras_medgan.metrics``), called in-process through ``main``."""

import argparse
import contextlib
import io
import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_medgan.data.demo import write_demo_dataset
from keras_medgan.metrics import sources
from keras_medgan.metrics.__main__ import build_parser, main
from keras_medgan.metrics.features import classifier_extractor
from keras_medgan.networks.classifiers import domain_classifier

SIZE = 16
FAST = ["--trials", "3", "--bootstrap", "4", "--kid-subsets", "5", "--quiet"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MEDGAN_CACHE", str(tmp_path / "cache"))


def _run(argv):
    """``main(argv)`` outside a test function: (return code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A 300-image 16 px demo-derm dataset (about 238 train / 31 val / 31 test) and a seeded tiny ruler."""
    root = tmp_path_factory.mktemp("cli")
    data = str(root / "derm")
    info = write_demo_dataset("demo-derm", data, num_images=300, image_size=SIZE, seed=0)
    assert info.num_examples("val") >= 20 and info.num_examples("test") >= 20  # memorization needs 20 held out
    keras.utils.set_random_seed(4)
    ruler = str(root / "ruler.keras")
    domain_classifier(SIZE, 3, len(info.class_names), filters=(8, 16), feature_dim=16).save(ruler)
    return root, data, info, ruler


@pytest.fixture(scope="module")
def evaluated(workdir):
    """One full ``evaluate`` run with every metric: (return code, stdout, stderr, report path, cache dir)."""
    root, data, _, ruler = workdir
    out = str(root / "eval" / "report.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KERAS_MEDGAN_CACHE", str(root / "eval-cache"))
        result = _run(["evaluate", "--real", f"{data}:val", "--fake", f"{data}:test", "--features",
                       f"classifier:{ruler}", "--metrics", "fid,kid,is,prdc,memorization", "--seed", "7",
                       "--out", out, *FAST])
    return (*result, out, str(root / "eval-cache"))


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------


def test_evaluate_end_to_end_prints_the_table(evaluated, workdir):
    code, stdout, stderr, out, _ = evaluated
    assert code == 0, stderr
    ruler = workdir[3]
    assert stdout.startswith(f"features: classifier (sha256:{classifier_extractor(ruler).weights[7:]}), "
                             f"resolution {SIZE} px")
    for name in ("fid", "kid", "is", "precision", "recall", "density", "coverage", "likely_copies", "authenticity"):
        assert any(line.startswith(name + " ") for line in stdout.splitlines()), name
    assert "per class:" in stdout and "memorization: " in stdout
    assert stdout.rstrip().endswith(f"wrote {out}")


def test_evaluate_report_records_the_settings(evaluated, workdir):
    _, data, info, ruler = workdir
    out = evaluated[3]
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    s = report["settings"]
    extractor = classifier_extractor(ruler)
    assert s["extractor"]["fingerprint"] == extractor.fingerprint()
    assert s["extractor"]["name"] == "classifier" and s["extractor"]["source"] == os.path.abspath(ruler)
    assert s["extractor"]["resize_filter"] == extractor.resize_filter and s["extractor"]["input_size"] == SIZE
    assert s["resolution"] == SIZE
    assert s["num_real"] == info.num_examples("val") and s["num_fake"] == info.num_examples("test")
    assert s["reference"] == f"{os.path.abspath(data)}:val" and s["fake"] == f"{os.path.abspath(data)}:test"
    assert (s["seed"], s["trials"], s["bootstrap"], s["kid_subsets"]) == (7, 3, 4, 5)
    assert s["metrics"] == ["fid", "kid", "is", "prdc", "memorization"] and s["skipped_fake_images"] == []
    assert set(report) >= {"fid", "kid", "is", "prdc", "memorization", "per_class", "per_fitzpatrick"}
    assert set(report["per_class"]) <= set(info.class_names)
    m = report["memorization"]
    assert m["n_train"] == info.num_examples("train") and m["n_heldout"] == info.num_examples("val")
    assert m["n_generated"] == info.num_examples("test")
    assert m["train_source"] == f"{os.path.abspath(data)}:train"


def test_evaluate_writes_the_contact_sheet_and_caches_real_features(evaluated):
    _, _, _, out, cache = evaluated
    sheet = os.path.join(os.path.dirname(out), "report-closest-pairs.png")
    with open(out, encoding="utf-8") as f:
        assert json.load(f)["memorization"]["contact_sheet"] == os.path.abspath(sheet)
    with Image.open(sheet) as img:
        assert img.format == "PNG" and img.size == (4 * 96, 16 * 96)
    # Real splits (val reference, train for memorization) are cached; the generated set is not.
    assert len([f for f in os.listdir(os.path.join(cache, "features")) if f.endswith(".npz")]) == 2
    assert not [f for f in os.listdir(os.path.dirname(out)) if f.startswith(".tmp")]


def test_evaluate_fake_folder_with_a_corrupt_image(workdir, tmp_path, capsys):
    root, data, info, ruler = workdir
    fake = tmp_path / "fake"
    fake.mkdir()
    images = sources.images_at(sources.parse_source(f"{data}:test"), range(25), SIZE)
    for i, image in enumerate(images):
        Image.fromarray(image).save(fake / f"gen_{i:03d}.png")
    (fake / "gen_000_bad.png").write_bytes(b"\x89PNG truncated")  # sorts second
    out = str(tmp_path / "r.json")
    code = main(["evaluate", "--real", f"{data}:val", "--fake", str(fake), "--features", f"classifier:{ruler}",
                 "--metrics", "fid,memorization", "--out", out, *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"skipped unreadable image {fake / 'gen_000_bad.png'}" in captured.err
    with open(out, encoding="utf-8") as f:
        report = json.load(f)
    assert report["settings"]["num_fake"] == 25 and report["settings"]["fake"] == str(fake)
    assert report["settings"]["skipped_fake_images"] == [str(fake / "gen_000_bad.png")]
    with Image.open(tmp_path / "r-closest-pairs.png") as img:
        assert img.size == (4 * 96, 16 * 96)
    # The sheet indexes generated images in feature order, past the skipped file.
    assert report["memorization"]["n_generated"] == 25 and "contact_sheet" in report["memorization"]


def test_evaluate_limits_and_no_cache(workdir, tmp_path, capsys):
    root, data, info, ruler = workdir
    real = tmp_path / "real"
    real.mkdir()
    for i, image in enumerate(sources.images_at(sources.parse_source(f"{data}:val"), range(20), SIZE)):
        Image.fromarray(image).save(real / f"r{i:02d}.png")
    out = str(tmp_path / "r.json")
    code = main(["evaluate", "--real", str(real), "--fake", f"{data}:test", "--features", f"classifier:{ruler}",
                 "--metrics", "fid,kid", "--max-real", "15", "--max-fake", "18", "--resolution", "8",
                 "--no-cache", "--out", out, *FAST])
    assert code == 0, capsys.readouterr().err
    with open(out, encoding="utf-8") as f:
        s = json.load(f)["settings"]
    assert (s["num_real"], s["num_fake"], s["resolution"]) == (15, 18, 8)
    assert s["reference"] == str(real) and "per_class" not in s
    # Memorization with --no-cache and a separate held-out split leaves the feature cache untouched.
    code = main(["evaluate", "--real", f"{data}:val", "--fake", f"{data}:test", "--features", f"classifier:{ruler}",
                 "--metrics", "memorization", "--heldout", f"{data}:test", "--no-cache", "--max-real", "12",
                 "--contact-sheet", str(tmp_path / "sheet.png"), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert not os.path.exists(tmp_path / "cache" / "features")
    with Image.open(tmp_path / "sheet.png") as img:
        assert img.size[0] == 4 * 96


def test_evaluate_memorization_with_an_image_folder_needs_train(workdir, tmp_path, capsys):
    _, data, _, ruler = workdir
    real = tmp_path / "real"
    real.mkdir()
    for i in range(14):
        Image.fromarray(np.full((SIZE, SIZE, 3), 10 * i, np.uint8)).save(real / f"{i}.png")
    code = main(["evaluate", "--real", str(real), "--fake", f"{data}:test", "--features", f"classifier:{ruler}",
                 "--metrics", "memorization", *FAST])
    assert code == 1
    assert "error: memorization needs --train DATASET:split and --heldout" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--real", "{tmp}/nowhere"], "is neither a keras-medgan dataset folder"),
    (["--real", "{tmp}/nowhere:val"], "has no dataset.json"),
    (["--metrics", "fid,lpips"], "unknown metric(s) ['lpips']"),
    (["--features", "classifier:{tmp}/missing.keras"], "train-classifier --data DATASET --out"),
    (["--features", "resnet"], "unknown feature extractor 'resnet'"),
])
def test_evaluate_bad_input_is_one_clear_line(workdir, tmp_path, capsys, argv, message):
    _, data, _, ruler = workdir
    args = {"--real": f"{data}:val", "--fake": f"{data}:test", "--features": f"classifier:{ruler}"}
    for key, value in zip(argv[::2], argv[1::2]):
        args[key] = value.format(tmp=tmp_path)
    code = main(["evaluate", *[x for kv in args.items() for x in kv], *FAST])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.err


def test_evaluate_help_mentions_every_option(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [o for a in sub.choices["evaluate"]._actions for o in a.option_strings]
    assert len(options) >= 24
    for option in options:
        assert option in text, option
    for spot in ("--kid-subset-size", "--percentile", "--contact-sheet", "--no-cache", "classifier:auto",
                 "inception_v3"):
        assert spot in text
    assert "Grey images are repeated to 3 channels for inception_v3." in text
    assert "Default: 50" in text  # trials


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("evaluate", "train-classifier", "compare", "select-checkpoint"):
        assert command in text


def test_train_classifier_on_a_missing_dataset(tmp_path, capsys):
    code = main(["train-classifier", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r.keras")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "none") in err
    assert not os.path.exists(tmp_path / "r.keras")


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------


def _write(path, result):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return str(path)


def test_compare_refuses_different_extractors(evaluated, tmp_path, capsys):
    with open(evaluated[3], encoding="utf-8") as f:
        report = json.load(f)
    other = json.loads(json.dumps(report))
    other["settings"]["extractor"]["fingerprint"] = "0123456789abcdef"
    code = main(["compare", evaluated[3], _write(tmp_path / "other.json", other)])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.startswith("error: these results were computed with different feature extractors")
    assert "other.json: classifier (0123456789abcdef)" in captured.err


def test_compare_prints_and_writes_a_markdown_table(evaluated, tmp_path, capsys):
    with open(evaluated[3], encoding="utf-8") as f:
        report = json.load(f)
    smaller = json.loads(json.dumps(report))
    smaller["settings"]["num_real"] = 10
    md = tmp_path / "table.md"
    code = main(["compare", evaluated[3], _write(tmp_path / "small.json", smaller), "--out", str(md)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].startswith("| result | fid | kid | is | precision |")
    assert lines[2].startswith("| report.json | ") and lines[3].startswith("| small.json | ")
    assert any("`num_real` differs between results" in line for line in lines)
    assert md.read_text(encoding="utf-8") == captured.out


def test_compare_rejects_files_that_are_not_results(tmp_path, capsys):
    code = main(["compare", _write(tmp_path / "x.json", {"fid": 1.0})])
    assert code == 1 and "is not a result of `python -m keras_medgan.metrics evaluate`" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    code = main(["compare", str(tmp_path / "broken.json")])
    assert code == 1 and "cannot read an evaluate result" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# select-checkpoint
# ---------------------------------------------------------------------------


def _run_dir(root, rows, checkpoint_steps):
    run = root / "00001-run"
    (run / "checkpoints").mkdir(parents=True)
    with open(run / "metrics.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    for step in checkpoint_steps:
        (run / "checkpoints" / f"ckpt-{step:08d}.npz").write_bytes(b"")
    (run / "checkpoints" / "latest.json").write_text("{}")
    return run


ROWS = [{"step": 100, "loss/g": 1.0}, {"step": 100, "metrics/fid": 10.0}, {"step": 200, "metrics/fid": 9.0},
        {"step": 300, "metrics/fid": 9.25, "metrics/kid": 0.5}, {"step": 400, "metrics/fid": 9.35},
        {"step": 500, "metrics/fid": 8.0}, {"step": 600, "loss/g": 0.7}]


def test_select_checkpoint_prefers_the_latest_within_tolerance(tmp_path, capsys):
    # Best FID with a checkpoint: 9.0 at 200. 300 is within 0.3; 400 is not; 500 is better but was not kept.
    run = _run_dir(tmp_path, ROWS, [100, 200, 300, 400, 600])
    assert main(["select-checkpoint", str(run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == str(run / "checkpoints" / "ckpt-00000300.npz")
    chosen = [line for line in lines if line.startswith("->")]
    assert len(chosen) == 1 and "step      300" in chosen[0] and "9.250" in chosen[0]
    assert len(lines) == 5  # steps 100-400, then the path
    assert main(["select-checkpoint", str(run), "--tolerance", "0.5"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("ckpt-00000400.npz")
    assert main(["select-checkpoint", str(run), "--metric", "metrics/kid"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("ckpt-00000300.npz")


def test_select_checkpoint_errors(tmp_path, capsys):
    run = _run_dir(tmp_path, ROWS, [600])
    assert main(["select-checkpoint", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no step of") and "has both a metrics/fid value in metrics.jsonl and a kept " \
        "checkpoint" in err
    assert main(["select-checkpoint", str(tmp_path / "nowhere")]) == 1
    assert "has no metrics.jsonl; is it a run directory?" in capsys.readouterr().err
