"""Procedural demo datasets: the built-in default data of keras-medgan.

Two generators make labelled medical-looking images from a seed alone, so that
every recipe, test and tutorial runs without downloading anything:

- ``demo-derm``: clinical-style RGB skin crops with 1-3 lesions of one of 8
  conditions (``DEMO_DERM_CLASSES``) on skin of Fitzpatrick type I-VI, with a
  tight box per lesion, a long-tailed class distribution and 1-4 images per
  patient.
- ``demo-cxr``: grey chest-radiograph phantoms (lungs, ribs, clavicles, heart,
  spine) of 5 classes (``DEMO_CXR_CLASSES``), with a box around each finding
  and 2-5 images per patient whose anatomy stays fixed.

Image ``i`` depends only on ``(seed, i)`` and the class weights: it is the same
however many images are generated, and the same seed gives byte-identical
shards. Everything is drawn at the target resolution in normalised
coordinates with edges at least a pixel wide, so 32, 64 and 256 px images show
the same scene without blocky or aliased edges. Generating 2,000 64-px images
takes a few seconds on a laptop CPU.

Example:

>>> records = list(generate_demo_derm(16, image_size=64, seed=0))
>>> records[0].image.shape, DEMO_DERM_CLASSES[records[0].label], records[0].bboxes
>>> info = write_demo_dataset("demo-cxr", "data/demo-cxr", num_images=2000, image_size=64)
>>> folder = ensure_demo_dataset("demo-derm", image_size=64)  # cached under ~/.cache/keras_medgan
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import shutil
import tempfile
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from keras_medgan.data import schema, skin_tone, writer
from keras_medgan.data.writer import ImageRecord
from keras_medgan.io_utils import cache_root

DEMO_KINDS = ("demo-derm", "demo-cxr")
DEMO_DERM_CLASSES = (
    "melanoma",
    "nevus",
    "basal_cell_carcinoma",
    "seborrheic_keratosis",
    "psoriasis",
    "eczema",
    "vascular_lesion",
    "dermatofibroma",
)
DEMO_CXR_CLASSES = ("normal", "consolidation", "effusion", "mass", "cardiomegaly")

# Default class frequencies. demo-derm has a HAM10000-like long tail: nevus is 10x as frequent as the
# rarest class (dermatofibroma). demo-cxr is mildly imbalanced, with "normal" the most frequent.
DEMO_DERM_DEFAULT_CLASS_WEIGHTS = (0.14, 0.32, 0.11, 0.12, 0.10, 0.10, 0.06, 0.032)
DEMO_CXR_DEFAULT_CLASS_WEIGHTS = (0.40, 0.18, 0.17, 0.10, 0.15)

# Written to dataset.json `extra`; bump when the pictures change so that cached demo datasets are rebuilt.
DEMO_GENERATOR_VERSION = 1

_MIN_IMAGE_SIZE = 16
_BOX_ALPHA_THRESHOLD = 0.05

# Independent random streams: np.random.default_rng([seed, stream, index]).
_DERM_IMAGE_STREAM, _DERM_PATIENT_STREAM, _DERM_GROUP_STREAM = 101, 102, 103
_CXR_IMAGE_STREAM, _CXR_PATIENT_STREAM, _CXR_GROUP_STREAM = 201, 202, 203
_DERM_IMAGES_PER_PATIENT = (1, 4)
_CXR_IMAGES_PER_PATIENT = (2, 5)


# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> int:
    """Returns ``value`` as int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def _check_generator_args(num_images, image_size, seed) -> tuple[int, int, int]:
    """Validated ``(num_images, image_size, seed)``."""
    return (
        _check_int("num_images", num_images, 1),
        _check_int("image_size", image_size, _MIN_IMAGE_SIZE),
        _check_int("seed", seed, 0),
    )


def _class_probabilities(class_weights, class_names: Sequence[str], default: Sequence[float]) -> np.ndarray:
    """Normalised class probabilities from ``None``, a sequence (class order) or a mapping name -> weight."""
    if class_weights is None:
        weights = list(default)
    elif isinstance(class_weights, str):
        raise ValueError(
            f"`class_weights` must be None, a sequence of {len(class_names)} weights or a mapping class name -> "
            f"weight. Received: class_weights={class_weights!r}"
        )
    elif isinstance(class_weights, Mapping):
        unknown = sorted(set(class_weights) - set(class_names))
        if unknown:
            raise ValueError(f"`class_weights` names unknown classes {unknown}. The classes are {list(class_names)}.")
        weights = [class_weights.get(name, 0.0) for name in class_names]
    else:
        weights = list(class_weights)
        if len(weights) != len(class_names):
            raise ValueError(
                f"`class_weights` needs one weight per class ({len(class_names)}: {list(class_names)}). "
                f"Received: {len(weights)} weights"
            )
    try:
        probabilities = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"`class_weights` must hold numbers. Received: class_weights={class_weights!r}") from e
    if not np.all(np.isfinite(probabilities)) or np.any(probabilities < 0) or probabilities.sum() <= 0:
        raise ValueError(
            f"`class_weights` must be finite, >= 0 and not all 0. Received: class_weights={class_weights!r}"
        )
    return probabilities / probabilities.sum()


def _patient_index(num_images: int, seed: int, stream: int, images_per_patient: tuple[int, int]) -> np.ndarray:
    """Patient index of each image: patients own consecutive runs of images, one run length drawn per patient."""
    low, high = images_per_patient
    out = np.empty(num_images, dtype=np.int64)
    start, patient = 0, 0
    while start < num_images:
        run = int(np.random.default_rng([seed, stream, patient]).integers(low, high + 1))
        out[start : start + run] = patient
        start, patient = start + run, patient + 1
    return out


# ---------------------------------------------------------------------------
# Raster helpers: every field is drawn at the target size in normalised coordinates.
# ---------------------------------------------------------------------------


def _frozen(array: np.ndarray) -> np.ndarray:
    """Marks a cached array read-only, so that no caller can change the cache."""
    array.flags.writeable = False
    return array


