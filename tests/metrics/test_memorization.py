import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy.spatial.distance import cdist

from keras_medgan.data.demo import generate_demo_derm
from keras_medgan.metrics.memorization import (
    MemorizationReport,
    authenticity_score,
    copy_contact_sheet,
    memorization_audit,
    pairwise_nearest,
    pixel_vectors,
)

# ---------------------------------------------------------------------------
# pairwise_nearest
# ---------------------------------------------------------------------------


def test_pairwise_nearest_matches_brute_force_cdist_in_chunks():
    rng = np.random.default_rng(0)
    query, reference = rng.normal(size=(57, 7)), rng.normal(size=(40, 7))
    expect = cdist(query, reference)
    for batch_size in (8, 57, 1024):  # chunks smaller than, equal to and larger than the data
        distance, index = pairwise_nearest(query, reference, batch_size=batch_size)
        np.testing.assert_array_equal(index, expect.argmin(axis=1))
        np.testing.assert_allclose(distance, expect.min(axis=1), rtol=1e-12)
        assert distance.dtype == np.float64 and index.dtype == np.int64


def test_pairwise_nearest_exclude_self_skips_the_diagonal():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(33, 5))
    expect = cdist(points, points)
    np.fill_diagonal(expect, np.inf)
    distance, index = pairwise_nearest(points, points, exclude_self=True, batch_size=4)
    np.testing.assert_array_equal(index, expect.argmin(axis=1))
    np.testing.assert_allclose(distance, expect.min(axis=1), rtol=1e-12)
    assert np.all(index != np.arange(33))
    # Without exclude_self every row finds itself at distance exactly 0.
    distance, index = pairwise_nearest(points, points, batch_size=4)
    np.testing.assert_array_equal(index, np.arange(33))
    np.testing.assert_array_equal(distance, 0.0)


def test_pairwise_nearest_exact_copy_reads_exactly_zero():
    rng = np.random.default_rng(2)
    reference = rng.uniform(0, 1, size=(20, 3072))  # large rows: the expansion alone leaves a rounding residue
    distance, index = pairwise_nearest(reference[[7, 3]], reference)
    np.testing.assert_array_equal(index, [7, 3])
    np.testing.assert_array_equal(distance, [0.0, 0.0])


# ---------------------------------------------------------------------------
# authenticity_score (Alaa et al. 2022)
# ---------------------------------------------------------------------------


def test_authenticity_golden_values_1d():
    # Train at 0, 1, 10. Radius (distance to the nearest other training point): r(0)=1, r(1)=1, r(10)=9.
    train = np.array([[0.0], [1.0], [10.0]])
    # 0.4: nearest 0 at 0.4 < r(0)=1          -> unauthentic
    # 3:   nearest 1 at 2   >= r(1)=1          -> authentic (2 from a point whose neighbour is 1 away)
    # 6:   nearest 10 at 4  < r(10)=9          -> unauthentic (4 from a point whose neighbour is 9 away)
    # 19:  nearest 10 at 9  == r(10)=9 (a tie) -> authentic
    # 25:  nearest 10 at 15 >= 9               -> authentic
    gen = np.array([[0.4], [3.0], [6.0], [19.0], [25.0]])
    assert authenticity_score(gen, train) == pytest.approx(3 / 5)
    # Exact copies are unauthentic whenever the copied point has a neighbour (r > 0).
    assert authenticity_score(train, train) == 0.0
    assert authenticity_score(np.array([[-50.0], [60.0]]), train) == 1.0


def test_authenticity_golden_values_2d():
    # Train a=(0,0), b=(3,0), c=(0,4): |ab|=3, |ac|=4, |bc|=5, so r(a)=3, r(b)=3, r(c)=4.
    train = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # (0,3.5): nearest c at 0.5 < 4                        -> unauthentic
    # (6,0):   nearest b at 3 == r(b)=3 (a tie)            -> authentic
    # (-2,-2): nearest a at sqrt(8)=2.83 < 3               -> unauthentic
    # (0,9):   nearest c at 5 >= 4                         -> authentic
    gen = np.array([[0.0, 3.5], [6.0, 0.0], [-2.0, -2.0], [0.0, 9.0]])
    assert authenticity_score(gen, train) == pytest.approx(0.5)
    assert authenticity_score(gen[[0, 2]], train) == 0.0


# ---------------------------------------------------------------------------
# pixel_vectors
# ---------------------------------------------------------------------------


