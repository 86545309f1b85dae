"""Memorization audit: did the GAN copy training images?

Two sources, turned into one tool:

- The memorization check of Carrasco Limeros et al. 2022 ("GAN-based generative modelling for dermatological
  applications - comparative study", paper 003, Sec. 4.3): real images are compared with their nearest
  generated counterparts and the pairs that are "too close", below a low quantile of the distances, are
  singled out and looked at as possible memorized samples.
- The authenticity score of Alaa et al. 2022 ("How faithful is your synthetic data? Sample-level metrics for
  evaluating and auditing generative models", ICML): a generated sample is unauthentic when it lies closer to
  its nearest training sample than that training sample lies to any other training sample.

The audit (``memorization_audit``) also answers the question raised by the critical review of GAN-based
anonymization (Bissoto et al. 2021, paper 002): how much of the training set the GAN "remembers".

Rule for a "likely copy" (decided here, see ``memorization_audit``): a generated image is flagged when its
distance to the nearest training image is below the held-out threshold in BOTH feature space and pixel space,
and both spaces point at the SAME training image (a copy is a copy of one image; over ten feature-map seeds this
cut false positives from 16 to 6 of 4,900 fresh images and lost no planted copy).
Held-out images are real images the GAN never saw; the threshold of a space is the ``percentile``-th percentile
(default 1) of the held-out-to-train nearest-neighbour distances in that space. "Closer to a training image
than almost any unseen real image is" is the copy signal. A real copy is close in content (features) and in
appearance (pixels); asking for both keeps the false-positive rate of a GAN that copies nothing under the
nominal percentile, because the two spaces are not perfectly correlated (on 32-px demo-derm images, with 200
held-out images and ten seeds of a random-CNN feature map: 0-4 of 490 fresh images flagged, mean 0.3%, against
1.4% below the pixel threshold alone and 0.8-3% below the feature threshold alone).

All maths is float64 numpy on arrays: feature extraction lives in ``keras_medgan.metrics.features``;
``pixel_vectors`` makes the pixel-space vectors.

Example:

>>> report = memorization_audit(gen_feats, train_feats, heldout_feats,
...                             pixel_vectors(gen_images), pixel_vectors(train_images),
...                             pixel_vectors(heldout_images), pixel_size=32)
>>> report.summary()["likely_copy_fraction"], report.closest_pairs(5)
>>> copy_contact_sheet(gen_images, train_images, report, "runs/x/memorization.png")
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw

from keras_medgan.io_utils import atomic_open

MIN_HELDOUT = 20
DEFAULT_PIXEL_SIZE = 32
RULE = ("a generated image is a likely copy when its nearest-training-image distance is below the held-out "
        "threshold in both feature space and pixel space, and both spaces name the same training image; a space's "
        "threshold is the {percentile} percentile "
        "of the distances from held-out real images (never seen by the GAN) to their nearest training image")

_RESIZE_CHUNK = 256
_FLAGGED_STRIP = (150, 25, 25)
_PLAIN_STRIP = (40, 40, 40)


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> int:
    """Returns ``value`` as int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def _matrix(name: str, value, min_rows: int = 1) -> np.ndarray:
    """``value`` as a finite float64 ``[n, d]`` array with ``n >= min_rows``, or a ValueError naming ``name``."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"`{name}` must be a 2-D array [rows, dims] with dims >= 1 (one row per image; flatten or "
                         f"use pixel_vectors). Received shape {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"`{name}` needs at least {min_rows} row(s). Received {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` holds NaN or Inf values; check the feature extractor or images that made it")
    return array


# ---------------------------------------------------------------------------
# Nearest neighbours and the authenticity score
# ---------------------------------------------------------------------------


def pairwise_nearest(query, reference, *, exclude_self: bool = False,
                     batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance to, and index of, the nearest ``reference`` row of each ``query`` row.

    Squared distances are expanded as ``||q||^2 + ||r||^2 - 2 q.r`` (clipped at 0) for ``batch_size`` query
    rows at a time, so memory stays at ``batch_size x len(reference)`` floats however many queries there are.
    The distance of each chosen pair is then recomputed directly as ``||q - r||``: the expansion leaves a
    rounding residue of about 1e-8 on identical rows, and an exact copy must read exactly 0.

    Args:
        query: array ``[n, d]``.
        reference: array ``[m, d]``.
        exclude_self: bool. True when ``query`` is ``reference`` (same rows, same order): row ``i`` is not
            matched with itself, giving each row's nearest *other* row. Needs ``m >= 2``.
        batch_size: int. Query rows per chunk (>= 1).

    Returns:
        ``(distances, indices)``: float64 ``[n]`` and int64 ``[n]``. Ties go to the lowest index.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    query = _matrix("query", query)
    reference = _matrix("reference", reference, min_rows=2 if exclude_self else 1)
    if query.shape[1] != reference.shape[1]:
        raise ValueError(f"`query` and `reference` must have the same number of columns. Received {query.shape[1]} "
                         f"and {reference.shape[1]}")
    if exclude_self and query.shape[0] != reference.shape[0]:
        raise ValueError(f"exclude_self=True needs `query` to be `reference` (same rows). Received {query.shape[0]} "
                         f"query rows and {reference.shape[0]} reference rows")
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    indices = np.empty(query.shape[0], dtype=np.int64)
    for start in range(0, query.shape[0], batch_size):
        chunk = query[start:start + batch_size]
        sq = np.einsum("ij,ij->i", chunk, chunk)[:, None] + ref_sq[None, :] - 2.0 * (chunk @ reference.T)
        np.clip(sq, 0.0, None, out=sq)
        if exclude_self:
            rows = np.arange(chunk.shape[0])
            sq[rows, start + rows] = np.inf
        indices[start:start + chunk.shape[0]] = np.argmin(sq, axis=1)
    distances = np.sqrt(np.sum((query - reference[indices]) ** 2, axis=1))
    return distances, indices


def _authentic(gen_nn_distance: np.ndarray, gen_nn_index: np.ndarray, train_radius: np.ndarray) -> np.ndarray:
    """Per generated sample: True when it is no closer to its nearest training sample than that sample's radius."""
    return gen_nn_distance >= train_radius[gen_nn_index]


