"""StyleGAN2 tools: SeFa against a hand-built eigenproblem, edits, the projector on a self-generated target,
the paper-003 projection audit on planted embeddings."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.gans import stylegan2_tools as tools
from keras_medgan.metrics.perceptual import perceptual_features
from keras_medgan.networks.classifiers import domain_classifier
from keras_medgan.networks.stylegan2 import stylegan2_generator


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(1)
    return stylegan2_generator(16, 3, num_classes=2, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256,
                               channel_max=32)


@pytest.fixture(scope="module")
def perceptual(tmp_path_factory):
    keras.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("ruler") / "classifier.keras")
    domain_classifier(16, 3, 2, filters=(4, 8), feature_dim=8).save(path)
    return perceptual_features(16, 3, prefer="classifier", classifier_path=path)[0]


def _hand_matrix(generator, indices):
    kernels = []
    for layer in generator.synthesis.layers:
        if "conv" in layer.name and getattr(layer, "w_index", None) in indices:  # toRGB layers are left out
            kernels.append(layer.affine.kernel.numpy().astype(np.float64) / np.sqrt(layer.affine.kernel.shape[0]))
    a_t = np.concatenate(kernels, axis=1)
    a_t /= np.linalg.norm(a_t, axis=0, keepdims=True)
    return a_t @ a_t.T


@pytest.mark.parametrize("layers, indices", [("all", [0, 1, 2, 3, 4]), ([1, 2], [1, 2]), ("late", [3, 4])])
def test_sefa_directions_equal_numpy_eigh_of_the_hand_built_matrix(generator, layers, indices):
    values, directions = tools.sefa_directions(generator, layers, k=5)
    assert directions.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(directions @ directions.T, np.eye(5), atol=1e-5)
    assert np.all(np.diff(values) <= 0)
    ref_values, ref_vectors = np.linalg.eigh(_hand_matrix(generator, indices))
    np.testing.assert_allclose(values, ref_values[::-1][:5], rtol=1e-6)
    dots = np.abs(np.sum(directions * ref_vectors[:, ::-1][:, :5].T, axis=1))  # eigenvectors up to sign
    np.testing.assert_allclose(dots, 1.0, atol=1e-4)


def test_layer_bands_of_a_16px_generator(generator):
    assert [tools.layer_band(generator, b) for b in ("all", "early", "middle", "late")] == [
        [0, 1, 2, 3, 4], [0], [1, 2], [3, 4]]
    with pytest.raises(ValueError, match="w indices from"):
        tools.sefa_directions(generator, [5])  # the last toRGB's row has no convolution


def test_sefa_edit_grid_alpha_zero_is_the_original_and_edits_only_chosen_rows(generator):
    _, directions = tools.sefa_directions(generator, [3, 4], k=2)
    w = tools.map_w(generator, np.random.default_rng(0).standard_normal((1, 16)), tf.one_hot([1], 2)).numpy()
    grid = tools.sefa_edit_grid(generator, w, directions, alphas=(-2.0, 0.0, 2.0), layers=[3, 4])
    assert grid.shape == (2, 3, 16, 16, 3)
    original = tools.synthesize(generator, tools.tile_ws(generator, w)).numpy()[0]
    np.testing.assert_allclose(grid[:, 1], np.broadcast_to(original, grid[:, 1].shape), atol=1e-6)
    assert np.abs(grid[0, 2] - original).mean() > 1e-3
    ws = np.tile(w[:, None], [1, generator.num_ws, 1])
    ws[:, [3, 4]] += 2.0 * directions[0]
    manual = tools.synthesize(generator, tf.constant(ws)).numpy()[0]
    np.testing.assert_allclose(grid[0, 2], manual, atol=1e-5)


def test_projector_recovers_an_image_the_generator_made(generator, perceptual):
    labels = np.array([0, 1, 1])
    z = np.random.default_rng(7).standard_normal((3, 16)).astype("float32")
    true_w = tools.map_w(generator, z, tf.one_hot(labels, 2))
    target = tools.synthesize(generator, tools.tile_ws(generator, true_w)).numpy()
    result = tools.project(generator, target, perceptual, steps=120, labels=labels, progress=False,
                           w_avg_samples=500, batch_size=2)
    assert result["ws"].shape == (3, generator.num_ws, 16) and result["history"].shape == (120, 3)
    assert np.all(result["distances"] < 0.5 * result["start_distances"])
    means, _ = tools.w_statistics(generator, 500)
    start_images = tools.synthesize(generator, tools.tile_ws(generator, means[labels])).numpy()
    start_mse = np.mean((start_images - target) ** 2, axis=(1, 2, 3))
    final_mse = np.mean((result["images"] - target) ** 2, axis=(1, 2, 3))
    # The ruler here is an untrained 2-block CNN, a poor perceptual metric: every projection gets closer to its
    # target in pixels too, on average by more than 3x, and the best one lands on the target.
    assert np.all(final_mse < start_mse) and final_mse.mean() < 0.3 * start_mse.mean(), (final_mse, start_mse)
    assert final_mse.min() < 0.01 * start_mse.mean()
    # w space: every row of a projected ws is the same w
    np.testing.assert_allclose(result["ws"], np.broadcast_to(result["ws"][:, :1], result["ws"].shape))


def test_projector_w_plus_and_a_plain_distance(generator):
    z = np.random.default_rng(3).standard_normal((2, 16)).astype("float32")
    target = tools.synthesize(generator, tools.tile_ws(generator, tools.map_w(generator, z, tf.one_hot([0, 1], 2))))

    def l2(a, b):
        return tf.reduce_mean(tf.square(a - b), axis=[1, 2, 3])

    result = tools.project(generator, target.numpy(), l2, steps=40, space="w+", progress=False, w_avg_samples=200)
    assert np.all(result["distances"] < 0.5 * result["start_distances"])
    assert np.abs(result["ws"][:, 0] - result["ws"][:, -1]).max() > 0  # rows are free in w+
    with pytest.raises(ValueError, match=r"`targets` must be \[N, 16, 16, 3\]"):
        tools.project(generator, np.zeros((1, 8, 8, 3)), l2, steps=1)


def test_schedules_follow_nvidia_projector():
    assert tools.learning_rate_schedule(0, 1000) == 0.0
    assert tools.learning_rate_schedule(25, 1000) == pytest.approx(0.05)  # half-way up the 5% ramp
    assert tools.learning_rate_schedule(500, 1000) == pytest.approx(0.1)
    assert tools.learning_rate_schedule(875, 1000) == pytest.approx(0.05)  # half-way down the 25% cosine
    assert tools.noise_scale(0, 1000, 2.0) == pytest.approx(0.1)
    assert tools.noise_scale(375, 1000, 2.0) == pytest.approx(0.1 * 0.25)
    assert tools.noise_scale(750, 1000, 2.0) == 0.0


def test_projection_audit_flags_exactly_the_planted_copy():
    rng = np.random.default_rng(0)
    n, k = 12, 5
    real = rng.normal(size=(n, 6))
    # by default projection i sits next to real i+1, so real i's nearest projection is not its own
    proj = np.roll(real, -1, axis=0) + 0.05 * rng.normal(size=(n, 6))
    proj[1] = rng.normal(size=6)  # (keeps real 2's neighbourhood free)
    proj[k] = real[k]  # the planted copy: a projection identical to its real image
    proj[2] = real[2] + 0.3 * rng.normal(size=6)  # own projection nearest, but not below Q1
    for i in (3, 4):  # own projection very close (below Q1), but a generated image is closer still
        proj[i] = real[i] + 0.02 * rng.normal(size=6)
    generated = np.stack([2.0 * real[3], 3.0 * real[4], rng.normal(size=6)])  # cosine distance 0 to reals 3, 4
    audit = tools.projection_audit(real, proj, generated)
    own = np.array([p["distance"] for p in audit["per_image"]])
    assert audit["threshold"] == pytest.approx(np.percentile(own, 25))
    assert own[k] == pytest.approx(0.0, abs=1e-12) and own[3] < audit["threshold"] and own[4] < audit["threshold"]
    assert audit["per_image"][2]["nn_kind"] == "own projection" and own[2] >= audit["threshold"]
    assert [audit["per_image"][i]["nn_kind"] for i in (3, 4)] == ["generated", "generated"]
    assert [audit["per_image"][i]["nn_index"] for i in (3, 4)] == [0, 1]
    assert audit["flagged_indices"] == [k] and audit["n_flagged"] == 1 and audit["n_generated"] == 3
    assert [p["flagged"] for p in audit["per_image"]] == [i == k for i in range(n)]
    assert audit["likely_copy_fraction"] == pytest.approx(1 / n)
    assert audit["summary"]["median"] == pytest.approx(np.median(own))
    np.testing.assert_allclose(np.diag(tools.cosine_distances(real, proj)), own, atol=1e-12)
    # an exact tie with a generated image: the own projection wins and the copy stays flagged
    tie = tools.projection_audit(real, proj, np.stack([4.0 * real[k]]))
    assert k in tie["flagged_indices"] and tie["per_image"][k]["nn_kind"] == "own projection"
    with pytest.raises(ValueError, match="same shape"):
        tools.projection_audit(real, proj[:-1])
