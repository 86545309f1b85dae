"""Which real and which synthetic images a study arm trains on.

The critical review (Bissoto et al. 2021, Sec. 3 and 3.1) fixes the rules followed here:

- Real fractions (1, 1/2, 1/4, 1/8, 1/16) are random selections of the real training set; each replicate draws
  its own (Sec. 3.2: "in each one, we vary the real images"). We draw them stratified by class, so a fraction
  keeps the class ratio.
- Synthetic ratios are relative to the size of the *whole* real training set, "while keeping the real dataset
  class ratio" (Sec. 3.1): 1:1/2 adds half as many synthetic images of each class as there are real ones. The
  class-balancing ratios (real : synthetic benign : synthetic malignant), e.g. (1 : 1/2 : 3/4), set a ratio per
  class (``synthetic_counts(class_ratios=...)``).
- The synthetic sample is fixed across replicates ("but keep the synthetics the same").
- Sampling methods (Sec. 3, "GAN-based data augmentation"): ``random``; ``diverse``, random but excluding
  near-duplicates by perceptual hash (pHash); ``best`` / ``worst``, the images an ancillary classifier
  classifies with the lowest / highest error.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

SAMPLING_METHODS = ("random", "diverse", "best", "worst")
# pHash bits (of 64) at or below which two images count as near-duplicates. The review gives no threshold;
# 6 of 64 bits is a common choice for "the same picture after resizing / recompression" with pHash.
DEFAULT_MAX_HASH_DISTANCE = 6
STUDY_EXTRA = 'pip install -e ".[study]"'


def stratified_subset(labels, fraction: float, seed) -> np.ndarray:
    """Sorted indices of ``round(fraction * n_c)`` random images of every class ``c`` (at least one when
    ``fraction > 0`` and the class has images).

    Args:
        labels: ``[n]`` int class indices.
        fraction: float in [0, 1]. 1 returns every index; 0 none.
        seed: int or sequence of ints for ``numpy.random.default_rng`` (e.g. ``(study_seed, replicate)``).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"`fraction` must be in [0, 1]. Received: fraction={fraction!r}")
    labels = np.asarray(labels).astype(np.int64).ravel()
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        k = 0 if fraction == 0 else max(1, int(round(fraction * len(rows))))
        picked.append(rng.choice(rows, k, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def synthetic_counts(real_counts: Sequence[int], ratio: float, class_ratios: Mapping[int, float] | None = None
                     ) -> np.ndarray:
    """Synthetic images to add per class: ``round(ratio_c * real_counts[c])``, ``ratio_c`` = ``class_ratios[c]``
    where given, else ``ratio``.

    Args:
        real_counts: ``[K]`` images per class in the whole real training set.
        ratio: float >= 0. The real:synthetic ratio's synthetic part (1:1/2 -> 0.5).
        class_ratios: optional ``{class index: ratio}``, the review's balancing ratios; (1 : 1/2 : 3/4) with
            classes (benign, malignant) is ``ratio=0.5, class_ratios={1: 0.75}``.

    Example:

    >>> synthetic_counts([800, 200], 0.5, {1: 0.75}).tolist()
    [400, 150]
    """
    counts = np.asarray(real_counts, np.float64)
    ratios = np.full(len(counts), float(ratio))
    for c, r in (class_ratios or {}).items():
        if not 0 <= int(c) < len(counts):
            raise ValueError(f"class_ratios names class {c}, but there are {len(counts)} classes")
        ratios[int(c)] = float(r)
    if (ratios < 0).any():
        raise ValueError(f"synthetic ratios must be >= 0. Received: ratio={ratio!r}, class_ratios={class_ratios!r}")
    return np.floor(ratios * counts + 0.5).astype(np.int64)


def perceptual_hashes(images, hash_size: int = 8) -> np.ndarray:
    """``[n, hash_size**2]`` bool pHash bits of uint8 images ``[n, H, W, C]`` (the ``imagehash`` package)."""
    try:
        import imagehash
        from PIL import Image
    except ImportError:
        raise ImportError("the 'diverse' sampling method needs the imagehash package: install it with "
                          f"{STUDY_EXTRA} (or pip install imagehash)") from None
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [n, H, W, C]. Received: {images.dtype} {images.shape}")
    out = np.empty((len(images), hash_size * hash_size), bool)
    for i, img in enumerate(images):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        out[i] = imagehash.phash(pil, hash_size=hash_size).hash.ravel()
    return out


def diverse_mask(hashes, labels, order, max_distance: int = DEFAULT_MAX_HASH_DISTANCE) -> np.ndarray:
    """Greedy near-duplicate removal: visiting images in ``order``, keep one unless a kept image of the same
    class is within ``max_distance`` Hamming bits of its hash.

    Returns:
        ``[n]`` bool, True for kept images.
    """
    hashes = np.asarray(hashes, bool)
    labels = np.asarray(labels).astype(np.int64).ravel()
    keep = np.zeros(len(labels), bool)
    kept = {}
    for i in np.asarray(order):
        c = int(labels[i])
        previous = kept.get(c)
        if previous is not None and (np.count_nonzero(previous != hashes[i], axis=1) <= max_distance).any():
            continue
        keep[i] = True
        kept[c] = hashes[i][None] if previous is None else np.concatenate([previous, hashes[i][None]])
    return keep


def classification_error(probs, labels) -> np.ndarray:
    """An ancillary classifier's error on each synthetic image: 1 - probability of its intended class."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels).astype(np.int64).ravel()
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be [n, K] with one row per label. Received {probs.shape} for {len(labels)}")
    return 1.0 - probs[np.arange(len(labels)), labels]


class NotEnoughSyntheticImages(ValueError):
    """The synthetic pool has fewer (usable) images of a class than an arm asks for."""


def select_synthetic(labels, counts: Sequence[int], method: str = "random", seed: int = 0, hashes=None,
                     errors=None, max_distance: int = DEFAULT_MAX_HASH_DISTANCE, class_names=None,
                     source: str = "synthetic source") -> np.ndarray:
    """Indices of ``counts[c]`` synthetic images of each class ``c`` chosen by ``method``.

    Args:
        labels: ``[n]`` class index of each image in the synthetic pool.
        counts: ``[K]`` images wanted per class (``synthetic_counts``).
        method: ``random``; ``diverse`` (random order, near-duplicates by pHash removed first: needs ``hashes``);
            ``best`` (lowest ancillary-classifier error first) or ``worst`` (highest first): need ``errors``.
        seed: int. Order of ``random`` / ``diverse`` (fixed across replicates: the review keeps the synthetic
            sample the same).
        hashes: ``[n, bits]`` from ``perceptual_hashes``.
        errors: ``[n]`` from ``classification_error``.
        max_distance: int. Near-duplicate threshold in hash bits for ``diverse``.
        class_names, source: only for error messages.

    Returns:
        Sorted int indices into the pool.

    Raises:
        NotEnoughSyntheticImages: a class has fewer usable images than asked for; the message says how many
            to generate.
    """
    if method not in SAMPLING_METHODS:
        raise ValueError(f"`method` must be one of {SAMPLING_METHODS}. Received: method={method!r}")
    labels = np.asarray(labels).astype(np.int64).ravel()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    usable = np.ones(len(labels), bool)
    if method == "diverse":
        if hashes is None:
            raise ValueError("method='diverse' needs the perceptual hashes of the pool (perceptual_hashes)")
        usable = diverse_mask(hashes, labels, order, max_distance)
    elif method in ("best", "worst"):
        if errors is None:
            raise ValueError(f"method={method!r} needs the ancillary classifier's errors (classification_error)")
        errors = np.asarray(errors, np.float64).ravel()
        # Stable sort on the error after the random permutation: ties are broken at random, reproducibly.
        key = errors[order] if method == "best" else -errors[order]
        order = order[np.argsort(key, kind="stable")]
    picked = []
    for c, want in enumerate(np.asarray(counts, np.int64)):
        if want <= 0:
            continue
        rows = order[(labels[order] == c) & usable[order]]
        if len(rows) < want:
            name = class_names[c] if class_names is not None else str(c)
            extra = " after removing near-duplicates" if method == "diverse" else ""
            raise NotEnoughSyntheticImages(
                f"{source} has {len(rows)} usable images of class {name!r}{extra}, but the arm needs {want}; "
                f"generate at least {int(np.ceil(want / max(len(rows), 1) * max((labels == c).sum(), 1)))} of "
                "that class (the recipes' generate --num-images) or lower the ratio.")
        picked.append(rows[:want])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
