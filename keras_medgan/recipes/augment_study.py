"""Does synthetic data help a classifier? The critical review's augmentation / anonymization protocol (Bissoto et
al. 2021, Sec. 3, Table 2). Recipe card: ``recipes/augment_study/README.md``.

\b
Demo (no arguments, about 15 minutes on 2 CPU cores): trains a quick conditional DCGAN on demo-derm at 32 px,
generates labelled images from it, then trains a small CNN on the real data alone (1:0) and with 1:1/2 and
1:1 synthetic images, 3 replicates each, scored on demo-derm's test split (in-distribution) and on Fitzpatrick
V-VI patients of an independent demo-derm draw (out-of-distribution):
    python -m keras_medgan.recipes.augment_study
\b
The review's grid (Table 2) on your data, with your GANs' generated datasets:
    python -m keras_medgan.recipes.augment_study --preset paper --config recipes/augment_study/paper.toml \\
        --data data/isic19-mel-vs-benign
\b
Continue a killed study (only the missing models are trained):
    python -m keras_medgan.recipes.augment_study --resume --run-dir runs/augment_study/00001-demo
\b
Writes results.jsonl / results.csv (one row per arm and replicate), summary.json, boxplots.png (review Fig. 2),
f1_per_class.png (DermGAN Fig. 8) and report.md, which says plainly whether any arm beat its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np
from keras_medgan import config as config_lib
from keras_medgan.callbacks import latest_checkpoint
from keras_medgan.config import DataConfig
from keras_medgan.data import demo, schema
from keras_medgan.evaluation import locking, sampling
from keras_medgan.evaluation.augmentation import AugmentationConfig
from keras_medgan.evaluation.classifiers import ClassifierConfig
from keras_medgan.evaluation.report import write_report
from keras_medgan.evaluation.study import SourceConfig, Study, StudyConfig, TestSetConfig
from keras_medgan.evaluation.training import TrainingConfig
from keras_medgan.recipes import cdcgan, common

RECIPE = "augment_study"
PRESETS = ("demo", "smoke", "paper")
PROG = "python -m keras_medgan.recipes.augment_study"
RECIPE_CONFIG = "recipe_config.json"
# A test set whose data_dir is "demo:<kind>:seed=<s>" reads a demo dataset drawn with another seed (new patients).
DEMO_PREFIX = "demo:"
# The quick GAN of the demo: cdcgan's demo preset at 32 px, 1,500 steps (about 3 minutes on 2 CPU cores), with a
# lighter final evaluation; periodic FID off.
DEMO_GAN_ARGS = ("data.image_size=32", "train.steps=1500", "train.sample_every=500", "train.checkpoint_every=500",
                 "eval.every=0", "eval.metrics=fid,kid", "eval.trials=10", "detection.images_per_class=50")
SMOKE_GAN_ARGS = ("data.image_size=32",)


def get_config(preset: str = "demo") -> StudyConfig:
    """The recipe's presets.

    \b
    demo  : python -m keras_medgan.recipes.augment_study
            demo-derm (2,000 images, 32 px), the cdcgan demo's four classes; quick cDCGAN (1,500 steps) -> as
            many images as the 1:1 arm needs; arms 1:0, 1:1/2, 1:1 (random sampling); 3 replicates; small CNN (16-32-64 filters); at most
            20 epochs, plateau patience 3, early stopping 5, TTA 8 (the review's 100 / 10 / 22 / 50, shortened to
            fit 15 minutes); test sets: demo-derm test split (in) and Fitzpatrick V-VI of a demo-derm draw with
            seed 1 (out).
    smoke : the same at 200 images, a 4-step GAN, 2 replicates, one epoch; for tests.
    paper : the review's classifier setup (Sec. 3.2): InceptionV3 (for Inception-v4) at 299 px with ImageNet
            weights when available, SGD 1e-3 / 0.9 / wd 1e-3, plateau /10 after 10 epochs down to 1e-5, batch 32,
            100 epochs, early stopping 22, TTA 50, 10 replicates. The grid, test sets and sources come from
            --config recipes/augment_study/paper.toml (Table 2 and Table 3) and --data.
    """
    demo_tests = (TestSetConfig(name="demo-test", split="test", distribution="in",
                                note="demo-derm test split (patients never trained on)"),
                  TestSetConfig(name="dark-skin", data_dir=f"{DEMO_PREFIX}demo-derm:seed=1", split="train+val+test",
                                distribution="out", fitzpatrick=(5, 6),
                                note="Fitzpatrick V-VI patients of an independent demo-derm draw (seed 1)"))
    groups = ({"mode": "augmentation", "sources": ["cdcgan"], "ratios": [0.5, 1.0]},)
    if preset == "demo":
        return StudyConfig(
            preset="demo", name="demo", data=DataConfig(image_size=32, classes=cdcgan.DEMO_CLASSES),
            classifier=ClassifierConfig(filters=(16, 32, 64)),
            training=TrainingConfig(max_epochs=20, plateau_patience=3, early_stopping_patience=5, tta=8),
            replicates=3, bootstrap=1000, test_sets=demo_tests,
            sources=(SourceConfig(name="cdcgan", gan_args=DEMO_GAN_ARGS),), groups=groups)
    if preset == "smoke":
        return StudyConfig(
            preset="smoke", name="smoke", data=DataConfig(image_size=32, classes=cdcgan.DEMO_CLASSES),
            demo_num_images=200, classifier=ClassifierConfig(filters=(8, 16)),
            training=TrainingConfig(max_epochs=1, plateau_patience=1, early_stopping_patience=1, tta=2),
            augmentation=AugmentationConfig(rotation_degrees=10.0), replicates=2, bootstrap=50,
            test_sets=(demo_tests[0], TestSetConfig(name="dark-skin", data_dir=f"{DEMO_PREFIX}demo-derm:seed=1",
                                                    split="train+val+test", distribution="out",
                                                    fitzpatrick=(4, 5, 6))),
            sources=(SourceConfig(name="cdcgan", gan_args=SMOKE_GAN_ARGS),),
            groups=({"mode": "augmentation", "sources": ["cdcgan"], "ratios": [0.5]},))
    if preset == "paper":
        return StudyConfig(
            preset="paper", name="paper", data=DataConfig(image_size=299, classes=("benign", "melanoma")),
            classifier=ClassifierConfig(name="inception_v3", weights="auto", dropout=0.0),
            training=TrainingConfig(), replicates=10, bootstrap=1000)
    raise config_lib.ConfigError(f"unknown preset {preset!r}; choose one of {PRESETS}")


# ---------------------------------------------------------------------------------------------- data and GANs


def _demo_dir(spec: str, cfg: StudyConfig) -> str:
    """``demo:<kind>:seed=<s>`` -> the cached demo dataset drawn with that seed, at the study's size and count."""
    parts = spec[len(DEMO_PREFIX):].split(":")
    try:
        kind, seed = parts[0], int(parts[1].split("=", 1)[1]) if len(parts) > 1 else 0
    except (IndexError, ValueError):
        raise config_lib.ConfigError(f"a demo data_dir must look like demo:demo-derm:seed=1. Received: {spec!r}")
    if kind not in demo.DEMO_KINDS:
        raise config_lib.ConfigError(f"{spec!r}: the demo kind must be one of {demo.DEMO_KINDS}")
    return demo.ensure_demo_dataset(kind, cfg.data.image_size, cfg.demo_num_images, seed=seed)


