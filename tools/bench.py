"""keras-medgan benchmarks: one command that measures every training loop, the input pipeline and the
metrics' feature extraction, and names the machine it ran on.

Usage:
  python tools/bench.py --quick                       # everything, small, < 5 min on a 2-core CPU
  python tools/bench.py [--what steps,pipeline,features,peak]
                        [--models dermgan64,dermgan128,dermgan256,cdcgan64,cdcgan128,ucgan128,stylegan32,...]
                        [--precision float32,mixed_bfloat16,mixed_float16] [--jit/--no-jit]
                        [--strategy default|mirrored] [--batch-sizes 1,4] [--base-filters 64]
                        [--steps 10] [--warmup 3] [--profile DIR]
                        [--json bench.json] [--markdown bench.md] [--compare OLD.json]
  python tools/bench.py --compare OLD.json --current NEW.json   # ratios of two earlier runs, no measuring
  python tools/bench.py --models dermgan256 --precision mixed_bfloat16 --reference REF.json
                        # DermGAN vs the PyTorch pix2pix (REF.json from tools/bench_pix2pix_reference.py)

What is timed:
  steps     one ``train_step`` of each GAN on a fixed random batch, wrapped in ``tf.function`` (XLA with
            --jit): the first call (tracing + compilation) on its own, then the median over --steps
            calls after --warmup. DermGAN (resize-conv U-Net + PatchGAN, all four G terms; batches 1, 4;
            ``dermgansim<size>`` times the opt-in simultaneous update rule),
            the paper-001 conditional DCGAN (4 classes, latent 100, transposed convolutions, spectral-norm
            D, Adam 2e-4 / 0.5; batch 64) and the paper-004 UCGAN (unconditional DCGAN G and D, domain
            classifier C with its guidance losses, schedule ((0, 1, 1),); 1-channel X-ray size; batch 12)
            and StyleGAN2-ADA (the recipe's networks: its ``demo`` model up to 64 px, its ``paper`` model
            above; conditional, 2 classes; ADA ``bgc`` at p = 0.2; batch 16 at 32 px, 4 at 256 px). A
            StyleGAN2 minibatch is not one step: the row times G main + D main, times the lazily
            regularised variants (+ path length every 4, + R1 every 16) on their own, and reports the
            amortised minibatch and NVIDIA's sec/kimg (the EMA update, ~7 ms on the host, is not in it).
            GFLOP/step counts the convolutions and matrix products in the traced step graph.
  pipeline  ``make_dataset`` over a demo-derm dataset written for the run: decoded images/s cold
            (parse + decode + resize, no cache) and cached (decoded images from memory).
  features  ``metrics.features`` extractors on 256-px images: InceptionV3 at 299 px (random weights:
            the ImageNet file cannot be downloaded offline, and the architecture, not the weights, sets
            the speed) and the domain-classifier ruler at 128 px; images/s and the share of the time
            spent quantising + resizing.
  peak      a large float32 and bfloat16 (float16 on GPU) matrix product: what the BLAS reaches here,
            the yardstick for the GFLOP/s of the train steps.

Every row records peak host memory during that benchmark (VmHWM, reset per row on Linux), peak GPU
memory on a GPU, and the 1-minute load average before and after it: a row measured on a busy machine
shows it. Results go to --json and --markdown; --compare prints new/old ratios against an earlier JSON;
--reference prints DermGAN's throughput ratio against tools/bench_pix2pix_reference.py's JSON.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import bench_report  # noqa: E402

MODELS = ("dermgan64", "dermgan128", "dermgan256", "cdcgan64", "cdcgan128", "ucgan128", "stylegan32", "stylegan256")
# dermgansim: DermGAN with update_rule="simultaneous" (opt-in; both gradients from one forward pass).
KINDS = ("dermgan", "dermgansim", "cdcgan", "ucgan", "stylegan")
DEFAULT_BATCHES = {"dermgan": (1, 4), "dermgansim": (1, 4), "cdcgan": (64,), "ucgan": (12,),
                   "stylegan": None}  # stylegan: by size
WHATS = ("steps", "pipeline", "features", "peak")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored")
CDCGAN_CLASSES = 4  # paper 001 generates HAM10000 classes; four is enough to time the label path
UCGAN_CLASSES, UCGAN_CHANNELS = 3, 1  # paper 004: chest X-rays (grey), normal / pneumonia / COVID-19
LATENT_DIM = 100
# --quick: every benchmark once, small; about 3 minutes on the 2-core CPU this project is developed on.
QUICK_SKIPS = ("stylegan256",)
QUICK = {"steps": 3, "warmup": 1, "pipeline_images": 128, "pipeline_repeats": 2, "feature_images": 32,
         "peak_size": 2048}


class BenchOptionError(ValueError):
    """A command-line option has a value the benchmark cannot run with."""


# ---------------------------------------------------------------------------------------------- options


def _split(text: str, name: str, cast=str, allowed=None) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise BenchOptionError(f"--{name} is empty")
    out = []
    for item in items:
        try:
            value = cast(item)
        except ValueError:
            raise BenchOptionError(f"--{name}: {item!r} is not a valid {cast.__name__}") from None
        if allowed is not None and value not in allowed:
            raise BenchOptionError(f"--{name}: {item!r} is not one of {', '.join(allowed)}")
        out.append(value)
    return out


def model_spec(name: str) -> tuple:
    """``"dermgan256"`` -> ``("dermgan", 256)``."""
    kind = name.rstrip("0123456789")
    size = name[len(kind):]
    if kind not in KINDS or not size:
        raise BenchOptionError(f"--models: {name!r} is not a model; use {', '.join(KINDS)} followed by the image "
                               f"size, e.g. {', '.join(MODELS)}")
    return kind, int(size)


def resolve_options(args) -> argparse.Namespace:
    """Checks and expands the parsed options; raises ``BenchOptionError`` naming the option and the fix."""
    if args.current and not (args.compare or args.reference):
        raise BenchOptionError("--current NEW.json only makes sense with --compare OLD.json or --reference REF.json")
    for option, path in (("--compare", args.compare), ("--reference", args.reference), ("--current", args.current)):
        if path and not os.path.isfile(path):
            raise BenchOptionError(f"{option}: {path} does not exist")
    if args.current:
        return args
    args.what = _split(args.what, "what", allowed=WHATS)
    args.precision = _split(args.precision, "precision", allowed=PRECISIONS)
    if args.models is None:  # --quick leaves out the 256-px StyleGAN2 (minutes per minibatch on a CPU)
        args.models = ",".join(m for m in MODELS if not (args.quick and m in QUICK_SKIPS))
    args.models = [model_spec(m) for m in _split(args.models, "models")]
    for kind, size in args.models:
        smallest = 32
        if size < smallest or size > 512 or size & (size - 1):
            raise BenchOptionError(f"--models: {kind}{size}: the image size must be a power of two from 32 to 512")
        if kind in ("cdcgan", "ucgan") and size > 256:
            raise BenchOptionError(f"--models: {kind}{size}: the DCGAN networks stop at 256 px")
    if args.batch_sizes is not None:
        args.batch_sizes = _split(args.batch_sizes, "batch-sizes", int)
        if min(args.batch_sizes) < 1:
            raise BenchOptionError(f"--batch-sizes must be >= 1. Received: {args.batch_sizes}")
    for name in ("steps", "base_filters", "pipeline_images", "pipeline_batch", "feature_images", "feature_batch"):
        if getattr(args, name) < 1:
            raise BenchOptionError(f"--{name.replace('_', '-')} must be >= 1. Received: {getattr(args, name)}")
    if args.warmup < 0:
        raise BenchOptionError(f"--warmup must be >= 0. Received: {args.warmup}")
    if args.strategy == "mirrored" and args.jit:
        raise BenchOptionError("--jit cannot be combined with --strategy mirrored: XLA fails under MirroredStrategy "
                               "on TensorFlow 2.21 (DESIGN.md); measure mirrored with --no-jit")
    if args.strategy == "mirrored" and any(kind == "ucgan" for kind, _ in args.models) and "steps" in args.what:
        raise BenchOptionError("--strategy mirrored: the UCGAN refuses multi-replica strategies (its G:D schedule "
                               "updates optimisers inside tf.cond); leave ucgan out of --models")
    return args


def batches_for(kind: str, args, size: int | None = None) -> list:
    if args.batch_sizes:
        return list(args.batch_sizes)
    if kind == "stylegan":  # the recipe's demo batch at demo sizes; a 256-px minibatch of 32 is minutes on a CPU
        return [16] if (size or 0) <= 64 else [4]
    return list(DEFAULT_BATCHES[kind])


# ---------------------------------------------------------------------------------------------- machine


def machine() -> dict:
    """CPU model, cores, bfloat16 support, GPUs and library versions."""
    import keras
    import tensorflow as tf

    from keras_medgan.distribute import cpu_supports_bfloat16

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append(details.get("device_name", gpu.name))
    return {"cpu": cpu, "cores": os.cpu_count(), "avx512_bf16": cpu_supports_bfloat16(), "gpus": gpus,
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


class PeakMemory:
    """Peak host RSS (and GPU memory) inside a ``with`` block.

    On Linux writing 5 to ``/proc/self/clear_refs`` resets the VmHWM high-water mark, so each benchmark
    row gets its own peak; elsewhere the process-lifetime ``ru_maxrss`` is reported (``scope="process"``).
    """

    def __enter__(self):
        import tensorflow as tf

        self.scope = "process"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.scope = "benchmark"
        except OSError:
            pass
        self.start_mb = self._status_mb("VmRSS")
        self.gpu = bool(tf.config.list_physical_devices("GPU"))
        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def _status_mb(field: str) -> float | None:
        try:
            with open("/proc/self/status", encoding="utf-8") as f:
                return next(int(line.split()[1]) / 1024.0 for line in f if line.startswith(field + ":"))
        except (OSError, StopIteration, ValueError):
            return None

    def read(self) -> dict:
        import resource

        import tensorflow as tf

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if self.scope == "benchmark":
            peak = self._status_mb("VmHWM") or peak
        # Memory earlier rows freed may stay with the process, so the start RSS is part of the peak.
        out = {"peak_host_mb": round(peak, 1), "host_mb_at_start": round(self.start_mb or 0.0, 1),
               "peak_host_scope": self.scope}
        if self.gpu:
            out["peak_gpu_mb"] = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
        return out


# ---------------------------------------------------------------------------------------------- GANs


def _adam(lr=2e-4, **kwargs):
    from keras_medgan.optimizers import FusedAdam  # what the recipes train with

    return FusedAdam(lr, beta_1=0.5, **kwargs)


def build_dermgan(size: int, batch_size: int, base_filters: int, update_rule: str = "alternating"):
    """DermGAN as the recipe trains it (resize-conv U-Net, PatchGAN, all four G terms) and one batch."""
    import numpy as np
    import tensorflow as tf

    from keras_medgan.data import semantic_maps as sm
    from keras_medgan.gans import DermGAN
    from keras_medgan.networks.patch_discriminator import patch_discriminator
    from keras_medgan.networks.unet_generator import unet_generator

    n_layers = 3 if size >= 64 else 2  # the 70-px PatchGAN needs >= 24 px; 32-px tests use 2 layers
    gan = DermGAN(unet_generator(size, base_filters=base_filters),
                  patch_discriminator(size, base_filters=base_filters, n_layers=n_layers))
    gan.compile(_adam(), _adam(), update_rule=update_rule)
    boxes = np.tile(np.array([[[0.3, 0.3, 0.6, 0.7]]], np.float32), (batch_size, 1, 1))
    maps = sm.semantic_map(tf.fill([batch_size], 3), boxes, tf.zeros([batch_size, 1], tf.int32),
                           tf.ones([batch_size], tf.int32), 8, size)
    images = np.random.default_rng(0).uniform(-1, 1, (batch_size, size, size, 3)).astype("float32")
    variant = f"resize_conv, base {base_filters}" + (", simultaneous" if update_rule == "simultaneous" else "")
    return gan, {"semantic_map": maps, "image": tf.constant(images)}, variant


def build_dermgan_simultaneous(size: int, batch_size: int, base_filters: int):
    """DermGAN with the opt-in simultaneous update (``DermGAN.compile(update_rule="simultaneous")``)."""
    return build_dermgan(size, batch_size, base_filters, update_rule="simultaneous")


def _noise_batch(batch_size: int, size: int, channels: int, classes: int) -> dict:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    return {"image": tf.constant(rng.uniform(-1, 1, (batch_size, size, size, channels)).astype("float32")),
            "label": tf.constant(np.arange(batch_size) % classes, tf.int32)}


def build_cdcgan(size: int, batch_size: int, base_filters: int):
    """Paper 001's conditional DCGAN: transposed-conv G (BN momentum 0.9, LeakyReLU 0.2), spectral-norm D."""
    from keras_medgan.gans import ConditionalDCGAN
    from keras_medgan.networks.dcgan import dcgan_discriminator, dcgan_generator

    generator = dcgan_generator(size, 3, latent_dim=LATENT_DIM, num_classes=CDCGAN_CLASSES, base_filters=base_filters,
                                upsampling="transpose", bn_momentum=0.9, leaky_slope=0.2)
    discriminator = dcgan_discriminator(size, 3, num_classes=CDCGAN_CLASSES, base_filters=base_filters,
                                        spectral_norm=True)
    gan = ConditionalDCGAN(generator, discriminator, latent_dim=LATENT_DIM, num_classes=CDCGAN_CLASSES, seed=0)
    gan.compile(_adam(), _adam())
    return gan, _noise_batch(batch_size, size, 3, CDCGAN_CLASSES), f"{CDCGAN_CLASSES} classes, base {base_filters}"


