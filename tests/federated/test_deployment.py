"""Deployment mode: a SuperLink, two SuperNodes and the recipe as separate processes on localhost (started by
``conftest.federation`` while the simulation runs, stopped here)."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("flwr")

from keras_medgan.federated.adapter import weighted_mean  # noqa: E402
from keras_medgan.federated.server import load_arrays, load_state  # noqa: E402


def test_server_and_two_clients_as_processes(federation):
    status = federation.deployment_result()
    assert status == 0, federation.log_tail("deploy")
    run_dir = federation.deploy_dir
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "federated", "rounds.jsonl"))]
    assert [r["round"] for r in rows] == [1]
    assert rows[0]["trained"] == [0, 1] and rows[0]["failures"] == []
    # Each SuperNode trained on its own data folder (FedAvg weights are its own training-image counts) ...
    counts = rows[0]["num_examples"]
    assert counts["0"] != counts["1"] and rows[0]["local"] == {"0": {"step": 2.0}, "1": {"step": 2.0}}
    # ... and the server process averaged what the two client processes sent, weighted by those counts.
    round_dir = os.path.join(run_dir, "federated", "rounds", "round-00001")
    clients = [load_arrays(os.path.join(round_dir, f"client-{c}.npz")) for c in ("0", "1")]
    expected = weighted_mean(clients, [counts["0"], counts["1"]])
    got = load_arrays(os.path.join(round_dir, "global.npz"))
    assert len(got) == len(expected) > 10 and any(not np.allclose(a, b) for a, b in zip(*clients))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    assert load_state(run_dir)[0] == 1
    # federation.eval_every=0: no evaluate message, so no FID; the report says so.
    assert rows[0]["clients"] == {} and rows[0]["pooled_fid"] is None
    for name in ("report.md", "metrics.json", "fid_vs_round.png", "config.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    report = open(os.path.join(run_dir, "report.md")).read()
    assert "Mode: deployment (Flower)" in report and "Evaluation: none (federation.eval_every=0)" in report
    # The federation's processes outlive the run, until stopped.
    assert all(p.poll() is None for p in federation.flower), federation.log_tail("superlink")
    federation.stop_flower()
    assert all(p.poll() is not None for p in federation.flower)
