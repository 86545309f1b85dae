"""Feature extractors (``metrics/features.py``) and the extractor / metric registry (``metrics/registry.py``)."""

import os
import shutil

import keras
import numpy as np
import pytest

from keras_medgan.data.demo import write_demo_dataset
from keras_medgan.data.pipelines import make_dataset
from keras_medgan.config import DataConfig
from keras_medgan.metrics import features as F
from keras_medgan.metrics import registry
from keras_medgan.metrics.frechet import frechet_distance
from keras_medgan.networks.classifiers import domain_classifier

SIZE = 16


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_MEDGAN_CACHE", str(tmp_path / "cache"))


def _save_classifier(path, seed=0, channels=3, num_classes=4, size=SIZE, feature_dim=16):
    keras.utils.set_random_seed(seed)
    model = domain_classifier(size, channels, num_classes, filters=(8, 16), feature_dim=feature_dim)
    model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def ruler_path(tmp_path_factory):
    return _save_classifier(tmp_path_factory.mktemp("ruler") / "ruler.keras", seed=1)


@pytest.fixture(scope="module")
def ruler(ruler_path):
    return F.classifier_extractor(ruler_path)


@pytest.fixture(scope="module")
def demo_images(tmp_path_factory):
    """128 demo-derm images, uint8 [128, 16, 16, 3], read back from a real schema-v1 dataset."""
    out = str(tmp_path_factory.mktemp("demo") / "derm")
    write_demo_dataset("demo-derm", out, num_images=128, image_size=SIZE, seed=3, val_fraction=0.0,
                       test_fraction=0.0)
    cfg = DataConfig(data_dir=out, image_size=SIZE, batch_size=128, shuffle_buffer=0, repeat=False,
                     drop_remainder=False, cache=False, deterministic=True)
    images = np.concatenate([b["image"].numpy() for b in make_dataset(cfg, "train")])
    return np.round((images + 1.0) * 127.5).astype(np.uint8)


# ---------------------------------------------------------------------------
# FID with a real extractor
# ---------------------------------------------------------------------------


def test_fid_of_demo_images_against_themselves_is_zero(ruler, demo_images):
    assert demo_images.shape == (128, SIZE, SIZE, 3)
    feats = ruler(demo_images, batch_size=50)  # 50 does not divide 128: the last batch is short
    assert feats.features.shape == (128, 16) and feats.features.dtype == np.float32
    assert frechet_distance(feats.features, feats.features) == pytest.approx(0.0, abs=1e-6)
    # Same images in another batching give the same features.
    np.testing.assert_allclose(ruler(demo_images, batch_size=128).features, feats.features, rtol=1e-5, atol=1e-6)


def test_fid_rises_strictly_with_gaussian_noise(ruler, demo_images):
    clean = demo_images.astype(np.float32) / 127.5 - 1.0
    reference = ruler(demo_images).features
    noise = np.random.default_rng(0).normal(size=clean.shape).astype(np.float32)
    fids = [frechet_distance(reference, ruler(np.clip(clean + sigma * noise, -1.0, 1.0)).features)
            for sigma in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert fids[0] == pytest.approx(0.0, abs=1e-6)  # float input of the same images: same features
    assert all(b > a for a, b in zip(fids, fids[1:])), fids


# ---------------------------------------------------------------------------
# What an extractor records about itself
# ---------------------------------------------------------------------------


def test_describe_and_record_hold_every_fact_that_decides_the_values(ruler, ruler_path):
    d = ruler.describe()
    assert d["name"] == "classifier"
    assert d["weights"] == f"sha256:{F.file_sha256(ruler_path)[:16]}"
    assert d["input_size"] == SIZE and d["channels"] == 3
    assert d["feature_dim"] == 16 and d["num_classes"] == 4
    assert d["resize_filter"] == F.RESIZE_FILTER and "bilinear" in d["resize_filter"]
    record = ruler.record()
    assert {k: record[k] for k in d} == d
    assert record["fingerprint"] == ruler.fingerprint() and len(record["fingerprint"]) == 16
    assert record["source"] == os.path.abspath(ruler_path)


def test_fingerprint_ignores_the_path_but_not_the_model(ruler, ruler_path, tmp_path):
    copy = tmp_path / "elsewhere" / "copy.keras"
    copy.parent.mkdir()
    shutil.copy(ruler_path, copy)
    same = F.classifier_extractor(str(copy))
    assert same.fingerprint() == ruler.fingerprint()
    assert same.record()["source"] != ruler.record()["source"]
    other = F.classifier_extractor(_save_classifier(tmp_path / "other.keras", seed=2))
    assert other.fingerprint() != ruler.fingerprint()
    assert other.describe()["weights"] != ruler.describe()["weights"]


def test_grey_images_equal_their_three_channel_repeat(ruler):
    grey = np.random.default_rng(0).integers(0, 256, size=(6, SIZE, SIZE, 1), dtype=np.uint8)
    a, b = ruler(grey), ruler(np.repeat(grey, 3, axis=-1))
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.probs, b.probs)


