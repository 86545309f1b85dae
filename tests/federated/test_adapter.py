"""FedAvg maths, pooled moments, and keras_medgan without Flower installed."""

import builtins
import importlib
import json
import os
import sys

import numpy as np
import pytest

from keras_medgan.federated.adapter import pooled_moments, weighted_mean
from keras_medgan.metrics.frechet import feature_moments


def test_weighted_mean_golden():
    a = [np.array([0.0, 2.0]), np.array([[1.0]])]
    b = [np.array([4.0, 6.0]), np.array([[5.0]])]
    out = weighted_mean([a, b], [1, 3])
    np.testing.assert_allclose(out[0], [3.0, 5.0])
    np.testing.assert_allclose(out[1], [[4.0]])
    with pytest.raises(ValueError, match="positive example count"):
        weighted_mean([a, b], [1, 0])


def test_pooled_moments_equal_moments_of_the_union():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(1.0, 2.0, size=(12, 3))
    mx, cx = feature_moments(x)
    my, cy = feature_moments(y)
    mu, cov = pooled_moments([mx, my], [cx, cy], [7, 12])
    m_all, c_all = feature_moments(np.concatenate([x, y]))
    np.testing.assert_allclose(mu, m_all)
    np.testing.assert_allclose(cov, c_all)


def test_imports_without_flower_and_recipe_names_the_extra(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_flwr(name, *args, **kwargs):
        if name == "flwr" or name.startswith("flwr."):
            raise ImportError("No module named 'flwr'")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "flwr" or m.startswith("flwr.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_flwr)
    importlib.reload(importlib.import_module("keras_medgan.federated"))
    importlib.import_module("keras_medgan")
    recipe = importlib.import_module("keras_medgan.recipes.federated")
    assert recipe.main(["--preset", "smoke", "--dry-run"]) == 1
    assert 'pip install -e ".[federated]"' in capsys.readouterr().err


def test_server_state_commit_survives_a_kill_at_any_point(tmp_path):
    """``global.npz`` (weights + round, one atomic rename) is the commit point; a ``rounds.jsonl`` row written
    before a kill that prevented the commit, or torn by it, is dropped on resume."""
    from keras_medgan.federated.server import (GLOBAL_NPZ, ROUNDS_JSONL, STATE_JSON, fed_dir, load_state,
                                               read_rounds, save_arrays, truncate_rounds)

    run = str(tmp_path)
    assert load_state(run) == (0, None) and truncate_rounds(run, 0) == 0
    out = fed_dir(run)
    save_arrays(os.path.join(out, GLOBAL_NPZ), [np.ones(3), np.zeros((2, 2))], round_number=2)
    with open(os.path.join(out, STATE_JSON), "w") as f:  # killed before server_state.json caught up
        json.dump({"round": 1, "weights": GLOBAL_NPZ}, f)
    with open(os.path.join(out, ROUNDS_JSONL), "w") as f:
        f.write("".join(json.dumps({"round": r}) + "\n" for r in (1, 2, 3)) + '{"round": 4, "cli')
    assert [r["round"] for r in read_rounds(run)] == [1, 2, 3]  # the torn row is skipped
    done, weights = load_state(run)
    assert done == 2 and [w.shape for w in weights] == [(3,), (2, 2)]
    assert truncate_rounds(run, done) == 2
    assert [r["round"] for r in read_rounds(run)] == [1, 2]
    assert open(os.path.join(out, ROUNDS_JSONL)).read().count("\n") == 2
    # A run written before global.npz held its round: server_state.json says which.
    save_arrays(os.path.join(out, GLOBAL_NPZ), [np.ones(3)])
    assert load_state(run)[0] == 1


class _CountingAdapter:
    """A stand-in GAN for ``run_arm``: one number of "weights", a step counter as local state."""

    builds = 0

    def __init__(self, cfg, data_dir, averaged="gd"):
        type(self).builds += 1
        self.data_dir, self.w, self.step, self.trained = data_dir, np.zeros(1), np.zeros(()), []

    def shared_weights(self):
        return [self.w.copy()]

    def set_shared_weights(self, arrays):
        self.w = np.array(arrays[0])

    def local_state(self):
        return [self.step.copy()]

    def set_local_state(self, arrays):
        self.step = np.array(arrays[0])

    def use_data(self, data_dir):
        self.data_dir = data_dir

    def train(self, steps):
        self.trained.append((self.data_dir, int(self.step)))
        self.step = self.step + steps
        self.w = self.w + 1
        return {}

    def evaluate(self, ruler, num_images, reference_dir=None):
        m = np.array([float(self.w[0]), 0.0])
        return {"fid": 10.0 / (1 + self.w[0]), "kid": 0.0, "num_real": 4, "num_fake": 4, "real_mean": np.zeros(2),
                "real_cov": np.eye(2), "fake_mean": m, "fake_cov": np.eye(2)}


def test_arms_reuse_one_model_and_retrain_when_the_rounds_change(tmp_path, monkeypatch):
    from keras_medgan import config as config_lib
    from keras_medgan.recipes import federated, federated_gans

    monkeypatch.setitem(federated_gans.ADAPTERS, "cdcgan", _CountingAdapter)
    _CountingAdapter.builds = 0
    cfg = config_lib.replace(federated.get_config("smoke"), {"federation": {
        "client_dirs": ["c0", "c1"], "pooled_dir": "pooled", "rounds": 2, "local_steps": 3}})
    built = {}
    rows = federated.run_arm(cfg, "alone", str(tmp_path), built)
    adapter = built["adapter"]
    # Both clients trained from the same start (step 0, weights 0), 2 rounds of 3 steps each, one build.
    assert adapter.trained == [("c0", 0), ("c0", 3), ("c1", 0), ("c1", 3)] and _CountingAdapter.builds == 1
    assert [sorted(r["clients"]) for r in rows] == [["0", "1"], ["0", "1"]]
    assert [r["clients"]["1"]["fid"] for r in rows] == [5.0, 10.0 / 3]
    central = federated.run_arm(cfg, "centralized", str(tmp_path), built)
    assert _CountingAdapter.builds == 1 and adapter.trained[-2:] == [("pooled", 0), ("pooled", 3)]
    assert all(r["pooled_fid"] is not None for r in central) and set(central[0]["clients"]) == {"0", "1"}
    # Cached: nothing trains again; a resumed run with more rounds trains the arm again.
    assert federated.run_arm(cfg, "alone", str(tmp_path), built) == rows and len(adapter.trained) == 6
    longer = config_lib.replace(cfg, {"federation": {"rounds": 3}})
    assert len(federated.run_arm(longer, "alone", str(tmp_path), built)) == 3 and len(adapter.trained) == 12
    # federation.eval_every=2: evaluated after rounds 2 and 3 (the last) only, like the federation.
    sparse = config_lib.replace(cfg, {"federation": {"rounds": 3, "eval_every": 2}})
    rows = federated.run_arm(sparse, "centralized", str(tmp_path / "sparse"), built)
    assert [sorted(r["clients"]) for r in rows] == [[], ["0", "1"], ["0", "1"]]
    assert rows[0]["pooled_fid"] is None and rows[1]["pooled_fid"] is not None
    curves = federated.fid_curves([{"round": r, "clients": {}} for r in (1, 2, 3)], {"centralized": rows}, 2)
    assert curves["centralized"]["0"][0] is None and curves["pooled"]["centralized"][0] is None


def test_evaluation_rounds():
    from keras_medgan import config as config_lib
    from keras_medgan.federated.server import evaluation_due
    from keras_medgan.recipes import federated

    assert [r for r in range(1, 8) if evaluation_due(r, 3, 7)] == [3, 6, 7]
    assert all(evaluation_due(r, 1, 7) for r in range(1, 8)) and not any(evaluation_due(r, 0, 7) for r in range(8))
    with pytest.raises(config_lib.ConfigError, match="also set federation.arms=federated"):
        config_lib.replace(federated.get_config("smoke"), {"federation": {"eval_every": 0}})
    # Speed-ups use the evaluated rounds only.
    s = federated.speedups({"federated": {"0": [None, 4.0, 3.9]}, "alone": {"0": [None, 6.0, 4.5]}}, 1)
    assert s["0"] == {"target_fid": 4.5, "rounds_federated": 2, "rounds_alone": 3, "speedup": 1.5}


def test_failure_summary_keeps_the_clients_message():
    from keras_medgan.federated.server import failure_summary

    wrapped = ("<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::ClientAppActor.run()\x1b[39m"
               "\n  File \"x.py\", line 1\nflwr.clientapp.client_app.ClientAppException: \nException ClientAppException"
               " occurred. Message: client 1 failed in round 3 (federation.inject_failures)'>")
    assert failure_summary(wrapped) == "client 1 failed in round 3 (federation.inject_failures)"
    assert failure_summary("Traceback (most recent call last):\n  File a\nValueError: boom\n") == "ValueError: boom"
    assert failure_summary("no reply (timeout)") == "no reply (timeout)" and failure_summary("") == "(no reason given)"
    assert len(failure_summary("x" * 500)) == 200
