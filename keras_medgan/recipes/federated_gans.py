"""The GANs federated training can train: ``GANAdapter`` implementations and their registry.

``ADAPTERS`` maps the name ``--gan`` takes to an adapter class, or to None with the reason when that GAN is not
ready for federated training. To add a GAN (e.g. StyleGAN2-ADA when ``gans/stylegan2_ada.py`` and its recipe
are in): write a ``GANAdapter`` subclass here that builds the model from the recipe config, lists its
averaged variables (``shared_weights``) and everything else it needs between rounds (``local_state``: other
networks, optimizer slots, RNG and adaptive state such as ADA's p), trains ``steps`` batches and evaluates
with ``recipes.evaluation``; then register it in ``ADAPTERS``. See ``keras_medgan/federated/adapter.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np

from keras_medgan.data import pipelines, schema
from keras_medgan.federated.adapter import GANAdapter
from keras_medgan.metrics import sources
from keras_medgan.metrics.frechet import feature_moments, frechet_distance
from keras_medgan.metrics.kernel import kernel_inception_distance
from keras_medgan.recipes import common, noise_gan
from keras_medgan.recipes import evaluation as rec_eval


def _assign(variables, arrays: Sequence[np.ndarray], what: str) -> None:
    if len(variables) != len(arrays):
        raise ValueError(f"{what}: expected {len(variables)} arrays, received {len(arrays)}")
    for v, a in zip(variables, arrays):
        v.assign(np.asarray(a).reshape(v.shape))


class DCGANAdapter(GANAdapter):
    """The conditional DCGAN of ``recipes/noise_gan.py`` (paper 001 networks; ``--gan cdcgan`` or ``cgan``).

    Averaged: G's variables (and D's with ``averaged="gd"``), batch-norm statistics included. Local: D when it
    is not averaged, both Adam optimizers' slots and step counters, the noise seed.
    """

    def __init__(self, cfg, data_dir: str | None, averaged: str = "gd"):
        super().__init__(cfg, data_dir, averaged)
        self.noise_cfg = noise_gan_config(cfg, data_dir)
        keras.utils.set_random_seed(cfg.train.seed)  # every node and the server start from the same weights
        self.model, _ = noise_gan.build_model(self.noise_cfg, cfg.data.channels, False, cfg.train.steps)
        groups = noise_gan.training_groups(self.model)
        shared = ["generator", "discriminator"] if averaged == "gd" else ["generator"]
        self._shared = [v for g in shared for v in groups[g]]
        self._local = [v for g, vs in groups.items() if g not in shared for v in vs]
        self.info = schema.read_dataset_info(data_dir) if data_dir else None
        self.ids = np.arange(len(cfg.data.classes))
        if self.info is not None:
            self.ids = noise_gan.dataset_ids(self.noise_cfg, self.info)
        self._evaluators: dict = {}

    @property
    def num_train_examples(self) -> int:
        return pipelines.selected_records(self.noise_cfg.data, self.info, "train")

    def shared_weights(self) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(v) for v in self._shared]

    def set_shared_weights(self, arrays) -> None:
        _assign(self._shared, arrays, "shared weights")

    def local_state(self) -> list[np.ndarray]:
        return [keras.ops.convert_to_numpy(v) for v in self._local]

    def set_local_state(self, arrays) -> None:
        _assign(self._local, arrays, "local state")

    def train(self, steps: int) -> dict:
        # The data stream continues where this client's previous round stopped (its step counter is local state).
        ds = pipelines.make_dataset(common.train_data_config(self.noise_cfg), "train",
                                    start_step=noise_gan.step_of(self.model))
        history = self.model.fit(ds, steps_per_epoch=int(steps), epochs=1, verbose=0, shuffle=False)
        return {k: float(v[-1]) for k, v in history.history.items()}

    def evaluate(self, ruler: str, num_images: int, reference_dir: str | None = None) -> dict:
        reference_dir = reference_dir or self.data_dir
        size = self.cfg.data.image_size
        key = (ruler, reference_dir)
        if key not in self._evaluators:
            ev_cfg = dataclasses.replace(self.cfg.eval, features=ruler, periodic_images=int(num_images))
            ids = noise_gan.dataset_ids(self.noise_cfg, schema.read_dataset_info(reference_dir))
            self._evaluators[key] = rec_eval.GeneratorEvaluator(ev_cfg, reference_dir, size, verbose=False,
                                                                classes=ids)
        evaluator = self._evaluators[key]
        real = evaluator.real
        n = int(num_images) or len(real)
        batch = noise_gan.eval_generate_fn(self.model, self.ids, real.labels)(n)
        fake = sources.extract_batches(evaluator.extractor, sources.array_batches(batch["image"], batch["label"],
                                                                                  None, size), "generator", size,
                                       total=n)
        kid, _ = kernel_inception_distance(real.features, fake.features, subsets=20, subset_size=1000)
        real_mean, real_cov = feature_moments(real.features)
        fake_mean, fake_cov = feature_moments(fake.features)
        return {"fid": frechet_distance(real.features, fake.features), "kid": kid, "num_real": len(real),
                "num_fake": n, "real_mean": real_mean, "real_cov": real_cov, "fake_mean": fake_mean,
                "fake_cov": fake_cov}


def noise_gan_config(cfg, data_dir: str | None) -> noise_gan.NoiseGANConfig:
    """The ``NoiseGANConfig`` of one client (its own data folder) from the federated config."""
    return noise_gan.NoiseGANConfig(
        preset=cfg.preset, name=cfg.name, gan=cfg.gan, data=dataclasses.replace(cfg.data, data_dir=data_dir or ""),
        model=cfg.model, loss=cfg.loss, optimizer=cfg.optimizer, train=cfg.train,
        eval=dataclasses.replace(cfg.eval, every=0))


ADAPTERS = {
    "cdcgan": DCGANAdapter,
    "cgan": DCGANAdapter,
    "stylegan2-ada": None,
}
NOT_READY = {"stylegan2-ada": "StyleGAN2-ADA (paper 003's GAN) is being written (gans/stylegan2_ada.py); it plugs in "
                              "through a GANAdapter in recipes/federated_gans.py once its recipe exists. Use "
                              "--gan cdcgan meanwhile."}
