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
import tensorflow as tf

from keras_medgan import config as config_lib
from keras_medgan import distribute
from keras_medgan.callbacks import (ResumableCheckpoint, SampleGrid, StopOnNaN, TensorBoardScalars, latest_checkpoint,
                                    restore_checkpoint)
from keras_medgan.data import schema
from keras_medgan.metrics.features import FeatureExtractorError

RUNS_ROOT_ENV = "KERAS_MEDGAN_RUNS"
_RUN_RE = re.compile(r"^(\d{5})-")


class RecipeError(RuntimeError):
    """A failure the user can fix; the recipe prints it and exits with status 1."""


def build_parser(prog: str, description: str, presets, changeable=("train.steps",)) -> argparse.ArgumentParser:
    """The shared recipe command line; ``changeable``: the keys ``--resume`` accepts with ``--set``."""
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
                             f"Only {' or '.join(changeable)} may be changed (with --set) when resuming.")
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


def resume_config(run_dir: str, get_config: Callable, args, changeable=("train.steps",)):
    """The run's saved config with ``--set`` applied, refusing any change but the keys in ``changeable`` (the
    training length)."""
    saved = load_run_config(run_dir, get_config)
    if args.config or args.data:
        raise config_lib.ConfigError(f"--config and --data cannot change a run being resumed; its settings come from "
                                     f"{run_dir}/config.json")
    cfg = config_lib.replace(saved, config_lib.parse_overrides(args.overrides))
    before, after = _flatten(config_lib.to_dict(saved)), _flatten(config_lib.to_dict(cfg))
    changed = sorted(k for k in after if after[k] != before.get(k) and k not in changeable)
    if changed:
        raise config_lib.ConfigError(f"when resuming only {' or '.join(changeable)} may change; these differ from "
                                     f"{run_dir}/config.json: {', '.join(f'{k}={after[k]!r}' for k in changed)}")
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


@dataclasses.dataclass
class Runtime:
    """How a run executes: the dtype policy, the ``tf.distribute`` strategy and whether steps use XLA."""

    policy: str
    strategy: tf.distribute.Strategy
    jit: bool


def start_run(parser: argparse.ArgumentParser, args, get_config: Callable, recipe: str,
              config_updates: Callable | None = None, changeable=("train.steps",)):
    """Resolves the config of a new or resumed run from the command line.

    Returns:
        ``(cfg, run_dir, checkpoint)``: ``run_dir`` is None for a new run without ``--run-dir``; ``checkpoint``
        is the one to resume from (None for a new run). ``cfg`` is None after ``--dry-run`` printed it.
        Config errors exit through ``parser.error`` (status 2); a resume without a checkpoint raises
        ``RecipeError``.
    """
    try:
        if args.resume:
            run_dir = args.run_dir or latest_run_dir(recipe)
            if run_dir is None:
                raise config_lib.ConfigError(f"--resume: no run found under {runs_root()}/{recipe}; pass --run-dir.")
            cfg = resume_config(run_dir, get_config, args, changeable)
        else:
            run_dir = args.run_dir
            cfg = resolve_config(get_config, args)
        if config_updates is not None:
            cfg = config_updates(cfg, args)
        if cfg.data.data_dir:
            check_data_dir(cfg.data.data_dir)
    except (config_lib.ConfigError, ValueError) as e:
        parser.error(str(e))
    if args.dry_run:
        print(json.dumps(config_lib.to_dict(cfg), indent=2))
        return None, run_dir, None
    ckpt = None
    if args.resume:
        ckpt = latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        if ckpt is None:
            raise RecipeError(f"{run_dir} has no checkpoint to resume from; start a new run instead.")
    elif run_dir and os.path.exists(os.path.join(run_dir, "config.json")):
        raise RecipeError(f"{run_dir} already holds a run; continue it with --resume or pass a new --run-dir "
                          "(nothing was changed).")
    return cfg, run_dir, ckpt


def setup_runtime(cfg) -> Runtime:
    """Seeds everything, sets determinism, the dtype policy, the strategy and XLA from ``cfg.train``."""
    keras.utils.set_random_seed(cfg.train.seed)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = distribute.set_precision(cfg.train.precision)
    strategy = distribute.select_strategy(cfg.train.strategy)
    return Runtime(policy, strategy, distribute.resolve_jit(cfg.train.jit, strategy))


def prepare_run_dir(run_dir: str | None, checkpoint: str | None, recipe: str, cfg) -> str:
    """Creates the run folder of a new run (numbered when ``run_dir`` is None) and writes ``config.json``."""
    if checkpoint is None:
        run_dir = run_dir or new_run_dir(recipe, cfg.name)
        os.makedirs(run_dir, exist_ok=True)
    schema.write_json_atomic(os.path.join(run_dir, "config.json"), config_lib.to_dict(cfg))
    return run_dir


