"""The evaluation protocol (``metrics/evaluate.py``) on hand-built feature sets."""

import json
import math

import numpy as np
import pytest

from keras_medgan.metrics import evaluate as ev
from keras_medgan.metrics import intervals
from keras_medgan.metrics.frechet import frechet_distance
from keras_medgan.metrics.kernel import kid_subset_values
from keras_medgan.metrics.memorization import MemorizationReport
from keras_medgan.metrics.sources import FeatureSet

CLASSES = ["melanoma", "nevus", "eczema", "rare"]
RECORD = {"name": "classifier", "weights": "sha256:abc", "input_size": 16, "resize_filter": "bilinear",
          "channels": 3, "feature_dim": 4, "num_classes": 3, "fingerprint": "f" * 16, "source": "/r.keras"}
SMALL = ev.EvalSettings(metrics=("fid", "kid", "is", "prdc"), trials=6, bootstrap=8, kid_subsets=12, seed=1)


def _set(n, shift=0.0, seed=0, source="real:val", labels=None, probs=None, resolution=16, d=4):
    rng = np.random.default_rng(seed)
    if labels is None:  # three classes, plus 3 images of a fourth, rare one
        labels = np.concatenate([np.arange(n - 3) % 3, [3, 3, 3]])
    if probs is None:
        probs = np.eye(3)[np.arange(n) % 3] * 0.9 + 0.1 / 3
    return FeatureSet(features=(rng.normal(size=(n, d)) + shift).astype(np.float32),
                      probs=np.asarray(probs, np.float32), labels=np.asarray(labels, np.int32),
                      fitzpatrick=(1 + np.arange(n) % 6).astype(np.int32),
                      thumbnails=rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), source=source,
                      resolution=resolution)


@pytest.fixture(scope="module")
def result():
    real, fake = _set(63), _set(60, shift=0.5, seed=1, source="fake/")
    out, report = ev.evaluate_features(real, fake, RECORD, SMALL, class_names=CLASSES, extra={"checkpoint": "c.npz"})
    return real, fake, out, report


def test_result_holds_exactly_the_requested_metrics_and_is_json(result):
    _, _, out, report = result
    assert report is None
    assert set(out) == {"settings", "fid", "kid", "is", "prdc", "per_class", "per_fitzpatrick"}
    assert set(out["fid"]) == {"value", "trials", "bootstrap"}
    assert set(out["fid"]["trials"]) == {"mean", "std", "ci_low", "ci_high", "trials", "subset_fraction"}
    assert set(out["kid"]) == {"mean", "std", "ci_low", "ci_high", "subsets", "subset_size"}
    assert set(out["is"]) == {"mean", "std", "splits", "bootstrap"}
    assert set(out["prdc"]) == {"k", "precision", "recall", "density", "coverage"}
    assert all(set(out["prdc"][n]) == {"value", "ci_low", "ci_high"} for n in ("precision", "recall", "coverage"))
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_settings_record_what_decides_the_values(result):
    real, fake, out, _ = result
    s = out["settings"]
    assert s["extractor"] == RECORD
    assert (s["resolution"], s["num_real"], s["num_fake"]) == (16, 63, 60)
    assert (s["reference"], s["fake"], s["seed"], s["trials"]) == ("real:val", "fake/", 1, 6)
    assert s["metrics"] == ["fid", "kid", "is", "prdc"] and s["checkpoint"] == "c.npz"
    assert (s["bootstrap"], s["kid_subsets"], s["subset_fraction"], s["k"]) == (8, 12, 0.8, 5)


def test_fid_value_and_trial_interval(result):
    real, fake, out, _ = result
    fid = out["fid"]
    assert fid["value"] == pytest.approx(frechet_distance(real.features, fake.features), rel=1e-12)
    t = fid["trials"]
    assert t["trials"] == 6 and t["std"] > 0
    assert t["ci_low"] == pytest.approx(t["mean"] - 1.959964 * t["std"], rel=1e-6)
    assert t["ci_high"] == pytest.approx(t["mean"] + 1.959964 * t["std"], rel=1e-6)
    expect = intervals.subset_trials(frechet_distance, real.features, fake.features, 6, 0.8, seed=1)
    assert t["mean"] == pytest.approx(expect["mean"]) and t["std"] == pytest.approx(expect["std"])
    assert fid["bootstrap"]["ci_low"] <= fid["bootstrap"]["ci_high"] and fid["bootstrap"]["resamples"] == 8


def test_kid_subsets_and_size(result):
    real, fake, out, _ = result
    kid = out["kid"]
    assert kid["subsets"] == 12 and kid["subset_size"] == round(0.8 * 60)
    values = kid_subset_values(real.features, fake.features, 12, kid["subset_size"], 1)
    assert kid["mean"] == pytest.approx(values.mean()) and kid["std"] == pytest.approx(values.std())
    assert kid["ci_low"] <= kid["mean"] <= kid["ci_high"]