@functools.lru_cache(maxsize=16)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)`` in [0, 1], each ``[S, S]``."""
    centres = (np.arange(size) + 0.5) / size
    yy, xx = np.meshgrid(centres, centres, indexing="ij")
    return _frozen(yy), _frozen(xx)


@functools.lru_cache(maxsize=128)
def _gaussian_basis(size: int, sites: int, sigma: float, unit_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    """``[S, sites]`` Gaussian weights of evenly spaced sites at each pixel centre (rows of unit norm if asked).

    Returned with a contiguous copy of its transpose, which makes ``basis @ grid @ transpose`` ~3x faster.
    """
    pixels = (np.arange(size) + 0.5) / size
    centres = (np.arange(sites) + 0.5) / sites
    basis = np.exp(-0.5 * ((pixels[:, None] - centres[None, :]) / sigma) ** 2)
    if unit_rows:
        basis /= np.sqrt((basis**2).sum(axis=1, keepdims=True))
    return _frozen(basis), _frozen(np.ascontiguousarray(basis.T))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, count: int | None = None) -> np.ndarray:
    """Band-limited Gaussian noise with unit variance per pixel and about ``cells`` blobs per side.

    Separable Gaussian interpolation of a ``cells x cells`` white-noise grid, so its
    look does not depend on ``size``. ``count`` stacks independent fields on a first axis.
    """
    basis, transpose = _gaussian_basis(size, cells, 0.7 / cells, True)
    shape = (cells, cells) if count is None else (count, cells, cells)
    return basis @ rng.standard_normal(shape) @ transpose


def _dots(rng: np.random.Generator, size: int, density: float, radius: float, sites: int = 96) -> np.ndarray:
    """Soft round dots in [0, 1] at a random ``density`` of the sites of a ``sites x sites`` lattice.

    Dots are Gaussians of normalised ``radius``, widened to at least half a pixel
    (keeping their ink) so that small images are anti-aliased rather than speckled.
    """
    sigma = math.sqrt(radius**2 + (0.5 / size) ** 2)
    basis, transpose = _gaussian_basis(size, sites, round(sigma, 6), False)
    impulses = (rng.random((sites, sites)) < density) * (radius / sigma) ** 2
    return np.minimum(basis @ impulses @ transpose, 1.0)


def _ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin curvy lines in [0, 1] along the zero set of a smooth field."""
    return np.exp(-((field / width) ** 2))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """Cubic ease from 0 (x <= 0) to 1 (x >= 1)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _soft_inside(signed_distance: np.ndarray, width: float, size: int) -> np.ndarray:
    """Coverage in [0, 1] of a shape from its signed distance (negative inside); edges >= 1.25 pixels wide."""
    width = max(width, 1.25 / size)
    return _smoothstep(0.5 - signed_distance / width)


def _mix(base: np.ndarray, top, amount: np.ndarray) -> np.ndarray:
    """``base`` blended towards colour(s) ``top`` by ``amount`` ([S, S] or scalar)."""
    amount = np.asarray(amount)
    if amount.ndim == 2:
        amount = amount[..., None]
    return base + amount * (np.asarray(top) - base)


def _aa_gain(period: float, size: int) -> float:
    """1 for a periodic pattern at least 4 pixels long, fading to 0 at the Nyquist period (2 pixels)."""
    return float(np.clip(period * size / 2.0 - 1.0, 0.0, 1.0))


def _blur_matrix(size: int, sigma_px: float) -> np.ndarray:
    """``[S, S]`` row-normalised Gaussian blur operator along one axis."""
    index = np.arange(size)
    kernel = np.exp(-0.5 * ((index[:, None] - index[None, :]) / sigma_px) ** 2)
    return kernel / kernel.sum(axis=1, keepdims=True)


def _blur(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Separable blur of an ``[S, S]`` or ``[S, S, C]`` array with a ``_blur_matrix``."""
    size = image.shape[0]
    rows = (matrix @ image.reshape(size, -1)).reshape(image.shape)
    swapped = np.swapaxes(rows, 0, 1)
    return np.swapaxes((matrix @ swapped.reshape(size, -1)).reshape(swapped.shape), 0, 1)


def _tight_box(alpha: np.ndarray) -> list[float] | None:
    """Normalised ``[ymin, xmin, ymax, xmax]`` around the pixels where ``alpha`` > 0.05, or None."""
    rows = np.flatnonzero(alpha.max(axis=1) > _BOX_ALPHA_THRESHOLD)
    cols = np.flatnonzero(alpha.max(axis=0) > _BOX_ALPHA_THRESHOLD)
    if rows.size == 0:
        return None
    height, width = alpha.shape
    return [float(rows[0] / height), float(cols[0] / width), float((rows[-1] + 1) / height),
            float((cols[-1] + 1) / width)]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> rounded uint8."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _random_blur(rng: np.random.Generator, size: int, probability: float, sigma_range: tuple) -> np.ndarray | None:
    """A blur operator for a defocus of ``sigma_range`` (in 64-px pixels, scaled to ``size``), or None."""
    if rng.random() >= probability:
        return None
    sigma_px = rng.uniform(*sigma_range) * size / 64.0
    return _blur_matrix(size, sigma_px) if sigma_px >= 0.3 else None


# ---------------------------------------------------------------------------
# demo-derm
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SkinTone:
    """Per-patient ranges of a Fitzpatrick type's skin colour: ITA (inside its band, with a margin), b*, a*."""

    ita: tuple[float, float]
    b: tuple[float, float]
    a: tuple[float, float]


# ITA bands (skin_tone.ITA_FITZPATRICK_THRESHOLDS) shrunk by >= 2.5 degrees, so that the lighting,
# hair and noise below do not move a patient's skin out of its type.
_SKIN_TONES = {
    1: _SkinTone(ita=(58.0, 68.0), b=(10.0, 14.0), a=(6.0, 10.0)),
    2: _SkinTone(ita=(43.5, 52.5), b=(13.0, 17.0), a=(8.0, 12.0)),
    3: _SkinTone(ita=(30.5, 38.5), b=(15.0, 19.0), a=(9.0, 13.0)),
    4: _SkinTone(ita=(12.5, 25.5), b=(16.0, 20.0), a=(10.0, 14.0)),
    5: _SkinTone(ita=(-26.0, 6.0), b=(15.0, 20.0), a=(10.0, 14.0)),
    6: _SkinTone(ita=(-62.0, -34.0), b=(10.0, 15.0), a=(8.0, 12.0)),
}
# Lighter types are more frequent, as in most dermatology collections, but every type is well represented.
_SKIN_TYPE_WEIGHTS = np.array([0.20, 0.22, 0.20, 0.16, 0.12, 0.10])


@dataclasses.dataclass(frozen=True)
class _LesionStyle:
    """How one condition's lesions are shaped (sizes in normalised image units)."""

    radius: tuple[float, float]  # radius of a single lesion; n lesions are 1/sqrt(n) smaller
    count: tuple[int, int]  # lesions per image
    irregularity: tuple[float, float]  # amplitude of the border's low-order radial harmonics
    ragged: float  # amplitude of fine border noise, as a fraction of the radius
    edge: float  # width of the border ramp (at least 1.25 px is used)


_DERM_STYLES = {
    "melanoma": _LesionStyle(radius=(0.20, 0.28), count=(1, 1), irregularity=(0.14, 0.24), ragged=0.08, edge=0.012),
    "nevus": _LesionStyle(radius=(0.11, 0.19), count=(1, 3), irregularity=(0.02, 0.05), ragged=0.0, edge=0.008),
    "basal_cell_carcinoma": _LesionStyle(radius=(0.16, 0.24), count=(1, 1), irregularity=(0.05, 0.10), ragged=0.03,
                                         edge=0.012),
    "seborrheic_keratosis": _LesionStyle(radius=(0.16, 0.25), count=(1, 2), irregularity=(0.05, 0.10), ragged=0.02,
                                         edge=0.005),
    "psoriasis": _LesionStyle(radius=(0.20, 0.28), count=(1, 3), irregularity=(0.10, 0.18), ragged=0.06, edge=0.010),
    "eczema": _LesionStyle(radius=(0.22, 0.30), count=(1, 2), irregularity=(0.12, 0.20), ragged=0.08, edge=0.060),
    "vascular_lesion": _LesionStyle(radius=(0.07, 0.13), count=(1, 3), irregularity=(0.02, 0.05), ragged=0.0,
                                    edge=0.006),
    "dermatofibroma": _LesionStyle(radius=(0.10, 0.15), count=(1, 1), irregularity=(0.03, 0.07), ragged=0.0,
                                   edge=0.020),
}

_HAIR_RGB = np.array([0.10, 0.075, 0.06])