def resolve_data(cfg: StudyConfig) -> StudyConfig:
    """Builds the demo datasets the config names and makes ``data.classes`` explicit."""
    updates = {}
    if not cfg.data.data_dir:
        updates["data"] = {"data_dir": demo.ensure_demo_dataset(cfg.demo_dataset, cfg.data.image_size,
                                                                cfg.demo_num_images)}
    if any(t.data_dir.startswith(DEMO_PREFIX) for t in cfg.test_sets):
        updates["test_sets"] = [dict(config_lib.to_dict(t), data_dir=_demo_dir(t.data_dir, cfg)
                                     if t.data_dir.startswith(DEMO_PREFIX) else t.data_dir) for t in cfg.test_sets]
    cfg = config_lib.replace(cfg, updates) if updates else cfg
    info = common.check_data_dir(cfg.data.data_dir)
    if not cfg.data.classes:
        cfg = config_lib.replace(cfg, {"data": {"classes": tuple(info.class_names)}})
    return cfg


def make_sources(cfg: StudyConfig, run_dir: str) -> StudyConfig:
    """Trains and generates from a quick cDCGAN for each source without ``data_dir`` (resuming where it stopped)."""
    sources = []
    for s in cfg.sources:
        if s.data_dir or s.union:  # a union reads its members' datasets: nothing to train or generate
            sources.append(config_lib.to_dict(s))
            continue
        num_images = s.num_images or images_needed(cfg, s.name)
        gan_dir = os.path.join(run_dir, "gan", s.name)
        out = os.path.join(run_dir, "synth", s.name)
        sets = [a for o in (*s.gan_args, "data.classes=" + ",".join(cfg.data.classes)) for a in ("--set", o)]
        if os.path.isfile(os.path.join(gan_dir, "generator.keras")) and os.path.isfile(os.path.join(gan_dir,
                                                                                                   "report.md")):
            print(f"== source {s.name}: GAN already trained ({gan_dir})")
        elif latest_checkpoint(os.path.join(gan_dir, "checkpoints")):
            print(f"== source {s.name}: resuming the GAN in {gan_dir}")
            _check(cdcgan.main(["--run-dir", gan_dir, "--resume"]), f"the GAN of source {s.name!r}")
        else:
            if os.path.isdir(gan_dir):  # killed before its first checkpoint: nothing to resume
                shutil.rmtree(gan_dir)
            print(f"== source {s.name}: training a quick conditional DCGAN in {gan_dir}")
            preset = "smoke" if cfg.preset == "smoke" else "demo"
            _check(cdcgan.main(["--preset", preset, "--data", cfg.data.data_dir, "--run-dir", gan_dir, *sets]),
                   f"the GAN of source {s.name!r}")
        if not os.path.isfile(os.path.join(out, "dataset", schema.DATASET_JSON)):
            _check(cdcgan.main(["generate", "--run", gan_dir, "--out", out, "--num-images", str(num_images)]),
                   f"generating source {s.name!r}")
        sources.append(dict(config_lib.to_dict(s), data_dir=os.path.join(out, "dataset")))
    return config_lib.replace(cfg, {"sources": sources})