def test_pixel_vectors_area_average_and_value_ranges():
    image = np.zeros((1, 4, 4, 1), np.uint8)
    image[0, :2, :2] = 255  # top-left 2x2 block white
    image[0, 2:, 2:] = 51  # bottom-right block 0.2
    np.testing.assert_allclose(pixel_vectors(image, size=2), [[1.0, 0.0, 0.0, 0.2]], atol=1e-6)
    np.testing.assert_allclose(pixel_vectors(image, size=1), [[(1.0 + 0.2) / 4]], atol=1e-6)
    # float [-1, 1] images map to the same [0, 1] values as their uint8 twins
    as_float = image.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(pixel_vectors(as_float, size=2), pixel_vectors(image, size=2), atol=1e-6)
    rgb = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    out = pixel_vectors(rgb, size=8)  # no resize at the native size
    assert out.shape == (3, 8 * 8 * 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, rgb.reshape(3, -1) / 255.0, atol=1e-7)


# ---------------------------------------------------------------------------
# The must-show: planted copies among the images of a GAN that copies nothing
# ---------------------------------------------------------------------------

N_FRESH = 490


def _demo_images(n, seed):
    return np.stack([record.image for record in generate_demo_derm(n, image_size=32, seed=seed)])


def _feature_map():
    """A fixed, seeded stand-in for a pretrained extractor: per-image standardisation, 4 random convs, GAP.

    Standardisation gives it the invariance to global brightness/contrast that a trained extractor has (a
    random CNN on raw pixels mostly encodes mean colour); it is deterministic and never trained.
    """
    net = keras.Sequential([keras.Input((32, 32, 3))] + [
        keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu",
                            kernel_initializer=keras.initializers.HeNormal(seed=10 + i))
        for i, width in enumerate((32, 64, 128, 128))] + [keras.layers.GlobalAveragePooling2D()])

    def features(images):
        x = tf.image.per_image_standardization(tf.constant(images, tf.float32) / 127.5 - 1.0)
        return np.asarray(net.predict(x, batch_size=256, verbose=0), np.float64)

    return features


@pytest.fixture(scope="module")
def planted():
    """Train (300, seed 1), held-out (200, seed 2), and 490 fresh images (seed 3) + 10 planted copies."""
    train, heldout, fresh = _demo_images(300, 1), _demo_images(200, 2), _demo_images(N_FRESH, 3)
    rng = np.random.default_rng(7)
    source = rng.choice(len(train), 10, replace=False)
    exact = train[source[:5]]
    augmented = train[source[5:]].astype(np.float64)
    augmented *= np.array([1.04, 0.96, 1.04, 0.96, 1.03])[:, None, None, None]  # brightness +-4%
    augmented += rng.normal(0.0, 2.0, augmented.shape)  # pixel noise, sigma 2/255
    augmented[4] = np.concatenate([augmented[4][:, :1], augmented[4][:, :-1]], axis=1)  # + 1-px shift right
    augmented = np.clip(np.round(augmented), 0, 255).astype(np.uint8)
    gen = np.concatenate([fresh, exact, augmented])
    features = _feature_map()
    feats = {"gen": features(gen), "train": features(train), "heldout": features(heldout)}
    report = memorization_audit(feats["gen"], feats["train"], feats["heldout"], pixel_vectors(gen),
                                pixel_vectors(train), pixel_vectors(heldout), pixel_size=32)
    return report, feats, source