def build_ucgan(size: int, batch_size: int, base_filters: int):
    """Paper 004's UCGAN: unconditional DCGAN G and D plus the domain classifier C, one D, C and G update."""
    from keras_medgan.gans.score_guided_gan import ScoreGuidedGAN
    from keras_medgan.networks.classifiers import domain_classifier
    from keras_medgan.networks.dcgan import dcgan_discriminator, dcgan_generator

    gan = ScoreGuidedGAN(
        dcgan_generator(size, UCGAN_CHANNELS, latent_dim=LATENT_DIM, num_classes=0, base_filters=base_filters),
        dcgan_discriminator(size, UCGAN_CHANNELS, num_classes=0, base_filters=base_filters),
        domain_classifier(size, UCGAN_CHANNELS, UCGAN_CLASSES), latent_dim=LATENT_DIM, num_classes=UCGAN_CLASSES,
        seed=0)
    gan.compile(_adam(5e-4, weight_decay=1e-3), _adam(1e-3, weight_decay=1e-3), _adam(5e-4, weight_decay=1e-3),
                schedule=((0, 1, 1),))
    variant = f"grey, {UCGAN_CLASSES} classes, base {base_filters}"
    return gan, _noise_batch(batch_size, size, UCGAN_CHANNELS, UCGAN_CLASSES), variant


