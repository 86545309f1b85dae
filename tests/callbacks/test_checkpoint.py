import json
import os

import keras
import numpy as np
import pytest

from keras_medgan.callbacks import CheckpointError, latest_checkpoint, restore_checkpoint, save_checkpoint


def _model(units=3):
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units), keras.layers.Dropout(0.5),
                          keras.layers.BatchNormalization()])
    opt = keras.optimizers.Adam()
    opt.build(m.trainable_variables)
    return m, opt


def test_save_restore_round_trip_every_variable(tmp_path):
    m, opt = _model()
    m(np.ones((2, 4)), training=True)
    for v in opt.variables:
        v.assign(np.full(v.shape, 0.5, v.dtype) if v.shape else 7)
    path = save_checkpoint(str(tmp_path), 12, {"m": m.variables, "opt": opt.variables}, {"ada_p": 0.25})
    assert os.path.basename(path) == "ckpt-00000012.npz"
    assert json.load(open(tmp_path / "latest.json")) == {"checkpoint": "ckpt-00000012.npz", "step": 12}
    m2, opt2 = _model()
    meta = restore_checkpoint(path, {"m": m2.variables, "opt": opt2.variables})
    assert meta == {"step": 12, "ada_p": 0.25}
    for a, b in zip(m.variables + opt.variables, m2.variables + opt2.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_keep_prunes_old_checkpoints_and_latest_follows(tmp_path):
    m, _ = _model()
    for step in (1, 2, 3, 4):
        save_checkpoint(str(tmp_path), step, {"m": m.variables}, keep=2)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".npz")) == ["ckpt-00000003.npz", "ckpt-00000004.npz"]
    assert latest_checkpoint(str(tmp_path)).endswith("ckpt-00000004.npz")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_restore_into_a_differently_built_model_fails_clearly(tmp_path):
    m, _ = _model(3)
    path = save_checkpoint(str(tmp_path), 1, {"m": m.variables})
    other, _ = _model(5)
    with pytest.raises(CheckpointError, match="has shape"):
        restore_checkpoint(path, {"m": other.variables})
    with pytest.raises(CheckpointError, match="has no value for"):
        restore_checkpoint(path, {"g": m.variables})
    with pytest.raises(CheckpointError, match="lacks"):
        restore_checkpoint(path, {"m": m.variables[:2]})
    assert restore_checkpoint(path, {"m": m.variables[:2]}, strict=False)["step"] == 1


def test_latest_checkpoint_is_none_for_an_empty_folder(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
