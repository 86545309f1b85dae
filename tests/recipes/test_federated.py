"""The federated recipe end to end on Flower's simulation engine: 2 tiny clients, 2 rounds, one failure."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("flwr")

from keras_medgan.data import schema  # noqa: E402
from keras_medgan.federated.adapter import weighted_mean  # noqa: E402
from keras_medgan.federated.server import load_arrays, load_state  # noqa: E402
from keras_medgan.recipes import federated  # noqa: E402


@pytest.fixture(scope="module")
def sim_run(recipe_env):
    run_dir = str(recipe_env / "runs" / "fed")
    status = federated.main(["--preset", "smoke", "--run-dir", run_dir, "--set", "federation.save_client_weights=true",
                             "--set", "federation.inject_failures=1:2"])
    assert status == 0
    return run_dir


def test_global_weights_are_the_example_weighted_mean(sim_run):
    rounds = os.path.join(sim_run, "federated", "rounds", "round-00001")
    rows = [json.loads(line) for line in open(os.path.join(sim_run, "federated", "rounds.jsonl"))]
    counts = rows[0]["num_examples"]
    assert sorted(counts) == ["0", "1"] and counts["0"] != counts["1"]
    clients = [load_arrays(os.path.join(rounds, f"client-{c}.npz")) for c in ("0", "1")]
    expected = weighted_mean(clients, [counts["0"], counts["1"]])
    got = load_arrays(os.path.join(rounds, "global.npz"))
    assert len(got) == len(expected) > 10
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # The two clients really differed (so the mean is not trivially either of them).
    assert any(not np.allclose(a, b) for a, b in zip(*clients))


def test_a_failing_client_leaves_the_round_to_the_others(sim_run):
    rows = [json.loads(line) for line in open(os.path.join(sim_run, "federated", "rounds.jsonl"))]
    assert [r["round"] for r in rows] == [1, 2]
    assert rows[0]["trained"] == [0, 1] and rows[0]["failures"] == []
    assert rows[1]["trained"] == [0]
    assert [(f["client"], f["phase"]) for f in rows[1]["failures"]] == [("client 1", "train")]
    assert "failed in round 2" in rows[1]["failures"][0]["reason"]
    # Round 2's global weights are client 0's alone (the only answer).
    r2 = os.path.join(sim_run, "federated", "rounds", "round-00002")
    for g, c in zip(load_arrays(os.path.join(r2, "global.npz")), load_arrays(os.path.join(r2, "client-0.npz"))):
        np.testing.assert_allclose(g, c, rtol=1e-6)
    done, weights = load_state(sim_run)
    assert done == 2 and len(weights) == len(load_arrays(os.path.join(r2, "global.npz")))
    report = open(os.path.join(sim_run, "report.md")).read()
    assert "| 2 | client 1 | train |" in report


def test_report_files_and_arms(sim_run):
    for name in ("report.md", "metrics.json", "fid_vs_round.png", "config.json", "arms/alone.json",
                 "arms/centralized.json"):
        assert os.path.exists(os.path.join(sim_run, name)), name
    metrics = json.load(open(os.path.join(sim_run, "metrics.json")))
    assert metrics["rounds"] == 2
    assert set(metrics["curves"]) == {"federated", "alone", "centralized", "pooled"}
    assert all(len(v) == 2 and all(x is not None and x >= 0 for x in v) for v in metrics["curves"]["alone"].values())
    assert len(metrics["curves"]["pooled"]["federated"]) == 2
    assert set(metrics["speedup"]) == {"0", "1"}
    cfg = json.load(open(os.path.join(sim_run, "config.json")))
    assert len(cfg["federation"]["client_dirs"]) == 2 and cfg["eval"]["features"].startswith("classifier:/")
    for d in cfg["federation"]["client_dirs"]:
        assert schema.read_dataset_info(d).num_examples("val") > 0


def test_unready_gan_and_secagg_are_clear_errors(recipe_env, capsys):
    assert federated.main(["--preset", "smoke", "--gan", "stylegan2-ada"]) == 1
    assert "StyleGAN2-ADA" in capsys.readouterr().err
    assert federated.main(["--preset", "smoke", "--set", "federation.secagg=true"]) == 1
    assert "SecAgg+" in capsys.readouterr().err
