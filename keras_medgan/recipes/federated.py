"""Federated GAN training with Flower: hospitals that train one generator without sharing images (paper 003,
Sec. 3.2 and 4.1). Recipe card: ``recipes/federated/README.md``. Needs ``pip install -e ".[federated]"``.

\b
Simulation (no arguments: preset ``demo``, 3 simulated hospitals on demo-derm, conditional DCGAN at 32 px,
about 10 minutes on 2 CPU cores):
    python -m keras_medgan.recipes.federated
    python -m keras_medgan.recipes.federated --gan stylegan2-ada      # paper 003's GAN on the demo hospitals
    python -m keras_medgan.recipes.federated --preset paper --data data/isic-256        # or a partition folder
    python -m keras_medgan.recipes.federated --resume                 # newest run, from its last finished round
    python -m keras_medgan.recipes.federated --resume --set federation.rounds=20        # ... and train longer
\b
Deployment (server and clients as separate processes, one machine or several):
    flower-superlink --insecure --host 0.0.0.0 --port 8000
    flower-supernode --insecure --superlink HOST:8000 --port 9094 \\
        --node-config "data-dir='data/fed/client-0' partition-id=0"   # one per hospital (own --port per machine)
    python -m keras_medgan.recipes.federated --mode deployment --superlink HOST:8000 --data data/fed
\b
A run compares three arms on every client's own val split: federated (FedAvg over Flower), each client
alone, and centralized on the pooled data; it writes federated/rounds.jsonl (per-client and pooled FID/KID
per round, failures), arms/*.json, metrics.json, fid_vs_round.png and report.md with the speed-up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np

from keras_medgan import config as config_lib
from keras_medgan.config import DataConfig, EvalConfig, TrainConfig
from keras_medgan.data import demo, partition, schema
from keras_medgan.federated import INSTALL_HINT
from keras_medgan.federated.adapter import AVERAGED
from keras_medgan.io_utils import atomic_open, cache_root
from keras_medgan.recipes import common
from keras_medgan.recipes import stylegan2_ada as sg
from keras_medgan.recipes.noise_gan import LossConfig, ModelConfig, OptimizerConfig

RECIPE = "federated"
PRESETS = ("demo", "smoke", "paper")
PROG = "python -m keras_medgan.recipes.federated"
ARMS = ("federated", "alone", "centralized")
GANS = ("cdcgan", "cgan", "stylegan2-ada")  # recipes/federated_gans.ADAPTERS
MODES = ("simulation", "deployment")
# What --resume may change: the number of rounds (train.steps follows from it), the comparison arms (trained after
# the federation) and the failure drill.
RESUME_CHANGEABLE = ("federation.rounds", "train.steps", "federation.arms", "federation.inject_failures")
# Paper 003 Sec. 3.1: three hospitals of 2k, 12k and 20k ISIC images with the same class mix (ratio 1:6:10).
PAPER_SIZES = (2000, 12000, 20000)


@dataclasses.dataclass(frozen=True)
class FederationConfig:
    """How the hospitals train together.

    Args:
        clients: int. Number of clients (paper 003 Sec. 3.1: 3 hospitals).
        sizes: tuple of int. Images per client when the recipe partitions a dataset (paper 003: 2000, 12000,
            20000); empty = the dataset split equally.
        skew: str. Class mix per client: ``none`` (paper 003: the same malignant/benign proportion everywhere),
            ``label`` or ``skin-type`` (see ``medgan-data partition``).
        val_fraction, test_fraction: float. Share of each client's images (whole patients) in its val / test split.
        rounds: int. FedAvg rounds (not given in paper 003; our choice).
        local_steps: int. Local iterations between weight exchanges (paper 003 Sec. 3.2: every 100 iterations).
        averaged: str. ``gd`` (G and D are averaged) or ``g`` (G only; each D stays with its hospital).
            Optimizer state always stays local (recipe card: why).
        min_fit_clients: int. A round counts when at least this many clients answered (others may crash or time
            out); below it the global weights are kept and the failure is reported.
        round_timeout: float. Seconds the server waits for a round's replies.
        eval_every: int. Rounds between the clients' FID/KID evaluations on their own val splits (and the arms'):
            1 = after every round; k = after rounds k, 2k, ... and the last (FID on 2,000 Inception-v3 images per
            client can cost more than a round of 100 local steps); 0 = never (a drill of the transport only: no
            FID curves, and the comparison arms are refused).
        secagg: bool. Flower's SecAgg+ (refused: Flower 1.41 and 1.42 offer it only to the legacy strategy API).
        client_cpus: float. CPUs each simulated client reserves in Ray (simulation mode).
        arms: tuple of str. Comparison arms to train: ``federated``, ``alone`` (each client on its own data, the
            same local steps per round) and ``centralized`` (pooled data, the same steps per round).
        inject_failures: str. For tests and drills: ``partition:round[:crash|hang],...`` makes those clients
            raise (or hang past the timeout) in those rounds.
        save_client_weights: bool. Also keep every round's client and global weights (for checking FedAvg).
        client_dirs: tuple of str. The clients' dataset folders (resolved by the recipe; simulation nodes are
            given ``partition-id``).
        pooled_dir: str. The pooled dataset (centralized arm, ruler); empty in deployment without local data.
    """

    clients: int = 3
    sizes: tuple = PAPER_SIZES
    skew: str = "none"
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    rounds: int = 100
    local_steps: int = 100
    averaged: str = "gd"
    min_fit_clients: int = 1
    round_timeout: float = 3600.0
    secagg: bool = False
    client_cpus: float = 1.0
    arms: tuple = ARMS
    eval_every: int = 1
    inject_failures: str = ""
    save_client_weights: bool = False
    client_dirs: tuple = ()
    pooled_dir: str = ""

    def __post_init__(self):
        for field in ("sizes", "arms", "client_dirs"):
            if isinstance(getattr(self, field), list):
                object.__setattr__(self, field, tuple(getattr(self, field)))
        for field in ("clients", "rounds", "local_steps", "min_fit_clients"):
            value = getattr(self, field)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"federation.{field} must be an integer >= 1. Received: {value!r}")
        if self.sizes and (len(self.sizes) != self.clients or any(int(s) < 1 for s in self.sizes)):
            raise ValueError(f"federation.sizes must give one positive image count per client (clients="
                             f"{self.clients}), or be empty. Received: {self.sizes!r}")
        if self.skew not in partition.SKEWS:
            raise ValueError(f"federation.skew must be one of {partition.SKEWS}. Received: {self.skew!r}")
        if self.averaged not in AVERAGED:
            raise ValueError(f"federation.averaged must be gd (G and D) or g (G only). Received: {self.averaged!r}")
        if self.min_fit_clients > self.clients:
            raise ValueError(f"federation.min_fit_clients must be <= clients={self.clients}. "
                             f"Received: {self.min_fit_clients}")
        if not self.round_timeout > 0 or not self.client_cpus > 0:
            raise ValueError("federation.round_timeout and federation.client_cpus must be > 0")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 0):
            raise ValueError(f"federation.eval_every must be an integer >= 0. Received: {self.eval_every!r}")
        if self.eval_every == 0 and tuple(self.arms) != ("federated",):
            raise ValueError("federation.eval_every=0 evaluates nothing, so the alone / centralized arms would have "
                             "nothing to compare: also set federation.arms=federated")
        if not self.arms or any(a not in ARMS for a in self.arms) or "federated" not in self.arms:
            raise ValueError(f"federation.arms must include federated and come from {ARMS}. Received: {self.arms!r}")


@dataclasses.dataclass(frozen=True)
class StyleGAN2Settings:
    """The StyleGAN2-ADA sections a federated run uses with ``gan = "stylegan2-ada"`` (ignored by the DCGANs):
    ``recipes/stylegan2_ada.py``'s networks, loss (R1, path length, style mixing), ADA, Adam and EMA settings.

    Each federated preset starts them from the StyleGAN2-ADA recipe's preset of the same name
    (``stylegan2_settings``); the run's data, train and eval sections are the federated config's, and a client
    trains ``federation.local_steps`` minibatches per round instead of the recipe's kimg schedule. Change them
    with ``--set stylegan2.augment.pipeline=bg`` and the like.
    """

    model: sg.ModelConfig = sg.ModelConfig()
    loss: sg.LossConfig = sg.LossConfig()
    augment: sg.AugmentConfig = sg.AugmentConfig()
    optimizer: sg.OptimizerConfig = sg.OptimizerConfig()
    ema: sg.EmaConfig = sg.EmaConfig()


def stylegan2_settings(preset: str) -> StyleGAN2Settings:
    """The ``stylegan2`` section of a federated preset: the StyleGAN2-ADA recipe's preset of the same name."""
    s = sg.get_config(preset)
    return StyleGAN2Settings(model=s.model, loss=s.loss, augment=s.augment, optimizer=s.optimizer, ema=s.ema)


