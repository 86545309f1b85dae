"""The Flower ``ServerApp``: FedAvg weighted by example count over N rounds, with failure tolerance, per-client
and pooled evaluation, and a checkpoint of the global weights after every round.

Paper 003 (Sec. 3.2) uses Flower's built-in FedAvg; so do we (``flwr.serverapp.strategy.FedAvg``, subclassed
only to record what each client sent and which clients failed). A client that raises or does not answer
within ``federation.round_timeout`` seconds is left out of that round's average; the round fails (the global
weights stay as they were) only when fewer than ``federation.min_fit_clients`` clients answered.

A killed server resumes from its last saved global weights and round number (``load_state``). After each round,
in this order: the round's row is appended to ``<run>/federated/rounds.jsonl``; ``global.npz`` (the global
weights *and* the round number, one file renamed into place: the commit point) is written atomically; then
``server_state.json`` (the same round number, for people and tools). A kill before the commit leaves the previous
round's file whole, and the resumed server drops any ``rounds.jsonl`` row past the committed round before it
redoes that round, so every round appears once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Callable

import numpy as np

from keras_medgan.data import schema
from keras_medgan.federated import require_flower
from keras_medgan.federated.adapter import GANAdapter, pooled_moments
from keras_medgan.io_utils import atomic_open
from keras_medgan.metrics.frechet import frechet_distance_from_moments

STATE_JSON = "server_state.json"
GLOBAL_NPZ = "global.npz"
ROUNDS_JSONL = "rounds.jsonl"


def fed_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "federated")


def save_arrays(path: str, arrays, round_number: int | None = None) -> None:
    """Writes arrays as ``.npz`` (``a00000``, ``a00001``, ...) atomically, with ``round`` when given."""
    extra = {} if round_number is None else {"round": np.asarray(int(round_number), np.int64)}
    with atomic_open(path, "wb") as f:
        np.savez(f, **{f"a{i:05d}": np.asarray(a) for i, a in enumerate(arrays)}, **extra)


def load_arrays(path: str) -> list[np.ndarray]:
    """The arrays ``save_arrays`` wrote, in order."""
    with np.load(path, allow_pickle=False) as z:
        return [z[k] for k in sorted(z.files) if k.startswith("a")]


def load_state(run_dir: str) -> tuple[int, list[np.ndarray] | None]:
    """``(rounds done, global weights)`` of a run's last committed round; ``(0, None)`` for a new run.

    The round number comes from ``global.npz`` itself (written in one atomic rename with the weights), so the two
    always match; ``server_state.json`` is only read for runs written before the round was stored there.
    """
    path = os.path.join(fed_dir(run_dir), GLOBAL_NPZ)
    if not os.path.exists(path):
        return 0, None
    with np.load(path, allow_pickle=False) as z:
        if "round" in z.files:
            return int(z["round"]), load_arrays(path)
    with open(os.path.join(fed_dir(run_dir), STATE_JSON), encoding="utf-8") as f:
        return int(json.load(f)["round"]), load_arrays(path)


def truncate_rounds(run_dir: str, done: int) -> int:
    """Drops ``rounds.jsonl`` rows of rounds after ``done`` (a server killed between writing a round's row and
    committing its weights left one) and rows torn by a kill; returns how many rows were dropped."""
    path = os.path.join(fed_dir(run_dir), ROUNDS_JSONL)
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]

    def committed(line: str) -> bool:
        try:
            return json.loads(line)["round"] <= done
        except json.JSONDecodeError:  # a row torn by a kill mid-write
            return False

    keep = [line if line.endswith("\n") else line + "\n" for line in lines if committed(line)]
    if len(keep) != len(lines):
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.writelines(keep)
    return len(lines) - len(keep)


def read_rounds(run_dir: str) -> list[dict]:
    """Every recorded round (``rounds.jsonl``), the last record of a round winning; a row torn by a kill is
    skipped."""
    path = os.path.join(fed_dir(run_dir), ROUNDS_JSONL)
    if not os.path.exists(path):
        return []
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["round"]] = row
    return [rows[k] for k in sorted(rows)]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_summary(reason: str, limit: int = 200) -> str:
    """One readable line of a failed reply's reason: the client's own exception message when the reason wraps it
    in a traceback (Flower's simulation engine: ``... Message: <text>'>``), else its last non-empty line."""
    text = _ANSI.sub("", str(reason))
    if "Message: " in text:
        rest = text.rsplit("Message: ", 1)[1]
        line = rest.splitlines()[0] if rest.strip() else ""
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        line = lines[-1] if lines else ""
    line = line.strip().rstrip("'>").strip() or "(no reason given)"
    return line if len(line) <= limit else line[:limit - 3] + "..."


def evaluation_due(rnd: int, eval_every: int, rounds: int) -> bool:
    """Whether round ``rnd`` ends with the clients' evaluation: every ``eval_every`` rounds and the last one;
    never with ``eval_every=0``."""
    return eval_every > 0 and (rnd % eval_every == 0 or rnd == rounds)


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _make_strategy_class():
    from flwr.serverapp.strategy import FedAvg

    class RecordingFedAvg(FedAvg):
        """Flower's FedAvg that also keeps each round's client replies and failures (for the report)."""

        def __init__(self, offset: int, min_fit_clients: int, eval_every: int, rounds: int, **kwargs):
            super().__init__(**kwargs)
            self.offset = offset
            self.min_fit_clients = min_fit_clients
            self.eval_every, self.rounds = eval_every, rounds
            self.partition_of: dict[int, int] = {}
            self.round: dict = {}

        def _label(self, node_id: int) -> str:
            pid = self.partition_of.get(node_id)
            return f"client {pid}" if pid is not None and pid >= 0 else f"node {node_id}"

        def configure_train(self, server_round, arrays, config, grid):
            config["fed-round"] = server_round + self.offset
            messages = list(super().configure_train(server_round, arrays, config, grid))
            self.round = {"sampled": [m.metadata.dst_node_id for m in messages], "train": {}, "eval": {},
                          "failures": [], "t0": time.time(), "start": arrays}
            return messages

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            answered = set()
            for msg in replies:
                node = msg.metadata.src_node_id
                answered.add(node)
                if msg.has_error():
                    self.round["failures"].append({"node": node, "phase": "train", "reason": msg.error.reason})
                    continue
                m = msg.content["metrics"]
                self.partition_of[node] = int(m["partition-id"])
                self.round["train"][node] = {"num_examples": int(m["num-examples"]),
                                             "arrays": msg.content["arrays"].to_numpy_ndarrays(),
                                             "metrics": {k: float(v) for k, v in m.items()}}
            for node in self.round["sampled"]:
                if node not in answered:
                    self.round["failures"].append({"node": node, "phase": "train", "reason": "no reply (timeout)"})
            if len(self.round["train"]) < self.min_fit_clients:
                self.round["failures"].append({"node": None, "phase": "train", "reason": (
                    f"only {len(self.round['train'])} client(s) answered, fewer than federation.min_fit_clients="
                    f"{self.min_fit_clients}: the global weights were kept")})
                return None, None
            return super().aggregate_train(server_round, [m for m in replies if not m.has_error()])

        def configure_evaluate(self, server_round, arrays, config, grid):
            config["fed-round"] = server_round + self.offset
            if not evaluation_due(server_round + self.offset, self.eval_every, self.rounds):
                return []  # federation.eval_every: not this round
            return super().configure_evaluate(server_round, arrays, config, grid)

        def aggregate_evaluate(self, server_round, replies):
            replies = list(replies)
            for msg in replies:
                node = msg.metadata.src_node_id
                if msg.has_error():
                    self.round["failures"].append({"node": node, "phase": "evaluate", "reason": msg.error.reason})
                    continue
                m = msg.content["metrics"]
                self.partition_of[node] = int(m["partition-id"])
                self.round["eval"][node] = {"fid": float(m["fid"]), "kid": float(m["kid"]),
                                            "num_real": int(m["num-examples"]), "num_fake": int(m["num-fake"]),
                                            "moments": msg.content["moments"].to_numpy_ndarrays()}
            ok = [m for m in replies if not m.has_error()]
            return super().aggregate_evaluate(server_round, ok) if ok else None

    return RecordingFedAvg


def pooled_fid(evals: list[dict]) -> float | None:
    """FID of the generated images pooled over clients against the union of the clients' val splits."""
    if not evals:
        return None
    real = pooled_moments([e["moments"][0] for e in evals], [e["moments"][1] for e in evals],
                          [e["num_real"] for e in evals])
    fake = pooled_moments([e["moments"][2] for e in evals], [e["moments"][3] for e in evals],
                          [e["num_fake"] for e in evals])
    return frechet_distance_from_moments(real[0], real[1], fake[0], fake[1])


