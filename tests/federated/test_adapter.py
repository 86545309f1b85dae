"""FedAvg maths, pooled moments, and keras_medgan without Flower installed."""

import builtins
import importlib
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
