"""The evaluation protocol: every requested metric, its confidence interval and its breakdowns, in one record.

``evaluate_features`` takes feature sets (see ``sources.FeatureSet``) and returns a JSON-ready dict whose
``settings`` record everything that decides the values: the extractor (name, weights, input size, resize
filter, fingerprint), the resolution, the numbers of real and generated images, the reference split, the
seed, the trials and resamples. ``compare`` refuses to put side by side results from different extractors.

Intervals (critical review, Sec. 3: report spread, never a single number):
    - FID: mean ± 1.96 std over ``trials`` random subsets (DermGAN Table 1: 50 trials), plus a percentile
      bootstrap interval.
    - KID: mean and std over its random subsets (Bińkowski et al. 2018) and the 2.5th-97.5th percentiles of
      the subset estimates.
    - IS: mean and std over splits (Salimans et al. 2016) and a percentile bootstrap over generated images.
    - Precision / recall / density / coverage: each is a mean of per-sample terms (per generated image for
      precision and density, per real image for recall and coverage); the interval is a percentile bootstrap of
      that mean with the k-NN balls fixed. Resampling the feature sets themselves would put zero-distance
      duplicates inside the balls and bias the radii.
    - Memorization: percentile bootstrap over generated images of the likely-copy fraction.
Per-class and per-Fitzpatrick-type FID and KID are computed on the images of each group in both sets.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_medgan.metrics import intervals, memorization
from keras_medgan.metrics.frechet import frechet_distance
from keras_medgan.metrics.inception_score import inception_score
from keras_medgan.metrics.kernel import kernel_inception_distance, kid_subset_values
from keras_medgan.metrics.precision_recall import prdc_per_sample
from keras_medgan.metrics.sources import FeatureSet

FITZPATRICK_NAMES = ("unknown", "I", "II", "III", "IV", "V", "VI")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How the metrics are computed (all recorded in the result).

    Args:
        metrics: names from ``registry.METRIC_NAMES``.
        trials: int. Random-subset trials for the FID interval (DermGAN: 50).
        subset_fraction: float. Share of each set used per trial.
        bootstrap: int. Bootstrap resamples for FID, IS, PRDC and memorization (0 = none).
        kid_subsets: int. KID subsets (Bińkowski et al.: 100).
        kid_subset_size: int. KID subset size (StyleGAN2-ADA: 1000); at most ``subset_fraction`` of the smaller set.
        k: int. Neighbourhood size for PRDC (Naeem et al.: 5).
        is_splits: int. IS splits (10), clipped to the number of generated images.
        min_group: int. Smallest per-class / per-skin-type group that gets a value.
        memorization_percentile: float. Held-out NN-distance percentile below which a sample is a likely copy.
        seed: int.
    """

    metrics: tuple = ("fid", "kid", "is", "prdc")
    trials: int = 50
    subset_fraction: float = 0.8
    bootstrap: int = 100
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    k: int = 5
    is_splits: int = 10
    min_group: int = 10
    memorization_percentile: float = 1.0
    seed: int = 0


def _fid(real: FeatureSet, fake: FeatureSet, s: EvalSettings) -> dict:
    out = {"value": frechet_distance(real.features, fake.features)}
    if s.trials > 0:
        trials = intervals.subset_trials(frechet_distance, real.features, fake.features, s.trials,
                                         s.subset_fraction, s.seed)
        out["trials"] = {k: v for k, v in trials.items() if k != "values"}
    if s.bootstrap > 1:
        out["bootstrap"] = intervals.bootstrap_ci(frechet_distance, real.features, fake.features,
                                                  resamples=s.bootstrap, seed=s.seed)
    return out


def _kid_fn(s: EvalSettings, subsets: int | None = None):
    return lambda a, b: kernel_inception_distance(a, b, subsets or s.kid_subsets,
                                                  kid_subset_size(s, len(a), len(b)), s.seed)[0]


def kid_subset_size(s: EvalSettings, n_real: int, n_fake: int) -> int:
    """KID subset size: ``kid_subset_size``, but at most ``subset_fraction`` of the smaller set, so that subsets
    differ and their spread means something (KID is unbiased at any subset size, so this moves no expectation)."""
    return max(2, min(s.kid_subset_size, round(s.subset_fraction * min(n_real, n_fake))))


def _kid(real: FeatureSet, fake: FeatureSet, s: EvalSettings) -> dict:
    m = kid_subset_size(s, len(real), len(fake))
    values = kid_subset_values(real.features, fake.features, s.kid_subsets, m, s.seed)
    low, high = np.percentile(values, [2.5, 97.5])
    return {"mean": float(values.mean()), "std": float(values.std()), "ci_low": float(low), "ci_high": float(high),
            "subsets": int(s.kid_subsets), "subset_size": int(m)}