STYLEGAN_CLASSES = 2  # paper 003: benign / malignant


def build_stylegan(size: int, batch_size: int, base_filters: int):
    """StyleGAN2-ADA with the recipe's networks (``demo`` model up to 64 px, ``paper`` model above), conditional
    on 2 classes, ADA ``bgc`` at a fixed p = 0.2 so the augmentation runs; ``base_filters`` does not apply."""
    from keras_medgan.recipes import stylegan2_ada as recipe

    cfg = recipe.get_config("smoke" if size <= 16 else "demo" if size <= 64 else "paper")  # smoke: for tests
    cfg = recipe.config_lib.replace(cfg, {"data": {"image_size": size, "batch_size": batch_size,
                                                   "classes": tuple(f"c{i}" for i in range(STYLEGAN_CLASSES))},
                                          "augment": {"p": 0.2, "target": 0.0}})
    gan = recipe.build_model(cfg, 3, False)
    m = cfg.model
    variant = f"{cfg.preset} model, base {m.channel_base} / max {m.channel_max}, w {m.w_dim}, {STYLEGAN_CLASSES} classes"
    return gan, _noise_batch(batch_size, size, 3, STYLEGAN_CLASSES), variant


BUILDERS = {"dermgan": build_dermgan, "dermgansim": build_dermgan_simultaneous, "cdcgan": build_cdcgan,
            "ucgan": build_ucgan, "stylegan": build_stylegan}


