"""What recipes share to judge a generator: one fixed ruler, cached real features, periodic and final evaluation.

A recipe gives ``GeneratorEvaluator`` a function that generates ``n`` images conditioned on the reference
split (``{"image": [-1, 1] floats, "label", "fitzpatrick"}``); the evaluator returns FID/KID for periodic
logging, and for the final evaluation writes ``evaluation.json``, a memorization contact sheet and a
markdown section for ``report.md``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from keras_medgan.config import EvalConfig
from keras_medgan.data import schema
from keras_medgan.metrics import evaluate as ev
from keras_medgan.metrics import registry, sources
from keras_medgan.metrics.domain_classifier import RulerSettings, ensure_domain_classifier
from keras_medgan.metrics.features import FeatureExtractor, classifier_extractor
from keras_medgan.metrics.frechet import frechet_distance
from keras_medgan.metrics.kernel import kernel_inception_distance
from keras_medgan.metrics.memorization import copy_contact_sheet


def resolve_extractor(cfg: EvalConfig, data_dir: str) -> FeatureExtractor:
    """The ruler of ``cfg.features``; ``classifier:auto`` trains (once, cached) on ``data_dir``'s train split."""
    if cfg.features == "classifier:auto":
        return classifier_extractor(ensure_domain_classifier(data_dir, RulerSettings(epochs=cfg.ruler_epochs)))
    return registry.get_extractor(cfg.features, data_dir=data_dir)


class GeneratorEvaluator:
    """Evaluates generated images against one dataset with one ruler, at one resolution.

    Args:
        cfg: EvalConfig.
        data_dir: str. The real dataset the GAN trains on.
        resolution: int. The generator's image size.
        verbose: bool. Progress bars for feature extraction.
        classes: dataset class indices or None. Compare with the real images of these classes only (a
            generator trained on ``DataConfig.classes``); the memorization audit still searches the whole
            training split.
    """

    def __init__(self, cfg: EvalConfig, data_dir: str, resolution: int, verbose: bool = True, classes=None):
        self.cfg = cfg
        self.data_dir = data_dir
        self.resolution = int(resolution)
        self.verbose = verbose
        self.info = schema.read_dataset_info(data_dir)
        self.extractor = resolve_extractor(cfg, data_dir)
        self.reference = sources.ImageSource("dataset", os.path.abspath(data_dir), cfg.reference_split)
        self.real = sources.cached_source_features(self.extractor, self.reference, self.resolution,
                                                   verbose=verbose)
        if classes is not None:
            self.real = select_labels(self.real, classes)

    def _fake(self, generate_fn: Callable[[int], dict], n: int, source: str) -> tuple[sources.FeatureSet, dict]:
        batch = generate_fn(n)
        fs = sources.extract_batches(
            self.extractor, sources.array_batches(batch["image"], batch.get("label"), batch.get("fitzpatrick"),
                                                  self.resolution), source, self.resolution, total=n)
        return fs, batch

    def periodic(self, generate_fn: Callable[[int], dict]) -> dict:
        """FID and KID (point values, no intervals) of freshly generated images: for ``metrics/<name>`` logging."""
        n = self.cfg.periodic_images or len(self.real)
        fake, _ = self._fake(generate_fn, n, "generator (periodic)")
        kid, _ = kernel_inception_distance(self.real.features, fake.features, subsets=20, subset_size=1000)
        return {"fid": frechet_distance(self.real.features, fake.features), "kid": kid}

    def final(self, generate_fn: Callable[[int], dict], out_dir: str, extra: dict | None = None):
        """Full evaluation with intervals and breakdowns; writes ``evaluation.json`` (and the contact sheet).

        Returns:
            The result dict (also written), or a dict with ``skipped`` naming why no evaluation was possible.
        """
        metrics = registry.parse_metrics(self.cfg.metrics)
        n = self.cfg.num_images or len(self.real)
        settings = ev.EvalSettings(metrics=metrics, trials=self.cfg.trials, bootstrap=self.cfg.bootstrap)
        need = 2 * settings.k + 2
        if len(self.real) < need or n < need:
            return {"skipped": f"the {self.cfg.reference_split} split has {len(self.real)} images; the metrics need "
                               f"at least {need} (and thousands for a stable FID)"}
        fake, batch = self._fake(generate_fn, n, "generator")
        train = heldout = None
        train_src = sources.ImageSource("dataset", self.reference.path, "train")
        if "memorization" in metrics:
            heldout_src = sources.ImageSource("dataset", self.reference.path, self.cfg.heldout_split)
            if self.info.num_examples(heldout_src.split) < 20:
                heldout_src = self.reference  # too few held-out images: fall back to the reference split
            train = sources.cached_source_features(self.extractor, train_src, self.resolution, verbose=self.verbose)
            heldout = sources.cached_source_features(self.extractor, heldout_src, self.resolution,
                                                     verbose=self.verbose)
            if len(heldout) < 20:
                metrics = tuple(m for m in metrics if m != "memorization")
                settings = ev.EvalSettings(metrics=metrics, trials=self.cfg.trials, bootstrap=self.cfg.bootstrap)
        result, report = ev.evaluate_features(self.real, fake, self.extractor.record(), settings,
                                              class_names=self.info.class_names, train=train, heldout=heldout,
                                              extra=extra)
        if report is not None:
            pairs = report.closest_pairs(16)
            train_images = sources.sparse_images(train_src, [t for _, t, _ in pairs], len(train), self.resolution)
            sheet = os.path.join(out_dir, "memorization_closest_pairs.png")
            copy_contact_sheet(as_uint8(batch["image"], self.resolution), train_images, report, sheet, n=len(pairs))
            result["memorization"]["contact_sheet"] = os.path.basename(sheet)
        schema.write_json_atomic(os.path.join(out_dir, "evaluation.json"), result)
        return result


