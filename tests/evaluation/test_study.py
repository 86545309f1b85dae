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


def test_a_killed_study_resumes_with_exactly_one_row_per_cell(tiny, tmp_path, trained_cells):
    out = str(tmp_path / "study")
    trained = trained_cells
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


# ---------------------------------------------------------------------------------------------- union sources


def test_union_source_config_is_validated_with_the_fix_named():
    cfg = _cfg(sources=[{"name": "sgn", "data_dir": "s"}, {"name": "pgn", "data_dir": "p"},
                        {"name": "all", "union": ["sgn", "pgn"]}],
               groups=[{"sources": ["sgn", "all"], "ratios": ["1/2"], "sampling": ["random", "diverse"]}])
    assert cfg.sources[2].union == ("sgn", "pgn") and cfg.sources[2].mix == "pooled"
    labels = [a.label(list(CLASSES)) for a in cfg.all_arms()]
    assert labels == ["1:0", "1:1/2 sgn", "1:1/2 sgn div", "1:1/2 all", "1:1/2 all div"]  # the review's Fig. 2
    with pytest.raises(config_lib.ConfigError, match=r"source 'all': union member 'spd' is not among the "
                                                     r"\[\[sources\]\] \['sgn', 'all'\]"):
        _cfg(sources=[{"name": "sgn", "data_dir": "s"}, {"name": "all", "union": ["sgn", "spd"]}])
    with pytest.raises(config_lib.ConfigError, match="union member 'all' is itself a union; list its members"):
        _cfg(sources=[{"name": "sgn", "data_dir": "s"}, {"name": "all", "union": ["sgn"]},
                      {"name": "more", "union": ["all", "sgn"]}])
    with pytest.raises(config_lib.ConfigError, match="it reads its members' datasets, so leave data_dir"):
        _cfg(sources=[{"name": "sgn", "data_dir": "s"}, {"name": "all", "union": ["sgn"], "data_dir": "x"}])
    with pytest.raises(config_lib.ConfigError, match=r"mix must be one of \('pooled', 'equal'\). Received: 'half'"):
        _cfg(sources=[{"name": "sgn", "data_dir": "s"}, {"name": "all", "union": ["sgn"], "mix": "half"}])
    with pytest.raises(config_lib.ConfigError, match="mix applies to union sources only"):
        _cfg(sources=[{"name": "sgn", "data_dir": "s", "mix": "equal"}])


def _pool(labels, value):
    labels = np.asarray(labels, np.int64)
    return study_mod.Images(np.full((len(labels), 4, 4, 3), value, np.uint8), labels, np.zeros(len(labels), np.int64))


def test_a_union_is_sampled_like_any_source_without_copying_its_members(tmp_path):
    a, b = _pool([0] * 6 + [1] * 6, 10), _pool([0] * 4 + [1] * 4, 200)
    union = study_mod.UnionImages({"a": a, "b": b})
    assert len(union) == 20 and union.labels.tolist() == a.labels.tolist() + b.labels.tolist()
    got = union.take([13, 0, 12])
    assert got.images[:, 0, 0, 0].tolist() == [200, 10, 200] and got.labels.tolist() == [0, 0, 0]
    assert union.counts_by_member([0, 12, 13, 19]) == {"a": 1, "b": 3}
    assert union.parts[0] is a and union.parts[1] is b  # the members' arrays are referenced, not copied

    cfg = _cfg(sources=[{"name": "a", "data_dir": "a"}, {"name": "b", "data_dir": "b"},
                        {"name": "all", "union": ["a", "b"]}, {"name": "even", "union": ["a", "b"], "mix": "equal"}],
               groups=[{"sources": ["all", "even"], "ratios": [1], "sampling": ["random", "best", "diverse"]}])
    study = Study(cfg, str(tmp_path), log=lambda _: None)
    real = study_mod.Images(np.zeros((8, 4, 4, 3), np.uint8), np.array([0] * 4 + [1] * 4), np.zeros(8, np.int64))
    study._data = {"train": real, "val": real, "tests": {}, "pools": {"a": a, "b": b}}
    study._data["pools"]["all"] = study_mod.UnionImages({"a": a, "b": b})
    study._data["pools"]["even"] = study_mod.UnionImages({"a": a, "b": b})
    # "best" ranks both members' images by the ancillary classifier's error; a's are all easy, b's all hard
    study._cache = {("errors", "a"): np.zeros(12), ("errors", "b"): np.ones(8),
                    ("hashes", "a"): np.tile(np.arange(64) % 2 == 0, (12, 1)),  # a: 12 copies of one image
                    ("hashes", "b"): np.random.default_rng(0).random((8, 64)) < 0.5}
    every = study.arms
    study.arms = [x for x in every if x.name != "augmentation-1-1-even-diverse"]
    chosen = study.selections()
    assert len(chosen) == 6 and len(chosen.pop("augmentation-1-0")) == 0
    for name in chosen:
        assert np.bincount(study._data["pools"]["all"].labels[chosen[name]]).tolist() == [4, 4], name
    assert set(chosen["augmentation-1-1-all-best"]) <= set(range(12))  # the easy (member a) images first
    record = json.load(open(tmp_path / "selections" / "augmentation-1-1-all-best.json"))
    assert record["members"] == {"a": 8, "b": 0} and record["counts"] == {"nevus": 4, "melanoma": 4}
    # diverse over the pooled union: a's duplicates count once per class, so b supplies the rest
    record = json.load(open(tmp_path / "selections" / "augmentation-1-1-all-diverse.json"))
    assert record["members"] == {"a": 2, "b": 6}
    # mix = "equal": each class's count split between the members, whatever the method prefers
    for method in ("random", "best"):
        record = json.load(open(tmp_path / "selections" / f"augmentation-1-1-even-{method}.json"))
        assert record["members"] == {"a": 4, "b": 4}, method
    with pytest.raises(config_lib.ConfigError, match=r"arm augmentation-1-1-even-diverse: source 'a' has 1 usable "
                                                     r"images of class 'nevus' after removing near-duplicates"):
        study.arms = [x for x in every if x.name == "augmentation-1-1-even-diverse"]
        study.selections()