def authenticity_score(gen, train) -> float:
    """Authenticity of Alaa et al. 2022 ("How faithful is your synthetic data?", ICML): the authentic fraction.

    For a generated sample ``g`` let ``x_j`` be its nearest training sample and ``r_j`` the distance from
    ``x_j`` to its own nearest *other* training sample. ``g`` is unauthentic when ``||g - x_j|| < r_j``: it
    sits closer to ``x_j`` than any other real sample does, which is what a copy (exact or noisy) looks like.
    A tie (``||g - x_j|| == r_j``) counts as authentic. The score is the fraction of authentic generated
    samples: 1 = no sample looks copied. Alaa et al. frame it as a hypothesis test; this is its hard
    nearest-neighbour decision, as in their reference implementation. Note that even a GAN that copies
    nothing scores below 1, since fresh samples from the data distribution sometimes land that close
    (compare with the score of held-out real images).

    Args:
        gen: array ``[n_gen, d]`` of generated-sample features.
        train: array ``[n_train, d]`` of training-sample features, ``n_train >= 2``.

    Returns:
        float in [0, 1].
    """
    gen = _matrix("gen", gen)
    train = _matrix("train", train, min_rows=2)
    if gen.shape[1] != train.shape[1]:
        raise ValueError(f"`gen` and `train` must have the same number of columns (features). Received "
                         f"{gen.shape[1]} and {train.shape[1]}")
    radius, _ = pairwise_nearest(train, train, exclude_self=True)
    distance, index = pairwise_nearest(gen, train)
    return float(np.mean(_authentic(distance, index, radius)))


# ---------------------------------------------------------------------------
# Pixel space
# ---------------------------------------------------------------------------


