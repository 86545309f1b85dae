import argparse
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan import config as config_lib
from keras_medgan.callbacks import latest_checkpoint
from keras_medgan.config import TrainConfig
from keras_medgan.recipes import common
from keras_medgan.recipes.dermgan import get_config


def test_replace_coerces_strings_and_rejects_unknown_keys():
    cfg = get_config("smoke")
    new = config_lib.replace(cfg, config_lib.parse_overrides(
        ["train.steps=7", "loss.lambda_fm=0", "train.jit=true", "data.channels=3"]))
    assert (new.train.steps, new.loss.lambda_fm, new.train.jit, new.data.channels) == (7, 0.0, True, 3)
    with pytest.raises(config_lib.ConfigError, match=r"unknown config key `train.stepz`"):
        config_lib.replace(cfg, {"train": {"stepz": 1}})
    with pytest.raises(config_lib.ConfigError, match="must be true or false"):
        config_lib.replace(cfg, config_lib.parse_overrides(["train.jit=maybe"]))
    with pytest.raises(config_lib.ConfigError, match="section.key=value"):
        config_lib.parse_overrides(["train.steps"])
    with pytest.raises(config_lib.ConfigError, match="TrainConfig.steps must be an integer >= 1. Received: steps=0"):
        config_lib.replace(cfg, {"train": {"steps": 0}})


def test_load_toml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 1")
    with pytest.raises(config_lib.ConfigError, match="not valid TOML"):
        config_lib.load_toml(str(bad))
    with pytest.raises(config_lib.ConfigError, match="not found"):
        config_lib.load_toml(str(tmp_path / "none.toml"))


def test_run_dirs_are_numbered_and_latest_is_found(tmp_path):
    a = common.new_run_dir("r", "demo", root=str(tmp_path))
    b = common.new_run_dir("r", "paper", root=str(tmp_path))
    assert os.path.basename(a) == "00001-demo" and os.path.basename(b) == "00002-paper"
    assert common.latest_run_dir("r", root=str(tmp_path)) == b
    assert common.latest_run_dir("other", root=str(tmp_path)) is None


def test_resume_config_only_lets_steps_change(tmp_path):
    cfg = get_config("smoke")
    (tmp_path / "config.json").write_text(json.dumps(config_lib.to_dict(cfg)))
    args = argparse.Namespace(config=None, data=None, overrides=["train.steps=99", "train.seed=0"])
    assert common.resume_config(str(tmp_path), get_config, args).train.steps == 99
    args.overrides = ["loss.lambda_roi=3"]
    with pytest.raises(config_lib.ConfigError, match="only train.steps may change.*loss.lambda_roi=3.0"):
        common.resume_config(str(tmp_path), get_config, args)


class _Blowup(keras.Model):
    """A toy model whose loss turns NaN at step 5."""

    def __init__(self):
        super().__init__()
        self.w = self.add_weight(shape=(), initializer="ones", name="w")
        self.opt = keras.optimizers.SGD(0.0)
        self.opt.build([self.w])
        self.tracker = keras.metrics.Mean(name="loss/toy")

    @property
    def metrics(self):
        return [self.tracker]

    def train_step(self, data):
        self.opt.apply_gradients([(tf.zeros_like(self.w), self.w)])
        step = tf.cast(self.opt.iterations, tf.float32)
        self.tracker.update_state(tf.where(step >= 5.0, np.nan, 1.0))
        return {"loss/toy": self.tracker.result()}


def test_nan_stops_training_and_names_the_last_good_checkpoint(tmp_path):
    model = _Blowup()
    model.compile()
    ds = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
    step_fn = lambda: int(keras.ops.convert_to_numpy(model.opt.iterations))  # noqa: E731
    with pytest.raises(common.RecipeError) as err:
        common.fit_with_checkpoints(
            model, ds, None, TrainConfig(steps=20, log_every=2, sample_every=2, checkpoint_every=2), str(tmp_path),
            start_step=0, step_fn=step_fn, groups_fn=lambda: {"model": model.variables},
            render_fn=lambda: [np.zeros((1, 4, 4, 3), np.uint8)], optimizers={"toy": model.opt}, config_text="x",
            verbose=0)
    message = str(err.value)
    assert "loss/toy became nan at step 5" in message
    assert "ckpt-00000004.npz" in message
    assert latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-00000004.npz")


def test_fit_rejects_intervals_that_are_not_multiples_of_log_every(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="train.sample_every must be a multiple of train.log_every=4"):
        common.fit_with_checkpoints(None, None, None, TrainConfig(log_every=4, sample_every=6, checkpoint_every=8),
                                    str(tmp_path), start_step=0, step_fn=None, groups_fn=None, render_fn=None,
                                    optimizers={}, config_text="")


def test_check_data_dir_names_the_field(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="data.data_dir=.*dataset.json not found"):
        common.check_data_dir(str(tmp_path))