@dataclasses.dataclass(frozen=True)
class FederatedConfig:
    """Everything a federated run needs; ``config.json`` in the run directory is this, as JSON.

    Args:
        preset, name: the preset it started from and the run name.
        gan: str. The GAN trained (``recipes/federated_gans.ADAPTERS``): ``cdcgan`` / ``cgan`` (the DCGAN
            family of ``recipes/noise_gan.py``) or ``stylegan2-ada`` (paper 003's GAN, ``recipes/stylegan2_ada.py``).
        data: DataConfig. ``data.data_dir`` is a partition folder (``medgan-data partition``) or a dataset the
            recipe partitions into the run folder; empty = the demo dataset.
        demo_dataset, demo_num_images: the demo data partitioned when ``data.data_dir`` is empty.
        model, loss, optimizer: the DCGAN's (``recipes/noise_gan.py``; ignored by StyleGAN2-ADA).
        stylegan2: StyleGAN2Settings. StyleGAN2-ADA's networks, loss, ADA, Adam and EMA (ignored by the DCGANs).
        train: TrainConfig. Its seed and precision; ``train.steps`` is set to rounds x local_steps.
        eval: EvalConfig. ``features`` is the one ruler every client uses (``classifier:auto`` is trained once
            on the pooled data); ``periodic_images`` generated images per client evaluation.
        federation: FederationConfig.
    """

    preset: str = "demo"
    name: str = "demo"
    gan: str = "cdcgan"
    data: DataConfig = DataConfig()
    demo_dataset: str = "demo-derm"
    demo_num_images: int = 2400
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    stylegan2: StyleGAN2Settings = StyleGAN2Settings()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    federation: FederationConfig = FederationConfig()

    def __post_init__(self):
        from keras_medgan.recipes.federated_gans import ADAPTERS, stylegan_config

        if self.gan not in ADAPTERS:
            raise ValueError(f"gan must be one of {tuple(ADAPTERS)}. Received: {self.gan!r}")
        size = self.data.image_size
        if self.gan == "stylegan2-ada":
            try:  # StyleGAN2-ADA's own checks (image size, batch vs minibatch-stddev group)
                stylegan_config(self, None)
            except ValueError as e:
                raise ValueError(f"gan=stylegan2-ada: {e} (here StyleGAN2-ADA's model.*, loss.*, augment.*, "
                                 "optimizer.* and ema.* are stylegan2.model.* and so on)") from None
        elif not (32 <= size <= 256 and size & (size - 1) == 0):
            raise ValueError(f"data.image_size must be a power of two from 32 to 256 (DCGAN networks). "
                             f"Received: image_size={size}")
        if self.demo_dataset not in demo.DEMO_KINDS:
            raise ValueError(f"demo_dataset must be one of {tuple(demo.DEMO_KINDS)}. Received: {self.demo_dataset!r}")


