"""The GANs federated training can train: ``GANAdapter`` implementations and their registry.

``ADAPTERS`` maps the name ``--gan`` takes to an adapter class: ``cdcgan`` / ``cgan`` (``DCGANAdapter``, the
DCGAN family of ``recipes/noise_gan.py``) and ``stylegan2-ada`` (``StyleGANAdapter``, paper 003's GAN, Sec. 3.2,
from ``recipes/stylegan2_ada.py``). Both derive from ``RecipeGANAdapter``, which holds what they share: the
averaged / local split of the recipe's ``training_groups``, training through the recipe's data pipeline, and
the FID/KID/feature-moment evaluation (``fid_kid_moments``).

To add a GAN: write a ``RecipeGANAdapter`` (or plain ``GANAdapter``) subclass here that builds the model from the
federated config (seeded, so every node and the server start from the same weights), names the groups that are
averaged and implements ``step`` and ``generate_fn``; then register it in ``ADAPTERS``. See
``keras_medgan/federated/adapter.py``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import importlib
import random
from typing import Callable, Sequence

import keras
import numpy as np

from keras_medgan.data import pipelines, schema
from keras_medgan.federated.adapter import GANAdapter
from keras_medgan.metrics import sources
from keras_medgan.metrics.frechet import feature_moments, frechet_distance
from keras_medgan.metrics.kernel import kernel_inception_distance
from keras_medgan.recipes import common, noise_gan
from keras_medgan.recipes import evaluation as rec_eval
from keras_medgan.recipes import stylegan2_ada


def _assign(variables, arrays: Sequence[np.ndarray], what: str) -> None:
    if len(variables) != len(arrays):
        raise ValueError(f"{what}: expected {len(variables)} arrays, received {len(arrays)}")
    for v, a in zip(variables, arrays):
        if int(np.prod(v.shape)) != np.asarray(a).size:
            raise ValueError(f"{what}: variable {v.path} has shape {tuple(v.shape)}, received an array of shape "
                             f"{np.shape(a)} (a config that differs between the server and this client?)")
        v.assign(np.asarray(a).reshape(v.shape))


@contextlib.contextmanager
def seeded_build(seed: int):
    """Seeds Keras, TensorFlow and NumPy (``keras.utils.set_random_seed``) and, while the block runs, gives Keras's
    default-seed source its own ``random.Random(seed)``.

    Keras draws the seed of every initializer built without an explicit one from Python's global ``random``
    module (``keras.src.random.seed_generator.make_default_seed``). Flower's and Ray's threads draw from that
    module too while the server and the clients build their models, so ``set_random_seed`` alone gave the
    server different initial weights from a client (measured: the StyleGAN2 D and the last toRGB layers). With a
    private generator every process builds the same weights from the same seed, whatever its other threads do.
    (A Keras without that module attribute gets ``set_random_seed`` only.)
    """
    keras.utils.set_random_seed(seed)
    module = importlib.import_module("keras.src.random.seed_generator")
    saved = getattr(module, "python_random", None)
    if saved is not None:
        module.python_random = random.Random(seed)
    try:
        yield
    finally:
        if saved is not None:
            module.python_random = saved


def fid_kid_moments(evaluator: rec_eval.GeneratorEvaluator, generate_fn: Callable[[int], dict], n: int) -> dict:
    """FID and KID (paper 003 Sec. 3.2-3.3: the metrics its GANs are selected and compared by) of ``n`` images from
    ``generate_fn`` against ``evaluator``'s real split, and both feature sets' means and covariances
    (``GANAdapter.evaluate``'s dict: the server pools the moments over clients)."""
    size = evaluator.resolution
    real = evaluator.real
    batch = generate_fn(n)
    fake = sources.extract_batches(evaluator.extractor, sources.array_batches(batch["image"], batch["label"], None,
                                                                              size), "generator", size, total=n)
    kid, _ = kernel_inception_distance(real.features, fake.features, subsets=20, subset_size=1000)
    real_mean, real_cov = feature_moments(real.features)
    fake_mean, fake_cov = feature_moments(fake.features)
    return {"fid": frechet_distance(real.features, fake.features), "kid": kid, "num_real": len(real),
            "num_fake": n, "real_mean": real_mean, "real_cov": real_cov, "fake_mean": fake_mean,
            "fake_cov": fake_cov}


class RecipeGANAdapter(GANAdapter):
    """A recipe's compiled GAN as federated training sees it.

    A subclass builds ``self.model`` from ``self.recipe_cfg`` (the recipe's own config for this client's data
    folder) and calls ``_split(groups, averaged_groups)`` with the recipe's ``training_groups(model)``: the
    variables of the averaged groups are ``shared_weights`` (in the groups' order), every other group (optimizer
    slots, step counters, RNG streams, adaptive state, a local D) is ``local_state``.
    """

    recipe_cfg = None
    model = None

    def _split(self, groups: dict, averaged_groups: Sequence[str]) -> None:
        missing = [g for g in averaged_groups if g not in groups]
        if missing:
            raise ValueError(f"averaged groups {missing} are not among the model's groups {sorted(groups)}")
        self.groups = tuple(averaged_groups)
        self._shared = [v for g in averaged_groups for v in groups[g]]
        self._local = [v for g, vs in groups.items() if g not in averaged_groups for v in vs]
        self._evaluators: dict = {}
        self.info, self.ids = None, np.arange(len(self.cfg.data.classes))
        if self.data_dir:
            self.use_data(self.data_dir)

    def use_data(self, data_dir: str) -> None:
        """Trains on (and by default evaluates against) another dataset folder with the same classes from now on;
        the weights and state stay as they are."""
        self.data_dir = data_dir
        self.recipe_cfg = dataclasses.replace(self.recipe_cfg,
                                              data=dataclasses.replace(self.recipe_cfg.data, data_dir=data_dir))
        self.info = schema.read_dataset_info(data_dir)
        self.ids = noise_gan.dataset_ids(self.recipe_cfg, self.info)

    @abc.abstractmethod
    def step(self) -> int:
        """Minibatches this client has trained (its data stream continues from there)."""

    @abc.abstractmethod
    def generate_fn(self, reference_labels: np.ndarray) -> Callable[[int], dict]:
        """``n -> {"image", "label"}``: the images FID is measured on, following ``reference_labels``."""

    @property
    def num_train_examples(self) -> int:
        return pipelines.selected_records(self.recipe_cfg.data, self.info, "train")

    def shared_weights(self) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(v) for v in self._shared]

    def set_shared_weights(self, arrays) -> None:
        _assign(self._shared, arrays, "shared weights")

    def local_state(self) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(v) for v in self._local]

    def set_local_state(self, arrays) -> None:
        _assign(self._local, arrays, "local state")

    def progress(self) -> dict:
        return {"step": self.step()}

    def train(self, steps: int) -> dict:
        # The data stream continues where this client's previous round stopped (its step counter is local state).
        ds = pipelines.make_dataset(common.train_data_config(self.recipe_cfg), "train", start_step=self.step())
        history = self.model.fit(ds, steps_per_epoch=int(steps), epochs=1, verbose=0, shuffle=False)
        return {k: float(v[-1]) for k, v in history.history.items()}

    def evaluate(self, ruler: str, num_images: int, reference_dir: str | None = None) -> dict:
        """``GANAdapter.evaluate`` against ``reference_dir``'s val split (default: this client's own)."""
        reference_dir = reference_dir or self.data_dir
        key = (ruler, int(num_images), reference_dir)
        if key not in self._evaluators:
            ev_cfg = dataclasses.replace(self.cfg.eval, features=ruler, periodic_images=int(num_images))
            ids = noise_gan.dataset_ids(self.recipe_cfg, schema.read_dataset_info(reference_dir))
            self._evaluators[key] = rec_eval.GeneratorEvaluator(ev_cfg, reference_dir, self.cfg.data.image_size,
                                                                verbose=False, classes=ids)
        evaluator = self._evaluators[key]
        n = int(num_images) or len(evaluator.real)
        return fid_kid_moments(evaluator, self.generate_fn(evaluator.real.labels), n)


