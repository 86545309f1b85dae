"""The study's answer: did synthetic data help, where, and by how much.

``summarize`` turns the rows of ``results.jsonl`` and the saved test predictions into ``summary.json``: per test
set and arm the spread of the primary measure over replicates; per arm and test set the paired t-test across
replicates and the paired bootstrap on the same test images against its baseline, Holm-corrected across the
arms of each test set (critical review Sec. 3.1 "Analyses" trains ten replicates; the tests are ours); per-class
F1 with bootstrap intervals (DermGAN Fig. 8); and the primary measure per Fitzpatrick type. ``write_report``
writes ``results.csv``, ``summary.json``, the plots and ``report.md``.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from keras_medgan.data import schema
from keras_medgan.evaluation import statistics
from keras_medgan.evaluation.study import TEST_LABELS, StudyConfig, load_predictions
from keras_medgan.io_utils import atomic_open

MEASURE_NAMES = {"auc": "AUC", "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}
# How each mode is introduced in report.md (critical review Sec. 3 and Table 2; synth-only from paper 003).
MODE_TITLES = {
    "augmentation": "Augmentation: synthetic images added to the real ones (critical review Sec. 3, Table 2 "
                    "first row); each arm is compared with the real data alone at the same real fraction",
    "anonymization": "Anonymization: synthetic images replace real ones (critical review Sec. 3, Table 2 second "
                     "row); 1/x:0 is each group's baseline, 1:0 the upper bound, and anonymization is only of "
                     "interest above its baseline (Sec. 4.2)",
    "synth-only": "Synth-only: trained on synthetic images alone (paper 003), compared with the classifier "
                  "trained on all the real data (1:0)",
}
MODE_TAGS = {"augmentation": "aug.", "anonymization": "anon.", "synth-only": "synth-only"}


def display_label(label: str, mode: str | None, multi_mode: bool) -> str:
    """An arm's Fig. 2 label, tagged with its mode when the study has several (1:1 sgn is then ambiguous)."""
    return f"{label} [{MODE_TAGS.get(mode, mode)}]" if multi_mode and mode else label


