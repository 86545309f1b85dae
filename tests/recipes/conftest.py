"""Shared fixtures of the recipe tests."""

import os

import pytest


@pytest.fixture(scope="module")
def recipe_env(tmp_path_factory):
    """A fresh cache and runs root for one test module (``KERAS_MEDGAN_CACHE`` / ``KERAS_MEDGAN_RUNS``)."""
    root = tmp_path_factory.mktemp("recipe")
    old = {k: os.environ.get(k) for k in ("KERAS_MEDGAN_CACHE", "KERAS_MEDGAN_RUNS")}
    os.environ["KERAS_MEDGAN_CACHE"] = str(root / "cache")
    os.environ["KERAS_MEDGAN_RUNS"] = str(root / "runs")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
