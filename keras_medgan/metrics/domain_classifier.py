"""Train, save and cache the domain classifier that serves as the metrics' ruler (``classifier:PATH``).

The critical review (Sec. 2) and the DermGAN paper (Sec. 4, on the Inception Score) both note that
ImageNet features are a questionable ruler for medical images. A classifier trained on the dataset's own
real training split embeds what distinguishes its classes; its penultimate layer replaces Inception's
pool3 and its softmax replaces the ImageNet classes for the IS. It is trained on real images only, never
on the images being judged, and its validation accuracy is saved beside it so a weak ruler is visible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import keras
import tensorflow as tf

from keras_medgan.config import DataConfig
from keras_medgan.data import pipelines, schema
from keras_medgan.io_utils import atomic_open, cache_root, save_model_atomic
from keras_medgan.metrics.features import float32_policy
from keras_medgan.networks.classifiers import domain_classifier

RULER_VERSION = 1


@dataclasses.dataclass(frozen=True)
class RulerSettings:
    """How the ruler is trained. Changing any field trains a different ruler (and changes the cache key).

    Args:
        image_size: int or None. Input side; None = the stored size, capped at 128 px.
        epochs: int. Passes over the training split.
        batch_size: int.
        learning_rate: float. Adam.
        seed: int.
        feature_dim: int. Width of the ``features`` layer.
    """

    image_size: int | None = None
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    feature_dim: int = 128


def _ruler_size(info: schema.DatasetInfo, settings: RulerSettings) -> int:
    return int(settings.image_size or min(info.image_size[0], 128))


def train_domain_classifier(data_dir: str, out_path: str, settings: RulerSettings = RulerSettings(),
                            verbose: int | str = "auto") -> dict:
    """Trains the ruler on ``data_dir``'s labelled ``train`` split, validates on ``val``, saves ``out_path``.

    Writes ``out_path`` (``.keras``) and ``out_path + ".json"`` (settings, dataset fingerprint, validation
    accuracy), both atomically. Returns that JSON record.
    """
    info = schema.read_dataset_info(data_dir)
    if info.num_classes < 2:
        raise ValueError(f"{data_dir} has {info.num_classes} class(es); a domain classifier needs at least 2. "
                         "Use --features inception_v3 for unlabelled data.")
    size = _ruler_size(info, settings)
    keras.utils.set_random_seed(settings.seed)
    base = DataConfig(data_dir=data_dir, image_size=size, batch_size=settings.batch_size, shuffle_buffer=4096,
                      repeat=False, drop_remainder=False, cache=True, seed=settings.seed)

    def labelled(ds, augment):
        ds = ds.unbatch().filter(lambda ex: ex["label"] >= 0)
        if augment:
            ds = ds.map(lambda ex: {**ex, "image": tf.image.random_flip_left_right(ex["image"], seed=settings.seed)})
        return ds.map(lambda ex: (ex["image"], ex["label"])).batch(settings.batch_size).prefetch(2)

    train_ds = labelled(pipelines.make_dataset(base, "train"), augment=True)
    has_val = info.num_examples("val") > 0
    val_ds = labelled(pipelines.make_dataset(dataclasses.replace(base, shuffle_buffer=0), "val"), False) \
        if has_val else None
    with float32_policy():  # the ruler is the same whatever precision the GAN run uses
        model = domain_classifier(size, info.channels, info.num_classes, feature_dim=settings.feature_dim)
        model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(train_ds, validation_data=val_ds, epochs=settings.epochs, verbose=verbose, shuffle=False)
    val_accuracy = float(history.history["val_accuracy"][-1]) if has_val else None
    record = {"ruler_version": RULER_VERSION, "data_dir": os.path.abspath(data_dir),
              "dataset_fingerprint": schema.dataset_fingerprint(data_dir), "class_names": list(info.class_names),
              "settings": {**dataclasses.asdict(settings), "image_size": size},
              "train_accuracy": float(history.history["accuracy"][-1]), "val_accuracy": val_accuracy}
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    save_model_atomic(model, out_path)
    with atomic_open(out_path + ".json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    return record


def ensure_domain_classifier(data_dir: str, settings: RulerSettings = RulerSettings(), cache_dir=None,
                             verbose: int | str = "auto") -> str:
    """Path of a ruler trained on ``data_dir`` with ``settings``, training and caching it on first use.

    Cached under ``<cache root>/rulers/<dataset fingerprint>-<settings hash>/classifier.keras``.
    """
    key = hashlib.sha256(json.dumps({"v": RULER_VERSION, **dataclasses.asdict(settings)}, sort_keys=True)
                         .encode()).hexdigest()[:10]
    folder = os.path.join(cache_root(cache_dir), "rulers", f"{schema.dataset_fingerprint(data_dir)}-{key}")
    path = os.path.join(folder, "classifier.keras")
    if os.path.isfile(path) and os.path.isfile(path + ".json"):
        return path
    print(f"training the domain classifier (feature ruler) on {data_dir} -> {path}")
    train_domain_classifier(data_dir, path, settings, verbose=verbose)
    return path