def _spread(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not len(v):
        return {"n": 0, "mean": None, "std": None, "median": None, "min": None, "max": None}
    return {"n": int(len(v)), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def _nan_to_none(value):
    return None if value is None or not np.isfinite(value) else float(value)


def summarize(cfg: StudyConfig, rows: list[dict], out_dir: str) -> dict:
    """The statistics of a (complete or partial) study; see the module docstring."""
    metric, class_names = cfg.metric, list(cfg.data.classes)
    arms = cfg.all_arms()
    twins = cfg.twins()
    modes = cfg.modes()
    by_arm = {a.name: {r["replicate"]: r for r in rows if r["arm"] == a.name} for a in arms}
    with np.load(os.path.join(out_dir, TEST_LABELS)) as data:
        labels = {t.name: data[f"{t.name}/labels"] for t in cfg.test_sets}
    cache = {}

    def probs(arm, rep, test):
        if (arm, rep) not in cache:
            cache[(arm, rep)] = load_predictions(out_dir, arm, rep)
        return cache[(arm, rep)][test]

    tests = {}
    for t in cfg.test_sets:
        arm_stats, comparisons = {}, []
        for a in arms:
            reps = sorted(by_arm[a.name])
            arm_stats[a.name] = {
                "label": a.label(class_names), "mode": a.mode, "baseline": getattr(cfg.baseline_of(a), "name", None),
                "same_model_as": twins.get(a.name),
                **{m: _spread([by_arm[a.name][r]["tests"][t.name][m] for r in reps])
                   for m in statistics.SCALAR_MEASURES},
                "values": [by_arm[a.name][r]["tests"][t.name][metric] for r in reps],
                "fitzpatrick": _fitzpatrick_means([by_arm[a.name][r]["tests"][t.name] for r in reps], metric),
            }
            if reps:
                f1 = statistics.mean_f1_interval(labels[t.name], [probs(a.name, r, t.name) for r in reps],
                                                 resamples=cfg.bootstrap, seed=cfg.seed)
                arm_stats[a.name]["f1"] = {c: {"f1": _nan_to_none(f1["f1"][i]), "ci_low": _nan_to_none(
                    f1["ci_low"][i]), "ci_high": _nan_to_none(f1["ci_high"][i])} for i, c in enumerate(class_names)}
            base = cfg.baseline_of(a)
            if base is None:
                continue
            pairs = sorted(set(by_arm[a.name]) & set(by_arm[base.name]))
            test = statistics.paired_t_test([by_arm[a.name][r]["tests"][t.name][metric] for r in pairs],
                                            [by_arm[base.name][r]["tests"][t.name][metric] for r in pairs])
            boot = None
            if pairs:
                boot = statistics.paired_bootstrap(statistics.MEASURES[metric], labels[t.name],
                                                   [probs(a.name, r, t.name) for r in pairs],
                                                   [probs(base.name, r, t.name) for r in pairs],
                                                   resamples=cfg.bootstrap, seed=cfg.seed)
            comparisons.append({"arm": a.name, "label": a.label(class_names), "mode": a.mode, "baseline": base.name,
                                "baseline_label": base.label(class_names), "pairs": len(pairs),
                                "t_test": {k: _nan_to_none(v) if isinstance(v, float) else v for k, v in test.items()},
                                "bootstrap": boot})
        # Holm across the arms of this test set within each mode: each application is its own experiment
        # (Table 2), and a twin arm of another mode would otherwise count the same models twice.
        p_t, p_b = np.full(len(comparisons), np.nan), np.full(len(comparisons), np.nan)
        for mode in {c["mode"] for c in comparisons}:
            family = [i for i, c in enumerate(comparisons) if c["mode"] == mode]
            p_t[family] = statistics.holm([comparisons[i]["t_test"]["p_value"] if comparisons[i]["t_test"][
                "p_value"] is not None else np.nan for i in family])
            p_b[family] = statistics.holm([comparisons[i]["bootstrap"]["p_value"] if comparisons[i]["bootstrap"]
                                           else np.nan for i in family])
        for c, pt, pb in zip(comparisons, p_t, p_b):
            c["t_test"]["p_holm"] = _nan_to_none(pt)
            if c["bootstrap"]:
                c["bootstrap"]["p_holm"] = _nan_to_none(pb)
            c["significant"] = bool(np.isfinite(pt) and pt < cfg.alpha)
            c["direction"] = ("better" if (c["t_test"]["mean_difference"] or 0) > 0 else "worse") \
                if c["significant"] else "no significant difference"
        tests[t.name] = {"distribution": t.distribution, "n": int(len(labels[t.name])), "note": t.note,
                         "arms": arm_stats, "comparisons": comparisons}
    expected = len(arms) * cfg.replicates
    return {"metric": metric, "alpha": cfg.alpha, "replicates": cfg.replicates, "rows": len(rows),
            "models_trained": sum(1 for r in rows if not r.get("same_model_as")),
            "cells_expected": expected, "complete": len(rows) == expected, "class_names": class_names,
            "modes": modes,
            "classifier": cfg.classifier.name, "weights": sorted({r["weights"] for r in rows}), "tests": tests}


def _fitzpatrick_means(reports: list[dict], metric: str) -> dict:
    types = {}
    for report in reports:
        for k, v in report.get("fitzpatrick", {}).items():
            types.setdefault(k, {"n": v["n"], "values": []})
            if metric in v and v[metric] is not None and np.isfinite(v[metric]):
                types[k]["values"].append(v[metric])
    return {k: {"n": v["n"], "mean": float(np.mean(v["values"])) if v["values"] else None}
            for k, v in types.items()}


# ---------------------------------------------------------------------------------------------- files


def write_csv(path: str, rows: list[dict], cfg: StudyConfig) -> None:
    """``results.csv``: one row per cell; test measures as ``<test>:<measure>`` columns. ``same_model_as`` names
    the cell whose model a twin arm's row reuses (count distinct models without those rows)."""
    fixed = ["cell", "arm", "replicate", "label", "mode", "source", "sampling", "real_fraction", "ratio",
             "class_ratios", "n_real", "n_synthetic", "synthetic_members", "same_model_as", "classifier", "weights",
             "epochs_run", "best_epoch", f"best_{cfg.training.monitor}", "seconds"]
    columns = list(fixed)
    for t in cfg.test_sets:
        columns += [f"{t.name}:{m}" for m in statistics.SCALAR_MEASURES]
        columns += [f"{t.name}:f1:{c}" for c in cfg.data.classes]
    with atomic_open(path, "w", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            out = [json.dumps(row[k]) if isinstance(row.get(k), dict) else row.get(k) for k in fixed]
            for t in cfg.test_sets:
                rep = row["tests"][t.name]
                out += [rep[m] for m in statistics.SCALAR_MEASURES]
                out += [rep["per_class"][c]["f1"] for c in cfg.data.classes]
            writer.writerow(out)


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _p(value) -> str:
    if value is None:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def verdict(summary: dict) -> list[str]:
    """Plain sentences: which arms differ significantly from their baseline, where, and by how much."""
    metric = MEASURE_NAMES[summary["metric"]]
    multi = len(summary.get("modes") or {}) > 1

    def arm(c, key="label", mode=None):
        return display_label(c[key], mode or c.get("mode"), multi)

    significant = [(name, c) for name, t in summary["tests"].items() for c in t["comparisons"] if c["significant"]]
    tested = [c for t in summary["tests"].values() for c in t["comparisons"] if c["t_test"]["p_value"] is not None]
    family = ("paired t-test over replicates, Holm-corrected across the arms of each test set"
              + (" and mode" if multi else "") + f", alpha = {summary['alpha']}")
    if not tested:
        return [f"**No comparison could be tested**: at least two replicates of an arm and of its baseline are "
                f"needed ({summary['rows']} of {summary['cells_expected']} cells done)."]
    boot_only = [(name, c) for name, t in summary["tests"].items() for c in t["comparisons"]
                 if not c["significant"] and c["bootstrap"] and c["bootstrap"].get("p_holm") is not None
                 and c["bootstrap"]["p_holm"] < summary["alpha"]]
    note = []
    if boot_only:
        note = ["", "The paired bootstrap over the test images alone, which ignores the spread between training "
                "runs, finds a difference for " + "; ".join(f"{arm(c)} on `{name}` "
                                                             f"({c['bootstrap']['difference']:+.3f})"
                                                             for name, c in boot_only)
                + ". Across replicates these differences are not distinguishable from run-to-run noise."]
    if not significant:
        return [f"**No arm differs significantly from its baseline on any test set** ({family}). On this evidence "
                f"the synthetic images neither helped nor hurt the classifier's {metric}.", *note]
    lines = []
    for name, c in significant:
        t = c["t_test"]
        base_mode = summary["tests"][name].get("arms", {}).get(c.get("baseline"), {}).get("mode")
        lines.append(f"- **{arm(c)}** vs {arm(c, 'baseline_label', base_mode or c.get('mode'))} on `{name}` "
                     f"({summary['tests'][name]['distribution']}-distribution): {c['direction']}, {metric} "
                     f"{t['mean_difference']:+.3f} [95% CI {t['ci_low']:+.3f}, {t['ci_high']:+.3f}], Holm p = "
                     f"{_p(t['p_holm'])}")
    n_not = sum(len(t["comparisons"]) for t in summary["tests"].values()) - len(significant)
    lines.append(f"- The other {n_not} comparison(s) show no significant difference ({family}).")
    return lines + note


def markdown(summary: dict, cfg: StudyConfig, figures: dict, extra_lines=()) -> str:
    """``report.md``."""
    metric = MEASURE_NAMES[summary["metric"]]
    t = cfg.training
    multi_mode = len(summary.get("modes") or {}) > 1
    lines = [f"# Augmentation / anonymization study: {cfg.name}", "",
             "## Did synthetic data help?", "", *verdict(summary), ""]
    if not summary["complete"]:
        lines += [f"> Partial study: {summary['rows']} of {summary['cells_expected']} models trained. Continue it "
                  "with --resume.", ""]
    lines += ["## Setup", "",
              f"- Real data: `{cfg.data.data_dir}`, classes {', '.join(cfg.data.classes)}, {cfg.data.image_size} px",
              f"- Classifier: `{cfg.classifier.name}`; weights: {'; '.join(summary['weights']) or '—'}",
              f"- Training (every arm alike; critical review Sec. 3.2): SGD lr {t.learning_rate}, momentum "
              f"{t.momentum}, weight decay {t.weight_decay}, batch {t.batch_size}; LR x{t.plateau_factor} after "
              f"{t.plateau_patience} epochs without `{t.monitor}` improvement (min {t.min_learning_rate}); early "
              f"stopping after {t.early_stopping_patience}, best validation epoch kept; at most {t.max_epochs} "
              f"epochs; budget `{t.budget}`; class balance `{t.class_balance}`",
              f"- Model selection: validation split only (`{t.selection_split}`); no test set is read before "
              "the final scoring",
              f"- Conventional augmentation at train and test time ({'on' if cfg.augmentation.enabled else 'off'}: "
              f"flips, rotation ±{cfg.augmentation.rotation_degrees:g}°, resized crops ≥ "
              f"{cfg.augmentation.min_crop_area:.0%} of the area, hue ±{cfg.augmentation.hue:.0%}); test "
              f"predictions averaged over {t.tta} replica(s)",
              f"- Replicates: {cfg.replicates} per arm; each redraws the real subset (shared by all arms), the "
              "synthetic sample stays fixed",
              f"- Primary measure: {metric}. Tests: paired t-test across replicates (training spread) and paired "
              f"bootstrap over the same test images ({cfg.bootstrap} resamples; test-set spread), each "
              f"Holm-corrected across the arms of a test set" + (" within each mode" if multi_mode else ""),
              f"- Models trained: {summary.get('models_trained', summary['rows'])} for {summary['rows']} rows "
              f"({len(cfg.all_arms())} arms x {cfg.replicates} replicates)"
              + (f"; synthetic sources: {', '.join(_source_text(s) for s in cfg.sources)}" if cfg.sources else ""),
              ""]
    lines += ["| test set | distribution | images | note |", "|---|---|---|---|"]
    for ts in cfg.test_sets:
        lines.append(f"| `{ts.name}` | {ts.distribution} | {summary['tests'][ts.name]['n']} | {ts.note} |")
    lines.append("")
    multi = len(summary.get("modes") or {}) > 1
    twins_seen = False
    for name, test in summary["tests"].items():
        lines += [f"## Test set `{name}` ({test['distribution']}-distribution)", ""]
        comparisons = {c["arm"]: c for c in test["comparisons"]}
        groups = summary.get("modes") or {"": list(test["arms"])}
        for mode, arm_names in groups.items():
            if multi:
                lines += [f"### {MODE_TITLES.get(mode, mode)}", ""]
            lines += [f"| arm | models | {metric} mean ± sd | median [min, max] | accuracy | balanced acc. | vs "
                      "baseline (95% CI) | t-test p (Holm) | bootstrap diff. (95% CI) | bootstrap p (Holm) |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for arm_name in arm_names:
                s_ = test["arms"][arm_name]
                m = s_[summary["metric"]]
                label = s_["label"]
                if multi and s_["mode"] != mode:
                    label += f" ({s_['mode']})"
                if s_.get("same_model_as"):
                    label += " †"
                    twins_seen = True
                cells = [label, str(m["n"]), f"{_fmt(m['mean'])} ± {_fmt(m['std'])}",
                         f"{_fmt(m['median'])} [{_fmt(m['min'])}, {_fmt(m['max'])}]",
                         _fmt(s_["accuracy"]["mean"]), _fmt(s_["balanced_accuracy"]["mean"])]
                c = comparisons.get(arm_name)
                if c is None:
                    cells += ["baseline", "", "", ""]
                else:
                    tt, b = c["t_test"], c["bootstrap"]
                    diff = "—" if tt["ci_low"] is None else (f"{tt['mean_difference']:+.3f} ({tt['ci_low']:+.3f}, "
                                                             f"{tt['ci_high']:+.3f})")
                    bd = "—" if not b or b["ci_low"] is None else (f"{b['difference']:+.3f} ({b['ci_low']:+.3f}, "
                                                                   f"{b['ci_high']:+.3f})")
                    star = " *" if c["significant"] else ""
                    cells += [diff, f"{_p(tt['p_value'])} ({_p(tt['p_holm'])}){star}", bd,
                              f"{_p(b['p_value']) if b else '—'} ({_p(b.get('p_holm')) if b else '—'})"]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        fitz = {k for s_ in test["arms"].values() for k in s_["fitzpatrick"]}
        if fitz:
            order = [k for k in statistics.FITZPATRICK_NAMES if k in fitz]
            first = next(iter(test["arms"].values()))["fitzpatrick"]
            lines += [f"{metric} per Fitzpatrick type (mean over replicates; images per type in the header):", "",
                      "| arm | " + " | ".join(f"{k} (n={first.get(k, {}).get('n', '?')})" for k in order) + " |",
                      "|---|" + "---|" * len(order)]
            for s_ in test["arms"].values():
                lines.append(f"| {display_label(s_['label'], s_['mode'], multi)} | " + " | ".join(
                    _fmt(s_["fitzpatrick"].get(k, {}).get("mean")) for k in order) + " |")
            lines.append("")
    if twins_seen:
        lines += ["† the same models as the identically trained arm of another mode (same real subset, synthetic "
                  "sample and seed per replicate), trained once and listed in both.", ""]
    if figures:
        lines += ["## Figures", ""]
        for caption, path in figures.items():
            lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    lines += ["## Files", "",
              "- `results.jsonl` / `results.csv`: one row per arm and replicate (every test set's measures, per-class "
              "P/R/F1 and the Fitzpatrick breakdown in the JSONL)",
              "- `summary.json`: the numbers of this report; `cells/<arm>/rNN.npz`: each model's test "
              "probabilities; `selections/`: the fixed synthetic samples; `study.json`: the config; `study.lock`: "
              "the PID of the process running the study (empty when none is)", *extra_lines]
    return "\n".join(lines) + "\n"


def _source_text(source) -> str:
    if source.union:
        return f"`{source.name}` = {' + '.join(source.union)} ({source.mix})"
    return f"`{source.name}`"


def write_report(cfg: StudyConfig, rows: list[dict], out_dir: str, plots: bool = True, extra_lines=()) -> dict:
    """Writes ``results.csv``, ``summary.json``, the two figures (when ``plots``) and ``report.md``."""
    from keras_medgan.evaluation import plots as plots_lib

    summary = summarize(cfg, rows, out_dir)
    write_csv(os.path.join(out_dir, "results.csv"), rows, cfg)
    schema.write_json_atomic(os.path.join(out_dir, "summary.json"), summary)
    figures = {}
    if plots:
        figures[f"{MEASURE_NAMES[cfg.metric]} per test set: one point per trained model, red dots = means "
                "(critical review Fig. 2 layout)"] = os.path.basename(
            plots_lib.box_plots(summary, os.path.join(out_dir, "boxplots.png")))
        figures["Per-class F1 (mean over replicates) with 95% bootstrap intervals over the test images, baseline "
                "against the synthetic arms; with more than 4 arms, the best and the worst arm by mean "
                f"{MEASURE_NAMES[cfg.metric]} with their baselines (DermGAN Fig. 8 layout)"] = os.path.basename(
            plots_lib.f1_bars(summary, os.path.join(out_dir, "f1_per_class.png")))
    with atomic_open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary, cfg, figures, extra_lines))
    return summary