def step_function(gan, kind: str, g_reg: bool = False, d_reg: bool = False):
    """The traceable minibatch of a GAN: ``train_step``, or for StyleGAN2-ADA (whose ``train_step`` picks its
    phases on the host) ``train_phases`` with the regularisation phases given."""
    if kind == "stylegan":
        return lambda batch: gan.train_phases(batch, g_reg, d_reg)
    return gan.train_step


def graph_flops(graph) -> float:
    """Floating-point operations of the convolutions and matrix products in a traced graph (2 per MAC),
    including the bodies of ``tf.cond`` / function calls; ops with unknown shapes count 0."""
    seen_functions = set()

    def shape(t):
        dims = t.shape.as_list() if t.shape.rank is not None else None
        return dims if dims and all(d is not None for d in dims) else None

    def count(g) -> float:
        total = 0.0
        for op in g.get_operations():
            try:
                if op.type == "Conv2D":
                    out, w = shape(op.outputs[0]), shape(op.inputs[1])
                    if out and w:
                        total += 2.0 * out[0] * out[1] * out[2] * out[3] * w[0] * w[1] * w[2]
                elif op.type in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):
                    dy = shape(op.inputs[2])
                    w = shape(op.inputs[1]) if op.type == "Conv2DBackpropInput" else shape(op.outputs[0])
                    if dy and w:
                        total += 2.0 * dy[0] * dy[1] * dy[2] * dy[3] * w[0] * w[1] * w[2]
                elif op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
                    out, a = shape(op.outputs[0]), shape(op.inputs[0])
                    if out and a:
                        adj = op.get_attr("transpose_a" if op.type == "MatMul" else "adj_x")
                        k = a[-2] if adj else a[-1]
                        total += 2.0 * k * float(math.prod(out))
            except (ValueError, TypeError):
                continue
            for attr in ("then_branch", "else_branch", "body", "f"):
                try:
                    name = op.get_attr(attr).name
                except (ValueError, AttributeError):
                    continue
                if name in seen_functions:
                    continue
                seen_functions.add(name)
                fn = g._get_function(name) if hasattr(g, "_get_function") else None
                if fn is not None and getattr(fn, "graph", None) is not None:
                    total += count(fn.graph)
        return total

    return count(graph)


def _wait(logs, strategy) -> None:
    """Blocks until the step has run (reads one logged value back to the host)."""
    value = next(iter(strategy.experimental_local_results(logs)[0].values()))
    float(value)


