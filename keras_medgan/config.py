"""Frozen configuration dataclasses shared by recipes, with validation.

Every field is checked in ``__post_init__`` so a bad value fails before anything
heavy starts, with a message that names the field and the value received.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

RESIZE_METHODS = ("stretch", "pad", "crop")


def _check(condition: bool, cls: str, field: str, value, why: str) -> None:
    if not condition:
        raise ValueError(f"{cls}.{field} {why}. Received: {field}={value!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How a recipe reads a schema-v1 dataset (see ``keras_medgan.data.pipelines.make_dataset``).

    Args:
        data_dir: str. Dataset folder written by `medgan-data` (holds ``dataset.json``).
        image_size: int. Side of the square images the model sees.
        channels: int or None. 1 or 3; None keeps the stored channel count.
        resize: str. ``stretch``, ``pad`` (letterbox) or ``crop`` (fill + centre crop)
            when stored images are not ``image_size`` square.
        batch_size: int. The global batch size (split over replicas under tf.distribute).
        shuffle_buffer: int. Shuffle buffer in examples; 0 disables shuffling.
        cache: bool. Cache decoded, resized images in memory (when they fit).
        repeat: bool. Repeat forever (training); False gives one pass (evaluation).
        drop_remainder: bool. Drop the last partial batch (static shapes for XLA / tf.distribute).
        max_boxes: int. Boxes per image are padded / truncated to this many.
        deterministic: bool. Same order every run for a given ``seed`` (slower).
        seed: int. Seed for shuffling.
        classes: tuple of str. Read only images of these classes (names from ``dataset.json``), renumbered
            0..len-1 in this order; unlabeled images and other classes are left out. Empty = every image with the
            dataset's own numbering.
    """

    data_dir: str = ""
    image_size: int = 64
    channels: Optional[int] = None
    resize: str = "stretch"
    batch_size: int = 16
    shuffle_buffer: int = 2048
    cache: bool = True
    repeat: bool = True
    drop_remainder: bool = True
    max_boxes: int = 8
    deterministic: bool = False
    seed: int = 0
    classes: tuple = ()

    def __post_init__(self):
        name = type(self).__name__
        if isinstance(self.classes, list):
            object.__setattr__(self, "classes", tuple(self.classes))
        _check(isinstance(self.classes, tuple) and all(isinstance(c, str) and c for c in self.classes)
               and len(set(self.classes)) == len(self.classes), name, "classes", self.classes,
               "must be distinct class names (empty = all classes)")
        _check(isinstance(self.image_size, int) and self.image_size >= 8, name, "image_size", self.image_size,
               "must be an integer >= 8")
        _check(self.channels in (None, 1, 3), name, "channels", self.channels, "must be 1, 3 or None")
        _check(self.resize in RESIZE_METHODS, name, "resize", self.resize, f"must be one of {RESIZE_METHODS}")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, name, "batch_size", self.batch_size,
               "must be an integer >= 1")
        _check(isinstance(self.shuffle_buffer, int) and self.shuffle_buffer >= 0, name, "shuffle_buffer",
               self.shuffle_buffer, "must be an integer >= 0")
        _check(isinstance(self.max_boxes, int) and self.max_boxes >= 1, name, "max_boxes", self.max_boxes,
               "must be an integer >= 1")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a recipe trains: length, logging, checkpoints, precision, distribution.

    Args:
        steps: int. Total training steps (generator updates).
        log_every: int. Steps between TensorBoard scalar writes and progress updates.
        sample_every: int. Steps between sample grids (TensorBoard and ``samples/``).
        checkpoint_every: int. Steps between checkpoints (also the unit of resume).
        keep_checkpoints: int. How many recent checkpoints to keep.
        precision: str. ``auto``, ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        jit: bool. Compile the train step with XLA (forced off under MirroredStrategy).
        strategy: str. ``auto``, ``default``, ``mirrored`` or ``multiworker``.
        seed: int. Seeds weights, noise and data order.
        deterministic: bool. Bit-exact reruns and resumes: TF op determinism and a deterministic input
            pipeline (slower; meant for float32 on CPU).
    """

    steps: int = 1000
    log_every: int = 50
    sample_every: int = 250
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    precision: str = "auto"
    jit: bool = False
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        name = type(self).__name__
        for field in ("steps", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, field)
            _check(isinstance(value, int) and value >= 1, name, field, value, "must be an integer >= 1")
        _check(self.precision in ("auto", "float32", "mixed_float16", "mixed_bfloat16"), name, "precision",
               self.precision, "must be one of ('auto', 'float32', 'mixed_float16', 'mixed_bfloat16')")
        _check(self.strategy in ("auto", "default", "mirrored", "multiworker"), name, "strategy", self.strategy,
               "must be one of ('auto', 'default', 'mirrored', 'multiworker')")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How a recipe judges its generator (``keras_medgan.metrics``), during and after training.

    Args:
        features: str. Feature extractor: ``classifier:auto`` (a domain classifier trained on the real training
            split and cached; offline; the demo presets' ruler), ``classifier:PATH.keras`` or ``inception_v3``.
        metrics: str. Final-evaluation metrics, comma-separated from fid,kid,is,prdc,memorization.
        every: int. Steps between periodic FID/KID evaluations logged as ``metrics/<name>`` (a multiple of
            ``train.log_every``); 0 = only the final evaluation.
        reference_split: str. Real split the generated images are compared with (and whose maps / labels
            condition the generator).
        heldout_split: str. Real split the memorization audit uses as "never seen" images.
        num_images: int. Generated images in the final evaluation; 0 = one per reference image.
        periodic_images: int. Generated images per periodic evaluation; 0 = one per reference image.
        trials: int. FID random-subset trials (DermGAN Table 1: 50).
        bootstrap: int. Bootstrap resamples for the other intervals.
        ruler_epochs: int. Training epochs of the ``classifier:auto`` ruler.
    """

    features: str = "classifier:auto"
    metrics: str = "fid,kid,is,prdc,memorization"
    every: int = 0
    reference_split: str = "val"
    heldout_split: str = "test"
    num_images: int = 0
    periodic_images: int = 0
    trials: int = 50
    bootstrap: int = 100
    ruler_epochs: int = 8

    def __post_init__(self):
        name = type(self).__name__
        for field in ("every", "num_images", "periodic_images", "trials", "bootstrap"):
            value = getattr(self, field)
            _check(isinstance(value, int) and value >= 0, name, field, value, "must be an integer >= 0")
        _check(isinstance(self.ruler_epochs, int) and self.ruler_epochs >= 1, name, "ruler_epochs",
               self.ruler_epochs, "must be an integer >= 1")
        for field in ("reference_split", "heldout_split"):
            _check(getattr(self, field) in ("train", "val", "test"), name, field, getattr(self, field),
                   "must be train, val or test")
        _check(self.reference_split != "train", name, "reference_split", self.reference_split,
               "must be a split the GAN does not train on (val or test)")
        _check(self.features.partition(":")[0] in ("classifier", "inception_v3"), name, "features", self.features,
               "must be classifier:auto, classifier:PATH or inception_v3")
        known = ("fid", "kid", "is", "prdc", "memorization")
        unknown = [m for m in self.metrics.split(",") if m.strip() and m.strip() not in known]
        _check(not unknown and self.metrics.strip() != "", name, "metrics", self.metrics,
               f"must be a comma-separated list from {','.join(known)}")


