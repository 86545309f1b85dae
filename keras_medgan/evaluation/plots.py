"""The study's figures (matplotlib, an optional dependency: ``pip install -e ".[study]"``).

- ``box_plots``: one panel per test set, one horizontal box per arm with every trained model as a point and the
  mean as a red dot; arms of one group (mode and real fraction) share a colour, groups alternate blue / black
  (critical review Fig. 2).
- ``f1_bars``: per-class F1 of each arm with 95% bootstrap intervals, baseline first (DermGAN Fig. 8).

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


def box_plots(summary: dict, path: str) -> str:
    """Writes the Fig. 2-style box plots of ``report.summarize``'s output; returns ``path``."""
    plt = _pyplot()
    tests = summary["tests"]
    names = list(tests)
    arms = list(next(iter(tests.values()))["arms"]) if tests else []
    height = max(2.5, 0.45 * len(arms) + 1.2)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), height), sharey=True, squeeze=False)
    rng = np.random.default_rng(0)
    groups, colours, last = {}, [], None
    for a in arms:
        s = tests[names[0]]["arms"][a]
        key = (s["mode"], s["label"].split(":")[0].lstrip("("))
        if key != last:
            groups[key] = len(groups)
            last = key
        colours.append("tab:blue" if groups[key] % 2 == 0 else "black")
    for ax, name in zip(axes[0], names):
        data = [tests[name]["arms"][a]["values"] or [np.nan] for a in arms]
        positions = np.arange(len(arms))[::-1]
        box = ax.boxplot(data, positions=positions, vert=False, widths=0.6, showfliers=False, patch_artist=True)
        for patch, colour in zip(box["boxes"], colours):
            patch.set(facecolor="none", edgecolor=colour)
        for pos, values, colour in zip(positions, data, colours):
            values = np.asarray(values, np.float64)
            ax.scatter(values, pos + rng.uniform(-0.15, 0.15, len(values)), s=12, color=colour, alpha=0.7, zorder=3)
            if np.isfinite(values).any():
                ax.scatter([np.nanmean(values)], [pos], s=30, color="red", zorder=4)
        ax.set_title(f"{name} ({tests[name]['distribution']}-dist.)")
        ax.set_xlabel(summary["metric"].upper() if summary["metric"] == "auc" else summary["metric"])
        ax.set_yticks(positions)
        ax.set_yticklabels([tests[name]["arms"][a]["label"] for a in arms])
        for tick, colour in zip(ax.get_yticklabels(), colours):
            tick.set_color(colour)
        ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def f1_bars(summary: dict, path: str) -> str:
    """Writes the per-class F1 bar chart (one panel per test set); returns ``path``."""
    plt = _pyplot()
    tests = summary["tests"]
    names = list(tests)
    classes = summary["class_names"]
    fig, axes = plt.subplots(len(names), 1, figsize=(max(6.0, 1.3 * len(classes) + 3), 3.2 * len(names)),
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        arms = [a for a, s in tests[name]["arms"].items() if "f1" in s]
        arms.sort(key=lambda a: tests[name]["arms"][a]["baseline"] is not None)  # baselines first
        width = 0.8 / max(len(arms), 1)
        x = np.arange(len(classes))
        for i, a in enumerate(arms):
            f1 = tests[name]["arms"][a]["f1"]
            mean = np.array([np.nan if f1[c]["f1"] is None else f1[c]["f1"] for c in classes])
            low = np.array([np.nan if f1[c]["ci_low"] is None else f1[c]["ci_low"] for c in classes])
            high = np.array([np.nan if f1[c]["ci_high"] is None else f1[c]["ci_high"] for c in classes])
            err = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0).clip(min=0)
            ax.bar(x + (i - (len(arms) - 1) / 2) * width, np.nan_to_num(mean), width, yerr=err, capsize=2,
                   label=tests[name]["arms"][a]["label"])
        ax.set_xticks(x)
        ax.set_xticklabels(classes, rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("F1")
        ax.set_title(f"{name} ({tests[name]['distribution']}-distribution)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)
