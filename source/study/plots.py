"""The comparison's figures: ROC and precision-recall curves of every model with bootstrap bands, a forest plot of
the metrics, reliability diagrams, Kaplan-Meier curves of each model's risk groups, predicted against true values.

Several classes: the curves are macro averages of the one-vs-rest curves (as the macro AUROC and AUPRC), the
reliability diagram is top-label (confidence of the predicted class against its accuracy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from source.io import safe_join
from source.plots import save_figure
from source.study.alignment import AlignedPredictions
from source.study.calibration import reliability_curve
from source.study.metrics import HIGHER_IS_BETTER
from source.tasks.kaplan_meier import kaplan_meier_figure

GRID = np.linspace(0, 1, 101)
"""False-positive rates (ROC) and recalls (precision-recall) the curves and their bands are evaluated at."""
TITLES = {"roc": "ROC", "precision_recall": "precision-recall"}


def _one_vs_rest(truth: np.ndarray, probabilities: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(is positive ``(N,)``, score ``(N,)``) per curve: class 1 of two classes, else every class against the rest."""
    if probabilities.shape[1] == 2:
        return [(truth == 1, probabilities[:, 1])]
    return [(truth == c, probabilities[:, c]) for c in range(probabilities.shape[1])]


def roc_at_grid(truth: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``(len(GRID),)`` true-positive rate at each false-positive rate of :data:`GRID` (macro over classes)."""
    curves = []
    for positive, score in _one_vs_rest(truth, probabilities):
        fpr, tpr, _ = roc_curve(positive, score)
        curves.append(np.interp(GRID, fpr, tpr))
    return np.mean(curves, axis=0)


def precision_at_grid(truth: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """``(len(GRID),)`` interpolated precision (the best precision at that recall or more) at each recall of
    :data:`GRID` (macro over classes)."""
    curves = []
    for positive, score in _one_vs_rest(truth, probabilities):
        precision, recall, _ = precision_recall_curve(positive, score)
        order = np.argsort(recall, kind="stable")
        recall, best = recall[order], np.maximum.accumulate(precision[order][::-1])[::-1]
        curves.append(best[np.minimum(np.searchsorted(recall, GRID), len(recall) - 1)])
    return np.mean(curves, axis=0)


def curve_figures(data: AlignedPredictions, indices: np.ndarray, ci: float, out_dir: Path) -> list[Path]:
    """``roc.png`` and ``precision_recall.png``: each model's curve on all cases and its ``ci`` band over the
    bootstrap draws ``indices`` ``(B, N)`` (the same draws as the tables)."""
    import matplotlib.pyplot as plt

    truth = data.cases["truth"].to_numpy()
    tail = 50 * (1 - ci)
    written = []
    for name, curve, labels in (
        ("roc", roc_at_grid, ("false positive rate", "true positive rate")),
        ("precision_recall", precision_at_grid, ("recall", "precision")),
    ):
        figure, axis = plt.subplots(figsize=(5.5, 5))
        for index, model in enumerate(data.models):
            probabilities = data.scores[model]
            band = np.array([curve(truth[draw], probabilities[draw]) for draw in indices])
            low, high = np.percentile(band, [tail, 100 - tail], axis=0)
            axis.plot(GRID, curve(truth, probabilities), color=f"C{index}", label=model)
            axis.fill_between(GRID, low, high, color=f"C{index}", alpha=0.2, linewidth=0)
        if name == "roc":
            axis.plot([0, 1], [0, 1], "k--", linewidth=0.8)
        average = "" if data.binary else ", macro"
        title = f"{TITLES[name]} ({ci:.0%} bootstrap bands{average})"
        axis.set(xlabel=labels[0], ylabel=labels[1], xlim=(0, 1), ylim=(0, 1.02), title=title)
        axis.legend(loc="lower right" if name == "roc" else "lower left")
        written.append(save_figure(figure, out_dir / f"{name}.png"))
    return written


def forest_figure(comparison: pd.DataFrame, ci: float, out_dir: Path) -> Path:
    """``forest.png``: a panel per metric, each model's pooled estimate with its bootstrap interval and, with folds,
    its fold mean with its Student-t interval."""
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(comparison.metric))
    models = list(dict.fromkeys(comparison.model))
    panel = len(models) + 2  # a panel's height in rows of a model: the models, the title and the ticks
    figure, axes = plt.subplots(
        len(metrics) + 1,
        1,
        figsize=(6.5, 0.3 * (panel * len(metrics) + 2)),
        gridspec_kw={"height_ratios": [panel] * len(metrics) + [2]},
    )
    for axis, metric in zip(axes[:-1], metrics, strict=True):
        rows = comparison[comparison.metric == metric].set_index("model").loc[models]
        y = np.arange(len(models))
        axis.errorbar(
            rows.estimate,
            y - 0.12,
            xerr=_error_bars(rows.estimate, rows.ci_low, rows.ci_high),
            fmt="o",
            color="C0",
            capsize=3,
            label=f"all cases, {ci:.0%} bootstrap",
        )
        if rows.fold_mean.notna().any():
            axis.errorbar(
                rows.fold_mean,
                y + 0.12,
                xerr=_error_bars(rows.fold_mean, rows.fold_ci_low, rows.fold_ci_high),
                fmt="s",
                color="C1",
                capsize=3,
                label=f"fold mean, {ci:.0%} t",
            )
        better = "higher" if HIGHER_IS_BETTER.get(metric, True) else "lower"
        axis.set(yticks=y, yticklabels=models, ylim=(-0.5, len(models) - 0.5), title=f"{metric} ({better} is better)")
        axis.invert_yaxis()
    axes[-1].axis("off")
    axes[-1].legend(*axes[0].get_legend_handles_labels(), loc="center", ncol=2, fontsize=8, frameon=False)
    return save_figure(figure, out_dir / "forest.png")


def _error_bars(centre: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    """``(2, M)`` distances from the centre to each end (0 where an end is undefined)."""
    return np.nan_to_num(np.vstack([centre - low, high - centre]).astype(float)).clip(min=0)


def reliability_figure(data: AlignedPredictions, n_bins: int, out_dir: Path) -> Path:
    """``reliability.png``: observed frequency against mean predicted probability per equal-count bin, every model."""
    import matplotlib.pyplot as plt

    truth = data.cases["truth"].to_numpy()
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="perfect calibration")
    for index, model in enumerate(data.models):
        probabilities = data.scores[model][:, 1] if data.binary else data.scores[model]
        curve = reliability_curve(truth, probabilities, n_bins)
        axis.plot(curve.mean_predicted, curve.observed_frequency, marker="o", color=f"C{index}", label=model)
    what = f"P({data.class_names[1]})" if data.binary else "confidence of the predicted class"
    axis.set(
        xlabel=f"mean predicted {what}",
        ylabel="observed frequency" if data.binary else "accuracy",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        title=f"reliability ({n_bins} equal-count bins)",
    )
    axis.legend(loc="upper left")
    return save_figure(figure, out_dir / "reliability.png")


def kaplan_meier_figures(data: AlignedPredictions, out_dir: Path) -> list[Path]:
    """``kaplan_meier_<model>.png``: survival of each model's high- and low-risk patients (risk above / at most the
    median of its fold, as training splits a split), numbers at risk and the log-rank test."""
    events = data.cases["event"].to_numpy(bool)
    times = data.cases["time"].to_numpy(float)
    folds = data.folds
    written = []
    for model in data.models:
        risk = data.scores[model]
        high = np.zeros(len(risk), dtype=bool)
        for fold in data.fold_names:
            members = folds == fold
            high[members] = risk[members] > np.median(risk[members])
        split = "its fold's median risk" if len(data.fold_names) > 1 else "the median risk"
        figure = kaplan_meier_figure(
            events, times, [("low risk", ~high), ("high risk", high)], data.time_label, f"{model}: split at {split}"
        )
        written.append(save_figure(figure, safe_join(out_dir, f"kaplan_meier_{model}", ".png")))
    return written


def scatter_figure(data: AlignedPredictions, out_dir: Path) -> Path:
    """``scatter.png``: a panel per model, predicted against true values with the identity line."""
    import matplotlib.pyplot as plt

    truth = data.cases["truth"].to_numpy(float)
    figure, axes = plt.subplots(1, len(data.models), figsize=(4 * len(data.models), 4), squeeze=False, sharey=True)
    values = np.concatenate([truth, *data.scores.values()])
    low, high = float(values.min()), float(values.max())
    for index, (axis, model) in enumerate(zip(axes[0], data.models, strict=True)):
        axis.scatter(truth, data.scores[model], s=12, alpha=0.7, color=f"C{index}")
        axis.plot([low, high], [low, high], linestyle="--", color="gray", linewidth=0.8)
        axis.set(xlabel="true value", title=model)
    axes[0, 0].set_ylabel("predicted value")
    return save_figure(figure, out_dir / "scatter.png")


def comparison_figures(
    data: AlignedPredictions, comparison: pd.DataFrame, indices: np.ndarray, ci: float, ece_bins: int, out_dir: Path
) -> list[Path]:
    """Every figure of ``data.kind``, written to ``out_dir``; returns their paths."""
    written = [forest_figure(comparison, ci, out_dir)]
    if data.kind == "classification":
        written += curve_figures(data, indices, ci, out_dir)
        written.append(reliability_figure(data, ece_bins, out_dir))
    elif data.kind == "survival":
        written += kaplan_meier_figures(data, out_dir)
    else:
        written.append(scatter_figure(data, out_dir))
    return written