def _unit_range(name: str, images) -> np.ndarray:
    """``[N, H, W, C]`` uint8 0..255 (or any integer dtype in that range) or float in [-1, 1] -> float32 [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or 0 in images.shape:
        raise ValueError(f"`{name}` must be a non-empty [N, H, W, C] array with C in (1, 3); add a channel axis to "
                         f"grey images with images[..., None]. Received shape {images.shape}")
    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"integer `{name}` must hold 0..255. Received values {images.min()}..{images.max()}")
        return images.astype(np.float32) / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"`{name}` must be uint8 0..255 or float in [-1, 1]. Received dtype {images.dtype}")
    low, high = float(np.min(images)), float(np.max(images))
    if not (np.isfinite(low) and np.isfinite(high)) or low < -1.001 or high > 1.001:
        raise ValueError(f"float `{name}` must lie in [-1, 1] (the pipeline convention; map [0, 1] images with "
                         f"x * 2 - 1, or pass uint8). Received values {low:.4g}..{high:.4g}")
    return np.clip((images.astype(np.float32) + 1.0) / 2.0, 0.0, 1.0)


def pixel_vectors(images, size: int = DEFAULT_PIXEL_SIZE) -> np.ndarray:
    """Images -> flat pixel vectors in [0, 1] at ``size x size``, for pixel-space nearest neighbours.

    Downsampling uses area averaging (``tf.image.resize(method="area")``): each output pixel is the mean of
    the input pixels it covers, so distances are affordable on large images and insensitive to sub-pixel
    noise. Pass the same ``size`` to ``memorization_audit(pixel_size=...)`` so the report records it.

    Args:
        images: array ``[N, H, W, C]``, C in (1, 3): uint8 0..255, or float in [-1, 1] (the pipeline and
            generator convention).
        size: int. Output side in pixels (>= 1). Defaults to 32.

    Returns:
        float64 ``[N, size * size * C]`` in [0, 1].
    """
    size = _check_int("size", size, 1)
    images = _unit_range("images", images)
    out = []
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start:start + _RESIZE_CHUNK]
        if chunk.shape[1:3] != (size, size):
            chunk = tf.image.resize(chunk, (size, size), method="area").numpy()
        out.append(chunk.reshape(chunk.shape[0], -1).astype(np.float64))
    return np.clip(np.concatenate(out, axis=0), 0.0, 1.0)


# ---------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class MemorizationReport:
    """What ``memorization_audit`` found. Arrays are per generated (or held-out) image; distances Euclidean.

    Attributes:
        feature_nn_index, feature_nn_distance: nearest training image of each generated image in feature space.
        pixel_nn_index, pixel_nn_distance: the same in pixel space.
        feature_threshold, pixel_threshold: ``percentile``-th percentile of the held-out-to-train nearest
            distances in each space.
        percentile: float. The percentile the thresholds use.
        flagged: bool ``[n_generated]``. Likely copies (below both thresholds, same nearest training image).
        likely_copy_fraction: fraction flagged.
        feature_copy_fraction, pixel_copy_fraction: fraction below the threshold of one space alone.
        authenticity: Alaa et al. 2022 authenticity score in feature space.
        heldout_feature_nn_distance, heldout_pixel_nn_distance: held-out-to-train nearest distances.
        n_generated, n_train, n_heldout: sample counts.
        pixel_size: side of the pixel vectors (``pixel_vectors(size=...)``), None when not given.
    """

    feature_nn_index: np.ndarray
    feature_nn_distance: np.ndarray
    pixel_nn_index: np.ndarray
    pixel_nn_distance: np.ndarray
    feature_threshold: float
    pixel_threshold: float
    percentile: float
    flagged: np.ndarray
    likely_copy_fraction: float
    feature_copy_fraction: float
    pixel_copy_fraction: float
    authenticity: float
    heldout_feature_nn_distance: np.ndarray
    heldout_pixel_nn_distance: np.ndarray
    n_generated: int
    n_train: int
    n_heldout: int
    pixel_size: int | None = None

    @property
    def rule(self) -> str:
        """The likely-copy rule, in words."""
        return RULE.format(percentile=_ordinal(self.percentile))

    def summary(self) -> dict:
        """JSON-ready scalars (no arrays): counts, thresholds, fractions, the rule in words.

        ``heldout_exact_train_duplicates`` counts held-out images identical (pixel distance 0) to a training
        image: a split leak, which also pulls the thresholds down to 0 so that nothing can be flagged.
        """
        return {
            "rule": self.rule,
            "percentile": float(self.percentile),
            "n_generated": int(self.n_generated),
            "n_train": int(self.n_train),
            "n_heldout": int(self.n_heldout),
            "pixel_size": None if self.pixel_size is None else int(self.pixel_size),
            "feature_threshold": float(self.feature_threshold),
            "pixel_threshold": float(self.pixel_threshold),
            "n_flagged": int(np.sum(self.flagged)),
            "likely_copy_fraction": float(self.likely_copy_fraction),
            "feature_copy_fraction": float(self.feature_copy_fraction),
            "pixel_copy_fraction": float(self.pixel_copy_fraction),
            "authenticity": float(self.authenticity),
            "n_exact_feature_copies": int(np.sum(self.feature_nn_distance == 0)),
            "n_exact_pixel_copies": int(np.sum(self.pixel_nn_distance == 0)),
            "median_feature_nn_distance": float(np.median(self.feature_nn_distance)),
            "median_pixel_nn_distance": float(np.median(self.pixel_nn_distance)),
            "heldout_median_feature_nn_distance": float(np.median(self.heldout_feature_nn_distance)),
            "heldout_median_pixel_nn_distance": float(np.median(self.heldout_pixel_nn_distance)),
            "heldout_exact_train_duplicates": int(np.sum(self.heldout_pixel_nn_distance == 0)),
        }

    def suspicion_order(self) -> np.ndarray:
        """Generated indices, most suspicious first.

        Flagged images first; then by the larger of the two threshold-relative distances
        (``distance / threshold``, the quantity the rule compares with 1), then feature distance, then index.
        """
        ratio = np.maximum(_relative(self.feature_nn_distance, self.feature_threshold),
                           _relative(self.pixel_nn_distance, self.pixel_threshold))
        order = np.lexsort((np.arange(self.n_generated), self.feature_nn_distance, ratio, ~self.flagged))
        return order

    def closest_pairs(self, n: int = 16) -> list[tuple[int, int, float]]:
        """The ``n`` most suspicious ``(generated index, nearest training index, feature distance)``.

        Ordered by ``suspicion_order``; the training index is the feature-space nearest neighbour.
        """
        n = _check_int("n", n, 1)
        return [(int(g), int(self.feature_nn_index[g]), float(self.feature_nn_distance[g]))
                for g in self.suspicion_order()[:n]]


def _ordinal(value: float) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 11 -> "11th", 0.5 -> "0.5th"."""
    text = f"{value:g}"
    if float(value).is_integer() and int(value) % 100 not in (11, 12, 13):
        return text + {1: "st", 2: "nd", 3: "rd"}.get(int(value) % 10, "th")
    return text + "th"


