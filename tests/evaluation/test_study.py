"""The study runner: config validation, the refusal to select on a test set, resumability, the report."""

import json
import os

import numpy as np
import pytest

from keras_medgan import config as config_lib
from keras_medgan.data import demo
from keras_medgan.evaluation import study as study_mod
from keras_medgan.evaluation.report import verdict, write_report
from keras_medgan.evaluation.study import ArmConfig, GroupConfig, Study, StudyConfig

CLASSES = ("nevus", "melanoma")


def _cfg(**updates):
    base = {"data": {"data_dir": "real", "classes": list(CLASSES)},
            "test_sets": [{"name": "in", "split": "test"}],
            "sources": [{"name": "sgn", "data_dir": "synth"}],
            "groups": [{"sources": ["sgn"], "ratios": [0.5]}]}
    base.update(updates)
    return config_lib.replace(StudyConfig(), base)


@pytest.mark.parametrize("updates, message", [
    ({"training": {"selection_split": "test"}}, "training.selection_split='test' selects on a test set"),
    ({"training": {"monitor": "test_auc"}}, "training.monitor='test_auc' reads a test-set measure"),
    ({"training": {"monitor": "val_in_auc", "selection_split": "in"}}, "selection_split='in' selects on a test set"),
    ({"test_sets": [{"name": "val", "split": "val"}]}, "test set 'val' is the validation split of the real data"),
    ({"test_sets": [{"name": "v2", "split": "test+val", "data_dir": "real"}]}, "is the validation split"),
])
def test_a_config_that_would_select_on_a_test_set_is_refused(updates, message):
    with pytest.raises(config_lib.ConfigError) as info:
        _cfg(**updates)
    text = str(info.value)
    assert text.startswith("refused: ") and message in text
    assert "Model selection reads the validation split only" in text and "critical review Sec. 2" in text


def test_config_errors_name_the_input_and_the_fix():
    with pytest.raises(config_lib.ConfigError, match=r"test_sets\[0\]: unknown key\(s\) \['splits'\]"):
        _cfg(test_sets=[{"name": "in", "splits": "test"}])
    with pytest.raises(config_lib.ConfigError, match="names no source"):
        _cfg(arms=[{"ratio": 0.5}])
    with pytest.raises(config_lib.ConfigError, match=r"no baseline; add an arm with real_fraction=1/4 and ratio 0"):
        _cfg(groups=[], arms=[{"source": "sgn", "real_fraction": "1/4", "ratio": "3/4", "mode": "anonymization"}])
    with pytest.raises(config_lib.ConfigError, match="reads the real training split"):
        _cfg(test_sets=[{"name": "tr", "split": "train"}])
    with pytest.raises(config_lib.ConfigError, match="source 'pgn' is not among the"):
        _cfg(groups=[{"sources": ["pgn"], "ratios": [0.5]}])
    with pytest.raises(config_lib.ConfigError, match="mode synth-only and real_fraction=0 go together"):
        _cfg(arms=[{"mode": "synth-only", "source": "sgn", "ratio": 1}])


def test_groups_expand_the_reviews_table_2_with_baselines_and_fig2_labels():
    cfg = _cfg(groups=[
        {"sources": ["sgn"], "ratios": ["1/4", "1/2", 1], "sampling": ["random", "worst"]},
        {"sources": ["sgn"], "ratios": ["1/2"], "class_ratios": [{"melanoma": 0.75}]},
        {"mode": "anonymization", "sources": ["sgn"], "real_fractions": ["1/16"], "ratios": ["1/16", "15/16"]},
        {"mode": "synth-only", "sources": ["sgn"], "real_fractions": [0], "ratios": [1]},
    ])
    arms = cfg.all_arms()
    labels = [a.label(list(CLASSES)) for a in arms]
    assert labels == ["1:0", "1:1/4 sgn", "1:1/4 sgn wst", "1:1/2 sgn", "1:1/2 sgn wst", "1:1 sgn", "1:1 sgn wst",
                      "(1:1/2:3/4) sgn", "1/16:0", "1/16:1/16 sgn", "1/16:15/16 sgn", "0:1 sgn"]
    by_label = dict(zip(labels, arms))
    assert cfg.baseline_of(by_label["1:1/2 sgn wst"]).name == "augmentation-1-0"
    assert cfg.baseline_of(by_label["1/16:15/16 sgn"]).name == "anonymization-1over16-0"
    assert cfg.baseline_of(by_label["0:1 sgn"]).name == "augmentation-1-0"  # synth-only vs all real data
    assert cfg.baseline_of(by_label["1:0"]) is None
    assert by_label["(1:1/2:3/4) sgn"].class_ratios == {"melanoma": 0.75}
    assert GroupConfig(sources=("a",), ratios=(0.5,)).arms()[0] == ArmConfig(mode="augmentation")


