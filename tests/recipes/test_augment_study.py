"""End to end: `python -m keras_medgan.recipes.augment_study --preset smoke`, cut midway and resumed."""

import json
import os

import pytest

from keras_medgan.data import schema
from keras_medgan.evaluation import study as study_mod
from keras_medgan.recipes import augment_study

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MEDGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_MEDGAN_RUNS", str(tmp_path / "runs"))
    return tmp_path


def _rows(path):
    if not os.path.exists(path):
        return []
    return [line for line in open(path).read().split("\n") if line.endswith("}")]


def test_smoke_study_runs_end_to_end_and_a_cut_study_resumes_only_its_missing_cells(env, request):
    # In-process (a SIGKILLed study is covered by tests/evaluation/test_study.py's cut-row resume; a subprocess
    # here would only add TensorFlow's start-up to the suite).
    run_dir = str(env / "runs" / "augment_study" / "00001-smoke")
    results = os.path.join(run_dir, "results.jsonl")
    assert augment_study.main(["--preset", "smoke", "--run-dir", run_dir]) == 0
    complete = _rows(results)
    assert len(complete) == 4
    # "Killed" after two models, while writing the third row: the file ends in half a line.
    with open(results, "w") as f:
        f.write("\n".join(complete[:2]) + "\n" + complete[2][:25])
    trained = request.getfixturevalue("trained_cells")  # counts from here on
    assert augment_study.main(["--resume", "--run-dir", run_dir]) == 0
    assert len(trained) == 2  # only the two missing cells; the GAN is not trained again
    rows = [json.loads(line) for line in _rows(results)]
    cells = [r["cell"] for r in rows]
    expected = {f"{arm}/r{r:02d}" for arm in ("augmentation-1-0", "augmentation-1-1over2-cdcgan-random")
                for r in (0, 1)}
    assert len(cells) == len(set(cells)) == 4 and set(cells) == expected
    assert rows[:2] == [json.loads(line) for line in complete[:2]]  # finished rows are kept as they were
    for name in ("recipe_config.json", "study.json", "results.csv", "summary.json", "report.md", "boxplots.png",
                 "f1_per_class.png", "gan/cdcgan/generator.keras", "synth/cdcgan/dataset/dataset.json"):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    report = open(os.path.join(run_dir, "report.md")).read()
    assert report.startswith("# Augmentation / anonymization study: smoke")
    assert "## Did synthetic data help?" in report and "## Test set `dark-skin` (out-distribution)" in report
    assert "Model selection: validation split only" in report and "| 1:1/2 cdcgan |" in report
    study = json.load(open(os.path.join(run_dir, "study.json")))
    assert study["sources"][0]["data_dir"].endswith(os.path.join("synth", "cdcgan", "dataset"))
    assert study["test_sets"][1]["data_dir"].endswith("demo-derm-32px-200img-seed1")

    # resuming a finished study trains nothing and keeps its rows
    assert augment_study.main(["--resume", "--run-dir", run_dir]) == 0
    assert len(_rows(results)) == 4 and len(trained) == 2


