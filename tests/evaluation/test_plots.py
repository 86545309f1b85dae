"""The study's figures: Fig. 2 box plots per mode and a per-class F1 chart that stays readable with many arms."""

import struct

import numpy as np
import pytest

from keras_medgan.evaluation import plots

pytest.importorskip("matplotlib")

CLASSES = ["nevus", "melanoma", "basal cell carcinoma", "actinic keratosis", "benign keratosis", "dermatofibroma",
           "vascular lesion", "squamous cell carcinoma"]


def _arm(label, mode, baseline, auc, f1, same=None):
    rng = np.random.default_rng(int(auc * 1000))
    return {"label": label, "mode": mode, "baseline": baseline, "same_model_as": same,
            "auc": {"mean": auc}, "values": (auc + rng.normal(0, 0.01, 3)).tolist(),
            "f1": {c: {"f1": f, "ci_low": f - 0.05, "ci_high": min(f + 0.05, 1.0)} for c, f in zip(CLASSES, f1)}}


def _summary():
    f1 = np.linspace(0.3, 0.9, len(CLASSES))
    arms = {
        "augmentation-1-0": _arm("1:0", "augmentation", None, 0.80, f1),
        "augmentation-1-1over2-sgn-random": _arm("1:1/2 sgn", "augmentation", "augmentation-1-0", 0.82, f1 + 0.02),
        "augmentation-1-1-sgn-random": _arm("1:1 sgn", "augmentation", "augmentation-1-0", 0.71, f1 - 0.1),
        "augmentation-1-1over2-all-random": _arm("1:1/2 all", "augmentation", "augmentation-1-0", 0.79, f1),
        "anonymization-1over4-0": _arm("1/4:0", "anonymization", None, 0.70, f1 - 0.2),
        "anonymization-1over4-3over4-sgn-random": _arm("1/4:3/4 sgn", "anonymization", "anonymization-1over4-0",
                                                       0.90, f1 + 0.05),
        "anonymization-1-0": _arm("1:0", "anonymization", None, 0.80, f1, same="augmentation-1-0/r00"),
    }
    modes = {"augmentation": [a for a in arms if a.startswith("augmentation")],
             "anonymization": [a for a in arms if a.startswith("anonymization")]}
    tests = {name: {"distribution": d, "arms": arms} for name, d in (("isic19", "in"), ("derm7pt", "out"))}
    return {"metric": "auc", "class_names": CLASSES, "modes": modes, "tests": tests}


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_f1_chart_shows_the_best_and_worst_arm_with_their_baselines_when_there_are_many():
    test = _summary()["tests"]["isic19"]
    shown, note = plots.f1_arms(test, "auc", max_arms=4)
    # best: 1/4:3/4 sgn (0.90) after its baseline 1/4:0; worst: 1:1 sgn (0.71) after 1:0; the twin is skipped
    assert shown == ["anonymization-1over4-0", "anonymization-1over4-3over4-sgn-random", "augmentation-1-0",
                     "augmentation-1-1-sgn-random"]
    assert note == "4 of 6 arms: the best and the worst by mean AUC, with their baselines"
    few = {"arms": {k: v for k, v in test["arms"].items() if k.startswith("augmentation-1-1")
                    or k == "augmentation-1-0"}}
    # up to max_arms: all of them, the baseline first, no note
    assert plots.f1_arms(few, "auc", max_arms=4) == (["augmentation-1-0", "augmentation-1-1over2-sgn-random",
                                                      "augmentation-1-1-sgn-random",
                                                      "augmentation-1-1over2-all-random"], "")


def test_f1_chart_and_box_plots_write_readable_pngs_for_many_arms_and_classes(tmp_path):
    summary = _summary()
    path = plots.f1_bars(summary, str(tmp_path / "f1.png"))
    width, height = _png_size(path)
    # two panels of at most four bars per class; bounded width whatever the number of arms
    assert 900 < width < 18 * 120 + 400 and 700 < height < 2 * 4.2 * 120 + 300
    path = plots.box_plots(summary, str(tmp_path / "box.png"))
    width, height = _png_size(path)
    assert width > 700 and height > 500  # a row per mode, a panel per test set
    single = dict(summary, modes={"augmentation": summary["modes"]["augmentation"]})
    _, single_height = _png_size(plots.box_plots(single, str(tmp_path / "box1.png")))
    assert single_height < height