def restore_for_resume(checkpoint: str | None, groups: dict, run_dir: str) -> int:
    """Restores ``groups`` from ``checkpoint`` and returns its step (0 for a new run, ``checkpoint`` None)."""
    if checkpoint is None:
        return 0
    step = int(restore_checkpoint(checkpoint, groups)["step"])
    print(f"resuming {run_dir} from {os.path.basename(checkpoint)} at step {step}")
    return step


def train_data_config(cfg):
    """``cfg.data`` seeded by ``train.seed`` and deterministic when ``train.deterministic`` asks for it."""
    return dataclasses.replace(cfg.data, seed=cfg.train.seed,
                               deterministic=cfg.data.deterministic or cfg.train.deterministic)


def print_run_summary(run_dir: str, fit: FitResult) -> None:
    print(f"\nrun directory: {run_dir}\n  report: {os.path.join(run_dir, 'report.md')}\n  samples: {fit.last_sample}"
          f"\n  tensorboard --logdir {os.path.join(run_dir, 'tensorboard')}")


def config_markdown(cfg) -> str:
    """The config as a JSON code block (TensorBoard's text tab)."""
    return "```json\n" + json.dumps(config_lib.to_dict(cfg), indent=2) + "\n```"


def runtime_lines(cfg, fit: FitResult, runtime: Runtime, report_dir: str) -> str:
    """The training, time, checkpoint and samples bullets of a ``report.md``."""
    steps = fit.end_step - fit.start_step

    def rel(path):
        return os.path.relpath(path, report_dir) if path else "none"

    return (f"- Training: steps {fit.start_step} -> {fit.end_step} at batch {cfg.data.batch_size}; precision "
            f"`{runtime.policy}`;\n  strategy `{type(runtime.strategy).__name__}` "
            f"({runtime.strategy.num_replicas_in_sync} replica(s)); XLA {runtime.jit}\n"
            f"- Time: {fit.seconds:.1f} s for {steps} steps ({fit.seconds / max(steps, 1):.3f} s/step including "
            "logging,\n  sampling and checkpoints)\n"
            f"- Last checkpoint: `{rel(fit.last_checkpoint)}`\n"
            f"- Sample grid: `{rel(fit.last_sample)}`")


def run_variants(train_fn: Callable[[list], int], out: str, variants, base_argv: list, result_file: str) -> dict:
    """Trains one run per variant in ``out/<key>/`` (ablations and sweeps), resuming interrupted ones.

    A variant whose folder already holds ``result_file`` and ``report.md`` is finished and kept; one with a
    ``config.json`` is resumed; the others start with ``base_argv`` plus the variant's ``--set`` overrides.

    Args:
        train_fn: the recipe's training command, ``argv -> exit status``.
        out: the study folder.
        variants: sequence of ``(key, label, overrides)``.
        base_argv: arguments every new variant gets (preset, data, precision, shared ``--set``).
        result_file: the file a finished variant has written (e.g. ``evaluation.json``).

    Returns:
        ``{key: run_dir}`` in the order given. Raises ``RecipeError`` when a variant fails.
    """
    runs = {}
    for key, label, overrides in variants:
        run_dir = os.path.join(out, key)
        if os.path.isfile(os.path.join(run_dir, result_file)) and os.path.isfile(os.path.join(run_dir, "report.md")):
            print(f"== {key}: already trained and evaluated ({run_dir})")
            status = 0
        elif os.path.isfile(os.path.join(run_dir, "config.json")):
            print(f"== {key}: resuming {run_dir}")
            status = train_fn(["--run-dir", run_dir, "--resume"])
        else:
            print(f"== {key}: {label}")
            status = train_fn([*base_argv, "--run-dir", run_dir, *[a for o in overrides for a in ("--set", o)]])
        if status:
            raise RecipeError(f"variant {key!r} failed (exit status {status}); fix the cause and continue with "
                              f"--out {out} --resume")
        runs[key] = run_dir
    return runs


def study_folder(args, recipe: str) -> str:
    """The ``--out`` folder of an ablation or sweep (new and numbered unless given); refuses to overwrite."""
    if args.resume and not args.out:
        raise config_lib.ConfigError("--resume needs --out (the folder to continue)")
    if args.out and os.path.isdir(args.out) and os.listdir(args.out) and not args.resume:
        raise RecipeError(f"{args.out} is not empty; continue it with --resume or choose another --out")
    out = args.out or new_run_dir(recipe, args.preset)
    os.makedirs(out, exist_ok=True)
    return out


def guarded(fn: Callable[..., int], *args) -> int:
    """Runs a recipe entry point; a user-fixable error becomes one message on stderr and exit status 1."""
    try:
        return fn(*args)
    except (config_lib.ConfigError, RecipeError, FileNotFoundError, schema.SchemaError, FeatureExtractorError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