def get_config(preset: str = "demo") -> FederatedConfig:
    """The recipe's presets.

    \b
    demo  : python -m keras_medgan.recipes.federated
            demo-derm (2,400 images at 32 px) dealt by patient to 3 clients of 140, 840 and 1,400 images (paper
            003's 1:6:10), 25% of each client's patients for val; conditional DCGAN (paper 001 layers, base 16);
            6 rounds of 100 local steps (paper 003's exchange interval), G and D averaged; arms federated,
            alone, centralized; FID on 200 generated images per client with the classifier:auto ruler.
            --gan stylegan2-ada trains the StyleGAN2-ADA recipe's demo networks instead.
    smoke : 2 clients, 2 rounds of 2 steps, 32 px (StyleGAN2-ADA: the recipe's smoke networks); for tests.
    paper : python -m keras_medgan.recipes.federated --preset paper --data DIR
            paper 003: conditional StyleGAN2-ADA (the StyleGAN2-ADA recipe's paper settings, benign / malignant)
            at 256 px on 3 clients of 2,000 / 12,000 / 20,000 images (Sec. 3.1), same class mix, FedAvg every
            100 iterations (Sec. 3.2); Inception-v3 FID.
    The ``stylegan2`` section of every preset is the StyleGAN2-ADA recipe's preset of the same name.
    """
    dcgan = ModelConfig(latent_dim=100, upsampling="transpose", d_norm="batch", spectral_norm=True)
    if preset == "demo":
        return FederatedConfig(
            preset="demo", name="demo", gan="cdcgan", demo_dataset="demo-derm", demo_num_images=2400,
            data=DataConfig(image_size=32, batch_size=32, shuffle_buffer=2048),
            model=dataclasses.replace(dcgan, base_filters=16, latent_dim=64),
            train=TrainConfig(steps=600, log_every=100, sample_every=100, checkpoint_every=100),
            eval=EvalConfig(periodic_images=200, ruler_epochs=4),
            stylegan2=stylegan2_settings("demo"),
            federation=FederationConfig(clients=3, sizes=(140, 840, 1400), rounds=6, local_steps=100,
                                        val_fraction=0.25, client_cpus=1.0))
    if preset == "smoke":
        return FederatedConfig(
            preset="smoke", name="smoke", gan="cdcgan", demo_dataset="demo-derm", demo_num_images=240,
            data=DataConfig(image_size=32, batch_size=8, shuffle_buffer=64),
            model=dataclasses.replace(dcgan, base_filters=8, latent_dim=16),
            train=TrainConfig(steps=4, log_every=2, sample_every=2, checkpoint_every=2, precision="float32"),
            eval=EvalConfig(periodic_images=24, ruler_epochs=1),
            stylegan2=stylegan2_settings("smoke"),
            federation=FederationConfig(clients=2, sizes=(80, 140), rounds=2, local_steps=2, val_fraction=0.25,
                                        client_cpus=1.0))
    if preset == "paper":
        return FederatedConfig(
            preset="paper", name="paper", gan="stylegan2-ada",
            data=DataConfig(image_size=256, batch_size=32, shuffle_buffer=4096, classes=sg.PAPER_CLASSES),
            model=dcgan, stylegan2=stylegan2_settings("paper"), train=TrainConfig(steps=10_000),
            eval=EvalConfig(features="inception_v3", periodic_images=2000),
            federation=FederationConfig(clients=3, sizes=PAPER_SIZES, rounds=100, local_steps=100))
    raise config_lib.ConfigError(f"unknown preset {preset!r}; choose one of {PRESETS}")


def config_from_dict(config: dict) -> FederatedConfig:
    return config_lib.replace(get_config(config.get("preset", "demo")), config)