def _relative(distance: np.ndarray, threshold: float) -> np.ndarray:
    """``distance / threshold``, with 0/0 = 0 and x/0 = inf for a zero threshold."""
    if threshold > 0:
        return distance / threshold
    return np.where(distance > 0, np.inf, 0.0)


def _check_percentile(percentile) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 < percentile < 100:
        raise ValueError(f"`percentile` must be a number in (0, 100), e.g. 1.0 for the 1st percentile of held-out "
                         f"distances. Received: percentile={percentile!r}")
    return float(percentile)


def _check_same(kind: str, names: tuple[str, ...], values: tuple[int, ...], fix: str) -> None:
    """ValueError naming every argument, what it holds and the fix, unless all ``values`` are equal."""
    if len(set(values)) > 1:
        quoted = [f"`{n}`" for n in names]
        listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
        got = ", ".join(f"{n}={v}" for n, v in zip(names, values))
        raise ValueError(f"{listed} must have the same {kind}. Received {got}. {fix}")


def memorization_audit(gen_features, train_features, heldout_features, gen_pixels, train_pixels, heldout_pixels,
                       *, percentile: float = 1.0, pixel_size: int | None = None) -> MemorizationReport:
    """Flags generated images that look copied from the training set.

    Turns the memorization check of paper 003 (Carrasco Limeros et al. 2022, Sec. 4.3: pairs "too close"
    below a low quantile of the distances are singled out as possible memorized samples) into a rule with a
    reference that needs no tuning: held-out real images. For each generated image the nearest training
    image is found in feature space and in pixel space. The threshold of each space is the ``percentile``-th
    percentile of the nearest-training distances of held-out real images, which the GAN never saw. An image
    is a likely copy when it is below the threshold in BOTH spaces (strict ``<``): a real copy is close in
    content and in appearance, and requiring both keeps the false-positive rate of a GAN that copies nothing
    below ``percentile`` per cent, since the spaces are not perfectly correlated. A GAN that copies nothing
    is exchangeable with the held-out set, so about ``percentile`` per cent of its images fall below each
    single threshold (``feature_copy_fraction``, ``pixel_copy_fraction``); clearly more means copying.
    The report also carries the Alaa et al. 2022 authenticity score in feature space.

    Use features of one extractor for all three sets, and pixel vectors from ``pixel_vectors`` with one
    ``size``. The held-out set must come from the same distribution and must not share images (or patients)
    with the training set; ``summary()["heldout_exact_train_duplicates"]`` shows a leak.

    Args:
        gen_features: array ``[n_gen, d]``. Features of the generated images.
        train_features: array ``[n_train, d]``, ``n_train >= 2``. Features of the GAN's training images.
        heldout_features: array ``[n_heldout, d]``, ``n_heldout >= 20``. Features of real images the GAN never
            saw (a validation or test split).
        gen_pixels, train_pixels, heldout_pixels: arrays ``[n, p]`` of pixel vectors of the same images, in
            the same order (``pixel_vectors``).
        percentile: float in (0, 100). Percentile of the held-out distances used as threshold. Defaults to 1.
        pixel_size: optional int. The ``size`` given to ``pixel_vectors``, recorded in the report.

    Returns:
        A ``MemorizationReport``.
    """
    percentile = _check_percentile(percentile)
    if pixel_size is not None:
        pixel_size = _check_int("pixel_size", pixel_size, 1)
    gen_f, train_f = _matrix("gen_features", gen_features), _matrix("train_features", train_features, 2)
    gen_p, train_p = _matrix("gen_pixels", gen_pixels), _matrix("train_pixels", train_pixels, 2)
    held_f, held_p = _matrix("heldout_features", heldout_features), _matrix("heldout_pixels", heldout_pixels)
    for name, array in (("heldout_features", held_f), ("heldout_pixels", held_p)):
        if array.shape[0] < MIN_HELDOUT:
            raise ValueError(f"`{name}` has {array.shape[0]} rows but the held-out thresholds need at least "
                             f"{MIN_HELDOUT} held-out real images (never seen by the GAN). Pass more, e.g. the "
                             f"validation or test split.")
    _check_same("feature dimension (number of columns)", ("gen_features", "train_features", "heldout_features"),
                (gen_f.shape[1], train_f.shape[1], held_f.shape[1]), "Compute all three with the same extractor.")
    _check_same("pixel dimension (number of columns)", ("gen_pixels", "train_pixels", "heldout_pixels"),
                (gen_p.shape[1], train_p.shape[1], held_p.shape[1]),
                "Make all three with pixel_vectors, one size, from images with the same channels.")
    fix = "Features and pixel vectors must describe the same images, in the same order."
    _check_same("number of rows", ("gen_features", "gen_pixels"), (gen_f.shape[0], gen_p.shape[0]), fix)
    _check_same("number of rows", ("train_features", "train_pixels"), (train_f.shape[0], train_p.shape[0]), fix)
    _check_same("number of rows", ("heldout_features", "heldout_pixels"), (held_f.shape[0], held_p.shape[0]), fix)

    feature_distance, feature_index = pairwise_nearest(gen_f, train_f)
    pixel_distance, pixel_index = pairwise_nearest(gen_p, train_p)
    held_feature_distance, _ = pairwise_nearest(held_f, train_f)
    held_pixel_distance, _ = pairwise_nearest(held_p, train_p)
    feature_threshold = float(np.percentile(held_feature_distance, percentile))
    pixel_threshold = float(np.percentile(held_pixel_distance, percentile))
    feature_close = feature_distance < feature_threshold
    pixel_close = pixel_distance < pixel_threshold
    flagged = feature_close & pixel_close & (feature_index == pixel_index)  # a copy of one training image
    train_radius, _ = pairwise_nearest(train_f, train_f, exclude_self=True)
    return MemorizationReport(
        feature_nn_index=feature_index,
        feature_nn_distance=feature_distance,
        pixel_nn_index=pixel_index,
        pixel_nn_distance=pixel_distance,
        feature_threshold=feature_threshold,
        pixel_threshold=pixel_threshold,
        percentile=percentile,
        flagged=flagged,
        likely_copy_fraction=float(np.mean(flagged)),
        feature_copy_fraction=float(np.mean(feature_close)),
        pixel_copy_fraction=float(np.mean(pixel_close)),
        authenticity=float(np.mean(_authentic(feature_distance, feature_index, train_radius))),
        heldout_feature_nn_distance=held_feature_distance,
        heldout_pixel_nn_distance=held_pixel_distance,
        n_generated=gen_f.shape[0],
        n_train=train_f.shape[0],
        n_heldout=held_f.shape[0],
        pixel_size=pixel_size,
    )


