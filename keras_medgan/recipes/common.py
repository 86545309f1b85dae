"""What every recipe shares: the command line, config resolution, run directories, and the fit loop.

Command line (DESIGN.md, "Recipes, configs and runs")::

    python -m keras_medgan.recipes.<name> [--preset demo|smoke|paper] [--config file.toml]
        [--set section.key=value ...] [--data DIR] [--run-dir DIR] [--resume]
        [--precision auto|float32|mixed_float16|mixed_bfloat16] [--jit/--no-jit] [--dry-run]

A run lives in ``runs/<recipe>/<00001-name>/`` with ``config.json``, ``checkpoints/``,
``tensorboard/``, ``samples/``, ``metrics.jsonl`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from typing import Callable

import keras
import numpy as np

from keras_medgan import config as config_lib
from keras_medgan.callbacks import ResumableCheckpoint, SampleGrid, StopOnNaN, TensorBoardScalars, latest_checkpoint
from keras_medgan.data import schema
from keras_medgan.metrics.features import FeatureExtractorError

RUNS_ROOT_ENV = "KERAS_MEDGAN_RUNS"
_RUN_RE = re.compile(r"^(\d{5})-")


class RecipeError(RuntimeError):
    """A failure the user can fix; the recipe prints it and exits with status 1."""


def build_parser(prog: str, description: str, presets) -> argparse.ArgumentParser:
    """The shared recipe command line."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=list(presets), default="demo",
                        help="Settings to start from: demo (default; the built-in demo data, minutes on a CPU), smoke "
                             "(a couple of steps, for tests) or paper (the paper's settings; needs --data).")
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="TOML file whose [sections] override the preset (see recipes/<name>/*.toml).")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        help="Override one config value, e.g. --set train.steps=500 --set loss.lambda_roi=0. "
                             "Repeatable; applied after --config.")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="Dataset folder written by medgan-data (holds dataset.json). Default: the preset's "
                             "(demo presets build the procedural demo dataset into a cache folder).")
    parser.add_argument("--run-dir", metavar="DIR", default=None,
                        help="Run directory. Default: a new numbered folder runs/<recipe>/<00001-preset>/ "
                             f"(the runs root is ${RUNS_ROOT_ENV} or ./runs).")
    parser.add_argument("--resume", action="store_true",
                        help="Continue a run exactly where its last checkpoint left off (weights, optimizers, step, "
                             "RNG and data position): the --run-dir given, or the newest run of this recipe. "
                             "Only train.steps may be changed (with --set) when resuming.")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"], default=None,
                        help="Compute precision. auto = float16 on a GPU, bfloat16 on a CPU with AVX512_BF16, "
                             "else float32. Default: the config's train.precision.")
    parser.add_argument("--jit", dest="jit", action="store_true", default=None,
                        help="Compile train steps with XLA (ignored under MirroredStrategy, where it fails on TF 2.21).")
    parser.add_argument("--no-jit", dest="jit", action="store_false", help="Do not use XLA.")
    parser.add_argument("--dry-run", action="store_true",
                        help="Resolve and validate the config, print it, and exit without training.")
    return parser


def resolve_config(get_config: Callable, args, overrides_allowed_on_resume=("train.steps",)):
    """Preset -> --config TOML -> --set -> --data / --precision / --jit, validated; raises ConfigError."""
    cfg = get_config(args.preset)
    if args.config:
        cfg = config_lib.replace(cfg, config_lib.load_toml(args.config))
    cfg = config_lib.replace(cfg, config_lib.parse_overrides(args.overrides))
    updates = {}
    if args.data is not None:
        updates.setdefault("data", {})["data_dir"] = args.data
    if args.precision is not None:
        updates.setdefault("train", {})["precision"] = args.precision
    if args.jit is not None:
        updates.setdefault("train", {})["jit"] = args.jit
    return config_lib.replace(cfg, updates) if updates else cfg


def runs_root() -> str:
    return os.environ.get(RUNS_ROOT_ENV, "runs")