def test_inception_score_golden_value():
    # One-hot predictions spread evenly over 3 classes in every split: IS is exactly 3.
    real = _set(30)
    fake = _set(30, seed=1, probs=np.eye(3)[np.arange(30) % 3])
    out, _ = ev.evaluate_features(real, fake, RECORD, ev.EvalSettings(metrics=("is",), bootstrap=0))
    assert out["is"]["splits"] == 10
    assert out["is"]["mean"] == pytest.approx(3.0, rel=1e-9) and out["is"]["std"] == pytest.approx(0.0, abs=1e-9)
    assert "bootstrap" not in out["is"]
    assert set(out) == {"settings", "is"}  # no FID / KID, so no breakdowns


def test_prdc_of_identical_sets_is_perfect():
    real = _set(30)
    out, _ = ev.evaluate_features(real, real, RECORD, ev.EvalSettings(metrics=("prdc",), bootstrap=0, k=3))
    p = out["prdc"]
    assert p["k"] == 3
    assert p["precision"]["value"] == 1.0 and p["recall"]["value"] == 1.0 and p["coverage"]["value"] == 1.0
    assert "ci_low" not in p["precision"]


def test_single_metric_and_no_intervals():
    out, _ = ev.evaluate_features(_set(30), _set(30, seed=1), RECORD,
                                  ev.EvalSettings(metrics=("fid",), trials=0, bootstrap=0))
    assert set(out) == {"settings", "fid", "per_class", "per_fitzpatrick"}
    assert set(out["fid"]) == {"value"}
    assert ev.headline(out) == {"fid": (out["fid"]["value"], None, None)}


def test_per_class_breakdown_by_name_with_small_groups_empty(result):
    _, _, out, _ = result
    per_class = out["per_class"]
    assert list(per_class) == CLASSES
    assert per_class["rare"] == {"fid": None, "kid": None, "num_real": 3, "num_fake": 3}
    for name in CLASSES[:3]:
        row = per_class[name]
        assert row["num_real"] == 20 and row["num_fake"] == 19 and row["fid"] > 0 and row["kid"] is not None
    assert list(out["per_fitzpatrick"]) == ["I", "II", "III", "IV", "V", "VI"]
    assert sum(r["num_real"] for r in out["per_fitzpatrick"].values()) == 63


def test_breakdowns_ignore_unknown_groups():
    real = _set(30)
    fake = _set(30, seed=1, labels=np.full(30, -1))
    fake.fitzpatrick[:] = 0
    out, _ = ev.evaluate_features(real, fake, RECORD, ev.EvalSettings(metrics=("fid",), trials=0, bootstrap=0))
    assert "per_class" not in out and "per_fitzpatrick" not in out


def test_min_group_setting_decides_which_groups_get_values():
    out, _ = ev.evaluate_features(_set(63), _set(60, seed=1), RECORD,
                                  ev.EvalSettings(metrics=("fid",), trials=0, bootstrap=0, min_group=25))
    assert all(row["fid"] is None for row in out["per_class"].values())


def test_memorization_needs_train_and_heldout():
    with pytest.raises(ValueError, match="training split and a held-out real split"):
        ev.evaluate_features(_set(30), _set(30, seed=1), RECORD, ev.EvalSettings(metrics=("memorization",)))
    with pytest.raises(ValueError, match="training split and a held-out"):
        ev.evaluate_features(_set(30), _set(30, seed=1), RECORD, ev.EvalSettings(metrics=("memorization",)),
                             train=_set(40, seed=2))


def test_memorization_flags_a_planted_copy():
    train, heldout, fake = _set(50, seed=2, source="d:train"), _set(30, seed=3, source="d:test"), _set(30, seed=4)
    fake.features[7] = train.features[11]
    fake.thumbnails[7] = train.thumbnails[11]
    settings = ev.EvalSettings(metrics=("memorization",), bootstrap=5, memorization_percentile=5.0)
    out, report = ev.evaluate_features(heldout, fake, RECORD, settings, train=train, heldout=heldout)
    assert isinstance(report, MemorizationReport)
    m = out["memorization"]
    assert m["n_generated"] == 30 and m["n_train"] == 50 and m["n_heldout"] == 30 and m["percentile"] == 5.0
    assert m["n_flagged"] >= 1 and report.flagged[7] and report.closest_pairs(1) == [(7, 11, 0.0)]
    assert m["train_source"] == "d:train" and m["heldout_source"] == "d:test"
    assert 0.0 <= m["authenticity_heldout_baseline"] <= 1.0
    assert m["likely_copy_bootstrap"]["resamples"] == 5
    h = ev.headline(out)
    assert h["likely_copies"][0] == m["likely_copy_fraction"] and h["authenticity"] == (m["authenticity"], None, None)
    assert "memorization: " + m["rule"] in ev.format_table(out)


