"""Skin tone from pixels: CIELAB, the Individual Typology Angle (ITA) and a Fitzpatrick estimate.

Datasets without skin-type labels (ISIC, HAM10000, ...) get a Fitzpatrick type
estimated from the colour of the skin around the lesion, as in Kinyanjui et al.
2020: convert the non-lesion pixels to CIELAB, take the ITA
``arctan((L* - 50) / b*)`` in degrees, and map Chardon's ITA categories to
Fitzpatrick types. The estimate is coarse (ITA measures constitutive colour
under unknown lighting, Fitzpatrick types measure sun reactivity); records
carry ``fitzpatrick/estimated = 1`` so that it is never mistaken for a label.

Numpy only: importing this module does not import TensorFlow.

Example:

>>> image = np.full((32, 32, 3), (210, 160, 125), dtype=np.uint8)
>>> estimate_fitzpatrick(image)
(3, 37.78...)

References:
    Chardon, Cretois & Hourseau, "Skin colour typology and suntanning
    pathways", Int. J. Cosmet. Sci. 13:191-208, 1991 (the ITA categories).
    Del Bino & Bernerd, "Variations in skin colour and the biological
    consequences of ultraviolet radiation exposure", Br. J. Dermatol.
    169(s3):33-40, 2013 (ITA categories against skin colour types).
    Kinyanjui et al., "Fairness of classifiers across skin tones in
    dermatology", MICCAI 2020 (ITA -> Fitzpatrick on ISIC / SD-198), and
    Groh et al., "Evaluating deep neural networks trained on clinical images
    in dermatology with the Fitzpatrick 17k dataset", CVPR-W 2021.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# Lower ITA bounds (degrees, exclusive) of Chardon et al. 1991's categories, lightest first, with the
# Fitzpatrick type each maps to (Del Bino & Bernerd 2013; Kinyanjui et al. 2020):
# very light > 55 -> I, light 41..55 -> II, intermediate 28..41 -> III, tan 10..28 -> IV,
# brown -30..10 -> V, and dark <= -30 -> VI. A value exactly on a bound belongs to the darker category.
ITA_FITZPATRICK_THRESHOLDS = ((55.0, 1), (41.0, 2), (28.0, 3), (10.0, 4), (-30.0, 5))
DARKEST_FITZPATRICK = 6

# sRGB (IEC 61966-2-1) primaries, D65 white: linear RGB -> CIE XYZ, and the D65 reference white
# (the row sums of the matrix, so that sRGB white maps to exactly L* = 100, a* = b* = 0).
_SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_SRGB = np.linalg.inv(_SRGB_TO_XYZ)
_D65_WHITE = _SRGB_TO_XYZ.sum(axis=1)
_LAB_EPSILON = (6.0 / 29.0) ** 3
_LAB_KAPPA_SLOPE = 1.0 / (3.0 * (6.0 / 29.0) ** 2)

# Below this share of the image (in pixels outside the exclusion mask) the skin sample is too small to
# trust, and the ITA falls back to all pixels.
_MIN_SKIN_FRACTION = 0.01
_B_ZERO = 1e-9


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function on values in [0, 1]."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """sRGB transfer function on linear values in [0, 1]."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1.0 / 2.4) - 0.055)


def _lab_f(t: np.ndarray) -> np.ndarray:
    """The CIELAB companding function f(t)."""
    return np.where(t > _LAB_EPSILON, np.cbrt(t), t * _LAB_KAPPA_SLOPE + 4.0 / 29.0)


def _lab_f_inverse(f: np.ndarray) -> np.ndarray:
    """Inverse of ``_lab_f``."""
    return np.where(f > 6.0 / 29.0, f**3, (f - 4.0 / 29.0) / _LAB_KAPPA_SLOPE)


