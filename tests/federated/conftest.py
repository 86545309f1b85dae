"""The federated runs this folder's tests check, started together in the background once per session.

Most of a federated run's wall time on 2 cores is single-threaded (TensorFlow imports in every Flower process and
Ray actor, tracing, Ray's start-up, process spawning), so the runs overlap instead of queueing:

- **deployment**: a SuperLink, two SuperNodes and the recipe (``--mode deployment``, conditional DCGAN, 1 round,
  no evaluation round) as separate processes on localhost.
- **simulation**: ``--gan stylegan2-ada`` on Flower's simulation engine, 2 clients served by one Ray actor (one
  TensorFlow import and one trace instead of two: the actor switches between the nodes), with a real kill:
  phase A runs round 1, round 2 with client 1 crashing, and hangs client 1 in round 3; once round 2 is committed
  the recipe's whole process group is SIGKILLed; phase B resumes it (``--resume --run-dir``) with both clients
  crashing in round 3, and writes the report.

Both use one partition of the demo data (the recipe's own ``resolve_data``) and one ruler, prepared in this process
before anything starts. Tests wait for the part they check (``Federation.deployment_result``,
``Federation.simulation_result``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
RUN_TIMEOUT = 420  # seconds any one background run may take before its test fails
# StyleGAN2-ADA for the simulation: the recipe's smoke networks without the lazy R1 / path-length phases, ADA
# without colour transforms (paper 003's best model, "cGAN w/o color", Table 1): a trace of about a third of the
# full one (the regularisers and colour ops are the StyleGAN2-ADA tests' business). ADA starts at p = 0.5 with a
# step of batch * interval / (kimg * 1000) = 8 * 4 / 1000 = 0.032, so that each client's p visibly moves at step 4.
STYLEGAN = ["--gan", "stylegan2-ada", "--set", "stylegan2.loss.pl_weight=0", "--set", "stylegan2.loss.r1_gamma=0",
            "--set", "stylegan2.augment.pipeline=bg", "--set", "stylegan2.augment.p=0.5",
            "--set", "stylegan2.augment.kimg=1"]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _wait_port(port, timeout=90):
    end = time.time() + timeout
    while time.time() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(procs):
    """SIGTERM to each process group, SIGKILL to any still alive after 20 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def committed_round(run_dir):
    """The round in ``<run>/federated/global.npz``, 0 before the first commit."""
    path = os.path.join(run_dir, "federated", "global.npz")
    if not os.path.exists(path):
        return 0
    try:
        with np.load(path) as z:
            return int(z["round"])
    except (OSError, ValueError, KeyError):  # replaced while we read it: look again
        return 0