def test_rgb_images_become_luma_for_a_one_channel_extractor(tmp_path):
    extractor = F.classifier_extractor(_save_classifier(tmp_path / "grey.keras", channels=1))
    assert extractor.channels == 1
    rgb = np.random.default_rng(1).integers(0, 256, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    luma = F.match_channels(F.quantize(rgb), 1)
    assert tuple(luma.shape) == (4, SIZE, SIZE, 1)
    # Luma is taken after quantisation and is not re-quantised.
    expect = extractor.model(luma / 127.5 - 1.0, training=False)[0].numpy()
    np.testing.assert_allclose(extractor(rgb).features, expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="2 channels"):
        F.match_channels(np.zeros((1, 4, 4, 2), np.float32), 3)


def test_uint8_and_equivalent_float_input_give_identical_features(ruler):
    u8 = np.random.default_rng(2).integers(0, 256, size=(8, SIZE, SIZE, 3), dtype=np.uint8)
    as_float = u8.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(F.quantize(as_float).numpy(), u8.astype(np.float32))
    # Sub-level float noise is quantised away (what saving the image as a PNG would do).
    jitter = as_float + np.float32(0.3 / 127.5)
    np.testing.assert_array_equal(ruler(u8).features, ruler(as_float).features)
    np.testing.assert_array_equal(ruler(u8).features, ruler(jitter).features)


def test_quantize_clips_out_of_range_floats():
    x = np.array([-3.0, -1.0, 0.0, 1.0, 5.0], np.float32)
    np.testing.assert_array_equal(F.quantize(x).numpy(), [0.0, 0.0, 128.0, 255.0, 255.0])


def test_images_are_resized_to_the_extractor_input(ruler):
    small = ruler.preprocess(np.zeros((2, 8, 8, 3), np.uint8))
    assert tuple(small.shape) == (2, SIZE, SIZE, 3)
    np.testing.assert_allclose(small.numpy(), -1.0)
    big = np.full((3, 40, 40, 3), 255, np.uint8)
    out = ruler(big)
    assert out.features.shape == (3, 16) and out.probs.shape == (3, 4)
    # A constant image stays (up to resize rounding) constant.
    np.testing.assert_allclose(out.features, ruler(np.full((3, SIZE, SIZE, 3), 255, np.uint8)).features,
                               rtol=1e-4, atol=1e-5)


def test_mixed_channels_and_sizes_in_one_extractor_give_history_independent_features(ruler_path):
    rng = np.random.default_rng(7)
    grey = rng.integers(0, 256, size=(5, SIZE, SIZE, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(7, SIZE, SIZE, 3), dtype=np.uint8)
    big = rng.integers(0, 256, size=(3, 24, 24, 3), dtype=np.uint8)
    expect = {name: F.classifier_extractor(ruler_path)(x).features for name, x in
              (("grey", grey), ("rgb", rgb), ("big", big))}
    shared = F.classifier_extractor(ruler_path)
    for _ in range(2):  # every call after the first would run a relaxed (retraced) graph
        for name, x in (("rgb", rgb), ("grey", grey), ("big", big), ("rgb", rgb[:2])):
            np.testing.assert_array_equal(shared(x).features, expect[name][:len(x)])


def test_extractor_input_errors(ruler):
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        ruler(np.zeros((SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="no images"):
        ruler.extract(iter([]))


def test_logit_classifier_without_features_layer_uses_penultimate_and_softmax(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    hidden = keras.layers.Dense(6, activation="tanh", name="hidden")(x)
    logits = keras.layers.Dense(3, name="logits")(hidden)  # no softmax
    model = keras.Model(inputs, logits)
    path = str(tmp_path / "logits.keras")
    model.save(path)
    extractor = F.classifier_extractor(path)
    assert extractor.feature_dim == 6 and extractor.num_classes == 3 and extractor.channels == 1
    images = np.random.default_rng(3).integers(0, 256, size=(5, SIZE, SIZE, 1), dtype=np.uint8)
    out = extractor(images)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, rtol=1e-5)
    x = images.astype(np.float32) / 127.5 - 1.0
    embed = keras.Model(inputs, hidden)
    np.testing.assert_allclose(out.features, embed.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.probs, keras.ops.softmax(model.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)


def test_softmax_classifier_probs_are_not_softmaxed_twice(ruler, ruler_path):
    model = keras.saving.load_model(ruler_path)
    images = np.random.default_rng(4).integers(0, 256, size=(4, SIZE, SIZE, 3), dtype=np.uint8)
    expect = model.predict(images.astype(np.float32) / 127.5 - 1.0, verbose=0)
    np.testing.assert_allclose(ruler(images).probs, expect, rtol=1e-5, atol=1e-6)
    assert "probs_from_logits" not in [layer.name for layer in ruler.model.layers]


def test_missing_classifier_file_names_the_train_classifier_command(tmp_path):
    path = str(tmp_path / "nope.keras")
    with pytest.raises(F.FeatureExtractorError) as info:
        F.classifier_extractor(path)
    assert "no such file" in str(info.value)
    assert f"python -m keras_medgan.metrics train-classifier --data DATASET --out {path}" in str(info.value)


def test_unloadable_classifier_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.keras"
    path.write_bytes(b"not a zip file")
    with pytest.raises(F.FeatureExtractorError, match="could not be loaded as a Keras model"):
        F.classifier_extractor(str(path))


def test_two_output_model_is_refused(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2, activation="softmax")(x), keras.layers.Dense(3)(x)])
    path = str(tmp_path / "two.keras")
    model.save(path)
    with pytest.raises(F.FeatureExtractorError, match="2 outputs"):
        F.classifier_extractor(path)


def test_non_square_input_model_is_refused(tmp_path):
    inputs = keras.Input((SIZE, 2 * SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    path = str(tmp_path / "wide.keras")
    model.save(path)
    with pytest.raises(F.FeatureExtractorError, match="square images"):
        F.classifier_extractor(path)


@pytest.fixture
def float32_restored():
    yield
    keras.config.set_dtype_policy("float32")


def test_mixed_precision_global_policy_does_not_change_the_ruler(ruler_path, float32_restored):
    images = np.random.default_rng(5).integers(0, 256, size=(6, SIZE, SIZE, 3), dtype=np.uint8)
    keras.config.set_dtype_policy("float32")
    expect = F.classifier_extractor(ruler_path)(images)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    extractor = F.classifier_extractor(ruler_path)
    assert keras.config.dtype_policy().name == "mixed_bfloat16"  # the caller's policy is restored
    got = extractor(images)
    assert got.features.dtype == np.float32 and got.probs.dtype == np.float32
    np.testing.assert_array_equal(got.features, expect.features)
    np.testing.assert_array_equal(got.probs, expect.probs)


def test_float32_policy_restores_the_previous_policy_even_on_error(float32_restored):
    keras.mixed_precision.set_global_policy("mixed_float16")
    with pytest.raises(RuntimeError):
        with F.float32_policy():
            assert keras.config.dtype_policy().name == "float32"
            raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "mixed_float16"


# ---------------------------------------------------------------------------
# inception_v3
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception():
    """Random-weight InceptionV3, built under a mixed-precision global policy (it must still be float32)."""
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        extractor = F.inception_v3(weights=None)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
    return extractor


def test_inception_v3_shapes_and_description(inception):
    assert inception.name == "inception_v3"
    assert inception.input_size == F.INCEPTION_SIZE == 299
    assert inception.channels == 3 and inception.feature_dim == 2048 and inception.num_classes == 1000
    assert tuple(inception.model.inputs[0].shape) == (None, 299, 299, 3)
    assert "random" in inception.describe()["weights"] and inception.record()["source"] is None
    assert {layer.dtype_policy.compute_dtype for layer in inception.model.layers} == {"float32"}
    grey = np.random.default_rng(6).integers(0, 256, size=(2, SIZE, SIZE, 1), dtype=np.uint8)
    out = inception(grey)
    assert out.features.shape == (2, 2048) and out.probs.shape == (2, 1000)
    assert out.features.dtype == np.float32
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, rtol=1e-4)
    assert np.all(out.features >= 0)  # avg_pool of ReLU activations


def test_inception_v3_offline_message(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(F.FeatureExtractorError) as info:
        F.inception_v3("imagenet")
    message = str(info.value)
    assert "offline" in message and "~/.keras/models" in message and "classifier:" in message
    assert "URL fetch failure" in message and "train-classifier" in message
    assert keras.config.dtype_policy().name == "float32"


def test_inception_v3_missing_weights_file(tmp_path):
    with pytest.raises(F.FeatureExtractorError, match="does not exist"):
        F.inception_v3(str(tmp_path / "weights.h5"))


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def test_registry_lists_and_builds_extractors(ruler_path, ruler):
    assert registry.extractor_names() == ["classifier", "inception_v3"]
    extractor = registry.get_extractor(f"classifier:{ruler_path}")
    assert extractor.name == "classifier" and extractor.fingerprint() == ruler.fingerprint()


def test_unknown_extractor_lists_the_choices():
    with pytest.raises(ValueError) as info:
        registry.get_extractor("resnet50")
    assert "'resnet50'" in str(info.value) and "['classifier', 'inception_v3']" in str(info.value)


def test_classifier_without_a_path_is_refused():
    with pytest.raises(ValueError, match="classifier needs a path"):
        registry.get_extractor("classifier")
    with pytest.raises(ValueError, match="needs a dataset folder"):
        registry.get_extractor("classifier:auto")


def test_classifier_auto_trains_on_the_real_dataset(monkeypatch, ruler_path):
    from keras_medgan.metrics import domain_classifier

    calls = []
    monkeypatch.setattr(domain_classifier, "ensure_domain_classifier", lambda d: calls.append(d) or ruler_path)
    extractor = registry.get_extractor("classifier:auto", data_dir="/data/derm")
    assert calls == ["/data/derm"] and extractor.source == os.path.abspath(ruler_path)


def test_inception_with_missing_local_weights_through_the_registry(tmp_path):
    with pytest.raises(F.FeatureExtractorError, match="does not exist"):
        registry.get_extractor(f"inception_v3:{tmp_path / 'w.h5'}")


def test_register_extractor(monkeypatch):
    monkeypatch.setattr(registry, "_EXTRACTORS", dict(registry._EXTRACTORS))
    seen = []
    registry.register_extractor("mine", lambda argument, data_dir: seen.append((argument, data_dir)) or "built")
    assert "mine" in registry.extractor_names()
    assert registry.get_extractor("mine:a:b", data_dir="d") == "built"
    assert registry.get_extractor("mine") == "built"
    assert seen == [("a:b", "d"), (None, None)]
    with pytest.raises(ValueError, match="cannot contain ':'"):
        registry.register_extractor("bad:name", lambda a, d: None)


def test_parse_metrics_dedups_normalises_and_validates():
    assert registry.parse_metrics("FID, kid,fid,,is") == ("fid", "kid", "is")
    assert registry.parse_metrics(",".join(registry.METRIC_NAMES)) == registry.METRIC_NAMES
    with pytest.raises(ValueError) as info:
        registry.parse_metrics("fid,lpips,ssim")
    assert "['lpips', 'ssim']" in str(info.value) and "fid,kid,is,prdc,memorization" in str(info.value)
    with pytest.raises(ValueError, match="unknown metric"):
        registry.parse_metrics(" , ")
