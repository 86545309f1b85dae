"""``PeriodicEvaluation``: metrics every N epochs to metrics.jsonl and TensorBoard."""

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_medgan.callbacks.evaluation import PeriodicEvaluation


def _fit(tmp_path, every, epochs=5, values=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    calls = []

    def evaluate_fn():
        calls.append(int(model.optimizer.iterations))
        return values(len(calls)) if values else {"fid": 40.0 - len(calls), "kid": np.float32(0.25)}

    callback = PeriodicEvaluation(evaluate_fn, every, lambda: model.optimizer.iterations,
                                  str(tmp_path / "logs" / "eval"), str(tmp_path / "metrics.jsonl"))
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=4, epochs=epochs, callbacks=[callback], verbose=0)  # 2 steps per epoch
    return callback, calls


def _rows(tmp_path):
    with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _scalars(log_dir):
    out = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return {tag: sorted(points) for tag, points in out.items()}


def test_evaluates_every_n_epochs_and_appends_rows(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss/g": 2.0}) + "\n")  # earlier rows stay
    callback, calls = _fit(tmp_path, every=2, epochs=5)
    assert calls == [4, 8]  # after epochs 2 and 4, at their training steps; not after 1, 3 or 5
    rows = _rows(tmp_path)
    assert rows[0] == {"step": 1, "loss/g": 2.0}
    assert [r["step"] for r in rows[1:]] == [4, 8]
    assert [r["metrics/fid"] for r in rows[1:]] == [39.0, 38.0]
    assert all(r["metrics/kid"] == 0.25 and isinstance(r["eval_time_s"], float) for r in rows[1:])
    assert set(rows[1]) == {"step", "metrics/fid", "metrics/kid", "eval_time_s"}
    assert callback.history == rows[1:]
    out = capsys.readouterr().out
    assert "step 4 - metrics/fid 39.0000 - metrics/kid 0.2500" in out and "step 8 - metrics/fid 38.0000" in out


def test_tensorboard_scalars_at_the_training_step(tmp_path):
    _fit(tmp_path, every=1, epochs=3)
    log_dir = str(tmp_path / "logs" / "eval")
    assert glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))
    scalars = _scalars(log_dir)
    assert scalars["metrics/fid"] == [(2, 39.0), (4, 38.0), (6, 37.0)]
    assert scalars["metrics/kid"] == [(2, 0.25), (4, 0.25), (6, 0.25)]


def test_rows_feed_select_checkpoint(tmp_path, capsys):
    from keras_medgan.metrics.__main__ import main

    fids = {1: 12.0, 2: 10.0, 3: 10.2, 4: 11.0}
    _fit(tmp_path, every=1, epochs=4, values=lambda i: {"fid": fids[i]})
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    for step in (2, 4, 6, 8):
        (ckpt / f"ckpt-{step:08d}.npz").write_bytes(b"")
    capsys.readouterr()
    assert main(["select-checkpoint", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(ckpt / "ckpt-00000006.npz")


def test_every_epochs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="every_epochs must be >= 1. Received 0"):
        PeriodicEvaluation(lambda: {}, 0, lambda: 0, str(tmp_path), str(tmp_path / "m.jsonl"))