def test_read_rows_drops_a_torn_last_line_and_duplicates(tmp_path):
    path = str(tmp_path / "results.jsonl")
    with open(path, "w") as f:
        f.write('{"cell": "a/r00", "v": 1}\n{"cell": "a/r00", "v": 2}\n{"cell": "b/r00", "v": 3}\n{"cell": "c/r0')
    assert [(r["cell"], r["v"]) for r in study_mod.read_rows(path)] == [("a/r00", 1), ("b/r00", 3)]
    with open(path, "w") as f:
        f.write('{"cell": "a/r00"}\nnot json\n{"cell": "b/r00"}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        study_mod.read_rows(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("study_cache")
    real = demo.ensure_demo_dataset("demo-derm", 16, 300, seed=0, cache_dir=str(cache))
    fake = demo.ensure_demo_dataset("demo-derm", 16, 300, seed=1, cache_dir=str(cache))  # stands in for a GAN
    cfg = config_lib.replace(StudyConfig(), {
        "name": "tiny", "data": {"data_dir": real, "image_size": 16, "classes": list(CLASSES)},
        "classifier": {"filters": [4, 8]},
        "training": {"max_epochs": 1, "tta": 2, "batch_size": 16},
        "augmentation": {"rotation_degrees": 10.0},
        "replicates": 2, "bootstrap": 20,
        "test_sets": [{"name": "in", "split": "test"},
                      {"name": "dark", "data_dir": fake, "split": "val+test", "distribution": "out",
                       "fitzpatrick": [4, 5, 6]}],
        "sources": [{"name": "fake", "data_dir": fake}],
        "groups": [{"sources": ["fake"], "ratios": [0.5]}],
    })
    return cfg


def test_a_killed_study_resumes_with_exactly_one_row_per_cell(tiny, tmp_path, monkeypatch):
    out = str(tmp_path / "study")
    trained = []
    real_train = study_mod.train_classifier

    def counting(model, images, labels, *args, **kwargs):
        trained.append(len(labels))
        return real_train(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(study_mod, "train_classifier", counting)
    first = Study(tiny, out, log=lambda _: None).run(max_cells=3)  # "killed" after three models
    assert [r["cell"] for r in first] == ["augmentation-1-0/r00", "augmentation-1-1over2-fake-random/r00",
                                          "augmentation-1-0/r01"]
    with open(os.path.join(out, "results.jsonl"), "a") as f:
        f.write('{"cell": "augmentation-1-1over2-fake-ran')  # killed while writing the fourth row
    with pytest.raises(config_lib.ConfigError, match="already holds a study; continue it with --resume"):
        Study(tiny, out).run()
    rows = Study(tiny, out, log=lambda _: None).run(resume=True)
    assert len(trained) == 4  # only the missing cell was trained
    lines = [json.loads(line) for line in open(os.path.join(out, "results.jsonl"))]
    cells = [r["cell"] for r in lines]
    assert sorted(cells) == sorted(f"{a}/r{r:02d}" for a in ("augmentation-1-0", "augmentation-1-1over2-fake-random")
                                   for r in (0, 1))
    assert len(set(cells)) == len(cells) == len(rows) == 4
    assert len(Study(tiny, out, log=lambda _: None).run(resume=True)) == 4 and len(trained) == 4
    changed = config_lib.replace(tiny, {"replicates": 3})
    with pytest.raises(config_lib.ConfigError, match=r"started with other settings \(replicates differ\)"):
        Study(changed, out).run(resume=True)

    # paired design: replicate r of both arms trained on the same real subset, the synthetic sample is fixed
    by = {r["cell"]: r for r in lines}
    base, arm = by["augmentation-1-0/r00"], by["augmentation-1-1over2-fake-random/r00"]
    assert base["n_real"] == arm["n_real"] and base["seed"] == arm["seed"] and base["n_synthetic"] == 0
    real_counts = np.array(base["train_counts"])
    assert arm["n_synthetic"] == int(np.floor(real_counts * 0.5 + 0.5).sum())
    assert arm["n_synthetic"] == by["augmentation-1-1over2-fake-random/r01"]["n_synthetic"]
    selection = json.load(open(os.path.join(out, "selections", "augmentation-1-1over2-fake-random.json")))
    assert len(selection["indices"]) == arm["n_synthetic"]
    for r in lines:
        assert set(r["tests"]) == {"in", "dark"} and 0 <= r["tests"]["in"]["auc"] <= 1
        assert set(r["tests"]["dark"]["fitzpatrick"]) <= {"IV", "V", "VI"}
        assert os.path.isfile(study_mod.predictions_path(out, r["arm"], r["replicate"]))

    summary = write_report(tiny, rows, out)
    for name in ("results.csv", "summary.json", "report.md", "boxplots.png", "f1_per_class.png"):
        assert os.path.isfile(os.path.join(out, name)), name
    csv_lines = open(os.path.join(out, "results.csv")).read().splitlines()
    assert len(csv_lines) == 5 and "in:auc" in csv_lines[0] and "dark:f1:melanoma" in csv_lines[0]
    comparison = summary["tests"]["in"]["comparisons"][0]
    t_values = [by[f"augmentation-1-1over2-fake-random/r0{i}"]["tests"]["in"]["auc"] -
                by[f"augmentation-1-0/r0{i}"]["tests"]["in"]["auc"] for i in (0, 1)]
    assert comparison["pairs"] == 2 and comparison["t_test"]["mean_difference"] == pytest.approx(np.mean(t_values))
    assert summary["complete"] and summary["tests"]["dark"]["distribution"] == "out"
    report = open(os.path.join(out, "report.md")).read()
    assert "## Did synthetic data help?" in report and "![" in report and "| 1:1/2 fake |" in report
    if not any(c["significant"] for t in summary["tests"].values() for c in t["comparisons"]):
        assert "**No arm differs significantly from its baseline on any test set**" in report


def test_verdict_states_significant_results_with_direction_and_size():
    summary = {"metric": "auc", "alpha": 0.05, "rows": 20, "cells_expected": 20, "tests": {"in": {
        "distribution": "in", "comparisons": [
            {"label": "1:1 sgn", "baseline_label": "1:0", "significant": True, "direction": "worse",
             "t_test": {"p_value": 0.001, "p_holm": 0.002, "mean_difference": -0.031, "ci_low": -0.04,
                        "ci_high": -0.02}, "bootstrap": {"p_value": 0.01, "p_holm": 0.02, "difference": -0.03}},
            {"label": "1:1/2 sgn", "baseline_label": "1:0", "significant": False, "direction": "no significant "
             "difference", "t_test": {"p_value": 0.4, "p_holm": 0.4, "mean_difference": 0.004, "ci_low": -0.01,
                                      "ci_high": 0.02}, "bootstrap": None}]}}}
    lines = verdict(summary)
    assert lines[0].startswith("- **1:1 sgn** vs 1:0 on `in` (in-distribution): worse, AUC -0.031")
    assert "Holm p = 0.002" in lines[0] and "The other 1 comparison(s) show no significant difference" in lines[1]