def _time_steps(step, batch, strategy, steps: int, warmup: int, profile_dir: str | None = None) -> tuple:
    """``(first call s, [counted step s], counted CPU s)``: the first call alone, then ``warmup`` uncounted and
    ``steps`` counted calls (the counted ones profiled into ``profile_dir`` when given)."""
    import tensorflow as tf

    t0 = time.perf_counter()
    _wait(step(batch), strategy)
    first = round(time.perf_counter() - t0, 3)
    times, cpu = [], 0.0
    for i in range(warmup + steps):
        if profile_dir and i == warmup:
            tf.profiler.experimental.start(profile_dir)
        t0, c0 = time.perf_counter(), time.process_time()
        _wait(step(batch), strategy)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    if profile_dir:
        tf.profiler.experimental.stop()
    return first, times, cpu


def seconds(value: float) -> float:
    """A time for the JSON, to 4 significant digits: decimal places would lose most of a 5 ms step.

    >>> seconds(0.0047312), seconds(1.234567)
    (0.004731, 1.235)
    """
    return float(f"{value:.4g}")


def amortised_step(main_s: float, with_g_reg_s: float, with_d_reg_s: float, pl_interval: int,
                   r1_interval: int) -> float:
    """StyleGAN2's lazy regularisation (StyleGAN2 Sec. 3.1, ADA code ``G_reg_interval`` / ``D_reg_interval``): the
    path-length phase runs every ``pl_interval`` and R1 every ``r1_interval`` minibatches, so a minibatch costs
    on average ``main + (with G reg - main) / pl_interval + (with D reg - main) / r1_interval`` (a negative
    difference, timing noise, counts as 0).

    >>> amortised_step(0.3, 0.5, 0.46, 4, 16)
    0.36
    """
    extra = max(with_g_reg_s - main_s, 0.0) / pl_interval + max(with_d_reg_s - main_s, 0.0) / r1_interval
    return round(main_s + extra, 6)