def _derm_patient(seed: int, patient: int) -> tuple[int, np.ndarray]:
    """A patient's Fitzpatrick type and base skin colour (sRGB floats), fixed for all their images."""
    rng = np.random.default_rng([seed, _DERM_PATIENT_STREAM, patient])
    fitzpatrick = int(rng.choice(6, p=_SKIN_TYPE_WEIGHTS)) + 1
    tone = _SKIN_TONES[fitzpatrick]
    ita, b, a = rng.uniform(*tone.ita), rng.uniform(*tone.b), rng.uniform(*tone.a)
    lightness = 50.0 + b * math.tan(math.radians(ita))
    return fitzpatrick, skin_tone.lab_to_srgb(np.array([lightness, a, b]))


def _skin(rng: np.random.Generator, size: int, skin_rgb: np.ndarray) -> np.ndarray:
    """``[S, S, 3]`` skin: the base colour with mottled shading, uneven redness and fine texture."""
    mottle, redness = _smooth_noise(rng, size, 5, count=2)
    texture = _smooth_noise(rng, size, 40)
    shade = 1.0 + 0.03 * mottle + 0.012 * texture
    return skin_rgb * shade[..., None] + (0.012 * redness)[..., None] * np.array([1.0, -0.4, -0.4])


def _lesion_extent(radius: float, irregularity: float, style: _LesionStyle) -> float:
    """Largest normalised distance from a lesion's centre that its support can reach."""
    return radius * (1.0 + 1.6 * irregularity + 3.0 * style.ragged) + style.edge


def _place_lesions(rng: np.random.Generator, style: _LesionStyle) -> list[tuple[float, float, float, float]]:
    """``(cy, cx, radius, irregularity)`` of 1..count non-overlapping lesions, each fully inside the image."""
    count = int(rng.integers(style.count[0], style.count[1] + 1))
    placed = []
    for _ in range(count):
        irregularity = rng.uniform(*style.irregularity)
        radius = rng.uniform(*style.radius) / math.sqrt(count)
        extent = _lesion_extent(radius, irregularity, style)
        if extent > 0.46:
            radius *= 0.46 / extent
            extent = 0.46
        for _attempt in range(30):
            cy, cx = rng.uniform(extent + 0.02, 0.98 - extent, size=2)
            if all(math.hypot(cy - y, cx - x) > extent + e + 0.02 for y, x, _, _, e in placed):
                placed.append((cy, cx, radius, irregularity, extent))
                break
    return [p[:4] for p in placed]


def _radial_harmonics(u: np.ndarray, v: np.ndarray, rho: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """``sum_k |c_k| cos(k phi + arg c_k)`` for k = 2, 3, ... at the polar angle ``phi`` of ``(u, v)``.

    Horner's scheme on ``z = exp(i phi)``: a few complex products instead of one cosine per order and pixel.
    """
    z = (u + 1j * v) / np.maximum(rho, 1e-12)
    total = np.full(z.shape, coefficients[-1])
    for c in coefficients[-2::-1]:
        total = total * z + c
    return (total * z * z).real


def _lesion_shape(rng: np.random.Generator, size: int, cy: float, cx: float, radius: float, irregularity: float,
                  style: _LesionStyle) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha, t)``: coverage in [0, 1] of one lesion and its radial position (0 centre, 1 border)."""
    yy, xx = _grid(size)
    angle, aspect = rng.uniform(0.0, math.pi), rng.uniform(0.7, 1.0)
    dy, dx = yy - cy, xx - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = dy * math.cos(angle) - dx * math.sin(angle)
    minor = radius * aspect
    rho = np.hypot(u / radius, v / minor)
    orders = np.arange(2, 8)
    amplitudes = irregularity * rng.uniform(0.5, 1.0, size=orders.size) / orders
    phases = rng.uniform(0.0, 2.0 * math.pi, size=orders.size)
    boundary = 1.0 + _radial_harmonics(u / radius, v / minor, rho, amplitudes * np.exp(1j * phases))
    if style.ragged:
        boundary = boundary + style.ragged * _smooth_noise(rng, size, 14)
    boundary = np.maximum(boundary, 0.35)
    alpha = _soft_inside((rho - boundary) * minor, style.edge, size)
    return alpha, rho / boundary


def _paint_melanoma(rng, skin, t, size):
    """Dark, variegated brown-black with blue-grey veil, black blotches and an atypical network."""
    veil, blotches, network = _smooth_noise(rng, size, 7, count=3)
    colour = skin * np.array([0.36, 0.26, 0.22])
    colour = _mix(colour, skin * np.array([0.60, 0.44, 0.36]), 0.7 * _smoothstep(veil + 0.3))
    colour = _mix(colour, np.array([0.30, 0.34, 0.42]), 0.6 * _smoothstep(1.5 * (veil - 0.7)))
    colour = _mix(colour, np.array([0.09, 0.07, 0.07]), 0.9 * _smoothstep(1.5 * (blotches - 0.4)))
    colour = colour * (1.0 - 0.3 * _ridges(network, 0.25))[..., None]
    return _mix(colour, skin * np.array([0.62, 0.48, 0.40]), 0.5 * _smoothstep((t - 0.6) / 0.4))


def _paint_nevus(rng, skin, t, size):
    """Even medium brown, darker centre, fine regular pigment network."""
    network = _smooth_noise(rng, size, 16)
    darkness = (1.0 - 0.18 * (1.0 - np.clip(t, 0.0, 1.0))) * (1.0 - 0.25 * _aa_gain(2.0 / 16, size)
                                                              * _ridges(network, 0.3))
    return skin * np.array([0.60, 0.46, 0.36]) * darkness[..., None]


def _paint_basal_cell_carcinoma(rng, skin, t, size):
    """Pearly pink with a shiny rolled rim, branching red vessels and sometimes a dark ulcer."""
    colour = _mix(skin, np.array([0.95, 0.74, 0.74]), 0.45)
    colour = _mix(colour, np.array([1.0, 0.92, 0.90]), 0.5 * np.exp(-(((t - 0.82) / 0.12) ** 2)))
    vessels = _ridges(_smooth_noise(rng, size, 8), 0.12) * (t < 0.9)
    colour = _mix(colour, np.array([0.72, 0.12, 0.18]), 0.75 * vessels)
    if rng.random() < 0.4:
        colour = _mix(colour, np.array([0.35, 0.12, 0.10]), 0.85 * _smoothstep((0.3 - t) / 0.15))
    return colour


def _paint_seborrheic_keratosis(rng, skin, t, size):
    """Waxy tan-brown with cerebriform ridges, white milia-like and dark comedo-like dots."""
    shading, gyri = _smooth_noise(rng, size, 5), _smooth_noise(rng, size, 14)
    colour = skin * np.array([0.58, 0.45, 0.32]) * (1.0 + 0.15 * shading + 0.25 * _ridges(gyri, 0.3))[..., None]
    colour = _mix(colour, np.array([0.93, 0.90, 0.82]), _dots(rng, size, 0.012, 0.011))
    return _mix(colour, np.array([0.14, 0.10, 0.07]), _dots(rng, size, 0.010, 0.010))


def _paint_psoriasis(rng, skin, t, size):
    """Salmon-red plaque covered with silvery-white scale."""
    colour = np.clip(skin * np.array([1.0, 0.55, 0.55]) + np.array([0.14, 0.0, 0.02]), 0.0, 1.0)
    crust = _smoothstep(_smooth_noise(rng, size, 10) + 0.3) * _smoothstep((1.0 - t) / 0.3)
    flakes = np.minimum(1.2 * _dots(rng, size, 0.10, 0.008), 1.0) * crust
    return _mix(colour, np.array([0.90, 0.90, 0.92]), 0.8 * flakes)


def _paint_eczema(rng, skin, t, size):
    """Ill-defined, patchy pink-red patch with fine red papules."""
    patches = _smooth_noise(rng, size, 6)
    colour = np.clip(skin * np.array([1.0, 0.72, 0.72]) + np.array([0.06, 0.0, 0.0]), 0.0, 1.0)
    colour = _mix(skin, colour, 0.6 + 0.4 * _smoothstep(patches + 0.5))
    return _mix(colour, skin * np.array([0.85, 0.45, 0.45]), 0.6 * _dots(rng, size, 0.06, 0.009))


def _paint_vascular_lesion(rng, skin, t, size):
    """Bright red to purple, with darker lobules (lacunae)."""
    lobules = _smoothstep(2.0 * (_smooth_noise(rng, size, 12) + 0.2))
    colour = _mix(np.broadcast_to(np.array([0.62, 0.07, 0.17]), skin.shape), np.array([0.36, 0.05, 0.20]),
                  0.8 * lobules)
    return _mix(skin, colour, 0.9)


def _paint_dermatofibroma(rng, skin, t, size):
    """Light-brown rim, delicate pigment ring and a central white scar-like patch."""
    colour = skin * np.array([0.74, 0.60, 0.50])
    colour = colour * (1.0 - 0.2 * np.exp(-(((t - 0.75) / 0.12) ** 2)))[..., None]
    return _mix(colour, np.array([0.93, 0.88, 0.84]), 0.85 * _smoothstep((0.5 - t) / 0.25))


_DERM_PAINTERS: dict[str, Callable] = {
    "melanoma": _paint_melanoma,
    "nevus": _paint_nevus,
    "basal_cell_carcinoma": _paint_basal_cell_carcinoma,
    "seborrheic_keratosis": _paint_seborrheic_keratosis,
    "psoriasis": _paint_psoriasis,
    "eczema": _paint_eczema,
    "vascular_lesion": _paint_vascular_lesion,
    "dermatofibroma": _paint_dermatofibroma,
}


def _line_coverage(distance_px: np.ndarray, width_px: float) -> np.ndarray:
    """Share of each pixel covered by a line of ``width_px`` at ``distance_px`` (a 1-px box filter)."""
    d = np.abs(distance_px)
    return np.clip(np.minimum(d + 0.5, width_px / 2.0) - np.maximum(d - 0.5, -width_px / 2.0), 0.0, 1.0)


def _hair_alpha(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[S, S]`` coverage of 0-5 thin dark hairs (parabolic strands), anti-aliased."""
    count = 0 if rng.random() < 0.45 else int(rng.integers(1, 6))
    yy, xx = _grid(size)
    alpha = np.zeros((size, size))
    for _ in range(count):
        y0, x0 = rng.uniform(0.05, 0.95, size=2)
        angle, half_length = rng.uniform(0.0, math.pi), rng.uniform(0.15, 0.5)
        curvature, width = rng.uniform(-1.5, 1.5), rng.uniform(0.004, 0.009)
        u = (xx - x0) * math.cos(angle) + (yy - y0) * math.sin(angle)
        v = (yy - y0) * math.cos(angle) - (xx - x0) * math.sin(angle)
        distance_px = (v - curvature * u**2) / np.sqrt(1.0 + (2.0 * curvature * u) ** 2) * size
        ends = np.clip((half_length - np.abs(u)) * size + 0.5, 0.0, 1.0)
        alpha = np.maximum(alpha, rng.uniform(0.7, 0.95) * _line_coverage(distance_px, width * size) * ends)
    return alpha


