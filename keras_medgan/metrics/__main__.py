"""Command line of the metrics suite: ``python -m keras_medgan.metrics <command>``.

\b
Commands:
    evaluate          FID / KID / IS / precision-recall-density-coverage / memorization of generated images
    train-classifier  train the domain classifier used as the feature ruler (classifier:PATH)
    compare           put several evaluate results side by side (refuses mixed feature extractors)
    select-checkpoint pick a run's checkpoint by FID, preferring later ones within 0.3 (critical review Sec. 3.2)

Example:
    python -m keras_medgan.metrics evaluate --real data/derm:val --fake synth/dataset \\
        --features classifier:auto --metrics fid,kid,is,prdc,memorization --trials 50 --out report.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_medgan.data import schema  # noqa: E402
from keras_medgan.io_utils import atomic_open  # noqa: E402
from keras_medgan.metrics import evaluate as ev  # noqa: E402
from keras_medgan.metrics import registry, sources  # noqa: E402
from keras_medgan.metrics.features import FeatureExtractorError  # noqa: E402


class CLIError(RuntimeError):
    """A user-fixable problem: printed as one line, exit status 1."""


def _evaluate_parser(sub):
    p = sub.add_parser(
        "evaluate", help="Evaluate generated images against real ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Computes the requested metrics with confidence intervals, prints a table and writes JSON that "
                    "records the extractor, resolution, resize filter, sample counts, reference split, seed and "
                    "trials. Real-image features are cached (by a hash of every setting that changes them) under "
                    "$KERAS_MEDGAN_CACHE/features.\n\nGrey images are repeated to 3 channels for inception_v3.")
    p.add_argument("--real", required=True, metavar="DATASET[:split]",
                   help="Reference real images: a keras-medgan dataset folder and split (default split: val), or "
                        "a folder of images. Use a split the GAN did not train on.")
    p.add_argument("--fake", required=True, metavar="DATASET[:split]|IMAGE_DIR",
                   help="Generated images: a dataset written by a recipe's generate command (default split: train) "
                        "or a folder of PNG/JPEG files.")
    p.add_argument("--features", default="classifier:auto",
                   help="Feature extractor: classifier:auto (default; a domain classifier trained on the real "
                        "dataset's train split and cached; works offline), classifier:PATH.keras, inception_v3 "
                        "(ImageNet weights downloaded by Keras) or inception_v3:WEIGHTS.h5.")
    p.add_argument("--metrics", default="fid,kid,is,prdc",
                   help=f"Comma-separated, from {','.join(registry.METRIC_NAMES)}. Default: fid,kid,is,prdc.")
    p.add_argument("--trials", type=int, default=50,
                   help="Random-subset trials for the FID interval (mean ± 1.96 std, DermGAN Table 1). Default: 50.")
    p.add_argument("--subset-fraction", type=float, default=0.8, help="Share of each set per trial. Default: 0.8.")
    p.add_argument("--bootstrap", type=int, default=100,
                   help="Bootstrap resamples for the FID, IS, PRDC and memorization intervals; 0 turns them off. "
                        "Default: 100.")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets. Default: 100.")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size. Default: 1000.")
    p.add_argument("--k", type=int, default=5, help="Neighbourhood size for PRDC. Default: 5.")
    p.add_argument("--resolution", type=int, default=None,
                   help="Side both sets are read at before feature extraction. Default: the generated images' size.")
    p.add_argument("--max-real", type=int, default=None, help="Use at most this many real images (first N).")
    p.add_argument("--max-fake", type=int, default=None, help="Use at most this many generated images (first N).")
    p.add_argument("--train", default=None, metavar="DATASET[:split]",
                   help="Memorization: the GAN's training images. Default: the --real dataset's train split.")
    p.add_argument("--heldout", default=None, metavar="DATASET[:split]",
                   help="Memorization: real images the GAN never saw. Default: the --real split (or test when "
                        "--real is the train split).")
    p.add_argument("--percentile", type=float, default=1.0,
                   help="Memorization: held-out NN-distance percentile below which a sample is a likely copy. "
                        "Default: 1.")
    p.add_argument("--seed", type=int, default=0, help="Seed of subsets, bootstraps and KID. Default: 0.")
    p.add_argument("--batch-size", type=int, default=64, help="Feature-extraction batch size. Default: 64.")
    p.add_argument("--out", default=None, metavar="REPORT.json", help="Write the result here (atomically).")
    p.add_argument("--contact-sheet", default=None, metavar="PNG",
                   help="Memorization: where to draw the closest pairs. Default: beside --out.")
    p.add_argument("--no-cache", action="store_true", help="Do not read or write the real-feature cache.")
    p.add_argument("--quiet", action="store_true", help="No progress bars.")


def _real_dataset_split(text: str, split: str) -> sources.ImageSource:
    src = sources.parse_source(text, default_split=split)
    if src.kind != "dataset":
        raise CLIError(f"{text!r} must be a keras-medgan dataset folder for this role")
    return src


def _real_features(extractor, source, resolution, args):
    """Features of the reference set: cached for dataset splits (unless --no-cache), unreadable files listed."""
    if not args.no_cache and source.kind == "dataset":
        return sources.cached_source_features(extractor, source, resolution, args.max_real,
                                              batch_size=args.batch_size, verbose=not args.quiet)
    skipped = []
    fs = sources.source_features(extractor, source, resolution, args.max_real, args.batch_size, not args.quiet,
                                 skipped)
    for path, reason in skipped:
        print(f"skipped unreadable image {path}: {reason}", file=sys.stderr)
    return fs


def cmd_evaluate(args) -> int:
    metrics = registry.parse_metrics(args.metrics)
    real_src = sources.parse_source(args.real, default_split="val")
    fake_src = sources.parse_source(args.fake, default_split="train")
    if "memorization" in metrics and real_src.kind != "dataset" and (args.train is None or args.heldout is None):
        raise CLIError("memorization needs --train DATASET:split and --heldout DATASET:split when --real is an "
                       "image folder")
    resolution = args.resolution or sources.source_resolution(fake_src)
    data_dir = real_src.path if real_src.kind == "dataset" else None
    extractor = registry.get_extractor(args.features, data_dir=data_dir)
    print(f"features: {extractor.name} ({extractor.weights}), resolution {resolution} px")
    real = _real_features(extractor, real_src, resolution, args)
    fake_skipped = []
    fake = sources.source_features(extractor, fake_src, resolution, args.max_fake, args.batch_size, not args.quiet,
                                   fake_skipped)
    for path, reason in fake_skipped:
        print(f"skipped unreadable image {path}: {reason}", file=sys.stderr)
    train = heldout = train_src = None
    if "memorization" in metrics:
        train_src = _real_dataset_split(args.train or f"{real_src.path}:train", "train")
        if args.heldout:
            heldout_src = _real_dataset_split(args.heldout, "test")
        elif real_src.kind == "dataset" and real_src.split != "train":
            heldout_src = real_src
        else:
            heldout_src = sources.ImageSource("dataset", train_src.path, "test")
        reader = sources.source_features if args.no_cache else sources.cached_source_features
        train = reader(extractor, train_src, resolution, None, batch_size=args.batch_size, verbose=not args.quiet)
        heldout = real if heldout_src == real_src else reader(extractor, heldout_src, resolution, None,
                                                              batch_size=args.batch_size, verbose=not args.quiet)
    class_names = schema.read_dataset_info(real_src.path).class_names if real_src.kind == "dataset" else None
    settings = ev.EvalSettings(metrics=metrics, trials=args.trials, subset_fraction=args.subset_fraction,
                               bootstrap=args.bootstrap, kid_subsets=args.kid_subsets,
                               kid_subset_size=args.kid_subset_size, k=args.k, seed=args.seed,
                               memorization_percentile=args.percentile)
    result, report = ev.evaluate_features(
        real, fake, extractor.record(), settings, class_names=class_names, train=train, heldout=heldout,
        extra={"skipped_fake_images": [p for p, _ in fake_skipped], "command": " ".join(sys.argv)})
    if report is not None:
        from keras_medgan.metrics.memorization import copy_contact_sheet

        sheet = args.contact_sheet or (os.path.splitext(args.out)[0] + "-closest-pairs.png" if args.out else None)
        if sheet:
            pairs = report.closest_pairs(16)
            gen_images = sources.sparse_images(fake_src, [g for g, _, _ in pairs], len(fake), resolution)
            train_images = sources.sparse_images(train_src, [t for _, t, _ in pairs], len(train), resolution)
            copy_contact_sheet(gen_images, train_images, report, sheet, n=len(pairs))
            result["memorization"]["contact_sheet"] = os.path.abspath(sheet)
    print()
    print(ev.format_table(result))
    if args.out:
        schema.write_json_atomic(args.out, result)
        print(f"\nwrote {args.out}")
    return 0


def cmd_train_classifier(args) -> int:
    from keras_medgan.metrics.domain_classifier import RulerSettings, train_domain_classifier

    schema.read_dataset_info(args.data)
    settings = RulerSettings(image_size=args.image_size, epochs=args.epochs, batch_size=args.batch_size,
                             seed=args.seed)
    record = train_domain_classifier(args.data, args.out, settings)
    print(f"wrote {args.out} (validation accuracy {record['val_accuracy']}); use --features classifier:{args.out}")
    return 0


def _load_result(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CLIError(f"{path}: cannot read an evaluate result ({e})") from None
    if "settings" not in result or "extractor" not in result.get("settings", {}):
        raise CLIError(f"{path} is not a result of `python -m keras_medgan.metrics evaluate`")
    return result


def cmd_compare(args) -> int:
    results = {os.path.basename(p): _load_result(p) for p in args.results}
    table = ev.compare(results)
    print(table)
    if args.out:
        with atomic_open(args.out, "w", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


def cmd_select_checkpoint(args) -> int:
    from keras_medgan.metrics.intervals import select_checkpoint

    path = os.path.join(args.run, "metrics.jsonl")
    if not os.path.isfile(path):
        raise CLIError(f"{args.run} has no metrics.jsonl; is it a run directory?")
    scores = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if args.metric in row:
                scores[int(row["step"])] = float(row[args.metric])
    ckpt_dir = os.path.join(args.run, "checkpoints")
    names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
    available = {int(m.group(1)): os.path.join(ckpt_dir, n) for n in names if (m := re.match(r"^ckpt-(\d+)\.npz$", n))}
    candidates = {s: v for s, v in scores.items() if s in available}
    if not candidates:
        raise CLIError(f"no step of {args.run} has both a {args.metric} value in metrics.jsonl and a kept checkpoint; "
                       "train with periodic evaluation (eval.every) and keep more checkpoints")
    step = select_checkpoint(candidates, args.tolerance)
    for s in sorted(candidates):
        print(f"{'->' if s == step else '  '} step {s:>8}  {args.metric} {candidates[s]:.3f}")
    print(available[step])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m keras_medgan.metrics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _evaluate_parser(sub)
    t = sub.add_parser("train-classifier", help="Train the domain-classifier feature ruler on a dataset.",
                       description="Trains a small CNN on the real train split of a dataset (validated on val) and "
                                   "saves it with a JSON record of its settings and accuracy.")
    t.add_argument("--data", required=True, help="keras-medgan dataset folder (labelled).")
    t.add_argument("--out", required=True, help="Output .keras file.")
    t.add_argument("--epochs", type=int, default=8, help="Training epochs. Default: 8.")
    t.add_argument("--image-size", type=int, default=None, help="Input side. Default: stored size, at most 128.")
    t.add_argument("--batch-size", type=int, default=32, help="Batch size. Default: 32.")
    t.add_argument("--seed", type=int, default=0, help="Seed. Default: 0.")
    c = sub.add_parser("compare", help="Markdown table of several evaluate results.",
                       description="Refuses results computed with different feature extractors.")
    c.add_argument("results", nargs="+", help="JSON files written by evaluate --out.")
    c.add_argument("--out", default=None, help="Also write the table to this markdown file.")
    s = sub.add_parser("select-checkpoint", help="Choose a run's checkpoint by FID.",
                       description="Reads a run's metrics.jsonl; among steps with a kept checkpoint, picks the "
                                   "latest whose FID is within --tolerance of the best (critical review, Sec. 3.2).")
    s.add_argument("run", help="Run directory (runs/<recipe>/<00001-name>).")
    s.add_argument("--metric", default="metrics/fid", help="Column of metrics.jsonl. Default: metrics/fid.")
    s.add_argument("--tolerance", type=float, default=0.3, help="FIDs closer than this count as equal. Default: 0.3.")
    return parser


COMMANDS = {"evaluate": cmd_evaluate, "train-classifier": cmd_train_classifier, "compare": cmd_compare,
            "select-checkpoint": cmd_select_checkpoint}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CLIError, FeatureExtractorError, FileNotFoundError, ValueError, schema.SchemaError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
