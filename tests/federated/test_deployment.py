"""Deployment mode: a SuperLink, two SuperNodes and the recipe as separate processes on localhost (started by
``conftest.federation`` while the simulation runs, stopped here)."""

import json
import os

import pytest

pytest.importorskip("flwr")


def test_server_and_two_clients_as_processes(federation):
    status = federation.deployment_result()
    assert status == 0, federation.log_tail("deploy")
    run_dir = federation.deploy_dir
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "federated", "rounds.jsonl"))]
    assert [r["round"] for r in rows] == [1]
    assert rows[0]["trained"] == [0, 1] and set(rows[0]["clients"]) == {"0", "1"} and rows[0]["failures"] == []
    assert all(e["fid"] >= 0 and e["num_real"] > 0 for e in rows[0]["clients"].values())
    # Each SuperNode trained on its own data folder (FedAvg weights are its own training-image counts).
    counts = rows[0]["num_examples"]
    assert counts["0"] != counts["1"] and rows[0]["local"] == {"0": {"step": 2.0}, "1": {"step": 2.0}}
    # The comparison arms ran in the recipe's process (the clients' data is on this machine), one round each.
    for name in ("report.md", "metrics.json", "fid_vs_round.png", "arms/alone.json", "arms/centralized.json"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert set(metrics["curves"]) == {"federated", "alone", "centralized", "pooled"}
    for arm in ("federated", "alone", "centralized"):
        assert all(len(v) == 1 and v[0] is not None and v[0] >= 0 for v in metrics["curves"][arm].values()), arm
    assert len(metrics["curves"]["pooled"]["centralized"]) == 1 and set(metrics["speedup"]) == {"0", "1"}
    assert all(s["rounds_federated"] == s["rounds_alone"] == 1 for s in metrics["speedup"].values())
    report = open(os.path.join(run_dir, "report.md")).read()
    assert "Mode: deployment (Flower)" in report and "| client 0 federated | client 0 alone |" in report
    # The federation's processes outlive the run, until stopped.
    assert all(p.poll() is None for p in federation.flower), federation.log_tail("superlink")
    federation.stop_flower()
    assert all(p.poll() is not None for p in federation.flower)
