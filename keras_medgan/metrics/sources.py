"""Where evaluated images come from, and their features (cached for real datasets).

A source is a keras-medgan dataset split (``DIR`` or ``DIR:split``), a folder of image files, or an
in-memory array. Every source is read at one stated ``resolution``: images are resized to it with
``tf.image.resize(method="bilinear", antialias=True)`` and quantised to uint8 before feature extraction,
so real and generated images take the same path. Real-dataset features are cached under
``<cache root>/features/`` by a hash of everything that changes them (the extractor's fingerprint, the
dataset's fingerprint, split, resolution, image count) and written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from keras_medgan.config import DataConfig
from keras_medgan.data import pipelines, schema
from keras_medgan.io_utils import atomic_open, cache_root
from keras_medgan.metrics.features import FeatureExtractor, quantize

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
THUMBNAIL_SIZE = 32
FEATURE_CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """A dataset split (``kind="dataset"``) or a folder of images (``kind="folder"``)."""

    kind: str
    path: str
    split: str | None = None

    def describe(self) -> str:
        return f"{self.path}:{self.split}" if self.split else self.path


def parse_source(text: str, default_split: str = "val") -> ImageSource:
    """``DIR[:split]`` -> a dataset source when DIR holds ``dataset.json``, else a folder of image files."""
    path, split = text, None
    head, sep, tail = text.rpartition(":")
    if sep and tail in schema.SPLITS:
        path, split = head, tail
    if os.path.isfile(os.path.join(path, schema.DATASET_JSON)):
        return ImageSource("dataset", os.path.abspath(path), split or default_split)
    if split:
        raise FileNotFoundError(f"{text!r}: {path!r} has no {schema.DATASET_JSON}, so it is not a keras-medgan "
                                "dataset and ':split' does not apply. Pass the dataset folder written by medgan-data.")
    if os.path.isdir(path):
        return ImageSource("folder", os.path.abspath(path))
    raise FileNotFoundError(f"{text!r} is neither a keras-medgan dataset folder (with {schema.DATASET_JSON}) nor a "
                            "folder of images. Check the path.")


def folder_files(path: str) -> list[str]:
    files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names
                   if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
    if not files:
        raise FileNotFoundError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
    return files


def _resize_uint8(images: tf.Tensor, resolution: int) -> np.ndarray:
    x = quantize(images)
    if x.shape[1] != resolution or x.shape[2] != resolution:
        x = tf.round(tf.clip_by_value(
            tf.image.resize(x, (resolution, resolution), method="bilinear", antialias=True), 0.0, 255.0))
    return tf.cast(x, tf.uint8).numpy()


def source_resolution(source: ImageSource) -> int:
    """The stored image side of a source (its first image for folders)."""
    if source.kind == "dataset":
        return int(schema.read_dataset_info(source.path).image_size[0])
    from PIL import Image

    with Image.open(folder_files(source.path)[0]) as img:
        return int(img.size[1])


def iterate_source(source: ImageSource, resolution: int, batch_size: int = 64, max_images: int | None = None,
                   skipped: list | None = None) -> Iterator[dict]:
    """Batches ``{"image": uint8 [B, r, r, C], "label", "fitzpatrick"}`` in a fixed order.

    Unreadable files in a folder are skipped and appended to ``skipped`` as ``(path, reason)``.
    """
    seen = 0
    if source.kind == "dataset":
        cfg = DataConfig(data_dir=source.path, image_size=resolution, batch_size=batch_size, shuffle_buffer=0,
                         repeat=False, drop_remainder=False, cache=False, deterministic=True)
        for batch in pipelines.make_dataset(cfg, source.split):
            n = len(batch["image"]) if max_images is None else min(len(batch["image"]), max_images - seen)
            if n <= 0:
                return
            yield {"image": _resize_uint8(batch["image"][:n], resolution), "label": batch["label"][:n].numpy(),
                   "fitzpatrick": batch["fitzpatrick"][:n].numpy()}
            seen += n
        return
    from PIL import Image

    files = folder_files(source.path)[:max_images]
    for start in range(0, len(files), batch_size):
        arrays = []
        for path in files[start:start + batch_size]:
            try:
                with Image.open(path) as img:
                    img = img.convert("L" if img.mode in ("L", "I", "I;16", "1") else "RGB")
                    arr = np.asarray(img)
            except (OSError, ValueError) as e:
                if skipped is not None:
                    skipped.append((path, f"{type(e).__name__}: {e}"))
                continue
            arr = arr[..., None] if arr.ndim == 2 else arr
            arrays.append(_resize_uint8(arr[None], resolution)[0])
        if arrays:
            channels = max(a.shape[-1] for a in arrays)
            arrays = [np.repeat(a, channels, axis=-1) if a.shape[-1] != channels else a for a in arrays]
            n = len(arrays)
            yield {"image": np.stack(arrays), "label": np.full(n, -1, np.int32),
                   "fitzpatrick": np.zeros(n, np.int32)}


def thumbnails(images: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """uint8 ``[B, size, size, 3]`` area-downsampled copies for pixel-space nearest neighbours."""
    x = tf.cast(images, tf.float32)
    if x.shape[-1] == 1:
        x = tf.repeat(x, 3, axis=-1)
    x = tf.image.resize(x, (size, size), method="area")
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 255.0)), tf.uint8).numpy()


@dataclasses.dataclass
class FeatureSet:
    """Features of one image set, with what is needed for breakdowns and the memorization audit.

    Attributes:
        features: ``[n, d]`` float32. probs: ``[n, K]`` float32 class probabilities.
        labels: ``[n]`` int (-1 unknown). fitzpatrick: ``[n]`` int (0 unknown).
        thumbnails: ``[n, 32, 32, 3]`` uint8 (pixel space).
        source: str. Where the images came from (``DIR:split``, a folder, or a description).
        resolution: int. Side the images were read at.
    """

    features: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    fitzpatrick: np.ndarray
    thumbnails: np.ndarray
    source: str
    resolution: int

    def __len__(self) -> int:
        return len(self.features)


def extract_batches(extractor: FeatureExtractor, batches, source: str, resolution: int, total: int | None = None,
                    verbose: bool = False) -> FeatureSet:
    """Runs ``extractor`` over batches from ``iterate_source`` (or any iterable of such dicts)."""
    labels, fitz, thumbs = [], [], []

    def images():
        for b in batches:
            labels.append(np.asarray(b["label"]))
            fitz.append(np.asarray(b["fitzpatrick"]))
            thumbs.append(thumbnails(b["image"]))
            yield b["image"]

    out = extractor.extract(images(), total=total, verbose=verbose)
    return FeatureSet(out.features, out.probs, np.concatenate(labels).astype(np.int32),
                      np.concatenate(fitz).astype(np.int32), np.concatenate(thumbs), source, int(resolution))


def array_batches(images, labels=None, fitzpatrick=None, resolution: int | None = None,
                  batch_size: int = 64) -> Iterator[dict]:
    """``iterate_source``-style batches from in-memory images (uint8, or floats in [-1, 1])."""
    images = np.asarray(images)
    n = len(images)
    labels = np.full(n, -1, np.int32) if labels is None else np.asarray(labels)
    fitzpatrick = np.zeros(n, np.int32) if fitzpatrick is None else np.asarray(fitzpatrick)
    resolution = resolution or images.shape[1]
    for i in range(0, n, batch_size):
        yield {"image": _resize_uint8(images[i:i + batch_size], resolution), "label": labels[i:i + batch_size],
               "fitzpatrick": fitzpatrick[i:i + batch_size]}


def _count(source: ImageSource, max_images: int | None) -> int:
    n = (schema.read_dataset_info(source.path).num_examples(source.split) if source.kind == "dataset"
         else len(folder_files(source.path)))
    return n if max_images is None else min(n, max_images)


def source_features(extractor: FeatureExtractor, source: ImageSource, resolution: int, max_images: int | None = None,
                    batch_size: int = 64, verbose: bool = False, skipped: list | None = None) -> FeatureSet:
    """Features of a source, uncached."""
    return extract_batches(extractor, iterate_source(source, resolution, batch_size, max_images, skipped),
                           source.describe(), resolution, total=_count(source, max_images), verbose=verbose)


def feature_cache_key(extractor: FeatureExtractor, source: ImageSource, resolution: int,
                      max_images: int | None) -> str:
    settings = {"version": FEATURE_CACHE_VERSION, "extractor": extractor.describe(),
                "dataset": schema.dataset_fingerprint(source.path), "split": source.split, "resolution": int(resolution),
                "max_images": max_images, "thumbnail": THUMBNAIL_SIZE}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def cached_source_features(extractor: FeatureExtractor, source: ImageSource, resolution: int,
                           max_images: int | None = None, cache_dir=None, batch_size: int = 64,
                           verbose: bool = False) -> FeatureSet:
    """``source_features`` for a dataset split, read from / written to the feature cache."""
    if source.kind != "dataset":
        return source_features(extractor, source, resolution, max_images, batch_size, verbose)
    path = os.path.join(cache_root(cache_dir), "features",
                        f"{feature_cache_key(extractor, source, resolution, max_images)}.npz")
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as z:
            return FeatureSet(z["features"], z["probs"], z["labels"], z["fitzpatrick"], z["thumbnails"],
                              source.describe(), int(resolution))
    fs = source_features(extractor, source, resolution, max_images, batch_size, verbose)
    with atomic_open(path, "wb") as f:
        np.savez(f, features=fs.features, probs=fs.probs, labels=fs.labels, fitzpatrick=fs.fitzpatrick,
                 thumbnails=fs.thumbnails)
    return fs


def images_at(source: ImageSource, indices, resolution: int, batch_size: int = 64) -> np.ndarray:
    """The images at ``indices`` (in ``iterate_source`` order), uint8; for contact sheets."""
    wanted = {int(i): None for i in indices}
    offset = 0
    # No max_images: in a folder it counts files before unreadable ones are skipped; indices count images read.
    for batch in iterate_source(source, resolution, batch_size):
        for i in range(len(batch["image"])):
            if offset + i in wanted:
                wanted[offset + i] = batch["image"][i]
        offset += len(batch["image"])
        if offset > max(wanted):
            break
    return np.stack([wanted[int(i)] for i in indices])


class SparseImages:
    """A few images of a large set, addressable by their index in the set (``len`` is the set's size).

    Lets the contact sheet index generated / training images by audit index without loading the whole set.
    """

    def __init__(self, images: dict, length: int):
        self._images = images
        self._length = int(length)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):
        return self._images[int(index)]


def sparse_images(source: ImageSource, indices, length: int, resolution: int) -> SparseImages:
    """``SparseImages`` holding the images of ``source`` at ``indices``."""
    indices = sorted({int(i) for i in indices})
    return SparseImages(dict(zip(indices, images_at(source, indices, resolution))), length)
