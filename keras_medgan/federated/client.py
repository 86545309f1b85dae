"""The Flower ``ClientApp`` of a hospital: train the global GAN on local images, send back weights and a count.

Messages (Flower's Message API): a ``train`` message carries the global ``arrays`` and a ``config`` record
with the run's config (JSON), the round and the number of local steps; the reply carries the trained averaged
part and ``metrics`` with ``num-examples`` (FedAvg's weight), the last losses and ``local/<name>``: the
adapter's ``progress()`` (step counter, ADA p), which the server only records. An ``evaluate`` message carries
the global arrays; the reply's metrics are the client's FID/KID against its own val split, and ``moments``
(feature means and covariances) for the server's pooled FID.

A node finds its data through its node config: ``data-dir`` (deployment: ``flower-supernode --node-config
"data-dir='/data/hospital-a'"``) or ``partition-id`` (simulation, and deployment on a partition folder),
which indexes the partition's client folders listed in the run config.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import numpy as np

from keras_medgan.federated import require_flower
from keras_medgan.federated.adapter import GANAdapter

# (run id, config hash) -> (adapter, its initial local state): a process builds and traces its GAN once per run
# and serves every node it is handed with it (Flower's simulation engine sends any node's message to any actor).
_BUILT: dict = {}


class InjectedFailure(RuntimeError):
    """Raised by a client told to fail (``federation.inject_failures``), to exercise failure tolerance."""


def node_data_dir(node_config, config: dict) -> tuple[str, int]:
    """The node's dataset folder and partition id (-1 when given ``data-dir`` directly)."""
    if node_config.get("data-dir"):
        return str(node_config["data-dir"]), int(node_config.get("partition-id", -1))
    if "partition-id" not in node_config:
        raise ValueError("this SuperNode has neither `data-dir` nor `partition-id` in its node config; start it "
                         "with --node-config \"data-dir='/path/to/client/dataset'\"")
    pid = int(node_config["partition-id"])
    dirs = config["federation"]["client_dirs"]
    if not 0 <= pid < len(dirs):
        raise ValueError(f"partition-id {pid} is outside the run's {len(dirs)} client folders")
    return dirs[pid], pid


def _failure_planned(config: dict, pid: int, rnd: int) -> str | None:
    """``federation.inject_failures`` entries are ``partition:round[:crash|hang]``."""
    for item in filter(None, config["federation"].get("inject_failures", "").split(",")):
        parts = item.strip().split(":")
        if int(parts[0]) == pid and int(parts[1]) == rnd:
            return parts[2] if len(parts) > 2 else "crash"
    return None


def node_adapter(build_adapter: Callable[[dict, str | None], GANAdapter], config: dict, data_dir: str,
                 key) -> tuple[GANAdapter, list]:
    """This process's adapter for run ``key``, pointed at ``data_dir``, and its initial local state.

    The adapter is built once per key; a message for another node's data folder switches it with ``use_data``
    (the caller then loads that node's weights and local state, or the initial local state for a node that has
    none yet, so nothing leaks from one node to the next). An adapter that cannot switch is built again.
    """
    if key in _BUILT:
        adapter, initial = _BUILT[key]
        if adapter.data_dir == data_dir:
            return adapter, initial
        try:
            adapter.use_data(data_dir)
            return adapter, initial
        except NotImplementedError:
            pass
    adapter = build_adapter(config, data_dir)
    _BUILT[key] = adapter, adapter.local_state()
    return _BUILT[key]


def make_client_app(build_adapter: Callable[[dict, str | None], GANAdapter]):
    """A ``flwr.clientapp.ClientApp`` around the adapter that ``build_adapter(config, data_dir)`` returns.

    Example (a module a SuperNode loads):

    >>> client_app = make_client_app(federated_gans.build_adapter)
    """
    require_flower()
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    def setup(msg: Message, context: Context):
        conf = msg.content["config"]
        config = json.loads(conf["run-config"])
        data_dir, pid = node_data_dir(context.node_config, config)
        adapter, initial = node_adapter(build_adapter, config, data_dir, (context.run_id, conf["config-hash"]))
        # What this node kept from its previous rounds (Context.state never leaves the node), else a fresh start.
        local = context.state["local"].to_numpy_ndarrays() if "local" in context.state else initial
        adapter.set_local_state(local)
        adapter.set_shared_weights(msg.content["arrays"].to_numpy_ndarrays())
        return adapter, config, pid, int(conf["fed-round"])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        t0 = time.time()
        adapter, config, pid, rnd = setup(msg, context)
        fault = _failure_planned(config, pid, rnd)
        if fault == "hang":
            time.sleep(float(config["federation"]["round_timeout"]) + 30)
        if fault:
            raise InjectedFailure(f"client {pid} failed in round {rnd} (federation.inject_failures)")
        logs = adapter.train(int(msg.content["config"]["local-steps"]))
        context.state["local"] = ArrayRecord(adapter.local_state())
        metrics = {"num-examples": adapter.num_train_examples, "partition-id": pid,
                   "train-seconds": time.time() - t0, **{f"loss/{k}": float(v) for k, v in logs.items()},
                   **{f"local/{k}": v for k, v in adapter.progress().items()}}
        return Message(RecordDict({"arrays": ArrayRecord(adapter.shared_weights()), "metrics": MetricRecord(metrics)}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        adapter, config, pid, _ = setup(msg, context)
        r = adapter.evaluate(str(msg.content["config"]["ruler"]), int(msg.content["config"]["eval-images"]))
        metrics = {"num-examples": int(r["num_real"]), "partition-id": pid, "fid": float(r["fid"]),
                   "kid": float(r["kid"]), "num-fake": int(r["num_fake"])}
        moments = ArrayRecord([np.asarray(r[k], np.float64) for k in ("real_mean", "real_cov", "fake_mean",
                                                                         "fake_cov")])
        return Message(RecordDict({"metrics": MetricRecord(metrics), "moments": moments}), reply_to=msg)

    return app
