"""The study's figures (matplotlib, an optional dependency: ``pip install -e ".[study]"``).

- ``box_plots``: one panel per test set, one horizontal box per arm with every trained model as a point and the
  mean as a red dot; arms of one group (mode and real fraction) share a colour, groups alternate blue / black;
  one row of panels per mode (critical review Fig. 2).
- ``f1_bars``: per-class F1 with 95% bootstrap intervals, baseline against the augmented arms (DermGAN Fig. 8);
  with many arms, the best and worst arm by the primary measure with their baselines (``f1_arms``).

Both are written atomically as PNG with the Agg backend (no display needed).
"""

from __future__ import annotations

import numpy as np

from keras_medgan.io_utils import atomic_open


class PlottingUnavailable(ImportError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise PlottingUnavailable('the study plots need matplotlib: install it with pip install -e ".[study]" '
                                  "(or pip install matplotlib), or pass --no-plots") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str) -> str:
    """Lays out, writes ``path`` atomically and closes the figure."""
    try:
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
        return path
    finally:
        plt.close(fig)


def _group_colours(test: dict, arms: list) -> list[str]:
    """Blue / black, alternating between groups of arms (same mode and real fraction), as in the review's Fig. 2."""
    groups, colours, last = {}, [], None
    for a in arms:
        s = test["arms"][a]
        key = (s["mode"], s["label"].split(":")[0].lstrip("("))
        if key != last:
            groups[key] = len(groups)
            last = key
        colours.append("tab:blue" if groups[key] % 2 == 0 else "black")
    return colours


def box_plots(summary: dict, path: str) -> str:
    """Writes the Fig. 2-style box plots of ``report.summarize``'s output; returns ``path``.

    One row of panels per mode (the review plots augmentation and anonymization apart, Sec. 3.1 "Analyses" and
    Fig. 2; synth-only gets its own row), one panel per test set; each row lists its mode's arms and the
    baselines they are compared with.
    """
    plt = _pyplot()
    tests = summary["tests"]
    names = list(tests)
    first = tests[names[0]] if names else {"arms": {}}
    modes = summary.get("modes") or {"": list(first["arms"])}
    rows = [(mode, arms) for mode, arms in modes.items() if arms]
    heights = [max(1.6, 0.42 * len(arms) + 0.9) for _, arms in rows]
    fig, axes = plt.subplots(len(rows), len(names), figsize=(4.2 * len(names), sum(heights) + 0.5 * len(rows)),
                             squeeze=False, gridspec_kw={"height_ratios": heights})
    rng = np.random.default_rng(0)
    metric = summary["metric"].upper() if summary["metric"] == "auc" else summary["metric"]
    for r, (mode, arms) in enumerate(rows):
        colours = _group_colours(first, arms)
        for col, name in enumerate(names):
            ax = axes[r, col]
            data = [tests[name]["arms"][a]["values"] or [np.nan] for a in arms]
            positions = np.arange(len(arms))[::-1]
            box = ax.boxplot(data, positions=positions, vert=False, widths=0.6, showfliers=False,
                             patch_artist=True)
            for patch, colour in zip(box["boxes"], colours):
                patch.set(facecolor="none", edgecolor=colour)
            for pos, values, colour in zip(positions, data, colours):
                values = np.asarray(values, np.float64)
                ax.scatter(values, pos + rng.uniform(-0.15, 0.15, len(values)), s=12, color=colour, alpha=0.7,
                           zorder=3)
                if np.isfinite(values).any():
                    ax.scatter([np.nanmean(values)], [pos], s=30, color="red", zorder=4)
            title = f"{name} ({tests[name]['distribution']}-dist.)"
            ax.set_title(f"{mode}: {title}" if mode and len(rows) > 1 else title, fontsize=10)
            ax.set_xlabel(metric)
            ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=5))  # a 4.2-inch panel fits ~5 labels like 0.9875
            ax.set_yticks(positions)
            labels = []
            for a in arms:
                s = tests[name]["arms"][a]
                labels.append(s["label"] + (f" ({s['mode']})" if mode and s["mode"] != mode else "")
                              + (" †" if s.get("same_model_as") else ""))  # models shared with a twin arm
            ax.set_yticklabels(labels if col == 0 else [""] * len(arms))
            for tick, colour in zip(ax.get_yticklabels(), colours):
                tick.set_color(colour)
            ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def f1_arms(test: dict, metric: str, max_arms: int = 4) -> tuple[list, str]:
    """The arms the per-class F1 chart shows for one test set, and a note saying how they were chosen.

    Up to ``max_arms`` arms: all of them, baselines first. More: DermGAN's Fig. 8 compares a baseline with the
    augmented model, so the chart shows the best and the worst synthetic arm by mean ``metric`` (the study's
    primary measure), each after its baseline; arms that reuse another arm's models are skipped.
    """
    arms = [a for a, s in test["arms"].items() if "f1" in s and not s.get("same_model_as")]
    if len(arms) <= max_arms:
        return sorted(arms, key=lambda a: test["arms"][a]["baseline"] is not None), ""
    ranked = sorted((a for a in arms if test["arms"][a]["baseline"] is not None
                     and test["arms"][a][metric]["mean"] is not None), key=lambda a: test["arms"][a][metric]["mean"])
    shown = []
    for a in ([ranked[-1], ranked[0]] if ranked else []):
        for b in (test["arms"][a]["baseline"], a):
            if b not in shown and "f1" in test["arms"].get(b, {}):
                shown.append(b)
    if not shown:
        shown = arms[:max_arms]
    name = {"auc": "AUC", "balanced_accuracy": "balanced accuracy"}.get(metric, metric)
    return shown, f"{len(shown)} of {len(arms)} arms: the best and the worst by mean {name}, with their baselines"