def new_run_dir(recipe: str, name: str, root: str | None = None) -> str:
    """Creates ``<root>/<recipe>/<NNNNN>-<name>`` with the next free number."""
    parent = os.path.join(root or runs_root(), recipe)
    os.makedirs(parent, exist_ok=True)
    while True:
        numbers = [int(m.group(1)) for d in os.listdir(parent) if (m := _RUN_RE.match(d))]
        path = os.path.join(parent, f"{max(numbers, default=0) + 1:05d}-{name}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue


def latest_run_dir(recipe: str, root: str | None = None) -> str | None:
    parent = os.path.join(root or runs_root(), recipe)
    if not os.path.isdir(parent):
        return None
    runs = sorted(d for d in os.listdir(parent) if _RUN_RE.match(d))
    return os.path.join(parent, runs[-1]) if runs else None


def check_data_dir(data_dir: str) -> schema.DatasetInfo:
    """Reads ``dataset.json`` up front so a bad ``--data`` fails before anything heavy starts."""
    try:
        return schema.read_dataset_info(data_dir)
    except (FileNotFoundError, schema.SchemaError) as e:
        raise config_lib.ConfigError(f"data.data_dir={data_dir!r}: {e}") from None


def load_run_config(run_dir: str, get_config: Callable):
    """The config a run was started with: its preset, updated with every value in its ``config.json``."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise RecipeError(f"{run_dir} has no config.json: it is not a keras-medgan run directory. "
                          "Pass the run folder itself (runs/<recipe>/<00001-name>) to --run-dir.")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    return config_lib.replace(get_config(saved.get("preset", "demo")), saved)


def resume_config(run_dir: str, get_config: Callable, args):
    """The run's saved config with ``--set`` applied, refusing any change but ``train.steps``."""
    saved = load_run_config(run_dir, get_config)
    if args.config or args.data:
        raise config_lib.ConfigError(f"--config and --data cannot change a run being resumed; its settings come from "
                                     f"{run_dir}/config.json")
    cfg = config_lib.replace(saved, config_lib.parse_overrides(args.overrides))
    before, after = _flatten(config_lib.to_dict(saved)), _flatten(config_lib.to_dict(cfg))
    changed = sorted(k for k in after if after[k] != before.get(k) and k != "train.steps")
    if changed:
        raise config_lib.ConfigError(f"when resuming only train.steps may change; these differ from {run_dir}/"
                                     f"config.json: {', '.join(f'{k}={after[k]!r}' for k in changed)}")
    return cfg


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class MetricsLog(keras.callbacks.Callback):
    """Appends each fit epoch's logs, with the step and wall time, to ``metrics.jsonl``."""

    def __init__(self, path: str, step_fn):
        super().__init__()
        self.path = path
        self.step_fn = step_fn
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"step": int(self.step_fn()), "time_s": round(time.time() - self.t0, 2)}
        row.update({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


@dataclasses.dataclass
class FitResult:
    """What ``fit_with_checkpoints`` did."""

    start_step: int
    end_step: int
    seconds: float
    history: dict
    last_checkpoint: str | None
    last_sample: str | None


def fit_with_checkpoints(
    model: keras.Model,
    train_ds,
    val_ds,
    train_cfg: config_lib.TrainConfig,
    run_dir: str,
    *,
    start_step: int,
    step_fn: Callable[[], int],
    groups_fn: Callable[[], dict],
    render_fn: Callable[[], list],
    optimizers: dict,
    config_text: str,
    meta_fn: Callable[[], dict] | None = None,
    validation_steps: int = 4,
    verbose: int | str = "auto",
    extra_callbacks=(),
) -> FitResult:
    """Runs ``model.fit`` in epochs of ``train.log_every`` steps from ``start_step`` to ``train.steps``.

    Every epoch logs scalars (TensorBoard and ``metrics.jsonl``); every
    ``sample_every`` steps a sample grid and a validation pass; every
    ``checkpoint_every`` steps (and at the end) an atomic checkpoint; ``extra_callbacks`` (e.g.
    ``PeriodicEvaluation``) run before the checkpoint of the same epoch. Raises
    ``RecipeError`` naming the step and the last good checkpoint when a loss
    becomes NaN or Inf.
    """
    log_every = train_cfg.log_every
    for field in ("sample_every", "checkpoint_every"):
        if getattr(train_cfg, field) % log_every:
            raise config_lib.ConfigError(
                f"train.{field} must be a multiple of train.log_every={log_every}. "
                f"Received: {field}={getattr(train_cfg, field)}")
    if start_step % log_every:
        raise RecipeError(f"cannot resume at step {start_step}: it is not a multiple of train.log_every={log_every}")
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    tb_dir = os.path.join(run_dir, "tensorboard")
    checkpoint = ResumableCheckpoint(ckpt_dir, groups_fn, step_fn, train_cfg.checkpoint_every // log_every,
                                     meta_fn=meta_fn, keep=train_cfg.keep_checkpoints)
    nan_stop = StopOnNaN(step_fn)
    samples = SampleGrid(render_fn, os.path.join(run_dir, "samples"), tb_dir, step_fn,
                         train_cfg.sample_every // log_every)
    callbacks = [nan_stop, TensorBoardScalars(tb_dir, step_fn, optimizers, config_text),
                 MetricsLog(os.path.join(run_dir, "metrics.jsonl"), step_fn), *extra_callbacks, checkpoint, samples]
    epochs = -(-train_cfg.steps // log_every)
    initial_epoch = start_step // log_every
    t0 = time.time()
    history = {}
    if initial_epoch < epochs:
        if start_step == 0:
            samples.write()  # the untrained generator, for comparison
        h = model.fit(train_ds, steps_per_epoch=log_every, epochs=epochs, initial_epoch=initial_epoch,
                      validation_data=val_ds, validation_steps=validation_steps if val_ds is not None else None,
                      validation_freq=train_cfg.sample_every // log_every, callbacks=callbacks, verbose=verbose,
                      shuffle=False)
        history = h.history
    seconds = time.time() - t0
    if nan_stop.message:
        last = latest_checkpoint(ckpt_dir)
        raise RecipeError(f"training stopped: {nan_stop.message}. Last good checkpoint: "
                          f"{last or 'none (no checkpoint was written yet)'}. Lower the learning rates, check the "
                          "data, then resume with --resume.")
    last = checkpoint.save()
    if samples.last_path is None or not samples.last_path.endswith(f"{int(step_fn()):08d}.png"):
        samples.write()
    return FitResult(start_step, int(step_fn()), seconds, history, last, samples.last_path)


def guarded(fn: Callable[..., int], *args) -> int:
    """Runs a recipe entry point; a user-fixable error becomes one message on stderr and exit status 1."""
    try:
        return fn(*args)
    except (config_lib.ConfigError, RecipeError, FileNotFoundError, schema.SchemaError, FeatureExtractorError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