def test_command_line_refuses_test_set_selection_and_incomplete_presets(env, capsys):
    with pytest.raises(SystemExit) as info:
        augment_study.main(["--preset", "smoke", "--set", "training.selection_split=test"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "refused: training.selection_split='test' selects on a test set" in err
    assert "set training.selection_split=val" in err
    with pytest.raises(SystemExit) as info:
        augment_study.main(["--preset", "paper"])
    assert info.value.code == 2 and "has no arms or no test sets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        augment_study.main(["--resume", "--set", "replicates=2", "--run-dir", str(env)])
    assert "no study found" in capsys.readouterr().err


def test_dry_run_prints_the_resolved_demo_config(env, capsys):
    assert augment_study.main(["--dry-run", "--set", "replicates=4"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["replicates"] == 4 and cfg["preset"] == "demo" and cfg["data"]["image_size"] == 32
    assert [t["distribution"] for t in cfg["test_sets"]] == ["in", "out"]
    assert cfg["test_sets"][1]["fitzpatrick"] == [5, 6]


def test_paper_toml_is_the_reviews_table_2():
    path = os.path.join(REPO, "recipes", "augment_study", "paper.toml")
    cfg = augment_study.config_lib.replace(augment_study.get_config("paper"), augment_study.config_lib.load_toml(path))
    labels = [a.label(list(cfg.data.classes)) for a in cfg.all_arms()]
    for label in ("1:0", "1:1/4 sgn", "1:1/2 sgn", "1:1 sgn", "(1:1/2:3/4) sgn", "(1:1/2:1) sgn", "1:1/6 p2p",
                  "1:1/6 spd", "1:1/2 pgn", "1:1/2 all", "1:1/2 sgn div", "1:1/2 sgn bst", "1:1/2 sgn wst", "1/16:0",
                  "1/16:1/16 sgn", "1/16:15/16 sgn", "1/8:7/8 sgn", "1/4:3/4 sgn", "1/2:1/2 sgn"):
        assert label in labels, label
    assert [t.distribution for t in cfg.test_sets] == ["in", "in", "out", "out", "out"]
    assert cfg.replicates == 10 and cfg.training.tta == 50 and cfg.classifier.name == "inception_v3"
    everything = {s.name: s for s in cfg.sources}["all"]
    assert everything.union == ("p2p", "spd", "pgn", "sgn") and not everything.data_dir
    # the anonymization grid's 1:0 and 1:1 are the augmentation arms' models: 26 arms, 24 models per replicate
    assert len(labels) == 26 and cfg.twins() == {"anonymization-1-0": "augmentation-1-0",
                                                 "anonymization-1-1-sgn-random": "augmentation-1-1-sgn-random"}
    assert list(cfg.modes()) == ["augmentation", "anonymization"]


def _write_info(folder, counts):
    info = schema.DatasetInfo(source="test", command="test", image_size=[16, 16], channels=3,
                              class_names=list(counts), counts={"train": counts})
    schema.write_dataset_info(folder, info)
    return str(folder)


def test_union_sources_are_read_not_generated_and_members_generate_their_share(env):
    real = _write_info(env / "real", {"nevus": 40, "melanoma": 10})
    cfg = augment_study.config_lib.replace(augment_study.get_config("smoke"), {
        "data": {"data_dir": real, "classes": ["nevus", "melanoma"]},
        "sources": [{"name": "a", "gan_args": ["data.image_size=32"]}, {"name": "b", "data_dir": "given/b"},
                    {"name": "all", "union": ["a", "b"]}],
        "groups": [{"sources": ["a"], "ratios": ["1/4"]}, {"sources": ["all"], "ratios": [1]}]})
    # "a" alone needs 10 nevus; the union's 1:1 needs 40, half of it from each of its two members
    assert augment_study.images_needed(cfg, "a") == 20 * 2
    only_a = augment_study.config_lib.replace(cfg, {"groups": [{"sources": ["a"], "ratios": ["1/4"]}]})
    assert augment_study.images_needed(only_a, "a") == 10 * 2
    given = augment_study.config_lib.replace(cfg, {"sources": [{"name": "a", "data_dir": "given/a"},
                                                               {"name": "b", "data_dir": "given/b"},
                                                               {"name": "all", "union": ["a", "b"]}]})
    made = augment_study.make_sources(given, str(env / "run"))
    assert [(s.name, s.data_dir, s.union) for s in made.sources] == [("a", "given/a", ()), ("b", "given/b", ()),
                                                                     ("all", "", ("a", "b"))]
    assert not os.path.exists(env / "run" / "gan")  # no GAN trained for a union or a given dataset


def test_a_second_process_on_the_same_study_folder_is_refused(env, capsys, hold_study_lock):
    run_dir = env / "runs" / "augment_study" / "00001-smoke"
    proc = hold_study_lock(run_dir)
    assert augment_study.main(["--preset", "smoke", "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: the study folder {run_dir} is already being run by PID {proc.pid} ")
    assert "Wait for it to finish, or stop that process" in err
    assert os.listdir(run_dir) == ["study.lock"]  # refused before writing anything
    cfg = augment_study.config_lib.replace(augment_study.get_config("smoke"), {"data": {"data_dir": "x"},
                                                                              "sources": [{"name": "cdcgan",
                                                                                           "data_dir": "y"}]})
    with pytest.raises(study_mod.StudyLocked, match=f"already being run by PID {proc.pid}"):
        study_mod.Study(cfg, str(run_dir)).run()
