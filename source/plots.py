"""Matplotlib helpers shared by every plot (headless backend, atomic PNG writes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from source.io import atomic_path  # noqa: E402


def save_figure(figure: "plt.Figure", path: Path, dpi: int = 120) -> Path:
    """Save a figure as PNG atomically and close it."""
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    plt.close(figure)
    return path


def curve_figure(history: pd.DataFrame, metric: str) -> "plt.Figure":
    """``metric`` against the epoch, a line per split; whole epochs only on the x axis."""
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(6, 4))
    for split, rows in history.dropna(subset=[metric]).groupby("split", sort=False):
        axis.plot(rows.epoch, rows[metric], marker="o", markersize=3, label=split)
    axis.set(xlabel="epoch", ylabel=metric, title=metric)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend()
    return figure


def plot_curves(history: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per metric of ``metrics.csv`` (columns ``epoch``, ``split``, metrics): a line per split."""
    metrics = [c for c in history.columns if c not in {"epoch", "split", "lr"} and history[c].notna().any()]
    return [save_figure(curve_figure(history, metric), out_dir / f"{metric}.png") for metric in metrics]