class ConfigError(ValueError):
    """A configuration key or value that does not fit the recipe's config."""


def to_dict(cfg) -> dict:
    """A nested config dataclass as plain JSON-able dicts."""
    return dataclasses.asdict(cfg)


def _coerce(value, current, where: str):
    """Converts ``value`` (from TOML, JSON or a --set string) to the type of the field's current value."""
    if isinstance(value, str) and not isinstance(current, str):
        text = value.strip()
        if text.lower() in ("none", "null"):
            return None
        if isinstance(current, bool):
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{where} must be true or false. Received: {value!r}")
        try:
            if isinstance(current, int):
                return int(text)
            if isinstance(current, float):
                return float(text)
            if current is None:
                for cast in (int, float):
                    try:
                        return cast(text)
                    except ValueError:
                        pass
                return text
        except ValueError:
            raise ConfigError(f"{where} must be a {type(current).__name__}. Received: {value!r}") from None
        if isinstance(current, (list, tuple)):
            return type(current)(v.strip() for v in text.split(",") if v.strip())
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def replace(cfg, updates: dict, where: str = ""):
    """A copy of nested config ``cfg`` with ``updates`` (nested dicts) applied; unknown keys raise ``ConfigError``."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in updates.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            raise ConfigError(f"unknown config key `{path}`. Known keys here: {sorted(fields)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"`{path}` is a section; give keys such as {path}.<key>=value. Received: {value!r}")
            changes[key] = replace(current, value, path)
        else:
            changes[key] = _coerce(value, current, f"`{path}`")
    try:
        return dataclasses.replace(cfg, **changes)
    except ValueError as e:
        raise ConfigError(str(e)) from e


def parse_overrides(items) -> dict:
    """``["train.steps=10", "loss.lambda_l1=50"]`` -> nested dict ``{"train": {"steps": "10"}, ...}``."""
    nested: dict = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--set expects section.key=value. Received: {item!r}")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def load_toml(path: str) -> dict:
    """Reads a TOML config file into nested dicts (clear error when missing or malformed)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path!r} is not valid TOML: {e}") from None
