"""The small interface a GAN offers to federated training, and the FedAvg maths (McMahan et al. 2017).

A Flower client (``client.make_client_app``) knows nothing about any GAN: it builds a ``GANAdapter`` from the
run's config and its own data folder, loads the averaged weights it receives, trains ``local_steps`` batches,
and sends back the averaged part and its number of training examples. What stays on the client between rounds
(the parts that are not averaged, both optimizers' state, the noise stream) goes through ``local_state`` and
``set_local_state``: the client keeps it in Flower's ``Context.state``, which never leaves the node.

Adding a GAN: subclass ``GANAdapter`` in the recipe layer (``recipes/federated_gans.py`` holds the DCGAN family's
and StyleGAN2-ADA's), implement the six abstract methods below, and register the class in
``recipes.federated_gans.ADAPTERS`` under the name ``--gan`` takes. Nothing in ``client`` or ``server`` changes.
"""

from __future__ import annotations

import abc
from typing import Sequence

import numpy as np

AVERAGED = ("gd", "g")  # what FedAvg averages: generator and discriminator, or the generator only


class GANAdapter(abc.ABC):
    """One GAN as federated training sees it.

    Args:
        cfg: the recipe's frozen config (the adapter reads its own sections).
        data_dir: str or None. The client's dataset; None on the server, which only needs the weights' shapes.
        averaged: str. ``gd`` (G and D are averaged) or ``g`` (G only; D stays local).
    """

    def __init__(self, cfg, data_dir: str | None, averaged: str = "gd"):
        if averaged not in AVERAGED:
            raise ValueError(f"`averaged` must be one of {AVERAGED}. Received: averaged={averaged!r}")
        self.cfg = cfg
        self.data_dir = data_dir
        self.averaged = averaged

    @property
    @abc.abstractmethod
    def num_train_examples(self) -> int:
        """Training images of this client: FedAvg's weight."""

    @abc.abstractmethod
    def shared_weights(self) -> list[np.ndarray]:
        """The averaged part (G and D, or G), in a fixed order."""

    @abc.abstractmethod
    def set_shared_weights(self, arrays: Sequence[np.ndarray]) -> None:
        """Loads the averaged part (the global model)."""

    @abc.abstractmethod
    def local_state(self) -> list[np.ndarray]:
        """Everything else training needs to continue: non-averaged networks, optimizer slots, RNG state."""

    @abc.abstractmethod
    def set_local_state(self, arrays: Sequence[np.ndarray]) -> None:
        """Restores ``local_state()``."""

    @abc.abstractmethod
    def use_data(self, data_dir: str) -> None:
        """Trains on another dataset folder from now on, keeping the weights and state. The Flower client serves
        every node of a process with one adapter and switches it per message, and the recipe's comparison arms
        reset one built model instead of building and tracing one per folder."""

    def progress(self) -> dict:
        """Numbers of this client's local state worth reporting each round (step counter, ADA p, ...): they go
        to the server in the train reply's metrics (``local/<name>``) and into ``rounds.jsonl``; default none."""
        return {}

    @abc.abstractmethod
    def train(self, steps: int) -> dict:
        """Trains ``steps`` batches on the client's training split; returns the last losses."""

    @abc.abstractmethod
    def evaluate(self, ruler: str, num_images: int) -> dict:
        """FID/KID of the generator against the client's val split, measured with ``ruler``.

        Returns ``{"fid", "kid", "num_real", "num_fake", "real_mean", "real_cov", "fake_mean", "fake_cov"}``:
        the feature moments let the server compute the pooled FID over every client's val split without
        seeing a feature vector.
        """


def weighted_mean(client_arrays: Sequence[Sequence[np.ndarray]], num_examples: Sequence[int]) -> list[np.ndarray]:
    """FedAvg: the example-weighted mean of each array over clients (McMahan et al. 2017, Alg. 1).

    Example:

    >>> weighted_mean([[np.zeros(2)], [np.ones(2)]], [1, 3])[0]
    array([0.75, 0.75])
    """
    w = np.asarray(num_examples, np.float64)
    if len(client_arrays) != len(w) or not len(w) or (w <= 0).any():
        raise ValueError(f"need one positive example count per client. Received: {list(num_examples)}")
    w = w / w.sum()
    return [sum(wi * np.asarray(a[k], np.float64) for wi, a in zip(w, client_arrays))
            for k in range(len(client_arrays[0]))]


def pooled_moments(means: Sequence[np.ndarray], covs: Sequence[np.ndarray], counts: Sequence[int]):
    """Mean and (ddof=1) covariance of the union of several sets from each set's mean, covariance and size."""
    n = np.asarray(counts, np.float64)
    total = n.sum()
    mu = sum(ni * np.asarray(m, np.float64) for ni, m in zip(n, means)) / total
    scatter = sum((ni - 1) * np.asarray(c, np.float64) + ni * np.outer(m - mu, m - mu)
                  for ni, m, c in zip(n, means, covs))
    return mu, scatter / (total - 1)