def test_input_errors():
    with pytest.raises(ValueError, match="different widths"):
        ev.evaluate_features(_set(30), _set(30, d=5), RECORD)
    with pytest.raises(ValueError, match=r"too few images to evaluate: 30 real and 11 generated; need at least 12"):
        ev.evaluate_features(_set(30), _set(11, labels=np.zeros(11)), RECORD)


# ---------------------------------------------------------------------------
# headline / format_table
# ---------------------------------------------------------------------------


def test_headline_reads_the_interval_of_each_metric(result):
    _, _, out, _ = result
    h = ev.headline(out)
    assert list(h) == ["fid", "kid", "is", "precision", "recall", "density", "coverage"]
    t = out["fid"]["trials"]
    assert h["fid"] == (t["mean"], t["ci_low"], t["ci_high"])
    assert h["kid"] == (out["kid"]["mean"], out["kid"]["ci_low"], out["kid"]["ci_high"])
    assert h["is"] == (out["is"]["mean"], out["is"]["bootstrap"]["ci_low"], out["is"]["bootstrap"]["ci_high"])
    assert h["density"] == tuple(out["prdc"]["density"][k] for k in ("value", "ci_low", "ci_high"))


def test_format_table(result):
    _, _, out, _ = result
    table = ev.format_table(out)
    lines = table.splitlines()
    assert lines[0] == (f"features: classifier (sha256:abc; 16 px, bilinear; fingerprint {'f' * 16})")
    assert "real: real:val (63 images)" in lines[1] and "fake: fake/ (60 images)" in lines[1]
    assert "resolution 16 px" in lines[1] and "seed 1" in lines[1]
    fid_line = next(line for line in lines if line.startswith("fid "))
    t = out["fid"]["trials"]
    assert f"{t['mean']:.4f}" in fid_line and f"[{t['ci_low']:.4f}, {t['ci_high']:.4f}]" in fid_line
    rare = next(line for line in lines if line.strip().startswith("rare"))
    assert rare.split() == ["rare", "—", "—", "3", "3"]
    assert "per class:" in lines and "per fitzpatrick:" in lines


def test_fmt_small_numbers_keep_significant_digits():
    assert ev._fmt(None) == "—"
    assert ev._fmt(0.0) == "0.0000"
    assert ev._fmt(0.000123456) == "0.0001235"
    assert ev._fmt(12.3456789) == "12.3457"


# ---------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------


def _result(seed, fingerprint="f" * 16, n_real=40, name="classifier", metrics=("fid", "kid")):
    record = {**RECORD, "fingerprint": fingerprint, "name": name}
    out, _ = ev.evaluate_features(_set(n_real), _set(30, shift=0.3 * seed, seed=seed), record,
                                  ev.EvalSettings(metrics=metrics, trials=3, bootstrap=0, kid_subsets=5))
    return out


def test_compare_refuses_mixed_extractors():
    with pytest.raises(ev.IncomparableResults) as info:
        ev.compare({"a.json": _result(1), "b.json": _result(2, fingerprint="0" * 16, name="inception_v3")})
    message = str(info.value)
    assert "different feature extractors" in message
    assert f"a.json: classifier ({'f' * 16})" in message and f"b.json: inception_v3 ({'0' * 16})" in message
    assert isinstance(info.value, ValueError)


def test_compare_markdown_table_and_notes():
    a, b = _result(1), _result(2, n_real=50, metrics=("fid",))
    table = ev.compare({"a.json": a, "b.json": b})
    lines = table.splitlines()
    assert lines[0] == "| result | fid | kid |" and lines[1] == "|---|---|---|"
    t = a["fid"]["trials"]
    k = a["kid"]
    assert lines[2] == (f"| a.json | {t['mean']:.4f} [{t['ci_low']:.4f}, {t['ci_high']:.4f}] | "
                        f"{ev._fmt(k['mean'])} [{ev._fmt(k['ci_low'])}, {ev._fmt(k['ci_high'])}] |")
    assert lines[3].startswith("| b.json | ") and lines[3].endswith(" | — |")
    notes = [line for line in lines if line.startswith("- note:")]
    assert len(notes) == 1 and "`num_real` differs between results (40, 50)" in notes[0]
    same = ev.compare({"x": a, "y": a})
    assert "note" not in same and len(same.splitlines()) == 4
    with pytest.raises(ValueError, match="nothing to compare"):
        ev.compare({})


def test_trial_interval_matches_its_definition_with_many_trials():
    out, _ = ev.evaluate_features(_set(40), _set(40, seed=3), RECORD,
                                  ev.EvalSettings(metrics=("fid",), trials=30, bootstrap=0, subset_fraction=0.5))
    t = out["fid"]["trials"]
    assert t["subset_fraction"] == 0.5 and t["trials"] == 30
    assert math.isclose(t["ci_high"] - t["ci_low"], 2 * 1.959963984540054 * t["std"], rel_tol=1e-9)