def _is(fake: FeatureSet, s: EvalSettings) -> dict:
    splits = max(1, min(s.is_splits, len(fake) // 2))
    mean, std = inception_score(fake.probs, splits)
    out = {"mean": mean, "std": std, "splits": splits}
    if s.bootstrap > 1:
        out["bootstrap"] = intervals.bootstrap_ci(lambda p: inception_score(p, splits)[0], fake.probs,
                                                  resamples=s.bootstrap, seed=s.seed)
    return out


def _prdc(real: FeatureSet, fake: FeatureSet, s: EvalSettings) -> dict:
    k = min(s.k, len(real) - 1, len(fake) - 1)
    out = {"k": int(k)}
    for name, per_sample in prdc_per_sample(real.features, fake.features, k).items():
        out[name] = {"value": float(np.mean(per_sample))}
        if s.bootstrap > 1:
            ci = intervals.bootstrap_ci(np.mean, per_sample, resamples=s.bootstrap, seed=s.seed)
            out[name].update(ci_low=ci["ci_low"], ci_high=ci["ci_high"])
    return out


def _breakdowns(real: FeatureSet, fake: FeatureSet, s: EvalSettings, class_names) -> dict:
    out = {}
    kid_small = _kid_fn(s, max(10, s.kid_subsets // 10))
    for key, r_groups, f_groups, names in (("per_class", real.labels, fake.labels, class_names),
                                           ("per_fitzpatrick", real.fitzpatrick, fake.fitzpatrick,
                                            FITZPATRICK_NAMES)):
        known_r, known_f = r_groups >= (0 if key == "per_class" else 1), f_groups >= (0 if key == "per_class" else 1)
        if not known_r.any() or not known_f.any():
            continue
        rf, ff = real.features[known_r], fake.features[known_f]
        rg, fg = r_groups[known_r], f_groups[known_f]
        fid = intervals.grouped(frechet_distance, rf, ff, rg, fg, names, s.min_group)
        kid = intervals.grouped(kid_small, rf, ff, rg, fg, names, s.min_group)
        out[key] = {g: {"fid": fid[g]["value"], "kid": kid[g]["value"], "num_real": fid[g]["num_real"],
                        "num_fake": fid[g]["num_fake"]} for g in fid}
    return out


def _memorization(fake: FeatureSet, train: FeatureSet, heldout: FeatureSet, s: EvalSettings):
    report = memorization.memorization_audit(
        fake.features, train.features, heldout.features,
        memorization.pixel_vectors(fake.thumbnails), memorization.pixel_vectors(train.thumbnails),
        memorization.pixel_vectors(heldout.thumbnails), percentile=s.memorization_percentile,
        pixel_size=fake.thumbnails.shape[1])
    out = dict(report.summary())
    out.update(train_source=train.source, heldout_source=heldout.source,
               # what a sampler of new images from the data distribution scores: held-out real images vs train
               authenticity_heldout_baseline=memorization.authenticity_score(heldout.features, train.features))
    if s.bootstrap > 1:
        flagged = np.asarray(report.flagged, dtype=np.float64)
        out["likely_copy_bootstrap"] = intervals.bootstrap_ci(np.mean, flagged, resamples=s.bootstrap, seed=s.seed)
    return out, report


def evaluate_features(real: FeatureSet, fake: FeatureSet, extractor_record: dict, settings: EvalSettings = EvalSettings(),
                      class_names=None, train: FeatureSet | None = None, heldout: FeatureSet | None = None,
                      extra: dict | None = None):
    """Computes ``settings.metrics`` of ``fake`` against the reference ``real``.

    Args:
        real: FeatureSet. The reference real images (a split the GAN did not train on, usually ``val``/``test``).
        fake: FeatureSet. Generated images.
        extractor_record: ``FeatureExtractor.record()`` of the extractor that made both sets.
        settings: EvalSettings.
        class_names: names of label ids, for the per-class breakdown.
        train, heldout: FeatureSets of the GAN's training split and of a real split it never saw; needed for
            ``memorization``.
        extra: more settings to record (e.g. the generator checkpoint).

    Returns:
        ``(result, memorization_report_or_None)``; ``result`` is JSON-ready.
    """
    if real.features.shape[1] != fake.features.shape[1]:
        raise ValueError("real and fake features have different widths; they were not made by one extractor")
    need = 2 * settings.k + 2
    if min(len(real), len(fake)) < need:
        raise ValueError(f"too few images to evaluate: {len(real)} real and {len(fake)} generated; need at least "
                         f"{need} of each (and thousands for a stable FID).")
    result = {"settings": {
        "extractor": extractor_record, "resolution": int(fake.resolution), "num_real": len(real),
        "num_fake": len(fake), "reference": real.source, "fake": fake.source, **dataclasses.asdict(settings),
        **(extra or {})}}
    result["settings"]["metrics"] = list(settings.metrics)
    report = None
    if "fid" in settings.metrics:
        result["fid"] = _fid(real, fake, settings)
    if "kid" in settings.metrics:
        result["kid"] = _kid(real, fake, settings)
    if "fid" in settings.metrics or "kid" in settings.metrics:
        result.update(_breakdowns(real, fake, settings, class_names))
    if "is" in settings.metrics:
        result["is"] = _is(fake, settings)
    if "prdc" in settings.metrics:
        result["prdc"] = _prdc(real, fake, settings)
    if "memorization" in settings.metrics:
        if train is None or heldout is None:
            raise ValueError("the memorization audit needs the GAN's training split and a held-out real split")
        result["memorization"], report = _memorization(fake, train, heldout, settings)
    return result, report


# ---------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------


def headline(result: dict) -> dict:
    """The main number and interval of each metric: ``{name: (value, low, high)}``."""
    out = {}
    if "fid" in result:
        t = result["fid"].get("trials")
        out["fid"] = (t["mean"], t["ci_low"], t["ci_high"]) if t else (result["fid"]["value"], None, None)
    if "kid" in result:
        k = result["kid"]
        out["kid"] = (k["mean"], k["ci_low"], k["ci_high"])
    if "is" in result:
        b = result["is"].get("bootstrap", {})
        out["is"] = (result["is"]["mean"], b.get("ci_low"), b.get("ci_high"))
    if "prdc" in result:
        for name in ("precision", "recall", "density", "coverage"):
            p = result["prdc"][name]
            out[name] = (p["value"], p.get("ci_low"), p.get("ci_high"))
    if "memorization" in result:
        m = result["memorization"]
        b = m.get("likely_copy_bootstrap", {})
        out["likely_copies"] = (m["likely_copy_fraction"], b.get("ci_low"), b.get("ci_high"))
        out["authenticity"] = (m["authenticity"], None, None)
    return out


def _fmt(value, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}"


def format_table(result: dict) -> str:
    """A readable plain-text table of a result (what the CLI prints)."""
    s = result["settings"]
    ex = s["extractor"]
    lines = [f"features: {ex['name']} ({ex['weights']}; {ex['input_size']} px, {ex['resize_filter']}; "
             f"fingerprint {ex.get('fingerprint')})",
             f"real: {s['reference']} ({s['num_real']} images)   fake: {s['fake']} ({s['num_fake']} images)   "
             f"resolution {s['resolution']} px   seed {s['seed']}",
             "", f"{'metric':<15}{'value':>12}{'95% interval':>26}", "-" * 53]
    for name, (value, low, high) in headline(result).items():
        ci = f"[{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
        lines.append(f"{name:<15}{_fmt(value):>12}{ci:>26}")
    for key in ("per_class", "per_fitzpatrick"):
        if key in result:
            lines += ["", f"{key.replace('_', ' ')}:", f"  {'group':<24}{'FID':>10}{'KID':>10}{'real':>7}{'fake':>7}"]
            for g, row in result[key].items():
                lines.append(f"  {g:<24}{_fmt(row['fid'], 3):>10}{_fmt(row['kid'], 3):>10}{row['num_real']:>7}"
                             f"{row['num_fake']:>7}")
    if "memorization" in result:
        m = result["memorization"]
        lines += ["", f"memorization: {m.get('rule', '')}"]
    return "\n".join(lines)


class IncomparableResults(ValueError):
    """Two results were computed with different extractors (or settings that change the values)."""


def compare(results: dict) -> str:
    """Markdown table of several results' headline metrics; refuses mixed extractors.

    Args:
        results: ``{label: result}``.
    """
    if not results:
        raise ValueError("nothing to compare")
    fingerprints = {label: r["settings"]["extractor"].get("fingerprint") for label, r in results.items()}
    if len(set(fingerprints.values())) > 1:
        detail = ", ".join(f"{label}: {results[label]['settings']['extractor']['name']} ({fp})"
                           for label, fp in fingerprints.items())
        raise IncomparableResults(f"these results were computed with different feature extractors ({detail}); their "
                                  "values are on different scales. Recompute them with the same --features.")
    notes = []
    for field in ("resolution", "num_real", "num_fake", "reference"):
        values = {str(r["settings"].get(field)) for r in results.values()}
        if len(values) > 1:
            notes.append(f"- note: `{field}` differs between results ({', '.join(sorted(values))}); FID is biased by "
                         "sample count and reference, so read differences with care.")
    names = list(dict.fromkeys(n for r in results.values() for n in headline(r)))
    rows = ["| result | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, r in results.items():
        h = headline(r)
        cells = []
        for n in names:
            if n not in h:
                cells.append("—")
                continue
            value, low, high = h[n]
            cells.append(f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]" if low is not None else _fmt(value))
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows + ([""] + notes if notes else []))