def test_modes_twins_and_synth_only_baselines_follow_table_2():
    cfg = _cfg(groups=[
        {"sources": ["sgn"], "ratios": [1]},
        {"mode": "anonymization", "sources": ["sgn"], "real_fractions": ["1/2", 1], "ratios": ["1/2", 1]},
        {"mode": "synth-only", "sources": ["sgn"], "real_fractions": [0], "ratios": [1]}])
    assert cfg.twins() == {"anonymization-1-0": "augmentation-1-0", "anonymization-1-1-sgn-random":
                           "augmentation-1-1-sgn-random"}
    arms = {a.name: a for a in cfg.all_arms()}
    assert cfg.baseline_of(arms["anonymization-1-1-sgn-random"]).name == "anonymization-1-0"  # same mode first
    assert cfg.modes() == {
        "augmentation": ["augmentation-1-0", "augmentation-1-1-sgn-random"],
        "anonymization": ["anonymization-1over2-0", "anonymization-1over2-1over2-sgn-random",
                          "anonymization-1over2-1-sgn-random", "anonymization-1-0", "anonymization-1-1over2-sgn-random",
                          "anonymization-1-1-sgn-random"],
        "synth-only": ["augmentation-1-0", "synth-only-0-1-sgn-random"]}
    alone = _cfg(groups=[{"mode": "synth-only", "sources": ["sgn"], "real_fractions": [0], "ratios": [1]}])
    assert [a.name for a in alone.all_arms()] == ["augmentation-1-0", "synth-only-0-1-sgn-random"]
    with pytest.raises(config_lib.ConfigError, match=r"mode synth-only trains on synthetic images alone \(paper "
                                                     r"003\): set real_fractions = \[0\]"):
        _cfg(groups=[{"mode": "synth-only", "sources": ["sgn"], "ratios": [1]}])


def test_a_study_started_before_new_config_fields_still_resumes(tmp_path):
    cfg = _cfg(data={"data_dir": str(tmp_path / "real"), "classes": list(CLASSES)})
    study = Study(cfg, str(tmp_path / "s"), log=lambda _: None)
    study.prepare()
    path = tmp_path / "s" / "study.json"
    saved = json.load(open(path))
    for source in saved["sources"]:  # as written before sources had union / mix
        del source["union"], source["mix"]
    json.dump(saved, open(path, "w"))
    assert study.prepare(resume=True) == []
    saved["replicates"] = 3
    json.dump(saved, open(path, "w"))
    with pytest.raises(config_lib.ConfigError, match=r"\(replicates differ\)"):
        study.prepare(resume=True)


@pytest.fixture(scope="module")
def second_fake(tiny, tmp_path_factory):
    return demo.ensure_demo_dataset("demo-derm", 16, 300, seed=2, cache_dir=str(tmp_path_factory.mktemp("fake2")))