def select_labels(fs: sources.FeatureSet, classes) -> sources.FeatureSet:
    """The rows of ``fs`` whose label is one of ``classes``."""
    keep = np.isin(fs.labels, np.asarray(list(classes)))
    return dataclasses.replace(fs, features=fs.features[keep], probs=fs.probs[keep], labels=fs.labels[keep],
                               fitzpatrick=fs.fitzpatrick[keep], thumbnails=fs.thumbnails[keep],
                               source=f"{fs.source} (classes {sorted(int(c) for c in classes)})")


def _ci(low, high) -> str:
    return f"[{low:.4g}, {high:.4g}]" if low is not None and high is not None else ""


def markdown_section(result: dict) -> str:
    """The "Fidelity, diversity and memorization" section of a run's ``report.md``."""
    if "skipped" in result:
        return f"## Fidelity, diversity and memorization\n\nNot evaluated: {result['skipped']}.\n"
    s = result["settings"]
    ex = s["extractor"]
    lines = ["## Fidelity, diversity and memorization", "",
             f"Ruler: `{ex['name']}` ({ex['weights']}; {ex['input_size']} px input, {ex['resize_filter']}; "
             f"fingerprint `{ex['fingerprint']}`). {s['num_fake']} generated images against {s['num_real']} real "
             f"images of `{os.path.basename(s['reference'])}` at {s['resolution']} px; seed {s['seed']}. Values "
             "are comparable only with results that have the same ruler fingerprint.", "",
             "| metric | value | 95% interval | how the interval is made |", "|---|---|---|---|"]
    how = {"fid": f"mean ± 1.96 std over {s['trials']} random {s['subset_fraction']:.0%} subsets (DermGAN Table 1)",
           "kid": "2.5th-97.5th percentile of the KID subset estimates",
           "is": "bootstrap over generated images"}
    for name, (value, low, high) in ev.headline(result).items():
        lines.append(f"| {name} | {value:.4g} | {_ci(low, high)} | "
                     f"{how.get(name, 'bootstrap of the per-sample terms' if low is not None else '')} |")
    if "memorization" in result:
        m = result["memorization"]
        lines += ["", f"Memorization audit: {m['n_flagged']} of {m['n_generated']} generated images are likely copies "
                      f"of training images ({m['likely_copy_fraction']:.1%}); authenticity {m['authenticity']:.3f} "
                      f"(held-out real images score {m['authenticity_heldout_baseline']:.3f}). Rule: {m['rule']}. "
                      f"Closest pairs for review: `{m.get('contact_sheet', '')}`."]
    for key in ("per_class", "per_fitzpatrick"):
        if key in result:
            lines += ["", f"{key.replace('_', ' ').capitalize()} FID / KID (groups under {s['min_group']} images "
                          "in either set are not scored):", "", "| group | FID | KID | real | generated |",
                      "|---|---|---|---|---|"]
            for g, row in result[key].items():
                fid = "—" if row["fid"] is None else f"{row['fid']:.4g}"
                kid = "—" if row["kid"] is None else f"{row['kid']:.4g}"
                lines.append(f"| {g} | {fid} | {kid} | {row['num_real']} | {row['num_fake']} |")
    return "\n".join(lines) + "\n"


def as_uint8(images, resolution: int) -> np.ndarray:
    """Images (uint8 or [-1, 1] floats) as uint8 at ``resolution``, exactly as the extractor saw them."""
    return next(sources.array_batches(images, resolution=resolution, batch_size=len(images)))["image"]