def test_audit_flags_planted_copies_and_few_fresh_images(planted):
    report, _, source = planted
    summary = report.summary()
    print({k: v for k, v in summary.items() if k != "rule"})  # the measured numbers, shown with pytest -s
    planted_flagged = report.flagged[N_FRESH:]
    # Measured: 9 of 10; the one missed is the copy shifted by 1 px, which moves it farther than the 1st
    # percentile of held-out distances in both spaces (about 1.3x the threshold).
    assert planted_flagged.sum() >= 9, planted_flagged
    assert report.flagged[:N_FRESH].sum() <= 4  # < 1% of a GAN that copies nothing
    assert planted_flagged[:5].all()  # every exact copy
    # Exact copies: distance exactly 0 to their source in both spaces.
    np.testing.assert_array_equal(report.feature_nn_distance[N_FRESH:N_FRESH + 5], 0.0)
    np.testing.assert_array_equal(report.pixel_nn_distance[N_FRESH:N_FRESH + 5], 0.0)
    np.testing.assert_array_equal(report.feature_nn_index[N_FRESH:], source)
    np.testing.assert_array_equal(report.pixel_nn_index[N_FRESH:], source)
    # The report's bookkeeping agrees with its arrays.
    assert (summary["n_generated"], summary["n_train"], summary["n_heldout"], summary["pixel_size"]) == (500, 300,
                                                                                                      200, 32)
    assert summary["n_flagged"] == report.flagged.sum()
    assert report.likely_copy_fraction == pytest.approx(report.flagged.mean())
    assert report.feature_threshold == pytest.approx(np.percentile(report.heldout_feature_nn_distance, 1.0))
    assert report.pixel_threshold == pytest.approx(np.percentile(report.heldout_pixel_nn_distance, 1.0))
    assert report.feature_copy_fraction >= report.likely_copy_fraction
    assert report.pixel_copy_fraction >= report.likely_copy_fraction
    assert summary["n_exact_feature_copies"] == summary["n_exact_pixel_copies"] == 5
    assert summary["heldout_exact_train_duplicates"] == 0
    assert "both feature space and pixel space" in summary["rule"] and "the 1st percentile" in summary["rule"]
    assert all(isinstance(v, (int, float, str)) or v is None for v in summary.values())


def test_closest_pairs_lists_planted_copies_first(planted):
    report, _, source = planted
    pairs = report.closest_pairs(10)
    # Exact copies first (distance 0, then by index), with their source training image.
    assert pairs[:5] == [(N_FRESH + i, int(source[i]), 0.0) for i in range(5)]
    # Every flagged planted copy comes before every fresh image, flagged or not.
    flagged_planted = set(N_FRESH + np.flatnonzero(report.flagged[N_FRESH:]))
    assert {g for g, _, _ in pairs[:len(flagged_planted)]} == flagged_planted
    assert len(report.closest_pairs(1000)) == 500


def test_authenticity_of_planted_copies(planted):
    report, feats, _ = planted
    assert report.authenticity == authenticity_score(feats["gen"], feats["train"])
    # Every planted copy sits closer to its source than the source's nearest other training image does.
    assert authenticity_score(feats["gen"][N_FRESH:], feats["train"]) == 0.0
    # Fresh images of a GAN that copies nothing score like held-out real images (exchangeable with them).
    fresh = authenticity_score(feats["gen"][:N_FRESH], feats["train"])
    heldout = authenticity_score(feats["heldout"], feats["train"])
    print(f"authenticity: fresh {fresh:.3f}, held-out {heldout:.3f}, all generated {report.authenticity:.3f}")
    assert abs(fresh - heldout) < 0.1
    assert report.authenticity == pytest.approx((fresh * N_FRESH) / 500)


# ---------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------


def _toy(n_gen=5, n_train=8, n_heldout=20, d=4, p=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, k)) for k in (d, p) for n in (n_gen, n_train, n_heldout)]


def _audit(gf, tf_, hf, gp, tp, hp, **kwargs):
    return memorization_audit(gf, tf_, hf, gp, tp, hp, **kwargs)


def test_audit_validation_messages_name_the_argument_and_the_fix():
    gf, tf_, hf, gp, tp, hp = _toy()
    with pytest.raises(ValueError, match=r"`heldout_features` has 12 rows .* at least 20 .* Pass more"):
        _audit(gf, tf_, hf[:12], gp, tp, hp[:12])
    with pytest.raises(ValueError, match=r"`heldout_pixels` has 19 rows .* at least 20"):
        _audit(gf, tf_, hf, gp, tp, hp[:19])
    with pytest.raises(ValueError, match=r"`gen_features`, `train_features` and `heldout_features` must have the "
                                         r"same feature dimension .* heldout_features=3\. Compute all three"):
        _audit(gf, tf_, hf[:, :3], gp, tp, hp)
    with pytest.raises(ValueError, match=r"`gen_pixels`, `train_pixels` and `heldout_pixels` must have the same "
                                         r"pixel dimension .* train_pixels=5, heldout_pixels=6\. Make all three with pixel_vectors"):
        _audit(gf, tf_, hf, gp, tp[:, :5], hp)
    with pytest.raises(ValueError, match=r"`gen_features` and `gen_pixels` must have the same number of rows\. "
                                         r"Received gen_features=5, gen_pixels=4\. Features and pixel vectors"):
        _audit(gf, tf_, hf, gp[:4], tp, hp)
    with pytest.raises(ValueError, match=r"`percentile` must be a number in \(0, 100\)"):
        _audit(gf, tf_, hf, gp, tp, hp, percentile=0)
    with pytest.raises(ValueError, match=r"`train_features` must be a 2-D array"):
        _audit(gf, tf_[0], hf, gp, tp, hp)
    bad = gf.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"`gen_features` holds NaN or Inf"):
        _audit(bad, tf_, hf, gp, tp, hp)
    report = _audit(gf, tf_, hf, gp, tp, hp, percentile=5)
    assert report.percentile == 5.0 and "5th percentile" in report.summary()["rule"]
    assert report.pixel_size is None and report.summary()["pixel_size"] is None


