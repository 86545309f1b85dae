"""keras-medgan benchmarks: one command that measures, with the machine named.

\b
Usage:
  python tools/bench.py pipeline [--data DIR] [--image-size 256] [--num-images 1000] [--batch-size 64]
                                 [--repeats 3] [--json out.json]
  python tools/bench.py dermgan [--image-size 256] [--batch-sizes 1,4] [--precision float32,mixed_bfloat16]
                                [--jit/--no-jit] [--upsampling resize_conv] [--steps 10] [--warmup 3] [--json out.json]

``pipeline`` times ``keras_medgan.data.pipelines.make_dataset`` over a schema-v1
dataset (by default a demo-derm dataset written at ``--image-size`` into a temporary
folder): decoded images per second on a cold pass (parse + decode + resize, no
cache) and on a cached pass (decoded images served from memory). It reports the
median of ``--repeats`` passes.

``dermgan`` times one DermGAN ``train_step`` (D step then G step, all four G loss
terms) on a fixed random batch: the first call (tracing) on its own, then the
median over ``--steps`` counted steps after ``--warmup``; it reports s/step,
images/s and peak host memory (and peak GPU memory on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from keras_medgan.config import DataConfig  # noqa: E402
from keras_medgan.data import demo, pipelines, schema  # noqa: E402


def machine() -> dict:
    """CPU model, cores, GPUs and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu, "cores": os.cpu_count(), "gpus": gpus, "tensorflow": tf.__version__,
            "python": platform.python_version()}


def _images_per_second(ds, batches: int | None = None) -> tuple[float, int]:
    start, n = time.perf_counter(), 0
    for i, batch in enumerate(ds):
        n += int(batch["image"].shape[0])
        if batches is not None and i + 1 >= batches:
            break
    return n / (time.perf_counter() - start), n


