"""Paper 004's UCGAN studies as commands: the pseudo-label threshold sweep (Table 4) and the loss ablation
(Table 5). Each trains one UCGAN per setting with the same preset, data and seed, then tabulates the
classifier C's one-vs-rest test AUC per class with 95% bootstrap intervals.

    python -m keras_medgan.recipes.xraygan sweep threshold [--preset demo] [--out DIR] [--resume]
    python -m keras_medgan.recipes.xraygan sweep losses
"""

from __future__ import annotations

import argparse
import json
import os

from keras_medgan.data import schema
from keras_medgan.io_utils import atomic_open
from keras_medgan.recipes import common

# Table 4: t in 0.6, 0.7, 0.8, 0.9.
THRESHOLDS = (0.6, 0.7, 0.8, 0.9)
# Table 5. "Simple: w/o L_reg in Eq. 11": no IS, MMD, Gram or style+content term. "+ IS + MMD + Gram" is the full
# Eq. 10 (gamma's style+content term rides with the Gram style term, as in the paper's full model).
LOSS_VARIANTS = (
    ("simple", "Simple (no L_reg)", ["guidance.alpha=0", "guidance.beta=0", "guidance.eta=0", "guidance.gamma=0"]),
    ("is", "+ IS", ["guidance.beta=0", "guidance.eta=0", "guidance.gamma=0"]),
    ("is_mmd", "+ IS + MMD", ["guidance.eta=0", "guidance.gamma=0"]),
    ("is_mmd_gram", "+ IS + MMD + Gram", []),
)
SWEEPS = {
    "threshold": ("Table 4: AUC against the pseudo-label threshold t",
                  tuple((f"t{t:g}", f"t = {t:g}", [f"guidance.threshold={t}"]) for t in THRESHOLDS)),
    "losses": ("Table 5: effectiveness of the scores", LOSS_VARIANTS),
}


def _cell(row: dict) -> str:
    if row["auc"] != row["auc"]:  # NaN: one class only in the test split
        return "—"
    ci = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row.get("ci_low") is not None else ""
    return f"{row['auc']:.3f}{ci}"


def sweep_table(results: dict, labels: dict) -> str:
    """Markdown table: one row per setting, one column per class (and macro), AUC [95% CI]."""
    classes = [c for c in next(iter(results.values()))["auc"] if c != "macro"]
    for key, r in results.items():
        if [c for c in r["auc"] if c != "macro"] != classes:
            raise common.RecipeError(f"setting {key!r} was trained on other classes ({list(r['auc'])}); the sweep's "
                                     "runs must share data.classes")
    rows = ["| setting | " + " | ".join(classes) + " | macro | test images |",
            "|---|" + "---|" * (len(classes) + 2)]
    for key, r in results.items():
        rows.append(f"| {labels[key]} | " + " | ".join(_cell(r["auc"][c]) for c in classes)
                    + f" | {_cell(r['auc']['macro'])} | {r['num_images']} |")
    return "\n".join(rows)


def sweep(argv=None) -> int:
    from keras_medgan.recipes import xraygan

    parser = argparse.ArgumentParser(
        prog="python -m keras_medgan.recipes.xraygan sweep",
        description="Paper 004's UCGAN studies. `threshold` trains one UCGAN per pseudo-label threshold t in "
                    "0.6, 0.7, 0.8, 0.9 (Table 4); `losses` trains Simple (no L_reg), + IS, + IS + MMD and "
                    "+ IS + MMD + Gram (Table 5). Every run has the same preset, data and seed; the table gives "
                    "C's one-vs-rest ROC AUC per class on the real test split with 95% bootstrap intervals, and is "
                    "written to sweep.md / sweep.json in --out.\n\nExample (demo preset):\n"
                    "  python -m keras_medgan.recipes.xraygan sweep threshold\n"
                    "  python -m keras_medgan.recipes.xraygan sweep losses --out runs/xraygan-sweep/00002-demo "
                    "--resume",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=sorted(SWEEPS), help="threshold (Table 4) or losses (Table 5).")
    parser.add_argument("--preset", choices=list(xraygan.PRESETS), default="demo", help="Preset of every run.")
    parser.add_argument("--data", default=None, help="Dataset folder (default: the preset's).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="Override applied to every run, e.g. --set train.steps=3000. Repeatable.")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_float16", "mixed_bfloat16"], default=None,
                        help="Compute precision of every run.")
    parser.add_argument("--settings", default=None,
                        help="Comma-separated subset of the study's settings (threshold: t0.6,t0.7,t0.8,t0.9; "
                             "losses: simple,is,is_mmd,is_mmd_gram). Default: all.")
    parser.add_argument("--out", default=None,
                        help="Study folder (one run per setting inside). Default: a new "
                             "runs/xraygan-sweep-<study>/<00001-preset>/.")
    parser.add_argument("--resume", action="store_true",
                        help="Continue the study in --out: finished runs are kept, interrupted ones resumed.")
    args = parser.parse_args(argv)
    title, variants = SWEEPS[args.study]
    if args.settings:
        wanted = [v.strip() for v in args.settings.split(",") if v.strip()]
        known = [key for key, _, _ in variants]
        unknown = [v for v in wanted if v not in known]
        if unknown or not wanted:
            parser.error(f"--settings: unknown {unknown or args.settings!r}; {args.study} has {','.join(known)}")
        variants = tuple(v for v in variants if v[0] in wanted)
    out = common.study_folder(args, f"xraygan-sweep-{args.study}")
    base = ["--model", "ucgan", "--preset", args.preset] + (["--data", args.data] if args.data else [])
    base += ["--precision", args.precision] if args.precision else []
    base += [a for o in args.overrides for a in ("--set", o)]
    runs = common.run_variants(xraygan.train, out, variants, base, "classifier_auc.json")
    results = {}
    for key, run_dir in runs.items():
        with open(os.path.join(run_dir, "classifier_auc.json"), encoding="utf-8") as f:
            results[key] = json.load(f)
    labels = {key: label for key, label, _ in variants}
    text = (f"# XRAY-GAN UCGAN sweep: {title} (paper 004)\n\nPreset `{args.preset}`; each row is one UCGAN run "
            "(same data, seed and budget); cells are C's one-vs-rest ROC AUC on the real test split with 95% "
            "bootstrap intervals over the test images. One run per setting: the spread between seeds is not in "
            f"these intervals.\n\n{sweep_table(results, labels)}\n\nRuns: "
            + ", ".join(f"`{k}/`" for k in runs) + "\n")
    with atomic_open(os.path.join(out, "sweep.md"), "w", encoding="utf-8") as f:
        f.write(text)
    schema.write_json_atomic(os.path.join(out, "sweep.json"), {"study": args.study, "labels": labels,
                                                               "results": results})
    print("\n" + text)
    print(f"wrote {os.path.join(out, 'sweep.md')}")
    return 0