def build_adapter(config: dict, data_dir: str | None):
    """The ``GANAdapter`` of a run's config (a dict from ``config.json``) on ``data_dir`` (None on the server)."""
    from keras_medgan.recipes.federated_gans import ADAPTERS

    cfg = config_from_dict(config)
    from keras_medgan import distribute

    distribute.set_precision(cfg.train.precision)
    return ADAPTERS[cfg.gan](cfg, data_dir, cfg.federation.averaged)


# ---------------------------------------------------------------------------------------------- data


def resolve_data(cfg: FederatedConfig, run_dir: str) -> FederatedConfig:
    """Partitions the data (demo, or a plain dataset) unless given a partition; fills in folders, classes,
    channels and steps."""
    fed = cfg.federation
    source = cfg.data.data_dir
    if not source:
        source = demo.ensure_demo_dataset(cfg.demo_dataset, image_size=cfg.data.image_size,
                                          num_images=cfg.demo_num_images)
    if os.path.exists(os.path.join(source, partition.PARTITION_JSON)):
        part_dir = source
    else:
        info = common.check_data_dir(source)
        sizes = fed.sizes or (sum(info.num_examples(s) for s in schema.SPLITS) // fed.clients,) * fed.clients
        key = f"{os.path.basename(os.path.normpath(source))}-{'-'.join(map(str, sizes))}-{fed.skew}-" \
              f"v{fed.val_fraction}-t{fed.test_fraction}-s{cfg.train.seed}"
        part_dir = (os.path.join(cache_root(), "federated", key) if not cfg.data.data_dir
                    else os.path.join(run_dir, "partition"))
        if not os.path.exists(os.path.join(part_dir, partition.PARTITION_JSON)):
            print(f"partitioning {source} by patient into {len(sizes)} clients of {list(sizes)} images ...")
            try:
                partition.partition_dataset(source, part_dir, sizes, skew=fed.skew, seed=cfg.train.seed,
                                            val_fraction=fed.val_fraction, test_fraction=fed.test_fraction,
                                            command=f"{PROG} (resolve_data)")
            except ValueError as e:
                raise common.RecipeError(f"cannot partition {source}: {e}") from None
    with open(os.path.join(part_dir, partition.PARTITION_JSON), encoding="utf-8") as f:
        plan = json.load(f)
    dirs = tuple(c["dir"] for c in plan["clients"])
    if len(dirs) != fed.clients:
        raise common.RecipeError(f"{part_dir} has {len(dirs)} clients but federation.clients={fed.clients}; pass "
                                 f"--set federation.clients={len(dirs)}")
    pooled = plan.get("pooled", {}).get("dir", "")
    info = common.check_data_dir(dirs[0])
    classes = cfg.data.classes or tuple(info.class_names)
    for d in dirs:
        for split in ("train", "val"):
            n = schema.read_dataset_info(d).num_examples(split)
            if n < (cfg.data.batch_size if split == "train" else 2):
                raise common.RecipeError(f"client {d} has {n} {split!r} images; every client needs at least one "
                                         f"batch ({cfg.data.batch_size}) to train and two to validate")
    return config_lib.replace(cfg, {
        "data": {"data_dir": part_dir, "classes": list(classes), "channels": cfg.data.channels or info.channels},
        "train": {"steps": fed.rounds * fed.local_steps},
        "federation": {"client_dirs": list(dirs), "pooled_dir": pooled}})


def resolve_ruler(cfg: FederatedConfig) -> FederatedConfig:
    """Makes ``eval.features`` one fixed file every client can load (``classifier:auto`` -> the pooled data's)."""
    if cfg.eval.features != "classifier:auto":
        return cfg
    if not cfg.federation.pooled_dir:
        raise common.RecipeError("eval.features=classifier:auto trains the ruler on the pooled data, which this "
                                 "server does not have; pass --set eval.features=classifier:/path/ruler.keras (a "
                                 "file every client has) or inception_v3")
    from keras_medgan.metrics.domain_classifier import RulerSettings, ensure_domain_classifier

    path = ensure_domain_classifier(cfg.federation.pooled_dir, RulerSettings(epochs=cfg.eval.ruler_epochs))
    return config_lib.replace(cfg, {"eval": {"features": f"classifier:{os.path.abspath(path)}"}})


# ---------------------------------------------------------------------------------------------- arms


def run_arm(cfg: FederatedConfig, arm: str, run_dir: str, built: dict | None = None) -> list[dict]:
    """The ``alone`` or ``centralized`` arm: the same GAN, the same steps per round, no Flower.

    ``alone``: each client trains on its own data and is evaluated on its own val split. ``centralized``: one
    GAN on the pooled data, evaluated on every client's val split. Every trained GAN starts from the same seeded
    weights and state as the federation's; one model is built (and traced) and reset for each dataset, kept in
    ``built`` to serve the next arm too. Returns rows like ``rounds.jsonl``'s.
    """
    built = {} if built is None else built
    fed = cfg.federation
    path = os.path.join(run_dir, "arms", f"{arm}.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
        if len(rows) == fed.rounds:
            return rows
        # A resumed run with more (or fewer) rounds: the arm has no state to continue from, so it is retrained.
        print(f"[{arm}] {path} covers {len(rows)} round(s), the run now has {fed.rounds}: training the arm again")
    from keras_medgan.federated.server import evaluation_due, pooled_fid
    from keras_medgan.recipes.federated_gans import ADAPTERS

    config = config_lib.to_dict(cfg)
    ruler, n_eval = cfg.eval.features, cfg.eval.periodic_images
    rows = [{"round": r, "clients": {}} for r in range(1, fed.rounds + 1)]
    if arm == "alone":
        groups = [(d, {str(i): d}) for i, d in enumerate(fed.client_dirs)]
    else:
        if not fed.pooled_dir:
            raise common.RecipeError("the centralized arm needs the pooled data (partition with --pooled)")
        groups = [(fed.pooled_dir, {str(i): d for i, d in enumerate(fed.client_dirs)})]
    evals = {r: [] for r in range(1, fed.rounds + 1)}
    for train_dir, targets in groups:
        adapter = built.get("adapter")
        if adapter is not None:
            try:  # one built (and traced) model for every folder, each time from the same seeded start
                adapter.use_data(train_dir)
                adapter.set_shared_weights(built["start"][0])
                adapter.set_local_state(built["start"][1])
            except NotImplementedError:
                adapter = None
        if adapter is None:
            adapter = ADAPTERS[cfg.gan](config_from_dict(config), train_dir, fed.averaged)
            built.update(adapter=adapter, start=(adapter.shared_weights(), adapter.local_state()))
        for r in range(1, fed.rounds + 1):
            t0 = time.time()
            adapter.train(fed.local_steps)
            if not evaluation_due(r, fed.eval_every, fed.rounds):  # the federation's evaluation rounds only
                continue
            for pid, ref in targets.items():
                e = adapter.evaluate(ruler, n_eval, reference_dir=ref)
                rows[r - 1]["clients"][pid] = {"fid": e["fid"], "kid": e["kid"], "num_real": e["num_real"]}
                evals[r].append({"moments": [e["real_mean"], e["real_cov"], e["fake_mean"], e["fake_cov"]],
                                 "num_real": e["num_real"], "num_fake": e["num_fake"]})
            fids = ", ".join(f"client {p} {rows[r - 1]['clients'][p]['fid']:.4g}" for p in targets)
            print(f"[{arm}] {os.path.basename(train_dir)} round {r}/{fed.rounds}: FID {fids} "
                  f"({time.time() - t0:.0f} s)")
    if arm == "centralized":
        for r in evals:
            rows[r - 1]["pooled_fid"] = pooled_fid(evals[r]) if evals[r] else None
    os.makedirs(os.path.dirname(path), exist_ok=True)
    schema.write_json_atomic(path, rows)
    return rows


# ---------------------------------------------------------------------------------------------- report


def rounds_to_reach(curve: list[float], target: float) -> Optional[int]:
    """The first round (1-based) whose FID is at or below ``target``; None when never."""
    return next((i + 1 for i, v in enumerate(curve) if v is not None and v <= target), None)


def speedups(curves: dict, num_clients: int) -> dict:
    """Per client: the target FID both the federated and the alone arm reach (the worse of their best FIDs), the
    rounds each needs to reach it, and alone / federated (paper 003 Sec. 4.1: about 1.6 for the smallest)."""
    out = {}
    for c in map(str, range(num_clients)):
        fed, alone = curves["federated"].get(c) or [], curves.get("alone", {}).get(c) or []
        fed_fids, alone_fids = [v for v in fed if v is not None], [v for v in alone if v is not None]
        if not fed_fids or not alone_fids:
            continue
        target = max(min(fed_fids), min(alone_fids))
        r_fed, r_alone = rounds_to_reach(fed, target), rounds_to_reach(alone, target)
        out[c] = {"target_fid": target, "rounds_federated": r_fed, "rounds_alone": r_alone,
                  "speedup": r_alone / r_fed}
    return out


def fid_curves(fed_rows: list[dict], arms: dict, num_clients: int) -> dict:
    """``{arm: {client: [FID per round]}}`` (None where a client did not answer) plus ``pooled``."""
    def curve(rows, c):
        return [r["clients"].get(c, {}).get("fid") for r in rows]

    out = {"federated": {str(c): curve(fed_rows, str(c)) for c in range(num_clients)}}
    for arm, rows in arms.items():
        out[arm] = {str(c): curve(rows, str(c)) for c in range(num_clients)}
    out["pooled"] = {"federated": [r.get("pooled_fid") for r in fed_rows]}
    if "centralized" in arms:
        out["pooled"]["centralized"] = [r.get("pooled_fid") for r in arms["centralized"]]
    return out


def plot_curves(curves: dict, sizes: dict, path: str) -> Optional[str]:
    """FID against round, one panel per client (and pooled); None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    clients = sorted(curves["federated"], key=int)
    fig, axes = plt.subplots(1, len(clients) + 1, figsize=(4 * (len(clients) + 1), 3.4), squeeze=False)
    styles = {"federated": "-o", "alone": "--s", "centralized": ":^"}
    for ax, c in zip(axes[0], clients):
        for arm in ("federated", "alone", "centralized"):
            ys = curves.get(arm, {}).get(c)
            if ys:
                ax.plot(range(1, len(ys) + 1), [np.nan if y is None else y for y in ys], styles[arm], label=arm)
        ax.set_title(f"client {c} ({sizes.get(c, '?')} train images)")
        ax.set_xlabel("round")
        ax.set_ylabel("FID (own val split)")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    for arm, ys in curves["pooled"].items():
        ax.plot(range(1, len(ys) + 1), [np.nan if y is None else y for y in ys], styles[arm], label=arm)
    ax.set_title("pooled val (all clients)")
    ax.set_xlabel("round")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
    plt.close(fig)
    return path


def stylegan_lines(cfg: FederatedConfig, fed_rows: list[dict]) -> list[str]:
    """The report's StyleGAN2-ADA lines: its settings, and each client's own step counter and ADA p at its last
    training round (local state, never averaged)."""
    if cfg.gan != "stylegan2-ada":
        return []
    from keras_medgan.recipes.federated_gans import stylegan_config

    s, a = cfg.stylegan2, cfg.stylegan2.augment
    kind = f"conditional on {len(cfg.data.classes)} classes" if s.model.conditional else "unconditional"
    gamma = sg.r1_gamma(stylegan_config(cfg, None))
    r1 = f"R1 gamma {gamma:.4g} every {s.loss.r1_interval}" if gamma > 0 else "R1 off"
    pl = f"path length weight {s.loss.pl_weight:g} every {s.loss.pl_interval}" if s.loss.pl_weight > 0 else (
        "path length off")
    ada = "off" if a.pipeline == "none" else f"`{a.pipeline}`, p from {a.p}" + (
        f", adaptive (target r_t {a.target})" if a.target else ", fixed")
    last = {}
    for row in fed_rows:
        last.update(row.get("local", {}))
    state = "; ".join(f"client {c}: step {int(v['step'])}, ADA p {v['ada-p']:.4f}" for c, v in sorted(last.items())
                      if "step" in v and "ada-p" in v)
    return [f"- StyleGAN2-ADA ({kind}): z {s.model.z_dim}, w {s.model.w_dim}, channel_base {s.model.channel_base} / "
            f"max {s.model.channel_max}; {r1}, {pl}; ADA {ada}; EMA half-life {s.ema.kimg:g} kimg; FID of the EMA "
            "generator",
            f"- Local state at each client's last round: {state or 'not reported'}"]


def write_report(run_dir: str, cfg: FederatedConfig, mode: str, seconds: dict) -> dict:
    """``metrics.json``, ``fid_vs_round.png`` and ``report.md`` from the finished arms."""
    from keras_medgan.federated.server import failure_summary, read_rounds

    fed = cfg.federation
    fed_rows = read_rounds(run_dir)
    arms = {}
    for arm in fed.arms:
        p = os.path.join(run_dir, "arms", f"{arm}.json")
        if arm != "federated" and os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                arms[arm] = json.load(f)
    curves = fid_curves(fed_rows, arms, fed.clients)
    sizes = {}
    for r in fed_rows:
        sizes.update(r.get("num_examples", {}))
    speed = speedups(curves, fed.clients)
    failures = [{"round": r["round"], **f} for r in fed_rows for f in r["failures"]]
    metrics = {"curves": curves, "speedup": speed, "failures": failures, "train_images": sizes,
               "seconds": seconds, "rounds": len(fed_rows)}
    schema.write_json_atomic(os.path.join(run_dir, "metrics.json"), metrics)
    chart = plot_curves(curves, sizes, os.path.join(run_dir, "fid_vs_round.png"))

    def fmt(v):
        return "—" if v is None else f"{v:.4g}"

    stylegan = cfg.gan == "stylegan2-ada"
    averaged = ("G, EMA G and D" if fed.averaged == "gd" else "G and EMA G (D local)") if stylegan else (
        "G and D" if fed.averaged == "gd" else "G only (D local)")
    local = ("optimizer state, step counter (kimg), ADA p and r_t, path-length mean and RNG streams local" if stylegan
             else "optimizer state local")
    lines = [f"# Federated {cfg.gan} run report (paper 003, Sec. 3.2 / 4.1)", "",
             f"- Mode: {mode} (Flower); {fed.clients} clients, FedAvg weighted by training images, {len(fed_rows)} "
             f"of {fed.rounds} rounds of {fed.local_steps} local steps; averaged: {averaged}; {local}",
             *stylegan_lines(cfg, fed_rows),
             f"- Data: `{cfg.data.data_dir}` (skew `{fed.skew}`), {cfg.data.image_size} px, classes "
             f"{', '.join(cfg.data.classes)}; training images per client: "
             + ", ".join(f"client {c} {n}" for c, n in sorted(sizes.items())),
             (f"- Ruler: `{cfg.eval.features}`; {cfg.eval.periodic_images} generated images per client evaluation "
              "against the client's own val split; pooled FID from the clients' feature moments; evaluated "
              + ("after every round" if fed.eval_every == 1 else f"every {fed.eval_every} rounds and after the last")
              if fed.eval_every else "- Evaluation: none (federation.eval_every=0)"),
             "- Time (this session): " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())]
    resumed = [r["round"] for r in fed_rows if r.get("resumed")]
    if resumed:
        lines.append(f"- Resumed (server restarted) before round(s) {', '.join(map(str, resumed))}: from the saved "
                     "global weights; each client's local state (optimizer moments, step counter, ADA p, a local D) "
                     "started afresh there")
    lines += ["", "## FID against round (each client's own val split)", "",
              f"![FID against round]({os.path.basename(chart)})" if chart else "(matplotlib missing: no chart)", ""]
    arm_names = ["federated", *arms]
    header = "| round | " + " | ".join(f"client {c} {a}" for c in map(str, range(fed.clients)) for a in arm_names)
    lines += [header + " | pooled federated |" + (" pooled centralized |" if "centralized" in arms else ""),
              "|" + "---|" * (1 + fed.clients * len(arm_names) + 1 + ("centralized" in arms))]
    for i in range(len(fed_rows)):
        cells = [fmt(curves[a][c][i] if i < len(curves[a][c]) else None)
                 for c in map(str, range(fed.clients)) for a in arm_names]
        cells.append(fmt(curves["pooled"]["federated"][i]))
        if "centralized" in arms:
            cells.append(fmt(curves["pooled"]["centralized"][i]))
        lines.append(f"| {fed_rows[i]['round']} | " + " | ".join(cells) + " |")
    lines += ["", "## Speed-up of federated over alone (paper 003: about 1.6x for the smallest hospital)", ""]
    if speed:
        lines += ["Target FID = the worse of the two arms' best FIDs (both reach it); rounds = the first round at "
                  "or below it; speed-up = rounds alone / rounds federated.", "",
                  "| client | train images | target FID | rounds federated | rounds alone | speed-up |",
                  "|---|---|---|---|---|---|"]
        for c, s in speed.items():
            lines.append(f"| {c} | {sizes.get(c, '?')} | {s['target_fid']:.4g} | {s['rounds_federated']} | "
                         f"{s['rounds_alone']} | {s['speedup']:.2f}x |")
    else:
        lines.append("Not computed (needs the alone arm and evaluated rounds).")
    lines += ["", "## Failures", ""]
    if failures:
        lines += ["| round | client | phase | reason |", "|---|---|---|---|"]
        lines += [f"| {f['round']} | {f['client']} | {f['phase']} | "
                  f"{(f.get('summary') or failure_summary(f['reason'])).replace('|', '/')} |" for f in failures]
    else:
        lines.append("None: every client answered every round.")
    with atomic_open(os.path.join(run_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return metrics


# ---------------------------------------------------------------------------------------------- command


def _flower_or_error():
    try:
        from keras_medgan.federated import require_flower

        return require_flower()
    except ImportError:
        raise common.RecipeError(INSTALL_HINT) from None


def _start(parser, args):
    """New run: the resolved config and a fresh run folder; ``--resume``: the saved config and its folder."""
    try:
        if args.resume:
            run_dir = args.run_dir or common.latest_run_dir(RECIPE)
            if run_dir is None:
                raise config_lib.ConfigError(f"--resume: no run under {common.runs_root()}/{RECIPE}; pass --run-dir")
            cfg = common.resume_config(run_dir, get_config, args, changeable=RESUME_CHANGEABLE)
            if args.gan and args.gan != cfg.gan:
                raise config_lib.ConfigError(f"--gan {args.gan}: {run_dir} trains {cfg.gan}; a resumed run keeps "
                                             "its GAN")
            fed = cfg.federation
            return config_lib.replace(cfg, {"train": {"steps": fed.rounds * fed.local_steps}}), run_dir
        cfg = common.resolve_config(get_config, args)
        if args.gan:
            cfg = config_lib.replace(cfg, {"gan": args.gan})
    except (config_lib.ConfigError, ValueError) as e:
        parser.error(str(e))
    if cfg.federation.secagg:
        raise common.RecipeError(
            "federation.secagg: Flower 1.41 and 1.42 offer SecAgg+ (SecAggPlusWorkflow + secaggplus_mod) only for "
            "the legacy strategy / NumPyClient API, not for the Message-API FedAvg this recipe uses; run without it.")
    if args.run_dir and os.path.exists(os.path.join(args.run_dir, "config.json")):
        raise common.RecipeError(f"{args.run_dir} already holds a run; continue it with --resume or pass a new "
                                 "--run-dir (nothing was changed).")
    return cfg, None


def _deploy(run_dir: str, superlink: str) -> None:
    """Submits the run to a running SuperLink with ``flwr run`` and streams its log until it ends."""
    app_dir = os.path.join(run_dir, "flower-app")
    home = os.path.join(run_dir, "flower-home")
    os.makedirs(app_dir, exist_ok=True)
    os.makedirs(home, exist_ok=True)
    with atomic_open(os.path.join(app_dir, "pyproject.toml"), "w", encoding="utf-8") as f:
        f.write('[project]\nname = "keras-medgan-federated"\nversion = "1.0.0"\n'
                'description = "keras-medgan federated GAN recipe"\nlicense = "Apache-2.0"\n\n'
                '[tool.flwr.app]\npublisher = "keras-medgan"\n\n[tool.flwr.app.components]\n'
                'serverapp = "keras_medgan.recipes.federated_app:server_app"\n'
                'clientapp = "keras_medgan.recipes.federated_app:client_app"\n\n'
                '[tool.flwr.app.config]\nrun-dir = ""\n')
    with atomic_open(os.path.join(home, "config.toml"), "w", encoding="utf-8") as f:
        f.write(f'[superlink]\ndefault = "medgan"\n\n[superlink.medgan]\naddress = "{superlink}"\ninsecure = true\n')
    flwr = os.path.join(os.path.dirname(sys.executable), "flwr")
    cmd = [flwr if os.path.exists(flwr) else "flwr", "run", app_dir, "medgan", "--run-config",
           f"run-dir='{os.path.abspath(run_dir)}'", "--stream"]
    print("submitting:", " ".join(cmd))
    env = {**os.environ, "FLWR_HOME": home}
    status = subprocess.call(cmd, env=env)
    if status:
        raise common.RecipeError(f"`flwr run` failed (exit status {status}); is the SuperLink running at "
                                 f"{superlink} (flower-superlink --port, default 8000)?")


def train(argv) -> int:
    parser = common.build_parser(PROG, __doc__, PRESETS, changeable=RESUME_CHANGEABLE)
    parser.add_argument("--gan", default=None, choices=GANS,
                        help="The GAN every hospital trains: cdcgan or cgan (the DCGAN family, recipes/noise_gan.py; "
                             "settings model.*, loss.*, optimizer.*) or stylegan2-ada (paper 003's GAN, "
                             "recipes/stylegan2_ada.py; settings stylegan2.*, from the StyleGAN2-ADA recipe's preset "
                             "of the same name). Default: the preset's (demo, smoke: cdcgan; paper: stylegan2-ada).")
    parser.add_argument("--mode", choices=MODES, default="simulation",
                        help="simulation: Flower's simulation engine (Ray) runs the server and every client on this "
                             "machine. deployment: submit to a running SuperLink (--superlink) whose SuperNodes run "
                             "the clients, on this machine or others.")
    parser.add_argument("--superlink", default="127.0.0.1:8000",
                        help="Deployment mode: the SuperLink's HTTP address (flower-superlink --host/--port; Flower "
                             "1.41 serves its Fleet and Control APIs there). Default: 127.0.0.1:8000.")
    parser.add_argument("--total-cpus", type=int, default=0,
                        help="Simulation mode: CPUs Ray may use in all (0 = every core of this machine).")
    args = parser.parse_args(argv)
    _flower_or_error()
    cfg, run_dir = _start(parser, args)
    if args.dry_run:
        print(json.dumps(config_lib.to_dict(cfg), indent=2))
        return 0
    if run_dir is None:
        run_dir = args.run_dir or common.new_run_dir(RECIPE, cfg.name)
        os.makedirs(run_dir, exist_ok=True)
        cfg = resolve_ruler(resolve_data(cfg, run_dir))
    # The server reads config.json (a resume may have changed federation.rounds).
    schema.write_json_atomic(os.path.join(run_dir, "config.json"), config_lib.to_dict(cfg))
    print(f"run directory: {run_dir}")
    from keras_medgan.federated.client import make_client_app
    from keras_medgan.federated.server import load_state, make_server_app, simulate

    seconds = {}
    t0 = time.time()
    if args.mode == "simulation":
        # Ray's workers import keras_medgan from the same source tree as this process.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        simulate(make_server_app(build_adapter, run_dir), make_client_app(build_adapter), cfg.federation.clients,
                 cfg.federation.client_cpus, args.total_cpus or os.cpu_count() or 1)
    else:
        _deploy(run_dir, args.superlink)
    done, _ = load_state(run_dir)
    seconds["federated"] = time.time() - t0
    if done < cfg.federation.rounds:
        raise common.RecipeError(f"the federation stopped after round {done} of {cfg.federation.rounds} (see the "
                                 f"log above); continue it with --resume --run-dir {run_dir}")
    built: dict = {}  # one model for every arm (run_arm)
    for arm in cfg.federation.arms:
        if arm == "federated":
            continue
        if args.mode == "deployment" and not all(os.path.isdir(d) for d in cfg.federation.client_dirs):
            print(f"skipping the {arm} arm: the clients' data is not on this machine")
            continue
        t0 = time.time()
        run_arm(cfg, arm, run_dir, built)
        seconds[arm] = time.time() - t0
    metrics = write_report(run_dir, cfg, args.mode, seconds)
    for c, s in metrics["speedup"].items():
        print(f"client {c}: federated reaches FID {s['target_fid']:.4g} in {s['rounds_federated']} round(s), alone in "
              f"{s['rounds_alone']}: speed-up {s['speedup']:.2f}x")
    print(f"\nrun directory: {run_dir}\n  report: {os.path.join(run_dir, 'report.md')}\n  chart: "
          f"{os.path.join(run_dir, 'fid_vs_round.png')}")
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit status (1 on a user error, including a missing Flower install)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return common.guarded(train, argv)


if __name__ == "__main__":
    sys.exit(main())