def _lighting(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[S, S]`` multiplicative linear lighting gradient, 1 at the image centre."""
    yy, xx = _grid(size)
    direction, strength = rng.uniform(0.0, 2.0 * math.pi), rng.uniform(0.0, 0.24)
    return 1.0 + strength * ((xx - 0.5) * math.cos(direction) + (yy - 0.5) * math.sin(direction))


def _render_derm(rng: np.random.Generator, size: int, label: int, skin_rgb: np.ndarray):
    """One demo-derm picture: ``(uint8 [S, S, 3], boxes)``, a tight box per lesion."""
    name = DEMO_DERM_CLASSES[label]
    style, paint = _DERM_STYLES[name], _DERM_PAINTERS[name]
    image = _skin(rng, size, skin_rgb)
    alphas = []
    for cy, cx, radius, irregularity in _place_lesions(rng, style):
        alpha, t = _lesion_shape(rng, size, cy, cx, radius, irregularity, style)
        image = _mix(image, paint(rng, image, t, size), alpha)
        alphas.append(alpha)
    image = _mix(image, _HAIR_RGB, _hair_alpha(rng, size))
    image = image * _lighting(rng, size)[..., None]
    blur = _random_blur(rng, size, 0.3, (0.3, 0.7))
    if blur is not None:
        image = _blur(image, blur)
        alphas = [_blur(alpha, blur) for alpha in alphas]
    image = image + rng.uniform(0.004, 0.015) * rng.standard_normal(image.shape)
    boxes = [box for box in map(_tight_box, alphas) if box is not None]
    return _to_uint8(image), boxes


def generate_demo_derm(
    num_images: int,
    image_size: int = 64,
    seed: int = 0,
    class_weights: Sequence[float] | Mapping[str, float] | None = None,
) -> Iterator[ImageRecord]:
    """Generates demo-derm: clinical-style RGB skin-lesion crops, deterministic by seed.

    Each image shows 1-3 lesions of one condition (``DEMO_DERM_CLASSES``) on skin of
    the patient's Fitzpatrick type, with lighting gradients, hair, defocus and
    sensor noise. The conditions differ the way a clinician would describe them:

    | condition            | colour vs skin              | border            | texture                    | size, n   |
    |----------------------|-----------------------------|-------------------|----------------------------|-----------|
    | melanoma             | dark brown-black, blue veil | irregular, ragged | variegated, atypical net   | large, 1  |
    | nevus                | even brown, darker centre   | smooth ellipse    | fine regular network       | small, 1-3|
    | basal_cell_carcinoma | pearly pink, shiny rim      | smooth-ish        | red branching vessels      | medium, 1 |
    | seborrheic_keratosis | waxy tan-brown              | sharp             | ridges, white/dark dots    | medium,1-2|
    | psoriasis            | salmon red                  | irregular         | silvery-white scale        | large, 1-3|
    | eczema               | patchy pink-red             | ill-defined       | fine red papules           | large, 1-2|
    | vascular_lesion      | bright red-purple           | smooth round      | dark lobules               | small, 1-3|
    | dermatofibroma       | light brown                 | soft              | pigment ring, white centre | small, 1  |

    Skin colours are drawn per patient inside the ITA band of their type (Chardon
    et al. 1991 categories, see ``skin_tone``): from above 58 degrees (type I) to
    below -34 degrees (type VI). Patients have 1-4 images each.

    Args:
        num_images: int. How many images to generate (>= 1).
        image_size: int. Side in pixels (>= 16). Defaults to 64.
        seed: int. Seed (>= 0); image ``i`` depends only on ``seed``, ``i`` and the
            class weights. Defaults to 0.
        class_weights: optional sequence of 8 weights (class order) or mapping class
            name -> weight (missing names get 0). Defaults to None, a long tail
            (``DEMO_DERM_DEFAULT_CLASS_WEIGHTS``: nevus 10x dermatofibroma).

    Returns:
        An iterator of ``writer.ImageRecord`` with a uint8 ``[S, S, 3]`` image, the
        class index, the annotated Fitzpatrick type (1..6), one tight normalised
        ``[ymin, xmin, ymax, xmax]`` box per lesion (where its blurred coverage > 0.05)
        labelled with the class, ``patient_id`` ``"derm-p00042"`` and ``source_id``
        ``"demo-derm-000123"``.

    Example:

    >>> for record in generate_demo_derm(4, image_size=64, seed=1):
    ...     print(DEMO_DERM_CLASSES[record.label], record.fitzpatrick, len(record.bboxes))
    """
    num_images, image_size, seed = _check_generator_args(num_images, image_size, seed)
    probabilities = _class_probabilities(class_weights, DEMO_DERM_CLASSES, DEMO_DERM_DEFAULT_CLASS_WEIGHTS)
    return _derm_records(num_images, image_size, seed, probabilities)


def _derm_records(num_images: int, size: int, seed: int, probabilities: np.ndarray) -> Iterator[ImageRecord]:
    """The demo-derm generator proper, on validated arguments."""
    patients = _patient_index(num_images, seed, _DERM_GROUP_STREAM, _DERM_IMAGES_PER_PATIENT)
    cached_patient, fitzpatrick, skin_rgb = -1, 0, None
    for index in range(num_images):
        patient = int(patients[index])
        if patient != cached_patient:
            cached_patient, (fitzpatrick, skin_rgb) = patient, _derm_patient(seed, patient)
        rng = np.random.default_rng([seed, _DERM_IMAGE_STREAM, index])
        label = int(rng.choice(len(probabilities), p=probabilities))
        image, boxes = _render_derm(rng, size, label, skin_rgb)
        yield ImageRecord(
            image=image,
            label=label,
            fitzpatrick=fitzpatrick,
            fitzpatrick_estimated=False,
            bboxes=boxes,
            bbox_labels=[label] * len(boxes),
            patient_id=f"derm-p{patient:05d}",
            source_id=f"demo-derm-{index:06d}",
        )


# ---------------------------------------------------------------------------
# demo-cxr
# ---------------------------------------------------------------------------


_HEART_TILT_DEGREES = 25.0  # long axis of the heart, down towards the apex on the patient's left


@dataclasses.dataclass(frozen=True)
class _Chest:
    """A patient's anatomy (normalised image units), fixed for all their radiographs."""

    thorax_half_width: float  # half the inner thoracic width at the costophrenic angles
    apex_y: float  # top of the lungs
    dome_y: float  # top of the diaphragm domes
    dome_depth: float  # how far the costophrenic angles lie below the domes
    heart_ratio: float  # cardiothoracic ratio (heart width / thoracic width) when the heart is normal
    heart_shift: float  # heart centre, right of the image midline (the patient's left)
    heart_flatness: float  # minor / major axis of the heart's ellipse
    mediastinum_half_width: float
    rib_spacing: float
    rib_curvature: float
    soft_tissue: float  # brightness of soft tissue
    lung_air: float  # how much darker aerated lung is than soft tissue


def _cxr_patient(seed: int, patient: int) -> _Chest:
    """A patient's fixed anatomy."""
    rng = np.random.default_rng([seed, _CXR_PATIENT_STREAM, patient])
    return _Chest(
        thorax_half_width=rng.uniform(0.34, 0.40),
        apex_y=rng.uniform(0.11, 0.15),
        dome_y=rng.uniform(0.68, 0.74),
        dome_depth=rng.uniform(0.06, 0.09),
        heart_ratio=rng.uniform(0.40, 0.47),
        heart_shift=rng.uniform(0.045, 0.07),
        heart_flatness=rng.uniform(0.68, 0.80),
        mediastinum_half_width=rng.uniform(0.055, 0.07),
        rib_spacing=rng.uniform(0.075, 0.095),
        rib_curvature=rng.uniform(0.8, 1.4),
        soft_tissue=rng.uniform(0.44, 0.52),
        lung_air=rng.uniform(0.28, 0.34),
    )


def _cxr_coordinates(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical ``(Y, X)`` at each pixel for a patient positioned with small rotation, shift and scale."""
    yy, xx = _grid(size)
    angle = math.radians(rng.uniform(-3.0, 3.0))
    scale = rng.uniform(0.97, 1.03)
    shift_y, shift_x = rng.uniform(-0.02, 0.02, size=2)
    py, px = (yy - 0.5 - shift_y) / scale, (xx - 0.5 - shift_x) / scale
    return (0.5 + py * math.cos(angle) - px * math.sin(angle),
            0.5 + px * math.cos(angle) + py * math.sin(angle))


def _heart(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int, ratio: float) -> np.ndarray:
    """Coverage of the heart shadow, an ellipse tilted down to the apex, ``ratio`` x the thoracic width wide."""
    tilt = math.radians(_HEART_TILT_DEGREES)
    half_width = ratio * chest.thorax_half_width  # horizontal half extent, as the cardiothoracic ratio measures
    major = half_width / math.hypot(math.cos(tilt), chest.heart_flatness * math.sin(tilt))
    minor = chest.heart_flatness * major
    half_height = major * math.hypot(math.sin(tilt), chest.heart_flatness * math.cos(tilt))
    dy, dx = y - (chest.dome_y - 0.45 * half_height), x - 0.5 - chest.heart_shift
    u = dx * math.cos(tilt) + dy * math.sin(tilt)
    v = dy * math.cos(tilt) - dx * math.sin(tilt)
    return _soft_inside((np.hypot(u / major, v / minor) - 1.0) * minor, 0.01, size)


def _lung(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int, side: int, heart: np.ndarray) -> np.ndarray:
    """Coverage of one lung field (side -1: image left, +1: image right).

    Bounded by the chest wall, the mediastinum (with the aortic knob on the image right), the heart and the
    diaphragm dome, whose meeting with the chest wall makes the sharp costophrenic angle.
    """
    lateral = (x - 0.5) * side
    bottom_y = chest.dome_y + chest.dome_depth
    outer = (np.hypot(lateral / chest.thorax_half_width, (y - bottom_y) / (bottom_y - chest.apex_y)) - 1.0)
    outer = outer * chest.thorax_half_width
    medial = chest.mediastinum_half_width * (1.0 - 0.3 * _smoothstep((chest.dome_y - y) / 0.4)) - lateral
    peak = 0.45 * chest.thorax_half_width
    # The right hemidiaphragm (image left) sits a little higher than the left.
    dome_top = chest.dome_y - 0.015 * (side < 0)
    dome = dome_top + chest.dome_depth * ((lateral - peak) / (chest.thorax_half_width - peak)) ** 2
    coverage = np.ones_like(y)
    for distance in (outer, medial, y - dome):
        coverage = coverage * _soft_inside(distance, 0.012, size)
    if side > 0:  # the aortic knob bulges into the upper left (image right) lung border
        knob = np.hypot(y - chest.apex_y - 0.19, x - 0.5 - 0.7 * chest.mediastinum_half_width - 0.004) - 0.038
        coverage = coverage * (1.0 - _soft_inside(knob, 0.01, size))
    return coverage * (1.0 - heart)


def _rib_cage(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """Coverage of the rib cage: the lungs' outer outline grown by the chest wall, fading over the mediastinum."""
    lateral = np.abs(x - 0.5)
    bottom_y = chest.dome_y + chest.dome_depth + 0.03
    outline = np.hypot(lateral / (chest.thorax_half_width + 0.025), (y - bottom_y) / (bottom_y - chest.apex_y + 0.04))
    medial = 0.3 + 0.7 * _smoothstep((lateral - chest.mediastinum_half_width) / 0.04)
    below = 1.0 - 0.7 * _smoothstep((y - chest.dome_y) / 0.08)
    return _soft_inside((outline - 1.0) * chest.thorax_half_width, 0.02, size) * medial * below


def _ribs(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """Posterior ribs: periodic bright bands curving down laterally, inside the rib cage."""
    lateral = np.abs(x - 0.5)
    centre_line = y - 0.1 * lateral - chest.rib_curvature * lateral**2
    phase = (centre_line - chest.apex_y) / chest.rib_spacing
    bands = _smoothstep((0.5 + 0.5 * np.cos(2.0 * math.pi * phase) - 0.45) / 0.45)
    return bands * _rib_cage(chest, y, x, size) * _aa_gain(chest.rib_spacing, size)


def _lung_texture(rng: np.random.Generator, chest: _Chest, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """Extra density inside aerated lung: hilar shadows, vessel markings fading to the periphery, denser bases."""
    lateral = np.abs(x - 0.5) - chest.mediastinum_half_width
    hilum_y = chest.apex_y + 0.45 * (chest.dome_y - chest.apex_y)
    hila = np.exp(-(((lateral - 0.03) / 0.045) ** 2) - ((y - hilum_y) / 0.09) ** 2)
    vessels = _ridges(_smooth_noise(rng, size, 12), 0.25) * _aa_gain(1.0 / 12, size) * np.exp(-lateral / 0.18)
    bases = _smoothstep((y - chest.dome_y + 0.25) / 0.3)
    return 0.30 * hila + 0.22 * vessels + 0.12 * bases


def _clavicles(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """Two bright bars from the sternal notch rising laterally."""
    lateral = np.abs(x - 0.5)
    centre_y = chest.apex_y + 0.03 - 0.18 * (lateral - 0.04) + 0.4 * (lateral - 0.2) ** 2
    band = _soft_inside(np.abs(y - centre_y) - 0.016, 0.008, size)
    return band * _soft_inside(0.04 - lateral, 0.01, size) * _soft_inside(lateral - 0.92 * chest.thorax_half_width,
                                                                          0.02, size)


def _body(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """Soft-tissue silhouette: neck widening into shoulders and chest wall."""
    shoulders = chest.thorax_half_width + 0.07
    half_width = 0.10 + (shoulders - 0.10) * np.sqrt(_smoothstep((y + 0.01) / 0.17)) + 0.03 * _smoothstep(y - 0.2)
    return _soft_inside(np.abs(x - 0.5) - half_width, 0.025, size)


def _spine(chest: _Chest, y: np.ndarray, x: np.ndarray, size: int) -> np.ndarray:
    """Vertebral column with faint vertebral bodies, and the trachea (negative: darker)."""
    lateral = np.abs(x - 0.5)
    column = _soft_inside(lateral - 0.03, 0.01, size)
    bodies = 1.0 + 0.2 * _aa_gain(0.06, size) * np.cos(2.0 * math.pi * y / 0.06)
    trachea = _soft_inside(lateral - 0.018, 0.008, size) * _soft_inside(y - chest.apex_y - 0.2, 0.04, size)
    return 0.06 * column * bodies - 0.10 * trachea


def _pick_point(rng: np.random.Generator, y, x, region: np.ndarray, margin: float) -> tuple[float, float] | None:
    """A random anatomical point where ``region`` > 0.95, ``margin`` away from its edge, or None."""
    size = region.shape[0]
    candidates = np.flatnonzero(region.reshape(-1) > 0.95)
    offset = max(1, int(round(margin * size)))
    for _ in range(40):
        if candidates.size == 0:
            return None
        r, c = divmod(int(rng.choice(candidates)), size)
        rows, cols = np.array([r - offset, r + offset, r, r]), np.array([c, c, c - offset, c + offset])
        if rows.min() >= 0 and cols.min() >= 0 and rows.max() < size and cols.max() < size and \
                np.all(region[rows, cols] > 0.5):
            return float(y[r, c]), float(x[r, c])
    return None


def _consolidation(rng, chest, y, x, size, lung):
    """Patchy air-space opacity in one lung, with air bronchograms. Returns its coverage."""
    point = _pick_point(rng, y, x, lung, 0.07)
    cy, cx = point if point is not None else (chest.dome_y - 0.2, 0.5 - 0.6 * chest.thorax_half_width)
    ry, rx = rng.uniform(0.09, 0.16), rng.uniform(0.08, 0.13)
    rho = np.hypot((y - cy) / ry, (x - cx) / rx)
    patches, bronchi = _smooth_noise(rng, size, 9, count=2)
    patches = patches - patches[rho < 1.0].mean() if np.any(rho < 1.0) else patches  # patchy, never absent
    # Ill-defined, fluffy margins (unlike a mass): noise dominates the edge, a guaranteed core keeps it visible.
    fluffy = _smoothstep((3.0 * (1.0 - rho) + patches) / 1.5)
    opacity = np.maximum(fluffy, 0.8 * _smoothstep((0.5 - rho) / 0.3))
    opacity = opacity * (1.0 - 0.5 * _aa_gain(1.0 / 9, size) * _ridges(bronchi, 0.15))
    return rng.uniform(0.65, 0.9) * opacity * lung


def _effusion(rng, chest, y, x, size, lung, side):
    """Pleural fluid at one lung base: a meniscus rising laterally that blunts the costophrenic angle."""
    lateral = (x - 0.5) * side
    level = chest.dome_y - rng.uniform(0.02, 0.12)
    medial = chest.mediastinum_half_width
    rise = rng.uniform(0.04, 0.09) * np.clip((lateral - medial) / (chest.thorax_half_width - medial), 0.0, 1.5) ** 2
    return _soft_inside(level - rise - y, 0.012, size) * lung


def _mass(rng, chest, y, x, size, lung):
    """A round, slightly lobulated nodule inside a lung. Returns its coverage."""
    radius = rng.uniform(0.045, 0.075)
    point = _pick_point(rng, y, x, lung, radius + 0.01)
    cy, cx = point if point is not None else (chest.dome_y - 0.25, 0.5 - 0.55 * chest.thorax_half_width)
    phi = np.arctan2(y - cy, x - cx)
    boundary = radius * (1.0 + 0.06 * np.cos(3.0 * phi + rng.uniform(0.0, 2.0 * math.pi)))
    return _soft_inside(np.hypot(y - cy, x - cx) - boundary, 0.006, size)


def _render_cxr(rng: np.random.Generator, size: int, label: int, chest: _Chest):
    """One demo-cxr picture: ``(uint8 [S, S, 1], boxes)``, a tight box around the finding (none if normal)."""
    name = DEMO_CXR_CLASSES[label]
    y, x = _cxr_coordinates(rng, size)
    y = y + rng.uniform(-0.015, 0.015)  # inspiration depth moves the diaphragm
    ratio = rng.uniform(0.56, 0.66) if name == "cardiomegaly" else chest.heart_ratio
    heart = _heart(chest, y, x, size, ratio)
    lungs = {side: _lung(chest, y, x, size, side, heart) for side in (-1, 1)}
    side = -1 if rng.random() < 0.5 else 1
    air = lungs[-1] + lungs[1]
    finding = np.zeros_like(y)
    if name == "consolidation":
        finding = _consolidation(rng, chest, y, x, size, lungs[side])
    elif name == "effusion":
        finding = _effusion(rng, chest, y, x, size, lungs[side], side)
    elif name == "mass":
        finding = _mass(rng, chest, y, x, size, lungs[side])
    elif name == "cardiomegaly":
        finding = heart
    if name in ("consolidation", "effusion", "mass"):
        air = air * (1.0 - finding)
    texture = _lung_texture(rng, chest, y, x, size)
    density = (0.04 + chest.soft_tissue * _body(chest, y, x, size) + _spine(chest, y, x, size)
               + 0.07 * _ribs(chest, y, x, size) * (0.4 + 0.6 * air) + 0.12 * _clavicles(chest, y, x, size)
               - chest.lung_air * air * (1.0 - texture))
    if name == "mass":
        density = density + 0.02 * finding
    image = np.clip(density * rng.uniform(0.92, 1.08), 0.0, 1.0) ** rng.uniform(0.9, 1.1)
    alpha = finding
    blur = _random_blur(rng, size, 0.25, (0.3, 0.6))
    if blur is not None:
        image, alpha = _blur(image, blur), _blur(alpha, blur)
    image = image + rng.uniform(0.008, 0.02) * rng.standard_normal(image.shape)
    box = _tight_box(alpha) if name != "normal" else None
    return _to_uint8(image)[..., None], [box] if box is not None else []


def generate_demo_cxr(
    num_images: int,
    image_size: int = 64,
    seed: int = 0,
    class_weights: Sequence[float] | Mapping[str, float] | None = None,
) -> Iterator[ImageRecord]:
    """Generates demo-cxr: grey frontal chest-radiograph phantoms, deterministic by seed.

    Anatomy: dark lung fields bounded by the chest wall, mediastinum and the
    diaphragm domes (with sharp costophrenic angles), posterior ribs as curved
    bright bands, clavicles, spine and trachea, and the heart shadow. Each patient
    (2-5 images) keeps their anatomy (thoracic width, rib spacing, heart size, ...);
    each image varies positioning, inspiration, exposure, defocus and noise.

    Classes (``DEMO_CXR_CLASSES``) and their box:
    - ``normal``: no finding, no box.
    - ``consolidation``: patchy opacity with air bronchograms in one lung; box
      around the opacity.
    - ``effusion``: fluid with a meniscus at one lung base, blunting the
      costophrenic angle; box around the fluid.
    - ``mass``: a round nodule in one lung; box around it.
    - ``cardiomegaly``: cardiothoracic ratio 0.56-0.66 instead of the patient's
      normal 0.40-0.47; box around the whole heart shadow, so that every abnormal
      class has a region of interest for box-conditioned GANs.

    Args:
        num_images: int. How many images to generate (>= 1).
        image_size: int. Side in pixels (>= 16). Defaults to 64.
        seed: int. Seed (>= 0); image ``i`` depends only on ``seed``, ``i`` and the
            class weights. Defaults to 0.
        class_weights: optional sequence of 5 weights (class order) or mapping class
            name -> weight (missing names get 0). Defaults to None
            (``DEMO_CXR_DEFAULT_CLASS_WEIGHTS``, 40% normal).

    Returns:
        An iterator of ``writer.ImageRecord`` with a uint8 ``[S, S, 1]`` image, the
        class index, Fitzpatrick 0 (unknown), the boxes above, ``patient_id``
        ``"cxr-p00042"`` and ``source_id`` ``"demo-cxr-000123"``.

    Example:

    >>> records = list(generate_demo_cxr(8, image_size=128, seed=0))
    >>> [DEMO_CXR_CLASSES[r.label] for r in records]
    """
    num_images, image_size, seed = _check_generator_args(num_images, image_size, seed)
    probabilities = _class_probabilities(class_weights, DEMO_CXR_CLASSES, DEMO_CXR_DEFAULT_CLASS_WEIGHTS)
    return _cxr_records(num_images, image_size, seed, probabilities)


def _cxr_records(num_images: int, size: int, seed: int, probabilities: np.ndarray) -> Iterator[ImageRecord]:
    """The demo-cxr generator proper, on validated arguments."""
    patients = _patient_index(num_images, seed, _CXR_GROUP_STREAM, _CXR_IMAGES_PER_PATIENT)
    cached_patient, chest = -1, None
    for index in range(num_images):
        patient = int(patients[index])
        if patient != cached_patient:
            cached_patient, chest = patient, _cxr_patient(seed, patient)
        rng = np.random.default_rng([seed, _CXR_IMAGE_STREAM, index])
        label = int(rng.choice(len(probabilities), p=probabilities))
        image, boxes = _render_cxr(rng, size, label, chest)
        yield ImageRecord(
            image=image,
            label=label,
            fitzpatrick=0,
            fitzpatrick_estimated=False,
            bboxes=boxes,
            bbox_labels=[label] * len(boxes),
            patient_id=f"cxr-p{patient:05d}",
            source_id=f"demo-cxr-{index:06d}",
        )


# ---------------------------------------------------------------------------
# Writing and caching
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _DemoKind:
    """What differs between the demo datasets when they are written."""

    class_names: tuple
    default_weights: tuple
    channels: int
    records: Callable  # (num_images, size, seed, probabilities) -> iterator of ImageRecord
    group_stream: int
    images_per_patient: tuple[int, int]
    patient_prefix: str
    generator: str


_KINDS = {
    "demo-derm": _DemoKind(DEMO_DERM_CLASSES, DEMO_DERM_DEFAULT_CLASS_WEIGHTS, 3, _derm_records, _DERM_GROUP_STREAM,
                           _DERM_IMAGES_PER_PATIENT, "derm-p", "keras_medgan.data.demo.generate_demo_derm"),
    "demo-cxr": _DemoKind(DEMO_CXR_CLASSES, DEMO_CXR_DEFAULT_CLASS_WEIGHTS, 1, _cxr_records, _CXR_GROUP_STREAM,
                          _CXR_IMAGES_PER_PATIENT, "cxr-p", "keras_medgan.data.demo.generate_demo_cxr"),
}


def _demo_kind(kind: str) -> _DemoKind:
    """The ``_DemoKind`` of a kind name, or a ValueError naming the choices."""
    if kind not in _KINDS:
        raise ValueError(f"`kind` must be one of {DEMO_KINDS}. Received: kind={kind!r}")
    return _KINDS[kind]


def write_demo_dataset(
    kind: str,
    out,
    num_images: int = 2000,
    image_size: int = 64,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    shards: int = 2,
    image_format: str = "png",
    class_weights: Sequence[float] | Mapping[str, float] | None = None,
    command: str | None = None,
    progress: Callable[[int], object] | None = None,
) -> schema.DatasetInfo:
    """Writes a demo dataset as schema-v1 TFRecord shards plus ``dataset.json``.

    Patients are known before any image is drawn, so the split (by patient, with
    ``writer.assign_splits``) is fixed first and images are streamed into the
    shards: memory stays small at any size. The same arguments give
    byte-identical shard files.

    Args:
        kind: str. ``"demo-derm"`` or ``"demo-cxr"``.
        out: str or path. The dataset folder; a previous dataset there is replaced.
        num_images: int. Images to generate (>= 1). Defaults to 2000.
        image_size: int. Side in pixels (>= 16). Defaults to 64.
        seed: int. Generator and split seed (>= 0). Defaults to 0.
        val_fraction: float. Share of images (whole patients) in ``val``. Defaults to 0.1.
        test_fraction: float. Share of images (whole patients) in ``test``. Defaults to 0.1.
        shards: int. Shard files per split (>= 1). Defaults to 2.
        image_format: str. ``"png"`` (lossless) or ``"jpeg"``. Defaults to ``"png"``.
        class_weights: optional class weights, see ``generate_demo_derm`` /
            ``generate_demo_cxr``. Defaults to None (the kind's default distribution).
        command: optional str. The command line recorded in ``dataset.json``.
            Defaults to None (the equivalent Python call).
        progress: optional callable. Called with 1 after each written record
            (e.g. a click progress bar's ``update``). Defaults to None.

    Returns:
        The ``schema.DatasetInfo`` written to ``dataset.json``.

    Example:

    >>> info = write_demo_dataset("demo-derm", "data/demo-derm", num_images=2000, image_size=64)
    >>> info.num_examples("train"), info.class_names
    """
    spec = _demo_kind(kind)
    num_images, image_size, seed = _check_generator_args(num_images, image_size, seed)
    shards = _check_int("shards", shards, 1)
    if image_format not in schema.IMAGE_FORMATS:
        raise ValueError(
            f"`image_format` must be one of {schema.IMAGE_FORMATS}. Received: image_format={image_format!r}"
        )
    if progress is not None and not callable(progress):
        raise ValueError(f"`progress` must be None or a callable taking a count. Received: progress={progress!r}")
    probabilities = _class_probabilities(class_weights, spec.class_names, spec.default_weights)
    patients = _patient_index(num_images, seed, spec.group_stream, spec.images_per_patient)
    patient_ids = [f"{spec.patient_prefix}{p:05d}" for p in patients]
    split_of = writer.assign_splits(patient_ids, val_fraction, test_fraction, seed)
    if command is None:
        command = (f"keras_medgan.data.demo.write_demo_dataset({kind!r}, {os.fspath(out)!r}, num_images={num_images}, "
                   f"image_size={image_size}, seed={seed}, val_fraction={val_fraction}, "
                   f"test_fraction={test_fraction}, shards={shards}, image_format={image_format!r}, "
                   f"class_weights={None if class_weights is None else _rounded(probabilities)})")
    extra = {
        "generator": spec.generator,
        "generator_version": DEMO_GENERATOR_VERSION,
        "num_images": num_images,
        "class_probabilities": _rounded(probabilities),
        "images_per_patient": list(spec.images_per_patient),
        "num_patients": len(set(patient_ids)),
    }
    with writer.ShardedWriter(out, num_shards=shards, image_format=image_format) as sink:
        for record in spec.records(num_images, image_size, seed, probabilities):
            sink.add(split_of[record.patient_id], record, spec.class_names)
            if progress is not None:
                progress(1)
        return sink.finish(source=kind, command=command, image_size=[image_size, image_size],
                           channels=spec.channels, class_names=list(spec.class_names), split_unit="patient",
                           seed=seed, extra=extra)


def _rounded(probabilities: np.ndarray) -> list[float]:
    """Class probabilities as short floats for ``dataset.json``."""
    return [round(float(p), 6) for p in probabilities]


def _is_cached(folder: str, kind: str, image_size: int, num_images: int, seed: int) -> bool:
    """Whether ``folder`` holds a complete demo dataset written by this generator version with these settings."""
    try:
        info = schema.read_dataset_info(folder)
        for split in schema.SPLITS:
            if info.shards.get(split, 0):
                schema.shard_paths(folder, split, info)
    except (OSError, ValueError):
        return False
    spec = _demo_kind(kind)
    default = _rounded(_class_probabilities(None, spec.class_names, spec.default_weights))
    return (info.source == kind and info.image_size == [image_size, image_size] and info.seed == seed
            and isinstance(info.extra, dict) and info.extra.get("generator_version") == DEMO_GENERATOR_VERSION
            and info.extra.get("num_images") == num_images
            and info.extra.get("class_probabilities") == default)


def ensure_demo_dataset(
    kind: str = "demo-derm",
    image_size: int = 64,
    num_images: int = 2000,
    seed: int = 0,
    cache_dir=None,
) -> str:
    """Returns a folder holding a demo dataset, writing it first if it is not cached.

    The dataset lives in ``<cache root>/demo/<kind>-<size>px-<count>img-seed<seed>``
    where the cache root is ``cache_dir``, else ``$KERAS_MEDGAN_CACHE``, else
    ``~/.cache/keras_medgan``. A cached folder is reused when its ``dataset.json``
    reads and matches these settings and this generator version; otherwise it is
    rebuilt. The dataset is written to a temporary sibling folder and renamed into
    place, so an interrupted build never looks complete. Splits: 10% val, 10% test
    by patient, 2 shards per split, PNG, the default class distribution.

    Args:
        kind: str. ``"demo-derm"`` or ``"demo-cxr"``. Defaults to ``"demo-derm"``.
        image_size: int. Side in pixels (>= 16). Defaults to 64.
        num_images: int. Images to generate (>= 1). Defaults to 2000.
        seed: int. Seed (>= 0). Defaults to 0.
        cache_dir: optional str or path. Cache root. Defaults to None (see above).

    Returns:
        The dataset folder, ready for ``pipelines.make_dataset``.

    Example:

    >>> data_dir = ensure_demo_dataset("demo-cxr", image_size=64)
    >>> schema.read_dataset_info(data_dir).class_names
    ['normal', 'consolidation', 'effusion', 'mass', 'cardiomegaly']
    """
    _demo_kind(kind)
    num_images, image_size, seed = _check_generator_args(num_images, image_size, seed)
    parent = os.path.join(cache_root(cache_dir), "demo")
    folder = os.path.join(parent, f"{kind}-{image_size}px-{num_images}img-seed{seed}")
    if _is_cached(folder, kind, image_size, num_images, seed):
        return folder
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(folder)}-", dir=parent)
    try:
        write_demo_dataset(kind, staging, num_images=num_images, image_size=image_size, seed=seed,
                           command=f"keras_medgan.data.demo.ensure_demo_dataset(kind={kind!r}, "
                                   f"image_size={image_size}, num_images={num_images}, seed={seed})")
        if os.path.exists(folder):
            if _is_cached(folder, kind, image_size, num_images, seed):  # another process finished first
                return folder
            shutil.rmtree(folder)
        try:
            os.replace(staging, folder)
        except OSError:
            if not _is_cached(folder, kind, image_size, num_images, seed):
                raise
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return folder
