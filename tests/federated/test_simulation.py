"""The federated recipe end to end on Flower's simulation engine with StyleGAN2-ADA (paper 003's GAN): 2 tiny
clients, 3 rounds, client 1 failing in round 2, the server SIGKILLed in round 3 and resumed.

The run is started by ``conftest.federation`` (phase A: rounds 1-2, killed in round 3; phase B: ``--resume``, both
clients failing round 3).
"""

import functools
import json
import os
import signal

import numpy as np
import pytest

pytest.importorskip("flwr")

from keras_medgan.data import schema  # noqa: E402
from keras_medgan.federated.adapter import weighted_mean  # noqa: E402
from keras_medgan.federated.server import load_arrays, load_state  # noqa: E402

ADA_STEP = 8 * 4 / 1000  # conftest.STYLEGAN: batch 8, ADA interval 4, augment.kimg 1


@pytest.fixture(scope="module")
def sim(federation):
    facts = federation.simulation_result()
    assert "error" not in facts, facts["error"]
    assert facts["phase_a_status"] == -signal.SIGKILL and facts["killed_at_round"] == 2, federation.log_tail("sim-a")
    assert facts["phase_b_status"] == 0, federation.log_tail("sim-b")
    return federation.sim_dir, facts


def _round_dir(run, r):
    return os.path.join(run, "federated", "rounds", f"round-{r:05d}")


def _raw_rows(run):
    return [json.loads(line) for line in open(os.path.join(run, "federated", "rounds.jsonl")) if line.strip()]


@functools.lru_cache(maxsize=1)
def _groups(run):
    """The averaged groups' variable counts of the run's StyleGAN2-ADA (one seeded build, as the server's)."""
    from keras_medgan.recipes import federated
    from keras_medgan.recipes.federated_gans import StyleGANAdapter

    cfg = federated.config_from_dict(json.load(open(os.path.join(run, "config.json"))))
    adapter = StyleGANAdapter(cfg, None, cfg.federation.averaged)
    m = adapter.model
    return adapter, [len(m.generator.variables), len(m.g_ema.variables), len(m.discriminator.variables)]


def test_global_weights_are_the_example_weighted_mean_of_g_ema_and_d(sim):
    run, _ = sim
    rows = _raw_rows(run)
    counts = rows[0]["num_examples"]
    assert sorted(counts) == ["0", "1"] and counts["0"] != counts["1"]
    clients = [load_arrays(os.path.join(_round_dir(run, 1), f"client-{c}.npz")) for c in ("0", "1")]
    expected = weighted_mean(clients, [counts["0"], counts["1"]])
    got = load_arrays(os.path.join(_round_dir(run, 1), "global.npz"))
    # The averaged part is exactly G, then the EMA generator, then D (averaged=gd), in that order.
    adapter, sizes = _groups(run)
    assert len(got) == len(expected) == sum(sizes) and min(sizes) > 10
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    bounds = np.cumsum([0, *sizes])
    for name, lo, hi in zip(("G", "EMA G", "D"), bounds[:-1], bounds[1:]):
        # Each group really differed between the clients, so its mean is not trivially either of them.
        assert any(not np.allclose(a, b) for a, b in zip(clients[0][lo:hi], clients[1][lo:hi])), name
    # Round 2 started from round 1's global weights.
    for a, b in zip(load_arrays(os.path.join(_round_dir(run, 2), "start.npz")), got):
        np.testing.assert_array_equal(a, b)
    # Every client started round 1 from the server's seeded initial weights (a fresh build gives the same).
    for a, b in zip(load_arrays(os.path.join(_round_dir(run, 1), "start.npz")), adapter.shared_weights()):
        np.testing.assert_array_equal(a, b)


def test_ada_p_and_step_counter_stay_local(sim):
    run, _ = sim
    rows = _raw_rows(run)
    r1, r2 = rows[0]["local"], rows[1]["local"]
    # Each client counts its own minibatches (2 local steps a round): client 0 continues its count in round 2 ...
    assert {c: v["step"] for c, v in r1.items()} == {"0": 2, "1": 2}
    assert {c: v["step"] for c, v in r2.items()} == {"0": 4}  # client 1 crashed in round 2
    # ... and its ADA p moved once, at step 4, by one controller step from its own p, driven by r_t accumulated
    # over steps 1-4, i.e. over both rounds (ADA Sec. 3): a reset or averaged local state would not.
    assert r1["0"]["ada-p"] == r1["1"]["ada-p"] == pytest.approx(0.5)
    assert abs(r2["0"]["ada-p"] - r1["0"]["ada-p"]) == pytest.approx(ADA_STEP, abs=1e-6)
    # None of it is in the arrays the server averages and saves.
    adapter, sizes = _groups(run)
    assert len(load_arrays(os.path.join(run, "federated", "global.npz"))) == sum(sizes)
    model = adapter.model
    shared_ids = {id(v) for v in adapter._shared}
    assert not {id(v) for v in (model.ada_p, model.step_counter, model.pl_mean)} & shared_ids
    assert {id(v) for v in model.training_state()} <= {id(v) for v in adapter._local}
    report = open(os.path.join(run, "report.md")).read()
    assert (f"Local state at each client's last round: client 0: step 4, ADA p {r2['0']['ada-p']:.4f}; "
            "client 1: step 2, ADA p 0.5000") in report