def run_federation(grid, run_dir: str, build_adapter: Callable[[dict, str | None], GANAdapter],
                   log: Callable[[str], None] = print) -> dict:
    """The server's whole job on ``grid``: rounds ``done+1 .. federation.rounds`` of FedAvg, from ``config.json``.

    Returns the final state ``{"round", "weights"}``.
    """
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    fed = config["federation"]
    out = fed_dir(run_dir)
    os.makedirs(out, exist_ok=True)
    done, weights = load_state(run_dir)
    dropped = truncate_rounds(run_dir, done)
    if weights is None:
        weights = build_adapter(config, None).shared_weights()
    elif done:
        log(f"resuming the federation of {run_dir} after round {done} from its saved global weights"
            + (f" (dropped {dropped} row(s) of an unfinished round from {ROUNDS_JSONL})" if dropped else "")
            + "; the clients' local state (optimizer moments, step counters, adaptive state such as ADA p, a "
              "local D) lives in the previous run's nodes and starts afresh")
    remaining = int(fed["rounds"]) - done
    if remaining <= 0:
        log(f"all {fed['rounds']} rounds are done")
        return {"round": done, "weights": weights}
    strategy = _make_strategy_class()(
        offset=done, min_fit_clients=int(fed["min_fit_clients"]), eval_every=int(fed.get("eval_every", 1)),
        rounds=int(fed["rounds"]), fraction_train=1.0, fraction_evaluate=1.0,
        min_train_nodes=int(fed["clients"]), min_evaluate_nodes=int(fed["clients"]),
        min_available_nodes=int(fed["clients"]))
    common = {"run-config": json.dumps(config), "config-hash": config_hash(config)}
    train_config = ConfigRecord({**common, "local-steps": int(fed["local_steps"])})
    eval_config = ConfigRecord({**common, "ruler": config["eval"]["features"],
                                "eval-images": int(config["eval"]["periodic_images"])})
    state = {"round": done, "weights": weights}
    t_start = time.time()

    def end_of_round(server_round: int, arrays) -> MetricRecord | None:
        if server_round == 0:
            return None
        rnd = server_round + strategy.offset
        r = strategy.round
        state["weights"] = arrays.to_numpy_ndarrays()
        state["round"] = rnd
        failures = [{**f, "client": strategy._label(f["node"]) if f["node"] is not None else "server"}
                    for f in r["failures"]]
        evals = {strategy.partition_of[n]: e for n, e in r["eval"].items()}
        record = {"round": rnd, "step": rnd * int(fed["local_steps"]), "seconds": round(time.time() - r["t0"], 2),
                  "elapsed_s": round(time.time() - t_start, 2),
                  "clients": {str(pid): {"fid": e["fid"], "kid": e["kid"], "num_real": e["num_real"]}
                              for pid, e in sorted(evals.items())},
                  "trained": sorted(strategy.partition_of[n] for n in r["train"]),
                  "num_examples": {str(strategy.partition_of[n]): t["num_examples"] for n, t in r["train"].items()},
                  "local": {str(strategy.partition_of[n]): {k[len("local/"):]: v for k, v in t["metrics"].items()
                                                            if k.startswith("local/")}
                            for n, t in r["train"].items()},
                  "pooled_fid": pooled_fid(list(evals.values())),
                  "failures": [{**{k: v for k, v in f.items() if k != "node"},
                                "summary": failure_summary(f["reason"])} for f in failures]}
        if done and rnd == done + 1:  # the first round after a restart: the clients' local state started afresh
            record["resumed"] = True
        if fed.get("save_client_weights"):
            round_dir = os.path.join(out, "rounds", f"round-{rnd:05d}")
            os.makedirs(round_dir, exist_ok=True)
            save_arrays(os.path.join(round_dir, "start.npz"), r["start"].to_numpy_ndarrays())
            for n, t in r["train"].items():
                save_arrays(os.path.join(round_dir, f"client-{strategy.partition_of[n]}.npz"), t["arrays"])
            save_arrays(os.path.join(round_dir, GLOBAL_NPZ), state["weights"])
        # Row first, then the commit (see the module docstring): a kill in between is undone on resume.
        with open(os.path.join(out, ROUNDS_JSONL), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        save_arrays(os.path.join(out, GLOBAL_NPZ), state["weights"], round_number=rnd)
        schema.write_json_atomic(os.path.join(out, STATE_JSON), {"round": rnd, "weights": GLOBAL_NPZ,
                                                                  "rounds": int(fed["rounds"])})
        fids = ", ".join(f"client {p} {e['fid']:.4g}" for p, e in sorted(evals.items())) or "not evaluated"
        pooled = record["pooled_fid"]
        log(f"round {rnd}/{fed['rounds']}: FID {fids}; pooled {pooled if pooled is None else f'{pooled:.4g}'}; "
            f"{len(r['train'])} client(s) trained, {len(failures)} failure(s), {record['seconds']:.0f} s")
        return MetricRecord({"pooled-fid": float(pooled) if pooled is not None else -1.0})

    strategy.start(grid=grid, initial_arrays=ArrayRecord(weights), num_rounds=remaining,
                   timeout=float(fed["round_timeout"]), train_config=train_config, evaluate_config=eval_config,
                   evaluate_fn=end_of_round)
    return state


def make_server_app(build_adapter: Callable[[dict, str | None], GANAdapter], run_dir: str | None = None):
    """A ``flwr.serverapp.ServerApp`` running ``run_federation`` on ``run_dir`` (or the run config's ``run-dir``)."""
    require_flower()
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        run_federation(grid, run_dir or str(context.run_config["run-dir"]), build_adapter)

    return app


def simulate(server_app, client_app, num_clients: int, client_cpus: float, total_cpus: int) -> None:
    """Runs both apps on Flower's simulation engine (Ray), ``num_clients`` virtual SuperNodes on this machine."""
    require_flower()
    from flwr.simulation import run_simulation

    backend = {"client_resources": {"num_cpus": float(client_cpus), "num_gpus": 0.0},
               "init_args": {"num_cpus": int(total_cpus), "include_dashboard": False, "log_to_driver": True}}
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=num_clients,
                   backend_config=backend)
