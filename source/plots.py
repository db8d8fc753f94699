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


def plot_curves(history: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One PNG per metric of ``metrics.csv`` (columns ``epoch``, ``split``, metrics): a line per split."""
    written = []
    for metric in [c for c in history.columns if c not in {"epoch", "split", "lr"}]:
        data = history.dropna(subset=[metric])
        if data.empty:
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        for split, rows in data.groupby("split", sort=False):
            axis.plot(rows.epoch, rows[metric], marker="o", markersize=3, label=split)
        axis.set(xlabel="epoch", ylabel=metric, title=metric)
        axis.legend()
        written.append(save_figure(figure, out_dir / f"{metric}.png"))
    return written