class Federation:
    """Handles of the background runs; see the module docstring."""

    def __init__(self, root, env, part_dir):
        self.root, self.env, self.part_dir = root, env, part_dir
        self.logs = {}
        self.flower = []  # SuperLink and SuperNodes
        self.deploy_dir = os.path.join(root, "runs", "deploy")
        self.sim_dir = os.path.join(root, "runs", "sim")
        self.sim = {}  # phase A / B facts, filled by the watcher thread
        self.sim_done = threading.Event()
        self.procs = []
        self.t0 = time.time()
        self.closing = False

    def _popen(self, name, cmd):
        """Starts ``cmd`` in its own session; its output goes to ``<root>/<name>.log``, each line prefixed with
        the seconds since the fixture started (where the time goes, when a run is slow or fails)."""
        log = self.logs[name] = open(os.path.join(self.root, f"{name}.log"), "w")
        p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True, cwd=self.root, text=True, errors="replace")

        def copy():
            for line in p.stdout:
                log.write(f"{time.time() - self.t0:7.1f} {line}")
                log.flush()

        threading.Thread(target=copy, daemon=True).start()
        self.procs.append(p)
        return p

    def log_tail(self, name, n=4000):
        with open(os.path.join(self.root, f"{name}.log"), errors="replace") as f:
            return f.read()[-n:]

    def start_flower(self):
        link, node0, node1 = _free_ports(3)
        self.link = link
        # Flower 1.41 serves the Fleet and Control APIs over one HTTP port (--port).
        self.flower.append(self._popen("superlink", [os.path.join(BIN, "flower-superlink"), "--insecure",
                                                      "--port", str(link)]))
        for i, port in enumerate((node0, node1)):
            data = os.path.join(self.part_dir, f"client-{i}")
            self.flower.append(self._popen(f"node{i}", [
                os.path.join(BIN, "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link}",
                "--port", str(port), "--node-config", f"data-dir='{data}' partition-id={i}"]))

    def start_deployment(self):
        _wait_port(self.link)
        self.deployment = self._popen("deploy", [
            sys.executable, "-m", "keras_medgan.recipes.federated", "--preset", "smoke", "--mode", "deployment",
            "--superlink", f"127.0.0.1:{self.link}", "--data", self.part_dir, "--run-dir", self.deploy_dir,
            "--set", "federation.round_timeout=300", "--set", "federation.rounds=1",
            "--set", "federation.arms=federated", "--set", "federation.save_client_weights=true",
            # One training round and no evaluation round: every message starts a ClientApp process (TF import, model
            # build); the evaluate messages and the arms are the simulation's and the unit tests' business.
            "--set", "federation.eval_every=0"])

    def start_simulation(self):
        recipe = [sys.executable, "-m", "keras_medgan.recipes.federated"]
        self.phase_a = self._popen("sim-a", [
            *recipe, "--preset", "smoke", *STYLEGAN, "--run-dir", self.sim_dir, "--total-cpus", "1",
            "--set", "federation.rounds=3", "--set", "federation.save_client_weights=true",
            "--set", "federation.arms=federated", "--set", "federation.round_timeout=300",
            "--set", "federation.inject_failures=1:2,1:3:hang"])
        # Both clients fail the resumed round 3: the resumed server must keep and serve the saved weights (their
        # evaluation then repeats round 2's FIDs exactly), and the Ray actor evaluates without tracing a train step.
        resume = [*recipe, "--resume", "--run-dir", self.sim_dir, "--total-cpus", "1",
                  "--set", "federation.inject_failures=0:3,1:3"]
        threading.Thread(target=self._kill_and_resume, args=(resume,), daemon=True).start()

    def _kill_and_resume(self, resume):
        try:
            end = time.time() + RUN_TIMEOUT
            while self.phase_a.poll() is None and committed_round(self.sim_dir) < 2 and time.time() < end:
                time.sleep(0.1)
            self.sim["killed_at_round"] = committed_round(self.sim_dir)
            if self.phase_a.poll() is None:
                os.killpg(self.phase_a.pid, signal.SIGKILL)  # the server and its Ray cluster, mid round 3
            self.sim["phase_a_status"] = self.phase_a.wait()
            from keras_medgan.federated.server import load_state

            self.sim["saved"] = load_state(self.sim_dir)
            fed = os.path.join(self.sim_dir, "federated")
            self.sim["rounds_after_kill"] = open(os.path.join(fed, "rounds.jsonl")).read()
            if self.sim["phase_a_status"] == -signal.SIGKILL and self.sim["killed_at_round"] == 2 and not self.closing:
                phase_b = self._popen("sim-b", resume)
                try:
                    self.sim["phase_b_status"] = phase_b.wait(timeout=RUN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.sim["phase_b_status"] = "timeout"
        except Exception as e:  # reported by the test that waits for it
            self.sim["error"] = repr(e)
        finally:
            self.sim_done.set()

    def stop_flower(self):
        stop(self.flower)

    def deployment_result(self) -> int:
        try:
            return self.deployment.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return -1

    def simulation_result(self) -> dict:
        assert self.sim_done.wait(2 * RUN_TIMEOUT), "the simulation did not finish"
        return self.sim

    def close(self):
        self.closing = True
        stop(self.procs)
        for f in self.logs.values():
            f.close()


@pytest.fixture(scope="package")
def fed_env(tmp_path_factory):
    """Cache and runs roots for this folder, the demo partition (2 clients of 80 / 140 images, the smoke preset's,
    made by the recipe's ``resolve_data``) and its ruler; returns ``(root, env, resolved smoke config)``."""
    root = str(tmp_path_factory.mktemp("federation"))
    keys = ("KERAS_MEDGAN_CACHE", "KERAS_MEDGAN_RUNS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ["KERAS_MEDGAN_CACHE"] = os.path.join(root, "cache")
    os.environ["KERAS_MEDGAN_RUNS"] = os.path.join(root, "runs")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
           "FLWR_HOME": os.path.join(root, "flwr-home"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": os.pathsep.join([BIN, os.environ.get("PATH", "")])}  # Flower starts its helpers by name
    from keras_medgan.recipes import federated

    cfg = federated.resolve_data(federated.get_config("smoke"), os.path.join(root, "unused"))
    yield root, env, cfg
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="package")
def federation(fed_env):
    """Starts the deployment and the killed-and-resumed simulation (module docstring) and stops whatever is left
    of them at the end of the package."""
    pytest.importorskip("flwr")
    root, env, cfg = fed_env
    from keras_medgan.recipes import federated

    fed = Federation(root, env, cfg.data.data_dir)
    try:
        fed.start_flower()  # needs only the partition's folders
        federated.resolve_ruler(cfg)  # trains the smoke ruler into the cache both runs share
        fed.start_simulation()
        fed.start_deployment()
        yield fed
    finally:
        fed.close()
        shutil.rmtree(os.path.join(root, "flwr-home"), ignore_errors=True)