def images_needed(cfg: StudyConfig, source: str) -> int:
    """Images to generate for ``source`` (equal numbers per class): the largest per-class count any arm takes,
    times the number of classes, plus a quarter when an arm samples ``diverse`` (near-duplicates are dropped).

    An arm drawing from a union of ``k`` sources asks each member for ``1/k`` of its count (rounded up): enough
    for ``mix="equal"``, and together enough for ``mix="pooled"``.
    """
    info = schema.read_dataset_info(cfg.data.data_dir)
    real = [info.counts.get("train", {}).get(c, 0) for c in cfg.data.classes]
    members = {s.name: len(s.union) for s in cfg.sources if source in s.union}
    arms = [a for a in cfg.all_arms() if a.has_synthetic and (a.source == source or a.source in members)]

    def per_class(a):
        counts = sampling.synthetic_counts(real, a.ratio, {list(cfg.data.classes).index(k): v for k, v in
                                                           a.class_ratios.items()})
        return int(np.ceil(counts.max() / members.get(a.source, 1)))

    most = max((per_class(a) for a in arms), default=1)
    margin = 1.25 if any(a.sampling == "diverse" for a in arms) else 1.0
    return int(np.ceil(most * margin)) * len(cfg.data.classes)


def _check(status: int, what: str) -> None:
    if status:
        raise common.RecipeError(f"{what} failed (exit status {status}); fix the cause and continue with --resume")


# ---------------------------------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="demo",
                        help="demo (default; builds its data and a quick GAN, ~15 min on a CPU), smoke (tests) or "
                             "paper (the review's setup; needs --config recipes/augment_study/paper.toml and --data).")
    parser.add_argument("--config", metavar="FILE.toml", default=None,
                        help="TOML overriding the preset: [training], [classifier], [[test_sets]], [[sources]], "
                             "[[groups]], [[arms]] ... (see recipes/augment_study/paper.toml).")
    parser.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append", default=[],
                        help="Override one value, e.g. --set replicates=5 --set training.tta=10. Repeatable.")
    parser.add_argument("--data", metavar="DIR", default=None, help="The real dataset (medgan-data output).")
    parser.add_argument("--run-dir", metavar="DIR", default=None,
                        help="Study folder. Default: a new runs/augment_study/<00001-name>/ (runs root: "
                             f"${common.RUNS_ROOT_ENV} or ./runs).")
    parser.add_argument("--resume", action="store_true",
                        help="Continue a study (the --run-dir given, or the newest): trains only missing models.")
    parser.add_argument("--no-plots", action="store_true", help="Skip the PNG figures (no matplotlib needed).")
    parser.add_argument("--dry-run", action="store_true", help="Validate and print the config, then exit.")
    return parser


