"""Golden values for sRGB -> CIELAB, the ITA, the Chardon / Fitzpatrick mapping and box masks."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_medgan
from keras_medgan.data import skin_tone


def _uniform(rgb, size=16):
    return np.full((size, size, 3), rgb, dtype=np.uint8)


# Reference CIELAB (D65, 2 degrees) of sRGB primaries, from the IEC 61966-2-1 matrix and CIE formulas.
@pytest.mark.parametrize(
    "rgb, lab",
    [
        ((255, 255, 255), (100.0, 0.0, 0.0)),
        ((0, 0, 0), (0.0, 0.0, 0.0)),
        ((255, 0, 0), (53.2408, 80.0925, 67.2032)),
        ((0, 255, 0), (87.7347, -86.1827, 83.1793)),
        ((0, 0, 255), (32.2970, 79.1875, -107.8602)),
    ],
)
def test_srgb_to_lab_primaries(rgb, lab):
    np.testing.assert_allclose(skin_tone.srgb_to_lab(np.array(rgb, dtype=np.uint8)), lab, atol=2e-3)


def test_srgb_to_lab_mid_grey_by_hand():
    # 128/255 -> linear ((0.50196 + 0.055) / 1.055) ** 2.4 = 0.21586 = Y; L* = 116 * Y ** (1/3) - 16.
    linear = ((128 / 255 + 0.055) / 1.055) ** 2.4
    expected_lightness = 116.0 * linear ** (1.0 / 3.0) - 16.0
    lab = skin_tone.srgb_to_lab(np.array([128, 128, 128], dtype=np.uint8))
    assert expected_lightness == pytest.approx(53.585, abs=1e-3)
    np.testing.assert_allclose(lab, [expected_lightness, 0.0, 0.0], atol=1e-6)


def test_srgb_to_lab_keeps_leading_shape_and_round_trips():
    levels = np.arange(0, 256, 15, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1)
    lab = skin_tone.srgb_to_lab(rgb)
    assert lab.shape == rgb.shape and lab.dtype == np.float64
    np.testing.assert_allclose(skin_tone.lab_to_srgb(lab) * 255.0, rgb, atol=1e-6)


def test_ita_of_uniform_skin_matches_formula():
    image = _uniform((224, 180, 150))
    lightness, _, b = skin_tone.srgb_to_lab(image[0, 0])
    expected = math.degrees(math.atan((lightness - 50.0) / b))
    assert skin_tone.ita_angle(image) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(51.137, abs=1e-3)


def test_ita_hand_computed_from_lab():
    # L* = 70, b* = 20: ITA = atan(20 / 20) = 45 degrees, up to 8-bit rounding of the colour.
    rgb = np.rint(skin_tone.lab_to_srgb(np.array([70.0, 10.0, 20.0])) * 255).astype(np.uint8)
    assert skin_tone.ita_angle(_uniform(rgb)) == pytest.approx(45.0, abs=0.5)


def test_ita_is_defined_where_b_is_zero():
    assert skin_tone.ita_angle(_uniform((255, 255, 255))) == pytest.approx(90.0)
    assert skin_tone.ita_angle(_uniform((60, 60, 60))) == pytest.approx(-90.0)


def test_ita_is_robust_to_a_few_dark_hair_pixels():
    image = _uniform((210, 160, 125), size=40)
    clean = skin_tone.ita_angle(image)
    image[::5, :] = (20, 15, 10)  # 20% of rows covered by dark strands
    assert skin_tone.ita_angle(image) == pytest.approx(clean, abs=1e-9)


@pytest.mark.parametrize(
    "ita, fitzpatrick",
    [
        (90.0, 1), (55.01, 1), (55.0, 2), (41.01, 2), (41.0, 3), (28.01, 3), (28.0, 4),
        (10.01, 4), (10.0, 5), (-29.99, 5), (-30.0, 6), (-90.0, 6),
    ],
)
def test_ita_to_fitzpatrick_boundaries(ita, fitzpatrick):
    assert skin_tone.ita_to_fitzpatrick(ita) == fitzpatrick


def test_thresholds_constant_is_the_chardon_table():
    assert skin_tone.ITA_FITZPATRICK_THRESHOLDS == ((55.0, 1), (41.0, 2), (28.0, 3), (10.0, 4), (-30.0, 5))


@pytest.mark.parametrize("ita", [float("nan"), float("inf")])
def test_ita_to_fitzpatrick_rejects_non_finite(ita):
    with pytest.raises(ValueError, match="`ita` must be a finite angle"):
        skin_tone.ita_to_fitzpatrick(ita)


@pytest.mark.parametrize(
    "rgb, fitzpatrick",
    [((231, 195, 177), 1), ((193, 155, 140), 2), ((210, 160, 125), 3), ((170, 120, 90), 4), ((140, 95, 70), 5),
     ((88, 57, 40), 6)],
)
def test_estimate_fitzpatrick_of_uniform_skin(rgb, fitzpatrick):
    estimated, ita = skin_tone.estimate_fitzpatrick(_uniform(rgb))
    assert estimated == fitzpatrick
    assert estimated == skin_tone.ita_to_fitzpatrick(ita)


def test_masking_a_dark_lesion_recovers_the_skin_type():
    image = _uniform((210, 160, 125), size=64)  # type III skin, ITA ~ 37.8
    image[8:56, 8:56] = (60, 40, 30)  # a dark lesion over 56% of the image
    box = [[8 / 64, 8 / 64, 56 / 64, 56 / 64]]
    unmasked, unmasked_ita = skin_tone.estimate_fitzpatrick(image)
    masked, masked_ita = skin_tone.estimate_fitzpatrick(image, exclude_mask=skin_tone.boxes_to_mask((64, 64), box))
    assert unmasked == 6 and unmasked_ita < -30.0
    assert masked == 3
    assert masked_ita == pytest.approx(skin_tone.ita_angle(_uniform((210, 160, 125))), abs=1e-9)


def test_too_few_skin_pixels_fall_back_to_all_pixels():
    image = _uniform((210, 160, 125), size=20)
    image[:10] = (60, 40, 30)
    almost_all = np.ones((20, 20), dtype=bool)
    almost_all[0, 0] = False  # 1 of 400 pixels (< 1%) outside the mask
    assert skin_tone.ita_angle(image, almost_all) == pytest.approx(skin_tone.ita_angle(image))


def test_estimate_rejects_grey_and_non_uint8_images():
    with pytest.raises(ValueError, match=r"must be an RGB image \[H, W, 3\]"):
        skin_tone.estimate_fitzpatrick(np.zeros((8, 8, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"must be an RGB image \[H, W, 3\]"):
        skin_tone.estimate_fitzpatrick(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="must be uint8"):
        skin_tone.estimate_fitzpatrick(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="`exclude_mask` must have the image's"):
        skin_tone.estimate_fitzpatrick(np.zeros((8, 8, 3), dtype=np.uint8), exclude_mask=np.zeros((4, 4), bool))


def test_boxes_to_mask_uses_pixel_centres():
    mask = skin_tone.boxes_to_mask((4, 6), [[0.0, 0.0, 0.5, 0.5], [0.75, 0.9, 1.0, 1.0]])
    expected = np.zeros((4, 6), dtype=bool)
    expected[:2, :3] = True
    expected[3, 5] = True  # centre (0.875, 0.9167) is inside the second box
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == bool


def test_boxes_to_mask_empty_and_invalid():
    assert not skin_tone.boxes_to_mask((5, 7), []).any()
    assert skin_tone.boxes_to_mask((5, 7), np.zeros((0, 4))).shape == (5, 7)
    with pytest.raises(ValueError, match="`boxes` must be a list of"):
        skin_tone.boxes_to_mask((5, 7), [[0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="`shape_hw` must be"):
        skin_tone.boxes_to_mask((0, 7), [])


def test_importing_skin_tone_does_not_import_tensorflow():
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_medgan.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    code = "import sys, keras_medgan.data.skin_tone; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"