def f1_bars(summary: dict, path: str, max_arms: int = 4) -> str:
    """Writes the per-class F1 bar chart with 95% bootstrap intervals (DermGAN Fig. 8); returns ``path``.

    One panel per test set (small multiples). Stays readable with many arms and classes: at most ``max_arms``
    bars per class (``f1_arms``: beyond that, the best and worst arm with their baselines), class names rotated,
    the legend outside the axes, right of each panel.
    """
    plt = _pyplot()
    tests = summary["tests"]
    names = list(tests)
    classes = summary["class_names"]
    multi = len(summary.get("modes") or {}) > 1
    chosen = {name: f1_arms(tests[name], summary["metric"], max_arms) for name in names}
    bars = max((len(a) for a, _ in chosen.values()), default=1)
    width_in = min(18.0, max(6.5, 0.32 * len(classes) * max(bars, 2) + 2.5))
    fig, axes = plt.subplots(len(names), 1, figsize=(width_in, 4.2 * len(names)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes[:, 0], names):
        arms, note = chosen[name]
        width = 0.8 / max(len(arms), 1)
        x = np.arange(len(classes))
        for i, a in enumerate(arms):
            s = tests[name]["arms"][a]
            f1 = s["f1"]
            mean = np.array([np.nan if f1[c]["f1"] is None else f1[c]["f1"] for c in classes])
            low = np.array([np.nan if f1[c]["ci_low"] is None else f1[c]["ci_low"] for c in classes])
            high = np.array([np.nan if f1[c]["ci_high"] is None else f1[c]["ci_high"] for c in classes])
            err = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0).clip(min=0)
            label = s["label"] + (f" [{s['mode']}]" if multi else "") + (" (baseline)" if s["baseline"] is None
                                                                          else "")
            ax.bar(x + (i - (len(arms) - 1) / 2) * width, np.nan_to_num(mean), width, yerr=err, capsize=2,
                   label=label, color=colours[i % len(colours)], edgecolor="black" if s["baseline"] is None
                   else "none", hatch="//" if s["baseline"] is None else None)
        ax.set_xticks(x)
        ax.set_xticklabels(classes, rotation=35 if len(classes) > 4 else 0, ha="right" if len(classes) > 4
                           else "center", fontsize=9)
        ax.set_xlim(-0.6, len(classes) - 0.4)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        title = f"{name} ({tests[name]['distribution']}-distribution)"
        ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # outside, right
        ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)