def _stylegan_amortised(gan, batch, strategy, compile_step, main_s: float, batch_size: int, steps: int,
                        warmup: int) -> dict:
    """Times the minibatch with each regularisation phase, the amortised minibatch (``amortised_step``) and
    NVIDIA's ``sec/kimg``: that minibatch per thousand real images."""
    out = {}
    for name, g_reg, d_reg in (("g_reg", True, False), ("d_reg", False, True)):
        _, times, _ = _time_steps(compile_step(step_function(gan, "stylegan", g_reg, d_reg)), batch, strategy,
                                  max(1, steps // 2), min(warmup, 1))
        out[f"median_step_with_{name}_s"] = seconds(statistics.median(times))
    amortised = amortised_step(main_s, out["median_step_with_g_reg_s"], out["median_step_with_d_reg_s"],
                               gan.pl_interval, gan.r1_interval)
    out.update({"amortised_step_s": seconds(amortised), "sec_per_kimg": round(amortised / batch_size * 1000, 2)})
    return out


def bench_train_step(kind: str, size: int, batch_size: int, precision: str, jit: bool, strategy_kind: str,
                     steps: int, warmup: int, base_filters: int = 64, profile_dir: str | None = None) -> dict:
    """Times one GAN's ``train_step`` in a fresh Keras session under ``precision``; see the module docstring."""
    import keras
    import tensorflow as tf

    from keras_medgan.distribute import resolve_jit, select_strategy

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    strategy = select_strategy(strategy_kind)
    jit = resolve_jit(jit, strategy)
    row = {"benchmark": "train_step", "model": kind, "image_size": size, "batch_size": batch_size,
           "precision": precision, "jit": jit, "strategy": strategy_kind, "replicas": strategy.num_replicas_in_sync,
           "steps": steps, "warmup": warmup, "load_1m": [load_1m()]}
    try:
        with PeakMemory() as memory:
            with strategy.scope():
                gan, batch, row["variant"] = BUILDERS[kind](size, batch_size, base_filters)
            replicas = strategy.num_replicas_in_sync
            if batch_size % replicas:
                raise BenchOptionError(f"batch {batch_size} does not split over {replicas} replicas")
            mirrored = replicas > 1 or strategy_kind == "mirrored"
            if mirrored:
                per = batch_size // replicas
                batch = strategy.experimental_distribute_values_from_function(
                    lambda ctx: tf.nest.map_structure(
                        lambda t: t[ctx.replica_id_in_sync_group * per:(ctx.replica_id_in_sync_group + 1) * per],
                        batch))

            def compile_step(fn):
                return tf.function((lambda b: strategy.run(fn, args=(b,))) if mirrored else fn, jit_compile=jit)

            step = compile_step(step_function(gan, kind))
            row["first_step_s"], times, cpu = _time_steps(step, batch, strategy, steps, warmup, profile_dir)
            row["traces"] = step.experimental_get_tracing_count()  # 1: no retracing between steps
            if kind == "stylegan":
                row.update(_stylegan_amortised(gan, batch, strategy, compile_step, statistics.median(times),
                                               batch_size, steps, warmup))
            row.update(memory.read())
        median = statistics.median(times)
        row.update({"median_step_s": seconds(median), "images_per_s": round(batch_size / median, 2),
                    "min_step_s": seconds(min(times)),
                    # CPU seconds of all this process's threads per step: less sensitive than wall time to
                    # other jobs on the machine (their load shows in load_1m).
                    "cpu_s_per_step": seconds(cpu / steps),
                    "step_times_s": [seconds(t) for t in times]})
        try:
            flops = graph_flops(step.get_concrete_function(batch).graph)
        except Exception:  # FLOPs are a nice-to-have; never lose the timing over them
            flops = 0.0
        if flops:
            row["gflop_per_step"] = round(flops / 1e9, 2)
            row["gflops_achieved"] = round(flops / 1e9 / median, 1)
    except Exception as e:  # a failing configuration is a finding, not the end of the run
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    row["load_1m"].append(load_1m())
    return row


# ---------------------------------------------------------------------------------------------- pipeline


def _images_per_second(ds, batches: int | None = None) -> float:
    start, n = time.perf_counter(), 0
    for i, batch in enumerate(ds):
        n += int(batch["image"].shape[0])
        if batches is not None and i + 1 >= batches:
            break
    return n / (time.perf_counter() - start)


def bench_pipeline(image_size: int, num_images: int, batch_size: int, repeats: int, data: str | None = None) -> dict:
    """Decoded images/s from ``make_dataset``: cold (no cache) and cached, medians of ``repeats`` passes."""
    from keras_medgan.config import DataConfig
    from keras_medgan.data import demo, pipelines, schema

    row = {"benchmark": "pipeline", "image_size": image_size, "batch_size": batch_size, "load_1m": [load_1m()]}
    with tempfile.TemporaryDirectory(prefix="medgan-bench-") as tmp, PeakMemory() as memory:
        if data is None:
            data = os.path.join(tmp, "demo-derm")
            t0 = time.perf_counter()
            demo.write_demo_dataset("demo-derm", data, num_images=num_images, image_size=image_size,
                                    val_fraction=0.0, test_fraction=0.0, shards=8)
            row["write_s"] = round(time.perf_counter() - t0, 1)
        info = schema.read_dataset_info(data)
        n_train = info.num_examples("train")
        cold = []
        for _ in range(repeats):
            cfg = DataConfig(data_dir=data, image_size=image_size, batch_size=batch_size, cache=False, repeat=False,
                             drop_remainder=False, shuffle_buffer=0)
            cold.append(_images_per_second(pipelines.make_dataset(cfg, "train")))
        cfg = DataConfig(data_dir=data, image_size=image_size, batch_size=batch_size, cache=True, repeat=True,
                         shuffle_buffer=1024)
        it = iter(pipelines.make_dataset(cfg, "train"))
        epoch_batches = max(1, n_train // batch_size)
        _images_per_second(it, epoch_batches)  # fills the cache
        cached = [_images_per_second(it, epoch_batches) for _ in range(repeats)]
        row.update(memory.read())
    row.update({"images": n_train, "format": info.image_format,
                "cold_images_per_s": round(statistics.median(cold), 1),
                "cached_images_per_s": round(statistics.median(cached), 1),
                "cold_runs": [round(v, 1) for v in cold], "cached_runs": [round(v, 1) for v in cached]})
    row["load_1m"].append(load_1m())
    return row


# ---------------------------------------------------------------------------------------------- features


def _extractors(which: tuple) -> list:
    """(extractor, weights note) pairs; both untrained: speed depends on the architecture, not the weights."""
    import keras

    from keras_medgan.metrics.features import FeatureExtractor, float32_policy, inception_v3
    from keras_medgan.networks.classifiers import FEATURES_LAYER, domain_classifier

    out = []
    if "inception_v3" in which:
        out.append((inception_v3(weights=None), "random (ImageNet file not downloadable offline)"))
    if "domain_classifier" in which:
        with float32_policy():
            model = domain_classifier(128, 3, 7)
            wrapped = keras.Model(model.inputs, [model.get_layer(FEATURES_LAYER).output, model.output])
        out.append((FeatureExtractor("classifier", wrapped, 128, 3, "random (untrained ruler)"), "random (untrained)"))
    return out


def bench_features(num_images: int, batch_size: int, source_size: int = 256,
                   which=("inception_v3", "domain_classifier")) -> list:
    """Images/s of each extractor on ``source_size``-px float images, and the share spent preprocessing."""
    import numpy as np
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(-1, 1, (num_images, source_size, source_size, 3)).astype("float32")
    rows = []
    for extractor, weights in _extractors(which):
        row = {"benchmark": "features", "extractor": extractor.name, "weights": weights, "source_size": source_size,
               "input_size": extractor.input_size, "batch_size": batch_size, "images": num_images,
               "load_1m": [load_1m()]}
        with PeakMemory() as memory:
            t0 = time.perf_counter()
            extractor(images[:batch_size], batch_size=batch_size)  # traces
            row["first_batch_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            extractor(images, batch_size=batch_size)
            total = time.perf_counter() - t0
            # The same preprocessing extract() runs, alone: quantise, match channels, antialiased resize.
            t0 = time.perf_counter()
            for i in range(0, num_images, batch_size):
                extractor.preprocess(tf.convert_to_tensor(images[i:i + batch_size])).numpy()
            resize = time.perf_counter() - t0
            row.update(memory.read())
        row.update({"images_per_s": round(num_images / total, 2),
                    "model_images_per_s": round(num_images / max(total - resize, 1e-9), 2),
                    "resize_share": round(resize / total, 4)})
        row["load_1m"].append(load_1m())
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- peak


def bench_matmul_peak(size: int = 4096, repeats: int = 5) -> list:
    """GFLOP/s of a ``size``-square matrix product in float32 and in the fast half precision of the device."""
    import tensorflow as tf

    half = tf.float16 if tf.config.list_physical_devices("GPU") else tf.bfloat16
    rows = []
    for dtype in (tf.float32, half):
        a = tf.random.normal([size, size], dtype=tf.float32)
        a = tf.cast(a, dtype)
        matmul = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.matmul(x, x), tf.float32)))
        float(matmul(a))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            float(matmul(a))
            times.append(time.perf_counter() - t0)
        rows.append({"benchmark": "matmul_peak", "dtype": dtype.name, "size": size,
                     "gflops": round(2 * size**3 / min(times) / 1e9, 1)})
    return rows


# ---------------------------------------------------------------------------------------------- profile


def profile_summary(logdir: str, top: int = 12) -> list:
    """``(op type, milliseconds, share)`` of the TensorFlow op time in a ``tf.profiler`` trace, largest first.

    Sums the host op events (``name:Type``) of the newest ``*.xplane.pb`` under ``logdir``. Ops on
    different threads overlap, so this is where the CPU time goes, not a timeline.
    """
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")), key=os.path.getmtime)
    if not files:
        return []
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    totals = {}
    for plane in space.planes:
        if not (plane.name.startswith("/host:CPU") or plane.name.startswith("/device:GPU")):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" not in name or " " in name or "::" in name:  # op events are "op_name:OpType"
                    continue
                op_name, op_type = name.rsplit(":", 1)
                if not op_name or not op_type or not (op_type[0].isalpha() or op_type[0] == "_"):
                    continue
                totals[op_type] = totals.get(op_type, 0) + event.duration_ps
    grand = sum(totals.values()) or 1
    return [(op, round(ps / 1e9, 1), round(ps / grand, 4))
            for op, ps in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]


# ---------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--quick", action="store_true", help="every benchmark, small (under 5 minutes on a 2-core CPU)")
    add("--what", default=",".join(WHATS), help=f"comma-separated, of {', '.join(WHATS)} (default: all)")
    add("--models", default=None,
        help=f"comma-separated GAN + image size (default: {','.join(MODELS)}; --quick leaves out "
             f"{','.join(QUICK_SKIPS)})")
    add("--precision", default="float32",
        help="comma-separated Keras policies: float32, mixed_bfloat16, mixed_float16 (default float32)")
    add("--jit", action=argparse.BooleanOptionalAction, default=False, help="compile the train step with XLA")
    add("--strategy", default="default", choices=STRATEGIES,
        help="default (one device) or mirrored (MirroredStrategy over the visible devices; no XLA)")
    add("--batch-sizes", default=None,
        help="comma-separated, for every model (default: DermGAN 1,4; cDCGAN 64; UCGAN 12; StyleGAN2-ADA 16 up "
             "to 64 px, 4 above)")
    add("--base-filters", type=int, default=64, help="width of every network (ngf = ndf; default 64)")
    add("--steps", type=int, default=10, help="counted steps (default 10)")
    add("--warmup", type=int, default=3, help="uncounted steps after the first (default 3)")
    add("--pipeline-size", type=int, default=256, help="pipeline image side (default 256)")
    add("--pipeline-images", type=int, default=1000, help="images in the pipeline dataset (default 1000)")
    add("--pipeline-batch", type=int, default=64, help="pipeline batch size (default 64)")
    add("--pipeline-repeats", type=int, default=3, help="timed pipeline passes, median reported (default 3)")
    add("--data", default=None, help="time the pipeline on this schema-v1 dataset instead of a demo one")
    add("--feature-images", type=int, default=128, help="images per extractor (default 128)")
    add("--feature-batch", type=int, default=32, help="extractor batch size (default 32)")
    add("--profile", default=None, metavar="DIR",
        help="write a TensorBoard profiler trace of the counted steps of the first train-step row to DIR and "
             "print where the op time goes")
    add("--json", default="bench.json", help="result file (default bench.json)")
    add("--markdown", default="bench.md", help="markdown table file (default bench.md)")
    add("--compare", default=None, metavar="OLD.json", help="print new/old ratios against an earlier run")
    add("--current", default=None, metavar="NEW.json", help="with --compare or --reference: compare saved files, measure nothing")
    add("--reference", default=None, metavar="REF.json",
        help="print DermGAN's throughput over the PyTorch reference pix2pix's (a JSON file written by "
             "tools/bench_pix2pix_reference.py on the same machine; issue 7's target is 1.3x); with --current, "
             "compare that file instead of measuring")
    return parser


def run(args) -> dict:
    """Runs the selected benchmarks; returns the result document."""
    import keras
    import tensorflow as tf  # noqa: F401  (initialise TF before the first load average is read)

    if args.quick:
        args.steps, args.warmup = min(args.steps, QUICK["steps"]), min(args.warmup, QUICK["warmup"])
        args.pipeline_images = min(args.pipeline_images, QUICK["pipeline_images"])
        args.pipeline_repeats = min(args.pipeline_repeats, QUICK["pipeline_repeats"])
        args.feature_images = min(args.feature_images, QUICK["feature_images"])
    result = {"version": bench_report.RESULT_VERSION, "machine": machine(), "load_1m": {"start": load_1m()},
              "command": "python tools/bench.py " + " ".join(shlex.quote(a) for a in args.argv),
              "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "results": []}
    rows = result["results"]

    def emit(row):
        rows.append(row)
        shown = {k: v for k, v in row.items() if k not in ("step_times_s", "cold_runs", "cached_runs")}
        print(shown, file=sys.stderr, flush=True)

    profile_dir = args.profile
    if "steps" in args.what:
        for kind, size in args.models:
            for precision in args.precision:
                for batch_size in batches_for(kind, args, size):
                    emit(bench_train_step(kind, size, batch_size, precision, args.jit, args.strategy, args.steps,
                                          args.warmup, args.base_filters, profile_dir))
                    if profile_dir:
                        for op, ms, share in profile_summary(profile_dir):
                            print(f"  {op:32s} {ms:10.1f} ms  {share:6.1%}", file=sys.stderr)
                        rows[-1]["profile"] = {"dir": profile_dir, "top_ops": profile_summary(profile_dir)}
                        profile_dir = None
    keras.backend.clear_session()
    if "pipeline" in args.what:
        emit(bench_pipeline(args.pipeline_size, args.pipeline_images, args.pipeline_batch, args.pipeline_repeats,
                            args.data))
    if "features" in args.what:
        for row in bench_features(args.feature_images, args.feature_batch):
            emit(row)
    if "peak" in args.what:
        for row in bench_matmul_peak(QUICK["peak_size"] if args.quick else 4096):
            emit(row)
    result["load_1m"]["end"] = load_1m()
    return result


def _reference_section(result: dict, reference: dict, name: str) -> str:
    rows = bench_report.reference_ratios(result, reference)
    if not rows:
        return (f"No DermGAN row shares an image size and batch size with {name}: run "
                "`--models dermgan256 --batch-sizes 1,4` against the reference's defaults.\n")
    return f"DermGAN vs the PyTorch reference pix2pix ({name}):\n\n" + bench_report.reference_table(rows)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        args = resolve_options(args)
        old = bench_report.load_result(args.compare) if args.compare else None
        reference = bench_report.load_result(args.reference) if args.reference else None
        if args.current:
            new = bench_report.load_result(args.current)
            if old is not None:
                print(bench_report.compare_table(bench_report.compare(old, new), args.compare, args.current), end="")
            if reference is not None:
                print(_reference_section(new, reference, args.reference), end="")
            return 0
    except (BenchOptionError, bench_report.BenchFileError) as e:
        parser.error(str(e))
    from keras_medgan.data import schema

    result = run(args)
    text = bench_report.markdown(result)
    print(text, end="")
    if args.json:
        schema.write_json_atomic(args.json, result)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    if old is not None:
        print("\n" + bench_report.compare_table(bench_report.compare(old, result), args.compare, "this run"), end="")
    if reference is not None:
        print("\n" + _reference_section(result, reference, args.reference), end="")
    print(f"wrote {args.json} and {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