# ---------------------------------------------------------------------------
# Contact sheet
# ---------------------------------------------------------------------------


def _tile(name: str, image: np.ndarray, cell: int) -> Image.Image:
    """One ``[H, W, C]`` image (uint8, or float in [-1, 1]) as an RGB ``cell x cell`` tile."""
    unit = _unit_range(name, image[None])[0]
    pixels = np.round(unit * 255.0).astype(np.uint8)
    tile = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).convert("RGB")
    resample = Image.NEAREST if max(tile.size) <= cell else Image.BOX  # show small images' pixels as they are
    return tile.resize((cell, cell), resample=resample)


def copy_contact_sheet(gen_images, train_images, report: MemorizationReport, path: str, n: int = 16,
                       cell: int = 96) -> str:
    """Writes a PNG of the ``n`` most suspicious pairs for a person to review.

    One row per pair (``report.closest_pairs(n)`` order): the generated image, its feature-space nearest
    training image, and a strip (``2 * cell`` wide) with both indices, the feature and pixel distances against
    their thresholds, and whether the pair is flagged (red strip) or not (grey strip). The sheet is
    ``4 * cell`` wide and ``min(n, n_generated) * cell`` high. The write is atomic (temporary file, then rename).

    Args:
        gen_images: array ``[n_gen, H, W, C]`` (uint8, or float in [-1, 1]) in the audit's order.
        train_images: array ``[n_train, H, W, C]`` in the audit's order.
        report: the ``MemorizationReport`` of these images.
        path: str. Where to write the PNG.
        n: int. Number of pairs (rows). Defaults to 16.
        cell: int. Side of each image tile in pixels (>= 16). Defaults to 96.

    Returns:
        The path written.
    """
    n = _check_int("n", n, 1)
    cell = _check_int("cell", cell, 16)
    _check_same("number of images", ("gen_images", "report.n_generated"), (len(gen_images), report.n_generated),
                "Pass the generated images the report was computed from.")
    _check_same("number of images", ("train_images", "report.n_train"), (len(train_images), report.n_train),
                "Pass the training images the report was computed from.")
    pairs = report.closest_pairs(n)
    strip = 2 * cell
    sheet = Image.new("RGB", (2 * cell + strip, len(pairs) * cell), _PLAIN_STRIP)
    for row, (g, t, feature_distance) in enumerate(pairs):
        y = row * cell
        sheet.paste(_tile(f"gen_images[{g}]", np.asarray(gen_images[g]), cell), (0, y))
        sheet.paste(_tile(f"train_images[{t}]", np.asarray(train_images[t]), cell), (cell, y))
        flagged = bool(report.flagged[g])
        text = Image.new("RGB", (strip, cell), _FLAGGED_STRIP if flagged else _PLAIN_STRIP)
        draw = ImageDraw.Draw(text)  # drawn on its own tile, so long lines are clipped to the row
        lines = [f"gen {g} | train {t}",
                 f"feat {feature_distance:.4g} (thr {report.feature_threshold:.3g})",
                 f"pix {report.pixel_nn_distance[g]:.4g} (thr {report.pixel_threshold:.3g})",
                 "LIKELY COPY" if flagged else "not flagged"]
        if int(report.pixel_nn_index[g]) != t:
            lines.append(f"pixel NN: train {int(report.pixel_nn_index[g])}")
        for k, line in enumerate(lines):
            draw.text((4, 3 + 12 * k), line, fill=(255, 255, 255))
        sheet.paste(text, (2 * cell, y))
    with atomic_open(path, "wb") as f:
        sheet.save(f, format="PNG")
    return path