def _resolve(parser, args) -> tuple[StudyConfig, str | None]:
    try:
        if args.resume:
            run_dir = args.run_dir or common.latest_run_dir(RECIPE)
            if run_dir is None or not os.path.isfile(os.path.join(run_dir, RECIPE_CONFIG)):
                raise config_lib.ConfigError(f"--resume: no study found ({run_dir or 'runs/' + RECIPE}); pass the "
                                             "study folder with --run-dir")
            if args.config or args.data or args.overrides:
                raise config_lib.ConfigError("--config, --data and --set cannot change a study being resumed: its "
                                             f"rows must stay comparable (settings: {run_dir}/{RECIPE_CONFIG})")
            with open(os.path.join(run_dir, RECIPE_CONFIG), encoding="utf-8") as f:
                return config_lib.replace(StudyConfig(), json.load(f)), run_dir
        cfg = get_config(args.preset)
        if args.config:
            cfg = config_lib.replace(cfg, config_lib.load_toml(args.config))
        cfg = config_lib.replace(cfg, config_lib.parse_overrides(args.overrides))
        if args.data:
            cfg = config_lib.replace(cfg, {"data": {"data_dir": args.data}})
        if not cfg.all_arms() or not cfg.test_sets:
            raise config_lib.ConfigError(f"preset {args.preset!r} has no arms or no test sets: give them with "
                                         "--config (e.g. recipes/augment_study/paper.toml)")
        if cfg.preset == "paper" and not cfg.data.data_dir:
            raise config_lib.ConfigError("--preset paper needs --data (the real dataset, e.g. medgan-data isic "
                                         "--task melanoma-vs-benign)")
        return cfg, args.run_dir
    except (config_lib.ConfigError, ValueError) as e:
        parser.error(str(e))


def run(argv) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    cfg, run_dir = _resolve(parser, args)
    if args.dry_run:
        print(json.dumps(config_lib.to_dict(cfg), indent=2))
        return 0
    run_dir = run_dir or common.new_run_dir(RECIPE, cfg.name)
    try:
        # One process per study folder, from before the config is written to the report: the quick GANs, the
        # cells and the report all live in it (a stale lock of a killed run is taken over with a message).
        with locking.hold(run_dir):
            return _run_locked(args, cfg, run_dir)
    except locking.StudyLocked as e:
        raise common.RecipeError(str(e)) from None


def _run_locked(args, cfg: StudyConfig, run_dir: str) -> int:
    if not args.resume:
        if os.path.exists(os.path.join(run_dir, RECIPE_CONFIG)):
            raise common.RecipeError(f"{run_dir} already holds a study; continue it with --resume or pass a new "
                                     "--run-dir (nothing was changed).")
        schema.write_json_atomic(os.path.join(run_dir, RECIPE_CONFIG), config_lib.to_dict(cfg))
    cfg = make_sources(resolve_data(cfg), run_dir)
    study = Study(cfg, run_dir)
    rows = study.run(resume=args.resume)
    extra = (["- `gan/<source>/`: the quick GAN behind each generated source (its own report.md: FID, detection "
              "rate); `synth/<source>/`: its images and grid"] if any(s.gan_args for s in cfg.sources) else [])
    write_report(cfg, rows, run_dir, plots=not args.no_plots, extra_lines=extra)
    print(f"\nstudy folder: {run_dir}\n  report: {os.path.join(run_dir, 'report.md')}\n  rows: "
          f"{os.path.join(run_dir, 'results.csv')}")
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit status (1 on a user error, 2 on a bad command line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return common.guarded(run, argv)
    except ImportError as e:  # an optional dependency (matplotlib, imagehash) is missing
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