def test_a_failing_client_leaves_the_round_to_the_others(sim):
    run, _ = sim
    rows = _raw_rows(run)
    assert [r["trained"] for r in rows] == [[0, 1], [0], []]
    assert rows[0]["failures"] == []
    assert [(f["client"], f["phase"]) for f in rows[1]["failures"]] == [("client 1", "train")]
    assert "failed in round 2" in rows[1]["failures"][0]["reason"]
    assert rows[1]["failures"][0]["summary"] == "client 1 failed in round 2 (federation.inject_failures)"
    # Round 2's global weights are client 0's alone (the only answer); both clients were still evaluated.
    r2 = _round_dir(run, 2)
    for g, c in zip(load_arrays(os.path.join(r2, "global.npz")), load_arrays(os.path.join(r2, "client-0.npz"))):
        np.testing.assert_allclose(g, c, rtol=1e-6)
    assert not os.path.exists(os.path.join(r2, "client-1.npz"))
    assert set(rows[1]["clients"]) == {"0", "1"} and rows[1]["pooled_fid"] is not None
    report = open(os.path.join(run, "report.md")).read()
    assert "| 2 | client 1 | train | client 1 failed in round 2 (federation.inject_failures) |" in report


def test_killed_server_resumes_from_its_last_saved_round(sim):
    run, facts = sim
    done_at_kill, saved = facts["saved"]
    assert done_at_kill == 2
    assert [json.loads(line)["round"] for line in facts["rounds_after_kill"].splitlines()] == [1, 2]
    for a, b in zip(saved, load_arrays(os.path.join(_round_dir(run, 2), "global.npz"))):
        np.testing.assert_array_equal(a, b)
    # Round 3 (after the resume) started from the weights saved at the kill, not from a fresh initialisation ...
    start = load_arrays(os.path.join(_round_dir(run, 3), "start.npz"))
    assert len(start) == len(saved)
    for a, b in zip(start, saved):
        np.testing.assert_array_equal(a, b)
    fresh = load_arrays(os.path.join(_round_dir(run, 1), "start.npz"))
    assert any(not np.allclose(a, b) for a, b in zip(start, fresh))
    # ... both clients failed it, so the round kept them (federation.min_fit_clients=1) ...
    rows = _raw_rows(run)
    assert sorted((f["client"], f["phase"]) for f in rows[2]["failures"]) == [
        ("client 0", "train"), ("client 1", "train"), ("server", "train")]
    assert "the global weights were kept" in rows[2]["failures"][-1]["reason"] and rows[2]["trained"] == []
    done, final = load_state(run)
    assert done == 3 and json.load(open(os.path.join(run, "federated", "server_state.json")))["round"] == 3
    for a, b in zip(final, saved):
        np.testing.assert_array_equal(a, b)
    # ... and the clients, new processes with fresh local state, evaluated exactly the saved generator: the same
    # FIDs as after round 2 (fixed evaluation noise, the same ruler and val splits).
    for c in ("0", "1"):
        assert rows[2]["clients"][c]["fid"] == pytest.approx(rows[1]["clients"][c]["fid"], rel=1e-5)
    # One row per round, none repeated, and the report covers all three rounds.
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert [r.get("resumed", False) for r in rows] == [False, False, True]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["rounds"] == 3 and len(metrics["curves"]["pooled"]["federated"]) == 3
    assert all(len(v) == 3 and None not in v for v in metrics["curves"]["federated"].values())
    report = open(os.path.join(run, "report.md")).read()
    assert all(f"\n| {r} | " in report for r in (1, 2, 3)) and "3 of 3 rounds" in report
    assert "averaged: G, EMA G and D" in report and "Resumed (server restarted) before round(s) 3" in report
    assert "R1 off, path length off; ADA `bg`, p from 0.5, adaptive (target r_t 0.6)" in report
    log = open(os.path.join(os.path.dirname(os.path.dirname(run)), "sim-b.log")).read()
    assert "resuming the federation" in log and "after round 2" in log


def test_report_files_and_partition(sim):
    run, _ = sim
    for name in ("report.md", "metrics.json", "fid_vs_round.png", "config.json"):
        assert os.path.exists(os.path.join(run, name)), name
    assert not os.path.exists(os.path.join(run, "arms"))  # federation.arms=federated
    cfg = json.load(open(os.path.join(run, "config.json")))
    assert cfg["gan"] == "stylegan2-ada" and cfg["eval"]["features"].startswith("classifier:/")
    assert cfg["federation"]["rounds"] == 3 and cfg["federation"]["inject_failures"] == "0:3,1:3"
    # The recipe's partition: whole patients per client, never one patient in two clients (paper 003 Sec. 3.1).
    owner = {}
    for i, d in enumerate(cfg["federation"]["client_dirs"]):
        info = schema.read_dataset_info(d)
        assert info.split_unit == "patient" and info.num_examples("val") > 0
        for pid in _patients(d):
            assert owner.setdefault(pid, i) == i, f"patient {pid} in clients {owner[pid]} and {i}"
    assert len(owner) > 10


def _patients(data_dir):
    import tensorflow as tf

    files = [os.path.join(data_dir, f) for f in os.listdir(data_dir) if ".tfrecord" in f]
    ds = tf.data.TFRecordDataset(files).map(lambda s: tf.io.parse_single_example(
        s, {schema.PATIENT_ID: tf.io.FixedLenFeature([], tf.string)})[schema.PATIENT_ID])
    return {p.decode() for p in ds.as_numpy_iterator()}
