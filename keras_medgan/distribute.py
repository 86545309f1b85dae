"""Choosing the distribution strategy, the precision policy and XLA, as DESIGN.md fixes them.

- Strategy: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set, ``MirroredStrategy``
  over all visible GPUs when there are several, else the default (one-device) strategy.
- Precision ``auto``: ``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU with
  AVX512_BF16 or AMX (pix2pix trains 2.4x faster than float32 there; float16 is 3.6x
  slower on CPU), else ``float32``.
- XLA (``jit_compile``) fails under MirroredStrategy on TF 2.21, so it is forced off
  there and passed explicitly (never ``"auto"``) elsewhere.
"""

from __future__ import annotations

import json
import logging
import os

import keras
import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")

log = logging.getLogger(__name__)


def cpu_supports_bfloat16() -> bool:
    """True when /proc/cpuinfo lists AVX512_BF16 or AMX-BF16 (fast bfloat16 matmuls on CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_precision(precision: str = "auto") -> str:
    """The Keras dtype policy name for ``precision`` (``auto`` picks by hardware)."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "auto":
        return precision
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_supports_bfloat16() else "float32"


def set_precision(precision: str = "auto") -> str:
    """Resolves and sets the global Keras dtype policy; returns the policy name."""
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def select_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``kind`` (see the module docstring for ``auto``)."""
    if kind not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={kind!r}")
    if kind == "auto":
        if os.environ.get("TF_CONFIG"):
            kind = "multiworker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multiworker":
        try:
            json.loads(os.environ.get("TF_CONFIG", "{}"))
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e}); see the README section on multi-worker training.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_mirrored(strategy: tf.distribute.Strategy) -> bool:
    """True for (multi-worker) mirrored strategies, where XLA and steps_per_execution > 1 fail on TF 2.21."""
    return isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy))


def resolve_jit(jit: bool, strategy: tf.distribute.Strategy) -> bool:
    """``jit`` unless ``strategy`` is mirrored, where XLA fails on TF 2.21 (then False, with a warning)."""
    if jit and is_mirrored(strategy):
        log.warning("jit_compile is not supported under %s on this TensorFlow; training without XLA.",
                    type(strategy).__name__)
        return False
    return bool(jit)


def wrap_for_loss_scaling(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """Wraps an optimizer in ``LossScaleOptimizer`` when the global policy is ``mixed_float16``."""
    if keras.mixed_precision.global_policy().name == "mixed_float16" and not isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