def bench_pipeline(args) -> dict:
    tmp = None
    data = args.data
    if data is None:
        tmp = tempfile.TemporaryDirectory(prefix="medgan-bench-")
        data = os.path.join(tmp.name, "demo-derm")
        t0 = time.perf_counter()
        demo.write_demo_dataset("demo-derm", data, num_images=args.num_images, image_size=args.image_size,
                                val_fraction=0.0, test_fraction=0.0, shards=8)
        print(f"wrote {args.num_images} demo-derm images at {args.image_size} px in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    info = schema.read_dataset_info(data)
    n_train = info.num_examples("train")
    cold, cached = [], []
    for _ in range(args.repeats):
        cfg = DataConfig(data_dir=data, image_size=args.image_size, batch_size=args.batch_size, cache=False,
                         repeat=False, drop_remainder=False, shuffle_buffer=0)
        cold.append(_images_per_second(pipelines.make_dataset(cfg, "train"))[0])
    cfg = DataConfig(data_dir=data, image_size=args.image_size, batch_size=args.batch_size, cache=True, repeat=True,
                     shuffle_buffer=1024)
    ds = pipelines.make_dataset(cfg, "train")
    epoch_batches = max(1, n_train // args.batch_size)
    it = iter(ds)
    _images_per_second(it, epoch_batches)  # fills the cache
    for _ in range(args.repeats):
        cached.append(_images_per_second(it, epoch_batches)[0])
    if tmp is not None:
        tmp.cleanup()
    return {
        "benchmark": "pipeline",
        "image_size": args.image_size,
        "images": n_train,
        "batch_size": args.batch_size,
        "format": info.image_format,
        "cold_images_per_s": round(statistics.median(cold), 1),
        "cached_images_per_s": round(statistics.median(cached), 1),
        "cold_runs": [round(v, 1) for v in cold],
        "cached_runs": [round(v, 1) for v in cached],
    }


def _peak_host_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_dermgan_step(image_size: int, batch_size: int, precision: str, jit: bool, upsampling: str, steps: int,
                       warmup: int, base_filters: int = 64) -> dict:
    """Times DermGAN train steps in a fresh Keras session under ``precision``."""
    import keras
    import numpy as np

    from keras_medgan.data import semantic_maps as sm
    from keras_medgan.gans import DermGAN
    from keras_medgan.networks.patch_discriminator import patch_discriminator
    from keras_medgan.networks.unet_generator import unet_generator

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    gan = DermGAN(unet_generator(image_size, base_filters=base_filters, upsampling=upsampling),
                  patch_discriminator(image_size, base_filters=base_filters))
    gan.compile(keras.optimizers.Adam(2e-4, beta_1=0.5), keras.optimizers.Adam(2e-4, beta_1=0.5), jit_compile=jit)
    rng = np.random.default_rng(0)
    boxes = np.tile(np.array([[[0.3, 0.3, 0.6, 0.7]]], np.float32), (batch_size, 1, 1))
    maps = sm.semantic_map(tf.fill([batch_size], 3), boxes, tf.zeros([batch_size, 1], tf.int32),
                           tf.ones([batch_size], tf.int32), 8, image_size)
    batch = {"semantic_map": maps,
             "image": tf.constant(rng.uniform(-1, 1, (batch_size, image_size, image_size, 3)), tf.float32)}
    step = tf.function(gan.train_step, jit_compile=jit, reduce_retracing=True)
    t0 = time.perf_counter()
    logs = step(batch)
    float(logs["loss/g/total"])
    first = time.perf_counter() - t0
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        logs = step(batch)
        float(logs["loss/g/total"])  # wait for the step to finish
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    out = {"benchmark": "dermgan_train_step", "image_size": image_size, "batch_size": batch_size,
           "precision": precision, "jit": jit, "upsampling": upsampling, "base_filters": base_filters,
           "first_step_s": round(first, 3), "median_step_s": round(median, 4),
           "images_per_s": round(batch_size / median, 2), "steps": steps, "warmup": warmup,
           "peak_host_mb": round(_peak_host_mb(), 1)}
    if tf.config.list_physical_devices("GPU"):
        out["peak_gpu_mb"] = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    keras.mixed_precision.set_global_policy("float32")
    return out


def markdown_steps(results: list, mach: dict) -> str:
    gpu = ", ".join(mach["gpus"]) or "none"
    lines = [f"Machine: {mach['cpu']}, {mach['cores']} cores, GPU: {gpu}, TensorFlow {mach['tensorflow']}", "",
             "| model | size | batch | precision | XLA | first step (s) | median s/step | images/s | peak host MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| DermGAN ({r['upsampling']}, base {r['base_filters']}) | {r['image_size']} | {r['batch_size']} "
                     f"| {r['precision']} | {r['jit']} | {r['first_step_s']} | {r['median_step_s']} "
                     f"| {r['images_per_s']} | {r['peak_host_mb']} |")
    return "\n".join(lines)


def markdown(result: dict, mach: dict) -> str:
    gpu = ", ".join(mach["gpus"]) or "none"
    return "\n".join([
        f"Machine: {mach['cpu']}, {mach['cores']} cores, GPU: {gpu}, TensorFlow {mach['tensorflow']}",
        "",
        "| benchmark | image size | images | batch | cold (img/s) | cached (img/s) |",
        "|---|---|---|---|---|---|",
        f"| input pipeline ({result['format']}) | {result['image_size']} | {result['images']} | {result['batch_size']} "
        f"| {result['cold_images_per_s']} | {result['cached_images_per_s']} |",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\\b")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pipeline", help="decoded images per second from TFRecords, cold and cached")
    p.add_argument("--data", default=None, help="a schema-v1 dataset; default: a demo-derm dataset made for the run")
    p.add_argument("--image-size", type=int, default=256, help="image side in pixels (default 256)")
    p.add_argument("--num-images", type=int, default=1000, help="images in the generated dataset (default 1000)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the median is reported (default 3)")
    p.add_argument("--json", default=None, help="also write the result as JSON to this file")
    d = sub.add_parser("dermgan", help="DermGAN train-step time")
    d.add_argument("--image-size", type=int, default=256, help="image side (default 256)")
    d.add_argument("--batch-sizes", default="1,4", help="comma-separated batch sizes (default 1,4)")
    d.add_argument("--precision", default="float32,mixed_bfloat16",
                   help="comma-separated: float32, mixed_bfloat16, mixed_float16 (default float32,mixed_bfloat16)")
    d.add_argument("--jit", dest="jit", action="store_true", default=False, help="compile with XLA")
    d.add_argument("--no-jit", dest="jit", action="store_false", help="no XLA (default)")
    d.add_argument("--upsampling", default="resize_conv", choices=["resize_conv", "transpose"])
    d.add_argument("--base-filters", type=int, default=64, help="U-Net ngf / PatchGAN ndf (default 64)")
    d.add_argument("--steps", type=int, default=10, help="counted steps (default 10)")
    d.add_argument("--warmup", type=int, default=3, help="uncounted steps after the first (default 3)")
    d.add_argument("--json", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    mach = machine()
    if args.what == "pipeline":
        result = bench_pipeline(args)
        result["machine"] = mach
        print(markdown(result, mach))
    else:
        rows = []
        for precision in args.precision.split(","):
            for bs in (int(b) for b in args.batch_sizes.split(",")):
                rows.append(bench_dermgan_step(args.image_size, bs, precision.strip(), args.jit, args.upsampling,
                                               args.steps, args.warmup, args.base_filters))
                print(json.dumps(rows[-1]), file=sys.stderr)
        result = {"results": rows, "machine": mach}
        print(markdown_steps(rows, mach))
    if args.json:
        schema.write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
