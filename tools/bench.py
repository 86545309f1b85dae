"""keras-medgan benchmarks: one command that measures, with the machine named.

\b
Usage:
  python tools/bench.py pipeline [--data DIR] [--image-size 256] [--num-images 1000] [--batch-size 64]
                                 [--repeats 3] [--json out.json]

``pipeline`` times ``keras_medgan.data.pipelines.make_dataset`` over a schema-v1
dataset (by default a demo-derm dataset written at ``--image-size`` into a temporary
folder): decoded images per second on a cold pass (parse + decode + resize, no
cache) and on a cached pass (decoded images served from memory). It reports the
median of ``--repeats`` passes.
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
    args = parser.parse_args(argv)
    mach = machine()
    result = bench_pipeline(args)
    result["machine"] = mach
    print(markdown(result, mach))
    if args.json:
        schema.write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