def test_other_validation_messages():
    with pytest.raises(ValueError, match=r"exclude_self=True needs `query` to be `reference`"):
        pairwise_nearest(np.zeros((3, 2)), np.zeros((4, 2)), exclude_self=True)
    with pytest.raises(ValueError, match=r"`query` and `reference` must have the same number of columns"):
        pairwise_nearest(np.zeros((3, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"`batch_size` must be an integer >= 1"):
        pairwise_nearest(np.zeros((3, 2)), np.zeros((4, 2)), batch_size=0)
    with pytest.raises(ValueError, match=r"`train` needs at least 2 row"):
        authenticity_score(np.zeros((3, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"float `images` must lie in \[-1, 1\].*x \* 2 - 1"):
        pixel_vectors(np.full((2, 4, 4, 3), 200.0))
    with pytest.raises(ValueError, match=r"`images` must be a non-empty \[N, H, W, C\] array.*images\[\.\.\., None\]"):
        pixel_vectors(np.zeros((2, 4, 4), np.uint8))


# ---------------------------------------------------------------------------
# Contact sheet
# ---------------------------------------------------------------------------


def _sheet_inputs(channels=3):
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (10, 8, 8, channels), dtype=np.uint8)
    heldout = rng.integers(0, 256, (20, 8, 8, channels), dtype=np.uint8)
    gen = rng.integers(0, 256, (6, 8, 8, channels), dtype=np.uint8)
    gen[2] = train[4]  # an exact copy: flagged, shown first
    vectors = [pixel_vectors(x, size=8) for x in (gen, train, heldout)]
    return gen, train, memorization_audit(*vectors, *vectors, pixel_size=8)


def test_copy_contact_sheet_size_order_and_atomic_write(tmp_path):
    gen, train, report = _sheet_inputs()
    assert isinstance(report, MemorizationReport) and report.flagged.tolist() == [False, False, True] + [False] * 3
    path = copy_contact_sheet(gen, train, report, str(tmp_path / "sheets" / "copies.png"), n=4, cell=32)
    assert path.endswith("copies.png") and os.listdir(tmp_path / "sheets") == ["copies.png"]  # no temp file left
    with Image.open(path) as sheet:
        assert sheet.format == "PNG" and sheet.size == (4 * 32, 4 * 32)  # generated | train | strip (2 cells)
        pixels = np.asarray(sheet.convert("RGB"))
    # Row 0 is the exact copy (gen 2 = train 4): both tiles show the same 8x8 image, upscaled 4x nearest.
    np.testing.assert_array_equal(pixels[:32, :32], np.kron(gen[2], np.ones((4, 4, 1), np.uint8)))
    np.testing.assert_array_equal(pixels[:32, 32:64], pixels[:32, :32])
    assert _main_colour(pixels[:32, 64:]) == (150, 25, 25)  # flagged: red strip
    assert _main_colour(pixels[32:64, 64:]) == (40, 40, 40)  # not flagged: grey strip


def _main_colour(region):
    colours, counts = np.unique(region.reshape(-1, 3), axis=0, return_counts=True)
    return tuple(int(c) for c in colours[counts.argmax()])


def test_copy_contact_sheet_clips_rows_and_takes_grey_and_float_images(tmp_path):
    gen, train, report = _sheet_inputs(channels=1)
    path = copy_contact_sheet(gen.astype(np.float32) / 127.5 - 1.0, train, report, str(tmp_path / "g.png"), n=50,
                              cell=16)
    with Image.open(path) as sheet:
        assert sheet.size == (4 * 16, 6 * 16)  # 50 rows asked, 6 generated images
    assert sorted(os.listdir(tmp_path)) == ["g.png"]
    with pytest.raises(ValueError, match=r"`gen_images` and `report.n_generated` must have the same number"):
        copy_contact_sheet(gen[:5], train, report, str(tmp_path / "bad.png"))
    assert sorted(os.listdir(tmp_path)) == ["g.png"]