class DCGANAdapter(RecipeGANAdapter):
    """The conditional DCGAN of ``recipes/noise_gan.py`` (paper 001 networks; ``--gan cdcgan`` or ``cgan``).

    Averaged: G's variables (and D's with ``averaged="gd"``), batch-norm statistics included. Local: D when it
    is not averaged, both Adam optimizers' slots and step counters, the noise seed.
    """

    def __init__(self, cfg, data_dir: str | None, averaged: str = "gd"):
        super().__init__(cfg, data_dir, averaged)
        self.recipe_cfg = noise_gan_config(cfg, data_dir)
        with seeded_build(cfg.train.seed):  # every node and the server start from the same weights
            self.model, _ = noise_gan.build_model(self.recipe_cfg, cfg.data.channels, cfg.train.jit, cfg.train.steps)
        self._split(noise_gan.training_groups(self.model),
                    ("generator", "discriminator") if averaged == "gd" else ("generator",))

    def step(self) -> int:
        return noise_gan.step_of(self.model)

    def generate_fn(self, reference_labels):
        return noise_gan.eval_generate_fn(self.model, self.ids, reference_labels)


class StyleGANAdapter(RecipeGANAdapter):
    """StyleGAN2-ADA (``recipes/stylegan2_ada.py``; ``--gan stylegan2-ada``), the GAN paper 003 trains federated
    (Sec. 3.2: three hospitals, Flower's FedAvg, weights exchanged every 100 iterations; Sec. 4.1: the smallest
    hospital converges about 1.6x faster than alone).

    The model is the StyleGAN2-ADA recipe's (``build_model``) on a ``StyleGANConfig`` made of the federated
    config's data, train and eval sections and its ``stylegan2`` section (networks, loss, ADA, Adam, EMA:
    ``stylegan_config``).

    Averaged (FedAvg): G, the EMA generator and D with ``averaged="gd"``; G and the EMA generator with ``"g"``
    (each D stays with its hospital). The EMA generator is averaged too: each client's EMA continues from the
    average of the clients' EMAs, so the EMA the server evaluates and hands out is a mean of smoothed Gs, not a
    fresh copy of the averaged G. Local: D when not averaged, both Adams' slots and iteration counters, and
    ``training_state()``: the step counter (kimg, the EMA ramp-up and the lazy-regularisation phases follow it),
    ADA's p and its running r_t statistic (each hospital's D overfits its own data at its own pace: ADA Sec. 3
    adapts p to that D), the path-length running mean and the latent / augmentation RNG streams. Evaluation uses
    the EMA generator without truncation (``stylegan2_ada.eval_generate_fn``).
    """

    def __init__(self, cfg, data_dir: str | None, averaged: str = "gd"):
        super().__init__(cfg, data_dir, averaged)
        self.recipe_cfg = stylegan_config(cfg, data_dir)
        with seeded_build(cfg.train.seed):  # every node and the server start from the same weights
            self.model = stylegan2_ada.build_model(self.recipe_cfg, cfg.data.channels, cfg.train.jit)
        self._split(stylegan2_ada.training_groups(self.model),
                    ("generator", "g_ema", "discriminator") if averaged == "gd" else ("generator", "g_ema"))

    def step(self) -> int:
        return stylegan2_ada.step_of(self.model)

    def progress(self) -> dict:
        return {"step": self.step(), "kimg": self.model.kimg, "ada-p": float(keras.ops.convert_to_numpy(
            self.model.ada_p))}

    def generate_fn(self, reference_labels):
        return stylegan2_ada.eval_generate_fn(self.model, self.ids, reference_labels)