def test_every_mode_trains_end_to_end_and_is_labelled_in_the_report(tiny, second_fake, tmp_path, monkeypatch):
    fake = tiny.sources[0].data_dir
    cfg = config_lib.replace(tiny, {
        "replicates": 1, "test_sets": [{"name": "in", "split": "test"}],
        "sources": [{"name": "fake", "data_dir": fake}, {"name": "fake2", "data_dir": second_fake},
                    {"name": "all", "union": ["fake", "fake2"]}],
        # Three models (the anonymization arm is compared with 1:0 here to save the 1/2:0 baseline's training;
        # test_modes_twins_and_synth_only_baselines_follow_table_2 checks the review's grid).
        "arms": [{"real_fraction": 1},
                 {"mode": "anonymization", "source": "all", "real_fraction": "1/2", "ratio": "1/2",
                  "baseline": "augmentation-1-0"}],
        "groups": [{"mode": "anonymization", "real_fractions": [1]},  # the 1:0 upper bound: the same models
                   {"mode": "synth-only", "sources": ["fake"], "real_fractions": [0], "ratios": ["1/2"]}]})
    trained = []
    real_train = study_mod.train_classifier

    def counting(model, images, labels, *args, **kwargs):
        trained.append(np.bincount(labels, minlength=2).tolist())
        return real_train(model, images, labels, *args, **kwargs)

    monkeypatch.setattr(study_mod, "train_classifier", counting)
    out = str(tmp_path / "modes")
    rows = Study(cfg, out, log=lambda _: None).run()
    by = {r["arm"]: r for r in rows}
    assert list(by) == ["augmentation-1-0", "anonymization-1over2-1over2-all-random", "anonymization-1-0",
                        "synth-only-0-1over2-fake-random"]
    assert len(trained) == 3  # the anonymization 1:0 reuses the augmentation 1:0 models
    real_counts = np.array(by["augmentation-1-0"]["train_counts"])
    half = np.floor(real_counts * 0.5 + 0.5).astype(int)  # synthetic counts round half up (sampling.py)
    anon = by["anonymization-1over2-1over2-all-random"]
    assert anon["mode"] == "anonymization" and anon["n_real"] == sum(round(n / 2) for n in real_counts.tolist())
    assert anon["n_synthetic"] == half.sum() and sum(anon["synthetic_members"].values()) == half.sum()
    assert min(anon["synthetic_members"].values()) > 0  # both GANs' images are in the pooled sample
    synth = by["synth-only-0-1over2-fake-random"]
    assert synth["n_real"] == 0 and synth["train_counts"] == half.tolist() and trained[-1] == half.tolist()
    twin = by["anonymization-1-0"]
    assert twin["same_model_as"] == "augmentation-1-0/r00" and twin["tests"] == by["augmentation-1-0"]["tests"]
    np.testing.assert_array_equal(study_mod.load_predictions(out, "anonymization-1-0", 0)["in"],
                                  study_mod.load_predictions(out, "augmentation-1-0", 0)["in"])

    summary = write_report(cfg, rows, out)
    assert summary["models_trained"] == 3 and summary["rows"] == 4 and summary["complete"]
    assert summary["modes"]["synth-only"] == ["augmentation-1-0", "synth-only-0-1over2-fake-random"]
    for c in summary["tests"]["in"]["comparisons"]:  # Holm within each mode: here one comparison per mode
        assert c["mode"] in ("anonymization", "synth-only")
        assert c["bootstrap"]["p_holm"] == pytest.approx(c["bootstrap"]["p_value"])
    report = open(os.path.join(out, "report.md")).read()
    sections = report.split("### ")
    assert sections[1].startswith("Augmentation: synthetic images added") and "| 1:0 |" in sections[1]
    assert sections[2].startswith("Anonymization: synthetic images replace real ones")
    for label in ("| 1:0 (augmentation) |", "| 1/2:1/2 all |", "| 1:0 † |"):
        assert label in sections[2], label
    assert sections[3].startswith("Synth-only: trained on synthetic images alone (paper 003)")
    assert "| 1:0 (augmentation) |" in sections[3] and "| 0:1/2 fake |" in sections[3]
    assert "† the same models as the identically trained arm of another mode" in report
    assert "Models trained: 3 for 4 rows (4 arms x 1 replicates)" in report
    assert "synthetic sources: `fake`, `fake2`, `all` = fake + fake2 (pooled)" in report
    assert "| 1/2:1/2 all [anon.] |" in report  # the Fitzpatrick table tags each label with its mode
    for name in ("boxplots.png", "f1_per_class.png"):
        assert open(os.path.join(out, name), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