def srgb_to_lab(image_uint8_rgb: np.ndarray) -> np.ndarray:
    """Converts 8-bit sRGB colours to CIELAB (D65 white, 2 degree observer).

    sRGB -> linear RGB (IEC 61966-2-1) -> CIE XYZ (D65) -> CIELAB, vectorised in
    float64.

    Args:
        image_uint8_rgb: uint8 array ``[..., 3]``. sRGB colours, e.g. an ``[H, W, 3]`` image.

    Returns:
        float64 array ``[..., 3]`` of ``(L*, a*, b*)``.

    Example:

    >>> srgb_to_lab(np.array([255, 0, 0], dtype=np.uint8)).round(2)
    array([53.24, 80.09, 67.2 ])
    """
    rgb = np.asarray(image_uint8_rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"`image_uint8_rgb` must end in an RGB axis of 3. Received: shape={rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"`image_uint8_rgb` must be uint8 in [0, 255]. Received: dtype={rgb.dtype}")
    linear = _srgb_to_linear(rgb.astype(np.float64) / 255.0)
    xyz = linear @ _SRGB_TO_XYZ.T
    f = _lab_f(xyz / _D65_WHITE)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """Converts CIELAB (D65) to sRGB floats in [0, 1]; out-of-gamut colours are clipped.

    Args:
        lab: float array ``[..., 3]`` of ``(L*, a*, b*)``.

    Returns:
        float64 array ``[..., 3]`` of sRGB values in [0, 1] (multiply by 255 and round for uint8).

    Example:

    >>> (lab_to_srgb(np.array([100.0, 0.0, 0.0])) * 255).round()
    array([255., 255., 255.])
    """
    lab = np.asarray(lab, dtype=np.float64)
    if lab.shape[-1:] != (3,):
        raise ValueError(f"`lab` must end in an (L*, a*, b*) axis of 3. Received: shape={lab.shape}")
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    xyz = _lab_f_inverse(np.stack([fx, fy, fz], axis=-1)) * _D65_WHITE
    return _linear_to_srgb(xyz @ _XYZ_TO_SRGB.T)


def _ita_from_lab(lightness: float, b: float) -> float:
    """``degrees(arctan((L* - 50) / b*))`` in (-90, 90], defined at ``b* = 0`` (+-90, or 0 when L* = 50)."""
    # arctan2 on (sign(b) * (L - 50), |b|) equals arctan((L - 50) / b) for every b != 0, keeps arctan's
    # range (-90, 90) for the (never skin-like) b* < 0, and gives the limit instead of a division by 0.
    # |b*| below _B_ZERO is float round-off of a neutral grey, whose sign must not flip the angle.
    sign = -1.0 if b < -_B_ZERO else 1.0
    return float(np.degrees(np.arctan2(sign * (lightness - 50.0), abs(b) if abs(b) >= _B_ZERO else 0.0)))


def _check_rgb(image: np.ndarray, name: str) -> np.ndarray:
    """Returns ``image`` as an array after checking it is a uint8 ``[H, W, 3]`` RGB image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"`{name}` must be an RGB image [H, W, 3]; skin tone cannot be estimated from a grey or "
            f"multi-channel image. Received: shape={image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"`{name}` must be uint8 in [0, 255]. Received: dtype={image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"`{name}` must have at least one pixel. Received: shape={image.shape}")
    return image


def _skin_pixels(image: np.ndarray, exclude_mask: np.ndarray | None) -> np.ndarray:
    """The ``[N, 3]`` pixels outside ``exclude_mask``, or all pixels when fewer than 1% are outside it."""
    pixels = image.reshape(-1, 3)
    if exclude_mask is None:
        return pixels
    mask = np.asarray(exclude_mask)
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"`exclude_mask` must have the image's [H, W] shape {image.shape[:2]}. Received: shape={mask.shape}"
        )
    keep = ~mask.astype(bool).reshape(-1)
    if keep.sum() < max(1, _MIN_SKIN_FRACTION * keep.size):
        return pixels
    return pixels[keep]


def ita_angle(image_uint8_rgb: np.ndarray, exclude_mask: np.ndarray | None = None) -> float:
    """The Individual Typology Angle of the skin in an image, in degrees.

    ``ITA = arctan((L* - 50) / b*) * 180 / pi`` (Chardon et al. 1991) from the
    median ``L*`` and the median ``b*`` of the skin pixels: the pixels where
    ``exclude_mask`` is False. Medians keep the estimate robust to what is not
    skin but was not masked (hair, specular highlights, a lesion's halo, sensor
    noise) and avoid the per-pixel angle, which is unstable where ``b*`` is near
    0. When fewer than 1% of the pixels are outside the mask, all pixels are used.

    Args:
        image_uint8_rgb: uint8 array ``[H, W, 3]``. An sRGB image.
        exclude_mask: optional bool array ``[H, W]``. True on pixels to ignore
            (the lesion). Defaults to None (use every pixel).

    Returns:
        The ITA in degrees, in (-90, 90]; high is light skin.

    Example:

    >>> image = np.full((8, 8, 3), (224, 180, 150), dtype=np.uint8)
    >>> round(ita_angle(image), 1)
    51.1
    """
    image = _check_rgb(image_uint8_rgb, "image_uint8_rgb")
    lab = srgb_to_lab(_skin_pixels(image, exclude_mask))
    return _ita_from_lab(float(np.median(lab[:, 0])), float(np.median(lab[:, 2])))


def ita_to_fitzpatrick(ita: float) -> int:
    """Maps an ITA (degrees) to a Fitzpatrick skin type 1..6.

    Chardon et al. 1991's ITA categories, mapped to Fitzpatrick types as in
    Del Bino & Bernerd 2013 and Kinyanjui et al. 2020 (the mapping used to
    annotate ISIC-style data in Fitzpatrick-17k-style fairness studies):

    | ITA (degrees)      | category     | Fitzpatrick |
    |--------------------|--------------|-------------|
    | > 55               | very light   | I           |
    | 41 < ITA <= 55     | light        | II          |
    | 28 < ITA <= 41     | intermediate | III         |
    | 10 < ITA <= 28     | tan          | IV          |
    | -30 < ITA <= 10    | brown        | V           |
    | <= -30             | dark         | VI          |

    The bounds are ``ITA_FITZPATRICK_THRESHOLDS``.

    Args:
        ita: float. Individual Typology Angle in degrees.

    Returns:
        The Fitzpatrick type, an int in 1..6.

    Example:

    >>> ita_to_fitzpatrick(60.0), ita_to_fitzpatrick(55.0), ita_to_fitzpatrick(-45.0)
    (1, 2, 6)
    """
    value = float(ita)
    if not np.isfinite(value):
        raise ValueError(f"`ita` must be a finite angle in degrees. Received: ita={ita}")
    for lower_bound, fitzpatrick in ITA_FITZPATRICK_THRESHOLDS:
        if value > lower_bound:
            return fitzpatrick
    return DARKEST_FITZPATRICK


def estimate_fitzpatrick(image_uint8_rgb: np.ndarray, exclude_mask: np.ndarray | None = None) -> tuple[int, float]:
    """Estimates the Fitzpatrick skin type of an RGB skin image from its ITA.

    See ``ita_angle`` (median CIELAB of the pixels outside ``exclude_mask``, all
    pixels when fewer than 1% are outside it) and ``ita_to_fitzpatrick`` (Chardon
    categories -> Fitzpatrick types).

    Args:
        image_uint8_rgb: uint8 array ``[H, W, 3]``. An sRGB image of skin.
        exclude_mask: optional bool array ``[H, W]``. True on lesion pixels to
            ignore, e.g. ``boxes_to_mask(image.shape[:2], boxes)``. Defaults to None.

    Returns:
        ``(fitzpatrick, ita)``: the type in 1..6 and the ITA in degrees.

    Raises:
        ValueError: the image is not a uint8 ``[H, W, 3]`` RGB image (grey images
            carry no skin colour), or the mask's shape does not match.

    Example:

    >>> image = np.full((64, 64, 3), (120, 80, 60), dtype=np.uint8)
    >>> mask = boxes_to_mask((64, 64), [[0.25, 0.25, 0.75, 0.75]])
    >>> fitzpatrick, ita = estimate_fitzpatrick(image, exclude_mask=mask)
    """
    ita = ita_angle(image_uint8_rgb, exclude_mask)
    return ita_to_fitzpatrick(ita), ita


def boxes_to_mask(shape_hw: Sequence[int], boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """A boolean ``[H, W]`` mask, True on pixels inside any normalised box.

    A pixel belongs to a box when its centre ``((row + 0.5) / H, (col + 0.5) / W)``
    lies in ``[ymin, ymax] x [xmin, xmax]``.

    Args:
        shape_hw: ``(height, width)`` of the image.
        boxes: sequence of normalised ``[ymin, xmin, ymax, xmax]`` boxes; may be empty.

    Returns:
        bool array ``[H, W]``.

    Example:

    >>> boxes_to_mask((4, 4), [[0.0, 0.0, 0.5, 0.5]]).astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [0, 0, 0, 0],
           [0, 0, 0, 0]])
    """
    if len(shape_hw) != 2 or any(int(v) < 1 for v in shape_hw):
        raise ValueError(f"`shape_hw` must be (height, width) of positive integers. Received: shape_hw={shape_hw}")
    height, width = int(shape_hw[0]), int(shape_hw[1])
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"`boxes` must be a list of [ymin, xmin, ymax, xmax] boxes. Received: shape={boxes.shape}")
    mask = np.zeros((height, width), dtype=bool)
    rows = (np.arange(height) + 0.5) / height
    cols = (np.arange(width) + 0.5) / width
    for ymin, xmin, ymax, xmax in boxes:
        inside_rows = (rows >= ymin) & (rows <= ymax)
        inside_cols = (cols >= xmin) & (cols <= xmax)
        mask |= inside_rows[:, None] & inside_cols[None, :]
    return mask
