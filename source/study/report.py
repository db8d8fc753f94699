"""The comparison's report: ``report.html``, one self-contained page (styles inline, figures as base64 data URIs,
nothing fetched: it opens from disk offline), and ``report.md`` with the same text and tables, its figures named by
relative file name.

Both hold the runs, a plain-language line per pair of models, the notes on what was left out, the two tables, the
figures and the keys whose values differ between the runs' saved configs.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from source.io import atomic_write_text
from source.study.alignment import AlignedPredictions
from source.study.compare import ComparisonSettings
from source.study.metrics import HIGHER_IS_BETTER

METRIC_NAMES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "balanced_accuracy": "balanced accuracy",
    "brier": "Brier score",
    "ece": "ECE",
    "c_index": "c-index",
    "integrated_brier": "integrated Brier score",
    "mae": "MAE",
    "rmse": "RMSE",
    "r2": "R2",
    "pearson": "Pearson r",
}
TEST_NAMES = {"delong": "DeLong", "paired_bootstrap": "paired bootstrap", "corrected_t": "corrected t"}
HEADLINE = {"classification": "auroc", "survival": "c_index", "regression": "r2"}
"""The metric of each task's one line per pair (the metric training tracks by default)."""
RUN_FOLDER_KEYS = {"output_dir", "experiment_name", "run_id", "resume"}
"""Saved-config keys that only place a run's folder (shown as the folder itself)."""


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value of a nested config (lists and other values are leaves)."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(configs: dict[str, dict]) -> pd.DataFrame:
    """The keys whose values differ between the models' saved configs: a row per key, a column per model (blank
    where a config lacks the key); keys that only place the run folder are left out."""
    flat = {model: flatten(config) for model, config in configs.items()}
    keys = sorted({key for values in flat.values() for key in values} - RUN_FOLDER_KEYS)
    absent = object()
    rows = []
    for key in keys:
        values = [flat[model].get(key, absent) for model in flat]
        if any(value != values[0] for value in values[1:]):
            rows.append({"key": key} | {m: "" if v is absent else str(v) for m, v in zip(flat, values, strict=True)})
    return pd.DataFrame(rows, columns=["key", *flat])


def _number(value: float, signed: bool = False) -> str:
    return "NaN" if not np.isfinite(value) else f"{value:+.3f}" if signed else f"{value:.3f}"


def _p(value: float) -> str:
    return "NaN" if not np.isfinite(value) else "< 0.001" if value < 0.001 else f"{value:.2g}"


def _verdict(row: pd.Series, alpha: float) -> str:
    """Which model the test favours after Holm at level ``alpha``, in words."""
    if not np.isfinite(row.p_adjusted) or row.p_adjusted >= alpha:
        return f"not distinguishable at the {alpha:.0%} level after Holm"
    a_higher = row.difference > 0
    better = row.model_a if a_higher == HIGHER_IS_BETTER.get(row.metric, True) else row.model_b
    return f"{better} better at the {alpha:.0%} level after Holm"


def pair_lines(pairwise: pd.DataFrame, metric: str, ci: float) -> list[str]:
    """One line per pair on ``metric``: the pooled difference with its interval and test, then the fold test, e.g.
    ``abmil vs mean: AUROC +0.040 [-0.010, 0.090], DeLong p = 0.12, Holm 0.24; ...``."""
    lines = []
    rows = pairwise[pairwise.metric == metric]
    for (a, b), pair in rows.groupby(["model_a", "model_b"], sort=False):
        parts = []
        for _, row in pair.iterrows():
            where = "over folds " if row.test == "corrected_t" else ""
            parts.append(
                f"{where}{_number(row.difference, signed=True)} [{_number(row.ci_low)}, {_number(row.ci_high)}], "
                f"{TEST_NAMES[row.test]} p = {_p(row.p_value)}, Holm {_p(row.p_adjusted)} "
                f"({_verdict(row, 1 - ci)})"
            )
        lines.append(f"{a} vs {b}: {METRIC_NAMES.get(metric, metric)} {'; '.join(parts)}")
    return lines


def _summary(data: AlignedPredictions, settings: ComparisonSettings) -> str:
    folds = len(data.fold_names)
    cases = "patients" if data.kind == "survival" else "slides"
    layout = f"{folds} folds (out-of-fold predictions pooled)" if folds > 1 else "a single split"
    return (
        f"{len(data.models)} {data.kind} models on the same {len(data.cases)} {cases}, {layout}; "
        f"{settings.n_bootstrap} bootstrap draws (seed {settings.seed}), {settings.ci:.0%} intervals. Differences are "
        "first model minus second; p-values are Holm-adjusted over every row of the pairwise table."
    )


def _cell(value: object) -> str:
    """A table cell as text: floats to 4 significant digits, NaN spelled out."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}" if np.isfinite(value) else "NaN"
    return str(value)


def _markdown_table(frame: pd.DataFrame) -> str:
    rows = [[_cell(value).replace("|", "\\|") for value in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _html_table(frame: pd.DataFrame) -> str:
    return frame.map(_cell).to_html(index=False, border=0, escape=True)


def _image(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{encoded}"></figure>'


STYLE = """body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } figure { margin: 1em 0; } code { background: #f3f3f3; padding: 0 0.2em; }"""


def write_report(
    out_dir: Path,
    data: AlignedPredictions,
    settings: ComparisonSettings,
    tables: dict[str, pd.DataFrame],
    figures: list[Path],
    folders: dict[str, Path],
    configs: dict[str, dict],
    notes: list[str],
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out_dir`` (atomically); returns both paths.

    Args:
        tables: ``comparison`` and ``pairwise`` (the csvs' tables).
        figures: PNG files in ``out_dir``.
        folders: model -> run folder.
        configs: model -> saved config.
        notes: what was left out or skipped, in sentences.
    """
    runs = pd.DataFrame({"model": list(folders), "run folder": [str(folder) for folder in folders.values()]})
    lines = pair_lines(tables["pairwise"], HEADLINE[data.kind], settings.ci)
    differences = config_differences(configs)
    sections = [
        ("Runs", runs),
        ("Metrics (comparison.csv)", tables["comparison"]),
        ("Pairwise differences (pairwise.csv)", tables["pairwise"]),
        ("Config keys that differ", differences),
    ]
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>Model comparison</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>Model comparison</h1>",
        f"<p>{html.escape(_summary(data, settings))}</p>",
        "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>",
        *[f"<p><em>{html.escape(note)}</em></p>" for note in notes],
    ]
    text = ["# Model comparison", "", _summary(data, settings), "", *[f"- {line}" for line in lines], ""]
    text += [f"*{note}*\n" for note in notes]
    for title, frame in sections:
        empty = frame.empty
        page += [f"<h2>{html.escape(title)}</h2>", "<p>none</p>" if empty else _html_table(frame)]
        text += [f"## {title}", "", "none" if empty else _markdown_table(frame), ""]
    page.append("<h2>Figures</h2>")
    text += ["## Figures", ""]
    for path in figures:
        page.append(_image(path))
        text += [f"![{path.stem}]({path.name})", ""]
    page.append("</body></html>")
    html_path, markdown_path = out_dir / "report.html", out_dir / "report.md"
    atomic_write_text(html_path, "\n".join(page) + "\n")
    atomic_write_text(markdown_path, "\n".join(text))
    return html_path, markdown_path
