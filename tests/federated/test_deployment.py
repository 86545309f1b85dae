"""Deployment mode: a SuperLink, two SuperNodes and the recipe as separate processes on localhost."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

pytest.importorskip("flwr")

BIN = os.path.dirname(sys.executable)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_server_and_two_clients_as_processes(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
           "KERAS_MEDGAN_CACHE": str(tmp_path / "cache"), "KERAS_MEDGAN_RUNS": str(tmp_path / "runs"),
           "FLWR_HOME": str(tmp_path / "flwr-home"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": os.pathsep.join([BIN, os.environ.get("PATH", "")])}  # Flower starts its helpers by name
    run_dir = tmp_path / "runs" / "deploy"
    # The partition (and ruler) first, with a dry recipe run's data resolution: a plain partition command.
    from keras_medgan.data import demo, partition

    src = demo.write_demo_dataset("demo-derm", str(tmp_path / "src"), num_images=240, image_size=32, shards=1)
    assert src.num_examples("train")
    partition.partition_dataset(str(tmp_path / "src"), str(tmp_path / "fed"), [80, 140], val_fraction=0.25)
    link, node0, node1 = _free_ports(3)
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("superlink", "node0", "node1")}
    # Flower 1.41 serves the Fleet and Control APIs over one HTTP port (--port).
    procs = [subprocess.Popen([os.path.join(BIN, "flower-superlink"), "--insecure", "--port", str(link)], env=env, stdout=logs["superlink"], stderr=subprocess.STDOUT,
                              start_new_session=True)]
    try:
        for i, port in enumerate((node0, node1)):
            procs.append(subprocess.Popen(
                [os.path.join(BIN, "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link}",
                 "--port", str(port), "--node-config", f"data-dir='{tmp_path / 'fed' / f'client-{i}'}' "
                                                       f"partition-id={i}"],
                env=env, stdout=logs[f"node{i}"], stderr=subprocess.STDOUT, start_new_session=True))
        recipe = subprocess.run(
            [sys.executable, "-m", "keras_medgan.recipes.federated", "--preset", "smoke", "--mode", "deployment",
             "--superlink", f"127.0.0.1:{link}", "--data", str(tmp_path / "fed"), "--run-dir", str(run_dir),
             "--set", "federation.arms=federated", "--set", "federation.round_timeout=240",
             "--set", "federation.rounds=1"],  # one round: each message starts a ClientApp process (TF import)
            env=env, capture_output=True, text=True, timeout=400, cwd=str(tmp_path))
        assert recipe.returncode == 0, recipe.stdout[-3000:] + recipe.stderr[-3000:]
        rows = [json.loads(line) for line in open(run_dir / "federated" / "rounds.jsonl")]
        assert [r["round"] for r in rows] == [1]
        assert all(r["trained"] == [0, 1] and set(r["clients"]) == {"0", "1"} for r in rows)
        assert (run_dir / "report.md").exists() and (run_dir / "fid_vs_round.png").exists()
        assert all(p.poll() is None for p in procs)  # the federation's processes outlive the run
    finally:
        _stop(procs)
        for f in logs.values():
            f.close()
    assert all(p.poll() is not None for p in procs)