def noise_gan_config(cfg, data_dir: str | None) -> noise_gan.NoiseGANConfig:
    """The ``NoiseGANConfig`` of one client (its own data folder) from the federated config."""
    return noise_gan.NoiseGANConfig(
        preset=cfg.preset, name=cfg.name, gan=cfg.gan, data=dataclasses.replace(cfg.data, data_dir=data_dir or ""),
        model=cfg.model, loss=cfg.loss, optimizer=cfg.optimizer, train=cfg.train,
        eval=dataclasses.replace(cfg.eval, every=0))


def stylegan_config(cfg, data_dir: str | None) -> stylegan2_ada.StyleGANConfig:
    """The ``StyleGANConfig`` of one client (its own data folder) from the federated config: ``data``, ``train``
    and ``eval`` are the federated run's (no periodic evaluation: the server asks for it every round), the
    networks, loss, ADA, Adam and EMA come from ``cfg.stylegan2``. The kimg schedule of the StyleGAN2-ADA recipe
    is not used: a client trains ``federation.local_steps`` minibatches per round.

    Raises:
        ValueError: the combination is invalid for StyleGAN2-ADA (e.g. ``data.batch_size`` not a multiple of
            ``stylegan2.model.mbstd_group_size``).
    """
    s = cfg.stylegan2
    return stylegan2_ada.StyleGANConfig(
        preset=cfg.preset, name=cfg.name, data=dataclasses.replace(cfg.data, data_dir=data_dir or ""),
        model=s.model, loss=s.loss, augment=s.augment, optimizer=s.optimizer, ema=s.ema, train=cfg.train,
        eval=dataclasses.replace(cfg.eval, every=0))


ADAPTERS = {
    "cdcgan": DCGANAdapter,
    "cgan": DCGANAdapter,
    "stylegan2-ada": StyleGANAdapter,
}
